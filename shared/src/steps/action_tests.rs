//! Catalog actions end to end against a local fake of each API: the fake records what it was
//! sent (method, path, query, `Authorization`, body) and answers as the real API would.
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{HeaderMap, Method as AxumMethod, Uri};
use axum::response::IntoResponse;

use super::*;
use crate::model::project::{Authorization, IntegrationApi};
use crate::model::{Step, StepKind};
use crate::net::{HttpClient, OutboundPolicy, test_server};
use crate::record::StepStatus;
use crate::steps::request::test_files::MemoryFiles;
use crate::steps::{Executed, execute};

type Seen = Arc<Mutex<Vec<Value>>>;
type TestResult = Result<(), Box<dyn std::error::Error>>;

async fn fake(
    State(seen): State<Seen>,
    method: AxumMethod,
    uri: Uri,
    headers: HeaderMap,
    body: String,
) -> impl IntoResponse {
    let body: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).map(str::to_string);
    let key = headers.get("x-api-key").and_then(|v| v.to_str().ok()).map(str::to_string);
    let query = uri.query().unwrap_or_default().to_string();
    if let Ok(mut seen) = seen.lock() {
        seen.push(json!({ "method": method.as_str(), "path": uri.path(), "query": query, "auth": auth, "key": key, "body": body }));
    }
    let path = uri.path();
    if path == "/sf/services/data/v66.0/query" && auth.as_deref() != Some("Bearer tok-2") && query.contains("Expired") {
        // https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/errorcodes.htm
        let body = json!([{ "message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID" }]);
        return (axum::http::StatusCode::UNAUTHORIZED, [("content-type", "application/json")], body.to_string());
    }
    if method == AxumMethod::POST && path == "/google/calendars/primary/events" && body["summary"] == "again" {
        // https://developers.google.com/calendar/api/guides/errors#409_the_requested_identifier_already_exists
        let body = json!({ "error": { "code": 409, "errors": [{ "reason": "duplicate" }], "message": "The requested identifier already exists." } });
        return (axum::http::StatusCode::CONFLICT, [("content-type", "application/json")], body.to_string());
    }
    if method == AxumMethod::POST
        && path == "/hubspot/crm/v3/objects/contacts"
        && body["properties"]["email"] == "ada@example.com"
    {
        let body =
            json!({ "status": "error", "message": "Contact already exists. Existing ID: 151", "category": "CONFLICT" });
        return (axum::http::StatusCode::CONFLICT, [("content-type", "application/json")], body.to_string());
    }
    let answer = match (method.as_str(), path) {
        ("POST", "/google/calendars/primary/events") => {
            json!({ "id": body["id"], "summary": body["summary"], "created": true })
        }
        ("GET", p) if p.starts_with("/google/calendars/primary/events/") => {
            json!({ "id": p.rsplit('/').next(), "summary": "again", "created": false })
        }
        ("GET", "/hubspot/crm/v3/objects/contacts/151") => {
            json!({ "id": "151", "properties": { "email": "ada@example.com" } })
        }
        ("GET", "/slack/conversations.list") if query.contains("types=im") => {
            json!({ "ok": false, "error": "missing_scope", "needed": "im:read" })
        }
        ("GET", "/slack/conversations.list") if query.contains("types=mpim") => {
            json!({ "ok": false, "error": "internal_error" })
        }
        ("POST", "/slack/chat.postMessage") if body["channel"] == "nope" => {
            json!({ "ok": false, "error": "channel_not_found" })
        }
        ("POST", "/slack/chat.postMessage") => {
            json!({ "ok": true, "channel": body["channel"], "ts": "1700.01", "message": { "text": body["text"] } })
        }
        ("GET", "/slack/conversations.list") if query.contains("cursor=c2") => {
            json!({ "ok": true, "channels": [{ "id": "C2" }], "response_metadata": { "next_cursor": "" } })
        }
        ("GET", "/slack/conversations.list") => {
            json!({ "ok": true, "channels": [{ "id": "C1" }], "response_metadata": { "next_cursor": "c2" } })
        }
        ("PATCH", p) if p.starts_with("/hubspot/crm/v3/objects/contacts/") => {
            json!({ "id": p.rsplit('/').next(), "properties": body["properties"] })
        }
        ("GET", "/sf/services/data/v66.0/query") => json!({
            "totalSize": 3, "done": false, "records": [{ "Id": "1" }, { "Id": "2" }],
            "nextRecordsUrl": "/sf/services/data/v66.0/query/01g-2000",
        }),
        ("GET", "/sf/services/data/v66.0/query/01g-2000") => {
            json!({ "totalSize": 3, "done": true, "records": [{ "Id": "3" }] })
        }
        (_, "/echo-auth") => {
            json!({ "headers": { "authorization": auth, "x-api-key": key }, "raw": format!("{auth:?}") })
        }
        _ => json!({ "echo": path }),
    };
    (axum::http::StatusCode::OK, [("content-type", "application/json")], answer.to_string())
}

struct Fake {
    base: String,
    seen: Seen,
}

async fn start_fake() -> Result<Fake, Box<dyn std::error::Error>> {
    let seen: Seen = Arc::default();
    let router = axum::Router::new().fallback(fake).with_state(seen.clone());
    let addr = test_server::spawn(router).await?;
    Ok(Fake { base: format!("http://{addr}"), seen })
}

impl Fake {
    fn requests(&self) -> Vec<Value> {
        self.seen.lock().map(|seen| seen.clone()).unwrap_or_default()
    }
}

fn workflow(integration: &str, base_url: String, authorization: Authorization) -> Workflow {
    let mut workflow = Workflow::without_steps("w");
    workflow.integration = Some(integration.to_string());
    workflow.integration_api = Some(IntegrationApi { base_url, authorization, version: Some("v66.0".into()) });
    workflow
}

fn bearer() -> Authorization {
    Authorization::Bearer { token: "{{credentials.accessToken}}".into() }
}

fn action(name: &str, params: Value) -> Result<Step, serde_json::Error> {
    serde_json::from_value(json!({ "id": "a", "type": "action", "action": name, "params": params }))
}

async fn run(workflow: &Workflow, step: &Step) -> Result<Executed, Box<dyn std::error::Error>> {
    run_with(workflow, step, None).await
}

async fn run_with(
    workflow: &Workflow,
    step: &Step,
    secrets: Option<&dyn crate::connect::SecretSource>,
) -> Result<Executed, Box<dyn std::error::Error>> {
    let http = HttpClient::new(OutboundPolicy { allow_loopback: true, allow_private: false })?;
    let files = MemoryFiles::new();
    let execution = crate::record::sample_execution("e1");
    let mut ctx = crate::runner::context::base(&execution, &Default::default());
    ctx["credentials"] = json!({ "accessToken": "tok-1", "key": "k-9" });
    ctx["trigger"]["body"] = json!({ "text": "Deal {{won}}", "id": "a/b c" });
    let ports = StepPorts { http: &http, files: &files, secrets };
    Ok(execute(ports, &execution, workflow, step, "a", 1, &ctx).await)
}

/// Hands out `tok-2` once the step reports `tok-1` refused, counting the calls.
#[derive(Default)]
struct Renewing {
    calls: Mutex<Vec<String>>,
}

#[async_trait::async_trait]
impl crate::connect::SecretSource for Renewing {
    async fn settings(
        &self,
        _: &crate::record::Execution,
        _: &Workflow,
    ) -> Result<crate::connect::UserSettings, crate::connect::ConnectError> {
        Ok(Default::default())
    }

    async fn credentials(
        &self,
        _: &crate::record::Execution,
        _: &Workflow,
    ) -> Result<Option<crate::connect::UserSettings>, crate::connect::ConnectError> {
        Ok(None)
    }

    async fn credentials_after_rejection(
        &self,
        _: &crate::record::Execution,
        _: &Workflow,
        rejected: &str,
    ) -> Result<Option<crate::connect::UserSettings>, crate::connect::ConnectError> {
        self.calls.lock().map_err(|_| crate::connect::ConnectError::NoKeys)?.push(rejected.to_string());
        let values = json!({ "accessToken": "tok-2" }).as_object().cloned().unwrap_or_default();
        Ok(Some(crate::connect::UserSettings { values, secrets: vec!["tok-2".into()] }))
    }
}

#[tokio::test]
async fn an_expired_session_is_renewed_once_and_the_request_sent_again() -> TestResult {
    let fake = start_fake().await?;
    let wf = workflow("salesforce", format!("{}/sf", fake.base), bearer());
    let renewing = Renewing::default();
    let step = action("soql_query", json!({ "query": "SELECT Id FROM Expired" }))?;
    let executed = run_with(&wf, &step, Some(&renewing)).await?;
    assert_eq!(executed.record.status, StepStatus::Succeeded, "{:?}", executed.record.error);
    assert_eq!(
        renewing.calls.lock().map(|c| c.clone()).unwrap_or_default(),
        ["tok-1"],
        "one renewal, of the refused token"
    );
    let auths: Vec<Value> = fake.requests().iter().map(|r| r["auth"].clone()).collect();
    assert_eq!(auths, [json!("Bearer tok-1"), json!("Bearer tok-2"), json!("Bearer tok-2")]);
    assert!(!executed.record.input.to_string().contains("tok-2"), "the renewed token is not recorded");
    // Without a secret source (or for a provider whose 401 is not a session's end) it fails as answered.
    let executed = run(&wf, &step).await?;
    let error = executed.record.error.ok_or("no error")?;
    assert!(error.message.contains("HTTP 401") && !error.retryable, "{}", error.message);
    Ok(())
}

#[tokio::test]
async fn a_refused_page_fails_with_the_providers_code_and_transient_codes_are_retried() -> TestResult {
    let fake = start_fake().await?;
    let wf = workflow("slack", format!("{}/slack", fake.base), bearer());
    let executed = run(&wf, &action("list_channels", json!({ "types": "im" }))?).await?;
    let error = executed.record.error.ok_or("no error")?;
    assert!(error.message.contains("`missing_scope`") && !error.message.contains("items"), "{}", error.message);
    assert!(!error.retryable);
    let executed = run(&wf, &action("list_channels", json!({ "types": "mpim" }))?).await?;
    let error = executed.record.error.ok_or("no error")?;
    assert!(error.retryable && error.message.contains("`internal_error`"), "{}", error.message);
    Ok(())
}

#[tokio::test]
async fn a_retried_create_names_the_same_event_and_a_conflict_returns_the_existing_record() -> TestResult {
    let fake = start_fake().await?;
    let wf = workflow("googlecalendar", format!("{}/google", fake.base), bearer());
    let event = json!({ "calendarId": "primary", "summary": "Call", "start": {}, "end": {}, "sendUpdates": "all" });
    let first = run(&wf, &action("create_event", event.clone())?).await?;
    let second = run(&wf, &action("create_event", event)?).await?;
    let ids: Vec<Value> = fake.requests().iter().map(|r| r["body"]["id"].clone()).collect();
    assert_eq!(ids[0], ids[1], "the same execution and step name the same event");
    let id = ids[0].as_str().ok_or("no id")?;
    assert!(id.len() >= 5 && id.chars().all(|c| matches!(c, '0'..='9' | 'a'..='v')), "{id}: base32hex");
    assert_eq!(fake.requests()[0]["query"], "sendUpdates=all");
    assert_eq!(first.record.output, second.record.output);
    // Google answers 409 `duplicate`: the step returns the event its earlier attempt made.
    let again = json!({ "calendarId": "primary", "summary": "again", "start": {}, "end": {}, "eventId": "abc12345" });
    let executed = run(&wf, &action("create_event", again)?).await?;
    assert_eq!(executed.record.status, StepStatus::Succeeded, "{:?}", executed.record.error);
    assert_eq!(executed.record.output, Some(json!({ "id": "abc12345", "summary": "again", "created": false })));
    assert_eq!(executed.record.input["requests"][1]["method"], "GET");

    let wf = workflow("hubspot", format!("{}/hubspot", fake.base), bearer());
    let contact = json!({ "properties": { "email": "ada@example.com" } });
    let executed = run(&wf, &action("create_contact", contact)?).await?;
    assert_eq!(executed.record.output, Some(json!({ "id": "151", "properties": { "email": "ada@example.com" } })));
    Ok(())
}

#[tokio::test]
async fn max_pages_stops_early_and_says_so() -> TestResult {
    let fake = start_fake().await?;
    let wf = workflow("slack", format!("{}/slack", fake.base), bearer());
    let executed = run(&wf, &action("list_channels", json!({ "maxPages": 1 }))?).await?;
    assert_eq!(executed.record.output, Some(json!({ "channels": [{ "id": "C1" }], "pages": 1, "truncated": true })));
    assert_eq!(fake.requests().len(), 1);
    let executed = run(&wf, &action("list_channels", json!({ "maxPages": 0 }))?).await?;
    let error = executed.record.error.ok_or("no error")?;
    assert!(error.message.contains("`params.maxPages` must be a whole number from 1 to 1000"), "{}", error.message);
    Ok(())
}

#[tokio::test]
async fn slack_send_message_posts_the_params_with_the_users_token_and_leaves_out_absent_ones() -> TestResult {
    let fake = start_fake().await?;
    let wf = workflow("slack", format!("{}/slack/", fake.base), bearer());
    let step = action("send_message", json!({ "channel": "C1", "text": "{{trigger.body.text}}" }))?;
    let executed = run(&wf, &step).await?;
    assert_eq!(executed.record.status, StepStatus::Succeeded, "{:?}", executed.record.error);
    assert_eq!(
        executed.record.output,
        Some(json!({ "channel": "C1", "ts": "1700.01", "message": { "text": "Deal {{won}}" } }))
    );
    let sent = fake.requests();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0]["method"], "POST");
    assert_eq!(sent[0]["path"], "/slack/chat.postMessage");
    assert_eq!(sent[0]["auth"], "Bearer tok-1");
    // A param's value is sent as it is (never templated again); absent optional params are left out.
    assert_eq!(sent[0]["body"], json!({ "channel": "C1", "text": "Deal {{won}}" }));
    let recorded = executed.record.input.to_string();
    assert!(!recorded.contains("tok-1"), "{recorded}");
    assert_eq!(executed.record.input["params"], json!({ "channel": "C1", "text": "Deal {{won}}" }));
    Ok(())
}

#[tokio::test]
async fn a_slack_answer_with_ok_false_fails_the_step_with_slacks_error() -> TestResult {
    let fake = start_fake().await?;
    let wf = workflow("slack", format!("{}/slack", fake.base), bearer());
    let executed = run(&wf, &action("send_message", json!({ "channel": "nope", "text": "hi" }))?).await?;
    assert_eq!(executed.record.status, StepStatus::Failed);
    let error = executed.record.error.ok_or("no error")?;
    assert!(!error.retryable);
    assert!(error.message.contains("channel_not_found"), "{}", error.message);
    Ok(())
}

#[tokio::test]
async fn slack_list_channels_follows_the_cursor_through_every_page() -> TestResult {
    let fake = start_fake().await?;
    let wf = workflow("slack", format!("{}/slack", fake.base), bearer());
    let executed = run(&wf, &action("list_channels", json!({ "limit": 1 }))?).await?;
    assert_eq!(
        executed.record.output,
        Some(json!({ "channels": [{ "id": "C1" }, { "id": "C2" }], "pages": 2, "truncated": false }))
    );
    let sent = fake.requests();
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[0]["query"], "limit=1");
    assert!(sent[1]["query"].as_str().is_some_and(|q| q.contains("cursor=c2") && q.contains("limit=1")));
    assert!(sent.iter().all(|s| s["auth"] == "Bearer tok-1"));
    Ok(())
}

#[tokio::test]
async fn hubspot_update_contact_patches_the_percent_encoded_id() -> TestResult {
    let fake = start_fake().await?;
    let wf = workflow("hubspot", format!("{}/hubspot", fake.base), bearer());
    let step = action(
        "update_contact",
        json!({ "contactId": "{{trigger.body.id}}", "properties": { "lifecyclestage": "customer" } }),
    )?;
    let executed = run(&wf, &step).await?;
    assert_eq!(executed.record.status, StepStatus::Succeeded, "{:?}", executed.record.error);
    let sent = fake.requests();
    assert_eq!(sent[0]["method"], "PATCH");
    // `a/b c` stays one path segment.
    assert_eq!(sent[0]["path"], "/hubspot/crm/v3/objects/contacts/a%2Fb%20c");
    assert_eq!(sent[0]["body"], json!({ "properties": { "lifecyclestage": "customer" } }));
    Ok(())
}

#[tokio::test]
async fn salesforce_soql_query_follows_next_records_url() -> TestResult {
    let fake = start_fake().await?;
    let wf = workflow("salesforce", format!("{}/sf", fake.base), bearer());
    let executed = run(&wf, &action("soql_query", json!({ "query": "SELECT Id FROM Account" }))?).await?;
    let output = executed.record.output.ok_or("no output")?;
    assert_eq!(output["records"], json!([{ "Id": "1" }, { "Id": "2" }, { "Id": "3" }]));
    assert_eq!(output["pages"], 2);
    let sent = fake.requests();
    assert_eq!(sent[0]["query"], "q=SELECT+Id+FROM+Account");
    assert_eq!(sent[1]["path"], "/sf/services/data/v66.0/query/01g-2000");
    assert_eq!(sent[1]["auth"], "Bearer tok-1");
    Ok(())
}

#[tokio::test]
async fn the_custom_request_carries_the_integrations_header_and_records_it_redacted() -> TestResult {
    let fake = start_fake().await?;
    let auth = Authorization::Header { name: "X-API-Key".into(), value: "{{credentials.key}}".into() };
    let wf = workflow("custom.acme", format!("{}/custom", fake.base), auth);
    let step = action(
        "request",
        json!({ "method": "POST", "path": "/things", "body": { "n": 1 }, "headers": { "X-Trace": "t" } }),
    )?;
    let executed = run(&wf, &step).await?;
    assert_eq!(executed.record.status, StepStatus::Succeeded, "{:?}", executed.record.error);
    let sent = fake.requests();
    assert_eq!((sent[0]["method"].as_str(), sent[0]["path"].as_str()), (Some("POST"), Some("/custom/things")));
    assert_eq!(sent[0]["key"], "k-9");
    assert_eq!(sent[0]["body"], json!({ "n": 1 }));
    assert_eq!(executed.record.output.ok_or("no output")?["body"], json!({ "echo": "/custom/things" }));
    assert!(!executed.record.input.to_string().contains("k-9"));
    Ok(())
}

#[tokio::test]
async fn bad_params_and_escaping_paths_fail_terminally_before_anything_is_sent() -> TestResult {
    let fake = start_fake().await?;
    let wf = workflow("custom.acme", format!("{}/custom", fake.base), bearer());
    for (params, expected) in [
        (json!({ "path": "/../admin" }), "must be a path"),
        (json!({ "path": "//evil.example/x" }), "must be a path"),
        (json!({ "path": "/a/%2E%2e/admin" }), "must be a path"),
        (json!({ "path": "/a/..\\admin" }), "must be a path"),
        (json!({ "path": "/x", "method": "TRACE" }), "must be one of"),
        (json!({ "path": "{{trigger.body.nothing}}" }), "params.path"),
    ] {
        let executed = run(&wf, &action("request", params)?).await?;
        let error = executed.record.error.ok_or("no error")?;
        assert!(!error.retryable && error.message.contains(expected), "{}", error.message);
    }
    assert!(fake.requests().is_empty());
    for path in ["/x/%2e%2e%2f%2e%2e%2fadmin", "/a/..%2f..%2fadmin", "/a/..%5cadmin", "/a/%00", "/a/..;/admin"] {
        let executed = run(&wf, &action("request", json!({ "path": path }))?).await?;
        let error = executed.record.error.ok_or("no error")?;
        assert!(!error.retryable && error.message.contains("must be a path under `apiBaseUrl`"), "{}", error.message);
    }
    assert!(fake.requests().is_empty());
    let mut no_api = wf.clone();
    no_api.integration_api = None;
    let executed = run(&no_api, &action("request", json!({ "path": "/x" }))?).await?;
    assert!(executed.record.error.is_some_and(|e| e.message.contains("no API configured")));
    assert!(matches!(action("request", json!({}))?.kind, StepKind::Action(_)));
    Ok(())
}

/// A static file server that normalises as lenient servers and proxies do: it percent-decodes
/// the path until it is stable, reads `\\` as `/` and resolves `.` and `..` segments, then serves
/// the file under its root. Every request's path and what it served is kept.
struct FileServer {
    base: String,
    root: std::path::PathBuf,
    served: Seen,
}

const SECRET: &str = "the admin secret, outside /ledger";

async fn normalising_file_server() -> Result<FileServer, Box<dyn std::error::Error>> {
    let root = std::env::temp_dir().join(format!("sluice-files-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(root.join("ledger/reports"))?;
    std::fs::write(root.join("ledger/reports/q1.txt"), "q1 figures")?;
    std::fs::write(root.join("admin"), SECRET)?;
    let served: Seen = Arc::default();
    let files = root.clone();
    let log = served.clone();
    let router = axum::Router::new().fallback(move |uri: Uri| {
        let (files, log) = (files.clone(), log.clone());
        async move {
            let mut path = uri.path().to_string();
            loop {
                let decoded = decode(&path);
                if decoded == path {
                    break;
                }
                path = decoded;
            }
            let mut resolved: Vec<&str> = Vec::new();
            for segment in path.split(['/', '\\']) {
                match segment {
                    "" | "." => {}
                    ".." => {
                        resolved.pop();
                    }
                    name => resolved.push(name),
                }
            }
            let file = resolved.iter().fold(files.clone(), |file, name| file.join(name));
            let answer = std::fs::read_to_string(&file).ok();
            if let Ok(mut log) = log.lock() {
                log.push(json!({ "path": uri.path(), "file": resolved.join("/"), "served": answer }));
            }
            match answer {
                Some(text) => (axum::http::StatusCode::OK, text),
                None => (axum::http::StatusCode::NOT_FOUND, "no such file".to_string()),
            }
        }
    });
    let addr = test_server::spawn(router).await?;
    Ok(FileServer { base: format!("http://{addr}/ledger"), root, served })
}

/// `%XX` decoded once (lossy: as a lenient server would).
fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = text.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl Drop for FileServer {
    fn drop(&mut self) {
        let _removed = std::fs::remove_dir_all(&self.root);
    }
}

/// Every way of writing "two segments up" that a normalising server resolves.
const ESCAPES: &[&str] = &[
    "/../admin",
    "/a/../../admin",
    "/a/..%2f..%2fadmin",
    "/a/..%2F..%2Fadmin",
    "/x/%2e%2e%2f%2e%2e%2fadmin",
    "/x/%2E%2E%2F%2E%2E%2Fadmin",
    "/a/%2e%2e/%2e%2e/admin",
    "/a/.%2e/.%2e/admin",
    "/a/%2e./%2e./admin",
    "/a/..%5c..%5cadmin",
    "/a/..%5C..%5Cadmin",
    "/a/..\\..\\admin",
    "/a/..%252f..%252fadmin",
    "/a/%252e%252e/%252e%252e/admin",
    "/a/%252e%252e%252f%252e%252e%252fadmin",
    "/a/..%255c..%255cadmin",
    "/a/%25252e%25252e%25252f%25252e%25252e%25252fadmin",
];

#[tokio::test]
async fn no_encoding_of_dot_segments_or_separators_reaches_a_file_outside_the_api_base_path() -> TestResult {
    let server = normalising_file_server().await?;
    let wf = workflow("custom.acme", server.base.clone(), bearer());

    // The server is a real threat: sent as they are, every form reaches the secret.
    let client = reqwest::Client::new();
    for escape in ESCAPES {
        let answer = client.get(format!("{}{escape}", server.base)).send().await?.text().await?;
        assert_eq!(answer, SECRET, "the file server does not resolve `{escape}`; the test proves nothing for it");
    }
    let served_directly = server.served.lock().map(|s| s.len()).unwrap_or_default();
    assert_eq!(served_directly, ESCAPES.len());

    // Through the action, none is sent.
    for escape in ESCAPES {
        let executed = run(&wf, &action("request", json!({ "path": escape }))?).await?;
        assert_eq!(executed.record.status, StepStatus::Failed, "`{escape}` was sent: {:?}", executed.record.output);
        let error = executed.record.error.ok_or("no error")?;
        assert!(!error.retryable && error.message.contains("must be a path under `apiBaseUrl`"), "{}", error.message);
    }
    let served = server.served.lock().map(|s| s.clone()).unwrap_or_default();
    assert_eq!(served.len(), served_directly, "the action sent: {:?}", &served[served_directly..]);

    // A path under the base path is still served.
    let executed = run(&wf, &action("request", json!({ "path": "/reports/q1.txt" }))?).await?;
    assert_eq!(executed.record.status, StepStatus::Succeeded, "{:?}", executed.record.error);
    assert!(executed.record.output.ok_or("no output")?.to_string().contains("q1 figures"));
    Ok(())
}

/// An API that echoes the request's credentials gives back nothing a record may keep: not the
/// basic header's base64 (any alphabet, padded or not), the password, a bearer token or a
/// templated header's value — on an action and on a plain request step alike.
#[tokio::test]
async fn credentials_echoed_back_in_any_form_are_redacted_from_the_output() -> TestResult {
    use base64::Engine;
    let fake = start_fake().await?;
    let basic =
        Authorization::Basic { username: "{{credentials.key}}".into(), password: "{{credentials.accessToken}}".into() };
    let header = Authorization::Header { name: "X-API-Key".into(), value: "key={{credentials.key}}!".into() };
    let request = || action("request", json!({ "method": "GET", "path": "/echo-auth" }));
    let pair = "k-9:tok-1";
    let engines = [base64::engine::general_purpose::STANDARD, base64::engine::general_purpose::URL_SAFE_NO_PAD];
    let forbidden: Vec<String> =
        engines.iter().map(|e| e.encode(pair)).chain(["tok-1".to_string(), "key=k-9!".to_string()]).collect();
    for authorization in [basic, header, bearer()] {
        let wf = workflow("custom.echo", format!("{}/", fake.base), authorization.clone());
        let executed = run(&wf, &request()?).await?;
        assert_eq!(executed.record.status, StepStatus::Succeeded, "{:?}", executed.record.error);
        let recorded = serde_json::to_string(&executed.record)?;
        for secret in &forbidden {
            assert!(!recorded.contains(secret.as_str()), "{authorization:?}: `{secret}` in {recorded}");
        }
        assert!(recorded.contains(crate::connect::REDACTED), "{recorded}");
    }
    let sent = fake.requests();
    let expected = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(pair));
    assert_eq!(sent[0]["auth"], json!(expected), "the real header was sent");

    // A plain request step with basic credentials, echoed back.
    let step: Step = serde_json::from_value(json!({
        "id": "a", "type": "request", "method": "GET", "url": format!("{}/echo-auth", fake.base),
        "auth": { "type": "basic", "username": "{{credentials.key}}", "password": "{{credentials.accessToken}}" },
    }))?;
    let executed = run(&Workflow::without_steps("w"), &step).await?;
    let recorded = serde_json::to_string(&executed.record)?;
    for secret in &forbidden[..3] {
        assert!(!recorded.contains(secret.as_str()), "request step: `{secret}` in {recorded}");
    }
    Ok(())
}

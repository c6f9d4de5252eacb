//! Failure notifications end to end on both backends: a project registers destinations, an
//! execution fails, and each destination receives a Standard Webhooks `execution.failed`
//! event whose signature this test verifies with its own HMAC (the `hmac` and `sha2` crates,
//! not the stack's aws-lc-rs). A receiver that answers 500 first gets the same notification
//! again (same `webhook-id`, a valid signature); a deleted destination gets no further
//! attempt; the secret is shown once and is in no listing, log line, database byte or table
//! item; bad input gets 400s.

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::{any, post};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::Sha256;
use sluice_e2e::fake_api::serve_locally;
use sluice_e2e::stack::{Backend, StackConfig, TestStack, aws_endpoint, aws_sdk_config};

const PUBLIC_URL: &str = "https://sluice.example.com";
/// Trigger data no notification may carry.
const MARKER: &str = "trigger-data-never-notified";

/// Everything the stacks of this process log, to look for secrets in.
fn logs() -> &'static Mutex<Vec<u8>> {
    static LOGS: OnceLock<Mutex<Vec<u8>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        #[derive(Clone, Copy)]
        struct Sink;
        impl Write for Sink {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                logs().lock().unwrap_or_else(|p| p.into_inner()).extend_from_slice(bytes);
                Ok(bytes.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let installed = tracing_subscriber::fmt()
            .with_env_filter("sluice_shared=debug,sluice_cli=debug")
            .with_ansi(false)
            .with_writer(|| Sink)
            .try_init();
        if let Err(error) = installed {
            eprintln!("logs are not captured: {error}");
        }
        Mutex::new(Vec::new())
    })
}

fn captured_logs() -> String {
    String::from_utf8_lossy(&logs().lock().unwrap_or_else(|p| p.into_inner())).into_owned()
}

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Received {
    headers: http::HeaderMap,
    body: String,
}

/// A local receiver: `/hook` answers 500 the first time and 200 after, `/gone` always 500,
/// `/crm` 404 (what makes the workflow fail).
struct Receiver {
    base: String,
    seen: Arc<Mutex<Vec<(String, Received)>>>,
}

impl Receiver {
    async fn start() -> Receiver {
        let seen: Arc<Mutex<Vec<(String, Received)>>> = Arc::default();
        let record = |path: &'static str, seen: Arc<Mutex<Vec<(String, Received)>>>| {
            post(move |headers: http::HeaderMap, body: String| {
                let seen = seen.clone();
                async move {
                    let mut seen = seen.lock().unwrap_or_else(|p| p.into_inner());
                    seen.push((path.to_string(), Received { headers, body }));
                    let before = seen.iter().filter(|(p, _)| p == path).count() - 1;
                    match (path, before) {
                        ("/hook", 0) | ("/gone", _) => StatusCode::INTERNAL_SERVER_ERROR,
                        _ => StatusCode::OK,
                    }
                }
            })
        };
        let app = Router::new()
            .route("/hook", record("/hook", seen.clone()))
            .route("/gone", record("/gone", seen.clone()))
            .route("/crm", any(|| async { StatusCode::NOT_FOUND }));
        Receiver { base: serve_locally(app).await, seen }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn at(&self, path: &str) -> Vec<Received> {
        let seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.iter().filter(|(p, _)| p == path).map(|(_, r)| r.clone()).collect()
    }

    async fn wait_for(&self, path: &str, count: usize, within: Duration) -> Vec<Received> {
        let deadline = Instant::now() + within;
        loop {
            let got = self.at(path);
            if got.len() >= count {
                return got;
            }
            assert!(Instant::now() < deadline, "{path}: {} of {count} requests after {within:?}", got.len());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Verifies a Standard Webhooks signature with an implementation of its own; returns the
/// webhook id.
fn verify(received: &Received, secret: &str) -> String {
    let header = |name: &str| {
        received
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_else(|| panic!("no {name} header"))
            .to_string()
    };
    let (id, timestamp) = (header("webhook-id"), header("webhook-timestamp"));
    let seconds: i64 = timestamp.parse().expect("unix seconds");
    assert!((chrono::Utc::now().timestamp() - seconds).abs() < 120, "a fresh timestamp");
    let key = STANDARD.decode(secret.strip_prefix("whsec_").expect("whsec_ secret")).expect("base64 secret");
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("any key length");
    mac.update(format!("{id}.{timestamp}.{}", received.body).as_bytes());
    let expected = STANDARD.encode(mac.finalize().into_bytes());
    let signatures = header("webhook-signature");
    assert!(
        signatures.split(' ').any(|s| s.strip_prefix("v1,") == Some(expected.as_str())),
        "no valid signature in {signatures}"
    );
    id
}

fn destinations_url(stack: &TestStack) -> String {
    format!("{}/projects/{}/notification-destinations", stack.base_url, stack.project_id)
}

async fn create(stack: &TestStack, body: Value) -> (StatusCode, Value) {
    let answer = stack
        .client()
        .post(destinations_url(stack))
        .bearer_auth(&stack.api_key)
        .json(&body)
        .send()
        .await
        .expect("post");
    let status = answer.status();
    (status, answer.json().await.unwrap_or(Value::Null))
}

async fn created(stack: &TestStack, url: String) -> (String, String) {
    let (status, body) = create(stack, json!({ "url": url, "description": "on-call" })).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let secret = body["secret"].as_str().expect("the secret, once").to_string();
    assert!(secret.starts_with("whsec_"), "{secret}");
    assert_eq!(body["url"], json!(url));
    assert!(body["createdAt"].is_string(), "{body}");
    (body["id"].as_str().expect("id").to_string(), secret)
}

async fn bad_input_is_refused(stack: &TestStack) {
    let url = destinations_url(stack);
    let unauthorised = stack.client().post(&url).json(&json!({ "url": "https://a.example.com" })).send().await;
    assert_eq!(unauthorised.expect("post").status(), StatusCode::UNAUTHORIZED);
    let wrong_key = stack.client().get(&url).bearer_auth("sk_wrong").send().await.expect("get");
    assert_eq!(wrong_key.status(), StatusCode::UNAUTHORIZED);
    let not_json = stack.client().post(&url).bearer_auth(&stack.api_key).body("{").send().await.expect("post");
    assert_eq!(not_json.status(), StatusCode::BAD_REQUEST);
    for (body, expected) in [
        (json!({}), "`url` is required"),
        (json!([]), "JSON object"),
        (json!({ "url": 7 }), "`url` must be a string"),
        (json!({ "url": "ftp://hooks.example.com/" }), "https"),
        (json!({ "url": "https://user:pass@hooks.example.com/" }), "user name or password"),
        (json!({ "url": "https://169.254.169.254/latest/meta-data/" }), "outbound network guard"),
        (json!({ "url": "https://10.1.2.3/hook" }), "outbound network guard"),
        (json!({ "url": format!("https://hooks.example.com/{}", "a".repeat(2048)) }), "2048"),
        (json!({ "url": "https://hooks.example.com/", "description": 1 }), "`description` must be a string"),
        (json!({ "url": "https://hooks.example.com/", "description": "d".repeat(501) }), "500"),
        (json!({ "url": "https://hooks.example.com/", "secret": "mine" }), "unknown field `secret`"),
    ] {
        let (status, answer) = create(stack, body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {answer}");
        assert_eq!(answer["error"]["code"], "bad_request", "{answer}");
        let message = answer["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(expected), "{body}: {message}");
    }
    let delete = stack.client().delete(format!("{url}/nope")).bearer_auth(&stack.api_key).send().await.expect("delete");
    assert_eq!(delete.status(), StatusCode::NOT_FOUND);
    let test = stack.client().post(format!("{url}/nope/test")).bearer_auth(&stack.api_key).send().await.expect("test");
    assert_eq!(test.status(), StatusCode::NOT_FOUND);
}

async fn list(stack: &TestStack) -> (String, Value) {
    let answer = stack.client().get(destinations_url(stack)).bearer_auth(&stack.api_key).send().await.expect("list");
    assert_eq!(answer.status(), StatusCode::OK);
    let text = answer.text().await.expect("text");
    let body = serde_json::from_str(&text).expect("JSON");
    (text, body)
}

async fn failure_notifications_arrive_signed_at_least_once(backend: Backend) {
    logs();
    let mut config = StackConfig::default();
    config.env.insert("SLUICE_BASE_URL".to_string(), PUBLIC_URL.to_string());
    let Some(stack) = TestStack::start_with(backend, config).await else { return };
    let receiver = Receiver::start().await;
    bad_input_is_refused(&stack).await;

    let (hook, secret) = created(&stack, receiver.url("/hook")).await;
    let (gone, gone_secret) = created(&stack, receiver.url("/gone")).await;
    let (text, listed) = list(&stack).await;
    let ids: Vec<&str> =
        listed["destinations"].as_array().expect("list").iter().filter_map(|d| d["id"].as_str()).collect();
    assert_eq!(ids, [hook.as_str(), gone.as_str()], "in creation order");
    assert_eq!(listed["destinations"][0]["description"], "on-call");
    assert!(listed["destinations"][0].get("secret").is_none(), "{listed}");
    assert!(!text.contains(&secret[6..]) && !text.contains(&gone_secret[6..]), "no secret in a listing");

    stack
        .deploy(&format!(
            "id: failing\ntrigger: {{ type: request }}\nsteps:\n  - {{ id: push, type: request, url: \"{}\" }}\n",
            receiver.url("/crm")
        ))
        .await;
    let answer = stack.trigger("failing", json!({ "email": MARKER })).await;
    assert_eq!(answer.status(), StatusCode::ACCEPTED);
    let execution: Value = answer.json().await.expect("JSON");
    let execution = execution["executionId"].as_str().expect("executionId").to_string();
    let record = stack.wait_until_ended(&execution, Duration::from_secs(30)).await;
    assert_eq!(record["status"], "failed", "{record:#}");

    // The destination that always fails: deleted after its first attempt, it gets no other.
    let first_gone = receiver.wait_for("/gone", 1, Duration::from_secs(30)).await;
    let deleted =
        stack.client().delete(format!("{}/{gone}", destinations_url(&stack))).bearer_auth(&stack.api_key).send().await;
    assert_eq!(deleted.expect("delete").status(), StatusCode::NO_CONTENT);
    assert_eq!(verify(&first_gone[0], &gone_secret), format!("msg_{execution}_{gone}"));

    // 500 first, then the same notification again (after the first retry delay, 5 s).
    let deliveries = receiver.wait_for("/hook", 2, Duration::from_secs(40)).await;
    let expected_id = format!("msg_{execution}_{hook}");
    for delivery in &deliveries {
        assert_eq!(verify(delivery, &secret), expected_id, "a stable webhook-id");
        assert_eq!(delivery.headers.get("content-type").and_then(|v| v.to_str().ok()), Some("application/json"));
    }
    assert_eq!(deliveries[0].body, deliveries[1].body, "the same event every attempt");
    let event: Value = serde_json::from_str(&deliveries[1].body).expect("a JSON event");
    assert_eq!(event["type"], "execution.failed");
    let data = &event["data"];
    assert_eq!(data["executionId"], json!(execution));
    assert_eq!(data["projectId"], json!(stack.project_id));
    assert_eq!(data["workflowId"], "failing");
    assert_eq!(data["workflowVersion"], 1);
    assert_eq!(data["userId"], "user-1");
    assert_eq!(data["failedStep"], "push");
    assert!(data["error"].as_str().is_some_and(|e| e.contains("404")), "{data}");
    assert_eq!(data["startedAt"], record["startedAt"]);
    assert_eq!(data["endedAt"], record["endedAt"]);
    assert_eq!(event["timestamp"], record["endedAt"]);
    assert_eq!(data["dashboardUrl"], json!(format!("{PUBLIC_URL}/dashboard#/executions/{execution}")));
    assert!(!deliveries[1].body.contains(MARKER), "no trigger data: {}", deliveries[1].body);

    // Past the deleted destination's retry (5 s after its first attempt): nothing more came.
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert_eq!(receiver.at("/gone").len(), 1, "a deleted destination gets no further attempt");
    assert_eq!(receiver.at("/hook").len(), 2, "a delivered notification is not sent again");

    // A test event, now, answered with what the receiver said.
    let test = stack
        .client()
        .post(format!("{}/{hook}/test", destinations_url(&stack)))
        .bearer_auth(&stack.api_key)
        .send()
        .await
        .expect("test");
    assert_eq!(test.status(), StatusCode::OK);
    let test: Value = test.json().await.expect("JSON");
    assert_eq!(test["receiver"], json!({ "delivered": true, "status": 200 }), "{test}");
    let tests = receiver.wait_for("/hook", 3, Duration::from_secs(5)).await;
    assert_eq!(verify(&tests[2], &secret), test["webhookId"].as_str().expect("id"));
    assert_eq!(serde_json::from_str::<Value>(&tests[2].body).expect("JSON")["type"], "test");

    // At most 10 per project (one is there: 9 more fit, the 11th does not).
    for _ in 0..9 {
        created(&stack, "https://hooks.example.com/more".to_string()).await;
    }
    let (status, answer) = create(&stack, json!({ "url": "https://hooks.example.com/eleventh" })).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert!(answer["error"]["message"].as_str().is_some_and(|m| m.contains("at most 10")), "{answer}");
    assert_eq!(list(&stack).await.1["destinations"].as_array().map(Vec::len), Some(10));

    // The secrets are in no log line and, on SQLite, in no byte of the database.
    let logged = captured_logs();
    assert!(logged.contains("failure notification"), "logs are captured");
    for secret in [&secret, &gone_secret] {
        assert!(!logged.contains(&secret[6..]), "a secret was logged");
    }
    if let (Some(aws), Some(endpoint)) = (&stack.aws, aws_endpoint()) {
        // Every item of the stack's table, as DynamoDB holds it.
        let client = aws_sdk_dynamodb::Client::new(&aws_sdk_config(&endpoint).await);
        let scan = client.scan().table_name(&aws.table).send().await.expect("scan the table");
        let items = format!("{:?}", scan.items());
        assert!(items.contains("hooks.example.com/more"), "the scan sees the destinations");
        for secret in [&secret, &gone_secret] {
            assert!(!items.contains(&secret[6..]), "a secret is stored in the clear");
        }
    }
    if let Some(file) = stack.sqlite_file() {
        let mut bytes = std::fs::read(&file).expect("the database file");
        if let Ok(wal) = std::fs::read(file.with_extension("db-wal")) {
            bytes.extend(wal);
        }
        let key = STANDARD.decode(&secret[6..]).expect("base64");
        for needle in [&secret.as_bytes()[6..], &key[..], b"hooks.example.com/more"] {
            let found = bytes.windows(needle.len()).any(|w| w == needle);
            // The URL is stored in the clear (proving the search looks at the right bytes);
            // the secret, in neither form.
            assert_eq!(found, needle == b"hooks.example.com/more", "{:?}", String::from_utf8_lossy(needle));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_failure_notifications_arrive_signed_at_least_once() {
    failure_notifications_arrive_signed_at_least_once(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_failure_notifications_arrive_signed_at_least_once() {
    failure_notifications_arrive_signed_at_least_once(Backend::Aws).await;
}

//! End-to-end scenarios of the Request step as the receiving API sees it: body types (form,
//! multipart with files, raw), auth, methods, query and headers, failures on non-2xx answers,
//! the Idempotency-Key across retries and per-step timeouts. The fake API is a real local HTTP
//! server that captures every request (method, path, query, headers, raw body bytes), so each
//! scenario asserts what went over the wire. Run on SQLite and on DynamoDB + SQS (the local
//! AWS-API server).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use sluice_e2e::fake_api::serve_locally;
use sluice_e2e::on_both_backends;
use sluice_e2e::record::{json_of, step};
use sluice_e2e::stack::{Backend, TestStack};

const LONG: Duration = Duration::from_secs(30);

on_both_backends! {
    form_body_is_sent_url_encoded: LONG;
    multipart_body_carries_text_fields_and_downloaded_files: LONG;
    raw_body_is_sent_byte_for_byte_with_its_content_type: LONG;
    basic_and_bearer_auth_send_the_authorization_header: LONG;
    put_patch_and_delete_send_templated_query_and_headers: LONG;
    non_2xx_answer_fails_the_step_with_status_and_body: LONG;
    idempotency_key_is_the_same_across_retries: LONG;
    step_timeout_fails_a_slow_request: LONG;
}

// ---------------------------------------------------------------------------------------------
// The capturing fake API.

/// One request as the fake API received it.
#[derive(Debug, Clone)]
struct Received {
    method: String,
    path: String,
    /// The raw query string, as sent (still percent-encoded).
    query: Option<String>,
    headers: HeaderMap,
    body: Bytes,
}

impl Received {
    /// The only value of header `name`; fails if it is missing, repeated or not text.
    fn header(&self, name: &str) -> &str {
        let values: Vec<_> = self.headers.get_all(name).iter().collect();
        assert_eq!(values.len(), 1, "header `{name}` of {} {}: {values:?}", self.method, self.path);
        values[0].to_str().expect("header value is text")
    }

    /// The query parameters, decoded.
    fn query_pairs(&self) -> Vec<(String, String)> {
        form_decode(self.query.as_deref().unwrap_or_default())
    }

    fn body_text(&self) -> &str {
        std::str::from_utf8(&self.body).expect("UTF-8 body")
    }
}

/// What the fake API answers to one request.
#[derive(Debug, Clone)]
struct Reply {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
    /// How long it waits before answering.
    delay: Duration,
}

impl Reply {
    fn json(status: u16, body: Value) -> Reply {
        Reply {
            status,
            headers: vec![("content-type", "application/json".into())],
            body: body.to_string().into_bytes(),
            delay: Duration::ZERO,
        }
    }

    fn bytes(content_type: &str, body: Vec<u8>) -> Reply {
        Reply { status: 200, headers: vec![("content-type", content_type.into())], body, delay: Duration::ZERO }
    }

    fn header(mut self, name: &'static str, value: &str) -> Reply {
        self.headers.push((name, value.into()));
        self
    }

    fn after(mut self, delay: Duration) -> Reply {
        self.delay = delay;
        self
    }
}

#[derive(Default)]
struct Captured {
    received: Vec<Received>,
    /// Replies to give, by path, in order; then `200 {"ok": true}`.
    replies: HashMap<String, VecDeque<Reply>>,
    /// Paths whose reply was sent (after its delay).
    answered: Vec<String>,
}

type Shared = Arc<Mutex<Captured>>;

/// A running capturing API; the server stops with the test's runtime.
struct CaptureApi {
    base_url: String,
    state: Shared,
}

impl CaptureApi {
    async fn start() -> CaptureApi {
        let state = Shared::default();
        let app = Router::new().fallback(capture).with_state(state.clone());
        CaptureApi { base_url: serve_locally(app).await, state }
    }

    /// Queues `reply` as the next answer to `path`.
    fn reply(&self, path: &str, reply: Reply) {
        self.state.lock().expect("state").replies.entry(path.into()).or_default().push_back(reply);
    }

    /// Every request to `path`, in order of arrival.
    fn received(&self, path: &str) -> Vec<Received> {
        self.state.lock().expect("state").received.iter().filter(|r| r.path == path).cloned().collect()
    }

    /// The one request to `path`.
    fn only(&self, path: &str) -> Received {
        let mut received = self.received(path);
        assert_eq!(received.len(), 1, "requests to {path}: {received:#?}");
        received.remove(0)
    }

    fn answered(&self, path: &str) -> usize {
        self.state.lock().expect("state").answered.iter().filter(|p| *p == path).count()
    }
}

async fn capture(State(state): State<Shared>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let path = uri.path().to_string();
    let reply = {
        let mut state = state.lock().expect("state");
        state.received.push(Received {
            method: method.to_string(),
            path: path.clone(),
            query: uri.query().map(String::from),
            headers,
            body,
        });
        state.replies.get_mut(&path).and_then(VecDeque::pop_front)
    };
    let reply = reply.unwrap_or_else(|| Reply::json(200, json!({ "ok": true })));
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    state.lock().expect("state").answered.push(path);
    let mut response = (StatusCode::from_u16(reply.status).expect("status"), reply.body).into_response();
    for (name, value) in reply.headers {
        response.headers_mut().insert(name, value.parse().expect("header value"));
    }
    response
}

// ---------------------------------------------------------------------------------------------
// Decoding what was received.

/// `application/x-www-form-urlencoded` (or a query string) decoded into its pairs, in order.
fn form_decode(encoded: &str) -> Vec<(String, String)> {
    fn decode(text: &str) -> String {
        let bytes = text.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'+' => out.push(b' '),
                b'%' => {
                    let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).expect("percent escape");
                    out.push(u8::from_str_radix(hex, 16).expect("hex digits"));
                    i += 2;
                }
                byte => out.push(byte),
            }
            i += 1;
        }
        String::from_utf8(out).expect("decoded UTF-8")
    }
    encoded
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(name), decode(value))
        })
        .collect()
}

/// Asserts `encoded` is properly form-encoded: `name=value` pairs joined by `&`, each with one
/// `=`, and only unreserved characters, `+` and `%XX` escapes in names and values.
fn assert_form_encoded(encoded: &str) {
    for pair in encoded.split('&') {
        assert_eq!(pair.matches('=').count(), 1, "pair `{pair}` of `{encoded}`");
        let unescaped = |c: char| c.is_ascii_alphanumeric() || "-._*~+%=".contains(c);
        assert!(pair.chars().all(unescaped), "pair `{pair}` of `{encoded}` has unescaped characters");
    }
}

fn sorted(mut pairs: Vec<(String, String)>) -> Vec<(String, String)> {
    pairs.sort();
    pairs
}

fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
    sorted(expected.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect())
}

/// One part of a `multipart/form-data` body.
#[derive(Debug)]
struct Part {
    name: String,
    filename: Option<String>,
    content_type: Option<String>,
    body: Vec<u8>,
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|window| window == needle)
}

/// Parses a `multipart/form-data` body with the boundary of `content_type` (RFC 7578).
fn multipart_parts(content_type: &str, body: &[u8]) -> Vec<Part> {
    let mut params = content_type.split(';').map(str::trim);
    assert_eq!(params.next(), Some("multipart/form-data"), "{content_type}");
    let boundary = params
        .find_map(|p| p.strip_prefix("boundary="))
        .map(|b| b.trim_matches('"'))
        .unwrap_or_else(|| panic!("no boundary in {content_type}"));
    let opening = format!("--{boundary}\r\n");
    assert!(body.starts_with(opening.as_bytes()), "the body does not open with the boundary");
    let delimiter = format!("\r\n--{boundary}");
    let mut rest = &body[opening.len()..];
    let mut parts = Vec::new();
    loop {
        let end = find(rest, delimiter.as_bytes()).expect("a delimiter ends the part");
        parts.push(part(&rest[..end]));
        rest = &rest[end + delimiter.len()..];
        if let Some(after) = rest.strip_prefix(b"--") {
            assert!(after.is_empty() || after == b"\r\n", "text after the closing delimiter: {after:?}");
            return parts;
        }
        rest = rest.strip_prefix(b"\r\n").expect("CRLF after a delimiter");
    }
}

fn part(raw: &[u8]) -> Part {
    let split = find(raw, b"\r\n\r\n").expect("a part has a header block");
    let head = std::str::from_utf8(&raw[..split]).expect("part headers are text");
    let mut part = Part { name: String::new(), filename: None, content_type: None, body: raw[split + 4..].to_vec() };
    for line in head.split("\r\n") {
        let (name, value) = line.split_once(':').unwrap_or_else(|| panic!("bad part header `{line}`"));
        match name.trim().to_ascii_lowercase().as_str() {
            "content-disposition" => {
                let mut params = value.split(';').map(str::trim);
                assert_eq!(params.next(), Some("form-data"), "{line}");
                for param in params {
                    let (key, quoted) = param.split_once('=').expect("name=value");
                    let unquoted = quoted.strip_prefix('"').and_then(|q| q.strip_suffix('"')).expect("quoted");
                    match key {
                        "name" => part.name = unquoted.to_string(),
                        "filename" => part.filename = Some(unquoted.to_string()),
                        other => panic!("unexpected parameter `{other}` in `{line}`"),
                    }
                }
            }
            "content-type" => part.content_type = Some(value.trim().to_string()),
            other => panic!("unexpected part header `{other}`"),
        }
    }
    assert!(!part.name.is_empty(), "a part without a name: {head}");
    part
}

/// The media type of a `content-type`, without parameters.
fn essence(content_type: &str) -> &str {
    content_type.split(';').next().unwrap_or_default().trim()
}

// ---------------------------------------------------------------------------------------------
// Scenarios.

/// Deploys `yaml` with `BASE` replaced by the fake API's URL.
async fn deploy(stack: &TestStack, api: &CaptureApi, yaml: &str) {
    stack.deploy(&yaml.replace("BASE", &api.base_url)).await;
}

/// Triggers the asynchronous `workflow` and waits until its execution has ended.
async fn run(stack: &TestStack, workflow: &str, body: Value) -> (String, Value) {
    let response = stack.trigger(workflow, body).await;
    assert_eq!(response.status(), 202);
    let id = json_of(response).await["executionId"].as_str().expect("executionId").to_string();
    let record = stack.wait_until_ended(&id, LONG).await;
    (id, record)
}

async fn form_body_is_sent_url_encoded(stack: &TestStack) {
    let api = CaptureApi::start().await;
    deploy(
        stack,
        &api,
        r#"
id: form
trigger: { type: request }
steps:
  - id: fields
    type: request
    method: POST
    url: "BASE/form"
    body_type: form
    body:
      name: "{{trigger.body.name}}"
      note: "{{trigger.body.note}}"
      "odd key&=": "x"
      count: 3
      active: true
  - id: whole
    type: request
    method: POST
    url: "BASE/form-whole"
    body_type: form
    body: "{{trigger.body.fields}}"
"#,
    )
    .await;
    let note = "fish & chips = £5 / tea+milk 100%";
    let (_, record) =
        run(stack, "form", json!({ "name": "Zoë Ångström", "note": note, "fields": { "q": "a=b&c d", "n": 7 } })).await;
    assert_eq!(record["status"], "succeeded", "{record:#}");

    let fields = api.only("/form");
    assert_eq!(fields.method, "POST");
    assert_eq!(essence(fields.header("content-type")), "application/x-www-form-urlencoded");
    let encoded = fields.body_text();
    assert_form_encoded(encoded);
    assert_eq!(
        sorted(form_decode(encoded)),
        pairs(&[("name", "Zoë Ångström"), ("note", note), ("odd key&=", "x"), ("count", "3"), ("active", "true"),]),
        "{encoded}"
    );
    // Spot checks of the escapes themselves: `&`, `=`, `+`, `%`, `/` and UTF-8 bytes.
    assert!(encoded.contains("%26") && encoded.contains("%3D") && encoded.contains("%2B"), "{encoded}");
    assert!(encoded.contains("%25") && encoded.contains("%2F") && encoded.contains("%C2%A3"), "{encoded}");
    assert!(encoded.contains("name=Zo%C3%AB"), "{encoded}");

    let whole = api.only("/form-whole");
    assert_eq!(essence(whole.header("content-type")), "application/x-www-form-urlencoded");
    assert_form_encoded(whole.body_text());
    assert_eq!(sorted(form_decode(whole.body_text())), pairs(&[("q", "a=b&c d"), ("n", "7")]));
}

/// A binary file full of what confuses naive multipart parsers: CRLFs, dashes and every byte.
fn report_bytes() -> Vec<u8> {
    let mut bytes = b"\x00\xffREPORT\r\n--sluice-\r\n\r\n--\r\n".to_vec();
    bytes.extend((0..=255u8).rev().cycle().take(3000));
    bytes
}

fn chart_bytes() -> Vec<u8> {
    let mut bytes = vec![0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a];
    bytes.extend((0..=255u8).cycle().take(1000));
    bytes
}

async fn multipart_body_carries_text_fields_and_downloaded_files(stack: &TestStack) {
    let api = CaptureApi::start().await;
    api.reply(
        "/download/report",
        Reply::bytes("application/octet-stream", report_bytes())
            .header("content-disposition", "attachment; filename=\"q3 report.bin\""),
    );
    api.reply("/files/chart.png", Reply::bytes("image/png", chart_bytes()));
    deploy(
        stack,
        &api,
        r#"
id: upload
trigger: { type: request }
steps:
  - { id: report, type: request, url: "BASE/download/report" }
  - { id: chart, type: request, url: "BASE/files/chart.png" }
  - id: send
    type: request
    method: POST
    url: "BASE/upload"
    body_type: multipart
    body:
      title: "{{trigger.body.title}}"
      count: 3
      document: "{{steps.report.output.file}}"
      gallery: ["{{steps.chart.output.file}}", "{{steps.report.output.file}}"]
"#,
    )
    .await;
    let title = "Grüße & \"quotes\" = fine";
    let (_, record) = run(stack, "upload", json!({ "title": title })).await;
    assert_eq!(record["status"], "succeeded", "{record:#}");
    assert_eq!(step(&record, "report")["output"]["file"]["name"], "q3 report.bin");
    assert_eq!(step(&record, "chart")["output"]["file"]["name"], "chart.png");

    let upload = api.only("/upload");
    assert_eq!(upload.method, "POST");
    let content_type = upload.header("content-type");
    let parts = multipart_parts(content_type, &upload.body);
    let named = |name: &str| parts.iter().filter(|p| p.name == name).collect::<Vec<_>>();
    assert_eq!(parts.len(), 5, "{parts:#?}");

    let titles = named("title");
    assert_eq!(titles.len(), 1);
    assert_eq!(titles[0].body, title.as_bytes());
    assert_eq!(titles[0].filename, None);
    let counts = named("count");
    assert_eq!(counts.len(), 1);
    assert_eq!(counts[0].body, b"3");

    let documents = named("document");
    assert_eq!(documents.len(), 1);
    assert_eq!(documents[0].filename.as_deref(), Some("q3 report.bin"));
    assert_eq!(documents[0].content_type.as_deref(), Some("application/octet-stream"));
    assert!(documents[0].body == report_bytes(), "the document part differs from the downloaded bytes");

    let gallery = named("gallery");
    assert_eq!(gallery.len(), 2, "one part per file of the list");
    assert_eq!(gallery[0].filename.as_deref(), Some("chart.png"));
    assert_eq!(gallery[0].content_type.as_deref(), Some("image/png"));
    assert!(gallery[0].body == chart_bytes(), "the chart part differs from the downloaded bytes");
    assert_eq!(gallery[1].filename.as_deref(), Some("q3 report.bin"));
    assert!(gallery[1].body == report_bytes(), "the second gallery part differs from the downloaded bytes");
}

async fn raw_body_is_sent_byte_for_byte_with_its_content_type(stack: &TestStack) {
    let api = CaptureApi::start().await;
    deploy(
        stack,
        &api,
        r#"
id: raw
trigger: { type: request }
steps:
  - id: csv
    type: request
    method: POST
    url: "BASE/import"
    body_type: raw
    headers: { content-type: "text/csv; charset=utf-8" }
    body: "id,name,note\r\n1,{{trigger.body.name}},\"quoted, with comma\"\r\n2,Zoë,  spaced  \r\n"
  - id: text
    type: request
    method: PUT
    url: "BASE/note"
    body_type: raw
    body: |
      Dear {{trigger.body.name}},
        indented line {"not": "json"}
"#,
    )
    .await;
    let (_, record) = run(stack, "raw", json!({ "name": "Ada Lovelace" })).await;
    assert_eq!(record["status"], "succeeded", "{record:#}");

    let csv = api.only("/import");
    assert_eq!(csv.method, "POST");
    assert_eq!(csv.header("content-type"), "text/csv; charset=utf-8");
    let expected = "id,name,note\r\n1,Ada Lovelace,\"quoted, with comma\"\r\n2,Zoë,  spaced  \r\n";
    assert_eq!(csv.body.as_ref(), expected.as_bytes());

    let text = api.only("/note");
    assert_eq!(text.method, "PUT");
    assert_eq!(essence(text.header("content-type")), "text/plain");
    assert_eq!(text.body.as_ref(), b"Dear Ada Lovelace,\n  indented line {\"not\": \"json\"}\n");
}

async fn basic_and_bearer_auth_send_the_authorization_header(stack: &TestStack) {
    let api = CaptureApi::start().await;
    deploy(
        stack,
        &api,
        r#"
id: auth
trigger: { type: request }
steps:
  - id: basic
    type: request
    url: "BASE/basic"
    headers: { authorization: "Token replaced-by-auth" }
    auth: { type: basic, username: "{{trigger.body.user}}", password: "{{trigger.body.password}}" }
  - id: bearer
    type: request
    method: POST
    url: "BASE/bearer"
    auth: { type: bearer, token: "{{trigger.body.token}}" }
"#,
    )
    .await;
    let password = "s3cr3t:wörd w/ space";
    let token = "tok_9f8e7d6c.5b4a";
    let (_, record) =
        run(stack, "auth", json!({ "user": "ada@example.com", "password": password, "token": token })).await;
    assert_eq!(record["status"], "succeeded", "{record:#}");

    // base64("ada@example.com:s3cr3t:wörd w/ space"), the password's UTF-8 bytes.
    let basic = api.only("/basic");
    assert_eq!(basic.header("authorization"), "Basic YWRhQGV4YW1wbGUuY29tOnMzY3IzdDp3w7ZyZCB3LyBzcGFjZQ==");
    let bearer = api.only("/bearer");
    assert_eq!(bearer.header("authorization"), format!("Bearer {token}"));

    // The record shows the user name, never the password or the token.
    let basic_input = &step(&record, "basic")["input"];
    assert_eq!(basic_input["auth"]["type"], "basic");
    assert_eq!(basic_input["auth"]["username"], "ada@example.com");
    for (id, secret) in [("basic", password), ("bearer", token)] {
        let input = step(&record, id)["input"].to_string();
        assert!(!input.contains(secret), "step `{id}` records its secret: {input}");
        let output = step(&record, id)["output"].to_string();
        assert!(!output.contains(secret), "step `{id}` records its secret: {output}");
    }
}

async fn put_patch_and_delete_send_templated_query_and_headers(stack: &TestStack) {
    let api = CaptureApi::start().await;
    deploy(
        stack,
        &api,
        r#"
id: verbs
trigger: { type: request }
steps:
  - id: put
    type: request
    method: PUT
    url: "BASE/contacts/{{trigger.body.id}}"
    query: { q: "{{trigger.body.q}}", page: 2, exact: true }
    headers: { x-trace: "trace-{{trigger.body.trace}}", x-attempt: 1 }
    body: { name: "{{trigger.body.name}}", tags: [a, b] }
  - id: patch
    type: request
    method: PATCH
    url: "BASE/contacts/{{trigger.body.id}}?fixed=yes"
    query: { q: "{{trigger.body.q}}" }
    headers: { x-trace: "{{trigger.body.trace}}" }
    body: { stage: customer }
  - id: delete
    type: request
    method: DELETE
    url: "BASE/contacts/{{trigger.body.id}}"
"#,
    )
    .await;
    let q = "ada & bob = friends/ü?#100% +1";
    let (_, record) =
        run(stack, "verbs", json!({ "id": "c-42", "q": q, "trace": "t-7", "name": "Ada Lovelace" })).await;
    assert_eq!(record["status"], "succeeded", "{record:#}");

    let calls = api.received("/contacts/c-42");
    let methods: Vec<&str> = calls.iter().map(|c| c.method.as_str()).collect();
    assert_eq!(methods, ["PUT", "PATCH", "DELETE"]);
    let (put, patch, delete) = (&calls[0], &calls[1], &calls[2]);

    let put_query = put.query.as_deref().expect("query string");
    assert_form_encoded(put_query);
    assert_eq!(sorted(put.query_pairs()), pairs(&[("q", q), ("page", "2"), ("exact", "true")]), "{put_query}");
    assert_eq!(put.header("x-trace"), "trace-t-7");
    assert_eq!(put.header("x-attempt"), "1");
    assert_eq!(essence(put.header("content-type")), "application/json");
    let put_body: Value = serde_json::from_slice(&put.body).expect("JSON body");
    assert_eq!(put_body, json!({ "name": "Ada Lovelace", "tags": ["a", "b"] }));

    let patch_query = patch.query.as_deref().expect("query string");
    assert_form_encoded(patch_query);
    assert_eq!(sorted(patch.query_pairs()), pairs(&[("fixed", "yes"), ("q", q)]), "{patch_query}");
    assert_eq!(patch.header("x-trace"), "t-7");
    assert_eq!(serde_json::from_slice::<Value>(&patch.body).expect("JSON body"), json!({ "stage": "customer" }));

    assert_eq!(delete.query, None);
    assert!(delete.body.is_empty(), "DELETE sent a body: {:?}", delete.body);
    assert!(delete.headers.get("content-type").is_none(), "DELETE sent a content type");
}

async fn non_2xx_answer_fails_the_step_with_status_and_body(stack: &TestStack) {
    let api = CaptureApi::start().await;
    let problem = json!({ "error": "validation_failed", "fields": { "email": "is already taken" } });
    api.reply("/leads", Reply::json(422, problem.clone()).header("x-request-id", "req-7"));
    deploy(
        stack,
        &api,
        r#"
id: rejected
trigger: { type: request }
steps:
  - id: create
    type: request
    method: POST
    url: "BASE/leads"
    body: { email: "{{trigger.body.email}}" }
    retries: 2
    retry_delay: 100ms
  - { id: after, type: request, url: "BASE/after" }
"#,
    )
    .await;
    let (_, record) = run(stack, "rejected", json!({ "email": "ada@example.com" })).await;
    assert_eq!(record["status"], "failed", "{record:#}");
    assert_eq!(record["error"]["step"], "create", "{record:#}");
    let message = record["error"]["message"].as_str().expect("message");
    assert!(message.contains("HTTP 422") && message.contains("/leads"), "{message}");

    let create = step(&record, "create");
    assert_eq!(create["status"], "failed");
    assert_eq!(create["attempts"], 1, "a 422 is not retried");
    let error = &create["error"];
    assert!(error["message"].as_str().is_some_and(|m| m.contains("422")), "{error:#}");
    assert_eq!(error["retryable"], false);
    assert_eq!(error["details"]["status"], 422, "{error:#}");
    assert_eq!(error["details"]["body"], problem, "{error:#}");
    assert_eq!(error["details"]["headers"]["x-request-id"], "req-7", "{error:#}");

    let sent = api.only("/leads");
    assert_eq!(serde_json::from_slice::<Value>(&sent.body).expect("JSON"), json!({ "email": "ada@example.com" }));
    assert!(api.received("/after").is_empty(), "the step after the failure ran");
    assert!(record["steps"].as_array().expect("steps").iter().all(|s| s["id"] != "after"), "{record:#}");
}

async fn idempotency_key_is_the_same_across_retries(stack: &TestStack) {
    let api = CaptureApi::start().await;
    api.reply("/charges", Reply::json(503, json!({ "error": "busy" })));
    deploy(
        stack,
        &api,
        r#"
id: retried
trigger: { type: request }
steps:
  - id: charge
    type: request
    method: POST
    url: "BASE/charges"
    body: { amount: "{{trigger.body.amount}}" }
    retries: 2
    retry_delay: 100ms
  - { id: receipt, type: request, method: POST, url: "BASE/receipts" }
  - id: own_key
    type: request
    method: POST
    url: "BASE/own"
    headers: { Idempotency-Key: "order-{{trigger.body.order}}" }
"#,
    )
    .await;
    let (id, record) = run(stack, "retried", json!({ "amount": 1250, "order": 77 })).await;
    assert_eq!(record["status"], "succeeded", "{record:#}");
    let charge = step(&record, "charge");
    assert_eq!(charge["attempts"], 2, "{charge:#}");
    assert_eq!(charge["output"]["status"], 200);

    let charges = api.received("/charges");
    assert_eq!(charges.len(), 2, "one failed call and its retry");
    for call in &charges {
        assert_eq!(call.header("idempotency-key"), format!("{id}:charge"));
        assert_eq!(serde_json::from_slice::<Value>(&call.body).expect("JSON"), json!({ "amount": 1250 }));
    }
    assert_eq!(api.only("/receipts").header("idempotency-key"), format!("{id}:receipt"));
    assert_eq!(api.only("/own").header("idempotency-key"), "order-77", "the step's own key is sent instead");
}

async fn step_timeout_fails_a_slow_request(stack: &TestStack) {
    let api = CaptureApi::start().await;
    // Far longer than the step waits: the test never waits for it.
    api.reply("/slow", Reply::json(200, json!({ "late": true })).after(Duration::from_secs(10)));
    deploy(
        stack,
        &api,
        r#"
id: impatient
trigger: { type: request }
steps:
  - { id: slow, type: request, url: "BASE/slow", timeout: 200ms }
  - { id: after, type: request, url: "BASE/after" }
"#,
    )
    .await;
    let (_, record) = run(stack, "impatient", json!({})).await;
    assert_eq!(record["status"], "failed", "{record:#}");
    assert_eq!(record["error"]["step"], "slow");
    let slow = step(&record, "slow");
    assert_eq!(slow["attempts"], 1, "no retries were asked for");
    assert_eq!(slow["input"]["timeout_ms"], 200);
    let message = slow["error"]["message"].as_str().expect("message");
    assert!(message.contains("timed out after 200ms") && message.contains("/slow"), "{message}");
    assert_eq!(slow["error"]["retryable"], true, "a timeout is retryable");

    let request = api.only("/slow");
    assert_eq!(request.method, "GET");
    assert_eq!(api.answered("/slow"), 0, "the step ended only after the server answered");
    assert!(api.received("/after").is_empty(), "the step after the failure ran");
}

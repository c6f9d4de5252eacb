//! Tests of the Request step against local HTTP servers: transport, errors and redaction
//! (bodies, files and pagination have their own test modules, which share these helpers).
use std::net::SocketAddr;

use axum::body::Body;
use axum::http::{HeaderMap as AxumHeaders, Method as AxumMethod, Uri};
use axum::response::Response;
use axum::routing::{any, get};

use super::test_files::MemoryFiles;
use super::*;
use crate::net::{NetError, OutboundPolicy, test_server};

pub(super) type TestResult = Result<(), Box<dyn std::error::Error>>;
/// The execution the tests' requests belong to.
pub(super) const EXECUTION: &str = "exec-1";

pub(super) fn respond(status: u16, headers: &[(&str, &str)], body: impl Into<Body>) -> Response {
    let mut builder = Response::builder().status(status);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(body.into()).unwrap_or_default()
}

async fn echo(method: AxumMethod, uri: Uri, headers: AxumHeaders, body: String) -> Response {
    let headers: Map<String, Value> = headers
        .iter()
        .map(|(k, v)| (k.to_string(), Value::from(String::from_utf8_lossy(v.as_bytes()).into_owned())))
        .collect();
    let echo = json!({ "method": method.as_str(), "query": uri.query(), "headers": headers, "body": body });
    respond(200, &[("content-type", "application/json")], echo.to_string())
}

async fn server() -> Result<SocketAddr, Box<dyn std::error::Error>> {
    let router = axum::Router::new()
        .route(
            "/json",
            get(|| async {
                respond(200, &[("content-type", "application/json; charset=utf-8")], r#"{"hello":"world"}"#)
            }),
        )
        .route("/text", get(|| async { respond(200, &[("content-type", "text/plain")], "plain text") }))
        .route(
            "/problem",
            get(|| async { respond(200, &[("content-type", "application/problem+json")], r#"{"title":"x"}"#) }),
        )
        .route("/bad-json", get(|| async { respond(200, &[("content-type", "application/json")], "not json") }))
        .route("/empty", get(|| async { respond(204, &[], Body::empty()) }))
        .route("/multi", get(|| async { respond(200, &[("x-multi", "a"), ("x-multi", "b")], "") }))
        .route("/big", get(|| async { respond(200, &[], vec![b'x'; MAX_RESPONSE_BYTES + 1]) }))
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(3)).await;
                "late"
            }),
        )
        .route("/echo", any(echo))
        .route("/limited", get(|| async { respond(429, &[("retry-after", "7")], "slow down") }))
        .route(
            "/unavailable",
            get(|| async {
                let until = chrono::Utc::now() + chrono::Duration::seconds(120);
                let date = until.format("%a, %d %b %Y %H:%M:%S GMT").to_string();
                respond(503, &[("retry-after", date.as_str())], "")
            }),
        )
        .route("/forbidden", get(|| async { respond(403, &[("retry-after", "7")], "") }))
        .route(
            "/status/{code}",
            get(|axum::extract::Path(code): axum::extract::Path<u16>| async move {
                respond(code, &[("content-type", "application/json")], r#"{"error":"nope"}"#)
            }),
        );
    Ok(test_server::spawn(router).await?)
}

pub(super) fn local_client() -> Result<HttpClient, NetError> {
    HttpClient::new(OutboundPolicy { allow_loopback: true, allow_private: false })
}

pub(super) fn get_request(url: String) -> RenderedRequest {
    let mut req = RenderedRequest::new(Method::Get, url);
    req.timeout = Duration::from_secs(10);
    req
}

/// Sends `req` with `client` for [`EXECUTION`], files in `files`, idempotency key `key`.
pub(super) async fn send_with(
    client: &HttpClient,
    files: &MemoryFiles,
    req: &RenderedRequest,
    key: &str,
) -> Result<Value, StepError> {
    send(client, files, EXECUTION, req, key, &SendOptions::default()).await
}

/// Sends `req` through the loopback-allowing client with an empty file store.
pub(super) async fn call(req: &RenderedRequest) -> Result<Value, Box<dyn std::error::Error>> {
    Ok(send_with(&local_client()?, &MemoryFiles::new(), req, "key").await.map_err(|e| e.message)?)
}

/// The error sending `req` gives.
pub(super) async fn call_error(req: &RenderedRequest) -> Result<StepError, Box<dyn std::error::Error>> {
    match send_with(&local_client()?, &MemoryFiles::new(), req, "key").await {
        Ok(output) => Err(format!("unexpected success: {output}").into()),
        Err(error) => Ok(error),
    }
}

async fn get_output(path: &str) -> Result<Value, Box<dyn std::error::Error>> {
    let addr = server().await?;
    call(&get_request(format!("http://{addr}{path}"))).await
}

async fn get_error(path: &str) -> Result<StepError, Box<dyn std::error::Error>> {
    let addr = server().await?;
    call_error(&get_request(format!("http://{addr}{path}"))).await
}

#[tokio::test]
async fn json_response_body_is_parsed() -> TestResult {
    let output = get_output("/json").await?;
    assert_eq!(output["status"], 200);
    assert_eq!(output["body"], json!({ "hello": "world" }));
    assert_eq!(output["headers"]["content-type"], "application/json; charset=utf-8");
    assert_eq!(get_output("/problem").await?["body"], json!({ "title": "x" }));
    Ok(())
}

#[tokio::test]
async fn text_invalid_json_and_empty_bodies_are_text_or_null() -> TestResult {
    assert_eq!(get_output("/text").await?["body"], "plain text");
    assert_eq!(get_output("/bad-json").await?["body"], "not json");
    let empty = get_output("/empty").await?;
    assert_eq!((empty["status"].clone(), empty["body"].clone()), (json!(204), Value::Null));
    Ok(())
}

#[tokio::test]
async fn repeated_response_headers_are_joined() -> TestResult {
    assert_eq!(get_output("/multi").await?["headers"]["x-multi"], "a, b");
    Ok(())
}

#[tokio::test]
async fn query_headers_body_and_idempotency_key_are_sent() -> TestResult {
    let addr = server().await?;
    let mut req = RenderedRequest::new(Method::Post, format!("http://{addr}/echo?fixed=1"));
    req.query = BTreeMap::from([
        ("email".into(), json!("a@b.com")),
        ("n".into(), json!(5)),
        ("obj".into(), json!({ "a": [1, 2] })),
    ]);
    req.headers = BTreeMap::from([("X-Custom".into(), json!("v")), ("x-num".into(), json!(42))]);
    req.body = Some(json!({ "name": "Ada", "tags": ["x"] }));
    let files = MemoryFiles::new();
    let echo = send_with(&local_client()?, &files, &req, "exec-1:step-a").await.map_err(|e| e.message)?["body"].clone();
    assert_eq!(echo["method"], "POST");
    let query: BTreeMap<String, String> =
        url::form_urlencoded::parse(echo["query"].as_str().unwrap_or_default().as_bytes()).into_owned().collect();
    let expected = [("email", "a@b.com"), ("fixed", "1"), ("n", "5"), ("obj", r#"{"a":[1,2]}"#)];
    assert_eq!(query, expected.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect());
    assert_eq!(echo["headers"]["x-custom"], "v");
    assert_eq!(echo["headers"]["x-num"], "42");
    assert_eq!(echo["headers"]["idempotency-key"], "exec-1:step-a");
    assert_eq!(echo["headers"]["content-type"], "application/json");
    let body: Value = serde_json::from_str(echo["body"].as_str().unwrap_or_default())?;
    assert_eq!(body, json!({ "name": "Ada", "tags": ["x"] }));
    Ok(())
}

#[tokio::test]
async fn idempotency_key_set_by_the_step_is_kept() -> TestResult {
    let addr = server().await?;
    let mut req = get_request(format!("http://{addr}/echo"));
    req.headers.insert("Idempotency-Key".into(), json!("mine"));
    let output = send_with(&local_client()?, &MemoryFiles::new(), &req, "generated").await.map_err(|e| e.message)?;
    assert_eq!(output["body"]["headers"]["idempotency-key"], "mine");
    Ok(())
}

#[tokio::test]
async fn not_found_is_terminal_with_status_and_body_in_details() -> TestResult {
    let addr = server().await?;
    let req = get_request(format!("http://{addr}/status/404?api_key=secret"));
    let error = call_error(&req).await?;
    assert!(!error.retryable);
    assert_eq!(error.message, format!("HTTP 404 Not Found from GET http://{addr}/status/404"));
    let details = error.details.ok_or("no details")?;
    assert_eq!(details["status"], 404);
    assert_eq!(details["body"], json!({ "error": "nope" }));
    Ok(())
}

#[tokio::test]
async fn server_errors_429_and_408_are_retryable() -> TestResult {
    for (code, reason) in [
        (503, "Service Unavailable"),
        (429, "Too Many Requests"),
        (408, "Request Timeout"),
        (500, "Internal Server Error"),
    ] {
        let error = get_error(&format!("/status/{code}")).await?;
        assert!(error.retryable, "{code}");
        assert!(error.message.starts_with(&format!("HTTP {code} {reason} from GET http://")), "{}", error.message);
    }
    assert!(!get_error("/status/400").await?.retryable);
    Ok(())
}

#[tokio::test]
async fn timeout_is_retryable_and_names_the_timeout() -> TestResult {
    let addr = server().await?;
    let mut req = get_request(format!("http://{addr}/slow"));
    req.timeout = Duration::from_millis(200);
    let error = call_error(&req).await?;
    assert!(error.retryable);
    assert_eq!(error.message, format!("GET http://{addr}/slow timed out after 200ms"));
    Ok(())
}

#[tokio::test]
async fn connection_refused_is_retryable() -> TestResult {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let req = get_request(format!("http://127.0.0.1:{port}/x?token=abc"));
    let error = call_error(&req).await?;
    assert!(error.retryable);
    assert_eq!(error.message, format!("connection refused: GET http://127.0.0.1:{port}/x"));
    Ok(())
}

#[tokio::test]
async fn oversized_response_body_fails_terminally() -> TestResult {
    let error = get_error("/big").await?;
    assert!(!error.retryable);
    assert!(error.message.contains("larger than 5 MiB"), "{}", error.message);
    Ok(())
}

#[tokio::test]
async fn guard_blocks_are_terminal() -> TestResult {
    let addr = server().await?;
    let client = HttpClient::new(OutboundPolicy::default())?;
    for url in [
        format!("http://{addr}/json"),
        format!("http://localhost:{}/json", addr.port()),
        "http://169.254.169.254/latest/meta-data/".into(),
    ] {
        let error = send_with(&client, &MemoryFiles::new(), &get_request(url.clone()), "key")
            .await
            .err()
            .ok_or("expected an error")?;
        assert!(!error.retryable, "{url}");
        assert!(error.message.starts_with("blocked by the outbound network guard"), "{}", error.message);
    }
    Ok(())
}

#[tokio::test]
async fn invalid_url_and_headers_are_terminal_without_leaking_secrets() -> TestResult {
    let error = call_error(&get_request("https://user:pw@/x?token=abc".into())).await?;
    assert!(!error.retryable);
    assert!(!error.message.contains("pw") && !error.message.contains("abc"), "{}", error.message);
    assert!(!call_error(&get_request("ftp://example.com/".into())).await?.retryable);
    let mut req = get_request("http://127.0.0.1:9/".into());
    req.headers.insert("bad name".into(), json!("v"));
    assert!(!call_error(&req).await?.retryable);
    let mut req = get_request("http://127.0.0.1:9/".into());
    req.headers.insert("authorization".into(), json!("Bearer s3cr3t\n"));
    let error = call_error(&req).await?;
    assert!(!error.retryable && !error.message.contains("s3cr3t"), "{}", error.message);
    let mut req = get_request("http://127.0.0.1:9/".into());
    req.auth = Some(RenderedAuth::Bearer { token: "s3cr3t\n".into() });
    let error = call_error(&req).await?;
    assert!(!error.retryable && !error.message.contains("s3cr3t"), "{}", error.message);
    Ok(())
}

#[test]
fn input_record_redacts_sensitive_headers() {
    let mut req = get_request("https://api.example.com/x".into());
    for name in ["Authorization", "proxy-authorization", "Cookie", "x-api-key", "X-Auth-Token", "client-secret"] {
        req.headers.insert(name.into(), json!("s3cr3t"));
    }
    req.headers.insert("accept".into(), json!("application/json"));
    req.body = Some(json!({ "a": 1 }));
    let record = req.input_record();
    assert!(!record.to_string().contains("s3cr3t"));
    assert_eq!(record["headers"]["Authorization"], REDACTED);
    assert_eq!(record["headers"]["accept"], "application/json");
    assert_eq!(record["method"], "GET");
    assert_eq!(record["url"], "https://api.example.com/x");
    assert_eq!(record["body"], json!({ "a": 1 }));
    assert_eq!(record["timeout_ms"], 10_000);
    assert_eq!(record["query"], json!({}));
}

#[tokio::test]
async fn retry_after_seconds_and_dates_reach_the_step_error() -> TestResult {
    let limited = get_error("/limited").await?;
    assert!(limited.retryable);
    assert_eq!(limited.retry_after_ms, Some(7_000));
    let unavailable = get_error("/unavailable").await?;
    assert!(unavailable.retryable);
    let waited = unavailable.retry_after_ms.ok_or("no retry_after_ms")?;
    assert!((100_000..=120_000).contains(&waited), "{waited}");
    let forbidden = get_error("/forbidden").await?;
    assert!(!forbidden.retryable);
    assert_eq!(forbidden.retry_after_ms, None);
    assert_eq!(get_error("/status/503").await?.retry_after_ms, None);
    Ok(())
}

#[test]
fn input_record_shows_auth_without_its_secrets() {
    let mut req = get_request("https://api.example.com/x".into());
    req.auth = Some(RenderedAuth::Basic { username: "ada".into(), password: "s3cr3t".into() });
    req.body_type = crate::model::BodyType::Form;
    let record = req.input_record();
    assert_eq!(record["auth"], json!({ "type": "basic", "username": "ada", "password": REDACTED }));
    assert_eq!(record["body_type"], "form");
    req.auth = Some(RenderedAuth::Bearer { token: "s3cr3t".into() });
    let record = req.input_record();
    assert_eq!(record["auth"], json!({ "type": "bearer", "token": REDACTED }));
    assert!(!record.to_string().contains("s3cr3t"));
    assert_eq!(record.get("pagination"), None);
}

#[test]
fn test_runs_cap_pagination_at_three_pages() {
    let pagination = |max_pages| crate::model::Pagination::Link { items: "body".into(), max_pages };
    assert_eq!(SendOptions::default().max_pages(&pagination(None)), crate::model::kinds::DEFAULT_MAX_PAGES);
    assert_eq!(SendOptions::test_run().max_pages(&pagination(None)), TEST_RUN_MAX_PAGES);
    assert_eq!(SendOptions::test_run().max_pages(&pagination(Some(2))), 2);
    assert_eq!(SendOptions::default().max_pages(&pagination(Some(0))), 1);
}

fn request_step(value: Value) -> Result<crate::model::RequestStep, serde_json::Error> {
    serde_json::from_value(value)
}

#[test]
fn rendering_templates_auth_and_keeps_body_type_and_pagination() -> TestResult {
    let ctx = json!({ "settings": { "user": "ada", "pw": "s3cr3t", "n": 7 } });
    let step = request_step(json!({
        "url": "https://api.example.com/x",
        "body_type": "form",
        "body": { "a": "{{settings.n}}" },
        "auth": { "type": "basic", "username": "{{settings.user}}", "password": "{{settings.pw}}" },
        "pagination": { "style": "link", "items": "body" },
    }))?;
    let rendered = super::super::render_request(&step, &ctx).map_err(|e| e.message)?;
    assert_eq!(rendered.auth, Some(RenderedAuth::Basic { username: "ada".into(), password: "s3cr3t".into() }));
    assert_eq!(rendered.body_type, crate::model::BodyType::Form);
    assert_eq!(rendered.body, Some(json!({ "a": 7 })));
    assert_eq!(rendered.pagination, step.pagination);
    let bearer =
        request_step(json!({ "url": "https://x.example/", "auth": { "type": "bearer", "token": "{{settings.n}}" } }))?;
    let rendered = super::super::render_request(&bearer, &ctx).map_err(|e| e.message)?;
    assert_eq!(rendered.auth, Some(RenderedAuth::Bearer { token: "7".into() }));
    Ok(())
}

#[test]
fn a_credential_that_is_not_text_fails_without_showing_it() -> TestResult {
    let ctx = json!({ "settings": { "secret": { "s3cr3t": true } } });
    let step = request_step(
        json!({ "url": "https://x.example/", "auth": { "type": "bearer", "token": "{{settings.secret}}" } }),
    )?;
    let error = super::super::render_request(&step, &ctx).err().ok_or("expected an error")?;
    assert!(!error.retryable);
    assert_eq!(error.message, "`auth.token` must be text, got an object");
    Ok(())
}

/// A server whose routes redirect: to its own `/echo`, to `away` (another origin), to itself
/// forever, and to the metadata address.
async fn redirecting_server(away: String) -> Result<SocketAddr, Box<dyn std::error::Error>> {
    let router = axum::Router::new()
        .route("/echo", any(echo))
        .route("/same", any(|| async { respond(307, &[("location", "/echo")], "") }))
        .route("/see-other", any(|| async { respond(303, &[("location", "/echo?after=303")], "") }))
        .route("/away", any(move || async move { respond(308, &[("location", away.as_str())], "") }))
        .route("/loop", get(|| async { respond(302, &[("location", "/loop")], "") }))
        .route("/to-metadata", get(|| async { respond(302, &[("location", "http://169.254.169.254/latest/")], "") }));
    Ok(test_server::spawn(router).await?)
}

fn with_credentials(mut req: RenderedRequest) -> RenderedRequest {
    for name in ["x-api-key", "X-Auth-Token", "client-secret", "cookie"] {
        req.headers.insert(name.into(), json!("s3cr3t"));
    }
    req.headers.insert("accept".into(), json!("application/json"));
    req.auth = Some(RenderedAuth::Bearer { token: "s3cr3t".into() });
    req.method = Method::Post;
    req.body = Some(json!({ "a": 1 }));
    req
}

#[tokio::test]
async fn a_redirect_to_another_origin_carries_no_credential() -> TestResult {
    let other = server().await?;
    let addr = redirecting_server(format!("http://{other}/echo")).await?;
    let output = call(&with_credentials(get_request(format!("http://{addr}/away")))).await?;
    let echoed = &output["body"];
    assert_eq!(output["status"], 200);
    assert_eq!(echoed["method"], "POST", "308 repeats the request");
    assert_eq!(echoed["body"], r#"{"a":1}"#);
    assert_eq!(echoed["headers"]["accept"], "application/json");
    assert!(!echoed.to_string().contains("s3cr3t"), "every secret header and the auth are dropped: {echoed}");

    // On the same origin the credentials stay.
    let output = call(&with_credentials(get_request(format!("http://{addr}/same")))).await?;
    let headers = &output["body"]["headers"];
    assert_eq!(
        (headers["x-api-key"].as_str(), headers["authorization"].as_str()),
        (Some("s3cr3t"), Some("Bearer s3cr3t"))
    );
    Ok(())
}

#[tokio::test]
async fn a_303_turns_into_a_get_without_a_body() -> TestResult {
    let addr = redirecting_server(String::new()).await?;
    let output = call(&with_credentials(get_request(format!("http://{addr}/see-other")))).await?;
    let echoed = &output["body"];
    assert_eq!((echoed["method"].as_str(), echoed["body"].as_str()), (Some("GET"), Some("")));
    assert_eq!(echoed["query"], "after=303");
    assert!(echoed["headers"].get("content-type").is_none(), "{echoed}");
    Ok(())
}

#[tokio::test]
async fn redirects_are_guarded_and_bounded() -> TestResult {
    let addr = redirecting_server(String::new()).await?;
    let error = call_error(&get_request(format!("http://{addr}/to-metadata"))).await?;
    assert!(!error.retryable);
    assert!(
        error
            .message
            .starts_with("redirect refused: blocked by the outbound network guard: 169.254.169.254 (link-local)"),
        "{}",
        error.message
    );
    let error = call_error(&get_request(format!("http://{addr}/loop"))).await?;
    assert!(!error.retryable);
    assert!(error.message.starts_with(&format!("more than {MAX_REDIRECTS} redirects")), "{}", error.message);
    Ok(())
}

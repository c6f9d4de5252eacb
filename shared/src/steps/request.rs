//! The Request step's I/O: sends one rendered request through the guarded [`HttpClient`] and
//! turns the answer into the step's output or a classified [`StepError`].
//!
//! Invariants: every failure is classified here, once (408, 429, 5xx, timeouts and network
//! errors are retryable; guard blocks, bad URLs or headers, other statuses and oversized
//! bodies are terminal). Messages name the method and URL without query string, fragment or
//! user info, and never carry header values; [`RenderedRequest::input_record`] redacts
//! sensitive headers. Response bodies are read up to [`MAX_RESPONSE_BYTES`] and no further.

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::{Map, Value, json};
use url::Url;

use crate::model::Method;
use crate::net::{self, HttpClient, NetError};
use crate::record::StepError;

/// The largest response body a Request step reads.
pub const MAX_RESPONSE_BYTES: usize = 5 * 1024 * 1024;
/// What replaces a sensitive header's value in the execution record.
pub const REDACTED: &str = "[redacted]";
/// The header carrying the per-step idempotency key.
pub const IDEMPOTENCY_KEY_HEADER: &str = "idempotency-key";

/// A Request step after templating: what is sent.
#[derive(Debug, Clone, PartialEq)]
pub struct RenderedRequest {
    pub method: Method,
    pub url: String,
    pub query: BTreeMap<String, Value>,
    pub headers: BTreeMap<String, Value>,
    pub body: Option<Value>,
    pub timeout: Duration,
}

impl RenderedRequest {
    /// The step's input as recorded in the execution record, sensitive headers redacted.
    pub fn input_record(&self) -> Value {
        let headers: Map<String, Value> = self
            .headers
            .iter()
            .map(|(name, value)| {
                let value = if is_sensitive_header(name) { Value::from(REDACTED) } else { value.clone() };
                (name.clone(), value)
            })
            .collect();
        json!({
            "method": self.method.as_str(),
            "url": self.url,
            "query": self.query,
            "headers": headers,
            "body": self.body.clone().unwrap_or(Value::Null),
            "timeout_ms": u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX),
        })
    }
}

/// Whether a header's value is a credential that must not be recorded.
pub fn is_sensitive_header(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    matches!(name.as_str(), "authorization" | "proxy-authorization" | "cookie" | "x-api-key")
        || ["token", "secret", "password", "api-key", "apikey"].iter().any(|word| name.contains(word))
}

/// Sends `req` and returns the step's output `{status, headers, body}`.
pub async fn send(client: &HttpClient, req: &RenderedRequest, idempotency_key: &str) -> Result<Value, StepError> {
    let url = build_url(client, req)?;
    let target = format!("{} {}", req.method.as_str(), display_url(&url));
    let headers = build_headers(req, idempotency_key)?;
    let mut builder = client.client().request(reqwest_method(req.method), url).headers(headers).timeout(req.timeout);
    if let Some(body) = &req.body {
        builder = builder.json(body);
    }
    tracing::debug!(%target, "sending request");
    let mut response = builder.send().await.map_err(|e| classify_error(e, &target, req.timeout))?;
    let status = response.status();
    let headers = response_headers(response.headers());
    let is_json = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .is_some_and(|ct| is_json_content_type(&String::from_utf8_lossy(ct.as_bytes())));
    let bytes = match read_body(&mut response, &target, req.timeout).await {
        Ok(bytes) => bytes,
        Err(error) => {
            return Err(error.with_details(json!({ "status": status.as_u16(), "headers": headers })));
        }
    };
    tracing::debug!(%target, status = status.as_u16(), bytes = bytes.len(), "response received");
    let output = json!({ "status": status.as_u16(), "headers": headers, "body": parse_body(&bytes, is_json) });
    if status.is_success() {
        return Ok(output);
    }
    let reason = status.canonical_reason().map(|r| format!(" {r}")).unwrap_or_default();
    let message = format!("HTTP {}{reason} from {target}", status.as_u16());
    let retryable = status.as_u16() == 408 || status.as_u16() == 429 || status.is_server_error();
    let error = if retryable { StepError::retryable(message) } else { StepError::terminal(message) };
    Err(error.with_details(output))
}

fn reqwest_method(method: Method) -> reqwest::Method {
    match method {
        Method::Get => reqwest::Method::GET,
        Method::Post => reqwest::Method::POST,
        Method::Put => reqwest::Method::PUT,
        Method::Patch => reqwest::Method::PATCH,
        Method::Delete => reqwest::Method::DELETE,
    }
}

/// Query and header values: strings as they are, anything else as compact JSON.
fn value_text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

fn build_url(client: &HttpClient, req: &RenderedRequest) -> Result<Url, StepError> {
    let mut url = Url::parse(&req.url)
        .map_err(|e| StepError::terminal(format!("invalid URL `{}`: {e}", display_raw_url(&req.url))))?;
    client
        .check_url(&url)
        .map_err(|e| StepError::terminal(format!("{e} ({} {})", req.method.as_str(), display_url(&url))))?;
    if !req.query.is_empty() {
        let mut pairs = url.query_pairs_mut();
        for (name, value) in &req.query {
            pairs.append_pair(name, &value_text(value));
        }
    }
    Ok(url)
}

fn build_headers(req: &RenderedRequest, idempotency_key: &str) -> Result<HeaderMap, StepError> {
    let mut headers = HeaderMap::new();
    for (name, value) in &req.headers {
        let header_name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| StepError::terminal(format!("invalid header name `{}`", name.escape_debug())))?;
        // The value is not quoted: it may be a credential.
        let header_value = HeaderValue::from_bytes(value_text(value).as_bytes())
            .map_err(|_| StepError::terminal(format!("invalid value for header `{header_name}`")))?;
        headers.insert(header_name, header_value);
    }
    if !headers.contains_key(IDEMPOTENCY_KEY_HEADER) {
        let value = HeaderValue::from_bytes(idempotency_key.as_bytes())
            .map_err(|_| StepError::terminal("invalid idempotency key"))?;
        headers.insert(IDEMPOTENCY_KEY_HEADER, value);
    }
    Ok(headers)
}

/// `scheme://host[:port]/path`: no user info, query or fragment (they may hold secrets).
fn display_url(url: &Url) -> String {
    let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
    format!("{}://{}{port}{}", url.scheme(), url.host_str().unwrap_or_default(), url.path())
}

/// The same for text that did not parse as a URL.
fn display_raw_url(raw: &str) -> String {
    let end = raw.find(['?', '#']).unwrap_or(raw.len());
    let raw = &raw[..end];
    match raw.split_once("://") {
        Some((scheme, rest)) => {
            let authority_end = rest.find('/').unwrap_or(rest.len());
            let (authority, path) = rest.split_at(authority_end);
            let host = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
            format!("{scheme}://{host}{path}")
        }
        None => raw.rsplit_once('@').map_or(raw, |(_, after)| after).to_owned(),
    }
}

fn human_duration(duration: Duration) -> String {
    let ms = duration.as_millis();
    if ms.is_multiple_of(1000) { format!("{}s", ms / 1000) } else { format!("{ms}ms") }
}

/// The error's own message and its sources, `: `-separated, repeated parts dropped.
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut current = Some(error);
    while let Some(error) = current {
        let text = error.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        current = error.source();
    }
    parts.join(": ")
}

fn has_io_error(error: &(dyn std::error::Error + 'static), kind: std::io::ErrorKind) -> bool {
    let mut current = Some(error);
    while let Some(error) = current {
        if error.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == kind) {
            return true;
        }
        current = error.source();
    }
    false
}

fn classify_error(error: reqwest::Error, target: &str, timeout: Duration) -> StepError {
    // reqwest's messages include the full URL; ours must not.
    let error = error.without_url();
    if let Some(net) = net::find_net_error(&error) {
        let message = format!("{net} ({target})");
        return match net {
            NetError::Resolve { .. } => StepError::retryable(message),
            NetError::Blocked(_) | NetError::InvalidUrl(_) | NetError::Client(_) => StepError::terminal(message),
        };
    }
    if error.is_connect() {
        if has_io_error(&error, std::io::ErrorKind::ConnectionRefused) {
            return StepError::retryable(format!("connection refused: {target}"));
        }
        if error.is_timeout() {
            return StepError::retryable(format!(
                "connecting for {target} timed out after {}",
                human_duration(net::CONNECT_TIMEOUT)
            ));
        }
        return StepError::retryable(format!("connection failed: {target}: {}", error_chain(&error)));
    }
    if error.is_timeout() {
        return StepError::retryable(format!("{target} timed out after {}", human_duration(timeout)));
    }
    if error.is_redirect() || error.is_builder() {
        return StepError::terminal(format!("{target} failed: {}", error_chain(&error)));
    }
    StepError::retryable(format!("{target} failed: {}", error_chain(&error)))
}

fn response_headers(headers: &HeaderMap) -> Map<String, Value> {
    headers
        .keys()
        .map(|name| {
            let values: Vec<String> =
                headers.get_all(name).iter().map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()).collect();
            (name.as_str().to_ascii_lowercase(), Value::from(values.join(", ")))
        })
        .collect()
}

fn is_json_content_type(content_type: &str) -> bool {
    let mime = content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    mime == "application/json" || (mime.contains('/') && mime.ends_with("+json"))
}

async fn read_body(response: &mut reqwest::Response, target: &str, timeout: Duration) -> Result<Vec<u8>, StepError> {
    let too_large = || StepError::terminal(format!("the response body from {target} is larger than 5 MiB"));
    if response.content_length().is_some_and(|len| len > MAX_RESPONSE_BYTES as u64) {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| classify_error(e, target, timeout))? {
        if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Empty → null; JSON content types → parsed (invalid JSON → the text); else text.
fn parse_body(bytes: &[u8], is_json: bool) -> Value {
    if bytes.is_empty() {
        return Value::Null;
    }
    if is_json && let Ok(value) = serde_json::from_slice(bytes) {
        return value;
    }
    Value::String(String::from_utf8_lossy(bytes).into_owned())
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use axum::body::Body;
    use axum::http::{HeaderMap as AxumHeaders, Method as AxumMethod, Uri};
    use axum::response::Response;
    use axum::routing::{any, get};

    use super::*;
    use crate::net::{OutboundPolicy, test_server};

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    fn respond(status: u16, headers: &[(&str, &str)], body: impl Into<Body>) -> Response {
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
            .route(
                "/status/{code}",
                get(|axum::extract::Path(code): axum::extract::Path<u16>| async move {
                    respond(code, &[("content-type", "application/json")], r#"{"error":"nope"}"#)
                }),
            );
        Ok(test_server::spawn(router).await?)
    }

    fn local_client() -> Result<HttpClient, NetError> {
        HttpClient::new(OutboundPolicy { allow_loopback: true, allow_private: false })
    }

    fn get_request(url: String) -> RenderedRequest {
        RenderedRequest {
            method: Method::Get,
            url,
            query: BTreeMap::new(),
            headers: BTreeMap::new(),
            body: None,
            timeout: Duration::from_secs(10),
        }
    }

    async fn get_output(path: &str) -> Result<Value, Box<dyn std::error::Error>> {
        let addr = server().await?;
        let req = get_request(format!("http://{addr}{path}"));
        Ok(send(&local_client()?, &req, "key").await.map_err(|e| e.message)?)
    }

    async fn get_error(path: &str) -> Result<StepError, Box<dyn std::error::Error>> {
        let addr = server().await?;
        let req = get_request(format!("http://{addr}{path}"));
        match send(&local_client()?, &req, "key").await {
            Ok(output) => Err(format!("unexpected success: {output}").into()),
            Err(error) => Ok(error),
        }
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
        let req = RenderedRequest {
            method: Method::Post,
            url: format!("http://{addr}/echo?fixed=1"),
            query: BTreeMap::from([
                ("email".into(), json!("a@b.com")),
                ("n".into(), json!(5)),
                ("obj".into(), json!({ "a": [1, 2] })),
            ]),
            headers: BTreeMap::from([("X-Custom".into(), json!("v")), ("x-num".into(), json!(42))]),
            body: Some(json!({ "name": "Ada", "tags": ["x"] })),
            timeout: Duration::from_secs(10),
        };
        let echo = send(&local_client()?, &req, "exec-1:step-a").await.map_err(|e| e.message)?["body"].clone();
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
        let output = send(&local_client()?, &req, "generated").await.map_err(|e| e.message)?;
        assert_eq!(output["body"]["headers"]["idempotency-key"], "mine");
        Ok(())
    }

    #[tokio::test]
    async fn not_found_is_terminal_with_status_and_body_in_details() -> TestResult {
        let addr = server().await?;
        let req = get_request(format!("http://{addr}/status/404?api_key=secret"));
        let error = send(&local_client()?, &req, "key").await.err().ok_or("expected an error")?;
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
        let error = send(&local_client()?, &req, "key").await.err().ok_or("expected an error")?;
        assert!(error.retryable);
        assert_eq!(error.message, format!("GET http://{addr}/slow timed out after 200ms"));
        Ok(())
    }

    #[tokio::test]
    async fn connection_refused_is_retryable() -> TestResult {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let req = get_request(format!("http://127.0.0.1:{port}/x?token=abc"));
        let error = send(&local_client()?, &req, "key").await.err().ok_or("expected an error")?;
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
            let error = send(&client, &get_request(url.clone()), "key").await.err().ok_or("expected an error")?;
            assert!(!error.retryable, "{url}");
            assert!(error.message.starts_with("blocked by the outbound network guard"), "{}", error.message);
        }
        Ok(())
    }

    #[tokio::test]
    async fn invalid_url_and_headers_are_terminal_without_leaking_secrets() -> TestResult {
        let client = local_client()?;
        let error = send(&client, &get_request("https://user:pw@/x?token=abc".into()), "k")
            .await
            .err()
            .ok_or("expected an error")?;
        assert!(!error.retryable);
        assert!(!error.message.contains("pw") && !error.message.contains("abc"), "{}", error.message);
        assert!(send(&client, &get_request("ftp://example.com/".into()), "k").await.is_err_and(|e| !e.retryable));
        let mut req = get_request("http://127.0.0.1:9/".into());
        req.headers.insert("bad name".into(), json!("v"));
        assert!(send(&client, &req, "k").await.is_err_and(|e| !e.retryable));
        let mut req = get_request("http://127.0.0.1:9/".into());
        req.headers.insert("authorization".into(), json!("Bearer s3cr3t\n"));
        let error = send(&client, &req, "k").await.err().ok_or("expected an error")?;
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

    #[test]
    fn urls_in_messages_lose_user_info_query_and_fragment() {
        assert_eq!(display_raw_url("https://u:p@host/a?b=c#d"), "https://host/a");
        assert_eq!(display_raw_url("no url?x"), "no url");
        let url = Url::parse("https://u:p@host:8443/a/b?token=x#f").map_or(String::new(), |u| display_url(&u));
        assert_eq!(url, "https://host:8443/a/b");
    }

    #[test]
    fn json_content_types_are_recognised() {
        for ct in [
            "application/json",
            "Application/JSON; charset=utf-8",
            "application/problem+json",
            "application/vnd.api+json",
        ] {
            assert!(is_json_content_type(ct), "{ct}");
        }
        for ct in ["text/plain", "text/json-ish", "+json", "application/jsonp"] {
            assert!(!is_json_content_type(ct), "{ct}");
        }
    }
}

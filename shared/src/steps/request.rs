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
mod tests;

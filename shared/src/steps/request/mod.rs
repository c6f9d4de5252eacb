//! The Request step's I/O: sends one rendered request — or every page of a paginated API —
//! through the guarded [`HttpClient`] and turns the answers into the step's output or a
//! classified [`StepError`].
//!
//! Invariants: every failure is classified here, once (408, 429, 5xx, timeouts and network
//! errors are retryable, with `Retry-After` kept in [`StepError::retry_after_ms`]; guard blocks,
//! bad URLs, headers or bodies, other statuses and oversized bodies are terminal). Messages name
//! the method and URL without query string, fragment or user info, and never carry header
//! values or credentials; [`RenderedRequest::input_record`] redacts sensitive headers and the
//! secrets of `auth`. Response bodies are read up to [`MAX_RESPONSE_BYTES`] and no further, and
//! a binary body goes to the [`FileStore`]: only its file object reaches the step's output.

mod body;
mod errors;
mod headers;
mod pagination;
mod response;

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine as _;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use serde_json::{Map, Value, json};
use url::Url;

pub use body::file_object;

use crate::model::{BodyType, Method, Pagination};
use crate::net::{HttpClient, MAX_REDIRECTS};
use crate::ports::FileStore;
use crate::record::StepError;

/// The largest response body a Request step reads (also the largest file it can store).
pub const MAX_RESPONSE_BYTES: usize = crate::ports::MAX_FILE_BYTES;
/// What replaces a sensitive header's value (or a credential of `auth`) in the execution record.
pub const REDACTED: &str = "[redacted]";
/// The header carrying the per-step idempotency key.
pub const IDEMPOTENCY_KEY_HEADER: &str = "idempotency-key";
/// The most pages a test run fetches, whatever the step's `max_pages` says.
pub const TEST_RUN_MAX_PAGES: u32 = 3;

/// Credentials after templating.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RenderedAuth {
    /// `Authorization: Basic base64(username:password)`.
    Basic { username: String, password: String },
    /// `Authorization: Bearer <token>`.
    Bearer { token: String },
}

impl RenderedAuth {
    fn header_value(&self) -> String {
        match self {
            RenderedAuth::Basic { username, password } => {
                let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
                format!("Basic {encoded}")
            }
            RenderedAuth::Bearer { token } => format!("Bearer {token}"),
        }
    }

    /// Every form these credentials travel in, to redact wherever they come back (an API
    /// that echoes the request's `Authorization`, an error quoting it): the password or token
    /// itself, the whole header value and, for basic credentials, `username:password` in
    /// base64 — standard and URL-safe, with and without padding.
    pub fn secret_forms(&self) -> Vec<String> {
        use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
        let mut forms = vec![self.header_value()];
        match self {
            RenderedAuth::Basic { username, password } => {
                let pair = format!("{username}:{password}");
                forms.extend([STANDARD, URL_SAFE].map(|engine| engine.encode(&pair)));
                forms.extend([STANDARD_NO_PAD, URL_SAFE_NO_PAD].map(|engine| engine.encode(&pair)));
                forms.push(password.clone());
            }
            RenderedAuth::Bearer { token } => forms.push(token.clone()),
        }
        forms.retain(|form| !form.is_empty());
        // Longest first, so a whole header is replaced before the token inside it.
        forms.sort_by_key(|form| std::cmp::Reverse(form.len()));
        forms.dedup();
        forms
    }

    /// What the execution record shows: the user name, never a password or token.
    fn record(&self) -> Value {
        match self {
            RenderedAuth::Basic { username, .. } => {
                json!({ "type": "basic", "username": username, "password": REDACTED })
            }
            RenderedAuth::Bearer { .. } => json!({ "type": "bearer", "token": REDACTED }),
        }
    }
}

/// A Request step after templating: what is sent.
#[derive(Debug, Clone, PartialEq)]
pub struct RenderedRequest {
    pub method: Method,
    pub url: String,
    pub query: BTreeMap<String, Value>,
    pub headers: BTreeMap<String, Value>,
    pub body: Option<Value>,
    /// How `body` is encoded (JSON, form, multipart or raw text).
    pub body_type: BodyType,
    /// Sent as the `Authorization` header, replacing one set in `headers`.
    pub auth: Option<RenderedAuth>,
    /// Per HTTP exchange: each page of a paginated request has the whole timeout.
    pub timeout: Duration,
    /// Not templated: taken from the step as written.
    pub pagination: Option<Pagination>,
    /// What the API's answers must pass besides a 2xx status (an integration action's
    /// catalog rules); checked on every page.
    pub checks: ResponseChecks,
}

/// An integration API's own rules for its answers (see [`crate::catalog::ErrorRule`] and
/// [`crate::catalog::OkWhen`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ResponseChecks {
    /// Who answers, as errors name it (`slack`).
    pub api: String,
    pub rules: Vec<crate::catalog::ErrorRule>,
    pub ok_when: Option<crate::catalog::OkWhen>,
}

impl RenderedRequest {
    /// A request with no query, headers, body, auth or pagination and the default timeout.
    pub fn new(method: Method, url: impl Into<String>) -> Self {
        RenderedRequest {
            method,
            url: url.into(),
            query: BTreeMap::new(),
            headers: BTreeMap::new(),
            body: None,
            body_type: BodyType::Json,
            auth: None,
            timeout: super::DEFAULT_REQUEST_TIMEOUT,
            pagination: None,
            checks: ResponseChecks::default(),
        }
    }

    /// The step's input as recorded in the execution record, secrets redacted.
    pub fn input_record(&self) -> Value {
        let headers: Map<String, Value> = self
            .headers
            .iter()
            .map(|(name, value)| {
                let value = if is_sensitive_header(name) { Value::from(REDACTED) } else { value.clone() };
                (name.clone(), value)
            })
            .collect();
        let mut record = json!({
            "method": self.method.as_str(),
            "url": self.url,
            "query": self.query,
            "headers": headers,
            "body": self.body.clone().unwrap_or(Value::Null),
            "timeout_ms": u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX),
        });
        if self.body_type != BodyType::Json {
            record["body_type"] = serde_json::to_value(self.body_type).unwrap_or(Value::Null);
        }
        if let Some(auth) = &self.auth {
            record["auth"] = auth.record();
        }
        if let Some(pagination) = &self.pagination {
            record["pagination"] = serde_json::to_value(pagination).unwrap_or(Value::Null);
        }
        record
    }
}

/// How a run may change what [`send`] does, whatever the step says.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SendOptions {
    /// Caps the pages fetched by a paginated request (the lower of this and the step's
    /// `max_pages` wins). Test runs use [`SendOptions::test_run`]: at most [`TEST_RUN_MAX_PAGES`].
    pub max_pages_override: Option<u32>,
}

impl SendOptions {
    /// The options of a test run: pagination stops after [`TEST_RUN_MAX_PAGES`] pages.
    pub fn test_run() -> Self {
        SendOptions { max_pages_override: Some(TEST_RUN_MAX_PAGES) }
    }

    /// The pages to fetch for `pagination`: at least one.
    pub fn max_pages(&self, pagination: &Pagination) -> u32 {
        let step = pagination.max_pages();
        self.max_pages_override.map_or(step, |cap| step.min(cap)).max(1)
    }
}

/// Whether a header's value is a credential that must not be recorded.
pub fn is_sensitive_header(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    matches!(name.as_str(), "authorization" | "proxy-authorization" | "cookie" | "x-api-key")
        || ["token", "secret", "password", "api-key", "apikey"].iter().any(|word| name.contains(word))
}

/// Sends `req` and returns the step's output: `{status, headers, body}` (plus `file` when the
/// body is a stored file), or for a paginated request `{status, headers, body, items, pages}`
/// with the last page's status, headers and body and the items of every page.
///
/// File objects in a multipart body are read from `files`, and binary responses stored
/// there, both scoped to `execution_id`.
pub async fn send(
    client: &HttpClient,
    files: &dyn FileStore,
    execution_id: &str,
    req: &RenderedRequest,
    idempotency_key: &str,
    options: &SendOptions,
) -> Result<Value, StepError> {
    let exchange = Exchange::prepare(client, files, execution_id, req, idempotency_key).await?;
    match &req.pagination {
        None => {
            let page = exchange.fetch(exchange.base_url.clone(), 1).await?;
            page.into_output(files, execution_id, &req.checks).await
        }
        Some(pagination) => pagination::fetch_all(&exchange, pagination, options.max_pages(pagination)).await,
    }
}

/// Everything the exchanges of one step share: the checked URL, headers and encoded body.
struct Exchange<'a> {
    client: &'a HttpClient,
    req: &'a RenderedRequest,
    base_url: Url,
    headers: HeaderMap,
    body: body::PreparedBody,
    /// The generated idempotency key, when the step did not set its own.
    generated_key: Option<String>,
}

impl<'a> Exchange<'a> {
    async fn prepare(
        client: &'a HttpClient,
        files: &dyn FileStore,
        execution_id: &str,
        req: &'a RenderedRequest,
        idempotency_key: &str,
    ) -> Result<Exchange<'a>, StepError> {
        let base_url = build_url(client, req)?;
        let generated_key = (!req.headers.keys().any(|name| name.eq_ignore_ascii_case(IDEMPOTENCY_KEY_HEADER)))
            .then(|| idempotency_key.to_string());
        let mut headers = build_headers(req, idempotency_key)?;
        let body = body::prepare(req, files, execution_id).await?;
        body.set_content_type(&mut headers)?;
        Ok(Exchange { client, req, base_url, headers, body, generated_key })
    }

    /// One HTTP exchange with `url` (checked by the outbound guard first) for page `page`
    /// (1 for an unpaginated request). A generated idempotency key gets `:page-N` from page 2
    /// on, so that a receiver de-duplicating by key does not answer every page with the first.
    async fn fetch(&self, url: Url, page: u32) -> Result<response::RawPage, StepError> {
        let method = self.req.method.as_str();
        let target = format!("{method} {}", errors::display_url(&url));
        self.client.check_url(&url).map_err(|e| StepError::terminal(format!("{e} ({target})")))?;
        let mut headers = self.headers.clone();
        if let Some(key) = &self.generated_key
            && page > 1
            && let Ok(value) = HeaderValue::from_str(&format!("{key}:page-{page}"))
        {
            headers.insert(IDEMPOTENCY_KEY_HEADER, value);
        }
        let mut url = url;
        let mut method = reqwest_method(self.req.method);
        let mut with_body = true;
        let mut redirects = 0;
        let mut answer = loop {
            if url.origin() != self.base_url.origin() {
                // Another origin (a redirect's or a `Link` header's choice) gets no credentials:
                // none of the headers the record redacts, `auth` included.
                strip_sensitive(&mut headers);
            }
            let builder = self.client.client().request(method.clone(), url.clone()).headers(headers.clone());
            let builder = builder.timeout(self.req.timeout);
            let builder = if with_body { self.body.apply(builder) } else { builder };
            tracing::debug!(%target, "sending request");
            let span = crate::telemetry::HttpSpan::start(method.as_str(), &url);
            let answer = builder.send().await;
            span.ended(&answer);
            let answer = answer.map_err(|e| errors::classify(e, &target, self.req.timeout))?;
            let Some(next) = redirect_target(&answer) else { break answer };
            redirects += 1;
            if redirects > MAX_REDIRECTS {
                return Err(StepError::terminal(format!("more than {MAX_REDIRECTS} redirects ({target})")));
            }
            self.client.check_url(&next).map_err(|e| {
                StepError::terminal(format!("redirect refused: {e} ({target} → {})", errors::display_url(&next)))
            })?;
            // 303, and 301/302 after anything but GET or HEAD, turn into a GET without a body
            // (what browsers and reqwest do); 307 and 308 repeat the request as it was.
            let status = answer.status().as_u16();
            if status == 303 || (matches!(status, 301 | 302) && method != reqwest::Method::GET) {
                method = reqwest::Method::GET;
                with_body = false;
                headers.remove(CONTENT_TYPE);
            }
            url = next;
        };
        let timeout = self.req.timeout;
        let status = answer.status();
        let headers = answer.headers().clone();
        let final_url = answer.url().clone();
        let bytes = match response::read_body(&mut answer, &target, timeout).await {
            Ok(bytes) => bytes,
            Err(error) => {
                let details = json!({ "status": status.as_u16(), "headers": response::header_map(&headers) });
                return Err(error.with_details(details));
            }
        };
        tracing::debug!(%target, status = status.as_u16(), bytes = bytes.len(), "response received");
        Ok(response::RawPage { url: final_url, target, status, headers, bytes })
    }
}

/// Drops every header the record redacts ([`is_sensitive_header`]).
fn strip_sensitive(headers: &mut HeaderMap) {
    let sensitive: Vec<HeaderName> =
        headers.keys().filter(|name| is_sensitive_header(name.as_str())).cloned().collect();
    for name in sensitive {
        headers.remove(name);
    }
}

/// Where a redirect answer points (its `Location` resolved against the request URL), if the
/// answer is a redirect to follow.
fn redirect_target(answer: &reqwest::Response) -> Option<Url> {
    if !matches!(answer.status().as_u16(), 301 | 302 | 303 | 307 | 308) {
        return None;
    }
    let location = answer.headers().get(reqwest::header::LOCATION)?.to_str().ok()?;
    answer.url().join(location).ok()
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

/// Query, header and form values: strings as they are, anything else as compact JSON.
fn value_text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

fn build_url(client: &HttpClient, req: &RenderedRequest) -> Result<Url, StepError> {
    let mut url = Url::parse(&req.url)
        .map_err(|e| StepError::terminal(format!("invalid URL `{}`: {e}", errors::display_raw_url(&req.url))))?;
    client
        .check_url(&url)
        .map_err(|e| StepError::terminal(format!("{e} ({} {})", req.method.as_str(), errors::display_url(&url))))?;
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
    if let Some(auth) = &req.auth {
        let mut value = HeaderValue::from_bytes(auth.header_value().as_bytes())
            .map_err(|_| StepError::terminal("invalid `auth` credentials: they cannot be sent in a header"))?;
        value.set_sensitive(true);
        headers.insert(AUTHORIZATION, value);
    }
    if !headers.contains_key(IDEMPOTENCY_KEY_HEADER) {
        let value = HeaderValue::from_bytes(idempotency_key.as_bytes())
            .map_err(|_| StepError::terminal("invalid idempotency key"))?;
        headers.insert(IDEMPOTENCY_KEY_HEADER, value);
    }
    Ok(headers)
}

#[cfg(test)]
pub(crate) mod test_files;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_body;
#[cfg(test)]
mod tests_pagination;
#[cfg(test)]
mod tests_response;

//! Reading an answer: its body by content type, its status as success or classified failure.
//!
//! Invariants: JSON (including `+json`) is parsed, textual types and unknown UTF-8 bodies are
//! text, form-urlencoded becomes an object, and binary content (by type, or any body that is
//! not UTF-8) is never put in an output or error: a successful binary answer is stored with
//! [`FileStore::put_file`] and represented by its file object; elsewhere it is summarised.

use bytes::Bytes;
use chrono::Utc;
use reqwest::StatusCode;
use reqwest::header::{CONTENT_DISPOSITION, CONTENT_TYPE, HeaderMap, LINK, RETRY_AFTER};
use serde_json::{Map, Value, json};
use url::Url;

use super::{MAX_RESPONSE_BYTES, errors, headers};
use crate::ports::{FileStore, StoreError};
use crate::record::{MAX_JSON_DEPTH, StepError, too_deep};

/// One answer, read in full.
#[derive(Debug)]
pub(super) struct RawPage {
    /// The URL that answered (after redirects).
    pub url: Url,
    /// `METHOD url` for messages (no query string).
    pub target: String,
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub bytes: Bytes,
}

/// How a body is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BodyKind {
    Empty,
    Json,
    Text,
    Form,
    Binary,
}

/// Media types that are files whatever their bytes look like.
const BINARY_PREFIXES: &[&str] = &[
    "image/",
    "audio/",
    "video/",
    "font/",
    "application/pdf",
    "application/octet-stream",
    "application/zip",
    "application/x-zip",
    "application/gzip",
    "application/x-gzip",
    "application/x-tar",
    "application/x-bzip",
    "application/x-7z-compressed",
    "application/x-rar",
    "application/vnd.rar",
    "application/java-archive",
    "application/wasm",
    "application/msword",
    "application/vnd.ms-",
    "application/vnd.openxmlformats-officedocument.",
    "application/vnd.oasis.opendocument.",
    "application/x-protobuf",
    "application/protobuf",
];

/// The media type without parameters, lower-case.
fn essence(content_type: &str) -> String {
    content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase()
}

pub(super) fn is_json_content_type(content_type: &str) -> bool {
    let mime = essence(content_type);
    mime == "application/json" || (mime.contains('/') && mime.ends_with("+json"))
}

/// How a body of `content_type` made of `bytes` is read.
pub(super) fn body_kind(content_type: Option<&str>, bytes: &[u8]) -> BodyKind {
    if bytes.is_empty() {
        return BodyKind::Empty;
    }
    let mime = content_type.map(essence).unwrap_or_default();
    if BINARY_PREFIXES.iter().any(|prefix| mime.starts_with(prefix)) || std::str::from_utf8(bytes).is_err() {
        return BodyKind::Binary;
    }
    if content_type.is_some_and(is_json_content_type) {
        BodyKind::Json
    } else if mime == "application/x-www-form-urlencoded" {
        BodyKind::Form
    } else {
        BodyKind::Text
    }
}

/// Lower-case names; repeated headers joined with `, `.
pub(super) fn header_map(headers: &HeaderMap) -> Map<String, Value> {
    headers
        .keys()
        .map(|name| {
            let values: Vec<String> =
                headers.get_all(name).iter().map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()).collect();
            (name.as_str().to_ascii_lowercase(), Value::from(values.join(", ")))
        })
        .collect()
}

pub(super) async fn read_body(
    response: &mut reqwest::Response,
    target: &str,
    timeout: std::time::Duration,
) -> Result<Bytes, StepError> {
    let too_large = || StepError::terminal(format!("the response body from {target} is larger than 5 MiB"));
    if response.content_length().is_some_and(|len| len > MAX_RESPONSE_BYTES as u64) {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| errors::classify(e, target, timeout))? {
        if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(body))
}

impl RawPage {
    fn content_type(&self) -> Option<&str> {
        self.headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::trim).filter(|v| !v.is_empty())
    }

    pub(super) fn kind(&self) -> BodyKind {
        body_kind(self.content_type(), &self.bytes)
    }

    /// The body as a JSON value; a binary body is summarised, not included. JSON nested
    /// deeper than [`MAX_JSON_DEPTH`] fails the step (it could not be recorded and read back).
    pub(super) fn body_value(&self) -> Result<Value, StepError> {
        self.body_value_of(self.kind())
    }

    fn body_value_of(&self, kind: BodyKind) -> Result<Value, StepError> {
        let value = match kind {
            BodyKind::Empty => Value::Null,
            BodyKind::Json => match serde_json::from_slice(&self.bytes) {
                Ok(value) if too_deep(&value) => {
                    return Err(StepError::terminal(format!(
                        "the response of {} is JSON nested deeper than {MAX_JSON_DEPTH} levels",
                        self.target
                    )));
                }
                Ok(value) => value,
                Err(_) => self.text(),
            },
            BodyKind::Text => self.text(),
            BodyKind::Form => form_object(&self.bytes),
            BodyKind::Binary => json!({
                "omitted": "binary body",
                "bytes": self.bytes.len(),
                "mimeType": self.content_type().unwrap_or("application/octet-stream"),
            }),
        };
        Ok(value)
    }

    fn text(&self) -> Value {
        Value::String(String::from_utf8_lossy(&self.bytes).into_owned())
    }

    /// `{status, headers, body}` with `body`.
    pub(super) fn output_with(&self, body: Value) -> Value {
        json!({ "status": self.status.as_u16(), "headers": header_map(&self.headers), "body": body })
    }

    /// Every `Link` header's `rel="next"` target, resolved against this page's URL.
    pub(super) fn next_link(&self) -> Option<Url> {
        let values = self.headers.get_all(LINK).iter().filter_map(|v| v.to_str().ok());
        headers::next_link(values, &self.url)
    }

    /// Fails a non-2xx answer: 408, 429 and 5xx retryable (after `Retry-After`, if given),
    /// others terminal; `details` is the page's output with `body`.
    pub(super) fn ensure_success(&self, body: &Value) -> Result<(), StepError> {
        if self.status.is_success() {
            return Ok(());
        }
        let code = self.status.as_u16();
        let reason = self.status.canonical_reason().map(|r| format!(" {r}")).unwrap_or_default();
        let message = format!("HTTP {code}{reason} from {}", self.target);
        let retryable = code == 408 || code == 429 || self.status.is_server_error();
        let mut error = if retryable { StepError::retryable(message) } else { StepError::terminal(message) };
        if retryable {
            error.retry_after_ms = self.retry_after_ms();
        }
        Err(error.with_details(self.output_with(body.clone())))
    }

    /// Fails an answer the API's own rules refuse ([`super::ResponseChecks`]): a matching
    /// error rule first (retryable or not as it says), then a non-2xx status as
    /// [`RawPage::ensure_success`] does, then a failed `okWhen`. Errors quote the provider's
    /// own code and carry the answer as `details`.
    pub(super) fn ensure_accepted(&self, body: &Value, checks: &super::ResponseChecks) -> Result<(), StepError> {
        if checks.rules.is_empty() && checks.ok_when.is_none() {
            return self.ensure_success(body);
        }
        let output = self.output_with(body.clone());
        let quoted = |path: &str| match crate::catalog::value_at(&output, path) {
            Some(Value::String(text)) => Some(text.chars().take(300).collect::<String>()),
            Some(Value::Null) | None => None,
            Some(other) => Some(other.to_string()),
        };
        if let Some(rule) = checks.rules.iter().find(|rule| rule.when.matches(&output)) {
            let code = rule.code.as_deref().and_then(quoted).map(|code| format!(" (`{code}`)")).unwrap_or_default();
            let message = format!("{}: {}{code}, from {}", checks.api, rule.message, self.target);
            let mut error = if rule.retry { StepError::retryable(message) } else { StepError::terminal(message) };
            if rule.retry {
                error.retry_after_ms = self.retry_after_ms();
            }
            return Err(error.with_details(output));
        }
        self.ensure_success(body)?;
        if let Some(ok_when) = &checks.ok_when
            && crate::catalog::value_at(&output, &ok_when.path) != Some(&Value::Bool(true))
        {
            let code = quoted(&ok_when.message).unwrap_or_else(|| "no error given".to_string());
            let message =
                format!("{} refused: `{code}` (`{}` is not true), from {}", checks.api, ok_when.path, self.target);
            return Err(StepError::terminal(message).with_details(output));
        }
        Ok(())
    }

    fn retry_after_ms(&self) -> Option<u64> {
        self.headers.get(RETRY_AFTER).and_then(|v| v.to_str().ok()).and_then(|v| errors::retry_after_ms(v, Utc::now()))
    }

    /// The output of a single (unpaginated) request: `{status, headers, body}`, and for a
    /// binary body the stored file's object as both `body` and `file`.
    pub(super) async fn into_output(
        self,
        files: &dyn FileStore,
        execution_id: &str,
        checks: &super::ResponseChecks,
    ) -> Result<Value, StepError> {
        let kind = self.kind();
        let body = self.body_value_of(kind)?;
        self.ensure_accepted(&body, checks)?;
        if kind != BodyKind::Binary {
            return Ok(self.output_with(body));
        }
        let name = self.file_name();
        let mime_type = self.content_type().unwrap_or("application/octet-stream").to_string();
        let size = self.bytes.len();
        let file = files.put_file(execution_id, &name, &mime_type, self.bytes.clone()).await.map_err(|error| {
            let message = format!("could not store the {size}-byte file from {}: {error}", self.target);
            match error {
                StoreError::Backend(_) => StepError::retryable(message),
                _ => StepError::terminal(message),
            }
        })?;
        let file = serde_json::to_value(&file).map_err(|e| StepError::terminal(format!("file object: {e}")))?;
        let mut output = self.output_with(file.clone());
        output["file"] = file;
        Ok(output)
    }

    /// From `Content-Disposition`, else the URL's last path segment, else `file`.
    fn file_name(&self) -> String {
        self.headers
            .get(CONTENT_DISPOSITION)
            .and_then(|v| v.to_str().ok())
            .and_then(headers::disposition_filename)
            .or_else(|| headers::url_file_name(&self.url))
            .unwrap_or_else(|| "file".to_string())
    }
}

/// A form-urlencoded body as an object; a repeated field becomes an array of its values.
fn form_object(bytes: &[u8]) -> Value {
    let mut fields = Map::new();
    for (name, value) in url::form_urlencoded::parse(bytes).into_owned() {
        match fields.get_mut(&name) {
            Some(Value::Array(values)) => values.push(Value::String(value)),
            Some(existing) => *existing = json!([existing.take(), value]),
            None => {
                fields.insert(name, Value::String(value));
            }
        }
    }
    Value::Object(fields)
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn bodies_are_read_by_content_type_and_bytes() {
        let text = b"hello".as_slice();
        assert_eq!(body_kind(Some("application/json"), b"{}"), BodyKind::Json);
        assert_eq!(body_kind(Some("application/hal+json"), b"{}"), BodyKind::Json);
        for ct in [
            "text/html",
            "text/csv; charset=utf-8",
            "application/xml",
            "application/javascript",
            "application/x-unknown",
        ] {
            assert_eq!(body_kind(Some(ct), text), BodyKind::Text, "{ct}");
        }
        assert_eq!(body_kind(None, text), BodyKind::Text);
        assert_eq!(body_kind(Some("application/x-www-form-urlencoded"), b"a=1"), BodyKind::Form);
        for ct in [
            "image/png",
            "image/svg+xml",
            "application/pdf",
            "application/octet-stream",
            "application/zip",
            "video/mp4",
        ] {
            assert_eq!(body_kind(Some(ct), text), BodyKind::Binary, "{ct}");
        }
        assert_eq!(body_kind(Some("text/plain"), &[0xff, 0xfe, 0x00]), BodyKind::Binary);
        assert_eq!(body_kind(None, &[0x89, b'P', b'N', b'G']), BodyKind::Binary);
        assert_eq!(body_kind(Some("image/png"), b""), BodyKind::Empty);
    }

    #[test]
    fn form_bodies_become_objects_with_repeated_fields_as_arrays() {
        assert_eq!(form_object(b"a=1&b=x+y&a=2&a=3&c="), json!({ "a": ["1", "2", "3"], "b": "x y", "c": "" }));
    }
}

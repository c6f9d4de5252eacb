//! Encoding a Request step's `body` by its `body_type`: JSON (default), form, multipart or raw.
//!
//! Invariants: the body is encoded once per step and the same bytes are sent for every page;
//! a step's own `content-type` header wins except for multipart, whose boundary must be ours;
//! file parts are read from the [`FileStore`] scoped to the execution, so a file object copied
//! from another execution is refused; error messages name fields and file names, never values.

use bytes::Bytes;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderValue};
use serde_json::Value;

use super::{RenderedRequest, value_text};
use crate::model::BodyType;
use crate::ports::{FileStore, StoreError};
use crate::record::{FileObject, StepError};

/// The file object `value` is, if it is one: `{name, mimeType, size, data: "sluice-file:<id>"}`.
pub fn file_object(value: &Value) -> Option<FileObject> {
    let data = value.as_object()?.get("data")?.as_str()?;
    if !data.starts_with(FileObject::DATA_PREFIX) {
        return None;
    }
    serde_json::from_value(value.clone()).ok()
}

/// The encoded body and the content type it goes with.
#[derive(Debug, Clone, Default)]
pub(super) struct PreparedBody {
    bytes: Option<Bytes>,
    content_type: Option<String>,
    /// Whether `content_type` replaces one the step set (multipart: the boundary is ours).
    force: bool,
}

impl PreparedBody {
    fn new(bytes: impl Into<Bytes>, content_type: impl Into<String>, force: bool) -> Self {
        PreparedBody { bytes: Some(bytes.into()), content_type: Some(content_type.into()), force }
    }

    /// Sets `content-type` unless the step set one (always, for multipart).
    pub(super) fn set_content_type(&self, headers: &mut HeaderMap) -> Result<(), StepError> {
        let Some(content_type) = &self.content_type else { return Ok(()) };
        if self.force || !headers.contains_key(CONTENT_TYPE) {
            let value = HeaderValue::from_str(content_type)
                .map_err(|_| StepError::terminal("the body's content type is not a valid header value"))?;
            headers.insert(CONTENT_TYPE, value);
        }
        Ok(())
    }

    pub(super) fn apply(&self, builder: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.bytes {
            Some(bytes) => builder.body(bytes.clone()),
            None => builder,
        }
    }
}

/// Encodes `req.body` as `req.body_type` says; file parts are read from `files`.
pub(super) async fn prepare(
    req: &RenderedRequest,
    files: &dyn FileStore,
    execution_id: &str,
) -> Result<PreparedBody, StepError> {
    let Some(body) = &req.body else { return Ok(PreparedBody::default()) };
    match req.body_type {
        BodyType::Json => {
            let bytes = serde_json::to_vec(body)
                .map_err(|e| StepError::terminal(format!("the body cannot be encoded as JSON: {e}")))?;
            Ok(PreparedBody::new(bytes, "application/json", false))
        }
        BodyType::Form => Ok(PreparedBody::new(form(body)?, "application/x-www-form-urlencoded", false)),
        BodyType::Raw => match body {
            Value::String(text) => Ok(PreparedBody::new(text.clone(), "text/plain", false)),
            other => Err(StepError::terminal(format!(
                "a raw body must be text, got {} (use body_type json to send JSON)",
                crate::template::kind(other)
            ))),
        },
        BodyType::Multipart => {
            let boundary = format!("sluice-{}", uuid::Uuid::new_v4().simple());
            let bytes = multipart(body, &boundary, files, execution_id).await?;
            Ok(PreparedBody::new(bytes, format!("multipart/form-data; boundary={boundary}"), true))
        }
    }
}

/// `application/x-www-form-urlencoded` from a flat object (non-string values as JSON text);
/// a string is taken as already encoded.
fn form(body: &Value) -> Result<String, StepError> {
    match body {
        Value::Object(fields) => {
            let mut encoder = url::form_urlencoded::Serializer::new(String::new());
            for (name, value) in fields {
                encoder.append_pair(name, &value_text(value));
            }
            Ok(encoder.finish())
        }
        Value::String(encoded) => Ok(encoded.clone()),
        other => Err(StepError::terminal(format!(
            "a form body must be an object of fields, got {}",
            crate::template::kind(other)
        ))),
    }
}

/// `multipart/form-data` from a flat object: a file object (or an array of them) becomes file
/// parts with the file's name and MIME type, anything else a text part.
async fn multipart(
    body: &Value,
    boundary: &str,
    files: &dyn FileStore,
    execution_id: &str,
) -> Result<Bytes, StepError> {
    let Value::Object(fields) = body else {
        return Err(StepError::terminal(format!(
            "a multipart body must be an object of fields, got {}",
            crate::template::kind(body)
        )));
    };
    let mut out: Vec<u8> = Vec::new();
    for (name, value) in fields {
        let file_list: Option<Vec<FileObject>> = match value {
            Value::Array(items) if !items.is_empty() => items.iter().map(file_object).collect(),
            other => file_object(other).map(|file| vec![file]),
        };
        match file_list {
            Some(list) => {
                for file in list {
                    let bytes = read_file(files, execution_id, name, &file).await?;
                    part_head(&mut out, boundary, name, Some((&file.name, &file.mime_type)));
                    out.extend_from_slice(&bytes);
                    out.extend_from_slice(b"\r\n");
                }
            }
            None => {
                part_head(&mut out, boundary, name, None);
                out.extend_from_slice(value_text(value).as_bytes());
                out.extend_from_slice(b"\r\n");
            }
        }
    }
    out.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    Ok(Bytes::from(out))
}

fn part_head(out: &mut Vec<u8>, boundary: &str, name: &str, file: Option<(&str, &str)>) {
    let mut head = format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{}\"", escape(name));
    if let Some((file_name, mime_type)) = file {
        let mime_type: String = mime_type.chars().filter(|c| !c.is_control()).collect();
        let mime_type = if mime_type.trim().is_empty() { "application/octet-stream" } else { mime_type.trim() };
        head.push_str(&format!("; filename=\"{}\"\r\nContent-Type: {mime_type}", escape(file_name)));
    }
    head.push_str("\r\n\r\n");
    out.extend_from_slice(head.as_bytes());
}

/// Names and file names in a part header, escaped as browsers do (HTML's multipart encoding).
fn escape(text: &str) -> String {
    text.replace('"', "%22").replace('\r', "%0D").replace('\n', "%0A")
}

async fn read_file(
    files: &dyn FileStore,
    execution_id: &str,
    field: &str,
    file: &FileObject,
) -> Result<Bytes, StepError> {
    match files.get_file(execution_id, file).await {
        Ok(Some(bytes)) => Ok(bytes),
        Ok(None) => Err(StepError::terminal(format!(
            "the file `{}` in multipart field `{field}` is not a file of this execution",
            file.name
        ))),
        Err(error) => {
            let message = format!("could not read the file `{}` for multipart field `{field}`: {error}", file.name);
            Err(match error {
                StoreError::Backend(_) => StepError::retryable(message),
                _ => StepError::terminal(message),
            })
        }
    }
}

//! Turning a settled response into the HTTP answer, and the trigger's wait for one.
//!
//! Invariant: a file answer is the file's exact bytes, read from the execution's own files at
//! answer time, with the file's MIME type and an `inline` content disposition (unless the
//! Response step set those headers); a file that cannot be read is a 500 JSON error.

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Response, StatusCode, header};
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::ports::FileStore;
use crate::record::{Execution, FileObject, HttpResponse, SettledResponse, format_timestamp};

/// The status of a synchronous response that did not arrive in time.
pub const TIMEOUT_STATUS: u16 = 542;

/// The 542 body of the design: the caller can look the execution up later.
pub fn timeout_body(execution: &Execution) -> Value {
    json!({
        "message": "Workflow has been enqueued but has not completed.",
        "dateSubmitted": format_timestamp(&execution.started_at),
        "projectId": execution.project_id,
        "workflowId": execution.workflow_id,
        "executionId": execution.id,
    })
}

/// The status and body a caller got (or gets) for a settled response.
pub fn settled_summary(execution: &Execution, settled: &SettledResponse) -> HttpResponse {
    match settled {
        SettledResponse::Step { response, .. } | SettledResponse::WorkflowEnded { response, .. } => response.clone(),
        SettledResponse::TimedOut { .. } => HttpResponse {
            status: TIMEOUT_STATUS,
            headers: Default::default(),
            body: timeout_body(execution),
            file: None,
        },
    }
}

/// The HTTP answer for `settled`; a file answer's bytes are read from `files`.
pub(super) async fn settled_to_http(
    files: &dyn FileStore,
    execution: &Execution,
    settled: &SettledResponse,
) -> Response<Bytes> {
    let answer = settled_summary(execution, settled);
    let (content_type, body) = match &answer.file {
        Some(file) => match file_bytes(files, execution, file).await {
            Ok(bytes) => (Some(mime_header(&file.mime_type)), bytes),
            Err(error) => return with_execution_id(error.into_response(), execution),
        },
        None => match &answer.body {
            Value::Null => (None, Bytes::new()),
            Value::String(text) => {
                (Some(HeaderValue::from_static("text/plain; charset=utf-8")), Bytes::from(text.clone()))
            }
            other => (Some(HeaderValue::from_static("application/json")), Bytes::from(other.to_string())),
        },
    };
    let mut response = Response::new(body);
    *response.status_mut() = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::OK);
    let headers = response.headers_mut();
    if let Some(content_type) = content_type {
        headers.insert(header::CONTENT_TYPE, content_type);
    }
    if let Some(file) = &answer.file
        && !answer.headers.contains_key(header::CONTENT_DISPOSITION.as_str())
    {
        headers.insert(header::CONTENT_DISPOSITION, inline_disposition(&file.name));
    }
    for (name, value) in &answer.headers {
        match (HeaderName::try_from(name.as_str()), HeaderValue::try_from(value.as_str())) {
            (Ok(name), Ok(value)) => {
                headers.insert(name, value);
            }
            _ => {
                tracing::warn!(execution = %execution.id, header = %name, "response header skipped: not a valid HTTP header")
            }
        }
    }
    with_execution_id(response, execution)
}

fn with_execution_id(mut response: Response<Bytes>, execution: &Execution) -> Response<Bytes> {
    response.headers_mut().insert(
        HeaderName::from_static("x-sluice-execution-id"),
        HeaderValue::try_from(execution.id.as_str()).unwrap_or(HeaderValue::from_static("")),
    );
    response
}

async fn file_bytes(files: &dyn FileStore, execution: &Execution, file: &FileObject) -> Result<Bytes, ApiError> {
    match files.get_file(&execution.id, file).await? {
        Some(bytes) => Ok(bytes),
        None => Err(ApiError::Internal(format!(
            "the response file `{}` ({}) of execution {} is missing",
            file.name, file.data, execution.id
        ))),
    }
}

/// The file's MIME type as a header, `application/octet-stream` when it is not a valid one.
fn mime_header(mime_type: &str) -> HeaderValue {
    HeaderValue::from_str(mime_type.trim())
        .ok()
        .filter(|value| !value.is_empty())
        .unwrap_or(HeaderValue::from_static("application/octet-stream"))
}

/// `inline; filename="<ASCII name>"`, plus `filename*=UTF-8''<percent-encoded>` for other names.
fn inline_disposition(name: &str) -> HeaderValue {
    let ascii: String = name
        .chars()
        .map(|c| if c.is_ascii_graphic() || c == ' ' { c } else { '_' })
        .collect::<String>()
        .replace('\\', "\\\\")
        .replace('"', "\\\"");
    let mut value = format!("inline; filename=\"{ascii}\"");
    if !name.is_ascii() || name.chars().any(|c| c.is_ascii_control()) {
        let encoded: String = name
            .bytes()
            .map(|b| match b {
                b'A'..=b'Z'
                | b'a'..=b'z'
                | b'0'..=b'9'
                | b'!'
                | b'#'
                | b'$'
                | b'&'
                | b'+'
                | b'-'
                | b'.'
                | b'^'
                | b'_'
                | b'`'
                | b'|'
                | b'~' => char::from(b).to_string(),
                other => format!("%{other:02X}"),
            })
            .collect();
        value.push_str(&format!("; filename*=UTF-8''{encoded}"));
    }
    HeaderValue::from_str(&value).unwrap_or(HeaderValue::from_static("inline"))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::record::now;
    use crate::steps::request::test_files::MemoryFiles;

    const PNG: &[u8] = &[0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a, 0xff, 0x00];

    fn execution(id: &str) -> Execution {
        crate::record::sample_execution(id)
    }

    fn file_answer(file: FileObject, headers: &[(&str, &str)]) -> SettledResponse {
        let headers: BTreeMap<String, String> = headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        SettledResponse::Step {
            response: HttpResponse { status: 200, headers, body: Value::Null, file: Some(file) },
            at: now(),
        }
    }

    fn header<'a>(response: &'a Response<Bytes>, name: &str) -> &'a str {
        response.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or_default()
    }

    #[tokio::test]
    async fn a_file_answer_is_the_files_bytes_with_its_mime_type() -> Result<(), Box<dyn std::error::Error>> {
        let files = MemoryFiles::new();
        let file = files.put_file("exec-1", "pixel.png", "image/png", Bytes::from_static(PNG)).await?;
        let response = settled_to_http(&files, &execution("exec-1"), &file_answer(file, &[("x-extra", "1")])).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.body().as_ref(), PNG);
        assert_eq!(header(&response, "content-type"), "image/png");
        assert_eq!(header(&response, "content-disposition"), r#"inline; filename="pixel.png""#);
        assert_eq!(header(&response, "x-extra"), "1");
        assert_eq!(header(&response, "x-sluice-execution-id"), "exec-1");
        Ok(())
    }

    #[tokio::test]
    async fn headers_the_step_set_win_over_the_files_defaults() -> Result<(), Box<dyn std::error::Error>> {
        let files = MemoryFiles::new();
        let file = files.put_file("exec-1", "r.pdf", "application/pdf", Bytes::from_static(b"%PDF")).await?;
        let settled = file_answer(file, &[("content-disposition", r#"attachment; filename="report.pdf""#)]);
        let response = settled_to_http(&files, &execution("exec-1"), &settled).await;
        assert_eq!(header(&response, "content-disposition"), r#"attachment; filename="report.pdf""#);
        assert_eq!(header(&response, "content-type"), "application/pdf");
        Ok(())
    }

    #[tokio::test]
    async fn a_missing_file_is_a_500_json_error() {
        let files = MemoryFiles::new();
        let file = FileObject {
            name: "gone.png".into(),
            mime_type: "image/png".into(),
            size: 3,
            data: "sluice-file:x".into(),
        };
        let response = settled_to_http(&files, &execution("exec-1"), &file_answer(file, &[])).await;
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(header(&response, "content-type"), "application/json");
        let body: Value = serde_json::from_slice(response.body()).unwrap_or_default();
        assert_eq!(body["error"]["code"], "internal");
        assert_eq!(header(&response, "x-sluice-execution-id"), "exec-1");
    }

    #[tokio::test]
    async fn json_and_text_bodies_are_answered_as_before() {
        let files = MemoryFiles::new();
        let json_answer = SettledResponse::Step {
            response: HttpResponse {
                status: 201,
                headers: BTreeMap::new(),
                body: serde_json::json!({ "a": 1 }),
                file: None,
            },
            at: now(),
        };
        let response = settled_to_http(&files, &execution("e"), &json_answer).await;
        assert_eq!((response.status().as_u16(), response.body().as_ref()), (201, br#"{"a":1}"#.as_slice()));
        assert_eq!(header(&response, "content-type"), "application/json");
        assert_eq!(header(&response, "content-disposition"), "");
    }

    #[test]
    fn file_names_are_quoted_and_non_ascii_names_get_an_extended_form() {
        assert_eq!(inline_disposition(r#"a "b".txt"#), r#"inline; filename="a \"b\".txt""#);
        assert_eq!(
            inline_disposition("résumé.pdf"),
            "inline; filename=\"r_sum_.pdf\"; filename*=UTF-8''r%C3%A9sum%C3%A9.pdf"
        );
        assert_eq!(mime_header("bad\nvalue"), "application/octet-stream");
    }
}

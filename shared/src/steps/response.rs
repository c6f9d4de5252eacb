//! The Response step: renders the answer and hands it back; the interpreter settles it for a
//! waiting caller (first writer wins) and records the step with how it was delivered: if the
//! deadline already settled a 542, the step still succeeds and its output says the answer
//! came too late (`delivered: false`).
//!
//! A file answer (`file: "{{steps.x.output.file}}"`) settles only the file object, never its
//! bytes: the object must render to a file of this execution's `FileStore` (checked before
//! answering) and excludes `body`; the trigger reads the bytes when it answers.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::request::file_object;
use crate::model::ResponseStep;
use crate::ports::{FileStore, StoreError};
use crate::record::{FileObject, HttpResponse, StepError};
use crate::template;

/// Renders the answer of `step`: its recorded input and the answer (or why there is none).
pub(super) async fn run(
    files: &dyn FileStore,
    execution_id: &str,
    step: &ResponseStep,
    ctx: &Value,
) -> (Value, Result<HttpResponse, StepError>) {
    let response = match render(step, ctx) {
        Ok(response) => response,
        Err(error) => return (Value::Null, Err(error)),
    };
    // The body is recorded once, in the output (the record must stay small).
    let input = json!({ "status": response.status, "headers": response.headers });
    if let Some(file) = &response.file
        && let Err(error) = check_file(files, execution_id, file).await
    {
        return (input, Err(error));
    }
    (input, Ok(response))
}

/// The output recorded for an answer, before its delivery is known.
pub(super) fn sent(response: &HttpResponse) -> Value {
    let mut sent = json!({ "status": response.status, "headers": response.headers, "body": response.body });
    if let Some(file) = &response.file {
        sent["file"] = json!(file);
    }
    sent
}

/// How a Response step's answer reached the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// It is what the caller gets.
    Delivered,
    /// Nobody waits for an answer (an asynchronous execution).
    NoCaller,
    /// The caller had been answered before (542, or the workflow's end).
    TooLate,
}

/// `output` with its delivery: `delivered`, and a `note` when it was not.
pub fn with_delivery(mut output: Value, delivery: Delivery) -> Value {
    let (delivered, note) = match delivery {
        Delivery::Delivered => (true, None),
        Delivery::NoCaller => (false, Some("the caller did not wait for a response")),
        Delivery::TooLate => (false, Some("the response came too late: the caller had already been answered (542)")),
    };
    output["delivered"] = json!(delivered);
    if let Some(note) = note {
        output["note"] = json!(note);
    }
    output
}

fn render(step: &ResponseStep, ctx: &Value) -> Result<HttpResponse, StepError> {
    let render = |value: &Value| template::render(value, ctx).map_err(|e| StepError::terminal(e.to_string()));
    let status = match render(&step.status)? {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
    .filter(|s| (200..=599).contains(s))
    .and_then(|s| u16::try_from(s).ok())
    .ok_or_else(|| StepError::terminal("`status` must be a whole number from 200 to 599"))?;
    let mut headers = BTreeMap::new();
    for (name, value) in &step.headers {
        let text = match render(value)? {
            Value::String(s) => s,
            other => other.to_string(),
        };
        headers.insert(name.to_ascii_lowercase(), text);
    }
    let file = match (&step.file, &step.body) {
        (Some(_), Some(_)) => {
            return Err(StepError::terminal("a response has either `file` or `body`, not both"));
        }
        (Some(file), None) => {
            let value = render(file)?;
            let file = file_object(&value).ok_or_else(|| {
                StepError::terminal(format!(
                    "`file` must be a file object such as `{{{{steps.ID.output.file}}}}` \
                     ({{name, mimeType, size, data: \"sluice-file:...\"}}), got {}",
                    template::kind(&value)
                ))
            })?;
            Some(file)
        }
        (None, _) => None,
    };
    let body = step.body.as_ref().map(render).transpose()?.unwrap_or(Value::Null);
    Ok(HttpResponse { status, headers, body, file })
}

/// Fails unless `file` is a stored file of `execution_id` (so the caller will get its bytes).
async fn check_file(files: &dyn FileStore, execution_id: &str, file: &FileObject) -> Result<(), StepError> {
    match files.get_file(execution_id, file).await {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err(StepError::terminal(format!("the file `{}` is not a file of this execution", file.name))),
        Err(error) => {
            let message = format!("could not read the file `{}`: {error}", file.name);
            Err(match error {
                StoreError::Backend(_) => StepError::retryable(message),
                _ => StepError::terminal(message),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::steps::request::test_files::MemoryFiles;

    fn step(body: Option<Value>, file: Option<Value>) -> ResponseStep {
        ResponseStep { status: json!(200), headers: BTreeMap::new(), body, file }
    }

    fn ctx(file: &FileObject) -> Value {
        json!({ "steps": { "download": { "output": { "file": file, "body": "text" } } } })
    }

    fn sample_file() -> FileObject {
        FileObject { name: "a.png".into(), mime_type: "image/png".into(), size: 3, data: "sluice-file:abc".into() }
    }

    #[test]
    fn a_file_reference_renders_to_a_file_answer_without_body() -> Result<(), StepError> {
        let file = sample_file();
        let response = render(&step(None, Some(json!("{{steps.download.output.file}}"))), &ctx(&file))?;
        assert_eq!(response.file, Some(file));
        assert_eq!(response.body, Value::Null);
        assert_eq!(response.status, 200);
        Ok(())
    }

    #[test]
    fn a_file_that_is_not_a_file_object_fails_terminally() {
        let file = sample_file();
        for reference in ["{{steps.download.output.body}}", "sluice-file:abc"] {
            let error = render(&step(None, Some(json!(reference))), &ctx(&file)).err();
            let error = error.map(|e| (e.retryable, e.message));
            assert!(
                error.as_ref().is_some_and(|(retryable, message)| !retryable
                    && message.starts_with("`file` must be a file object such as `{{steps.ID.output.file}}`")
                    && message.ends_with("got a string")),
                "{error:?}"
            );
        }
        let missing = render(&step(None, Some(json!("{{steps.nope.output.file}}"))), &ctx(&file)).err();
        assert!(missing.is_some_and(|e| !e.retryable && e.message.contains("steps.nope")));
    }

    #[test]
    fn file_and_body_together_are_refused() {
        let file = sample_file();
        let both = step(Some(json!({ "a": 1 })), Some(json!("{{steps.download.output.file}}")));
        let error = render(&both, &ctx(&file)).err().map(|e| e.message);
        assert_eq!(error.as_deref(), Some("a response has either `file` or `body`, not both"));
    }

    #[tokio::test]
    async fn only_a_stored_file_of_this_execution_can_be_answered() -> Result<(), Box<dyn std::error::Error>> {
        let files = MemoryFiles::new();
        let file = files.put_file("exec-1", "a.png", "image/png", Bytes::from_static(b"png")).await?;
        assert!(check_file(&files, "exec-1", &file).await.is_ok());
        let error = check_file(&files, "exec-2", &file).await.err().ok_or("expected an error")?;
        assert!(!error.retryable);
        assert_eq!(error.message, "the file `a.png` is not a file of this execution");
        Ok(())
    }
}

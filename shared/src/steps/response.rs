//! The Response step: renders the answer and settles it as the synchronous caller's
//! response. If the deadline already settled a 542, the step still succeeds and its output
//! records that the answer came too late (`delivered: false`).

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::model::ResponseStep;
use crate::ports::FirstWrite;
use crate::record::{Execution, HttpResponse, SettledResponse, StepError, now};
use crate::runtime::Runtime;
use crate::template;

pub(super) async fn run(
    runtime: &Runtime,
    execution: &Execution,
    step: &ResponseStep,
    ctx: &Value,
) -> (Value, Result<Value, StepError>) {
    let response = match render(step, ctx) {
        Ok(response) => response,
        Err(error) => return (Value::Null, Err(error)),
    };
    // The body is recorded once, in the output (the record must stay small).
    let input = json!({ "status": response.status, "headers": response.headers });
    let sent = json!({ "status": response.status, "headers": response.headers, "body": response.body });
    if execution.response_deadline.is_none() {
        // Only executions whose caller waits have a response to settle.
        return (input, Ok(with_delivery(sent, false, Some("the caller did not wait for a response"))));
    }
    let settled = SettledResponse::Step { response: response.clone(), at: now() };
    let result = match runtime.store.settle_response(&execution.id, &settled).await {
        Ok(FirstWrite::Written) => Ok(with_delivery(sent, true, None)),
        Ok(FirstWrite::Existing(SettledResponse::Step { response: earlier, .. })) => {
            // A redelivery of this same step: it was delivered the first time.
            Ok(with_delivery(sent, earlier == response, None))
        }
        Ok(FirstWrite::Existing(_)) => Ok(with_delivery(
            sent,
            false,
            Some("the response came too late: the caller had already been answered (542)"),
        )),
        Err(error) => Err(StepError::retryable(format!("could not record the response: {error}"))),
    };
    (input, result)
}

fn with_delivery(mut output: Value, delivered: bool, note: Option<&str>) -> Value {
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
    let body = step.body.as_ref().map(render).transpose()?.unwrap_or(Value::Null);
    Ok(HttpResponse { status, headers, body, file: None })
}

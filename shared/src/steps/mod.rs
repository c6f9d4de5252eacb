//! Step executors: one per step type. Each turns a step, its attempt number and the
//! execution's variables into one [`StepAttempt`] record; none of them decides what runs
//! next (that is the engine's job). Templating errors fail the attempt terminally.

pub mod request;
mod response;

use std::time::Duration;

use serde_json::{Value, json};

use crate::condition;
use crate::model::{RequestStep, Step, StepKind};
use crate::record::{Execution, StepAttempt, StepError, StepStatus, now};
use crate::runtime::Runtime;
use crate::template;

/// A Request step's timeout when it sets none.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs one attempt of `step` and returns its record (not yet stored).
pub async fn execute(runtime: &Runtime, execution: &Execution, step: &Step, attempt: u32, ctx: &Value) -> StepAttempt {
    let started_at = now();
    let (input, result) = match &step.kind {
        StepKind::Request(request) => run_request(runtime, execution, step, request, ctx).await,
        StepKind::Conditional(conditional) => {
            let input = json!({ "when": conditional.when });
            let result = condition::evaluate(&conditional.when, ctx)
                .map(|taken| json!({ "branch": if taken { "then" } else { "else" } }))
                .map_err(|e| StepError::terminal(e.to_string()));
            (input, result)
        }
        StepKind::Response(response) => response::run(runtime, execution, response, ctx).await,
    };
    let (status, output, error) = match result {
        Ok(output) => (StepStatus::Succeeded, Some(output), None),
        Err(error) => (StepStatus::Failed, None, Some(error)),
    };
    StepAttempt { step: step.id.clone(), attempt, status, input, output, error, started_at, ended_at: now() }
}

async fn run_request(
    runtime: &Runtime,
    execution: &Execution,
    step: &Step,
    request: &RequestStep,
    ctx: &Value,
) -> (Value, Result<Value, StepError>) {
    let rendered = match render_request(request, ctx) {
        Ok(rendered) => rendered,
        Err(error) => return (Value::Null, Err(error)),
    };
    let idempotency_key = format!("{}:{}", execution.id, step.id);
    let result = request::send(&runtime.http, &rendered, &idempotency_key).await;
    (rendered.input_record(), result)
}

fn render_request(step: &RequestStep, ctx: &Value) -> Result<request::RenderedRequest, StepError> {
    let render = |value: &Value| template::render(value, ctx).map_err(|e| StepError::terminal(e.to_string()));
    let render_map = |map: &std::collections::BTreeMap<String, Value>| {
        map.iter()
            .map(|(k, v)| Ok((k.clone(), render(v)?)))
            .collect::<Result<_, StepError>>()
    };
    let url = match render(&Value::String(step.url.clone()))? {
        Value::String(url) => url,
        other => return Err(StepError::terminal(format!("`url` must be text, got {other}"))),
    };
    Ok(request::RenderedRequest {
        method: step.method,
        url,
        query: render_map(&step.query)?,
        headers: render_map(&step.headers)?,
        body: step.body.as_ref().map(render).transpose()?,
        timeout: step.timeout.as_ref().map_or(DEFAULT_REQUEST_TIMEOUT, |t| t.duration()),
    })
}

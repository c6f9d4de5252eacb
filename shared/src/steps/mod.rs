//! Step executors: one per step type. Each turns a step, its attempt number and the
//! execution's variables into one [`StepAttempt`] record; none of them decides what runs
//! next (that is the engine's job). Templating errors fail the attempt terminally.

mod delay;
pub mod function;
pub mod request;
mod response;

use std::time::Duration;

use serde_json::{Value, json};

use crate::condition;
use crate::model::{FunctionStep, RequestStep, Step, StepKind};
use crate::record::{Execution, StepAttempt, StepError, StepStatus, now};
use crate::runtime::Runtime;
use crate::template;

/// The largest step attempt record kept (its JSON). DynamoDB items hold at most 400 KB; a
/// bigger output fails the step rather than the storage write.
pub const MAX_RECORD_BYTES: usize = 350 * 1024;

/// A Request step's timeout when it sets none.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs one attempt of `step` — stored under `key` (the step id, plus the fan-out branch
/// indexes when it runs in a branch) — and returns its record (not yet stored).
pub async fn execute(
    runtime: &Runtime,
    execution: &Execution,
    step: &Step,
    key: &str,
    attempt: u32,
    ctx: &Value,
) -> StepAttempt {
    let started_at = now();
    let mut logs = Vec::new();
    let (input, result) = match &step.kind {
        StepKind::Request(request) => run_request(runtime, execution, key, request, ctx).await,
        StepKind::Conditional(conditional) => {
            let input = json!({ "when": conditional.when });
            let result = condition::evaluate(&conditional.when, ctx)
                .map(|taken| json!({ "branch": if taken { "then" } else { "else" } }))
                .map_err(|e| StepError::terminal(e.to_string()));
            (input, result)
        }
        StepKind::Response(response) => response::run(runtime, execution, response, ctx).await,
        StepKind::Delay(delay) => delay::run(delay, ctx, execution.test),
        StepKind::Function(function) => {
            let (input, result, printed) = run_function(function, ctx).await;
            logs = printed;
            (input, result)
        }
        // A fan-out is started by the runner, never executed as one attempt.
        StepKind::FanOut(_) => (Value::Null, Err(StepError::terminal("a fan-out step cannot run on its own"))),
    };
    let (status, output, error) = match result {
        Ok(output) => (StepStatus::Succeeded, Some(output), None),
        Err(error) => (StepStatus::Failed, None, Some(error)),
    };
    within_record_limit(StepAttempt {
        step: key.to_string(),
        attempt,
        status,
        input,
        output,
        error,
        started_at,
        ended_at: now(),
        logs,
    })
}

async fn run_function(step: &FunctionStep, ctx: &Value) -> (Value, Result<Value, StepError>, Vec<String>) {
    let parameters: serde_json::Map<String, Value> =
        match step.parameters.iter().map(|(k, v)| template::render(v, ctx).map(|v| (k.clone(), v))).collect() {
            Ok(parameters) => parameters,
            Err(error) => return (Value::Null, Err(StepError::terminal(error.to_string())), Vec::new()),
        };
    let parameters = Value::Object(parameters);
    let time_limit = step.time_limit.as_ref().map_or(function::DEFAULT_TIME_LIMIT, |t| t.duration());
    let memory = step.memory_limit_mb.unwrap_or(function::DEFAULT_MEMORY_MB);
    let input = json!({ "parameters": parameters });
    match function::run(&step.code, parameters, time_limit, memory).await {
        Ok(run) => (input, Ok(run.output), run.logs),
        Err(failure) => (input, Err(failure.error), failure.logs),
    }
}

/// Keeps an attempt within [`MAX_RECORD_BYTES`]: an oversized one fails (terminally) without
/// its output, and an oversized input is replaced by its size.
pub fn within_record_limit(mut attempt: StepAttempt) -> StepAttempt {
    let size = json_size(&attempt);
    if size <= MAX_RECORD_BYTES {
        return attempt;
    }
    let input_size = json_size(&attempt.input);
    if input_size > MAX_RECORD_BYTES / 2 {
        attempt.input = json!({ "omitted": "the input is too large to record", "bytes": input_size });
    }
    attempt.status = StepStatus::Failed;
    attempt.output = None;
    attempt.error = Some(StepError::terminal(format!(
        "the step's result is {size} bytes; a step may keep at most {MAX_RECORD_BYTES} bytes \
         (reduce what it returns, e.g. ask the API for fewer fields or a smaller page)"
    )));
    attempt
}

fn json_size<T: serde::Serialize>(value: &T) -> usize {
    serde_json::to_vec(value).map_or(usize::MAX, |bytes| bytes.len())
}

async fn run_request(
    runtime: &Runtime,
    execution: &Execution,
    key: &str,
    request: &RequestStep,
    ctx: &Value,
) -> (Value, Result<Value, StepError>) {
    let rendered = match render_request(request, ctx) {
        Ok(rendered) => rendered,
        Err(error) => return (Value::Null, Err(error)),
    };
    let idempotency_key = format!("{}:{key}", execution.id);
    let files: &dyn crate::ports::FileStore = runtime.store.as_ref();
    // A test run fetches at most `TEST_RUN_MAX_PAGES` pages of a paginated request.
    let options = if execution.test { request::SendOptions::test_run() } else { request::SendOptions::default() };
    let result = request::send(&runtime.http, files, &execution.id, &rendered, &idempotency_key, &options).await;
    (rendered.input_record(), result)
}

fn render_request(step: &RequestStep, ctx: &Value) -> Result<request::RenderedRequest, StepError> {
    let render = |value: &Value| template::render(value, ctx).map_err(|e| StepError::terminal(e.to_string()));
    let render_map = |map: &std::collections::BTreeMap<String, Value>| {
        map.iter().map(|(k, v)| Ok((k.clone(), render(v)?))).collect::<Result<_, StepError>>()
    };
    // Credentials: text, numbers and booleans as text; the value never appears in a message.
    let credential = |field: &str, value: &Value| match render(value)? {
        Value::String(text) => Ok(text),
        value @ (Value::Number(_) | Value::Bool(_)) => Ok(value.to_string()),
        other => Err(StepError::terminal(format!("`auth.{field}` must be text, got {}", template::kind(&other)))),
    };
    let url = match render(&Value::String(step.url.clone()))? {
        Value::String(url) => url,
        other => return Err(StepError::terminal(format!("`url` must be text, got {other}"))),
    };
    let auth = match &step.auth {
        None => None,
        Some(crate::model::RequestAuth::Basic { username, password }) => Some(request::RenderedAuth::Basic {
            username: credential("username", username)?,
            password: credential("password", password)?,
        }),
        Some(crate::model::RequestAuth::Bearer { token }) => {
            Some(request::RenderedAuth::Bearer { token: credential("token", token)? })
        }
    };
    Ok(request::RenderedRequest {
        method: step.method,
        url,
        query: render_map(&step.query)?,
        headers: render_map(&step.headers)?,
        body: step.body.as_ref().map(render).transpose()?,
        body_type: step.body_type,
        auth,
        timeout: step.timeout.as_ref().map_or(DEFAULT_REQUEST_TIMEOUT, |t| t.duration()),
        pagination: step.pagination.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attempt(input: Value, output: Value) -> StepAttempt {
        StepAttempt {
            step: "s".into(),
            attempt: 1,
            status: StepStatus::Succeeded,
            input,
            output: Some(output),
            error: None,
            started_at: now(),
            ended_at: now(),
            logs: Vec::new(),
        }
    }

    #[test]
    fn a_record_within_the_limit_is_kept_as_is() {
        let small = attempt(json!({ "url": "x" }), json!({ "body": "y".repeat(1000) }));
        assert_eq!(within_record_limit(small.clone()), small);
    }

    #[test]
    fn an_oversized_output_fails_the_step_without_being_kept() {
        let big = within_record_limit(attempt(json!({ "url": "x" }), json!({ "body": "y".repeat(MAX_RECORD_BYTES) })));
        assert_eq!(big.status, StepStatus::Failed);
        assert_eq!(big.output, None);
        assert_eq!(big.input, json!({ "url": "x" }));
        let error = big.error.expect("error");
        assert!(!error.retryable);
        assert!(error.message.contains("at most"), "{}", error.message);
        assert!(json_size(&big.input) < MAX_RECORD_BYTES);
    }

    #[test]
    fn an_oversized_input_is_replaced_by_its_size() {
        let big = within_record_limit(attempt(json!({ "body": "y".repeat(MAX_RECORD_BYTES) }), json!(1)));
        assert_eq!(big.status, StepStatus::Failed);
        assert!(big.input["bytes"].as_u64().is_some_and(|n| n > MAX_RECORD_BYTES as u64));
    }
}

//! Step executors: one per step type. Each turns a step, its attempt number and the
//! execution's variables into one [`StepAttempt`] record and the typed [`Signal`] the engine
//! needs (a conditional's branch, a Delay's due time); a Response step also hands back its
//! answer, which the interpreter settles. None of them decides what runs next (that is the
//! engine's job) and each gets only the ports it uses ([`StepPorts`]). Templating errors fail
//! the attempt terminally.

mod action;
mod delay;
pub mod fan_out;
pub mod function;
pub mod request;
pub mod response;

use std::time::Duration;

use serde_json::{Value, json};

use crate::condition;
use crate::condition::time::parse_timestamp;
use crate::engine::{Branch, Outcome, Signal};
use crate::model::{FunctionStep, RequestStep, Step, StepKind, Workflow};
use crate::net::HttpClient;
use crate::ports::FileStore;
use crate::record::{Execution, HttpResponse, StepAttempt, StepError, StepStatus, now};
use crate::template;

/// What step executors may use: the outbound HTTP client and the execution's files.
#[derive(Clone, Copy)]
pub struct StepPorts<'a> {
    pub http: &'a HttpClient,
    pub files: &'a dyn FileStore,
    /// Where an Action step gets fresh credentials when the provider refuses its access
    /// token (none: it fails as the provider answered).
    pub secrets: Option<&'a dyn crate::connect::SecretSource>,
}

/// One attempt that ran: its record (not yet stored), what it means for the flow, and a
/// Response step's answer (its record's output gets the delivery once it is settled).
#[derive(Debug, Clone, PartialEq)]
pub struct Executed {
    pub record: StepAttempt,
    pub signal: Signal,
    pub answer: Option<HttpResponse>,
}

/// The largest step attempt record kept (its JSON). DynamoDB items hold at most 400 KB; a
/// bigger output fails the step rather than the storage write.
pub const MAX_RECORD_BYTES: usize = 350 * 1024;

/// A Request step's timeout when it sets none.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs one attempt of `step` of `workflow` — stored under `key` (the step id, plus the
/// fan-out branch indexes when it runs in a branch) — and returns what it did (nothing
/// stored yet).
pub async fn execute(
    ports: StepPorts<'_>,
    execution: &Execution,
    workflow: &Workflow,
    step: &Step,
    key: &str,
    attempt: u32,
    ctx: &Value,
) -> Executed {
    let started_at = now();
    let mut logs = Vec::new();
    let mut signal = Signal::None;
    let mut answer = None;
    let (input, result) = match &step.kind {
        StepKind::Request(request) => run_request(ports, execution, key, request, ctx).await,
        StepKind::Action(action) => action::run(ports, execution, key, action, workflow, ctx).await,
        StepKind::Conditional(conditional) => {
            let input = json!({ "when": conditional.when });
            let result = condition::evaluate(&conditional.when, ctx)
                .map(|taken| {
                    let branch = if taken { Branch::Then } else { Branch::Else };
                    signal = Signal::Branch(branch);
                    json!({ "branch": branch_name(branch) })
                })
                .map_err(|e| StepError::terminal(e.to_string()));
            (input, result)
        }
        StepKind::Response(response) => {
            let (input, result) = response::run(ports.files, &execution.id, response, ctx).await;
            let output = result.map(|response| {
                let output = response::sent(&response);
                answer = Some(response);
                output
            });
            (input, output)
        }
        StepKind::Delay(delay) => {
            let (input, result) = delay::run(delay, ctx, execution.test);
            let result = result.map(|until| {
                signal = Signal::WaitUntil(until.waited_until);
                until.output
            });
            (input, result)
        }
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
    let record = within_record_limit(StepAttempt {
        step: key.to_string(),
        attempt,
        status,
        input,
        output,
        error,
        started_at,
        ended_at: now(),
        logs,
    });
    if record.status == StepStatus::Failed {
        // Cut for size: the flow sees the failure, not what the step meant to say.
        return Executed { record, signal: Signal::None, answer: None };
    }
    Executed { record, signal, answer }
}

fn branch_name(branch: Branch) -> &'static str {
    match branch {
        Branch::Then => "then",
        Branch::Else => "else",
    }
}

/// The outcome of an attempt recorded before (a redelivery), typed as the engine needs it:
/// the record's output is read back by the step type that wrote it. Err when the record
/// cannot be what that step type writes (a corrupt record).
pub fn outcome_of(step: &Step, record: &StepAttempt) -> Result<Outcome, String> {
    if record.status == StepStatus::Failed {
        return Ok(Outcome::Failed(record.error.clone().unwrap_or_else(|| StepError::terminal("failed"))));
    }
    let output = record.output.clone().unwrap_or(Value::Null);
    let signal = match &step.kind {
        StepKind::Conditional(_) => match output.get("branch").and_then(Value::as_str) {
            Some("then") => Signal::Branch(Branch::Then),
            Some("else") => Signal::Branch(Branch::Else),
            _ => return Err(format!("the recorded conditional `{}` has no branch: {output}", record.step)),
        },
        StepKind::Delay(_) => match output.get("waitedUntil").and_then(parse_timestamp) {
            Some(until) => Signal::WaitUntil(until),
            None => return Err(format!("the recorded delay `{}` has no due time: {output}", record.step)),
        },
        _ => Signal::None,
    };
    Ok(Outcome::Succeeded { output, signal })
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
    ports: StepPorts<'_>,
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
    // A test run fetches at most `TEST_RUN_MAX_PAGES` pages of a paginated request.
    let options = if execution.test { request::SendOptions::test_run() } else { request::SendOptions::default() };
    let result = request::send(ports.http, ports.files, &execution.id, &rendered, &idempotency_key, &options).await;
    let secrets = rendered.auth.as_ref().map(request::RenderedAuth::secret_forms).unwrap_or_default();
    (rendered.input_record(), crate::connect::redact_result(result, &secrets))
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
        checks: request::ResponseChecks::default(),
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

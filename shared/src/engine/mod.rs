//! The execution engine: a pure state machine. Given a workflow and the outcome of one step
//! attempt in one fan-out scope, it decides what happens next — the next step (after a
//! branch, a retry with a delay, a Delay step's wait, or continuing past a failure), the end
//! of a fan-out branch, or the end of the execution — as an [`Effect`] that the runner
//! carries out. No I/O happens here.
//!
//! A *scope* is the list of branch indexes of the fan-outs enclosing a step (empty outside
//! any fan-out); every effect names the scope it applies to.

mod navigate;
mod retry;

use std::time::Duration;

use serde_json::Value;

use crate::model::{Step, StepKind, Workflow};
use crate::record::{ExecutionError, ExecutionStatus, StepError, Timestamp};

pub use navigate::{Next, enclosing_fan_out, fan_out_depth, successor};
pub use retry::{DEFAULT_SCHEDULE_SECS, JITTER, jitter_seed, retry_delay};

/// How one attempt of a step ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Succeeded(Value),
    Failed(StepError),
}

/// What the runner must do next.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Run `attempt` of `step` in `scope`, no earlier than `delay` from now and no earlier
    /// than `not_before` (a Delay step's end).
    RunStep { step: String, scope: Vec<u32>, attempt: u32, delay: Duration, not_before: Option<Timestamp> },
    /// Branch `index` of fan-out `fan_out` (which runs in `scope`) is done with `result`.
    BranchDone { fan_out: String, scope: Vec<u32>, index: u32, result: Value },
    /// Branch `index` of fan-out `fan_out` failed: the fan-out fails with `error`.
    BranchFailed { fan_out: String, scope: Vec<u32>, index: u32, error: StepError },
    /// End the execution.
    Finish { status: ExecutionStatus, error: Option<ExecutionError> },
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EngineError {
    #[error("workflow has no step `{0}`")]
    UnknownStep(String),
    #[error("conditional step `{step}` produced an output without a valid branch: {output}")]
    BadBranch { step: String, output: Value },
    #[error("step `{step}` runs in {expected} fan-out(s) but the message has a scope of {got}")]
    BadScope { step: String, expected: usize, got: usize },
}

/// The effect that starts an execution.
pub fn start(workflow: &Workflow) -> Effect {
    match workflow.steps.first() {
        Some(step) => run_now(step, &[], None),
        None => finish_succeeded(),
    }
}

/// The effect that follows `attempt` of step `step_id`, in `scope`, ending with `outcome`.
/// `seed` spreads retry delays (see [`jitter_seed`]); the same inputs give the same effect.
pub fn after_step(
    workflow: &Workflow,
    step_id: &str,
    scope: &[u32],
    attempt: u32,
    outcome: &Outcome,
    seed: u64,
) -> Result<Effect, EngineError> {
    let step = workflow.find_step(step_id).ok_or_else(|| EngineError::UnknownStep(step_id.to_string()))?;
    let depth = fan_out_depth(&workflow.steps, step_id).unwrap_or(0);
    if depth != scope.len() {
        return Err(EngineError::BadScope { step: step_id.to_string(), expected: depth, got: scope.len() });
    }
    match outcome {
        Outcome::Succeeded(output) => after_success(workflow, step, scope, output),
        Outcome::Failed(error) => Ok(after_failure(workflow, step, scope, attempt, error, seed)),
    }
}

fn after_success(workflow: &Workflow, step: &Step, scope: &[u32], output: &Value) -> Result<Effect, EngineError> {
    match &step.kind {
        StepKind::Conditional(conditional) => {
            let branch = match output.get("branch").and_then(Value::as_str) {
                Some("then") => &conditional.then,
                Some("else") => &conditional.otherwise,
                _ => return Err(EngineError::BadBranch { step: step.id.clone(), output: output.clone() }),
            };
            match branch.first() {
                Some(first) => Ok(run_now(first, scope, None)),
                None => Ok(continue_after(workflow, &step.id, scope, output.clone(), None)),
            }
        }
        StepKind::Delay(_) => {
            let until = output.get("waitedUntil").and_then(crate::condition::time::parse_timestamp);
            Ok(continue_after(workflow, &step.id, scope, output.clone(), until))
        }
        _ => Ok(continue_after(workflow, &step.id, scope, output.clone(), None)),
    }
}

fn after_failure(
    workflow: &Workflow,
    step: &Step,
    scope: &[u32],
    attempt: u32,
    error: &StepError,
    seed: u64,
) -> Effect {
    if error.retryable && attempt <= step.retries {
        return Effect::RunStep {
            step: step.id.clone(),
            scope: scope.to_vec(),
            attempt: attempt + 1,
            delay: retry_delay(step, attempt, error, seed),
            not_before: None,
        };
    }
    if step.continue_on_failure {
        return continue_after(workflow, &step.id, scope, Value::Null, None);
    }
    if let (Some(fan_out), Some((index, outer))) = (enclosing_fan_out(&workflow.steps, &step.id), scope.split_last()) {
        let message = format!("branch {index} failed at step `{}`: {}", step.id, error.message);
        return Effect::BranchFailed {
            fan_out: fan_out.id.clone(),
            scope: outer.to_vec(),
            index: *index,
            error: StepError { message, retryable: false, details: error.details.clone(), retry_after_ms: None },
        };
    }
    Effect::Finish {
        status: ExecutionStatus::Failed,
        error: Some(ExecutionError { step: Some(step.id.clone()), message: error.message.clone() }),
    }
}

/// What follows `step_id` (in `scope`) once it is done; `result` is what it produced (a
/// fan-out branch's result when it is the branch's last step).
fn continue_after(
    workflow: &Workflow,
    step_id: &str,
    scope: &[u32],
    result: Value,
    not_before: Option<Timestamp>,
) -> Effect {
    match successor(&workflow.steps, step_id) {
        Some(Next::Step(next)) => run_now(next, scope, not_before),
        Some(Next::BranchDone(fan_out)) => match scope.split_last() {
            Some((index, outer)) => {
                Effect::BranchDone { fan_out: fan_out.id.clone(), scope: outer.to_vec(), index: *index, result }
            }
            // Unreachable for a validated scope (checked in `after_step`): end rather than loop.
            None => finish_succeeded(),
        },
        Some(Next::End) | None => finish_succeeded(),
    }
}

fn run_now(step: &Step, scope: &[u32], not_before: Option<Timestamp>) -> Effect {
    Effect::RunStep { step: step.id.clone(), scope: scope.to_vec(), attempt: 1, delay: Duration::ZERO, not_before }
}

fn finish_succeeded() -> Effect {
    Effect::Finish { status: ExecutionStatus::Succeeded, error: None }
}

#[cfg(test)]
mod tests;

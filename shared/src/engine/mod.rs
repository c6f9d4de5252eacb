//! The execution engine: a pure state machine. Given a workflow and the outcome of one step
//! attempt, it decides what happens next — the next step (after a branch, a retry with a
//! delay, or continuing past a failure) or the end of the execution — as [`Effect`]s that
//! the runner carries out. No I/O happens here.

mod navigate;
mod retry;

use std::time::Duration;

use serde_json::Value;

use crate::model::{Step, StepKind, Workflow};
use crate::record::{ExecutionError, ExecutionStatus, StepError};

pub use navigate::{first_step, successor};
pub use retry::{DEFAULT_RETRY_DELAY, retry_delay};

/// How one attempt of a step ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Succeeded(Value),
    Failed(StepError),
}

/// What the runner must do next.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Run `attempt` of `step`, no earlier than `delay` from now.
    RunStep { step: String, attempt: u32, delay: Duration },
    /// End the execution.
    Finish { status: ExecutionStatus, error: Option<ExecutionError> },
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EngineError {
    #[error("workflow has no step `{0}`")]
    UnknownStep(String),
    #[error("conditional step `{step}` produced an output without a valid branch: {output}")]
    BadBranch { step: String, output: Value },
}

/// The effects that start an execution.
pub fn start(workflow: &Workflow) -> Effect {
    match first_step(&workflow.steps) {
        Some(step) => run_now(step),
        None => finish_succeeded(),
    }
}

/// The effect that follows `attempt` of step `step_id` ending with `outcome`.
pub fn after_step(workflow: &Workflow, step_id: &str, attempt: u32, outcome: &Outcome) -> Result<Effect, EngineError> {
    let step = workflow.find_step(step_id).ok_or_else(|| EngineError::UnknownStep(step_id.to_string()))?;
    match outcome {
        Outcome::Succeeded(output) => after_success(workflow, step, output),
        Outcome::Failed(error) => Ok(after_failure(workflow, step, attempt, error)),
    }
}

fn after_success(workflow: &Workflow, step: &Step, output: &Value) -> Result<Effect, EngineError> {
    if let StepKind::Conditional(conditional) = &step.kind {
        let branch = match output.get("branch").and_then(Value::as_str) {
            Some("then") => &conditional.then,
            Some("else") => &conditional.otherwise,
            _ => {
                return Err(EngineError::BadBranch { step: step.id.clone(), output: output.clone() });
            }
        };
        if let Some(first) = first_step(branch) {
            return Ok(run_now(first));
        }
    }
    Ok(continue_after(workflow, &step.id))
}

fn after_failure(workflow: &Workflow, step: &Step, attempt: u32, error: &StepError) -> Effect {
    if error.retryable && attempt <= step.retries {
        return Effect::RunStep { step: step.id.clone(), attempt: attempt + 1, delay: retry_delay(step, attempt) };
    }
    if step.continue_on_failure {
        return continue_after(workflow, &step.id);
    }
    Effect::Finish {
        status: ExecutionStatus::Failed,
        error: Some(ExecutionError { step: Some(step.id.clone()), message: error.message.clone() }),
    }
}

fn continue_after(workflow: &Workflow, step_id: &str) -> Effect {
    match successor(&workflow.steps, step_id) {
        Some(next) => run_now(next),
        None => finish_succeeded(),
    }
}

fn run_now(step: &Step) -> Effect {
    Effect::RunStep { step: step.id.clone(), attempt: 1, delay: Duration::ZERO }
}

fn finish_succeeded() -> Effect {
    Effect::Finish { status: ExecutionStatus::Succeeded, error: None }
}

#[cfg(test)]
mod tests;

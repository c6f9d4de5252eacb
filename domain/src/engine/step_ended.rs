//! After a step attempt: the next step (into a conditional's branch, past it, out of a
//! fan-out branch), a retry with a delay, a Delay step's wait, continuing past a failure, a
//! failed fan-out branch failing its fan-out, or the end of the execution.

use serde_json::Value;

use super::{
    Branch, Effect, EngineError, Next, Outcome, Recorded, Signal, State, StepKey, answer, check_key, enclosing_fan_out,
    jitter_seed, retry_delay, run_now, successor,
};
use crate::model::{Step, StepKind, Workflow};
use crate::record::{ExecutionError, ExecutionStatus, StepError};

pub(super) fn step_ended(
    workflow: &Workflow,
    state: &State<'_>,
    key: &StepKey,
    attempt: u32,
    outcome: Outcome,
) -> Result<Vec<Effect>, EngineError> {
    let step = check_key(workflow, key)?;
    match outcome {
        Outcome::Succeeded { output, signal } => succeeded(workflow, state, step, key, output, signal),
        Outcome::Failed(error) => Ok(failed(workflow, state, step, key, attempt, &error)),
    }
}

fn succeeded(
    workflow: &Workflow,
    state: &State<'_>,
    step: &Step,
    key: &StepKey,
    output: Value,
    signal: Signal,
) -> Result<Vec<Effect>, EngineError> {
    match (&step.kind, signal) {
        (StepKind::Conditional(conditional), Signal::Branch(taken)) => {
            let branch = match taken {
                Branch::Then => &conditional.then,
                Branch::Else => &conditional.otherwise,
            };
            Ok(match branch.first() {
                Some(first) => vec![run_now(key.sibling(first.id.clone()))],
                None => continue_after(workflow, state, key, output),
            })
        }
        (StepKind::Conditional(_), _) => {
            Err(EngineError::BadSignal { step: key.step.clone(), signal: "missing branch" })
        }
        (StepKind::Delay(_), Signal::WaitUntil(until)) => Ok(super::wait::wait(workflow, state, key, until, output)),
        (_, Signal::None) => Ok(continue_after(workflow, state, key, output)),
        (_, Signal::Branch(_)) => Err(EngineError::BadSignal { step: key.step.clone(), signal: "branch" }),
        (_, Signal::WaitUntil(_)) => Err(EngineError::BadSignal { step: key.step.clone(), signal: "wait" }),
    }
}

fn failed(
    workflow: &Workflow,
    state: &State<'_>,
    step: &Step,
    key: &StepKey,
    attempt: u32,
    error: &StepError,
) -> Vec<Effect> {
    let in_generation = super::attempt_in_generation(attempt);
    if error.retryable && in_generation <= step.retries {
        let seed = jitter_seed(state.execution_id, &key.to_string(), attempt);
        return vec![Effect::RunStep {
            key: key.clone(),
            attempt: attempt + 1,
            delay: retry_delay(step, in_generation, error, seed),
        }];
    }
    if step.continue_on_failure {
        return continue_after(workflow, state, key, Value::Null);
    }
    let generation = super::attempt_generation(attempt);
    if generation < state.redrives {
        // Final in its generation, but the execution was redriven since: run it again.
        return vec![Effect::RunStep {
            key: key.clone(),
            attempt: super::first_attempt_of(generation + 1),
            delay: std::time::Duration::ZERO,
        }];
    }
    if let (Some(fan_out), Some((index, outer))) = (enclosing_fan_out(&workflow.steps, &step.id), key.innermost()) {
        let message = format!("branch {index} failed at step `{}`: {}", step.id, error.message);
        let error = StepError { message, retryable: false, details: error.details.clone(), retry_after_ms: None };
        return vec![Effect::Record {
            key: StepKey::new(fan_out.id.clone(), outer),
            attempt: super::CURRENT_FAN_OUT_ATTEMPT,
            result: Recorded::Failed(error),
        }];
    }
    let error = ExecutionError { step: Some(step.id.clone()), message: error.message.clone() };
    answer::finish(state, ExecutionStatus::Failed, Some(error))
}

/// What follows `key` once it is done; `result` is what it produced (a fan-out branch's
/// result when it is the branch's last step).
pub(super) fn continue_after(workflow: &Workflow, state: &State<'_>, key: &StepKey, result: Value) -> Vec<Effect> {
    match successor(&workflow.steps, &key.step) {
        Some(Next::Step(next)) => vec![run_now(key.sibling(next.id.clone()))],
        Some(Next::BranchDone(fan_out)) => match key.innermost() {
            Some((index, outer)) => {
                vec![Effect::CompleteBranch { fan_out: StepKey::new(fan_out.id.clone(), outer), index, result }]
            }
            // Unreachable for a checked key (its scope matches its depth): end rather than loop.
            None => answer::finish(state, ExecutionStatus::Succeeded, None),
        },
        Some(Next::End) | None => answer::finish(state, ExecutionStatus::Succeeded, None),
    }
}

//! A Delay step's wait: the execution shows `waiting` until the due time (the flip is decided
//! here, from the status the interpreter last saw, so concurrent branches cannot leave it
//! `running` through a stale read), then `running` again and the flow goes on — also when
//! the Delay is the last step: the execution ends only after the wait.

use serde_json::Value;

use super::{Effect, EngineError, State, StepKey, check_key, step_ended::continue_after};
use crate::model::{StepKind, Workflow};
use crate::record::{ExecutionStatus, Timestamp};

/// A Delay step at `key` succeeded and waits until `until`.
pub(super) fn wait(
    workflow: &Workflow,
    state: &State<'_>,
    key: &StepKey,
    until: Timestamp,
    output: Value,
) -> Vec<Effect> {
    if until <= state.now {
        return continue_after(workflow, state, key, output);
    }
    let mut effects = Vec::with_capacity(2);
    if state.status == ExecutionStatus::Running {
        effects.push(Effect::SetStatus { from: ExecutionStatus::Running, to: ExecutionStatus::Waiting });
    }
    effects.push(Effect::Wake { key: key.clone(), attempt: 1, at: until });
    effects
}

/// The wait of Delay step `key` is over.
pub(super) fn over(
    workflow: &Workflow,
    state: &State<'_>,
    key: &StepKey,
    output: Value,
) -> Result<Vec<Effect>, EngineError> {
    let step = check_key(workflow, key)?;
    if !matches!(step.kind, StepKind::Delay(_)) {
        return Err(EngineError::BadSignal { step: key.step.clone(), signal: "wake" });
    }
    let mut effects = Vec::new();
    if state.status == ExecutionStatus::Waiting {
        effects.push(Effect::SetStatus { from: ExecutionStatus::Waiting, to: ExecutionStatus::Running });
    }
    effects.extend(continue_after(workflow, state, key, output));
    Ok(effects)
}

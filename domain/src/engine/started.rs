//! An execution starts with its first step; a workflow without steps ends at once (and a
//! waiting caller gets the "ended" answer).

use super::{Effect, State, StepKey, answer, run_now};
use crate::model::Workflow;
use crate::record::ExecutionStatus;

pub(super) fn started(workflow: &Workflow, state: &State<'_>) -> Vec<Effect> {
    match workflow.steps.first() {
        Some(step) => vec![run_now(StepKey::top(step.id.clone()))],
        None => answer::finish(state, ExecutionStatus::Succeeded, None),
    }
}

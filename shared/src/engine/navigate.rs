//! Where the flow goes after a step: the next sibling, else the step after the enclosing
//! conditional, recursively; past the last top-level step the execution ends.

use crate::model::{Step, StepKind};

/// The first step of a list of steps.
pub fn first_step(steps: &[Step]) -> Option<&Step> {
    steps.first()
}

/// The step that runs after `step_id` completes (a conditional's branch is entered by the
/// engine, not here): its next sibling, or the successor of the enclosing conditional.
pub fn successor<'a>(steps: &'a [Step], step_id: &str) -> Option<&'a Step> {
    let frames = locate(steps, step_id)?;
    frames.iter().rev().find_map(|(list, index)| list.get(index + 1))
}

/// The chain of (list, index) frames from the top-level list down to the step.
fn locate<'a>(steps: &'a [Step], step_id: &str) -> Option<Vec<(&'a [Step], usize)>> {
    for (index, step) in steps.iter().enumerate() {
        if step.id == step_id {
            return Some(vec![(steps, index)]);
        }
        if let StepKind::Conditional(c) = &step.kind {
            for branch in [&c.then, &c.otherwise] {
                if let Some(mut inner) = locate(branch, step_id) {
                    inner.insert(0, (steps, index));
                    return Some(inner);
                }
            }
        }
    }
    None
}

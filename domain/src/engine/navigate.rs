//! Where the flow goes after a step: the next sibling; at the end of a conditional's branch,
//! the step after the conditional (recursively); at the end of a fan-out's branch, the
//! branch is done (the join decides what follows); past the last top-level step, the end.

use crate::model::{Step, StepKind};

/// What follows a completed step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Next<'a> {
    /// Run this step, in the same fan-out scope.
    Step(&'a Step),
    /// The branch of this fan-out step is done.
    BranchDone(&'a Step),
    /// The execution is done.
    End,
}

/// The step that runs after `step_id` completes (a conditional's branch is entered by the
/// engine, not here).
pub fn successor<'a>(steps: &'a [Step], step_id: &str) -> Option<Next<'a>> {
    let frames = locate(steps, step_id, None)?;
    for (list, index, container) in frames.iter().rev() {
        if let Some(next) = list.get(index + 1) {
            return Some(Next::Step(next));
        }
        if let Some(container) = container
            && matches!(container.kind, StepKind::FanOut(_))
        {
            return Some(Next::BranchDone(container));
        }
    }
    Some(Next::End)
}

/// The innermost fan-out step whose branch contains `step_id`.
pub fn enclosing_fan_out<'a>(steps: &'a [Step], step_id: &str) -> Option<&'a Step> {
    let frames = locate(steps, step_id, None)?;
    frames
        .iter()
        .rev()
        .filter_map(|(_, _, container)| *container)
        .find(|container| matches!(container.kind, StepKind::FanOut(_)))
}

/// How many fan-outs enclose `step_id` (the length of its scope).
pub fn fan_out_depth(steps: &[Step], step_id: &str) -> Option<usize> {
    let frames = locate(steps, step_id, None)?;
    Some(frames.iter().filter(|(_, _, c)| c.is_some_and(|c| matches!(c.kind, StepKind::FanOut(_)))).count())
}

type Frame<'a> = (&'a [Step], usize, Option<&'a Step>);

/// The chain of (list, index, the step whose nested list it is) frames from the top-level
/// list down to the step.
fn locate<'a>(steps: &'a [Step], step_id: &str, container: Option<&'a Step>) -> Option<Vec<Frame<'a>>> {
    for (index, step) in steps.iter().enumerate() {
        if step.id == step_id {
            return Some(vec![(steps, index, container)]);
        }
        for nested in step.kind.nested() {
            if let Some(mut inner) = locate(nested, step_id, Some(step)) {
                inner.insert(0, (steps, index, container));
                return Some(inner);
            }
        }
    }
    None
}

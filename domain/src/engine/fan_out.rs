//! Fan-out: starting the branches and joining them. `over` gives the items; a bad `over`, too
//! many items, an item too large or no steps fail the fan-out step; no items succeed at once
//! with `[]`. Otherwise every item's branch starts (with `concurrency: c`, the first c, in c
//! lanes: branch i's completion starts branch i + c, so a lost start cannot happen — a
//! redelivered completion starts the same branch again, harmlessly). A completed branch is
//! counted once; the count that finds every branch done joins the fan-out (records its
//! output, the branch results in input order), and the flow continues below it. A
//! duplicate or out-of-order completion counts nothing twice and joins at most what the
//! store says is complete.

use serde_json::{Value, json};

use super::{Carry, Effect, EngineError, Recorded, State, StepKey, check_key};
use crate::model::{FanOutStep, Step, StepKind, Workflow};
use crate::record::StepError;

/// The most items one fan-out may have.
pub const MAX_FAN_OUT_ITEMS: usize = 10_000;
/// The largest single item a branch carries.
pub const MAX_ITEM_BYTES: usize = 64 * 1024;

fn fan_out_step<'w>(workflow: &'w Workflow, key: &StepKey) -> Result<&'w FanOutStep, EngineError> {
    match &check_key(workflow, key)?.kind {
        StepKind::FanOut(fan_out) => Ok(fan_out),
        _ => Err(EngineError::NotAFanOut(key.step.clone())),
    }
}

/// `over` of fan-out `key` gave `items` (or failed).
pub(super) fn evaluated(
    workflow: &Workflow,
    state: &State<'_>,
    key: &StepKey,
    attempt: u32,
    items: Result<Vec<Value>, StepError>,
) -> Result<Vec<Effect>, EngineError> {
    let fan_out = fan_out_step(workflow, key)?;
    let fail = |message: String| {
        vec![Effect::Record { key: key.clone(), attempt, result: Recorded::Failed(StepError::terminal(message)) }]
    };
    let items = match items {
        Ok(items) => items,
        Err(error) => {
            return Ok(vec![Effect::Record { key: key.clone(), attempt, result: Recorded::Failed(error) }]);
        }
    };
    if items.len() > MAX_FAN_OUT_ITEMS {
        return Ok(fail(format!("`over` gave {} items; a fan-out takes at most {MAX_FAN_OUT_ITEMS}", items.len())));
    }
    if let Some((index, _)) = items.iter().enumerate().find(|(_, item)| json_size(item) > MAX_ITEM_BYTES) {
        return Ok(fail(format!("item {index} is larger than the {MAX_ITEM_BYTES} bytes a fan-out item may have")));
    }
    let Some(first) = fan_out.steps.first() else {
        return Ok(fail("the fan-out has no steps".into()));
    };
    if items.is_empty() {
        let result = Recorded::Succeeded { input: json!({ "items": 0 }), output: json!([]) };
        return Ok(vec![Effect::Record { key: key.clone(), attempt, result }]);
    }
    let total = u32::try_from(items.len()).unwrap_or(u32::MAX);
    let lanes = fan_out.concurrency.map_or(total, |c| c.clamp(1, total));
    let inline = items.len() <= state.inline_fan_out_items && never_waits(&fan_out.steps);
    Ok(vec![Effect::StartBranches { fan_out: key.clone(), first_step: first.id.clone(), lanes, items, inline }])
}

/// Whether steps can run start to end without waiting on the queue: no Delay and no nested
/// fan-out (a retry may still make a branch wait; it then goes out as a message).
fn never_waits(steps: &[Step]) -> bool {
    steps.iter().all(|step| match &step.kind {
        StepKind::Delay(_) | StepKind::FanOut(_) => false,
        kind => kind.nested().into_iter().all(never_waits),
    })
}

/// Branches that ran inline were counted in one batch: join when every branch is done (the
/// branches that did not finish inline — a retry sent them to the queue — join later, like
/// distributed ones).
pub(super) fn counted_inline(
    workflow: &Workflow,
    key: &StepKey,
    total: u32,
    all_done: bool,
) -> Result<Vec<Effect>, EngineError> {
    fan_out_step(workflow, key)?;
    Ok(if all_done { vec![Effect::Join { fan_out: key.clone(), total }] } else { Vec::new() })
}

/// Branch `index` of `total` of fan-out `key` was counted; `all_done` from the store. Its
/// lane goes on with branch `index + concurrency` as `carry` says.
pub(super) fn counted(
    workflow: &Workflow,
    key: &StepKey,
    index: u32,
    total: u32,
    all_done: bool,
    carry: Carry,
) -> Result<Vec<Effect>, EngineError> {
    let fan_out = fan_out_step(workflow, key)?;
    let mut effects = Vec::with_capacity(2);
    if carry != Carry::No
        && let (Some(lanes), Some(first)) = (fan_out.concurrency, fan_out.steps.first())
    {
        let next = index.saturating_add(lanes.max(1));
        if next < total {
            effects.push(Effect::StartBranch {
                fan_out: key.clone(),
                first_step: first.id.clone(),
                index: next,
                total,
                unless_started: carry == Carry::IfNotStarted,
            });
        }
    }
    if all_done {
        effects.push(Effect::Join { fan_out: key.clone(), total });
    }
    Ok(effects)
}

fn json_size(value: &Value) -> usize {
    serde_json::to_vec(value).map_or(usize::MAX, |bytes| bytes.len())
}

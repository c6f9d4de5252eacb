//! The execution engine: a pure state machine and the only place where decisions are made.
//! Given a workflow, what the interpreter knows of the execution ([`State`]) and one
//! [`Event`], [`decide`] returns the [`Effect`]s to carry out, in order, as data: run a step
//! now or later, record a step that ends without running (a fan-out), start fan-out branches,
//! count a branch done, join, set waiting / running, wake after a Delay, answer the caller
//! (a typed HTTP answer), finish. No I/O, no clock (the time is part of the state), no HTTP
//! types.
//!
//! One file per kind of transition: `started`, `step_ended`, `fan_out`, `wait`, `answer`.
//! The step runner, the trigger's inline segment and test runs are interpreters of these
//! effects (`sluice_shared::runner`).

mod answer;
mod fan_out;
mod key;
mod navigate;
mod retry;
mod started;
mod step_ended;
mod wait;

use std::time::Duration;

use serde_json::Value;

use crate::model::Workflow;
use crate::record::{ExecutionError, ExecutionStatus, HttpResponse, StepError, Timestamp};

pub use answer::ended_answer;
pub use fan_out::{MAX_FAN_OUT_ITEMS, MAX_ITEM_BYTES};

/// The longest delay a queue can hold a message (SQS's limit); longer waits are chained.
/// Retry delays are capped to it.
pub const MAX_QUEUE_DELAY: Duration = Duration::from_secs(900);
pub use key::{BadStepKey, StepKey};
pub use navigate::{Next, enclosing_fan_out, fan_out_depth, successor};
pub use retry::{DEFAULT_SCHEDULE_SECS, JITTER, jitter_seed, retry_delay};

/// What the interpreter knows of the execution when it hands the engine an event.
#[derive(Debug, Clone, PartialEq)]
pub struct State<'a> {
    pub execution_id: &'a str,
    /// As last read or set by the interpreter.
    pub status: ExecutionStatus,
    /// A caller waits for the answer (a synchronous execution).
    pub caller_waits: bool,
    /// The current time, as the interpreter read it.
    pub now: Timestamp,
    /// Fan-outs of at most this many items whose branches never wait run inline.
    pub inline_fan_out_items: usize,
    /// How many times the execution was redriven (see [`REDRIVE_ATTEMPT_STRIDE`]).
    pub redrives: u32,
}

/// Attempts of one step are numbered in generations, one per redrive: generation `g` numbers
/// its attempts `g × stride + 1`, `g × stride + 2`, ... A redrive (Task History) keeps every
/// record; when the interpreter replays a step whose *final* failure belongs to a generation
/// before the execution's latest redrive, the step runs again as the first attempt of the next
/// generation, with its whole retry budget. Steps that succeeded replay from their records,
/// so only what failed runs again (inside a fan-out: only the failed branches).
pub const REDRIVE_ATTEMPT_STRIDE: u32 = 1_000;

/// The most redrives of one execution.
pub const MAX_REDRIVES: u32 = 1_000;

/// The generation an attempt number belongs to.
pub fn attempt_generation(attempt: u32) -> u32 {
    attempt.saturating_sub(1) / REDRIVE_ATTEMPT_STRIDE
}

/// An attempt's number within its generation (1 for the first).
pub fn attempt_in_generation(attempt: u32) -> u32 {
    attempt.saturating_sub(1) % REDRIVE_ATTEMPT_STRIDE + 1
}

/// The first attempt of generation `generation`.
pub fn first_attempt_of(generation: u32) -> u32 {
    generation.saturating_mul(REDRIVE_ATTEMPT_STRIDE).saturating_add(1)
}

/// What [`Effect::Record`] of a fan-out step says instead of an attempt number when the
/// interpreter must use the fan-out's current attempt (it reads it from the store: the engine
/// cannot know in which generation a fan-out last started).
pub const CURRENT_FAN_OUT_ATTEMPT: u32 = 0;

/// Which branch of a conditional was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Branch {
    Then,
    Else,
}

/// What a step's success means for the flow, beyond its output.
#[derive(Debug, Clone, PartialEq)]
pub enum Signal {
    /// Nothing: the flow goes on to the next step.
    None,
    /// A conditional chose this branch.
    Branch(Branch),
    /// A Delay step: the flow goes on at this time.
    WaitUntil(Timestamp),
}

/// How one attempt of a step ended, typed for the engine.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Succeeded { output: Value, signal: Signal },
    Failed(StepError),
}

impl Outcome {
    /// A success with nothing more to say than its output.
    pub fn done(output: Value) -> Self {
        Outcome::Succeeded { output, signal: Signal::None }
    }
}

/// What a caller gets.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// A Response step's answer.
    Step(HttpResponse),
    /// The execution ended before any Response step answered.
    Ended(HttpResponse),
    /// The deadline passed first (542).
    TimedOut,
}

/// Something that happened to an execution.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The execution was created.
    Started,
    /// An attempt of a step ended (it ran now, or it was recorded before).
    StepEnded { key: StepKey, attempt: u32, outcome: Outcome },
    /// A Response step rendered its answer (before its attempt is recorded).
    Answered { key: StepKey, answer: HttpResponse },
    /// A fan-out step's `over` was evaluated: its items, or why there are none.
    FanOutEvaluated { key: StepKey, attempt: u32, items: Result<Vec<Value>, StepError> },
    /// Branch `index` of fan-out `fan_out` (of `total` branches) was counted done; `all_done`
    /// says whether every branch is; `carry`, whether this delivery goes on down the lane.
    BranchCounted { fan_out: StepKey, index: u32, total: u32, all_done: bool, carry: Carry },
    /// Branches of fan-out `fan_out` that ran inline were counted done in one batch.
    BranchesCounted { fan_out: StepKey, total: u32, all_done: bool },
    /// A Delay step's time has come; `output` is its recorded output.
    WaitOver { key: StepKey, attempt: u32, output: Value },
    /// The caller's deadline passed.
    DeadlineReached,
    /// The interpreter could not go on with `key` (a poison message, or the last delivery
    /// failed): the execution must end.
    Abandoned { key: Option<StepKey>, reason: String },
    /// Someone cancelled the execution (Task History): it ends `cancelled`, no step starts
    /// after it, and a waiting caller gets the cancellation answer.
    Cancelled { reason: String },
}

/// Whether the delivery that counted a fan-out branch done starts the next branch of its
/// lane. Exactly one delivery must: with two, copies of a lane would multiply at every
/// branch (duplicate deliveries handled at the same moment both count, and both go on).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Carry {
    /// It counted the branch first: it starts the next one.
    First,
    /// A redelivery found the branch counted (the delivery that counted it may have stopped
    /// before starting the next one): it starts the next one unless that has begun.
    IfNotStarted,
    /// A recovery walks the lane again: it starts the next branch, begun or not (recorded
    /// steps replay without running).
    Always,
    /// A duplicate beside the delivery that counted it, or a branch of a fan-out that started
    /// every branch inline: no lane goes on from here.
    No,
}

/// What a step that ends without running records (a fan-out's start or join).
#[derive(Debug, Clone, PartialEq)]
pub enum Recorded {
    Succeeded { input: Value, output: Value },
    Failed(StepError),
}

/// Something the interpreter must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Run `attempt` of `key`, `delay` from now (zero: at once, in this segment if it can).
    RunStep { key: StepKey, attempt: u32, delay: Duration },
    /// Record attempt `attempt` of `key` without running it; the recorded attempt (this one,
    /// or one recorded before) then ends the step.
    Record { key: StepKey, attempt: u32, result: Recorded },
    /// Start the first `lanes` branches of fan-out `fan_out` (first step `first_step`) over
    /// `items`; when `lanes` < the number of items, the items are kept for the later lanes.
    /// `inline`: the branches may instead run in this segment, `lanes` at a time, their
    /// completions counted in one batch ([`Event::BranchesCounted`]).
    StartBranches { fan_out: StepKey, first_step: String, lanes: u32, items: Vec<Value>, inline: bool },
    /// Start branch `index` of `total` of fan-out `fan_out` from its kept item; with
    /// `unless_started`, not if its first step has an attempt recorded.
    StartBranch { fan_out: StepKey, first_step: String, index: u32, total: u32, unless_started: bool },
    /// Count branch `index` of fan-out `fan_out` done with `result` (once per branch).
    CompleteBranch { fan_out: StepKey, index: u32, result: Value },
    /// Every branch of `fan_out` is done: record its output (the branch results in order).
    Join { fan_out: StepKey, total: u32 },
    /// Move the execution from `from` to `to` (running ⇄ waiting).
    SetStatus { from: ExecutionStatus, to: ExecutionStatus },
    /// Come back to Delay step `key` at `at` (then: [`Event::WaitOver`]).
    Wake { key: StepKey, attempt: u32, at: Timestamp },
    /// Settle what the waiting caller gets (first writer wins).
    Respond(Answer),
    /// End the execution.
    Finish { status: ExecutionStatus, error: Option<ExecutionError> },
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EngineError {
    #[error("workflow has no step `{0}`")]
    UnknownStep(String),
    #[error("step `{step}` runs in {expected} fan-out(s) but was given a scope of {got}")]
    BadScope { step: String, expected: usize, got: usize },
    #[error("`{0}` is not a fan-out step")]
    NotAFanOut(String),
    #[error("a {signal} signal does not fit step `{step}`")]
    BadSignal { step: String, signal: &'static str },
}

/// The effects of `event`, in the order they must be carried out.
pub fn decide(workflow: &Workflow, state: &State<'_>, event: Event) -> Result<Vec<Effect>, EngineError> {
    match event {
        Event::Started => Ok(started::started(workflow, state)),
        Event::StepEnded { key, attempt, outcome } => step_ended::step_ended(workflow, state, &key, attempt, outcome),
        Event::Answered { answer, .. } => Ok(answer::answered(state, answer)),
        Event::FanOutEvaluated { key, attempt, items } => fan_out::evaluated(workflow, state, &key, attempt, items),
        Event::BranchCounted { fan_out, index, total, all_done, carry } => {
            fan_out::counted(workflow, &fan_out, index, total, all_done, carry)
        }
        Event::BranchesCounted { fan_out, total, all_done } => {
            fan_out::counted_inline(workflow, &fan_out, total, all_done)
        }
        Event::WaitOver { key, output, .. } => wait::over(workflow, state, &key, output),
        Event::DeadlineReached => Ok(answer::deadline(state)),
        Event::Abandoned { key, reason } => Ok(answer::finish(
            state,
            ExecutionStatus::Failed,
            Some(ExecutionError { step: key.map(|k| k.step), message: reason }),
        )),
        Event::Cancelled { reason } => {
            Ok(answer::finish(state, ExecutionStatus::Cancelled, Some(ExecutionError { step: None, message: reason })))
        }
    }
}

/// Checks that `key` names a step of `workflow` at the depth of its scope.
fn check_key<'w>(workflow: &'w Workflow, key: &StepKey) -> Result<&'w crate::model::Step, EngineError> {
    let step = workflow.find_step(&key.step).ok_or_else(|| EngineError::UnknownStep(key.step.clone()))?;
    let depth = fan_out_depth(&workflow.steps, &key.step).unwrap_or(0);
    if depth != key.scope.len() {
        return Err(EngineError::BadScope { step: key.step.clone(), expected: depth, got: key.scope.len() });
    }
    Ok(step)
}

fn run_now(key: StepKey) -> Effect {
    Effect::RunStep { key, attempt: 1, delay: Duration::ZERO }
}

#[cfg(test)]
mod tests;

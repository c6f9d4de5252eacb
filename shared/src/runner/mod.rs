//! The interpreter of the engine's effects: the step runner's message handler, the trigger's
//! inline first segment and test runs all go through [`Runner::segment`]. It runs a step
//! attempt unless it is already recorded (a redelivery: a recorded attempt is never run
//! again), records it first-writer-wins, hands the engine the typed outcome and carries out
//! the effects it returns. Consecutive steps with no delay run in the same segment (bounded
//! in steps and time); a delayed step (a retry, a Delay's wake) goes back to the queue, and
//! fan-out branches go out as messages of their own. It decides nothing and builds no HTTP
//! answers: what a caller gets comes from the engine as an [`Answer`] and is settled through
//! `crate::settle`.

pub(crate) mod context;
mod fan_out;
mod sweep;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::connect::{SecretSource, UserSettings};
use crate::engine::{self, Answer, Effect, Event, Outcome, Recorded, State, StepKey};
use crate::messages::{ScopeEntry, StepMessage};
use crate::model::{StepKind, Workflow};
use crate::ports::{Deployment, FirstWrite, MAX_QUEUE_DELAY, Outgoing, QueueError, QueueName, StoreError};
use crate::record::{Execution, ExecutionStatus, SettledResponse, StepAttempt, StepStatus, now};
use crate::runtime::{Host, Runtime};
use crate::settle;
use crate::steps::response::{Delivery, with_delivery};
use crate::steps::{self, StepPorts};

pub use context::{referenced_steps, step_variables};
pub use sweep::Swept;

/// Deliveries of one message before it is given up on (matches the queues' redrive policy).
pub const MAX_RECEIVES: u32 = 5;
/// At most this many steps run inline in one segment before the rest is enqueued.
const MAX_INLINE_STEPS: usize = 50;
/// How stale a segment's view of its execution's status may get before a step starts: a
/// cancel from another process stops the segment at its first step after this.
pub const STATUS_RECHECK: Duration = Duration::from_millis(100);
/// A wait due within this much is not sent back to the queue: the flow goes on now.
const EARLY_TOLERANCE: Duration = Duration::from_millis(50);

/// A failure of the interpreter itself (not of a step: those are recorded outcomes).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Worth delivering the message again (storage or queue trouble).
    #[error("{0}")]
    Retryable(String),
    /// The message can never be handled (malformed, or data that cannot be); delivering it
    /// again won't help.
    #[error("{0}")]
    Poison(String),
}

impl RunError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, RunError::Retryable(_))
    }
}

impl From<StoreError> for RunError {
    fn from(error: StoreError) -> Self {
        if error.is_retryable() { RunError::Retryable(error.to_string()) } else { RunError::Poison(error.to_string()) }
    }
}

impl From<QueueError> for RunError {
    fn from(error: QueueError) -> Self {
        RunError::Retryable(error.to_string())
    }
}

impl From<engine::EngineError> for RunError {
    fn from(error: engine::EngineError) -> Self {
        RunError::Poison(error.to_string())
    }
}

/// Where a segment starts.
#[derive(Debug, Clone, PartialEq)]
pub enum Entry {
    /// Run `attempt` of the step at `key`.
    Run { key: StepKey, attempt: u32 },
    /// The wait of the Delay step at `key` (attempt `attempt`, recorded) is over.
    Wake { key: StepKey, attempt: u32 },
}

#[derive(Clone)]
pub struct Runner {
    runtime: Runtime,
    versions: Arc<VersionCache>,
}

/// Deployed workflow versions already read: a version never changes once stored, so a warm
/// step runner reads and parses each one once instead of once per message.
#[derive(Default)]
struct VersionCache(Mutex<HashMap<(String, String, u32), Arc<Deployment>>>);

impl VersionCache {
    /// More versions than one runner plausibly serves at once; past it the cache starts over.
    const MAX_ENTRIES: usize = 256;

    fn get(&self, key: &(String, String, u32)) -> Option<Arc<Deployment>> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).get(key).cloned()
    }

    fn put(&self, key: (String, String, u32), deployment: Arc<Deployment>) {
        let mut versions = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if versions.len() >= Self::MAX_ENTRIES {
            versions.clear();
        }
        versions.insert(key, deployment);
    }
}

/// What comes next inside a segment.
enum Pending {
    Entry(Entry),
    Event(Event),
}

/// One segment of one execution: the interpreter's state.
struct Segment<'a> {
    runtime: &'a Runtime,
    execution: &'a Execution,
    workflow: &'a Workflow,
    /// The execution's status as last read or set here.
    status: ExecutionStatus,
    /// The fan-out branches of the current position, outermost first.
    scope: Vec<ScopeEntry>,
    started: Instant,
    /// When the execution's status was last read (to notice a cancel from another process).
    status_read: Instant,
    steps_run: usize,
    /// Set once the caller was answered by a segment that must hand off after answering.
    handed_off: bool,
    /// This segment settled the caller's answer: no caller waits for another one.
    answered: bool,
    /// This segment runs one branch of this fan-out inline: its completion is handed back
    /// (in `completion`) to be counted in a batch with its siblings'.
    inline_branch: Option<StepKey>,
    completion: Option<(u32, Value)>,
    /// In an inline branch: the attempts recorded so far but not yet written. They are written
    /// with the branches' count in one batch (`run_branches_inline`), or before anything
    /// leaves the segment (a message, a status, an answer: [`Segment::flush`]), so nothing
    /// outside ever depends on an attempt that is not stored.
    deferred: Option<Vec<StepAttempt>>,
    /// The latest attempt of every step key this segment recorded or read, so that later
    /// steps' variables and redelivery checks need not read them back.
    known: HashMap<String, StepAttempt>,
    /// The segment started with its execution (the trigger's inline first segment): nothing
    /// can be recorded for it that this segment did not record.
    fresh: bool,
    /// The message it runs was received before: a fan-out branch counted already may still
    /// need its lane carried on ([`engine::Carry::IfNotStarted`]).
    redelivered: bool,
    /// Started by a recovery: lanes are walked again ([`engine::Carry::Always`]); the messages it
    /// sends carry the flag on.
    repair: bool,
    /// The user's settings, once a step read them.
    settings: Option<Arc<UserSettings>>,
    /// The user's credentials for the workflow's integration, once a step read them.
    credentials: Option<Arc<UserSettings>>,
}

impl Runner {
    /// One step of `workflow` run as a test (`POST /test-runs` with `step`): the user's
    /// settings and credentials come from the same secret source, the variables from the same
    /// builder and the record goes through the same redaction as a real execution's step;
    /// earlier steps' variables are `given`; nothing is recorded.
    pub async fn test_step(
        &self,
        execution: &Execution,
        workflow: &Workflow,
        step: &crate::model::Step,
        given: serde_json::Map<String, Value>,
    ) -> Result<steps::Executed, RunError> {
        let references = context::references(step);
        let secrets: &dyn SecretSource = self.runtime.connect.as_ref();
        let blocked = |e: crate::connect::ConnectError| {
            if e.is_retryable() { RunError::Retryable(e.to_string()) } else { RunError::Poison(e.to_string()) }
        };
        let declares = !workflow.inputs.is_empty() || !workflow.integration_inputs.is_empty();
        let settings = match references.settings && declares {
            true => secrets.settings(execution, workflow).await.map_err(blocked)?,
            false => UserSettings::default(),
        };
        let credentials = match references.credentials {
            true => secrets.credentials(execution, workflow).await.map_err(blocked)?,
            false => None,
        };
        let mut ctx = context::with_secrets(execution, &self.runtime.settings.env, &settings, credentials.as_ref());
        ctx["steps"] = Value::Object(given);
        let ports = StepPorts {
            http: &self.runtime.http,
            files: self.runtime.store.as_ref(),
            secrets: Some(self.runtime.connect.as_ref()),
        };
        let mut executed = steps::execute(ports, execution, workflow, step, &step.id, 1, &ctx).await;
        context::redact_secrets(&mut executed.record, &settings, credentials.as_ref());
        Ok(executed)
    }

    pub fn new(runtime: Runtime) -> Self {
        Runner { runtime, versions: Arc::default() }
    }

    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// Handles one message from the step queue. `receive_count` is how many times it has
    /// been delivered (SQS `ApproximateReceiveCount`). Ok means: delete the message. On the
    /// last delivery before the dead-letter queue, a failure also fails the execution, so
    /// no execution stays `running` forever.
    pub async fn handle(&self, body: &str, receive_count: u32) -> Result<(), RunError> {
        if body.starts_with("{\"fire\":") {
            return self.handle_fire(body).await;
        }
        if body.starts_with("{\"tick\":") {
            return self.handle_tick(body).await;
        }
        if body.starts_with(crate::messages::NOTIFY_PREFIX) {
            return crate::notifications::handle(&self.runtime, body).await;
        }
        let message: StepMessage =
            serde_json::from_str(body).map_err(|e| RunError::Poison(format!("malformed step message: {e}")))?;
        let result = self.run_message(&message, receive_count > 1).await;
        if let Err(error) = &result {
            let final_delivery = !error.is_retryable() || receive_count >= MAX_RECEIVES;
            tracing::error!(execution = %message.execution_id, step = %message.step, receive_count, %error, "step message failed");
            if final_delivery {
                let reason = format!("internal error running step `{}`: {error}", message.step);
                if let Err(e) = self.give_up(&message, reason).await {
                    tracing::error!(execution = %message.execution_id, error = %e, "could not mark the execution failed");
                }
            }
        }
        result
    }

    /// A schedule's fire handed to the queue to start at its instant
    /// ([`crate::scheduler::FireMessage`]).
    async fn handle_fire(&self, body: &str) -> Result<(), RunError> {
        #[derive(serde::Deserialize)]
        struct Wrapped {
            fire: crate::scheduler::FireMessage,
        }
        let wrapped: Wrapped =
            serde_json::from_str(body).map_err(|e| RunError::Poison(format!("malformed fire message: {e}")))?;
        crate::scheduler::fire_message(self, &wrapped.fire).await.map_err(|error| {
            if error.is_retryable() {
                RunError::Retryable(error.to_string())
            } else {
                RunError::Poison(error.to_string())
            }
        })
    }

    /// The rest of a scheduler tick handed on by an invocation that ran out of budget
    /// ([`crate::scheduler::TickMessage`]).
    async fn handle_tick(&self, body: &str) -> Result<(), RunError> {
        #[derive(serde::Deserialize)]
        struct Wrapped {
            tick: crate::scheduler::TickMessage,
        }
        let wrapped: Wrapped =
            serde_json::from_str(body).map_err(|e| RunError::Poison(format!("malformed tick message: {e}")))?;
        let settings = crate::scheduler::aws_settings();
        let budget = std::time::Duration::from_secs(40);
        crate::scheduler::run_invocation(self, &settings, Some(wrapped.tick.cursor), budget).await.map(|_| ()).map_err(
            |error| {
                if error.is_retryable() {
                    RunError::Retryable(error.to_string())
                } else {
                    RunError::Poison(error.to_string())
                }
            },
        )
    }

    /// The workflow version `execution` runs, from the cache or the store.
    async fn deployment(&self, execution: &Execution) -> Result<Arc<Deployment>, RunError> {
        let key = (execution.project_id.clone(), execution.workflow_id.clone(), execution.workflow_version);
        if let Some(deployment) = self.versions.get(&key) {
            return Ok(deployment);
        }
        let deployment = self
            .runtime
            .store
            .get_version(&key.0, &key.1, key.2)
            .await?
            .map(Arc::new)
            .ok_or_else(|| RunError::Poison(format!("workflow `{}` version {} is not stored", key.1, key.2)))?;
        self.versions.put(key, deployment.clone());
        Ok(deployment)
    }

    /// Runs `message`; `redelivered`: it was received before (a delivery that did not finish).
    async fn run_message(&self, message: &StepMessage, redelivered: bool) -> Result<(), RunError> {
        let store = &self.runtime.store;
        let Some(execution) = store.get_execution(&message.execution_id).await? else {
            // Messages are sent before their execution is created (see `crate::start`): one
            // that finds none belongs to a start that failed, and has nothing to run.
            tracing::warn!(execution = %message.execution_id, "message for an execution that does not exist; dropped");
            return Ok(());
        };
        if execution.status.is_ended() {
            tracing::debug!(execution = %execution.id, "execution already ended; message dropped");
            return Ok(());
        }
        if let Some(remaining) = message.not_before_ms.and_then(remaining_until) {
            // A wait longer than one queue delay: wait again.
            let outgoing = Outgoing { body: message.to_json(), delay: remaining.min(MAX_QUEUE_DELAY) };
            self.runtime.queue.send(QueueName::Steps, outgoing).await?;
            return Ok(());
        }
        let deployment = self.deployment(&execution).await?;
        let key = message.key();
        let entry = if message.wake {
            Entry::Wake { key, attempt: message.attempt }
        } else {
            Entry::Run { key, attempt: message.attempt }
        };
        let mut segment = Segment::new(&self.runtime, &execution, &deployment.workflow, message.scope.clone(), false);
        segment.redelivered = redelivered;
        segment.repair = message.repair;
        segment.run(Pending::Entry(entry)).await
    }

    /// Runs a segment of `execution` from `entry`, in the fan-out branches `scope`, until
    /// what comes next must wait, goes out as messages, or the segment's budget is spent.
    pub async fn segment(
        &self,
        execution: &Execution,
        workflow: &Workflow,
        scope: Vec<ScopeEntry>,
        entry: Entry,
    ) -> Result<(), RunError> {
        self.run_segment(execution, workflow, scope, entry, false).await.map(|_| ())
    }

    /// The first segment of an execution just created, run where it was started: no attempt
    /// of it can be recorded yet, so none is looked up before running. Returns the
    /// execution's status at the segment's end, as far as the segment saw it.
    pub async fn first_segment(
        &self,
        execution: &Execution,
        workflow: &Workflow,
        entry: Entry,
    ) -> Result<ExecutionStatus, RunError> {
        self.run_segment(execution, workflow, Vec::new(), entry, true).await
    }

    async fn run_segment(
        &self,
        execution: &Execution,
        workflow: &Workflow,
        scope: Vec<ScopeEntry>,
        entry: Entry,
        fresh: bool,
    ) -> Result<ExecutionStatus, RunError> {
        let mut segment = Segment::new(&self.runtime, execution, workflow, scope, fresh);
        segment.run(Pending::Entry(entry)).await?;
        Ok(segment.status)
    }

    /// Carries out the effects of an event outside any step (an execution that starts and
    /// ends at once, a deadline).
    pub async fn apply(&self, execution: &Execution, workflow: &Workflow, event: Event) -> Result<(), RunError> {
        let mut segment = Segment::new(&self.runtime, execution, workflow, Vec::new(), false);
        segment.run(Pending::Event(event)).await
    }

    /// Handles a step message that reached the dead-letter queue without its handler
    /// returning (every delivery crashed the process or ran out of time): its execution fails
    /// with the reason, so it is not left `running` with nothing to move it.
    pub async fn dead_lettered(&self, body: &str) -> Result<(), RunError> {
        if body.starts_with(crate::messages::NOTIFY_PREFIX) {
            tracing::error!("a failure notification message was dead-lettered; given up");
            return Ok(());
        }
        let Ok(message) = serde_json::from_str::<StepMessage>(body) else {
            tracing::error!("a malformed step message was dead-lettered; dropped");
            return Ok(());
        };
        tracing::error!(execution = %message.execution_id, step = %message.step, "step message dead-lettered");
        let reason = format!(
            "step `{}` was given up: none of its {MAX_RECEIVES} deliveries finished (the process running it \
             crashed or ran out of time)",
            message.step
        );
        self.give_up(&message, reason).await
    }

    /// Sets an execution that nothing moves on again (the recovery sweep): its first step is
    /// sent, and the segment replays what is recorded without running it again and goes on
    /// from there. A workflow with no step left to run ends it.
    pub async fn resume(&self, execution_id: &str) -> Result<(), RunError> {
        let Some(execution) = self.runtime.store.get_execution(execution_id).await? else { return Ok(()) };
        if execution.status.is_ended() {
            return Ok(());
        }
        let deployment = self.deployment(&execution).await?;
        let Some(first) = deployment.workflow.steps.first() else {
            let reason = "the execution had stopped with nothing left to run it".to_string();
            return self.abandon(execution_id, None, reason).await;
        };
        tracing::warn!(execution = %execution_id, "execution stopped with nothing to move it; resuming it");
        let body = StepMessage::resume(execution_id, &first.id).to_json();
        self.runtime.queue.send(QueueName::Steps, Outgoing { body, delay: Duration::ZERO }).await?;
        Ok(())
    }

    async fn give_up(&self, message: &StepMessage, reason: String) -> Result<(), RunError> {
        self.abandon(&message.execution_id, Some(message.key()), reason).await
    }

    /// Fails `execution_id` (unless it ended) with `reason`, at step `key` if one was running.
    pub async fn abandon(&self, execution_id: &str, key: Option<StepKey>, reason: String) -> Result<(), RunError> {
        let Some(execution) = self.runtime.store.get_execution(execution_id).await? else {
            return Ok(());
        };
        let event = Event::Abandoned { key, reason };
        match self.deployment(&execution).await {
            Ok(deployment) => self.apply(&execution, &deployment.workflow, event).await,
            // Without its workflow the execution still ends, as a workflow without steps would.
            Err(_) => {
                let empty = Workflow::without_steps(&execution.workflow_id);
                self.apply(&execution, &empty, event).await
            }
        }
    }
}

impl<'a> Segment<'a> {
    /// A segment of `execution` at the fan-out position `scope`, starting now.
    fn new(
        runtime: &'a Runtime,
        execution: &'a Execution,
        workflow: &'a Workflow,
        scope: Vec<ScopeEntry>,
        fresh: bool,
    ) -> Self {
        Segment {
            runtime,
            execution,
            workflow,
            status: execution.status,
            scope,
            started: Instant::now(),
            status_read: Instant::now(),
            steps_run: 0,
            handed_off: false,
            answered: false,
            inline_branch: None,
            completion: None,
            deferred: None,
            known: HashMap::new(),
            fresh,
            redelivered: false,
            repair: false,
            settings: None,
            credentials: None,
        }
    }

    async fn run(&mut self, first: Pending) -> Result<(), RunError> {
        let mut next = Some(first);
        while let Some(pending) = next.take() {
            if matches!(pending, Pending::Entry(_)) && self.cancelled().await? {
                // No step starts once the execution is cancelled; what ran is recorded.
                self.flush().await?;
                self.status = ExecutionStatus::Cancelled;
                tracing::debug!(execution = %self.execution.id, "execution cancelled; segment stopped");
                return Ok(());
            }
            let event = match pending {
                Pending::Event(event) => event,
                Pending::Entry(Entry::Run { key, attempt }) => self.run_step(key, attempt).await?,
                Pending::Entry(Entry::Wake { key, attempt }) => self.wake(key, attempt).await?,
            };
            for effect in engine::decide(self.workflow, &self.state(), event)? {
                if let Some(pending) = self.carry_out(effect).await? {
                    next = Some(pending);
                }
            }
        }
        Ok(())
    }

    /// Whether the execution was cancelled since this segment last knew its status: at once
    /// when the cancel came through this process, otherwise from the store, read again at
    /// most every [`STATUS_RECHECK`] (a segment's first steps cost no read: its status was
    /// just read or written).
    async fn cancelled(&mut self) -> Result<bool, RunError> {
        if self.runtime.cancels.contains(&self.execution.id) {
            return Ok(true);
        }
        if self.status_read.elapsed() < STATUS_RECHECK {
            return Ok(false);
        }
        self.status_read = Instant::now();
        let current = self.runtime.store.get_execution(&self.execution.id).await?;
        Ok(current.is_some_and(|e| e.status == ExecutionStatus::Cancelled))
    }

    /// The attempt a fan-out's own record takes now: 1 until the execution is redriven; after,
    /// the attempt its latest generation started (see `engine::REDRIVE_ATTEMPT_STRIDE`).
    pub(super) async fn current_fan_out_attempt(&mut self, key: &StepKey) -> Result<u32, RunError> {
        if self.execution.redrives == 0 {
            return Ok(1);
        }
        self.flush().await?;
        Ok(match self.runtime.store.latest_step(&self.execution.id, key).await? {
            None => 1,
            Some(latest)
                if latest.status == StepStatus::Failed
                    && engine::attempt_generation(latest.attempt) < self.execution.redrives =>
            {
                engine::first_attempt_of(engine::attempt_generation(latest.attempt) + 1)
            }
            Some(latest) => latest.attempt,
        })
    }

    fn state(&self) -> State<'_> {
        State {
            execution_id: &self.execution.id,
            status: self.status,
            caller_waits: self.execution.response_deadline.is_some() && !self.answered,
            now: now(),
            inline_fan_out_items: self.runtime.settings.inline_fan_out_items,
            redrives: self.execution.redrives,
        }
    }

    /// Whether the next step may run in this segment rather than from the queue.
    fn may_go_on(&self) -> bool {
        !self.handed_off
            && self.steps_run < MAX_INLINE_STEPS
            && self.started.elapsed() < self.runtime.settings.segment_budget
    }

    fn ports(&self) -> StepPorts<'_> {
        StepPorts {
            http: &self.runtime.http,
            files: self.runtime.store.as_ref(),
            secrets: Some(self.runtime.connect.as_ref()),
        }
    }

    /// The scope entries of a key's scope (a prefix of the current position's).
    fn scope_of(&self, key: &StepKey) -> Result<Vec<ScopeEntry>, RunError> {
        let entries = self.scope.get(..key.scope.len()).unwrap_or(&self.scope);
        if entries.iter().map(|e| e.index).ne(key.scope.iter().copied()) {
            return Err(RunError::Poison(format!("step `{key}` is not in the current fan-out branch")));
        }
        Ok(entries.to_vec())
    }

    /// Runs attempt `attempt` of `key` (unless it is recorded) and says how it ended.
    async fn run_step(&mut self, key: StepKey, attempt: u32) -> Result<Event, RunError> {
        let store = &self.runtime.store;
        let step = self
            .workflow
            .find_step(&key.step)
            .ok_or_else(|| RunError::Poison(format!("workflow has no step `{}`", key.step)))?;
        let text = key.to_string();
        let known = self.known.get(&text).filter(|known| known.attempt == attempt).cloned();
        let recorded = match known {
            Some(known) => Some(known),
            None if self.fresh => None,
            None => store.get_step(&self.execution.id, &key, attempt).await?,
        };
        if let Some(recorded) = recorded {
            let outcome = steps::outcome_of(step, &recorded).map_err(RunError::Poison)?;
            self.known.insert(text, recorded);
            return Ok(Event::StepEnded { key, attempt, outcome });
        }
        let references = context::references(step);
        // The attempt's span covers reading its credentials too (an OAuth refresh is a request
        // of the attempt); a fan-out is no attempt of its own.
        let span = match &step.kind {
            StepKind::FanOut(_) => crate::telemetry::StepSpan::off(),
            kind => crate::telemetry::StepSpan::start(self.execution, &text, kind.type_name(), attempt),
        };
        let (settings, credentials) = match span.instrument(self.secrets(&references)).await? {
            Ok(secrets) => secrets,
            // The user's settings or credentials cannot be used (a connection that needs
            // re-authorisation, a secret that does not open): the step fails, saying why.
            Err(reason) => {
                let error = crate::record::StepError::terminal(reason);
                let (_, recorded) = self.record(recorded_attempt(&key, attempt, Recorded::Failed(error))).await?;
                span.end(&recorded);
                log_attempt(self.execution, &recorded);
                let outcome = steps::outcome_of(step, &recorded).map_err(RunError::Poison)?;
                return Ok(Event::StepEnded { key, attempt, outcome });
            }
        };
        let base = context::with_secrets(self.execution, &self.runtime.settings.env, &settings, credentials.as_deref());
        let ctx = context::for_step(
            store.as_ref(),
            &self.known,
            base,
            self.execution,
            self.workflow,
            &references.steps,
            &self.scope,
        )
        .await?;
        if let StepKind::FanOut(fan_out) = &step.kind {
            return Ok(Event::FanOutEvaluated { key, attempt, items: steps::fan_out::evaluate(fan_out, &ctx) });
        }
        let running = steps::execute(self.ports(), self.execution, self.workflow, step, &text, attempt, &ctx);
        let executed = span.instrument(running).await;
        self.steps_run += 1;
        let mut record = executed.record;
        context::redact_secrets(&mut record, &settings, credentials.as_deref());
        if let Some(answer) = executed.answer {
            let delivery = self.answer(key.clone(), answer).await;
            match delivery {
                Ok(delivery) => record.output = record.output.map(|output| with_delivery(output, delivery)),
                Err(error) => {
                    record.status = StepStatus::Failed;
                    record.output = None;
                    record.error =
                        Some(crate::record::StepError::retryable(format!("could not record the response: {error}")));
                }
            }
        }
        let (written, recorded) = self.record(record).await?;
        span.end(&recorded);
        log_attempt(self.execution, &recorded);
        let outcome = match (written, recorded) {
            (FirstWrite::Written, recorded) if recorded.status == StepStatus::Succeeded => {
                Outcome::Succeeded { output: recorded.output.unwrap_or(Value::Null), signal: executed.signal }
            }
            (_, recorded) => steps::outcome_of(step, &recorded).map_err(RunError::Poison)?,
        };
        Ok(Event::StepEnded { key, attempt, outcome })
    }

    /// The user's settings and credentials `step` reads; `Ok(Err(reason))` when they cannot
    /// be used (the step fails with the reason), `Err` when reading them may work next time.
    async fn secrets(&mut self, references: &context::References) -> Result<Result<Secrets, String>, RunError> {
        let blocked = |e: crate::connect::ConnectError| {
            if e.is_retryable() { Err(RunError::Retryable(e.to_string())) } else { Ok(Err(e.to_string())) }
        };
        let settings = match self.user_settings(references.settings).await {
            Ok(settings) => settings,
            Err(e) => return blocked(e),
        };
        match self.credentials(references.credentials).await {
            Ok(credentials) => Ok(Ok((settings, credentials))),
            Err(e) => blocked(e),
        }
    }

    /// The user's credentials for the workflow's integration if the step `reads` them (read once
    /// per segment, through the connect layer's secret source): an empty object when the user
    /// has none.
    async fn credentials(&mut self, reads: bool) -> Result<Option<Arc<UserSettings>>, crate::connect::ConnectError> {
        if !reads || self.workflow.integration.is_none() {
            return Ok(None);
        }
        if let Some(credentials) = &self.credentials {
            return Ok(Some(credentials.clone()));
        }
        let secrets: &dyn SecretSource = self.runtime.connect.as_ref();
        let Some(opened) = secrets.credentials(self.execution, self.workflow).await? else { return Ok(None) };
        let opened = Arc::new(opened);
        self.credentials = Some(opened.clone());
        Ok(Some(opened))
    }

    /// The user's settings if the step `reads` them (read once per segment), else none.
    async fn user_settings(&mut self, reads: bool) -> Result<Arc<UserSettings>, crate::connect::ConnectError> {
        let declares = !self.workflow.inputs.is_empty() || !self.workflow.integration_inputs.is_empty();
        if !declares || !reads {
            return Ok(Arc::default());
        }
        if let Some(settings) = &self.settings {
            return Ok(settings.clone());
        }
        let secrets: &dyn SecretSource = self.runtime.connect.as_ref();
        let settings = Arc::new(secrets.settings(self.execution, self.workflow).await?);
        self.settings = Some(settings.clone());
        Ok(settings)
    }

    /// Settles a Response step's answer if the engine says a caller gets it.
    async fn answer(&mut self, key: StepKey, answer: crate::record::HttpResponse) -> Result<Delivery, RunError> {
        let effects = engine::decide(self.workflow, &self.state(), Event::Answered { key, answer: answer.clone() })
            .unwrap_or_default();
        let mut delivery = Delivery::NoCaller;
        for effect in effects {
            if let Effect::Respond(response) = effect {
                delivery = match self.respond(response).await? {
                    FirstWrite::Written => Delivery::Delivered,
                    // A redelivery of this same step: it was delivered the first time.
                    FirstWrite::Existing(SettledResponse::Step { response: earlier, .. }) if earlier == answer => {
                        Delivery::Delivered
                    }
                    FirstWrite::Existing(_) => Delivery::TooLate,
                };
            }
        }
        Ok(delivery)
    }

    async fn respond(&mut self, answer: Answer) -> Result<FirstWrite<SettledResponse>, RunError> {
        self.flush().await?;
        let written =
            settle::settle(self.runtime.store.as_ref(), &self.runtime.signals, &self.execution.id, answer).await?;
        self.answered = true;
        if self.runtime.settings.host == Host::Lambda {
            // A Lambda is frozen once it answers: what follows goes to the queue.
            self.handed_off = true;
        }
        Ok(written)
    }

    /// A Delay step's wait is over: its recorded output goes on to the engine.
    async fn wake(&mut self, key: StepKey, attempt: u32) -> Result<Event, RunError> {
        let recorded = self.runtime.store.get_step(&self.execution.id, &key, attempt).await?;
        let recorded = recorded
            .ok_or_else(|| RunError::Poison(format!("woken for `{key}`, whose attempt {attempt} is not recorded")))?;
        Ok(Event::WaitOver { key, attempt, output: recorded.output.unwrap_or(Value::Null) })
    }

    /// Records an attempt; if another delivery recorded it first, that record wins. In an
    /// inline branch the write is deferred (see `deferred`).
    async fn record(&mut self, record: StepAttempt) -> Result<(FirstWrite<()>, StepAttempt), RunError> {
        if let Some(deferred) = self.deferred.as_mut() {
            deferred.push(record.clone());
            self.known.insert(record.step.clone(), record.clone());
            return Ok((FirstWrite::Written, record));
        }
        let (written, recorded) = match self.runtime.store.record_step(&self.execution.id, &record).await? {
            FirstWrite::Written => (FirstWrite::Written, record),
            FirstWrite::Existing(earlier) => (FirstWrite::Existing(()), earlier),
        };
        self.known.insert(recorded.step.clone(), recorded.clone());
        Ok((written, recorded))
    }

    /// Writes an inline branch's deferred attempts, before something leaves the segment. One
    /// that another delivery recorded first fails the segment (retryably): what this branch
    /// did after it was built on a result that lost, and the redelivery goes on from the
    /// recorded one.
    async fn flush(&mut self) -> Result<(), RunError> {
        let Some(deferred) = self.deferred.as_mut().map(std::mem::take) else { return Ok(()) };
        for attempt in deferred {
            if let FirstWrite::Existing(_) = self.runtime.store.record_step(&self.execution.id, &attempt).await? {
                self.known.remove(&attempt.step);
                return Err(RunError::Retryable(format!(
                    "step `{}` of an inline fan-out branch was recorded first by another delivery",
                    attempt.step
                )));
            }
        }
        Ok(())
    }

    /// Sends a step message for `key` (its scope entries from the current position).
    async fn send_step(
        &mut self,
        key: &StepKey,
        attempt: u32,
        delay: Duration,
        not_before_ms: Option<i64>,
        wake: bool,
    ) -> Result<(), RunError> {
        let message = StepMessage {
            execution_id: self.execution.id.clone(),
            step: key.step.clone(),
            attempt,
            scope: self.scope_of(key)?,
            not_before_ms,
            wake,
            repair: self.repair,
        };
        let outgoing = Outgoing { body: message.to_json(), delay: delay.min(MAX_QUEUE_DELAY) };
        self.flush().await?;
        self.runtime.queue.send(QueueName::Steps, outgoing).await?;
        Ok(())
    }

    /// Carries out one effect; returns what the segment handles next, if anything.
    async fn carry_out(&mut self, effect: Effect) -> Result<Option<Pending>, RunError> {
        let store = &self.runtime.store;
        match effect {
            Effect::RunStep { key, attempt, delay } => {
                if delay.is_zero() && self.may_go_on() {
                    self.scope = self.scope_of(&key)?;
                    return Ok(Some(Pending::Entry(Entry::Run { key, attempt })));
                }
                self.send_step(&key, attempt, delay, None, false).await?;
            }
            Effect::Wake { key, attempt, at } => {
                let remaining = remaining_until(at.timestamp_millis());
                if remaining.is_none() && self.may_go_on() {
                    self.scope = self.scope_of(&key)?;
                    return Ok(Some(Pending::Entry(Entry::Wake { key, attempt })));
                }
                let delay = remaining.unwrap_or_default();
                self.send_step(&key, attempt, delay, Some(at.timestamp_millis()), true).await?;
            }
            Effect::Record { key, attempt, result } => {
                let attempt = match attempt {
                    engine::CURRENT_FAN_OUT_ATTEMPT => self.current_fan_out_attempt(&key).await?,
                    attempt => attempt,
                };
                let record = recorded_attempt(&key, attempt, result);
                let step = self
                    .workflow
                    .find_step(&key.step)
                    .ok_or_else(|| RunError::Poison(format!("workflow has no step `{}`", key.step)))?;
                let (_, recorded) = self.record(record).await?;
                let outcome = steps::outcome_of(step, &recorded).map_err(RunError::Poison)?;
                self.scope = self.scope_of(&key)?;
                return Ok(Some(Pending::Event(Event::StepEnded { key, attempt, outcome })));
            }
            Effect::StartBranches { fan_out, first_step, lanes, items, inline } => {
                if inline && self.inline_branch.is_none() && self.may_go_on() {
                    let event = self.run_branches_inline(fan_out, &first_step, lanes, items).await?;
                    return Ok(event.map(Pending::Event));
                }
                self.flush().await?;
                self.start_branches(&fan_out, &first_step, lanes, items).await?;
            }
            Effect::StartBranch { fan_out, first_step, index, total, unless_started } => {
                // Inline branches are all started by the segment that runs them.
                if self.inline_branch.as_ref() != Some(&fan_out) {
                    self.flush().await?;
                    self.start_branch(&fan_out, &first_step, index, total, unless_started).await?;
                }
            }
            Effect::CompleteBranch { fan_out, index, result } => {
                if self.inline_branch.as_ref() == Some(&fan_out) {
                    // Counted with its siblings by the segment that runs them.
                    self.completion = Some((index, result));
                    return Ok(None);
                }
                self.flush().await?;
                let event = self.complete_branch(fan_out, index, &result).await?;
                return Ok(Some(Pending::Event(event)));
            }
            Effect::Join { fan_out, total } => {
                self.flush().await?;
                let event = self.join(fan_out, total).await?;
                return Ok(Some(Pending::Event(event)));
            }
            Effect::SetStatus { from, to } => {
                self.flush().await?;
                if store.set_execution_status(&self.execution.project_id, &self.execution.id, from, to).await? {
                    self.status = to;
                } else if let Some(current) = store.get_execution(&self.execution.id).await? {
                    self.status = current.status;
                }
            }
            Effect::Respond(answer) => {
                self.respond(answer).await?;
            }
            Effect::Finish { status, error } => {
                self.flush().await?;
                let execution = self.execution;
                if status == ExecutionStatus::Failed && !execution.test && !execution.status.is_ended() {
                    // Before it ends, so that it never ends failed without them (see
                    // `crate::notifications`).
                    crate::notifications::queue_failed(self.runtime, &execution.project_id, &execution.id).await?;
                }
                let ended_at = now();
                if store
                    .finish_execution(&execution.project_id, &execution.id, status, error.as_ref(), ended_at)
                    .await?
                {
                    crate::telemetry::export_root(execution, status, ended_at);
                }
                self.status = status;
                tracing::debug!(execution = %self.execution.id, status = status.as_str(), "execution ended");
            }
        }
        Ok(None)
    }
}

/// The record of a step that ends without running (a fan-out's start or join).
/// A step's user settings and (when it reads them) credentials.
type Secrets = (Arc<UserSettings>, Option<Arc<UserSettings>>);

fn recorded_attempt(key: &StepKey, attempt: u32, result: Recorded) -> StepAttempt {
    let at = now();
    let (status, input, output, error) = match result {
        Recorded::Succeeded { input, output } => (StepStatus::Succeeded, input, Some(output), None),
        Recorded::Failed(error) => (StepStatus::Failed, Value::Null, None, Some(error)),
    };
    steps::within_record_limit(StepAttempt {
        step: key.to_string(),
        attempt,
        status,
        input,
        output,
        error,
        started_at: at,
        ended_at: at,
        logs: Vec::new(),
    })
}

/// The one line a step attempt that ran writes at the default level.
fn log_attempt(execution: &Execution, recorded: &StepAttempt) {
    let ms = (recorded.ended_at - recorded.started_at).num_milliseconds();
    let status = match recorded.status {
        StepStatus::Succeeded => "succeeded",
        StepStatus::Failed => "failed",
    };
    tracing::info!(execution = %execution.id, step = %recorded.step, attempt = recorded.attempt, status = %status, ms, "step ended");
}

/// How long until `epoch_ms`, if that is later than now (beyond a small tolerance).
fn remaining_until(epoch_ms: i64) -> Option<Duration> {
    let remaining = epoch_ms.saturating_sub(now().timestamp_millis());
    let remaining = Duration::from_millis(u64::try_from(remaining).ok()?);
    (remaining > EARLY_TOLERANCE).then_some(remaining)
}

#[cfg(test)]
mod tests;

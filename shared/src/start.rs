//! Starting an execution: the one use case every trigger goes through (the request trigger
//! and test runs now; app events, webhooks, integration enabled and the scheduler later).
//!
//! "The execution exists" and "it will run" are one fact: the execution is created together
//! with its first messages through [`StartExecution`] (one SQLite transaction; on DynamoDB +
//! SQS the delayed messages are sent first, then the execution is created, then an immediate
//! step message is sent; a message that finds no execution is dropped). Which messages depends
//! on where the first segment runs:
//! - **inline** (a caller waits, or the process outlives its answers — `sluice dev`): the
//!   segment runs here at once, in a task of its own, so a caller that disconnects cannot
//!   cancel it, and no step message is sent. A *recovery* message on the responses queue
//!   covers a process that dies mid-segment: for a waiting caller it is the deadline message
//!   itself (at the deadline the response waiter settles 542 if nothing was answered and, if
//!   the execution has not ended, sends it on to come due at [`Settings::recovery_delay`]
//!   from the start); otherwise a recovery message delayed by that much. A segment that stops
//!   without error has ended the execution or handed what is left to the queue, and records
//!   that it did ([`HANDED_OFF`]) unless the execution has ended. When the recovery comes due,
//!   the execution has not ended and the segment recorded no hand-off, the waiter sends a
//!   step message for the first step: the step runner walks the recorded steps (never
//!   running one again) to where the segment stopped and goes on — re-sending, idempotently,
//!   whatever the segment had handed off. A synchronous execution answered and ended in its
//!   segment thus costs no step message.
//! - **queued** (an asynchronous execution on Lambda, which is frozen once it answers): the
//!   first step's message, at once (behind a recovery message where the store and the queue
//!   cannot share a transaction, which resumes the execution only if its first step was
//!   never recorded); the 202 does not wait for any step.
//!
//! Either way the recovery leaves alone an execution whose chain of messages is known to be
//! alive: resuming it would start a second chain beside the first, and every step not yet
//! recorded when they meet would run twice. (Only a crash between a hand-off and its record
//! leaves that to chance: the steps after it are then at least once, as after a redelivery.)
//!
//! [`Settings::recovery_delay`]: crate::runtime::Settings::recovery_delay

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;
use tokio::task::JoinHandle;

use crate::engine::{self, Effect, Event, State, StepKey};
use crate::messages::{DeadlineMessage, StepMessage};
use crate::model::Workflow;
use crate::ports::{
    Deployment, MAX_QUEUE_DELAY, MAX_SEARCH_VALUE_BYTES, Outgoing, QueueName, SendQueue, StartError, StartExecution,
    Store, StoreError,
};
use crate::record::{Execution, ExecutionStatus, StepAttempt, StepStatus, TriggerData, now};
use crate::runner::{Entry, RunError, Runner};
use crate::runtime::{Host, Runtime};

/// The step key of the record an inline first segment leaves when it stopped without error
/// and the execution has not ended: what is left is in the queue's hands, and the recovery
/// must not resume it. Not a workflow step (step ids cannot start with `$`); the execution
/// record leaves it out. It is read back as the top-level key `StepKey::top(HANDED_OFF)`,
/// which renders as this very text (no `@`, so no scope), the key it is recorded under.
pub const HANDED_OFF: &str = "$handed-off";

/// What starts an execution.
#[derive(Debug, Clone)]
pub struct NewExecution {
    /// From [`new_execution_id`], chosen by the caller so it can watch for the answer first.
    pub id: String,
    pub deployment: Arc<Deployment>,
    pub trigger: TriggerData,
    pub user_id: String,
    /// A test run: delays skipped, paginated requests capped.
    pub test: bool,
    /// A caller waits for a Response step's answer (until the response timeout).
    pub caller_waits: bool,
    /// The execution this one replays (Task History `replay`).
    pub replay_of: Option<String>,
}

/// A started execution, and its inline first segment if one runs.
#[derive(Debug)]
pub struct Started {
    pub execution: Execution,
    pub segment: Option<JoinHandle<Result<(), RunError>>>,
}

/// The search attributes of an execution of `workflow` started by `trigger` for `user_id`:
/// each of the workflow's `search` templates rendered from `trigger.*` and `user.id`. A value
/// that is missing, null, an object or an array is left out, as is a text longer than
/// [`MAX_SEARCH_VALUE_BYTES`] (nobody could type it exactly); numbers and booleans become
/// their JSON text (`42`, `true`).
pub fn search_attributes(workflow: &Workflow, trigger: &TriggerData, user_id: &str) -> BTreeMap<String, String> {
    if workflow.search.is_empty() {
        return BTreeMap::new();
    }
    let ctx = serde_json::json!({
        "trigger": { "query": trigger.query, "headers": trigger.headers, "body": trigger.body, "event": trigger.event },
        "user": { "id": user_id },
    });
    let mut values = BTreeMap::new();
    for (key, template) in &workflow.search {
        let rendered = match crate::template::render_optional(&Value::String(template.clone()), &ctx) {
            Ok(Some(value)) => value,
            Ok(None) | Err(_) => continue,
        };
        let text = match rendered {
            Value::String(text) => text,
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            Value::Null | Value::Array(_) | Value::Object(_) => continue,
        };
        if !text.is_empty() && text.len() <= MAX_SEARCH_VALUE_BYTES {
            values.insert(key.clone(), text);
        }
    }
    values
}

/// A new, time-ordered execution id.
pub fn new_execution_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// Creates the execution with its messages and starts its first segment (see the module doc).
pub async fn start(runner: &Runner, new: NewExecution) -> Result<Started, StartError> {
    let prepared = prepare(runner.runtime(), new)?;
    runner.runtime().starter.create_and_send(&prepared.execution, prepared.messages.clone()).await?;
    launch(runner, prepared).await
}

/// Starts several executions at once (an app event's listeners): created together with their
/// messages through [`StartExecution::create_and_send_many`], then each first segment started
/// as [`start`] does.
pub async fn start_many(runner: &Runner, news: Vec<NewExecution>) -> Result<Vec<Started>, StartError> {
    let runtime = runner.runtime();
    let prepared = news.into_iter().map(|new| prepare(runtime, new)).collect::<Result<Vec<_>, _>>()?;
    let writes = prepared.iter().map(|p| (p.execution.clone(), p.messages.clone())).collect();
    runtime.starter.create_and_send_many(writes).await?;
    let mut started = Vec::with_capacity(prepared.len());
    for prepared in prepared {
        started.push(launch(runner, prepared).await?);
    }
    Ok(started)
}

/// [`start_many`] for a webhook delivery: the executions are created with their messages and
/// the delivery kept in one write where the backend can
/// ([`StartExecution::start_and_keep`]), then each first segment started.
pub async fn start_many_and_keep(
    runner: &Runner,
    news: Vec<NewExecution>,
    delivery: &crate::ports::WebhookDelivery,
) -> Result<Vec<Started>, StartError> {
    let runtime = runner.runtime();
    let prepared = news.into_iter().map(|new| prepare(runtime, new)).collect::<Result<Vec<_>, _>>()?;
    let writes = prepared.iter().map(|p| (p.execution.clone(), p.messages.clone())).collect();
    runtime.starter.start_and_keep(writes, delivery, runtime.store.as_ref()).await?;
    let mut started = Vec::with_capacity(prepared.len());
    for prepared in prepared {
        started.push(launch(runner, prepared).await?);
    }
    Ok(started)
}

/// An execution ready to be created: its record, the messages created with it, and where its
/// first segment runs.
struct Prepared {
    execution: Execution,
    deployment: Arc<Deployment>,
    messages: Vec<(QueueName, Outgoing)>,
    first: Option<(engine::StepKey, u32)>,
    inline: bool,
}

/// The execution `new` describes, with the messages it is created with (see the module doc).
fn prepare(runtime: &Runtime, new: NewExecution) -> Result<Prepared, StartError> {
    let settings = &runtime.settings;
    let started_at = now();
    let deadline = new
        .caller_waits
        .then(|| chrono::Duration::from_std(settings.response_timeout).ok().map(|d| started_at + d))
        .flatten();
    let deployment = new.deployment;
    let user_id = new.user_id;
    let search = search_attributes(&deployment.workflow, &new.trigger, &user_id);
    let execution = Execution {
        id: new.id,
        project_id: deployment.project_id.clone(),
        workflow_id: deployment.workflow_id.clone(),
        workflow_version: deployment.version,
        user_id,
        status: ExecutionStatus::Running,
        started_at,
        ended_at: None,
        trigger: new.trigger,
        response_deadline: deadline,
        error: None,
        test: new.test,
        integration: deployment.workflow.integration.clone(),
        search,
        replay_of: new.replay_of,
        redrives: 0,
    };
    let state = State {
        execution_id: &execution.id,
        status: execution.status,
        caller_waits: deadline.is_some(),
        now: started_at,
        inline_fan_out_items: settings.inline_fan_out_items,
        redrives: 0,
    };
    let effects = engine::decide(&deployment.workflow, &state, Event::Started)
        .map_err(|e| StartError::Store(crate::ports::StoreError::Corrupt(e.to_string())))?;
    let first = effects.iter().find_map(|effect| match effect {
        Effect::RunStep { key, attempt, .. } => Some((key.clone(), *attempt)),
        _ => None,
    });
    let inline = runs_inline(&execution, settings.host);
    let resume = first.as_ref().map(|(key, _)| key.step.clone());
    let mut messages = Vec::with_capacity(2);
    let recovery = |delay: Duration| {
        let message = DeadlineMessage { execution_id: execution.id.clone(), resume: resume.clone(), recover: true };
        (QueueName::Responses, Outgoing { body: message.to_json(), delay: delay.min(MAX_QUEUE_DELAY) })
    };
    if deadline.is_some() {
        // The deadline message doubles as the recovery message: at the deadline the waiter
        // re-sends it to come due at the recovery delay if the execution has not ended.
        let message = DeadlineMessage { execution_id: execution.id.clone(), resume: resume.clone(), recover: false };
        let delay = settings.response_timeout.min(MAX_QUEUE_DELAY);
        messages.push((QueueName::Responses, Outgoing { body: message.to_json(), delay }));
    } else if inline && resume.is_some() {
        messages.push(recovery(settings.recovery_delay));
    }
    if let (Some((key, _)), false) = (&first, inline) {
        if !runtime.starter.is_atomic() {
            // Covers a crash between creating the execution and sending its first step.
            messages.push(recovery(settings.recovery_delay));
        }
        let body = StepMessage::first(&execution.id, &key.step).to_json();
        messages.push((QueueName::Steps, Outgoing { body, delay: Duration::ZERO }));
    }
    Ok(Prepared { execution, deployment, messages, first, inline })
}

/// After the execution was created: starts its first segment where it runs inline, or ends
/// it at once when it has no step.
async fn launch(runner: &Runner, prepared: Prepared) -> Result<Started, StartError> {
    let Prepared { execution, deployment, first, inline, .. } = prepared;
    tracing::debug!(execution = %execution.id, workflow = %execution.workflow_id, version = execution.workflow_version, "execution started");
    let segment = match first {
        Some((key, attempt)) if inline => {
            let (runner, execution, deployment) = (runner.clone(), execution.clone(), deployment.clone());
            Some(tokio::spawn(async move {
                let workflow = &deployment.workflow;
                let result = match runner.first_segment(&execution, workflow, Entry::Run { key, attempt }).await {
                    Ok(status) if status.is_ended() => Ok(()),
                    Ok(_) => record_hand_off(runner.runtime(), &execution.id).await.map_err(RunError::from),
                    Err(error) => Err(error),
                };
                if let Err(error) = &result {
                    // The recovery message takes over.
                    tracing::warn!(execution = %execution.id, %error, "inline segment stopped; the queue resumes it");
                }
                result
            }))
        }
        Some(_) => None,
        None => {
            // No step to run: the engine ended it (and answers a waiting caller).
            runner.apply(&execution, &deployment.workflow, Event::Started).await.map_err(|e| {
                StartError::AfterCreate {
                    execution_id: execution.id.clone(),
                    reason: format!("it could not be ended: {e}"),
                }
            })?;
            None
        }
    };
    Ok(Started { execution, segment })
}

/// Whether an execution's first segment runs in the process that starts it (see the module
/// doc); the rule the response waiter applies again at the recovery.
pub fn runs_inline(execution: &Execution, host: Host) -> bool {
    execution.response_deadline.is_some() || host == Host::Local
}

/// After an inline segment stopped without error: records [`HANDED_OFF`] unless the
/// execution has ended (the recovery sees that by itself).
async fn record_hand_off(runtime: &Runtime, execution_id: &str) -> Result<(), StoreError> {
    let store = &runtime.store;
    if store.get_execution(execution_id).await?.is_none_or(|e| e.status.is_ended()) {
        return Ok(());
    }
    let at = now();
    let marker = StepAttempt {
        step: HANDED_OFF.to_string(),
        attempt: 1,
        status: StepStatus::Succeeded,
        input: serde_json::Value::Null,
        output: None,
        error: None,
        started_at: at,
        ended_at: at,
        logs: Vec::new(),
    };
    store.record_step(execution_id, &marker).await?;
    Ok(())
}

/// Whether the recovery of `execution` (first step `first`) has nothing to do because its
/// chain of messages is alive: an inline segment recorded that it handed off; a queued first
/// step was delivered if it is recorded.
pub async fn moved_on(store: &dyn Store, execution: &Execution, first: &str, host: Host) -> Result<bool, StoreError> {
    let step = if runs_inline(execution, host) { HANDED_OFF } else { first };
    Ok(store.get_step(&execution.id, &StepKey::top(step), 1).await?.is_some())
}

/// `StartExecution` for a store and a queue that cannot share a transaction (DynamoDB + SQS):
/// the messages are sent first, the execution created after. A crash in between leaves
/// messages that find no execution (they are dropped), never an execution without messages;
/// the recovery message of an inline start is delayed long enough to find it created.
pub struct SendThenCreate {
    pub store: Arc<dyn Store>,
    pub queue: Arc<dyn SendQueue>,
}

#[async_trait]
impl StartExecution for SendThenCreate {
    async fn create_and_send(
        &self,
        execution: &Execution,
        messages: Vec<(QueueName, Outgoing)>,
    ) -> Result<(), StartError> {
        // Delayed messages (the deadline, the recovery) go first: they find the execution
        // created. An immediate step message goes after the create, so that it finds it too.
        let (now, later): (Vec<_>, Vec<_>) = messages.into_iter().partition(|(_, m)| m.delay.is_zero());
        for (queue, message) in later {
            self.queue.send(queue, message).await?;
        }
        self.store.create_execution(execution).await?;
        for (queue, message) in now {
            self.queue.send(queue, message).await?;
        }
        Ok(())
    }

    /// Delayed messages of every execution in batches, the executions concurrently, then the
    /// immediate messages in batches: the same order as for one.
    async fn create_and_send_many(
        &self,
        starts: Vec<(Execution, Vec<(QueueName, Outgoing)>)>,
    ) -> Result<(), StartError> {
        let mut later: Vec<(QueueName, Outgoing)> = Vec::new();
        let mut now: Vec<(QueueName, Outgoing)> = Vec::new();
        let mut executions = Vec::with_capacity(starts.len());
        for (execution, messages) in starts {
            for (queue, message) in messages {
                if message.delay.is_zero() { now.push((queue, message)) } else { later.push((queue, message)) }
            }
            executions.push(execution);
        }
        send_grouped(self.queue.as_ref(), later).await?;
        let creates = executions.iter().map(|execution| self.store.create_execution(execution));
        futures_util::future::try_join_all(creates).await?;
        send_grouped(self.queue.as_ref(), now).await?;
        Ok(())
    }

    fn is_atomic(&self) -> bool {
        false
    }
}

/// Sends `messages` in one batch per queue.
async fn send_grouped(queue: &dyn SendQueue, messages: Vec<(QueueName, Outgoing)>) -> Result<(), StartError> {
    for name in [QueueName::Responses, QueueName::Steps] {
        let mut batch: Vec<Outgoing> = messages.iter().filter(|(q, _)| *q == name).map(|(_, m)| m.clone()).collect();
        if batch.len() > 1 {
            queue.send_batch(name, batch).await?;
        } else if let Some(message) = batch.pop() {
            queue.send(name, message).await?;
        }
    }
    Ok(())
}

/// The workflow a deployment runs (for callers that hold only the `Arc`).
pub fn workflow_of(deployment: &Deployment) -> &Workflow {
    &deployment.workflow
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hand-off marker is looked up under the very text it is recorded under.
    #[test]
    fn the_hand_off_marker_key_renders_as_recorded() {
        assert_eq!(StepKey::top(HANDED_OFF).to_string(), HANDED_OFF);
        assert_eq!(HANDED_OFF.parse::<StepKey>(), Ok(StepKey::top(HANDED_OFF)));
    }
}

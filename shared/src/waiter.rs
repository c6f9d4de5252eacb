//! The response waiter owns the clock of synchronous executions: it receives a message
//! delayed to the execution's deadline and hands the engine the deadline; what the engine
//! answers (542, unless the execution ended) is settled first-writer-wins through
//! `crate::settle`, so a Response step that runs later only records that it came too late.
//! Deadlines beyond the queue's longest delay are reached by re-sending. The same queue carries
//! the recovery of inline first segments (see `crate::start`): at the deadline of an
//! execution that has not ended, the message is sent on to come due at the recovery delay;
//! then, if the execution still has not ended and its first segment did not hand off to the
//! queue (`crate::start::moved_on`), its first step is sent to the step runner, which goes on
//! from the last recorded step.

use std::time::Duration;

use crate::engine::{self, Effect, Event, State};
use crate::messages::{DeadlineMessage, StepMessage};
use crate::model::Workflow;
use crate::ports::{MAX_QUEUE_DELAY, Outgoing, QueueName};
use crate::record::{Execution, Timestamp, now};
use crate::runner::{RunError, Runner};
use crate::runtime::Runtime;
use crate::settle;
use crate::start;

#[derive(Clone)]
pub struct Waiter {
    runtime: Runtime,
}

impl Waiter {
    pub fn new(runtime: Runtime) -> Self {
        Waiter { runtime }
    }

    /// Handles one message from the response queue. Ok means: delete the message.
    /// Handles a deadline message that reached the dead-letter queue without its handler
    /// returning: its execution fails with the reason (a waiting caller gets the failure).
    pub async fn dead_lettered(&self, body: &str) -> Result<(), RunError> {
        let Ok(message) = serde_json::from_str::<DeadlineMessage>(body) else {
            tracing::error!("a malformed deadline message was dead-lettered; dropped");
            return Ok(());
        };
        tracing::error!(execution = %message.execution_id, "deadline message dead-lettered");
        let reason =
            "the execution's deadline or recovery check was given up: none of its deliveries finished".to_string();
        Runner::new(self.runtime.clone()).abandon(&message.execution_id, None, reason).await
    }

    pub async fn handle(&self, body: &str) -> Result<(), RunError> {
        let message: DeadlineMessage =
            serde_json::from_str(body).map_err(|e| RunError::Poison(format!("malformed deadline message: {e}")))?;
        let store = &self.runtime.store;
        let Some(execution) = store.get_execution(&message.execution_id).await? else {
            tracing::warn!(execution = %message.execution_id, "deadline for an unknown execution; dropped");
            return Ok(());
        };
        let due = if message.recover {
            recovery_due(&execution, self.runtime.settings.recovery_delay)
        } else {
            match execution.response_deadline {
                Some(deadline) => deadline,
                None => return Ok(()),
            }
        };
        let remaining = (due - now()).to_std().unwrap_or(Duration::ZERO);
        if remaining > Duration::from_millis(100) {
            // Delivered early (further than one queue delay, or a recovery sent on): wait again.
            let body = message.to_json();
            let delay = remaining.min(MAX_QUEUE_DELAY);
            self.runtime.queue.send(QueueName::Responses, Outgoing { body, delay }).await?;
            return Ok(());
        }
        if execution.status.is_ended() {
            return Ok(());
        }
        if message.recover {
            let Some(step) = &message.resume else { return Ok(()) };
            if start::moved_on(store.as_ref(), &execution, step, self.runtime.settings.host).await? {
                // Its messages carry it on: resuming it would run its remaining steps twice.
                tracing::debug!(execution = %execution.id, "execution still running at its recovery time; not resumed");
                return Ok(());
            }
            tracing::info!(execution = %execution.id, "execution has not ended by its recovery time; resuming it");
            let body = StepMessage::resume(&execution.id, step).to_json();
            self.runtime.queue.send(QueueName::Steps, Outgoing { body, delay: Duration::ZERO }).await?;
            return Ok(());
        }
        let state = State {
            execution_id: &execution.id,
            status: execution.status,
            caller_waits: true,
            now: now(),
            inline_fan_out_items: 0,
            redrives: execution.redrives,
        };
        // The deadline decision does not depend on the workflow's steps.
        let workflow = Workflow::without_steps(&execution.workflow_id);
        for effect in engine::decide(&workflow, &state, Event::DeadlineReached)? {
            if let Effect::Respond(answer) = effect {
                settle::settle(store.as_ref(), &self.runtime.signals, &execution.id, answer).await?;
            }
        }
        if message.resume.is_some() {
            // Still running at the deadline: the deadline message becomes its recovery message.
            let recovery = DeadlineMessage { recover: true, ..message };
            let remaining = (recovery_due(&execution, self.runtime.settings.recovery_delay) - now())
                .to_std()
                .unwrap_or(Duration::ZERO);
            let outgoing = Outgoing { body: recovery.to_json(), delay: remaining.min(MAX_QUEUE_DELAY) };
            self.runtime.queue.send(QueueName::Responses, outgoing).await?;
        }
        Ok(())
    }
}

/// When the recovery of an inline first segment comes due.
fn recovery_due(execution: &Execution, recovery_delay: Duration) -> Timestamp {
    execution.started_at + chrono::Duration::from_std(recovery_delay).unwrap_or(chrono::Duration::zero())
}

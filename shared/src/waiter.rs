//! The response waiter owns the clock of synchronous executions: it receives a message
//! delayed to the execution's deadline and, unless a response was settled before, settles
//! the 542 outcome (first writer wins, so a Response step that runs later only records that
//! it came too late). Deadlines beyond the queue's longest delay are reached by re-sending.

use std::time::Duration;

use crate::messages::DeadlineMessage;
use crate::ports::{Outgoing, QueueName};
use crate::record::{SettledResponse, now};
use crate::runner::RunError;
use crate::runtime::Runtime;

#[derive(Clone)]
pub struct Waiter {
    runtime: Runtime,
}

impl Waiter {
    pub fn new(runtime: Runtime) -> Self {
        Waiter { runtime }
    }

    /// Handles one message from the response queue. Ok means: delete the message.
    pub async fn handle(&self, body: &str) -> Result<(), RunError> {
        let message: DeadlineMessage =
            serde_json::from_str(body).map_err(|e| RunError::Poison(format!("malformed deadline message: {e}")))?;
        let store = &self.runtime.store;
        let Some(execution) = store.get_execution(&message.execution_id).await? else {
            tracing::warn!(execution = %message.execution_id, "deadline for an unknown execution; dropped");
            return Ok(());
        };
        let Some(deadline) = execution.response_deadline else {
            return Ok(());
        };
        let remaining = (deadline - now()).to_std().unwrap_or(Duration::ZERO);
        if remaining > Duration::from_millis(100) {
            // Delivered early (the deadline is further than one queue delay): wait again.
            let body = message.to_json();
            self.runtime.queue.send(QueueName::Responses, Outgoing { body, delay: remaining }).await?;
            return Ok(());
        }
        store.settle_response(&execution.id, &SettledResponse::TimedOut { at: now() }).await?;
        Ok(())
    }
}

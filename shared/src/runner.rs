//! The step runner: handles one step message (placeholder, being written).

use crate::runtime::Runtime;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Worth delivering the message again (storage or queue trouble).
    #[error("{0}")]
    Retryable(String),
    /// The message can never be handled (malformed); delivering it again won't help.
    #[error("{0}")]
    Poison(String),
}

#[derive(Clone)]
pub struct Runner {
    runtime: Runtime,
}

impl Runner {
    pub fn new(runtime: Runtime) -> Self {
        Runner { runtime }
    }

    /// Handles one message from the step queue. `receive_count` is how many times it has
    /// been delivered (SQS `ApproximateReceiveCount`). Ok means: delete the message.
    pub async fn handle(&self, body: &str, receive_count: u32) -> Result<(), RunError> {
        let _ = (&self.runtime, body, receive_count);
        Ok(())
    }
}

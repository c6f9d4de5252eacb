//! The response waiter: settles 542 at a synchronous execution's deadline (placeholder).

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
        let _ = (&self.runtime, body);
        Ok(())
    }
}

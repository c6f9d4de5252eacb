//! The queue message bodies. A step message names an execution, a step and an attempt;
//! handling it twice is harmless because step attempts are recorded first-writer-wins.

use serde::{Deserialize, Serialize};

/// On the steps queue: run `attempt` of `step` of execution `execution_id`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StepMessage {
    pub execution_id: String,
    pub step: String,
    pub attempt: u32,
}

/// On the responses queue, delayed to the deadline: settle the synchronous response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeadlineMessage {
    pub execution_id: String,
}

impl StepMessage {
    pub fn to_json(&self) -> String {
        serde_json::json!({
            "executionId": self.execution_id, "step": self.step, "attempt": self.attempt,
        })
        .to_string()
    }
}

impl DeadlineMessage {
    pub fn to_json(&self) -> String {
        serde_json::json!({ "executionId": self.execution_id }).to_string()
    }
}

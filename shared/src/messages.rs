//! The queue message bodies. A step message names an execution, a step, its fan-out scope
//! and an attempt; handling it twice is harmless because step attempts are recorded
//! first-writer-wins and fan-out branches are counted once.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// One enclosing fan-out branch of a step: its index, the fan-out's item count and the item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScopeEntry {
    pub index: u32,
    pub total: u32,
    pub item: Value,
}

/// On the steps queue: run `attempt` of `step` of execution `execution_id`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StepMessage {
    pub execution_id: String,
    pub step: String,
    pub attempt: u32,
    /// The fan-out branches the step runs in, outermost first (empty outside fan-outs).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scope: Vec<ScopeEntry>,
    /// Not before this time (epoch milliseconds): a Delay step's end, reached by re-sending
    /// the message when it is further away than one queue delay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before_ms: Option<i64>,
}

/// On the responses queue, delayed to the deadline: settle the synchronous response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeadlineMessage {
    pub execution_id: String,
}

impl StepMessage {
    /// The first attempt of `step`, outside any fan-out, now.
    pub fn first(execution_id: &str, step: &str) -> StepMessage {
        StepMessage {
            execution_id: execution_id.into(),
            step: step.into(),
            attempt: 1,
            scope: vec![],
            not_before_ms: None,
        }
    }

    pub fn to_json(&self) -> String {
        let mut body = json!({ "executionId": self.execution_id, "step": self.step, "attempt": self.attempt });
        if !self.scope.is_empty() {
            body["scope"] = json!(self.scope);
        }
        if let Some(at) = self.not_before_ms {
            body["notBeforeMs"] = json!(at);
        }
        body.to_string()
    }
}

impl DeadlineMessage {
    pub fn to_json(&self) -> String {
        json!({ "executionId": self.execution_id }).to_string()
    }
}

/// The key a step's records are stored under: its id, plus `@` and the branch indexes of its
/// enclosing fan-outs when it runs inside one (`notify@3`, `leaf@3.5`).
pub fn step_key(step: &str, scope: &[u32]) -> String {
    if scope.is_empty() {
        return step.to_string();
    }
    let indexes: Vec<String> = scope.iter().map(u32::to_string).collect();
    format!("{step}@{}", indexes.join("."))
}

/// The step id of a step key.
pub fn step_of_key(key: &str) -> &str {
    key.split('@').next().unwrap_or(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_message_round_trips_with_and_without_scope() {
        let plain = StepMessage::first("e", "s");
        assert_eq!(serde_json::from_str::<StepMessage>(&plain.to_json()).ok(), Some(plain));
        let scoped = StepMessage {
            scope: vec![ScopeEntry { index: 2, total: 5, item: json!({ "id": 7 }) }],
            not_before_ms: Some(1_800_000_000_000),
            ..StepMessage::first("e", "s")
        };
        assert_eq!(serde_json::from_str::<StepMessage>(&scoped.to_json()).ok(), Some(scoped));
    }

    #[test]
    fn step_keys_name_the_branch_indexes() {
        assert_eq!(step_key("a", &[]), "a");
        assert_eq!(step_key("leaf", &[3, 5]), "leaf@3.5");
        assert_eq!(step_of_key("leaf@3.5"), "leaf");
        assert_eq!(step_of_key("a"), "a");
    }
}

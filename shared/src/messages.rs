//! The queue message bodies. A step message names an execution, a step, its fan-out scope
//! and an attempt; handling it twice is harmless because step attempts are recorded
//! first-writer-wins and fan-out branches are counted once.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::engine::StepKey;

/// One enclosing fan-out branch of a step: its index, the fan-out's item count and the item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScopeEntry {
    pub index: u32,
    pub total: u32,
    pub item: Value,
    /// The branch belongs to a fan-out that runs its branches inline: all of them were
    /// started there, so finishing this one (after a retry sent it to the queue) starts no
    /// other lane's next branch. Absent = false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub inline: bool,
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
    /// Not a run of `step` but the end of its wait: `step` is a Delay step whose `attempt`
    /// is recorded, and the flow goes on after it (at `not_before_ms`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub wake: bool,
    /// Sent by a recovery (or by a segment that one started): fan-out lanes are walked again
    /// from here, each counted branch starting the next one of its lane even if it began (see
    /// [`crate::engine::Carry::Always`]), so a lane that stopped anywhere goes on.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub repair: bool,
}

/// On the responses queue. Delayed to the deadline: settle the synchronous response. With
/// `recover`: the recovery of an execution whose first segment ran inline — if it has not
/// ended, resume it from `resume` (its first step: the step runner walks the recorded steps to
/// where the segment stopped).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeadlineMessage {
    pub execution_id: String,
    /// The step to resume from if the execution has not ended (inline first segments).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume: Option<String>,
    /// This is the recovery message, not the deadline.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub recover: bool,
}

/// On the steps queue, as `{"notify": {...}}`: deliver the failure notification of execution
/// `execution_id` to destination `destination_id` of `project_id` (attempt `attempt`, from
/// 1). Handling it again sends the same notification again (same `webhook-id`): receivers
/// dedupe, deliveries are at least once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NotifyMessage {
    pub project_id: String,
    pub execution_id: String,
    pub destination_id: String,
    pub attempt: u32,
    /// How many times it found its execution not ended yet (notifications are queued just
    /// before the execution is marked failed) and waited. Absent = 0.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub waits: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// The prefix every [`NotifyMessage`] body starts with (how the step runner tells it apart).
pub const NOTIFY_PREFIX: &str = "{\"notify\":";

impl NotifyMessage {
    pub fn to_json(&self) -> String {
        json!({ "notify": self }).to_string()
    }

    /// Reads a body that starts with [`NOTIFY_PREFIX`].
    pub fn from_json(body: &str) -> Result<NotifyMessage, serde_json::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Wrapped {
            notify: NotifyMessage,
        }
        serde_json::from_str::<Wrapped>(body).map(|w| w.notify)
    }
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
            wake: false,
            repair: false,
        }
    }

    /// A recovery's message: `step`, the execution's first, run again from the top (recorded
    /// steps replay), walking fan-out lanes again.
    pub fn resume(execution_id: &str, step: &str) -> StepMessage {
        StepMessage { repair: true, ..StepMessage::first(execution_id, step) }
    }

    /// The key of the step it names.
    pub fn key(&self) -> StepKey {
        StepKey { step: self.step.clone(), scope: self.scope.iter().map(|s| s.index).collect() }
    }

    pub fn to_json(&self) -> String {
        let mut body = json!({ "executionId": self.execution_id, "step": self.step, "attempt": self.attempt });
        if !self.scope.is_empty() {
            body["scope"] = json!(self.scope);
        }
        if let Some(at) = self.not_before_ms {
            body["notBeforeMs"] = json!(at);
        }
        if self.wake {
            body["wake"] = json!(true);
        }
        if self.repair {
            body["repair"] = json!(true);
        }
        body.to_string()
    }
}

impl DeadlineMessage {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| json!({ "executionId": self.execution_id }).to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_message_round_trips_with_and_without_scope() {
        let plain = StepMessage::first("e", "s");
        assert_eq!(serde_json::from_str::<StepMessage>(&plain.to_json()).ok(), Some(plain));
        let scoped = StepMessage {
            scope: vec![ScopeEntry { index: 2, total: 5, item: json!({ "id": 7 }), inline: false }],
            not_before_ms: Some(1_800_000_000_000),
            wake: true,
            repair: true,
            ..StepMessage::first("e", "s")
        };
        assert_eq!(serde_json::from_str::<StepMessage>(&scoped.to_json()).ok(), Some(scoped.clone()));
        assert_eq!(scoped.key().to_string(), "s@2");
    }

    #[test]
    fn a_notify_message_round_trips_and_starts_with_its_prefix() {
        let message = NotifyMessage {
            project_id: "p".into(),
            execution_id: "e".into(),
            destination_id: "d".into(),
            attempt: 3,
            waits: 0,
        };
        let body = message.to_json();
        assert!(body.starts_with(NOTIFY_PREFIX), "{body}");
        assert_eq!(NotifyMessage::from_json(&body).ok(), Some(message.clone()));
        assert!(serde_json::from_str::<StepMessage>(&body).is_err(), "never read as a step message");
        let waited = NotifyMessage { waits: 2, ..message };
        assert_eq!(NotifyMessage::from_json(&waited.to_json()).ok(), Some(waited));
    }
}

//! Execution ids derived from what started them, so that a start is claimed by the
//! conditional create of its execution: a schedule's (project, workflow, user, instant), a
//! poll item's (project, workflow, user, key), a webhook event's (project, integration, event
//! id, workflow, user). However many ticks, redeliveries or retries try, the same start gets
//! the same id, and creating an execution whose id is taken is refused (`AlreadyExists`).
//!
//! The ids are UUIDv7 (time-ordered like every other execution id) whose timestamp is the
//! instant the start is for and whose other 74 bits come from a SHA-256 of the key.

use aws_lc_rs::digest::{SHA256, digest};

use crate::record::Timestamp;

/// The execution id of the start keyed by `parts` (joined unambiguously), for `at`.
pub fn derived_id(at: Timestamp, parts: &[&str]) -> String {
    let mut key = Vec::new();
    for part in parts {
        key.extend_from_slice(&(part.len() as u64).to_be_bytes());
        key.extend_from_slice(part.as_bytes());
    }
    let hash = digest(&SHA256, &key);
    let mut random = [0u8; 10];
    random.copy_from_slice(&hash.as_ref()[..10]);
    let millis = u64::try_from(at.timestamp_millis()).unwrap_or(0);
    uuid::Builder::from_unix_timestamp_millis(millis, &random).into_uuid().to_string()
}

/// The key of a schedule's fire at `instant` (with the project, workflow and user, what its
/// execution id is derived from).
pub fn schedule_key(instant: Timestamp) -> String {
    format!("schedule:{}", instant.timestamp_millis())
}

/// The execution id of a schedule's fire: what the scheduler starts it under.
pub fn schedule_fire(project_id: &str, workflow_id: &str, user_id: &str, instant: Timestamp) -> String {
    derived_id(instant, &[&schedule_key(instant), project_id, workflow_id, user_id])
}

/// A short, fixed-size hash of a poll item's key (what the seen-set keeps).
pub fn key_hash(key: &str) -> String {
    let hash = digest(&SHA256, key.as_bytes());
    hash.as_ref()[..12].iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_key_gets_the_same_id_and_any_other_key_another() {
        let at = chrono::DateTime::from_timestamp_millis(1_800_000_000_000).expect("a test value");
        let id = schedule_fire("p", "w", "u", at);
        assert_eq!(id, schedule_fire("p", "w", "u", at));
        assert_ne!(id, schedule_fire("p", "w", "u2", at));
        assert_ne!(id, schedule_fire("p", "w", "u", at + chrono::Duration::milliseconds(1)));
        // Parts are length-prefixed: moving a character across a boundary is another key.
        assert_ne!(derived_id(at, &["ab", "c"]), derived_id(at, &["a", "bc"]));
        let uuid = uuid::Uuid::parse_str(&id).expect("a test value");
        assert_eq!(uuid.get_version_num(), 7);
        let (seconds, _) = uuid.get_timestamp().expect("a test value").to_unix();
        assert_eq!(seconds, 1_800_000_000);
    }
}

//! Polling (event-based) triggers: at each due fire of the poll's interval
//! (`crate::scheduler`), its request runs for the user — with the user's settings and the
//! integration's credentials, through the same request step and outbound guard as a workflow
//! step — and every item of the answer whose key the user's seen-set lacks starts one
//! execution with `{{trigger.item}}`.
//!
//! Invariants:
//! - The first poll after a user enabled the workflow only records what it sees (unless
//!   `initial: fire`).
//! - An item starts at most once: its execution id is derived from (project, workflow, user,
//!   key) alone, so an item whose start went through before a crash, or that fell out of the
//!   bounded seen-set ([`MAX_SEEN_KEYS`]), is refused by the create; the seen-set is written
//!   after the starts, with a compare and swap.
//! - A poll whose request fails starts nothing and records nothing: the next fire polls again.

use std::collections::HashSet;
use std::sync::Arc;

use serde_json::{Map, Value, json};

use crate::fires::{derived_id, key_hash};
use crate::model::PollInitial;
use crate::model::webhook::at as value_at;
use crate::model::{Step, StepKind, Trigger};
use crate::ports::{Deployment, MAX_SEEN_KEYS, StartError, StoreError};
use crate::record::{Execution, ExecutionStatus, StepStatus, Timestamp, TriggerData, TriggerKind, now};
use crate::runner::Runner;
use crate::start::{self, NewExecution};

/// What one poll did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Polled {
    pub items: usize,
    pub started: usize,
    pub last_execution: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum PollError {
    #[error("the poll request failed: {0}")]
    Request(String),
    #[error("the answer has no list of items at `{0}`")]
    NoItems(String),
    #[error("an item's key cannot be rendered: {0}")]
    Key(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Start(#[from] StartError),
}

/// The UUIDv7 timestamp of poll items' execution ids: fixed, so that an item's id does not
/// depend on which poll saw it.
fn item_epoch() -> Timestamp {
    chrono::DateTime::UNIX_EPOCH
}

/// Runs the poll of `deployment` for `user_id`, due at `at`.
pub async fn run(
    runner: &Runner,
    deployment: &Arc<Deployment>,
    user_id: &str,
    at: Timestamp,
) -> Result<Polled, PollError> {
    let Trigger::Poll(poll) = &deployment.workflow.trigger else { return Ok(Polled::default()) };
    let runtime = runner.runtime();
    let store = runtime.store.as_ref();
    let project_id = &deployment.project_id;
    let workflow = &deployment.workflow;
    let at_ms = at.timestamp_millis().to_string();
    let execution = Execution {
        id: derived_id(at, &["poll-request", project_id, &workflow.id, user_id, &at_ms]),
        project_id: project_id.clone(),
        workflow_id: workflow.id.clone(),
        workflow_version: deployment.version,
        user_id: user_id.to_string(),
        status: ExecutionStatus::Running,
        started_at: now(),
        ended_at: None,
        trigger: TriggerData::of(TriggerKind::Poll, json!({ "polledAt": crate::record::format_timestamp(&at) })),
        response_deadline: None,
        error: None,
        test: false,
        ..Default::default()
    };
    let step = Step {
        id: "poll".to_string(),
        kind: StepKind::Request(poll.request.clone()),
        retries: 0,
        retry_delay: None,
        continue_on_failure: false,
    };
    let executed = runner
        .test_step(&execution, workflow, &step, Map::new())
        .await
        .map_err(|e| PollError::Request(e.to_string()))?;
    let record = executed.record;
    if record.status != StepStatus::Succeeded {
        let message = record.error.as_ref().map(|e| e.message.clone()).unwrap_or_else(|| "no answer".into());
        return Err(PollError::Request(message));
    }
    let answer = record.output.unwrap_or(Value::Null);
    let items = match value_at(&answer, &poll.items) {
        Some(Value::Array(items)) => items.clone(),
        _ => return Err(PollError::NoItems(poll.items.clone())),
    };
    let mut keyed = Vec::with_capacity(items.len());
    for item in items.into_iter().take(MAX_SEEN_KEYS) {
        let key = crate::template::render(&Value::String(poll.key.clone()), &json!({ "item": item }))
            .map_err(|e| PollError::Key(e.to_string()))?;
        let key = match key {
            Value::String(text) => text,
            other => other.to_string(),
        };
        keyed.push((key_hash(&key), item));
    }
    let seen = store.get_seen(project_id, &workflow.id, user_id).await?;
    let known: HashSet<&str> = seen.keys.iter().map(String::as_str).collect();
    let mut fresh: Vec<(String, Value)> = Vec::new();
    let mut this_poll: HashSet<String> = HashSet::new();
    for (hash, item) in keyed {
        if !known.contains(hash.as_str()) && this_poll.insert(hash.clone()) {
            fresh.push((hash, item));
        }
    }
    let mut polled = Polled { items: this_poll.len(), ..Polled::default() };
    let record_only = seen.version == 0 && poll.initial == PollInitial::Skip;
    if !record_only {
        for (hash, item) in &fresh {
            let id = derived_id(item_epoch(), &["poll", project_id, &workflow.id, user_id, hash]);
            let new = NewExecution {
                id: id.clone(),
                deployment: deployment.clone(),
                trigger: TriggerData::of(TriggerKind::Poll, item.clone()),
                user_id: user_id.to_string(),
                test: false,
                caller_waits: false,
                replay_of: None,
            };
            match start::start(runner, new).await {
                Ok(_) => {
                    polled.started += 1;
                    polled.last_execution = Some(id);
                }
                Err(StartError::Store(StoreError::AlreadyExists(_))) => {}
                Err(error) => return Err(error.into()),
            }
        }
    }
    let mut keys = seen.keys.clone();
    keys.extend(fresh.into_iter().map(|(hash, _)| hash));
    if keys.len() > MAX_SEEN_KEYS {
        keys.drain(..keys.len() - MAX_SEEN_KEYS);
    }
    if (seen.version == 0 || keys != seen.keys)
        && !store.put_seen(project_id, &workflow.id, user_id, &keys, seen.version).await?
    {
        // Another poll wrote first; the items both saw start once either way (derived ids).
        tracing::debug!(workflow = %workflow.id, user = user_id, "a concurrent poll recorded its seen-set first");
    }
    Ok(polled)
}

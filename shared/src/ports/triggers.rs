//! The ports of the triggers that do not come from the application: the schedule ledger
//! (schedules and polling triggers), polling's seen-sets, and kept webhook deliveries.
//!
//! Exactly-once starts do not live here: a fire, a poll item and a webhook event start their
//! execution under an id derived from their own key (`crate::fires`), and creating an
//! execution is already a conditional write on its id. The ledger only says what is due.

use std::collections::HashMap;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::StoreError;
use crate::record::Timestamp;

/// One (workflow, user) row of the schedule ledger: when the workflow next fires for the
/// user. A row exists while the user has the workflow enabled (the tick removes one it finds
/// refused); only rows with a `next_fire` are in the due index.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScheduleEntry {
    pub project_id: String,
    pub workflow_id: String,
    pub user_id: String,
    /// The next instant it fires; `None`: parked, not due (never in the due index).
    pub next_fire: Option<Timestamp>,
    /// The deployment version `next_fire` was computed from.
    pub version: u32,
    /// The IANA zone `next_fire` was computed in (`UTC` for interval schedules).
    pub zone: String,
    /// The latest instant that fired (started, or was handed to a delayed fire message).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_fire: Option<Timestamp>,
    /// The execution the latest fire started (what `overlap: skip` checks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_execution_id: Option<String>,
    /// How many fires started an execution.
    #[serde(default)]
    pub fired: u64,
    /// How many fires were skipped because the previous run was still going (`overlap: skip`).
    #[serde(default)]
    pub skipped: u64,
    /// How many fires were missed (older than the catch-up window after an outage).
    #[serde(default)]
    pub missed: u64,
    /// What happened last that did not start an execution, for people reading the ledger:
    /// `skipped: …`, `missed …`, `poll failed: …`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_note: Option<String>,
    pub updated_at: Timestamp,
}

/// Where a page of due entries ended: the next page starts after it. Opaque to callers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DueCursor(pub String);

/// The most entries one [`ScheduleStore::due_schedules`] call returns.
pub const MAX_DUE_PAGE: usize = 1000;

#[async_trait]
pub trait ScheduleStore: Send + Sync {
    /// Writes `entry` (creating or replacing the row of its (project, workflow, user)) and
    /// moves it in the due index.
    async fn put_schedule(&self, entry: &ScheduleEntry) -> Result<(), StoreError>;
    async fn get_schedule(
        &self,
        project_id: &str,
        workflow_id: &str,
        user_id: &str,
    ) -> Result<Option<ScheduleEntry>, StoreError>;
    /// Removes the row; whether there was one.
    async fn delete_schedule(&self, project_id: &str, workflow_id: &str, user_id: &str) -> Result<bool, StoreError>;
    /// Entries of every project whose `next_fire` is at or before `until`, ordered by
    /// `next_fire` (then project, workflow, user), at most `limit` (capped at
    /// [`MAX_DUE_PAGE`]), starting after `after`; with the cursor of the next page if there
    /// may be one. Read from a due index, never by a scan.
    async fn due_schedules(
        &self,
        until: Timestamp,
        after: Option<&DueCursor>,
        limit: usize,
    ) -> Result<(Vec<ScheduleEntry>, Option<DueCursor>), StoreError>;
    /// Replaces the row by `next` only if its stored `next_fire` and `version` are still
    /// `expected`'s (compare and swap: of concurrent ticks that claim one due row, exactly one
    /// advances it); whether it did. A row that is gone is not recreated (false).
    async fn advance_schedule(&self, expected: &ScheduleEntry, next: &ScheduleEntry) -> Result<bool, StoreError>;
    /// The project's rows (of one workflow, if given), by workflow then user; at most `limit`
    /// after the (workflow, user) `after`.
    async fn list_schedules(
        &self,
        project_id: &str,
        workflow_id: Option<&str>,
        after: Option<(&str, &str)>,
        limit: usize,
    ) -> Result<Vec<ScheduleEntry>, StoreError>;
}

/// The most keys a polling trigger remembers per (workflow, user): the oldest are forgotten
/// first. A provider page bigger than this would fire some items again, so polls read at most
/// this many items per run.
pub const MAX_SEEN_KEYS: usize = 2000;

/// What a polling trigger has seen for one (workflow, user): hashes of item keys, oldest
/// first, and a version for compare and swap.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SeenSet {
    /// Hashes of the item keys seen (see `crate::fires::key_hash`), oldest first, at most
    /// [`MAX_SEEN_KEYS`].
    pub keys: Vec<String>,
    /// 0 when nothing was ever stored (the first poll); each successful put increments it.
    pub version: u64,
}

#[async_trait]
pub trait PollStore: Send + Sync {
    /// The seen-set of (project, workflow, user); empty with version 0 if there is none.
    async fn get_seen(&self, project_id: &str, workflow_id: &str, user_id: &str) -> Result<SeenSet, StoreError>;
    /// Stores `keys` (the adapters keep the last [`MAX_SEEN_KEYS`]) as version
    /// `expected_version + 1` only if the stored version is still `expected_version`; whether
    /// it did. Kept across deploys; removed only with [`PollStore::delete_seen`].
    async fn put_seen(
        &self,
        project_id: &str,
        workflow_id: &str,
        user_id: &str,
        keys: &[String],
        expected_version: u64,
    ) -> Result<bool, StoreError>;
    async fn delete_seen(&self, project_id: &str, workflow_id: &str, user_id: &str) -> Result<bool, StoreError>;
}

/// How one event of a webhook delivery was handled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveredEvent {
    /// The provider's event id, if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    /// The event type the workflows subscribe to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_type: Option<String>,
    /// `routed`, `unrouted` (no connected user has the identity it names), `duplicate` (its
    /// event id was delivered before) or `ignored` (no deployed workflow subscribes).
    pub outcome: String,
    /// The identity value it was routed by (e.g. a Slack team id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
    /// The users it was routed to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub users: Vec<String>,
    /// The executions it started.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub executions: Vec<String>,
}

/// One webhook request as received, kept for [`WEBHOOK_RETENTION_DAYS`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookDelivery {
    pub id: String,
    pub project_id: String,
    pub integration: String,
    pub received_at: Timestamp,
    /// Header name (lower case) → value; signature and other secret headers redacted.
    pub headers: std::collections::BTreeMap<String, String>,
    /// The raw body as received (UTF-8; a non-UTF-8 body is refused before it is kept).
    pub body: String,
    pub events: Vec<DeliveredEvent>,
    /// Whether any event was unrouted (what the unrouted listing filters on).
    pub unrouted: bool,
}

/// How long deliveries, and webhook event ids for deduplication, are kept: longer than any
/// provider redelivers (Stripe 3 days, Standard Webhooks about 3 days).
pub const WEBHOOK_RETENTION_DAYS: i64 = 7;

/// How long deliveries and their event ids are kept, in milliseconds.
pub const WEBHOOK_RETENTION_MS: i64 = WEBHOOK_RETENTION_DAYS * 24 * 60 * 60 * 1000;

/// The most event ids one [`WebhookStore::delivered_events`] call looks up (a delivery's
/// events).
pub const MAX_EVENT_IDS: usize = 100;

/// The longest event id kept as it is; longer ones are kept as their hash
/// (`crate::fires::key_hash`).
pub const MAX_EVENT_ID_CHARS: usize = 200;

/// What [`WebhookStore::route_lookup`] reads for one delivery.
#[derive(Debug, Clone, Copy)]
pub struct RouteLookup<'a> {
    pub project_id: &'a str,
    pub integration: &'a str,
    /// At most [`MAX_EVENT_IDS`].
    pub event_ids: &'a [String],
    /// The identity key the integration routes by (None: no event routes).
    pub identity_key: Option<&'a str>,
    /// The identity values of the delivery's events, distinct; at most [`MAX_EVENT_IDS`].
    pub identities: &'a [String],
}

/// What [`WebhookStore::route_lookup`] answers.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Routes {
    /// Per event id, in order: whether a kept delivery named it.
    pub delivered: Vec<bool>,
    /// Per identity value, in order: the users it names.
    pub users: Vec<Vec<String>>,
    /// The choices of every user named.
    pub enablement: HashMap<String, super::Enablement>,
}

#[async_trait]
pub trait WebhookStore: Send + Sync {
    /// Keeps `delivery` (creating or replacing the one of its id), until
    /// [`WEBHOOK_RETENTION_DAYS`] after it was received, and remembers, for as long, the event
    /// ids of its events that are not `duplicate` (what [`WebhookStore::delivered_events`]
    /// answers): in the same transaction where the backend has one (SQLite); right after the
    /// delivery otherwise (DynamoDB).
    async fn put_delivery(&self, delivery: &WebhookDelivery) -> Result<(), StoreError>;
    /// For each of `event_ids` (of `integration`, in `project_id`), whether a delivery kept
    /// within [`WEBHOOK_RETENTION_DAYS`] named it: a redelivery. In order; at most
    /// [`MAX_EVENT_IDS`] ids.
    async fn delivered_events(
        &self,
        project_id: &str,
        integration: &str,
        event_ids: &[String],
    ) -> Result<Vec<bool>, StoreError>;
    /// Everything routing a delivery's events reads, together (one read on SQLite): which of
    /// `event_ids` were delivered (as [`WebhookStore::delivered_events`]), the users each of
    /// `identities` names under `identity_key` (as [`UserStore::users_by_identity`], in
    /// order), and the choices ([`EnablementStore::enablement`]) of every user named. The
    /// default asks `users` one read at a time.
    ///
    /// [`UserStore::users_by_identity`]: super::UserStore::users_by_identity
    /// [`EnablementStore::enablement`]: super::EnablementStore::enablement
    async fn route_lookup(
        &self,
        lookup: &RouteLookup<'_>,
        users: &dyn super::ConnectStore,
    ) -> Result<Routes, StoreError> {
        check_event_ids(lookup.identities)?;
        let delivered = self.delivered_events(lookup.project_id, lookup.integration, lookup.event_ids).await?;
        let mut named = Vec::with_capacity(lookup.identities.len());
        let mut enablement = HashMap::new();
        for value in lookup.identities {
            let found = match lookup.identity_key {
                Some(key) => users.users_by_identity(lookup.project_id, lookup.integration, key, value).await?,
                None => Vec::new(),
            };
            for user in &found {
                if !enablement.contains_key(user) {
                    enablement.insert(user.clone(), users.enablement(lookup.project_id, user).await?);
                }
            }
            named.push(found);
        }
        Ok(Routes { delivered, users: named, enablement })
    }
    async fn get_delivery(&self, project_id: &str, delivery_id: &str) -> Result<Option<WebhookDelivery>, StoreError>;
    /// The project's deliveries, newest first, of one integration if given, only those with
    /// an unrouted event if `unrouted_only`; at most `limit`, received before the delivery
    /// `before` (an id from an earlier page). Expired ones are never listed.
    async fn list_deliveries(
        &self,
        project_id: &str,
        integration: Option<&str>,
        unrouted_only: bool,
        before: Option<&str>,
        limit: usize,
    ) -> Result<Vec<WebhookDelivery>, StoreError>;
}

/// A JSON value as the ledger and delivery records keep it (the adapters' one encoding).
pub fn to_json<T: Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// Reads back what [`to_json`] wrote.
pub fn from_json<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// The one rule that runs the scheduler (AWS: an EventBridge rule firing the `scheduler`
/// function every minute), switched on only while some project has a schedule or poll
/// workflow deployed, so an idle stack pays nothing. Locally there is none.
#[async_trait]
pub trait ScheduleRule: Send + Sync {
    async fn set_enabled(&self, enabled: bool) -> Result<(), StoreError>;
    async fn is_enabled(&self) -> Result<bool, StoreError>;
}

/// `advance_schedule` replaces one row by a new state of the same row: the adapters' check
/// that `next` is that row.
pub fn check_same_row(expected: &ScheduleEntry, next: &ScheduleEntry) -> Result<(), StoreError> {
    let key = |e: &ScheduleEntry| (e.project_id.clone(), e.workflow_id.clone(), e.user_id.clone());
    if key(expected) != key(next) {
        return Err(StoreError::Corrupt(format!(
            "advance_schedule of {:?} was given the row of {:?}",
            key(expected),
            key(next)
        )));
    }
    Ok(())
}

/// The keys a seen-set keeps of `keys`: the last [`MAX_SEEN_KEYS`].
pub fn newest_seen_keys(keys: &[String]) -> &[String] {
    &keys[keys.len().saturating_sub(MAX_SEEN_KEYS)..]
}

/// Refuses a [`WebhookStore::delivered_events`] call over [`MAX_EVENT_IDS`] ids.
pub fn check_event_ids(event_ids: &[String]) -> Result<(), StoreError> {
    if event_ids.len() > MAX_EVENT_IDS {
        return Err(StoreError::TooLarge(format!("{} event ids; at most {MAX_EVENT_IDS}", event_ids.len())));
    }
    Ok(())
}

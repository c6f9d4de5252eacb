//! The idempotency port: a client's `Idempotency-Key` claimed once per scope with a
//! conditional write, and remembered with what the first request was answered.
//!
//! Invariant: a record is *live* until its `expires_at` (inclusive) and absent after it, to
//! every call: an expired record is never returned, and a claim replaces it. Of any number of
//! concurrent claims of one key, exactly one writes its record.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{FirstWrite, StoreError};
use crate::record::Timestamp;

/// What an idempotency key is scoped to: one project, one route, one caller. The same key
/// sent by another user, to another workflow or in another project is another key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey {
    pub project_id: String,
    /// The route: `trigger:<workflowId>`, `sdk-events` or `api-events`.
    pub route: String,
    /// Who sent it: the user id (user-token routes) or the project (the API-key route).
    pub caller: String,
    /// The client's `Idempotency-Key`: 1 to 255 visible ASCII characters.
    pub key: String,
}

/// What a repeat of the request is answered with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum StoredAnswer {
    /// The same status and JSON body every time (an asynchronous start, app events).
    #[serde(rename_all = "camelCase")]
    Fixed { status: u16, body: Value },
    /// What is settled for this synchronous execution (a Response step's answer, or 542).
    #[serde(rename_all = "camelCase")]
    Settled { execution_id: String },
}

/// Where the claimed request is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimState {
    /// Claimed; its start is under way. The record lives only a short lease, so a claimant
    /// that died cannot block the key for long.
    Pending,
    /// Started: the answer stands, for the whole retention.
    Done,
}

impl ClaimState {
    pub fn as_str(self) -> &'static str {
        match self {
            ClaimState::Pending => "pending",
            ClaimState::Done => "done",
        }
    }

    pub fn parse(text: &str) -> Result<ClaimState, StoreError> {
        match text {
            "pending" => Ok(ClaimState::Pending),
            "done" => Ok(ClaimState::Done),
            other => Err(StoreError::Corrupt(format!("unknown idempotency claim state `{other}`"))),
        }
    }
}

/// One claimed key.
#[derive(Debug, Clone, PartialEq)]
pub struct IdempotencyRecord {
    /// The hash of the claiming request (method, path, query, body): a repeat must match it.
    pub request_hash: String,
    pub answer: StoredAnswer,
    /// The claim's own token: only its holder completes or releases it.
    pub token: String,
    pub state: ClaimState,
    pub claimed_at: Timestamp,
    /// Live until then (to the millisecond), absent after.
    pub expires_at: Timestamp,
}

#[async_trait]
pub trait IdempotencyStore: Send + Sync {
    /// Writes `record` for `key` unless a live record is there: `Written`, or `Existing` with
    /// the live record, unchanged. An expired record is replaced as if absent. Of concurrent
    /// claims of one key, exactly one is `Written`.
    async fn claim_key(
        &self,
        key: &IdempotencyKey,
        record: &IdempotencyRecord,
    ) -> Result<FirstWrite<IdempotencyRecord>, StoreError>;
    /// The live record of `key`; None when there is none or it has expired.
    async fn get_key(&self, key: &IdempotencyKey) -> Result<Option<IdempotencyRecord>, StoreError>;
    /// Marks the claim `token` of `key` [`ClaimState::Done`], live until `expires_at`.
    /// Returns false, changing nothing, when the record is not that claim's any more (it was
    /// released, or lapsed and was claimed again).
    async fn complete_key(&self, key: &IdempotencyKey, token: &str, expires_at: Timestamp) -> Result<bool, StoreError>;
    /// Removes the claim `token` of `key`, so that the key can be claimed again. Returns
    /// false, changing nothing, when the record is not that claim's.
    async fn release_key(&self, key: &IdempotencyKey, token: &str) -> Result<bool, StoreError>;
}

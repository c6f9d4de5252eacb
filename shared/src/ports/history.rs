//! Task History: a project's executions listed newest first, filtered, paged by position.
//!
//! Every filter is served by an index on both adapters (SQLite indexes; DynamoDB global
//! secondary indexes, `infra/dynamodb.md`), so a page costs the same at the first page and at
//! the ten-thousandth. Positions are exact: a page starts strictly after the last row of the
//! page before, and rows that start meanwhile never shift a page (they are newer than every
//! position handed out).

use std::collections::BTreeMap;

use async_trait::async_trait;

use super::StoreError;
use crate::record::{Execution, ExecutionError, ExecutionStatus, Timestamp, TriggerKind};

/// The most search attributes a workflow declares.
pub const MAX_SEARCH_ATTRIBUTES: usize = 5;
/// The longest search attribute value that is indexed (bytes of UTF-8). A longer value is
/// kept out of the index (and out of the record's `search`): it could never be typed exactly.
pub const MAX_SEARCH_VALUE_BYTES: usize = 256;
/// The most rows one page holds.
pub const MAX_HISTORY_PAGE: usize = 1_000;

/// What a listing keeps. Every field set narrows it (they combine with AND); the search
/// attributes match exactly.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct HistoryFilter {
    pub workflow_id: Option<String>,
    pub integration: Option<String>,
    pub user_id: Option<String>,
    pub status: Option<ExecutionStatus>,
    pub trigger: Option<TriggerKind>,
    /// Started at or after.
    pub started_from: Option<Timestamp>,
    /// Started strictly before.
    pub started_before: Option<Timestamp>,
    /// Search attribute equalities.
    pub search: BTreeMap<String, String>,
    /// Executions whose id starts with this. With it, rows come in id order, highest first
    /// (newest first for the time-ordered ids executions get), instead of start order.
    pub id_prefix: Option<String>,
}

impl HistoryFilter {
    /// Whether `e` passes every filter (what an adapter checks on rows its index did not
    /// narrow by itself).
    pub fn keeps(&self, e: &ExecutionSummary) -> bool {
        let eq = |want: &Option<String>, have: &str| want.as_deref().is_none_or(|w| w == have);
        eq(&self.workflow_id, &e.workflow_id)
            && eq(&self.user_id, &e.user_id)
            && self.integration.as_deref().is_none_or(|w| e.integration.as_deref() == Some(w))
            && self.status.is_none_or(|s| s == e.status)
            && self.trigger.is_none_or(|t| t == e.trigger)
            && self.started_from.is_none_or(|from| e.started_at >= from)
            && self.started_before.is_none_or(|before| e.started_at < before)
            && self.id_prefix.as_deref().is_none_or(|prefix| e.id.starts_with(prefix))
            && self.search.iter().all(|(k, v)| e.search.get(k) == Some(v))
    }
}

/// Where a page ends: the last row's start and id. The next page holds the rows after it in
/// listing order: (started_at, id) below it, or with an id prefix, ids below it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryPosition {
    pub started_at: Timestamp,
    pub id: String,
}

impl HistoryPosition {
    pub fn of(e: &ExecutionSummary) -> Self {
        HistoryPosition { started_at: e.started_at, id: e.id.clone() }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct HistoryQuery {
    pub project_id: String,
    pub filter: HistoryFilter,
    /// Rows strictly after this position (the previous page's `next`).
    pub after: Option<HistoryPosition>,
    /// 1 ..= [`MAX_HISTORY_PAGE`].
    pub limit: usize,
}

/// One row of a listing: what an execution is, without its trigger data.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecutionSummary {
    pub id: String,
    pub project_id: String,
    pub workflow_id: String,
    pub workflow_version: u32,
    pub user_id: String,
    pub integration: Option<String>,
    pub status: ExecutionStatus,
    pub trigger: TriggerKind,
    pub started_at: Timestamp,
    pub ended_at: Option<Timestamp>,
    pub error: Option<ExecutionError>,
    pub search: BTreeMap<String, String>,
    pub replay_of: Option<String>,
    pub redrives: u32,
    pub test: bool,
}

impl ExecutionSummary {
    pub fn of(e: &Execution) -> Self {
        ExecutionSummary {
            id: e.id.clone(),
            project_id: e.project_id.clone(),
            workflow_id: e.workflow_id.clone(),
            workflow_version: e.workflow_version,
            user_id: e.user_id.clone(),
            integration: e.integration.clone(),
            status: e.status,
            trigger: e.trigger.kind,
            started_at: e.started_at,
            ended_at: e.ended_at,
            error: e.error.clone(),
            search: e.search.clone(),
            replay_of: e.replay_of.clone(),
            redrives: e.redrives,
            test: e.test,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct HistoryPage {
    pub executions: Vec<ExecutionSummary>,
    /// Where the next page starts; `None` when this page is the last.
    pub next: Option<HistoryPosition>,
}

#[async_trait]
pub trait HistoryStore: Send + Sync {
    /// The rows of `query.project_id` that pass `query.filter`, newest first (see
    /// [`HistoryFilter::id_prefix`] for the one other order), at most `query.limit`.
    async fn list_executions(&self, query: &HistoryQuery) -> Result<HistoryPage, StoreError>;
    /// The executions that replay `execution_id` (`replay_of`), oldest first, at most `limit`.
    async fn replays_of(&self, project_id: &str, execution_id: &str, limit: usize) -> Result<Vec<String>, StoreError>;
}

/// The most executions one bulk action takes (a larger selection is refused: narrow it).
pub const MAX_BULK_EXECUTIONS: u64 = 10_000;

/// The most per-execution errors a bulk job keeps (the counts go on).
pub const MAX_BULK_ERRORS: usize = 20;

/// A bulk replay, redrive or cancel over a history filter, worked through page by page by
/// queue messages; `revision` orders its updates (compare and swap).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BulkJob {
    pub project_id: String,
    pub bulk_id: String,
    /// `replay`, `redrive` or `cancel`.
    pub action: String,
    /// The filter as the API takes it (`workflow`, `status`, `search`...), with `until` fixed
    /// at the job's creation so that what the job starts is never part of its selection.
    pub filter: serde_json::Value,
    /// For a replay: `live` or `original`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    pub created_at: Timestamp,
    /// `running` or `done`.
    pub state: String,
    pub total: u64,
    pub done: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub skipped: u64,
    pub errors: Vec<BulkError>,
    /// Where the next page starts (the last execution handled): `(started_at ms, id)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<(i64, String)>,
    pub revision: u64,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BulkError {
    pub execution_id: String,
    pub message: String,
}

#[async_trait]
pub trait BulkStore: Send + Sync {
    /// Creates `job`; `AlreadyExists` if its id is taken.
    async fn create_bulk_job(&self, job: &BulkJob) -> Result<(), StoreError>;
    async fn get_bulk_job(&self, project_id: &str, bulk_id: &str) -> Result<Option<BulkJob>, StoreError>;
    /// Replaces the job if its stored revision is `job.revision - 1`; false (nothing changed)
    /// when another update came first.
    async fn update_bulk_job(&self, job: &BulkJob) -> Result<bool, StoreError>;
}

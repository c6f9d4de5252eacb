//! Bulk replay, redrive and cancel over a Task History filter.
//!
//! `POST /projects/{p}/executions/bulk` counts what the filter selects (a dry run answers the
//! count and a sample and stops there), then records a [`BulkJob`] and sends one message to
//! the steps queue. Each message handles one page of [`BULK_PAGE`] executions, newest first,
//! records the progress (compare and swap on the job's revision) and sends the next, until the
//! listing is exhausted: the same on `sluice dev` and on AWS, where no request could last
//! long enough for ten thousand executions.
//!
//! Invariants: the job's filter is fixed when it is created (`until` = its creation), so
//! executions the job starts (replays) are never part of its own selection; a page's position
//! is exact, so executions whose status the job changes are neither skipped nor handled twice
//! by the listing; a redelivered page repeats its actions harmlessly — a replay's id is derived
//! from (job, original), so a second create is refused, and a second redrive or cancel finds
//! the status changed and is counted as skipped.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::api::actions::{self, ReplayVersion};
use crate::error::ApiError;
use crate::ports::{
    BulkError, BulkJob, ExecutionSummary, HistoryFilter, HistoryPosition, HistoryQuery, MAX_BULK_ERRORS,
    MAX_BULK_EXECUTIONS, Outgoing, QueueName, StoreError,
};
use crate::record::{ExecutionStatus, format_timestamp};
use crate::runner::{RunError, Runner};

/// Executions handled per message.
pub const BULK_PAGE: usize = 25;
/// How bulk messages start (the step runner routes them here).
pub const BULK_PREFIX: &str = "{\"bulk\":";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct BulkMessage {
    project_id: String,
    bulk_id: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Wrapped {
    bulk: BulkMessage,
}

/// The message that handles the next page of job `bulk_id`.
pub fn message(project_id: &str, bulk_id: &str) -> String {
    json!({ "bulk": BulkMessage { project_id: project_id.into(), bulk_id: bulk_id.into() } }).to_string()
}

/// The bulk actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Replay,
    Redrive,
    Cancel,
}

impl Action {
    pub fn parse(text: &str) -> Option<Action> {
        match text {
            "replay" => Some(Action::Replay),
            "redrive" => Some(Action::Redrive),
            "cancel" => Some(Action::Cancel),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Replay => "replay",
            Action::Redrive => "redrive",
            Action::Cancel => "cancel",
        }
    }

    /// Whether the action applies to `e` as listed (it is checked again when it is taken).
    pub fn applies_to(self, e: &ExecutionSummary) -> bool {
        match self {
            Action::Replay => !e.test,
            Action::Redrive => e.status == ExecutionStatus::Failed && !e.test,
            Action::Cancel => matches!(e.status, ExecutionStatus::Running | ExecutionStatus::Waiting),
        }
    }
}

/// The API filter object (`{"workflow": ..., "search": {"k": "v"}, ...}`) as query parameters.
pub fn filter_params(filter: &Value) -> Result<BTreeMap<String, String>, ApiError> {
    let Value::Object(fields) = filter else {
        return Err(ApiError::BadRequest("`filter` must be an object of the list's filters".into()));
    };
    let mut params = BTreeMap::new();
    for (name, value) in fields {
        match (name.as_str(), value) {
            ("search", Value::Object(pairs)) => {
                for (key, value) in pairs {
                    let Value::String(text) = value else {
                        return Err(ApiError::BadRequest(format!("`filter.search.{key}` must be a string")));
                    };
                    params.insert(format!("search.{key}"), text.clone());
                }
            }
            ("search", _) => return Err(ApiError::BadRequest("`filter.search` must be an object".into())),
            (
                "workflow" | "integration" | "user" | "status" | "trigger" | "since" | "until" | "idPrefix",
                Value::String(text),
            ) => {
                params.insert(name.clone(), text.clone());
            }
            ("workflow" | "integration" | "user" | "status" | "trigger" | "since" | "until" | "idPrefix", _) => {
                return Err(ApiError::BadRequest(format!("`filter.{name}` must be a string")));
            }
            (other, _) => {
                return Err(ApiError::BadRequest(format!(
                    "unknown filter `{other}`; the filters are workflow, integration, user, status, trigger, since, until, search, idPrefix"
                )));
            }
        }
    }
    Ok(params)
}

/// `filter` written back in the API's form, its time range absolute.
pub fn filter_value(filter: &HistoryFilter) -> Value {
    let mut value = json!({});
    let mut set = |name: &str, v: Option<String>| {
        if let Some(v) = v {
            value[name] = json!(v);
        }
    };
    set("workflow", filter.workflow_id.clone());
    set("integration", filter.integration.clone());
    set("user", filter.user_id.clone());
    set("status", filter.status.map(|s| s.as_str().to_string()));
    set("trigger", filter.trigger.map(|t| t.as_str().to_string()));
    set("since", filter.started_from.as_ref().map(format_timestamp));
    set("until", filter.started_before.as_ref().map(format_timestamp));
    set("idPrefix", filter.id_prefix.clone());
    if !filter.search.is_empty() {
        value["search"] = json!(filter.search);
    }
    value
}

/// What `action` over `filter` selects: how many it applies to (stopping past
/// [`MAX_BULK_EXECUTIONS`]: `capped`), and the first `sample` of them.
pub async fn count(
    runner: &Runner,
    project_id: &str,
    filter: &HistoryFilter,
    action: Action,
    sample: usize,
) -> Result<(u64, bool, Vec<ExecutionSummary>), StoreError> {
    let store = &runner.runtime().store;
    let (mut count, mut rows) = (0u64, Vec::new());
    let mut after: Option<HistoryPosition> = None;
    loop {
        let query = HistoryQuery { project_id: project_id.to_string(), filter: filter.clone(), after, limit: 1_000 };
        let page = store.list_executions(&query).await?;
        for e in page.executions.iter().filter(|e| action.applies_to(e)) {
            count += 1;
            if rows.len() < sample {
                rows.push(e.clone());
            }
            if count > MAX_BULK_EXECUTIONS {
                return Ok((MAX_BULK_EXECUTIONS, true, rows));
            }
        }
        match page.next {
            Some(next) => after = Some(next),
            None => return Ok((count, false, rows)),
        }
    }
}

/// Handles one page of the job a bulk message names (see the module doc).
pub async fn handle(runner: &Runner, body: &str) -> Result<(), RunError> {
    let message = serde_json::from_str::<Wrapped>(body)
        .map_err(|e| RunError::Poison(format!("malformed bulk message: {e}")))?
        .bulk;
    let runtime = runner.runtime();
    let Some(mut job) = runtime.store.get_bulk_job(&message.project_id, &message.bulk_id).await? else {
        tracing::warn!(bulk = %message.bulk_id, "bulk message for a job that does not exist; dropped");
        return Ok(());
    };
    if job.state == "done" {
        return Ok(());
    }
    let action = Action::parse(&job.action).ok_or_else(|| RunError::Poison(format!("bulk action `{}`", job.action)))?;
    let params = filter_params(&job.filter).map_err(|e| RunError::Poison(e.to_string()))?;
    let filter = crate::api::history_filter(&params, job.created_at).map_err(|e| RunError::Poison(e.to_string()))?;
    let version = match job.version.as_deref() {
        Some("original") => ReplayVersion::Original,
        _ => ReplayVersion::Live,
    };
    let after = match &job.after {
        Some((ms, id)) => Some(HistoryPosition {
            started_at: chrono::DateTime::from_timestamp_millis(*ms)
                .ok_or_else(|| RunError::Poison("bulk job position out of range".into()))?,
            id: id.clone(),
        }),
        None => None,
    };
    let query = HistoryQuery { project_id: job.project_id.clone(), filter, after, limit: BULK_PAGE };
    let page = runtime.store.list_executions(&query).await?;
    for row in &page.executions {
        job.after = Some((row.started_at.timestamp_millis(), row.id.clone()));
        if !action.applies_to(row) {
            continue;
        }
        if job.done >= MAX_BULK_EXECUTIONS {
            break;
        }
        job.done += 1;
        match act(runner, &job, action, version, &row.id).await {
            Ok(()) => job.succeeded += 1,
            Err(ApiError::WrongStatus { .. }) | Err(ApiError::NotFound(_)) => job.skipped += 1,
            Err(error) if error.is_retryable() => return Err(RunError::Retryable(error.to_string())),
            Err(error) => {
                job.failed += 1;
                if job.errors.len() < MAX_BULK_ERRORS {
                    let message = if error.status().is_server_error() {
                        "internal error; see the server logs".to_string()
                    } else {
                        error.to_string()
                    };
                    job.errors.push(BulkError { execution_id: row.id.clone(), message });
                }
            }
        }
    }
    let more = page.next.is_some() && job.done < MAX_BULK_EXECUTIONS;
    if !more {
        job.state = "done".into();
    }
    job.revision += 1;
    if !runtime.store.update_bulk_job(&job).await? {
        // A redelivery of this message got there first; it goes on from where it is.
        tracing::debug!(bulk = %job.bulk_id, "bulk page recorded by another delivery");
        return Ok(());
    }
    if more {
        let body = message_for(&job);
        runtime.queue.send(QueueName::Steps, Outgoing { body, delay: Duration::ZERO }).await?;
    } else {
        tracing::info!(bulk = %job.bulk_id, action = %job.action, done = job.done, failed = job.failed, "bulk job done");
    }
    Ok(())
}

fn message_for(job: &BulkJob) -> String {
    message(&job.project_id, &job.bulk_id)
}

/// Takes `action` on execution `execution_id`.
async fn act(
    runner: &Runner,
    job: &BulkJob,
    action: Action,
    version: ReplayVersion,
    execution_id: &str,
) -> Result<(), ApiError> {
    let execution = runner
        .runtime()
        .store
        .get_execution(execution_id)
        .await?
        .filter(|e| e.project_id == job.project_id)
        .ok_or_else(|| ApiError::NotFound(format!("execution `{execution_id}` is gone")))?;
    match action {
        Action::Replay => {
            let id = crate::fires::derived_id(job.created_at, &["bulk-replay", &job.bulk_id, execution_id]);
            match actions::replay_one(runner, &execution, version, Some(id)).await {
                // A redelivered page: this replay was started before.
                Err(ApiError::Store(StoreError::AlreadyExists(_))) => Ok(()),
                other => other.map(|_| ()),
            }
        }
        Action::Redrive => actions::redrive_one(runner, &execution).await.map(|_| ()),
        Action::Cancel => actions::cancel_one(runner, &execution).await,
    }
}

/// The job as `GET /projects/{p}/bulk/{id}` shows it.
pub fn view(job: &BulkJob) -> Value {
    json!({
        "bulkId": job.bulk_id,
        "action": job.action,
        "filter": job.filter,
        "version": job.version,
        "createdAt": format_timestamp(&job.created_at),
        "state": job.state,
        "total": job.total,
        "done": job.done,
        "succeeded": job.succeeded,
        "failed": job.failed,
        "skipped": job.skipped,
        "errors": job.errors,
    })
}

//! Retention on SQLite: an execution past its retention reads as absent at once, and
//! [`Sqlite::delete_expired`] (run by `sluice dev` every minute) deletes its rows.
//!
//! Invariants: one batch of executions is deleted with every row that names them (step
//! attempts, the settled response, files, fan-out items and branches, search rows) in one
//! immediate transaction, so no reader ever sees half an execution; batches are bounded
//! ([`EXPIRY_BATCH`] executions), so the writer is never held for long; expired executions
//! are found through `executions_by_start` and their search rows through
//! `execution_search_by_execution` (migration 14), never by a scan.

use std::time::Duration;

use rusqlite::{TransactionBehavior, params};

use super::{Cached, Sqlite, backend};
use crate::ports::{HistoryQuery, StoreError};
use crate::record::{Execution, Timestamp};

/// The most executions one transaction of [`Sqlite::delete_expired`] deletes.
pub const EXPIRY_BATCH: usize = 500;

/// The tables holding rows of an execution, each with the column naming it.
const EXECUTION_TABLES: [(&str, &str); 7] = [
    ("step_attempts", "execution_id"),
    ("responses", "execution_id"),
    ("files", "execution_id"),
    ("fan_out_items", "execution_id"),
    ("fan_out_branches", "execution_id"),
    ("execution_search", "execution_id"),
    ("executions", "id"),
];

/// What one [`Sqlite::delete_expired`] call deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Expired {
    /// Executions deleted with all their rows.
    pub executions: usize,
    /// Files deleted because their execution no longer exists.
    pub orphan_files: usize,
}

impl Sqlite {
    /// Sets how long an execution is kept after its start (default 30 days, see
    /// [`crate::retention`]): from then on it reads as absent, and [`Sqlite::delete_expired`]
    /// with this retention deletes it.
    pub fn with_retention(mut self, retention: Duration) -> Sqlite {
        self.retention = retention;
        self
    }

    /// The retention this store reads with.
    pub fn retention(&self) -> Duration {
        self.retention
    }

    /// `execution`, unless it is past this store's retention.
    pub(super) fn unexpired(&self, execution: Option<Execution>) -> Option<Execution> {
        let now = crate::record::now();
        execution.filter(|e| !crate::retention::is_expired(&e.started_at, self.retention, &now))
    }

    /// `query`, its start range narrowed to the executions within this store's retention.
    pub(super) fn within_retention(&self, query: &HistoryQuery) -> HistoryQuery {
        let cutoff = crate::retention::cutoff(&crate::record::now(), self.retention);
        let mut query = query.clone();
        // Kept means started strictly after the cutoff: from the next millisecond on.
        let from = cutoff + chrono::Duration::milliseconds(1);
        query.filter.started_from = Some(query.filter.started_from.map_or(from, |f| f.max(from)));
        query
    }

    /// Deletes up to `max_rows` executions started at or before `now - retention`, with every
    /// row of theirs, [`EXPIRY_BATCH`] per transaction, oldest first; then up to `max_rows`
    /// files whose execution no longer exists (a file is stored by a running execution, so
    /// such a file was left by an execution deleted some other way).
    pub async fn delete_expired(
        &self,
        now: Timestamp,
        retention: Duration,
        max_rows: usize,
    ) -> Result<Expired, StoreError> {
        let cutoff_ms = crate::retention::cutoff(&now, retention).timestamp_millis();
        let mut expired = Expired::default();
        while expired.executions < max_rows {
            let batch = EXPIRY_BATCH.min(max_rows - expired.executions);
            let deleted = self.call(move |conn| delete_batch(conn, cutoff_ms, batch)).await?;
            expired.executions += deleted;
            if deleted < batch {
                break;
            }
        }
        expired.orphan_files = self
            .call(move |conn| {
                let sql = format!(
                    "DELETE FROM files WHERE rowid IN (
                         SELECT rowid FROM files WHERE NOT EXISTS (SELECT 1 FROM executions WHERE id = execution_id)
                         LIMIT {max_rows})"
                );
                conn.run(&sql, []).map_err(backend)
            })
            .await?;
        Ok(expired)
    }
}

/// Deletes the (at most `batch`) oldest executions started at or before `cutoff_ms` and their
/// rows in one transaction; how many executions.
fn delete_batch(conn: &mut rusqlite::Connection, cutoff_ms: i64, batch: usize) -> Result<usize, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(backend)?;
    let ids: Vec<String> = {
        let sql =
            format!("SELECT id FROM executions INDEXED BY executions_by_start WHERE started_at_ms <= ?1 LIMIT {batch}");
        let mut statement = tx.prepare_cached(&sql).map_err(backend)?;
        let rows = statement.query_map(params![cutoff_ms], |row| row.get(0)).map_err(backend)?;
        rows.collect::<Result<_, _>>().map_err(backend)?
    };
    for (table, column) in EXECUTION_TABLES {
        let sql = format!("DELETE FROM {table} WHERE {column} = ?1");
        let mut statement = tx.prepare_cached(&sql).map_err(backend)?;
        for id in &ids {
            statement.execute(params![id]).map_err(backend)?;
        }
    }
    tx.commit().map_err(backend)?;
    Ok(ids.len())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use bytes::Bytes;
    use serde_json::json;

    use super::*;
    use crate::engine::StepKey;
    use crate::ports::{ExecutionStore, FanOutStore, FileStore};
    use crate::record::{
        ExecutionStatus, HttpResponse, SettledResponse, StepAttempt, StepStatus, TriggerData, TriggerKind,
    };
    use crate::retention::DEFAULT_RETENTION;

    const DAY_MS: i64 = 86_400_000;

    fn at(ms: i64) -> Timestamp {
        chrono::DateTime::from_timestamp_millis(ms).expect("in range")
    }

    /// Creates an execution started at `started_ms` with a row in every table that holds
    /// execution rows: a step attempt, a response, a file, fan-out items and a branch, a search row.
    async fn seed(db: &Sqlite, id: &str, started_ms: i64) {
        let e = Execution {
            id: id.to_string(),
            project_id: "p".into(),
            workflow_id: "w".into(),
            workflow_version: 1,
            user_id: "u".into(),
            status: ExecutionStatus::Running,
            started_at: at(started_ms),
            trigger: TriggerData::of(TriggerKind::Request, json!({})),
            search: BTreeMap::from([("email".to_string(), "a@example.com".to_string())]),
            ..Default::default()
        };
        db.create_execution(&e).await.expect("create");
        let attempt = StepAttempt {
            step: "s".into(),
            attempt: 1,
            status: StepStatus::Succeeded,
            input: json!({}),
            output: Some(json!(1)),
            error: None,
            started_at: at(started_ms),
            ended_at: at(started_ms + 1),
            logs: Vec::new(),
        };
        db.record_step(id, &attempt).await.expect("step");
        let response = SettledResponse::WorkflowEnded {
            response: HttpResponse { status: 200, headers: BTreeMap::new(), body: json!("ok"), file: None },
            at: at(started_ms + 2),
        };
        db.settle_response(id, &response).await.expect("response");
        db.put_file(id, "a.txt", "text/plain", Bytes::from_static(b"hi")).await.expect("file");
        let key = StepKey::top("f");
        db.put_fan_out_items(id, &key, &[json!(1), json!(2)]).await.expect("items");
        db.complete_branch(id, &key, 0, 2, &json!("r"), "by").await.expect("branch");
    }

    /// How many rows of execution `id` each table holds.
    async fn rows(db: &Sqlite, id: &str) -> Vec<(&'static str, i64)> {
        let id = id.to_string();
        db.call(move |conn| {
            EXECUTION_TABLES
                .iter()
                .map(|(table, column)| {
                    let sql = format!("SELECT count(*) FROM {table} WHERE {column} = ?1");
                    conn.row(&sql, params![id], |row| row.get(0)).map(|n| (*table, n)).map_err(backend)
                })
                .collect()
        })
        .await
        .expect("count rows")
    }

    #[tokio::test]
    async fn delete_expired_removes_every_row_of_an_expired_execution_and_nothing_younger() {
        let db = Sqlite::in_memory().expect("database");
        let now = crate::record::now();
        let retention_ms = i64::try_from(DEFAULT_RETENTION.as_millis()).expect("fits");
        let (old, edge, young) = ("old", "edge", "young");
        seed(&db, old, now.timestamp_millis() - retention_ms - DAY_MS).await;
        // Exactly at the cutoff: expired (a retention of 30 days keeps it for 30 days, no more).
        seed(&db, edge, now.timestamp_millis() - retention_ms).await;
        seed(&db, young, now.timestamp_millis() - retention_ms + 1).await;
        for id in [old, edge, young] {
            assert!(rows(&db, id).await.iter().all(|(_, n)| *n >= 1), "seeded a row of {id} in every table");
        }
        let young_rows = rows(&db, young).await;
        // A file whose execution is gone (deleted some other way) is collected too.
        db.put_file("gone", "b.txt", "text/plain", Bytes::from_static(b"x")).await.expect("orphan file");

        let expired = db.delete_expired(now, DEFAULT_RETENTION, 1_000).await.expect("delete");
        assert_eq!(expired, Expired { executions: 2, orphan_files: 1 });
        for id in [old, edge] {
            assert_eq!(rows(&db, id).await, EXECUTION_TABLES.map(|(t, _)| (t, 0)).to_vec(), "{id} is gone");
        }
        assert_eq!(rows(&db, young).await, young_rows, "young is kept whole");
        let orphans: i64 = db
            .call(|conn| {
                conn.row("SELECT count(*) FROM files WHERE execution_id = 'gone'", [], |r| r.get(0)).map_err(backend)
            })
            .await
            .expect("count");
        assert_eq!(orphans, 0);
        assert_eq!(db.delete_expired(now, DEFAULT_RETENTION, 1_000).await.expect("again"), Expired::default());
    }

    #[tokio::test]
    async fn delete_expired_stops_at_max_rows_across_batches() {
        let db = Sqlite::in_memory().expect("database");
        let now = crate::record::now();
        let old_ms = now.timestamp_millis() - 40 * DAY_MS;
        let count = EXPIRY_BATCH + 3;
        db.call(move |conn| {
            let tx = conn.transaction().map_err(backend)?;
            for i in 0..count {
                tx.run(
                    "INSERT INTO executions (id, project_id, workflow_id, workflow_version, user_id, status,
                         started_at_ms, trigger)
                     VALUES (?1, 'p', 'w', 1, 'u', 'succeeded', ?2, '{}')",
                    params![format!("e{i}"), old_ms + i as i64],
                )
                .map_err(backend)?;
            }
            tx.commit().map_err(backend)
        })
        .await
        .expect("seed");
        let first = db.delete_expired(now, DEFAULT_RETENTION, EXPIRY_BATCH + 1).await.expect("first");
        assert_eq!(first.executions, EXPIRY_BATCH + 1, "two batches, the second cut at max_rows");
        let rest = db.delete_expired(now, DEFAULT_RETENTION, 1_000).await.expect("rest");
        assert_eq!(rest.executions, 2);
    }

    #[tokio::test]
    async fn reads_skip_an_execution_past_the_retention_before_it_is_deleted() {
        let db = Sqlite::in_memory().expect("database").with_retention(Duration::from_secs(86_400));
        let now_ms = crate::record::now().timestamp_millis();
        seed(&db, "old", now_ms - DAY_MS - 1_000).await;
        seed(&db, "young", now_ms - DAY_MS + 60_000).await;
        assert!(db.get_execution("old").await.expect("get").is_none());
        assert!(db.get_execution("young").await.expect("get").is_some());
        let query = HistoryQuery { project_id: "p".into(), filter: Default::default(), after: None, limit: 10 };
        let page = crate::ports::HistoryStore::list_executions(&db, &query).await.expect("list");
        assert_eq!(page.executions.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(), vec!["young"]);
    }
}

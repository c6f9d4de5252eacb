//! `HistoryStore` on SQLite: one statement per page, served by the index of the filter that
//! narrows it (`executions_by_*`, migration 11) or, with a search attribute, by
//! `execution_search`; every index is in listing order, so a page reads its rows and no more.
//!
//! Invariant: positions are exclusive row values, `(started_at_ms, id) < (?, ?)` (with an id
//! prefix, `id < ?`), so a page never repeats a row of the page before and never skips one.

use async_trait::async_trait;
use rusqlite::types::Value as SqlValue;
use rusqlite::{OptionalExtension, Row, params_from_iter};

use super::executions::{opt_from_json, opt_from_ms, parse_execution_status, parse_trigger_kind};
use super::{Cached, Sqlite, backend, from_ms, to_ms};
use crate::ports::{
    BulkJob, BulkStore, ExecutionSummary, HistoryPage, HistoryPosition, HistoryQuery, HistoryStore, StoreError,
};

const SUMMARY_COLUMNS: &str = "e.id, e.project_id, e.workflow_id, e.workflow_version, e.user_id, e.integration,
    e.status, e.trigger_kind, e.started_at_ms, e.ended_at_ms, e.error, e.search, e.replay_of, e.redrives, e.test";

type SummaryRow = (
    (String, String, String, u32, String, Option<String>),
    (String, String, i64, Option<i64>, Option<String>, Option<String>),
    (Option<String>, u32, bool),
);

fn summary_row(r: &Row<'_>) -> rusqlite::Result<SummaryRow> {
    Ok((
        (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?),
        (r.get(6)?, r.get(7)?, r.get(8)?, r.get(9)?, r.get(10)?, r.get(11)?),
        (r.get(12)?, r.get(13)?, r.get(14)?),
    ))
}

fn decode_summary(row: SummaryRow) -> Result<ExecutionSummary, StoreError> {
    let ((id, project_id, workflow_id, workflow_version, user_id, integration), rest, tail) = row;
    let (status, trigger, started, ended, error, search) = rest;
    let (replay_of, redrives, test) = tail;
    Ok(ExecutionSummary {
        id,
        project_id,
        workflow_id,
        workflow_version,
        user_id,
        integration,
        status: parse_execution_status(&status)?,
        trigger: parse_trigger_kind(&trigger)?,
        started_at: from_ms(started)?,
        ended_at: opt_from_ms(ended)?,
        error: opt_from_json("execution error", error)?,
        search: opt_from_json("search attributes", search)?.unwrap_or_default(),
        replay_of,
        redrives,
        test,
    })
}

/// The statement of one page of `query` and its parameters. The statement's text depends only
/// on which filters are set and the limit, so the statement cache holds a handful of them.
fn page_statement(query: &HistoryQuery) -> (String, Vec<SqlValue>) {
    let f = &query.filter;
    let mut params: Vec<SqlValue> = vec![SqlValue::Text(query.project_id.clone())];
    let mut bind = |value: SqlValue| {
        params.push(value);
        format!("?{}", params.len())
    };
    let mut conditions: Vec<String> = vec!["e.project_id = ?1".into()];
    let mut from = "executions e".to_string();
    let mut search = f.search.iter();
    let by_id = f.id_prefix.is_some();
    // The table whose index gives the listing order: the search index's rows carry the
    // start and id of their execution.
    let mut ordered = ("e.started_at_ms", "e.id");
    if let (Some((key, value)), false) = (search.next(), by_id) {
        ordered = ("s.started_at_ms", "s.execution_id");
        // The first search attribute drives the page through its index rows, in listing order.
        from = "execution_search s JOIN executions e ON e.id = s.execution_id".into();
        conditions.push("s.project_id = ?1".into());
        conditions.push(format!("s.key = {}", bind(SqlValue::Text(key.clone()))));
        conditions.push(format!("s.value = {}", bind(SqlValue::Text(value.clone()))));
    } else {
        search = f.search.iter();
    }
    for (key, value) in search {
        let (key, value) = (bind(SqlValue::Text(key.clone())), bind(SqlValue::Text(value.clone())));
        conditions.push(format!(
            "EXISTS (SELECT 1 FROM execution_search x WHERE x.project_id = e.project_id AND x.key = {key}
                AND x.value = {value} AND x.started_at_ms = e.started_at_ms AND x.execution_id = e.id)"
        ));
    }
    let text = |v: &str| SqlValue::Text(v.to_string());
    if let Some(w) = &f.workflow_id {
        conditions.push(format!("e.workflow_id = {}", bind(text(w))));
    }
    if let Some(u) = &f.user_id {
        conditions.push(format!("e.user_id = {}", bind(text(u))));
    }
    if let Some(i) = &f.integration {
        conditions.push(format!("e.integration = {}", bind(text(i))));
    }
    if let Some(s) = f.status {
        conditions.push(format!("e.status = {}", bind(text(s.as_str()))));
    }
    if let Some(t) = f.trigger {
        conditions.push(format!("e.trigger_kind = {}", bind(text(t.as_str()))));
    }
    if let Some(from) = &f.started_from {
        conditions.push(format!("{} >= {}", ordered.0, bind(SqlValue::Integer(to_ms(from)))));
    }
    if let Some(before) = &f.started_before {
        conditions.push(format!("{} < {}", ordered.0, bind(SqlValue::Integer(to_ms(before)))));
    }
    if let Some(prefix) = &f.id_prefix {
        // Ids are ASCII: every id starting with the prefix sorts below prefix + DEL.
        conditions.push(format!("e.id >= {}", bind(text(prefix))));
        conditions.push(format!("e.id < {}", bind(text(&format!("{prefix}\u{7f}")))));
    }
    let order = match (&query.after, by_id) {
        (Some(after), true) => {
            conditions.push(format!("e.id < {}", bind(text(&after.id))));
            "e.id DESC"
        }
        (None, true) => "e.id DESC",
        (after, false) => {
            if let Some(after) = after {
                let (at, id) = (bind(SqlValue::Integer(to_ms(&after.started_at))), bind(text(&after.id)));
                conditions.push(format!("({}, {}) < ({at}, {id})", ordered.0, ordered.1));
            }
            if ordered.0.starts_with('s') {
                "s.started_at_ms DESC, s.execution_id DESC"
            } else {
                "e.started_at_ms DESC, e.id DESC"
            }
        }
    };
    // One more row than asked says whether a next page exists. The limit is written out, not
    // bound: SQLite re-prepares a statement whose LIMIT is a parameter at every bind.
    let sql = format!(
        "SELECT {SUMMARY_COLUMNS} FROM {from} WHERE {} ORDER BY {order} LIMIT {}",
        conditions.join(" AND "),
        query.limit + 1
    );
    (sql, params)
}

#[async_trait]
impl HistoryStore for Sqlite {
    async fn list_executions(&self, query: &HistoryQuery) -> Result<HistoryPage, StoreError> {
        let query = &self.within_retention(query);
        let (sql, params) = page_statement(query);
        let limit = query.limit;
        let mut executions = self
            .read(move |conn| {
                let mut statement = conn.prepare_cached(&sql).map_err(backend)?;
                let rows = statement.query_map(params_from_iter(params), summary_row).map_err(backend)?;
                rows.map(|row| decode_summary(row.map_err(backend)?)).collect::<Result<Vec<_>, _>>()
            })
            .await?;
        let next = if executions.len() > limit {
            executions.truncate(limit);
            executions.last().map(HistoryPosition::of)
        } else {
            None
        };
        Ok(HistoryPage { executions, next })
    }

    async fn replays_of(&self, project_id: &str, execution_id: &str, limit: usize) -> Result<Vec<String>, StoreError> {
        let (project_id, execution_id) = (project_id.to_string(), execution_id.to_string());
        self.read(move |conn| {
            let sql = format!(
                "SELECT id FROM executions INDEXED BY executions_replays
                 WHERE replay_of = ?1 AND project_id = ?2 LIMIT {limit}"
            );
            let mut statement = conn.prepare_cached(&sql).map_err(backend)?;
            let rows =
                statement.query_map(rusqlite::params![execution_id, project_id], |r| r.get(0)).map_err(backend)?;
            rows.collect::<Result<Vec<String>, _>>().map_err(backend)
        })
        .await
    }
}

#[async_trait]
impl BulkStore for Sqlite {
    async fn create_bulk_job(&self, job: &BulkJob) -> Result<(), StoreError> {
        let (project, id, revision, record) = (
            job.project_id.clone(),
            job.bulk_id.clone(),
            i64::try_from(job.revision).unwrap_or(i64::MAX),
            super::to_json(job)?,
        );
        self.call(move |conn| {
            let inserted = conn
                .run(
                    "INSERT INTO bulk_jobs (project_id, id, revision, record) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT DO NOTHING",
                    rusqlite::params![project, id, revision, record],
                )
                .map_err(backend)?;
            if inserted == 0 { Err(StoreError::AlreadyExists(format!("bulk job {id}"))) } else { Ok(()) }
        })
        .await
    }

    async fn get_bulk_job(&self, project_id: &str, bulk_id: &str) -> Result<Option<BulkJob>, StoreError> {
        let (project, id) = (project_id.to_string(), bulk_id.to_string());
        let record: Option<String> = self
            .call(move |conn| {
                conn.row(
                    "SELECT record FROM bulk_jobs WHERE project_id = ?1 AND id = ?2",
                    rusqlite::params![project, id],
                    |row| row.get(0),
                )
                .optional()
                .map_err(backend)
            })
            .await?;
        record.map(|text| super::from_json("bulk job", &text)).transpose()
    }

    async fn update_bulk_job(&self, job: &BulkJob) -> Result<bool, StoreError> {
        let (project, id, revision, record) = (
            job.project_id.clone(),
            job.bulk_id.clone(),
            i64::try_from(job.revision).unwrap_or(i64::MAX),
            super::to_json(job)?,
        );
        self.call(move |conn| {
            let changed = conn
                .run(
                    "UPDATE bulk_jobs SET revision = ?3, record = ?4 WHERE project_id = ?1 AND id = ?2 AND revision = ?3 - 1",
                    rusqlite::params![project, id, revision, record],
                )
                .map_err(backend)?;
            Ok(changed == 1)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::HistoryFilter;
    use crate::record::ExecutionStatus;

    fn plan(sql: &str, params: &[SqlValue], db: &rusqlite::Connection) -> String {
        let mut statement = db.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).expect("explain");
        let rows = statement
            .query_map(params_from_iter(params.iter().cloned()), |r| r.get::<_, String>(3))
            .expect("plan rows");
        rows.map(|r| r.expect("plan row")).collect::<Vec<_>>().join(" | ")
    }

    /// Every filter's page reads its own index in listing order: no sort, no table scan.
    #[tokio::test]
    async fn every_filter_reads_an_index_in_listing_order() {
        let db = Sqlite::in_memory().expect("database");
        let base = HistoryQuery { project_id: "p".into(), filter: HistoryFilter::default(), after: None, limit: 100 };
        let after = Some(HistoryPosition { started_at: crate::record::now(), id: "x".into() });
        let filters = [
            ("project", HistoryFilter::default()),
            ("workflow", HistoryFilter { workflow_id: Some("w".into()), ..HistoryFilter::default() }),
            ("user", HistoryFilter { user_id: Some("u".into()), ..HistoryFilter::default() }),
            ("status", HistoryFilter { status: Some(ExecutionStatus::Failed), ..HistoryFilter::default() }),
            ("integration", HistoryFilter { integration: Some("slack".into()), ..HistoryFilter::default() }),
            (
                "trigger",
                HistoryFilter { trigger: Some(crate::record::TriggerKind::Webhook), ..HistoryFilter::default() },
            ),
            (
                "search",
                HistoryFilter {
                    search: [("email".to_string(), "a@b".to_string())].into_iter().collect(),
                    ..HistoryFilter::default()
                },
            ),
        ];
        for (name, filter) in filters {
            for after in [None, after.clone()] {
                let query = HistoryQuery { filter: filter.clone(), after, ..base.clone() };
                let (sql, params) = page_statement(&query);
                let plan = db.call(move |conn| Ok(plan(&sql, &params, conn))).await.expect("plan");
                assert!(!plan.contains("TEMP B-TREE"), "{name}: sorts: {plan}");
                assert!(plan.contains("USING INDEX") || plan.contains("USING PRIMARY KEY"), "{name}: {plan}");
                assert!(!plan.contains("SCAN e") && !plan.contains("SCAN executions"), "{name}: scans: {plan}");
            }
        }
    }
}

//! `ExecutionStore` on SQLite.
//!
//! Step attempts keep their fields in columns (JSON text for input, output, error and logs).
//!
//! Invariants: step attempts and settled responses are written with `INSERT ... ON CONFLICT
//! DO NOTHING` and, when nothing was inserted, the existing row is read back in the same
//! transaction (first writer wins, and the loser learns what won); an execution ends only
//! through `UPDATE ... WHERE status IN ('running', 'waiting')` and moves between running and
//! waiting only through `UPDATE ... WHERE status = <from>`, so exactly one finish counts.

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, Row, TransactionBehavior, params};

use super::{Cached, Sqlite, backend, from_json, from_ms, to_json, to_ms};
use crate::engine::StepKey;
use crate::ports::{ExecutionStore, FirstWrite, StoreError};
use crate::record::{
    Execution, ExecutionError, ExecutionStatus, SettledResponse, StepAttempt, StepStatus, Timestamp, TriggerKind,
};

pub(super) fn parse_execution_status(text: &str) -> Result<ExecutionStatus, StoreError> {
    ExecutionStatus::parse(text).ok_or_else(|| StoreError::Corrupt(format!("unknown execution status `{text}`")))
}

pub(super) fn parse_trigger_kind(text: &str) -> Result<TriggerKind, StoreError> {
    TriggerKind::parse(text).ok_or_else(|| StoreError::Corrupt(format!("unknown trigger kind `{text}`")))
}

fn step_status_str(status: StepStatus) -> &'static str {
    match status {
        StepStatus::Succeeded => "succeeded",
        StepStatus::Failed => "failed",
    }
}

fn parse_step_status(text: &str) -> Result<StepStatus, StoreError> {
    match text {
        "succeeded" => Ok(StepStatus::Succeeded),
        "failed" => Ok(StepStatus::Failed),
        other => Err(StoreError::Corrupt(format!("unknown step status `{other}`"))),
    }
}

pub(super) fn opt_json<T: serde::Serialize>(value: Option<&T>) -> Result<Option<String>, StoreError> {
    value.map(to_json).transpose()
}

pub(super) fn opt_from_json<T: serde::de::DeserializeOwned>(
    what: &str,
    text: Option<String>,
) -> Result<Option<T>, StoreError> {
    text.map(|t| from_json(what, &t)).transpose()
}

pub(super) fn opt_from_ms(ms: Option<i64>) -> Result<Option<Timestamp>, StoreError> {
    ms.map(from_ms).transpose()
}

pub(super) const STEP_COLUMNS: &str = "step, attempt, status, input, output, error, started_at_ms, ended_at_ms, logs";

/// The columns of [`STEP_COLUMNS`], decoded later (decoding errors are `StoreError`s).
pub(super) type StepRow = (String, u32, String, String, Option<String>, Option<String>, i64, i64, Option<String>);

pub(super) fn step_row(row: &Row<'_>) -> rusqlite::Result<StepRow> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
        row.get(5)?,
        row.get(6)?,
        row.get(7)?,
        row.get(8)?,
    ))
}

/// Logs are a JSON array of strings, NULL when there are none (and in rows written before
/// migration 2).
fn encode_logs(logs: &[String]) -> Result<Option<String>, StoreError> {
    if logs.is_empty() { Ok(None) } else { to_json(&logs).map(Some) }
}

pub(super) fn decode_step(row: StepRow) -> Result<StepAttempt, StoreError> {
    let (step, attempt, status, input, output, error, started_at, ended_at, logs) = row;
    Ok(StepAttempt {
        status: parse_step_status(&status)?,
        input: from_json("step input", &input)?,
        output: opt_from_json("step output", output)?,
        error: opt_from_json("step error", error)?,
        started_at: from_ms(started_at)?,
        ended_at: from_ms(ended_at)?,
        step,
        attempt,
        logs: opt_from_json("step logs", logs)?.unwrap_or_default(),
    })
}

/// The columns of an execution row, read by [`ExecutionRow::read`].
pub(super) const EXECUTION_COLUMNS: &str = "id, project_id, workflow_id, workflow_version, user_id, status,
    started_at_ms, ended_at_ms, trigger, response_deadline_ms, error, test, integration, trigger_kind, search,
    replay_of, redrives";

/// An execution row as read, decoded later (decoding errors are `StoreError`s).
pub(super) struct ExecutionRow {
    id: String,
    project_id: String,
    workflow_id: String,
    workflow_version: u32,
    user_id: String,
    status: String,
    started_at_ms: i64,
    ended_at_ms: Option<i64>,
    trigger: String,
    response_deadline_ms: Option<i64>,
    error: Option<String>,
    test: bool,
    integration: Option<String>,
    search: Option<String>,
    replay_of: Option<String>,
    redrives: u32,
}

impl ExecutionRow {
    /// Reads the [`EXECUTION_COLUMNS`] of `row`, in that order.
    pub(super) fn read(row: &Row<'_>) -> rusqlite::Result<ExecutionRow> {
        Ok(ExecutionRow {
            id: row.get(0)?,
            project_id: row.get(1)?,
            workflow_id: row.get(2)?,
            workflow_version: row.get(3)?,
            user_id: row.get(4)?,
            status: row.get(5)?,
            started_at_ms: row.get(6)?,
            ended_at_ms: row.get(7)?,
            trigger: row.get(8)?,
            response_deadline_ms: row.get(9)?,
            error: row.get(10)?,
            test: row.get(11)?,
            integration: row.get(12)?,
            search: row.get(14)?,
            replay_of: row.get(15)?,
            redrives: row.get(16)?,
        })
    }

    pub(super) fn decode(self) -> Result<Execution, StoreError> {
        Ok(Execution {
            id: self.id,
            project_id: self.project_id,
            workflow_id: self.workflow_id,
            workflow_version: self.workflow_version,
            user_id: self.user_id,
            status: parse_execution_status(&self.status)?,
            started_at: from_ms(self.started_at_ms)?,
            ended_at: opt_from_ms(self.ended_at_ms)?,
            trigger: from_json("trigger data", &self.trigger)?,
            response_deadline: opt_from_ms(self.response_deadline_ms)?,
            error: opt_from_json::<ExecutionError>("execution error", self.error)?,
            test: self.test,
            integration: self.integration,
            search: opt_from_json("search attributes", self.search)?.unwrap_or_default(),
            replay_of: self.replay_of,
            redrives: self.redrives,
        })
    }
}

fn read_step(
    conn: &Connection,
    execution_id: &str,
    step: &str,
    attempt: u32,
) -> Result<Option<StepAttempt>, StoreError> {
    let sql =
        format!("SELECT {STEP_COLUMNS} FROM step_attempts WHERE execution_id = ?1 AND step = ?2 AND attempt = ?3");
    let row = conn
        .prepare_cached(&sql)
        .and_then(|mut select| select.query_row(params![execution_id, step, attempt], step_row).optional())
        .map_err(backend)?;
    row.map(decode_step).transpose()
}

/// A step attempt as its row's columns.
pub(super) struct EncodedStep {
    step: String,
    attempt: u32,
    status: &'static str,
    input: String,
    output: Option<String>,
    error: Option<String>,
    started_at_ms: i64,
    ended_at_ms: i64,
    logs: Option<String>,
}

impl EncodedStep {
    pub(super) fn new(a: &StepAttempt) -> Result<EncodedStep, StoreError> {
        Ok(EncodedStep {
            step: a.step.clone(),
            attempt: a.attempt,
            status: step_status_str(a.status),
            input: to_json(&a.input)?,
            output: opt_json(a.output.as_ref())?,
            error: opt_json(a.error.as_ref())?,
            started_at_ms: to_ms(&a.started_at),
            ended_at_ms: to_ms(&a.ended_at),
            logs: encode_logs(&a.logs)?,
        })
    }
}

/// Inserts a step attempt unless one is recorded for its key; whether it was inserted.
pub(super) fn insert_step(conn: &Connection, execution_id: &str, a: &EncodedStep) -> Result<bool, StoreError> {
    let inserted = conn
        .prepare_cached(
            "INSERT INTO step_attempts (execution_id, step, attempt, status, input, output, error,
                 started_at_ms, ended_at_ms, logs)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
             ON CONFLICT (execution_id, step, attempt) DO NOTHING",
        )
        .and_then(|mut insert| {
            insert.execute(params![
                execution_id,
                a.step,
                a.attempt,
                a.status,
                a.input,
                a.output,
                a.error,
                a.started_at_ms,
                a.ended_at_ms,
                a.logs,
            ])
        })
        .map_err(backend)?;
    Ok(inserted == 1)
}

/// Inserts a new execution with its search attribute rows; `AlreadyExists` if the id is taken.
/// Callers that are not inside a transaction go through [`Sqlite::create_execution`], which
/// opens one: the rows are written together or not at all.
pub(super) fn insert_execution(conn: &Connection, e: &Execution) -> Result<(), StoreError> {
    let trigger = to_json(&e.trigger)?;
    let error = opt_json(e.error.as_ref())?;
    let search = if e.search.is_empty() { None } else { Some(to_json(&e.search)?) };
    let started_at_ms = to_ms(&e.started_at);
    let inserted = conn
        .run(
            "INSERT INTO executions (id, project_id, workflow_id, workflow_version, user_id, status,
                 started_at_ms, ended_at_ms, trigger, response_deadline_ms, error, test, integration,
                 trigger_kind, search, replay_of, redrives)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)
             ON CONFLICT (id) DO NOTHING",
            params![
                e.id,
                e.project_id,
                e.workflow_id,
                e.workflow_version,
                e.user_id,
                e.status.as_str(),
                started_at_ms,
                e.ended_at.as_ref().map(to_ms),
                trigger,
                e.response_deadline.as_ref().map(to_ms),
                error,
                e.test,
                e.integration,
                e.trigger.kind.as_str(),
                search,
                e.replay_of,
                e.redrives,
            ],
        )
        .map_err(backend)?;
    if inserted == 0 {
        return Err(StoreError::AlreadyExists(format!("execution {}", e.id)));
    }
    for (key, value) in &e.search {
        conn.run(
            "INSERT INTO execution_search (project_id, key, value, started_at_ms, execution_id)
             VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING",
            params![e.project_id, key, value, started_at_ms, e.id],
        )
        .map_err(backend)?;
    }
    Ok(())
}

fn read_response(conn: &Connection, execution_id: &str) -> Result<Option<SettledResponse>, StoreError> {
    let text: Option<String> = conn
        .row("SELECT response FROM responses WHERE execution_id = ?1", params![execution_id], |row| row.get(0))
        .optional()
        .map_err(backend)?;
    opt_from_json("settled response", text)
}

#[async_trait]
impl ExecutionStore for Sqlite {
    async fn create_execution(&self, execution: &Execution) -> Result<(), StoreError> {
        let e = execution.clone();
        self.call(move |conn| {
            if e.search.is_empty() {
                return insert_execution(conn, &e);
            }
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(backend)?;
            insert_execution(&tx, &e)?;
            tx.commit().map_err(backend)
        })
        .await
    }

    async fn get_execution(&self, execution_id: &str) -> Result<Option<Execution>, StoreError> {
        let execution_id = execution_id.to_string();
        self.call(move |conn| {
            let sql = format!("SELECT {EXECUTION_COLUMNS} FROM executions WHERE id = ?1");
            let row = conn.row(&sql, params![execution_id], ExecutionRow::read).optional().map_err(backend)?;
            row.map(ExecutionRow::decode).transpose()
        })
        .await
    }

    async fn finish_execution(
        &self,
        _project_id: &str,
        execution_id: &str,
        status: ExecutionStatus,
        error: Option<&ExecutionError>,
        ended_at: Timestamp,
    ) -> Result<bool, StoreError> {
        let execution_id = execution_id.to_string();
        let error = opt_json(error)?;
        self.call(move |conn| {
            let changed = conn
                .run(
                    "UPDATE executions SET status = ?2, error = ?3, ended_at_ms = ?4
                     WHERE id = ?1 AND status IN ('running', 'waiting')",
                    params![execution_id, status.as_str(), error, to_ms(&ended_at)],
                )
                .map_err(backend)?;
            Ok(changed == 1)
        })
        .await
    }

    async fn set_execution_status(
        &self,
        _project_id: &str,
        execution_id: &str,
        from: ExecutionStatus,
        to: ExecutionStatus,
    ) -> Result<bool, StoreError> {
        let execution_id = execution_id.to_string();
        self.call(move |conn| {
            let changed = conn
                .run(
                    "UPDATE executions SET status = ?3 WHERE id = ?1 AND status = ?2",
                    params![execution_id, from.as_str(), to.as_str()],
                )
                .map_err(backend)?;
            Ok(changed == 1)
        })
        .await
    }

    async fn redrive_execution(&self, _project_id: &str, execution_id: &str) -> Result<Option<u32>, StoreError> {
        let execution_id = execution_id.to_string();
        self.call(move |conn| {
            conn.row(
                "UPDATE executions SET status = 'running', error = NULL, ended_at_ms = NULL, redrives = redrives + 1
                 WHERE id = ?1 AND status = 'failed' RETURNING redrives",
                params![execution_id],
                |row| row.get(0),
            )
            .optional()
            .map_err(backend)
        })
        .await
    }

    async fn record_step(
        &self,
        execution_id: &str,
        attempt: &StepAttempt,
    ) -> Result<FirstWrite<StepAttempt>, StoreError> {
        let execution_id = execution_id.to_string();
        let encoded = EncodedStep::new(attempt)?;
        self.call(move |conn| {
            // No transaction: a row that is there stays as it is, so the loser reads the winner.
            if insert_step(conn, &execution_id, &encoded)? {
                return Ok(FirstWrite::Written);
            }
            match read_step(conn, &execution_id, &encoded.step, encoded.attempt)? {
                Some(existing) => Ok(FirstWrite::Existing(existing)),
                None => Err(StoreError::Backend("step record conflicted but cannot be read back".into())),
            }
        })
        .await
    }

    async fn get_step(
        &self,
        execution_id: &str,
        key: &StepKey,
        attempt: u32,
    ) -> Result<Option<StepAttempt>, StoreError> {
        let (execution_id, step) = (execution_id.to_string(), key.to_string());
        self.call(move |conn| read_step(conn, &execution_id, &step, attempt)).await
    }

    async fn list_steps(&self, execution_id: &str) -> Result<Vec<StepAttempt>, StoreError> {
        let execution_id = execution_id.to_string();
        self.call(move |conn| {
            let sql = format!(
                "SELECT {STEP_COLUMNS} FROM step_attempts WHERE execution_id = ?1
                 ORDER BY started_at_ms, step, attempt"
            );
            let mut statement = conn.prepare(&sql).map_err(backend)?;
            let rows = statement.query_map(params![execution_id], step_row).map_err(backend)?;
            rows.map(|row| decode_step(row.map_err(backend)?)).collect()
        })
        .await
    }

    async fn settle_response(
        &self,
        execution_id: &str,
        response: &SettledResponse,
    ) -> Result<FirstWrite<SettledResponse>, StoreError> {
        let execution_id = execution_id.to_string();
        let text = to_json(response)?;
        self.call(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(backend)?;
            let inserted = tx
                .run(
                    "INSERT INTO responses (execution_id, response) VALUES (?1, ?2)
                     ON CONFLICT (execution_id) DO NOTHING",
                    params![execution_id, text],
                )
                .map_err(backend)?;
            let result = if inserted == 1 {
                FirstWrite::Written
            } else {
                match read_response(&tx, &execution_id)? {
                    Some(existing) => FirstWrite::Existing(existing),
                    None => {
                        return Err(StoreError::Backend("response conflicted but cannot be read back".into()));
                    }
                }
            };
            tx.commit().map_err(backend)?;
            Ok(result)
        })
        .await
    }

    async fn get_response(&self, execution_id: &str) -> Result<Option<SettledResponse>, StoreError> {
        let execution_id = execution_id.to_string();
        self.call(move |conn| read_response(conn, &execution_id)).await
    }
}

impl Sqlite {
    /// Executions `running` or `waiting` since before `started_before_ms` that no message of
    /// either queue mentions (an in-flight message stays in `messages` until acked): nothing
    /// will move them. At most `max`, oldest first.
    pub async fn stuck_executions(&self, started_before_ms: i64, max: usize) -> Result<Vec<String>, StoreError> {
        let max = i64::try_from(max).unwrap_or(i64::MAX);
        self.call(move |conn| {
            let mut statement = conn
                .prepare_cached(
                    "SELECT id FROM executions e
                     WHERE status IN ('running', 'waiting') AND started_at_ms <= ?1
                       AND NOT EXISTS (SELECT 1 FROM messages m
                                       WHERE instr(m.body, '\"executionId\":\"' || e.id || '\"') > 0)
                     ORDER BY started_at_ms LIMIT ?2",
                )
                .map_err(backend)?;
            let rows = statement.query_map(params![started_before_ms, max], |row| row.get(0)).map_err(backend)?;
            rows.collect::<Result<Vec<String>, _>>().map_err(backend)
        })
        .await
    }
}

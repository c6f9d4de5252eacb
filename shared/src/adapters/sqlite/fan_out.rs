//! `FanOutStore` on SQLite: step lookups by key, fan-out items and the join of branches.
//!
//! Items live in `fan_out_items` and completed branches in `fan_out_branches`, one row each,
//! keyed by (execution, fan-out key, index); values are JSON text of at most
//! `MAX_FAN_OUT_VALUE_BYTES`. Keys are stored rendered (`StepKey`'s text, `f@1`: each method
//! renders its key once, before the query) and compared whole (`=`), never as prefixes, so `f`
//! and `f@1` are different fan-outs.
//!
//! Invariants: a branch is counted by the existence of its row, and `complete_branch` inserts
//! the row (`ON CONFLICT DO NOTHING`: the first result stays) and counts the rows in one
//! immediate transaction, so all branches are seen done exactly when every row exists,
//! whatever the concurrency or redelivery. Items are inserted all in one transaction
//! (`ON CONFLICT DO NOTHING`): a fan-out's items are either all there or none. Inline
//! branches' step attempts are recorded in the same transaction as their count
//! (`record_branches`).

use async_trait::async_trait;
use rusqlite::{OptionalExtension, TransactionBehavior, params};
use serde_json::Value;

use super::Cached;
use super::executions::{EncodedStep, STEP_COLUMNS, decode_step, insert_step, step_row};
use super::{Sqlite, backend, from_json};
use crate::adapters::{check_branch_index, check_fan_out_len, fan_out_value_json};
use crate::engine::StepKey;
use crate::ports::{Counted, FanOutStore, StoreError};
use crate::record::StepAttempt;

#[async_trait]
impl FanOutStore for Sqlite {
    async fn latest_step(&self, execution_id: &str, step_key: &StepKey) -> Result<Option<StepAttempt>, StoreError> {
        let (execution_id, step_key) = (execution_id.to_string(), step_key.to_string());
        self.call(move |conn| {
            let sql = format!(
                "SELECT {STEP_COLUMNS} FROM step_attempts WHERE execution_id = ?1 AND step = ?2
                 ORDER BY attempt DESC LIMIT 1"
            );
            let row = conn.row(&sql, params![execution_id, step_key], step_row).optional().map_err(backend)?;
            row.map(decode_step).transpose()
        })
        .await
    }

    async fn put_fan_out_items(
        &self,
        execution_id: &str,
        fan_out_key: &StepKey,
        items: &[Value],
    ) -> Result<(), StoreError> {
        check_fan_out_len(items.len())?;
        let texts = items
            .iter()
            .enumerate()
            .map(|(index, item)| fan_out_value_json(&format!("fan-out item {index}"), item))
            .collect::<Result<Vec<String>, StoreError>>()?;
        let (execution_id, fan_out_key) = (execution_id.to_string(), fan_out_key.to_string());
        self.call(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(backend)?;
            {
                let mut insert = tx
                    .prepare(
                        "INSERT INTO fan_out_items (execution_id, fan_out_key, item_index, item)
                         VALUES (?1, ?2, ?3, ?4)
                         ON CONFLICT (execution_id, fan_out_key, item_index) DO NOTHING",
                    )
                    .map_err(backend)?;
                for (index, text) in (0u32..).zip(&texts) {
                    insert.execute(params![execution_id, fan_out_key, index, text]).map_err(backend)?;
                }
            }
            tx.commit().map_err(backend)
        })
        .await
    }

    async fn fan_out_item(
        &self,
        execution_id: &str,
        fan_out_key: &StepKey,
        index: u32,
    ) -> Result<Option<Value>, StoreError> {
        let (execution_id, fan_out_key) = (execution_id.to_string(), fan_out_key.to_string());
        self.call(move |conn| {
            let text: Option<String> = conn
                .row(
                    "SELECT item FROM fan_out_items WHERE execution_id = ?1 AND fan_out_key = ?2 AND item_index = ?3",
                    params![execution_id, fan_out_key, index],
                    |row| row.get(0),
                )
                .optional()
                .map_err(backend)?;
            text.map(|t| from_json("fan-out item", &t)).transpose()
        })
        .await
    }

    async fn complete_branch(
        &self,
        execution_id: &str,
        fan_out_key: &StepKey,
        index: u32,
        total: u32,
        result: &Value,
        by: &str,
    ) -> Result<Counted, StoreError> {
        check_branch_index(index, total)?;
        let text = fan_out_value_json(&format!("the result of branch {index}"), result)?;
        let (execution_id, fan_out_key, by) = (execution_id.to_string(), fan_out_key.to_string(), by.to_string());
        self.call(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(backend)?;
            tx.prepare_cached(
                "INSERT INTO fan_out_branches (execution_id, fan_out_key, branch_index, result, counted_by)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (execution_id, fan_out_key, branch_index) DO NOTHING",
            )
            .and_then(|mut insert| insert.execute(params![execution_id, fan_out_key, index, text, by]))
            .map_err(backend)?;
            let (done, counted_by): (u32, Option<String>) = tx
                .prepare_cached(
                    "SELECT COUNT(*), MAX(CASE WHEN branch_index = ?3 THEN counted_by END)
                     FROM fan_out_branches WHERE execution_id = ?1 AND fan_out_key = ?2",
                )
                .and_then(|mut count| {
                    count.query_row(params![execution_id, fan_out_key, index], |row| Ok((row.get(0)?, row.get(1)?)))
                })
                .map_err(backend)?;
            tx.commit().map_err(backend)?;
            Ok(Counted { all_done: done >= total, first: counted_by.as_deref() == Some(by.as_str()) })
        })
        .await
    }

    async fn complete_branches(
        &self,
        execution_id: &str,
        fan_out_key: &StepKey,
        total: u32,
        results: &[(u32, Value)],
    ) -> Result<bool, StoreError> {
        let done = self.record_branches(execution_id, fan_out_key, total, &[], results).await?;
        done.ok_or_else(|| StoreError::Backend("a batch without records conflicted".into()))
    }

    async fn record_branches(
        &self,
        execution_id: &str,
        fan_out_key: &StepKey,
        total: u32,
        records: &[Vec<StepAttempt>],
        results: &[(u32, Value)],
    ) -> Result<Option<bool>, StoreError> {
        let mut rows = Vec::with_capacity(results.len());
        for (index, result) in results {
            check_branch_index(*index, total)?;
            rows.push((*index, fan_out_value_json(&format!("the result of branch {index}"), result)?));
        }
        let records = records
            .iter()
            .map(|branch| branch.iter().map(EncodedStep::new).collect::<Result<Vec<_>, _>>())
            .collect::<Result<Vec<_>, _>>()?;
        let (execution_id, fan_out_key) = (execution_id.to_string(), fan_out_key.to_string());
        self.call(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(backend)?;
            let mut conflict = false;
            for branch in &records {
                for attempt in branch {
                    if !insert_step(&tx, &execution_id, attempt)? {
                        conflict = true;
                        break;
                    }
                }
            }
            if conflict {
                tx.commit().map_err(backend)?;
                return Ok(None);
            }
            {
                let mut insert = tx
                    .prepare_cached(
                        "INSERT INTO fan_out_branches (execution_id, fan_out_key, branch_index, result)
                         VALUES (?1, ?2, ?3, ?4)
                         ON CONFLICT (execution_id, fan_out_key, branch_index) DO NOTHING",
                    )
                    .map_err(backend)?;
                for (index, text) in &rows {
                    insert.execute(params![execution_id, fan_out_key, index, text]).map_err(backend)?;
                }
            }
            let done: u32 = tx
                .prepare_cached("SELECT COUNT(*) FROM fan_out_branches WHERE execution_id = ?1 AND fan_out_key = ?2")
                .and_then(|mut count| count.query_row(params![execution_id, fan_out_key], |row| row.get(0)))
                .map_err(backend)?;
            tx.commit().map_err(backend)?;
            Ok(Some(done >= total))
        })
        .await
    }

    async fn branch_results(&self, execution_id: &str, fan_out_key: &StepKey) -> Result<Vec<(u32, Value)>, StoreError> {
        let (execution_id, fan_out_key) = (execution_id.to_string(), fan_out_key.to_string());
        self.call(move |conn| {
            let mut statement = conn
                .prepare(
                    "SELECT branch_index, result FROM fan_out_branches WHERE execution_id = ?1 AND fan_out_key = ?2
                     ORDER BY branch_index",
                )
                .map_err(backend)?;
            let rows = statement
                .query_map(params![execution_id, fan_out_key], |row| {
                    Ok((row.get::<_, u32>(0)?, row.get::<_, String>(1)?))
                })
                .map_err(backend)?;
            rows.map(|row| {
                let (index, text) = row.map_err(backend)?;
                Ok((index, from_json("branch result", &text)?))
            })
            .collect()
        })
        .await
    }
}

//! `IdempotencyStore` on SQLite: one row per claimed key in `idempotency_keys`, keyed by
//! (project, route, caller, key).
//!
//! Invariants: a row whose `expires_at_ms` is before now is treated as absent by every
//! statement; a claim runs in one immediate transaction (so concurrent claims are serialised
//! and exactly one inserts), and first deletes up to [`CLEANUP_BATCH`] expired rows, so the
//! table does not grow with keys nobody repeats.

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::{Cached, Sqlite, backend, from_json, from_ms, now_ms, to_json, to_ms};
use crate::ports::{ClaimState, FirstWrite, IdempotencyKey, IdempotencyRecord, IdempotencyStore, StoreError};
use crate::record::Timestamp;

/// The most expired rows one claim deletes.
const CLEANUP_BATCH: i64 = 100;

const COLUMNS: &str = "request_hash, answer, token, state, claimed_at_ms, expires_at_ms";
const WHERE_KEY: &str = "project_id = ?1 AND route = ?2 AND caller = ?3 AND idempotency_key = ?4";

type Row = (String, String, String, String, i64, i64);

fn decode(row: Row) -> Result<IdempotencyRecord, StoreError> {
    let (request_hash, answer, token, state, claimed_at, expires_at) = row;
    Ok(IdempotencyRecord {
        request_hash,
        answer: from_json("idempotency answer", &answer)?,
        token,
        state: ClaimState::parse(&state)?,
        claimed_at: from_ms(claimed_at)?,
        expires_at: from_ms(expires_at)?,
    })
}

/// The live record of `key` at `now_ms`.
fn read_live(conn: &Connection, key: &IdempotencyKey, now_ms: i64) -> Result<Option<IdempotencyRecord>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM idempotency_keys WHERE {WHERE_KEY} AND expires_at_ms >= ?5");
    let row: Option<Row> = conn
        .prepare_cached(&sql)
        .and_then(|mut select| {
            select
                .query_row(params![key.project_id, key.route, key.caller, key.key, now_ms], |row| {
                    Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?, row.get(5)?))
                })
                .optional()
        })
        .map_err(backend)?;
    row.map(decode).transpose()
}

#[async_trait]
impl IdempotencyStore for Sqlite {
    async fn claim_key(
        &self,
        key: &IdempotencyKey,
        record: &IdempotencyRecord,
    ) -> Result<FirstWrite<IdempotencyRecord>, StoreError> {
        let (key, record, answer) = (key.clone(), record.clone(), to_json(&record.answer)?);
        self.call(move |conn| {
            let now = now_ms();
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(backend)?;
            tx.run(
                &format!(
                    "DELETE FROM idempotency_keys WHERE rowid IN
                       (SELECT rowid FROM idempotency_keys WHERE expires_at_ms < ?1 LIMIT {CLEANUP_BATCH})"
                ),
                params![now],
            )
            .map_err(backend)?;
            if let Some(existing) = read_live(&tx, &key, now)? {
                return Ok(FirstWrite::Existing(existing));
            }
            // Whatever is left under the key has expired (the cleanup may not have reached it).
            tx.run(
                &format!(
                    "INSERT OR REPLACE INTO idempotency_keys (project_id, route, caller, idempotency_key, {COLUMNS})
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
                ),
                params![
                    key.project_id,
                    key.route,
                    key.caller,
                    key.key,
                    record.request_hash,
                    answer,
                    record.token,
                    record.state.as_str(),
                    to_ms(&record.claimed_at),
                    to_ms(&record.expires_at),
                ],
            )
            .map_err(backend)?;
            tx.commit().map_err(backend)?;
            Ok(FirstWrite::Written)
        })
        .await
    }

    async fn get_key(&self, key: &IdempotencyKey) -> Result<Option<IdempotencyRecord>, StoreError> {
        let key = key.clone();
        self.call(move |conn| read_live(conn, &key, now_ms())).await
    }

    async fn complete_key(&self, key: &IdempotencyKey, token: &str, expires_at: Timestamp) -> Result<bool, StoreError> {
        let (key, token) = (key.clone(), token.to_string());
        self.call(move |conn| {
            let changed = conn
                .run(
                    &format!(
                        "UPDATE idempotency_keys SET state = ?6, expires_at_ms = ?7 WHERE {WHERE_KEY} AND token = ?5"
                    ),
                    params![
                        key.project_id,
                        key.route,
                        key.caller,
                        key.key,
                        token,
                        ClaimState::Done.as_str(),
                        to_ms(&expires_at)
                    ],
                )
                .map_err(backend)?;
            Ok(changed == 1)
        })
        .await
    }

    async fn release_key(&self, key: &IdempotencyKey, token: &str) -> Result<bool, StoreError> {
        let (key, token) = (key.clone(), token.to_string());
        self.call(move |conn| {
            let deleted = conn
                .run(
                    &format!("DELETE FROM idempotency_keys WHERE {WHERE_KEY} AND token = ?5"),
                    params![key.project_id, key.route, key.caller, key.key, token],
                )
                .map_err(backend)?;
            Ok(deleted == 1)
        })
        .await
    }
}

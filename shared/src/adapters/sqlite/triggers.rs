//! The triggers' ports on SQLite: `schedules` (the schedule ledger, one row per (project,
//! workflow, user)), `poll_seen` (a polling trigger's seen-set per (project, workflow, user),
//! its keys as a JSON list) and `webhook_deliveries` (kept deliveries, the whole record as
//! JSON beside the columns listings filter on).
//!
//! Invariants: `due_schedules` reads the partial index `schedules_due` (rows with a
//! `next_fire_ms` only, in (next fire, project, workflow, user) order) and pages by that tuple,
//! so every due row is listed exactly once across pages; `advance_schedule` and `put_seen` are
//! single `UPDATE`/`INSERT` statements conditioned on what the caller read (compare and swap),
//! atomic under SQLite's write lock; deliveries are listed in delivery id order, newest first
//! (ids are UUIDv7, which sort by time), and a delivery received more than
//! [`WEBHOOK_RETENTION_DAYS`] ago is never returned: each `put_delivery` deletes up to
//! [`CLEANUP_BATCH`] of them.

use std::collections::HashMap;

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, Row, TransactionBehavior, params};

use super::{Cached, Sqlite, backend, from_json, from_ms, now_ms, to_json, to_ms};
use crate::ports::{
    DueCursor, MAX_DUE_PAGE, PollStore, RouteLookup, Routes, ScheduleEntry, ScheduleStore, SeenSet, StoreError,
    WebhookDelivery, WebhookStore,
};
use crate::record::Timestamp;

/// The most expired deliveries one `put_delivery` deletes.
const CLEANUP_BATCH: i64 = 100;

use crate::ports::WEBHOOK_RETENTION_MS as RETENTION_MS;

const SCHEDULE_COLUMNS: &str = "project_id, workflow_id, user_id, next_fire_ms, version, zone, last_fire_ms, \
     last_execution_id, fired, skipped, missed, last_note, updated_at_ms";

/// Where a page of due rows ended: the (next fire, project, workflow, user) of its last row.
type DuePosition = (i64, String, String, String);

fn count_to_sql(what: &str, count: u64) -> Result<i64, StoreError> {
    i64::try_from(count).map_err(|_| StoreError::TooLarge(format!("{what} {count} is over SQLite's integer range")))
}

fn count_from_sql(what: &str, count: i64) -> Result<u64, StoreError> {
    u64::try_from(count).map_err(|_| StoreError::Corrupt(format!("{what} is negative: {count}")))
}

/// The row of `entry`, as the statements bind it.
struct EncodedEntry {
    next_fire_ms: Option<i64>,
    last_fire_ms: Option<i64>,
    fired: i64,
    skipped: i64,
    missed: i64,
    updated_at_ms: i64,
}

impl EncodedEntry {
    fn new(entry: &ScheduleEntry) -> Result<EncodedEntry, StoreError> {
        Ok(EncodedEntry {
            next_fire_ms: entry.next_fire.as_ref().map(to_ms),
            last_fire_ms: entry.last_fire.as_ref().map(to_ms),
            fired: count_to_sql("fired", entry.fired)?,
            skipped: count_to_sql("skipped", entry.skipped)?,
            missed: count_to_sql("missed", entry.missed)?,
            updated_at_ms: to_ms(&entry.updated_at),
        })
    }
}

type EntryRow =
    (String, String, String, Option<i64>, i64, String, Option<i64>, Option<String>, i64, i64, i64, Option<String>, i64);

fn entry_row(row: &Row<'_>) -> rusqlite::Result<EntryRow> {
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
        row.get(9)?,
        row.get(10)?,
        row.get(11)?,
        row.get(12)?,
    ))
}

fn decode_entry(row: EntryRow) -> Result<ScheduleEntry, StoreError> {
    let (project_id, workflow_id, user_id, next_fire, version, zone, last_fire, last_execution_id) =
        (row.0, row.1, row.2, row.3, row.4, row.5, row.6, row.7);
    let (fired, skipped, missed, last_note, updated_at) = (row.8, row.9, row.10, row.11, row.12);
    Ok(ScheduleEntry {
        project_id,
        workflow_id,
        user_id,
        next_fire: next_fire.map(from_ms).transpose()?,
        version: u32::try_from(version)
            .map_err(|_| StoreError::Corrupt(format!("schedule version {version} is out of range")))?,
        zone,
        last_fire: last_fire.map(from_ms).transpose()?,
        last_execution_id,
        fired: count_from_sql("fired", fired)?,
        skipped: count_from_sql("skipped", skipped)?,
        missed: count_from_sql("missed", missed)?,
        last_note,
        updated_at: from_ms(updated_at)?,
    })
}

fn read_entries(conn: &Connection, sql: &str, params: impl rusqlite::Params) -> Result<Vec<ScheduleEntry>, StoreError> {
    let mut statement = conn.prepare_cached(sql).map_err(backend)?;
    let rows = statement.query_map(params, entry_row).map_err(backend)?;
    rows.map(|row| decode_entry(row.map_err(backend)?)).collect()
}

/// The due rows by ?1 (ms), at most ?2, after the position (?3, ?4, ?5, ?6) if `after`: a
/// range of the partial index `schedules_due`.
fn due_sql(after: bool) -> String {
    let position = if after { " AND (next_fire_ms, project_id, workflow_id, user_id) > (?3, ?4, ?5, ?6)" } else { "" };
    format!(
        "SELECT {SCHEDULE_COLUMNS} FROM schedules WHERE next_fire_ms IS NOT NULL AND next_fire_ms <= ?1{position}
         ORDER BY next_fire_ms, project_id, workflow_id, user_id LIMIT ?2"
    )
}

/// The records of project ?1's deliveries received at or after ?4 (ms), newest first, at most
/// ?5; of integration ?2, only unrouted ones, and before id ?3 when asked. Only the conditions
/// that apply, so that each variant reads one index in id order: the primary key (project, id),
/// `webhook_deliveries_by_integration` or the partial `webhook_deliveries_unrouted`.
fn deliveries_sql(integration: bool, unrouted_only: bool, before: bool) -> String {
    let mut sql = "SELECT record FROM webhook_deliveries WHERE project_id = ?1".to_string();
    if integration {
        sql.push_str(" AND integration = ?2");
    }
    if unrouted_only {
        sql.push_str(" AND unrouted = 1");
    }
    if before {
        sql.push_str(" AND id < ?3");
    }
    sql.push_str(" AND received_at_ms >= ?4 ORDER BY id DESC LIMIT ?5");
    sql
}

fn encode_cursor(entry: &ScheduleEntry, next_fire_ms: i64) -> Result<DueCursor, StoreError> {
    let position: DuePosition =
        (next_fire_ms, entry.project_id.clone(), entry.workflow_id.clone(), entry.user_id.clone());
    Ok(DueCursor(to_json(&position)?))
}

fn decode_cursor(cursor: &DueCursor) -> Result<DuePosition, StoreError> {
    from_json("due cursor", &cursor.0)
}

#[async_trait]
impl ScheduleStore for Sqlite {
    async fn put_schedule(&self, entry: &ScheduleEntry) -> Result<(), StoreError> {
        let (entry, encoded) = (entry.clone(), EncodedEntry::new(entry)?);
        self.call(move |conn| {
            conn.run(
                &format!(
                    "INSERT OR REPLACE INTO schedules ({SCHEDULE_COLUMNS})
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"
                ),
                params![
                    entry.project_id,
                    entry.workflow_id,
                    entry.user_id,
                    encoded.next_fire_ms,
                    entry.version,
                    entry.zone,
                    encoded.last_fire_ms,
                    entry.last_execution_id,
                    encoded.fired,
                    encoded.skipped,
                    encoded.missed,
                    entry.last_note,
                    encoded.updated_at_ms,
                ],
            )
            .map_err(backend)?;
            Ok(())
        })
        .await
    }

    async fn get_schedule(
        &self,
        project_id: &str,
        workflow_id: &str,
        user_id: &str,
    ) -> Result<Option<ScheduleEntry>, StoreError> {
        let (project_id, workflow_id, user_id) = (project_id.to_string(), workflow_id.to_string(), user_id.to_string());
        self.call(move |conn| {
            let row = conn
                .row(
                    &format!(
                        "SELECT {SCHEDULE_COLUMNS} FROM schedules
                         WHERE project_id = ?1 AND workflow_id = ?2 AND user_id = ?3"
                    ),
                    params![project_id, workflow_id, user_id],
                    entry_row,
                )
                .optional()
                .map_err(backend)?;
            row.map(decode_entry).transpose()
        })
        .await
    }

    async fn delete_schedule(&self, project_id: &str, workflow_id: &str, user_id: &str) -> Result<bool, StoreError> {
        let (project_id, workflow_id, user_id) = (project_id.to_string(), workflow_id.to_string(), user_id.to_string());
        self.call(move |conn| {
            let deleted = conn
                .run(
                    "DELETE FROM schedules WHERE project_id = ?1 AND workflow_id = ?2 AND user_id = ?3",
                    params![project_id, workflow_id, user_id],
                )
                .map_err(backend)?;
            Ok(deleted == 1)
        })
        .await
    }

    async fn due_schedules(
        &self,
        until: Timestamp,
        after: Option<&DueCursor>,
        limit: usize,
    ) -> Result<(Vec<ScheduleEntry>, Option<DueCursor>), StoreError> {
        let limit = limit.min(MAX_DUE_PAGE);
        if limit == 0 {
            // Nothing read: the next page starts where this one would have.
            return Ok((Vec::new(), after.cloned()));
        }
        let after = after.map(decode_cursor).transpose()?;
        let until_ms = to_ms(&until);
        self.call(move |conn| {
            let sql = due_sql(after.is_some());
            let entries = match &after {
                None => read_entries(conn, &sql, params![until_ms, limit as i64])?,
                Some((at, project_id, workflow_id, user_id)) => {
                    read_entries(conn, &sql, params![until_ms, limit as i64, at, project_id, workflow_id, user_id])?
                }
            };
            // A full page may have a successor; a short one was the last.
            let cursor = match entries.last() {
                Some(last) if entries.len() == limit => {
                    let at = last
                        .next_fire
                        .as_ref()
                        .map(to_ms)
                        .ok_or_else(|| StoreError::Corrupt("a due schedule row has no next fire".to_string()))?;
                    Some(encode_cursor(last, at)?)
                }
                _ => None,
            };
            Ok((entries, cursor))
        })
        .await
    }

    async fn advance_schedule(&self, expected: &ScheduleEntry, next: &ScheduleEntry) -> Result<bool, StoreError> {
        crate::ports::check_same_row(expected, next)?;
        let (expected_next, expected_version) = (expected.next_fire.as_ref().map(to_ms), expected.version);
        let (next, encoded) = (next.clone(), EncodedEntry::new(next)?);
        self.call(move |conn| {
            // `IS` compares NULL with NULL as equal: a parked row is expected parked.
            let changed = conn
                .run(
                    "UPDATE schedules SET next_fire_ms = ?4, version = ?5, zone = ?6, last_fire_ms = ?7,
                       last_execution_id = ?8, fired = ?9, skipped = ?10, missed = ?11, last_note = ?12,
                       updated_at_ms = ?13
                     WHERE project_id = ?1 AND workflow_id = ?2 AND user_id = ?3
                       AND next_fire_ms IS ?14 AND version = ?15",
                    params![
                        next.project_id,
                        next.workflow_id,
                        next.user_id,
                        encoded.next_fire_ms,
                        next.version,
                        next.zone,
                        encoded.last_fire_ms,
                        next.last_execution_id,
                        encoded.fired,
                        encoded.skipped,
                        encoded.missed,
                        next.last_note,
                        encoded.updated_at_ms,
                        expected_next,
                        expected_version,
                    ],
                )
                .map_err(backend)?;
            Ok(changed == 1)
        })
        .await
    }

    async fn list_schedules(
        &self,
        project_id: &str,
        workflow_id: Option<&str>,
        after: Option<(&str, &str)>,
        limit: usize,
    ) -> Result<Vec<ScheduleEntry>, StoreError> {
        let project_id = project_id.to_string();
        let workflow_id = workflow_id.map(str::to_string);
        let after = after.map(|(w, u)| (w.to_string(), u.to_string()));
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.call(move |conn| {
            // Only the conditions that apply, so that the primary key (project, workflow,
            // user) serves every variant as a range.
            let mut sql = format!("SELECT {SCHEDULE_COLUMNS} FROM schedules WHERE project_id = ?1");
            let mut values: Vec<&dyn rusqlite::ToSql> = vec![&project_id];
            if let Some(workflow_id) = &workflow_id {
                values.push(workflow_id);
                sql.push_str(&format!(" AND workflow_id = ?{}", values.len()));
            }
            if let Some((after_workflow, after_user)) = &after {
                values.push(after_workflow);
                values.push(after_user);
                sql.push_str(&format!(" AND (workflow_id, user_id) > (?{}, ?{})", values.len() - 1, values.len()));
            }
            values.push(&limit);
            sql.push_str(&format!(" ORDER BY workflow_id, user_id LIMIT ?{}", values.len()));
            read_entries(conn, &sql, values.as_slice())
        })
        .await
    }
}

#[async_trait]
impl PollStore for Sqlite {
    async fn get_seen(&self, project_id: &str, workflow_id: &str, user_id: &str) -> Result<SeenSet, StoreError> {
        let (project_id, workflow_id, user_id) = (project_id.to_string(), workflow_id.to_string(), user_id.to_string());
        self.call(move |conn| {
            let row: Option<(String, i64)> = conn
                .row(
                    "SELECT keys, version FROM poll_seen WHERE project_id = ?1 AND workflow_id = ?2 AND user_id = ?3",
                    params![project_id, workflow_id, user_id],
                    |row| Ok((row.get(0)?, row.get(1)?)),
                )
                .optional()
                .map_err(backend)?;
            match row {
                None => Ok(SeenSet::default()),
                Some((keys, version)) => Ok(SeenSet {
                    keys: from_json("seen keys", &keys)?,
                    version: count_from_sql("seen-set version", version)?,
                }),
            }
        })
        .await
    }

    async fn put_seen(
        &self,
        project_id: &str,
        workflow_id: &str,
        user_id: &str,
        keys: &[String],
        expected_version: u64,
    ) -> Result<bool, StoreError> {
        let (project_id, workflow_id, user_id) = (project_id.to_string(), workflow_id.to_string(), user_id.to_string());
        let keys = to_json(&crate::ports::newest_seen_keys(keys))?;
        let expected = count_to_sql("seen-set version", expected_version)?;
        let next = expected
            .checked_add(1)
            .ok_or_else(|| StoreError::TooLarge("the seen-set version is at its maximum".to_string()))?;
        self.call(move |conn| {
            let written = if expected == 0 {
                conn.run(
                    "INSERT INTO poll_seen (project_id, workflow_id, user_id, keys, version)
                     VALUES (?1, ?2, ?3, ?4, 1) ON CONFLICT (project_id, workflow_id, user_id) DO NOTHING",
                    params![project_id, workflow_id, user_id, keys],
                )
            } else {
                conn.run(
                    "UPDATE poll_seen SET keys = ?4, version = ?6
                     WHERE project_id = ?1 AND workflow_id = ?2 AND user_id = ?3 AND version = ?5",
                    params![project_id, workflow_id, user_id, keys, expected, next],
                )
            }
            .map_err(backend)?;
            Ok(written == 1)
        })
        .await
    }

    async fn delete_seen(&self, project_id: &str, workflow_id: &str, user_id: &str) -> Result<bool, StoreError> {
        let (project_id, workflow_id, user_id) = (project_id.to_string(), workflow_id.to_string(), user_id.to_string());
        self.call(move |conn| {
            let deleted = conn
                .run(
                    "DELETE FROM poll_seen WHERE project_id = ?1 AND workflow_id = ?2 AND user_id = ?3",
                    params![project_id, workflow_id, user_id],
                )
                .map_err(backend)?;
            Ok(deleted == 1)
        })
        .await
    }
}

#[async_trait]
impl WebhookStore for Sqlite {
    async fn put_delivery(&self, delivery: &WebhookDelivery) -> Result<(), StoreError> {
        let delivery = delivery.clone();
        self.call(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(backend)?;
            write_delivery(&tx, &delivery)?;
            tx.commit().map_err(backend)
        })
        .await
    }

    async fn delivered_events(
        &self,
        project_id: &str,
        integration: &str,
        event_ids: &[String],
    ) -> Result<Vec<bool>, StoreError> {
        crate::ports::check_event_ids(event_ids)?;
        let (project_id, integration, event_ids) =
            (project_id.to_string(), integration.to_string(), event_ids.to_vec());
        self.call(move |conn| read_delivered(conn, &project_id, &integration, &event_ids)).await
    }

    async fn route_lookup(
        &self,
        lookup: &RouteLookup<'_>,
        _users: &dyn crate::ports::ConnectStore,
    ) -> Result<Routes, StoreError> {
        crate::ports::check_event_ids(lookup.event_ids)?;
        crate::ports::check_event_ids(lookup.identities)?;
        let (project_id, integration) = (lookup.project_id.to_string(), lookup.integration.to_string());
        let (event_ids, identities) = (lookup.event_ids.to_vec(), lookup.identities.to_vec());
        let identity_key = lookup.identity_key.map(str::to_string);
        // One read, on one snapshot: the kept event ids, the identities' users, their choices.
        self.read(move |conn| {
            let tx = conn.transaction().map_err(backend)?;
            let delivered = read_delivered(&tx, &project_id, &integration, &event_ids)?;
            let mut users = Vec::with_capacity(identities.len());
            let mut enablement = HashMap::new();
            for value in &identities {
                let found = match &identity_key {
                    Some(key) => super::connect::read_users_by_identity(&tx, &project_id, &integration, key, value)?,
                    None => Vec::new(),
                };
                for user in &found {
                    if !enablement.contains_key(user) {
                        enablement.insert(user.clone(), super::connect::read_enablement(&tx, &project_id, user)?);
                    }
                }
                users.push(found);
            }
            tx.commit().map_err(backend)?;
            Ok(Routes { delivered, users, enablement })
        })
        .await
    }

    async fn get_delivery(&self, project_id: &str, delivery_id: &str) -> Result<Option<WebhookDelivery>, StoreError> {
        let (project_id, delivery_id) = (project_id.to_string(), delivery_id.to_string());
        self.call(move |conn| {
            let record: Option<String> = conn
                .row(
                    "SELECT record FROM webhook_deliveries
                     WHERE project_id = ?1 AND id = ?2 AND received_at_ms >= ?3",
                    params![project_id, delivery_id, now_ms().saturating_sub(RETENTION_MS)],
                    |row| row.get(0),
                )
                .optional()
                .map_err(backend)?;
            record.map(|text| from_json("webhook delivery", &text)).transpose()
        })
        .await
    }

    async fn list_deliveries(
        &self,
        project_id: &str,
        integration: Option<&str>,
        unrouted_only: bool,
        before: Option<&str>,
        limit: usize,
    ) -> Result<Vec<WebhookDelivery>, StoreError> {
        let (project_id, integration) = (project_id.to_string(), integration.map(str::to_string));
        let before = before.map(str::to_string);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.call(move |conn| {
            let sql = deliveries_sql(integration.is_some(), unrouted_only, before.is_some());
            let mut statement = conn.prepare_cached(&sql).map_err(backend)?;
            let cutoff = now_ms().saturating_sub(RETENTION_MS);
            let rows = statement
                .query_map(params![project_id, integration, before, cutoff, limit], |row| row.get::<_, String>(0))
                .map_err(backend)?;
            rows.map(|row| from_json("webhook delivery", &row.map_err(backend)?)).collect()
        })
        .await
    }
}

/// Whether a kept event id is there (by its key) and within the retention.
const DELIVERED_SQL: &str = "SELECT 1 FROM webhook_events
     WHERE project_id = ?1 AND integration = ?2 AND event_id = ?3 AND received_at_ms >= ?4";

/// Deletes up to [`CLEANUP_BATCH`] rows of `table` received before `?1`, found through its
/// `_by_age` index.
fn expired_sql(table: &str) -> String {
    format!(
        "DELETE FROM {table} WHERE rowid IN
           (SELECT rowid FROM {table} WHERE received_at_ms < ?1 LIMIT {CLEANUP_BATCH})"
    )
}

/// For each of `event_ids`, whether a delivery kept within the retention named it (see
/// `WebhookStore::delivered_events`).
fn read_delivered(
    conn: &Connection,
    project_id: &str,
    integration: &str,
    event_ids: &[String],
) -> Result<Vec<bool>, StoreError> {
    let mut statement = conn.prepare_cached(DELIVERED_SQL).map_err(backend)?;
    let cutoff = now_ms().saturating_sub(RETENTION_MS);
    event_ids
        .iter()
        .map(|event_id| statement.exists(params![project_id, integration, event_id, cutoff]).map_err(backend))
        .collect()
}

/// Writes `delivery` and the event ids it names in `tx` (see `WebhookStore::put_delivery`),
/// after removing a batch of expired ones.
pub(super) fn write_delivery(tx: &rusqlite::Transaction<'_>, delivery: &WebhookDelivery) -> Result<(), StoreError> {
    let record = to_json(delivery)?;
    let received_at_ms = to_ms(&delivery.received_at);
    let cutoff = now_ms().saturating_sub(RETENTION_MS);
    tx.run(&expired_sql("webhook_deliveries"), params![cutoff]).map_err(backend)?;
    tx.run(
        "INSERT OR REPLACE INTO webhook_deliveries (project_id, id, integration, received_at_ms, unrouted, record)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![delivery.project_id, delivery.id, delivery.integration, received_at_ms, delivery.unrouted, record],
    )
    .map_err(backend)?;
    tx.run(&expired_sql("webhook_events"), params![cutoff]).map_err(backend)?;
    let mut insert = tx
        .prepare_cached(
            "INSERT INTO webhook_events (project_id, integration, event_id, delivery_id, received_at_ms)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (project_id, integration, event_id) DO UPDATE
               SET delivery_id = excluded.delivery_id, received_at_ms = excluded.received_at_ms
               WHERE webhook_events.received_at_ms < ?6",
        )
        .map_err(backend)?;
    let event_ids =
        delivery.events.iter().filter(|event| event.outcome != "duplicate").filter_map(|e| e.event_id.as_ref());
    for event_id in event_ids {
        insert
            .execute(params![delivery.project_id, delivery.integration, event_id, delivery.id, received_at_ms, cutoff])
            .map_err(backend)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What SQLite plans for `sql`: the detail lines of `EXPLAIN QUERY PLAN`.
    fn plan(sql: &str) -> String {
        let db = Sqlite::in_memory().expect("database");
        let conn = db.conn.lock().expect("connection");
        let mut statement = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).expect("explain");
        let count = statement.parameter_count();
        let nulls = vec![rusqlite::types::Null; count];
        let rows = statement
            .query_map(rusqlite::params_from_iter(nulls), |row| row.get::<_, String>(3))
            .expect("plan")
            .collect::<Result<Vec<_>, _>>()
            .expect("plan rows");
        rows.join("; ")
    }

    #[test]
    fn due_rows_are_read_from_the_due_index_in_its_order() {
        for after in [false, true] {
            let plan = plan(&due_sql(after));
            assert!(plan.contains("USING INDEX schedules_due"), "after {after}: {plan}");
            assert!(!plan.contains("TEMP B-TREE"), "no sort: the index is in listing order: {plan}");
        }
    }

    #[test]
    fn kept_event_ids_are_found_by_their_key_and_expire_through_the_age_index() {
        let plan_of = plan(DELIVERED_SQL);
        assert!(plan_of.contains("USING INDEX sqlite_autoindex_webhook_events_1"), "{plan_of}");
        for table in ["webhook_events", "webhook_deliveries"] {
            let plan = plan(&expired_sql(table));
            assert!(plan.contains(&format!("{table}_by_age")), "{table}: {plan}");
            assert!(!plan.split("; ").any(|line| line == format!("SCAN {table}")), "no full scan: {plan}");
        }
    }

    #[test]
    fn each_delivery_listing_reads_an_index_in_id_order() {
        for (integration, unrouted, index) in [
            (false, false, "sqlite_autoindex_webhook_deliveries_1"),
            (true, false, "webhook_deliveries_by_integration"),
            (false, true, "webhook_deliveries_unrouted"),
        ] {
            for before in [false, true] {
                let plan = plan(&deliveries_sql(integration, unrouted, before));
                assert!(plan.contains(index), "{integration} {unrouted} {before}: {plan}");
                assert!(!plan.contains("TEMP B-TREE"), "no sort: {plan}");
            }
        }
    }
}

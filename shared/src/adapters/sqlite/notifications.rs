//! Failure notification destinations on SQLite: `notification_destinations`, one row per
//! (project, destination), the whole record (its secret sealed) as JSON.
//!
//! Invariant: `add_destination` counts the project's rows and inserts in one immediate
//! transaction, so concurrent adds never exceed the limit.

use async_trait::async_trait;
use rusqlite::{OptionalExtension, TransactionBehavior, params};

use super::{Cached, Sqlite, backend, from_json, to_json, to_ms};
use crate::ports::{NotificationDestination, NotificationStore, StoreError};

#[async_trait]
impl NotificationStore for Sqlite {
    async fn add_destination(&self, destination: &NotificationDestination, max: usize) -> Result<bool, StoreError> {
        let record = to_json(destination)?;
        let (project_id, id, created_at) =
            (destination.project_id.clone(), destination.id.clone(), to_ms(&destination.created_at));
        let max = i64::try_from(max).unwrap_or(i64::MAX);
        self.call(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(backend)?;
            let count: i64 = tx
                .row(
                    "SELECT COUNT(*) FROM notification_destinations WHERE project_id = ?1",
                    params![project_id],
                    |row| row.get(0),
                )
                .map_err(backend)?;
            if count >= max {
                return Ok(false);
            }
            let inserted = tx
                .run(
                    "INSERT INTO notification_destinations (project_id, id, created_at_ms, record)
                     VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING",
                    params![project_id, id, created_at, record],
                )
                .map_err(backend)?;
            if inserted == 0 {
                return Err(StoreError::AlreadyExists(format!("notification destination `{id}`")));
            }
            tx.commit().map_err(backend)?;
            Ok(true)
        })
        .await
    }

    async fn get_destination(
        &self,
        project_id: &str,
        destination_id: &str,
    ) -> Result<Option<NotificationDestination>, StoreError> {
        let (project_id, destination_id) = (project_id.to_string(), destination_id.to_string());
        self.call(move |conn| {
            let record: Option<String> = conn
                .row(
                    "SELECT record FROM notification_destinations WHERE project_id = ?1 AND id = ?2",
                    params![project_id, destination_id],
                    |row| row.get(0),
                )
                .optional()
                .map_err(backend)?;
            record.map(|text| from_json("notification destination", &text)).transpose()
        })
        .await
    }

    async fn list_destinations(&self, project_id: &str) -> Result<Vec<NotificationDestination>, StoreError> {
        let project_id = project_id.to_string();
        self.call(move |conn| {
            let mut statement = conn
                .prepare_cached("SELECT record FROM notification_destinations WHERE project_id = ?1 ORDER BY id")
                .map_err(backend)?;
            let rows = statement.query_map(params![project_id], |row| row.get::<_, String>(0)).map_err(backend)?;
            rows.map(|row| from_json("notification destination", &row.map_err(backend)?)).collect()
        })
        .await
    }

    async fn delete_destination(&self, project_id: &str, destination_id: &str) -> Result<bool, StoreError> {
        let (project_id, destination_id) = (project_id.to_string(), destination_id.to_string());
        self.call(move |conn| {
            let deleted = conn
                .run(
                    "DELETE FROM notification_destinations WHERE project_id = ?1 AND id = ?2",
                    params![project_id, destination_id],
                )
                .map_err(backend)?;
            Ok(deleted > 0)
        })
        .await
    }
}

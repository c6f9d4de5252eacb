//! The connect layer's ports on SQLite: `integrations` (one row per deployed integration,
//! its record as JSON), `users`, `enablement` (one row per explicit choice), `settings`
//! (one row per stored value), `credentials` (one row per user and integration, the sealed
//! record as JSON) and `credential_identities` (one row per identity entry of a credentials
//! row). Every statement is keyed by project and user, except the identity lookup, which is
//! keyed by project, integration and identity entry.
//!
//! Invariant: `credential_identities` holds exactly the identity entries of the stored
//! credentials: every write of a credentials row that may change its identity rewrites the
//! row's entries in the same transaction (a swap that keeps the identity leaves them).

use std::collections::BTreeMap;

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use serde_json::Value;

use super::{Cached, Sqlite, backend, from_json, from_ms, to_json, to_ms};
use crate::ports::{
    ConnectedUser, CredentialRecord, CredentialStore, Enablement, EnablementStore, IntegrationRecord, IntegrationStore,
    MAX_USERS_BY_IDENTITY, MAX_USERS_PAGE, SettingsScope, SettingsStore, StoreError, Switch, UserMeta, UserStore,
    check_setting_values, credential_json, identity_key_fits, identity_value_fits,
};
use crate::record::now;

#[async_trait]
impl IntegrationStore for Sqlite {
    async fn put_integrations(&self, project_id: &str, integrations: &[IntegrationRecord]) -> Result<(), StoreError> {
        let rows = integrations
            .iter()
            .map(|record| Ok((record.name.clone(), to_json(record)?)))
            .collect::<Result<Vec<_>, StoreError>>()?;
        let project_id = project_id.to_string();
        self.call(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(backend)?;
            tx.run("DELETE FROM integrations WHERE project_id = ?1", params![project_id]).map_err(backend)?;
            for (name, record) in &rows {
                tx.run(
                    "INSERT INTO integrations (project_id, name, record) VALUES (?1, ?2, ?3)",
                    params![project_id, name, record],
                )
                .map_err(backend)?;
            }
            tx.commit().map_err(backend)
        })
        .await
    }

    async fn list_integrations(&self, project_id: &str) -> Result<Vec<IntegrationRecord>, StoreError> {
        let project_id = project_id.to_string();
        self.call(move |conn| {
            let mut statement = conn
                .prepare_cached("SELECT record FROM integrations WHERE project_id = ?1 ORDER BY name")
                .map_err(backend)?;
            let rows = statement.query_map(params![project_id], |row| row.get::<_, String>(0)).map_err(backend)?;
            rows.map(|row| from_json("integration record", &row.map_err(backend)?)).collect()
        })
        .await
    }

    async fn get_integration(&self, project_id: &str, name: &str) -> Result<Option<IntegrationRecord>, StoreError> {
        let (project_id, name) = (project_id.to_string(), name.to_string());
        self.call(move |conn| {
            let text: Option<String> = conn
                .row(
                    "SELECT record FROM integrations WHERE project_id = ?1 AND name = ?2",
                    params![project_id, name],
                    |row| row.get(0),
                )
                .optional()
                .map_err(backend)?;
            text.map(|t| from_json("integration record", &t)).transpose()
        })
        .await
    }
}

#[async_trait]
impl UserStore for Sqlite {
    async fn ensure_user(&self, project_id: &str, user_id: &str) -> Result<bool, StoreError> {
        let (project_id, user_id) = (project_id.to_string(), user_id.to_string());
        self.call(move |conn| {
            let inserted = conn
                .run(
                    "INSERT INTO users (project_id, user_id, created_at_ms) VALUES (?1, ?2, ?3)
                     ON CONFLICT (project_id, user_id) DO NOTHING",
                    params![project_id, user_id, to_ms(&now())],
                )
                .map_err(backend)?;
            Ok(inserted == 1)
        })
        .await
    }

    async fn update_user(&self, project_id: &str, user_id: &str, meta: &UserMeta) -> Result<ConnectedUser, StoreError> {
        let (project_id, user_id, meta) = (project_id.to_string(), user_id.to_string(), meta.clone());
        self.call(move |conn| {
            conn.run(
                "INSERT INTO users (project_id, user_id, name, email, timezone, created_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (project_id, user_id) DO UPDATE SET
                   name = COALESCE(excluded.name, name),
                   email = COALESCE(excluded.email, email),
                   timezone = COALESCE(excluded.timezone, timezone)",
                params![project_id, user_id, meta.name, meta.email, meta.timezone, to_ms(&now())],
            )
            .map_err(backend)?;
            read_user(conn, &project_id, &user_id)?
                .ok_or_else(|| StoreError::Backend("the user just written is not there".into()))
        })
        .await
    }

    async fn get_user(&self, project_id: &str, user_id: &str) -> Result<Option<ConnectedUser>, StoreError> {
        let (project_id, user_id) = (project_id.to_string(), user_id.to_string());
        self.call(move |conn| read_user(conn, &project_id, &user_id)).await
    }

    async fn list_users(&self, project_id: &str, after: Option<&str>, limit: usize) -> Result<Vec<String>, StoreError> {
        let (project_id, after) = (project_id.to_string(), after.map(str::to_string));
        // The primary key (project, user) orders the ids (BINARY: UTF-8 byte order).
        let limit = limit.min(MAX_USERS_PAGE) as i64;
        self.call(move |conn| {
            // Each statement reads a range of the primary key.
            let mut statement = conn
                .prepare_cached(match after {
                    None => "SELECT user_id FROM users WHERE project_id = ?1 ORDER BY user_id LIMIT ?2",
                    Some(_) => {
                        "SELECT user_id FROM users WHERE project_id = ?1 AND user_id > ?3 ORDER BY user_id LIMIT ?2"
                    }
                })
                .map_err(backend)?;
            let rows = match &after {
                None => statement.query_map(params![project_id, limit], user_id_column),
                Some(after) => statement.query_map(params![project_id, limit, after], user_id_column),
            }
            .map_err(backend)?;
            rows.map(|row| row.map_err(backend)).collect()
        })
        .await
    }
}

fn user_id_column(row: &rusqlite::Row<'_>) -> rusqlite::Result<String> {
    row.get(0)
}

fn read_user(
    conn: &rusqlite::Connection,
    project_id: &str,
    user_id: &str,
) -> Result<Option<ConnectedUser>, StoreError> {
    let row = conn
        .row(
            "SELECT name, email, timezone, created_at_ms FROM users WHERE project_id = ?1 AND user_id = ?2",
            params![project_id, user_id],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get::<_, i64>(3)?)),
        )
        .optional()
        .map_err(backend)?;
    row.map(|(name, email, timezone, created)| {
        Ok(ConnectedUser {
            user_id: user_id.to_string(),
            meta: UserMeta { name, email, timezone },
            created_at: from_ms(created)?,
        })
    })
    .transpose()
}

#[async_trait]
impl EnablementStore for Sqlite {
    async fn enablement(&self, project_id: &str, user_id: &str) -> Result<Enablement, StoreError> {
        let (project_id, user_id) = (project_id.to_string(), user_id.to_string());
        self.call(move |conn| read_enablement(conn, &project_id, &user_id)).await
    }

    async fn set_enabled(
        &self,
        project_id: &str,
        user_id: &str,
        switch: &Switch,
        enabled: bool,
    ) -> Result<Option<bool>, StoreError> {
        let (project_id, user_id) = (project_id.to_string(), user_id.to_string());
        let (kind, target) = switch.key();
        let target = target.to_string();
        self.call(move |conn| {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(backend)?;
            let before: Option<bool> = tx
                .row(
                    "SELECT enabled FROM enablement WHERE project_id = ?1 AND user_id = ?2 AND kind = ?3 AND target = ?4",
                    params![project_id, user_id, kind, target],
                    |row| row.get(0),
                )
                .optional()
                .map_err(backend)?;
            tx.run(
                "INSERT INTO enablement (project_id, user_id, kind, target, enabled) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (project_id, user_id, kind, target) DO UPDATE SET enabled = excluded.enabled",
                params![project_id, user_id, kind, target, enabled],
            )
            .map_err(backend)?;
            tx.commit().map_err(backend)?;
            Ok(before)
        })
        .await
    }
}

#[async_trait]
impl SettingsStore for Sqlite {
    async fn get_settings(
        &self,
        project_id: &str,
        user_id: &str,
        scope: &SettingsScope,
    ) -> Result<BTreeMap<String, Value>, StoreError> {
        let (project_id, user_id, scope) = (project_id.to_string(), user_id.to_string(), scope.key());
        self.call(move |conn| {
            let mut statement = conn
                .prepare_cached(
                    "SELECT setting_id, value FROM settings WHERE project_id = ?1 AND user_id = ?2 AND scope = ?3",
                )
                .map_err(backend)?;
            let rows = statement
                .query_map(params![project_id, user_id, scope], |row| {
                    Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
                })
                .map_err(backend)?;
            rows.map(|row| {
                let (id, text) = row.map_err(backend)?;
                Ok((id, from_json("setting value", &text)?))
            })
            .collect()
        })
        .await
    }

    async fn put_settings(
        &self,
        project_id: &str,
        user_id: &str,
        scope: &SettingsScope,
        values: &BTreeMap<String, Value>,
    ) -> Result<(), StoreError> {
        let rows = check_setting_values(values)?;
        let (project_id, user_id, scope) = (project_id.to_string(), user_id.to_string(), scope.key());
        self.call(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(backend)?;
            for (id, text) in &rows {
                match text {
                    Some(text) => tx.run(
                        "INSERT INTO settings (project_id, user_id, scope, setting_id, value) VALUES (?1, ?2, ?3, ?4, ?5)
                         ON CONFLICT (project_id, user_id, scope, setting_id) DO UPDATE SET value = excluded.value",
                        params![project_id, user_id, scope, id, text],
                    ),
                    None => tx.run(
                        "DELETE FROM settings WHERE project_id = ?1 AND user_id = ?2 AND scope = ?3 AND setting_id = ?4",
                        params![project_id, user_id, scope, id],
                    ),
                }
                .map_err(backend)?;
            }
            tx.commit().map_err(backend)
        })
        .await
    }
}

#[async_trait]
impl CredentialStore for Sqlite {
    async fn put_credentials(
        &self,
        project_id: &str,
        user_id: &str,
        integration: &str,
        record: &CredentialRecord,
    ) -> Result<(), StoreError> {
        let text = credential_json(record)?;
        let identity = record.identity.clone();
        let (project_id, user_id, integration) = (project_id.to_string(), user_id.to_string(), integration.to_string());
        self.call(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(backend)?;
            tx.run(
                "INSERT INTO credentials (project_id, user_id, integration, record) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (project_id, user_id, integration) DO UPDATE SET record = excluded.record",
                params![project_id, user_id, integration, text],
            )
            .map_err(backend)?;
            index_identity(&tx, &project_id, &user_id, &integration, &identity)?;
            tx.commit().map_err(backend)
        })
        .await
    }

    async fn get_credentials(
        &self,
        project_id: &str,
        user_id: &str,
        integration: &str,
    ) -> Result<Option<CredentialRecord>, StoreError> {
        let (project_id, user_id, integration) = (project_id.to_string(), user_id.to_string(), integration.to_string());
        self.call(move |conn| {
            let text: Option<String> = conn
                .row(
                    "SELECT record FROM credentials WHERE project_id = ?1 AND user_id = ?2 AND integration = ?3",
                    params![project_id, user_id, integration],
                    |row| row.get(0),
                )
                .optional()
                .map_err(backend)?;
            text.map(|t| from_json("credential record", &t)).transpose()
        })
        .await
    }

    async fn swap_credentials(
        &self,
        project_id: &str,
        user_id: &str,
        integration: &str,
        old: &CredentialRecord,
        new: &CredentialRecord,
    ) -> Result<bool, StoreError> {
        let (old_text, new_text) = (credential_json(old)?, credential_json(new)?);
        // The index changes only with the identity: a token refresh leaves it alone.
        let identity = (old.identity != new.identity).then(|| new.identity.clone());
        let (project_id, user_id, integration) = (project_id.to_string(), user_id.to_string(), integration.to_string());
        self.call(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(backend)?;
            let swapped = tx
                .run(
                    "UPDATE credentials SET record = ?5
                     WHERE project_id = ?1 AND user_id = ?2 AND integration = ?3 AND record = ?4",
                    params![project_id, user_id, integration, old_text, new_text],
                )
                .map_err(backend)?
                == 1;
            if let (true, Some(identity)) = (swapped, &identity) {
                index_identity(&tx, &project_id, &user_id, &integration, identity)?;
            }
            tx.commit().map_err(backend)?;
            Ok(swapped)
        })
        .await
    }

    async fn delete_credentials(&self, project_id: &str, user_id: &str, integration: &str) -> Result<bool, StoreError> {
        let (project_id, user_id, integration) = (project_id.to_string(), user_id.to_string(), integration.to_string());
        self.call(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(backend)?;
            let deleted = tx
                .run(
                    "DELETE FROM credentials WHERE project_id = ?1 AND user_id = ?2 AND integration = ?3",
                    params![project_id, user_id, integration],
                )
                .map_err(backend)?;
            index_identity(&tx, &project_id, &user_id, &integration, &BTreeMap::new())?;
            tx.commit().map_err(backend)?;
            Ok(deleted > 0)
        })
        .await
    }

    async fn users_by_identity(
        &self,
        project_id: &str,
        integration: &str,
        key: &str,
        value: &str,
    ) -> Result<Vec<String>, StoreError> {
        let (project_id, integration) = (project_id.to_string(), integration.to_string());
        let (key, value) = (key.to_string(), value.to_string());
        self.call(move |conn| read_users_by_identity(conn, &project_id, &integration, &key, &value)).await
    }
}

/// The user's choices (see `EnablementStore::enablement`).
pub(super) fn read_enablement(conn: &Connection, project_id: &str, user_id: &str) -> Result<Enablement, StoreError> {
    let mut statement = conn
        .prepare_cached("SELECT kind, target, enabled FROM enablement WHERE project_id = ?1 AND user_id = ?2")
        .map_err(backend)?;
    let rows = statement
        .query_map(params![project_id, user_id], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?, row.get::<_, bool>(2)?))
        })
        .map_err(backend)?;
    let mut enablement = Enablement::default();
    for row in rows {
        let (kind, target, enabled) = row.map_err(backend)?;
        match kind.as_str() {
            "integration" => enablement.integrations.insert(target, enabled),
            _ => enablement.workflows.insert(target, enabled),
        };
    }
    Ok(enablement)
}

/// The users whose identity for `integration` is (`key`, `value`) (see
/// `UserStore::users_by_identity`); none for a key or value outside the limits.
pub(super) fn read_users_by_identity(
    conn: &Connection,
    project_id: &str,
    integration: &str,
    key: &str,
    value: &str,
) -> Result<Vec<String>, StoreError> {
    if !identity_key_fits(key) || !identity_value_fits(value) {
        return Ok(Vec::new());
    }
    let mut statement = conn.prepare_cached(&identity_users_sql()).map_err(backend)?;
    let rows = statement
        .query_map(params![project_id, integration, key, value], |row| row.get::<_, String>(0))
        .map_err(backend)?;
    rows.map(|row| row.map_err(backend)).collect()
}

/// The users of one identity, in user id order: the primary key's order past its four
/// equal columns (no `ORDER BY`, see `super::Cached`).
pub(super) fn identity_users_sql() -> String {
    format!(
        "SELECT user_id FROM credential_identities INDEXED BY sqlite_autoindex_credential_identities_1
         WHERE project_id = ?1 AND integration = ?2 AND identity_key = ?3 AND identity_value = ?4
         LIMIT {MAX_USERS_BY_IDENTITY}"
    )
}

/// Makes `identity` what the index holds for the user's credentials for `integration`
/// (empty: nothing), inside the caller's transaction: the rows of the record it replaces go.
fn index_identity(
    conn: &rusqlite::Connection,
    project_id: &str,
    user_id: &str,
    integration: &str,
    identity: &BTreeMap<String, String>,
) -> Result<(), StoreError> {
    conn.run(
        "DELETE FROM credential_identities WHERE project_id = ?1 AND user_id = ?2 AND integration = ?3",
        params![project_id, user_id, integration],
    )
    .map_err(backend)?;
    let mut insert = conn
        .prepare_cached(
            "INSERT INTO credential_identities (project_id, integration, identity_key, identity_value, user_id)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )
        .map_err(backend)?;
    for (key, value) in identity {
        insert.execute(params![project_id, integration, key, value, user_id]).map_err(backend)?;
    }
    Ok(())
}

//! `ProjectStore` and `WorkflowStore` on SQLite.
//!
//! Invariants: a project is created with `INSERT ... ON CONFLICT DO NOTHING` (nothing
//! inserted means it exists); a deploy reads the live pointer and writes the new version and
//! the pointer in one IMMEDIATE transaction, so concurrent deploys (even from other
//! processes sharing the file) cannot share or skip a version; versions are never changed.

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::{Cached, Sqlite, backend, from_json, from_ms, to_json, to_ms};
use crate::model::Workflow;
use crate::model::project::AppEvent;
use crate::ports::{AppEventStore, Deployment, Project, ProjectStore, SampleStore, StoreError, WorkflowStore};
use crate::record::Timestamp;
use serde_json::Value;

#[async_trait]
impl ProjectStore for Sqlite {
    async fn create_project(&self, project: &Project) -> Result<(), StoreError> {
        let project = project.clone();
        self.call(move |conn| {
            let inserted = conn
                .run(
                    "INSERT INTO projects (id, signing_public_key_pem, api_key_sha256, created_at_ms)
                     VALUES (?1, ?2, ?3, ?4) ON CONFLICT (id) DO NOTHING",
                    params![
                        project.id,
                        project.signing_public_key_pem,
                        project.api_key_sha256,
                        to_ms(&project.created_at)
                    ],
                )
                .map_err(backend)?;
            if inserted == 0 {
                return Err(StoreError::AlreadyExists(format!("project {}", project.id)));
            }
            Ok(())
        })
        .await
    }

    async fn get_project(&self, project_id: &str) -> Result<Option<Project>, StoreError> {
        let project_id = project_id.to_string();
        self.call(move |conn| {
            let row = conn
                .row(
                    "SELECT id, signing_public_key_pem, api_key_sha256, created_at_ms FROM projects WHERE id = ?1",
                    params![project_id],
                    |row| Ok((row.get::<_, String>(0)?, row.get(1)?, row.get(2)?, row.get::<_, i64>(3)?)),
                )
                .optional()
                .map_err(backend)?;
            row.map(|(id, signing_public_key_pem, api_key_sha256, created_at)| {
                Ok(Project { id, signing_public_key_pem, api_key_sha256, created_at: from_ms(created_at)? })
            })
            .transpose()
        })
        .await
    }
}

/// A workflow version's row: (definition JSON, deployed at ms).
fn version_row(
    conn: &Connection,
    project_id: &str,
    workflow_id: &str,
    version: u32,
) -> Result<Option<(String, i64)>, StoreError> {
    conn.row(
        "SELECT definition, deployed_at_ms FROM workflow_versions
         WHERE project_id = ?1 AND workflow_id = ?2 AND version = ?3",
        params![project_id, workflow_id, version],
        |row| Ok((row.get(0)?, row.get(1)?)),
    )
    .optional()
    .map_err(backend)
}

fn decode_deployment(
    project_id: &str,
    workflow_id: &str,
    version: u32,
    definition: &str,
    deployed_at: i64,
) -> Result<Deployment, StoreError> {
    Ok(Deployment {
        project_id: project_id.to_string(),
        workflow_id: workflow_id.to_string(),
        version,
        workflow: from_json("workflow definition", definition)?,
        deployed_at: from_ms(deployed_at)?,
    })
}

fn read_version(
    conn: &Connection,
    project_id: &str,
    workflow_id: &str,
    version: u32,
) -> Result<Option<Deployment>, StoreError> {
    version_row(conn, project_id, workflow_id, version)?
        .map(|(definition, deployed_at)| decode_deployment(project_id, workflow_id, version, &definition, deployed_at))
        .transpose()
}

/// The live version's number and row, if the workflow is deployed.
fn deployed_row(
    conn: &Connection,
    project_id: &str,
    workflow_id: &str,
) -> Result<Option<(u32, String, i64)>, StoreError> {
    let version: Option<u32> = conn
        .row(
            "SELECT version FROM deployed WHERE project_id = ?1 AND workflow_id = ?2",
            params![project_id, workflow_id],
            |row| row.get(0),
        )
        .optional()
        .map_err(backend)?;
    let Some(version) = version else {
        return Ok(None);
    };
    match version_row(conn, project_id, workflow_id, version)? {
        Some((definition, deployed_at)) => Ok(Some((version, definition, deployed_at))),
        None => Err(StoreError::Corrupt(format!("{project_id}/{workflow_id} points at missing version {version}"))),
    }
}

fn read_deployed(conn: &Connection, project_id: &str, workflow_id: &str) -> Result<Option<Deployment>, StoreError> {
    deployed_row(conn, project_id, workflow_id)?
        .map(|(version, definition, deployed_at)| {
            decode_deployment(project_id, workflow_id, version, &definition, deployed_at)
        })
        .transpose()
}

#[async_trait]
impl WorkflowStore for Sqlite {
    async fn deploy_workflow(&self, project_id: &str, workflow: &Workflow) -> Result<Deployment, StoreError> {
        let project_id = project_id.to_string();
        let workflow = workflow.clone();
        let definition = to_json(&workflow)?;
        self.call(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(backend)?;
            if let Some((version, current, deployed_at)) = deployed_row(&tx, &project_id, &workflow.id)? {
                // Same text, or the same definition written differently: nothing to deploy. A
                // live definition this build cannot read any more is simply replaced.
                match decode_deployment(&project_id, &workflow.id, version, &current, deployed_at) {
                    Ok(live) if current == definition || live.workflow == workflow => return Ok(live),
                    Err(e) if current == definition => return Err(e),
                    _ => {}
                }
            }
            let latest: Option<u32> = tx
                .row(
                    "SELECT MAX(version) FROM workflow_versions WHERE project_id = ?1 AND workflow_id = ?2",
                    params![project_id, workflow.id],
                    |row| row.get(0),
                )
                .map_err(backend)?;
            let version = latest
                .unwrap_or(0)
                .checked_add(1)
                .ok_or_else(|| StoreError::Corrupt(format!("{project_id}/{}: no version number left", workflow.id)))?;
            let deployed_at = crate::record::now();
            tx.run(
                "INSERT INTO workflow_versions (project_id, workflow_id, version, definition, deployed_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![project_id, workflow.id, version, definition, to_ms(&deployed_at)],
            )
            .map_err(backend)?;
            tx.run(
                "INSERT INTO deployed (project_id, workflow_id, version) VALUES (?1, ?2, ?3)
                 ON CONFLICT (project_id, workflow_id) DO UPDATE SET version = excluded.version",
                params![project_id, workflow.id, version],
            )
            .map_err(backend)?;
            tx.commit().map_err(backend)?;
            Ok(Deployment { project_id, workflow_id: workflow.id.clone(), version, workflow, deployed_at })
        })
        .await
    }

    async fn get_deployed(&self, project_id: &str, workflow_id: &str) -> Result<Option<Deployment>, StoreError> {
        let (project_id, workflow_id) = (project_id.to_string(), workflow_id.to_string());
        self.call(move |conn| read_deployed(conn, &project_id, &workflow_id)).await
    }

    async fn get_version(
        &self,
        project_id: &str,
        workflow_id: &str,
        version: u32,
    ) -> Result<Option<Deployment>, StoreError> {
        let (project_id, workflow_id) = (project_id.to_string(), workflow_id.to_string());
        self.call(move |conn| read_version(conn, &project_id, &workflow_id, version)).await
    }

    async fn list_deployed(&self, project_id: &str) -> Result<Vec<Deployment>, StoreError> {
        let project_id = project_id.to_string();
        self.call(move |conn| {
            let mut statement = conn
                .prepare_cached(
                    "SELECT d.workflow_id, d.version, v.definition, v.deployed_at_ms
                     FROM deployed d JOIN workflow_versions v
                       ON v.project_id = d.project_id AND v.workflow_id = d.workflow_id AND v.version = d.version
                     WHERE d.project_id = ?1 ORDER BY d.workflow_id",
                )
                .map_err(backend)?;
            let rows = statement
                .query_map(params![project_id], |row| {
                    Ok((
                        row.get::<_, String>(0)?,
                        row.get::<_, u32>(1)?,
                        row.get::<_, String>(2)?,
                        row.get::<_, i64>(3)?,
                    ))
                })
                .map_err(backend)?;
            let mut deployments = Vec::new();
            for row in rows {
                let (workflow_id, version, definition, deployed_at) = row.map_err(backend)?;
                deployments.push(decode_deployment(&project_id, &workflow_id, version, &definition, deployed_at)?);
            }
            Ok(deployments)
        })
        .await
    }

    async fn undeploy_workflow(&self, project_id: &str, workflow_id: &str) -> Result<bool, StoreError> {
        let (project_id, workflow_id) = (project_id.to_string(), workflow_id.to_string());
        self.call(move |conn| {
            let removed = conn
                .run(
                    "DELETE FROM deployed WHERE project_id = ?1 AND workflow_id = ?2",
                    params![project_id, workflow_id],
                )
                .map_err(backend)?;
            Ok(removed > 0)
        })
        .await
    }
}

#[async_trait]
impl AppEventStore for Sqlite {
    async fn put_app_events(&self, project_id: &str, events: &[AppEvent]) -> Result<(), StoreError> {
        let (project_id, events) = (project_id.to_string(), to_json(&events)?);
        self.call(move |conn| {
            conn.run(
                "INSERT INTO app_events (project_id, events) VALUES (?1, ?2)
                 ON CONFLICT (project_id) DO UPDATE SET events = excluded.events",
                params![project_id, events],
            )
            .map_err(backend)?;
            Ok(())
        })
        .await
    }

    async fn app_events(&self, project_id: &str) -> Result<Vec<AppEvent>, StoreError> {
        let project_id = project_id.to_string();
        self.call(move |conn| {
            let events: Option<String> = conn
                .row("SELECT events FROM app_events WHERE project_id = ?1", params![project_id], |row| row.get(0))
                .optional()
                .map_err(backend)?;
            events.map_or(Ok(Vec::new()), |events| from_json("app events", &events))
        })
        .await
    }
}

#[async_trait]
impl SampleStore for Sqlite {
    async fn arm_capture(
        &self,
        project_id: &str,
        workflow_id: &str,
        token_sha256: &str,
        expires_at: Timestamp,
    ) -> Result<(), StoreError> {
        let (project_id, workflow_id, token) =
            (project_id.to_string(), workflow_id.to_string(), token_sha256.to_string());
        let expires_at = to_ms(&expires_at);
        self.call(move |conn| {
            conn.run(
                "INSERT INTO test_requests (project_id, workflow_id, token_sha256, expires_at_ms) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (project_id, workflow_id)
                 DO UPDATE SET token_sha256 = excluded.token_sha256, expires_at_ms = excluded.expires_at_ms",
                params![project_id, workflow_id, token, expires_at],
            )
            .map_err(backend)?;
            Ok(())
        })
        .await
    }

    async fn capture(
        &self,
        project_id: &str,
        workflow_id: &str,
        token_sha256: &str,
        sample: &Value,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let (project_id, workflow_id, token) =
            (project_id.to_string(), workflow_id.to_string(), token_sha256.to_string());
        let (sample, now) = (to_json(sample)?, to_ms(&now));
        self.call(move |conn| {
            let changed = conn
                .run(
                    "UPDATE test_requests SET sample = ?4, token_sha256 = NULL, expires_at_ms = NULL
                     WHERE project_id = ?1 AND workflow_id = ?2 AND token_sha256 = ?3 AND expires_at_ms > ?5",
                    params![project_id, workflow_id, token, sample, now],
                )
                .map_err(backend)?;
            Ok(changed == 1)
        })
        .await
    }

    async fn sample(&self, project_id: &str, workflow_id: &str) -> Result<Option<Value>, StoreError> {
        let (project_id, workflow_id) = (project_id.to_string(), workflow_id.to_string());
        self.call(move |conn| {
            let sample: Option<Option<String>> = conn
                .row(
                    "SELECT sample FROM test_requests WHERE project_id = ?1 AND workflow_id = ?2",
                    params![project_id, workflow_id],
                    |row| row.get(0),
                )
                .optional()
                .map_err(backend)?;
            sample.flatten().map(|text| from_json("test request sample", &text)).transpose()
        })
        .await
    }
}

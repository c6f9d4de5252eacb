//! Projects and workflow deployments on DynamoDB, in the project's partition
//! `PROJECT#<id>`.
//!
//! Invariants: a version item `WORKFLOW#<wf>#V#<version>` is written once and never changed;
//! the live pointer `LIVE#<wf>` (version + definition, so `get_deployed` is one read, and
//! listing a project's live workflows one query that reads no old version) only moves in the
//! same transaction that creates the version it points at, conditioned on the version it
//! pointed at before, so concurrent deploys cannot lose or share a version. Undeploying
//! deletes the pointer and keeps every version; the project's app events are one item,
//! `APP_EVENTS`.

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{Put, TransactWriteItem};

use super::{
    APP_EVENTS_SK, DynamoStore, Item, LIVE_PREFIX, PROJECT_SK, backend, conditional, deployed_sk, get_n, get_s, get_ts,
    ms, n, project_pk, s, version_prefix, version_sk,
};
use crate::model::Workflow;
use crate::model::project::AppEvent;
use crate::ports::{AppEventStore, Deployment, Project, ProjectStore, SampleStore, StoreError, WorkflowStore};
use crate::record::Timestamp;
use serde_json::Value;

/// How many times a deploy re-reads the pointer and tries again after losing a race.
const DEPLOY_ATTEMPTS: u32 = 5;

#[async_trait]
impl ProjectStore for DynamoStore {
    async fn create_project(&self, project: &Project) -> Result<(), StoreError> {
        let item: Item = [
            ("pk", s(project_pk(&project.id))),
            ("sk", s(PROJECT_SK)),
            ("project_id", s(&project.id)),
            ("signing_public_key_pem", s(&project.signing_public_key_pem)),
            ("api_key_sha256", s(&project.api_key_sha256)),
            ("created_at", ms(&project.created_at)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        if self.put_new(item).await? {
            Ok(())
        } else {
            Err(StoreError::AlreadyExists(format!("project {}", project.id)))
        }
    }

    async fn get_project(&self, project_id: &str) -> Result<Option<Project>, StoreError> {
        let Some(item) = self.get(project_pk(project_id), PROJECT_SK).await? else {
            return Ok(None);
        };
        Ok(Some(Project {
            id: get_s(&item, "project_id")?.to_string(),
            signing_public_key_pem: get_s(&item, "signing_public_key_pem")?.to_string(),
            api_key_sha256: get_s(&item, "api_key_sha256")?.to_string(),
            created_at: get_ts(&item, "created_at")?,
        }))
    }
}

/// A version item or the pointer, decoded.
fn decode_deployment(project_id: &str, item: &Item) -> Result<Deployment, StoreError> {
    let definition = get_s(item, "definition")?;
    Ok(Deployment {
        project_id: project_id.to_string(),
        workflow_id: get_s(item, "workflow_id")?.to_string(),
        version: get_n(item, "version")?,
        workflow: serde_json::from_str(definition)
            .map_err(|e| StoreError::Corrupt(format!("workflow definition: {e}")))?,
        deployed_at: get_ts(item, "deployed_at")?,
    })
}

impl DynamoStore {
    /// The highest version ever written for the workflow (deployed or not).
    async fn latest_version(&self, project_id: &str, workflow_id: &str) -> Result<Option<u32>, StoreError> {
        let output = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
            .expression_attribute_values(":pk", s(project_pk(project_id)))
            .expression_attribute_values(":prefix", s(version_prefix(workflow_id)))
            .scan_index_forward(false)
            .limit(1)
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| backend("Query", e))?;
        output.items.unwrap_or_default().first().map(|item| get_n(item, "version")).transpose()
    }

    /// One deploy attempt: Ok(None) if it lost a race and should re-read and retry.
    async fn try_deploy(
        &self,
        project_id: &str,
        workflow: &Workflow,
        definition: &str,
    ) -> Result<Option<Deployment>, StoreError> {
        let pk = project_pk(project_id);
        let pointer = self.get(pk.clone(), &deployed_sk(&workflow.id)).await?;
        let live = match &pointer {
            Some(item) => {
                let same_text = get_s(item, "definition")? == definition;
                // Same text, or the same definition written differently: nothing to deploy. A
                // live definition this build cannot read any more is simply replaced.
                match decode_deployment(project_id, item) {
                    Ok(live) if same_text || live.workflow == *workflow => return Ok(Some(live)),
                    Err(e) if same_text => return Err(e),
                    _ => {}
                }
                Some(get_n::<u32>(item, "version")?)
            }
            None => None,
        };
        let latest = match live {
            Some(version) => version,
            None => self.latest_version(project_id, &workflow.id).await?.unwrap_or(0),
        };
        let version = latest
            .checked_add(1)
            .ok_or_else(|| StoreError::Corrupt(format!("{project_id}/{}: no version number left", workflow.id)))?;
        let deployed_at = crate::record::now();
        let item = |sk: String| -> Item {
            [
                ("pk", s(&pk)),
                ("sk", s(sk)),
                ("workflow_id", s(&workflow.id)),
                ("version", n(version)),
                ("definition", s(definition)),
                ("deployed_at", ms(&deployed_at)),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect()
        };
        let build = |put: aws_sdk_dynamodb::types::builders::PutBuilder| {
            put.table_name(&self.table)
                .build()
                .map_err(|e| StoreError::Backend(format!("TransactWriteItems request: {e}")))
        };
        let new_version = build(
            Put::builder()
                .set_item(Some(item(version_sk(&workflow.id, version))))
                .condition_expression("attribute_not_exists(pk)"),
        )?;
        let pointer_put = Put::builder().set_item(Some(item(deployed_sk(&workflow.id))));
        let pointer_put = build(match live {
            Some(previous) => pointer_put
                .condition_expression("#version = :previous")
                .expression_attribute_names("#version", "version")
                .expression_attribute_values(":previous", n(previous)),
            None => pointer_put.condition_expression("attribute_not_exists(pk)"),
        })?;
        let result = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(new_version).build())
            .transact_items(TransactWriteItem::builder().put(pointer_put).build())
            .send()
            .await;
        match result {
            Ok(_) => Ok(Some(Deployment {
                project_id: project_id.to_string(),
                workflow_id: workflow.id.clone(),
                version,
                workflow: workflow.clone(),
                deployed_at,
            })),
            Err(e) => {
                let lost_race = e.as_service_error().and_then(|s| match s {
                    TransactWriteItemsError::TransactionCanceledException(cancel) => {
                        Some(cancel.cancellation_reasons().iter().all(|r| {
                            matches!(r.code(), None | Some("None" | "ConditionalCheckFailed" | "TransactionConflict"))
                        }))
                    }
                    _ => None,
                });
                if lost_race == Some(true) { Ok(None) } else { Err(backend("TransactWriteItems", e)) }
            }
        }
    }
}

#[async_trait]
impl WorkflowStore for DynamoStore {
    async fn deploy_workflow(&self, project_id: &str, workflow: &Workflow) -> Result<Deployment, StoreError> {
        let definition = serde_json::to_string(workflow)
            .map_err(|e| StoreError::Backend(format!("cannot encode the workflow: {e}")))?;
        for attempt in 1..=DEPLOY_ATTEMPTS {
            if let Some(deployment) = self.try_deploy(project_id, workflow, &definition).await? {
                return Ok(deployment);
            }
            tokio::time::sleep(Duration::from_millis(25 * u64::from(attempt))).await;
        }
        Err(StoreError::Backend(format!(
            "{project_id}/{}: concurrent deploys kept conflicting ({DEPLOY_ATTEMPTS} attempts); try again",
            workflow.id
        )))
    }

    async fn get_deployed(&self, project_id: &str, workflow_id: &str) -> Result<Option<Deployment>, StoreError> {
        let item = self.get(project_pk(project_id), &deployed_sk(workflow_id)).await?;
        item.map(|item| decode_deployment(project_id, &item)).transpose()
    }

    async fn get_version(
        &self,
        project_id: &str,
        workflow_id: &str,
        version: u32,
    ) -> Result<Option<Deployment>, StoreError> {
        let item = self.get(project_pk(project_id), &version_sk(workflow_id, version)).await?;
        item.map(|item| decode_deployment(project_id, &item)).transpose()
    }

    async fn list_deployed(&self, project_id: &str) -> Result<Vec<Deployment>, StoreError> {
        let items = self.with_prefix(project_pk(project_id), LIVE_PREFIX).await?;
        items.iter().map(|item| decode_deployment(project_id, item)).collect()
    }

    async fn undeploy_workflow(&self, project_id: &str, workflow_id: &str) -> Result<bool, StoreError> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(project_pk(project_id)))
            .key("sk", s(deployed_sk(workflow_id)))
            .condition_expression("attribute_exists(pk)")
            .send()
            .await;
        conditional("DeleteItem", result)
    }
}

#[async_trait]
impl AppEventStore for DynamoStore {
    async fn put_app_events(&self, project_id: &str, events: &[AppEvent]) -> Result<(), StoreError> {
        let events = serde_json::to_string(events)
            .map_err(|e| StoreError::Backend(format!("cannot encode the app events: {e}")))?;
        let item: Item = [("pk", s(project_pk(project_id))), ("sk", s(APP_EVENTS_SK)), ("events", s(events))]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| backend("PutItem", e))?;
        Ok(())
    }

    async fn app_events(&self, project_id: &str) -> Result<Vec<AppEvent>, StoreError> {
        let Some(item) = self.get(project_pk(project_id), APP_EVENTS_SK).await? else { return Ok(Vec::new()) };
        serde_json::from_str(get_s(&item, "events")?).map_err(|e| StoreError::Corrupt(format!("app events: {e}")))
    }
}

/// A workflow's test requests: one item, `TEST_REQUEST#<wf>`, with the armed token's hash and
/// expiry (`token`, `expires_at`) and the captured `sample` (JSON).
fn test_request_sk(workflow_id: &str) -> String {
    format!("TEST_REQUEST#{workflow_id}")
}

#[async_trait]
impl SampleStore for DynamoStore {
    async fn arm_capture(
        &self,
        project_id: &str,
        workflow_id: &str,
        token_sha256: &str,
        expires_at: Timestamp,
    ) -> Result<(), StoreError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(project_pk(project_id)))
            .key("sk", s(test_request_sk(workflow_id)))
            .update_expression("SET #token = :token, expires_at = :expires")
            .expression_attribute_names("#token", "token")
            .expression_attribute_values(":token", s(token_sha256))
            .expression_attribute_values(":expires", ms(&expires_at))
            .send()
            .await
            .map_err(|e| backend("UpdateItem", e))?;
        Ok(())
    }

    async fn capture(
        &self,
        project_id: &str,
        workflow_id: &str,
        token_sha256: &str,
        sample: &Value,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let sample = serde_json::to_string(sample)
            .map_err(|e| StoreError::Backend(format!("cannot encode the test request: {e}")))?;
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(project_pk(project_id)))
            .key("sk", s(test_request_sk(workflow_id)))
            .update_expression("SET #sample = :sample REMOVE #token, expires_at")
            .condition_expression("#token = :token AND expires_at > :now")
            .expression_attribute_names("#token", "token")
            .expression_attribute_names("#sample", "sample")
            .expression_attribute_values(":token", s(token_sha256))
            .expression_attribute_values(":now", ms(&now))
            .expression_attribute_values(":sample", s(sample))
            .send()
            .await;
        conditional("UpdateItem", result)
    }

    async fn sample(&self, project_id: &str, workflow_id: &str) -> Result<Option<Value>, StoreError> {
        let Some(item) = self.get(project_pk(project_id), &test_request_sk(workflow_id)).await? else {
            return Ok(None);
        };
        if !item.contains_key("sample") {
            return Ok(None);
        }
        serde_json::from_str(get_s(&item, "sample")?)
            .map(Some)
            .map_err(|e| StoreError::Corrupt(format!("test request sample: {e}")))
    }
}

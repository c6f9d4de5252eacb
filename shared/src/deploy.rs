//! Deploying a project: its workflows (each a new version only when its definition changed),
//! the workflows it no longer has undeployed, its integrations and its app events. Used by
//! `sluice dev` (on start and on every change), `sluice deploy` and the management API.
//!
//! Invariants: a definition is validated as a whole before anything is written (the loader
//! gives a [`ProjectDefinition`] only when no file has a problem); undeploying keeps every
//! version (running executions finish on theirs, history keeps them); a deploy that fails
//! half-way (a storage error) leaves each workflow either on its old or its new version, and
//! running the same deploy again converges.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::api::TEST_WORKFLOW_PREFIX;
use crate::model::project::{IMPLICIT_INTEGRATION, ProjectDefinition};
use crate::ports::{Deployment, IntegrationRecord, Store, StoreError};

/// What a deploy did to one workflow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum Change {
    /// Not deployed before: `version` is live.
    New { version: u32 },
    /// A changed definition: `to` replaced `from`.
    Changed { from: u32, to: u32 },
    /// The same definition: `version` stays live.
    Unchanged { version: u32 },
    /// No longer in the project: `version` was taken down.
    Undeployed { version: u32 },
}

/// One workflow's line of a deploy's report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Outcome {
    pub workflow_id: String,
    /// Its integration (None outside any).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub integration: Option<String>,
    /// The trigger `type`.
    pub trigger: String,
    #[serde(flatten)]
    pub change: Change,
}

impl Outcome {
    /// The line of `deployment` taken down.
    pub fn undeployed(deployment: &Deployment) -> Outcome {
        Outcome {
            workflow_id: deployment.workflow_id.clone(),
            integration: deployment.workflow.integration.clone(),
            trigger: deployment.workflow.trigger.type_name().to_string(),
            change: Change::Undeployed { version: deployment.version },
        }
    }

    /// `new v1`, `changed v2→v3`, `unchanged v4`, `undeployed v2`.
    pub fn describe(&self) -> String {
        match self.change {
            Change::New { version } => format!("new v{version}"),
            Change::Changed { from, to } => format!("changed v{from}→v{to}"),
            Change::Unchanged { version } => format!("unchanged v{version}"),
            Change::Undeployed { version } => format!("undeployed (was v{version})"),
        }
    }
}

/// The workflows a project has live (test-run definitions left out), by id.
pub async fn live(store: &dyn Store, project_id: &str) -> Result<BTreeMap<String, Deployment>, StoreError> {
    Ok(store
        .list_deployed(project_id)
        .await?
        .into_iter()
        .filter(|d| !d.workflow_id.starts_with(TEST_WORKFLOW_PREFIX))
        .map(|d| (d.workflow_id.clone(), d))
        .collect())
}

/// Deploys `definition` as project `project_id` (see the module doc): one [`Outcome`] per
/// workflow of the definition, in file order, then one per workflow undeployed.
pub async fn deploy_project(
    store: &dyn Store,
    project_id: &str,
    definition: &ProjectDefinition,
) -> Result<Vec<Outcome>, StoreError> {
    let mut before = live(store, project_id).await?;
    let mut outcomes = Vec::new();
    for (_, workflow) in definition.workflows() {
        let deployed = store.deploy_workflow(project_id, workflow).await?;
        let change = match before.remove(&workflow.id) {
            None => Change::New { version: deployed.version },
            Some(old) if old.version == deployed.version => Change::Unchanged { version: deployed.version },
            Some(old) => Change::Changed { from: old.version, to: deployed.version },
        };
        outcomes.push(Outcome {
            workflow_id: workflow.id.clone(),
            integration: workflow.integration.clone(),
            trigger: workflow.trigger.type_name().to_string(),
            change,
        });
    }
    for (workflow_id, old) in before {
        if store.undeploy_workflow(project_id, &workflow_id).await? {
            outcomes.push(Outcome::undeployed(&old));
        }
    }
    let records: Vec<IntegrationRecord> = definition
        .integrations
        .iter()
        .filter(|integration| integration.name != IMPLICIT_INTEGRATION)
        .map(|integration| IntegrationRecord {
            name: integration.name.clone(),
            config: integration.config.clone(),
            inputs: integration.inputs.clone(),
            workflows: integration.workflows.iter().map(|(_, wf)| wf.id.clone()).collect(),
        })
        .collect();
    store.put_integrations(project_id, &records).await?;
    store.put_app_events(project_id, &definition.events).await?;
    // Every user who has a schedule or poll workflow enabled gets its ledger row (armed for
    // the next tick); undeployed ones' rows are removed by the tick that finds them.
    crate::scheduler::sync_project(store, project_id).await?;
    crate::webhooks::forget_project(project_id);
    Ok(outcomes)
}

/// Undeploys one live workflow (test-run definitions are not deployments); its outcome, or
/// None when it is not deployed.
pub async fn undeploy_workflow(
    store: &dyn Store,
    project_id: &str,
    workflow_id: &str,
) -> Result<Option<Outcome>, StoreError> {
    if workflow_id.starts_with(TEST_WORKFLOW_PREFIX) {
        return Ok(None);
    }
    let Some(live) = store.get_deployed(project_id, workflow_id).await? else { return Ok(None) };
    let taken_down = store.undeploy_workflow(project_id, workflow_id).await?;
    crate::webhooks::forget_project(project_id);
    Ok(taken_down.then(|| Outcome::undeployed(&live)))
}

/// Undeploys every workflow of integration `name` and removes it from the project's
/// integrations; the outcomes of the workflows taken down (None if it is not deployed).
pub async fn undeploy_integration(
    store: &dyn Store,
    project_id: &str,
    name: &str,
) -> Result<Option<Vec<Outcome>>, StoreError> {
    let integrations = store.list_integrations(project_id).await?;
    let deployed = live(store, project_id).await?;
    let listed = integrations.iter().any(|i| i.name == name);
    let of_it: Vec<&Deployment> =
        deployed.values().filter(|d| d.workflow.integration.as_deref() == Some(name)).collect();
    if !listed && of_it.is_empty() {
        return Ok(None);
    }
    let mut outcomes = Vec::new();
    for deployment in of_it {
        if store.undeploy_workflow(project_id, &deployment.workflow_id).await? {
            outcomes.push(Outcome::undeployed(deployment));
        }
    }
    if listed {
        let kept: Vec<IntegrationRecord> = integrations.into_iter().filter(|i| i.name != name).collect();
        store.put_integrations(project_id, &kept).await?;
    }
    crate::webhooks::forget_project(project_id);
    Ok(Some(outcomes))
}

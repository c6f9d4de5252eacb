//! The triggers that start many executions at once, through the one start path: app events
//! (one event starts every deployed workflow listening to it that the user has enabled,
//! across integrations), Integration Enabled (a user switched an integration on) and OAuth
//! connected (a user (re)connected one through the hosted flow).
//!
//! Invariants: every listener passes the connect gate ([`Connect::gate_with`]) before it
//! starts; the executions a call starts are created together ([`start::start_many`]); and
//! every listener that did not start is reported with why. Nothing here parses HTTP.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde::Serialize;
use serde_json::{Value, json};

use crate::connect::Connect;
use crate::model::Trigger;
use crate::ports::{Deployment, Enablement, StartError, StoreError};
use crate::record::{TriggerData, TriggerKind, format_timestamp, now};
use crate::runner::Runner;
use crate::start::{self, NewExecution};

/// One app event to deliver for one user.
#[derive(Debug, Clone, PartialEq)]
pub struct AppEventCall {
    pub user_id: String,
    pub name: String,
    pub payload: Value,
}

/// A listening workflow that started for the user.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StartedExecution {
    pub workflow_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub integration: Option<String>,
    pub execution_id: String,
}

/// A listening workflow that did not start, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Skipped {
    pub workflow_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub integration: Option<String>,
    /// `not_enabled`, `integration_disabled` or `not_connected`.
    pub reason: &'static str,
    pub message: String,
}

/// What one trigger call did for one user.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub user_id: String,
    /// The event's name (app events only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    /// How many deployed workflows listen.
    pub listeners: usize,
    pub executions: Vec<StartedExecution>,
    pub skipped: Vec<Skipped>,
}

/// Why an app event call was refused before anything started.
#[derive(Debug, thiserror::Error)]
pub enum TriggerError {
    /// The project declares no app event of this name.
    #[error("no app event `{name}` is declared in this project (declared: {declared})")]
    UnknownEvent { name: String, declared: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Start(#[from] StartError),
}

impl TriggerError {
    pub fn is_retryable(&self) -> bool {
        match self {
            TriggerError::UnknownEvent { .. } => false,
            TriggerError::Store(error) => error.is_retryable(),
            TriggerError::Start(error) => error.is_retryable(),
        }
    }
}

/// Delivers `calls` (one event each) in project `project_id`: checks every name against the
/// declared events first (an unknown one refuses the whole call, nothing started), then starts
/// each listener the user has enabled — all the executions created together — and reports,
/// per call, what started and what did not.
pub async fn app_events(
    runner: &Runner,
    project_id: &str,
    calls: Vec<AppEventCall>,
) -> Result<Vec<Report>, TriggerError> {
    plan_app_events(runner, project_id, calls).await?.start(runner).await
}

/// [`app_events`] up to the start: what would start (execution ids chosen) and the reports,
/// so that the answer is known before anything starts (an idempotency claim records it).
pub async fn plan_app_events(
    runner: &Runner,
    project_id: &str,
    calls: Vec<AppEventCall>,
) -> Result<Planned, TriggerError> {
    let runtime = runner.runtime();
    let store = runtime.store.as_ref();
    let declared = store.app_events(project_id).await?;
    for call in &calls {
        if !declared.iter().any(|event| event.name == call.name) {
            let names: Vec<&str> = declared.iter().map(|event| event.name.as_str()).collect();
            let declared = if names.is_empty() { "none".to_string() } else { names.join(", ") };
            return Err(TriggerError::UnknownEvent { name: call.name.clone(), declared });
        }
    }
    let live = listeners(runner, project_id, |trigger| trigger.event().is_some()).await?;
    let mut starts = Vec::new();
    for call in calls {
        let of_event: Vec<Arc<Deployment>> =
            live.iter().filter(|d| d.workflow.trigger.event() == Some(call.name.as_str())).cloned().collect();
        let mut data = TriggerData::of(TriggerKind::AppEvent, call.payload);
        data.event = Some(call.name.clone());
        starts.push(StartFor {
            user_id: call.user_id,
            event: Some(call.name),
            deployments: of_event,
            data,
            id_key: None,
            enablement: None,
        });
    }
    plan_for(runner, project_id, starts).await
}

/// A user switched `integration` on (from off, or never chosen): starts its deployed
/// `integration_enabled` workflows the user has enabled.
pub async fn integration_enabled(
    runner: &Runner,
    project_id: &str,
    user_id: &str,
    integration: &str,
) -> Result<Report, TriggerError> {
    let payload = json!({ "integration": integration, "userId": user_id, "enabledAt": format_timestamp(&now()) });
    connection(runner, project_id, user_id, integration, TriggerKind::IntegrationEnabled, payload).await
}

/// A user (re)connected `integration` through the hosted OAuth flow: starts its deployed
/// `oauth_connected` workflows the user has enabled, with the connection's non-secret details
/// (`details`, never a token) as the payload.
pub async fn oauth_connected(
    runner: &Runner,
    project_id: &str,
    user_id: &str,
    integration: &str,
    details: Value,
) -> Result<Report, TriggerError> {
    connection(runner, project_id, user_id, integration, TriggerKind::OauthConnected, details).await
}

async fn connection(
    runner: &Runner,
    project_id: &str,
    user_id: &str,
    integration: &str,
    kind: TriggerKind,
    payload: Value,
) -> Result<Report, TriggerError> {
    let wanted = |trigger: &Trigger| match kind {
        TriggerKind::IntegrationEnabled => *trigger == Trigger::IntegrationEnabled,
        _ => *trigger == Trigger::OauthConnected,
    };
    let live = listeners(runner, project_id, wanted).await?;
    let of_it: Vec<Arc<Deployment>> =
        live.into_iter().filter(|d| d.workflow.integration.as_deref() == Some(integration)).collect();
    let data = TriggerData::of(kind, payload);
    let start = StartFor {
        user_id: user_id.to_string(),
        event: None,
        deployments: of_it,
        data,
        id_key: None,
        enablement: None,
    };
    let planned = plan_for(runner, project_id, vec![start]).await?;
    let mut reports = planned.start(runner).await?;
    Ok(reports.pop().unwrap_or_else(|| Report {
        user_id: user_id.to_string(),
        event: None,
        listeners: 0,
        executions: Vec::new(),
        skipped: Vec::new(),
    }))
}

/// The live workflows of the project whose trigger is `wanted`.
async fn listeners(
    runner: &Runner,
    project_id: &str,
    wanted: impl Fn(&Trigger) -> bool,
) -> Result<Vec<Arc<Deployment>>, StoreError> {
    let live = crate::deploy::live(runner.runtime().store.as_ref(), project_id).await?;
    Ok(live.into_values().filter(|d| wanted(&d.workflow.trigger)).map(Arc::new).collect())
}

/// The executions a trigger call starts, with their ids chosen, and its reports.
#[derive(Debug)]
pub struct Planned {
    /// One per call, in order: what starts (with its execution id) and what does not.
    pub reports: Vec<Report>,
    pub(crate) news: Vec<NewExecution>,
}

impl Planned {
    /// Starts the planned executions, all created together; the reports as planned.
    pub async fn start(self, runner: &Runner) -> Result<Vec<Report>, TriggerError> {
        if !self.news.is_empty() {
            start::start_many(runner, self.news).await?;
        }
        Ok(self.reports)
    }
}

/// What one call may start for one user.
#[derive(Debug, Clone)]
pub(crate) struct StartFor {
    pub user_id: String,
    /// The event's name (app events, webhooks).
    pub event: Option<String>,
    /// The listening deployments.
    pub deployments: Vec<Arc<Deployment>>,
    pub data: TriggerData,
    /// What the start is keyed by (a webhook's event id, a schedule's instant, a poll item):
    /// each execution's id is then derived from it, the workflow and the user
    /// ([`crate::fires`]), so that a repeat cannot start it twice. None: fresh ids.
    pub id_key: Option<(String, crate::record::Timestamp)>,
    /// The user's choices, when the caller read them already (the scheduler, for its gate):
    /// they are not read again.
    pub enablement: Option<Enablement>,
}

/// Plans, for each [`StartFor`], the listeners the user's choices let through; one report
/// each, in order.
pub(crate) async fn plan_for(
    runner: &Runner,
    project_id: &str,
    starts: Vec<StartFor>,
) -> Result<Planned, TriggerError> {
    let connect: &Connect = runner.runtime().connect.as_ref();
    let mut choices: HashMap<String, Enablement> = HashMap::new();
    // Per user, per integration: whether they have a working connection.
    let mut connections: HashMap<String, HashMap<String, bool>> = HashMap::new();
    let mut news = Vec::new();
    let mut reports = Vec::with_capacity(starts.len());
    for StartFor { user_id, event, deployments, data, id_key, enablement } in starts {
        if let Some(enablement) = enablement {
            choices.entry(user_id.clone()).or_insert(enablement);
        }
        let mut report = Report {
            user_id: user_id.clone(),
            event,
            listeners: deployments.len(),
            executions: Vec::new(),
            skipped: Vec::new(),
        };
        if !deployments.is_empty() && !choices.contains_key(&user_id) {
            connect.known_user(project_id, &user_id).await?;
            let enablement = connect.enablement(project_id, &user_id).await?;
            choices.insert(user_id.clone(), enablement);
        }
        for deployment in deployments {
            let workflow = &deployment.workflow;
            let mut refusal = choices.get(&user_id).and_then(|enablement| Connect::gate_with(enablement, workflow));
            if refusal.is_none() {
                let connected = connections.entry(user_id.clone()).or_default();
                refusal = connect.connection(project_id, &user_id, workflow, connected).await?;
            }
            if let Some(refusal) = refusal {
                report.skipped.push(Skipped {
                    workflow_id: workflow.id.clone(),
                    integration: workflow.integration.clone(),
                    reason: refusal.code(),
                    message: refusal.explain(project_id, &workflow.id),
                });
                continue;
            }
            let id = match &id_key {
                Some((key, at)) => crate::fires::derived_id(*at, &[key, project_id, &workflow.id, &user_id]),
                None => start::new_execution_id(),
            };
            report.executions.push(StartedExecution {
                workflow_id: workflow.id.clone(),
                integration: workflow.integration.clone(),
                execution_id: id.clone(),
            });
            news.push(NewExecution {
                id,
                deployment: deployment.clone(),
                trigger: data.clone(),
                user_id: user_id.clone(),
                test: false,
                caller_waits: false,
                replay_of: None,
            });
        }
        reports.push(report);
    }
    Ok(Planned { reports, news })
}

/// The reports of a call as the API answers them, keyed for a quick read.
pub fn summary(reports: &[Report]) -> BTreeMap<&'static str, usize> {
    BTreeMap::from([
        ("started", reports.iter().map(|r| r.executions.len()).sum()),
        ("skipped", reports.iter().map(|r| r.skipped.len()).sum()),
    ])
}

//! The connect layer's one door: a [`Connect`] service, built once per process beside the
//! store, owns the connect ports, the key wrapping, the HTTP client for OAuth and its caches
//! (users recorded, refresh locks, client-credential tokens), and answers four questions:
//! who is this caller ([`Connect::user_of`]), may this user's execution of this workflow start
//! ([`Connect::gate`], which every trigger's start asks), which secrets may a step of an
//! execution use ([`SecretSource`], all the interpreter sees), and what to redact
//! ([`super::redact`]).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use http::HeaderMap;

use super::{ConnectError, UserSettings};
use crate::auth;
use crate::crypto::KeyWrap;
use crate::error::ApiError;
use crate::model::Workflow;
use crate::model::project::AuthenticationType;
use crate::net::HttpClient;
use crate::ports::{Enablement, Store, StoreError};
use crate::record::Execution;
use crate::runtime::Host;

/// How many (project, user) pairs, refresh locks or client tokens a process remembers before
/// it starts over.
const REMEMBERED: usize = 100_000;

/// Why a workflow does not start for a user (the gate's refusal), with a stable code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The user switched the workflow's integration off.
    IntegrationDisabled { integration: String },
    /// The user has not enabled the workflow (and it is not enabled by default), or disabled it.
    WorkflowNotEnabled { integration: String },
    /// The workflow uses the user's connection (an action, or `{{credentials...}}`) and the
    /// user has none that works (never connected, or it needs re-authorisation).
    NotConnected { integration: String },
}

impl Refusal {
    /// The machine-readable reason (`integration_disabled`, `not_enabled`).
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::IntegrationDisabled { .. } => "integration_disabled",
            Refusal::WorkflowNotEnabled { .. } => "not_enabled",
            Refusal::NotConnected { .. } => "not_connected",
        }
    }

    /// What the user should do, for workflow `workflow_id` of `project_id`.
    pub fn explain(&self, project_id: &str, workflow_id: &str) -> String {
        match self {
            Refusal::IntegrationDisabled { integration } => format!(
                "integration `{integration}` is disabled for this user: enable it through \
                 PUT /projects/{project_id}/sdk/integrations/{integration}"
            ),
            Refusal::WorkflowNotEnabled { integration } => format!(
                "workflow `{workflow_id}` is not enabled for this user: enable it (and its integration \
                 `{integration}`) through PUT /projects/{project_id}/sdk/workflows/{workflow_id}"
            ),
            Refusal::NotConnected { integration } => format!(
                "workflow `{workflow_id}` uses the user's `{integration}` connection, and they have none that \
                 works: connect it (PUT /projects/{project_id}/sdk/integrations/{integration}/credentials, or \
                 the hosted OAuth flow)"
            ),
        }
    }
}

/// The secrets an execution's steps may use: its user's settings and credentials for the
/// workflow's integration. What the interpreter sees of the connect layer.
#[async_trait]
pub trait SecretSource: Send + Sync {
    /// The settings `workflow` reads for the execution's user (declared values or defaults),
    /// with the `password` values among them.
    async fn settings(&self, execution: &Execution, workflow: &Workflow) -> Result<UserSettings, ConnectError>;
    /// The credentials of the workflow's integration for the execution's user (an OAuth
    /// token refreshed first if it is about to expire; the app's own token for a
    /// client-credentials integration), with every form they are sent in among the secrets.
    /// `None` outside any integration.
    async fn credentials(
        &self,
        execution: &Execution,
        workflow: &Workflow,
    ) -> Result<Option<UserSettings>, ConnectError>;
    /// The credentials again after the provider refused `rejected` (an access token whose
    /// session ended): refreshed if they still hold it — once however many steps saw it
    /// refused — or the ones that replaced it.
    async fn credentials_after_rejection(
        &self,
        execution: &Execution,
        workflow: &Workflow,
        rejected: &str,
    ) -> Result<Option<UserSettings>, ConnectError>;
}

/// The connect layer, built once per process (see the module doc).
pub struct Connect {
    store: Arc<dyn Store>,
    keys: Option<Arc<dyn KeyWrap>>,
    http: HttpClient,
    env: BTreeMap<String, String>,
    host: Host,
    /// Connected users this process has recorded, so a user's record is written once per
    /// process rather than on every request.
    known_users: Mutex<HashSet<(String, String)>>,
    /// One lock per credential record being refreshed, so steps of this process refresh a
    /// token once.
    refresh_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Client-credentials access tokens this process fetched, with when they stop being used.
    client_tokens: Mutex<HashMap<String, (String, Instant)>>,
    /// The rule that runs the scheduler (AWS), switched on when a user's choice writes a
    /// schedule row ([`Connect::sync_schedules`]).
    schedule_rule: std::sync::OnceLock<Arc<dyn crate::ports::ScheduleRule>>,
}

impl Connect {
    pub fn new(
        store: Arc<dyn Store>,
        keys: Option<Arc<dyn KeyWrap>>,
        http: HttpClient,
        env: BTreeMap<String, String>,
        host: Host,
    ) -> Self {
        Connect {
            store,
            keys,
            http,
            env,
            host,
            known_users: Mutex::default(),
            refresh_locks: Mutex::default(),
            client_tokens: Mutex::default(),
            schedule_rule: std::sync::OnceLock::new(),
        }
    }

    /// Gives the connect layer the rule that runs the scheduler (set once, at start).
    pub fn set_schedule_rule(&self, rule: Arc<dyn crate::ports::ScheduleRule>) {
        let _ = self.schedule_rule.set(rule);
    }

    /// After a user's choices or record changed: brings their schedule ledger rows in step
    /// (`crate::scheduler::sync_user`) and, if a row was armed, makes sure the scheduler's
    /// rule runs (the scheduler switches it off while the ledger is empty). A rule that cannot
    /// be switched is logged: the row stands, and the next deploy or choice switches again.
    pub async fn sync_schedules(&self, project_id: &str, user_id: &str) -> Result<(), StoreError> {
        let armed = crate::scheduler::sync_user(self.store.as_ref(), project_id, user_id).await?;
        if armed
            && let Some(rule) = self.schedule_rule.get()
            && let Err(error) = rule.set_enabled(true).await
        {
            tracing::error!(%error, "the scheduler's rule could not be switched on");
        }
        Ok(())
    }

    /// The store the connect ports are read through (integrations, users, enablement,
    /// settings, credentials).
    pub fn store(&self) -> &dyn Store {
        self.store.as_ref()
    }

    /// The key wrapping users' secrets are sealed with; `NoKeys` when the stack has none.
    pub fn keys(&self) -> Result<&dyn KeyWrap, ConnectError> {
        self.keys.as_deref().ok_or(ConnectError::NoKeys)
    }

    pub(crate) fn keys_opt(&self) -> Option<&dyn KeyWrap> {
        self.keys.as_deref()
    }

    pub(crate) fn http(&self) -> &HttpClient {
        &self.http
    }

    /// The stack's `{{env.NAME}}` values.
    pub fn env(&self) -> &BTreeMap<String, String> {
        &self.env
    }

    pub fn host(&self) -> Host {
        self.host
    }

    /// Who is calling: the user of the request's bearer token in `project_id`, recorded on
    /// first sight. The token is read before the project, so a missing project answers as an
    /// existing one.
    pub async fn user_of(&self, project_id: &str, headers: &HeaderMap) -> Result<String, ApiError> {
        let token = auth::bearer_token(headers)?;
        let Some(project) = self.store.get_project(project_id).await? else {
            return Err(auth::refuse_for_missing_project(token).into());
        };
        let user_id = auth::verify_user_token(&project.signing_public_key_pem, token)?;
        self.known_user(project_id, &user_id).await?;
        Ok(user_id)
    }

    /// Records the connected user `user_id` of `project_id` unless this process did already
    /// (a user exists from their first valid token, or from a backend naming them).
    pub async fn known_user(&self, project_id: &str, user_id: &str) -> Result<(), StoreError> {
        let key = (project_id.to_string(), user_id.to_string());
        if self.known_users.lock().is_ok_and(|known| known.contains(&key)) {
            return Ok(());
        }
        if self.store.ensure_user(project_id, user_id).await? {
            // A new user has every schedule enabled by default (a workflow outside any
            // integration, or `enabled_by_default`) from now on.
            self.sync_schedules(project_id, user_id).await?;
        }
        if let Ok(mut known) = self.known_users.lock() {
            if known.len() >= REMEMBERED {
                known.clear();
            }
            known.insert(key);
        }
        Ok(())
    }

    /// The user's choices, read once for a start that asks [`Connect::gate_with`] about several
    /// workflows.
    pub async fn enablement(&self, project_id: &str, user_id: &str) -> Result<Enablement, StoreError> {
        self.store.enablement(project_id, user_id).await
    }

    /// May `user_id`'s execution of `workflow` start? Every trigger's start asks this:
    /// workflows outside any integration always start; otherwise never while the user
    /// disabled the integration, and then as the user chose for the workflow (or its
    /// `enabled_by_default`).
    pub async fn gate(
        &self,
        project_id: &str,
        user_id: &str,
        workflow: &Workflow,
    ) -> Result<Option<Refusal>, StoreError> {
        if workflow.integration.is_none() {
            return Ok(None);
        }
        let enablement = self.enablement(project_id, user_id).await?;
        Ok(Self::gate_with(&enablement, workflow))
    }

    /// [`Connect::gate`] with the user's choices already read.
    pub fn gate_with(enablement: &Enablement, workflow: &Workflow) -> Option<Refusal> {
        let integration = workflow.integration.as_deref()?;
        if enablement.integrations.get(integration) == Some(&false) {
            return Some(Refusal::IntegrationDisabled { integration: integration.to_string() });
        }
        if enablement.runs(Some(integration), &workflow.id, workflow.enabled_by_default) {
            None
        } else {
            Some(Refusal::WorkflowNotEnabled { integration: integration.to_string() })
        }
    }

    /// For starts that fan out to many workflows (app events): a workflow that uses the
    /// user's connection does not start for a user without a working one — its execution
    /// could only fail. `connected` remembers each integration's answer within the call.
    pub async fn connection(
        &self,
        project_id: &str,
        user_id: &str,
        workflow: &Workflow,
        connected: &mut HashMap<String, bool>,
    ) -> Result<Option<Refusal>, StoreError> {
        let Some(integration) = workflow.integration.as_deref() else { return Ok(None) };
        if workflow.integration_auth == Some(AuthenticationType::OauthClientCredential) || !uses_connection(workflow) {
            return Ok(None);
        }
        let works = match connected.get(integration) {
            Some(works) => *works,
            None => {
                let record = self.store.get_credentials(project_id, user_id, integration).await?;
                let works = record.is_some_and(|r| r.status == crate::ports::CredentialStatus::Connected);
                connected.insert(integration.to_string(), works);
                works
            }
        };
        Ok((!works).then(|| Refusal::NotConnected { integration: integration.to_string() }))
    }

    /// A client-credentials token kept under `key` that is still good.
    pub(crate) fn client_token(&self, key: &str) -> Option<String> {
        let tokens = self.client_tokens.lock().ok()?;
        tokens.get(key).filter(|(_, until)| *until > Instant::now()).map(|(token, _)| token.clone())
    }

    /// Keeps a client-credentials token for `lifetime`.
    pub(crate) fn keep_client_token(&self, key: &str, token: &str, lifetime: Duration) {
        if let Ok(mut tokens) = self.client_tokens.lock() {
            let now = Instant::now();
            tokens.retain(|_, (_, until)| *until > now);
            if tokens.len() < REMEMBERED {
                tokens.insert(key.to_string(), (token.to_string(), now + lifetime));
            }
        }
    }

    /// Drops the client-credentials token of `integration` if it is `rejected`.
    fn forget_client_token(&self, project_id: &str, integration: &str, rejected: &str) {
        let key = super::client_token_key(project_id, integration);
        if let Ok(mut tokens) = self.client_tokens.lock()
            && tokens.get(&key).is_some_and(|(token, _)| token == rejected)
        {
            tokens.remove(&key);
        }
    }

    /// The lock refreshes of the credential record `key` take turns on.
    pub(crate) fn refresh_lock(&self, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        let Ok(mut locks) = self.refresh_locks.lock() else { return Arc::default() };
        if locks.len() > REMEMBERED {
            locks.retain(|_, lock| Arc::strong_count(lock) > 1);
        }
        locks.entry(key.to_string()).or_default().clone()
    }
}

#[async_trait]
impl SecretSource for Connect {
    async fn settings(&self, execution: &Execution, workflow: &Workflow) -> Result<UserSettings, ConnectError> {
        super::user_settings(self.store(), self.keys_opt(), &execution.project_id, &execution.user_id, workflow).await
    }

    async fn credentials(
        &self,
        execution: &Execution,
        workflow: &Workflow,
    ) -> Result<Option<UserSettings>, ConnectError> {
        let Some(integration) = &workflow.integration else { return Ok(None) };
        let opened = if workflow.integration_auth == Some(AuthenticationType::OauthClientCredential) {
            super::client_token(self, &execution.project_id, integration).await?
        } else {
            super::user_credentials(self, &execution.project_id, &execution.user_id, integration, None).await?
        };
        Ok(Some(opened))
    }

    async fn credentials_after_rejection(
        &self,
        execution: &Execution,
        workflow: &Workflow,
        rejected: &str,
    ) -> Result<Option<UserSettings>, ConnectError> {
        let Some(integration) = &workflow.integration else { return Ok(None) };
        let opened = if workflow.integration_auth == Some(AuthenticationType::OauthClientCredential) {
            self.forget_client_token(&execution.project_id, integration, rejected);
            super::client_token(self, &execution.project_id, integration).await?
        } else {
            let (project, user) = (&execution.project_id, &execution.user_id);
            super::user_credentials(self, project, user, integration, Some(rejected)).await?
        };
        Ok(Some(opened))
    }
}

/// Whether any step of `workflow` (in any branch) runs an action or reads `{{credentials}}`.
pub fn uses_connection(workflow: &Workflow) -> bool {
    fn any(steps: &[crate::model::Step]) -> bool {
        steps
            .iter()
            .any(|step| crate::runner::context::references(step).credentials || step.kind.nested().into_iter().any(any))
    }
    any(&workflow.steps)
}

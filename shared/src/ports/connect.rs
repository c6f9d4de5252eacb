//! The ports of the connect layer: a project's deployed integrations, its connected users,
//! what each user switched on, and each user's settings. One narrow trait per concern.
//!
//! Invariant: every record is keyed by project first, then user: no call reads or writes
//! across projects or users.

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::StoreError;
use crate::model::project::{Input, IntegrationConfig};
use crate::record::Timestamp;

/// A deployed integration of a project: what the Connect Portal shows of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IntegrationRecord {
    /// Its folder name (`slack`, `custom.acme`).
    pub name: String,
    pub config: IntegrationConfig,
    /// Integration-level settings, by key.
    pub inputs: BTreeMap<String, Input>,
    /// The ids of its workflows, in file order.
    pub workflows: Vec<String>,
}

#[async_trait]
pub trait IntegrationStore: Send + Sync {
    /// Makes `integrations` the project's integrations (a deploy): others are removed.
    async fn put_integrations(&self, project_id: &str, integrations: &[IntegrationRecord]) -> Result<(), StoreError>;
    /// The project's integrations, by name.
    async fn list_integrations(&self, project_id: &str) -> Result<Vec<IntegrationRecord>, StoreError>;
    async fn get_integration(&self, project_id: &str, name: &str) -> Result<Option<IntegrationRecord>, StoreError>;
}

/// A connected user of a project: known from their first valid token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectedUser {
    pub user_id: String,
    #[serde(flatten)]
    pub meta: UserMeta,
    pub created_at: Timestamp,
}

/// What a user is known by, besides their id.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UserMeta {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// An IANA time zone name, e.g. `Europe/Paris`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
}

#[async_trait]
pub trait UserStore: Send + Sync {
    /// Records the user unless it exists (nothing else changes); whether this call created it.
    async fn ensure_user(&self, project_id: &str, user_id: &str) -> Result<bool, StoreError>;
    /// Sets the fields of `meta` that are `Some` (creating the user if needed) and keeps the
    /// others; the user afterwards.
    async fn update_user(&self, project_id: &str, user_id: &str, meta: &UserMeta) -> Result<ConnectedUser, StoreError>;
    async fn get_user(&self, project_id: &str, user_id: &str) -> Result<Option<ConnectedUser>, StoreError>;
}

/// What a user switched on or off explicitly: integration name → on, workflow id → on.
/// Anything absent was never chosen (see [`Enablement::runs`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Enablement {
    pub integrations: BTreeMap<String, bool>,
    pub workflows: BTreeMap<String, bool>,
}

impl Enablement {
    /// Whether workflow `workflow_id` of `integration` (None: outside any) runs for the user:
    /// always outside any integration; never while the user disabled the integration;
    /// otherwise as the user chose for the workflow, or `enabled_by_default` if they did not.
    pub fn runs(&self, integration: Option<&str>, workflow_id: &str, enabled_by_default: bool) -> bool {
        let Some(integration) = integration else { return true };
        if self.integrations.get(integration) == Some(&false) {
            return false;
        }
        self.workflows.get(workflow_id).copied().unwrap_or(enabled_by_default)
    }
}

/// What a switch applies to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Switch {
    Integration(String),
    Workflow(String),
}

impl Switch {
    /// `(kind, target)`: how the adapters key a choice.
    pub fn key(&self) -> (&'static str, &str) {
        match self {
            Switch::Integration(name) => ("integration", name),
            Switch::Workflow(id) => ("workflow", id),
        }
    }
}

#[async_trait]
pub trait EnablementStore: Send + Sync {
    async fn enablement(&self, project_id: &str, user_id: &str) -> Result<Enablement, StoreError>;
    /// Records the user's choice for `switch` (the latest choice wins) and returns the choice
    /// it replaced (None: never chosen), atomically: of concurrent calls that switch something
    /// on, exactly one sees it was not on before (the one Integration Enabled starts for).
    async fn set_enabled(
        &self,
        project_id: &str,
        user_id: &str,
        switch: &Switch,
        enabled: bool,
    ) -> Result<Option<bool>, StoreError>;
}

/// Whose settings: an integration's (its `inputs.yaml`) or one workflow's own `inputs`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SettingsScope {
    Integration(String),
    Workflow(String),
}

impl SettingsScope {
    /// `integration:<name>` or `workflow:<id>`: how the adapters key a scope (names and ids
    /// hold neither `:` nor `#`).
    pub fn key(&self) -> String {
        match self {
            SettingsScope::Integration(name) => format!("integration:{name}"),
            SettingsScope::Workflow(id) => format!("workflow:{id}"),
        }
    }
}

/// The most values one scope holds for one user (every declared setting has at most one).
pub const MAX_SETTING_VALUES: usize = 200;
/// The largest stored value (its JSON text; a sealed password included).
pub const MAX_SETTING_VALUE_BYTES: usize = 16 * 1024;

#[async_trait]
pub trait SettingsStore: Send + Sync {
    /// The user's stored values in `scope`: setting id → value.
    async fn get_settings(
        &self,
        project_id: &str,
        user_id: &str,
        scope: &SettingsScope,
    ) -> Result<BTreeMap<String, Value>, StoreError>;
    /// Stores `values` (setting id → value; `null` removes the value) and keeps the scope's
    /// other values. Values over [`MAX_SETTING_VALUE_BYTES`] or more than
    /// [`MAX_SETTING_VALUES`] at once are `TooLarge`, and nothing is stored.
    async fn put_settings(
        &self,
        project_id: &str,
        user_id: &str,
        scope: &SettingsScope,
        values: &BTreeMap<String, Value>,
    ) -> Result<(), StoreError>;
}

/// A user's credentials for one integration, sealed ([`crate::crypto::seal`]): the store
/// never sees them in plaintext.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CredentialRecord {
    /// The sealed JSON object of the credentials (`{"apiKey": ...}`, `{"accessToken": ...}`).
    pub sealed: crate::crypto::Sealed,
    pub status: CredentialStatus,
    /// When an OAuth access token expires, if it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Timestamp>,
    pub updated_at: Timestamp,
    /// A refresh of these tokens is under way until then (by whoever swapped this in).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refreshing_until: Option<Timestamp>,
    /// The connection's non-secret identity: the provider's ids of the workspace, portal,
    /// org or user it is for (`{"team": "T123"}`), and the login host it was made on.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub identity: BTreeMap<String, String>,
}

/// Whether stored credentials can be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CredentialStatus {
    Connected,
    /// The provider refused them (a revoked refresh token): the user must connect again.
    NeedsReauthorization,
}

/// The largest sealed credential record (its JSON text).
pub const MAX_CREDENTIAL_BYTES: usize = 32 * 1024;

#[async_trait]
pub trait CredentialStore: Send + Sync {
    /// Stores (or replaces) the user's credentials for `integration`; over
    /// [`MAX_CREDENTIAL_BYTES`] is `TooLarge`.
    async fn put_credentials(
        &self,
        project_id: &str,
        user_id: &str,
        integration: &str,
        record: &CredentialRecord,
    ) -> Result<(), StoreError>;
    async fn get_credentials(
        &self,
        project_id: &str,
        user_id: &str,
        integration: &str,
    ) -> Result<Option<CredentialRecord>, StoreError>;
    /// Replaces `old` by `new` only if the stored record is still exactly `old` (compare and
    /// swap: a token refresh, a refresh lease); whether it did.
    async fn swap_credentials(
        &self,
        project_id: &str,
        user_id: &str,
        integration: &str,
        old: &CredentialRecord,
        new: &CredentialRecord,
    ) -> Result<bool, StoreError>;
    /// Removes them; whether there were any.
    async fn delete_credentials(&self, project_id: &str, user_id: &str, integration: &str) -> Result<bool, StoreError>;
}

/// A credential record as the adapters store it: JSON text within [`MAX_CREDENTIAL_BYTES`].
pub fn credential_json(record: &CredentialRecord) -> Result<String, StoreError> {
    let text =
        serde_json::to_string(record).map_err(|e| StoreError::Backend(format!("cannot encode credentials: {e}")))?;
    if text.len() > MAX_CREDENTIAL_BYTES {
        return Err(StoreError::TooLarge(format!(
            "credentials are {} bytes sealed; at most {MAX_CREDENTIAL_BYTES}",
            text.len()
        )));
    }
    Ok(text)
}

/// Everything the connect layer stores.
pub trait ConnectStore: IntegrationStore + UserStore + EnablementStore + SettingsStore + CredentialStore {}
impl<T: IntegrationStore + UserStore + EnablementStore + SettingsStore + CredentialStore> ConnectStore for T {}

/// Checks the values of a `put_settings` call against the limits; shared by the adapters.
pub fn check_setting_values(values: &BTreeMap<String, Value>) -> Result<Vec<(String, Option<String>)>, StoreError> {
    if values.len() > MAX_SETTING_VALUES {
        return Err(StoreError::TooLarge(format!("{} settings at once; at most {MAX_SETTING_VALUES}", values.len())));
    }
    values
        .iter()
        .map(|(id, value)| {
            if value.is_null() {
                return Ok((id.clone(), None));
            }
            let text = serde_json::to_string(value)
                .map_err(|e| StoreError::Corrupt(format!("setting `{id}` is not JSON: {e}")))?;
            if text.len() > MAX_SETTING_VALUE_BYTES {
                return Err(StoreError::TooLarge(format!(
                    "setting `{id}` is {} bytes; at most {MAX_SETTING_VALUE_BYTES}",
                    text.len()
                )));
            }
            Ok((id.clone(), Some(text)))
        })
        .collect()
}

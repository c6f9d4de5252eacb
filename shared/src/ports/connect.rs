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
    /// The ids of the project's users, sorted, at most `limit` (capped at [`MAX_USERS_PAGE`])
    /// after `after`: every user `ensure_user` or `update_user` recorded. Read from a
    /// per-project index (one query per page on DynamoDB), never by a scan.
    async fn list_users(&self, project_id: &str, after: Option<&str>, limit: usize) -> Result<Vec<String>, StoreError>;
}

/// The most user ids one [`UserStore::list_users`] call returns.
pub const MAX_USERS_PAGE: usize = 1000;

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
    /// Who the connection is at the provider, in plaintext (nothing secret): what the
    /// provider's app-wide webhook events name it by, e.g. `{"team": "T123", "user": "U456"}`
    /// for Slack, `{"portal": "62515"}` for HubSpot, `{"org": "00D..", "user": "005..",
    /// "loginHost": "sandbox"}` for Salesforce. Indexed by the store
    /// ([`CredentialStore::users_by_identity`]); within the limits of [`check_identity`].
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
/// The most entries a credential record's identity holds.
pub const MAX_IDENTITY_ENTRIES: usize = 10;
/// The longest identity key, in characters (`[A-Za-z0-9_]`).
pub const MAX_IDENTITY_KEY_CHARS: usize = 64;
/// The longest identity value, in characters.
pub const MAX_IDENTITY_VALUE_CHARS: usize = 256;
/// The most user ids one [`CredentialStore::users_by_identity`] call returns.
pub const MAX_USERS_BY_IDENTITY: usize = 100;

#[async_trait]
pub trait CredentialStore: Send + Sync {
    /// Stores (or replaces) the user's credentials for `integration`, and indexes their
    /// identity in place of the replaced record's, atomically. Over [`MAX_CREDENTIAL_BYTES`]
    /// or an identity outside the limits of [`check_identity`] is `TooLarge`, and nothing is
    /// stored.
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
    /// swap: a token refresh, a refresh lease); whether it did. The identity index follows
    /// `new` in the same atomic write when it swaps, and is untouched when it does not.
    async fn swap_credentials(
        &self,
        project_id: &str,
        user_id: &str,
        integration: &str,
        old: &CredentialRecord,
        new: &CredentialRecord,
    ) -> Result<bool, StoreError>;
    /// Removes them, and their identity from the index, atomically; whether there were any.
    async fn delete_credentials(&self, project_id: &str, user_id: &str, integration: &str) -> Result<bool, StoreError>;
    /// The ids of the users of `project_id` whose current credentials for `integration` (of
    /// any status) have `identity[key] == value`, sorted, at most [`MAX_USERS_BY_IDENTITY`]
    /// (the first ones). Several users may share an identity (two users who connected the
    /// same Slack workspace). Read from an index kept with the credentials, never by a scan;
    /// a key or value no identity can hold finds nobody.
    async fn users_by_identity(
        &self,
        project_id: &str,
        integration: &str,
        key: &str,
        value: &str,
    ) -> Result<Vec<String>, StoreError>;
}

/// A credential record as the adapters store it: JSON text within [`MAX_CREDENTIAL_BYTES`],
/// its identity within the limits of [`check_identity`].
pub fn credential_json(record: &CredentialRecord) -> Result<String, StoreError> {
    check_identity(&record.identity)?;
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

/// Checks a credential record's identity against the limits (through [`credential_json`],
/// which both adapters write with): at most [`MAX_IDENTITY_ENTRIES`] entries, keys of 1 to
/// [`MAX_IDENTITY_KEY_CHARS`] characters of `[A-Za-z0-9_]`, values of 1 to
/// [`MAX_IDENTITY_VALUE_CHARS`] characters without control characters; otherwise `TooLarge`
/// (retrying will not help).
pub fn check_identity(identity: &BTreeMap<String, String>) -> Result<(), StoreError> {
    if identity.len() > MAX_IDENTITY_ENTRIES {
        return Err(StoreError::TooLarge(format!(
            "the identity has {} entries; at most {MAX_IDENTITY_ENTRIES}",
            identity.len()
        )));
    }
    for (key, value) in identity {
        if !identity_key_fits(key) {
            return Err(StoreError::TooLarge(format!(
                "identity key {key:?}: must be 1 to {MAX_IDENTITY_KEY_CHARS} characters of A-Z, a-z, 0-9 and `_`"
            )));
        }
        if !identity_value_fits(value) {
            return Err(StoreError::TooLarge(format!(
                "identity {key:?}: the value must be 1 to {MAX_IDENTITY_VALUE_CHARS} characters without control characters"
            )));
        }
    }
    Ok(())
}

/// Whether `key` may be an identity key; a lookup by any other finds nobody.
pub fn identity_key_fits(key: &str) -> bool {
    (1..=MAX_IDENTITY_KEY_CHARS).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Whether `value` may be an identity value; a lookup by any other finds nobody.
pub fn identity_value_fits(value: &str) -> bool {
    (1..=MAX_IDENTITY_VALUE_CHARS).contains(&value.chars().count()) && !value.chars().any(char::is_control)
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

//! The connect layer at run time: a user's settings as workflows read them, the checks a
//! settings write passes, and keeping `password` values out of what is recorded.
//!
//! Invariants: stored values hang on a setting's `id` and are read through its key
//! (`{{settings.KEY}}`), so renaming a key keeps values and changing an id drops them; a
//! `password` value never leaves this module except into a step's templated input, and
//! every recorded attempt is passed through [`redact`] with the values it could contain.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

mod service;

pub use service::{Connect, Refusal, SecretSource};

use crate::crypto::{self, CryptoError, KeyWrap};
use crate::model::Workflow;
use crate::model::load::inputs::{Declared, value_problem};
use crate::model::project::{Input, InputType};
use crate::ports::{CredentialRecord, CredentialStatus, SettingsScope, Store, StoreError};
use crate::record::StepAttempt;
use crate::record::now;

/// What a redacted value reads as in records and answers.
pub const REDACTED: &str = "[redacted]";

/// The key a stored secret value is kept under: `{"$sealed": {...}}`.
const SEALED_KEY: &str = "$sealed";

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("secrets cannot be sealed or opened: {0}")]
    Crypto(#[from] CryptoError),
    #[error("this stack has no key to seal secrets with (set SLUICE_KMS_KEY_ID; `sluice dev` keeps a key file)")]
    NoKeys,
    /// The provider refused the refresh token: the user must connect the integration again.
    #[error("the connection to `{0}` needs re-authorisation: the user must connect it again")]
    NeedsReauthorization(String),
    #[error("refreshing the tokens of `{integration}` failed: {error}")]
    Refresh { integration: String, error: crate::oauth::OAuthError },
}

impl ConnectError {
    pub fn is_retryable(&self) -> bool {
        match self {
            ConnectError::Store(error) => error.is_retryable(),
            ConnectError::Crypto(error) => error.is_retryable(),
            ConnectError::NoKeys | ConnectError::NeedsReauthorization(_) => false,
            ConnectError::Refresh { error, .. } => error.is_retryable(),
        }
    }
}

/// The encryption context of a user's secret: bound to project, user and what it is, so a
/// sealed value copied to another record does not open.
pub fn secret_context(project_id: &str, user_id: &str, what: &str) -> String {
    format!("sluice/project/{project_id}/user/{user_id}/{what}")
}

/// Seals `value` under `context`: what a store keeps for a secret.
pub async fn seal_value(keys: Option<&dyn KeyWrap>, context: &str, value: &Value) -> Result<Value, ConnectError> {
    let keys = keys.ok_or(ConnectError::NoKeys)?;
    let text = serde_json::to_vec(value).map_err(|e| CryptoError::Refused(format!("not JSON: {e}")))?;
    let sealed = crypto::seal(keys, context, &text).await?;
    let sealed = serde_json::to_value(sealed).map_err(|e| CryptoError::Refused(format!("sealed record: {e}")))?;
    Ok(serde_json::json!({ SEALED_KEY: sealed }))
}

/// Opens what [`seal_value`] made; any other value is returned as it is.
pub async fn open_value(keys: Option<&dyn KeyWrap>, context: &str, stored: &Value) -> Result<Value, ConnectError> {
    let Some(sealed) = stored.get(SEALED_KEY) else { return Ok(stored.clone()) };
    let keys = keys.ok_or(ConnectError::NoKeys)?;
    let sealed: crypto::Sealed = serde_json::from_value(sealed.clone())
        .map_err(|e| CryptoError::Refused(format!("a sealed value is malformed: {e}")))?;
    let text = crypto::open(keys, context, &sealed).await?;
    serde_json::from_slice(&text).map_err(|e| CryptoError::Refused(format!("an opened value is not JSON: {e}")).into())
}

/// The context of a stored setting value.
pub fn setting_context(project_id: &str, user_id: &str, scope: &SettingsScope, id: &str) -> String {
    secret_context(project_id, user_id, &format!("setting/{}/{id}", scope.key()))
}

/// The settings a workflow reads for a user: each declared setting's stored value, or its
/// default; and the `password` values among them (to redact from records).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct UserSettings {
    pub values: Map<String, Value>,
    pub secrets: Vec<String>,
}

/// The settings `workflow` reads for `user_id` of `project_id` (integration-level, then the
/// workflow's own, which shadow them by key).
pub async fn user_settings(
    store: &dyn Store,
    keys: Option<&dyn KeyWrap>,
    project_id: &str,
    user_id: &str,
    workflow: &Workflow,
) -> Result<UserSettings, ConnectError> {
    let mut settings = UserSettings::default();
    if workflow.integration_inputs.is_empty() && workflow.inputs.is_empty() {
        return Ok(settings);
    }
    let integration = match &workflow.integration {
        Some(name) if !workflow.integration_inputs.is_empty() => {
            store.get_settings(project_id, user_id, &SettingsScope::Integration(name.clone())).await?
        }
        _ => BTreeMap::new(),
    };
    let own = if workflow.inputs.is_empty() {
        BTreeMap::new()
    } else {
        store.get_settings(project_id, user_id, &SettingsScope::Workflow(workflow.id.clone())).await?
    };
    let scopes = [
        (
            &workflow.integration_inputs,
            &integration,
            SettingsScope::Integration(workflow.integration.clone().unwrap_or_default()),
        ),
        (&workflow.inputs, &own, SettingsScope::Workflow(workflow.id.clone())),
    ];
    for (inputs, stored, scope) in scopes {
        for (key, input) in inputs {
            let value = match stored.get(&input.id) {
                Some(value) if input.kind == InputType::Password => {
                    let context = setting_context(project_id, user_id, &scope, &input.id);
                    Some(open_value(keys, &context, value).await?)
                }
                Some(value) => Some(value.clone()),
                None => input.default.clone(),
            };
            if let Some(value) = value {
                if input.kind == InputType::Password
                    && let Some(secret) = value.as_str()
                    && !secret.is_empty()
                {
                    settings.secrets.push(secret.to_string());
                }
                settings.values.insert(key.clone(), value);
            } else {
                settings.values.remove(key);
            }
        }
    }
    Ok(settings)
}

/// The context credentials of `integration` are sealed under.
pub fn credential_context(project_id: &str, user_id: &str, integration: &str) -> String {
    secret_context(project_id, user_id, &format!("credentials/{integration}"))
}

/// How long before its expiry an access token is refreshed, at most: a tenth of its
/// lifetime for short-lived tokens.
const REFRESH_MARGIN: chrono::Duration = chrono::Duration::seconds(60);
/// How long a refresh may hold its lease on the record: longer than the token request it
/// guards may take ([`crate::oauth::TOKEN_TIMEOUT`]) and the write after it, so no second
/// process takes the lease and spends a refresh token that rotates while the first is still
/// waiting for its answer.
const REFRESH_LEASE: chrono::Duration = chrono::Duration::seconds(45);
/// How long a step waits for a refresh another process is making: past its lease.
const REFRESH_WAIT_AT_MOST: std::time::Duration = std::time::Duration::from_secs(50);
/// How often a step waiting for another process's refresh looks again.
const REFRESH_WAIT: std::time::Duration = std::time::Duration::from_millis(100);

/// Whether `record`'s access token expires within the refresh margin.
fn expiring(record: &CredentialRecord) -> bool {
    let Some(at) = record.expires_at else { return false };
    let lifetime = at - record.updated_at;
    let margin = REFRESH_MARGIN.min(lifetime / 10).max(chrono::Duration::zero());
    at <= now() + margin
}

/// The user's credentials for `integration`, opened — an empty object if there are none —
/// with every string value among the secrets to redact. An OAuth access token that expires
/// soon (or, with `rejected`, the token the provider just refused) is refreshed first, once
/// however many steps need it at the same moment: steps of this process queue on one lock,
/// other processes see the refresh lease on the record and wait for the new tokens, and a
/// step whose rejected token was replaced meanwhile gets the new one without a refresh. A
/// refused refresh token marks the connection as needing re-authorisation.
pub(crate) async fn user_credentials(
    connect: &Connect,
    project_id: &str,
    user_id: &str,
    integration: &str,
    rejected: Option<&str>,
) -> Result<UserSettings, ConnectError> {
    let store = connect.store();
    let keys = connect.keys_opt();
    let context = credential_context(project_id, user_id, integration);
    let deadline = std::time::Instant::now() + REFRESH_WAIT_AT_MOST;
    loop {
        let Some(record) = store.get_credentials(project_id, user_id, integration).await? else {
            return Ok(UserSettings::default());
        };
        if record.status == CredentialStatus::NeedsReauthorization {
            return Err(ConnectError::NeedsReauthorization(integration.to_string()));
        }
        let values = open_credentials(keys, &context, &record).await?;
        let refresh_token = values.get("refreshToken").and_then(Value::as_str).map(str::to_string);
        let stale = match rejected {
            Some(token) => values.get("accessToken").and_then(Value::as_str) == Some(token),
            None => expiring(&record),
        };
        let refresh_token = match (stale, refresh_token) {
            (true, Some(refresh_token)) => refresh_token,
            (true, None) if rejected.is_some() => {
                // The provider refused the token and there is nothing to renew it with: the
                // connection is dead, and the portal must say so rather than "connected".
                let dead = CredentialRecord { status: CredentialStatus::NeedsReauthorization, ..record.clone() };
                if !store.swap_credentials(project_id, user_id, integration, &record, &dead).await? {
                    continue;
                }
                tracing::warn!(
                    project = project_id,
                    integration,
                    "access token refused and no refresh token: re-authorisation needed"
                );
                return Err(ConnectError::NeedsReauthorization(integration.to_string()));
            }
            _ => return Ok(opened(values)),
        };
        let lock = connect.refresh_lock(&context);
        let _turn = lock.lock().await;
        // Another step of this process may have refreshed while this one waited its turn.
        let Some(current) = store.get_credentials(project_id, user_id, integration).await? else { continue };
        if current != record {
            continue;
        }
        if record.refreshing_until.is_some_and(|until| until > now()) {
            // Another process holds the lease: wait for its tokens.
            if std::time::Instant::now() > deadline {
                let error = crate::oauth::OAuthError::Endpoint("another refresh did not finish".into());
                return Err(ConnectError::Refresh { integration: integration.to_string(), error });
            }
            drop(_turn);
            tokio::time::sleep(REFRESH_WAIT).await;
            continue;
        }
        let leased = CredentialRecord { refreshing_until: Some(now() + REFRESH_LEASE), ..record.clone() };
        if !store.swap_credentials(project_id, user_id, integration, &record, &leased).await? {
            continue;
        }
        let refresh = Refresh { connect, project_id, user_id, integration };
        match refresh.run(leased, values, &refresh_token).await? {
            Refreshed::Done(settings) => return Ok(settings),
            // The record changed under the lease (new tokens from elsewhere): read it again.
            Refreshed::Changed => continue,
        }
    }
}

/// One refresh of one user's tokens, under a lease this process holds.
struct Refresh<'a> {
    connect: &'a Connect,
    project_id: &'a str,
    user_id: &'a str,
    integration: &'a str,
}

enum Refreshed {
    Done(UserSettings),
    Changed,
}

impl Refresh<'_> {
    /// Refreshes the tokens of `leased` and stores them.
    async fn run(
        &self,
        leased: CredentialRecord,
        mut values: Map<String, Value>,
        refresh_token: &str,
    ) -> Result<Refreshed, ConnectError> {
        let (connect, project_id, user_id, integration) =
            (self.connect, self.project_id, self.user_id, self.integration);
        let store = connect.store();
        let released = CredentialRecord { refreshing_until: None, ..leased.clone() };
        let login_host = leased.identity.get(crate::oauth::LOGIN_HOST).map(String::as_str);
        let provider = match store.get_integration(project_id, integration).await? {
            Some(record) => crate::oauth::Provider::of(integration, &record.config, connect.env())
                .and_then(|provider| provider.on_login_host(login_host)),
            None => {
                Err(crate::oauth::OAuthError::NotConfigured(format!("integration `{integration}` is not deployed")))
            }
        };
        let refreshed = match provider {
            Ok(provider) => crate::oauth::refresh(connect.http(), &provider, refresh_token).await,
            Err(error) => Err(error),
        };
        match refreshed {
            Ok(tokens) => {
                values.extend(tokens.credentials());
                let keys = connect.keys()?;
                let context = credential_context(project_id, user_id, integration);
                let plaintext = serde_json::to_vec(&values).map_err(|e| CryptoError::Refused(e.to_string()))?;
                // The identity is the connection's, set when it was made: a refresh keeps it
                // (and so the index, written only on connect and disconnect).
                let identity = leased.identity.clone();
                let fresh = CredentialRecord {
                    sealed: crypto::seal(keys, &context, &plaintext).await?,
                    status: CredentialStatus::Connected,
                    expires_at: tokens.expires_at(),
                    updated_at: now(),
                    refreshing_until: None,
                    identity,
                };
                self.keep(&leased, &fresh).await?;
                tracing::info!(project = project_id, integration, "refreshed an OAuth access token");
                Ok(Refreshed::Done(opened(values)))
            }
            Err(crate::oauth::OAuthError::Revoked(reason)) => {
                let revoked = CredentialRecord { status: CredentialStatus::NeedsReauthorization, ..released };
                if !store.swap_credentials(project_id, user_id, integration, &leased, &revoked).await? {
                    // Refused because another process spent the token first and stored its
                    // fresh tokens: those are the connection's now.
                    return Ok(Refreshed::Changed);
                }
                tracing::warn!(
                    project = project_id,
                    integration,
                    reason,
                    "refresh token refused: re-authorisation needed"
                );
                Err(ConnectError::NeedsReauthorization(integration.to_string()))
            }
            Err(error) => {
                if !store.swap_credentials(project_id, user_id, integration, &leased, &released).await? {
                    return Ok(Refreshed::Changed);
                }
                Err(ConnectError::Refresh { integration: integration.to_string(), error })
            }
        }
    }

    /// Stores `fresh` in place of `leased`. Fresh tokens are never thrown away: if the record
    /// changed under the lease but still holds the tokens this refresh replaced (another
    /// process took an expired lease, or marked the connection as needing re-authorisation
    /// after spending the same rotated refresh token), they replace it anyway; only other
    /// tokens (a new connection, another refresh's) are kept over them.
    async fn keep(&self, leased: &CredentialRecord, fresh: &CredentialRecord) -> Result<(), ConnectError> {
        let store = self.connect.store();
        let (project_id, user_id, integration) = (self.project_id, self.user_id, self.integration);
        let mut expected = leased.clone();
        for _ in 0..5 {
            if store.swap_credentials(project_id, user_id, integration, &expected, fresh).await? {
                return Ok(());
            }
            match store.get_credentials(project_id, user_id, integration).await? {
                Some(current) if current.sealed == leased.sealed => expected = current,
                _ => return Ok(()),
            }
        }
        Ok(())
    }
}

fn client_token_key(project_id: &str, integration: &str) -> String {
    format!("sluice/project/{project_id}/client/{integration}")
}

/// The app's own access token for an `oauth_client_credential` integration: fetched with
/// the client id and secret, kept by this process until a minute before it expires, and
/// fetched once however many steps need it at the same moment.
pub(crate) async fn client_token(
    connect: &Connect,
    project_id: &str,
    integration: &str,
) -> Result<UserSettings, ConnectError> {
    let key = client_token_key(project_id, integration);
    let refresh = |error| ConnectError::Refresh { integration: integration.to_string(), error };
    let lock = connect.refresh_lock(&key);
    let _turn = lock.lock().await;
    if let Some(token) = connect.client_token(&key) {
        return Ok(opened(Map::from_iter([("accessToken".to_string(), Value::from(token))])));
    }
    let record = connect.store().get_integration(project_id, integration).await?.ok_or_else(|| {
        refresh(crate::oauth::OAuthError::NotConfigured(format!("integration `{integration}` is not deployed")))
    })?;
    let provider = crate::oauth::Provider::of(integration, &record.config, connect.env()).map_err(refresh)?;
    let tokens = crate::oauth::client_credentials(connect.http(), &provider).await.map_err(refresh)?;
    let lifetime = std::time::Duration::from_secs(tokens.expires_in.unwrap_or(3600).saturating_sub(60));
    connect.keep_client_token(&key, &tokens.access_token, lifetime);
    Ok(opened(tokens.credentials()))
}

async fn open_credentials(
    keys: Option<&dyn KeyWrap>,
    context: &str,
    record: &CredentialRecord,
) -> Result<Map<String, Value>, ConnectError> {
    let keys = keys.ok_or(ConnectError::NoKeys)?;
    let text = crypto::open(keys, context, &record.sealed).await?;
    serde_json::from_slice(&text)
        .map_err(|e| CryptoError::Refused(format!("opened credentials are not a JSON object: {e}")).into())
}

fn opened(values: Map<String, Value>) -> UserSettings {
    let secrets = values.values().filter_map(Value::as_str).filter(|s| !s.is_empty()).map(str::to_string).collect();
    UserSettings { values, secrets }
}

/// Checks a settings write (setting key → value; `null` clears a value) against `inputs`;
/// the values to store by setting id, or every problem.
pub fn check_settings_write(
    inputs: &BTreeMap<String, Input>,
    body: &Map<String, Value>,
) -> Result<BTreeMap<String, Value>, Vec<String>> {
    let mut problems = Vec::new();
    let mut values = BTreeMap::new();
    for (key, value) in body {
        let Some(input) = inputs.get(key) else {
            let declared: Vec<&str> = inputs.keys().map(String::as_str).collect();
            let declared = if declared.is_empty() { "none".to_string() } else { declared.join(", ") };
            problems.push(format!("`{key}`: no such setting (declared: {declared})"));
            continue;
        };
        if value.is_null() {
            if input.required && input.default.is_none() {
                problems.push(format!("`{key}`: is required and cannot be cleared"));
            } else {
                values.insert(input.id.clone(), Value::Null);
            }
            continue;
        }
        let fields: Vec<String> = input.fields.keys().cloned().collect();
        let declared = Declared {
            options: (!input.options.is_empty()).then_some(input.options.as_slice()),
            fields: Some(&fields),
        };
        match value_problem(input.kind, value, &declared) {
            Some(problem) => problems.push(format!("`{key}`: {problem}")),
            None => {
                values.insert(input.id.clone(), value.clone());
            }
        }
    }
    if problems.is_empty() { Ok(values) } else { Err(problems) }
}

/// The settings of `inputs` as a user sees them: each key's current value (stored or
/// default) with `password` values shown only as whether one is set.
pub fn shown_settings(inputs: &BTreeMap<String, Input>, stored: &BTreeMap<String, Value>) -> Map<String, Value> {
    inputs
        .iter()
        .filter_map(|(key, input)| {
            let value = stored.get(&input.id).cloned().or_else(|| input.default.clone())?;
            let shown = if input.kind == InputType::Password { Value::from(REDACTED) } else { value };
            Some((key.clone(), shown))
        })
        .collect()
}

/// A step's result with every occurrence of `secrets` replaced (its output, or its error's
/// message and details).
pub fn redact_result(
    result: Result<Value, crate::record::StepError>,
    secrets: &[String],
) -> Result<Value, crate::record::StepError> {
    if secrets.is_empty() {
        return result;
    }
    match result {
        Ok(mut output) => {
            redact_value(&mut output, secrets);
            Ok(output)
        }
        Err(mut error) => {
            error.message = redact_text(&error.message, secrets);
            if let Some(details) = error.details.as_mut() {
                redact_value(details, secrets);
            }
            Err(error)
        }
    }
}

/// Replaces every occurrence of a secret in the attempt's input, output, error and logs.
pub fn redact(attempt: &mut StepAttempt, secrets: &[String]) {
    if secrets.is_empty() {
        return;
    }
    redact_value(&mut attempt.input, secrets);
    if let Some(output) = attempt.output.as_mut() {
        redact_value(output, secrets);
    }
    if let Some(error) = attempt.error.as_mut() {
        error.message = redact_text(&error.message, secrets);
        if let Some(details) = error.details.as_mut() {
            redact_value(details, secrets);
        }
    }
    for line in &mut attempt.logs {
        if secrets.iter().any(|secret| line.contains(secret.as_str())) {
            *line = redact_text(line, secrets);
        }
    }
}

pub(crate) fn redact_value(value: &mut Value, secrets: &[String]) {
    match value {
        Value::String(text) if secrets.iter().any(|secret| text.contains(secret.as_str())) => {
            *text = redact_text(text, secrets);
        }
        Value::Array(items) => items.iter_mut().for_each(|item| redact_value(item, secrets)),
        Value::Object(map) => map.values_mut().for_each(|item| redact_value(item, secrets)),
        _ => {}
    }
}

pub(crate) fn redact_text(text: &str, secrets: &[String]) -> String {
    secrets.iter().fold(text.to_string(), |text, secret| text.replace(secret.as_str(), REDACTED))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn inputs() -> BTreeMap<String, Input> {
        serde_json::from_value(json!({
            "channel": { "id": "channel", "type": "text", "title": "Channel", "default": "#a" },
            "token": { "id": "tok", "type": "password", "title": "Token", "required": true },
            "kind": { "id": "kind", "type": "select", "title": "Kind", "options": ["x", "y"] },
            "map": { "id": "map", "type": "field_mapping", "title": "Map", "fields": { "email": "Email" } },
        }))
        .expect("inputs")
    }

    #[test]
    fn a_settings_write_lists_every_problem_and_stores_by_id() {
        let body = json!({ "channel": "#b", "token": "s3cret", "kind": "z", "map": { "phone": "P" }, "nope": 1 });
        let problems = check_settings_write(&inputs(), body.as_object().expect("object")).expect_err("problems");
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems.iter().any(|p| p.starts_with("`kind`: `z` is not one of the options")));
        assert!(problems.iter().any(|p| p.starts_with("`map`: `phone` is not a field")));
        assert!(problems.iter().any(|p| p.starts_with("`nope`: no such setting")));
        let body = json!({ "channel": null, "token": "s3cret", "map": { "email": "Email__c" } });
        let values = check_settings_write(&inputs(), body.as_object().expect("object")).expect("valid");
        assert_eq!(
            Value::from(values.into_iter().collect::<Map<_, _>>()),
            json!({ "channel": null, "tok": "s3cret", "map": { "email": "Email__c" } })
        );
        let cleared = check_settings_write(&inputs(), json!({ "token": null }).as_object().expect("object"));
        assert!(cleared.expect_err("required").iter().any(|p| p.contains("is required")));
    }

    #[test]
    fn passwords_are_shown_redacted_and_redacted_from_records() {
        let stored = BTreeMap::from([("tok".to_string(), json!("s3cret")), ("kind".to_string(), json!("x"))]);
        let shown = shown_settings(&inputs(), &stored);
        assert_eq!(Value::Object(shown), json!({ "channel": "#a", "token": REDACTED, "kind": "x" }));
        let at = crate::record::now();
        let mut attempt = StepAttempt {
            step: "s".into(),
            attempt: 1,
            status: crate::record::StepStatus::Succeeded,
            input: json!({ "headers": { "authorization": "Bearer s3cret" }, "n": 1 }),
            output: Some(json!(["s3cret", "fine"])),
            error: None,
            started_at: at,
            ended_at: at,
            logs: vec!["token is s3cret".into()],
        };
        redact(&mut attempt, &["s3cret".to_string()]);
        assert!(!serde_json::to_string(&attempt.input).expect("json").contains("s3cret"));
        assert_eq!(attempt.input["headers"]["authorization"], format!("Bearer {REDACTED}"));
        assert_eq!(attempt.output, Some(json!([REDACTED, "fine"])));
        assert_eq!(attempt.logs, [format!("token is {REDACTED}")]);
    }
}

#[cfg(test)]
#[path = "tests_refresh.rs"]
mod tests_refresh;

//! The SDK routes of the connect layer, authorised by a connected-user token: the user
//! (`/sdk/me`), what a Connect Portal shows (`/sdk/connect`), switching integrations and
//! workflows on and off, and reading and writing the user's settings.
//!
//! Invariant: every handler acts for the token's user in the path's project only; a user
//! never reads or changes another user's records, and `password` values are never returned.

use std::collections::BTreeMap;

use bytes::Bytes;
use http::{HeaderMap, Response, StatusCode};
use serde_json::{Map, Value, json};

use crate::connect::{Connect, ConnectError};
use crate::connect::{check_settings_write, credential_context, seal_value, setting_context, shown_settings};
use crate::crypto;
use crate::error::{ApiError, json_response};
use crate::model::project::{AuthenticationType, IMPLICIT_INTEGRATION, Input, InputType};
use crate::oauth;
use crate::ports::{CredentialRecord, CredentialStatus, IntegrationRecord, SettingsScope, Switch, UserMeta};
use crate::record::{MAX_JSON_DEPTH, format_timestamp, now, too_deep};
use crate::runner::Runner;
use crate::triggers;

/// The largest body these routes read.
const MAX_BODY_BYTES: usize = 64 * 1024;
/// The longest user name, email or time zone kept.
const MAX_META_LEN: usize = 256;

/// `GET /projects/{p}/sdk/me`.
pub(super) async fn get_me(
    connect: &Connect,
    project_id: &str,
    headers: &HeaderMap,
) -> Result<Response<Bytes>, ApiError> {
    let user_id = connect.user_of(project_id, headers).await?;
    let user = connect.store().update_user(project_id, &user_id, &UserMeta::default()).await?;
    Ok(json_response(StatusCode::OK, &user_json(&user)))
}

/// `PATCH /projects/{p}/sdk/me` with `{name?, email?, timezone?}`.
pub(super) async fn patch_me(
    connect: &Connect,
    project_id: &str,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Response<Bytes>, ApiError> {
    let user_id = connect.user_of(project_id, headers).await?;
    let value = json_body(body)?;
    let meta: UserMeta = serde_json::from_value(value)
        .map_err(|e| ApiError::BadRequest(format!("the body must be {{name?, email?, timezone?}} strings: {e}")))?;
    let mut problems = Vec::new();
    for (name, text) in [("name", &meta.name), ("email", &meta.email), ("timezone", &meta.timezone)] {
        if text.as_ref().is_some_and(|t| t.len() > MAX_META_LEN || t.chars().any(char::is_control)) {
            problems.push(format!("`{name}`: at most {MAX_META_LEN} characters, no control characters"));
        }
    }
    if let Some(zone) = &meta.timezone
        && jiff::tz::TimeZone::get(zone).is_err()
    {
        problems.push(format!("`timezone`: `{zone}` is not an IANA time zone (e.g. Europe/Paris)"));
    }
    if let Some(email) = &meta.email
        && !email.contains('@')
    {
        problems.push(format!("`email`: `{email}` is not an email address"));
    }
    if !problems.is_empty() {
        return Err(ApiError::Validation(problems));
    }
    let user = connect.store().update_user(project_id, &user_id, &meta).await?;
    Ok(json_response(StatusCode::OK, &user_json(&user)))
}

fn user_json(user: &crate::ports::ConnectedUser) -> Value {
    let mut body = json!({ "userId": user.user_id, "createdAt": format_timestamp(&user.created_at) });
    for (name, value) in [("name", &user.meta.name), ("email", &user.meta.email), ("timezone", &user.meta.timezone)] {
        if let Some(value) = value {
            body[name] = json!(value);
        }
    }
    body
}

/// `GET /projects/{p}/sdk/connect`: each integration with its config, whether the user
/// enabled it, its workflows with their enabled flags, and its settings (declared and current,
/// passwords redacted) — everything a Connect Portal shows.
pub(super) async fn connect(
    connect: &Connect,
    project_id: &str,
    headers: &HeaderMap,
) -> Result<Response<Bytes>, ApiError> {
    let user_id = connect.user_of(project_id, headers).await?;
    let store = connect.store();
    let enablement = store.enablement(project_id, &user_id).await?;
    let mut integrations = Vec::new();
    for integration in store.list_integrations(project_id).await? {
        let stored =
            store.get_settings(project_id, &user_id, &SettingsScope::Integration(integration.name.clone())).await?;
        let mut workflows = Vec::new();
        for workflow_id in &integration.workflows {
            let Some(deployment) = store.get_deployed(project_id, workflow_id).await? else { continue };
            let workflow = &deployment.workflow;
            let own = if workflow.inputs.is_empty() {
                BTreeMap::new()
            } else {
                store.get_settings(project_id, &user_id, &SettingsScope::Workflow(workflow.id.clone())).await?
            };
            let mut entry = json!({
                "id": workflow.id,
                "enabled": enablement.runs(workflow.integration.as_deref(), &workflow.id, workflow.enabled_by_default),
                "enabledByDefault": workflow.enabled_by_default,
                "settings": settings_json(&workflow.inputs, &own),
            });
            if let Some(name) = &workflow.name {
                entry["name"] = json!(name);
            }
            workflows.push(entry);
        }
        let enabled = enablement.integrations.get(&integration.name).copied().unwrap_or(false);
        let credentials = store.get_credentials(project_id, &user_id, &integration.name).await?;
        let status = credentials.as_ref().map(|c| c.status);
        let identity = credentials.map(|c| c.identity).unwrap_or_default();
        integrations.push(json!({
            "identity": identity,
            "name": integration.name,
            "custom": integration.name.starts_with(crate::model::project::CUSTOM_PREFIX),
            "config": display_config(&integration),
            "enabled": enabled,
            "connected": status == Some(CredentialStatus::Connected),
            "needsReauthorization": status == Some(CredentialStatus::NeedsReauthorization),
            "settings": settings_json(&integration.inputs, &stored),
            "workflows": workflows,
        }));
    }
    Ok(json_response(StatusCode::OK, &json!({ "userId": user_id, "integrations": integrations })))
}

/// What the portal shows of an integration's config: display keys and the kind of
/// authentication, never URLs with client ids or the authorization template.
fn display_config(integration: &IntegrationRecord) -> Value {
    let config = &integration.config;
    let mut shown = Map::new();
    let name = config.name.clone().unwrap_or_else(|| integration.name.clone());
    shown.insert("name".into(), json!(name));
    for (key, value) in
        [("description", &config.description), ("overview", &config.overview), ("accentColor", &config.accent_color)]
    {
        if let Some(value) = value {
            shown.insert(key.into(), json!(value));
        }
    }
    if let Some(kind) = config.authentication_type {
        shown.insert("authenticationType".into(), json!(kind));
    }
    Value::Object(shown)
}

fn settings_json(inputs: &BTreeMap<String, Input>, stored: &BTreeMap<String, Value>) -> Value {
    json!({ "inputs": inputs, "values": shown_settings(inputs, stored) })
}

/// `PUT /projects/{p}/sdk/integrations/{i}` or `/sdk/workflows/{w}` with `{"enabled": bool}`.
pub(super) async fn set_enabled(
    runner: &Runner,
    project_id: &str,
    headers: &HeaderMap,
    switch: Switch,
    body: &Bytes,
) -> Result<Response<Bytes>, ApiError> {
    let connect = runner.runtime().connect.as_ref();
    let user_id = connect.user_of(project_id, headers).await?;
    let enabled = json_body(body)?
        .get("enabled")
        .and_then(Value::as_bool)
        .ok_or_else(|| ApiError::BadRequest("the body must be {\"enabled\": true} or {\"enabled\": false}".into()))?;
    let store = connect.store();
    match &switch {
        Switch::Integration(name) => {
            if store.get_integration(project_id, name).await?.is_none() {
                return Err(ApiError::NotFound(format!("no integration `{name}` in this project")));
            }
        }
        Switch::Workflow(id) => {
            let deployment = store
                .get_deployed(project_id, id)
                .await?
                .ok_or_else(|| ApiError::NotFound(format!("no deployed workflow `{id}` in this project")))?;
            let Some(integration) = &deployment.workflow.integration else {
                return Err(ApiError::BadRequest(format!(
                    "workflow `{id}` belongs to no integration: it is always enabled"
                )));
            };
            let enablement = store.enablement(project_id, &user_id).await?;
            if enabled && enablement.integrations.get(integration) == Some(&false) {
                return Err(ApiError::IntegrationDisabled(format!(
                    "integration `{integration}` is disabled for this user: enable it first"
                )));
            }
        }
    }
    let before = store.set_enabled(project_id, &user_id, &switch, enabled).await?;
    connect.sync_schedules(project_id, &user_id).await?;
    let mut answer = json!({ "enabled": enabled });
    if let (Switch::Integration(name), true) = (&switch, enabled && before != Some(true)) {
        let report = triggers::integration_enabled(runner, project_id, &user_id, name).await?;
        answer["integrationEnabled"] = json!({ "executions": report.executions, "skipped": report.skipped });
    }
    Ok(json_response(StatusCode::OK, &answer))
}

/// The most keys a credentials body may have, and the longest value.
const MAX_CREDENTIAL_KEYS: usize = 20;
const MAX_CREDENTIAL_VALUE: usize = 8 * 1024;

/// `PUT /projects/{p}/sdk/integrations/{i}/credentials`: the user's credentials for the
/// integration, handed over by the app — `{"apiKey"}` (api_key), `{"username", "password"}`
/// (basic), or OAuth tokens `{"accessToken", "refreshToken"?, "expiresIn"? (seconds)}`, plus
/// any other string the integration needs. Sealed at once; never returned. Connecting
/// enables the integration for the user.
pub(super) async fn put_credentials(
    runner: &Runner,
    project_id: &str,
    headers: &HeaderMap,
    integration: &str,
    body: &Bytes,
) -> Result<Response<Bytes>, ApiError> {
    let connect = runner.runtime().connect.as_ref();
    let user_id = connect.user_of(project_id, headers).await?;
    let store = connect.store();
    let record = integration_of(connect, project_id, integration).await?;
    let Value::Object(mut values) = json_body(body)? else {
        return Err(ApiError::BadRequest("the body must be an object of credential name → string".into()));
    };
    let expires_in = values.remove("expiresIn");
    let identity_value = values.remove("identity");
    let mut problems = Vec::new();
    let identity = identity_of(identity_value, &mut problems);
    if values.len() > MAX_CREDENTIAL_KEYS {
        problems.push(format!("{} credentials; at most {MAX_CREDENTIAL_KEYS}", values.len()));
    }
    for (name, value) in &values {
        match value.as_str() {
            Some(text) if !text.is_empty() && text.len() <= MAX_CREDENTIAL_VALUE => {}
            _ => problems.push(format!("`{name}`: must be a non-empty string of at most {MAX_CREDENTIAL_VALUE} bytes")),
        }
    }
    let required: &[&str] = match record.config.authentication_type {
        Some(AuthenticationType::ApiKey) => &["apiKey"],
        Some(AuthenticationType::Basic) => &["username", "password"],
        // OAuth, and every built-in integration (they all authorise with OAuth).
        _ => &["accessToken"],
    };
    for name in required {
        if !values.contains_key(*name) {
            problems.push(format!("`{name}` is required for integration `{integration}`"));
        }
    }
    let expires_at = match expires_in {
        None | Some(Value::Null) => None,
        Some(value) => match value.as_u64().filter(|s| *s <= 10 * 365 * 86_400) {
            Some(seconds) => Some(now() + chrono::Duration::seconds(seconds as i64)),
            None => {
                problems.push("`expiresIn`: must be a whole number of seconds".to_string());
                None
            }
        },
    };
    if !problems.is_empty() {
        return Err(ApiError::Validation(problems));
    }
    let keys = connect.keys()?;
    let plaintext = serde_json::to_vec(&values).map_err(|e| ApiError::Internal(format!("credentials: {e}")))?;
    let context = credential_context(project_id, &user_id, integration);
    let sealed = crypto::seal(keys, &context, &plaintext).await.map_err(ConnectError::from)?;
    let stored = CredentialRecord {
        sealed,
        status: CredentialStatus::Connected,
        expires_at,
        updated_at: now(),
        refreshing_until: None,
        identity,
    };
    store.put_credentials(project_id, &user_id, integration, &stored).await?;
    let before = store.set_enabled(project_id, &user_id, &Switch::Integration(integration.to_string()), true).await?;
    connect.sync_schedules(project_id, &user_id).await?;
    let mut answer = json!({ "integration": integration, "connected": true });
    if before != Some(true) {
        let report = triggers::integration_enabled(runner, project_id, &user_id, integration).await?;
        answer["integrationEnabled"] = json!({ "executions": report.executions, "skipped": report.skipped });
    }
    Ok(json_response(StatusCode::OK, &answer))
}

/// The most identity values a connection keeps.
const MAX_IDENTITY: usize = 10;

/// The connection's identity a credentials write gives (`"identity": {"account": "A-1"}`):
/// names of letters, digits and `_` (at most 64), non-empty values of at most 256 characters.
fn identity_of(value: Option<Value>, problems: &mut Vec<String>) -> BTreeMap<String, String> {
    let mut identity = BTreeMap::new();
    let fields = match value {
        None | Some(Value::Null) => return identity,
        Some(Value::Object(fields)) => fields,
        Some(_) => {
            problems.push("`identity`: must be an object of name → string".to_string());
            return identity;
        }
    };
    if fields.len() > MAX_IDENTITY {
        problems.push(format!("`identity`: {} values; at most {MAX_IDENTITY}", fields.len()));
    }
    for (name, value) in fields {
        let name_ok =
            !name.is_empty() && name.len() <= 64 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        match value {
            Value::String(text)
                if name_ok
                    && !text.is_empty()
                    && text.chars().count() <= 256
                    && !text.chars().any(char::is_control) =>
            {
                identity.insert(name, text);
            }
            _ => problems.push(format!(
                "`identity.{}`: names are letters, digits and `_` (at most 64); values are non-empty text of at most \
                 256 characters",
                name.escape_debug()
            )),
        }
    }
    identity
}

/// `DELETE /projects/{p}/sdk/integrations/{i}/credentials`: disconnects the user.
pub(super) async fn delete_credentials(
    connect: &Connect,
    project_id: &str,
    headers: &HeaderMap,
    integration: &str,
) -> Result<Response<Bytes>, ApiError> {
    let user_id = connect.user_of(project_id, headers).await?;
    let removed = connect.store().delete_credentials(project_id, &user_id, integration).await?;
    Ok(json_response(StatusCode::OK, &json!({ "integration": integration, "connected": false, "removed": removed })))
}

/// `GET /projects/{p}/sdk/integrations/{i}/oauth/start`: where to send the user's browser to
/// connect an OAuth integration: `{"authorizationUrl": ...}` (the provider's page, with a
/// sealed state bound to this user, project and integration, and PKCE when configured).
/// `?loginHost=NAME` chooses among the provider's login hosts (Salesforce's `production` and
/// `sandbox`); the connection refreshes on the host it was made on.
pub(super) async fn oauth_start(
    connect: &Connect,
    project_id: &str,
    headers: &HeaderMap,
    query: Option<&str>,
    integration: &str,
) -> Result<Response<Bytes>, ApiError> {
    let user_id = connect.user_of(project_id, headers).await?;
    let record = integration_of(connect, project_id, integration).await?;
    if record.config.authentication_type != Some(AuthenticationType::Oauth) {
        return Err(ApiError::BadRequest(format!(
            "integration `{integration}` does not connect with the OAuth authorization-code flow"
        )));
    }
    let params: BTreeMap<String, String> =
        url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()).into_owned().collect();
    let provider = oauth::Provider::of(integration, &record.config, connect.env())
        .and_then(|provider| provider.on_login_host(params.get("loginHost").map(String::as_str)))
        .map_err(oauth_error)?;
    let keys = connect.keys()?;
    let state = oauth::new_state(project_id, &user_id, integration);
    let url =
        oauth::authorization_url(keys, &provider, state, &callback_url(connect, headers)).await.map_err(oauth_error)?;
    Ok(json_response(StatusCode::OK, &json!({ "authorizationUrl": url })))
}

/// Where providers send users back: `<this stack's address>/oauth/callback`.
pub(super) fn callback_url(connect: &Connect, headers: &HeaderMap) -> String {
    format!("{}/oauth/callback", base_url(connect, headers))
}

/// This stack's own address: [`crate::runtime::BASE_URL_ENV`], else the request's host.
pub(super) fn base_url(connect: &Connect, headers: &HeaderMap) -> String {
    match connect.env().get(crate::runtime::BASE_URL_ENV) {
        Some(base) => base.trim_end_matches('/').to_string(),
        None => {
            let host = headers.get(http::header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("localhost");
            // Lambda Function URLs are HTTPS only; a local stack serves plain HTTP.
            let scheme = if connect.host() == crate::runtime::Host::Lambda { "https" } else { "http" };
            format!("{scheme}://{host}")
        }
    }
}

/// `GET /oauth/callback?code=...&state=...` (or `?error=...&state=...`): completes the flow
/// the state names — exchanges the code, seals and stores the tokens, enables the integration
/// for the user — and sends the browser back to the integration's `returnUrl`.
pub(super) async fn oauth_callback(
    runner: &Runner,
    headers: &HeaderMap,
    query: Option<&str>,
) -> Result<Response<Bytes>, ApiError> {
    let connect = runner.runtime().connect.as_ref();
    let params: BTreeMap<String, String> =
        url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()).into_owned().collect();
    let keys = connect.keys()?;
    let state = params.get("state").ok_or_else(|| ApiError::BadRequest("the callback has no `state`".into()))?;
    let flow = oauth::open_state(keys, state).await.map_err(oauth_error)?;
    let store = connect.store();
    let record = store
        .get_integration(&flow.project_id, &flow.integration)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no integration `{}` in this project", flow.integration)))?;
    let outcome = complete_flow(runner, &record, &flow, &params, headers).await;
    let return_url = record.config.return_url.as_deref().map(|url| fill_return_url(url, connect.env()));
    match (outcome, return_url) {
        (Ok(()), Some(Ok(mut url))) => {
            url.query_pairs_mut().append_pair("integration", &flow.integration).append_pair("connected", "true");
            Ok(redirect(url.as_str()))
        }
        (Err(error), Some(Ok(mut url))) if error.status().is_client_error() => {
            let mut query = url.query_pairs_mut();
            query.append_pair("integration", &flow.integration);
            // A refusal at the provider (the user said no) keeps the provider's own code.
            match oauth::ProviderRefusal::of_callback(&params) {
                Some(refusal) => {
                    query.append_pair("error", &refusal.code);
                    if let Some(description) = &refusal.description {
                        query.append_pair("error_description", description);
                    }
                }
                None => {
                    query.append_pair("error", error.code());
                }
            }
            drop(query);
            Ok(redirect(url.as_str()))
        }
        (Ok(()), _) => {
            Ok(json_response(StatusCode::OK, &json!({ "integration": flow.integration, "connected": true })))
        }
        (Err(error), _) => Err(error),
    }
}

async fn complete_flow(
    runner: &Runner,
    record: &IntegrationRecord,
    flow: &oauth::FlowState,
    params: &BTreeMap<String, String>,
    headers: &HeaderMap,
) -> Result<(), ApiError> {
    let connect = runner.runtime().connect.as_ref();
    if let Some(error) = params.get("error") {
        let error: String = error.chars().take(100).collect();
        return Err(ApiError::BadRequest(format!("the user or the provider did not authorise: {error}")));
    }
    let code = params.get("code").ok_or_else(|| ApiError::BadRequest("the callback has no `code`".into()))?;
    let provider = oauth::Provider::of(&record.name, &record.config, connect.env())
        .and_then(|provider| provider.on_login_host(flow.login_host.as_deref()))
        .map_err(oauth_error)?;
    let mut tokens = oauth::exchange_code(
        connect.http(),
        &provider,
        code,
        &callback_url(connect, headers),
        flow.verifier.as_deref(),
    )
    .await
    .map_err(oauth_error)?;
    // The identity webhooks are routed by: what the token answer says, what introspection
    // adds, and the login host the connection refreshes on.
    let introspected = oauth::introspect(connect.http(), &provider, &tokens.access_token).await.map_err(oauth_error)?;
    tokens.identity.extend(introspected);
    if let Some(host) = &flow.login_host {
        tokens.identity.insert(oauth::LOGIN_HOST.to_string(), host.clone());
    }
    let (project_id, user_id, integration) = (&flow.project_id, &flow.user_id, &flow.integration);
    let switched_on = store_tokens(connect, project_id, user_id, integration, &tokens).await?;
    if switched_on {
        triggers::integration_enabled(runner, project_id, user_id, integration).await?;
    }
    let mut details = json!({ "integration": integration, "userId": user_id, "connectedAt": format_timestamp(&now()) });
    if !tokens.identity.is_empty() {
        details["identity"] = json!(tokens.identity);
    }
    if let Some(seconds) = tokens.expires_in {
        details["expiresIn"] = json!(seconds);
    }
    triggers::oauth_connected(runner, project_id, user_id, integration, details).await?;
    Ok(())
}

/// Seals and stores `tokens` as the user's credentials for `integration`, and enables it.
pub(super) async fn store_tokens(
    connect: &Connect,
    project_id: &str,
    user_id: &str,
    integration: &str,
    tokens: &oauth::Tokens,
) -> Result<bool, ApiError> {
    let keys = connect.keys()?;
    let plaintext =
        serde_json::to_vec(&tokens.credentials()).map_err(|e| ApiError::Internal(format!("credentials: {e}")))?;
    let context = credential_context(project_id, user_id, integration);
    let sealed = crypto::seal(keys, &context, &plaintext).await.map_err(ConnectError::from)?;
    let stored = CredentialRecord {
        sealed,
        status: CredentialStatus::Connected,
        expires_at: tokens.expires_at(),
        updated_at: now(),
        refreshing_until: None,
        identity: tokens.identity.clone(),
    };
    connect.store().put_credentials(project_id, user_id, integration, &stored).await?;
    let before =
        connect.store().set_enabled(project_id, user_id, &Switch::Integration(integration.to_string()), true).await?;
    connect.sync_schedules(project_id, user_id).await?;
    Ok(before != Some(true))
}

fn fill_return_url(url: &str, env: &BTreeMap<String, String>) -> Result<url::Url, ApiError> {
    let ctx = json!({ "env": env });
    let filled = match crate::template::render(&Value::from(url), &ctx) {
        Ok(Value::String(text)) => text,
        _ => return Err(ApiError::Internal(format!("the integration's returnUrl `{url}` cannot be filled in"))),
    };
    url::Url::parse(&filled).map_err(|e| ApiError::Internal(format!("the integration's returnUrl is not a URL: {e}")))
}

fn redirect(location: &str) -> Response<Bytes> {
    let mut response = json_response(StatusCode::FOUND, &json!({ "location": location }));
    if let Ok(value) = http::HeaderValue::from_str(location) {
        response.headers_mut().insert(http::header::LOCATION, value);
    }
    response
}

fn oauth_error(error: oauth::OAuthError) -> ApiError {
    match error {
        oauth::OAuthError::BadState(_) | oauth::OAuthError::Refused(_) | oauth::OAuthError::Revoked(_) => {
            ApiError::BadRequest(error.to_string())
        }
        oauth::OAuthError::NotConfigured(_) => ApiError::BadRequest(error.to_string()),
        oauth::OAuthError::Endpoint(_) | oauth::OAuthError::Crypto(_) => ApiError::Internal(error.to_string()),
    }
}

/// Whose settings a settings route names, with the declared inputs.
pub(super) enum SettingsOf<'a> {
    Integration(&'a str),
    Workflow(&'a str),
}

/// `GET` (or `PUT` with `{KEY: value, ...}`; `null` clears) the user's settings of an
/// integration or a workflow.
pub(super) async fn settings(
    connect: &Connect,
    project_id: &str,
    headers: &HeaderMap,
    of: SettingsOf<'_>,
    write: Option<&Bytes>,
) -> Result<Response<Bytes>, ApiError> {
    let user_id = connect.user_of(project_id, headers).await?;
    let store = connect.store();
    let (scope, inputs) = match of {
        SettingsOf::Integration(name) => {
            let integration = store
                .get_integration(project_id, name)
                .await?
                .filter(|i| i.name != IMPLICIT_INTEGRATION)
                .ok_or_else(|| ApiError::NotFound(format!("no integration `{name}` in this project")))?;
            (SettingsScope::Integration(integration.name), integration.inputs)
        }
        SettingsOf::Workflow(id) => {
            let deployment = store
                .get_deployed(project_id, id)
                .await?
                .ok_or_else(|| ApiError::NotFound(format!("no deployed workflow `{id}` in this project")))?;
            (SettingsScope::Workflow(id.to_string()), deployment.workflow.inputs)
        }
    };
    if let Some(body) = write {
        let value = json_body(body)?;
        let Value::Object(map) = value else {
            return Err(ApiError::BadRequest("the body must be an object of setting key → value".into()));
        };
        let mut values = check_settings_write(&inputs, &map).map_err(ApiError::Validation)?;
        for input in inputs.values().filter(|input| input.kind == InputType::Password) {
            if let Some(value) = values.get_mut(&input.id).filter(|value| !value.is_null()) {
                let context = setting_context(project_id, &user_id, &scope, &input.id);
                *value = seal_value(connect.keys().ok(), &context, value).await?;
            }
        }
        store.put_settings(project_id, &user_id, &scope, &values).await?;
    }
    let stored = store.get_settings(project_id, &user_id, &scope).await?;
    Ok(json_response(StatusCode::OK, &settings_json(&inputs, &stored)))
}

/// The deployed integration `name` of the project, or 404.
async fn integration_of(connect: &Connect, project_id: &str, name: &str) -> Result<IntegrationRecord, ApiError> {
    connect
        .store()
        .get_integration(project_id, name)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no integration `{name}` in this project")))
}

/// The body as JSON, within this module's size and depth limits.
fn json_body(body: &Bytes) -> Result<Value, ApiError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(ApiError::PayloadTooLarge { size: body.len(), limit: MAX_BODY_BYTES });
    }
    let value: Value =
        serde_json::from_slice(body).map_err(|e| ApiError::BadRequest(format!("the body is not JSON: {e}")))?;
    if too_deep(&value) {
        return Err(ApiError::BadRequest(format!("the body is nested deeper than {MAX_JSON_DEPTH} levels")));
    }
    Ok(value)
}

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

use crate::auth;
use crate::connect::{check_settings_write, seal_value, setting_context, shown_settings};
use crate::error::{ApiError, json_response};
use crate::model::project::{IMPLICIT_INTEGRATION, Input, InputType};
use crate::ports::{IntegrationRecord, SettingsScope, Switch, UserMeta};
use crate::record::{MAX_JSON_DEPTH, format_timestamp, too_deep};
use crate::runtime::Runtime;

/// The largest body these routes read.
const MAX_BODY_BYTES: usize = 64 * 1024;
/// The longest user name, email or time zone kept.
const MAX_META_LEN: usize = 256;

/// The user a request acts for: the token's, in `project_id`, recorded on first sight.
pub(super) async fn user_of(runtime: &Runtime, project_id: &str, headers: &HeaderMap) -> Result<String, ApiError> {
    let token = auth::bearer_token(headers)?;
    let Some(project) = runtime.store.get_project(project_id).await? else {
        return Err(auth::refuse_for_missing_project(token).into());
    };
    let user_id = auth::verify_user_token(&project.signing_public_key_pem, token)?;
    runtime.known_user(project_id, &user_id).await?;
    Ok(user_id)
}

/// `GET /projects/{p}/sdk/me`.
pub(super) async fn get_me(
    runtime: &Runtime,
    project_id: &str,
    headers: &HeaderMap,
) -> Result<Response<Bytes>, ApiError> {
    let user_id = user_of(runtime, project_id, headers).await?;
    let user = runtime.store.update_user(project_id, &user_id, &UserMeta::default()).await?;
    Ok(json_response(StatusCode::OK, &user_json(&user)))
}

/// `PATCH /projects/{p}/sdk/me` with `{name?, email?, timezone?}`.
pub(super) async fn patch_me(
    runtime: &Runtime,
    project_id: &str,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Response<Bytes>, ApiError> {
    let user_id = user_of(runtime, project_id, headers).await?;
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
    let user = runtime.store.update_user(project_id, &user_id, &meta).await?;
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
    runtime: &Runtime,
    project_id: &str,
    headers: &HeaderMap,
) -> Result<Response<Bytes>, ApiError> {
    let user_id = user_of(runtime, project_id, headers).await?;
    let store = &runtime.store;
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
        integrations.push(json!({
            "name": integration.name,
            "custom": integration.name.starts_with(crate::model::project::CUSTOM_PREFIX),
            "config": display_config(&integration),
            "enabled": enabled,
            "connected": false,
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
    runtime: &Runtime,
    project_id: &str,
    headers: &HeaderMap,
    switch: Switch,
    body: &Bytes,
) -> Result<Response<Bytes>, ApiError> {
    let user_id = user_of(runtime, project_id, headers).await?;
    let enabled = json_body(body)?
        .get("enabled")
        .and_then(Value::as_bool)
        .ok_or_else(|| ApiError::BadRequest("the body must be {\"enabled\": true} or {\"enabled\": false}".into()))?;
    let store = &runtime.store;
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
    store.set_enabled(project_id, &user_id, &switch, enabled).await?;
    Ok(json_response(StatusCode::OK, &json!({ "enabled": enabled })))
}

/// Whose settings a settings route names, with the declared inputs.
pub(super) enum SettingsOf<'a> {
    Integration(&'a str),
    Workflow(&'a str),
}

/// `GET` (or `PUT` with `{KEY: value, ...}`; `null` clears) the user's settings of an
/// integration or a workflow.
pub(super) async fn settings(
    runtime: &Runtime,
    project_id: &str,
    headers: &HeaderMap,
    of: SettingsOf<'_>,
    write: Option<&Bytes>,
) -> Result<Response<Bytes>, ApiError> {
    let user_id = user_of(runtime, project_id, headers).await?;
    let store = &runtime.store;
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
                *value = seal_value(runtime.keys.as_deref(), &context, value).await?;
            }
        }
        store.put_settings(project_id, &user_id, &scope, &values).await?;
    }
    let stored = store.get_settings(project_id, &user_id, &scope).await?;
    Ok(json_response(StatusCode::OK, &settings_json(&inputs, &stored)))
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

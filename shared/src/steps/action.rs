//! The Action step: a catalog action ([`crate::catalog`]) run as a request on the workflow's
//! integration API. The step's `params` are rendered with the step's variables and checked
//! against the action's declared types; the catalog's request template is then rendered over
//! `params` only (a value a param gives is never templated again), a key whose single
//! `{{params.X}}` is not given is left out, path values are percent-encoded, and the
//! integration's `authorization` template (over the user's credentials and settings) becomes
//! the request's credentials. Invariant: the recorded input shows the params and the request
//! without its credentials.

use serde_json::{Map, Value, json};

use super::{DEFAULT_REQUEST_TIMEOUT, StepPorts, request};
use crate::catalog::{self, Action};
use crate::model::project::{Authorization, IntegrationApi};
use crate::model::{ActionStep, Method, Workflow};
use crate::record::{Execution, StepError};
use crate::template;

pub(super) async fn run(
    ports: StepPorts<'_>,
    execution: &Execution,
    key: &str,
    step: &ActionStep,
    workflow: &Workflow,
    ctx: &Value,
) -> (Value, Result<Value, StepError>) {
    let integration = workflow.integration.as_deref().unwrap_or(crate::model::project::IMPLICIT_INTEGRATION);
    let Some(action) = catalog::action(integration, &step.action) else {
        let error = format!("integration `{integration}` has no action `{}` (see `sluice actions`)", step.action);
        return (Value::Null, Err(StepError::terminal(error)));
    };
    let Some(api) = workflow.integration_api.as_ref() else {
        let error = format!("integration `{integration}` has no API configured (`apiBaseUrl` and `authorization`)");
        return (Value::Null, Err(StepError::terminal(error)));
    };
    let params = match params(step, action, ctx) {
        Ok(params) => params,
        Err(error) => return (Value::Null, Err(error)),
    };
    let rendered = match render(action, api, &params, ctx) {
        Ok(rendered) => rendered,
        Err(error) => return (json!({ "action": step.action, "params": params }), Err(error)),
    };
    let mut recorded_request = rendered.input_record();
    // Every form the credentials are sent in, redacted from whatever comes back.
    let mut secrets = rendered.auth.as_ref().map(request::RenderedAuth::secret_forms).unwrap_or_default();
    if let (Authorization::Header { name, .. }, Some(headers)) =
        (&api.authorization, recorded_request.get_mut("headers").and_then(Value::as_object_mut))
    {
        for (header, value) in headers.iter_mut() {
            if header.eq_ignore_ascii_case(name) {
                *value = Value::from(crate::connect::REDACTED);
            }
        }
        let sent = rendered.headers.iter().filter(|(header, _)| header.eq_ignore_ascii_case(name));
        secrets.extend(sent.filter_map(|(_, value)| value.as_str()).filter(|v| !v.is_empty()).map(str::to_string));
    }
    let input =
        json!({ "integration": integration, "action": step.action, "params": params, "request": recorded_request });
    let idempotency_key = format!("{}:{key}", execution.id);
    let options = if execution.test { request::SendOptions::test_run() } else { request::SendOptions::default() };
    let response =
        match request::send(ports.http, ports.files, &execution.id, &rendered, &idempotency_key, &options).await {
            Ok(response) => response,
            Err(error) => return (input, crate::connect::redact_result(Err(error), &secrets)),
        };
    (input, crate::connect::redact_result(output(action, response), &secrets))
}

/// The step's params, rendered and checked against the action's declaration.
fn params(step: &ActionStep, action: &Action, ctx: &Value) -> Result<Value, StepError> {
    let mut rendered = Map::new();
    let mut problems = Vec::new();
    for (name, value) in &step.params {
        match template::render(value, ctx) {
            Ok(value) => {
                rendered.insert(name.clone(), value);
            }
            Err(error) => problems.push(format!("`params.{name}`: {error}")),
        }
    }
    for (name, spec) in &action.params {
        match rendered.get(name) {
            None | Some(Value::Null) if spec.required => problems.push(format!("`params.{name}` is required")),
            None | Some(Value::Null) => {
                rendered.remove(name);
            }
            Some(value) if !spec.kind.matches(value) => {
                problems.push(format!("`params.{name}` must be {}, got {}", spec.kind.name(), template::kind(value)))
            }
            Some(value) if !spec.one_of.is_empty() && !spec.one_of.contains(value) => {
                let allowed: Vec<String> = spec.one_of.iter().map(Value::to_string).collect();
                problems.push(format!("`params.{name}` must be one of {}, got {value}", allowed.join(", ")));
            }
            Some(_) => {}
        }
    }
    if problems.is_empty() { Ok(Value::Object(rendered)) } else { Err(StepError::terminal(problems.join("; "))) }
}

fn render(
    action: &Action,
    api: &IntegrationApi,
    params: &Value,
    ctx: &Value,
) -> Result<request::RenderedRequest, StepError> {
    let terminal = |e: template::TemplateError| StepError::terminal(e.to_string());
    let over_params = json!({ "params": params });
    let method = match template::render(&Value::from(action.request.method.clone()), &over_params) {
        Ok(Value::String(method)) => method,
        // An optional `{{params.method}}` that is not given.
        Err(template::TemplateError::MissingPath { .. }) => "GET".to_string(),
        Ok(other) => return Err(StepError::terminal(format!("the method must be text, got {other}"))),
        Err(error) => return Err(terminal(error)),
    };
    let method: Method = serde_json::from_value(Value::from(method.clone()))
        .map_err(|_| StepError::terminal(format!("unknown method `{method}` (GET, POST, PUT, PATCH, DELETE)")))?;
    let base = match template::render(&Value::from(api.base_url.clone()), ctx).map_err(terminal)? {
        Value::String(base) => base,
        other => return Err(StepError::terminal(format!("`apiBaseUrl` must be text, got {other}"))),
    };
    let path = path(action, params)?;
    let mut rendered = request::RenderedRequest::new(method, format!("{}{path}", base.trim_end_matches('/')));
    rendered.query = mapping("query", action.request.query.as_ref(), &over_params)?;
    rendered.headers = mapping("headers", action.request.headers.as_ref(), &over_params)?;
    rendered.body = match &action.request.body {
        None => None,
        Some(body) => pruned(body, &over_params).map_err(terminal)?,
    };
    rendered.pagination = action.request.pagination.clone();
    rendered.timeout = DEFAULT_REQUEST_TIMEOUT;
    let text = |value: &String| match template::render(&Value::from(value.clone()), ctx).map_err(terminal)? {
        Value::String(text) => Ok(text),
        value @ (Value::Number(_) | Value::Bool(_)) => Ok(value.to_string()),
        other => Err(StepError::terminal(format!(
            "the integration's `authorization` must give text, got {}",
            template::kind(&other)
        ))),
    };
    match &api.authorization {
        Authorization::Bearer { token } => rendered.auth = Some(request::RenderedAuth::Bearer { token: text(token)? }),
        Authorization::Basic { username, password } => {
            rendered.auth = Some(request::RenderedAuth::Basic { username: text(username)?, password: text(password)? });
        }
        Authorization::Header { name, value } => {
            rendered.headers.retain(|header, _| !header.eq_ignore_ascii_case(name));
            rendered.headers.insert(name.clone(), Value::from(text(value)?));
        }
    }
    Ok(rendered)
}

/// The action's path with its params: percent-encoded, or as given for a `format: path`
/// param (which must be a path under the base URL).
fn path(action: &Action, params: &Value) -> Result<String, StepError> {
    let mut encoded = Map::new();
    for (name, spec) in &action.params {
        let Some(value) = params.get(name) else { continue };
        let text = match value {
            Value::String(text) => text.clone(),
            Value::Number(_) | Value::Bool(_) => value.to_string(),
            _ => continue,
        };
        let text = if spec.format.as_deref() == Some("path") {
            if let Err(why) = catalog::path::check(&text) {
                return Err(StepError::terminal(format!(
                    "`params.{name}` must be a path under `apiBaseUrl` starting with `/`: {why}; got `{}`",
                    text.escape_debug()
                )));
            }
            text
        } else {
            percent_encode(&text)
        };
        encoded.insert(name.clone(), Value::from(text));
    }
    match template::render(&Value::from(action.request.path.clone()), &json!({ "params": encoded })) {
        Ok(Value::String(path)) => Ok(path),
        Ok(other) => Err(StepError::terminal(format!("the path must be text, got {other}"))),
        Err(error) => Err(StepError::terminal(format!("the path needs a text param: {error}"))),
    }
}

fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// A query or headers template: a mapping (keys of absent params left out) or one
/// `{{params.X}}` giving a mapping.
fn mapping(
    what: &str,
    value: Option<&Value>,
    over_params: &Value,
) -> Result<std::collections::BTreeMap<String, Value>, StepError> {
    let Some(value) = value else { return Ok(Default::default()) };
    match pruned(value, over_params).map_err(|e| StepError::terminal(e.to_string()))? {
        None => Ok(Default::default()),
        Some(Value::Object(map)) => Ok(map.into_iter().filter(|(_, v)| !v.is_null()).collect()),
        Some(other) => Err(StepError::terminal(format!("`{what}` must be a mapping, got {}", template::kind(&other)))),
    }
}

/// `value` rendered, leaving out every mapping entry whose single `{{...}}` has no value;
/// `None` when `value` itself is such an expression.
fn pruned(value: &Value, ctx: &Value) -> Result<Option<Value>, template::TemplateError> {
    match value {
        Value::Object(map) => {
            let mut out = Map::new();
            for (key, value) in map {
                if let Some(value) = pruned(value, ctx)? {
                    out.insert(key.clone(), value);
                }
            }
            Ok(Some(Value::Object(out)))
        }
        Value::Array(items) => {
            items.iter().map(|item| template::render(item, ctx)).collect::<Result<Vec<_>, _>>().map(|v| Some(v.into()))
        }
        other => template::render_optional(other, ctx),
    }
}

/// The step's output: `okWhen` checked, then the output mapping over `{{response...}}`.
fn output(action: &Action, response: Value) -> Result<Value, StepError> {
    let over_response = json!({ "response": response });
    if let Some(ok_when) = &action.ok_when {
        let at = |path: &str| {
            template::PathExpr::parse(&format!("response.{path}"))
                .ok()
                .and_then(|p| template::lookup(&over_response, &p).cloned())
        };
        if at(&ok_when.path) != Some(Value::Bool(true)) {
            let message = match at(&ok_when.message) {
                Some(Value::String(text)) => text,
                Some(other) => other.to_string(),
                None => "no error given".to_string(),
            };
            let mut error = StepError::terminal(format!("the API answered `{}` is not true: {message}", ok_when.path));
            error.details = Some(over_response["response"].clone());
            return Err(error);
        }
    }
    let Some(mapping) = &action.output else { return Ok(over_response["response"].clone()) };
    match pruned(mapping, &over_response) {
        Ok(output) => Ok(output.unwrap_or(Value::Null)),
        Err(error) => Err(StepError::terminal(format!("the response does not have what the action returns: {error}"))),
    }
}

#[cfg(test)]
#[path = "action_tests.rs"]
mod tests;

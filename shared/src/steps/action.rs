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
use crate::catalog::{self, Action, ActionRequest, CatalogIntegration};
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
    let (Some(entry), Some(action)) = (catalog::integration(integration), catalog::action(integration, &step.action))
    else {
        let error = format!("integration `{integration}` has no action `{}` (see `sluice actions`)", step.action);
        return (Value::Null, Err(StepError::terminal(error)));
    };
    let Some(api) = workflow.integration_api.as_ref() else {
        let error = format!("integration `{integration}` has no API configured (`apiBaseUrl` and `authorization`)");
        return (Value::Null, Err(StepError::terminal(error)));
    };
    let params = match params(step, action, ctx, &execution.id, key) {
        Ok(params) => params,
        Err(error) => return (Value::Null, Err(error)),
    };
    let mut run = ActionRun {
        ports,
        execution,
        key,
        workflow,
        integration,
        entry,
        action,
        api,
        ctx: ctx.clone(),
        params,
        secrets: Vec::new(),
        requests: Vec::new(),
        refreshed: false,
    };
    let result = run.send_all().await;
    let mut input = json!({
        "integration": integration,
        "action": step.action,
        "params": run.params,
        "request": run.requests.first().cloned().unwrap_or(Value::Null),
    });
    if run.requests.len() > 1 {
        input["requests"] = Value::Array(run.requests);
    }
    crate::connect::redact_value(&mut input, &run.secrets);
    (input, crate::connect::redact_result(result, &run.secrets))
}

/// One run of an action: its requests in order, with what they share.
struct ActionRun<'a> {
    ports: StepPorts<'a>,
    execution: &'a Execution,
    key: &'a str,
    workflow: &'a Workflow,
    integration: &'a str,
    entry: &'static CatalogIntegration,
    action: &'static Action,
    api: &'a IntegrationApi,
    /// The step's variables; its `credentials` replaced after a refresh.
    ctx: Value,
    params: Value,
    /// Every form of the credentials sent, redacted from what is recorded.
    secrets: Vec<String>,
    /// Each request sent, as recorded (credentials redacted).
    requests: Vec<Value>,
    /// Whether the credentials were refreshed once already.
    refreshed: bool,
}

impl ActionRun<'_> {
    /// The first request (or, when the provider says the record exists, the `onConflict`
    /// one), then each of `then`; the output mapped over the last answer.
    async fn send_all(&mut self) -> Result<Value, StepError> {
        let over =
            json!({ "params": self.params, "api": { "version": self.api.version }, "bytes": bytes(&self.params) });
        let first = match self.send(&self.action.request, &over).await {
            Err(error) => match &self.action.on_conflict {
                Some(conflict) if error.details.as_ref().is_some_and(|d| conflict.when.matches(d)) => {
                    let answer = error.details.clone().unwrap_or(Value::Null);
                    let mut extracted = Map::new();
                    for (name, extract) in &conflict.extract {
                        let Some(value) = extract.read(&answer) else { return Err(error) };
                        extracted.insert(name.clone(), Value::from(value));
                    }
                    let mut over = over.clone();
                    over["conflict"] = Value::Object(extracted);
                    self.send(&conflict.request, &over).await?
                }
                _ => return Err(error),
            },
            ok => ok?,
        };
        let mut responses = vec![first];
        for next in &self.action.then {
            let mut over = over.clone();
            over["responses"] = Value::Array(responses.clone());
            let answer = self.send(next, &over).await?;
            responses.push(answer);
        }
        let last = responses.last().cloned().unwrap_or(Value::Null);
        output(self.action, last, responses)
    }

    /// Sends one request of the action, rendered over `over`; if the provider says the
    /// access token is no longer valid (the catalog's `refreshWhen`), once per step: fresh
    /// credentials, then the same request again.
    async fn send(&mut self, template: &ActionRequest, over: &Value) -> Result<Value, StepError> {
        let answer = self.send_once(template, over).await;
        let Err(error) = &answer else { return answer };
        let refresh_when = self.entry.oauth.as_ref().map(|o| o.refresh_when.as_slice()).unwrap_or_default();
        let signals_expiry = error.details.as_ref().is_some_and(|d| refresh_when.iter().any(|m| m.matches(d)));
        let rejected = self.ctx.pointer("/credentials/accessToken").and_then(Value::as_str).map(str::to_string);
        let (true, false, Some(secrets), Some(rejected)) =
            (signals_expiry, self.refreshed, self.ports.secrets, rejected)
        else {
            return answer;
        };
        self.refreshed = true;
        match secrets.credentials_after_rejection(self.execution, self.workflow, &rejected).await {
            Ok(Some(fresh)) => {
                self.secrets.extend(fresh.secrets.iter().cloned());
                self.ctx["credentials"] = Value::Object(fresh.values);
            }
            Ok(None) => return answer,
            Err(error) => {
                let message = format!("the provider refused the access token, and it could not be renewed: {error}");
                return Err(if error.is_retryable() {
                    StepError::retryable(message)
                } else {
                    StepError::terminal(message)
                });
            }
        }
        self.send_once(template, over).await
    }

    async fn send_once(&mut self, template: &ActionRequest, over: &Value) -> Result<Value, StepError> {
        let rendered = render(self.integration, self.entry, self.action, template, self.api, over, &self.ctx)?;
        let mut recorded = rendered.input_record();
        self.secrets.extend(rendered.auth.as_ref().map(request::RenderedAuth::secret_forms).unwrap_or_default());
        if let (Authorization::Header { name, .. }, Some(headers)) =
            (&self.api.authorization, recorded.get_mut("headers").and_then(Value::as_object_mut))
        {
            for (header, value) in headers.iter_mut() {
                if header.eq_ignore_ascii_case(name) {
                    *value = Value::from(crate::connect::REDACTED);
                }
            }
            let sent = rendered.headers.iter().filter(|(header, _)| header.eq_ignore_ascii_case(name));
            let values = sent.filter_map(|(_, value)| value.as_str()).filter(|v| !v.is_empty()).map(str::to_string);
            self.secrets.extend(values);
        }
        self.requests.push(recorded);
        let n = self.requests.len();
        let idempotency_key = if n == 1 {
            format!("{}:{}", self.execution.id, self.key)
        } else {
            format!("{}:{}:{n}", self.execution.id, self.key)
        };
        let options =
            if self.execution.test { request::SendOptions::test_run() } else { request::SendOptions::default() };
        let mut rendered = rendered;
        if let (Some(pages), Some(pagination)) =
            (self.params.get(catalog::MAX_PAGES_PARAM).and_then(Value::as_u64), rendered.pagination.as_mut())
        {
            set_max_pages(pagination, u32::try_from(pages).unwrap_or(1000));
        }
        request::send(self.ports.http, self.ports.files, &self.execution.id, &rendered, &idempotency_key, &options)
            .await
    }
}

/// `pagination` fetching at most `pages` pages.
fn set_max_pages(pagination: &mut crate::model::Pagination, pages: u32) {
    use crate::model::Pagination;
    match pagination {
        Pagination::Cursor { max_pages, .. }
        | Pagination::Link { max_pages, .. }
        | Pagination::NextUrl { max_pages, .. }
        | Pagination::Page { max_pages, .. }
        | Pagination::Offset { max_pages, .. } => *max_pages = Some(pages.clamp(1, 1000)),
    }
}

/// The byte length of each param a request may send as a body: a text's UTF-8 bytes, a file
/// object's `size`.
fn bytes(params: &Value) -> Value {
    let Some(params) = params.as_object() else { return json!({}) };
    let sizes: Map<String, Value> = params
        .iter()
        .filter_map(|(name, value)| {
            let size = match value {
                Value::String(text) => text.len() as u64,
                Value::Object(file) => file.get("size")?.as_u64()?,
                _ => return None,
            };
            Some((name.clone(), json!(size)))
        })
        .collect();
    Value::Object(sizes)
}

/// The id a retried create names its record with: the same for every attempt of this step of
/// this execution, in the param's `format` (`base32hex`: lowercase hex is a subset).
fn idempotent_id(execution_id: &str, key: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, format!("{execution_id}:{key}").as_bytes());
    digest.as_ref().iter().take(16).map(|b| format!("{b:02x}")).collect()
}

/// The step's params, rendered and checked against the action's declaration.
fn params(step: &ActionStep, action: &Action, ctx: &Value, execution_id: &str, key: &str) -> Result<Value, StepError> {
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
    if let Some(idempotency) = &action.idempotency
        && rendered.get(&idempotency.param).is_none_or(Value::is_null)
    {
        rendered.insert(idempotency.param.clone(), Value::from(idempotent_id(execution_id, key)));
    }
    if let Some(pages) = rendered.get(catalog::MAX_PAGES_PARAM)
        && action.default_max_pages().is_some()
        && !pages.as_u64().is_some_and(|n| (1..=1000).contains(&n))
    {
        problems
            .push(format!("`params.{}` must be a whole number from 1 to 1000, got {pages}", catalog::MAX_PAGES_PARAM));
    }
    for (name, spec) in &action.params {
        if let (Some(default), None | Some(Value::Null)) = (&spec.default, rendered.get(name)) {
            rendered.insert(name.clone(), default.clone());
        }
    }
    for (name, spec) in &action.all_params() {
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

/// One request template of `action`, rendered over `over` (`params`, `api`, `bytes` and, for
/// follow-ups, `responses` and `conflict`), with the integration's credentials from `ctx`
/// when it goes to the API's origin.
fn render(
    integration: &str,
    entry: &CatalogIntegration,
    action: &Action,
    template_request: &ActionRequest,
    api: &IntegrationApi,
    over: &Value,
    ctx: &Value,
) -> Result<request::RenderedRequest, StepError> {
    let terminal = |e: template::TemplateError| StepError::terminal(e.to_string());
    let method = match template::render(&Value::from(template_request.method.clone()), over) {
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
    let base = base.trim_end_matches('/').to_string();
    let url = match &template_request.url {
        Some(url) => match template::render(&Value::from(url.clone()), over) {
            Ok(Value::String(url)) => url,
            Ok(other) => return Err(StepError::terminal(format!("the API gave no URL to go on to, got {other}"))),
            Err(error) => return Err(StepError::terminal(format!("the API gave no URL to go on to: {error}"))),
        },
        None => format!("{base}{}", path(action, &template_request.path, over)?),
    };
    let same_origin = match (url::Url::parse(&url), url::Url::parse(&base)) {
        (Ok(to), Ok(base)) => to.origin() == base.origin(),
        _ => false,
    };
    let mut rendered = request::RenderedRequest::new(method, url);
    rendered.query = mapping("query", template_request.query.as_ref(), over)?;
    rendered.headers = mapping("headers", template_request.headers.as_ref(), over)?;
    rendered.body = match &template_request.body {
        None => None,
        Some(body) => pruned(body, over).map_err(terminal)?,
    };
    rendered.body_type = template_request.body_type.unwrap_or_default();
    rendered.pagination = template_request.pagination.clone();
    rendered.timeout = DEFAULT_REQUEST_TIMEOUT;
    rendered.checks = request::ResponseChecks {
        api: integration.to_string(),
        rules: entry.errors.clone(),
        ok_when: if template_request.url.is_some() { None } else { action.ok_when.clone() },
    };
    if !same_origin {
        // Another host (an upload URL the API handed out) gets no credentials.
        return Ok(rendered);
    }
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

/// A request template's path over `over`: params percent-encoded, or as given for a
/// `format: path` param (which must be a path under the base URL); `api` and `conflict`
/// values percent-encoded too.
fn path(action: &Action, template_path: &str, over: &Value) -> Result<String, StepError> {
    let mut encoded = Map::new();
    let params = over.get("params").cloned().unwrap_or(Value::Null);
    for (name, spec) in &action.all_params() {
        let Some(value) = params.get(name) else { continue };
        let Some(text) = scalar_text(value) else { continue };
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
    let mut ctx = json!({ "params": encoded });
    for root in ["api", "conflict"] {
        if let Some(Value::Object(values)) = over.get(root) {
            let values: Map<String, Value> = values
                .iter()
                .filter_map(|(k, v)| Some((k.clone(), Value::from(percent_encode(&scalar_text(v)?)))))
                .collect();
            ctx[root] = Value::Object(values);
        }
    }
    match template::render(&Value::from(template_path.to_string()), &ctx) {
        Ok(Value::String(path)) => Ok(path),
        Ok(other) => Err(StepError::terminal(format!("the path must be text, got {other}"))),
        Err(error) => Err(StepError::terminal(format!("the path needs a text param: {error}"))),
    }
}

fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Number(_) | Value::Bool(_) => Some(value.to_string()),
        _ => None,
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

/// The step's output: the output mapping over `{{response...}}` (the last answer) and
/// `{{responses.N...}}` (each answer, in order); `okWhen` was checked on every page.
fn output(action: &Action, response: Value, responses: Vec<Value>) -> Result<Value, StepError> {
    let Some(mapping) = &action.output else { return Ok(response) };
    let over_response = json!({ "response": response, "responses": responses });
    match pruned(mapping, &over_response) {
        Ok(output) => Ok(output.unwrap_or(Value::Null)),
        Err(error) => Err(StepError::terminal(format!("the response does not have what the action returns: {error}"))),
    }
}

#[cfg(test)]
#[path = "action_tests.rs"]
mod tests;

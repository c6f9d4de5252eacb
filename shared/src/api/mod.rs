//! The HTTP API, written once against `http::Request`/`Response` and served by the trigger
//! Lambda (through lambda_http) and by `sluice dev` (through axum). Every error becomes a
//! JSON body through [`ApiError::into_response`]; nothing here panics on client input.

mod actions;
mod connect;
mod events;
mod executions;
mod history;
mod idempotency;
mod management;
mod notifications;
mod respond;
mod schedules;
mod test_runs;
mod trigger;
mod validate;
mod webhooks;

pub use test_runs::TEST_WORKFLOW_PREFIX;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use serde_json::json;

use crate::error::{ApiError, json_response};
use crate::ports::Switch;
use crate::runner::Runner;
use crate::runtime::Runtime;

/// Routes every inbound request.
#[derive(Clone)]
pub struct Api {
    runtime: Runtime,
    /// Runs the inline first segments of the executions this API starts.
    runner: Runner,
}

impl Api {
    pub fn new(runtime: Runtime) -> Self {
        Api { runner: Runner::new(runtime.clone()), runtime }
    }

    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// Handles one request. Never fails: errors become JSON error responses.
    pub async fn handle(&self, request: Request<Bytes>) -> Response<Bytes> {
        match self.route(request).await {
            Ok(response) => response,
            Err(error) => error.into_response(),
        }
    }

    async fn route(&self, request: Request<Bytes>) -> Result<Response<Bytes>, ApiError> {
        let path = request.uri().path().to_string();
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        match segments.as_slice() {
            ["projects", project, "sdk", "triggers", workflow] => {
                // The workflow's own `method` is checked once it is read.
                if ![Method::GET, Method::POST, Method::PUT, Method::PATCH, Method::DELETE].contains(request.method()) {
                    return Err(ApiError::MethodNotAllowed(
                        "trigger routes take GET, POST, PUT, PATCH or DELETE".into(),
                    ));
                }
                let (project, workflow) = (id(project)?, id(workflow)?);
                trigger::handle(&self.runner, project, workflow, request).await
            }
            ["projects", project, "sdk", "events", "trigger"] => {
                allow(&request, &Method::POST)?;
                let project = id(project)?;
                let (parts, body) = request.into_parts();
                events::sdk_trigger(&self.runner, project, &parts, &body).await
            }
            ["projects", project, "events", "trigger"] => {
                allow(&request, &Method::POST)?;
                let project = id(project)?;
                let (parts, body) = request.into_parts();
                events::api_trigger(&self.runner, project, &parts, &body).await
            }
            ["projects", project, "deploy"] => {
                allow(&request, &Method::POST)?;
                let project = id(project)?;
                let (parts, body) = request.into_parts();
                management::deploy(&self.runtime, project, &parts.headers, &body).await
            }
            ["projects", project, "workflows"] => {
                allow(&request, &Method::GET)?;
                management::list(&self.runtime, id(project)?, request.headers()).await
            }
            ["projects", project, "workflows", workflow, "test-request"] => {
                let (project, workflow) = (id(project)?, id(workflow)?);
                match *request.method() {
                    Method::POST => {
                        management::arm_test_request(&self.runtime, project, workflow, request.headers()).await
                    }
                    Method::GET => management::test_request(&self.runtime, project, workflow, request.headers()).await,
                    _ => Err(ApiError::MethodNotAllowed("use POST (a new test URL) or GET (the sample)".into())),
                }
            }
            ["projects", project, "test-requests", workflow, token] => {
                let (project, workflow, token) = (id(project)?, id(workflow)?, id(token)?);
                management::capture_test_request(&self.runtime, project, workflow, token, request).await
            }
            ["projects", project, "workflows", workflow] => {
                allow(&request, &Method::DELETE)?;
                let (project, workflow) = (id(project)?, id(workflow)?);
                management::undeploy_workflow(&self.runtime, project, workflow, request.headers()).await
            }
            ["projects", project, "integrations", target] => {
                allow(&request, &Method::DELETE)?;
                let (project, target) = (id(project)?, integration(target)?);
                management::undeploy_integration(&self.runtime, project, target, request.headers()).await
            }
            ["projects", project, "executions"] => {
                allow(&request, &Method::GET)?;
                history::list(&self.runtime, id(project)?, request.headers(), request.uri().query()).await
            }
            ["projects", project, "executions", execution, action @ ("replay" | "redrive" | "cancel")] => {
                allow(&request, &Method::POST)?;
                let (project, execution) = (id(project)?, id(execution)?);
                let (parts, body) = request.into_parts();
                match *action {
                    "replay" => actions::replay(&self.runner, project, execution, &parts.headers, &body).await,
                    "redrive" => actions::redrive(&self.runner, project, execution, &parts.headers, &body).await,
                    _ => actions::cancel(&self.runner, project, execution, &parts.headers, &body).await,
                }
            }
            ["projects", project, "executions", execution] => {
                allow(&request, &Method::GET)?;
                let (project, execution) = (id(project)?, id(execution)?);
                executions::get(&self.runtime, project, execution, request.headers()).await
            }
            ["projects", project, "test-runs"] => {
                allow(&request, &Method::POST)?;
                let project = id(project)?;
                let (parts, body) = request.into_parts();
                test_runs::handle(&self.runner, project, &parts.headers, &body).await
            }
            ["projects", project, "sdk", "me"] => {
                let project = id(project)?;
                let (parts, body) = request.into_parts();
                match parts.method {
                    Method::GET => connect::get_me(&self.runtime.connect, project, &parts.headers).await,
                    Method::PATCH => connect::patch_me(&self.runtime.connect, project, &parts.headers, &body).await,
                    _ => Err(ApiError::MethodNotAllowed("use GET or PATCH for this route".into())),
                }
            }
            ["projects", project, "sdk", "connect"] => {
                allow(&request, &Method::GET)?;
                connect::connect(&self.runtime.connect, id(project)?, request.headers()).await
            }
            ["projects", project, "sdk", kind @ ("integrations" | "workflows"), target] => {
                allow(&request, &Method::PUT)?;
                let project = id(project)?;
                let switch = match *kind {
                    "integrations" => Switch::Integration(integration(target)?.to_string()),
                    _ => Switch::Workflow(id(target)?.to_string()),
                };
                let (parts, body) = request.into_parts();
                connect::set_enabled(&self.runner, project, &parts.headers, switch, &body).await
            }
            ["projects", project, "sdk", "integrations", target, "oauth", "start"] => {
                allow(&request, &Method::GET)?;
                let (project, target) = (id(project)?, integration(target)?);
                connect::oauth_start(&self.runtime.connect, project, request.headers(), request.uri().query(), target)
                    .await
            }
            ["oauth", "callback"] => {
                allow(&request, &Method::GET)?;
                connect::oauth_callback(&self.runner, request.headers(), request.uri().query()).await
            }
            ["projects", project, "sdk", "integrations", target, "credentials"] => {
                let (project, target) = (id(project)?, integration(target)?);
                let (parts, body) = request.into_parts();
                match parts.method {
                    Method::PUT => connect::put_credentials(&self.runner, project, &parts.headers, target, &body).await,
                    Method::DELETE => {
                        connect::delete_credentials(&self.runtime.connect, project, &parts.headers, target).await
                    }
                    _ => Err(ApiError::MethodNotAllowed("use PUT or DELETE for this route".into())),
                }
            }
            ["projects", project, "sdk", kind @ ("integrations" | "workflows"), target, "settings"] => {
                let project = id(project)?;
                let of = match *kind {
                    "integrations" => connect::SettingsOf::Integration(integration(target)?),
                    _ => connect::SettingsOf::Workflow(id(target)?),
                };
                let (parts, body) = request.into_parts();
                let write = match parts.method {
                    Method::GET => None,
                    Method::PUT => Some(&body),
                    _ => return Err(ApiError::MethodNotAllowed("use GET or PUT for this route".into())),
                };
                connect::settings(&self.runtime.connect, project, &parts.headers, of, write).await
            }
            ["projects", project, "webhooks", target] => {
                allow(&request, &Method::POST)?;
                let (project, target) = (id(project)?, integration(target)?);
                webhooks::receive(&self.runner, project, target, request).await
            }
            ["projects", project, "webhook-deliveries"] => {
                allow(&request, &Method::GET)?;
                webhooks::list(&self.runner, id(project)?, request.headers(), request.uri().query()).await
            }
            ["projects", project, "webhook-deliveries", delivery] => {
                allow(&request, &Method::GET)?;
                webhooks::get(&self.runner, id(project)?, id(delivery)?, request.headers()).await
            }
            ["projects", project, "schedules"] => {
                allow(&request, &Method::GET)?;
                schedules::list(&self.runner, id(project)?, request.headers(), request.uri().query()).await
            }
            ["projects", project, "notification-destinations"] => {
                let project = id(project)?;
                let (parts, body) = request.into_parts();
                match parts.method {
                    Method::POST => notifications::create(&self.runtime, project, &parts.headers, &body).await,
                    Method::GET => notifications::list(&self.runtime, project, &parts.headers).await,
                    _ => Err(ApiError::MethodNotAllowed("use POST or GET for this route".into())),
                }
            }
            ["projects", project, "notification-destinations", destination] => {
                allow(&request, &Method::DELETE)?;
                let (project, destination) = (id(project)?, id(destination)?);
                notifications::delete(&self.runtime, project, destination, request.headers()).await
            }
            ["projects", project, "notification-destinations", destination, "test"] => {
                allow(&request, &Method::POST)?;
                let (project, destination) = (id(project)?, id(destination)?);
                notifications::test(&self.runtime, project, destination, request.headers()).await
            }
            ["health"] => Ok(json_response(StatusCode::OK, &json!({ "status": "ok" }))),
            _ => Err(ApiError::NotFound(format!("no route for {path}"))),
        }
    }
}

fn allow(request: &Request<Bytes>, method: &Method) -> Result<(), ApiError> {
    if request.method() == method {
        Ok(())
    } else {
        Err(ApiError::MethodNotAllowed(format!("use {method} for this route")))
    }
}

/// Integration names in paths: `slack`, `custom.acme` (at most 64 characters of `[a-z0-9.]`).
fn integration(segment: &str) -> Result<&str, ApiError> {
    let valid = !segment.is_empty()
        && segment.len() <= 64
        && segment.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.');
    if valid { Ok(segment) } else { Err(ApiError::NotFound(format!("no integration `{segment}`"))) }
}

/// A `limit` query parameter: 1 to `max`.
fn page_limit(value: &str, max: usize) -> Result<usize, ApiError> {
    value
        .parse::<usize>()
        .ok()
        .filter(|n| (1..=max).contains(n))
        .ok_or_else(|| ApiError::BadRequest(format!("`limit` is 1 to {max}")))
}

/// Path ids are 1–128 characters of `[A-Za-z0-9_-]`; anything else cannot exist.
fn id(segment: &str) -> Result<&str, ApiError> {
    let valid = !segment.is_empty()
        && segment.len() <= 128
        && segment.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if valid { Ok(segment) } else { Err(ApiError::NotFound(format!("no such resource `{segment}`"))) }
}

#[cfg(test)]
mod send_checks {
    fn assert_send<T: Send>(_: T) {}

    #[allow(dead_code)]
    fn handlers_are_send(api: &super::Api, request: http::Request<bytes::Bytes>) {
        assert_send(api.handle(request));
    }
}

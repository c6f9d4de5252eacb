//! `POST /projects/{projectId}/sdk/triggers/{workflowId}`: authorise the connected user,
//! validate the request, create the execution and enqueue its first step; then answer 202 at
//! once, or — for a workflow with a Response step — wait for the settled response.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use serde_json::{Value, json};

use super::respond::{settled_to_http, wait_for_response};
use super::validate::violations;
use crate::auth;
use crate::engine::{self, Effect};
use crate::error::{ApiError, json_response};
use crate::messages::{DeadlineMessage, StepMessage};
use crate::ports::{MAX_QUEUE_DELAY, Outgoing, QueueName};
use crate::record::{Execution, ExecutionError, ExecutionStatus, TriggerData, now};
use crate::runtime::Runtime;

/// Request headers never stored in the execution record.
const SECRET_HEADERS: &[&str] = &["authorization", "cookie", "proxy-authorization", "x-api-key"];

pub(super) async fn handle(
    runtime: &Runtime,
    project_id: &str,
    workflow_id: &str,
    request: Request<Bytes>,
) -> Result<Response<Bytes>, ApiError> {
    let (parts, body) = request.into_parts();
    let limit = runtime.settings.max_body_bytes;
    if body.len() > limit {
        return Err(ApiError::PayloadTooLarge { size: body.len(), limit });
    }
    let store = &runtime.store;
    let unauthorized = || ApiError::Unauthorized("the token is not valid for this project".into());
    let project = store.get_project(project_id).await?.ok_or_else(unauthorized)?;
    let token = auth::bearer_token(&parts.headers)?;
    let user_id = auth::verify_user_token(&project.signing_public_key_pem, token)?;
    let deployment = store
        .get_deployed(project_id, workflow_id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no deployed workflow `{workflow_id}` in this project")))?;
    let workflow = &deployment.workflow;
    let trigger = trigger_data(&parts, &body)?;
    let problems = violations(&workflow.trigger, &trigger);
    if !problems.is_empty() {
        return Err(ApiError::Validation(problems));
    }

    let started_at = now();
    let timeout = runtime.settings.response_timeout;
    let waits = workflow.has_response_step();
    let execution = Execution {
        id: uuid::Uuid::now_v7().to_string(),
        project_id: project_id.to_string(),
        workflow_id: workflow_id.to_string(),
        workflow_version: deployment.version,
        user_id,
        status: ExecutionStatus::Running,
        started_at,
        ended_at: None,
        trigger,
        response_deadline: waits.then(|| chrono::Duration::from_std(timeout).ok().map(|d| started_at + d)).flatten(),
        error: None,
        test: false,
    };
    store.create_execution(&execution).await?;
    if let Err(error) = enqueue_start(runtime, &execution, workflow).await {
        let reason = ExecutionError { step: None, message: format!("could not enqueue the execution: {error}") };
        if let Err(e) = store.finish_execution(&execution.id, ExecutionStatus::Failed, Some(&reason), now()).await {
            tracing::error!(execution = %execution.id, error = %e, "could not mark the execution failed");
        }
        return Err(error);
    }
    tracing::info!(execution = %execution.id, workflow = workflow_id, version = deployment.version, "execution started");

    if !waits {
        return Ok(json_response(StatusCode::ACCEPTED, &json!({ "executionId": execution.id })));
    }
    let give_up_at = Instant::now() + timeout + Duration::from_secs(1);
    let settled = wait_for_response(runtime, &execution.id, give_up_at).await?;
    Ok(settled_to_http(runtime.store.as_ref(), &execution, &settled).await)
}

async fn enqueue_start(
    runtime: &Runtime,
    execution: &Execution,
    workflow: &crate::model::Workflow,
) -> Result<(), ApiError> {
    if execution.response_deadline.is_some() {
        let body = DeadlineMessage { execution_id: execution.id.clone() }.to_json();
        let delay = runtime.settings.response_timeout.min(MAX_QUEUE_DELAY);
        runtime.queue.send(QueueName::Responses, Outgoing { body, delay }).await?;
    }
    match engine::start(workflow) {
        Effect::Finish { status, error } => {
            runtime.store.finish_execution(&execution.id, status, error.as_ref(), now()).await?;
        }
        Effect::RunStep { step, .. } => {
            let body = StepMessage::first(&execution.id, &step).to_json();
            runtime.queue.send(QueueName::Steps, Outgoing { body, delay: Duration::ZERO }).await?;
        }
        // The first effect of an execution is to run its first step or to end.
        Effect::BranchDone { .. } | Effect::BranchFailed { .. } => {
            return Err(ApiError::Internal("the engine did not start the execution".into()));
        }
    }
    Ok(())
}

/// The request as the workflow sees it: query, lower-case headers (secrets left out), body.
fn trigger_data(parts: &http::request::Parts, body: &Bytes) -> Result<TriggerData, ApiError> {
    let query: BTreeMap<String, String> =
        parts.uri.query().map(|q| url::form_urlencoded::parse(q.as_bytes()).into_owned().collect()).unwrap_or_default();
    let headers = parts
        .headers
        .iter()
        .filter(|(name, _)| !SECRET_HEADERS.contains(&name.as_str()))
        .map(|(name, value)| (name.as_str().to_string(), String::from_utf8_lossy(value.as_bytes()).into_owned()))
        .collect();
    let content_type =
        parts.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_ascii_lowercase();
    Ok(TriggerData { query, headers, body: parse_body(&content_type, body)? })
}

fn parse_body(content_type: &str, body: &Bytes) -> Result<Value, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(json!({}));
    }
    if content_type.starts_with("application/x-www-form-urlencoded") {
        let form: serde_json::Map<String, Value> =
            url::form_urlencoded::parse(body).into_owned().map(|(k, v)| (k, Value::String(v))).collect();
        return Ok(Value::Object(form));
    }
    let text =
        std::str::from_utf8(body).map_err(|_| ApiError::BadRequest("the request body is not valid UTF-8".into()))?;
    let looks_json = content_type.contains("json") || content_type.is_empty();
    match serde_json::from_str::<Value>(text) {
        Ok(value) if looks_json || text.trim_start().starts_with(['{', '[']) => Ok(value),
        Err(e) if content_type.contains("json") => {
            Err(ApiError::BadRequest(format!("the request body is not valid JSON: {e}")))
        }
        _ => Ok(Value::String(text.to_string())),
    }
}

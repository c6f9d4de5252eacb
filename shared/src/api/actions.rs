//! Task History's actions on one execution (project API key):
//! - `POST /projects/{p}/executions/{id}/replay` (`{"version": "live" | "original"}`, live by
//!   default): a new execution with the same trigger data and user, linked both ways
//!   (`replayOf` on the new one, `replays` on the record of the old one);
//! - `POST /projects/{p}/executions/{id}/redrive`: a failed execution resumes from its failed
//!   steps under the same id and version; succeeded steps keep their recorded outputs, and in
//!   a fan-out only the failed branches run again (`engine::REDRIVE_ATTEMPT_STRIDE`);
//! - `POST /projects/{p}/executions/{id}/cancel`: a running or waiting execution ends
//!   `cancelled`; no step starts after it; a caller still waiting gets 409
//!   `execution_cancelled`.
//!
//! An action that does not fit the execution's status is a 409 naming the status.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Response, StatusCode};
use serde_json::{Value, json};

use super::history::authorized_project;
use crate::engine::{Event, MAX_REDRIVES};
use crate::error::{ApiError, json_response};
use crate::messages::StepMessage;
use crate::model::Workflow;
use crate::ports::{Deployment, Outgoing, QueueName};
use crate::record::{Execution, ExecutionStatus};
use crate::runner::Runner;
use crate::start::{self, NewExecution};

/// Which version a replay runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayVersion {
    /// The workflow as deployed now.
    Live,
    /// The version the execution ran.
    Original,
}

impl ReplayVersion {
    pub fn parse(value: Option<&Value>) -> Result<ReplayVersion, ApiError> {
        match value {
            None | Some(Value::Null) => Ok(ReplayVersion::Live),
            Some(Value::String(text)) if text == "live" => Ok(ReplayVersion::Live),
            Some(Value::String(text)) if text == "original" => Ok(ReplayVersion::Original),
            Some(other) => Err(ApiError::BadRequest(format!("`version` is \"live\" or \"original\", not {other}"))),
        }
    }
}

/// The body of an action request: empty or a JSON object with only `allowed` fields.
fn action_body(body: &Bytes, allowed: &[&str]) -> Result<serde_json::Map<String, Value>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(serde_json::Map::new());
    }
    let value: Value =
        serde_json::from_slice(body).map_err(|e| ApiError::BadRequest(format!("the body is not JSON: {e}")))?;
    let Value::Object(fields) = value else {
        return Err(ApiError::BadRequest("the body must be a JSON object".into()));
    };
    if let Some(unknown) = fields.keys().find(|key| !allowed.contains(&key.as_str())) {
        let allowed = if allowed.is_empty() { "none".to_string() } else { allowed.join(", ") };
        return Err(ApiError::BadRequest(format!("unknown field `{unknown}` (allowed: {allowed})")));
    }
    Ok(fields)
}

/// The execution `execution_id` of `project_id`; another project's is reported missing.
async fn execution_of(runner: &Runner, project_id: &str, execution_id: &str) -> Result<Execution, ApiError> {
    runner
        .runtime()
        .store
        .get_execution(execution_id)
        .await?
        .filter(|e| e.project_id == project_id)
        .ok_or_else(|| ApiError::NotFound(format!("no execution `{execution_id}` in this project")))
}

fn wrong_status(execution: &Execution, message: String) -> ApiError {
    ApiError::WrongStatus { status: execution.status.as_str(), message }
}

pub(super) async fn replay(
    runner: &Runner,
    project_id: &str,
    execution_id: &str,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Response<Bytes>, ApiError> {
    authorized_project(runner.runtime(), project_id, headers).await?;
    let fields = action_body(body, &["version"])?;
    let version = ReplayVersion::parse(fields.get("version"))?;
    let original = execution_of(runner, project_id, execution_id).await?;
    let started = replay_one(runner, &original, version).await?;
    Ok(json_response(
        StatusCode::ACCEPTED,
        &json!({ "executionId": started.id, "replayOf": original.id, "workflowVersion": started.workflow_version }),
    ))
}

/// Starts a replay of `original` (see the module doc); the new execution.
pub async fn replay_one(runner: &Runner, original: &Execution, version: ReplayVersion) -> Result<Execution, ApiError> {
    let runtime = runner.runtime();
    let store = &runtime.store;
    if original.test {
        return Err(wrong_status(original, "a test run (`sluice test`) cannot be replayed: run the test again".into()));
    }
    let deployment = match version {
        ReplayVersion::Live => {
            store.get_deployed(&original.project_id, &original.workflow_id).await?.ok_or_else(|| {
                wrong_status(
                    original,
                    format!(
                        "workflow `{}` is not deployed any more: replay it with `\"version\": \"original\"`",
                        original.workflow_id
                    ),
                )
            })?
        }
        ReplayVersion::Original => store
            .get_version(&original.project_id, &original.workflow_id, original.workflow_version)
            .await?
            .ok_or_else(|| {
                ApiError::NotFound(format!(
                    "version {} of workflow `{}` is not stored",
                    original.workflow_version, original.workflow_id
                ))
            })?,
    };
    if let Some(refusal) = runtime.connect.gate(&original.project_id, &original.user_id, &deployment.workflow).await? {
        return Err(ApiError::NotEnabled(refusal.explain(&original.project_id, &original.workflow_id)));
    }
    let new = NewExecution {
        id: start::new_execution_id(),
        deployment: Arc::new(deployment),
        trigger: original.trigger.clone(),
        user_id: original.user_id.clone(),
        test: false,
        caller_waits: false,
        replay_of: Some(original.id.clone()),
    };
    Ok(start::start(runner, new).await?.execution)
}

pub(super) async fn redrive(
    runner: &Runner,
    project_id: &str,
    execution_id: &str,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Response<Bytes>, ApiError> {
    authorized_project(runner.runtime(), project_id, headers).await?;
    action_body(body, &[])?;
    let execution = execution_of(runner, project_id, execution_id).await?;
    let redrives = redrive_one(runner, &execution).await?;
    Ok(json_response(
        StatusCode::ACCEPTED,
        &json!({ "executionId": execution.id, "status": "running", "redrives": redrives }),
    ))
}

/// Redrives `execution` (see the module doc); its redrive count after.
pub async fn redrive_one(runner: &Runner, execution: &Execution) -> Result<u32, ApiError> {
    let runtime = runner.runtime();
    if execution.status != ExecutionStatus::Failed {
        return Err(wrong_status(
            execution,
            format!(
                "execution `{}` is {}: only a failed execution can be redriven",
                execution.id,
                execution.status.as_str()
            ),
        ));
    }
    if execution.test {
        return Err(wrong_status(
            execution,
            "a test run (`sluice test`) cannot be redriven: run the test again".into(),
        ));
    }
    if execution.redrives >= MAX_REDRIVES {
        return Err(wrong_status(
            execution,
            format!("execution `{}` was redriven {MAX_REDRIVES} times, the most one can be", execution.id),
        ));
    }
    let deployment: Deployment = runtime
        .store
        .get_version(&execution.project_id, &execution.workflow_id, execution.workflow_version)
        .await?
        .ok_or_else(|| {
            wrong_status(
                execution,
                format!(
                    "version {} of workflow `{}` is not stored: replay the execution instead",
                    execution.workflow_version, execution.workflow_id
                ),
            )
        })?;
    let Some(first) = deployment.workflow.steps.first() else {
        return Err(wrong_status(execution, "the workflow has no step to run again".into()));
    };
    let Some(redrives) = runtime.store.redrive_execution(&execution.project_id, &execution.id).await? else {
        let now = runtime.store.get_execution(&execution.id).await?.unwrap_or_else(|| execution.clone());
        return Err(wrong_status(
            &now,
            format!("execution `{}` is {} now: only a failed execution can be redriven", now.id, now.status.as_str()),
        ));
    };
    // From the top: recorded steps replay, the failed ones run again. Sent after the status
    // moved, so the message finds it running; if sending fails, the recovery sweep resumes it.
    let body = StepMessage::resume(&execution.id, &first.id).to_json();
    runtime.queue.send(QueueName::Steps, Outgoing { body, delay: std::time::Duration::ZERO }).await?;
    tracing::info!(execution = %execution.id, redrives, "execution redriven");
    Ok(redrives)
}

pub(super) async fn cancel(
    runner: &Runner,
    project_id: &str,
    execution_id: &str,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Response<Bytes>, ApiError> {
    authorized_project(runner.runtime(), project_id, headers).await?;
    action_body(body, &[])?;
    let execution = execution_of(runner, project_id, execution_id).await?;
    cancel_one(runner, &execution).await?;
    Ok(json_response(StatusCode::OK, &json!({ "executionId": execution.id, "status": "cancelled" })))
}

/// Cancels `execution` (see the module doc).
pub async fn cancel_one(runner: &Runner, execution: &Execution) -> Result<(), ApiError> {
    let runtime = runner.runtime();
    if execution.status.is_ended() {
        return Err(wrong_status(
            execution,
            format!(
                "execution `{}` has ended ({}): only a running or waiting one can be cancelled",
                execution.id,
                execution.status.as_str()
            ),
        ));
    }
    runtime.cancels.insert(&execution.id);
    let workflow = match runtime
        .store
        .get_version(&execution.project_id, &execution.workflow_id, execution.workflow_version)
        .await?
    {
        Some(deployment) => deployment.workflow,
        None => Workflow::without_steps(&execution.workflow_id),
    };
    let reason = "cancelled through the Task History API".to_string();
    runner.apply(execution, &workflow, Event::Cancelled { reason }).await?;
    let now = runtime.store.get_execution(&execution.id).await?.unwrap_or_else(|| execution.clone());
    if now.status != ExecutionStatus::Cancelled {
        return Err(wrong_status(
            &now,
            format!("execution `{}` ended ({}) before it could be cancelled", now.id, now.status.as_str()),
        ));
    }
    tracing::info!(execution = %execution.id, "execution cancelled");
    Ok(())
}

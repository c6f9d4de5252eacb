//! `GET /projects/{projectId}/executions/{executionId}` with the project API key: the
//! execution record (Task History). An execution of another project is reported as missing,
//! never shown.

use bytes::Bytes;
use http::{HeaderMap, Response, StatusCode};
use serde_json::{Value, json};

use super::respond::settled_summary;
use crate::auth;
use crate::error::{ApiError, json_response};
use crate::record::{Execution, SettledResponse, StepAttempt, StepStatus, format_timestamp};
use crate::runtime::Runtime;

pub(super) async fn get(
    runtime: &Runtime,
    project_id: &str,
    execution_id: &str,
    headers: &HeaderMap,
) -> Result<Response<Bytes>, ApiError> {
    authorize(runtime, project_id, headers).await?;
    let store = &runtime.store;
    let execution = store
        .get_execution(execution_id)
        .await?
        .filter(|e| e.project_id == project_id)
        .ok_or_else(|| ApiError::NotFound(format!("no execution `{execution_id}` in this project")))?;
    let attempts = store.list_steps(execution_id).await?;
    let response = store.get_response(execution_id).await?;
    let deployment = store.get_version(project_id, &execution.workflow_id, execution.workflow_version).await?;
    let order = deployment.as_ref().map(|d| d.workflow.step_order()).unwrap_or_default();
    Ok(json_response(StatusCode::OK, &record(&execution, &attempts, &order, response.as_ref())))
}

/// Checks `Authorization: Bearer <project API key>`.
pub(super) async fn authorize(runtime: &Runtime, project_id: &str, headers: &HeaderMap) -> Result<(), ApiError> {
    let invalid = || ApiError::Unauthorized("the API key is not valid for this project".into());
    let key = auth::bearer_token(headers)?;
    let project = runtime.store.get_project(project_id).await?.ok_or_else(invalid)?;
    if auth::api_key_matches(key, &project.api_key_sha256) { Ok(()) } else { Err(invalid()) }
}

/// The execution record of the workflow format document. Steps are listed in workflow order
/// (`step_order`; execution order, since steps of one execution never run concurrently),
/// then any step the workflow does not know, by start time.
pub fn record(
    execution: &Execution,
    attempts: &[StepAttempt],
    step_order: &[&str],
    response: Option<&SettledResponse>,
) -> Value {
    let mut order: Vec<&str> = step_order.iter().copied().filter(|id| attempts.iter().any(|a| a.step == *id)).collect();
    for attempt in attempts {
        if !order.contains(&attempt.step.as_str()) {
            order.push(&attempt.step);
        }
    }
    let steps: Vec<Value> = order
        .iter()
        .map(|id| {
            let mut mine: Vec<&StepAttempt> = attempts.iter().filter(|a| a.step == *id).collect();
            mine.sort_by_key(|a| a.attempt);
            step_record(&mine)
        })
        .collect();
    json!({
        "executionId": execution.id,
        "projectId": execution.project_id,
        "workflowId": execution.workflow_id,
        "workflowVersion": execution.workflow_version,
        "userId": execution.user_id,
        "status": execution.status.as_str(),
        "startedAt": format_timestamp(&execution.started_at),
        "endedAt": execution.ended_at.as_ref().map(format_timestamp),
        "error": execution.error.as_ref().map(|e| json!({ "step": e.step, "message": e.message })),
        "trigger": {
            "query": execution.trigger.query,
            "headers": execution.trigger.headers,
            "body": execution.trigger.body,
        },
        "response": response.map(|settled| {
            let answer = settled_summary(execution, settled);
            json!({ "status": answer.status, "body": answer.body })
        }),
        "steps": steps,
    })
}

/// One step: its latest attempt, with the number of attempts and the whole time span.
fn step_record(attempts: &[&StepAttempt]) -> Value {
    let (Some(first), Some(last)) = (attempts.first(), attempts.last()) else {
        return Value::Null;
    };
    json!({
        "id": last.step,
        "status": match last.status { StepStatus::Succeeded => "succeeded", StepStatus::Failed => "failed" },
        "input": last.input,
        "output": last.output,
        "error": last.error.as_ref().map(|e| json!({ "message": e.message, "retryable": e.retryable, "details": e.details })),
        "logs": last.logs,
        "attempts": attempts.len(),
        "startedAt": format_timestamp(&first.started_at),
        "endedAt": format_timestamp(&last.ended_at),
    })
}

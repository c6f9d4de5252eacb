//! Test runs, with the project API key:
//! `POST /projects/{projectId}/test-runs` `{ "workflow": {...}, "trigger": { "query", "headers",
//! "body" }, "userId": "...", "step": "optional step id", "steps": { "ID": { "output": ... } } }`.
//!
//! A whole-workflow test run deploys the definition under a test-only workflow id (the
//! trigger route can never reach it), runs it as a *test* execution — delays skipped,
//! paginated requests capped at 3 pages — waits for it to end, and answers every step's input
//! and output with arrays truncated to 20 items. A single-step test (`step`) runs just that
//! step against the given trigger and earlier step outputs, and records nothing.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Response, StatusCode};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::executions::{authorize, record};
use crate::error::{ApiError, json_response};
use crate::model::{StepKind, Trigger, load};
use crate::record::{Execution, ExecutionStatus, MAX_JSON_DEPTH, TriggerData, TriggerKind, now, too_deep};
use crate::runner::Runner;
use crate::start::{self, NewExecution};
use crate::steps::response::{Delivery, with_delivery};

/// Arrays in test-run output show at most this many items.
pub const DISPLAY_ARRAY_ITEMS: usize = 20;
/// How long a whole-workflow test run may take before the answer says it is still running.
const TEST_RUN_WAIT: Duration = Duration::from_secs(120);
/// Test definitions are deployed under this prefix, which no trigger URL can name.
pub const TEST_WORKFLOW_PREFIX: &str = "test:";

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct TestRun {
    workflow: Value,
    #[serde(default)]
    trigger: TriggerInput,
    #[serde(default = "default_user")]
    user_id: String,
    #[serde(default)]
    step: Option<String>,
    /// The deployed integration the workflow belongs to: its settings, credentials,
    /// authentication and actions are the ones the test run uses.
    #[serde(default)]
    integration: Option<String>,
    /// For a single-step test: earlier steps' variables, `{ "ID": { "output": ... } }`.
    #[serde(default)]
    steps: Map<String, Value>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TriggerInput {
    #[serde(default)]
    query: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    headers: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    body: Option<Value>,
}

fn default_user() -> String {
    "test-user".into()
}

pub(super) async fn handle(
    runner: &Runner,
    project_id: &str,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Response<Bytes>, ApiError> {
    let runtime = runner.runtime();
    authorize(runtime, project_id, headers).await?;
    let limit = runtime.settings.max_body_bytes;
    if body.len() > limit {
        return Err(ApiError::PayloadTooLarge { size: body.len(), limit });
    }
    let request: TestRun =
        serde_json::from_slice(body).map_err(|e| ApiError::BadRequest(format!("the test run is not valid: {e}")))?;
    let problems = |found: Vec<load::Problem>| ApiError::Validation(found.iter().map(ToString::to_string).collect());
    let workflow = match &request.integration {
        None => load::load_value("workflow", &request.workflow).map_err(problems)?,
        Some(name) => {
            let record =
                runtime.store.get_integration(project_id, name).await?.ok_or_else(|| {
                    ApiError::NotFound(format!("no integration `{name}` is deployed in this project"))
                })?;
            load::project::load_value_of_integration(
                "workflow",
                &request.workflow,
                name,
                &record.config,
                &record.inputs,
            )
            .map_err(problems)?
        }
    };
    if request.trigger.body.as_ref().is_some_and(too_deep) {
        return Err(ApiError::BadRequest(format!(
            "the test run's trigger body is JSON nested deeper than {MAX_JSON_DEPTH} levels"
        )));
    }
    // The trigger as the workflow's own trigger type gives it: an app event's payload is the
    // given body, else the declared event's example (the documents' test data).
    let (kind, event) = match &workflow.trigger {
        Trigger::Request { .. } => (TriggerKind::Request, None),
        Trigger::AppEvent { event } => (TriggerKind::AppEvent, Some(event.clone())),
        Trigger::IntegrationEnabled => (TriggerKind::IntegrationEnabled, None),
        Trigger::OauthConnected => (TriggerKind::OauthConnected, None),
        Trigger::Webhook { event, .. } => (TriggerKind::Webhook, Some(event.clone())),
        Trigger::Schedule(_) => (TriggerKind::Schedule, None),
        Trigger::Poll(_) => (TriggerKind::Poll, None),
    };
    let body = match (&request.trigger.body, &event) {
        (Some(body), _) => body.clone(),
        (None, Some(name)) if kind == TriggerKind::AppEvent => {
            let declared = runtime.store.app_events(project_id).await?;
            declared.into_iter().find(|e| &e.name == name).map(|e| e.example).unwrap_or_else(|| json!({}))
        }
        (None, _) => json!({}),
    };
    let trigger = TriggerData {
        kind,
        query: request.trigger.query.clone(),
        headers: request.trigger.headers.iter().map(|(k, v)| (k.to_ascii_lowercase(), v.clone())).collect(),
        body,
        event,
    };
    let execution = Execution {
        id: start::new_execution_id(),
        project_id: project_id.to_string(),
        workflow_id: format!("{TEST_WORKFLOW_PREFIX}{}", workflow.id),
        workflow_version: 0,
        user_id: request.user_id.clone(),
        status: ExecutionStatus::Running,
        started_at: now(),
        ended_at: None,
        trigger,
        response_deadline: None,
        error: None,
        test: true,
        ..Default::default()
    };
    if let Some(step_id) = &request.step {
        let step = workflow
            .find_step(step_id)
            .ok_or_else(|| ApiError::BadRequest(format!("the workflow has no step `{step_id}`")))?;
        if matches!(step.kind, StepKind::FanOut(_)) {
            return Err(ApiError::BadRequest("a fan-out step is tested by testing the whole workflow".into()));
        }
        let executed = match runner.test_step(&execution, &workflow, step, request.steps).await {
            Ok(executed) => executed,
            Err(crate::runner::RunError::Poison(reason)) => {
                // The user's settings or credentials cannot be used: the step fails, saying why.
                return Ok(json_response(
                    StatusCode::OK,
                    &json!({ "step": step_id, "status": "failed", "error": { "message": reason, "retryable": false } }),
                ));
            }
            Err(error) => return Err(ApiError::Store(crate::ports::StoreError::Backend(error.to_string()))),
        };
        let mut attempt = executed.record;
        if executed.answer.is_some() {
            // Nobody waits for a single step's answer: it is shown, not settled.
            attempt.output = attempt.output.map(|output| with_delivery(output, Delivery::NoCaller));
        }
        let shown = json!({
            "step": step_id,
            "status": attempt.status,
            "input": truncate_arrays(&attempt.input),
            "output": attempt.output.as_ref().map(truncate_arrays),
            "error": attempt.error,
            "logs": attempt.logs,
        });
        return Ok(json_response(StatusCode::OK, &shown));
    }

    let mut test_workflow = workflow;
    test_workflow.id = execution.workflow_id.clone();
    let deployment = runtime.store.deploy_workflow(project_id, &test_workflow).await?;
    let new = NewExecution {
        id: execution.id,
        deployment: Arc::new(deployment),
        trigger: execution.trigger,
        user_id: execution.user_id,
        test: true,
        caller_waits: false,
        replay_of: None,
    };
    let started = start::start(runner, new).await?;
    let execution = started.execution;
    let deadline = Instant::now() + TEST_RUN_WAIT;
    if let Some(segment) = started.segment {
        // The first segment usually runs the whole test; then what is left comes from the queue.
        let _ = tokio::time::timeout(TEST_RUN_WAIT, segment).await;
    }
    let after_start = |e: crate::ports::StoreError| ApiError::AfterStart {
        execution_id: execution.id.clone(),
        reason: format!("its record could not be read: {e}"),
    };
    let ended = loop {
        let current = runtime.store.get_execution(&execution.id).await.map_err(after_start)?;
        match current {
            Some(current) if current.status.is_ended() => break current,
            Some(current) if Instant::now() >= deadline => break current,
            _ => tokio::time::sleep(runtime.settings.poll_interval).await,
        }
    };
    let attempts = runtime.store.list_steps(&execution.id).await.map_err(after_start)?;
    let shown = truncate_arrays(&record(&ended, &attempts, Some(&test_workflow), None));
    Ok(json_response(StatusCode::OK, &shown))
}

/// `value` with every array cut to [`DISPLAY_ARRAY_ITEMS`] items (a cut array ends with a
/// note saying how many items were left out).
pub fn truncate_arrays(value: &Value) -> Value {
    match value {
        Value::Array(items) => {
            let mut shown: Vec<Value> = items.iter().take(DISPLAY_ARRAY_ITEMS).map(truncate_arrays).collect();
            if items.len() > DISPLAY_ARRAY_ITEMS {
                shown.push(json!(format!("… {} more items", items.len() - DISPLAY_ARRAY_ITEMS)));
            }
            Value::Array(shown)
        }
        Value::Object(fields) => Value::Object(fields.iter().map(|(k, v)| (k.clone(), truncate_arrays(v))).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrays_are_cut_to_twenty_items_at_any_depth() {
        let long: Vec<u32> = (0..30).collect();
        let shown = truncate_arrays(&json!({ "a": long, "b": { "c": [[1, 2]], "d": (0..25).collect::<Vec<_>>() } }));
        assert_eq!(shown["a"].as_array().map(Vec::len), Some(21));
        assert_eq!(shown["a"][20], "… 10 more items");
        assert_eq!(shown["b"]["c"], json!([[1, 2]]));
        assert_eq!(shown["b"]["d"][20], "… 5 more items");
    }
}

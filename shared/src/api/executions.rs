//! `GET /projects/{projectId}/executions/{executionId}` with the project API key: the
//! execution record (Task History). An execution of another project is reported as missing,
//! never shown.

use std::collections::{BTreeMap, HashMap, HashSet};

use bytes::Bytes;
use http::{HeaderMap, Response, StatusCode};
use serde_json::{Value, json};

use super::respond::settled_summary;
use crate::auth;
use crate::engine::StepKey;
use crate::error::{ApiError, json_response};
use crate::model::{StepKind, Workflow};
use crate::record::{Execution, SettledResponse, StepAttempt, StepStatus, format_timestamp};
use crate::runtime::Runtime;
use crate::start::HANDED_OFF;

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
    let workflow = deployment.as_ref().map(|d| &d.workflow);
    let replays = store.replays_of(project_id, execution_id, MAX_LISTED_REPLAYS).await?;
    let mut record = record(&execution, &attempts, workflow, response.as_ref());
    record["replays"] = json!(replays);
    Ok(json_response(StatusCode::OK, &record))
}

/// The most replays an execution record lists (newest last).
const MAX_LISTED_REPLAYS: usize = 50;

/// Checks `Authorization: Bearer <project API key>`.
pub(super) async fn authorize(runtime: &Runtime, project_id: &str, headers: &HeaderMap) -> Result<(), ApiError> {
    let invalid = || ApiError::Unauthorized("the API key is not valid for this project".into());
    let key = auth::bearer_token(headers)?;
    let project = runtime.store.get_project(project_id).await?.ok_or_else(invalid)?;
    if auth::api_key_matches(key, &project.api_key_sha256) { Ok(()) } else { Err(invalid()) }
}

/// The execution record of the workflow format document. Steps are listed in workflow order
/// (`step_order`; execution order, since steps of one execution never run concurrently),
/// then any step the workflow does not know, by start time. A fan-out's branch steps (keys
/// `id@i`, `id@i.j`...) are not listed on their own: they appear under their fan-out's entry
/// as `branches: [{ index, steps: [...] }]`, in index order, nested fan-outs likewise (when
/// the workflow is unknown, they stay in the flat list).
pub fn record(
    execution: &Execution,
    attempts: &[StepAttempt],
    workflow: Option<&Workflow>,
    response: Option<&SettledResponse>,
) -> Value {
    json!({
        "executionId": execution.id,
        "traceId": crate::telemetry::trace_id(&execution.id),
        "projectId": execution.project_id,
        "workflowId": execution.workflow_id,
        "workflowVersion": execution.workflow_version,
        "userId": execution.user_id,
        "integration": execution.integration,
        "status": execution.status.as_str(),
        "startedAt": format_timestamp(&execution.started_at),
        "endedAt": execution.ended_at.as_ref().map(format_timestamp),
        "durationMs": execution.ended_at.map(|end| (end - execution.started_at).num_milliseconds()),
        "error": execution.error.as_ref().map(|e| json!({ "step": e.step, "message": e.message })),
        "search": execution.search,
        "replayOf": execution.replay_of,
        "redrives": execution.redrives,
        "test": execution.test,
        "trigger": {
            "kind": execution.trigger.kind.as_str(),
            "event": execution.trigger.event,
            "query": execution.trigger.query,
            "headers": execution.trigger.headers,
            "body": execution.trigger.body,
        },
        "response": response.map(|settled| {
            let answer = settled_summary(execution, settled);
            json!({ "status": answer.status, "body": answer.body })
        }),
        "steps": steps(attempts, workflow),
    })
}

/// The step entries, branch steps grouped under their fan-outs. Linear in the attempts (plus
/// sorting).
fn steps(attempts: &[StepAttempt], workflow: Option<&Workflow>) -> Vec<Value> {
    let order: HashMap<&str, usize> =
        workflow.map(|w| w.step_order().into_iter().enumerate().map(|(i, id)| (id, i)).collect()).unwrap_or_default();
    let parents = workflow.map(Workflow::enclosing_fan_outs).unwrap_or_default();
    let fan_outs: HashSet<&str> = order
        .keys()
        .copied()
        .filter(|id| workflow.and_then(|w| w.find_step(id)).is_some_and(|s| matches!(s.kind, StepKind::FanOut(_))))
        .collect();

    // Attempts by key, keys in first-start order.
    let mut by_key: HashMap<&str, Vec<&StepAttempt>> = HashMap::new();
    let mut keys: Vec<&str> = Vec::new();
    // The start's hand-off record is not a step.
    let mut by_start: Vec<&StepAttempt> = attempts.iter().filter(|a| a.step != HANDED_OFF).collect();
    by_start.sort_by_key(|a| a.started_at);
    for attempt in by_start {
        let mine = by_key.entry(attempt.step.as_str()).or_default();
        if mine.is_empty() {
            keys.push(&attempt.step);
        }
        mine.push(attempt);
    }
    // Workflow order, then start order (a stable sort), which keeps a branch's steps in
    // execution order.
    let parsed: HashMap<&str, StepKey> =
        keys.iter().map(|key| (*key, key.parse().unwrap_or_else(|_| StepKey::top(*key)))).collect();
    let step_of = |key: &str| parsed.get(key).map_or(key.to_string(), |k| k.step.clone());
    keys.sort_by_key(|key| order.get(step_of(key).as_str()).copied().unwrap_or(usize::MAX));

    // Where each key is listed: (parent fan-out key, branch index), or at the top.
    let present: HashSet<&str> = keys.iter().copied().collect();
    let place = |key: &str| -> Option<(String, u32)> {
        let parsed = parsed.get(key)?;
        let (index, outer) = parsed.innermost()?;
        let parent = StepKey::new(parents.get(parsed.step.as_str())?.to_string(), outer).to_string();
        present.contains(parent.as_str()).then_some((parent, index))
    };

    // Deepest keys first (a stable sort, so in order within a depth): a nested fan-out has its
    // branches before it joins its own, and every branch receives its steps in order.
    let depth = |key: &str| parsed.get(key).map_or(0, |k| k.scope.len());
    let mut deepest_first = keys.clone();
    deepest_first.sort_by_key(|key| std::cmp::Reverse(depth(key)));
    let mut branches: HashMap<String, BTreeMap<u32, Vec<Value>>> = HashMap::new();
    let mut top: HashMap<&str, Value> = HashMap::new();
    for key in deepest_first {
        let mut mine = by_key.remove(key).unwrap_or_default();
        mine.sort_by_key(|a| a.attempt);
        let mut entry = step_record(&mine);
        let lanes = branches.remove(key);
        if lanes.is_some() || fan_outs.contains(step_of(key).as_str()) {
            let listed =
                lanes.unwrap_or_default().into_iter().map(|(index, steps)| json!({ "index": index, "steps": steps }));
            entry["branches"] = Value::Array(listed.collect());
        }
        match place(key) {
            Some((parent, index)) => {
                entry["id"] = Value::String(step_of(key));
                branches.entry(parent).or_default().entry(index).or_default().push(entry);
            }
            None => {
                top.insert(key, entry);
            }
        }
    }
    keys.iter().filter_map(|key| top.remove(key)).collect()
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

#[cfg(test)]
mod tests {
    use chrono::DateTime;

    use super::*;
    use crate::model::load::load_str;

    fn attempt(key: &str, attempt: u32, at: i64) -> StepAttempt {
        let started_at = DateTime::from_timestamp_millis(1_764_000_000_000 + at).expect("in range");
        StepAttempt {
            step: key.to_string(),
            attempt,
            status: StepStatus::Succeeded,
            input: json!({}),
            output: Some(json!(key)),
            error: None,
            started_at,
            ended_at: started_at,
            logs: Vec::new(),
        }
    }

    const WORKFLOW: &str = "id: w\ntrigger: { type: request }\nsteps:\n  - id: outer\n    type: fan_out\n    over: \"{{trigger.body.a}}\"\n    steps:\n      - { id: pick, type: conditional, when: { left: 1, op: equals, right: 1 }, then: [ { id: yes, type: delay, for: 1s } ] }\n      - id: inner\n        type: fan_out\n        over: \"{{item}}\"\n        steps:\n          - { id: leaf, type: delay, for: 1s }\n  - { id: last, type: delay, for: 1s }\n";

    fn ids(entries: &Value) -> Vec<String> {
        entries.as_array().expect("array").iter().map(|e| e["id"].as_str().unwrap_or("?").to_string()).collect()
    }

    #[test]
    fn branch_steps_are_grouped_under_their_fan_outs_in_index_and_workflow_order() {
        let workflow = load_str("w.yaml", WORKFLOW).expect("valid workflow");
        // Out of order on purpose: start times, keys, attempts.
        let attempts = [
            attempt("last", 1, 90),
            attempt("leaf@1.0", 1, 40),
            attempt("inner@1", 1, 35),
            attempt("pick@1", 1, 30),
            attempt("yes@1", 2, 33),
            attempt("yes@1", 1, 31),
            attempt("outer", 1, 0),
            attempt("pick@0", 1, 10),
            attempt("inner@0", 1, 12),
            attempt("leaf@1.1", 1, 41),
            attempt("stray", 1, 95),
        ];
        let steps = Value::Array(steps(&attempts, Some(&workflow)));
        assert_eq!(ids(&steps), ["outer", "last", "stray"], "unknown steps come last, by start time");
        let outer = &steps[0]["branches"];
        assert_eq!(outer.as_array().map(Vec::len), Some(2));
        assert_eq!(
            (outer[0]["index"].clone(), ids(&outer[0]["steps"])),
            (json!(0), vec!["pick".into(), "inner".into()])
        );
        assert_eq!(ids(&outer[1]["steps"]), ["pick", "yes", "inner"], "workflow order inside a branch");
        assert_eq!(outer[1]["steps"][1]["attempts"], 2);
        assert_eq!(outer[1]["steps"][1]["output"], json!("yes@1"), "the entry keeps its attempt's output");
        assert_eq!(outer[0]["steps"][1]["branches"], json!([]), "a fan-out over nothing has no branches");
        let leaves = &outer[1]["steps"][2]["branches"];
        assert_eq!(
            leaves.as_array().map(|l| l.iter().map(|b| b["index"].clone()).collect::<Vec<_>>()),
            Some(vec![json!(0), json!(1)])
        );
        assert_eq!(ids(&leaves[1]["steps"]), ["leaf"]);
        assert!(steps[1].get("branches").is_none(), "only fan-outs have branches");
    }

    #[test]
    fn without_the_workflow_every_key_is_listed_flat_by_start_time() {
        let attempts = [attempt("b@0", 1, 5), attempt("a", 1, 0), attempt("b", 1, 9)];
        let steps = Value::Array(steps(&attempts, None));
        assert_eq!(ids(&steps), ["a", "b@0", "b"]);
    }
}

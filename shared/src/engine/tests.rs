use std::time::Duration;

use serde_json::json;

use super::*;
use crate::record::StepError;

fn workflow(steps: Value) -> Workflow {
    serde_json::from_value(json!({ "id": "wf", "trigger": { "type": "request" }, "steps": steps }))
        .expect("test workflow is valid")
}

fn request(id: &str) -> Value {
    json!({ "id": id, "type": "request", "url": "https://example.com" })
}

fn conditional(id: &str, then: Value, otherwise: Value) -> Value {
    json!({ "id": id, "type": "conditional",
            "when": { "left": 1, "op": "equals", "right": 1 },
            "then": then, "else": otherwise })
}

fn run(step: &str) -> Effect {
    Effect::RunStep { step: step.into(), attempt: 1, delay: Duration::ZERO }
}

fn succeeded() -> Effect {
    Effect::Finish { status: ExecutionStatus::Succeeded, error: None }
}

fn ok(output: Value) -> Outcome {
    Outcome::Succeeded(output)
}

fn branch(name: &str) -> Outcome {
    ok(json!({ "branch": name }))
}

fn nested() -> Workflow {
    workflow(json!([
        request("a"),
        conditional(
            "c",
            json!([request("t1"), conditional("inner", json!([request("i1")]), json!([])), request("t2")]),
            json!([request("e1")])
        ),
        request("z"),
    ]))
}

#[test]
fn start_runs_the_first_step() {
    assert_eq!(start(&nested()), run("a"));
}

#[test]
fn start_of_an_empty_workflow_finishes_it() {
    assert_eq!(start(&workflow(json!([]))), succeeded());
}

#[test]
fn success_runs_the_next_sibling() {
    assert_eq!(after_step(&nested(), "a", 1, &ok(json!({}))), Ok(run("c")));
}

#[test]
fn success_of_the_last_step_finishes_the_execution() {
    assert_eq!(after_step(&nested(), "z", 1, &ok(json!(null))), Ok(succeeded()));
}

#[test]
fn conditional_enters_the_chosen_branch() {
    assert_eq!(after_step(&nested(), "c", 1, &branch("then")), Ok(run("t1")));
    assert_eq!(after_step(&nested(), "c", 1, &branch("else")), Ok(run("e1")));
}

#[test]
fn empty_branch_continues_below_the_conditional() {
    assert_eq!(after_step(&nested(), "inner", 1, &branch("else")), Ok(run("t2")));
}

#[test]
fn end_of_a_branch_continues_below_the_conditional() {
    assert_eq!(after_step(&nested(), "e1", 1, &ok(json!(1))), Ok(run("z")));
    assert_eq!(after_step(&nested(), "t2", 1, &ok(json!(1))), Ok(run("z")));
}

#[test]
fn end_of_a_nested_branch_continues_in_the_outer_branch() {
    assert_eq!(after_step(&nested(), "i1", 1, &ok(json!(1))), Ok(run("t2")));
}

#[test]
fn conditional_at_the_end_with_empty_branch_finishes() {
    let wf = workflow(json!([conditional("c", json!([]), json!([]))]));
    assert_eq!(after_step(&wf, "c", 1, &branch("then")), Ok(succeeded()));
}

#[test]
fn conditional_without_a_branch_in_its_output_is_an_error() {
    let err = after_step(&nested(), "c", 1, &ok(json!({ "branch": "maybe" })));
    assert!(matches!(err, Err(EngineError::BadBranch { .. })));
}

#[test]
fn unknown_step_is_an_error() {
    assert_eq!(after_step(&nested(), "nope", 1, &ok(json!(1))), Err(EngineError::UnknownStep("nope".into())));
}

fn retrying(retries: u32, delay: &str, continue_on_failure: bool) -> Workflow {
    workflow(json!([
        { "id": "a", "type": "request", "url": "https://x", "retries": retries,
          "retry_delay": delay, "continue_on_failure": continue_on_failure },
        request("b"),
    ]))
}

fn failed(retryable: bool) -> Outcome {
    Outcome::Failed(StepError { message: "HTTP 503".into(), retryable, details: None, retry_after_ms: None })
}

#[test]
fn retryable_failure_is_retried_with_exponential_backoff() {
    let wf = retrying(3, "2s", false);
    let expect =
        |attempt: u32, secs: u64| Effect::RunStep { step: "a".into(), attempt, delay: Duration::from_secs(secs) };
    assert_eq!(after_step(&wf, "a", 1, &failed(true)), Ok(expect(2, 2)));
    assert_eq!(after_step(&wf, "a", 2, &failed(true)), Ok(expect(3, 4)));
    assert_eq!(after_step(&wf, "a", 3, &failed(true)), Ok(expect(4, 8)));
}

#[test]
fn failure_after_the_last_retry_fails_the_execution_naming_the_step() {
    let wf = retrying(2, "1s", false);
    assert_eq!(
        after_step(&wf, "a", 3, &failed(true)),
        Ok(Effect::Finish {
            status: ExecutionStatus::Failed,
            error: Some(ExecutionError { step: Some("a".into()), message: "HTTP 503".into() }),
        })
    );
}

#[test]
fn terminal_failure_is_not_retried() {
    let wf = retrying(3, "1s", false);
    let effect = after_step(&wf, "a", 1, &failed(false));
    assert!(matches!(effect, Ok(Effect::Finish { status: ExecutionStatus::Failed, .. })));
}

#[test]
fn continue_on_failure_goes_on_once_retries_are_spent() {
    let wf = retrying(1, "1s", true);
    assert!(matches!(after_step(&wf, "a", 1, &failed(true)), Ok(Effect::RunStep { attempt: 2, .. })));
    assert_eq!(after_step(&wf, "a", 2, &failed(true)), Ok(run("b")));
    assert_eq!(after_step(&wf, "a", 1, &failed(false)), Ok(run("b")));
}

#[test]
fn retry_delay_defaults_to_ten_seconds_and_is_capped_at_the_queue_maximum() {
    let wf = workflow(json!([{ "id": "a", "type": "request", "url": "https://x", "retries": 10 }]));
    let step = wf.find_step("a").expect("step a");
    assert_eq!(retry_delay(step, 1), Duration::from_secs(10));
    assert_eq!(retry_delay(step, 2), Duration::from_secs(20));
    assert_eq!(retry_delay(step, 10), Duration::from_secs(900));
    assert_eq!(retry_delay(step, u32::MAX), Duration::from_secs(900));
}

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
    run_in(step, &[])
}

fn run_in(step: &str, scope: &[u32]) -> Effect {
    Effect::RunStep { step: step.into(), scope: scope.to_vec(), attempt: 1, delay: Duration::ZERO, not_before: None }
}

fn after(wf: &Workflow, step: &str, attempt: u32, outcome: &Outcome) -> Result<Effect, EngineError> {
    after_step(wf, step, &[], attempt, outcome, 7)
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
    assert_eq!(after(&nested(), "a", 1, &ok(json!({}))), Ok(run("c")));
}

#[test]
fn success_of_the_last_step_finishes_the_execution() {
    assert_eq!(after(&nested(), "z", 1, &ok(json!(null))), Ok(succeeded()));
}

#[test]
fn conditional_enters_the_chosen_branch() {
    assert_eq!(after(&nested(), "c", 1, &branch("then")), Ok(run("t1")));
    assert_eq!(after(&nested(), "c", 1, &branch("else")), Ok(run("e1")));
}

#[test]
fn empty_branch_continues_below_the_conditional() {
    assert_eq!(after(&nested(), "inner", 1, &branch("else")), Ok(run("t2")));
}

#[test]
fn end_of_a_branch_continues_below_the_conditional() {
    assert_eq!(after(&nested(), "e1", 1, &ok(json!(1))), Ok(run("z")));
    assert_eq!(after(&nested(), "t2", 1, &ok(json!(1))), Ok(run("z")));
}

#[test]
fn end_of_a_nested_branch_continues_in_the_outer_branch() {
    assert_eq!(after(&nested(), "i1", 1, &ok(json!(1))), Ok(run("t2")));
}

#[test]
fn conditional_at_the_end_with_empty_branch_finishes() {
    let wf = workflow(json!([conditional("c", json!([]), json!([]))]));
    assert_eq!(after(&wf, "c", 1, &branch("then")), Ok(succeeded()));
}

#[test]
fn conditional_without_a_branch_in_its_output_is_an_error() {
    let err = after(&nested(), "c", 1, &ok(json!({ "branch": "maybe" })));
    assert!(matches!(err, Err(EngineError::BadBranch { .. })));
}

#[test]
fn unknown_step_is_an_error() {
    assert_eq!(after(&nested(), "nope", 1, &ok(json!(1))), Err(EngineError::UnknownStep("nope".into())));
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

/// The delay of the retry `after` decides, asserting it retries `attempt + 1`.
fn delay_of(effect: Result<Effect, EngineError>, attempt: u32) -> Duration {
    match effect {
        Ok(Effect::RunStep { attempt: next, delay, scope, .. }) if next == attempt + 1 && scope.is_empty() => delay,
        other => panic!("expected a retry, got {other:?}"),
    }
}

fn within_jitter(delay: Duration, base_ms: u64) -> bool {
    let (low, high) = (base_ms as f64 * (1.0 - JITTER), base_ms as f64 * (1.0 + JITTER));
    (low..=high).contains(&(delay.as_millis() as f64))
}

#[test]
fn retryable_failure_is_retried_with_exponential_backoff_from_retry_delay() {
    let wf = retrying(3, "2s", false);
    for (attempt, base_ms) in [(1, 2_000), (2, 4_000), (3, 8_000)] {
        let delay = delay_of(after(&wf, "a", attempt, &failed(true)), attempt);
        assert!(within_jitter(delay, base_ms), "attempt {attempt}: {delay:?}");
    }
}

#[test]
fn default_schedule_waits_about_10_20_30_50_80_seconds() {
    let wf = workflow(json!([{ "id": "a", "type": "request", "url": "https://x", "retries": 7 }]));
    for (attempt, secs) in [(1, 10), (2, 20), (3, 30), (4, 50), (5, 80), (6, 80), (7, 80)] {
        let delay = delay_of(after(&wf, "a", attempt, &failed(true)), attempt);
        assert!(within_jitter(delay, secs * 1000), "attempt {attempt}: {delay:?}");
    }
}

#[test]
fn jitter_is_deterministic_per_seed_and_spreads_across_seeds() {
    let wf = retrying(3, "10s", false);
    let delay = |seed| delay_of(after_step(&wf, "a", &[], 1, &failed(true), seed), 1);
    assert_eq!(delay(42), delay(42));
    let spread: std::collections::BTreeSet<u128> =
        (0..50).map(|seed| delay(jitter_seed("e", "a", seed)).as_millis()).collect();
    assert!(spread.len() > 40, "50 seeds gave only {} distinct delays", spread.len());
    assert!(spread.iter().all(|ms| (8_000..=12_000).contains(ms)));
}

#[test]
fn retry_after_is_a_minimum_and_delays_are_capped_at_fifteen_minutes() {
    let wf = retrying(3, "1s", false);
    let mut error = StepError::retryable("HTTP 429");
    error.retry_after_ms = Some(120_000);
    assert_eq!(delay_of(after(&wf, "a", 1, &Outcome::Failed(error.clone())), 1), Duration::from_secs(120));
    error.retry_after_ms = Some(10_000_000);
    assert_eq!(delay_of(after(&wf, "a", 1, &Outcome::Failed(error)), 1), Duration::from_secs(900));
    let long = retrying(10, "10m", false);
    assert!(delay_of(after(&long, "a", 5, &failed(true)), 5) <= Duration::from_secs(900));
}

#[test]
fn failure_after_the_last_retry_fails_the_execution_naming_the_step() {
    let wf = retrying(2, "1s", false);
    assert_eq!(
        after(&wf, "a", 3, &failed(true)),
        Ok(Effect::Finish {
            status: ExecutionStatus::Failed,
            error: Some(ExecutionError { step: Some("a".into()), message: "HTTP 503".into() }),
        })
    );
}

#[test]
fn terminal_failure_is_not_retried() {
    let wf = retrying(3, "1s", false);
    let effect = after(&wf, "a", 1, &failed(false));
    assert!(matches!(effect, Ok(Effect::Finish { status: ExecutionStatus::Failed, .. })));
}

#[test]
fn continue_on_failure_goes_on_once_retries_are_spent() {
    let wf = retrying(1, "1s", true);
    assert!(matches!(after(&wf, "a", 1, &failed(true)), Ok(Effect::RunStep { attempt: 2, .. })));
    assert_eq!(after(&wf, "a", 2, &failed(true)), Ok(run("b")));
    assert_eq!(after(&wf, "a", 1, &failed(false)), Ok(run("b")));
}

#[test]
fn delay_step_continues_not_before_its_end() {
    let wf = workflow(json!([{ "id": "wait", "type": "delay", "for": "1h" }, request("b")]));
    let until = "2026-11-23T11:00:00.000Z";
    let effect = after(&wf, "wait", 1, &ok(json!({ "waitedUntil": until })));
    let expected = chrono::DateTime::parse_from_rfc3339(until).expect("time").with_timezone(&chrono::Utc);
    assert_eq!(
        effect,
        Ok(Effect::RunStep {
            step: "b".into(),
            scope: vec![],
            attempt: 1,
            delay: Duration::ZERO,
            not_before: Some(expected)
        })
    );
}

fn fan_out(id: &str, steps: Value) -> Value {
    json!({ "id": id, "type": "fan_out", "over": "{{trigger.body.items}}", "steps": steps })
}

fn fanned() -> Workflow {
    workflow(json!([
        request("a"),
        fan_out(
            "f",
            json!([
                request("f1"),
                conditional("fc", json!([request("f2")]), json!([])),
                fan_out("g", json!([request("g1")])),
            ])
        ),
        request("z"),
    ]))
}

#[test]
fn steps_of_a_branch_run_in_the_branch_scope() {
    let wf = fanned();
    assert_eq!(after_step(&wf, "f1", &[3], 1, &ok(json!(1)), 0), Ok(run_in("fc", &[3])));
    assert_eq!(after_step(&wf, "fc", &[3], 1, &branch("then"), 0), Ok(run_in("f2", &[3])));
    assert_eq!(after_step(&wf, "f2", &[3], 1, &ok(json!(1)), 0), Ok(run_in("g", &[3])));
}

#[test]
fn the_last_step_of_a_branch_ends_the_branch_with_its_output() {
    let wf = fanned();
    assert_eq!(
        after_step(&wf, "g1", &[3, 5], 1, &ok(json!({ "n": 1 })), 0),
        Ok(Effect::BranchDone { fan_out: "g".into(), scope: vec![3], index: 5, result: json!({ "n": 1 }) })
    );
    assert_eq!(
        after_step(&wf, "g", &[3], 1, &ok(json!([1, 2])), 0),
        Ok(Effect::BranchDone { fan_out: "f".into(), scope: vec![], index: 3, result: json!([1, 2]) })
    );
}

#[test]
fn a_joined_fan_out_continues_below_it() {
    assert_eq!(after_step(&fanned(), "f", &[], 1, &ok(json!([1, 2, 3])), 0), Ok(run("z")));
}

#[test]
fn a_failed_branch_fails_its_fan_out() {
    let effect = after_step(&fanned(), "f1", &[2], 1, &failed(false), 0);
    match effect {
        Ok(Effect::BranchFailed { fan_out, scope, index, error }) => {
            assert_eq!((fan_out.as_str(), scope, index), ("f", vec![], 2));
            assert!(error.message.contains("branch 2 failed at step `f1`") && !error.retryable, "{}", error.message);
        }
        other => panic!("expected BranchFailed, got {other:?}"),
    }
}

#[test]
fn a_branch_step_that_continues_on_failure_ends_the_branch_with_null() {
    let wf = workflow(json!([fan_out(
        "f",
        json!([
            { "id": "x", "type": "request", "url": "https://x", "continue_on_failure": true }
        ])
    )]));
    assert_eq!(
        after_step(&wf, "x", &[0], 1, &failed(false), 0),
        Ok(Effect::BranchDone { fan_out: "f".into(), scope: vec![], index: 0, result: Value::Null })
    );
}

#[test]
fn a_scope_that_does_not_match_the_step_is_an_error() {
    assert!(matches!(after_step(&fanned(), "f1", &[], 1, &ok(json!(1)), 0), Err(EngineError::BadScope { .. })));
    assert!(matches!(after_step(&fanned(), "a", &[1], 1, &ok(json!(1)), 0), Err(EngineError::BadScope { .. })));
}

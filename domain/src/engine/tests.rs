//! `decide(event) → effects` for every transition.

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

fn time(text: &str) -> Timestamp {
    chrono::DateTime::parse_from_rfc3339(text).expect("time").with_timezone(&chrono::Utc)
}

const NOW: &str = "2026-11-23T10:00:00.000Z";

fn state(status: ExecutionStatus, caller_waits: bool) -> State<'static> {
    State { execution_id: "e1", status, caller_waits, now: time(NOW), inline_fan_out_items: 100, redrives: 0 }
}

fn running() -> State<'static> {
    state(ExecutionStatus::Running, false)
}

fn key(step: &str, scope: &[u32]) -> StepKey {
    StepKey::new(step, scope)
}

fn run(step: &str) -> Effect {
    run_in(step, &[])
}

fn run_in(step: &str, scope: &[u32]) -> Effect {
    Effect::RunStep { key: key(step, scope), attempt: 1, delay: Duration::ZERO }
}

fn ended(wf: &Workflow, st: &State<'_>, step: &str, scope: &[u32], attempt: u32, outcome: Outcome) -> Vec<Effect> {
    decide(wf, st, Event::StepEnded { key: key(step, scope), attempt, outcome }).expect("a decision")
}

fn after(wf: &Workflow, step: &str, attempt: u32, outcome: Outcome) -> Vec<Effect> {
    ended(wf, &running(), step, &[], attempt, outcome)
}

fn succeeded() -> Vec<Effect> {
    vec![Effect::Finish { status: ExecutionStatus::Succeeded, error: None }]
}

fn ok(output: Value) -> Outcome {
    Outcome::done(output)
}

fn branch(taken: Branch) -> Outcome {
    Outcome::Succeeded { output: json!({}), signal: Signal::Branch(taken) }
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

// --- started ---

#[test]
fn start_runs_the_first_step() {
    assert_eq!(decide(&nested(), &running(), Event::Started), Ok(vec![run("a")]));
}

#[test]
fn start_of_an_empty_workflow_finishes_it_and_answers_a_waiting_caller() {
    let empty = workflow(json!([]));
    assert_eq!(decide(&empty, &running(), Event::Started), Ok(succeeded()));
    let effects = decide(&empty, &state(ExecutionStatus::Running, true), Event::Started).expect("decision");
    assert!(
        matches!(effects.as_slice(), [Effect::Finish { .. }, Effect::Respond(Answer::Ended(a))] if a.status == 200)
    );
}

// --- step ended: linear flow and conditionals ---

#[test]
fn success_runs_the_next_sibling() {
    assert_eq!(after(&nested(), "a", 1, ok(json!({}))), vec![run("c")]);
}

#[test]
fn success_of_the_last_step_finishes_the_execution() {
    assert_eq!(after(&nested(), "z", 1, ok(json!(null))), succeeded());
}

#[test]
fn conditional_enters_the_chosen_branch() {
    assert_eq!(after(&nested(), "c", 1, branch(Branch::Then)), vec![run("t1")]);
    assert_eq!(after(&nested(), "c", 1, branch(Branch::Else)), vec![run("e1")]);
}

#[test]
fn empty_branch_continues_below_the_conditional() {
    assert_eq!(after(&nested(), "inner", 1, branch(Branch::Else)), vec![run("t2")]);
}

#[test]
fn end_of_a_branch_continues_below_the_conditional() {
    assert_eq!(after(&nested(), "e1", 1, ok(json!(1))), vec![run("z")]);
    assert_eq!(after(&nested(), "t2", 1, ok(json!(1))), vec![run("z")]);
}

#[test]
fn end_of_a_nested_branch_continues_in_the_outer_branch() {
    assert_eq!(after(&nested(), "i1", 1, ok(json!(1))), vec![run("t2")]);
}

#[test]
fn conditional_at_the_end_with_empty_branch_finishes() {
    let wf = workflow(json!([conditional("c", json!([]), json!([]))]));
    assert_eq!(after(&wf, "c", 1, branch(Branch::Then)), succeeded());
}

#[test]
fn conditional_without_a_branch_is_an_error() {
    let err =
        decide(&nested(), &running(), Event::StepEnded { key: key("c", &[]), attempt: 1, outcome: ok(json!({})) });
    assert!(matches!(err, Err(EngineError::BadSignal { .. })));
}

#[test]
fn unknown_step_is_an_error() {
    let err =
        decide(&nested(), &running(), Event::StepEnded { key: key("nope", &[]), attempt: 1, outcome: ok(json!(1)) });
    assert_eq!(err, Err(EngineError::UnknownStep("nope".into())));
}

// --- step ended: failures and retries ---

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

/// The delay of the retry decided, asserting it retries `attempt + 1`.
fn delay_of(effects: Vec<Effect>, attempt: u32) -> Duration {
    match effects.as_slice() {
        [Effect::RunStep { attempt: next, delay, key }] if *next == attempt + 1 && key.scope.is_empty() => *delay,
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
        let delay = delay_of(after(&wf, "a", attempt, failed(true)), attempt);
        assert!(within_jitter(delay, base_ms), "attempt {attempt}: {delay:?}");
    }
}

#[test]
fn default_schedule_waits_about_10_20_30_50_80_seconds() {
    let wf = workflow(json!([{ "id": "a", "type": "request", "url": "https://x", "retries": 7 }]));
    for (attempt, secs) in [(1, 10), (2, 20), (3, 30), (4, 50), (5, 80), (6, 80), (7, 80)] {
        let delay = delay_of(after(&wf, "a", attempt, failed(true)), attempt);
        assert!(within_jitter(delay, secs * 1000), "attempt {attempt}: {delay:?}");
    }
}

#[test]
fn jitter_is_deterministic_per_execution_and_spreads_across_executions() {
    let wf = retrying(3, "10s", false);
    let delay = |id: &str| {
        let st = State { execution_id: id, ..running() };
        delay_of(ended(&wf, &st, "a", &[], 1, failed(true)), 1)
    };
    assert_eq!(delay("e42"), delay("e42"));
    let ids: Vec<String> = (0..50).map(|n| format!("exec-{n}")).collect();
    let spread: std::collections::BTreeSet<u128> = ids.iter().map(|id| delay(id).as_millis()).collect();
    assert!(spread.len() > 40, "50 executions gave only {} distinct delays", spread.len());
    assert!(spread.iter().all(|ms| (8_000..=12_000).contains(ms)));
}

#[test]
fn retry_after_is_a_minimum_and_delays_are_capped_at_fifteen_minutes() {
    let wf = retrying(3, "1s", false);
    let mut error = StepError::retryable("HTTP 429");
    error.retry_after_ms = Some(120_000);
    assert_eq!(delay_of(after(&wf, "a", 1, Outcome::Failed(error.clone())), 1), Duration::from_secs(120));
    error.retry_after_ms = Some(10_000_000);
    assert_eq!(delay_of(after(&wf, "a", 1, Outcome::Failed(error)), 1), Duration::from_secs(900));
    let long = retrying(10, "10m", false);
    assert!(delay_of(after(&long, "a", 5, failed(true)), 5) <= Duration::from_secs(900));
}

#[test]
fn failure_after_the_last_retry_fails_the_execution_naming_the_step() {
    let wf = retrying(2, "1s", false);
    assert_eq!(
        after(&wf, "a", 3, failed(true)),
        vec![Effect::Finish {
            status: ExecutionStatus::Failed,
            error: Some(ExecutionError { step: Some("a".into()), message: "HTTP 503".into() }),
        }]
    );
}

#[test]
fn terminal_failure_is_not_retried() {
    let wf = retrying(3, "1s", false);
    assert!(matches!(
        after(&wf, "a", 1, failed(false)).as_slice(),
        [Effect::Finish { status: ExecutionStatus::Failed, .. }]
    ));
}

#[test]
fn continue_on_failure_goes_on_once_retries_are_spent() {
    let wf = retrying(1, "1s", true);
    assert!(matches!(after(&wf, "a", 1, failed(true)).as_slice(), [Effect::RunStep { attempt: 2, .. }]));
    assert_eq!(after(&wf, "a", 2, failed(true)), vec![run("b")]);
    assert_eq!(after(&wf, "a", 1, failed(false)), vec![run("b")]);
}

// --- responding ---

fn answer(status: u16) -> HttpResponse {
    HttpResponse { status, headers: Default::default(), body: json!({ "ok": true }), file: None }
}

#[test]
fn a_response_step_answers_a_waiting_caller_only() {
    let event = || Event::Answered { key: key("reply", &[]), answer: answer(201) };
    let wf = workflow(json!([{ "id": "reply", "type": "response", "status": 201 }]));
    assert_eq!(
        decide(&wf, &state(ExecutionStatus::Running, true), event()),
        Ok(vec![Effect::Respond(Answer::Step(answer(201)))])
    );
    assert_eq!(decide(&wf, &running(), event()), Ok(vec![]));
}

#[test]
fn a_failure_answers_a_waiting_caller_with_500_naming_the_step() {
    let wf = retrying(0, "1s", false);
    let effects = ended(&wf, &state(ExecutionStatus::Running, true), "a", &[], 1, failed(false));
    let [Effect::Finish { status: ExecutionStatus::Failed, .. }, Effect::Respond(Answer::Ended(answer))] =
        effects.as_slice()
    else {
        panic!("expected finish then answer, got {effects:?}");
    };
    assert_eq!(answer.status, 500);
    assert_eq!(answer.body["error"]["code"], "workflow_failed");
    assert_eq!(answer.body["error"]["step"], "a");
    assert_eq!(answer.body["error"]["executionId"], "e1");
    assert_eq!(answer.body["error"]["message"], "step `a` failed: HTTP 503");
}

#[test]
fn an_end_without_a_response_answers_a_waiting_caller_with_200() {
    let effects = ended(&nested(), &state(ExecutionStatus::Running, true), "z", &[], 1, ok(json!(1)));
    assert!(
        matches!(effects.as_slice(), [Effect::Finish { .. }, Effect::Respond(Answer::Ended(a))] if a.status == 200)
    );
}

#[test]
fn the_deadline_answers_542_unless_the_execution_ended() {
    let wf = nested();
    assert_eq!(
        decide(&wf, &state(ExecutionStatus::Waiting, true), Event::DeadlineReached),
        Ok(vec![Effect::Respond(Answer::TimedOut)])
    );
    assert_eq!(decide(&wf, &state(ExecutionStatus::Succeeded, true), Event::DeadlineReached), Ok(vec![]));
    assert_eq!(decide(&wf, &running(), Event::DeadlineReached), Ok(vec![]));
}

#[test]
fn an_abandoned_execution_fails_with_the_reason_and_an_ended_one_stays_ended() {
    let event = || Event::Abandoned { key: Some(key("a", &[])), reason: "internal error".into() };
    let effects = decide(&nested(), &state(ExecutionStatus::Waiting, true), event()).expect("decision");
    assert!(matches!(
        effects.as_slice(),
        [Effect::Finish { status: ExecutionStatus::Failed, error: Some(e) }, Effect::Respond(Answer::Ended(_))]
            if e.step.as_deref() == Some("a") && e.message == "internal error"
    ));
    assert_eq!(decide(&nested(), &state(ExecutionStatus::Failed, true), event()), Ok(vec![]));
}

// --- waiting ---

fn delayed(last: bool) -> Workflow {
    let mut steps = vec![json!({ "id": "wait", "type": "delay", "for": "1h" })];
    if !last {
        steps.push(request("b"));
    }
    workflow(Value::Array(steps))
}

fn waited(until: &str) -> Outcome {
    Outcome::Succeeded { output: json!({ "waitedUntil": until }), signal: Signal::WaitUntil(time(until)) }
}

#[test]
fn a_delay_sets_waiting_and_wakes_at_its_end() {
    let until = "2026-11-23T11:00:00.000Z";
    assert_eq!(
        after(&delayed(false), "wait", 1, waited(until)),
        vec![
            Effect::SetStatus { from: ExecutionStatus::Running, to: ExecutionStatus::Waiting },
            Effect::Wake { key: key("wait", &[]), attempt: 1, at: time(until) },
        ]
    );
}

#[test]
fn a_delay_seen_while_already_waiting_does_not_flip_the_status_again() {
    let st = state(ExecutionStatus::Waiting, false);
    let effects = ended(&delayed(false), &st, "wait", &[], 1, waited("2026-11-23T11:00:00.000Z"));
    assert!(matches!(effects.as_slice(), [Effect::Wake { .. }]), "{effects:?}");
}

#[test]
fn a_delay_already_due_goes_straight_on() {
    assert_eq!(after(&delayed(false), "wait", 1, waited(NOW)), vec![run("b")]);
}

#[test]
fn the_end_of_a_wait_sets_running_and_goes_on() {
    let event = || Event::WaitOver { key: key("wait", &[]), attempt: 1, output: json!({}) };
    assert_eq!(
        decide(&delayed(false), &state(ExecutionStatus::Waiting, false), event()),
        Ok(vec![Effect::SetStatus { from: ExecutionStatus::Waiting, to: ExecutionStatus::Running }, run("b")])
    );
    assert_eq!(decide(&delayed(false), &running(), event()), Ok(vec![run("b")]));
}

#[test]
fn a_last_delay_waits_before_the_execution_ends() {
    let effects = after(&delayed(true), "wait", 1, waited("2026-11-23T11:00:00.000Z"));
    assert!(!effects.iter().any(|e| matches!(e, Effect::Finish { .. })), "{effects:?}");
    assert!(matches!(effects.last(), Some(Effect::Wake { .. })));
    let over = Event::WaitOver { key: key("wait", &[]), attempt: 1, output: json!({}) };
    assert_eq!(
        decide(&delayed(true), &state(ExecutionStatus::Waiting, false), over),
        Ok(vec![
            Effect::SetStatus { from: ExecutionStatus::Waiting, to: ExecutionStatus::Running },
            Effect::Finish { status: ExecutionStatus::Succeeded, error: None },
        ])
    );
}

#[test]
fn a_wake_for_a_step_that_is_not_a_delay_is_an_error() {
    let over = Event::WaitOver { key: key("a", &[]), attempt: 1, output: json!({}) };
    assert!(matches!(decide(&nested(), &running(), over), Err(EngineError::BadSignal { .. })));
}

// --- fan-out ---

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

fn evaluated(wf: &Workflow, items: Result<Vec<Value>, StepError>) -> Vec<Effect> {
    decide(wf, &running(), Event::FanOutEvaluated { key: key("f", &[]), attempt: 1, items }).expect("decision")
}

fn recorded_failure(effects: &[Effect]) -> String {
    match effects {
        [Effect::Record { key, attempt: 1, result: Recorded::Failed(error) }] if key.step == "f" => {
            error.message.clone()
        }
        other => panic!("expected the fan-out to fail, got {other:?}"),
    }
}

#[test]
fn a_fan_out_starts_a_branch_per_item() {
    let items = vec![json!(1), json!(2), json!(3)];
    assert_eq!(
        evaluated(&fanned(), Ok(items.clone())),
        vec![Effect::StartBranches { fan_out: key("f", &[]), first_step: "f1".into(), lanes: 3, items, inline: false }]
    );
}

#[test]
fn a_small_fan_out_whose_branches_never_wait_runs_inline() {
    let flat =
        |steps: Value| workflow(json!([{ "id": "f", "type": "fan_out", "over": "{{trigger.body}}", "steps": steps }]));
    let inline = |wf: &Workflow, n: usize| {
        let effects = evaluated(wf, Ok(vec![json!(1); n]));
        match effects.as_slice() {
            [Effect::StartBranches { inline, .. }] => *inline,
            other => panic!("expected the branches to start, got {other:?}"),
        }
    };
    let quick = flat(json!([request("x"), conditional("c", json!([request("y")]), json!([]))]));
    assert!(inline(&quick, 100), "100 items, no waiting step");
    assert!(!inline(&quick, 101), "over the inline threshold");
    let waits = flat(json!([conditional("c", json!([{ "id": "d", "type": "delay", "for": "1s" }]), json!([]))]));
    assert!(!inline(&waits, 3), "a Delay anywhere in the branch");
    assert!(!inline(&fanned(), 3), "a nested fan-out");
}

#[test]
fn inline_branches_counted_in_a_batch_join_only_when_all_are_done() {
    let wf = fanned();
    let event = |all_done| Event::BranchesCounted { fan_out: key("f", &[]), total: 4, all_done };
    assert_eq!(decide(&wf, &running(), event(false)), Ok(vec![]));
    assert_eq!(decide(&wf, &running(), event(true)), Ok(vec![Effect::Join { fan_out: key("f", &[]), total: 4 }]));
}

#[test]
fn a_fan_out_with_concurrency_starts_that_many_lanes() {
    let wf = workflow(
        json!([{ "id": "f", "type": "fan_out", "over": "{{trigger.body}}", "concurrency": 2, "steps": [request("x")] }]),
    );
    let effects = evaluated(&wf, Ok(vec![json!(1), json!(2), json!(3)]));
    assert!(matches!(effects.as_slice(), [Effect::StartBranches { lanes: 2, .. }]), "{effects:?}");
    let effects = evaluated(&wf, Ok(vec![json!(1)]));
    assert!(matches!(effects.as_slice(), [Effect::StartBranches { lanes: 1, .. }]), "{effects:?}");
}

#[test]
fn a_fan_out_over_nothing_succeeds_with_an_empty_list() {
    assert_eq!(
        evaluated(&fanned(), Ok(vec![])),
        vec![Effect::Record {
            key: key("f", &[]),
            attempt: 1,
            result: Recorded::Succeeded { input: json!({ "items": 0 }), output: json!([]) },
        }]
    );
}

#[test]
fn a_fan_out_fails_on_a_bad_over_too_many_items_or_a_large_item() {
    assert_eq!(
        recorded_failure(&evaluated(&fanned(), Err(StepError::terminal("`over` must give an array")))),
        "`over` must give an array"
    );
    let many = vec![json!(0); MAX_FAN_OUT_ITEMS + 1];
    assert!(recorded_failure(&evaluated(&fanned(), Ok(many))).contains("at most 10000"));
    let large = vec![json!(1), json!("x".repeat(MAX_ITEM_BYTES))];
    assert!(recorded_failure(&evaluated(&fanned(), Ok(large))).starts_with("item 1 is larger"));
}

#[test]
fn steps_of_a_branch_run_in_the_branch_scope() {
    let wf = fanned();
    let st = running();
    assert_eq!(ended(&wf, &st, "f1", &[3], 1, ok(json!(1))), vec![run_in("fc", &[3])]);
    assert_eq!(ended(&wf, &st, "fc", &[3], 1, branch(Branch::Then)), vec![run_in("f2", &[3])]);
    assert_eq!(ended(&wf, &st, "f2", &[3], 1, ok(json!(1))), vec![run_in("g", &[3])]);
}

#[test]
fn the_last_step_of_a_branch_completes_the_branch_with_its_output() {
    let wf = fanned();
    let st = running();
    assert_eq!(
        ended(&wf, &st, "g1", &[3, 5], 1, ok(json!({ "n": 1 }))),
        vec![Effect::CompleteBranch { fan_out: key("g", &[3]), index: 5, result: json!({ "n": 1 }) }]
    );
    assert_eq!(
        ended(&wf, &st, "g", &[3], 1, ok(json!([1, 2]))),
        vec![Effect::CompleteBranch { fan_out: key("f", &[]), index: 3, result: json!([1, 2]) }]
    );
}

fn counted(wf: &Workflow, index: u32, total: u32, all_done: bool) -> Vec<Effect> {
    counted_by(wf, index, total, all_done, Carry::First)
}

fn counted_by(wf: &Workflow, index: u32, total: u32, all_done: bool, carry: Carry) -> Vec<Effect> {
    let event = Event::BranchCounted { fan_out: key("f", &[]), index, total, all_done, carry };
    decide(wf, &running(), event).expect("decision")
}

#[test]
fn the_count_that_finds_every_branch_done_joins_and_no_other_does() {
    let wf = fanned();
    assert_eq!(counted(&wf, 1, 3, false), vec![]);
    assert_eq!(counted(&wf, 0, 3, true), vec![Effect::Join { fan_out: key("f", &[]), total: 3 }]);
}

#[test]
fn duplicate_and_out_of_order_completions_join_only_when_the_store_says_all_are_done() {
    let wf = fanned();
    // Branch 2 completes first, then branch 0 twice (a redelivery), then branch 1: only the
    // counts the store reports as complete join (a redelivery after completion joins again,
    // and first-writer-wins keeps the one record).
    let sequence = [(2, false), (0, false), (0, false), (1, true), (1, true)];
    let joins: Vec<usize> = sequence
        .iter()
        .enumerate()
        .filter(|(_, (index, done))| !counted(&wf, *index, 3, *done).is_empty())
        .map(|(n, _)| n)
        .collect();
    assert_eq!(joins, vec![3, 4]);
}

#[test]
fn a_lane_completion_starts_the_next_branch_of_its_lane() {
    let wf = workflow(
        json!([{ "id": "f", "type": "fan_out", "over": "{{trigger.body}}", "concurrency": 2, "steps": [request("x")] }]),
    );
    let start = |index| Effect::StartBranch {
        fan_out: key("f", &[]),
        first_step: "x".into(),
        index,
        total: 5,
        unless_started: false,
    };
    assert_eq!(counted(&wf, 0, 5, false), vec![start(2)]);
    assert_eq!(counted(&wf, 2, 5, false), vec![start(4)]);
    assert_eq!(counted(&wf, 3, 5, false), vec![]);
    assert_eq!(counted(&wf, 4, 5, true), vec![Effect::Join { fan_out: key("f", &[]), total: 5 }]);
}

#[test]
fn only_the_delivery_that_counted_a_branch_first_carries_its_lane_on_for_sure() {
    let wf = workflow(
        json!([{ "id": "f", "type": "fan_out", "over": "{{trigger.body}}", "concurrency": 2, "steps": [request("x")] }]),
    );
    let start = |index, unless_started| Effect::StartBranch {
        fan_out: key("f", &[]),
        first_step: "x".into(),
        index,
        total: 5,
        unless_started,
    };
    // A duplicate handled beside the first: the lane is not its own.
    assert_eq!(counted_by(&wf, 0, 5, false, Carry::No), vec![]);
    assert_eq!(counted_by(&wf, 2, 5, true, Carry::No), vec![Effect::Join { fan_out: key("f", &[]), total: 5 }]);
    // A redelivery: the next branch unless it began; a recovery walk: the next branch.
    assert_eq!(counted_by(&wf, 0, 5, false, Carry::IfNotStarted), vec![start(2, true)]);
    assert_eq!(counted_by(&wf, 1, 5, false, Carry::Always), vec![start(3, false)]);
}

#[test]
fn a_retried_branch_of_an_inline_fan_out_starts_no_other_branch() {
    // Every branch of an inline fan-out was started inline: one that a retry sent to the
    // queue only counts itself when it ends (found by the fault-injection suite: it used to
    // start branch index + concurrency again, whose item an inline fan-out never stores).
    let wf = workflow(
        json!([{ "id": "f", "type": "fan_out", "over": "{{trigger.body}}", "concurrency": 2, "steps": [request("x")] }]),
    );
    let inline = |index, all_done| {
        let event = Event::BranchCounted { fan_out: key("f", &[]), index, total: 5, all_done, carry: Carry::No };
        decide(&wf, &running(), event).expect("decision")
    };
    assert_eq!(inline(0, false), vec![]);
    assert_eq!(inline(2, true), vec![Effect::Join { fan_out: key("f", &[]), total: 5 }]);
}

#[test]
fn a_joined_fan_out_continues_below_it() {
    assert_eq!(after(&fanned(), "f", 1, ok(json!([1, 2, 3]))), vec![run("z")]);
}

#[test]
fn a_failed_branch_fails_its_fan_out() {
    let effects = ended(&fanned(), &running(), "f1", &[2], 1, failed(false));
    match effects.as_slice() {
        [Effect::Record { key: fan_out, attempt: CURRENT_FAN_OUT_ATTEMPT, result: Recorded::Failed(error) }] => {
            assert_eq!(fan_out, &key("f", &[]));
            assert!(error.message.contains("branch 2 failed at step `f1`") && !error.retryable, "{}", error.message);
        }
        other => panic!("expected the fan-out's failure, got {other:?}"),
    }
}

#[test]
fn a_branch_step_that_continues_on_failure_ends_the_branch_with_null() {
    let wf = workflow(json!([fan_out(
        "f",
        json!([{ "id": "x", "type": "request", "url": "https://x", "continue_on_failure": true }])
    )]));
    assert_eq!(
        ended(&wf, &running(), "x", &[0], 1, failed(false)),
        vec![Effect::CompleteBranch { fan_out: key("f", &[]), index: 0, result: Value::Null }]
    );
}

#[test]
fn a_delay_inside_a_branch_waits_in_its_branch_and_completes_it_after() {
    let wf = workflow(json!([fan_out("f", json!([{ "id": "d", "type": "delay", "for": "1m" }]))]));
    let until = "2026-11-23T10:01:00.000Z";
    let effects = ended(&wf, &running(), "d", &[4], 1, waited(until));
    assert_eq!(effects.last(), Some(&Effect::Wake { key: key("d", &[4]), attempt: 1, at: time(until) }));
    let over = Event::WaitOver { key: key("d", &[4]), attempt: 1, output: json!({ "waitedUntil": until }) };
    assert_eq!(
        decide(&wf, &running(), over),
        Ok(vec![Effect::CompleteBranch { fan_out: key("f", &[]), index: 4, result: json!({ "waitedUntil": until }) }])
    );
}

#[test]
fn a_scope_that_does_not_match_the_step_is_an_error() {
    let wf = fanned();
    for (step, scope) in [("f1", &[][..]), ("a", &[1][..])] {
        let event = Event::StepEnded { key: key(step, scope), attempt: 1, outcome: ok(json!(1)) };
        assert!(matches!(decide(&wf, &running(), event), Err(EngineError::BadScope { .. })), "{step}");
    }
    let not_fan_out = Event::FanOutEvaluated { key: key("a", &[]), attempt: 1, items: Ok(vec![]) };
    assert!(matches!(decide(&wf, &running(), not_fan_out), Err(EngineError::NotAFanOut(_))));
}

fn redriven(times: u32) -> State<'static> {
    State { redrives: times, ..running() }
}

#[test]
fn after_a_redrive_a_final_failure_of_an_earlier_generation_runs_again_with_its_whole_retry_budget() {
    let wf = retrying(2, "1s", false);
    let run = |attempt| vec![Effect::RunStep { key: key("a", &[]), attempt, delay: Duration::ZERO }];
    // Generation 0's last attempt (3, retries spent) failed: redriven once, attempt 1001 runs.
    assert_eq!(ended(&wf, &redriven(1), "a", &[], 3, failed(true)), run(1001));
    // A terminal failure is final too.
    assert_eq!(ended(&wf, &redriven(1), "a", &[], 1, failed(false)), run(1001));
    // A failure generation 0 retried is replayed as it went: the retry, not a redrive.
    assert!(matches!(
        ended(&wf, &redriven(1), "a", &[], 1, failed(true)).as_slice(),
        [Effect::RunStep { attempt: 2, .. }]
    ));
    // Generation 1 retries like generation 0 did: 1001 → 1002 → 1003, then fails for good.
    assert!(matches!(
        ended(&wf, &redriven(1), "a", &[], 1002, failed(true)).as_slice(),
        [Effect::RunStep { attempt: 1003, .. }]
    ));
    assert!(matches!(
        ended(&wf, &redriven(1), "a", &[], 1003, failed(true)).as_slice(),
        [Effect::Finish { status: ExecutionStatus::Failed, .. }]
    ));
    // Redriven twice: generation 0's failure leads to generation 1's, whose failure to 2001.
    assert_eq!(ended(&wf, &redriven(2), "a", &[], 3, failed(true)), run(1001));
    assert_eq!(ended(&wf, &redriven(2), "a", &[], 1003, failed(true)), run(2001));
    // Never redriven: nothing changes.
    assert!(matches!(
        ended(&wf, &running(), "a", &[], 3, failed(true)).as_slice(),
        [Effect::Finish { status: ExecutionStatus::Failed, .. }]
    ));
    // The retry delay of a later generation is its first retry's, not the thousandth's.
    let first = ended(&wf, &running(), "a", &[], 1, failed(true));
    let later = ended(&wf, &redriven(1), "a", &[], 1001, failed(true));
    let delay = |effects: &[Effect]| match effects {
        [Effect::RunStep { delay, .. }] => *delay,
        other => panic!("expected a retry, got {other:?}"),
    };
    assert!(delay(&later) <= delay(&first) * 2, "{:?} vs {:?}", delay(&later), delay(&first));
}

#[test]
fn a_cancel_ends_the_execution_cancelled_and_answers_a_waiting_caller_409() {
    let wf = retrying(0, "1s", false);
    let cancel = || Event::Cancelled { reason: "cancelled through the API".into() };
    let effects = decide(&wf, &state(ExecutionStatus::Waiting, true), cancel()).expect("a decision");
    let [Effect::Finish { status: ExecutionStatus::Cancelled, .. }, Effect::Respond(Answer::Ended(answer))] =
        effects.as_slice()
    else {
        panic!("expected finish then answer, got {effects:?}");
    };
    assert_eq!(answer.status, 409);
    assert_eq!(answer.body["error"]["code"], "execution_cancelled");
    assert_eq!(decide(&wf, &state(ExecutionStatus::Succeeded, true), cancel()), Ok(vec![]), "ended: nothing");
}

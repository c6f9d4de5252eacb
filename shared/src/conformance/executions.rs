//! Store cases for executions, step attempts and settled responses.
//!
//! Invariant: every case works on fresh execution ids, so cases never see each other's data.

use std::collections::BTreeMap;

use serde_json::json;

use super::{at_ms, unique};
use crate::engine::StepKey;
use crate::ports::{FirstWrite, Store, StoreError};
use crate::record::{
    Execution, ExecutionError, ExecutionStatus, HttpResponse, SettledResponse, StepAttempt, StepError, StepStatus,
    Timestamp, TriggerData, now,
};

fn execution(id: &str) -> Execution {
    Execution {
        id: id.to_string(),
        project_id: unique("p"),
        workflow_id: "orders-sync".into(),
        workflow_version: 3,
        user_id: "user-1".into(),
        status: ExecutionStatus::Running,
        started_at: now(),
        ended_at: None,
        trigger: TriggerData {
            kind: Default::default(),
            query: BTreeMap::from([("page".to_string(), "2".to_string())]),
            headers: BTreeMap::from([("content-type".to_string(), "application/json".to_string())]),
            body: json!({ "order": { "id": 42, "items": [1, 2, 3] }, "note": "héllo" }),
            event: Some("Order Placed".into()),
        },
        response_deadline: None,
        error: None,
        test: false,
        ..Default::default()
    }
}

fn attempt(step: &str, n: u32, started_at: Timestamp, output: serde_json::Value) -> StepAttempt {
    StepAttempt {
        step: step.to_string(),
        attempt: n,
        status: StepStatus::Succeeded,
        input: json!({ "url": "https://example.com", "attempt": n }),
        output: Some(output),
        error: None,
        started_at,
        ended_at: at_ms(started_at.timestamp_millis() + 250),
        logs: vec![format!("attempt {n}")],
    }
}
/// A created execution reads back equal; a duplicate create is `AlreadyExists`.
pub async fn case_execution_create_get_and_duplicate(store: &dyn Store) {
    let e = execution(&unique("e"));
    store.create_execution(&e).await.expect("create execution");
    assert_eq!(store.get_execution(&e.id).await.expect("get execution"), Some(e.clone()));

    let mut other = e.clone();
    other.user_id = "someone-else".into();
    let duplicate = store.create_execution(&other).await;
    assert!(matches!(duplicate, Err(StoreError::AlreadyExists(_))), "duplicate execution: {duplicate:?}");
    assert_eq!(store.get_execution(&e.id).await.expect("get execution"), Some(e), "the first execution is kept");
    assert_eq!(store.get_execution(&unique("e")).await.expect("get unknown"), None);
}

/// Only the first finish of a running execution changes it; later ones return false.
pub async fn case_finish_execution_only_once(store: &dyn Store) {
    let e = execution(&unique("e"));
    store.create_execution(&e).await.expect("create execution");
    let error = ExecutionError { step: Some("fetch".into()), message: "HTTP 500".into() };
    let ended = at_ms(e.started_at.timestamp_millis() + 1_501);
    assert!(
        store
            .finish_execution(&e.project_id, &e.id, ExecutionStatus::Failed, Some(&error), ended)
            .await
            .expect("finish")
    );

    let later = at_ms(ended.timestamp_millis() + 10_000);
    let second = store
        .finish_execution(&e.project_id, &e.id, ExecutionStatus::Succeeded, None, later)
        .await
        .expect("second finish");
    assert!(!second, "only the first finish counts");
    let stored = store.get_execution(&e.id).await.expect("get").expect("exists");
    assert_eq!(stored.status, ExecutionStatus::Failed);
    assert_eq!(stored.error, Some(error));
    assert_eq!(stored.ended_at, Some(ended));
    assert_eq!(Execution { status: e.status, error: None, ended_at: None, ..stored }, e, "nothing else changed");

    let ok = execution(&unique("e"));
    store.create_execution(&ok).await.expect("create execution");
    assert!(
        store
            .finish_execution(&ok.project_id, &ok.id, ExecutionStatus::Succeeded, None, ended)
            .await
            .expect("finish ok")
    );
    let stored = store.get_execution(&ok.id).await.expect("get").expect("exists");
    assert_eq!((stored.status, stored.error, stored.ended_at), (ExecutionStatus::Succeeded, None, Some(ended)));

    let unknown = store.finish_execution("p", &unique("e"), ExecutionStatus::Failed, None, ended).await;
    assert!(!unknown.expect("finish unknown"), "an unknown execution is not running");
}

/// A redelivered step gets back the attempt recorded first, never overwrites it.
pub async fn case_record_step_first_writer_wins(store: &dyn Store) {
    let execution_id = unique("e");
    let first = attempt("fetch", 1, now(), json!({ "status": 200, "body": { "id": 7 } }));
    assert_eq!(store.record_step(&execution_id, &first).await.expect("record"), FirstWrite::Written);

    let mut redelivered = first.clone();
    redelivered.output = Some(json!({ "status": 200, "body": { "id": 8 } }));
    redelivered.ended_at = at_ms(first.ended_at.timestamp_millis() + 5);
    let second = store.record_step(&execution_id, &redelivered).await.expect("record again");
    assert_eq!(second, FirstWrite::Existing(first.clone()), "the second writer gets the first record");
    assert_eq!(store.get_step(&execution_id, &StepKey::top("fetch"), 1).await.expect("get step"), Some(first.clone()));

    let failed = StepAttempt {
        attempt: 2,
        status: StepStatus::Failed,
        output: None,
        error: Some(StepError::retryable("timed out").with_details(json!({ "after_ms": 30000 }))),
        ..first.clone()
    };
    assert_eq!(store.record_step(&execution_id, &failed).await.expect("record 2"), FirstWrite::Written);
    assert_eq!(store.get_step(&execution_id, &StepKey::top("fetch"), 2).await.expect("get 2"), Some(failed));
    assert_eq!(store.get_step(&execution_id, &StepKey::top("fetch"), 3).await.expect("get 3"), None);
    assert_eq!(store.get_step(&execution_id, &StepKey::top("other"), 1).await.expect("get other"), None);
    assert_eq!(store.get_step(&unique("e"), &StepKey::top("fetch"), 1).await.expect("get unknown"), None);
}

/// Two concurrent writers of one attempt: exactly one writes, the other reads its record.
pub async fn case_concurrent_record_step_has_one_winner(store: &dyn Store) {
    let execution_id = unique("e");
    let started = now();
    let a = attempt("fetch", 1, started, json!("from a"));
    let b = attempt("fetch", 1, started, json!("from b"));
    let (ra, rb) = tokio::join!(store.record_step(&execution_id, &a), store.record_step(&execution_id, &b));
    let stored = store.get_step(&execution_id, &StepKey::top("fetch"), 1).await.expect("get").expect("recorded");
    match (ra.expect("record a"), rb.expect("record b")) {
        (FirstWrite::Written, FirstWrite::Existing(seen)) => assert_eq!((&seen, &stored), (&a, &a)),
        (FirstWrite::Existing(seen), FirstWrite::Written) => assert_eq!((&seen, &stored), (&b, &b)),
        other => panic!("exactly one writer must win: {other:?}"),
    }
}

/// Every attempt is listed, ordered by start time, step, attempt, across query pages.
pub async fn case_list_steps_is_ordered_and_complete(store: &dyn Store) {
    let execution_id = unique("e");
    assert_eq!(store.list_steps(&execution_id).await.expect("list empty"), vec![]);
    // 30 attempts of ~48 KB each: more than DynamoDB's 1 MB per query page.
    let base = 1_764_000_000_001_i64;
    let mut written = Vec::new();
    for i in 0..30u32 {
        let step = ["step-c", "step-a", "step-b"][(i % 3) as usize];
        // Several attempts share a start time: the order falls back to step, then attempt.
        let started = at_ms(base + i64::from((i * 7) % 10));
        let blob = format!("{i:02}-{}", "x".repeat(48 * 1024));
        let a = attempt(step, i / 3 + 1, started, json!({ "i": i, "blob": blob }));
        assert_eq!(store.record_step(&execution_id, &a).await.expect("record"), FirstWrite::Written);
        written.push(a);
    }
    written.sort_by(|a, b| (a.started_at, &a.step, a.attempt).cmp(&(b.started_at, &b.step, b.attempt)));
    let listed = store.list_steps(&execution_id).await.expect("list steps");
    assert_eq!(listed.len(), written.len(), "every attempt is listed");
    let keys = |v: &[StepAttempt]| v.iter().map(|a| (a.started_at, a.step.clone(), a.attempt)).collect::<Vec<_>>();
    assert_eq!(keys(&listed), keys(&written), "ordered by start time, then step, then attempt");
    assert!(listed == written, "listed attempts equal what was written");
}

/// The first settled response is what every later settle and read gets.
pub async fn case_settle_response_first_wins(store: &dyn Store) {
    let execution_id = unique("e");
    assert_eq!(store.get_response(&execution_id).await.expect("get none"), None);
    let timed_out = SettledResponse::TimedOut { at: now() };
    assert_eq!(store.settle_response(&execution_id, &timed_out).await.expect("settle"), FirstWrite::Written);

    let late = SettledResponse::Step {
        response: HttpResponse {
            status: 201,
            headers: BTreeMap::from([("x-id".to_string(), "7".to_string())]),
            body: json!({ "ok": true }),
            file: None,
        },
        at: now(),
    };
    let second = store.settle_response(&execution_id, &late).await.expect("settle late");
    assert_eq!(second, FirstWrite::Existing(timed_out.clone()), "the first settled response wins");
    assert_eq!(store.get_response(&execution_id).await.expect("get"), Some(timed_out));

    let other = unique("e");
    assert_eq!(store.settle_response(&other, &late).await.expect("settle other"), FirstWrite::Written);
    assert_eq!(store.get_response(&other).await.expect("get other"), Some(late));
}

/// Every stored timestamp reads back to the exact millisecond.
pub async fn case_timestamps_round_trip_to_the_millisecond(store: &dyn Store) {
    let mut e = execution(&unique("e"));
    // Recent (within any retention), with milliseconds that a seconds-only store would lose.
    let base = now().timestamp_millis() / 1_000_000 * 1_000_000;
    e.started_at = at_ms(base + 7);
    e.response_deadline = Some(at_ms(base + 55_999));
    store.create_execution(&e).await.expect("create");
    let ended = at_ms(base + 1_001);
    store.finish_execution(&e.project_id, &e.id, ExecutionStatus::Succeeded, None, ended).await.expect("finish");
    let stored = store.get_execution(&e.id).await.expect("get").expect("exists");
    assert_eq!(
        (stored.started_at, stored.response_deadline, stored.ended_at),
        (e.started_at, e.response_deadline, Some(ended))
    );

    let a = attempt("t", 1, at_ms(base + 999), json!(null));
    store.record_step(&e.id, &a).await.expect("record");
    let got = store.get_step(&e.id, &StepKey::top("t"), 1).await.expect("get").expect("exists");
    assert_eq!((got.started_at, got.ended_at), (a.started_at, a.ended_at));

    let settled = SettledResponse::WorkflowEnded {
        response: HttpResponse { status: 500, headers: BTreeMap::new(), body: json!("failed"), file: None },
        at: at_ms(base + 2_003),
    };
    store.settle_response(&e.id, &settled).await.expect("settle");
    assert_eq!(store.get_response(&e.id).await.expect("get"), Some(settled));
}

/// Logs read back in order, as written, through `get_step`, `list_steps` and a losing
/// `record_step`; an attempt without logs reads back without logs.
pub async fn case_step_logs_round_trip(store: &dyn Store) {
    let execution_id = unique("e");
    let started = now();
    let mut logged = attempt("transform", 1, started, json!({ "ok": true }));
    logged.logs = vec![
        "first line".into(),
        String::new(),
        "ünïcødé ✓ \"quoted\" \\ back\nsecond line\ttab".into(),
        "x".repeat(10_000),
    ];
    // Its output is JSON null, which must not read back as no output (templates differ).
    let mut silent = attempt("notify", 1, at_ms(started.timestamp_millis() + 1), json!(null));
    silent.logs = Vec::new();
    for a in [&logged, &silent] {
        assert_eq!(store.record_step(&execution_id, a).await.expect("record"), FirstWrite::Written);
        assert_eq!(store.get_step(&execution_id, &StepKey::top(&a.step), 1).await.expect("get step").as_ref(), Some(a));
    }
    assert_eq!(store.list_steps(&execution_id).await.expect("list"), vec![logged.clone(), silent]);

    let redelivered = StepAttempt { logs: vec!["another run".into()], ..logged.clone() };
    let second = store.record_step(&execution_id, &redelivered).await.expect("record again");
    assert_eq!(second, FirstWrite::Existing(logged), "the first attempt's logs win");
}

/// running ⇄ waiting moves only from the stated status; a waiting execution can finish; an
/// ended or unknown execution moves no more.
pub async fn case_set_execution_status_moves_only_from_the_given_status(store: &dyn Store) {
    use ExecutionStatus::{Running, Succeeded, Waiting};
    let e = execution(&unique("e"));
    store.create_execution(&e).await.expect("create execution");
    let status = async |id: &str| store.get_execution(id).await.expect("get").expect("exists");

    assert!(store.set_execution_status(&e.project_id, &e.id, Running, Waiting).await.expect("to waiting"));
    assert_eq!(status(&e.id).await, Execution { status: Waiting, ..e.clone() }, "only the status changed");
    let again = store.set_execution_status(&e.project_id, &e.id, Running, Waiting).await.expect("from running again");
    assert!(!again, "it is not running any more");
    assert_eq!(status(&e.id).await.status, Waiting);
    assert!(store.set_execution_status(&e.project_id, &e.id, Waiting, Running).await.expect("back to running"));
    assert!(store.set_execution_status(&e.project_id, &e.id, Running, Waiting).await.expect("waiting again"));

    let ended = at_ms(e.started_at.timestamp_millis() + 60_001);
    assert!(store.finish_execution(&e.project_id, &e.id, Succeeded, None, ended).await.expect("finish while waiting"));
    let finished = status(&e.id).await;
    assert_eq!((finished.status, finished.ended_at), (Succeeded, Some(ended)));
    assert!(!store.set_execution_status(&e.project_id, &e.id, Waiting, Running).await.expect("after finish"));
    assert!(!store.set_execution_status(&e.project_id, &e.id, Running, Waiting).await.expect("after finish"));
    assert_eq!(status(&e.id).await, finished, "an ended execution stays ended");

    let unknown = unique("e");
    assert!(!store.set_execution_status("p", &unknown, Running, Waiting).await.expect("unknown"));
    assert_eq!(store.get_execution(&unknown).await.expect("get unknown"), None, "nothing was created");
}

/// The test-run flag reads back as written; an ordinary execution is not a test run.
pub async fn case_test_flag_round_trips(store: &dyn Store) {
    let test = Execution { test: true, ..execution(&unique("e")) };
    store.create_execution(&test).await.expect("create test run");
    assert_eq!(store.get_execution(&test.id).await.expect("get"), Some(test.clone()));
    let ended = at_ms(test.started_at.timestamp_millis() + 2_001);
    assert!(
        store
            .finish_execution(&test.project_id, &test.id, ExecutionStatus::Succeeded, None, ended)
            .await
            .expect("finish")
    );
    assert!(store.get_execution(&test.id).await.expect("get").expect("exists").test, "still a test run");

    let ordinary = execution(&unique("e"));
    store.create_execution(&ordinary).await.expect("create");
    assert!(!store.get_execution(&ordinary.id).await.expect("get").expect("exists").test);
}

//! The conformance suites every adapter must pass: [`store_suite`] for `Store` and
//! [`queue_suite`] for `Queue`, each a list of `pub async fn case_*` taking the trait object
//! (run them one by one to narrow a failure down). Cases assert by panicking: this is test code.
//!
//! Invariants: store cases use fresh uuid ids, so they can share one table or database with
//! each other and with anything else; queue cases need queues nobody else reads, and each case
//! leaves them empty (it acks what it receives).
//!
//! Backend differences, as found by these cases:
//! - Delays: SQLite honours them to the millisecond; SQS counts whole seconds, so a 1.5 s
//!   delay becomes 2 s (rounded up, never down). Both cap delays at 900 s.
//! - Long polling: SQS waits at most 20 s and whole seconds (rounded up); SQLite waits exactly.
//! - Visibility: SQLite counts milliseconds, SQS whole seconds (rounded up).
//! - Receive counts: SQS's `ApproximateReceiveCount` is approximate under concurrency; SQLite's
//!   is exact. Dead letters: SQLite keeps them in a table (`Sqlite::dead_letters`), SQS moves
//!   them to the `-dlq` queue; both after `max_receives` receives.
//! - Batches: SQLite accepts a batch all or nothing; SQS may refuse single entries
//!   (`PartialBatch`), and sends 10 per request.
//! - Acks: SQLite ignores a stale receipt (the message was received again since); SQS may
//!   accept or refuse one. Never rely on acking with an old receipt.
//! - Consistency: DynamoDB reads are all strongly consistent, so both stores read their own
//!   writes at once, as these cases require.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use chrono::DateTime;
use serde_json::json;

use crate::model::Workflow;
use crate::ports::{FirstWrite, Outgoing, Project, Queue, QueueName, Received, Store, StoreError};
use crate::record::{
    Execution, ExecutionError, ExecutionStatus, HttpResponse, SettledResponse, StepAttempt, StepError, StepStatus,
    Timestamp, TriggerData, now,
};

/// Runs every store case against `store`.
pub async fn store_suite(store: &dyn Store) {
    case_project_create_get_and_duplicate(store).await;
    case_deploy_versions_only_on_change(store).await;
    case_concurrent_deploys_get_distinct_versions(store).await;
    case_execution_create_get_and_duplicate(store).await;
    case_finish_execution_only_once(store).await;
    case_record_step_first_writer_wins(store).await;
    case_concurrent_record_step_has_one_winner(store).await;
    case_list_steps_is_ordered_and_complete(store).await;
    case_settle_response_first_wins(store).await;
    case_timestamps_round_trip_to_the_millisecond(store).await;
}

/// Runs every queue case against `queue`, whose two queues must be empty and unshared.
pub async fn queue_suite(queue: &dyn Queue) {
    case_send_receive_ack(queue).await;
    case_delayed_message_waits_for_its_delay(queue).await;
    case_unacked_message_comes_back_after_visibility(queue).await;
    case_batch_of_25_is_received_exactly_once(queue).await;
    case_queues_are_separate(queue).await;
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

/// A timestamp with an odd millisecond, to catch adapters that store seconds.
fn at_ms(ms: i64) -> Timestamp {
    DateTime::from_timestamp_millis(ms).expect("timestamp in range")
}

fn workflow(id: &str, url: &str) -> Workflow {
    serde_json::from_value(json!({
        "id": id,
        "name": "Conformance",
        "trigger": { "type": "request" },
        "steps": [{ "id": "fetch", "type": "request", "method": "POST", "url": url, "body": { "n": 1.5 } }],
    }))
    .expect("conformance workflow parses")
}

fn project(id: &str) -> Project {
    Project {
        id: id.to_string(),
        signing_public_key_pem: "-----BEGIN PUBLIC KEY-----\nMIIB\n-----END PUBLIC KEY-----\n".into(),
        api_key_sha256: "ab".repeat(32),
        created_at: at_ms(1_764_000_000_123),
    }
}

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
            query: BTreeMap::from([("page".to_string(), "2".to_string())]),
            headers: BTreeMap::from([("content-type".to_string(), "application/json".to_string())]),
            body: json!({ "order": { "id": 42, "items": [1, 2, 3] }, "note": "héllo" }),
        },
        response_deadline: None,
        error: None,
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
    }
}

/// A created project reads back equal; a second create of its id is `AlreadyExists` and
/// changes nothing; an unknown id reads as None.
pub async fn case_project_create_get_and_duplicate(store: &dyn Store) {
    let id = unique("p");
    let p = project(&id);
    store.create_project(&p).await.expect("create project");
    assert_eq!(store.get_project(&id).await.expect("get project"), Some(p.clone()));

    let mut other = project(&id);
    other.api_key_sha256 = "cd".repeat(32);
    let duplicate = store.create_project(&other).await;
    assert!(matches!(duplicate, Err(StoreError::AlreadyExists(_))), "duplicate project: {duplicate:?}");
    assert_eq!(store.get_project(&id).await.expect("get project"), Some(p), "the first project is kept");

    assert_eq!(store.get_project(&unique("p")).await.expect("get unknown project"), None);
}

/// Versions start at 1, only a changed definition gets the next one, old versions stay
/// readable, and deployments of one project are invisible to another.
pub async fn case_deploy_versions_only_on_change(store: &dyn Store) {
    let project_id = unique("p");
    let v1 = workflow("orders-sync", "https://example.com/v1");
    let first = store.deploy_workflow(&project_id, &v1).await.expect("first deploy");
    assert_eq!((first.version, &first.workflow, first.workflow_id.as_str()), (1, &v1, "orders-sync"));
    assert_eq!(first.project_id, project_id);

    let again = store.deploy_workflow(&project_id, &v1).await.expect("identical redeploy");
    assert_eq!(again, first, "an identical redeploy returns the live deployment unchanged");

    let v2 = workflow("orders-sync", "https://example.com/v2");
    let second = store.deploy_workflow(&project_id, &v2).await.expect("changed deploy");
    assert_eq!((second.version, &second.workflow), (2, &v2));
    assert_eq!(store.get_deployed(&project_id, "orders-sync").await.expect("get deployed"), Some(second.clone()));
    assert_eq!(store.get_version(&project_id, "orders-sync", 1).await.expect("get v1"), Some(first.clone()));
    assert_eq!(store.get_version(&project_id, "orders-sync", 2).await.expect("get v2"), Some(second));
    assert_eq!(store.get_version(&project_id, "orders-sync", 3).await.expect("get v3"), None);

    // Going back to an older definition is a change too: it gets the next number.
    let third = store.deploy_workflow(&project_id, &v1).await.expect("redeploy v1 definition");
    assert_eq!((third.version, &third.workflow), (3, &v1));

    // Tenant isolation: the same workflow id in another project is another workflow.
    let other = unique("p");
    assert_eq!(store.get_deployed(&other, "orders-sync").await.expect("other project"), None);
    assert_eq!(store.get_version(&other, "orders-sync", 1).await.expect("other project v1"), None);
    assert_eq!(store.get_deployed(&project_id, "unknown").await.expect("unknown workflow"), None);
    let theirs = store.deploy_workflow(&other, &v2).await.expect("deploy in the other project");
    assert_eq!(theirs.version, 1, "versions count per project");
}

/// Concurrent deploys of different definitions never share a version number.
pub async fn case_concurrent_deploys_get_distinct_versions(store: &dyn Store) {
    let project_id = unique("p");
    let (a, b, c) = (
        workflow("race", "https://example.com/a"),
        workflow("race", "https://example.com/b"),
        workflow("race", "https://example.com/c"),
    );
    let (ra, rb, rc) = tokio::join!(
        store.deploy_workflow(&project_id, &a),
        store.deploy_workflow(&project_id, &b),
        store.deploy_workflow(&project_id, &c)
    );
    let deployments = [ra.expect("deploy a"), rb.expect("deploy b"), rc.expect("deploy c")];
    let versions: BTreeSet<u32> = deployments.iter().map(|d| d.version).collect();
    assert_eq!(versions, BTreeSet::from([1, 2, 3]), "each changed definition gets its own version");
    for d in &deployments {
        let stored = store.get_version(&project_id, "race", d.version).await.expect("get version");
        assert_eq!(stored.as_ref().map(|s| &s.workflow), Some(&d.workflow));
    }
    let live = store.get_deployed(&project_id, "race").await.expect("get deployed").expect("deployed");
    assert_eq!(live.version, 3, "the live pointer ends on the last version written");
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
    assert!(store.finish_execution(&e.id, ExecutionStatus::Failed, Some(&error), ended).await.expect("finish"));

    let later = at_ms(ended.timestamp_millis() + 10_000);
    let second = store.finish_execution(&e.id, ExecutionStatus::Succeeded, None, later).await.expect("second finish");
    assert!(!second, "only the first finish counts");
    let stored = store.get_execution(&e.id).await.expect("get").expect("exists");
    assert_eq!(stored.status, ExecutionStatus::Failed);
    assert_eq!(stored.error, Some(error));
    assert_eq!(stored.ended_at, Some(ended));
    assert_eq!(Execution { status: e.status, error: None, ended_at: None, ..stored }, e, "nothing else changed");

    let ok = execution(&unique("e"));
    store.create_execution(&ok).await.expect("create execution");
    assert!(store.finish_execution(&ok.id, ExecutionStatus::Succeeded, None, ended).await.expect("finish ok"));
    let stored = store.get_execution(&ok.id).await.expect("get").expect("exists");
    assert_eq!((stored.status, stored.error, stored.ended_at), (ExecutionStatus::Succeeded, None, Some(ended)));

    let unknown = store.finish_execution(&unique("e"), ExecutionStatus::Failed, None, ended).await;
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
    assert_eq!(store.get_step(&execution_id, "fetch", 1).await.expect("get step"), Some(first.clone()));

    let failed = StepAttempt {
        attempt: 2,
        status: StepStatus::Failed,
        output: None,
        error: Some(StepError::retryable("timed out").with_details(json!({ "after_ms": 30000 }))),
        ..first.clone()
    };
    assert_eq!(store.record_step(&execution_id, &failed).await.expect("record 2"), FirstWrite::Written);
    assert_eq!(store.get_step(&execution_id, "fetch", 2).await.expect("get 2"), Some(failed));
    assert_eq!(store.get_step(&execution_id, "fetch", 3).await.expect("get 3"), None);
    assert_eq!(store.get_step(&execution_id, "other", 1).await.expect("get other"), None);
    assert_eq!(store.get_step(&unique("e"), "fetch", 1).await.expect("get unknown"), None);
}

/// Two concurrent writers of one attempt: exactly one writes, the other reads its record.
pub async fn case_concurrent_record_step_has_one_winner(store: &dyn Store) {
    let execution_id = unique("e");
    let started = now();
    let a = attempt("fetch", 1, started, json!("from a"));
    let b = attempt("fetch", 1, started, json!("from b"));
    let (ra, rb) = tokio::join!(store.record_step(&execution_id, &a), store.record_step(&execution_id, &b));
    let stored = store.get_step(&execution_id, "fetch", 1).await.expect("get").expect("recorded");
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
    e.started_at = at_ms(1_764_000_000_007);
    e.response_deadline = Some(at_ms(1_764_000_055_999));
    store.create_execution(&e).await.expect("create");
    let ended = at_ms(1_764_000_001_001);
    store.finish_execution(&e.id, ExecutionStatus::Succeeded, None, ended).await.expect("finish");
    let stored = store.get_execution(&e.id).await.expect("get").expect("exists");
    assert_eq!(
        (stored.started_at, stored.response_deadline, stored.ended_at),
        (e.started_at, e.response_deadline, Some(ended))
    );

    let a = attempt("t", 1, at_ms(1_764_000_000_999), json!(null));
    store.record_step(&e.id, &a).await.expect("record");
    let got = store.get_step(&e.id, "t", 1).await.expect("get").expect("exists");
    assert_eq!((got.started_at, got.ended_at), (a.started_at, a.ended_at));

    let settled = SettledResponse::WorkflowEnded {
        response: HttpResponse { status: 500, headers: BTreeMap::new(), body: json!("failed") },
        at: at_ms(1_764_000_002_003),
    };
    store.settle_response(&e.id, &settled).await.expect("settle");
    assert_eq!(store.get_response(&e.id).await.expect("get"), Some(settled));
}

/// Receives from `queue` until `want` messages carrying `tag` arrived or `within` passed,
/// acking everything received (including foreign messages, which the suite does not expect).
async fn drain(queue: &dyn Queue, name: QueueName, tag: &str, want: usize, within: Duration) -> Vec<Received> {
    let deadline = Instant::now() + within;
    let mut mine = Vec::new();
    while mine.len() < want && Instant::now() < deadline {
        let wait = deadline.saturating_duration_since(Instant::now()).min(Duration::from_secs(2));
        for m in queue.receive(name, 10, wait, Duration::from_secs(60)).await.expect("receive") {
            queue.ack(name, &m.receipt).await.expect("ack");
            if m.body.contains(tag) {
                mine.push(m);
            }
        }
    }
    mine
}

fn outgoing(body: String, delay: Duration) -> Outgoing {
    Outgoing { body, delay }
}

/// A sent message is received once with count 1 and is gone once acked.
pub async fn case_send_receive_ack(queue: &dyn Queue) {
    let tag = unique("send");
    let body = json!({ "tag": tag, "execution_id": "e-1", "step": "fetch", "attempt": 1 }).to_string();
    queue.send(QueueName::Steps, outgoing(body.clone(), Duration::ZERO)).await.expect("send");
    let got = queue.receive(QueueName::Steps, 10, Duration::from_secs(5), Duration::from_secs(30)).await.expect("receive");
    assert_eq!(got.len(), 1, "one message: {got:?}");
    assert_eq!((got[0].body.as_str(), got[0].receive_count), (body.as_str(), 1));
    queue.ack(QueueName::Steps, &got[0].receipt).await.expect("ack");
    let after = queue.receive(QueueName::Steps, 10, Duration::from_secs(1), Duration::from_secs(30)).await.expect("receive");
    assert!(after.is_empty(), "an acked message is gone: {after:?}");
}

/// A delayed message is not delivered before its delay (SQS: rounded up to whole seconds),
/// and is delivered soon after.
pub async fn case_delayed_message_waits_for_its_delay(queue: &dyn Queue) {
    let tag = unique("delay");
    let delay = Duration::from_millis(1_500); // SQS: rounded up to 2 s.
    let sent = Instant::now();
    queue.send(QueueName::Steps, outgoing(tag.clone(), delay)).await.expect("send delayed");
    let mut arrived = None;
    while arrived.is_none() && sent.elapsed() < Duration::from_secs(10) {
        let batch = queue.receive(QueueName::Steps, 10, Duration::from_secs(2), Duration::from_secs(30)).await;
        // Long polling returns as soon as a message is visible: this is when it arrived.
        let at = sent.elapsed();
        for m in batch.expect("receive") {
            queue.ack(QueueName::Steps, &m.receipt).await.expect("ack");
            if m.body == tag {
                arrived = Some(at);
            }
        }
    }
    let at = arrived.expect("the delayed message arrives");
    assert!(at >= delay, "received after {at:?}, before its {delay:?} delay");
    assert!(at < delay + Duration::from_secs(5), "received only after {at:?}");
    let again = queue.receive(QueueName::Steps, 10, Duration::from_secs(1), Duration::from_secs(30)).await;
    assert!(again.expect("receive").is_empty(), "the delayed message arrives once");
}

/// A received, unacked message is invisible for its visibility timeout, then comes back
/// with receive count 2; acking with the latest receipt deletes it.
pub async fn case_unacked_message_comes_back_after_visibility(queue: &dyn Queue) {
    let tag = unique("visibility");
    queue.send(QueueName::Steps, outgoing(tag.clone(), Duration::ZERO)).await.expect("send");
    let first = queue.receive(QueueName::Steps, 1, Duration::from_secs(5), Duration::from_secs(1)).await.expect("receive");
    assert_eq!(first.len(), 1);
    assert_eq!((first[0].body.as_str(), first[0].receive_count), (tag.as_str(), 1));
    let hidden = queue.receive(QueueName::Steps, 10, Duration::ZERO, Duration::from_secs(30)).await.expect("receive");
    assert!(hidden.is_empty(), "invisible during its visibility timeout: {hidden:?}");

    let again = queue.receive(QueueName::Steps, 1, Duration::from_secs(5), Duration::from_secs(30)).await.expect("again");
    assert_eq!(again.len(), 1, "the unacked message comes back");
    assert_eq!((again[0].body.as_str(), again[0].receive_count), (tag.as_str(), 2));
    queue.ack(QueueName::Steps, &again[0].receipt).await.expect("ack with the latest receipt");
    let gone = queue.receive(QueueName::Steps, 10, Duration::from_secs(2), Duration::from_secs(30)).await.expect("gone");
    assert!(gone.is_empty(), "acked with the latest receipt, it is gone: {gone:?}");
}

/// A batch larger than SQS's 10 is sent whole and each message is received exactly once.
pub async fn case_batch_of_25_is_received_exactly_once(queue: &dyn Queue) {
    let tag = unique("batch");
    let bodies: Vec<String> = (0..25).map(|i| format!("{tag}-{i:02}")).collect();
    let messages = bodies.iter().map(|b| outgoing(b.clone(), Duration::ZERO)).collect();
    queue.send_batch(QueueName::Steps, messages).await.expect("send batch (SQS: 3 requests)");
    let got = drain(queue, QueueName::Steps, &tag, bodies.len(), Duration::from_secs(20)).await;
    let mut received: Vec<String> = got.iter().map(|m| m.body.clone()).collect();
    received.sort();
    assert_eq!(received, bodies, "every message once, none twice");
    assert!(got.iter().all(|m| m.receive_count == 1));
    let extra = queue.receive(QueueName::Steps, 10, Duration::from_secs(1), Duration::from_secs(30)).await.expect("rest");
    assert!(extra.is_empty(), "nothing is delivered twice: {extra:?}");
    queue.send_batch(QueueName::Steps, Vec::new()).await.expect("an empty batch is fine");
}

/// The steps and responses queues do not share messages.
pub async fn case_queues_are_separate(queue: &dyn Queue) {
    let tag = unique("separate");
    queue.send(QueueName::Responses, outgoing(tag.clone(), Duration::ZERO)).await.expect("send");
    let steps = queue.receive(QueueName::Steps, 10, Duration::from_secs(1), Duration::from_secs(30)).await.expect("steps");
    assert!(steps.is_empty(), "a responses message is not on the steps queue: {steps:?}");
    let got = drain(queue, QueueName::Responses, &tag, 1, Duration::from_secs(5)).await;
    assert_eq!(got.len(), 1, "the message is on the responses queue");
}

//! A message that reaches the dead-letter queue without its handler returning (every delivery
//! crashed the process or ran out of time) fails its execution with the reason, instead of
//! leaving it `running` (or `waiting`) forever. On SQLite the consumer gets such a message
//! back marked as a dead letter; on AWS the dead-letter queues have event sources of their own
//! (`template.yaml`, `tests/lambda_pipeline.rs`). And the recovery sweep of `sluice dev` resumes
//! an execution that nothing moves.

use std::path::Path;
use std::time::Duration;

use sluice_e2e::record::json_of;
use sluice_e2e::stack::{Backend, TestStack};

const LONG: Duration = Duration::from_secs(30);

/// Makes every message of `queue` look received `count` times and due now, as after that many
/// deliveries whose handler never returned.
fn exhaust_deliveries(db: &Path, queue: &str, count: u32) -> usize {
    let conn = rusqlite::Connection::open(db).expect("open the database");
    conn.busy_timeout(Duration::from_secs(5)).expect("busy timeout");
    conn.execute(
        "UPDATE messages SET receive_count = ?2, visible_at_ms = 0 WHERE queue = ?1",
        rusqlite::params![queue, count],
    )
    .expect("update the messages")
}

fn dead_letters(db: &Path) -> Vec<(String, u32)> {
    let conn = rusqlite::Connection::open(db).expect("open the database");
    let mut statement = conn.prepare("SELECT queue, receive_count FROM dead_letters ORDER BY id").expect("prepare");
    let rows = statement.query_map([], |row| Ok((row.get(0)?, row.get(1)?))).expect("query");
    rows.collect::<Result<_, _>>().expect("dead letters")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_lettered_step_message_fails_its_execution_with_the_reason() {
    let stack = TestStack::start(Backend::Sqlite, LONG).await.expect("SQLite stack");
    stack
        .deploy("id: sleepy\ntrigger: { type: request }\nsteps:\n  - { id: nap, type: delay, for: 1h }\n  - { id: f, type: function, code: \"() => 1\" }\n")
        .await;
    let response = stack.trigger("sleepy", serde_json::json!({})).await;
    assert_eq!(response.status(), 202);
    let id = json_of(response).await["executionId"].as_str().expect("executionId").to_string();
    let db = stack.sqlite_file().expect("a SQLite stack");
    // The Delay's wake message waits in the queue; make it one whose deliveries all failed.
    let mut exhausted = 0;
    for _ in 0..100 {
        if stack.execution(&id).await["status"] == "waiting" {
            exhausted = exhaust_deliveries(&db, "steps", sluice_shared::runner::MAX_RECEIVES);
            if exhausted > 0 {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(exhausted, 1, "the wake message");
    let record = stack.wait_until_ended(&id, LONG).await;
    assert_eq!(record["status"], "failed", "{record:#}");
    let message = record["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("step `nap` was given up: none of its 5 deliveries finished"), "{record:#}");
    // The handled dead letter is kept, as SQS keeps it in the dead-letter queue.
    assert_eq!(dead_letters(&db), vec![("steps".to_string(), 6)]);
}

/// The recovery sweep: an execution left `running` with no message that will move it (a bug,
/// a message lost by hand) is resumed from its first step and finishes; what was recorded is
/// not run again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_recovery_sweep_resumes_an_execution_nothing_moves() {
    use sluice_e2e::stack::StackConfig;
    use sluice_shared::record::{Execution, ExecutionStatus, StepAttempt, StepStatus, TriggerData, now};

    let sweep = Some((Duration::from_millis(100), Duration::from_millis(300)));
    let stack = TestStack::start_with(Backend::Sqlite, StackConfig { sweep, ..StackConfig::default() })
        .await
        .expect("SQLite stack");
    let deployment = stack
        .deploy("id: stranded\ntrigger: { type: request }\nsteps:\n  - { id: a, type: function, code: \"() => 'recorded'\" }\n  - { id: b, type: function, code: \"() => 2\" }\n")
        .await;
    // As if its process died after recording `a` and its message was lost.
    let id = format!("stranded-{}", uuid::Uuid::new_v4().simple());
    let started = now() - chrono::Duration::seconds(5);
    let execution = Execution {
        id: id.clone(),
        project_id: stack.project_id.clone(),
        workflow_id: "stranded".into(),
        workflow_version: deployment.version,
        user_id: "u".into(),
        status: ExecutionStatus::Running,
        started_at: started,
        ended_at: None,
        trigger: TriggerData::default(),
        response_deadline: None,
        error: None,
        test: false,
        ..Default::default()
    };
    stack.store.create_execution(&execution).await.expect("create");
    let recorded = StepAttempt {
        step: "a".into(),
        attempt: 1,
        status: StepStatus::Succeeded,
        input: serde_json::json!({}),
        output: Some(serde_json::json!("from before")),
        error: None,
        started_at: started,
        ended_at: started,
        logs: Vec::new(),
    };
    stack.store.record_step(&id, &recorded).await.expect("record");
    let record = stack.wait_until_ended(&id, LONG).await;
    assert_eq!(record["status"], "succeeded", "{record:#}");
    let steps = stack.store.list_steps(&id).await.expect("steps");
    let outputs: Vec<_> = steps.iter().map(|s| (s.step.as_str(), s.output.clone())).collect();
    assert_eq!(
        outputs,
        [("a", Some(serde_json::json!("from before"))), ("b", Some(serde_json::json!(2)))],
        "`a` was not run again"
    );
}

//! The recovery message of a start (see `sluice_shared::start`), with a recovery delay of 2 s,
//! on both backends: it resumes an execution whose first segment left no way forward, and
//! leaves alone one whose messages still carry it on (a Delay step spanning the recovery
//! time), which it would otherwise run a second time beside itself.
//!
//! On SQLite the stack runs as `sluice dev` does (every first segment inline); on DynamoDB +
//! SQS as the Lambda functions do (an asynchronous first step goes to the queue, an inline
//! segment hands off once the caller is answered). Killing the process itself is tested in
//! `cli/tests/durability.rs` and `tests/lambda_pipeline.rs`.

use std::time::Duration;

use serde_json::{Value, json};
use sluice_e2e::fake_api::FakeApi;
use sluice_e2e::record::step;
use sluice_e2e::stack::{Backend, StackConfig, TestStack};
use sluice_shared::messages::DeadlineMessage;
use sluice_shared::ports::{Outgoing, QueueName};
use sluice_shared::record::{Execution, ExecutionStatus, TriggerData, now};

const RECOVERY_DELAY: Duration = Duration::from_secs(2);
const ENDED_WITHIN: Duration = Duration::from_secs(15);

macro_rules! on_both_backends_with_a_short_recovery {
    ($($scenario:ident;)*) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    let stack = super::stack(super::Backend::Sqlite).await.expect("SQLite stack");
                    super::$scenario(&stack).await;
                }
            )*
        }
        mod aws {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    if let Some(stack) = super::stack(super::Backend::Aws).await {
                        super::$scenario(&stack).await;
                    }
                }
            )*
        }
    };
}

on_both_backends_with_a_short_recovery! {
    async_execution_still_running_at_its_recovery_time_runs_each_step_once;
    sync_execution_still_running_at_its_recovery_time_runs_each_step_once;
    execution_whose_start_died_before_its_first_step_is_resumed_by_its_recovery;
}

/// Synchronous callers wait 1 s, so the deadline message (which carries the recovery of a
/// synchronous execution) comes before the recovery time.
async fn stack(backend: Backend) -> Option<TestStack> {
    let config =
        StackConfig { response_timeout: Duration::from_secs(1), recovery_delay: RECOVERY_DELAY, ..Default::default() };
    TestStack::start_with(backend, config).await
}

/// `a`, [a Response step], a 3 s Delay (past the recovery time), then `b`, which takes 1 s (a
/// second chain, resumed at the recovery, would find it not yet recorded and run it too).
fn workflow(id: &str, api: &FakeApi, respond: bool) -> String {
    let reply = if respond { "  - { id: reply, type: response, body: { ok: true } }\n" } else { "" };
    format!(
        "id: {id}\ntrigger: {{ type: request }}\nsteps:\n  - {{ id: a, type: request, url: \"{base}/flaky/a/0\" }}\n{reply}  - {{ id: pause, type: delay, for: 3s }}\n  - {{ id: b, type: request, url: \"{base}/counted/b/1000\" }}\n",
        base = api.base_url
    )
}

/// Waits for the execution to end, then a little longer, and checks that every step ran once.
async fn assert_each_step_ran_once(stack: &TestStack, api: &FakeApi, id: &str) -> Value {
    let record = stack.wait_until_ended(id, ENDED_WITHIN).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(record["status"], "succeeded", "{record:#}");
    assert_eq!((api.calls("a"), api.calls("b")), (1, 1), "calls of `a` and `b`: {record:#}");
    for id in ["a", "pause", "b"] {
        assert_eq!(step(&record, id)["attempts"], 1, "{id}: {record:#}");
    }
    record
}

async fn async_execution_still_running_at_its_recovery_time_runs_each_step_once(stack: &TestStack) {
    let api = FakeApi::start().await;
    stack.deploy(&workflow("long-async", &api, false)).await;
    let response = stack.trigger("long-async", json!({})).await;
    assert_eq!(response.status(), 202);
    let body: Value = response.json().await.expect("JSON");
    let id = body["executionId"].as_str().expect("executionId");
    let record = assert_each_step_ran_once(stack, &api, id).await;
    let ids: Vec<&str> = record["steps"].as_array().expect("steps").iter().filter_map(|s| s["id"].as_str()).collect();
    assert_eq!(ids, ["a", "pause", "b"], "the hand-off record is not listed as a step");
}

async fn sync_execution_still_running_at_its_recovery_time_runs_each_step_once(stack: &TestStack) {
    let api = FakeApi::start().await;
    stack.deploy(&workflow("long-sync", &api, true)).await;
    let response = stack.trigger("long-sync", json!({})).await;
    assert_eq!(response.status(), 200);
    let id = response.headers()["x-sluice-execution-id"].to_str().expect("execution id").to_string();
    assert_eq!(response.json::<Value>().await.expect("JSON"), json!({ "ok": true }));
    let record = assert_each_step_ran_once(stack, &api, &id).await;
    assert_eq!(step(&record, "reply")["output"]["delivered"], true, "{record:#}");
}

async fn execution_whose_start_died_before_its_first_step_is_resumed_by_its_recovery(stack: &TestStack) {
    let api = FakeApi::start().await;
    let deployment = stack.deploy(&workflow("orphan", &api, false)).await;
    // What a start leaves when its process dies right after creating the execution: the
    // execution and its recovery message, and not a single step run, recorded or sent.
    let id = uuid::Uuid::now_v7().to_string();
    let execution = Execution {
        id: id.clone(),
        project_id: deployment.project_id.clone(),
        workflow_id: deployment.workflow_id.clone(),
        workflow_version: deployment.version,
        user_id: "user-1".into(),
        status: ExecutionStatus::Running,
        started_at: now(),
        ended_at: None,
        trigger: TriggerData { body: json!({}), ..TriggerData::default() },
        response_deadline: None,
        error: None,
        test: false,
        ..Default::default()
    };
    stack.store.create_execution(&execution).await.expect("create the execution");
    let recovery = DeadlineMessage { execution_id: id.clone(), resume: Some("a".into()), recover: true };
    let outgoing = Outgoing { body: recovery.to_json(), delay: RECOVERY_DELAY };
    stack.runtime.queue.send(QueueName::Responses, outgoing).await.expect("send the recovery message");
    assert_each_step_ran_once(stack, &api, &id).await;
}

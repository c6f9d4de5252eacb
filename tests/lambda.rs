//! The Lambda binaries through the real Lambda runtime API: each test runs a built binary under
//! the Runtime Interface Emulator (`SLUICE_RIE`) against DynamoDB and SQS on the local AWS-API
//! server (`SLUICE_AWS_ENDPOINT`), and invokes it with the events in `infra/events/`.
//! Skipped with a notice when either is unset, unless `SLUICE_REQUIRE_AWS=1`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};
use sluice_e2e::rie::{AwsResources, Rie, emulator, emulator_and_endpoint, lambda_binary};
use sluice_shared::ports::ExecutionStore;
use sluice_shared::record::{Execution, ExecutionStatus, SettledResponse, Timestamp, TriggerData, now};

fn event(name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../infra/events").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// The `executionId` in the body of record `index` of an SQS event fixture.
fn execution_id(event: &Value, index: usize) -> String {
    let body = event["Records"][index]["body"].as_str().expect("the record has a body");
    let body: Value = serde_json::from_str(body).expect("the record body is JSON");
    body["executionId"].as_str().expect("the body names an execution").to_string()
}

fn execution(id: &str, status: ExecutionStatus, response_deadline: Option<Timestamp>) -> Execution {
    let started_at = now();
    Execution {
        id: id.to_string(),
        project_id: "p".into(),
        workflow_id: "w".into(),
        workflow_version: 1,
        user_id: "u".into(),
        status,
        started_at,
        ended_at: (status != ExecutionStatus::Running).then_some(started_at),
        trigger: TriggerData::default(),
        response_deadline,
        error: None,
        test: false,
        ..Default::default()
    }
}

#[tokio::test]
async fn a_function_missing_a_variable_fails_at_init_naming_it() {
    let Some(emulator) = emulator() else {
        eprintln!("skipped: SLUICE_RIE is not set (infra/test.sh sets it)");
        return;
    };
    // Configuration is read before any AWS call: no AWS-API server is needed.
    let complete: BTreeMap<&str, &str> = [
        ("AWS_REGION", "us-east-1"),
        ("SLUICE_TABLE", "sluice"),
        ("SLUICE_STEP_QUEUE_URL", "http://127.0.0.1:9/000000000000/steps"),
        ("SLUICE_RESPONSE_QUEUE_URL", "http://127.0.0.1:9/000000000000/responses"),
    ]
    .into_iter()
    .collect();
    for (binary, missing, event_file) in [
        ("trigger", "SLUICE_TABLE", "trigger-function-url.json"),
        ("step-runner", "SLUICE_STEP_QUEUE_URL", "sqs-steps.json"),
        ("response-waiter", "SLUICE_RESPONSE_QUEUE_URL", "sqs-responses.json"),
    ] {
        let env: Vec<(String, String)> = complete
            .iter()
            .filter(|(name, _)| **name != missing)
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let rie = Rie::start(&emulator, &lambda_binary(binary), &env).await;
        let invocation = rie.invoke(&event(event_file)).await;
        assert_ne!(invocation.status, 200, "{binary} without {missing} answered: {}", invocation.body);
        let output = rie.output();
        assert!(
            output.contains(&format!("missing environment variable {missing}")),
            "{binary}: the init error does not name {missing}:\n{output}"
        );
        assert!(
            output.contains("Runtime.ExitError") || output.contains("exit status 1"),
            "{binary}: expected the runtime to exit at init:\n{output}"
        );
    }
}

#[tokio::test]
async fn step_runner_reports_exactly_the_malformed_record() {
    let Some((emulator, endpoint)) = emulator_and_endpoint() else {
        return;
    };
    let aws = AwsResources::create(&endpoint).await;
    let event = event("sqs-steps.json");
    // The first record names an execution that has already ended: handled (dropped) at once.
    let ended = execution(&execution_id(&event, 0), ExecutionStatus::Succeeded, None);
    aws.store().create_execution(&ended).await.expect("create the execution");

    let rie = Rie::start(&emulator, &lambda_binary("step-runner"), &aws.function_env()).await;
    let response = rie.invoke(&event).await.json();

    let malformed = event["Records"][1]["messageId"].clone();
    assert_eq!(response, json!({ "batchItemFailures": [{ "itemIdentifier": malformed }] }), "{}", rie.output());
}

#[tokio::test]
async fn trigger_answers_an_unknown_project_with_a_json_error() {
    let Some((emulator, endpoint)) = emulator_and_endpoint() else {
        return;
    };
    let aws = AwsResources::create(&endpoint).await;
    let rie = Rie::start(&emulator, &lambda_binary("trigger"), &aws.function_env()).await;

    let response = rie.invoke(&event("trigger-function-url.json")).await.json();

    let status = response["statusCode"].as_u64();
    assert!(matches!(status, Some(401 | 404)), "expected 401 or 404, got {response}");
    let headers = response["headers"].as_object().expect("response headers");
    let content_type = headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("content-type"))
        .and_then(|(_, value)| value.as_str());
    assert_eq!(content_type, Some("application/json"), "{response}");
    assert_eq!(response["isBase64Encoded"], json!(false), "{response}");
    let body: Value = serde_json::from_str(response["body"].as_str().expect("a text body")).expect("the body is JSON");
    assert!(body["error"]["code"].is_string() && body["error"]["message"].is_string(), "{body}");
}

#[tokio::test]
async fn response_waiter_settles_a_due_deadline_without_failures() {
    let Some((emulator, endpoint)) = emulator_and_endpoint() else {
        return;
    };
    let aws = AwsResources::create(&endpoint).await;
    let event = event("sqs-responses.json");
    let id = execution_id(&event, 0);
    let store = aws.store();
    let past_deadline = now() - Duration::from_secs(1);
    let waiting = execution(&id, ExecutionStatus::Running, Some(past_deadline));
    store.create_execution(&waiting).await.expect("create the execution");

    let rie = Rie::start(&emulator, &lambda_binary("response-waiter"), &aws.function_env()).await;
    let response = rie.invoke(&event).await.json();

    assert_eq!(response, json!({ "batchItemFailures": [] }), "{}", rie.output());
    let settled = tokio::time::timeout(Duration::from_secs(10), store.get_response(&id))
        .await
        .expect("the store answers")
        .expect("read the response");
    assert!(
        matches!(settled, Some(SettledResponse::TimedOut { .. })),
        "the deadline passed, so the caller's answer is the 542: {settled:?}"
    );
}

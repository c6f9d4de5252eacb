//! A whole execution through the Lambda binaries: the trigger, the step runner and the
//! response waiter, each under the Runtime Interface Emulator, on DynamoDB + SQS served by
//! the local AWS-API server. The test plays the part of the Lambda service: it receives from
//! the SQS queues and invokes the consumers with SQS events, as event source mappings do.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sluice_e2e::fake_api::FakeApi;
use sluice_e2e::rie::{AwsResources, Rie, emulator_and_endpoint, lambda_binary};
use sluice_shared::adapters::sqs::SqsQueue;
use sluice_shared::auth;
use sluice_shared::model::load;
use sluice_shared::ports::{ConsumeQueue, ExecutionStore, Project, ProjectStore, QueueName, WorkflowStore};
use sluice_shared::record::{ExecutionStatus, now};

struct Pipeline {
    resources: AwsResources,
    queue: SqsQueue,
    trigger: Rie,
    runner: Rie,
    private_pem: String,
    project_id: String,
}

impl Pipeline {
    /// None (the test skips) when the emulator or the local AWS-API server is not configured.
    async fn start(workflow_yaml: &str) -> Option<Pipeline> {
        let (emulator, endpoint) = emulator_and_endpoint()?;
        let resources = AwsResources::create(&endpoint).await;
        let mut env = resources.function_env();
        for (key, value) in &mut env {
            if key == "SLUICE_ALLOW_PRIVATE_NETWORK" {
                // The fake third-party API listens on loopback.
                *value = "true".into();
            }
        }
        let store = resources.store();
        let keys = auth::generate_signing_key().expect("key");
        let project_id = format!("p{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
        let project = Project {
            id: project_id.clone(),
            signing_public_key_pem: keys.public_pem,
            api_key_sha256: auth::hash_api_key("unused"),
            created_at: now(),
        };
        store.create_project(&project).await.expect("project");
        let workflow = load::load_str("pipeline.yaml", workflow_yaml).expect("valid workflow");
        store.deploy_workflow(&project_id, &workflow).await.expect("deploy");
        let queue = SqsQueue::new(
            aws_sdk_sqs::Client::new(&resources.sdk),
            resources.steps_url.clone(),
            resources.responses_url.clone(),
        );
        let trigger = Rie::start(&emulator, &lambda_binary("trigger"), &env).await;
        let runner = Rie::start(&emulator, &lambda_binary("step-runner"), &env).await;
        Some(Pipeline { resources, queue, trigger, runner, private_pem: keys.private_pem, project_id })
    }

    /// A Function URL event for the trigger of `workflow_id`.
    fn trigger_event(&self, workflow_id: &str, body: &Value) -> Value {
        let token = auth::issue_user_token(&self.private_pem, "user-7", Duration::from_secs(300)).expect("token");
        let path = format!("/projects/{}/sdk/triggers/{workflow_id}", self.project_id);
        json!({
            "version": "2.0", "routeKey": "$default", "rawPath": path, "rawQueryString": "source=lambda",
            "headers": { "authorization": format!("Bearer {token}"), "content-type": "application/json",
                         "host": "example.lambda-url.us-east-1.on.aws" },
            "queryStringParameters": { "source": "lambda" },
            "requestContext": {
                "accountId": "anonymous", "apiId": "example", "domainName": "example.lambda-url.us-east-1.on.aws",
                "domainPrefix": "example",
                "http": { "method": "POST", "path": path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1", "userAgent": "test" },
                "requestId": uuid::Uuid::new_v4().to_string(), "routeKey": "$default", "stage": "$default",
                "time": "23/Nov/2026:10:00:00 +0000", "timeEpoch": 1_795_000_000_000_u64
            },
            "body": body.to_string(), "isBase64Encoded": false
        })
    }

    /// Receives step messages and hands them to the step runner as SQS events until, after
    /// at least one message, the queue stays empty for a while; returns how many were handled.
    async fn drain_steps(&self, within: Duration) -> usize {
        let deadline = Instant::now() + within;
        let mut handled = 0;
        let mut idle_rounds = 0;
        while Instant::now() < deadline && (handled == 0 || idle_rounds < 2) {
            let messages = self
                .queue
                .receive(QueueName::Steps, 10, Duration::from_secs(1), Duration::from_secs(30))
                .await
                .expect("receive");
            if messages.is_empty() {
                idle_rounds += 1;
                continue;
            }
            idle_rounds = 0;
            let records: Vec<Value> = messages
                .iter()
                .map(|m| {
                    json!({
                        "messageId": uuid::Uuid::new_v4().to_string(), "receiptHandle": m.receipt, "body": m.body,
                        "attributes": { "ApproximateReceiveCount": m.receive_count.to_string() },
                        "messageAttributes": {}, "eventSource": "aws:sqs",
                        "eventSourceARN": "arn:aws:sqs:us-east-1:000000000000:steps", "awsRegion": "us-east-1"
                    })
                })
                .collect();
            let answer = self.runner.invoke(&json!({ "Records": records })).await.json();
            assert_eq!(answer["batchItemFailures"], json!([]), "step runner failed: {}", self.runner.output());
            for message in &messages {
                self.queue.ack(QueueName::Steps, &message.receipt).await.expect("ack");
            }
            handled += messages.len();
        }
        handled
    }
}

fn workflow(api: &FakeApi, with_response: bool) -> String {
    let reply = if with_response {
        "  - id: reply\n    type: response\n    status: 201\n    body: { total: \"{{steps.search.output.body.total}}\", user: \"{{user.id}}\" }\n"
    } else {
        ""
    };
    format!(
        "id: lookup\ntrigger: {{ type: request }}\nsteps:\n  - id: search\n    type: request\n    url: \"{}/contacts\"\n    query: {{ email: \"{{{{trigger.body.email}}}}\" }}\n{reply}",
        api.base_url
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_execution_runs_through_trigger_and_step_runner_lambdas() {
    let api = FakeApi::start().await;
    let Some(pipeline) = Pipeline::start(&workflow(&api, false)).await else { return };
    let answer = pipeline
        .trigger
        .invoke(&pipeline.trigger_event("lookup", &json!({ "email": "alice@example.com" })))
        .await
        .json();
    assert_eq!(answer["statusCode"], 202, "{answer}");
    let body: Value = serde_json::from_str(answer["body"].as_str().expect("body")).expect("JSON body");
    let id = body["executionId"].as_str().expect("executionId");

    assert_eq!(pipeline.drain_steps(Duration::from_secs(60)).await, 1);
    let store = pipeline.resources.store();
    let execution = store.get_execution(id).await.expect("get").expect("execution");
    assert_eq!(execution.status, ExecutionStatus::Succeeded, "{execution:?}");
    assert_eq!(execution.user_id, "user-7");
    assert_eq!(execution.trigger.query.get("source").map(String::as_str), Some("lambda"));
    let steps = store.list_steps(id).await.expect("steps");
    assert_eq!(steps.len(), 1);
    assert_eq!(steps[0].output.as_ref().map(|o| o["body"]["total"].clone()), Some(json!(1)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_execution_is_answered_by_the_trigger_lambda_without_a_step_message() {
    let api = FakeApi::start().await;
    let Some(pipeline) = Pipeline::start(&workflow(&api, true)).await else { return };
    let event = pipeline.trigger_event("lookup", &json!({ "email": "bob@example.com" }));
    // The trigger runs the first segment itself: the Response step answers from there, with
    // no queue round trip, and the execution ends without any step message.
    let answer = pipeline.trigger.invoke(&event).await.json();
    assert_eq!(answer["statusCode"], 201, "{answer}\n{}", pipeline.trigger.output());
    let body: Value = serde_json::from_str(answer["body"].as_str().expect("body")).expect("JSON body");
    assert_eq!(body, json!({ "total": 1, "user": "user-7" }));
    let headers = &answer["headers"];
    let id = headers["x-sluice-execution-id"].as_str().expect("execution id header");
    let execution = pipeline.resources.store().get_execution(id).await.expect("get").expect("execution");
    assert_eq!(execution.status, ExecutionStatus::Succeeded, "{execution:?}");
    assert_eq!(pipeline.drain_steps(Duration::from_secs(3)).await, 0, "no step message was sent");
}

//! A whole execution through the Lambda binaries: the trigger, the step runner and the
//! response waiter, each under the Runtime Interface Emulator, on DynamoDB + SQS served by
//! the local AWS-API server. The test plays the part of the Lambda service: it receives from
//! the SQS queues and invokes the consumers with SQS events, as event source mappings do. A
//! function can be killed mid-invocation, as a crash would end it.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sluice_e2e::fake_api::FakeApi;
use sluice_e2e::rie::{AwsResources, DEAD_LETTER_QUEUE_ARN, Rie, emulator_and_endpoint, lambda_binary};
use sluice_shared::adapters::sqs::SqsQueue;
use sluice_shared::auth;
use sluice_shared::messages::StepMessage;
use sluice_shared::model::load;
use sluice_shared::ports::{ConsumeQueue, ExecutionStore, Project, ProjectStore, QueueName, WorkflowStore};
use sluice_shared::record::{Execution, ExecutionStatus, SettledResponse, now};

/// The project API key of the pipeline's project.
const API_KEY: &str = "sk_pipeline";

struct Pipeline {
    resources: AwsResources,
    queue: SqsQueue,
    trigger: Rie,
    runner: Rie,
    waiter: Rie,
    emulator: PathBuf,
    env: Vec<(String, String)>,
    private_pem: String,
    project_id: String,
}

impl Pipeline {
    /// None (the test skips) when the emulator or the local AWS-API server is not configured.
    async fn start(workflow_yaml: &str) -> Option<Pipeline> {
        Self::start_with(workflow_yaml, &[]).await
    }

    /// A pipeline whose functions get `overrides` on top of the deployed environment.
    async fn start_with(workflow_yaml: &str, overrides: &[(&str, &str)]) -> Option<Pipeline> {
        let (emulator, endpoint) = emulator_and_endpoint()?;
        let resources = AwsResources::create(&endpoint).await;
        let mut env = resources.function_env();
        // The fake third-party API listens on loopback.
        let overrides = [("SLUICE_ALLOW_PRIVATE_NETWORK", "true")].iter().chain(overrides);
        for (name, new) in overrides {
            let (_, value) = env.iter_mut().find(|(key, _)| key == name).expect("a variable the template sets");
            *value = new.to_string();
        }
        let store = resources.store();
        let keys = auth::generate_signing_key().expect("key");
        let project_id = format!("p{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
        let project = Project {
            id: project_id.clone(),
            signing_public_key_pem: keys.public_pem,
            api_key_sha256: auth::hash_api_key(API_KEY),
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
        let waiter = Rie::start(&emulator, &lambda_binary("response-waiter"), &env).await;
        let private_pem = keys.private_pem;
        Some(Pipeline { resources, queue, trigger, runner, waiter, emulator, env, private_pem, project_id })
    }

    /// A new instance of the function `binary` (a cold start), with the pipeline's environment.
    async fn start_function(&self, binary: &str) -> Rie {
        Rie::start(&self.emulator, &lambda_binary(binary), &self.env).await
    }

    /// A Function URL event for the trigger of `workflow_id`.
    fn trigger_event(&self, workflow_id: &str, body: &Value) -> Value {
        let token = auth::issue_user_token(&self.private_pem, "user-7", Duration::from_secs(300)).expect("token");
        let path = format!("/projects/{}/sdk/triggers/{workflow_id}", self.project_id);
        url_event("POST", &path, "source=lambda", &token, Some(body))
    }

    /// A Function URL event reading the execution record of `id` with the project API key.
    fn execution_event(&self, id: &str) -> Value {
        let path = format!("/projects/{}/executions/{id}", self.project_id);
        url_event("GET", &path, "", API_KEY, None)
    }

    /// Receives step messages and hands them to the step runner as SQS events until, after
    /// at least one message, the queue stays empty for a while; returns how many were handled.
    async fn drain_steps(&self, within: Duration) -> usize {
        let deadline = Instant::now() + within;
        let mut handled = 0;
        let mut idle_rounds = 0;
        while Instant::now() < deadline && (handled == 0 || idle_rounds < 2) {
            match self.deliver(QueueName::Steps, Duration::from_secs(1)).await {
                0 => idle_rounds += 1,
                n => {
                    idle_rounds = 0;
                    handled += n;
                }
            }
        }
        handled
    }

    /// Hands messages of both queues to their consumers (the response waiter, the step
    /// runner) until execution `id` has ended; returns it.
    async fn run_until_ended(&self, id: &str, within: Duration) -> Execution {
        let deadline = Instant::now() + within;
        let store = self.resources.store();
        loop {
            let execution = store.get_execution(id).await.expect("get").expect("execution");
            if execution.status.is_ended() {
                return execution;
            }
            assert!(Instant::now() < deadline, "execution {id} has not ended within {within:?}: {execution:?}");
            let handled = self.deliver(QueueName::Responses, Duration::ZERO).await
                + self.deliver(QueueName::Steps, Duration::ZERO).await;
            if handled == 0 {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }

    /// Receives one batch from `queue` (waiting up to `wait`) and invokes its consumer with
    /// it as an SQS event, as an event source mapping does; acknowledges the batch (the
    /// consumers must report no failures) and returns how many messages it held.
    async fn deliver(&self, queue: QueueName, wait: Duration) -> usize {
        let (consumer, arn) = match queue {
            QueueName::Steps => (&self.runner, "arn:aws:sqs:us-east-1:000000000000:steps"),
            QueueName::Responses => (&self.waiter, "arn:aws:sqs:us-east-1:000000000000:responses"),
        };
        let messages = self.queue.receive(queue, 10, wait, Duration::from_secs(30)).await.expect("receive");
        if messages.is_empty() {
            return 0;
        }
        let records: Vec<Value> = messages
            .iter()
            .map(|m| {
                json!({
                    "messageId": uuid::Uuid::new_v4().to_string(), "receiptHandle": m.receipt, "body": m.body,
                    "attributes": { "ApproximateReceiveCount": m.receive_count.to_string() },
                    "messageAttributes": {}, "eventSource": "aws:sqs",
                    "eventSourceARN": arn, "awsRegion": "us-east-1"
                })
            })
            .collect();
        let answer = consumer.invoke(&json!({ "Records": records })).await.json();
        assert_eq!(answer["batchItemFailures"], json!([]), "{} failed: {}", queue.as_str(), consumer.output());
        for message in &messages {
            self.queue.ack(queue, &message.receipt).await.expect("ack");
        }
        messages.len()
    }
}

/// A Function URL event (payload format 2.0) with `Authorization: Bearer <bearer>`.
fn url_event(method: &str, path: &str, query: &str, bearer: &str, body: Option<&Value>) -> Value {
    let parameters: serde_json::Map<String, Value> = query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(name, value)| (name.to_string(), json!(value)))
        .collect();
    json!({
        "version": "2.0", "routeKey": "$default", "rawPath": path, "rawQueryString": query,
        "headers": { "authorization": format!("Bearer {bearer}"), "content-type": "application/json",
                     "host": "example.lambda-url.us-east-1.on.aws" },
        "queryStringParameters": parameters,
        "requestContext": {
            "accountId": "anonymous", "apiId": "example", "domainName": "example.lambda-url.us-east-1.on.aws",
            "domainPrefix": "example",
            "http": { "method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1", "userAgent": "test" },
            "requestId": uuid::Uuid::new_v4().to_string(), "routeKey": "$default", "stage": "$default",
            "time": "23/Nov/2026:10:00:00 +0000", "timeEpoch": 1_795_000_000_000_u64
        },
        "body": body.map(Value::to_string), "isBase64Encoded": false
    })
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

/// `a` → `slow` (whose first call never answers) → `c`, then a Response step.
fn killed_workflow(api: &FakeApi) -> String {
    let base = &api.base_url;
    format!(
        "id: killed\ntrigger: {{ type: request }}\nsteps:\n  - {{ id: a, type: request, url: \"{base}/flaky/a/0\" }}\n  - {{ id: slow, type: request, url: \"{base}/hang-once/slow\" }}\n  - {{ id: c, type: request, url: \"{base}/flaky/c/0\" }}\n  - {{ id: reply, type: response, status: 201, body: {{ c: \"{{{{steps.c.output.body.call}}}}\" }} }}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_execution_whose_trigger_is_killed_mid_segment_finishes_from_its_last_recorded_step() {
    let api = FakeApi::start().await;
    // The deadline 2 s after the start, the recovery 4 s after it (90 s when deployed).
    let overrides = [("SLUICE_RESPONSE_TIMEOUT_SECONDS", "2"), ("SLUICE_RECOVERY_DELAY_SECONDS", "4")];
    let Some(pipeline) = Pipeline::start_with(&killed_workflow(&api), &overrides).await else { return };
    let event = pipeline.trigger_event("killed", &json!({}));
    let started = Instant::now();
    // The trigger runs the segment itself: `a` is recorded, then it waits on `slow` and is
    // killed there, emulator and function at once. The caller loses its connection.
    let (invoked, ()) = tokio::join!(pipeline.trigger.try_invoke(&event), async {
        let deadline = Instant::now() + Duration::from_secs(20);
        while api.calls("slow") == 0 {
            assert!(Instant::now() < deadline, "the segment never reached `slow`:\n{}", pipeline.trigger.output());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        pipeline.trigger.kill();
    });
    assert!(invoked.is_err(), "the caller lost its connection without an answer: {invoked:?}");
    let keys = api.idempotency_keys();
    let id = keys.first().and_then(|key| key.strip_suffix(":a")).expect("the idempotency key of `a`").to_string();

    // The deadline message settles 542 and becomes the recovery message; at the recovery the
    // waiter sends the first step, and the step runner walks the recorded `a` to `slow`.
    let execution = pipeline.run_until_ended(&id, Duration::from_secs(20)).await;
    eprintln!("ended {:?} after the start", started.elapsed());
    assert_eq!(execution.status, ExecutionStatus::Succeeded, "{execution:?}\n{}", pipeline.runner.output());
    assert_eq!((api.calls("a"), api.calls("slow"), api.calls("c")), (1, 2, 1), "calls: `a` was not run again");
    assert_eq!(keys.len(), 2, "before the kill: `a` and the first call of `slow`: {keys:?}");
    assert_eq!(
        api.idempotency_keys(),
        [format!("{id}:a"), format!("{id}:slow"), format!("{id}:slow"), format!("{id}:c")],
        "the calls, in order"
    );
    let store = pipeline.resources.store();
    let steps = store.list_steps(&id).await.expect("steps");
    let recorded: Vec<(&str, u32)> = steps.iter().map(|s| (s.step.as_str(), s.attempt)).collect();
    assert_eq!(recorded.len(), 4, "{recorded:?}");
    for step in ["a", "slow", "c", "reply"] {
        assert!(recorded.contains(&(step, 1)), "{step} recorded once: {recorded:?}");
    }
    assert!(
        matches!(store.get_response(&id).await.expect("response"), Some(SettledResponse::TimedOut { .. })),
        "the deadline passed while the trigger was dead: the caller was owed the 542"
    );

    // The caller that lost its connection reads the outcome from the execution record, here
    // through a new instance of the trigger function.
    let trigger = pipeline.start_function("trigger").await;
    let answer = trigger.invoke(&pipeline.execution_event(&id)).await.json();
    assert_eq!(answer["statusCode"], 200, "{answer}");
    let record: Value = serde_json::from_str(answer["body"].as_str().expect("body")).expect("JSON body");
    assert_eq!(record["status"], "succeeded", "{record:#}");
    assert_eq!(record["response"]["status"], 542, "{record:#}");
    let listed: Vec<(&str, &str, u64)> = record["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|s| {
            (s["id"].as_str().unwrap_or(""), s["status"].as_str().unwrap_or(""), s["attempts"].as_u64().unwrap_or(0))
        })
        .collect();
    let expected = ["a", "slow", "c", "reply"].map(|step| (step, "succeeded", 1_u64));
    assert_eq!(listed, expected, "{record:#}");
    assert_eq!(record["steps"][3]["output"]["delivered"], false, "the Response step came too late: {record:#}");
}

/// A step message that reaches the dead-letter queue (no delivery finished) is handed to the
/// step runner by the dead-letter queue's own event source (`template.yaml`), which fails its
/// execution with the reason instead of leaving it waiting or running forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_from_the_dead_letter_queue_fails_its_execution() {
    let workflow = "id: nap\ntrigger: { type: request }\nsteps:\n  - { id: nap, type: delay, for: 1h }\n  - { id: f, type: function, code: \"() => 1\" }\n";
    let Some(pipeline) = Pipeline::start(workflow).await else { return };
    let answer = pipeline.trigger.invoke(&pipeline.trigger_event("nap", &json!({}))).await.json();
    assert_eq!(answer["statusCode"], 202, "{answer}");
    let body: Value = serde_json::from_str(answer["body"].as_str().expect("body")).expect("JSON body");
    let id = body["executionId"].as_str().expect("executionId").to_string();
    assert_eq!(pipeline.drain_steps(Duration::from_secs(60)).await, 1);
    let store = pipeline.resources.store();
    let execution = store.get_execution(&id).await.expect("get").expect("execution");
    assert_eq!(execution.status, ExecutionStatus::Waiting, "{execution:?}");

    let record = json!({
        "messageId": "dead-1", "receiptHandle": "r", "body": StepMessage::first(&id, "nap").to_json(),
        "attributes": { "ApproximateReceiveCount": "1" }, "messageAttributes": {}, "eventSource": "aws:sqs",
        "eventSourceARN": DEAD_LETTER_QUEUE_ARN, "awsRegion": "us-east-1"
    });
    let answer = pipeline.runner.invoke(&json!({ "Records": [record] })).await.json();
    assert_eq!(answer["batchItemFailures"], json!([]), "{}", pipeline.runner.output());
    let execution = store.get_execution(&id).await.expect("get").expect("execution");
    assert_eq!(execution.status, ExecutionStatus::Failed, "{execution:?}");
    let message = execution.error.map(|e| e.message).unwrap_or_default();
    assert!(message.contains("step `nap` was given up: none of its 5 deliveries finished"), "{message}");
}

/// The recovery sweep, as EventBridge's schedule invokes it (`template.yaml`,
/// `RecoverySweep`): an execution nothing moves (created, no message, nothing due) is resumed
/// and ends; one waiting on a Delay an hour away is left alone and not listed again before
/// then; executions that ended leave the index.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_recovery_sweep_resumes_what_nothing_moves_and_leaves_what_waits() {
    let napping = "id: nap\ntrigger: { type: request }\nsteps:\n  - { id: nap, type: delay, for: 1h }\n  - { id: f, type: function, code: \"() => 1\" }\n";
    // Nothing due for 2 s counts as stuck here (an hour when deployed).
    let overrides = [("SLUICE_STUCK_AFTER_SECONDS", "2")];
    let Some(pipeline) = Pipeline::start_with(napping, &overrides).await else { return };
    let store = pipeline.resources.store();
    let answer = pipeline.trigger.invoke(&pipeline.trigger_event("nap", &json!({}))).await.json();
    assert_eq!(answer["statusCode"], 202, "{answer}");
    let body: Value = serde_json::from_str(answer["body"].as_str().expect("body")).expect("JSON body");
    let waiting = body["executionId"].as_str().expect("executionId").to_string();
    assert_eq!(pipeline.drain_steps(Duration::from_secs(60)).await, 1);

    // What a start leaves when it dies right after creating the execution, with no message.
    let quick = load::load_str(
        "quick.yaml",
        "id: quick\ntrigger: { type: request }\nsteps:\n  - { id: f, type: function, code: \"() => 41 + 1\" }\n",
    )
    .expect("valid workflow");
    let deployment = store.deploy_workflow(&pipeline.project_id, &quick).await.expect("deploy");
    let stuck = uuid::Uuid::now_v7().to_string();
    let execution = Execution {
        id: stuck.clone(),
        project_id: pipeline.project_id.clone(),
        workflow_id: deployment.workflow_id.clone(),
        workflow_version: deployment.version,
        user_id: "user-7".into(),
        status: ExecutionStatus::Running,
        started_at: now(),
        ended_at: None,
        trigger: sluice_shared::record::TriggerData::default(),
        response_deadline: None,
        error: None,
        test: false,
        ..Default::default()
    };
    store.create_execution(&execution).await.expect("create the execution");
    // Both are past the bound only once 2 s have passed since they started.
    tokio::time::sleep(Duration::from_millis(2_200)).await;

    let sweep = json!({ "sluice": "recovery-sweep" });
    let report = pipeline.runner.invoke(&sweep).await.json();
    assert_eq!(
        report,
        json!({ "lookedAt": 2, "resumed": 1, "notYet": 1, "ended": 0, "errors": 0 }),
        "{}",
        pipeline.runner.output()
    );
    assert_eq!(pipeline.drain_steps(Duration::from_secs(60)).await, 1, "the resumed execution's first step");
    let ended = store.get_execution(&stuck).await.expect("get").expect("execution");
    assert_eq!(ended.status, ExecutionStatus::Succeeded, "{ended:?}");
    let steps = store.list_steps(&stuck).await.expect("steps");
    assert_eq!(steps.iter().map(|s| s.output.clone()).collect::<Vec<_>>(), [Some(json!(42))]);
    let napping = store.get_execution(&waiting).await.expect("get").expect("execution");
    assert_eq!(napping.status, ExecutionStatus::Waiting, "the delay is an hour away: {napping:?}");

    // The ended one left the index; the waiting one is not due before its wake.
    let report = pipeline.runner.invoke(&sweep).await.json();
    assert_eq!(report, json!({ "lookedAt": 0, "resumed": 0, "notYet": 0, "ended": 0, "errors": 0 }));
    assert!(pipeline.drain_steps(Duration::from_secs(2)).await == 0, "nothing was sent for the waiting execution");
}

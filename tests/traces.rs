//! Traces from the Lambda binaries under the Runtime Interface Emulator (DynamoDB + SQS on the
//! local AWS-API server), with `OTEL_EXPORTER_OTLP_ENDPOINT` pointing at a local OTLP receiver.
//! A synchronous execution runs inline in the trigger and ends there: its root, step and
//! request spans reach the receiver before the invocation returns (the function flushes before
//! answering), with the FaaS attributes; its logs are JSON lines. An asynchronous execution's
//! step runs in the step runner, which ends it: the spans it exports carry the trace and root
//! derived from the execution id, as the trigger's would. Skipped with a notice when the
//! emulator or the server is not configured, unless `SLUICE_REQUIRE_AWS=1`. `sluice dev`'s
//! traces are tested in `cli/tests/traces.rs`.

use std::time::Duration;

use serde_json::{Value, json};
use sluice_e2e::fake_api::FakeApi;
use sluice_e2e::otlp::Receiver;
use sluice_e2e::rie::{AwsResources, Rie, emulator_and_endpoint, lambda_binary};
use sluice_shared::adapters::sqs::SqsQueue;
use sluice_shared::auth;
use sluice_shared::model::load;
use sluice_shared::ports::{ConsumeQueue, Project, ProjectStore, QueueName, WorkflowStore};
use sluice_shared::record::now;

const SECRET: &str = "s3cret-in-the-query";

/// A Function URL event (payload format 2.0) POSTing `body` to `path` with a bearer token.
fn url_event(path: &str, bearer: &str, body: &Value) -> Value {
    json!({
        "version": "2.0", "routeKey": "$default", "rawPath": path, "rawQueryString": "",
        "headers": { "authorization": format!("Bearer {bearer}"), "content-type": "application/json",
                     "host": "example.lambda-url.us-east-1.on.aws" },
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

/// A project with `yaml` deployed on fresh AWS resources, and the functions' environment
/// exporting to `receiver`.
struct Setup {
    resources: AwsResources,
    env: Vec<(String, String)>,
    private_pem: String,
    project_id: String,
}

impl Setup {
    async fn new(endpoint: &str, receiver: &Receiver, yaml: &str) -> Setup {
        let resources = AwsResources::create(endpoint).await;
        let store = resources.store();
        let keys = auth::generate_signing_key().expect("key");
        let project_id = format!("p{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
        let project = Project {
            id: project_id.clone(),
            signing_public_key_pem: keys.public_pem,
            api_key_sha256: auth::hash_api_key("sk_traces"),
            created_at: now(),
        };
        store.create_project(&project).await.expect("project");
        let workflow = load::load_str("traced.yaml", yaml).expect("valid workflow");
        store.deploy_workflow(&project_id, &workflow).await.expect("deploy");
        let mut env = resources.function_env();
        for (name, value) in env.iter_mut() {
            if name == "SLUICE_ALLOW_PRIVATE_NETWORK" {
                *value = "true".into();
            }
        }
        env.push(("OTEL_EXPORTER_OTLP_ENDPOINT".into(), format!("http://127.0.0.1:{}", receiver.port)));
        Setup { resources, env, private_pem: keys.private_pem, project_id }
    }

    /// A trigger event of workflow `traced` for user-7.
    fn trigger_event(&self) -> Value {
        let token = auth::issue_user_token(&self.private_pem, "user-7", Duration::from_secs(300)).expect("token");
        url_event(&format!("/projects/{}/sdk/triggers/traced", self.project_id), &token, &json!({}))
    }
}

fn workflow(api: &FakeApi, respond: bool) -> String {
    let reply =
        if respond { "  - id: reply\n    type: response\n    body: { id: \"{{execution.id}}\" }\n" } else { "" };
    format!(
        "id: traced\ntrigger: {{ type: request }}\nsteps:\n  - id: search\n    type: request\n    url: \"{}/contacts?key={SECRET}\"\n{reply}",
        api.base_url
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_trigger_function_exports_its_spans_with_faas_attributes_before_answering() {
    let Some((emulator, endpoint)) = emulator_and_endpoint() else { return };
    let api = FakeApi::start().await;
    let receiver = Receiver::start();
    let setup = Setup::new(&endpoint, &receiver, &workflow(&api, true)).await;
    let trigger = Rie::start(&emulator, &lambda_binary("trigger"), &setup.env).await;

    let mut ids = Vec::new();
    for _ in 0..2 {
        let answer = trigger.invoke(&setup.trigger_event()).await.json();
        assert_eq!(answer["statusCode"], 200, "{answer}\n{}", trigger.output());
        let body: Value = serde_json::from_str(answer["body"].as_str().expect("body")).expect("JSON body");
        ids.push(body["id"].as_str().expect("the execution id").to_string());
    }
    // Flushed before each invocation returned: everything is there already (a short grace for
    // the receiver's thread).
    let spans = receiver.wait_for(Duration::from_secs(2), |spans| spans.len() >= 8);
    let names: Vec<&str> = spans.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(spans.len(), 8, "root, two steps and one request per execution: {names:?}\n{}", trigger.output());

    let mut coldstarts = Vec::new();
    for id in &ids {
        let trace_id = id.replace('-', "");
        let mine: Vec<_> = spans.iter().filter(|s| s.trace_id == trace_id).collect();
        assert_eq!(mine.len(), 4, "{names:?}");
        let root = mine.iter().find(|s| s.name == "execution traced").expect("a root span");
        assert_eq!(root.span_id, sluice_shared::telemetry::root_span_id(id).to_string());
        assert_eq!(root.attr("sluice.execution.status"), Some("succeeded"));
        let request = mine.iter().find(|s| s.attr("http.request.method") == Some("GET")).expect("a request span");
        assert_eq!(request.attr("url.full"), Some(format!("{}/contacts", api.base_url).as_str()));
        let search = mine.iter().find(|s| s.name == "step search").expect("the search attempt");
        assert_eq!(request.parent, search.span_id);
        assert_eq!(search.parent, root.span_id);
        for span in &mine {
            assert_eq!(span.attr("faas.trigger"), Some("http"), "{span:#?}");
            assert!(span.attr("faas.invocation_id").is_some_and(|id| !id.is_empty()), "{span:#?}");
            assert_eq!(span.resource.get("faas.name").map(String::as_str), Some("trigger"));
            assert_eq!(span.resource.get("cloud.provider").map(String::as_str), Some("aws"));
            assert_eq!(span.resource.get("cloud.region").map(String::as_str), Some("us-east-1"));
            assert_eq!(span.resource.get("service.name").map(String::as_str), Some("sluice"));
        }
        coldstarts.push(root.attr("faas.coldstart").map(str::to_string));
    }
    assert_eq!(coldstarts, [Some("true".to_string()), Some("false".to_string())]);
    assert!(!format!("{spans:?}").contains(SECRET), "a span holds the query string");

    // The function's logs: JSON lines, one `step ended` per attempt.
    let output = trigger.output();
    let ended: Vec<Value> = output
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|line| line["fields"]["message"] == "step ended")
        .collect();
    assert_eq!(ended.len(), 4, "two attempts per execution, one JSON line each:\n{output}");
    assert!(ended.iter().all(|line| line["level"] == "INFO" && line["fields"]["execution"].is_string()));
    assert!(!output.contains("\x1b["), "colour codes in the function's log:\n{output}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_execution_run_by_the_step_runner_is_one_trace_across_functions() {
    let Some((emulator, endpoint)) = emulator_and_endpoint() else { return };
    let api = FakeApi::start().await;
    let receiver = Receiver::start();
    let setup = Setup::new(&endpoint, &receiver, &workflow(&api, false)).await;
    let trigger = Rie::start(&emulator, &lambda_binary("trigger"), &setup.env).await;
    let runner = Rie::start(&emulator, &lambda_binary("step-runner"), &setup.env).await;

    // Asynchronous on Lambda: the trigger answers 202 and its first step goes to the queue.
    let answer = trigger.invoke(&setup.trigger_event()).await.json();
    assert_eq!(answer["statusCode"], 202, "{answer}\n{}", trigger.output());
    let body: Value = serde_json::from_str(answer["body"].as_str().expect("body")).expect("JSON body");
    let id = body["executionId"].as_str().expect("executionId").to_string();
    let queue = SqsQueue::new(
        aws_sdk_sqs::Client::new(&setup.resources.sdk),
        setup.resources.steps_url.clone(),
        setup.resources.responses_url.clone(),
    );
    let messages = queue.receive(QueueName::Steps, 10, Duration::from_secs(5), Duration::from_secs(30)).await;
    let messages = messages.expect("receive the step message");
    assert_eq!(messages.len(), 1);
    let records: Vec<Value> = messages
        .iter()
        .map(|m| {
            json!({
                "messageId": uuid::Uuid::new_v4().to_string(), "receiptHandle": m.receipt, "body": m.body,
                "attributes": { "ApproximateReceiveCount": "1" }, "messageAttributes": {},
                "eventSource": "aws:sqs", "eventSourceARN": "arn:aws:sqs:us-east-1:000000000000:steps",
                "awsRegion": "us-east-1"
            })
        })
        .collect();
    let handled = runner.invoke(&json!({ "Records": records })).await.json();
    assert_eq!(handled["batchItemFailures"], json!([]), "{}", runner.output());

    let spans = receiver.wait_for(Duration::from_secs(2), |spans| spans.len() >= 3);
    let names: Vec<&str> = spans.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(spans.len(), 3, "root, step, request: {names:?}\n{}", runner.output());
    assert!(spans.iter().all(|s| s.trace_id == id.replace('-', "")), "{spans:#?}");
    let root = spans.iter().find(|s| s.name == "execution traced").expect("the root, exported by the step runner");
    let step = spans.iter().find(|s| s.name == "step search").expect("the step attempt");
    let request = spans.iter().find(|s| s.name == "GET").expect("the request");
    assert_eq!((step.parent.as_str(), request.parent.as_str()), (root.span_id.as_str(), step.span_id.as_str()));
    for span in &spans {
        assert_eq!(span.attr("faas.trigger"), Some("pubsub"), "{span:#?}");
        assert_eq!(span.resource.get("faas.name").map(String::as_str), Some("step-runner"));
    }
    assert_eq!(root.attr("sluice.execution.status"), Some("succeeded"));
    assert_eq!(root.attr("sluice.user.id"), Some("user-7"));
}

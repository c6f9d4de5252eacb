//! Traces from the Lambda binaries: the trigger function under the Runtime Interface Emulator
//! (DynamoDB + SQS on the local AWS-API server) with `OTEL_EXPORTER_OTLP_ENDPOINT` pointing at
//! a local OTLP receiver. A synchronous execution runs inline in the trigger and ends there:
//! its root, step and request spans reach the receiver before the invocation returns (the
//! function flushes before answering), with the FaaS attributes; its logs are JSON lines.
//! Skipped with a notice when the emulator or the server is not configured, unless
//! `SLUICE_REQUIRE_AWS=1`. `sluice dev`'s traces are tested in `cli/tests/traces.rs`.

use std::time::Duration;

use serde_json::{Value, json};
use sluice_e2e::fake_api::FakeApi;
use sluice_e2e::otlp::Receiver;
use sluice_e2e::rie::{AwsResources, Rie, emulator_and_endpoint, lambda_binary};
use sluice_shared::auth;
use sluice_shared::model::load;
use sluice_shared::ports::{Project, ProjectStore, WorkflowStore};
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_trigger_function_exports_its_spans_with_faas_attributes_before_answering() {
    let Some((emulator, endpoint)) = emulator_and_endpoint() else { return };
    let api = FakeApi::start().await;
    let receiver = Receiver::start();
    let resources = AwsResources::create(&endpoint).await;
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
    let yaml = format!(
        "id: traced\ntrigger: {{ type: request }}\nsteps:\n  - id: search\n    type: request\n    url: \"{}/contacts?key={SECRET}\"\n  - id: reply\n    type: response\n    body: {{ id: \"{{{{execution.id}}}}\" }}\n",
        api.base_url
    );
    let workflow = load::load_str("traced.yaml", &yaml).expect("valid workflow");
    store.deploy_workflow(&project_id, &workflow).await.expect("deploy");

    let mut env = resources.function_env();
    for (name, value) in env.iter_mut() {
        if name == "SLUICE_ALLOW_PRIVATE_NETWORK" {
            *value = "true".into();
        }
    }
    env.push(("OTEL_EXPORTER_OTLP_ENDPOINT".into(), format!("http://127.0.0.1:{}", receiver.port)));
    let trigger = Rie::start(&emulator, &lambda_binary("trigger"), &env).await;
    let token = auth::issue_user_token(&keys.private_pem, "user-7", Duration::from_secs(300)).expect("token");
    let path = format!("/projects/{project_id}/sdk/triggers/traced");

    let mut ids = Vec::new();
    for _ in 0..2 {
        let answer = trigger.invoke(&url_event(&path, &token, &json!({}))).await.json();
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

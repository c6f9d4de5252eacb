//! End-to-end scenarios over HTTP against the local stack started in-process. Every scenario
//! runs twice: on SQLite, and on DynamoDB + SQS served by the local AWS-API server (skipped
//! when `SLUICE_AWS_ENDPOINT` is unset, unless `SLUICE_REQUIRE_AWS=1`).

use std::time::Duration;

use serde_json::{Value, json};
use sluice_e2e::fake_api::{FakeApi, nested_json};
use sluice_e2e::on_both_backends;
use sluice_e2e::record::{json_of, step};
use sluice_e2e::stack::{Backend, TestStack};
use sluice_shared::messages::StepMessage;
use sluice_shared::record::ExecutionStatus;
use sluice_shared::runner::Runner;

const LONG: Duration = Duration::from_secs(30);
const ENDED_WITHIN: Duration = Duration::from_secs(30);

on_both_backends! {
    async_workflow_answers_202_and_runs_in_the_background: LONG;
    sync_workflow_branches_on_the_api_response_and_answers: LONG;
    slow_sync_workflow_answers_542_and_still_finishes: Duration::from_secs(1);
    failed_validation_lists_every_violation: LONG;
    bad_tokens_and_keys_are_refused: LONG;
    a_missing_project_answers_unauthenticated_callers_as_an_existing_one: LONG;
    unknown_workflow_is_404: LONG;
    oversized_body_is_413: LONG;
    json_nested_past_the_limit_is_refused_where_it_comes_in: LONG;
    failing_step_is_retried_until_it_succeeds: LONG;
    continue_on_failure_exposes_the_error_to_later_steps: LONG;
    sync_caller_gets_the_failure_at_once: LONG;
    redelivered_step_message_does_not_rerun_the_step: LONG;
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

fn step_ids(record: &Value) -> Vec<String> {
    record["steps"]
        .as_array()
        .map(|steps| steps.iter().filter_map(|s| s["id"].as_str().map(String::from)).collect())
        .unwrap_or_default()
}

async fn async_workflow_answers_202_and_runs_in_the_background(stack: &TestStack) {
    let api = FakeApi::start().await;
    stack
        .deploy(&format!(
            r#"
id: lead-created
trigger: {{ type: request }}
steps:
  - id: lookup
    type: request
    url: "{}/contacts"
    query: {{ email: "{{{{trigger.body.email}}}}" }}
"#,
            api.base_url
        ))
        .await;
    let response = stack
        .trigger_request("lead-created")
        .header("x-source", "crm")
        .json(&json!({ "email": "alice@example.com" }))
        .send()
        .await
        .expect("trigger");
    assert_eq!(response.status(), 202);
    let body = json_of(response).await;
    let id = body["executionId"].as_str().expect("executionId").to_string();

    let record = stack.wait_until_ended(&id, ENDED_WITHIN).await;
    assert_eq!(record["status"], "succeeded", "{record:#}");
    assert_eq!(record["executionId"], id);
    assert_eq!(record["projectId"], stack.project_id);
    assert_eq!(record["workflowId"], "lead-created");
    assert_eq!(record["workflowVersion"], 1);
    assert_eq!(record["userId"], "user-1");
    assert_eq!(record["trigger"]["body"], json!({ "email": "alice@example.com" }));
    assert_eq!(record["trigger"]["headers"]["x-source"], "crm");
    assert!(record["trigger"]["headers"].get("authorization").is_none(), "the token must not be stored");
    assert_eq!(record["response"], Value::Null);
    let lookup = step(&record, "lookup");
    assert_eq!(lookup["status"], "succeeded");
    assert_eq!(lookup["attempts"], 1);
    assert_eq!(lookup["input"]["query"]["email"], "alice@example.com");
    assert_eq!(lookup["output"]["status"], 200);
    assert_eq!(lookup["output"]["body"]["total"], 1);
    for field in ["startedAt", "endedAt"] {
        let text = record[field].as_str().expect("timestamp");
        assert!(text.ends_with('Z') && text.len() == 24, "{field} is ISO 8601 with ms: {text}");
    }
}

fn contact_lookup(api: &FakeApi) -> String {
    format!(
        r#"
id: contact-lookup
trigger:
  type: request
  validate:
    body: {{ email: string }}
steps:
  - id: search
    type: request
    url: "{base}/contacts"
    query: {{ email: "{{{{trigger.body.email}}}}" }}
  - id: route
    type: conditional
    when:
      all:
        - {{ left: "{{{{steps.search.output.status}}}}", op: equals, right: 200 }}
        - {{ left: "{{{{steps.search.output.body.total}}}}", op: greater_than, right: 0 }}
    then:
      - id: found
        type: response
        status: 200
        headers: {{ x-handled-by: sluice }}
        body: {{ found: true, id: "{{{{steps.search.output.body.contacts.0.id}}}}", branch: "{{{{steps.route.output.branch}}}}" }}
    else:
      - id: missing
        type: response
        status: 404
        body: {{ found: false, message: "no contact {{{{trigger.body.email}}}}" }}
  - id: after
    type: request
    url: "{base}/status/200"
"#,
        base = api.base_url
    )
}

async fn sync_workflow_branches_on_the_api_response_and_answers(stack: &TestStack) {
    let api = FakeApi::start().await;
    stack.deploy(&contact_lookup(&api)).await;

    let found = stack.trigger("contact-lookup", json!({ "email": "alice@example.com" })).await;
    assert_eq!(found.status(), 200);
    assert_eq!(found.headers()["x-handled-by"], "sluice");
    let execution_id = found.headers()["x-sluice-execution-id"].to_str().expect("id").to_string();
    assert_eq!(json_of(found).await, json!({ "found": true, "id": "c-ali", "branch": "then" }));

    let missing = stack.trigger("contact-lookup", json!({ "email": "nobody@example.com" })).await;
    assert_eq!(missing.status(), 404);
    assert_eq!(json_of(missing).await, json!({ "found": false, "message": "no contact nobody@example.com" }));

    // The flow continues below the conditional after the response, and the record says so.
    let record = stack.wait_until_ended(&execution_id, ENDED_WITHIN).await;
    assert_eq!(record["status"], "succeeded", "{record:#}");
    assert_eq!(step_ids(&record), ["search", "route", "found", "after"]);
    assert_eq!(step(&record, "route")["output"], json!({ "branch": "then" }));
    assert_eq!(step(&record, "found")["output"]["delivered"], true);
    assert_eq!(record["response"]["status"], 200);
    assert_eq!(record["response"]["body"]["id"], "c-ali");
}

async fn slow_sync_workflow_answers_542_and_still_finishes(stack: &TestStack) {
    let api = FakeApi::start().await;
    stack
        .deploy(&format!(
            r#"
id: slow
trigger: {{ type: request }}
steps:
  - id: wait
    type: request
    url: "{}/slow/2500"
  - id: reply
    type: response
    body: {{ done: true }}
"#,
            api.base_url
        ))
        .await;
    let started = std::time::Instant::now();
    let response = stack.trigger("slow", json!({})).await;
    assert_eq!(response.status().as_u16(), 542);
    assert!(started.elapsed() < Duration::from_millis(2400), "542 came after the slow step: {:?}", started.elapsed());
    let body = json_of(response).await;
    let keys: Vec<&str> = body.as_object().expect("object").keys().map(String::as_str).collect();
    assert_eq!(keys.len(), 5, "{body}");
    assert_eq!(body["message"], "Workflow has been enqueued but has not completed.");
    assert_eq!(body["projectId"], stack.project_id);
    assert_eq!(body["workflowId"], "slow");
    assert!(body["dateSubmitted"].as_str().is_some_and(|d| d.ends_with('Z')));
    let id = body["executionId"].as_str().expect("executionId");

    let record = stack.wait_until_ended(id, ENDED_WITHIN).await;
    assert_eq!(record["status"], "succeeded", "{record:#}");
    assert_eq!(record["response"]["status"], 542);
    assert_eq!(step(&record, "reply")["output"]["delivered"], false);
}

async fn failed_validation_lists_every_violation(stack: &TestStack) {
    stack
        .deploy(
            r#"
id: validated
trigger:
  type: request
  validate:
    query: { required: [source] }
    headers: { x-source: crm }
    body: { email: string, age: number }
steps:
  - { id: reply, type: response, body: ok }
"#,
        )
        .await;
    let response = stack
        .trigger_request("validated")
        .header("x-source", "web")
        .json(&json!({ "email": 42 }))
        .send()
        .await
        .expect("trigger");
    assert_eq!(response.status(), 400);
    let body = json_of(response).await;
    assert_eq!(body["error"]["code"], "validation_failed");
    let violations: Vec<String> = serde_json::from_value(body["error"]["violations"].clone()).expect("violations");
    assert_eq!(violations.len(), 4, "{violations:?}");
    for needle in ["`source`", "`x-source`", "`age`", "`email`"] {
        assert!(violations.iter().any(|v| v.contains(needle)), "no violation about {needle}: {violations:?}");
    }

    let ok = stack
        .trigger_request("validated")
        .query(&[("source", "app")])
        .header("X-Source", "crm")
        .json(&json!({ "email": "a@example.com", "age": 3 }))
        .send()
        .await
        .expect("trigger");
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.text().await.expect("text"), "ok");
}

async fn bad_tokens_and_keys_are_refused(stack: &TestStack) {
    stack.deploy("id: hello\ntrigger: { type: request }\nsteps: [ { id: reply, type: response, body: hi } ]\n").await;
    let url = stack.trigger_url("hello");
    let client = stack.client();
    let status_with = |token: Option<String>| {
        let mut request = client.post(&url).json(&json!({}));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        async move { request.send().await.expect("send").status().as_u16() }
    };
    assert_eq!(status_with(Some(stack.token("u"))).await, 200);
    assert_eq!(status_with(None).await, 401, "missing token");
    assert_eq!(status_with(Some("not-a-jwt".into())).await, 401, "malformed token");

    // Expired, though correctly signed.
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(stack_private_pem(stack).as_bytes()).expect("key");
    let past = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs() - 3600;
    let expired = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
        &json!({ "sub": "u", "iat": past - 60, "exp": past }),
        &key,
    )
    .expect("encode");
    assert_eq!(status_with(Some(expired)).await, 401, "expired token");

    // A token of another project, sent to this project's URL.
    let other = TestStack::start(Backend::Sqlite, LONG).await.expect("other stack");
    assert_eq!(status_with(Some(other.token("u"))).await, 401, "token of another project");
    let body: Value = client.post(&url).send().await.expect("send").json().await.expect("json");
    assert_eq!(body["error"]["code"], "unauthorized");

    // The management API wants this project's API key, not a user token or another key.
    let executions = format!("{}/projects/{}/executions/some-id", stack.base_url, stack.project_id);
    for key in [stack.token("u"), other.api_key.clone(), String::new()] {
        let status = client.get(&executions).bearer_auth(key).send().await.expect("send").status();
        assert_eq!(status, 401);
    }
    let status = client.get(&executions).bearer_auth(&stack.api_key).send().await.expect("send").status();
    assert_eq!(status, 404, "a valid key for an unknown execution");
}

/// Without valid credentials, nothing tells a project that exists from one that does not.
async fn a_missing_project_answers_unauthenticated_callers_as_an_existing_one(stack: &TestStack) {
    stack.deploy("id: hello\ntrigger: { type: request }\nsteps: [ { id: reply, type: response, body: hi } ]\n").await;
    let other = TestStack::start(Backend::Sqlite, LONG).await.expect("other stack");
    let client = stack.client();
    let answer = |project: String, path: &'static str, post: bool, auth: Option<String>| {
        let url = format!("{}/projects/{project}{path}", stack.base_url);
        let mut request = if post { client.post(url).json(&json!({})) } else { client.get(url) };
        if let Some(auth) = auth {
            request = request.header("authorization", auth);
        }
        async move {
            let response = request.send().await.expect("send");
            (response.status().as_u16(), response.text().await.expect("body"))
        }
    };
    let credentials = [
        None,
        Some("Basic dTpw".to_string()),
        Some("Bearer not-a-jwt".to_string()),
        Some(format!("Bearer {}", other.token("u"))),
        Some(format!("Bearer {}", other.api_key)),
    ];
    for (path, post) in [("/sdk/triggers/hello", true), ("/executions/some-id", false), ("/test-runs", true)] {
        for auth in &credentials {
            let existing = answer(stack.project_id.clone(), path, post, auth.clone()).await;
            let missing = answer("no-such-project".to_string(), path, post, auth.clone()).await;
            assert_eq!(existing.0, 401, "{path} with {auth:?}: {}", existing.1);
            assert_eq!(missing, existing, "{path} with {auth:?}");
        }
    }
}

fn stack_private_pem(stack: &TestStack) -> String {
    stack.private_pem().to_string()
}

async fn unknown_workflow_is_404(stack: &TestStack) {
    let response = stack.trigger("no-such-workflow", json!({})).await;
    assert_eq!(response.status(), 404);
    assert_eq!(json_of(response).await["error"]["code"], "not_found");
}

async fn oversized_body_is_413(stack: &TestStack) {
    stack.deploy("id: big\ntrigger: { type: request }\nsteps: [ { id: reply, type: response, body: hi } ]\n").await;
    let big = json!({ "blob": "x".repeat(300 * 1024) });
    let response = stack.trigger("big", big).await;
    assert_eq!(response.status(), 413);
    assert_eq!(json_of(response).await["error"]["code"], "payload_too_large");
}

/// One nesting limit (64) where JSON comes in — a trigger body, an API's answer, a function's
/// result — so that everything stored reads back (JSON nested 127 deep used to pass the
/// parser and leave a record that could never be read, and an execution `running`).
async fn json_nested_past_the_limit_is_refused_where_it_comes_in(stack: &TestStack) {
    stack.deploy("id: echo-nested\ntrigger: { type: request }\nsteps: [ { id: reply, type: response, body: \"{{trigger.body}}\" } ]\n").await;
    let response = stack.trigger("echo-nested", nested_json(127)).await;
    assert_eq!(response.status(), 400);
    let error = json_of(response).await;
    assert_eq!(error["error"]["code"], "bad_request");
    assert_eq!(error["error"]["message"], "the request body is JSON nested deeper than 64 levels");
    let response = stack.trigger("echo-nested", nested_json(64)).await;
    assert_eq!(response.status(), 200);
    assert_eq!(json_of(response).await, nested_json(64));

    let api = FakeApi::start().await;
    for (id, definition) in [
        ("nested-answer", format!("{{ id: fetch, type: request, url: \"{}/nested/100\" }}", api.base_url)),
        (
            "nested-result",
            "{ id: fetch, type: function, code: \"() => { let v = 0; for (let i = 0; i < 100; i++) v = [v]; return v }\" }"
                .to_string(),
        ),
    ] {
        stack.deploy(&format!("id: {id}\ntrigger: {{ type: request }}\nsteps: [ {definition} ]\n")).await;
        let response = stack.trigger(id, json!({})).await;
        assert_eq!(response.status(), 202, "{id}");
        let execution = json_of(response).await["executionId"].as_str().expect("executionId").to_string();
        let record = stack.wait_until_ended(&execution, ENDED_WITHIN).await;
        assert_eq!(record["status"], "failed", "{id}: {record:#}");
        let message = step(&record, "fetch")["error"]["message"].as_str().unwrap_or_default().to_string();
        assert!(message.contains("nested deeper than 64 levels"), "{id}: {message}");
    }
}

async fn failing_step_is_retried_until_it_succeeds(stack: &TestStack) {
    let api = FakeApi::start().await;
    let key = unique("flaky");
    stack
        .deploy(&format!(
            r#"
id: flaky
trigger: {{ type: request }}
steps:
  - id: call
    type: request
    method: POST
    url: "{}/flaky/{key}/2"
    retries: 2
    retry_delay: 100ms
"#,
            api.base_url
        ))
        .await;
    let response = stack.trigger("flaky", json!({})).await;
    let id = json_of(response).await["executionId"].as_str().expect("id").to_string();
    let record = stack.wait_until_ended(&id, ENDED_WITHIN).await;
    assert_eq!(record["status"], "succeeded", "{record:#}");
    let call = step(&record, "call");
    assert_eq!(call["attempts"], 3);
    assert_eq!(call["output"]["body"]["call"], 3);
    assert_eq!(api.calls(&key), 3);
    let keys = api.idempotency_keys();
    assert_eq!(keys.len(), 3);
    assert!(keys.iter().all(|k| *k == format!("{id}:call")), "one Idempotency-Key for every attempt: {keys:?}");
}

async fn continue_on_failure_exposes_the_error_to_later_steps(stack: &TestStack) {
    let api = FakeApi::start().await;
    stack
        .deploy(&format!(
            r#"
id: tolerant
trigger: {{ type: request }}
steps:
  - id: missing
    type: request
    url: "{base}/status/404"
    retries: 3
    continue_on_failure: true
  - id: report
    type: request
    url: "{base}/status/200"
    query: {{ previous: "{{{{steps.missing.error.message}}}}" }}
"#,
            base = api.base_url
        ))
        .await;
    let response = stack.trigger("tolerant", json!({})).await;
    let id = json_of(response).await["executionId"].as_str().expect("id").to_string();
    let record = stack.wait_until_ended(&id, ENDED_WITHIN).await;
    assert_eq!(record["status"], "succeeded", "{record:#}");
    let missing = step(&record, "missing");
    assert_eq!(missing["status"], "failed");
    assert_eq!(missing["attempts"], 1, "a 404 is not retried");
    assert!(missing["error"]["message"].as_str().is_some_and(|m| m.contains("404")), "{missing}");
    let report = step(&record, "report");
    assert_eq!(report["status"], "succeeded");
    assert!(report["input"]["query"]["previous"].as_str().is_some_and(|m| m.contains("404")), "{report}");
}

async fn sync_caller_gets_the_failure_at_once(stack: &TestStack) {
    let api = FakeApi::start().await;
    stack
        .deploy(&format!(
            r#"
id: broken
trigger: {{ type: request }}
steps:
  - id: call
    type: request
    url: "{}/status/500"
  - id: reply
    type: response
    body: {{ never: true }}
"#,
            api.base_url
        ))
        .await;
    let response = stack.trigger("broken", json!({})).await;
    assert_eq!(response.status(), 500);
    let body = json_of(response).await;
    assert_eq!(body["error"]["code"], "workflow_failed");
    assert_eq!(body["error"]["step"], "call");
    let id = body["error"]["executionId"].as_str().expect("executionId");
    let record = stack.wait_until_ended(id, ENDED_WITHIN).await;
    assert_eq!(record["status"], "failed");
    assert_eq!(record["error"]["step"], "call");
    assert_eq!(step_ids(&record), ["call"]);
}

async fn redelivered_step_message_does_not_rerun_the_step(stack: &TestStack) {
    let api = FakeApi::start().await;
    let key = unique("once");
    stack
        .deploy(&format!(
            "id: once\ntrigger: {{ type: request }}\nsteps:\n  - {{ id: call, type: request, method: POST, url: \"{}/flaky/{key}/0\" }}\n",
            api.base_url
        ))
        .await;
    let response = stack.trigger("once", json!({})).await;
    let id = json_of(response).await["executionId"].as_str().expect("id").to_string();
    stack.wait_until_ended(&id, ENDED_WITHIN).await;
    assert_eq!(api.calls(&key), 1);

    // SQS delivers at least once: the same message again, handled to completion.
    let runner = Runner::new(stack.runtime.clone());
    let duplicate = StepMessage::first(&id, "call").to_json();
    runner.handle(&duplicate, 2).await.expect("duplicate handled");
    assert_eq!(api.calls(&key), 1, "the recorded step ran again");

    // The same on a still-running execution whose step is recorded but whose successor was
    // never enqueued (a crash between the two): the step is not re-run, the flow goes on.
    let store = &stack.store;
    let mut execution = store.get_execution(&id).await.expect("get").expect("execution");
    let recorded = store.list_steps(&id).await.expect("steps");
    execution.id = unique("exec");
    execution.status = ExecutionStatus::Running;
    execution.ended_at = None;
    store.create_execution(&execution).await.expect("create");
    store.record_step(&execution.id, &recorded[0]).await.expect("record");
    let message = StepMessage::first(&execution.id, "call").to_json();
    runner.handle(&message, 1).await.expect("handled");
    runner.handle(&message, 2).await.expect("handled again");
    assert_eq!(api.calls(&key), 1, "a recorded step ran again");
    let record = stack.execution(&execution.id).await;
    assert_eq!(record["status"], "succeeded", "{record:#}");
    assert_eq!(step(&record, "call")["attempts"], 1);
}

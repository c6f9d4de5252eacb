//! `Idempotency-Key` on every trigger route, end to end over HTTP on both backends: concurrent
//! duplicates of an asynchronous and of a synchronous request trigger start one execution and
//! all get the first answer; the same key with another request is 422; a malformed key is 400
//! and starts nothing; app event repeats (SDK and API-key routes, single and batch) answer the
//! same execution ids and start nothing more; and keys are per user.
//!
//! Every workflow calls the fake API's `/counted/<unique>` once per execution, so the count of
//! calls is the count of executions that ran, on either backend; on SQLite the executions
//! table is counted too.

use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use sluice_e2e::fake_api::FakeApi;
use sluice_e2e::on_both_backends;
use sluice_e2e::stack::{Backend, TestStack};

const LONG: Duration = Duration::from_secs(30);
/// How many duplicates are sent at once.
const DUPLICATES: usize = 50;

on_both_backends! {
    concurrent_duplicates_of_an_async_trigger_start_one_execution: LONG;
    concurrent_duplicates_of_a_sync_trigger_get_its_one_settled_answer: LONG;
    the_same_key_with_another_request_is_refused_with_422: LONG;
    a_malformed_key_is_refused_with_400_and_starts_nothing: LONG;
    app_event_repeats_answer_the_same_execution_ids_and_start_nothing: LONG;
    keys_of_different_users_do_not_collide: LONG;
}

/// One answer: status, `x-sluice-execution-id`, `idempotent-replayed`, JSON body.
#[derive(Debug, Clone, PartialEq)]
struct Answer {
    status: StatusCode,
    execution_header: Option<String>,
    replayed: bool,
    body: Value,
}

async fn answer_of(response: reqwest::Response) -> Answer {
    let header = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
    let (status, execution_header) = (response.status(), header("x-sluice-execution-id"));
    let replayed = header("idempotent-replayed").as_deref() == Some("true");
    let text = response.text().await.expect("a body");
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Answer { status, execution_header, replayed, body }
}

/// POSTs `body` to `url` with `token` and, if given, `Idempotency-Key: key`.
async fn post(client: &reqwest::Client, url: &str, token: &str, key: Option<&[u8]>, body: &Value) -> Answer {
    let mut request = client.post(url).bearer_auth(token).json(body);
    if let Some(key) = key {
        let value = reqwest::header::HeaderValue::from_bytes(key).expect("a header value");
        request = request.header("Idempotency-Key", value);
    }
    answer_of(request.send().await.expect("the request")).await
}

/// Sends the same request [`DUPLICATES`] times at once.
async fn duplicates(stack: &TestStack, url: &str, token: &str, key: &str, body: &Value) -> Vec<Answer> {
    let sends = (0..DUPLICATES).map(|_| {
        let (client, url, token, key, body) =
            (stack.client().clone(), url.to_string(), token.to_string(), key.to_string(), body.clone());
        tokio::spawn(async move { post(&client, &url, &token, Some(key.as_bytes()), &body).await })
    });
    let mut answers = Vec::with_capacity(DUPLICATES);
    for send in sends.collect::<Vec<_>>() {
        answers.push(send.await.expect("a send task"));
    }
    answers
}

/// Exactly one of `answers` is the first; every other is a replay of it, with the same status
/// and body.
fn all_the_same(answers: &[Answer]) -> Answer {
    let first = answers.iter().find(|a| !a.replayed).expect("one answer is the first").clone();
    assert_eq!(answers.iter().filter(|a| !a.replayed).count(), 1, "exactly one first answer: {answers:#?}");
    for answer in answers {
        assert_eq!((answer.status, &answer.body), (first.status, &first.body), "{answer:#?} differs from {first:#?}");
    }
    first
}

/// A fresh counter name on the fake API.
fn counter() -> String {
    format!("c-{}", uuid::Uuid::new_v4().simple())
}

/// Waits for every execution to have run (its `/counted` call made), then a little longer
/// for any extra one to show, and returns the number of calls.
async fn executions_that_ran(api: &FakeApi, counter: &str, expected: u32) -> u32 {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while api.calls(counter) < expected && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    api.calls(counter)
}

/// The executions of `workflow_id` in the stack's SQLite file (None on DynamoDB).
fn stored_executions(stack: &TestStack, workflow_id: &str) -> Option<u32> {
    let db = rusqlite::Connection::open(stack.sqlite_file()?).expect("open the database");
    let count = db.query_row(
        "SELECT COUNT(*) FROM executions WHERE project_id = ?1 AND workflow_id = ?2",
        rusqlite::params![stack.project_id, workflow_id],
        |row| row.get(0),
    );
    Some(count.expect("count executions"))
}

/// An asynchronous workflow calling the counter `counter` once.
async fn deploy_async(stack: &TestStack, api: &FakeApi, id: &str, counter: &str) {
    let base = &api.base_url;
    stack
        .deploy(&format!(
            "id: {id}\ntrigger: {{ type: request }}\nsteps:\n  - {{ id: call, type: request, url: \"{base}/counted/{counter}/0\" }}\n"
        ))
        .await;
}

async fn concurrent_duplicates_of_an_async_trigger_start_one_execution(stack: &TestStack) {
    let api = FakeApi::start().await;
    let counter = counter();
    deploy_async(stack, &api, "idem-async", &counter).await;
    let body = json!({ "email": "ada@example.com" });
    let answers = duplicates(stack, &stack.trigger_url("idem-async"), &stack.token("user-1"), "order-1", &body).await;
    let first = all_the_same(&answers);
    assert_eq!(first.status, StatusCode::ACCEPTED);
    let id = first.body["executionId"].as_str().expect("an execution id").to_string();
    stack.wait_until_ended(&id, LONG).await;
    assert_eq!(executions_that_ran(&api, &counter, 1).await, 1, "one execution ran");
    if let Some(stored) = stored_executions(stack, "idem-async") {
        assert_eq!(stored, 1, "one execution was created");
    }
    // A later repeat, once it has all settled, still answers the same.
    let again =
        post(stack.client(), &stack.trigger_url("idem-async"), &stack.token("user-1"), Some(b"order-1"), &body).await;
    assert_eq!((again.status, &again.body, again.replayed), (first.status, &first.body, true));
    assert_eq!(api.calls(&counter), 1);
}

async fn concurrent_duplicates_of_a_sync_trigger_get_its_one_settled_answer(stack: &TestStack) {
    let api = FakeApi::start().await;
    let counter = counter();
    let base = &api.base_url;
    // The call takes 300 ms: most duplicates arrive while the first is still running and
    // wait for its answer, as its first caller does.
    stack
        .deploy(&format!(
            "id: idem-sync\ntrigger: {{ type: request }}\nsteps:\n\
             \x20 - {{ id: call, type: request, url: \"{base}/counted/{counter}/300\" }}\n\
             \x20 - {{ id: reply, type: response, status: 201, body: {{ call: \"{{{{steps.call.output.body.call}}}}\", email: \"{{{{trigger.body.email}}}}\" }} }}\n"
        ))
        .await;
    let body = json!({ "email": "ada@example.com" });
    let token = stack.token("user-1");
    let answers = duplicates(stack, &stack.trigger_url("idem-sync"), &token, "sync-1", &body).await;
    let first = all_the_same(&answers);
    assert_eq!(first.status, StatusCode::CREATED, "{first:#?}");
    assert_eq!(first.body, json!({ "call": 1, "email": "ada@example.com" }));
    let ids: Vec<_> = answers.iter().map(|a| a.execution_header.clone()).collect();
    assert!(ids[0].is_some() && ids.iter().all(|id| *id == ids[0]), "one execution answered all: {ids:?}");
    assert_eq!(executions_that_ran(&api, &counter, 1).await, 1, "one execution ran");
    if let Some(stored) = stored_executions(stack, "idem-sync") {
        assert_eq!(stored, 1, "one execution was created");
    }
    let again = post(stack.client(), &stack.trigger_url("idem-sync"), &token, Some(b"sync-1"), &body).await;
    assert_eq!((again.status, &again.body, again.replayed), (first.status, &first.body, true));
}

async fn the_same_key_with_another_request_is_refused_with_422(stack: &TestStack) {
    let api = FakeApi::start().await;
    let counter = counter();
    deploy_async(stack, &api, "idem-reuse", &counter).await;
    let (url, token) = (stack.trigger_url("idem-reuse"), stack.token("user-1"));
    let first = post(stack.client(), &url, &token, Some(b"reuse-1"), &json!({ "n": 1 })).await;
    assert_eq!(first.status, StatusCode::ACCEPTED);
    let other_body = post(stack.client(), &url, &token, Some(b"reuse-1"), &json!({ "n": 2 })).await;
    assert_eq!(other_body.status, StatusCode::UNPROCESSABLE_ENTITY, "{other_body:#?}");
    assert_eq!(other_body.body["error"]["code"], "idempotency_key_reused");
    let message = other_body.body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("different request"), "{message}");
    let other_query =
        post(stack.client(), &format!("{url}?page=2"), &token, Some(b"reuse-1"), &json!({ "n": 1 })).await;
    assert_eq!(other_query.status, StatusCode::UNPROCESSABLE_ENTITY, "another query is another request");
    // Headers are not part of the request compared: another content type is the same request.
    let same = stack
        .client()
        .post(&url)
        .bearer_auth(&token)
        .header("Idempotency-Key", "reuse-1")
        .header("content-type", "application/json")
        .header("x-note", "a retry")
        .body(json!({ "n": 1 }).to_string())
        .send()
        .await
        .expect("the request");
    let same = answer_of(same).await;
    assert_eq!((same.status, &same.body, same.replayed), (first.status, &first.body, true));
    assert_eq!(executions_that_ran(&api, &counter, 1).await, 1, "only the first started");
}

async fn a_malformed_key_is_refused_with_400_and_starts_nothing(stack: &TestStack) {
    let api = FakeApi::start().await;
    let counter = counter();
    deploy_async(stack, &api, "idem-malformed", &counter).await;
    let (url, token) = (stack.trigger_url("idem-malformed"), stack.token("user-1"));
    let too_long = "k".repeat(256);
    let malformed: [&[u8]; 4] = [b"", too_long.as_bytes(), b"two words", b"caf\xc3\xa9"];
    for key in malformed {
        let answer = post(stack.client(), &url, &token, Some(key), &json!({})).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{key:?}: {answer:#?}");
        assert_eq!(answer.body["error"]["code"], "bad_request");
        let message = answer.body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains("Idempotency-Key") && message.contains("255"), "{message}");
    }
    let events = format!("{}/projects/{}/events/trigger", stack.base_url, stack.project_id);
    let answer = post(stack.client(), &events, &stack.api_key, Some(b"two words"), &json!({})).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST, "the event routes check the key too: {answer:#?}");
    let longest = "k".repeat(255);
    let fine = post(stack.client(), &url, &token, Some(longest.as_bytes()), &json!({})).await;
    assert_eq!(fine.status, StatusCode::ACCEPTED, "255 characters are fine");
    assert_eq!(executions_that_ran(&api, &counter, 1).await, 1, "only the well-formed request started");
}

/// A project declaring `Contact Created`, listened to by `on-contact`, which calls `counter`.
fn event_project(api: &FakeApi, counter: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sluice-idem-{}", uuid::Uuid::new_v4().simple()));
    let put = |path: &Path, text: String| {
        std::fs::create_dir_all(path.parent().expect("a parent")).expect("folders");
        std::fs::write(path, text).expect("write");
    };
    put(&dir.join("events/contact-created.yaml"), "name: Contact Created\nexample: { email: a@example.com }\n".into());
    put(
        &dir.join("on-contact.yaml"),
        format!(
            "id: on-contact\ntrigger: {{ type: app_event, event: Contact Created }}\nsteps:\n\
             \x20 - {{ id: call, type: request, url: \"{}/counted/{counter}/0\" }}\n",
            api.base_url
        ),
    );
    dir
}

/// The execution ids an events answer names, in order.
fn execution_ids(body: &Value) -> Vec<String> {
    let events = match body.get("events") {
        Some(Value::Array(events)) => events.clone(),
        _ => vec![body.clone()],
    };
    let mut ids = Vec::new();
    for event in events {
        for execution in event["executions"].as_array().cloned().unwrap_or_default() {
            ids.push(execution["executionId"].as_str().expect("an execution id").to_string());
        }
    }
    ids
}

async fn app_event_repeats_answer_the_same_execution_ids_and_start_nothing(stack: &TestStack) {
    let api = FakeApi::start().await;
    let counter = counter();
    let dir = event_project(&api, &counter);
    stack.deploy_project(&dir).await;
    let _ = std::fs::remove_dir_all(&dir);

    // The SDK route, with the user's token: concurrent duplicates.
    let sdk = format!("{}/projects/{}/sdk/events/trigger", stack.base_url, stack.project_id);
    let event = json!({ "name": "Contact Created", "payload": { "email": "ada@example.com" } });
    let answers = duplicates(stack, &sdk, &stack.token("user-1"), "event-1", &event).await;
    let first = all_the_same(&answers);
    assert_eq!(first.status, StatusCode::ACCEPTED, "{first:#?}");
    let sdk_ids = execution_ids(&first.body);
    assert_eq!(sdk_ids.len(), 1, "{first:#?}");

    // The API-key route, a batch for two users, sent twice.
    let api_route = format!("{}/projects/{}/events/trigger", stack.base_url, stack.project_id);
    let batch = json!({ "events": [
        { "userId": "user-1", "name": "Contact Created", "payload": { "n": 1 } },
        { "userId": "user-2", "name": "Contact Created", "payload": { "n": 2 } },
    ] });
    let once = post(stack.client(), &api_route, &stack.api_key, Some(b"batch-1"), &batch).await;
    let twice = post(stack.client(), &api_route, &stack.api_key, Some(b"batch-1"), &batch).await;
    assert_eq!(once.status, StatusCode::ACCEPTED, "{once:#?}");
    assert_eq!((twice.status, &twice.body, twice.replayed), (once.status, &once.body, true));
    let batch_ids = execution_ids(&once.body);
    assert_eq!(batch_ids.len(), 2, "{once:#?}");
    assert!(!batch_ids.contains(&sdk_ids[0]), "the API route's key is not the SDK route's");
    // The same key with another batch is another request.
    let other = json!({ "events": [{ "userId": "user-1", "name": "Contact Created", "payload": { "n": 3 } }] });
    let reused = post(stack.client(), &api_route, &stack.api_key, Some(b"batch-1"), &other).await;
    assert_eq!(reused.status, StatusCode::UNPROCESSABLE_ENTITY, "{reused:#?}");

    for id in sdk_ids.iter().chain(&batch_ids) {
        stack.wait_until_ended(id, LONG).await;
    }
    assert_eq!(executions_that_ran(&api, &counter, 3).await, 3, "one event, then one batch of two, ran");
    if let Some(stored) = stored_executions(stack, "on-contact") {
        assert_eq!(stored, 3);
    }
}

async fn keys_of_different_users_do_not_collide(stack: &TestStack) {
    let api = FakeApi::start().await;
    let counter = counter();
    deploy_async(stack, &api, "idem-users", &counter).await;
    let url = stack.trigger_url("idem-users");
    let body = json!({ "same": "body" });
    let ada = post(stack.client(), &url, &stack.token("ada"), Some(b"shared-key"), &body).await;
    let bob = post(stack.client(), &url, &stack.token("bob"), Some(b"shared-key"), &body).await;
    assert_eq!((ada.status, bob.status), (StatusCode::ACCEPTED, StatusCode::ACCEPTED));
    assert!(!bob.replayed, "bob's request is his own");
    assert_ne!(ada.body["executionId"], bob.body["executionId"]);
    let ada_again = post(stack.client(), &url, &stack.token("ada"), Some(b"shared-key"), &body).await;
    assert_eq!((&ada_again.body, ada_again.replayed), (&ada.body, true));
    // On the SDK event route too.
    let dir = event_project(&api, &counter);
    stack.deploy_project(&dir).await;
    let _ = std::fs::remove_dir_all(&dir);
    let sdk = format!("{}/projects/{}/sdk/events/trigger", stack.base_url, stack.project_id);
    let event = json!({ "name": "Contact Created", "payload": {} });
    let ada_event = post(stack.client(), &sdk, &stack.token("ada"), Some(b"shared-key"), &event).await;
    let bob_event = post(stack.client(), &sdk, &stack.token("bob"), Some(b"shared-key"), &event).await;
    assert_eq!((ada_event.status, bob_event.status), (StatusCode::ACCEPTED, StatusCode::ACCEPTED));
    assert!(!ada_event.replayed && !bob_event.replayed, "each user's own, and not the trigger route's");
    assert_ne!(execution_ids(&ada_event.body), execution_ids(&bob_event.body));
    assert_eq!(executions_that_ran(&api, &counter, 4).await, 4, "two triggers and two events ran");
}

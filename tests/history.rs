//! Task History end to end on both backends, over HTTP with the project API key: the list with
//! every filter, search attributes and paging; what bad filters and cursors get; replay (both
//! versions), redrive of a fan-out whose one branch failed (only that branch runs again),
//! cancel of a waiting execution and of one whose synchronous caller still waits.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode as AxumStatus;
use axum::routing::get;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sluice_e2e::fake_api::{FakeApi, serve_locally};
use sluice_e2e::on_both_backends;
use sluice_e2e::record::json_of;
use sluice_e2e::stack::{Backend, TestStack};

const TIMEOUT: Duration = Duration::from_secs(20);

on_both_backends! {
    the_list_filters_pages_and_searches: TIMEOUT;
    bad_filters_and_cursors_are_refused_naming_the_problem: TIMEOUT;
    replay_starts_a_linked_execution_of_the_same_trigger: TIMEOUT;
    redrive_runs_only_the_failed_branch_of_a_fan_out_again: TIMEOUT;
    cancel_stops_a_waiting_execution_and_answers_a_waiting_caller: TIMEOUT;
}

/// A fake API whose `/item/{id}` fails (500) for the ids in `broken`, counting calls per id.
#[derive(Clone, Default)]
struct Items {
    broken: Arc<Mutex<BTreeSet<String>>>,
    calls: Arc<Mutex<HashMap<String, u32>>>,
}

impl Items {
    async fn start(broken: &[&str]) -> (Items, String) {
        let items = Items::default();
        items.broken.lock().expect("broken").extend(broken.iter().map(|s| s.to_string()));
        let app = Router::new().route("/item/{id}", get(item)).with_state(items.clone());
        let url = serve_locally(app).await;
        (items, url)
    }

    fn calls(&self, id: &str) -> u32 {
        self.calls.lock().expect("calls").get(id).copied().unwrap_or(0)
    }

    fn fix(&self) {
        self.broken.lock().expect("broken").clear();
    }
}

async fn item(State(items): State<Items>, Path(id): Path<String>) -> (AxumStatus, axum::Json<Value>) {
    *items.calls.lock().expect("calls").entry(id.clone()).or_default() += 1;
    if items.broken.lock().expect("broken").contains(&id) {
        (AxumStatus::INTERNAL_SERVER_ERROR, axum::Json(json!({ "error": format!("item {id} is down") })))
    } else {
        (AxumStatus::OK, axum::Json(json!({ "id": id })))
    }
}

fn history_url(stack: &TestStack, query: &str) -> String {
    format!("{}/projects/{}/executions?{query}", stack.base_url, stack.project_id)
}

async fn list(stack: &TestStack, query: &str) -> Value {
    let response =
        stack.client().get(history_url(stack, query)).bearer_auth(&stack.api_key).send().await.expect("list");
    assert_eq!(response.status(), 200, "GET ?{query}");
    json_of(response).await
}

/// The ids of a listing, page after page of `limit`.
async fn list_all(stack: &TestStack, query: &str, limit: usize) -> Vec<String> {
    let mut ids = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..50 {
        let mut q = format!("{query}&limit={limit}");
        if let Some(c) = &cursor {
            q.push_str(&format!("&cursor={c}"));
        }
        let page = list(stack, &q).await;
        let rows = page["executions"].as_array().expect("rows");
        assert!(rows.len() <= limit);
        ids.extend(rows.iter().map(|r| r["executionId"].as_str().expect("id").to_string()));
        match page["next"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => return ids,
        }
    }
    panic!("more than 50 pages");
}

async fn action(stack: &TestStack, id: &str, what: &str, body: Value) -> reqwest::Response {
    let url = format!("{}/projects/{}/executions/{id}/{what}", stack.base_url, stack.project_id);
    stack.client().post(url).bearer_auth(&stack.api_key).json(&body).send().await.expect("action")
}

async fn start_as(stack: &TestStack, workflow: &str, user: &str, body: Value) -> String {
    let response = stack
        .client()
        .post(stack.trigger_url(workflow))
        .bearer_auth(stack.token(user))
        .json(&body)
        .send()
        .await
        .expect("trigger");
    assert_eq!(response.status(), 202, "start {workflow}");
    json_of(response).await["executionId"].as_str().expect("executionId").to_string()
}

async fn wait_for_status(stack: &TestStack, id: &str, status: &str, within: Duration) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let record = stack.execution(id).await;
        if record["status"] == status {
            return record;
        }
        assert!(Instant::now() < deadline, "execution {id} is not {status} after {within:?}: {record:#}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn the_list_filters_pages_and_searches(stack: &TestStack) {
    stack
        .deploy(
            "id: signup\ntrigger: { type: request }\nsearch: { email: \"{{trigger.body.email}}\", plan: \"{{trigger.body.plan}}\" }\n\
             steps:\n  - { id: check, type: function, code: \"(p) => { if (p.fail) throw new Error('no ' + p.email); return p }\", parameters: { fail: \"{{trigger.body.fail}}\", email: \"{{trigger.body.email}}\" } }\n",
        )
        .await;
    stack
        .deploy("id: other\ntrigger: { type: request }\nsteps:\n  - { id: a, type: function, code: \"() => 1\" }\n")
        .await;
    let mut started = Vec::new();
    for i in 0..7 {
        let user = format!("user-{}", i % 2);
        let body = json!({ "email": format!("p{}@example.com", i % 3), "plan": if i % 2 == 0 { "pro" } else { "free" }, "fail": i == 4 });
        started.push(start_as(stack, "signup", &user, body).await);
    }
    let other = start_as(stack, "other", "user-0", json!({})).await;
    for id in started.iter().chain([&other]) {
        stack.wait_until_ended(id, TIMEOUT).await;
    }
    let newest_first = |ids: &[&String]| ids.iter().rev().map(|s| s.to_string()).collect::<Vec<_>>();

    let all: Vec<&String> = started.iter().chain([&other]).collect();
    assert_eq!(list_all(stack, "", 3).await, newest_first(&all), "everything, newest first, in pages of 3");
    let signups: Vec<&String> = started.iter().collect();
    assert_eq!(list_all(stack, "workflow=signup", 2).await, newest_first(&signups));
    let of_user_1: Vec<&String> = started.iter().enumerate().filter(|(i, _)| i % 2 == 1).map(|(_, id)| id).collect();
    assert_eq!(list_all(stack, "user=user-1", 100).await, newest_first(&of_user_1));
    assert_eq!(list_all(stack, "status=failed", 100).await, vec![started[4].clone()]);
    assert_eq!(list_all(stack, "trigger=request&workflow=other", 100).await, vec![other.clone()]);
    assert!(list_all(stack, "trigger=webhook", 100).await.is_empty());
    let p1: Vec<&String> = [1, 4].iter().map(|&i| &started[i]).collect();
    assert_eq!(list_all(stack, "search.email=p1%40example.com", 1).await, newest_first(&p1));
    let p0_pro: Vec<&String> = [0, 6].iter().map(|&i| &started[i]).collect();
    assert_eq!(list_all(stack, "search.email=p0%40example.com&search.plan=pro", 1).await, newest_first(&p0_pro));
    assert_eq!(list_all(stack, &format!("idPrefix={}", &started[3]), 10).await, vec![started[3].clone()]);

    // A row says what happened.
    let failed = list(stack, "status=failed").await;
    let row = &failed["executions"][0];
    assert_eq!(row["workflowId"], "signup");
    assert_eq!(row["userId"], "user-0");
    assert_eq!(row["trigger"], "request");
    assert_eq!(row["failedStep"], "check");
    assert!(row["error"].as_str().is_some_and(|e| e.contains("no p1@example.com")), "{row:#}");
    assert!(row["durationMs"].as_i64().is_some_and(|ms| ms >= 0), "{row:#}");
    assert_eq!(row["search"], json!({ "email": "p1@example.com", "plan": "pro" }));

    // A time range: the executions started from the fourth one on.
    let fourth = stack.execution(&started[3]).await;
    let since = fourth["startedAt"].as_str().expect("startedAt").replace('+', "%2B");
    let from_fourth: Vec<&String> = started[3..].iter().chain([&other]).collect();
    assert_eq!(list_all(stack, &format!("since={since}"), 100).await, newest_first(&from_fourth));
    assert_eq!(list_all(stack, &format!("until={since}&workflow=signup"), 100).await, newest_first(&signups[..3]));
    assert_eq!(list_all(stack, "since=1h", 100).await.len(), 8, "a relative range");

    // Another project's key lists nothing of this one.
    let response = stack.client().get(history_url(stack, "")).bearer_auth("sk_not_the_key").send().await.expect("list");
    assert_eq!(response.status(), 401);
}

async fn bad_filters_and_cursors_are_refused_naming_the_problem(stack: &TestStack) {
    stack
        .deploy("id: one\ntrigger: { type: request }\nsearch: { order: \"{{trigger.body.order}}\" }\nsteps:\n  - { id: a, type: function, code: \"() => 1\" }\n")
        .await;
    for i in 0..3 {
        let id = start_as(stack, "one", "user-1", json!({ "order": format!("o-{i}") })).await;
        stack.wait_until_ended(&id, TIMEOUT).await;
    }
    let first = list(stack, "limit=1").await;
    let cursor = first["next"].as_str().expect("a next page").to_string();
    assert_eq!(list(stack, &format!("limit=1&cursor={cursor}")).await["executions"].as_array().map(Vec::len), Some(1));
    let mut forged = cursor.clone().into_bytes();
    forged[3] = if forged[3] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).expect("ascii");
    let cases: Vec<(String, &str)> = vec![
        ("status=done".into(), "unknown status `done`"),
        ("trigger=email".into(), "unknown trigger type `email`"),
        ("since=2026-12-08T10:00:00Z&until=2026-12-01T10:00:00Z".into(), "reversed"),
        ("since=yesterday".into(), "`since` `yesterday`"),
        ("limit=0".into(), "`limit` is 1 to 1000"),
        ("limit=1001".into(), "`limit` is 1 to 1000"),
        ("search.customer=x".into(), "search attribute `customer` is not declared"),
        ("search.order=".into(), "`search.order` must be 1 to 256 bytes"),
        ("statuss=failed".into(), "unknown query parameter `statuss`"),
        ("status=failed&status=running".into(), "given twice"),
        (format!("limit=1&cursor={forged}"), "`cursor` is not a cursor this listing gave out"),
        ("cursor=not-a-cursor".into(), "`cursor` is not a cursor this listing gave out"),
        (format!("limit=1&workflow=one&cursor={cursor}"), "other filters"),
    ];
    for (query, needle) in cases {
        let response =
            stack.client().get(history_url(stack, &query)).bearer_auth(&stack.api_key).send().await.expect("list");
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "?{query}");
        let body = json_of(response).await;
        assert_eq!(body["error"]["code"], "bad_request", "?{query}: {body}");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(needle), "?{query}: {message}");
    }
}

async fn replay_starts_a_linked_execution_of_the_same_trigger(stack: &TestStack) {
    let yaml = |answer: u32| {
        format!(
            "id: echo\ntrigger: {{ type: request }}\nsteps:\n  - {{ id: a, type: function, code: \"(p) => ({{ got: p.x, v: {answer} }})\", parameters: {{ x: \"{{{{trigger.body.x}}}}\" }} }}\n"
        )
    };
    stack.deploy(&yaml(1)).await;
    let original = start_as(stack, "echo", "user-7", json!({ "x": "hello" })).await;
    stack.wait_until_ended(&original, TIMEOUT).await;
    stack.deploy(&yaml(2)).await;

    let response = action(stack, &original, "replay", json!({})).await;
    assert_eq!(response.status(), 202);
    let replayed = json_of(response).await;
    let live = replayed["executionId"].as_str().expect("new id").to_string();
    assert_ne!(live, original);
    assert_eq!(replayed["replayOf"], original.as_str());
    assert_eq!(replayed["workflowVersion"], 2);
    let record = stack.wait_until_ended(&live, TIMEOUT).await;
    assert_eq!(record["status"], "succeeded");
    assert_eq!(record["userId"], "user-7");
    assert_eq!(record["replayOf"], original.as_str());
    assert_eq!(record["trigger"]["body"], json!({ "x": "hello" }));
    assert_eq!(record["steps"][0]["output"], json!({ "got": "hello", "v": 2 }), "the live version ran");

    let response = action(stack, &original, "replay", json!({ "version": "original" })).await;
    assert_eq!(response.status(), 202);
    let old = json_of(response).await["executionId"].as_str().expect("id").to_string();
    let record = stack.wait_until_ended(&old, TIMEOUT).await;
    assert_eq!(record["steps"][0]["output"], json!({ "got": "hello", "v": 1 }), "the original version ran");

    let record = stack.execution(&original).await;
    assert_eq!(record["replays"], json!([live, old]), "linked both ways");
    let replays = list(stack, &format!("idPrefix={live}")).await;
    assert_eq!(replays["executions"][0]["replayOf"], original.as_str());

    let response = action(stack, &original, "replay", json!({ "version": "yesterday" })).await;
    assert_eq!(response.status(), 400);
    let response = action(stack, "0190000000-nope", "replay", json!({})).await;
    assert_eq!(response.status(), 404);
}

async fn redrive_runs_only_the_failed_branch_of_a_fan_out_again(stack: &TestStack) {
    let (items, url) = Items::start(&["b"]).await;
    stack
        .deploy(&format!(
            "id: sync-items\ntrigger: {{ type: request }}\nsteps:\n  - id: each\n    type: fan_out\n    over: \"{{{{trigger.body.ids}}}}\"\n    steps:\n      - {{ id: fetch, type: request, url: \"{url}/item/{{{{item}}}}\" }}\n  - {{ id: count, type: function, code: \"(p) => p.n\", parameters: {{ n: \"{{{{steps.each.output}}}}\" }} }}\n"
        ))
        .await;
    let id = start_as(stack, "sync-items", "user-1", json!({ "ids": ["a", "b", "c"] })).await;
    let record = stack.wait_until_ended(&id, TIMEOUT).await;
    assert_eq!(record["status"], "failed", "{record:#}");
    assert_eq!((items.calls("a"), items.calls("b"), items.calls("c")), (1, 1, 1));

    // Nothing to redrive while it is not failed; a failed one is redriven once fixed.
    items.fix();
    let response = action(stack, &id, "redrive", json!({})).await;
    assert_eq!(response.status(), 202);
    let body = json_of(response).await;
    assert_eq!((body["executionId"].as_str(), body["redrives"].as_u64()), (Some(id.as_str()), Some(1)));
    let record = stack.wait_until_ended(&id, TIMEOUT).await;
    assert_eq!(record["status"], "succeeded", "{record:#}");
    assert_eq!(record["redrives"], 1);
    assert_eq!(record["error"], Value::Null);
    assert_eq!((items.calls("a"), items.calls("b"), items.calls("c")), (1, 2, 1), "only the failed branch ran again");
    let count = record["steps"].as_array().expect("steps").iter().find(|s| s["id"] == "count").expect("count step");
    assert_eq!(count["output"].as_array().map(Vec::len), Some(3), "the fan-out's output has every branch: {count:#}");

    let response = action(stack, &id, "redrive", json!({})).await;
    assert_eq!(response.status(), 409);
    let body = json_of(response).await;
    assert_eq!(body["error"]["code"], "execution_status_conflict");
    assert_eq!(body["error"]["status"], "succeeded");
    let response = action(stack, &id, "redrive", json!({ "force": true })).await;
    assert_eq!(response.status(), 400, "no options");
}

async fn cancel_stops_a_waiting_execution_and_answers_a_waiting_caller(stack: &TestStack) {
    // A waiting execution (a Delay) ends cancelled; its wake-up runs nothing.
    stack
        .deploy("id: later\ntrigger: { type: request }\nsteps:\n  - { id: nap, type: delay, for: 2s }\n  - { id: after, type: function, code: \"() => 1\" }\n")
        .await;
    let waiting = start_as(stack, "later", "user-1", json!({})).await;
    wait_for_status(stack, &waiting, "waiting", TIMEOUT).await;
    let response = action(stack, &waiting, "cancel", json!({})).await;
    let status = response.status();
    let body = json_of(response).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({ "executionId": waiting, "status": "cancelled" }));
    let response = action(stack, &waiting, "cancel", json!({})).await;
    assert_eq!(response.status(), 409);
    assert_eq!(json_of(response).await["error"]["status"], "cancelled");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let record = stack.execution(&waiting).await;
    assert_eq!(record["status"], "cancelled");
    assert!(record["steps"].as_array().expect("steps").iter().all(|s| s["id"] != "after"), "{record:#}");
    assert_eq!(list_all(stack, "status=cancelled", 10).await, vec![waiting.clone()]);

    // A synchronous caller waiting on a slow step gets the cancellation at once, and the
    // Response step after the slow one never runs.
    let api = FakeApi::start().await;
    stack
        .deploy(&format!(
            "id: slow-answer\ntrigger: {{ type: request }}\nsteps:\n  - {{ id: slow, type: request, url: \"{}/slow/2500\" }}\n  - {{ id: reply, type: response, body: {{ done: true }} }}\n",
            api.base_url
        ))
        .await;
    let caller = {
        let request = stack.trigger_request("slow-answer").json(&json!({}));
        tokio::spawn(async move { request.send().await.expect("the caller's request") })
    };
    let running = loop {
        let page = list(stack, "workflow=slow-answer&status=running").await;
        if let Some(id) = page["executions"][0]["executionId"].as_str() {
            break id.to_string();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let response = action(stack, &running, "cancel", json!({})).await;
    assert_eq!(response.status(), 200);
    let answer = caller.await.expect("caller task");
    assert_eq!(answer.status(), StatusCode::CONFLICT);
    let body = json_of(answer).await;
    assert_eq!(body["error"]["code"], "execution_cancelled", "{body}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let record = stack.execution(&running).await;
    assert_eq!(record["status"], "cancelled");
    assert!(record["steps"].as_array().expect("steps").iter().all(|s| s["id"] != "reply"), "{record:#}");

    // Nothing ended can be cancelled; nothing cancelled can be redriven.
    let response = action(stack, &running, "redrive", json!({})).await;
    assert_eq!(response.status(), 409);
    assert_eq!(json_of(response).await["error"]["status"], "cancelled");
}

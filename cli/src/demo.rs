//! Tiny in-memory services served by `sluice dev`, so the bundled examples call real HTTP
//! APIs with no account and no network: a CRM under `/demo/crm` and a Slack Web API subset
//! under `/demo/slack/api` (what the `slack` actions `send_message` and `list_channels`
//! call). Not part of the Sluice API.
//!
//! Bounded, as anyone who can reach the dev server can write to them: the CRM keeps the
//! latest [`MAX_LEADS`] leads (older ones are forgotten) and refuses a lead body over
//! [`MAX_LEAD_BYTES`] (413); the Slack demo keeps the latest [`MAX_LEADS`] messages.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use axum::extract::DefaultBodyLimit;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

/// How many leads the demo CRM keeps.
pub const MAX_LEADS: usize = 1000;
/// The largest lead body it accepts.
pub const MAX_LEAD_BYTES: usize = 16 * 1024;

#[derive(Default)]
struct Crm {
    leads: VecDeque<Value>,
    created: u64,
}

#[derive(Deserialize)]
struct Search {
    email: Option<String>,
}

/// The demo routes: `GET /demo/crm/contacts?email=`, `POST /demo/crm/leads`, `GET
/// /demo/crm/leads` (the latest 100, newest first: what the polling example reads), and Slack's
/// `POST chat.postMessage`, `GET conversations.list` and `GET conversations.history` under
/// `/demo/slack/api`.
pub fn routes() -> Router {
    let crm = Arc::new(Mutex::new(Crm::default()));
    let slack: Slack = Arc::default();
    Router::new()
        .route("/demo/crm/contacts", get(search))
        .route("/demo/crm/leads", post(create_lead).get(recent_leads).layer(DefaultBodyLimit::max(MAX_LEAD_BYTES)))
        .with_state(crm)
        .merge(
            Router::new()
                .route("/demo/slack/api/chat.postMessage", post(post_message))
                .route("/demo/slack/api/conversations.list", get(list_channels))
                .route("/demo/slack/api/conversations.history", get(history))
                .layer(DefaultBodyLimit::max(MAX_LEAD_BYTES))
                .with_state(slack),
        )
}

/// The demo workspace's channels.
const CHANNELS: &[(&str, &str)] = &[("C001", "general"), ("C002", "sales"), ("C003", "deals")];

type Slack = Arc<Mutex<VecDeque<Value>>>;

/// As Slack: a request without a bearer token answers 200 `{"ok": false, "error": "not_authed"}`.
fn authed(headers: &HeaderMap) -> bool {
    headers
        .get("authorization")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .is_some_and(|token| !token.trim().is_empty())
}

fn slack_error(error: &str) -> Json<Value> {
    Json(json!({ "ok": false, "error": error }))
}

/// The channel named `#name`, `name` or with id `id`.
fn channel(name: &str) -> Option<&'static str> {
    let name = name.trim_start_matches('#');
    CHANNELS.iter().find(|(id, channel)| *id == name || *channel == name).map(|(id, _)| *id)
}

async fn post_message(State(slack): State<Slack>, headers: HeaderMap, Json(body): Json<Value>) -> Json<Value> {
    if !authed(&headers) {
        return slack_error("not_authed");
    }
    let Some(id) = body["channel"].as_str().and_then(channel) else { return slack_error("channel_not_found") };
    let Some(text) = body["text"].as_str().filter(|text| !text.is_empty()) else { return slack_error("no_text") };
    let Ok(mut messages) = slack.lock() else { return slack_error("internal_error") };
    let seconds = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let ts = format!("{seconds}.{:06}", messages.len());
    let message = json!({ "channel": id, "ts": ts, "text": text, "type": "message" });
    if messages.len() >= MAX_LEADS {
        messages.pop_front();
    }
    messages.push_back(message.clone());
    Json(json!({ "ok": true, "channel": id, "ts": ts, "message": message }))
}

#[derive(Deserialize)]
struct Page {
    cursor: Option<String>,
    limit: Option<usize>,
    channel: Option<String>,
}

/// Pages of `limit` channels (default 2, so paging shows); the cursor is the next index.
async fn list_channels(headers: HeaderMap, Query(page): Query<Page>) -> Json<Value> {
    if !authed(&headers) {
        return slack_error("not_authed");
    }
    let start: usize = page.cursor.as_deref().and_then(|c| c.parse().ok()).unwrap_or(0);
    let limit = page.limit.unwrap_or(2).clamp(1, 1000);
    let channels: Vec<Value> = CHANNELS
        .iter()
        .skip(start)
        .take(limit)
        .map(|(id, name)| json!({ "id": id, "name": name, "is_channel": true }))
        .collect();
    let next = if start + limit < CHANNELS.len() { (start + limit).to_string() } else { String::new() };
    Json(json!({ "ok": true, "channels": channels, "response_metadata": { "next_cursor": next } }))
}

/// The messages posted to `channel`, newest first.
async fn history(State(slack): State<Slack>, headers: HeaderMap, Query(page): Query<Page>) -> Json<Value> {
    if !authed(&headers) {
        return slack_error("not_authed");
    }
    let Some(id) = page.channel.as_deref().and_then(channel) else { return slack_error("channel_not_found") };
    let Ok(messages) = slack.lock() else { return slack_error("internal_error") };
    let found: Vec<Value> = messages.iter().rev().filter(|m| m["channel"] == id).cloned().collect();
    Json(json!({ "ok": true, "messages": found }))
}

/// Every `@example.com` address is a known contact; leads created here are found too.
async fn search(State(crm): State<Arc<Mutex<Crm>>>, Query(search): Query<Search>) -> Json<Value> {
    let email = search.email.unwrap_or_default().to_ascii_lowercase();
    let mut contacts: Vec<Value> = Vec::new();
    if email.ends_with("@example.com") {
        let name = email.split('@').next().unwrap_or_default();
        contacts.push(json!({ "id": format!("c_{name}"), "email": email, "name": name, "stage": "customer" }));
    }
    if let Ok(crm) = crm.lock() {
        contacts.extend(crm.leads.iter().filter(|l| l["email"] == json!(email)).cloned());
    }
    Json(json!({ "total": contacts.len(), "contacts": contacts }))
}

/// How many leads `GET /demo/crm/leads` lists.
const RECENT_LEADS: usize = 100;

async fn recent_leads(State(crm): State<Arc<Mutex<Crm>>>) -> Json<Value> {
    let leads: Vec<Value> =
        crm.lock().map(|crm| crm.leads.iter().rev().take(RECENT_LEADS).cloned().collect()).unwrap_or_default();
    Json(json!({ "leads": leads }))
}

async fn create_lead(State(crm): State<Arc<Mutex<Crm>>>, Json(lead): Json<Value>) -> (StatusCode, Json<Value>) {
    let Ok(mut crm) = crm.lock() else {
        return (StatusCode::INTERNAL_SERVER_ERROR, Json(json!({ "error": "busy" })));
    };
    crm.created += 1;
    let id = format!("l_{}", crm.created);
    let mut stored = lead;
    stored["id"] = json!(id);
    if crm.leads.len() >= MAX_LEADS {
        crm.leads.pop_front();
    }
    crm.leads.push_back(stored.clone());
    (StatusCode::CREATED, Json(stored))
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn serve() -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        tokio::spawn(async move { axum::serve(listener, routes()).await });
        url
    }

    #[tokio::test]
    async fn the_demo_crm_keeps_the_latest_leads_and_refuses_large_ones() {
        let url = serve().await;
        let client = reqwest::Client::new();
        for n in 0..MAX_LEADS + 5 {
            let lead = json!({ "email": format!("lead{n}@demo.test") });
            let response = client.post(format!("{url}/demo/crm/leads")).json(&lead).send().await.expect("post");
            assert_eq!(response.status(), 201);
        }
        let found = |email: &str| {
            let request = client.get(format!("{url}/demo/crm/contacts")).query(&[("email", email)]);
            async move { request.send().await.expect("get").json::<Value>().await.expect("json")["total"].clone() }
        };
        assert_eq!(found("lead4@demo.test").await, json!(0), "the oldest are forgotten");
        assert_eq!(found("lead5@demo.test").await, json!(1));
        assert_eq!(found(&format!("lead{}@demo.test", MAX_LEADS + 4)).await, json!(1));
        let big = json!({ "email": "big@demo.test", "notes": "x".repeat(MAX_LEAD_BYTES) });
        let response = client.post(format!("{url}/demo/crm/leads")).json(&big).send().await.expect("post");
        assert_eq!(response.status(), 413);
    }

    #[tokio::test]
    async fn the_demo_slack_answers_as_slack_does() {
        let url = serve().await;
        let client = reqwest::Client::new();
        let api = |method: &str| format!("{url}/demo/slack/api/{method}");
        let post =
            |token: &str, body: Value| client.post(api("chat.postMessage")).bearer_auth(token).json(&body).send();
        let answer = |response: reqwest::Response| async move { response.json::<Value>().await.expect("json") };
        let unauthed = client.post(api("chat.postMessage")).json(&json!({ "channel": "#sales", "text": "x" }));
        assert_eq!(answer(unauthed.send().await.expect("post")).await["error"], "not_authed");
        let missing = post("xoxb-1", json!({ "channel": "#nope", "text": "x" })).await.expect("post");
        assert_eq!(answer(missing).await["error"], "channel_not_found");
        let posted = answer(post("xoxb-1", json!({ "channel": "#sales", "text": "won" })).await.expect("post")).await;
        assert_eq!((&posted["ok"], &posted["channel"]), (&json!(true), &json!("C002")), "{posted}");
        let history = client.get(api("conversations.history")).bearer_auth("t").query(&[("channel", "sales")]);
        let history = answer(history.send().await.expect("get")).await;
        assert_eq!(history["messages"][0]["text"], "won");
        let first = answer(client.get(api("conversations.list")).bearer_auth("t").send().await.expect("get")).await;
        assert_eq!(first["channels"].as_array().map(Vec::len), Some(2));
        assert_eq!(first["response_metadata"]["next_cursor"], "2");
        let last = client.get(api("conversations.list")).bearer_auth("t").query(&[("cursor", "2")]);
        let last = answer(last.send().await.expect("get")).await;
        assert_eq!(
            (&last["channels"][0]["name"], &last["response_metadata"]["next_cursor"]),
            (&json!("deals"), &json!(""))
        );
    }
}

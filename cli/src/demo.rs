//! A tiny in-memory CRM served by `sluice dev` under `/demo/crm`, so the bundled examples
//! call a real HTTP API with no account and no network. Not part of the Sluice API.
//!
//! Bounded, as anyone who can reach the dev server can write to it without credentials: it
//! keeps the latest [`MAX_LEADS`] leads (older ones are forgotten) and refuses a lead body
//! over [`MAX_LEAD_BYTES`] (413).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use axum::extract::DefaultBodyLimit;

use axum::extract::{Query, State};
use axum::http::StatusCode;
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

/// The demo CRM routes: `GET /demo/crm/contacts?email=` and `POST /demo/crm/leads`.
pub fn routes() -> Router {
    let crm = Arc::new(Mutex::new(Crm::default()));
    Router::new()
        .route("/demo/crm/contacts", get(search))
        .route("/demo/crm/leads", post(create_lead).layer(DefaultBodyLimit::max(MAX_LEAD_BYTES)))
        .with_state(crm)
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
}

//! A tiny in-memory CRM served by `sluice dev` under `/demo/crm`, so the bundled examples
//! call a real HTTP API with no account and no network. Not part of the Sluice API.

use std::sync::{Arc, Mutex};

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Default)]
struct Crm {
    leads: Vec<Value>,
}

#[derive(Deserialize)]
struct Search {
    email: Option<String>,
}

/// The demo CRM routes: `GET /demo/crm/contacts?email=` and `POST /demo/crm/leads`.
pub fn routes() -> Router {
    let crm = Arc::new(Mutex::new(Crm::default()));
    Router::new().route("/demo/crm/contacts", get(search)).route("/demo/crm/leads", post(create_lead)).with_state(crm)
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
    let id = format!("l_{}", crm.leads.len() + 1);
    let mut stored = lead;
    stored["id"] = json!(id);
    crm.leads.push(stored.clone());
    (StatusCode::CREATED, Json(stored))
}

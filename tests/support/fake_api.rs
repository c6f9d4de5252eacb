//! A local HTTP server standing in for a third-party API (a CRM): known contacts, an endpoint
//! that fails a set number of times before it succeeds, a slow one, and any status code.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

#[derive(Default)]
struct Calls {
    by_key: HashMap<String, u32>,
    idempotency_keys: Vec<String>,
}

/// A running fake API; the server stops with the test's runtime.
pub struct FakeApi {
    pub base_url: String,
    calls: Arc<Mutex<Calls>>,
}

impl FakeApi {
    pub async fn start() -> FakeApi {
        let calls = Arc::new(Mutex::new(Calls::default()));
        let app = Router::new()
            .route("/contacts", get(contacts))
            .route("/flaky/{key}/{failures}", post(flaky).get(flaky))
            .route("/slow/{millis}", get(slow))
            .route("/status/{code}", get(status).post(status))
            .with_state(calls.clone());
        let listener =
            tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await.expect("bind fake API");
        let addr = listener.local_addr().expect("fake API address");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeApi { base_url: format!("http://{addr}"), calls }
    }

    /// How many times `/flaky/{key}/..` was called.
    pub fn calls(&self, key: &str) -> u32 {
        self.calls.lock().expect("calls").by_key.get(key).copied().unwrap_or(0)
    }

    /// Every Idempotency-Key header received by `/flaky`.
    pub fn idempotency_keys(&self) -> Vec<String> {
        self.calls.lock().expect("calls").idempotency_keys.clone()
    }
}

type Shared = State<Arc<Mutex<Calls>>>;

/// `alice@example.com` and `bob@example.com` exist.
async fn contacts(Query(q): Query<HashMap<String, String>>) -> Json<Value> {
    let email = q.get("email").cloned().unwrap_or_default();
    let found: Vec<Value> = ["alice@example.com", "bob@example.com"]
        .iter()
        .filter(|known| **known == email)
        .map(|known| json!({ "id": format!("c-{}", &known[..3]), "email": known }))
        .collect();
    Json(json!({ "total": found.len(), "contacts": found }))
}

/// Fails with 503 the first `failures` calls for `key`, then answers 200.
async fn flaky(
    State(calls): Shared,
    Path((key, failures)): Path<(String, u32)>,
    headers: HeaderMap,
) -> (StatusCode, Json<Value>) {
    let n = {
        let mut calls = calls.lock().expect("calls");
        if let Some(k) = headers.get("idempotency-key").and_then(|v| v.to_str().ok()) {
            calls.idempotency_keys.push(k.to_string());
        }
        let n = calls.by_key.entry(key).or_default();
        *n += 1;
        *n
    };
    if n <= failures {
        (StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "error": "try again", "call": n })))
    } else {
        (StatusCode::OK, Json(json!({ "ok": true, "call": n })))
    }
}

async fn slow(Path(millis): Path<u64>) -> Json<Value> {
    tokio::time::sleep(Duration::from_millis(millis)).await;
    Json(json!({ "slept": millis }))
}

async fn status(Path(code): Path<u16>) -> (StatusCode, Json<Value>) {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::IM_A_TEAPOT);
    (status, Json(json!({ "status": code })))
}

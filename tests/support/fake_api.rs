//! A local HTTP server standing in for a third-party API (a CRM): known contacts, an endpoint
//! that fails a set number of times before it succeeds, a slow one, one that never answers its
//! first call, and any status code.

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
    /// When each `/limited` call arrived.
    limited_at: Vec<std::time::Instant>,
    in_flight: u32,
    max_in_flight: u32,
}

/// A running fake API; the server stops with the test's runtime.
/// Serves `app` on a free port of 127.0.0.1 until the test's runtime stops; returns its base
/// URL (`http://127.0.0.1:PORT`).
pub async fn serve_locally(app: Router) -> String {
    let listener =
        tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await.expect("bind a local port");
    let addr = listener.local_addr().expect("local address");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}")
}

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
            .route("/hang-once/{key}", get(hang_once).post(hang_once))
            .route("/counted/{key}/{millis}", get(counted))
            .route("/status/{code}", get(status).post(status))
            .route("/list/{n}", get(list))
            .route("/nested/{depth}", get(nested))
            .route("/file.png", get(png))
            .route("/pages/cursor", get(cursor_page))
            .route("/pages/link", get(link_page))
            .route("/pages/number", get(number_page))
            .route("/limited/{retry_after}", get(limited))
            .route("/concurrent/{millis}", get(concurrent))
            .with_state(calls.clone());
        FakeApi { base_url: serve_locally(app).await, calls }
    }

    /// How many times `/flaky/{key}/..`, `/hang-once/{key}` or `/counted/{key}/..` was called.
    pub fn calls(&self, key: &str) -> u32 {
        self.calls.lock().expect("calls").by_key.get(key).copied().unwrap_or(0)
    }

    /// When each call to `/limited` arrived.
    pub fn limited_calls(&self) -> Vec<std::time::Instant> {
        self.calls.lock().expect("calls").limited_at.clone()
    }

    /// The most `/concurrent` calls that were in flight at once.
    pub fn max_in_flight(&self) -> u32 {
        self.calls.lock().expect("calls").max_in_flight
    }

    /// Every Idempotency-Key header received by `/flaky` and `/hang-once`, in order.
    pub fn idempotency_keys(&self) -> Vec<String> {
        self.calls.lock().expect("calls").idempotency_keys.clone()
    }
}

type Shared = State<Arc<Mutex<Calls>>>;

/// JSON arrays nested `depth` levels around a 0 (`[[0]]` is depth 2).
pub fn nested_json(depth: usize) -> Value {
    (0..depth).fold(json!(0), |inner, _| json!([inner]))
}

/// `nested_json(depth)`, capped at 1000 levels.
async fn nested(Path(depth): Path<usize>) -> Json<Value> {
    Json(nested_json(depth.min(1000)))
}

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

/// Takes `millis`, then answers 200; counts the calls for `key`.
async fn counted(State(calls): Shared, Path((key, millis)): Path<(String, u64)>) -> Json<Value> {
    let n = {
        let mut calls = calls.lock().expect("calls");
        let n = calls.by_key.entry(key).or_default();
        *n += 1;
        *n
    };
    tokio::time::sleep(Duration::from_millis(millis)).await;
    Json(json!({ "ok": true, "call": n }))
}

/// Never answers the first call for `key` (it waits until the test is over); answers later
/// calls 200 at once. Stands in for the request a killed process was waiting on.
async fn hang_once(State(calls): Shared, Path(key): Path<String>, headers: HeaderMap) -> Json<Value> {
    let n = {
        let mut calls = calls.lock().expect("calls");
        if let Some(k) = headers.get("idempotency-key").and_then(|v| v.to_str().ok()) {
            calls.idempotency_keys.push(k.to_string());
        }
        let n = calls.by_key.entry(key).or_default();
        *n += 1;
        *n
    };
    if n == 1 {
        std::future::pending::<()>().await;
    }
    Json(json!({ "ok": true, "call": n }))
}

async fn slow(Path(millis): Path<u64>) -> Json<Value> {
    tokio::time::sleep(Duration::from_millis(millis)).await;
    Json(json!({ "slept": millis }))
}

async fn status(Path(code): Path<u16>) -> (StatusCode, Json<Value>) {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::IM_A_TEAPOT);
    (status, Json(json!({ "status": code })))
}

/// `{ "items": [0, 1, ..., n-1] }`.
async fn list(Path(n): Path<u32>) -> Json<Value> {
    Json(json!({ "items": (0..n).collect::<Vec<_>>() }))
}

/// The first call answers 429 with `Retry-After: <retry_after>` (seconds); later ones 200.
async fn limited(State(calls): Shared, Path(retry_after): Path<u32>) -> axum::response::Response {
    use axum::response::IntoResponse;
    let first = {
        let mut calls = calls.lock().expect("calls");
        calls.limited_at.push(std::time::Instant::now());
        calls.limited_at.len() == 1
    };
    if first {
        (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", retry_after.to_string())],
            Json(json!({ "error": "slow down" })),
        )
            .into_response()
    } else {
        Json(json!({ "ok": true })).into_response()
    }
}

/// Takes `millis`, counting how many calls are in flight at once.
async fn concurrent(State(calls): Shared, Path(millis): Path<u64>) -> Json<Value> {
    {
        let mut calls = calls.lock().expect("calls");
        calls.in_flight += 1;
        calls.max_in_flight = calls.max_in_flight.max(calls.in_flight);
    }
    tokio::time::sleep(Duration::from_millis(millis)).await;
    calls.lock().expect("calls").in_flight -= 1;
    Json(json!({ "slept": millis }))
}

/// Bytes that are not UTF-8 (a PNG signature, then every byte value), as a PNG.
pub fn png_bytes() -> Vec<u8> {
    let mut bytes = vec![0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a];
    bytes.extend((0..=255u8).cycle().take(4096));
    bytes
}

async fn png() -> axum::response::Response {
    use axum::response::IntoResponse;
    ([("content-type", "image/png"), ("content-disposition", "attachment; filename=\"chart.png\"")], png_bytes())
        .into_response()
}

/// Seven records, `a` to `g`, three to a page.
const RECORDS: [&str; 7] = ["a", "b", "c", "d", "e", "f", "g"];

fn page_of(start: usize) -> Vec<&'static str> {
    RECORDS.iter().skip(start).take(3).copied().collect()
}

/// Cursor in the body: `?after=<index>`; `next` is absent on the last page.
async fn cursor_page(Query(q): Query<HashMap<String, String>>) -> Json<Value> {
    let start: usize = q.get("after").and_then(|a| a.parse().ok()).unwrap_or(0);
    let next = (start + 3 < RECORDS.len()).then(|| (start + 3).to_string());
    Json(json!({ "data": page_of(start), "meta": { "next": next } }))
}

/// A top-level array with a `Link: <...>; rel="next"` header (relative).
async fn link_page(Query(q): Query<HashMap<String, String>>) -> axum::response::Response {
    use axum::response::IntoResponse;
    let page: usize = q.get("page").and_then(|a| a.parse().ok()).unwrap_or(0);
    let body = Json(json!(page_of(page * 3)));
    if (page + 1) * 3 < RECORDS.len() {
        let link = format!("</pages/link?page={}>; rel=\"next\"", page + 1);
        ([("link", link)], body).into_response()
    } else {
        body.into_response()
    }
}

/// Page numbers from 1: `?p=<n>`; an empty page past the end.
async fn number_page(Query(q): Query<HashMap<String, String>>) -> Json<Value> {
    let page: usize = q.get("p").and_then(|a| a.parse().ok()).unwrap_or(1).max(1);
    Json(json!({ "results": page_of((page - 1) * 3) }))
}

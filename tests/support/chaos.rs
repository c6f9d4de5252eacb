//! Misbehaving neighbours for the fault-injection suite (`tests/faults.rs`), driven by one
//! seeded random generator each so that a failing run can be replayed from its seed:
//!
//! - [`ChaosApi`], a third-party API that answers `/chaos/{execution}/{step}` fast, slowly,
//!   with 500, 502 or 503, with 429 and `Retry-After: 1`, or not before the caller's timeout,
//!   and remembers every call with its `Idempotency-Key`;
//! - [`ChaosProxy`], a proxy in front of the local AWS-API server that answers DynamoDB and
//!   SQS requests with throttling errors or 503, or drops the connection without an answer,
//!   before or after forwarding the request (then the request took effect and the client
//!   does not know it).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use crate::fake_api::serve_locally;

/// Counts by kind, printed by the suite.
pub type Tally = BTreeMap<&'static str, u64>;

/// One call the API received.
#[derive(Debug, Clone)]
pub struct Call {
    pub execution: String,
    pub step: String,
    pub idempotency_key: Option<String>,
}

struct ApiState {
    rng: StdRng,
    calls: Vec<Call>,
    outcomes: Tally,
}

/// The misbehaving third-party API; it stops with the test's runtime.
pub struct ChaosApi {
    pub base_url: String,
    state: Arc<Mutex<ApiState>>,
}

/// How long a call that "times out" is held: longer than the workflows' request `timeout`.
pub const HANG: Duration = Duration::from_secs(4);

impl ChaosApi {
    pub async fn start(seed: u64) -> ChaosApi {
        let state = Arc::new(Mutex::new(ApiState {
            rng: StdRng::seed_from_u64(seed),
            calls: Vec::new(),
            outcomes: Tally::new(),
        }));
        let app = Router::new().route("/chaos/{execution}/{step}", any(chaos)).with_state(state.clone());
        ChaosApi { base_url: serve_locally(app).await, state }
    }

    pub fn calls(&self) -> Vec<Call> {
        self.state.lock().expect("chaos state").calls.clone()
    }

    /// How often each outcome was served.
    pub fn outcomes(&self) -> Tally {
        self.state.lock().expect("chaos state").outcomes.clone()
    }
}

async fn chaos(
    State(state): State<Arc<Mutex<ApiState>>>,
    Path((execution, step)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let (outcome, pause) = {
        let mut state = state.lock().expect("chaos state");
        let idempotency_key = headers.get("idempotency-key").and_then(|v| v.to_str().ok()).map(str::to_string);
        state.calls.push(Call { execution, step: step.clone(), idempotency_key });
        let roll: f64 = state.rng.random();
        let pause = Duration::from_millis(state.rng.random_range(50..600));
        let outcome = match roll {
            r if r < 0.58 => "ok",
            r if r < 0.70 => "slow",
            r if r < 0.78 => "500",
            r if r < 0.86 => "429",
            r if r < 0.90 => "502",
            r if r < 0.95 => "503",
            _ => "timeout",
        };
        *state.outcomes.entry(outcome).or_default() += 1;
        (outcome, pause)
    };
    let ok = || (StatusCode::OK, axum::Json(serde_json::json!({ "ok": true, "step": step }))).into_response();
    match outcome {
        "ok" => ok(),
        "slow" => {
            tokio::time::sleep(pause).await;
            ok()
        }
        "timeout" => {
            tokio::time::sleep(HANG).await;
            ok()
        }
        "429" => (StatusCode::TOO_MANY_REQUESTS, [("retry-after", "1")], "slow down").into_response(),
        status => {
            let code = status.parse().ok().and_then(|c| StatusCode::from_u16(c).ok());
            (code.unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), "unavailable").into_response()
        }
    }
}

struct ProxyState {
    rng: Mutex<StdRng>,
    upstream: String,
    http: reqwest::Client,
    /// Faults are injected only while this is set (not while the test sets up).
    enabled: AtomicBool,
    /// Probability that a request meets a fault.
    rate: f64,
    faults: Mutex<Tally>,
    /// The next request whose body contains this is forwarded and its answer dropped.
    drop_answer_of: Mutex<Option<String>>,
}

/// A proxy to the local AWS-API server that injects faults; stops with the test's runtime.
pub struct ChaosProxy {
    pub endpoint: String,
    state: Arc<ProxyState>,
}

#[derive(Debug)]
struct Dropped;

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped by the chaos proxy")
    }
}

impl std::error::Error for Dropped {}

impl ChaosProxy {
    /// A proxy to `upstream` that, once enabled, meets a fraction `rate` of requests with a
    /// fault.
    pub async fn start(upstream: &str, seed: u64, rate: f64) -> ChaosProxy {
        let state = Arc::new(ProxyState {
            rng: Mutex::new(StdRng::seed_from_u64(seed)),
            upstream: upstream.trim_end_matches('/').to_string(),
            http: reqwest::Client::new(),
            enabled: AtomicBool::new(false),
            rate,
            faults: Mutex::new(Tally::new()),
            drop_answer_of: Mutex::new(None),
        });
        let listener =
            tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await.expect("bind a local port");
        let endpoint = format!("http://{}", listener.local_addr().expect("local address"));
        let serving = state.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let state = serving.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request| proxy(state.clone(), request));
                    // A dropped connection ends here with the service's error, as intended.
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        ChaosProxy { endpoint, state }
    }

    pub fn enable(&self, on: bool) {
        self.state.enabled.store(on, Ordering::SeqCst);
    }

    /// Forwards the next request whose body contains `needle` and drops its answer (the
    /// request takes effect; the client sees a dropped connection).
    pub fn drop_next_answer(&self, needle: &str) {
        *self.state.drop_answer_of.lock().expect("proxy target") = Some(needle.to_string());
    }

    pub fn faults(&self) -> Tally {
        self.state.faults.lock().expect("proxy faults").clone()
    }
}

async fn proxy(state: Arc<ProxyState>, request: hyper::Request<hyper::body::Incoming>) -> Result<Response, Dropped> {
    let target = request.headers().get("x-amz-target").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    let dynamodb = target.starts_with("DynamoDB");
    let fault = if state.enabled.load(Ordering::SeqCst) {
        let mut rng = state.rng.lock().expect("proxy rng");
        if rng.random_bool(state.rate) {
            Some(match rng.random_range(0..4) {
                0 => "throttled",
                1 => "503",
                2 => "dropped before forwarding",
                _ => "dropped after forwarding",
            })
        } else {
            None
        }
    } else {
        None
    };
    if let Some(kind) = fault {
        *state.faults.lock().expect("proxy faults").entry(kind).or_default() += 1;
    }
    match fault {
        Some("throttled") => {
            let (code, header) = if dynamodb {
                ("com.amazonaws.dynamodb.v20120810#ThrottlingException", None)
            } else {
                // What SQS's JSON protocol answers (the SDK reads the query-compatible code).
                ("com.amazonaws.sqs#RequestThrottled", Some("RequestThrottled;Sender"))
            };
            let body = serde_json::json!({ "__type": code, "message": "Rate exceeded" }).to_string();
            let mut response = Response::builder().status(400).header("content-type", "application/x-amz-json-1.0");
            if let Some(header) = header {
                response = response.header("x-amzn-query-error", header);
            }
            return Ok(response.body(Body::from(body)).expect("a response"));
        }
        Some("503") => {
            let body = serde_json::json!({ "__type": "ServiceUnavailable", "message": "Service Unavailable" });
            let response = Response::builder().status(503).header("content-type", "application/x-amz-json-1.0");
            return Ok(response.body(Body::from(body.to_string())).expect("a response"));
        }
        Some("dropped before forwarding") => return Err(Dropped),
        _ => {}
    }
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(Body::new(body), 64 << 20).await.map_err(|_| Dropped)?;
    let path = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let mut forward = state.http.request(parts.method.clone(), format!("{}{path}", state.upstream));
    for (name, value) in &parts.headers {
        if name != "host" && name != "content-length" {
            forward = forward.header(name, value);
        }
    }
    let targeted = {
        let mut target = state.drop_answer_of.lock().expect("proxy target");
        let hit = target.as_deref().is_some_and(|needle| String::from_utf8_lossy(&body).contains(needle));
        if hit {
            *target = None;
        }
        hit
    };
    let answer = forward.body(body).send().await.map_err(|_| Dropped)?;
    let status = answer.status();
    let headers = answer.headers().clone();
    let bytes = answer.bytes().await.map_err(|_| Dropped)?;
    if fault == Some("dropped after forwarding") || targeted {
        return Err(Dropped);
    }
    let mut response = Response::builder().status(status);
    for (name, value) in &headers {
        if name != "content-length" && name != "transfer-encoding" && name != "connection" {
            response = response.header(name, value);
        }
    }
    Ok(response.body(Body::from(bytes)).expect("a response"))
}

//! The `Idempotency-Key` header on the trigger routes (the request trigger and both app event
//! routes), over the protocol of [`crate::idempotency`]: the key read from the request, the
//! claim and the start run together in a task of their own, and a repeat answered.
//!
//! Invariant: a claim is always completed or released by the task that won it, even when the
//! caller disconnects (the task is not the request's); and a repeat gets the first answer —
//! the same status and body, plus `Idempotent-Replayed: true`.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Response, StatusCode};

use super::respond::settled_to_http;
use crate::error::{ApiError, json_response};
use crate::idempotency::{self, Claimed, Keyed};
use crate::ports::{IdempotencyKey, Store, StoredAnswer};
use crate::record::now;
use crate::runtime::Runtime;
use crate::settle;

/// The header a repeat's answer carries.
pub const REPLAYED_HEADER: &str = "idempotent-replayed";

/// The request's `Idempotency-Key` (400 when malformed), read before anything else.
pub(super) fn key_in(headers: &http::HeaderMap) -> Result<Option<String>, ApiError> {
    Ok(idempotency::key_in(headers)?)
}

/// `key` (if the request sent one) in its scope, with the request's hash.
pub(super) fn keyed(
    key: Option<String>,
    parts: &http::request::Parts,
    body: &Bytes,
    project_id: &str,
    route: String,
    caller: &str,
) -> Option<Keyed> {
    let key = key?;
    let request_hash =
        idempotency::request_hash(parts.method.as_str(), parts.uri.path(), parts.uri.query(), body.as_ref());
    let key = IdempotencyKey { project_id: project_id.to_string(), route, caller: caller.to_string(), key };
    Some(Keyed { key, request_hash })
}

/// The answer of an earlier request with the same key, if there is one (see
/// [`idempotency::earlier`]).
pub(super) async fn earlier(runtime: &Runtime, keyed: Option<&Keyed>) -> Result<Option<Response<Bytes>>, ApiError> {
    let Some(keyed) = keyed else {
        return Ok(None);
    };
    match idempotency::earlier(runtime.store.as_ref(), keyed).await? {
        Some(answer) => replay(runtime, answer).await.map(Some),
        None => Ok(None),
    }
}

/// What [`start_once`] did.
pub(super) enum Once<T> {
    /// This request started: `start`'s output.
    Started(T),
    /// An earlier request with the key answers this one.
    Repeat(Response<Bytes>),
}

/// Runs `start` unless an earlier request with the key did (`keyed`; without a key, simply
/// runs it): claims the key with `answer`, starts, then completes the claim — or releases it
/// when the start failed before creating anything (see [`crate::idempotency`]). In a task of
/// its own, so that a caller that disconnects cannot stop it half-way.
pub(super) async fn start_once<T, F>(
    runtime: &Runtime,
    keyed: Option<Keyed>,
    answer: StoredAnswer,
    start: F,
) -> Result<Once<T>, ApiError>
where
    T: Send + 'static,
    F: Future<Output = Result<T, ApiError>> + Send + 'static,
{
    let store: Arc<dyn Store> = runtime.store.clone();
    let task = tokio::spawn(async move {
        let Some(keyed) = keyed else {
            return start.await.map(Ok);
        };
        let claim = match idempotency::claim(store.as_ref(), &keyed, answer).await? {
            Claimed::Won(claim) => claim,
            Claimed::Repeat(answer) => return Ok(Err(answer)),
        };
        let started = start.await;
        let created = match &started {
            Ok(_) | Err(ApiError::AfterStart { .. }) => true,
            Err(_) => false,
        };
        if created {
            match claim.complete(store.as_ref()).await {
                Ok(true) => {}
                Ok(false) => {
                    tracing::warn!(key = ?keyed.key, "the idempotency claim lapsed before its start completed")
                }
                Err(error) => {
                    tracing::error!(key = ?keyed.key, %error, "the idempotency claim could not be completed; it lapses")
                }
            }
        } else if let Err(error) = claim.release(store.as_ref()).await {
            tracing::warn!(key = ?keyed.key, %error, "the idempotency claim could not be released; it lapses");
        }
        started.map(Ok)
    });
    match task.await.map_err(|e| ApiError::Internal(format!("the start task failed: {e}")))?? {
        Ok(started) => Ok(Once::Started(started)),
        Err(answer) => Ok(Once::Repeat(replay(runtime, answer).await?)),
    }
}

/// The first answer again: a fixed status and body as stored, or what is settled for the
/// synchronous execution — waiting, as its first caller does, until its response deadline
/// (then the same 542, settled once for every caller).
async fn replay(runtime: &Runtime, answer: StoredAnswer) -> Result<Response<Bytes>, ApiError> {
    let mut response = match answer {
        StoredAnswer::Fixed { status, body } => {
            json_response(StatusCode::from_u16(status).unwrap_or(StatusCode::ACCEPTED), &body)
        }
        StoredAnswer::Settled { execution_id } => {
            let store = runtime.store.as_ref();
            let execution = store.get_execution(&execution_id).await?.ok_or_else(|| {
                ApiError::Internal(format!("execution {execution_id} of a remembered Idempotency-Key is missing"))
            })?;
            let watch = runtime.signals.watch(&execution.id);
            let left = match execution.response_deadline {
                Some(deadline) => (deadline - now()).to_std().unwrap_or(Duration::ZERO),
                None => runtime.settings.response_timeout,
            };
            let give_up_at = Instant::now() + left + Duration::from_secs(1);
            let settled =
                settle::wait(store, &watch, give_up_at, runtime.settings.poll_interval).await.map_err(|e| {
                    ApiError::AfterStart {
                        execution_id: execution.id.clone(),
                        reason: format!("its answer could not be read: {e}"),
                    }
                })?;
            settled_to_http(store, &execution, &settled).await
        }
    };
    response.headers_mut().insert(HeaderName::from_static(REPLAYED_HEADER), HeaderValue::from_static("true"));
    Ok(response)
}

#[cfg(all(test, feature = "sqlite"))]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use serde_json::{Value, json};

    use super::*;
    use crate::adapters::sqlite::Sqlite;
    use crate::net::{HttpClient, OutboundPolicy};
    use crate::ports::StoreError;
    use crate::runtime::Settings;

    fn runtime() -> Runtime {
        let db = Arc::new(Sqlite::in_memory().expect("SQLite"));
        let http = HttpClient::new(OutboundPolicy { allow_loopback: true, allow_private: false }).expect("client");
        Runtime::new(db.clone(), db.clone(), db, http, Settings::default())
    }

    fn request(key: &str, body: &str) -> Keyed {
        Keyed {
            key: IdempotencyKey {
                project_id: "p".into(),
                route: "trigger:w".into(),
                caller: "u".into(),
                key: key.into(),
            },
            request_hash: idempotency::request_hash("POST", "/projects/p/sdk/triggers/w", None, body.as_bytes()),
        }
    }

    fn accepted(id: &str) -> StoredAnswer {
        StoredAnswer::Fixed { status: 202, body: json!({ "executionId": id }) }
    }

    /// Starts `request` with `outcome`, counting the starts that ran in `starts`.
    async fn run(
        runtime: &Runtime,
        request: &Keyed,
        id: &str,
        starts: &Arc<AtomicUsize>,
        outcome: Result<(), ApiError>,
    ) -> Result<Once<()>, ApiError> {
        let starts = starts.clone();
        let start = async move {
            starts.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(50)).await;
            outcome
        };
        start_once(runtime, Some(request.clone()), accepted(id), start).await
    }

    fn body_of(response: &Response<Bytes>) -> Value {
        serde_json::from_slice(response.body()).unwrap_or(Value::Null)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_duplicates_run_the_start_once_and_all_get_its_answer() {
        let runtime = runtime();
        let request = request("k1", "{}");
        let starts = Arc::new(AtomicUsize::new(0));
        let ids: Vec<String> = (0..20).map(|i| format!("e{i}")).collect();
        let calls = ids.iter().map(|id| run(&runtime, &request, id, &starts, Ok(())));
        let outcomes = futures_util::future::join_all(calls).await;
        assert_eq!(starts.load(Ordering::SeqCst), 1, "one start ran");
        let mut started = 0;
        let mut winner = None;
        for (i, outcome) in outcomes.into_iter().enumerate() {
            match outcome.expect("answered") {
                Once::Started(()) => {
                    started += 1;
                    winner = Some(format!("e{i}"));
                }
                Once::Repeat(response) => {
                    assert_eq!(response.status(), StatusCode::ACCEPTED);
                    assert_eq!(response.headers().get(REPLAYED_HEADER).map(|v| v.as_bytes()), Some(&b"true"[..]));
                    let id = body_of(&response)["executionId"].as_str().map(str::to_string);
                    assert!(winner.is_none() || id == winner, "{id:?} is the winner's");
                    winner = id;
                }
            }
        }
        assert_eq!(started, 1);
    }

    #[tokio::test]
    async fn a_start_that_failed_before_creating_anything_frees_the_key_for_a_retry() {
        let runtime = runtime();
        let request = request("k2", "{}");
        let starts = Arc::new(AtomicUsize::new(0));
        let failed = run(&runtime, &request, "e1", &starts, Err(StoreError::Backend("throttled".into()).into())).await;
        assert!(matches!(failed, Err(ApiError::Store(_))), "the failure is the caller's answer");
        assert!(earlier(&runtime, Some(&request)).await.expect("look").is_none(), "the claim was released");
        let retried = run(&runtime, &request, "e2", &starts, Ok(())).await.expect("retry");
        assert!(matches!(retried, Once::Started(())), "the retry starts");
        assert_eq!(starts.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_start_that_failed_after_creating_its_execution_keeps_the_key() {
        let runtime = runtime();
        let request = request("k3", "{}");
        let starts = Arc::new(AtomicUsize::new(0));
        let after = ApiError::AfterStart { execution_id: "e1".into(), reason: "its end could not be recorded".into() };
        assert!(matches!(run(&runtime, &request, "e1", &starts, Err(after)).await, Err(ApiError::AfterStart { .. })));
        match run(&runtime, &request, "e2", &starts, Ok(())).await.expect("retry") {
            Once::Repeat(response) => assert_eq!(body_of(&response), json!({ "executionId": "e1" })),
            Once::Started(()) => panic!("a retry started a second execution"),
        }
        assert_eq!(starts.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn the_same_key_with_another_request_is_refused_and_runs_nothing() {
        let runtime = runtime();
        let starts = Arc::new(AtomicUsize::new(0));
        run(&runtime, &request("k4", "{}"), "e1", &starts, Ok(())).await.expect("first");
        let other = request("k4", "{\"a\":1}");
        assert!(matches!(earlier(&runtime, Some(&other)).await, Err(ApiError::IdempotencyConflict(_))));
        let claimed = run(&runtime, &other, "e2", &starts, Ok(())).await;
        assert!(matches!(claimed, Err(ApiError::IdempotencyConflict(_))), "refused at the claim too");
        assert_eq!(starts.load(Ordering::SeqCst), 1);
    }
}

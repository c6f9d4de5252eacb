//! Turning a settled response into the HTTP answer, and the trigger's wait for one.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Response, StatusCode, header};
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::record::{Execution, HttpResponse, SettledResponse, format_timestamp, now};
use crate::runtime::Runtime;

/// The status of a synchronous response that did not arrive in time.
pub const TIMEOUT_STATUS: u16 = 542;
const MAX_POLL_INTERVAL: Duration = Duration::from_millis(500);

/// Polls the execution's response record until something is settled. The response waiter
/// settles 542 at the deadline; if nothing is settled by `give_up_at` (the waiter is late),
/// this settles 542 itself — whichever write is first is what every reader sees.
pub(super) async fn wait_for_response(
    runtime: &Runtime,
    execution_id: &str,
    give_up_at: Instant,
) -> Result<SettledResponse, ApiError> {
    let store = &runtime.store;
    let mut interval = runtime.settings.poll_interval;
    loop {
        if let Some(settled) = store.get_response(execution_id).await? {
            return Ok(settled);
        }
        if Instant::now() >= give_up_at {
            let timed_out = SettledResponse::TimedOut { at: now() };
            return Ok(match store.settle_response(execution_id, &timed_out).await? {
                crate::ports::FirstWrite::Written => timed_out,
                crate::ports::FirstWrite::Existing(earlier) => earlier,
            });
        }
        tokio::time::sleep(interval.min(give_up_at.saturating_duration_since(Instant::now()))).await;
        interval = (interval * 3 / 2).min(MAX_POLL_INTERVAL);
    }
}

/// The 542 body of the design: the caller can look the execution up later.
pub fn timeout_body(execution: &Execution) -> Value {
    json!({
        "message": "Workflow has been enqueued but has not completed.",
        "dateSubmitted": format_timestamp(&execution.started_at),
        "projectId": execution.project_id,
        "workflowId": execution.workflow_id,
        "executionId": execution.id,
    })
}

/// The status and body a caller got (or gets) for a settled response.
pub fn settled_summary(execution: &Execution, settled: &SettledResponse) -> HttpResponse {
    match settled {
        SettledResponse::Step { response, .. } | SettledResponse::WorkflowEnded { response, .. } => response.clone(),
        SettledResponse::TimedOut { .. } => HttpResponse {
            status: TIMEOUT_STATUS,
            headers: Default::default(),
            body: timeout_body(execution),
            file: None,
        },
    }
}

pub(super) fn settled_to_http(execution: &Execution, settled: &SettledResponse) -> Response<Bytes> {
    let answer = settled_summary(execution, settled);
    let (content_type, body) = match &answer.body {
        Value::Null => (None, Bytes::new()),
        Value::String(text) => (Some("text/plain; charset=utf-8"), Bytes::from(text.clone())),
        other => (Some("application/json"), Bytes::from(other.to_string())),
    };
    let mut response = Response::new(body);
    *response.status_mut() = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::OK);
    let headers = response.headers_mut();
    if let Some(content_type) = content_type {
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    }
    for (name, value) in &answer.headers {
        match (HeaderName::try_from(name.as_str()), HeaderValue::try_from(value.as_str())) {
            (Ok(name), Ok(value)) => {
                headers.insert(name, value);
            }
            _ => {
                tracing::warn!(execution = %execution.id, header = %name, "response header skipped: not a valid HTTP header")
            }
        }
    }
    headers.insert(
        HeaderName::from_static("x-sluice-execution-id"),
        HeaderValue::try_from(execution.id.as_str()).unwrap_or(HeaderValue::from_static("")),
    );
    response
}

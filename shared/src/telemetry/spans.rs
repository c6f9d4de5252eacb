//! The spans of an execution: its root, one per step attempt, one per outbound request; and
//! the FaaS attributes of the Lambda invocation that runs them. Each function checks
//! [`super::enabled`] first and does nothing more while export is off.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

use opentelemetry::trace::{
    FutureExt as _, Span as _, SpanContext, SpanKind, Status, TraceContextExt as _, TraceFlags, TraceState, Tracer as _,
};
use opentelemetry::{Context, KeyValue};

use super::{ids, root_span_id, trace_id_of, tracer};
use crate::record::{Execution, ExecutionStatus, StepAttempt, StepStatus, Timestamp};

/// What invoked a Lambda function (`faas.trigger`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaasTrigger {
    /// The trigger function's Function URL.
    Http,
    /// An SQS consumer (step runner, response waiter).
    PubSub,
    /// The scheduler's EventBridge rule.
    Timer,
}

impl FaasTrigger {
    fn as_str(self) -> &'static str {
        match self {
            FaasTrigger::Http => "http",
            FaasTrigger::PubSub => "pubsub",
            FaasTrigger::Timer => "timer",
        }
    }
}

/// The current invocation's span attributes (a Lambda sandbox runs one invocation at a time).
static INVOCATION: Mutex<Vec<KeyValue>> = Mutex::new(Vec::new());
static WARM: AtomicBool = AtomicBool::new(false);

/// Marks the start of a Lambda invocation: the spans built until the next one carry
/// `faas.trigger`, `faas.invocation_id` (the request id) and `faas.coldstart`.
pub fn invocation(trigger: FaasTrigger, request_id: &str) {
    let coldstart = !WARM.swap(true, Ordering::Relaxed);
    if !super::enabled() {
        return;
    }
    let attributes = vec![
        KeyValue::new("faas.trigger", trigger.as_str()),
        KeyValue::new("faas.invocation_id", request_id.to_string()),
        KeyValue::new("faas.coldstart", coldstart),
    ];
    *INVOCATION.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = attributes;
}

fn invocation_attributes(into: &mut Vec<KeyValue>) {
    into.extend(INVOCATION.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).iter().cloned());
}

fn execution_attributes(execution: &Execution) -> Vec<KeyValue> {
    let mut attributes = vec![
        KeyValue::new("sluice.execution.id", execution.id.clone()),
        KeyValue::new("sluice.project.id", execution.project_id.clone()),
        KeyValue::new("sluice.workflow.id", execution.workflow_id.clone()),
        KeyValue::new("sluice.workflow.version", i64::from(execution.workflow_version)),
        KeyValue::new("sluice.user.id", execution.user_id.clone()),
    ];
    invocation_attributes(&mut attributes);
    attributes
}

/// The context of an execution's root span, wherever it is: the parent of its attempts' spans.
fn root_context(execution_id: &str) -> Option<Context> {
    let trace = trace_id_of(execution_id)?;
    let root = SpanContext::new(trace, root_span_id(execution_id), TraceFlags::SAMPLED, true, TraceState::default());
    Some(Context::new().with_remote_span_context(root))
}

/// Exports an execution's root span: named `execution <workflowId>`, from its start to
/// `ended_at`, an error when it failed. Called once, by whoever ended it.
pub fn export_root(execution: &Execution, status: ExecutionStatus, ended_at: Timestamp) {
    let Some(tracer) = tracer() else { return };
    let Some(trace) = trace_id_of(&execution.id) else { return };
    let mut attributes = execution_attributes(execution);
    let trigger = serde_json::to_value(execution.trigger.kind).ok();
    let trigger = trigger.as_ref().and_then(serde_json::Value::as_str).unwrap_or("request").to_string();
    attributes.push(KeyValue::new("sluice.trigger.kind", trigger));
    attributes.push(KeyValue::new("sluice.execution.status", status.as_str()));
    let builder = tracer
        .span_builder(format!("execution {}", execution.workflow_id))
        .with_kind(SpanKind::Internal)
        .with_start_time(SystemTime::from(execution.started_at))
        .with_attributes(attributes);
    let mut span =
        ids::with_ids(trace, root_span_id(&execution.id), || builder.start_with_context(tracer, &Context::new()));
    span.set_status(match status {
        ExecutionStatus::Failed => Status::error("the execution failed"),
        ExecutionStatus::Succeeded => Status::Ok,
        _ => Status::Unset,
    });
    span.end_with_timestamp(SystemTime::from(ended_at));
}

/// The span of one step attempt, a child of its execution's root; none while export is off.
#[must_use]
pub struct StepSpan(Option<Context>);

impl StepSpan {
    /// Starts the span of attempt `attempt` of the step stored under `key`, of type `kind`.
    pub fn start(execution: &Execution, key: &str, kind: &'static str, attempt: u32) -> StepSpan {
        let Some(tracer) = tracer() else { return StepSpan(None) };
        let Some(parent) = root_context(&execution.id) else { return StepSpan(None) };
        let mut attributes = execution_attributes(execution);
        attributes.push(KeyValue::new("sluice.step.key", key.to_string()));
        attributes.push(KeyValue::new("sluice.step.kind", kind));
        attributes.push(KeyValue::new("sluice.step.attempt", i64::from(attempt)));
        let span = tracer
            .span_builder(format!("step {key}"))
            .with_kind(SpanKind::Internal)
            .with_attributes(attributes)
            .start_with_context(tracer, &parent);
        StepSpan(Some(parent.with_span(span)))
    }

    /// No span (a step that is not an attempt).
    pub fn off() -> StepSpan {
        StepSpan(None)
    }

    /// Runs `future` (the attempt) inside this span: the outbound requests it sends are its
    /// children.
    pub async fn instrument<F: std::future::Future>(&self, future: F) -> F::Output {
        match &self.0 {
            Some(cx) => future.with_context(cx.clone()).await,
            None => future.await,
        }
    }

    /// Ends the span with the attempt's recorded status (its error's message is not copied:
    /// it may quote what an API answered).
    pub fn end(self, recorded: &StepAttempt) {
        let Some(cx) = self.0 else { return };
        let span = cx.span();
        let status = match recorded.status {
            StepStatus::Succeeded => "succeeded",
            StepStatus::Failed => "failed",
        };
        span.set_attribute(KeyValue::new("sluice.step.status", status));
        if let Some(error) = recorded.error.as_ref().filter(|_| recorded.status == StepStatus::Failed) {
            let kind = if error.retryable { "retryable" } else { "terminal" };
            span.set_attribute(KeyValue::new("error.type", kind));
            span.set_status(Status::error(format!("the step failed ({kind})")));
        }
        span.end();
    }
}

/// The span of one outbound HTTP request (HTTP client semantic conventions), a child of the
/// step attempt whose future sends it; none outside an attempt or while export is off.
#[must_use]
pub struct HttpSpan(Option<opentelemetry_sdk::trace::Span>);

impl HttpSpan {
    /// Starts the span of a `method` request to `url`: `url.full` has no query string,
    /// fragment or user info.
    pub fn start(method: &str, url: &url::Url) -> HttpSpan {
        let Some(tracer) = tracer() else { return HttpSpan(None) };
        let parent = Context::current();
        if !parent.has_active_span() {
            return HttpSpan(None);
        }
        let mut attributes =
            vec![KeyValue::new("http.request.method", method.to_string()), KeyValue::new("url.full", full_url(url))];
        if let Some(host) = url.host_str() {
            attributes.push(KeyValue::new("server.address", host.to_string()));
        }
        if let Some(port) = url.port_or_known_default() {
            attributes.push(KeyValue::new("server.port", i64::from(port)));
        }
        invocation_attributes(&mut attributes);
        let span = tracer
            .span_builder(method.to_string())
            .with_kind(SpanKind::Client)
            .with_attributes(attributes)
            .start_with_context(tracer, &parent);
        HttpSpan(Some(span))
    }

    pub fn is_none(&self) -> bool {
        self.0.is_none()
    }

    /// Ends the span with the answer's status (4xx and 5xx are errors, `error.type` the code).
    pub fn answered(self, status: u16) {
        let Some(mut span) = self.0 else { return };
        span.set_attribute(KeyValue::new("http.response.status_code", i64::from(status)));
        if status >= 400 {
            span.set_attribute(KeyValue::new("error.type", status.to_string()));
            span.set_status(Status::error(""));
        }
        span.end();
    }

    /// Ends the span of a request that got no answer; `error_type` names the failure class
    /// (`timeout`, `connect`, `blocked`...), never its message.
    pub fn failed(self, error_type: &'static str) {
        let Some(mut span) = self.0 else { return };
        span.set_attribute(KeyValue::new("error.type", error_type));
        span.set_status(Status::error(""));
        span.end();
    }

    /// Ends the span with what reqwest returned.
    pub fn ended(self, result: &Result<reqwest::Response, reqwest::Error>) {
        match result {
            Ok(response) => self.answered(response.status().as_u16()),
            Err(error) => self.failed(error_type(error)),
        }
    }
}

/// `url` as `url.full` shows it: without query string, fragment or user info (any of them may
/// hold a secret).
fn full_url(url: &url::Url) -> String {
    let mut full = url.clone();
    full.set_query(None);
    full.set_fragment(None);
    // Fails only for URLs that cannot have user info, which then have none.
    let _ = full.set_username("");
    let _ = full.set_password(None);
    full.to_string()
}

/// The class of a request that got no answer (`error.type`).
fn error_type(error: &reqwest::Error) -> &'static str {
    if crate::net::find_net_error(error).is_some() {
        "blocked"
    } else if error.is_timeout() {
        "timeout"
    } else if error.is_connect() {
        "connect"
    } else {
        "request"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_full_url_drops_query_fragment_and_user_info() {
        let url = url::Url::parse("https://user:secret@api.example.com:8443/v1/items?api_key=k#top").expect("url");
        assert_eq!(full_url(&url), "https://api.example.com:8443/v1/items");
    }
}

//! What an execution leaves behind: the execution itself, one record per step attempt, and
//! the settled response of a synchronous execution. These are stored by the `Store` port and
//! rendered as the execution record (Task History) of the HTTP API.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Timestamps are UTC with millisecond precision, rendered `2026-11-23T10:00:00.000Z`.
pub type Timestamp = DateTime<Utc>;

/// The current time, truncated to milliseconds (what every adapter can store losslessly).
pub fn now() -> Timestamp {
    let now = Utc::now();
    DateTime::from_timestamp_millis(now.timestamp_millis()).unwrap_or(now)
}

/// Formats a timestamp as ISO 8601 with milliseconds and `Z`.
/// How deeply a JSON value from outside — a trigger body, an API response, a function's
/// result — may nest. Records wrap such values a few levels deeper, and serde_json reads at
/// most 128 levels back: one limit at the edge keeps everything stored readable.
pub const MAX_JSON_DEPTH: usize = 64;

/// Whether `value` nests deeper than [`MAX_JSON_DEPTH`] (a scalar is depth 0, `[]` and `[1]` 1).
pub fn too_deep(value: &Value) -> bool {
    let mut pending = vec![(value, 0usize)];
    while let Some((value, depth)) = pending.pop() {
        match value {
            Value::Array(_) | Value::Object(_) if depth >= MAX_JSON_DEPTH => return true,
            Value::Array(items) => pending.extend(items.iter().map(|item| (item, depth + 1))),
            Value::Object(fields) => pending.extend(fields.values().map(|field| (field, depth + 1))),
            _ => {}
        }
    }
    false
}

pub fn format_timestamp(t: &Timestamp) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExecutionStatus {
    #[default]
    Running,
    /// Running, but its next step waits for a Delay step's time to come.
    Waiting,
    Succeeded,
    Failed,
    /// Stopped by a `cancel` (Task History): no step starts after it.
    Cancelled,
}

impl ExecutionStatus {
    /// Every status, in the order the API lists them.
    pub const ALL: [ExecutionStatus; 5] = [
        ExecutionStatus::Running,
        ExecutionStatus::Waiting,
        ExecutionStatus::Succeeded,
        ExecutionStatus::Failed,
        ExecutionStatus::Cancelled,
    ];

    /// Succeeded, failed or cancelled: nothing more happens to the execution (unless it is
    /// redriven, which moves a failed one back to running).
    pub fn is_ended(self) -> bool {
        matches!(self, ExecutionStatus::Succeeded | ExecutionStatus::Failed | ExecutionStatus::Cancelled)
    }

    /// The status `text` names (`as_str`'s inverse).
    pub fn parse(text: &str) -> Option<ExecutionStatus> {
        ExecutionStatus::ALL.into_iter().find(|status| status.as_str() == text)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ExecutionStatus::Running => "running",
            ExecutionStatus::Waiting => "waiting",
            ExecutionStatus::Succeeded => "succeeded",
            ExecutionStatus::Failed => "failed",
            ExecutionStatus::Cancelled => "cancelled",
        }
    }
}

/// What started an execution.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TriggerKind {
    /// `POST /projects/{p}/sdk/triggers/{w}` (and test runs).
    #[default]
    Request,
    /// An app event sent by the application.
    AppEvent,
    /// A webhook from a connected app.
    Webhook,
    /// A connected user enabled the integration.
    IntegrationEnabled,
    /// A connected user (re)connected the integration through the hosted OAuth flow.
    OauthConnected,
    /// A schedule came due.
    Schedule,
    /// A polling trigger's request listed an item the user had not seen.
    Poll,
}

/// What triggered an execution: its kind, and the data steps see as `trigger.*` — for a
/// request, its query, headers (names lower-case) and body; for other kinds, the payload as
/// `body` (query and headers empty).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TriggerData {
    /// Absent in executions stored before kinds existed: those were requests.
    #[serde(default)]
    pub kind: TriggerKind,
    pub query: BTreeMap<String, String>,
    pub headers: BTreeMap<String, String>,
    pub body: Value,
    /// The app event's name (app events only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
}

impl TriggerKind {
    pub const ALL: [TriggerKind; 7] = [
        TriggerKind::Request,
        TriggerKind::AppEvent,
        TriggerKind::Webhook,
        TriggerKind::IntegrationEnabled,
        TriggerKind::OauthConnected,
        TriggerKind::Schedule,
        TriggerKind::Poll,
    ];

    /// The name the API and the stores use (`app_event`), as serde writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            TriggerKind::Request => "request",
            TriggerKind::AppEvent => "app_event",
            TriggerKind::Webhook => "webhook",
            TriggerKind::IntegrationEnabled => "integration_enabled",
            TriggerKind::OauthConnected => "oauth_connected",
            TriggerKind::Schedule => "schedule",
            TriggerKind::Poll => "poll",
        }
    }

    /// The kind `text` names (`as_str`'s inverse).
    pub fn parse(text: &str) -> Option<TriggerKind> {
        TriggerKind::ALL.into_iter().find(|kind| kind.as_str() == text)
    }
}

impl TriggerData {
    /// The data of a trigger that is not a request: `payload` as the body.
    pub fn of(kind: TriggerKind, payload: Value) -> Self {
        TriggerData { kind, body: payload, ..TriggerData::default() }
    }
}

/// Why an execution failed: the step and its error, or an internal reason.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecutionError {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    pub message: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Execution {
    pub id: String,
    pub project_id: String,
    pub workflow_id: String,
    pub workflow_version: u32,
    pub user_id: String,
    pub status: ExecutionStatus,
    pub started_at: Timestamp,
    pub ended_at: Option<Timestamp>,
    pub trigger: TriggerData,
    /// Set for executions whose caller waits for a Response step: when it stops waiting.
    pub response_deadline: Option<Timestamp>,
    pub error: Option<ExecutionError>,
    /// A test run (`sluice test`): delays are skipped, displayed arrays truncated, paginated
    /// requests capped.
    #[serde(default)]
    pub test: bool,
    /// The integration its workflow belongs to (`None` outside any integration), copied at
    /// start so that Task History filters on it without reading the workflow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub integration: Option<String>,
    /// Search attributes: the workflow's `search` declarations evaluated when it started
    /// (Task History filters on them exactly).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub search: BTreeMap<String, String>,
    /// The execution this one replays (Task History `replay`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay_of: Option<String>,
    /// How many times it was redriven (Task History `redrive`): each resumed it, failed, from
    /// its failed steps.
    #[serde(default)]
    pub redrives: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    Succeeded,
    Failed,
}

/// A step failure. `retryable` is decided once, where the failure is classified.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepError {
    pub message: String,
    pub retryable: bool,
    /// Extra facts, e.g. `{ "status": 503, "body": ... }` for an HTTP failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<Value>,
    /// The least time to wait before retrying, when the failure said so (HTTP `Retry-After`),
    /// in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
}

impl StepError {
    pub fn terminal(message: impl Into<String>) -> Self {
        StepError { message: message.into(), retryable: false, details: None, retry_after_ms: None }
    }

    pub fn retryable(message: impl Into<String>) -> Self {
        StepError { message: message.into(), retryable: true, details: None, retry_after_ms: None }
    }

    pub fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }
}

/// One attempt of one step. Written once (first writer wins), never updated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepAttempt {
    pub step: String,
    /// 1 for the first try, 2 for the first retry, ...
    pub attempt: u32,
    pub status: StepStatus,
    /// The step's templated input (null when templating itself failed).
    pub input: Value,
    pub output: Option<Value>,
    pub error: Option<StepError>,
    pub started_at: Timestamp,
    pub ended_at: Timestamp,
    /// What the step printed (a Function step's `console.log`), in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub logs: Vec<String>,
}

/// A file produced by a step (a binary HTTP response, ...), as it appears in outputs:
/// `{ "name", "mimeType", "size", "data": "sluice-file:<id>" }`. The bytes live in the
/// `FileStore`, scoped to the execution, never inline in queue messages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FileObject {
    pub name: String,
    pub mime_type: String,
    pub size: u64,
    /// `sluice-file:<id>`.
    pub data: String,
}

impl FileObject {
    pub const DATA_PREFIX: &'static str = "sluice-file:";

    /// The file id inside `data`, if `data` is a file reference.
    pub fn id(&self) -> Option<&str> {
        self.data.strip_prefix(Self::DATA_PREFIX)
    }
}

/// The answer a Response step produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HttpResponse {
    pub status: u16,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    pub body: Value,
    /// A file answer: sent as raw bytes with the file's MIME type (`body` is then null).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<FileObject>,
}

/// What a synchronous caller gets; whatever is settled first wins.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SettledResponse {
    /// The Response step ran in time.
    Step { response: HttpResponse, at: Timestamp },
    /// The deadline passed first: the caller gets 542.
    TimedOut { at: Timestamp },
    /// The execution ended (failed, or succeeded without reaching a Response step) before
    /// the deadline: the caller gets this answer at once instead of waiting for 542.
    WorkflowEnded { response: HttpResponse, at: Timestamp },
}

/// A running execution of workflow `w` version 1 of project `p`, for tests.
#[cfg(any(test, feature = "conformance"))]
pub fn sample_execution(id: &str) -> Execution {
    Execution {
        id: id.to_string(),
        project_id: "p".into(),
        workflow_id: "w".into(),
        workflow_version: 1,
        user_id: "u".into(),
        status: ExecutionStatus::Running,
        started_at: now(),
        ended_at: None,
        trigger: TriggerData::default(),
        response_deadline: None,
        error: None,
        test: false,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trigger_data_stored_before_kinds_existed_reads_as_a_request() {
        let stored: TriggerData =
            serde_json::from_str(r#"{"query":{},"headers":{"x":"1"},"body":{"a":1}}"#).expect("old trigger data");
        assert_eq!(stored.kind, TriggerKind::Request);
        let event =
            TriggerData { kind: TriggerKind::AppEvent, body: serde_json::json!({ "a": 1 }), ..Default::default() };
        let text = serde_json::to_string(&event).expect("serialize");
        assert_eq!(serde_json::from_str::<TriggerData>(&text).ok(), Some(event));
        assert!(text.contains(r#""kind":"app_event""#), "{text}");
    }
}

#[cfg(test)]
mod depth_tests {
    use serde_json::json;

    use super::*;

    fn nested(depth: usize) -> Value {
        (0..depth).fold(json!(0), |inner, _| json!({ "a": [inner] })).get("a").cloned().unwrap_or(Value::Null)
    }

    #[test]
    fn the_nesting_limit_counts_arrays_and_objects() {
        assert!(!too_deep(&json!(1)) && !too_deep(&json!([])) && !too_deep(&json!({ "a": [1, { "b": 2 }] })));
        let at_limit = (0..MAX_JSON_DEPTH).fold(json!(0), |inner, _| json!([inner]));
        assert!(!too_deep(&at_limit));
        assert!(too_deep(&json!([at_limit.clone()])));
        assert!(too_deep(&json!({ "wide": [1, 2, { "deep": at_limit }] })));
        assert!(too_deep(&nested(MAX_JSON_DEPTH)), "objects and arrays alternate: twice as deep");
    }
}

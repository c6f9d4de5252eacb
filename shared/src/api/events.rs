//! App events, sent by the application:
//! - `POST /projects/{p}/sdk/events/trigger` with a connected-user token and
//!   `{"name", "payload"}`: for that user;
//! - `POST /projects/{p}/events/trigger` with the project API key and `{"userId", "name",
//!   "payload"}`, or `{"events": [...]}` of up to [`MAX_BATCH`] such events (a backend that
//!   holds no user tokens).
//!
//! Each starts, for its user, every deployed workflow listening to the event that the user has
//! enabled (`crate::triggers`), and answers 202 with the executions started and, for each
//! listener that did not start, why. An event nobody listens to is accepted (the answer says
//! so); an undeclared name is refused with the declared ones, and a batch with one bad event
//! starts nothing. Live payloads are not checked against the declared example.
//!
//! With an `Idempotency-Key` (scoped to the route and the user, or the project on the API-key
//! route), a repeat starts nothing and gets the first answer, the same execution ids included
//! (`super::idempotency`).

use bytes::Bytes;
use http::request::Parts;
use http::{Response, StatusCode};
use serde_json::{Map, Value, json};

use super::executions::authorize;
use super::idempotency::{self, Once};
use crate::error::{ApiError, json_response};
use crate::idempotency::Keyed;
use crate::model::load::event_name_problem;
use crate::ports::StoredAnswer;
use crate::record::{MAX_JSON_DEPTH, too_deep};
use crate::runner::Runner;
use crate::triggers::{self, AppEventCall, Report};

/// The most events one batch call carries.
pub const MAX_BATCH: usize = 100;
/// The longest user id a backend may name.
const MAX_USER_ID: usize = 256;

/// The idempotency route of `POST /projects/{p}/sdk/events/trigger` (keys scoped by user).
const SDK_ROUTE: &str = "sdk-events";
/// The idempotency route of `POST /projects/{p}/events/trigger` (keys scoped by project).
const API_ROUTE: &str = "api-events";

/// `POST /projects/{p}/sdk/events/trigger`.
pub(super) async fn sdk_trigger(
    runner: &Runner,
    project_id: &str,
    parts: &Parts,
    body: &Bytes,
) -> Result<Response<Bytes>, ApiError> {
    let runtime = runner.runtime();
    let limit = runtime.settings.max_body_bytes;
    if body.len() > limit {
        return Err(ApiError::PayloadTooLarge { size: body.len(), limit });
    }
    let idempotency_key = idempotency::key_in(&parts.headers)?;
    let user_id = runtime.connect.user_of(project_id, &parts.headers).await?;
    let keyed = idempotency::keyed(idempotency_key, parts, body, project_id, SDK_ROUTE.into(), &user_id);
    if let Some(answer) = idempotency::earlier(runtime, keyed.as_ref()).await? {
        return Ok(answer);
    }
    let Value::Object(event) = json_body(body)? else {
        return Err(ApiError::BadRequest("the body must be {\"name\": ..., \"payload\": {...}}".into()));
    };
    let call = event_call(event, Some(user_id), "")?;
    deliver(runner, project_id, vec![call], false, keyed).await
}

/// `POST /projects/{p}/events/trigger`, one event or a batch.
pub(super) async fn api_trigger(
    runner: &Runner,
    project_id: &str,
    parts: &Parts,
    body: &Bytes,
) -> Result<Response<Bytes>, ApiError> {
    let runtime = runner.runtime();
    // A batch may carry up to MAX_BATCH events of the usual size, within Lambda's 6 MB.
    let limit = (runtime.settings.max_body_bytes * 16).min(5 * 1024 * 1024);
    if body.len() > limit {
        return Err(ApiError::PayloadTooLarge { size: body.len(), limit });
    }
    let idempotency_key = idempotency::key_in(&parts.headers)?;
    authorize(runtime, project_id, &parts.headers).await?;
    let keyed = idempotency::keyed(idempotency_key, parts, body, project_id, API_ROUTE.into(), project_id);
    if let Some(answer) = idempotency::earlier(runtime, keyed.as_ref()).await? {
        return Ok(answer);
    }
    let Value::Object(mut object) = json_body(body)? else {
        return Err(ApiError::BadRequest(
            "the body must be {\"userId\", \"name\", \"payload\"} or {\"events\": [...]}".into(),
        ));
    };
    let (calls, batch) = match object.remove("events") {
        Some(Value::Array(events)) => {
            if !object.is_empty() {
                return Err(ApiError::BadRequest("a batch body has only `events`".into()));
            }
            if events.is_empty() || events.len() > MAX_BATCH {
                return Err(ApiError::BadRequest(format!(
                    "`events` holds 1 to {MAX_BATCH} events, not {}",
                    events.len()
                )));
            }
            let mut calls = Vec::with_capacity(events.len());
            let mut problems = Vec::new();
            for (i, event) in events.into_iter().enumerate() {
                let prefix = format!("events[{i}].");
                match event {
                    Value::Object(event) => match event_call(event, None, &prefix) {
                        Ok(call) => calls.push(call),
                        Err(ApiError::Validation(found)) => problems.extend(found),
                        Err(other) => return Err(other),
                    },
                    other => problems.push(format!("events[{i}]: must be an object, not {}", kind(&other))),
                }
            }
            if !problems.is_empty() {
                return Err(ApiError::Validation(problems));
            }
            (calls, true)
        }
        Some(other) => return Err(ApiError::BadRequest(format!("`events` must be a list, not {}", kind(&other)))),
        None => (vec![event_call(object, None, "")?], false),
    };
    deliver(runner, project_id, calls, batch, keyed).await
}

/// Plans the events' starts, claims the key (if any) with the answer, then starts them; 202
/// with what each event started and skipped.
async fn deliver(
    runner: &Runner,
    project_id: &str,
    calls: Vec<AppEventCall>,
    batch: bool,
    keyed: Option<Keyed>,
) -> Result<Response<Bytes>, ApiError> {
    let planned = triggers::plan_app_events(runner, project_id, calls).await?;
    let body = answer(&planned.reports, batch);
    let stored = StoredAnswer::Fixed { status: StatusCode::ACCEPTED.as_u16(), body: body.clone() };
    let starting = {
        let runner = runner.clone();
        async move { planned.start(&runner).await.map_err(ApiError::from) }
    };
    match idempotency::start_once(runner.runtime(), keyed, stored, starting).await? {
        Once::Started(_) => Ok(json_response(StatusCode::ACCEPTED, &body)),
        Once::Repeat(answer) => Ok(answer),
    }
}

/// One event of a body: `name`, `payload` (an object; `{}` when absent) and, without a user
/// token, `userId`. Every problem is listed, each prefixed with `prefix`.
fn event_call(mut event: Map<String, Value>, user: Option<String>, prefix: &str) -> Result<AppEventCall, ApiError> {
    let mut problems = Vec::new();
    let allowed: &[&str] = if user.is_some() { &["name", "payload"] } else { &["userId", "name", "payload"] };
    for key in event.keys().filter(|key| !allowed.contains(&key.as_str())) {
        problems.push(format!("{prefix}{key}: unknown field (an event has {})", allowed.join(", ")));
    }
    let name = match event.remove("name") {
        Some(Value::String(name)) => {
            if let Some(problem) = event_name_problem(&name) {
                problems.push(format!("{prefix}name: {problem}"));
            }
            name
        }
        Some(other) => {
            problems.push(format!("{prefix}name: must be text, not {}", kind(&other)));
            String::new()
        }
        None => {
            problems.push(format!("{prefix}name: is required"));
            String::new()
        }
    };
    let payload = match event.remove("payload") {
        None | Some(Value::Null) => Value::Object(Map::new()),
        Some(payload @ Value::Object(_)) => payload,
        Some(other) => {
            problems.push(format!("{prefix}payload: must be an object, not {}", kind(&other)));
            Value::Null
        }
    };
    let user_id = match user {
        Some(user) => user,
        None => match event.remove("userId") {
            Some(Value::String(id))
                if !id.is_empty() && id.len() <= MAX_USER_ID && !id.chars().any(char::is_control) =>
            {
                id
            }
            Some(_) => {
                problems.push(format!(
                    "{prefix}userId: must be 1 to {MAX_USER_ID} characters of text without control characters"
                ));
                String::new()
            }
            None => {
                problems.push(format!("{prefix}userId: is required (the connected user the event is for)"));
                String::new()
            }
        },
    };
    if problems.is_empty() { Ok(AppEventCall { user_id, name, payload }) } else { Err(ApiError::Validation(problems)) }
}

/// The 202 body: what each event started and skipped.
fn answer(reports: &[Report], batch: bool) -> Value {
    let shown: Vec<Value> = reports.iter().map(shown).collect();
    if batch {
        json!({ "events": shown, "summary": triggers::summary(reports) })
    } else {
        shown.into_iter().next().unwrap_or_else(|| json!({}))
    }
}

fn shown(report: &Report) -> Value {
    let mut body = serde_json::to_value(report).unwrap_or_else(|_| json!({}));
    if report.listeners == 0 {
        body["message"] = json!(format!(
            "accepted: no deployed workflow listens to `{}`",
            report.event.as_deref().unwrap_or_default()
        ));
    }
    body
}

fn json_body(body: &Bytes) -> Result<Value, ApiError> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| ApiError::BadRequest(format!("the body is not JSON: {e}")))?;
    if too_deep(&value) {
        return Err(ApiError::BadRequest(format!("the body is nested deeper than {MAX_JSON_DEPTH} levels")));
    }
    Ok(value)
}

fn kind(value: &Value) -> &'static str {
    crate::template::kind(value)
}

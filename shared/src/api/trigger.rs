//! `POST /projects/{projectId}/sdk/triggers/{workflowId}`: authorise the connected user,
//! validate the request and start the execution through the one start use case
//! (`crate::start`); then answer 202 at once, or — for a workflow with a Response step — the
//! answer settled for it (the inline first segment usually settles it in this process, which
//! wakes the wait at once). With an `Idempotency-Key`, a repeat of the request (same user and
//! workflow) starts nothing and gets the first answer (`super::idempotency`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use serde_json::{Value, json};

use super::idempotency::{self, Once};
use super::respond::settled_to_http;
use super::validate::violations;
use crate::error::{ApiError, json_response};
use crate::model::Trigger;
use crate::ports::StoredAnswer;
use crate::record::{MAX_JSON_DEPTH, SettledResponse, TriggerData, TriggerKind, too_deep};
use crate::runner::Runner;
use crate::runtime::Host;
use crate::settle;
use crate::start::{self, NewExecution};

/// How long a Lambda trigger waits, once answered, for its inline segment to hand off.
const SEGMENT_HAND_OFF: Duration = Duration::from_secs(5);

/// Request headers never stored in the execution record.
const SECRET_HEADERS: &[&str] = &["authorization", "cookie", "proxy-authorization", "x-api-key"];

pub(super) async fn handle(
    runner: &Runner,
    project_id: &str,
    workflow_id: &str,
    request: Request<Bytes>,
) -> Result<Response<Bytes>, ApiError> {
    let runtime = runner.runtime();
    let (parts, body) = request.into_parts();
    let limit = runtime.settings.max_body_bytes;
    if body.len() > limit {
        return Err(ApiError::PayloadTooLarge { size: body.len(), limit });
    }
    let idempotency_key = idempotency::key_in(&parts.headers)?;
    let store = &runtime.store;
    let user_id = runtime.connect.user_of(project_id, &parts.headers).await?;
    let route = format!("trigger:{workflow_id}");
    let keyed = idempotency::keyed(idempotency_key, &parts, &body, project_id, route, &user_id);
    if let Some(answer) = idempotency::earlier(runtime, keyed.as_ref()).await? {
        return Ok(answer);
    }
    let deployment = store
        .get_deployed(project_id, workflow_id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no deployed workflow `{workflow_id}` in this project")))?;
    let workflow = &deployment.workflow;
    let Trigger::Request { method, .. } = &workflow.trigger else {
        return Err(ApiError::NotFound(format!(
            "workflow `{workflow_id}` has a `{}` trigger, not a request trigger",
            workflow.trigger.type_name()
        )));
    };
    if method.as_str() != parts.method.as_str() {
        return Err(ApiError::MethodNotAllowed(format!(
            "workflow `{workflow_id}` is triggered with {}, not {}",
            method.as_str(),
            parts.method
        )));
    }
    if let Some(refusal) = runtime.connect.gate(project_id, &user_id, workflow).await? {
        return Err(ApiError::NotEnabled(refusal.explain(project_id, workflow_id)));
    }
    let trigger = trigger_data(&parts, &body)?;
    let problems = violations(&deployment.workflow.trigger, &trigger);
    if !problems.is_empty() {
        return Err(ApiError::Validation(problems));
    }

    let caller_waits = deployment.workflow.has_response_step();
    let id = start::new_execution_id();
    let watch = caller_waits.then(|| runtime.signals.watch(&id));
    let accepted = json!({ "executionId": id });
    let answer = if caller_waits {
        StoredAnswer::Settled { execution_id: id.clone() }
    } else {
        StoredAnswer::Fixed { status: StatusCode::ACCEPTED.as_u16(), body: accepted.clone() }
    };
    let new = NewExecution {
        id,
        deployment: Arc::new(deployment),
        trigger,
        user_id,
        test: false,
        caller_waits,
        replay_of: None,
    };
    let starting = {
        let runner = runner.clone();
        async move { start::start(&runner, new).await.map_err(ApiError::from) }
    };
    // In a task of its own: a caller that disconnects cannot stop the start (nor leave its
    // key claimed) half-way.
    let started = match idempotency::start_once(runtime, keyed, answer, starting).await? {
        Once::Started(started) => started,
        Once::Repeat(answer) => return Ok(answer),
    };
    let execution = started.execution;
    let Some(watch) = watch else {
        return Ok(json_response(StatusCode::ACCEPTED, &accepted));
    };
    let give_up_at = Instant::now() + runtime.settings.response_timeout + Duration::from_secs(1);
    let settled =
        settle::wait(store.as_ref(), &watch, give_up_at, runtime.settings.poll_interval).await.map_err(|e| {
            ApiError::AfterStart {
                execution_id: execution.id.clone(),
                reason: format!("its answer could not be read: {e}"),
            }
        })?;
    if runtime.settings.host == Host::Lambda
        && !matches!(settled, SettledResponse::TimedOut { .. })
        && let Some(segment) = started.segment
    {
        // A Lambda is frozen once it answers: let the segment hand off what is left first
        // (it does so right after answering). After a 542 the segment may be inside a slow
        // step: the answer does not wait for it, and the recovery message resumes it.
        if tokio::time::timeout(SEGMENT_HAND_OFF, segment).await.is_err() {
            tracing::warn!(execution = %execution.id, "the inline segment outlived the answer; the queue resumes it");
        }
    }
    Ok(settled_to_http(store.as_ref(), &execution, &settled).await)
}

/// The request as the workflow sees it: query, lower-case headers (secrets left out), body.
pub(super) fn trigger_data(parts: &http::request::Parts, body: &Bytes) -> Result<TriggerData, ApiError> {
    let query: BTreeMap<String, String> =
        parts.uri.query().map(|q| url::form_urlencoded::parse(q.as_bytes()).into_owned().collect()).unwrap_or_default();
    let headers = parts
        .headers
        .iter()
        .filter(|(name, _)| !SECRET_HEADERS.contains(&name.as_str()))
        .map(|(name, value)| (name.as_str().to_string(), String::from_utf8_lossy(value.as_bytes()).into_owned()))
        .collect();
    let content_type =
        parts.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_ascii_lowercase();
    Ok(TriggerData { kind: TriggerKind::Request, query, headers, body: parse_body(&content_type, body)?, event: None })
}

fn parse_body(content_type: &str, body: &Bytes) -> Result<Value, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(json!({}));
    }
    if content_type.starts_with("application/x-www-form-urlencoded") {
        let form: serde_json::Map<String, Value> =
            url::form_urlencoded::parse(body).into_owned().map(|(k, v)| (k, Value::String(v))).collect();
        return Ok(Value::Object(form));
    }
    let text =
        std::str::from_utf8(body).map_err(|_| ApiError::BadRequest("the request body is not valid UTF-8".into()))?;
    let looks_json = content_type.contains("json") || content_type.is_empty();
    match serde_json::from_str::<Value>(text) {
        Ok(value) if too_deep(&value) => {
            Err(ApiError::BadRequest(format!("the request body is JSON nested deeper than {MAX_JSON_DEPTH} levels")))
        }
        Ok(value) if looks_json || text.trim_start().starts_with(['{', '[']) => Ok(value),
        Err(e) if content_type.contains("json") => {
            Err(ApiError::BadRequest(format!("the request body is not valid JSON: {e}")))
        }
        _ => Ok(Value::String(text.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::record::too_deep;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        /// Any body under any content type is parsed or refused with a 400, never a panic, and
        /// what is accepted can be stored and read back.
        #[test]
        fn trigger_bodies_parse_or_are_refused(
            body in prop_oneof![
                prop::collection::vec(any::<u8>(), 0..200),
                "[\\[\\]{}\"a-z0-9:, ]{0,300}".prop_map(String::into_bytes),
                (1usize..200).prop_map(|depth| format!("{}{}", "[".repeat(depth), "]".repeat(depth)).into_bytes()),
            ],
            content_type in prop::sample::select(vec!["", "application/json", "text/plain", "application/x-www-form-urlencoded"]),
        ) {
            match parse_body(content_type, &Bytes::from(body)) {
                Ok(value) => prop_assert!(!too_deep(&value)),
                Err(error) => prop_assert!(matches!(error, ApiError::BadRequest(_)), "{error:?}"),
            }
        }
    }
}

//! `GET /projects/{projectId}/executions` with the project API key: Task History, a project's
//! executions newest first, filtered and paged.
//!
//! Query parameters: `workflow`, `integration`, `user`, `status` (running, waiting, succeeded,
//! failed, cancelled), `trigger` (request, app_event, webhook, integration_enabled,
//! oauth_connected, schedule, poll), `since` / `until` (ISO 8601, or a duration back from
//! now: `30m`, `24h`, `7d`), `search.<key>=<value>` (a search attribute a deployed workflow
//! declares; several combine), `idPrefix`, `limit` (1 to 1,000, default 100) and `cursor`
//! (the previous page's `next`). Anything else is a 400 naming the problem.
//!
//! Invariant: a cursor is opaque and bound to its listing: it carries the last row's position
//! and a digest of the filters, tagged with an HMAC keyed by the project's stored API key
//! digest, so a cursor that was altered, made up, taken from another project or used with
//! other filters is refused (400) instead of silently listing something else.

use std::collections::BTreeMap;

use aws_lc_rs::{digest, hmac};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use chrono::{DateTime, Duration as ChronoDuration};
use http::{HeaderMap, Response, StatusCode};
use serde_json::{Value, json};

use crate::auth;
use crate::error::{ApiError, json_response};
use crate::ports::{
    ExecutionSummary, HistoryFilter, HistoryPosition, HistoryQuery, MAX_HISTORY_PAGE, MAX_SEARCH_VALUE_BYTES, Project,
};
use crate::record::{ExecutionStatus, Timestamp, TriggerKind, format_timestamp, now};
use crate::runtime::Runtime;

/// Rows per page when the caller does not say.
pub const DEFAULT_PAGE: usize = 100;
/// The longest error summary a row carries (characters).
const ERROR_SUMMARY_CHARS: usize = 200;

/// Checks the project API key and returns the project.
pub(super) async fn authorized_project(
    runtime: &Runtime,
    project_id: &str,
    headers: &HeaderMap,
) -> Result<Project, ApiError> {
    let invalid = || ApiError::Unauthorized("the API key is not valid for this project".into());
    let key = auth::bearer_token(headers)?;
    let project = runtime.store.get_project(project_id).await?.ok_or_else(invalid)?;
    if auth::api_key_matches(key, &project.api_key_sha256) { Ok(project) } else { Err(invalid()) }
}

pub(super) async fn list(
    runtime: &Runtime,
    project_id: &str,
    headers: &HeaderMap,
    query: Option<&str>,
) -> Result<Response<Bytes>, ApiError> {
    let project = authorized_project(runtime, project_id, headers).await?;
    let params = parse_params(query)?;
    let filter = parse_filter(&params, now())?;
    check_search_keys(runtime, project_id, &filter).await?;
    let limit = match params.get("limit") {
        Some(value) => super::page_limit(value, MAX_HISTORY_PAGE)?,
        None => DEFAULT_PAGE,
    };
    let after = params.get("cursor").map(|cursor| decode_cursor(&project, &filter, cursor)).transpose()?;
    let page = runtime
        .store
        .list_executions(&HistoryQuery { project_id: project_id.to_string(), filter: filter.clone(), after, limit })
        .await?;
    let next = page.next.as_ref().map(|position| encode_cursor(&project, &filter, position));
    let rows: Vec<Value> = page.executions.iter().map(row).collect();
    Ok(json_response(StatusCode::OK, &json!({ "executions": rows, "next": next })))
}

/// The query string's parameters; a repeated or unknown one is a 400.
pub(super) fn parse_params(query: Option<&str>) -> Result<BTreeMap<String, String>, ApiError> {
    const KNOWN: [&str; 10] =
        ["workflow", "integration", "user", "status", "trigger", "since", "until", "idPrefix", "limit", "cursor"];
    let mut params = BTreeMap::new();
    for (name, value) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        let name = name.into_owned();
        if !KNOWN.contains(&name.as_str()) && !name.starts_with("search.") {
            return Err(ApiError::BadRequest(format!(
                "unknown query parameter `{name}`; the filters are {}, `search.<key>`, and `limit`, `cursor`",
                KNOWN[..8].iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ")
            )));
        }
        if params.insert(name.clone(), value.into_owned()).is_some() {
            return Err(ApiError::BadRequest(format!("query parameter `{name}` is given twice")));
        }
    }
    Ok(params)
}

/// The filters of `params` (see the module doc), relative times counted back from `now`.
pub fn parse_filter(params: &BTreeMap<String, String>, now: Timestamp) -> Result<HistoryFilter, ApiError> {
    let bad = |message: String| ApiError::BadRequest(message);
    let text = |name: &str, max: usize| -> Result<Option<String>, ApiError> {
        match params.get(name) {
            None => Ok(None),
            Some(value) if value.is_empty() || value.len() > max || value.chars().any(char::is_control) => {
                Err(bad(format!("`{name}` must be 1 to {max} characters, without control characters")))
            }
            Some(value) => Ok(Some(value.clone())),
        }
    };
    let status = match params.get("status") {
        None => None,
        Some(value) => Some(ExecutionStatus::parse(value).ok_or_else(|| {
            bad(format!(
                "unknown status `{value}`; it is one of {}",
                ExecutionStatus::ALL.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
            ))
        })?),
    };
    let trigger = match params.get("trigger") {
        None => None,
        Some(value) => Some(TriggerKind::parse(value).ok_or_else(|| {
            bad(format!(
                "unknown trigger type `{value}`; it is one of {}",
                TriggerKind::ALL.iter().map(|k| k.as_str()).collect::<Vec<_>>().join(", ")
            ))
        })?),
    };
    let started_from = params.get("since").map(|v| parse_time("since", v, now)).transpose()?;
    let started_before = params.get("until").map(|v| parse_time("until", v, now)).transpose()?;
    if let (Some(from), Some(before)) = (started_from, started_before)
        && from >= before
    {
        return Err(bad(format!(
            "`since` ({}) must be before `until` ({}): the range is empty or reversed",
            format_timestamp(&from),
            format_timestamp(&before)
        )));
    }
    let mut search = BTreeMap::new();
    for (name, value) in params.iter().filter(|(name, _)| name.starts_with("search.")) {
        let key = &name["search.".len()..];
        if !crate::model::is_search_key(key) {
            return Err(bad(format!(
                "`{name}`: a search attribute's name is a letter then up to 39 letters, digits or `_`"
            )));
        }
        if value.is_empty() || value.len() > MAX_SEARCH_VALUE_BYTES {
            return Err(bad(format!(
                "`{name}` must be 1 to {MAX_SEARCH_VALUE_BYTES} bytes: longer values are not indexed"
            )));
        }
        search.insert(key.to_string(), value.clone());
    }
    let id_prefix = match params.get("idPrefix") {
        None => None,
        Some(prefix) => {
            let valid = !prefix.is_empty()
                && prefix.len() <= 128
                && prefix.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !valid {
                return Err(bad("`idPrefix` is 1 to 128 characters of an execution id ([A-Za-z0-9_-])".into()));
            }
            Some(prefix.to_ascii_lowercase())
        }
    };
    let id_like = |name: &str| -> Result<Option<String>, ApiError> {
        let value = text(name, 128)?;
        if let Some(v) = &value
            && !v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        {
            return Err(bad(format!("`{name}` `{v}` is not a valid id")));
        }
        Ok(value)
    };
    Ok(HistoryFilter {
        workflow_id: id_like("workflow")?,
        integration: id_like("integration")?,
        user_id: text("user", 256)?,
        status,
        trigger,
        started_from,
        started_before,
        search,
        id_prefix,
    })
}

/// `since` / `until`: an ISO 8601 time with an offset, or a duration back from `now`
/// (`90s`, `30m`, `24h`, `7d`).
fn parse_time(name: &str, value: &str, now: Timestamp) -> Result<Timestamp, ApiError> {
    if let Ok(at) = DateTime::parse_from_rfc3339(value) {
        return Ok(at.to_utc());
    }
    let relative = value.len() >= 2 && value.is_char_boundary(value.len() - 1) && {
        let (digits, _) = value.split_at(value.len() - 1);
        !digits.is_empty() && digits.len() <= 6 && digits.bytes().all(|b| b.is_ascii_digit())
    };
    if relative {
        let (digits, unit) = value.split_at(value.len() - 1);
        let amount: i64 = digits.parse().unwrap_or(0);
        let span = match unit {
            "s" => ChronoDuration::try_seconds(amount),
            "m" => ChronoDuration::try_minutes(amount),
            "h" => ChronoDuration::try_hours(amount),
            "d" => ChronoDuration::try_days(amount),
            _ => None,
        };
        if let Some(span) = span.filter(|span| *span <= ChronoDuration::days(3_650)) {
            return Ok(now - span);
        }
    }
    Err(ApiError::BadRequest(format!(
        "`{name}` `{value}` is neither an ISO 8601 time (2026-12-01T10:00:00Z) nor a duration back from now (30m, 24h, 7d)"
    )))
}

/// A search filter must name an attribute some deployed workflow of the project declares:
/// anything else can only ever list nothing, which is more likely a typo than a question.
async fn check_search_keys(runtime: &Runtime, project_id: &str, filter: &HistoryFilter) -> Result<(), ApiError> {
    if filter.search.is_empty() {
        return Ok(());
    }
    let deployed = runtime.store.list_deployed(project_id).await?;
    let declared: std::collections::BTreeSet<&str> =
        deployed.iter().flat_map(|d| d.workflow.search.keys().map(String::as_str)).collect();
    for key in filter.search.keys() {
        if !declared.contains(key.as_str()) {
            let known = if declared.is_empty() {
                "no deployed workflow declares any".to_string()
            } else {
                format!("the declared ones are {}", declared.iter().copied().collect::<Vec<_>>().join(", "))
            };
            return Err(ApiError::BadRequest(format!(
                "search attribute `{key}` is not declared by any deployed workflow (`search:` in the workflow); {known}"
            )));
        }
    }
    Ok(())
}

/// The most rows a dry run shows.
const BULK_SAMPLE: usize = 10;

/// `POST /projects/{p}/executions/bulk`: `{"action", "filter", "dryRun", "version"}` (see
/// `crate::bulk`).
pub(super) async fn bulk(
    runner: &crate::runner::Runner,
    project_id: &str,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Response<Bytes>, ApiError> {
    use crate::bulk::{self, Action};
    let runtime = runner.runtime();
    authorized_project(runtime, project_id, headers).await?;
    let value: Value =
        serde_json::from_slice(body).map_err(|e| ApiError::BadRequest(format!("the body is not JSON: {e}")))?;
    let Value::Object(fields) = &value else {
        return Err(ApiError::BadRequest("the body must be a JSON object".into()));
    };
    if let Some(unknown) = fields.keys().find(|k| !["action", "filter", "dryRun", "version"].contains(&k.as_str())) {
        return Err(ApiError::BadRequest(format!(
            "unknown field `{unknown}` (allowed: action, filter, dryRun, version)"
        )));
    }
    let action = fields
        .get("action")
        .and_then(Value::as_str)
        .and_then(Action::parse)
        .ok_or_else(|| ApiError::BadRequest("`action` is \"replay\", \"redrive\" or \"cancel\"".into()))?;
    let dry_run = match fields.get("dryRun") {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(ApiError::BadRequest("`dryRun` is true or false".into())),
    };
    let version = match (action, fields.get("version")) {
        (_, None) => None,
        (Action::Replay, Some(v)) => Some(match super::actions::ReplayVersion::parse(Some(v))? {
            super::actions::ReplayVersion::Live => "live".to_string(),
            super::actions::ReplayVersion::Original => "original".to_string(),
        }),
        (_, Some(_)) => return Err(ApiError::BadRequest("`version` is for replays only".into())),
    };
    let params = bulk::filter_params(fields.get("filter").unwrap_or(&json!({})))?;
    let created_at = now();
    let mut filter = parse_filter(&params, created_at)?;
    check_search_keys(runtime, project_id, &filter).await?;
    // What the job starts is never part of its own selection.
    if filter.started_before.is_none_or(|until| until > created_at) {
        filter.started_before = Some(created_at);
    }
    let (count, capped, sample) = bulk::count(runner, project_id, &filter, action, BULK_SAMPLE).await?;
    if dry_run {
        let sample: Vec<Value> = sample.iter().map(row).collect();
        return Ok(json_response(
            StatusCode::OK,
            &json!({ "action": action.as_str(), "dryRun": true, "count": count, "countCapped": capped, "sample": sample }),
        ));
    }
    if capped {
        return Err(ApiError::BadRequest(format!(
            "the filter selects more than {} executions: narrow it (a time range, a workflow, a status)",
            crate::ports::MAX_BULK_EXECUTIONS
        )));
    }
    let job = crate::ports::BulkJob {
        project_id: project_id.to_string(),
        bulk_id: crate::start::new_execution_id(),
        action: action.as_str().to_string(),
        filter: bulk::filter_value(&filter),
        version,
        created_at,
        state: if count == 0 { "done".into() } else { "running".into() },
        total: count,
        done: 0,
        succeeded: 0,
        failed: 0,
        skipped: 0,
        errors: Vec::new(),
        after: None,
        revision: 0,
    };
    runtime.store.create_bulk_job(&job).await?;
    if count > 0 {
        let outgoing =
            crate::ports::Outgoing { body: bulk::message(project_id, &job.bulk_id), delay: std::time::Duration::ZERO };
        runtime.queue.send(crate::ports::QueueName::Steps, outgoing).await?;
    }
    Ok(json_response(StatusCode::ACCEPTED, &bulk::view(&job)))
}

/// `GET /projects/{p}/bulk/{bulkId}`: a bulk job's progress.
pub(super) async fn bulk_progress(
    runner: &crate::runner::Runner,
    project_id: &str,
    bulk_id: &str,
    headers: &HeaderMap,
) -> Result<Response<Bytes>, ApiError> {
    let runtime = runner.runtime();
    authorized_project(runtime, project_id, headers).await?;
    let job = runtime
        .store
        .get_bulk_job(project_id, bulk_id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no bulk job `{bulk_id}` in this project")))?;
    Ok(json_response(StatusCode::OK, &crate::bulk::view(&job)))
}

/// One listing row.
pub fn row(e: &ExecutionSummary) -> Value {
    let duration_ms = e.ended_at.map(|end| (end - e.started_at).num_milliseconds());
    let error = e.error.as_ref().map(|error| {
        let first = error.message.lines().next().unwrap_or("");
        let mut summary: String = first.chars().take(ERROR_SUMMARY_CHARS).collect();
        if summary.len() < first.len() {
            summary.push('…');
        }
        summary
    });
    json!({
        "executionId": e.id,
        "workflowId": e.workflow_id,
        "workflowVersion": e.workflow_version,
        "integration": e.integration,
        "userId": e.user_id,
        "status": e.status.as_str(),
        "trigger": e.trigger.as_str(),
        "startedAt": format_timestamp(&e.started_at),
        "endedAt": e.ended_at.as_ref().map(format_timestamp),
        "durationMs": duration_ms,
        "failedStep": e.error.as_ref().and_then(|error| error.step.clone()),
        "error": error,
        "search": e.search,
        "replayOf": e.replay_of,
        "redrives": e.redrives,
        "test": e.test,
    })
}

/// What a cursor is bound to: the filters, written out in one canonical form.
fn filter_digest(filter: &HistoryFilter) -> String {
    let canonical = json!({
        "w": filter.workflow_id, "i": filter.integration, "u": filter.user_id,
        "s": filter.status.map(|s| s.as_str()), "t": filter.trigger.map(|t| t.as_str()),
        "f": filter.started_from.map(|t| t.timestamp_millis()),
        "b": filter.started_before.map(|t| t.timestamp_millis()),
        "q": filter.search, "p": filter.id_prefix,
    });
    let hash = digest::digest(&digest::SHA256, canonical.to_string().as_bytes());
    hex_prefix(hash.as_ref(), 16)
}

fn hex_prefix(bytes: &[u8], n: usize) -> String {
    bytes.iter().take(n).map(|b| format!("{b:02x}")).collect()
}

fn cursor_key(project: &Project) -> hmac::Key {
    hmac::Key::new(hmac::HMAC_SHA256, format!("sluice-history-cursor:{}", project.api_key_sha256).as_bytes())
}

/// `base64url(JSON position and filter digest) . base64url(HMAC tag)`.
pub(super) fn encode_cursor(project: &Project, filter: &HistoryFilter, position: &HistoryPosition) -> String {
    // A relative `since`/`until` moves with the clock: a cursor is bound to the filters'
    // other fields, and to the range only as far as it is absolute.
    let payload = json!({ "v": 1, "at": position.started_at.timestamp_millis(), "id": position.id, "f": filter_digest(&stable(filter)) });
    let payload = URL_SAFE_NO_PAD.encode(payload.to_string());
    let tag = hmac::sign(&cursor_key(project), payload.as_bytes());
    format!("{payload}.{}", URL_SAFE_NO_PAD.encode(&tag.as_ref()[..16]))
}

/// The filters a cursor is bound to: all but a time range (which a relative `since` moves).
fn stable(filter: &HistoryFilter) -> HistoryFilter {
    HistoryFilter { started_from: None, started_before: None, ..filter.clone() }
}

pub(super) fn decode_cursor(
    project: &Project,
    filter: &HistoryFilter,
    cursor: &str,
) -> Result<HistoryPosition, ApiError> {
    let invalid = || {
        ApiError::BadRequest(
            "`cursor` is not a cursor this listing gave out (altered, or from another project); start again without it"
                .into(),
        )
    };
    if cursor.len() > 1_024 {
        return Err(invalid());
    }
    let (payload, tag) = cursor.split_once('.').ok_or_else(invalid)?;
    let tag = URL_SAFE_NO_PAD.decode(tag).map_err(|_| invalid())?;
    let expected = hmac::sign(&cursor_key(project), payload.as_bytes());
    if tag.len() != 16 || aws_lc_rs::constant_time::verify_slices_are_equal(&expected.as_ref()[..16], &tag).is_err() {
        return Err(invalid());
    }
    let text = URL_SAFE_NO_PAD.decode(payload).map_err(|_| invalid())?;
    let value: Value = serde_json::from_slice(&text).map_err(|_| invalid())?;
    if value["f"].as_str() != Some(filter_digest(&stable(filter)).as_str()) {
        return Err(ApiError::BadRequest(
            "`cursor` belongs to a listing with other filters: keep the filters of the first page, or start again without a cursor"
                .into(),
        ));
    }
    let started_at = value["at"].as_i64().and_then(DateTime::from_timestamp_millis).ok_or_else(invalid)?;
    let id = value["id"].as_str().ok_or_else(invalid)?.to_string();
    Ok(HistoryPosition { started_at, id })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn project(key: &str) -> Project {
        Project { id: "p".into(), signing_public_key_pem: String::new(), api_key_sha256: key.into(), created_at: now() }
    }

    fn params(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn cursors_round_trip_and_refuse_tampering_other_projects_and_other_filters() {
        let (p, other) = (project("aa"), project("bb"));
        let filter = HistoryFilter { workflow_id: Some("w".into()), ..HistoryFilter::default() };
        let position = HistoryPosition { started_at: now(), id: "019a-x".into() };
        let cursor = encode_cursor(&p, &filter, &position);
        assert_eq!(decode_cursor(&p, &filter, &cursor).expect("round trip"), position);
        assert!(decode_cursor(&other, &filter, &cursor).is_err(), "another project's key");
        let elsewhere = HistoryFilter { workflow_id: Some("v".into()), ..HistoryFilter::default() };
        let stale = decode_cursor(&p, &elsewhere, &cursor).expect_err("other filters");
        assert!(stale.to_string().contains("other filters"), "{stale}");
        // Flip each character of the payload: every forgery is refused.
        let (payload, tag) = cursor.split_once('.').expect("two parts");
        for i in 0..payload.len() {
            let mut bytes = payload.as_bytes().to_vec();
            bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
            let forged = format!("{}.{tag}", String::from_utf8(bytes).expect("ascii"));
            if forged != cursor {
                assert!(decode_cursor(&p, &filter, &forged).is_err(), "forged at {i}");
            }
        }
        for junk in ["", ".", "abc", "abc.def", &"x".repeat(2_000), "eyJ2IjoxfQ.AAAAAAAAAAAAAAAAAAAAAA"] {
            assert!(decode_cursor(&p, &filter, junk).is_err(), "junk {junk:?}");
        }
        // A relative range moves with the clock: the cursor stays valid as it does.
        let moving = HistoryFilter { started_from: Some(now()), ..filter.clone() };
        assert_eq!(decode_cursor(&p, &moving, &cursor).expect("range moved"), position);
    }

    #[test]
    fn filters_are_parsed_and_bad_values_are_named() {
        let at = DateTime::parse_from_rfc3339("2026-12-08T12:00:00Z").expect("time").to_utc();
        let f = parse_filter(
            &params(&[("status", "failed"), ("trigger", "webhook"), ("since", "24h"), ("search.email", "a@b.c")]),
            at,
        )
        .expect("valid");
        assert_eq!(f.status, Some(ExecutionStatus::Failed));
        assert_eq!(f.trigger, Some(TriggerKind::Webhook));
        assert_eq!(f.started_from, Some(at - ChronoDuration::hours(24)));
        assert_eq!(f.search.get("email").map(String::as_str), Some("a@b.c"));
        let refused = |pairs: &[(&str, &str)], needle: &str| {
            let error = parse_filter(&params(pairs), at).expect_err("refused");
            assert!(error.to_string().contains(needle), "{pairs:?}: {error}");
        };
        refused(&[("status", "done")], "unknown status `done`");
        refused(&[("trigger", "email")], "unknown trigger type");
        refused(&[("since", "yesterday")], "`since` `yesterday`");
        refused(&[("since", "5w")], "`since` `5w`");
        refused(&[("until", "99999999d")], "`until`");
        refused(&[("since", "2026-12-08T10:00:00Z"), ("until", "2026-12-08T09:00:00Z")], "reversed");
        refused(&[("since", "1h"), ("until", "1h")], "reversed");
        refused(&[("search.bad-key", "x")], "search attribute's name");
        refused(&[("search.email", "")], "1 to 256 bytes");
        refused(&[("search.email", &"x".repeat(257))], "1 to 256 bytes");
        refused(&[("idPrefix", "01/../x")], "idPrefix");
        refused(&[("workflow", "a b")], "not a valid id");
        refused(&[("user", "")], "`user` must be");
        refused(&[("user", "a\u{0}b")], "`user` must be");
        assert!(parse_params(Some("statuss=failed")).expect_err("unknown").to_string().contains("`statuss`"));
        assert!(parse_params(Some("status=failed&status=running")).expect_err("twice").to_string().contains("twice"));
    }
}

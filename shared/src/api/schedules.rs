//! `GET /projects/{p}/schedules[?workflow=&after=&limit=]` (project API key): the schedule
//! ledger's rows — for each (workflow, user), the next fire, the last one and its execution,
//! and how many fires started, were skipped (`overlap: skip`) or missed (after an outage).

use bytes::Bytes;
use http::{HeaderMap, Response, StatusCode};
use serde_json::json;

use super::executions::authorize;
use crate::error::{ApiError, json_response};
use crate::runner::Runner;

const MAX_PAGE: usize = 500;

pub(super) async fn list(
    runner: &Runner,
    project_id: &str,
    headers: &HeaderMap,
    query: Option<&str>,
) -> Result<Response<Bytes>, ApiError> {
    let runtime = runner.runtime();
    authorize(runtime, project_id, headers).await?;
    let (mut workflow, mut after, mut limit) = (None, None, 100);
    for (name, value) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        match name.as_ref() {
            "workflow" => workflow = Some(value.into_owned()),
            "after" => after = Some(value.into_owned()),
            "limit" => limit = super::page_limit(&value, MAX_PAGE)?,
            other => return Err(ApiError::BadRequest(format!("unknown query parameter `{other}`"))),
        }
    }
    // `after` is `<workflowId>/<userId>`, the `next` of the previous page.
    let after_pair = match &after {
        Some(text) => Some(
            text.split_once('/')
                .ok_or_else(|| ApiError::BadRequest("`after` is the `next` of a previous page".into()))?,
        ),
        None => None,
    };
    let rows = runtime.store.list_schedules(project_id, workflow.as_deref(), after_pair, limit).await?;
    let next = (rows.len() == limit).then(|| rows.last().map(|r| format!("{}/{}", r.workflow_id, r.user_id))).flatten();
    Ok(json_response(StatusCode::OK, &json!({ "schedules": rows, "next": next })))
}

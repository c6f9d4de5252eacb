//! Webhook routes:
//! - `POST /projects/{p}/webhooks/{integration}`: a provider's delivery, authenticated by its
//!   signature instead of a token (`crate::webhooks`): 200 with each event's outcome, the
//!   handshake's answer, 401 for a bad, missing, duplicated or stale signature, 4xx for a body
//!   that cannot be read; nothing started or kept for a refused one.
//! - `GET /projects/{p}/webhook-deliveries[?integration=&unrouted=true&before=&limit=]` and
//!   `GET /projects/{p}/webhook-deliveries/{id}` (project API key): the kept deliveries, newest
//!   first — unrouted events are found here.

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use serde_json::json;

use super::executions::authorize;
use crate::error::{ApiError, json_response};
use crate::model::webhook::ChallengeAnswer;
use crate::runner::Runner;
use crate::webhooks::{self, Answer, Inbound, WebhookError};

/// The most deliveries one page lists.
const MAX_PAGE: usize = 100;

impl From<WebhookError> for ApiError {
    fn from(error: WebhookError) -> Self {
        match error {
            WebhookError::UnknownIntegration(_) | WebhookError::NotDeclared(_) => ApiError::NotFound(error.to_string()),
            WebhookError::NotConfigured { .. } => ApiError::NotConfigured(error.to_string()),
            WebhookError::Refused(_) => ApiError::Unauthorized(error.to_string()),
            WebhookError::BadBody(message) => ApiError::BadRequest(message),
            WebhookError::TooLarge { size, limit } => ApiError::PayloadTooLarge { size, limit },
            WebhookError::Store(error) => ApiError::Store(error),
            WebhookError::Start(error) => error.into(),
        }
    }
}

/// `POST /projects/{p}/webhooks/{integration}`.
pub(super) async fn receive(
    runner: &Runner,
    project_id: &str,
    integration: &str,
    request: Request<Bytes>,
) -> Result<Response<Bytes>, ApiError> {
    let (parts, body) = request.into_parts();
    let url = called_url(&parts.uri, &parts.headers);
    let inbound = Inbound {
        project_id,
        integration,
        method: parts.method.as_str(),
        url: &url,
        query: parts.uri.query(),
        headers: &parts.headers,
        body: &body,
    };
    match webhooks::receive(runner, inbound).await? {
        Answer::Challenge(ChallengeAnswer::Json(value)) => Ok(json_response(StatusCode::OK, &value)),
        Answer::Challenge(ChallengeAnswer::Text(text)) => Response::builder()
            .status(StatusCode::OK)
            .header(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")
            .body(Bytes::from(text))
            .map_err(|e| ApiError::Internal(e.to_string())),
        Answer::Accepted(accepted) => Ok(json_response(StatusCode::OK, &json!(accepted))),
    }
}

/// The URL as the provider called it (what HubSpot signs): the request's own when absolute,
/// else `X-Forwarded-Proto` (http by default) and `Host` with the path and query.
fn called_url(uri: &http::Uri, headers: &HeaderMap) -> String {
    if uri.scheme().is_some() && uri.authority().is_some() {
        return uri.to_string();
    }
    let proto = headers.get("x-forwarded-proto").and_then(|v| v.to_str().ok()).unwrap_or("http");
    let host = headers.get(http::header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("localhost");
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    format!("{proto}://{host}{path}")
}

/// `GET /projects/{p}/webhook-deliveries`.
pub(super) async fn list(
    runner: &Runner,
    project_id: &str,
    headers: &HeaderMap,
    query: Option<&str>,
) -> Result<Response<Bytes>, ApiError> {
    let runtime = runner.runtime();
    authorize(runtime, project_id, headers).await?;
    let (mut integration, mut unrouted, mut before, mut limit) = (None, false, None, 50);
    for (name, value) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        match name.as_ref() {
            "integration" => integration = Some(value.into_owned()),
            "unrouted" => {
                unrouted = match value.as_ref() {
                    "true" => true,
                    "false" => false,
                    _ => return Err(ApiError::BadRequest("`unrouted` is true or false".into())),
                }
            }
            "before" => before = Some(value.into_owned()),
            "limit" => limit = super::page_limit(&value, MAX_PAGE)?,
            other => return Err(ApiError::BadRequest(format!("unknown query parameter `{other}`"))),
        }
    }
    let deliveries =
        runtime.store.list_deliveries(project_id, integration.as_deref(), unrouted, before.as_deref(), limit).await?;
    let next = (deliveries.len() == limit).then(|| deliveries.last().map(|d| d.id.clone())).flatten();
    Ok(json_response(StatusCode::OK, &json!({ "deliveries": deliveries, "next": next })))
}

/// `GET /projects/{p}/webhook-deliveries/{id}`.
pub(super) async fn get(
    runner: &Runner,
    project_id: &str,
    delivery_id: &str,
    headers: &HeaderMap,
) -> Result<Response<Bytes>, ApiError> {
    let runtime = runner.runtime();
    authorize(runtime, project_id, headers).await?;
    let delivery = runtime
        .store
        .get_delivery(project_id, delivery_id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no webhook delivery `{delivery_id}`")))?;
    Ok(json_response(StatusCode::OK, &json!(delivery)))
}

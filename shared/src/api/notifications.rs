//! Failure notification destinations, with the project API key:
//! `POST|GET /projects/{p}/notification-destinations`,
//! `DELETE /projects/{p}/notification-destinations/{id}` and
//! `POST /projects/{p}/notification-destinations/{id}/test`.
//!
//! Invariant: a destination's secret (`whsec_…`) is in the answer that created it and nowhere
//! else: it is stored sealed, listed never, and logged never.

use bytes::Bytes;
use http::{HeaderMap, Response, StatusCode};
use serde_json::{Value, json};

use super::executions::authorize;
use crate::crypto;
use crate::error::{ApiError, json_response};
use crate::notifications::{self, Attempt, MAX_DESCRIPTION_LEN};
use crate::ports::{MAX_NOTIFICATION_DESTINATIONS, NotificationDestination, secret_context};
use crate::record::{format_timestamp, now};
use crate::runtime::Runtime;

/// A destination as listed: never its secret.
fn shown(destination: &NotificationDestination) -> Value {
    json!({
        "id": destination.id,
        "url": destination.url,
        "description": destination.description,
        "createdAt": format_timestamp(&destination.created_at),
    })
}

/// `POST /projects/{p}/notification-destinations` `{"url", "description"?}` → 201 with the
/// secret, shown this once.
pub(super) async fn create(
    runtime: &Runtime,
    project_id: &str,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Response<Bytes>, ApiError> {
    authorize(runtime, project_id, headers).await?;
    let body: Value =
        serde_json::from_slice(body).map_err(|e| ApiError::BadRequest(format!("the body is not JSON: {e}")))?;
    let Some(fields) = body.as_object() else {
        return Err(ApiError::BadRequest("the body must be a JSON object".into()));
    };
    if let Some(unknown) = fields.keys().find(|k| !matches!(k.as_str(), "url" | "description")) {
        return Err(ApiError::BadRequest(format!("unknown field `{unknown}` (expected `url`, `description`)")));
    }
    let url = match fields.get("url") {
        Some(Value::String(url)) => url,
        Some(_) => return Err(ApiError::BadRequest("`url` must be a string".into())),
        None => return Err(ApiError::BadRequest("`url` is required".into())),
    };
    let url = notifications::check_destination_url(url, &runtime.http).map_err(ApiError::BadRequest)?;
    let description = match fields.get("description") {
        None | Some(Value::Null) => None,
        Some(Value::String(text)) if text.chars().count() <= MAX_DESCRIPTION_LEN => Some(text.clone()),
        Some(Value::String(_)) => {
            return Err(ApiError::BadRequest(format!("`description` is longer than {MAX_DESCRIPTION_LEN} characters")));
        }
        Some(_) => return Err(ApiError::BadRequest("`description` must be a string".into())),
    };
    let keys = runtime
        .connect
        .keys()
        .map_err(|_| ApiError::NotConfigured("no key is configured to seal notification secrets".into()))?;
    let id = uuid::Uuid::now_v7().simple().to_string();
    let (secret, key) = notifications::new_secret().map_err(|e| ApiError::Unavailable(e.to_string()))?;
    let sealed = crypto::seal(keys, &secret_context(project_id, &id), &key).await.map_err(|e| {
        if e.is_retryable() { ApiError::Unavailable(e.to_string()) } else { ApiError::Internal(e.to_string()) }
    })?;
    let destination = NotificationDestination {
        project_id: project_id.to_string(),
        id,
        url: url.to_string(),
        description,
        created_at: now(),
        secret: sealed,
    };
    if !runtime.store.add_destination(&destination, MAX_NOTIFICATION_DESTINATIONS).await? {
        return Err(ApiError::BadRequest(format!(
            "a project has at most {MAX_NOTIFICATION_DESTINATIONS} notification destinations; delete one first"
        )));
    }
    let mut answer = shown(&destination);
    answer["secret"] = Value::String(secret);
    Ok(json_response(StatusCode::CREATED, &answer))
}

/// `GET /projects/{p}/notification-destinations`.
pub(super) async fn list(
    runtime: &Runtime,
    project_id: &str,
    headers: &HeaderMap,
) -> Result<Response<Bytes>, ApiError> {
    authorize(runtime, project_id, headers).await?;
    let destinations = runtime.store.list_destinations(project_id).await?;
    let listed: Vec<Value> = destinations.iter().map(shown).collect();
    Ok(json_response(StatusCode::OK, &json!({ "destinations": listed })))
}

/// `DELETE /projects/{p}/notification-destinations/{id}` → 204; notifications still queued
/// for it are dropped.
pub(super) async fn delete(
    runtime: &Runtime,
    project_id: &str,
    destination_id: &str,
    headers: &HeaderMap,
) -> Result<Response<Bytes>, ApiError> {
    authorize(runtime, project_id, headers).await?;
    if !runtime.store.delete_destination(project_id, destination_id).await? {
        return Err(missing(destination_id));
    }
    Response::builder().status(StatusCode::NO_CONTENT).body(Bytes::new()).map_err(|e| ApiError::Internal(e.to_string()))
}

fn missing(destination_id: &str) -> ApiError {
    ApiError::NotFound(format!("no notification destination `{destination_id}` in this project"))
}

/// `POST /projects/{p}/notification-destinations/{id}/test`: sends a `test` event now, once,
/// and answers what the receiver answered.
pub(super) async fn test(
    runtime: &Runtime,
    project_id: &str,
    destination_id: &str,
    headers: &HeaderMap,
) -> Result<Response<Bytes>, ApiError> {
    authorize(runtime, project_id, headers).await?;
    let destination =
        runtime.store.get_destination(project_id, destination_id).await?.ok_or_else(|| missing(destination_id))?;
    let key = notifications::destination_key(runtime, &destination).await.map_err(|e| {
        if e.is_retryable() { ApiError::Unavailable(e.to_string()) } else { ApiError::Internal(e.to_string()) }
    })?;
    let at = now();
    let id = format!("msg_test_{}", uuid::Uuid::new_v4().simple());
    let body = json!({
        "type": "test",
        "timestamp": format_timestamp(&at),
        "data": { "projectId": project_id, "destinationId": destination_id },
    })
    .to_string();
    let answer = match notifications::post(&runtime.http, &destination.url, &key, &id, &body).await {
        Attempt::Delivered(status) => json!({ "delivered": true, "status": status }),
        Attempt::Refused(status) => json!({ "delivered": false, "status": status }),
        Attempt::Failed(reason) | Attempt::Blocked(reason) => {
            json!({ "delivered": false, "status": null, "error": reason })
        }
    };
    Ok(json_response(StatusCode::OK, &json!({ "webhookId": id, "receiver": answer })))
}

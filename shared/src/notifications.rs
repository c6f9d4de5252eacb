//! Failure notifications: when an execution ends `failed`, every destination its project
//! registered gets a signed `execution.failed` event, in the Standard Webhooks format
//! (<https://www.standardwebhooks.com/>): headers `webhook-id`, `webhook-timestamp` (unix
//! seconds) and `webhook-signature: v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`,
//! the key being the bytes behind the destination's `whsec_<base64>` secret.
//!
//! Invariants: the messages, one per (execution, destination), are queued before the
//! execution is marked failed (a failure to queue them leaves it running, to be ended again),
//! and a message whose execution has not ended yet waits for it; a message whose execution
//! ended otherwise (a lost race with a cancel) sends nothing. Its handler POSTs through the
//! outbound guard ([`crate::net`]) with a [`DELIVERY_TIMEOUT`], and on a non-2xx answer, a
//! timeout or a connection error sends itself again with an exponential queue delay, up to
//! [`MAX_ATTEMPTS`] attempts, then gives up with a log line. The `webhook-id` and the body are
//! the same on every attempt (`msg_<execution>_<destination>`), so receivers can dedupe; a
//! deleted destination gets no further attempt. The payload names the execution and its
//! failure only: never trigger data, step outputs or secrets, and the secret is never logged.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Value, json};

use crate::crypto;
use crate::messages::NotifyMessage;
use crate::net::{HttpClient, OutboundPolicy, find_net_error};
use crate::ports::{NotificationDestination, Outgoing, QueueName, secret_context};
use crate::record::{Execution, ExecutionStatus, format_timestamp, now};
use crate::runner::RunError;
use crate::runtime::{BASE_URL_ENV, Runtime};

/// Attempts of one notification before it is given up.
pub const MAX_ATTEMPTS: u32 = 8;
/// How long one attempt waits for the receiver's answer.
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);
/// The wait before the second attempt; each later wait is 3 times the one before, at most
/// 900 s (SQS's longest delay): 5 s, 15 s, 45 s, 2¼ min, 6¾ min, then 15 min.
pub const FIRST_RETRY_DELAY: Duration = Duration::from_secs(5);
/// How long a notification that found its execution not ended yet waits before it looks again.
pub const WAIT_DELAY: Duration = Duration::from_secs(2);
/// How many times it looks (10 minutes) before it is dropped with a log line.
pub const MAX_WAITS: u32 = 300;
/// The longest URL a destination may have.
pub const MAX_URL_LEN: usize = 2048;
/// The longest description a destination may have.
pub const MAX_DESCRIPTION_LEN: usize = 500;
/// The prefix of a secret as shown.
pub const SECRET_PREFIX: &str = "whsec_";
/// Random bytes in a secret (Standard Webhooks: 24 to 64).
const SECRET_BYTES: usize = 32;

/// The delay before attempt `attempt + 1` after attempt `attempt` failed.
pub fn retry_delay(attempt: u32) -> Duration {
    let factor = 3u64.saturating_pow(attempt.saturating_sub(1));
    let seconds = FIRST_RETRY_DELAY.as_secs().saturating_mul(factor);
    Duration::from_secs(seconds.min(crate::ports::MAX_QUEUE_DELAY.as_secs()))
}

/// A new signing secret: what is shown once (`whsec_<base64>`) and the key bytes.
pub fn new_secret() -> Result<(String, Vec<u8>), crypto::CryptoError> {
    let mut key = vec![0u8; SECRET_BYTES];
    aws_lc_rs::rand::fill(&mut key)
        .map_err(|_| crypto::CryptoError::Backend("the secure random generator failed".into()))?;
    Ok((format!("{SECRET_PREFIX}{}", BASE64.encode(&key)), key))
}

/// The `webhook-signature` header value of `body` sent as message `id` at `timestamp`.
pub fn sign(key: &[u8], id: &str, timestamp: i64, body: &str) -> String {
    let signed = format!("{id}.{timestamp}.{body}");
    let tag = aws_lc_rs::hmac::sign(&aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, key), signed.as_bytes());
    format!("v1,{}", BASE64.encode(tag.as_ref()))
}

/// The `webhook-id` of the notification of `execution_id` to `destination_id`: the same on
/// every attempt.
pub fn webhook_id(execution_id: &str, destination_id: &str) -> String {
    format!("msg_{execution_id}_{destination_id}")
}

/// Why a destination URL is refused (the message names the problem).
pub fn check_destination_url(text: &str, http: &HttpClient) -> Result<url::Url, String> {
    if text.len() > MAX_URL_LEN {
        return Err(format!("`url` is longer than {MAX_URL_LEN} characters"));
    }
    let url = url::Url::parse(text).map_err(|e| format!("`url` is not a valid URL: {e}"))?;
    let OutboundPolicy { allow_loopback, allow_private } = http.policy();
    match url.scheme() {
        "https" => {}
        "http" if allow_loopback || allow_private => {}
        scheme => return Err(format!("`url` must be https (not `{scheme}`)")),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("`url` must not carry a user name or password".into());
    }
    if url.host().is_none() {
        return Err("`url` has no host".into());
    }
    http.check_url(&url).map_err(|e| format!("`url` is refused: {e}"))?;
    Ok(url)
}

/// The `execution.failed` event of `execution` (ended): its ids, the failing step, the error
/// and a link to it in the dashboard (when the stack's public address is known,
/// `SLUICE_BASE_URL`).
pub fn failed_payload(execution: &Execution, base_url: Option<&str>) -> Value {
    let error = execution.error.as_ref();
    let at = execution.ended_at.unwrap_or(execution.started_at);
    json!({
        "type": "execution.failed",
        "timestamp": format_timestamp(&at),
        "data": {
            "executionId": execution.id,
            "projectId": execution.project_id,
            "workflowId": execution.workflow_id,
            "workflowVersion": execution.workflow_version,
            "userId": execution.user_id,
            "failedStep": error.and_then(|e| e.step.clone()),
            "error": error.map(|e| e.message.clone()),
            "startedAt": format_timestamp(&execution.started_at),
            "endedAt": execution.ended_at.as_ref().map(format_timestamp),
            "dashboardUrl": base_url.map(|base| dashboard_url(base, &execution.id)),
        }
    })
}

fn dashboard_url(base: &str, execution_id: &str) -> String {
    format!("{}/dashboard#/executions/{execution_id}", base.trim_end_matches('/'))
}

/// Queues the failure notifications of execution `execution_id` of `project_id`, one message
/// per destination: one read of the destinations, one batch of messages. Called just before
/// the execution is marked failed, so that a failure here leaves it running and the message
/// that ends it is delivered again: no failed execution is left without its notifications.
/// A delivery that finds its execution not ended yet waits for it ([`handle`]).
pub async fn queue_failed(runtime: &Runtime, project_id: &str, execution_id: &str) -> Result<(), RunError> {
    let destinations = runtime.store.list_destinations(project_id).await?;
    if destinations.is_empty() {
        return Ok(());
    }
    let messages: Vec<Outgoing> = destinations
        .iter()
        .map(|d| NotifyMessage {
            project_id: project_id.to_string(),
            execution_id: execution_id.to_string(),
            destination_id: d.id.clone(),
            attempt: 1,
            waits: 0,
        })
        .map(|m| Outgoing { body: m.to_json(), delay: Duration::ZERO })
        .collect();
    runtime.queue.send_batch(QueueName::Steps, messages).await?;
    Ok(())
}

/// What one attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// The receiver answered 2xx.
    Delivered(u16),
    /// The receiver answered something else.
    Refused(u16),
    /// No answer: timeout, connection error, DNS.
    Failed(String),
    /// The outbound guard refused the destination; retrying will not help.
    Blocked(String),
}

/// POSTs `body` as message `id`, signed with `key`, to `url`, through the guarded client.
pub async fn post(http: &HttpClient, url: &str, key: &[u8], id: &str, body: &str) -> Attempt {
    let url = match url::Url::parse(url) {
        Ok(url) => url,
        Err(e) => return Attempt::Blocked(format!("invalid URL: {e}")),
    };
    if let Err(e) = http.check_url(&url) {
        return Attempt::Blocked(e.to_string());
    }
    let timestamp = now().timestamp();
    let answer = http
        .client()
        .post(url)
        .timeout(DELIVERY_TIMEOUT)
        .header("content-type", "application/json")
        .header("webhook-id", id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", sign(key, id, timestamp, body))
        .body(body.to_string())
        .send()
        .await;
    match answer {
        Ok(answer) if answer.status().is_success() => Attempt::Delivered(answer.status().as_u16()),
        Ok(answer) => Attempt::Refused(answer.status().as_u16()),
        Err(error) => match find_net_error(&error) {
            Some(net) if net.is_blocked() => Attempt::Blocked(net.to_string()),
            _ => Attempt::Failed(describe(&error)),
        },
    }
}

/// A reqwest error with its sources (reqwest's own message is terse), without the URL.
fn describe(error: &reqwest::Error) -> String {
    let mut text = if error.is_timeout() { "timed out".to_string() } else { "request failed".to_string() };
    let mut source = std::error::Error::source(error);
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

/// The key of `destination`, unsealed.
pub async fn destination_key(runtime: &Runtime, destination: &NotificationDestination) -> Result<Vec<u8>, RunError> {
    let keys = runtime.connect.keys().map_err(|e| RunError::Poison(e.to_string()))?;
    let context = secret_context(&destination.project_id, &destination.id);
    crypto::open(keys, &context, &destination.secret).await.map_err(|e| {
        if e.is_retryable() { RunError::Retryable(e.to_string()) } else { RunError::Poison(e.to_string()) }
    })
}

/// Handles a [`NotifyMessage`] body: one attempt, then the next one queued with its delay,
/// or the end. Errors only when the store, the key service or the queue failed (the message
/// is then delivered again).
pub async fn handle(runtime: &Runtime, body: &str) -> Result<(), RunError> {
    let message =
        NotifyMessage::from_json(body).map_err(|e| RunError::Poison(format!("malformed notify message: {e}")))?;
    let (execution_id, destination_id) = (&message.execution_id, &message.destination_id);
    let Some(destination) = runtime.store.get_destination(&message.project_id, destination_id).await? else {
        tracing::info!(execution = %execution_id, destination = %destination_id, "notification destination deleted; not sent");
        return Ok(());
    };
    let Some(execution) =
        runtime.store.get_execution(execution_id).await?.filter(|e| e.project_id == message.project_id)
    else {
        tracing::warn!(execution = %execution_id, "failure notification of an unknown execution; dropped");
        return Ok(());
    };
    if !execution.status.is_ended() {
        // Queued just before the execution is marked failed: wait for that.
        if message.waits >= MAX_WAITS {
            tracing::error!(execution = %execution_id, destination = %destination_id, "failure notification dropped: its execution never ended");
            return Ok(());
        }
        let next = NotifyMessage { waits: message.waits + 1, ..message };
        runtime.queue.send(QueueName::Steps, Outgoing { body: next.to_json(), delay: WAIT_DELAY }).await?;
        return Ok(());
    }
    if execution.status != ExecutionStatus::Failed {
        // Marking it failed lost to another end (a cancel, say): nothing to tell.
        tracing::debug!(execution = %execution_id, status = execution.status.as_str(), "execution did not fail; no notification");
        return Ok(());
    }
    let key = destination_key(runtime, &destination).await?;
    let base_url = runtime.settings.env.get(BASE_URL_ENV).map(String::as_str);
    let body = failed_payload(&execution, base_url).to_string();
    let id = webhook_id(execution_id, destination_id);
    let outcome = post(&runtime.http, &destination.url, &key, &id, &body).await;
    let attempt = message.attempt;
    let reason = match outcome {
        Attempt::Delivered(status) => {
            tracing::info!(execution = %execution_id, destination = %destination_id, attempt, status, "failure notification delivered");
            return Ok(());
        }
        Attempt::Blocked(reason) => {
            tracing::error!(execution = %execution_id, destination = %destination_id, attempt, %reason, "failure notification given up: the destination is blocked");
            return Ok(());
        }
        Attempt::Refused(status) => format!("the receiver answered {status}"),
        Attempt::Failed(reason) => reason,
    };
    if attempt >= MAX_ATTEMPTS {
        tracing::error!(execution = %execution_id, destination = %destination_id, attempt, %reason, "failure notification given up after {MAX_ATTEMPTS} attempts");
        return Ok(());
    }
    let delay = retry_delay(attempt);
    tracing::warn!(execution = %execution_id, destination = %destination_id, attempt, %reason, retry_in_s = delay.as_secs(), "failure notification not delivered; will retry");
    let next = NotifyMessage { attempt: attempt + 1, ..message };
    runtime.queue.send(QueueName::Steps, Outgoing { body: next.to_json(), delay }).await?;
    Ok(())
}

#[cfg(test)]
mod tests;

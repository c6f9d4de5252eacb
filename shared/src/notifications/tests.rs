use serde_json::json;

use super::*;
use crate::net::OutboundPolicy;

const DENY: OutboundPolicy = OutboundPolicy { allow_loopback: false, allow_private: false };
const LOOPBACK: OutboundPolicy = OutboundPolicy { allow_loopback: true, allow_private: false };

fn client(policy: OutboundPolicy) -> HttpClient {
    HttpClient::new(policy).expect("HTTP client")
}

fn failed_execution() -> Execution {
    serde_json::from_value(json!({
        "id": "e1",
        "project_id": "p1",
        "workflow_id": "sync-contacts",
        "workflow_version": 3,
        "user_id": "user-7",
        "status": "failed",
        "started_at": "2026-01-02T03:04:05.006Z",
        "ended_at": "2026-01-02T03:04:09.000Z",
        "trigger": { "query": {}, "headers": { "authorization": "Bearer trigger-token" }, "body": { "password": "hunter2" } },
        "response_deadline": null,
        "error": { "step": "push", "message": "HTTP 500 from the CRM" },
    }))
    .expect("an execution")
}

#[test]
fn the_signature_is_the_standard_webhooks_test_vector() {
    // The example of the Standard Webhooks specification's reference libraries.
    let key = BASE64.decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").expect("base64");
    let signature = sign(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1_614_265_330, r#"{"test": 2432232314}"#);
    assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
}

#[test]
fn a_new_secret_is_whsec_and_32_random_bytes() {
    let (shown, key) = new_secret().expect("secret");
    let encoded = shown.strip_prefix(SECRET_PREFIX).expect("whsec_ prefix");
    assert_eq!(BASE64.decode(encoded).expect("base64"), key);
    assert_eq!(key.len(), 32);
    assert_ne!(new_secret().expect("secret").1, key, "random");
}

#[test]
fn retries_back_off_exponentially_up_to_the_queue_limit() {
    let delays: Vec<u64> = (1..MAX_ATTEMPTS).map(|attempt| retry_delay(attempt).as_secs()).collect();
    assert_eq!(delays, [5, 15, 45, 135, 405, 900, 900]);
    assert_eq!(retry_delay(u32::MAX).as_secs(), 900);
}

#[test]
fn destination_urls_are_checked_against_the_outbound_policy() {
    let (deny, loopback) = (client(DENY), client(LOOPBACK));
    assert!(check_destination_url("https://hooks.example.com/sluice?x=1", &deny).is_ok());
    for (url, expected) in [
        ("http://hooks.example.com/", "must be https"),
        ("ftp://hooks.example.com/", "must be https"),
        ("https://user:pass@hooks.example.com/", "user name or password"),
        ("https://user@hooks.example.com/", "user name or password"),
        ("not a url", "not a valid URL"),
        ("https://169.254.169.254/latest/meta-data/", "link-local"),
        ("https://[fd00:ec2::254]/", "unique-local"),
        ("https://10.0.0.8/hook", "private"),
        ("https://127.0.0.1/hook", "loopback"),
    ] {
        let refused = check_destination_url(url, &deny).expect_err(url);
        assert!(refused.contains(expected), "{url}: {refused}");
    }
    let long = format!("https://hooks.example.com/{}", "a".repeat(MAX_URL_LEN));
    assert!(check_destination_url(&long, &deny).expect_err("too long").contains("2048"));
    // A policy that allows loopback (tests, `sluice dev`) takes plain http to loopback, and
    // still refuses the metadata service.
    assert!(check_destination_url("http://127.0.0.1:9000/hook", &loopback).is_ok());
    assert!(check_destination_url("http://169.254.169.254/", &loopback).is_err());
}

#[tokio::test]
async fn a_delivery_to_a_blocked_address_is_refused_by_the_guard() {
    let deny = client(DENY);
    // An IP literal is refused before sending; a name is refused once it resolves.
    for url in ["http://169.254.169.254/latest/meta-data/", "http://127.0.0.1:9/hook", "http://localhost:9/hook"] {
        match post(&deny, url, b"key", "msg_1", "{}").await {
            Attempt::Blocked(reason) => assert!(reason.contains("outbound network guard"), "{url}: {reason}"),
            other => panic!("{url}: not blocked: {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_delivery_is_signed_and_a_refusal_is_reported_with_its_status() {
    use std::sync::{Arc, Mutex};

    use axum::routing::post as route_post;

    let seen: Arc<Mutex<Vec<http::HeaderMap>>> = Arc::default();
    let recorded = seen.clone();
    let router = axum::Router::new().route(
        "/hook",
        route_post(move |headers: http::HeaderMap, body: String| {
            let recorded = recorded.clone();
            async move {
                let first = {
                    let mut seen = recorded.lock().unwrap_or_else(|p| p.into_inner());
                    seen.push(headers);
                    seen.len() == 1
                };
                assert_eq!(body, r#"{"a":1}"#);
                if first { http::StatusCode::SERVICE_UNAVAILABLE } else { http::StatusCode::NO_CONTENT }
            }
        }),
    );
    let addr = crate::net::test_server::spawn(router).await.expect("server");
    let url = format!("http://{addr}/hook");
    let loopback = client(LOOPBACK);
    assert_eq!(post(&loopback, &url, b"k", "msg_x", r#"{"a":1}"#).await, Attempt::Refused(503));
    assert_eq!(post(&loopback, &url, b"k", "msg_x", r#"{"a":1}"#).await, Attempt::Delivered(204));
    let seen = seen.lock().unwrap_or_else(|p| p.into_inner()).clone();
    for headers in &seen {
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
        assert_eq!(header("webhook-id"), "msg_x");
        let timestamp: i64 = header("webhook-timestamp").parse().expect("unix seconds");
        assert!((now().timestamp() - timestamp).abs() < 60);
        assert_eq!(header("webhook-signature"), sign(b"k", "msg_x", timestamp, r#"{"a":1}"#));
    }
    let closed = format!("http://{}/hook", std::net::SocketAddr::from(([127, 0, 0, 1], 9)));
    assert!(matches!(post(&loopback, &closed, b"k", "m", "{}").await, Attempt::Failed(_)));
}

#[test]
fn the_payload_names_the_failure_and_nothing_of_the_trigger() {
    let execution = failed_execution();
    let payload = failed_payload(&execution, Some("https://sluice.example.com/"));
    assert_eq!(
        payload,
        json!({
            "type": "execution.failed",
            "timestamp": "2026-01-02T03:04:09.000Z",
            "data": {
                "executionId": "e1",
                "projectId": "p1",
                "workflowId": "sync-contacts",
                "workflowVersion": 3,
                "userId": "user-7",
                "failedStep": "push",
                "error": "HTTP 500 from the CRM",
                "startedAt": "2026-01-02T03:04:05.006Z",
                "endedAt": "2026-01-02T03:04:09.000Z",
                "dashboardUrl": "https://sluice.example.com/dashboard#/executions/e1",
            }
        })
    );
    let text = payload.to_string();
    assert!(!text.contains("hunter2") && !text.contains("trigger-token"), "{text}");
    assert_eq!(failed_payload(&execution, None)["data"]["dashboardUrl"], Value::Null);
}

#[test]
fn the_webhook_id_is_stable_per_execution_and_destination() {
    assert_eq!(webhook_id("e1", "d1"), webhook_id("e1", "d1"));
    assert_ne!(webhook_id("e1", "d1"), webhook_id("e1", "d2"));
    assert_eq!(webhook_id("e1", "d1"), "msg_e1_d1");
}

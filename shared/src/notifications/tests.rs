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

/// The delivery on a real SQLite store and queue, driven through the step runner.
#[cfg(feature = "sqlite")]
mod delivery {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use async_trait::async_trait;

    use super::*;
    use crate::adapters::sqlite::Sqlite;
    use crate::crypto::{KeyWrap, LocalKeyFile};
    use crate::messages::StepMessage;
    use crate::model::load::load_str;
    use crate::ports::{ConsumeQueue, ExecutionStore, NotificationStore, QueueError, SendQueue, WorkflowStore};
    use crate::record::{ExecutionStatus, sample_execution};
    use crate::runner::Runner;
    use crate::runtime::Settings;

    /// SQLite's queue, whose next `fail_batches` batch sends fail (a queue outage).
    struct Flaky {
        inner: Arc<Sqlite>,
        fail_batches: AtomicUsize,
    }

    #[async_trait]
    impl SendQueue for Flaky {
        async fn send(&self, queue: QueueName, message: Outgoing) -> Result<(), QueueError> {
            self.inner.send(queue, message).await
        }

        async fn send_batch(&self, queue: QueueName, messages: Vec<Outgoing>) -> Result<(), QueueError> {
            if self.fail_batches.load(Ordering::SeqCst) > 0 {
                self.fail_batches.fetch_sub(1, Ordering::SeqCst);
                return Err(QueueError::Backend("the queue is down".into()));
            }
            self.inner.send_batch(queue, messages).await
        }
    }

    struct Fixture {
        runner: Runner,
        db: Arc<Sqlite>,
        queue: Arc<Flaky>,
        dir: std::path::PathBuf,
    }

    impl Drop for Fixture {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    async fn fixture() -> Fixture {
        let dir = std::env::temp_dir().join(format!("sluice-notify-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let keys: Arc<dyn KeyWrap> = Arc::new(LocalKeyFile::open_or_create(dir.join("master.key")).expect("key file"));
        let db = Arc::new(Sqlite::in_memory().expect("SQLite"));
        let queue = Arc::new(Flaky { inner: db.clone(), fail_batches: AtomicUsize::new(0) });
        let runtime =
            Runtime::new(db.clone(), queue.clone(), db.clone(), client(LOOPBACK), Settings::default()).with_keys(keys);
        Fixture { runner: Runner::new(runtime), db, queue, dir }
    }

    impl Fixture {
        /// A destination of project `p` at `url`.
        async fn destination(&self, url: &str) -> NotificationDestination {
            let id = uuid::Uuid::now_v7().simple().to_string();
            let keys = self.runner.runtime().connect.keys().expect("keys");
            let secret = crypto::seal(keys, &secret_context("p", &id), b"key").await.expect("seal");
            let destination = NotificationDestination {
                project_id: "p".into(),
                id,
                url: url.into(),
                description: None,
                created_at: now(),
                secret,
            };
            assert!(self.db.add_destination(&destination, 10).await.expect("add"));
            destination
        }

        /// The bodies on the steps queue within `wait` (received and acked).
        async fn queued(&self, wait: Duration) -> Vec<String> {
            let got = self.db.receive(QueueName::Steps, 10, wait, Duration::from_secs(30)).await.expect("receive");
            for message in &got {
                self.db.ack(QueueName::Steps, &message.receipt).await.expect("ack");
            }
            got.into_iter().map(|m| m.body).collect()
        }

        async fn status(&self, id: &str) -> ExecutionStatus {
            self.db.get_execution(id).await.expect("read").expect("exists").status
        }
    }

    #[tokio::test]
    async fn notifications_are_queued_before_the_execution_fails_and_a_queue_outage_leaves_it_running() {
        let f = fixture().await;
        let destination = f.destination("http://127.0.0.1:9/hook").await;
        let workflow = load_str(
            "w.yaml",
            "id: w\ntrigger: { type: request }\nsteps:\n  - { id: push, type: request, url: \"http://127.0.0.1:9/crm\" }\n",
        )
        .expect("valid workflow");
        f.db.deploy_workflow("p", &workflow).await.expect("deploy");
        let execution = sample_execution(&format!("e-{}", uuid::Uuid::new_v4().simple()));
        f.db.create_execution(&execution).await.expect("create");
        let message = StepMessage::first(&execution.id, "push").to_json();

        f.queue.fail_batches.store(1, Ordering::SeqCst);
        let first = f.runner.handle(&message, 1).await;
        assert!(first.is_err_and(|e| e.is_retryable()), "the step message must come back");
        assert_eq!(f.status(&execution.id).await, ExecutionStatus::Running, "not failed without its notifications");
        assert!(f.queued(Duration::ZERO).await.is_empty());

        f.runner.handle(&message, 2).await.expect("the redelivery");
        assert_eq!(f.status(&execution.id).await, ExecutionStatus::Failed);
        let queued = f.queued(Duration::ZERO).await;
        assert_eq!(queued.len(), 1, "{queued:?}");
        let notify = NotifyMessage::from_json(&queued[0]).expect("a notify message");
        assert_eq!((notify.destination_id.as_str(), notify.attempt, notify.waits), (destination.id.as_str(), 1, 0));
        assert_eq!(notify.execution_id, execution.id);
    }

    #[tokio::test]
    async fn a_notification_waits_for_its_execution_and_is_dropped_when_it_did_not_fail() {
        let f = fixture().await;
        let destination = f.destination("http://127.0.0.1:9/hook").await;
        let execution = sample_execution(&format!("e-{}", uuid::Uuid::new_v4().simple()));
        f.db.create_execution(&execution).await.expect("create");
        let message = NotifyMessage {
            project_id: "p".into(),
            execution_id: execution.id.clone(),
            destination_id: destination.id.clone(),
            attempt: 1,
            waits: 0,
        };
        // Still running: it looks again later.
        f.runner.handle(&message.to_json(), 1).await.expect("handled");
        assert!(f.queued(Duration::ZERO).await.is_empty(), "after a delay");
        let again = f.queued(WAIT_DELAY + Duration::from_secs(1)).await;
        assert_eq!(again.len(), 1);
        assert_eq!(NotifyMessage::from_json(&again[0]).expect("notify").waits, 1);
        // Waited long enough: dropped.
        let waited = NotifyMessage { waits: MAX_WAITS, ..message.clone() };
        f.runner.handle(&waited.to_json(), 1).await.expect("handled");
        assert!(f.queued(Duration::ZERO).await.is_empty());
        // Ended otherwise (succeeded): nothing sent, nothing queued.
        f.db.finish_execution(&execution.project_id, &execution.id, ExecutionStatus::Succeeded, None, now())
            .await
            .expect("finish");
        f.runner.handle(&message.to_json(), 1).await.expect("handled");
        assert!(f.queued(Duration::ZERO).await.is_empty());
    }

    #[tokio::test]
    async fn a_failed_attempt_is_sent_again_with_its_delay_until_the_last_and_a_deleted_destination_stops() {
        let f = fixture().await;
        // Nothing listens on port 9: every attempt fails to connect.
        let destination = f.destination("http://127.0.0.1:9/hook").await;
        let execution = sample_execution(&format!("e-{}", uuid::Uuid::new_v4().simple()));
        f.db.create_execution(&execution).await.expect("create");
        f.db.finish_execution(&execution.project_id, &execution.id, ExecutionStatus::Failed, None, now())
            .await
            .expect("finish");
        let message = NotifyMessage {
            project_id: "p".into(),
            execution_id: execution.id.clone(),
            destination_id: destination.id.clone(),
            attempt: 1,
            waits: 0,
        };
        f.runner.handle(&message.to_json(), 1).await.expect("handled");
        // The retry waits 5 s in the queue: not visible yet.
        assert!(f.queued(Duration::ZERO).await.is_empty(), "delayed");
        let last = NotifyMessage { attempt: MAX_ATTEMPTS, ..message.clone() };
        f.runner.handle(&last.to_json(), 1).await.expect("handled");
        let count = |db: &Sqlite| {
            let db = db.clone();
            async move { db.receive(QueueName::Steps, 10, Duration::from_secs(7), Duration::from_secs(30)).await }
        };
        let due = count(&f.db).await.expect("receive");
        let attempts: Vec<u32> =
            due.iter().map(|m| NotifyMessage::from_json(&m.body).expect("notify").attempt).collect();
        assert_eq!(attempts, [2], "attempt 2 after its delay; none after the last attempt");
        // Deleted: its queued attempt sends nothing and queues nothing.
        assert!(f.db.delete_destination("p", &destination.id).await.expect("delete"));
        f.runner.handle(&due[0].body, 1).await.expect("handled");
        f.db.ack(QueueName::Steps, &due[0].receipt).await.expect("ack");
        let after = f.db.receive(QueueName::Steps, 10, Duration::from_secs(6), Duration::from_secs(30)).await;
        assert!(after.expect("receive").is_empty());
    }

    #[tokio::test]
    async fn a_dead_lettered_notification_is_given_up_without_failing_anything() {
        let f = fixture().await;
        let execution = sample_execution(&format!("e-{}", uuid::Uuid::new_v4().simple()));
        f.db.create_execution(&execution).await.expect("create");
        let message = NotifyMessage {
            project_id: "p".into(),
            execution_id: execution.id.clone(),
            destination_id: "d".into(),
            attempt: 3,
            waits: 0,
        };
        f.runner.dead_lettered(&message.to_json()).await.expect("handled");
        assert_eq!(f.status(&execution.id).await, ExecutionStatus::Running, "the execution is not touched");
        assert!(f.queued(Duration::ZERO).await.is_empty());
    }
}

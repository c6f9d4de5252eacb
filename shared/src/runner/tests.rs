use super::*;
use crate::model::load::load_str;

fn deployment(version: u32) -> Arc<Deployment> {
    let workflow =
        load_str("w.yaml", "id: w\ntrigger: { type: request }\nsteps:\n  - { id: d, type: delay, for: 1s }\n")
            .expect("valid workflow");
    Arc::new(Deployment {
        project_id: "p".into(),
        workflow_id: "w".into(),
        version,
        workflow,
        deployed_at: chrono::Utc::now(),
    })
}

#[test]
fn version_cache_keeps_versions_apart_and_starts_over_when_full() {
    let cache = VersionCache::default();
    let key = |version: u32| ("p".to_string(), "w".to_string(), version);
    cache.put(key(1), deployment(1));
    cache.put(key(2), deployment(2));
    assert_eq!(cache.get(&key(1)).map(|d| d.version), Some(1));
    assert_eq!(cache.get(&key(2)).map(|d| d.version), Some(2));
    assert!(cache.get(&("q".to_string(), "w".to_string(), 1)).is_none(), "another project's version");
    for version in 3..=VersionCache::MAX_ENTRIES as u32 + 1 {
        cache.put(key(version), deployment(version));
    }
    assert!(cache.get(&key(1)).is_none(), "a full cache starts over");
    assert!(cache.get(&key(VersionCache::MAX_ENTRIES as u32 + 1)).is_some());
}

/// The interpreter on a real SQLite store, with a local HTTP server that counts the calls each
/// step makes and a queue that can be told to fail its next sends (a crash before sending).
#[cfg(feature = "sqlite")]
mod interpreter {
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use async_trait::async_trait;
    use serde_json::json;

    use super::*;
    use crate::adapters::sqlite::Sqlite;
    use crate::net::{HttpClient, OutboundPolicy};
    use crate::ports::{ExecutionStore, SendQueue, WorkflowStore};
    use crate::record::{ExecutionStatus, TriggerData};
    use crate::runtime::Settings;

    /// Sends to SQLite and keeps a copy of what it sent, unless told to fail: then the send is
    /// lost, as in a crash.
    struct FlakyQueue {
        inner: Arc<Sqlite>,
        fail_next: AtomicUsize,
        sent: Mutex<Vec<Outgoing>>,
    }

    #[async_trait]
    impl SendQueue for FlakyQueue {
        async fn send(&self, queue: QueueName, message: Outgoing) -> Result<(), QueueError> {
            if self.fail_next.load(Ordering::SeqCst) > 0 {
                self.fail_next.fetch_sub(1, Ordering::SeqCst);
                return Err(QueueError::Backend("the process died before sending".into()));
            }
            self.sent.lock().expect("sent").push(message.clone());
            self.inner.send(queue, message).await
        }

        async fn send_batch(&self, queue: QueueName, messages: Vec<Outgoing>) -> Result<(), QueueError> {
            self.inner.send_batch(queue, messages).await
        }
    }

    struct Fixture {
        runner: Runner,
        db: Arc<Sqlite>,
        queue: Arc<FlakyQueue>,
        calls: Arc<Mutex<HashMap<String, usize>>>,
        base_url: String,
    }

    /// A server answering `/ok/NAME` with 200 and `/flaky/NAME` with 503 the first time.
    async fn fixture() -> Fixture {
        let calls: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
        let counted = calls.clone();
        let app = axum::Router::new().route(
            "/{kind}/{name}",
            axum::routing::get(move |axum::extract::Path((kind, name)): axum::extract::Path<(String, String)>| {
                let counted = counted.clone();
                async move {
                    let n = {
                        let mut calls = counted.lock().expect("calls");
                        let n = calls.entry(name.clone()).or_default();
                        *n += 1;
                        *n
                    };
                    let status = if kind == "flaky" && n == 1 { 503 } else { 200 };
                    (
                        axum::http::StatusCode::from_u16(status).expect("status"),
                        axum::Json(json!({ "name": name, "call": n })),
                    )
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base_url = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        let db = Arc::new(Sqlite::in_memory().expect("SQLite"));
        let queue = Arc::new(FlakyQueue { inner: db.clone(), fail_next: AtomicUsize::new(0), sent: Mutex::default() });
        let http = HttpClient::new(OutboundPolicy { allow_loopback: true, allow_private: false }).expect("client");
        let runtime = Runtime::new(db.clone(), queue.clone(), db.clone(), http, Settings::default());
        Fixture { runner: Runner::new(runtime), db, queue, calls, base_url }
    }

    impl Fixture {
        async fn execution(&self, yaml: &str) -> Execution {
            let workflow = load_str("w.yaml", &yaml.replace("BASE", &self.base_url)).expect("valid workflow");
            let deployment = self.db.deploy_workflow("p", &workflow).await.expect("deploy");
            let execution = Execution {
                id: format!("e-{}", uuid::Uuid::new_v4()),
                workflow_id: workflow.id.clone(),
                workflow_version: deployment.version,
                trigger: TriggerData { body: json!({ "items": ["a", "b", "c"] }), ..TriggerData::default() },
                ..crate::record::sample_execution("e")
            };
            self.db.create_execution(&execution).await.expect("create");
            execution
        }

        fn calls(&self, name: &str) -> usize {
            self.calls.lock().expect("calls").get(name).copied().unwrap_or(0)
        }

        async fn status(&self, execution: &Execution) -> ExecutionStatus {
            self.db.get_execution(&execution.id).await.expect("read").expect("exists").status
        }

        /// The step messages sent since the last call.
        fn queued(&self) -> Vec<StepMessage> {
            let sent = std::mem::take(&mut *self.queue.sent.lock().expect("sent"));
            sent.iter().map(|m| serde_json::from_str(&m.body).expect("step message")).collect()
        }
    }

    #[tokio::test]
    async fn a_redelivered_message_does_not_rerun_the_recorded_attempt() {
        let f = fixture().await;
        let execution = f
            .execution("id: w\ntrigger: { type: request }\nsteps:\n  - { id: a, type: request, url: \"BASE/ok/a\" }\n  - { id: b, type: request, url: \"BASE/ok/b\" }\n")
            .await;
        let message = StepMessage::first(&execution.id, "a").to_json();
        f.runner.handle(&message, 1).await.expect("first delivery");
        assert_eq!((f.calls("a"), f.calls("b")), (1, 1));
        assert_eq!(f.status(&execution).await, ExecutionStatus::Succeeded);
        // The same message again (SQS delivers at least once): nothing runs twice.
        f.runner.handle(&message, 2).await.expect("redelivery");
        assert_eq!((f.calls("a"), f.calls("b")), (1, 1));
        assert_eq!(f.db.list_steps(&execution.id).await.expect("steps").len(), 2);
    }

    #[tokio::test]
    async fn a_recorded_attempt_found_on_redelivery_is_used_as_recorded() {
        let f = fixture().await;
        let execution = f
            .execution("id: w\ntrigger: { type: request }\nsteps:\n  - { id: a, type: request, url: \"BASE/ok/a\" }\n  - { id: b, type: request, url: \"BASE/ok/b\" }\n")
            .await;
        // Recorded by a delivery that died right after recording (before running `b`).
        let at = now();
        let recorded = StepAttempt {
            step: "a".into(),
            attempt: 1,
            status: StepStatus::Succeeded,
            input: json!({}),
            output: Some(json!({ "status": 200, "body": { "recorded": true } })),
            error: None,
            started_at: at,
            ended_at: at,
            logs: Vec::new(),
        };
        f.db.record_step(&execution.id, &recorded).await.expect("record");
        f.runner.handle(&StepMessage::first(&execution.id, "a").to_json(), 2).await.expect("redelivery");
        assert_eq!((f.calls("a"), f.calls("b")), (0, 1), "a is not re-run; its successor runs");
        assert_eq!(f.db.get_step(&execution.id, &StepKey::top("a"), 1).await.expect("read"), Some(recorded));
        assert_eq!(f.status(&execution).await, ExecutionStatus::Succeeded);
    }

    #[tokio::test]
    async fn a_crash_between_recording_a_step_and_sending_its_successor_loses_nothing() {
        let f = fixture().await;
        let execution = f
            .execution("id: w\ntrigger: { type: request }\nsteps:\n  - { id: a, type: request, url: \"BASE/flaky/a\", retries: 1, retry_delay: 1s }\n")
            .await;
        let message = StepMessage::first(&execution.id, "a").to_json();
        // Attempt 1 fails (503) and is recorded; sending its retry is lost.
        f.queue.fail_next.store(1, Ordering::SeqCst);
        let first = f.runner.handle(&message, 1).await;
        assert!(first.is_err_and(|e| e.is_retryable()), "the message must come back");
        assert_eq!(f.calls("a"), 1);
        assert!(
            f.db.get_step(&execution.id, &StepKey::top("a"), 1).await.expect("read").is_some(),
            "attempt 1 is recorded"
        );
        // The message comes back: attempt 1 is not re-run, and the retry is sent this time.
        f.runner.handle(&message, 2).await.expect("redelivery");
        assert_eq!(f.calls("a"), 1, "attempt 1 ran once");
        let queued = f.queued();
        assert_eq!(queued.iter().map(|m| (m.step.as_str(), m.attempt)).collect::<Vec<_>>(), [("a", 2)]);
        // The retry runs and the execution ends.
        f.runner.handle(&queued[0].to_json(), 1).await.expect("retry");
        assert_eq!(f.calls("a"), 2);
        assert_eq!(f.status(&execution).await, ExecutionStatus::Succeeded);
    }

    #[tokio::test]
    async fn a_last_delay_leaves_the_execution_waiting_until_it_is_woken() {
        let f = fixture().await;
        let execution = f
            .execution("id: w\ntrigger: { type: request }\nsteps:\n  - { id: a, type: request, url: \"BASE/ok/a\" }\n  - { id: d, type: delay, for: 1h }\n")
            .await;
        f.runner.handle(&StepMessage::first(&execution.id, "a").to_json(), 1).await.expect("run");
        assert_eq!(f.status(&execution).await, ExecutionStatus::Waiting);
        let queued = f.queued();
        assert!(matches!(queued.as_slice(), [m] if m.wake && m.step == "d" && m.not_before_ms.is_some()), "{queued:?}");
        // Woken at its time (here: the due time moved to now), it runs and the execution ends.
        let wake = StepMessage { not_before_ms: Some(now().timestamp_millis()), ..queued[0].clone() };
        f.runner.handle(&wake.to_json(), 1).await.expect("wake");
        let ended = f.db.get_execution(&execution.id).await.expect("read").expect("exists");
        assert_eq!(ended.status, ExecutionStatus::Succeeded);
    }

    #[tokio::test]
    async fn an_inline_fan_out_whose_branch_must_retry_joins_when_that_branch_ends() {
        let f = fixture().await;
        let execution = f
            .execution(
                "id: w\ntrigger: { type: request }\nsteps:\n  - id: each\n    type: fan_out\n    over: \"{{trigger.body.items}}\"\n    concurrency: 2\n    steps:\n      - id: pick\n        type: conditional\n        when: { left: \"{{item}}\", op: equals, right: b }\n        then:\n          - { id: call, type: request, url: \"BASE/flaky/{{item}}\", retries: 1, retry_delay: 1s }\n        else:\n          - { id: plain, type: request, url: \"BASE/ok/{{item}}\" }\n",
            )
            .await;
        let message = StepMessage::first(&execution.id, "each").to_json();
        f.runner.handle(&message, 1).await.expect("fan-out");
        // a and c ran inline and were counted; b failed once and went to the queue to retry.
        assert_eq!((f.calls("a"), f.calls("b"), f.calls("c")), (1, 1, 1));
        assert_eq!(f.status(&execution).await, ExecutionStatus::Running, "not joined while b waits");
        let queued = f.queued();
        assert!(matches!(queued.as_slice(), [m] if m.attempt == 2 && m.key().to_string() == "call@1"), "{queued:?}");
        // The fan-out's message again (a crash before it was acked): recorded branch steps
        // are not run again.
        f.runner.handle(&message, 2).await.expect("redelivered fan-out");
        assert_eq!((f.calls("a"), f.calls("b"), f.calls("c")), (1, 1, 1));
        let _ = f.queued();
        // b's retry ends its branch, which completes the join.
        f.runner.handle(&queued[0].to_json(), 1).await.expect("retry");
        assert_eq!(f.calls("b"), 2);
        assert_eq!(f.status(&execution).await, ExecutionStatus::Succeeded);
        let joined = f.db.get_step(&execution.id, &StepKey::top("each"), 1).await.expect("read").expect("joined");
        let names: Vec<Value> = joined
            .output
            .expect("output")
            .as_array()
            .expect("list")
            .iter()
            .map(|r| r["body"]["name"].clone())
            .collect();
        assert_eq!(names, [json!("a"), json!("b"), json!("c")], "results in input order");
    }

    #[tokio::test]
    async fn a_message_for_an_execution_that_was_never_created_is_dropped() {
        let f = fixture().await;
        f.runner.handle(&StepMessage::first("never-created", "a").to_json(), 1).await.expect("dropped, not failed");
    }
}

//! Runs the conformance suites (`sluice_shared::conformance`) against every adapter: SQLite in
//! memory and on a file, and DynamoDB + SQS on the local AWS-API server named by
//! `SLUICE_AWS_ENDPOINT` (start it with `infra/moto.sh start`). Without that variable the AWS
//! tests print a notice and pass, unless `SLUICE_REQUIRE_AWS=1`, which makes them fail.

#[cfg(feature = "sqlite")]
mod sqlite {
    use std::path::PathBuf;
    use std::time::{Duration, Instant};

    use sluice_shared::adapters::sqlite::Sqlite;
    use sluice_shared::conformance::{history_suite, queue_suite, start_suite, store_suite};
    use sluice_shared::ports::{ConsumeQueue, Outgoing, QueueName, SendQueue};

    /// A temporary folder removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> TempDir {
            TempDir(std::env::temp_dir().join(format!("sluice-conformance-{}", uuid::Uuid::new_v4().simple())))
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            if let Err(e) = std::fs::remove_dir_all(&self.0) {
                eprintln!("cannot remove {}: {e}", self.0.display());
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn in_memory_store_conforms() {
        store_suite(&Sqlite::in_memory().expect("in-memory database")).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn in_memory_history_conforms() {
        history_suite(&Sqlite::in_memory().expect("in-memory database")).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn file_history_conforms() {
        let dir = TempDir::new();
        history_suite(&Sqlite::open(&dir.0.join("sluice.db")).expect("database file")).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn in_memory_queue_conforms() {
        queue_suite(&Sqlite::in_memory().expect("in-memory database")).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn in_memory_start_conforms() {
        let db = Sqlite::in_memory().expect("in-memory database");
        start_suite(&db, &db, &db).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn file_store_conforms() {
        let dir = TempDir::new();
        store_suite(&Sqlite::open(&dir.0.join("nested/sluice.db")).expect("database file")).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn file_queue_conforms() {
        let dir = TempDir::new();
        queue_suite(&Sqlite::open(&dir.0.join("sluice.db")).expect("database file")).await;
    }

    fn message(body: &str) -> Outgoing {
        Outgoing { body: body.to_string(), delay: Duration::ZERO }
    }

    #[tokio::test]
    async fn a_message_received_more_than_max_receives_comes_back_as_a_dead_letter() {
        let db = Sqlite::in_memory().expect("database").with_max_receives(2);
        db.send(QueueName::Steps, message("poison")).await.expect("send");
        db.send(QueueName::Responses, message("other queue")).await.expect("send");
        for expected in 1..=2 {
            let got = db.receive(QueueName::Steps, 10, Duration::ZERO, Duration::ZERO).await.expect("receive");
            assert_eq!(got.len(), 1, "receive {expected}: one delivery even with a zero visibility");
            assert_eq!((got[0].body.as_str(), got[0].receive_count, got[0].dead_letter), ("poison", expected, false));
        }
        // Past the limit it is handed back for its dead-letter handling, and kept once acked.
        let third = db.receive(QueueName::Steps, 10, Duration::ZERO, Duration::ZERO).await.expect("receive");
        assert_eq!(third.len(), 1, "{third:?}");
        assert_eq!((third[0].body.as_str(), third[0].receive_count, third[0].dead_letter), ("poison", 3, true));
        assert!(db.dead_letters(QueueName::Steps).await.expect("dead letters").is_empty(), "not before it is handled");
        db.ack(QueueName::Steps, &third[0].receipt).await.expect("ack");
        assert_eq!(db.dead_letters(QueueName::Steps).await.expect("dead letters"), vec!["poison".to_string()]);
        assert!(db.receive(QueueName::Steps, 10, Duration::ZERO, Duration::ZERO).await.expect("receive").is_empty());
        assert!(db.dead_letters(QueueName::Responses).await.expect("dead letters").is_empty());
        let other = db.receive(QueueName::Responses, 10, Duration::ZERO, Duration::ZERO).await.expect("receive");
        assert_eq!(other.len(), 1, "the other queue is untouched");
    }

    #[tokio::test]
    async fn a_dead_letter_whose_handling_never_finishes_is_moved_aside_and_makes_room() {
        let db = Sqlite::in_memory().expect("database").with_max_receives(1);
        db.send(QueueName::Steps, message("first")).await.expect("send");
        let got = db.receive(QueueName::Steps, 1, Duration::ZERO, Duration::ZERO).await.expect("receive");
        assert_eq!((got.len(), got[0].dead_letter), (1, false));
        // Handed back as a dead letter twice, never acked...
        for count in [2, 3] {
            let got = db.receive(QueueName::Steps, 1, Duration::ZERO, Duration::ZERO).await.expect("receive");
            assert_eq!((got[0].body.as_str(), got[0].receive_count, got[0].dead_letter), ("first", count, true));
        }
        // ...then moved to the dead letters unhandled, making room for a live message in the
        // same receive.
        db.send(QueueName::Steps, message("second")).await.expect("send");
        let got = db.receive(QueueName::Steps, 1, Duration::ZERO, Duration::from_secs(30)).await.expect("receive");
        let bodies: Vec<(&str, bool)> = got.iter().map(|m| (m.body.as_str(), m.dead_letter)).collect();
        assert_eq!(bodies, [("second", false)]);
        assert_eq!(db.dead_letters(QueueName::Steps).await.expect("dead letters"), vec!["first".to_string()]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn long_poll_wakes_when_a_message_is_sent() {
        let db = Sqlite::in_memory().expect("database");
        let sender = db.clone();
        let send = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            sender.send(QueueName::Steps, message("wake up")).await.expect("send");
        });
        let start = Instant::now();
        let got =
            db.receive(QueueName::Steps, 10, Duration::from_secs(10), Duration::from_secs(30)).await.expect("receive");
        assert_eq!(got.len(), 1);
        assert!(start.elapsed() < Duration::from_secs(2), "woke after {:?}", start.elapsed());
        send.await.expect("sender task");
    }

    #[tokio::test]
    async fn sub_second_delays_are_honoured_to_the_millisecond() {
        let db = Sqlite::in_memory().expect("database");
        let start = Instant::now();
        db.send(QueueName::Steps, Outgoing { body: "soon".into(), delay: Duration::from_millis(300) })
            .await
            .expect("send");
        let got =
            db.receive(QueueName::Steps, 10, Duration::from_secs(5), Duration::from_secs(30)).await.expect("receive");
        let at = start.elapsed();
        assert_eq!(got.len(), 1);
        assert!(at >= Duration::from_millis(300) && at < Duration::from_millis(900), "delivered after {at:?}");
    }

    #[tokio::test]
    async fn two_handles_on_one_file_share_the_queue() {
        let dir = TempDir::new();
        let path = dir.0.join("sluice.db");
        let (a, b) = (Sqlite::open(&path).expect("open a"), Sqlite::open(&path).expect("open b"));
        a.send(QueueName::Steps, message("across")).await.expect("send");
        let got =
            b.receive(QueueName::Steps, 10, Duration::from_secs(2), Duration::from_secs(30)).await.expect("receive");
        assert_eq!(got.len(), 1);
        b.ack(QueueName::Steps, &got[0].receipt).await.expect("ack");
        let rest = a.receive(QueueName::Steps, 10, Duration::ZERO, Duration::from_secs(30)).await.expect("receive");
        assert!(rest.is_empty());
    }
}

#[cfg(feature = "aws")]
mod aws {
    use std::time::Duration;

    use aws_config::{BehaviorVersion, Region, SdkConfig};
    use aws_sdk_sqs::types::MessageSystemAttributeName;
    use sluice_shared::adapters::dynamodb::{self, DynamoStore};
    use sluice_shared::adapters::sqs::{self, SqsQueue};
    use std::sync::Arc;

    use sluice_shared::conformance::{SuiteLimits, history_suite, queue_suite, start_suite, store_suite_with};
    use sluice_shared::ports::{ConsumeQueue, Outgoing, QueueName, SendQueue, Store};
    use sluice_shared::start::SendThenCreate;

    /// The local AWS-API server, or None (the test passes with a notice) unless required.
    fn endpoint(test: &str) -> Option<String> {
        match std::env::var("SLUICE_AWS_ENDPOINT") {
            Ok(endpoint) if !endpoint.is_empty() => Some(endpoint),
            _ if std::env::var("SLUICE_REQUIRE_AWS").as_deref() == Ok("1") => {
                panic!(
                    "SLUICE_REQUIRE_AWS=1 but SLUICE_AWS_ENDPOINT is not set: run `infra/moto.sh start` and export it"
                )
            }
            _ => {
                eprintln!("skipped {test}: SLUICE_AWS_ENDPOINT is not set (run `infra/moto.sh start`)");
                None
            }
        }
    }

    async fn sdk_config(endpoint: &str) -> SdkConfig {
        let credentials = aws_sdk_dynamodb::config::Credentials::new("test", "test", None, None, "sluice-conformance");
        aws_config::defaults(BehaviorVersion::latest())
            .endpoint_url(endpoint)
            .region(Region::new("us-east-1"))
            .credentials_provider(credentials)
            .load()
            .await
    }

    fn unique() -> String {
        uuid::Uuid::new_v4().simple().to_string()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn dynamodb_store_conforms() {
        let Some(endpoint) = endpoint("dynamodb_store_conforms") else {
            return;
        };
        let client = aws_sdk_dynamodb::Client::new(&sdk_config(&endpoint).await);
        let table = format!("sluice-conformance-{}", unique());
        dynamodb::create_table(&client, &table).await.expect("create table");
        dynamodb::create_table(&client, &table).await.expect("creating an existing table is a no-op");
        store_suite_with(&DynamoStore::new(client.clone(), table.clone()), SuiteLimits::FULL).await;
        client.delete_table().table_name(&table).send().await.expect("delete table");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn dynamodb_history_conforms() {
        let Some(endpoint) = endpoint("dynamodb_history_conforms") else {
            return;
        };
        let client = aws_sdk_dynamodb::Client::new(&sdk_config(&endpoint).await);
        let table = format!("sluice-conformance-{}", unique());
        dynamodb::create_table(&client, &table).await.expect("create table");
        history_suite(&DynamoStore::new(client.clone(), table.clone())).await;
        client.delete_table().table_name(&table).send().await.expect("delete table");
    }

    /// Every item of an execution's partition (the execution, search attribute items, a
    /// replay link, step attempts, the response, a file's manifest and chunk, fan-out item
    /// chunks, branch results and the join's shard) carries `expiresAt`: the execution's at its
    /// start + the retention, those written later at their write + the retention.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_item_of_an_execution_carries_the_ttl_attribute() {
        use aws_sdk_dynamodb::types::AttributeValue;
        use sluice_shared::engine::StepKey;
        use sluice_shared::ports::{ExecutionStore, FanOutStore, FileStore};
        use sluice_shared::record::{
            Execution, ExecutionStatus, HttpResponse, SettledResponse, StepAttempt, StepStatus, TriggerData,
            TriggerKind, now,
        };
        let Some(endpoint) = endpoint("every_item_of_an_execution_carries_the_ttl_attribute") else {
            return;
        };
        let client = aws_sdk_dynamodb::Client::new(&sdk_config(&endpoint).await);
        let table = format!("sluice-conformance-{}", unique());
        dynamodb::create_table(&client, &table).await.expect("create table");
        let retention = Duration::from_secs(2 * 86_400);
        let store = DynamoStore::new(client.clone(), table.clone()).with_retention(retention);
        let before = now().timestamp();
        let started_at = chrono::DateTime::from_timestamp_millis(now().timestamp_millis() - 3_600_000).expect("time");
        let e = Execution {
            id: unique(),
            project_id: "p".into(),
            workflow_id: "w".into(),
            workflow_version: 1,
            user_id: "u".into(),
            status: ExecutionStatus::Running,
            started_at,
            trigger: TriggerData::of(TriggerKind::Request, serde_json::json!({})),
            search: [("email".to_string(), "a@example.com".to_string())].into(),
            ..Default::default()
        };
        store.create_execution(&e).await.expect("create");
        let replay = Execution { id: unique(), replay_of: Some(e.id.clone()), search: Default::default(), ..e.clone() };
        store.create_execution(&replay).await.expect("create the replay");
        let attempt = StepAttempt {
            step: "s".into(),
            attempt: 1,
            status: StepStatus::Succeeded,
            input: serde_json::json!({}),
            output: Some(serde_json::json!(1)),
            error: None,
            started_at: now(),
            ended_at: now(),
            logs: Vec::new(),
        };
        store.record_step(&e.id, &attempt).await.expect("step");
        let response = SettledResponse::WorkflowEnded {
            response: HttpResponse { status: 200, headers: Default::default(), body: serde_json::json!(1), file: None },
            at: now(),
        };
        store.settle_response(&e.id, &response).await.expect("response");
        store.put_file(&e.id, "a.txt", "text/plain", bytes::Bytes::from_static(b"hi")).await.expect("file");
        let key = StepKey::top("f");
        store.put_fan_out_items(&e.id, &key, &[serde_json::json!(1), serde_json::json!(2)]).await.expect("items");
        for index in 0..2 {
            store.complete_branch(&e.id, &key, index, 2, &serde_json::json!(index), "").await.expect("branch");
        }
        let after = now().timestamp() + 1;

        let items = client
            .query()
            .table_name(&table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", AttributeValue::S(format!("EXEC#{}", e.id)))
            .consistent_read(true)
            .send()
            .await
            .expect("query the partition")
            .items
            .unwrap_or_default();
        let sk = |item: &std::collections::HashMap<String, AttributeValue>| match item.get("sk") {
            Some(AttributeValue::S(sk)) => sk.clone(),
            other => panic!("no sort key: {other:?}"),
        };
        let kinds: Vec<String> = items.iter().map(|i| sk(i).split('#').next().unwrap_or("").to_string()).collect();
        for kind in ["EXEC", "SEARCH", "REPLAY", "STEP", "RESPONSE", "FILE", "FANOUT", "BRANCH"] {
            assert!(kinds.iter().any(|k| k == kind), "an item of kind {kind} among {kinds:?}");
        }
        let secs = retention.as_secs() as i64;
        let start_expiry = (started_at.timestamp_millis() + secs * 1000 + 999) / 1000;
        for item in &items {
            let expires: i64 = match item.get(dynamodb::TTL_ATTRIBUTE) {
                Some(AttributeValue::N(n)) => n.parse().expect("a number"),
                other => panic!("{} has no expiresAt: {other:?}", sk(item)),
            };
            let sk = sk(item);
            if sk == "EXEC" || sk.starts_with("SEARCH#") || sk.starts_with("REPLAY#") {
                assert_eq!(expires, start_expiry, "{sk} expires with its execution");
            } else {
                assert!(
                    (before + secs..=after + secs).contains(&expires),
                    "{sk} expires {expires}: its write + retention"
                );
            }
        }
        client.delete_table().table_name(&table).send().await.expect("delete table");
    }

    /// `create_table` turns the table's time to live on, on the attribute idempotency records
    /// carry, and creating the table again leaves it on (DynamoDB refuses to enable it twice).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn created_table_expires_items_by_its_ttl_attribute() {
        let Some(endpoint) = endpoint("created_table_expires_items_by_its_ttl_attribute") else {
            return;
        };
        let client = aws_sdk_dynamodb::Client::new(&sdk_config(&endpoint).await);
        let table = format!("sluice-conformance-{}", unique());
        dynamodb::create_table(&client, &table).await.expect("create table");
        dynamodb::create_table(&client, &table).await.expect("creating an existing table is a no-op");
        let described = client.describe_time_to_live().table_name(&table).send().await.expect("describe TTL");
        let ttl = described.time_to_live_description.expect("a TTL description");
        assert_eq!(ttl.time_to_live_status, Some(aws_sdk_dynamodb::types::TimeToLiveStatus::Enabled));
        assert_eq!(ttl.attribute_name.as_deref(), Some(dynamodb::TTL_ATTRIBUTE));
        client.delete_table().table_name(&table).send().await.expect("delete table");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqs_queue_conforms() {
        let Some(endpoint) = endpoint("sqs_queue_conforms") else {
            return;
        };
        let client = aws_sdk_sqs::Client::new(&sdk_config(&endpoint).await);
        let prefix = format!("conformance-{}", unique());
        let (steps, responses) = sqs::create_queues(&client, &prefix, 5).await.expect("create queues");
        let again = sqs::create_queues(&client, &prefix, 5).await.expect("creating existing queues is a no-op");
        assert_eq!(again, (steps.clone(), responses.clone()));
        queue_suite(&SqsQueue::new(client, steps, responses)).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn dynamodb_and_sqs_start_conforms() {
        let Some(endpoint) = endpoint("dynamodb_and_sqs_start_conforms") else {
            return;
        };
        let sdk = sdk_config(&endpoint).await;
        let dynamo = aws_sdk_dynamodb::Client::new(&sdk);
        let table = format!("sluice-conformance-{}", unique());
        dynamodb::create_table(&dynamo, &table).await.expect("create table");
        let sqs_client = aws_sdk_sqs::Client::new(&sdk);
        let (steps, responses) =
            sqs::create_queues(&sqs_client, &format!("conformance-{}", unique()), 5).await.expect("create queues");
        let store: Arc<dyn Store> = Arc::new(DynamoStore::new(dynamo.clone(), table.clone()));
        let queue = Arc::new(SqsQueue::new(sqs_client, steps, responses));
        let starter = SendThenCreate { store: store.clone(), queue: queue.clone() };
        start_suite(&starter, store.as_ref(), queue.as_ref()).await;
        dynamo.delete_table().table_name(&table).send().await.expect("delete table");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqs_message_received_more_than_max_receives_goes_to_the_dlq() {
        let Some(endpoint) = endpoint("sqs_message_received_more_than_max_receives_goes_to_the_dlq") else {
            return;
        };
        let client = aws_sdk_sqs::Client::new(&sdk_config(&endpoint).await);
        let prefix = format!("conformance-{}", unique());
        let (steps, responses) = sqs::create_queues(&client, &prefix, 2).await.expect("create queues");
        let queue = SqsQueue::new(client.clone(), steps, responses);
        queue.send(QueueName::Steps, Outgoing { body: "poison".into(), delay: Duration::ZERO }).await.expect("send");
        for expected in 1..=2 {
            let got =
                queue.receive(QueueName::Steps, 10, Duration::from_secs(2), Duration::ZERO).await.expect("receive");
            assert_eq!(got.len(), 1, "receive {expected}");
            assert_eq!((got[0].body.as_str(), got[0].receive_count), ("poison", expected));
        }
        let third = queue.receive(QueueName::Steps, 10, Duration::from_secs(1), Duration::ZERO).await.expect("receive");
        assert!(third.is_empty(), "the third receive moves it to the DLQ: {third:?}");

        let dlq = client.get_queue_url().queue_name(format!("{prefix}-steps-dlq")).send().await.expect("DLQ URL");
        let dead = client
            .receive_message()
            .queue_url(dlq.queue_url().expect("DLQ URL"))
            .max_number_of_messages(10)
            .wait_time_seconds(2)
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .send()
            .await
            .expect("receive from the DLQ");
        let bodies: Vec<&str> = dead.messages().iter().filter_map(|m| m.body()).collect();
        assert_eq!(bodies, ["poison"]);
    }
}

//! The DynamoDB and SQS requests one execution of each benchmark workflow shape makes
//! (`benches/workflows/`), counted by operation with an interceptor on the SDK clients of a
//! stack on the local AWS-API server that behaves as the Lambda functions do, the Lambda
//! invocations they take and how long, and what that costs per million executions at list
//! prices beside Step Functions Standard. Prints the tables of `infra/cost.md` and writes
//! them to `target/aws-requests.md`. Skipped when `SLUICE_AWS_ENDPOINT` is unset, unless
//! `SLUICE_REQUIRE_AWS=1`.
//!
//! Each shape runs once to warm the step runner's workflow cache (a warm Lambda reads a
//! workflow version once, not per message), then once counted: from the trigger's request
//! until the execution has ended and both queues are empty — the delayed deadline or
//! recovery message included, due after 2 s here instead of 55 s / 90 s.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sluice_e2e::cost::{Analysis, Invocation, Run, lambda_cost, price};
use sluice_e2e::counting::{Counting, Recorder, item_size};
use sluice_e2e::stack::{AwsClients, StackConfig, TestStack, aws_endpoint, aws_sdk_config};
use sluice_shared::adapters::dynamodb::DynamoStore;
use sluice_shared::ports::ExecutionStore;

/// When the delayed messages come due (the response timeout of the fast shapes, and the
/// recovery delay of every shape).
const DUE: Duration = Duration::from_secs(2);
/// The fan-out takes a few seconds on moto: its caller waits longer than the others.
const FAN_OUT_TIMEOUT: Duration = Duration::from_secs(8);
const ENDED_WITHIN: Duration = Duration::from_secs(20);

struct Shape {
    name: &'static str,
    yaml: &'static str,
    workflow_id: &'static str,
    body: Value,
    warm_up: Value,
    status: u16,
    answer: Option<Value>,
    response_timeout: Duration,
    /// The same workflow in Step Functions Standard: states entered, and which.
    step_functions: (u32, &'static str),
}

fn shapes() -> Vec<Shape> {
    let numbers: Vec<u64> = (0..100).collect();
    vec![
        Shape {
            name: "(1) async: function, 202",
            yaml: include_str!("benches/workflows/bench-async.yaml"),
            workflow_id: "bench-async",
            body: json!({ "a": 1, "b": 2 }),
            warm_up: json!({ "a": 0, "b": 0 }),
            status: 202,
            answer: None,
            response_timeout: DUE,
            step_functions: (1, "Task add"),
        },
        Shape {
            name: "(2) sync: function, conditional, response",
            yaml: include_str!("benches/workflows/bench-sync.yaml"),
            workflow_id: "bench-sync",
            body: json!({ "numbers": numbers, "name": "ada" }),
            warm_up: json!({ "numbers": [1], "name": "x" }),
            status: 200,
            answer: Some(json!({ "sum": 4950, "name": "ADA", "big": true })),
            response_timeout: DUE,
            step_functions: (3, "Task compute, Choice size, Pass reply_big"),
        },
        Shape {
            name: "(3) sync: 100-item fan-out, sum, response",
            yaml: include_str!("benches/workflows/bench-fan-out.yaml"),
            workflow_id: "bench-fan-out",
            body: json!({ "count": 100 }),
            warm_up: json!({ "count": 1 }),
            status: 200,
            answer: Some(json!({ "total": 9900, "count": 100 })),
            response_timeout: FAN_OUT_TIMEOUT,
            step_functions: (104, "Task items, Map each, 100 × Task double, Task total, Pass reply"),
        },
    ]
}

/// Clients that report every request to `recorder`.
fn counting_clients(sdk: &aws_config::SdkConfig, recorder: &Arc<Recorder>) -> AwsClients {
    let dynamodb = aws_sdk_dynamodb::config::Builder::from(sdk).interceptor(Counting(recorder.clone())).build();
    let sqs = aws_sdk_sqs::config::Builder::from(sdk).interceptor(Counting(recorder.clone())).build();
    AwsClients {
        dynamodb: aws_sdk_dynamodb::Client::from_conf(dynamodb),
        sqs: aws_sdk_sqs::Client::from_conf(sqs),
        kms: aws_sdk_kms::Client::new(sdk),
    }
}

/// The stack's own table and queues, read with clients that count nothing.
struct Observer {
    store: DynamoStore,
    dynamodb: aws_sdk_dynamodb::Client,
    sqs: aws_sdk_sqs::Client,
    table: String,
    queues: [String; 2],
}

impl Observer {
    async fn wait_until_ended(&self, execution_id: &str) {
        let deadline = Instant::now() + ENDED_WITHIN;
        loop {
            let execution = self.store.get_execution(execution_id).await.expect("get execution");
            if let Some(execution) = execution.filter(|e| e.status.is_ended()) {
                assert_eq!(execution.status.as_str(), "succeeded", "execution {execution_id}");
                return;
            }
            assert!(Instant::now() < deadline, "execution {execution_id} still running after {ENDED_WITHIN:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until no message is waiting, in flight or delayed on either queue.
    async fn wait_until_drained(&self) {
        use aws_sdk_sqs::types::QueueAttributeName as A;
        let deadline = Instant::now() + ENDED_WITHIN;
        loop {
            let mut left = 0;
            for url in &self.queues {
                let attributes = self
                    .sqs
                    .get_queue_attributes()
                    .queue_url(url)
                    .attribute_names(A::All)
                    .send()
                    .await
                    .expect("queue attributes")
                    .attributes
                    .unwrap_or_default();
                for name in [
                    A::ApproximateNumberOfMessages,
                    A::ApproximateNumberOfMessagesNotVisible,
                    A::ApproximateNumberOfMessagesDelayed,
                ] {
                    left += attributes.get(&name).and_then(|n| n.parse::<usize>().ok()).unwrap_or(0);
                }
            }
            if left == 0 {
                // The last deletion's answer may still be on its way to the interceptor.
                tokio::time::sleep(Duration::from_millis(200)).await;
                return;
            }
            assert!(Instant::now() < deadline, "queues not drained after {ENDED_WITHIN:?}: {left} messages");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The size of every item of the execution's partition, by sort key.
    async fn item_sizes(&self, execution_id: &str) -> std::collections::HashMap<String, usize> {
        use aws_sdk_dynamodb::types::AttributeValue;
        let mut sizes = std::collections::HashMap::new();
        let mut start = None;
        loop {
            let page = self
                .dynamodb
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk")
                .expression_attribute_values(":pk", AttributeValue::S(format!("EXEC#{execution_id}")))
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .expect("query the execution's items");
            for item in page.items.unwrap_or_default() {
                if let Some(AttributeValue::S(sk)) = item.get("sk") {
                    sizes.insert(sk.clone(), item_size(&item));
                }
            }
            match page.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => return sizes,
            }
        }
    }
}

/// Triggers `shape` with `body` and checks its answer; returns the execution id.
async fn trigger(stack: &TestStack, shape: &Shape, body: &Value) -> String {
    let response = stack.trigger(shape.workflow_id, body.clone()).await;
    let status = response.status().as_u16();
    let id = response.headers().get("x-sluice-execution-id").and_then(|v| v.to_str().ok()).map(String::from);
    let answer: Value = response.json().await.expect("JSON answer");
    assert_eq!(status, shape.status, "{}: {answer}", shape.name);
    if let (Some(expected), true) = (&shape.answer, body == &shape.body) {
        assert_eq!(&answer, expected, "{}", shape.name);
    }
    id.or_else(|| answer["executionId"].as_str().map(String::from)).expect("the execution id")
}

struct Measured {
    shape: Shape,
    analysis: Analysis,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_execution_of_each_benchmark_shape_makes_these_aws_requests() {
    let Some(endpoint) = aws_endpoint() else {
        eprintln!("skipped: SLUICE_AWS_ENDPOINT is not set (the README's test command sets it)");
        return;
    };
    let sdk = aws_sdk_config(&endpoint).await;
    let mut prepared = Vec::new();
    for shape in shapes() {
        let recorder = Arc::new(Recorder::default());
        let config = StackConfig {
            response_timeout: shape.response_timeout,
            workers: 1,
            recovery_delay: DUE,
            ..StackConfig::default()
        };
        let stack = TestStack::start_on_aws(counting_clients(&sdk, &recorder), config).await;
        stack.deploy(shape.yaml).await;
        let aws = stack.aws.clone().expect("a stack on AWS");
        let dynamodb = aws_sdk_dynamodb::Client::new(&sdk);
        let observer = Observer {
            store: DynamoStore::new(dynamodb.clone(), aws.table.clone()),
            dynamodb,
            sqs: aws_sdk_sqs::Client::new(&sdk),
            table: aws.table,
            queues: [aws.steps_url, aws.responses_url],
        };
        prepared.push((shape, stack, recorder, observer));
    }
    // Warm-ups, side by side; each shape's delayed messages are gone before it is counted.
    let mut warm = Vec::new();
    for (shape, stack, _, _) in &prepared {
        warm.push(trigger(stack, shape, &shape.warm_up).await);
    }
    for ((_, _, _, observer), id) in prepared.iter().zip(&warm) {
        observer.wait_until_ended(id).await;
    }

    let mut measured = Vec::new();
    for (shape, stack, recorder, observer) in prepared {
        // The warm-up's delayed message (the later shapes' come due meanwhile).
        observer.wait_until_drained().await;
        recorder.start();
        let sent = Instant::now();
        let id = trigger(&stack, &shape, &shape.body).await;
        let answered = Instant::now();
        observer.wait_until_ended(&id).await;
        observer.wait_until_drained().await;
        let calls = recorder.stop();
        let name = |url: &str| url.rsplit('/').next().unwrap_or_default().to_string();
        let run = Run {
            calls,
            trigger: (sent, answered),
            steps_queue: name(&observer.queues[0]),
            responses_queue: name(&observer.queues[1]),
            final_items: observer.item_sizes(&id).await,
        };
        let analysis = run.analyse();
        assert_eq!(
            analysis.retried, 0,
            "{}: a request was retried, the counts would not be one execution's",
            shape.name
        );
        measured.push(Measured { shape, analysis });
    }

    let report = report(&measured);
    println!("{report}");
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../target/aws-requests.md");
    std::fs::write(path, &report).expect("write target/aws-requests.md");

    let [asynchronous, synchronous, fan_out] = &measured[..] else { panic!("three shapes") };
    assert_eq!(
        synchronous.analysis.sent_to("steps"),
        0,
        "a sync workflow answered in its segment sends no step message"
    );
    assert_eq!(synchronous.analysis.sent_to("responses"), 1, "only the deadline message");
    assert_eq!(asynchronous.analysis.sent_to("steps"), 1, "the first step goes to the queue");
    assert_eq!(fan_out.analysis.sent_to("steps"), 0, "a 100-item fan-out runs its branches inline: no branch message");
    for m in &measured {
        assert!(m.analysis.invocations.iter().all(|i| i.measured > Duration::ZERO), "{}", m.shape.name);
    }
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

fn dollars(amount: f64) -> String {
    if amount >= 100.0 { format!("{amount:.0}") } else { format!("{amount:.2}") }
}

/// SQS requests as billed if Lambda's event source deletes each batch with one
/// DeleteMessageBatch instead of the local workers' one DeleteMessage per message.
fn sqs_on_lambda(analysis: &Analysis) -> f64 {
    let total = analysis.total();
    let deletes: usize =
        analysis.rows.iter().filter(|(l, _)| l.starts_with("SQS DeleteMessage")).map(|(_, r)| r.requests).sum();
    let batches = analysis.invocations.iter().filter(|i| i.function != "trigger").count();
    total.sqs_billed - deletes as f64 + batches as f64
}

fn report(measured: &[Measured]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# AWS requests of one execution (tests/aws_requests.rs)\n");
    for m in measured {
        let a = &m.analysis;
        let _ = writeln!(out, "## {}\n", m.shape.name);
        let _ = writeln!(out, "| request | count | messages | read units | write units | SQS billed |");
        let _ = writeln!(out, "| --- | ---: | ---: | ---: | ---: | ---: |");
        for (label, row) in &a.rows {
            let _ = writeln!(
                out,
                "| {label} | {} | {} | {} | {} | {} |",
                row.requests,
                if row.messages > 0 { row.messages.to_string() } else { String::new() },
                if row.read_units > 0.0 { format!("{}", row.read_units) } else { String::new() },
                if row.write_units > 0.0 { format!("{}", row.write_units) } else { String::new() },
                if row.sqs_billed > 0.0 { format!("{}", row.sqs_billed) } else { String::new() },
            );
        }
        let t = a.total();
        let _ = writeln!(
            out,
            "| **total** | **{}** (DynamoDB {}, SQS {}) | {} | {} | {} | {} |\n",
            t.requests,
            a.service_requests("DynamoDB"),
            a.service_requests("SQS"),
            t.messages,
            t.read_units,
            t.write_units,
            t.sqs_billed
        );
        let _ = writeln!(
            out,
            "Not counted: {} empty long-poll receives. Eventually consistent reads: {}. Trigger polls for the answer: {} on moto, ~{} estimated on AWS. Left in the table: {} items, {:.1} KB billed as storage.\n",
            a.empty_receives,
            a.eventually_consistent_reads,
            a.polls,
            a.estimated_polls,
            a.stored_items,
            a.stored_bytes as f64 / 1000.0
        );
        let _ = writeln!(
            out,
            "| invocation | messages | requests | measured ms | of which requests on moto ms | estimated on AWS ms |"
        );
        let _ = writeln!(out, "| --- | ---: | ---: | ---: | ---: | ---: |");
        for i in &a.invocations {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} |",
                i.function,
                i.messages,
                i.requests,
                ms(i.measured),
                ms(i.moto_requests),
                ms(i.estimated)
            );
        }
        let sum = |f: fn(&Invocation) -> Duration| a.invocations.iter().map(f).sum::<Duration>();
        let _ = writeln!(
            out,
            "| **{} invocations** | | | **{}** | | **{}** |\n",
            a.invocations.len(),
            ms(sum(|i| i.measured)),
            ms(sum(|i| i.estimated))
        );
    }

    let _ = writeln!(out, "## Cost per million executions (USD, us-east-1 list prices)\n");
    let _ = writeln!(
        out,
        "| shape | write units | read units | SQS requests (Lambda) | Lambda invocations | GB-s measured | GB-s estimated | DynamoDB | SQS | Lambda (estimated) | **total** | total at 2024 DynamoDB prices | Step Functions transitions | **Step Functions** |"
    );
    let _ = writeln!(
        out,
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    );
    for m in measured {
        let a = &m.analysis;
        let t = a.total();
        // On AWS the trigger polls fewer times for the fan-out's answer (1 read unit each).
        let reads = t.read_units + a.estimated_polls as f64 - a.polls as f64;
        let sqs = sqs_on_lambda(a);
        let gb_s = |f: fn(&Invocation) -> Duration| {
            a.invocations.iter().map(|i| (f(i).as_secs_f64() * 1000.0).ceil() / 1000.0 * price::LAMBDA_GB).sum::<f64>()
        };
        let dynamodb = t.write_units * price::WRITE_UNIT + reads * price::READ_UNIT;
        let dynamodb_2024 = t.write_units * price::WRITE_UNIT_2024 + reads * price::READ_UNIT_2024;
        let queue = sqs * price::SQS_REQUEST;
        let lambda = lambda_cost(&a.invocations, |i| i.estimated);
        let (transitions, _) = m.shape.step_functions;
        let million = 1e6;
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {:.3} | {:.3} | {} | {} | {} | **{}** | {} | {transitions} | **{}** |",
            m.shape.name,
            t.write_units,
            reads,
            sqs,
            a.invocations.len(),
            gb_s(|i| i.measured),
            gb_s(|i| i.estimated),
            dollars(dynamodb * million),
            dollars(queue * million),
            dollars(lambda * million),
            dollars((dynamodb + queue + lambda) * million),
            dollars((dynamodb_2024 + queue + lambda) * million),
            dollars(f64::from(transitions) * price::STATE_TRANSITION * million),
        );
    }
    let _ = writeln!(out);
    for m in measured {
        let (transitions, states) = m.shape.step_functions;
        let _ = writeln!(out, "- Step Functions, {}: {transitions} states entered ({states})", m.shape.name);
    }
    out
}

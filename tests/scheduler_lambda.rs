//! The scheduler on AWS: the `scheduler` binary under the Runtime Interface Emulator
//! (`SLUICE_RIE`) against DynamoDB, SQS and EventBridge on the local AWS-API server
//! (`SLUICE_AWS_ENDPOINT`), invoked with `infra/events/scheduled-event.json`; the trigger's side
//! of the rule (deploy and undeploy through the management API switch it) in-process, on the
//! runtime the trigger function builds; and the EventBridge rule adapter against the server.
//! Skipped with a notice when either is unset, unless `SLUICE_REQUIRE_AWS=1`.
//!
//! The function runs on the system clock (it is another process): the tests wait for a
//! 5-second schedule's next fire (at most 5 s) or move a ledger row's next fire into the past.
//!
//! Backend differences, written down here (moto 5.2.5): moto serves EnableRule, DisableRule
//! and DescribeRule as AWS does (idempotent switches, `ResourceNotFoundException` for an
//! unknown rule), but never invokes a rule's targets: the tests invoke the function.

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use http::{Method, Request, StatusCode};
use serde_json::{Value, json};
use sluice_e2e::rie::{AwsResources, Rie, emulator, emulator_and_endpoint, lambda_binary};
use sluice_e2e::stack::aws_endpoint;
use sluice_shared::adapters::eventbridge::{EventBridgeRule, scheduled_tick};
use sluice_shared::api::Api;
use sluice_shared::auth;
use sluice_shared::config::{ENV_SCHEDULER_RULE, LambdaConfig, build_runtime};
use sluice_shared::fires::schedule_fire;
use sluice_shared::ports::{Project, ScheduleEntry, ScheduleRule, ScheduleStore, Store, UserStore};
use sluice_shared::record::now;
use sluice_shared::runner::Runner;
use sluice_shared::runtime::Runtime;
use sluice_shared::scheduler::TickReport;

/// The workflow every test deploys: every 5 seconds, one function step.
const WORKFLOW: &str = "every5";
const EVERY5: &str = "id: every5\ntrigger: { type: schedule, every: 5s }\nsteps:\n  - { id: note, type: function, code: \"(p) => p\", parameters: { at: \"{{trigger.body.scheduledAt}}\" } }\n";
/// Fires of a 5-second schedule in the minute after a tick (the horizon of `aws_settings`).
const FIRES_PER_MINUTE: usize = 12;

fn scheduled_event() -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../infra/events/scheduled-event.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

fn unique() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// A project with an API key, in the table.
async fn create_project(store: &dyn Store) -> (String, String) {
    let keys = auth::generate_signing_key().expect("signing key");
    let api_key = auth::generate_api_key();
    let project_id = format!("p-{}", &unique()[..12]);
    let project = Project {
        id: project_id.clone(),
        signing_public_key_pem: keys.public_pem,
        api_key_sha256: auth::hash_api_key(&api_key),
        created_at: now(),
    };
    store.create_project(&project).await.expect("create the project");
    (project_id, api_key)
}

/// The scheduler's rule, created as the template declares it (disabled, every minute).
async fn create_rule(aws: &AwsResources) -> EventBridgeRule {
    let rule = EventBridgeRule::from_sdk(&aws.sdk, format!("sluice-scheduler-{}", &unique()[..12]));
    rule.create(None).await.expect("create the rule");
    assert!(!rule.is_enabled().await.expect("describe the rule"), "created disabled");
    rule
}

/// The runtime a function builds from its environment (`build_runtime`), with the rule named
/// in [`ENV_SCHEDULER_RULE`] if given: the trigger's, for driving the management API.
async fn function_runtime(aws: &AwsResources, rule: Option<&str>) -> Runtime {
    let mut env = aws.function_env();
    if let Some(rule) = rule {
        env.push((ENV_SCHEDULER_RULE.to_string(), rule.to_string()));
    }
    let config = LambdaConfig::from_lookup(|name| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()))
        .expect("the function's configuration");
    assert_eq!(config.scheduler_rule.as_deref(), rule);
    let runtime = build_runtime(&config, &aws.sdk).await.expect("build the runtime");
    assert_eq!(runtime.schedule_rule.is_some(), rule.is_some());
    runtime
}

/// A management request with the project's API key; the status and the JSON body.
async fn call(api: &Api, method: Method, uri: &str, api_key: &str, body: Option<Value>) -> (StatusCode, Value) {
    let body = body.map(|b| Bytes::from(b.to_string())).unwrap_or_default();
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .header("authorization", format!("Bearer {api_key}"))
        .header("content-type", "application/json")
        .body(body)
        .expect("a request");
    let response = api.handle(request).await;
    let status = response.status();
    let body = serde_json::from_slice(response.body()).unwrap_or(Value::Null);
    (status, body)
}

async fn deploy(api: &Api, project_id: &str, api_key: &str) {
    let files = json!({ "files": { "every5.yaml": EVERY5 } });
    let (status, body) = call(api, Method::POST, &format!("/projects/{project_id}/deploy"), api_key, Some(files)).await;
    assert_eq!(status, StatusCode::OK, "deploy: {body}");
}

async fn undeploy(api: &Api, project_id: &str, api_key: &str) {
    let uri = format!("/projects/{project_id}/workflows/{WORKFLOW}");
    let (status, body) = call(api, Method::DELETE, &uri, api_key, None).await;
    assert_eq!(status, StatusCode::OK, "undeploy: {body}");
}

fn report(invocation: &sluice_e2e::rie::Invocation, rie: &Rie) -> TickReport {
    let value = invocation.json();
    serde_json::from_value(value.clone())
        .unwrap_or_else(|e| panic!("not a tick report ({e}): {value}\n{}", rie.output()))
}

/// Every message now in the steps queue, by kind: the bodies of the visible ones (received,
/// so they stay in flight) and the number still delayed. A delayed message that comes due
/// while this reads is received on the next pass, never counted twice or lost.
async fn steps_queue(aws: &AwsResources) -> (Vec<Value>, usize) {
    use aws_sdk_sqs::types::QueueAttributeName;
    let sqs = aws_sdk_sqs::Client::new(&aws.sdk);
    let mut visible = Vec::new();
    loop {
        loop {
            let received = sqs
                .receive_message()
                .queue_url(&aws.steps_url)
                .max_number_of_messages(10)
                .wait_time_seconds(0)
                .visibility_timeout(600)
                .send()
                .await
                .expect("receive");
            let messages = received.messages.unwrap_or_default();
            if messages.is_empty() {
                break;
            }
            for message in messages {
                let body = message.body.unwrap_or_default();
                visible.push(serde_json::from_str(&body).unwrap_or_else(|e| panic!("a JSON message ({e}): {body}")));
            }
        }
        let attributes = sqs
            .get_queue_attributes()
            .queue_url(&aws.steps_url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesDelayed)
            .send()
            .await
            .expect("queue attributes")
            .attributes
            .unwrap_or_default();
        let count = |name: QueueAttributeName| -> usize {
            attributes.get(&name).and_then(|n| n.parse().ok()).expect("a message count")
        };
        if count(QueueAttributeName::ApproximateNumberOfMessages) == 0 {
            return (visible, count(QueueAttributeName::ApproximateNumberOfMessagesDelayed));
        }
    }
}

async fn execution_exists(store: &dyn Store, project_id: &str, user: &str, at: DateTime<Utc>) -> bool {
    let id = schedule_fire(project_id, WORKFLOW, user, at);
    store.get_execution(&id).await.expect("read the execution").is_some()
}

#[tokio::test]
async fn scheduler_function_fails_at_init_naming_a_missing_variable() {
    let Some(emulator) = emulator() else {
        eprintln!("skipped: SLUICE_RIE is not set (infra/test.sh sets it)");
        return;
    };
    // Configuration is read before any AWS call: no AWS-API server is needed.
    let env: Vec<(String, String)> = [
        ("AWS_REGION", "us-east-1"),
        ("SLUICE_STEP_QUEUE_URL", "http://127.0.0.1:9/000000000000/steps"),
        ("SLUICE_RESPONSE_QUEUE_URL", "http://127.0.0.1:9/000000000000/responses"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let rie = Rie::start(&emulator, &lambda_binary("scheduler"), &env).await;
    let invocation = rie.invoke(&scheduled_event()).await;
    assert_ne!(invocation.status, 200, "the scheduler without SLUICE_TABLE answered: {}", invocation.body);
    let output = rie.output();
    assert!(output.contains("missing environment variable SLUICE_TABLE"), "{output}");
}

/// The rule adapter against the server: created disabled, switched both ways (each switch
/// idempotent), read back; an unknown rule is a retryable backend error.
#[tokio::test]
async fn the_eventbridge_rule_switches_and_reads_back() {
    let Some(endpoint) = aws_endpoint() else {
        eprintln!("skipped: SLUICE_AWS_ENDPOINT is not set (infra/test.sh starts moto and sets it)");
        return;
    };
    let aws = AwsResources::create(&endpoint).await;
    let rule = create_rule(&aws).await;
    for enabled in [true, true, false, false, true] {
        rule.set_enabled(enabled).await.expect("switch the rule");
        assert_eq!(rule.is_enabled().await.expect("describe the rule"), enabled);
    }
    let arn = rule.create(Some("arn:aws:lambda:us-east-1:123456789012:function:scheduler")).await.expect("update");
    assert!(arn.ends_with(&format!(":rule/{}", rule.name())), "{arn}");

    let missing = EventBridgeRule::from_sdk(&aws.sdk, format!("missing-{}", &unique()[..12]));
    for error in
        [missing.set_enabled(true).await.expect_err("no such rule"), missing.is_enabled().await.expect_err("none")]
    {
        assert!(error.is_retryable(), "{error}");
        assert!(error.to_string().contains(missing.name()), "{error}");
    }
}

/// The scheduler binary under the emulator: the first invocation arms the ledger row, one after
/// its fire instant starts the execution and hands the next minute's fires to delayed messages,
/// a repeated one starts nothing, a replayed due row only finds its execution taken; after an
/// undeploy, the tick that removes the last row switches the rule off.
#[tokio::test]
async fn scheduler_function_starts_each_fire_once_and_switches_its_rule_off_when_idle() {
    let Some((emulator, endpoint)) = emulator_and_endpoint() else {
        return;
    };
    let aws = AwsResources::create(&endpoint).await;
    let store = aws.store();
    let rule = create_rule(&aws).await;
    let (project_id, api_key) = create_project(&store).await;
    store.ensure_user(&project_id, "ada").await.expect("a connected user");
    let trigger = Api::new(function_runtime(&aws, Some(rule.name())).await);
    deploy(&trigger, &project_id, &api_key).await;
    assert!(rule.is_enabled().await.expect("describe"), "a deployed schedule switches the rule on");

    let mut env = aws.function_env();
    env.push((ENV_SCHEDULER_RULE.to_string(), rule.name().to_string()));
    let rie = Rie::start(&emulator, &lambda_binary("scheduler"), &env).await;
    let event = scheduled_event();

    // The first tick arms the row: its first fire comes after the tick.
    let armed_at = now();
    let first = report(&rie.invoke(&event).await, &rie);
    assert_eq!((first.due, first.started, first.delayed), (1, 0, 0), "{first:?}");
    let row = store.get_schedule(&project_id, WORKFLOW, "ada").await.expect("read").expect("the row");
    let due_at = row.next_fire.expect("armed with a next fire");
    assert!(due_at > armed_at && due_at <= now() + Duration::from_secs(5), "{due_at} after {armed_at}");
    let (messages, delayed) = steps_queue(&aws).await;
    assert!(messages.is_empty() && delayed == 0, "arming sends nothing: {messages:?}, {delayed} delayed");

    // Once the instant has passed, the tick starts its fire and hands the next minute's
    // fires to delayed messages.
    let wait = (due_at - now()).to_std().unwrap_or_default() + Duration::from_millis(200);
    tokio::time::sleep(wait).await;
    let second = report(&rie.invoke(&event).await, &rie);
    assert_eq!(second.due, 1, "{second:?}");
    assert!(second.started >= 1, "the due fire started: {second:?}\n{}", rie.output());
    assert_eq!(second.delayed, FIRES_PER_MINUTE, "every 5 s in the coming minute: {second:?}");
    assert!(execution_exists(&store, &project_id, "ada", due_at).await, "the fire at {due_at} has its execution");
    let (messages, delayed) = steps_queue(&aws).await;
    let fires: Vec<&Value> = messages.iter().filter(|m| m.get("fire").is_some()).collect();
    assert_eq!(fires.len() + delayed, FIRES_PER_MINUTE, "fire messages: {} visible, {delayed} delayed", fires.len());
    assert_eq!(messages.len() - fires.len(), second.started, "one first-step message per started execution");
    for fire in fires {
        assert_eq!(
            (fire["fire"]["projectId"].as_str(), fire["fire"]["userId"].as_str()),
            (Some(&*project_id), Some("ada"))
        );
        assert!(fire["fire"]["at"].as_i64().is_some_and(|at| at > due_at.timestamp_millis()), "{fire}");
    }
    let advanced = store.get_schedule(&project_id, WORKFLOW, "ada").await.expect("read").expect("the row");
    assert!(advanced.next_fire.is_some_and(|next| next > now() + Duration::from_secs(50)), "{advanced:?}");
    assert_eq!(advanced.fired, second.started as u64);

    // A late or concurrent tick that reads the same due row again starts nothing more: each
    // fire's execution id is derived from (workflow, user, instant) and already taken. (Only
    // a fire that came due since, if the replay is 5 s late, is new.)
    store.put_schedule(&ScheduleEntry { next_fire: Some(due_at), ..row.clone() }).await.expect("replay the due row");
    let replayed = report(&rie.invoke(&event).await, &rie);
    assert!(replayed.duplicates >= 1, "{replayed:?}");
    if now() < due_at + Duration::from_secs(5) {
        assert_eq!(replayed.started, 0, "{replayed:?}");
    }
    // A duplicate invocation right after finds nothing due.
    let third = report(&rie.invoke(&event).await, &rie);
    assert_eq!((third.due, third.started), (0, 0), "{third:?}");

    // Undeployed: the rule stays on while the ledger holds the row (documented in
    // `switch_rule`); the tick that removes it switches the rule off.
    undeploy(&trigger, &project_id, &api_key).await;
    assert!(rule.is_enabled().await.expect("describe"), "the row is still in the ledger");
    let mut row = store.get_schedule(&project_id, WORKFLOW, "ada").await.expect("read").expect("the row");
    row.next_fire = Some(now() - Duration::from_secs(1));
    store.put_schedule(&row).await.expect("make the row due now");
    let last = report(&rie.invoke(&event).await, &rie);
    assert_eq!((last.removed, last.started), (1, 0), "{last:?}");
    assert!(store.get_schedule(&project_id, WORKFLOW, "ada").await.expect("read").is_none());
    assert!(!rule.is_enabled().await.expect("describe"), "an empty ledger switches the rule off\n{}", rie.output());
}

/// The trigger's side, in-process on the runtime the trigger function builds: a deploy of a
/// schedule switches the rule on; undeploying it switches it off at once when no user has a
/// row, and otherwise the next tick does, after removing the rows.
#[tokio::test]
async fn deploys_switch_the_rule_on_and_undeploys_off() {
    let Some(endpoint) = aws_endpoint() else {
        eprintln!("skipped: SLUICE_AWS_ENDPOINT is not set (infra/test.sh starts moto and sets it)");
        return;
    };
    let aws = AwsResources::create(&endpoint).await;
    let store = aws.store();
    let rule = create_rule(&aws).await;
    let runtime = function_runtime(&aws, Some(rule.name())).await;
    let trigger = Api::new(runtime.clone());

    // No user: nothing in the ledger, so undeploying leaves nothing to tick for.
    let (project_id, api_key) = create_project(&store).await;
    deploy(&trigger, &project_id, &api_key).await;
    assert!(rule.is_enabled().await.expect("describe"), "on with a schedule deployed");
    undeploy(&trigger, &project_id, &api_key).await;
    assert!(!rule.is_enabled().await.expect("describe"), "off with nothing deployed and an empty ledger");

    // A user with the workflow enabled: their row keeps the rule on until a tick removes it.
    let (project_id, api_key) = create_project(&store).await;
    store.ensure_user(&project_id, "bob").await.expect("a connected user");
    deploy(&trigger, &project_id, &api_key).await;
    assert!(rule.is_enabled().await.expect("describe"));
    assert!(store.get_schedule(&project_id, WORKFLOW, "bob").await.expect("read").is_some(), "bob's row");
    undeploy(&trigger, &project_id, &api_key).await;
    assert!(rule.is_enabled().await.expect("describe"), "bob's row is still in the ledger");
    let tick = scheduled_tick(&Runner::new(runtime.clone()), Duration::from_secs(60)).await.expect("tick");
    assert_eq!(tick.removed, 1, "{tick:?}");
    assert!(!rule.is_enabled().await.expect("describe"), "the tick that emptied the ledger switched it off");

    // A runtime without a rule (`sluice dev`, or no SLUICE_SCHEDULER_RULE) switches nothing.
    let plain = Api::new(function_runtime(&aws, None).await);
    let (project_id, api_key) = create_project(&store).await;
    deploy(&plain, &project_id, &api_key).await;
    assert!(!rule.is_enabled().await.expect("describe"));
    undeploy(&plain, &project_id, &api_key).await;
}

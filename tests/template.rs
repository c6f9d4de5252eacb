//! Checks on `template.yaml` that cfn-lint and `sam validate` do not make: the functions are
//! cargo-lambda builds of this workspace's binaries, SQS consumers report partial batch
//! failures and have dead-letter queues, visibility timeouts fit the consumers, every function
//! gets exactly the environment `LambdaConfig` reads, the trigger outlives the response
//! timeout, policies name exact resources, every reference resolves, and the scheduler runs on
//! one rule, created disabled, that the trigger switches. Plus cfn-lint itself when
//! `SLUICE_CFN_LINT` names its binary (the test script sets it).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_yaml_ng::{Mapping, Value};
use sluice_shared::adapters::dynamodb::TTL_ATTRIBUTE;
use sluice_shared::adapters::dynamodb::sweep::{DUE_AT, SHARD, SWEEP_INDEX};
use sluice_shared::adapters::dynamodb::triggers::DUE_INDEX;
use sluice_shared::adapters::eventbridge::{HAND_OFF_MARGIN, SCHEDULE_EXPRESSION};
use sluice_shared::config::{
    ENV_ALLOW_PRIVATE_NETWORK, ENV_DEAD_LETTER_QUEUE_ARN, ENV_RECOVERY_DELAY_SECONDS, ENV_RESPONSE_QUEUE_URL,
    ENV_RESPONSE_TIMEOUT_SECONDS, ENV_SCHEDULER_RULE, ENV_STEP_QUEUE_URL, ENV_STUCK_AFTER_SECONDS, ENV_TABLE, ENV_VARS,
    ENV_WORKFLOW_PREFIX,
};
use sluice_shared::runner::MAX_RECEIVES;
use sluice_shared::runtime::{DEFAULT_RECOVERY_DELAY, DEFAULT_RESPONSE_TIMEOUT};

/// AWS's advice for SQS event sources: visibility timeout ≥ 6 × the function timeout.
const VISIBILITY_FACTOR: u64 = 6;
/// Dead-letter queues keep messages as long as SQS allows (14 days).
const DEAD_LETTER_RETENTION_SECONDS: u64 = 14 * 24 * 3600;
/// Lambda's default function timeout when neither the function nor Globals sets one.
const LAMBDA_DEFAULT_TIMEOUT: u64 = 3;
/// The trigger gives up waiting this long after the response timeout.
const TRIGGER_GRACE_SECONDS: u64 = 1;
/// The scheduler's Lambda timeout: its rule's period (one tick a minute).
const SCHEDULER_TIMEOUT_SECONDS: u64 = 60;
/// An EventBridge rule's ARN on the default bus, from its name (`!Sub` text).
const RULE_ARN_PREFIX: &str = "arn:${AWS::Partition}:events:${AWS::Region}:${AWS::AccountId}:rule/";

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the tests package is inside the workspace").to_path_buf()
}

struct Template {
    root: Value,
}

impl Template {
    fn load() -> Template {
        let path = workspace_root().join("template.yaml");
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        let root = serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("parse {}: {e}", path.display()));
        Template { root }
    }

    fn resources(&self) -> &Mapping {
        self.root["Resources"].as_mapping().expect("template has Resources")
    }

    fn resources_of_type<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = (&'a str, &'a Value)> {
        self.resources()
            .iter()
            .filter(move |(_, resource)| resource["Type"].as_str() == Some(kind))
            .map(|(name, resource)| (name.as_str().expect("resource names are strings"), resource))
    }

    fn functions(&self) -> Vec<(&str, &Value)> {
        let functions: Vec<_> = self.resources_of_type("AWS::Serverless::Function").collect();
        assert!(!functions.is_empty(), "the template declares no function");
        functions
    }

    fn resource(&self, name: &str) -> Option<&Value> {
        self.resources().get(name)
    }

    fn globals(&self) -> &Value {
        &self.root["Globals"]["Function"]
    }

    /// A function property, falling back to `Globals.Function`.
    fn property<'a>(&'a self, function: &'a Value, key: &str) -> &'a Value {
        match &function["Properties"][key] {
            Value::Null => &self.globals()[key],
            value => value,
        }
    }

    fn timeout(&self, function: &Value) -> u64 {
        match self.property(function, "Timeout") {
            Value::Null => LAMBDA_DEFAULT_TIMEOUT,
            value => value.as_u64().expect("Timeout is a whole number of seconds"),
        }
    }

    /// The function whose cargo-lambda binary is `binary`.
    fn function_by_binary(&self, binary: &str) -> (&str, &Value) {
        self.functions()
            .into_iter()
            .find(|(_, f)| f["Metadata"]["BuildProperties"]["Binary"].as_str() == Some(binary))
            .unwrap_or_else(|| panic!("no function builds the `{binary}` binary"))
    }

    /// The SQS event sources of a function: (event name, properties).
    fn sqs_events<'a>(&self, function: &'a Value) -> Vec<(&'a str, &'a Value)> {
        let Some(events) = function["Properties"]["Events"].as_mapping() else {
            return Vec::new();
        };
        events
            .iter()
            .filter(|(_, event)| event["Type"].as_str() == Some("SQS"))
            .map(|(name, event)| (name.as_str().expect("event names are strings"), &event["Properties"]))
            .collect()
    }

    /// The queue resources that some queue's RedrivePolicy targets.
    fn dead_letter_queues(&self) -> BTreeSet<String> {
        self.resources_of_type("AWS::SQS::Queue")
            .filter_map(|(_, queue)| get_att(&queue["Properties"]["RedrivePolicy"]["deadLetterTargetArn"]))
            .map(|(target, _)| target)
            .collect()
    }

    /// The one EventBridge rule (the scheduler's): its resource name and resource.
    fn scheduler_rule(&self) -> (&str, &Value) {
        let rules: Vec<_> = self.resources_of_type("AWS::Events::Rule").collect();
        let [rule] = rules.as_slice() else { panic!("expected exactly one AWS::Events::Rule, got {}", rules.len()) };
        *rule
    }

    /// The actions a function's policies allow on a resource for which `matches` holds.
    fn actions_on(&self, function: &Value, matches: impl Fn(&Value) -> bool) -> BTreeSet<String> {
        let mut allowed = BTreeSet::new();
        for policy in function["Properties"]["Policies"].as_sequence().into_iter().flatten() {
            for statement in policy["Statement"].as_sequence().into_iter().flatten() {
                let resources = match &statement["Resource"] {
                    Value::Sequence(items) => items.iter().collect(),
                    single => vec![single],
                };
                if resources.into_iter().any(&matches) {
                    allowed.extend(as_strings(&statement["Action"]).into_iter().map(str::to_string));
                }
            }
        }
        allowed
    }
}

/// The text of `!Sub "TEXT"`.
fn sub_text(value: &Value) -> Option<&str> {
    match value {
        Value::Tagged(tagged) if tagged.tag == "Sub" => tagged.value.as_str(),
        _ => None,
    }
}

/// `!Sub "arn:${AWS::Partition}:events:${AWS::Region}:${AWS::AccountId}:rule/NAME"` as NAME
/// (the `!Sub` text of a rule's name).
fn rule_arn(value: &Value) -> Option<&str> {
    sub_text(value)?.strip_prefix(RULE_ARN_PREFIX)
}

/// `!GetAtt A.B`, `!GetAtt [A, B]` or `{"Fn::GetAtt": ...}` as (A, B).
fn get_att(value: &Value) -> Option<(String, String)> {
    let target = match value {
        Value::Tagged(tagged) if tagged.tag == "GetAtt" => &tagged.value,
        Value::Mapping(map) if map.len() == 1 => map.get("Fn::GetAtt")?,
        _ => return None,
    };
    match target {
        Value::String(dotted) => dotted.split_once('.').map(|(a, b)| (a.to_string(), b.to_string())),
        Value::Sequence(parts) => match parts.as_slice() {
            [Value::String(a), Value::String(b)] => Some((a.clone(), b.clone())),
            _ => None,
        },
        _ => None,
    }
}

fn referenced_parameter<'a>(variables: &BTreeMap<String, &'a Value>, variable: &str) -> Option<&'a str> {
    variables.get(variable).and_then(|value| reference(value))
}

/// `!Sub "${A.Arn}/index/NAME"` as (A, NAME): the ARN of a table's index.
fn index_arn(value: &Value) -> Option<(String, String)> {
    let Value::Tagged(tagged) = value else { return None };
    let text = tagged.value.as_str().filter(|_| tagged.tag == "Sub")?;
    let (table, index) = text.strip_prefix("${")?.split_once(".Arn}/index/")?;
    Some((table.to_string(), index.to_string()))
}

/// The names of the global secondary indexes of table resource `table`.
fn indexes_of<'a>(template: &'a Template, table: &str) -> Vec<&'a str> {
    let indexes = template.resource(table).map(|t| &t["Properties"]["GlobalSecondaryIndexes"]);
    indexes
        .and_then(Value::as_sequence)
        .map(|indexes| indexes.iter().filter_map(|index| index["IndexName"].as_str()).collect())
        .unwrap_or_default()
}

/// `!Ref A` or `{"Ref": A}` as A.
fn reference(value: &Value) -> Option<&str> {
    match value {
        Value::Tagged(tagged) if tagged.tag == "Ref" => tagged.value.as_str(),
        Value::Mapping(map) if map.len() == 1 => map.get("Ref")?.as_str(),
        _ => None,
    }
}

fn as_strings(value: &Value) -> Vec<&str> {
    match value {
        Value::String(s) => vec![s.as_str()],
        Value::Sequence(items) => items.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

/// The bin targets of the workspace's packages, from `cargo metadata`.
fn workspace_binaries() -> BTreeSet<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .args(["metadata", "--no-deps", "--format-version", "1", "--offline"])
        .current_dir(workspace_root())
        .output()
        .expect("run cargo metadata");
    assert!(output.status.success(), "cargo metadata failed: {}", String::from_utf8_lossy(&output.stderr));
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout).expect("cargo metadata prints JSON");
    let members: BTreeSet<&str> = metadata["workspace_members"]
        .as_array()
        .expect("workspace_members")
        .iter()
        .filter_map(serde_json::Value::as_str)
        .collect();
    metadata["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .filter(|package| package["id"].as_str().is_some_and(|id| members.contains(id)))
        .flat_map(|package| package["targets"].as_array().cloned().unwrap_or_default())
        .filter(|target| target["kind"].as_array().is_some_and(|kinds| kinds.iter().any(|k| k == "bin")))
        .filter_map(|target| target["name"].as_str().map(str::to_string))
        .collect()
}

#[test]
fn functions_are_cargo_lambda_builds_of_workspace_binaries() {
    let template = Template::load();
    let binaries = workspace_binaries();
    for (name, function) in template.functions() {
        let metadata = &function["Metadata"];
        assert_eq!(metadata["BuildMethod"].as_str(), Some("rust-cargolambda"), "{name}: Metadata.BuildMethod");
        let binary = metadata["BuildProperties"]["Binary"]
            .as_str()
            .unwrap_or_else(|| panic!("{name}: Metadata.BuildProperties.Binary is missing"));
        assert!(binaries.contains(binary), "{name}: `{binary}` is not a binary of the workspace ({binaries:?})");
        assert_eq!(template.property(function, "Runtime").as_str(), Some("provided.al2023"), "{name}: Runtime");
        assert_eq!(template.property(function, "Handler").as_str(), Some("bootstrap"), "{name}: Handler");
        let architectures = as_strings(template.property(function, "Architectures"));
        assert!(
            matches!(architectures.as_slice(), ["arm64"] | ["x86_64"]),
            "{name}: Architectures must declare one of arm64, x86_64: {architectures:?}"
        );
        let code_uri =
            template.property(function, "CodeUri").as_str().unwrap_or_else(|| panic!("{name}: CodeUri is missing"));
        let manifest = workspace_root().join(code_uri).join("Cargo.toml");
        let manifest = std::fs::read_to_string(&manifest)
            .unwrap_or_else(|e| panic!("{name}: CodeUri `{code_uri}` has no Cargo.toml: {e}"));
        assert!(manifest.contains("[workspace]"), "{name}: CodeUri `{code_uri}` must be the workspace root");
    }
    let built: BTreeSet<&str> =
        template.functions().iter().filter_map(|(_, f)| f["Metadata"]["BuildProperties"]["Binary"].as_str()).collect();
    for expected in ["trigger", "step-runner", "response-waiter", "scheduler"] {
        assert!(built.contains(expected), "no function builds `{expected}`");
    }
}

#[test]
fn sqs_event_sources_report_batch_item_failures() {
    // Linters accept unknown keys here (a misspelled FunctionResponseTypes deploys silently
    // and makes every failure retry the whole batch).
    const KNOWN: [&str; 8] = [
        "Queue",
        "BatchSize",
        "Enabled",
        "FilterCriteria",
        "FunctionResponseTypes",
        "MaximumBatchingWindowInSeconds",
        "ScalingConfig",
        "KmsKeyArn",
    ];
    let template = Template::load();
    let mut sources = 0;
    for (name, function) in template.functions() {
        for (event, properties) in template.sqs_events(function) {
            sources += 1;
            let keys = properties.as_mapping().unwrap_or_else(|| panic!("{name}.{event}: no Properties"));
            for key in keys.keys().filter_map(Value::as_str) {
                assert!(KNOWN.contains(&key), "{name}.{event}: unknown SQS event property `{key}`");
            }
            assert_eq!(
                as_strings(&properties["FunctionResponseTypes"]),
                ["ReportBatchItemFailures"],
                "{name}.{event}: FunctionResponseTypes"
            );
            let (queue, attribute) = get_att(&properties["Queue"])
                .unwrap_or_else(|| panic!("{name}.{event}: Queue must be !GetAtt <queue>.Arn"));
            assert_eq!(attribute, "Arn", "{name}.{event}: Queue");
            let resource = template.resource(&queue).unwrap_or_else(|| panic!("{name}.{event}: no resource `{queue}`"));
            assert_eq!(resource["Type"].as_str(), Some("AWS::SQS::Queue"));
        }
    }
    assert_eq!(sources, 4, "expected the steps and responses queues and their dead-letter queues");
}

#[test]
fn every_queue_redrives_to_a_dead_letter_queue() {
    let template = Template::load();
    let dead_letter_queues = template.dead_letter_queues();
    let mut queues = 0;
    for (name, queue) in template.resources_of_type("AWS::SQS::Queue") {
        let properties = &queue["Properties"];
        if dead_letter_queues.contains(name) {
            assert!(properties["RedrivePolicy"].is_null(), "{name}: a dead-letter queue must not redrive further");
            assert_eq!(
                properties["MessageRetentionPeriod"].as_u64(),
                Some(DEAD_LETTER_RETENTION_SECONDS),
                "{name}: dead-letter queues keep messages 14 days"
            );
            continue;
        }
        queues += 1;
        let redrive = &properties["RedrivePolicy"];
        let (target, attribute) = get_att(&redrive["deadLetterTargetArn"])
            .unwrap_or_else(|| panic!("{name}: RedrivePolicy.deadLetterTargetArn must be !GetAtt <dlq>.Arn"));
        assert_eq!(attribute, "Arn", "{name}: deadLetterTargetArn");
        assert_ne!(target, name, "{name}: redrives to itself");
        let max_receives = match &redrive["maxReceiveCount"] {
            Value::Number(n) => n.as_u64(),
            Value::String(s) => s.parse().ok(),
            _ => None,
        };
        assert_eq!(
            max_receives,
            Some(u64::from(MAX_RECEIVES)),
            "{name}: maxReceiveCount must match sluice_shared::runner::MAX_RECEIVES"
        );
    }
    assert_eq!(queues, 2, "expected the steps and responses queues");
}

#[test]
fn queue_visibility_is_at_least_six_times_the_consumer_timeout() {
    let template = Template::load();
    for (name, function) in template.functions() {
        let timeout = template.timeout(function);
        for (event, properties) in template.sqs_events(function) {
            let (queue, _) = get_att(&properties["Queue"]).unwrap_or_else(|| panic!("{name}.{event}: Queue"));
            let visibility =
                template.resource(&queue).and_then(|q| q["Properties"]["VisibilityTimeout"].as_u64()).unwrap_or(30);
            assert!(
                visibility >= VISIBILITY_FACTOR * timeout,
                "{queue}: VisibilityTimeout {visibility} s < {VISIBILITY_FACTOR} × {name}'s Timeout {timeout} s"
            );
        }
    }
}

#[test]
fn functions_set_exactly_the_variables_lambda_config_reads() {
    let template = Template::load();
    let expected: BTreeSet<&str> = ENV_VARS.into_iter().collect();
    for (name, function) in template.functions() {
        let mut variables: BTreeMap<String, &Value> = BTreeMap::new();
        for source in
            [&template.globals()["Environment"]["Variables"], &function["Properties"]["Environment"]["Variables"]]
        {
            if let Some(map) = source.as_mapping() {
                for (key, value) in map {
                    let key = key.as_str().expect("variable names are strings");
                    variables.insert(key.to_string(), value);
                }
            }
        }
        // `SLUICE_ENV_<NAME>` variables are the deployer's `{{env.NAME}}` values, not configuration;
        // `OTEL_*` are the standard OpenTelemetry variables, read by the trace exporter.
        let names: BTreeSet<&str> = variables
            .keys()
            .map(String::as_str)
            .filter(|k| !k.starts_with(ENV_WORKFLOW_PREFIX) && !k.starts_with("OTEL_"))
            .collect();
        // A consumer also reads its dead-letter queue, and must know which records come from it.
        let queues: Vec<String> = template
            .sqs_events(function)
            .iter()
            .filter_map(|(_, properties)| get_att(&properties["Queue"]).map(|(queue, _)| queue))
            .collect();
        let mut wanted = expected.clone();
        if !queues.is_empty() {
            wanted.insert(ENV_DEAD_LETTER_QUEUE_ARN);
            let (dlq, attribute) = get_att(variables[ENV_DEAD_LETTER_QUEUE_ARN])
                .unwrap_or_else(|| panic!("{name}: {ENV_DEAD_LETTER_QUEUE_ARN} must be !GetAtt <queue>.Arn"));
            assert_eq!(attribute, "Arn");
            assert!(queues.contains(&dlq), "{name}: {dlq} is not one of its event sources {queues:?}");
            let redrives_there = queues.iter().any(|queue| {
                template.resource(queue).and_then(|q| get_att(&q["Properties"]["RedrivePolicy"]["deadLetterTargetArn"]))
                    == Some((dlq.clone(), "Arn".to_string()))
            });
            assert!(redrives_there, "{name}: {dlq} is not the dead-letter queue of the queue it consumes");
        }
        // The step runner also runs the recovery sweep.
        if template.function_by_binary("step-runner").0 == name {
            wanted.insert(ENV_STUCK_AFTER_SECONDS);
            assert_eq!(referenced_parameter(&variables, ENV_STUCK_AFTER_SECONDS), Some("StuckAfterSeconds"));
        }
        // The trigger switches the scheduler's rule after deploys, the scheduler switches it
        // off when idle (checked in the_scheduler_runs_on_one_disabled_rule_the_trigger_switches).
        if [template.function_by_binary("trigger").0, template.function_by_binary("scheduler").0].contains(&name) {
            wanted.insert(ENV_SCHEDULER_RULE);
        }
        assert_eq!(names, wanted, "{name}: environment variables");

        let referenced = |variable: &str| {
            reference(variables[variable]).unwrap_or_else(|| panic!("{name}: {variable} must be a !Ref"))
        };
        let table = referenced(ENV_TABLE);
        assert_eq!(
            template.resource(table).and_then(|t| t["Type"].as_str()),
            Some("AWS::DynamoDB::Table"),
            "{name}: {ENV_TABLE}"
        );
        for (variable, consumer) in [(ENV_STEP_QUEUE_URL, "step-runner"), (ENV_RESPONSE_QUEUE_URL, "response-waiter")] {
            let queue = referenced(variable);
            let (consumer_name, consumer_fn) = template.function_by_binary(consumer);
            let consumed: Vec<String> = template
                .sqs_events(consumer_fn)
                .into_iter()
                .filter_map(|(_, p)| get_att(&p["Queue"]).map(|(q, _)| q))
                .collect();
            assert!(
                consumed.iter().any(|q| q == queue),
                "{name}: {variable} names `{queue}`, which {consumer_name} does not consume ({consumed:?})"
            );
        }
        for (variable, parameter) in [
            (ENV_RESPONSE_TIMEOUT_SECONDS, "ResponseTimeoutSeconds"),
            (ENV_ALLOW_PRIVATE_NETWORK, "AllowPrivateNetwork"),
            (ENV_RECOVERY_DELAY_SECONDS, "RecoveryDelaySeconds"),
        ] {
            assert_eq!(referenced(variable), parameter, "{name}: {variable}");
        }
    }
}

#[test]
fn the_trigger_url_outlives_the_longest_response_timeout() {
    let template = Template::load();
    let parameter = &template.root["Parameters"]["ResponseTimeoutSeconds"];
    assert_eq!(
        parameter["Default"].as_u64(),
        Some(DEFAULT_RESPONSE_TIMEOUT.as_secs()),
        "ResponseTimeoutSeconds defaults to the engine's default"
    );
    let longest = parameter["MaxValue"].as_u64().expect("ResponseTimeoutSeconds has a MaxValue");
    let (name, trigger) = template.function_by_binary("trigger");
    let timeout = template.timeout(trigger);
    assert!(
        timeout > longest + TRIGGER_GRACE_SECONDS,
        "{name}: Timeout {timeout} s must exceed the longest response timeout {longest} s + {TRIGGER_GRACE_SECONDS} s"
    );
    let url = &trigger["Properties"]["FunctionUrlConfig"];
    assert_eq!(url["AuthType"].as_str(), Some("NONE"), "{name}: Sluice authenticates requests itself");
    assert_eq!(url["InvokeMode"].as_str(), Some("BUFFERED"), "{name}: InvokeMode");
    // API Gateway would cut synchronous callers off at 30 s, before the 542.
    for (function, f) in template.functions() {
        if let Some(events) = f["Properties"]["Events"].as_mapping() {
            for event in events.values() {
                let kind = event["Type"].as_str().unwrap_or_default();
                assert!(
                    kind != "Api" && kind != "HttpApi",
                    "{function}: an API Gateway event cuts requests at 30 s; use the Function URL"
                );
            }
        }
    }
}

#[test]
fn recovery_comes_only_after_the_trigger_can_have_run() {
    let template = Template::load();
    let parameter = &template.root["Parameters"]["RecoveryDelaySeconds"];
    assert_eq!(
        parameter["Default"].as_u64(),
        Some(DEFAULT_RECOVERY_DELAY.as_secs()),
        "RecoveryDelaySeconds defaults to the engine's default"
    );
    let shortest = parameter["MinValue"].as_u64().expect("RecoveryDelaySeconds has a MinValue");
    let (name, trigger) = template.function_by_binary("trigger");
    let timeout = template.timeout(trigger);
    // A shorter delay would resume a segment that is still running in the trigger.
    assert!(shortest > timeout, "RecoveryDelaySeconds MinValue {shortest} s must exceed {name}'s Timeout {timeout} s");
    assert!(DEFAULT_RECOVERY_DELAY.as_secs() > timeout, "the default recovery delay must exceed {name}'s Timeout");
}

#[test]
fn the_recovery_sweep_runs_on_a_schedule_over_the_unfinished_index() {
    let template = Template::load();
    let (name, runner) = template.function_by_binary("step-runner");
    let schedules: Vec<&Value> = runner["Properties"]["Events"]
        .as_mapping()
        .map(|events| events.values().filter(|e| e["Type"].as_str() == Some("Schedule")).collect())
        .unwrap_or_default();
    let [schedule] = schedules.as_slice() else { panic!("{name}: expected one Schedule event, got {schedules:?}") };
    let input: serde_json::Value =
        serde_json::from_str(schedule["Properties"]["Input"].as_str().expect("an Input")).expect("JSON input");
    assert_eq!(input, serde_json::json!({ "sluice": "recovery-sweep" }), "{name}: the sweep's event");
    assert!(schedule["Properties"]["Schedule"].as_str().is_some_and(|s| s.starts_with("rate(")));

    // The index the code queries, with the keys it writes.
    let (table, _) = template.resources_of_type("AWS::DynamoDB::Table").next().expect("a table");
    let tables = template.resource(table).expect("the table");
    let index = tables["Properties"]["GlobalSecondaryIndexes"]
        .as_sequence()
        .and_then(|indexes| indexes.iter().find(|i| i["IndexName"].as_str() == Some(SWEEP_INDEX)))
        .unwrap_or_else(|| panic!("{table}: no index `{SWEEP_INDEX}`"));
    let keys: Vec<(&str, &str)> = index["KeySchema"]
        .as_sequence()
        .expect("a KeySchema")
        .iter()
        .map(|k| (k["AttributeName"].as_str().expect("name"), k["KeyType"].as_str().expect("type")))
        .collect();
    assert_eq!(keys, [(SHARD, "HASH"), (DUE_AT, "RANGE")]);
    let projected = as_strings(&index["Projection"]["NonKeyAttributes"]);
    assert_eq!(projected, ["execution_id"], "the sweep reads execution ids from the index");

    // No message can still be moving an execution with nothing due for the shortest bound.
    let shortest = template.root["Parameters"]["StuckAfterSeconds"]["MinValue"].as_u64().expect("a MinValue");
    let steps = template.resource("StepsQueue").expect("StepsQueue");
    let visibility = steps["Properties"]["VisibilityTimeout"].as_u64().expect("a VisibilityTimeout");
    assert!(
        shortest >= visibility * u64::from(MAX_RECEIVES),
        "StuckAfterSeconds MinValue {shortest} s is shorter than a step message can live ({visibility} s x {MAX_RECEIVES})"
    );
}

/// The table's `due` index has the keys the ledger adapter writes (and `create_table` makes),
/// typed as it writes them, and projects whole rows (the tick advances what it reads).
#[test]
fn the_due_index_has_the_keys_the_ledger_writes() {
    use sluice_shared::adapters::dynamodb::triggers;
    let template = Template::load();
    let (table, _) = template.resources_of_type("AWS::DynamoDB::Table").next().expect("a table");
    let properties = &template.resource(table).expect("the table")["Properties"];
    let index = properties["GlobalSecondaryIndexes"]
        .as_sequence()
        .and_then(|indexes| indexes.iter().find(|i| i["IndexName"].as_str() == Some(triggers::DUE_INDEX)))
        .unwrap_or_else(|| panic!("{table}: no index `{}`", triggers::DUE_INDEX));
    let keys: Vec<(&str, &str)> = index["KeySchema"]
        .as_sequence()
        .expect("a KeySchema")
        .iter()
        .map(|k| (k["AttributeName"].as_str().expect("name"), k["KeyType"].as_str().expect("type")))
        .collect();
    assert_eq!(keys, [(triggers::DUE_SHARD, "HASH"), (triggers::DUE_AT, "RANGE")]);
    assert_eq!(index["Projection"]["ProjectionType"].as_str(), Some("ALL"));
    let types: BTreeMap<&str, &str> = properties["AttributeDefinitions"]
        .as_sequence()
        .expect("AttributeDefinitions")
        .iter()
        .map(|d| (d["AttributeName"].as_str().expect("name"), d["AttributeType"].as_str().expect("type")))
        .collect();
    assert_eq!(types.get(triggers::DUE_SHARD), Some(&"S"), "{table}: {types:?}");
    assert_eq!(types.get(triggers::DUE_AT), Some(&"N"), "{table}: {types:?}");
}

/// Idempotency records expire through the table's TTL attribute (the one the adapter
/// writes), and the trigger — which claims, completes and releases them — may do so.
#[test]
fn idempotency_records_expire_by_the_tables_ttl_and_the_trigger_may_write_them() {
    let template = Template::load();
    let (table, _) = template.resources_of_type("AWS::DynamoDB::Table").next().expect("a table");
    let ttl = &template.resource(table).expect("the table")["Properties"]["TimeToLiveSpecification"];
    assert_eq!(ttl["AttributeName"].as_str(), Some(TTL_ATTRIBUTE), "{table}: {ttl:?}");
    assert_eq!(ttl["Enabled"].as_bool(), Some(true), "{table}: {ttl:?}");
    let (name, trigger) = template.function_by_binary("trigger");
    let mut allowed = BTreeSet::new();
    for policy in trigger["Properties"]["Policies"].as_sequence().into_iter().flatten() {
        for statement in policy["Statement"].as_sequence().into_iter().flatten() {
            if get_att(&statement["Resource"]).is_some_and(|(target, _)| target == table) {
                allowed.extend(as_strings(&statement["Action"]));
            }
        }
    }
    for action in ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"] {
        assert!(allowed.contains(action), "{name} lacks {action} on {table}: {allowed:?}");
    }
}

#[test]
fn policies_name_exact_resources() {
    let template = Template::load();
    for (name, function) in template.functions() {
        let policies = function["Properties"]["Policies"]
            .as_sequence()
            .unwrap_or_else(|| panic!("{name}: no Policies (every function gets its own)"));
        for policy in policies {
            let statements = policy["Statement"]
                .as_sequence()
                .unwrap_or_else(|| panic!("{name}: only inline policy statements are allowed, got {policy:?}"));
            for statement in statements {
                let sid = statement["Sid"].as_str().unwrap_or("<no Sid>");
                assert_eq!(statement["Effect"].as_str(), Some("Allow"), "{name}.{sid}");
                for action in as_strings(&statement["Action"]) {
                    assert!(!action.contains('*'), "{name}.{sid}: wildcard action `{action}`");
                }
                let resources = match &statement["Resource"] {
                    Value::Sequence(items) => items.clone(),
                    Value::Null => panic!("{name}.{sid}: no Resource"),
                    single => vec![single.clone()],
                };
                for resource in &resources {
                    match resource {
                        Value::String(s) => {
                            assert!(!s.contains('*'), "{name}.{sid}: wildcard resource `{s}`")
                        }
                        other if rule_arn(other).is_some() => {
                            let rule = rule_arn(other).expect("checked");
                            assert!(!rule.contains('*'), "{name}.{sid}: wildcard rule `{rule}`");
                            let named = template
                                .resources_of_type("AWS::Events::Rule")
                                .any(|(_, r)| sub_text(&r["Properties"]["Name"]) == Some(rule));
                            assert!(named, "{name}.{sid}: no AWS::Events::Rule is named `{rule}`");
                        }
                        other if index_arn(other).is_some() => {
                            let (table, index) = index_arn(other).expect("checked");
                            assert!(
                                indexes_of(&template, &table).contains(&index.as_str()),
                                "{name}.{sid}: table `{table}` has no index `{index}`"
                            );
                        }
                        other => {
                            let (target, _) = get_att(other).unwrap_or_else(|| {
                                panic!("{name}.{sid}: resources must be !GetAtt <resource>.Arn, got {other:?}")
                            });
                            assert!(template.resource(&target).is_some(), "{name}.{sid}: no resource `{target}`");
                        }
                    }
                }
            }
        }
    }
}

/// The scheduler function runs on exactly one EventBridge rule (rules never grow with users or
/// workflows): `rate(1 minute)`, created DISABLED, targeting it, allowed to invoke it; the
/// trigger knows the rule and may switch it, the scheduler may switch it off; both may query
/// the ledger's due index.
#[test]
fn the_scheduler_runs_on_one_disabled_rule_the_trigger_switches() {
    let template = Template::load();
    let (scheduler_name, scheduler) = template.function_by_binary("scheduler");
    assert_eq!(template.timeout(scheduler), SCHEDULER_TIMEOUT_SECONDS, "{scheduler_name}: Timeout");
    assert!(
        SCHEDULER_TIMEOUT_SECONDS > HAND_OFF_MARGIN.as_secs(),
        "{scheduler_name}: a tick must have time left after the hand-off margin"
    );
    assert!(
        scheduler["Properties"]["Events"].is_null(),
        "{scheduler_name}: invoked by its AWS::Events::Rule only (a SAM event would add a second rule)"
    );

    let (rule_name, rule) = template.scheduler_rule();
    let properties = &rule["Properties"];
    // Linters accept `rate(1 minutes)`; the adapter creates the same expression in tests.
    assert_eq!(properties["ScheduleExpression"].as_str(), Some(SCHEDULE_EXPRESSION), "{rule_name}");
    assert_eq!(properties["State"].as_str(), Some("DISABLED"), "{rule_name}: an idle stack pays nothing");
    assert!(properties["EventBusName"].is_null(), "{rule_name}: on the default bus (its ARN is built from its name)");
    let targets = properties["Targets"].as_sequence().expect("Targets");
    let [target] = targets.as_slice() else { panic!("{rule_name}: expected one target, got {targets:?}") };
    assert_eq!(get_att(&target["Arn"]), Some((scheduler_name.to_string(), "Arn".to_string())), "{rule_name}: target");
    assert!(target["Input"].is_null(), "{rule_name}: the scheduler gets the Scheduled Event itself");
    let rule_text = sub_text(&properties["Name"]).expect("the rule's Name is a !Sub (the scheduler's policy names it)");

    let permissions: Vec<&Value> = template
        .resources_of_type("AWS::Lambda::Permission")
        .map(|(_, p)| &p["Properties"])
        .filter(|p| get_att(&p["SourceArn"]).is_some_and(|(source, _)| source == rule_name))
        .collect();
    let [permission] = permissions.as_slice() else {
        panic!("expected one AWS::Lambda::Permission for {rule_name}, got {permissions:?}")
    };
    assert_eq!(reference(&permission["FunctionName"]), Some(scheduler_name), "the permission's function");
    assert_eq!(permission["Principal"].as_str(), Some("events.amazonaws.com"));
    assert_eq!(permission["Action"].as_str(), Some("lambda:InvokeFunction"));
    assert_eq!(get_att(&permission["SourceArn"]).map(|(_, attribute)| attribute).as_deref(), Some("Arn"));

    let variable = |function: &Value| function["Properties"]["Environment"]["Variables"][ENV_SCHEDULER_RULE].clone();
    let (trigger_name, trigger) = template.function_by_binary("trigger");
    assert_eq!(reference(&variable(trigger)), Some(rule_name), "{trigger_name}: {ENV_SCHEDULER_RULE}");
    let on_rule = template.actions_on(trigger, |r| get_att(r) == Some((rule_name.to_string(), "Arn".to_string())));
    for action in ["events:EnableRule", "events:DisableRule", "events:DescribeRule"] {
        assert!(on_rule.contains(action), "{trigger_name} lacks {action} on {rule_name}: {on_rule:?}");
    }
    // The scheduler cannot !Ref the rule that targets it (a circular dependency): it names it.
    assert_eq!(sub_text(&variable(scheduler)), Some(rule_text), "{scheduler_name}: {ENV_SCHEDULER_RULE}");
    let on_own_rule = template.actions_on(scheduler, |r| rule_arn(r) == Some(rule_text));
    for action in ["events:EnableRule", "events:DisableRule"] {
        assert!(on_own_rule.contains(action), "{scheduler_name} lacks {action} on its rule: {on_own_rule:?}");
    }

    // The ledger: the tick pages through the due index, and so does the trigger's switch.
    let (table, _) = template.resources_of_type("AWS::DynamoDB::Table").next().expect("a table");
    for (name, function) in [(scheduler_name, scheduler), (trigger_name, trigger)] {
        let on_index =
            template.actions_on(function, |r| index_arn(r) == Some((table.to_string(), DUE_INDEX.to_string())));
        assert!(on_index.contains("dynamodb:Query"), "{name} cannot query {table}/index/{DUE_INDEX}");
    }
    let on_table = template.actions_on(scheduler, |r| get_att(r) == Some((table.to_string(), "Arn".to_string())));
    for action in ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"] {
        assert!(on_table.contains(action), "{scheduler_name} lacks {action} on {table}: {on_table:?}");
    }
    let on_steps =
        template.actions_on(scheduler, |r| get_att(r) == Some(("StepsQueue".to_string(), "Arn".to_string())));
    assert!(on_steps.contains("sqs:SendMessage"), "{scheduler_name} sends fires and hand-offs to StepsQueue");
}

/// Every `!Ref`, `!GetAtt` and `${...}` of `!Sub` names a parameter, a resource (or one SAM
/// generates from it) or a pseudo parameter.
#[test]
fn every_reference_resolves() {
    let template = Template::load();
    let mut known: BTreeSet<String> =
        template.resources().keys().filter_map(Value::as_str).map(str::to_string).collect();
    if let Some(parameters) = template.root["Parameters"].as_mapping() {
        known.extend(parameters.keys().filter_map(Value::as_str).map(str::to_string));
    }
    for (name, function) in template.functions() {
        if !function["Properties"]["FunctionUrlConfig"].is_null() {
            known.insert(format!("{name}Url"));
        }
        known.insert(format!("{name}Role"));
    }
    let mut unresolved = Vec::new();
    walk(&template.root, &mut |value| {
        let mut targets = Vec::new();
        if let Some(target) = reference(value) {
            targets.push(target.to_string());
        }
        if let Some((target, _)) = get_att(value) {
            targets.push(target);
        }
        if let Value::Tagged(tagged) = value
            && tagged.tag == "Sub"
        {
            let text = match &tagged.value {
                Value::Sequence(parts) => parts.first().and_then(Value::as_str).unwrap_or_default(),
                other => other.as_str().unwrap_or_default(),
            };
            for piece in text.split("${").skip(1) {
                if let Some((variable, _)) = piece.split_once('}') {
                    let resource = variable.split('.').next().unwrap_or(variable);
                    targets.push(resource.to_string());
                }
            }
        }
        for target in targets {
            if !target.starts_with("AWS::") && !known.contains(&target) {
                unresolved.push(target);
            }
        }
    });
    assert!(unresolved.is_empty(), "unresolved references: {unresolved:?}");
}

fn walk(value: &Value, visit: &mut dyn FnMut(&Value)) {
    visit(value);
    match value {
        Value::Sequence(items) => items.iter().for_each(|v| walk(v, visit)),
        Value::Mapping(map) => map.values().for_each(|v| walk(v, visit)),
        Value::Tagged(tagged) => walk(&tagged.value, visit),
        _ => {}
    }
}

/// cfn-lint (with the SAM transform) must report nothing. Skipped with a notice unless
/// `SLUICE_CFN_LINT` names the binary; the test script always sets it.
#[test]
fn cfn_lint_reports_nothing() {
    let Some(cfn_lint) = std::env::var_os("SLUICE_CFN_LINT").filter(|v| !v.is_empty()) else {
        eprintln!("skipped: SLUICE_CFN_LINT is not set (infra/test.sh sets it to .venv/bin/cfn-lint)");
        return;
    };
    let mut command = Command::new(&cfn_lint);
    command.arg("--").arg("template.yaml").current_dir(workspace_root());
    if std::env::var_os("AWS_DEFAULT_REGION").is_none() {
        command.env("AWS_DEFAULT_REGION", "us-east-1");
    }
    let output = command.output().unwrap_or_else(|e| panic!("run {}: {e}", PathBuf::from(&cfn_lint).display()));
    assert!(
        output.status.success(),
        "cfn-lint template.yaml failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

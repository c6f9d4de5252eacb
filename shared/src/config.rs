//! The Lambda functions' configuration, read once at cold start from the environment that
//! `template.yaml` sets. Invariant: a missing or malformed variable is an error naming it, so
//! a misconfigured function fails at init instead of on its first event.

use std::collections::BTreeMap;
use std::time::Duration;

#[cfg(feature = "aws")]
use crate::runtime::Runtime;
use crate::runtime::{DEFAULT_RECOVERY_DELAY, DEFAULT_RESPONSE_TIMEOUT};

/// The DynamoDB table holding every record.
pub const ENV_TABLE: &str = "SLUICE_TABLE";
/// The URL of the steps queue (read by the step runner, written by everyone).
pub const ENV_STEP_QUEUE_URL: &str = "SLUICE_STEP_QUEUE_URL";
/// The URL of the responses queue (deadline messages for the response waiter).
pub const ENV_RESPONSE_QUEUE_URL: &str = "SLUICE_RESPONSE_QUEUE_URL";
/// Whole seconds a synchronous caller waits for a Response step (default 55).
pub const ENV_RESPONSE_TIMEOUT_SECONDS: &str = "SLUICE_RESPONSE_TIMEOUT_SECONDS";
/// `true` lets steps reach loopback and private addresses (default `false`).
pub const ENV_ALLOW_PRIVATE_NETWORK: &str = "SLUICE_ALLOW_PRIVATE_NETWORK";
/// Whole seconds after its start at which an execution whose inline first segment died is
/// resumed from its last recorded step (default 90, see [`DEFAULT_RECOVERY_DELAY`]). On AWS
/// it must exceed the trigger function's timeout, or a segment still alive is resumed beside
/// itself (its unrecorded step would then run twice).
pub const ENV_RECOVERY_DELAY_SECONDS: &str = "SLUICE_RECOVERY_DELAY_SECONDS";

/// Whole days an execution and every record of it are kept after its start (default 30,
/// 1 to 3650; see [`crate::retention`]): the DynamoDB items carry the TTL attribute.
pub const ENV_EXECUTION_RETENTION_DAYS: &str = "SLUICE_EXECUTION_RETENTION_DAYS";

/// The ARN of the dead-letter queue a consumer function also reads (set on the step runner
/// and the response waiter only): its records are handled as dead letters (the execution
/// fails with the reason), not run.
pub const ENV_DEAD_LETTER_QUEUE_ARN: &str = "SLUICE_DEAD_LETTER_QUEUE_ARN";

/// Whole seconds nothing of an execution may be due before the recovery sweep (the step
/// runner's scheduled invocation) resumes it (default 3600: longer than a step message can
/// live without a recorded step, the steps queue's 720 s visibility × 5 receives).
pub const ENV_STUCK_AFTER_SECONDS: &str = "SLUICE_STUCK_AFTER_SECONDS";

/// The KMS key that seals users' credentials and `password` settings (its id or ARN).
/// Without it the functions run, but no secret can be stored or read.
pub const ENV_KMS_KEY_ID: &str = "SLUICE_KMS_KEY_ID";

/// The name of the EventBridge rule that runs the `scheduler` function every minute (set on
/// the trigger, which switches it on and off after deploys, and on the scheduler, which
/// switches it off once the schedule ledger is empty). Without it there is no rule to switch
/// (`sluice dev`, or a stack without schedules).
pub const ENV_SCHEDULER_RULE: &str = "SLUICE_SCHEDULER_RULE";

/// The prefix of the variables that become workflows' `{{env.NAME}}` values: `SLUICE_ENV_CRM_URL`
/// is `{{env.CRM_URL}}`. None is required; the deployer adds them to the functions.
pub const ENV_WORKFLOW_PREFIX: &str = "SLUICE_ENV_";

/// Every variable [`LambdaConfig::from_env`] requires or reads by name; `template.yaml` sets
/// exactly these (besides any [`ENV_WORKFLOW_PREFIX`] variables the deployer adds).
pub const ENV_VARS: [&str; 8] = [
    ENV_TABLE,
    ENV_STEP_QUEUE_URL,
    ENV_RESPONSE_QUEUE_URL,
    ENV_RESPONSE_TIMEOUT_SECONDS,
    ENV_ALLOW_PRIVATE_NETWORK,
    ENV_RECOVERY_DELAY_SECONDS,
    ENV_KMS_KEY_ID,
    ENV_EXECUTION_RETENTION_DAYS,
];

/// Longest accepted response timeout: the trigger function must outlive it (Lambda's own
/// limit is 900 s).
const MAX_RESPONSE_TIMEOUT_SECONDS: u64 = 890;
/// Longest accepted recovery delay: a day (delays beyond the queue's 15 minutes are reached
/// by re-sending).
const MAX_RECOVERY_DELAY_SECONDS: u64 = 86_400;
/// Default of [`ENV_STUCK_AFTER_SECONDS`].
const DEFAULT_STUCK_AFTER: Duration = Duration::from_secs(3600);
/// Longest accepted [`ENV_STUCK_AFTER_SECONDS`]: a week.
const MAX_STUCK_AFTER_SECONDS: u64 = 7 * 86_400;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("missing environment variable {0} (template.yaml sets it)")]
    Missing(&'static str),
    #[error("invalid environment variable {name}={value:?}: {reason}")]
    Invalid { name: &'static str, value: String, reason: String },
    /// A `SLUICE_ENV_` variable without a name after the prefix, or not valid UTF-8.
    #[error("invalid environment variable {name}: {reason}")]
    InvalidWorkflowEnv { name: String, reason: &'static str },
    /// A client could not be built from a valid configuration.
    #[error("{0}")]
    Client(String),
}

/// What every Sluice Lambda function needs to know about its deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LambdaConfig {
    pub table_name: String,
    pub step_queue_url: String,
    pub response_queue_url: String,
    pub response_timeout: Duration,
    pub allow_private_network: bool,
    pub recovery_delay: Duration,
    /// [`ENV_DEAD_LETTER_QUEUE_ARN`]: the consumer functions' dead-letter queue.
    pub dead_letter_queue_arn: Option<String>,
    /// [`ENV_STUCK_AFTER_SECONDS`]: the recovery sweep's bound.
    pub stuck_after: Duration,
    /// [`ENV_KMS_KEY_ID`].
    pub kms_key_id: Option<String>,
    /// [`ENV_SCHEDULER_RULE`].
    pub scheduler_rule: Option<String>,
    /// Workflows' `{{env.NAME}}` values, from the `SLUICE_ENV_<NAME>` variables.
    pub env: BTreeMap<String, String>,
    /// [`ENV_EXECUTION_RETENTION_DAYS`].
    pub execution_retention: Duration,
}

impl LambdaConfig {
    /// Reads the process environment.
    pub fn from_env() -> Result<LambdaConfig, ConfigError> {
        let config = Self::from_lookup(|name| std::env::var(name).ok())?;
        Ok(LambdaConfig { env: workflow_env(std::env::vars_os())?, ..config })
    }

    /// Reads the variables through `lookup` (the environment, or a map in tests); `env` is
    /// left empty (see [`workflow_env`]).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<LambdaConfig, ConfigError> {
        let required = |name: &'static str| match lookup(name) {
            Some(value) if !value.trim().is_empty() => Ok(value.trim().to_string()),
            _ => Err(ConfigError::Missing(name)),
        };
        let table_name = required(ENV_TABLE)?;
        let step_queue_url = required(ENV_STEP_QUEUE_URL)?;
        let response_queue_url = required(ENV_RESPONSE_QUEUE_URL)?;
        let response_timeout = match lookup(ENV_RESPONSE_TIMEOUT_SECONDS) {
            None => DEFAULT_RESPONSE_TIMEOUT,
            Some(value) => parse_seconds(ENV_RESPONSE_TIMEOUT_SECONDS, &value, MAX_RESPONSE_TIMEOUT_SECONDS)?,
        };
        let recovery_delay = match lookup(ENV_RECOVERY_DELAY_SECONDS) {
            None => DEFAULT_RECOVERY_DELAY,
            Some(value) => parse_seconds(ENV_RECOVERY_DELAY_SECONDS, &value, MAX_RECOVERY_DELAY_SECONDS)?,
        };
        let stuck_after = match lookup(ENV_STUCK_AFTER_SECONDS) {
            None => DEFAULT_STUCK_AFTER,
            Some(value) => parse_seconds(ENV_STUCK_AFTER_SECONDS, &value, MAX_STUCK_AFTER_SECONDS)?,
        };
        let execution_retention = match lookup(ENV_EXECUTION_RETENTION_DAYS) {
            None => crate::retention::DEFAULT_RETENTION,
            Some(value) => crate::retention::parse(&value).map_err(|e| ConfigError::Invalid {
                name: ENV_EXECUTION_RETENTION_DAYS,
                value: value.clone(),
                reason: e.to_string(),
            })?,
        };
        let allow_private_network = match lookup(ENV_ALLOW_PRIVATE_NETWORK) {
            None => false,
            Some(value) => parse_bool(ENV_ALLOW_PRIVATE_NETWORK, &value)?,
        };
        Ok(LambdaConfig {
            table_name,
            step_queue_url,
            response_queue_url,
            response_timeout,
            allow_private_network,
            recovery_delay,
            dead_letter_queue_arn: lookup(ENV_DEAD_LETTER_QUEUE_ARN).filter(|arn| !arn.trim().is_empty()),
            stuck_after,
            kms_key_id: lookup(ENV_KMS_KEY_ID).map(|id| id.trim().to_string()).filter(|id| !id.is_empty()),
            scheduler_rule: lookup(ENV_SCHEDULER_RULE).map(|name| name.trim().to_string()).filter(|n| !n.is_empty()),
            env: BTreeMap::new(),
            execution_retention,
        })
    }
}

/// The `{{env.NAME}}` values: every `SLUICE_ENV_<NAME>` variable of `vars`, by `<NAME>`.
pub fn workflow_env(
    vars: impl IntoIterator<Item = (std::ffi::OsString, std::ffi::OsString)>,
) -> Result<BTreeMap<String, String>, ConfigError> {
    let mut env = BTreeMap::new();
    for (name, value) in vars {
        let Some(text) = name.to_str() else { continue };
        let Some(short) = text.strip_prefix(ENV_WORKFLOW_PREFIX) else { continue };
        let invalid = |reason| ConfigError::InvalidWorkflowEnv { name: text.to_string(), reason };
        if short.is_empty() {
            return Err(invalid("expected a name after the prefix"));
        }
        let value = value.into_string().map_err(|_| invalid("the value is not valid UTF-8"))?;
        env.insert(short.to_string(), value);
    }
    Ok(env)
}

/// A whole number of seconds from 1 to `max`.
fn parse_seconds(name: &'static str, value: &str, max: u64) -> Result<Duration, ConfigError> {
    let invalid = |reason: &str| ConfigError::Invalid { name, value: value.to_string(), reason: reason.to_string() };
    let seconds: u64 = value.trim().parse().map_err(|_| invalid("expected a whole number of seconds"))?;
    if seconds == 0 || seconds > max {
        return Err(invalid(&format!("expected 1 to {max} seconds")));
    }
    Ok(Duration::from_secs(seconds))
}

fn parse_bool(name: &'static str, value: &str) -> Result<bool, ConfigError> {
    match value.trim() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(ConfigError::Invalid {
            name,
            value: value.to_string(),
            reason: "expected `true` or `false`".to_string(),
        }),
    }
}

/// The function's DynamoDB store.
#[cfg(feature = "aws")]
pub fn dynamo_store(config: &LambdaConfig, sdk: &aws_config::SdkConfig) -> crate::adapters::dynamodb::DynamoStore {
    crate::adapters::dynamodb::DynamoStore::new(aws_sdk_dynamodb::Client::new(sdk), config.table_name.clone())
        .with_retention(config.execution_retention)
}

/// Builds the ports and clients of a Lambda function: DynamoDB store, SQS queues, the
/// guarded outbound HTTP client, the KMS key wrapper and the scheduler's EventBridge rule
/// (when configured), once per cold start.
#[cfg(feature = "aws")]
pub async fn build_runtime(config: &LambdaConfig, sdk: &aws_config::SdkConfig) -> Result<Runtime, ConfigError> {
    use std::sync::Arc;

    use crate::adapters::sqs::SqsQueue;
    use crate::net::{HttpClient, OutboundPolicy};
    use crate::runtime::{Host, Settings};

    let store = dynamo_store(config, sdk);
    let queue =
        SqsQueue::new(aws_sdk_sqs::Client::new(sdk), config.step_queue_url.clone(), config.response_queue_url.clone());
    let policy =
        OutboundPolicy { allow_loopback: config.allow_private_network, allow_private: config.allow_private_network };
    let http = HttpClient::new(policy).map_err(|e| ConfigError::Client(e.to_string()))?;
    let settings = Settings {
        response_timeout: config.response_timeout,
        recovery_delay: config.recovery_delay,
        host: Host::Lambda,
        env: config.env.clone(),
        ..Settings::default()
    };
    let (store, queue): (Arc<dyn crate::ports::Store>, Arc<dyn crate::ports::SendQueue>) =
        (Arc::new(store), Arc::new(queue));
    let starter = Arc::new(crate::start::SendThenCreate { store: store.clone(), queue: queue.clone() });
    let runtime = Runtime::new(store, queue, starter, http, settings);
    let runtime = match &config.kms_key_id {
        Some(key_id) => runtime
            .with_keys(Arc::new(crate::adapters::kms::KmsKeyWrap::new(aws_sdk_kms::Client::new(sdk), key_id.clone()))),
        None => runtime,
    };
    Ok(match &config.scheduler_rule {
        Some(name) => runtime.with_schedule_rule(Arc::new(crate::adapters::eventbridge::EventBridgeRule::new(
            aws_sdk_eventbridge::Client::new(sdk),
            name.clone(),
        ))),
        None => runtime,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn config(vars: &[(&str, &str)]) -> Result<LambdaConfig, ConfigError> {
        let vars: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        LambdaConfig::from_lookup(|name| vars.get(name).cloned())
    }

    const REQUIRED: [(&str, &str); 3] = [
        (ENV_TABLE, "sluice"),
        (ENV_STEP_QUEUE_URL, "https://sqs.example/steps"),
        (ENV_RESPONSE_QUEUE_URL, "https://sqs.example/responses"),
    ];

    fn with(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
        REQUIRED.iter().chain(extra).copied().collect()
    }

    #[test]
    fn required_variables_alone_give_the_defaults() {
        let defaults = config(&REQUIRED).expect("valid");
        assert_eq!(
            defaults,
            LambdaConfig {
                table_name: "sluice".into(),
                step_queue_url: "https://sqs.example/steps".into(),
                response_queue_url: "https://sqs.example/responses".into(),
                response_timeout: Duration::from_secs(55),
                allow_private_network: false,
                recovery_delay: Duration::from_secs(90),
                dead_letter_queue_arn: None,
                stuck_after: Duration::from_secs(3600),
                kms_key_id: None,
                scheduler_rule: None,
                env: BTreeMap::new(),
                execution_retention: Duration::from_secs(30 * 86_400),
            }
        );
        let kept = config(&with(&[(ENV_EXECUTION_RETENTION_DAYS, "7")])).expect("valid");
        assert_eq!(kept.execution_retention, Duration::from_secs(7 * 86_400));
        for bad in ["0", "3651", "7h", ""] {
            assert!(config(&with(&[(ENV_EXECUTION_RETENTION_DAYS, bad)])).is_err(), "{bad:?} is refused");
        }
        let ruled = config(&with(&[(ENV_SCHEDULER_RULE, " sluice-scheduler ")])).expect("valid");
        assert_eq!(ruled.scheduler_rule.as_deref(), Some("sluice-scheduler"));
        let blank = config(&with(&[(ENV_SCHEDULER_RULE, "  ")])).expect("valid");
        assert_eq!(blank.scheduler_rule, None, "a blank rule name is no rule");
        let keyed = config(&with(&[(ENV_KMS_KEY_ID, " arn:aws:kms:eu-west-1:1:key/k ")])).expect("valid");
        assert_eq!(keyed.kms_key_id.as_deref(), Some("arn:aws:kms:eu-west-1:1:key/k"));
        let swept = config(&with(&[(ENV_STUCK_AFTER_SECONDS, "120")])).expect("valid");
        assert_eq!(swept.stuck_after, Duration::from_secs(120));
        for bad in ["0", "-5", "1h", "604801"] {
            let error = config(&with(&[(ENV_STUCK_AFTER_SECONDS, bad)])).expect_err("out of range");
            assert!(error.to_string().contains(ENV_STUCK_AFTER_SECONDS), "{error}");
        }
        let consumer = config(&with(&[(ENV_DEAD_LETTER_QUEUE_ARN, "arn:aws:sqs:us-east-1:1:dlq")])).expect("valid");
        assert_eq!(consumer.dead_letter_queue_arn.as_deref(), Some("arn:aws:sqs:us-east-1:1:dlq"));
    }

    #[test]
    fn each_missing_required_variable_is_named() {
        for missing in [ENV_TABLE, ENV_STEP_QUEUE_URL, ENV_RESPONSE_QUEUE_URL] {
            let vars: Vec<_> = REQUIRED.iter().copied().filter(|(k, _)| *k != missing).collect();
            let error = config(&vars).expect_err("a required variable is missing");
            assert!(matches!(error, ConfigError::Missing(name) if name == missing));
            assert!(error.to_string().contains(missing), "{error}");
        }
    }

    #[test]
    fn an_empty_required_variable_counts_as_missing() {
        let vars: Vec<_> = REQUIRED.iter().map(|&(k, v)| if k == ENV_TABLE { (k, "  ") } else { (k, v) }).collect();
        assert!(matches!(config(&vars), Err(ConfigError::Missing(ENV_TABLE))));
    }

    #[test]
    fn response_timeout_is_read_in_seconds() {
        let config = config(&with(&[(ENV_RESPONSE_TIMEOUT_SECONDS, "20")])).expect("valid");
        assert_eq!(config.response_timeout, Duration::from_secs(20));
    }

    #[test]
    fn a_malformed_or_out_of_range_timeout_is_an_error_naming_the_variable() {
        for bad in ["", "abc", "-1", "1.5", "0", "891"] {
            let error = config(&with(&[(ENV_RESPONSE_TIMEOUT_SECONDS, bad)])).expect_err(bad);
            assert!(
                matches!(&error, ConfigError::Invalid { name, .. } if *name == ENV_RESPONSE_TIMEOUT_SECONDS),
                "{bad}: {error}"
            );
            assert!(error.to_string().contains(ENV_RESPONSE_TIMEOUT_SECONDS));
        }
    }

    #[test]
    fn recovery_delay_is_read_in_seconds_and_validated() {
        let read = config(&with(&[(ENV_RECOVERY_DELAY_SECONDS, "4")])).expect("valid");
        assert_eq!(read.recovery_delay, Duration::from_secs(4));
        for bad in ["", "abc", "-1", "2.5", "0", "86401"] {
            let error = config(&with(&[(ENV_RECOVERY_DELAY_SECONDS, bad)])).expect_err(bad);
            assert!(
                matches!(&error, ConfigError::Invalid { name, .. } if *name == ENV_RECOVERY_DELAY_SECONDS),
                "{bad}: {error}"
            );
        }
    }

    #[test]
    fn allow_private_network_accepts_only_true_and_false() {
        let on = config(&with(&[(ENV_ALLOW_PRIVATE_NETWORK, "true")])).expect("valid");
        assert!(on.allow_private_network);
        let off = config(&with(&[(ENV_ALLOW_PRIVATE_NETWORK, "false")])).expect("valid");
        assert!(!off.allow_private_network);
        for bad in ["yes", "1", "TRUE", ""] {
            let error = config(&with(&[(ENV_ALLOW_PRIVATE_NETWORK, bad)])).expect_err(bad);
            assert!(error.to_string().contains(ENV_ALLOW_PRIVATE_NETWORK), "{error}");
        }
    }

    #[test]
    fn sluice_env_variables_become_workflow_env_values_by_their_name() {
        let vars = [("SLUICE_ENV_CRM_URL", "https://crm.example"), ("SLUICE_TABLE", "t"), ("HOME", "/root")];
        let env = workflow_env(vars.map(|(k, v)| (k.into(), v.into()))).expect("valid");
        assert_eq!(env, BTreeMap::from([("CRM_URL".to_string(), "https://crm.example".to_string())]));
    }

    #[test]
    fn a_sluice_env_variable_without_a_name_is_an_error_naming_it() {
        let error = workflow_env([("SLUICE_ENV_".into(), "x".into())]).expect_err("no name");
        assert!(error.to_string().contains("SLUICE_ENV_"), "{error}");
    }
}

//! The local stack started in-process on a free port, over SQLite or over DynamoDB + SQS on
//! the local AWS-API server (`SLUICE_AWS_ENDPOINT`), with a project, its keys and a client.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use sluice_cli::server::ServerLimits;
use sluice_cli::stack::{LocalStack, StackOptions, Sweep};
use sluice_shared::adapters::dynamodb::{self, DynamoStore};
use sluice_shared::adapters::kms::KmsKeyWrap;
use sluice_shared::adapters::sqlite::Sqlite;
use sluice_shared::adapters::sqs::{self, SqsQueue};

use crate::duplicating::DuplicatingQueue;
use sluice_shared::auth;
use sluice_shared::crypto::{KeyWrap, LocalKeyFile};
use sluice_shared::model::load;
use sluice_shared::net::{HttpClient, OutboundPolicy};
use sluice_shared::ports::{Deployment, Project, Queue, StartExecution, Store};
use sluice_shared::record::now;
use sluice_shared::runtime::{Host, Runtime, Settings};
use sluice_shared::start::SendThenCreate;

/// A backend's store, queue, atomic starter (if it has one) and data folder.
type Backends = (Arc<dyn Store>, Arc<dyn Queue>, Option<Arc<dyn StartExecution>>, Option<PathBuf>, Arc<dyn KeyWrap>);

/// The SDK clients a stack on DynamoDB + SQS uses, built by the caller (with interceptors
/// that count its requests, for instance).
#[derive(Debug, Clone)]
pub struct AwsClients {
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub sqs: aws_sdk_sqs::Client,
    /// Seals users' secrets with a KMS key the stack creates.
    pub kms: aws_sdk_kms::Client,
}

/// Where a stack on DynamoDB + SQS keeps its data: its own table and queues.
#[derive(Debug, Clone)]
pub struct AwsResources {
    pub table: String,
    pub steps_url: String,
    pub responses_url: String,
}

/// How a test stack differs from the default.
#[derive(Debug, Clone)]
pub struct StackConfig {
    pub response_timeout: Duration,
    /// Every message is delivered twice.
    pub duplicate_deliveries: bool,
    /// A fraction of the messages is delivered twice (rate, seed), as SQS may.
    pub duplicate_some: Option<(f64, u64)>,
    /// Step-runner workers (each handles up to 10 messages at a time).
    pub workers: usize,
    /// When an inline segment's recovery message comes due.
    pub recovery_delay: Duration,
    /// The HTTP server's timeouts and connection limit.
    pub limits: ServerLimits,
    /// SQLite only: run the recovery sweep every `.0` for executions stuck `.1`.
    pub sweep: Option<(Duration, Duration)>,
    /// How long a received message stays invisible before it is delivered again.
    pub visibility: Duration,
    /// Workflows' and configs' `{{env.NAME}}` values (the Lambdas' `SLUICE_ENV_<NAME>`).
    pub env: std::collections::BTreeMap<String, String>,
    /// SQLite only: how long a statement waits for a lock held elsewhere (default 5 s).
    pub sqlite_busy_timeout: Option<Duration>,
    /// What schedules take as now: tests set a manual clock and tick by hand.
    pub clock: sluice_shared::scheduler::Clock,
}

/// The `{{env.NAME}}` values of every test stack: the OAuth client of the tests' fake provider.
pub const TEST_ENV: [(&str, &str); 2] = [("TEST_CLIENT_ID", "client-1"), ("TEST_CLIENT_SECRET", "secret-1")];

impl Default for StackConfig {
    fn default() -> Self {
        StackConfig {
            response_timeout: Duration::from_secs(30),
            duplicate_deliveries: false,
            duplicate_some: None,
            limits: ServerLimits::default(),
            sweep: None,
            workers: 4,
            recovery_delay: sluice_shared::runtime::DEFAULT_RECOVERY_DELAY,
            visibility: sluice_cli::stack::VISIBILITY,
            env: TEST_ENV.map(|(name, value)| (name.to_string(), value.to_string())).into(),
            sqlite_busy_timeout: None,
            clock: sluice_shared::scheduler::Clock::System,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// One SQLite file for the table and the queues, as `sluice dev`.
    Sqlite,
    /// DynamoDB + SQS on the local AWS-API server, behaving as the Lambda functions do
    /// (`Host::Lambda`).
    Aws,
}

pub struct TestStack {
    pub base_url: String,
    pub project_id: String,
    pub api_key: String,
    pub store: Arc<dyn Store>,
    /// The stack's runtime, for driving handlers directly (e.g. a redelivered message).
    pub runtime: Runtime,
    private_pem: String,
    http: reqwest::Client,
    _stack: LocalStack,
    data_dir: Option<PathBuf>,
    /// The table and queues, on DynamoDB + SQS.
    pub aws: Option<AwsResources>,
}

/// The local AWS-API server's endpoint, or None (the caller skips) unless it is required.
pub fn aws_endpoint() -> Option<String> {
    match std::env::var("SLUICE_AWS_ENDPOINT") {
        Ok(endpoint) if !endpoint.is_empty() => Some(endpoint),
        _ if std::env::var("SLUICE_REQUIRE_AWS").as_deref() == Ok("1") => {
            panic!("SLUICE_REQUIRE_AWS=1 but SLUICE_AWS_ENDPOINT is not set: start it with infra/moto.sh")
        }
        _ => None,
    }
}

pub async fn aws_sdk_config(endpoint: &str) -> aws_config::SdkConfig {
    let credentials = aws_sdk_dynamodb::config::Credentials::new("test", "test", None, None, "sluice-tests");
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(credentials)
        .load()
        .await
}

impl TestStack {
    /// Starts a stack whose synchronous callers wait `response_timeout`; None when the AWS
    /// backend was asked for and no local AWS-API server is configured.
    pub async fn start(backend: Backend, response_timeout: Duration) -> Option<TestStack> {
        TestStack::start_with(backend, StackConfig { response_timeout, ..StackConfig::default() }).await
    }

    /// Starts a stack with more options (see [`StackConfig`]).
    pub async fn start_with(backend: Backend, config: StackConfig) -> Option<TestStack> {
        match backend {
            Backend::Sqlite => {
                let unique = uuid::Uuid::new_v4().simple().to_string();
                let dir = std::env::temp_dir().join(format!("sluice-e2e-{unique}"));
                let mut db = Sqlite::open(&dir.join("sluice.db")).expect("open SQLite");
                if let Some(timeout) = config.sqlite_busy_timeout {
                    db = db.with_busy_timeout(timeout).expect("busy timeout");
                }
                let db = Arc::new(db);
                let sweep = config.sweep.map(|(every, stuck_after)| Sweep { store: (*db).clone(), every, stuck_after });
                let keys: Arc<dyn KeyWrap> =
                    Arc::new(LocalKeyFile::open_or_create(dir.join("master.key")).expect("the key file"));
                let backends: Backends = (db.clone(), db.clone(), Some(db), Some(dir), keys);
                Some(TestStack::assemble(backends, Host::Local, None, unique, config, sweep).await)
            }
            Backend::Aws => {
                let Some(endpoint) = aws_endpoint() else {
                    eprintln!("skipped: SLUICE_AWS_ENDPOINT is not set (the README's test command sets it)");
                    return None;
                };
                let sdk = aws_sdk_config(&endpoint).await;
                let clients = AwsClients {
                    dynamodb: aws_sdk_dynamodb::Client::new(&sdk),
                    sqs: aws_sdk_sqs::Client::new(&sdk),
                    kms: aws_sdk_kms::Client::new(&sdk),
                };
                Some(TestStack::start_on_aws(clients, config).await)
            }
        }
    }

    /// Starts a stack on DynamoDB + SQS through `clients` (which must reach the local AWS-API
    /// server, see [`aws_sdk_config`]), in a table and queues of its own, behaving as the
    /// Lambda functions do (see [`Backend::Aws`]).
    pub async fn start_on_aws(clients: AwsClients, config: StackConfig) -> TestStack {
        let unique = uuid::Uuid::new_v4().simple().to_string();
        let AwsClients { dynamodb: dynamo, sqs: sqs_client, kms } = clients;
        let key = kms.create_key().description("sluice e2e").send().await.expect("create a KMS key");
        let key_id = key.key_metadata().map(|m| m.key_id().to_string()).expect("a key id");
        let keys: Arc<dyn KeyWrap> = Arc::new(KmsKeyWrap::new(kms, key_id));
        let table = format!("sluice-e2e-{unique}");
        dynamodb::create_table(&dynamo, &table).await.expect("create table");
        let (steps_url, responses_url) =
            sqs::create_queues(&sqs_client, &format!("e2e-{unique}"), 5).await.expect("create queues");
        let resources =
            AwsResources { table: table.clone(), steps_url: steps_url.clone(), responses_url: responses_url.clone() };
        let store = Arc::new(DynamoStore::new(dynamo, table));
        let queue = Arc::new(SqsQueue::new(sqs_client, steps_url, responses_url));
        // On DynamoDB + SQS the stack behaves as the Lambda functions do: asynchronous starts
        // go to the queue, and an inline segment hands off once the caller is answered.
        TestStack::assemble((store, queue, None, None, keys), Host::Lambda, Some(resources), unique, config, None).await
    }

    async fn assemble(
        backends: Backends,
        host: Host,
        aws: Option<AwsResources>,
        unique: String,
        config: StackConfig,
        sweep: Option<Sweep>,
    ) -> TestStack {
        let (store, queue, starter, data_dir, keys) = backends;
        let response_timeout = config.response_timeout;
        let policy = OutboundPolicy { allow_loopback: true, allow_private: false };
        let settings = Settings {
            response_timeout,
            host,
            recovery_delay: config.recovery_delay,
            env: config.env.clone(),
            clock: config.clock.clone(),
            ..Settings::default()
        };
        let duplicating = config.duplicate_deliveries || config.duplicate_some.is_some();
        let queue: Arc<dyn Queue> = match config.duplicate_some {
            _ if config.duplicate_deliveries => Arc::new(DuplicatingQueue::always(queue)),
            Some((rate, seed)) => Arc::new(DuplicatingQueue::sometimes(queue, rate, seed)),
            None => queue,
        };
        let starter = match starter {
            Some(starter) if !duplicating => starter,
            _ => Arc::new(SendThenCreate { store: store.clone(), queue: queue.clone() }),
        };
        let runtime = Runtime::new(
            store.clone(),
            queue.clone(),
            starter,
            HttpClient::new(policy).expect("HTTP client"),
            settings,
        )
        .with_keys(keys);
        let options = StackOptions {
            addr: ([127, 0, 0, 1], 0).into(),
            workers: config.workers,
            demo_routes: false,
            limits: config.limits,
            sweep,
            visibility: config.visibility,
            scheduler_every: None,
        };
        let stack = LocalStack::start(runtime.clone(), queue, options).await.expect("start the local stack");

        let keys = auth::generate_signing_key().expect("signing key");
        let api_key = auth::generate_api_key();
        let project_id = format!("p-{}", &unique[..12]);
        let project = Project {
            id: project_id.clone(),
            signing_public_key_pem: keys.public_pem.clone(),
            api_key_sha256: auth::hash_api_key(&api_key),
            created_at: now(),
        };
        store.create_project(&project).await.expect("create project");
        TestStack {
            base_url: stack.base_url.clone(),
            project_id,
            api_key,
            store,
            runtime,
            private_pem: keys.private_pem,
            http: reqwest::Client::new(),
            _stack: stack,
            data_dir,
            aws,
        }
    }

    /// Deploys a workflow written as YAML (it must pass validation).
    pub async fn deploy(&self, yaml: &str) -> Deployment {
        let workflow = match load::load_str("test.yaml", yaml) {
            Ok(workflow) => workflow,
            Err(problems) => panic!("test workflow is invalid: {problems:#?}"),
        };
        self.store.deploy_workflow(&self.project_id, &workflow).await.expect("deploy")
    }

    /// Loads and deploys a project folder (integrations, settings, workflows) as `sluice
    /// deploy` does; it must pass validation.
    pub async fn deploy_project(&self, dir: &std::path::Path) -> Vec<Deployment> {
        let definition = sluice_cli::project::load(dir).expect("the test project is valid");
        let deployed = sluice_cli::project::deploy(self.store.as_ref(), &self.project_id, &definition).await;
        deployed.expect("deploy").into_iter().map(|(_, deployment)| deployment).collect()
    }

    pub fn token(&self, user_id: &str) -> String {
        auth::issue_user_token(&self.private_pem, user_id, Duration::from_secs(600)).expect("token")
    }

    pub fn trigger_url(&self, workflow_id: &str) -> String {
        format!("{}/projects/{}/sdk/triggers/{workflow_id}", self.base_url, self.project_id)
    }

    /// A POST to the trigger with a valid token for user `user-1`, ready to add to or send.
    pub fn trigger_request(&self, workflow_id: &str) -> reqwest::RequestBuilder {
        self.http.post(self.trigger_url(workflow_id)).bearer_auth(self.token("user-1"))
    }

    pub async fn trigger(&self, workflow_id: &str, body: Value) -> reqwest::Response {
        self.trigger_request(workflow_id).json(&body).send().await.expect("trigger request")
    }

    /// The project's signing key, to forge tokens the stack must refuse.
    pub fn private_pem(&self) -> &str {
        &self.private_pem
    }

    pub fn client(&self) -> &reqwest::Client {
        &self.http
    }

    /// The SQLite database file of a SQLite stack.
    pub fn sqlite_file(&self) -> Option<PathBuf> {
        self.data_dir.as_ref().map(|dir| dir.join("sluice.db"))
    }

    /// The execution record, through the API with the project API key.
    pub async fn execution(&self, execution_id: &str) -> Value {
        let url = format!("{}/projects/{}/executions/{execution_id}", self.base_url, self.project_id);
        let response = self.http.get(url).bearer_auth(&self.api_key).send().await.expect("execution request");
        assert_eq!(response.status(), 200, "GET execution");
        response.json().await.expect("execution JSON")
    }

    /// Waits until the execution has ended (polling its status in the store, which is cheap
    /// even for an execution of 10,000 steps), then returns its record through the API.
    pub async fn wait_until_ended(&self, execution_id: &str, within: Duration) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let execution = self.store.get_execution(execution_id).await.expect("get execution");
            if execution.as_ref().is_some_and(|e| e.status.is_ended()) {
                return self.execution(execution_id).await;
            }
            if Instant::now() >= deadline {
                let record = self.execution(execution_id).await;
                panic!("execution still running after {within:?}: {record:#}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for TestStack {
    fn drop(&mut self) {
        if let Some(dir) = &self.data_dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

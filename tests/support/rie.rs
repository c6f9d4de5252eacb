//! The workspace's Lambda binaries under the Lambda Runtime Interface Emulator (the
//! `aws-lambda-rie-x86_64` shipped in the aws-sam-cli wheel, path in `SLUICE_RIE`), so tests
//! drive them through the real Lambda runtime API, plus the uniquely named DynamoDB table and
//! SQS queues they use on the local AWS-API server.
//!
//! Invariants: nothing here builds anything (the test script runs `cargo build -p trigger -p
//! step-runner -p response-waiter -p scheduler` first); a function's environment is exactly what the test
//! passes (nothing inherited from the test process); dropping a [`Rie`] ends the emulator and
//! the function it started, and prints their output if the test is failing; [`Rie::kill`]
//! kills both at once, mid-invocation if need be.

use std::fs::File;
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use sluice_shared::adapters::dynamodb::{self, DynamoStore};
use sluice_shared::adapters::sqs;
use sluice_shared::runner::MAX_RECEIVES;

use crate::stack::{aws_endpoint, aws_sdk_config};

/// How long a function may take to start and answer one invocation.
const INVOKE_TIMEOUT: Duration = Duration::from_secs(120);
/// How long the emulator may take to listen.
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// The emulator binary from `SLUICE_RIE`, or None (the caller skips with a notice) unless
/// `SLUICE_REQUIRE_AWS=1`, in which case its absence fails the test.
pub fn emulator() -> Option<PathBuf> {
    match std::env::var_os("SLUICE_RIE") {
        Some(path) if !path.is_empty() => Some(PathBuf::from(path)),
        _ if std::env::var("SLUICE_REQUIRE_AWS").as_deref() == Ok("1") => panic!(
            "SLUICE_REQUIRE_AWS=1 but SLUICE_RIE is not set: point it at \
             .venv/lib/python3.11/site-packages/samcli/local/rapid/aws-lambda-rie-x86_64"
        ),
        _ => None,
    }
}

/// The emulator and the local AWS-API endpoint, or None after printing why the test skips.
pub fn emulator_and_endpoint() -> Option<(PathBuf, String)> {
    let Some(emulator) = emulator() else {
        eprintln!("skipped: SLUICE_RIE is not set (infra/test.sh sets it)");
        return None;
    };
    let Some(endpoint) = aws_endpoint() else {
        eprintln!("skipped: SLUICE_AWS_ENDPOINT is not set (infra/test.sh starts moto and sets it)");
        return None;
    };
    Some((emulator, endpoint))
}

/// The workspace's target folder: `CARGO_TARGET_DIR` (relative to the workspace) or `target/`.
pub fn target_dir() -> PathBuf {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the tests package is inside the workspace");
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => workspace.join(dir),
        _ => workspace.join("target"),
    }
}

/// A workspace binary as `cargo build -p <name>` leaves it (debug profile, in
/// [`target_dir`]).
pub fn lambda_binary(name: &str) -> PathBuf {
    let binary = target_dir().join("debug").join(name);
    assert!(
        binary.is_file(),
        "{} is missing: run `cargo build -p trigger -p step-runner -p response-waiter -p scheduler` first",
        binary.display()
    );
    binary
}

/// A DynamoDB table and the steps and responses queues (with dead-letter queues), uniquely
/// named, on the local AWS-API server.
pub struct AwsResources {
    pub endpoint: String,
    pub sdk: aws_config::SdkConfig,
    pub table: String,
    pub steps_url: String,
    pub responses_url: String,
}

impl AwsResources {
    pub async fn create(endpoint: &str) -> AwsResources {
        let unique = uuid::Uuid::new_v4().simple().to_string();
        let sdk = aws_sdk_config(endpoint).await;
        let table = format!("sluice-lambda-{unique}");
        dynamodb::create_table(&aws_sdk_dynamodb::Client::new(&sdk), &table).await.expect("create the table");
        let (steps_url, responses_url) =
            sqs::create_queues(&aws_sdk_sqs::Client::new(&sdk), &format!("lambda-{unique}"), MAX_RECEIVES)
                .await
                .expect("create the queues");
        AwsResources { endpoint: endpoint.to_string(), sdk, table, steps_url, responses_url }
    }

    /// The store the functions write to, for arranging and checking records.
    pub fn store(&self) -> DynamoStore {
        DynamoStore::new(aws_sdk_dynamodb::Client::new(&self.sdk), self.table.clone())
    }

    /// The environment of a deployed function, pointed at the local server: dummy
    /// credentials, a region, and every variable `template.yaml` sets.
    pub fn function_env(&self) -> Vec<(String, String)> {
        [
            ("AWS_ENDPOINT_URL", self.endpoint.as_str()),
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
            ("AWS_REGION", "us-east-1"),
            ("SLUICE_TABLE", self.table.as_str()),
            ("SLUICE_STEP_QUEUE_URL", self.steps_url.as_str()),
            ("SLUICE_RESPONSE_QUEUE_URL", self.responses_url.as_str()),
            ("SLUICE_RESPONSE_TIMEOUT_SECONDS", "55"),
            ("SLUICE_ALLOW_PRIVATE_NETWORK", "false"),
            ("SLUICE_RECOVERY_DELAY_SECONDS", "90"),
            // Set on the step runner only in the template; the others ignore it.
            ("SLUICE_STUCK_AFTER_SECONDS", "3600"),
            // Set on the consumers only in the template; the trigger ignores it.
            ("SLUICE_DEAD_LETTER_QUEUE_ARN", DEAD_LETTER_QUEUE_ARN),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }
}

/// The dead-letter queue ARN the consumer functions are told about: records with this
/// `eventSourceARN` are dead letters.
pub const DEAD_LETTER_QUEUE_ARN: &str = "arn:aws:sqs:us-east-1:000000000000:sluice-dead-letters";

/// What an invocation answered. The emulator answers a function error with 200 and an
/// `{"errorType":...}` body, and a function that died (e.g. at init) with a 5xx.
#[derive(Debug)]
pub struct Invocation {
    pub status: u16,
    pub body: String,
}

impl Invocation {
    /// The response payload as JSON; panics (failing the test) with the body otherwise.
    pub fn json(&self) -> Value {
        assert_eq!(self.status, 200, "invocation failed: {}", self.body);
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("the function answered non-JSON ({e}): {}", self.body))
    }
}

/// One Lambda binary running under the emulator on free local ports.
pub struct Rie {
    child: Child,
    invoke_url: String,
    log: PathBuf,
    http: reqwest::Client,
}

impl Rie {
    /// Starts `binary` under `emulator` with exactly `env` (plus `PATH` and the function
    /// metadata Lambda sets) and waits until the emulator listens.
    pub async fn start(emulator: &Path, binary: &Path, env: &[(String, String)]) -> Rie {
        let (invoke_port, runtime_port) = (free_port(), free_port());
        let name = binary.file_name().and_then(|n| n.to_str()).unwrap_or("function");
        let log = std::env::temp_dir().join(format!("sluice-rie-{name}-{}.log", uuid::Uuid::new_v4().simple()));
        let out = File::create(&log).expect("create the emulator log");
        let err = out.try_clone().expect("clone the log handle");
        let mut command = Command::new(emulator);
        command
            .arg("--runtime-interface-emulator-address")
            .arg(format!("127.0.0.1:{invoke_port}"))
            .arg("--runtime-api-address")
            .arg(format!("127.0.0.1:{runtime_port}"))
            .arg(binary)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("AWS_LAMBDA_FUNCTION_NAME", name)
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("RUST_LOG", "info")
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            // Its own process group, so the function it spawns ends with it.
            .process_group(0);
        let child = command.spawn().unwrap_or_else(|e| panic!("start {}: {e}", emulator.display()));
        let mut rie = Rie {
            child,
            invoke_url: format!("http://127.0.0.1:{invoke_port}/2015-03-31/functions/function/invocations"),
            log,
            http: reqwest::Client::new(),
        };
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", invoke_port)).is_err() {
            if let Ok(Some(status)) = rie.child.try_wait() {
                panic!("the emulator exited ({status}):\n{}", rie.output());
            }
            assert!(
                started.elapsed() < START_TIMEOUT,
                "the emulator did not listen within {START_TIMEOUT:?}:\n{}",
                rie.output()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        rie
    }

    /// Invokes the function with `event` and returns what the emulator answered.
    pub async fn invoke(&self, event: &Value) -> Invocation {
        self.try_invoke(event).await.unwrap_or_else(|e| panic!("invoke: {e}\n{}", self.output()))
    }

    /// Invokes the function with `event`; an error if the invocation got no answer (the
    /// emulator was killed meanwhile, say).
    pub async fn try_invoke(&self, event: &Value) -> Result<Invocation, reqwest::Error> {
        let response = self.http.post(&self.invoke_url).json(event).timeout(INVOKE_TIMEOUT).send().await?;
        let status = response.status().as_u16();
        let body = response.text().await?;
        Ok(Invocation { status, body })
    }

    /// Kills the emulator and the function it runs at once (SIGKILL to its process group), as
    /// a crash or an out-of-memory kill would: nothing gets to clean up.
    pub fn kill(&self) {
        let group = format!("-{}", self.child.id());
        let killed = Command::new("kill").args(["-KILL", "--", &group]).status().expect("run kill");
        assert!(killed.success(), "kill -KILL -- {group} failed");
    }

    /// Everything the emulator and the function printed so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Rie {
    fn drop(&mut self) {
        // SIGTERM to the group lets the emulator shut the function down; SIGKILL if it lingers.
        // Failures are ignored: the group may be gone already, which is the goal.
        let group = format!("-{}", self.child.id());
        let kill = |signal: &str| {
            let _ = Command::new("kill").args([signal, "--", &group]).stderr(Stdio::null()).status();
        };
        kill("-TERM");
        let deadline = Instant::now() + Duration::from_secs(2);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        kill("-KILL");
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- {} (emulator and function output) ---\n{}", self.log.display(), self.output());
        }
        let _ = std::fs::remove_file(&self.log);
    }
}

/// A port nothing listens on right now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("bind a free local port")
}

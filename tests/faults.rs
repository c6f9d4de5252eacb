//! The fault-injection suite: mixed workflows (synchronous, asynchronous, fan-outs small and
//! large, retries, delays, functions) against a third-party API that is slow, fails, times
//! out and answers 429 at random ([`ChaosApi`]), while faults are injected; then the
//! invariants are checked on the store and the figures printed.
//!
//! - `sluice dev` as a process (the debug binary; build it with `cargo build -p sluice-cli`):
//!   `kill -9` at random moments and a restart on the same data folder, clients that hang up
//!   right after sending, duplicated queue deliveries (queued messages copied in the database,
//!   as at-least-once delivery may), and the database locked by another process for up to
//!   longer than the server's busy timeout.
//! - The AWS adapters through the local AWS-API server, behind a proxy that answers with
//!   throttling errors and 503s and drops connections before or after forwarding
//!   ([`ChaosProxy`]); every message is also delivered twice.
//!
//! Invariants (each violation is listed; there must be none): every accepted execution ended
//! (failed ones with a reason) or is `waiting` on a Delay due later; no step attempt after a
//! step succeeded, attempts numbered without gaps; every fan-out's output has one result per
//! item, in order; every call of a step to the API carried that step's `Idempotency-Key`;
//! every execution record reads back through the API; answers that came back are right; the
//! server never died on its own.
//!
//! `FAULTS_SECONDS` (default 30; 600 for the long run) is how long load and faults last on
//! `sluice dev`, `FAULTS_AWS_SECONDS` (default 15) on the AWS adapters, and `FAULTS_SEED`
//! replays a run (the seed is printed first).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde_json::{Value, json};
use sluice_e2e::chaos::{ChaosApi, ChaosProxy, Tally};
use sluice_e2e::rie::target_dir;
use sluice_e2e::stack::{AwsClients, Backend, StackConfig, TestStack, aws_endpoint, aws_sdk_config};
use sluice_shared::adapters::dynamodb::DynamoStore;
use sluice_shared::model::load;
use sluice_shared::ports::ExecutionStore;
use sluice_shared::record::{ExecutionStatus, StepStatus, now};
use tokio::io::AsyncWriteExt;

/// Synchronous callers wait this long for a Response step (then 542).
const RESPONSE_TIMEOUT: &str = "4s";
/// Longer than the response timeout plus the slowest step (a request step's 1500 ms).
const RECOVERY_DELAY: &str = "8s";
/// The longest the suite waits, after the load, for the executions to settle.
const DRAIN_LIMIT: Duration = Duration::from_secs(15 * 60);
/// An unsettled execution with nothing new recorded for this long is stuck: more than twice
/// the AWS half's visibility (6 s) plus the longest retry delay of the workflows (the
/// chaos API's `Retry-After`, a few seconds), with room for a local AWS-API server that
/// serves one request at a time.
const QUIET_LIMIT: Duration = Duration::from_secs(90);

/// The workflows, calling the chaos API at `chaos`.
fn workflows(chaos: &str) -> Vec<(&'static str, String)> {
    let call = |step: &str| {
        format!(
            "type: request\n    url: \"{chaos}/chaos/{{{{execution.id}}}}/{step}\"\n    timeout: 1500ms\n    retries: 5\n    retry_delay: 200ms"
        )
    };
    vec![
        (
            "f-sync",
            format!(
                r#"id: f-sync
trigger: {{ type: request }}
steps:
  - id: square
    type: function
    code: "(p) => p.n * p.n"
    parameters: {{ n: "{{{{trigger.body.n}}}}" }}
  - id: call
    {call}
  - id: size
    type: conditional
    when: {{ left: "{{{{steps.square.output}}}}", op: greater_than, right: 100 }}
    then:
      - {{ id: big, type: response, body: {{ square: "{{{{steps.square.output}}}}", big: true }} }}
    else:
      - {{ id: small, type: response, body: {{ square: "{{{{steps.square.output}}}}", big: false }} }}
"#,
                call = call("call")
            ),
        ),
        (
            "f-async",
            format!(
                r#"id: f-async
trigger: {{ type: request }}
steps:
  - id: first
    {first}
  - id: compute
    type: function
    code: "(p) => p.n + 1"
    parameters: {{ n: "{{{{trigger.body.n}}}}" }}
  - id: second
    {second}
"#,
                first = call("first"),
                second = call("second")
            ),
        ),
        (
            "f-fanout",
            format!(
                r#"id: f-fanout
trigger: {{ type: request }}
steps:
  - id: each
    type: fan_out
    over: "{{{{trigger.body.items}}}}"
    concurrency: 4
    steps:
      - id: call
        type: request
        url: "{chaos}/chaos/{{{{execution.id}}}}/call-{{{{index}}}}"
        timeout: 1500ms
        retries: 5
        retry_delay: 200ms
      - id: double
        type: function
        code: "(p) => p.n * 2"
        parameters: {{ n: "{{{{item}}}}" }}
  - id: total
    type: function
    code: "(p) => p.results.reduce((sum, n) => sum + n, 0)"
    parameters: {{ results: "{{{{steps.each.output}}}}" }}
  - id: reply
    type: response
    body: {{ total: "{{{{steps.total.output}}}}" }}
"#
            ),
        ),
        (
            "f-wide",
            r#"id: f-wide
trigger: { type: request }
steps:
  - id: each
    type: fan_out
    over: "{{trigger.body.items}}"
    concurrency: 20
    steps:
      - id: double
        type: function
        code: "(p) => p.n * 2"
        parameters: { n: "{{item}}" }
"#
            .to_string(),
        ),
        (
            "f-delay",
            format!(
                r#"id: f-delay
trigger: {{ type: request }}
steps:
  - id: first
    {first}
  - id: nap
    type: delay
    for: 1s
  - id: after
    {after}
"#,
                first = call("first"),
                after = call("after")
            ),
        ),
        (
            "f-wait",
            r#"id: f-wait
trigger: { type: request }
steps:
  - id: nap
    type: delay
    for: 1h
  - id: later
    type: function
    code: "() => 1"
"#
            .to_string(),
        ),
        (
            // The scheduler ticks on the process's clock through every crash and lock: each
            // 2-second instant must start once ([`check_schedule`]).
            "f-tick",
            r#"id: f-tick
trigger: { type: schedule, every: 2s, overlap: allow }
steps:
  - id: at
    type: function
    code: "(p) => p.at"
    parameters: { at: "{{trigger.body.scheduledAt}}" }
"#
            .to_string(),
        ),
    ]
}

/// The scheduled workflow's executions: no instant started twice, and none missing between
/// the first and the last (a restart comes back well within the scheduler's grace, so every
/// instant missed while the process was dead is caught up, once).
fn check_schedule(executions: &[Seen], figures: &mut Figures) -> usize {
    // Per user: `sluice dev` records its own `dev-user` at start, and the load's user appears
    // with its first request; each has its own fires.
    let mut instants: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
    for e in executions.iter().filter(|e| e.workflow_id == "f-tick") {
        let at = e.body["scheduledAt"].as_str().and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok());
        match at {
            Some(at) => instants.entry(e.user_id.as_str()).or_default().push(at.timestamp_millis()),
            None => figures.violations.push(format!("scheduled execution {} has no scheduledAt: {}", e.id, e.body)),
        }
    }
    let mut fires = 0;
    for (user, instants) in &mut instants {
        instants.sort_unstable();
        fires = fires.max(instants.len());
        for pair in instants.windows(2) {
            match pair[1] - pair[0] {
                0 => figures.violations.push(format!("{user}'s fire at {} ms started twice", pair[0])),
                2000 => {}
                gap => {
                    figures.violations.push(format!("{user}: {} fire(s) missing after {} ms", gap / 2000 - 1, pair[0]))
                }
            }
        }
    }
    fires
}

/// What the load sends: a workflow and its body, chosen at random.
fn pick(rng: &mut StdRng) -> (&'static str, Value) {
    let n = rng.random_range(1..30);
    match rng.random_range(0..100) {
        0..30 => ("f-sync", json!({ "n": n })),
        30..55 => ("f-async", json!({ "n": n })),
        55..75 => {
            let items: Vec<u32> = (0..rng.random_range(1..10)).map(|_| rng.random_range(0..1000)).collect();
            ("f-fanout", json!({ "items": items }))
        }
        75..80 => {
            // More than the inline threshold (100): the branches go through the queue.
            let items: Vec<u32> = (0..rng.random_range(101..130)).collect();
            ("f-wide", json!({ "items": items }))
        }
        80..97 => ("f-delay", json!({ "n": n })),
        _ => ("f-wait", json!({})),
    }
}

/// Everything the suite counts, printed at the end.
#[derive(Default)]
struct Figures {
    answers: BTreeMap<String, u64>,
    /// The executions the answers named.
    accepted: BTreeSet<String>,
    faults: Tally,
    violations: Vec<String>,
}

impl Figures {
    fn fault(&mut self, kind: &'static str, n: u64) {
        *self.faults.entry(kind).or_default() += n;
    }
}

type Shared = Arc<Mutex<Figures>>;

/// Where the load goes.
#[derive(Clone)]
struct Target {
    base_url: String,
    project_id: String,
    token: String,
}

/// Sends one trigger request and checks what came back.
async fn send(http: &reqwest::Client, target: &Target, workflow: &str, body: &Value, figures: &Shared) {
    let url = format!("{}/projects/{}/sdk/triggers/{workflow}", target.base_url, target.project_id);
    let sent = http.post(url).bearer_auth(&target.token).json(body).timeout(Duration::from_secs(20)).send().await;
    let answer = match sent {
        Ok(response) => {
            let status = response.status().as_u16();
            let header = response.headers().get("x-sluice-execution-id").and_then(|v| v.to_str().ok());
            let header = header.map(str::to_string);
            let text = response.text().await.unwrap_or_default();
            let parsed: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            let id = header.or_else(|| parsed["executionId"].as_str().map(str::to_string));
            if let Some(id) = id {
                figures.lock().expect("figures").accepted.insert(id);
            }
            if status == 200 {
                let wrong = match workflow {
                    "f-sync" => {
                        let n = body["n"].as_i64().unwrap_or_default();
                        parsed["square"] != json!(n * n) || parsed["big"] != json!(n * n > 100)
                    }
                    "f-fanout" => {
                        let sum: i64 = body["items"].as_array().into_iter().flatten().filter_map(Value::as_i64).sum();
                        parsed["total"] != json!(sum * 2)
                    }
                    _ => false,
                };
                if wrong {
                    figures.lock().expect("figures").violations.push(format!("{workflow} {body} answered {text}"));
                }
            }
            // 500: the execution failed; 503: the database stayed locked past the busy timeout.
            if ![200, 202, 500, 503, 542].contains(&status) {
                figures.lock().expect("figures").violations.push(format!("{workflow} answered {status}: {text}"));
            }
            if status == 500 && parsed["error"]["code"] == "internal" {
                eprintln!("{workflow} answered 500: {text}");
            }
            match parsed["error"]["code"].as_str() {
                Some(code) => format!("{workflow} {status} {code}"),
                None => format!("{workflow} {status}"),
            }
        }
        Err(error) if error.is_timeout() => format!("{workflow} client timeout"),
        Err(_) => "no connection (server down)".to_string(),
    };
    *figures.lock().expect("figures").answers.entry(answer).or_default() += 1;
}

/// A client that sends a whole trigger request and hangs up without reading the answer.
async fn hang_up(target: &Target, body: &Value) -> bool {
    let Some(authority) = target.base_url.strip_prefix("http://") else { return false };
    let Ok(mut stream) = tokio::net::TcpStream::connect(authority).await else { return false };
    let body = body.to_string();
    let request = format!(
        "POST /projects/{}/sdk/triggers/f-async HTTP/1.1\r\nhost: {authority}\r\nauthorization: Bearer {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        target.project_id,
        target.token,
        body.len()
    );
    stream.write_all(request.as_bytes()).await.is_ok()
}

/// `clients` tasks sending requests back to back (and hanging up now and then) until `until`.
async fn load(target: Target, seed: u64, clients: u64, until: Instant, figures: Shared) {
    let http = reqwest::Client::new();
    let tasks: Vec<_> = (0..clients)
        .map(|client| {
            let (http, target, figures) = (http.clone(), target.clone(), figures.clone());
            tokio::spawn(async move {
                let mut rng = StdRng::seed_from_u64(seed ^ (client + 1).wrapping_mul(0x9E37_79B9));
                while Instant::now() < until {
                    let (workflow, body) = pick(&mut rng);
                    if rng.random_bool(0.05) {
                        if hang_up(&target, &json!({ "n": 1 })).await {
                            figures.lock().expect("figures").fault("client hung up after sending", 1);
                        }
                    } else {
                        send(&http, &target, workflow, &body, &figures).await;
                    }
                    tokio::time::sleep(Duration::from_millis(rng.random_range(10..120))).await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("a load client");
    }
}

/// One execution as the invariants see it.
#[derive(Clone)]
struct Seen {
    id: String,
    workflow_id: String,
    user_id: String,
    status: ExecutionStatus,
    error: Option<String>,
    body: Value,
    /// (step key, attempt, succeeded, output)
    attempts: Vec<(String, u32, bool, Option<Value>)>,
}

impl Seen {
    /// Ended, or waiting on a Delay due later.
    fn settled(&self, now: sluice_shared::record::Timestamp) -> bool {
        match self.status {
            ExecutionStatus::Succeeded | ExecutionStatus::Failed | ExecutionStatus::Cancelled => true,
            ExecutionStatus::Running => false,
            ExecutionStatus::Waiting => self.attempts.iter().any(|(_, _, _, output)| {
                output
                    .as_ref()
                    .and_then(|o| o["waitedUntil"].as_str())
                    .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                    .is_some_and(|t| t > now)
            }),
        }
    }
}

/// The invariants over every execution; violations go to `figures`.
fn check(executions: &[Seen], calls: &[sluice_e2e::chaos::Call], figures: &mut Figures) {
    let now = now();
    let mut recorded: HashMap<String, u32> = HashMap::new();
    for e in executions {
        let violation = |what: String| format!("execution {} ({}): {what}", e.id, e.workflow_id);
        let mut v = Vec::new();
        match e.status {
            ExecutionStatus::Succeeded => {}
            ExecutionStatus::Cancelled => v.push(violation("cancelled, but nothing cancels in this suite".into())),
            ExecutionStatus::Failed => {
                if e.error.as_deref().is_none_or(str::is_empty) {
                    v.push(violation("failed without a reason".into()));
                }
            }
            ExecutionStatus::Waiting | ExecutionStatus::Running => {
                if !e.settled(now) {
                    let steps: BTreeSet<&str> = e.attempts.iter().map(|(step, ..)| step.as_str()).collect();
                    let succeeded = e.attempts.iter().filter(|(_, _, ok, _)| *ok).count();
                    v.push(violation(format!(
                        "still {} with nothing due ({} attempts of {} step keys recorded, {succeeded} succeeded; items {})",
                        e.status.as_str(),
                        e.attempts.len(),
                        steps.len(),
                        e.body["items"].as_array().map_or(0, Vec::len)
                    )));
                }
            }
        }
        let mut by_step: BTreeMap<&str, Vec<(u32, bool)>> = BTreeMap::new();
        for (step, attempt, succeeded, _) in &e.attempts {
            by_step.entry(step).or_default().push((*attempt, *succeeded));
            *recorded.entry(format!("{}:{step}", e.id)).or_default() += 1;
        }
        for (step, mut attempts) in by_step {
            attempts.sort();
            let numbers: Vec<u32> = attempts.iter().map(|(n, _)| *n).collect();
            if numbers != (1..=numbers.len() as u32).collect::<Vec<_>>() {
                v.push(violation(format!("step {step} attempts {numbers:?}")));
            }
            if attempts.iter().rev().skip(1).any(|(_, succeeded)| *succeeded) {
                v.push(violation(format!("step {step} ran again after it succeeded: {attempts:?}")));
            }
        }
        if e.status == ExecutionStatus::Succeeded && (e.workflow_id == "f-fanout" || e.workflow_id == "f-wide") {
            let expected: Vec<Value> =
                e.body["items"].as_array().into_iter().flatten().map(|n| json!(n.as_i64().unwrap_or(-1) * 2)).collect();
            let output = e.attempts.iter().find(|(step, ..)| step == "each").and_then(|(.., output)| output.clone());
            if output != Some(Value::Array(expected)) {
                v.push(violation(format!("fan-out output {output:?} is not one result per item")));
            }
        }
        figures.violations.extend(v);
    }
    // Every call carried its step's key: `<execution>:<step key>`, the branch index after `@`.
    let mut per_key: HashMap<String, u32> = HashMap::new();
    for call in calls {
        let step = match call.step.split_once('-') {
            Some((step, index)) => format!("{step}@{index}"),
            None => call.step.clone(),
        };
        let expected = format!("{}:{step}", call.execution);
        if call.idempotency_key.as_deref() != Some(expected.as_str()) {
            figures.violations.push(format!("a call for {expected} carried key {:?}", call.idempotency_key));
        }
        *per_key.entry(expected).or_default() += 1;
    }
    // Calls beyond the recorded attempts: a step that ran again after a crash or a duplicate
    // delivery before its attempt was recorded (what the Idempotency-Key is for).
    let duplicates: u32 =
        per_key.iter().map(|(key, calls)| calls.saturating_sub(recorded.get(key).copied().unwrap_or(0))).sum();
    figures.fault("(observed) calls beyond recorded attempts at the API", u64::from(duplicates));
}

/// Prints the figures, and writes them to `target/fault-figures-<file>.txt`, which the test
/// command prints at its end (cargo keeps a passing test's output to itself).
fn print_figures(title: &str, file: &str, seed: u64, figures: &Figures, executions: &[Seen], chaos: &Tally) {
    use std::fmt::Write as _;
    let mut ended: BTreeMap<String, u64> = BTreeMap::new();
    for e in executions {
        *ended.entry(format!("{} {}", e.workflow_id, e.status.as_str())).or_default() += 1;
    }
    let mut out = String::new();
    let _ = writeln!(out, "=== {title} (seed {seed}) ===");
    let _ = writeln!(out, "executions accepted (in the store): {}", executions.len());
    let _ = writeln!(out, "answers: {:#?}", figures.answers);
    let _ = writeln!(out, "faults injected: {:#?}", figures.faults);
    let _ = writeln!(out, "chaos API outcomes: {chaos:#?}");
    let _ = writeln!(out, "ended by status: {ended:#?}");
    let _ = writeln!(out, "invariant violations: {}", figures.violations.len());
    for e in executions.iter().filter(|e| e.status == ExecutionStatus::Failed).take(5) {
        let attempts: Vec<String> =
            e.attempts.iter().map(|(step, n, ok, _)| format!("{step}#{n}{}", if *ok { "" } else { "!" })).collect();
        let reason = e.error.as_deref().unwrap_or("");
        let _ = writeln!(out, "  e.g. failed {} ({}): {reason} {attempts:?}", e.id, e.workflow_id);
    }
    for violation in figures.violations.iter().take(50) {
        let _ = writeln!(out, "  {violation}");
    }
    eprintln!("\n{out}");
    let _ = fs::write(target_dir().join(format!("fault-figures-{file}.txt")), out);
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn seed() -> u64 {
    std::env::var("FAULTS_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or_else(rand::random)
}

// ---------------------------------------------------------------------------------------
// `sluice dev` as a process

/// The `sluice` debug binary.
fn sluice_binary() -> PathBuf {
    let binary = target_dir().join("debug").join("sluice");
    assert!(binary.is_file(), "{} is missing: run `cargo build -p sluice-cli` first", binary.display());
    binary
}

/// A `sluice dev` process that can be killed and started again on the same data folder.
struct Dev {
    dir: PathBuf,
    port: u16,
    child: Option<Child>,
    starts: u32,
}

impl Dev {
    fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    async fn start(&mut self) {
        for _ in 0..20 {
            self.starts += 1;
            let log = fs::File::create(self.dir.join(format!("dev-{}.log", self.starts))).expect("a log file");
            let child = Command::new(sluice_binary())
                .args(["dev", "--port", &self.port.to_string(), "--workers", "2"])
                .args(["--response-timeout", RESPONSE_TIMEOUT, "--recovery-delay", RECOVERY_DELAY])
                .arg("--data-dir")
                .arg(self.data_dir())
                .arg("--workflows")
                .arg(self.dir.join("workflows"))
                .env("RUST_LOG", "warn")
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("log handle"))
                .stderr(log)
                .spawn()
                .expect("start sluice dev");
            self.child = Some(child);
            let begun = Instant::now();
            while begun.elapsed() < Duration::from_secs(60) {
                if self.exited().is_some() {
                    break;
                }
                let health = reqwest::get(format!("http://127.0.0.1:{}/health", self.port)).await;
                if health.is_ok_and(|r| r.status() == 200) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            // The port may still be held by the killed process's last connections: again.
            self.kill();
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        panic!("sluice dev did not start; see the logs in {}", self.dir.display());
    }

    /// The exit status, if the process ended.
    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.as_mut().and_then(|child| child.try_wait().expect("child status"))
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill(); // SIGKILL
            let _ = child.wait();
        }
    }

    fn project(&self) -> (String, String) {
        let text = fs::read_to_string(self.data_dir().join("dev-project.json")).expect("dev-project.json");
        let project: Value = serde_json::from_str(&text).expect("JSON");
        (project["projectId"].as_str().expect("projectId").into(), project["apiKey"].as_str().expect("apiKey").into())
    }

    fn token(&self) -> String {
        let output = Command::new(sluice_binary())
            .args(["token", "--user", "chaos", "--data-dir"])
            .arg(self.data_dir())
            .output()
            .expect("sluice token");
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout).expect("UTF-8").trim().to_string()
    }

    fn db(&self) -> rusqlite::Connection {
        let db = rusqlite::Connection::open(self.data_dir().join("sluice.db")).expect("open sluice.db");
        db.busy_timeout(Duration::from_secs(30)).expect("busy timeout");
        db
    }
}

impl Drop for Dev {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Every execution in the database, with its attempts.
fn read_sqlite(db: &rusqlite::Connection) -> Vec<Seen> {
    let mut executions: Vec<Seen> = db
        .prepare("SELECT id, workflow_id, status, error, trigger, user_id FROM executions ORDER BY started_at_ms")
        .expect("prepare")
        .query_map([], |row| {
            let status: String = row.get(2)?;
            let error: Option<String> = row.get(3)?;
            let trigger: String = row.get(4)?;
            Ok(Seen {
                id: row.get(0)?,
                workflow_id: row.get(1)?,
                user_id: row.get(5)?,
                status: match status.as_str() {
                    "succeeded" => ExecutionStatus::Succeeded,
                    "failed" => ExecutionStatus::Failed,
                    "waiting" => ExecutionStatus::Waiting,
                    _ => ExecutionStatus::Running,
                },
                error: error.map(|e| serde_json::from_str::<Value>(&e).map_or(e, |v| v["message"].to_string())),
                body: serde_json::from_str::<Value>(&trigger).map(|t| t["body"].clone()).unwrap_or(Value::Null),
                attempts: Vec::new(),
            })
        })
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    let index: HashMap<String, usize> = executions.iter().enumerate().map(|(i, e)| (e.id.clone(), i)).collect();
    let mut statement =
        db.prepare("SELECT execution_id, step, attempt, status, output FROM step_attempts").expect("prepare");
    let rows = statement
        .query_map([], |row| {
            let (id, step, attempt, status, output): (String, String, u32, String, Option<String>) =
                (row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?);
            Ok((id, step, attempt, status == "succeeded", output.and_then(|o| serde_json::from_str(&o).ok())))
        })
        .expect("query");
    for row in rows {
        let (id, step, attempt, succeeded, output) = row.expect("row");
        if let Some(&i) = index.get(&id) {
            executions[i].attempts.push((step, attempt, succeeded, output));
        }
    }
    executions
}

/// The wait after the load for every execution to settle (ended, or waiting on a Delay due
/// later). An execution that has not is stuck — the issue's definition — only once nothing
/// new was recorded for it for [`QUIET_LIMIT`]: one still making progress (a wide fan-out
/// behind a slow local server) is waited for, up to [`DRAIN_LIMIT`] in all.
struct Drain {
    started: Instant,
    /// Per unsettled execution: what was recorded when last seen, and since when.
    seen: HashMap<String, ((ExecutionStatus, usize), Instant)>,
}

impl Drain {
    fn new() -> Drain {
        Drain { started: Instant::now(), seen: HashMap::new() }
    }

    /// Whether to stop waiting: every execution settled, every unsettled one quiet for
    /// [`QUIET_LIMIT`], or [`DRAIN_LIMIT`] reached. Prints the unsettled ones every 10 s.
    fn over(&mut self, executions: &[Seen]) -> bool {
        let now = now();
        let mut quiet = Duration::MAX;
        let mut unsettled = 0;
        for e in executions.iter().filter(|e| !e.settled(now)) {
            unsettled += 1;
            let progress = (e.status, e.attempts.len());
            let entry = self.seen.entry(e.id.clone()).or_insert((progress, Instant::now()));
            if entry.0 != progress {
                *entry = (progress, Instant::now());
            }
            quiet = quiet.min(entry.1.elapsed());
        }
        let elapsed = self.started.elapsed();
        if unsettled > 0 && elapsed.as_millis() % 10_000 < 500 {
            eprintln!("after {elapsed:?}, {unsettled} not settled; the latest progress {quiet:?} ago");
        }
        unsettled == 0 || quiet > QUIET_LIMIT || elapsed > DRAIN_LIMIT
    }
}

/// Faults on the running `sluice dev` until `until`.
async fn inject(dev: Arc<tokio::sync::Mutex<Dev>>, seed: u64, until: Instant, figures: Shared) {
    let mut rng = StdRng::seed_from_u64(seed ^ 0xFA17);
    while Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(rng.random_range(1500..5000))).await;
        let mut dev = dev.lock().await;
        if let Some(status) = dev.exited() {
            figures.lock().expect("figures").violations.push(format!("sluice dev died on its own: {status}"));
            dev.start().await;
            continue;
        }
        match rng.random_range(0..100) {
            0..35 => {
                dev.kill();
                tokio::time::sleep(Duration::from_millis(rng.random_range(0..1000))).await;
                dev.start().await;
                figures.lock().expect("figures").fault("kill -9 and restart", 1);
            }
            35..65 => {
                // Held longer than the server's 5 s busy timeout one time in five.
                let hold = Duration::from_millis(if rng.random_bool(0.2) { 6500 } else { rng.random_range(100..3000) });
                let db = dev.db();
                drop(dev);
                tokio::task::spawn_blocking(move || {
                    db.execute_batch("BEGIN IMMEDIATE").expect("lock the database");
                    std::thread::sleep(hold);
                    db.execute_batch("ROLLBACK").expect("unlock");
                })
                .await
                .expect("lock task");
                let kind =
                    if hold > Duration::from_secs(5) { "database locked > busy timeout" } else { "database locked" };
                figures.lock().expect("figures").fault(kind, 1);
            }
            _ => {
                let copies = rng.random_range(1..6);
                let db = dev.db();
                let copied = db
                    .execute(
                        "INSERT INTO messages (queue, body, visible_at_ms, receive_count, sent_at_ms)
                         SELECT queue, body, visible_at_ms, 0, sent_at_ms FROM messages ORDER BY random() LIMIT ?1",
                        [copies],
                    )
                    .expect("duplicate messages");
                figures.lock().expect("figures").fault("queue message delivered twice", copied as u64);
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sluice_dev_under_crashes_locks_duplicates_and_hang_ups_loses_and_sticks_nothing() {
    let seed = seed();
    eprintln!("fault-injection seed {seed} (FAULTS_SEED={seed} replays it)");
    let seconds = env_u64("FAULTS_SECONDS", 30);
    let chaos = ChaosApi::start(seed).await;
    let dir = std::env::temp_dir().join(format!("sluice-faults-{}", uuid::Uuid::new_v4().simple()));
    fs::create_dir_all(dir.join("workflows")).expect("workflows folder");
    for (id, yaml) in workflows(&chaos.base_url) {
        fs::write(dir.join("workflows").join(format!("{id}.yaml")), yaml).expect("write a workflow");
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("free port").local_addr().expect("port").port();
    let mut dev = Dev { dir: dir.clone(), port, child: None, starts: 0 };
    dev.start().await;
    let (project_id, api_key) = dev.project();
    let target = Target { base_url: format!("http://127.0.0.1:{port}"), project_id, token: dev.token() };
    let dev = Arc::new(tokio::sync::Mutex::new(dev));
    let figures: Shared = Arc::default();

    let until = Instant::now() + Duration::from_secs(seconds);
    tokio::join!(
        load(target.clone(), seed, 3, until, figures.clone()),
        inject(dev.clone(), seed, until, figures.clone())
    );

    // Settle: nothing more is injected; the server stays up.
    let mut drain = Drain::new();
    let executions = loop {
        let mut dev = dev.lock().await;
        if let Some(status) = dev.exited() {
            figures.lock().expect("figures").violations.push(format!("sluice dev died on its own: {status}"));
            dev.start().await;
        }
        let executions = read_sqlite(&dev.db());
        if drain.over(&executions) {
            break executions;
        }
        drop(dev);
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    eprintln!("drained {:?} after the load", drain.started.elapsed());
    let mut figures = Arc::try_unwrap(figures).ok().expect("no other owner").into_inner().expect("figures");
    check(&executions, &chaos.calls(), &mut figures);
    let fires = check_schedule(&executions, &mut figures);
    eprintln!("scheduled fires (the most of one user): {fires}, each instant once per user, none missing");
    if fires < 5 {
        figures.violations.push(format!("the 2-second schedule fired only {fires} times"));
    }
    // Every record reads back.
    let http = reqwest::Client::new();
    for e in &executions {
        let url = format!("{}/projects/{}/executions/{}", target.base_url, target.project_id, e.id);
        let readable = match http.get(url).bearer_auth(&api_key).send().await {
            Ok(response) if response.status() == 200 => response.json::<Value>().await.is_ok(),
            _ => false,
        };
        if !readable {
            figures.violations.push(format!("execution {}: the record does not read back", e.id));
        }
    }
    if let Some(status) = dev.lock().await.exited() {
        figures.violations.push(format!("sluice dev died on its own: {status}"));
    }
    print_figures("sluice dev under faults", "sluice-dev", seed, &figures, &executions, &chaos.outcomes());
    assert!(executions.len() > 20, "too few executions to mean anything: {}", executions.len());
    assert!(figures.violations.is_empty(), "{} invariant violations (seed {seed})", figures.violations.len());
    let _ = fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------------------------------
// The AWS adapters behind a faulty proxy

/// The dead-letter queues' event sources of `template.yaml`: their messages go to the step
/// runner's and the response waiter's dead-letter handlers (the in-process stack has none).
struct DeadLetters {
    sqs: aws_sdk_sqs::Client,
    steps: String,
    responses: String,
    runner: sluice_shared::runner::Runner,
    waiter: sluice_shared::waiter::Waiter,
}

impl DeadLetters {
    fn new(sdk: &aws_config::SdkConfig, steps_url: &str, responses_url: &str, stack: &TestStack) -> DeadLetters {
        DeadLetters {
            sqs: aws_sdk_sqs::Client::new(sdk),
            steps: format!("{steps_url}-dlq"),
            responses: format!("{responses_url}-dlq"),
            runner: sluice_shared::runner::Runner::new(stack.runtime.clone()),
            waiter: sluice_shared::waiter::Waiter::new(stack.runtime.clone()),
        }
    }

    /// Hands every dead letter there is now to its handler; returns how many.
    async fn hand_over(&self) -> u64 {
        let mut handed = 0;
        for (url, steps) in [(&self.steps, true), (&self.responses, false)] {
            let received = self.sqs.receive_message().queue_url(url).max_number_of_messages(10).send().await;
            for message in received.ok().and_then(|r| r.messages).unwrap_or_default() {
                let body = message.body.unwrap_or_default();
                let handled =
                    if steps { self.runner.dead_lettered(&body).await } else { self.waiter.dead_lettered(&body).await };
                if handled.is_ok()
                    && let Some(receipt) = message.receipt_handle
                {
                    let _ = self.sqs.delete_message().queue_url(url).receipt_handle(receipt).send().await;
                    handed += 1;
                }
            }
        }
        handed
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_adapters_under_throttling_and_dropped_connections_lose_and_stick_nothing() {
    let Some(endpoint) = aws_endpoint() else {
        eprintln!("skipped: SLUICE_AWS_ENDPOINT is not set (the README's test command sets it)");
        return;
    };
    // The in-process stack's errors, with the figures.
    let _ = tracing_subscriber::fmt().with_max_level(tracing_subscriber::filter::LevelFilter::ERROR).try_init();
    let seed = seed();
    eprintln!("fault-injection seed {seed} (FAULTS_SEED={seed} replays it)");
    let seconds = env_u64("FAULTS_AWS_SECONDS", 15);
    let chaos = ChaosApi::start(seed).await;
    let rate = std::env::var("FAULTS_AWS_RATE").ok().and_then(|v| v.parse().ok()).unwrap_or(0.05);
    let proxy = ChaosProxy::start(&endpoint, seed, rate).await;
    let sdk = aws_sdk_config(&proxy.endpoint).await;
    let clients = AwsClients {
        dynamodb: aws_sdk_dynamodb::Client::new(&sdk),
        sqs: aws_sdk_sqs::Client::new(&sdk),
        kms: aws_sdk_kms::Client::new(&sdk),
    };
    let config = StackConfig {
        response_timeout: Duration::from_secs(4),
        recovery_delay: Duration::from_secs(8),
        // One message in twenty is delivered twice (concurrently, as SQS may).
        duplicate_some: Some((0.05, seed)),
        workers: 2,
        // A receive whose answer the proxy drops hides its messages this long (as on SQS).
        visibility: Duration::from_secs(6),
        ..StackConfig::default()
    };
    let stack = TestStack::start_on_aws(clients, config).await;
    for (id, yaml) in workflows(&chaos.base_url) {
        let workflow = load::load_str(&format!("{id}.yaml"), &yaml).expect("a valid workflow");
        stack.store.deploy_workflow(&stack.project_id, &workflow).await.expect("deploy");
    }
    // What the invariants read, past the proxy.
    let direct = aws_sdk_config(&endpoint).await;
    let resources = stack.aws.clone().expect("AWS resources");
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&direct), resources.table);
    let target =
        Target { base_url: stack.base_url.clone(), project_id: stack.project_id.clone(), token: stack.token("chaos") };
    let figures: Shared = Arc::default();

    proxy.enable(true);
    load(target.clone(), seed, 2, Instant::now() + Duration::from_secs(seconds), figures.clone()).await;
    proxy.enable(false);

    // Every execution that has not ended is in the sweep's index; the others are found
    // through the step keys the API saw and the answers' ids.
    let far = now() + chrono::Duration::days(7);
    let mut ids: BTreeSet<String> = chaos.calls().into_iter().map(|call| call.execution).collect();
    ids.extend(figures.lock().expect("figures").accepted.iter().cloned());
    let mut drain = Drain::new();
    let dead_letters = DeadLetters::new(&direct, &resources.steps_url, &resources.responses_url, &stack);
    ids.extend(store.due_for_sweep(&far, 100_000).await.expect("the unfinished index"));
    let mut ended: HashMap<String, Seen> = HashMap::new();
    let executions = loop {
        let handed = dead_letters.hand_over().await;
        figures.lock().expect("figures").fault("(observed) dead letters, handed to the DLQ handlers", handed);
        let mut executions = Vec::new();
        // Ended executions do not change: read again only the others (moto serves one
        // request at a time, and the stack must not wait behind the suite's reads).
        for id in &ids {
            if let Some(seen) = ended.get(id) {
                executions.push(seen.clone());
                continue;
            }
            let Some(execution) = store.get_execution(id).await.expect("get") else { continue };
            let attempts = store.list_steps(id).await.expect("steps");
            let seen = Seen {
                id: id.clone(),
                workflow_id: execution.workflow_id.clone(),
                user_id: execution.user_id.clone(),
                status: execution.status,
                error: execution.error.map(|e| e.message),
                body: execution.trigger.body.clone(),
                attempts: attempts
                    .into_iter()
                    .map(|a| (a.step, a.attempt, a.status == StepStatus::Succeeded, a.output))
                    .collect(),
            };
            if seen.status.is_ended() {
                ended.insert(id.clone(), seen.clone());
            }
            executions.push(seen);
        }
        if drain.over(&executions) {
            break executions;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    };
    eprintln!("drained {:?} after the load", drain.started.elapsed());
    let mut figures = Arc::try_unwrap(figures).ok().expect("no other owner").into_inner().expect("figures");
    for (kind, n) in proxy.faults() {
        figures.fault(kind, n);
    }
    check(&executions, &chaos.calls(), &mut figures);
    for e in &executions {
        let url = format!("{}/projects/{}/executions/{}", stack.base_url, stack.project_id, e.id);
        let readable = match stack.client().get(url).bearer_auth(&stack.api_key).send().await {
            Ok(response) if response.status() == 200 => response.json::<Value>().await.is_ok(),
            _ => false,
        };
        if !readable {
            figures.violations.push(format!("execution {}: the record does not read back", e.id));
        }
    }
    print_figures("AWS adapters under faults", "aws", seed, &figures, &executions, &chaos.outcomes());
    assert!(executions.len() > 10, "too few executions to mean anything: {}", executions.len());
    assert!(figures.violations.is_empty(), "{} invariant violations (seed {seed})", figures.violations.len());
}

/// Found by the suite: the SDK retries a `PutItem` whose answer was lost, and the condition
/// then fails on the first write; the start answered 500 although its execution was created
/// (and ran). Creating the same execution again now succeeds; another one with its id does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_execution_whose_put_answer_was_lost_is_created_once_and_reported_created() {
    let Some(endpoint) = aws_endpoint() else {
        eprintln!("skipped: SLUICE_AWS_ENDPOINT is not set (the README's test command sets it)");
        return;
    };
    let proxy = ChaosProxy::start(&endpoint, 1, 0.0).await;
    let sdk = aws_sdk_config(&proxy.endpoint).await;
    let client = aws_sdk_dynamodb::Client::new(&sdk);
    let table = format!("sluice-lost-{}", uuid::Uuid::new_v4().simple());
    sluice_shared::adapters::dynamodb::create_table(&client, &table).await.expect("create the table");
    let store = DynamoStore::new(client, table);
    let execution = sluice_shared::record::Execution {
        id: uuid::Uuid::now_v7().to_string(),
        project_id: "p".into(),
        workflow_id: "w".into(),
        workflow_version: 1,
        user_id: "u".into(),
        status: ExecutionStatus::Running,
        started_at: chrono::DateTime::from_timestamp_millis(now().timestamp_millis()).expect("a time"),
        ended_at: None,
        trigger: sluice_shared::record::TriggerData::default(),
        response_deadline: None,
        error: None,
        test: false,
        ..Default::default()
    };
    proxy.drop_next_answer(&execution.id);
    store.create_execution(&execution).await.expect("created, though the first answer was lost");
    assert_eq!(store.get_execution(&execution.id).await.expect("read"), Some(execution.clone()));
    let other = sluice_shared::record::Execution { user_id: "someone-else".into(), ..execution.clone() };
    let taken = store.create_execution(&other).await;
    assert!(matches!(taken, Err(sluice_shared::ports::StoreError::AlreadyExists(_))), "{taken:?}");
}

/// The database locked by another connection for longer than the server's busy timeout: the
/// trigger answers 503 `unavailable` with `Retry-After` and starts nothing, and the same
/// request is accepted once the lock is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_locked_past_the_busy_timeout_answers_503_with_retry_after_and_starts_nothing() {
    let config = StackConfig { sqlite_busy_timeout: Some(Duration::from_millis(200)), ..StackConfig::default() };
    let stack = TestStack::start_with(Backend::Sqlite, config).await.expect("a SQLite stack");
    stack.deploy("id: locked\ntrigger: { type: request }\nsteps:\n  - { id: nap, type: delay, for: 1h }\n").await;
    let db = rusqlite::Connection::open(stack.sqlite_file().expect("a SQLite file")).expect("open the database");
    let executions = |db: &rusqlite::Connection| {
        db.query_row("SELECT count(*) FROM executions", [], |row| row.get::<_, i64>(0)).expect("count executions")
    };

    db.execute_batch("BEGIN EXCLUSIVE").expect("lock the database");
    let locked = stack.trigger("locked", json!({})).await;
    let status = locked.status().as_u16();
    let retry_after = locked.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_string);
    let body: Value = locked.json().await.expect("a JSON body");
    assert_eq!((status, retry_after.as_deref()), (503, Some("1")), "{body}");
    assert_eq!(body["error"]["code"], "unavailable", "{body}");
    assert_eq!(executions(&db), 0, "nothing was started");
    db.execute_batch("ROLLBACK").expect("unlock the database");

    let again = stack.trigger("locked", json!({})).await;
    assert_eq!(again.status().as_u16(), 202, "{}", again.text().await.unwrap_or_default());
    assert_eq!(executions(&db), 1);
}

//! Load benchmark of `sluice dev` over HTTP (`bash infra/bench.sh`, or `cargo bench -p
//! sluice-e2e --bench http_load` with a release `sluice` in `SLUICE_BIN`). It only speaks HTTP
//! to a separately started `sluice dev` process, so it runs unchanged against older and newer
//! versions of the binary.
//!
//! For each workflow shape of `benches/workflows/` — asynchronous (one function step, 202),
//! synchronous (function, conditional, a Response step per branch) and synchronous fan-out
//! (100 function branches, a sum, a Response) — a fresh `sluice dev` is started, and at each
//! concurrency c (1, 8, 32) c tasks send requests back to back through one keep-alive
//! connection pool for `BENCH_SECONDS` (default 10) after a short warm-up. Answers are checked
//! (a 202 with an execution id, or the expected Response body), and execution records are read
//! back: every one for the asynchronous shape (its completion rate comes from their `endedAt`),
//! a sample for the synchronous ones. The app event shape sends one event that three
//! workflows of two integrations listen to (each one function step, as the asynchronous
//! shape), and reads back every execution it started. The webhook shape posts signed deliveries
//! (GitHub's `X-Hub-Signature-256`, a new event id each) of a custom integration to
//! `POST /projects/dev/webhooks/custom.hooks`, each verified, deduplicated, routed to the one
//! connected user and starting one workflow like the asynchronous shape's, and reads back every
//! execution it started. `GET /health` of a fresh server at the same concurrencies is the loopback
//! floor; `BENCH_SHAPES` (default `async,sync,fan-out,event,webhook`) picks the shapes, and
//! `BENCH_ROUNDS` (default 1) runs them that many times in turn, so that two shapes are compared
//! close together in time on a noisy machine (with both async and webhook, the webhook ÷ async
//! ratio of completed/s is printed per round, with its median). Prints a Markdown table (also
//! written to `target/bench-http-load.md`) and exits non-zero if any request did not succeed.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use aws_lc_rs::hmac;
use chrono::{DateTime, Utc};
use reqwest::Client;
use serde_json::{Value, json};

const WORKFLOWS: &[(&str, &str)] = &[
    ("bench-async.yaml", include_str!("workflows/bench-async.yaml")),
    ("bench-sync.yaml", include_str!("workflows/bench-sync.yaml")),
    ("bench-fan-out.yaml", include_str!("workflows/bench-fan-out.yaml")),
];

/// The app event shape's project files: an event and three listeners in two integrations
/// (only on the event shape's server: older binaries know no app events).
const EVENT_PROJECT: &[(&str, &str)] = &[
    ("events/bench-event.yaml", "name: Bench Event\nexample: { a: 1, b: 2 }\n"),
    ("integrations/slack/config.yaml", "description: Slack\n"),
    ("integrations/hubspot/config.yaml", "description: HubSpot\n"),
    ("integrations/slack/workflows/bench-event-1.yaml", EVENT_LISTENER_1),
    ("integrations/slack/workflows/bench-event-2.yaml", EVENT_LISTENER_2),
    ("integrations/hubspot/workflows/bench-event-3.yaml", EVENT_LISTENER_3),
];
const EVENT_LISTENER_1: &str = "id: bench-event-1\nenabled_by_default: true\ntrigger: { type: app_event, event: Bench Event }\n\
    steps: [{ id: add, type: function, code: \"(p) => ({ sum: p.a + p.b })\", parameters: { a: \"{{trigger.payload.a}}\", b: \"{{trigger.payload.b}}\" } }]\n";
const EVENT_LISTENER_2: &str = "id: bench-event-2\nenabled_by_default: true\ntrigger: { type: app_event, event: Bench Event }\n\
    steps: [{ id: add, type: function, code: \"(p) => ({ sum: p.a + p.b })\", parameters: { a: \"{{trigger.payload.a}}\", b: \"{{trigger.payload.b}}\" } }]\n";
const EVENT_LISTENER_3: &str = "id: bench-event-3\nenabled_by_default: true\ntrigger: { type: app_event, event: Bench Event }\n\
    steps: [{ id: add, type: function, code: \"(p) => ({ sum: p.a + p.b })\", parameters: { a: \"{{trigger.payload.a}}\", b: \"{{trigger.payload.b}}\" } }]\n";
/// The webhook shape's project files: a custom integration whose deliveries are verified with
/// GitHub's scheme (its secret from `{{env.BENCH_WEBHOOK_SECRET}}`, set on that server's process
/// as `SLUICE_ENV_BENCH_WEBHOOK_SECRET`), deduplicated by `id`, routed by `account`, and one
/// workflow listening to its `thing` events (one function step, as the asynchronous shape).
const WEBHOOK_PROJECT: &[(&str, &str)] = &[
    ("integrations/custom.hooks/config.yaml", WEBHOOK_CONFIG),
    ("integrations/custom.hooks/workflows/bench-webhook.yaml", WEBHOOK_LISTENER),
];
const WEBHOOK_CONFIG: &str = "authenticationType: api_key\napiBaseUrl: https://api.example.com\n\
    authorization: { type: bearer, token: \"{{credentials.apiKey}}\" }\n\
    webhooks:\n  verify: { scheme: github_sha256, secret: \"{{env.BENCH_WEBHOOK_SECRET}}\" }\n  \
    eventType: type\n  eventId: id\n  identity: { key: account, path: account }\n";
const WEBHOOK_LISTENER: &str = "id: bench-webhook\nenabled_by_default: true\ntrigger: { type: webhook, event: thing }\n\
    steps: [{ id: add, type: function, code: \"(p) => ({ sum: p.a + p.b })\", parameters: { a: \"{{trigger.body.a}}\", b: \"{{trigger.body.b}}\" } }]\n";
/// The webhook shape's signing secret.
const WEBHOOK_SECRET: &str = "bench-webhook-secret";
/// The webhook shape's integration.
const WEBHOOK_INTEGRATION: &str = "custom.hooks";
/// Event ids of the webhook shape, unique over the whole run (warm-ups and cells included):
/// every delivery is new, none is a redelivery.
static NEXT_DELIVERY: AtomicU64 = AtomicU64::new(0);
/// How long the execution records of a cell may take to end after its load.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(120);
/// Execution records read back per cell of a synchronous shape.
const SYNC_SAMPLE: usize = 200;
/// Record reads in flight at once.
const READERS: usize = 16;

#[derive(Clone, Copy, PartialEq)]
enum Target {
    Health,
    Async,
    Sync,
    FanOut,
    Event,
    Webhook,
}

impl Target {
    fn label(self) -> &'static str {
        match self {
            Target::Health => "health (floor)",
            Target::Async => "async: function, 202",
            Target::Sync => "sync: function, conditional, response",
            Target::FanOut => "sync: fan-out of 100 functions, sum, response",
            Target::Event => "app event: 3 listeners in 2 integrations, 202",
            Target::Webhook => "webhook: verify, dedup, route, start one async workflow",
        }
    }

    fn workflow(self) -> &'static str {
        match self {
            Target::Health => "",
            Target::Async => "bench-async",
            Target::Sync => "bench-sync",
            Target::FanOut => "bench-fan-out",
            Target::Event => "bench-event",
            Target::Webhook => "bench-webhook",
        }
    }

    /// The body of request `i` and, for a synchronous shape, the answer it must get.
    fn request(self, i: u64) -> (Value, Option<Value>) {
        match self {
            Target::Health => (Value::Null, None),
            Target::Async => (json!({ "a": i, "b": 1 }), None),
            Target::Event => (json!({ "name": "Bench Event", "payload": { "a": i, "b": 1 } }), None),
            Target::Webhook => {
                (json!({ "id": format!("evt-{i}"), "type": "thing", "account": "A1", "a": i, "b": 1 }), None)
            }
            Target::Sync if i.is_multiple_of(2) => {
                let numbers: Vec<u64> = (0..100).collect();
                (json!({ "numbers": numbers, "name": "ada" }), Some(json!({ "sum": 4950, "name": "ADA", "big": true })))
            }
            Target::Sync => (
                json!({ "numbers": vec![5; 100], "name": "grace" }),
                Some(json!({ "sum": 500, "name": "GRACE", "big": false })),
            ),
            Target::FanOut => (json!({ "count": 100 }), Some(json!({ "total": 9900, "count": 100 }))),
        }
    }
}

struct Config {
    bin: PathBuf,
    root: PathBuf,
    temp: PathBuf,
    seconds: f64,
    warmup: f64,
    concurrencies: Vec<usize>,
}

/// A `sluice dev` process on a free port with its own data folder; killed when dropped.
struct Server {
    child: Child,
    base_url: String,
    api_key: String,
    user_token: String,
}

impl Server {
    async fn start(config: &Config, client: &Client, name: &str, target: Target) -> Server {
        let dir = config.temp.join(name);
        let (data_dir, workflows) = (dir.join("data"), dir.join("workflows"));
        fs::create_dir_all(&workflows).expect("create the workflows folder");
        for (file, text) in WORKFLOWS {
            fs::write(workflows.join(file), text).expect("write a workflow file");
        }
        let project_files = match target {
            Target::Event => EVENT_PROJECT,
            Target::Webhook => WEBHOOK_PROJECT,
            _ => &[],
        };
        for (file, text) in project_files {
            let path = workflows.join(file);
            fs::create_dir_all(path.parent().expect("a folder")).expect("create a project folder");
            fs::write(path, text).expect("write a project file");
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("free port").local_addr().expect("port").port();
        let log_path = dir.join("sluice.log");
        let log = fs::File::create(&log_path).expect("create the log file");
        let mut command = Command::new(&config.bin);
        command
            .args(["dev", "--port", &port.to_string()])
            .arg("--data-dir")
            .arg(&data_dir)
            .arg("--workflows")
            .arg(&workflows);
        if target == Target::Webhook {
            command.env("SLUICE_ENV_BENCH_WEBHOOK_SECRET", WEBHOOK_SECRET);
        }
        let child = command
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e} (build it, or set SLUICE_BIN)", config.bin.display()));
        // Owned by the server from here on, so that a panic below kills the process.
        let base_url = format!("http://127.0.0.1:{port}");
        let mut server = Server { child, base_url, api_key: String::new(), user_token: String::new() };
        let begun = Instant::now();
        loop {
            if let Some(status) = server.child.try_wait().expect("child status") {
                panic!("sluice dev exited ({status}): {}", fs::read_to_string(&log_path).unwrap_or_default());
            }
            let healthy = client
                .get(format!("{}/health", server.base_url))
                .timeout(Duration::from_secs(1))
                .send()
                .await
                .is_ok_and(|r| r.status() == 200);
            if healthy && data_dir.join("dev-project.json").exists() && data_dir.join("signing-key.pem").exists() {
                break;
            }
            assert!(
                begun.elapsed() < Duration::from_secs(60),
                "sluice dev not ready in 60 s; see {}",
                log_path.display()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let project: Value = serde_json::from_str(
            &fs::read_to_string(data_dir.join("dev-project.json")).expect("read dev-project.json"),
        )
        .expect("dev-project.json is JSON");
        server.api_key = project["apiKey"].as_str().expect("apiKey in dev-project.json").to_string();
        let token = Command::new(&config.bin)
            .args(["token", "--user", "bench", "--data-dir"])
            .arg(&data_dir)
            .output()
            .expect("run sluice token");
        assert!(token.status.success(), "sluice token failed: {}", String::from_utf8_lossy(&token.stderr));
        server.user_token = String::from_utf8(token.stdout).expect("token is UTF-8").trim().to_string();
        if target == Target::Webhook {
            // The bench user connects the integration; deliveries for account A1 are routed to it.
            let answer = client
                .put(format!("{}/projects/dev/sdk/integrations/{WEBHOOK_INTEGRATION}/credentials", server.base_url))
                .bearer_auth(&server.user_token)
                .json(&json!({ "apiKey": "k", "identity": { "account": "A1" } }))
                .send()
                .await
                .expect("PUT credentials");
            let status = answer.status();
            assert_eq!(status, 200, "credentials of {WEBHOOK_INTEGRATION}: {:?}", answer.text().await);
        }
        server
    }

    /// (VmHWM, VmRSS) of the process, in MB.
    fn memory(&self) -> (f64, f64) {
        let status = fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(name))
                .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
                .map_or(f64::NAN, |kb| kb / 1024.0)
        };
        (field("VmHWM:"), field("VmRSS:"))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _killed = self.child.kill();
        let _reaped = self.child.wait();
    }
}

#[derive(Default)]
struct Load {
    started: Option<SystemTime>,
    seconds: f64,
    latencies_ms: Vec<f64>,
    ok: u64,
    non_2xx: u64,
    unexpected: u64,
    ids: Vec<String>,
}

impl Load {
    fn requests(&self) -> u64 {
        self.latencies_ms.len() as u64
    }
    fn merge(&mut self, other: Load) {
        self.latencies_ms.extend(other.latencies_ms);
        self.ok += other.ok;
        self.non_2xx += other.non_2xx;
        self.unexpected += other.unexpected;
        self.ids.extend(other.ids);
    }
}

/// `concurrency` tasks sending requests to `target` back to back for `seconds`.
async fn load(client: &Client, server: &Server, target: Target, concurrency: usize, seconds: f64) -> Load {
    let started = SystemTime::now();
    let begun = Instant::now();
    let deadline = begun + Duration::from_secs_f64(seconds);
    let mut tasks = Vec::with_capacity(concurrency);
    for task in 0..concurrency {
        let client = client.clone();
        let url = match target {
            Target::Health => format!("{}/health", server.base_url),
            Target::Event => format!("{}/projects/dev/sdk/events/trigger", server.base_url),
            Target::Webhook => format!("{}/projects/dev/webhooks/{WEBHOOK_INTEGRATION}", server.base_url),
            _ => format!("{}/projects/dev/sdk/triggers/{}", server.base_url, target.workflow()),
        };
        let token = server.user_token.clone();
        tasks.push(tokio::spawn(async move {
            let mut mine = Load::default();
            let mut i = task as u64;
            let key = hmac::Key::new(hmac::HMAC_SHA256, WEBHOOK_SECRET.as_bytes());
            while Instant::now() < deadline {
                let n = if target == Target::Webhook { NEXT_DELIVERY.fetch_add(1, Ordering::Relaxed) } else { i };
                let (body, expected) = target.request(n);
                i += concurrency as u64;
                let request = match target {
                    Target::Health => client.get(&url),
                    Target::Webhook => {
                        // Signed over the exact bytes sent, as GitHub does.
                        let raw = body.to_string();
                        let signature: String =
                            hmac::sign(&key, raw.as_bytes()).as_ref().iter().map(|b| format!("{b:02x}")).collect();
                        client
                            .post(&url)
                            .header("content-type", "application/json")
                            .header("x-hub-signature-256", format!("sha256={signature}"))
                            .body(raw)
                    }
                    _ => client.post(&url).bearer_auth(&token).json(&body),
                };
                let sent = Instant::now();
                let answer = match request.send().await {
                    Ok(response) => {
                        let status = response.status();
                        let id = response
                            .headers()
                            .get("x-sluice-execution-id")
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_string);
                        response.bytes().await.ok().map(|bytes| (status, id, bytes))
                    }
                    Err(_) => None,
                };
                mine.latencies_ms.push(sent.elapsed().as_secs_f64() * 1000.0);
                let Some((status, header_id, bytes)) = answer.filter(|(status, _, _)| status.is_success()) else {
                    mine.non_2xx += 1;
                    continue;
                };
                let parsed = || serde_json::from_slice::<Value>(&bytes).ok();
                if target == Target::Event {
                    let ids: Vec<String> = parsed()
                        .and_then(|b| {
                            b["executions"].as_array().map(|list| {
                                list.iter().filter_map(|e| e["executionId"].as_str().map(str::to_string)).collect()
                            })
                        })
                        .unwrap_or_default();
                    if status == 202 && ids.len() == 3 {
                        mine.ok += 1;
                        mine.ids.extend(ids);
                    } else {
                        mine.unexpected += 1;
                    }
                    continue;
                }
                if target == Target::Webhook {
                    // 200 with one event, routed, that started exactly one execution.
                    let answer = parsed().unwrap_or_default();
                    let routed = answer["events"].as_array().is_some_and(|events| events.len() == 1)
                        && answer["events"][0]["outcome"] == "routed";
                    let started = answer["events"][0]["executions"].as_array().cloned().unwrap_or_default();
                    match started.as_slice() {
                        [id] if status == 200 && routed && id.is_string() => {
                            mine.ok += 1;
                            mine.ids.push(id.as_str().unwrap_or_default().to_string());
                        }
                        _ => mine.unexpected += 1,
                    }
                    continue;
                }
                let id = match target {
                    Target::Health | Target::Event | Target::Webhook => Some(String::new()),
                    Target::Async if status == 202 => {
                        parsed().and_then(|b| b["executionId"].as_str().map(str::to_string))
                    }
                    Target::Async => None,
                    Target::Sync | Target::FanOut => header_id.filter(|_| parsed() == expected),
                };
                match id {
                    Some(id) => {
                        mine.ok += 1;
                        if target != Target::Health {
                            mine.ids.push(id);
                        }
                    }
                    None => mine.unexpected += 1,
                }
            }
            mine
        }));
    }
    let mut all = Load { started: Some(started), ..Load::default() };
    for task in tasks {
        all.merge(task.await.expect("load task"));
    }
    all.seconds = begun.elapsed().as_secs_f64();
    all
}

#[derive(Default)]
struct Settled {
    read: usize,
    succeeded: usize,
    failed: usize,
    unended: usize,
    latest_end: Option<DateTime<Utc>>,
}

/// Reads the execution records of `ids` until every one has ended (or `SETTLE_TIMEOUT`):
/// first waits for the last one alone (executions start in order), so that reading the
/// others competes little with the workers still running them.
async fn settle(client: &Client, server: &Server, ids: Vec<String>) -> Settled {
    let begun = Instant::now();
    let mut settled = Settled { read: ids.len(), ..Settled::default() };
    if let Some(last) = ids.last() {
        while begun.elapsed() < SETTLE_TIMEOUT && read_record(client, server, last).await.is_none() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let mut pending = ids;
    while !pending.is_empty() && begun.elapsed() < SETTLE_TIMEOUT {
        let shared = Arc::new(pending);
        let next = Arc::new(AtomicUsize::new(0));
        let mut readers = Vec::with_capacity(READERS);
        for _ in 0..READERS {
            let (client, ids, next) = (client.clone(), shared.clone(), next.clone());
            let (base_url, api_key) = (server.base_url.clone(), server.api_key.clone());
            readers.push(tokio::spawn(async move {
                let mut found = Vec::new();
                while let Some(id) = ids.get(next.fetch_add(1, Ordering::Relaxed)) {
                    found.push((id.clone(), fetch_record(&client, &base_url, &api_key, id).await));
                }
                found
            }));
        }
        pending = Vec::new();
        for reader in readers {
            for (id, ended) in reader.await.expect("record reader") {
                match ended {
                    Some((succeeded, ended_at)) => {
                        if succeeded {
                            settled.succeeded += 1;
                        } else {
                            settled.failed += 1;
                        }
                        settled.latest_end = settled.latest_end.max(ended_at);
                    }
                    None => pending.push(id),
                }
            }
        }
        if !pending.is_empty() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    settled.unended = pending.len();
    settled
}

async fn read_record(client: &Client, server: &Server, id: &str) -> Option<(bool, Option<DateTime<Utc>>)> {
    fetch_record(client, &server.base_url, &server.api_key, id).await
}

/// `Some((succeeded, endedAt))` once the execution has ended; `None` while it runs or cannot be read.
async fn fetch_record(
    client: &Client,
    base_url: &str,
    api_key: &str,
    id: &str,
) -> Option<(bool, Option<DateTime<Utc>>)> {
    let response =
        client.get(format!("{base_url}/projects/dev/executions/{id}")).bearer_auth(api_key).send().await.ok()?;
    if !response.status().is_success() {
        return None;
    }
    let record: Value = response.json().await.ok()?;
    let ended_at = record["endedAt"].as_str().and_then(|t| DateTime::parse_from_rfc3339(t).ok()).map(|t| t.to_utc());
    match record["status"].as_str() {
        Some("succeeded") => Some((true, ended_at)),
        Some("failed") => Some((false, ended_at)),
        _ if ended_at.is_some() => Some((false, ended_at)),
        _ => None,
    }
}

/// Up to `n` items spread evenly over `all`.
fn sample(all: &[String], n: usize) -> Vec<String> {
    if all.len() <= n {
        return all.to_vec();
    }
    (0..n).map(|k| all[k * all.len() / n].clone()).collect()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

struct Row {
    target: Target,
    /// Which pass over the shapes (`BENCH_ROUNDS`), from 1.
    round: usize,
    concurrency: usize,
    load: Load,
    settled: Option<Settled>,
    memory: (f64, f64),
}

impl Row {
    fn p50(&self) -> f64 {
        let mut sorted = self.load.latencies_ms.clone();
        sorted.sort_by(f64::total_cmp);
        percentile(&sorted, 0.5)
    }

    /// Requests that did not succeed: not accepted, unexpected answers, and for the asynchronous
    /// shape executions that failed or never ended.
    fn failed(&self) -> u64 {
        let settled = match (self.target, &self.settled) {
            (Target::Async | Target::Event | Target::Webhook, Some(s)) => (s.failed + s.unended) as u64,
            _ => 0,
        };
        self.load.non_2xx + self.load.unexpected + settled
    }

    fn ok(&self) -> u64 {
        self.load.requests().saturating_sub(self.failed())
    }

    /// Executions completed per second: accepted executions ÷ (first request → latest end).
    fn completed_per_second(&self) -> Option<f64> {
        let settled = self.settled.as_ref().filter(|s| s.unended == 0)?;
        let span = (settled.latest_end? - DateTime::<Utc>::from(self.load.started?)).as_seconds_f64();
        (span > 0.0).then(|| self.load.ids.len() as f64 / span)
    }

    fn markdown(&self, floor_p50: Option<f64>) -> String {
        let load = &self.load;
        let mut sorted = load.latencies_ms.clone();
        sorted.sort_by(f64::total_cmp);
        let rate = |count: f64, seconds: f64| format!("{:.0}", count / seconds);
        let (accepted, completed) = match (self.target, &self.settled) {
            (Target::Async | Target::Event | Target::Webhook, Some(_)) => {
                let accepted = load.ids.len() as f64;
                let completed = self.completed_per_second().map_or_else(|| "–".into(), |r| format!("{r:.0}"));
                (rate(accepted, load.seconds), completed)
            }
            _ => ("–".into(), "–".into()),
        };
        let records = match &self.settled {
            Some(s) => {
                let mut text = format!("{}/{}", s.succeeded, s.read);
                if s.failed + s.unended > 0 {
                    text.push_str(&format!(" ({} failed, {} unended)", s.failed, s.unended));
                }
                text
            }
            None => "–".into(),
        };
        let ratio = match floor_p50 {
            Some(floor) if self.target != Target::Health => format!("{:.1}", percentile(&sorted, 0.5) / floor),
            _ => "–".into(),
        };
        let label = match self.round {
            1 => self.target.label().to_string(),
            round => format!("{} (round {round})", self.target.label()),
        };
        format!(
            "| {} | {} | {} | {:.2} | {:.2} | {} | {} | {} | {} | {} | {} | {} | {:.1} | {:.1} |",
            label,
            self.concurrency,
            rate(load.requests() as f64, load.seconds),
            percentile(&sorted, 0.5),
            percentile(&sorted, 0.99),
            load.non_2xx,
            self.ok(),
            self.failed(),
            records,
            ratio,
            accepted,
            completed,
            self.memory.0,
            self.memory.1,
        )
    }
}

/// One shape (or the health floor) on its own fresh server, at every concurrency.
async fn run_target(config: &Config, client: &Client, target: Target) -> Vec<Row> {
    let name = if target == Target::Health { "health" } else { target.workflow() };
    let server = Server::start(config, client, name, target).await;
    let mut rows = Vec::new();
    for &concurrency in &config.concurrencies {
        let warmup = load(client, &server, target, concurrency, config.warmup).await;
        if matches!(target, Target::Async | Target::Event | Target::Webhook) {
            settle(client, &server, warmup.ids).await;
        }
        let measured = load(client, &server, target, concurrency, config.seconds).await;
        let settled = match target {
            Target::Health => None,
            Target::Async | Target::Event | Target::Webhook => {
                Some(settle(client, &server, measured.ids.clone()).await)
            }
            Target::Sync | Target::FanOut => Some(settle(client, &server, sample(&measured.ids, SYNC_SAMPLE)).await),
        };
        eprintln!("{} c={concurrency}: {} requests in {:.1} s", target.label(), measured.requests(), measured.seconds);
        rows.push(Row { target, round: 1, concurrency, load: measured, settled, memory: (f64::NAN, f64::NAN) });
    }
    let memory = server.memory();
    for row in &mut rows {
        row.memory = memory;
    }
    rows
}

fn git(root: &Path, args: &[&str]) -> String {
    Command::new("git")
        .current_dir(root)
        .args(args)
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map_or_else(|| "unknown".into(), |out| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The 1-minute load average, to tell a quiet machine from a busy one.
fn load_average() -> String {
    fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|text| text.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "unknown".into())
}

/// Webhook completed/s ÷ async completed/s per round and concurrency, with the median of the
/// rounds (issue 20's target: at least 0.8); empty unless both shapes ran.
fn webhook_ratios(rows: &[Row], concurrencies: &[usize]) -> String {
    let completed = |target: Target, round: usize, c: usize| {
        rows.iter()
            .find(|r| r.target == target && r.round == round && r.concurrency == c)
            .and_then(Row::completed_per_second)
    };
    let rounds = rows.iter().map(|r| r.round).max().unwrap_or(0);
    let mut out = String::new();
    for &c in concurrencies {
        let mut ratios: Vec<f64> = (1..=rounds)
            .filter_map(|round| Some(completed(Target::Webhook, round, c)? / completed(Target::Async, round, c)?))
            .collect();
        if ratios.is_empty() {
            continue;
        }
        let listed: Vec<String> = ratios.iter().map(|r| format!("{r:.2}")).collect();
        ratios.sort_by(f64::total_cmp);
        let median = match ratios.len() % 2 {
            1 => ratios[ratios.len() / 2],
            _ => (ratios[ratios.len() / 2 - 1] + ratios[ratios.len() / 2]) / 2.0,
        };
        out.push_str(&format!(
            "\nwebhook ÷ async completed/s at c={c}: {} per round, median **{median:.2}**",
            listed.join(", ")
        ));
    }
    if !out.is_empty() {
        out.push('\n');
    }
    out
}

fn env_number(name: &str, default: f64) -> f64 {
    std::env::var(name).ok().map_or(default, |v| v.parse().unwrap_or_else(|_| panic!("{name} must be a number")))
}

#[tokio::main]
async fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf();
    let bin = root.join(std::env::var("SLUICE_BIN").unwrap_or_else(|_| "target/release/sluice".into()));
    let concurrencies = std::env::var("BENCH_CONCURRENCY")
        .unwrap_or_else(|_| "1,8,32".into())
        .split(',')
        .map(|c| c.trim().parse().expect("BENCH_CONCURRENCY: comma-separated numbers"))
        .collect();
    let config = Config {
        temp: std::env::temp_dir().join(format!("sluice-http-load-{}", std::process::id())),
        seconds: env_number("BENCH_SECONDS", 10.0),
        warmup: env_number("BENCH_WARMUP_SECONDS", 1.0),
        bin,
        root,
        concurrencies,
    };
    let client = Client::builder()
        .no_proxy()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(1024)
        .timeout(Duration::from_secs(120))
        .build()
        .expect("HTTP client");

    let load_before = load_average();
    // BENCH_SHAPES: which shapes to run besides the floor (comma-separated: async, sync, fan-out,
    // event, webhook).
    let shapes = std::env::var("BENCH_SHAPES").unwrap_or_else(|_| "async,sync,fan-out,event,webhook".into());
    let wanted = |name: &str| shapes.split(',').any(|shape| shape.trim() == name);
    // BENCH_ROUNDS: passes over the shapes (default 1; the floor runs in the first only), for
    // ratios between shapes measured close together in time on a noisy machine.
    let rounds = env_number("BENCH_ROUNDS", 1.0).max(1.0) as usize;
    let mut rows = Vec::new();
    for round in 1..=rounds {
        for (target, name) in [
            (Target::Health, "health"),
            (Target::Async, "async"),
            (Target::Sync, "sync"),
            (Target::FanOut, "fan-out"),
            (Target::Event, "event"),
            (Target::Webhook, "webhook"),
        ] {
            if (target == Target::Health && round == 1) || wanted(name) {
                let ran = run_target(&config, &client, target).await;
                rows.extend(ran.into_iter().map(|row| Row { round, ..row }));
            }
        }
    }

    let nproc = Command::new("nproc")
        .output()
        .map_or_else(|_| "unknown".into(), |out| String::from_utf8_lossy(&out.stdout).trim().to_string());
    let mut out = String::from("# sluice dev under HTTP load (tests/benches/http_load.rs)\n\n");
    out.push_str(&format!(
        "commit {} (last change to cli/ or shared/: {}) · nproc {nproc} · {} s per cell after a {} s warm-up · {}\n\n",
        git(&config.root, &["rev-parse", "--short", "HEAD"]),
        git(&config.root, &["log", "-1", "--format=%h", "--", "cli", "shared"]),
        config.seconds,
        config.warmup,
        config.bin.display(),
    ));
    out.push_str(&format!(
        "1-minute load average {load_before} before the run, {} after (the load generator shares the cores with the server)\n\n",
        load_average()
    ));
    out.push_str("| shape | c | req/s | p50 ms | p99 ms | non-2xx | ok | failed | records succeeded | p50/floor | accepted/s | completed/s | peak RSS MB | RSS MB |\n");
    out.push_str(
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n",
    );
    let floor = |c: usize| rows.iter().find(|r| r.target == Target::Health && r.concurrency == c).map(Row::p50);
    for row in &rows {
        out.push_str(&row.markdown(floor(row.concurrency)));
        out.push('\n');
    }
    out.push_str(
        "\nc tasks send requests back to back over one keep-alive pool; latency is send to last body byte; non-2xx counts transport errors too. \
         ok: a 202 whose execution succeeded (async), a 202 starting 3 executions (event; its failed \
         column counts executions), a 200 whose one event was routed and started one execution that succeeded \
         (webhook: a signed delivery with a new event id each, verified, deduplicated, routed to the connected \
         user), or the expected answer (sync). records succeeded: \
         every execution record of the cell (async, event, webhook) or a sample of 200 (sync). accepted/s: executions \
         started per second (webhook: deliveries acknowledged per second, one execution each); completed/s: accepted \
         executions ÷ (first request → latest endedAt). Peak RSS (VmHWM) and RSS (VmRSS) of each \
         shape's own `sluice dev`, read after its last cell; the floor is `GET /health` on its own fresh server.\n",
    );
    out.push_str(&webhook_ratios(&rows, &config.concurrencies));
    print!("{out}");
    let report = config.root.join("target").join("bench-http-load.md");
    fs::create_dir_all(report.parent().expect("target folder")).expect("create target/");
    fs::write(&report, &out).expect("write target/bench-http-load.md");

    let failed: u64 = rows.iter().map(Row::failed).sum();
    let sample_failures: usize = rows
        .iter()
        .filter(|r| matches!(r.target, Target::Sync | Target::FanOut))
        .filter_map(|r| r.settled.as_ref())
        .map(|s| s.failed + s.unended)
        .sum();
    if failed + sample_failures as u64 > 0 {
        eprintln!(
            "{failed} request(s) and {sample_failures} sampled record(s) did not succeed; logs in {}",
            config.temp.display()
        );
        std::process::exit(1);
    }
    let _removed = fs::remove_dir_all(&config.temp);
}

//! Durability of the inline first segment on SQLite: `sluice dev` is killed (SIGKILL) while its
//! segment waits on a step, then started again on the same data folder. The execution must
//! finish from its last recorded step, no recorded step may run again, and the execution
//! record must tell a caller that lost its connection how it ended.
//!
//! Timings: `--response-timeout 2s --recovery-delay 3s`, so the recovery comes 3 s after the
//! start; each test takes about 4 s.

mod support;

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{Dev, free_port, http, json, start_dev_logging_to, temp_dir, token};

/// A third-party API on a local port: every path answers 200 `{"path": ...}` at once, except
/// the first call of `/slow`, which is never answered. Calls are counted by path, and their
/// `Idempotency-Key` headers (`<executionId>:<step>`) kept.
struct CountingApi {
    port: u16,
    calls: Arc<Mutex<Vec<Call>>>,
}

/// A call's path and `Idempotency-Key` header.
type Call = (String, Option<String>);

impl CountingApi {
    fn start() -> CountingApi {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the fake API");
        let port = listener.local_addr().expect("address").port();
        let calls = Arc::new(Mutex::new(Vec::new()));
        let shared = calls.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let calls = shared.clone();
                std::thread::spawn(move || serve(stream, &calls));
            }
        });
        CountingApi { port, calls }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn count(&self, path: &str) -> usize {
        self.calls.lock().expect("calls").iter().filter(|(p, _)| p == path).count()
    }

    /// The idempotency keys of the calls of `path`.
    fn keys(&self, path: &str) -> Vec<String> {
        let calls = self.calls.lock().expect("calls");
        calls.iter().filter(|(p, _)| p == path).filter_map(|(_, key)| key.clone()).collect()
    }
}

/// Handles one connection (one request: the answer closes it).
fn serve(stream: TcpStream, calls: &Mutex<Vec<Call>>) {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let path = line.split(' ').nth(1).unwrap_or_default().to_string();
    let mut headers = HashMap::new();
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).unwrap_or(0) == 0 || header.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_string());
        }
    }
    let length: usize = headers.get("content-length").and_then(|l| l.parse().ok()).unwrap_or(0);
    let mut body = vec![0; length];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    let first_slow = {
        let mut calls = calls.lock().expect("calls");
        calls.push((path.clone(), headers.get("idempotency-key").cloned()));
        path == "/slow" && calls.iter().filter(|(p, _)| p == "/slow").count() == 1
    };
    if first_slow {
        // Held open until the test is over: the process calling it is killed meanwhile.
        std::thread::sleep(Duration::from_secs(120));
        return;
    }
    let body = serde_json::json!({ "path": path }).to_string();
    let answer = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = reader.get_mut().write_all(answer.as_bytes());
}

/// `a` → `slow` → `c` (Request steps), then a Response step if `respond`.
fn workflow(api: &CountingApi, respond: bool) -> String {
    let mut yaml = format!(
        "id: killed\ntrigger: {{ type: request }}\nsteps:\n  - {{ id: a, type: request, url: \"{}\" }}\n  - {{ id: slow, type: request, url: \"{}\" }}\n  - {{ id: c, type: request, url: \"{}\" }}\n",
        api.url("/a"),
        api.url("/slow"),
        api.url("/c"),
    );
    if respond {
        yaml.push_str(
            "  - { id: reply, type: response, status: 201, body: { c: \"{{steps.c.output.body.path}}\" } }\n",
        );
    }
    yaml
}

/// `sluice dev` on `data` with short response timeout and recovery delay, its log in `log`.
fn start(port: u16, data: &Path, workflows: &Path, log: &Path) -> Dev {
    let port = port.to_string();
    let args = [
        "--port",
        &port,
        "--data-dir",
        data.to_str().expect("utf-8"),
        "--workflows",
        workflows.to_str().expect("utf-8"),
        "--response-timeout",
        "2s",
        "--recovery-delay",
        "3s",
    ];
    start_dev_logging_to(&args, File::create(log).expect("log file").into()).0
}

/// What the two lives of `sluice dev` logged, for failure messages.
fn logs(dir: &Path) -> String {
    ["first.log", "second.log"]
        .iter()
        .map(|name| format!("--- {name}\n{}", std::fs::read_to_string(dir.join(name)).unwrap_or_default()))
        .collect()
}

fn wait_until(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Starts execution of `killed` (with a Response step if `respond`), kills `sluice dev` with
/// SIGKILL while the segment waits on `/slow`, starts it again on the same data folder and
/// returns the execution record once it has ended, with the API's calls.
fn killed_mid_segment(name: &str, respond: bool) -> (Value, CountingApi) {
    let api = CountingApi::start();
    let data = temp_dir(&format!("{name}-data"));
    let workflows = temp_dir(&format!("{name}-workflows"));
    std::fs::write(workflows.join("killed.yaml"), workflow(&api, respond)).expect("write the workflow");
    let port = free_port();
    let dev = start(port, &data, &workflows, &data.join("first.log"));
    let user_token = token(data.to_str().expect("utf-8"), "user-1");

    // The caller: a synchronous one waits for the answer and loses its connection when the
    // process dies; an asynchronous one gets its 202 at once.
    let caller = std::thread::spawn(move || {
        let auth = format!("Bearer {user_token}");
        let headers = [("authorization", auth.as_str()), ("content-type", "application/json")];
        http(port, "POST", "/projects/dev/sdk/triggers/killed", &headers, "{}")
    });
    wait_until("the segment is waiting on /slow", Duration::from_secs(10), || api.count("/slow") == 1);
    let id = api.keys("/a").first().and_then(|key| key.strip_suffix(":a")).expect("an idempotency key").to_string();
    let mut dev = dev;
    dev.0.kill().expect("SIGKILL sluice dev");
    dev.0.wait().expect("wait for sluice dev");
    let killed = Instant::now();
    let answered = caller.join().expect("the caller thread");
    if respond {
        assert_eq!(answered, None, "the synchronous caller lost its connection without an answer");
    } else {
        let (status, body) = answered.expect("the asynchronous caller was answered");
        assert_eq!((status, json(&body)["executionId"].as_str()), (202, Some(id.as_str())), "{body}");
    }

    let _dev = start(port, &data, &workflows, &data.join("second.log"));
    let project = json(&std::fs::read_to_string(data.join("dev-project.json")).expect("dev-project.json"));
    let api_key = format!("Bearer {}", project["apiKey"].as_str().expect("apiKey"));
    let path = format!("/projects/dev/executions/{id}");
    let deadline = Instant::now() + Duration::from_secs(15);
    let record = loop {
        let (status, body) = http(port, "GET", &path, &[("authorization", &api_key)], "").expect("GET execution");
        assert_eq!(status, 200, "GET execution: {body}");
        let record = json(&body);
        if !matches!(record["status"].as_str(), Some("running" | "waiting")) {
            break record;
        }
        assert!(Instant::now() < deadline, "the execution never ended after the restart: {record:#}\n{}", logs(&data));
        std::thread::sleep(Duration::from_millis(50));
    };
    eprintln!("{name}: ended {:?} after the kill", killed.elapsed());
    assert_eq!(record["status"], "succeeded", "{record:#}\n{}", logs(&data));
    // `a` was recorded before the kill: it did not run again. `slow` was in flight, never
    // recorded: it ran once more (at least once for a step the segment had not recorded).
    assert_eq!((api.count("/a"), api.count("/slow"), api.count("/c")), (1, 2, 1), "calls by path\n{}", logs(&data));
    for (path, step) in [("/a", "a"), ("/slow", "slow"), ("/c", "c")] {
        for key in api.keys(path) {
            assert_eq!(key, format!("{id}:{step}"), "the idempotency key of {path}");
        }
    }
    let mut expected = vec!["a", "slow", "c"];
    if respond {
        expected.push("reply");
    }
    let steps = record["steps"].as_array().expect("steps");
    let listed: Vec<(&str, &str, u64)> = steps
        .iter()
        .map(|s| {
            (s["id"].as_str().unwrap_or(""), s["status"].as_str().unwrap_or(""), s["attempts"].as_u64().unwrap_or(0))
        })
        .collect();
    let wanted: Vec<(&str, &str, u64)> = expected.iter().map(|id| (*id, "succeeded", 1)).collect();
    assert_eq!(listed, wanted, "{record:#}");
    (record, api)
}

#[test]
fn sync_execution_killed_mid_segment_finishes_after_a_restart_without_rerunning_recorded_steps() {
    let (record, _) = killed_mid_segment("kill-sync", true);
    // The caller's deadline passed while the process was down: what it was owed is the 542,
    // and the Response step, reached after the recovery, says it came too late.
    assert_eq!(record["response"]["status"], 542, "{record:#}");
    let reply = &record["steps"][3]["output"];
    assert_eq!((reply["status"].as_u64(), reply["delivered"].as_bool()), (Some(201), Some(false)), "{record:#}");
    assert_eq!(record["steps"][2]["output"]["body"]["path"], "/c", "{record:#}");
}

#[test]
fn async_execution_killed_mid_segment_finishes_after_a_restart_without_rerunning_recorded_steps() {
    let (record, _) = killed_mid_segment("kill-async", false);
    assert_eq!(record["response"], Value::Null, "{record:#}");
    assert_eq!(record["steps"][2]["output"]["body"]["path"], "/c", "{record:#}");
}

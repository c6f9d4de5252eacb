//! Defects found by trying the promises from the outside, each with the test that would have
//! caught it: a Delay that is the last step waits before the execution ends; a fan-out whose
//! branches wait shows `waiting` for the whole wait; a client that disconnects right after
//! sending its trigger leaves no execution `running` forever.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sluice_e2e::on_both_backends;
use sluice_e2e::record::{json_of, step};
use sluice_e2e::stack::{Backend, TestStack};
use sluice_shared::engine::StepKey;
use tokio::io::AsyncWriteExt;

const LONG: Duration = Duration::from_secs(30);

on_both_backends! {
    a_last_delay_waits_before_the_execution_ends: LONG;
    fan_out_branches_that_delay_show_the_execution_waiting: LONG;
}

async fn started(stack: &TestStack, workflow: &str, body: Value) -> String {
    let response = stack.trigger(workflow, body).await;
    assert_eq!(response.status(), 202);
    json_of(response).await["executionId"].as_str().expect("executionId").to_string()
}

fn time(value: &Value) -> chrono::DateTime<chrono::Utc> {
    let text = value.as_str().unwrap_or_else(|| panic!("not a timestamp: {value}"));
    chrono::DateTime::parse_from_rfc3339(text).expect("timestamp").with_timezone(&chrono::Utc)
}

async fn a_last_delay_waits_before_the_execution_ends(stack: &TestStack) {
    stack
        .deploy(
            "id: ends-waiting\ntrigger: { type: request }\nsteps:\n  - { id: f, type: function, code: \"() => 1\" }\n  - { id: pause, type: delay, for: 2s }\n",
        )
        .await;
    let id = started(stack, "ends-waiting", json!({})).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(stack.execution(&id).await["status"], "waiting", "the last Delay is waited for");
    let record = stack.wait_until_ended(&id, LONG).await;
    assert_eq!(record["status"], "succeeded", "{record:#}");
    let waited_until = time(&step(&record, "pause")["output"]["waitedUntil"]);
    assert!(time(&record["endedAt"]) >= waited_until, "ended before its Delay's end: {record:#}");
}

async fn fan_out_branches_that_delay_show_the_execution_waiting(stack: &TestStack) {
    stack
        .deploy(
            "id: branches-wait\ntrigger: { type: request }\nsteps:\n  - id: each\n    type: fan_out\n    over: \"{{trigger.body.items}}\"\n    steps:\n      - { id: pause, type: delay, for: 3s }\n",
        )
        .await;
    let id = started(stack, "branches-wait", json!({ "items": [1, 2, 3, 4, 5, 6] })).await;
    // Once every branch is in its wait, the execution is `waiting` until the first wait ends.
    let begun = Instant::now();
    let mut statuses = Vec::new();
    while begun.elapsed() < Duration::from_millis(2_200) {
        let mut pauses = 0;
        for index in 0..6 {
            let key = StepKey::new("pause", &[index]);
            pauses += usize::from(stack.store.latest_step(&id, &key).await.expect("read").is_some());
        }
        if pauses == 6 {
            let record = stack.execution(&id).await;
            statuses.push(record["status"].as_str().unwrap_or_default().to_string());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(statuses.len() >= 5, "the branches did not all start waiting in time: {statuses:?}");
    assert!(statuses.iter().all(|s| s == "waiting"), "seen while every branch waits: {statuses:?}");
    let record = stack.wait_until_ended(&id, LONG).await;
    assert_eq!(record["status"], "succeeded", "{record:#}");
}

/// Sends a trigger request on a raw connection and closes it at once.
async fn send_and_hang_up(stack: &TestStack, workflow: &str, token: &str) {
    let url = url::Url::parse(&stack.trigger_url(workflow)).expect("URL");
    let address = format!("{}:{}", url.host_str().expect("host"), url.port().expect("port"));
    let body = r#"{"n":1}"#;
    let request = format!(
        "POST {} HTTP/1.1\r\nhost: {address}\r\nauthorization: Bearer {token}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        url.path(),
        body.len()
    );
    let mut socket = tokio::net::TcpStream::connect(&address).await.expect("connect");
    socket.write_all(request.as_bytes()).await.expect("send");
    drop(socket);
}

fn statuses(db: &std::path::Path) -> Vec<(String, u32)> {
    let conn = rusqlite::Connection::open(db).expect("open the database");
    let mut statement =
        conn.prepare("SELECT status, COUNT(*) FROM executions GROUP BY status ORDER BY status").expect("query");
    let rows = statement.query_map([], |row| Ok((row.get(0)?, row.get(1)?))).expect("rows");
    rows.collect::<Result<_, _>>().expect("statuses")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_hang_up_at_once_leave_no_execution_running() {
    let stack = TestStack::start(Backend::Sqlite, LONG).await.expect("SQLite stack");
    stack
        .deploy(
            "id: hang-async\ntrigger: { type: request }\nsteps:\n  - { id: f, type: function, code: \"(p) => 1\" }\n",
        )
        .await;
    stack
        .deploy("id: hang-sync\ntrigger: { type: request }\nsteps:\n  - { id: f, type: function, code: \"(p) => 1\" }\n  - { id: reply, type: response, body: { ok: true } }\n")
        .await;
    let token = stack.token("user-1");
    for round in 0..100 {
        let workflow = if round % 2 == 0 { "hang-async" } else { "hang-sync" };
        send_and_hang_up(&stack, workflow, &token).await;
    }
    let db = stack.sqlite_file().expect("a SQLite stack");
    let begun = Instant::now();
    loop {
        let found = statuses(&db);
        let total: u32 = found.iter().map(|(_, n)| n).sum();
        let unfinished: u32 = found.iter().filter(|(s, _)| s != "succeeded").map(|(_, n)| n).sum();
        if total > 0 && unfinished == 0 && begun.elapsed() > Duration::from_secs(1) {
            eprintln!("{total} executions were created by clients that hung up; every one succeeded");
            break;
        }
        assert!(begun.elapsed() < Duration::from_secs(20), "executions left unfinished: {found:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Half-open connections (a request head that never ends: slowloris) are closed after the
/// header-read timeout, connections past the limit at once, and the server keeps answering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_open_connections_are_closed_and_the_server_keeps_answering() {
    use sluice_cli::server::ServerLimits;
    use sluice_e2e::stack::StackConfig;
    use tokio::io::AsyncReadExt;

    let limits = ServerLimits { header_read_timeout: Duration::from_millis(300), max_connections: 64 };
    let config = StackConfig { limits, ..StackConfig::default() };
    let stack = TestStack::start_with(Backend::Sqlite, config).await.expect("SQLite stack");
    let address = stack.base_url.trim_start_matches("http://").to_string();
    let mut half_open = Vec::new();
    for _ in 0..100 {
        let mut socket = tokio::net::TcpStream::connect(&address).await.expect("connect");
        socket.write_all(b"GET /health HTTP/1.1\r\nhost: sluice\r\nx-slow: ").await.expect("send");
        half_open.push(socket);
    }
    let begun = Instant::now();
    // Every one is closed by the server: past the limit at once, the others at the timeout.
    for socket in &mut half_open {
        let mut buffer = [0u8; 512];
        let read = tokio::time::timeout(Duration::from_secs(3), socket.read(&mut buffer)).await;
        let closed = matches!(read, Ok(Ok(0)) | Ok(Err(_)))
            || matches!(read, Ok(Ok(n)) if buffer[..n].starts_with(b"HTTP/1.1 408"));
        assert!(closed, "a half-open connection was left open: {read:?}");
    }
    assert!(begun.elapsed() < Duration::from_secs(2), "closed after {:?}", begun.elapsed());
    let health = stack.client().get(format!("{}/health", stack.base_url)).send().await.expect("health");
    assert_eq!(health.status(), 200);
}

//! Traces and logs of `sluice dev`: with `OTEL_EXPORTER_OTLP_ENDPOINT` pointing at a local OTLP
//! receiver (a small HTTP server decoding `ExportTraceServiceRequest`), an execution whose
//! Request step fails once and is retried, followed by a fan-out and a Response step, is one
//! trace: its id is the record's `traceId`, one root span, one span per step attempt parented
//! on the root, one span per outbound request parented on its attempt, no query string in
//! `url.full`. Its log, written to a file, holds no colour codes and at most one line per step
//! attempt.

mod support;

#[path = "../../tests/support/otlp.rs"]
mod otlp;

use std::fs::File;
use std::io::{BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use otlp::{Received, Receiver, read_request};
use serde_json::Value;
use support::{Dev, free_port, http, json, start_dev_with_env, temp_dir, token, trigger};

/// In the URL of the flaky step: must never reach a span.
const QUERY_SECRET: &str = "s3cret-in-the-query";

/// A third-party API: `/flaky` answers 503 the first time and 200 after; every other path 200.
fn start_api() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind the fake API");
    let port = listener.local_addr().expect("address").port();
    let flaky_calls = Arc::new(AtomicUsize::new(0));
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let flaky_calls = flaky_calls.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream);
                let Some((line, _, _)) = read_request(&mut reader) else { return };
                let path = line.split(' ').nth(1).unwrap_or_default();
                let first_flaky = path.starts_with("/flaky") && flaky_calls.fetch_add(1, Ordering::SeqCst) == 0;
                let status = if first_flaky { "503 Service Unavailable" } else { "200 OK" };
                let body = r#"{"ok":true}"#;
                let answer = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = reader.get_mut().write_all(answer.as_bytes());
            });
        }
    });
    port
}

fn workflow(api: u16) -> String {
    format!(
        r#"id: traced
trigger: {{ type: request }}
steps:
  - id: flaky
    type: request
    url: "http://127.0.0.1:{api}/flaky?api_key={QUERY_SECRET}"
    retries: 2
    retry_delay: 100ms
  - id: each
    type: fan_out
    over: "{{{{trigger.body.items}}}}"
    steps:
      - id: call
        type: request
        url: "http://127.0.0.1:{api}/item/{{{{item}}}}"
  - id: reply
    type: response
    status: 201
    body: {{ id: "{{{{execution.id}}}}" }}
"#
    )
}

/// Starts `sluice dev` on a fresh project holding `workflow`, its log in `log`.
fn start(name: &str, yaml: &str, vars: &[(&str, &str)]) -> (Dev, u16, std::path::PathBuf) {
    let data = temp_dir(&format!("{name}-data"));
    let workflows = temp_dir(&format!("{name}-workflows"));
    std::fs::write(workflows.join("traced.yaml"), yaml).expect("write the workflow");
    let port = free_port();
    let port_text = port.to_string();
    let args = [
        "--port",
        port_text.as_str(),
        "--data-dir",
        data.to_str().expect("utf-8"),
        "--workflows",
        workflows.to_str().expect("utf-8"),
    ];
    let log = File::create(data.join("dev.log")).expect("log file");
    let (dev, _) = start_dev_with_env(&args, log.into(), vars);
    (dev, port, data)
}

/// The record of `id` once it has ended.
fn ended_record(port: u16, data: &Path, id: &str) -> Value {
    let project = json(&std::fs::read_to_string(data.join("dev-project.json")).expect("dev-project.json"));
    let api_key = format!("Bearer {}", project["apiKey"].as_str().expect("apiKey"));
    let path = format!("/projects/dev/executions/{id}");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) = http(port, "GET", &path, &[("authorization", &api_key)], "").expect("GET execution");
        assert_eq!(status, 200, "GET execution: {body}");
        let record = json(&body);
        if !matches!(record["status"].as_str(), Some("running" | "waiting")) {
            return record;
        }
        assert!(Instant::now() < deadline, "the execution never ended: {record:#}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Checks the log written to a file: no ANSI escape, at most one line per step attempt.
fn check_log(data: &Path, execution_id: &str, attempts: usize) -> String {
    let log = std::fs::read_to_string(data.join("dev.log")).expect("read the log");
    assert!(!log.contains("\x1b["), "the log holds colour codes though stderr is a file:\n{log}");
    let lines = log.lines().filter(|line| line.contains(execution_id)).count();
    assert!(lines <= attempts, "{lines} log lines for {attempts} step attempts:\n{log}");
    let ended = log.lines().filter(|line| line.contains("step ended") && line.contains(execution_id)).count();
    assert_eq!(ended, attempts, "one `step ended` line per attempt:\n{log}");
    log
}

#[test]
fn an_execution_is_one_trace_with_a_span_per_attempt_and_request() {
    let receiver = Receiver::start();
    let api = start_api();
    let endpoint = format!("http://127.0.0.1:{}", receiver.port);
    let vars = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ("OTEL_SERVICE_NAME", ""),
    ];
    let (_dev, port, data) = start("traces", &workflow(api), &vars);
    let user = token(data.to_str().expect("utf-8"), "user-1");
    let (status, body) = trigger(port, "traced", &user, r#"{"items": ["a", "b"]}"#);
    assert_eq!(status, 201, "{body}");
    let id = json(&body)["id"].as_str().expect("the answer names the execution").to_string();
    let record = ended_record(port, &data, &id);
    assert_eq!(record["status"], "succeeded", "{record:#}");
    let trace_id = record["traceId"].as_str().expect("the record shows its traceId").to_string();
    assert_eq!(trace_id, id.replace('-', ""));

    // flaky ×2, call@0, call@1, reply: five step spans; three requests to the API; one root.
    let spans = receiver.wait_for(Duration::from_secs(20), |spans| {
        spans.len() >= 10 && spans.iter().any(|s| s.name == "execution traced")
    });
    let names: Vec<&str> = spans.iter().map(|s| s.name.as_str()).collect();
    assert!(receiver.requests() >= 1, "no export request arrived");
    assert!(spans.iter().all(|s| s.trace_id == trace_id), "spans outside the execution's trace: {spans:#?}");

    let roots: Vec<&Received> = spans.iter().filter(|s| s.name == "execution traced").collect();
    assert_eq!(roots.len(), 1, "one root span: {names:?}");
    let root = roots[0];
    assert_eq!(root.parent, "", "the root has no parent");
    assert_eq!(root.span_id, sluice_shared::telemetry::root_span_id(&id).to_string());
    assert_eq!(root.status, StatusCode::Ok as i32);
    for (key, value) in [
        ("sluice.execution.id", id.as_str()),
        ("sluice.project.id", "dev"),
        ("sluice.workflow.id", "traced"),
        ("sluice.workflow.version", "1"),
        ("sluice.user.id", "user-1"),
        ("sluice.trigger.kind", "request"),
        ("sluice.execution.status", "succeeded"),
    ] {
        assert_eq!(root.attr(key), Some(value), "root attribute {key}: {root:#?}");
    }
    assert_eq!(root.resource.get("service.name").map(String::as_str), Some("sluice"));

    let steps: Vec<&Received> = spans.iter().filter(|s| s.name.starts_with("step ")).collect();
    let mut step_names: Vec<(&str, Option<&str>, Option<&str>)> =
        steps.iter().map(|s| (s.name.as_str(), s.attr("sluice.step.attempt"), s.attr("sluice.step.status"))).collect();
    step_names.sort();
    assert_eq!(
        step_names,
        [
            ("step call@0", Some("1"), Some("succeeded")),
            ("step call@1", Some("1"), Some("succeeded")),
            ("step flaky", Some("1"), Some("failed")),
            ("step flaky", Some("2"), Some("succeeded")),
            ("step reply", Some("1"), Some("succeeded")),
        ],
        "one span per step attempt: {names:?}"
    );
    for step in &steps {
        assert_eq!(step.parent, root.span_id, "{} is a child of the root", step.name);
        assert_eq!(step.attr("sluice.execution.id"), Some(id.as_str()));
        assert_eq!(step.attr("sluice.workflow.id"), Some("traced"));
        assert_eq!(step.attr("sluice.user.id"), Some("user-1"));
        assert!(step.attr("sluice.step.kind").is_some(), "{step:#?}");
    }
    let failed = steps.iter().find(|s| s.attr("sluice.step.status") == Some("failed")).expect("the failed attempt");
    assert_eq!(failed.status, StatusCode::Error as i32);
    assert_eq!(failed.attr("error.type"), Some("retryable"));

    let requests: Vec<&Received> = spans.iter().filter(|s| s.kind == SpanKind::Client as i32).collect();
    assert_eq!(requests.len(), 4, "one span per outbound request: {names:?}");
    for request in &requests {
        let parent = steps.iter().find(|s| s.span_id == request.parent).expect("a request's parent is an attempt");
        assert_eq!(request.attr("http.request.method"), Some("GET"));
        assert_eq!(request.attr("server.address"), Some("127.0.0.1"));
        let url = request.attr("url.full").expect("url.full");
        assert!(!url.contains('?'), "url.full: {url}");
        if parent.name == "step flaky" {
            assert_eq!(url, format!("http://127.0.0.1:{api}/flaky"));
            let expected = if parent.attr("sluice.step.attempt") == Some("1") { "503" } else { "200" };
            assert_eq!(request.attr("http.response.status_code"), Some(expected), "{request:#?}");
        } else {
            assert_eq!(request.attr("http.response.status_code"), Some("200"), "{request:#?}");
        }
    }
    let flaky_503 = requests.iter().find(|r| r.attr("http.response.status_code") == Some("503")).expect("the 503");
    assert_eq!(flaky_503.attr("error.type"), Some("503"));
    let everything = format!("{spans:?}");
    assert!(!everything.contains(QUERY_SECRET), "a span holds the query string's secret");

    let log = check_log(&data, &id, 5);
    assert!(!log.contains(QUERY_SECRET), "the log holds the query string's secret:\n{log}");
}

#[test]
fn without_an_endpoint_nothing_is_exported_and_the_log_is_plain() {
    let receiver = Receiver::start();
    let api = start_api();
    let yaml = format!(
        "id: traced\ntrigger: {{ type: request }}\nsteps:\n  - {{ id: one, type: request, url: \"http://127.0.0.1:{api}/one\" }}\n"
    );
    let vars = [("OTEL_EXPORTER_OTLP_ENDPOINT", ""), ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "")];
    let (_dev, port, data) = start("untraced", &yaml, &vars);
    let user = token(data.to_str().expect("utf-8"), "user-1");
    let (status, body) = trigger(port, "traced", &user, "{}");
    assert_eq!(status, 202, "{body}");
    let id = json(&body)["executionId"].as_str().expect("executionId").to_string();
    let record = ended_record(port, &data, &id);
    assert_eq!(record["status"], "succeeded", "{record:#}");
    assert_eq!(record["traceId"].as_str(), Some(id.replace('-', "").as_str()));
    check_log(&data, &id, 1);
    std::thread::sleep(Duration::from_millis(300));
    assert!(receiver.spans().is_empty());
}

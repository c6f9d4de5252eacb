//! A local OTLP/HTTP receiver for the trace tests: a small HTTP server that decodes every
//! `POST /v1/traces` body (`ExportTraceServiceRequest`, protobuf) and keeps its spans. Shared
//! by `tests/traces.rs` (the Lambda binaries) and `cli/tests/traces.rs` (`sluice dev`), which
//! includes this file by path; it uses only std, `opentelemetry-proto` and `prost`.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::common::v1::{AnyValue as Any, KeyValue};
use prost::Message;

/// A span as received, with its resource's attributes.
#[derive(Debug, Clone)]
pub struct Received {
    pub trace_id: String,
    pub span_id: String,
    pub parent: String,
    pub name: String,
    pub kind: i32,
    pub status: i32,
    pub attributes: HashMap<String, String>,
    pub resource: HashMap<String, String>,
}

impl Received {
    pub fn attr(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn text(value: Option<&Any>) -> String {
    match value.and_then(|v| v.value.as_ref()) {
        Some(AnyValue::StringValue(s)) => s.clone(),
        Some(AnyValue::IntValue(i)) => i.to_string(),
        Some(AnyValue::BoolValue(b)) => b.to_string(),
        Some(AnyValue::DoubleValue(d)) => d.to_string(),
        other => format!("{other:?}"),
    }
}

fn attributes(list: &[KeyValue]) -> HashMap<String, String> {
    list.iter().map(|kv| (kv.key.clone(), text(kv.value.as_ref()))).collect()
}

/// A local OTLP/HTTP receiver: every `POST /v1/traces` body is decoded and its spans kept.
pub struct Receiver {
    pub port: u16,
    spans: Arc<Mutex<Vec<Received>>>,
    requests: Arc<AtomicUsize>,
}

impl Receiver {
    pub fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the OTLP receiver");
        let port = listener.local_addr().expect("address").port();
        let spans = Arc::new(Mutex::new(Vec::new()));
        let requests = Arc::new(AtomicUsize::new(0));
        let (kept, counted) = (spans.clone(), requests.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (kept, counted) = (kept.clone(), counted.clone());
                std::thread::spawn(move || serve_otlp(stream, &kept, &counted));
            }
        });
        Receiver { port, spans, requests }
    }

    pub fn spans(&self) -> Vec<Received> {
        self.spans.lock().expect("spans").clone()
    }

    /// How many export requests arrived.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    /// The spans received once `done` holds for them, or whatever arrived by `within`.
    pub fn wait_for(&self, within: Duration, done: impl Fn(&[Received]) -> bool) -> Vec<Received> {
        let deadline = Instant::now() + within;
        loop {
            let spans = self.spans();
            if done(&spans) || Instant::now() > deadline {
                return spans;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Reads one HTTP/1.1 request: its request line, lower-case headers and body.
pub fn read_request(reader: &mut BufReader<TcpStream>) -> Option<(String, HashMap<String, String>, Vec<u8>)> {
    let mut line = String::new();
    if reader.read_line(&mut line).ok()? == 0 {
        return None;
    }
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
    reader.read_exact(&mut body).ok()?;
    Some((line, headers, body))
}

fn serve_otlp(stream: TcpStream, kept: &Mutex<Vec<Received>>, counted: &AtomicUsize) {
    let mut reader = BufReader::new(stream);
    // The exporter keeps its connection alive: serve requests until it closes it.
    while let Some((line, headers, body)) = read_request(&mut reader) {
        let ok = line.starts_with("POST /v1/traces ")
            && headers.get("content-type").map(String::as_str) == Some("application/x-protobuf");
        let status = match ExportTraceServiceRequest::decode(body.as_slice()) {
            Ok(request) if ok => {
                counted.fetch_add(1, Ordering::SeqCst);
                let mut spans = kept.lock().expect("spans");
                for resource_spans in request.resource_spans {
                    let resource = attributes(&resource_spans.resource.map(|r| r.attributes).unwrap_or_default());
                    for span in resource_spans.scope_spans.into_iter().flat_map(|s| s.spans) {
                        spans.push(Received {
                            trace_id: hex(&span.trace_id),
                            span_id: hex(&span.span_id),
                            parent: hex(&span.parent_span_id),
                            name: span.name.clone(),
                            kind: span.kind,
                            status: span.status.as_ref().map_or(0, |s| s.code),
                            attributes: attributes(&span.attributes),
                            resource: resource.clone(),
                        });
                    }
                }
                "200 OK"
            }
            _ => "400 Bad Request",
        };
        let answer = format!("HTTP/1.1 {status}\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n");
        if reader.get_mut().write_all(answer.as_bytes()).is_err() {
            return;
        }
    }
}

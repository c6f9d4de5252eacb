//! Tests of body encodings and auth: what a local server receives.
use std::sync::{Arc, Mutex};

use axum::http::HeaderMap as AxumHeaders;
use axum::routing::any;
use bytes::Bytes;

use super::test_files::MemoryFiles;
use super::tests::{EXECUTION, TestResult, local_client, respond, send_with};
use super::*;
use crate::model::BodyType;
use crate::net::test_server;

/// What the capture server saw last: its headers and raw body.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Option<(AxumHeaders, Bytes)>>>);

impl Captured {
    fn take(&self) -> Result<(AxumHeaders, Bytes), Box<dyn std::error::Error>> {
        let mut slot = self.0.lock().map_err(|_| "poisoned")?;
        Ok(slot.take().ok_or("the server received nothing")?)
    }

    fn header(headers: &AxumHeaders, name: &str) -> String {
        headers.get(name).map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()).unwrap_or_default()
    }
}

async fn capture_server() -> Result<(String, Captured), Box<dyn std::error::Error>> {
    let captured = Captured::default();
    let slot = captured.clone();
    let router = axum::Router::new().route(
        "/capture",
        any(move |headers: AxumHeaders, body: Bytes| {
            let slot = slot.clone();
            async move {
                if let Ok(mut slot) = slot.0.lock() {
                    *slot = Some((headers, body));
                }
                respond(200, &[("content-type", "application/json")], "{}")
            }
        }),
    );
    let addr = test_server::spawn(router).await?;
    Ok((format!("http://{addr}/capture"), captured))
}

fn post(url: &str, body_type: BodyType, body: Value) -> RenderedRequest {
    let mut req = RenderedRequest::new(Method::Post, url);
    req.body_type = body_type;
    req.body = Some(body);
    req
}

/// The parts of a multipart body: (header block, content).
fn multipart_parts(body: &[u8], boundary: &str) -> Vec<(String, Vec<u8>)> {
    let delimiter = format!("--{boundary}");
    let mut parts = Vec::new();
    let mut rest = body;
    while let Some(start) = find(rest, delimiter.as_bytes()) {
        rest = &rest[start + delimiter.len()..];
        if rest.starts_with(b"--") {
            break;
        }
        let rest_part = rest.strip_prefix(b"\r\n").unwrap_or(rest);
        let Some(head_end) = find(rest_part, b"\r\n\r\n") else { break };
        let Some(end) = find(&rest_part[head_end..], format!("\r\n{delimiter}").as_bytes()) else { break };
        let head = String::from_utf8_lossy(&rest_part[..head_end]).into_owned();
        parts.push((head, rest_part[head_end + 4..head_end + end].to_vec()));
        rest = &rest_part[head_end + end + 2..];
    }
    parts
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|window| window == needle)
}

#[tokio::test]
async fn form_bodies_are_url_encoded_with_non_strings_as_json() -> TestResult {
    let (url, captured) = capture_server().await?;
    let body = json!({ "name": "Ada Lovelace", "age": 36, "tags": ["a", "b"], "ok": true, "x": "a&b=c" });
    super::tests::call(&post(&url, BodyType::Form, body)).await?;
    let (headers, received) = captured.take()?;
    assert_eq!(Captured::header(&headers, "content-type"), "application/x-www-form-urlencoded");
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(&received).into_owned().collect();
    let expected = [("age", "36"), ("name", "Ada Lovelace"), ("ok", "true"), ("tags", r#"["a","b"]"#), ("x", "a&b=c")];
    assert_eq!(pairs, expected.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<Vec<_>>());
    Ok(())
}

#[tokio::test]
async fn a_form_body_that_is_not_an_object_or_text_fails_terminally() -> TestResult {
    let (url, _) = capture_server().await?;
    let error = super::tests::call_error(&post(&url, BodyType::Form, json!([1, 2]))).await?;
    assert!(!error.retryable);
    assert_eq!(error.message, "a form body must be an object of fields, got an array");
    Ok(())
}

#[tokio::test]
async fn raw_bodies_are_sent_as_is_with_text_plain_by_default() -> TestResult {
    let (url, captured) = capture_server().await?;
    super::tests::call(&post(&url, BodyType::Raw, json!("line one\n{not json}"))).await?;
    let (headers, received) = captured.take()?;
    assert_eq!(Captured::header(&headers, "content-type"), "text/plain");
    assert_eq!(received.as_ref(), b"line one\n{not json}");

    let mut req = post(&url, BodyType::Raw, json!("<a>1</a>"));
    req.headers.insert("Content-Type".into(), json!("application/xml"));
    super::tests::call(&req).await?;
    let (headers, received) = captured.take()?;
    assert_eq!(Captured::header(&headers, "content-type"), "application/xml");
    assert_eq!(received.as_ref(), b"<a>1</a>");
    Ok(())
}

#[tokio::test]
async fn a_raw_body_that_is_not_text_fails_terminally() -> TestResult {
    let (url, captured) = capture_server().await?;
    let error = super::tests::call_error(&post(&url, BodyType::Raw, json!({ "a": 1 }))).await?;
    assert!(!error.retryable);
    assert!(error.message.starts_with("a raw body must be text, got an object"), "{}", error.message);
    assert!(captured.take().is_err(), "nothing is sent");
    Ok(())
}

#[tokio::test]
async fn multipart_bodies_send_text_parts_and_stored_files_as_file_parts() -> TestResult {
    let (url, captured) = capture_server().await?;
    let files = MemoryFiles::new();
    let png: &[u8] = &[0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0xff];
    let file = files.put_file(EXECUTION, "pixel \"1\".png", "image/png", Bytes::from_static(png)).await?;
    let body = json!({ "note": "hello", "n": 5, "upload": serde_json::to_value(&file)? });
    let mut req = post(&url, BodyType::Multipart, body);
    req.headers.insert("content-type".into(), json!("application/json"));
    send_with(&local_client()?, &files, &req, "key").await.map_err(|e| e.message)?;
    let (headers, received) = captured.take()?;
    let content_type = Captured::header(&headers, "content-type");
    let boundary = content_type.strip_prefix("multipart/form-data; boundary=").ok_or(content_type.clone())?;
    let mut parts = multipart_parts(&received, boundary);
    parts.sort();
    let file_head =
        "Content-Disposition: form-data; name=\"upload\"; filename=\"pixel %221%22.png\"\r\nContent-Type: image/png";
    let expected = [
        ("Content-Disposition: form-data; name=\"n\"", b"5".to_vec()),
        ("Content-Disposition: form-data; name=\"note\"", b"hello".to_vec()),
        (file_head, png.to_vec()),
    ];
    assert_eq!(parts, expected.map(|(head, content)| (head.to_string(), content)).to_vec());
    Ok(())
}

#[tokio::test]
async fn multipart_refuses_a_file_of_another_execution() -> TestResult {
    let (url, captured) = capture_server().await?;
    let files = MemoryFiles::new();
    let file =
        files.put_file("another-execution", "secret.pdf", "application/pdf", Bytes::from_static(b"%PDF")).await?;
    let req = post(&url, BodyType::Multipart, json!({ "doc": serde_json::to_value(&file)? }));
    let error = send_with(&local_client()?, &files, &req, "key").await.err().ok_or("expected an error")?;
    assert!(!error.retryable);
    assert_eq!(error.message, "the file `secret.pdf` in multipart field `doc` is not a file of this execution");
    assert!(captured.take().is_err(), "nothing is sent");
    Ok(())
}

#[tokio::test]
async fn a_multipart_body_must_be_an_object() -> TestResult {
    let (url, _) = capture_server().await?;
    let error = super::tests::call_error(&post(&url, BodyType::Multipart, json!("text"))).await?;
    assert_eq!(error.message, "a multipart body must be an object of fields, got a string");
    Ok(())
}

#[tokio::test]
async fn basic_and_bearer_auth_set_the_authorization_header() -> TestResult {
    let (url, captured) = capture_server().await?;
    let mut req = RenderedRequest::new(Method::Get, url.as_str());
    req.headers.insert("Authorization".into(), json!("Token replaced"));
    req.auth = Some(RenderedAuth::Basic { username: "ada".into(), password: "pa:ss wörd".into() });
    super::tests::call(&req).await?;
    let (headers, _) = captured.take()?;
    let expected = base64::engine::general_purpose::STANDARD.encode("ada:pa:ss wörd");
    assert_eq!(Captured::header(&headers, "authorization"), format!("Basic {expected}"));

    req.auth = Some(RenderedAuth::Bearer { token: "tok-123".into() });
    super::tests::call(&req).await?;
    let (headers, _) = captured.take()?;
    assert_eq!(Captured::header(&headers, "authorization"), "Bearer tok-123");
    Ok(())
}

#[test]
fn file_objects_are_recognised_only_with_a_file_reference() {
    let file = json!({ "name": "a.png", "mimeType": "image/png", "size": 3, "data": "sluice-file:abc" });
    assert_eq!(file_object(&file).map(|f| f.name), Some("a.png".into()));
    for value in [
        json!({ "name": "a.png", "mimeType": "image/png", "size": 3, "data": "aGVsbG8=" }),
        json!({ "name": "a.png", "data": "sluice-file:abc" }),
        json!("sluice-file:abc"),
        json!(null),
    ] {
        assert_eq!(file_object(&value), None, "{value}");
    }
}

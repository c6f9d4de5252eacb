//! Tests of response parsing by content type, binary answers stored as files.
use std::net::SocketAddr;

use axum::routing::get;
use bytes::Bytes;

use super::test_files::MemoryFiles;
use super::tests::{EXECUTION, TestResult, get_request, local_client, respond, send_with};
use super::*;
use crate::net::test_server;
use crate::record::FileObject;

const PNG: &[u8] = &[0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0xff, 0x00];

async fn server() -> Result<SocketAddr, Box<dyn std::error::Error>> {
    let router = axum::Router::new()
        .route(
            "/avatar",
            get(|| async {
                respond(
                    200,
                    &[("content-type", "image/png"), ("content-disposition", r#"inline; filename="ada.png""#)],
                    PNG,
                )
            }),
        )
        .route("/files/report.pdf", get(|| async { respond(200, &[("content-type", "application/pdf")], "%PDF-1.7") }))
        .route("/", get(|| async { respond(200, &[("content-type", "application/octet-stream")], "raw") }))
        .route(
            "/latin1",
            get(|| async { respond(200, &[("content-type", "text/plain")], vec![b'c', b'a', b'f', 0xe9]) }),
        )
        .route(
            "/form",
            get(|| async { respond(200, &[("content-type", "application/x-www-form-urlencoded")], "a=1&b=two+words") }),
        )
        .route("/xml", get(|| async { respond(200, &[("content-type", "application/xml")], "<a>1</a>") }))
        .route("/broken-image", get(|| async { respond(500, &[("content-type", "image/png")], PNG) }));
    Ok(test_server::spawn(router).await?)
}

async fn fetch(files: &MemoryFiles, path: &str) -> Result<Value, Box<dyn std::error::Error>> {
    let addr = server().await?;
    let req = get_request(format!("http://{addr}{path}"));
    Ok(send_with(&local_client()?, files, &req, "key").await.map_err(|e| e.message)?)
}

#[tokio::test]
async fn a_binary_response_is_stored_as_a_file_and_its_bytes_are_retrievable() -> TestResult {
    let files = MemoryFiles::new();
    let output = fetch(&files, "/avatar").await?;
    assert_eq!(output["status"], 200);
    assert_eq!(output["body"], output["file"]);
    let file: FileObject = serde_json::from_value(output["file"].clone())?;
    assert_eq!((file.name.as_str(), file.mime_type.as_str(), file.size), ("ada.png", "image/png", PNG.len() as u64));
    assert!(file.data.starts_with("sluice-file:"), "{}", file.data);
    assert_eq!(files.get_file(EXECUTION, &file).await?, Some(Bytes::from_static(PNG)));
    assert_eq!(files.get_file("another-execution", &file).await?, None);
    assert_eq!(output["headers"]["content-type"], "image/png");
    Ok(())
}

#[tokio::test]
async fn a_file_is_named_after_the_url_or_else_file() -> TestResult {
    let files = MemoryFiles::new();
    let pdf = fetch(&files, "/files/report.pdf").await?;
    assert_eq!(pdf["file"]["name"], "report.pdf");
    assert_eq!(pdf["file"]["mimeType"], "application/pdf");
    let unnamed = fetch(&files, "/").await?;
    assert_eq!(unnamed["file"]["name"], "file");
    assert_eq!(unnamed["file"]["size"], 3);
    assert_eq!(files.len(), 2);
    Ok(())
}

#[tokio::test]
async fn text_that_is_not_utf8_is_kept_as_a_file() -> TestResult {
    let files = MemoryFiles::new();
    let output = fetch(&files, "/latin1").await?;
    let file: FileObject = serde_json::from_value(output["file"].clone())?;
    assert_eq!(file.mime_type, "text/plain");
    assert_eq!(files.get_file(EXECUTION, &file).await?.as_deref(), Some(&[b'c', b'a', b'f', 0xe9][..]));
    Ok(())
}

#[tokio::test]
async fn form_responses_become_objects_and_xml_stays_text() -> TestResult {
    let files = MemoryFiles::new();
    assert_eq!(fetch(&files, "/form").await?["body"], json!({ "a": "1", "b": "two words" }));
    let xml = fetch(&files, "/xml").await?;
    assert_eq!(xml["body"], "<a>1</a>");
    assert_eq!(xml.get("file"), None);
    assert_eq!(files.len(), 0);
    Ok(())
}

#[tokio::test]
async fn a_binary_error_body_is_summarised_not_stored() -> TestResult {
    let files = MemoryFiles::new();
    let addr = server().await?;
    let req = get_request(format!("http://{addr}/broken-image"));
    let error = send_with(&local_client()?, &files, &req, "key").await.err().ok_or("expected an error")?;
    assert!(error.retryable);
    let details = error.details.ok_or("no details")?;
    assert_eq!(details["body"], json!({ "omitted": "binary body", "bytes": PNG.len(), "mimeType": "image/png" }));
    assert_eq!(files.len(), 0);
    Ok(())
}

//! Tests of pagination against local paginated servers (five items in pages of two).
use std::collections::HashMap;
use std::net::SocketAddr;

use axum::extract::Query;
use axum::routing::get;

use super::test_files::MemoryFiles;
use super::tests::{TestResult, call, call_error, get_request, local_client, respond};
use super::*;
use crate::model::Pagination;
use crate::net::test_server;

type Params = Query<HashMap<String, String>>;

fn json_page(body: Value, headers: &[(&str, &str)]) -> axum::response::Response {
    let mut all = vec![("content-type", "application/json")];
    all.extend_from_slice(headers);
    respond(200, &all, body.to_string())
}

/// Items `from..to` (1-based, at most 5).
fn items(from: u64, to: u64) -> Vec<u64> {
    (from..to.min(6)).collect()
}

async fn server() -> Result<SocketAddr, Box<dyn std::error::Error>> {
    let router = axum::Router::new()
        .route(
            "/cursor",
            get(|Query(q): Params| async move {
                let (data, next) = match q.get("cursor").map(String::as_str) {
                    None => (items(1, 3), json!("c2")),
                    Some("c2") => (items(3, 5), json!("c3")),
                    Some("c3") => (items(5, 7), json!(null)),
                    Some(_) => return respond(400, &[], "bad cursor"),
                };
                json_page(json!({ "data": data, "meta": { "next": next }, "q": q.get("q") }), &[])
            }),
        )
        .route(
            "/forever",
            get(|Query(q): Params| async move {
                let n: u64 = q.get("cursor").and_then(|c| c.parse().ok()).unwrap_or(0);
                json_page(json!({ "data": [n], "next": n + 1 }), &[])
            }),
        )
        .route(
            "/keys",
            get(|headers: axum::http::HeaderMap, Query(q): Params| async move {
                let key = headers.get("idempotency-key").map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
                let n: u64 = q.get("cursor").and_then(|c| c.parse().ok()).unwrap_or(0);
                json_page(json!({ "data": [key], "next": n + 1 }), &[])
            }),
        )
        .route(
            "/link",
            get(|Query(q): Params| async move {
                match q.get("p").map(String::as_str) {
                    None => json_page(json!(items(1, 3)), &[("link", r#"</link?p=2>; rel="next""#)]),
                    Some("2") => json_page(
                        json!(items(3, 5)),
                        &[("link", r#"</link>; rel="first", <link?p=3>; rel="next", </link?p=3>; rel="last""#)],
                    ),
                    _ => json_page(json!(items(5, 7)), &[("link", r#"</link>; rel="first""#)]),
                }
            }),
        )
        .route(
            "/to-metadata",
            get(|| async {
                json_page(json!([1]), &[("link", r#"<http://169.254.169.254/latest/meta-data/>; rel="next""#)])
            }),
        )
        .route(
            "/pages",
            get(|Query(q): Params| async move {
                let page: u64 = q.get("page").and_then(|p| p.parse().ok()).unwrap_or(0);
                let from = page.saturating_sub(1) * 2 + 1;
                json_page(json!({ "results": items(from, from + 2), "q": q.get("q") }), &[])
            }),
        )
        .route(
            "/offset",
            get(|Query(q): Params| async move {
                let offset: u64 = q.get("offset").and_then(|p| p.parse().ok()).unwrap_or(99);
                let limit: u64 = q.get("limit").and_then(|p| p.parse().ok()).unwrap_or(0);
                json_page(json!({ "rows": items(offset + 1, offset + 1 + limit) }), &[])
            }),
        )
        .route(
            "/elsewhere",
            get(|headers: axum::http::HeaderMap, Query(q): Params| async move {
                let auth = headers.get("authorization").map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
                let port = q.get("port").cloned().unwrap_or_default();
                match q.get("p") {
                    None => {
                        let link = format!(r#"<http://localhost:{port}/elsewhere?p=2>; rel="next""#);
                        json_page(json!([{ "auth": auth }]), &[("link", link.as_str())])
                    }
                    Some(_) => json_page(json!([{ "auth": auth }]), &[]),
                }
            }),
        )
        .route(
            "/flaky",
            get(|Query(q): Params| async move {
                match q.get("cursor") {
                    None => json_page(json!({ "data": [1], "next": "x" }), &[]),
                    Some(_) => respond(503, &[("retry-after", "3")], "busy"),
                }
            }),
        );
    Ok(test_server::spawn(router).await?)
}

fn paginated(addr: SocketAddr, path: &str, pagination: Pagination) -> RenderedRequest {
    let mut req = get_request(format!("http://{addr}{path}"));
    req.pagination = Some(pagination);
    req
}

fn cursor(max_pages: Option<u32>) -> Pagination {
    Pagination::Cursor { items: "body.data".into(), cursor: "body.meta.next".into(), param: "cursor".into(), max_pages }
}

#[tokio::test]
async fn cursor_pagination_collects_every_page() -> TestResult {
    let addr = server().await?;
    let mut req = paginated(addr, "/cursor", cursor(None));
    req.query.insert("q".into(), json!("kept"));
    let output = call(&req).await?;
    assert_eq!(output["items"], json!([1, 2, 3, 4, 5]));
    assert_eq!(output["pages"], 3);
    assert_eq!(output["status"], 200);
    assert_eq!(output["body"], json!({ "data": [5], "meta": { "next": null }, "q": "kept" }));
    Ok(())
}

#[tokio::test]
async fn link_pagination_follows_relative_next_links() -> TestResult {
    let addr = server().await?;
    let output = call(&paginated(addr, "/link", Pagination::Link { items: "body".into(), max_pages: None })).await?;
    assert_eq!(output["items"], json!([1, 2, 3, 4, 5]));
    assert_eq!(output["pages"], 3);
    assert_eq!(output["headers"]["link"], r#"</link>; rel="first""#);
    Ok(())
}

#[tokio::test]
async fn page_number_pagination_stops_at_a_short_page() -> TestResult {
    let addr = server().await?;
    let pagination = Pagination::Page {
        items: "body.results".into(),
        param: "page".into(),
        start: 1,
        page_size: Some(2),
        max_pages: None,
    };
    let mut req = paginated(addr, "/pages?page=7", pagination);
    req.query.insert("q".into(), json!("kept"));
    let output = call(&req).await?;
    assert_eq!(output["items"], json!([1, 2, 3, 4, 5]));
    assert_eq!(output["pages"], 3);
    assert_eq!(output["body"]["q"], "kept");
    Ok(())
}

#[tokio::test]
async fn page_number_pagination_without_a_size_stops_at_an_empty_page() -> TestResult {
    let addr = server().await?;
    let pagination = Pagination::Page {
        items: "body.results".into(),
        param: "page".into(),
        start: 1,
        page_size: None,
        max_pages: None,
    };
    let output = call(&paginated(addr, "/pages", pagination)).await?;
    assert_eq!(output["items"], json!([1, 2, 3, 4, 5]));
    assert_eq!(output["pages"], 4);
    Ok(())
}

#[tokio::test]
async fn offset_pagination_advances_by_the_limit() -> TestResult {
    let addr = server().await?;
    let pagination = Pagination::Offset {
        items: "body.rows".into(),
        param: "offset".into(),
        limit_param: "limit".into(),
        limit: 2,
        max_pages: None,
    };
    let output = call(&paginated(addr, "/offset", pagination)).await?;
    assert_eq!(output["items"], json!([1, 2, 3, 4, 5]));
    assert_eq!(output["pages"], 3);
    Ok(())
}

#[tokio::test]
async fn max_pages_the_default_cap_and_the_test_run_cap_stop_endless_apis() -> TestResult {
    let addr = server().await?;
    let endless = |max_pages| Pagination::Cursor {
        items: "body.data".into(),
        cursor: "body.next".into(),
        param: "cursor".into(),
        max_pages,
    };
    let two = call(&paginated(addr, "/forever", endless(Some(2)))).await?;
    assert_eq!((two["items"].clone(), two["pages"].clone()), (json!([0, 1]), json!(2)));
    let default = call(&paginated(addr, "/forever", endless(None))).await?;
    assert_eq!(default["pages"], crate::model::kinds::DEFAULT_MAX_PAGES);
    let req = paginated(addr, "/forever", endless(None));
    let test_run = send(&local_client()?, &MemoryFiles::new(), "exec", &req, "key", &SendOptions::test_run())
        .await
        .map_err(|e| e.message)?;
    assert_eq!((test_run["items"].clone(), test_run["pages"].clone()), (json!([0, 1, 2]), json!(3)));
    Ok(())
}

#[tokio::test]
async fn a_missing_items_path_fails_terminally_naming_the_path() -> TestResult {
    let addr = server().await?;
    let pagination = Pagination::Cursor {
        items: "body.results".into(),
        cursor: "body.meta.next".into(),
        param: "c".into(),
        max_pages: None,
    };
    let error = call_error(&paginated(addr, "/cursor", pagination)).await?;
    assert!(!error.retryable);
    assert!(error.message.contains("`body.results`"), "{}", error.message);
    assert!(error.message.contains(&format!("page 1 of GET http://{addr}/cursor")), "{}", error.message);
    let not_array = Pagination::Link { items: "body.meta".into(), max_pages: None };
    let error = call_error(&paginated(addr, "/cursor", not_array)).await?;
    assert!(error.message.contains("`body.meta` is an object, not an array"), "{}", error.message);
    Ok(())
}

#[tokio::test]
async fn a_failing_page_fails_the_step_as_a_single_request_would() -> TestResult {
    let addr = server().await?;
    let pagination = Pagination::Cursor {
        items: "body.data".into(),
        cursor: "body.next".into(),
        param: "cursor".into(),
        max_pages: None,
    };
    let error = call_error(&paginated(addr, "/flaky", pagination)).await?;
    assert!(error.retryable);
    assert_eq!(error.retry_after_ms, Some(3_000));
    assert_eq!(error.message, format!("HTTP 503 Service Unavailable from GET http://{addr}/flaky"));
    Ok(())
}

#[tokio::test]
async fn a_next_link_to_a_blocked_address_is_refused_by_the_guard() -> TestResult {
    let addr = server().await?;
    let error =
        call_error(&paginated(addr, "/to-metadata", Pagination::Link { items: "body".into(), max_pages: None }))
            .await?;
    assert!(!error.retryable);
    assert!(error.message.starts_with("blocked by the outbound network guard"), "{}", error.message);
    Ok(())
}

#[tokio::test]
async fn a_next_link_to_another_origin_is_fetched_without_credentials() -> TestResult {
    let addr = server().await?;
    let mut req = paginated(addr, "/elsewhere", Pagination::Link { items: "body".into(), max_pages: None });
    req.query.insert("port".into(), json!(addr.port()));
    req.auth = Some(RenderedAuth::Bearer { token: "tok".into() });
    req.headers.insert("x-api-key".into(), json!("k"));
    let output = call(&req).await?;
    assert_eq!(output["items"], json!([{ "auth": "Bearer tok" }, { "auth": null }]));
    Ok(())
}

#[tokio::test]
async fn each_page_gets_its_own_generated_idempotency_key() -> TestResult {
    let addr = server().await?;
    let pagination = Pagination::Cursor {
        items: "body.data".into(),
        cursor: "body.next".into(),
        param: "cursor".into(),
        max_pages: Some(3),
    };
    let output = call(&paginated(addr, "/keys", pagination.clone())).await?;
    assert_eq!(output["items"], json!(["key", "key:page-2", "key:page-3"]));
    let mut own = paginated(addr, "/keys", pagination);
    own.headers.insert("Idempotency-Key".into(), json!("mine"));
    assert_eq!(call(&own).await?["items"], json!(["mine", "mine", "mine"]));
    Ok(())
}

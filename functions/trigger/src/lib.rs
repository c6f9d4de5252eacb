//! The conversions between lambda_http's request and response types and the
//! `http::Request<Bytes>` / `http::Response<Bytes>` that `sluice_shared::api::Api` serves.
//!
//! Invariant: the request handed on has the path and the raw query string the caller sent
//! (origin form, `/projects/p/sdk/triggers/w?a=1`), and a response body reaches the caller
//! byte for byte: UTF-8 bodies travel as text, anything else base64-encoded as binary.

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::uri::PathAndQuery;
use http::{HeaderValue, Request, Response};
use lambda_http::{Body, RequestExt};

/// Turns the request lambda_http parsed from the event into the API's request type.
pub fn into_api_request(request: lambda_http::Request) -> Request<Bytes> {
    let query = match request.uri().query() {
        Some(query) => Some(query.to_string()),
        // API Gateway REST events carry parsed parameters only: rebuild the query from them.
        None => request.query_string_parameters_ref().map(|params| params.to_query_string()),
    };
    let (mut parts, body) = request.into_parts();
    let path = parts.uri.path();
    let path_and_query = match query.as_deref() {
        Some(query) if !query.is_empty() => format!("{path}?{query}"),
        _ => path.to_string(),
    };
    match PathAndQuery::try_from(path_and_query) {
        Ok(path_and_query) => parts.uri = path_and_query.into(),
        Err(error) => tracing::warn!(%error, uri = %parts.uri, "request URI kept as received"),
    }
    let body = match body {
        Body::Empty => Bytes::new(),
        Body::Text(text) => Bytes::from(text),
        Body::Binary(bytes) => Bytes::from(bytes),
        // `Body` is non-exhaustive; any future variant is read through its byte view.
        other => Bytes::copy_from_slice(other.as_ref()),
    };
    Request::from_parts(parts, body)
}

/// Turns the API's response into the one lambda_http sends back.
///
/// lambda_http re-encodes a body by its `content-type` (textual types are decoded as text,
/// a missing type is assumed UTF-8), so a body that is not UTF-8 and has no type is labelled
/// `application/octet-stream` to make it travel as binary rather than be decoded lossily.
pub fn from_api_response(response: Response<Bytes>) -> Response<Body> {
    let (mut parts, body) = response.into_parts();
    let body = if body.is_empty() {
        Body::Empty
    } else {
        match String::from_utf8(body.to_vec()) {
            Ok(text) => Body::Text(text),
            Err(error) => {
                if !parts.headers.contains_key(CONTENT_TYPE) {
                    parts.headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
                }
                Body::Binary(error.into_bytes())
            }
        }
    };
    Response::from_parts(parts, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FUNCTION_URL_EVENT: &str = include_str!("../../../infra/events/trigger-function-url.json");

    #[test]
    fn a_function_url_event_keeps_method_path_raw_query_and_body() {
        let request = lambda_http::request::from_str(FUNCTION_URL_EVENT).expect("fixture parses");
        let request = into_api_request(request);
        assert_eq!(request.method(), http::Method::POST);
        assert_eq!(request.uri().path(), "/projects/p/sdk/triggers/w");
        assert_eq!(request.uri().query(), Some("source=fixture&tag=a&tag=b"));
        assert_eq!(request.headers().get("content-type").map(HeaderValue::as_bytes), Some(&b"application/json"[..]));
        let body: serde_json::Value = serde_json::from_slice(request.body()).expect("JSON body");
        assert_eq!(body["email"], "ada@example.com");
    }

    #[test]
    fn a_base64_body_arrives_as_its_bytes() {
        let mut event: serde_json::Value = serde_json::from_str(FUNCTION_URL_EVENT).expect("fixture is JSON");
        event["isBase64Encoded"] = true.into();
        event["body"] = "/wA=".into();
        let request = lambda_http::request::from_str(&event.to_string()).expect("event parses");
        assert_eq!(into_api_request(request).body().as_ref(), &[0xff, 0x00]);
    }

    #[test]
    fn an_event_without_body_or_query_gives_an_empty_body_and_bare_path() {
        let mut event: serde_json::Value = serde_json::from_str(FUNCTION_URL_EVENT).expect("fixture is JSON");
        event["rawQueryString"] = "".into();
        event["queryStringParameters"] = serde_json::Value::Null;
        event["body"] = serde_json::Value::Null;
        let request = lambda_http::request::from_str(&event.to_string()).expect("event parses");
        let request = into_api_request(request);
        assert_eq!(request.uri().to_string(), "/projects/p/sdk/triggers/w");
        assert!(request.body().is_empty());
    }

    #[test]
    fn json_responses_are_text_and_other_bytes_binary() {
        let json = Response::builder()
            .status(404)
            .header(CONTENT_TYPE, "application/json")
            .body(Bytes::from_static(br#"{"error":{}}"#))
            .expect("valid response");
        let json = from_api_response(json);
        assert_eq!(json.status(), 404);
        assert!(matches!(json.body(), Body::Text(text) if text == r#"{"error":{}}"#));

        let binary = from_api_response(Response::new(Bytes::from_static(&[0xff, 0xfe])));
        assert!(matches!(binary.body(), Body::Binary(bytes) if bytes == &[0xff, 0xfe]));
        assert_eq!(binary.headers()[CONTENT_TYPE], "application/octet-stream");

        assert!(matches!(from_api_response(Response::new(Bytes::new())).body(), Body::Empty));
    }
}

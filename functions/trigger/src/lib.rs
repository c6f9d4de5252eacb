//! The conversions between lambda_http's request and response types and the
//! `http::Request<Bytes>` / `http::Response<Bytes>` that `sluice_shared::api::Api` serves.
//!
//! Invariant: the request handed on has the path and the raw query string the caller sent
//! (origin form, `/projects/p/sdk/triggers/w?a=1`), and a response body reaches the caller
//! byte for byte: UTF-8 bodies of textual (or unstated) types travel as text, anything else
//! — files, images, text in another charset — base64-encoded as binary (`isBase64Encoded`).

use std::future::{Future, ready};
use std::pin::Pin;

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::uri::PathAndQuery;
use http::{HeaderValue, Request, Response};
use lambda_http::{Body, IntoResponse, RequestExt};

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

/// The response handed to lambda_http, sent exactly as built here.
///
/// lambda_http's own conversion of an `http::Response` re-encodes the body by its
/// `content-type`, decoding textual types as text in their charset — lossy for a file whose
/// bytes are not UTF-8. This type's [`IntoResponse`] hands the body over untouched, so the
/// choice made by [`from_api_response`] is final: `Body::Binary` becomes a base64 body with
/// `isBase64Encoded: true` in the Function URL (or API Gateway) response.
#[derive(Debug)]
pub struct LambdaAnswer(pub Response<Body>);

impl LambdaAnswer {
    pub fn into_inner(self) -> Response<Body> {
        self.0
    }
}

impl IntoResponse for LambdaAnswer {
    fn into_response(self) -> Pin<Box<dyn Future<Output = Response<Body>> + Send>> {
        Box::pin(ready(self.0))
    }
}

/// Turns the API's response into the one lambda_http sends back: empty, text (a UTF-8 body
/// of a textual or unstated type) or binary (everything else). A binary body without a type
/// is labelled `application/octet-stream`.
pub fn from_api_response(response: Response<Bytes>) -> LambdaAnswer {
    let (mut parts, body) = response.into_parts();
    let content_type =
        parts.headers.get(CONTENT_TYPE).map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned());
    let body = if body.is_empty() {
        Body::Empty
    } else {
        match String::from_utf8(body.to_vec()) {
            Ok(text) if content_type.as_deref().is_none_or(is_textual) => Body::Text(text),
            Ok(text) => Body::Binary(text.into_bytes()),
            Err(error) => {
                if content_type.is_none() {
                    parts.headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
                }
                Body::Binary(error.into_bytes())
            }
        }
    };
    LambdaAnswer(Response::from_parts(parts, body))
}

/// Media types whose UTF-8 bodies travel as text.
fn is_textual(content_type: &str) -> bool {
    let mime = content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    mime.starts_with("text/")
        || matches!(
            mime.as_str(),
            "application/json"
                | "application/javascript"
                | "application/xml"
                | "application/yaml"
                | "application/x-www-form-urlencoded"
        )
        || ["+json", "+xml", "+yaml"].iter().any(|suffix| mime.ends_with(suffix))
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
        let json = from_api_response(json).into_inner();
        assert_eq!(json.status(), 404);
        assert!(matches!(json.body(), Body::Text(text) if text == r#"{"error":{}}"#));

        let binary = from_api_response(Response::new(Bytes::from_static(&[0xff, 0xfe]))).into_inner();
        assert!(matches!(binary.body(), Body::Binary(bytes) if bytes == &[0xff, 0xfe]));
        assert_eq!(binary.headers()[CONTENT_TYPE], "application/octet-stream");

        assert!(matches!(from_api_response(Response::new(Bytes::new())).into_inner().body(), Body::Empty));
    }

    fn file_response(content_type: &str, bytes: &'static [u8]) -> Response<Bytes> {
        Response::builder()
            .status(200)
            .header(CONTENT_TYPE, content_type)
            .header("content-disposition", r#"inline; filename="pixel.png""#)
            .body(Bytes::from_static(bytes))
            .expect("valid response")
    }

    /// What lambda_http will send: the answer after its `IntoResponse`.
    async fn sent(answer: LambdaAnswer) -> Response<Body> {
        answer.into_response().await
    }

    #[tokio::test]
    async fn a_png_file_response_is_binary_base64_and_round_trips_byte_for_byte() {
        const PNG: &[u8] = &[
            0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52, 0xff, 0x00,
            0x80,
        ];
        let response = sent(from_api_response(file_response("image/png", PNG))).await;
        assert_eq!(response.headers()[CONTENT_TYPE], "image/png");
        assert_eq!(response.headers()["content-disposition"], r#"inline; filename="pixel.png""#);
        assert!(matches!(response.body(), Body::Binary(bytes) if bytes.as_slice() == PNG), "{:?}", response.body());
        // A binary body is serialized as base64 (lambda_http then sets isBase64Encoded).
        let encoded = serde_json::to_value(response.body()).expect("body serializes");
        assert_eq!(encoded, "iVBORw0KGgoAAAANSUhEUv8AgA==");
    }

    #[tokio::test]
    async fn binary_types_travel_as_binary_even_when_their_bytes_are_utf8() {
        let response = sent(from_api_response(file_response("image/png", b"\x89PNG-is-not-this"))).await;
        assert!(matches!(response.body(), Body::Binary(bytes) if bytes.as_slice() == b"\x89PNG-is-not-this"));
        let response = sent(from_api_response(file_response("application/octet-stream", b"abc"))).await;
        assert_eq!(serde_json::to_value(response.body()).expect("body serializes"), "YWJj");
    }

    #[tokio::test]
    async fn text_in_another_charset_is_not_decoded_lossily() {
        let response = sent(from_api_response(file_response("text/plain; charset=iso-8859-1", b"caf\xe9"))).await;
        assert!(matches!(response.body(), Body::Binary(bytes) if bytes.as_slice() == b"caf\xe9"));
        assert_eq!(serde_json::to_value(response.body()).expect("body serializes"), "Y2Fm6Q==");
        let text = sent(from_api_response(file_response("text/csv", b"a,b\n1,2"))).await;
        assert!(matches!(text.body(), Body::Text(body) if body == "a,b\n1,2"));
    }
}

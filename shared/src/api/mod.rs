//! The HTTP API, written once against `http::Request`/`Response` and served by the trigger
//! Lambda (through lambda_http) and by `sluice dev` (through axum).

use bytes::Bytes;
use http::{Request, Response};

use crate::runtime::Runtime;

/// Routes every inbound request.
#[derive(Clone)]
pub struct Api {
    runtime: Runtime,
}

impl Api {
    pub fn new(runtime: Runtime) -> Self {
        Api { runtime }
    }

    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// Handles one request. Never fails: errors become JSON error responses.
    pub async fn handle(&self, request: Request<Bytes>) -> Response<Bytes> {
        let _ = request;
        crate::error::ApiError::NotFound("no such route".into()).into_response()
    }
}

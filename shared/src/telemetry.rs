//! Traces of executions over OpenTelemetry, and the process's log output.
//!
//! Every execution is one trace, whichever processes and Lambda invocations run its parts, so
//! its ids are derived, never drawn: the trace id is the execution id's 16 UUID bytes
//! ([`trace_id`]) and the root span's id the first 8 bytes of SHA-256 of `sluice-root:` + the
//! execution id ([`root_span_id`]). A step attempt's span names that root as its parent
//! wherever it runs; the root itself is exported once, by whoever ends the execution, with
//! the execution's own start and end times ([`spans::export_root`]). An outbound request's span
//! is a child of the step attempt that sends it (the attempt's context travels with its
//! future, see [`StepSpan::instrument`]).
//!
//! Export is over OTLP HTTP/protobuf when `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set, and off otherwise: then [`init`] builds
//! nothing and every span function returns after one atomic load, allocating nothing. The
//! exporter is operator configuration: it does not go through the outbound guard
//! (`crate::net`), so it may target a collector on localhost. Spans never carry headers,
//! bodies, query strings or secrets.

mod ids;
pub mod logs;
mod spans;

use std::sync::OnceLock;

use opentelemetry::KeyValue;
use opentelemetry::trace::{SpanId, TraceId, TracerProvider as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};

pub use spans::{FaasTrigger, HttpSpan, StepSpan, export_root, invocation};

/// The standard variable that turns export on (the collector's base URL; `/v1/traces` is added).
pub const ENDPOINT_VAR: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
/// The standard traces-only endpoint (a full URL, used as it is).
pub const TRACES_ENDPOINT_VAR: &str = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT";
/// The service name when `OTEL_SERVICE_NAME` is unset.
pub const DEFAULT_SERVICE_NAME: &str = "sluice";

/// The exporter's provider (for flushing) and the tracer every span is built with; both unset
/// while export is off.
static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();
static TRACER: OnceLock<SdkTracer> = OnceLock::new();

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("the OTLP trace exporter cannot be built: {0}")]
    Exporter(String),
}

/// Whether spans are exported (one atomic load: the check every span function starts with).
#[inline]
pub fn enabled() -> bool {
    TRACER.get().is_some()
}

fn tracer() -> Option<&'static SdkTracer> {
    TRACER.get()
}

/// The trace id of an execution: its id without dashes (32 lower-case hex digits), or None if
/// the id is not a UUID.
pub fn trace_id(execution_id: &str) -> Option<String> {
    uuid::Uuid::try_parse(execution_id).ok().map(|id| id.simple().to_string())
}

fn trace_id_of(execution_id: &str) -> Option<TraceId> {
    uuid::Uuid::try_parse(execution_id).ok().map(|id| TraceId::from_bytes(*id.as_bytes()))
}

/// The id of an execution's root span: the first 8 bytes of SHA-256 of `sluice-root:` + id.
pub fn root_span_id(execution_id: &str) -> SpanId {
    let digest =
        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, format!("sluice-root:{execution_id}").as_bytes());
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest.as_ref()[..8]);
    SpanId::from_bytes(bytes)
}

/// Whether the standard variables ask for export.
pub fn configured() -> bool {
    [ENDPOINT_VAR, TRACES_ENDPOINT_VAR].iter().any(|var| std::env::var_os(var).is_some_and(|value| !value.is_empty()))
}

/// Turns export on if [`configured`], with `resource` added to the process's resource
/// attributes (`service.name` from `OTEL_SERVICE_NAME`, default [`DEFAULT_SERVICE_NAME`];
/// `OTEL_RESOURCE_ATTRIBUTES` is read too). Returns whether export is on. Spans are batched
/// on a thread of the SDK's own (`OTEL_BSP_*` tune it) and sent by a blocking client there.
pub fn init(resource: Vec<KeyValue>) -> Result<bool, TelemetryError> {
    if enabled() {
        return Ok(true);
    }
    if !configured() {
        return Ok(false);
    }
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .build()
        .map_err(|error| TelemetryError::Exporter(error.to_string()))?;
    let service = std::env::var("OTEL_SERVICE_NAME")
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| DEFAULT_SERVICE_NAME.to_string());
    let resource = Resource::builder().with_service_name(service).with_attributes(resource).build();
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_id_generator(ids::DerivedIds::default())
        .with_resource(resource)
        .build();
    let tracer = provider.tracer("sluice");
    // A concurrent `init` lost the race: its provider is dropped, the first one stays.
    if PROVIDER.set(provider).is_ok() {
        let _ = TRACER.set(tracer);
    }
    Ok(enabled())
}

/// A Lambda function's start: JSON logs ([`logs::init_lambda`]) and, if configured, export
/// with the FaaS resource attributes (`faas.name`, `faas.version`, `cloud.provider`,
/// `cloud.region`, from the variables Lambda sets). Each invocation then calls [`invocation`]
/// first and [`flush`] before it returns.
pub fn init_lambda() -> Result<bool, TelemetryError> {
    logs::init_lambda();
    let mut resource = vec![KeyValue::new("cloud.provider", "aws")];
    for (attribute, var) in [
        ("faas.name", "AWS_LAMBDA_FUNCTION_NAME"),
        ("faas.version", "AWS_LAMBDA_FUNCTION_VERSION"),
        ("cloud.region", "AWS_REGION"),
    ] {
        if let Ok(value) = std::env::var(var) {
            resource.push(KeyValue::new(attribute, value));
        }
    }
    init(resource)
}

/// Sends every finished span now (a Lambda calls it before each invocation returns: the
/// sandbox freezes after). Runs the SDK's blocking flush off the async workers.
pub async fn flush() {
    let Some(provider) = PROVIDER.get() else { return };
    let provider = provider.clone();
    match tokio::task::spawn_blocking(move || provider.force_flush()).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => tracing::warn!(%error, "could not export spans"),
        Err(error) => tracing::warn!(%error, "the span flush did not finish"),
    }
}

/// Flushes and stops the exporter (a process that exits).
pub async fn shutdown() {
    let Some(provider) = PROVIDER.get() else { return };
    let provider = provider.clone();
    match tokio::task::spawn_blocking(move || provider.shutdown()).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => tracing::warn!(%error, "could not export the last spans"),
        Err(error) => tracing::warn!(%error, "the span exporter did not stop"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_trace_id_is_the_execution_ids_uuid_bytes() {
        let id = "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b";
        assert_eq!(trace_id(id).as_deref(), Some("0193a1b2c3d47e5f8a9b0c1d2e3f4a5b"));
        assert_eq!(trace_id_of(id).map(|t| t.to_string()), trace_id(id));
    }

    #[test]
    fn an_id_that_is_not_a_uuid_has_no_trace() {
        assert_eq!(trace_id("not-a-uuid"), None);
        assert_eq!(trace_id(""), None);
    }

    #[test]
    fn the_root_span_id_is_derived_from_the_execution_id() {
        let a = root_span_id("0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b");
        assert_eq!(a, root_span_id("0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"));
        assert_ne!(a, root_span_id("0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5c"));
        assert_ne!(a, SpanId::INVALID);
    }

    #[test]
    fn without_an_endpoint_nothing_is_built() {
        // The unit tests never set the endpoint variables.
        if !configured() {
            assert!(!init(Vec::new()).expect("no exporter to build"));
            assert!(!enabled());
            let span = HttpSpan::start("GET", &url::Url::parse("https://example.com/").expect("url"));
            assert!(span.is_none());
        }
    }
}

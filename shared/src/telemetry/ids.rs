//! The SDK draws span and trace ids from its id generator, with no way to name them per span:
//! [`with_ids`] names the ids of the one span built inside its closure (an execution's root,
//! whose ids are derived from the execution id), on this thread only; every other span gets
//! random ids.

use std::cell::Cell;

use opentelemetry::trace::{SpanId, TraceId};
use opentelemetry_sdk::trace::{IdGenerator, RandomIdGenerator};

thread_local! {
    static NAMED: Cell<Option<(TraceId, SpanId)>> = const { Cell::new(None) };
}

/// Runs `build` (which must build one span synchronously) with its ids named.
pub(super) fn with_ids<T>(trace: TraceId, span: SpanId, build: impl FnOnce() -> T) -> T {
    NAMED.set(Some((trace, span)));
    let built = build();
    NAMED.set(None);
    built
}

#[derive(Debug, Default)]
pub(super) struct DerivedIds(RandomIdGenerator);

impl IdGenerator for DerivedIds {
    fn new_trace_id(&self) -> TraceId {
        NAMED.get().map_or_else(|| self.0.new_trace_id(), |(trace, _)| trace)
    }

    fn new_span_id(&self) -> SpanId {
        NAMED.get().map_or_else(|| self.0.new_span_id(), |(_, span)| span)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_ids_apply_inside_the_closure_only() {
        let ids = DerivedIds::default();
        let trace = TraceId::from_bytes([7; 16]);
        let span = SpanId::from_bytes([9; 8]);
        let named = with_ids(trace, span, || (ids.new_trace_id(), ids.new_span_id()));
        assert_eq!(named, (trace, span));
        assert_ne!(ids.new_span_id(), span);
        assert_ne!(ids.new_trace_id(), trace);
    }
}

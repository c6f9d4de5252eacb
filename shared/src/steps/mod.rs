//! Step executors.

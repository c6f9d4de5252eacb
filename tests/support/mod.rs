//! Helpers for the end-to-end tests: the local stack started in-process on a free port over
//! either backend, a fake third-party API, and an HTTP client speaking the Sluice API.

pub mod fake_api;
pub mod rie;
pub mod stack;

//! Sluice's runtime-independent core: the workflow model, dynamic-variable templates, the
//! execution engine (a pure state machine), the step executors, the ports the engine needs
//! from the outside and their adapters, and the HTTP handlers shared by the trigger Lambda
//! and `sluice dev`.
//!
//! Dependency rule: the domain (`model`, `template`, `condition`, `engine`, `record`,
//! `catalog`) is the crate `sluice-domain`, re-exported here, which Cargo keeps free of I/O
//! crates. Adapters live under `adapters`, behind the `sqlite` and `aws` features.

pub use sluice_domain::{catalog, condition, engine, model, record, template};

pub mod adapters;
pub mod api;
pub mod auth;
pub mod config;
#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
pub mod connect;
pub mod crypto;
pub mod deploy;
pub mod error;
pub mod fires;
pub mod idempotency;
pub mod messages;
pub mod net;
pub mod notifications;
pub mod oauth;
pub mod poll;
pub mod ports;
#[cfg(feature = "aws")]
pub mod recovery;
pub mod runner;
pub mod runtime;
pub mod scheduler;
pub mod settle;
#[cfg(feature = "lambda")]
pub mod sqs_batch;
pub mod start;
pub mod steps;
pub mod telemetry;
pub mod triggers;
pub mod waiter;
pub mod webhook_signature;
pub mod webhooks;

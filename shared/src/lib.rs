//! Sluice's runtime-independent core: the workflow model, dynamic-variable templates, the
//! execution engine (a pure state machine), the step executors, the ports the engine needs
//! from the outside and their adapters, and the HTTP handlers shared by the trigger Lambda
//! and `sluice dev`.
//!
//! Dependency rule: `model`, `template`, `condition` and `engine` do no I/O and depend on no
//! AWS, Lambda or HTTP-server crate. Adapters live under `adapters`, behind the `sqlite` and
//! `aws` features.

pub mod adapters;
pub mod api;
pub mod auth;
pub mod catalog;
pub mod condition;
pub mod config;
#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
pub mod connect;
pub mod crypto;
pub mod engine;
pub mod error;
pub mod messages;
pub mod model;
pub mod net;
pub mod oauth;
pub mod ports;
pub mod record;
#[cfg(feature = "aws")]
pub mod recovery;
pub mod runner;
pub mod runtime;
pub mod settle;
#[cfg(feature = "lambda")]
pub mod sqs_batch;
pub mod start;
pub mod steps;
pub mod template;
pub mod waiter;

//! Adapters for the ports: SQLite (embedded, `sqlite` feature) and DynamoDB + SQS (`aws`).
//!
//! Invariant: every adapter passes the same `crate::conformance` suites; where a backend
//! cannot behave exactly like the others, the difference is written down in that suite.

#[cfg(feature = "aws")]
pub mod dynamodb;
#[cfg(feature = "sqlite")]
pub mod sqlite;
#[cfg(feature = "aws")]
pub mod sqs;

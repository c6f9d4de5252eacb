//! Sluice's domain: what a workflow is and how an execution of it goes, with no I/O.
//!
//! - [`model`]: workflow and project definitions, loaded from YAML/JSON files and validated
//!   with every problem reported by file and path (the loader reads files, nothing more).
//! - [`template`] and [`condition`]: `{{ ... }}` dynamic variables and conditional operators.
//! - [`engine`]: the pure state machine, `decide(workflow, state, event) -> effects`.
//! - [`record`]: what an execution keeps (the Task History's data).
//! - [`catalog`]: the integration action catalog, data compiled in.
//!
//! The fence is Cargo's: this crate depends on no async runtime, HTTP client or server,
//! database or AWS/Lambda crate, so nothing here can do network or database I/O.

pub mod catalog;
pub mod condition;
pub mod engine;
pub mod model;
pub mod record;
pub mod template;

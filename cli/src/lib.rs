//! The `sluice` command's library: the local stack (also started in-process by the
//! end-to-end tests) and `sluice dev`.

pub mod aws;
pub mod demo;
pub mod dev;
pub mod history;
pub mod project;
pub mod remote;
pub mod server;
pub mod stack;
pub mod test_run;
pub mod watch;
pub mod workflow_env;

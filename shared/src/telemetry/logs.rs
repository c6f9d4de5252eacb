//! Log output. A Lambda writes one JSON object per line to stdout (CloudWatch keeps it as
//! structured fields); a terminal gets readable lines, coloured only when stderr is a
//! terminal, so a log sent to a file or a pipe holds no escape codes. At the default level a
//! step attempt writes at most one line (`step ended`, from the interpreter).

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::LevelFilter;

/// A Lambda's logs: JSON lines on stdout, at `AWS_LAMBDA_LOG_LEVEL` (Lambda's advanced logging
/// controls), else `RUST_LOG`, else info.
pub fn init_lambda() {
    let level = std::env::var("AWS_LAMBDA_LOG_LEVEL").or_else(|_| std::env::var("RUST_LOG"));
    let level = level.ok().and_then(|level| level.parse::<LevelFilter>().ok()).unwrap_or(LevelFilter::INFO);
    let filter = EnvFilter::builder().with_default_directive(level.into()).from_env_lossy();
    let _ = tracing_subscriber::fmt()
        .json()
        .with_current_span(false)
        .with_span_list(false)
        .with_target(false)
        .with_ansi(false)
        .with_env_filter(filter)
        .with_writer(std::io::stdout)
        .try_init();
}

/// A command's logs on stderr: `RUST_LOG`, else `default`; colour only on a terminal.
pub fn init_terminal(default: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| default.into());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

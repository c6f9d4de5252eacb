//! The dependency fence of the domain: the modules that make up Sluice's model and decisions
//! — `model`, `template`, `condition`, `engine`, `record` — do no network or database I/O
//! (the model loader reads workflow files, nothing more). This test reads their
//! sources and fails on any use of an I/O crate (tokio, reqwest, rusqlite, the AWS SDK,
//! Lambda, hyper, axum) or of a crate module that does I/O (adapters, the HTTP API, the
//! outbound client, the runner, ...). A test rather than a crate of their own: the domain and
//! the runtime share types in both directions today (`ports` holds the traits the runtime
//! implements and the limits the engine checks), and one crate keeps `cargo build` times and
//! the workspace simple; the fence is enforced by CI either way.

use std::path::{Path, PathBuf};

const DOMAIN: &[&str] =
    &["model", "model.rs", "template", "template.rs", "condition", "condition.rs", "engine", "record.rs"];

/// Crates a domain module may never name.
const IO_CRATES: &[&str] =
    &["tokio", "reqwest", "rusqlite", "aws_config", "aws_sdk_", "aws_lambda_events", "lambda_", "hyper", "axum"];

/// Modules of this crate that do I/O (or hold what does).
const IO_MODULES: &[&str] = &[
    "adapters",
    "api",
    "auth",
    "config",
    "conformance",
    "net",
    "runner",
    "runtime",
    "settle",
    "sqs_batch",
    "start",
    "steps",
    "waiter",
];

fn sources(path: &Path, found: &mut Vec<PathBuf>) {
    if path.is_dir() {
        let mut entries: Vec<PathBuf> =
            std::fs::read_dir(path).expect("read dir").map(|e| e.expect("entry").path()).collect();
        entries.sort();
        for entry in entries {
            sources(&entry, found);
        }
    } else if path.is_file() && path.extension().is_some_and(|e| e == "rs") {
        found.push(path.to_path_buf());
    }
}

/// The code of a line, without its comment.
fn code(line: &str) -> &str {
    line.split("//").next().unwrap_or("")
}

#[test]
fn the_domain_modules_use_no_io_crate_and_no_io_module() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    for entry in DOMAIN {
        sources(&root.join(entry), &mut files);
    }
    assert!(files.len() > 20, "the domain sources were not found under {}", root.display());
    let mut violations = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).expect("read source");
        for (n, line) in text.lines().enumerate() {
            let code = code(line);
            for name in IO_CRATES {
                if code.contains(&format!("{name}::")) || code.contains(&format!("use {name}")) {
                    violations.push(format!("{}:{}: uses `{name}`: {}", file.display(), n + 1, line.trim()));
                }
            }
            for module in IO_MODULES {
                if code.contains(&format!("crate::{module}::")) || code.contains(&format!("crate::{module};")) {
                    violations.push(format!("{}:{}: uses `crate::{module}`: {}", file.display(), n + 1, line.trim()));
                }
            }
        }
    }
    assert!(violations.is_empty(), "the domain must do no I/O:\n{}", violations.join("\n"));
}

#[test]
fn the_fence_catches_an_io_import() {
    assert!(code("use tokio::sync::Notify; // why").contains("tokio::"));
    assert!(!code("// tokio::spawn in a comment").contains("tokio::"));
}

//! The Function step: one JavaScript function `(parameters, libraries) => value` run in an
//! embedded QuickJS engine (rquickjs).
//!
//! `libraries` holds lodash (also as `_`), date-fns (`dateFns`) and uuid, vendored from npm
//! (see `function/libraries.rs`).
//!
//! Sandbox: only ECMAScript built-ins, the libraries and a capturing `console` exist — no `require`,
//! modules, `process`, `fetch`, timers, file system or network. `console.*` lines are captured
//! (at most 1000 lines / 64 KiB). The result crosses as JSON (`undefined` → null).
//!
//! Where it runs: a per-process pool of dedicated threads, one per core (`function/pool.rs`),
//! each reusing one QuickJS runtime; every run gets a fresh context in it and the runtime is
//! garbage-collected between runs, so nothing one run leaves behind reaches the next
//! (`function/engine.rs`). A runtime that a run left in a doubtful state (interrupted, out of
//! memory, stack overflow, panic) is replaced.
//!
//! Limits, each failure terminal and saying which limit was hit:
//! - time: `time_limit` of CPU time of the thread running the script (a busy machine does not
//!   shorten it), with a wall-clock ceiling of 3 × the limit + 1 s as a separate guard
//!   (`function/budget.rs`); enforced by an interrupt the script cannot catch;
//! - memory: `memory_mb` on top of what the runtime itself holds; hitting it fails the run
//!   even when the script catches the out-of-memory error (`function/watch.rs`);
//! - stack: 512 KiB.

use std::time::Duration;

use serde_json::{Value, json};

use crate::record::{MAX_JSON_DEPTH, StepError, too_deep};

mod budget;
mod engine;
mod libraries;
mod pool;
mod watch;

pub const DEFAULT_TIME_LIMIT: Duration = Duration::from_secs(5);
pub const MAX_TIME_LIMIT: Duration = Duration::from_secs(60);
pub const DEFAULT_MEMORY_MB: u32 = 64;
/// Below this the bundled libraries (about 3 MB loaded) may not fit.
pub const MIN_MEMORY_MB: u32 = 8;
pub const MAX_MEMORY_MB: u32 = 512;

/// What a successful run returned and printed.
#[derive(Debug, Clone, PartialEq)]
pub struct FunctionRun {
    pub output: Value,
    pub logs: Vec<String>,
}

/// Why a run failed, with what it printed before.
#[derive(Debug, Clone, PartialEq)]
pub struct FunctionFailure {
    pub error: StepError,
    pub logs: Vec<String>,
}

/// One run as a pool thread receives it, the limits already clamped.
#[derive(Debug, Clone)]
struct Request {
    code: String,
    parameters: Value,
    /// CPU time.
    time_limit: Duration,
    /// Wall-clock time, from when a thread takes the run ([`budget::wall_ceiling`]).
    wall_ceiling: Duration,
    memory_mb: u32,
}

impl Request {
    fn new(code: &str, parameters: Value, time_limit: Duration, memory_mb: u32) -> Request {
        let time_limit = time_limit.min(MAX_TIME_LIMIT);
        Request {
            code: code.to_string(),
            parameters,
            time_limit,
            wall_ceiling: budget::wall_ceiling(time_limit),
            memory_mb: memory_mb.clamp(MIN_MEMORY_MB, MAX_MEMORY_MB),
        }
    }
}

/// Runs `code` with `parameters` under the given limits, on the process's function threads.
pub async fn run(
    code: &str,
    parameters: Value,
    time_limit: Duration,
    memory_mb: u32,
) -> Result<FunctionRun, FunctionFailure> {
    let request = Request::new(code, parameters, time_limit, memory_mb);
    match pool::shared() {
        Ok(pool) => pool.run(request).await,
        Err(message) => Err(failure(message, None, Vec::new())),
    }
}

/// The run's result from the `__out` JSON the script left.
fn read_out(out: Option<String>, logs: Vec<String>, memory_mb: u32) -> Result<FunctionRun, FunctionFailure> {
    let Some(out) = out else {
        return Err(failure("the function's Promise never settled".into(), None, logs));
    };
    let out: Value = match serde_json::from_str(&out) {
        Ok(out) => out,
        Err(e) => return Err(failure(format!("the function's result could not be read: {e}"), None, logs)),
    };
    match (out.get("ok"), out.get("err")) {
        (Some(value), _) if too_deep(value) => {
            Err(failure(format!("the function's result is nested deeper than {MAX_JSON_DEPTH} levels"), None, logs))
        }
        (Some(value), _) => Ok(FunctionRun { output: value.clone(), logs }),
        (None, Some(message)) => {
            let stack = out.get("stack").and_then(Value::as_str).map(str::to_string);
            Err(classify(message.as_str().unwrap_or("error").to_string(), stack, memory_mb, logs))
        }
        _ => Err(failure("the function's result could not be read".into(), None, logs)),
    }
}

/// How the script reports an uncaught `null`.
const THREW_NULL: &str = "the function threw null";

/// The module every run's context evaluates first, before the request is known (so a pool
/// thread can prepare the next context while it waits): the memory watch, the lazy libraries,
/// a capturing console, and the run itself. Compiled once per runtime ([`engine::Engine::new`])
/// and loaded as bytecode into each fresh context.
///
/// Invariant: what the host reads back — the result text and the console lines — lives in the
/// module's own scope, out of the script's reach (it sees neither `__out` nor `__logs`), and is
/// read through exported functions that return primitives; the built-ins the module uses are
/// taken before any user code runs, so a script that replaces `JSON` or a prototype method
/// changes only its own values. The parameters arrive as JSON text and are parsed as data. `start`
/// runs once per context: a script that finds the module (`import()`) cannot run another.
fn setup_module() -> String {
    let (prelude, libraries) = (watch::PRELUDE, libraries::script());
    format!(
        r#"{prelude}{libraries}
const stringify = JSON.stringify, parse = JSON.parse, create = Object.create, toText = String, evaluate = eval;
const logs = create(null);
let count = 0, bytes = 0, dropped = 0, started = false, out;
const show = (x) => {{ if (typeof x === 'string') return x; try {{ const t = stringify(x); return t === undefined ? toText(x) : t; }} catch (e) {{ return toText(x); }} }};
const console = {{}};
for (const level of ['log', 'info', 'warn', 'error', 'debug']) {{
  console[level] = (...args) => {{
    let line = '';
    for (let i = 0; i < args.length && line.length <= {MAX_LOG_CHARS}; i++) line += (i > 0 ? ' ' : '') + show(args[i]);
    if (count < {MAX_LOG_LINES} && bytes + line.length <= {MAX_LOG_CHARS}) {{ logs[count++] = line; bytes += line.length; }} else {{ dropped++; }}
  }};
}}
globalThis.console = console;
export const start = async (code, parametersText) => {{
  if (started) throw new TypeError('a run starts once');
  started = true;
  try {{
    const f = evaluate('(' + code + '\n)');
    if (typeof f !== 'function') throw new TypeError('the code must be a function taking (parameters, libraries)');
    const value = await f(parse(parametersText), libraries);
    const text = stringify({{ ok: value === undefined ? null : value }});
    out = text === undefined ? '{{"ok":null}}' : text;
  }} catch (e) {{
    const message = e === null ? '{THREW_NULL} (QuickJS also throws null when the memory limit leaves no room for an error)' : e && e.name ? e.name + ': ' + e.message : toText(e);
    out = stringify({{ err: toText(message), stack: e && e.stack ? toText(e.stack) : null }});
  }}
}};
export const outputLength = () => typeof out === 'string' ? out.length : -1;
export const output = () => out;
export const lineCount = () => count;
export const line = (index) => logs[index];
export const droppedLines = () => dropped;
"#
    )
}

/// Console lines kept per run, and their total length in UTF-16 units.
const MAX_LOG_LINES: usize = 1000;
const MAX_LOG_CHARS: usize = 65_536;

/// A failure's error: out of memory is the memory limit; otherwise the JS message and line.
fn classify(message: String, stack: Option<String>, memory_mb: u32, logs: Vec<String>) -> FunctionFailure {
    if message.contains("out of memory") {
        return failure(format!("the function used more than its memory limit of {memory_mb} MB"), None, logs);
    }
    let line = stack.as_deref().and_then(line_of);
    let text = match line {
        Some(line) => format!("{message} (line {line})"),
        None => message,
    };
    failure(text, stack.map(|stack| json!({ "stack": stack, "line": line })), logs)
}

/// The line in the user's code from a QuickJS stack (`at f (<input>:3)`).
fn line_of(stack: &str) -> Option<u32> {
    let start = stack.find("<input>:").map(|i| i + "<input>:".len())?;
    let digits: String = stack[start..].chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

fn describe_exception(exception: &rquickjs::Value<'_>) -> String {
    if let Some(object) = exception.as_object() {
        let name: Option<String> = object.get("name").ok();
        let message: Option<String> = object.get("message").ok();
        if let Some(message) = message {
            return format!("{}: {message}", name.unwrap_or_else(|| "Error".into()));
        }
    }
    exception.as_string().and_then(|s| s.to_string().ok()).unwrap_or_else(|| "the function failed".into())
}

fn failure(message: String, details: Option<Value>, logs: Vec<String>) -> FunctionFailure {
    let mut error = StepError::terminal(message);
    error.details = details;
    FunctionFailure { error, logs }
}

fn format_duration(duration: Duration) -> String {
    if duration.subsec_millis() == 0 {
        format!("{}s", duration.as_secs())
    } else {
        format!("{}ms", duration.as_millis())
    }
}

#[cfg(test)]
mod tests;

//! The Function step: one JavaScript function `(parameters, libraries) => value` run in an
//! embedded QuickJS engine (rquickjs), on a blocking thread, in a fresh runtime per run.
//!
//! `libraries` holds lodash (also as `_`), date-fns (`dateFns`) and uuid, vendored from npm
//! (see `function/libraries.rs`).
//!
//! Sandbox: only ECMAScript built-ins, the libraries and a capturing `console` exist — no `require`,
//! modules, `process`, `fetch`, timers, file system or network. A CPU-time deadline (an
//! interrupt the script cannot catch), a memory limit and a stack limit bound every run;
//! each failure is terminal and says which limit was hit. `console.*` lines are captured
//! (at most 1000 lines / 64 KiB). The result crosses as JSON (`undefined` → null).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rquickjs::{Context, Runtime};
use serde_json::{Value, json};

use crate::record::StepError;

mod libraries;

pub const DEFAULT_TIME_LIMIT: Duration = Duration::from_secs(5);
pub const MAX_TIME_LIMIT: Duration = Duration::from_secs(60);
pub const DEFAULT_MEMORY_MB: u32 = 64;
/// Below this the bundled libraries (about 3 MB loaded) may not fit.
pub const MIN_MEMORY_MB: u32 = 8;
pub const MAX_MEMORY_MB: u32 = 512;
const STACK_BYTES: usize = 512 * 1024;

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

/// Runs `code` with `parameters` under the given limits.
pub async fn run(
    code: &str,
    parameters: Value,
    time_limit: Duration,
    memory_mb: u32,
) -> Result<FunctionRun, FunctionFailure> {
    let code = code.to_string();
    let time_limit = time_limit.min(MAX_TIME_LIMIT);
    let memory_mb = memory_mb.clamp(MIN_MEMORY_MB, MAX_MEMORY_MB);
    match tokio::task::spawn_blocking(move || run_blocking(&code, &parameters, time_limit, memory_mb)).await {
        Ok(result) => result,
        Err(join) => Err(failure(format!("the function's thread failed: {join}"), None, Vec::new())),
    }
}

fn run_blocking(
    code: &str,
    parameters: &Value,
    time_limit: Duration,
    memory_mb: u32,
) -> Result<FunctionRun, FunctionFailure> {
    let setup = |e: rquickjs::Error| failure(format!("the JavaScript engine could not start: {e}"), None, Vec::new());
    let runtime = Runtime::new().map_err(setup)?;
    runtime.set_memory_limit(usize::try_from(memory_mb).unwrap_or(64) * 1024 * 1024);
    runtime.set_max_stack_size(STACK_BYTES);
    let deadline = Instant::now() + time_limit;
    let timed_out = Arc::new(AtomicBool::new(false));
    let flag = timed_out.clone();
    runtime.set_interrupt_handler(Some(Box::new(move || {
        let over = Instant::now() >= deadline;
        if over {
            flag.store(true, Ordering::SeqCst);
        }
        over
    })));
    let context = Context::full(&runtime).map_err(setup)?;
    context.with(|ctx| libraries::install(&ctx)).map_err(setup)?;
    let script = script(code, parameters);
    let eval_error: Option<String> = context.with(|ctx| match ctx.eval::<(), _>(script) {
        Ok(()) => None,
        Err(_) => Some(describe_exception(&ctx.catch())),
    });
    while eval_error.is_none() && !timed_out.load(Ordering::SeqCst) {
        match runtime.execute_pending_job() {
            Ok(true) => continue,
            Ok(false) | Err(_) => break,
        }
    }
    let (out, logs) = context.with(|ctx| {
        let globals = ctx.globals();
        let out: Option<String> = globals.get("__out").ok();
        let mut logs: Vec<String> = globals.get("__logs").unwrap_or_default();
        let dropped: u32 = globals.get("__dropped").unwrap_or(0);
        if dropped > 0 {
            logs.push(format!("… {dropped} more console lines were dropped (at most 1000 lines / 64 KiB are kept)"));
        }
        (out, logs)
    });
    if timed_out.load(Ordering::SeqCst) {
        let limit = format_duration(time_limit);
        return Err(failure(format!("the function ran longer than its time limit of {limit}"), None, logs));
    }
    if let Some(message) = eval_error {
        return Err(classify(message, None, memory_mb, logs));
    }
    let Some(out) = out else {
        return Err(failure("the function's Promise never settled".into(), None, logs));
    };
    let out: Value = serde_json::from_str(&out)
        .map_err(|e| failure(format!("the function's result could not be read: {e}"), None, logs.clone()))?;
    match (out.get("ok"), out.get("err")) {
        (Some(value), _) => Ok(FunctionRun { output: value.clone(), logs }),
        (None, Some(message)) => {
            let stack = out.get("stack").and_then(Value::as_str).map(str::to_string);
            Err(classify(message.as_str().unwrap_or("error").to_string(), stack, memory_mb, logs))
        }
        _ => Err(failure("the function's result could not be read".into(), None, logs)),
    }
}

/// The script: the lazy libraries, a capturing console, then the user's function compiled by
/// an indirect eval (so syntax errors are catchable) and called; the outcome lands in `__out`
/// as JSON.
fn script(code: &str, parameters: &Value) -> String {
    let code = Value::String(code.to_string()).to_string();
    let libraries = libraries::script();
    format!(
        r#"{libraries}
globalThis.__logs = []; globalThis.__dropped = 0; let __bytes = 0;
const __show = (x) => {{ if (typeof x === 'string') return x; try {{ const t = JSON.stringify(x); return t === undefined ? String(x) : t; }} catch (e) {{ return String(x); }} }};
globalThis.console = {{}};
for (const level of ['log', 'info', 'warn', 'error', 'debug']) {{
  console[level] = (...args) => {{
    const line = args.map(__show).join(' ');
    if (__logs.length < 1000 && __bytes + line.length <= 65536) {{ __logs.push(line); __bytes += line.length; }} else {{ __dropped++; }}
  }};
}}
(async () => {{
  try {{
    const f = (0, eval)('(' + {code} + '\n)');
    if (typeof f !== 'function') throw new TypeError('the code must be a function taking (parameters, libraries)');
    const value = await f({parameters}, __libraries);
    const text = JSON.stringify({{ ok: value === undefined ? null : value }});
    globalThis.__out = text === undefined ? '{{"ok":null}}' : text;
  }} catch (e) {{
    const message = e === null ? 'the function threw null (QuickJS also throws null when the memory limit leaves no room for an error)' : e && e.name ? e.name + ': ' + e.message : String(e);
    globalThis.__out = JSON.stringify({{ err: message, stack: e && e.stack ? String(e.stack) : null }});
  }}
}})();
"#
    )
}

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

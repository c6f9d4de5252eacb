//! One QuickJS runtime, reused run after run on the pool thread that owns it.
//!
//! Invariant: every run gets a fresh `Context` — its own globals, built-in prototypes and
//! libraries — that is dropped when the run ends, and the runtime is garbage-collected before
//! the next one; nothing a script leaves behind is visible to a later run. The context may be
//! made ahead of the run ([`Engine::prepare`], after the previous run's GC), but no script
//! runs in it before its own. The runtime-wide
//! settings are set again for each run: the memory limit (the runtime's own baseline usage,
//! measured after the GC, plus the run's `memory_mb`, so the script gets exactly its budget
//! however much the runtime itself holds) and the interrupt handler (the run's
//! [`Deadline`] and [`Watch`]). A run that ends in a state we would not vouch for — stopped
//! by an interrupt, out of memory, a stack overflow, jobs still queued, or a baseline grown by
//! more than [`MAX_BASELINE_GROWTH`] — asks for the runtime to be replaced ([`Verdict`]).

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Instant;

use rquickjs::module::WriteOptions;
use rquickjs::{Context, Ctx, Function, Module, Object, Persistent, Runtime};
use serde_json::json;

use super::budget::{Deadline, Overrun, thread_cpu_time};
use super::watch::{self, Watch};
use super::{
    FunctionFailure, FunctionRun, MAX_LOG_LINES, Request, describe_exception, failure, format_duration, libraries,
};
use crate::steps::MAX_RECORD_BYTES;

const STACK_BYTES: usize = 512 * 1024;
const MIB: usize = 1024 * 1024;
/// A runtime whose usage after a run and a GC exceeds its fresh usage by more than this is
/// replaced (something is kept alive that should not be).
pub const MAX_BASELINE_GROWTH: usize = 2 * MIB;
/// The memory a context may use while it is prepared, before any run (it needs about 100 KiB).
const MIN_PREPARE_ROOM: usize = 8 * MIB;

/// Whether the runtime may serve another run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Keep,
    Replace,
}

pub struct Engine {
    runtime: Runtime,
    /// [`super::setup_module`] compiled to bytecode, loaded into every fresh context.
    setup: Vec<u8>,
    fresh_baseline: usize,
    baseline: usize,
    /// A context made since the last run ended, waiting for the next one ([`Engine::prepare`]).
    prepared: Option<Prepared>,
}

/// A fresh context that has evaluated the setup module and nothing else, with its watch.
struct Prepared {
    /// The setup module's exports (`start`, `output`, ...).
    exports: Persistent<Object<'static>>,
    context: Context,
    watch: Rc<Watch>,
}

/// The name the setup module is declared under.
const SETUP_MODULE: &str = "sluice:run";

impl Engine {
    pub fn new() -> rquickjs::Result<Engine> {
        let runtime = Runtime::new()?;
        runtime.set_max_stack_size(STACK_BYTES);
        // rquickjs caches the prototype of Rust-backed functions runtime-wide, from the first
        // context that makes one (keeping that context alive): let that be a context no script
        // ever runs in, so no run's context outlives it and no run's `Function.prototype` is
        // shared with another.
        // A base context (no more built-ins than rquickjs needs): it stays alive as long as the
        // runtime, and every garbage collection walks it.
        Context::base(&runtime)?.with(|ctx| Function::new(ctx, || ()).map(drop))?;
        // Compiled once, in a context of its own that is then dropped.
        let setup = Context::full(&runtime)?
            .with(|ctx| Module::declare(ctx, SETUP_MODULE, super::setup_module())?.write(WriteOptions::default()))?;
        runtime.run_gc();
        let baseline = usage(&runtime);
        Ok(Engine { runtime, setup, fresh_baseline: baseline, baseline, prepared: None })
    }

    /// Makes the next run's context now, while no run is waiting for it: [`Engine::run`] then
    /// only compiles and calls the function. The context's own memory still counts against
    /// that run (the baseline was measured before it). If this fails, the run makes its own.
    pub fn prepare(&mut self) {
        if self.prepared.is_none() {
            self.runtime.set_memory_limit(self.baseline.saturating_add(MIN_PREPARE_ROOM));
            self.prepared = self.new_context(Rc::new(Watch::default())).ok();
        }
    }

    /// A fresh context with the setup module evaluated in it.
    fn new_context(&self, watch: Rc<Watch>) -> rquickjs::Result<Prepared> {
        let context = Context::full(&self.runtime)?;
        let exports = context.with(|ctx| {
            watch::install(&ctx, &watch)?;
            libraries::install(&ctx)?;
            // SAFETY: `setup` is bytecode that this runtime's own QuickJS wrote from our own
            // source (`Engine::new`), never bytes from outside the process.
            #[expect(unsafe_code, reason = "rquickjs loads bytecode only through an unsafe call")]
            let module = unsafe { Module::load(ctx.clone(), &self.setup) }?;
            let (module, promise) = module.eval()?;
            // The module awaits nothing: its evaluation has settled (an error here is thrown).
            promise.finish::<()>()?;
            Ok::<_, rquickjs::Error>(Persistent::save(&ctx, module.namespace()?))
        })?;
        Ok(Prepared { exports, context, watch })
    }

    /// Runs one request in a fresh context, then collects garbage and says whether the
    /// runtime can be reused.
    pub fn run(&mut self, request: &Request) -> (Result<FunctionRun, FunctionFailure>, Verdict) {
        let limit = self.baseline.saturating_add(usize::try_from(request.memory_mb).unwrap_or(usize::MAX / MIB) * MIB);
        self.runtime.set_memory_limit(limit);
        let prepared = match self.prepared.take() {
            Some(prepared) => Ok(prepared),
            None => self.new_context(Rc::default()),
        };
        let watch = prepared.as_ref().map_or_else(|_| Rc::default(), |prepared| prepared.watch.clone());
        let overrun: Rc<Cell<Option<Overrun>>> = Rc::default();
        let deadline = Rc::new(RefCell::new(Deadline::start(
            request.time_limit,
            request.wall_ceiling,
            Instant::now(),
            thread_cpu_time(),
        )));
        self.runtime.set_interrupt_handler(Some(Box::new({
            let (watch, overrun, deadline) = (watch.clone(), overrun.clone(), deadline.clone());
            move || {
                if watch.out_of_memory.get() || overrun.get().is_some() {
                    return true;
                }
                let over = deadline.borrow_mut().check(Instant::now(), thread_cpu_time);
                overrun.set(over);
                over.is_some()
            }
        })));
        let outcome = prepared.and_then(|prepared| self.evaluate(prepared, request, &overrun));
        self.runtime.set_interrupt_handler(None);
        if overrun.get().is_none() {
            overrun.set(deadline.borrow_mut().check_at_end(Instant::now(), thread_cpu_time));
        }
        let (result, jobs_left) = match outcome {
            Ok(evaluated) => {
                let jobs_left = evaluated.jobs_left;
                (evaluated.result(request, &watch, overrun.get(), &deadline), jobs_left)
            }
            Err(setup) => {
                (Err(failure(format!("the JavaScript engine could not start: {setup}"), None, Vec::new())), true)
            }
        };
        self.runtime.run_gc();
        self.baseline = usage(&self.runtime);
        let overflowed = watch.stack_overflow.get()
            || result.as_ref().is_err_and(|failure| failure.error.message.contains(watch::STACK_OVERFLOW));
        let spoiled = watch.out_of_memory.get() || overflowed || overrun.get().is_some();
        let grown = self.baseline > self.fresh_baseline.saturating_add(MAX_BASELINE_GROWTH);
        let verdict = if spoiled || jobs_left || grown || self.runtime.is_job_pending() {
            Verdict::Replace
        } else {
            Verdict::Keep
        };
        (result, verdict)
    }

    fn evaluate(
        &self,
        prepared: Prepared,
        request: &Request,
        overrun: &Cell<Option<Overrun>>,
    ) -> rquickjs::Result<Evaluated> {
        let Prepared { exports, context, watch } = prepared;
        let parameters = request.parameters.to_string();
        let mut error: Option<String> = context.with(|ctx| {
            let started = exports.clone().restore(&ctx).and_then(|exports| {
                let start: Function<'_> = exports.get("start")?;
                start.call::<_, rquickjs::Value<'_>>((request.code.as_str(), parameters))
            });
            started.err().map(|_| describe_exception(&ctx.catch()))
        });
        while error.is_none() && overrun.get().is_none() && !watch.out_of_memory.get() {
            match self.runtime.execute_pending_job() {
                Ok(true) => continue,
                Ok(false) => break,
                Err(job) => {
                    error = Some(job.0.with(|ctx| describe_exception(&ctx.catch())));
                    break;
                }
            }
        }
        if error.as_deref().is_some_and(|message| message.contains("out of memory")) {
            watch.out_of_memory.set(true);
        }
        let jobs_left = self.runtime.is_job_pending();
        let left = context.with(|ctx| read_back(&ctx, exports));
        let (out, logs) = match left {
            Ok(left) => left,
            Err(e) => {
                error.get_or_insert_with(|| format!("the function's result could not be read: {e}"));
                (None, Vec::new())
            }
        };
        let (out, error) = match out {
            Some(Err(length)) => (None, error.or_else(|| Some(oversized(length)))),
            Some(Ok(out)) => (Some(out), error),
            None => (None, error),
        };
        Ok(Evaluated { error, out, logs, jobs_left })
    }
}

/// What the setup module kept of the run: the result JSON (or its length, when it is too
/// long to be recorded: it is not copied) and the console lines, each measured in the
/// sandbox before it is copied out.
#[expect(clippy::type_complexity, reason = "read once, destructured at once")]
fn read_back(
    ctx: &Ctx<'_>,
    exports: Persistent<Object<'static>>,
) -> rquickjs::Result<(Option<Result<String, usize>>, Vec<String>)> {
    let exports = exports.restore(ctx)?;
    let call = |name: &str| exports.get::<_, Function<'_>>(name);
    let length: f64 = call("outputLength")?.call(())?;
    let out = if length < 0.0 {
        None
    } else if length > MAX_RECORD_BYTES as f64 {
        Some(Err(length as usize))
    } else {
        call("output")?.call::<_, Option<String>>(())?.map(Ok)
    };
    let count: f64 = call("lineCount")?.call(())?;
    let line = call("line")?;
    let mut logs = Vec::new();
    for index in 0..(count.max(0.0) as usize).min(MAX_LOG_LINES) {
        if let Some(text) = line.call::<_, Option<String>>((index,))? {
            logs.push(text);
        }
    }
    let dropped: f64 = call("droppedLines")?.call(())?;
    if dropped > 0.0 {
        logs.push(format!(
            "… {dropped} more console lines were dropped (at most {MAX_LOG_LINES} lines / 64 KiB are kept)"
        ));
    }
    Ok((out, logs))
}

/// The failure of a run whose result is too long to be recorded.
fn oversized(length: usize) -> String {
    format!(
        "the function's result is {length} characters of JSON; a step may keep at most {MAX_RECORD_BYTES} bytes \
         (return less, e.g. only the fields the next steps use)"
    )
}

/// What one evaluation left: an error thrown out of the script or a job, the `__out` JSON,
/// the captured console lines.
struct Evaluated {
    error: Option<String>,
    out: Option<String>,
    logs: Vec<String>,
    jobs_left: bool,
}

impl Evaluated {
    /// The run's outcome. The limits come first — out of memory (a caught `null` included, see
    /// `watch.rs`), then time — whatever the script returned: it may have caught the error.
    fn result(
        self,
        request: &Request,
        watch: &Watch,
        overrun: Option<Overrun>,
        deadline: &RefCell<Deadline>,
    ) -> Result<FunctionRun, FunctionFailure> {
        let Evaluated { error, out, logs, .. } = self;
        let outcome = match error {
            Some(message) => Err(super::classify(message, None, request.memory_mb, logs.clone())),
            None => super::read_out(out, logs.clone(), request.memory_mb),
        };
        let uncaught_null = outcome.as_ref().is_err_and(|failure| failure.error.message.starts_with(super::THREW_NULL));
        if watch.null_thrown.get() && !uncaught_null {
            watch.out_of_memory.set(true);
        }
        if watch.out_of_memory.get() {
            let message = format!("the function used more than its memory limit of {} MB", request.memory_mb);
            return Err(failure(message, None, logs));
        }
        if let Some(overrun) = overrun {
            let spent = deadline.borrow();
            let (cpu, wall) = spent.used(Instant::now());
            let details = json!({ "cpu_ms": cpu.as_millis(), "wall_ms": wall.as_millis() });
            let limit = format_duration(request.time_limit);
            let message = match overrun {
                Overrun::CpuTime => format!("the function ran longer than its time limit of {limit}"),
                Overrun::WallClock => format!(
                    "the function ran longer than its wall-clock ceiling of {} (its CPU time limit is {limit})",
                    format_duration(request.wall_ceiling)
                ),
            };
            return Err(failure(message, Some(details), logs));
        }
        outcome
    }
}

/// The runtime's allocated bytes, as QuickJS counts them against the limit.
fn usage(runtime: &Runtime) -> usize {
    usize::try_from(runtime.memory_usage().malloc_size).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn request(code: &str, memory_mb: u32) -> Request {
        Request::new(code, json!({}), Duration::from_secs(5), memory_mb)
    }

    #[test]
    fn the_memory_limit_is_the_baseline_plus_the_budget_on_every_run() {
        let mut engine = Engine::new().expect("starts");
        let fresh = engine.baseline;
        assert!(fresh > 0 && fresh < MIB, "a bare runtime holds {fresh} bytes");
        for _ in 0..3 {
            let before = engine.baseline;
            let (result, verdict) = engine.run(&request("(p, { _ }) => _.VERSION", 8));
            assert_eq!(result.expect("runs").output, json!("4.17.21"));
            assert_eq!(verdict, Verdict::Keep);
            let limit = usize::try_from(engine.runtime.memory_usage().malloc_limit).unwrap_or(0);
            assert_eq!(limit, before + 8 * MIB, "the limit is set from the baseline before the run");
            assert!(
                engine.baseline < fresh + 64 * 1024,
                "the context and the libraries are freed: {fresh} → {}",
                engine.baseline
            );
        }
    }

    #[test]
    fn a_prepared_context_serves_exactly_one_run() {
        let mut engine = Engine::new().expect("starts");
        engine.prepare();
        assert!(engine.prepared.is_some());
        let (result, verdict) =
            engine.run(&request("() => { globalThis.leak = 1; Object.prototype.x = 1; return 1 }", 8));
        assert_eq!(result.expect("runs").output, json!(1));
        assert_eq!(verdict, Verdict::Keep);
        assert!(engine.prepared.is_none(), "used up by the run");
        engine.prepare();
        let (result, _) = engine.run(&request("() => [typeof leak, ({}).x ?? null]", 8));
        assert_eq!(result.expect("runs").output, json!(["undefined", null]));
    }

    #[test]
    fn a_run_that_hit_a_limit_asks_for_a_new_runtime() {
        let mut engine = Engine::new().expect("starts");
        for code in [
            "() => { const a = []; try { for (;;) a.push(new Array(100000).fill(1)) } catch (e) { return 1 } }",
            "() => { const f = (n) => f(n + 1) + 1; return f(0) }",
        ] {
            let (result, verdict) = engine.run(&request(code, 8));
            assert_eq!(verdict, Verdict::Replace, "{code}: {result:?}");
        }
        let mut engine = Engine::new().expect("starts");
        let (result, verdict) =
            engine.run(&Request::new("() => { for (;;) {} }", json!({}), Duration::from_millis(50), 8));
        assert!(result.is_err());
        assert_eq!(verdict, Verdict::Replace);
    }
}

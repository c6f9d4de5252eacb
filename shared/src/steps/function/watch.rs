//! What a run must not hide: that QuickJS ran out of memory (or stack), even when the script
//! catches the error.
//!
//! QuickJS reports a refused allocation as a catchable `InternalError: out of memory` (or as a
//! thrown `null` when not even the error object fits). A script can catch either and carry on
//! or return, so the run's own result cannot be trusted. QuickJS calls
//! `Error.prepareStackTrace` when an exception unwinds through a JavaScript frame, before any
//! `catch` sees it; [`PRELUDE`] installs a hook there, locked so that user code can neither
//! replace nor read it, that hands every exception to [`observe`] (Rust) first. `observe`
//! sets the run's [`Watch`] flags; the engine stops the script at its next interrupt check
//! once `out_of_memory` is set and fails the run whatever it returned.
//!
//! The hook keeps QuickJS calling it for every exception, a thrown `null` included: it
//! formats the `stack` text itself, stores it as the error's own `stack` property and returns
//! `undefined`, which leaves the engine's "backtrace already built" marker unset.
//!
//! A thrown `null` is out of memory for certain when fewer than [`PROBE_BYTES`] can still be
//! allocated. With more left it may still be one (the failing operation freed its temporaries
//! before the hook ran), and QuickJS itself throws `null` only when out of memory: so a run
//! in which a `null` is thrown and caught counts as having hit the memory limit, and only a
//! `null` that ends the run uncaught is reported as a thrown `null`.
//!
//! Known gaps, all needing the hook not to run: an exception that engine glue (not a
//! JavaScript frame) turns into a rejection handed to a `.then` callback as an argument (an
//! async function whose frame cannot be allocated, called from a promise job); a stack
//! overflow, where the hook has no stack to run on (the script sees `stack: null`; a caught
//! overflow therefore keeps its runtime, which QuickJS unwinds like any exception); a failed
//! hook call leaves the marker set until the script's next `catch`. An allocation failure
//! the engine swallows itself (a stack trace it could not build) fails no run.

use std::cell::Cell;
use std::rc::Rc;

use rquickjs::{Ctx, Function, Value};

/// A thrown `null` is taken for an out-of-memory error when this much cannot be allocated.
pub const PROBE_BYTES: usize = 4096;

/// QuickJS's stack overflow message.
pub const STACK_OVERFLOW: &str = "Maximum call stack size exceeded";

/// What the hook saw during one run.
#[derive(Debug, Default)]
pub struct Watch {
    /// An allocation failed.
    pub out_of_memory: Cell<bool>,
    /// A `null` was thrown while memory was left: a `throw null`, or an out-of-memory `null`
    /// after the failing operation freed its temporaries. If the script catches it, the run
    /// counts as out of memory.
    pub null_thrown: Cell<bool>,
    pub stack_overflow: Cell<bool>,
}

/// Installs `__observeError` as a global; [`PRELUDE`] moves it into its closure and deletes it.
pub fn install(ctx: &Ctx<'_>, watch: &Rc<Watch>) -> rquickjs::Result<()> {
    let watch = watch.clone();
    let observe_error =
        Function::new(ctx.clone(), move |ctx: Ctx<'_>, error: Value<'_>| observe(&ctx, &error, &watch))?;
    ctx.globals().set("__observeError", observe_error)
}

/// The JS that locks the hook into `Error.prepareStackTrace`; evaluated before anything else.
/// The stack lines keep QuickJS's own format (`    at f (<input>:3:11)`).
pub const PRELUDE: &str = r#"
(() => {
  const observe = globalThis.__observeError;
  delete globalThis.__observeError;
  const defineProperty = Object.defineProperty, hasOwn = Object.hasOwn;
  const describe = (sites) => {
    let text = '';
    if (sites === null || typeof sites !== 'object') return text;
    for (let i = 0; i < sites.length; i++) {
      const site = sites[i], name = site.getFunctionName(), file = site.getFileName(), line = site.getLineNumber();
      text += '    at ' + (name ? name : '<anonymous>');
      if (file === undefined || file === null) text += ' (native)';
      else text += ' (' + file + (line > 0 ? ':' + line + ':' + site.getColumnNumber() : '') + ')';
      text += '\n';
    }
    return text;
  };
  Error.prepareStackTrace = (error, sites) => {
    observe(error);
    try {
      if (error !== null && typeof error === 'object' && !hasOwn(error, 'stack'))
        defineProperty(error, 'stack', { value: describe(sites), writable: true, configurable: true });
    } catch (e) {}
    return undefined;
  };
  defineProperty(Error, 'prepareStackTrace', { get: () => undefined, set: () => {}, enumerable: false, configurable: false });
})();
"#;

/// Records what `error` says about the run: out of memory, stack overflow, or nothing.
/// Never throws: a failure to look is itself taken for the memory limit only when an
/// allocation fails.
fn observe(ctx: &Ctx<'_>, error: &Value<'_>, watch: &Watch) {
    if error.is_null() {
        if can_allocate(ctx) {
            watch.null_thrown.set(true);
        } else {
            watch.out_of_memory.set(true);
        }
        return;
    }
    let Some(object) = error.as_object().filter(|_| error.is_error()) else {
        return;
    };
    let message = match object.get::<_, Value<'_>>("message") {
        Ok(message) => message.into_string(),
        Err(_) => {
            // A message getter threw: clear its exception, this is not an engine error.
            let _exception = ctx.catch();
            return;
        }
    };
    let Some(message) = message else {
        return;
    };
    match message.to_string() {
        // QuickJS's message, exactly (a script's `new Error('out of memory')` counts too).
        Ok(text) if text == "out of memory" => watch.out_of_memory.set(true),
        Ok(text) if text.contains(STACK_OVERFLOW) || text.contains("stack overflow") => watch.stack_overflow.set(true),
        Ok(_) => {}
        Err(_) => {
            // Copying a message out failed: only for want of memory.
            let _exception = ctx.catch();
            if !can_allocate(ctx) {
                watch.out_of_memory.set(true);
            }
        }
    }
}

/// Whether [`PROBE_BYTES`] can still be allocated in the runtime (the probe is freed at once).
fn can_allocate(ctx: &Ctx<'_>) -> bool {
    let probe = "x".repeat(PROBE_BYTES);
    match rquickjs::String::from_str(ctx.clone(), &probe) {
        Ok(_) => true,
        Err(_) => {
            let _exception = ctx.catch();
            false
        }
    }
}

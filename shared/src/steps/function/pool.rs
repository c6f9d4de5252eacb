//! The threads that run Function steps: a fixed pool of dedicated OS threads (one per
//! available core by default, at least one), each owning one [`Engine`] — one QuickJS
//! runtime — that it reuses across runs, fed jobs through one channel.
//!
//! Invariant: a thread runs one job at a time, from the moment it takes it to its reply; the
//! time limits count from that moment, not from when the job was queued. Between jobs, after
//! replying, a thread gets ready for the next one: it starts a runtime if it has none and
//! prepares a fresh context in it ([`Engine::prepare`]), off the callers' path. A thread
//! replaces its runtime when a run says so ([`Verdict::Replace`]) or panics. The caller stops waiting
//! once the run's wall-clock ceiling (plus [`REPLY_GRACE`]) has passed since the thread took
//! the job, even if the thread is held in a host call and cannot be interrupted; the thread's
//! late answer is then dropped. A caller that gave up before its job started (its future was
//! dropped) costs nothing: the thread skips the job.

use std::num::NonZeroUsize;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, LazyLock, Mutex};
use std::thread;
use std::time::Duration;

use tokio::sync::oneshot;

use super::engine::{Engine, Verdict};
use super::{FunctionFailure, FunctionRun, Request, failure, format_duration};

/// How much longer than the run's wall-clock ceiling a caller waits for its thread.
pub const REPLY_GRACE: Duration = Duration::from_secs(1);
/// The pool threads' stack: QuickJS's own stack limit is 512 KiB; the rest is headroom for the
/// Rust frames around it.
const THREAD_STACK_BYTES: usize = 4 * 1024 * 1024;

type Reply = Result<FunctionRun, FunctionFailure>;

/// What a thread is asked to do.
enum Work {
    Run(Request),
    /// Hold the thread (tests of the caller-side ceiling: no sandboxed call can block).
    #[cfg(test)]
    Hold(Duration, Request),
}

struct Job {
    work: Work,
    started: oneshot::Sender<()>,
    reply: oneshot::Sender<Reply>,
}

pub struct Pool {
    jobs: Sender<Job>,
    #[cfg_attr(not(test), expect(dead_code, reason = "read by the tests"))]
    runtimes_started: Arc<AtomicUsize>,
}

/// The process's pool, started on first use with one thread per available core.
pub fn shared() -> Result<&'static Pool, String> {
    static SHARED: LazyLock<Result<Pool, String>> = LazyLock::new(|| {
        let threads = thread::available_parallelism().map_or(1, NonZeroUsize::get);
        Pool::new(threads).map_err(|e| format!("the function threads could not start: {e}"))
    });
    SHARED.as_ref().map_err(Clone::clone)
}

impl Pool {
    /// Starts `threads` threads (at least one). They stop when the pool is dropped.
    pub fn new(threads: usize) -> std::io::Result<Pool> {
        let (jobs, receiver) = channel::<Job>();
        let receiver = Arc::new(Mutex::new(receiver));
        let runtimes_started = Arc::new(AtomicUsize::new(0));
        for index in 0..threads.max(1) {
            let (receiver, runtimes_started) = (receiver.clone(), runtimes_started.clone());
            thread::Builder::new()
                .name(format!("sluice-function-{index}"))
                .stack_size(THREAD_STACK_BYTES)
                .spawn(move || serve(&receiver, &runtimes_started))?;
        }
        Ok(Pool { jobs, runtimes_started })
    }

    /// Runs `request` on the next free thread.
    pub async fn run(&self, request: Request) -> Reply {
        self.submit(Work::Run(request)).await
    }

    async fn submit(&self, work: Work) -> Reply {
        let patience = match &work {
            Work::Run(request) => request.wall_ceiling,
            #[cfg(test)]
            Work::Hold(_, request) => request.wall_ceiling,
        };
        let (started, started_rx) = oneshot::channel();
        let (reply, reply_rx) = oneshot::channel();
        let lost = || failure("the function's thread failed".into(), None, Vec::new());
        if self.jobs.send(Job { work, started, reply }).is_err() {
            return Err(lost());
        }
        if started_rx.await.is_err() {
            return Err(lost());
        }
        match tokio::time::timeout(patience.saturating_add(REPLY_GRACE), reply_rx).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(_)) => Err(lost()),
            Err(_) => Err(failure(
                format!(
                    "the function ran longer than its wall-clock ceiling of {} and its thread did not answer",
                    format_duration(patience)
                ),
                None,
                Vec::new(),
            )),
        }
    }

    /// How many runtimes the threads have created so far.
    #[cfg(test)]
    pub fn runtimes_started(&self) -> usize {
        self.runtimes_started.load(Ordering::SeqCst)
    }

    #[cfg(test)]
    async fn hold(&self, duration: Duration, request: Request) -> Reply {
        self.submit(Work::Hold(duration, request)).await
    }
}

/// A pool thread: takes jobs until the pool is dropped. Between jobs it keeps a runtime with
/// a prepared context ready, so a job finds one waiting.
fn serve(receiver: &Mutex<Receiver<Job>>, runtimes_started: &AtomicUsize) {
    let mut engine: Option<Engine> = None;
    loop {
        get_ready(&mut engine, runtimes_started);
        // Only `recv` runs under the lock, and it cannot panic: a poisoned lock is still sound.
        let job = match receiver.lock() {
            Ok(receiver) => receiver.recv(),
            Err(poisoned) => poisoned.into_inner().recv(),
        };
        let Ok(job) = job else { return };
        if job.started.send(()).is_err() {
            continue;
        }
        let reply = match job.work {
            Work::Run(request) => run_one(&mut engine, &request, runtimes_started),
            #[cfg(test)]
            Work::Hold(duration, request) => {
                thread::sleep(duration);
                run_one(&mut engine, &request, runtimes_started)
            }
        };
        if job.reply.send(reply).is_err() {
            tracing::debug!("a Function step's caller stopped waiting before its run ended");
        }
    }
}

/// Starts a runtime if the thread has none, and prepares its next context.
fn get_ready(slot: &mut Option<Engine>, runtimes_started: &AtomicUsize) {
    if slot.is_none() {
        match Engine::new() {
            Ok(engine) => {
                runtimes_started.fetch_add(1, Ordering::SeqCst);
                *slot = Some(engine);
            }
            Err(e) => tracing::warn!("a JavaScript runtime could not start: {e}"),
        }
    }
    if let Some(engine) = slot.as_mut()
        && catch_unwind(AssertUnwindSafe(|| engine.prepare())).is_err()
    {
        tracing::error!("preparing a Function step's context panicked; its runtime was replaced");
        *slot = None;
    }
}

/// Runs one request on the thread's runtime (starting one if [`get_ready`] could not),
/// dropping the runtime afterwards when the run spoiled it or panicked.
fn run_one(slot: &mut Option<Engine>, request: &Request, runtimes_started: &AtomicUsize) -> Reply {
    let engine = match slot {
        Some(engine) => engine,
        None => match Engine::new() {
            Ok(engine) => {
                runtimes_started.fetch_add(1, Ordering::SeqCst);
                slot.insert(engine)
            }
            Err(e) => return Err(failure(format!("the JavaScript engine could not start: {e}"), None, Vec::new())),
        },
    };
    match catch_unwind(AssertUnwindSafe(|| engine.run(request))) {
        Ok((reply, Verdict::Keep)) => reply,
        Ok((reply, Verdict::Replace)) => {
            *slot = None;
            reply
        }
        Err(_) => {
            *slot = None;
            tracing::error!("a Function step's run panicked; its runtime was replaced");
            Err(failure("the JavaScript engine failed during the run".into(), None, Vec::new()))
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn request(code: &str) -> Request {
        Request::new(code, json!({}), Duration::from_millis(100), 16)
    }

    #[tokio::test]
    async fn a_thread_held_past_the_ceiling_is_not_waited_for() {
        let pool = Pool::new(1).expect("starts");
        let begun = std::time::Instant::now();
        // The ceiling of a 100 ms run is 1.3 s; the caller gives up 1 s later.
        let reply = pool.hold(Duration::from_secs(4), request("() => 1")).await;
        let failure = reply.expect_err("not waited for");
        assert_eq!(
            failure.error.message,
            "the function ran longer than its wall-clock ceiling of 1300ms and its thread did not answer"
        );
        assert!(!failure.error.retryable);
        let waited = begun.elapsed();
        assert!(waited >= Duration::from_millis(2300) && waited < Duration::from_millis(3900), "{waited:?}");
        // The thread comes back and serves the next job.
        assert_eq!(pool.run(request("() => 2")).await.expect("runs").output, json!(2));
    }

    #[tokio::test]
    async fn queued_jobs_wait_for_a_free_thread_without_spending_their_time() {
        let pool = Arc::new(Pool::new(1).expect("starts"));
        let busy = tokio::spawn({
            let pool = pool.clone();
            async move { pool.run(Request::new("() => { for (;;) {} }", json!({}), Duration::from_millis(600), 16)).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        // Queued behind a 600 ms run: its own 100 ms budget starts when the thread takes it.
        let queued = pool.run(request("() => { let n = 0; for (let i = 0; i < 1e5; i++) n += i; return n }")).await;
        assert_eq!(queued.expect("runs").output, json!(4_999_950_000u64));
        let busy = busy.await.expect("joins").expect_err("times out");
        assert_eq!(busy.error.message, "the function ran longer than its time limit of 600ms");
    }
}

//! The local stack: the HTTP API, step-runner workers and the response waiter as tasks of
//! one process, over any `Store` and `Queue` (SQLite for `sluice dev`; the end-to-end tests
//! also run it on DynamoDB + SQS). Workers ack a message only when its handler succeeded;
//! a failed message comes back after its visibility timeout, as on SQS.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use sluice_shared::adapters::sqlite::Sqlite;
use sluice_shared::api::Api;
use sluice_shared::error::ApiError;
use sluice_shared::ports::{ConsumeQueue, QueueName, Received};
use sluice_shared::runner::Runner;
use sluice_shared::runtime::Runtime;
use sluice_shared::waiter::Waiter;
use tokio::net::TcpListener;

use crate::server::ServerLimits;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// How long a received message stays invisible before it is delivered again (the default
/// of [`StackOptions::visibility`]).
pub const VISIBILITY: Duration = Duration::from_secs(30);
/// Messages one worker receives and handles at a time.
const RECEIVE_BATCH: usize = 10;
/// How long one receive call waits for messages.
const RECEIVE_WAIT: Duration = Duration::from_secs(1);

#[derive(Debug, Clone)]
pub struct StackOptions {
    /// Where the HTTP API listens; port 0 picks a free port.
    pub addr: SocketAddr,
    /// Step-runner workers, each handling one message at a time.
    pub workers: usize,
    /// Also serve the demo CRM the bundled examples call (`sluice dev` only).
    pub demo_routes: bool,
    /// The HTTP server's timeouts and connection limit.
    pub limits: ServerLimits,
    /// The recovery sweep over a SQLite store (`sluice dev`), if any.
    pub sweep: Option<Sweep>,
    /// How long a received message stays invisible before it is delivered again
    /// ([`VISIBILITY`]).
    pub visibility: Duration,
    /// Run the scheduler's tick this often (`sluice dev`: every second); None: never (tests
    /// tick by hand with a manual clock).
    pub scheduler_every: Option<Duration>,
}

/// How often `sluice dev` ticks the scheduler: every-second schedules fire on time, and a
/// tick with nothing due is one indexed read.
pub const SCHEDULER_EVERY: Duration = Duration::from_secs(1);

/// Ticks the scheduler every `every` until stopped.
async fn scheduler(runner: Runner, every: Duration, mut stopped: watch::Receiver<bool>) {
    let settings = sluice_shared::scheduler::SchedulerSettings::default();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stopped.wait_for(|stop| *stop) => return,
        }
        match sluice_shared::scheduler::tick(&runner, &settings, None, Duration::from_secs(30)).await {
            Ok(report) if report.started + report.skipped + report.missed > 0 => {
                tracing::info!(
                    started = report.started,
                    skipped = report.skipped,
                    missed = report.missed,
                    "scheduler tick"
                );
            }
            Ok(_) => {}
            Err(error) => tracing::error!(%error, "the scheduler tick failed"),
        }
    }
}

/// The recovery sweep: every `every`, executions `running` or `waiting` for longer than
/// `stuck_after` that no queued or in-flight message mentions are resumed from their first
/// step (recorded steps replay without running again), so none stays stuck.
#[derive(Debug, Clone)]
pub struct Sweep {
    pub store: Sqlite,
    pub every: Duration,
    pub stuck_after: Duration,
}

impl Sweep {
    /// The sweep `sluice dev` runs: every minute, for executions stuck 15 minutes.
    pub fn dev(store: Sqlite) -> Sweep {
        Sweep { store, every: Duration::from_secs(60), stuck_after: Duration::from_secs(15 * 60) }
    }
}

/// Runs `sweep` until stopped.
async fn sweep(sweep: Sweep, runner: Runner, mut stopped: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(sweep.every) => {}
            _ = stopped.wait_for(|stop| *stop) => return,
        }
        let stuck_after = i64::try_from(sweep.stuck_after.as_millis()).unwrap_or(i64::MAX);
        let before = sluice_shared::record::now().timestamp_millis().saturating_sub(stuck_after);
        let stuck = match sweep.store.stuck_executions(before, 100).await {
            Ok(stuck) => stuck,
            Err(error) => {
                tracing::error!(%error, "the recovery sweep could not read the executions");
                continue;
            }
        };
        for execution_id in stuck {
            if let Err(error) = runner.resume(&execution_id).await {
                tracing::error!(execution = %execution_id, %error, "the recovery sweep could not resume an execution");
            }
        }
    }
}

/// A running local stack; dropping it (or `shutdown`) stops every task.
pub struct LocalStack {
    pub addr: SocketAddr,
    pub base_url: String,
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

impl LocalStack {
    /// Binds the listener and starts the server, the workers and the waiter; the workers
    /// consume `consumer` (the queue `runtime` sends to).
    pub async fn start(
        runtime: Runtime,
        consumer: Arc<dyn ConsumeQueue>,
        options: StackOptions,
    ) -> anyhow::Result<LocalStack> {
        Ok(LocalStack::bind(options).await?.start(runtime, consumer))
    }

    /// Binds the listener only, so that its address is known (port 0) before the runtime is
    /// built and the stack is set up. Nothing answers until [`BoundStack::start`]: a client
    /// that connects in between waits in the listener's backlog.
    pub async fn bind(options: StackOptions) -> anyhow::Result<BoundStack> {
        let listener =
            TcpListener::bind(options.addr).await.with_context(|| format!("cannot listen on {}", options.addr))?;
        let addr = listener.local_addr()?;
        Ok(BoundStack { listener, addr, base_url: format!("http://{addr}"), options })
    }

    /// Stops accepting requests and messages, and waits for the tasks to end.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        while self.tasks.join_next().await.is_some() {}
    }
}

/// A stack whose listener is bound but which serves nothing yet (see [`LocalStack::bind`]).
pub struct BoundStack {
    pub addr: SocketAddr,
    pub base_url: String,
    listener: TcpListener,
    options: StackOptions,
}

impl BoundStack {
    /// Starts the server on the bound listener, the workers and the waiter; the workers
    /// consume `consumer` (the queue `runtime` sends to).
    pub fn start(self, runtime: Runtime, consumer: Arc<dyn ConsumeQueue>) -> LocalStack {
        let BoundStack { listener, addr, base_url, options } = self;
        let (stop, stopped) = watch::channel(false);
        let mut tasks = JoinSet::new();

        let api = Api::new(runtime.clone());
        let max_body = runtime.settings.max_body_bytes;
        let mut app = axum::Router::new().fallback(move |request: Request| {
            let api = api.clone();
            async move { serve(&api, request, max_body).await }
        });
        if options.demo_routes {
            app = app.merge(crate::demo::routes());
        }
        tasks.spawn(crate::server::serve(listener, app, stopped.clone(), options.limits));

        for _ in 0..options.workers.max(1) {
            let runner = Runner::new(runtime.clone());
            let queue = consumer.clone();
            tasks.spawn(consume(queue, QueueName::Steps, options.visibility, stopped.clone(), move |message| {
                let runner = runner.clone();
                async move {
                    let handled = if message.dead_letter {
                        runner.dead_lettered(&message.body).await
                    } else {
                        runner.handle(&message.body, message.receive_count).await
                    };
                    (message.receipt, handled.map_err(|e| e.to_string()))
                }
            }));
        }
        if let Some(every) = options.scheduler_every {
            tasks.spawn(scheduler(Runner::new(runtime.clone()), every, stopped.clone()));
        }
        if let Some(options) = options.sweep.clone() {
            tasks.spawn(sweep(options, Runner::new(runtime.clone()), stopped.clone()));
        }
        let waiter = Waiter::new(runtime.clone());
        tasks.spawn(consume(consumer, QueueName::Responses, options.visibility, stopped, move |message| {
            let waiter = waiter.clone();
            async move {
                let handled = if message.dead_letter {
                    waiter.dead_lettered(&message.body).await
                } else {
                    waiter.handle(&message.body).await
                };
                (message.receipt, handled.map_err(|e| e.to_string()))
            }
        }));

        LocalStack { addr, base_url, stop, tasks }
    }
}

impl Drop for LocalStack {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        self.tasks.abort_all();
    }
}

async fn serve(api: &Api, request: Request, max_body: usize) -> Response {
    let (parts, body) = request.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, max_body).await else {
        let too_large = ApiError::PayloadTooLarge { size: max_body + 1, limit: max_body };
        return too_large.into_response().map(Body::from);
    };
    let response = api.handle(http::Request::from_parts(parts, bytes)).await;
    response.map(Body::from)
}

/// Receives and handles messages of one queue until stopped: up to [`RECEIVE_BATCH`] at a
/// time, handled concurrently (as the Lambda event source hands a batch to one invocation).
async fn consume<F, Fut>(
    queue: Arc<dyn ConsumeQueue>,
    name: QueueName,
    visibility: Duration,
    mut stopped: watch::Receiver<bool>,
    handle: F,
) where
    F: Fn(Received) -> Fut,
    Fut: std::future::Future<Output = (String, Result<(), String>)> + Send + 'static,
{
    loop {
        if *stopped.borrow() {
            return;
        }
        let received = tokio::select! {
            r = queue.receive(name, RECEIVE_BATCH, RECEIVE_WAIT, visibility) => r,
            _ = stopped.changed() => return,
        };
        let messages = match received {
            Ok(messages) => messages,
            Err(error) => {
                tracing::error!(queue = name.as_str(), %error, "receive failed");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let mut handling = JoinSet::new();
        for message in messages {
            handling.spawn(handle(message));
        }
        while let Some(joined) = handling.join_next().await {
            match joined {
                Ok((receipt, Ok(()))) => {
                    if let Err(error) = queue.ack(name, &receipt).await {
                        tracing::error!(queue = name.as_str(), %error, "ack failed; the message will be handled again");
                    }
                }
                Ok((_, Err(error))) => {
                    tracing::warn!(queue = name.as_str(), %error, "message failed; it will be delivered again");
                }
                Err(error) => tracing::error!(queue = name.as_str(), %error, "message handler panicked"),
            }
        }
    }
}

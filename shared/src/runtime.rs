//! Everything a handler needs, built once per process (Lambda cold start or `sluice dev`).

use std::{sync::Arc, time::Duration};

use crate::connect::Connect;
use crate::net::HttpClient;
use crate::ports::{SendQueue, StartExecution, Store};
use crate::settle::Signals;

/// The default time a synchronous caller waits for a Response step.
pub const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(55);
/// The largest trigger request body accepted (DynamoDB items are at most 400 KB).
pub const DEFAULT_MAX_BODY_BYTES: usize = 256 * 1024;
/// Inline steps stop being started after this long in one segment.
pub const DEFAULT_SEGMENT_BUDGET: Duration = Duration::from_secs(20);
/// When the recovery message of an execution whose first segment runs inline comes due: later
/// than any segment can still be running a step (the budget, plus the longest step, plus a
/// margin), so it only ever finds a segment that died.
pub const DEFAULT_RECOVERY_DELAY: Duration = Duration::from_secs(90);

/// See [`Settings::inline_fan_out_items`].
pub const DEFAULT_INLINE_FAN_OUT_ITEMS: usize = 100;

/// What kind of process runs the handlers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Host {
    /// A long-lived process (`sluice dev`): work may go on after an answer is sent, so
    /// asynchronous executions run their first segment here too.
    Local,
    /// A Lambda function: frozen once it has answered, so an inline segment hands what is
    /// left to the queue as soon as the caller is answered, and an asynchronous execution's
    /// first step goes to the queue at once.
    Lambda,
}

#[derive(Debug, Clone)]
pub struct Settings {
    /// How long a synchronous caller waits before getting 542.
    pub response_timeout: Duration,
    /// How soon a waiting caller first looks at the store for an answer settled by another
    /// process (an answer settled in this process wakes it at once); the interval grows.
    pub poll_interval: Duration,
    /// Trigger request bodies larger than this get 413.
    pub max_body_bytes: usize,
    /// Inline steps stop being started after this long in one segment.
    pub segment_budget: Duration,
    /// See [`DEFAULT_RECOVERY_DELAY`].
    pub recovery_delay: Duration,
    pub host: Host,
    /// Fan-outs of at most this many items whose branches never wait (no Delay, no nested
    /// fan-out) run their branches inside the segment, `concurrency` at a time.
    pub inline_fan_out_items: usize,
    /// Values of `{{env.NAME}}`.
    pub env: std::collections::BTreeMap<String, String>,
    /// What schedules and polls take as now (the system's; tests move a manual one).
    pub clock: crate::scheduler::Clock,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            response_timeout: DEFAULT_RESPONSE_TIMEOUT,
            poll_interval: Duration::from_millis(50),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            segment_budget: DEFAULT_SEGMENT_BUDGET,
            recovery_delay: DEFAULT_RECOVERY_DELAY,
            host: Host::Local,
            inline_fan_out_items: DEFAULT_INLINE_FAN_OUT_ITEMS,
            env: Default::default(),
            clock: crate::scheduler::Clock::System,
        }
    }
}

/// The composition root: the services every handler is built from, once per process. Each
/// function takes the one it uses: the store's ports, the queue, the starter, or the
/// [`Connect`] service (the connect layer's one door).
#[derive(Clone)]
pub struct Runtime {
    pub store: Arc<dyn Store>,
    pub queue: Arc<dyn SendQueue>,
    /// Creates executions together with their first messages.
    pub starter: Arc<dyn StartExecution>,
    pub http: HttpClient,
    pub settings: Settings,
    /// Wakes callers waiting in this process for their answers.
    pub signals: Arc<Signals>,
    /// Connected users, the gate every start passes, users' secrets.
    pub connect: Arc<Connect>,
    /// The rule that runs the scheduler, where there is one (AWS); deploys switch it.
    pub schedule_rule: Option<Arc<dyn crate::ports::ScheduleRule>>,
    /// Executions cancelled through this process: its segments stop at their next step.
    pub cancels: Arc<Cancels>,
}

/// The ids of executions cancelled through this process (Task History `cancel`), so that a
/// segment running here stops before its next step without reading the store. Bounded: past
/// [`Cancels::CAPACITY`] ids it starts over (segments then notice from the store).
#[derive(Debug, Default)]
pub struct Cancels(std::sync::Mutex<std::collections::HashSet<String>>);

impl Cancels {
    pub const CAPACITY: usize = 10_000;

    pub fn insert(&self, execution_id: &str) {
        let mut ids = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if ids.len() >= Self::CAPACITY {
            ids.clear();
        }
        ids.insert(execution_id.to_string());
    }

    pub fn contains(&self, execution_id: &str) -> bool {
        let ids = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        !ids.is_empty() && ids.contains(execution_id)
    }
}

/// The `{{env.NAME}}` variable holding the stack's own base URL (`sluice dev` sets it, e.g.
/// `http://127.0.0.1:8787`); OAuth callbacks go to `<it>/oauth/callback`.
pub const BASE_URL_ENV: &str = "SLUICE_BASE_URL";

impl Runtime {
    pub fn new(
        store: Arc<dyn Store>,
        queue: Arc<dyn SendQueue>,
        starter: Arc<dyn StartExecution>,
        http: HttpClient,
        settings: Settings,
    ) -> Self {
        let connect = Arc::new(Connect::new(store.clone(), None, http.clone(), settings.env.clone(), settings.host));
        Runtime {
            store,
            queue,
            starter,
            http,
            settings,
            signals: Arc::default(),
            connect,
            schedule_rule: None,
            cancels: Arc::default(),
        }
    }

    /// The runtime with the rule that runs the scheduler (AWS).
    pub fn with_schedule_rule(mut self, rule: Arc<dyn crate::ports::ScheduleRule>) -> Self {
        self.connect.set_schedule_rule(rule.clone());
        self.schedule_rule = Some(rule);
        self
    }

    /// The runtime with `keys` to seal users' secrets with (without them secrets can be
    /// neither stored nor read).
    pub fn with_keys(self, keys: Arc<dyn crate::crypto::KeyWrap>) -> Self {
        let settings = &self.settings;
        let connect = Arc::new(Connect::new(
            self.store.clone(),
            Some(keys),
            self.http.clone(),
            settings.env.clone(),
            settings.host,
        ));
        Runtime { connect, ..self }
    }
}

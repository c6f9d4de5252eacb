//! Everything a handler needs, built once per process (Lambda cold start or `sluice dev`).

use std::{sync::Arc, time::Duration};

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
        }
    }
}

/// The ports and clients, shared by every handler.
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
    /// Connected users this process has recorded, so a user's record is written once per
    /// process rather than on every request.
    known_users: Arc<std::sync::Mutex<std::collections::HashSet<(String, String)>>>,
    /// Seals users' secrets (credentials, `password` settings); without it they cannot be
    /// stored or read.
    pub keys: Option<Arc<dyn crate::crypto::KeyWrap>>,
    /// One lock per credential record being refreshed, so steps of this process refresh a
    /// token once.
    refresh_locks: Arc<std::sync::Mutex<std::collections::HashMap<String, Arc<tokio::sync::Mutex<()>>>>>,
    /// Client-credentials access tokens this process fetched, with when they stop being used.
    client_tokens: Arc<std::sync::Mutex<std::collections::HashMap<String, (String, std::time::Instant)>>>,
}

/// The `{{env.NAME}}` variable holding the stack's own base URL (`sluice dev` sets it, e.g.
/// `http://127.0.0.1:8787`); OAuth callbacks go to `<it>/oauth/callback`.
pub const BASE_URL_ENV: &str = "SLUICE_BASE_URL";

/// How many (project, user) pairs a process remembers as recorded before it starts over.
const KNOWN_USERS: usize = 100_000;

impl Runtime {
    pub fn new(
        store: Arc<dyn Store>,
        queue: Arc<dyn SendQueue>,
        starter: Arc<dyn StartExecution>,
        http: HttpClient,
        settings: Settings,
    ) -> Self {
        Runtime {
            store,
            queue,
            starter,
            http,
            settings,
            signals: Arc::default(),
            known_users: Arc::default(),
            keys: None,
            refresh_locks: Arc::default(),
            client_tokens: Arc::default(),
        }
    }

    /// A client-credentials token kept under `key` that is still good.
    pub fn client_token(&self, key: &str) -> Option<String> {
        let tokens = self.client_tokens.lock().ok()?;
        tokens.get(key).filter(|(_, until)| *until > std::time::Instant::now()).map(|(token, _)| token.clone())
    }

    /// Keeps a client-credentials token for `lifetime`.
    pub fn keep_client_token(&self, key: &str, token: &str, lifetime: Duration) {
        if let Ok(mut tokens) = self.client_tokens.lock() {
            let now = std::time::Instant::now();
            tokens.retain(|_, (_, until)| *until > now);
            tokens.insert(key.to_string(), (token.to_string(), now + lifetime));
        }
    }

    /// The lock refreshes of the credential record `key` take turns on.
    pub fn refresh_lock(&self, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        let Ok(mut locks) = self.refresh_locks.lock() else { return Arc::default() };
        if locks.len() > KNOWN_USERS {
            locks.retain(|_, lock| Arc::strong_count(lock) > 1);
        }
        locks.entry(key.to_string()).or_default().clone()
    }

    /// The runtime with `keys` to seal users' secrets with.
    pub fn with_keys(self, keys: Arc<dyn crate::crypto::KeyWrap>) -> Self {
        Runtime { keys: Some(keys), ..self }
    }

    /// Records the connected user `user_id` of `project_id` unless this process did already
    /// (a user exists from their first valid token).
    pub async fn known_user(&self, project_id: &str, user_id: &str) -> Result<(), crate::ports::StoreError> {
        let key = (project_id.to_string(), user_id.to_string());
        if self.known_users.lock().is_ok_and(|known| known.contains(&key)) {
            return Ok(());
        }
        self.store.ensure_user(project_id, user_id).await?;
        if let Ok(mut known) = self.known_users.lock() {
            if known.len() >= KNOWN_USERS {
                known.clear();
            }
            known.insert(key);
        }
        Ok(())
    }
}

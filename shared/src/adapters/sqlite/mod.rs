//! The embedded backend: one SQLite database holds projects, workflow versions, executions,
//! step records, settled responses, execution files, fan-out items and branch results, the
//! connect layer's records, claimed idempotency keys, the schedule ledger, polling seen-sets,
//! kept webhook deliveries, failure notification destinations, and both queues (with their dead letters).
//!
//! Invariants: the one `Connection` is only touched under its mutex on a blocking thread
//! (`spawn_blocking`), never on an async worker; the schema is brought up to date by numbered
//! migrations keyed on `PRAGMA user_version` before any other statement runs; timestamps are
//! integer milliseconds since the epoch and JSON values are stored as TEXT, so everything
//! round-trips exactly.

mod connect;
mod executions;
mod fan_out;
mod files;
mod history;
mod idempotency;
mod notifications;
mod queue;
mod retention;
pub use retention::{EXPIRY_BATCH, Expired};
mod start;
mod triggers;
mod workflows;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::DateTime;
use rusqlite::{Connection, TransactionBehavior};
use tokio::sync::Notify;

use crate::ports::StoreError;
use crate::record::Timestamp;

/// How many times a message may be received before it moves to the dead letters.
pub const DEFAULT_MAX_RECEIVES: u32 = 5;

/// How long a writer waits for another connection's lock on the database file.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Schema migrations, applied in order; `PRAGMA user_version` is how many have been applied.
/// Never edit a published entry: add a new one.
/// 1: the initial schema. 2: step logs (a JSON array, NULL when empty) and execution files.
/// 3: the test-run flag of executions (0 for executions written before), fan-out items and
/// completed fan-out branches. 4: which call counted a branch (`counted_by`, NULL for
/// branches counted before and for inline batches). 5: the connect layer's integrations,
/// users, enablement, settings and sealed credentials. 6: app events. 7: idempotency keys.
/// 8: the credentials' identity index (empty for credentials written before: they have no
/// identity). 9: the schedule ledger, polling seen-sets and kept webhook deliveries. 10: the
/// delivered webhook event ids. 11: Task History's columns and indexes. 12: failure
/// notification destinations. 13: bulk jobs. 14: the indexes retention deletes by.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE projects (
    id                     TEXT PRIMARY KEY,
    signing_public_key_pem TEXT NOT NULL,
    api_key_sha256         TEXT NOT NULL,
    created_at_ms          INTEGER NOT NULL
);
CREATE TABLE workflow_versions (
    project_id     TEXT NOT NULL,
    workflow_id    TEXT NOT NULL,
    version        INTEGER NOT NULL,
    definition     TEXT NOT NULL,
    deployed_at_ms INTEGER NOT NULL,
    PRIMARY KEY (project_id, workflow_id, version)
);
CREATE TABLE deployed (
    project_id  TEXT NOT NULL,
    workflow_id TEXT NOT NULL,
    version     INTEGER NOT NULL,
    PRIMARY KEY (project_id, workflow_id),
    FOREIGN KEY (project_id, workflow_id, version)
        REFERENCES workflow_versions (project_id, workflow_id, version)
);
CREATE TABLE executions (
    id                   TEXT PRIMARY KEY,
    project_id           TEXT NOT NULL,
    workflow_id          TEXT NOT NULL,
    workflow_version     INTEGER NOT NULL,
    user_id              TEXT NOT NULL,
    status               TEXT NOT NULL,
    started_at_ms        INTEGER NOT NULL,
    ended_at_ms          INTEGER,
    trigger              TEXT NOT NULL,
    response_deadline_ms INTEGER,
    error                TEXT
);
CREATE TABLE step_attempts (
    execution_id  TEXT NOT NULL,
    step          TEXT NOT NULL,
    attempt       INTEGER NOT NULL,
    status        TEXT NOT NULL,
    input         TEXT NOT NULL,
    output        TEXT,
    error         TEXT,
    started_at_ms INTEGER NOT NULL,
    ended_at_ms   INTEGER NOT NULL,
    PRIMARY KEY (execution_id, step, attempt)
);
CREATE TABLE responses (
    execution_id TEXT PRIMARY KEY,
    response     TEXT NOT NULL
);
CREATE TABLE messages (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    queue         TEXT NOT NULL,
    body          TEXT NOT NULL,
    visible_at_ms INTEGER NOT NULL,
    receipt       TEXT,
    receive_count INTEGER NOT NULL DEFAULT 0,
    sent_at_ms    INTEGER NOT NULL
);
CREATE INDEX messages_by_visibility ON messages (queue, visible_at_ms, id);
CREATE UNIQUE INDEX messages_by_receipt ON messages (receipt);
CREATE TABLE dead_letters (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    queue         TEXT NOT NULL,
    body          TEXT NOT NULL,
    receive_count INTEGER NOT NULL,
    sent_at_ms    INTEGER NOT NULL,
    dead_at_ms    INTEGER NOT NULL
);
CREATE INDEX dead_letters_by_queue ON dead_letters (queue, id);
"#,
    r#"
ALTER TABLE step_attempts ADD COLUMN logs TEXT;
CREATE TABLE files (
    execution_id TEXT NOT NULL,
    id           TEXT NOT NULL,
    name         TEXT NOT NULL,
    mime_type    TEXT NOT NULL,
    size         INTEGER NOT NULL,
    bytes        BLOB NOT NULL,
    PRIMARY KEY (execution_id, id)
);
"#,
    r#"
ALTER TABLE executions ADD COLUMN test INTEGER NOT NULL DEFAULT 0;
CREATE TABLE fan_out_items (
    execution_id TEXT NOT NULL,
    fan_out_key  TEXT NOT NULL,
    item_index   INTEGER NOT NULL,
    item         TEXT NOT NULL,
    PRIMARY KEY (execution_id, fan_out_key, item_index)
);
CREATE TABLE fan_out_branches (
    execution_id TEXT NOT NULL,
    fan_out_key  TEXT NOT NULL,
    branch_index INTEGER NOT NULL,
    result       TEXT NOT NULL,
    PRIMARY KEY (execution_id, fan_out_key, branch_index)
);
"#,
    r#"
ALTER TABLE fan_out_branches ADD COLUMN counted_by TEXT;
"#,
    r#"
CREATE TABLE integrations (
    project_id TEXT NOT NULL,
    name       TEXT NOT NULL,
    record     TEXT NOT NULL,
    PRIMARY KEY (project_id, name)
);
CREATE TABLE users (
    project_id    TEXT NOT NULL,
    user_id       TEXT NOT NULL,
    name          TEXT,
    email         TEXT,
    timezone      TEXT,
    created_at_ms INTEGER NOT NULL,
    PRIMARY KEY (project_id, user_id)
);
CREATE TABLE enablement (
    project_id TEXT NOT NULL,
    user_id    TEXT NOT NULL,
    kind       TEXT NOT NULL,
    target     TEXT NOT NULL,
    enabled    INTEGER NOT NULL,
    PRIMARY KEY (project_id, user_id, kind, target)
);
CREATE TABLE settings (
    project_id TEXT NOT NULL,
    user_id    TEXT NOT NULL,
    scope      TEXT NOT NULL,
    setting_id TEXT NOT NULL,
    value      TEXT NOT NULL,
    PRIMARY KEY (project_id, user_id, scope, setting_id)
);
CREATE TABLE credentials (
    project_id  TEXT NOT NULL,
    user_id     TEXT NOT NULL,
    integration TEXT NOT NULL,
    record      TEXT NOT NULL,
    PRIMARY KEY (project_id, user_id, integration)
);
"#,
    // 6: the app events a project declares.
    r#"
CREATE TABLE app_events (
    project_id TEXT PRIMARY KEY,
    events     TEXT NOT NULL
);
CREATE TABLE test_requests (
    project_id    TEXT NOT NULL,
    workflow_id   TEXT NOT NULL,
    token_sha256  TEXT,
    expires_at_ms INTEGER,
    sample        TEXT,
    PRIMARY KEY (project_id, workflow_id)
);
"#,
    // 7: claimed idempotency keys, with what their first request was answered; the index
    // finds expired rows to clean up.
    r#"
CREATE TABLE idempotency_keys (
    project_id      TEXT NOT NULL,
    route           TEXT NOT NULL,
    caller          TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    request_hash    TEXT NOT NULL,
    answer          TEXT NOT NULL,
    token           TEXT NOT NULL,
    state           TEXT NOT NULL,
    claimed_at_ms   INTEGER NOT NULL,
    expires_at_ms   INTEGER NOT NULL,
    PRIMARY KEY (project_id, route, caller, idempotency_key)
);
CREATE INDEX idempotency_keys_by_expiry ON idempotency_keys (expires_at_ms);
"#,
    // 8: one row per identity entry of a user's credentials (`users_by_identity` reads the
    // primary key); the second index finds a user's rows to replace or remove.
    r#"
CREATE TABLE credential_identities (
    project_id     TEXT NOT NULL,
    integration    TEXT NOT NULL,
    identity_key   TEXT NOT NULL,
    identity_value TEXT NOT NULL,
    user_id        TEXT NOT NULL,
    PRIMARY KEY (project_id, integration, identity_key, identity_value, user_id)
);
CREATE INDEX credential_identities_by_user ON credential_identities (project_id, user_id, integration);
"#,
    // 9: the schedule ledger (the partial index lists due rows in (next fire, key) order, never
    // parked ones), polling seen-sets, and kept webhook deliveries (listed by id, newest first:
    // per project by the primary key, per integration and unrouted by their indexes; the last
    // index finds expired rows to delete).
    r#"
CREATE TABLE schedules (
    project_id        TEXT NOT NULL,
    workflow_id       TEXT NOT NULL,
    user_id           TEXT NOT NULL,
    next_fire_ms      INTEGER,
    version           INTEGER NOT NULL,
    zone              TEXT NOT NULL,
    last_fire_ms      INTEGER,
    last_execution_id TEXT,
    fired             INTEGER NOT NULL,
    skipped           INTEGER NOT NULL,
    missed            INTEGER NOT NULL,
    last_note         TEXT,
    updated_at_ms     INTEGER NOT NULL,
    PRIMARY KEY (project_id, workflow_id, user_id)
);
CREATE INDEX schedules_due ON schedules (next_fire_ms, project_id, workflow_id, user_id)
    WHERE next_fire_ms IS NOT NULL;
CREATE TABLE poll_seen (
    project_id  TEXT NOT NULL,
    workflow_id TEXT NOT NULL,
    user_id     TEXT NOT NULL,
    keys        TEXT NOT NULL,
    version     INTEGER NOT NULL,
    PRIMARY KEY (project_id, workflow_id, user_id)
);
CREATE TABLE webhook_deliveries (
    project_id     TEXT NOT NULL,
    id             TEXT NOT NULL,
    integration    TEXT NOT NULL,
    received_at_ms INTEGER NOT NULL,
    unrouted       INTEGER NOT NULL,
    record         TEXT NOT NULL,
    PRIMARY KEY (project_id, id)
);
CREATE INDEX webhook_deliveries_by_integration ON webhook_deliveries (project_id, integration, id);
CREATE INDEX webhook_deliveries_unrouted ON webhook_deliveries (project_id, id) WHERE unrouted = 1;
CREATE INDEX webhook_deliveries_by_age ON webhook_deliveries (received_at_ms);
"#,
    // 10: the event ids kept deliveries named, for recognising redeliveries (written in the
    // delivery's transaction; the index finds expired rows to delete).
    r#"
CREATE TABLE webhook_events (
    project_id     TEXT NOT NULL,
    integration    TEXT NOT NULL,
    event_id       TEXT NOT NULL,
    delivery_id    TEXT NOT NULL,
    received_at_ms INTEGER NOT NULL,
    PRIMARY KEY (project_id, integration, event_id)
);
CREATE INDEX webhook_events_by_age ON webhook_events (received_at_ms);
"#,
    // 11: Task History. The columns the listing filters on (the trigger kind, backfilled from
    // the trigger data), search attributes (as JSON on the row, and one row each in
    // `execution_search`, its index), replays and redrives; one index per filter, each in
    // listing order (newest first), so a page reads only its rows.
    r#"
ALTER TABLE executions ADD COLUMN integration TEXT;
ALTER TABLE executions ADD COLUMN trigger_kind TEXT NOT NULL DEFAULT 'request';
ALTER TABLE executions ADD COLUMN search TEXT;
ALTER TABLE executions ADD COLUMN replay_of TEXT;
ALTER TABLE executions ADD COLUMN redrives INTEGER NOT NULL DEFAULT 0;
UPDATE executions SET trigger_kind = coalesce(json_extract(trigger, '$.kind'), 'request');
CREATE INDEX executions_history ON executions (project_id, started_at_ms, id);
CREATE INDEX executions_by_workflow ON executions (project_id, workflow_id, started_at_ms, id);
CREATE INDEX executions_by_user ON executions (project_id, user_id, started_at_ms, id);
CREATE INDEX executions_by_status ON executions (project_id, status, started_at_ms, id);
CREATE INDEX executions_by_integration ON executions (project_id, integration, started_at_ms, id);
CREATE INDEX executions_by_trigger ON executions (project_id, trigger_kind, started_at_ms, id);
CREATE INDEX executions_replays ON executions (replay_of, started_at_ms) WHERE replay_of IS NOT NULL;
CREATE TABLE execution_search (
    project_id    TEXT NOT NULL,
    key           TEXT NOT NULL,
    value         TEXT NOT NULL,
    started_at_ms INTEGER NOT NULL,
    execution_id  TEXT NOT NULL,
    PRIMARY KEY (project_id, key, value, started_at_ms, execution_id)
) WITHOUT ROWID;
"#,
    // 12: failure notification destinations (the record as JSON, its secret sealed).
    r#"
CREATE TABLE notification_destinations (
    project_id    TEXT NOT NULL,
    id            TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    record        TEXT NOT NULL,
    PRIMARY KEY (project_id, id)
);
"#,
    // 13: Task History's bulk jobs (the job as JSON, its revision for compare and swap).
    r#"
CREATE TABLE bulk_jobs (
    project_id TEXT NOT NULL,
    id         TEXT NOT NULL,
    revision   INTEGER NOT NULL,
    record     TEXT NOT NULL,
    PRIMARY KEY (project_id, id)
);
"#,
    // 14: retention. Expired executions are found by their start alone, and their search
    // rows by execution.
    r#"
CREATE INDEX executions_by_start ON executions (started_at_ms);
CREATE INDEX execution_search_by_execution ON execution_search (execution_id);
"#,
];

/// The embedded store and queue: implements `ProjectStore`, `WorkflowStore`,
/// `ExecutionStore`, `FileStore`, `FanOutStore`, the connect layer's stores,
/// `IdempotencyStore`, the triggers' stores and `Queue` over one SQLite database. Cheap to clone (shared
/// connection).
#[derive(Clone)]
pub struct Sqlite {
    conn: Arc<Mutex<Connection>>,
    /// A read-only connection to the same file (none in memory): see [`Sqlite::read`].
    reader: Option<Arc<Mutex<Connection>>>,
    /// Woken whenever a message is sent, so long-polling receivers return at once.
    sent: Arc<Notify>,
    max_receives: u32,
    /// How long an execution is kept after its start (see [`Sqlite::with_retention`]).
    retention: Duration,
}

/// Creates `dir` and its missing parents, readable by the owner only (0700 on Unix).
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// Creates `path` if it is missing, and makes it readable and writable by the owner only (0600).
fn make_private_file(path: &Path) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    drop(options.open(path)?);
    #[cfg(unix)]
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    Ok(())
}

impl std::fmt::Debug for Sqlite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sqlite").field("max_receives", &self.max_receives).finish_non_exhaustive()
    }
}

impl Sqlite {
    /// Opens (creating it and its parent folders if needed) the database file at `path`, in
    /// WAL mode with a busy timeout and foreign keys on, and migrates its schema.
    ///
    /// The folders it creates are the owner's only (0700) and so is the database file (0600,
    /// also when it exists already); SQLite gives its WAL and shared-memory files the mode of
    /// the database file.
    pub fn open(path: &Path) -> Result<Sqlite, StoreError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            create_private_dir(parent)
                .map_err(|e| StoreError::Backend(format!("cannot create {}: {e}", parent.display())))?;
        }
        make_private_file(path).map_err(|e| StoreError::Backend(format!("cannot create {}: {e}", path.display())))?;
        let conn =
            Connection::open(path).map_err(|e| StoreError::Backend(format!("cannot open {}: {e}", path.display())))?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(backend)?;
        let mode: String =
            conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0)).map_err(backend)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Backend(format!("{} refused WAL mode (journal_mode is {mode})", path.display())));
        }
        conn.pragma_update(None, "synchronous", "NORMAL").map_err(backend)?;
        let mut store = Sqlite::from_connection(conn)?;
        // A second connection for the reads that may run beside a write (WAL readers see the
        // last committed transaction and never wait for the writer), opened after the
        // migrations; it can only read.
        let reader =
            Connection::open(path).map_err(|e| StoreError::Backend(format!("cannot open {}: {e}", path.display())))?;
        reader.busy_timeout(BUSY_TIMEOUT).map_err(backend)?;
        reader.pragma_update(None, "query_only", true).map_err(backend)?;
        reader.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        store.reader = Some(Arc::new(Mutex::new(reader)));
        Ok(store)
    }

    /// A private database in memory, gone when the last clone is dropped (tests, demos).
    pub fn in_memory() -> Result<Sqlite, StoreError> {
        let conn = Connection::open_in_memory().map_err(backend)?;
        Sqlite::from_connection(conn)
    }

    /// Sets how many times a message may be received; the receive after that moves it to the
    /// dead letters instead of delivering it (SQS's `maxReceiveCount`). Default 5; at least 1.
    pub fn with_max_receives(mut self, max_receives: u32) -> Sqlite {
        self.max_receives = max_receives.max(1);
        self
    }

    /// Sets how long a statement waits for a lock another connection holds (default 5 s)
    /// before it fails with `database is locked`, a retryable [`StoreError::Backend`].
    pub fn with_busy_timeout(self, timeout: Duration) -> Result<Sqlite, StoreError> {
        {
            for conn in std::iter::once(&self.conn).chain(self.reader.as_ref()) {
                let conn =
                    conn.lock().map_err(|_| StoreError::Backend("the SQLite connection lock is poisoned".into()))?;
                conn.busy_timeout(timeout).map_err(backend)?;
            }
        }
        Ok(self)
    }

    /// Wakes long-polling receivers: a message was sent.
    fn wake_receivers(&self) {
        self.sent.notify_waiters();
    }

    fn from_connection(mut conn: Connection) -> Result<Sqlite, StoreError> {
        conn.pragma_update(None, "foreign_keys", "ON").map_err(backend)?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        migrate(&mut conn)?;
        Ok(Sqlite {
            conn: Arc::new(Mutex::new(conn)),
            reader: None,
            sent: Arc::new(Notify::new()),
            max_receives: DEFAULT_MAX_RECEIVES,
            retention: crate::retention::DEFAULT_RETENTION,
        })
    }

    /// Runs `f` with the connection on a blocking thread.
    async fn call<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        Self::on(Arc::clone(&self.conn), f).await
    }

    /// Runs the read `f` on the read-only connection (the one connection in memory), beside
    /// whatever the writing connection is doing: for the reads on a route's hot path whose
    /// answer a later write rechecks (a webhook delivery's lookup).
    async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        Self::on(Arc::clone(self.reader.as_ref().unwrap_or(&self.conn)), f).await
    }

    async fn on<T, F>(conn: Arc<Mutex<Connection>>, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        tokio::task::spawn_blocking(move || {
            let mut guard =
                conn.lock().map_err(|_| StoreError::Backend("the SQLite connection lock is poisoned".into()))?;
            f(&mut guard)
        })
        .await
        .map_err(|e| StoreError::Backend(format!("SQLite task failed: {e}")))?
    }
}

/// How many prepared statements the connection keeps: more than the adapter has, so that no
/// statement is ever prepared twice (preparing one costs more than running it).
const STATEMENT_CACHE: usize = 256;

/// `execute` and `query_row` through the connection's statement cache. Every statement of the
/// adapter runs this way (or through `prepare_cached`).
///
/// What makes SQLite re-prepare a cached statement every time its parameters are bound (seen
/// in profiles, checked by `hot_statements_are_prepared_once`), kept out of the hot paths:
/// a `LIMIT` bound as `?N` (it is written into the SQL as a number instead), and an `ORDER
/// BY` (the hot reads name the index whose order they want with `INDEXED BY` instead).
pub(super) trait Cached {
    fn run<P: rusqlite::Params>(&self, sql: &str, params: P) -> rusqlite::Result<usize>;
    fn row<T, P, F>(&self, sql: &str, params: P, f: F) -> rusqlite::Result<T>
    where
        P: rusqlite::Params,
        F: FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>;
}

impl Cached for Connection {
    fn run<P: rusqlite::Params>(&self, sql: &str, params: P) -> rusqlite::Result<usize> {
        self.prepare_cached(sql)?.execute(params)
    }

    fn row<T, P, F>(&self, sql: &str, params: P, f: F) -> rusqlite::Result<T>
    where
        P: rusqlite::Params,
        F: FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    {
        self.prepare_cached(sql)?.query_row(params, f)
    }
}

/// Applies the migrations the database has not seen yet, each in its own transaction.
fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let applied: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0)).map_err(backend)?;
    let known = MIGRATIONS.len() as i64;
    if applied > known {
        return Err(StoreError::Corrupt(format!(
            "the database schema is version {applied}, newer than this build of Sluice knows ({known})"
        )));
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(usize::try_from(applied).unwrap_or(0)) {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(backend)?;
        tx.execute_batch(sql).map_err(|e| StoreError::Backend(format!("migration {} failed: {e}", index + 1)))?;
        tx.pragma_update(None, "user_version", index as i64 + 1).map_err(backend)?;
        tx.commit().map_err(backend)?;
    }
    Ok(())
}

fn backend(e: rusqlite::Error) -> StoreError {
    StoreError::Backend(format!("SQLite: {e}"))
}

fn to_ms(t: &Timestamp) -> i64 {
    t.timestamp_millis()
}

fn from_ms(ms: i64) -> Result<Timestamp, StoreError> {
    DateTime::from_timestamp_millis(ms).ok_or_else(|| StoreError::Corrupt(format!("timestamp {ms} ms is out of range")))
}

/// The current time in whole milliseconds, rounded down: "is it visible yet?" is then never
/// answered yes too early.
fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// The current time in whole milliseconds, rounded up: a visibility starting now, counted from
/// this, never ends early.
fn now_ms_ceil() -> i64 {
    let now = chrono::Utc::now();
    let ms = now.timestamp_millis();
    if now.timestamp_subsec_nanos().is_multiple_of(1_000_000) { ms } else { ms.saturating_add(1) }
}

/// Whole milliseconds in `d`, rounded up (so a delay is never shortened), saturating.
fn ceil_ms(d: Duration) -> i64 {
    let ms = d.as_nanos().div_ceil(1_000_000);
    i64::try_from(ms).unwrap_or(i64::MAX)
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Backend(format!("cannot encode JSON: {e}")))
}

fn from_json<T: serde::de::DeserializeOwned>(what: &str, text: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_idempotent_on_reopen() {
        let dir = std::env::temp_dir().join(format!("sluice-sqlite-{}", uuid::Uuid::new_v4().simple()));
        let path = dir.join("nested").join("db.sqlite");
        drop(Sqlite::open(&path).expect("first open"));
        drop(Sqlite::open(&path).expect("second open"));
        let conn = Connection::open(&path).expect("raw open");
        let version: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0)).expect("user_version");
        assert_eq!(version, MIGRATIONS.len() as i64);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn the_folder_the_database_and_its_wal_are_the_owners_only() {
        use crate::ports::ProjectStore;
        use std::os::unix::fs::PermissionsExt;
        let mode = |path: &Path| std::fs::metadata(path).map(|m| m.permissions().mode() & 0o777).unwrap_or(0);
        let dir = std::env::temp_dir().join(format!("sluice-sqlite-{}", uuid::Uuid::new_v4().simple()));
        let path = dir.join("data").join("sluice.db");
        let store = Sqlite::open(&path).expect("open");
        store.get_project("p").await.expect("a read");
        let wal = dir.join("data").join("sluice.db-wal");
        assert!(wal.exists(), "WAL mode keeps a -wal file while open");
        assert_eq!((mode(&dir), mode(&dir.join("data")), mode(&path), mode(&wal)), (0o700, 0o700, 0o600, 0o600));
        drop(store);
        // A database file made readable by others before is made private again on open.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        drop(Sqlite::open(&path).expect("reopen"));
        assert_eq!(mode(&path), 0o600);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn newer_schema_is_refused() {
        let dir = std::env::temp_dir().join(format!("sluice-sqlite-{}", uuid::Uuid::new_v4().simple()));
        let path = dir.join("db.sqlite");
        drop(Sqlite::open(&path).expect("open"));
        let conn = Connection::open(&path).expect("raw open");
        conn.pragma_update(None, "user_version", 999).expect("bump");
        drop(conn);
        assert!(matches!(Sqlite::open(&path), Err(StoreError::Corrupt(_))));
        let _ = std::fs::remove_dir_all(dir);
    }

    /// The statements every execution runs are prepared once and run from the cache with new
    /// parameters each time: none is re-prepared (a bound `LIMIT` or an `ORDER BY` would make
    /// SQLite do it at every run), and each reads its index in the order it promises.
    #[test]
    fn hot_statements_are_prepared_once() {
        let db = Sqlite::in_memory().expect("database");
        let conn = db.conn.lock().expect("connection");
        let hot = [
            (queue::visible_sql(10), 2, "messages_by_visibility"),
            (connect::identity_users_sql(), 4, "sqlite_autoindex_credential_identities_1"),
            ("SELECT kind, target, enabled FROM enablement WHERE project_id = ?1 AND user_id = ?2".into(), 2, ""),
        ];
        for (sql, count, index) in hot {
            for run in 0..3 {
                let mut statement = conn.prepare_cached(&sql).expect("prepare");
                let values: Vec<String> = (0..count).map(|k| format!("value-{k}-{run}")).collect();
                let rows = statement
                    .query_map(rusqlite::params_from_iter(values.iter()), |row| row.get::<_, rusqlite::types::Value>(0))
                    .expect("query");
                assert_eq!(rows.count(), 0);
                if run == 2 {
                    assert_eq!(statement.get_status(rusqlite::StatementStatus::RePrepare), 0, "re-prepared: {sql}");
                }
            }
            let plan: Vec<String> = conn
                .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
                .expect("explain")
                .query_map(rusqlite::params_from_iter((0..count).map(|_| "x")), |row| row.get::<_, String>(3))
                .expect("plan")
                .collect::<Result<_, _>>()
                .expect("plan rows");
            let plan = plan.join("; ");
            assert!(plan.contains(index) && !plan.contains("TEMP B-TREE"), "{sql}: {plan}");
        }
    }

    /// A database written by a build that knew only migration 1 keeps its executions and step
    /// records and gains logs, files, the test flag (false for old executions) and fan-outs
    /// when opened.
    #[tokio::test]
    async fn version_1_database_upgrades_in_place() {
        use crate::engine::StepKey;
        use crate::ports::{ExecutionStore, FanOutStore, FileStore};

        let dir = std::env::temp_dir().join(format!("sluice-sqlite-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("db.sqlite");
        let conn = Connection::open(&path).expect("raw open");
        conn.execute_batch(MIGRATIONS[0]).expect("migration 1");
        conn.pragma_update(None, "user_version", 1).expect("user_version");
        conn.run(
            "INSERT INTO step_attempts (execution_id, step, attempt, status, input, output, error, started_at_ms,
                 ended_at_ms)
             VALUES ('e1', 'fetch', 1, 'succeeded', '{\"a\":1}', '\"ok\"', NULL, 1764000000001, 1764000000002)",
            [],
        )
        .expect("old step row");
        conn.run(
            "INSERT INTO executions (id, project_id, workflow_id, workflow_version, user_id, status, started_at_ms,
                 ended_at_ms, trigger, response_deadline_ms, error)
             VALUES ('e1', 'p', 'w', 1, 'u', 'running', 1764000000001, NULL,
                 '{\"query\":{},\"headers\":{},\"body\":null}', NULL, NULL)",
            [],
        )
        .expect("old execution row");
        drop(conn);

        // The rows are from 2025: kept for as long as a retention can be.
        let db = Sqlite::open(&path)
            .expect("open upgrades")
            .with_retention(crate::retention::from_days(crate::retention::MAX_RETENTION_DAYS).expect("valid"));
        let execution = db.get_execution("e1").await.expect("get execution").expect("kept");
        assert_eq!((execution.workflow_id.as_str(), execution.test), ("w", false));
        let (fetch, f) = (StepKey::top("fetch"), StepKey::top("f"));
        let step = db.get_step("e1", &fetch, 1).await.expect("get step").expect("kept");
        assert_eq!((step.output, step.logs), (Some(serde_json::json!("ok")), Vec::<String>::new()));
        assert_eq!(db.latest_step("e1", &fetch).await.expect("latest step").map(|s| s.attempt), Some(1));
        db.put_fan_out_items("e1", &f, &[serde_json::json!(1)]).await.expect("put items");
        assert_eq!(db.fan_out_item("e1", &f, 0).await.expect("item"), Some(serde_json::json!(1)));
        assert!(db.complete_branch("e1", &f, 0, 1, &serde_json::json!("r"), "by").await.expect("complete").all_done);
        let file = db.put_file("e1", "a.txt", "text/plain", bytes::Bytes::from_static(b"hi")).await.expect("put");
        assert_eq!(db.get_file("e1", &file).await.expect("get file"), Some(bytes::Bytes::from_static(b"hi")));
        drop(db);
        let conn = Connection::open(&path).expect("raw open");
        let version: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0)).expect("user_version");
        assert_eq!(version, MIGRATIONS.len() as i64);
        drop(conn);
        let _ = std::fs::remove_dir_all(dir);
    }

    /// Credentials stored before the identity index existed read back with no identity, find
    /// nobody, and are indexed once replaced.
    #[tokio::test]
    async fn version_7_credentials_gain_an_empty_identity_index() {
        use crate::ports::CredentialStore;

        let dir = std::env::temp_dir().join(format!("sluice-sqlite-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("db.sqlite");
        let mut conn = Connection::open(&path).expect("raw open");
        let tx = conn.transaction().expect("transaction");
        for sql in &MIGRATIONS[..7] {
            tx.execute_batch(sql).expect("migrations 1 to 7");
        }
        tx.pragma_update(None, "user_version", 7).expect("user_version");
        tx.commit().expect("commit");
        let old = r#"{"sealed":{"version":1,"wrapped_key":"d2s=","nonce":"bm9uY2U=","ciphertext":"b2xk"},"status":"connected","updatedAt":"2026-01-02T03:04:05.678Z"}"#;
        conn.run(
            "INSERT INTO credentials (project_id, user_id, integration, record) VALUES ('p', 'u', 'slack', ?1)",
            [old],
        )
        .expect("old credentials row");
        drop(conn);

        let db = Sqlite::open(&path).expect("open upgrades");
        let record = db.get_credentials("p", "u", "slack").await.expect("get").expect("kept");
        assert!(record.identity.is_empty());
        assert_eq!(db.users_by_identity("p", "slack", "team", "T1").await.expect("lookup"), Vec::<String>::new());
        let identified = crate::ports::CredentialRecord {
            identity: [("team".to_string(), "T1".to_string())].into(),
            ..record.clone()
        };
        assert!(db.swap_credentials("p", "u", "slack", &record, &identified).await.expect("swap"), "same JSON text");
        assert_eq!(db.users_by_identity("p", "slack", "team", "T1").await.expect("lookup"), vec!["u".to_string()]);
        drop(db);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn delays_round_up_to_milliseconds() {
        assert_eq!(ceil_ms(Duration::from_micros(1)), 1);
        assert_eq!(ceil_ms(Duration::from_millis(1500)), 1500);
        assert_eq!(ceil_ms(Duration::ZERO), 0);
    }
}

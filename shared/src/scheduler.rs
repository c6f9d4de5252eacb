//! Schedules and polling triggers: the ledger of (workflow, user) next fires, kept in step with
//! deployments and users' choices, and the tick that starts what is due.
//!
//! - **The ledger** ([`ScheduleStore`]) holds one row per (workflow, user) for every user who
//!   has a deployed schedule or poll workflow enabled, with its next fire in a due index.
//!   [`sync_user`] (a user was recorded, switched something, changed their time zone) and
//!   [`sync_workflow`] (a deploy) write the rows; the tick removes a row it finds refused (the
//!   workflow undeployed, the user or the integration switched off), so fires stop at once.
//! - **The tick** ([`tick`]) pages through the due rows. For each it computes the fires due
//!   in the schedule's zone ([`ScheduleTrigger::fires_between`], which applies the DST
//!   policy), applies the catch-up rule to fires older than [`Settings::grace`] and the
//!   overlap rule, and starts each fire under the execution id derived from (project,
//!   workflow, user, instant) ([`crate::fires`]): creating it is the claim, so duplicate,
//!   late or concurrent ticks never start a fire twice. Fires after `now` but within the
//!   horizon (the next minute, on AWS) are handed to delayed [`FireMessage`]s. The row is then
//!   advanced with a compare and swap on its next fire; a tick that loses the swap has
//!   started nothing another did not.
//! - **Polls** use the same rows: a due poll runs its request for the user, starts one
//!   execution per item whose key its seen-set lacks (ids derived from the key), and records
//!   the keys (`crate::poll`).
//!
//! [`ScheduleTrigger::fires_between`]: crate::model::schedule::ScheduleTrigger::fires_between

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::connect::Connect;
use crate::model::Trigger;
use crate::model::schedule::{self, Catchup, Overlap, ScheduleTrigger};
use crate::ports::{Deployment, DueCursor, MAX_DUE_PAGE, ScheduleEntry, Store, StoreError};
use crate::record::{Timestamp, TriggerData, TriggerKind, format_timestamp};
use crate::runner::Runner;
use crate::triggers::{self, StartFor, TriggerError};

/// The most fires one row starts or hands off in one tick (an every-second schedule on AWS
/// needs 60 per minute).
pub const MAX_FIRES_PER_ROW: usize = 120;

/// The scheduler's clock: the system's, or one tests move by hand.
#[derive(Debug, Clone, Default)]
pub enum Clock {
    #[default]
    System,
    /// Milliseconds since the epoch, set by whoever holds it.
    Manual(Arc<AtomicI64>),
}

impl Clock {
    /// A manual clock at `at`.
    pub fn manual(at: Timestamp) -> Clock {
        Clock::Manual(Arc::new(AtomicI64::new(at.timestamp_millis())))
    }

    pub fn now(&self) -> Timestamp {
        match self {
            Clock::System => crate::record::now(),
            Clock::Manual(millis) => {
                chrono::DateTime::from_timestamp_millis(millis.load(Ordering::SeqCst)).unwrap_or_default()
            }
        }
    }

    /// Moves a manual clock to `at` (the system clock cannot be moved).
    pub fn set(&self, at: Timestamp) {
        if let Clock::Manual(millis) = self {
            millis.store(at.timestamp_millis(), Ordering::SeqCst);
        }
    }

    pub fn advance(&self, by: Duration) {
        if let Clock::Manual(millis) = self {
            millis.fetch_add(i64::try_from(by.as_millis()).unwrap_or(i64::MAX), Ordering::SeqCst);
        }
    }
}

/// How the scheduler runs.
#[derive(Debug, Clone)]
pub struct SchedulerSettings {
    /// Fires after now and up to now + horizon are handed to delayed messages (AWS: the next
    /// minute, until the next tick); zero where the tick runs every second (`sluice dev`).
    pub horizon: Duration,
    /// A fire at most this late counts as on time (the tick runs late by up to its period);
    /// older ones are missed and follow the catch-up rule.
    pub grace: Duration,
    /// Rows read per page of the due index.
    pub page: usize,
}

impl Default for SchedulerSettings {
    fn default() -> Self {
        SchedulerSettings { horizon: Duration::ZERO, grace: Duration::from_secs(90), page: 200 }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Trigger(#[from] TriggerError),
    #[error(transparent)]
    Queue(#[from] crate::ports::QueueError),
}

impl SchedulerError {
    pub fn is_retryable(&self) -> bool {
        match self {
            SchedulerError::Store(error) => error.is_retryable(),
            SchedulerError::Trigger(error) => error.is_retryable(),
            SchedulerError::Queue(error) => error.is_retryable(),
        }
    }
}

/// What one tick did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TickReport {
    /// Due rows read.
    pub due: usize,
    /// Executions started.
    pub started: usize,
    /// Fires handed to delayed messages (within the horizon).
    pub delayed: usize,
    /// Fires whose execution existed already (a duplicate or concurrent tick started it).
    pub duplicates: usize,
    pub skipped: usize,
    pub missed: usize,
    /// Rows removed: the workflow undeployed or the user's choices refuse it.
    pub removed: usize,
    /// Polls run.
    pub polls: usize,
    /// Where the next page starts, when the tick stopped before the end (its budget).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub more: Option<DueCursor>,
}

impl TickReport {
    fn add(&mut self, other: &TickReport) {
        self.due += other.due;
        self.started += other.started;
        self.delayed += other.delayed;
        self.duplicates += other.duplicates;
        self.skipped += other.skipped;
        self.missed += other.missed;
        self.removed += other.removed;
        self.polls += other.polls;
    }
}

/// A fire handed to the queue to start at its instant (AWS: fires inside the next minute).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FireMessage {
    pub project_id: String,
    pub workflow_id: String,
    pub user_id: String,
    /// The instant, in milliseconds since the epoch.
    pub at: i64,
    pub version: u32,
}

/// The schedule a deployed workflow fires on, if it has one: its schedule, or a poll's
/// interval.
pub fn schedule_of(workflow: &crate::model::Workflow) -> Option<ScheduleTrigger> {
    match &workflow.trigger {
        Trigger::Schedule(schedule) => Some(schedule.clone()),
        Trigger::Poll(poll) => Some(schedule::interval(&poll.every)),
        _ => None,
    }
}

/// Runs one tick at the clock's now: every due page, up to `budget` (then `more` says where
/// the next invocation goes on).
pub async fn tick(
    runner: &Runner,
    settings: &SchedulerSettings,
    from: Option<DueCursor>,
    budget: Duration,
) -> Result<TickReport, SchedulerError> {
    let started = std::time::Instant::now();
    let now = runner.runtime().settings.clock.now();
    let until = now + chrono::Duration::from_std(settings.horizon).unwrap_or_default();
    let store = runner.runtime().store.as_ref();
    let mut report = TickReport::default();
    let mut cursor = from;
    let cache = &Deployments::default();
    loop {
        let (rows, next) = store.due_schedules(until, cursor.as_ref(), settings.page.min(MAX_DUE_PAGE)).await?;
        report.due += rows.len();
        let fired = futures_util::stream::iter(rows)
            .map(|row| async move {
                let result = fire_row(runner, settings, cache, now, &row).await;
                (row, result)
            })
            .buffer_unordered(ROWS_AT_ONCE)
            .collect::<Vec<_>>()
            .await;
        for (row, result) in fired {
            match result {
                Ok(done) => report.add(&done),
                // One row's failure never stops the others; it is due again next tick.
                Err(error) => {
                    tracing::warn!(%error, workflow = %row.workflow_id, user = %row.user_id, "a due schedule failed")
                }
            }
        }
        let Some(next) = next else { break };
        if started.elapsed() >= budget {
            report.more = Some(next);
            break;
        }
        cursor = Some(next);
    }
    Ok(report)
}

/// A tick's remaining pages handed to the next invocation (through the step queue).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TickMessage {
    pub cursor: DueCursor,
}

/// One scheduler invocation: [`tick`] within `budget`, then, if due pages remain, hands them
/// to the next invocation as a [`TickMessage`] on the step queue (handled by
/// [`Runner::handle`], which runs this again from the cursor). One invocation starts what its
/// budget allows (see `infra/cost.md`); the pages after it go on in parallel with the next
/// minute's tick, each fire still claimed once by its derived id.
pub async fn run_invocation(
    runner: &Runner,
    settings: &SchedulerSettings,
    from: Option<DueCursor>,
    budget: Duration,
) -> Result<TickReport, SchedulerError> {
    let report = tick(runner, settings, from, budget).await?;
    if let Some(cursor) = &report.more {
        let body =
            serde_json::to_string(&json!({ "tick": TickMessage { cursor: cursor.clone() } })).unwrap_or_default();
        let message = crate::ports::Outgoing { body, delay: Duration::ZERO };
        runner.runtime().queue.send(crate::ports::QueueName::Steps, message).await?;
    }
    Ok(report)
}

/// How the AWS scheduler ticks: every minute, handing the fires of the coming minute to
/// delayed messages; within a budget that leaves the function time to hand off.
pub fn aws_settings() -> SchedulerSettings {
    SchedulerSettings { horizon: Duration::from_secs(60), grace: Duration::from_secs(150), page: 100 }
}

/// Fires one due row (see the module doc).
/// The live deployments one tick read, so that the rows of one workflow read it once.
#[derive(Default)]
struct Deployments(tokio::sync::Mutex<HashMap<(String, String), Option<Deployment>>>);

impl Deployments {
    async fn live(
        &self,
        store: &dyn Store,
        project_id: &str,
        workflow_id: &str,
    ) -> Result<Option<Deployment>, StoreError> {
        let key = (project_id.to_string(), workflow_id.to_string());
        if let Some(known) = self.0.lock().await.get(&key) {
            return Ok(known.clone());
        }
        let live = store.get_deployed(project_id, workflow_id).await?;
        self.0.lock().await.insert(key, live.clone());
        Ok(live)
    }
}

/// How many due rows one tick fires at once.
const ROWS_AT_ONCE: usize = 16;

async fn fire_row(
    runner: &Runner,
    settings: &SchedulerSettings,
    cache: &Deployments,
    now: Timestamp,
    row: &ScheduleEntry,
) -> Result<TickReport, SchedulerError> {
    let runtime = runner.runtime();
    let store = runtime.store.as_ref();
    let mut report = TickReport::default();
    let Some(due_at) = row.next_fire else { return Ok(report) };
    let live = cache.live(store, &row.project_id, &row.workflow_id).await?;
    let Some((deployment, spec)) = live.and_then(|d| schedule_of(&d.workflow).map(|s| (d, s))) else {
        if store.delete_schedule(&row.project_id, &row.workflow_id, &row.user_id).await? {
            report.removed += 1;
        }
        return Ok(report);
    };
    let enablement = runtime.connect.enablement(&row.project_id, &row.user_id).await?;
    if Connect::gate_with(&enablement, &deployment.workflow).is_some() {
        if store.delete_schedule(&row.project_id, &row.workflow_id, &row.user_id).await? {
            report.removed += 1;
        }
        return Ok(report);
    }
    let zone = zone_for(store, &spec, &row.project_id, &row.user_id).await?;
    let mut next_row = row.clone();
    next_row.updated_at = now;
    if due_at == ARMING {
        // A new row (or one whose workflow changed): its fires start after this tick.
        next_row.version = deployment.version;
        next_row.zone = zone.clone();
        next_row.next_fire = next_fire(&spec, now, &zone);
        store.advance_schedule(row, &next_row).await?;
        return Ok(report);
    }
    if deployment.version != row.version || zone != row.zone {
        let same = match store.get_version(&row.project_id, &row.workflow_id, row.version).await? {
            Some(old) => schedule_of(&old.workflow) == Some(spec.clone()),
            None => false,
        };
        next_row.version = deployment.version;
        if !same || zone != row.zone {
            // Another schedule or zone: fires start from now on, none caught up.
            next_row.zone = zone.clone();
            next_row.next_fire = next_fire(&spec, now, &zone);
            store.advance_schedule(row, &next_row).await?;
            return Ok(report);
        }
    }
    let until = now + chrono::Duration::from_std(settings.horizon).unwrap_or_default();
    let before = due_at - chrono::Duration::milliseconds(1);
    let fires = match spec.fires_between(before, until, &zone, MAX_FIRES_PER_ROW) {
        Ok(fires) => fires,
        Err(error) => {
            next_row.last_note = Some(format!("cannot be computed: {error}"));
            next_row.next_fire = None;
            store.advance_schedule(row, &next_row).await?;
            return Ok(report);
        }
    };
    let instants: Vec<Timestamp> = fires.iter().map(|fire| fire.at).collect();
    let plan = plan_fires(&spec.catchup, &instants, now, settings.grace);
    report.missed += plan.missed.len();
    if let Some(last_missed) = plan.missed.last() {
        next_row.missed += plan.missed.len() as u64;
        next_row.last_note = Some(format!(
            "missed {} fire(s) up to {} (catchup: {})",
            plan.missed.len(),
            format_timestamp(last_missed),
            spec.catchup
        ));
    }
    let is_poll = matches!(deployment.workflow.trigger, Trigger::Poll(_));
    let deployment = Arc::new(deployment);
    let mut running = match (&spec.overlap, &row.last_execution_id) {
        (Overlap::Skip, Some(id)) => store.get_execution(id).await?.is_some_and(|e| !e.status.is_ended()),
        _ => false,
    };
    for at in &plan.now {
        if running {
            report.skipped += 1;
            next_row.skipped += 1;
            next_row.last_note = Some(format!(
                "skipped the fire at {}: the previous run ({}) is still going (overlap: skip)",
                format_timestamp(at),
                next_row.last_execution_id.as_deref().unwrap_or("?")
            ));
            continue;
        }
        if is_poll {
            let polled = crate::poll::run(runner, &deployment, &row.user_id, *at).await;
            report.polls += 1;
            match polled {
                Ok(outcome) => {
                    report.started += outcome.started;
                    next_row.fired += outcome.started as u64;
                    if let Some(id) = outcome.last_execution {
                        next_row.last_execution_id = Some(id);
                    }
                }
                Err(error) => next_row.last_note = Some(format!("poll at {} failed: {error}", format_timestamp(at))),
            }
            next_row.last_fire = Some(*at);
            continue;
        }
        match start_fire(runner, &deployment, &row.user_id, *at, &zone, Some(enablement.clone())).await? {
            Fired::Started(id) => {
                report.started += 1;
                next_row.fired += 1;
                next_row.last_execution_id = Some(id);
                running = spec.overlap == Overlap::Skip;
            }
            Fired::Duplicate(id) => {
                report.duplicates += 1;
                next_row.last_execution_id = Some(id);
            }
            Fired::Refused(note) => next_row.last_note = Some(note),
        }
        next_row.last_fire = Some(*at);
    }
    for at in &plan.later {
        let message = FireMessage {
            project_id: row.project_id.clone(),
            workflow_id: row.workflow_id.clone(),
            user_id: row.user_id.clone(),
            at: at.timestamp_millis(),
            version: deployment.version,
        };
        let delay = (*at - now).to_std().unwrap_or_default();
        let body = serde_json::to_string(&json!({ "fire": message })).unwrap_or_default();
        runtime.queue.send(crate::ports::QueueName::Steps, crate::ports::Outgoing { body, delay }).await?;
        report.delayed += 1;
        next_row.last_fire = Some(*at);
    }
    let last = instants.last().copied().unwrap_or(due_at).max(until);
    next_row.next_fire = next_fire(&spec, last, &zone);
    store.advance_schedule(row, &next_row).await?;
    Ok(report)
}

/// What to do with the fires due in one tick.
#[derive(Debug, Default, PartialEq)]
struct FirePlan {
    /// Start now.
    now: Vec<Timestamp>,
    /// Hand to delayed messages (after now, within the horizon).
    later: Vec<Timestamp>,
    /// Recorded as missed.
    missed: Vec<Timestamp>,
}

/// Applies the catch-up rule: fires within `grace` before now are on time; older ones are
/// caught up as `catchup` says and the rest missed.
fn plan_fires(catchup: &Catchup, instants: &[Timestamp], now: Timestamp, grace: Duration) -> FirePlan {
    let grace_start = now - chrono::Duration::from_std(grace).unwrap_or_default();
    let mut plan = FirePlan::default();
    let (overdue, rest): (Vec<Timestamp>, Vec<Timestamp>) = instants.iter().partition(|at| **at < grace_start);
    for at in rest {
        if at <= now { plan.now.push(at) } else { plan.later.push(at) }
    }
    match catchup {
        Catchup::None => plan.missed = overdue,
        Catchup::Latest => {
            // The latest missed fire runs, unless a fire on time runs anyway.
            let mut overdue = overdue;
            if plan.now.is_empty()
                && let Some(latest) = overdue.pop()
            {
                plan.now.insert(0, latest);
            }
            plan.missed = overdue;
        }
        Catchup::Within(window) => {
            let start = now - chrono::Duration::from_std(window.duration()).unwrap_or_default();
            let (caught, missed): (Vec<Timestamp>, Vec<Timestamp>) = overdue.into_iter().partition(|at| *at >= start);
            plan.now.splice(0..0, caught);
            plan.missed = missed;
        }
    }
    plan
}

/// How one fire went.
enum Fired {
    Started(String),
    /// Its execution existed already: another tick (or a redelivered fire message) started it.
    Duplicate(String),
    /// The connect gate refused it (not connected...).
    Refused(String),
}

/// Starts the fire of `deployment` for `user_id` at `at`, under its derived id.
async fn start_fire(
    runner: &Runner,
    deployment: &Arc<Deployment>,
    user_id: &str,
    at: Timestamp,
    zone: &str,
    enablement: Option<crate::ports::Enablement>,
) -> Result<Fired, SchedulerError> {
    let body = json!({
        "scheduledAt": format_timestamp(&at),
        "zone": zone,
        "local": schedule::local_time(at, zone).map(|local| format!("{} {}", local.wall, local.offset)).unwrap_or_default(),
    });
    let data = TriggerData::of(TriggerKind::Schedule, body);
    let key = crate::fires::schedule_key(at);
    let start = StartFor {
        user_id: user_id.to_string(),
        event: None,
        deployments: vec![deployment.clone()],
        data,
        id_key: Some((key, at)),
        enablement,
    };
    let planned = triggers::plan_for(runner, &deployment.project_id, vec![start]).await?;
    let report = planned.reports.first().cloned();
    if let Some(skipped) = report.as_ref().and_then(|r| r.skipped.first()) {
        return Ok(Fired::Refused(format!("not started at {}: {}", format_timestamp(&at), skipped.message)));
    }
    let id = report.and_then(|r| r.executions.first().map(|e| e.execution_id.clone())).unwrap_or_default();
    match planned.start(runner).await {
        Ok(_) => Ok(Fired::Started(id)),
        Err(TriggerError::Start(crate::ports::StartError::Store(StoreError::AlreadyExists(_)))) => {
            Ok(Fired::Duplicate(id))
        }
        Err(error) => Err(error.into()),
    }
}

/// Handles a [`FireMessage`] at its instant: the fire starts if the workflow is still live
/// at that version and the user's choices let it, unless the previous run is still going
/// (`overlap: skip`). A redelivered message finds its execution taken.
pub async fn fire_message(runner: &Runner, message: &FireMessage) -> Result<(), SchedulerError> {
    let store = runner.runtime().store.as_ref();
    let Some(deployment) = store.get_deployed(&message.project_id, &message.workflow_id).await? else {
        return Ok(());
    };
    let Some(spec) = schedule_of(&deployment.workflow) else { return Ok(()) };
    if deployment.version != message.version {
        return Ok(());
    }
    let Some(at) = chrono::DateTime::from_timestamp_millis(message.at) else { return Ok(()) };
    let row = store.get_schedule(&message.project_id, &message.workflow_id, &message.user_id).await?;
    let Some(row) = row else { return Ok(()) };
    if spec.overlap == Overlap::Skip
        && let Some(id) = &row.last_execution_id
        && store.get_execution(id).await?.is_some_and(|e| !e.status.is_ended())
        && *id != crate::fires::schedule_fire(&message.project_id, &message.workflow_id, &message.user_id, at)
    {
        let mut next = row.clone();
        next.skipped += 1;
        next.last_note =
            Some(format!("skipped the fire at {}: the previous run ({id}) is still going", format_timestamp(&at)));
        store.advance_schedule(&row, &next).await?;
        return Ok(());
    }
    let deployment = Arc::new(deployment);
    if matches!(deployment.workflow.trigger, Trigger::Poll(_)) {
        let _ = crate::poll::run(runner, &deployment, &message.user_id, at).await;
        return Ok(());
    }
    let zone = row.zone.clone();
    if let Fired::Started(id) = start_fire(runner, &deployment, &message.user_id, at, &zone, None).await? {
        // Best effort: the next overlap check looks at it.
        let mut next = row.clone();
        next.fired += 1;
        next.last_execution_id = Some(id);
        let _ = store.advance_schedule(&row, &next).await;
    }
    Ok(())
}

/// The next fire of a row that [`sync_user`] or [`sync_workflow`] wrote: due at once, so
/// that the next tick computes its first fire from the tick's own clock (the sync needs no
/// clock, and a test clock set after a deploy governs every fire).
pub const ARMING: Timestamp = chrono::DateTime::UNIX_EPOCH;

/// After a deploy or an undeploy of `project_id`: switches the scheduler's rule (AWS) on
/// while the project has a schedule or poll workflow live, off when it has none and the
/// ledger holds no row of any project. A failure is logged: the deploy stands, and the next
/// deploy switches again (a rule left on only ticks over an empty ledger).
pub async fn switch_rule(runtime: &crate::runtime::Runtime, project_id: &str) {
    let Some(rule) = &runtime.schedule_rule else { return };
    let store = runtime.store.as_ref();
    let wanted = async {
        let live = crate::deploy::live(store, project_id).await?;
        if live.values().any(|d| schedule_of(&d.workflow).is_some()) {
            return Ok::<bool, StoreError>(true);
        }
        let far = chrono::DateTime::<chrono::Utc>::MAX_UTC;
        Ok(!store.due_schedules(far, None, 1).await?.0.is_empty())
    };
    let result = match wanted.await {
        Ok(enabled) => rule.set_enabled(enabled).await,
        Err(error) => Err(error),
    };
    if let Err(error) = result {
        tracing::error!(%error, "the scheduler's rule could not be switched");
    }
}

/// The zone a schedule's fires are computed in for the user.
async fn zone_for(
    store: &dyn Store,
    spec: &ScheduleTrigger,
    project_id: &str,
    user_id: &str,
) -> Result<String, StoreError> {
    let user_zone = if spec.uses_user_zone() {
        store.get_user(project_id, user_id).await?.and_then(|user| user.meta.timezone)
    } else {
        None
    };
    Ok(spec.zone_name(user_zone.as_deref()))
}

/// The first fire strictly after `after`, or None (a schedule that never fires again).
fn next_fire(spec: &ScheduleTrigger, after: Timestamp, zone: &str) -> Option<Timestamp> {
    spec.next_after(after, zone).ok().flatten().map(|fire| fire.at)
}

/// Brings the ledger rows of `user_id` in step with the project's live schedule and poll
/// workflows: a row (next fire from now) for each one the user has enabled, none for the
/// others. Rows whose version is unchanged keep their next fire. Whether it armed a row.
pub async fn sync_user(store: &dyn Store, project_id: &str, user_id: &str) -> Result<bool, StoreError> {
    let live: Vec<Deployment> = crate::deploy::live(store, project_id)
        .await?
        .into_values()
        .filter(|d| schedule_of(&d.workflow).is_some())
        .collect();
    if live.is_empty() {
        return Ok(false);
    }
    let enablement = store.enablement(project_id, user_id).await?;
    let mut armed = false;
    for deployment in &live {
        armed |= sync_row(store, deployment, user_id, &enablement).await?;
    }
    Ok(armed)
}

/// Brings the rows of one deployed schedule or poll workflow in step for every user of the
/// project (a deploy), page by page.
pub async fn sync_workflow(store: &dyn Store, deployment: &Deployment) -> Result<usize, StoreError> {
    if schedule_of(&deployment.workflow).is_none() {
        return Ok(0);
    }
    let mut after: Option<String> = None;
    let mut users = 0;
    loop {
        let page = store.list_users(&deployment.project_id, after.as_deref(), 500).await?;
        for user_id in &page {
            let enablement = store.enablement(&deployment.project_id, user_id).await?;
            sync_row(store, deployment, user_id, &enablement).await?;
        }
        users += page.len();
        if page.len() < 500 {
            return Ok(users);
        }
        after = page.last().cloned();
    }
}

/// Syncs every live schedule and poll workflow of the project (after a deploy).
pub async fn sync_project(store: &dyn Store, project_id: &str) -> Result<(), StoreError> {
    for deployment in crate::deploy::live(store, project_id).await?.into_values() {
        sync_workflow(store, &deployment).await?;
    }
    Ok(())
}

async fn sync_row(
    store: &dyn Store,
    deployment: &Deployment,
    user_id: &str,
    enablement: &crate::ports::Enablement,
) -> Result<bool, StoreError> {
    let project_id = &deployment.project_id;
    let workflow_id = &deployment.workflow_id;
    let existing = store.get_schedule(project_id, workflow_id, user_id).await?;
    if Connect::gate_with(enablement, &deployment.workflow).is_some() {
        if existing.is_some() {
            store.delete_schedule(project_id, workflow_id, user_id).await?;
        }
        return Ok(false);
    }
    if existing.as_ref().is_some_and(|row| row.version == deployment.version && row.next_fire.is_some()) {
        return Ok(false);
    }
    let at = crate::record::now();
    let mut row = existing.unwrap_or_else(|| ScheduleEntry {
        project_id: project_id.clone(),
        workflow_id: workflow_id.clone(),
        user_id: user_id.to_string(),
        next_fire: None,
        version: deployment.version,
        zone: String::new(),
        last_fire: None,
        last_execution_id: None,
        fired: 0,
        skipped: 0,
        missed: 0,
        last_note: None,
        updated_at: at,
    });
    // A changed workflow keeps its row's history; its fires start after the next tick.
    row.version = deployment.version;
    row.next_fire = Some(ARMING);
    row.updated_at = at;
    store.put_schedule(&row).await?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> Timestamp {
        chrono::DateTime::from_timestamp(seconds, 0).expect("a test value")
    }

    #[test]
    fn on_time_fires_run_and_older_ones_follow_the_catch_up_rule() {
        let now = at(10_000);
        let grace = Duration::from_secs(90);
        let instants = [at(1_000), at(5_000), at(9_950), at(10_030)];
        let latest = plan_fires(&Catchup::Latest, &instants, now, grace);
        assert_eq!(
            latest,
            FirePlan { now: vec![at(9_950)], later: vec![at(10_030)], missed: vec![at(1_000), at(5_000)] }
        );
        // With nothing on time, the latest missed one runs.
        let latest = plan_fires(&Catchup::Latest, &instants[..2], now, grace);
        assert_eq!(latest, FirePlan { now: vec![at(5_000)], later: vec![], missed: vec![at(1_000)] });
        let none = plan_fires(&Catchup::None, &instants[..2], now, grace);
        assert_eq!(none.missed.len(), 2);
        assert!(none.now.is_empty());
        let window: Catchup = "2h".parse().expect("a test value");
        let within = plan_fires(&window, &instants, now, grace);
        assert_eq!(within.now, vec![at(5_000), at(9_950)]);
        assert_eq!(within.missed, vec![at(1_000)]);
    }

    #[test]
    fn a_manual_clock_moves_only_when_told() {
        let clock = Clock::manual(at(100));
        assert_eq!(clock.now(), at(100));
        clock.advance(Duration::from_secs(5));
        assert_eq!(clock.now(), at(105));
        clock.set(at(7));
        assert_eq!(clock.now(), at(7));
    }
}

//! What the engine needs from the outside, as small traits. Adapters: SQLite (embedded) and
//! DynamoDB + SQS (AWS). `crate::conformance` is the one suite every adapter must pass.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use serde_json::Value;

use crate::engine::StepKey;
use crate::model::Workflow;
use crate::model::project::AppEvent;
use crate::record::{Execution, ExecutionError, ExecutionStatus, FileObject, SettledResponse, StepAttempt, Timestamp};

mod connect;
mod history;
mod idempotency;
mod notifications;
mod triggers;
pub use connect::*;
pub use history::*;
pub use idempotency::*;
pub use notifications::*;
pub use triggers::*;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend failed or could not be reached; worth retrying.
    #[error("storage backend error: {0}")]
    Backend(String),
    /// Stored data could not be read back (a bug or a manual edit).
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// A write that must create something found it already there.
    #[error("already exists: {0}")]
    AlreadyExists(String),
    /// The data is over a size limit; retrying will not help.
    #[error("too large: {0}")]
    TooLarge(String),
}

impl StoreError {
    /// Whether doing the same again may succeed (the backend failed or was unreachable). The
    /// one classification every edge (SQS batch, HTTP, Lambda) maps from.
    pub fn is_retryable(&self) -> bool {
        matches!(self, StoreError::Backend(_))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("queue backend error: {0}")]
    Backend(String),
    /// Some entries of a batch were not accepted; none of them is lost silently.
    #[error("{failed} of {total} messages were not sent: {reason}")]
    PartialBatch { failed: usize, total: usize, reason: String },
}

impl QueueError {
    /// Queue failures are the backend's: sending again may succeed.
    pub fn is_retryable(&self) -> bool {
        true
    }
}

/// Why an execution could not be started.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Queue(#[from] QueueError),
    /// The execution was created, then what followed failed: starting again would start a
    /// second one, so this is never retryable.
    #[error("execution {execution_id} was created, but {reason}")]
    AfterCreate { execution_id: String, reason: String },
}

impl StartError {
    /// Whether starting again may succeed without starting twice: the backend failed before
    /// the execution was created.
    pub fn is_retryable(&self) -> bool {
        match self {
            StartError::Store(error) => error.is_retryable(),
            StartError::Queue(error) => error.is_retryable(),
            StartError::AfterCreate { .. } => false,
        }
    }
}

/// A project: its connected-user token key and the hash of its API key.
#[derive(Debug, Clone, PartialEq)]
pub struct Project {
    pub id: String,
    /// SPKI PEM of the RSA key user tokens are signed with.
    pub signing_public_key_pem: String,
    /// Lower-case hex SHA-256 of the project API key (the key itself is never stored).
    pub api_key_sha256: String,
    pub created_at: Timestamp,
}

#[async_trait]
pub trait ProjectStore: Send + Sync {
    /// Creates the project; `AlreadyExists` if the id is taken.
    async fn create_project(&self, project: &Project) -> Result<(), StoreError>;
    async fn get_project(&self, project_id: &str) -> Result<Option<Project>, StoreError>;
}

/// A deployed version of a workflow.
#[derive(Debug, Clone, PartialEq)]
pub struct Deployment {
    pub project_id: String,
    pub workflow_id: String,
    /// 1, 2, 3... per workflow; a new version only when the definition changed.
    pub version: u32,
    pub workflow: Workflow,
    pub deployed_at: Timestamp,
}

#[async_trait]
pub trait WorkflowStore: Send + Sync {
    /// Deploys `workflow` as the live version. Re-deploying an identical definition returns the
    /// current deployment unchanged; a changed one gets the next version number. Older versions
    /// stay readable so executions started on them finish on them.
    async fn deploy_workflow(&self, project_id: &str, workflow: &Workflow) -> Result<Deployment, StoreError>;
    /// The live version, if the workflow is deployed.
    async fn get_deployed(&self, project_id: &str, workflow_id: &str) -> Result<Option<Deployment>, StoreError>;
    async fn get_version(
        &self,
        project_id: &str,
        workflow_id: &str,
        version: u32,
    ) -> Result<Option<Deployment>, StoreError>;
    /// The live version of every deployed workflow of the project, by workflow id.
    async fn list_deployed(&self, project_id: &str) -> Result<Vec<Deployment>, StoreError>;
    /// Takes the workflow's live version down: no trigger starts it any more, while its
    /// versions stay readable (running executions finish on theirs, history keeps them). A
    /// later deploy makes a new version live. Returns false, changing nothing, when it was not
    /// deployed.
    async fn undeploy_workflow(&self, project_id: &str, workflow_id: &str) -> Result<bool, StoreError>;
}

/// Test requests: the next request sent to a workflow's test URL is captured as the
/// workflow's sample trigger data (what `sluice test` runs with), without running it.
#[async_trait]
pub trait SampleStore: Send + Sync {
    /// Arms a capture for `workflow_id`: the next request to the test URL holding the token
    /// whose SHA-256 is `token_sha256`, before `expires_at`. Replaces an armed capture; the
    /// sample captured before stays until a new one is captured.
    async fn arm_capture(
        &self,
        project_id: &str,
        workflow_id: &str,
        token_sha256: &str,
        expires_at: Timestamp,
    ) -> Result<(), StoreError>;
    /// Keeps `sample` as the workflow's sample if `token_sha256` is the armed capture's and
    /// it has not expired at `now`, and disarms it, atomically: of concurrent requests to one
    /// test URL exactly one is captured. Returns whether this one was.
    async fn capture(
        &self,
        project_id: &str,
        workflow_id: &str,
        token_sha256: &str,
        sample: &Value,
        now: Timestamp,
    ) -> Result<bool, StoreError>;
    /// The workflow's captured sample, if any.
    async fn sample(&self, project_id: &str, workflow_id: &str) -> Result<Option<Value>, StoreError>;
}

/// The app events a project declares (`events/*.yaml`), as its last deploy left them.
#[async_trait]
pub trait AppEventStore: Send + Sync {
    /// Makes `events` the project's declared app events (a deploy): others are removed.
    async fn put_app_events(&self, project_id: &str, events: &[AppEvent]) -> Result<(), StoreError>;
    /// The project's declared app events, by name.
    async fn app_events(&self, project_id: &str) -> Result<Vec<AppEvent>, StoreError>;
}

/// The result of a first-writer-wins write.
#[derive(Debug, Clone, PartialEq)]
pub enum FirstWrite<T> {
    /// This call wrote it.
    Written,
    /// Someone wrote it before; this is what they wrote.
    Existing(T),
}

/// How counting a fan-out branch done went ([`FanOutStore::complete_branch`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counted {
    /// Every branch of the fan-out is done.
    pub all_done: bool,
    /// This call counted the branch; `false` when another delivery had counted it already.
    pub first: bool,
}

#[async_trait]
pub trait ExecutionStore: Send + Sync {
    /// Creates the execution; `AlreadyExists` if the id is taken by another one. Creating the
    /// same execution again may succeed: a retried write whose first answer was lost (a
    /// dropped connection) finds its own item.
    async fn create_execution(&self, execution: &Execution) -> Result<(), StoreError>;
    /// By id alone; callers check `project_id` before showing it to anyone.
    async fn get_execution(&self, execution_id: &str) -> Result<Option<Execution>, StoreError>;
    /// Moves a running or waiting execution to `status` (and records `error`, `ended_at`).
    /// Returns false, changing nothing, if it had ended already: only the first finish counts.
    /// `project_id` is the execution's (DynamoDB keys its status index with it).
    async fn finish_execution(
        &self,
        project_id: &str,
        execution_id: &str,
        status: ExecutionStatus,
        error: Option<&ExecutionError>,
        ended_at: Timestamp,
    ) -> Result<bool, StoreError>;
    /// Moves the execution from `from` to `to` (running ⇄ waiting, for Delay steps). Returns
    /// false, changing nothing, when it was not in `from`.
    async fn set_execution_status(
        &self,
        project_id: &str,
        execution_id: &str,
        from: ExecutionStatus,
        to: ExecutionStatus,
    ) -> Result<bool, StoreError>;
    /// Moves a failed execution back to `running` for a redrive (Task History): its error and
    /// end cleared, its redrive count raised by one. `Some(the new count)`, or `None`,
    /// changing nothing, when it was not `failed` (only one of concurrent redrives wins).
    async fn redrive_execution(&self, project_id: &str, execution_id: &str) -> Result<Option<u32>, StoreError>;
    /// Records one attempt of one step, keyed by (execution, step, attempt). First writer wins:
    /// a redelivered message gets back the attempt recorded before it.
    async fn record_step(
        &self,
        execution_id: &str,
        attempt: &StepAttempt,
    ) -> Result<FirstWrite<StepAttempt>, StoreError>;
    /// Attempt `attempt` of the step at `key`, if recorded: the record whose
    /// [`StepAttempt::step`] is the key rendered (`notify`, `notify@3`).
    async fn get_step(
        &self,
        execution_id: &str,
        key: &StepKey,
        attempt: u32,
    ) -> Result<Option<StepAttempt>, StoreError>;
    /// Every recorded attempt of the execution, ordered by start time (then step, attempt).
    async fn list_steps(&self, execution_id: &str) -> Result<Vec<StepAttempt>, StoreError>;
    /// Settles what a synchronous caller gets. First writer wins.
    async fn settle_response(
        &self,
        execution_id: &str,
        response: &SettledResponse,
    ) -> Result<FirstWrite<SettledResponse>, StoreError>;
    async fn get_response(&self, execution_id: &str) -> Result<Option<SettledResponse>, StoreError>;
}

/// The largest file a step can produce or a Response step can send.
pub const MAX_FILE_BYTES: usize = 5 * 1024 * 1024;

/// Files produced by steps (binary HTTP responses...), scoped to one execution.
#[async_trait]
pub trait FileStore: Send + Sync {
    /// Stores `bytes` (at most [`MAX_FILE_BYTES`], else `TooLarge`) as a file of the
    /// execution and returns its file object (`data` = `sluice-file:<new id>`).
    async fn put_file(
        &self,
        execution_id: &str,
        name: &str,
        mime_type: &str,
        bytes: Bytes,
    ) -> Result<FileObject, StoreError>;
    /// The bytes of `file`, only if it is a file of `execution_id` (None otherwise: a file
    /// object copied into another execution's data never reads another execution's file).
    async fn get_file(&self, execution_id: &str, file: &FileObject) -> Result<Option<Bytes>, StoreError>;
}

/// The most items one fan-out may have.
pub use crate::engine::MAX_FAN_OUT_ITEMS;

/// Step records by key, and the join of fan-out branches. A *step key* ([`StepKey`]) is the
/// step id and the branch indexes of its enclosing fan-outs; a *fan-out key* is the step key of
/// the fan-out step. Adapters store them rendered (`notify`, `notify@3`, `leaf@3.5`: the text
/// of [`StepAttempt::step`]) and compare them whole, so `f`, `f@1` and `fa` are different keys.
#[async_trait]
pub trait FanOutStore: Send + Sync {
    /// The attempt of `step_key` with the highest attempt number, if any.
    async fn latest_step(&self, execution_id: &str, step_key: &StepKey) -> Result<Option<StepAttempt>, StoreError>;
    /// Keeps the items of a fan-out (so that branches started later find theirs). Calling it
    /// again with the same items is harmless.
    async fn put_fan_out_items(
        &self,
        execution_id: &str,
        fan_out_key: &StepKey,
        items: &[Value],
    ) -> Result<(), StoreError>;
    /// Item `index` of a fan-out, as kept by `put_fan_out_items`.
    async fn fan_out_item(
        &self,
        execution_id: &str,
        fan_out_key: &StepKey,
        index: u32,
    ) -> Result<Option<Value>, StoreError>;
    /// Records branch `index` of a fan-out of `total` branches as done with `result`, once: a
    /// repeated call for the same branch (a redelivery) keeps the first result. `by` is a
    /// token of this call (unique per call; the same when a call is retried after a lost
    /// answer). Says whether all `total` branches are done — `true` from the call that
    /// completes the last missing branch and from every call after it (a redelivery must be
    /// able to finish the join when the first delivery stopped half-way), never before — and
    /// whether this call counted the branch first: a write of `by` that went through but whose
    /// answer was lost still counts as first when the call is made again with the same token.
    /// Every step is idempotent, so a call that failed is simply made again.
    async fn complete_branch(
        &self,
        execution_id: &str,
        fan_out_key: &StepKey,
        index: u32,
        total: u32,
        result: &Value,
        by: &str,
    ) -> Result<Counted, StoreError>;
    /// [`complete_branch`](FanOutStore::complete_branch) for several branches of one fan-out
    /// at once (branches run inline, recorded in one batch where the backend can), with the
    /// same exactly-once semantics; returns whether all `total` branches are done afterwards.
    async fn complete_branches(
        &self,
        execution_id: &str,
        fan_out_key: &StepKey,
        total: u32,
        results: &[(u32, Value)],
    ) -> Result<bool, StoreError> {
        let mut done = false;
        for (index, result) in results {
            done = self.complete_branch(execution_id, fan_out_key, *index, total, result, "").await?.all_done;
        }
        Ok(done)
    }
    /// The step attempts of branches run inline (`records`: each branch's attempts, in the
    /// order they ran), recorded first-writer-wins, then `results` counted done as
    /// [`complete_branches`](FanOutStore::complete_branches) does: one transaction where the
    /// backend can. A branch's attempts are recorded in order up to the first that another
    /// delivery had recorded already (its later attempts were built on a result that lost, and
    /// are not written); if there was any such conflict nothing is counted and `None` is
    /// returned (the caller runs the fan-out again, from what is recorded). Otherwise, whether
    /// all `total` branches are done.
    async fn record_branches(
        &self,
        execution_id: &str,
        fan_out_key: &StepKey,
        total: u32,
        records: &[Vec<StepAttempt>],
        results: &[(u32, Value)],
    ) -> Result<Option<bool>, StoreError>;
    /// The result of every done branch, in index order.
    async fn branch_results(&self, execution_id: &str, fan_out_key: &StepKey) -> Result<Vec<(u32, Value)>, StoreError>;
}

/// Everything the runtime stores.
pub trait Store:
    ProjectStore
    + WorkflowStore
    + AppEventStore
    + SampleStore
    + ExecutionStore
    + FileStore
    + FanOutStore
    + ConnectStore
    + IdempotencyStore
    + ScheduleStore
    + PollStore
    + WebhookStore
    + HistoryStore
    + NotificationStore
{
}
impl<
    T: ProjectStore
        + WorkflowStore
        + AppEventStore
        + SampleStore
        + ExecutionStore
        + FileStore
        + FanOutStore
        + ConnectStore
        + IdempotencyStore
        + ScheduleStore
        + PollStore
        + WebhookStore
        + HistoryStore
        + NotificationStore,
> Store for T
{
}

/// The two queues: step messages for the step runner, deadline messages for the response waiter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QueueName {
    Steps,
    Responses,
}

impl QueueName {
    pub fn as_str(self) -> &'static str {
        match self {
            QueueName::Steps => "steps",
            QueueName::Responses => "responses",
        }
    }
}

/// A message to send, delivered no earlier than `delay` from now.
#[derive(Debug, Clone, PartialEq)]
pub struct Outgoing {
    pub body: String,
    pub delay: Duration,
}

/// A received message; invisible to other receivers until acked or its visibility ends.
#[derive(Debug, Clone, PartialEq)]
pub struct Received {
    pub body: String,
    /// Opaque handle for `ack`.
    pub receipt: String,
    /// How many times it has been received, this time included (1 the first time).
    pub receive_count: u32,
    /// Received past the redrive limit: the consumer runs its dead-letter handling (fail the
    /// execution with the reason) instead of the message, then acks it. (SQLite; on AWS a
    /// dead-letter queue's own event source does this.)
    pub dead_letter: bool,
}

/// The longest delay a queue can hold a message (SQS's limit); longer waits are chained.
pub use crate::engine::MAX_QUEUE_DELAY;

/// Sending messages: what every handler may do.
#[async_trait]
pub trait SendQueue: Send + Sync {
    /// Sends one message. Delays above [`MAX_QUEUE_DELAY`] are capped to it; sub-second
    /// delays may be rounded up to a whole second by adapters that count in seconds.
    async fn send(&self, queue: QueueName, message: Outgoing) -> Result<(), QueueError>;
    /// Sends many (adapters split into the backend's batch size). Fails with `PartialBatch`
    /// if any entry was refused, after sending all the others.
    async fn send_batch(&self, queue: QueueName, messages: Vec<Outgoing>) -> Result<(), QueueError>;
}

/// Consuming messages: only the local stack does it (on AWS, Lambda's event source does).
#[async_trait]
pub trait ConsumeQueue: Send + Sync {
    /// Receives up to `max` visible messages, waiting up to `wait` for the first. Each stays
    /// invisible for `visibility`, then is delivered again unless acked. Messages received
    /// more than the adapter's redrive limit go to the dead-letter queue (SQS), or come back
    /// marked [`Received::dead_letter`] (SQLite).
    async fn receive(
        &self,
        queue: QueueName,
        max: usize,
        wait: Duration,
        visibility: Duration,
    ) -> Result<Vec<Received>, QueueError>;
    /// Deletes a received message.
    async fn ack(&self, queue: QueueName, receipt: &str) -> Result<(), QueueError>;
}

/// Both directions of a queue (adapters, the local stack, the conformance suite).
pub trait Queue: SendQueue + ConsumeQueue {}
impl<T: SendQueue + ConsumeQueue> Queue for T {}

/// Creating an execution together with the messages that make it run, as one fact: an
/// execution is never stored without a way forward, whatever fails or crashes in between, and
/// whether or not the caller stays connected.
#[async_trait]
pub trait StartExecution: Send + Sync {
    /// Creates `execution` (`AlreadyExists` if the id is taken) and sends `messages`. Either
    /// both happen, or the execution is never seen running without its messages: SQLite does
    /// both in one transaction; DynamoDB + SQS send first and create after (a message that
    /// finds no execution is dropped), see `crate::start::SendThenCreate`.
    async fn create_and_send(
        &self,
        execution: &Execution,
        messages: Vec<(QueueName, Outgoing)>,
    ) -> Result<(), StartError>;

    /// Creates several executions with their messages, as [`create_and_send`] does for one:
    /// an app event's listeners, a due minute of a schedule. Adapters write them in batches
    /// (one SQLite transaction; batched writes and sends on AWS). On an error, some may have
    /// been created: each with its messages, never one without.
    ///
    /// [`create_and_send`]: StartExecution::create_and_send
    async fn create_and_send_many(
        &self,
        starts: Vec<(Execution, Vec<(QueueName, Outgoing)>)>,
    ) -> Result<(), StartError> {
        for (execution, messages) in starts {
            self.create_and_send(&execution, messages).await?;
        }
        Ok(())
    }

    /// Creates the executions a webhook delivery starts, with their messages, and keeps the
    /// delivery: one transaction where the backend can (SQLite), so that a delivery costs
    /// one write; otherwise the starts as [`create_and_send_many`] does, then the delivery
    /// through `deliveries`. `AlreadyExists` (an execution's derived id is taken) keeps
    /// nothing.
    ///
    /// [`create_and_send_many`]: StartExecution::create_and_send_many
    async fn start_and_keep(
        &self,
        starts: Vec<(Execution, Vec<(QueueName, Outgoing)>)>,
        delivery: &WebhookDelivery,
        deliveries: &dyn WebhookStore,
    ) -> Result<(), StartError> {
        self.create_and_send_many(starts).await?;
        deliveries.put_delivery(delivery).await?;
        Ok(())
    }

    /// Whether the execution and its messages are written atomically (one transaction). When
    /// not, a start whose first step goes out at once also sends a delayed recovery message
    /// first, in case the process dies between the two.
    fn is_atomic(&self) -> bool {
        true
    }
}

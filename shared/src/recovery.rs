//! The recovery sweep on the AWS adapters (feature `aws`): the step runner function runs
//! [`DynamoSweep::run`] when EventBridge invokes it on its schedule (`template.yaml`,
//! `RecoverySweep`). It lists the executions that have not ended and were last known due
//! longer than `quiet_for` ago from the table's sparse index (no scan), and hands each one to
//! [`Runner::sweep`], which resumes it if nothing of it is due any more and otherwise says
//! when something was, which is written back so the index skips it until then.

use std::time::Duration;

use serde::Serialize;

use crate::adapters::dynamodb::DynamoStore;
use crate::ports::StoreError;
use crate::record::now;
use crate::runner::{Runner, Swept};

/// Executions one sweep looks at, at most: the next sweep goes on with the rest.
pub const MAX_PER_SWEEP: usize = 200;

/// The sweep over one DynamoDB table.
#[derive(Debug, Clone)]
pub struct DynamoSweep {
    pub store: DynamoStore,
    /// How long nothing of an execution may be due before it counts as stuck: longer than a
    /// message can live unrecorded (`SLUICE_STUCK_AFTER_SECONDS`, default an hour: the steps
    /// queue's 720 s visibility × 5 receives).
    pub quiet_for: Duration,
}

/// What one sweep did: the function's response and its log line.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SweepReport {
    /// Executions the index listed.
    pub looked_at: usize,
    /// Of those, resumed (or failed with the reason) because nothing was moving them.
    pub resumed: usize,
    /// Of those, with something due recently: looked at again later.
    pub not_yet: usize,
    /// Of those, ended meanwhile.
    pub ended: usize,
    /// Of those, not handled this time (storage or queue trouble; the next sweep retries).
    pub errors: usize,
}

impl DynamoSweep {
    /// One sweep. Fails only if the index cannot be read; trouble with one execution is
    /// logged and counted, and the others are still looked at.
    pub async fn run(&self, runner: &Runner) -> Result<SweepReport, StoreError> {
        let quiet = chrono::Duration::from_std(self.quiet_for).unwrap_or(chrono::Duration::MAX);
        let due_before = now().checked_sub_signed(quiet).unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC);
        let candidates = self.store.due_for_sweep(&due_before, MAX_PER_SWEEP).await?;
        let mut report = SweepReport { looked_at: candidates.len(), ..SweepReport::default() };
        for execution_id in candidates {
            let handled = match runner.sweep(&execution_id, self.quiet_for).await {
                Ok(Swept::Ended) => {
                    report.ended += 1;
                    Ok(())
                }
                Ok(Swept::Due(due)) => {
                    report.not_yet += 1;
                    self.store.sweep_later(&execution_id, &due).await
                }
                Ok(Swept::Resumed) => {
                    report.resumed += 1;
                    // Looked at again only after another `quiet_for` without anything due.
                    self.store.sweep_later(&execution_id, &now()).await
                }
                Err(error) => Err(StoreError::Backend(error.to_string())),
            };
            if let Err(error) = handled {
                report.errors += 1;
                tracing::error!(execution = %execution_id, %error, "the recovery sweep could not handle an execution");
            }
        }
        tracing::info!(
            looked_at = report.looked_at,
            resumed = report.resumed,
            not_yet = report.not_yet,
            ended = report.ended,
            errors = report.errors,
            "recovery sweep"
        );
        Ok(report)
    }
}

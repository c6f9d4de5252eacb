//! The scheduler's EventBridge side: [`EventBridgeRule`], the [`ScheduleRule`] port over the
//! one rule (`SchedulerRule` in `template.yaml`, `rate(1 minute)`) that invokes the `scheduler`
//! function, and what one of those invocations does ([`scheduled_tick`]).
//!
//! Invariants: the rule is only ever switched (EnableRule / DisableRule) and read
//! (DescribeRule), never created, retargeted or deleted by the functions: the template owns
//! it, and the number of rules never grows with users or workflows. It is on only while it
//! has work: the deploy path switches it on ([`crate::scheduler::switch_rule`]), and a tick
//! that leaves the ledger without a due row switches it off ([`idle_off`]), so an idle stack
//! is invoked by nothing. Every EventBridge failure is `StoreError::Backend` (retryable).

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_eventbridge::Client;
use aws_sdk_eventbridge::error::DisplayErrorContext;
use aws_sdk_eventbridge::types::{RuleState, Target};

use crate::ports::{ScheduleRule, StoreError};
use crate::runner::Runner;
use crate::runtime::Runtime;
use crate::scheduler::{self, SchedulerError, TickReport};

/// The rule's schedule: every minute (the scheduler hands fires inside the minute to delayed
/// SQS messages). `template.yaml` declares the same.
pub const SCHEDULE_EXPRESSION: &str = "rate(1 minute)";

/// How much of an invocation's remaining time the tick leaves unused: it stops reading due
/// pages this long before the function's deadline, so that it can still hand the rest to the
/// next invocation and answer. The scheduler's Lambda timeout is 60 s, so a tick pages for
/// about 45 s.
pub const HAND_OFF_MARGIN: Duration = Duration::from_secs(15);

/// The EventBridge rule that invokes the scheduler, by name (on the default event bus).
#[derive(Debug, Clone)]
pub struct EventBridgeRule {
    client: Client,
    name: String,
}

impl EventBridgeRule {
    pub fn new(client: Client, name: impl Into<String>) -> EventBridgeRule {
        EventBridgeRule { client, name: name.into() }
    }

    /// The rule `name` through a client of `sdk`.
    pub fn from_sdk(sdk: &aws_config::SdkConfig, name: impl Into<String>) -> EventBridgeRule {
        EventBridgeRule::new(Client::new(sdk), name)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Creates (or updates) the rule as `template.yaml` declares it — [`SCHEDULE_EXPRESSION`],
    /// disabled — targeting the function `target_arn` if given; its ARN. For tests and local
    /// setups: on AWS the stack creates it.
    pub async fn create(&self, target_arn: Option<&str>) -> Result<String, StoreError> {
        let created = self
            .client
            .put_rule()
            .name(&self.name)
            .schedule_expression(SCHEDULE_EXPRESSION)
            .state(RuleState::Disabled)
            .description("Sluice: runs the scheduler function while a schedule or poll is deployed")
            .send()
            .await
            .map_err(|e| self.backend("PutRule", e))?;
        if let Some(arn) = target_arn {
            let target = Target::builder()
                .id("scheduler")
                .arn(arn)
                .build()
                .map_err(|e| StoreError::Backend(format!("EventBridge target of {}: {e}", self.name)))?;
            let put = self
                .client
                .put_targets()
                .rule(&self.name)
                .targets(target)
                .send()
                .await
                .map_err(|e| self.backend("PutTargets", e))?;
            if put.failed_entry_count() > 0 {
                return Err(StoreError::Backend(format!(
                    "EventBridge PutTargets {}: {:?}",
                    self.name,
                    put.failed_entries()
                )));
            }
        }
        created
            .rule_arn
            .ok_or_else(|| StoreError::Backend(format!("EventBridge PutRule {} returned no ARN", self.name)))
    }

    fn backend<E: std::error::Error + 'static>(&self, operation: &str, error: E) -> StoreError {
        StoreError::Backend(format!("EventBridge {operation} {}: {}", self.name, DisplayErrorContext(&error)))
    }
}

#[async_trait]
impl ScheduleRule for EventBridgeRule {
    /// EnableRule or DisableRule; both are idempotent (switching a rule to the state it has
    /// succeeds).
    async fn set_enabled(&self, enabled: bool) -> Result<(), StoreError> {
        if enabled {
            self.client.enable_rule().name(&self.name).send().await.map_err(|e| self.backend("EnableRule", e))?;
        } else {
            self.client.disable_rule().name(&self.name).send().await.map_err(|e| self.backend("DisableRule", e))?;
        }
        tracing::info!(rule = %self.name, enabled, "switched the scheduler's rule");
        Ok(())
    }

    /// DescribeRule: `ENABLED` (or enabled for CloudTrail management events too) is on.
    async fn is_enabled(&self) -> Result<bool, StoreError> {
        let rule =
            self.client.describe_rule().name(&self.name).send().await.map_err(|e| self.backend("DescribeRule", e))?;
        Ok(match rule.state() {
            Some(RuleState::Enabled | RuleState::EnabledWithAllCloudtrailManagementEvents) => true,
            Some(RuleState::Disabled) | None => false,
            Some(other) => {
                return Err(StoreError::Backend(format!(
                    "EventBridge DescribeRule {}: unknown state {other}",
                    self.name
                )));
            }
        })
    }
}

/// Whether the ledger holds any row that will come due (parked rows never do).
async fn ledger_has_due_rows(runtime: &Runtime) -> Result<bool, StoreError> {
    let far = chrono::DateTime::<chrono::Utc>::MAX_UTC;
    Ok(!runtime.store.due_schedules(far, None, 1).await?.0.is_empty())
}

/// Switches the scheduler's rule off if the ledger has no row that will come due (the last
/// schedule was undeployed and the tick removed its rows, or no user has one enabled);
/// whether it did. Nothing without a rule (`sluice dev`).
///
/// A deploy writes its rows before it switches the rule on: if rows appear between the look
/// and the switch, the second look sees them and switches the rule back on, so a concurrent
/// deploy never ends with its rows and the rule off. A row written later by a user's own
/// choice (enabling a workflow) must switch the rule on the same way.
pub async fn idle_off(runtime: &Runtime) -> Result<bool, StoreError> {
    let Some(rule) = &runtime.schedule_rule else { return Ok(false) };
    if ledger_has_due_rows(runtime).await? {
        return Ok(false);
    }
    rule.set_enabled(false).await?;
    if ledger_has_due_rows(runtime).await? {
        rule.set_enabled(true).await?;
        return Ok(false);
    }
    Ok(true)
}

/// One invocation of the scheduler function by its rule, with `remaining` time before the
/// function's deadline: a tick with the AWS settings ([`scheduler::aws_settings`]) that pages
/// until [`HAND_OFF_MARGIN`] before the deadline and hands what is left to the steps queue
/// ([`scheduler::run_invocation`]); then, if the tick left no due row behind (everything it read
/// was removed, or nothing was due), [`idle_off`]. A failure to switch the rule is logged: the
/// tick stands, and the next one tries again.
pub async fn scheduled_tick(runner: &Runner, remaining: Duration) -> Result<TickReport, SchedulerError> {
    let budget = remaining.saturating_sub(HAND_OFF_MARGIN);
    let report = scheduler::run_invocation(runner, &scheduler::aws_settings(), None, budget).await?;
    if report.more.is_none() && report.due == report.removed {
        match idle_off(runner.runtime()).await {
            Ok(true) => tracing::info!("the schedule ledger is empty: the scheduler's rule is off"),
            Ok(false) => {}
            Err(error) => tracing::error!(%error, "the scheduler's rule could not be switched off"),
        }
    }
    Ok(report)
}

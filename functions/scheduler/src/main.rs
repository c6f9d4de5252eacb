//! The scheduler function: the EventBridge rule `SchedulerRule` (`rate(1 minute)`, on only
//! while a schedule or poll workflow is deployed) invokes it with a "Scheduled Event"; each
//! invocation is one tick of `sluice_shared::scheduler` within the function's remaining time
//! (`sluice_shared::adapters::eventbridge::scheduled_tick`), and answers with what it did.
//! The event's content does not matter: any invocation ticks at the clock's now.

use std::time::SystemTime;

use anyhow::Context;
use lambda_runtime::{LambdaEvent, service_fn};
use serde_json::Value;
use sluice_shared::adapters::eventbridge::scheduled_tick;
use sluice_shared::config::{LambdaConfig, build_runtime};
use sluice_shared::runner::Runner;
use sluice_shared::telemetry::{self, FaasTrigger};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    telemetry::init_lambda().context("traces cannot be exported")?;
    let config = LambdaConfig::from_env().context("the scheduler function cannot start")?;
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let runner = Runner::new(build_runtime(&config, &sdk).await?);
    let runner = &runner;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        telemetry::invocation(FaasTrigger::Timer, &event.context.request_id);
        let remaining = event.context.deadline().duration_since(SystemTime::now()).unwrap_or_default();
        let report = scheduled_tick(runner, remaining).await;
        telemetry::flush().await;
        let report = report.map_err(lambda_runtime::Error::from)?;
        tracing::info!(report = %serde_json::to_string(&report).unwrap_or_default(), "tick");
        serde_json::to_value(report).map_err(lambda_runtime::Error::from)
    }))
    .await
    .map_err(|error| anyhow::anyhow!(error))
}

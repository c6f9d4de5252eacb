//! The step runner function: each SQS record is one step message for
//! `sluice_shared::runner::Runner`; the records it could not handle go back to the queue
//! (partial batch response) and reach the dead-letter queue after the redrive limit, whose
//! records (its second event source) fail their execution with the reason. EventBridge also
//! invokes it on a schedule with `{"sluice": "recovery-sweep"}`: it then runs the recovery
//! sweep (`sluice_shared::recovery`) and answers with what the sweep did.

use anyhow::Context;
use aws_lambda_events::sqs::SqsEvent;
use lambda_runtime::{LambdaEvent, service_fn};
use serde_json::Value;
use sluice_shared::config::{LambdaConfig, build_runtime, dynamo_store};
use sluice_shared::recovery::DynamoSweep;
use sluice_shared::runner::Runner;
use sluice_shared::sqs_batch::handle_batch;
use sluice_shared::telemetry::{self, FaasTrigger};

/// The scheduled event's `sluice` field that asks for a recovery sweep (`template.yaml`).
const SWEEP_EVENT: &str = "recovery-sweep";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    telemetry::init_lambda().context("traces cannot be exported")?;
    let config = LambdaConfig::from_env().context("the step-runner function cannot start")?;
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let runner = Runner::new(build_runtime(&config, &sdk).await?);
    let sweep = DynamoSweep { store: dynamo_store(&config, &sdk), quiet_for: config.stuck_after };
    let (runner, sweep) = (&runner, &sweep);
    let dead_letters = config.dead_letter_queue_arn.as_deref();
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        if event.payload.get("sluice").and_then(Value::as_str) == Some(SWEEP_EVENT) {
            telemetry::invocation(FaasTrigger::Timer, &event.context.request_id);
            let report = sweep.run(runner).await;
            telemetry::flush().await;
            return serde_json::to_value(report.map_err(lambda_runtime::Error::from)?)
                .map_err(lambda_runtime::Error::from);
        }
        telemetry::invocation(FaasTrigger::PubSub, &event.context.request_id);
        let batch: SqsEvent = serde_json::from_value(event.payload)
            .map_err(|error| lambda_runtime::Error::from(format!("neither an SQS event nor a sweep: {error}")))?;
        let handled = handle_batch(batch, dead_letters, move |body, receive_count, dead_letter| {
            let runner = runner.clone();
            async move {
                if dead_letter { runner.dead_lettered(&body).await } else { runner.handle(&body, receive_count).await }
            }
        });
        let response = handled.await;
        telemetry::flush().await;
        let response = response.map_err(lambda_runtime::Error::from)?;
        serde_json::to_value(response).map_err(lambda_runtime::Error::from)
    }))
    .await
    .map_err(|error| anyhow::anyhow!(error))
}

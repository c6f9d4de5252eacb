//! The response waiter function: each SQS record is a deadline message for
//! `sluice_shared::waiter::Waiter`; the records it could not handle go back to the queue
//! (partial batch response) and reach the dead-letter queue after the redrive limit, whose
//! records (its second event source) fail their execution with the reason.

use anyhow::Context;
use aws_lambda_events::sqs::SqsEvent;
use lambda_runtime::{LambdaEvent, service_fn};
use sluice_shared::config::{LambdaConfig, build_runtime};
use sluice_shared::sqs_batch::handle_batch;
use sluice_shared::telemetry::{self, FaasTrigger};
use sluice_shared::waiter::Waiter;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    telemetry::init_lambda().context("traces cannot be exported")?;
    let config = LambdaConfig::from_env().context("the response-waiter function cannot start")?;
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let waiter = Waiter::new(build_runtime(&config, &sdk).await?);
    let waiter = &waiter;
    let dead_letters = config.dead_letter_queue_arn.as_deref();
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        telemetry::invocation(FaasTrigger::PubSub, &event.context.request_id);
        let handled = handle_batch(event.payload, dead_letters, move |body, _receive_count, dead_letter| {
            let waiter = waiter.clone();
            async move { if dead_letter { waiter.dead_lettered(&body).await } else { waiter.handle(&body).await } }
        });
        let handled = handled.await;
        telemetry::flush().await;
        handled.map_err(lambda_runtime::Error::from)
    }))
    .await
    .map_err(|error| anyhow::anyhow!(error))
}

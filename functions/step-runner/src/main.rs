//! The step runner function: each SQS record is one step message for
//! `sluice_shared::runner::Runner`; the records it could not handle go back to the queue
//! (partial batch response) and reach the dead-letter queue after the redrive limit, whose
//! records (its second event source) fail their execution with the reason.

use anyhow::Context;
use aws_lambda_events::sqs::SqsEvent;
use lambda_runtime::{LambdaEvent, service_fn};
use sluice_shared::config::{LambdaConfig, build_runtime};
use sluice_shared::runner::Runner;
use sluice_shared::sqs_batch::handle_batch;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    lambda_runtime::tracing::init_default_subscriber();
    let config = LambdaConfig::from_env().context("the step-runner function cannot start")?;
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let runner = Runner::new(build_runtime(&config, &sdk).await?);
    let runner = &runner;
    let dead_letters = config.dead_letter_queue_arn.as_deref();
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        let handled = handle_batch(event.payload, dead_letters, move |body, receive_count, dead_letter| {
            let runner = runner.clone();
            async move {
                if dead_letter { runner.dead_lettered(&body).await } else { runner.handle(&body, receive_count).await }
            }
        });
        handled.await.map_err(lambda_runtime::Error::from)
    }))
    .await
    .map_err(|error| anyhow::anyhow!(error))
}

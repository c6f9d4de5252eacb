//! The response waiter function: each SQS record is a deadline message for
//! `sluice_shared::waiter::Waiter`; the records it could not handle go back to the queue
//! (partial batch response) and reach the dead-letter queue after the redrive limit.

use std::future::Future;

use anyhow::Context;
use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{Error, LambdaEvent, service_fn};
use sluice_shared::config::{LambdaConfig, build_runtime};
use sluice_shared::runner::RunError;
use sluice_shared::waiter::Waiter;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    lambda_runtime::tracing::init_default_subscriber();
    let config = LambdaConfig::from_env().context("the response-waiter function cannot start")?;
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let waiter = Waiter::new(build_runtime(&config, &sdk).await?);
    let waiter = &waiter;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| {
        handle_batch(event.payload, move |body| {
            let waiter = waiter.clone();
            async move { waiter.handle(&body).await }
        })
    }))
    .await
    .map_err(|error| anyhow::anyhow!(error))
}

/// Handles every record concurrently and reports the ids of those that failed. A record
/// without a body fails; a failed record without an id fails the whole invocation (SQS then
/// redelivers the batch: nothing is lost, settling a response is first-writer-wins).
async fn handle_batch<F, Fut>(event: SqsEvent, handle: F) -> Result<SqsBatchResponse, Error>
where
    F: Fn(String) -> Fut,
    Fut: Future<Output = Result<(), RunError>> + Send + 'static,
{
    let tasks: Vec<_> = event
        .records
        .into_iter()
        .map(|record| (record.message_id, record.body.map(|body| tokio::spawn(handle(body)))))
        .collect();
    let mut response = SqsBatchResponse::default();
    for (message_id, task) in tasks {
        let failure = match task {
            None => "the message has no body".to_string(),
            Some(task) => match task.await {
                Ok(Ok(())) => continue,
                Ok(Err(error)) => error.to_string(),
                Err(join_error) => format!("the handler panicked: {join_error}"),
            },
        };
        let id = message_id.as_deref().unwrap_or("<no messageId>");
        tracing::error!(message_id = id, error = %failure, "deadline message not handled; SQS will redeliver it");
        match message_id {
            Some(message_id) => response.add_failure(message_id),
            None => return Err(format!("a message without messageId failed: {failure}").into()),
        }
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    const RESPONSES_EVENT: &str = include_str!("../../../infra/events/sqs-responses.json");

    #[tokio::test]
    async fn failed_and_bodiless_records_are_reported_by_id() {
        let mut event: SqsEvent = serde_json::from_str(RESPONSES_EVENT).expect("the fixture is an SQS event");
        let mut second = event.records[0].clone();
        second.message_id = Some("no-body".into());
        second.body = None;
        let mut third = event.records[0].clone();
        third.message_id = Some("refused".into());
        third.body = Some("refuse".into());
        event.records.extend([second, third]);
        let response = handle_batch(event, |body| async move {
            if body == "refuse" { Err(RunError::Retryable("refused".into())) } else { Ok(()) }
        })
        .await
        .expect("batch handled");
        let failed: Vec<_> = response.batch_item_failures.iter().map(|f| f.item_identifier.as_str()).collect();
        assert_eq!(failed, ["no-body", "refused"]);
    }
}

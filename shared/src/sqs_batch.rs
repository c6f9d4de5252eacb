//! The SQS side of the consumer functions (feature `lambda`): every record of a batch is
//! handled concurrently, and the ids of the records that failed are reported
//! (`ReportBatchItemFailures`), so SQS redelivers only those. Nothing is acknowledged that
//! was not handled: a record without a body fails, and a failed record without an id fails
//! the whole invocation (SQS then redelivers the batch; handlers are idempotent).

use std::future::Future;

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};

use crate::runner::RunError;

#[derive(Debug, thiserror::Error)]
#[error("a message without messageId failed: {0}")]
pub struct BatchError(String);

/// Runs `handle(body, receive_count, dead_letter)` for every record and reports the failed
/// ones; `dead_letter` is whether the record comes from `dead_letter_queue_arn` (the
/// function's dead-letter queue event source).
pub async fn handle_batch<F, Fut>(
    event: SqsEvent,
    dead_letter_queue_arn: Option<&str>,
    handle: F,
) -> Result<SqsBatchResponse, BatchError>
where
    F: Fn(String, u32, bool) -> Fut,
    Fut: Future<Output = Result<(), RunError>> + Send + 'static,
{
    let tasks: Vec<_> = event
        .records
        .into_iter()
        .map(|record| {
            let receive_count = receive_count(&record);
            let dead_letter =
                dead_letter_queue_arn.is_some() && record.event_source_arn.as_deref() == dead_letter_queue_arn;
            let task = record.body.map(|body| tokio::spawn(handle(body, receive_count, dead_letter)));
            (record.message_id, task)
        })
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
        tracing::error!(message_id = id, error = %failure, "message not handled; SQS will redeliver it");
        match message_id {
            Some(message_id) => response.add_failure(message_id),
            None => return Err(BatchError(failure)),
        }
    }
    Ok(response)
}

/// SQS's `ApproximateReceiveCount` (1 on the first delivery); 1 when absent or malformed.
fn receive_count(record: &SqsMessage) -> u32 {
    let count = record.attributes.get("ApproximateReceiveCount");
    count.and_then(|c| c.parse().ok()).unwrap_or_else(|| {
        tracing::warn!(message_id = ?record.message_id, ?count, "no usable ApproximateReceiveCount; assuming 1");
        1
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const STEPS_EVENT: &str = include_str!("../../infra/events/sqs-steps.json");
    const RESPONSES_EVENT: &str = include_str!("../../infra/events/sqs-responses.json");

    /// Stands in for the runner: a body that is not a step message is poison.
    async fn parse_only(body: String, _receive_count: u32, _dead_letter: bool) -> Result<(), RunError> {
        serde_json::from_str::<crate::messages::StepMessage>(&body)
            .map(drop)
            .map_err(|e| RunError::Poison(e.to_string()))
    }

    fn fixture() -> SqsEvent {
        serde_json::from_str(STEPS_EVENT).expect("the fixture is an SQS event")
    }

    fn failed_ids(response: &SqsBatchResponse) -> Vec<&str> {
        response.batch_item_failures.iter().map(|f| f.item_identifier.as_str()).collect()
    }

    #[tokio::test]
    async fn only_the_malformed_record_of_the_fixture_is_reported() {
        let event = fixture();
        let malformed = event.records[1].message_id.clone().expect("fixture has ids");
        let response = handle_batch(event, None, parse_only).await.expect("batch handled");
        assert_eq!(failed_ids(&response), [malformed.as_str()]);
    }

    #[tokio::test]
    async fn a_record_without_body_is_a_failure() {
        let mut event = fixture();
        event.records.truncate(1);
        event.records[0].body = None;
        let id = event.records[0].message_id.clone().expect("fixture has ids");
        let response = handle_batch(event, None, parse_only).await.expect("batch handled");
        assert_eq!(failed_ids(&response), [id.as_str()]);
    }

    #[tokio::test]
    async fn a_failed_record_without_id_fails_the_whole_batch() {
        let mut event = fixture();
        event.records[1].message_id = None;
        assert!(handle_batch(event, None, parse_only).await.is_err());
    }

    #[tokio::test]
    async fn the_receive_count_comes_from_the_record_attributes() {
        let mut event = fixture();
        event.records.truncate(1);
        event.records[0].attributes.insert("ApproximateReceiveCount".into(), "4".into());
        let response = handle_batch(event, None, |_, count, _| async move {
            if count == 4 { Ok(()) } else { Err(RunError::Retryable(format!("count {count}"))) }
        })
        .await
        .expect("batch handled");
        assert!(response.batch_item_failures.is_empty());
    }

    #[tokio::test]
    async fn failed_and_bodiless_deadline_records_are_reported_by_id() {
        let mut event: SqsEvent = serde_json::from_str(RESPONSES_EVENT).expect("the fixture is an SQS event");
        let mut second = event.records[0].clone();
        second.message_id = Some("no-body".into());
        second.body = None;
        let mut third = event.records[0].clone();
        third.message_id = Some("refused".into());
        third.body = Some("refuse".into());
        event.records.extend([second, third]);
        let response = handle_batch(event, None, |body, _, _| async move {
            if body == "refuse" { Err(RunError::Retryable("refused".into())) } else { Ok(()) }
        })
        .await
        .expect("batch handled");
        assert_eq!(failed_ids(&response), ["no-body", "refused"]);
    }

    #[tokio::test]
    async fn records_of_the_dead_letter_queue_are_handled_as_dead_letters() {
        let mut event = fixture();
        let mut dead = event.records[0].clone();
        dead.message_id = Some("dead".into());
        dead.event_source_arn = Some("arn:aws:sqs:us-east-1:123456789012:sluice-steps-dlq".into());
        event.records = vec![event.records[0].clone(), dead];
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let dlq = Some("arn:aws:sqs:us-east-1:123456789012:sluice-steps-dlq");
        let response = handle_batch(event.clone(), dlq, |_, _, dead_letter| {
            let seen = seen.clone();
            async move {
                seen.lock().map_err(|_| RunError::Poison("lock".into()))?.push(dead_letter);
                Ok(())
            }
        })
        .await
        .expect("batch handled");
        assert!(response.batch_item_failures.is_empty());
        let mut seen = seen.lock().expect("seen").clone();
        seen.sort_unstable();
        assert_eq!(seen, [false, true], "only the record from the dead-letter queue");
        // Without a dead-letter queue configured, nothing is a dead letter.
        let none = handle_batch(event, None, |_, _, dead_letter| async move {
            if dead_letter { Err(RunError::Poison("not a dead letter".into())) } else { Ok(()) }
        });
        assert!(none.await.expect("batch handled").batch_item_failures.is_empty());
    }
}

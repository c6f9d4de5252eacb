//! The AWS queue: the steps and responses queues are two SQS standard queues, each with a
//! dead-letter queue that takes a message after `maxReceiveCount` receives.
//!
//! Invariants: delays are never shortened (SQS counts whole seconds, so a delay is rounded up
//! and capped at 900 s); a batch send tries every entry and reports each refused one in
//! `QueueError::PartialBatch` instead of dropping it; only `ack` deletes a message.

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::error::{DisplayErrorContext, SdkError};
use aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName, SendMessageBatchRequestEntry};
use tokio::task::JoinSet;

use crate::ports::{ConsumeQueue, MAX_QUEUE_DELAY, Outgoing, QueueError, QueueName, Received, SendQueue};

/// SQS's largest batch (send, receive, delete).
const BATCH_SIZE: usize = 10;
/// The most message bytes in one `SendMessageBatch` (SQS's limit on a batch's total payload
/// is 256 KiB in older regions and emulators, 1 MiB since 2025: the lower one holds everywhere).
const BATCH_BYTES: usize = 256 * 1024;
/// How many `SendMessageBatch` requests `send_batch` keeps in flight.
const SEND_CONCURRENCY: usize = 16;
/// SQS's longest long-poll wait.
const MAX_WAIT_SECONDS: u64 = 20;
/// SQS's longest visibility timeout (12 h).
const MAX_VISIBILITY_SECONDS: u64 = 43_200;
/// How long a dead letter is kept (SQS's maximum, 14 days), so someone can look at it.
const DEAD_LETTER_RETENTION_SECONDS: u32 = 1_209_600;

/// `Queue` over the two SQS queues, addressed by URL.
#[derive(Debug, Clone)]
pub struct SqsQueue {
    client: Client,
    steps_url: String,
    responses_url: String,
}

impl SqsQueue {
    /// A queue over the queues at `steps_url` and `responses_url` (see [`create_queues`]).
    pub fn new(client: Client, steps_url: impl Into<String>, responses_url: impl Into<String>) -> SqsQueue {
        SqsQueue { client, steps_url: steps_url.into(), responses_url: responses_url.into() }
    }

    fn url(&self, queue: QueueName) -> &str {
        match queue {
            QueueName::Steps => &self.steps_url,
            QueueName::Responses => &self.responses_url,
        }
    }
}

/// Whole seconds in `d`, rounded up and capped at `max`.
fn ceil_seconds(d: Duration, max: u64) -> i32 {
    let seconds = d.as_secs().saturating_add(u64::from(d.subsec_nanos() > 0)).min(max);
    i32::try_from(seconds).unwrap_or(i32::MAX)
}

/// The `DelaySeconds` for a message: rounded up to whole seconds, at most 900.
fn delay_seconds(delay: Duration) -> i32 {
    ceil_seconds(delay, MAX_QUEUE_DELAY.as_secs())
}

fn backend<E, R>(operation: &str, e: SdkError<E, R>) -> QueueError
where
    E: std::error::Error + 'static,
    R: std::fmt::Debug,
{
    QueueError::Backend(format!("SQS {operation}: {}", DisplayErrorContext(&e)))
}

/// Splits entries into batches of at most [`BATCH_SIZE`] entries and [`BATCH_BYTES`] of bodies
/// (a single larger body gets a batch to itself, and SQS answers for it).
fn batches(entries: Vec<SendMessageBatchRequestEntry>) -> Vec<Vec<SendMessageBatchRequestEntry>> {
    let mut batches: Vec<Vec<SendMessageBatchRequestEntry>> = Vec::new();
    let mut bytes = 0;
    for entry in entries {
        let size = entry.message_body().len();
        match batches.last_mut() {
            Some(batch) if batch.len() < BATCH_SIZE && bytes + size <= BATCH_BYTES => {
                bytes += size;
                batch.push(entry);
            }
            _ => {
                bytes = size;
                batches.push(vec![entry]);
            }
        }
    }
    batches
}

#[async_trait]
impl SendQueue for SqsQueue {
    async fn send(&self, queue: QueueName, message: Outgoing) -> Result<(), QueueError> {
        self.client
            .send_message()
            .queue_url(self.url(queue))
            .message_body(message.body)
            .delay_seconds(delay_seconds(message.delay))
            .send()
            .await
            .map_err(|e| backend("SendMessage", e))?;
        Ok(())
    }

    async fn send_batch(&self, queue: QueueName, messages: Vec<Outgoing>) -> Result<(), QueueError> {
        let total = messages.len();
        let mut entries = Vec::with_capacity(total);
        for (i, message) in messages.into_iter().enumerate() {
            let entry = SendMessageBatchRequestEntry::builder()
                .id(format!("m{i}"))
                .message_body(message.body)
                .delay_seconds(delay_seconds(message.delay))
                .build()
                .map_err(|e| QueueError::Backend(format!("SendMessageBatch request: {e}")))?;
            entries.push(entry);
        }
        // Chunks of 10 go out `SEND_CONCURRENCY` at a time: a 10,000-item fan-out is 1,000
        // requests, which must take seconds, not minutes, well inside the visibility timeout
        // of the message that started it. Every chunk is sent even when another fails.
        let (mut failed, mut reasons) = (0, Vec::new());
        let mut sending = JoinSet::new();
        let batches = batches(entries);
        let sizes: Vec<usize> = batches.iter().map(Vec::len).collect();
        let mut chunks = batches.into_iter().enumerate();
        loop {
            while sending.len() < SEND_CONCURRENCY {
                let Some((index, chunk)) = chunks.next() else { break };
                let request = self.client.send_message_batch().queue_url(self.url(queue)).set_entries(Some(chunk));
                sending.spawn(async move { (index, request.send().await) });
            }
            let Some(sent) = sending.join_next().await else { break };
            match sent {
                Ok((_, Ok(output))) => {
                    for refused in output.failed() {
                        failed += 1;
                        let detail = refused.message().unwrap_or_default();
                        reasons.push(format!("{}: {} {detail}", refused.id(), refused.code()));
                    }
                }
                Ok((index, Err(e))) => {
                    failed += sizes.get(index).copied().unwrap_or(BATCH_SIZE);
                    reasons.push(format!("chunk {index}: {}", DisplayErrorContext(&e)));
                }
                Err(e) => {
                    // A send task that panicked or was cancelled: its messages' fate is unknown,
                    // so the whole batch is reported failed (the caller's retry resends them).
                    return Err(QueueError::Backend(format!("SendMessageBatch task failed: {e}")));
                }
            }
        }
        if failed > 0 {
            return Err(QueueError::PartialBatch { failed, total, reason: reasons.join("; ") });
        }
        Ok(())
    }
}

#[async_trait]
impl ConsumeQueue for SqsQueue {
    async fn receive(
        &self,
        queue: QueueName,
        max: usize,
        wait: Duration,
        visibility: Duration,
    ) -> Result<Vec<Received>, QueueError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let output = self
            .client
            .receive_message()
            .queue_url(self.url(queue))
            .max_number_of_messages(i32::try_from(max.min(BATCH_SIZE)).unwrap_or(1))
            .wait_time_seconds(ceil_seconds(wait, MAX_WAIT_SECONDS))
            .visibility_timeout(ceil_seconds(visibility, MAX_VISIBILITY_SECONDS))
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .send()
            .await
            .map_err(|e| backend("ReceiveMessage", e))?;
        let mut received = Vec::new();
        for message in output.messages.unwrap_or_default() {
            let Some(receipt) = message.receipt_handle() else {
                // Cannot be acked; it comes back after its visibility and ends in the DLQ.
                tracing::warn!(message_id = ?message.message_id(), "SQS message without a receipt handle");
                continue;
            };
            let receive_count = message
                .attributes()
                .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                .and_then(|count| count.parse().ok())
                .unwrap_or_else(|| {
                    tracing::warn!(message_id = ?message.message_id(), "SQS message without a usable ApproximateReceiveCount");
                    1
                });
            received.push(Received {
                body: message.body().unwrap_or_default().to_string(),
                receipt: receipt.to_string(),
                receive_count,
                // SQS moves it to the dead-letter queue instead.
                dead_letter: false,
            });
        }
        Ok(received)
    }

    async fn ack(&self, queue: QueueName, receipt: &str) -> Result<(), QueueError> {
        self.client
            .delete_message()
            .queue_url(self.url(queue))
            .receipt_handle(receipt)
            .send()
            .await
            .map_err(|e| backend("DeleteMessage", e))?;
        Ok(())
    }
}

/// Creates (or finds, if they exist with the same attributes) `<prefix>-steps` and
/// `<prefix>-responses`, each with a `-dlq` queue that takes a message after `max_receives`
/// receives, and returns `(steps_url, responses_url)`. For tests and local use; deployed
/// stacks get their queues from `template.yaml`.
pub async fn create_queues(client: &Client, prefix: &str, max_receives: u32) -> Result<(String, String), QueueError> {
    let steps =
        create_with_dead_letters(client, &format!("{prefix}-{}", QueueName::Steps.as_str()), max_receives).await?;
    let responses =
        create_with_dead_letters(client, &format!("{prefix}-{}", QueueName::Responses.as_str()), max_receives).await?;
    Ok((steps, responses))
}

async fn create_with_dead_letters(client: &Client, name: &str, max_receives: u32) -> Result<String, QueueError> {
    let dlq_url = client
        .create_queue()
        .queue_name(format!("{name}-dlq"))
        .attributes(QueueAttributeName::MessageRetentionPeriod, DEAD_LETTER_RETENTION_SECONDS.to_string())
        .send()
        .await
        .map_err(|e| backend("CreateQueue", e))?
        .queue_url
        .ok_or_else(|| QueueError::Backend(format!("CreateQueue {name}-dlq returned no URL")))?;
    let dlq_arn = client
        .get_queue_attributes()
        .queue_url(&dlq_url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(|e| backend("GetQueueAttributes", e))?
        .attributes
        .and_then(|mut a| a.remove(&QueueAttributeName::QueueArn))
        .ok_or_else(|| QueueError::Backend(format!("GetQueueAttributes {name}-dlq returned no QueueArn")))?;
    let redrive =
        serde_json::json!({ "deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receives.max(1).to_string() });
    client
        .create_queue()
        .queue_name(name)
        .attributes(QueueAttributeName::RedrivePolicy, redrive.to_string())
        .send()
        .await
        .map_err(|e| backend("CreateQueue", e))?
        .queue_url
        .ok_or_else(|| QueueError::Backend(format!("CreateQueue {name} returned no URL")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_round_up_to_seconds_and_cap_at_900() {
        assert_eq!(delay_seconds(Duration::ZERO), 0);
        assert_eq!(delay_seconds(Duration::from_millis(1)), 1);
        assert_eq!(delay_seconds(Duration::from_millis(1000)), 1);
        assert_eq!(delay_seconds(Duration::from_millis(1001)), 2);
        assert_eq!(delay_seconds(Duration::from_secs(3600)), 900);
    }

    #[test]
    fn waits_cap_at_twenty_seconds() {
        assert_eq!(ceil_seconds(Duration::from_millis(200), MAX_WAIT_SECONDS), 1);
        assert_eq!(ceil_seconds(Duration::from_secs(60), MAX_WAIT_SECONDS), 20);
    }

    fn entry(bytes: usize) -> SendMessageBatchRequestEntry {
        SendMessageBatchRequestEntry::builder().id("m").message_body("x".repeat(bytes)).build().expect("entry")
    }

    #[test]
    fn batches_hold_ten_messages_or_256_kib() {
        let small = batches((0..25).map(|_| entry(100)).collect());
        assert_eq!(small.iter().map(Vec::len).collect::<Vec<_>>(), [10, 10, 5]);
        let large = batches(vec![entry(100_000), entry(100_000), entry(100_000), entry(300_000), entry(10)]);
        assert_eq!(large.iter().map(Vec::len).collect::<Vec<_>>(), [2, 1, 1, 1], "256 KiB per batch");
        assert!(batches(Vec::new()).is_empty());
    }
}

//! A queue that delivers every message twice: what SQS's at-least-once delivery allows, made
//! systematic, so tests can show that nothing runs twice and nothing is lost.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sluice_shared::ports::{ConsumeQueue, Outgoing, Queue, QueueError, QueueName, Received, SendQueue};

pub struct DuplicatingQueue(pub Arc<dyn Queue>);

#[async_trait]
impl SendQueue for DuplicatingQueue {
    async fn send(&self, queue: QueueName, message: Outgoing) -> Result<(), QueueError> {
        self.0.send(queue, message.clone()).await?;
        self.0.send(queue, message).await
    }

    async fn send_batch(&self, queue: QueueName, messages: Vec<Outgoing>) -> Result<(), QueueError> {
        let twice: Vec<Outgoing> = messages.iter().flat_map(|m| [m.clone(), m.clone()]).collect();
        self.0.send_batch(queue, twice).await
    }
}

#[async_trait]
impl ConsumeQueue for DuplicatingQueue {
    async fn receive(
        &self,
        queue: QueueName,
        max: usize,
        wait: Duration,
        visibility: Duration,
    ) -> Result<Vec<Received>, QueueError> {
        self.0.receive(queue, max, wait, visibility).await
    }

    async fn ack(&self, queue: QueueName, receipt: &str) -> Result<(), QueueError> {
        self.0.ack(queue, receipt).await
    }
}

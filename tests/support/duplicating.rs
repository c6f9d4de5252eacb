//! A queue that delivers messages twice: what SQS's at-least-once delivery allows, made
//! systematic ([`DuplicatingQueue::always`]), so tests can show that nothing runs twice and
//! nothing is lost, or occasional ([`DuplicatingQueue::sometimes`], seeded), as SQS does.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use sluice_shared::ports::{ConsumeQueue, Outgoing, Queue, QueueError, QueueName, Received, SendQueue};

pub struct DuplicatingQueue {
    inner: Arc<dyn Queue>,
    /// The probability that a message is sent twice.
    rate: f64,
    rng: Mutex<StdRng>,
}

impl DuplicatingQueue {
    /// Every message is sent twice.
    pub fn always(inner: Arc<dyn Queue>) -> DuplicatingQueue {
        DuplicatingQueue::sometimes(inner, 1.0, 0)
    }

    /// A fraction `rate` of the messages is sent twice, chosen by a generator seeded with `seed`.
    pub fn sometimes(inner: Arc<dyn Queue>, rate: f64, seed: u64) -> DuplicatingQueue {
        DuplicatingQueue { inner, rate, rng: Mutex::new(StdRng::seed_from_u64(seed)) }
    }

    fn twice(&self) -> bool {
        self.rate >= 1.0 || self.rng.lock().expect("duplicating rng").random_bool(self.rate.max(0.0))
    }
}

#[async_trait]
impl SendQueue for DuplicatingQueue {
    async fn send(&self, queue: QueueName, message: Outgoing) -> Result<(), QueueError> {
        if self.twice() {
            self.inner.send(queue, message.clone()).await?;
        }
        self.inner.send(queue, message).await
    }

    async fn send_batch(&self, queue: QueueName, messages: Vec<Outgoing>) -> Result<(), QueueError> {
        let mut sent = Vec::with_capacity(messages.len() * 2);
        for message in messages {
            if self.twice() {
                sent.push(message.clone());
            }
            sent.push(message);
        }
        self.inner.send_batch(queue, sent).await
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
        self.inner.receive(queue, max, wait, visibility).await
    }

    async fn ack(&self, queue: QueueName, receipt: &str) -> Result<(), QueueError> {
        self.inner.ack(queue, receipt).await
    }
}

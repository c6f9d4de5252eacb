//! Queue cases: send, delay, visibility, batches, and the separation of the two queues.
//!
//! Invariant: each case tags its bodies with a fresh id and acks everything it receives, so
//! the queues are empty again when it returns.

use std::time::{Duration, Instant};

use serde_json::json;

use super::unique;
use crate::ports::{Outgoing, Queue, QueueName, Received};

/// Receives from `queue` until `want` messages carrying `tag` arrived or `within` passed,
/// acking everything received (including foreign messages, which the suite does not expect).
async fn drain(queue: &dyn Queue, name: QueueName, tag: &str, want: usize, within: Duration) -> Vec<Received> {
    let deadline = Instant::now() + within;
    let mut mine = Vec::new();
    while mine.len() < want && Instant::now() < deadline {
        let wait = deadline.saturating_duration_since(Instant::now()).min(Duration::from_secs(2));
        for m in queue.receive(name, 10, wait, Duration::from_secs(60)).await.expect("receive") {
            queue.ack(name, &m.receipt).await.expect("ack");
            if m.body.contains(tag) {
                mine.push(m);
            }
        }
    }
    mine
}

fn outgoing(body: String, delay: Duration) -> Outgoing {
    Outgoing { body, delay }
}

/// A sent message is received once with count 1 and is gone once acked.
pub async fn case_send_receive_ack(queue: &dyn Queue) {
    let tag = unique("send");
    let body = json!({ "tag": tag, "execution_id": "e-1", "step": "fetch", "attempt": 1 }).to_string();
    queue.send(QueueName::Steps, outgoing(body.clone(), Duration::ZERO)).await.expect("send");
    let got =
        queue.receive(QueueName::Steps, 10, Duration::from_secs(5), Duration::from_secs(30)).await.expect("receive");
    assert_eq!(got.len(), 1, "one message: {got:?}");
    assert_eq!((got[0].body.as_str(), got[0].receive_count), (body.as_str(), 1));
    queue.ack(QueueName::Steps, &got[0].receipt).await.expect("ack");
    let after =
        queue.receive(QueueName::Steps, 10, Duration::from_secs(1), Duration::from_secs(30)).await.expect("receive");
    assert!(after.is_empty(), "an acked message is gone: {after:?}");
}

/// A delayed message is not delivered before its delay (SQS: rounded up to whole seconds),
/// and is delivered soon after.
pub async fn case_delayed_message_waits_for_its_delay(queue: &dyn Queue) {
    let tag = unique("delay");
    let delay = Duration::from_millis(1_500); // SQS: rounded up to 2 s.
    let sent = Instant::now();
    queue.send(QueueName::Steps, outgoing(tag.clone(), delay)).await.expect("send delayed");
    let mut arrived = None;
    while arrived.is_none() && sent.elapsed() < Duration::from_secs(10) {
        let batch = queue.receive(QueueName::Steps, 10, Duration::from_secs(2), Duration::from_secs(30)).await;
        // Long polling returns as soon as a message is visible: this is when it arrived.
        let at = sent.elapsed();
        for m in batch.expect("receive") {
            queue.ack(QueueName::Steps, &m.receipt).await.expect("ack");
            if m.body == tag {
                arrived = Some(at);
            }
        }
    }
    let at = arrived.expect("the delayed message arrives");
    assert!(at >= delay, "received after {at:?}, before its {delay:?} delay");
    assert!(at < delay + Duration::from_secs(5), "received only after {at:?}");
    let again = queue.receive(QueueName::Steps, 10, Duration::from_secs(1), Duration::from_secs(30)).await;
    assert!(again.expect("receive").is_empty(), "the delayed message arrives once");
}

/// A received, unacked message is invisible for its visibility timeout, then comes back
/// with receive count 2; acking with the latest receipt deletes it.
pub async fn case_unacked_message_comes_back_after_visibility(queue: &dyn Queue) {
    let tag = unique("visibility");
    queue.send(QueueName::Steps, outgoing(tag.clone(), Duration::ZERO)).await.expect("send");
    let first =
        queue.receive(QueueName::Steps, 1, Duration::from_secs(5), Duration::from_secs(1)).await.expect("receive");
    assert_eq!(first.len(), 1);
    assert_eq!((first[0].body.as_str(), first[0].receive_count), (tag.as_str(), 1));
    let hidden = queue.receive(QueueName::Steps, 10, Duration::ZERO, Duration::from_secs(30)).await.expect("receive");
    assert!(hidden.is_empty(), "invisible during its visibility timeout: {hidden:?}");

    let again =
        queue.receive(QueueName::Steps, 1, Duration::from_secs(5), Duration::from_secs(30)).await.expect("again");
    assert_eq!(again.len(), 1, "the unacked message comes back");
    assert_eq!((again[0].body.as_str(), again[0].receive_count), (tag.as_str(), 2));
    queue.ack(QueueName::Steps, &again[0].receipt).await.expect("ack with the latest receipt");
    let gone =
        queue.receive(QueueName::Steps, 10, Duration::from_secs(2), Duration::from_secs(30)).await.expect("gone");
    assert!(gone.is_empty(), "acked with the latest receipt, it is gone: {gone:?}");
}

/// A batch larger than SQS's 10 is sent whole and each message is received exactly once.
pub async fn case_batch_of_25_is_received_exactly_once(queue: &dyn Queue) {
    let tag = unique("batch");
    let bodies: Vec<String> = (0..25).map(|i| format!("{tag}-{i:02}")).collect();
    let messages = bodies.iter().map(|b| outgoing(b.clone(), Duration::ZERO)).collect();
    queue.send_batch(QueueName::Steps, messages).await.expect("send batch (SQS: 3 requests)");
    let got = drain(queue, QueueName::Steps, &tag, bodies.len(), Duration::from_secs(20)).await;
    let mut received: Vec<String> = got.iter().map(|m| m.body.clone()).collect();
    received.sort();
    assert_eq!(received, bodies, "every message once, none twice");
    assert!(got.iter().all(|m| m.receive_count == 1));
    let extra =
        queue.receive(QueueName::Steps, 10, Duration::from_secs(1), Duration::from_secs(30)).await.expect("rest");
    assert!(extra.is_empty(), "nothing is delivered twice: {extra:?}");
    queue.send_batch(QueueName::Steps, Vec::new()).await.expect("an empty batch is fine");
}

/// The steps and responses queues do not share messages.
pub async fn case_queues_are_separate(queue: &dyn Queue) {
    let tag = unique("separate");
    queue.send(QueueName::Responses, outgoing(tag.clone(), Duration::ZERO)).await.expect("send");
    let steps =
        queue.receive(QueueName::Steps, 10, Duration::from_secs(1), Duration::from_secs(30)).await.expect("steps");
    assert!(steps.is_empty(), "a responses message is not on the steps queue: {steps:?}");
    let got = drain(queue, QueueName::Responses, &tag, 1, Duration::from_secs(5)).await;
    assert_eq!(got.len(), 1, "the message is on the responses queue");
}

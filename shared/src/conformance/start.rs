//! `StartExecution`: an execution and its first messages are one fact.

use std::time::Duration;

use super::unique;
use crate::ports::{ExecutionStore, Outgoing, Queue, QueueName, StartError, StartExecution, StoreError};
use crate::record::sample_execution as execution;

/// After a start, the execution is stored and its message is on the queue; a second start of
/// another execution with the same id is `AlreadyExists`.
pub async fn case_start_creates_the_execution_and_sends_its_messages(
    starter: &dyn StartExecution,
    store: &dyn ExecutionStore,
    queue: &dyn Queue,
) {
    let id = unique("start");
    let body = format!("{{\"executionId\":\"{id}\",\"step\":\"first\",\"attempt\":1}}");
    let messages = vec![(QueueName::Steps, Outgoing { body: body.clone(), delay: Duration::ZERO })];
    starter.create_and_send(&execution(&id), messages.clone()).await.expect("start");
    assert_eq!(store.get_execution(&id).await.expect("read").map(|e| e.id), Some(id.clone()));
    let mut found = false;
    for _ in 0..20 {
        let received = queue.receive(QueueName::Steps, 10, Duration::from_millis(500), Duration::ZERO).await;
        for message in received.expect("receive") {
            if message.body == body {
                found = true;
            }
            queue.ack(QueueName::Steps, &message.receipt).await.expect("ack");
        }
        if found {
            break;
        }
    }
    assert!(found, "the start's message is on the queue");
    let other = crate::record::Execution { user_id: "someone-else".into(), ..execution(&id) };
    let again = starter.create_and_send(&other, Vec::new()).await;
    assert!(matches!(again, Err(StartError::Store(StoreError::AlreadyExists(_)))), "{again:?}");
}

/// Starting several executions at once creates each of them with its messages.
pub async fn case_start_many_creates_every_execution_with_its_messages(
    starter: &dyn StartExecution,
    store: &dyn ExecutionStore,
    queue: &dyn Queue,
) {
    let ids: Vec<String> = (0..12).map(|_| unique("many")).collect();
    let starts = ids
        .iter()
        .map(|id| {
            let body = format!("{{\"executionId\":\"{id}\",\"step\":\"first\",\"attempt\":1}}");
            (execution(id), vec![(QueueName::Steps, Outgoing { body, delay: Duration::ZERO })])
        })
        .collect();
    starter.create_and_send_many(starts).await.expect("start many");
    for id in &ids {
        assert_eq!(store.get_execution(id).await.expect("read").map(|e| e.id), Some(id.clone()), "{id} created");
    }
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..30 {
        let received = queue.receive(QueueName::Steps, 10, Duration::from_millis(500), Duration::ZERO).await;
        for message in received.expect("receive") {
            if let Some(id) = ids.iter().find(|id| message.body.contains(id.as_str())) {
                seen.insert(id.clone());
            }
            queue.ack(QueueName::Steps, &message.receipt).await.expect("ack");
        }
        if seen.len() == ids.len() {
            break;
        }
    }
    assert_eq!(seen.len(), ids.len(), "every start's message is on the queue");
    starter.create_and_send_many(Vec::new()).await.expect("nothing to start is fine");
}

//! `StartExecution` on SQLite: the execution row and its messages are written in one
//! IMMEDIATE transaction, so an execution exists exactly when its messages do.

use async_trait::async_trait;
use rusqlite::TransactionBehavior;

use super::executions::insert_execution;
use super::queue::insert;
use super::{Sqlite, backend, now_ms};
use crate::ports::{Outgoing, QueueName, StartError, StartExecution, WebhookDelivery, WebhookStore};
use crate::record::Execution;

#[async_trait]
impl StartExecution for Sqlite {
    async fn create_and_send(
        &self,
        execution: &Execution,
        messages: Vec<(QueueName, Outgoing)>,
    ) -> Result<(), StartError> {
        let execution = execution.clone();
        self.call(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(backend)?;
            insert_execution(&tx, &execution)?;
            let now = now_ms();
            for (queue, message) in &messages {
                insert(&tx, *queue, message, now)?;
            }
            tx.commit().map_err(backend)
        })
        .await?;
        self.wake_receivers();
        Ok(())
    }

    async fn create_and_send_many(
        &self,
        starts: Vec<(Execution, Vec<(QueueName, Outgoing)>)>,
    ) -> Result<(), StartError> {
        if starts.is_empty() {
            return Ok(());
        }
        self.call(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(backend)?;
            insert_starts(&tx, &starts)?;
            tx.commit().map_err(backend)
        })
        .await?;
        self.wake_receivers();
        Ok(())
    }

    async fn start_and_keep(
        &self,
        starts: Vec<(Execution, Vec<(QueueName, Outgoing)>)>,
        delivery: &WebhookDelivery,
        _deliveries: &dyn WebhookStore,
    ) -> Result<(), StartError> {
        let delivery = delivery.clone();
        self.call(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(backend)?;
            insert_starts(&tx, &starts)?;
            super::triggers::write_delivery(&tx, &delivery)?;
            tx.commit().map_err(backend)
        })
        .await?;
        self.wake_receivers();
        Ok(())
    }
}

/// Inserts each execution with its messages in `tx`.
fn insert_starts(
    tx: &rusqlite::Transaction<'_>,
    starts: &[(Execution, Vec<(QueueName, Outgoing)>)],
) -> Result<(), crate::ports::StoreError> {
    let now = now_ms();
    for (execution, messages) in starts {
        insert_execution(tx, execution)?;
        for (queue, message) in messages {
            insert(tx, *queue, message, now)?;
        }
    }
    Ok(())
}

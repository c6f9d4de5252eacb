//! Failure notification destinations on DynamoDB: one item per destination under the project
//! (`PROJECT#<p>` / `NOTIFY#<id>`, the record as JSON in `record`, its secret sealed), and a
//! counter item (`PROJECT#<p>` / `NOTIFY_COUNT`, `n`).
//!
//! Invariant: a destination item and its count change together, in one `TransactWriteItems`
//! whose counter update is conditioned on the limit, so concurrent adds never exceed it and a
//! delete frees its place exactly once.

use async_trait::async_trait;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{Delete, Put, TransactWriteItem, Update};

use super::{DynamoStore, Item, backend, get_json, n, project_pk, query_up_to, s};
use crate::ports::{NotificationDestination, NotificationStore, StoreError};

const DESTINATION_PREFIX: &str = "NOTIFY#";
const COUNT_SK: &str = "NOTIFY_COUNT";

fn destination_sk(destination_id: &str) -> String {
    format!("{DESTINATION_PREFIX}{destination_id}")
}

fn request(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(format!("TransactWriteItems request: {e}"))
}

/// Which actions of a cancelled transaction failed their condition (by position).
fn failed_conditions<R: std::fmt::Debug>(
    result: Result<(), aws_sdk_dynamodb::error::SdkError<TransactWriteItemsError, R>>,
) -> Result<Vec<bool>, StoreError> {
    match result {
        Ok(()) => Ok(Vec::new()),
        Err(e) => {
            if let Some(TransactWriteItemsError::TransactionCanceledException(cancel)) = e.as_service_error() {
                let failed: Vec<bool> =
                    cancel.cancellation_reasons().iter().map(|r| r.code() == Some("ConditionalCheckFailed")).collect();
                if failed.iter().any(|f| *f) {
                    return Ok(failed);
                }
            }
            Err(backend("TransactWriteItems", e))
        }
    }
}

impl DynamoStore {
    /// The counter update: `n += delta`, conditioned on `condition` (if any) with the number
    /// `values`.
    fn count_update(
        &self,
        project_id: &str,
        delta: i64,
        condition: Option<&str>,
        values: &[(&str, i64)],
    ) -> Result<TransactWriteItem, StoreError> {
        let mut update = Update::builder()
            .table_name(&self.table)
            .key("pk", s(project_pk(project_id)))
            .key("sk", s(COUNT_SK))
            .update_expression("ADD n :delta")
            .set_condition_expression(condition.map(str::to_string))
            .expression_attribute_values(":delta", n(delta));
        for (name, value) in values {
            update = update.expression_attribute_values(*name, n(value));
        }
        Ok(TransactWriteItem::builder().update(update.build().map_err(request)?).build())
    }
}

#[async_trait]
impl NotificationStore for DynamoStore {
    async fn add_destination(&self, destination: &NotificationDestination, max: usize) -> Result<bool, StoreError> {
        let record =
            serde_json::to_string(destination).map_err(|e| StoreError::Backend(format!("cannot encode JSON: {e}")))?;
        let item: Item = [
            ("pk".to_string(), s(project_pk(&destination.project_id))),
            ("sk".to_string(), s(destination_sk(&destination.id))),
            ("record".to_string(), s(record)),
        ]
        .into_iter()
        .collect();
        let count = self.count_update(
            &destination.project_id,
            1,
            Some("attribute_not_exists(n) OR n < :max"),
            &[(":max", i64::try_from(max).unwrap_or(i64::MAX))],
        )?;
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(request)?;
        let put = TransactWriteItem::builder().put(put).build();
        let result = self.client.transact_write_items().transact_items(count).transact_items(put).send().await;
        let failed = failed_conditions(result.map(|_| ()))?;
        match failed.as_slice() {
            [] => Ok(true),
            [_, true, ..] => Err(StoreError::AlreadyExists(format!("notification destination `{}`", destination.id))),
            _ => Ok(false),
        }
    }

    async fn get_destination(
        &self,
        project_id: &str,
        destination_id: &str,
    ) -> Result<Option<NotificationDestination>, StoreError> {
        let item = self.get(project_pk(project_id), &destination_sk(destination_id)).await?;
        item.map(|item| get_json(&item, "record")).transpose()
    }

    async fn list_destinations(&self, project_id: &str) -> Result<Vec<NotificationDestination>, StoreError> {
        let query = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
            .expression_attribute_values(":pk", s(project_pk(project_id)))
            .expression_attribute_values(":prefix", s(DESTINATION_PREFIX))
            .consistent_read(true);
        // A project has at most a few destinations: one page.
        let (items, _) = query_up_to(query, None, usize::MAX, 100).await?;
        items.iter().map(|item| get_json(item, "record")).collect()
    }

    async fn delete_destination(&self, project_id: &str, destination_id: &str) -> Result<bool, StoreError> {
        let delete = Delete::builder()
            .table_name(&self.table)
            .key("pk", s(project_pk(project_id)))
            .key("sk", s(destination_sk(destination_id)))
            .condition_expression("attribute_exists(pk)")
            .build()
            .map_err(request)?;
        let delete = TransactWriteItem::builder().delete(delete).build();
        let count = self.count_update(project_id, -1, None, &[])?;
        let result = self.client.transact_write_items().transact_items(delete).transact_items(count).send().await;
        Ok(failed_conditions(result.map(|_| ()))?.is_empty())
    }
}

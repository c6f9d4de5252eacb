//! The AWS store: every record in one DynamoDB table with string keys `pk`/`sk` (see
//! `infra/dynamodb.md` for the item types and access patterns).
//!
//! Invariants: every create-once item is written with `attribute_not_exists(pk)` and a failed
//! condition becomes `FirstWrite::Existing` / `StoreError::AlreadyExists` at the call site,
//! never a generic error; every read is strongly consistent, because each one either follows
//! a write of the same flow (possibly in another Lambda a few milliseconds earlier) or decides
//! what happens next; documents (definitions, trigger data, step records, responses) are JSON
//! text in `S` attributes: schema-free, converted once with serde, and small enough (the API
//! caps trigger bodies at 256 KiB) to keep items under DynamoDB's 400 KB; files, which may be
//! larger, are split into binary chunk items of at most 300 KiB (`files`); fan-out items are
//! grouped into JSON chunk items of at most 100 items or 64 KiB, and completed branches are
//! recorded and counted by one transaction each (`fan_out`). Idempotency records
//! (`idempotency`), kept webhook deliveries (`triggers`) and every item of an execution's
//! partition (its retention, [`DynamoStore::with_retention`]) expire: they carry the table's
//! TTL attribute [`TTL_ATTRIBUTE`]. An execution item past its `expiresAt` reads as absent,
//! as DynamoDB deletes expired items within days, not at once.

mod connect;
mod credentials;
mod executions;
mod fan_out;
mod files;
pub mod history;
mod idempotency;
mod notifications;
pub mod sweep;
pub mod triggers;
mod workflows;

use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, TableStatus, TimeToLiveSpecification, TimeToLiveStatus,
};
use chrono::DateTime;

use crate::ports::StoreError;
use crate::record::Timestamp;

/// A DynamoDB item as the SDK sees it.
type Item = HashMap<String, AttributeValue>;

/// The table's TTL attribute (`TimeToLiveSpecification` in `template.yaml`; enabled by
/// [`create_table`]): epoch seconds after which DynamoDB may delete the item.
pub const TTL_ATTRIBUTE: &str = "expiresAt";

/// `ProjectStore`, `WorkflowStore`, `ExecutionStore`, `FileStore`, `FanOutStore`, the connect
/// layer's stores, `IdempotencyStore` and the triggers' stores over one DynamoDB table.
#[derive(Debug, Clone)]
pub struct DynamoStore {
    client: Client,
    table: String,
    /// How long an execution's items are kept after its start (see [`crate::retention`]).
    retention: Duration,
}

impl DynamoStore {
    /// A store over `table`, which must exist with the key schema of [`create_table`].
    pub fn new(client: Client, table: impl Into<String>) -> DynamoStore {
        DynamoStore { client, table: table.into(), retention: crate::retention::DEFAULT_RETENTION }
    }

    /// Sets how long an execution's items are kept after its start (default 30 days): every
    /// item written into an execution's partition from now on carries [`TTL_ATTRIBUTE`].
    pub fn with_retention(mut self, retention: Duration) -> DynamoStore {
        self.retention = retention;
        self
    }

    /// The [`TTL_ATTRIBUTE`] value of an item of an execution that started at `started_at`,
    /// or, where the writer does not know the start (step attempts, files, fan-out items,
    /// written later), of one that starts now: such an item expires at most the execution's
    /// age at its write after the execution item. Whole seconds, rounded up, so never before.
    fn expiry(&self, started_at: Option<&Timestamp>) -> AttributeValue {
        let start = started_at.copied().unwrap_or_else(crate::record::now);
        let at = crate::retention::expires_at(&start, self.retention);
        n(at.timestamp_millis().div_euclid(1000) + i64::from(at.timestamp_millis().rem_euclid(1000) > 0))
    }

    /// Reads one item with a strongly consistent read.
    async fn get(&self, pk: String, sk: &str) -> Result<Option<Item>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(pk))
            .key("sk", AttributeValue::S(sk.to_string()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| backend("GetItem", e))?;
        Ok(output.item)
    }

    /// Puts `item` unless an item with its key exists. Returns false if one did.
    async fn put_new(&self, item: Item) -> Result<bool, StoreError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        conditional("PutItem", result)
    }
}

impl DynamoStore {
    /// Puts every item of `items` (unconditionally, 25 per `BatchWriteItem`), retrying what
    /// DynamoDB leaves unprocessed.
    async fn put_all(&self, items: Vec<Item>) -> Result<(), StoreError> {
        use aws_sdk_dynamodb::types::{PutRequest, WriteRequest};
        for chunk in items.chunks(25) {
            let mut requests = chunk
                .iter()
                .map(|item| {
                    PutRequest::builder()
                        .set_item(Some(item.clone()))
                        .build()
                        .map(|put| WriteRequest::builder().put_request(put).build())
                        .map_err(|e| StoreError::Backend(format!("BatchWriteItem: {e}")))
                })
                .collect::<Result<Vec<_>, _>>()?;
            for _ in 0..10 {
                if requests.is_empty() {
                    break;
                }
                let answer = self
                    .client
                    .batch_write_item()
                    .request_items(&self.table, std::mem::take(&mut requests))
                    .send()
                    .await
                    .map_err(|e| backend("BatchWriteItem", e))?;
                requests = answer.unprocessed_items.and_then(|mut left| left.remove(&self.table)).unwrap_or_default();
            }
            if !requests.is_empty() {
                return Err(StoreError::Backend(format!("BatchWriteItem: {} items left unwritten", requests.len())));
            }
        }
        Ok(())
    }
}

/// Runs `query` from `start`, page after page, until `want` items came back or it is
/// exhausted: the first `want` items, and whether more may follow them (items read and
/// dropped, or a page boundary right after the last one). Each request asks for the items
/// still wanted, or `min_page` if more: `Limit` counts items before a filter expression, so a
/// filtered query asks for more than it needs rather than one round trip per few matches.
/// The next call can resume after the last item returned: its key attributes are its position.
async fn query_up_to(
    query: QueryFluentBuilder,
    mut start: Option<Item>,
    want: usize,
    min_page: usize,
) -> Result<(Vec<Item>, bool), StoreError> {
    let mut items = Vec::new();
    if want == 0 {
        return Ok((items, start.is_some()));
    }
    loop {
        let ask = want.saturating_sub(items.len()).max(min_page);
        let page = query
            .clone()
            .set_exclusive_start_key(start)
            .limit(i32::try_from(ask).unwrap_or(i32::MAX))
            .send()
            .await
            .map_err(|e| backend("Query", e))?;
        items.extend(page.items.unwrap_or_default());
        let next = page.last_evaluated_key.filter(|key| !key.is_empty());
        if items.len() >= want {
            let more = items.len() > want || next.is_some();
            items.truncate(want);
            return Ok((items, more));
        }
        match next {
            Some(key) => start = Some(key),
            None => return Ok((items, false)),
        }
    }
}

/// About what DynamoDB counts against its 400 KB item limit: attribute names and values in
/// bytes (numbers by their digits, a slight overestimate).
fn item_bytes(item: &Item) -> usize {
    fn value_bytes(value: &AttributeValue) -> usize {
        match value {
            AttributeValue::S(text) | AttributeValue::N(text) => text.len(),
            AttributeValue::B(blob) => blob.as_ref().len(),
            AttributeValue::Ss(texts) | AttributeValue::Ns(texts) => texts.iter().map(String::len).sum(),
            AttributeValue::Bs(blobs) => blobs.iter().map(|blob| blob.as_ref().len()).sum(),
            AttributeValue::L(values) => 3 + values.iter().map(|v| 1 + value_bytes(v)).sum::<usize>(),
            AttributeValue::M(map) => 3 + map.iter().map(|(k, v)| 1 + k.len() + value_bytes(v)).sum::<usize>(),
            _ => 1,
        }
    }
    item.iter().map(|(name, value)| name.len() + value_bytes(value)).sum()
}

/// A conditional write's outcome (`PutItem`, `UpdateItem`, `DeleteItem`): done, or its
/// condition failed (`false`); any other failure is the backend's. The one place a
/// `ConditionalCheckFailedException` becomes a domain answer.
fn conditional<T, E, R>(operation: &str, result: Result<T, SdkError<E, R>>) -> Result<bool, StoreError>
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match result {
        Ok(_) => Ok(true),
        Err(e)
            if e.as_service_error().and_then(ProvideErrorMetadata::code) == Some("ConditionalCheckFailedException") =>
        {
            Ok(false)
        }
        Err(e) => Err(backend(operation, e)),
    }
}

/// A transaction's outcome (`TransactWriteItems`): done, or cancelled because the condition
/// of one of its actions failed (`false`), as [`conditional`] is for one item. Any other
/// cancellation (a conflicting concurrent transaction, a throttled item) or failure is the
/// backend's, worth retrying.
fn transacted<T, R>(result: Result<T, SdkError<TransactWriteItemsError, R>>) -> Result<bool, StoreError>
where
    R: std::fmt::Debug,
{
    match result {
        Ok(_) => Ok(true),
        Err(e) => {
            let condition_failed = matches!(
                e.as_service_error(),
                Some(TransactWriteItemsError::TransactionCanceledException(cancel))
                    if cancel.cancellation_reasons().iter().any(|r| r.code() == Some("ConditionalCheckFailed"))
            );
            if condition_failed { Ok(false) } else { Err(backend("TransactWriteItems", e)) }
        }
    }
}

/// Creates `table` (on-demand capacity, string keys `pk` HASH and `sk` RANGE, the sparse
/// recovery-sweep index [`sweep::SWEEP_INDEX`] and the sparse index of due schedules
/// [`triggers::DUE_INDEX`]), waits until it is active and turns its time
/// to live on ([`TTL_ATTRIBUTE`]). Succeeds without change if the table already exists. For
/// tests and local use; deployed stacks get their table from `template.yaml`.
pub async fn create_table(client: &Client, table: &str) -> Result<(), StoreError> {
    let key = |name: &str, key_type: KeyType| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(key_type)
            .build()
            .map_err(|e| StoreError::Backend(format!("CreateTable request: {e}")))
    };
    let attribute = |name: &str, attribute_type: ScalarAttributeType| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(attribute_type)
            .build()
            .map_err(|e| StoreError::Backend(format!("CreateTable request: {e}")))
    };
    let sweep_index = GlobalSecondaryIndex::builder()
        .index_name(sweep::SWEEP_INDEX)
        .key_schema(key(sweep::SHARD, KeyType::Hash)?)
        .key_schema(key(sweep::DUE_AT, KeyType::Range)?)
        .projection(
            Projection::builder().projection_type(ProjectionType::Include).non_key_attributes("execution_id").build(),
        )
        .build()
        .map_err(|e| StoreError::Backend(format!("CreateTable request: {e}")))?;
    let due_index = GlobalSecondaryIndex::builder()
        .index_name(triggers::DUE_INDEX)
        .key_schema(key(triggers::DUE_SHARD, KeyType::Hash)?)
        .key_schema(key(triggers::DUE_AT, KeyType::Range)?)
        .projection(Projection::builder().projection_type(ProjectionType::All).build())
        .build()
        .map_err(|e| StoreError::Backend(format!("CreateTable request: {e}")))?;
    let mut history_indexes = Vec::new();
    for (name, partition, sort) in history::INDEXES {
        let mut projection = Projection::builder().projection_type(ProjectionType::Include);
        for attribute in history::PROJECTED {
            if attribute != partition && attribute != sort {
                projection = projection.non_key_attributes(attribute);
            }
        }
        history_indexes.push(
            GlobalSecondaryIndex::builder()
                .index_name(name)
                .key_schema(key(partition, KeyType::Hash)?)
                .key_schema(key(sort, KeyType::Range)?)
                .projection(projection.build())
                .build()
                .map_err(|e| StoreError::Backend(format!("CreateTable request: {e}")))?,
        );
    }
    let mut history_attributes: Vec<&str> = Vec::new();
    for (_, partition, sort) in history::INDEXES {
        for name in [partition, sort] {
            if !history_attributes.contains(&name) {
                history_attributes.push(name);
            }
        }
    }
    let mut request = client
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(attribute("pk", ScalarAttributeType::S)?)
        .attribute_definitions(attribute("sk", ScalarAttributeType::S)?)
        .attribute_definitions(attribute(sweep::SHARD, ScalarAttributeType::S)?)
        .attribute_definitions(attribute(sweep::DUE_AT, ScalarAttributeType::N)?)
        .attribute_definitions(attribute(triggers::DUE_SHARD, ScalarAttributeType::S)?)
        .attribute_definitions(attribute(triggers::DUE_AT, ScalarAttributeType::N)?)
        .key_schema(key("pk", KeyType::Hash)?)
        .key_schema(key("sk", KeyType::Range)?)
        .global_secondary_indexes(sweep_index)
        .global_secondary_indexes(due_index);
    for index in history_indexes {
        request = request.global_secondary_indexes(index);
    }
    for name in history_attributes {
        request = request.attribute_definitions(attribute(name, ScalarAttributeType::S)?);
    }
    let result = request.send().await;
    match result {
        Ok(_) => {}
        Err(e) if e.as_service_error().is_some_and(|s| s.is_resource_in_use_exception()) => {}
        Err(e) => return Err(backend("CreateTable", e)),
    }
    wait_until_active(client, table).await?;
    enable_ttl(client, table).await
}

/// Waits until `table` is active: DynamoDB takes a few seconds to activate a table (local
/// servers: none).
async fn wait_until_active(client: &Client, table: &str) -> Result<(), StoreError> {
    for _ in 0..120 {
        let described =
            client.describe_table().table_name(table).send().await.map_err(|e| backend("DescribeTable", e))?;
        if described.table.and_then(|t| t.table_status) == Some(TableStatus::Active) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Err(StoreError::Backend(format!("table {table} did not become active within 60 s")))
}

/// Turns on the table's time to live on [`TTL_ATTRIBUTE`] unless it is on (or being turned
/// on) already: DynamoDB refuses to enable it twice.
async fn enable_ttl(client: &Client, table: &str) -> Result<(), StoreError> {
    let described =
        client.describe_time_to_live().table_name(table).send().await.map_err(|e| backend("DescribeTimeToLive", e))?;
    let status = described.time_to_live_description.and_then(|d| d.time_to_live_status);
    if matches!(status, Some(TimeToLiveStatus::Enabled | TimeToLiveStatus::Enabling)) {
        return Ok(());
    }
    let specification = TimeToLiveSpecification::builder()
        .attribute_name(TTL_ATTRIBUTE)
        .enabled(true)
        .build()
        .map_err(|e| StoreError::Backend(format!("UpdateTimeToLive request: {e}")))?;
    client
        .update_time_to_live()
        .table_name(table)
        .time_to_live_specification(specification)
        .send()
        .await
        .map_err(|e| backend("UpdateTimeToLive", e))?;
    Ok(())
}

fn backend<E, R>(operation: &str, e: SdkError<E, R>) -> StoreError
where
    E: std::error::Error + 'static,
    R: std::fmt::Debug,
{
    StoreError::Backend(format!("DynamoDB {operation}: {}", DisplayErrorContext(&e)))
}

// Keys. Workflow ids are `[a-z0-9][a-z0-9-]*` (no `#`); numbers are zero-padded to 10 digits
// (u32::MAX has 10) so that string order is numeric order within a partition.

fn project_pk(project_id: &str) -> String {
    format!("PROJECT#{project_id}")
}

const PROJECT_SK: &str = "PROJECT";

fn version_prefix(workflow_id: &str) -> String {
    format!("WORKFLOW#{workflow_id}#V#")
}

fn version_sk(workflow_id: &str, version: u32) -> String {
    format!("WORKFLOW#{workflow_id}#V#{version:010}")
}

/// The live pointer of a deployed workflow (the live version's item, copied): one prefix for
/// all of them, so listing a project's live workflows reads no old version.
fn deployed_sk(workflow_id: &str) -> String {
    format!("{LIVE_PREFIX}{workflow_id}")
}

const LIVE_PREFIX: &str = "LIVE#";

/// The project's declared app events (one item: `events`, JSON).
const APP_EVENTS_SK: &str = "APP_EVENTS";

fn execution_pk(execution_id: &str) -> String {
    format!("EXEC#{execution_id}")
}

const EXECUTION_SK: &str = "EXEC";
const RESPONSE_SK: &str = "RESPONSE";
const STEP_PREFIX: &str = "STEP#";

/// The prefix of the attempts of one step key. The `#` after the key keeps other keys out:
/// `STEP#a#` matches neither `STEP#a@1#...` nor `STEP#ab#...`.
fn step_prefix(step: &str) -> String {
    format!("{STEP_PREFIX}{step}#")
}

fn step_sk(step: &str, attempt: u32) -> String {
    format!("{}{attempt:010}", step_prefix(step))
}

// Attribute values.

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn ms(t: &Timestamp) -> AttributeValue {
    n(t.timestamp_millis())
}

fn json<T: serde::Serialize>(value: &T) -> Result<AttributeValue, StoreError> {
    serde_json::to_string(value)
        .map(AttributeValue::S)
        .map_err(|e| StoreError::Backend(format!("cannot encode JSON: {e}")))
}

fn get_opt_s<'a>(item: &'a Item, name: &str) -> Result<Option<&'a str>, StoreError> {
    match item.get(name) {
        None | Some(AttributeValue::Null(_)) => Ok(None),
        Some(AttributeValue::S(text)) => Ok(Some(text)),
        Some(_) => Err(StoreError::Corrupt(format!("attribute {name} is not a string"))),
    }
}

fn get_s<'a>(item: &'a Item, name: &str) -> Result<&'a str, StoreError> {
    get_opt_s(item, name)?.ok_or_else(|| StoreError::Corrupt(format!("attribute {name} is missing")))
}

/// Whether `item` carries a [`TTL_ATTRIBUTE`] that has passed: DynamoDB may not have deleted
/// it yet, but it is gone for every reader.
fn is_expired(item: &Item) -> Result<bool, StoreError> {
    let expires: Option<i64> = get_opt_n(item, TTL_ATTRIBUTE)?;
    Ok(expires.is_some_and(|seconds| seconds.saturating_mul(1000) <= crate::record::now().timestamp_millis()))
}

fn get_opt_n<T: FromStr>(item: &Item, name: &str) -> Result<Option<T>, StoreError> {
    match item.get(name) {
        None | Some(AttributeValue::Null(_)) => Ok(None),
        Some(AttributeValue::N(text)) => text
            .parse()
            .map(Some)
            .map_err(|_| StoreError::Corrupt(format!("attribute {name} is not a valid number: {text}"))),
        Some(_) => Err(StoreError::Corrupt(format!("attribute {name} is not a number"))),
    }
}

fn get_n<T: FromStr>(item: &Item, name: &str) -> Result<T, StoreError> {
    get_opt_n(item, name)?.ok_or_else(|| StoreError::Corrupt(format!("attribute {name} is missing")))
}

/// A boolean flag: absent (or NULL) is false.
fn get_flag(item: &Item, name: &str) -> Result<bool, StoreError> {
    match item.get(name) {
        None | Some(AttributeValue::Null(_)) => Ok(false),
        Some(AttributeValue::Bool(flag)) => Ok(*flag),
        Some(_) => Err(StoreError::Corrupt(format!("attribute {name} is not a boolean"))),
    }
}

fn to_timestamp(ms: i64) -> Result<Timestamp, StoreError> {
    DateTime::from_timestamp_millis(ms).ok_or_else(|| StoreError::Corrupt(format!("timestamp {ms} ms is out of range")))
}

fn get_ts(item: &Item, name: &str) -> Result<Timestamp, StoreError> {
    to_timestamp(get_n(item, name)?)
}

fn get_opt_ts(item: &Item, name: &str) -> Result<Option<Timestamp>, StoreError> {
    get_opt_n(item, name)?.map(to_timestamp).transpose()
}

fn get_json<T: serde::de::DeserializeOwned>(item: &Item, name: &str) -> Result<T, StoreError> {
    serde_json::from_str(get_s(item, name)?).map_err(|e| StoreError::Corrupt(format!("attribute {name}: {e}")))
}

fn get_opt_json<T: serde::de::DeserializeOwned>(item: &Item, name: &str) -> Result<Option<T>, StoreError> {
    get_opt_s(item, name)?
        .map(|text| serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("attribute {name}: {e}"))))
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sort_keys_order_numerically() {
        assert!(version_sk("wf", 9) < version_sk("wf", 10));
        assert!(step_sk("a", 2) < step_sk("a", 11));
        assert_eq!(step_sk("fetch", 3), "STEP#fetch#0000000003");
        assert_eq!(version_sk("wf", u32::MAX).len(), version_sk("wf", 1).len());
        assert!(version_sk("wf", 1).starts_with(&version_prefix("wf")));
        assert!(!version_sk("wf-2", 1).starts_with(&version_prefix("wf")));
    }

    #[test]
    fn a_step_prefix_matches_only_its_own_key() {
        assert!(step_sk("a", 3).starts_with(&step_prefix("a")));
        assert!(!step_sk("a@1", 3).starts_with(&step_prefix("a")));
        assert!(!step_sk("ab", 3).starts_with(&step_prefix("a")));
        assert!(!step_sk("a", 3).starts_with(&step_prefix("a@1")));
        assert!(!step_sk("leaf@3.5", 1).starts_with(&step_prefix("leaf@3")));
    }

    #[test]
    fn wrong_attribute_types_are_corrupt() {
        let item: Item = [("a".to_string(), n(1)), ("b".to_string(), s("x"))].into_iter().collect();
        assert!(matches!(get_s(&item, "a"), Err(StoreError::Corrupt(_))));
        assert!(matches!(get_n::<u32>(&item, "b"), Err(StoreError::Corrupt(_))));
        assert!(matches!(get_s(&item, "missing"), Err(StoreError::Corrupt(_))));
        assert_eq!(get_opt_s(&item, "missing").expect("optional"), None);
        assert!(matches!(get_flag(&item, "a"), Err(StoreError::Corrupt(_))));
        assert!(!get_flag(&item, "missing").expect("absent is false"));
    }
}

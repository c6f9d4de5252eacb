//! The triggers' ports on DynamoDB (keys in `infra/dynamodb.md`, "Schedules, polls and webhook
//! deliveries"):
//!
//! - a ledger row: `PROJECT#<p>` / `SCHEDULE#<workflowId>#<userId>`, every field an attribute;
//!   while it has a next fire it also carries [`DUE_SHARD`] and [`DUE_AT`], the keys of the
//!   sparse index [`DUE_INDEX`], which lists what is due across every project without a scan;
//! - a seen-set: `PROJECT#<p>` / `SEEN#<workflowId>#<userId>`, `keys` (JSON list), `version`;
//! - a kept delivery: `WEBHOOK#<p>` / `D#<deliveryId>`, its body raw in `body` and its headers
//!   and events as JSON in `record`, with the table's TTL attribute.
//!
//! Invariants: workflow ids hold no `#`, so `SCHEDULE#<w>#` and `SEEN#<w>#` never match another
//! workflow's rows; a row's presence in the due index follows its `next_fire` in the same
//! `PutItem` (a put replaces the whole item, so a parked row loses the index keys); every
//! compare and swap is one conditional write evaluated on the latest item; delivery ids are
//! UUIDv7 (time-ordered), so sort key order is receiving order and a delivery is found by its
//! id alone; a delivery is kept [`WEBHOOK_RETENTION_DAYS`] after it was received: reads skip
//! older ones to the millisecond, DynamoDB's TTL deletes them later.

use std::collections::BTreeMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use serde::{Deserialize, Serialize};

use super::{
    DynamoStore, Item, TTL_ATTRIBUTE, backend, conditional, get_flag, get_n, get_opt_s, get_opt_ts, get_s, get_ts,
    item_bytes, ms, n, project_pk, query_up_to, s,
};
use crate::ports::{
    DeliveredEvent, DueCursor, MAX_DUE_PAGE, PollStore, ScheduleEntry, ScheduleStore, SeenSet, StoreError,
    WebhookDelivery, WebhookStore,
};
use crate::record::{Timestamp, now};

/// The sparse index of the ledger rows that have a next fire.
pub const DUE_INDEX: &str = "due";
/// Partition key of [`DUE_INDEX`] (S). One shard, [`DUE_SHARD_VALUE`], for now: see
/// `infra/dynamodb.md` for how to spread it when one partition's writes are not enough.
pub const DUE_SHARD: &str = "due_shard";
/// Sort key of [`DUE_INDEX`] (N, milliseconds): the row's next fire.
pub const DUE_AT: &str = "due_at";
/// The one shard every due row is written to.
const DUE_SHARD_VALUE: &str = "0";

const SCHEDULE_PREFIX: &str = "SCHEDULE#";
const SEEN_PREFIX: &str = "SEEN#";
const DELIVERY_PREFIX: &str = "D#";

/// DynamoDB's limit on a sort key (bytes of UTF-8).
const MAX_SORT_KEY_BYTES: usize = 1024;
/// The most a ledger, seen-set or delivery item may weigh: DynamoDB's 400 KB item limit, with
/// room for its accounting of attribute names and types.
const MAX_ITEM_BYTES: usize = 400_000;
/// A filtered delivery listing reads at least this many items per request (DynamoDB's `Limit`
/// counts items before the filter), then drops what it does not need.
const FILTERED_PAGE: usize = 100;

use crate::ports::WEBHOOK_RETENTION_MS as RETENTION_MS;

/// The partition of the event ids an integration's kept deliveries named: one item per id
/// (`sk` the id), with the delivery and its TTL.
fn event_pk(project_id: &str, integration: &str) -> String {
    format!("WHEVENT#{project_id}#{integration}")
}

fn schedule_prefix(workflow_id: &str) -> String {
    format!("{SCHEDULE_PREFIX}{workflow_id}#")
}

fn schedule_sk(workflow_id: &str, user_id: &str) -> Result<String, StoreError> {
    fitting_sort_key(format!("{}{user_id}", schedule_prefix(workflow_id)))
}

fn seen_sk(workflow_id: &str, user_id: &str) -> Result<String, StoreError> {
    fitting_sort_key(format!("{SEEN_PREFIX}{workflow_id}#{user_id}"))
}

fn webhook_pk(project_id: &str) -> String {
    format!("WEBHOOK#{project_id}")
}

fn delivery_sk(delivery_id: &str) -> Result<String, StoreError> {
    fitting_sort_key(format!("{DELIVERY_PREFIX}{delivery_id}"))
}

/// `sk`, unless it is over DynamoDB's limit (a user id of 256 characters outside the BMP with
/// a long workflow id): refused as too large rather than left to fail, retryably, on the write.
fn fitting_sort_key(sk: String) -> Result<String, StoreError> {
    if sk.len() > MAX_SORT_KEY_BYTES {
        return Err(StoreError::TooLarge(format!(
            "sort key of {} bytes, over DynamoDB's {MAX_SORT_KEY_BYTES}",
            sk.len()
        )));
    }
    Ok(sk)
}

fn fitting_item(item: Item, what: &str) -> Result<Item, StoreError> {
    let bytes = item_bytes(&item);
    if bytes > MAX_ITEM_BYTES {
        return Err(StoreError::TooLarge(format!("{what} of {bytes} bytes, over DynamoDB's item limit")));
    }
    Ok(item)
}

fn key(pk: String, sk: String) -> Item {
    [("pk".to_string(), s(pk)), ("sk".to_string(), s(sk))].into_iter().collect()
}

fn attributes(pairs: Vec<(&str, AttributeValue)>) -> Item {
    pairs.into_iter().map(|(name, value)| (name.to_string(), value)).collect()
}

fn encode_entry(entry: &ScheduleEntry) -> Result<Item, StoreError> {
    let mut item = attributes(vec![
        ("pk", s(project_pk(&entry.project_id))),
        ("sk", s(schedule_sk(&entry.workflow_id, &entry.user_id)?)),
        ("project_id", s(&entry.project_id)),
        ("workflow_id", s(&entry.workflow_id)),
        ("user_id", s(&entry.user_id)),
        ("version", n(entry.version)),
        ("zone", s(&entry.zone)),
        ("fired", n(entry.fired)),
        ("skipped", n(entry.skipped)),
        ("missed", n(entry.missed)),
        ("updated_at", ms(&entry.updated_at)),
    ]);
    let optional = [
        ("next_fire", entry.next_fire.as_ref().map(ms)),
        ("last_fire", entry.last_fire.as_ref().map(ms)),
        ("last_execution_id", entry.last_execution_id.as_deref().map(s)),
        ("last_note", entry.last_note.as_deref().map(s)),
    ];
    item.extend(optional.into_iter().filter_map(|(name, value)| Some((name.to_string(), value?))));
    if let Some(next_fire) = &entry.next_fire {
        item.insert(DUE_SHARD.to_string(), s(DUE_SHARD_VALUE));
        item.insert(DUE_AT.to_string(), ms(next_fire));
    }
    fitting_item(item, "schedule row")
}

fn decode_entry(item: &Item) -> Result<ScheduleEntry, StoreError> {
    let text = |name: &str| get_opt_s(item, name).map(|value| value.map(str::to_string));
    Ok(ScheduleEntry {
        project_id: get_s(item, "project_id")?.to_string(),
        workflow_id: get_s(item, "workflow_id")?.to_string(),
        user_id: get_s(item, "user_id")?.to_string(),
        next_fire: get_opt_ts(item, "next_fire")?,
        version: get_n(item, "version")?,
        zone: get_s(item, "zone")?.to_string(),
        last_fire: get_opt_ts(item, "last_fire")?,
        last_execution_id: text("last_execution_id")?,
        fired: get_n(item, "fired")?,
        skipped: get_n(item, "skipped")?,
        missed: get_n(item, "missed")?,
        last_note: text("last_note")?,
        updated_at: get_ts(item, "updated_at")?,
    })
}

/// A due row's place in [`DUE_INDEX`]: its table and index keys, which a query resumes after.
#[derive(Serialize, Deserialize)]
struct DuePosition {
    pk: String,
    sk: String,
    shard: String,
    at: String,
}

fn encode_cursor(item: &Item) -> Result<DueCursor, StoreError> {
    let number = |name: &str| match item.get(name) {
        Some(AttributeValue::N(text)) => Ok(text.clone()),
        _ => Err(StoreError::Corrupt(format!("due row without a numeric {name}"))),
    };
    let position = DuePosition {
        pk: get_s(item, "pk")?.to_string(),
        sk: get_s(item, "sk")?.to_string(),
        shard: get_s(item, DUE_SHARD)?.to_string(),
        at: number(DUE_AT)?,
    };
    serde_json::to_string(&position).map(DueCursor).map_err(|e| StoreError::Backend(format!("due cursor: {e}")))
}

fn decode_cursor(cursor: &DueCursor) -> Result<Item, StoreError> {
    let position: DuePosition =
        serde_json::from_str(&cursor.0).map_err(|e| StoreError::Corrupt(format!("due cursor: {e}")))?;
    if position.at.parse::<i64>().is_err() {
        return Err(StoreError::Corrupt(format!("due cursor: `{}` is not a number", position.at)));
    }
    Ok(attributes(vec![
        ("pk", s(position.pk)),
        ("sk", s(position.sk)),
        (DUE_SHARD, s(position.shard)),
        (DUE_AT, AttributeValue::N(position.at)),
    ]))
}

impl DynamoStore {
    /// Deletes the item at (`pk`, `sk`); whether there was one.
    async fn delete_existing(&self, pk: String, sk: String) -> Result<bool, StoreError> {
        let output = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key(pk, sk)))
            .return_values(ReturnValue::AllOld)
            .send()
            .await
            .map_err(|e| backend("DeleteItem", e))?;
        Ok(output.attributes.is_some_and(|old| !old.is_empty()))
    }
}

#[async_trait]
impl ScheduleStore for DynamoStore {
    async fn put_schedule(&self, entry: &ScheduleEntry) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(encode_entry(entry)?))
            .send()
            .await
            .map_err(|e| backend("PutItem", e))?;
        Ok(())
    }

    async fn get_schedule(
        &self,
        project_id: &str,
        workflow_id: &str,
        user_id: &str,
    ) -> Result<Option<ScheduleEntry>, StoreError> {
        let item = self.get(project_pk(project_id), &schedule_sk(workflow_id, user_id)?).await?;
        item.as_ref().map(decode_entry).transpose()
    }

    async fn delete_schedule(&self, project_id: &str, workflow_id: &str, user_id: &str) -> Result<bool, StoreError> {
        self.delete_existing(project_pk(project_id), schedule_sk(workflow_id, user_id)?).await
    }

    async fn due_schedules(
        &self,
        until: Timestamp,
        after: Option<&DueCursor>,
        limit: usize,
    ) -> Result<(Vec<ScheduleEntry>, Option<DueCursor>), StoreError> {
        let limit = limit.min(MAX_DUE_PAGE);
        if limit == 0 {
            // Nothing read: the next page starts where this one would have.
            return Ok((Vec::new(), after.cloned()));
        }
        // An index read: eventually consistent (a GSI offers nothing else), ascending by
        // `due_at`; rows of the same millisecond come in the index's order, each once.
        let query = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(DUE_INDEX)
            .key_condition_expression("#shard = :shard AND #due <= :until")
            .expression_attribute_names("#shard", DUE_SHARD)
            .expression_attribute_names("#due", DUE_AT)
            .expression_attribute_values(":shard", s(DUE_SHARD_VALUE))
            .expression_attribute_values(":until", ms(&until))
            .scan_index_forward(true);
        let start = after.map(decode_cursor).transpose()?;
        let (items, more) = query_up_to(query, start, limit, 0).await?;
        let cursor = match items.last() {
            Some(last) if more => Some(encode_cursor(last)?),
            _ => None,
        };
        let entries = items.iter().map(decode_entry).collect::<Result<Vec<_>, _>>()?;
        Ok((entries, cursor))
    }

    async fn advance_schedule(&self, expected: &ScheduleEntry, next: &ScheduleEntry) -> Result<bool, StoreError> {
        crate::ports::check_same_row(expected, next)?;
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(encode_entry(next)?))
            .expression_attribute_names("#next", "next_fire")
            .expression_attribute_names("#version", "version")
            .expression_attribute_values(":version", n(expected.version));
        // Only an existing row whose next fire and version are still the expected ones; a put
        // that passes replaces the whole item, so a parked `next` leaves the due index.
        let put = match &expected.next_fire {
            Some(at) => put
                .condition_expression("#next = :next AND #version = :version")
                .expression_attribute_values(":next", ms(at)),
            None => {
                put.condition_expression("attribute_exists(pk) AND attribute_not_exists(#next) AND #version = :version")
            }
        };
        conditional("PutItem", put.send().await)
    }

    async fn list_schedules(
        &self,
        project_id: &str,
        workflow_id: Option<&str>,
        after: Option<(&str, &str)>,
        limit: usize,
    ) -> Result<Vec<ScheduleEntry>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let pk = project_pk(project_id);
        let prefix = workflow_id.map_or_else(|| SCHEDULE_PREFIX.to_string(), schedule_prefix);
        // A start key must lie inside the queried prefix: a position before one workflow's rows
        // starts at its first row, one after them has nothing left.
        let start = match (after, workflow_id) {
            (None, _) => None,
            (Some((after_workflow, _)), Some(workflow_id)) if after_workflow < workflow_id => None,
            (Some((after_workflow, _)), Some(workflow_id)) if after_workflow > workflow_id => return Ok(Vec::new()),
            (Some((after_workflow, after_user)), _) => Some(key(pk.clone(), schedule_sk(after_workflow, after_user)?)),
        };
        let query = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
            .expression_attribute_values(":pk", s(pk))
            .expression_attribute_values(":prefix", s(prefix))
            .consistent_read(true);
        let (items, _) = query_up_to(query, start, limit, 0).await?;
        items.iter().map(decode_entry).collect()
    }
}

#[async_trait]
impl PollStore for DynamoStore {
    async fn get_seen(&self, project_id: &str, workflow_id: &str, user_id: &str) -> Result<SeenSet, StoreError> {
        let Some(item) = self.get(project_pk(project_id), &seen_sk(workflow_id, user_id)?).await? else {
            return Ok(SeenSet::default());
        };
        let keys = serde_json::from_str(get_s(&item, "keys")?)
            .map_err(|e| StoreError::Corrupt(format!("attribute keys: {e}")))?;
        Ok(SeenSet { keys, version: get_n(&item, "version")? })
    }

    async fn put_seen(
        &self,
        project_id: &str,
        workflow_id: &str,
        user_id: &str,
        keys: &[String],
        expected_version: u64,
    ) -> Result<bool, StoreError> {
        let newest = crate::ports::newest_seen_keys(keys);
        let text =
            serde_json::to_string(newest).map_err(|e| StoreError::Backend(format!("cannot encode keys: {e}")))?;
        let next = expected_version
            .checked_add(1)
            .ok_or_else(|| StoreError::TooLarge("the seen-set version is at its maximum".to_string()))?;
        let item = fitting_item(
            attributes(vec![
                ("pk", s(project_pk(project_id))),
                ("sk", s(seen_sk(workflow_id, user_id)?)),
                ("project_id", s(project_id)),
                ("workflow_id", s(workflow_id)),
                ("user_id", s(user_id)),
                ("keys", s(text)),
                ("version", n(next)),
            ]),
            "seen-set",
        )?;
        let put = self.client.put_item().table_name(&self.table).set_item(Some(item));
        let put = if expected_version == 0 {
            put.condition_expression("attribute_not_exists(pk)")
        } else {
            put.condition_expression("#version = :expected")
                .expression_attribute_names("#version", "version")
                .expression_attribute_values(":expected", n(expected_version))
        };
        conditional("PutItem", put.send().await)
    }

    async fn delete_seen(&self, project_id: &str, workflow_id: &str, user_id: &str) -> Result<bool, StoreError> {
        self.delete_existing(project_pk(project_id), seen_sk(workflow_id, user_id)?).await
    }
}

/// What `record` holds of a delivery: everything but its keys, its filtered attributes and
/// its body (kept raw in `body`, where JSON escaping cannot inflate it past the item limit).
#[derive(Serialize)]
struct DetailsOut<'a> {
    headers: &'a BTreeMap<String, String>,
    events: &'a [DeliveredEvent],
}

#[derive(Deserialize)]
struct DetailsIn {
    headers: BTreeMap<String, String>,
    events: Vec<DeliveredEvent>,
}

/// Milliseconds before which a delivery has expired.
fn retention_cutoff_ms() -> i64 {
    now().timestamp_millis().saturating_sub(RETENTION_MS)
}

/// The table's TTL value of a delivery received at `received_at`: epoch seconds, rounded up.
fn expires_at_seconds(received_at: &Timestamp) -> i64 {
    let expires_ms = received_at.timestamp_millis().saturating_add(RETENTION_MS);
    expires_ms.div_euclid(1000) + i64::from(expires_ms.rem_euclid(1000) != 0)
}

fn encode_delivery(delivery: &WebhookDelivery) -> Result<Item, StoreError> {
    let details = DetailsOut { headers: &delivery.headers, events: &delivery.events };
    let record =
        serde_json::to_string(&details).map_err(|e| StoreError::Backend(format!("cannot encode delivery: {e}")))?;
    let item = attributes(vec![
        ("pk", s(webhook_pk(&delivery.project_id))),
        ("sk", s(delivery_sk(&delivery.id)?)),
        ("project_id", s(&delivery.project_id)),
        ("delivery_id", s(&delivery.id)),
        ("integration", s(&delivery.integration)),
        ("received_at", ms(&delivery.received_at)),
        ("unrouted", AttributeValue::Bool(delivery.unrouted)),
        ("body", s(&delivery.body)),
        ("record", s(record)),
        (TTL_ATTRIBUTE, n(expires_at_seconds(&delivery.received_at))),
    ]);
    fitting_item(item, "webhook delivery")
}

fn decode_delivery(item: &Item) -> Result<WebhookDelivery, StoreError> {
    let details: DetailsIn = serde_json::from_str(get_s(item, "record")?)
        .map_err(|e| StoreError::Corrupt(format!("attribute record: {e}")))?;
    Ok(WebhookDelivery {
        id: get_s(item, "delivery_id")?.to_string(),
        project_id: get_s(item, "project_id")?.to_string(),
        integration: get_s(item, "integration")?.to_string(),
        received_at: get_ts(item, "received_at")?,
        headers: details.headers,
        body: get_opt_s(item, "body")?.unwrap_or_default().to_string(),
        events: details.events,
        unrouted: get_flag(item, "unrouted")?,
    })
}

#[async_trait]
impl WebhookStore for DynamoStore {
    async fn put_delivery(&self, delivery: &WebhookDelivery) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(encode_delivery(delivery)?))
            .send()
            .await
            .map_err(|e| backend("PutItem", e))?;
        // The event ids it named, 25 per BatchWriteItem (unconditional: a later delivery of
        // the same id only moves its expiry, and the executions' derived ids are what keeps a
        // start once).
        let received = delivery.received_at.timestamp_millis();
        let expires = (received + RETENTION_MS) / 1000;
        let pk = event_pk(&delivery.project_id, &delivery.integration);
        let requests: Vec<aws_sdk_dynamodb::types::WriteRequest> = delivery
            .events
            .iter()
            .filter(|event| event.outcome != "duplicate")
            .filter_map(|event| event.event_id.as_ref())
            .map(|event_id| {
                let item: Item = [
                    ("pk".to_string(), s(pk.clone())),
                    ("sk".to_string(), s(event_id)),
                    ("delivery_id".to_string(), s(&delivery.id)),
                    ("received_at".to_string(), AttributeValue::N(received.to_string())),
                    (TTL_ATTRIBUTE.to_string(), AttributeValue::N(expires.to_string())),
                ]
                .into_iter()
                .collect();
                let put = aws_sdk_dynamodb::types::PutRequest::builder().set_item(Some(item)).build();
                put.map(|put| aws_sdk_dynamodb::types::WriteRequest::builder().put_request(put).build())
                    .map_err(|e| StoreError::Backend(format!("BatchWriteItem: {e}")))
            })
            .collect::<Result<_, _>>()?;
        for chunk in requests.chunks(25) {
            let mut pending = chunk.to_vec();
            for _ in 0..8 {
                if pending.is_empty() {
                    break;
                }
                let answer = self
                    .client
                    .batch_write_item()
                    .request_items(&self.table, pending.clone())
                    .send()
                    .await
                    .map_err(|e| backend("BatchWriteItem", e))?;
                pending = answer.unprocessed_items.and_then(|mut left| left.remove(&self.table)).unwrap_or_default();
            }
            if !pending.is_empty() {
                return Err(StoreError::Backend(format!(
                    "BatchWriteItem: {} event ids left unprocessed",
                    pending.len()
                )));
            }
        }
        Ok(())
    }

    async fn delivered_events(
        &self,
        project_id: &str,
        integration: &str,
        event_ids: &[String],
    ) -> Result<Vec<bool>, StoreError> {
        crate::ports::check_event_ids(event_ids)?;
        if event_ids.is_empty() {
            return Ok(Vec::new());
        }
        let pk = event_pk(project_id, integration);
        let cutoff = retention_cutoff_ms();
        let mut unique: Vec<&String> = event_ids.iter().collect();
        unique.sort();
        unique.dedup();
        let mut pending: Vec<Item> = unique
            .into_iter()
            .map(|id| [("pk".to_string(), s(pk.clone())), ("sk".to_string(), s(id))].into_iter().collect())
            .collect();
        let mut seen: std::collections::HashSet<String> = std::collections::HashSet::new();
        for _ in 0..8 {
            if pending.is_empty() {
                break;
            }
            let keys = aws_sdk_dynamodb::types::KeysAndAttributes::builder()
                .set_keys(Some(pending.clone()))
                .consistent_read(true)
                .build()
                .map_err(|e| StoreError::Backend(format!("BatchGetItem: {e}")))?;
            let answer = self
                .client
                .batch_get_item()
                .request_items(&self.table, keys)
                .send()
                .await
                .map_err(|e| backend("BatchGetItem", e))?;
            for item in answer.responses.and_then(|mut found| found.remove(&self.table)).unwrap_or_default() {
                if get_n::<i64>(&item, "received_at")? >= cutoff {
                    seen.insert(get_s(&item, "sk")?.to_string());
                }
            }
            pending = answer
                .unprocessed_keys
                .and_then(|mut left| left.remove(&self.table))
                .map(|left| left.keys)
                .unwrap_or_default();
        }
        if !pending.is_empty() {
            return Err(StoreError::Backend(format!("BatchGetItem: {} event ids left unread", pending.len())));
        }
        Ok(event_ids.iter().map(|id| seen.contains(id)).collect())
    }

    async fn get_delivery(&self, project_id: &str, delivery_id: &str) -> Result<Option<WebhookDelivery>, StoreError> {
        let cutoff = retention_cutoff_ms();
        let Some(item) = self.get(webhook_pk(project_id), &delivery_sk(delivery_id)?).await? else {
            return Ok(None);
        };
        if get_n::<i64>(&item, "received_at")? < cutoff {
            return Ok(None);
        }
        decode_delivery(&item).map(Some)
    }

    async fn list_deliveries(
        &self,
        project_id: &str,
        integration: Option<&str>,
        unrouted_only: bool,
        before: Option<&str>,
        limit: usize,
    ) -> Result<Vec<WebhookDelivery>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        // The partition holds deliveries only. Newest first: descending delivery ids (UUIDv7).
        let mut query = self
            .client
            .query()
            .table_name(&self.table)
            .expression_attribute_values(":pk", s(webhook_pk(project_id)))
            .scan_index_forward(false)
            .consistent_read(true);
        query = match before {
            Some(before) => query
                .key_condition_expression("pk = :pk AND sk < :before")
                .expression_attribute_values(":before", s(delivery_sk(before)?)),
            None => query
                .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
                .expression_attribute_values(":prefix", s(DELIVERY_PREFIX)),
        };
        // Filters apply after the read: expired deliveries (not yet deleted by the TTL), and
        // those of other integrations or without an unrouted event when asked.
        let mut filters = vec!["received_at >= :cutoff"];
        query = query.expression_attribute_values(":cutoff", n(retention_cutoff_ms()));
        if let Some(integration) = integration {
            filters.push("integration = :integration");
            query = query.expression_attribute_values(":integration", s(integration));
        }
        if unrouted_only {
            filters.push("unrouted = :unrouted");
            query = query.expression_attribute_values(":unrouted", AttributeValue::Bool(true));
        }
        let selective = integration.is_some() || unrouted_only;
        query = query.filter_expression(filters.join(" AND "));
        let (items, _) = query_up_to(query, None, limit, if selective { FILTERED_PAGE } else { 0 }).await?;
        items.iter().map(decode_delivery).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(next_fire: Option<i64>) -> ScheduleEntry {
        let at = |ms: i64| chrono::DateTime::from_timestamp_millis(ms).expect("in range");
        ScheduleEntry {
            project_id: "p".into(),
            workflow_id: "wf".into(),
            user_id: "u#1".into(),
            next_fire: next_fire.map(at),
            version: 3,
            zone: "Europe/Paris".into(),
            last_fire: None,
            last_execution_id: Some("e".into()),
            fired: 2,
            skipped: 1,
            missed: 0,
            last_note: None,
            updated_at: at(1_764_000_000_123),
        }
    }

    #[test]
    fn only_a_row_with_a_next_fire_carries_the_due_keys() {
        let due = encode_entry(&entry(Some(1_764_000_000_001))).expect("encode");
        assert_eq!(due.get(DUE_AT), Some(&n(1_764_000_000_001i64)));
        assert_eq!(due.get(DUE_SHARD), Some(&s(DUE_SHARD_VALUE)));
        let parked = encode_entry(&entry(None)).expect("encode");
        assert!(!parked.contains_key(DUE_AT) && !parked.contains_key(DUE_SHARD) && !parked.contains_key("next_fire"));
        assert_eq!(decode_entry(&due).expect("decode"), entry(Some(1_764_000_000_001)));
        assert_eq!(decode_entry(&parked).expect("decode"), entry(None));
    }

    #[test]
    fn a_workflow_prefix_matches_only_its_own_rows() {
        let sk = schedule_sk("wf", "u#1").expect("fits");
        assert!(sk.starts_with(&schedule_prefix("wf")));
        assert!(!schedule_sk("wf-2", "u").expect("fits").starts_with(&schedule_prefix("wf")));
        assert!(
            schedule_sk("wf", "zzz").expect("fits") < schedule_sk("wf-2", "a").expect("fits"),
            "(workflow, user) order"
        );
        assert!(matches!(schedule_sk("wf", &"\u{10000}".repeat(256)), Err(StoreError::TooLarge(_))));
    }

    #[test]
    fn a_due_cursor_round_trips_and_a_bad_one_is_refused() {
        let item = encode_entry(&entry(Some(7))).expect("encode");
        let cursor = encode_cursor(&item).expect("cursor");
        let start = decode_cursor(&cursor).expect("decode");
        for name in ["pk", "sk", DUE_SHARD, DUE_AT] {
            assert_eq!(start.get(name), item.get(name), "{name}");
        }
        assert!(matches!(decode_cursor(&DueCursor("nope".into())), Err(StoreError::Corrupt(_))));
        let bad = DueCursor(r#"{"pk":"a","sk":"b","shard":"0","at":"x"}"#.into());
        assert!(matches!(decode_cursor(&bad), Err(StoreError::Corrupt(_))));
    }

    #[test]
    fn a_delivery_expires_seven_days_after_it_was_received_rounded_up() {
        let at = |ms: i64| chrono::DateTime::from_timestamp_millis(ms).expect("in range");
        assert_eq!(expires_at_seconds(&at(1_764_000_000_000)), 1_764_000_000 + 7 * 86_400);
        assert_eq!(expires_at_seconds(&at(1_764_000_000_001)), 1_764_000_001 + 7 * 86_400);
    }
}

//! `IdempotencyStore` on DynamoDB: one item per claimed key, `IDEM#<hash>` / `IDEM` (see
//! `infra/dynamodb.md`, "Idempotency keys").
//!
//! Invariants: the partition key is the SHA-256 of the length-prefixed (project, route,
//! caller, key), so user ids and keys of any characters and length make fixed-size keys that
//! never collide, and the item carries the four parts as attributes (a read compares them).
//! A claim is one conditional `PutItem` (`attribute_not_exists(pk) OR expires_at < :now`)
//! that returns the live item when its condition fails, so the winner and the record a loser
//! sees come from one atomic write. `expires_at` (milliseconds) decides liveness everywhere;
//! `expiresAt` (whole seconds, rounded up) is the table's TTL attribute, so DynamoDB deletes
//! expired items on its own (within days; reads never rely on it).

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValuesOnConditionCheckFailure};

use super::{DynamoStore, Item, TTL_ATTRIBUTE, backend, conditional, get_json, get_n, get_s, get_ts, json, ms, n, s};
use crate::ports::{ClaimState, FirstWrite, IdempotencyKey, IdempotencyRecord, IdempotencyStore, StoreError};
use crate::record::{Timestamp, now};

const IDEMPOTENCY_SK: &str = "IDEM";

/// How many times a claim is tried when the live record it lost to has gone before it could
/// be read (released or expired in between).
const CLAIM_TRIES: usize = 5;

/// `IDEM#<lower-case hex SHA-256 of the length-prefixed parts of key>`.
fn idempotency_pk(key: &IdempotencyKey) -> String {
    let mut text = String::new();
    for part in [&key.project_id, &key.route, &key.caller, &key.key] {
        text.push_str(&format!("{}:{part};", part.len()));
    }
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, text.as_bytes());
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("IDEM#{hex}")
}

/// The table's TTL value for `at`: epoch seconds, rounded up (an item is never deleted
/// before it expires).
fn ttl_seconds(at: &Timestamp) -> i64 {
    let ms = at.timestamp_millis();
    ms.div_euclid(1000) + i64::from(ms.rem_euclid(1000) != 0)
}

fn encode(key: &IdempotencyKey, record: &IdempotencyRecord) -> Result<Item, StoreError> {
    let attributes = [
        ("pk", s(idempotency_pk(key))),
        ("sk", s(IDEMPOTENCY_SK)),
        ("project_id", s(&key.project_id)),
        ("route", s(&key.route)),
        ("caller", s(&key.caller)),
        ("idempotency_key", s(&key.key)),
        ("request_hash", s(&record.request_hash)),
        ("answer", json(&record.answer)?),
        ("token", s(&record.token)),
        ("state", s(record.state.as_str())),
        ("claimed_at", ms(&record.claimed_at)),
        ("expires_at", ms(&record.expires_at)),
        (TTL_ATTRIBUTE, n(ttl_seconds(&record.expires_at))),
    ];
    Ok(attributes.into_iter().map(|(name, value)| (name.to_string(), value)).collect())
}

/// The record in `item`, if it is `key`'s and live at `now_ms`.
fn decode_live(key: &IdempotencyKey, item: &Item, now_ms: i64) -> Result<Option<IdempotencyRecord>, StoreError> {
    let parts =
        [get_s(item, "project_id")?, get_s(item, "route")?, get_s(item, "caller")?, get_s(item, "idempotency_key")?];
    if parts != [key.project_id.as_str(), key.route.as_str(), key.caller.as_str(), key.key.as_str()] {
        return Err(StoreError::Corrupt(format!("idempotency item {} holds another key", idempotency_pk(key))));
    }
    let expires_at_ms: i64 = get_n(item, "expires_at")?;
    if expires_at_ms < now_ms {
        return Ok(None);
    }
    Ok(Some(IdempotencyRecord {
        request_hash: get_s(item, "request_hash")?.to_string(),
        answer: get_json(item, "answer")?,
        token: get_s(item, "token")?.to_string(),
        state: ClaimState::parse(get_s(item, "state")?)?,
        claimed_at: get_ts(item, "claimed_at")?,
        expires_at: get_ts(item, "expires_at")?,
    }))
}

fn key_attributes(key: &IdempotencyKey) -> [(String, AttributeValue); 2] {
    [("pk".to_string(), s(idempotency_pk(key))), ("sk".to_string(), s(IDEMPOTENCY_SK))]
}

#[async_trait]
impl IdempotencyStore for DynamoStore {
    async fn claim_key(
        &self,
        key: &IdempotencyKey,
        record: &IdempotencyRecord,
    ) -> Result<FirstWrite<IdempotencyRecord>, StoreError> {
        let item = encode(key, record)?;
        for _ in 0..CLAIM_TRIES {
            let now_ms = now().timestamp_millis();
            let result = self
                .client
                .put_item()
                .table_name(&self.table)
                .set_item(Some(item.clone()))
                .condition_expression("attribute_not_exists(pk) OR expires_at < :now")
                .expression_attribute_values(":now", n(now_ms))
                .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
                .send()
                .await;
            let existing = match result {
                Ok(_) => return Ok(FirstWrite::Written),
                Err(e) => match e.as_service_error() {
                    Some(aws_sdk_dynamodb::operation::put_item::PutItemError::ConditionalCheckFailedException(
                        failed,
                    )) => failed.item().cloned(),
                    _ => return Err(backend("PutItem", e)),
                },
            };
            // The live item came back with the failed condition; read it if it did not.
            let existing = match existing {
                Some(item) => decode_live(key, &item, now_ms)?,
                None => self.get_key(key).await?,
            };
            if let Some(existing) = existing {
                return Ok(FirstWrite::Existing(existing));
            }
            // Gone (released or expired) since the condition was checked: claim again.
        }
        Err(StoreError::Backend(format!("idempotency key {} is contended: no claim settled", idempotency_pk(key))))
    }

    async fn get_key(&self, key: &IdempotencyKey) -> Result<Option<IdempotencyRecord>, StoreError> {
        let now_ms = now().timestamp_millis();
        match self.get(idempotency_pk(key), IDEMPOTENCY_SK).await? {
            Some(item) => decode_live(key, &item, now_ms),
            None => Ok(None),
        }
    }

    async fn complete_key(&self, key: &IdempotencyKey, token: &str, expires_at: Timestamp) -> Result<bool, StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key_attributes(key).into_iter().collect()))
            .update_expression("SET #state = :done, expires_at = :expires_at, #ttl = :ttl")
            .condition_expression("#token = :token")
            .expression_attribute_names("#state", "state")
            .expression_attribute_names("#ttl", TTL_ATTRIBUTE)
            .expression_attribute_names("#token", "token")
            .expression_attribute_values(":done", s(ClaimState::Done.as_str()))
            .expression_attribute_values(":expires_at", ms(&expires_at))
            .expression_attribute_values(":ttl", n(ttl_seconds(&expires_at)))
            .expression_attribute_values(":token", s(token))
            .send()
            .await;
        conditional("UpdateItem", result)
    }

    async fn release_key(&self, key: &IdempotencyKey, token: &str) -> Result<bool, StoreError> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key_attributes(key).into_iter().collect()))
            .condition_expression("#token = :token")
            .expression_attribute_names("#token", "token")
            .expression_attribute_values(":token", s(token))
            .send()
            .await;
        conditional("DeleteItem", result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(project_id: &str, route: &str, caller: &str, idempotency_key: &str) -> IdempotencyKey {
        IdempotencyKey {
            project_id: project_id.into(),
            route: route.into(),
            caller: caller.into(),
            key: idempotency_key.into(),
        }
    }

    #[test]
    fn keys_whose_parts_run_together_get_different_partitions() {
        let a = idempotency_pk(&key("p", "trigger:w", "ab", "c"));
        let b = idempotency_pk(&key("p", "trigger:w", "a", "bc"));
        let c = idempotency_pk(&key("p", "trigger:w", "a;1:b", "c"));
        assert!(a != b && b != c && a != c);
        assert_eq!(a.len(), "IDEM#".len() + 64);
        assert_eq!(a, idempotency_pk(&key("p", "trigger:w", "ab", "c")), "stable");
    }

    #[test]
    fn the_ttl_never_comes_before_the_expiry() {
        let at = |ms: i64| chrono::DateTime::from_timestamp_millis(ms).expect("in range");
        assert_eq!(ttl_seconds(&at(1_764_000_000_000)), 1_764_000_000);
        assert_eq!(ttl_seconds(&at(1_764_000_000_001)), 1_764_000_001);
        assert_eq!(ttl_seconds(&at(1_764_000_000_999)), 1_764_000_001);
    }
}

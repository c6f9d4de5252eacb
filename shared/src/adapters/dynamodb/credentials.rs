//! A user's credentials on DynamoDB and the index of their identity (keys in
//! `infra/dynamodb.md`, "Connect"):
//!
//! - the credentials: `USER#<p>#<user>` / `CREDENTIAL#<integration>`, the sealed record as
//!   JSON (`record`, its identity included);
//! - one index item per identity entry: `IDENTITY#<p>#<integration>#<key>#<value>` / `<user>`,
//!   its parts as attributes. Project ids, integration names and identity keys hold no `#`,
//!   and the value is written with `%` and `#` percent-encoded, so every `#` of the partition
//!   key is a separator and no two entries share a partition. The users of one identity are
//!   one `Query`.
//!
//! Invariant: the index items are exactly the identity entries of the stored credentials. A
//! write that changes a record's identity is one `TransactWriteItems`: the credential item,
//! conditioned on holding what the change was computed from (`#record = :old`, or
//! `attribute_not_exists(pk)`), with the index items it adds and removes. A write that keeps
//! the identity is one conditional write of the credential item, as before the index existed.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{Delete, Put, TransactWriteItem};
use serde::Deserialize;

use super::connect::{item, user_pk};
use super::{DynamoStore, Item, backend, conditional, get_s, s, transacted};
use crate::ports::{
    CredentialRecord, CredentialStore, MAX_USERS_BY_IDENTITY, StoreError, credential_json, identity_key_fits,
    identity_value_fits,
};

const CREDENTIAL_PREFIX: &str = "CREDENTIAL#";
const IDENTITY_PREFIX: &str = "IDENTITY#";
/// How many times a replace or a delete reads the record and writes conditionally on it while
/// concurrent writes keep changing it in between.
const WRITE_ATTEMPTS: u32 = 5;

/// Whose credentials: the keys of their item and of their identity's index items.
struct CredentialKey<'a> {
    project_id: &'a str,
    user_id: &'a str,
    integration: &'a str,
}

impl CredentialKey<'_> {
    fn pk(&self) -> String {
        user_pk(self.project_id, self.user_id)
    }

    fn sk(&self) -> String {
        format!("{CREDENTIAL_PREFIX}{}", self.integration)
    }

    fn identity_item(&self, key: &str, value: &str) -> Item {
        item(vec![
            ("pk", s(identity_pk(self.project_id, self.integration, key, value))),
            ("sk", s(self.user_id)),
            ("project_id", s(self.project_id)),
            ("integration", s(self.integration)),
            ("identity_key", s(key)),
            ("identity_value", s(value)),
            ("user_id", s(self.user_id)),
        ])
    }
}

/// The partition of the users whose credentials for `integration` have `identity[key] == value`.
fn identity_pk(project_id: &str, integration: &str, key: &str, value: &str) -> String {
    let mut pk = format!("{IDENTITY_PREFIX}{project_id}#{integration}#{key}#");
    for c in value.chars() {
        match c {
            '%' => pk.push_str("%25"),
            '#' => pk.push_str("%23"),
            c => pk.push(c),
        }
    }
    pk
}

/// What a stored record is indexed by: its identity alone, so that a record whose other
/// fields this build cannot read can still be replaced or removed.
#[derive(Deserialize)]
struct StoredIdentity {
    #[serde(default)]
    identity: BTreeMap<String, String>,
}

/// The stored record: its JSON text (what a conditional write compares) and its identity.
type Stored = (String, BTreeMap<String, String>);

impl DynamoStore {
    async fn stored_credentials(&self, key: &CredentialKey<'_>) -> Result<Option<Stored>, StoreError> {
        let Some(item) = self.get(key.pk(), &key.sk()).await? else { return Ok(None) };
        let text = get_s(&item, "record")?;
        let stored: StoredIdentity =
            serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("credential record: {e}")))?;
        Ok(Some((text.to_string(), stored.identity)))
    }

    /// Writes `new` (None: deletes) over the credential item if it still holds exactly
    /// `expected` (None: no item), and moves the index from `before` to `after` with it;
    /// whether the item held `expected`. Nothing is written when it did not.
    async fn write_credentials(
        &self,
        key: &CredentialKey<'_>,
        expected: Option<&str>,
        new: Option<&str>,
        before: &BTreeMap<String, String>,
        after: &BTreeMap<String, String>,
    ) -> Result<bool, StoreError> {
        let (condition, names, values) = match expected {
            Some(old) => (
                "#record = :old",
                Some(HashMap::from([("#record".to_string(), "record".to_string())])),
                Some(HashMap::from([(":old".to_string(), s(old))])),
            ),
            None => ("attribute_not_exists(pk)", None, None),
        };
        let credential_item = |text: &str| item(vec![("pk", s(key.pk())), ("sk", s(key.sk())), ("record", s(text))]);
        let removed: Vec<_> = before.iter().filter(|(k, v)| after.get(*k) != Some(*v)).collect();
        let added: Vec<_> = after.iter().filter(|(k, v)| before.get(*k) != Some(*v)).collect();
        if removed.is_empty() && added.is_empty() {
            return match new {
                Some(text) => {
                    let result = self
                        .client
                        .put_item()
                        .table_name(&self.table)
                        .set_item(Some(credential_item(text)))
                        .condition_expression(condition)
                        .set_expression_attribute_names(names)
                        .set_expression_attribute_values(values)
                        .send()
                        .await;
                    conditional("PutItem", result)
                }
                None => {
                    let result = self
                        .client
                        .delete_item()
                        .table_name(&self.table)
                        .key("pk", s(key.pk()))
                        .key("sk", s(key.sk()))
                        .condition_expression(condition)
                        .set_expression_attribute_names(names)
                        .set_expression_attribute_values(values)
                        .send()
                        .await;
                    conditional("DeleteItem", result)
                }
            };
        }
        let request = |e| StoreError::Backend(format!("TransactWriteItems request: {e}"));
        let credential = match new {
            Some(text) => {
                let put = Put::builder()
                    .table_name(&self.table)
                    .set_item(Some(credential_item(text)))
                    .condition_expression(condition)
                    .set_expression_attribute_names(names)
                    .set_expression_attribute_values(values)
                    .build()
                    .map_err(request)?;
                TransactWriteItem::builder().put(put).build()
            }
            None => {
                let delete = Delete::builder()
                    .table_name(&self.table)
                    .key("pk", s(key.pk()))
                    .key("sk", s(key.sk()))
                    .condition_expression(condition)
                    .set_expression_attribute_names(names)
                    .set_expression_attribute_values(values)
                    .build()
                    .map_err(request)?;
                TransactWriteItem::builder().delete(delete).build()
            }
        };
        // At most 1 + 2 × MAX_IDENTITY_ENTRIES = 21 actions, within one transaction's 100.
        let mut actions = vec![credential];
        for (k, v) in removed {
            let pk = identity_pk(key.project_id, key.integration, k, v);
            actions.push(self.delete_action(pk, key.user_id.to_string())?);
        }
        for (k, v) in added {
            actions.push(self.put_action(key.identity_item(k, v))?);
        }
        let result = self.client.transact_write_items().set_transact_items(Some(actions)).send().await;
        transacted(result)
    }
}

#[async_trait]
impl CredentialStore for DynamoStore {
    async fn put_credentials(
        &self,
        project_id: &str,
        user_id: &str,
        integration: &str,
        record: &CredentialRecord,
    ) -> Result<(), StoreError> {
        let text = credential_json(record)?;
        let key = CredentialKey { project_id, user_id, integration };
        for attempt in 1..=WRITE_ATTEMPTS {
            let stored = self.stored_credentials(&key).await?;
            let (expected, before) = match &stored {
                Some((text, identity)) => (Some(text.as_str()), identity),
                None => (None, &BTreeMap::new()),
            };
            if self.write_credentials(&key, expected, Some(&text), before, &record.identity).await? {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(25 * u64::from(attempt))).await;
        }
        Err(StoreError::Backend(format!(
            "the {integration} credentials kept changing while being replaced ({WRITE_ATTEMPTS} attempts); try again"
        )))
    }

    async fn get_credentials(
        &self,
        project_id: &str,
        user_id: &str,
        integration: &str,
    ) -> Result<Option<CredentialRecord>, StoreError> {
        let key = CredentialKey { project_id, user_id, integration };
        let item = self.get(key.pk(), &key.sk()).await?;
        item.map(|item| {
            serde_json::from_str(get_s(&item, "record")?)
                .map_err(|e| StoreError::Corrupt(format!("credential record: {e}")))
        })
        .transpose()
    }

    async fn swap_credentials(
        &self,
        project_id: &str,
        user_id: &str,
        integration: &str,
        old: &CredentialRecord,
        new: &CredentialRecord,
    ) -> Result<bool, StoreError> {
        let (old_text, new_text) = (credential_json(old)?, credential_json(new)?);
        let key = CredentialKey { project_id, user_id, integration };
        self.write_credentials(&key, Some(&old_text), Some(&new_text), &old.identity, &new.identity).await
    }

    async fn delete_credentials(&self, project_id: &str, user_id: &str, integration: &str) -> Result<bool, StoreError> {
        let key = CredentialKey { project_id, user_id, integration };
        for attempt in 1..=WRITE_ATTEMPTS {
            let Some((text, identity)) = self.stored_credentials(&key).await? else { return Ok(false) };
            if self.write_credentials(&key, Some(&text), None, &identity, &BTreeMap::new()).await? {
                return Ok(true);
            }
            tokio::time::sleep(Duration::from_millis(25 * u64::from(attempt))).await;
        }
        Err(StoreError::Backend(format!(
            "the {integration} credentials kept changing while being removed ({WRITE_ATTEMPTS} attempts); try again"
        )))
    }

    async fn users_by_identity(
        &self,
        project_id: &str,
        integration: &str,
        key: &str,
        value: &str,
    ) -> Result<Vec<String>, StoreError> {
        if !identity_key_fits(key) || !identity_value_fits(value) {
            return Ok(Vec::new());
        }
        // One page: 100 index items of at most a few KB each are far below a page's 1 MB.
        let limit = i32::try_from(MAX_USERS_BY_IDENTITY).unwrap_or(i32::MAX);
        let output = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", s(identity_pk(project_id, integration, key, value)))
            .projection_expression("user_id")
            .consistent_read(true)
            .limit(limit)
            .send()
            .await
            .map_err(|e| backend("Query", e))?;
        output.items.unwrap_or_default().iter().map(|item| get_s(item, "user_id").map(str::to_string)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_identity_partition_has_no_hash_but_its_separators() {
        assert_eq!(identity_pk("p", "slack", "team", "T123"), "IDENTITY#p#slack#team#T123");
        assert_eq!(identity_pk("p", "slack", "team", "a#b%23 c/é"), "IDENTITY#p#slack#team#a%23b%2523 c/é");
        assert_ne!(identity_pk("p", "slack", "team", "a#b"), identity_pk("p", "slack", "team", "a%23b"));
        assert_ne!(identity_pk("p", "slack", "team", "x#y"), identity_pk("p", "slack", "team#x", "y"));
    }
}

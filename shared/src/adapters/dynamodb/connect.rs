//! The connect layer's ports on DynamoDB (keys in `infra/dynamodb.md`, "Connect"):
//!
//! - a project's integrations: `PROJECT#<p>` / `INTEGRATION#<name>`, the record as JSON;
//! - a user's partition `USER#<p>#<user>` (project ids hold no `#`, so everything after the
//!   second `#` is the user id): `META` (name, email, time zone, created at),
//!   `ENABLED#<kind>#<target>` (one item per explicit choice) and
//!   `SETTING#<scope>#<id>` (one item per stored value) and `CREDENTIAL#<integration>` (the
//!   sealed credentials, written with their identity index by [`super::credentials`]): a
//!   user's choices and values are one Query each, and no two users ever share an item;
//! - the project's user index `USERS#<p>` / `<user>`, written before the user's `META` by
//!   `ensure_user` and `update_user`, so that `list_users` pages through a project's users in
//!   id order with one Query per page.

use std::collections::BTreeMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, Delete, Put, ReturnValue, TransactWriteItem};
use serde_json::Value;

use super::{DynamoStore, Item, backend, get_opt_s, get_s, get_ts, ms, project_pk, query_up_to, s};
use crate::ports::{
    ConnectedUser, Enablement, EnablementStore, IntegrationRecord, IntegrationStore, MAX_USERS_PAGE, SettingsScope,
    SettingsStore, StoreError, Switch, UserMeta, UserStore, check_setting_values,
};
use crate::record::now;

const INTEGRATION_PREFIX: &str = "INTEGRATION#";
const USER_SK: &str = "META";
const ENABLED_PREFIX: &str = "ENABLED#";
const SETTING_PREFIX: &str = "SETTING#";
/// TransactWriteItems takes at most 100 actions.
const TRANSACTION_ITEMS: usize = 100;

pub(super) fn user_pk(project_id: &str, user_id: &str) -> String {
    format!("USER#{project_id}#{user_id}")
}

/// The project's user index: one item per user, sort key the user id, so a page of user ids
/// in order is one `Query`.
fn users_pk(project_id: &str) -> String {
    format!("USERS#{project_id}")
}

fn setting_prefix(scope: &SettingsScope) -> String {
    format!("{SETTING_PREFIX}{}#", scope.key())
}

impl DynamoStore {
    /// Every item of partition `pk` whose sort key starts with `prefix`, all pages.
    pub(super) async fn with_prefix(&self, pk: String, prefix: &str) -> Result<Vec<Item>, StoreError> {
        let mut items = Vec::new();
        let mut start = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
                .expression_attribute_values(":pk", s(pk.clone()))
                .expression_attribute_values(":prefix", s(prefix))
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| backend("Query", e))?;
            items.extend(page.items.unwrap_or_default());
            match page.last_evaluated_key.filter(|key| !key.is_empty()) {
                Some(key) => start = Some(key),
                None => return Ok(items),
            }
        }
    }

    /// Writes `actions` in transactions of at most 100.
    async fn transact(&self, actions: Vec<TransactWriteItem>) -> Result<(), StoreError> {
        for chunk in actions.chunks(TRANSACTION_ITEMS) {
            self.client
                .transact_write_items()
                .set_transact_items(Some(chunk.to_vec()))
                .send()
                .await
                .map_err(|e| backend("TransactWriteItems", e))?;
        }
        Ok(())
    }

    pub(super) fn put_action(&self, item: Item) -> Result<TransactWriteItem, StoreError> {
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .build()
            .map_err(|e| StoreError::Backend(format!("Put request: {e}")))?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    pub(super) fn delete_action(&self, pk: String, sk: String) -> Result<TransactWriteItem, StoreError> {
        let delete = Delete::builder()
            .table_name(&self.table)
            .key("pk", s(pk))
            .key("sk", s(sk))
            .build()
            .map_err(|e| StoreError::Backend(format!("Delete request: {e}")))?;
        Ok(TransactWriteItem::builder().delete(delete).build())
    }
}

pub(super) fn item(pairs: Vec<(&str, AttributeValue)>) -> Item {
    pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

#[async_trait]
impl IntegrationStore for DynamoStore {
    async fn put_integrations(&self, project_id: &str, integrations: &[IntegrationRecord]) -> Result<(), StoreError> {
        let pk = project_pk(project_id);
        let mut actions = Vec::with_capacity(integrations.len());
        for record in integrations {
            let text = serde_json::to_string(record)
                .map_err(|e| StoreError::Backend(format!("cannot encode integration {}: {e}", record.name)))?;
            let sk = format!("{INTEGRATION_PREFIX}{}", record.name);
            actions.push(self.put_action(item(vec![("pk", s(pk.clone())), ("sk", s(sk)), ("record", s(text))]))?);
        }
        for existing in self.with_prefix(pk.clone(), INTEGRATION_PREFIX).await? {
            let sk = get_s(&existing, "sk")?;
            let name = sk.trim_start_matches(INTEGRATION_PREFIX);
            if !integrations.iter().any(|record| record.name == name) {
                actions.push(self.delete_action(pk.clone(), sk.to_string())?);
            }
        }
        self.transact(actions).await
    }

    async fn list_integrations(&self, project_id: &str) -> Result<Vec<IntegrationRecord>, StoreError> {
        let items = self.with_prefix(project_pk(project_id), INTEGRATION_PREFIX).await?;
        items.iter().map(decode_integration).collect()
    }

    async fn get_integration(&self, project_id: &str, name: &str) -> Result<Option<IntegrationRecord>, StoreError> {
        let item = self.get(project_pk(project_id), &format!("{INTEGRATION_PREFIX}{name}")).await?;
        item.as_ref().map(decode_integration).transpose()
    }
}

fn decode_integration(item: &Item) -> Result<IntegrationRecord, StoreError> {
    serde_json::from_str(get_s(item, "record")?).map_err(|e| StoreError::Corrupt(format!("integration record: {e}")))
}

#[async_trait]
impl UserStore for DynamoStore {
    async fn ensure_user(&self, project_id: &str, user_id: &str) -> Result<bool, StoreError> {
        self.list_user(project_id, user_id).await?;
        let pk = user_pk(project_id, user_id);
        self.put_new(item(vec![("pk", s(pk)), ("sk", s(USER_SK)), ("created_at", ms(&now()))])).await
    }

    async fn update_user(&self, project_id: &str, user_id: &str, meta: &UserMeta) -> Result<ConnectedUser, StoreError> {
        self.list_user(project_id, user_id).await?;
        let mut expression = vec!["created_at = if_not_exists(created_at, :now)".to_string()];
        let mut update = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(user_pk(project_id, user_id)))
            .key("sk", s(USER_SK))
            .expression_attribute_values(":now", ms(&now()))
            .return_values(ReturnValue::AllNew);
        for (name, value) in [("name", &meta.name), ("email", &meta.email), ("timezone", &meta.timezone)] {
            if let Some(value) = value {
                expression.push(format!("#{name} = :{name}"));
                update = update
                    .expression_attribute_names(format!("#{name}"), name)
                    .expression_attribute_values(format!(":{name}"), s(value));
            }
        }
        let output = update
            .update_expression(format!("SET {}", expression.join(", ")))
            .send()
            .await
            .map_err(|e| backend("UpdateItem", e))?;
        let item = output.attributes.ok_or_else(|| StoreError::Backend("UpdateItem returned no user".into()))?;
        decode_user(user_id, &item)
    }

    async fn get_user(&self, project_id: &str, user_id: &str) -> Result<Option<ConnectedUser>, StoreError> {
        let item = self.get(user_pk(project_id, user_id), USER_SK).await?;
        item.map(|item| decode_user(user_id, &item)).transpose()
    }

    async fn list_users(&self, project_id: &str, after: Option<&str>, limit: usize) -> Result<Vec<String>, StoreError> {
        let limit = limit.min(MAX_USERS_PAGE);
        if limit == 0 {
            return Ok(Vec::new());
        }
        let pk = users_pk(project_id);
        // Every user id is non-empty, so an empty `after` is the start (and no valid key).
        let start =
            after.filter(|after| !after.is_empty()).map(|after| item(vec![("pk", s(pk.clone())), ("sk", s(after))]));
        let query = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", s(pk))
            .consistent_read(true);
        let (items, _) = query_up_to(query, start, limit, 0).await?;
        items.iter().map(|item| get_s(item, "user_id").map(str::to_string)).collect()
    }
}

impl DynamoStore {
    /// Puts the user's item in the project's user index (idempotent). Written before the user
    /// itself, so that no crash leaves a recorded user out of `list_users`.
    async fn list_user(&self, project_id: &str, user_id: &str) -> Result<(), StoreError> {
        let entry = item(vec![
            ("pk", s(users_pk(project_id))),
            ("sk", s(user_id)),
            ("project_id", s(project_id)),
            ("user_id", s(user_id)),
        ]);
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(entry))
            .send()
            .await
            .map_err(|e| backend("PutItem", e))?;
        Ok(())
    }
}

fn decode_user(user_id: &str, item: &Item) -> Result<ConnectedUser, StoreError> {
    let text = |name: &str| get_opt_s(item, name).map(|value| value.map(str::to_string));
    Ok(ConnectedUser {
        user_id: user_id.to_string(),
        meta: UserMeta { name: text("name")?, email: text("email")?, timezone: text("timezone")? },
        created_at: get_ts(item, "created_at")?,
    })
}

#[async_trait]
impl EnablementStore for DynamoStore {
    async fn enablement(&self, project_id: &str, user_id: &str) -> Result<Enablement, StoreError> {
        let mut enablement = Enablement::default();
        for item in self.with_prefix(user_pk(project_id, user_id), ENABLED_PREFIX).await? {
            let sk = get_s(&item, "sk")?;
            let enabled = matches!(item.get("enabled"), Some(AttributeValue::Bool(true)));
            match sk.trim_start_matches(ENABLED_PREFIX).split_once('#') {
                Some(("integration", name)) => enablement.integrations.insert(name.to_string(), enabled),
                Some((_, id)) => enablement.workflows.insert(id.to_string(), enabled),
                None => return Err(StoreError::Corrupt(format!("enablement item `{sk}`"))),
            };
        }
        Ok(enablement)
    }

    async fn set_enabled(
        &self,
        project_id: &str,
        user_id: &str,
        switch: &Switch,
        enabled: bool,
    ) -> Result<Option<bool>, StoreError> {
        let (kind, target) = switch.key();
        // One PutItem returning the item it replaced: atomic on the item.
        let output = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item(vec![
                ("pk", s(user_pk(project_id, user_id))),
                ("sk", s(format!("{ENABLED_PREFIX}{kind}#{target}"))),
                ("enabled", AttributeValue::Bool(enabled)),
            ])))
            .return_values(ReturnValue::AllOld)
            .send()
            .await
            .map_err(|e| backend("PutItem", e))?;
        Ok(output.attributes.and_then(|old| old.get("enabled").and_then(|v| v.as_bool().ok().copied())))
    }
}

#[async_trait]
impl SettingsStore for DynamoStore {
    async fn get_settings(
        &self,
        project_id: &str,
        user_id: &str,
        scope: &SettingsScope,
    ) -> Result<BTreeMap<String, Value>, StoreError> {
        let prefix = setting_prefix(scope);
        let items = self.with_prefix(user_pk(project_id, user_id), &prefix).await?;
        items
            .iter()
            .map(|item| {
                let id = get_s(item, "sk")?.trim_start_matches(&prefix).to_string();
                let value = serde_json::from_str(get_s(item, "value")?)
                    .map_err(|e| StoreError::Corrupt(format!("setting `{id}`: {e}")))?;
                Ok((id, value))
            })
            .collect()
    }

    async fn put_settings(
        &self,
        project_id: &str,
        user_id: &str,
        scope: &SettingsScope,
        values: &BTreeMap<String, Value>,
    ) -> Result<(), StoreError> {
        let rows = check_setting_values(values)?;
        let (pk, prefix) = (user_pk(project_id, user_id), setting_prefix(scope));
        let mut actions = Vec::with_capacity(rows.len());
        for (id, text) in rows {
            let sk = format!("{prefix}{id}");
            actions.push(match text {
                Some(text) => self.put_action(item(vec![("pk", s(pk.clone())), ("sk", s(sk)), ("value", s(text))]))?,
                None => self.delete_action(pk.clone(), sk)?,
            });
        }
        self.transact(actions).await
    }
}

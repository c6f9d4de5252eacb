//! Task History on DynamoDB: global secondary indexes over the execution items (and small
//! search attribute items), one per filter, so every listing is a `Query`, never a `Scan`.
//!
//! | index | partition key | sort key | on |
//! | --- | --- | --- | --- |
//! | `history` | `project_id` | `h_at` | execution items |
//! | `history_id` | `project_id` | `execution_id` | execution items |
//! | `history_workflow` | `h_workflow` = `<project>#<workflow>` | `h_at` | execution items |
//! | `history_user` | `h_user` = `<project>#<user>` | `h_at` | execution items |
//! | `history_status` | `h_status` = `<project>#<status>` | `h_at` | execution items |
//! | `history_integration` | `h_integration` = `<project>#<integration>` | `h_at` | execution items of an integration |
//! | `history_trigger` | `h_trigger` = `<project>#<trigger kind>` | `h_at` | execution items |
//! | `history_search` | `h_search` = `<project>#<key>#<value>` | `h_at` | search attribute items |
//!
//! `h_at` = `<started_at ms, 13 digits>#<execution id>`: string order is start order, and no
//! two executions share one. Project ids and search keys never contain `#`, so no key of one
//! project or attribute is a key of another.
//!
//! Invariants: every index projects only attributes that never change after the start
//! (`execution_id`, `workflow_id`, `user_id`, `integration`, `trigger_kind`), so finishing an
//! execution writes no index but `history_status` (whose key moves with the status: the
//! update that changes `status` sets `h_status` too). A page's rows are then read from the
//! execution items themselves (`BatchGetItem`, strongly consistent): the status and the end
//! are always current, and a filter the index could not apply (the status, a second search
//! attribute) is applied to them. Search attribute items (`EXEC#<id>` / `SEARCH#<key>`) are
//! written before their execution item, so a search never misses an execution that exists; an
//! item whose execution was never created is skipped.

use std::collections::{BTreeMap, HashMap};

use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes};

use super::{
    DynamoStore, EXECUTION_SK, Item, backend, execution_pk, get_n, get_opt_json, get_opt_s, get_opt_ts, get_s, s,
};
use crate::ports::{
    BulkJob, BulkStore, ExecutionSummary, HistoryFilter, HistoryPage, HistoryPosition, HistoryQuery, HistoryStore,
    StoreError,
};
use crate::record::{Execution, ExecutionStatus, Timestamp, TriggerKind};

pub const HISTORY: &str = "history";
pub const HISTORY_ID: &str = "history_id";
pub const HISTORY_WORKFLOW: &str = "history_workflow";
pub const HISTORY_USER: &str = "history_user";
pub const HISTORY_STATUS: &str = "history_status";
pub const HISTORY_INTEGRATION: &str = "history_integration";
pub const HISTORY_TRIGGER: &str = "history_trigger";
pub const HISTORY_SEARCH: &str = "history_search";

/// Sort key of the time-ordered indexes.
pub const AT: &str = "h_at";
pub const WORKFLOW_KEY: &str = "h_workflow";
pub const USER_KEY: &str = "h_user";
pub const STATUS_KEY: &str = "h_status";
pub const INTEGRATION_KEY: &str = "h_integration";
pub const TRIGGER_KEY: &str = "h_trigger";
pub const SEARCH_KEY: &str = "h_search";

/// The attributes every history index projects (besides the keys): all fixed at the start.
pub const PROJECTED: [&str; 5] = ["execution_id", "workflow_id", "user_id", "integration", "trigger_kind"];

/// Every index: (name, partition key, sort key).
pub const INDEXES: [(&str, &str, &str); 8] = [
    (HISTORY, "project_id", AT),
    (HISTORY_ID, "project_id", "execution_id"),
    (HISTORY_WORKFLOW, WORKFLOW_KEY, AT),
    (HISTORY_USER, USER_KEY, AT),
    (HISTORY_STATUS, STATUS_KEY, AT),
    (HISTORY_INTEGRATION, INTEGRATION_KEY, AT),
    (HISTORY_TRIGGER, TRIGGER_KEY, AT),
    (HISTORY_SEARCH, SEARCH_KEY, AT),
];

const SEARCH_PREFIX: &str = "SEARCH#";

fn at_key(started_at: &Timestamp, execution_id: &str) -> String {
    format!("{:013}#{execution_id}", started_at.timestamp_millis().max(0))
}

pub(super) fn status_key(project_id: &str, status: ExecutionStatus) -> AttributeValue {
    s(format!("{project_id}#{}", status.as_str()))
}

fn search_key(project_id: &str, key: &str, value: &str) -> String {
    format!("{project_id}#{key}#{value}")
}

/// The attributes an execution item carries for the history indexes (and its listing rows).
pub(super) fn index_attributes(e: &Execution) -> Vec<(&'static str, AttributeValue)> {
    let p = &e.project_id;
    let mut attributes = vec![
        (AT, s(at_key(&e.started_at, &e.id))),
        (WORKFLOW_KEY, s(format!("{p}#{}", e.workflow_id))),
        (USER_KEY, s(format!("{p}#{}", e.user_id))),
        (STATUS_KEY, status_key(p, e.status)),
        (TRIGGER_KEY, s(format!("{p}#{}", e.trigger.kind.as_str()))),
        ("trigger_kind", s(e.trigger.kind.as_str())),
    ];
    if let Some(integration) = &e.integration {
        attributes.push((INTEGRATION_KEY, s(format!("{p}#{integration}"))));
        attributes.push(("integration", s(integration)));
    }
    attributes
}

/// The search attribute items of `e`, one per attribute, each carrying the projected
/// attributes so that the index can filter on them too.
pub(super) fn search_items(e: &Execution) -> Vec<Item> {
    e.search
        .iter()
        .map(|(key, value)| {
            let mut item: Item = [
                ("pk", s(execution_pk(&e.id))),
                ("sk", s(format!("{SEARCH_PREFIX}{key}"))),
                (SEARCH_KEY, s(search_key(&e.project_id, key, value))),
                (AT, s(at_key(&e.started_at, &e.id))),
                ("execution_id", s(&e.id)),
                ("workflow_id", s(&e.workflow_id)),
                ("user_id", s(&e.user_id)),
                ("trigger_kind", s(e.trigger.kind.as_str())),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
            if let Some(integration) = &e.integration {
                item.insert("integration".into(), s(integration));
            }
            item
        })
        .collect()
}

/// How one listing reads: the index, its partition key, and the conditions left to the
/// query's filter expression (on projected attributes) and to the rows read after.
struct Plan {
    index: &'static str,
    partition_attribute: &'static str,
    partition: String,
    by_id: bool,
}

fn plan(query: &HistoryQuery) -> Plan {
    let f = &query.filter;
    let p = &query.project_id;
    let plan =
        |index, partition_attribute, partition: String| Plan { index, partition_attribute, partition, by_id: false };
    if f.id_prefix.is_some() {
        return Plan { index: HISTORY_ID, partition_attribute: "project_id", partition: p.clone(), by_id: true };
    }
    if let Some((key, value)) = f.search.iter().next() {
        return plan(HISTORY_SEARCH, SEARCH_KEY, search_key(p, key, value));
    }
    if let Some(user) = &f.user_id {
        return plan(HISTORY_USER, USER_KEY, format!("{p}#{user}"));
    }
    if let Some(workflow) = &f.workflow_id {
        return plan(HISTORY_WORKFLOW, WORKFLOW_KEY, format!("{p}#{workflow}"));
    }
    if let Some(status) = f.status {
        return plan(HISTORY_STATUS, STATUS_KEY, format!("{p}#{}", status.as_str()));
    }
    if let Some(integration) = &f.integration {
        return plan(HISTORY_INTEGRATION, INTEGRATION_KEY, format!("{p}#{integration}"));
    }
    if let Some(trigger) = f.trigger {
        return plan(HISTORY_TRIGGER, TRIGGER_KEY, format!("{p}#{}", trigger.as_str()));
    }
    plan(HISTORY, "project_id", p.clone())
}

/// The summary attributes a listing reads from execution items (not the trigger data).
const SUMMARY_ATTRIBUTES: [&str; 15] = [
    "execution_id",
    "project_id",
    "workflow_id",
    "workflow_version",
    "user_id",
    "integration",
    "status",
    "trigger_kind",
    "started_at",
    "ended_at",
    "error",
    "search",
    "replay_of",
    "redrives",
    "test",
];

pub(super) fn decode_summary(item: &Item) -> Result<ExecutionSummary, StoreError> {
    let status = get_s(item, "status")?;
    let trigger = get_opt_s(item, "trigger_kind")?.unwrap_or("request");
    Ok(ExecutionSummary {
        id: get_s(item, "execution_id")?.to_string(),
        project_id: get_s(item, "project_id")?.to_string(),
        workflow_id: get_s(item, "workflow_id")?.to_string(),
        workflow_version: get_n(item, "workflow_version")?,
        user_id: get_s(item, "user_id")?.to_string(),
        integration: get_opt_s(item, "integration")?.map(str::to_string),
        status: ExecutionStatus::parse(status)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown execution status `{status}`")))?,
        trigger: TriggerKind::parse(trigger)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown trigger kind `{trigger}`")))?,
        started_at: super::get_ts(item, "started_at")?,
        ended_at: get_opt_ts(item, "ended_at")?,
        error: get_opt_json(item, "error")?,
        search: get_opt_json::<BTreeMap<String, String>>(item, "search")?.unwrap_or_default(),
        replay_of: get_opt_s(item, "replay_of")?.map(str::to_string),
        redrives: super::get_opt_n(item, "redrives")?.unwrap_or(0),
        test: super::get_flag(item, "test")?,
    })
}

impl DynamoStore {
    /// The execution items of `ids` (at most 100) as listing rows, in the order of `ids`;
    /// ids with no execution item, or one past its retention, are left out.
    async fn summaries(&self, ids: &[String]) -> Result<Vec<ExecutionSummary>, StoreError> {
        let mut found: HashMap<String, ExecutionSummary> = HashMap::with_capacity(ids.len());
        // With the TTL attribute: an execution past its retention is left out.
        let attributes = || SUMMARY_ATTRIBUTES.iter().copied().chain([super::TTL_ATTRIBUTE]);
        let names: HashMap<String, String> =
            attributes().enumerate().map(|(i, name)| (format!("#a{i}"), name.to_string())).collect();
        let projection = (0..attributes().count()).map(|i| format!("#a{i}")).collect::<Vec<_>>().join(", ");
        let mut pending: Vec<Item> = ids
            .iter()
            .map(|id| [("pk".to_string(), s(execution_pk(id))), ("sk".to_string(), s(EXECUTION_SK))].into())
            .collect();
        for _ in 0..10 {
            if pending.is_empty() {
                break;
            }
            let keys = KeysAndAttributes::builder()
                .set_keys(Some(std::mem::take(&mut pending)))
                .consistent_read(true)
                .projection_expression(&projection)
                .set_expression_attribute_names(Some(names.clone()))
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
                if super::is_expired(&item)? {
                    continue;
                }
                let summary = decode_summary(&item)?;
                found.insert(summary.id.clone(), summary);
            }
            pending = answer
                .unprocessed_keys
                .and_then(|mut left| left.remove(&self.table))
                .map(|left| left.keys)
                .unwrap_or_default();
        }
        if !pending.is_empty() {
            return Err(StoreError::Backend(format!("BatchGetItem: {} executions left unread", pending.len())));
        }
        Ok(ids.iter().filter_map(|id| found.remove(id)).collect())
    }
}

/// The filter expression of the conditions on projected attributes that the index's key does
/// not apply, with its names and values.
fn filter_expression(
    f: &HistoryFilter,
    plan: &Plan,
) -> (Option<String>, HashMap<String, String>, HashMap<String, AttributeValue>) {
    let mut conditions = Vec::new();
    let mut names = HashMap::new();
    let mut values = HashMap::new();
    let mut add = |attribute: &str, value: &str, index_applies: bool, prefix: bool| {
        if index_applies {
            return;
        }
        let i = conditions.len();
        names.insert(format!("#f{i}"), attribute.to_string());
        values.insert(format!(":f{i}"), s(value));
        conditions.push(if prefix { format!("begins_with(#f{i}, :f{i})") } else { format!("#f{i} = :f{i}") });
    };
    if let Some(w) = &f.workflow_id {
        add("workflow_id", w, plan.index == HISTORY_WORKFLOW, false);
    }
    if let Some(u) = &f.user_id {
        add("user_id", u, plan.index == HISTORY_USER, false);
    }
    if let Some(i) = &f.integration {
        add("integration", i, plan.index == HISTORY_INTEGRATION, false);
    }
    if let Some(t) = f.trigger {
        add("trigger_kind", t.as_str(), plan.index == HISTORY_TRIGGER, false);
    }
    let expression = (!conditions.is_empty()).then(|| conditions.join(" AND "));
    (expression, names, values)
}

#[async_trait::async_trait]
impl HistoryStore for DynamoStore {
    async fn list_executions(&self, query: &HistoryQuery) -> Result<HistoryPage, StoreError> {
        let f = &query.filter;
        let plan = plan(query);
        let sort = if plan.by_id { "execution_id" } else { AT };
        // The sort key's range: the started-at bounds (or the id prefix), and the position.
        let (mut low, mut high): (Option<String>, Option<String>) = match &f.id_prefix {
            Some(prefix) => (Some(prefix.clone()), Some(format!("{prefix}\u{7f}"))),
            None => (
                f.started_from.map(|from| format!("{:013}", from.timestamp_millis().max(0))),
                f.started_before.map(|before| format!("{:013}", before.timestamp_millis().max(0))),
            ),
        };
        let after = query.after.as_ref().map(|after| match plan.by_id {
            true => after.id.clone(),
            false => at_key(&after.started_at, &after.id),
        });
        if let Some(after) = &after {
            high = Some(match high {
                Some(high) if high < *after => high,
                _ => after.clone(),
            });
        }
        // `BETWEEN` is inclusive at both ends: the position's own row and rows at exactly
        // `started_before` (whose keys have a `#id` after the digits, so none) are skipped.
        let key_condition = match (&low, &high) {
            (Some(_), Some(_)) => "#pk = :pk AND #sk BETWEEN :low AND :high",
            (Some(_), None) => "#pk = :pk AND #sk >= :low",
            (None, Some(_)) => "#pk = :pk AND #sk < :high",
            (None, None) => "#pk = :pk",
        };
        if let (Some(l), Some(h)) = (&low, &high)
            && l > h
        {
            return Ok(HistoryPage { executions: Vec::new(), next: None });
        }
        let (filter, mut names, mut values) = filter_expression(f, &plan);
        names.insert("#pk".into(), plan.partition_attribute.into());
        if low.is_some() || high.is_some() {
            names.insert("#sk".into(), sort.into());
        }
        values.insert(":pk".into(), s(&plan.partition));
        if let Some(l) = low.take() {
            values.insert(":low".into(), s(l));
        }
        if let Some(h) = high.take() {
            values.insert(":high".into(), s(h));
        }
        let request = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(plan.index)
            .key_condition_expression(key_condition)
            .set_filter_expression(filter)
            .set_expression_attribute_names(Some(names))
            .set_expression_attribute_values(Some(values))
            .projection_expression("execution_id")
            .scan_index_forward(false);
        let mut rows: Vec<ExecutionSummary> = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let want = query.limit + 1 - rows.len();
            let ask = i32::try_from(want.clamp(25, 1_000)).unwrap_or(1_000);
            let page = request
                .clone()
                .set_exclusive_start_key(start.take())
                .limit(ask)
                .send()
                .await
                .map_err(|e| backend("Query", e))?;
            let ids: Vec<String> = page
                .items
                .unwrap_or_default()
                .iter()
                .map(|item| get_s(item, "execution_id").map(str::to_string))
                .collect::<Result<_, _>>()?;
            let ids: Vec<String> =
                ids.into_iter().filter(|id| query.after.as_ref().is_none_or(|a| a.id != *id)).collect();
            for chunk in ids.chunks(100) {
                for row in self.summaries(chunk).await? {
                    // The project check is belt and braces: every index key names the project.
                    if row.project_id == query.project_id && f.keeps(&row) {
                        rows.push(row);
                    }
                }
                if rows.len() > query.limit {
                    break;
                }
            }
            match page.last_evaluated_key.filter(|key| !key.is_empty()) {
                Some(key) if rows.len() <= query.limit => start = Some(key),
                _ => break,
            }
        }
        let next = if rows.len() > query.limit {
            rows.truncate(query.limit);
            rows.last().map(HistoryPosition::of)
        } else {
            None
        };
        Ok(HistoryPage { executions: rows, next })
    }

    async fn replays_of(&self, project_id: &str, execution_id: &str, limit: usize) -> Result<Vec<String>, StoreError> {
        let page = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
            .expression_attribute_values(":pk", s(execution_pk(execution_id)))
            .expression_attribute_values(":prefix", s(REPLAY_PREFIX))
            .consistent_read(true)
            .limit(i32::try_from(limit).unwrap_or(i32::MAX))
            .send()
            .await
            .map_err(|e| backend("Query", e))?;
        let mut replays = Vec::new();
        for item in page.items.unwrap_or_default() {
            if get_s(&item, "project_id")? == project_id {
                replays.push(get_s(&item, "replay_id")?.to_string());
            }
        }
        Ok(replays)
    }
}

const REPLAY_PREFIX: &str = "REPLAY#";

fn bulk_sk(bulk_id: &str) -> String {
    format!("BULK#{bulk_id}")
}

#[async_trait::async_trait]
impl BulkStore for DynamoStore {
    async fn create_bulk_job(&self, job: &BulkJob) -> Result<(), StoreError> {
        let item: Item = [
            ("pk", s(super::project_pk(&job.project_id))),
            ("sk", s(bulk_sk(&job.bulk_id))),
            ("revision", super::n(job.revision)),
            ("record", super::json(job)?),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        if self.put_new(item).await? {
            Ok(())
        } else {
            Err(StoreError::AlreadyExists(format!("bulk job {}", job.bulk_id)))
        }
    }

    async fn get_bulk_job(&self, project_id: &str, bulk_id: &str) -> Result<Option<BulkJob>, StoreError> {
        let item = self.get(super::project_pk(project_id), &bulk_sk(bulk_id)).await?;
        item.map(|item| super::get_json(&item, "record")).transpose()
    }

    async fn update_bulk_job(&self, job: &BulkJob) -> Result<bool, StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(super::project_pk(&job.project_id)))
            .key("sk", s(bulk_sk(&job.bulk_id)))
            .condition_expression("revision = :before")
            .update_expression("SET revision = :revision, #record = :record")
            .expression_attribute_names("#record", "record")
            .expression_attribute_values(":before", super::n(job.revision.saturating_sub(1)))
            .expression_attribute_values(":revision", super::n(job.revision))
            .expression_attribute_values(":record", super::json(job)?)
            .send()
            .await;
        super::conditional("UpdateItem", result)
    }
}

/// The item that links the execution `e` replays to `e` (in the replayed one's partition,
/// sorted by the replay's start).
pub(super) fn replay_link(e: &Execution) -> Option<Item> {
    let original = e.replay_of.as_ref()?;
    Some(
        [
            ("pk", s(execution_pk(original))),
            ("sk", s(format!("{REPLAY_PREFIX}{}", at_key(&e.started_at, &e.id)))),
            ("project_id", s(&e.project_id)),
            ("replay_id", s(&e.id)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_keys_sort_by_start_then_id() {
        let t = |ms: i64| chrono::DateTime::from_timestamp_millis(ms).expect("time");
        assert!(at_key(&t(999), "b") < at_key(&t(1_000), "a"));
        assert!(at_key(&t(1_000), "a") < at_key(&t(1_000), "b"));
        assert_eq!(at_key(&t(1), "x"), "0000000000001#x");
        // A `started_before` bound (digits only) sorts after every key of earlier starts and
        // before every key of its own millisecond.
        assert!(at_key(&t(999), "zzz") < format!("{:013}", 1_000));
        assert!(format!("{:013}", 1_000) < at_key(&t(1_000), "0"));
    }
}

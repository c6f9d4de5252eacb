//! An SDK interceptor that records every DynamoDB and SQS request a client makes, with what
//! AWS bills for it: the operation (from the SDK's operation `Metadata`), when it started and
//! ended, the tokio task that made it, and per operation the item bytes written or read
//! (DynamoDB's size accounting), the messages sent or received and their payload bytes (SQS).
//! The same interceptor serves both clients (the `Intercept` trait is the smithy runtime's).
//!
//! Requests are recorded only while recording is on ([`Recorder::start`]), judged when a
//! request completes: a long poll that began before and returns a message after is counted.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use aws_sdk_dynamodb::types::AttributeValue;
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::{
    BeforeSerializationInterceptorContextRef, BeforeTransmitInterceptorContextRef, FinalizerInterceptorContextRef,
    Input, Output,
};
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::{ConfigBag, Storable, StoreReplace};

use aws_sdk_dynamodb::operation as ddb;
use aws_sdk_sqs::operation as sqs;

/// One request, as recorded.
#[derive(Debug, Clone)]
pub struct Call {
    /// `DynamoDB` or `SQS`.
    pub service: String,
    pub operation: String,
    /// The task that made it (requests of one task run one after the other).
    pub task: Option<tokio::task::Id>,
    pub start: Instant,
    pub end: Instant,
    /// HTTP attempts (more than 1: retried, and billed per attempt).
    pub attempts: u32,
    pub succeeded: bool,
    pub detail: Detail,
}

impl Call {
    pub fn millis(&self) -> f64 {
        (self.end - self.start).as_secs_f64() * 1000.0
    }
}

/// What a request carried, for billing.
#[derive(Debug, Clone, Default)]
pub struct Detail {
    /// DynamoDB: the item's key (`pk`, `sk`) of a GetItem/PutItem/UpdateItem; the `pk` and
    /// the sort key prefix (`:prefix`, else the key condition) of a Query.
    pub key: Option<(String, String)>,
    pub consistent_read: bool,
    /// DynamoDB PutItem: the item's size; UpdateItem with `ALL_NEW`: the item's size after.
    pub item_bytes: Option<usize>,
    /// DynamoDB GetItem/Query: items returned and their total size.
    pub items_read: usize,
    pub read_bytes: usize,
    /// SQS: the queue's name (the last part of its URL).
    pub queue: Option<String>,
    /// SQS: messages sent (entries of a batch), received, or deleted.
    pub messages: usize,
    /// SQS: the bytes of the message bodies sent or received (billing counts 64 KiB chunks).
    pub payload_bytes: usize,
    /// SQS SendMessage: its `DelaySeconds`; a batch: the largest of its entries.
    pub delay_seconds: i32,
    /// SQS: the receipt handles received or deleted.
    pub receipts: Vec<String>,
}

/// The shared record of one or more clients' requests.
#[derive(Debug, Default)]
pub struct Recorder {
    recording: AtomicBool,
    calls: Mutex<Vec<Call>>,
}

impl Recorder {
    /// Forgets what was recorded and records from now on.
    pub fn start(&self) {
        self.lock().clear();
        self.recording.store(true, Ordering::SeqCst);
    }

    /// Stops recording and returns what was recorded, in the order requests completed.
    pub fn stop(&self) -> Vec<Call> {
        self.recording.store(false, Ordering::SeqCst);
        std::mem::take(&mut *self.lock())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Call>> {
        self.calls.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The interceptor to add to a client's config (`.interceptor(Counting(recorder.clone()))`).
#[derive(Debug, Clone)]
pub struct Counting(pub Arc<Recorder>);

/// What `read_before_execution` learnt, for `read_after_execution`.
#[derive(Debug, Clone)]
struct Pending {
    start: Instant,
    attempts: u32,
    detail: Detail,
}

impl Storable for Pending {
    type Storer = StoreReplace<Self>;
}

impl Intercept for Counting {
    fn name(&self) -> &'static str {
        "Counting"
    }

    fn read_before_execution(
        &self,
        context: &BeforeSerializationInterceptorContextRef<'_>,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let detail = input_detail(context.input());
        cfg.interceptor_state().store_put(Pending { start: Instant::now(), attempts: 0, detail });
        Ok(())
    }

    fn read_before_attempt(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(pending) = cfg.load::<Pending>().cloned() {
            cfg.interceptor_state().store_put(Pending { attempts: pending.attempts + 1, ..pending });
        }
        Ok(())
    }

    fn read_after_execution(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if !self.0.recording.load(Ordering::SeqCst) {
            return Ok(());
        }
        let (Some(metadata), Some(pending)) = (cfg.load::<Metadata>(), cfg.load::<Pending>()) else {
            return Ok(());
        };
        let mut detail = pending.detail.clone();
        let output = context.output_or_error().and_then(Result::ok);
        if let Some(output) = output {
            output_detail(output, &mut detail);
        }
        let call = Call {
            service: metadata.service().to_string(),
            operation: metadata.name().to_string(),
            task: tokio::task::try_id(),
            start: pending.start,
            end: Instant::now(),
            attempts: pending.attempts,
            succeeded: output.is_some(),
            detail,
        };
        self.0.lock().push(call);
        Ok(())
    }
}

fn key_of(key: Option<&HashMap<String, AttributeValue>>) -> Option<(String, String)> {
    let text = |name: &str| match key?.get(name)? {
        AttributeValue::S(s) => Some(s.clone()),
        _ => None,
    };
    Some((text("pk")?, text("sk").unwrap_or_default()))
}

fn queue_name(url: Option<&str>) -> Option<String> {
    url.and_then(|url| url.rsplit('/').next()).map(str::to_string)
}

fn input_detail(input: &Input) -> Detail {
    let mut d = Detail::default();
    if let Some(i) = input.downcast_ref::<ddb::get_item::GetItemInput>() {
        d.key = key_of(i.key.as_ref());
        d.consistent_read = i.consistent_read == Some(true);
    } else if let Some(i) = input.downcast_ref::<ddb::put_item::PutItemInput>() {
        d.key = key_of(i.item.as_ref());
        d.item_bytes = i.item.as_ref().map(item_size);
    } else if let Some(i) = input.downcast_ref::<ddb::update_item::UpdateItemInput>() {
        d.key = key_of(i.key.as_ref());
    } else if let Some(i) = input.downcast_ref::<ddb::query::QueryInput>() {
        let pk = match i.expression_attribute_values.as_ref().and_then(|values| values.get(":pk")) {
            Some(AttributeValue::S(pk)) => Some(pk.clone()),
            _ => None,
        };
        // The sort key side: the prefix of a `begins_with`, else the condition itself.
        let sk = match i.expression_attribute_values.as_ref().and_then(|values| values.get(":prefix")) {
            Some(AttributeValue::S(prefix)) => prefix.clone(),
            _ => i.key_condition_expression.clone().unwrap_or_default(),
        };
        d.key = pk.map(|pk| (pk, sk));
        d.consistent_read = i.consistent_read == Some(true);
    } else if let Some(i) = input.downcast_ref::<sqs::send_message::SendMessageInput>() {
        d.queue = queue_name(i.queue_url.as_deref());
        d.messages = 1;
        d.payload_bytes = i.message_body.as_deref().map_or(0, str::len);
        d.delay_seconds = i.delay_seconds.unwrap_or(0);
    } else if let Some(i) = input.downcast_ref::<sqs::send_message_batch::SendMessageBatchInput>() {
        d.queue = queue_name(i.queue_url.as_deref());
        let entries = i.entries.as_deref().unwrap_or_default();
        d.messages = entries.len();
        d.payload_bytes = entries.iter().map(|e| e.message_body.len()).sum();
        d.delay_seconds = entries.iter().filter_map(|e| e.delay_seconds).max().unwrap_or(0);
    } else if let Some(i) = input.downcast_ref::<sqs::receive_message::ReceiveMessageInput>() {
        d.queue = queue_name(i.queue_url.as_deref());
    } else if let Some(i) = input.downcast_ref::<sqs::delete_message::DeleteMessageInput>() {
        d.queue = queue_name(i.queue_url.as_deref());
        d.messages = 1;
        d.receipts = i.receipt_handle.iter().cloned().collect();
    } else if let Some(i) = input.downcast_ref::<sqs::delete_message_batch::DeleteMessageBatchInput>() {
        d.queue = queue_name(i.queue_url.as_deref());
        let entries = i.entries.as_deref().unwrap_or_default();
        d.messages = entries.len();
        d.receipts = entries.iter().map(|e| e.receipt_handle.clone()).collect();
    }
    d
}

fn output_detail(output: &Output, d: &mut Detail) {
    if let Some(o) = output.downcast_ref::<ddb::get_item::GetItemOutput>() {
        d.items_read = usize::from(o.item.is_some());
        d.read_bytes = o.item.as_ref().map_or(0, item_size);
    } else if let Some(o) = output.downcast_ref::<ddb::query::QueryOutput>() {
        let items = o.items.as_deref().unwrap_or_default();
        d.items_read = items.len();
        d.read_bytes = items.iter().map(item_size).sum();
    } else if let Some(o) = output.downcast_ref::<ddb::update_item::UpdateItemOutput>() {
        d.item_bytes = o.attributes.as_ref().map(item_size);
    } else if let Some(o) = output.downcast_ref::<sqs::receive_message::ReceiveMessageOutput>() {
        let messages = o.messages.as_deref().unwrap_or_default();
        d.messages = messages.len();
        d.payload_bytes = messages.iter().map(|m| m.body.as_deref().map_or(0, str::len)).sum();
        d.receipts = messages.iter().filter_map(|m| m.receipt_handle.clone()).collect();
    }
}

/// An item's size as DynamoDB bills it: attribute names plus values (strings and binaries
/// their length, numbers about one byte per two significant digits plus one, booleans and
/// nulls one byte, sets the sum of their members, lists and maps 3 bytes plus one per
/// element plus their contents).
pub fn item_size(item: &HashMap<String, AttributeValue>) -> usize {
    item.iter().map(|(name, value)| name.len() + value_size(value)).sum()
}

fn value_size(value: &AttributeValue) -> usize {
    match value {
        AttributeValue::S(s) => s.len(),
        AttributeValue::N(n) => number_size(n),
        AttributeValue::B(b) => b.as_ref().len(),
        AttributeValue::Bool(_) | AttributeValue::Null(_) => 1,
        AttributeValue::Ss(set) => set.iter().map(String::len).sum(),
        AttributeValue::Ns(set) => set.iter().map(|n| number_size(n)).sum(),
        AttributeValue::Bs(set) => set.iter().map(|b| b.as_ref().len()).sum(),
        AttributeValue::L(list) => 3 + list.iter().map(|v| 1 + value_size(v)).sum::<usize>(),
        AttributeValue::M(map) => 3 + map.iter().map(|(k, v)| 1 + k.len() + value_size(v)).sum::<usize>(),
        _ => 0,
    }
}

fn number_size(n: &str) -> usize {
    let digits: String = n.chars().filter(char::is_ascii_digit).collect();
    let significant = digits.trim_start_matches('0').trim_end_matches('0').len().max(1);
    significant.div_ceil(2) + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn item_sizes_follow_dynamodb_accounting() {
        let item: HashMap<String, AttributeValue> = [
            ("pk".to_string(), AttributeValue::S("EXEC#1".into())),
            ("n".to_string(), AttributeValue::N("12345".into())),
            ("ok".to_string(), AttributeValue::Bool(true)),
        ]
        .into_iter()
        .collect();
        assert_eq!(item_size(&item), 2 + 6 + 1 + 4 + 2 + 1);
        assert_eq!(number_size("1000"), 2);
        assert_eq!(number_size("0"), 2);
    }
}

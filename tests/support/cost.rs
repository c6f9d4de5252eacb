//! What one execution costs on AWS, from the requests its Lambda handlers made
//! (`counting::Call`s recorded on the local AWS-API server): the requests by operation and
//! item, the units DynamoDB and SQS bill for them, the Lambda invocations with their measured
//! durations and an estimate at AWS latencies, and the total at list prices. Used by
//! `tests/aws_requests.rs`; the method and the numbers are in `infra/cost.md`.
//!
//! Invocations: the trigger is the HTTP request (its answer comes after the inline segment's
//! hand-off); a step-runner or response-waiter invocation is one non-empty receive of its
//! queue (one Lambda batch), from the receive's answer until the last of its messages'
//! handlers has made its last request (Lambda's event source deletes the messages after the
//! invocation, unbilled). Requests go to the invocation whose window holds the first request
//! of the tokio task that made them: a trigger's tasks start with the trigger, a message's
//! task (the local workers spawn one per message) right after its receive.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use crate::counting::Call;

/// List prices, us-east-1 (USD).
pub mod price {
    /// DynamoDB on demand, per write request unit (since 1 Nov 2024; $1.25 per million before).
    pub const WRITE_UNIT: f64 = 0.625e-6;
    /// DynamoDB on demand, per read request unit (since 1 Nov 2024; $0.25 per million before).
    pub const READ_UNIT: f64 = 0.125e-6;
    /// The on-demand prices before 1 Nov 2024.
    pub const WRITE_UNIT_2024: f64 = 1.25e-6;
    pub const READ_UNIT_2024: f64 = 0.25e-6;
    /// SQS standard queue, per request (each 64 KiB chunk of a payload), beyond the free tier.
    pub const SQS_REQUEST: f64 = 0.40e-6;
    /// Lambda arm64, per GB-second, and per invocation.
    pub const LAMBDA_GB_SECOND: f64 = 0.000_013_333_4;
    pub const LAMBDA_REQUEST: f64 = 0.20e-6;
    /// The functions' memory (template.yaml `MemorySize: 256`).
    pub const LAMBDA_GB: f64 = 0.25;
    /// Step Functions Standard, per state transition.
    pub const STATE_TRANSITION: f64 = 25e-6;
}

/// Request latencies assumed on AWS, inside the region, for the estimate.
pub mod latency {
    use std::time::Duration;
    pub const DYNAMODB: Duration = Duration::from_millis(5);
    pub const SQS_SEND: Duration = Duration::from_millis(15);
    /// From a message sent to its Lambda invocation running (the event source long-polls).
    pub const DELIVERY: Duration = Duration::from_millis(25);
}

/// How the trigger polls the store for an answer settled elsewhere (`settle::wait`).
const POLL_FIRST: Duration = Duration::from_millis(50);
const POLL_MAX: Duration = Duration::from_millis(500);

/// One execution's recorded requests and the windows around them.
pub struct Run {
    pub calls: Vec<Call>,
    /// The HTTP request to the trigger: sent, and its answer read.
    pub trigger: (Instant, Instant),
    pub steps_queue: String,
    pub responses_queue: String,
    /// The size of each item of the execution's partition at the end, by sort key.
    pub final_items: HashMap<String, usize>,
}

/// A row of the request table: one kind of request.
#[derive(Debug, Default, Clone)]
pub struct Row {
    pub requests: usize,
    /// SQS: messages sent, received or deleted.
    pub messages: usize,
    pub read_units: f64,
    pub write_units: f64,
    /// SQS requests as billed (64 KiB chunks).
    pub sqs_billed: f64,
}

/// One Lambda invocation.
#[derive(Debug, Clone)]
pub struct Invocation {
    pub function: &'static str,
    /// Messages in its batch (the trigger: 0).
    pub messages: usize,
    pub requests: usize,
    pub measured: Duration,
    /// Its requests' time on moto that the estimate replaces with AWS latencies.
    pub moto_requests: Duration,
    pub estimated: Duration,
}

/// Everything derived from a run.
pub struct Analysis {
    pub rows: BTreeMap<String, Row>,
    pub invocations: Vec<Invocation>,
    /// Empty receives (long polls that returned nothing): not part of the execution.
    pub empty_receives: usize,
    /// Requests retried by the SDK (billed per attempt).
    pub retried: usize,
    /// GetItem and Query requests without `ConsistentRead` (half a unit per 4 KB).
    pub eventually_consistent_reads: usize,
    /// The trigger's polls for the answer: on moto, and as estimated on AWS.
    pub polls: usize,
    pub estimated_polls: usize,
    /// What the execution leaves in the table (kept: no TTL yet): items, and bytes as
    /// storage is billed (the item's size plus 100 bytes of overhead).
    pub stored_items: usize,
    pub stored_bytes: usize,
}

impl Analysis {
    pub fn total(&self) -> Row {
        let mut total = Row::default();
        for row in self.rows.values() {
            total.requests += row.requests;
            total.messages += row.messages;
            total.read_units += row.read_units;
            total.write_units += row.write_units;
            total.sqs_billed += row.sqs_billed;
        }
        total
    }

    pub fn service_requests(&self, service: &str) -> usize {
        self.rows.iter().filter(|(label, _)| label.starts_with(service)).map(|(_, row)| row.requests).sum()
    }

    /// Messages sent to `queue` (a label fragment: `steps` or `responses`).
    pub fn sent_to(&self, queue: &str) -> usize {
        self.rows
            .iter()
            .filter(|(label, _)| label.starts_with("SQS Send") && label.contains(&format!("→ {queue}")))
            .map(|(_, row)| row.messages)
            .sum()
    }
}

fn item_kind(sk: &str, query: bool) -> String {
    let kind = if query {
        match sk {
            "STEP#" => "step history",
            _ if sk.starts_with("STEP#") => "latest attempt of a step",
            _ if sk.starts_with("BRANCH#") => "branch results",
            _ if sk.contains("#ITEMS#") => "fan-out item chunk",
            _ if sk.starts_with("WORKFLOW#") => "workflow versions",
            _ => sk,
        }
    } else {
        match sk {
            "PROJECT" => "project",
            "EXEC" => "execution",
            "RESPONSE" => "response",
            _ if sk.starts_with("LIVE#") => "deployed workflow",
            _ if sk.starts_with("WORKFLOW#") => "workflow version",
            _ if sk.starts_with("STEP#") => "step attempt",
            _ if sk.starts_with("BRANCH#") => "branch",
            _ if sk.contains("#DONE#") => "join shard",
            _ if sk.ends_with("#JOIN") => "join",
            _ if sk.contains("#ITEMS#") => "fan-out item chunk",
            _ => sk,
        }
    };
    kind.to_string()
}

impl Run {
    fn queue_kind(&self, queue: Option<&str>) -> &'static str {
        match queue {
            Some(q) if q == self.steps_queue => "steps",
            Some(q) if q == self.responses_queue => "responses",
            _ => "other queue",
        }
    }

    /// The table row a request counts in.
    fn label(&self, call: &Call) -> String {
        let d = &call.detail;
        match call.service.as_str() {
            "DynamoDB" => {
                let sk = d.key.as_ref().map(|(_, sk)| sk.as_str()).unwrap_or("?");
                let query = call.operation == "Query";
                let mut label = format!("DynamoDB {} {}", call.operation, item_kind(sk, query));
                if call.operation == "GetItem" && d.items_read == 0 {
                    label.push_str(" (none)");
                }
                if !call.succeeded {
                    label.push_str(" (condition failed)");
                }
                label
            }
            _ => {
                let queue = self.queue_kind(d.queue.as_deref());
                let delayed = if d.delay_seconds > 0 { ", delayed" } else { "" };
                match call.operation.as_str() {
                    "SendMessage" | "SendMessageBatch" => format!("SQS {} → {queue}{delayed}", call.operation),
                    op => format!("SQS {op} {queue}"),
                }
            }
        }
    }

    fn read_units(&self, call: &Call) -> f64 {
        if call.service != "DynamoDB" || !matches!(call.operation.as_str(), "GetItem" | "Query") {
            return 0.0;
        }
        let units = call.detail.read_bytes.div_ceil(4096).max(1) as f64;
        if call.detail.consistent_read { units } else { units / 2.0 }
    }

    fn write_units(&self, call: &Call) -> f64 {
        if call.service != "DynamoDB" {
            return 0.0;
        }
        let bytes = match call.operation.as_str() {
            "PutItem" => call.detail.item_bytes,
            // The larger of the item before and after: these items only grow.
            "UpdateItem" => call.detail.item_bytes.or_else(|| {
                let sk = &call.detail.key.as_ref()?.1;
                self.final_items.get(sk).copied()
            }),
            _ => return 0.0,
        };
        bytes.unwrap_or(0).div_ceil(1024).max(1) as f64
    }

    /// The requests of the execution, by kind, and its Lambda invocations.
    pub fn analyse(&self) -> Analysis {
        let mut rows: BTreeMap<String, Row> = BTreeMap::new();
        let mut empty_receives = 0;
        for call in &self.calls {
            if call.operation == "ReceiveMessage" && call.detail.messages == 0 {
                empty_receives += 1;
                continue;
            }
            let row = rows.entry(self.label(call)).or_default();
            row.requests += 1;
            row.messages += call.detail.messages;
            row.read_units += self.read_units(call);
            row.write_units += self.write_units(call);
            if call.service == "SQS" {
                row.sqs_billed += call.detail.payload_bytes.div_ceil(64 * 1024).max(1) as f64;
            }
        }
        let retried = self.calls.iter().filter(|c| c.attempts > 1).count();
        let eventually_consistent_reads = self
            .calls
            .iter()
            .filter(|c| matches!(c.operation.as_str(), "GetItem" | "Query") && !c.detail.consistent_read)
            .count();
        let (invocations, polls, estimated_polls) = self.invocations();
        let stored_items = self.final_items.len();
        let stored_bytes = self.final_items.values().map(|size| size + 100).sum();
        Analysis {
            rows,
            invocations,
            empty_receives,
            retried,
            eventually_consistent_reads,
            polls,
            estimated_polls,
            stored_items,
            stored_bytes,
        }
    }

    /// The invocations: the trigger, then each batch in the order received.
    fn invocations(&self) -> (Vec<Invocation>, usize, usize) {
        let batches = self.batches();
        // Each task's requests (receives and deletes are the workers' own, not a handler's).
        let mut tasks: Vec<(Option<tokio::task::Id>, Vec<&Call>)> = Vec::new();
        let mut handler_calls: Vec<&Call> =
            self.calls.iter().filter(|c| !matches!(c.operation.as_str(), "ReceiveMessage" | "DeleteMessage")).collect();
        handler_calls.sort_by_key(|c| c.start);
        for call in handler_calls {
            match tasks.iter_mut().find(|(task, _)| call.task.is_some() && *task == call.task) {
                Some((_, calls)) => calls.push(call),
                None => tasks.push((call.task, vec![call])),
            }
        }
        // A task belongs to the latest window open at its first request.
        let mut trigger_calls: Vec<&Call> = Vec::new();
        let mut batch_tasks: Vec<Vec<Vec<&Call>>> = vec![Vec::new(); batches.len()];
        for (_, calls) in tasks {
            let first = calls[0].start;
            let owner = batches.iter().rposition(|b| b.start <= first && first <= b.end);
            match owner {
                Some(index) => batch_tasks[index].push(calls),
                None => trigger_calls.extend(calls),
            }
        }
        let mut invocations = Vec::new();
        for (batch, tasks) in batches.iter().zip(&batch_tasks) {
            invocations.push(batch_invocation(batch, tasks));
        }
        let (trigger, polls, estimated_polls) = self.trigger_invocation(&trigger_calls, &invocations, &batches);
        invocations.insert(0, trigger);
        (invocations, polls, estimated_polls)
    }

    fn batches(&self) -> Vec<Batch> {
        let mut batches = Vec::new();
        for receive in self.calls.iter().filter(|c| c.operation == "ReceiveMessage" && c.detail.messages > 0) {
            let deletes: Vec<&Call> = self
                .calls
                .iter()
                .filter(|c| {
                    c.operation == "DeleteMessage"
                        && c.detail.receipts.iter().any(|r| receive.detail.receipts.contains(r))
                })
                .collect();
            let end = deletes.iter().map(|c| c.start).max().unwrap_or(receive.end);
            let function = if receive.detail.queue.as_deref() == Some(&self.steps_queue) {
                "step runner"
            } else {
                "response waiter"
            };
            batches.push(Batch {
                function,
                messages: receive.detail.messages,
                start: receive.end,
                end: end.max(receive.end),
            });
        }
        batches.sort_by_key(|b| b.start);
        batches
    }

    /// The trigger's invocation: its requests run one after the other, except its polls for
    /// the answer while the segment runs (hidden behind the segment's requests). When it
    /// waited on step-runner invocations (a fan-out), the estimate replays that wait at AWS
    /// speed: the hand-off, a delivery, the slowest batch (all run at once on Lambda), and
    /// the poll that finds the answer.
    fn trigger_invocation(
        &self,
        calls: &[&Call],
        batches: &[Invocation],
        windows: &[Batch],
    ) -> (Invocation, usize, usize) {
        let (start, end) = self.trigger;
        let measured = end - start;
        let is_poll =
            |c: &Call| c.operation == "GetItem" && c.detail.key.as_ref().is_some_and(|(_, sk)| sk == "RESPONSE");
        let overlaps = |c: &Call| calls.iter().any(|o| !std::ptr::eq(*o, c) && o.start < c.end && c.start < o.end);
        let polls = calls.iter().filter(|c| is_poll(c)).count();
        let critical: Vec<&Call> = calls.iter().copied().filter(|c| !(is_poll(c) && overlaps(c))).collect();
        let (moto, aws) = sequential(&critical);
        // It waited on the step runner if it was still polling for the answer after a
        // step-runner invocation began.
        let last_poll = calls.iter().filter(|c| is_poll(c)).map(|c| c.start).max();
        let waited = last_poll.is_some_and(|at| windows.iter().any(|b| b.function == "step runner" && b.start < at));
        let invocation = |estimated, moto_requests| Invocation {
            function: "trigger",
            messages: 0,
            requests: calls.len(),
            measured,
            moto_requests,
            estimated,
        };
        if !waited {
            return (invocation(measured.saturating_sub(moto) + aws, moto), polls, polls);
        }
        // Up to the hand-off (the segment's last request) and up to the wait's start (the
        // execution created: the start returns and the trigger starts polling).
        let until = |at: Instant| {
            let before: Vec<&Call> = critical.iter().copied().filter(|c| c.end <= at && !is_poll(c)).collect();
            let (moto, aws) = sequential(&before);
            (at - start).saturating_sub(moto) + aws
        };
        let hand_off = critical.iter().filter(|c| !is_poll(c)).map(|c| c.end).max().unwrap_or(start);
        let created = calls
            .iter()
            .filter(|c| c.operation == "PutItem" && c.detail.key.as_ref().is_some_and(|(_, sk)| sk == "EXEC"))
            .map(|c| c.end)
            .next()
            .unwrap_or(start);
        let slowest =
            batches.iter().filter(|b| b.function == "step runner").map(|b| b.estimated).max().unwrap_or_default();
        let settled = until(hand_off) + latency::DELIVERY + slowest;
        let wait_start = until(created);
        let (mut at, mut interval, mut estimated_polls) = (wait_start, POLL_FIRST, 1);
        while at < settled {
            at += interval;
            interval = (interval * 3 / 2).min(POLL_MAX);
            estimated_polls += 1;
        }
        let moto_total: Duration = calls.iter().map(|c| c.end - c.start).sum();
        (invocation(at + latency::DYNAMODB, moto_total), polls, estimated_polls)
    }
}

/// A non-empty receive's window.
struct Batch {
    function: &'static str,
    messages: usize,
    start: Instant,
    end: Instant,
}

/// The time requests took on moto and would take on AWS, one after the other: requests in
/// flight together (a batch send's chunks) count once, as long as the slowest.
fn sequential(calls: &[&Call]) -> (Duration, Duration) {
    let mut sorted = calls.to_vec();
    sorted.sort_by_key(|c| c.start);
    let (mut moto, mut aws) = (Duration::ZERO, Duration::ZERO);
    let mut cluster: Option<(Instant, Instant, Duration)> = None;
    for call in sorted {
        cluster = match cluster {
            Some((from, to, slowest)) if call.start < to => {
                Some((from, to.max(call.end), slowest.max(aws_latency(call))))
            }
            done => {
                if let Some((from, to, slowest)) = done {
                    moto += to - from;
                    aws += slowest;
                }
                Some((call.start, call.end, aws_latency(call)))
            }
        };
    }
    if let Some((from, to, slowest)) = cluster {
        moto += to - from;
        aws += slowest;
    }
    (moto, aws)
}

fn aws_latency(call: &Call) -> Duration {
    match call.service.as_str() {
        "DynamoDB" => latency::DYNAMODB,
        _ => latency::SQS_SEND,
    }
}

/// A batch's messages run at once: it lasts until its slowest message's handler ends (with
/// its last request). Each message's time less its requests' time on moto is what it
/// computed; the estimate adds its requests at AWS latencies.
fn batch_invocation(batch: &Batch, tasks: &[Vec<&Call>]) -> Invocation {
    let ended = tasks.iter().flatten().map(|c| c.end).max().unwrap_or(batch.end);
    let measured = ended - batch.start;
    let mut estimated = Duration::ZERO;
    let mut moto_requests = Duration::ZERO;
    for calls in tasks {
        let last = calls.iter().map(|c| c.end).max().unwrap_or(batch.start);
        let moto: Duration = calls.iter().map(|c| c.end - c.start).sum();
        let aws: Duration = calls.iter().map(|c| aws_latency(c)).sum();
        let took = (last - batch.start).saturating_sub(moto) + aws;
        if took > estimated {
            (estimated, moto_requests) = (took, moto);
        }
    }
    Invocation {
        function: batch.function,
        messages: batch.messages,
        requests: tasks.iter().map(Vec::len).sum(),
        measured,
        moto_requests,
        estimated,
    }
}

/// Lambda's price of the invocations, with durations rounded up to the millisecond.
pub fn lambda_cost(invocations: &[Invocation], duration: impl Fn(&Invocation) -> Duration) -> f64 {
    let gb_seconds: f64 =
        invocations.iter().map(|i| (duration(i).as_secs_f64() * 1000.0).ceil() / 1000.0 * price::LAMBDA_GB).sum();
    gb_seconds * price::LAMBDA_GB_SECOND + invocations.len() as f64 * price::LAMBDA_REQUEST
}

//! Carrying out the engine's fan-out effects: sending branch messages (each carrying its
//! item), keeping the items for later lanes, counting branches done once (the store makes
//! redeliveries harmless) and joining — reading the branch results back in input order and
//! recording the fan-out's output first-writer-wins.
//!
//! A small fan-out whose branches never wait runs its branches inside the segment instead,
//! `concurrency` at a time (concurrently where they wait on I/O): the branches' step attempts
//! and their completions are written in one batch (`FanOutStore::record_branches`, one
//! transaction on SQLite), first-writer-wins with the same exactly-once semantics; a branch
//! that sends or settles anything first writes what it recorded (`Segment::flush`). A crash
//! before the batch loses only attempts nothing outside saw: they run again, as a step whose
//! record was lost to a crash does. An attempt another delivery recorded first fails the
//! segment retryably, and the redelivery goes on from the recorded attempts. A branch that goes to the queue half-way
//! (a retry) is counted when it ends, like a distributed one; a crash half-way leaves the
//! fan-out unjoined, and the redelivered (or recovery) message starts it again: recorded
//! branch steps are not run again, and the rest runs.

use futures_util::stream::{FuturesUnordered, StreamExt};
use serde_json::{Value, json};

use super::{Entry, Pending, RunError, Segment};
use crate::engine::{Carry, Event, StepKey};
use crate::messages::{ScopeEntry, StepMessage};
use crate::ports::{Outgoing, QueueName};
use crate::record::{ExecutionStatus, StepAttempt, StepStatus, now};
use crate::steps::{self, within_record_limit};

impl Segment<'_> {
    pub(super) async fn start_branches(
        &self,
        fan_out: &StepKey,
        first_step: &str,
        lanes: u32,
        items: Vec<Value>,
    ) -> Result<(), RunError> {
        let total = u32::try_from(items.len()).unwrap_or(u32::MAX);
        if lanes < total {
            self.runtime.store.put_fan_out_items(&self.execution.id, fan_out, &items).await?;
        }
        let outer = self.scope_of(fan_out)?;
        let messages: Vec<Outgoing> = items
            .into_iter()
            .take(lanes as usize)
            .enumerate()
            .map(|(index, item)| {
                let index = u32::try_from(index).unwrap_or(u32::MAX);
                self.branch_message(first_step, &outer, ScopeEntry { index, total, item, inline: false })
            })
            .collect();
        tracing::debug!(execution = %self.execution.id, fan_out = %fan_out, total, started = messages.len(), "fan-out started");
        self.runtime.queue.send_batch(QueueName::Steps, messages).await?;
        Ok(())
    }

    pub(super) async fn start_branch(
        &self,
        fan_out: &StepKey,
        first_step: &str,
        index: u32,
        total: u32,
        unless_started: bool,
    ) -> Result<(), RunError> {
        // A redelivery of a lane's previous branch must not start this one again once it
        // runs: once its first attempt is recorded, its own message (or that message's
        // redelivery) carries the lane on.
        let first =
            StepKey { step: first_step.to_string(), scope: fan_out.scope.iter().copied().chain([index]).collect() };
        if unless_started && self.runtime.store.get_step(&self.execution.id, &first, 1).await?.is_some() {
            tracing::debug!(execution = %self.execution.id, branch = %first, "branch already running; not started again");
            return Ok(());
        }
        let item =
            self.runtime.store.fan_out_item(&self.execution.id, fan_out, index).await?.ok_or_else(|| {
                RunError::Retryable(format!("item {index} of fan-out `{fan_out}` is not stored (yet)"))
            })?;
        let outer = self.scope_of(fan_out)?;
        let message = self.branch_message(first_step, &outer, ScopeEntry { index, total, item, inline: false });
        self.runtime.queue.send(QueueName::Steps, message).await?;
        Ok(())
    }

    /// Counts the current branch (`index` of `fan_out`) done.
    pub(super) async fn complete_branch(
        &mut self,
        fan_out: StepKey,
        index: u32,
        result: &Value,
    ) -> Result<Event, RunError> {
        let entry = self
            .scope
            .get(fan_out.scope.len())
            .filter(|entry| entry.index == index)
            .ok_or_else(|| RunError::Poison(format!("branch {index} of `{fan_out}` is not the current branch")))?;
        let (total, inline) = (entry.total, entry.inline);
        // This call's token: the store tells whether it counted the branch first, even when
        // its write went through and the answer was lost.
        let by = uuid::Uuid::new_v4().simple().to_string();
        let store = &self.runtime.store;
        let counted = store.complete_branch(&self.execution.id, &fan_out, index, total, result, &by).await?;
        let carry = match () {
            () if inline => Carry::No,
            () if self.repair => Carry::Always,
            () if counted.first => Carry::First,
            () if self.redelivered => Carry::IfNotStarted,
            () => {
                tracing::debug!(execution = %self.execution.id, fan_out = %fan_out, index, "branch counted by another delivery; its lane is that one's");
                Carry::No
            }
        };
        self.scope = self.scope_of(&fan_out)?;
        Ok(Event::BranchCounted { fan_out, index, total, all_done: counted.all_done, carry })
    }

    /// Records the output of a fan-out whose every branch is done.
    pub(super) async fn join(&mut self, fan_out: StepKey, total: u32) -> Result<Event, RunError> {
        let results = self.runtime.store.branch_results(&self.execution.id, &fan_out).await?;
        let key = fan_out.to_string();
        if results.len() != total as usize || results.iter().enumerate().any(|(i, (n, _))| *n as usize != i) {
            return Err(RunError::Retryable(format!(
                "fan-out `{key}` counts all {total} branches done but {} results are stored",
                results.len()
            )));
        }
        let attempt = self.current_fan_out_attempt(&fan_out).await?;
        let at = now();
        let joined = within_record_limit(StepAttempt {
            step: key,
            attempt,
            status: StepStatus::Succeeded,
            input: json!({ "items": total }),
            output: Some(Value::Array(results.into_iter().map(|(_, v)| v).collect())),
            error: None,
            started_at: at,
            ended_at: at,
            logs: Vec::new(),
        });
        tracing::debug!(execution = %self.execution.id, fan_out = %joined.step, total, "fan-out joined");
        let step = self
            .workflow
            .find_step(&fan_out.step)
            .ok_or_else(|| RunError::Poison(format!("workflow has no step `{}`", fan_out.step)))?;
        let (_, recorded) = self.record(joined).await?;
        let outcome = steps::outcome_of(step, &recorded).map_err(RunError::Poison)?;
        Ok(Event::StepEnded { key: fan_out, attempt, outcome })
    }

    /// Runs every branch of `fan_out` here, `lanes` at a time; returns the batch count of
    /// those that completed.
    pub(super) async fn run_branches_inline(
        &mut self,
        fan_out: StepKey,
        first_step: &str,
        lanes: u32,
        items: Vec<Value>,
    ) -> Result<Option<Event>, RunError> {
        let total = u32::try_from(items.len()).unwrap_or(u32::MAX);
        let outer = self.scope_of(&fan_out)?;
        tracing::debug!(execution = %self.execution.id, fan_out = %fan_out, total, "fan-out runs inline");
        let mut waiting = items.into_iter().enumerate();
        let mut running = FuturesUnordered::new();
        let mut completed = Vec::with_capacity(total as usize);
        let mut records = Vec::with_capacity(total as usize);
        loop {
            while running.len() < lanes.max(1) as usize {
                let Some((index, item)) = waiting.next() else { break };
                let index = u32::try_from(index).unwrap_or(u32::MAX);
                let mut scope = outer.clone();
                scope.push(ScopeEntry { index, total, item, inline: true });
                let branch = Segment {
                    status: self.status,
                    started: self.started,
                    handed_off: self.handed_off,
                    answered: self.answered,
                    inline_branch: Some(fan_out.clone()),
                    deferred: Some(Vec::new()),
                    known: self.known.clone(),
                    ..Segment::new(self.runtime, self.execution, self.workflow, scope, self.fresh)
                };
                let first =
                    StepKey { step: first_step.to_string(), scope: branch.scope.iter().map(|e| e.index).collect() };
                running.push(run_branch(branch, first));
            }
            match running.next().await {
                Some(result) => {
                    let (status, completion, deferred) = result?;
                    if status.is_ended() {
                        // A branch failed and ended the execution (seen by the whole segment).
                        self.status = status;
                    }
                    completed.extend(completion);
                    records.push(deferred);
                }
                None => break,
            }
        }
        records.retain(|branch| !branch.is_empty());
        if completed.is_empty() && records.is_empty() {
            return Ok(None);
        }
        let store = &self.runtime.store;
        let Some(all_done) = store.record_branches(&self.execution.id, &fan_out, total, &records, &completed).await?
        else {
            return Err(RunError::Retryable(format!(
                "a step of an inline branch of fan-out `{fan_out}` was recorded first by another delivery"
            )));
        };
        for attempt in records.into_iter().flatten() {
            self.known.insert(attempt.step.clone(), attempt);
        }
        self.scope = outer;
        if completed.is_empty() {
            return Ok(None);
        }
        Ok(Some(Event::BranchesCounted { fan_out, total, all_done }))
    }

    fn branch_message(&self, first_step: &str, outer: &[ScopeEntry], entry: ScopeEntry) -> Outgoing {
        let mut scope = outer.to_vec();
        scope.push(entry);
        let message = StepMessage { scope, repair: self.repair, ..StepMessage::first(&self.execution.id, first_step) };
        Outgoing { body: message.to_json(), delay: std::time::Duration::ZERO }
    }
}

/// Runs one inline branch to its end (or to where it must wait): its status, its completion
/// if it got there, and the attempts it recorded that are still to be written.
async fn run_branch(mut branch: Segment<'_>, first: StepKey) -> Result<BranchEnd, RunError> {
    branch.run(Pending::Entry(Entry::Run { key: first, attempt: 1 })).await?;
    Ok((branch.status, branch.completion.take(), branch.deferred.take().unwrap_or_default()))
}

type BranchEnd = (ExecutionStatus, Option<(u32, Value)>, Vec<StepAttempt>);

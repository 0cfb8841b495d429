//! Workers: what happens to one message, from its parsed event to its
//! disposition on the queue (the pool of worker tasks that run them is
//! `pool.rs`).
//!
//! Per message: parse -> (the batch's EC2 lookup) -> hook ownership ->
//! verification -> protection -> reap (backup, delete) -> lifecycle
//! completion -> settle. Failures end as [`error_policy`] decides.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;

use super::{backoff, Verdict};
use super::{Checked, Disposition, Handled, Pipeline, PlacementStates, Probe, Source};
use crate::act::{Outcome, Plan, ReapError, Reaper, Request, RequestSource, Target};
use crate::config::OtherEvents;
use crate::core::error::{error_policy, Classify, ErrorDisposition};
use crate::core::event::{self, Event, LifecycleAction, Termination};
use crate::core::placement::Placement;
use crate::core::verify::{self, Verification};
use crate::ports::{PlacementError, ReceivedMessage, Regional};
use crate::telemetry::events::{self, LifecycleCall, MessageKind, Refusal};

mod report;
mod route;
use report::Seen;

/// A received message, its parsed event and (for a termination) its
/// verification.
pub(super) type Prepared = (
    ReceivedMessage,
    Result<Event, event::ParseError>,
    Option<Verdict>,
);

/// One termination being worked, and where it came from.
struct Work<'a> {
    source: &'a Source,
    msg: &'a ReceivedMessage,
    t: &'a Termination,
    /// Where the instance lives (account and region).
    placement: Placement,
}

/// The account and region of a termination's instance.
fn placement_of(t: &Termination, source: &Source) -> Placement {
    Placement::of_event(t.account.as_deref(), t.region.as_deref(), &source.region)
}

impl Pipeline {
    /// Decides and acts on a batch of messages from `source` and returns each
    /// with its [`Disposition`], without settling anything on the queue: the
    /// caller deletes, dead-letters or retries. At most `workers` messages are
    /// worked at once. This is the whole per-message path (parse, verify,
    /// protect, resolve, back up, delete, complete) for callers that receive
    /// messages themselves, such as the Lambda handler.
    pub async fn process_batch(
        &self,
        source: &Source,
        messages: Vec<ReceivedMessage>,
    ) -> Vec<(ReceivedMessage, Disposition)> {
        use futures::StreamExt;
        let batch = self.prepare_batch(source, messages).await;
        futures::stream::iter(batch)
            .map(|(msg, event, verdict)| async move {
                let disposition = self.handle(source, &msg, event, verdict).await;
                (msg, disposition)
            })
            .buffered(self.settings.workers.max(1))
            .collect()
            .await
    }

    /// Parses a batch and verifies its terminations where each instance
    /// lives: one EC2 call per account and region in the batch.
    pub(super) async fn prepare_batch(
        &self,
        source: &Source,
        messages: Vec<ReceivedMessage>,
    ) -> Vec<Prepared> {
        let parsed = self.parse_batch(source, messages);
        let checked = self.verify_batch(source, &parsed).await;
        parsed
            .into_iter()
            .map(|(msg, event)| {
                let verdict = match &event {
                    Ok(Event::Termination(t)) => {
                        checked.get(&placement_of(t, source)).map(|r| match r {
                            Ok((regional, states)) => Ok(Checked {
                                regional: regional.clone(),
                                info: states.get(t.instance_id.as_str()).cloned(),
                            }),
                            Err(e) => Err(e.clone()),
                        })
                    }
                    _ => None,
                };
                (msg, event, verdict)
            })
            .collect()
    }

    /// Parses each message, counting its kind and its time in the queue.
    fn parse_batch(
        &self,
        source: &Source,
        messages: Vec<ReceivedMessage>,
    ) -> Vec<(ReceivedMessage, Result<Event, event::ParseError>)> {
        let queue_name = source.queue.name();
        let opts = self.parse_options();
        messages
            .into_iter()
            .map(|msg| {
                let lag = msg
                    .sent_at
                    .map(|sent| (Utc::now() - sent).to_std().unwrap_or_default());
                let event = event::parse(&msg.body, &opts);
                let kind = match &event {
                    Ok(Event::Termination(_)) => MessageKind::Termination,
                    Ok(Event::Test { .. }) => MessageKind::Test,
                    Ok(Event::Other { .. }) => MessageKind::Other,
                    Err(_) => MessageKind::Unparseable,
                };
                events::message_received(queue_name, kind, lag);
                (msg, event)
            })
            .collect()
    }

    /// Asks EC2 about the batch's terminations (of hooks nodereaper owns),
    /// once per account and region.
    async fn verify_batch(
        &self,
        source: &Source,
        parsed: &[(ReceivedMessage, Result<Event, event::ParseError>)],
    ) -> HashMap<Placement, PlacementStates> {
        let mut groups: BTreeMap<Placement, Vec<String>> = BTreeMap::new();
        for (_, event) in parsed {
            if let Ok(Event::Termination(t)) = event {
                if self.owns_hook(t) {
                    groups
                        .entry(placement_of(t, source))
                        .or_default()
                        .push(t.instance_id.to_string());
                }
            }
        }
        let mut checked = HashMap::new();
        for (placement, ids) in groups {
            let result = async {
                let regional = source.fleet.regional(&placement).await?;
                let states = if self.settings.verify_instance_state {
                    regional.inventory.describe(&ids).await?
                } else {
                    HashMap::new()
                };
                Ok::<_, PlacementError>((regional, states))
            }
            .await
            .map_err(Arc::new);
            match &result {
                Ok(_) => self.breaker.placement_ok(&placement),
                Err(e) if !matches!(**e, PlacementError::UnknownAccount { .. }) => {
                    self.breaker.placement_failed(&placement, &e.to_string());
                }
                Err(_) => {}
            }
            checked.insert(placement, result);
        }
        checked
    }

    /// Whether nodereaper owns this lifecycle hook (`pipeline.lifecycle_hooks`).
    fn owns_hook(&self, t: &Termination) -> bool {
        t.lifecycle.as_ref().is_none_or(|a| {
            self.settings
                .lifecycle_hooks
                .iter()
                .any(|h| h == &a.hook_name)
        })
    }

    /// A failure, disposed of as [`error_policy`] says; the breaker hears of
    /// it: a hold opens it at once on `probe`, a retry counts toward it.
    fn fail<E: Classify + ?Sized>(&self, error: &E, text: String, probe: Probe) -> Disposition {
        let decided = error_policy(error, text);
        match &decided {
            ErrorDisposition::Hold { error } => {
                tracing::error!(%error, ?probe, "nodereaper cannot work (credentials, permissions, journal or storm brake); holding messages");
                self.breaker.trip_on(probe, error);
            }
            ErrorDisposition::Retry { error } => self.breaker.record_failure_of(probe, error),
            ErrorDisposition::DeadLetter { .. } => {}
        }
        decided.into()
    }

    /// Decides and acts on one message. Never touches the message itself.
    pub async fn handle(
        &self,
        source: &Source,
        msg: &ReceivedMessage,
        event: Result<Event, event::ParseError>,
        verdict: Option<Verdict>,
    ) -> Disposition {
        let termination = match self.termination_of(source, msg, event) {
            Ok(t) => t,
            Err(done) => return done,
        };
        let started = Instant::now();
        let work = Work {
            source,
            msg,
            t: &termination,
            placement: placement_of(&termination, source),
        };
        let mut seen = Seen::default();
        let disposition = self.handle_termination(&work, verdict, &mut seen).await;
        self.log_handled(&work, &seen, &disposition, started);
        disposition
    }

    /// The termination a message asks nodereaper to act on, or how the
    /// message ends without one: unparseable, a test notification, another
    /// event, or a lifecycle action of a hook nodereaper does not own.
    fn termination_of(
        &self,
        source: &Source,
        msg: &ReceivedMessage,
        event: Result<Event, event::ParseError>,
    ) -> Result<Termination, Disposition> {
        let event = event.map_err(|e| {
            tracing::warn!(queue = %source.queue.name(), message_id = %msg.message_id, error = %e, "unparseable message");
            Disposition::DeadLetter {
                reason: format!("unparseable message: {e}"),
            }
        })?;
        let termination = match event {
            Event::Test { description } => {
                tracing::info!(message_id = %msg.message_id, %description, "test notification acknowledged");
                return Err(Disposition::Delete {
                    outcome: Handled::TestNotification,
                });
            }
            Event::Other { description } => {
                tracing::info!(message_id = %msg.message_id, %description, "event needs no action");
                return Err(match self.settings.other_events {
                    OtherEvents::Delete => Disposition::Delete {
                        outcome: Handled::NoAction,
                    },
                    OtherEvents::DeadLetter => Disposition::DeadLetter {
                        reason: format!("not a termination: {description}"),
                    },
                });
            }
            Event::Termination(t) => t,
        };
        if !self.owns_hook(&termination) {
            let hook = termination
                .lifecycle
                .as_ref()
                .map_or("", |a| a.hook_name.as_str());
            tracing::info!(
                message_id = %msg.message_id,
                instance_id = %termination.instance_id,
                hook,
                "lifecycle action of a hook nodereaper does not own (pipeline.lifecycle_hooks): not completed, Chef left alone"
            );
            events::refused(Refusal::ForeignHook);
            return Err(Disposition::Delete {
                outcome: Handled::ForeignHook,
            });
        }
        Ok(termination)
    }

    /// Verified -> routed -> gone for sure -> reaped -> lifecycle action
    /// completed. `seen` receives the target and what was (or would be)
    /// deleted, for the log line.
    async fn handle_termination(
        &self,
        work: &Work<'_>,
        verdict: Option<Verdict>,
        seen: &mut Seen,
    ) -> Disposition {
        let checked = match self.checked(work, verdict) {
            Ok(checked) => checked,
            Err(done) => return done,
        };
        let reaper = match self.route(work, &checked).await {
            Ok((target, reaper)) => {
                seen.target = Some(target);
                reaper
            }
            Err(done) => return done,
        };
        let outcome = match self.act_on(work, &checked, &reaper, &mut seen.plan).await {
            Ok(outcome) => outcome,
            Err(done) => return done,
        };
        if let Some(action) = &work.t.lifecycle {
            if let Err(done) = self
                .complete_lifecycle(work, &checked.regional, action)
                .await
            {
                return done;
            }
        }
        Disposition::Delete { outcome }
    }

    /// What EC2 said about the instance, or how the message ends when it
    /// could not be asked.
    fn checked(&self, work: &Work<'_>, verdict: Option<Verdict>) -> Result<Checked, Disposition> {
        match verdict {
            Some(Ok(checked)) => Ok(checked),
            Some(Err(error)) => {
                if matches!(*error, PlacementError::UnknownAccount { .. }) {
                    events::refused(Refusal::UnknownAccount);
                } else if let Some(reason) = self.breaker.unreachable(&work.placement) {
                    // Given up on: this message must not stall the others.
                    return Err(Disposition::DeadLetter {
                        reason: format!("cannot verify instance {}: {reason}", work.t.instance_id),
                    });
                }
                let text = format!(
                    "cannot verify instance {} ({}): {error}",
                    work.t.instance_id, work.placement
                );
                Err(self.fail(error.as_ref(), text, Probe::Aws(work.placement.clone())))
            }
            None => Err(Disposition::Retry {
                error: format!("instance {} was not verified", work.t.instance_id),
            }),
        }
    }

    /// Whether the instance is gone for sure (or protected), and if so the
    /// reap of its registration by `reaper` (the routed target's).
    async fn act_on(
        &self,
        work: &Work<'_>,
        checked: &Checked,
        reaper: &Reaper,
        plan: &mut Option<Plan>,
    ) -> Result<Handled, Disposition> {
        let verification = if self.settings.verify_instance_state {
            verify::verify(checked.info.as_ref(), &reaper.protection)
        } else {
            Verification::Confirmed {
                evidence: "verification disabled".into(),
            }
        };
        match verification {
            Verification::Refused { reason } => {
                events::refused(Refusal::InstanceAlive);
                Err(Disposition::DeadLetter {
                    reason: format!("{reason} ({})", work.placement),
                })
            }
            Verification::Protected { reason } => {
                tracing::info!(instance_id = %work.t.instance_id, %reason, "instance protected; Chef left alone");
                events::refused(Refusal::InstanceTag);
                Ok(Handled::Protected)
            }
            Verification::Confirmed { evidence } => {
                self.reap(work, &checked.regional, reaper, &evidence, plan)
                    .await
            }
        }
    }

    /// Deregisters the instance, confirmed gone by `evidence`.
    async fn reap(
        &self,
        work: &Work<'_>,
        regional: &Regional,
        reaper: &Reaper,
        evidence: &str,
        plan: &mut Option<Plan>,
    ) -> Result<Handled, Disposition> {
        let t = work.t;
        let request = Request {
            target: Target::Instance(t.instance_id.clone()),
            source: RequestSource::Event,
            reason: format!(
                "{:?} event for {} ({evidence}; {})",
                t.origin, t.instance_id, work.placement
            ),
            message_id: Some(work.msg.message_id.clone()),
            dry_run: self.settings.dry_run,
            recheck: None,
            // Where EC2 was asked, the account as the fleet identified it.
            verified_region: Some(regional.placement.clone()),
            group: t.auto_scaling_group.clone(),
        };
        let outcome = self
            .reap_with_keepalive(work, regional, reaper, &request)
            .await
            .map_err(|e| self.fail(&e, e.to_string(), Probe::after(&e)))?;
        self.breaker.record_success();
        *plan = outcome_plan(&outcome).cloned();
        match outcome {
            Outcome::WouldDelete { plan } => {
                tracing::info!(
                    instance_id = %t.instance_id,
                    node = %plan.node_name,
                    client = %plan.client_name,
                    "dry run: would back up and delete node and client{}, then delete the message",
                    if t.lifecycle.is_some() { ", complete the lifecycle action with CONTINUE" } else { "" }
                );
                Ok(Handled::WouldDelete)
            }
            // Not this instance's registration, or no longer the one read:
            // refuse, keep the evidence, never complete the hook.
            Outcome::Refused { reason, .. } | Outcome::Changed { reason, .. } => {
                Err(Disposition::DeadLetter { reason })
            }
            Outcome::Protected { .. } => Ok(Handled::Protected),
            Outcome::AlreadyGone { .. } => {
                self.resume_estate(work, regional, reaper).await?;
                Ok(Handled::AlreadyGone)
            }
            Outcome::Deleted { .. } => Ok(Handled::Deleted),
        }
    }

    /// A redelivered message whose registration is gone: an earlier
    /// delivery may have deleted it and then failed in an estate target
    /// (chef-vault, webhook, Automate); those run again from that delivery's
    /// journal entry. A first delivery (a duplicate notification, say) finds
    /// no such entry worth re-running, so it is not asked.
    async fn resume_estate(
        &self,
        work: &Work<'_>,
        regional: &Regional,
        reaper: &Reaper,
    ) -> Result<(), Disposition> {
        let (Some(since), false) = (work.msg.sent_at, self.settings.dry_run) else {
            return Ok(());
        };
        if work.msg.receive_count < 2 {
            return Ok(());
        }
        match reaper
            .resume_estate(&work.t.instance_id, since, Some(&regional.placement))
            .await
        {
            Ok(true) => {
                tracing::info!(instance_id = %work.t.instance_id, "estate targets run again for a deletion of an earlier delivery");
                Ok(())
            }
            Ok(false) => Ok(()),
            Err(e) => Err(self.fail(&e, e.to_string(), Probe::after(&e))),
        }
    }

    /// Completes the lifecycle action with CONTINUE (not in a dry run):
    /// Chef is clean, the instance may go.
    async fn complete_lifecycle(
        &self,
        work: &Work<'_>,
        regional: &Regional,
        action: &LifecycleAction,
    ) -> Result<(), Disposition> {
        if self.settings.dry_run {
            return Ok(());
        }
        match regional.lifecycle.complete_continue(action).await {
            Ok(c) => {
                events::lifecycle_call(LifecycleCall::Complete, Some(c));
                Ok(())
            }
            Err(e) => {
                events::lifecycle_call(LifecycleCall::Complete, None);
                // Chef is clean already; retrying only repeats the completion.
                Err(self.fail(&e, e.to_string(), Probe::Aws(work.placement.clone())))
            }
        }
    }

    /// Runs the reap while keeping the message hidden and the lifecycle
    /// action alive (heartbeat) if it takes long (rate cap, slow server).
    async fn reap_with_keepalive(
        &self,
        work: &Work<'_>,
        regional: &Regional,
        reaper: &Reaper,
        request: &Request,
    ) -> Result<Outcome, ReapError> {
        let every = self.settings.lifecycle_heartbeat_interval;
        let reap = reaper.reap(request);
        tokio::pin!(reap);
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        loop {
            tokio::select! {
                result = &mut reap => return result,
                _ = tick.tick() => {
                    if !self.settings.dry_run {
                        self.keep_alive(work, regional, every).await;
                    }
                }
            }
        }
    }

    /// Extends the message's visibility and heartbeats its lifecycle action.
    async fn keep_alive(&self, work: &Work<'_>, regional: &Regional, every: Duration) {
        let msg = work.msg;
        if let Err(e) = work.source.queue.extend_visibility(msg, every * 2).await {
            tracing::warn!(message_id = %msg.message_id, error = %e, "cannot extend visibility");
        }
        let Some(action) = &work.t.lifecycle else {
            return;
        };
        let result = regional.lifecycle.heartbeat(action).await;
        events::lifecycle_call(LifecycleCall::Heartbeat, result.as_ref().ok().copied());
        if let Err(e) = result {
            tracing::warn!(instance_id = %work.t.instance_id, error = %e, "lifecycle heartbeat failed");
        }
    }

    /// Applies a disposition to the message (nothing at all in dry-run).
    /// Deletes, dead-letters or delays the message as `disposition` says;
    /// false when the queue refused or failed that call (the message comes
    /// back after its visibility timeout).
    pub async fn settle(
        &self,
        source: &Source,
        msg: &ReceivedMessage,
        disposition: &Disposition,
    ) -> bool {
        let queue = source.queue.name();
        events::message_finished(queue, disposition.outcome());
        if self.settings.dry_run {
            tracing::info!(queue, message_id = %msg.message_id, ?disposition, "dry run: message left untouched");
            return true;
        }
        let result = match disposition {
            Disposition::Delete { .. } => source.queue.delete(msg).await,
            Disposition::DeadLetter { reason } => {
                tracing::warn!(queue, message_id = %msg.message_id, %reason, "moving message to the dead-letter queue");
                source.queue.dead_letter(msg, reason).await
            }
            Disposition::Retry { error } | Disposition::Hold { error } => {
                let wait = backoff(
                    msg.receive_count,
                    self.settings.retry_backoff_base,
                    self.settings.retry_backoff_max,
                );
                tracing::warn!(queue, message_id = %msg.message_id, %error, retry_in = ?wait, receive_count = msg.receive_count, "will retry");
                source.queue.extend_visibility(msg, wait).await
            }
        };
        if let Err(e) = result {
            // The message comes back after its visibility timeout and is
            // handled again; every step is idempotent.
            tracing::warn!(queue, message_id = %msg.message_id, error = %e, "cannot settle message; it will be redelivered");
            return false;
        }
        true
    }
}

/// What a reap found (for the log line), if it found anything.
fn outcome_plan(outcome: &Outcome) -> Option<&Plan> {
    match outcome {
        Outcome::WouldDelete { plan }
        | Outcome::Deleted { plan, .. }
        | Outcome::Protected { plan, .. }
        | Outcome::Refused { plan, .. }
        | Outcome::Changed { plan, .. } => Some(plan),
        Outcome::AlreadyGone { .. } => None,
    }
}

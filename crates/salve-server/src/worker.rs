//! The outbox worker: claims committed jobs, hands them to the provider, records the outcome.
//! A job found in `sending` after its lease ran out (its worker died mid-send) is reconciled
//! with the provider; when the provider cannot tell, it becomes `unknown` for staff. Never a
//! blind resend.
//!
//! On SQLite one process owns the database and runs the only worker, so every job in `sending`
//! when [`run`] starts was left by a previous process that died: they are all reconciled at
//! once (lease 0) instead of waiting out [`SENDING_LEASE_SECS`]. On PostgreSQL other instances
//! may be sending right now, so only jobs whose lease ran out are touched.

use std::collections::HashMap;
use std::time::Duration;

use salve_channels::{Channel, OutgoingMessage, ProviderError, Reconciliation};
use salve_core::PracticeId;
use salve_core::vendors::Coverage;
use salve_store::{Backend, ClaimedJob, JobOutcome, Medium, ProviderRecord};
use tokio::sync::watch;

use crate::AppState;
use crate::channels::Route;

/// A job in `sending` for longer than this belongs to a worker that died.
pub const SENDING_LEASE_SECS: i64 = 120;
/// The lease [`run`] applies once at startup: 0 on SQLite (the only worker, and it has not
/// claimed anything yet, so every job in `sending` is a dead process's), the normal lease on
/// PostgreSQL (other instances may be mid-send).
pub fn startup_lease_secs(backend: Backend) -> i64 {
    match backend {
        Backend::Sqlite => 0,
        Backend::Postgres => SENDING_LEASE_SECS,
    }
}
const BATCH: usize = 16;
/// The shortest time between two passes of the background worker.
const MIN_PASS_GAP: Duration = Duration::from_millis(20);
/// How often a message held for an expired agreement is looked at again (a renewal releases
/// it at once).
const HOLD_RECHECK_SECS: i64 = 3600;

fn retry_after(attempts: i64) -> i64 {
    salve_core::delivery::retry_delay_secs(attempts, rand::random::<f64>())
}

/// Non-urgent texts wait out the night in the patient's time zone; system messages (opt-out
/// and help confirmations, codes, after-hours replies, emergency guidance) and emails do not.
fn quiet_hours_hold(state: &AppState, job: &ClaimedJob) -> anyhow::Result<Option<i64>> {
    let Some(quiet) = state.config.quiet_hours else {
        return Ok(None);
    };
    if job.medium != Medium::Sms || job.system {
        return Ok(None);
    }
    let Ok(zone) = jiff::tz::TimeZone::get(&job.time_zone) else {
        return Ok(None);
    };
    let now = jiff::Timestamp::from_second(state.clock.now().unix_timestamp())?;
    Ok(quiet
        .release_at(now, &zone)
        .map(|at| (at.as_second() - now.as_second()).max(1)))
}

/// Once per expiry: audit it and email the practice's admins. The email names the vendor and
/// the date, nothing about patients.
async fn alert_expiry(state: &AppState, provider: &ProviderRecord, coverage: Coverage) {
    let Coverage::Expired { on } = coverage else {
        return;
    };
    match state.store.mark_expiry_alerted(provider, on).await {
        Ok(true) => {}
        Ok(false) => return,
        Err(e) => {
            tracing::error!(error = %e.detail(), "recording an agreement expiry failed");
            return;
        }
    }
    tracing::warn!(provider = %provider.id, expired_on = %on, "business associate agreement expired; messages are held");
    let vendor = provider
        .agreement
        .as_ref()
        .map(|a| a.vendor.clone())
        .unwrap_or_default();
    let admins = match state.store.practice_admins(provider.practice).await {
        Ok(admins) => admins,
        Err(e) => {
            tracing::error!(error = %e.detail(), "listing admins for an agreement expiry failed");
            return;
        }
    };
    let body = format!(
        "The Business Associate Agreement with {vendor} expired on {on}. Salve has stopped sending \
         through this provider; messages stay queued and go out once a renewed agreement is recorded \
         (Settings > Providers, or `salve admin renew-agreement`)."
    );
    if let Err(e) = crate::notify::email_staff(
        state,
        provider.practice,
        &admins,
        "Salve: a Business Associate Agreement expired",
        &body,
        &salve_core::audit::RequestContext::default(),
    )
    .await
    {
        e.log_background_failure("alerting admins of an agreement expiry");
    }
}

/// Emergency guidance that cannot go out right now: the practice's admins are told at once
/// (once per send), to call the patient. The email names no patient.
async fn alert_emergency_blocked(state: &AppState, job: &ClaimedJob, why: &str) {
    if job.purpose.as_deref() != Some(salve_store::EMERGENCY_PURPOSE) {
        return;
    }
    match state.store.mark_job_alerted(job).await {
        Ok(true) => {}
        Ok(false) => return,
        Err(e) => {
            tracing::error!(error = %e.detail(), "recording a blocked emergency reply failed");
            return;
        }
    }
    tracing::error!(job = %job.id, reason = why, "emergency guidance could not be sent; staff alerted");
    let admins = match state.store.practice_admins(job.practice).await {
        Ok(admins) => admins,
        Err(e) => {
            tracing::error!(error = %e.detail(), "listing admins for a blocked emergency reply failed");
            return;
        }
    };
    let body = format!(
        "A patient's text suggested an emergency and Salve could not send them the emergency \
         guidance ({why}). Open the inbox's urgent conversations now and call the patient: \
         {}/inbox?urgent=true",
        crate::api::portal::base_url(state)
    );
    if let Err(e) = crate::notify::email_staff(
        state,
        job.practice,
        &admins,
        "Salve: an emergency reply could not be sent",
        &body,
        &salve_core::audit::RequestContext::default(),
    )
    .await
    {
        e.log_background_failure("alerting staff of a blocked emergency reply");
    }
}

fn outgoing(job: &ClaimedJob, practice_name: &str) -> OutgoingMessage {
    OutgoingMessage {
        id: job.id.as_uuid(),
        channel: match job.medium {
            Medium::Sms => Channel::Sms,
            Medium::Email => Channel::Email,
        },
        to: job.recipient.clone(),
        subject: Some(format!("A secure message from {practice_name}")),
        body: job.body.clone(),
    }
}

async fn sender_name(state: &AppState, job: &ClaimedJob) -> String {
    state
        .store
        .messaging_settings(job.practice)
        .await
        .map(|s| s.sender_name)
        .unwrap_or_default()
}

/// Sends every due job once; returns how many were handled. Tests drive the worker with this.
pub async fn run_once(state: &AppState, worker: &str) -> anyhow::Result<usize> {
    let mut handled = reconcile_stale(state, worker).await?;
    handled += send_practice_replies(state).await?;
    handled += crate::escalation::run_once(state)
        .await
        .unwrap_or_else(|e| {
            tracing::error!(error = %e, "escalating overdue conversations failed");
            0
        });
    handled += crate::unread::run_once(state).await.unwrap_or_else(|e| {
        tracing::error!(error = %e, "following up unread secure messages failed");
        0
    });
    loop {
        let jobs = state.store.claim_outbox_jobs(worker, BATCH).await?;
        if jobs.is_empty() {
            return Ok(handled);
        }
        // Outcomes are recorded together: one durable commit per batch, not per send.
        let mut outcomes = Vec::with_capacity(jobs.len());
        // A batch's jobs mostly share a practice: its route and sender name are read once.
        let mut routes: HashMap<(PracticeId, Medium), Route> = HashMap::new();
        let mut senders: HashMap<PracticeId, String> = HashMap::new();
        for job in jobs {
            let route = match routes.get(&(job.practice, job.medium)) {
                Some(route) => route.clone(),
                None => {
                    let route = state
                        .providers
                        .route(state, job.practice, job.medium)
                        .await?;
                    routes.insert((job.practice, job.medium), route.clone());
                    route
                }
            };
            let provider = match route {
                Route::Send { provider, paced } => (provider, paced),
                Route::Hold { provider, coverage } => {
                    alert_expiry(state, &provider, coverage).await;
                    alert_emergency_blocked(state, &job, "the provider's agreement expired").await;
                    outcomes.push((
                        job,
                        JobOutcome::Held {
                            after_secs: HOLD_RECHECK_SECS,
                        },
                    ));
                    continue;
                }
            };
            let (provider, paced) = provider;
            if let Some(after_secs) = quiet_hours_hold(state, &job)? {
                outcomes.push((job, JobOutcome::Held { after_secs }));
                continue;
            }
            // The sender number's rate limit; system replies (confirmations, after-hours reply,
            // emergency guidance) are never held by it.
            if let Some(sender) = paced
                && !job.system
                && let Err(until) = state
                    .providers
                    .pace(sender, salve_core::clock::to_micros(state.clock.now()))
            {
                outcomes.push((job, JobOutcome::Paced { until }));
                continue;
            }
            let sender = match senders.get(&job.practice) {
                Some(name) => name.clone(),
                None => {
                    let name = sender_name(state, &job).await;
                    senders.insert(job.practice, name.clone());
                    name
                }
            };
            let message = outgoing(&job, &sender);
            let outcome = attempt(state, provider.as_ref(), &message, job.attempts).await;
            if !matches!(outcome, JobOutcome::Sent { .. }) {
                alert_emergency_blocked(state, &job, "the provider did not take it").await;
            }
            outcomes.push((job, outcome));
        }
        handled += outcomes.len();
        state.store.finish_outbox_jobs(&outcomes).await?;
    }
}

/// One send and what became of it: sent; retry later (the provider did not take it); failed
/// for good; or, when the answer was lost, what reconciliation says (never a blind resend).
async fn attempt(
    state: &AppState,
    provider: &dyn salve_channels::Provider,
    message: &OutgoingMessage,
    attempts: i64,
) -> JobOutcome {
    let attempt_started = state.clock.now();
    match provider.send(message).await {
        Ok(receipt) => JobOutcome::Sent {
            provider_id: receipt.provider_id,
        },
        Err(e @ ProviderError::Permanent { .. }) => JobOutcome::Failed {
            error_kind: e.kind().into(),
            // Sealed by the store: the provider's text can quote the number.
            reason: format!("{} ({})", e.detail().expose(), e.code()),
        },
        Err(e @ ProviderError::Transient { .. }) => {
            tracing::warn!(
                provider = provider.name(),
                error = e.kind(),
                code = e.code(),
                "send failed, will retry"
            );
            // The provider did not take it: trying again is not a duplicate.
            JobOutcome::Retry {
                error_kind: e.kind().into(),
                after_secs: retry_after(attempts),
            }
        }
        Err(e @ ProviderError::Ambiguous { .. }) => {
            tracing::warn!(
                provider = provider.name(),
                error = e.kind(),
                code = e.code(),
                "send outcome unknown"
            );
            // Whether the provider took it is unknown: ask before trying again.
            match provider.reconcile(message, Some(attempt_started)).await {
                Reconciliation::Sent(receipt) => JobOutcome::Sent {
                    provider_id: receipt.provider_id,
                },
                Reconciliation::NotSent => JobOutcome::Retry {
                    error_kind: e.kind().into(),
                    after_secs: retry_after(attempts),
                },
                Reconciliation::CannotTell => JobOutcome::Unknown {
                    reason:
                        "the provider did not answer and cannot say whether it sent the message"
                            .into(),
                },
            }
        }
    }
}

/// Replies to numbers that belong to no patient (an unknown sender's opt-out confirmation):
/// the same attempt, pacing and agreement rules as patients' jobs. System replies are never
/// held by quiet hours.
async fn send_practice_replies(state: &AppState) -> anyhow::Result<usize> {
    state
        .store
        .abandon_stale_practice_replies(SENDING_LEASE_SECS)
        .await?;
    let replies = state.store.claim_practice_replies(BATCH).await?;
    for reply in &replies {
        let outcome = match state
            .providers
            .route(state, reply.practice, Medium::Sms)
            .await?
        {
            Route::Hold { provider, coverage } => {
                alert_expiry(state, &provider, coverage).await;
                JobOutcome::Held {
                    after_secs: HOLD_RECHECK_SECS,
                }
            }
            // Replies to unknown senders are system replies: never paced.
            Route::Send { provider, .. } => {
                let message = OutgoingMessage {
                    id: reply.id.parse().unwrap_or_else(|_| uuid::Uuid::now_v7()),
                    channel: Channel::Sms,
                    to: reply.recipient.clone(),
                    subject: None,
                    body: reply.body.clone(),
                };
                attempt(state, provider.as_ref(), &message, reply.attempts).await
            }
        };
        state.store.finish_practice_reply(reply, &outcome).await?;
    }
    Ok(replies.len())
}

/// Reconciles the jobs a dead worker left in `sending` before this process claims any: on
/// SQLite all of them (see [`startup_lease_secs`]). Pages until a pass finds nothing more.
pub async fn reconcile_at_startup(state: &AppState) -> anyhow::Result<usize> {
    let lease = startup_lease_secs(state.store.backend());
    let worker = format!("startup-{}", uuid::Uuid::new_v4());
    let mut total = 0;
    loop {
        let n = reconcile_stale_with_lease(state, &worker, lease).await?;
        if n == 0 {
            return Ok(total);
        }
        total += n;
    }
}

async fn reconcile_stale(state: &AppState, worker: &str) -> anyhow::Result<usize> {
    reconcile_stale_with_lease(state, worker, SENDING_LEASE_SECS).await
}

async fn reconcile_stale_with_lease(
    state: &AppState,
    worker: &str,
    lease_secs: i64,
) -> anyhow::Result<usize> {
    let stale = state.store.stale_outbox_jobs(worker, lease_secs).await?;
    // Only jobs acted on count: a held one would make the startup loop spin.
    let mut count = 0;
    for job in stale {
        // Asking a provider whose agreement lapsed would hand it patient data: the job waits
        // in `sending` for the renewal.
        let Route::Send { provider, .. } = state
            .providers
            .route(state, job.practice, job.medium)
            .await?
        else {
            continue;
        };
        count += 1;
        let message = outgoing(&job, &sender_name(state, &job).await);
        // When the dead worker's attempt started is not recorded: the provider only says
        // Sent or NotSent when that does not matter.
        match provider.reconcile(&message, None).await {
            Reconciliation::Sent(receipt) => {
                state
                    .store
                    .finish_outbox_job(
                        &job,
                        &JobOutcome::Sent {
                            provider_id: receipt.provider_id,
                        },
                    )
                    .await?
            }
            Reconciliation::NotSent => state.store.requeue_outbox_job(&job).await?,
            Reconciliation::CannotTell => {
                state
                    .store
                    .finish_outbox_job(
                        &job,
                        &JobOutcome::Unknown {
                            reason: "Salve stopped while sending and the provider cannot say whether the message went out; check with the patient before sending again".into(),
                        },
                    )
                    .await?
            }
        }
    }
    Ok(count)
}

/// One pass of everything the server does in the background: reminders due now are decided
/// and queued, due announcements queue their next batch, then the outbox (with escalations
/// and unread follow-ups) sends. Errors are logged; the next pass tries again.
pub async fn background_pass(state: &AppState, worker: &str) {
    if state.reminders_due_for_a_pass()
        && let Err(e) = crate::reminders::run_once(state).await
    {
        tracing::error!(error = %e, "reminder pass failed");
    }
    if let Err(e) = crate::announcements::run_once(state).await {
        tracing::error!(error = %e, "announcement pass failed");
    }
    if let Err(e) = run_once(state, worker).await {
        tracing::error!(error = %e, "outbox worker pass failed");
    }
    if let Err(e) = crate::ehr::run_once(state, worker).await {
        tracing::error!(error = %e, "EHR write pass failed");
    }
}

/// Runs the worker until `stop` turns true: on every local inbox change and every `period`.
pub async fn run(state: AppState, period: Duration, mut stop: watch::Receiver<bool>) {
    let worker = format!("worker-{}", uuid::Uuid::new_v4());
    let wake = state.store.inbox_wake();
    // Before the first claim, so none of this worker's own sends can be taken for a dead one's.
    match reconcile_at_startup(&state).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(
            jobs = n,
            "reconciled outbox jobs left in sending by a previous run"
        ),
        Err(e) => tracing::error!(error = %e, "reconciling outbox jobs at startup failed"),
    }
    loop {
        // Registered before the pass, so a change committed during it is not missed.
        let notified = wake.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        background_pass(&state, &worker).await;
        // Under a stream of sends every commit wakes the worker: a short pause between passes
        // lets one pass take the jobs of many sends (a notification arriving meanwhile is kept).
        tokio::select! {
            () = tokio::time::sleep(MIN_PASS_GAP) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        tokio::select! {
            () = notified => {}
            () = tokio::time::sleep(period) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

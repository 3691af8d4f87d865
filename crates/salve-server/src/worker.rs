//! The outbox worker: claims committed jobs, hands them to the provider, records the outcome.
//! A job found in `sending` after its lease ran out (its worker died mid-send) is reconciled
//! with the provider; when the provider cannot tell, it becomes `unknown` for staff. Never a
//! blind resend.
//!
//! On SQLite one process owns the database and runs the only worker, so every job in `sending`
//! when [`run`] starts was left by a previous process that died: they are all reconciled at
//! once (lease 0) instead of waiting out [`SENDING_LEASE_SECS`]. On PostgreSQL other instances
//! may be sending right now, so only jobs whose lease ran out are touched.

use std::time::Duration;

use salve_channels::{Channel, OutgoingMessage, ProviderError, Reconciliation};
use salve_store::{Backend, ClaimedJob, JobOutcome, Medium};
use tokio::sync::watch;

use crate::AppState;

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
    let mut handled = reconcile_stale(state).await?;
    loop {
        let jobs = state.store.claim_outbox_jobs(worker, BATCH).await?;
        if jobs.is_empty() {
            return Ok(handled);
        }
        // Outcomes are recorded together: one durable commit per batch, not per send.
        let mut outcomes = Vec::with_capacity(jobs.len());
        for job in jobs {
            let message = outgoing(&job, &sender_name(state, &job).await);
            let attempt_started = state.clock.now();
            let outcome = match state.provider.send(&message).await {
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
                        provider = state.provider.name(),
                        error = e.kind(),
                        code = e.code(),
                        "send failed, will retry"
                    );
                    // The provider did not take it: trying again is not a duplicate.
                    JobOutcome::Retry {
                        error_kind: e.kind().into(),
                        after_secs: 30 * job.attempts.max(1),
                    }
                }
                Err(e @ ProviderError::Ambiguous { .. }) => {
                    tracing::warn!(
                        provider = state.provider.name(),
                        error = e.kind(),
                        code = e.code(),
                        "send outcome unknown"
                    );
                    // Whether the provider took it is unknown: ask before trying again.
                    match state
                        .provider
                        .reconcile(&message, Some(attempt_started))
                        .await
                    {
                        Reconciliation::Sent(receipt) => JobOutcome::Sent {
                            provider_id: receipt.provider_id,
                        },
                        Reconciliation::NotSent => JobOutcome::Retry {
                            error_kind: e.kind().into(),
                            after_secs: 30 * job.attempts.max(1),
                        },
                        Reconciliation::CannotTell => JobOutcome::Unknown {
                            reason: "the provider did not answer and cannot say whether it sent the message".into(),
                        },
                    }
                }
            };
            outcomes.push((job, outcome));
        }
        handled += outcomes.len();
        state.store.finish_outbox_jobs(&outcomes).await?;
    }
}

/// Reconciles the jobs a dead worker left in `sending` before this process claims any: on
/// SQLite all of them (see [`startup_lease_secs`]). Pages until a pass finds nothing more.
pub async fn reconcile_at_startup(state: &AppState) -> anyhow::Result<usize> {
    let lease = startup_lease_secs(state.store.backend());
    let mut total = 0;
    loop {
        let n = reconcile_stale_with_lease(state, lease).await?;
        if n == 0 {
            return Ok(total);
        }
        total += n;
    }
}

async fn reconcile_stale(state: &AppState) -> anyhow::Result<usize> {
    reconcile_stale_with_lease(state, SENDING_LEASE_SECS).await
}

async fn reconcile_stale_with_lease(state: &AppState, lease_secs: i64) -> anyhow::Result<usize> {
    let stale = state.store.stale_outbox_jobs(lease_secs).await?;
    let count = stale.len();
    for job in stale {
        let message = outgoing(&job, &sender_name(state, &job).await);
        // When the dead worker's attempt started is not recorded: the provider only says
        // Sent or NotSent when that does not matter.
        match state.provider.reconcile(&message, None).await {
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
        if let Err(e) = run_once(&state, &worker).await {
            tracing::error!(error = %e, "outbox worker pass failed");
        }
        tokio::select! {
            () = notified => {}
            () = tokio::time::sleep(period) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

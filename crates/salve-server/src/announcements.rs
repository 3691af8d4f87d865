//! The worker's announcement step: starts announcements whose time has come (their recipients
//! are chosen then, by consent and filter) and queues one batch of recipients per pass, each
//! with its own message and outbox job. The outbox worker then sends them with the per-number
//! rate limit and quiet hours, and re-checks consent when it claims each job.

use salve_core::announcements::HoldReason;
use salve_core::consent::{ConsentPurpose, ConsentState};
use salve_core::outgoing::{self, Draft, PatientFacts};
use salve_core::routing::Delivery;
use salve_core::templates::{self, TemplateValues, Variable};
use salve_store::{Announcement, OutboundPlan, SendFacts};

use crate::AppState;

/// Recipients queued per announcement per pass (each in its own transaction), so the outbox
/// starts sending while the rest are queued.
pub const BATCH: usize = 100;
/// Announcements looked at per pass.
const DUE_PER_PASS: usize = 8;

/// The text for one patient: the same text for everyone unless it uses variables.
fn render(
    announcement: &Announcement,
    facts: &SendFacts,
    portal_link: &str,
) -> Option<(String, Vec<salve_core::policy::FilledValue>)> {
    let text = announcement.text.expose();
    let parsed = templates::parse(text).ok()?;
    if parsed.variables().is_empty() {
        return Some((text.clone(), Vec::new()));
    }
    let mut values = TemplateValues::new();
    values
        .set(
            Variable::PatientFirstName,
            facts.patient.record.given_name.expose().clone(),
        )
        .set(Variable::PracticeName, facts.settings.sender_name.clone())
        .set(
            Variable::PracticeSenderName,
            facts.settings.sender_name.clone(),
        )
        .set(Variable::PracticePhone, facts.settings.phone.clone())
        .set(Variable::PracticePortalLink, portal_link.to_owned());
    let out = parsed.render(&values).ok()?;
    Some((out.text, out.filled))
}

/// Routes one patient's announcement: a direct text, or a secure message with its
/// notification; or why they get nothing.
pub(crate) fn plan_one(
    announcement: &Announcement,
    facts: &SendFacts,
    base: &str,
) -> Result<OutboundPlan, HoldReason> {
    let consent = ConsentState::from_history(&facts.consent);
    // Checked here too, not only by routing: the portal alone is no reason to write to them.
    if !salve_core::announcements::consented(&consent) {
        return Err(if salve_core::announcements::withdrawn(&consent) {
            HoldReason::OptedOutDuringSend
        } else {
            HoldReason::NoConsent
        });
    }
    // A text that cannot be rendered (the store only holds checked ones) reaches nobody.
    let (text, filled) =
        render(announcement, facts, &format!("{base}/portal")).ok_or(HoldReason::NoConsent)?;
    let plan = outgoing::plan_staff_message(
        &Draft {
            text: &text,
            has_attachment: false,
            filled,
            force_secure: false,
            purpose: ConsentPurpose::Announcements,
            kind: None,
        },
        &PatientFacts {
            consent: &facts.consent,
            confidential: &facts.confidential,
            contacts: &facts.patient.record.contacts,
            sender_name: &facts.settings.sender_name,
        },
    );
    match plan.routing.delivery {
        Delivery::DirectSms { .. } | Delivery::SecureWithNotification { .. } => {
            crate::outbound::store_plan(
                &plan,
                ConsentPurpose::Announcements,
                facts,
                &text,
                base,
                None,
            )
            .map_err(|_| HoldReason::NoContactPoint)
        }
        Delivery::PortalOnly { reason } => Err(HoldReason::from_wait(reason, &consent)),
        Delivery::SystemSend { .. } | Delivery::Withheld { .. } => Err(HoldReason::NoConsent),
    }
}

/// One pass: starts due announcements and queues a batch of each one's recipients. Returns
/// how many recipients were recorded (queued or held back); tests drive it with this.
pub async fn run_once(state: &AppState) -> anyhow::Result<usize> {
    let base = crate::api::portal::base_url(state);
    let mut recorded = 0;
    for (practice, id) in state.store.due_announcements(DUE_PER_PASS).await? {
        // A no-op when it is already sending (started by an earlier pass or another instance).
        state.store.start_announcement(practice, id).await?;
        let batch = state
            .store
            .enqueue_announcement_batch(practice, id, BATCH, |a, facts| plan_one(a, facts, &base))
            .await?;
        if batch.finished {
            tracing::info!(announcement = %id, "announcement: every recipient recorded");
        }
        recorded += batch.queued + batch.held_back;
    }
    Ok(recorded)
}

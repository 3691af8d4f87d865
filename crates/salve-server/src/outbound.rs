//! From a routing plan to what the store writes: the message row and, for a send, its outbox
//! job (a direct text, or a secure message's content-free notification with its link). Shared
//! by staff messages, reminders and announcements.

use salve_core::Sensitive;
use salve_core::consent::{ConsentPurpose, Medium as ConsentMedium};
use salve_core::outgoing::Plan;
use salve_core::routing::Delivery;
use salve_core::system_messages::{self, Extra, Language, SystemMessageKind};
use salve_store::{
    Medium, MessageChannel, MessageStatus, NewJob, OutboundPlan, PlanRefused, SendFacts,
};

/// A notification's secure link lives as long as any other secure link.
const NOTIFICATION_LINK_TTL_SECS: i64 = salve_core::links::DEFAULT_LINK_TTL.whole_seconds();

/// Turns a plan into what the store writes: the message row and, for a send, its outbox job.
pub(crate) fn store_plan(
    plan: &Plan,
    purpose: ConsentPurpose,
    facts: &SendFacts,
    text: &str,
    base: &str,
    expires_at: Option<i64>,
) -> Result<OutboundPlan, PlanRefused> {
    let decision_json = serde_json::to_string(&plan.decision).ok();
    let consent_channel = plan.consent_channel().map(|c| c.as_str().to_owned());
    let purpose = Some(purpose.as_str().to_owned());
    let common = |channel, status, job, reason: Option<String>| OutboundPlan {
        direction: salve_store::Direction::Outbound,
        body: Sensitive::new(text.to_owned()),
        kind: plan.kind,
        channel,
        route: Some(plan.decision.route),
        decision_json: decision_json.clone(),
        delivery: plan.delivery.to_owned(),
        status,
        status_reason: reason,
        legal_basis: plan.routing.delivery.basis(),
        job,
    };
    Ok(match &plan.routing.delivery {
        Delivery::DirectSms { to, basis } => common(
            MessageChannel::Sms,
            MessageStatus::Queued,
            Some(NewJob {
                medium: Medium::Sms,
                recipient: to.value.clone(),
                body: Sensitive::new(text.to_owned()),
                purpose,
                consent_channel,
                legal_basis: Some(*basis),
                secure_link: None,
                expires_at,
            }),
            None,
        ),
        Delivery::SecureWithNotification { medium, to, basis } => {
            let token = salve_crypto::token::mint("p");
            let link = format!("{base}/p/{}", token.secret.as_str());
            let lang = Language::for_tag(&facts.patient.record.preferred_language);
            let body = system_messages::render(
                SystemMessageKind::SecureMessageNotification,
                lang,
                &facts.settings.practice_fields(),
                Extra::Link(&link),
            )
            .map_err(|e| PlanRefused(format!("the notification cannot be written: {e}")))?;
            common(
                MessageChannel::Portal,
                MessageStatus::Queued,
                Some(NewJob {
                    medium: match medium {
                        ConsentMedium::Sms => Medium::Sms,
                        ConsentMedium::Email => Medium::Email,
                    },
                    recipient: to.value.clone(),
                    body: Sensitive::new(body),
                    purpose,
                    consent_channel,
                    legal_basis: Some(*basis),
                    secure_link: Some((to.clone(), token.hash, NOTIFICATION_LINK_TTL_SECS)),
                    expires_at,
                }),
                None,
            )
        }
        Delivery::PortalOnly { reason } => common(
            MessageChannel::Portal,
            MessageStatus::Sent,
            None,
            Some(reason.staff_text().to_owned()),
        ),
        Delivery::SystemSend { .. } | Delivery::Withheld { .. } => {
            return Err(PlanRefused("not a staff message".into()));
        }
    })
}

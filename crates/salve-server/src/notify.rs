//! Notifications to staff (break-glass, account locks). They name no patient; each send, or
//! failure to send, is audited. A failed notification does not undo what it reports.

use salve_channels::{Channel, OutgoingMessage};
use salve_core::audit::{Action, Actor, AuditEvent, ChainScope, Outcome, RequestContext};
use salve_core::{PracticeId, Sensitive, UserId};

use crate::AppState;
use crate::error::ApiError;

pub async fn email_staff(
    state: &AppState,
    practice: PracticeId,
    recipients: &[UserId],
    subject: &str,
    body: &str,
    ctx: &RequestContext,
) -> Result<(), ApiError> {
    for user in recipients {
        let profile = state.store.user_profile(*user).await?;
        let message = OutgoingMessage {
            id: uuid::Uuid::now_v7(),
            channel: Channel::Email,
            to: profile.email.clone(),
            subject: Some(subject.to_owned()),
            body: Sensitive::new(body.to_owned()),
        };
        let outcome = match state.provider.send(&message).await {
            Ok(_) => Outcome::Success,
            Err(e) => {
                tracing::warn!(
                    provider = state.provider.name(),
                    error = e.kind(),
                    "staff notification failed"
                );
                Outcome::Failure
            }
        };
        state
            .store
            .record_audit(AuditEvent {
                scope: ChainScope::Practice(practice),
                actor: Actor::System,
                action: Action::NotificationSent,
                targets: vec![user.to_string(), message.id.to_string()],
                outcome,
                context: ctx.clone(),
            })
            .await?;
    }
    Ok(())
}

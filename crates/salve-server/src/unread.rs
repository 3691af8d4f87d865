//! The unread-secure-message step of the worker: a patient who has not opened a secure message
//! gets one reminder after the practice's delay (default 3 days), with a fresh link (the old
//! one revoked) in the same content-free notification text; if it is still unread the same
//! delay later, the practice admins get one content-free email. The rule is salve-core's
//! ([`salve_core::unread::follow_up`]); the store records each step once.

use salve_core::Sensitive;
use salve_core::audit::RequestContext;
use salve_core::system_messages::{self, Extra, Language, SystemMessageKind};
use salve_core::unread::{FollowUp, whole_days};
use salve_store::UnreadSecureMessage;

use crate::AppState;
use crate::api::portal::base_url;

pub const SUBJECT: &str = "Salve: a patient has not opened a secure message";

/// A reminder's link lives as long as any other secure link.
const LINK_TTL_SECS: i64 = salve_core::links::DEFAULT_LINK_TTL.whole_seconds();

/// The staff email: no patient name, no message text, no ids.
pub fn email_body(base_url: &str, days: i64) -> String {
    let days = if days == 1 {
        "1 day".to_owned()
    } else {
        format!("{days} days")
    };
    format!(
        "A patient has not opened a secure message sent {days} ago. Open the inbox: {base_url}/inbox"
    )
}

/// Handles every unread secure message whose reminder or staff alert is due; returns how many
/// reminders and alerts this call recorded.
pub async fn run_once(state: &AppState) -> anyhow::Result<usize> {
    let due = state.store.unread_secure_messages_due().await?;
    let mut handled = 0;
    for item in due {
        let done = match item.due {
            FollowUp::SendReminder => remind(state, &item).await,
            FollowUp::AlertStaff => alert(state, &item).await,
            FollowUp::Nothing => Ok(false),
        };
        match done {
            Ok(true) => handled += 1,
            Ok(false) => {}
            // One message's trouble (a shredded patient, a template error) stops only itself.
            Err(e) => tracing::error!(error = %e, "following up an unread secure message failed"),
        }
    }
    Ok(handled)
}

async fn remind(state: &AppState, item: &UnreadSecureMessage) -> anyhow::Result<bool> {
    let language = state.store.unread_reminder_language(item).await?;
    let settings = state.store.messaging_settings(item.practice).await?;
    let token = salve_crypto::token::mint("p");
    let link = format!("{}/p/{}", base_url(state), token.secret.as_str());
    let body = system_messages::render(
        SystemMessageKind::SecureMessageNotification,
        Language::for_tag(&language),
        &settings.practice_fields(),
        Extra::Link(&link),
    )
    .map_err(|e| anyhow::anyhow!("the reminder cannot be written: {e}"))?;
    Ok(state
        .store
        .remind_unread(item, &token.hash, &Sensitive::new(body), LINK_TTL_SECS)
        .await?)
}

async fn alert(state: &AppState, item: &UnreadSecureMessage) -> anyhow::Result<bool> {
    let Some(recipients) = state.store.record_unread_alert(item).await? else {
        return Ok(false);
    };
    if !recipients.is_empty() {
        let now = salve_core::clock::to_micros(state.clock.now());
        let body = email_body(&base_url(state), whole_days(item.sent_at, now));
        if let Err(e) = crate::notify::email_staff(
            state,
            item.practice,
            &recipients,
            SUBJECT,
            &body,
            &RequestContext::default(),
        )
        .await
        {
            e.log_background_failure("emailing an unread secure message alert");
        }
    }
    Ok(true)
}

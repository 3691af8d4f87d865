//! The escalation step of the worker: a conversation waiting longer than the practice's
//! response target (business time) is escalated once per waiting episode: the escalation row
//! (unique per episode, so a second run or a second instance escalates nothing again) flags it
//! in the inbox, and the practice's chosen people get a content-free email.

use salve_core::audit::RequestContext;

use crate::AppState;
use crate::api::portal::base_url;

pub const SUBJECT: &str = "Salve: a patient conversation is overdue";

/// The email: no patient name, no message text, no conversation id.
pub fn email_body(base_url: &str) -> String {
    format!(
        "A patient conversation has waited longer than the practice's response target. \
         Open the inbox: {base_url}/inbox?overdue=true"
    )
}

/// Escalates every overdue conversation not yet escalated for its current wait; returns how
/// many were escalated by this call.
pub async fn run_once(state: &AppState) -> anyhow::Result<usize> {
    let overdue = state.store.overdue_unescalated().await?;
    let mut escalated = 0;
    for conversation in overdue {
        let Some(recipients) = state.store.record_escalation(&conversation).await? else {
            continue;
        };
        escalated += 1;
        if recipients.is_empty() {
            continue;
        }
        if let Err(e) = crate::notify::email_staff(
            state,
            conversation.practice,
            &recipients,
            SUBJECT,
            &email_body(&base_url(state)),
            &RequestContext::default(),
        )
        .await
        {
            e.log_background_failure("emailing an overdue-conversation escalation");
        }
    }
    Ok(escalated)
}

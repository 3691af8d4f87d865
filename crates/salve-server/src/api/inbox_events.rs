//! Live inbox updates over Server-Sent Events: ids and kinds only (clients fetch content through
//! the authorized endpoints), and only for conversations the reader may open. The stream does not count as activity, and it closes when its
//! session or token ends, expires or is revoked.

use std::convert::Infallible;

use axum::Extension;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::stream::{self, Stream};
use salve_core::PracticeId;
use salve_core::permissions::Principal;

use crate::AppState;
use crate::api::practice_of;
use crate::auth;
use crate::context::ClientInfo;
use crate::error::ApiError;

struct Cursor {
    state: AppState,
    principal: Principal,
    headers: HeaderMap,
    ctx: salve_core::audit::RequestContext,
    practice: PracticeId,
    after: i64,
    pending: std::collections::VecDeque<Event>,
    closes_at: tokio::time::Instant,
}

/// Whether the credentials that opened the stream are still good.
async fn still_signed_in(c: &Cursor) -> bool {
    matches!(
        auth::resolve(&c.state, &c.headers, &c.ctx).await,
        Ok(Some(_))
    )
}

/// Inbox changes as they happen: `event: change`, data `{"seq", "conversation_id", "kind"}`.
#[utoipa::path(get, path = "/api/v1/inbox/events", tag = "inbox",
    responses((status = 200, description = "text/event-stream of inbox changes (ids and kinds only)")),
    security(("bearer" = ["messages:read"]), ("session" = [])))]
pub async fn stream_changes(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(client): Extension<ClientInfo>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let practice = practice_of(&principal)?;
    let after = state.store.inbox_head().await?;
    let closes_at = tokio::time::Instant::now() + state.config.stream_max_lifetime;
    let cursor = Cursor {
        principal,
        closes_at,
        ctx: client.audit_context(),
        state,
        headers,
        practice,
        after,
        pending: Default::default(),
    };
    let events = stream::unfold(cursor, |mut c| async move {
        loop {
            if let Some(event) = c.pending.pop_front() {
                return Some((Ok(event), c));
            }
            let wake = c.state.store.inbox_wake();
            let notified = wake.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if tokio::time::Instant::now() >= c.closes_at || !still_signed_in(&c).await {
                return None;
            }
            match c.state.store.inbox_changes_since(c.practice, c.after).await {
                Ok(changes) if !changes.is_empty() => {
                    for (seq, conversation, kind) in changes {
                        c.after = seq;
                        // Minimum necessary: not even the ids of threads this reader may not
                        // open (other teams, restricted patients).
                        match c
                            .state
                            .store
                            .may_read_conversation(c.practice, &c.principal, conversation)
                            .await
                        {
                            Ok(true) => {}
                            Ok(false) => continue,
                            Err(e) => {
                                tracing::warn!(error = %e.detail(), "inbox stream check failed");
                                return None;
                            }
                        }
                        let data = serde_json::json!({
                            "seq": seq,
                            "conversation_id": conversation.as_uuid(),
                            "kind": kind,
                        });
                        c.pending.push_back(
                            Event::default()
                                .event("change")
                                .id(seq.to_string())
                                .data(data.to_string()),
                        );
                    }
                    continue;
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e.detail(), "inbox stream read failed");
                    return None;
                }
            }
            // Other instances' changes arrive through the store's PostgreSQL listener, which
            // wakes the same notifier; the timer re-checks the session.
            tokio::select! {
                () = &mut notified => {}
                () = tokio::time::sleep(c.state.config.stream_session_check) => {}
                () = tokio::time::sleep_until(c.closes_at) => {}
            }
        }
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}

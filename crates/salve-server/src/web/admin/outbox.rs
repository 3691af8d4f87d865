//! `/admin/outbox`: what the local outbox "sent" for this practice, newest first, with the
//! simulations an admin needs to play the patient's side (a reply, a delivery report).

use askama::Template;
use axum::Extension;
use axum::Json;
use axum::body::Bytes;
use axum::extract::Query;
use axum::extract::State;
use axum::extract::rejection::QueryRejection;
use axum::response::Response;
use serde::Deserialize;

use salve_core::permissions::Principal;

use super::{FormFields, frame};
use crate::AppState;
use crate::api::outbox::{self, SimulatedStatus, SimulatedText};
use crate::auth::SessionCaller;
use crate::context::ClientInfo;
use crate::error::ApiError;
use crate::extract::JsonBody;
use crate::web::Page;
use crate::web::frame::StaffFrame;

/// A piece of a sent body: text, or a link to this server.
pub(crate) struct Segment {
    pub text: String,
    pub href: Option<String>,
}

/// Splits `body` into lines of segments; only URLs under `base` (this server) become links,
/// anything else stays plain text.
pub(crate) fn linkify(body: &str, base: &str) -> Vec<Vec<Segment>> {
    let prefix = format!("{}/", base.trim_end_matches('/'));
    body.lines()
        .map(|line| {
            let mut out: Vec<Segment> = Vec::new();
            let mut plain = String::new();
            for piece in line.split_inclusive(char::is_whitespace) {
                let word = piece.trim_end();
                let trailing = &piece[word.len()..];
                let core = word.trim_end_matches(['.', ',', ';', ':', '!', '?', ')', '"', '\'']);
                let is_ours = core.starts_with(&prefix)
                    && core.len() > prefix.len()
                    && !core
                        .chars()
                        .any(|c| c.is_control() || c == '<' || c == '>' || c == '"');
                if is_ours {
                    if !plain.is_empty() {
                        out.push(Segment {
                            text: std::mem::take(&mut plain),
                            href: None,
                        });
                    }
                    out.push(Segment {
                        text: core.to_owned(),
                        href: Some(core.to_owned()),
                    });
                    plain.push_str(&word[core.len()..]);
                    plain.push_str(trailing);
                } else {
                    plain.push_str(piece);
                }
            }
            if !plain.is_empty() {
                out.push(Segment {
                    text: plain,
                    href: None,
                });
            }
            out
        })
        .collect()
}

pub(crate) struct Row {
    pub id: String,
    pub channel: &'static str,
    pub is_sms: bool,
    pub to: String,
    pub subject: Option<String>,
    pub sent_at: String,
    pub lines: Vec<Vec<Segment>>,
    pub status: String,
    pub delivered: bool,
    /// Why the reply to this text was refused.
    pub error: Option<String>,
}

#[derive(Template)]
#[template(path = "admin/outbox.html")]
struct OutboxPage<'a> {
    page: &'a Page,
    frame: &'a StaffFrame,
    rows: Vec<Row>,
    notice: Option<&'static str>,
    /// Why a reply was refused (also shown at its form).
    error: Option<String>,
}

#[derive(Deserialize)]
pub(crate) struct ShowQuery {
    done: Option<String>,
}

async fn render(
    state: AppState,
    page: Page,
    principal: Principal,
    client: ClientInfo,
    session: Option<Extension<SessionCaller>>,
    notice: Option<&'static str>,
    error: Option<(String, String)>,
) -> Result<Response, ApiError> {
    let frame = frame(&state, &principal, session, "/admin/outbox").await?;
    let Json(list) = outbox::list(
        State(state.clone()),
        Extension(principal.clone()),
        Extension(client),
    )
    .await?;
    let practice = crate::api::practice_of(&principal)?;
    let statuses = state.store.practice_job_statuses(practice).await?;
    let base = crate::api::portal::base_url(&state);
    let mut messages = list.messages;
    // Newest first (RFC 3339 in one zone sorts as text); the listing's own order breaks ties.
    messages.reverse();
    messages.sort_by(|a, b| b.sent_at.cmp(&a.sent_at));
    let rows = messages
        .into_iter()
        .map(|m| {
            let status = statuses
                .get(&m.id)
                .cloned()
                .unwrap_or_else(|| "sent".to_owned());
            Row {
                id: m.id.to_string(),
                channel: if m.channel == "sms" { "Text" } else { "Email" },
                is_sms: m.channel == "sms",
                to: m.to,
                subject: m.subject,
                sent_at: m.sent_at,
                lines: linkify(&m.body, &base),
                delivered: matches!(status.as_str(), "delivered" | "read"),
                error: error
                    .as_ref()
                    .filter(|(id, _)| *id == m.id.to_string())
                    .map(|(_, why)| why.clone()),
                status,
            }
        })
        .collect();
    let status = if error.is_some() {
        axum::http::StatusCode::UNPROCESSABLE_ENTITY
    } else {
        axum::http::StatusCode::OK
    };
    Ok(page.render_with_status(
        status,
        &OutboxPage {
            page: &page,
            frame: &frame,
            rows,
            notice,
            error: error.map(|(_, why)| why),
        },
    ))
}

pub(crate) async fn show(
    State(state): State<AppState>,
    page: Page,
    Extension(principal): Extension<Principal>,
    Extension(client): Extension<ClientInfo>,
    session: Option<Extension<SessionCaller>>,
    query: Result<Query<ShowQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let notice = match query.ok().and_then(|q| q.0.done).as_deref() {
        Some("reply") => Some("The patient's reply was received, as if from their phone."),
        Some("delivered") => Some("The text was marked delivered."),
        _ => None,
    };
    render(state, page, principal, client, session, notice, None).await
}

/// "Reply as the patient": a text from the number this text went to.
pub(crate) async fn reply(
    State(state): State<AppState>,
    page: Page,
    Extension(principal): Extension<Principal>,
    Extension(client): Extension<ClientInfo>,
    session: Option<Extension<SessionCaller>>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let fields = FormFields::parse(&body);
    // The outbox entry replied to, and the number it went to.
    let (id, from, text) = (fields.get("id"), fields.get("from"), fields.get("text"));
    if text.trim().is_empty() {
        let error = Some((id, "Write the patient's reply first.".to_owned()));
        return render(state, page, principal, client, session, None, error).await;
    }
    let result = outbox::simulate_inbound(
        State(state.clone()),
        Extension(principal.clone()),
        Extension(client.clone()),
        JsonBody {
            value: SimulatedText { from, text },
            sha256: [0; 32],
        },
    )
    .await;
    match result {
        Ok(_) => Ok(page.redirect("/admin/outbox?done=reply")),
        Err(e) if e.status == axum::http::StatusCode::UNPROCESSABLE_ENTITY => {
            let why = e
                .errors
                .iter()
                .map(|f| format!("{}: {}", f.field, f.expected))
                .collect::<Vec<_>>()
                .join("; ");
            render(
                state,
                page,
                principal,
                client,
                session,
                None,
                Some((id, format!("The reply was not sent: {why}."))),
            )
            .await
        }
        Err(e) => Err(e),
    }
}

/// Mark a text delivered, as the carrier's delivery report would.
pub(crate) async fn status(
    State(state): State<AppState>,
    page: Page,
    Extension(principal): Extension<Principal>,
    Extension(client): Extension<ClientInfo>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let id = FormFields::parse(&body)
        .get("id")
        .parse()
        .map_err(|_| ApiError::not_found("outbox message"))?;
    outbox::simulate_status(
        State(state),
        Extension(principal),
        Extension(client),
        JsonBody {
            value: SimulatedStatus {
                id,
                status: "delivered".to_owned(),
            },
            sha256: [0; 32],
        },
    )
    .await?;
    Ok(page.redirect("/admin/outbox?done=delivered"))
}

#[cfg(test)]
mod tests {
    use super::linkify;

    fn flat(body: &str) -> Vec<(String, Option<String>)> {
        linkify(body, "http://localhost:8080")
            .into_iter()
            .flatten()
            .map(|s| (s.text, s.href))
            .collect()
    }

    #[test]
    fn only_this_servers_links_are_linked() {
        let got = flat(
            "Open http://localhost:8080/p/abc. Not https://evil.example/x or http://localhost:8080.evil/p",
        );
        assert_eq!(
            got,
            vec![
                ("Open ".to_owned(), None),
                (
                    "http://localhost:8080/p/abc".to_owned(),
                    Some("http://localhost:8080/p/abc".to_owned())
                ),
                (
                    ". Not https://evil.example/x or http://localhost:8080.evil/p".to_owned(),
                    None
                ),
            ]
        );
    }

    #[test]
    fn lines_are_kept() {
        assert_eq!(linkify("a\nb", "http://x").len(), 2);
    }
}

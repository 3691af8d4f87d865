//! The conversation: the practice's messages and the patient's own, newest at the bottom, and
//! a reply form (text plus one photo or PDF) that works as a plain multipart form.

use askama::Template;
use axum::Extension;
use axum::extract::{Multipart, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use base64::Engine;
use salve_core::ConversationId;
use serde::Deserialize;
use time::OffsetDateTime;

use super::{PortalFrame, Verified, verified};
use crate::AppState;
use crate::api::messages::{AttachmentQuery, AttachmentUpload, MAX_TEXT_CHARS};
use crate::api::portal_messages::{self, PortalConversation, PortalReplyBody};
use crate::context::ClientInfo;
use crate::error::ApiError;
use crate::extract::JsonBody;
use crate::web::{Page, csrf};

/// The largest reply form read: one file at the attachment limit, the text, the fields.
pub const REPLY_FORM_LIMIT: usize = crate::attachments::MAX_ATTACHMENT_BYTES + 256 * 1024;

pub struct AttachmentLink {
    pub href: String,
    pub name: String,
    pub size: String,
}

pub struct MessageItem {
    pub mine: bool,
    pub who: String,
    pub when: String,
    pub text: String,
    /// Plain-language status of the patient's own messages ("Sent", "Read by the practice").
    pub status: String,
    pub attachments: Vec<AttachmentLink>,
    pub last: bool,
}

#[derive(Template)]
#[template(path = "portal/conversation.html")]
struct ConversationPage<'a> {
    page: &'a Page,
    frame: &'a PortalFrame,
    es: bool,
    given_name: &'a str,
    expected_reply: &'a str,
    hours: Option<String>,
    messages: Vec<MessageItem>,
    conversation_id: Option<String>,
    draft: &'a str,
    error: Option<&'static str>,
    file_error: Option<&'static str>,
    sent: bool,
}

pub(crate) use crate::web::local_time;

pub(crate) fn file_size(bytes: i64) -> String {
    if bytes >= 1024 * 1024 {
        format!("{:.1} MB", bytes as f64 / (1024.0 * 1024.0))
    } else {
        format!("{} KB", (bytes + 1023) / 1024)
    }
}

/// Who wrote a message, as the patient sees it.
pub(crate) fn author(direction: &str, author_kind: &str, practice: &str, es: bool) -> String {
    match (direction, author_kind, es) {
        ("inbound", _, false) | (_, "patient", false) => "You".to_owned(),
        ("inbound", _, true) | (_, "patient", true) => "Usted".to_owned(),
        ("system", _, false) => format!("{practice} (automatic message)"),
        ("system", _, true) => format!("{practice} (mensaje automático)"),
        _ => practice.to_owned(),
    }
}

fn items(
    conversations: &[PortalConversation],
    read_marks: &[(ConversationId, OffsetDateTime)],
    practice: &str,
    zone: &str,
    es: bool,
) -> Vec<MessageItem> {
    let mut all: Vec<(
        &str,
        &crate::api::messages::MessageOut,
        Option<OffsetDateTime>,
    )> = Vec::new();
    for c in conversations {
        let read = read_marks
            .iter()
            .find(|(id, _)| id.as_uuid() == c.id)
            .map(|(_, at)| *at);
        for m in &c.messages {
            all.push((m.created_at.as_str(), m, read));
        }
    }
    // Oldest first: the newest message is at the bottom, next to the reply box.
    all.sort_by(|a, b| a.0.cmp(b.0));
    let count = all.len();
    all.into_iter()
        .enumerate()
        .map(|(i, (_, m, read))| {
            let mine = m.direction == "inbound";
            let created = OffsetDateTime::parse(
                &m.created_at,
                &time::format_description::well_known::Rfc3339,
            )
            .ok();
            let status = if !mine {
                String::new()
            } else if read.is_some_and(|r| created.is_some_and(|c| r >= c)) {
                if es {
                    "Leído por el consultorio"
                } else {
                    "Read by the practice"
                }
                .to_owned()
            } else if es {
                "Enviado".to_owned()
            } else {
                "Sent".to_owned()
            };
            MessageItem {
                mine,
                who: author(&m.direction, &m.author_kind, practice, es),
                when: local_time(&m.created_at, zone, es),
                text: m.text.clone().unwrap_or_default(),
                status,
                attachments: m
                    .attachments
                    .iter()
                    .map(|a| AttachmentLink {
                        // Photos open in the browser (served sandboxed); PDFs download.
                        href: if a.media_type.starts_with("image/") {
                            format!("/portal/attachments/{}?inline=true", a.id)
                        } else {
                            format!("/portal/attachments/{}", a.id)
                        },
                        name: a.file_name.clone(),
                        size: file_size(a.size),
                    })
                    .collect(),
                last: i + 1 == count,
            }
        })
        .collect()
}

struct Form<'a> {
    draft: &'a str,
    error: Option<&'static str>,
    file_error: Option<&'static str>,
    status: StatusCode,
}

async fn render(
    state: &AppState,
    client: &ClientInfo,
    headers: &HeaderMap,
    v: Verified,
    form: Form<'_>,
    sent: bool,
) -> Result<Response, ApiError> {
    let axum::Json(list) = portal_messages::conversations(
        axum::extract::State(state.clone()),
        Extension(client.clone()),
        headers.clone(),
    )
    .await?;
    let practice = state.store.practice(v.session.practice_id).await?;
    let read_marks = state
        .store
        .practice_read_marks(v.session.practice_id, v.session.patient_id)
        .await?;
    let es = v.frame.es;
    let hours = state
        .store
        .office_hours(v.session.practice_id)
        .await?
        .map(|h| {
            h.hours_text(if es {
                salve_core::system_messages::Language::Es
            } else {
                salve_core::system_messages::Language::En
            })
        });
    let messages = items(
        &list.conversations,
        &read_marks,
        &practice.name,
        &practice.time_zone,
        es,
    );
    let conversation_id = list.conversations.first().map(|c| c.id.to_string());
    let mut response = v.page.render_with_status(
        form.status,
        &ConversationPage {
            page: &v.page,
            frame: &v.frame,
            es,
            given_name: &v.me.given_name,
            expected_reply: &v.me.expected_reply.text,
            hours,
            messages,
            conversation_id,
            draft: form.draft,
            error: form.error,
            file_error: form.file_error,
            sent,
        },
    );
    super::no_store(&mut response);
    Ok(response)
}

#[derive(Deserialize)]
pub struct ShowQuery {
    sent: Option<String>,
}

pub async fn show(
    State(state): State<AppState>,
    Extension(client): Extension<ClientInfo>,
    headers: HeaderMap,
    Query(q): Query<ShowQuery>,
    page: Page,
) -> Result<Response, ApiError> {
    let v = verified(&state, &client, &headers, page, "/portal").await?;
    render(
        &state,
        &client,
        &headers,
        v,
        Form {
            draft: "",
            error: None,
            file_error: None,
            status: StatusCode::OK,
        },
        q.sent.is_some(),
    )
    .await
}

/// What the reply form sent.
#[derive(Default)]
struct ReplyForm {
    csrf: Option<String>,
    text: String,
    conversation_id: Option<uuid::Uuid>,
    file: Option<(Option<String>, Vec<u8>)>,
}

async fn read_form(mut multipart: Multipart) -> Result<ReplyForm, ()> {
    let mut form = ReplyForm::default();
    while let Some(field) = multipart.next_field().await.map_err(|_| ())? {
        let name = field.name().unwrap_or_default().to_owned();
        match name.as_str() {
            "csrf" => form.csrf = Some(field.text().await.map_err(|_| ())?),
            "text" => form.text = field.text().await.map_err(|_| ())?,
            "conversation_id" => {
                form.conversation_id = field.text().await.map_err(|_| ())?.trim().parse().ok();
            }
            "file" => {
                let file_name = field.file_name().map(str::to_owned);
                let bytes = field.bytes().await.map_err(|_| ())?;
                // A file input left empty still sends an empty part.
                if !bytes.is_empty() {
                    form.file = Some((file_name.filter(|n| !n.is_empty()), bytes.to_vec()));
                }
            }
            _ => {}
        }
    }
    Ok(form)
}

fn refused() -> ApiError {
    ApiError::forbidden(
        "this form has expired or came from another site: reload the page and try again",
    )
}

/// The reply form (multipart): its `csrf` part is checked here (the page layer lets this
/// route's multipart bodies through unread), then the portal's reply operation runs.
pub async fn reply(
    State(state): State<AppState>,
    Extension(client): Extension<ClientInfo>,
    headers: HeaderMap,
    page: Page,
    multipart: Multipart,
) -> Result<Response, ApiError> {
    let expected = page.csrf.clone();
    let form = read_form(multipart).await;
    // The token first: nothing of a forged form is acted on, or even read further.
    if let Ok(f) = &form
        && !f
            .csrf
            .as_deref()
            .is_some_and(|given| csrf::matches(&expected, given))
    {
        return Err(refused());
    }
    let v = verified(&state, &client, &headers, page, "/portal").await?;
    let es = v.frame.es;
    let Ok(form) = form else {
        // Too large, or cut off: nothing of it is used; the page says what to do.
        return render(
            &state,
            &client,
            &headers,
            v,
            Form {
                draft: "",
                error: None,
                file_error: Some(if es {
                    "No pudimos recibir el archivo. Los archivos pueden pesar hasta 10 MB."
                } else {
                    "We couldn't receive the file. Files can be up to 10 MB."
                }),
                status: StatusCode::UNPROCESSABLE_ENTITY,
            },
            false,
        )
        .await;
    };
    let text = form.text.trim();
    if text.is_empty() || text.chars().count() > MAX_TEXT_CHARS {
        let error = match (text.is_empty(), es) {
            (true, false) => "Write your message before sending.",
            (true, true) => "Escriba su mensaje antes de enviarlo.",
            (false, false) => "Your message is too long: keep it under 5,000 characters.",
            (false, true) => "Su mensaje es demasiado largo: use menos de 5.000 caracteres.",
        };
        return render(
            &state,
            &client,
            &headers,
            v,
            Form {
                draft: &form.text,
                error: Some(error),
                file_error: None,
                status: StatusCode::UNPROCESSABLE_ENTITY,
            },
            false,
        )
        .await;
    }
    let attachments = form
        .file
        .iter()
        .map(|(name, bytes)| AttachmentUpload {
            file_name: name.clone(),
            content_base64: base64::engine::general_purpose::STANDARD.encode(bytes),
        })
        .collect();
    let result = portal_messages::reply(
        State(state.clone()),
        Extension(client.clone()),
        headers.clone(),
        JsonBody {
            value: PortalReplyBody {
                text: text.to_owned(),
                conversation_id: form.conversation_id,
                attachments,
            },
            sha256: [0; 32],
        },
    )
    .await;
    match result {
        Ok(_) => Ok(v.page.redirect("/portal?sent=1#latest")),
        Err(e) if e.slug == "attachment-refused" => {
            render(
                &state,
                &client,
                &headers,
                v,
                Form {
                    draft: &form.text,
                    error: None,
                    file_error: Some(if es {
                        "No pudimos aceptar ese archivo. Envíe una foto (JPEG o PNG) o un PDF de hasta 10 MB."
                    } else {
                        "We couldn't accept that file. Send a photo (JPEG or PNG) or a PDF of up to 10 MB."
                    }),
                    status: StatusCode::UNPROCESSABLE_ENTITY,
                },
                false,
            )
            .await
        }
        Err(e) => Err(e),
    }
}

/// One of the patient's attachments, through the portal's attachment operation.
pub async fn attachment(
    State(state): State<AppState>,
    Extension(client): Extension<ClientInfo>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<AttachmentQuery>,
) -> Result<Response, ApiError> {
    portal_messages::attachment(State(state), Extension(client), headers, Path(id), Query(q)).await
}

//! The patient's side of the conversation, through their portal session: read, reply, attach.

use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use salve_core::{AttachmentId, ConversationId, Sensitive};
use salve_store::{AttachmentReader, Direction, StoreError};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::AppState;
use crate::api::messages::{
    AttachmentQuery, AttachmentUpload, Created, MessageOut, attachment_response, clean_uploads,
    message_out,
};
use crate::api::path_id;
use crate::api::portal::patient_session;
use crate::context::ClientInfo;
use crate::error::ApiError;
use crate::extract::JsonBody;

#[derive(Serialize, ToSchema)]
pub struct PortalConversation {
    pub id: uuid::Uuid,
    pub messages: Vec<MessageOut>,
}

#[derive(Serialize, ToSchema)]
pub struct PortalConversations {
    pub conversations: Vec<PortalConversation>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PortalReplyBody {
    pub text: String,
    pub conversation_id: Option<uuid::Uuid>,
    #[serde(default)]
    pub attachments: Vec<AttachmentUpload>,
}

/// The patient's conversations with the practice (internal notes never appear).
#[utoipa::path(get, path = "/api/v1/portal/conversations", tag = "portal",
    responses((status = 200, body = PortalConversations), (status = 401, body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn conversations(
    State(state): State<AppState>,
    Extension(client): Extension<ClientInfo>,
    headers: HeaderMap,
) -> Result<axum::Json<PortalConversations>, ApiError> {
    let session = patient_session(&state, &headers).await?;
    let list = state
        .store
        .patient_conversations(
            session.practice_id,
            session.patient_id,
            &client.audit_context(),
        )
        .await?;
    Ok(axum::Json(PortalConversations {
        conversations: list
            .into_iter()
            .map(|(id, messages)| PortalConversation {
                id: id.as_uuid(),
                messages: messages
                    .iter()
                    .filter(|m| m.direction != Direction::Note)
                    .map(|m| {
                        let mut out = message_out(m);
                        // Who on staff wrote it is shown by name on pages, not by id.
                        out.author_id = None;
                        out.reasons = None;
                        out
                    })
                    .collect(),
            })
            .collect(),
    }))
}

/// The patient replies (to their main thread, or one of their threads).
#[utoipa::path(post, path = "/api/v1/portal/messages", tag = "portal", request_body = PortalReplyBody,
    responses((status = 201, body = Created), (status = 401, body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn reply(
    State(state): State<AppState>,
    Extension(client): Extension<ClientInfo>,
    headers: HeaderMap,
    body: JsonBody<PortalReplyBody>,
) -> Result<Response, ApiError> {
    let session = patient_session(&state, &headers).await?;
    let text = body.value.text.trim();
    if text.is_empty() || text.chars().count() > crate::api::messages::MAX_TEXT_CHARS {
        return Err(ApiError::bad_request(
            "`text` must have 1 to 5000 characters",
        ));
    }
    let uploads = clean_uploads(&state, &body.value.attachments).await?;
    let id = state
        .store
        .receive_patient_message(
            session.practice_id,
            session.patient_id,
            &client.audit_context(),
            body.value.conversation_id.map(ConversationId::from_uuid),
            &Sensitive::new(text.to_owned()),
            &uploads,
            salve_core::outgoing::inbound_kind,
        )
        .await
        .map_err(|e| match e {
            StoreError::NotFound => ApiError::not_found("conversation"),
            other => other.into(),
        })?;
    Ok((
        StatusCode::CREATED,
        axum::Json(Created { id: id.as_uuid() }),
    )
        .into_response())
}

/// One of the patient's own attachments.
#[utoipa::path(get, path = "/api/v1/portal/attachments/{id}", tag = "portal",
    params(("id" = uuid::Uuid, Path), AttachmentQuery),
    responses((status = 200, description = "the file"), (status = 404, body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn attachment(
    State(state): State<AppState>,
    Extension(client): Extension<ClientInfo>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<AttachmentQuery>,
) -> Result<Response, ApiError> {
    let session = patient_session(&state, &headers).await?;
    let (meta, bytes) = state
        .store
        .read_attachment(
            session.practice_id,
            AttachmentReader::Patient(session.patient_id),
            &client.audit_context(),
            path_id::<AttachmentId>(&id, "attachment")?,
        )
        .await
        .map_err(|e| match e {
            StoreError::NotFound | StoreError::Forbidden => ApiError::not_found("attachment"),
            other => other.into(),
        })?;
    attachment_response(&meta, bytes, q.inline.unwrap_or(false))
}

//! Patients prove who they are before a secure message opens: a link sent to one contact
//! point (possession), their date of birth (knowledge), and a one-time code sent back to that
//! same contact point. Opening the link (GET) changes nothing, so scanners burn nothing.

use axum::Extension;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use salve_channels::{Channel, OutgoingMessage};
use salve_core::ConfidentialRequestId;
use salve_core::Sensitive;
use salve_core::audit::{Action, Outcome};
use salve_core::links::{self, LinkState};
use salve_core::patient::ContactKind;
use salve_core::permissions::Principal;
use salve_core::system_messages::{self, Extra, Language, SystemMessageKind};
use salve_store::{LinkInfo, PatientSession, Recorder, StoreError};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use crate::AppState;
use crate::api::{practice_of, rfc3339};
use crate::auth;
use crate::context::ClientInfo;
use crate::error::ApiError;
use crate::extract::JsonBody;

pub const LINK_COOKIE: &str = "salve_link";
pub const PATIENT_COOKIE: &str = "salve_patient";

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SendLinkBody {
    /// Which of the patient's contact points (0-based, as listed on the patient) gets the link.
    pub contact_index: usize,
}

#[derive(Serialize, ToSchema)]
pub struct LinkSent {
    pub id: uuid::Uuid,
    pub expires_at: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BirthDateBody {
    /// YYYY-MM-DD
    pub birth_date: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CodeBody {
    pub code: String,
}

#[derive(Serialize, ToSchema)]
pub struct PortalStep {
    /// `code_sent`: a code went to the contact point the link was sent to; `verified`.
    pub status: String,
}

#[derive(Serialize, ToSchema)]
pub struct PortalMe {
    pub given_name: String,
    pub practice: String,
    /// The patient's preferred language (a tag such as `es-MX`); pages are in English or Spanish.
    pub language: String,
    /// When to expect a reply: the promised response time within office hours; when closed,
    /// that the office is closed and when it reopens.
    pub expected_reply: crate::api::hours::ExpectedReply,
}

pub(crate) fn cookie_header(state: &AppState, name: &str, value: &str) -> HeaderValue {
    let secure = if state.config.public_url_is_https() {
        "; Secure"
    } else {
        ""
    };
    HeaderValue::from_str(&format!(
        "{name}={value}; Path=/; HttpOnly; SameSite=Lax{secure}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static(""))
}

pub(crate) fn base_url(state: &AppState) -> String {
    match &state.config.public_url {
        Some(url) => url.trim_end_matches('/').to_owned(),
        None => format!("http://localhost:{}", state.config.listen.port()),
    }
}

/// Send the patient a secure link (content-free: it names only the practice).
#[utoipa::path(post, path = "/api/v1/patients/{id}/secure-links", tag = "portal", request_body = SendLinkBody,
    params(("id" = uuid::Uuid, Path)),
    responses((status = 201, body = LinkSent), (status = 404, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 502, body = crate::error::Problem, content_type = "application/problem+json")),
    security(("bearer" = ["patients:write"]), ("session" = [])))]
pub async fn send_link(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(client): Extension<ClientInfo>,
    Path(id): Path<String>,
    body: JsonBody<SendLinkBody>,
) -> Result<Response, ApiError> {
    let practice = practice_of(&principal)?;
    let patient = id.parse().map_err(|_| ApiError::not_found("patient"))?;
    let ctx = client.audit_context();
    let token = salve_crypto::token::mint("salve_l");
    let ttl = links::DEFAULT_LINK_TTL.whole_seconds();
    let link = state
        .store
        .create_link(
            practice,
            &principal,
            &ctx,
            patient,
            body.value.contact_index,
            &token.hash,
            ttl,
        )
        .await
        .map_err(|e| match e {
            salve_store::StoreError::NotFound | salve_store::StoreError::Hidden => {
                ApiError::not_found("patient")
            }
            other => other.into(),
        })?;
    let name = state.store.practice(practice).await?.name;
    let message = OutgoingMessage {
        id: link.id,
        channel: match link.contact_kind {
            ContactKind::Phone => Channel::Sms,
            ContactKind::Email => Channel::Email,
        },
        to: link.contact.clone(),
        subject: Some(format!("A secure message from {name}")),
        body: Sensitive::new(format!(
            "You have a new secure message from {name}: {}/p/{}",
            base_url(&state),
            token.secret.as_str()
        )),
    };
    if let Err(e) = state.provider.send(&message).await {
        tracing::warn!(
            provider = state.provider.name(),
            error = e.kind(),
            "secure link not delivered"
        );
        state
            .store
            .revoke_link(practice, &principal, &ctx, link.id)
            .await?;
        return Err(ApiError::new(
            StatusCode::BAD_GATEWAY,
            "not-delivered",
            "Link not delivered",
            "the message channel did not accept the link; it was revoked, try again later",
        ));
    }
    let expires_at = salve_core::clock::to_micros(state.clock.now()) + ttl * 1_000_000;
    Ok((
        StatusCode::CREATED,
        axum::Json(LinkSent {
            id: link.id,
            expires_at: rfc3339(expires_at),
        }),
    )
        .into_response())
}

/// Revoke a secure link.
#[utoipa::path(delete, path = "/api/v1/secure-links/{id}", tag = "portal", params(("id" = uuid::Uuid, Path)),
    responses((status = 204), (status = 404, body = crate::error::Problem, content_type = "application/problem+json")),
    security(("bearer" = ["patients:write"]), ("session" = [])))]
pub async fn revoke_link(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(client): Extension<ClientInfo>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let practice = practice_of(&principal)?;
    let link = id.parse().map_err(|_| ApiError::not_found("link"))?;
    state
        .store
        .revoke_link(practice, &principal, &client.audit_context(), link)
        .await
        .map_err(|e| match e {
            salve_store::StoreError::NotFound | salve_store::StoreError::Hidden => {
                ApiError::not_found("link")
            }
            other => other.into(),
        })?;
    Ok(StatusCode::NO_CONTENT)
}

/// The link itself. It only moves the token into an HttpOnly cookie and redirects to a URL
/// without it: no attempt is spent, nothing is sent.
pub async fn open_link(
    State(state): State<AppState>,
    Extension(client): Extension<ClientInfo>,
    Path(token): Path<String>,
) -> Result<Response, ApiError> {
    if let Some(link) = state
        .store
        .link_by_token(&salve_crypto::token::hash(&token))
        .await?
    {
        state
            .store
            .record_link_event(
                &link,
                Action::LinkOpen,
                Outcome::Success,
                &client.audit_context(),
            )
            .await?;
    }
    let mut response = (
        StatusCode::SEE_OTHER,
        [(header::LOCATION, "/portal/verify")],
    )
        .into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        cookie_header(&state, LINK_COOKIE, &token),
    );
    Ok(response)
}

fn link_problem(state: LinkState) -> ApiError {
    match state {
        LinkState::Locked => ApiError::new(
            StatusCode::LOCKED,
            "link-locked",
            "Link locked",
            "too many attempts: ask the practice to send a new link",
        ),
        LinkState::Expired | LinkState::Revoked => ApiError::new(
            StatusCode::GONE,
            "link-expired",
            "Link no longer valid",
            "this link has expired or was withdrawn: ask the practice to send a new one",
        ),
        LinkState::Usable => ApiError::internal("a usable link was refused"),
    }
}

/// The usable link named by the request's link cookie.
async fn current_link(state: &AppState, headers: &HeaderMap) -> Result<LinkInfo, ApiError> {
    let token = auth::cookie(headers, LINK_COOKIE).ok_or_else(|| {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "no-link",
            "Open your link first",
            "open the link you received",
        )
    })?;
    let link = state
        .store
        .link_by_token(&salve_crypto::token::hash(token))
        .await?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "no-link",
                "Link not valid",
                "this link is not valid",
            )
        })?;
    match link.state {
        LinkState::Usable => Ok(link),
        other => Err(link_problem(other)),
    }
}

fn limit_key(kind: &str, value: &str) -> Vec<u8> {
    let mut h = Sha256::new();
    h.update(b"salve:code-send:v1:");
    h.update(kind.as_bytes());
    h.update(b":");
    h.update(value.as_bytes());
    h.finalize().to_vec()
}

fn not_verified(locked: bool) -> ApiError {
    if locked {
        link_problem(LinkState::Locked)
    } else {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "not-verified",
            "Not verified",
            "the details do not match",
        )
    }
}

/// Step one: the date of birth. On success a 6-digit code goes to the link's contact point.
#[utoipa::path(post, path = "/api/v1/portal/birth-date", tag = "portal", request_body = BirthDateBody,
    responses((status = 202, body = PortalStep), (status = 401, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 423, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 429, body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn submit_birth_date(
    State(state): State<AppState>,
    Extension(client): Extension<ClientInfo>,
    headers: HeaderMap,
    body: JsonBody<BirthDateBody>,
) -> Result<Response, ApiError> {
    if !auth::csrf_ok(&state, &axum::http::Method::POST, &headers) {
        return Err(ApiError::forbidden("cross-site request refused"));
    }
    let link = current_link(&state, &headers).await?;
    let ctx = client.audit_context();
    if !state
        .store
        .link_birth_date_matches(&link, &body.value.birth_date)
        .await?
    {
        let locked = state
            .store
            .link_failure(&link, Action::LinkDateOfBirthFailed, &ctx)
            .await?;
        return Err(not_verified(locked));
    }
    let now = salve_core::clock::to_micros(state.clock.now());
    let ip = client.ip.map(|i| i.to_string()).unwrap_or_default();
    let limits = [
        (limit_key("link", &link.id.to_string()), links::PER_LINK),
        (
            limit_key("patient", &link.patient_id.to_string()),
            links::PER_PATIENT,
        ),
        (limit_key("address", &ip), links::PER_ADDRESS),
    ];
    for (key, limit) in &limits {
        let since = now - limit.window.whole_microseconds() as i64;
        let sent = state
            .store
            .code_sends_since(std::slice::from_ref(key), since)
            .await?;
        if sent[0] >= limit.max {
            let mut e = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too-many-codes",
                "Too many codes",
                "too many codes were sent; wait a while and try again",
            );
            e.extra_headers.push((
                header::RETRY_AFTER,
                HeaderValue::from_str(&limit.window.whole_seconds().to_string())
                    .unwrap_or(HeaderValue::from_static("600")),
            ));
            return Err(e);
        }
    }
    let code = salve_crypto::token::numeric_code();
    let keys: Vec<Vec<u8>> = limits.iter().map(|(k, _)| k.clone()).collect();
    state
        .store
        .set_link_code(&link, &code.hash, &keys, &ctx)
        .await?;
    let name = state.store.practice(link.practice_id).await?.name;
    // The reviewed wording, in the patient's own language.
    let lang = Language::for_tag(&state.store.link_patient_language(&link).await?);
    let settings = state.store.messaging_settings(link.practice_id).await?;
    let text = system_messages::render(
        SystemMessageKind::OneTimeCode,
        lang,
        &settings.practice_fields(),
        Extra::Code(code.secret.as_str()),
    )
    .map_err(|e| ApiError::internal(format!("the code message cannot be written: {e}")))?;
    let subject = match lang {
        Language::En => format!("Your {name} code"),
        Language::Es => format!("Su clave de {name}"),
    };
    let message = OutgoingMessage {
        id: uuid::Uuid::now_v7(),
        channel: match link.contact_kind {
            ContactKind::Phone => Channel::Sms,
            ContactKind::Email => Channel::Email,
        },
        // Only the contact point the link went to, never another.
        to: link.contact.clone(),
        subject: Some(subject),
        body: Sensitive::new(text),
    };
    state.provider.send(&message).await.map_err(|e| {
        tracing::warn!(
            provider = state.provider.name(),
            error = e.kind(),
            "one-time code not delivered"
        );
        ApiError::new(
            StatusCode::BAD_GATEWAY,
            "not-delivered",
            "Code not delivered",
            "the code could not be sent; try again later",
        )
    })?;
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(PortalStep {
            status: "code_sent".into(),
        }),
    )
        .into_response())
}

/// Step two: the code. Success starts a patient session (idle 10 minutes) for this patient only.
#[utoipa::path(post, path = "/api/v1/portal/code", tag = "portal", request_body = CodeBody,
    responses((status = 200, body = PortalStep), (status = 401, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 423, body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn submit_code(
    State(state): State<AppState>,
    Extension(client): Extension<ClientInfo>,
    headers: HeaderMap,
    body: JsonBody<CodeBody>,
) -> Result<Response, ApiError> {
    if !auth::csrf_ok(&state, &axum::http::Method::POST, &headers) {
        return Err(ApiError::forbidden("cross-site request refused"));
    }
    let link = current_link(&state, &headers).await?;
    let ctx = client.audit_context();
    let code = body.value.code.trim().to_owned();
    let valid_shape = code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit());
    if !valid_shape
        || !state
            .store
            .use_link_code(&link, &salve_crypto::token::hash(&code))
            .await?
    {
        let locked = state
            .store
            .link_failure(&link, Action::LinkCodeFailed, &ctx)
            .await?;
        return Err(not_verified(locked));
    }
    let token = salve_crypto::token::mint("salve_p");
    state
        .store
        .create_patient_session(&link, &token.hash, &ctx)
        .await?;
    let mut response = (
        StatusCode::OK,
        axum::Json(PortalStep {
            status: "verified".into(),
        }),
    )
        .into_response();
    response.headers_mut().append(
        header::SET_COOKIE,
        cookie_header(&state, PATIENT_COOKIE, &token.secret),
    );
    Ok(response)
}

/// The verified patient's session, for the portal pages.
pub async fn patient_session(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<PatientSession, ApiError> {
    let token = auth::cookie(headers, PATIENT_COOKIE).ok_or_else(ApiError::unauthorized)?;
    state
        .store
        .patient_session(&salve_crypto::token::hash(token))
        .await?
        .ok_or_else(ApiError::unauthorized)
}

/// Who the verified patient is (the start of the portal).
#[utoipa::path(get, path = "/api/v1/portal/me", tag = "portal",
    responses((status = 200, body = PortalMe), (status = 401, body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn me(
    State(state): State<AppState>,
    Extension(client): Extension<ClientInfo>,
    headers: HeaderMap,
) -> Result<axum::Json<PortalMe>, ApiError> {
    let session = patient_session(&state, &headers).await?;
    let patient = state
        .store
        .read_own_record(&session, &client.audit_context())
        .await?;
    let practice = state.store.practice(session.practice_id).await?;
    let lang = salve_core::system_messages::Language::for_tag(&patient.record.preferred_language);
    Ok(axum::Json(PortalMe {
        given_name: patient.record.given_name.expose().clone(),
        practice: practice.name,
        language: patient.record.preferred_language.clone(),
        expected_reply: crate::api::hours::expected_reply(&state, session.practice_id, lang)
            .await?,
    }))
}

/// The verified patient withdraws one of their own confidential-communication requests (it
/// stays in the record, marked withdrawn; audited as the patient, like staff's withdrawal).
#[utoipa::path(delete, path = "/api/v1/portal/confidential-requests/{request_id}", tag = "portal",
    params(("request_id" = uuid::Uuid, Path)),
    responses((status = 204), (status = 401, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn withdraw_own_confidential(
    State(state): State<AppState>,
    Extension(client): Extension<ClientInfo>,
    headers: HeaderMap,
    Path(request): Path<String>,
) -> Result<StatusCode, ApiError> {
    let session = patient_session(&state, &headers).await?;
    let request = crate::api::path_id::<ConfidentialRequestId>(&request, "confidential request")?;
    state
        .store
        .withdraw_confidential_request(
            session.practice_id,
            Recorder::Patient(session.patient_id),
            &client.audit_context(),
            session.patient_id,
            request,
        )
        .await
        .map_err(|e| match e {
            StoreError::NotFound => ApiError::not_found("confidential request"),
            other => other.into(),
        })?;
    Ok(StatusCode::NO_CONTENT)
}

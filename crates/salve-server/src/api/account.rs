//! Staff invitations and password resets by single-use tokens that expire. Opening a link
//! (GET) only moves its token into an HttpOnly cookie; setting the password spends it.

use axum::Extension;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use salve_channels::{Channel, OutgoingMessage};
use salve_core::permissions::{Principal, Role};
use salve_core::{FieldError, Sensitive};
use salve_store::{AccountTokenPurpose, StoreError};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use crate::AppState;
use crate::auth;
use crate::context::ClientInfo;
use crate::error::ApiError;
use crate::extract::JsonBody;

pub const ACCOUNT_COOKIE: &str = "salve_account";
const INVITE_TTL_SECS: i64 = 72 * 3600;
const RESET_TTL_SECS: i64 = 3600;
const RESETS_PER_HOUR: i64 = 3;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InviteBody {
    pub email: String,
    pub display_name: String,
    /// admin, clinician, staff or auditor
    pub role: String,
}

#[derive(Serialize, ToSchema)]
pub struct Invited {
    pub user_id: uuid::Uuid,
    /// false when the person already had an account and was only added to this practice.
    pub invitation_sent: bool,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetBody {
    pub email: String,
}

#[derive(Serialize, ToSchema)]
pub struct ResetAccepted {
    pub status: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordBody {
    pub password: String,
}

fn base_url(state: &AppState) -> String {
    match &state.config.public_url {
        Some(url) => url.trim_end_matches('/').to_owned(),
        None => format!("http://localhost:{}", state.config.listen.port()),
    }
}

async fn email(
    state: &AppState,
    to: Sensitive<String>,
    subject: String,
    body: String,
) -> Result<(), ApiError> {
    let message = OutgoingMessage {
        id: uuid::Uuid::now_v7(),
        channel: Channel::Email,
        to,
        subject: Some(subject),
        body: Sensitive::new(body),
    };
    state.provider.send(&message).await.map_err(|e| {
        tracing::warn!(
            provider = state.provider.name(),
            error = e.kind(),
            "account email not delivered"
        );
        ApiError::new(
            StatusCode::BAD_GATEWAY,
            "not-delivered",
            "Email not delivered",
            "the email could not be sent; try again later",
        )
    })?;
    Ok(())
}

/// Invite a person to the practice (or add an existing account to it).
#[utoipa::path(post, path = "/api/v1/users/invite", tag = "users", request_body = InviteBody,
    responses((status = 201, body = Invited), (status = 409, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, body = crate::error::Problem, content_type = "application/problem+json")),
    security(("session" = [])))]
pub async fn invite(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(client): Extension<ClientInfo>,
    body: JsonBody<InviteBody>,
) -> Result<Response, ApiError> {
    let practice = principal
        .practice()
        .ok_or_else(|| ApiError::forbidden("an operator has no practice here"))?;
    let b = body.value;
    let mut errors = Vec::new();
    let email_addr = salve_core::validation::email("email", &b.email)
        .map_err(|e| errors.push(e))
        .ok();
    let name = salve_core::validation::name("display_name", &b.display_name)
        .map_err(|e| errors.push(e))
        .ok();
    let role = Role::parse(&b.role);
    if role.is_none() {
        errors.push(FieldError::new(
            "role",
            "one of admin, clinician, staff, auditor",
        ));
    }
    let (Some(email_addr), Some(name), Some(role)) = (email_addr, name, role) else {
        return Err(ApiError::validation(errors));
    };
    let token = salve_crypto::token::mint("salve_i");
    let (user, new) = state
        .store
        .invite_user(
            &principal.actor(),
            &client.audit_context(),
            practice,
            &email_addr,
            &name,
            role,
            &token.hash,
            INVITE_TTL_SECS,
        )
        .await?;
    let practice_name = state.store.practice(practice).await?.name;
    if new {
        email(
            &state,
            email_addr.clone(),
            format!("You are invited to {practice_name} on Salve"),
            format!(
                "{practice_name} invited you to its Salve inbox. Choose a password within 72 hours: {}/invite/{}",
                base_url(&state),
                token.secret.as_str()
            ),
        )
        .await?;
    }
    Ok((
        StatusCode::CREATED,
        axum::Json(Invited {
            user_id: user.as_uuid(),
            invitation_sent: new,
        }),
    )
        .into_response())
}

/// Ask for a password reset. The answer is the same whether or not the account exists.
#[utoipa::path(post, path = "/api/v1/password-reset", tag = "session", request_body = ResetBody,
    responses((status = 202, body = ResetAccepted)))]
pub async fn request_reset(
    State(state): State<AppState>,
    Extension(client): Extension<ClientInfo>,
    headers: HeaderMap,
    body: JsonBody<ResetBody>,
) -> Result<Response, ApiError> {
    if !auth::csrf_ok(&state, &axum::http::Method::POST, &headers) {
        return Err(ApiError::forbidden("cross-site request refused"));
    }
    let accepted = (
        StatusCode::ACCEPTED,
        axum::Json(ResetAccepted {
            status: "if the account exists, an email is on its way".into(),
        }),
    )
        .into_response();
    let email_text = body.value.email;
    let key = {
        let index = state.store.sign_in_key(&email_text).await?;
        let mut h = Sha256::new();
        h.update(b"salve:password-reset:v1:");
        h.update(&index);
        h.finalize().to_vec()
    };
    let now = salve_core::clock::to_micros(state.clock.now());
    let recent = state
        .store
        .code_sends_since(std::slice::from_ref(&key), now - 3600 * 1_000_000)
        .await?;
    if recent[0] >= RESETS_PER_HOUR {
        return Ok(accepted);
    }
    state.store.record_code_send(&key, now).await?;
    let Some(user) = state.store.user_for_sign_in(&email_text).await? else {
        return Ok(accepted);
    };
    if user.disabled {
        return Ok(accepted);
    }
    let token = salve_crypto::token::mint("salve_r");
    state
        .store
        .create_account_token(
            user.id,
            None,
            AccountTokenPurpose::Reset,
            &token.hash,
            RESET_TTL_SECS,
            &salve_core::audit::Actor::Anonymous,
            &client.audit_context(),
        )
        .await?;
    let profile = state.store.user_profile(user.id).await?;
    email(
        &state,
        profile.email,
        "Reset your Salve password".into(),
        format!(
            "Someone asked to reset the password of this Salve account. If it was you, choose a new one within an hour: {}/reset/{}",
            base_url(&state),
            token.secret.as_str()
        ),
    )
    .await?;
    Ok(accepted)
}

/// The invitation or reset link: the token moves into an HttpOnly cookie; nothing is spent.
pub async fn open_account_link(
    State(state): State<AppState>,
    Path(token): Path<String>,
) -> Response {
    let secure = if state.config.public_url_is_https() {
        "; Secure"
    } else {
        ""
    };
    let cookie = HeaderValue::from_str(&format!(
        "{ACCOUNT_COOKIE}={token}; Path=/; HttpOnly; SameSite=Lax{secure}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static(""));
    let mut response = (
        StatusCode::SEE_OTHER,
        [(header::LOCATION, "/account/password")],
    )
        .into_response();
    response.headers_mut().insert(header::SET_COOKIE, cookie);
    response
}

/// Choose a password with an invitation or reset token. Every session of the account ends.
#[utoipa::path(post, path = "/api/v1/account/password", tag = "session", request_body = PasswordBody,
    responses((status = 204), (status = 410, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn set_password(
    State(state): State<AppState>,
    Extension(client): Extension<ClientInfo>,
    headers: HeaderMap,
    body: JsonBody<PasswordBody>,
) -> Result<Response, ApiError> {
    if !auth::csrf_ok(&state, &axum::http::Method::POST, &headers) {
        return Err(ApiError::forbidden("cross-site request refused"));
    }
    let expired = || {
        ApiError::new(
            StatusCode::GONE,
            "link-expired",
            "Link no longer valid",
            "this link was used or has expired: ask for a new one",
        )
    };
    let token = auth::cookie(&headers, ACCOUNT_COOKIE).ok_or_else(expired)?;
    let token = state
        .store
        .account_token(&salve_crypto::token::hash(token))
        .await?
        .ok_or_else(expired)?;
    let profile = state.store.user_profile(token.user_id).await?;
    let practice_name = match token.practice_id {
        Some(p) => state.store.practice(p).await?.name,
        None => String::new(),
    };
    let password = Sensitive::new(body.value.password);
    salve_core::password_policy::check(
        password.expose(),
        &salve_core::password_policy::PasswordContext {
            email: profile.email.expose(),
            practice_name: &practice_name,
        },
    )
    .map_err(|problem| {
        ApiError::validation(vec![FieldError::new("password", problem.to_string())])
    })?;
    let _permit = state
        .hash_permits
        .acquire()
        .await
        .map_err(|_| ApiError::internal("password hashing pool closed"))?;
    let hash = tokio::task::spawn_blocking(move || {
        let normalized = salve_core::password_policy::normalize(password.expose());
        salve_crypto::password::hash_password(normalized.expose())
    })
    .await
    .map_err(|_| ApiError::internal("password hashing task failed"))?;
    state
        .store
        .set_password_with_token(&token, hash, &client.audit_context())
        .await
        .map_err(|e| match e {
            StoreError::NotFound => expired(),
            other => other.into(),
        })?;
    let clear =
        HeaderValue::from_static("salve_account=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0");
    Ok((StatusCode::NO_CONTENT, [(header::SET_COOKIE, clear)]).into_response())
}

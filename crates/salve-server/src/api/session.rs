//! Staff sign-in: password, then a second factor (TOTP or a recovery code), or enrolment of
//! one on first sign-in. Each step swaps the session token (no fixation). Messages never say
//! whether an account exists.

use axum::Extension;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use salve_core::audit::{Action, Outcome};
use salve_core::clock::to_micros;
use salve_core::throttle;
use salve_store::{SessionEnd, SessionStage};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use crate::AppState;
use crate::api::rfc3339;
use crate::auth::{self, SessionCaller};
use crate::context::ClientInfo;
use crate::error::ApiError;
use crate::extract::JsonBody;

/// How long a half-finished sign-in (waiting for the second factor) lives.
const SIGN_IN_STEP_SECS: i64 = 10 * 60;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignInBody {
    pub email: String,
    pub password: String,
    /// Needed when the account belongs to several practices.
    pub practice_id: Option<uuid::Uuid>,
}

#[derive(Serialize, ToSchema)]
pub struct SignInStep {
    /// `mfa`: send a code to /api/v1/session/mfa; `enroll`: set up an authenticator first;
    /// `active`: signed in.
    pub stage: String,
    /// At stage `mfa`: the second factors this account can use (`totp`, `passkey`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub factors: Option<Vec<String>>,
    /// At stage `choose_practice` (the password was right, the account belongs to several
    /// practices, none was named): sign in again with one of these as `practice_id`. No
    /// session is started.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub practices: Option<Vec<PracticeChoice>>,
}

#[derive(Serialize, ToSchema)]
pub struct PracticeChoice {
    pub id: uuid::Uuid,
    pub name: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MfaBody {
    /// A 6-digit code from the authenticator app.
    pub code: Option<String>,
    /// Or one of the recovery codes given at enrolment.
    pub recovery_code: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfirmBody {
    pub code: String,
}

#[derive(Serialize, ToSchema)]
pub struct Enrollment {
    /// Base32 secret, for typing into an authenticator by hand.
    pub secret: String,
    pub otpauth_uri: String,
    /// The same URI as a QR code (inline SVG).
    pub qr_svg: String,
}

#[derive(Serialize, ToSchema)]
pub struct RecoveryCodes {
    /// Shown once: each works once if the authenticator is lost.
    pub recovery_codes: Vec<String>,
}

#[derive(Serialize, ToSchema)]
pub struct SessionStatus {
    pub user_id: uuid::Uuid,
    pub practice_id: uuid::Uuid,
    pub stage: String,
    /// When the session ends without activity (RFC 3339).
    pub idle_expires_at: String,
    /// When the session ends regardless.
    pub expires_at: String,
    /// When to warn the user that automatic logoff is near.
    pub warn_at: String,
}

pub(crate) fn throttle_key(kind: &str, value: &[u8]) -> Vec<u8> {
    let mut h = Sha256::new();
    h.update(b"salve:throttle:v1:");
    h.update(kind.as_bytes());
    h.update(b":");
    h.update(value);
    h.finalize().to_vec()
}

pub(crate) fn ip_key(client: &ClientInfo) -> Vec<u8> {
    throttle_key(
        "ip",
        client
            .ip
            .map(|i| i.to_string())
            .unwrap_or_default()
            .as_bytes(),
    )
}

pub(crate) fn delay_micros(failures: i64) -> i64 {
    throttle::delay_after(failures).whole_microseconds() as i64
}

pub(crate) fn too_many(retry_after_micros: i64) -> ApiError {
    let mut e = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "throttled",
        "Too many attempts",
        "too many sign-in attempts; wait and try again",
    );
    let secs = (retry_after_micros / 1_000_000).max(1);
    if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
        e.extra_headers.push((header::RETRY_AFTER, v));
    }
    e
}

fn wrong_credentials() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "sign-in-failed",
        "Sign-in failed",
        "the email or password is incorrect",
    )
}

pub(crate) fn with_cookie(state: &AppState, token: &str, body: impl Serialize) -> Response {
    let mut response = (StatusCode::OK, axum::Json(body)).into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, auth::set_cookie(state, token));
    response
}

/// Tells the practice's admins that an account of theirs was locked after repeated failures.
pub(crate) async fn notify_lock(
    state: &AppState,
    practice: salve_core::PracticeId,
    ctx: &salve_core::audit::RequestContext,
) -> Result<(), ApiError> {
    let name = state.store.practice(practice).await?.name;
    let admins = state.store.practice_admins(practice).await?;
    crate::notify::email_staff(
        state,
        practice,
        &admins,
        &format!("Sign-in lock at {name}"),
        &format!(
            "An account at {name} was locked for 15 minutes after repeated failed sign-ins. \
             See the audit log for details."
        ),
        ctx,
    )
    .await
}

/// Runs argon2 off the async runtime, a few at a time.
pub(crate) async fn verify_password(
    state: &AppState,
    password: String,
    stored: Option<String>,
) -> Result<bool, ApiError> {
    let _permit = state
        .hash_permits
        .acquire()
        .await
        .map_err(|_| ApiError::internal("password hashing pool closed"))?;
    tokio::task::spawn_blocking(move || {
        let normalized = salve_core::password_policy::normalize(&password);
        salve_crypto::password::verify_or_dummy(normalized.expose(), stored.as_deref())
    })
    .await
    .map_err(|_| ApiError::internal("password verification task failed"))
}

/// Counts a failed sign-in (no session yet) against `keys`, audits it in each practice of the
/// account (or system-wide for an unknown one), and tells the admins when it locks.
pub(crate) async fn sign_in_failed(
    state: &AppState,
    keys: &[Vec<u8>],
    now: i64,
    user_id: Option<salve_core::UserId>,
    ctx: &salve_core::audit::RequestContext,
) -> Result<(), ApiError> {
    let states = state
        .store
        .throttle_failure(keys, now, delay_micros)
        .await?;
    let memberships = match user_id {
        Some(id) => state.store.memberships(id).await?,
        None => Vec::new(),
    };
    let scopes: Vec<Option<salve_core::PracticeId>> = if memberships.is_empty() {
        vec![None]
    } else {
        memberships.iter().map(|m| Some(m.practice_id)).collect()
    };
    for practice in &scopes {
        state
            .store
            .record_sign_in(*practice, user_id, Action::SignIn, Outcome::Failure, ctx)
            .await?;
        if states.iter().any(|s| throttle::locks_now(s.failures)) {
            state
                .store
                .record_sign_in(
                    *practice,
                    user_id,
                    Action::SignInLocked,
                    Outcome::Denied,
                    ctx,
                )
                .await?;
            if let Some(practice) = practice {
                notify_lock(state, *practice, ctx).await?;
            }
        }
    }
    Ok(())
}

/// Sign in with email and password. Starts a session that still needs its second factor.
#[utoipa::path(post, path = "/api/v1/session", tag = "session", request_body = SignInBody,
    responses((status = 200, body = SignInStep, description = "password accepted; `Set-Cookie` carries the session"),
        (status = 401, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 429, body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn sign_in(
    State(state): State<AppState>,
    Extension(client): Extension<ClientInfo>,
    headers: axum::http::HeaderMap,
    body: JsonBody<SignInBody>,
) -> Result<Response, ApiError> {
    // Login CSRF: a sign-in form posted from another site is refused too.
    if !auth::csrf_ok(&state, &axum::http::Method::POST, &headers) {
        return Err(ApiError::forbidden(
            "cross-site request refused: send it from Salve's own pages",
        ));
    }
    let b = body.value;
    let ctx = client.audit_context();
    let now = to_micros(state.clock.now());
    let account_key = throttle_key("account", &state.store.sign_in_key(&b.email).await?);
    let keys = vec![account_key.clone(), ip_key(&client)];
    let locked_until = state.store.throttle_locked_until(&keys).await?;
    if locked_until > now {
        state
            .store
            .record_sign_in(None, None, Action::SignIn, Outcome::Denied, &ctx)
            .await?;
        return Err(too_many(locked_until - now));
    }
    let user = state.store.user_for_sign_in(&b.email).await?;
    let stored = user.as_ref().and_then(|u| u.password_hash.clone());
    let password_ok = verify_password(&state, b.password, stored).await?;
    let user = match user {
        Some(u) if password_ok && !u.disabled => u,
        known => {
            sign_in_failed(&state, &keys, now, known.map(|u| u.id), &ctx).await?;
            return Err(wrong_credentials());
        }
    };
    let memberships = state.store.memberships(user.id).await?;
    let practice = match (b.practice_id, memberships.as_slice()) {
        (Some(p), list) if list.iter().any(|m| m.practice_id.as_uuid() == p) => {
            salve_core::PracticeId::from_uuid(p)
        }
        (None, [only]) => only.practice_id,
        (None, []) | (Some(_), _) => {
            state
                .store
                .record_sign_in(None, Some(user.id), Action::SignIn, Outcome::Denied, &ctx)
                .await?;
            return Err(wrong_credentials());
        }
        (None, several) => {
            let mut practices = Vec::with_capacity(several.len());
            for m in several {
                practices.push(PracticeChoice {
                    id: m.practice_id.as_uuid(),
                    name: state.store.practice(m.practice_id).await?.name,
                });
            }
            return Ok(axum::Json(SignInStep {
                stage: "choose_practice".into(),
                factors: None,
                practices: Some(practices),
            })
            .into_response());
        }
    };
    state.store.throttle_reset(&account_key).await?;
    let stage = if user.mfa_enrolled {
        SessionStage::Mfa
    } else {
        SessionStage::Enroll
    };
    let token = salve_crypto::token::mint("salve_s");
    let session = state
        .store
        .create_session(
            user.id,
            practice,
            stage,
            &token.hash,
            SIGN_IN_STEP_SECS,
            now + SIGN_IN_STEP_SECS * 1_000_000,
        )
        .await?;
    state
        .store
        .set_session_client(
            session,
            &salve_core::client_family::client_family(client.user_agent.as_deref()),
        )
        .await?;
    let factors = if stage == SessionStage::Mfa {
        let mut factors = vec!["totp".to_owned()];
        if !state.store.passkeys(user.id).await?.is_empty() {
            factors.push("passkey".to_owned());
        }
        Some(factors)
    } else {
        None
    };
    Ok(with_cookie(
        &state,
        &token.secret,
        SignInStep {
            stage: stage.as_str().to_owned(),
            factors,
            practices: None,
        },
    ))
}

/// Finishes sign-in: swaps the token and makes the session active with the practice's timeouts.
pub(crate) async fn activate(
    state: &AppState,
    caller: &SessionCaller,
    ctx: &salve_core::audit::RequestContext,
    body: impl Serialize,
) -> Result<Response, ApiError> {
    let session = &caller.session;
    let (idle, absolute) = state.store.session_policy(session.practice_id).await?;
    let now = to_micros(state.clock.now());
    let token = salve_crypto::token::mint("salve_s");
    state
        .store
        .advance_session(
            session.id,
            SessionStage::Active,
            &token.hash,
            now + absolute * 1_000_000,
        )
        .await?;
    state.store.set_session_idle(session.id, idle).await?;
    state
        .store
        .record_sign_in(
            Some(session.practice_id),
            Some(session.user_id),
            Action::SignIn,
            Outcome::Success,
            ctx,
        )
        .await?;
    Ok(with_cookie(state, &token.secret, body))
}

pub(crate) fn unix_seconds(state: &AppState) -> u64 {
    state.clock.now().unix_timestamp().max(0) as u64
}

/// The throttle of a second-factor step: keyed by the account and the address. A locked
/// attempt is refused and audited. Returns the keys to count a failure against, and now.
pub(crate) async fn second_factor_gate(
    state: &AppState,
    client: &ClientInfo,
    session: &salve_store::Session,
    ctx: &salve_core::audit::RequestContext,
) -> Result<(Vec<Vec<u8>>, i64), ApiError> {
    let now = to_micros(state.clock.now());
    let keys = vec![
        throttle_key("user", session.user_id.to_string().as_bytes()),
        ip_key(client),
    ];
    let locked_until = state.store.throttle_locked_until(&keys).await?;
    if locked_until > now {
        state
            .store
            .record_sign_in(
                Some(session.practice_id),
                Some(session.user_id),
                Action::SignIn,
                Outcome::Denied,
                ctx,
            )
            .await?;
        return Err(too_many(locked_until - now));
    }
    Ok((keys, now))
}

/// Counts a failed second factor against the gate's keys, audits it, and tells the admins
/// when it locks the account.
pub(crate) async fn second_factor_failed(
    state: &AppState,
    session: &salve_store::Session,
    keys: &[Vec<u8>],
    now: i64,
    ctx: &salve_core::audit::RequestContext,
) -> Result<(), ApiError> {
    let states = state
        .store
        .throttle_failure(keys, now, delay_micros)
        .await?;
    state
        .store
        .record_sign_in(
            Some(session.practice_id),
            Some(session.user_id),
            Action::SignIn,
            Outcome::Failure,
            ctx,
        )
        .await?;
    if states.iter().any(|s| throttle::locks_now(s.failures)) {
        state
            .store
            .record_sign_in(
                Some(session.practice_id),
                Some(session.user_id),
                Action::SignInLocked,
                Outcome::Denied,
                ctx,
            )
            .await?;
        notify_lock(state, session.practice_id, ctx).await?;
    }
    Ok(())
}

/// Second factor: a TOTP code (accepted once) or a recovery code (spent).
#[utoipa::path(post, path = "/api/v1/session/mfa", tag = "session", request_body = MfaBody,
    responses((status = 200, body = SignInStep), (status = 401, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 429, body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn verify_mfa(
    State(state): State<AppState>,
    Extension(client): Extension<ClientInfo>,
    Extension(caller): Extension<SessionCaller>,
    body: JsonBody<MfaBody>,
) -> Result<Response, ApiError> {
    let ctx = client.audit_context();
    let session = &caller.session;
    let (keys, now) = second_factor_gate(&state, &client, session, &ctx).await?;
    let accepted = match (body.value.code, body.value.recovery_code) {
        (Some(code), None) => match state.store.totp_secret(session.user_id, false).await? {
            Some((secret, last)) => {
                let secret = salve_crypto::totp::TotpSecret::from_bytes(&secret)
                    .map_err(|_| ApiError::internal("stored TOTP secret has a bad length"))?;
                match salve_crypto::totp::verify(
                    &secret,
                    &code,
                    unix_seconds(&state),
                    last.map(|l| l as u64),
                ) {
                    Some(step) => {
                        state
                            .store
                            .use_totp_step(session.user_id, step as i64)
                            .await?
                    }
                    None => false,
                }
            }
            None => false,
        },
        (None, Some(code)) => {
            state
                .store
                .use_recovery_code(session.user_id, &salve_crypto::recovery::hash(&code))
                .await?
        }
        _ => {
            return Err(ApiError::validation(vec![salve_core::FieldError::new(
                "(body)",
                "exactly one of `code` or `recovery_code`",
            )]));
        }
    };
    if !accepted {
        second_factor_failed(&state, session, &keys, now, &ctx).await?;
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "mfa-failed",
            "Code not accepted",
            "the code is wrong, expired, or was already used",
        ));
    }
    state.store.throttle_reset(&keys[0]).await?;
    activate(
        &state,
        &caller,
        &ctx,
        SignInStep {
            stage: "active".into(),
            factors: None,
            practices: None,
        },
    )
    .await
}

/// First sign-in: a new authenticator secret, shown as a QR code.
#[utoipa::path(post, path = "/api/v1/session/mfa/enroll", tag = "session",
    responses((status = 200, body = Enrollment)))]
pub async fn begin_enrollment(
    State(state): State<AppState>,
    Extension(caller): Extension<SessionCaller>,
) -> Result<axum::Json<Enrollment>, ApiError> {
    let session = &caller.session;
    let secret = salve_crypto::totp::TotpSecret::generate();
    state
        .store
        .set_pending_totp(session.user_id, secret.as_bytes())
        .await?;
    let profile = state.store.user_profile(session.user_id).await?;
    let uri = salve_crypto::totp::otpauth_uri(&secret, "Salve", profile.email.expose());
    let qr_svg =
        salve_crypto::totp::qr_svg(&uri).map_err(|_| ApiError::internal("QR code too long"))?;
    Ok(axum::Json(Enrollment {
        secret: secret.to_base32().to_string(),
        otpauth_uri: uri.to_string(),
        qr_svg,
    }))
}

/// Confirms the authenticator with its first code; returns recovery codes once.
#[utoipa::path(post, path = "/api/v1/session/mfa/confirm", tag = "session", request_body = ConfirmBody,
    responses((status = 200, body = RecoveryCodes), (status = 401, body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn confirm_enrollment(
    State(state): State<AppState>,
    Extension(client): Extension<ClientInfo>,
    Extension(caller): Extension<SessionCaller>,
    body: JsonBody<ConfirmBody>,
) -> Result<Response, ApiError> {
    let ctx = client.audit_context();
    let session = &caller.session;
    let (keys, now) = second_factor_gate(&state, &client, session, &ctx).await?;
    let Some((secret, _)) = state.store.totp_secret(session.user_id, true).await? else {
        return Err(ApiError::bad_request(
            "start enrolment first (POST /api/v1/session/mfa/enroll)",
        ));
    };
    let secret = salve_crypto::totp::TotpSecret::from_bytes(&secret)
        .map_err(|_| ApiError::internal("pending TOTP secret has a bad length"))?;
    let Some(step) =
        salve_crypto::totp::verify(&secret, &body.value.code, unix_seconds(&state), None)
    else {
        state
            .store
            .throttle_failure(&keys, now, delay_micros)
            .await?;
        state
            .store
            .record_sign_in(
                Some(session.practice_id),
                Some(session.user_id),
                Action::MfaEnroll,
                Outcome::Failure,
                &ctx,
            )
            .await?;
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "mfa-failed",
            "Code not accepted",
            "the code does not match; check the authenticator's clock and try the next code",
        ));
    };
    let codes = salve_crypto::recovery::generate(salve_crypto::recovery::DEFAULT_COUNT);
    let hashes: Vec<[u8; 32]> = codes
        .iter()
        .map(|c| salve_crypto::recovery::hash(c))
        .collect();
    state
        .store
        .confirm_totp(
            &ctx,
            session.user_id,
            session.practice_id,
            step as i64,
            &hashes,
        )
        .await?;
    let body = RecoveryCodes {
        recovery_codes: codes.iter().map(|c| c.to_string()).collect(),
    };
    activate(&state, &caller, &ctx, body).await
}

/// The signed-in session: who, where, and when it ends. Does not count as activity.
#[utoipa::path(get, path = "/api/v1/session", tag = "session", responses((status = 200, body = SessionStatus)))]
pub async fn status(Extension(caller): Extension<SessionCaller>) -> axum::Json<SessionStatus> {
    let s = &caller.session;
    let idle = s.idle_deadline();
    axum::Json(SessionStatus {
        user_id: s.user_id.as_uuid(),
        practice_id: s.practice_id.as_uuid(),
        stage: s.stage.as_str().to_owned(),
        idle_expires_at: rfc3339(idle),
        expires_at: rfc3339(s.expires_at),
        warn_at: rfc3339(idle - 120 * 1_000_000),
    })
}

/// Sign out.
#[utoipa::path(delete, path = "/api/v1/session", tag = "session", responses((status = 204)))]
pub async fn sign_out(
    State(state): State<AppState>,
    Extension(client): Extension<ClientInfo>,
    Extension(caller): Extension<SessionCaller>,
) -> Result<Response, ApiError> {
    state
        .store
        .end_session(
            &caller.session,
            SessionEnd::SignOut,
            &client.audit_context(),
        )
        .await?;
    Ok((
        StatusCode::NO_CONTENT,
        [(header::SET_COOKIE, auth::clear_cookie(&state))],
    )
        .into_response())
}

/// Sign out on every device.
#[utoipa::path(post, path = "/api/v1/session/end-all", tag = "session", responses((status = 204)))]
pub async fn sign_out_everywhere(
    State(state): State<AppState>,
    Extension(client): Extension<ClientInfo>,
    Extension(caller): Extension<SessionCaller>,
) -> Result<Response, ApiError> {
    state
        .store
        .end_all_sessions(
            caller.session.user_id,
            caller.session.practice_id,
            &client.audit_context(),
        )
        .await?;
    Ok((
        StatusCode::NO_CONTENT,
        [(header::SET_COOKIE, auth::clear_cookie(&state))],
    )
        .into_response())
}

/// Your own live sessions in this practice (the one asking is marked `current`).
#[utoipa::path(get, path = "/api/v1/session/sessions", tag = "session",
    responses((status = 200, body = crate::api::users::SessionList)))]
pub async fn my_sessions(
    State(state): State<AppState>,
    Extension(caller): Extension<SessionCaller>,
) -> Result<axum::Json<crate::api::users::SessionList>, ApiError> {
    let s = &caller.session;
    let list = state.store.live_sessions(s.practice_id, s.user_id).await?;
    Ok(axum::Json(crate::api::users::session_views(
        list,
        Some(s.id),
    )))
}

/// End one of your own sessions (another device); `POST /api/v1/session/end-all` ends them all.
#[utoipa::path(delete, path = "/api/v1/session/sessions/{id}", tag = "session",
    params(("id" = uuid::Uuid, Path)),
    responses((status = 204), (status = 404, body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn end_my_session(
    State(state): State<AppState>,
    Extension(client): Extension<ClientInfo>,
    Extension(caller): Extension<SessionCaller>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Result<Response, ApiError> {
    let s = &caller.session;
    let session = id.parse().map_err(|_| ApiError::not_found("session"))?;
    state
        .store
        .end_member_session(
            &salve_core::audit::Actor::User(s.user_id),
            &client.audit_context(),
            s.practice_id,
            s.user_id,
            session,
        )
        .await
        .map_err(|e| match e {
            salve_store::StoreError::NotFound => ApiError::not_found("session"),
            other => other.into(),
        })?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

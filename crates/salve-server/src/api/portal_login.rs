//! Patients' own portal logins: after verifying through a secure link, a patient may create a
//! login (their email on file, a password, and an authenticator app). Signing in with it starts
//! the same patient session a link does. Throttled and answered like staff sign-in: the answer
//! never says whether a login exists.

use axum::Extension;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use salve_core::audit::{Action, Outcome};
use salve_core::clock::to_micros;
use salve_core::{FieldError, Sensitive, throttle};
use salve_store::PatientLogin;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::AppState;
use crate::api::portal::{self, PATIENT_COOKIE};
use crate::api::session::{
    Enrollment, MfaBody, RecoveryCodes, delay_micros, ip_key, throttle_key, too_many, unix_seconds,
    verify_password,
};
use crate::auth;
use crate::context::ClientInfo;
use crate::error::ApiError;
use crate::extract::JsonBody;

/// The cookie of a sign-in whose password was accepted, waiting for the second factor.
pub const PENDING_COOKIE: &str = "salve_patient_login";
/// How long that pending sign-in lives.
const PENDING_SECS: i64 = 5 * 60;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AccountBody {
    pub password: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatientSignInBody {
    pub practice_id: uuid::Uuid,
    pub email: String,
    pub password: String,
}

#[derive(Serialize, ToSchema)]
pub struct PatientSignInStep {
    /// `mfa`: send a code to /api/v1/portal/session/mfa; `active`: signed in.
    pub stage: String,
}

fn csrf(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    if auth::csrf_ok(state, &axum::http::Method::POST, headers) {
        Ok(())
    } else {
        Err(ApiError::forbidden("cross-site request refused"))
    }
}

fn wrong_credentials() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "sign-in-failed",
        "Sign-in failed",
        "the email or password is incorrect",
    )
}

fn code_refused() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "mfa-failed",
        "Code not accepted",
        "the code is wrong, expired, or was already used",
    )
}

fn with_cookie(
    status: StatusCode,
    cookie: axum::http::HeaderValue,
    body: impl Serialize,
) -> Response {
    let mut response = (status, axum::Json(body)).into_response();
    response.headers_mut().append(header::SET_COOKIE, cookie);
    response
}

/// Create a portal login for the verified patient: their email on file is the login name.
/// Returns an authenticator enrolment; the login works once confirmed with a first code.
#[utoipa::path(post, path = "/api/v1/portal/account", tag = "portal", request_body = AccountBody,
    responses((status = 200, body = Enrollment), (status = 401, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 409, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn create_account(
    State(state): State<AppState>,
    Extension(client): Extension<ClientInfo>,
    headers: HeaderMap,
    body: JsonBody<AccountBody>,
) -> Result<axum::Json<Enrollment>, ApiError> {
    csrf(&state, &headers)?;
    let session = portal::patient_session(&state, &headers).await?;
    let Some(email) = state.store.patient_email(&session).await? else {
        return Err(ApiError::validation(vec![FieldError::new(
            "email",
            "a portal login needs an email address on file: ask the practice to add one",
        )]));
    };
    let practice = state.store.practice(session.practice_id).await?.name;
    let password = Sensitive::new(body.value.password);
    salve_core::password_policy::check(
        password.expose(),
        &salve_core::password_policy::PasswordContext {
            email: email.expose(),
            practice_name: &practice,
        },
    )
    .map_err(|problem| {
        ApiError::validation(vec![FieldError::new("password", problem.to_string())])
    })?;
    let hash = {
        let _permit = state
            .hash_permits
            .acquire()
            .await
            .map_err(|_| ApiError::internal("password hashing pool closed"))?;
        tokio::task::spawn_blocking(move || {
            let normalized = salve_core::password_policy::normalize(password.expose());
            salve_crypto::password::hash_password(normalized.expose())
        })
        .await
        .map_err(|_| ApiError::internal("password hashing task failed"))?
    };
    let secret = salve_crypto::totp::TotpSecret::generate();
    state
        .store
        .create_patient_account(
            &session,
            &client.audit_context(),
            email.expose(),
            hash,
            secret.as_bytes(),
        )
        .await?;
    let uri = salve_crypto::totp::otpauth_uri(&secret, &practice, email.expose());
    let qr_svg =
        salve_crypto::totp::qr_svg(&uri).map_err(|_| ApiError::internal("QR code too long"))?;
    Ok(axum::Json(Enrollment {
        secret: secret.to_base32().to_string(),
        otpauth_uri: uri.to_string(),
        qr_svg,
    }))
}

/// Confirm the authenticator with its first code: the login becomes usable. Returns recovery
/// codes once.
#[utoipa::path(post, path = "/api/v1/portal/account/confirm", tag = "portal", request_body = portal::CodeBody,
    responses((status = 200, body = RecoveryCodes), (status = 401, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 429, body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn confirm_account(
    State(state): State<AppState>,
    Extension(client): Extension<ClientInfo>,
    headers: HeaderMap,
    body: JsonBody<portal::CodeBody>,
) -> Result<axum::Json<RecoveryCodes>, ApiError> {
    csrf(&state, &headers)?;
    let session = portal::patient_session(&state, &headers).await?;
    let ctx = client.audit_context();
    let now = to_micros(state.clock.now());
    let keys = vec![
        throttle_key("patient", session.patient_id.to_string().as_bytes()),
        ip_key(&client),
    ];
    let locked_until = state.store.throttle_locked_until(&keys).await?;
    if locked_until > now {
        state
            .store
            .record_patient_account_event(
                &session,
                Action::PatientAccountActivate,
                Outcome::Denied,
                &ctx,
            )
            .await?;
        return Err(too_many(locked_until - now));
    }
    let Some(secret) = state.store.patient_pending_totp(&session).await? else {
        return Err(ApiError::bad_request(
            "create the login first (POST /api/v1/portal/account)",
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
            .record_patient_account_event(
                &session,
                Action::PatientAccountActivate,
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
        .activate_patient_account(&session, &ctx, step as i64, &hashes)
        .await?;
    state.store.throttle_reset(&keys[0]).await?;
    Ok(axum::Json(RecoveryCodes {
        recovery_codes: codes.iter().map(|c| c.to_string()).collect(),
    }))
}

/// Counts a failed attempt against `keys` and audits it (and the lock, when it locks).
async fn failed(
    state: &AppState,
    keys: &[Vec<u8>],
    now: i64,
    login: Option<&PatientLogin>,
    ctx: &salve_core::audit::RequestContext,
) -> Result<(), ApiError> {
    let states = state
        .store
        .throttle_failure(keys, now, delay_micros)
        .await?;
    state
        .store
        .record_patient_sign_in(login, Action::PatientSignIn, Outcome::Failure, ctx)
        .await?;
    if states.iter().any(|s| throttle::locks_now(s.failures)) {
        state
            .store
            .record_patient_sign_in(login, Action::PatientSignInLocked, Outcome::Denied, ctx)
            .await?;
    }
    Ok(())
}

/// Sign in to the portal with email and password; the second factor follows.
#[utoipa::path(post, path = "/api/v1/portal/session", tag = "portal", request_body = PatientSignInBody,
    responses((status = 200, body = PatientSignInStep, description = "password accepted; `Set-Cookie` carries the pending sign-in"),
        (status = 401, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 429, body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn sign_in(
    State(state): State<AppState>,
    Extension(client): Extension<ClientInfo>,
    headers: HeaderMap,
    body: JsonBody<PatientSignInBody>,
) -> Result<Response, ApiError> {
    csrf(&state, &headers)?;
    let b = body.value;
    let ctx = client.audit_context();
    let now = to_micros(state.clock.now());
    let practice = salve_core::PracticeId::from_uuid(b.practice_id);
    let account_key = throttle_key(
        "patient-account",
        &state.store.patient_login_key(practice, &b.email).await?,
    );
    let keys = vec![account_key.clone(), ip_key(&client)];
    let locked_until = state.store.throttle_locked_until(&keys).await?;
    if locked_until > now {
        state
            .store
            .record_patient_sign_in(None, Action::PatientSignIn, Outcome::Denied, &ctx)
            .await?;
        return Err(too_many(locked_until - now));
    }
    let login = state.store.patient_login(practice, &b.email).await?;
    let stored = login.as_ref().map(|l| l.password_hash.clone());
    let password_ok = verify_password(&state, b.password, stored).await?;
    let login = match login {
        Some(l) if password_ok => l,
        known => {
            failed(&state, &keys, now, known.as_ref(), &ctx).await?;
            return Err(wrong_credentials());
        }
    };
    state.store.throttle_reset(&account_key).await?;
    let token = salve_crypto::token::mint("salve_pl");
    state
        .store
        .create_patient_sign_in(&login, &token.hash, now + PENDING_SECS * 1_000_000)
        .await?;
    Ok(with_cookie(
        StatusCode::OK,
        portal::cookie_header(&state, PENDING_COOKIE, &token.secret),
        PatientSignInStep {
            stage: "mfa".into(),
        },
    ))
}

/// The second factor: a TOTP code (accepted once) or a recovery code (spent). Starts a
/// patient session.
#[utoipa::path(post, path = "/api/v1/portal/session/mfa", tag = "portal", request_body = MfaBody,
    responses((status = 200, body = PatientSignInStep), (status = 401, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 429, body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn verify_mfa(
    State(state): State<AppState>,
    Extension(client): Extension<ClientInfo>,
    headers: HeaderMap,
    body: JsonBody<MfaBody>,
) -> Result<Response, ApiError> {
    csrf(&state, &headers)?;
    let pending = auth::cookie(&headers, PENDING_COOKIE).ok_or_else(ApiError::unauthorized)?;
    let pending_hash = salve_crypto::token::hash(pending);
    let login = state
        .store
        .patient_sign_in(&pending_hash)
        .await?
        .ok_or_else(ApiError::unauthorized)?;
    let ctx = client.audit_context();
    let now = to_micros(state.clock.now());
    let keys = vec![
        throttle_key("patient-login", login.account_id.as_bytes()),
        ip_key(&client),
    ];
    let locked_until = state.store.throttle_locked_until(&keys).await?;
    if locked_until > now {
        state
            .store
            .record_patient_sign_in(Some(&login), Action::PatientSignIn, Outcome::Denied, &ctx)
            .await?;
        return Err(too_many(locked_until - now));
    }
    let accepted = match (body.value.code, body.value.recovery_code) {
        (Some(code), None) => match state.store.patient_totp_secret(&login).await? {
            Some(secret) => {
                let secret = salve_crypto::totp::TotpSecret::from_bytes(&secret)
                    .map_err(|_| ApiError::internal("stored TOTP secret has a bad length"))?;
                match salve_crypto::totp::verify(&secret, &code, unix_seconds(&state), None) {
                    Some(step) => {
                        state
                            .store
                            .use_patient_totp_step(&login, step as i64)
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
                .use_patient_recovery_code(&login, &salve_crypto::recovery::hash(&code))
                .await?
        }
        _ => {
            return Err(ApiError::validation(vec![FieldError::new(
                "(body)",
                "exactly one of `code` or `recovery_code`",
            )]));
        }
    };
    if !accepted {
        failed(&state, &keys, now, Some(&login), &ctx).await?;
        return Err(code_refused());
    }
    state.store.throttle_reset(&keys[0]).await?;
    let token = salve_crypto::token::mint("salve_p");
    state
        .store
        .create_login_session(&login, &pending_hash, &token.hash, &ctx)
        .await
        .map_err(|e| match e {
            salve_store::StoreError::NotFound => ApiError::unauthorized(),
            other => other.into(),
        })?;
    let mut response = with_cookie(
        StatusCode::OK,
        portal::cookie_header(&state, PATIENT_COOKIE, &token.secret),
        PatientSignInStep {
            stage: "active".into(),
        },
    );
    response.headers_mut().append(
        header::SET_COOKIE,
        axum::http::HeaderValue::from_static(
            "salve_patient_login=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0",
        ),
    );
    Ok(response)
}

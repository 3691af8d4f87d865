//! Staff passkeys (WebAuthn): registering one while signed in, using one as the second factor
//! of a password sign-in, or signing in with one alone. Each ceremony's state is stored
//! (sealed) for five minutes and used once, so any instance can finish what another started.

use axum::Extension;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use salve_core::audit::{Action, Outcome};
use salve_core::clock::to_micros;
use salve_store::{CeremonyPurpose, SessionStage, StoredPasskey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;
use webauthn_rs::Webauthn;
use webauthn_rs::prelude::{
    Passkey, PasskeyAuthentication, PasskeyRegistration, PublicKeyCredential,
    RegisterPublicKeyCredential, Url,
};

use super::rfc3339;
use super::session::{
    SignInStep, activate, ip_key, second_factor_failed, second_factor_gate, sign_in_failed,
    throttle_key, too_many, with_cookie,
};
use crate::AppState;
use crate::auth::{self, SessionCaller};
use crate::context::ClientInfo;
use crate::error::ApiError;
use crate::extract::JsonBody;

/// How long a ceremony (challenge) may take.
pub const CEREMONY_SECS: i64 = 5 * 60;

/// The relying party: the host of the public URL (or `localhost`), and the public URL as
/// origin (or `http://localhost:{port}`, as the demo serves).
pub fn relying_party(config: &crate::ServerConfig) -> Result<Webauthn, String> {
    let origin = match &config.public_url {
        Some(url) => Url::parse(url).map_err(|e| format!("public URL: {e}"))?,
        None => Url::parse(&format!("http://localhost:{}", config.listen.port()))
            .map_err(|e| format!("local origin: {e}"))?,
    };
    let rp_id = origin
        .host_str()
        .ok_or("the public URL has no host")?
        .to_owned();
    webauthn_rs::WebauthnBuilder::new(&rp_id, &origin)
        .and_then(|b| {
            b.rp_name("Salve")
                .timeout(std::time::Duration::from_secs(CEREMONY_SECS as u64))
                .build()
        })
        .map_err(|e| format!("passkeys: {e}"))
}

#[derive(Serialize, ToSchema)]
pub struct PasskeyChallenge {
    /// Send it back with the authenticator's answer.
    pub ceremony_id: uuid::Uuid,
    /// For `navigator.credentials.create()` or `.get()` (binary fields in base64url).
    #[schema(value_type = Object)]
    pub options: serde_json::Value,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasskeyAnswer {
    pub ceremony_id: uuid::Uuid,
    /// The `PublicKeyCredential` the browser returned, as JSON (binary fields in base64url).
    #[schema(value_type = Object)]
    pub credential: serde_json::Value,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasskeySignInBody {
    pub email: String,
    /// Needed when the account belongs to several practices.
    pub practice_id: Option<uuid::Uuid>,
}

#[derive(Serialize, ToSchema)]
pub struct PasskeyInfo {
    pub id: uuid::Uuid,
    pub created_at: String,
    pub last_used_at: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct PasskeyList {
    pub passkeys: Vec<PasskeyInfo>,
}

/// What a passwordless ceremony remembers besides the WebAuthn state. An unknown account (or
/// one without passkeys) gets a challenge too, with no state to finish it.
#[derive(Serialize, Deserialize)]
struct SignInCeremony {
    account_key: Vec<u8>,
    practice_id: Option<uuid::Uuid>,
    auth: Option<PasskeyAuthentication>,
}

fn webauthn(state: &AppState) -> Result<&Webauthn, ApiError> {
    state
        .webauthn
        .as_deref()
        .ok_or_else(|| ApiError::internal("passkeys are not configured (check the public URL)"))
}

fn info(p: &StoredPasskey) -> PasskeyInfo {
    PasskeyInfo {
        id: p.id,
        created_at: rfc3339(p.created_at),
        last_used_at: p.last_used_at.map(rfc3339),
    }
}

fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, ApiError> {
    serde_json::from_slice(bytes)
        .map_err(|_| ApiError::internal(format!("stored {what} is unreadable")))
}

fn encode(value: &impl Serialize) -> Result<Vec<u8>, ApiError> {
    serde_json::to_vec(value).map_err(|_| ApiError::internal("could not encode passkey state"))
}

fn options(value: &impl Serialize) -> Result<serde_json::Value, ApiError> {
    serde_json::to_value(value).map_err(|_| ApiError::internal("could not encode a challenge"))
}

/// The user's passkeys, decoded.
async fn user_passkeys(
    state: &AppState,
    user: salve_core::UserId,
) -> Result<Vec<(uuid::Uuid, Passkey)>, ApiError> {
    state
        .store
        .passkeys(user)
        .await?
        .iter()
        .map(|p| Ok((p.id, decode::<Passkey>(&p.credential, "passkey")?)))
        .collect()
}

/// Verifies an assertion against a ceremony's state; on success updates the credential's
/// counter and last use. `None` when the passkey is not accepted.
async fn verify_assertion(
    state: &AppState,
    user: salve_core::UserId,
    auth: &PasskeyAuthentication,
    credential: serde_json::Value,
) -> Result<bool, ApiError> {
    let Ok(credential) = serde_json::from_value::<PublicKeyCredential>(credential) else {
        return Ok(false);
    };
    let Ok(result) = webauthn(state)?.finish_passkey_authentication(&credential, auth) else {
        return Ok(false);
    };
    // The passkey must still be stored (it may have been removed since the challenge).
    for (id, mut passkey) in user_passkeys(state, user).await? {
        if passkey.cred_id() == result.cred_id() {
            passkey.update_credential(&result);
            state
                .store
                .passkey_used(user, id, &encode(&passkey)?)
                .await?;
            return Ok(true);
        }
    }
    Ok(false)
}

fn passkey_refused() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "mfa-failed",
        "Passkey not accepted",
        "the passkey was not accepted, or the challenge expired or was already used; start again",
    )
}

// ---- registering and managing passkeys (signed in) --------------------------------------

/// Starts adding a passkey to the signed-in account: a creation challenge.
#[utoipa::path(post, path = "/api/v1/session/passkeys/register", tag = "session",
    responses((status = 200, body = PasskeyChallenge)))]
pub async fn begin_registration(
    State(state): State<AppState>,
    Extension(caller): Extension<SessionCaller>,
) -> Result<axum::Json<PasskeyChallenge>, ApiError> {
    let session = &caller.session;
    let profile = state.store.user_profile(session.user_id).await?;
    let exclude = user_passkeys(&state, session.user_id)
        .await?
        .iter()
        .map(|(_, p)| p.cred_id().clone())
        .collect();
    let (challenge, registration) = webauthn(&state)?
        .start_passkey_registration(
            session.user_id.as_uuid(),
            profile.email.expose(),
            profile.display_name.expose(),
            Some(exclude),
        )
        .map_err(|e| ApiError::internal(format!("passkey challenge: {e}")))?;
    let ceremony_id = state
        .store
        .begin_ceremony(
            CeremonyPurpose::Register,
            Some(session.user_id),
            Some(session.id),
            Some(session.practice_id),
            &encode(&registration)?,
            CEREMONY_SECS,
        )
        .await?;
    Ok(axum::Json(PasskeyChallenge {
        ceremony_id,
        options: options(&challenge)?,
    }))
}

/// Finishes adding a passkey with the authenticator's answer.
#[utoipa::path(post, path = "/api/v1/session/passkeys/register/finish", tag = "session",
    request_body = PasskeyAnswer,
    responses((status = 201, body = PasskeyInfo),
        (status = 400, body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn finish_registration(
    State(state): State<AppState>,
    Extension(client): Extension<ClientInfo>,
    Extension(caller): Extension<SessionCaller>,
    body: JsonBody<PasskeyAnswer>,
) -> Result<Response, ApiError> {
    let session = &caller.session;
    let refused = || {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "passkey-refused",
            "Passkey not registered",
            "the passkey was not accepted, or the challenge expired or was already used; start again",
        )
    };
    let Some(ceremony) = state
        .store
        .take_ceremony(
            body.value.ceremony_id,
            CeremonyPurpose::Register,
            Some(session.id),
        )
        .await?
        .filter(|c| !c.expired)
    else {
        return Err(refused());
    };
    let registration: PasskeyRegistration = decode(&ceremony.state, "ceremony")?;
    let credential = serde_json::from_value::<RegisterPublicKeyCredential>(body.value.credential)
        .map_err(|_| refused())?;
    let passkey = webauthn(&state)?
        .finish_passkey_registration(&credential, &registration)
        .map_err(|_| refused())?;
    let cred_id: &[u8] = passkey.cred_id().as_ref();
    let hash = Sha256::digest(cred_id);
    let id = state
        .store
        .add_passkey(
            &client.audit_context(),
            session.user_id,
            session.practice_id,
            &hash,
            &encode(&passkey)?,
        )
        .await?;
    let stored = state
        .store
        .passkeys(session.user_id)
        .await?
        .into_iter()
        .find(|p| p.id == id)
        .ok_or_else(|| ApiError::internal("the new passkey was not stored"))?;
    Ok((StatusCode::CREATED, axum::Json(info(&stored))).into_response())
}

/// The signed-in account's passkeys.
#[utoipa::path(get, path = "/api/v1/session/passkeys", tag = "session",
    responses((status = 200, body = PasskeyList)))]
pub async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<SessionCaller>,
) -> Result<axum::Json<PasskeyList>, ApiError> {
    let passkeys = state.store.passkeys(caller.session.user_id).await?;
    Ok(axum::Json(PasskeyList {
        passkeys: passkeys.iter().map(info).collect(),
    }))
}

/// Removes one of the signed-in account's passkeys.
#[utoipa::path(delete, path = "/api/v1/session/passkeys/{id}", tag = "session",
    params(("id" = String, Path, description = "the passkey's id")),
    responses((status = 204),
        (status = 404, body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn remove(
    State(state): State<AppState>,
    Extension(client): Extension<ClientInfo>,
    Extension(caller): Extension<SessionCaller>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = uuid::Uuid::parse_str(&id).map_err(|_| ApiError::not_found("passkey"))?;
    let session = &caller.session;
    state
        .store
        .remove_passkey(
            &client.audit_context(),
            session.user_id,
            session.practice_id,
            id,
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---- a passkey as the second factor -------------------------------------------------------

/// At the second-factor step: a challenge for the account's passkeys.
#[utoipa::path(post, path = "/api/v1/session/mfa/passkey", tag = "session",
    responses((status = 200, body = PasskeyChallenge),
        (status = 400, body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn begin_mfa(
    State(state): State<AppState>,
    Extension(caller): Extension<SessionCaller>,
) -> Result<axum::Json<PasskeyChallenge>, ApiError> {
    let session = &caller.session;
    let passkeys: Vec<Passkey> = user_passkeys(&state, session.user_id)
        .await?
        .into_iter()
        .map(|(_, p)| p)
        .collect();
    if passkeys.is_empty() {
        return Err(ApiError::bad_request(
            "this account has no passkey; use the authenticator app's code",
        ));
    }
    let (challenge, auth) = webauthn(&state)?
        .start_passkey_authentication(&passkeys)
        .map_err(|e| ApiError::internal(format!("passkey challenge: {e}")))?;
    let ceremony_id = state
        .store
        .begin_ceremony(
            CeremonyPurpose::Mfa,
            Some(session.user_id),
            Some(session.id),
            Some(session.practice_id),
            &encode(&auth)?,
            CEREMONY_SECS,
        )
        .await?;
    Ok(axum::Json(PasskeyChallenge {
        ceremony_id,
        options: options(&challenge)?,
    }))
}

/// Second factor: the passkey's answer. Finishes sign-in.
#[utoipa::path(post, path = "/api/v1/session/mfa/passkey/finish", tag = "session",
    request_body = PasskeyAnswer,
    responses((status = 200, body = SignInStep),
        (status = 401, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 429, body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn finish_mfa(
    State(state): State<AppState>,
    Extension(client): Extension<ClientInfo>,
    Extension(caller): Extension<SessionCaller>,
    body: JsonBody<PasskeyAnswer>,
) -> Result<Response, ApiError> {
    let ctx = client.audit_context();
    let session = &caller.session;
    let (keys, now) = second_factor_gate(&state, &client, session, &ctx).await?;
    let ceremony = state
        .store
        .take_ceremony(
            body.value.ceremony_id,
            CeremonyPurpose::Mfa,
            Some(session.id),
        )
        .await?
        .filter(|c| !c.expired);
    let accepted = match ceremony {
        Some(ceremony) => {
            let auth: PasskeyAuthentication = decode(&ceremony.state, "ceremony")?;
            verify_assertion(&state, session.user_id, &auth, body.value.credential).await?
        }
        None => false,
    };
    if !accepted {
        second_factor_failed(&state, session, &keys, now, &ctx).await?;
        return Err(passkey_refused());
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

// ---- a passkey instead of password and second factor --------------------------------------

fn csrf(state: &AppState, headers: &axum::http::HeaderMap) -> Result<(), ApiError> {
    if auth::csrf_ok(state, &axum::http::Method::POST, headers) {
        Ok(())
    } else {
        Err(ApiError::forbidden(
            "cross-site request refused: send it from Salve's own pages",
        ))
    }
}

/// Passwordless challenges one address may ask for per window.
const BEGINS_PER_WINDOW: i64 = 30;
const BEGIN_WINDOW_SECS: i64 = 10 * 60;

/// Passwordless sign-in: a challenge for the account's passkeys. The answer has the same shape
/// whether or not the account exists (an unknown one gets a challenge no passkey can answer).
#[utoipa::path(post, path = "/api/v1/session/passkey", tag = "session",
    request_body = PasskeySignInBody,
    responses((status = 200, body = PasskeyChallenge),
        (status = 429, body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn begin_sign_in(
    State(state): State<AppState>,
    Extension(client): Extension<ClientInfo>,
    headers: axum::http::HeaderMap,
    body: JsonBody<PasskeySignInBody>,
) -> Result<axum::Json<PasskeyChallenge>, ApiError> {
    csrf(&state, &headers)?;
    let b = body.value;
    let now = to_micros(state.clock.now());
    let account_key = throttle_key("account", &state.store.sign_in_key(&b.email).await?);
    let locked_until = state
        .store
        .throttle_locked_until(&[account_key.clone(), ip_key(&client)])
        .await?;
    if locked_until > now {
        return Err(too_many(locked_until - now));
    }
    // Each challenge stores a ceremony for 5 minutes: bound the rows one address can create.
    let address = client.ip.map(|i| i.to_string()).unwrap_or_default();
    let begin_key = throttle_key("passkey-begin", address.as_bytes());
    let window = BEGIN_WINDOW_SECS * 1_000_000;
    let begun = state
        .store
        .code_sends_since(std::slice::from_ref(&begin_key), now - window)
        .await?;
    if begun[0] >= BEGINS_PER_WINDOW {
        return Err(too_many(window));
    }
    state.store.record_code_send(&begin_key, now).await?;
    let user = state
        .store
        .user_for_sign_in(&b.email)
        .await?
        .filter(|u| !u.disabled);
    let passkeys: Vec<Passkey> = match &user {
        Some(u) => user_passkeys(&state, u.id)
            .await?
            .into_iter()
            .map(|(_, p)| p)
            .collect(),
        None => Vec::new(),
    };
    let webauthn = webauthn(&state)?;
    let (challenge, auth) = if passkeys.is_empty() {
        // A real challenge, with no credential allowed and no state to finish it.
        let (mut challenge, _) = webauthn
            .start_discoverable_authentication()
            .map_err(|e| ApiError::internal(format!("passkey challenge: {e}")))?;
        challenge.mediation = None;
        challenge.public_key.extensions = None;
        (challenge, None)
    } else {
        let (challenge, auth) = webauthn
            .start_passkey_authentication(&passkeys)
            .map_err(|e| ApiError::internal(format!("passkey challenge: {e}")))?;
        (challenge, Some(auth))
    };
    let ceremony = SignInCeremony {
        account_key,
        practice_id: b.practice_id,
        auth,
    };
    let ceremony_id = state
        .store
        .begin_ceremony(
            CeremonyPurpose::SignIn,
            user.filter(|_| ceremony.auth.is_some()).map(|u| u.id),
            None,
            None,
            &encode(&ceremony)?,
            CEREMONY_SECS,
        )
        .await?;
    Ok(axum::Json(PasskeyChallenge {
        ceremony_id,
        options: options(&challenge)?,
    }))
}

/// Passwordless sign-in: the passkey's answer. Starts an active session.
#[utoipa::path(post, path = "/api/v1/session/passkey/finish", tag = "session",
    request_body = PasskeyAnswer,
    responses((status = 200, body = SignInStep, description = "signed in; `Set-Cookie` carries the session"),
        (status = 401, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 429, body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn finish_sign_in(
    State(state): State<AppState>,
    Extension(client): Extension<ClientInfo>,
    headers: axum::http::HeaderMap,
    body: JsonBody<PasskeyAnswer>,
) -> Result<Response, ApiError> {
    csrf(&state, &headers)?;
    let ctx = client.audit_context();
    let now = to_micros(state.clock.now());
    let b = body.value;
    let refused = || {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "sign-in-failed",
            "Sign-in failed",
            "the passkey was not accepted, or the challenge expired or was already used",
        )
    };
    let ceremony = state
        .store
        .take_ceremony(b.ceremony_id, CeremonyPurpose::SignIn, None)
        .await?;
    let Some(ceremony) = ceremony else {
        // Unknown or already used: nothing names the account, so only the address counts.
        let keys = vec![ip_key(&client)];
        let locked_until = state.store.throttle_locked_until(&keys).await?;
        if locked_until > now {
            return Err(too_many(locked_until - now));
        }
        sign_in_failed(&state, &keys, now, None, &ctx).await?;
        return Err(refused());
    };
    let user = ceremony.user_id;
    let remembered: SignInCeremony = decode(&ceremony.state, "ceremony")?;
    let keys = vec![remembered.account_key.clone(), ip_key(&client)];
    let locked_until = state.store.throttle_locked_until(&keys).await?;
    if locked_until > now {
        state
            .store
            .record_sign_in(None, user, Action::SignIn, Outcome::Denied, &ctx)
            .await?;
        return Err(too_many(locked_until - now));
    }
    let verified = match (user, &remembered.auth) {
        (Some(user), Some(auth)) if !ceremony.expired => {
            verify_assertion(&state, user, auth, b.credential).await?
        }
        _ => false,
    };
    let profile = match user {
        Some(user) if verified => Some(state.store.user_profile(user).await?),
        _ => None,
    };
    let Some(profile) = profile.filter(|p| !p.disabled) else {
        sign_in_failed(&state, &keys, now, user, &ctx).await?;
        return Err(refused());
    };
    let memberships = state.store.memberships(profile.id).await?;
    let practice = match (remembered.practice_id, memberships.as_slice()) {
        (Some(p), list) if list.iter().any(|m| m.practice_id.as_uuid() == p) => {
            salve_core::PracticeId::from_uuid(p)
        }
        (None, [only]) => only.practice_id,
        (None, []) | (Some(_), _) => {
            state
                .store
                .record_sign_in(
                    None,
                    Some(profile.id),
                    Action::SignIn,
                    Outcome::Denied,
                    &ctx,
                )
                .await?;
            return Err(refused());
        }
        (None, _) => {
            return Err(ApiError::validation(vec![salve_core::FieldError::new(
                "practice_id",
                "the practice to sign in to (this account belongs to several); start again with it",
            )]));
        }
    };
    state.store.throttle_reset(&remembered.account_key).await?;
    let (idle, absolute) = state.store.session_policy(practice).await?;
    let token = salve_crypto::token::mint("salve_s");
    let session = state
        .store
        .create_session(
            profile.id,
            practice,
            SessionStage::Active,
            &token.hash,
            idle,
            now + absolute * 1_000_000,
        )
        .await?;
    state
        .store
        .set_session_client(
            session,
            &salve_core::client_family::client_family(client.user_agent.as_deref()),
        )
        .await?;
    state
        .store
        .record_sign_in(
            Some(practice),
            Some(profile.id),
            Action::SignIn,
            Outcome::Success,
            &ctx,
        )
        .await?;
    Ok(with_cookie(
        &state,
        &token.secret,
        SignInStep {
            stage: "active".into(),
            factors: None,
            practices: None,
        },
    ))
}

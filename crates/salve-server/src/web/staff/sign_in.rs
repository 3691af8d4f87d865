//! Sign-in pages: email and password, then the authenticator's code (or a recovery code), or on
//! first sign-in the enrolment of an authenticator and the recovery codes, shown once. Each step
//! calls the API's sign-in operation, which throttles, audits and swaps the session cookie.

use askama::Template;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Form};
use serde::Deserialize;

use super::{NextForm, copy_cookies, json_of, landing};
use crate::AppState;
use crate::api::session;
use crate::auth::SessionCaller;
use crate::context::ClientInfo;
use crate::error::ApiError;
use crate::extract::JsonBody;
use crate::web::{Page, next_query, safe_next};

fn body<T>(value: T) -> JsonBody<T> {
    JsonBody {
        value,
        sha256: [0; 32],
    }
}

/// `?next=` to carry to the following step ("" when there is none).
fn carry(next: Option<&str>) -> String {
    safe_next(next)
        .map(|n| format!("?next={}", next_query(&n)))
        .unwrap_or_default()
}

/// What a refused step tells the person: the API's message, never whether an account exists.
fn message(e: &ApiError) -> String {
    let mut text = e.detail.clone();
    if let Some(first) = text.get(..1) {
        text = first.to_uppercase() + &text[1..];
    }
    if !text.ends_with('.') {
        text.push('.');
    }
    text
}

/// A throttled step says when to try again, as the API does.
fn with_retry_after(mut page: Response, e: &ApiError) -> Response {
    for (name, value) in &e.extra_headers {
        if name == axum::http::header::RETRY_AFTER {
            page.headers_mut().insert(name, value.clone());
        }
    }
    page
}

#[derive(Deserialize, Default)]
pub(crate) struct SignInQuery {
    next: Option<String>,
    expired: Option<String>,
    signed_out: Option<String>,
}

#[derive(Template)]
#[template(path = "staff/sign_in.html")]
struct SignInPage<'a> {
    page: &'a Page,
    next: String,
    email: String,
    error: Option<String>,
    notice: Option<&'static str>,
    /// The practices to choose from, once the password showed the account has several.
    practices: Vec<PracticeOption>,
}

pub(crate) struct PracticeOption {
    id: String,
    name: String,
}

pub(crate) async fn form(page: Page, Query(q): Query<SignInQuery>) -> Response {
    let notice = if q.expired.is_some() {
        Some("You were signed out after a period of inactivity.")
    } else if q.signed_out.is_some() {
        Some("You are signed out.")
    } else {
        None
    };
    page.render(&SignInPage {
        page: &page,
        next: safe_next(q.next.as_deref()).unwrap_or_default(),
        email: String::new(),
        error: None,
        notice,
        practices: Vec::new(),
    })
}

#[derive(Deserialize)]
pub(crate) struct SignInForm {
    email: Option<String>,
    password: Option<String>,
    next: Option<String>,
    practice_id: Option<String>,
}

pub(crate) async fn submit(
    page: Page,
    State(state): State<AppState>,
    Extension(client): Extension<ClientInfo>,
    headers: HeaderMap,
    Form(f): Form<SignInForm>,
) -> Response {
    let next = safe_next(f.next.as_deref());
    let email = f.email.unwrap_or_default().trim().to_owned();
    let password = f.password.unwrap_or_default();
    let refuse = |status: StatusCode, error: String, email: String| {
        page.render_with_status(
            status,
            &SignInPage {
                page: &page,
                next: next.clone().unwrap_or_default(),
                email,
                error: Some(error),
                notice: None,
                practices: Vec::new(),
            },
        )
    };
    if email.is_empty() || password.is_empty() {
        return refuse(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Enter your email and your password.".into(),
            email,
        );
    }
    let result = session::sign_in(
        State(state),
        Extension(client),
        headers,
        body(session::SignInBody {
            email: email.clone(),
            password,
            practice_id: f.practice_id.as_deref().and_then(|p| p.parse().ok()),
        }),
    )
    .await;
    match result {
        Ok(response) => {
            let (_, headers, json) = json_of(response).await;
            if json["stage"] == "choose_practice" {
                // The password is not kept anywhere: the picker asks for it once more.
                let practices = json["practices"]
                    .as_array()
                    .map(|list| {
                        list.iter()
                            .map(|p| PracticeOption {
                                id: p["id"].as_str().unwrap_or_default().to_owned(),
                                name: p["name"].as_str().unwrap_or_default().to_owned(),
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                return page.render(&SignInPage {
                    page: &page,
                    next: next.clone().unwrap_or_default(),
                    email,
                    error: None,
                    notice: Some(
                        "Your account belongs to several practices. Choose one, then enter your password again.",
                    ),
                    practices,
                });
            }
            let to = match json["stage"].as_str() {
                Some("enroll") => "/sign-in/enroll",
                Some("mfa") => "/sign-in/code",
                _ => "/inbox",
            };
            let mut r = page.redirect(&format!("{to}{}", carry(next.as_deref())));
            copy_cookies(&headers, &mut r);
            r
        }
        Err(e) => with_retry_after(refuse(e.status, message(&e), email), &e),
    }
}

#[derive(Template)]
#[template(path = "staff/sign_in_code.html")]
struct CodePage<'a> {
    page: &'a Page,
    next: String,
    error: Option<String>,
}

pub(crate) async fn code_form(page: Page, Query(q): Query<NextForm>) -> Response {
    page.render(&CodePage {
        page: &page,
        next: safe_next(q.next.as_deref()).unwrap_or_default(),
        error: None,
    })
}

#[derive(Deserialize)]
pub(crate) struct CodeForm {
    code: Option<String>,
    next: Option<String>,
}

/// Six digits (spaces allowed) is an authenticator code; anything else a recovery code.
fn is_totp(code: &str) -> bool {
    let digits: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    digits.len() == 6 && digits.chars().all(|c| c.is_ascii_digit())
}

pub(crate) async fn code_submit(
    page: Page,
    State(state): State<AppState>,
    Extension(client): Extension<ClientInfo>,
    Extension(caller): Extension<SessionCaller>,
    Form(f): Form<CodeForm>,
) -> Response {
    let next = safe_next(f.next.as_deref());
    let code = f.code.unwrap_or_default().trim().to_owned();
    let refuse = |status: StatusCode, error: String| {
        page.render_with_status(
            status,
            &CodePage {
                page: &page,
                next: next.clone().unwrap_or_default(),
                error: Some(error),
            },
        )
    };
    if code.is_empty() {
        return refuse(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Enter the code from your authenticator app, or a recovery code.".into(),
        );
    }
    let mfa = if is_totp(&code) {
        session::MfaBody {
            code: Some(code.chars().filter(|c| !c.is_whitespace()).collect()),
            recovery_code: None,
        }
    } else {
        session::MfaBody {
            code: None,
            recovery_code: Some(code),
        }
    };
    match session::verify_mfa(
        State(state),
        Extension(client),
        Extension(caller),
        body(mfa),
    )
    .await
    {
        Ok(response) => {
            let mut r = page.redirect(&landing(next.as_deref()));
            copy_cookies(response.headers(), &mut r);
            r
        }
        Err(e) => with_retry_after(refuse(e.status, message(&e)), &e),
    }
}

#[derive(Template)]
#[template(path = "staff/sign_in_enroll.html")]
struct EnrollPage<'a> {
    page: &'a Page,
    next: String,
    secret: String,
    qr_svg: String,
    error: Option<String>,
}

#[derive(Template)]
#[template(path = "staff/sign_in_recovery.html")]
struct RecoveryPage<'a> {
    page: &'a Page,
    next: String,
    codes: Vec<String>,
}

/// The authenticator secret being enrolled: the pending one (so a mistyped code does not change
/// the QR code the person already scanned), or a new one.
async fn enrollment(
    state: &AppState,
    caller: &SessionCaller,
) -> Result<(String, String), ApiError> {
    let user = caller.session.user_id;
    if let Some((bytes, _)) = state.store.totp_secret(user, true).await? {
        let secret = salve_crypto::totp::TotpSecret::from_bytes(&bytes)
            .map_err(|_| ApiError::internal("pending TOTP secret has a bad length"))?;
        let profile = state.store.user_profile(user).await?;
        let uri = salve_crypto::totp::otpauth_uri(&secret, "Salve", profile.email.expose());
        let svg =
            salve_crypto::totp::qr_svg(&uri).map_err(|_| ApiError::internal("QR code too long"))?;
        return Ok((secret.to_base32().to_string(), svg));
    }
    let e = session::begin_enrollment(State(state.clone()), Extension(caller.clone()))
        .await?
        .0;
    Ok((e.secret, e.qr_svg))
}

/// The secret in groups of four, easier to type into an authenticator.
fn grouped(secret: &str) -> String {
    secret
        .as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

async fn render_enroll(
    page: &Page,
    state: &AppState,
    caller: &SessionCaller,
    next: String,
    status: StatusCode,
    error: Option<String>,
) -> Response {
    match enrollment(state, caller).await {
        Ok((secret, qr_svg)) => page.render_with_status(
            status,
            &EnrollPage {
                page,
                next,
                secret: grouped(&secret),
                qr_svg,
                error,
            },
        ),
        Err(e) => e.into_response(),
    }
}

pub(crate) async fn enroll_form(
    page: Page,
    State(state): State<AppState>,
    Extension(caller): Extension<SessionCaller>,
    Query(q): Query<NextForm>,
) -> Response {
    let next = safe_next(q.next.as_deref()).unwrap_or_default();
    render_enroll(&page, &state, &caller, next, StatusCode::OK, None).await
}

pub(crate) async fn enroll_submit(
    page: Page,
    State(state): State<AppState>,
    Extension(client): Extension<ClientInfo>,
    Extension(caller): Extension<SessionCaller>,
    Form(f): Form<CodeForm>,
) -> Response {
    let next = safe_next(f.next.as_deref()).unwrap_or_default();
    let code: String = f
        .code
        .unwrap_or_default()
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    if code.is_empty() {
        return render_enroll(
            &page,
            &state,
            &caller,
            next,
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("Enter the 6-digit code your authenticator app shows.".into()),
        )
        .await;
    }
    let result = session::confirm_enrollment(
        State(state.clone()),
        Extension(client),
        Extension(caller.clone()),
        body(session::ConfirmBody { code }),
    )
    .await;
    match result {
        Ok(response) => {
            let (_, headers, json) = json_of(response).await;
            let codes = json["recovery_codes"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|c| c.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            let mut r = page.render(&RecoveryPage {
                page: &page,
                next,
                codes,
            });
            // The codes are shown once: never kept by a cache.
            r.headers_mut().insert(
                axum::http::header::CACHE_CONTROL,
                axum::http::HeaderValue::from_static("no-store"),
            );
            copy_cookies(&headers, &mut r);
            r
        }
        Err(e) => with_retry_after(
            render_enroll(&page, &state, &caller, next, e.status, Some(message(&e))).await,
            &e,
        ),
    }
}

/// After the recovery codes: on to where the person was going.
pub(crate) async fn continue_to(page: Page, Form(f): Form<NextForm>) -> Response {
    page.redirect(&landing(f.next.as_deref()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn six_digits_are_a_code_anything_else_a_recovery_code() {
        assert!(is_totp("123456"));
        assert!(is_totp("123 456"));
        assert!(!is_totp("abcd-efgh-ijkl"));
        assert!(!is_totp("12345"));
    }

    #[test]
    fn the_secret_is_grouped_for_typing() {
        assert_eq!(grouped("ABCDEFGHIJ"), "ABCD EFGH IJ");
    }
}

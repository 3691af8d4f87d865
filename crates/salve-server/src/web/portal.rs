//! The patient portal: from the link in a text to the message in under a minute, on an old
//! phone, in English or Spanish. Server-rendered forms that work without JavaScript; each page
//! calls the portal's JSON API handlers (which verify, audit and apply the rules) and renders.
//!
//! Language: the patient's own choice (the "English / Español" switch, a cookie), else their
//! preferred language once verified, else the browser's `Accept-Language`.

use askama::Template;
use axum::Extension;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use salve_core::links::LinkState;
use salve_core::patient::ContactKind;
use salve_store::PatientSession;

use crate::AppState;
use crate::api::portal::{
    self as api, BirthDateBody, CodeBody, LINK_COOKIE, PATIENT_COOKIE, PortalMe,
};
use crate::auth;
use crate::context::ClientInfo;
use crate::error::ApiError;
use crate::extract::JsonBody;
use crate::routes::Access;
use crate::web::{Lang, Page, PageRoute, page, safe_next};

mod access;
mod conversation;
pub(crate) mod pdf;
mod preferences;

/// The reply form's path: a multipart form whose `csrf` part the handler checks.
pub const REPLY_PATH: &str = "/portal/reply";
/// The patient's explicit language choice (`en` or `es`); not sensitive.
pub const LANG_COOKIE: &str = "salve_lang";

pub(crate) fn routes() -> Vec<PageRoute> {
    use Access::{PatientLink, PatientSession as Verified, Public};
    vec![
        // Public: without a link it only says to open the link; with one, the handler reads it
        // (the practice's name, the link's state) and spends nothing.
        page(Method::GET, "/portal/verify", Public, get(verify_form)),
        page(
            Method::POST,
            "/portal/verify",
            PatientLink,
            post(verify_submit),
        ),
        page(Method::GET, "/portal/code", PatientLink, get(code_form)),
        page(Method::POST, "/portal/code", PatientLink, post(code_submit)),
        page(Method::GET, "/portal", Verified, get(conversation::show)),
        page(
            Method::POST,
            REPLY_PATH,
            Verified,
            post(conversation::reply).layer(DefaultBodyLimit::max(conversation::REPLY_FORM_LIMIT)),
        ),
        page(
            Method::GET,
            "/portal/attachments/{id}",
            Verified,
            get(conversation::attachment),
        ),
        page(
            Method::GET,
            "/portal/preferences",
            Verified,
            get(preferences::show),
        ),
        page(
            Method::POST,
            "/portal/preferences",
            Verified,
            post(preferences::save_consent),
        ),
        page(
            Method::POST,
            "/portal/preferences/confidential",
            Verified,
            post(preferences::save_confidential),
        ),
        page(
            Method::POST,
            "/portal/preferences/confidential/{id}/withdraw",
            Verified,
            post(preferences::withdraw_confidential),
        ),
        page(Method::GET, "/portal/access", Verified, get(access::show)),
        page(
            Method::GET,
            "/portal/messages.pdf",
            Verified,
            get(pdf::download),
        ),
        page(Method::POST, "/portal/sign-out", Verified, post(sign_out)),
        page(Method::POST, "/portal/language", Public, post(language)),
    ]
}

// ---- language -----------------------------------------------------------------------------

fn chosen_lang(headers: &HeaderMap) -> Option<Lang> {
    match auth::cookie(headers, LANG_COOKIE)? {
        "es" => Some(Lang::Es),
        "en" => Some(Lang::En),
        _ => None,
    }
}

/// The browser's preference between English and Spanish (`Accept-Language`, by q-value).
fn accept_language(headers: &HeaderMap) -> Lang {
    let Some(raw) = headers
        .get(header::ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok())
    else {
        return Lang::En;
    };
    let mut best: Option<(f32, Lang)> = None;
    for item in raw.split(',').take(20) {
        let mut parts = item.split(';');
        let tag = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let q = parts
            .find_map(|p| p.trim().strip_prefix("q="))
            .and_then(|q| q.parse::<f32>().ok())
            .unwrap_or(1.0);
        let lang = if tag == "es" || tag.starts_with("es-") {
            Lang::Es
        } else if tag == "en" || tag.starts_with("en-") {
            Lang::En
        } else {
            continue;
        };
        if best.is_none_or(|(b, _)| q > b) {
            best = Some((q, lang));
        }
    }
    best.map_or(Lang::En, |(_, l)| l)
}

/// Before verification: the patient's choice, else the browser's.
pub(crate) fn lang_before_verification(headers: &HeaderMap) -> Lang {
    chosen_lang(headers).unwrap_or_else(|| accept_language(headers))
}

/// Once verified: the patient's choice, else their preferred language.
pub(crate) fn lang_for_patient(headers: &HeaderMap, preferred: &str) -> Lang {
    chosen_lang(headers).unwrap_or_else(|| Lang::from_preference(Some(preferred)))
}

/// The "English / Español" switch (a form button, so it works without JavaScript): remembers
/// the choice and goes back to the page.
async fn language(page: Page, body: Bytes) -> Response {
    let code = match form_field(&body, "to").as_str() {
        "es" => "es",
        _ => "en",
    };
    let next = form_field(&body, "next");
    let next = safe_next(Some(&next))
        .filter(|n| n.starts_with("/portal"))
        .unwrap_or_else(|| "/portal".to_owned());
    let mut response = page.redirect(&next);
    if let Ok(v) = HeaderValue::from_str(&format!(
        "{LANG_COOKIE}={code}; Path=/; Max-Age=31536000; SameSite=Lax"
    )) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
    response
}

/// Pages with the patient's messages or details are never kept by a browser or a proxy.
pub(crate) fn no_store(response: &mut Response) {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

// ---- the frame ----------------------------------------------------------------------------

/// What the portal's frame shows: the practice, the language switch, and (once verified) the
/// navigation and sign-out.
pub struct PortalFrame {
    pub es: bool,
    pub practice: String,
    pub signed_in: bool,
    /// This page, where the language switch returns to.
    pub here: String,
    /// The `href` of the current area.
    pub current: &'static str,
}

impl PortalFrame {
    fn new(page: &Page, practice: String, signed_in: bool, current: &'static str) -> Self {
        PortalFrame {
            es: page.lang == Lang::Es,
            practice,
            signed_in,
            here: page.here.clone(),
            current,
        }
    }
}

/// The verified patient: session, who they are, and the page in their language.
pub(crate) struct Verified {
    pub session: PatientSession,
    pub me: PortalMe,
    pub page: Page,
    pub frame: PortalFrame,
}

pub(crate) async fn verified(
    state: &AppState,
    client: &ClientInfo,
    headers: &HeaderMap,
    page: Page,
    current: &'static str,
) -> Result<Verified, ApiError> {
    let session = api::patient_session(state, headers).await?;
    let axum::Json(mut me) = api::me(
        State(state.clone()),
        Extension(client.clone()),
        headers.clone(),
    )
    .await?;
    let lang = lang_for_patient(headers, &me.language);
    if lang != Lang::from_preference(Some(&me.language)) {
        // The patient switched language: say when to expect a reply in that language.
        let system_lang = match lang {
            Lang::Es => salve_core::system_messages::Language::Es,
            Lang::En => salve_core::system_messages::Language::En,
        };
        me.expected_reply =
            crate::api::hours::expected_reply(state, session.practice_id, system_lang).await?;
    }
    let page = page.with_lang(lang);
    let frame = PortalFrame::new(&page, me.practice.clone(), true, current);
    Ok(Verified {
        session,
        me,
        page,
        frame,
    })
}

// ---- step one: date of birth --------------------------------------------------------------

#[derive(Template)]
#[template(path = "portal/verify.html")]
struct VerifyPage<'a> {
    page: &'a Page,
    frame: &'a PortalFrame,
    es: bool,
    /// No link cookie: nothing to verify.
    no_link: bool,
    /// The link cannot be used any more (locked, expired): no form, what to do instead.
    blocked: Option<Problem>,
    error: Option<Problem>,
    birth_date: String,
}

/// A refusal explained in plain words, with what to do next.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Problem {
    NoLink,
    InvalidLink,
    Locked,
    Expired,
    WrongBirthDate,
    BadDate,
    WrongCode,
    BadCode,
    TooManyCodes,
    NotDelivered,
}

impl Problem {
    /// (`es` may come by reference from a template.)
    fn text(self, es: impl std::borrow::Borrow<bool>) -> &'static str {
        match (self, *es.borrow()) {
            (Problem::NoLink, false) => "Open the link in the text or email we sent you.",
            (Problem::NoLink, true) => {
                "Abra el enlace del mensaje de texto o correo electrónico que le enviamos."
            }
            (Problem::InvalidLink, false) => {
                "This link isn't valid. Open the link exactly as it is in the text or email we sent you, or ask the practice to send a new link."
            }
            (Problem::InvalidLink, true) => {
                "Este enlace no es válido. Abra el enlace tal como aparece en el mensaje que le enviamos, o pida al consultorio que le envíe un enlace nuevo."
            }
            (Problem::Locked, false) => {
                "This link is locked after too many tries. Ask the practice to send a new link."
            }
            (Problem::Locked, true) => {
                "Este enlace se bloqueó por demasiados intentos. Pida al consultorio que le envíe un enlace nuevo."
            }
            (Problem::Expired, false) => {
                "This link has expired or was withdrawn. Ask the practice to send a new link."
            }
            (Problem::Expired, true) => {
                "Este enlace venció o fue retirado. Pida al consultorio que le envíe un enlace nuevo."
            }
            (Problem::WrongBirthDate, false) => {
                "That date of birth doesn't match our records. Check the year, month and day and try again. After 5 wrong tries the link locks."
            }
            (Problem::WrongBirthDate, true) => {
                "Esa fecha de nacimiento no coincide con nuestros registros. Revise el año, el mes y el día e intente de nuevo. Después de 5 intentos fallidos, el enlace se bloquea."
            }
            (Problem::BadDate, false) => {
                "Enter your date of birth, for example 1984-07-02 (year-month-day)."
            }
            (Problem::BadDate, true) => {
                "Escriba su fecha de nacimiento, por ejemplo 1984-07-02 (año-mes-día)."
            }
            (Problem::WrongCode, false) => {
                "That code isn't right. Check the newest text or email from us and try again. After 5 wrong tries the link locks."
            }
            (Problem::WrongCode, true) => {
                "Ese código no es correcto. Revise el mensaje más reciente que le enviamos e intente de nuevo. Después de 5 intentos fallidos, el enlace se bloquea."
            }
            (Problem::BadCode, false) => "Enter the 6-digit code we sent you.",
            (Problem::BadCode, true) => "Escriba el código de 6 dígitos que le enviamos.",
            (Problem::TooManyCodes, false) => {
                "We've sent too many codes. Wait 10 minutes, then try again."
            }
            (Problem::TooManyCodes, true) => {
                "Enviamos demasiados códigos. Espere 10 minutos y vuelva a intentarlo."
            }
            (Problem::NotDelivered, false) => {
                "We couldn't send the code. Try again in a few minutes."
            }
            (Problem::NotDelivered, true) => {
                "No pudimos enviar el código. Intente de nuevo en unos minutos."
            }
        }
    }
}

/// The link's problem from an API refusal, or `None` for anything unexpected.
fn link_problem(e: &ApiError, wrong: Problem) -> Option<Problem> {
    Some(match e.slug {
        "not-verified" => wrong,
        "link-locked" => Problem::Locked,
        "link-expired" => Problem::Expired,
        "no-link" if e.status == StatusCode::UNAUTHORIZED => Problem::NoLink,
        "no-link" => Problem::InvalidLink,
        "too-many-codes" => Problem::TooManyCodes,
        "not-delivered" => Problem::NotDelivered,
        _ => return None,
    })
}

/// The link in the cookie, read without spending anything (for the page's wording).
async fn current_link(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<Result<salve_store::LinkInfo, Problem>, ApiError> {
    let Some(token) = auth::cookie(headers, LINK_COOKIE) else {
        return Ok(Err(Problem::NoLink));
    };
    let link = state
        .store
        .link_by_token(&salve_crypto::token::hash(token))
        .await?;
    Ok(match link {
        None => Err(Problem::InvalidLink),
        Some(l) => match l.state {
            LinkState::Usable => Ok(l),
            LinkState::Locked => Err(Problem::Locked),
            LinkState::Expired | LinkState::Revoked => Err(Problem::Expired),
        },
    })
}

async fn practice_name(state: &AppState, link: Option<&salve_store::LinkInfo>) -> String {
    match link {
        Some(l) => state
            .store
            .practice(l.practice_id)
            .await
            .map(|p| p.name)
            .unwrap_or_default(),
        None => String::new(),
    }
}

async fn render_verify(
    state: &AppState,
    headers: &HeaderMap,
    page: Page,
    error: Option<Problem>,
    birth_date: String,
) -> Result<Response, ApiError> {
    let page = page.with_lang(lang_before_verification(headers));
    let link = current_link(state, headers).await?;
    let frame = PortalFrame::new(
        &page,
        practice_name(state, link.as_ref().ok()).await,
        false,
        "",
    );
    let (no_link, blocked) = match &link {
        Ok(_) => (false, None),
        Err(Problem::NoLink) => (true, None),
        Err(p) => (false, Some(*p)),
    };
    let status = if error.is_some() || blocked.is_some() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    Ok(page.render_with_status(
        status,
        &VerifyPage {
            page: &page,
            frame: &frame,
            es: frame.es,
            no_link,
            blocked,
            error,
            birth_date,
        },
    ))
}

async fn verify_form(
    State(state): State<AppState>,
    headers: HeaderMap,
    page: Page,
) -> Result<Response, ApiError> {
    // Already verified (a second tap on the link): straight to the messages.
    if api::patient_session(&state, &headers).await.is_ok() {
        return Ok(page.redirect("/portal"));
    }
    render_verify(&state, &headers, page, None, String::new()).await
}

/// One field of a urlencoded form ("" when absent).
pub(crate) fn form_field(body: &[u8], name: &str) -> String {
    form_urlencoded::parse(body)
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// `YYYY-MM-DD` as a date input sends it (old browsers show a text box: the hint says how).
fn looks_like_date(raw: &str) -> bool {
    let b = raw.as_bytes();
    b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
}

async fn verify_submit(
    State(state): State<AppState>,
    Extension(client): Extension<ClientInfo>,
    headers: HeaderMap,
    page: Page,
    body: Bytes,
) -> Result<Response, ApiError> {
    let birth_date = form_field(&body, "birth_date").trim().to_owned();
    if !looks_like_date(&birth_date) {
        // Not a date at all: no attempt is spent on a typo.
        return render_verify(&state, &headers, page, Some(Problem::BadDate), birth_date).await;
    }
    let result = api::submit_birth_date(
        State(state.clone()),
        Extension(client),
        headers.clone(),
        JsonBody {
            value: BirthDateBody {
                birth_date: birth_date.clone(),
            },
            sha256: [0; 32],
        },
    )
    .await;
    match result {
        Ok(_) => Ok(page.redirect("/portal/code")),
        Err(e) => match link_problem(&e, Problem::WrongBirthDate) {
            Some(p) => render_verify(&state, &headers, page, Some(p), birth_date).await,
            None => Err(e),
        },
    }
}

// ---- step two: the code -------------------------------------------------------------------

#[derive(Template)]
#[template(path = "portal/code.html")]
struct CodePage<'a> {
    page: &'a Page,
    frame: &'a PortalFrame,
    es: bool,
    no_link: bool,
    blocked: Option<Problem>,
    error: Option<Problem>,
    /// Where the code went, partly hidden: "•••• 42" or "a•••@example.org".
    sent_to: String,
    by_text: bool,
}

/// The contact point, mostly hidden: a phone's last two digits, an email's first letter and
/// domain.
fn masked(kind: ContactKind, contact: &str) -> String {
    match kind {
        ContactKind::Phone => {
            let digits: Vec<char> = contact.chars().filter(char::is_ascii_digit).collect();
            let tail: String = digits[digits.len().saturating_sub(2)..].iter().collect();
            format!("•••• {tail}")
        }
        ContactKind::Email => match contact.split_once('@') {
            Some((local, domain)) => {
                let first: String = local.chars().take(1).collect();
                format!("{first}•••@{domain}")
            }
            None => "•••".to_owned(),
        },
    }
}

async fn render_code(
    state: &AppState,
    headers: &HeaderMap,
    page: Page,
    error: Option<Problem>,
) -> Result<Response, ApiError> {
    let page = page.with_lang(lang_before_verification(headers));
    let link = current_link(state, headers).await?;
    let frame = PortalFrame::new(
        &page,
        practice_name(state, link.as_ref().ok()).await,
        false,
        "",
    );
    let (no_link, blocked, sent_to, by_text) = match &link {
        Ok(l) => (
            false,
            None,
            masked(l.contact_kind, l.contact.expose()),
            l.contact_kind == ContactKind::Phone,
        ),
        Err(Problem::NoLink) => (true, None, String::new(), true),
        Err(p) => (false, Some(*p), String::new(), true),
    };
    let status = if error.is_some() || blocked.is_some() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    Ok(page.render_with_status(
        status,
        &CodePage {
            page: &page,
            frame: &frame,
            es: frame.es,
            no_link,
            blocked,
            error,
            sent_to,
            by_text,
        },
    ))
}

async fn code_form(
    State(state): State<AppState>,
    headers: HeaderMap,
    page: Page,
) -> Result<Response, ApiError> {
    if auth::cookie(&headers, LINK_COOKIE).is_none() {
        return Ok(page.redirect("/portal/verify"));
    }
    render_code(&state, &headers, page, None).await
}

async fn code_submit(
    State(state): State<AppState>,
    Extension(client): Extension<ClientInfo>,
    headers: HeaderMap,
    page: Page,
    body: Bytes,
) -> Result<Response, ApiError> {
    // Spaces and dashes people type between digits are not part of the code.
    let code: String = form_field(&body, "code")
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .collect();
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return render_code(&state, &headers, page, Some(Problem::BadCode)).await;
    }
    let result = api::submit_code(
        State(state.clone()),
        Extension(client),
        headers.clone(),
        JsonBody {
            value: CodeBody { code },
            sha256: [0; 32],
        },
    )
    .await;
    match result {
        Ok(verified) => {
            let mut response = page.redirect("/portal");
            for cookie in verified.headers().get_all(header::SET_COOKIE) {
                response
                    .headers_mut()
                    .append(header::SET_COOKIE, cookie.clone());
            }
            Ok(response)
        }
        Err(e) => match link_problem(&e, Problem::WrongCode) {
            Some(p) => render_code(&state, &headers, page, Some(p)).await,
            None => Err(e),
        },
    }
}

// ---- sign out -----------------------------------------------------------------------------

#[derive(Template)]
#[template(path = "portal/signed_out.html")]
struct SignedOutPage<'a> {
    page: &'a Page,
    frame: &'a PortalFrame,
    es: bool,
}

fn clear_cookie(state: &AppState, name: &str) -> HeaderValue {
    let secure = if state.config.public_url_is_https() {
        "; Secure"
    } else {
        ""
    };
    HeaderValue::from_str(&format!(
        "{name}=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax{secure}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Ends the patient session and forgets the link on this device (a shared phone).
async fn sign_out(
    State(state): State<AppState>,
    Extension(client): Extension<ClientInfo>,
    headers: HeaderMap,
    page: Page,
) -> Result<Response, ApiError> {
    let lang = chosen_lang(&headers);
    let mut practice = String::new();
    let mut page_lang = lang.unwrap_or_else(|| accept_language(&headers));
    if let Ok(session) = api::patient_session(&state, &headers).await {
        if lang.is_none()
            && let Ok(axum::Json(me)) = api::me(
                State(state.clone()),
                Extension(client.clone()),
                headers.clone(),
            )
            .await
        {
            page_lang = Lang::from_preference(Some(&me.language));
        }
        practice = state
            .store
            .practice(session.practice_id)
            .await
            .map(|p| p.name)
            .unwrap_or_default();
        state
            .store
            .end_patient_session(&session, &client.audit_context())
            .await?;
    }
    let page = page.with_lang(page_lang);
    let frame = PortalFrame::new(&page, practice, false, "");
    let mut response = page.render(&SignedOutPage {
        page: &page,
        frame: &frame,
        es: frame.es,
    });
    for name in [PATIENT_COOKIE, LINK_COOKIE] {
        response
            .headers_mut()
            .append(header::SET_COOKIE, clear_cookie(&state, name));
    }
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_language_picks_the_preferred_of_english_and_spanish() {
        let h = |v: &str| {
            let mut m = HeaderMap::new();
            m.insert(header::ACCEPT_LANGUAGE, HeaderValue::from_str(v).unwrap());
            m
        };
        assert_eq!(accept_language(&h("es-MX,es;q=0.9,en;q=0.8")), Lang::Es);
        assert_eq!(accept_language(&h("en-US,en;q=0.9,es;q=0.8")), Lang::En);
        assert_eq!(accept_language(&h("fr-FR, es;q=0.5")), Lang::Es);
        assert_eq!(accept_language(&h("de")), Lang::En);
        assert_eq!(accept_language(&HeaderMap::new()), Lang::En);
        let mut chosen = h("es");
        chosen.insert(header::COOKIE, HeaderValue::from_static("salve_lang=en"));
        assert_eq!(lang_before_verification(&chosen), Lang::En);
    }

    #[test]
    fn where_the_code_went_is_mostly_hidden() {
        assert_eq!(masked(ContactKind::Phone, "+13125550142"), "•••• 42");
        assert_eq!(
            masked(ContactKind::Email, "ana@example.org"),
            "a•••@example.org"
        );
    }

    #[test]
    fn only_date_shaped_input_spends_an_attempt() {
        assert!(looks_like_date("1984-07-02"));
        for bad in ["", "07/02/1984", "1984-7-2", "abcd-ef-gh"] {
            assert!(!looks_like_date(bad), "{bad}");
        }
    }
}

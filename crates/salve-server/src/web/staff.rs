//! Staff pages: sign-in (password, second factor, first-time enrolment), the messaging
//! guidelines, the team inbox, one conversation with its composer, and break-glass. Each handler
//! parses its form, calls the API operation, and renders the result; the rules stay in the API
//! and the domain.

use axum::Extension;
use axum::body::to_bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use salve_core::permissions::{Decision, Operation, Principal, authorize};
use salve_store::SessionStage;
use serde::Deserialize;

use crate::AppState;
use crate::auth::{self, Caller, SessionCaller};
use crate::context::ClientInfo;
use crate::error::ApiError;
use crate::web::frame::StaffFrame;
use crate::web::{Page, PageRoute, page, safe_next};

pub mod account;
pub mod inbox;
pub mod sign_in;

const ACTIVE: &[SessionStage] = &[SessionStage::Active];
const MFA: &[SessionStage] = &[SessionStage::Mfa];
const ENROLL: &[SessionStage] = &[SessionStage::Enroll];

/// The staff pages and their access, declared like the API routes they call.
pub(crate) fn routes() -> Vec<PageRoute> {
    use crate::routes::Access::*;
    use Operation::*;
    let passive = |(mut spec, handler): PageRoute| {
        spec.passive = true;
        (spec, handler)
    };
    vec![
        page(Method::GET, "/sign-in", Public, get(sign_in::form)),
        page(Method::POST, "/sign-in", Public, post(sign_in::submit)),
        page(
            Method::GET,
            "/sign-in/code",
            Session(MFA),
            get(sign_in::code_form),
        ),
        page(
            Method::POST,
            "/sign-in/code",
            Session(MFA),
            post(sign_in::code_submit),
        ),
        page(
            Method::GET,
            "/sign-in/enroll",
            Session(ENROLL),
            get(sign_in::enroll_form),
        ),
        page(
            Method::POST,
            "/sign-in/enroll",
            Session(ENROLL),
            post(sign_in::enroll_submit),
        ),
        page(
            Method::POST,
            "/sign-in/continue",
            Public,
            post(sign_in::continue_to),
        ),
        page(Method::POST, "/sign-out", Public, post(sign_out)),
        page(
            Method::POST,
            "/session/keepalive",
            Session(ACTIVE),
            post(keepalive),
        ),
        // Every signed-in role reads the guidelines: the same gate opens one's own account.
        page(
            Method::GET,
            "/account",
            Op(GuidelinesRead),
            get(account::show),
        ),
        page(
            Method::POST,
            "/account/passkeys/{id}/remove",
            Op(GuidelinesRead),
            post(account::remove),
        ),
        page(
            Method::POST,
            "/account/sessions/{id}/end",
            Op(GuidelinesRead),
            post(account::end_session),
        ),
        page(
            Method::GET,
            "/guidelines",
            Op(GuidelinesRead),
            get(guidelines),
        ),
        page(
            Method::POST,
            "/guidelines",
            Op(GuidelinesRead),
            post(acknowledge),
        ),
        page(
            Method::GET,
            "/inbox",
            Op(ConversationList),
            get(inbox::inbox),
        ),
        // Refreshed by live updates, not by the user: does not keep the session alive.
        passive(page(
            Method::GET,
            "/inbox/list",
            Op(ConversationList),
            get(inbox::inbox_list),
        )),
        page(
            Method::GET,
            "/inbox/{id}",
            Op(ConversationRead),
            get(inbox::conversation),
        ),
        page(
            Method::POST,
            "/inbox/{id}/preview",
            Op(MessageSend),
            post(inbox::preview),
        ),
        page(
            Method::POST,
            "/inbox/{id}/send",
            Op(MessageSend),
            post(inbox::send).layer(axum::extract::DefaultBodyLimit::max(
                crate::api::messages::ATTACHMENT_BODY_LIMIT,
            )),
        ),
        page(
            Method::POST,
            "/inbox/{id}/note",
            Op(MessageNote),
            post(inbox::note),
        ),
        page(
            Method::POST,
            "/inbox/{id}/assign",
            Op(ConversationManage),
            post(inbox::assign),
        ),
        page(
            Method::POST,
            "/inbox/{id}/state",
            Op(ConversationManage),
            post(inbox::set_state),
        ),
        page(
            Method::POST,
            "/inbox/{id}/break-glass",
            Op(BreakGlass),
            post(inbox::break_glass),
        ),
    ]
}

/// Whether the principal's role allows `op` (for parts of a page that need more than the
/// page's own operation: the rest of the page still renders without them).
pub(crate) fn allowed(principal: &Principal, op: Operation) -> bool {
    matches!(authorize(principal, op, None), Decision::Allow)
}

/// The staff frame, or the refusal a page answers with (pages are for signed-in staff).
pub(crate) async fn frame(
    state: &AppState,
    principal: &Principal,
    session: Option<&SessionCaller>,
    current: &str,
) -> Result<StaffFrame, Response> {
    let Some(session) = session else {
        return Err(ApiError::forbidden("pages are for signed-in staff").into_response());
    };
    StaffFrame::load(state, principal, session, current)
        .await
        .map_err(IntoResponse::into_response)
}

/// An API handler's answer: its status, headers and JSON body.
pub(crate) async fn json_of(response: Response) -> (StatusCode, HeaderMap, serde_json::Value) {
    let status = response.status();
    let (parts, body) = response.into_parts();
    let value = match to_bytes(body, 1024 * 1024).await {
        Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
        Err(_) => serde_json::Value::Null,
    };
    (status, parts.headers, value)
}

/// Copies the session cookie an API operation set (sign-in steps swap it) onto a page answer.
pub(crate) fn copy_cookies(from: &HeaderMap, to: &mut Response) {
    for v in from.get_all(header::SET_COOKIE) {
        to.headers_mut().append(header::SET_COOKIE, v.clone());
    }
}

/// Where to go after a sign-in step: `next` if it is a page of ours a person can open (not a
/// form action or a fragment), else the front door, which sends each role to its first area.
pub(crate) fn landing(next: Option<&str>) -> String {
    let Some(next) = safe_next(next) else {
        return "/".into();
    };
    let path = next.split('?').next().unwrap_or("");
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    let ok = match segments.as_slice() {
        ["sign-in", ..] | ["sign-out"] | ["session", ..] => false,
        ["inbox", "list"] => false,
        ["inbox", id, _action] => return format!("/inbox/{id}"),
        _ => true,
    };
    if ok { next } else { "/".into() }
}

#[derive(Deserialize, Default)]
pub(crate) struct NextForm {
    pub next: Option<String>,
}

/// Sign out (whatever stage the session is at; an ended session just goes to the sign-in page).
async fn sign_out(
    page: Page,
    State(state): State<AppState>,
    Extension(client): Extension<ClientInfo>,
    headers: HeaderMap,
) -> Response {
    let ctx = client.audit_context();
    let caller = match auth::resolve(&state, &headers, &ctx).await {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    let mut response = page.redirect("/sign-in?signed_out=1");
    if let Some(Caller::Session(s)) = caller {
        match crate::api::session::sign_out(State(state.clone()), Extension(client), Extension(s))
            .await
        {
            Ok(r) => copy_cookies(r.headers(), &mut response),
            Err(e) => return e.into_response(),
        }
    } else {
        response
            .headers_mut()
            .append(header::SET_COOKIE, auth::clear_cookie(&state));
    }
    response
}

/// "Stay signed in": the session gate counts this request as activity.
async fn keepalive() -> StatusCode {
    StatusCode::NO_CONTENT
}

#[derive(askama::Template)]
#[template(path = "staff/guidelines.html")]
struct GuidelinesPage<'a> {
    page: &'a Page,
    frame: &'a StaffFrame,
    version: i64,
    paragraphs: Vec<String>,
    required: bool,
    next: String,
}

async fn guidelines(
    page: Page,
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    session: Option<Extension<SessionCaller>>,
    axum::extract::Query(q): axum::extract::Query<NextForm>,
) -> Response {
    let frame = match frame(&state, &principal, session.as_deref(), "").await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let view = match crate::api::oversight::guidelines(State(state), Extension(principal)).await {
        Ok(v) => v.0,
        Err(e) => return e.into_response(),
    };
    let paragraphs = view
        .body
        .split("\n\n")
        .map(|p| p.trim().to_owned())
        .filter(|p| !p.is_empty())
        .collect();
    page.render(&GuidelinesPage {
        page: &page,
        frame: &frame,
        version: view.version,
        paragraphs,
        required: view.acknowledgment_required,
        next: landing(q.next.as_deref()),
    })
}

#[derive(Deserialize)]
struct AcknowledgeForm {
    version: Option<String>,
    next: Option<String>,
}

async fn acknowledge(
    page: Page,
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(client): Extension<ClientInfo>,
    axum::Form(form): axum::Form<AcknowledgeForm>,
) -> Response {
    let Some(version) = form.version.as_deref().and_then(|v| v.parse::<i64>().ok()) else {
        return ApiError::bad_request("the guidelines' version is missing: reload the page")
            .into_response();
    };
    let body = crate::extract::JsonBody {
        value: crate::api::oversight::AcknowledgeBody { version },
        sha256: [0; 32],
    };
    match crate::api::oversight::acknowledge(
        State(state),
        Extension(principal),
        Extension(client),
        body,
    )
    .await
    {
        Ok(_) => page.redirect(&landing(form.next.as_deref())),
        Err(e) => e.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::landing;

    #[test]
    fn landing_is_a_page_a_person_opens() {
        let id = "0194f7a0-0000-7000-8000-000000000000";
        assert_eq!(landing(Some("/inbox?filter=mine")), "/inbox?filter=mine");
        assert_eq!(
            landing(Some(&format!("/inbox/{id}"))),
            format!("/inbox/{id}")
        );
        assert_eq!(
            landing(Some(&format!("/inbox/{id}/send"))),
            format!("/inbox/{id}")
        );
        for bad in [
            None,
            Some("//evil.example"),
            Some("/sign-in/code"),
            Some("/inbox/list"),
        ] {
            assert_eq!(landing(bad), "/");
        }
    }
}

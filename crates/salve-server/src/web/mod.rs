//! Server-rendered pages (askama templates, htmx). A page handler parses its form, calls the same
//! operation as the JSON API (which authorizes, audits and applies the domain rules), and renders
//! the result. No inline script or style: the page CSP allows our own files only.

use askama::Template;
use axum::body::{Body, to_bytes};
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get};
use serde::Deserialize;

use crate::AppState;
use crate::error::{ApiError, PROBLEM_JSON};
use crate::routes::{Access, RouteSpec};

pub mod admin;
pub mod assets;
pub mod audit;
pub mod csrf;
pub mod frame;
pub mod portal;
pub mod staff;

/// Pages load scripts, styles and images from this origin only; forms post only here.
pub const PAGE_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
     connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; \
     report-uri /csp-report";

/// Page routes that take a `multipart/form-data` form (a file upload without JavaScript) and
/// check its `csrf` part themselves, with [`csrf::matches`], before doing anything.
/// The `Sec-Fetch-Site`/`Origin` check and the CSRF cookie are still required here.
const MULTIPART_SELF_CHECKED: &[&str] = &[portal::REPLY_PATH];

/// Largest urlencoded form body read for its CSRF field; larger forms send the header.
const FORM_LIMIT: usize = 256 * 1024;

/// The languages pages are written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    En,
    Es,
}

impl Lang {
    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Es => "es",
        }
    }

    /// A patient's preferred language (`es`, `es-MX`, …); English otherwise.
    pub fn from_preference(tag: Option<&str>) -> Lang {
        match tag {
            Some(t) if t.to_ascii_lowercase().starts_with("es") => Lang::Es,
            _ => Lang::En,
        }
    }
}

/// What every page needs to render its frame: language, CSRF token, where it is.
pub struct Page {
    pub csrf: String,
    pub lang: Lang,
    /// Path and query of this request, for "return here after signing in".
    pub here: String,
    /// An htmx request wants a fragment, and a redirect as `HX-Redirect`.
    pub htmx: bool,
    new_csrf: Option<HeaderValue>,
}

impl FromRequestParts<AppState> for Page {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let (csrf, new_csrf) = match csrf::current(state, &parts.headers) {
            Some(t) => (t, None),
            None => {
                let t = csrf::mint();
                let cookie = csrf::set_cookie(state, &t);
                (t, Some(cookie))
            }
        };
        Ok(Page {
            csrf,
            lang: Lang::En,
            here: parts
                .uri
                .path_and_query()
                .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned()),
            htmx: parts.headers.contains_key("hx-request"),
            new_csrf,
        })
    }
}

impl Page {
    pub fn with_lang(mut self, lang: Lang) -> Self {
        self.lang = lang;
        self
    }

    /// Renders `template` with the page CSP (and the CSRF cookie when it was just minted).
    pub fn render(&self, template: &impl Template) -> Response {
        self.render_with_status(StatusCode::OK, template)
    }

    pub fn render_with_status(&self, status: StatusCode, template: &impl Template) -> Response {
        match template.render() {
            Ok(html) => {
                let mut response = (status, html).into_response();
                self.decorate(response.headers_mut());
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/html; charset=utf-8"),
                );
                response
            }
            Err(e) => ApiError::internal(format!("template: {e}")).into_response(),
        }
    }

    /// Sends the browser to `to` (a path of ours): 303, or `HX-Redirect` for htmx requests.
    pub fn redirect(&self, to: &str) -> Response {
        let location = HeaderValue::from_str(to).unwrap_or(HeaderValue::from_static("/"));
        let mut response = if self.htmx {
            let mut r = StatusCode::NO_CONTENT.into_response();
            r.headers_mut().insert("hx-redirect", location);
            r
        } else {
            let mut r = StatusCode::SEE_OTHER.into_response();
            r.headers_mut().insert(header::LOCATION, location);
            r
        };
        self.decorate(response.headers_mut());
        response
    }

    fn decorate(&self, headers: &mut HeaderMap) {
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(PAGE_CSP),
        );
        if let Some(cookie) = &self.new_csrf {
            headers.append(header::SET_COOKIE, cookie.clone());
        }
    }
}

/// `next` as given to a sign-in page, if it is a path on this site (never another host).
pub fn safe_next(raw: Option<&str>) -> Option<String> {
    let raw = raw?;
    let ok = raw.starts_with('/')
        && !raw.starts_with("//")
        && !raw.starts_with("/\\")
        && raw.len() <= 512
        && !raw.chars().any(|c| c.is_control() || c == '\\');
    ok.then(|| raw.to_owned())
}

/// `?next=` for `path`, percent-encoded.
pub fn next_query(path: &str) -> String {
    percent_encoding::utf8_percent_encode(path, percent_encoding::NON_ALPHANUMERIC).to_string()
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    page: &'a Page,
    title: &'a str,
    detail: &'a str,
    status: u16,
}

#[derive(Deserialize)]
struct ProblemBody {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    title: String,
    #[serde(default)]
    detail: String,
}

/// Around every page route: checks the CSRF token of anything that changes state, and turns the
/// API's problem documents into what a browser needs (sign-in redirect, an error page).
pub async fn page_layer(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let (mut parts, body) = req.into_parts();
    let Ok(page) = Page::from_request_parts(&mut parts, &state).await;
    let mut req = Request::from_parts(parts, body);
    if !matches!(*req.method(), Method::GET | Method::HEAD) {
        match check_csrf(&state, &page, req).await {
            Ok(r) => req = r,
            Err((status, title, detail)) => {
                return page.render_with_status(
                    status,
                    &ErrorPage {
                        page: &page,
                        title,
                        detail,
                        status: status.as_u16(),
                    },
                );
            }
        }
    }
    let response = next.run(req).await;
    let is_problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(PROBLEM_JSON.as_bytes()));
    if !is_problem {
        return response;
    }
    let status = response.status();
    let (parts, body) = response.into_parts();
    let problem: ProblemBody = match to_bytes(body, 64 * 1024).await {
        Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or(ProblemBody {
            kind: String::new(),
            title: String::new(),
            detail: String::new(),
        }),
        Err(_) => return Response::from_parts(parts, Body::empty()),
    };
    if status == StatusCode::UNAUTHORIZED {
        let sign_in = if page.here.starts_with("/portal") {
            "/portal/verify"
        } else {
            "/sign-in"
        };
        return page.redirect(&format!("{sign_in}?next={}", next_query(&page.here)));
    }
    if problem.kind.ends_with("guidelines-acknowledgment-required") {
        return page.redirect(&format!("/guidelines?next={}", next_query(&page.here)));
    }
    let mut rendered = page.render_with_status(
        status,
        &ErrorPage {
            page: &page,
            title: &problem.title,
            detail: &problem.detail,
            status: status.as_u16(),
        },
    );
    // Keep what the API added: Retry-After, the request id.
    for name in [
        header::RETRY_AFTER,
        header::HeaderName::from_static("x-request-id"),
    ] {
        if let Some(v) = parts.headers.get(&name) {
            rendered.headers_mut().insert(name, v.clone());
        }
    }
    rendered
}

/// Why a form was refused before its handler ran: status, title, detail.
type Refusal = (StatusCode, &'static str, &'static str);

async fn check_csrf(state: &AppState, page: &Page, req: Request) -> Result<Request, Refusal> {
    const REFUSED: Refusal = (
        StatusCode::FORBIDDEN,
        "Form expired",
        "This form has expired or came from another site. Go back, reload the page and try again.",
    );
    if !crate::auth::csrf_ok(state, req.method(), req.headers()) || page.new_csrf.is_some() {
        return Err(REFUSED);
    }
    if let Some(given) = req
        .headers()
        .get(csrf::HEADER)
        .and_then(|v| v.to_str().ok())
    {
        return if csrf::matches(&page.csrf, given) {
            Ok(req)
        } else {
            Err(REFUSED)
        };
    }
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if content_type.starts_with("multipart/form-data")
        && MULTIPART_SELF_CHECKED.contains(&req.uri().path())
    {
        // Buffering an upload here would hold it twice: these handlers read the `csrf` part
        // and compare it with `csrf::matches` before they act.
        return Ok(req);
    }
    if !content_type.starts_with("application/x-www-form-urlencoded") {
        return Err(REFUSED);
    }
    let (parts, body) = req.into_parts();
    let bytes = to_bytes(body, FORM_LIMIT).await.map_err(|_| {
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            "Form too large",
            "This form is too large to send.",
        )
    })?;
    let given = form_urlencoded::parse(&bytes)
        .find(|(k, _)| k == csrf::FIELD)
        .map(|(_, v)| v.into_owned());
    match given {
        Some(g) if csrf::matches(&page.csrf, &g) => {
            Ok(Request::from_parts(parts, Body::from(bytes)))
        }
        _ => Err(REFUSED),
    }
}

#[derive(Template)]
#[template(path = "home.html")]
struct Home<'a> {
    page: &'a Page,
}

/// The front door: signed-in staff go on to the first area their role opens; others see how to
/// sign in (patients arrive through the link they were sent).
async fn home(
    page: Page,
    State(state): State<AppState>,
    axum::Extension(client): axum::Extension<crate::context::ClientInfo>,
    headers: HeaderMap,
) -> Response {
    let caller = crate::auth::resolve(&state, &headers, &client.audit_context()).await;
    if let Ok(Some(crate::auth::Caller::Session(s))) = caller
        && s.session.stage == salve_store::SessionStage::Active
        && let Ok(Some(role)) = state
            .store
            .role_in(s.session.user_id, s.session.practice_id)
            .await
    {
        let principal = salve_core::permissions::Principal::Staff {
            practice: s.session.practice_id,
            user: s.session.user_id,
            role,
        };
        return page.redirect(frame::home_for(&principal));
    }
    page.render(&Home { page: &page })
}

pub(crate) type PageRoute = (RouteSpec, MethodRouter<AppState>);

/// A page route: like an API route, plus the page layer.
pub(crate) fn page(
    method: Method,
    path: &'static str,
    access: Access,
    handler: MethodRouter<AppState>,
) -> PageRoute {
    (
        RouteSpec {
            method,
            path,
            access,
            passive: false,
            page: true,
        },
        handler,
    )
}

pub(crate) fn table() -> Vec<PageRoute> {
    let mut routes = vec![
        page(Method::GET, "/", Access::Public, get(home)),
        (
            RouteSpec {
                method: Method::GET,
                path: "/static/{*file}",
                access: Access::Public,
                passive: true,
                page: false,
            },
            get(assets::serve),
        ),
    ];
    routes.extend(pages());
    routes
}

/// The pages of each area, registered here so the route table stays one list.
fn pages() -> Vec<PageRoute> {
    let mut routes = Vec::new();
    routes.extend(admin::routes());
    routes.extend(staff::routes());
    routes.extend(portal::routes());
    routes.extend(audit::routes());
    routes
}

/// A time as people at the practice and its patients read it, in the practice's zone
/// (`es`: Spanish order and a 24-hour clock). RFC 3339 in, as the API renders times.
pub(crate) fn local_time(rfc3339: &str, zone: &str, es: bool) -> String {
    let Ok(ts) = rfc3339.parse::<jiff::Timestamp>() else {
        return rfc3339.to_owned();
    };
    let zoned = match jiff::tz::TimeZone::get(zone) {
        Ok(tz) => ts.to_zoned(tz),
        Err(_) => ts.to_zoned(jiff::tz::TimeZone::UTC),
    };
    if es {
        zoned.strftime("%-d/%m/%Y %H:%M").to_string()
    } else {
        zoned.strftime("%b %-d, %Y, %-I:%M %p").to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_in_the_practice_zone() {
        let at = "2026-11-25T15:05:00Z";
        assert_eq!(
            local_time(at, "America/Chicago", false),
            "Nov 25, 2026, 9:05 AM"
        );
        assert_eq!(local_time(at, "America/Chicago", true), "25/11/2026 09:05");
        // An unknown zone falls back to UTC; what is not a time is shown as it came.
        assert_eq!(local_time(at, "", false), "Nov 25, 2026, 3:05 PM");
        assert_eq!(local_time("soon", "America/Chicago", false), "soon");
    }

    #[test]
    fn next_stays_on_this_site() {
        assert_eq!(
            safe_next(Some("/inbox?filter=mine")).as_deref(),
            Some("/inbox?filter=mine")
        );
        for bad in [
            "//evil.example/",
            "https://evil.example/",
            "/\\evil",
            "inbox",
            "/a\nb",
            "",
        ] {
            assert_eq!(safe_next(Some(bad)), None, "{bad:?}");
        }
        assert_eq!(safe_next(None), None);
    }

    #[test]
    fn next_query_is_percent_encoded() {
        assert_eq!(next_query("/inbox?a=1&b=2"), "%2Finbox%3Fa%3D1%26b%3D2");
    }

    #[test]
    fn patient_language_preference() {
        assert_eq!(Lang::from_preference(Some("es-MX")), Lang::Es);
        assert_eq!(Lang::from_preference(Some("ES")), Lang::Es);
        assert_eq!(Lang::from_preference(Some("en")), Lang::En);
        assert_eq!(Lang::from_preference(None), Lang::En);
    }
}

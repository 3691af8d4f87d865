//! The page frame: CSP, CSRF cookie, static files. Each area's pages have their own tests.

mod common;

use axum::http::StatusCode;
use common::{App, Req};
use salve_testkit::TestDatabase;

#[tokio::test]
async fn pages_carry_the_strict_csp_and_no_inline_script_or_style() {
    let app = App::new(TestDatabase::sqlite()).await;
    let r = app.send(Req::get("/")).await;
    assert_eq!(r.status, StatusCode::OK);
    let header = |name: &str| r.headers.get(name).unwrap().to_str().unwrap().to_owned();
    let csp = header("content-security-policy");
    assert!(csp.contains("script-src 'self'") && csp.contains("default-src 'none'"));
    assert!(!csp.contains("unsafe"));
    assert!(header("content-type").starts_with("text/html"));
    assert!(r.text.contains("<html lang=\"en\">"));
    assert!(
        !r.text.contains("<script>") && !r.text.contains("style=") && !r.text.contains("<style")
    );
    assert!(!r.text.contains(" hx-on"), "no hx-on: it evaluates strings");
    let cookie = header("set-cookie");
    assert!(cookie.starts_with("salve_csrf="), "{cookie}");
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
}

#[tokio::test]
async fn static_files_are_served_with_their_types_and_htmx_gzipped() {
    let app = App::new(TestDatabase::sqlite()).await;
    let css = app.send(Req::get("/static/salve.css")).await;
    assert_eq!(css.status, StatusCode::OK);
    assert!(
        css.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/css")
    );
    let htmx = app
        .send_raw(
            Req::get("/static/vendor/htmx-2.0.11.min.js").header("accept-encoding", "gzip, br"),
        )
        .await;
    assert_eq!(htmx.status(), StatusCode::OK);
    assert_eq!(htmx.headers()["content-encoding"], "gzip");
    let body = axum::body::to_bytes(htmx.into_body(), usize::MAX)
        .await
        .unwrap();
    assert!(body.len() < 20 * 1024, "htmx travels in under 20 KB");
    let missing = app.send(Req::get("/static/nope.js")).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
}

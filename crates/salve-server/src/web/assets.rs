//! Static files, compiled into the binary: no third-party hosts, no build step.

use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
    gzip: Option<&'static [u8]>,
    /// Versioned names never change content.
    immutable: bool,
}

const ASSETS: &[Asset] = &[
    Asset {
        name: "vendor/htmx-2.0.11.min.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../static/vendor/htmx-2.0.11.min.js"),
        gzip: Some(include_bytes!("../../static/vendor/htmx-2.0.11.min.js.gz")),
        immutable: true,
    },
    Asset {
        name: "salve.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../../static/salve.css"),
        gzip: None,
        immutable: false,
    },
    Asset {
        name: "portal.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../../static/portal.css"),
        gzip: None,
        immutable: false,
    },
    Asset {
        name: "staff.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../static/staff.js"),
        gzip: None,
        immutable: false,
    },
    Asset {
        name: "passkey.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../static/passkey.js"),
        gzip: None,
        immutable: false,
    },
    Asset {
        name: "admin.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../../static/admin.css"),
        gzip: None,
        immutable: false,
    },
    Asset {
        name: "staff.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../../static/staff.css"),
        gzip: None,
        immutable: false,
    },
    Asset {
        name: "salve.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../static/salve.js"),
        gzip: None,
        immutable: false,
    },
];

fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|e| e.trim().starts_with("gzip")))
}

pub async fn serve(Path(name): Path<String>, headers: HeaderMap) -> Response {
    let Some(asset) = ASSETS.iter().find(|a| a.name == name) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let cache = if asset.immutable {
        "public, max-age=31536000, immutable"
    } else {
        "public, max-age=300"
    };
    let mut response = match asset.gzip {
        Some(gz) if accepts_gzip(&headers) => {
            let mut r = gz.into_response();
            r.headers_mut()
                .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            r
        }
        _ => asset.body.into_response(),
    };
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    h.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_is_served_with_its_type_and_the_vendored_htmx_has_a_gzip_copy() {
        let htmx = ASSETS.iter().find(|a| a.name.contains("htmx")).unwrap();
        let gz = htmx.gzip.unwrap();
        assert_eq!(&gz[..2], &[0x1f, 0x8b], "gzip magic");
        assert!(gz.len() < htmx.body.len() / 2);
        assert!(
            include_str!("../../templates/base.html").contains(&format!("/static/{}", htmx.name))
        );
        for a in ASSETS {
            assert!(!a.body.is_empty(), "{}", a.name);
        }
    }
}

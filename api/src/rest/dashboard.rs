//! The dashboard: three hand-written files (`api/dashboard/`), embedded in
//! the binary and served at `/dashboard/`. They hold no data: the page
//! calls the API with the credentials the user typed, kept in the page's
//! memory (a bearer token or an API key, sent in a header, never a cookie,
//! so another site cannot make the browser act with them: no CSRF).
//!
//! Every answer carries a strict Content-Security-Policy (scripts and
//! styles from this origin only, no inline script, no framing), and the
//! script renders every server-supplied string as text.

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

const INDEX: &str = include_str!("../../dashboard/index.html");
const APP_JS: &str = include_str!("../../dashboard/app.js");
const APP_CSS: &str = include_str!("../../dashboard/app.css");
const DOCS: &str = include_str!("../../dashboard/docs.html");
const DOCS_JS: &str = include_str!("../../dashboard/docs.js");

/// The policy of every dashboard answer.
pub(crate) const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                              connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut r = (StatusCode::OK, body).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

pub(super) async fn redirect() -> Response {
    (StatusCode::PERMANENT_REDIRECT, [(header::LOCATION, "/dashboard/")]).into_response()
}

pub(super) async fn index() -> Response {
    asset(INDEX, "text/html; charset=utf-8")
}

/// `/docs`: `/openapi.json` rendered by `docs.js`, with nothing from a CDN.
pub(super) async fn docs() -> Response {
    asset(DOCS, "text/html; charset=utf-8")
}

pub(super) async fn file(Path(name): Path<String>) -> Response {
    match name.as_str() {
        "app.js" => asset(APP_JS, "text/javascript; charset=utf-8"),
        "app.css" => asset(APP_CSS, "text/css; charset=utf-8"),
        "docs.js" => asset(DOCS_JS, "text/javascript; charset=utf-8"),
        "index.html" => asset(INDEX, "text/html; charset=utf-8"),
        _ => crate::error::ApiError::NotFound(format!("no dashboard file {name:?}")).into_response(),
    }
}

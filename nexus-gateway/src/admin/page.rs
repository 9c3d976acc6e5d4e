//! The `/dashboard` page: `assets/dashboard.{html,css,js}` embedded at build
//! time and assembled into one self-contained document.
//!
//! The style and script are inlined, so the page needs nothing but this
//! gateway. The `Content-Security-Policy` allows exactly those two inline
//! blocks (by SHA-256, computed once at start from the bytes served) and
//! requests to this origin; no other script, style, frame or form target.

use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use sha2::{Digest as _, Sha256};

use crate::body::GatewayBody;
use crate::response::GatewayResponse;

const HTML: &str = include_str!("../../assets/dashboard.html");
const CSS: &str = include_str!("../../assets/dashboard.css");
const JS: &str = include_str!("../../assets/dashboard.js");

/// The assembled page and its headers.
#[derive(Debug, Clone)]
pub(crate) struct Page {
    body: Bytes,
    csp: HeaderValue,
}

fn sha256_source(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    format!(
        "'sha256-{}'",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
}

impl Page {
    pub(crate) fn build() -> Self {
        let body = HTML
            .replacen("/*STYLE*/", CSS, 1)
            .replacen("/*SCRIPT*/", JS, 1);
        let csp = format!(
            "default-src 'none'; script-src {}; style-src {}; connect-src 'self'; \
             img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
            sha256_source(JS),
            sha256_source(CSS),
        );
        Self {
            body: Bytes::from(body),
            // Base64 and ASCII policy text: always a valid header value.
            csp: HeaderValue::from_str(&csp)
                .unwrap_or_else(|_| HeaderValue::from_static("default-src 'none'")),
        }
    }

    /// The page as an HTTP response.
    pub(crate) fn response(&self) -> GatewayResponse {
        let mut res = http::Response::new(GatewayBody::from(self.body.clone()));
        *res.status_mut() = StatusCode::OK;
        let h = res.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        h.insert(header::CONTENT_SECURITY_POLICY, self.csp.clone());
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        h.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        h.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
        h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        res
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn page_is_self_contained_and_pinned_by_hash() {
        let page = Page::build();
        let html = std::str::from_utf8(&page.body).unwrap();
        assert!(!html.contains("/*STYLE*/") && !html.contains("/*SCRIPT*/"));
        assert!(html.contains(&format!("<style>{CSS}</style>")));
        assert!(html.contains(&format!("<script>{JS}</script>")));
        // Nothing loaded from elsewhere.
        for external in [
            "src=\"http",
            "href=\"http",
            "<script src",
            "@import",
            "url(",
        ] {
            assert!(!html.contains(external), "{external}");
        }
        let csp = page.csp.to_str().unwrap();
        assert!(csp.contains(&sha256_source(JS)), "{csp}");
        assert!(csp.contains("connect-src 'self'"), "{csp}");
        assert!(!csp.contains("unsafe-inline"), "{csp}");
        // The script never writes markup from data.
        assert!(!JS.contains("innerHTML") && !JS.contains("insertAdjacentHTML"));
    }
}

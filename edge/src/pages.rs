//! The pages the edge answers with itself (404, 429, 502, ...): a small HTML page, or JSON
//! when the client's `Accept` prefers `application/json`. A page says the status, a fixed
//! reason and the request id, and nothing else: no internal address or error text leaks.

use hyper::body::Bytes;
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use hyper::{HeaderMap, StatusCode};

/// A rendered page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub status: StatusCode,
    pub content_type: &'static str,
    pub body: Bytes,
}

impl Page {
    /// `status`'s page for request `request_id`, in the format `accept` prefers.
    pub fn new(status: StatusCode, request_id: &str, accept: Option<&HeaderValue>) -> Page {
        let reason = reason(status);
        let title = status.canonical_reason().unwrap_or("Error");
        if prefers_json(accept) {
            let body = serde_json::json!({
                "status": status.as_u16(),
                "error": title,
                "message": reason,
                "request_id": request_id,
            });
            Page {
                status,
                content_type: "application/json",
                body: Bytes::from(body.to_string()),
            }
        } else {
            let code = status.as_u16();
            let id = escape(request_id);
            let body = format!(
                "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{code} {title}</title>\
                 <style>body{{font-family:system-ui,sans-serif;margin:4em auto;max-width:36em;\
                 color:#222}}small{{color:#777}}</style></head>\n<body><h1>{code} {title}</h1>\
                 <p>{reason}</p><p><small>Request ID: {id}</small></p></body></html>\n"
            );
            Page {
                status,
                content_type: "text/html; charset=utf-8",
                body: Bytes::from(body),
            }
        }
    }

    /// Sets the page's `Content-Type` and `Cache-Control: no-store` in `headers`.
    pub fn set_headers(&self, headers: &mut HeaderMap) {
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(self.content_type));
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
}

/// The one-line explanation shown for `status`.
pub fn reason(status: StatusCode) -> &'static str {
    match status {
        StatusCode::BAD_REQUEST => "The request is malformed.",
        StatusCode::NOT_FOUND => "No site is served at this address.",
        StatusCode::METHOD_NOT_ALLOWED => "This method is not allowed here.",
        StatusCode::REQUEST_TIMEOUT => "The request took too long to arrive.",
        StatusCode::PAYLOAD_TOO_LARGE => "The request body is too large.",
        StatusCode::TOO_MANY_REQUESTS => "Too many requests from your address; retry later.",
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => "The request headers are too large.",
        StatusCode::BAD_GATEWAY => "The site's server could not be reached.",
        StatusCode::SERVICE_UNAVAILABLE => "The site's server is not available right now.",
        StatusCode::GATEWAY_TIMEOUT => "The site's server did not answer in time.",
        s if s.is_client_error() => "The request cannot be served.",
        _ => "Something went wrong while serving this request.",
    }
}

/// Whether `accept` ranks `application/json` above `text/html`. Each type takes the quality
/// of its most specific matching range (`application/json`, `application/*`, `*/*`); at equal
/// quality the type named more specifically wins (`application/json, */*` is JSON); a full
/// tie, or no header, is HTML.
pub fn prefers_json(accept: Option<&HeaderValue>) -> bool {
    let Some(accept) = accept.and_then(|a| a.to_str().ok()) else {
        return false;
    };
    // (specificity, quality) of the best-matching range for each type.
    let mut json = (0u8, 0.0f32, false);
    let mut html = (0u8, 0.0f32, false);
    for range in accept.split(',') {
        let mut parts = range.split(';');
        let media = parts.next().unwrap_or("").trim();
        let quality = parts
            .filter_map(|p| p.trim().strip_prefix("q="))
            .find_map(|q| q.trim().parse::<f32>().ok())
            .unwrap_or(1.0);
        let (kind, sub) = media.split_once('/').unwrap_or((media, ""));
        let score = |ty: &str, subty: &str| -> Option<u8> {
            match (kind, sub) {
                ("*", "*") => Some(1),
                (k, "*") if k.eq_ignore_ascii_case(ty) => Some(2),
                (k, s) if k.eq_ignore_ascii_case(ty) && s.eq_ignore_ascii_case(subty) => Some(3),
                _ => None,
            }
        };
        for (slot, ty, subty) in [
            (&mut json, "application", "json"),
            (&mut html, "text", "html"),
        ] {
            if let Some(spec) = score(ty, subty) {
                if !slot.2 || spec > slot.0 {
                    *slot = (spec, quality, true);
                }
            }
        }
    }
    json.1 > html.1 || (json.1 == html.1 && json.1 > 0.0 && json.0 > html.0)
}

/// HTML-escapes `text`.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(accept: &str) -> bool {
        prefers_json(Some(&HeaderValue::from_str(accept).expect("header")))
    }

    #[test]
    fn accept_negotiation() {
        assert!(!prefers_json(None));
        assert!(json("application/json"));
        assert!(json("application/json, text/plain, */*"));
        assert!(json("application/*"));
        assert!(json("text/html;q=0.5, application/json"));
        assert!(!json("*/*"));
        assert!(!json(
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
        ));
        assert!(!json("application/json;q=0.5, text/html"));
        assert!(!json("application/json, text/html"), "a tie is HTML");
        assert!(!json("application/json;q=0, */*"));
        // The most specific range decides, whatever the order.
        assert!(json("*/*;q=0.1, application/json;q=0.9"));
        assert!(!json("text/*, application/*;q=0.3"));
    }

    #[test]
    fn html_page_says_status_reason_and_id() {
        let page = Page::new(StatusCode::BAD_GATEWAY, "abc-123", None);
        let body = std::str::from_utf8(&page.body).expect("utf8");
        assert_eq!(page.content_type, "text/html; charset=utf-8");
        assert!(body.contains("502 Bad Gateway"));
        assert!(body.contains(reason(StatusCode::BAD_GATEWAY)));
        assert!(body.contains("abc-123"));
    }

    #[test]
    fn json_page_has_the_same_facts() {
        let accept = HeaderValue::from_static("application/json");
        let page = Page::new(StatusCode::TOO_MANY_REQUESTS, "r1", Some(&accept));
        assert_eq!(page.content_type, "application/json");
        let v: serde_json::Value = serde_json::from_slice(&page.body).expect("json");
        assert_eq!(v["status"], 429);
        assert_eq!(v["error"], "Too Many Requests");
        assert_eq!(v["request_id"], "r1");
        assert_eq!(v["message"], reason(StatusCode::TOO_MANY_REQUESTS));
    }

    #[test]
    fn request_ids_are_escaped() {
        let page = Page::new(StatusCode::NOT_FOUND, "<script>", None);
        let body = std::str::from_utf8(&page.body).expect("utf8");
        assert!(!body.contains("<script>"));
        assert!(body.contains("&lt;script&gt;"));
    }
}

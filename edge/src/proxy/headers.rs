//! Header work for one proxied request, without I/O: which host a request is for, the request
//! id, hop-by-hop stripping, the `X-Forwarded-*` set, WebSocket upgrade detection, ACME tokens
//! and HTTPS redirect targets.

use std::borrow::Cow;

use hyper::body::Bytes;
use hyper::header::{
    HeaderName, HeaderValue, CONNECTION, COOKIE, EXPECT, HOST, PROXY_AUTHENTICATE,
    PROXY_AUTHORIZATION, TE, TRAILER, TRANSFER_ENCODING, UPGRADE,
};
use hyper::http::request;
use hyper::{HeaderMap, Method, Request, Uri, Version};

use crate::routing::normalize_host;

pub(super) static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Longest request id kept from a client.
const MAX_REQUEST_ID: usize = 128;

const ACME_PREFIX: &str = "/.well-known/acme-challenge/";

/// The host a request names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum RequestHost<'a> {
    /// A plausible host name: lowercase, without port or final dot.
    Name(Cow<'a, str>),
    /// Present but not a host name.
    Invalid,
    Missing,
}

/// Two `Host` headers: refused, as the two could be read differently further on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ConflictingHosts;

/// The host `req` is for: the URI's authority (HTTP/2's `:authority`, an HTTP/1.1
/// absolute-form target), else its one `Host` header.
pub(super) fn request_host<B>(req: &Request<B>) -> Result<RequestHost<'_>, ConflictingHosts> {
    let raw = match req.uri().authority() {
        Some(authority) => authority.host(),
        None => {
            let mut hosts = req.headers().get_all(HOST).iter();
            let Some(host) = hosts.next() else {
                return Ok(RequestHost::Missing);
            };
            if hosts.next().is_some() {
                return Err(ConflictingHosts);
            }
            match host.to_str() {
                Ok(host) => host,
                Err(_) => return Ok(RequestHost::Invalid),
            }
        }
    };
    Ok(match normalize_host(raw) {
        Some(name) if valid_host(&name) => RequestHost::Name(name),
        _ => RequestHost::Invalid,
    })
}

/// A normalised host is a DNS-ish name (letters, digits, `-`, `_`, `.`) or a bracketed IPv6
/// literal; anything else (`/`, `@`, spaces) could turn a redirect into an open redirect.
fn valid_host(host: &str) -> bool {
    if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return !v6.is_empty()
            && v6
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.');
    }
    host.bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
}

/// The client's `X-Request-Id` if it is 1 to 128 of `[A-Za-z0-9._-]`, else a new random one
/// (32 hex digits).
pub(super) fn request_id(headers: &HeaderMap) -> HeaderValue {
    match headers.get(&X_REQUEST_ID) {
        Some(id) if valid_request_id(id.as_bytes()) => id.clone(),
        _ => new_request_id(),
    }
}

pub(super) fn valid_request_id(id: &[u8]) -> bool {
    !id.is_empty()
        && id.len() <= MAX_REQUEST_ID
        && id
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn new_request_id() -> HeaderValue {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let n: u128 = rand::random();
    let mut id = [0u8; 32];
    for (i, digit) in id.iter_mut().enumerate() {
        *digit = HEX[((n >> (i * 4)) & 0xf) as usize];
    }
    // Hex digits are always a valid header value.
    HeaderValue::from_maybe_shared(Bytes::copy_from_slice(&id))
        .unwrap_or_else(|_| HeaderValue::from_static("0"))
}

/// Whether `req` asks for a WebSocket: HTTP/1.1 `GET` with `Connection: upgrade` and
/// `Upgrade: websocket`.
pub(super) fn is_websocket_upgrade<B>(req: &Request<B>) -> bool {
    req.version() == Version::HTTP_11
        && req.method() == Method::GET
        && has_token(req.headers(), &CONNECTION, "upgrade")
        && has_token(req.headers(), &UPGRADE, "websocket")
}

fn has_token(headers: &HeaderMap, name: &HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Removes hop-by-hop headers: `Connection` and the headers it names, `Keep-Alive`,
/// `Proxy-*` (including httpoxy's `Proxy`), `TE`, `Trailer`, `Transfer-Encoding`, and
/// `Upgrade` unless `keep_upgrade`.
pub(super) fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    // Most messages have none (or only `Connection`): one pass over the names decides.
    if !headers.keys().any(|name| is_hop_by_hop(name, keep_upgrade)) {
        return;
    }
    let mut named: Vec<HeaderName> = Vec::new();
    for value in headers.get_all(CONNECTION) {
        let Ok(value) = value.to_str() else { continue };
        for token in value.split(',').map(str::trim) {
            let known = ["", "close", "keep-alive", "upgrade"]
                .iter()
                .any(|k| token.eq_ignore_ascii_case(k));
            if !known {
                if let Ok(name) = HeaderName::from_bytes(token.as_bytes()) {
                    named.push(name);
                }
            }
        }
    }
    for name in named {
        headers.remove(name);
    }
    for name in [
        &CONNECTION,
        &KEEP_ALIVE,
        &PROXY_CONNECTION,
        &PROXY_AUTHENTICATE,
        &PROXY_AUTHORIZATION,
        &TE,
        &TRAILER,
        &TRANSFER_ENCODING,
    ] {
        headers.remove(name);
    }
    if !keep_upgrade {
        headers.remove(UPGRADE);
    }
    if headers.keys().any(is_proxy_header) {
        let proxies: Vec<HeaderName> = headers
            .keys()
            .filter(|n| is_proxy_header(n))
            .cloned()
            .collect();
        for name in proxies {
            headers.remove(name);
        }
    }
}

/// A header [`strip_hop_by_hop`] removes (without those `Connection` names).
fn is_hop_by_hop(name: &HeaderName, keep_upgrade: bool) -> bool {
    name == CONNECTION
        || name == TE
        || name == TRAILER
        || name == TRANSFER_ENCODING
        || (name == UPGRADE && !keep_upgrade)
        || name == KEEP_ALIVE
        || is_proxy_header(name)
}

/// `Proxy-*`, and httpoxy's `Proxy`.
fn is_proxy_header(name: &HeaderName) -> bool {
    let name = name.as_str();
    name.starts_with("proxy") && (name.len() == 5 || name.as_bytes()[5] == b'-')
}

/// What the edge tells the upstream about a request.
#[derive(Debug)]
pub(super) struct Forwarding<'a> {
    /// The client's IP, as a header value.
    pub client: &'a HeaderValue,
    /// `http` or `https`: the listener the request came in on.
    pub proto: &'static str,
    pub request_id: &'a HeaderValue,
    /// A WebSocket upgrade: `Upgrade` stays and `Connection: upgrade` is set.
    pub upgrade: bool,
}

/// Turns a client's request head into the upstream's: HTTP/1.1 with an origin-form target,
/// the original `Host` (from the authority for HTTP/2), hop-by-hop headers removed, `Expect`
/// answered here, HTTP/2 cookies joined into one header, and `X-Forwarded-For` (appended),
/// `X-Forwarded-Proto`, `X-Forwarded-Host`, `X-Real-IP` and `X-Request-Id` set.
pub(super) fn prepare_request(parts: &mut request::Parts, fwd: &Forwarding<'_>) {
    let headers = &mut parts.headers;
    let host = match parts.uri.authority() {
        Some(authority) => {
            let hostport = authority
                .as_str()
                .rsplit_once('@')
                .map_or(authority.as_str(), |(_, h)| h);
            HeaderValue::from_str(hostport).ok()
        }
        None => headers.get(HOST).cloned(),
    };
    strip_hop_by_hop(headers, fwd.upgrade);
    if fwd.upgrade {
        headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    }
    headers.remove(EXPECT);
    if parts.version == Version::HTTP_2 {
        join_cookies(headers);
    }
    if let Some(host) = host {
        headers.insert(X_FORWARDED_HOST.clone(), host.clone());
        headers.insert(HOST, host);
    }
    append_forwarded_for(headers, fwd.client);
    headers.insert(
        X_FORWARDED_PROTO.clone(),
        HeaderValue::from_static(fwd.proto),
    );
    headers.insert(X_REAL_IP.clone(), fwd.client.clone());
    headers.insert(X_REQUEST_ID.clone(), fwd.request_id.clone());
    parts.uri = origin_form(&parts.uri);
    parts.version = Version::HTTP_11;
}

/// `X-Forwarded-For: <what came in>, <client>`.
fn append_forwarded_for(headers: &mut HeaderMap, client: &HeaderValue) {
    let mut previous = headers.get_all(&X_FORWARDED_FOR).iter().peekable();
    if previous.peek().is_none() {
        headers.insert(X_FORWARDED_FOR.clone(), client.clone());
        return;
    }
    let mut joined = Vec::with_capacity(64);
    for value in previous {
        joined.extend_from_slice(value.as_bytes());
        joined.extend_from_slice(b", ");
    }
    joined.extend_from_slice(client.as_bytes());
    // Joined valid values with ", " are valid.
    if let Ok(value) = HeaderValue::from_maybe_shared(Bytes::from(joined)) {
        headers.insert(X_FORWARDED_FOR.clone(), value);
    }
}

/// HTTP/2 may split `Cookie` over several fields; HTTP/1.1 wants one, joined by `; `.
fn join_cookies(headers: &mut HeaderMap) {
    let mut cookies = headers.get_all(COOKIE).iter();
    if cookies.next().is_none() || cookies.next().is_none() {
        return;
    }
    let mut joined = Vec::new();
    for (i, value) in headers.get_all(COOKIE).iter().enumerate() {
        if i > 0 {
            joined.extend_from_slice(b"; ");
        }
        joined.extend_from_slice(value.as_bytes());
    }
    if let Ok(value) = HeaderValue::from_maybe_shared(Bytes::from(joined)) {
        headers.insert(COOKIE, value);
    }
}

/// The origin-form target of `uri`: `/path?query` (`*` stays `*`; `/` when there is none).
fn origin_form(uri: &Uri) -> Uri {
    match uri.path_and_query() {
        Some(pq) => Uri::from(pq.clone()),
        None => Uri::from_static("/"),
    }
}

/// The token of an ACME HTTP-01 challenge path (base64url characters only).
pub(super) fn acme_token(path: &str) -> Option<&str> {
    let token = path.strip_prefix(ACME_PREFIX)?;
    let valid = !token.is_empty()
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    valid.then_some(token)
}

/// `https://<host><path?query>`: `host` is normalised (no port), the path is the request's.
pub(super) fn https_location(host: &str, uri: &Uri) -> Option<HeaderValue> {
    let path = uri
        .path_and_query()
        .map(|pq| pq.as_str())
        .filter(|pq| pq.starts_with('/'))
        .unwrap_or("/");
    let mut location = String::with_capacity(8 + host.len() + path.len());
    location.push_str("https://");
    location.push_str(host);
    location.push_str(path);
    HeaderValue::from_str(&location).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(version: Version, uri: &str, headers: &[(&str, &str)]) -> Request<()> {
        let mut b = Request::builder().version(version).uri(uri);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).expect("request")
    }

    fn host(r: &Request<()>) -> Result<RequestHost<'_>, ConflictingHosts> {
        request_host(r)
    }

    #[test]
    fn host_comes_from_the_authority_or_the_one_host_header() {
        fn name(s: &str) -> Result<RequestHost<'_>, ConflictingHosts> {
            Ok(RequestHost::Name(Cow::Borrowed(s)))
        }
        let r = req(Version::HTTP_11, "/", &[("host", "App.Example.com:8443")]);
        assert_eq!(host(&r), name("app.example.com"));
        let r = req(Version::HTTP_2, "https://a.example.com/x", &[]);
        assert_eq!(host(&r), name("a.example.com"));
        // Absolute-form wins over the Host header.
        let r = req(Version::HTTP_11, "http://a.com/", &[("host", "b.com")]);
        assert_eq!(host(&r), name("a.com"));
        let r = req(Version::HTTP_11, "/", &[]);
        assert_eq!(host(&r), Ok(RequestHost::Missing));
        let r = req(
            Version::HTTP_11,
            "/",
            &[("host", "a.com"), ("host", "b.com")],
        );
        assert_eq!(host(&r), Err(ConflictingHosts));
        for bad in [
            "a/b.example.com",
            "a b.com",
            "evil.com@a.com",
            ":80",
            "a.com:x",
        ] {
            let r = req(Version::HTTP_11, "/", &[("host", bad)]);
            assert_eq!(host(&r), Ok(RequestHost::Invalid), "{bad}");
        }
        let r = req(Version::HTTP_11, "/", &[("host", "[::1]:443")]);
        assert_eq!(host(&r), name("[::1]"));
    }

    #[test]
    fn request_ids_are_kept_when_valid() {
        let mut h = HeaderMap::new();
        h.insert("x-request-id", HeaderValue::from_static("abc-123_x.y"));
        assert_eq!(request_id(&h), "abc-123_x.y");
        for bad in ["", "has space", "semi;colon", "ünï"] {
            let mut h = HeaderMap::new();
            if let Ok(v) = HeaderValue::from_str(bad) {
                h.insert("x-request-id", v);
            }
            let id = request_id(&h);
            assert_ne!(id, bad);
            assert_eq!(id.len(), 32);
            assert!(valid_request_id(id.as_bytes()));
        }
        let long = "a".repeat(129);
        assert!(!valid_request_id(long.as_bytes()));
        assert!(valid_request_id("a".repeat(128).as_bytes()));
        let mut h = HeaderMap::new();
        h.insert("x-request-id", HeaderValue::from_str(&long).expect("value"));
        assert_eq!(request_id(&h).len(), 32);
        assert_ne!(request_id(&HeaderMap::new()), request_id(&HeaderMap::new()));
    }

    #[test]
    fn hop_by_hop_headers_go() {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("connection", "keep-alive, X-Secret"),
            ("connection", "Upgrade"),
            ("x-secret", "1"),
            ("keep-alive", "timeout=5"),
            ("proxy-authorization", "Basic x"),
            ("proxy-connection", "keep-alive"),
            ("proxy", "http://evil"),
            ("proxy-foo", "1"),
            ("te", "trailers"),
            ("trailer", "x-checksum"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("accept", "*/*"),
            ("x-proxyish", "stays"),
            ("proxyish", "stays"),
        ] {
            h.append(k, HeaderValue::from_static(v));
        }
        let mut with_upgrade = h.clone();
        strip_hop_by_hop(&mut h, false);
        let mut left: Vec<_> = h.keys().map(|k| k.as_str()).collect();
        left.sort();
        assert_eq!(left, ["accept", "proxyish", "x-proxyish"]);
        let mut clean = HeaderMap::new();
        clean.insert("accept", HeaderValue::from_static("*/*"));
        strip_hop_by_hop(&mut clean, false);
        assert_eq!(clean.len(), 1);
        strip_hop_by_hop(&mut with_upgrade, true);
        assert_eq!(with_upgrade.get("upgrade").expect("kept"), "websocket");
    }

    #[test]
    fn forwarded_headers_are_set() {
        let client = HeaderValue::from_static("198.51.100.7");
        let id = HeaderValue::from_static("rid");
        let r = req(
            Version::HTTP_11,
            "/p?q=1",
            &[
                ("host", "App.example.com:8080"),
                ("x-forwarded-for", "203.0.113.1"),
                ("x-forwarded-for", "203.0.113.2"),
                ("x-real-ip", "6.6.6.6"),
                ("x-forwarded-proto", "gopher"),
                ("expect", "100-continue"),
                ("connection", "close"),
            ],
        );
        let (mut parts, ()) = r.into_parts();
        prepare_request(
            &mut parts,
            &Forwarding {
                client: &client,
                proto: "https",
                request_id: &id,
                upgrade: false,
            },
        );
        let h = &parts.headers;
        assert_eq!(h["host"], "App.example.com:8080", "the original Host");
        assert_eq!(h["x-forwarded-host"], "App.example.com:8080");
        assert_eq!(
            h["x-forwarded-for"],
            "203.0.113.1, 203.0.113.2, 198.51.100.7"
        );
        assert_eq!(h.get_all("x-forwarded-for").iter().count(), 1);
        assert_eq!(h["x-real-ip"], "198.51.100.7");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-request-id"], "rid");
        assert!(h.get("expect").is_none());
        assert!(h.get("connection").is_none());
        assert_eq!(parts.uri, "/p?q=1");
        assert_eq!(parts.version, Version::HTTP_11);
    }

    #[test]
    fn http2_requests_become_http1() {
        let client = HeaderValue::from_static("2001:db8::1");
        let id = HeaderValue::from_static("rid");
        let r = req(
            Version::HTTP_2,
            "https://a.example.com/x",
            &[("cookie", "a=1"), ("cookie", "b=2"), ("te", "trailers")],
        );
        let (mut parts, ()) = r.into_parts();
        prepare_request(
            &mut parts,
            &Forwarding {
                client: &client,
                proto: "https",
                request_id: &id,
                upgrade: false,
            },
        );
        let h = &parts.headers;
        assert_eq!(h["host"], "a.example.com");
        assert_eq!(h["cookie"], "a=1; b=2");
        assert_eq!(h["x-forwarded-for"], "2001:db8::1");
        assert!(h.get("te").is_none());
        assert_eq!(parts.uri, "/x");
        assert_eq!(parts.version, Version::HTTP_11);
    }

    #[test]
    fn websocket_upgrades_keep_their_headers() {
        let r = req(
            Version::HTTP_11,
            "/ws",
            &[
                ("host", "a.com"),
                ("connection", "keep-alive, Upgrade"),
                ("upgrade", "WebSocket"),
            ],
        );
        assert!(is_websocket_upgrade(&r));
        let (mut parts, ()) = r.into_parts();
        let client = HeaderValue::from_static("192.0.2.1");
        prepare_request(
            &mut parts,
            &Forwarding {
                client: &client,
                proto: "http",
                request_id: &client,
                upgrade: true,
            },
        );
        assert_eq!(parts.headers["connection"], "upgrade");
        assert_eq!(parts.headers["upgrade"], "WebSocket");
        let h2c = req(
            Version::HTTP_11,
            "/",
            &[("connection", "upgrade"), ("upgrade", "h2c")],
        );
        assert!(!is_websocket_upgrade(&h2c));
        let h2 = req(
            Version::HTTP_2,
            "https://a.com/",
            &[("connection", "upgrade"), ("upgrade", "websocket")],
        );
        assert!(!is_websocket_upgrade(&h2));
    }

    #[test]
    fn acme_tokens_and_https_redirects() {
        assert_eq!(
            acme_token("/.well-known/acme-challenge/abc_DEF-1"),
            Some("abc_DEF-1")
        );
        assert_eq!(acme_token("/.well-known/acme-challenge/"), None);
        assert_eq!(acme_token("/.well-known/acme-challenge/a/b"), None);
        assert_eq!(acme_token("/other"), None);
        let uri: Uri = "/a/b?c=d".parse().expect("uri");
        assert_eq!(
            https_location("app.example.com", &uri).expect("location"),
            "https://app.example.com/a/b?c=d"
        );
        let absolute: Uri = "http://app.example.com:80/x".parse().expect("uri");
        assert_eq!(
            https_location("app.example.com", &absolute).expect("location"),
            "https://app.example.com/x"
        );
        let star: Uri = "*".parse().expect("uri");
        assert_eq!(
            https_location("a.com", &star).expect("location"),
            "https://a.com/"
        );
    }
}

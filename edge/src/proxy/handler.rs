//! One request's way through the edge: Host → route, port 80's ACME answers and HTTPS
//! redirects, `/health` for unrouted hosts, the rate limit, then the upstream exchange (or a
//! WebSocket tunnel). Whatever the edge answers itself is a [`Page`].

use std::convert::Infallible;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper::body::{Body, Bytes, Frame, Incoming, SizeHint};
use hyper::header::{
    HeaderValue, ACCEPT, CACHE_CONTROL, CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, LOCATION,
    RETRY_AFTER, TRANSFER_ENCODING,
};
use hyper::upgrade::OnUpgrade;
use hyper::{Method, Request, Response, StatusCode, Version};
use hyper_util::rt::TokioIo;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::framing::AmbiguousHeads;
use super::headers::{self, Forwarding, RequestHost};
use super::{Proxy, Scheme};
use crate::health;
use crate::limits::{ConnectionGuard, RateDecision};
use crate::pages::Page;
use crate::routing::Route;
use crate::upstream::{RequestBody, UpstreamBody};

/// What the requests of one client connection share.
#[derive(Debug)]
pub(super) struct Conn {
    pub proxy: Arc<Proxy>,
    pub client: IpAddr,
    /// `client` as a header value, made once per connection.
    pub client_header: HeaderValue,
    pub scheme: Scheme,
    /// The listener's tasks (WebSocket tunnels join them) and its hard stop.
    pub tasks: TaskTracker,
    pub stop: CancellationToken,
    /// Request heads with both `Content-Length` and `Transfer-Encoding` read on it.
    pub heads: AmbiguousHeads,
    /// Held while the connection (or a WebSocket it became) lives.
    pub _guard: ConnectionGuard,
}

/// A response body: the upstream's, streamed, or one the edge made.
#[derive(Debug)]
pub(super) enum ResponseBody {
    Upstream(UpstreamBody),
    Full(Option<Bytes>),
}

impl ResponseBody {
    fn full(bytes: impl Into<Bytes>) -> Self {
        ResponseBody::Full(Some(bytes.into()))
    }

    fn empty() -> Self {
        ResponseBody::Full(None)
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            ResponseBody::Upstream(incoming) => Pin::new(incoming).poll_frame(cx),
            ResponseBody::Full(bytes) => Poll::Ready(
                bytes
                    .take()
                    .filter(|b| !b.is_empty())
                    .map(|b| Ok(Frame::data(b))),
            ),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ResponseBody::Upstream(incoming) => incoming.is_end_stream(),
            ResponseBody::Full(bytes) => bytes.as_ref().is_none_or(Bytes::is_empty),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ResponseBody::Upstream(incoming) => incoming.size_hint(),
            ResponseBody::Full(bytes) => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
        }
    }
}

type Resp = Response<ResponseBody>;

/// A request the edge answers with a page.
#[derive(Debug, Clone, Copy)]
struct Refusal {
    status: StatusCode,
    /// Seconds, for 429.
    retry_after: Option<u64>,
    /// Close the (HTTP/1) connection after the page.
    close: bool,
}

impl From<StatusCode> for Refusal {
    fn from(status: StatusCode) -> Self {
        Refusal {
            status,
            retry_after: None,
            close: false,
        }
    }
}

/// Serves one request on `conn`; every response carries the request id.
pub(super) async fn handle(conn: Arc<Conn>, req: Request<Incoming>) -> Result<Resp, Infallible> {
    let request_id = headers::request_id(req.headers());
    let accept = req.headers().get(ACCEPT).cloned();
    let method = req.method().clone();
    let mut response = match dispatch(&conn, req, &request_id).await {
        Ok(response) => response,
        Err(refusal) => page(refusal, &request_id, accept.as_ref()),
    };
    tracing::debug!(
        client = %conn.client,
        %method,
        status = response.status().as_u16(),
        request_id = request_id.to_str().unwrap_or_default(),
        "request"
    );
    response
        .headers_mut()
        .insert(headers::X_REQUEST_ID.clone(), request_id);
    Ok(response)
}

async fn dispatch(
    conn: &Arc<Conn>,
    req: Request<Incoming>,
    request_id: &HeaderValue,
) -> Result<Resp, Refusal> {
    let proxy = &conn.proxy;
    let http1 = req.version() < Version::HTTP_2;
    if http1 && req.headers().contains_key(TRANSFER_ENCODING) && conn.heads.take() {
        tracing::debug!(client = %conn.client, "Content-Length with Transfer-Encoding refused");
        return Err(Refusal {
            status: StatusCode::BAD_REQUEST,
            retry_after: None,
            close: true,
        });
    }
    // hyper bounds its read buffer, which stops most oversized heads; a head that arrives in
    // one read (as TLS records often deliver it) can slip past that bound, so measure it too.
    if head_size(&req) > proxy.settings.max_header_bytes {
        return Err(Refusal {
            status: StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            retry_after: None,
            close: true,
        });
    }
    let host = headers::request_host(&req).map_err(|_| StatusCode::BAD_REQUEST)?;
    match host {
        RequestHost::Missing if req.version() == Version::HTTP_11 => {
            return Err(StatusCode::BAD_REQUEST.into())
        }
        RequestHost::Invalid => return Err(StatusCode::BAD_REQUEST.into()),
        _ => {}
    }
    if conn.scheme == Scheme::Http {
        if let Some(token) = headers::acme_token(req.uri().path()) {
            return acme(proxy, req.method(), token);
        }
    }
    let route = match &host {
        RequestHost::Name(name) => proxy.live.routes().lookup(name).cloned(),
        _ => None,
    };
    let Some(route) = route else {
        return unrouted(conn, &req);
    };
    let limit = proxy
        .limits
        .check_request(conn.client, &route.hostname, route.backend.rate_limit);
    if let RateDecision::Deny { .. } = limit {
        tracing::debug!(client = %conn.client, route = %route.hostname, "rate limited");
        return Err(Refusal {
            status: StatusCode::TOO_MANY_REQUESTS,
            retry_after: Some(limit.retry_after_secs()),
            close: false,
        });
    }
    if conn.scheme == Scheme::Http && !route.backend.allow_http {
        let RequestHost::Name(name) = &host else {
            return Err(StatusCode::NOT_FOUND.into());
        };
        return redirect(name, &req);
    }
    forward(conn, req, route, request_id).await
}

/// Port 80's answer to an ACME HTTP-01 challenge, for any Host.
fn acme(proxy: &Proxy, method: &Method, token: &str) -> Result<Resp, Refusal> {
    if method != Method::GET && method != Method::HEAD {
        return Err(StatusCode::METHOD_NOT_ALLOWED.into());
    }
    let answer = proxy
        .live
        .routes()
        .acme_answer(token)
        .map(|a| Bytes::copy_from_slice(a.as_bytes()))
        .ok_or(StatusCode::NOT_FOUND)?;
    let mut response = Response::new(ResponseBody::full(answer));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    Ok(response)
}

/// A request for a host the edge does not route: `/health`, or 404.
fn unrouted(conn: &Conn, req: &Request<Incoming>) -> Result<Resp, Refusal> {
    let is_health = req.uri().path() == "/health"
        && (req.method() == Method::GET || req.method() == Method::HEAD);
    if !is_health {
        return Err(StatusCode::NOT_FOUND.into());
    }
    let proxy = &conn.proxy;
    let limit = proxy.limits.check_request(conn.client, "", None);
    if let RateDecision::Deny { .. } = limit {
        return Err(Refusal {
            status: StatusCode::TOO_MANY_REQUESTS,
            retry_after: Some(limit.retry_after_secs()),
            close: false,
        });
    }
    let report = health::report(&proxy.live, |id| proxy.upstreams.origin_status(id));
    let mut response = Response::new(ResponseBody::full(report.to_json()));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// Plain HTTP to a route that wants HTTPS: 301 for GET and HEAD, 308 (method kept) otherwise.
fn redirect(host: &str, req: &Request<Incoming>) -> Result<Resp, Refusal> {
    let location = headers::https_location(host, req.uri()).ok_or(StatusCode::BAD_REQUEST)?;
    let status = if req.method() == Method::GET || req.method() == Method::HEAD {
        StatusCode::MOVED_PERMANENTLY
    } else {
        StatusCode::PERMANENT_REDIRECT
    };
    let mut response = Response::new(ResponseBody::empty());
    *response.status_mut() = status;
    response.headers_mut().insert(LOCATION, location);
    Ok(response)
}

/// Proxies `req` to `route`'s backend.
async fn forward(
    conn: &Arc<Conn>,
    mut req: Request<Incoming>,
    route: Arc<Route>,
    request_id: &HeaderValue,
) -> Result<Resp, Refusal> {
    let proxy = &conn.proxy;
    let max_body = proxy.settings.max_request_body;
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > max_body) {
        return Err(StatusCode::PAYLOAD_TOO_LARGE.into());
    }
    let upgrade = headers::is_websocket_upgrade(&req);
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let (mut parts, body) = req.into_parts();
    headers::prepare_request(
        &mut parts,
        &Forwarding {
            client: &conn.client_header,
            proto: conn.scheme.as_str(),
            request_id,
            upgrade,
        },
    );
    let upstream_req = Request::from_parts(parts, RequestBody::new(body, max_body));
    let backend = &route.backend;
    let sent = if upgrade {
        proxy.upstreams.send_upgrade(backend, upstream_req).await
    } else {
        proxy.upstreams.send(backend, upstream_req).await
    };
    let mut response = sent.map_err(|error| {
        tracing::debug!(route = %route.hostname, origin = %backend.origin, %error, "upstream failed");
        Refusal::from(error.status())
    })?;
    let switching = response.status() == StatusCode::SWITCHING_PROTOCOLS;
    match client_upgrade {
        Some(client) if switching => {
            let upstream = hyper::upgrade::on(&mut response);
            conn.tasks.spawn(tunnel(client, upstream, conn.clone()));
        }
        // Only a WebSocket upgrade may switch protocols.
        _ if switching => return Err(StatusCode::BAD_GATEWAY.into()),
        _ => {}
    }
    let (mut parts, body) = response.into_parts();
    headers::strip_hop_by_hop(&mut parts.headers, switching);
    if switching {
        parts
            .headers
            .insert(CONNECTION, HeaderValue::from_static("upgrade"));
    }
    parts.version = Version::HTTP_11;
    Ok(Response::from_parts(parts, ResponseBody::Upstream(body)))
}

/// Joins the client's and the upstream's upgraded streams until either side closes or the
/// listener stops.
async fn tunnel(client: OnUpgrade, upstream: OnUpgrade, conn: Arc<Conn>) {
    let relay = async {
        let (client, upstream) = match tokio::try_join!(client, upstream) {
            Ok(both) => both,
            Err(error) => {
                tracing::debug!(%error, "websocket upgrade failed");
                return;
            }
        };
        let (mut client, mut upstream) = (TokioIo::new(client), TokioIo::new(upstream));
        match tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
            Ok((up, down)) => tracing::debug!(up, down, "websocket closed"),
            Err(error) => tracing::debug!(%error, "websocket ended"),
        }
    };
    tokio::select! {
        () = relay => {}
        () = conn.stop.cancelled() => tracing::debug!("websocket closed by shutdown"),
    }
}

/// The page for `refusal`.
fn page(refusal: Refusal, request_id: &HeaderValue, accept: Option<&HeaderValue>) -> Resp {
    let page = Page::new(
        refusal.status,
        request_id.to_str().unwrap_or_default(),
        accept,
    );
    let mut response = Response::new(ResponseBody::full(page.body.clone()));
    *response.status_mut() = refusal.status;
    page.set_headers(response.headers_mut());
    if let Some(secs) = refusal.retry_after {
        response
            .headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(secs));
    }
    if refusal.close {
        response
            .headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
    }
    response
}
/// About how many bytes the request's head took on the wire: the request line and every header
/// line.
fn head_size<B>(req: &Request<B>) -> usize {
    let line = req.method().as_str().len()
        + req.uri().path_and_query().map_or(1, |p| p.as_str().len())
        + " HTTP/1.1\r\n".len()
        + 1;
    req.headers().iter().fold(line, |n, (name, value)| {
        n + name.as_str().len() + value.len() + ": \r\n".len()
    })
}

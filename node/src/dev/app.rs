//! The sample app of `kokoa dev`: a tiny HTTP server on loopback, standing for the service on a
//! home server, published as `app.kokoa.localhost` through the agent's tunnel. Each answer is a
//! short HTML page saying how the request reached it.

use std::net::SocketAddr;

use axum::http::HeaderMap;
use axum::response::Html;
use tokio_util::sync::CancellationToken;

/// Binds `addr` (port 0: any free port); the address it got and the server, which runs until
/// `shutdown`.
pub async fn bind(
    addr: SocketAddr,
    shutdown: CancellationToken,
) -> std::io::Result<(SocketAddr, impl std::future::Future<Output = ()>)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let app = axum::Router::new().fallback(page);
    let serve = async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
        if let Err(error) = served {
            tracing::warn!(%error, "the sample app stopped");
        }
    };
    Ok((local, serve))
}

async fn page(headers: HeaderMap) -> Html<String> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map_or_else(|| "-".to_string(), escape)
    };
    Html(format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>Kokoa sample app</title></head>\n\
         <body><h1>Hello from the origin</h1>\n\
         <p>This page came from the sample app of <code>kokoa dev</code>, on a loopback port of \
         the origin machine, through the agent's WireGuard tunnel and the edge.</p>\n\
         <p>Host: <code>{}</code><br>X-Forwarded-For: <code>{}</code></p></body></html>\n",
        header("host"),
        header("x-forwarded-for"),
    ))
}

/// `text` safe inside HTML.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn it_answers_a_page_and_stops_on_shutdown() {
        let shutdown = CancellationToken::new();
        let (addr, serve) = bind("127.0.0.1:0".parse().expect("addr"), shutdown.clone())
            .await
            .expect("bind");
        let server = tokio::spawn(serve);
        let body = reqwest::Client::new()
            .get(format!("http://{addr}/"))
            .header("host", "app.kokoa.localhost")
            .header("x-forwarded-for", "<script>")
            .send()
            .await
            .expect("get")
            .text()
            .await
            .expect("body");
        assert!(body.contains("Hello from the origin"), "{body}");
        assert!(body.contains("app.kokoa.localhost"), "{body}");
        assert!(body.contains("&lt;script&gt;"), "{body}");
        shutdown.cancel();
        server.await.expect("stops");
    }
}

//! The edge's data plane as a browser sees it: hostnames on several domains reach their own
//! origins over HTTPS with their own certificates (picked by SNI, wildcards included), unknown
//! hosts get 404, client headers reach the origin, HTTP/2 is offered, plain HTTP redirects to
//! HTTPS, an unreachable origin is a 502, `/health` reports the config, and a new route is
//! served within a second of its write.

use std::time::{Duration, Instant};

use kokoa_tests::{
    curl_edge, edge_client, free_port, probe_tls, wait_until_ok_every, ClientOptions, OriginApp,
};
use serde_json::{json, Value};

use crate::edge_common::{assert_from, fetch, unlimited, EdgeSetup};

/// How soon a new route must be served after its write is acknowledged: a stated requirement.
const ROUTE_LIVE_WITHIN: Duration = Duration::from_secs(1);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostnames_on_two_domains_reach_their_origins_with_their_certificates() {
    let setup = EdgeSetup::start().await;
    let edge = &setup.edge;
    let alpha = OriginApp::start("alpha").await;
    let beta = OriginApp::start("beta").await;
    let wild = OriginApp::start("wild").await;
    let (cert_a, _) = setup.certificate(&["a.example.com"]).await;
    let (cert_b, _) = setup.certificate(&["b.example.net"]).await;
    let (cert_w, _) = setup.certificate(&["*.example.org"]).await;
    setup.route("a.example.com", &alpha.target()).await;
    setup.route("b.example.net", &beta.target()).await;
    let index = setup.route("*.example.org", &wild.target()).await;
    setup.served(index).await;

    // Each hostname reaches its own origin; curl checks the certificate against the CA and the
    // name it asked for (SNI).
    let mut problems = Vec::new();
    for (host, origin) in [
        ("a.example.com", "alpha"),
        ("b.example.net", "beta"),
        ("x.example.org", "wild"),
        ("y.example.org", "wild"),
    ] {
        let url = edge.https_url(host, "/hello?from=curl");
        let out = curl_edge(edge, &url, host, Some(&setup.ca_file), &["--http1.1"]).await;
        let body: Value = serde_json::from_str(&out.body).unwrap_or(Value::Null);
        if !(out.success && out.status == 200 && body["origin"] == origin) {
            problems.push(format!(
                "curl {url} (SNI {host}): want 200 from {origin} with a verified certificate, \
                 got {}",
                out.summary()
            ));
        } else if body["path"] != "/hello?from=curl" {
            problems.push(format!(
                "{url}: the origin saw path {} instead of /hello?from=curl",
                body["path"]
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));

    // The certificate served for each SNI name is exactly the one uploaded for it.
    for (sni, cert) in [
        ("a.example.com", &cert_a),
        ("b.example.net", &cert_b),
        ("x.example.org", &cert_w),
        ("deep-name.example.org", &cert_w),
    ] {
        let probe = probe_tls(edge.https_addr(), sni, &["http/1.1"])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            probe.fingerprint(),
            cert.fingerprint(),
            "SNI {sni}: the edge served a certificate other than the one uploaded for {:?}",
            cert.names
        );
    }

    // A name without a certificate gets a fallback that no client trusts, not one of ours.
    let probe = probe_tls(edge.https_addr(), "nobody.example.com", &["http/1.1"])
        .await
        .unwrap_or_else(|e| panic!("unknown SNI: {e}"));
    for cert in [&cert_a, &cert_b, &cert_w] {
        assert_ne!(
            probe.fingerprint(),
            cert.fingerprint(),
            "SNI nobody.example.com got the certificate of {:?}",
            cert.names
        );
    }
    let url = edge.https_url("nobody.example.com", "/");
    let out = curl_edge(edge, &url, "nobody.example.com", Some(&setup.ca_file), &[]).await;
    assert!(
        !out.success && out.status == 0,
        "curl trusted the fallback certificate for nobody.example.com: {}",
        out.summary()
    );

    // Hosts that no route covers: 404 (a wildcard covers one label, and not the apex).
    let insecure = edge_client(edge.ip(), &ClientOptions::default());
    for host in ["nobody.example.com", "a.b.example.org", "example.org"] {
        let url = edge.https_url(host, "/");
        let answer = fetch(&insecure, &url)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            answer.status, 404,
            "GET {url}: want 404 for a host without a route, got {} {}",
            answer.status, answer.body
        );
    }
    for app in [&alpha, &beta, &wild] {
        let strays: Vec<String> = app
            .requests()
            .iter()
            .filter(|r| !r.path.starts_with("/hello"))
            .map(|r| format!("{} {} (host {:?})", r.method, r.path, r.headers.get("host")))
            .collect();
        assert!(
            strays.is_empty(),
            "origin app {} got requests meant for nobody: {strays:?}",
            app.name()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_edge_forwards_client_details_speaks_h2_redirects_http_and_reports_health() {
    let setup = EdgeSetup::start().await;
    let edge = &setup.edge;
    let app = OriginApp::start("app").await;
    let plain = OriginApp::start("plain").await;
    setup
        .certificate(&["app.example.com", "down.example.com"])
        .await;
    setup.route("app.example.com", &app.target()).await;
    setup
        .add_route(json!({
            "hostname": "plain.example.com",
            "target": plain.target(),
            "allow_http": true,
            "rate_limit": unlimited(),
        }))
        .await;
    // Nothing listens there.
    let closed_port = free_port();
    let index = setup
        .route("down.example.com", &format!("127.0.0.1:{closed_port}"))
        .await;
    setup.served(index).await;

    // The client's address, scheme, host and a request id reach the origin.
    let client_ip = "127.0.0.77".parse().expect("ip");
    let client = edge_client(
        edge.ip(),
        &ClientOptions {
            ca: Some(&setup.ca),
            local_ip: Some(client_ip),
            ..ClientOptions::default()
        },
    );
    let url = edge.https_url("app.example.com", "/headers");
    let mut request_ids = Vec::new();
    for _ in 0..2 {
        let answer = fetch(&client, &url).await.unwrap_or_else(|e| panic!("{e}"));
        assert_from(&format!("GET {url}"), &answer, "app");
        let seen = answer.json()["headers"].clone();
        let header = |name: &str| seen[name].as_str().unwrap_or_default().to_string();
        let forwarded_for = header("x-forwarded-for");
        assert_eq!(
            forwarded_for.rsplit(',').next().map(str::trim),
            Some("127.0.0.77"),
            "X-Forwarded-For at the origin should end with the client's address 127.0.0.77; \
             headers seen: {seen}"
        );
        assert_eq!(
            header("x-real-ip"),
            "127.0.0.77",
            "X-Real-IP at the origin; headers seen: {seen}"
        );
        assert_eq!(
            header("x-forwarded-proto"),
            "https",
            "X-Forwarded-Proto at the origin; headers seen: {seen}"
        );
        let forwarded_host = header("x-forwarded-host");
        assert!(
            forwarded_host == "app.example.com"
                || forwarded_host == format!("app.example.com:{}", edge.https_addr().port()),
            "X-Forwarded-Host at the origin should be the Host the client sent; headers seen: \
             {seen}"
        );
        let request_id = header("x-request-id");
        assert!(
            !request_id.is_empty(),
            "no X-Request-Id at the origin; headers seen: {seen}"
        );
        request_ids.push(request_id);
    }
    assert_ne!(
        request_ids[0], request_ids[1],
        "two requests got the same X-Request-Id"
    );

    // HTTP/2 through ALPN, and HTTP/1.1 for clients that ask for it.
    let url = edge.https_url("app.example.com", "/h2");
    for (flag, version) in [("--http2", "2"), ("--http1.1", "1.1")] {
        let out = curl_edge(edge, &url, "app.example.com", Some(&setup.ca_file), &[flag]).await;
        let body: Value = serde_json::from_str(&out.body).unwrap_or(Value::Null);
        assert!(
            out.success && out.status == 200 && body["origin"] == "app",
            "curl {flag} {url}: {}",
            out.summary()
        );
        assert_eq!(
            out.http_version,
            version,
            "curl {flag} {url} spoke HTTP/{} instead of HTTP/{version}: {}",
            out.http_version,
            out.summary()
        );
    }
    let probe = probe_tls(edge.https_addr(), "app.example.com", &["h2", "http/1.1"])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        probe.alpn.as_deref(),
        Some("h2"),
        "ALPN with a client offering h2 and http/1.1"
    );

    // Plain HTTP redirects to HTTPS, path and query kept, unless the route allows HTTP.
    let url = edge.http_url("app.example.com", "/some/path?q=1");
    let answer = fetch(&client, &url).await.unwrap_or_else(|e| panic!("{e}"));
    let location = answer.header("location").unwrap_or_default().to_string();
    assert!(
        [301, 302, 307, 308].contains(&answer.status)
            && location.starts_with("https://app.example.com")
            && location.ends_with("/some/path?q=1"),
        "GET {url}: want a redirect to https://app.example.com…/some/path?q=1, got {} \
         (Location: {location:?}) {}",
        answer.status,
        answer.body
    );
    assert!(
        !app.requests()
            .iter()
            .any(|r| r.path.starts_with("/some/path")),
        "a plain-HTTP request reached the origin instead of being redirected"
    );
    let url = edge.http_url("plain.example.com", "/over-http");
    let answer = fetch(&client, &url).await.unwrap_or_else(|e| panic!("{e}"));
    assert_from(&format!("GET {url} (allow_http)"), &answer, "plain");
    assert_eq!(
        answer.json()["headers"]["x-forwarded-proto"],
        "http",
        "X-Forwarded-Proto for a plain-HTTP request: {}",
        answer.body
    );

    // An origin that does not answer is a 502.
    let url = edge.https_url("down.example.com", "/");
    let answer = fetch(&client, &url).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        answer.status, 502,
        "GET {url} (target 127.0.0.1:{closed_port}, nothing listening): want 502, got {} {}",
        answer.status, answer.body
    );

    // /health on an address that is not a routed hostname.
    let health = edge.health().await.unwrap_or_else(|e| panic!("{e}"));
    let version = health["version"].as_u64().unwrap_or(0);
    assert!(
        version >= index,
        "/health version {version} is below the last route's index {index}: {health}"
    );
    assert!(
        health["last_pulled"].as_u64().is_some_and(|t| t > 0),
        "/health has no last_pulled time: {health}"
    );
    assert_eq!(
        health["from_disk"], false,
        "a config pulled from a replica is not from disk: {health}"
    );
    assert!(
        health.get("origins").is_some_and(|o| !o.is_null()),
        "/health has no origins: {health}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_route_is_served_within_a_second_of_its_write() {
    let setup = EdgeSetup::start().await;
    let edge = &setup.edge;
    let app = OriginApp::start("fresh").await;
    let (_, index) = setup.certificate(&["*.example.com"]).await;
    setup.served(index).await;
    let client = setup.client();

    let mut delays = Vec::new();
    for i in 0..5 {
        let host = format!("fresh-{i}.example.com");
        let body = json!({
            "hostname": host,
            "origin_id": setup.origin_id,
            "target": app.target(),
            "rate_limit": unlimited(),
        });
        let response = setup
            .admin
            .post_json("/api/v1/routes", &body)
            .await
            .unwrap_or_else(|e| panic!("POST /api/v1/routes {host}: {e}"));
        assert_eq!(
            response.status.as_u16(),
            201,
            "POST /api/v1/routes {host}: {}",
            response.json
        );
        let written = Instant::now();
        let url = edge.https_url(&host, "/");
        let (client, url) = (&client, &url);
        wait_until_ok_every(
            &format!("{host} served by the edge"),
            Duration::from_secs(30),
            Duration::from_millis(20),
            || async move {
                let answer = fetch(client, url).await?;
                if answer.status == 200 && answer.origin().as_deref() == Some("fresh") {
                    Ok(())
                } else {
                    Err(format!("{} {}", answer.status, answer.body))
                }
            },
        )
        .await;
        delays.push(written.elapsed());
    }
    eprintln!("route write acknowledged -> first 200 through the edge: {delays:?}");
    let slow: Vec<&Duration> = delays.iter().filter(|d| **d >= ROUTE_LIVE_WITHIN).collect();
    assert!(
        slow.is_empty(),
        "a route must be served within {ROUTE_LIVE_WITHIN:?} of its 201; measured {delays:?}"
    );
}

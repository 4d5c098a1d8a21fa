//! Limits and failures get the right status with a JSON body: 413, 431,
//! 502, 503, 504.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod support;

use std::sync::atomic::Ordering;

use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn assert_json_error(got: &Got, status: u16, code: &str) {
    assert_eq!(got.status, status, "{got:?}");
    assert_eq!(got.headers["content-type"], "application/json");
    assert!(
        got.body.contains(&format!("\"error\":\"{code}\"")),
        "{}",
        got.body
    );
}

#[tokio::test]
async fn body_over_the_route_limit_is_413_whether_declared_or_streamed() {
    let a = Backend::start("a").await;
    let (_f, proxy) = proxy_with_routes(
        "limits",
        &route(
            "up",
            "up.acme.test",
            &[&a],
            "roundRobin",
            "  maxRequestBodyBytes: 1024\n",
        ),
    )
    .await;
    let c = client();
    let ok = send(&c, proxy.listen, "up.acme.test", "POST", "/", &[b'x'; 1024]).await;
    assert_eq!(ok.status, 200);
    assert!(ok.body.starts_with("a 1024 "), "{}", ok.body);
    let declared = send(&c, proxy.listen, "up.acme.test", "POST", "/", &[b'x'; 4096]).await;
    assert_json_error(&declared, 413, "body_too_large");

    // Chunked, no Content-Length: the limit applies while streaming.
    let mut tcp = tokio::net::TcpStream::connect(proxy.listen).await.unwrap();
    let chunk = "x".repeat(800);
    let request = format!(
        "POST / HTTP/1.1\r\nHost: up.acme.test\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n320\r\n{chunk}\r\n320\r\n{chunk}\r\n0\r\n\r\n"
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tcp.read_to_end(&mut out).await;
    let out = String::from_utf8_lossy(&out);
    assert!(out.starts_with("HTTP/1.1 413"), "{out}");
    proxy.shutdown().await;
}

#[tokio::test]
async fn oversized_request_head_is_431() {
    let a = Backend::start("a").await;
    let (_f, proxy) = proxy_with_routes(
        "limits",
        &route("up", "up.acme.test", &[&a], "roundRobin", ""),
    )
    .await;
    let mut tcp = tokio::net::TcpStream::connect(proxy.listen).await.unwrap();
    let big = "y".repeat(80 * 1024);
    let request = format!("GET / HTTP/1.1\r\nHost: up.acme.test\r\nX-Big: {big}\r\n\r\n");
    let _ = tcp.write_all(request.as_bytes()).await;
    let mut out = Vec::new();
    let _ = tcp.read_to_end(&mut out).await;
    let out = String::from_utf8_lossy(&out);
    assert!(out.starts_with("HTTP/1.1 431"), "{out}");
    assert_eq!(a.hits(), 0);
    proxy.shutdown().await;
}

#[tokio::test]
async fn slow_upstream_is_504_after_the_request_timeout() {
    let a = Backend::start("a").await;
    a.behaviour.delay_ms.store(2_000, Ordering::SeqCst);
    let (_f, proxy) = proxy_with_routes(
        "limits",
        &route(
            "up",
            "up.acme.test",
            &[&a],
            "roundRobin",
            "  timeouts: {request: 200ms}\n",
        ),
    )
    .await;
    // Over HTTP/1.1 and HTTP/2, twice on one connection each.
    for (c, version) in [
        (client(), http::Version::HTTP_11),
        (h2c_client(), http::Version::HTTP_2),
    ] {
        for _ in 0..2 {
            let started = std::time::Instant::now();
            let got = get(&c, proxy.listen, "up.acme.test", "/").await;
            assert_eq!(got.version, version);
            assert_json_error(&got, 504, "upstream_timeout");
            let waited = started.elapsed();
            assert!(
                waited >= std::time::Duration::from_millis(200)
                    && waited < std::time::Duration::from_secs(1),
                "{waited:?}"
            );
        }
    }
    // The connection a timed-out exchange used is not reused; a fast
    // answer afterwards is whole.
    a.behaviour.delay_ms.store(0, Ordering::SeqCst);
    let c = client();
    for _ in 0..5 {
        let got = get(&c, proxy.listen, "up.acme.test", "/").await;
        assert_eq!(got.status, 200, "{got:?}");
    }
    proxy.shutdown().await;
}

#[tokio::test]
async fn unreachable_upstream_is_502_and_a_healthy_one_takes_the_retry() {
    // A port nothing listens on: bind, read the port, close.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let yaml = format!(
        "apiVersion: veloflux.io/v1alpha1\nkind: Route\nmetadata: {{name: dead, namespace: acme}}\nspec:\n  tenantRef: acme\n  hosts: [dead.acme.test]\n  retries: {{attempts: 0}}\n  backends:\n    - {{name: gone, address: \"{dead}\"}}\n"
    );
    let a = Backend::start("a").await;
    let retrying = format!(
        "apiVersion: veloflux.io/v1alpha1\nkind: Route\nmetadata: {{name: retry, namespace: acme}}\nspec:\n  tenantRef: acme\n  hosts: [retry.acme.test]\n  retries: {{attempts: 1}}\n  backends:\n    - {{name: gone, address: \"{dead}\"}}\n    - {{name: a, address: \"{}\"}}\n",
        a.addr
    );
    // Default retries, but no other endpoint to retry on: still 502.
    let lonely = format!(
        "apiVersion: veloflux.io/v1alpha1\nkind: Route\nmetadata: {{name: lonely, namespace: acme}}\nspec:\n  tenantRef: acme\n  hosts: [lonely.acme.test]\n  backends:\n    - {{name: gone, address: \"{dead}\"}}\n"
    );
    let (_f, proxy) =
        proxy_with_routes("limits", &format!("{yaml}---\n{retrying}---\n{lonely}")).await;
    let c = client();
    assert_json_error(
        &get(&c, proxy.listen, "dead.acme.test", "/").await,
        502,
        "upstream_connect_failed",
    );
    assert_json_error(
        &get(&c, proxy.listen, "lonely.acme.test", "/").await,
        502,
        "upstream_connect_failed",
    );
    for _ in 0..4 {
        let got = get(&c, proxy.listen, "retry.acme.test", "/").await;
        assert_eq!(
            (got.status, backend_of(&got)),
            (200, "a"),
            "idempotent GETs are retried on another endpoint"
        );
        // The retry is the same request: forwarding headers and the request
        // id the client sees both reached the second endpoint.
        let id = got.headers["x-request-id"].to_str().unwrap();
        assert!(
            got.body.contains(&format!("127.0.0.1|http|{id}|")),
            "{}",
            got.body
        );
    }
    proxy.shutdown().await;
}

#[tokio::test]
async fn no_healthy_upstream_is_503() {
    let a = Backend::start("a").await;
    a.behaviour.unhealthy.store(true, Ordering::SeqCst);
    let check = "  healthCheck: {path: /healthz, interval: 50ms, timeout: 200ms, healthyThreshold: 1, unhealthyThreshold: 1}\n";
    let (_f, proxy) = proxy_with_routes(
        "limits",
        &route("up", "up.acme.test", &[&a], "roundRobin", check),
    )
    .await;
    let c = client();
    let p = proxy.listen;
    assert!(
        eventually(std::time::Duration::from_secs(5), async || get(
            &c,
            p,
            "up.acme.test",
            "/"
        )
        .await
        .status
            == 503)
        .await
    );
    assert_json_error(
        &get(&c, p, "up.acme.test", "/").await,
        503,
        "no_healthy_upstream",
    );
    proxy.shutdown().await;
}

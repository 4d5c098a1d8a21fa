//! Routing against real loopback backends: hosts, wildcards, paths,
//! methods, headers, the 404 that reveals nothing, forwarded headers,
//! HTTP/2 (h2c), upgrade passthrough and suspended tenants.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod support;

use std::time::Duration;

use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn setup() -> (Folder, Backend, Backend, veloflux_proxy::app::Running) {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let folder = Folder::new("routing");
    let rules = "  rules:\n    - path: {type: Exact, value: /exact}\n      backends: [b]\n    - path: {type: Prefix, value: /api}\n      methods: [POST]\n      backends: [b]\n    - path: {type: Prefix, value: /api}\n      backends: [a]\n    - path: {type: Prefix, value: /}\n      headers: [{name: X-Canary, value: \"yes\"}]\n      backends: [b]\n    - path: {type: Prefix, value: /}\n      backends: [a]\n";
    folder.write("00-tenants.yaml", &plan_and_tenant());
    folder.write(
        "routes.yaml",
        &format!(
            "{}---\n{}",
            route("web", "www.acme.test", &[&a, &b], "roundRobin", rules),
            route("wild", "\"*.acme.test\"", &[&b], "roundRobin", ""),
        ),
    );
    let proxy = start_proxy(folder.path()).await;
    (folder, a, b, proxy)
}

#[tokio::test]
async fn requests_route_by_host_path_method_and_header() {
    let (_f, _a, _b, proxy) = setup().await;
    let c = client();
    let p = proxy.listen;
    assert_eq!(
        backend_of(&get(&c, p, "www.acme.test", "/exact").await),
        "b"
    );
    assert_eq!(
        backend_of(&get(&c, p, "www.acme.test", "/exact/more").await),
        "a",
        "exact does not match below"
    );
    assert_eq!(
        backend_of(&get(&c, p, "www.acme.test", "/api/x").await),
        "a"
    );
    assert_eq!(
        backend_of(&send(&c, p, "www.acme.test", "POST", "/api/x", b"{}").await),
        "b"
    );
    assert_eq!(
        backend_of(&get(&c, p, "www.acme.test", "/apix").await),
        "a",
        "prefix is segment-wise"
    );
    assert_eq!(
        backend_of(&get(&c, p, "WWW.Acme.Test:80", "/other").await),
        "a",
        "host is case-insensitive, port ignored"
    );
    assert_eq!(
        backend_of(&get(&c, p, "anything.acme.test", "/").await),
        "b",
        "wildcard host"
    );
    let canary = http::Request::builder()
        .uri(format!("http://{p}/"))
        .header("host", "www.acme.test")
        .header("x-canary", "yes")
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let resp = c.request(canary).await.unwrap();
    assert_eq!(resp.headers()["x-backend"], "b");
    proxy.shutdown().await;
}

#[tokio::test]
async fn unknown_host_gets_a_json_404_that_reveals_nothing() {
    let (_f, _a, _b, proxy) = setup().await;
    let c = client();
    for host in ["unknown.example", "acme.test.evil", "a.b.acme.test"] {
        let got = get(&c, proxy.listen, host, "/").await;
        assert_eq!(got.status, 404, "{host}");
        assert_eq!(got.headers["content-type"], "application/json");
        assert!(got.body.contains("\"error\":\"no_route\""), "{}", got.body);
        assert!(
            !got.body.contains("acme") && !got.body.contains("globex"),
            "{}",
            got.body
        );
    }
    proxy.shutdown().await;
}

#[tokio::test]
async fn forwarded_headers_and_request_ids_reach_the_backend() {
    let (_f, _a, _b, proxy) = setup().await;
    let c = client();
    let got = get(&c, proxy.listen, "www.acme.test", "/").await;
    // Body: "<name> <bytes> <xff>|<proto>|<request id>|<connection>"
    let fields: Vec<&str> = got.body.splitn(3, ' ').nth(2).unwrap().split('|').collect();
    assert_eq!(fields[0], "127.0.0.1");
    assert_eq!(fields[1], "http");
    assert_eq!(fields[2].len(), 16, "a generated request id: {got:?}");
    assert_eq!(
        got.headers["x-request-id"], fields[2],
        "the same id comes back"
    );
    assert_eq!(
        fields[3], "",
        "hop-by-hop Connection header is not forwarded"
    );

    let req = http::Request::builder()
        .uri(format!("http://{}/", proxy.listen))
        .header("host", "www.acme.test")
        .header("x-request-id", "abc-123")
        .header("x-forwarded-for", "203.0.113.9")
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let resp = c.request(req).await.unwrap();
    let body = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap()
        .to_bytes();
    let body = String::from_utf8_lossy(&body);
    assert!(
        body.contains("203.0.113.9, 127.0.0.1|http|abc-123"),
        "{body}"
    );
    proxy.shutdown().await;
}

#[tokio::test]
async fn http2_prior_knowledge_is_served() {
    let (_f, _a, _b, proxy) = setup().await;
    let c = h2c_client();
    let got = get(&c, proxy.listen, "www.acme.test", "/exact").await;
    assert_eq!(got.status, 200);
    assert_eq!(got.version, http::Version::HTTP_2);
    assert_eq!(backend_of(&got), "b");
    proxy.shutdown().await;
}

#[tokio::test]
async fn upgrade_requests_pass_through_both_ways() {
    let (_f, _a, _b, proxy) = setup().await;
    let mut tcp = tokio::net::TcpStream::connect(proxy.listen).await.unwrap();
    tcp.write_all(b"GET /chat HTTP/1.1\r\nHost: ws.acme.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n").await.unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        tcp.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: websocket"), "{head}");
    assert!(head.contains("connection: upgrade"), "{head}");
    for message in [&b"hello"[..], b"second frame"] {
        tcp.write_all(message).await.unwrap();
        let mut echo = vec![0u8; message.len()];
        tokio::time::timeout(Duration::from_secs(5), tcp.read_exact(&mut echo))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(echo, message);
    }
    proxy.shutdown().await;
}

#[tokio::test]
async fn suspended_tenant_answers_403() {
    let a = Backend::start("a").await;
    let folder = Folder::new("suspended");
    folder.write(
        "00-tenants.yaml",
        &plan_and_tenant().replace(
            "namespaces: [acme]",
            "namespaces: [acme]\n  suspended: true",
        ),
    );
    folder.write(
        "routes.yaml",
        &route("web", "www.acme.test", &[&a], "roundRobin", ""),
    );
    let proxy = start_proxy(folder.path()).await;
    let got = get(&client(), proxy.listen, "www.acme.test", "/").await;
    assert_eq!(got.status, 403);
    assert!(got.body.contains("tenant_suspended"), "{}", got.body);
    assert_eq!(a.hits(), 0);
    proxy.shutdown().await;
}

#[tokio::test]
async fn missing_host_is_a_bad_request() {
    let (_f, _a, _b, proxy) = setup().await;
    let mut tcp = tokio::net::TcpStream::connect(proxy.listen).await.unwrap();
    tcp.write_all(b"GET / HTTP/1.0\r\n\r\n").await.unwrap();
    let mut out = Vec::new();
    tcp.read_to_end(&mut out).await.unwrap();
    let out = String::from_utf8_lossy(&out);
    assert!(out.starts_with("HTTP/1.0 400"), "{out}");
    assert!(out.contains("bad_host"), "{out}");
    proxy.shutdown().await;
}

//! Upstream connections: kept alive and reused per endpoint, never reused
//! after the upstream closed them, closed when idle past the route's idle
//! timeout.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn upstream_connections_are_kept_alive_and_reused() {
    let a = Backend::start("a").await;
    let (_f, proxy) = proxy_with_routes(
        "upstream",
        &route("keep", "keep.acme.test", &[&a], "roundRobin", ""),
    )
    .await;
    let c = client();
    for i in 0..50 {
        let got = get(&c, proxy.listen, "keep.acme.test", &format!("/{i}")).await;
        assert_eq!(got.status, 200, "{got:?}");
    }
    assert_eq!(
        a.connections.load(Ordering::SeqCst),
        1,
        "50 sequential requests share one upstream connection"
    );

    // Concurrent requests need concurrent connections; once they are
    // pooled, later requests open none.
    let mut burst = tokio::task::JoinSet::new();
    for i in 0..8 {
        let c = c.clone();
        let listen = proxy.listen;
        burst.spawn(async move { get(&c, listen, "keep.acme.test", &format!("/b{i}")).await });
    }
    let burst = burst.join_all().await;
    assert!(burst.iter().all(|g| g.status == 200));
    let after_burst = a.connections.load(Ordering::SeqCst);
    assert!((1..=9).contains(&after_burst), "{after_burst}");
    for i in 0..20 {
        let got = get(&c, proxy.listen, "keep.acme.test", &format!("/s{i}")).await;
        assert_eq!(got.status, 200);
    }
    assert_eq!(a.connections.load(Ordering::SeqCst), after_burst);
    assert_eq!(a.hits(), 78);
    proxy.shutdown().await;
}

/// A keep-alive upstream that closes each connection 30 ms after its one
/// response, as servers with a short keep-alive timeout do.
async fn closing_upstream() -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = std::sync::Arc::clone(&accepted);
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                continue;
            };
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut seen = Vec::new();
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                    .await;
                tokio::time::sleep(Duration::from_millis(30)).await;
            });
        }
    });
    (addr, accepted)
}

#[tokio::test]
async fn a_connection_the_upstream_closed_is_not_reused() {
    let (addr, accepted) = closing_upstream().await;
    let route_yaml = format!(
        "apiVersion: veloflux.io/v1alpha1\nkind: Route\nmetadata: {{name: closing, namespace: acme}}\nspec:\n  tenantRef: acme\n  hosts: [closing.acme.test]\n  backends:\n    - {{name: c, address: \"{addr}\"}}\n"
    );
    let (_f, proxy) = proxy_with_routes("upstream", &route_yaml).await;
    let c = client();
    for i in 0..10 {
        let got = get(&c, proxy.listen, "closing.acme.test", &format!("/{i}")).await;
        assert_eq!(got.status, 200, "request {i}: {got:?}");
        assert_eq!(got.body, "ok");
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        10,
        "each request needed a new connection"
    );
    proxy.shutdown().await;
}

#[tokio::test]
async fn idle_upstream_connections_close_after_the_idle_timeout() {
    let a = Backend::start("a").await;
    let (_f, proxy) = proxy_with_routes(
        "upstream",
        &route(
            "idle",
            "idle.acme.test",
            &[&a],
            "roundRobin",
            "  timeouts: {idle: 200ms}\n",
        ),
    )
    .await;
    let c = client();
    let got = get(&c, proxy.listen, "idle.acme.test", "/").await;
    assert_eq!(got.status, 200);
    assert_eq!(a.open.load(Ordering::SeqCst), 1);
    assert!(
        eventually(Duration::from_secs(5), async || a
            .open
            .load(Ordering::SeqCst)
            == 0)
        .await,
        "the idle connection was closed"
    );
    let got = get(&c, proxy.listen, "idle.acme.test", "/again").await;
    assert_eq!(got.status, 200);
    assert_eq!(a.connections.load(Ordering::SeqCst), 2);
    proxy.shutdown().await;
}

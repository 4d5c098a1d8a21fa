//! Distribution of each algorithm over real backends: round robin evenly,
//! weighted by ratio, least connections toward the fast backend, consistent
//! hashing sticky per key.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod support;

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use support::*;

async fn spread(proxy: std::net::SocketAddr, host: &str, n: usize) -> HashMap<String, usize> {
    let c = client();
    let mut counts = HashMap::new();
    for _ in 0..n {
        let got = get(&c, proxy, host, "/").await;
        assert_eq!(got.status, 200);
        *counts.entry(backend_of(&got).to_owned()).or_insert(0) += 1;
    }
    counts
}

#[tokio::test]
async fn round_robin_spreads_evenly() {
    let (a, b, c) = (
        Backend::start("a").await,
        Backend::start("b").await,
        Backend::start("c").await,
    );
    let (_f, proxy) = proxy_with_routes(
        "balancing",
        &route("rr", "rr.acme.test", &[&a, &b, &c], "roundRobin", ""),
    )
    .await;
    let counts = spread(proxy.listen, "rr.acme.test", 300).await;
    for name in ["a", "b", "c"] {
        assert_eq!(counts[name], 100, "{counts:?}");
    }
    proxy.shutdown().await;
}

#[tokio::test]
async fn weighted_follows_the_configured_ratio() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let yaml = route("w", "w.acme.test", &[&a, &b], "weighted", "").replace(
        &format!("{{name: a, address: \"{}\"}}", a.addr),
        &format!("{{name: a, address: \"{}\", weight: 3}}", a.addr),
    );
    let (_f, proxy) = proxy_with_routes("balancing", &yaml).await;
    let counts = spread(proxy.listen, "w.acme.test", 400).await;
    let ratio = counts["a"] as f64 / counts["b"] as f64;
    assert!((2.85..=3.15).contains(&ratio), "a:b = {ratio} ({counts:?})");
    proxy.shutdown().await;
}

#[tokio::test]
async fn least_conn_favours_the_fast_backend() {
    let (fast, slow) = (Backend::start("fast").await, Backend::start("slow").await);
    slow.behaviour.delay_ms.store(200, Ordering::SeqCst);
    let (_f, proxy) = proxy_with_routes(
        "balancing",
        &route("lc", "lc.acme.test", &[&fast, &slow], "leastConn", ""),
    )
    .await;
    // 40 concurrent clients, each sending requests back to back.
    let mut tasks = Vec::new();
    for _ in 0..40 {
        let addr = proxy.listen;
        tasks.push(tokio::spawn(async move {
            let c = client();
            let mut names = Vec::new();
            for _ in 0..5 {
                names.push(backend_of(&get(&c, addr, "lc.acme.test", "/").await).to_owned());
            }
            names
        }));
    }
    let mut counts: HashMap<String, usize> = HashMap::new();
    for t in tasks {
        for name in t.await.unwrap() {
            *counts.entry(name).or_insert(0) += 1;
        }
    }
    let (f, s) = (
        counts.get("fast").copied().unwrap_or(0),
        counts.get("slow").copied().unwrap_or(0),
    );
    assert!(f > 4 * s, "fast {f} vs slow {s}");
    proxy.shutdown().await;
}

#[tokio::test]
async fn consistent_hash_keeps_each_key_on_one_backend() {
    let (a, b, c) = (
        Backend::start("a").await,
        Backend::start("b").await,
        Backend::start("c").await,
    );
    let extra = "  hashOn: {source: header, name: X-User}\n";
    let (_f, proxy) = proxy_with_routes(
        "balancing",
        &route("ch", "ch.acme.test", &[&a, &b, &c], "consistentHash", extra),
    )
    .await;
    let cl = client();
    let mut owners: HashMap<String, String> = HashMap::new();
    let mut used = std::collections::HashSet::new();
    for round in 0..3 {
        for user in 0..30 {
            let req = http::Request::builder()
                .uri(format!("http://ch.acme.test:{}/", proxy.listen.port()))
                .header("x-user", format!("user-{user}"))
                .body(http_body_util::Full::new(bytes::Bytes::new()))
                .unwrap();
            let resp = cl.request(req).await.unwrap();
            let name = resp.headers()["x-backend"].to_str().unwrap().to_owned();
            used.insert(name.clone());
            let owner = owners
                .entry(format!("user-{user}"))
                .or_insert_with(|| name.clone());
            assert_eq!(*owner, name, "user-{user} moved in round {round}");
        }
    }
    assert_eq!(used.len(), 3, "keys spread over every backend");
    proxy.shutdown().await;
}

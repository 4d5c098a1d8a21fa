//! Rate limits against a real `redis-server`: exact limits, burst and
//! headers on one proxy; three proxies sharing one tenant limit within 5 %;
//! a route's limit only tightens; fail-open and fail-closed while Redis is
//! down, and limits resuming when it returns.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use support::*;
use veloflux_crds::TenantConfig;
use veloflux_crds::plan::FailureMode;
use veloflux_proxy::app::{Running, start};
use veloflux_store::testing::{RedisServer, tenant_config};

const WAIT: Duration = Duration::from_secs(15);

async fn fleet_proxy(url: &str, id: &str) -> Running {
    start(fleet_config(url, id)).await.unwrap()
}

fn limited(
    name: &str,
    host: &str,
    backend: &Backend,
    rpm: u32,
    burst: u32,
    mode: FailureMode,
) -> TenantConfig {
    let mut config = tenant_config(name, &[host], backend.addr).unwrap();
    config.plan.requests_per_minute = rpm;
    config.plan.burst = burst;
    config.plan.rate_limit_failure_mode = mode;
    config
}

fn header(got: &Got, name: &str) -> u64 {
    got.headers
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_proxy_enforces_the_burst_and_rate_exactly_with_headers() {
    let redis = RedisServer::start().await.unwrap();
    let a = Backend::start("a").await;
    let writer = veloflux_store::testing::writer(&redis.url()).await.unwrap();
    writer
        .sync_all(&[limited(
            "acme",
            "acme.test",
            &a,
            60,
            5,
            FailureMode::FailOpen,
        )])
        .await
        .unwrap();
    let proxy = fleet_proxy(&redis.url(), "p-1").await;
    let c = client();
    // 60 a minute is one token a second, so a lease is one token: the
    // headers may trail the truth by at most that one.
    for expected_remaining in (0..5u64).rev() {
        let got = get(&c, proxy.listen, "acme.test", "/").await;
        assert_eq!(got.status, 200);
        assert_eq!(header(&got, "ratelimit-limit"), 5);
        let remaining = header(&got, "ratelimit-remaining");
        assert!(
            remaining.abs_diff(expected_remaining) <= 1,
            "remaining {remaining}, expected {expected_remaining}"
        );
        assert!(header(&got, "ratelimit-reset") <= 5);
    }
    let refused = get(&c, proxy.listen, "acme.test", "/").await;
    assert_eq!(refused.status, 429);
    assert!(
        refused.body.contains(r#""error":"rate_limited""#),
        "{}",
        refused.body
    );
    assert_eq!(header(&refused, "ratelimit-remaining"), 0);
    let retry = header(&refused, "retry-after");
    assert!((1..=1).contains(&retry), "one token per second: {retry}");
    assert_eq!(a.hits(), 5, "refused requests never reach the backend");
    // One token a second comes back.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(get(&c, proxy.listen, "acme.test", "/").await.status, 200);
    assert_eq!(get(&c, proxy.listen, "acme.test", "/").await.status, 429);
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_proxies_share_one_tenant_limit_within_five_percent() {
    let redis = RedisServer::start().await.unwrap();
    let a = Backend::start("a").await;
    let writer = veloflux_store::testing::writer(&redis.url()).await.unwrap();
    // 100 requests a second, burst 100.
    writer
        .sync_all(&[limited(
            "acme",
            "acme.test",
            &a,
            6000,
            100,
            FailureMode::FailOpen,
        )])
        .await
        .unwrap();
    let proxies = [
        fleet_proxy(&redis.url(), "p-1").await,
        fleet_proxy(&redis.url(), "p-2").await,
        fleet_proxy(&redis.url(), "p-3").await,
    ];
    let stop = Arc::new(AtomicBool::new(false));
    let admitted = Arc::new(AtomicUsize::new(0));
    let refused = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut clients = Vec::new();
    for i in 0..6 {
        let (stop, admitted, refused) = (
            Arc::clone(&stop),
            Arc::clone(&admitted),
            Arc::clone(&refused),
        );
        let addr = proxies[i % 3].listen;
        clients.push(tokio::spawn(async move {
            let c = client();
            while !stop.load(Ordering::Relaxed) {
                match get(&c, addr, "acme.test", "/").await.status {
                    200 => admitted.fetch_add(1, Ordering::Relaxed),
                    429 => refused.fetch_add(1, Ordering::Relaxed),
                    other => panic!("unexpected status {other}"),
                };
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    stop.store(true, Ordering::Relaxed);
    for task in clients {
        task.await.unwrap();
    }
    let elapsed = started.elapsed().as_secs_f64();
    let admitted = admitted.load(Ordering::Relaxed) as f64;
    let limit = 100.0 + 100.0 * elapsed;
    let error = (admitted - limit) / limit;
    assert!(
        error.abs() <= 0.05,
        "admitted {admitted} in {elapsed:.2} s against a limit of {limit:.0}: {:+.1} %",
        error * 100.0
    );
    assert!(
        refused.load(Ordering::Relaxed) > 0,
        "the load exceeded the limit"
    );
    for proxy in proxies {
        proxy.shutdown().await;
    }
}

#[tokio::test]
async fn a_routes_limit_only_tightens_the_plans() {
    let a = Backend::start("a").await;
    let folder = Folder::new("ratelimit-route");
    folder.write(
        "plan.yaml",
        r#"
apiVersion: veloflux.io/v1alpha1
kind: Plan
metadata: {name: small}
spec:
  limits: {requestsPerMinute: 60, burst: 6, maxRoutes: 10, maxBackendsPerRoute: 4, maxDomains: 4}
  features: {staticBackends: true}
---
apiVersion: veloflux.io/v1alpha1
kind: Tenant
metadata: {name: acme}
spec: {planRef: small, domains: ["*.acme.test"], namespaces: [acme]}
"#,
    );
    let tight = "  rateLimit: {requestsPerMinute: 60, burst: 2}\n";
    let loose = "  rateLimit: {requestsPerMinute: 6000, burst: 500}\n";
    folder.write(
        "routes.yaml",
        &format!(
            "{}---\n{}",
            route("tight", "tight.acme.test", &[&a], "roundRobin", tight),
            route("loose", "loose.acme.test", &[&a], "roundRobin", loose)
        ),
    );
    let proxy = start_proxy(folder.path()).await;
    let c = client();
    let statuses = async |host: &str, n: usize| {
        let mut out = Vec::new();
        for _ in 0..n {
            out.push(get(&c, proxy.listen, host, "/").await.status);
        }
        out
    };
    // The route's own burst of 2 applies.
    assert_eq!(statuses("tight.acme.test", 3).await, [200, 200, 429]);
    // A looser route limit cannot lift the plan's: 6 minus the 2 spent.
    assert_eq!(
        statuses("loose.acme.test", 5).await,
        [200, 200, 200, 200, 429]
    );
    proxy.shutdown().await;
}

async fn metric(proxy: &Running, series: &str) -> f64 {
    let text = get(&client(), proxy.admin, "admin", "/metrics").await.body;
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_redis_is_down_each_plan_fails_open_or_closed_and_limits_resume() {
    let mut redis = RedisServer::start().await.unwrap();
    let a = Backend::start("a").await;
    let writer = veloflux_store::testing::writer(&redis.url()).await.unwrap();
    writer
        .sync_all(&[
            limited("open", "open.test", &a, 60_000, 1000, FailureMode::FailOpen),
            limited(
                "closed",
                "closed.test",
                &a,
                60_000,
                1000,
                FailureMode::FailClosed,
            ),
        ])
        .await
        .unwrap();
    let proxy = fleet_proxy(&redis.url(), "p-1").await;
    let c = client();
    assert_eq!(get(&c, proxy.listen, "open.test", "/").await.status, 200);
    assert_eq!(get(&c, proxy.listen, "closed.test", "/").await.status, 200);
    assert_eq!(metric(&proxy, "veloflux_ratelimit_store_up").await, 1.0);

    redis.kill();
    // Requests spend what is leased, then need Redis.
    assert!(
        eventually(WAIT, async || get(&c, proxy.listen, "closed.test", "/")
            .await
            .status
            == 429)
        .await,
        "fail-closed refuses while Redis is down"
    );
    for _ in 0..20 {
        assert_eq!(
            get(&c, proxy.listen, "open.test", "/").await.status,
            200,
            "fail-open keeps serving on the local limit"
        );
    }
    assert_eq!(metric(&proxy, "veloflux_ratelimit_store_up").await, 0.0);
    assert!(
        metric(
            &proxy,
            r#"veloflux_ratelimit_decisions_total{tenant="closed",outcome="failed_closed"}"#
        )
        .await
            > 0.0
    );
    assert!(
        metric(
            &proxy,
            r#"veloflux_ratelimit_decisions_total{tenant="open",outcome="failed_open"}"#
        )
        .await
            > 0.0
    );

    redis.restart_empty().await.unwrap();
    assert!(
        eventually(WAIT, async || get(&c, proxy.listen, "closed.test", "/")
            .await
            .status
            == 200)
        .await,
        "limits resume when Redis is back"
    );
    assert_eq!(metric(&proxy, "veloflux_ratelimit_store_up").await, 1.0);
    proxy.shutdown().await;
}

//! Health: active checks eject and restore endpoints, passive ejection
//! follows consecutive 5xx, and draining endpoints finish in-flight
//! requests but get no new ones.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use support::*;

const CHECK: &str = "  healthCheck: {path: /healthz, interval: 50ms, timeout: 200ms, healthyThreshold: 2, unhealthyThreshold: 2}\n";

#[tokio::test]
async fn active_checks_eject_a_failing_endpoint_and_restore_it() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let folder = Folder::new("active");
    folder.write("00-tenants.yaml", &plan_and_tenant());
    folder.write(
        "route.yaml",
        &route("web", "web.acme.test", &[&a, &b], "roundRobin", CHECK),
    );
    let proxy = start_proxy(folder.path()).await;
    let c = client();
    b.behaviour.unhealthy.store(true, Ordering::SeqCst);
    let p = proxy.listen;
    assert!(
        eventually(Duration::from_secs(5), async || {
            let before = b.hits();
            for _ in 0..10 {
                assert_eq!(get(&c, p, "web.acme.test", "/").await.status, 200);
            }
            b.hits() == before
        })
        .await,
        "the unhealthy endpoint keeps getting traffic"
    );
    b.behaviour.unhealthy.store(false, Ordering::SeqCst);
    assert!(
        eventually(Duration::from_secs(5), async || {
            let before = b.hits();
            for _ in 0..4 {
                get(&c, p, "web.acme.test", "/").await;
            }
            b.hits() > before
        })
        .await,
        "the recovered endpoint gets no traffic"
    );
    proxy.shutdown().await;
}

#[tokio::test]
async fn consecutive_5xx_eject_an_endpoint_passively() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    b.behaviour.status.store(500, Ordering::SeqCst);
    let folder = Folder::new("passive");
    folder.write("00-tenants.yaml", &plan_and_tenant());
    folder.write(
        "route.yaml",
        &route("web", "web.acme.test", &[&a, &b], "roundRobin", ""),
    );
    let proxy = start_proxy(folder.path()).await;
    let c = client();
    let mut fives = 0;
    for _ in 0..40 {
        if get(&c, proxy.listen, "web.acme.test", "/").await.status == 500 {
            fives += 1;
        }
    }
    assert_eq!(
        fives, 5,
        "five 5xx in a row eject the endpoint; the rest go to the healthy one"
    );
    let metrics = get(&c, proxy.admin, "admin", "/metrics").await.body;
    assert!(
        metrics.contains(&format!(
            "veloflux_upstream_healthy{{tenant=\"acme\",route=\"acme/web\",endpoint=\"{}\"}} 0",
            b.addr
        )),
        "{metrics}"
    );
    proxy.shutdown().await;
}

#[tokio::test]
async fn draining_endpoint_finishes_in_flight_requests_and_gets_no_new_ones() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    b.behaviour.delay_ms.store(500, Ordering::SeqCst);
    let folder = Folder::new("drain");
    folder.write("00-tenants.yaml", &plan_and_tenant());
    let live = route("web", "web.acme.test", &[&a, &b], "roundRobin", "");
    folder.write("route.yaml", &live);
    let proxy = start_proxy(folder.path()).await;
    let c = client();
    // Start slow requests on b (round robin alternates a, b).
    let mut slow = Vec::new();
    for _ in 0..4 {
        let c = c.clone();
        let p = proxy.listen;
        slow.push(tokio::spawn(async move {
            get(&c, p, "web.acme.test", "/").await
        }));
    }
    assert!(
        eventually(Duration::from_secs(2), async || b
            .in_flight
            .load(Ordering::SeqCst)
            >= 1)
        .await
    );
    let in_flight_at_drain = b.in_flight.load(Ordering::SeqCst);
    let hits_at_drain = b.hits();
    // Drain b.
    folder.write(
        "route.yaml",
        &live.replace(
            &format!("{{name: b, address: \"{}\"}}", b.addr),
            &format!("{{name: b, address: \"{}\", drain: true}}", b.addr),
        ),
    );
    let p = proxy.listen;
    assert!(
        eventually(Duration::from_secs(3), async || {
            let config = get(&c, proxy.admin, "admin", "/config").await.body;
            config.contains("\"draining\":true")
        })
        .await
    );
    for _ in 0..20 {
        let got = get(&c, p, "web.acme.test", "/").await;
        assert_eq!((got.status, backend_of(&got)), (200, "a"));
    }
    for t in slow {
        assert_eq!(
            t.await.unwrap().status,
            200,
            "in-flight requests on the draining endpoint complete"
        );
    }
    assert!(in_flight_at_drain >= 1);
    assert_eq!(
        b.hits(),
        hits_at_drain,
        "no new request reached the draining endpoint"
    );
    proxy.shutdown().await;
}

//! The routing part of the request path allocates nothing: host
//! normalisation, snapshot lookup (exact and wildcard), rule matching, the
//! tenant's rate limit and the balancer's pick, counted with an instrumented
//! global allocator.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::alloc::System;
use std::sync::Arc;

use http::{HeaderMap, Method};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use veloflux_crds::Manifests;
use veloflux_proxy::admin::metrics::Metrics;
use veloflux_proxy::backends::balancer::Tried;
use veloflux_proxy::backends::endpoint::EndpointRegistry;
use veloflux_proxy::routing::router::{BuildContext, build_tenant};
use veloflux_proxy::routing::snapshot::{Store, normalize_host};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// The allocator's counts are process-wide: one measurement at a time.
#[allow(
    clippy::disallowed_types,
    reason = "serialises the tests of this file; no request path involved"
)]
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn routing_a_request_allocates_nothing() {
    let _serial = SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut manifests = Manifests::default();
    let path = std::path::Path::new("inline.yaml");
    manifests
        .add_yaml(
            path,
            r#"
apiVersion: veloflux.io/v1alpha1
kind: Plan
metadata: {name: p}
spec:
  limits: {requestsPerMinute: 100, maxRoutes: 10, maxBackendsPerRoute: 4, maxDomains: 4}
  features: {staticBackends: true}
---
apiVersion: veloflux.io/v1alpha1
kind: Tenant
metadata: {name: acme}
spec: {planRef: p, domains: [acme.test, "*.acme.test"], namespaces: [acme]}
---
apiVersion: veloflux.io/v1alpha1
kind: Route
metadata: {name: web, namespace: acme}
spec:
  tenantRef: acme
  hosts: [www.acme.test, "*.acme.test"]
  algorithm: weighted
  rules:
    - path: {type: Prefix, value: /api}
      methods: [GET]
      headers: [{name: X-Env, value: prod}]
    - path: {type: Prefix, value: /}
  backends:
    - {name: a, address: "127.0.0.1:9001", weight: 3}
    - {name: b, address: "127.0.0.1:9002"}
"#,
        )
        .unwrap();
    let config = Arc::new(manifests.resolve().configs.remove("acme").unwrap());
    let (endpoints, metrics) = (EndpointRegistry::default(), Metrics::new(10, 100));
    let tenant = build_tenant(
        config,
        BuildContext {
            endpoints: &endpoints,
            limits: &veloflux_proxy::limits::ratelimit::LimitRegistry::default(),
            usage: &veloflux_proxy::limits::usage::UsageRegistry::default(),
            metrics: &metrics,
        },
    )
    .unwrap();
    let store = Store::default();
    store.set_tenant("acme", Some(Arc::new(tenant)));
    let mut headers = HeaderMap::new();
    headers.insert("x-env", "prod".parse().unwrap());
    let hosts = ["WWW.acme.test:8080", "img.acme.test", "www.acme.test"];
    let method = Method::GET;

    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let client: std::net::IpAddr = "10.0.0.1".parse().unwrap();
    let limiter = Arc::clone(
        store
            .load()
            .host("www.acme.test")
            .unwrap()
            .rate_limit
            .as_ref()
            .unwrap(),
    );
    runtime.block_on(limiter.check(&headers, client));

    let measure = || {
        let region = Region::new(GLOBAL);
        let mut picked = 0;
        for i in 0..10_000 {
            let snapshot = store.load();
            let mut buf = [0u8; 255];
            let host = normalize_host(hosts[i % hosts.len()], &mut buf).unwrap();
            let entry = snapshot.host(host).unwrap();
            let (route, rule) = entry.find(&method, "/api/users", &headers).unwrap();
            let limit = entry.rate_limit.as_ref().unwrap();
            runtime.block_on(limit.check(&headers, client));
            if route.pick(rule, None, Tried::default()).is_some() {
                picked += 1;
            }
        }
        assert_eq!(picked, 10_000);
        region.change()
    };
    // The counts are process-wide: the test harness finishing another test
    // (its thread's exit, its report) can land inside a window. An
    // allocation per request shows in every window; interference does not.
    let windows: Vec<_> = (0..3).map(|_| measure()).collect();
    assert!(
        windows.iter().any(|s| s.allocations + s.reallocations == 0),
        "{windows:?}"
    );
}

#[test]
fn rate_limit_headers_cost_no_allocation_per_response() {
    let _serial = SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let decision = veloflux_proxy::limits::ratelimit::Decision::new(true, 6_000, 0, 0, 0);
    let mut headers = HeaderMap::with_capacity(16);
    decision.write_headers(&mut headers);

    let region = Region::new(GLOBAL);
    let responses = 10_000u64;
    for i in 0..responses {
        let mut decision = decision.clone();
        decision.remaining = 5_999 - i % 6_000;
        decision.reset = i % 60;
        decision.allowed = i % 7 != 0;
        decision.retry_after = 1;
        decision.write_headers(&mut headers);
        assert_eq!(
            headers["ratelimit-remaining"].to_str().unwrap(),
            (5_999 - i % 6_000).to_string()
        );
    }
    let stats = region.change();
    // `to_string` above allocates once per response; the header values
    // themselves come from a per-thread slab (two allocations per slab of
    // a few thousand values).
    let own = stats.allocations as u64 - responses;
    assert!(
        own * 500 <= responses,
        "{own} allocations for {responses} responses: {stats:?}"
    );
    assert_eq!(headers["ratelimit-limit"], "6000");
}

//! Monthly quotas and overage policies, with usage written to a real
//! `redis-server` as the proxies write it: throttle, blockNewConfig,
//! notify and log.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use support::*;
use veloflux_crds::plan::OveragePolicy;
use veloflux_crds::{Plan, Route, Tenant};
use veloflux_store::usage;

const WAIT: Duration = Duration::from_secs(10);

async fn setup(policy: OveragePolicy) -> Harness {
    let mut h = Harness::start().await;
    let mut plan = Plan::test("metered");
    plan.spec.limits.requests_per_month = Some(100);
    plan.spec.overage_policy = policy;
    h.api.apply(&plan);
    h.api.apply(
        &Tenant::test("acme", "metered")
            .with_domains(&["acme.test", "*.acme.test"])
            .created(10),
    );
    h.api
        .apply(&Route::test("acme", "web", "acme", "acme.test").created(20));
    h.settle().await;
    h
}

/// Records `requests` for acme this month, as a proxy's flush would.
async fn use_requests(h: &Harness, requests: u64) {
    let client = veloflux_store::testing::connected(&h.redis.url())
        .await
        .unwrap();
    let minute = veloflux_store::acks::now_ms() / 60_000;
    let months = BTreeMap::from([(usage::month_of(minute), [requests, 0, 0])]);
    usage::write(&client, "acme", "proxy-0@1", &BTreeMap::new(), &months)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttle_cuts_the_rate_once_the_quota_is_used() {
    let mut h = setup(OveragePolicy::Throttle).await;
    assert_eq!(
        h.stored("acme").await.unwrap().plan.requests_per_minute,
        600
    );
    use_requests(&h, 99).await;
    h.settle().await;
    assert_eq!(
        h.stored("acme").await.unwrap().plan.requests_per_minute,
        600
    );
    use_requests(&h, 100).await;
    h.settle().await;
    let stored = h.stored("acme").await.unwrap();
    assert_eq!(
        (stored.plan.requests_per_minute, stored.plan.burst),
        (60, 6)
    );
    h.operator.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn block_new_config_keeps_serving_but_admits_no_new_route() {
    let mut h = setup(OveragePolicy::BlockNewConfig).await;
    use_requests(&h, 150).await;
    h.settle().await;
    h.api
        .apply(&Route::test("acme", "extra", "acme", "api.acme.test").created(30));
    assert!(
        eventually(WAIT, async || h
            .condition(ROUTES, "acme", "extra", "Accepted")
            .is_some_and(|c| c.1 == "QuotaExceeded"))
        .await
    );
    let (status, _, message) = h.condition(ROUTES, "acme", "extra", "Accepted").unwrap();
    assert_eq!(status, "False");
    assert!(message.contains("150 of 100 requests"), "{message}");
    let ids: Vec<String> = h
        .stored("acme")
        .await
        .unwrap()
        .routes
        .iter()
        .map(|r| r.id.clone())
        .collect();
    assert_eq!(
        ids,
        ["acme/web"],
        "the served route stays, the new one is held back"
    );
    assert_eq!(
        h.condition(ROUTES, "acme", "web", "Accepted").unwrap().0,
        "True"
    );
    h.operator.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_raises_one_event_and_log_changes_nothing() {
    let mut h = setup(OveragePolicy::Notify).await;
    use_requests(&h, 150).await;
    h.settle().await;
    h.settle().await;
    let events: Vec<_> = h
        .api
        .list(EVENTS)
        .into_iter()
        .filter(|e| e["reason"] == "QuotaExceeded" && e["regarding"]["kind"] == "Tenant")
        .collect();
    assert_eq!(events.len(), 1, "{events:?}");
    assert!(
        events[0]["note"]
            .as_str()
            .unwrap()
            .contains("150 of 100 requests")
    );
    assert_eq!(
        h.stored("acme").await.unwrap().plan.requests_per_minute,
        600
    );
    h.operator.stop();

    let mut h = setup(OveragePolicy::Log).await;
    use_requests(&h, 150).await;
    h.settle().await;
    assert_eq!(
        h.stored("acme").await.unwrap().plan.requests_per_minute,
        600
    );
    assert!(
        !h.api
            .list(EVENTS)
            .iter()
            .any(|e| e["reason"] == "QuotaExceeded" && e["regarding"]["kind"] == "Tenant")
    );
    h.operator.stop();
}

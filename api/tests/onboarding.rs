//! Self-service onboarding end to end: sign-up through the API writes a
//! Tenant into the folder the real standalone proxy watches, a route
//! created through the API is served by that proxy, and a deleted one stops
//! being served.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use clap::Parser as _;
use http::{Method, StatusCode};
use serde_json::json;
use support::{Platform, route_spec};

/// Polls until `done` holds (at most 10 s, for a loaded machine); how long it took.
async fn served(proxy: SocketAddr, host: &str, done: impl Fn(&(u16, String)) -> bool) -> Duration {
    let started = Instant::now();
    loop {
        let answer = support::proxy_get(proxy, host).await;
        if answer.as_ref().is_some_and(&done) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{host}: still {answer:?} after 10 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_created_through_the_api_is_served_by_the_standalone_proxy_on_the_same_folder() {
    let platform = Platform::start().await;
    let proxy_config = veloflux_proxy::config::Config::try_parse_from([
        "veloflux-proxy",
        "--manifests",
        platform.manifests.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
        "--poll-interval",
        "100ms",
        "--access-log",
        "false",
        "--log",
        "warn",
    ])
    .unwrap();
    let proxy = veloflux_proxy::app::start(proxy_config).await.unwrap();
    let backend = support::backend("hello from acme").await;

    let tokens = platform
        .signup(
            "owner@acme.example",
            "acme",
            &["acme.customers.example", "*.acme.customers.example"],
        )
        .await;
    assert_eq!(tokens["tenant_id"], "acme");
    assert_eq!(tokens["role"], "owner");
    let token = tokens["access_token"].as_str().unwrap();

    // The Tenant is a manifest in the folder, exactly as a person would write it.
    let text = std::fs::read_to_string(platform.manifests.join("tenant@acme.yaml")).unwrap();
    let tenant: veloflux_crds::Tenant = serde_saphyr::from_str(
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .collect::<Vec<_>>()
            .join("\n")
            .as_str(),
    )
    .unwrap();
    assert_eq!(tenant.spec.plan_ref, "free");
    assert_eq!(tenant.spec.owners, vec!["owner@acme.example"]);
    assert_eq!(tenant.spec.namespaces, vec!["acme"]);
    assert_eq!(
        tenant.spec.domains,
        vec!["acme.customers.example", "*.acme.customers.example"]
    );
    assert!(
        !text.contains("vf:config"),
        "the API writes no compiled config"
    );

    // Routes wait for a confirmed email address.
    let create = json!({"name": "shop", "spec": route_spec("shop.acme.customers.example", &backend.to_string())});
    let refused = platform
        .call(
            Method::POST,
            "/api/tenants/acme/routes",
            Some(token),
            Some(create.clone()),
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{:?}", refused.body);
    assert_eq!(refused.problem(), "email-not-verified");
    platform.verify("owner@acme.example").await;

    let created = platform
        .call(
            Method::POST,
            "/api/tenants/acme/routes",
            Some(token),
            Some(create),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
    assert_eq!(created.body["namespace"], "acme");
    assert_eq!(created.body["spec"]["tenantRef"], "acme");
    let accepted = created.body["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Accepted")
        .cloned()
        .unwrap();
    assert_eq!(accepted["status"], "True", "{accepted}");
    assert!(support::has_file(
        &platform.manifests,
        "route@acme@shop.yaml"
    ));

    let took = served(
        proxy.listen,
        "shop.acme.customers.example",
        |(status, body)| *status == 200 && body == "hello from acme",
    )
    .await;
    eprintln!("route created through the API served by the proxy after {took:?}");

    // Its status reads back through the API.
    let read = platform.get("/api/tenants/acme/routes/shop", token).await;
    assert_eq!(read.status, StatusCode::OK);
    assert_eq!(read.body["name"], "shop");

    let deleted = platform
        .call(
            Method::DELETE,
            "/api/tenants/acme/routes/shop",
            Some(token),
            None,
        )
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{:?}", deleted.body);
    served(
        proxy.listen,
        "shop.acme.customers.example",
        |(status, _)| *status == 404,
    )
    .await;
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tenant_view_shows_conditions_and_usage_against_the_plan() {
    let platform = Platform::start().await;
    let token = platform
        .owner(
            "owner@globex.example",
            "globex",
            &["globex.customers.example"],
        )
        .await;
    let view = platform.get("/api/tenants/globex", &token).await;
    assert_eq!(view.status, StatusCode::OK, "{:?}", view.body);
    assert_eq!(view.body["plan"], "free");
    assert_eq!(view.body["state"], "active");
    assert_eq!(view.body["usage"]["maxRoutes"], 2);
    assert_eq!(view.body["usage"]["domains"], 1);
    let ready = view.body["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Ready")
        .cloned()
        .unwrap();
    assert_eq!(ready["status"], "True", "{ready}");
    let me = platform.get("/api/me", &token).await;
    assert_eq!(me.body["email"], "owner@globex.example");
    assert_eq!(me.body["emailVerified"], true);
    assert_eq!(me.body["tenants"][0]["tenant"], "globex");
    assert_eq!(me.body["tenants"][0]["role"], "owner");
    let usage = platform.get("/api/tenants/globex/usage", &token).await;
    assert_eq!(usage.status, StatusCode::OK, "{:?}", usage.body);
    assert_eq!(usage.body["requests"], 0);
}

//! The operator's controllers against a fake Kubernetes API and a real
//! `redis-server`: quotas, host conflicts, namespaces, Service endpoints
//! with terminating ones draining, Secrets, finalizers, idempotency, status
//! conventions, `Programmed` from real proxies, and leader election.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::{Value, json};
use support::*;
use veloflux_crds::{Plan, Route, Tenant};
use veloflux_operator::leader::Election;
use veloflux_operator::metrics::Metrics;
use veloflux_operator::reconcile::FINALIZER;

const WAIT: Duration = Duration::from_secs(10);

fn reasons(object: &Value) -> Vec<String> {
    object["status"]["conditions"]
        .as_array()
        .map(|cs| {
            cs.iter()
                .map(|c| c["reason"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn acme() -> Tenant {
    Tenant::test("acme", "free")
        .with_domains(&["acme.test", "*.acme.test"])
        .created(10)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quota_admits_the_oldest_routes_and_a_plan_upgrade_readmits_the_rest() {
    let mut h = Harness::start().await;
    h.api.apply(&Plan::test("free").with_max_routes(1));
    h.api.apply(&acme());
    h.api
        .apply(&Route::test("acme", "first", "acme", "a.acme.test").created(20));
    h.api
        .apply(&Route::test("acme", "second", "acme", "b.acme.test").created(30));
    h.settle().await;

    let first = h.condition(ROUTES, "acme", "first", "Accepted").unwrap();
    assert_eq!((first.0.as_str(), first.1.as_str()), ("True", "Accepted"));
    let second = h.condition(ROUTES, "acme", "second", "Accepted").unwrap();
    assert_eq!(
        (second.0.as_str(), second.1.as_str()),
        ("False", "QuotaExceeded")
    );
    let stored = h.stored("acme").await.unwrap();
    assert_eq!(stored.routes.len(), 1);
    let usage = &h.api.get(TENANTS, "", "acme").unwrap()["status"]["usage"];
    assert_eq!(
        (usage["routes"].as_u64(), usage["maxRoutes"].as_u64()),
        (Some(1), Some(1))
    );

    // The plan is upgraded: the second route is admitted, automatically.
    h.api.apply(&Plan::test("free").with_max_routes(5));
    assert!(
        eventually(WAIT, async || h
            .condition(ROUTES, "acme", "second", "Accepted")
            .is_some_and(|c| c.0 == "True"))
        .await
    );
    assert!(
        eventually(WAIT, async || h.stored("acme").await.unwrap().routes.len()
            == 2)
        .await
    );
    // The refusal was a Warning event on the route.
    let events = h.api.list(EVENTS);
    assert!(
        events
            .iter()
            .any(|e| e["reason"] == "QuotaExceeded" && e["type"] == "Warning"),
        "{events:?}"
    );
    h.operator.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_conflicts_and_namespaces_are_reported_on_the_object_at_fault() {
    let mut h = Harness::start().await;
    h.api.apply(&Plan::test("free"));
    h.api.apply(&acme());
    h.api.apply(
        &Tenant::test("globex", "free")
            .with_domains(&["globex.test", "acme.test"])
            .created(20),
    );
    h.api
        .apply(&Route::test("acme", "web", "acme", "acme.test").created(30));
    // A route of acme in a namespace acme does not list.
    h.api
        .apply(&Route::test("elsewhere", "web", "acme", "x.acme.test").created(40));
    // globex asks for a host acme owns.
    h.api
        .apply(&Route::test("globex", "steal", "globex", "acme.test").created(50));
    h.settle().await;

    let globex = h.api.get(TENANTS, "", "globex").unwrap();
    assert!(
        reasons(&globex).contains(&"HostConflict".to_owned()),
        "{globex}"
    );
    let steal = h.condition(ROUTES, "globex", "steal", "Accepted").unwrap();
    assert_eq!(
        (steal.0.as_str(), steal.1.as_str()),
        ("False", "HostConflict")
    );
    let elsewhere = h.condition(ROUTES, "elsewhere", "web", "Accepted").unwrap();
    assert_eq!(
        (elsewhere.0.as_str(), elsewhere.1.as_str()),
        ("False", "NamespaceNotAllowed")
    );
    // One bad object never blocks the others.
    let web = h.condition(ROUTES, "acme", "web", "Accepted").unwrap();
    assert_eq!(web.0, "True");
    assert_eq!(h.stored("acme").await.unwrap().routes.len(), 1);
    assert!(h.stored("globex").await.unwrap().routes.is_empty());
    h.operator.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_endpoints_become_addresses_and_terminating_ones_drain() {
    let mut h = Harness::start().await;
    h.api.apply(&Plan::test("free"));
    h.api.apply(&acme());
    h.api.apply(
        &Route::test("acme", "web", "acme", "acme.test")
            .with_service(None, "web", 80)
            .created(20),
    );
    h.settle().await;
    let refs = h.condition(ROUTES, "acme", "web", "ResolvedRefs").unwrap();
    assert_eq!(
        (refs.0.as_str(), refs.1.as_str()),
        ("False", "BackendNotFound")
    );

    let service: Service = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "web", "namespace": "acme"},
        "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}]}
    }))
    .unwrap();
    h.api.apply(&service);
    let slice = |terminating: bool| -> EndpointSlice {
        serde_json::from_value(json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": "web-abc", "namespace": "acme",
                         "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080}],
            "endpoints": [
                {"addresses": ["10.0.0.1"], "conditions": {"ready": true, "serving": true}},
                {"addresses": ["10.0.0.2"], "conditions": {
                    "ready": !terminating, "serving": true, "terminating": terminating}}
            ]
        }))
        .unwrap()
    };
    h.api.apply(&slice(false));
    let endpoints = async |h: &Harness| -> Vec<(String, bool)> {
        h.stored("acme")
            .await
            .map(|c| {
                c.routes[0].backends[0]
                    .endpoints
                    .iter()
                    .map(|e| (e.address.clone(), e.draining))
                    .collect()
            })
            .unwrap_or_default()
    };
    assert!(
        eventually(WAIT, async || endpoints(&h).await
            == [
                ("10.0.0.1:8080".to_owned(), false),
                ("10.0.0.2:8080".to_owned(), false)
            ])
        .await
    );
    // A rolling update: the second pod is terminating.
    h.api.apply(&slice(true));
    assert!(
        eventually(WAIT, async || endpoints(&h).await
            == [
                ("10.0.0.1:8080".to_owned(), false),
                ("10.0.0.2:8080".to_owned(), true)
            ])
        .await
    );
    assert!(
        eventually(WAIT, async || h
            .condition(ROUTES, "acme", "web", "ResolvedRefs")
            .is_some_and(|c| c.0 == "True"))
        .await
    );
    h.operator.stop();
}

const CERT: &str = "-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n";
const KEY: &str = "-----BEGIN PRIVATE KEY-----\nMIIBfake\n-----END PRIVATE KEY-----\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_secret_becomes_the_routes_certificate() {
    let mut h = Harness::start().await;
    h.api.apply(&Plan::test("free").with_custom_tls());
    h.api.apply(&acme());
    h.api.apply(
        &Route::test("acme", "web", "acme", "acme.test")
            .with_tls("acme-cert")
            .created(20),
    );
    h.settle().await;
    let refs = h.condition(ROUTES, "acme", "web", "ResolvedRefs").unwrap();
    assert_eq!(
        (refs.0.as_str(), refs.1.as_str()),
        ("False", "SecretNotFound")
    );

    use base64::Engine as _;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let secret: Secret = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
        "metadata": {"name": "acme-cert", "namespace": "acme"},
        "data": {"tls.crt": b64(CERT), "tls.key": b64(KEY)}
    }))
    .unwrap();
    h.api.apply(&secret);
    assert!(
        eventually(WAIT, async || h.stored("acme").await.is_some_and(|c| c
            .certificates
            .first()
            .is_some_and(|cert| cert.cert_pem == CERT)))
        .await
    );
    let stored = h.stored("acme").await.unwrap();
    assert_eq!(stored.certificates[0].key_pem, KEY);
    assert_eq!(stored.certificates[0].hosts, ["acme.test"]);
    h.operator.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_tenant_removes_its_routing_first_and_keeps_its_users() {
    let mut h = Harness::start().await;
    h.api.apply(&Plan::test("free"));
    h.api.apply(&acme());
    h.api
        .apply(&Route::test("acme", "web", "acme", "acme.test").created(20));
    h.settle().await;
    let tenant = h.api.get(TENANTS, "", "acme").unwrap();
    assert!(
        tenant["metadata"]["finalizers"]
            .as_array()
            .unwrap()
            .contains(&json!(FINALIZER))
    );
    assert!(h.stored("acme").await.is_some());
    h.redis
        .command(&[
            "HSET",
            &veloflux_crds::keys::tenant_users("acme"),
            "u-1",
            "owner",
        ])
        .await
        .unwrap();

    h.api.delete(TENANTS, "", "acme");
    assert!(eventually(WAIT, async || h.api.get(TENANTS, "", "acme").is_none()).await);
    assert!(h.stored("acme").await.is_none(), "routing removed");
    let index = h
        .redis
        .command(&["SISMEMBER", veloflux_crds::keys::CONFIG_INDEX, "acme"])
        .await
        .unwrap();
    assert_eq!(index, ":0\r\n");
    let users = h
        .redis
        .command(&["HGET", &veloflux_crds::keys::tenant_users("acme"), "u-1"])
        .await
        .unwrap();
    assert!(users.contains("owner"), "users are kept: {users}");
    h.operator.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_pass_writes_nothing_and_conditions_follow_conventions() {
    let mut h = Harness::start().await;
    h.api.apply(&Plan::test("free"));
    h.api.apply(&acme());
    h.api
        .apply(&Route::test("acme", "web", "acme", "acme.test").created(20));
    h.settle().await;

    let writes = h.api.writes().len();
    let stream = h
        .redis
        .command(&["XLEN", veloflux_crds::keys::CONFIG_CHANGES_STREAM])
        .await
        .unwrap();
    let report = h.operator.pass().await;
    assert_eq!(
        (
            report.configs_written,
            report.statuses_written,
            report.finalizers
        ),
        (0, 0, 0)
    );
    assert_eq!(
        h.api.writes().len(),
        writes,
        "no API writes on a second pass"
    );
    assert_eq!(
        h.redis
            .command(&["XLEN", veloflux_crds::keys::CONFIG_CHANGES_STREAM])
            .await
            .unwrap(),
        stream,
        "no Redis writes on a second pass"
    );

    let route = h.api.get(ROUTES, "acme", "web").unwrap();
    let accepted = route["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Accepted")
        .unwrap()
        .clone();
    assert_eq!(route["status"]["observedGeneration"], 1);
    assert_eq!(accepted["observedGeneration"], 1);
    let types: Vec<&str> = route["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["Accepted", "ResolvedRefs", "Programmed", "Ready"]);

    // A spec change: a new generation is observed; Accepted stays True, so
    // its transition time does not move.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    h.api.apply(
        &Route::test("acme", "web", "acme", "acme.test")
            .with_hosts(&["acme.test", "www.acme.test"])
            .created(20),
    );
    assert!(
        eventually(WAIT, async || h
            .api
            .get(ROUTES, "acme", "web")
            .is_some_and(|r| r["status"]["observedGeneration"] == 2))
        .await
    );
    let route = h.api.get(ROUTES, "acme", "web").unwrap();
    let again = route["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Accepted")
        .unwrap()
        .clone();
    assert_eq!(again["observedGeneration"], 2);
    assert_eq!(again["lastTransitionTime"], accepted["lastTransitionTime"]);
    assert_eq!(
        h.stored("acme").await.unwrap().routes[0].hosts,
        ["acme.test", "www.acme.test"]
    );
    h.operator.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn programmed_turns_true_once_the_proxies_serve_the_revision() {
    let mut h = Harness::start().await;
    let backend = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let backend_addr = backend.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = backend.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|_| async {
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(
                        http_body_util::Full::new(bytes::Bytes::from_static(b"ok")),
                    ))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    let mut route = Route::test("acme", "web", "acme", "acme.test").created(20);
    route.spec.backends[0].address = Some(backend_addr.to_string());
    h.api.apply(&Plan::test("free"));
    h.api.apply(&acme());
    h.api.apply(&route);
    h.settle().await;
    let programmed = h.condition(ROUTES, "acme", "web", "Programmed").unwrap();
    assert_eq!(
        (programmed.0.as_str(), programmed.1.as_str()),
        ("False", "NoProxies")
    );
    let ready = h.condition(ROUTES, "acme", "web", "Ready").unwrap();
    assert_eq!(ready.0, "False");

    // A real proxy follows the store and acknowledges.
    let mut config = veloflux_proxy::config::Config {
        manifests: None,
        listen: "127.0.0.1:0".parse().unwrap(),
        admin_listen: "127.0.0.1:0".parse().unwrap(),
        tls_listen: None,
        tls_cert: None,
        tls_key: None,
        redis: Some(h.redis.url()),
        redis_ca: None,
        state_dir: None,
        proxy_id: Some("proxy-0".into()),
        redis_connect_timeout: Duration::from_secs(3),
        redis_timeout: Duration::from_secs(2),
        rate_limit: true,
        ratelimit_timeout: Duration::from_millis(50),
        usage_flush_interval: Duration::from_secs(10),
        heartbeat_interval: Duration::from_millis(200),
        demo_backends: false,
        access_log: false,
        log: "warn".into(),
        shutdown_grace: Duration::from_secs(1),
        poll_interval: Duration::from_millis(100),
        metrics_max_tenants: 10,
        metrics_max_routes: 10,
        worker_threads: None,
    };
    config.proxy_id = Some("proxy-0".into());
    let proxy = veloflux_proxy::app::start(config).await.unwrap();
    assert!(
        eventually(WAIT, async || h
            .condition(ROUTES, "acme", "web", "Programmed")
            .is_some_and(|c| c.0 == "True"))
        .await
    );
    let programmed = h.condition(ROUTES, "acme", "web", "Programmed").unwrap();
    assert!(
        programmed.2.contains("served by 1 of 1 proxies"),
        "{programmed:?}"
    );
    assert_eq!(
        h.condition(ROUTES, "acme", "web", "Ready").unwrap().0,
        "True"
    );

    // Suspending the tenant stops it being served: a clear 403.
    let status = async |host: &str| -> u16 {
        let client: hyper_util::client::legacy::Client<_, http_body_util::Empty<bytes::Bytes>> =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http();
        let request = http::Request::builder()
            .uri(format!("http://{}/", proxy.listen))
            .header(http::header::HOST, host)
            .body(http_body_util::Empty::new())
            .unwrap();
        client.request(request).await.unwrap().status().as_u16()
    };
    assert_eq!(status("acme.test").await, 200);
    h.api.apply(&acme().suspended());
    assert!(eventually(WAIT, async || status("acme.test").await == 403).await);
    proxy.shutdown().await;
    h.operator.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_lease_holder_writes_and_a_standby_takes_over() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let api = FakeApi::default();
    let redis = veloflux_store::testing::RedisServer::start().await.unwrap();
    api.apply(&Plan::test("free"));
    let replica = async |identity: &str| {
        let mut options = options();
        options.identity = identity.to_owned();
        options.resync = Duration::from_millis(200);
        options.election = Some(Election {
            namespace: "veloflux-system".into(),
            name: "veloflux-operator".into(),
            identity: identity.to_owned(),
            duration: Duration::from_secs(1),
            renew: Duration::from_millis(200),
        });
        veloflux_operator::run::start(
            api.client(),
            veloflux_store::testing::writer(&redis.url()).await.unwrap(),
            Arc::new(Metrics::new()),
            options,
        )
        .await
    };
    let a = replica("a").await;
    let b = replica("b").await;
    let leaders = || {
        [&a, &b]
            .iter()
            .filter(|r| r.health.leader.load(std::sync::atomic::Ordering::SeqCst))
            .count()
    };
    assert!(eventually(WAIT, async || leaders() == 1).await);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(leaders(), 1, "never two leaders");
    let (leader, standby) = if a.health.leader.load(std::sync::atomic::Ordering::SeqCst) {
        (a, b)
    } else {
        (b, a)
    };
    assert!(leader.last().0 > 0, "the leader passes");
    assert_eq!(standby.last().0, 0, "the standby does not");
    api.apply(&acme());
    assert!(
        eventually(WAIT, async || api
            .get(TENANTS, "", "acme")
            .is_some_and(|t| t["status"]["conditions"].is_array()))
        .await
    );
    leader.stop();
    assert!(
        eventually(WAIT, async || standby
            .health
            .leader
            .load(std::sync::atomic::Ordering::SeqCst))
        .await,
        "the standby takes over once the lease expires"
    );
    api.apply(&Tenant::test("globex", "free").with_domains(&["globex.test"]));
    assert!(
        eventually(WAIT, async || api
            .get(TENANTS, "", "globex")
            .is_some_and(|t| t["status"]["conditions"].is_array()))
        .await
    );
    standby.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_endpoints_report_readiness_and_metrics() {
    let mut h = Harness::start().await;
    h.api.apply(&Plan::test("free"));
    h.api.apply(&acme());
    h.settle().await;
    let metrics = Arc::new(Metrics::new());
    metrics.observe_pass(Duration::from_millis(3), &h.operator.last().1);
    metrics.status_written("Route");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let admin = tokio::spawn(veloflux_operator::admin::run(
        listener,
        Arc::clone(&h.operator.health),
        metrics,
    ));
    let get = async |path: &str| -> (u16, String) {
        let client: hyper_util::client::legacy::Client<_, http_body_util::Empty<bytes::Bytes>> =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http();
        let response = client
            .get(format!("http://{addr}{path}").parse().unwrap())
            .await
            .unwrap();
        let status = response.status().as_u16();
        let body = http_body_util::BodyExt::collect(response.into_body())
            .await
            .unwrap()
            .to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    };
    assert_eq!(get("/healthz").await.0, 200);
    let (status, body) = get("/readyz").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(r#""synced":true"#), "{body}");
    let (_, text) = get("/metrics").await;
    assert!(
        text.contains("veloflux_operator_reconcile_passes_total 1"),
        "{text}"
    );
    assert!(
        text.contains(r#"veloflux_operator_status_writes_total{kind="Route"} 1"#),
        "{text}"
    );
    admin.abort();
    h.operator.stop();
}

#[test]
fn the_binary_says_why_it_cannot_start_without_a_cluster() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_veloflux-operator"))
        .args(["--redis", "redis://127.0.0.1:1"])
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("no Kubernetes API"), "{stderr}");
}

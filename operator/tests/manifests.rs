//! The deployment manifests: the operator's RBAC grants every request the
//! operator makes (recorded by the fake API server over a full scenario:
//! watches, status, finalizers, events, the leader Lease), and no more than
//! it needs.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod support;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Service;
use serde_json::{Value, json};
use support::*;
use veloflux_crds::{DedicatedInstance, Plan, Route, Tenant};
use veloflux_kube_fake::Call;
use veloflux_operator::leader::Election;
use veloflux_operator::metrics::Metrics;

fn rbac() -> Vec<Value> {
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../manifests/operator/rbac.yaml"),
    )
    .unwrap();
    serde_saphyr::from_multiple(&text).unwrap()
}

fn allows(rules: &Value, call: &Call) -> bool {
    let has = |list: &Value, item: &str| {
        list.as_array()
            .is_some_and(|l| l.iter().any(|v| v.as_str() == Some(item)))
    };
    rules.as_array().unwrap().iter().any(|rule| {
        has(&rule["apiGroups"], &call.group)
            && has(&rule["resources"], &call.resource)
            && has(&rule["verbs"], &call.verb)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operators_rbac_grants_exactly_what_it_uses() {
    let documents = rbac();
    let cluster_role = documents
        .iter()
        .find(|d| d["kind"] == "ClusterRole")
        .unwrap();
    let role = documents.iter().find(|d| d["kind"] == "Role").unwrap();
    let role_namespace = role["metadata"]["namespace"].as_str().unwrap();
    // Nothing is granted by wildcard.
    for rules in [&cluster_role["rules"], &role["rules"]] {
        for rule in rules.as_array().unwrap() {
            for field in ["apiGroups", "resources", "verbs"] {
                assert!(!rule[field].to_string().contains('*'), "{rule}");
            }
        }
    }

    // A full scenario with leader election in the Role's namespace.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let api = FakeApi::default();
    let redis = veloflux_store::testing::RedisServer::start().await.unwrap();
    let mut options = options();
    options.election = Some(Election {
        namespace: role_namespace.to_owned(),
        name: "veloflux-operator".into(),
        identity: "a".into(),
        duration: Duration::from_secs(2),
        renew: Duration::from_millis(100),
    });
    let mut operator = veloflux_operator::run::start(
        api.client(),
        veloflux_store::testing::writer(&redis.url()).await.unwrap(),
        Arc::new(Metrics::new()),
        options,
    )
    .await;
    api.apply(
        &Plan::test("pro")
            .with_custom_tls()
            .with_dedicated_instances(),
    );
    api.apply(&Tenant::test("acme", "pro").with_domains(&["acme.test"]));
    api.apply(
        &Route::test("acme", "web", "acme", "acme.test")
            .with_service(None, "web", 80)
            .with_tls("cert"),
    );
    api.apply(&DedicatedInstance::test("acme", "edge", "acme"));
    let service: Service = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "web", "namespace": "acme"},
        "spec": {"ports": [{"port": 80}]}
    }))
    .unwrap();
    api.apply(&service);
    assert!(
        eventually(Duration::from_secs(10), async || operator
            .health
            .leader
            .load(std::sync::atomic::Ordering::SeqCst))
        .await
    );
    for _ in 0..3 {
        operator.pass().await;
    }
    api.delete(TENANTS, "", "acme");
    assert!(
        eventually(Duration::from_secs(10), async || api
            .get(TENANTS, "", "acme")
            .is_none())
        .await
    );
    operator.stop();

    let calls: BTreeSet<Call> = api.calls().into_iter().collect();
    let mut used_cluster = BTreeSet::new();
    for call in &calls {
        let by_cluster = allows(&cluster_role["rules"], call);
        let by_role = call.namespace == role_namespace && allows(&role["rules"], call);
        assert!(by_cluster || by_role, "not granted: {call:?}");
        if by_cluster {
            used_cluster.insert((call.group.clone(), call.resource.clone(), call.verb.clone()));
        }
    }
    // Every cluster-wide grant is used (events may be patched only when
    // repeated, and status is only ever patched, never read directly).
    for rule in cluster_role["rules"].as_array().unwrap() {
        for group in rule["apiGroups"].as_array().unwrap() {
            for resource in rule["resources"].as_array().unwrap() {
                for verb in rule["verbs"].as_array().unwrap() {
                    let (group, resource, verb) = (
                        group.as_str().unwrap().to_owned(),
                        resource.as_str().unwrap().to_owned(),
                        verb.as_str().unwrap().to_owned(),
                    );
                    let optional = (resource == "events" && verb == "patch")
                        || (verb == "get"
                            && (resource.ends_with("/status") || resource != "events"));
                    assert!(
                        optional
                            || used_cluster.contains(&(
                                group.clone(),
                                resource.clone(),
                                verb.clone()
                            )),
                        "granted but never used: {group}/{resource} {verb}"
                    );
                }
            }
        }
    }
}

//! The API on the Kubernetes directory (the in-memory API server behind
//! kube's client): sign-up makes the Tenant CR and its Namespace, routes are
//! Route CRs in the tenant's namespace whose status the operator writes and
//! the API reads back, another tenant sees none of them, deleting the
//! tenant deletes its Routes and the Tenant, and every request the API made
//! is granted by `manifests/api/rbac.yaml`, which grants nothing unused.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod support;

use std::collections::BTreeSet;
use std::sync::Arc;

use http::{Method, StatusCode};
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::{Value, json};
use support::{Platform, route_spec};
use veloflux_api::directory::kube::{KubeDirectory, KubeOptions};
use veloflux_crds::{Plan, Route};
use veloflux_kube_fake::{Call, FakeApi};

const TENANTS: &str = "apis/veloflux.io/v1alpha1/tenants";
const ROUTES: &str = "apis/veloflux.io/v1alpha1/routes";
const NAMESPACES: &str = "api/v1/namespaces";

const ACME: &[&str] = &["acme.customers.example", "*.acme.customers.example"];

/// What the API may do in a cluster, and all it needs: (group, resource,
/// verbs). `manifests/api/rbac.yaml` grants exactly this.
const LEAST_PRIVILEGE: &[(&str, &str, &[&str])] = &[
    // The plan a sign-up lands on and a tenant's limits; `/readyz` lists.
    ("veloflux.io", "plans", &["get", "list"]),
    // Sign-up (a dry run first), display name and domain changes,
    // suspension, deletion; domain claims are checked against every tenant.
    (
        "veloflux.io",
        "tenants",
        &["get", "list", "create", "update", "delete"],
    ),
    // A tenant's routes are listed per namespace; a change reads the
    // current object and replaces its spec.
    (
        "veloflux.io",
        "routes",
        &["get", "list", "create", "update", "delete"],
    ),
    // A new tenant's namespace, unless it exists.
    ("", "namespaces", &["get", "create"]),
];

fn rbac() -> Vec<Value> {
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../manifests/api/rbac.yaml"),
    )
    .unwrap();
    serde_saphyr::from_multiple(&text).unwrap()
}

fn document<'a>(documents: &'a [Value], kind: &str) -> &'a Value {
    let found: Vec<&Value> = documents.iter().filter(|d| d["kind"] == kind).collect();
    assert_eq!(found.len(), 1, "one {kind}");
    found[0]
}

/// Every (group, resource, verb) a rule list grants.
fn grants(rules: &Value) -> BTreeSet<(String, String, String)> {
    let strings = |list: &Value| -> Vec<String> {
        list.as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect()
    };
    let mut out = BTreeSet::new();
    for rule in rules.as_array().unwrap() {
        for group in strings(&rule["apiGroups"]) {
            for resource in strings(&rule["resources"]) {
                for verb in strings(&rule["verbs"]) {
                    out.insert((group.clone(), resource.clone(), verb));
                }
            }
        }
    }
    out
}

fn least_privilege() -> BTreeSet<(String, String, String)> {
    LEAST_PRIVILEGE
        .iter()
        .flat_map(|(group, resource, verbs)| {
            verbs.iter().map(|verb| {
                (
                    (*group).to_owned(),
                    (*resource).to_owned(),
                    (*verb).to_owned(),
                )
            })
        })
        .collect()
}

fn free_plan() -> Plan {
    serde_saphyr::from_str(support::PLAN_YAML).unwrap()
}

async fn platform_on(fake: &FakeApi) -> Platform {
    let directory = KubeDirectory::new(fake.client(), KubeOptions::default());
    Platform::start_with(&[], Some(Arc::new(directory))).await
}

fn conditions() -> Value {
    json!([
        {"type": "Accepted", "status": "True", "reason": "Accepted", "message": "",
         "lastTransitionTime": "2026-01-01T00:00:05Z", "observedGeneration": 1},
        {"type": "ResolvedRefs", "status": "True", "reason": "ResolvedRefs", "message": "",
         "lastTransitionTime": "2026-01-01T00:00:05Z", "observedGeneration": 1},
        {"type": "Programmed", "status": "False", "reason": "Pending",
         "message": "waiting for the proxies to acknowledge",
         "lastTransitionTime": "2026-01-01T00:00:05Z", "observedGeneration": 1},
    ])
}

fn route_names(fake: &FakeApi, namespace: &str) -> Vec<String> {
    fake.list(ROUTES)
        .iter()
        .filter(|r| r["metadata"]["namespace"] == namespace)
        .map(|r| r["metadata"]["name"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_on_kubernetes_writes_crs_reads_their_status_and_needs_only_its_rbac() {
    let documents = rbac();
    let fake = FakeApi::default();
    fake.apply(&free_plan());
    let platform = platform_on(&fake).await;

    let ready = platform
        .http
        .raw(
            Method::GET,
            &format!("{}/readyz", platform.admin),
            &[],
            Vec::new(),
        )
        .await;
    assert_eq!(ready.status, StatusCode::OK, "{:?}", ready.body);
    assert_eq!(ready.body["directory"], "kubernetes");

    // Sign-up: the Tenant CR, as a person would apply it, and its namespace.
    let ana = platform.owner("ana@acme.example", "acme", ACME).await;
    let tenant = fake.get(TENANTS, "", "acme").expect("the Tenant CR");
    assert_eq!(
        tenant["spec"],
        json!({"planRef": "free", "displayName": "ACME", "domains": ACME,
               "namespaces": ["acme"], "owners": ["ana@acme.example"], "suspended": false})
    );
    assert_eq!(
        tenant["metadata"]["labels"],
        json!({"app.kubernetes.io/managed-by": "veloflux-api"})
    );
    assert!(tenant.get("status").is_none(), "status is the operator's");
    let namespace = fake.get(NAMESPACES, "", "acme").expect("its Namespace");
    assert_eq!(
        namespace["metadata"]["labels"]["veloflux.io/tenant"],
        "acme"
    );

    // A route is a Route CR in the tenant's namespace naming the tenant.
    let created = platform
        .call(
            Method::POST,
            "/api/tenants/acme/routes",
            Some(&ana),
            Some(json!({"name": "shop", "spec": route_spec("shop.acme.customers.example", "127.0.0.1:9")})),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
    assert_eq!(created.body["namespace"], "acme");
    assert_eq!(created.body["conditions"], json!([]));
    let route = fake.get(ROUTES, "acme", "shop").expect("the Route CR");
    assert_eq!(route["spec"]["tenantRef"], "acme");
    assert_eq!(
        route["spec"]["hosts"],
        json!(["shop.acme.customers.example"])
    );
    assert_eq!(
        route["metadata"]["labels"],
        json!({"app.kubernetes.io/managed-by": "veloflux-api", "veloflux.io/tenant": "acme"})
    );

    // The operator writes the status; the API reads it back.
    let operator_from = fake.calls().len();
    Api::<Route>::namespaced(fake.client(), "acme")
        .patch_status(
            "shop",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"observedGeneration": 1, "conditions": conditions()}})),
        )
        .await
        .unwrap();
    let operator_to = fake.calls().len();
    let read = platform.get("/api/tenants/acme/routes/shop", &ana).await;
    assert_eq!(read.status, StatusCode::OK, "{:?}", read.body);
    assert_eq!(read.body["conditions"], conditions());
    let listed = platform.get("/api/tenants/acme/routes", &ana).await;
    assert_eq!(listed.body["routes"][0]["conditions"], conditions());

    // Changes replace the spec; the status stays the operator's.
    let updated = platform
        .call(
            Method::PUT,
            "/api/tenants/acme/routes/shop",
            Some(&ana),
            Some(json!({"spec": route_spec("www.acme.customers.example", "127.0.0.1:9")})),
        )
        .await;
    assert_eq!(updated.status, StatusCode::OK, "{:?}", updated.body);
    let route = fake.get(ROUTES, "acme", "shop").unwrap();
    assert_eq!(
        route["spec"]["hosts"],
        json!(["www.acme.customers.example"])
    );
    assert_eq!(route["metadata"]["generation"], 2);
    assert_eq!(route["status"]["conditions"], conditions());
    let renamed = platform
        .call(
            Method::PATCH,
            "/api/tenants/acme",
            Some(&ana),
            Some(json!({"displayName": "Acme Inc"})),
        )
        .await;
    assert_eq!(renamed.status, StatusCode::OK, "{:?}", renamed.body);
    assert_eq!(
        fake.get(TENANTS, "", "acme").unwrap()["spec"]["displayName"],
        "Acme Inc"
    );

    // Another tenant's owner sees none of it.
    let cy = platform
        .owner("cy@globex.example", "globex", &["globex.customers.example"])
        .await;
    let not_found = json!({"type": "https://veloflux.io/problems/not-found", "title": "Not found",
                           "status": 404, "detail": "tenant not found"});
    for (method, path, body) in [
        (Method::GET, "/api/tenants/acme/routes", None),
        (Method::GET, "/api/tenants/acme/routes/shop", None),
        (
            Method::PUT,
            "/api/tenants/acme/routes/shop",
            Some(json!({"spec": route_spec("evil.acme.customers.example", "127.0.0.1:9")})),
        ),
        (Method::DELETE, "/api/tenants/acme/routes/shop", None),
        (Method::DELETE, "/api/tenants/acme", None),
    ] {
        let reply = platform.call(method.clone(), path, Some(&cy), body).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{method} {path}");
        assert_eq!(reply.body, not_found, "{method} {path}");
    }
    let theirs = platform.get("/api/tenants/globex/routes/shop", &cy).await;
    assert_eq!(theirs.status, StatusCode::NOT_FOUND);
    let theirs = platform.get("/api/tenants/globex/routes", &cy).await;
    assert_eq!(theirs.body["routes"], json!([]));
    assert_eq!(
        fake.get(ROUTES, "acme", "shop").unwrap()["spec"]["hosts"],
        json!(["www.acme.customers.example"])
    );

    // A route deleted alone, then the tenant with its last route.
    let blog = platform
        .call(
            Method::POST,
            "/api/tenants/acme/routes",
            Some(&ana),
            Some(json!({"name": "blog", "spec": route_spec("blog.acme.customers.example", "127.0.0.1:9")})),
        )
        .await;
    assert_eq!(blog.status, StatusCode::CREATED, "{:?}", blog.body);
    assert_eq!(route_names(&fake, "acme"), ["blog", "shop"]);
    let deleted = platform
        .call(
            Method::DELETE,
            "/api/tenants/acme/routes/blog",
            Some(&ana),
            None,
        )
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{:?}", deleted.body);
    assert_eq!(route_names(&fake, "acme"), ["shop"]);
    let deleted = platform
        .call(Method::DELETE, "/api/tenants/acme", Some(&ana), None)
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{:?}", deleted.body);
    assert!(route_names(&fake, "acme").is_empty());
    assert!(fake.get(TENANTS, "", "acme").is_none());
    assert!(
        fake.get(NAMESPACES, "", "acme").is_some(),
        "the namespace may hold other things and stays"
    );
    assert!(fake.get(TENANTS, "", "globex").is_some());
    assert_eq!(
        platform.get("/api/tenants/acme", &ana).await.status,
        StatusCode::NOT_FOUND
    );

    // The API's requests (not the operator's status write) against the RBAC.
    let mut calls = fake.calls();
    calls.drain(operator_from..operator_to);
    let calls: BTreeSet<Call> = calls.into_iter().collect();
    let granted = grants(&document(&documents, "ClusterRole")["rules"]);
    assert_eq!(
        granted,
        least_privilege(),
        "rbac.yaml grants the least privilege"
    );
    let used: BTreeSet<(String, String, String)> = calls
        .iter()
        .map(|c| (c.group.clone(), c.resource.clone(), c.verb.clone()))
        .collect();
    for call in &used {
        assert!(granted.contains(call), "not granted: {call:?}");
    }
    for grant in &granted {
        assert!(used.contains(grant), "granted but never used: {grant:?}");
    }
}

#[test]
fn the_rbac_manifest_binds_the_least_privilege_role_to_the_apis_service_account() {
    let documents = rbac();
    assert_eq!(documents.len(), 3);
    let service_account = document(&documents, "ServiceAccount");
    assert_eq!(
        (
            &service_account["metadata"]["name"],
            &service_account["metadata"]["namespace"]
        ),
        (&json!("veloflux-api"), &json!("veloflux-system"))
    );
    let role = document(&documents, "ClusterRole");
    assert_eq!(role["metadata"]["name"], "veloflux-api");
    for rule in role["rules"].as_array().unwrap() {
        for field in ["apiGroups", "resources", "verbs"] {
            assert!(!rule[field].to_string().contains('*'), "{rule}");
        }
    }
    assert_eq!(grants(&role["rules"]), least_privilege());
    let binding = document(&documents, "ClusterRoleBinding");
    assert_eq!(binding["metadata"]["name"], "veloflux-api");
    assert_eq!(
        binding["roleRef"],
        json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "veloflux-api"})
    );
    assert_eq!(
        binding["subjects"],
        json!([{"kind": "ServiceAccount", "name": "veloflux-api", "namespace": "veloflux-system"}])
    );
}

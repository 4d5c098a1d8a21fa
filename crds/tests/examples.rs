//! The example manifests validate against the generated CRD schemas (JSON
//! Schema and CEL rules, as the API server would check them) and resolve
//! cleanly; the validator itself rejects broken objects.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use veloflux_crds::{ConditionType, Manifests, validation};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Every YAML file under `examples/`, recursively.
fn example_files() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(&repo_root().join("examples"), &mut files);
    files.sort();
    files
}

/// Problems the API server would report for `doc`, as `field: message`.
fn validate(doc: &Value) -> Vec<String> {
    validation::validate(doc)
        .iter()
        .map(ToString::to_string)
        .collect()
}

fn documents(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap();
    veloflux_crds::manifest::documents(path, &text).unwrap()
}

#[test]
fn every_example_validates_against_the_generated_crd_schemas() {
    let mut checked = 0;
    for path in example_files() {
        for doc in documents(&path) {
            if doc["apiVersion"] != "veloflux.io/v1alpha1" {
                continue;
            }
            let problems = validate(&doc);
            assert!(
                problems.is_empty(),
                "{}: {} {}: {problems:#?}",
                path.display(),
                doc["kind"],
                doc["metadata"]["name"]
            );
            checked += 1;
        }
    }
    assert!(checked >= 8, "only {checked} example objects found");
}

#[test]
fn quickstart_covers_three_plans_two_tenants_every_algorithm_and_a_health_check() {
    let manifests = Manifests::load_dir(&repo_root().join("examples/quickstart")).unwrap();
    let plans: Vec<_> = manifests
        .plans
        .iter()
        .map(|p| p.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(plans, vec!["free", "pro", "enterprise"]);
    assert_eq!(manifests.tenants.len(), 2);
    let mut algorithms: Vec<_> = manifests
        .routes
        .iter()
        .map(|r| r.spec.algorithm.as_str())
        .collect();
    algorithms.sort_unstable();
    algorithms.dedup();
    assert_eq!(
        algorithms,
        vec!["consistentHash", "leastConn", "roundRobin", "weighted"]
    );
    assert!(
        manifests
            .routes
            .iter()
            .any(|r| r.spec.health_check.is_some())
    );
}

#[test]
fn quickstart_resolves_with_every_object_accepted_and_ready() {
    let manifests = Manifests::load_dir(&repo_root().join("examples/quickstart")).unwrap();
    let resolution = manifests.resolve();
    for (key, outcome) in &resolution.routes {
        let ready = outcome.condition(ConditionType::Ready).unwrap();
        assert!(
            outcome.is_true(ConditionType::Ready),
            "route {key}: {}: {}",
            ready.reason,
            ready.message
        );
    }
    for (name, outcome) in &resolution.tenants {
        assert!(
            outcome.outcome.is_true(ConditionType::Ready),
            "tenant {name}: {:?}",
            outcome.outcome
        );
    }
    assert_eq!(resolution.configs.len(), 2);
    assert_eq!(resolution.configs["acme"].routes.len(), 3);
    assert_eq!(resolution.configs["globex"].routes.len(), 1);
}

#[test]
fn schema_and_cel_reject_broken_objects() {
    let cases = [
        (
            json!({"apiVersion": "veloflux.io/v1alpha1", "kind": "Plan", "metadata": {"name": "x"},
                   "spec": {"limits": {"requestsPerMinute": 10, "burst": 20, "maxRoutes": 1, "maxBackendsPerRoute": 1, "maxDomains": 1}}}),
            "burst must not exceed requestsPerMinute",
        ),
        (
            json!({"apiVersion": "veloflux.io/v1alpha1", "kind": "Tenant", "metadata": {"name": "x"},
                   "spec": {"planRef": "pro", "domains": ["Not A Host"]}}),
            "domains",
        ),
        (
            json!({"apiVersion": "veloflux.io/v1alpha1", "kind": "Route", "metadata": {"name": "x", "namespace": "n"},
                   "spec": {"tenantRef": "t", "hosts": ["a.com"],
                            "backends": [{"name": "b", "address": "127.0.0.1:1", "service": {"name": "s", "port": 80}}]}}),
            "set exactly one of service and address",
        ),
        (
            json!({"apiVersion": "veloflux.io/v1alpha1", "kind": "Route", "metadata": {"name": "x", "namespace": "n"},
                   "spec": {"tenantRef": "t", "hosts": ["a.com"], "algorithm": "consistentHash",
                            "backends": [{"name": "b", "address": "127.0.0.1:1"}]}}),
            "hashOn is required",
        ),
        (
            json!({"apiVersion": "veloflux.io/v1alpha1", "kind": "Route", "metadata": {"name": "x", "namespace": "n"},
                   "spec": {"tenantRef": "t", "hosts": ["a.com"], "rules": [{"backends": ["ghost"]}],
                            "backends": [{"name": "b", "address": "127.0.0.1:1"}]}}),
            "every backend a rule names",
        ),
        (
            json!({"apiVersion": "veloflux.io/v1alpha1", "kind": "Route", "metadata": {"name": "x", "namespace": "n"},
                   "spec": {"tenantRef": "t", "hosts": [], "backends": []}}),
            "hosts",
        ),
        (
            json!({"apiVersion": "veloflux.io/v1alpha1", "kind": "Route", "metadata": {"name": "x", "namespace": "n"},
                   "spec": {"tenantRef": "t", "hosts": ["a.com"], "algorithm": "random",
                            "backends": [{"name": "b", "address": "127.0.0.1:1"}]}}),
            "algorithm",
        ),
        (
            json!({"apiVersion": "veloflux.io/v1alpha1", "kind": "DedicatedInstance", "metadata": {"name": "x", "namespace": "n"},
                   "spec": {"tenantRef": "t", "autoscaling": {"minReplicas": 5, "maxReplicas": 2, "targetCpuUtilizationPercentage": 50}}}),
            "minReplicas must not exceed maxReplicas",
        ),
    ];
    for (doc, expected) in cases {
        let problems = validate(&doc);
        assert!(
            problems.iter().any(|p| p.contains(expected)),
            "{} should be rejected with {expected:?}, got {problems:#?}",
            doc["kind"]
        );
    }
}

#[test]
fn dedicated_example_is_accepted_on_the_enterprise_plan() {
    let root = repo_root();
    let mut manifests = Manifests::load_dir(&root.join("examples/quickstart")).unwrap();
    let path = root.join("examples/dedicated/instance.yaml");
    manifests
        .add_yaml(&path, &std::fs::read_to_string(&path).unwrap())
        .unwrap();
    let resolution = manifests.resolve();
    assert_eq!(resolution.dedicated.len(), 1);
    for (key, outcome) in &resolution.dedicated {
        assert!(outcome.is_true(ConditionType::Ready), "{key}: {outcome:?}");
    }
    assert!(
        resolution.tenants["initech"]
            .outcome
            .is_true(ConditionType::Ready)
    );
}

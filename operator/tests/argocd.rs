//! The Argo CD health script (examples/argocd/health.lua), run by a real Lua
//! interpreter on objects whose status the operator wrote: Healthy, Degraded
//! and Progressing as a GitOps user would see them.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod support;

use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};
use support::*;
use veloflux_crds::{Plan, Route, Tenant};

fn examples() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/argocd")
}

/// A Lua table literal for a JSON value.
fn lua(value: &Value) -> String {
    match value {
        Value::Null => "nil".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => format!("{s:?}"),
        Value::Array(items) => format!(
            "{{{}}}",
            items.iter().map(lua).collect::<Vec<_>>().join(", ")
        ),
        Value::Object(map) => format!(
            "{{{}}}",
            map.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| format!("[{k:?}] = {}", lua(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Runs the health script on `object`: (status, message).
fn health(object: &Value) -> (String, String) {
    let script = std::fs::read_to_string(examples().join("health.lua")).unwrap();
    let program = format!(
        "obj = {}\nlocal hs = (function()\n{script}\nend)()\nio.write(hs.status, \"\\t\", hs.message or \"\")\n",
        lua(object)
    );
    let output = Command::new("lua5.4")
        .args(["-e", &program])
        .output()
        .expect("lua5.4 not found: install Debian's lua5.4 package (bash .ci/run does)");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).unwrap();
    let (status, message) = text.split_once('\t').unwrap();
    (status.to_owned(), message.to_owned())
}

#[test]
fn the_configmap_carries_the_same_script_for_every_kind() {
    let script = std::fs::read_to_string(examples().join("health.lua")).unwrap();
    let text = std::fs::read_to_string(examples().join("argocd-cm.yaml")).unwrap();
    let configmap: Value = serde_saphyr::from_str(&text).unwrap();
    for kind in ["Plan", "Tenant", "Route", "DedicatedInstance"] {
        let key = format!("resource.customizations.health.veloflux.io_{kind}");
        assert_eq!(
            configmap["data"][&key].as_str(),
            Some(script.as_str()),
            "{key}"
        );
    }
}

#[test]
fn generations_not_yet_observed_are_progressing() {
    let object = json!({
        "metadata": {"generation": 3},
        "status": {"observedGeneration": 2, "conditions": [
            {"type": "Ready", "status": "True", "reason": "Ready", "message": ""}]}
    });
    assert_eq!(health(&object).0, "Progressing");
    assert_eq!(
        health(&json!({"metadata": {"generation": 1}})).0,
        "Progressing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statuses_written_by_the_operator_map_to_argo_cd_health() {
    let mut h = Harness::start().await;
    h.api.apply(&Plan::test("free").with_max_routes(1));
    h.api.apply(
        &Tenant::test("acme", "free")
            .with_domains(&["acme.test"])
            .created(10),
    );
    h.api
        .apply(&Route::test("acme", "first", "acme", "acme.test").created(20));
    h.api
        .apply(&Route::test("acme", "second", "acme", "acme.test").created(30));
    h.settle().await;

    let (plan, _) = health(&h.api.get(PLANS, "", "free").unwrap());
    assert_eq!(plan, "Healthy");
    let (tenant, _) = health(&h.api.get(TENANTS, "", "acme").unwrap());
    assert_eq!(tenant, "Healthy");
    // Accepted, but no proxy serves it yet.
    let (first, message) = health(&h.api.get(ROUTES, "acme", "first").unwrap());
    assert_eq!(first, "Progressing", "{message}");
    assert!(message.starts_with("Pending"), "{message}");
    // Over quota: degraded, with the reason.
    let (second, message) = health(&h.api.get(ROUTES, "acme", "second").unwrap());
    assert_eq!(second, "Degraded");
    assert!(message.contains("QuotaExceeded"), "{message}");
    h.operator.stop();
}

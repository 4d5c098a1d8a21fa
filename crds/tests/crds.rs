//! The checked-in CRD manifests are exactly what the Rust types generate,
//! and each CRD carries what `kubectl` users rely on.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::Path;

use veloflux_crds::crdgen;

#[test]
fn checked_in_crds_match_the_types() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../manifests/crds");
    let rendered = crdgen::rendered().unwrap();
    assert_eq!(rendered.len(), 4);
    for (name, text) in rendered {
        let current = std::fs::read_to_string(dir.join(&name)).unwrap_or_default();
        assert!(
            current == text,
            "manifests/crds/{name} is out of date: run `make crds`"
        );
    }
    let files = std::fs::read_dir(&dir).unwrap().count();
    assert_eq!(files, 4, "manifests/crds holds a file no type generates");
}

#[test]
fn every_crd_has_status_printer_columns_short_names_and_the_veloflux_category() {
    for crd in crdgen::definitions() {
        let kind = &crd.spec.names.kind;
        assert_eq!(crd.spec.group, "veloflux.io");
        assert_eq!(
            crd.spec.names.categories.as_deref(),
            Some(&["veloflux".to_owned()][..]),
            "{kind}"
        );
        assert!(
            crd.spec
                .names
                .short_names
                .as_ref()
                .is_some_and(|s| !s.is_empty()),
            "{kind}"
        );
        let version = &crd.spec.versions[0];
        assert_eq!(version.name, "v1alpha1");
        assert!(version.served && version.storage);
        let subresources = version.subresources.as_ref().unwrap();
        assert!(
            subresources.status.is_some(),
            "{kind} lacks the status subresource"
        );
        let columns = version.additional_printer_columns.as_ref().unwrap();
        assert!(columns.len() >= 4, "{kind}");
        assert!(columns.iter().any(|c| c.name == "Age"), "{kind}");
        let schema = crdgen::schema(&crd).unwrap();
        let status = &schema["properties"]["status"]["properties"];
        assert!(status["observedGeneration"].is_object(), "{kind}");
        let condition = &status["conditions"]["items"]["properties"];
        for field in [
            "type",
            "status",
            "reason",
            "message",
            "lastTransitionTime",
            "observedGeneration",
        ] {
            assert!(
                condition[field].is_object(),
                "{kind} condition lacks {field}"
            );
        }
        let scope = if matches!(kind.as_str(), "Plan" | "Tenant") {
            "Cluster"
        } else {
            "Namespaced"
        };
        assert_eq!(crd.spec.scope, scope, "{kind}");
    }
}

#[test]
fn dedicated_instance_has_the_scale_subresource() {
    let crd = crdgen::definitions()
        .into_iter()
        .find(|c| c.spec.names.kind == "DedicatedInstance")
        .unwrap();
    let scale = crd.spec.versions[0]
        .subresources
        .as_ref()
        .unwrap()
        .scale
        .clone()
        .unwrap();
    assert_eq!(scale.spec_replicas_path, ".spec.replicas");
    assert_eq!(scale.status_replicas_path, ".status.replicas");
    assert_eq!(
        scale.label_selector_path.as_deref(),
        Some(".status.selector")
    );
}

#[test]
fn field_docs_reach_kubectl_explain() {
    for crd in crdgen::definitions() {
        let schema = crdgen::schema(&crd).unwrap();
        let spec = &schema["properties"]["spec"];
        assert!(
            spec["description"].as_str().is_some_and(|d| !d.is_empty()),
            "{}",
            crd.spec.names.kind
        );
        for (field, prop) in spec["properties"].as_object().unwrap() {
            assert!(
                prop["description"].as_str().is_some_and(|d| !d.is_empty()),
                "{}.spec.{field} has no description",
                crd.spec.names.kind
            );
        }
    }
}

//! The fake answers kube's typed `Api` as the API server would where the
//! operator and the control plane API lean on it: conflicts, generations,
//! the status subresource, validation, Namespaces, selectors, deletion.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::json;
use veloflux_crds::{Route, Tenant, TenantStatus};
use veloflux_kube_fake::{Call, FakeApi};

const TENANTS: &str = "apis/veloflux.io/v1alpha1/tenants";
const ROUTES: &str = "apis/veloflux.io/v1alpha1/routes";

/// The API error of a failed call: (code, reason, message).
fn api_error<T: std::fmt::Debug>(result: Result<T, kube::Error>) -> Box<kube::core::Status> {
    match result {
        Err(kube::Error::Api(status)) => status,
        other => panic!("expected an API error, got {other:?}"),
    }
}

fn tenants(api: &FakeApi) -> Api<Tenant> {
    Api::all(api.client())
}

fn namespace(name: &str) -> Namespace {
    serde_json::from_value(
        json!({"metadata": {"name": name, "labels": {"veloflux.io/tenant": name}}}),
    )
    .unwrap()
}

#[tokio::test]
async fn creating_a_taken_name_is_already_exists() {
    let api = FakeApi::default();
    let tenants = tenants(&api);
    let acme = Tenant::test("acme", "pro");
    tenants.create(&PostParams::default(), &acme).await.unwrap();
    let status = api_error(tenants.create(&PostParams::default(), &acme).await);
    assert_eq!(status.code, 409);
    assert_eq!(status.reason, "AlreadyExists");
    assert_eq!(
        status.message,
        "tenants.veloflux.io \"acme\" already exists"
    );
}

#[tokio::test]
async fn a_get_of_a_missing_object_is_not_found_and_get_opt_is_none() {
    let api = FakeApi::default();
    let tenants = tenants(&api);
    let status = api_error(tenants.get("ghost").await);
    assert_eq!((status.code, status.reason.as_str()), (404, "NotFound"));
    assert_eq!(status.message, "tenants.veloflux.io \"ghost\" not found");
    assert!(tenants.get_opt("ghost").await.unwrap().is_none());
}

#[tokio::test]
async fn generation_moves_with_the_spec_only() {
    let api = FakeApi::default();
    let tenants = tenants(&api);
    let created = tenants
        .create(&PostParams::default(), &Tenant::test("acme", "pro"))
        .await
        .unwrap();
    assert_eq!(created.metadata.generation, Some(1));

    let mut labelled = created.clone();
    labelled.labels_mut().insert("team".into(), "edge".into());
    let labelled = tenants
        .replace("acme", &PostParams::default(), &labelled)
        .await
        .unwrap();
    assert_eq!(labelled.metadata.generation, Some(1));

    let status = json!({"status": {"observedGeneration": 1, "conditions": []}});
    let with_status = tenants
        .patch_status("acme", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
    assert_eq!(with_status.metadata.generation, Some(1));

    let mut changed = with_status.clone();
    changed.spec.domains = vec!["acme.com".into()];
    let changed = tenants
        .replace("acme", &PostParams::default(), &changed)
        .await
        .unwrap();
    assert_eq!(changed.metadata.generation, Some(2));
    assert_ne!(changed.resource_version(), with_status.resource_version());
}

#[tokio::test]
async fn a_replace_with_a_stale_resource_version_conflicts() {
    let api = FakeApi::default();
    let tenants = tenants(&api);
    let first = tenants
        .create(&PostParams::default(), &Tenant::test("acme", "pro"))
        .await
        .unwrap();
    let mut newer = first.clone();
    newer.spec.suspended = true;
    tenants
        .replace("acme", &PostParams::default(), &newer)
        .await
        .unwrap();
    let mut stale = first;
    stale.spec.domains = vec!["acme.com".into()];
    let status = api_error(
        tenants
            .replace("acme", &PostParams::default(), &stale)
            .await,
    );
    assert_eq!((status.code, status.reason.as_str()), (409, "Conflict"));
    assert!(
        status.message.contains("the object has been modified"),
        "{}",
        status.message
    );
    assert!(tenants.get("acme").await.unwrap().spec.domains.is_empty());
}

#[tokio::test]
async fn a_replace_of_the_object_keeps_the_status_and_a_status_write_keeps_the_spec() {
    let api = FakeApi::default();
    let tenants = tenants(&api);
    tenants
        .create(&PostParams::default(), &Tenant::test("acme", "pro"))
        .await
        .unwrap();
    let status = json!({"status": {"observedGeneration": 1, "conditions": []}});
    let current = tenants
        .patch_status("acme", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();

    let mut replaced = current.clone();
    replaced.spec.suspended = true;
    replaced.status = Some(TenantStatus {
        observed_generation: Some(99),
        ..TenantStatus::default()
    });
    let replaced = tenants
        .replace("acme", &PostParams::default(), &replaced)
        .await
        .unwrap();
    assert!(replaced.spec.suspended);
    assert_eq!(replaced.status.unwrap().observed_generation, Some(1));

    let mut status_write = tenants.get("acme").await.unwrap();
    status_write.spec.suspended = false;
    status_write.status = Some(TenantStatus {
        observed_generation: Some(2),
        ..TenantStatus::default()
    });
    let written = tenants
        .replace_status("acme", &PostParams::default(), &status_write)
        .await
        .unwrap();
    assert!(written.spec.suspended, "a status write changed the spec");
    assert_eq!(written.status.unwrap().observed_generation, Some(2));
}

#[tokio::test]
async fn a_create_drops_the_status() {
    let api = FakeApi::default();
    let mut acme = Tenant::test("acme", "pro");
    acme.status = Some(TenantStatus {
        observed_generation: Some(7),
        ..TenantStatus::default()
    });
    let created = tenants(&api)
        .create(&PostParams::default(), &acme)
        .await
        .unwrap();
    assert_eq!(created.status, None);
}

#[tokio::test]
async fn an_invalid_object_is_refused_with_every_problem_on_create_replace_and_patch() {
    let api = FakeApi::default();
    let tenants = tenants(&api);
    let bad = Tenant::test("acme", "pro").with_domains(&["Not A Host"]);
    let status = api_error(tenants.create(&PostParams::default(), &bad).await);
    assert_eq!((status.code, status.reason.as_str()), (422, "Invalid"));
    assert!(
        status.message.starts_with(
            "Tenant.veloflux.io \"acme\" is invalid: spec.domains[0]: Invalid value: \"Not A Host\""
        ),
        "{}",
        status.message
    );
    let details = status.details.unwrap();
    assert_eq!(details.name, "acme");
    assert_eq!(details.kind, "Tenant");
    assert_eq!(details.causes.len(), 1);
    assert_eq!(details.causes[0].field, "spec.domains[0]");
    assert!(api.get(TENANTS, "", "acme").is_none());

    let good = tenants
        .create(&PostParams::default(), &Tenant::test("acme", "pro"))
        .await
        .unwrap();
    let mut replaced = good.clone();
    replaced.spec.domains = vec!["Not A Host".into(), "ok.com".into(), "Also Bad".into()];
    let status = api_error(
        tenants
            .replace("acme", &PostParams::default(), &replaced)
            .await,
    );
    assert_eq!(status.code, 422);
    let fields: Vec<String> = status
        .details
        .unwrap()
        .causes
        .into_iter()
        .map(|c| c.field)
        .collect();
    assert_eq!(fields, ["spec.domains[0]", "spec.domains[2]"]);
    assert!(
        status.message.contains(": [spec.domains[0]: "),
        "{}",
        status.message
    );

    let patch = json!({"spec": {"planRef": "", "colour": "blue"}});
    let status = api_error(
        tenants
            .patch("acme", &PatchParams::default(), &Patch::Merge(&patch))
            .await,
    );
    assert_eq!(status.code, 422);
    assert!(
        status.message.contains("spec.colour: unknown field"),
        "{}",
        status.message
    );
    assert_eq!(
        api.get(TENANTS, "", "acme").unwrap()["spec"]["planRef"],
        "pro"
    );
}

#[tokio::test]
async fn a_route_breaking_a_cel_rule_is_refused_with_the_rules_message() {
    let api = FakeApi::default();
    let routes: Api<Route> = Api::namespaced(api.client(), "acme");
    let mut route = Route::test("acme", "web", "acme", "acme.com");
    route.spec.backends.push(route.spec.backends[0].clone());
    let status = api_error(routes.create(&PostParams::default(), &route).await);
    assert_eq!(status.code, 422);
    assert!(
        status
            .message
            .ends_with("spec: Invalid value: \"object\": backend names must be unique"),
        "{}",
        status.message
    );
}

#[tokio::test]
async fn namespaces_are_cluster_scoped_and_active_from_creation() {
    let api = FakeApi::default();
    let namespaces: Api<Namespace> = Api::all(api.client());
    let created = namespaces
        .create(&PostParams::default(), &namespace("acme"))
        .await
        .unwrap();
    assert_eq!(created.metadata.namespace, None);
    let read = namespaces.get("acme").await.unwrap();
    assert_eq!(read.labels()["veloflux.io/tenant"], "acme");
    assert_eq!(read.status.unwrap().phase.as_deref(), Some("Active"));
    assert!(namespaces.get_opt("globex").await.unwrap().is_none());
    let status = api_error(
        namespaces
            .create(&PostParams::default(), &namespace("acme"))
            .await,
    );
    assert_eq!(status.reason, "AlreadyExists");
    assert_eq!(status.message, "namespaces \"acme\" already exists");
    let status = api_error(
        namespaces
            .create(&PostParams::default(), &namespace("Acme"))
            .await,
    );
    assert_eq!(status.reason, "Invalid");
    assert!(api.get("api/v1/namespaces", "", "acme").is_some());
    assert!(api.calls().contains(&Call {
        verb: "get".into(),
        group: String::new(),
        resource: "namespaces".into(),
        namespace: String::new(),
    }));
}

#[tokio::test]
async fn lists_filter_by_label_selector_and_page_by_limit() {
    let api = FakeApi::default();
    let namespaces: Api<Namespace> = Api::all(api.client());
    for name in ["acme", "globex", "initech"] {
        namespaces
            .create(&PostParams::default(), &namespace(name))
            .await
            .unwrap();
    }
    let acme = namespaces
        .list(&ListParams::default().labels("veloflux.io/tenant=acme"))
        .await
        .unwrap();
    let names: Vec<String> = acme.items.iter().map(ResourceExt::name_any).collect();
    assert_eq!(names, ["acme"]);
    let others = namespaces
        .list(&ListParams::default().labels("veloflux.io/tenant!=acme"))
        .await
        .unwrap();
    assert_eq!(others.items.len(), 2);

    let first = namespaces
        .list(&ListParams::default().limit(2))
        .await
        .unwrap();
    assert_eq!(first.items.len(), 2);
    let token = first.metadata.continue_.clone().unwrap();
    let rest = namespaces
        .list(&ListParams::default().limit(2).continue_token(&token))
        .await
        .unwrap();
    let names: Vec<String> = rest.items.iter().map(ResourceExt::name_any).collect();
    assert_eq!(names, ["initech"]);
    assert_eq!(rest.metadata.continue_, None);
}

#[tokio::test]
async fn a_deleted_route_is_gone_and_a_second_delete_is_not_found() {
    let api = FakeApi::default();
    let routes: Api<Route> = Api::namespaced(api.client(), "acme");
    routes
        .create(
            &PostParams::default(),
            &Route::test("acme", "web", "acme", "acme.com"),
        )
        .await
        .unwrap();
    routes
        .delete("web", &DeleteParams::default())
        .await
        .unwrap();
    assert!(api.get(ROUTES, "acme", "web").is_none());
    assert!(routes.get_opt("web").await.unwrap().is_none());
    let status = api_error(routes.delete("web", &DeleteParams::default()).await);
    assert_eq!((status.code, status.reason.as_str()), (404, "NotFound"));
}

#[tokio::test]
async fn a_tenant_with_a_finalizer_is_marked_on_delete_and_goes_with_the_finalizer() {
    let api = FakeApi::default();
    let tenants = tenants(&api);
    let mut acme = Tenant::test("acme", "pro");
    acme.metadata.finalizers = Some(vec!["veloflux.io/tenant-cleanup".into()]);
    tenants.create(&PostParams::default(), &acme).await.unwrap();

    let deleted = tenants
        .delete("acme", &DeleteParams::default())
        .await
        .unwrap();
    let marked = deleted.left().expect("the object is returned while held");
    assert!(marked.metadata.deletion_timestamp.is_some());
    let again = tenants
        .delete("acme", &DeleteParams::default())
        .await
        .unwrap()
        .left()
        .unwrap();
    assert_eq!(
        again.metadata.deletion_timestamp,
        marked.metadata.deletion_timestamp
    );

    let release = json!({"metadata": {"finalizers": null}});
    tenants
        .patch("acme", &PatchParams::default(), &Patch::Merge(&release))
        .await
        .unwrap();
    assert!(tenants.get_opt("acme").await.unwrap().is_none());
}

#[tokio::test]
async fn creation_timestamps_follow_creation_order() {
    let api = FakeApi::default();
    let tenants = tenants(&api);
    for name in ["b", "a"] {
        tenants
            .create(&PostParams::default(), &Tenant::test(name, "pro"))
            .await
            .unwrap();
    }
    let b = tenants
        .get("b")
        .await
        .unwrap()
        .creation_timestamp()
        .unwrap();
    let a = tenants
        .get("a")
        .await
        .unwrap()
        .creation_timestamp()
        .unwrap();
    assert!(b < a, "{b:?} is not before {a:?}");
}

#[tokio::test]
async fn a_dry_run_answers_in_full_and_keeps_nothing() {
    let api = FakeApi::default();
    let tenants = tenants(&api);
    let dry_run = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let answered = tenants
        .create(&dry_run, &Tenant::test("acme", "pro"))
        .await
        .unwrap();
    assert_eq!(answered.metadata.generation, Some(1));
    assert!(api.get(TENANTS, "", "acme").is_none());
    let bad = Tenant::test("acme", "pro").with_domains(&["Not A Host"]);
    assert_eq!(api_error(tenants.create(&dry_run, &bad).await).code, 422);

    let created = tenants
        .create(&PostParams::default(), &Tenant::test("acme", "pro"))
        .await
        .unwrap();
    let status = api_error(tenants.create(&dry_run, &Tenant::test("acme", "pro")).await);
    assert_eq!(status.reason, "AlreadyExists");
    assert_eq!(
        tenants.get("acme").await.unwrap().resource_version(),
        created.resource_version()
    );
}

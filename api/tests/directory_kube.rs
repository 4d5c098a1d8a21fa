//! The Kubernetes directory against the fake API server: tenants come with
//! their namespaces, the server's refusals come back in the directory's
//! terms, and a tenant's routes are the ones in its namespaces that name it.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use http::{Method, Request, Response};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::json;
use veloflux_api::directory::kube::{KubeDirectory, KubeOptions};
use veloflux_api::directory::{Directory, DirectoryError};
use veloflux_crds::{Plan, Route, Tenant};
use veloflux_kube_fake::{FakeApi, FakeBody};

const TENANTS: &str = "apis/veloflux.io/v1alpha1/tenants";
const ROUTES: &str = "apis/veloflux.io/v1alpha1/routes";
const NAMESPACES: &str = "api/v1/namespaces";

fn directory(api: &FakeApi) -> KubeDirectory {
    KubeDirectory::new(api.client(), KubeOptions::default())
}

fn names(routes: &[Route]) -> Vec<String> {
    routes
        .iter()
        .map(|r| format!("{}/{}", r.namespace().unwrap(), r.name_any()))
        .collect()
}

/// Writes a status as the operator would.
async fn set_status<K>(api: Api<K>, name: &str, status: serde_json::Value)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(&json!({ "status": status })),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn creating_a_tenant_creates_its_namespace_and_the_tenant_object() {
    let api = FakeApi::default();
    let directory = directory(&api);
    let mut acme = Tenant::test("acme", "pro").with_domains(&["acme.com"]);
    acme.spec.display_name = Some("Acme".into());
    acme.spec.owners = vec!["ana@acme.com".into()];

    let created = directory.create_tenant(&acme).await.unwrap();
    assert_eq!(created.spec, acme.spec);

    let namespace = api.get(NAMESPACES, "", "acme").expect("namespace created");
    assert_eq!(
        namespace["metadata"]["labels"]["veloflux.io/tenant"],
        "acme"
    );
    let stored = api.get(TENANTS, "", "acme").expect("tenant created");
    assert_eq!(stored["apiVersion"], "veloflux.io/v1alpha1");
    assert_eq!(stored["kind"], "Tenant");
    assert_eq!(stored["metadata"]["generation"], 1);
    assert_eq!(
        stored["spec"],
        json!({"planRef": "pro", "displayName": "Acme", "domains": ["acme.com"],
               "namespaces": ["acme"], "owners": ["ana@acme.com"], "suspended": false})
    );
    assert!(stored.get("status").is_none());
}

#[tokio::test]
async fn an_existing_namespace_is_the_tenants_only_with_its_label() {
    let api = FakeApi::default();
    let namespaces: Api<Namespace> = Api::all(api.client());
    for (name, labels) in [
        ("shared", json!({"team": "edge"})),
        ("kube-system", json!({})),
        ("prepared", json!({"veloflux.io/tenant": "acme"})),
    ] {
        let namespace: Namespace =
            serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}})).unwrap();
        namespaces
            .create(&PostParams::default(), &namespace)
            .await
            .unwrap();
    }

    // A namespace someone else owns (or the cluster's own) is refused, and
    // no Tenant claims it.
    for taken in ["shared", "kube-system"] {
        let tenant = Tenant::test("acme", "pro").with_namespaces(&[taken]);
        match directory(&api).create_tenant(&tenant).await {
            Err(DirectoryError::AlreadyExists {
                kind: "Namespace",
                name,
            }) => assert_eq!(name, taken),
            other => panic!("{taken}: expected a refusal, got {other:?}"),
        }
        assert!(api.get(TENANTS, "", "acme").is_none());
    }
    let shared = api.get(NAMESPACES, "", "shared").unwrap();
    assert_eq!(shared["metadata"]["labels"], json!({"team": "edge"}));

    // One labelled for the tenant (prepared by an admin) is used as it is.
    let acme = Tenant::test("acme", "pro").with_namespaces(&["acme", "prepared"]);
    directory(&api).create_tenant(&acme).await.unwrap();
    assert!(api.get(NAMESPACES, "", "acme").is_some());
    assert!(api.get(TENANTS, "", "acme").is_some());
}

#[tokio::test]
async fn a_taken_tenant_name_is_already_exists_and_creates_no_namespace() {
    let api = FakeApi::default();
    let directory = directory(&api);
    directory
        .create_tenant(&Tenant::test("acme", "pro"))
        .await
        .unwrap();

    let again = Tenant::test("acme", "free").with_namespaces(&["elsewhere"]);
    let error = directory.create_tenant(&again).await.unwrap_err();

    assert!(
        matches!(&error, DirectoryError::AlreadyExists { kind: "Tenant", name } if name == "acme"),
        "{error:?}"
    );
    assert!(api.get(NAMESPACES, "", "elsewhere").is_none());
    assert_eq!(
        api.get(TENANTS, "", "acme").unwrap()["spec"]["planRef"],
        "pro"
    );
}

#[tokio::test]
async fn an_invalid_tenant_is_refused_with_the_field_in_the_message_and_leaves_nothing() {
    let api = FakeApi::default();
    let bad = Tenant::test("acme", "pro").with_domains(&["Not A Host"]);

    let error = directory(&api).create_tenant(&bad).await.unwrap_err();

    let DirectoryError::Invalid(message) = &error else {
        panic!("expected Invalid, got {error:?}");
    };
    assert!(message.contains("spec.domains[0]"), "{message}");
    assert!(api.get(TENANTS, "", "acme").is_none());
    assert!(api.get(NAMESPACES, "", "acme").is_none());
}

#[tokio::test]
async fn an_update_replaces_the_spec_and_keeps_the_status() {
    let api = FakeApi::default();
    let directory = directory(&api);
    directory
        .create_tenant(&Tenant::test("acme", "pro"))
        .await
        .unwrap();
    set_status(
        Api::<Tenant>::all(api.client()),
        "acme",
        json!({"observedGeneration": 1, "conditions": []}),
    )
    .await;
    let mut spec = Tenant::test("acme", "pro").spec;
    spec.domains = vec!["acme.com".into()];
    spec.namespaces = vec!["acme".into(), "acme-staging".into()];

    let updated = directory.update_tenant("acme", &spec).await.unwrap();

    assert_eq!(updated.spec, spec);
    assert_eq!(updated.metadata.generation, Some(2));
    let stored = api.get(TENANTS, "", "acme").unwrap();
    assert_eq!(stored["status"]["observedGeneration"], 1);
    assert_eq!(stored["spec"]["domains"], json!(["acme.com"]));
    assert!(
        api.get(NAMESPACES, "", "acme-staging").is_some(),
        "a namespace the new spec names is created"
    );
}

#[tokio::test]
async fn an_update_of_a_missing_or_invalid_tenant_is_refused() {
    let api = FakeApi::default();
    let directory = directory(&api);
    let spec = Tenant::test("acme", "pro").spec;
    let error = directory.update_tenant("acme", &spec).await.unwrap_err();
    assert!(
        matches!(error, DirectoryError::NotFound { kind: "Tenant", .. }),
        "{error:?}"
    );

    directory
        .create_tenant(&Tenant::test("acme", "pro"))
        .await
        .unwrap();
    let bad = Tenant::test("acme", "pro")
        .with_domains(&["ok.com", "-bad-"])
        .spec;
    let error = directory.update_tenant("acme", &bad).await.unwrap_err();
    assert!(
        matches!(&error, DirectoryError::Invalid(m) if m.contains("spec.domains[1]")),
        "{error:?}"
    );
}

/// A client whose first read of `path` is followed, before the caller can
/// write, by someone else's change to the object.
#[derive(Clone)]
struct ChangedMeanwhile {
    api: FakeApi,
    path: &'static str,
    change: Arc<dyn Fn(&FakeApi) + Send + Sync>,
    done: Arc<AtomicBool>,
}

impl tower::Service<Request<kube::client::Body>> for ChangedMeanwhile {
    type Response = Response<FakeBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<kube::client::Body>) -> Self::Future {
        let read = request.method() == Method::GET && request.uri().path() == self.path;
        let mut api = self.api.clone();
        let this = self.clone();
        Box::pin(async move {
            let response = tower::Service::call(&mut api, request).await;
            if read && !this.done.swap(true, Ordering::SeqCst) {
                (this.change)(&this.api);
            }
            response
        })
    }
}

fn changed_meanwhile(
    api: &FakeApi,
    path: &'static str,
    change: impl Fn(&FakeApi) + Send + Sync + 'static,
) -> KubeDirectory {
    let service = ChangedMeanwhile {
        api: api.clone(),
        path,
        change: Arc::new(change),
        done: Arc::new(AtomicBool::new(false)),
    };
    KubeDirectory::new(
        kube::Client::new(service, "default"),
        KubeOptions::default(),
    )
}

#[tokio::test]
async fn a_tenant_changed_between_read_and_write_is_a_conflict() {
    let api = FakeApi::default();
    directory(&api)
        .create_tenant(&Tenant::test("acme", "pro"))
        .await
        .unwrap();
    let racing = changed_meanwhile(&api, "/apis/veloflux.io/v1alpha1/tenants/acme", |api| {
        api.apply(&Tenant::test("acme", "pro").suspended());
    });
    let mut spec = Tenant::test("acme", "pro").spec;
    spec.domains = vec!["acme.com".into()];

    let error = racing.update_tenant("acme", &spec).await.unwrap_err();

    assert!(
        matches!(&error, DirectoryError::Conflict(what) if what == "Tenant acme"),
        "{error:?}"
    );
    let stored = api.get(TENANTS, "", "acme").unwrap();
    assert_eq!(stored["spec"]["suspended"], true, "the other change stands");
    assert_eq!(stored["spec"]["domains"], json!([]));
}

#[tokio::test]
async fn a_route_changed_between_read_and_write_is_a_conflict() {
    let api = FakeApi::default();
    api.apply(&Route::test("acme", "web", "acme", "acme.com"));
    let racing = changed_meanwhile(
        &api,
        "/apis/veloflux.io/v1alpha1/namespaces/acme/routes/web",
        |api| {
            api.apply(&Route::test("acme", "web", "acme", "www.acme.com"));
        },
    );
    let spec = Route::test("acme", "web", "acme", "api.acme.com").spec;

    let error = racing.update_route("acme", "web", &spec).await.unwrap_err();

    assert!(
        matches!(&error, DirectoryError::Conflict(what) if what == "Route acme/web"),
        "{error:?}"
    );
}

#[tokio::test]
async fn routes_are_those_in_the_tenants_namespaces_that_name_it_oldest_first() {
    let api = FakeApi::default();
    let directory = directory(&api);
    let acme = directory
        .create_tenant(&Tenant::test("acme", "pro").with_namespaces(&["acme", "acme-two"]))
        .await
        .unwrap();
    for (namespace, name, tenant) in [
        ("acme-two", "web", "acme"),
        ("acme", "intruder", "globex"),
        ("foreign", "stray", "acme"),
        ("acme", "api", "acme"),
    ] {
        directory
            .create_route(&Route::test(namespace, name, tenant, "acme.com"))
            .await
            .unwrap();
    }

    let routes = directory.routes(&acme).await.unwrap();

    assert_eq!(names(&routes), ["acme-two/web", "acme/api"]);
}

#[tokio::test]
async fn routes_of_the_same_age_are_ordered_by_namespace_then_name() {
    let api = FakeApi::default();
    let acme = Tenant::test("acme", "pro").with_namespaces(&["b", "a"]);
    api.apply(&acme);
    for (namespace, name) in [("b", "x"), ("a", "z"), ("a", "y")] {
        api.apply(&Route::test(namespace, name, "acme", "acme.com").created(5));
    }
    api.apply(&Route::test("b", "old", "acme", "acme.com").created(1));

    let routes = directory(&api).routes(&acme).await.unwrap();

    assert_eq!(names(&routes), ["b/old", "a/y", "a/z", "b/x"]);
}

#[tokio::test]
async fn deleting_a_tenant_deletes_its_routes_and_leaves_the_finalizer_to_the_operator() {
    let api = FakeApi::default();
    let directory = directory(&api);
    let mut acme = Tenant::test("acme", "pro");
    acme.metadata.finalizers = Some(vec!["veloflux.io/tenant-cleanup".into()]);
    directory.create_tenant(&acme).await.unwrap();
    api.apply(&Route::test("acme", "web", "acme", "acme.com"));
    api.apply(&Route::test("acme", "api", "acme", "api.acme.com"));
    api.apply(&Route::test("acme", "intruder", "globex", "globex.com"));

    directory.delete_tenant("acme").await.unwrap();

    assert!(api.get(ROUTES, "acme", "web").is_none());
    assert!(api.get(ROUTES, "acme", "api").is_none());
    assert!(
        api.get(ROUTES, "acme", "intruder").is_some(),
        "another tenant's route stays"
    );
    let tenant = api.get(TENANTS, "", "acme").expect("held by its finalizer");
    assert!(!tenant["metadata"]["deletionTimestamp"].is_null());
    assert!(api.get(NAMESPACES, "", "acme").is_some());
}

#[tokio::test]
async fn deleting_a_missing_tenant_or_route_is_not_found() {
    let api = FakeApi::default();
    let directory = directory(&api);
    let error = directory.delete_tenant("ghost").await.unwrap_err();
    assert!(
        matches!(&error, DirectoryError::NotFound { kind: "Tenant", name } if name == "ghost"),
        "{error:?}"
    );
    let error = directory.delete_route("acme", "ghost").await.unwrap_err();
    assert!(
        matches!(&error, DirectoryError::NotFound { kind: "Route", name } if name == "acme/ghost"),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_route_is_created_read_updated_with_its_status_kept_and_deleted() {
    let api = FakeApi::default();
    let directory = directory(&api);
    let web = Route::test("acme", "web", "acme", "acme.com");
    let created = directory.create_route(&web).await.unwrap();
    assert_eq!(created.spec, web.spec);
    let error = directory.create_route(&web).await.unwrap_err();
    assert!(
        matches!(&error, DirectoryError::AlreadyExists { kind: "Route", name } if name == "acme/web"),
        "{error:?}"
    );
    set_status(
        Api::<Route>::namespaced(api.client(), "acme"),
        "web",
        json!({"observedGeneration": 1, "conditions": []}),
    )
    .await;

    let spec = Route::test("acme", "web", "acme", "www.acme.com").spec;
    let updated = directory.update_route("acme", "web", &spec).await.unwrap();
    assert_eq!(updated.spec.hosts, ["www.acme.com"]);
    let read = directory.route("acme", "web").await.unwrap().unwrap();
    assert_eq!(read.status.unwrap().observed_generation, Some(1));

    directory.delete_route("acme", "web").await.unwrap();
    assert!(directory.route("acme", "web").await.unwrap().is_none());
}

#[tokio::test]
async fn a_route_breaking_a_cel_rule_is_invalid_with_the_rules_message() {
    let api = FakeApi::default();
    let mut route = Route::test("acme", "web", "acme", "acme.com");
    route.spec.backends.push(route.spec.backends[0].clone());
    let error = directory(&api).create_route(&route).await.unwrap_err();
    assert!(
        matches!(&error, DirectoryError::Invalid(m) if m.contains("backend names must be unique")),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_route_without_a_namespace_is_invalid() {
    let api = FakeApi::default();
    let mut route = Route::test("acme", "web", "acme", "acme.com");
    route.metadata.namespace = None;
    let error = directory(&api).create_route(&route).await.unwrap_err();
    assert!(matches!(error, DirectoryError::Invalid(_)), "{error:?}");
}

#[tokio::test]
async fn plans_and_tenants_are_read_and_the_check_lists_one_plan() {
    let api = FakeApi::default();
    api.apply(&Plan::test("free"));
    api.apply(&Plan::test("pro"));
    api.apply(&Tenant::test("acme", "pro"));
    api.apply(&Tenant::test("globex", "free"));
    let directory = directory(&api);

    directory.check().await.unwrap();
    assert_eq!(directory.kind(), "kubernetes");
    let pro = directory.plan("pro").await.unwrap().unwrap();
    assert_eq!(pro.spec.limits.max_routes, 10);
    assert!(directory.plan("gold").await.unwrap().is_none());
    let tenants: Vec<String> = directory
        .tenants()
        .await
        .unwrap()
        .iter()
        .map(ResourceExt::name_any)
        .collect();
    assert_eq!(tenants, ["acme", "globex"]);
    assert_eq!(
        directory
            .tenant("acme")
            .await
            .unwrap()
            .unwrap()
            .spec
            .plan_ref,
        "pro"
    );
    assert!(directory.tenant("initech").await.unwrap().is_none());
    assert!(api.writes().iter().all(|w| !w.contains("plans")));
}

#[tokio::test]
async fn the_directory_asks_for_no_more_than_these_permissions() {
    let api = FakeApi::default();
    api.apply(&Plan::test("pro"));
    let directory = directory(&api);
    directory.check().await.unwrap();
    directory.plan("pro").await.unwrap();
    let acme = directory
        .create_tenant(&Tenant::test("acme", "pro"))
        .await
        .unwrap();
    directory.tenants().await.unwrap();
    directory.tenant("acme").await.unwrap();
    directory.update_tenant("acme", &acme.spec).await.unwrap();
    let web = Route::test("acme", "web", "acme", "acme.com");
    directory.create_route(&web).await.unwrap();
    directory.route("acme", "web").await.unwrap();
    directory.routes(&acme).await.unwrap();
    directory
        .update_route("acme", "web", &web.spec)
        .await
        .unwrap();
    directory.delete_route("acme", "web").await.unwrap();
    directory.delete_tenant("acme").await.unwrap();

    let used: std::collections::BTreeSet<(String, String, String)> = api
        .calls()
        .into_iter()
        .map(|c| (c.group, c.resource, c.verb))
        .collect();
    let expected: std::collections::BTreeSet<(String, String, String)> = [
        ("", "namespaces", "create"),
        ("", "namespaces", "get"),
        ("veloflux.io", "plans", "get"),
        ("veloflux.io", "plans", "list"),
        ("veloflux.io", "routes", "create"),
        ("veloflux.io", "routes", "delete"),
        ("veloflux.io", "routes", "get"),
        ("veloflux.io", "routes", "list"),
        ("veloflux.io", "routes", "update"),
        ("veloflux.io", "tenants", "create"),
        ("veloflux.io", "tenants", "delete"),
        ("veloflux.io", "tenants", "get"),
        ("veloflux.io", "tenants", "list"),
        ("veloflux.io", "tenants", "update"),
    ]
    .into_iter()
    .map(|(g, r, v)| (g.to_owned(), r.to_owned(), v.to_owned()))
    .collect();
    assert_eq!(used, expected);
}

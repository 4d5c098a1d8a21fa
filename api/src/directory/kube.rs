//! Tenants and Routes as custom resources, through the Kubernetes API.
//!
//! The API server is the authority: its schema and CEL rules decide what is
//! valid ([`DirectoryError::Invalid`] carries its message), its
//! resourceVersions decide conflicts. Writes are whole specs under one field
//! manager; `status` is the operator's and never written here.
//!
//! A tenant's namespaces are created with it (labelled
//! `veloflux.io/tenant=<name>`; an existing namespace is used as it is) and
//! outlive it: deleting a tenant deletes its Routes and the Tenant, whose
//! finalizer then has the operator remove its config, but not the
//! namespaces, which may hold other things.

use std::collections::BTreeMap;
use std::fmt::Display;

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::{Client, ResourceExt};
use veloflux_crds::{Plan, Route, RouteSpec, Tenant, TenantSpec};

use super::{DirResult, Directory, DirectoryError};

/// Label on the namespaces created for a tenant, naming it.
pub const TENANT_LABEL: &str = "veloflux.io/tenant";

/// Settings of the Kubernetes directory.
#[derive(Clone, Debug)]
pub struct KubeOptions {
    /// Field manager of every write (`metadata.managedFields`).
    pub field_manager: String,
}

impl Default for KubeOptions {
    fn default() -> Self {
        Self {
            field_manager: "veloflux-api".to_owned(),
        }
    }
}

/// The Kubernetes directory: Plans, Tenants and Routes as custom resources.
#[derive(Clone)]
pub struct KubeDirectory {
    client: Client,
    options: KubeOptions,
}

/// What a call was about, for the errors it maps to.
#[derive(Clone, Copy)]
enum Subject<'a> {
    Plan(&'a str),
    Plans,
    Tenant(&'a str),
    Tenants,
    Route(&'a str, &'a str),
    RoutesIn(&'a str),
    Namespace(&'a str),
}

impl Subject<'_> {
    fn kind(self) -> &'static str {
        match self {
            Self::Plan(_) | Self::Plans => "Plan",
            Self::Tenant(_) | Self::Tenants => "Tenant",
            Self::Route(..) | Self::RoutesIn(_) => "Route",
            Self::Namespace(_) => "Namespace",
        }
    }

    /// The object's name (`namespace/name` for a Route).
    fn name(self) -> String {
        match self {
            Self::Plan(name) | Self::Tenant(name) | Self::Namespace(name) => name.to_owned(),
            Self::Route(namespace, name) => format!("{namespace}/{name}"),
            Self::RoutesIn(namespace) => format!("{namespace}/*"),
            Self::Plans | Self::Tenants => "*".to_owned(),
        }
    }
}

impl Display for Subject<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.kind(), self.name())
    }
}

/// A failed Kubernetes call as a [`DirectoryError`]: the API server's
/// refusals in the directory's terms, anything else `Unavailable` with the
/// code and reason only (the full error goes to the log, never the caller).
fn refusal(subject: Subject<'_>, error: kube::Error) -> DirectoryError {
    match error {
        kube::Error::Api(status) => match (status.code, status.reason.as_str()) {
            (409, "AlreadyExists") => DirectoryError::AlreadyExists {
                kind: subject.kind(),
                name: subject.name(),
            },
            (409, _) => DirectoryError::Conflict(subject.to_string()),
            (404, _) => DirectoryError::NotFound {
                kind: subject.kind(),
                name: subject.name(),
            },
            (422, _) => DirectoryError::Invalid(status.message),
            (code, reason) => {
                tracing::warn!(%subject, code, reason, message = %status.message, "Kubernetes API refused a request");
                DirectoryError::Unavailable(format!(
                    "the Kubernetes API answered {code} {reason} about {subject}"
                ))
            }
        },
        other => {
            tracing::warn!(%subject, error = %other, "Kubernetes API request failed");
            DirectoryError::Unavailable(format!(
                "the Kubernetes API could not be reached about {subject}"
            ))
        }
    }
}

/// `metadata` of an object to create: the caller's name (or generateName),
/// namespace, labels, annotations and finalizers; what the server owns left
/// out.
fn creatable(metadata: &ObjectMeta) -> ObjectMeta {
    ObjectMeta {
        name: metadata.name.clone(),
        generate_name: metadata.generate_name.clone(),
        namespace: metadata.namespace.clone(),
        labels: metadata.labels.clone(),
        annotations: metadata.annotations.clone(),
        finalizers: metadata.finalizers.clone(),
        ..ObjectMeta::default()
    }
}

/// Whether `route` belongs to the tenant `name`.
fn is_of(route: &Route, name: &str) -> bool {
    route.spec.tenant_ref == name
}

/// The tenant's namespaces, each once, in order.
fn namespaces_of(spec: &TenantSpec) -> Vec<&str> {
    let mut seen = Vec::with_capacity(spec.namespaces.len());
    for namespace in &spec.namespaces {
        if !seen.contains(&namespace.as_str()) {
            seen.push(namespace.as_str());
        }
    }
    seen
}

impl KubeDirectory {
    /// A directory writing through `client`.
    pub fn new(client: Client, options: KubeOptions) -> Self {
        Self { client, options }
    }

    fn plans(&self) -> Api<Plan> {
        Api::all(self.client.clone())
    }

    fn tenants_api(&self) -> Api<Tenant> {
        Api::all(self.client.clone())
    }

    fn routes_in(&self, namespace: &str) -> Api<Route> {
        Api::namespaced(self.client.clone(), namespace)
    }

    fn namespaces(&self) -> Api<Namespace> {
        Api::all(self.client.clone())
    }

    fn post(&self, dry_run: bool) -> PostParams {
        PostParams {
            dry_run,
            field_manager: Some(self.options.field_manager.clone()),
        }
    }

    /// Creates namespace `name` for tenant `tenant` unless it exists. An
    /// existing namespace is the tenant's only if it carries the tenant's
    /// label: a tenant named `kube-system` must not gain the cluster's own
    /// namespace (its Services would become the tenant's backends).
    async fn ensure_namespace(&self, name: &str, tenant: &str) -> DirResult<()> {
        let api = self.namespaces();
        let subject = Subject::Namespace(name);
        if let Some(existing) = api.get_opt(name).await.map_err(|e| refusal(subject, e))? {
            let owner = existing
                .metadata
                .labels
                .as_ref()
                .and_then(|labels| labels.get(TENANT_LABEL));
            return if owner.map(String::as_str) == Some(tenant) {
                Ok(())
            } else {
                Err(DirectoryError::AlreadyExists {
                    kind: "Namespace",
                    name: name.to_owned(),
                })
            };
        }
        let namespace = Namespace {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                labels: Some(BTreeMap::from([(
                    TENANT_LABEL.to_owned(),
                    tenant.to_owned(),
                )])),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        match api.create(&self.post(false), &namespace).await {
            Ok(_) => Ok(()),
            // Created meanwhile: it exists, which is all that is needed.
            Err(kube::Error::Api(status)) if status.reason == "AlreadyExists" => Ok(()),
            Err(error) => Err(refusal(subject, error)),
        }
    }

    async fn ensure_namespaces(&self, spec: &TenantSpec, tenant: &str) -> DirResult<()> {
        for namespace in namespaces_of(spec) {
            self.ensure_namespace(namespace, tenant).await?;
        }
        Ok(())
    }

    async fn create_tenant_object(&self, tenant: &Tenant) -> DirResult<Tenant> {
        let name = tenant.name_any();
        let subject = Subject::Tenant(&name);
        let object = Tenant {
            metadata: creatable(&tenant.metadata),
            spec: tenant.spec.clone(),
            status: None,
        };
        let api = self.tenants_api();
        // The server's checks (schema, CEL, a taken name) before any
        // namespace is made, so a refused tenant leaves nothing behind.
        api.create(&self.post(true), &object)
            .await
            .map_err(|e| refusal(subject, e))?;
        self.ensure_namespaces(&object.spec, &name).await?;
        api.create(&self.post(false), &object)
            .await
            .map_err(|e| refusal(subject, e))
    }

    async fn update_tenant_spec(&self, name: &str, spec: &TenantSpec) -> DirResult<Tenant> {
        let subject = Subject::Tenant(name);
        let api = self.tenants_api();
        let mut tenant = api
            .get_opt(name)
            .await
            .map_err(|e| refusal(subject, e))?
            .ok_or_else(|| DirectoryError::NotFound {
                kind: "Tenant",
                name: name.to_owned(),
            })?;
        tenant.spec = spec.clone();
        let updated = api
            .replace(name, &self.post(false), &tenant)
            .await
            .map_err(|e| refusal(subject, e))?;
        // Namespaces the new spec names; those it no longer names stay.
        self.ensure_namespaces(&updated.spec, name).await?;
        Ok(updated)
    }

    async fn delete_tenant_and_routes(&self, name: &str) -> DirResult<()> {
        let subject = Subject::Tenant(name);
        let api = self.tenants_api();
        let tenant = api
            .get_opt(name)
            .await
            .map_err(|e| refusal(subject, e))?
            .ok_or_else(|| DirectoryError::NotFound {
                kind: "Tenant",
                name: name.to_owned(),
            })?;
        for route in self.routes_of(&tenant).await? {
            let namespace = route.namespace().unwrap_or_default();
            let route_name = route.name_any();
            match self.remove_route(&namespace, &route_name).await {
                Ok(()) | Err(DirectoryError::NotFound { .. }) => {}
                Err(error) => return Err(error),
            }
        }
        api.delete(name, &DeleteParams::default())
            .await
            .map(drop)
            .map_err(|e| refusal(subject, e))
    }

    async fn routes_of(&self, tenant: &Tenant) -> DirResult<Vec<Route>> {
        let name = tenant.name_any();
        let mut routes = Vec::new();
        for namespace in namespaces_of(&tenant.spec) {
            let listed = self
                .routes_in(namespace)
                .list(&ListParams::default())
                .await
                .map_err(|e| refusal(Subject::RoutesIn(namespace), e))?;
            routes.extend(listed.items.into_iter().filter(|r| is_of(r, &name)));
        }
        routes.sort_by(|a, b| {
            let key = |r: &Route| {
                (
                    r.metadata.creation_timestamp.clone(),
                    r.namespace(),
                    r.name_any(),
                )
            };
            key(a).cmp(&key(b))
        });
        Ok(routes)
    }

    async fn create_route_object(&self, route: &Route) -> DirResult<Route> {
        let name = route.name_any();
        let Some(namespace) = route.namespace() else {
            return Err(DirectoryError::Invalid(format!(
                "Route \"{name}\" has no metadata.namespace"
            )));
        };
        let object = Route {
            metadata: creatable(&route.metadata),
            spec: route.spec.clone(),
            status: None,
        };
        self.routes_in(&namespace)
            .create(&self.post(false), &object)
            .await
            .map_err(|e| refusal(Subject::Route(&namespace, &name), e))
    }

    async fn update_route_spec(
        &self,
        namespace: &str,
        name: &str,
        spec: &RouteSpec,
    ) -> DirResult<Route> {
        let subject = Subject::Route(namespace, name);
        let api = self.routes_in(namespace);
        let mut route = api
            .get_opt(name)
            .await
            .map_err(|e| refusal(subject, e))?
            .ok_or_else(|| DirectoryError::NotFound {
                kind: "Route",
                name: subject.name(),
            })?;
        route.spec = spec.clone();
        api.replace(name, &self.post(false), &route)
            .await
            .map_err(|e| refusal(subject, e))
    }

    async fn remove_route(&self, namespace: &str, name: &str) -> DirResult<()> {
        self.routes_in(namespace)
            .delete(name, &DeleteParams::default())
            .await
            .map(drop)
            .map_err(|e| refusal(Subject::Route(namespace, name), e))
    }
}

impl Directory for KubeDirectory {
    fn kind(&self) -> &'static str {
        "kubernetes"
    }

    fn check(&self) -> BoxFuture<'_, DirResult<()>> {
        Box::pin(async move {
            self.plans()
                .list(&ListParams::default().limit(1))
                .await
                .map(drop)
                .map_err(|e| refusal(Subject::Plans, e))
        })
    }

    fn plan<'a>(&'a self, name: &'a str) -> BoxFuture<'a, DirResult<Option<Plan>>> {
        Box::pin(async move {
            self.plans()
                .get_opt(name)
                .await
                .map_err(|e| refusal(Subject::Plan(name), e))
        })
    }

    fn tenants(&self) -> BoxFuture<'_, DirResult<Vec<Tenant>>> {
        Box::pin(async move {
            self.tenants_api()
                .list(&ListParams::default())
                .await
                .map(|list| list.items)
                .map_err(|e| refusal(Subject::Tenants, e))
        })
    }

    fn tenant<'a>(&'a self, name: &'a str) -> BoxFuture<'a, DirResult<Option<Tenant>>> {
        Box::pin(async move {
            self.tenants_api()
                .get_opt(name)
                .await
                .map_err(|e| refusal(Subject::Tenant(name), e))
        })
    }

    fn create_tenant<'a>(&'a self, tenant: &'a Tenant) -> BoxFuture<'a, DirResult<Tenant>> {
        Box::pin(self.create_tenant_object(tenant))
    }

    fn update_tenant<'a>(
        &'a self,
        name: &'a str,
        spec: &'a TenantSpec,
    ) -> BoxFuture<'a, DirResult<Tenant>> {
        Box::pin(self.update_tenant_spec(name, spec))
    }

    fn delete_tenant<'a>(&'a self, name: &'a str) -> BoxFuture<'a, DirResult<()>> {
        Box::pin(self.delete_tenant_and_routes(name))
    }

    fn routes<'a>(&'a self, tenant: &'a Tenant) -> BoxFuture<'a, DirResult<Vec<Route>>> {
        Box::pin(self.routes_of(tenant))
    }

    fn route<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, DirResult<Option<Route>>> {
        Box::pin(async move {
            self.routes_in(namespace)
                .get_opt(name)
                .await
                .map_err(|e| refusal(Subject::Route(namespace, name), e))
        })
    }

    fn create_route<'a>(&'a self, route: &'a Route) -> BoxFuture<'a, DirResult<Route>> {
        Box::pin(self.create_route_object(route))
    }

    fn update_route<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
        spec: &'a RouteSpec,
    ) -> BoxFuture<'a, DirResult<Route>> {
        Box::pin(self.update_route_spec(namespace, name, spec))
    }

    fn delete_route<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, DirResult<()>> {
        Box::pin(self.remove_route(namespace, name))
    }
}

#[cfg(test)]
mod tests {
    use kube::core::Status;

    use super::*;

    fn api_error(code: u16, reason: &str, message: &str) -> kube::Error {
        kube::Error::Api(Status::failure(message, reason).with_code(code).boxed())
    }

    #[test]
    fn the_servers_refusals_map_to_directory_errors() {
        let acme = Subject::Tenant("acme");
        assert!(matches!(
            refusal(acme, api_error(409, "AlreadyExists", "")),
            DirectoryError::AlreadyExists { kind: "Tenant", name } if name == "acme"
        ));
        assert!(matches!(
            refusal(Subject::Route("acme", "web"), api_error(409, "Conflict", "")),
            DirectoryError::Conflict(what) if what == "Route acme/web"
        ));
        assert!(matches!(
            refusal(acme, api_error(404, "NotFound", "")),
            DirectoryError::NotFound { kind: "Tenant", .. }
        ));
        assert!(matches!(
            refusal(acme, api_error(422, "Invalid", "Tenant.veloflux.io \"acme\" is invalid: x")),
            DirectoryError::Invalid(m) if m == "Tenant.veloflux.io \"acme\" is invalid: x"
        ));
    }

    #[test]
    fn other_failures_are_unavailable_without_the_servers_words() {
        let error = refusal(
            Subject::Tenants,
            api_error(
                403,
                "Forbidden",
                "User \"system:serviceaccount:x\" cannot list",
            ),
        );
        let DirectoryError::Unavailable(message) = error else {
            panic!("expected Unavailable, got {error:?}");
        };
        assert_eq!(
            message,
            "the Kubernetes API answered 403 Forbidden about Tenant *"
        );
        let error = refusal(
            Subject::Plans,
            kube::Error::Service("connection refused to https://10.0.0.1".into()),
        );
        assert!(
            matches!(&error, DirectoryError::Unavailable(m) if !m.contains("10.0.0.1")),
            "{error:?}"
        );
    }

    #[test]
    fn a_tenants_namespaces_are_taken_once_each_in_order() {
        let spec = Tenant::test("acme", "pro")
            .with_namespaces(&["b", "a", "b"])
            .spec;
        assert_eq!(namespaces_of(&spec), ["b", "a"]);
    }
}

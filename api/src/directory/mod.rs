//! Where Tenants and Routes live. The API never writes compiled config: it
//! writes `Tenant` and `Route` objects, and the operator (Kubernetes) or the
//! standalone proxy (a manifest folder) compiles them exactly as if a person
//! had applied them. Two real implementations sit behind [`Directory`]:
//! [`kube::KubeDirectory`] (the CRs, through the Kubernetes API) and
//! [`folder::FolderDirectory`] (YAML files, written atomically, in the folder
//! the standalone proxy watches).
//!
//! Objects come back with their `status`: the operator's conditions in a
//! cluster; in a folder, the conditions `resolve` gives the folder as it is
//! now (the same code the standalone proxy runs).

pub mod folder;
pub mod kube;

use futures::future::BoxFuture;
use veloflux_crds::{Plan, Route, RouteSpec, Tenant, TenantSpec};

/// A failure of the directory, in terms the API maps to an answer.
#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    /// An object of that name exists already.
    #[error("{kind} {name} already exists")]
    AlreadyExists {
        /// `Tenant` or `Route`.
        kind: &'static str,
        /// Its name.
        name: String,
    },
    /// No object of that name.
    #[error("{kind} {name} not found")]
    NotFound {
        /// `Tenant` or `Route`.
        kind: &'static str,
        /// Its name.
        name: String,
    },
    /// The object changed meanwhile (a resourceVersion conflict); try again.
    #[error("{0} changed meanwhile; try again")]
    Conflict(String),
    /// The directory refused the object as invalid (the API server's schema
    /// or CEL rules); the message is the server's.
    #[error("invalid: {0}")]
    Invalid(String),
    /// The directory cannot be reached or failed.
    #[error("directory unavailable: {0}")]
    Unavailable(String),
}

impl DirectoryError {
    /// Short label for metrics and logs.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::AlreadyExists { .. } => "already_exists",
            Self::NotFound { .. } => "not_found",
            Self::Conflict(_) => "conflict",
            Self::Invalid(_) => "invalid",
            Self::Unavailable(_) => "unavailable",
        }
    }
}

/// Result of a directory call.
pub type DirResult<T> = Result<T, DirectoryError>;

/// The source of truth for Plans (read only), Tenants and Routes.
///
/// Routes of a tenant are the Routes in the tenant's namespaces whose
/// `tenantRef` names it. Writes are whole specs: the API reads, changes and
/// writes back, and a concurrent change is a [`DirectoryError::Conflict`].
pub trait Directory: Send + Sync + 'static {
    /// `kubernetes` or `folder`, for `/readyz` and logs.
    fn kind(&self) -> &'static str;

    /// Whether the directory answers (for `/readyz`).
    fn check(&self) -> BoxFuture<'_, DirResult<()>>;

    /// The Plan `name`, if it exists.
    fn plan<'a>(&'a self, name: &'a str) -> BoxFuture<'a, DirResult<Option<Plan>>>;

    /// Every Tenant (for domain-overlap checks at sign-up and domain edits).
    fn tenants(&self) -> BoxFuture<'_, DirResult<Vec<Tenant>>>;

    /// The Tenant `name`, with its status.
    fn tenant<'a>(&'a self, name: &'a str) -> BoxFuture<'a, DirResult<Option<Tenant>>>;

    /// Creates `tenant` (its namespaces too, where the directory has them).
    /// [`DirectoryError::AlreadyExists`] if the name is taken.
    fn create_tenant<'a>(&'a self, tenant: &'a Tenant) -> BoxFuture<'a, DirResult<Tenant>>;

    /// Replaces the spec of Tenant `name`.
    fn update_tenant<'a>(
        &'a self,
        name: &'a str,
        spec: &'a TenantSpec,
    ) -> BoxFuture<'a, DirResult<Tenant>>;

    /// Deletes Tenant `name` and every Route of it: its routing goes.
    fn delete_tenant<'a>(&'a self, name: &'a str) -> BoxFuture<'a, DirResult<()>>;

    /// The Routes of `tenant`, oldest first, with their status.
    fn routes<'a>(&'a self, tenant: &'a Tenant) -> BoxFuture<'a, DirResult<Vec<Route>>>;

    /// The Route `namespace/name`, with its status.
    fn route<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, DirResult<Option<Route>>>;

    /// Creates `route` (metadata.namespace and metadata.name set).
    fn create_route<'a>(&'a self, route: &'a Route) -> BoxFuture<'a, DirResult<Route>>;

    /// Replaces the spec of Route `namespace/name`.
    fn update_route<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
        spec: &'a RouteSpec,
    ) -> BoxFuture<'a, DirResult<Route>>;

    /// Deletes Route `namespace/name`.
    fn delete_route<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, DirResult<()>>;
}

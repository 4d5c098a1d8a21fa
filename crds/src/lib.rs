//! The VeloFlux API: the CRD types (`Plan`, `Tenant`, `Route`,
//! `DedicatedInstance`), the compiled [`config::TenantConfig`] the operator
//! writes and the proxy reads, the Redis key schema, and [`resolve::resolve`],
//! the pure step from manifests to compiled config that the operator and the
//! standalone proxy share.
//!
//! This crate does no I/O beyond parsing: no tokio, no Kubernetes client.

pub mod condition;
pub mod crdgen;
pub mod dedicated;
pub mod grant;
pub mod plan;
pub mod route;
pub mod tenant;

pub use condition::{Condition, ConditionStatus, ConditionType, Reason};
pub use dedicated::{DedicatedInstance, DedicatedInstanceSpec, DedicatedInstanceStatus};
pub use grant::{ReferenceGrant, ReferenceGrantSpec};
pub use plan::{Plan, PlanSpec, PlanStatus};
pub use route::{Route, RouteSpec, RouteStatus};
pub use tenant::{Tenant, TenantSpec, TenantStatus};

/// API group of every VeloFlux kind.
pub const GROUP: &str = "veloflux.io";
/// API version of every VeloFlux kind.
pub const VERSION: &str = "v1alpha1";

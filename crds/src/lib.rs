//! The VeloFlux API: the CRD types (`Plan`, `Tenant`, `Route`,
//! `DedicatedInstance`), the compiled [`config::TenantConfig`] the operator
//! writes and the proxy reads, the Redis key schema ([`keys`]), and
//! [`resolve::resolve`], the pure step from manifests to compiled config that
//! the operator and the standalone proxy share.
//!
//! This crate does no I/O beyond reading manifest files: no tokio, no
//! Kubernetes client.

pub mod condition;
pub mod config;
pub mod crdgen;
pub mod dedicated;
pub mod duration;
pub mod grant;
pub mod host;
pub mod keys;
pub mod manifest;
pub mod plan;
pub mod resolve;
pub mod route;
pub mod tenant;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
#[cfg(feature = "validation")]
pub mod validation;
pub mod yaml;

pub use condition::{Condition, ConditionStatus, ConditionType, Reason};
pub use config::TenantConfig;
pub use dedicated::{DedicatedInstance, DedicatedInstanceSpec, DedicatedInstanceStatus};
pub use grant::{ReferenceGrant, ReferenceGrantSpec};
pub use manifest::Manifests;
pub use plan::{Plan, PlanSpec, PlanStatus};
pub use resolve::{Inputs, Resolution, resolve};
pub use route::{Route, RouteSpec, RouteStatus};
pub use tenant::{Tenant, TenantSpec, TenantStatus};

/// API group of every VeloFlux kind.
pub const GROUP: &str = "veloflux.io";
/// API version of every VeloFlux kind.
pub const VERSION: &str = "v1alpha1";

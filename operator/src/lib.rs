//! The VeloFlux operator: watches Plans, Tenants, Routes, DedicatedInstances,
//! ReferenceGrants, Services, EndpointSlices and TLS Secrets; resolves them
//! with the API crate's `resolve`; writes each tenant's compiled config to
//! the fleet config store; and reports status conditions, `Programmed` once
//! the proxies acknowledge serving a route's revision.

pub mod admin;
pub mod config;
pub mod inputs;
pub mod leader;
pub mod metrics;
pub mod quota;
pub mod reconcile;
pub mod run;
pub mod status;

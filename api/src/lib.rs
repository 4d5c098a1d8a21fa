//! The VeloFlux control plane API: people and their sessions, roles checked
//! in one layer, self-service onboarding, tenants, routes and usage. It writes
//! `Tenant` and `Route` objects (CRs in a cluster, manifest files standalone)
//! and never compiled config.

pub mod directory;

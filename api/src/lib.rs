//! The VeloFlux control plane API: people and their sessions, roles checked
//! in one layer, self-service onboarding, tenants, routes and usage. It
//! writes `Tenant` and `Route` objects (CRs in a cluster, manifest files
//! standalone) and never compiled config.
//!
//! | folder / module | owns |
//! |---|---|
//! | `config` | the one `Config` (clap, `VELOFLUX_*`) |
//! | `app` | the shared state and the listeners |
//! | `http` | the endpoint table, the router built from it, JSON bodies, the OpenAPI document |
//! | `auth` | passwords, signing keys, access tokens, the access layer, throttling |
//! | `people` | users, tenants' records, memberships, sessions, invitations, verification, audit (Redis) |
//! | `directory` | Tenants and Routes: Kubernetes or a manifest folder |
//! | `handlers` | one module per resource |
//! | `error` | `ApiError` and its one mapping to problem+json |
//! | `notify`, `metrics`, `admin` | messages to people, metrics, `/healthz` `/readyz` `/metrics` |

pub mod admin;
pub mod app;
pub mod auth;
pub mod config;
pub mod directory;
pub mod error;
pub mod handlers;
pub mod http;
pub mod metrics;
pub mod notify;
pub mod people;

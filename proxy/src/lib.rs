//! The VeloFlux data plane: a multi-tenant HTTP proxy that serves the
//! compiled tenant configs of `veloflux-crds`, reloading them per tenant
//! without dropping requests.

pub mod admin;
pub mod app;
pub mod balancer;
pub mod body;
pub mod config;
pub mod demo;
pub mod endpoint;
pub mod fleet;
pub mod h1;
pub mod health;
pub mod listener;
pub mod metrics;
pub mod parallel;
pub mod ratelimit;
pub mod reload;
pub mod router;
pub mod server;
pub mod snapshot;
pub mod source;
pub mod state;
pub mod tls;
pub mod upstream;
pub mod usage;
pub mod wire;

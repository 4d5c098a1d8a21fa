//! The VeloFlux data plane: a multi-tenant HTTP proxy that serves the
//! compiled tenant configs of `veloflux-crds`, reloading them per tenant
//! without dropping requests.

pub mod balancer;
pub mod body;
pub mod endpoint;
pub mod metrics;
pub mod router;
pub mod snapshot;

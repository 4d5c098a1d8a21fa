//! The VeloFlux data plane: a multi-tenant HTTP proxy that serves the
//! compiled tenant configs of `veloflux-crds`, reloading them per tenant
//! without dropping requests.
//!
//! Where things live (see `docs/ARCHITECTURE.md` for the file map):
//! - [`http`]: client connections, TLS, the HTTP/1 fast path, bodies;
//! - [`http1`]: the HTTP/1.1 codec, shared by both sides;
//! - [`request`]: the request path, in phases, and its errors;
//! - [`upstream`]: pooled upstream connections and exchanges;
//! - [`routing`]: compiled routing, the snapshot, reloads;
//! - [`sources`]: where config comes from (folder, Redis, state directory);
//! - [`backends`]: endpoints, load balancing, health checks;
//! - [`limits`]: rate limits and usage metering;
//! - [`admin`]: the admin listener and metrics.

pub mod admin;
pub mod app;
pub mod backends;
pub mod config;
pub mod demo;
pub mod http;
pub mod http1;
pub mod limits;
pub mod parallel;
pub mod request;
pub mod routing;
pub mod sources;
pub mod upstream;

//! Upstream endpoints: their shared state, load balancing over them, and active health checks.

pub mod balancer;
pub mod endpoint;
pub mod health;

//! The admin listener and the metrics it serves.

pub mod endpoints;
pub mod metrics;

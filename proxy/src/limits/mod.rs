//! Rate limits and usage metering.

pub mod ratelimit;
pub mod usage;

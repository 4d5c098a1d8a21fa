//! What requests are routed by: the compiled routing of each tenant, the snapshot every request reads, and applying tenant changes to it.

pub mod reload;
pub mod router;
pub mod snapshot;

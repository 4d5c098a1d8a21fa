//! The fleet config store: how tenant configs travel from the operator to
//! every proxy through Redis.
//!
//! - [`writer::Writer`] (operator side) writes one tenant's whole
//!   [`TenantConfig`](veloflux_crds::TenantConfig) as one document, keeps the
//!   tenant index, announces each change on a capped stream, and republishes
//!   everything when the store was wiped (the epoch marker is gone).
//! - [`reader::Reader`] (proxy side) loads every tenant, follows the stream,
//!   and tells a gap (trimmed stream) from a clean follow.
//! - [`acks`] carries each proxy's heartbeat: what it applied, as a stream
//!   watermark, so the operator can tell when a change is live on the fleet.
//!
//! Keys and fields are spelled once, in [`veloflux_crds::keys`]. Every
//! multi-key operation touches keys of one hash tag, so single node,
//! Sentinel and Cluster deployments behave alike.

pub mod acks;
pub mod connect;
pub mod ratelimit;
pub mod reader;
pub mod stream_id;
#[cfg(feature = "testing")]
pub mod testing;
pub mod usage;
pub mod writer;

pub use connect::{RedisOptions, StoreError};
pub use stream_id::StreamId;

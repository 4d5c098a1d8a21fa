//! Config sources: the manifest folder, the fleet (Redis), and the state directory that outlives restarts.

pub mod fleet;
pub mod folder;
pub mod state;

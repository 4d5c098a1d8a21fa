//! `veloflux-api`: the control plane API server.

fn main() {}

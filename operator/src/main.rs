//! `veloflux-operator`: reconciles Plan, Tenant, Route and DedicatedInstance
//! objects and writes each tenant's compiled config into Redis.
//!
//! The controllers are not built yet; this binary prints its usage.

fn main() {
    println!(
        "veloflux-operator {}\n\nThe Kubernetes controllers are not part of this build yet.\n\
         Generate the CRDs with `make crds`; run the data plane with `make run`.",
        env!("CARGO_PKG_VERSION")
    );
}

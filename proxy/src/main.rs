//! `veloflux-proxy`: the VeloFlux data plane.
//!
//! The proxy server is not built yet; this binary validates a folder of
//! manifests with the same `resolve` step the operator uses and prints the
//! routing it would serve.

use std::path::PathBuf;
use std::process::ExitCode;

use veloflux_crds::{ConditionStatus, ConditionType, Manifests};

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let dir = match (args.next().as_deref(), args.next()) {
        (Some("--manifests"), Some(dir)) => PathBuf::from(dir),
        _ => {
            println!(
                "usage: veloflux-proxy --manifests DIR\n\n\
                 Resolves the Plan, Tenant and Route manifests in DIR and prints the routing they compile to.\n\
                 Serving traffic comes with the data-plane release."
            );
            return ExitCode::from(2);
        }
    };
    let manifests = match Manifests::load_dir(&dir) {
        Ok(m) => m,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::FAILURE;
        }
    };
    let resolution = manifests.resolve();
    for (tenant, config) in &resolution.configs {
        println!(
            "tenant {tenant} (plan {}, {} routes)",
            config.plan.name,
            config.routes.len()
        );
        for route in &config.routes {
            println!(
                "  route {} hosts {:?} algorithm {}",
                route.id,
                route.hosts,
                route.algorithm.as_str()
            );
        }
    }
    let mut failed = false;
    for (key, outcome) in &resolution.routes {
        if let Some(c) = outcome
            .condition(ConditionType::Accepted)
            .filter(|c| c.status != ConditionStatus::True)
        {
            failed = true;
            eprintln!("route {key} not accepted: {}: {}", c.reason, c.message);
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

//! The operator's flags, each also a `VELOFLUX_*` environment variable.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

/// VeloFlux operator: reconciles Plans, Tenants and Routes into the fleet
/// config store and reports status.
#[derive(Parser, Debug, Clone)]
#[command(name = "veloflux-operator", version, about, long_about = None)]
pub struct Config {
    /// Redis URL of the fleet config store (`redis://`, `rediss://`, `redis-sentinel://`, `redis-cluster://`).
    #[arg(long, env = "VELOFLUX_REDIS", value_name = "URL")]
    pub redis: String,
    /// PEM bundle of the CAs that sign Redis's TLS certificate.
    #[arg(long, env = "VELOFLUX_REDIS_CA", value_name = "FILE")]
    pub redis_ca: Option<PathBuf>,
    /// Address for /healthz, /readyz and /metrics.
    #[arg(
        long,
        env = "VELOFLUX_ADMIN_LISTEN",
        default_value = "127.0.0.1:9902",
        value_name = "ADDR"
    )]
    pub admin_listen: SocketAddr,
    /// Namespace of the leader-election Lease (default: the pod's namespace, else `veloflux-system`).
    #[arg(long, env = "VELOFLUX_LEASE_NAMESPACE", value_name = "NS")]
    pub lease_namespace: Option<String>,
    /// Name of the leader-election Lease.
    #[arg(
        long,
        env = "VELOFLUX_LEASE_NAME",
        default_value = "veloflux-operator",
        value_name = "NAME"
    )]
    pub lease_name: String,
    /// This replica's identity (default: host name and process id).
    #[arg(long, env = "VELOFLUX_IDENTITY", value_name = "ID")]
    pub identity: Option<String>,
    /// Wait this long after a change for more before a pass.
    #[arg(long, env = "VELOFLUX_DEBOUNCE", default_value = "100ms", value_parser = veloflux_crds::duration::parse, value_name = "DURATION")]
    pub debounce: Duration,
    /// Pass at least this often, even without changes.
    #[arg(long, env = "VELOFLUX_RESYNC", default_value = "60s", value_parser = veloflux_crds::duration::parse, value_name = "DURATION")]
    pub resync: Duration,
    /// Log filter (tracing `EnvFilter` syntax).
    #[arg(
        long,
        env = "VELOFLUX_LOG",
        default_value = "info",
        value_name = "FILTER"
    )]
    pub log: String,
}

/// The default identity: `HOSTNAME` (a pod's name) and the process id.
pub fn default_identity() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_default();
    let host: String = host
        .trim()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.'))
        .collect();
    let host = if host.is_empty() {
        "veloflux-operator".to_owned()
    } else {
        host
    };
    format!("{host}-{}", std::process::id())
}

/// The namespace the pod runs in, when in a cluster.
pub fn pod_namespace() -> Option<String> {
    std::fs::read_to_string("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
        .ok()
        .map(|ns| ns.trim().to_owned())
        .filter(|ns| !ns.is_empty())
}

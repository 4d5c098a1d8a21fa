//! The proxy's one `Config`: command line flags, each also settable as a
//! `VELOFLUX_*` environment variable, validated once before any port is bound.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, Parser};

/// VeloFlux proxy: serves the tenants' compiled routing.
#[derive(Parser, Debug, Clone)]
#[command(name = "veloflux-proxy", version, about, long_about = None)]
pub struct Config {
    /// Folder of Plan / Tenant / Route YAML manifests to serve (standalone mode).
    #[arg(long, env = "VELOFLUX_MANIFESTS", value_name = "DIR")]
    pub manifests: Option<PathBuf>,
    /// Address for plain HTTP (HTTP/1.1 and h2c).
    #[arg(
        long,
        env = "VELOFLUX_LISTEN",
        default_value = "127.0.0.1:8080",
        value_name = "ADDR"
    )]
    pub listen: SocketAddr,
    /// Address for the admin endpoints (/healthz, /readyz, /metrics, /config).
    #[arg(
        long,
        env = "VELOFLUX_ADMIN_LISTEN",
        default_value = "127.0.0.1:9901",
        value_name = "ADDR"
    )]
    pub admin_listen: SocketAddr,
    /// Address for HTTPS (TLS 1.2/1.3, certificate by SNI, ALPN h2 and http/1.1).
    #[arg(long, env = "VELOFLUX_TLS_LISTEN", value_name = "ADDR")]
    pub tls_listen: Option<SocketAddr>,
    /// Default certificate chain (PEM) for names without a tenant certificate.
    #[arg(
        long,
        env = "VELOFLUX_TLS_CERT",
        value_name = "FILE",
        requires = "tls_key"
    )]
    pub tls_cert: Option<PathBuf>,
    /// Private key (PEM) of the default certificate.
    #[arg(
        long,
        env = "VELOFLUX_TLS_KEY",
        value_name = "FILE",
        requires = "tls_cert"
    )]
    pub tls_key: Option<PathBuf>,
    /// Redis URL of the fleet config store (`redis://`, `rediss://`, `redis-sentinel://`, `redis-cluster://`).
    #[arg(long, env = "VELOFLUX_REDIS", value_name = "URL")]
    pub redis: Option<String>,
    /// Folder where the last good config is kept for starts without Redis.
    #[arg(long, env = "VELOFLUX_STATE_DIR", value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Start demo HTTP backends on the loopback addresses the manifests name.
    #[arg(long, env = "VELOFLUX_DEMO_BACKENDS")]
    pub demo_backends: bool,
    /// Log every request as a JSON line.
    #[arg(long, env = "VELOFLUX_ACCESS_LOG", default_value_t = true, action = ArgAction::Set, value_name = "BOOL")]
    pub access_log: bool,
    /// Log filter (tracing `EnvFilter` syntax).
    #[arg(
        long,
        env = "VELOFLUX_LOG",
        default_value = "info",
        value_name = "FILTER"
    )]
    pub log: String,
    /// Time in-flight requests get to finish after SIGTERM.
    #[arg(long, env = "VELOFLUX_SHUTDOWN_GRACE", default_value = "30s", value_parser = parse_duration, value_name = "DURATION")]
    pub shutdown_grace: Duration,
    /// How often the manifest folder is checked for changes.
    #[arg(long, env = "VELOFLUX_POLL_INTERVAL", default_value = "1s", value_parser = parse_duration, value_name = "DURATION")]
    pub poll_interval: Duration,
    /// Most distinct tenant labels in metrics; further tenants share `other`.
    #[arg(
        long,
        env = "VELOFLUX_METRICS_MAX_TENANTS",
        default_value_t = 1000,
        value_name = "N"
    )]
    pub metrics_max_tenants: usize,
    /// Most distinct route labels in metrics; further routes share `other`.
    #[arg(
        long,
        env = "VELOFLUX_METRICS_MAX_ROUTES",
        default_value_t = 10_000,
        value_name = "N"
    )]
    pub metrics_max_routes: usize,
    /// Worker threads (default: one per core).
    #[arg(long, env = "VELOFLUX_WORKER_THREADS", value_name = "N")]
    pub worker_threads: Option<usize>,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    veloflux_crds::duration::parse_millis(text)
        .map(Duration::from_millis)
        .map_err(|e| e.to_string())
}

/// A configuration that cannot run.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// No source.
    #[error("set --manifests DIR (standalone) or --redis URL (fleet)")]
    NoSource,
    /// Both sources.
    #[error("--manifests and --redis are exclusive: pick one config source")]
    TwoSources,
    /// A source this build does not include.
    #[error("{0}: the Redis config source is not part of this build; use --manifests DIR")]
    Unsupported(&'static str),
    /// TLS listener without a way to get certificates.
    #[error("--tls-listen needs --tls-cert/--tls-key (default certificate) or tenant certificates")]
    TlsWithoutCertificates,
}

impl Config {
    /// Checks the flags fit together.
    pub fn validate(&self) -> Result<(), ConfigError> {
        match (&self.manifests, &self.redis) {
            (None, None) => return Err(ConfigError::NoSource),
            (Some(_), Some(_)) => return Err(ConfigError::TwoSources),
            (None, Some(_)) => return Err(ConfigError::Unsupported("--redis")),
            (Some(_), None) => {}
        }
        if self.state_dir.is_some() {
            return Err(ConfigError::Unsupported("--state-dir"));
        }
        Ok(())
    }
}

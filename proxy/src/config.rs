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
    /// PEM bundle of the CAs that sign Redis's TLS certificate (`rediss://`; default: system roots).
    #[arg(long, env = "VELOFLUX_REDIS_CA", value_name = "FILE")]
    pub redis_ca: Option<PathBuf>,
    /// Folder where the last good config is kept for starts without Redis.
    #[arg(long, env = "VELOFLUX_STATE_DIR", value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// This proxy's id in the fleet's acknowledgements (default: host name and process id).
    #[arg(long, env = "VELOFLUX_PROXY_ID", value_name = "ID")]
    pub proxy_id: Option<String>,
    /// How long start waits for Redis before serving the state directory.
    #[arg(long, env = "VELOFLUX_REDIS_CONNECT_TIMEOUT", default_value = "3s", value_parser = veloflux_crds::duration::parse, value_name = "DURATION")]
    pub redis_connect_timeout: Duration,
    /// Per-command timeout for Redis.
    #[arg(long, env = "VELOFLUX_REDIS_TIMEOUT", default_value = "2s", value_parser = veloflux_crds::duration::parse, value_name = "DURATION")]
    pub redis_timeout: Duration,
    /// Enforce the plans' and routes' rate limits (false is for diagnosis only).
    #[arg(long, env = "VELOFLUX_RATE_LIMIT", default_value_t = true, action = ArgAction::Set, value_name = "BOOL")]
    pub rate_limit: bool,
    /// Longest a rate-limit call to Redis may take before the plan's failure mode applies.
    #[arg(long, env = "VELOFLUX_RATELIMIT_TIMEOUT", default_value = "50ms", value_parser = veloflux_crds::duration::parse, value_name = "DURATION")]
    pub ratelimit_timeout: Duration,
    /// How often per-tenant usage (requests, bytes) is written to Redis.
    #[arg(long, env = "VELOFLUX_USAGE_FLUSH_INTERVAL", default_value = "10s", value_parser = veloflux_crds::duration::parse, value_name = "DURATION")]
    pub usage_flush_interval: Duration,
    /// How often the proxy checks the store's epoch and refreshes its acknowledgement (which lives five intervals).
    #[arg(long, env = "VELOFLUX_HEARTBEAT_INTERVAL", default_value = "2s", value_parser = veloflux_crds::duration::parse, value_name = "DURATION")]
    pub heartbeat_interval: Duration,
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
    #[arg(long, env = "VELOFLUX_SHUTDOWN_GRACE", default_value = "30s", value_parser = veloflux_crds::duration::parse, value_name = "DURATION")]
    pub shutdown_grace: Duration,
    /// How often the manifest folder is checked for changes.
    #[arg(long, env = "VELOFLUX_POLL_INTERVAL", default_value = "1s", value_parser = veloflux_crds::duration::parse, value_name = "DURATION")]
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

/// A configuration that cannot run.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// No source.
    #[error("set --manifests DIR (standalone) or --redis URL (fleet)")]
    NoSource,
    /// Both sources.
    #[error("--manifests and --redis are exclusive: pick one config source")]
    TwoSources,
    /// A flag that only applies to the Redis source.
    #[error("{0} applies to the Redis config source only (--redis URL)")]
    RedisOnly(&'static str),
    /// Demo backends outside the quickstart.
    #[error("--demo-backends applies to --manifests DIR only")]
    DemoWithoutManifests,
    /// An unusable proxy id.
    #[error("--proxy-id `{0}`: use 1 to 253 of A-Z a-z 0-9 . _ -")]
    ProxyId(String),
    /// A zero interval.
    #[error("{0} must be greater than zero")]
    Zero(&'static str),
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
            (None, Some(_)) => {
                if self.demo_backends {
                    return Err(ConfigError::DemoWithoutManifests);
                }
            }
            (Some(_), None) => {
                for (set, flag) in [
                    (self.state_dir.is_some(), "--state-dir"),
                    (self.redis_ca.is_some(), "--redis-ca"),
                    (self.proxy_id.is_some(), "--proxy-id"),
                ] {
                    if set {
                        return Err(ConfigError::RedisOnly(flag));
                    }
                }
            }
        }
        if let Some(id) = &self.proxy_id
            && !veloflux_crds::keys::is_valid_proxy_id(id)
        {
            return Err(ConfigError::ProxyId(id.clone()));
        }
        for (value, flag) in [
            (self.heartbeat_interval, "--heartbeat-interval"),
            (self.redis_timeout, "--redis-timeout"),
            (self.ratelimit_timeout, "--ratelimit-timeout"),
            (self.usage_flush_interval, "--usage-flush-interval"),
            (self.poll_interval, "--poll-interval"),
        ] {
            if value.is_zero() {
                return Err(ConfigError::Zero(flag));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Config {
        Config::try_parse_from(std::iter::once("veloflux-proxy").chain(args.iter().copied()))
            .unwrap()
    }

    #[test]
    fn exactly_one_source_and_redis_flags_only_with_redis() {
        assert!(matches!(parse(&[]).validate(), Err(ConfigError::NoSource)));
        assert!(matches!(
            parse(&["--manifests", "d", "--redis", "redis://r"]).validate(),
            Err(ConfigError::TwoSources)
        ));
        parse(&["--manifests", "d", "--demo-backends"])
            .validate()
            .unwrap();
        parse(&[
            "--redis",
            "redis://r",
            "--state-dir",
            "s",
            "--proxy-id",
            "p-1",
        ])
        .validate()
        .unwrap();
        for flag in [
            ["--state-dir", "s"],
            ["--redis-ca", "ca.pem"],
            ["--proxy-id", "p"],
        ] {
            let err = parse(&["--manifests", "d", flag[0], flag[1]])
                .validate()
                .unwrap_err();
            assert!(err.to_string().starts_with(flag[0]), "{err}");
        }
        assert!(matches!(
            parse(&["--redis", "redis://r", "--demo-backends"]).validate(),
            Err(ConfigError::DemoWithoutManifests)
        ));
        assert!(matches!(
            parse(&["--redis", "redis://r", "--proxy-id", "a b"]).validate(),
            Err(ConfigError::ProxyId(_))
        ));
        assert!(matches!(
            parse(&["--redis", "redis://r", "--heartbeat-interval", "0s"]).validate(),
            Err(ConfigError::Zero("--heartbeat-interval"))
        ));
    }
}

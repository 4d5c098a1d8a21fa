//! Connecting to Redis: one URL names the deployment (single node,
//! Sentinel or Cluster, with or without TLS, with ACL credentials), and
//! every client reconnects on its own with capped exponential backoff.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use fred::prelude::{Builder, Client, ClientLike, Config, ReconnectPolicy, TlsConnector};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject as _;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Redis answered with an error, timed out or is unreachable.
    #[error("redis: {0}")]
    Redis(#[from] fred::error::Error),
    /// The URL names no usable deployment.
    #[error("redis URL {url}: {reason}")]
    Url {
        /// The URL, password redacted.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The CA bundle for TLS could not be used.
    #[error("redis TLS CA file {path}: {reason}")]
    Ca {
        /// File.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// No connection within the time allowed.
    #[error("redis at {url} unreachable within {waited:?}: {last_error}")]
    Unreachable {
        /// The URL, password redacted.
        url: String,
        /// Time waited.
        waited: Duration,
        /// The last connection error.
        last_error: String,
    },
    /// Another writer changed the same tenant at the same time.
    #[error("tenant {0} was changed concurrently by another writer")]
    Conflict(String),
    /// A config could not be encoded.
    #[error("encoding tenant config: {0}")]
    Encode(#[from] serde_json::Error),
    /// Redis holds something this build cannot read.
    #[error("unexpected data at {key}: {reason}")]
    Corrupt {
        /// Key read.
        key: String,
        /// What was wrong.
        reason: String,
    },
}

/// The URL schemes understood: single node, Sentinel and Cluster, each
/// plain or TLS.
const SCHEMES: [&str; 6] = [
    "redis",
    "rediss",
    "redis-sentinel",
    "rediss-sentinel",
    "redis-cluster",
    "rediss-cluster",
];

/// How to reach the store.
#[derive(Clone, Debug)]
pub struct RedisOptions {
    /// `redis://[user:password@]host:port[/db]`; `rediss://` for TLS;
    /// `redis-sentinel://host:port?sentinelServiceName=NAME&node=host:port`;
    /// `redis-cluster://host:port?node=host:port` (and `rediss-…` forms).
    pub url: String,
    /// PEM bundle of CAs that sign the servers' TLS certificates (default:
    /// the system's roots).
    pub ca_file: Option<PathBuf>,
    /// Longest a command may take before it fails (the caller keeps what it has).
    pub command_timeout: Duration,
    /// Longest pause between reconnect attempts.
    pub max_reconnect_delay: Duration,
}

impl RedisOptions {
    /// Options for `url` with the defaults: 2 s per command, reconnects
    /// backing off from 50 ms to 5 s.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            ca_file: None,
            command_timeout: Duration::from_secs(2),
            max_reconnect_delay: Duration::from_secs(5),
        }
    }

    /// The URL with any password replaced by `***`, for logs and status.
    pub fn redacted_url(&self) -> String {
        redact(&self.url)
    }

    /// A client for ordinary commands. Not connected yet: see [`connect`].
    pub fn client(&self) -> Result<Client, StoreError> {
        self.build(self.command_timeout)
    }

    /// A client for blocking reads of up to `block`: its own connection, so
    /// a blocked `XREAD` never delays other commands.
    pub fn blocking_client(&self, block: Duration) -> Result<Client, StoreError> {
        self.build(block + self.command_timeout)
    }

    fn build(&self, timeout: Duration) -> Result<Client, StoreError> {
        let url_error = |reason: String| StoreError::Url {
            url: self.redacted_url(),
            reason,
        };
        let scheme = self.url.split_once("://").map_or("", |(scheme, _)| scheme);
        if !SCHEMES.contains(&scheme) {
            return Err(url_error(format!(
                "unknown scheme `{scheme}`; use one of {}",
                SCHEMES.join(", ")
            )));
        }
        let mut config = Config::from_url(&self.url).map_err(|e| url_error(e.to_string()))?;
        config.fail_fast = false;
        if let Some(path) = &self.ca_file {
            if config.tls.is_none() {
                return Err(url_error(
                    "a CA file is set but the URL does not use TLS (rediss://)".into(),
                ));
            }
            config.tls = Some(TlsConnector::from(tls_with_roots(path)?).into());
        }
        let max_delay = u32::try_from(self.max_reconnect_delay.as_millis()).unwrap_or(u32::MAX);
        let client = Builder::from_config(config)
            .with_performance_config(|perf| {
                perf.default_command_timeout = timeout;
            })
            .with_connection_config(|conn| {
                conn.connection_timeout = self.command_timeout;
                conn.internal_command_timeout = self.command_timeout;
                conn.max_command_attempts = 2;
                conn.tcp.nodelay = Some(true);
            })
            .set_policy(ReconnectPolicy::new_exponential(
                0,
                50,
                max_delay.max(50),
                2,
            ))
            .build()
            .map_err(|e| url_error(e.to_string()))?;
        Ok(client)
    }
}

fn tls_with_roots(path: &std::path::Path) -> Result<rustls::ClientConfig, StoreError> {
    let ca_error = |reason: String| StoreError::Ca {
        path: path.to_owned(),
        reason,
    };
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(path).map_err(|e| ca_error(e.to_string()))? {
        let cert = cert.map_err(|e| ca_error(e.to_string()))?;
        roots.add(cert).map_err(|e| ca_error(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(ca_error("no certificate in the file".into()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ca_error(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// Starts `client`'s connection task and waits up to `within` for it to
/// connect. On timeout the task keeps reconnecting in the background, so the
/// caller can serve what it has and use the client once Redis is back.
pub async fn connect(
    client: &Client,
    options: &RedisOptions,
    within: Duration,
) -> Result<(), StoreError> {
    if !client.is_connected() {
        let _task = client.connect();
    }
    wait_connected(client, options, within).await
}

/// Waits up to `within` for an already started client to be connected.
pub async fn wait_connected(
    client: &Client,
    options: &RedisOptions,
    within: Duration,
) -> Result<(), StoreError> {
    let deadline = tokio::time::Instant::now() + within;
    let mut last_error = String::from("no answer");
    while !client.is_connected() {
        match tokio::time::timeout_at(deadline, client.wait_for_connect()).await {
            Ok(Ok(())) => break,
            Ok(Err(err)) => last_error = err.to_string(),
            Err(_) => {
                return Err(StoreError::Unreachable {
                    url: options.redacted_url(),
                    waited: within,
                    last_error,
                });
            }
        }
    }
    Ok(())
}

fn redact(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_owned();
    };
    let rest = &url[scheme_end..];
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return url.to_owned();
    };
    let userinfo = &rest[..at];
    let user = userinfo.split_once(':').map_or("", |(user, _)| user);
    format!("{}{user}:***{}", &url[..scheme_end], &rest[at..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_reach_logs() {
        assert_eq!(
            redact("redis://proxy:s3cret@redis:6379/0"),
            "redis://proxy:***@redis:6379/0"
        );
        assert_eq!(redact("rediss://:s3cret@redis"), "rediss://:***@redis");
        assert_eq!(redact("redis://redis:6379"), "redis://redis:6379");
        assert_eq!(
            redact("redis-sentinel://u:p@s1:26379?sentinelServiceName=m&node=s2:26379"),
            "redis-sentinel://u:***@s1:26379?sentinelServiceName=m&node=s2:26379"
        );
    }

    #[test]
    fn every_deployment_kind_parses_and_bad_urls_are_named() {
        for url in [
            "redis://127.0.0.1:6379",
            "redis://user:pass@127.0.0.1:6379/2",
            "redis-cluster://127.0.0.1:7000?node=127.0.0.1:7001",
            "redis-sentinel://127.0.0.1:26379?sentinelServiceName=veloflux",
            "rediss://127.0.0.1:6380",
        ] {
            RedisOptions::new(url).client().unwrap();
        }
        let err = RedisOptions::new("http://nope:1:2@x")
            .client()
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("redis URL http://nope:***@x: unknown scheme `http`"),
            "{err}"
        );
    }

    #[test]
    fn a_ca_file_needs_a_tls_url() {
        let mut options = RedisOptions::new("redis://127.0.0.1:6379");
        options.ca_file = Some("/nonexistent.pem".into());
        assert!(
            options
                .client()
                .unwrap_err()
                .to_string()
                .contains("does not use TLS")
        );
        options.url = "rediss://127.0.0.1:6379".into();
        assert!(matches!(options.client(), Err(StoreError::Ca { .. })));
    }
}

//! The API's one `Config`: command line flags, each also a `VELOFLUX_*`
//! environment variable, validated once before any port is bound.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, Parser, Subcommand};

/// VeloFlux control plane API: people, sessions, tenants and routes.
#[derive(Parser, Debug, Clone)]
#[command(name = "veloflux-api", version, about, long_about = None)]
pub struct Config {
    /// What to do; without a subcommand the API serves.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Address for the API (`/api/...`, `/.well-known/jwks.json`).
    #[arg(
        long,
        env = "VELOFLUX_LISTEN",
        default_value = "127.0.0.1:8090",
        value_name = "ADDR"
    )]
    pub listen: SocketAddr,
    /// Address for the admin endpoints (`/healthz`, `/readyz`, `/metrics`).
    #[arg(
        long,
        env = "VELOFLUX_ADMIN_LISTEN",
        default_value = "127.0.0.1:9903",
        value_name = "ADDR"
    )]
    pub admin_listen: SocketAddr,
    /// Redis URL of the product's store (`redis://`, `rediss://`, `redis-sentinel://`, `redis-cluster://`).
    #[arg(long, env = "VELOFLUX_REDIS", value_name = "URL", global = true)]
    pub redis: Option<String>,
    /// PEM bundle of the CAs that sign Redis's TLS certificate (`rediss://`; default: system roots).
    #[arg(long, env = "VELOFLUX_REDIS_CA", value_name = "FILE", global = true)]
    pub redis_ca: Option<PathBuf>,
    /// Per-command timeout for Redis.
    #[arg(long, env = "VELOFLUX_REDIS_TIMEOUT", default_value = "2s", value_parser = veloflux_crds::duration::parse, value_name = "DURATION")]
    pub redis_timeout: Duration,
    /// Write Tenants and Routes as manifest files into DIR (the folder a
    /// standalone proxy watches) instead of as objects in Kubernetes.
    #[arg(long, env = "VELOFLUX_MANIFESTS", value_name = "DIR")]
    pub manifests: Option<PathBuf>,
    /// Folder of Ed25519 signing keys (PKCS#8 PEM, `*.pem`; the key id is the
    /// file name without `.pem`). The greatest name signs; every key in the
    /// folder verifies, so a new key can be added before it signs and an old
    /// one removed once its tokens have expired. Re-read while running.
    #[arg(long, env = "VELOFLUX_SIGNING_KEYS", value_name = "DIR", global = true)]
    pub signing_keys: Option<PathBuf>,
    /// How often the signing-key folder is read again.
    #[arg(long, env = "VELOFLUX_SIGNING_KEYS_POLL", default_value = "10s", value_parser = veloflux_crds::duration::parse, value_name = "DURATION")]
    pub signing_keys_poll: Duration,
    /// `iss` of the tokens this API issues and accepts.
    #[arg(
        long,
        env = "VELOFLUX_ISSUER",
        default_value = "https://veloflux.local",
        value_name = "URL"
    )]
    pub issuer: String,
    /// `aud` of the tokens this API issues and accepts.
    #[arg(
        long,
        env = "VELOFLUX_AUDIENCE",
        default_value = "veloflux-api",
        value_name = "NAME"
    )]
    pub audience: String,
    /// Lifetime of an access token.
    #[arg(long, env = "VELOFLUX_ACCESS_TOKEN_TTL", default_value = "10m", value_parser = veloflux_crds::duration::parse, value_name = "DURATION")]
    pub access_token_ttl: Duration,
    /// Lifetime of a sign-in's refresh-token family (rotation does not extend it).
    #[arg(long, env = "VELOFLUX_REFRESH_TOKEN_TTL", default_value = "720h", value_parser = veloflux_crds::duration::parse, value_name = "DURATION")]
    pub refresh_token_ttl: Duration,
    /// Lifetime of an invitation.
    #[arg(long, env = "VELOFLUX_INVITATION_TTL", default_value = "168h", value_parser = veloflux_crds::duration::parse, value_name = "DURATION")]
    pub invitation_ttl: Duration,
    /// Lifetime of an email-verification token.
    #[arg(long, env = "VELOFLUX_VERIFICATION_TTL", default_value = "24h", value_parser = veloflux_crds::duration::parse, value_name = "DURATION")]
    pub verification_ttl: Duration,
    /// Plan of tenants created by sign-up.
    #[arg(
        long,
        env = "VELOFLUX_DEFAULT_PLAN",
        default_value = "free",
        value_name = "PLAN"
    )]
    pub default_plan: String,
    /// Parent domains tenants may claim names under by self-service (repeat
    /// the flag, or comma-separate in the env): `customers.example` lets a
    /// tenant claim `acme.customers.example` and `*.acme.customers.example`.
    /// Without any, self-service tenants claim no domains.
    #[arg(
        long = "allowed-parent-domain",
        env = "VELOFLUX_ALLOWED_PARENT_DOMAINS",
        value_delimiter = ',',
        value_name = "DOMAIN"
    )]
    pub allowed_parent_domains: Vec<String>,
    /// Prefix of the namespace a new tenant's Routes live in (`<prefix><tenant>`).
    #[arg(
        long,
        env = "VELOFLUX_TENANT_NAMESPACE_PREFIX",
        default_value = "",
        value_name = "PREFIX"
    )]
    pub tenant_namespace_prefix: String,
    /// Origins allowed to call the API from a browser (CORS); none: CORS off.
    #[arg(
        long = "cors-allow-origin",
        env = "VELOFLUX_CORS_ALLOW_ORIGINS",
        value_delimiter = ',',
        value_name = "ORIGIN"
    )]
    pub cors_allow_origins: Vec<String>,
    /// Largest request body accepted, in bytes.
    #[arg(
        long,
        env = "VELOFLUX_MAX_BODY_BYTES",
        default_value_t = 65_536,
        value_name = "BYTES"
    )]
    pub max_body_bytes: usize,
    /// Sign-in and sign-up attempts allowed per client address per minute,
    /// across every API replica.
    #[arg(
        long,
        env = "VELOFLUX_THROTTLE_PER_ADDRESS",
        default_value_t = 30,
        value_name = "N"
    )]
    pub throttle_per_address: u32,
    /// Sign-in attempts allowed per account per minute, across every API replica.
    #[arg(
        long,
        env = "VELOFLUX_THROTTLE_PER_ACCOUNT",
        default_value_t = 10,
        value_name = "N"
    )]
    pub throttle_per_account: u32,
    /// Take the client address from the last `X-Forwarded-For` hop (only
    /// behind a proxy that sets it).
    #[arg(long, env = "VELOFLUX_TRUST_FORWARDED_FOR", default_value_t = false, action = ArgAction::Set, value_name = "BOOL")]
    pub trust_forwarded_for: bool,
    /// argon2id memory cost in KiB (OWASP: 19456).
    #[arg(
        long,
        env = "VELOFLUX_ARGON2_MEMORY_KIB",
        default_value_t = 19_456,
        value_name = "KIB"
    )]
    pub argon2_memory_kib: u32,
    /// argon2id iterations (OWASP: 2 at 19 MiB).
    #[arg(
        long,
        env = "VELOFLUX_ARGON2_ITERATIONS",
        default_value_t = 2,
        value_name = "N"
    )]
    pub argon2_iterations: u32,
    /// Deliver messages to people (verification, invitations) as JSON files
    /// in DIR, for a mail relay to send; without it they go to the log.
    #[arg(long, env = "VELOFLUX_OUTBOX", value_name = "DIR")]
    pub outbox: Option<PathBuf>,
    /// Public base URL of the console, for links in notifications.
    #[arg(
        long,
        env = "VELOFLUX_PUBLIC_URL",
        default_value = "http://127.0.0.1:8090",
        value_name = "URL"
    )]
    pub public_url: String,
    /// Log filter (tracing `EnvFilter` syntax).
    #[arg(
        long,
        env = "VELOFLUX_LOG",
        default_value = "info",
        value_name = "FILTER"
    )]
    pub log: String,
    /// Worker threads of the runtime (default: one per core).
    #[arg(long, env = "VELOFLUX_WORKER_THREADS", value_name = "N")]
    pub worker_threads: Option<usize>,
    /// Time in-flight requests get to finish after SIGTERM.
    #[arg(long, env = "VELOFLUX_SHUTDOWN_GRACE", default_value = "10s", value_parser = veloflux_crds::duration::parse, value_name = "DURATION")]
    pub shutdown_grace: Duration,
}

/// Subcommands besides serving.
#[derive(Subcommand, Debug, Clone)]
pub enum Command {
    /// Serve the API (the default).
    Serve,
    /// Grant or revoke the platform-admin flag of an existing person. This
    /// is deliberately not an API call: it needs the store's credentials.
    PlatformAdmin {
        /// `grant` or `revoke`.
        #[arg(value_parser = ["grant", "revoke"])]
        action: String,
        /// The person's email address.
        email: String,
    },
    /// Write a new Ed25519 signing key into the signing-key folder, named
    /// after the current time so that it sorts last and signs from the next
    /// read of the folder on.
    GenerateKey,
}

impl Config {
    /// The Redis URL (present once [`Config::validate`] passed).
    pub fn redis_url(&self) -> &str {
        self.redis.as_deref().unwrap_or_default()
    }

    /// The signing-key folder (present once [`Config::validate`] passed).
    pub fn signing_keys_dir(&self) -> &std::path::Path {
        self.signing_keys
            .as_deref()
            .unwrap_or(std::path::Path::new("."))
    }

    /// Checks what clap cannot: values that parse but make no sense.
    pub fn validate(&self) -> Result<(), String> {
        if self.signing_keys.is_none() {
            return Err("--signing-keys DIR (or VELOFLUX_SIGNING_KEYS) is required".into());
        }
        if self.redis.is_none() && !matches!(self.command, Some(Command::GenerateKey)) {
            return Err("--redis URL (or VELOFLUX_REDIS) is required".into());
        }
        if self.access_token_ttl < Duration::from_secs(30) {
            return Err("--access-token-ttl must be at least 30s".into());
        }
        if self.refresh_token_ttl <= self.access_token_ttl {
            return Err("--refresh-token-ttl must be longer than --access-token-ttl".into());
        }
        // A zero interval would stop the key folder from ever being read
        // again (tokio refuses it); zero lifetimes make tokens dead on issue.
        if self.signing_keys_poll.is_zero() {
            return Err("--signing-keys-poll must be longer than 0s".into());
        }
        if self.invitation_ttl.is_zero() || self.verification_ttl.is_zero() {
            return Err("--invitation-ttl and --verification-ttl must be longer than 0s".into());
        }
        if self.max_body_bytes < 1024 {
            return Err("--max-body-bytes must be at least 1024".into());
        }
        if self.argon2_memory_kib < 8 * 1024 || self.argon2_iterations == 0 {
            return Err("argon2id needs at least 8192 KiB of memory and 1 iteration".into());
        }
        if self.throttle_per_address == 0 || self.throttle_per_account == 0 {
            return Err("throttle limits must be at least 1".into());
        }
        if !veloflux_crds::keys::is_valid_id(&self.default_plan) {
            return Err(format!(
                "--default-plan {:?} is not a valid plan name",
                self.default_plan
            ));
        }
        for domain in &self.allowed_parent_domains {
            if domain.starts_with("*.") || !veloflux_crds::host::is_valid_pattern(domain) {
                return Err(format!(
                    "--allowed-parent-domain {domain:?} is not a domain name"
                ));
            }
        }
        for origin in &self.cors_allow_origins {
            if http::HeaderValue::from_str(origin).is_err()
                || !(origin.starts_with("https://") || origin.starts_with("http://"))
            {
                return Err(format!(
                    "--cors-allow-origin {origin:?} is not an origin (scheme://host[:port])"
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::Config;

    fn validate(extra: &[&str]) -> Result<(), String> {
        let mut args = vec![
            "veloflux-api",
            "--redis",
            "redis://127.0.0.1",
            "--signing-keys",
            "keys",
        ];
        args.extend(extra);
        Config::try_parse_from(args).unwrap().validate()
    }

    #[test]
    fn zero_intervals_and_lifetimes_are_refused() {
        assert_eq!(validate(&[]), Ok(()));
        assert_eq!(
            validate(&["--signing-keys-poll", "200ms", "--invitation-ttl", "1s"]),
            Ok(())
        );
        for flag in [
            "--signing-keys-poll",
            "--invitation-ttl",
            "--verification-ttl",
        ] {
            assert!(validate(&[flag, "0s"]).is_err(), "{flag} 0s");
        }
    }
}

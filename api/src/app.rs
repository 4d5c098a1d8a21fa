//! Wiring: the shared state every handler sees, built once from the
//! validated `Config`, and the two listeners (API and admin) with graceful
//! shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use fred::prelude::Client;

use crate::auth::keys::SigningKeys;
use crate::auth::password::Passwords;
use crate::auth::throttle::Throttle;
use crate::auth::tokens::Tokens;
use crate::directory::Directory;
use crate::metrics::Metrics;
use crate::notify::Notifier;
use crate::people::People;
use crate::people::sessions::Sessions;

/// Settings handlers read, taken from the `Config`.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Plan of tenants created by sign-up.
    pub default_plan: String,
    /// Parent domains open to self-service claims.
    pub allowed_parent_domains: Vec<String>,
    /// Prefix of a new tenant's namespace.
    pub tenant_namespace_prefix: String,
    /// Invitation lifetime.
    pub invitation_ttl: Duration,
    /// Email-verification token lifetime.
    pub verification_ttl: Duration,
    /// Console base URL for links.
    pub public_url: String,
    /// Client address from `X-Forwarded-For`.
    pub trust_forwarded_for: bool,
    /// Largest request body.
    pub max_body_bytes: usize,
    /// Local sign-in bucket per address per minute.
    pub throttle_per_address: u32,
    /// CORS allow-list (empty: CORS off).
    pub cors_allow_origins: Vec<String>,
}

/// What every handler shares.
pub struct Inner {
    /// Settings.
    pub settings: Settings,
    /// Access tokens.
    pub tokens: Tokens,
    /// Password hashing.
    pub passwords: Passwords,
    /// People, tenants' records, memberships, audit.
    pub people: People,
    /// Refresh-token families.
    pub sessions: Sessions,
    /// Shared sign-in counters.
    pub throttle: Throttle,
    /// Tenants and Routes.
    pub directory: Arc<dyn Directory>,
    /// Messages to people.
    pub notifier: Arc<dyn Notifier>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// The Redis client (usage counters are read straight from it).
    pub redis: Client,
}

/// Cheap to clone handle on [`Inner`].
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

impl std::ops::Deref for AppState {
    type Target = Inner;

    fn deref(&self) -> &Inner {
        &self.0
    }
}

/// The parts an [`AppState`] is built from.
pub struct Parts {
    /// Settings.
    pub settings: Settings,
    /// Signing keys.
    pub keys: Arc<SigningKeys>,
    /// `iss`.
    pub issuer: String,
    /// `aud`.
    pub audience: String,
    /// Access token lifetime.
    pub access_token_ttl: Duration,
    /// Refresh family lifetime.
    pub refresh_token_ttl: Duration,
    /// Password hashing.
    pub passwords: Passwords,
    /// Throttle limits: per address, per account, per minute.
    pub throttle: (u32, u32),
    /// Tenants and Routes.
    pub directory: Arc<dyn Directory>,
    /// Messages to people.
    pub notifier: Arc<dyn Notifier>,
    /// A connected Redis client.
    pub redis: Client,
}

impl AppState {
    /// Builds the state.
    pub fn new(parts: Parts) -> Self {
        let Parts {
            settings,
            keys,
            issuer,
            audience,
            access_token_ttl,
            refresh_token_ttl,
            passwords,
            throttle,
            directory,
            notifier,
            redis,
        } = parts;
        Self(Arc::new(Inner {
            settings,
            tokens: Tokens::new(keys, &issuer, &audience, access_token_ttl),
            passwords,
            people: People::new(redis.clone()),
            sessions: Sessions::new(redis.clone(), refresh_token_ttl),
            throttle: Throttle::new(redis.clone(), throttle.0, throttle.1),
            directory,
            notifier,
            metrics: Metrics::new(crate::http::endpoints::ENDPOINTS),
            redis,
        }))
    }
}

/// Serves the API on `api` and the admin endpoints on `admin` until
/// `shutdown` resolves, then gives in-flight requests `grace`.
pub async fn serve(
    state: AppState,
    api: tokio::net::TcpListener,
    admin: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    grace: Duration,
) -> std::io::Result<()> {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let api_router =
        crate::http::router(state.clone()).into_make_service_with_connect_info::<SocketAddr>();
    let admin_router = crate::admin::router(state);
    let mut api_stop = stop_rx.clone();
    let mut admin_stop = stop_rx;
    let api_task = tokio::spawn(async move {
        axum::serve(api, api_router)
            .with_graceful_shutdown(async move {
                let _ = api_stop.wait_for(|s| *s).await;
            })
            .await
    });
    let admin_task = tokio::spawn(async move {
        axum::serve(admin, admin_router)
            .with_graceful_shutdown(async move {
                let _ = admin_stop.wait_for(|s| *s).await;
            })
            .await
    });
    shutdown.await;
    tracing::info!(grace = ?grace, "Shutting down; finishing in-flight requests");
    let _ = stop_tx.send(true);
    let drained = async {
        let _ = api_task.await;
        let _ = admin_task.await;
    };
    if tokio::time::timeout(grace, drained).await.is_err() {
        tracing::warn!("Shutdown grace over; exiting with requests in flight");
    }
    Ok(())
}

/// A started API: its bound addresses, and a handle to stop it.
pub struct Running {
    /// Where the API listens.
    pub api: SocketAddr,
    /// Where the admin endpoints listen.
    pub admin: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Running {
    /// Stops serving (in-flight requests get the shutdown grace) and waits.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}

/// Builds everything from `config` and starts serving: keys, Redis, the
/// directory, both listeners. Anything invalid fails here, before a port
/// is bound.
pub async fn start(config: &crate::config::Config) -> anyhow::Result<Running> {
    use anyhow::Context as _;
    let directory: Arc<dyn Directory> = match &config.manifests {
        Some(dir) => Arc::new(crate::directory::folder::FolderDirectory::open(
            dir.clone(),
        )?),
        None => {
            let client = kube::Client::try_default()
                .await
                .context("no --manifests folder and no Kubernetes configuration")?;
            Arc::new(crate::directory::kube::KubeDirectory::new(
                client,
                crate::directory::kube::KubeOptions::default(),
            ))
        }
    };
    start_with(config, directory).await
}

/// [`start`] with a given directory (tests pass a Kubernetes directory on
/// an in-memory API server).
pub async fn start_with(
    config: &crate::config::Config,
    directory: Arc<dyn Directory>,
) -> anyhow::Result<Running> {
    use anyhow::Context as _;
    let keys = SigningKeys::open(config.signing_keys_dir())?;
    let passwords = Passwords::new(config.argon2_memory_kib, config.argon2_iterations)
        .map_err(|e| anyhow::anyhow!("argon2id parameters: {e}"))?;
    let mut options = veloflux_store::RedisOptions::new(config.redis_url());
    options.ca_file.clone_from(&config.redis_ca);
    options.command_timeout = config.redis_timeout;
    let redis = options.client()?;
    if let Err(error) =
        veloflux_store::connect::connect(&redis, &options, Duration::from_secs(5)).await
    {
        tracing::warn!(%error, "Redis not reachable yet; /readyz says so until it is");
    }
    let notifier: Arc<dyn Notifier> = match &config.outbox {
        Some(dir) => Arc::new(
            crate::notify::OutboxNotifier::new(dir.clone())
                .with_context(|| format!("outbox {}", dir.display()))?,
        ),
        None => Arc::new(crate::notify::LogNotifier),
    };
    let settings = Settings {
        default_plan: config.default_plan.clone(),
        allowed_parent_domains: config.allowed_parent_domains.clone(),
        tenant_namespace_prefix: config.tenant_namespace_prefix.clone(),
        invitation_ttl: config.invitation_ttl,
        verification_ttl: config.verification_ttl,
        public_url: config.public_url.clone(),
        trust_forwarded_for: config.trust_forwarded_for,
        max_body_bytes: config.max_body_bytes,
        throttle_per_address: config.throttle_per_address,
        cors_allow_origins: config.cors_allow_origins.clone(),
    };
    keys.watch(config.signing_keys_poll);
    let state = AppState::new(Parts {
        settings,
        keys,
        issuer: config.issuer.clone(),
        audience: config.audience.clone(),
        access_token_ttl: config.access_token_ttl,
        refresh_token_ttl: config.refresh_token_ttl,
        passwords,
        throttle: (config.throttle_per_address, config.throttle_per_account),
        directory,
        notifier,
        redis,
    });
    let api = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding --listen {}", config.listen))?;
    let admin = tokio::net::TcpListener::bind(config.admin_listen)
        .await
        .with_context(|| format!("binding --admin-listen {}", config.admin_listen))?;
    let (api_addr, admin_addr) = (api.local_addr()?, admin.local_addr()?);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let grace = config.shutdown_grace;
    let task = tokio::spawn(serve(
        state,
        api,
        admin,
        async move {
            let _ = stopped.await;
        },
        grace,
    ));
    Ok(Running {
        api: api_addr,
        admin: admin_addr,
        stop: Some(stop),
        task,
    })
}

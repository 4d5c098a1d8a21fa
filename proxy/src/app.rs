//! Wiring: load and validate the config source, bind the listeners, start
//! the watcher, and stop in order. [`start`] returns once every port is
//! bound and the first config is served, so callers (the binary, tests)
//! can send traffic immediately.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{error, info};
use veloflux_store::RedisOptions;

use crate::admin::endpoints::{Admin, SnapshotCollector, SourceStatus};
use crate::admin::metrics::{Metrics, SourceLabels};
use crate::config::Config;
use crate::http::tls::{SniResolver, TlsAcceptor, certified_key, server_config};
use crate::limits::ratelimit::SharedLimits;
use crate::limits::usage::Flusher;
use crate::request::Proxy;
use crate::routing::reload::Reloader;
use crate::routing::snapshot::Store;
use crate::sources::fleet::{Fleet, FleetOptions, default_proxy_id};
use crate::sources::folder::ManifestSource;

/// A running proxy.
#[derive(Debug)]
pub struct Running {
    /// Plain HTTP address.
    pub listen: SocketAddr,
    /// Admin address.
    pub admin: SocketAddr,
    /// HTTPS address.
    pub tls: Option<SocketAddr>,
    /// Demo backends started.
    pub demo_backends: Vec<SocketAddr>,
    /// Applies config changes.
    pub reloader: Arc<Reloader>,
    shutdown: watch::Sender<bool>,
    listeners: Vec<JoinHandle<()>>,
    watcher: JoinHandle<()>,
    fleet: bool,
    sweeper: JoinHandle<()>,
    usage: Option<(watch::Sender<bool>, JoinHandle<()>)>,
}

impl Running {
    /// Stops accepting, drains for the configured grace, and returns when done.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        self.sweeper.abort();
        if self.fleet {
            // The Redis source withdraws its acknowledgement and disconnects.
            let _ = self.watcher.await;
        } else {
            self.watcher.abort();
        }
        for task in self.listeners {
            let _ = task.await;
        }
        // Every request has finished: the last usage flush counts them all.
        if let Some((stop, task)) = self.usage {
            let _ = stop.send(true);
            let _ = task.await;
        }
    }
}

/// Starts the proxy described by `config`.
pub async fn start(config: Config) -> anyhow::Result<Running> {
    config.validate()?;
    let mut metrics = Metrics::new(config.metrics_max_tenants, config.metrics_max_routes);
    let store = Arc::new(Store::default());
    metrics.register_collector(Box::new(SnapshotCollector {
        store: Arc::clone(&store),
    }));
    let metrics = Arc::new(metrics);
    let reloader = Arc::new(Reloader::new(Arc::clone(&store), Arc::clone(&metrics)));
    if !config.rate_limit {
        reloader.limits.disable();
    }
    let admin = Arc::new(Admin {
        store: Arc::clone(&store),
        metrics: Arc::clone(&metrics),
        source: ArcSwap::from_pointee(SourceStatus::default()),
    });

    let mut demo_backends = Vec::new();
    let mut usage = None;
    let source = match (&config.manifests, &config.redis) {
        (Some(dir), _) => {
            let mut source = ManifestSource::new(dir);
            let changes = source
                .load()
                .with_context(|| format!("loading manifests from {}", dir.display()))?;
            if config.demo_backends {
                let addresses =
                    crate::demo::loopback_addresses(source.configs().values().map(|c| &**c));
                demo_backends = crate::demo::start(&addresses)
                    .await
                    .context("starting demo backends")?;
            }
            reloader.apply(changes, "manifests");
            admin.source.store(Arc::new(SourceStatus {
                kind: "manifests",
                location: dir.display().to_string(),
                loaded: true,
                connected: true,
                ..SourceStatus::default()
            }));
            Source::Manifests(Box::new(source))
        }
        (None, Some(url)) => {
            let mut redis = RedisOptions::new(url.clone());
            redis.ca_file.clone_from(&config.redis_ca);
            redis.command_timeout = config.redis_timeout;
            // Rate limits are shared through the same Redis, on their own
            // connection with a short timeout.
            let mut limits = redis.clone();
            limits.command_timeout = config.ratelimit_timeout;
            let limits_client = limits.client().context("rate-limit store")?;
            let _connection = fred::prelude::ClientLike::connect(&limits_client);
            reloader.limits.share(SharedLimits::new(
                limits_client,
                config.ratelimit_timeout,
                &metrics,
            ));
            let proxy_id = config.proxy_id.clone().unwrap_or_else(default_proxy_id);
            let usage_client = redis.client().context("usage store")?;
            let _connection = fred::prelude::ClientLike::connect(&usage_client);
            let flusher = Flusher::new(usage_client, &proxy_id, Arc::clone(&reloader.usage));
            let (stop, stopped) = watch::channel(false);
            usage = Some((
                stop,
                tokio::spawn(flusher.run(config.usage_flush_interval, stopped)),
            ));
            let options = FleetOptions {
                redis,
                proxy_id,
                connect_timeout: config.redis_connect_timeout,
                heartbeat: config.heartbeat_interval,
                state_dir: config.state_dir.clone(),
            };
            let fleet = Fleet::start(options, Arc::clone(&reloader), Arc::clone(&admin))
                .await
                .context("starting the Redis config source")?;
            Source::Fleet(Box::new(fleet))
        }
        (None, None) => anyhow::bail!(crate::config::ConfigError::NoSource),
    };

    let mut default_cert = None;
    let tls_acceptor = match config.tls_listen {
        None => None,
        Some(_) => {
            let files = match (&config.tls_cert, &config.tls_key) {
                (Some(cert), Some(key)) => {
                    let mut files = DefaultCert {
                        cert: cert.clone(),
                        key: key.clone(),
                        stamp: None,
                    };
                    files.stamp = files.stamp();
                    Some(files)
                }
                _ => None,
            };
            let default = match &files {
                Some(files) => Some(files.load().context("default certificate")?),
                None => None,
            };
            let resolver = Arc::new(SniResolver::new(Arc::clone(&store), default));
            default_cert = files.map(|files| (files, Arc::clone(&resolver)));
            Some(TlsAcceptor::from(server_config(resolver)?))
        }
    };

    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    let admin_listener = TcpListener::bind(config.admin_listen)
        .await
        .with_context(|| format!("binding {}", config.admin_listen))?;
    let tls_listener = match config.tls_listen {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding {addr}"))?,
        ),
        None => None,
    };
    let listen = listener.local_addr()?;
    let admin_addr = admin_listener.local_addr()?;
    let tls_addr = tls_listener
        .as_ref()
        .map(TcpListener::local_addr)
        .transpose()?;

    let (shutdown, shutdown_rx) = watch::channel(false);
    let proxy = Arc::new(Proxy::new(
        Arc::clone(&store),
        Arc::clone(&metrics),
        config.access_log,
    ));

    let mut listeners = vec![
        tokio::spawn(crate::http::listener::run(
            listener,
            Arc::clone(&proxy),
            None,
            shutdown_rx.clone(),
            config.shutdown_grace,
        )),
        tokio::spawn(crate::admin::endpoints::run(
            admin_listener,
            Arc::clone(&admin),
            shutdown_rx.clone(),
        )),
    ];
    if let (Some(l), Some(acceptor)) = (tls_listener, tls_acceptor) {
        listeners.push(tokio::spawn(crate::http::listener::run(
            l,
            Arc::clone(&proxy),
            Some(acceptor),
            shutdown_rx,
            config.shutdown_grace,
        )));
    }
    let sweeper = {
        let reloader = Arc::clone(&reloader);
        tokio::spawn(async move {
            tokio::join!(
                Arc::clone(&reloader.limits).sweep_forever(),
                reloader.endpoints.sweep_pools_forever()
            );
        })
    };
    let fleet = matches!(source, Source::Fleet(_));
    let watcher = match source {
        Source::Manifests(source) => tokio::spawn(watch_manifests(
            *source,
            Arc::clone(&reloader),
            admin,
            default_cert,
            config.poll_interval,
        )),
        Source::Fleet(fleet) => {
            let certs = default_cert.map(|(files, resolver)| {
                tokio::spawn(watch_default_cert(files, resolver, config.poll_interval))
            });
            let stop = shutdown.subscribe();
            tokio::spawn(async move {
                fleet.run(stop).await;
                if let Some(certs) = certs {
                    certs.abort();
                }
            })
        }
    };
    info!(listen = %listen, admin = %admin_addr, tls = ?tls_addr, tenants = store.load().tenant_count(), "VeloFlux proxy serving");
    Ok(Running {
        listen,
        admin: admin_addr,
        tls: tls_addr,
        demo_backends,
        reloader,
        shutdown,
        listeners,
        watcher,
        fleet,
        sweeper,
        usage,
    })
}

/// The default certificate's files, reloaded when they change.
#[derive(Debug)]
struct DefaultCert {
    cert: std::path::PathBuf,
    key: std::path::PathBuf,
    stamp: Option<(std::time::SystemTime, std::time::SystemTime)>,
}

impl DefaultCert {
    fn load(&self) -> anyhow::Result<Arc<rustls::sign::CertifiedKey>> {
        let cert = std::fs::read_to_string(&self.cert)
            .with_context(|| format!("reading {}", self.cert.display()))?;
        let key = std::fs::read_to_string(&self.key)
            .with_context(|| format!("reading {}", self.key.display()))?;
        Ok(certified_key(&cert, &key)?)
    }

    fn stamp(&self) -> Option<(std::time::SystemTime, std::time::SystemTime)> {
        let modified = |p: &std::path::Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        Some((modified(&self.cert)?, modified(&self.key)?))
    }

    /// Reloads into `resolver` when either file changed; a bad pair keeps the current one.
    fn refresh(&mut self, resolver: &SniResolver) {
        let stamp = self.stamp();
        if stamp.is_none() || stamp == self.stamp {
            return;
        }
        self.stamp = stamp;
        match self.load() {
            Ok(key) => {
                resolver.set_default(Some(key));
                info!(cert = %self.cert.display(), "Default certificate reloaded");
            }
            Err(err) => error!(
                error = format!("{err:#}"),
                "Default certificate not reloaded; keeping the current one"
            ),
        }
    }
}

/// Where the config comes from.
enum Source {
    Manifests(Box<ManifestSource>),
    Fleet(Box<Fleet>),
}

async fn watch_default_cert(mut files: DefaultCert, resolver: Arc<SniResolver>, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        files.refresh(&resolver);
    }
}

async fn watch_manifests(
    mut source: ManifestSource,
    reloader: Arc<Reloader>,
    admin: Arc<Admin>,
    mut default_cert: Option<(DefaultCert, Arc<SniResolver>)>,
    every: Duration,
) {
    let errors = reloader
        .metrics
        .config_errors
        .get_or_create(&SourceLabels {
            source: "manifests",
        })
        .clone();
    loop {
        tokio::time::sleep(every).await;
        if let Some((files, resolver)) = &mut default_cert {
            files.refresh(resolver);
        }
        // Stat-ing every file (and, after a change, re-resolving the
        // folder) takes tens of milliseconds at 10,000 files: off the
        // threads that serve requests.
        let (returned, polled) = match tokio::task::spawn_blocking(move || {
            let polled = source.poll();
            (source, polled)
        })
        .await
        {
            Ok(done) => done,
            Err(err) => {
                error!(error = %err, "Manifest folder watcher failed; the configuration no longer follows the folder");
                return;
            }
        };
        source = returned;
        match polled {
            Ok(None) => {}
            Ok(Some(changes)) => {
                errors.inc_by(source.new_errors as u64);
                reloader.apply(changes, "manifests");
                let mut status = (**admin.source.load()).clone();
                status.problems.clone_from(&source.problems);
                status.connected = true;
                admin.source.store(Arc::new(status));
            }
            Err(err) => {
                errors.inc();
                error!(error = %err, "Manifest folder unreadable; keeping the last good configuration");
                let mut status = (**admin.source.load()).clone();
                status.connected = false;
                status.problems = vec![err.to_string()];
                admin.source.store(Arc::new(status));
            }
        }
    }
}

//! `veloflux-operator`: reconciles Plan, Tenant and Route objects into the
//! fleet config store and reports their status. See `--help`.
//!
//! Runs in or out of a cluster: kube's standard config loading
//! (`KUBECONFIG`, then the in-cluster service account).

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use tracing::{error, info, warn};
use tracing_subscriber::EnvFilter;
use veloflux_operator::config::{Config, default_identity, pod_namespace};
use veloflux_operator::leader::Election;
use veloflux_operator::metrics::Metrics;
use veloflux_operator::run::{Options, start};
use veloflux_store::RedisOptions;
use veloflux_store::connect::connect;
use veloflux_store::writer::Writer;

fn main() -> ExitCode {
    let config = Config::parse();
    tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_env_filter(EnvFilter::try_new(&config.log).unwrap_or_else(|_| EnvFilter::new("info")))
        .init();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("error: cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        match run(config).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                error!(error = format!("{err:#}"), "Operator failed");
                eprintln!("error: {err:#}");
                ExitCode::FAILURE
            }
        }
    })
}

async fn run(config: Config) -> anyhow::Result<()> {
    let client = kube::Client::try_default().await.map_err(|e| {
        anyhow::anyhow!("no Kubernetes API (KUBECONFIG, then in-cluster config): {e}")
    })?;
    let mut redis = RedisOptions::new(config.redis.clone());
    redis.ca_file.clone_from(&config.redis_ca);
    let redis_client = redis.client()?;
    while let Err(err) = connect(&redis_client, &redis, Duration::from_secs(5)).await {
        warn!(error = %err, "Config store unreachable; retrying");
    }
    let writer = Writer::new(redis_client);
    let metrics = Arc::new(Metrics::new());
    let identity = config.identity.clone().unwrap_or_else(default_identity);
    let namespace = config
        .lease_namespace
        .clone()
        .or_else(pod_namespace)
        .unwrap_or_else(|| "veloflux-system".to_owned());
    let options = Options {
        election: Some(Election {
            namespace,
            name: config.lease_name.clone(),
            identity: identity.clone(),
            duration: Duration::from_secs(15),
            renew: Duration::from_secs(5),
        }),
        debounce: config.debounce,
        resync: config.resync,
        store_check: Duration::from_secs(5),
        identity,
        usage_check: Duration::from_secs(30),
    };
    let handle = start(client, writer, Arc::clone(&metrics), options).await;
    let listener = tokio::net::TcpListener::bind(config.admin_listen).await?;
    info!(admin = %listener.local_addr()?, redis = %redis.redacted_url(), "VeloFlux operator running");
    let admin = tokio::spawn(veloflux_operator::admin::run(
        listener,
        Arc::clone(&handle.health),
        metrics,
    ));
    wait_for_signal().await;
    info!("Stopping");
    admin.abort();
    handle.stop();
    Ok(())
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

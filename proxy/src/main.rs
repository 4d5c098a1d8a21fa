//! `veloflux-proxy`: the VeloFlux data plane. See `veloflux-proxy --help`.

use std::process::ExitCode;

use clap::Parser;
use tracing::{error, info};
use tracing_subscriber::EnvFilter;
use veloflux_proxy::config::Config;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let config = Config::parse();
    tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_env_filter(EnvFilter::try_new(&config.log).unwrap_or_else(|_| EnvFilter::new("info")))
        .init();
    if let Err(err) = config.validate() {
        error!(error = %err, "Invalid configuration");
        eprintln!("error: {err}");
        return ExitCode::from(2);
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
    // One worker: a current-thread runtime (no cross-thread wake-ups), as a
    // one-worker nginx or HAProxy runs; more: the work-stealing runtime.
    let mut runtime = match config.worker_threads {
        Some(1) => tokio::runtime::Builder::new_current_thread(),
        Some(n) => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(n.max(1));
            b
        }
        None => tokio::runtime::Builder::new_multi_thread(),
    };
    runtime.enable_all();
    let runtime = match runtime.build() {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("error: cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let running = match veloflux_proxy::app::start(config).await {
            Ok(running) => running,
            Err(err) => {
                error!(error = format!("{err:#}"), "Startup failed");
                eprintln!("error: {err:#}");
                return ExitCode::FAILURE;
            }
        };
        print_try_lines(&running);
        wait_for_signal().await;
        info!("Shutting down: no new connections; draining in-flight requests");
        running.shutdown().await;
        info!("Stopped");
        ExitCode::SUCCESS
    })
}

/// With demo backends (the quickstart), prints requests to try.
fn print_try_lines(running: &veloflux_proxy::app::Running) {
    if running.demo_backends.is_empty() {
        return;
    }
    let snapshot = running.reloader.store.load();
    let mut hosts: Vec<&str> = snapshot
        .tenants()
        .flat_map(|t| t.hosts.iter().map(|(h, _)| &**h))
        .filter(|h| !h.starts_with('*'))
        .collect();
    hosts.sort_unstable();
    println!(
        "\nVeloFlux is serving {} tenants. Try:",
        snapshot.tenant_count()
    );
    for host in hosts {
        println!("  curl -H 'Host: {host}' http://{}/", running.listen);
    }
    println!("  curl http://{}/metrics", running.admin);
    println!("  curl http://{}/config\n", running.admin);
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

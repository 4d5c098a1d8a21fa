//! `veloflux-api`: the VeloFlux control plane API. See `veloflux-api --help`.

use std::process::ExitCode;

use clap::Parser;
use tracing::{error, info};
use tracing_subscriber::EnvFilter;
use veloflux_api::config::{Command, Config};

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
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = config.worker_threads {
        builder.worker_threads(n.max(1));
    }
    let runtime = match builder.enable_all().build() {
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
                error!(error = format!("{err:#}"), "Failed");
                eprintln!("error: {err:#}");
                ExitCode::FAILURE
            }
        }
    })
}

async fn run(config: Config) -> anyhow::Result<()> {
    match &config.command {
        Some(Command::GenerateKey) => {
            let path = veloflux_api::auth::keys::generate(config.signing_keys_dir())?;
            println!("{}", path.display());
            Ok(())
        }
        Some(Command::PlatformAdmin { action, email }) => {
            platform_admin(&config, action, email).await
        }
        Some(Command::Serve) | None => {
            let running = veloflux_api::app::start(&config).await?;
            info!(api = %running.api, admin = %running.admin, "VeloFlux API running");
            wait_for_signal().await;
            info!("Shutting down: finishing in-flight requests");
            running.stop().await;
            info!("Stopped");
            Ok(())
        }
    }
}

async fn platform_admin(config: &Config, action: &str, email: &str) -> anyhow::Result<()> {
    let mut options = veloflux_store::RedisOptions::new(config.redis_url());
    options.ca_file.clone_from(&config.redis_ca);
    options.command_timeout = config.redis_timeout;
    let client = options.client()?;
    veloflux_store::connect::connect(&client, &options, std::time::Duration::from_secs(5)).await?;
    let people = veloflux_api::people::People::new(client);
    let user = people
        .user_by_email(email)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .ok_or_else(|| anyhow::anyhow!("no person with email {email}"))?;
    let grant = action == "grant";
    people
        .set_platform_admin(&user.id, grant)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    println!(
        "{} is {} a platform admin (from their next token on)",
        user.email,
        if grant { "now" } else { "no longer" }
    );
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

//! Fleet benchmark (not a test): one writer, one `redis-server`, three
//! `veloflux-proxy` processes following it, 10,000 tenants.
//!
//! `cargo bench -p veloflux-proxy --bench fleet -- [TENANTS] [UPDATES]`
//! (defaults 10000 and 1000). Reports:
//! - initial sync: from starting a proxy process to it serving every tenant
//!   (one alone, then two at once);
//! - convergence: for each of UPDATES sequential writes (each adds a host
//!   to one tenant), the time from the write to all three proxies serving
//!   the new host, polled over HTTP: p50 / p90 / p99 / max;
//! - sustained: writers updating tenants as fast as they can; the rate the
//!   fleet absorbs, from the first write to every proxy acknowledging the
//!   last one;
//! - the same convergence measured for nginx (if installed): one server
//!   block per tenant, a changed file and `nginx -s reload` per update.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs,
    clippy::print_stdout
)]

mod common;

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, header};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use veloflux_crds::TenantConfig;
use veloflux_store::RedisOptions;
use veloflux_store::acks;
use veloflux_store::connect::connect;
use veloflux_store::testing::{RedisServer, free_port, tenant_configs};
use veloflux_store::writer::Writer;

type HttpClient = Client<HttpConnector, Empty<Bytes>>;

async fn status(client: &HttpClient, addr: SocketAddr, host: &str, path: &str) -> Option<u16> {
    let req = Request::builder()
        .uri(format!("http://{addr}{path}"))
        .header(header::HOST, host)
        .body(Empty::new())
        .unwrap();
    let resp = client.request(req).await.ok()?;
    let status = resp.status().as_u16();
    let _ = resp.into_body().collect().await;
    Some(status)
}

struct ProxyProcess {
    _child: common::KillOnDrop,
    listen: SocketAddr,
}

fn spawn_proxy(url: &str, id: &str) -> ProxyProcess {
    let listen = SocketAddr::from(([127, 0, 0, 1], free_port().unwrap()));
    let admin = SocketAddr::from(([127, 0, 0, 1], free_port().unwrap()));
    let child = Command::new(env!("CARGO_BIN_EXE_veloflux-proxy"))
        .args(["--redis", url, "--proxy-id", id])
        .args([
            "--listen",
            &listen.to_string(),
            "--admin-listen",
            &admin.to_string(),
        ])
        .args([
            "--access-log",
            "false",
            "--log",
            "warn",
            "--worker-threads",
            "1",
        ])
        .args(["--heartbeat-interval", "500ms"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    ProxyProcess {
        _child: common::KillOnDrop(child),
        listen,
    }
}

/// Waits until the proxy serves `host` (the last tenant loaded).
async fn wait_serving(client: &HttpClient, proxy: &ProxyProcess, host: &str) -> Duration {
    let started = Instant::now();
    loop {
        if status(client, proxy.listen, host, "/").await == Some(200) {
            return started.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn summary(label: &str, mut samples: Vec<Duration>) -> [f64; 4] {
    samples.sort_unstable();
    let figures = [
        ms(percentile(&samples, 0.5)),
        ms(percentile(&samples, 0.9)),
        ms(percentile(&samples, 0.99)),
        ms(*samples.last().unwrap()),
    ];
    println!(
        "{label}: n={} p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        samples.len(),
        figures[0],
        figures[1],
        figures[2],
        figures[3]
    );
    figures
}

/// Puts `configs` with `concurrency` writers; returns how long it took.
async fn put_all(writer: &Writer, configs: Vec<TenantConfig>, concurrency: usize) -> Duration {
    let started = Instant::now();
    let mut shares: Vec<Vec<TenantConfig>> = (0..concurrency).map(|_| Vec::new()).collect();
    for (i, config) in configs.into_iter().enumerate() {
        shares[i % concurrency].push(config);
    }
    let mut tasks = Vec::new();
    for share in shares {
        let writer = writer.clone();
        tasks.push(tokio::spawn(async move {
            let mut last = veloflux_store::StreamId::ZERO;
            for config in share {
                last = last.max(writer.put(&config).await.unwrap().announced);
            }
            last
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    started.elapsed()
}

fn with_host(config: &TenantConfig, host: &str) -> TenantConfig {
    let mut config = config.clone();
    config.domains.push(host.to_owned());
    config.routes[0].hosts.push(host.to_owned());
    config
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let Some(args) = common::bench_args() else {
        return;
    };
    let tenants: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let updates: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(1000);
    let _ = rustls::crypto::ring::default_provider().install_default();

    let redis = RedisServer::start().await.unwrap();
    let backend = common::backend(b"ok").await;
    let options = RedisOptions::new(redis.url());
    let client = options.client().unwrap();
    connect(&client, &options, Duration::from_secs(5))
        .await
        .unwrap();
    let writer = Writer::new(client);
    let http: HttpClient = Client::builder(TokioExecutor::new()).build_http();

    let names: Vec<String> = (0..tenants).map(|i| format!("t{i}")).collect();
    let hosts: Vec<String> = names.iter().map(|n| format!("{n}.bench")).collect();
    let specs: Vec<(&str, [&str; 1], SocketAddr)> = names
        .iter()
        .zip(&hosts)
        .map(|(n, h)| (n.as_str(), [h.as_str()], backend))
        .collect();
    let specs: Vec<(&str, &[&str], SocketAddr)> =
        specs.iter().map(|(n, h, b)| (*n, &h[..], *b)).collect();
    let base = tenant_configs(&specs).unwrap();
    let base: Vec<TenantConfig> = {
        let mut by_name: std::collections::HashMap<String, TenantConfig> =
            base.into_iter().map(|c| (c.tenant.clone(), c)).collect();
        names.iter().map(|n| by_name.remove(n).unwrap()).collect()
    };
    let populate = put_all(&writer, base.clone(), 16).await;
    writer.ensure_epoch().await.unwrap();
    println!(
        "writer: {tenants} tenants written in {:.0} ms ({:.0} tenants/s, 16 concurrent writers)",
        ms(populate),
        tenants as f64 / populate.as_secs_f64()
    );

    // Initial sync: one proxy alone, then two at once.
    let last_host = hosts.last().unwrap().clone();
    let url = redis.url();
    let started = Instant::now();
    let p1 = spawn_proxy(&url, "bench-1");
    wait_serving(&http, &p1, &last_host).await;
    let alone = started.elapsed();
    let started = Instant::now();
    let p2 = spawn_proxy(&url, "bench-2");
    let p3 = spawn_proxy(&url, "bench-3");
    let (d2, d3) = tokio::join!(
        wait_serving(&http, &p2, &last_host),
        wait_serving(&http, &p3, &last_host)
    );
    let pair = started.elapsed().max(d2).max(d3);
    println!(
        "initial sync ({tenants} tenants, process start to serving the last tenant): one proxy {:.0} ms; two at once {:.0} ms",
        ms(alone),
        ms(pair)
    );
    let proxies = [&p1, &p2, &p3];

    // Convergence: write, then poll all three until the new host answers.
    let mut latencies = Vec::with_capacity(updates);
    for n in 0..updates {
        let index = (n * 7919) % tenants;
        let host = format!("u{n}.{}", hosts[index]);
        let config = with_host(&base[index], &host);
        let started = Instant::now();
        writer.put(&config).await.unwrap();
        let polls = proxies.map(|proxy| {
            let (http, host) = (http.clone(), host.clone());
            async move {
                loop {
                    if status(&http, proxy.listen, &host, "/").await == Some(200) {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        });
        let [a, b, c] = polls;
        tokio::join!(a, b, c);
        latencies.push(started.elapsed());
    }
    let convergence = summary(
        "convergence (write to served by all three proxies)",
        latencies,
    );

    // Sustained: every update a real change (the plan's rate changes).
    let batch: Vec<TenantConfig> = (0..tenants.min(5000))
        .map(|i| {
            let mut config = base[(i * 13) % tenants].clone();
            config.plan.requests_per_minute += 1 + i as u32;
            config
        })
        .collect();
    let count = batch.len();
    let started = Instant::now();
    let wrote = put_all(&writer, batch, 16).await;
    let tail = {
        let sync =
            veloflux_store::reader::Reader::new(&options, Duration::from_millis(10)).unwrap();
        sync.connect(&options, Duration::from_secs(5))
            .await
            .unwrap();
        sync.tail().await.unwrap().id
    };
    loop {
        let fleet = acks::read_fleet(writer.client()).await.unwrap();
        let caught_up = fleet.proxies.iter().filter(|p| p.applied >= tail).count();
        if caught_up >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let absorbed = started.elapsed();
    println!(
        "sustained: {count} updates written in {:.0} ms ({:.0}/s); all three proxies applied them within {:.0} ms: {:.0} updates/s absorbed",
        ms(wrote),
        count as f64 / wrote.as_secs_f64(),
        ms(absorbed),
        count as f64 / absorbed.as_secs_f64()
    );
    drop((p1, p2, p3));

    // The peer: nginx with one server block per tenant, reloaded per change.
    match nginx_convergence(&http, backend, &hosts, updates.min(50)).await {
        Some((start, samples)) => {
            println!(
                "nginx: start with {tenants} server blocks to serving the last: {:.0} ms",
                ms(start)
            );
            let nginx = summary(
                "nginx convergence (rewrite + nginx -s reload to served)",
                samples,
            );
            println!(
                "ratio VeloFlux/nginx convergence: p50 {:.3}, p99 {:.3}",
                convergence[0] / nginx[0],
                convergence[2] / nginx[2]
            );
        }
        None => println!("nginx not found on PATH: peer comparison skipped"),
    }
}

fn nginx_conf(
    dir: &Path,
    listen: SocketAddr,
    backend: SocketAddr,
    hosts: &[String],
    extra: &[(usize, String)],
) -> String {
    let mut conf = format!(
        "daemon off;\nmaster_process on;\nworker_processes 1;\npid {dir}/nginx.pid;\nerror_log {dir}/error.log warn;\nevents {{ worker_connections 1024; }}\nhttp {{\n  access_log off;\n  server_names_hash_max_size 65536;\n  server_names_hash_bucket_size 128;\n  upstream app {{ server {backend}; keepalive 16; }}\n  client_body_temp_path {dir}/tmp;\n  proxy_temp_path {dir}/tmp;\n  server {{ listen {listen} default_server; return 404; }}\n",
        dir = dir.display()
    );
    for (i, host) in hosts.iter().enumerate() {
        let mut names = host.clone();
        for (index, added) in extra {
            if *index == i {
                names.push(' ');
                names.push_str(added);
            }
        }
        let _ = writeln!(
            conf,
            "  server {{ listen {listen}; server_name {names}; location / {{ proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection \"\"; }} }}"
        );
    }
    conf.push_str("}\n");
    conf
}

async fn nginx_convergence(
    http: &HttpClient,
    backend: SocketAddr,
    hosts: &[String],
    updates: usize,
) -> Option<(Duration, Vec<Duration>)> {
    let nginx = ["/usr/sbin/nginx", "/usr/bin/nginx"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())?;
    let dir = std::env::temp_dir().join(format!("vf-fleet-nginx-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("tmp")).unwrap();
    let listen = SocketAddr::from(([127, 0, 0, 1], free_port().unwrap()));
    let conf_path = dir.join("nginx.conf");
    let mut extra: Vec<(usize, String)> = Vec::new();
    std::fs::write(&conf_path, nginx_conf(&dir, listen, backend, hosts, &extra)).unwrap();
    let started = Instant::now();
    let mut child = Command::new(&nginx)
        .arg("-p")
        .arg(&dir)
        .arg("-c")
        .arg(&conf_path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let last = hosts.last()?;
    loop {
        if status(http, listen, last, "/").await == Some(200) {
            break;
        }
        if started.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            return None;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let start = started.elapsed();
    let mut samples = Vec::with_capacity(updates);
    for n in 0..updates {
        let index = (n * 7919) % hosts.len();
        let host = format!("u{n}.{}", hosts[index]);
        extra.push((index, host.clone()));
        let started = Instant::now();
        std::fs::write(&conf_path, nginx_conf(&dir, listen, backend, hosts, &extra)).unwrap();
        let reload = Command::new(&nginx)
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(&conf_path)
            .args(["-s", "reload"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .ok()?;
        if !reload.success() {
            break;
        }
        loop {
            if status(http, listen, &host, "/").await == Some(200) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        samples.push(started.elapsed());
    }
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
    (!samples.is_empty()).then_some((start, samples))
}

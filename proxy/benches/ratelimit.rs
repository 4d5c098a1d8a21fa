//! Rate-limit benchmark (not a test): the cost of shared rate limiting.
//!
//! `cargo bench -p veloflux-proxy --bench ratelimit -- [ROUNDS] [SECONDS]`
//! (defaults 3 and 10). One `redis-server`, one tenant whose plan allows
//! far more than the load (100,000,000 requests a minute), a release
//! `veloflux-proxy` following Redis with one worker (pinned to core 0 with
//! `taskset` when available), and `wrk` (64 connections, pinned to core 1).
//! Each round runs the proxy with `--rate-limit false` and `true`, in
//! alternating order from round to round,
//! with a warm-up before each measured window. Reports requests/s of both,
//! the drop, and Redis commands per proxied request counted with
//! `INFO commandstats` over the measured windows.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs,
    clippy::print_stdout
)]

mod common;

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use veloflux_store::RedisOptions;
use veloflux_store::connect::connect;
use veloflux_store::testing::{RedisServer, free_port, tenant_config};
use veloflux_store::writer::Writer;

fn pinned(cpu: &str, program: &str) -> Command {
    if Command::new("taskset").arg("-V").output().is_ok() {
        let mut command = Command::new("taskset");
        command.args(["-c", cpu, program]);
        command
    } else {
        Command::new(program)
    }
}

/// Total command calls in `INFO commandstats`.
async fn commands(redis: &RedisServer) -> u64 {
    let info = redis.command(&["INFO", "commandstats"]).await.unwrap();
    info.lines()
        .filter_map(|l| {
            l.split_once("calls=")?
                .1
                .split(',')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum()
}

/// Runs wrk; returns (requests/s, requests).
fn wrk(addr: SocketAddr, seconds: u64) -> (f64, u64) {
    let output = pinned("1", "wrk")
        .args([
            "-t1",
            "-c64",
            &format!("-d{seconds}s"),
            "-H",
            "Host: acme.test",
        ])
        .arg(format!("http://{addr}/"))
        .output()
        .expect("wrk (Debian package wrk)");
    let text = String::from_utf8_lossy(&output.stdout);
    let rps = text
        .lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0);
    let requests = text
        .lines()
        .find_map(|l| l.trim().split_once(" requests in "))
        .and_then(|(n, _)| n.trim().parse().ok())
        .unwrap_or(0);
    let non_2xx = text.contains("Non-2xx");
    assert!(
        !non_2xx,
        "refused or failed requests during the run:\n{text}"
    );
    (rps, requests)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let rounds: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(3);
    let seconds: u64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(10);

    let redis = RedisServer::start().await.unwrap();
    let backend = common::backend(&[b'x'; 100]).await;
    let options = RedisOptions::new(redis.url());
    let client = options.client().unwrap();
    connect(&client, &options, Duration::from_secs(5))
        .await
        .unwrap();
    let writer = Writer::new(client);
    let mut config = tenant_config("acme", &["acme.test"], backend).unwrap();
    config.plan.requests_per_minute = 100_000_000;
    config.plan.burst = 1_000_000;
    writer.sync_all(&[config]).await.unwrap();

    let mut results: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    let mut per_request: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    for round in 0..rounds {
        // Alternate which mode runs first, so order effects cancel out.
        let order = if round % 2 == 0 {
            [false, true]
        } else {
            [true, false]
        };
        for limiting in order {
            let i = usize::from(limiting);
            let listen = SocketAddr::from(([127, 0, 0, 1], free_port().unwrap()));
            let admin = SocketAddr::from(([127, 0, 0, 1], free_port().unwrap()));
            let _proxy = common::KillOnDrop(
                pinned("0", env!("CARGO_BIN_EXE_veloflux-proxy"))
                    .args(["--redis", &redis.url(), "--proxy-id", "bench"])
                    .args([
                        "--listen",
                        &listen.to_string(),
                        "--admin-listen",
                        &admin.to_string(),
                    ])
                    .args([
                        "--worker-threads",
                        "1",
                        "--access-log",
                        "false",
                        "--log",
                        "warn",
                    ])
                    .args(["--rate-limit", if limiting { "true" } else { "false" }])
                    .stdout(Stdio::null())
                    .spawn()
                    .unwrap(),
            );
            for _ in 0..500 {
                if std::net::TcpStream::connect(listen).is_ok() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            let _ = tokio::task::spawn_blocking(move || wrk(listen, 2)).await;
            let before = commands(&redis).await;
            let (rps, requests) = tokio::task::spawn_blocking(move || wrk(listen, seconds))
                .await
                .unwrap();
            let after = commands(&redis).await;
            // The INFO call itself is one command.
            let calls = after.saturating_sub(before + 1);
            let per = calls as f64 / requests.max(1) as f64;
            println!(
                "round {round} rate limiting {}: {rps:.0} req/s, {requests} requests, {calls} Redis commands ({per:.4} per request)",
                if limiting { "on " } else { "off" }
            );
            results[i].push(rps);
            per_request[i].push(per);
        }
    }
    let (off, on) = (median(results[0].clone()), median(results[1].clone()));
    println!(
        "median req/s: off {off:.0}, on {on:.0}; on/off {:.3} ({:+.1} %)",
        on / off,
        (on / off - 1.0) * 100.0
    );
    println!(
        "Redis commands per proxied request (median): on {:.4}, off {:.4}; rate limiting adds {:.4}",
        median(per_request[1].clone()),
        median(per_request[0].clone()),
        median(per_request[1].clone()) - median(per_request[0].clone())
    );
}

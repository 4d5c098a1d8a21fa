//! Rate-limit benchmark (not a test): the cost of shared rate limiting.
//!
//! `cargo bench -p veloflux-proxy --bench ratelimit -- [ROUNDS] [SECONDS]`
//! (defaults 20 and 3). One `redis-server`, one tenant whose plan allows
//! far more than the load (100,000,000 requests a minute), and two release
//! `veloflux-proxy` processes following Redis, one with `--rate-limit
//! false` and one with `true`, each with one worker, both pinned to core 0
//! (`taskset`). `wrk` (64 connections) and the backend run on core 1. Each
//! round loads the two proxies in turn for SECONDS each, the order
//! alternating from round to round. Reports requests/s of both (medians,
//! the median of the rounds' ratios and the ratio of all requests), the
//! proxies' CPU time per request, and Redis commands per proxied request
//! counted with `INFO commandstats` over the measured windows.

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
fn wrk(addr: SocketAddr, connections: u32, seconds: u64) -> (f64, u64) {
    let output = pinned("1", "wrk")
        .args([
            "-t1",
            &format!("-c{connections}"),
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

/// User + system CPU time of process `pid`, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces): utime is the
    // 12th, stime the 13th.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    field(11) + field(12)
}

fn clock_ticks_per_second() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// The proxy's command line: following `redis`, one worker, no access log.
fn proxy_args(
    redis: &str,
    id: &str,
    limiting: bool,
    listen: SocketAddr,
    admin: SocketAddr,
) -> Vec<String> {
    [
        "--redis",
        redis,
        "--proxy-id",
        id,
        "--listen",
        &listen.to_string(),
        "--admin-listen",
        &admin.to_string(),
        "--worker-threads",
        "1",
        "--access-log",
        "false",
        "--log",
        "warn",
        "--rate-limit",
        if limiting { "true" } else { "false" },
    ]
    .map(str::to_owned)
    .into()
}

/// Instructions the proxy executes per request, counted by callgrind: a
/// figure that does not move with the machine's load. The proxy runs under
/// `valgrind --tool=callgrind`; counters are zeroed after a warm-up, wrk
/// (4 connections) runs for `seconds`, and the dumped total is divided by
/// the requests wrk completed. `None` when valgrind is not installed.
async fn instructions_per_request(redis: &str, limiting: bool, seconds: u64) -> Option<f64> {
    Command::new("callgrind_control").arg("-h").output().ok()?;
    let dir = std::env::temp_dir().join(format!("veloflux-callgrind-{}", std::process::id()));
    std::fs::create_dir_all(&dir).ok()?;
    let out = dir.join(if limiting { "on" } else { "off" });
    let listen = SocketAddr::from(([127, 0, 0, 1], free_port().ok()?));
    let admin = SocketAddr::from(([127, 0, 0, 1], free_port().ok()?));
    let id = if limiting {
        "callgrind-on"
    } else {
        "callgrind-off"
    };
    let proxy = common::KillOnDrop(
        pinned("0", "valgrind")
            .arg("--tool=callgrind")
            .arg(format!("--callgrind-out-file={}", out.display()))
            .arg(env!("CARGO_BIN_EXE_veloflux-proxy"))
            .args(proxy_args(redis, id, limiting, listen, admin))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?,
    );
    for _ in 0..1200 {
        if std::net::TcpStream::connect(listen).is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let pid = proxy.0.id().to_string();
    let control = |what: &str| {
        Command::new("callgrind_control")
            .args([what, &pid])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let _ = tokio::task::spawn_blocking(move || wrk(listen, 4, 2)).await;
    if !control("--zero") {
        return None;
    }
    let (_, requests) = tokio::task::spawn_blocking(move || wrk(listen, 4, seconds))
        .await
        .ok()?;
    if !control("--dump") {
        return None;
    }
    let dumped = out.with_file_name(format!("{}.1", out.file_name()?.to_string_lossy()));
    let mut total = None;
    for _ in 0..100 {
        total = std::fs::read_to_string(&dumped).ok().and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("totals: "))
                .and_then(|v| v.trim().parse::<u64>().ok())
        });
        if total.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(proxy);
    let _ = std::fs::remove_dir_all(&dir);
    Some(total? as f64 / requests.max(1) as f64)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let Some(args) = common::bench_args() else {
        return;
    };
    let rounds: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(20);
    let seconds: u64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(3);

    // This process (the backend, and wrk's waiting threads) on core 1,
    // away from the proxy on core 0.
    let _ = Command::new("taskset")
        .args(["-pc", "1", &std::process::id().to_string()])
        .stdout(Stdio::null())
        .status();
    let tck = clock_ticks_per_second();

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

    // Both proxies run for the whole benchmark and are loaded in turn, in
    // short windows: the machine's speed drifts over tens of seconds, and
    // pairing neighbouring windows cancels the drift out.
    let proxies: Vec<(common::KillOnDrop, SocketAddr)> = [false, true]
        .into_iter()
        .map(|limiting| {
            let listen = SocketAddr::from(([127, 0, 0, 1], free_port().unwrap()));
            let admin = SocketAddr::from(([127, 0, 0, 1], free_port().unwrap()));
            let id = if limiting { "bench-on" } else { "bench-off" };
            let child = pinned("0", env!("CARGO_BIN_EXE_veloflux-proxy"))
                .args(proxy_args(&redis.url(), id, limiting, listen, admin))
                .stdout(Stdio::null())
                .spawn()
                .unwrap();
            (common::KillOnDrop(child), listen)
        })
        .collect();
    for (_, listen) in &proxies {
        let listen = *listen;
        for _ in 0..500 {
            if std::net::TcpStream::connect(listen).is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let _ = tokio::task::spawn_blocking(move || wrk(listen, 64, 2)).await;
    }

    let mut results: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    let mut per_request: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    let mut cpu: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    let mut totals = [0u64; 2];
    let mut ratios = Vec::new();
    for round in 0..rounds {
        // Alternate which mode runs first, so order effects cancel out.
        let order = if round % 2 == 0 {
            [false, true]
        } else {
            [true, false]
        };
        for limiting in order {
            let i = usize::from(limiting);
            let (proxy, listen) = &proxies[i];
            let listen = *listen;
            let before = commands(&redis).await;
            let ticks = cpu_ticks(proxy.0.id());
            let (rps, requests) = tokio::task::spawn_blocking(move || wrk(listen, 64, seconds))
                .await
                .unwrap();
            let ticks = cpu_ticks(proxy.0.id()) - ticks;
            let after = commands(&redis).await;
            // The INFO call itself is one command.
            let calls = after.saturating_sub(before + 1);
            let per = calls as f64 / requests.max(1) as f64;
            let cpu_us = ticks as f64 / tck * 1e6 / requests.max(1) as f64;
            println!(
                "round {round} rate limiting {}: {rps:.0} req/s, {requests} requests, proxy CPU {cpu_us:.2} µs/request, {calls} Redis commands ({per:.4} per request)",
                if limiting { "on " } else { "off" }
            );
            results[i].push(rps);
            per_request[i].push(per);
            cpu[i].push(cpu_us);
            totals[i] += requests;
        }
        ratios.push(results[1][round] / results[0][round]);
    }
    let (off, on) = (median(results[0].clone()), median(results[1].clone()));
    println!(
        "median req/s: off {off:.0}, on {on:.0}; on/off {:.3} ({:+.1} %)",
        on / off,
        (on / off - 1.0) * 100.0
    );
    println!(
        "median of the rounds' on/off ratios: {:.3}; all requests on/off: {:.3}",
        median(ratios.clone()),
        totals[1] as f64 / totals[0].max(1) as f64
    );
    let (cpu_off, cpu_on) = (median(cpu[0].clone()), median(cpu[1].clone()));
    println!(
        "median proxy CPU per request: off {cpu_off:.2} µs, on {cpu_on:.2} µs; on/off {:.3}",
        cpu_on / cpu_off
    );
    println!(
        "Redis commands per proxied request (median): on {:.4}, off {:.4}; rate limiting adds {:.4}",
        median(per_request[1].clone()),
        median(per_request[0].clone()),
        median(per_request[1].clone()) - median(per_request[0].clone())
    );
    let mut counted = [None, None];
    for limiting in [false, true] {
        counted[usize::from(limiting)] = instructions_per_request(&redis.url(), limiting, 5).await;
    }
    match counted {
        [Some(off), Some(on)] => println!(
            "instructions per request (callgrind): off {off:.0}, on {on:.0}; on/off {:.3} ({:+.1} %)",
            on / off,
            (on / off - 1.0) * 100.0
        ),
        _ => println!(
            "instructions per request: not counted (valgrind's callgrind_control not found)"
        ),
    }
}

//! Scale benchmark (not a test): many tenants served from a manifest folder.
//!
//! `cargo bench -p veloflux-proxy --bench scale -- [TENANTS] [ROUTES_PER_TENANT]`
//! (defaults 10000 and 1). Each tenant gets its own file, domain and
//! two-backend pool. Reports cold start (folder read, resolve, compile,
//! listeners bound), resident memory, host lookup time, the time to compile
//! and swap in one changed tenant, and the end-to-end time from rewriting
//! one tenant's file to the change being served.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs,
    clippy::print_stdout
)]
#![allow(
    clippy::disallowed_methods,
    reason = "the benchmark's driver waits on a plain thread, outside any runtime"
)]

mod common;

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use veloflux_proxy::routing::router::{BuildContext, build_tenant};
use veloflux_proxy::routing::snapshot::normalize_host;

fn tenant_file(i: usize, routes: usize, version: usize) -> String {
    let mut text = format!(
        "apiVersion: veloflux.io/v1alpha1\nkind: Tenant\nmetadata: {{name: t{i}}}\nspec:\n  planRef: pro\n  domains: [\"*.t{i}.example\"]\n  namespaces: [t{i}]\n"
    );
    for r in 0..routes {
        let port = 20000 + (i * 2 + r) % 20000;
        let _ = write!(
            text,
            "---\napiVersion: veloflux.io/v1alpha1\nkind: Route\nmetadata: {{name: r{r}, namespace: t{i}}}\nspec:\n  tenantRef: t{i}\n  hosts: [\"r{r}.t{i}.example\"]\n  backends:\n    - {{name: a, address: \"127.0.0.1:{port}\", weight: {w}}}\n    - {{name: b, address: \"127.0.0.2:{port}\"}}\n",
            w = 1 + version
        );
    }
    text
}

fn main() {
    let Some(args) = common::bench_args() else {
        return;
    };
    let tenants: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let routes: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(1);
    let dir = std::env::temp_dir().join(format!("vf-scale-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("00-plan.yaml"),
        "apiVersion: veloflux.io/v1alpha1\nkind: Plan\nmetadata: {name: pro}\nspec:\n  limits: {requestsPerMinute: 6000, burst: 100, maxRoutes: 1000, maxBackendsPerRoute: 8, maxDomains: 4}\n  features: {staticBackends: true}\n",
    )
    .unwrap();
    for i in 0..tenants {
        std::fs::write(dir.join(format!("t{i:06}.yaml")), tenant_file(i, routes, 0)).unwrap();
    }

    // Process-level figures from the real binary: cold start to ready, memory.
    let proxy = start_proxy(&[
        "--manifests",
        dir.to_str().unwrap(),
        "--poll-interval",
        "100ms",
    ]);
    let cold_start = proxy.ready;
    let rss_at_ready = proxy.memory_mib("VmRSS:");
    // Settled: the allocator returns pages freed by the load after a delay.
    std::thread::sleep(Duration::from_secs(2));
    let (rss, peak) = (proxy.memory_mib("VmRSS:"), proxy.memory_mib("VmHWM:"));
    let listen = proxy.listen;

    // End to end: rewrite one tenant's file (new host) until the proxy serves it.
    let changed = tenants / 2;
    let t = Instant::now();
    let text = tenant_file(changed, routes, 7).replace(
        &format!("r0.t{changed}.example\""),
        &format!("new.t{changed}.example\""),
    );
    std::fs::write(dir.join(format!("t{changed:06}.yaml")), text).unwrap();
    let new_host = format!("new.t{changed}.example");
    while http_get(listen, &new_host, "/").is_none_or(|(status, _)| status == 404) {
        std::thread::sleep(Duration::from_millis(1));
    }
    let file_to_served = t.elapsed();
    drop(proxy);
    // Put the file back: the in-process figures below look up every tenant's
    // original hosts, and the changed tenant no longer serves `r0`.
    std::fs::write(
        dir.join(format!("t{changed:06}.yaml")),
        tenant_file(changed, routes, 0),
    )
    .unwrap();

    println!(
        "tenants={tenants} routes={} ({} documents)",
        tenants * routes,
        tenants * (routes + 1) + 1
    );
    println!(
        "binary: cold_start_to_ready_ms={:.0} rss_mib={rss:.0} (at ready {rss_at_ready:.0}) peak_rss_mib={peak:.0}",
        cold_start.as_secs_f64() * 1000.0
    );
    println!(
        "binary: file_write_to_served_ms={:.0} (includes the 100 ms poll and re-resolving the changed tenant)",
        file_to_served.as_secs_f64() * 1000.0
    );

    // In-process figures: phases, lookup and apply costs.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let t = Instant::now();
        let mut source = veloflux_proxy::sources::folder::ManifestSource::new(&dir);
        let changes = source.load().unwrap();
        let load_ms = t.elapsed().as_secs_f64() * 1000.0;
        let reloader = veloflux_proxy::routing::reload::Reloader::new(
            Arc::new(veloflux_proxy::routing::snapshot::Store::default()),
            Arc::new(veloflux_proxy::admin::metrics::Metrics::new(1000, 10_000)),
        );
        let t = Instant::now();
        reloader.apply(changes, "manifests");
        let compile_ms = t.elapsed().as_secs_f64() * 1000.0;
        let snapshot = reloader.store.load();
        assert_eq!(snapshot.tenant_count(), tenants);
        println!(
            "phases: read+parse+resolve_folder_ms={load_ms:.0} compile+swap_all_ms={compile_ms:.0}"
        );

        // The fleet path: compiled JSON documents (what a proxy reads from the
        // config store) parsed and compiled into a fresh table.
        let docs: Vec<String> = snapshot
            .tenants()
            .map(|t| t.config.to_json().unwrap())
            .collect();
        let fresh = veloflux_proxy::routing::reload::Reloader::new(
            Arc::new(veloflux_proxy::routing::snapshot::Store::default()),
            Arc::new(veloflux_proxy::admin::metrics::Metrics::new(1000, 10_000)),
        );
        let t = Instant::now();
        let changes: Vec<_> = docs
            .iter()
            .map(|d| {
                let c = veloflux_crds::TenantConfig::from_json(d).unwrap();
                (c.tenant.clone(), Some(Arc::new(c)))
            })
            .collect();
        fresh.apply(changes, "manifests");
        println!(
            "phases: start_from_compiled_json_ms={:.0}",
            t.elapsed().as_secs_f64() * 1000.0
        );
        drop(fresh);

        // The fleet path as a process: the same compiled configs written to
        // Redis, one proxy started from it, measured to ready.
        let (fleet_ms, fleet_rss) = fleet_start(&docs).await;
        println!("binary from redis: cold_start_to_ready_ms={fleet_ms:.0} rss_mib={fleet_rss:.0}");

        // Host lookups: normalise + exact-or-wildcard lookup, as a request does.
        let hosts: Vec<String> = (0..4096)
            .map(|k| format!("R{}.t{}.example", k % routes, (k * 7919) % tenants))
            .collect();
        let lookups = 2_000_000;
        let t = Instant::now();
        let mut found = 0usize;
        for k in 0..lookups {
            let mut buf = [0u8; 255];
            let host = normalize_host(&hosts[k % hosts.len()], &mut buf).unwrap();
            found += usize::from(snapshot.host(host).is_some());
        }
        let lookup_ns = t.elapsed().as_nanos() as f64 / lookups as f64;
        assert_eq!(found, lookups);

        // One tenant changed: compile + swap, measured directly.
        let id = format!("t{}", tenants / 3);
        let mut apply_us = Vec::new();
        for version in 1..=500u32 {
            let mut config = (*snapshot.tenant(&id).unwrap().config).clone();
            config.revision += u64::from(version);
            config.routes[0].backends[0].weight = 1 + version;
            let t = Instant::now();
            let ctx = BuildContext {
                endpoints: &reloader.endpoints,
                limits: &reloader.limits,
                usage: &reloader.usage,
                metrics: &reloader.metrics,
            };
            let rt = Arc::new(build_tenant(Arc::new(config), ctx).unwrap());
            reloader.store.set_tenant(&id, Some(rt));
            apply_us.push(t.elapsed().as_secs_f64() * 1e6);
        }
        apply_us.sort_by(f64::total_cmp);
        println!("host_lookup_ns={lookup_ns:.0}");
        println!(
            "one_tenant_compile_and_swap_us p50={:.0} p99={:.0} max={:.0}",
            apply_us[apply_us.len() / 2],
            apply_us[apply_us.len() * 99 / 100],
            apply_us[apply_us.len() - 1]
        );
    });
    let _ = std::fs::remove_dir_all(&dir);
}

/// Writes `docs` (compiled configs as JSON) to a fresh `redis-server`, starts
/// one proxy on it, and returns the time to `/readyz` and the proxy's RSS
/// once settled (2 s later).
async fn fleet_start(docs: &[String]) -> (f64, f64) {
    use veloflux_store::RedisOptions;
    use veloflux_store::testing::RedisServer;
    use veloflux_store::writer::Writer;

    let redis = RedisServer::start().await.unwrap();
    let options = RedisOptions::new(redis.url());
    let client = options.client().unwrap();
    veloflux_store::connect::connect(&client, &options, Duration::from_secs(5))
        .await
        .unwrap();
    let writer = Writer::new(client);
    let configs: Vec<veloflux_crds::TenantConfig> = docs
        .iter()
        .map(|d| veloflux_crds::TenantConfig::from_json(d).unwrap())
        .collect();
    let mut tasks = Vec::new();
    for share in configs.chunks(configs.len().div_ceil(16)) {
        let (writer, share) = (writer.clone(), share.to_vec());
        tasks.push(tokio::spawn(async move {
            for config in &share {
                writer.put(config).await.unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    writer.ensure_epoch().await.unwrap();

    let proxy = start_proxy(&["--redis", &redis.url(), "--proxy-id", "scale"]);
    // Settled, as for the folder start.
    tokio::time::sleep(Duration::from_secs(2)).await;
    (
        proxy.ready.as_secs_f64() * 1000.0,
        proxy.memory_mib("VmRSS:"),
    )
}

/// A release `veloflux-proxy` process, ready; killed when dropped.
struct Proxy {
    child: common::KillOnDrop,
    listen: u16,
    /// Time from spawning to `/readyz` answering 200.
    ready: Duration,
}

impl Proxy {
    /// A memory figure of `/proc/PID/status` (`VmRSS:`, `VmHWM:`), in MiB.
    fn memory_mib(&self, field: &str) -> f64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.child.0.id()))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    }
}

/// Starts the proxy on `source` (its config-source flags) on free ports,
/// access log off, and waits until `/readyz` answers 200.
fn start_proxy(source: &[&str]) -> Proxy {
    use veloflux_store::testing::free_port;
    let (listen, admin) = (free_port().unwrap(), free_port().unwrap());
    let started = Instant::now();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_veloflux-proxy"))
        .args(source)
        .args(["--access-log", "false", "--log", "warn"])
        .args([
            "--listen",
            &format!("127.0.0.1:{listen}"),
            "--admin-listen",
            &format!("127.0.0.1:{admin}"),
        ])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let child = common::KillOnDrop(child);
    while http_get(admin, "admin", "/readyz").is_none_or(|(status, _)| status != 200) {
        std::thread::sleep(Duration::from_millis(5));
    }
    Proxy {
        child,
        listen,
        ready: started.elapsed(),
    }
}

/// A minimal HTTP/1.1 GET over a fresh connection: `(status, body)`.
fn http_get(port: u16, host: &str, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut tcp = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    write!(
        tcp,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    tcp.read_to_string(&mut out).ok()?;
    let status = out.split(' ').nth(1)?.parse().ok()?;
    Some((status, out))
}

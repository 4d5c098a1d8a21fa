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

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use veloflux_proxy::config::Config;
use veloflux_proxy::router::{BuildContext, build_tenant};
use veloflux_proxy::snapshot::normalize_host;

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

fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
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
    let rss_before = rss_mib();

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let config = Config {
            manifests: Some(dir.clone()),
            listen: "127.0.0.1:0".parse().unwrap(),
            admin_listen: "127.0.0.1:0".parse().unwrap(),
            tls_listen: None,
            tls_cert: None,
            tls_key: None,
            redis: None,
            state_dir: None,
            demo_backends: false,
            access_log: false,
            log: "warn".into(),
            shutdown_grace: Duration::from_secs(1),
            poll_interval: Duration::from_millis(100),
            metrics_max_tenants: 1000,
            metrics_max_routes: 10_000,
            worker_threads: Some(1),
        };
        // Phases, measured apart: read + parse + resolve the folder.
        let t = Instant::now();
        let mut probe = veloflux_proxy::source::ManifestSource::new(&dir);
        let probe_changes = probe.load().unwrap();
        let load_ms = t.elapsed().as_secs_f64() * 1000.0;
        let t = Instant::now();
        let docs: usize = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
            .map(|text| veloflux_crds::manifest::documents(std::path::Path::new("x"), &text).unwrap().len())
            .sum();
        let yaml_ms = t.elapsed().as_secs_f64() * 1000.0;
        drop((probe, probe_changes));
        println!("phase_load_folder_ms={load_ms:.1} (of which reading + YAML parsing {yaml_ms:.1} for {docs} documents)");

        let started = Instant::now();
        let running = veloflux_proxy::app::start(config).await.unwrap();
        let cold_start = started.elapsed();
        let snapshot = running.reloader.store.load();
        assert_eq!(snapshot.tenant_count(), tenants);
        let rss = rss_mib();

        // The fleet path: start from compiled JSON documents (what a proxy reads
        // from the config store), parse and compile them into a fresh table.
        let docs: Vec<String> = snapshot.tenants().map(|t| t.config.to_json().unwrap()).collect();
        let t = Instant::now();
        let fresh = veloflux_proxy::reload::Reloader::new(
            Arc::new(veloflux_proxy::snapshot::Store::default()),
            Arc::new(veloflux_proxy::metrics::Metrics::new(1000, 10_000)),
        );
        let changes: Vec<_> = docs
            .iter()
            .map(|d| {
                let c = veloflux_crds::TenantConfig::from_json(d).unwrap();
                (c.tenant.clone(), Some(Arc::new(c)))
            })
            .collect();
        fresh.apply(changes, "manifests");
        let json_start_ms = t.elapsed().as_secs_f64() * 1000.0;
        assert_eq!(fresh.store.load().tenant_count(), tenants);
        drop(fresh);

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
        let changed = tenants / 2;
        let mut apply_us = Vec::new();
        for version in 1..=500 {
            let mut config = (*snapshot.tenant(&format!("t{changed}")).unwrap().config).clone();
            config.revision += version;
            config.routes[0].backends[0].weight = 1 + version as u32;
            let config = Arc::new(config);
            let t = Instant::now();
            let r = &running.reloader;
            let ctx = BuildContext {
                endpoints: &r.endpoints,
                metrics: &r.metrics,
                clients: &r.clients,
            };
            let rt = Arc::new(build_tenant(config, ctx).unwrap());
            r.store.set_tenant(&format!("t{changed}"), Some(rt));
            apply_us.push(t.elapsed().as_secs_f64() * 1e6);
        }
        apply_us.sort_by(f64::total_cmp);

        // End to end: rewrite one tenant's file until the change is served.
        let before = running
            .reloader
            .store
            .load()
            .tenant(&format!("t{changed}"))
            .unwrap()
            .config
            .revision;
        let t = Instant::now();
        std::fs::write(
            dir.join(format!("t{changed:06}.yaml")),
            tenant_file(changed, routes, 7),
        )
        .unwrap();
        loop {
            if running
                .reloader
                .store
                .load()
                .tenant(&format!("t{changed}"))
                .unwrap()
                .config
                .revision
                != before
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let file_to_served = t.elapsed();
        let reload_hist = running.reloader.metrics.encode().unwrap();
        let last_reload = reload_hist
            .lines()
            .find(|l| l.starts_with("veloflux_config_reload_duration_seconds_sum"))
            .unwrap_or("")
            .to_owned();

        println!(
            "tenants={tenants} routes={} hosts={}",
            tenants * routes,
            snapshot.host_count()
        );
        println!("cold_start_ms={:.1} (from the YAML folder)", cold_start.as_secs_f64() * 1000.0);
        println!("cold_start_from_compiled_json_ms={json_start_ms:.1}");
        println!("rss_mib={rss:.1} (before start {rss_before:.1})");
        println!("host_lookup_ns={lookup_ns:.1}");
        println!(
            "one_tenant_apply_us p50={:.1} p99={:.1} max={:.1}",
            apply_us[apply_us.len() / 2],
            apply_us[apply_us.len() * 99 / 100],
            apply_us[apply_us.len() - 1]
        );
        println!(
            "file_write_to_served_ms={:.1} (poll interval 100 ms + re-resolving the folder)",
            file_to_served.as_secs_f64() * 1000.0
        );
        println!("{last_reload}");
        running.shutdown().await;
    });
    let _ = std::fs::remove_dir_all(&dir);
}

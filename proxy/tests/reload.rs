//! Hot reload from the manifest folder: 50 reloads under continuous load
//! with no failed request, only the changed tenant is rebuilt, and a broken
//! file never replaces a working config.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use support::*;

async fn revision(admin: std::net::SocketAddr, tenant: &str) -> u64 {
    let config: serde_json::Value =
        serde_json::from_str(&get(&client(), admin, "admin", "/config").await.body).unwrap();
    config["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["tenant"] == tenant)
        .map_or(0, |t| t["revision"].as_u64().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_reloads_under_load_drop_no_request() {
    let backends = [
        Backend::start("a").await,
        Backend::start("b").await,
        Backend::start("c").await,
    ];
    let folder = Folder::new("reload");
    folder.write("00-tenants.yaml", &plan_and_tenant());
    folder.write(
        "route.yaml",
        &route(
            "web",
            "web.acme.test",
            &[&backends[0], &backends[1]],
            "roundRobin",
            "",
        ),
    );
    let proxy = start_proxy(folder.path()).await;

    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let mut load = Vec::new();
    for _ in 0..8 {
        let (stop, ok, failed, addr) = (
            Arc::clone(&stop),
            Arc::clone(&ok),
            Arc::clone(&failed),
            proxy.listen,
        );
        load.push(tokio::spawn(async move {
            let c = client();
            while !stop.load(Ordering::Relaxed) {
                let got = get(&c, addr, "web.acme.test", "/").await;
                if got.status == 200 {
                    ok.fetch_add(1, Ordering::Relaxed)
                } else {
                    failed.fetch_add(1, Ordering::Relaxed)
                };
            }
        }));
    }
    for i in 0..50u64 {
        // Alternate the backend set and the algorithm: every step is a real change.
        let set: Vec<&Backend> = match i % 3 {
            0 => vec![&backends[1], &backends[2]],
            1 => vec![&backends[0], &backends[2]],
            _ => vec![&backends[0], &backends[1], &backends[2]],
        };
        let algorithm = if i % 2 == 0 {
            "leastConn"
        } else {
            "roundRobin"
        };
        folder.write(
            "route.yaml",
            &route("web", "web.acme.test", &set, algorithm, ""),
        );
        let want = i + 2;
        assert!(
            eventually(Duration::from_secs(5), async || revision(
                proxy.admin,
                "acme"
            )
            .await
                >= want)
            .await,
            "reload {i} not applied"
        );
    }
    stop.store(true, Ordering::Relaxed);
    for t in load {
        t.await.unwrap();
    }
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    assert_eq!(failed, 0, "{failed} failed of {}", ok + failed);
    assert!(ok > 500, "only {ok} requests ran during the reloads");
    assert_eq!(
        revision(proxy.admin, "globex").await,
        1,
        "the untouched tenant was not rebuilt"
    );
    proxy.shutdown().await;
}

#[tokio::test]
async fn a_broken_file_keeps_the_last_good_config_and_is_reported() {
    let a = Backend::start("a").await;
    let folder = Folder::new("broken");
    folder.write("00-tenants.yaml", &plan_and_tenant());
    folder.write(
        "route.yaml",
        &route("web", "web.acme.test", &[&a], "roundRobin", ""),
    );
    let proxy = start_proxy(folder.path()).await;
    let c = client();
    assert_eq!(
        get(&c, proxy.listen, "web.acme.test", "/").await.status,
        200
    );

    folder.write("route.yaml", "apiVersion: veloflux.io/v1alpha1\nkind: Route\nmetadata: {name: web, namespace: acme}\nspec: {hosts: [oops\n");
    let admin = proxy.admin;
    assert!(
        eventually(Duration::from_secs(5), async || {
            get(&client(), admin, "admin", "/readyz")
                .await
                .body
                .contains("route.yaml")
        })
        .await,
        "the broken file is not reported in /readyz"
    );
    assert_eq!(
        get(&c, proxy.listen, "web.acme.test", "/").await.status,
        200,
        "the last good route still serves"
    );
    let metrics = get(&c, admin, "admin", "/metrics").await.body;
    assert!(
        metrics.contains("veloflux_config_errors_total{source=\"manifests\"} 1"),
        "{metrics}"
    );

    // Fixing the file applies it.
    folder.write(
        "route.yaml",
        &route("web", "web2.acme.test", &[&a], "roundRobin", ""),
    );
    let p = proxy.listen;
    assert!(
        eventually(Duration::from_secs(5), async || get(
            &client(),
            p,
            "web2.acme.test",
            "/"
        )
        .await
        .status
            == 200)
        .await
    );
    assert_eq!(get(&c, p, "web.acme.test", "/").await.status, 404);
    proxy.shutdown().await;
}

#[tokio::test]
async fn an_invalid_first_load_fails_before_binding() {
    let folder = Folder::new("invalid-start");
    folder.write(
        "bad.yaml",
        "apiVersion: veloflux.io/v1alpha1\nkind: Plan\nmetadata: {name: p}\nspec: {}\n",
    );
    let err = veloflux_proxy::app::start(config(folder.path()))
        .await
        .unwrap_err();
    let text = format!("{err:#}");
    assert!(
        text.contains("bad.yaml") && text.contains("limits"),
        "{text}"
    );
}

#[tokio::test]
async fn deleting_a_file_removes_its_objects_and_a_conflicting_file_is_refused() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let folder = Folder::new("files");
    folder.write("00-tenants.yaml", &plan_and_tenant());
    folder.write(
        "one.yaml",
        &route("web", "web.acme.test", &[&a], "roundRobin", ""),
    );
    folder.write(
        "two.yaml",
        &route("api", "api.acme.test", &[&b], "roundRobin", ""),
    );
    let proxy = start_proxy(folder.path()).await;
    let (p, admin) = (proxy.listen, proxy.admin);
    assert_eq!(get(&client(), p, "api.acme.test", "/").await.status, 200);

    // A second file defining Route acme/web again is refused; the first keeps serving.
    folder.write(
        "three.yaml",
        &route("web", "other.acme.test", &[&b], "roundRobin", ""),
    );
    assert!(
        eventually(Duration::from_secs(5), async || {
            get(&client(), admin, "admin", "/readyz")
                .await
                .body
                .contains("defined twice")
        })
        .await
    );
    assert_eq!(
        backend_of(&get(&client(), p, "web.acme.test", "/").await),
        "a"
    );
    assert_eq!(get(&client(), p, "other.acme.test", "/").await.status, 404);

    // Deleting a file removes what it defined.
    std::fs::remove_file(folder.path().join("two.yaml")).unwrap();
    assert!(
        eventually(Duration::from_secs(5), async || get(
            &client(),
            p,
            "api.acme.test",
            "/"
        )
        .await
        .status
            == 404)
        .await
    );
    assert_eq!(get(&client(), p, "web.acme.test", "/").await.status, 200);
    proxy.shutdown().await;
}

/// A start (or full resync) of many tenants compiles them on every core;
/// metric labels are still handed out in change order, up to the cap, and
/// every tenant serves.
#[test]
fn many_tenants_compile_in_parallel_with_labels_in_change_order() {
    use veloflux_proxy::admin::metrics::Metrics;
    use veloflux_proxy::routing::reload::Reloader;
    use veloflux_proxy::routing::snapshot::Store;

    let backend: std::net::SocketAddr = "127.0.0.1:9".parse().unwrap();
    let names: Vec<String> = (0..600).map(|i| format!("t{i:03}")).collect();
    let hosts: Vec<[String; 1]> = names.iter().map(|n| [format!("{n}.test")]).collect();
    let host_refs: Vec<[&str; 1]> = hosts.iter().map(|[h]| [h.as_str()]).collect();
    let specs: Vec<(&str, &[&str], std::net::SocketAddr)> = names
        .iter()
        .zip(&host_refs)
        .map(|(n, h)| (n.as_str(), &h[..], backend))
        .collect();
    let mut configs = veloflux_store::testing::tenant_configs(&specs).unwrap();
    // Change order: reverse name order, so the cap must follow it.
    configs.sort_by(|a, b| b.tenant.cmp(&a.tenant));
    let changes: Vec<_> = configs
        .into_iter()
        .map(|c| (c.tenant.clone(), Some(Arc::new(c))))
        .collect();

    let reloader = Reloader::new(
        Arc::new(Store::default()),
        Arc::new(Metrics::new(100, 10_000)),
    );
    let report = reloader.apply(changes, "manifests");
    assert_eq!(report.applied.len(), 600);
    assert!(report.refused.is_empty());
    let snapshot = reloader.store.load();
    assert_eq!(snapshot.tenant_count(), 600);
    for (i, name) in names.iter().enumerate() {
        let tenant = snapshot.tenant(name).unwrap();
        // The first 100 in change order (t599 down to t500) keep their names.
        let expected = if i >= 500 { name.as_str() } else { "other" };
        assert_eq!(&*tenant.label, expected, "{name}");
        assert!(snapshot.host(&format!("{name}.test")).is_some(), "{name}");
    }
}

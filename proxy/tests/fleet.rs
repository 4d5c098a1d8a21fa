//! The proxy following a real Redis config store: initial sync, follow,
//! delete, gaps, Redis killed under load, restarted empty, started while
//! Redis is down, newer schemas, acknowledgements, and a 3-node Cluster.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use support::*;
use tokio::task::JoinHandle;
use veloflux_crds::TenantConfig;
use veloflux_proxy::app::{Running, start};
use veloflux_proxy::config::Config;
use veloflux_store::acks;
use veloflux_store::testing::{RedisCluster, RedisServer, tenant_config};
use veloflux_store::writer::EpochCheck;

const WAIT: Duration = Duration::from_secs(15);

fn fleet_config_in(url: &str, id: &str, state_dir: Option<&Path>) -> Config {
    let mut config = fleet_config(url, id);
    config.state_dir = state_dir.map(Path::to_path_buf);
    config
}

async fn start_fleet_proxy(url: &str, id: &str) -> Running {
    start(fleet_config(url, id)).await.unwrap()
}

fn tenant(name: &str, hosts: &[&str], backend: &Backend) -> TenantConfig {
    tenant_config(name, hosts, backend.addr).unwrap()
}

/// The backend serving `host` through the proxy, or the status when none does.
async fn served(proxy: &Running, host: &str) -> Result<String, u16> {
    let got = get(&client(), proxy.listen, host, "/").await;
    if got.status == 200 {
        Ok(backend_of(&got).to_owned())
    } else {
        Err(got.status)
    }
}

async fn serves(proxy: &Running, host: &str, backend: &str) -> bool {
    eventually(WAIT, async || {
        served(proxy, host).await.as_deref() == Ok(backend)
    })
    .await
}

async fn readyz(proxy: &Running) -> serde_json::Value {
    serde_json::from_str(&get(&client(), proxy.admin, "admin", "/readyz").await.body).unwrap()
}

/// The value of the first sample of `name` (exact series text, labels included).
async fn metric(proxy: &Running, series: &str) -> Option<f64> {
    let text = get(&client(), proxy.admin, "admin", "/metrics").await.body;
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// Clients sending requests to `host` in a loop, counting failures.
struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicUsize>,
    failed: Arc<AtomicUsize>,
    tasks: Vec<JoinHandle<()>>,
}

impl Load {
    fn start(proxy: &Running, host: &'static str, workers: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicUsize::new(0));
        let failed = Arc::new(AtomicUsize::new(0));
        let tasks = (0..workers)
            .map(|_| {
                let (stop, ok, failed, addr) = (
                    Arc::clone(&stop),
                    Arc::clone(&ok),
                    Arc::clone(&failed),
                    proxy.listen,
                );
                tokio::spawn(async move {
                    let c = client();
                    while !stop.load(Ordering::Relaxed) {
                        let got = get(&c, addr, host, "/").await;
                        let counter = if got.status == 200 { &ok } else { &failed };
                        counter.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        Self {
            stop,
            ok,
            failed,
            tasks,
        }
    }

    fn ok(&self) -> usize {
        self.ok.load(Ordering::Relaxed)
    }

    async fn stop(self) -> (usize, usize) {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            task.await.unwrap();
        }
        (
            self.ok.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syncs_at_start_then_follows_changes_and_deletes() {
    let redis = RedisServer::start().await.unwrap();
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let writer = veloflux_store::testing::writer(&redis.url()).await.unwrap();
    writer
        .sync_all(&[
            tenant("acme", &["acme.test"], &a),
            tenant("globex", &["globex.test"], &b),
        ])
        .await
        .unwrap();

    let proxy = start_fleet_proxy(&redis.url(), "p-1").await;
    // start() returns once the store's config is served.
    assert_eq!(served(&proxy, "acme.test").await.as_deref(), Ok("a"));
    assert_eq!(served(&proxy, "globex.test").await.as_deref(), Ok("b"));
    let ready = readyz(&proxy).await;
    assert_eq!(ready["ready"], true);
    assert_eq!(ready["source"]["kind"], "redis");
    assert_eq!(ready["source"]["connected"], true);
    assert!(ready["source"]["epoch"].is_string());

    // Follow: a change, a new tenant, a delete.
    writer
        .put(&tenant("acme", &["acme.test"], &b))
        .await
        .unwrap();
    assert!(serves(&proxy, "acme.test", "b").await);
    writer
        .put(&tenant("initech", &["initech.test"], &a))
        .await
        .unwrap();
    assert!(serves(&proxy, "initech.test", "a").await);
    writer.delete("globex").await.unwrap();
    assert!(
        eventually(WAIT, async || served(&proxy, "globex.test").await
            == Err(404))
        .await
    );
    // Created again by a writer that never saw it (an operator restart).
    let fresh = veloflux_store::testing::writer(&redis.url()).await.unwrap();
    fresh
        .put(&tenant("globex", &["globex.test"], &a))
        .await
        .unwrap();
    assert!(serves(&proxy, "globex.test", "a").await);
    assert_eq!(
        metric(&proxy, "veloflux_config_store_connected").await,
        Some(1.0)
    );
    assert!(
        metric(&proxy, "veloflux_config_propagation_seconds_count")
            .await
            .unwrap()
            >= 3.0
    );
    proxy.shutdown().await;
}

/// A server whose proxies authenticate as their own ACL users, so one
/// proxy's stream reads can be revoked while everything else goes on.
async fn redis_with_proxy_users() -> RedisServer {
    RedisServer::start_with(&[
        "--user", "default", "on", "nopass", "~*", "&*", "+@all", "--user", "proxy-a", "on", ">pa",
        "~*", "&*", "+@all", "--user", "proxy-b", "on", ">pb", "~*", "&*", "+@all",
    ])
    .await
    .unwrap()
}

fn proxy_url(redis: &RedisServer, user: &str) -> String {
    let password = if user == "proxy-a" { "pa" } else { "pb" };
    format!("redis://{user}:{password}@127.0.0.1:{}", redis.port())
}

async fn acl(redis: &RedisServer, user: &str, rule: &str) {
    let reply = redis
        .command(&["ACL", "SETUSER", user, rule])
        .await
        .unwrap();
    assert_eq!(reply, "+OK\r\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_trimmed_past_the_proxy_triggers_a_full_resync() {
    let redis = redis_with_proxy_users().await;
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let writer = veloflux_store::testing::writer(&redis.url()).await.unwrap();
    writer
        .sync_all(&[tenant("acme", &["acme.test"], &a)])
        .await
        .unwrap();
    let proxy = start_fleet_proxy(&proxy_url(&redis, "proxy-a"), "p-a").await;
    assert_eq!(served(&proxy, "acme.test").await.as_deref(), Ok("a"));
    let resyncs = async || {
        metric(
            &proxy,
            "veloflux_config_store_resyncs_total{reason=\"gap\"}",
        )
        .await
        .unwrap_or(0.0)
    };
    assert_eq!(resyncs().await, 0.0);

    // The proxy stops reading the stream while changes pile up and the
    // stream is trimmed past them.
    acl(&redis, "proxy-a", "-xread").await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    for i in 0..5 {
        writer
            .put(&tenant(&format!("t{i}"), &[&format!("t{i}.test")], &b))
            .await
            .unwrap();
    }
    writer
        .put(&tenant("acme", &["acme.test"], &b))
        .await
        .unwrap();
    redis
        .command(&[
            "XTRIM",
            veloflux_crds::keys::CONFIG_CHANGES_STREAM,
            "MAXLEN",
            "1",
        ])
        .await
        .unwrap();
    assert_eq!(served(&proxy, "t0.test").await, Err(404));
    acl(&redis, "proxy-a", "+xread").await;

    assert!(serves(&proxy, "acme.test", "b").await);
    for i in 0..5 {
        assert_eq!(
            served(&proxy, &format!("t{i}.test")).await.as_deref(),
            Ok("b")
        );
    }
    assert_eq!(resyncs().await, 1.0);
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_under_load_fails_no_request_and_routes_survive_an_empty_restart() {
    let mut redis = RedisServer::start().await.unwrap();
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let writer = veloflux_store::testing::writer(&redis.url()).await.unwrap();
    writer
        .sync_all(&[
            tenant("acme", &["acme.test"], &a),
            tenant("globex", &["globex.test"], &b),
        ])
        .await
        .unwrap();
    let proxy = start_fleet_proxy(&redis.url(), "p-1").await;
    let load = Load::start(&proxy, "acme.test", 4);
    tokio::time::sleep(Duration::from_millis(300)).await;

    redis.kill();
    assert!(
        eventually(WAIT, async || readyz(&proxy).await["source"]["connected"]
            == false)
        .await,
        "the outage shows in /readyz"
    );
    let ready = readyz(&proxy).await;
    assert_eq!(ready["ready"], true, "still serving: {ready}");
    assert!(
        ready["source"]["detail"]
            .as_str()
            .unwrap()
            .contains("serving the last good config")
    );
    assert_eq!(
        metric(&proxy, "veloflux_config_store_connected").await,
        Some(0.0)
    );
    let during = load.ok();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert!(
        load.ok() > during + 50,
        "requests kept flowing while Redis was down"
    );

    // Back, but empty: no epoch marker, nothing indexed. Routes stay.
    redis.restart_empty().await.unwrap();
    assert!(
        eventually(WAIT, async || {
            let ready = readyz(&proxy).await;
            ready["source"]["connected"] == true && ready["source"]["epoch"].is_null()
        })
        .await
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(served(&proxy, "acme.test").await.as_deref(), Ok("a"));
    assert_eq!(served(&proxy, "globex.test").await.as_deref(), Ok("b"));
    assert_eq!(
        metric(&proxy, "veloflux_config_store_epoch_present").await,
        Some(0.0)
    );

    // The writer notices the missing marker and republishes; the proxy
    // reloads behind the new marker and follows changes again.
    let check = writer.ensure_epoch().await.unwrap();
    assert!(
        matches!(check, EpochCheck::Republished { tenants: 2, .. }),
        "{check:?}"
    );
    assert!(
        eventually(WAIT, async || readyz(&proxy).await["source"]["epoch"]
            .is_string())
        .await
    );
    writer
        .put(&tenant("globex", &["globex.test"], &a))
        .await
        .unwrap();
    assert!(serves(&proxy, "globex.test", "a").await);

    let (ok, failed) = load.stop().await;
    assert_eq!(failed, 0, "{failed} of {} requests failed", ok + failed);
    assert_eq!(served(&proxy, "acme.test").await.as_deref(), Ok("a"));
    proxy.shutdown().await;
}

fn scratch(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("veloflux-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_started_while_redis_is_down_serves_its_state_directory() {
    let mut redis = RedisServer::start().await.unwrap();
    let a = Backend::start("a").await;
    let writer = veloflux_store::testing::writer(&redis.url()).await.unwrap();
    writer
        .sync_all(&[tenant("acme", &["acme.test"], &a)])
        .await
        .unwrap();
    let state = scratch("state");
    let first = start(fleet_config_in(&redis.url(), "p-1", Some(&state)))
        .await
        .unwrap();
    assert!(
        eventually(WAIT, async || state.join("tenants/acme.json").exists()).await,
        "the served config reaches the state directory"
    );
    first.shutdown().await;

    redis.kill();
    let mut config = fleet_config_in(&redis.url(), "p-2", Some(&state));
    config.redis_connect_timeout = Duration::from_millis(300);
    let second = start(config).await.unwrap();
    assert_eq!(served(&second, "acme.test").await.as_deref(), Ok("a"));
    let ready = readyz(&second).await;
    assert_eq!(ready["ready"], true);
    assert_eq!(ready["source"]["connected"], false);
    assert!(
        ready["source"]["detail"]
            .as_str()
            .unwrap()
            .contains("state directory"),
        "{ready}"
    );

    // Without a state directory there is nothing to serve: not ready.
    let mut bare = fleet_config_in(&redis.url(), "p-3", None);
    bare.redis_connect_timeout = Duration::from_millis(300);
    let bare = start(bare).await.unwrap();
    assert_eq!(
        get(&client(), bare.admin, "admin", "/readyz").await.status,
        503
    );

    // Redis returns empty and unmarked: a proxy starting now still serves
    // its saved copy, and is ready.
    redis.restart_empty().await.unwrap();
    let third = start(fleet_config_in(&redis.url(), "p-4", Some(&state)))
        .await
        .unwrap();
    assert_eq!(served(&third, "acme.test").await.as_deref(), Ok("a"));
    assert_eq!(readyz(&third).await["ready"], true);
    third.shutdown().await;

    // The writer republishes; both converge.
    writer.ensure_epoch().await.ok();
    assert!(
        eventually(WAIT, async || {
            let _ = writer.ensure_epoch().await;
            readyz(&second).await["source"]["connected"] == true
        })
        .await
    );
    assert!(serves(&bare, "acme.test", "a").await);
    assert_eq!(served(&second, "acme.test").await.as_deref(), Ok("a"));
    second.shutdown().await;
    bare.shutdown().await;
    let _ = std::fs::remove_dir_all(&state);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_schema_is_refused_for_that_tenant_only() {
    let redis = RedisServer::start().await.unwrap();
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let writer = veloflux_store::testing::writer(&redis.url()).await.unwrap();
    writer
        .sync_all(&[
            tenant("acme", &["acme.test"], &a),
            tenant("globex", &["globex.test"], &a),
        ])
        .await
        .unwrap();
    let proxy = start_fleet_proxy(&redis.url(), "p-1").await;

    let mut newer = tenant("acme", &["acme.test"], &b);
    newer.schema_version = veloflux_crds::config::SCHEMA_VERSION + 1;
    let refused = writer.put(&newer).await.unwrap();
    writer
        .put(&tenant("globex", &["globex.test"], &b))
        .await
        .unwrap();
    assert!(serves(&proxy, "globex.test", "b").await);
    assert_eq!(
        served(&proxy, "acme.test").await.as_deref(),
        Ok("a"),
        "acme keeps its last good config"
    );
    assert_eq!(
        metric(&proxy, "veloflux_config_refused_tenants").await,
        Some(1.0)
    );
    let ready = readyz(&proxy).await;
    let problems = ready["source"]["problems"].to_string();
    assert!(
        problems.contains("tenant acme: revision 2 refused"),
        "{ready}"
    );

    // The acknowledgement says so too.
    assert!(
        eventually(WAIT, async || {
            let fleet = acks::read_fleet(writer.client()).await.unwrap();
            fleet
                .rollout("acme", refused.revision, refused.announced)
                .refused
                == ["p-1"]
        })
        .await
    );

    // A later, understood revision is taken again.
    writer
        .put(&tenant("acme", &["acme.test"], &b))
        .await
        .unwrap();
    assert!(serves(&proxy, "acme.test", "b").await);
    assert!(
        eventually(WAIT, async || metric(
            &proxy,
            "veloflux_config_refused_tenants"
        )
        .await
            == Some(0.0))
        .await
    );
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledgements_tell_exactly_which_proxies_serve_a_change() {
    let redis = redis_with_proxy_users().await;
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let writer = veloflux_store::testing::writer(&redis.url()).await.unwrap();
    writer
        .sync_all(&[tenant("acme", &["acme.test"], &a)])
        .await
        .unwrap();
    let pa = start_fleet_proxy(&proxy_url(&redis, "proxy-a"), "p-a").await;
    let pb = start_fleet_proxy(&proxy_url(&redis, "proxy-b"), "p-b").await;

    let change = writer
        .put(&tenant("acme", &["acme.test", "www.acme.test"], &a))
        .await
        .unwrap();
    let rollout = async |revision, announced| {
        acks::read_fleet(writer.client())
            .await
            .unwrap()
            .rollout("acme", revision, announced)
    };
    assert!(
        eventually(WAIT, async || rollout(change.revision, change.announced)
            .await
            .complete())
        .await
    );
    assert_eq!(rollout(change.revision, change.announced).await.total(), 2);
    for proxy in [&pa, &pb] {
        assert_eq!(served(proxy, "www.acme.test").await.as_deref(), Ok("a"));
    }

    // Proxy b stops reading changes: the next change is live on a only,
    // and the acknowledgements say exactly that.
    acl(&redis, "proxy-b", "-xread").await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    let next = writer
        .put(&tenant("acme", &["acme.test", "api.acme.test"], &b))
        .await
        .unwrap();
    assert!(serves(&pa, "api.acme.test", "b").await);
    assert!(
        eventually(WAIT, async || {
            let r = rollout(next.revision, next.announced).await;
            r.serving == ["p-a"] && r.lagging == ["p-b"]
        })
        .await
    );
    assert_eq!(served(&pb, "api.acme.test").await, Err(404));
    assert_eq!(served(&pb, "www.acme.test").await.as_deref(), Ok("a"));

    acl(&redis, "proxy-b", "+xread").await;
    assert!(serves(&pb, "api.acme.test", "b").await);
    assert!(
        eventually(WAIT, async || rollout(next.revision, next.announced)
            .await
            .complete())
        .await
    );

    // A stopped proxy's record expires: it no longer counts.
    pb.shutdown().await;
    assert!(
        eventually(WAIT, async || rollout(next.revision, next.announced)
            .await
            .total()
            == 1)
        .await
    );
    pa.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_converges_on_a_three_node_cluster() {
    let cluster = RedisCluster::start(3).await.unwrap();
    let url = cluster.url();
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let writer = veloflux_store::testing::writer(&url).await.unwrap();
    let names: Vec<String> = (0..24).map(|i| format!("t{i}")).collect();
    let configs: Vec<TenantConfig> = names
        .iter()
        .map(|t| tenant(t, &[&format!("{t}.test")], &a))
        .collect();
    writer.sync_all(&configs).await.unwrap();
    let proxy = start_fleet_proxy(&url, "p-1").await;
    for name in &names {
        assert_eq!(
            served(&proxy, &format!("{name}.test")).await.as_deref(),
            Ok("a")
        );
    }
    for name in &names[..12] {
        writer
            .put(&tenant(name, &[&format!("{name}.test")], &b))
            .await
            .unwrap();
    }
    let gone = writer.delete("t23").await.unwrap().unwrap();
    for name in &names[..12] {
        assert!(serves(&proxy, &format!("{name}.test"), "b").await);
    }
    assert!(eventually(WAIT, async || served(&proxy, "t23.test").await == Err(404)).await);
    assert_eq!(served(&proxy, "t12.test").await.as_deref(), Ok("a"));
    assert!(
        eventually(WAIT, async || {
            acks::read_fleet(writer.client())
                .await
                .unwrap()
                .rollout("t23", 0, gone)
                .complete()
        })
        .await
    );
    proxy.shutdown().await;
}

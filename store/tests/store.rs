//! The writer, reader and acknowledgements against real `redis-server`
//! processes on loopback ports: single node, Cluster, ACL and TLS.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::net::SocketAddr;
use std::time::Duration;

use veloflux_crds::TenantConfig;
use veloflux_crds::keys::{self, ChangeOp, config_field};
use veloflux_store::acks::{self, ProxyAck};
use veloflux_store::connect::connect;
use veloflux_store::reader::{Cursor, Fetched, Reader};
use veloflux_store::testing::{RedisCluster, RedisServer, tenant_config};
use veloflux_store::writer::{EpochCheck, Writer};
use veloflux_store::{RedisOptions, StreamId};

const BACKEND: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 9);

fn config(tenant: &str, host: &str) -> TenantConfig {
    tenant_config(tenant, &[host], BACKEND).unwrap()
}

async fn reader(url: &str) -> Reader {
    let options = RedisOptions::new(url);
    let reader = Reader::new(&options, Duration::from_millis(200)).unwrap();
    reader
        .connect(&options, Duration::from_secs(5))
        .await
        .unwrap();
    reader
}

async fn xlen(redis: &RedisServer) -> String {
    redis
        .command(&["XLEN", keys::CONFIG_CHANGES_STREAM])
        .await
        .unwrap()
}

#[tokio::test]
async fn put_writes_one_document_and_announces_it_once() {
    let redis = RedisServer::start().await.unwrap();
    let writer = veloflux_store::testing::writer(&redis.url()).await.unwrap();
    let first = writer.put(&config("acme", "acme.test")).await.unwrap();
    assert!(first.written);
    assert_eq!(first.revision, 1);
    assert_eq!(xlen(&redis).await, ":1\r\n");

    // Unchanged: nothing written, nothing announced, same announcement id.
    let again = writer.put(&config("acme", "acme.test")).await.unwrap();
    assert_eq!(
        (again.written, again.revision, again.announced),
        (false, 1, first.announced)
    );
    assert_eq!(xlen(&redis).await, ":1\r\n");

    // Changed: the next revision, a second entry.
    let changed = writer.put(&config("acme", "www.acme.test")).await.unwrap();
    assert_eq!((changed.written, changed.revision), (true, 2));
    assert!(changed.announced > first.announced);
    assert_eq!(xlen(&redis).await, ":2\r\n");

    let reader = reader(&redis.url()).await;
    let sync = reader.full_sync().await.unwrap();
    assert_eq!(sync.cursor.id, changed.announced);
    assert_eq!(sync.cursor.seq, 2);
    assert_eq!(sync.tenants.len(), 1);
    let Fetched::Config(stored) = &sync.tenants[0].1 else {
        panic!("{:?}", sync.tenants[0]);
    };
    assert_eq!(stored.revision, 2);
    assert_eq!(stored.domains, ["www.acme.test"]);
    let entries = reader.changes(Cursor::default(), 10).await.unwrap();
    assert!(!entries.gap);
    let ops: Vec<(String, u64, ChangeOp)> = entries
        .entries
        .into_iter()
        .map(|change| {
            let e = change.entry.unwrap();
            (e.tenant, e.revision, e.op)
        })
        .collect();
    assert_eq!(
        ops,
        [
            ("acme".to_owned(), 1, ChangeOp::Upsert),
            ("acme".to_owned(), 2, ChangeOp::Upsert)
        ]
    );
}

#[tokio::test]
async fn delete_removes_the_document_and_announces_once() {
    let redis = RedisServer::start().await.unwrap();
    let writer = veloflux_store::testing::writer(&redis.url()).await.unwrap();
    writer.put(&config("acme", "acme.test")).await.unwrap();
    writer.put(&config("globex", "globex.test")).await.unwrap();
    let gone = writer.delete("acme").await.unwrap().expect("announced");
    assert_eq!(writer.delete("acme").await.unwrap(), None, "idempotent");
    // The document is gone; its revision stays as a tombstone.
    assert_eq!(
        redis
            .command(&["HEXISTS", &keys::config("acme"), config_field::DOC])
            .await
            .unwrap(),
        ":0\r\n"
    );
    let reader = reader(&redis.url()).await;
    let sync = reader.full_sync().await.unwrap();
    assert_eq!(sync.cursor.id, gone);
    let ids: Vec<&str> = sync.tenants.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(ids, ["globex"]);
    let changes = reader.changes(Cursor::default(), 10).await.unwrap();
    let last = changes.entries.last().unwrap().entry.clone().unwrap();
    assert_eq!(
        (last.tenant.as_str(), last.revision, last.op),
        ("acme", 2, ChangeOp::Delete)
    );

    // Recreated later, even by a writer that never saw the delete:
    // revisions keep rising past it.
    let fresh = veloflux_store::testing::writer(&redis.url()).await.unwrap();
    let back = fresh.put(&config("acme", "acme.test")).await.unwrap();
    assert_eq!(back.revision, 3);
}

#[tokio::test]
async fn a_lost_fleet_slot_or_document_is_written_back() {
    let redis = RedisServer::start().await.unwrap();
    let writer = veloflux_store::testing::writer(&redis.url()).await.unwrap();
    // Before sync_all the writer does not know every tenant: no marker.
    writer.put(&config("acme", "acme.test")).await.unwrap();
    assert_eq!(writer.ensure_epoch().await.unwrap(), EpochCheck::Incomplete);
    writer
        .sync_all(&[config("acme", "acme.test"), config("globex", "globex.test")])
        .await
        .unwrap();
    // The fleet-wide keys vanish (a Cluster shard restarted empty) while the
    // documents survive: a republish must announce them again.
    for key in [
        keys::CONFIG_INDEX,
        keys::CONFIG_CHANGES_STREAM,
        keys::CONFIG_SEQ,
        keys::CONFIG_EPOCH,
    ] {
        redis.command(&["DEL", key]).await.unwrap();
    }
    let check = writer.ensure_epoch().await.unwrap();
    assert!(
        matches!(check, EpochCheck::Republished { tenants: 2, .. }),
        "{check:?}"
    );
    let reader = reader(&redis.url()).await;
    let sync = reader.full_sync().await.unwrap();
    assert_eq!(sync.tenants.len(), 2);
    assert_eq!(xlen(&redis).await, ":2\r\n");

    // A document vanishes on its own (its shard restarted): repair finds it.
    redis
        .command(&["DEL", &keys::config("globex")])
        .await
        .unwrap();
    assert_eq!(writer.repair().await.unwrap(), 1);
    assert_eq!(writer.repair().await.unwrap(), 0);
    let sync = reader.full_sync().await.unwrap();
    assert!(
        sync.tenants
            .iter()
            .all(|(_, f)| matches!(f, Fetched::Config(_)))
    );
}

#[tokio::test]
async fn a_store_that_lost_writes_is_republished_behind_a_new_epoch() {
    let redis = RedisServer::start().await.unwrap();
    let writer = veloflux_store::testing::writer(&redis.url()).await.unwrap();
    writer
        .sync_all(&[config("acme", "acme.test")])
        .await
        .unwrap();
    let EpochCheck::Present(before) = writer.ensure_epoch().await.unwrap() else {
        panic!()
    };
    writer.put(&config("acme", "www.acme.test")).await.unwrap();
    // A failover to a replica that missed the last announcements: the
    // change counter is behind what this writer already announced.
    redis
        .command(&["SET", keys::CONFIG_SEQ, "0"])
        .await
        .unwrap();
    writer.put(&config("acme", "api.acme.test")).await.unwrap();
    let check = writer.ensure_epoch().await.unwrap();
    let EpochCheck::Republished { epoch, tenants: 1 } = check else {
        panic!("{check:?}")
    };
    assert_ne!(epoch, before);
}

#[tokio::test]
async fn an_announcement_lost_to_a_crash_is_made_by_the_next_write() {
    let redis = RedisServer::start().await.unwrap();
    let writer = veloflux_store::testing::writer(&redis.url()).await.unwrap();
    writer.put(&config("acme", "acme.test")).await.unwrap();
    // The document says its announcement is pending, as if the writer died
    // between writing it and announcing it.
    redis
        .command(&["HSET", &keys::config("acme"), config_field::PUBLISHED, ""])
        .await
        .unwrap();
    let before = xlen(&redis).await;
    let again = writer.put(&config("acme", "acme.test")).await.unwrap();
    assert!(!again.written);
    assert_eq!(before, ":1\r\n");
    assert_eq!(xlen(&redis).await, ":2\r\n");
}

#[tokio::test]
async fn concurrent_writers_never_interleave_a_document() {
    let redis = RedisServer::start().await.unwrap();
    let a = veloflux_store::testing::writer(&redis.url()).await.unwrap();
    let b = veloflux_store::testing::writer(&redis.url()).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..16 {
        let w = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            w.put(&config("acme", &format!("h{i}.acme.test")))
                .await
                .unwrap()
        }));
    }
    let mut revisions = Vec::new();
    for task in tasks {
        revisions.push(task.await.unwrap().revision);
    }
    revisions.sort_unstable();
    revisions.dedup();
    assert_eq!(revisions.len(), 16, "every write got its own revision");
    let reader = reader(&redis.url()).await;
    let sync = reader.full_sync().await.unwrap();
    let Fetched::Config(stored) = &sync.tenants[0].1 else {
        panic!()
    };
    assert_eq!(stored.revision, *revisions.last().unwrap());
}

#[tokio::test]
async fn a_wiped_store_is_republished_behind_a_new_epoch() {
    let mut redis = RedisServer::start().await.unwrap();
    let writer = veloflux_store::testing::writer(&redis.url()).await.unwrap();
    let report = writer
        .sync_all(&[config("acme", "acme.test"), config("globex", "globex.test")])
        .await
        .unwrap();
    assert_eq!(
        (report.written, report.unchanged, report.deleted),
        (2, 0, 0)
    );
    let EpochCheck::Present(epoch) = writer.ensure_epoch().await.unwrap() else {
        panic!("sync_all sets the marker")
    };

    redis.restart_empty().await.unwrap();
    let check = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Ok(check) = writer.ensure_epoch().await {
                return check;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .unwrap();
    let EpochCheck::Republished {
        epoch: new,
        tenants,
    } = check
    else {
        panic!("{check:?}")
    };
    assert_eq!(tenants, 2);
    assert_ne!(new, epoch);
    let reader = reader(&redis.url()).await;
    let sync = reader.full_sync().await.unwrap();
    assert_eq!(sync.epoch.as_deref(), Some(new.as_str()));
    for (_, fetched) in &sync.tenants {
        let Fetched::Config(config) = fetched else {
            panic!()
        };
        assert_eq!(config.revision, 2, "revisions keep rising across the wipe");
    }

    // sync_all removes what is no longer wanted.
    let report = writer
        .sync_all(&[config("globex", "globex.test")])
        .await
        .unwrap();
    assert_eq!(
        (report.written, report.unchanged, report.deleted),
        (0, 1, 1)
    );
}

#[tokio::test]
async fn a_trimmed_stream_or_a_restarted_store_is_reported_as_a_gap() {
    let mut redis = RedisServer::start().await.unwrap();
    let writer = veloflux_store::testing::writer(&redis.url()).await.unwrap();
    let reader = reader(&redis.url()).await;
    writer.put(&config("acme", "acme.test")).await.unwrap();
    let cursor = reader.full_sync().await.unwrap().cursor;

    let follow = reader.changes(cursor, 10).await.unwrap();
    assert!(follow.entries.is_empty() && !follow.gap);
    assert_eq!(follow.cursor(cursor), cursor);

    writer.put(&config("globex", "globex.test")).await.unwrap();
    let next = reader.changes(cursor, 10).await.unwrap();
    assert_eq!(next.entries.len(), 1);
    assert!(!next.gap);
    let cursor = next.cursor(cursor);

    for i in 0..3 {
        writer
            .put(&config("acme", &format!("h{i}.acme.test")))
            .await
            .unwrap();
    }
    redis
        .command(&["XTRIM", keys::CONFIG_CHANGES_STREAM, "MAXLEN", "1"])
        .await
        .unwrap();
    let trimmed = reader.changes(cursor, 10).await.unwrap();
    assert!(trimmed.gap, "entries after the cursor were trimmed unread");

    // Restarted empty: numbering starts again, which is a gap too.
    redis.restart_empty().await.unwrap();
    let cursor = trimmed.cursor(cursor);
    let fresh = writer.clone();
    tokio::time::timeout(Duration::from_secs(10), async {
        while fresh.put(&config("acme", "acme.test")).await.is_err() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .unwrap();
    let after_restart = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Ok(changes) = reader.changes(cursor, 10).await
                && !changes.entries.is_empty()
            {
                return changes;
            }
        }
    })
    .await
    .unwrap();
    assert!(after_restart.gap);
}

#[tokio::test]
async fn newer_schemas_are_refused_per_tenant() {
    let redis = RedisServer::start().await.unwrap();
    let writer = veloflux_store::testing::writer(&redis.url()).await.unwrap();
    let mut newer = config("acme", "acme.test");
    newer.schema_version = veloflux_crds::config::SCHEMA_VERSION + 1;
    writer.put(&newer).await.unwrap();
    writer.put(&config("globex", "globex.test")).await.unwrap();
    let reader = reader(&redis.url()).await;
    let sync = reader.full_sync().await.unwrap();
    match &sync.tenants[0] {
        (tenant, Fetched::Refused { revision, reason }) => {
            assert_eq!((tenant.as_str(), *revision), ("acme", 1));
            assert!(reason.contains("newer than the supported"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(sync.tenants[1].1, Fetched::Config(_)));
}

fn ack(id: &str, epoch: Option<String>, applied: StreamId) -> ProxyAck {
    ProxyAck {
        id: id.into(),
        version: "test".into(),
        epoch,
        applied,
        tenants: 1,
        refused: Default::default(),
        at_ms: acks::now_ms(),
    }
}

#[tokio::test]
async fn acknowledgements_expire_with_their_proxy() {
    let redis = RedisServer::start().await.unwrap();
    let writer = veloflux_store::testing::writer(&redis.url()).await.unwrap();
    let put = writer
        .sync_all(&[config("acme", "acme.test")])
        .await
        .unwrap()
        .outcomes["acme"];
    let epoch = writer.epoch().await.unwrap();
    let client = writer.client();
    acks::publish(
        client,
        &ack("p-1", epoch.clone(), put.announced),
        Duration::from_secs(30),
    )
    .await
    .unwrap();
    acks::publish(
        client,
        &ack("p-2", epoch, StreamId::ZERO),
        Duration::from_millis(300),
    )
    .await
    .unwrap();
    let fleet = acks::read_fleet(client).await.unwrap();
    let rollout = fleet.rollout("acme", put.revision, put.announced);
    assert_eq!(
        (rollout.serving.as_slice(), rollout.lagging.as_slice()),
        (&["p-1".to_owned()][..], &["p-2".to_owned()][..])
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    let fleet = acks::read_fleet(client).await.unwrap();
    let rollout = fleet.rollout("acme", put.revision, put.announced);
    assert!(rollout.complete(), "{rollout:?}");
    assert_eq!(rollout.total(), 1);
    assert!(
        acks::publish(
            client,
            &ack("bad id", None, StreamId::ZERO),
            Duration::from_secs(1)
        )
        .await
        .is_err()
    );
}

#[tokio::test]
async fn every_operation_works_on_a_three_node_cluster() {
    let cluster = RedisCluster::start(3).await.unwrap();
    let url = cluster.url();
    let writer = veloflux_store::testing::writer(&url).await.unwrap();
    let tenants: Vec<String> = (0..30).map(|i| format!("t{i}")).collect();
    let configs: Vec<TenantConfig> = tenants
        .iter()
        .map(|t| config(t, &format!("{t}.test")))
        .collect();
    // The tenants' documents spread over the nodes.
    let slots: std::collections::BTreeSet<u16> = tenants
        .iter()
        .map(|t| keys::cluster_slot(&keys::config(t)) / 5462)
        .collect();
    assert_eq!(slots.len(), 3);
    writer.sync_all(&configs).await.unwrap();
    let reader = reader(&url).await;
    let sync = reader.full_sync().await.unwrap();
    assert_eq!(sync.tenants.len(), 30);
    assert!(sync.epoch.is_some());
    assert!(
        sync.tenants
            .iter()
            .all(|(_, f)| matches!(f, Fetched::Config(_)))
    );
    let put = writer.put(&config("t7", "new.t7.test")).await.unwrap();
    let gone = writer.delete("t8").await.unwrap().unwrap();
    let changes = reader.changes(sync.cursor, 10).await.unwrap();
    assert!(!changes.gap);
    let ids: Vec<StreamId> = changes.entries.iter().map(|c| c.id).collect();
    assert_eq!(ids, [put.announced, gone]);
    acks::publish(
        writer.client(),
        &ack("p-1", sync.epoch.clone(), gone),
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    let fleet = acks::read_fleet(writer.client()).await.unwrap();
    assert!(fleet.rollout("t7", put.revision, put.announced).complete());
}

#[tokio::test]
async fn acl_users_authenticate_through_the_url() {
    let redis = RedisServer::start_with(&[
        "--user", "default", "off", "--user", "veloflux", "on", ">s3cret", "~vf:*", "&*", "+@all",
    ])
    .await
    .unwrap();
    let url = format!("redis://veloflux:s3cret@127.0.0.1:{}", redis.port());
    let writer = veloflux_store::testing::writer(&url).await.unwrap();
    writer.put(&config("acme", "acme.test")).await.unwrap();

    let wrong = RedisOptions::new(format!("redis://veloflux:nope@127.0.0.1:{}", redis.port()));
    let client = wrong.client().unwrap();
    let err = connect(&client, &wrong, Duration::from_millis(500))
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        !text.contains("nope"),
        "the password stays out of errors: {text}"
    );
    assert!(text.contains("veloflux:***@"), "{text}");
}

#[tokio::test]
async fn tls_to_redis_verifies_the_server_against_the_given_ca() {
    let dir = std::env::temp_dir().join(format!("veloflux-redis-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let server_key = rcgen::KeyPair::generate().unwrap();
    let server =
        rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .unwrap()
            .signed_by(&server_key, &issuer)
            .unwrap();
    let path = |name: &str| dir.join(name).display().to_string();
    std::fs::write(path("ca.pem"), ca.pem()).unwrap();
    std::fs::write(path("server.pem"), server.pem()).unwrap();
    std::fs::write(path("server.key"), server_key.serialize_pem()).unwrap();
    let tls_port = veloflux_store::testing::free_port().unwrap();
    let redis = RedisServer::start_with(&[
        "--tls-port",
        &tls_port.to_string(),
        "--tls-cert-file",
        &path("server.pem"),
        "--tls-key-file",
        &path("server.key"),
        "--tls-ca-cert-file",
        &path("ca.pem"),
        "--tls-auth-clients",
        "no",
    ])
    .await
    .unwrap();

    let mut options = RedisOptions::new(format!("rediss://127.0.0.1:{tls_port}"));
    options.ca_file = Some(dir.join("ca.pem"));
    let client = options.client().unwrap();
    connect(&client, &options, Duration::from_secs(5))
        .await
        .unwrap();
    let writer = Writer::new(client);
    writer.put(&config("acme", "acme.test")).await.unwrap();
    assert_eq!(
        redis
            .command(&["HGET", &keys::config("acme"), "rev"])
            .await
            .unwrap(),
        "$1\r\n1\r\n"
    );

    // Without the CA (system roots only) the server is not trusted.
    let untrusted = RedisOptions::new(format!("rediss://127.0.0.1:{tls_port}"));
    let client = untrusted.client().unwrap();
    assert!(
        connect(&client, &untrusted, Duration::from_millis(700))
            .await
            .is_err()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn sentinel_urls_find_the_master() {
    let master = RedisServer::start().await.unwrap();
    let port = veloflux_store::testing::free_port().unwrap();
    let dir = std::env::temp_dir().join(format!("veloflux-sentinel-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let conf = dir.join("sentinel.conf");
    std::fs::write(
        &conf,
        format!(
            "port {port}\nbind 127.0.0.1\nsentinel monitor veloflux 127.0.0.1 {} 1\n",
            master.port()
        ),
    )
    .unwrap();
    let mut sentinel = std::process::Command::new("redis-server")
        .arg(&conf)
        .arg("--sentinel")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("redis-sentinel://127.0.0.1:{port}?sentinelServiceName=veloflux");
    let options = RedisOptions::new(&url);
    let client = options.client().unwrap();
    let connected = connect(&client, &options, Duration::from_secs(10)).await;
    let result = async {
        connected?;
        Writer::new(client).put(&config("acme", "acme.test")).await
    }
    .await;
    let _ = sentinel.kill();
    let _ = sentinel.wait();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(result.unwrap().revision, 1);
    assert!(
        master
            .command(&["EXISTS", &keys::config("acme")])
            .await
            .unwrap()
            .starts_with(":1")
    );
}

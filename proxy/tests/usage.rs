//! Usage metering against a real `redis-server`: per-tenant requests,
//! bytes in and bytes out add up exactly to what was sent, across a proxy
//! restart under the same proxy id, in the minute buckets and the month.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod support;

use std::time::Duration;

use support::*;
use veloflux_proxy::app::{Running, start};
use veloflux_store::testing::{RedisServer, tenant_config};
use veloflux_store::usage;
use veloflux_store::writer::Writer;

async fn fleet_proxy(url: &str, id: &str) -> Running {
    let mut config = fleet_config(url, id);
    config.usage_flush_interval = Duration::from_millis(200);
    start(config).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_adds_up_exactly_across_a_proxy_restart() {
    let redis = RedisServer::start().await.unwrap();
    let a = Backend::start("a").await;
    let redis_client = veloflux_store::testing::connected(&redis.url())
        .await
        .unwrap();
    let writer = Writer::new(redis_client.clone());
    writer
        .sync_all(&[
            tenant_config("acme", &["acme.test"], a.addr).unwrap(),
            tenant_config("globex", &["globex.test"], a.addr).unwrap(),
        ])
        .await
        .unwrap();
    let first_minute = veloflux_store::acks::now_ms() / 60_000;

    let (mut requests, mut bytes_in, mut bytes_out) = (0u64, 0u64, 0u64);
    let c = client();
    let send_some = async |proxy: &Running,
                           n: usize,
                           requests: &mut u64,
                           bytes_in: &mut u64,
                           bytes_out: &mut u64| {
        for i in 0..n {
            let body = vec![b'x'; 100 + i];
            let got = send(&c, proxy.listen, "acme.test", "POST", "/upload", &body).await;
            assert_eq!(got.status, 200);
            *requests += 1;
            *bytes_in += body.len() as u64;
            *bytes_out += got.body.len() as u64;
        }
    };
    let proxy = fleet_proxy(&redis.url(), "p-1").await;
    send_some(&proxy, 37, &mut requests, &mut bytes_in, &mut bytes_out).await;
    // Another tenant's traffic is counted apart.
    assert_eq!(get(&c, proxy.listen, "globex.test", "/").await.status, 200);
    proxy.shutdown().await;

    // The same proxy id starts again: its new counts add to the old ones.
    let proxy = fleet_proxy(&redis.url(), "p-1").await;
    send_some(&proxy, 23, &mut requests, &mut bytes_in, &mut bytes_out).await;
    proxy.shutdown().await;

    let last_minute = veloflux_store::acks::now_ms() / 60_000;
    let by_minute = usage::read_minutes(&redis_client, "acme", first_minute, last_minute)
        .await
        .unwrap();
    assert_eq!(by_minute, [requests, bytes_in, bytes_out]);
    let mut by_month = [0u64; 3];
    for month in [usage::month_of(first_minute), usage::month_of(last_minute)]
        .into_iter()
        .collect::<std::collections::BTreeSet<_>>()
    {
        let counts = usage::read_month(&redis_client, "acme", month)
            .await
            .unwrap();
        for i in 0..3 {
            by_month[i] += counts[i];
        }
    }
    assert_eq!(by_month, [requests, bytes_in, bytes_out]);
    let globex = usage::read_minutes(&redis_client, "globex", first_minute, last_minute)
        .await
        .unwrap();
    assert_eq!(globex[0], 1);
    assert_eq!(requests, 60);
}

//! SIGTERM under load: the real binary stops accepting, lets in-flight
//! requests finish, and exits 0, with no failed request.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod support;

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use support::*;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_finishes_in_flight_requests_and_exits_cleanly() {
    let slowish = Backend::start("a").await;
    slowish.behaviour.delay_ms.store(150, Ordering::SeqCst);
    let folder = Folder::new("sigterm");
    folder.write("00-tenants.yaml", &plan_and_tenant());
    folder.write(
        "route.yaml",
        &route("web", "web.acme.test", &[&slowish], "roundRobin", ""),
    );
    let (port, admin) = (free_port(), free_port());
    let mut child = Command::new(env!("CARGO_BIN_EXE_veloflux-proxy"))
        .args(["--manifests", folder.path().to_str().unwrap()])
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--admin-listen",
            &format!("127.0.0.1:{admin}"),
        ])
        .args([
            "--shutdown-grace",
            "5s",
            "--access-log",
            "false",
            "--log",
            "warn",
        ])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let proxy: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let admin_addr: std::net::SocketAddr = format!("127.0.0.1:{admin}").parse().unwrap();
    assert!(
        eventually(Duration::from_secs(10), async || {
            tokio::net::TcpStream::connect(admin_addr).await.is_ok()
        })
        .await
    );

    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let mut load = Vec::new();
    for _ in 0..10 {
        let (stop, ok, failed) = (Arc::clone(&stop), Arc::clone(&ok), Arc::clone(&failed));
        load.push(tokio::spawn(async move {
            // Each client keeps one connection; once the proxy stops
            // accepting, a new connection is refused: that ends the client.
            let c = client();
            while !stop.load(Ordering::Relaxed) {
                let req = http::Request::builder()
                    .uri(format!("http://web.acme.test:{}/", proxy.port()))
                    .body(http_body_util::Full::new(bytes::Bytes::new()))
                    .unwrap();
                match c.request(req).await {
                    Ok(resp) if resp.status() == 200 => {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(_) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                    // Refused before sending: the proxy no longer accepts; not a dropped request.
                    Err(e) if e.is_connect() => break,
                    Err(_) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(600)).await;
    let before = ok.load(Ordering::Relaxed);
    let in_flight = slowish.in_flight.load(Ordering::SeqCst);
    assert!(
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    stop.store(true, Ordering::Relaxed);
    for t in load {
        t.await.unwrap();
    }
    assert!(status.success(), "exit status {status:?}");
    assert!(
        before > 10 && in_flight > 0,
        "load was running: {before} done, {in_flight} in flight at SIGTERM"
    );
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "requests failed during shutdown"
    );
    assert_eq!(
        slowish.in_flight.load(Ordering::SeqCst),
        0,
        "every in-flight request completed"
    );
}

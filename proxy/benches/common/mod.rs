//! Parts the end-to-end benchmarks share.

#![allow(dead_code, clippy::unwrap_used)]

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::Full;
use hyper::Response;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// The benchmark's positional arguments when it runs under `cargo bench`
/// (which passes `--bench`), else `None`: `cargo test --all-targets` runs
/// benchmark targets too, and they are built and linted there, not run.
pub fn bench_args() -> Option<Vec<String>> {
    let all: Vec<String> = std::env::args().skip(1).collect();
    if !all.iter().any(|a| a == "--bench") {
        println!("benchmark skipped: run it with `cargo bench`");
        return None;
    }
    Some(all.into_iter().filter(|a| !a.starts_with("--")).collect())
}

/// An HTTP/1.1 backend on a loopback port answering every request with `body`.
pub async fn backend(body: &'static [u8]) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |_| async move {
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(body))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// A child process killed when dropped.
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

//! Accepting connections: HTTP/1.1 (keep-alive, upgrades) and HTTP/2 (h2c
//! prior knowledge, or ALPN over TLS) on one port, each connection tracked
//! for graceful shutdown. On shutdown the listener closes, idle keep-alive
//! connections close, HTTP/2 connections get GOAWAY, and in-flight requests
//! get `grace` to finish.

use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::server::{ConnInfo, MAX_HEADER_BYTES, Proxy};
use crate::tls::TlsAcceptor;

/// Time a client has to send a request head.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// The connection builder shared by listeners.
fn builder() -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(MAX_HEADER_BYTES)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(MAX_HEADER_BYTES).unwrap_or(u32::MAX))
        .max_concurrent_streams(1024);
    builder
}

/// Serves `listener` until `shutdown` turns true, then drains for up to `grace`.
pub async fn run(
    listener: TcpListener,
    proxy: Arc<Proxy>,
    tls: Option<TlsAcceptor>,
    mut shutdown: watch::Receiver<bool>,
    grace: Duration,
) {
    let builder = Arc::new(builder());
    let graceful = GracefulShutdown::new();
    let local = listener.local_addr().ok();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, client) = match accepted {
                    Ok(pair) => pair,
                    Err(err) => {
                        warn!(error = %err, "Accept failed");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let proxy = Arc::clone(&proxy);
                let builder = Arc::clone(&builder);
                let watcher = graceful.watcher();
                let tls = tls.clone();
                tokio::spawn(async move {
                    let info = ConnInfo::new(client, tls.is_some());
                    let service = service_fn(move |req| Arc::clone(&proxy).handle(req, info));
                    let result = match tls {
                        None => {
                            let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                            watcher.watch(conn.into_owned()).await
                        }
                        Some(tls) => match tls.accept(stream).await {
                            Ok(stream) => {
                                let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                                watcher.watch(conn.into_owned()).await
                            }
                            Err(err) => {
                                debug!(client = %client, error = %err, "TLS handshake failed");
                                return;
                            }
                        },
                    };
                    if let Err(err) = result {
                        debug!(client = %client, error = %err, "Connection ended with an error");
                    }
                });
            }
            _ = shutdown.changed() => break,
        }
    }
    drop(listener);
    info!(listener = ?local, grace_secs = grace.as_secs_f64(), "Draining connections");
    tokio::select! {
        () = graceful.shutdown() => info!(listener = ?local, "All connections closed"),
        () = tokio::time::sleep(grace) => warn!(listener = ?local, "Grace period over; closing remaining connections"),
    }
}

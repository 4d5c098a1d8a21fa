//! Accepting connections: HTTP/1.1 (keep-alive, upgrades) and HTTP/2 (h2c
//! prior knowledge, or ALPN over TLS) on one port, each connection tracked
//! for graceful shutdown. On shutdown the listener closes, idle keep-alive
//! connections close, HTTP/2 connections get GOAWAY, and in-flight requests
//! get `grace` to finish.

use std::sync::Arc;
use std::time::Duration;

use http::Request;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::http::body::ClientBody;
use crate::http::h1::{self, HEADER_READ_TIMEOUT, Prefixed, Served};
use crate::http::tls::TlsAcceptor;
use crate::request::{ConnInfo, MAX_HEADER_BYTES, Proxy};

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

/// Serves an HTTP/1 connection on the fast path, then, if a request needs
/// it, with hyper from where the fast path stopped. `watcher` keeps the
/// drain waiting until the connection is done.
async fn serve<I>(
    io: I,
    builder: &auto::Builder<TokioExecutor>,
    proxy: Arc<Proxy>,
    info: ConnInfo,
    watcher: Watcher,
    stop: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    match h1::serve(io, Arc::clone(&proxy), info, stop).await {
        Served::Closed => {}
        Served::Handoff { io, read, served } => {
            // After requests on the fast path the connection is HTTP/1's:
            // a preface now is not the start of HTTP/2 (hyper's version
            // detection would take it for one).
            if served && read.starts_with(b"PRI * HTTP/2") {
                let mut io = io;
                let _ = tokio::io::AsyncWriteExt::write_all(
                    &mut io,
                    b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                )
                .await;
                return;
            }
            serve_hyper(Prefixed::new(read, io), builder, proxy, info, watcher).await;
        }
    }
}

/// Serves a connection with hyper: HTTP/2, or HTTP/1 past a hand-off.
async fn serve_hyper<I>(
    io: I,
    builder: &auto::Builder<TokioExecutor>,
    proxy: Arc<Proxy>,
    info: ConnInfo,
    watcher: Watcher,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req: Request<Incoming>| {
        Arc::clone(&proxy).handle(req.map(ClientBody::Hyper), info)
    });
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    if let Err(err) = watcher.watch(conn.into_owned()).await {
        debug!(client = %info.client, error = %err, "Connection ended with an error");
    }
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
                let stop = shutdown.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    let info = ConnInfo::new(client, tls.is_some());
                    match tls {
                        None => serve(stream, &builder, proxy, info, watcher, stop).await,
                        Some(tls) => match tls.accept(stream).await {
                            Ok(stream) if stream.get_ref().1.alpn_protocol() == Some(b"h2") => {
                                serve_hyper(stream, &builder, proxy, info, watcher).await;
                            }
                            Ok(stream) => serve(stream, &builder, proxy, info, watcher, stop).await,
                            Err(err) => {
                                debug!(client = %client, error = %err, "TLS handshake failed");
                            }
                        },
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

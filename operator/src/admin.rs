//! `/healthz`, `/readyz` (watches synced, Redis reachable, leadership) and
//! `/metrics` on their own port.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde_json::json;
use tokio::net::TcpListener;

use crate::metrics::Metrics;

/// What the admin endpoints report.
#[derive(Debug, Default)]
pub struct Health {
    /// Every watch has listed once.
    pub synced: AtomicBool,
    /// This replica leads.
    pub leader: Arc<AtomicBool>,
    /// The last pass could reach Redis.
    pub store_ok: AtomicBool,
}

/// Serves the admin endpoints until the task is dropped.
pub async fn run(listener: TcpListener, health: Arc<Health>, metrics: Arc<Metrics>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let (health, metrics) = (Arc::clone(&health), Arc::clone(&metrics));
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<Incoming>| {
                let response = respond(req.uri().path(), &health, &metrics);
                async move { Ok::<_, Infallible>(response) }
            });
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn respond(path: &str, health: &Health, metrics: &Metrics) -> Response<Full<Bytes>> {
    let (status, content_type, body) = match path {
        "/healthz" => (StatusCode::OK, "text/plain", "ok\n".to_owned()),
        "/readyz" => {
            let synced = health.synced.load(Ordering::Relaxed);
            let leader = health.leader.load(Ordering::Relaxed);
            let store = health.store_ok.load(Ordering::Relaxed);
            // A standby replica is ready when its caches are synced; the
            // leader also needs the store.
            let ready = synced && (!leader || store);
            let body = json!({"ready": ready, "synced": synced, "leader": leader, "storeReachable": store});
            (
                if ready {
                    StatusCode::OK
                } else {
                    StatusCode::SERVICE_UNAVAILABLE
                },
                "application/json",
                body.to_string(),
            )
        }
        "/metrics" => match metrics.encode() {
            Ok(text) => (
                StatusCode::OK,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                text,
            ),
            Err(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "text/plain",
                "metrics encoding failed\n".to_owned(),
            ),
        },
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found\n".to_owned(),
        ),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    if let Ok(value) = header::HeaderValue::from_str(content_type) {
        response.headers_mut().insert(header::CONTENT_TYPE, value);
    }
    response
}

//! Demo backends for the quickstart (`--demo-backends`): a small HTTP server
//! on each loopback address the manifests name, answering every request with
//! a JSON description of it and `/healthz` with 200.

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http::{Request, Response, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use veloflux_crds::TenantConfig;

/// The loopback addresses of static backends in `configs`.
pub fn loopback_addresses<'a>(
    configs: impl IntoIterator<Item = &'a TenantConfig>,
) -> BTreeSet<SocketAddr> {
    configs
        .into_iter()
        .flat_map(|c| c.routes.iter())
        .flat_map(|r| r.backends.iter())
        .filter(|b| b.service.is_none())
        .flat_map(|b| b.endpoints.iter())
        .filter_map(|e| e.address.parse::<SocketAddr>().ok())
        .filter(|a| a.ip().is_loopback())
        .collect()
}

/// Starts one demo backend per address; returns the addresses bound.
pub async fn start(addresses: &BTreeSet<SocketAddr>) -> std::io::Result<Vec<SocketAddr>> {
    let mut bound = Vec::new();
    for &addr in addresses {
        let listener = TcpListener::bind(addr).await?;
        bound.push(addr);
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                tokio::spawn(async move {
                    let service = service_fn(move |req: Request<Incoming>| async move {
                        let body = if req.uri().path() == "/healthz" {
                            "{\"status\":\"ok\"}".to_owned()
                        } else {
                            serde_json::json!({
                                "backend": addr.to_string(),
                                "method": req.method().as_str(),
                                "path": req.uri().path(),
                                "host": req.headers().get(header::HOST).and_then(|h| h.to_str().ok()),
                                "requestId": req.headers().get("x-request-id").and_then(|h| h.to_str().ok()),
                            })
                            .to_string()
                        };
                        let mut response = Response::new(Full::new(Bytes::from(body + "\n")));
                        response.headers_mut().insert(
                            header::CONTENT_TYPE,
                            header::HeaderValue::from_static("application/json"),
                        );
                        Ok::<_, Infallible>(response)
                    });
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
    }
    Ok(bound)
}

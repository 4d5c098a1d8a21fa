//! Upstream HTTP/1.1 connections: a pool of idle keep-alive connections per
//! endpoint, owned by the endpoint's shared state.
//!
//! A request takes the most recently used idle connection of its endpoint
//! (or opens one within the route's connect timeout), and gives it back
//! when the response body has been read to its end — not before, since an
//! HTTP/1.1 connection carries one exchange at a time. A connection whose
//! response was cut short, or that switched protocols, is never reused.
//! Idle connections past the route's idle timeout are closed on the next
//! checkout or check-in (from the oldest end, so a request never scans the
//! whole list) and by a sweep every second. Each endpoint has its own lock,
//! held only to push or pop: nothing is shared between endpoints, and no
//! key is hashed per request.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::body::RequestBody;
use crate::endpoint::EndpointState;

/// Idle connections kept per endpoint at most.
pub const MAX_IDLE_PER_ENDPOINT: usize = 256;

/// Why a request could not be exchanged with an upstream.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// No connection could be opened.
    #[error("connect to {address} failed: {source}")]
    Connect {
        /// The endpoint.
        address: Box<str>,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// Opening a connection took longer than the route's connect timeout.
    #[error("connect to {address} timed out")]
    ConnectTimeout {
        /// The endpoint.
        address: Box<str>,
    },
    /// The exchange failed once the connection was open.
    #[error("upstream exchange failed: {0}")]
    Exchange(#[source] hyper::Error),
}

impl UpstreamError {
    /// Whether the request never reached the upstream (safe to retry).
    pub fn is_connect(&self) -> bool {
        matches!(self, Self::Connect { .. } | Self::ConnectTimeout { .. })
    }

    /// Whether this was a timeout.
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::ConnectTimeout { .. })
    }
}

#[derive(Debug)]
struct Idle {
    sender: http1::SendRequest<RequestBody>,
    until: Instant,
}

/// Idle connections of one endpoint.
#[derive(Debug, Default)]
pub struct Pool {
    #[allow(
        clippy::disallowed_types,
        reason = "one lock per endpoint, held for a push or a pop; never across an await"
    )]
    idle: std::sync::Mutex<VecDeque<Idle>>,
}

impl Pool {
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Idle>> {
        self.idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The most recently used connection that is open and ready.
    fn checkout(&self) -> Option<http1::SendRequest<RequestBody>> {
        let now = Instant::now();
        let mut idle = self.lock();
        expire_oldest(&mut idle, now);
        let mut skipped = 0;
        while let Some(entry) = idle.pop_back() {
            if entry.sender.is_closed() {
                continue;
            }
            if entry.sender.is_ready() {
                return Some(entry.sender);
            }
            // Still finishing its last exchange: keep it for a later request.
            idle.push_front(entry);
            skipped += 1;
            if skipped >= idle.len() {
                break;
            }
        }
        None
    }

    fn checkin(&self, sender: http1::SendRequest<RequestBody>, idle_timeout: Duration) {
        if sender.is_closed() {
            return;
        }
        let now = Instant::now();
        let mut idle = self.lock();
        expire_oldest(&mut idle, now);
        if idle.len() >= MAX_IDLE_PER_ENDPOINT {
            idle.pop_front();
        }
        idle.push_back(Idle {
            sender,
            until: now + idle_timeout,
        });
    }

    /// Closes every idle connection past its timeout or closed by the
    /// upstream.
    pub fn sweep(&self) {
        let now = Instant::now();
        self.lock()
            .retain(|entry| entry.until > now && !entry.sender.is_closed());
    }
}

/// Drops expired or closed connections from the oldest end, up to the first
/// live one: constant work per request in the usual case. Routes with
/// different idle timeouts may leave a later-expiring entry in front of an
/// expired one; the sweep catches those within a second.
fn expire_oldest(idle: &mut VecDeque<Idle>, now: Instant) {
    while idle
        .front()
        .is_some_and(|entry| entry.until <= now || entry.sender.is_closed())
    {
        idle.pop_front();
    }
}

/// A connection lent to one exchange; [`Checkin::release`] gives it back.
#[derive(Debug)]
pub struct Checkin {
    endpoint: Arc<EndpointState>,
    sender: http1::SendRequest<RequestBody>,
    idle_timeout: Duration,
}

impl Checkin {
    /// The exchange is complete: the connection may carry another.
    pub fn release(self) {
        self.endpoint.pool().checkin(self.sender, self.idle_timeout);
    }
}

/// Sends `request` to `endpoint` on a pooled connection, or a new one, and
/// returns the response head with the connection to release once the body
/// has been read.
///
/// When no connection could be opened, the request comes back with the
/// error, unsent and whole, for a retry on another endpoint.
pub async fn send(
    endpoint: &Arc<EndpointState>,
    mut request: Request<RequestBody>,
    connect_timeout: Duration,
    idle_timeout: Duration,
) -> Result<(Response<Incoming>, Checkin), (UpstreamError, Option<Request<RequestBody>>)> {
    // A pooled connection the upstream closed meanwhile hands the request
    // back unsent; it then goes on a new connection.
    while let Some(mut sender) = endpoint.pool().checkout() {
        match sender.try_send_request(request).await {
            Ok(response) => return Ok((response, checkin(endpoint, sender, idle_timeout))),
            Err(mut err) => match err.take_message() {
                Some(unsent) => request = unsent,
                None => return Err((UpstreamError::Exchange(err.into_error()), None)),
            },
        }
    }
    let mut sender = match connect(endpoint, connect_timeout).await {
        Ok(sender) => sender,
        Err(err) => return Err((err, Some(request))),
    };
    match sender.send_request(request).await {
        Ok(response) => Ok((response, checkin(endpoint, sender, idle_timeout))),
        Err(err) => Err((UpstreamError::Exchange(err), None)),
    }
}

fn checkin(
    endpoint: &Arc<EndpointState>,
    sender: http1::SendRequest<RequestBody>,
    idle_timeout: Duration,
) -> Checkin {
    Checkin {
        endpoint: Arc::clone(endpoint),
        sender,
        idle_timeout,
    }
}

async fn connect(
    endpoint: &EndpointState,
    timeout: Duration,
) -> Result<http1::SendRequest<RequestBody>, UpstreamError> {
    let address = endpoint.address();
    let stream = match tokio::time::timeout(timeout, TcpStream::connect(address)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(source)) => {
            return Err(UpstreamError::Connect {
                address: address.into(),
                source,
            });
        }
        Err(_) => {
            return Err(UpstreamError::ConnectTimeout {
                address: address.into(),
            });
        }
    };
    let _ = stream.set_nodelay(true);
    let (sender, connection) = http1::Builder::new()
        .handshake(TokioIo::new(stream))
        .await
        .map_err(UpstreamError::Exchange)?;
    tokio::spawn(async move {
        // Ends when the upstream or the pool closes the connection; an
        // upgraded connection lives on in the tunnel.
        let _ = connection.with_upgrades().await;
    });
    Ok(sender)
}

//! Body types of the request path. Bodies stream frame by frame, never
//! buffered whole; these wrappers count bytes for metrics and enforce the
//! route's request-body limit without boxing.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;
use hyper::body::Incoming;
use prometheus_client::metrics::counter::Counter;

use crate::backends::endpoint::InFlight;
use crate::upstream::UpstreamBody;

/// Error type of proxied bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The request body grew past the route's limit.
#[derive(Debug, thiserror::Error)]
#[error("request body exceeds the limit of {limit} bytes")]
pub struct BodyTooLarge {
    /// The limit.
    pub limit: u64,
}

/// A client's request body as the server read it.
#[derive(Debug)]
pub enum ClientBody {
    /// A request without a body (what the HTTP/1 fast path serves).
    Empty,
    /// hyper's body for everything else.
    Hyper(Incoming),
}

impl ClientBody {
    /// Whether no body bytes can follow.
    pub fn is_end_stream(&self) -> bool {
        match self {
            Self::Empty => true,
            Self::Hyper(body) => body.is_end_stream(),
        }
    }

    /// The body's length, when the request declared it.
    pub fn exact_length(&self) -> Option<u64> {
        match self {
            Self::Empty => Some(0),
            Self::Hyper(body) => body.size_hint().exact(),
        }
    }
}

/// A request body on its way upstream.
#[derive(Debug)]
pub enum RequestBody {
    /// No body (also what health checks send).
    Empty,
    /// The client's body, counted and limited.
    Stream {
        /// The client's body.
        inner: Incoming,
        /// Bytes seen so far.
        seen: u64,
        /// Largest body allowed.
        limit: u64,
        /// Where request bytes are counted.
        counter: Option<Tally>,
    },
}

/// Where counted bytes go: the route's metric and the tenant's usage.
#[derive(Debug, Clone)]
pub struct Tally {
    /// The metric (per tenant label and route).
    pub metric: Counter,
    /// The tenant's usage total.
    pub usage: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl Tally {
    fn add(&self, bytes: u64) {
        self.metric.inc_by(bytes);
        self.usage
            .fetch_add(bytes, std::sync::atomic::Ordering::Relaxed);
    }
}

impl RequestBody {
    /// Wraps a client body.
    pub fn stream(inner: ClientBody, limit: Option<u64>, counter: Option<Tally>) -> Self {
        match inner {
            ClientBody::Empty => Self::Empty,
            ClientBody::Hyper(inner) => Self::Stream {
                inner,
                seen: 0,
                limit: limit.unwrap_or(u64::MAX),
                counter,
            },
        }
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            Self::Empty => Poll::Ready(None),
            Self::Stream {
                inner,
                seen,
                limit,
                counter,
            } => match Pin::new(inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    if let Some(data) = frame.data_ref() {
                        let len = data.len() as u64;
                        *seen += len;
                        if let Some(c) = counter {
                            c.add(len);
                        }
                        if *seen > *limit {
                            return Poll::Ready(Some(Err(Box::new(BodyTooLarge {
                                limit: *limit,
                            }))));
                        }
                    }
                    Poll::Ready(Some(Ok(frame)))
                }
                Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(Box::new(e)))),
                Poll::Ready(None) => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Empty => true,
            Self::Stream { inner, .. } => inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Empty => SizeHint::with_exact(0),
            Self::Stream { inner, .. } => inner.size_hint(),
        }
    }
}

/// A response body on its way to the client.
#[derive(Debug)]
pub enum ResponseBody {
    /// A response the proxy made itself.
    Local(Full<Bytes>),
    /// The upstream's body, counted.
    Upstream {
        /// The upstream's body; it gives its connection back to the pool
        /// once read to its end.
        inner: UpstreamBody,
        /// Where response bytes are counted.
        counter: Tally,
        /// Keeps the request counted in flight on its endpoint until the
        /// body is done (least-connections and draining see the whole exchange).
        in_flight: Option<InFlight>,
    },
}

impl ResponseBody {
    /// A local body.
    pub fn local(bytes: impl Into<Bytes>) -> Self {
        Self::Local(Full::new(bytes.into()))
    }

    /// An empty local body.
    pub fn empty() -> Self {
        Self::Local(Full::new(Bytes::new()))
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            Self::Local(full) => match Pin::new(full).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => Poll::Ready(Some(Ok(frame))),
                Poll::Ready(Some(Err(never))) => match never {},
                Poll::Ready(None) => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            },
            Self::Upstream {
                inner,
                counter,
                in_flight,
            } => match Pin::new(&mut *inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    if let Some(data) = frame.data_ref() {
                        counter.add(data.len() as u64);
                    }
                    // The server stops polling once the body says it has
                    // ended, so the last frame is where the exchange ends.
                    if inner.is_end_stream() {
                        in_flight.take();
                    }
                    Poll::Ready(Some(Ok(frame)))
                }
                Poll::Ready(Some(Err(e))) => {
                    in_flight.take();
                    Poll::Ready(Some(Err(e)))
                }
                Poll::Ready(None) => {
                    in_flight.take();
                    Poll::Ready(None)
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Local(full) => full.is_end_stream(),
            Self::Upstream { inner, .. } => inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Local(full) => full.size_hint(),
            Self::Upstream { inner, .. } => inner.size_hint(),
        }
    }
}

//! Upstream HTTP/1.1 exchanges on pooled keep-alive connections, driven by
//! the task that serves the client: it writes the request head, streams the
//! request body, reads the response head, and then reads the response body
//! from the socket as the client's connection polls it. There is no task
//! per upstream connection and no channel between the two sides.
//!
//! A request takes the most recently used idle connection of its endpoint
//! (or opens one within the route's connect timeout), and gives it back
//! when the response body has been read to its end — not before, since an
//! HTTP/1.1 connection carries one exchange at a time — if the response
//! allowed reuse and the whole request body went up. A response may come
//! before the request body is all sent: the rest goes up while the response
//! body is read. A connection whose exchange was cut short, whose request
//! body was not all sent by the response's end, or that switched protocols
//! is never reused. An idle connection the upstream closed is noticed by
//! its readiness on checkout (no system call unless something arrived) and
//! by a sweep every second; idle connections past the route's idle timeout
//! are closed on checkout or check-in (from the oldest end, so a request
//! never scans the whole list) and by the sweep. A request whose pooled
//! connection turns out closed before any byte of a response came back
//! goes again, once, on a new connection: if none of it was written, or if
//! it is idempotent and has no body. Each endpoint has its own lock, held
//! only to push or pop.
//!
//! Left to the readiness check: bytes an upstream sends after a complete
//! response (a body on a response to HEAD, say) are seen at checkout only
//! if the runtime has polled the kernel since they arrived; a connection
//! that received them later would read them as the next response. Checking
//! with a system call per request would close that window at the cost of
//! one `recv` per request.

use std::collections::VecDeque;
use std::future::Future;
use std::io::ErrorKind;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use http::request::Parts;
use http::{Method, Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::backends::endpoint::EndpointState;
use crate::http::body::{BoxError, RequestBody};
use crate::http1::wire::{
    self, Decoded, Decoder, Forwarding, RequestFraming, ResponseHead, WireError,
};

/// Idle connections kept per endpoint at most.
pub const MAX_IDLE_PER_ENDPOINT: usize = 256;
/// Read buffer room asked for before each read of a response head.
const HEAD_READ: usize = 8 * 1024;
/// Read buffer capacity an idle pooled connection may keep.
const IDLE_READ_CAPACITY: usize = 16 * 1024;

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
    Exchange(#[source] ExchangeError),
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

/// How an exchange on an open connection failed.
#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    /// Reading or writing the connection failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The upstream closed the connection before a response.
    #[error("the upstream closed the connection before responding")]
    Closed,
    /// The response is not valid HTTP/1.1.
    #[error(transparent)]
    Wire(#[from] WireError),
    /// The request body could not be read from the client (or is too large).
    #[error("request body: {0}")]
    Body(#[source] BoxError),
    /// The request body's length differs from its `Content-Length`.
    #[error("request body length differs from its Content-Length")]
    BodyLength,
}

/// An open connection to an upstream, with the bytes read past the last
/// message (none, between exchanges).
#[derive(Debug)]
pub struct Connection {
    stream: TcpStream,
    read: BytesMut,
    /// The request head being written, kept for its allocation.
    head: Vec<u8>,
    /// Whether it has carried an exchange before (and sat in the pool).
    reused: bool,
}

impl Connection {
    fn new(stream: TcpStream) -> Self {
        Self {
            stream,
            read: BytesMut::new(),
            head: Vec::new(),
            reused: false,
        }
    }

    /// Whether the upstream closed the connection (or sent something
    /// unasked) while it was idle. Readiness is what the runtime last
    /// heard from the kernel, so nothing is read unless it says something
    /// arrived; a close that lands later is caught by the retry in [`send`].
    fn is_closed(&self) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        match self.stream.poll_read_ready(&mut cx) {
            Poll::Pending => false,
            Poll::Ready(Err(_)) => true,
            Poll::Ready(Ok(())) => {
                let mut probe = [0u8; 1];
                !matches!(self.stream.try_read(&mut probe), Err(e) if e.kind() == ErrorKind::WouldBlock)
            }
        }
    }
}

#[derive(Debug)]
struct Idle {
    connection: Connection,
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

    /// The most recently used connection that is still open.
    fn checkout(&self) -> Option<Connection> {
        let now = Instant::now();
        loop {
            let entry = {
                let mut idle = self.lock();
                expire_oldest(&mut idle, now);
                idle.pop_back()?
            };
            if !entry.connection.is_closed() {
                return Some(entry.connection);
            }
        }
    }

    fn checkin(&self, mut connection: Connection, idle_timeout: Duration) {
        connection.reused = true;
        let now = Instant::now();
        let mut idle = self.lock();
        expire_oldest(&mut idle, now);
        if idle.len() >= MAX_IDLE_PER_ENDPOINT {
            idle.pop_front();
        }
        idle.push_back(Idle {
            connection,
            until: now + idle_timeout,
        });
    }

    /// Closes every idle connection past its timeout or closed by the
    /// upstream.
    pub fn sweep(&self) {
        let now = Instant::now();
        self.lock()
            .retain(|entry| entry.until > now && !entry.connection.is_closed());
    }
}

/// Drops expired connections from the oldest end, up to the first live
/// one: constant work per request in the usual case. Routes with different
/// idle timeouts may leave a later-expiring entry in front of an expired
/// one; the sweep catches those within a second.
fn expire_oldest(idle: &mut VecDeque<Idle>, now: Instant) {
    while idle.front().is_some_and(|entry| entry.until <= now) {
        idle.pop_front();
    }
}

/// Sends `request` to `endpoint` on a pooled connection, or a new one, with
/// the headers of `forwarding`, and returns the response; its body gives
/// the connection back to the pool once read to its end.
///
/// When no connection could be opened, the request comes back with the
/// error, unsent and whole, for a retry on another endpoint.
pub async fn send(
    endpoint: &Arc<EndpointState>,
    request: Request<RequestBody>,
    forwarding: &Forwarding<'_>,
    connect_timeout: Duration,
    idle_timeout: Duration,
) -> Result<Response<UpstreamBody>, (UpstreamError, Option<Request<RequestBody>>)> {
    let (parts, mut body) = request.into_parts();
    let framing = request_framing(&body);
    let replayable = framing == RequestFraming::Empty && is_idempotent(&parts.method);
    // An upstream may ignore a body where the method gives it no meaning,
    // and read it as the next request: such a connection is not reused.
    let reusable = framing == RequestFraming::Empty
        || !matches!(
            parts.method,
            Method::GET | Method::HEAD | Method::OPTIONS | Method::DELETE | Method::TRACE
        );
    if let Some(mut connection) = endpoint.pool().checkout() {
        match exchange(&mut connection, &parts, forwarding, &mut body, framing).await {
            Ok(exchanged) => {
                return Ok(response(
                    endpoint,
                    connection,
                    exchanged,
                    reusable,
                    idle_timeout,
                ));
            }
            // Closed by the upstream while it sat in the pool: once, on a
            // new connection, if the upstream cannot have acted on it.
            Err(failure) if failure.stale && (!failure.written || replayable) => {}
            Err(failure) => return Err((UpstreamError::Exchange(failure.error), None)),
        }
    }
    let mut connection = match connect(endpoint, connect_timeout).await {
        Ok(connection) => connection,
        Err(err) => return Err((err, Some(Request::from_parts(parts, body)))),
    };
    match exchange(&mut connection, &parts, forwarding, &mut body, framing).await {
        Ok(exchanged) => Ok(response(
            endpoint,
            connection,
            exchanged,
            reusable,
            idle_timeout,
        )),
        Err(failure) => Err((UpstreamError::Exchange(failure.error), None)),
    }
}

fn request_framing(body: &RequestBody) -> RequestFraming {
    if body.is_end_stream() {
        return RequestFraming::Empty;
    }
    // The length the server that read the request frames its body by (it
    // has checked the client's Content-Length); without one, chunked.
    match body.size_hint().exact() {
        Some(length) => RequestFraming::Length(length),
        None => RequestFraming::Chunked,
    }
}

/// Whether a method may be sent again without changing the outcome.
pub fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    )
}

/// A response head, and the rest of the request body when the response
/// came before all of it was sent.
struct Exchanged {
    head: ResponseHead,
    upload: Option<Box<(Upload, RequestBody)>>,
}

/// An exchange that failed: why, whether the connection was a pooled one
/// found closed before any byte of a response, and whether the request
/// head had been written.
struct Failure {
    error: ExchangeError,
    stale: bool,
    written: bool,
}

async fn exchange(
    connection: &mut Connection,
    parts: &Parts,
    forwarding: &Forwarding<'_>,
    body: &mut RequestBody,
    framing: RequestFraming,
) -> Result<Exchanged, Failure> {
    let reused = connection.reused;
    let target = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    connection.head.clear();
    wire::encode_request_head(
        &mut connection.head,
        &parts.method,
        target,
        &parts.headers,
        framing,
        forwarding,
    );
    let Connection {
        stream,
        read,
        head: request_head,
        ..
    } = connection;
    let fail = |error: ExchangeError, written: bool, received: bool| {
        let stale = reused
            && !received
            && match &error {
                ExchangeError::Closed => true,
                ExchangeError::Io(e) => matches!(
                    e.kind(),
                    ErrorKind::ConnectionReset
                        | ErrorKind::BrokenPipe
                        | ErrorKind::ConnectionAborted
                ),
                _ => false,
            };
        Failure {
            error,
            stale,
            written,
        }
    };
    if let Err(e) = stream.write_all(request_head).await {
        return Err(fail(e.into(), false, false));
    }
    let mut upload = Upload::new(framing);
    let mut received = false;
    // The socket refused more of the body: an upstream that answers and
    // closes without reading it. Its answer may still be on the way.
    let mut refused: Option<std::io::Error> = None;
    loop {
        while !read.is_empty() {
            match wire::parse_response_head(read, &parts.method) {
                // 100 Continue and the like: the final response follows.
                Ok(Some(head))
                    if head.status.is_informational()
                        && head.status != StatusCode::SWITCHING_PROTOCOLS => {}
                Ok(Some(mut head)) => {
                    // A response before the whole body (a refusal, or an
                    // upstream that streams back as it reads): the rest goes
                    // up while the response body is read.
                    let upload = if refused.is_some() {
                        head.keep_alive = false;
                        None
                    } else {
                        (!upload.is_done()).then(|| {
                            Box::new((upload, std::mem::replace(body, RequestBody::Empty)))
                        })
                    };
                    return Ok(Exchanged { head, upload });
                }
                Ok(None) => break,
                Err(e) => return Err(fail(e.into(), true, true)),
            }
        }
        read.reserve(HEAD_READ);
        let got = std::future::poll_fn(|cx| {
            if refused.is_none() && !upload.is_done() {
                match upload.poll(body, stream, cx) {
                    Poll::Ready(Err(ExchangeError::Io(e))) => refused = Some(e),
                    // The client's body failed: the upstream would wait for
                    // the rest of it.
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Ready(Ok(())) | Poll::Pending => {}
                }
            }
            pin!(stream.read_buf(&mut *read))
                .poll(cx)
                .map_err(ExchangeError::Io)
        })
        .await;
        match got {
            Ok(0) => {
                let error = refused
                    .take()
                    .map_or(ExchangeError::Closed, ExchangeError::Io);
                return Err(fail(error, true, received));
            }
            Ok(_) => received = true,
            Err(e) => return Err(fail(e, true, received)),
        }
    }
}

/// A request body on its way up, written as the socket takes it.
#[derive(Debug)]
struct Upload {
    framing: RequestFraming,
    /// Bytes framed and not yet written.
    pending: Bytes,
    /// Body bytes taken so far.
    taken: u64,
    /// The body has ended (its last framing may still be pending).
    ended: bool,
}

impl Upload {
    fn new(framing: RequestFraming) -> Self {
        Self {
            framing,
            pending: Bytes::new(),
            taken: 0,
            ended: matches!(framing, RequestFraming::Empty | RequestFraming::Length(0)),
        }
    }

    fn is_done(&self) -> bool {
        self.ended && self.pending.is_empty()
    }

    /// Writes what the socket takes of the body: ready once all of it is
    /// written. A body longer or shorter than its declared length is an
    /// error (the upstream would read the difference as another message).
    fn poll(
        &mut self,
        body: &mut RequestBody,
        stream: &mut TcpStream,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), ExchangeError>> {
        use tokio::io::AsyncWrite;
        loop {
            while !self.pending.is_empty() {
                match Pin::new(&mut *stream).poll_write(cx, &self.pending) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Ok(0)) => {
                        return Poll::Ready(Err(ExchangeError::Io(ErrorKind::WriteZero.into())));
                    }
                    Poll::Ready(Ok(n)) => self.pending.advance(n),
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e.into())),
                }
            }
            if self.ended {
                return Poll::Ready(Ok(()));
            }
            let frame = match Pin::new(&mut *body).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => None,
                Poll::Ready(Some(Ok(frame))) => Some(frame),
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(ExchangeError::Body(e))),
            };
            // Request trailers are not forwarded, as `Trailer` is not.
            let data = frame.and_then(|f| f.into_data().ok());
            match (data, self.framing) {
                (Some(data), _) if data.is_empty() => {}
                (Some(data), RequestFraming::Length(length)) => {
                    self.taken += data.len() as u64;
                    if self.taken > length {
                        return Poll::Ready(Err(ExchangeError::BodyLength));
                    }
                    // Done at the declared length: the end of the client's
                    // stream may come in a frame of its own, later.
                    self.ended = self.taken == length;
                    self.pending = data;
                }
                (Some(data), _) => {
                    self.taken += data.len() as u64;
                    let mut size = [0u8; 18];
                    let line = wire::encode_chunk_size(&mut size, data.len());
                    let mut framed = BytesMut::with_capacity(line.len() + data.len() + 2);
                    framed.extend_from_slice(line);
                    framed.extend_from_slice(&data);
                    framed.extend_from_slice(b"\r\n");
                    self.pending = framed.freeze();
                }
                (None, RequestFraming::Length(length)) => {
                    if self.taken != length {
                        return Poll::Ready(Err(ExchangeError::BodyLength));
                    }
                    self.ended = true;
                }
                (None, _) => {
                    self.pending = Bytes::from_static(b"0\r\n\r\n");
                    self.ended = true;
                }
            }
        }
    }
}

fn response(
    endpoint: &Arc<EndpointState>,
    connection: Connection,
    exchanged: Exchanged,
    reusable: bool,
    idle_timeout: Duration,
) -> Response<UpstreamBody> {
    let Exchanged { head, upload } = exchanged;
    let upgraded = head.status == StatusCode::SWITCHING_PROTOCOLS;
    let mut body = UpstreamBody {
        connection: Some(connection),
        decoder: Decoder::new(head.framing),
        reusable: reusable && head.keep_alive && !upgraded,
        upload_failed: false,
        upload,
        home: Some((Arc::clone(endpoint), idle_timeout)),
    };
    if !upgraded && body.decoder.is_done() {
        body.finish();
    }
    let mut response = Response::new(body);
    *response.status_mut() = head.status;
    *response.headers_mut() = head.headers;
    response
}

async fn connect(endpoint: &EndpointState, timeout: Duration) -> Result<Connection, UpstreamError> {
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
    Ok(Connection::new(stream))
}

/// An upstream response body, read from the connection as it is polled;
/// the connection goes back to its endpoint's pool at the body's end (or
/// is closed, when the body is dropped before it or reuse is not allowed).
#[derive(Debug)]
pub struct UpstreamBody {
    connection: Option<Connection>,
    decoder: Decoder,
    reusable: bool,
    /// Sending the rest of the request body failed: the upstream's close
    /// that follows is not the end of a body read until close.
    upload_failed: bool,
    /// The request body still going up, when the response came first
    /// (rare: boxed, to keep the body small).
    upload: Option<Box<(Upload, RequestBody)>>,
    home: Option<(Arc<EndpointState>, Duration)>,
}

/// A connection that switched protocols, with what the upstream sent
/// after its 101 response.
#[derive(Debug)]
pub struct Upgraded {
    /// The connection.
    pub stream: TcpStream,
    /// Bytes already read past the response head.
    pub read: Bytes,
}

impl UpstreamBody {
    /// The body has ended: the connection goes back to the pool, if it may
    /// carry another exchange, the whole request went up, and nothing
    /// unasked came after the body.
    fn finish(&mut self) {
        let uploaded = self.upload.take().is_none();
        if let (Some(mut connection), Some((endpoint, idle_timeout))) =
            (self.connection.take(), self.home.take())
            && self.reusable
            && uploaded
            && connection.read.is_empty()
        {
            // A large body may have grown the buffer; idle, it stays small.
            if connection.read.capacity() > IDLE_READ_CAPACITY {
                connection.read = BytesMut::new();
            }
            endpoint.pool().checkin(connection, idle_timeout);
        }
    }

    /// Sends more of a request body the response came before; a failure
    /// only means the connection is not reused.
    fn poll_upload(&mut self, cx: &mut Context<'_>) {
        use tokio::io::AsyncWrite;
        if let (Some(pending), Some(connection)) = (self.upload.as_mut(), self.connection.as_mut())
        {
            let (upload, body) = &mut **pending;
            match upload.poll(body, &mut connection.stream, cx) {
                Poll::Ready(Ok(())) => self.upload = None,
                Poll::Ready(Err(_)) => {
                    self.upload = None;
                    self.reusable = false;
                    self.upload_failed = true;
                    // The upstream must not wait for the rest of the body
                    // (and so hold the response back): end our side.
                    let _ = Pin::new(&mut connection.stream).poll_shutdown(cx);
                }
                Poll::Pending => {}
            }
        }
    }

    /// The connection of a `101 Switching Protocols` response.
    pub fn into_upgraded(mut self) -> Option<Upgraded> {
        let connection = self.connection.take()?;
        Some(Upgraded {
            stream: connection.stream,
            read: connection.read.freeze(),
        })
    }

    fn fail(&mut self, error: impl Into<BoxError>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.connection = None;
        self.upload = None;
        self.decoder = Decoder::new(wire::Framing::Empty);
        Poll::Ready(Some(Err(error.into())))
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if this.upload.is_some() {
            this.poll_upload(cx);
        }
        loop {
            let Some(connection) = this.connection.as_mut() else {
                return Poll::Ready(None);
            };
            match this.decoder.decode(&mut connection.read) {
                Ok(Decoded::Data(data)) => {
                    if this.decoder.is_done() {
                        this.finish();
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Ok(Decoded::Trailers(trailers)) => {
                    this.finish();
                    return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
                }
                Ok(Decoded::End) => {
                    this.finish();
                    return Poll::Ready(None);
                }
                Ok(Decoded::NeedMore) => {}
                Err(e) => return this.fail(e),
            }
            let want = this.decoder.want();
            let Connection { stream, read, .. } = connection;
            read.reserve(want);
            match pin!(stream.read_buf(read)).poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(0)) => {
                    if this.upload_failed {
                        return this.fail(ExchangeError::Closed);
                    }
                    if let Err(e) = this.decoder.at_eof() {
                        return this.fail(e);
                    }
                    // Read until close: the connection is spent.
                    this.reusable = false;
                    this.finish();
                    return Poll::Ready(None);
                }
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(e)) => return this.fail(e),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.decoder.is_done()
    }

    fn size_hint(&self) -> SizeHint {
        match self.decoder.remaining() {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
}

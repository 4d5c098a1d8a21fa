//! The server side of HTTP/1.x for requests without a body: the bulk of
//! the traffic an edge proxy sees (GET, HEAD, and the like), served in the
//! connection's task with one read buffer, one write buffer and one timer
//! for the connection's whole life.
//!
//! Anything else hands the connection, with every byte read so far, to
//! hyper's server for the rest of its life: a request with a body or a
//! `Transfer-Encoding`, `Expect`, `Upgrade`, `CONNECT`, an HTTP/2 preface,
//! a head this parser rejects, has too many fields for it, or does not end
//! within [`MAX_HEADER_BYTES`]. hyper then answers, frames and rejects
//! exactly as before (400, 431, 100-continue, upgrades, h2c). Both paths
//! parse the head with httparse; this one takes only requests whose end
//! is the end of their head, so the two can never disagree on where the
//! next request starts.
//!
//! Responses are written with `Content-Length` when the body's length is
//! known, else chunked (HTTP/1.1) or until close (HTTP/1.0). Head and body
//! share one write when the body is ready with its head.

use std::future::Future;
use std::io::{self, Write as _};
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use bytes::{Buf, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, StatusCode, Uri, Version};
use http_body::Body;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::http::body::{ClientBody, ResponseBody};
use crate::http1::wire::{Span, write_field};
use crate::request::{ConnInfo, MAX_HEADER_BYTES, Proxy, content_length};

/// Time a client has to send a request head, idle time before it included.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Header fields this path parses; a head with more goes to hyper.
const MAX_FIELDS: usize = 64;

/// Read buffer capacity kept between requests.
const READ_CHUNK: usize = 4096;

/// Body frames up to this size are copied behind the head (one write);
/// larger ones are written from their own buffer.
const COPY_LIMIT: usize = 8 * 1024;

/// How a connection served by [`serve`] ended.
pub enum Served<I> {
    /// Closed (by either side, or after an error already answered).
    Closed,
    /// A request this path does not take: `io` continues with `read`, the
    /// bytes already read from it (that request's head among them).
    Handoff {
        /// The connection.
        io: I,
        /// Bytes read and not consumed.
        read: Bytes,
        /// Whether requests were served before: the connection then stays
        /// HTTP/1 (a preface now is not the start of HTTP/2).
        served: bool,
    },
}

/// Serves requests on `io` until it closes, times out, shutdown is
/// signalled while it is idle, or a request needs hyper.
pub async fn serve<I>(
    mut io: I,
    proxy: Arc<Proxy>,
    info: ConnInfo,
    shutdown: watch::Receiver<bool>,
) -> Served<I>
where
    I: AsyncRead + AsyncWrite + Unpin,
{
    let mut read = BytesMut::with_capacity(READ_CHUNK);
    let mut out: Vec<u8> = Vec::with_capacity(READ_CHUNK);
    let mut deadline = Instant::now() + HEADER_READ_TIMEOUT;
    // One timer for the connection's life: moved only when it fires early.
    let mut timer = pin!(tokio::time::sleep_until(deadline));
    let mut stop = pin!(stopped(shutdown));
    let mut served = false;
    let mut lingered = false;
    loop {
        // A request head: parsed from what is buffered, read until complete.
        // A partial head is parsed again only once an end of head may have
        // arrived (the new bytes hold an empty line), never per read.
        let mut scanned = 0;
        let head = loop {
            let parsed = if read.len() > scanned && may_end_head(&read, scanned) {
                parse(&mut read)
            } else {
                Parsed::Partial
            };
            match parsed {
                Parsed::Request(head) => break head,
                Parsed::Partial if read.len() < MAX_HEADER_BYTES => {}
                Parsed::Partial | Parsed::Other => {
                    return Served::Handoff {
                        io,
                        read: read.freeze(),
                        served,
                    };
                }
            }
            scanned = read.len();
            if read.capacity() - read.len() < READ_CHUNK / 2 {
                read.reserve(READ_CHUNK);
            }
            let idle = read.is_empty();
            let got = std::future::poll_fn(|cx| {
                if let Poll::Ready(got) = pin!(io.read_buf(&mut read)).poll(cx) {
                    return Poll::Ready(Wait::Read(got));
                }
                // An idle connection closes on shutdown; one half-way
                // through a head gets its answer first.
                if idle && stop.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Wait::Stop);
                }
                while timer.as_mut().poll(cx).is_ready() {
                    if Instant::now() >= deadline {
                        return Poll::Ready(Wait::Timeout);
                    }
                    timer.as_mut().reset(deadline);
                }
                Poll::Pending
            })
            .await;
            match got {
                Wait::Read(Ok(n)) if n > 0 => {}
                Wait::Read(_) => return Served::Closed,
                // A request the client sent just before the signal may not
                // have been seen yet: once more round the runtime (its I/O
                // driver runs first), then close if nothing came.
                Wait::Stop if !lingered => {
                    lingered = true;
                    tokio::task::yield_now().await;
                }
                // Shutdown or the deadline: say goodbye (TLS close_notify).
                Wait::Stop | Wait::Timeout => {
                    let _ = tokio::time::timeout(Duration::from_secs(1), io.shutdown()).await;
                    return Served::Closed;
                }
            }
        };
        served = true;
        let keep_alive = head.keep_alive;
        let head_only = head.request.method() == Method::HEAD;
        let trailers = head.trailers;
        // The client leaving cancels the request (and its upstream
        // exchange); bytes it pipelines meanwhile wait in the buffer.
        let mut handling = pin!(Arc::clone(&proxy).handle(head.request, info));
        let response = std::future::poll_fn(|cx| {
            if let Poll::Ready(response) = handling.as_mut().poll(cx) {
                return Poll::Ready(Some(response));
            }
            if read.len() < MAX_HEADER_BYTES {
                if read.capacity() == read.len() {
                    read.reserve(READ_CHUNK);
                }
                match pin!(io.read_buf(&mut read)).poll(cx) {
                    Poll::Ready(Ok(0) | Err(_)) => return Poll::Ready(None),
                    Poll::Ready(Ok(_)) | Poll::Pending => {}
                }
            }
            Poll::Pending
        })
        .await;
        let Some(Ok(response)) = response else {
            return Served::Closed;
        };
        // Shutdown signalled while the request was handled: its answer says
        // the connection closes, so the client does not send another.
        let keep_alive = keep_alive && !stop.shutting_down();
        let (parts, body) = response.into_parts();
        let kept = write_response(
            &mut io,
            &mut out,
            parts.status,
            &parts.headers,
            body,
            Wanted {
                head_only,
                version: head.version,
                keep_alive,
                trailers,
            },
        )
        .await;
        if !kept || stop.shutting_down() {
            let _ = io.shutdown().await;
            return Served::Closed;
        }
        if out.capacity() > 4 * READ_CHUNK {
            out = Vec::with_capacity(READ_CHUNK);
        }
        deadline = Instant::now() + HEADER_READ_TIMEOUT;
    }
}

/// What waiting for request bytes ended with.
enum Wait {
    Read(io::Result<usize>),
    Stop,
    Timeout,
}

/// Whether the bytes of `read` from `scanned` on (with the three before,
/// for an end split across reads) hold an empty line.
fn may_end_head(read: &[u8], scanned: usize) -> bool {
    if scanned == 0 {
        return true;
    }
    let new = &read[scanned.saturating_sub(3)..];
    new.windows(2).any(|w| w == b"\n\n") || new.windows(4).any(|w| w == b"\r\n\r\n")
}

/// Ready once shutdown has been signalled (never if its sender is gone).
struct Stopped {
    inner: Pin<Box<dyn Future<Output = ()> + Send>>,
    done: bool,
    shutdown: watch::Receiver<bool>,
}

fn stopped(shutdown: watch::Receiver<bool>) -> Stopped {
    let mut changes = shutdown.clone();
    Stopped {
        inner: Box::pin(async move {
            while !*changes.borrow_and_update() {
                if changes.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        }),
        done: false,
        shutdown,
    }
}

impl Stopped {
    /// Whether shutdown has been signalled, without waiting.
    fn shutting_down(&self) -> bool {
        self.done || *self.shutdown.borrow()
    }
}

impl Future for Stopped {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if !this.done {
            this.done = this.inner.as_mut().poll(cx).is_ready();
        }
        if this.done {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

/// A request this path serves.
struct Head {
    request: Request<ClientBody>,
    version: Version,
    keep_alive: bool,
    /// The client accepts trailers (`TE: trailers`).
    trailers: bool,
}

#[allow(
    clippy::large_enum_variant,
    reason = "returned by value once per request, straight into the caller's frame"
)]
enum Parsed {
    Request(Head),
    Partial,
    /// Not for this path: hyper takes the connection.
    Other,
}

/// Parses the head at the start of `read`; on success it is split off.
fn parse(read: &mut BytesMut) -> Parsed {
    let mut fields = [httparse::EMPTY_HEADER; MAX_FIELDS];
    let mut spans = [Span::default(); MAX_FIELDS];
    let base = read.as_ptr() as usize;
    let (len, method, target, minor, count, keep_alive, trailers) = {
        let mut req = httparse::Request::new(&mut fields);
        let len = match req.parse(read) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) => return Parsed::Partial,
            Err(_) => return Parsed::Other,
        };
        let (Some(method), Some(path), Some(minor)) = (req.method, req.path, req.version) else {
            return Parsed::Other;
        };
        let Ok(method) = Method::from_bytes(method.as_bytes()) else {
            return Parsed::Other;
        };
        if method == Method::CONNECT {
            return Parsed::Other;
        }
        let mut keep_alive = minor == 1;
        let mut close = false;
        let mut trailers = false;
        let mut count = 0;
        for field in req.headers.iter() {
            let name = field.name.as_bytes();
            if name.eq_ignore_ascii_case(b"content-length") {
                // Only a length of zero: no body to frame.
                if field.value.trim_ascii() != b"0" {
                    return Parsed::Other;
                }
            } else if name.eq_ignore_ascii_case(b"transfer-encoding")
                || name.eq_ignore_ascii_case(b"expect")
                || name.eq_ignore_ascii_case(b"upgrade")
            {
                return Parsed::Other;
            } else if name.eq_ignore_ascii_case(b"connection") {
                for token in crate::http1::wire::tokens(field.value) {
                    if token.eq_ignore_ascii_case(b"close") {
                        close = true;
                    } else if minor == 0 && token.eq_ignore_ascii_case(b"keep-alive") {
                        keep_alive = true;
                    }
                }
            } else if name.eq_ignore_ascii_case(b"te") {
                trailers |= crate::http1::wire::tokens(field.value)
                    .any(|t| t.eq_ignore_ascii_case(b"trailers"));
            }
            spans[count] = Span::of(field, base);
            count += 1;
        }
        let target_at = path.as_ptr() as usize - base;
        (
            len,
            method,
            (target_at, target_at + path.len()),
            minor,
            count,
            keep_alive && !close,
            trailers,
        )
    };
    // Everything the head refers to lives in one shared buffer.
    let bytes = read.split_to(len).freeze();
    let Ok(uri) = Uri::from_maybe_shared(bytes.slice(target.0..target.1)) else {
        return unparse(read, &bytes);
    };
    let mut headers = HeaderMap::with_capacity(count);
    for span in &spans[..count] {
        let Ok(name) = HeaderName::from_bytes(&bytes[span.name.0..span.name.1]) else {
            return unparse(read, &bytes);
        };
        let Ok(value) = HeaderValue::from_maybe_shared(bytes.slice(span.value.0..span.value.1))
        else {
            return unparse(read, &bytes);
        };
        headers.append(name, value);
    }
    let version = if minor == 0 {
        Version::HTTP_10
    } else {
        Version::HTTP_11
    };
    let mut request = Request::new(ClientBody::Empty);
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.version_mut() = version;
    *request.headers_mut() = headers;
    Parsed::Request(Head {
        request,
        version,
        keep_alive,
        trailers,
    })
}

/// Puts a split-off head back in front of the buffer, for hyper.
#[cold]
fn unparse(read: &mut BytesMut, head: &Bytes) -> Parsed {
    let rest = read.split();
    read.extend_from_slice(head);
    read.extend_from_slice(&rest);
    Parsed::Other
}

/// How the response body is delimited on the wire.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Framing {
    None,
    Length(u64),
    Chunked,
    Close,
}

/// What the request asked of its response.
struct Wanted {
    head_only: bool,
    version: Version,
    keep_alive: bool,
    /// The client accepts trailers.
    trailers: bool,
}

/// `out` is written once it holds this much, ready or not.
const OUT_LIMIT: usize = 64 * 1024;

/// Writes the response; whether the connection can serve another request.
async fn write_response<I>(
    io: &mut I,
    out: &mut Vec<u8>,
    status: StatusCode,
    headers: &HeaderMap,
    body: ResponseBody,
    wanted: Wanted,
) -> bool
where
    I: AsyncWrite + Unpin,
{
    let Wanted {
        head_only,
        version,
        mut keep_alive,
        trailers,
    } = wanted;
    out.clear();
    // RFC 9110 §8.6: no Content-Length on 1xx and 204.
    let no_length = status.is_informational() || status == StatusCode::NO_CONTENT;
    let bodiless = no_length || status == StatusCode::NOT_MODIFIED;
    let declared = content_length(headers);
    let exact = body.size_hint().exact();
    // The body's own length, written when the head has none; an empty body
    // to HEAD says nothing of the resource's length.
    let length_line = if bodiless || declared.is_some() {
        None
    } else {
        exact.filter(|&n| !(head_only && n == 0))
    };
    let framing = if bodiless || head_only {
        Framing::None
    } else if let Some(n) = declared.or(exact) {
        Framing::Length(n)
    } else if version == Version::HTTP_11 {
        Framing::Chunked
    } else {
        keep_alive = false;
        Framing::Close
    };

    // The client's version, as hyper answers.
    out.extend_from_slice(if version == Version::HTTP_10 {
        b"HTTP/1.0 "
    } else {
        b"HTTP/1.1 "
    });
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in headers {
        if *name == header::CONNECTION
            || *name == header::TRANSFER_ENCODING
            || (*name == header::CONTENT_LENGTH && (declared.is_none() || no_length))
        {
            continue;
        }
        write_field(out, name.as_str().as_bytes(), value.as_bytes());
    }
    if let Some(n) = length_line {
        let _ = write!(out, "content-length: {n}\r\n");
    }
    if framing == Framing::Chunked {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
    }
    if !headers.contains_key(header::DATE) {
        out.extend_from_slice(b"date: ");
        DATE.with_borrow_mut(|date| out.extend_from_slice(date.now()));
        out.extend_from_slice(b"\r\n");
    }
    if !keep_alive {
        out.extend_from_slice(b"connection: close\r\n");
    } else if version == Version::HTTP_10 {
        out.extend_from_slice(b"connection: keep-alive\r\n");
    }
    out.extend_from_slice(b"\r\n");

    if framing == Framing::None {
        return flush(io, out).await && keep_alive;
    }
    let mut sent: u64 = 0;
    let mut body = pin!(body);
    loop {
        let frame = match std::future::poll_fn(|cx| Poll::Ready(body.as_mut().poll_frame(cx))).await
        {
            Poll::Ready(frame) => frame,
            Poll::Pending => {
                // Nothing more yet: what is written so far goes out first.
                if !flush(io, out).await {
                    return false;
                }
                std::future::poll_fn(|cx| body.as_mut().poll_frame(cx)).await
            }
        };
        match frame {
            None => break,
            Some(Err(_)) => {
                // The body failed mid-way: the client must not take a
                // short body for a whole one.
                let _ = flush(io, out).await;
                return false;
            }
            Some(Ok(frame)) => match frame.into_data() {
                Ok(mut data) => {
                    if data.is_empty() {
                        continue;
                    }
                    if let Framing::Length(n) = framing {
                        let room = n - sent;
                        if data.len() as u64 > room {
                            // More than the length said: cut, and close.
                            data.truncate(usize::try_from(room).unwrap_or(0));
                            if write_data(io, out, &data).await {
                                let _ = flush(io, out).await;
                            }
                            return false;
                        }
                    }
                    sent += data.len() as u64;
                    if framing == Framing::Chunked {
                        let mut size = [0u8; 18];
                        out.extend_from_slice(crate::http1::wire::encode_chunk_size(
                            &mut size,
                            data.len(),
                        ));
                        if !write_data(io, out, &data).await {
                            return false;
                        }
                        out.extend_from_slice(b"\r\n");
                    } else if !write_data(io, out, &data).await {
                        return false;
                    }
                }
                Err(frame) => {
                    let Ok(fields) = frame.into_trailers() else {
                        continue;
                    };
                    if framing != Framing::Chunked {
                        continue;
                    }
                    out.extend_from_slice(b"0\r\n");
                    if trailers {
                        for (name, value) in &fields {
                            if trailer_allowed(name) {
                                write_field(out, name.as_str().as_bytes(), value.as_bytes());
                            }
                        }
                    }
                    out.extend_from_slice(b"\r\n");
                    return flush(io, out).await && keep_alive;
                }
            },
        }
    }
    match framing {
        Framing::Chunked => out.extend_from_slice(b"0\r\n\r\n"),
        Framing::Length(n) if sent != n => {
            let _ = flush(io, out).await;
            return false;
        }
        _ => {}
    }
    flush(io, out).await && keep_alive && framing != Framing::Close
}

/// Whether a trailer field may be passed on: not one that frames, routes,
/// authenticates or controls the message (RFC 9110 §6.5.1).
fn trailer_allowed(name: &HeaderName) -> bool {
    ![
        header::AGE,
        header::AUTHORIZATION,
        header::CACHE_CONTROL,
        header::CONTENT_ENCODING,
        header::CONTENT_LENGTH,
        header::CONTENT_RANGE,
        header::CONTENT_TYPE,
        header::DATE,
        header::EXPECT,
        header::EXPIRES,
        header::HOST,
        header::LOCATION,
        header::MAX_FORWARDS,
        header::PRAGMA,
        header::PROXY_AUTHENTICATE,
        header::PROXY_AUTHORIZATION,
        header::RANGE,
        header::RETRY_AFTER,
        header::SET_COOKIE,
        header::TE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
        header::VARY,
        header::WWW_AUTHENTICATE,
    ]
    .contains(name)
}

/// Writes and flushes what `out` holds (TLS keeps written bytes until a
/// flush); `out` is empty after.
async fn flush<I: AsyncWrite + Unpin>(io: &mut I, out: &mut Vec<u8>) -> bool {
    if !out.is_empty() && io.write_all(out).await.is_err() {
        return false;
    }
    out.clear();
    io.flush().await.is_ok()
}

/// Appends `data` to `out`, or writes both when `data` is large; `out` is
/// empty after a write.
async fn write_data<I: AsyncWrite + Unpin>(io: &mut I, out: &mut Vec<u8>, data: &Bytes) -> bool {
    if data.len() <= COPY_LIMIT {
        out.extend_from_slice(data);
        // Many small frames to a slow client: written as they add up, not
        // held.
        if out.len() >= OUT_LIMIT {
            if io.write_all(out).await.is_err() {
                return false;
            }
            out.clear();
        }
        return true;
    }
    let mut first = &out[..];
    let mut second = &data[..];
    while !first.is_empty() || !second.is_empty() {
        let slices = [io::IoSlice::new(first), io::IoSlice::new(second)];
        let written = match io.write_vectored(&slices).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => n,
        };
        let from_first = written.min(first.len());
        first = &first[from_first..];
        second = &second[written - from_first..];
    }
    out.clear();
    true
}

/// The `Date` value, formatted once per second per thread.
struct CachedDate {
    second: u64,
    text: [u8; 29],
}

impl CachedDate {
    fn now(&mut self) -> &[u8] {
        let now = SystemTime::now();
        let second = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if second != self.second {
            self.second = second;
            let formatted = httpdate::fmt_http_date(now);
            let len = formatted.len().min(self.text.len());
            self.text[..len].copy_from_slice(&formatted.as_bytes()[..len]);
        }
        &self.text
    }
}

thread_local! {
    static DATE: std::cell::RefCell<CachedDate> = const {
        std::cell::RefCell::new(CachedDate { second: 0, text: [b' '; 29] })
    };
}

/// A connection with bytes already read from it in front: what hyper reads
/// after a hand-off.
pub struct Prefixed<I> {
    read: Bytes,
    io: I,
}

impl<I> Prefixed<I> {
    /// `io`, to be read after `read`.
    pub fn new(read: Bytes, io: I) -> Self {
        Self { read, io }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Prefixed<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.read.is_empty() {
            let n = this.read.len().min(buf.remaining());
            buf.put_slice(&this.read[..n]);
            this.read.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Prefixed<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

//! The HTTP/1.1 wire format of upstream exchanges (RFC 9112), without I/O:
//! request heads written straight from the request's parts, response heads
//! parsed by httparse into `http` types whose values share the bytes read,
//! and response body framing (length, chunked, until close).
//!
//! Invariants: hop-by-hop headers of a response (RFC 9110 §7.6.1, and the
//! names its `Connection` header lists) never reach the parsed head; a
//! response whose framing is ambiguous (`Transfer-Encoding` with
//! `Content-Length`, conflicting lengths) either fails or closes its
//! connection after use; heads and trailer sections past
//! [`MAX_RESPONSE_HEAD`] bytes are errors, not buffered.

use std::io::Write as _;

use bytes::{Buf, Bytes, BytesMut};
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode, Version};

/// Largest response head, and largest trailer section, accepted.
pub const MAX_RESPONSE_HEAD: usize = 64 * 1024;
/// Most header lines in a response head (as hyper allows).
const MAX_HEADERS: usize = 100;
/// Header lines tried first, on the stack; more goes to the heap.
const USUAL_HEADERS: usize = 32;
/// Longest chunk-size line (with extensions) accepted.
const MAX_CHUNK_LINE: usize = 4096;
/// Chunk extension bytes accepted over one body.
const MAX_EXTENSION_BYTES: u64 = 16 * 1024;

/// A response the proxy cannot read as HTTP/1.1.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// The head is not valid HTTP.
    #[error("malformed response head: {0}")]
    Head(httparse::Error),
    /// The head is larger than [`MAX_RESPONSE_HEAD`] or has too many lines.
    #[error("response head too large")]
    HeadTooLarge,
    /// A header value is not a valid field value.
    #[error("invalid response header {0}")]
    Header(Box<str>),
    /// `Content-Length` is not a number, or two differ.
    #[error("invalid or conflicting Content-Length")]
    ContentLength,
    /// A transfer coding other than a lone `chunked`, which the proxy
    /// would have to pass on undecoded without saying so.
    #[error("unsupported Transfer-Encoding")]
    TransferCoding,
    /// The chunked body framing is broken.
    #[error("malformed chunked body: {0}")]
    Chunked(&'static str),
    /// The upstream closed the connection before the body's end.
    #[error("upstream closed the connection {0} bytes before the body's end")]
    Truncated(u64),
}

/// How a request body goes on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestFraming {
    /// No body follows the head.
    Empty,
    /// The body's length is declared by the client's `Content-Length`;
    /// the head says it in a `Content-Length` of its own.
    Length(u64),
    /// Unknown length: `Transfer-Encoding: chunked`.
    Chunked,
}

/// What a forwarding hop says about the request it passes on: the headers
/// it writes after the client's (RFC 7239 `Forwarded`, the `X-Forwarded-*`
/// family, `X-Request-Id`), in place of any the client sent, except that
/// earlier hops' `X-Forwarded-For` and `Forwarded` entries are kept in front.
#[derive(Debug, Clone, Copy)]
pub struct Forwarding<'a> {
    /// The client's IP address as text.
    pub client_ip: &'a [u8],
    /// Whether that address is IPv6 (quoted and bracketed in `Forwarded`).
    pub client_ipv6: bool,
    /// Whether the client connection is TLS.
    pub tls: bool,
    /// The host the client asked for; empty when it named none.
    pub host: &'a HeaderValue,
    /// The request's id.
    pub request_id: &'a HeaderValue,
    /// The request asks for a protocol upgrade: `Upgrade` is kept and
    /// `Connection: upgrade` sent.
    pub upgrade: bool,
}

/// What the request head writer does with a client header.
enum Kind {
    Keep,
    /// One connection only (RFC 9110 §7.6.1): never forwarded.
    HopByHop,
    Upgrade,
    /// Written anew from [`Forwarding`].
    Replaced,
    /// Written from the request's framing, never copied: a header the
    /// client could drop (by naming it in `Connection`) must not decide
    /// how the upstream reads the body.
    ContentLength,
    ForwardedFor,
    Forwarded,
}

fn kind(name: &HeaderName) -> Kind {
    match name.as_str() {
        "connection"
        | "keep-alive"
        | "proxy-connection"
        | "te"
        | "trailer"
        | "transfer-encoding"
        | "proxy-authorization" => Kind::HopByHop,
        "upgrade" => Kind::Upgrade,
        "host" | "x-forwarded-proto" | "x-forwarded-host" | "x-request-id" => Kind::Replaced,
        "content-length" => Kind::ContentLength,
        "x-forwarded-for" => Kind::ForwardedFor,
        "forwarded" => Kind::Forwarded,
        _ => Kind::Keep,
    }
}

/// Writes the request line and headers of a request for `target` into
/// `out`: the client's end-to-end headers in their order, without hop-by-hop
/// headers (nor those its `Connection` header names), then the forwarding
/// headers, then the body's framing: `Content-Length` from
/// [`RequestFraming::Length`] (or 0 for an empty body the client declared),
/// `Transfer-Encoding: chunked` for [`RequestFraming::Chunked`]. The
/// client's own `Content-Length` is never copied.
/// One pass over the headers; nothing is hashed.
pub fn encode_request_head(
    out: &mut Vec<u8>,
    method: &Method,
    target: &str,
    headers: &HeaderMap,
    framing: RequestFraming,
    forwarding: &Forwarding<'_>,
) {
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let connection = headers.get_all(http::header::CONNECTION);
    let names_more = connection
        .iter()
        .any(|v| tokens(v.as_bytes()).any(names_a_header));
    let (mut prior_for, mut prior_forwarded, mut declared_length) = (false, false, false);
    for (name, value) in headers {
        match kind(name) {
            Kind::Keep => {}
            Kind::HopByHop | Kind::Replaced => continue,
            Kind::ContentLength => {
                declared_length = true;
                continue;
            }
            Kind::Upgrade if !forwarding.upgrade => continue,
            Kind::Upgrade => {
                write_field(out, name.as_str().as_bytes(), value.as_bytes());
                continue;
            }
            Kind::ForwardedFor => {
                prior_for = true;
                continue;
            }
            Kind::Forwarded => {
                prior_forwarded = true;
                continue;
            }
        }
        if names_more
            && connection.iter().any(|v| {
                tokens(v.as_bytes()).any(|t| t.eq_ignore_ascii_case(name.as_str().as_bytes()))
            })
        {
            continue;
        }
        write_field(out, name.as_str().as_bytes(), value.as_bytes());
    }
    let host = forwarding.host.as_bytes();
    // Sent even when empty (RFC 9112 §3.2): an HTTP/1.0 client may name none.
    write_field(out, b"host", host);
    out.extend_from_slice(b"x-forwarded-for: ");
    if prior_for {
        for value in headers.get_all("x-forwarded-for") {
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b", ");
        }
    }
    out.extend_from_slice(forwarding.client_ip);
    out.extend_from_slice(b"\r\n");
    let proto: &[u8] = if forwarding.tls { b"https" } else { b"http" };
    write_field(out, b"x-forwarded-proto", proto);
    if !host.is_empty() {
        write_field(out, b"x-forwarded-host", host);
    }
    out.extend_from_slice(b"forwarded: ");
    if prior_forwarded {
        for value in headers.get_all(http::header::FORWARDED) {
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b", ");
        }
    }
    if forwarding.client_ipv6 {
        out.extend_from_slice(b"for=\"[");
        out.extend_from_slice(forwarding.client_ip);
        out.extend_from_slice(b"]\"");
    } else {
        out.extend_from_slice(b"for=");
        out.extend_from_slice(forwarding.client_ip);
    }
    out.extend_from_slice(b";proto=");
    out.extend_from_slice(proto);
    // A host that would need escaping inside the quoted string is left out.
    if !host.is_empty()
        && host
            .iter()
            .all(|b| b.is_ascii_graphic() && *b != b'"' && *b != b'\\')
    {
        out.extend_from_slice(b";host=\"");
        out.extend_from_slice(host);
        out.push(b'"');
    }
    out.extend_from_slice(b"\r\n");
    write_field(out, b"x-request-id", forwarding.request_id.as_bytes());
    if forwarding.upgrade {
        out.extend_from_slice(b"connection: upgrade\r\n");
    }
    match framing {
        RequestFraming::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        RequestFraming::Length(length) => {
            // Formats into the buffer: no allocation.
            let _ = write!(out, "content-length: {length}\r\n");
        }
        // A body declared empty stays declared (some upstreams want a
        // length on every POST).
        RequestFraming::Empty if declared_length => {
            out.extend_from_slice(b"content-length: 0\r\n");
        }
        RequestFraming::Empty => {}
    }
    out.extend_from_slice(b"\r\n");
}

/// The comma-separated tokens of a field value (`Connection`, say), trimmed.
pub fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value.split(|b| *b == b',').map(<[u8]>::trim_ascii)
}

/// Whether a `Connection` token names a header to drop beyond the fixed
/// hop-by-hop set (which is dropped anyway). `close` counts: a field named
/// `Close` is reserved (RFC 9110 §16.3.2.1) and goes as well.
fn names_a_header(token: &[u8]) -> bool {
    !token.is_empty() && !is_hop_by_hop(token)
}

/// Writes one `name: value` line of a head.
pub(crate) fn write_field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Writes the framing of one chunk of `len` bytes (its size line) into `out`.
pub fn encode_chunk_size(out: &mut [u8; 18], len: usize) -> &[u8] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digits = (usize::BITS - len.leading_zeros()).div_ceil(4).max(1) as usize;
    for i in 0..digits {
        out[digits - 1 - i] = HEX[(len >> (4 * i)) & 0xf];
    }
    out[digits] = b'\r';
    out[digits + 1] = b'\n';
    &out[..digits + 2]
}

/// A parsed response head, without its hop-by-hop headers.
#[derive(Debug)]
pub struct ResponseHead {
    /// Status.
    pub status: StatusCode,
    /// HTTP/1.0 or HTTP/1.1.
    pub version: Version,
    /// End-to-end headers.
    pub headers: HeaderMap,
    /// How the body that follows is framed.
    pub framing: Framing,
    /// Whether the connection may carry another exchange after this one.
    pub keep_alive: bool,
}

/// How a response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body (a response to HEAD; 1xx, 204 and 304).
    Empty,
    /// `Content-Length` bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Everything until the upstream closes the connection.
    UntilClose,
}

/// What a parse of the head found about its framing.
#[derive(Default)]
struct Found {
    close: bool,
    keep_alive_token: bool,
    transfer_encoding: bool,
    /// `Transfer-Encoding` is exactly one `chunked`.
    chunked_only: bool,
    length: Option<u64>,
    bad_length: bool,
    any_length: bool,
}

/// Where a header's name and value lie in the head.
#[derive(Clone, Copy, Default)]
pub(crate) struct Span {
    pub(crate) name: (usize, usize),
    pub(crate) value: (usize, usize),
}

impl Span {
    /// Where `field`'s name and value lie in the buffer that starts at
    /// address `base` (the one httparse read them from).
    pub(crate) fn of(field: &httparse::Header<'_>, base: usize) -> Self {
        let name_at = field.name.as_ptr() as usize - base;
        let value_at = field.value.as_ptr() as usize - base;
        Self {
            name: (name_at, name_at + field.name.len()),
            value: (value_at, value_at + field.value.len()),
        }
    }
}

/// Parses the response head at the start of `buf`, taking it out of `buf`
/// when complete (what follows stays: the start of the body). `None`: more
/// bytes are needed.
pub fn parse_response_head(
    buf: &mut BytesMut,
    request_method: &Method,
) -> Result<Option<ResponseHead>, WireError> {
    match parse_into::<USUAL_HEADERS>(buf, request_method) {
        Err(WireError::Head(httparse::Error::TooManyHeaders)) => {
            match parse_into::<MAX_HEADERS>(buf, request_method) {
                Err(WireError::Head(httparse::Error::TooManyHeaders)) => {
                    Err(WireError::HeadTooLarge)
                }
                other => other,
            }
        }
        other => other,
    }
}

fn parse_into<const N: usize>(
    buf: &mut BytesMut,
    request_method: &Method,
) -> Result<Option<ResponseHead>, WireError> {
    let mut raw = [httparse::EMPTY_HEADER; N];
    let mut spans = [Span::default(); N];
    let base = buf.as_ptr() as usize;
    let (len, code, minor, count, found) = {
        let mut response = httparse::Response::new(&mut raw);
        let len = match response.parse(buf) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) if buf.len() >= MAX_RESPONSE_HEAD => {
                return Err(WireError::HeadTooLarge);
            }
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(err) => return Err(WireError::Head(err)),
        };
        if len > MAX_RESPONSE_HEAD {
            return Err(WireError::HeadTooLarge);
        }
        let code = response.code.unwrap_or(0);
        let minor = response.version.unwrap_or(1);
        let mut found = Found::default();
        let mut nominated: Vec<&[u8]> = Vec::new();
        let headers = &*response.headers;
        for header in headers {
            if header.name.eq_ignore_ascii_case("connection") {
                for token in tokens(header.value) {
                    if token.eq_ignore_ascii_case(b"close") {
                        found.close = true;
                    } else if token.eq_ignore_ascii_case(b"keep-alive") {
                        found.keep_alive_token = true;
                    } else if names_a_header(token) {
                        nominated.push(token);
                    }
                }
            }
        }
        let mut count = 0;
        for header in headers {
            let name = header.name.as_bytes();
            if name.eq_ignore_ascii_case(b"content-length") {
                found.any_length = true;
                // `5, 5` (a list of one value) is as good as `5`.
                for item in header.value.split(|b| *b == b',') {
                    match parse_length(item) {
                        Some(n) if found.length.is_none_or(|m| m == n) => found.length = Some(n),
                        _ => found.bad_length = true,
                    }
                }
            } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
                found.chunked_only = !found.transfer_encoding
                    && header.value.trim_ascii().eq_ignore_ascii_case(b"chunked");
                found.transfer_encoding = true;
                continue;
            }
            if is_hop_by_hop(name) && !(code == 101 && name.eq_ignore_ascii_case(b"upgrade")) {
                continue;
            }
            if nominated.iter().any(|n| n.eq_ignore_ascii_case(name)) {
                continue;
            }
            spans[count] = Span::of(header, base);
            count += 1;
        }
        (len, code, minor, count, found)
    };
    let status =
        StatusCode::from_u16(code).map_err(|_| WireError::Head(httparse::Error::Status))?;
    let head = buf.split_to(len).freeze();
    let mut headers = HeaderMap::with_capacity(count + 4);
    for span in &spans[..count] {
        let name_bytes = &head[span.name.0..span.name.1];
        if found.transfer_encoding && name_bytes.eq_ignore_ascii_case(b"content-length") {
            // The chunked framing wins; the length must not reach the client.
            continue;
        }
        let name = match common_name(name_bytes) {
            Some(name) => name,
            None => HeaderName::from_bytes(name_bytes)
                .map_err(|_| WireError::Header(String::from_utf8_lossy(name_bytes).into()))?,
        };
        let value = HeaderValue::from_maybe_shared(head.slice(span.value.0..span.value.1))
            .map_err(|_| WireError::Header(name.as_str().into()))?;
        headers.append(name, value);
    }
    if found.bad_length && !found.transfer_encoding {
        return Err(WireError::ContentLength);
    }
    let version = if minor == 0 {
        Version::HTTP_10
    } else {
        Version::HTTP_11
    };
    let no_body = *request_method == Method::HEAD
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    let framing = if no_body {
        Framing::Empty
    } else if found.transfer_encoding {
        if !found.chunked_only {
            return Err(WireError::TransferCoding);
        }
        Framing::Chunked
    } else if let Some(n) = found.length {
        Framing::Length(n)
    } else {
        Framing::UntilClose
    };
    let keep_alive = !found.close
        && (version == Version::HTTP_11 || found.keep_alive_token)
        && framing != Framing::UntilClose
        // Both framings at once is how requests are smuggled, and chunked
        // is not HTTP/1.0 (RFC 9112 §6.1): use the connection for this
        // response only.
        && !(found.transfer_encoding && (found.any_length || version == Version::HTTP_10));
    Ok(Some(ResponseHead {
        status,
        version,
        headers,
        framing,
        keep_alive,
    }))
}

/// The response header names servers send most, in the spellings they
/// use, matched exactly: cheaper than the general lookup, which lowercases
/// first.
fn common_name(name: &[u8]) -> Option<HeaderName> {
    use http::header;
    Some(match name {
        b"Date" | b"date" => header::DATE,
        b"Server" | b"server" => header::SERVER,
        b"Content-Type" | b"content-type" => header::CONTENT_TYPE,
        b"Content-Length" | b"content-length" => header::CONTENT_LENGTH,
        b"Last-Modified" | b"last-modified" => header::LAST_MODIFIED,
        b"ETag" | b"etag" => header::ETAG,
        b"Accept-Ranges" | b"accept-ranges" => header::ACCEPT_RANGES,
        b"Cache-Control" | b"cache-control" => header::CACHE_CONTROL,
        b"Vary" | b"vary" => header::VARY,
        b"Expires" | b"expires" => header::EXPIRES,
        b"Set-Cookie" | b"set-cookie" => header::SET_COOKIE,
        b"Location" | b"location" => header::LOCATION,
        b"Content-Encoding" | b"content-encoding" => header::CONTENT_ENCODING,
        _ => return None,
    })
}

/// Headers that apply to one connection only (RFC 9110 §7.6.1).
fn is_hop_by_hop(name: &[u8]) -> bool {
    let candidate: &[u8] = match name.len() {
        2 => b"te",
        7 if name[0].eq_ignore_ascii_case(&b'u') => b"upgrade",
        7 => b"trailer",
        10 if name[0].eq_ignore_ascii_case(&b'c') => b"connection",
        10 => b"keep-alive",
        16 => b"proxy-connection",
        17 => b"transfer-encoding",
        19 => b"proxy-authorization",
        _ => return false,
    };
    name.eq_ignore_ascii_case(candidate)
}

fn parse_length(value: &[u8]) -> Option<u64> {
    let value = value.trim_ascii();
    if value.is_empty() || value.len() > 19 || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    value.iter().try_fold(0u64, |n, d| {
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

/// One step of a body decoder.
#[derive(Debug)]
pub enum Decoded {
    /// Body bytes.
    Data(Bytes),
    /// The trailer section of a chunked body (the body has ended).
    Trailers(HeaderMap),
    /// More bytes must be read.
    NeedMore,
    /// The body has ended.
    End,
}

/// Takes a response body out of the bytes read, frame by frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decoder {
    state: State,
    /// Chunk extension bytes read so far.
    extension_bytes: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Length(u64),
    ChunkSize,
    ChunkData(u64),
    ChunkEnd,
    Trailers,
    UntilClose,
    Done,
}

impl Decoder {
    /// A decoder for a body framed as `framing`.
    pub fn new(framing: Framing) -> Self {
        let state = match framing {
            Framing::Empty | Framing::Length(0) => State::Done,
            Framing::Length(n) => State::Length(n),
            Framing::Chunked => State::ChunkSize,
            Framing::UntilClose => State::UntilClose,
        };
        Self {
            state,
            extension_bytes: 0,
        }
    }

    /// Whether the body has ended.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Bytes of the body still to come, when known.
    pub fn remaining(&self) -> Option<u64> {
        match self.state {
            State::Length(n) => Some(n),
            State::Done => Some(0),
            _ => None,
        }
    }

    /// How many bytes are worth reading next (a hint for the read buffer).
    pub fn want(&self) -> usize {
        const MAX_READ: u64 = 64 * 1024;
        match self.state {
            State::Length(n) | State::ChunkData(n) => n.clamp(1, MAX_READ) as usize,
            _ => 8 * 1024,
        }
    }

    /// Takes the next frame out of `buf`.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Decoded, WireError> {
        loop {
            match self.state {
                State::Done => return Ok(Decoded::End),
                State::Length(n) | State::ChunkData(n) => {
                    if buf.is_empty() {
                        return Ok(Decoded::NeedMore);
                    }
                    let take = usize::try_from(n).unwrap_or(usize::MAX).min(buf.len());
                    let rest = n - take as u64;
                    self.state = match (self.state, rest) {
                        (State::Length(_), 0) => State::Done,
                        (State::Length(_), rest) => State::Length(rest),
                        (_, 0) => State::ChunkEnd,
                        (_, rest) => State::ChunkData(rest),
                    };
                    return Ok(Decoded::Data(buf.split_to(take).freeze()));
                }
                State::UntilClose => {
                    if buf.is_empty() {
                        return Ok(Decoded::NeedMore);
                    }
                    return Ok(Decoded::Data(buf.split().freeze()));
                }
                State::ChunkSize => {
                    let Some(end) = buf.iter().position(|b| *b == b'\n') else {
                        if buf.len() > MAX_CHUNK_LINE {
                            return Err(WireError::Chunked("chunk-size line too long"));
                        }
                        return Ok(Decoded::NeedMore);
                    };
                    if end > MAX_CHUNK_LINE {
                        return Err(WireError::Chunked("chunk-size line too long"));
                    }
                    let digits = buf[..end]
                        .iter()
                        .take_while(|b| b.is_ascii_hexdigit())
                        .count();
                    // All but the digits and the CR.
                    self.extension_bytes += end.saturating_sub(digits + 1) as u64;
                    if self.extension_bytes > MAX_EXTENSION_BYTES {
                        return Err(WireError::Chunked("too many chunk extension bytes"));
                    }
                    let size = parse_chunk_size(&buf[..end])?;
                    buf.advance(end + 1);
                    self.state = if size == 0 {
                        State::Trailers
                    } else {
                        State::ChunkData(size)
                    };
                }
                State::ChunkEnd => {
                    match (buf.first(), buf.get(1)) {
                        (None, _) | (Some(b'\r'), None) => return Ok(Decoded::NeedMore),
                        (Some(b'\r'), Some(b'\n')) => buf.advance(2),
                        _ => return Err(WireError::Chunked("chunk not followed by CRLF")),
                    }
                    self.state = State::ChunkSize;
                }
                State::Trailers => return self.trailers(buf),
            }
        }
    }

    fn trailers(&mut self, buf: &mut BytesMut) -> Result<Decoded, WireError> {
        if buf.starts_with(b"\r\n") {
            buf.advance(2);
            self.state = State::Done;
            return Ok(Decoded::End);
        }
        if buf.len() < 2 {
            return Ok(Decoded::NeedMore);
        }
        let mut raw = [httparse::EMPTY_HEADER; USUAL_HEADERS];
        let mut more;
        let mut parsed = httparse::parse_headers(buf, &mut raw);
        if let Err(httparse::Error::TooManyHeaders) = parsed {
            more = Box::new([httparse::EMPTY_HEADER; MAX_HEADERS]);
            parsed = httparse::parse_headers(buf, &mut *more);
        }
        match parsed {
            Ok(httparse::Status::Complete((len, fields))) => {
                let mut trailers = HeaderMap::with_capacity(fields.len());
                for field in fields {
                    let name = HeaderName::from_bytes(field.name.as_bytes())
                        .map_err(|_| WireError::Chunked("invalid trailer name"))?;
                    if is_hop_by_hop(name.as_str().as_bytes()) {
                        continue;
                    }
                    let value = HeaderValue::from_bytes(field.value)
                        .map_err(|_| WireError::Chunked("invalid trailer value"))?;
                    trailers.append(name, value);
                }
                buf.advance(len);
                self.state = State::Done;
                Ok(Decoded::Trailers(trailers))
            }
            Ok(httparse::Status::Partial) if buf.len() >= MAX_RESPONSE_HEAD => {
                Err(WireError::Chunked("trailer section too large"))
            }
            Ok(httparse::Status::Partial) => Ok(Decoded::NeedMore),
            Err(_) => Err(WireError::Chunked("malformed trailer section")),
        }
    }

    /// The upstream closed the connection: the end of a body read until
    /// close, an error for any other unfinished body.
    pub fn at_eof(&mut self) -> Result<(), WireError> {
        match self.state {
            State::UntilClose | State::Done => {
                self.state = State::Done;
                Ok(())
            }
            State::Length(n) => Err(WireError::Truncated(n)),
            _ => Err(WireError::Chunked(
                "connection closed inside a chunked body",
            )),
        }
    }
}

/// `chunk-size [ BWS ";" chunk-ext ] CRLF` (RFC 9112 §7.1), the line
/// without its LF: hex digits first, CR last, no bare CR or control bytes
/// in extensions.
fn parse_chunk_size(line: &[u8]) -> Result<u64, WireError> {
    let Some(line) = line.strip_suffix(b"\r") else {
        return Err(WireError::Chunked("chunk-size line not ended by CRLF"));
    };
    let digits_end = line
        .iter()
        .position(|b| !b.is_ascii_hexdigit())
        .unwrap_or(line.len());
    let (digits, rest) = line.split_at(digits_end);
    let blank = rest
        .iter()
        .take_while(|b| **b == b' ' || **b == b'\t')
        .count();
    let rest = &rest[blank..];
    if !(rest.is_empty()
        || rest[0] == b';'
            && rest
                .iter()
                .all(|b| *b == b'\t' || (b' '..=b'~').contains(b)))
    {
        return Err(WireError::Chunked("invalid chunk extension"));
    }
    if digits.is_empty() || digits.len() > 15 {
        return Err(WireError::Chunked("invalid chunk size"));
    }
    digits.iter().try_fold(0u64, |n, b| {
        let d = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            b'A'..=b'F' => b - b'A' + 10,
            _ => return Err(WireError::Chunked("invalid chunk size")),
        };
        Ok(n << 4 | u64::from(d))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> (ResponseHead, BytesMut) {
        parse_for(&Method::GET, text)
    }

    fn parse_for(method: &Method, text: &str) -> (ResponseHead, BytesMut) {
        let mut buf = BytesMut::from(text.as_bytes());
        let head = parse_response_head(&mut buf, method).unwrap().unwrap();
        (head, buf)
    }

    fn body(framing: Framing, pieces: &[&[u8]]) -> Result<(Vec<u8>, Option<HeaderMap>), WireError> {
        let mut decoder = Decoder::new(framing);
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        let mut pieces = pieces.iter();
        loop {
            match decoder.decode(&mut buf)? {
                Decoded::Data(data) => out.extend_from_slice(&data),
                Decoded::Trailers(map) => return Ok((out, Some(map))),
                Decoded::End => return Ok((out, None)),
                Decoded::NeedMore => match pieces.next() {
                    Some(piece) => buf.extend_from_slice(piece),
                    None => {
                        decoder.at_eof()?;
                        return Ok((out, None));
                    }
                },
            }
        }
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    /// The head written for a GET of `/` from `client` with `pairs`, as lines.
    fn forwarded(client: &str, tls: bool, upgrade: bool, pairs: &[(&str, &str)]) -> Vec<String> {
        let client: std::net::SocketAddr = client.parse().unwrap();
        let ip = client.ip().to_string();
        let host = HeaderValue::from_static("www.acme.test");
        let id = HeaderValue::from_static("id-1");
        let forwarding = Forwarding {
            client_ip: ip.as_bytes(),
            client_ipv6: client.is_ipv6(),
            tls,
            host: &host,
            request_id: &id,
            upgrade,
        };
        let mut out = Vec::new();
        encode_request_head(
            &mut out,
            &Method::GET,
            "/",
            &headers(pairs),
            RequestFraming::Empty,
            &forwarding,
        );
        let text = String::from_utf8(out).unwrap();
        assert!(text.ends_with("\r\n\r\n"), "{text}");
        text.trim_end().split("\r\n").map(str::to_owned).collect()
    }

    /// A plain-HTTP IPv4 client's forwarding, no upgrade.
    fn plain_forwarding<'a>(host: &'a HeaderValue, id: &'a HeaderValue) -> Forwarding<'a> {
        Forwarding {
            client_ip: b"192.0.2.7",
            client_ipv6: false,
            tls: false,
            host,
            request_id: id,
            upgrade: false,
        }
    }

    #[test]
    fn request_heads_carry_the_target_the_headers_and_chunked_framing() {
        let host = HeaderValue::from_static("www.acme.test");
        let id = HeaderValue::from_static("id-1");
        let forwarding = plain_forwarding(&host, &id);
        let mut out = Vec::new();
        encode_request_head(
            &mut out,
            &Method::POST,
            "/a/b?c=d",
            &headers(&[
                ("host", "www.acme.test"),
                ("x-multi", "1"),
                ("x-multi", "2"),
            ]),
            RequestFraming::Chunked,
            &forwarding,
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "POST /a/b?c=d HTTP/1.1\r\nx-multi: 1\r\nx-multi: 2\r\nhost: www.acme.test\r\n\
             x-forwarded-for: 192.0.2.7\r\nx-forwarded-proto: http\r\n\
             x-forwarded-host: www.acme.test\r\n\
             forwarded: for=192.0.2.7;proto=http;host=\"www.acme.test\"\r\n\
             x-request-id: id-1\r\ntransfer-encoding: chunked\r\n\r\n"
        );
        let mut size = [0u8; 18];
        assert_eq!(encode_chunk_size(&mut size, 0x1a2b), b"1a2b\r\n");
        assert_eq!(encode_chunk_size(&mut size, 1), b"1\r\n");
        assert_eq!(encode_chunk_size(&mut size, 16), b"10\r\n");
    }

    #[test]
    fn the_body_length_comes_from_the_framing_not_the_clients_header() {
        let host = HeaderValue::from_static("");
        let id = HeaderValue::from_static("id-1");
        let forwarding = plain_forwarding(&host, &id);
        let encode = |pairs: &[(&str, &str)], framing| {
            let mut out = Vec::new();
            encode_request_head(
                &mut out,
                &Method::POST,
                "/",
                &headers(pairs),
                framing,
                &forwarding,
            );
            String::from_utf8(out).unwrap()
        };
        // Naming Content-Length in Connection does not drop it: the body
        // would be read as a request of its own.
        let text = encode(
            &[("connection", "content-length"), ("content-length", "36")],
            RequestFraming::Length(36),
        );
        assert_eq!(text.matches("content-length: 36\r\n").count(), 1, "{text}");
        let text = encode(&[("content-length", "0")], RequestFraming::Empty);
        assert!(text.contains("content-length: 0\r\n"), "{text}");
        let text = encode(&[], RequestFraming::Empty);
        assert!(!text.contains("content-length"), "{text}");
        assert!(
            text.contains("\r\nhost: \r\n"),
            "an empty Host is still sent: {text}"
        );
        let text = encode(&[("content-length", "9")], RequestFraming::Chunked);
        assert!(!text.contains("content-length") && text.contains("transfer-encoding: chunked"));

        let odd = HeaderValue::from_static("a\\b.test");
        let text = {
            let mut out = Vec::new();
            let forwarding = Forwarding {
                host: &odd,
                ..forwarding
            };
            encode_request_head(
                &mut out,
                &Method::GET,
                "/",
                &HeaderMap::new(),
                RequestFraming::Empty,
                &forwarding,
            );
            String::from_utf8(out).unwrap()
        };
        assert!(
            text.contains("forwarded: for=192.0.2.7;proto=http\r\n"),
            "{text}"
        );
    }

    #[test]
    fn forwarding_headers_name_the_client_once_per_hop() {
        let lines = forwarded(
            "[2001:db8::1]:443",
            true,
            false,
            &[
                ("x-forwarded-for", "203.0.113.9"),
                ("x-forwarded-for", "198.51.100.2"),
                ("forwarded", "for=203.0.113.9"),
                ("x-forwarded-proto", "ftp"),
                ("x-request-id", "spoofed"),
                ("host", "www.acme.test"),
            ],
        );
        assert_eq!(
            lines[1..],
            [
                "host: www.acme.test",
                "x-forwarded-for: 203.0.113.9, 198.51.100.2, 2001:db8::1",
                "x-forwarded-proto: https",
                "x-forwarded-host: www.acme.test",
                "forwarded: for=203.0.113.9, for=\"[2001:db8::1]\";proto=https;host=\"www.acme.test\"",
                "x-request-id: id-1",
            ]
        );
    }

    #[test]
    fn hop_by_hop_headers_and_those_connection_names_are_not_forwarded() {
        let lines = forwarded(
            "192.0.2.7:5000",
            false,
            false,
            &[
                ("connection", "keep-alive, X-Secret , Upgrade"),
                ("connection", "close"),
                ("keep-alive", "timeout=5"),
                ("proxy-connection", "keep-alive"),
                ("te", "trailers"),
                ("trailer", "x-sum"),
                ("transfer-encoding", "chunked"),
                ("upgrade", "websocket"),
                ("proxy-authorization", "Basic eA=="),
                ("x-secret", "1"),
                ("close", "odd, but named"),
                ("x-kept", "yes"),
            ],
        );
        let names: Vec<&str> = lines[1..]
            .iter()
            .map(|l| l.split(':').next().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "x-kept",
                "host",
                "x-forwarded-for",
                "x-forwarded-proto",
                "x-forwarded-host",
                "forwarded",
                "x-request-id"
            ]
        );

        // An upgrade keeps `Upgrade` and says `Connection: upgrade` only.
        let lines = forwarded(
            "192.0.2.7:5000",
            false,
            true,
            &[
                ("connection", "Upgrade, x-secret"),
                ("upgrade", "websocket"),
                ("x-secret", "1"),
                ("te", "trailers"),
            ],
        );
        assert!(
            lines.contains(&"upgrade: websocket".to_owned()),
            "{lines:?}"
        );
        assert!(
            lines.contains(&"connection: upgrade".to_owned()),
            "{lines:?}"
        );
        assert!(
            !lines
                .iter()
                .any(|l| l.starts_with("x-secret") || l.starts_with("te:"))
        );
    }

    #[test]
    fn a_head_is_parsed_without_its_hop_by_hop_headers_and_leaves_the_body() {
        let (head, rest) = parse(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: keep-alive, X-Hop\r\n\
             X-Hop: secret\r\nKeep-Alive: timeout=5\r\nContent-Length: 5\r\nX-Multi: a\r\n\
             X-Multi: b\r\n\r\nhello",
        );
        assert_eq!(head.status, StatusCode::OK);
        assert_eq!(head.framing, Framing::Length(5));
        assert!(head.keep_alive);
        let names: Vec<&str> = head.headers.keys().map(HeaderName::as_str).collect();
        assert_eq!(names, ["content-type", "content-length", "x-multi"]);
        assert_eq!(head.headers.get_all("x-multi").iter().count(), 2);
        assert_eq!(&rest[..], b"hello");
    }

    #[test]
    fn a_partial_head_asks_for_more_and_an_endless_one_is_refused() {
        let mut buf = BytesMut::from(&b"HTTP/1.1 200 OK\r\nContent-Le"[..]);
        assert!(
            parse_response_head(&mut buf, &Method::GET)
                .unwrap()
                .is_none()
        );
        assert_eq!(buf.len(), 27, "nothing is taken from a partial head");

        let mut big = b"HTTP/1.1 200 OK\r\n".to_vec();
        while big.len() < MAX_RESPONSE_HEAD {
            big.extend_from_slice(b"X-Filler: 0123456789012345678901234567890123456789\r\n");
        }
        let mut buf = BytesMut::from(&big[..]);
        assert!(matches!(
            parse_response_head(&mut buf, &Method::GET),
            Err(WireError::HeadTooLarge)
        ));

        let mut many = b"HTTP/1.1 200 OK\r\n".to_vec();
        for i in 0..40 {
            many.extend_from_slice(format!("X-H{i}: {i}\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        let (head, _) = parse(std::str::from_utf8(&many).unwrap());
        assert_eq!(head.headers.len(), 40, "more lines than the stack holds");

        let mut buf = BytesMut::from(&b"HTTP/1.1 abc OK\r\n\r\n"[..]);
        assert!(matches!(
            parse_response_head(&mut buf, &Method::GET),
            Err(WireError::Head(_))
        ));
    }

    #[test]
    fn framing_follows_the_method_the_status_and_the_headers() {
        let (head, _) = parse_for(
            &Method::HEAD,
            "HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n",
        );
        assert_eq!(head.framing, Framing::Empty);
        assert_eq!(
            head.headers["content-length"], "99",
            "HEAD keeps the length"
        );
        for status in ["204 No Content", "304 Not Modified", "100 Continue"] {
            let (head, _) = parse(&format!("HTTP/1.1 {status}\r\n\r\n"));
            assert_eq!(head.framing, Framing::Empty, "{status}");
        }
        let (head, _) = parse("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert_eq!(head.framing, Framing::Chunked);
        assert!(head.keep_alive);
        assert!(!head.headers.contains_key("transfer-encoding"));
        // Other codings would reach the client still encoded, unannounced.
        for coding in [
            "gzip, chunked",
            "gzip",
            "chunked\r\nTransfer-Encoding: chunked",
        ] {
            let mut buf = BytesMut::from(
                format!("HTTP/1.1 200 OK\r\nTransfer-Encoding: {coding}\r\n\r\n").as_bytes(),
            );
            assert!(
                matches!(
                    parse_response_head(&mut buf, &Method::GET),
                    Err(WireError::TransferCoding)
                ),
                "{coding}"
            );
        }

        let (head, _) = parse("HTTP/1.1 200 OK\r\n\r\n");
        assert_eq!(head.framing, Framing::UntilClose);
        assert!(
            !head.keep_alive,
            "a body read until close ends the connection"
        );

        let (head, _) = parse("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\n");
        assert!(!head.keep_alive);
        let (head, _) = parse("HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n");
        assert!(
            !head.keep_alive,
            "HTTP/1.0 closes unless it says keep-alive"
        );
        let (head, _) =
            parse("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\n");
        assert!(head.keep_alive);

        // Smuggling shapes: chunked wins and the connection is not reused;
        // two different lengths are refused.
        let (head, _) =
            parse("HTTP/1.1 200 OK\r\nContent-Length: 10\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert_eq!(head.framing, Framing::Chunked);
        assert!(!head.keep_alive);
        assert!(!head.headers.contains_key("content-length"));
        for bad in [
            "Content-Length: 1\r\nContent-Length: 2",
            "Content-Length: -1",
            "Content-Length: 1x",
        ] {
            let mut buf = BytesMut::from(format!("HTTP/1.1 200 OK\r\n{bad}\r\n\r\n").as_bytes());
            assert!(
                matches!(
                    parse_response_head(&mut buf, &Method::GET),
                    Err(WireError::ContentLength)
                ),
                "{bad}"
            );
        }
        let (head, _) =
            parse("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 3, 3\r\n\r\n");
        assert_eq!(head.framing, Framing::Length(3));
        let (head, _) =
            parse("HTTP/1.1 200 OK\r\nContent-Length: abc\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert_eq!(head.framing, Framing::Chunked);
        assert!(
            !head.keep_alive,
            "any length beside chunked ends the connection"
        );
        let (head, _) = parse(
            "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n",
        );
        assert!(!head.keep_alive, "chunked in HTTP/1.0 ends the connection");
    }

    #[test]
    fn common_names_are_the_names_the_general_lookup_gives() {
        for name in [
            "Date",
            "date",
            "Server",
            "server",
            "Content-Type",
            "content-type",
            "Content-Length",
            "content-length",
            "Last-Modified",
            "last-modified",
            "ETag",
            "etag",
            "Accept-Ranges",
            "accept-ranges",
            "Cache-Control",
            "cache-control",
            "Vary",
            "vary",
            "Expires",
            "expires",
            "Set-Cookie",
            "set-cookie",
            "Location",
            "location",
            "Content-Encoding",
            "content-encoding",
        ] {
            assert_eq!(
                common_name(name.as_bytes()),
                Some(HeaderName::from_bytes(name.as_bytes()).unwrap()),
                "{name}"
            );
        }
        assert_eq!(
            common_name(b"DATE"),
            None,
            "other spellings take the general lookup"
        );
    }

    #[test]
    fn a_switching_protocols_head_keeps_its_upgrade_header() {
        let (head, _) = parse(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
        );
        assert_eq!(head.status, StatusCode::SWITCHING_PROTOCOLS);
        assert_eq!(head.headers["upgrade"], "websocket");
        assert!(!head.headers.contains_key("connection"));
    }

    #[test]
    fn bodies_are_read_by_length_by_chunks_and_until_close() {
        let (data, _) = body(Framing::Length(5), &[b"he", b"llo"]).unwrap();
        assert_eq!(data, b"hello");
        assert!(matches!(
            body(Framing::Length(5), &[b"he"]),
            Err(WireError::Truncated(3))
        ));

        let (data, trailers) = body(
            Framing::Chunked,
            &[
                b"5;ext=1\r\nhel",
                b"lo\r\n1",
                b"0\r\n0123456789abcdef\r\n0\r\n\r\n",
            ],
        )
        .unwrap();
        assert_eq!(data, b"hello0123456789abcdef");
        assert!(trailers.is_none());

        let (data, trailers) =
            body(Framing::Chunked, &[b"3\r\nabc\r\n0\r\nX-Sum: 42\r\n\r\n"]).unwrap();
        assert_eq!(data, b"abc");
        assert_eq!(trailers.unwrap()["x-sum"], "42");

        for broken in [
            &b"zz\r\n"[..],
            b"3\r\nabcX\r\n",
            b"fffffffffffffffff\r\n",
            b"3\nabc\r\n0\r\n\r\n",
            b"3\r\nabc\n0\r\n\r\n",
            b" 3\r\nabc\r\n0\r\n\r\n",
            b"3 x\r\nabc\r\n0\r\n\r\n",
            b"3;a\rb\r\nabc\r\n0\r\n\r\n",
            b"3\r\r\nabc\r\n0\r\n\r\n",
            b"3\x0c\r\nabc\r\n0\r\n\r\n",
            b"3\r ;x\r\nabc\r\n0\r\n\r\n",
        ] {
            assert!(
                matches!(
                    body(Framing::Chunked, &[broken]),
                    Err(WireError::Chunked(_))
                ),
                "{}",
                String::from_utf8_lossy(broken)
            );
        }
        assert!(matches!(
            body(Framing::Chunked, &[b"3\r\nab"]),
            Err(WireError::Chunked(_))
        ));

        let (data, _) = body(Framing::Chunked, &[b"3 ; a=b\r\nabc\r\n0\r\n\r\n"]).unwrap();
        assert_eq!(data, b"abc", "whitespace before an extension is allowed");
        let many = "1;x=0123456789\r\na\r\n".repeat(2000) + "0\r\n\r\n";
        assert!(
            matches!(
                body(Framing::Chunked, &[many.as_bytes()]),
                Err(WireError::Chunked(_))
            ),
            "extension bytes are capped per body"
        );
        let mut many_trailers = "1\r\na\r\n0\r\n".to_owned();
        for i in 0..40 {
            many_trailers.push_str(&format!("x-t{i}: {i}\r\n"));
        }
        many_trailers.push_str("\r\n");
        let (_, trailers) = body(Framing::Chunked, &[many_trailers.as_bytes()]).unwrap();
        assert_eq!(
            trailers.unwrap().len(),
            40,
            "more trailer fields than the stack holds"
        );
        let plain = "1\r\na\r\n".repeat(20_000) + "0\r\n\r\n";
        assert_eq!(
            body(Framing::Chunked, &[plain.as_bytes()]).unwrap().0.len(),
            20_000
        );

        let (data, _) = body(Framing::UntilClose, &[b"any", b"thing"]).unwrap();
        assert_eq!(data, b"anything");
    }

    #[test]
    fn data_already_read_past_the_body_stays_in_the_buffer() {
        let mut decoder = Decoder::new(Framing::Length(3));
        let mut buf = BytesMut::from(&b"abcHTTP/1.1"[..]);
        assert!(matches!(decoder.decode(&mut buf).unwrap(), Decoded::Data(d) if d == "abc"));
        assert!(decoder.is_done());
        assert_eq!(&buf[..], b"HTTP/1.1");
    }
}

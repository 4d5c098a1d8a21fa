//! The request path, in phases: find the tenant and rule (`route`), answer
//! locally when the request cannot go upstream (`refuse`), rewrite headers
//! (`forward`), pick an endpoint and send with retries (`send`), then count
//! and log (`finish`). Every error is a [`ProxyError`], mapped to its status
//! and JSON body in one place.

use std::convert::Infallible;
use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::PathAndQuery;
use http::{Method, Request, Response, StatusCode, Uri, Version};
use hyper_util::rt::TokioIo;
use prometheus_client::metrics::counter::Counter;
use tracing::{info, warn};

use crate::admin::metrics::Metrics;
use crate::backends::balancer::Tried;
use crate::http::body::Tally;
use crate::http::body::{BodyTooLarge, ClientBody, RequestBody, ResponseBody};
use crate::http1::wire::Forwarding;
use crate::limits::ratelimit::Decision;
use crate::routing::router::{HostEntry, RouteRuntime};
use crate::routing::snapshot::{Store, normalize_host};

/// Where a request came from.
#[derive(Clone, Copy, Debug)]
pub struct ConnInfo {
    /// The client's address.
    pub client: SocketAddr,
    /// Whether the connection is TLS.
    pub tls: bool,
    /// The client's IP address as text, written once per connection for
    /// the forwarding headers of each of its requests.
    client_ip: IpText,
}

impl ConnInfo {
    /// A connection from `client`.
    pub fn new(client: SocketAddr, tls: bool) -> Self {
        Self {
            client,
            tls,
            client_ip: IpText::new(client.ip()),
        }
    }
}

/// An IP address as text, inline (the longest IPv6 form is 45 bytes).
#[derive(Clone, Copy, Debug)]
struct IpText {
    buf: [u8; 48],
    len: u8,
}

impl IpText {
    fn new(ip: IpAddr) -> Self {
        let mut buf = [0u8; 48];
        let mut cursor = std::io::Cursor::new(&mut buf[..]);
        let _ = write!(cursor, "{ip}");
        let len = u8::try_from(cursor.position()).unwrap_or(0);
        Self { buf, len }
    }

    fn as_bytes(&self) -> &[u8] {
        &self.buf[..usize::from(self.len)]
    }
}

/// Why the proxy answered a request itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyError {
    /// No Host, or an unusable one (client's fault).
    BadHost,
    /// No tenant serves the host.
    NoRoute,
    /// The host is served but no rule matches.
    NoRule,
    /// The tenant is suspended.
    Suspended,
    /// The request body is larger than the route allows.
    BodyTooLarge,
    /// The request uses a transfer coding other than `chunked`, which the
    /// upstream would receive still encoded, unannounced.
    UnsupportedTransferCoding,
    /// No endpoint is healthy.
    NoHealthyUpstream,
    /// Connecting to the upstream failed.
    UpstreamConnect,
    /// The upstream did not answer in time.
    UpstreamTimeout,
    /// The upstream broke the exchange.
    Upstream,
    /// The tenant's or the route's rate limit is reached.
    RateLimited,
}

impl ProxyError {
    /// Status, error code and message, the outward form of each error.
    pub fn outward(self) -> (StatusCode, &'static str, &'static str) {
        match self {
            Self::BadHost => (
                StatusCode::BAD_REQUEST,
                "bad_host",
                "the request has no valid Host",
            ),
            Self::NoRoute => (StatusCode::NOT_FOUND, "no_route", "no route for this host"),
            Self::NoRule => (
                StatusCode::NOT_FOUND,
                "no_matching_rule",
                "no route matches this request",
            ),
            Self::Suspended => (
                StatusCode::FORBIDDEN,
                "tenant_suspended",
                "this service is suspended",
            ),
            Self::BodyTooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                "the request body is too large",
            ),
            Self::UnsupportedTransferCoding => (
                StatusCode::NOT_IMPLEMENTED,
                "unsupported_transfer_coding",
                "only the chunked transfer coding is supported",
            ),
            Self::NoHealthyUpstream => (
                StatusCode::SERVICE_UNAVAILABLE,
                "no_healthy_upstream",
                "no healthy upstream is available",
            ),
            Self::UpstreamConnect => (
                StatusCode::BAD_GATEWAY,
                "upstream_connect_failed",
                "the upstream could not be reached",
            ),
            Self::UpstreamTimeout => (
                StatusCode::GATEWAY_TIMEOUT,
                "upstream_timeout",
                "the upstream did not answer in time",
            ),
            Self::Upstream => (
                StatusCode::BAD_GATEWAY,
                "upstream_error",
                "the upstream failed",
            ),
            Self::RateLimited => (
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "too many requests; retry after the time in Retry-After",
            ),
        }
    }

    /// Whose fault it was: `client`, `upstream` or `config`.
    pub fn fault(self) -> &'static str {
        match self {
            Self::BadHost
            | Self::BodyTooLarge
            | Self::UnsupportedTransferCoding
            | Self::RateLimited => "client",
            Self::NoRoute | Self::NoRule | Self::Suspended => "config",
            Self::NoHealthyUpstream
            | Self::UpstreamConnect
            | Self::UpstreamTimeout
            | Self::Upstream => "upstream",
        }
    }

    #[cold]
    #[inline(never)]
    fn response(self, request_id: &HeaderValue) -> Response<ResponseBody> {
        let (status, code, message) = self.outward();
        let mut body = Vec::with_capacity(96);
        let _ = write!(
            body,
            r#"{{"error":"{code}","message":"{message}","status":{}}}"#,
            status.as_u16()
        );
        let mut response = Response::new(ResponseBody::local(body));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert(X_REQUEST_ID, request_id.clone());
        response
    }
}

const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// Checks the route's limit, then the plan's (so a request the route
/// refuses costs the tenant nothing); the decision to report is the
/// refusal, or the tighter of the two.
async fn rate_limit(
    entry: &HostEntry,
    route: &RouteRuntime,
    headers: &http::HeaderMap,
    client: std::net::IpAddr,
) -> Option<Decision> {
    let mut shown: Option<Decision> = None;
    for limiter in [&route.rate_limit, &entry.rate_limit].into_iter().flatten() {
        let decision = limiter.check(headers, client).await;
        if !decision.allowed {
            return Some(decision);
        }
        if shown
            .as_ref()
            .is_none_or(|s| decision.remaining < s.remaining)
        {
            shown = Some(decision);
        }
    }
    shown
}

/// Request ids: a per-process random prefix and a counter, as 16 hex digits.
#[derive(Debug)]
pub struct RequestIds {
    prefix: u64,
    next: AtomicU64,
}

impl Default for RequestIds {
    fn default() -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
            ^ u64::from(std::process::id()) << 32;
        Self {
            prefix: crate::backends::balancer::hash_of(&seed),
            next: AtomicU64::new(0),
        }
    }
}

impl RequestIds {
    fn next(&self) -> HeaderValue {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let id = self
            .prefix
            .wrapping_add(n.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let mut buf = [0u8; 16];
        const HEX: &[u8; 16] = b"0123456789abcdef";
        for (i, b) in buf.iter_mut().enumerate() {
            *b = HEX[((id >> (60 - 4 * i)) & 0xf) as usize];
        }
        HeaderValue::from_bytes(&buf).unwrap_or_else(|_| HeaderValue::from_static("0"))
    }
}

/// The proxy service shared by every connection.
#[derive(Debug)]
pub struct Proxy {
    /// Current routing.
    pub store: Arc<Store>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Whether to log every request.
    pub access_log: bool,
    ids: RequestIds,
    no_route: Counter,
    bad_host: Counter,
}

/// The largest request head (request line + headers) accepted; larger gets 431.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;

impl Proxy {
    /// A proxy serving from `store`.
    pub fn new(store: Arc<Store>, metrics: Arc<Metrics>, access_log: bool) -> Self {
        let no_route = metrics.local_response("none", "no_route");
        let bad_host = metrics.local_response("none", "bad_host");
        Self {
            store,
            metrics,
            access_log,
            ids: RequestIds::default(),
            no_route,
            bad_host,
        }
    }

    /// Handles one request; never fails (errors become responses).
    pub async fn handle(
        self: Arc<Self>,
        mut req: Request<ClientBody>,
        conn: ConnInfo,
    ) -> Result<Response<ResponseBody>, Infallible> {
        let started = Instant::now();
        let request_id = match req.headers().get(&X_REQUEST_ID) {
            Some(id) if !id.is_empty() && id.len() <= 128 => id.clone(),
            _ => self.ids.next(),
        };
        let snapshot = self.store.load();
        let mut host_buf = [0u8; 255];
        let raw_host = req.uri().authority().map(|a| a.as_str()).or_else(|| {
            req.headers()
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
        });
        let Some(host) = raw_host.and_then(|h| normalize_host(h, &mut host_buf)) else {
            self.bad_host.inc();
            return Ok(self.local(ProxyError::BadHost, &request_id, None, &req, conn, started));
        };
        let Some(entry) = snapshot.host(host) else {
            self.no_route.inc();
            return Ok(self.local(ProxyError::NoRoute, &request_id, None, &req, conn, started));
        };
        if entry.suspended {
            entry.suspended_hits.inc();
            return Ok(self.local(
                ProxyError::Suspended,
                &request_id,
                Some(entry),
                &req,
                conn,
                started,
            ));
        }
        let Some((route, rule)) = entry.find(req.method(), req.uri().path(), req.headers()) else {
            entry.no_rule.inc();
            return Ok(self.local(
                ProxyError::NoRule,
                &request_id,
                Some(entry),
                &req,
                conn,
                started,
            ));
        };
        let route = Arc::clone(route);
        if route.https_redirect && !conn.tls {
            return Ok(redirect_to_https(host, req.uri(), &request_id));
        }
        // Only a body of no declared length can have come in a transfer
        // coding: others skip the header lookup.
        if !req.body().is_end_stream()
            && req.body().exact_length().is_none()
            && !transfer_coding_supported(req.headers())
        {
            return Ok(self.finish_local(
                ProxyError::UnsupportedTransferCoding,
                &request_id,
                entry,
                &route,
                &req,
                conn,
                started,
            ));
        }
        if let (Some(limit), Some(len)) =
            (route.max_request_body_bytes, content_length(req.headers()))
            && len > limit
        {
            return Ok(self.finish_local(
                ProxyError::BodyTooLarge,
                &request_id,
                entry,
                &route,
                &req,
                conn,
                started,
            ));
        }

        let limit = rate_limit(entry, &route, req.headers(), conn.client.ip()).await;
        if let Some(decision) = limit.as_ref().filter(|d| !d.allowed) {
            let mut response = self.finish_local(
                ProxyError::RateLimited,
                &request_id,
                entry,
                &route,
                &req,
                conn,
                started,
            );
            decision.write_headers(response.headers_mut());
            return Ok(response);
        }

        let upgrade = is_upgrade(req.headers());
        let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
        let original_host = raw_host_value(&req);
        let (mut parts, body) = req.into_parts();
        let method = parts.method.clone();
        let path_and_query = parts
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        let forwarding = Forwarding {
            client_ip: conn.client_ip.as_bytes(),
            client_ipv6: conn.client.is_ipv6(),
            tls: conn.tls,
            host: &original_host,
            request_id: &request_id,
            upgrade,
        };
        let has_body = !body.is_end_stream();
        let retryable =
            !has_body && crate::upstream::is_idempotent(&method) && route.retry_attempts > 0;
        let body = if has_body {
            RequestBody::stream(
                body,
                route.max_request_body_bytes,
                Some(Tally {
                    metric: route.metrics.bytes_in.clone(),
                    usage: Arc::clone(&entry.usage.bytes_in),
                }),
            )
        } else {
            RequestBody::Empty
        };
        let key = route.hash_key(&parts.headers, conn.client.ip());
        let mut active = route.begin_request();

        // Origin form: the upstream is addressed by the connection, the Host
        // header names the site. Built once: a connect failure hands it back
        // unsent for the retry, so nothing is copied in case one happens.
        let mut upstream_req = Request::new(body);
        *upstream_req.method_mut() = method.clone();
        *upstream_req.uri_mut() = Uri::from(path_and_query.clone());
        *upstream_req.version_mut() = Version::HTTP_11;
        *upstream_req.headers_mut() = std::mem::take(&mut parts.headers);
        let mut tried = Tried::default();
        let mut attempts = 0;
        // A retry that finds no other endpoint reports the failure that
        // caused it (502), not "no healthy upstream".
        let mut failed: Option<ProxyError> = None;
        let outcome = loop {
            let Some((index, endpoint)) = route.pick(rule, key, tried) else {
                break Err(failed.take().unwrap_or(ProxyError::NoHealthyUpstream));
            };
            let endpoint = Arc::clone(endpoint);
            tried.insert(index);
            attempts += 1;
            let in_flight = endpoint.begin();
            let sent = tokio::time::timeout(
                route.request_timeout,
                crate::upstream::send(
                    &endpoint,
                    upstream_req,
                    &forwarding,
                    route.connect_timeout,
                    route.idle_timeout,
                ),
            )
            .await;
            match sent {
                Ok(Ok(response)) => {
                    if response.status().is_server_error() {
                        endpoint.record_failure();
                    } else {
                        endpoint.record_success();
                    }
                    break Ok((response, endpoint, in_flight));
                }
                Ok(Err((err, returned))) => {
                    drop(in_flight);
                    if err.is_connect() {
                        endpoint.record_failure();
                        let failure = if is_timeout(&err) {
                            ProxyError::UpstreamTimeout
                        } else {
                            ProxyError::UpstreamConnect
                        };
                        if retryable
                            && let Some(unsent) = returned
                            && attempts <= route.retry_attempts as usize
                            && active.take_retry()
                        {
                            upstream_req = unsent;
                            failed = Some(failure);
                            continue;
                        }
                        break Err(failure);
                    }
                    if is_body_too_large(&err) {
                        break Err(ProxyError::BodyTooLarge);
                    }
                    endpoint.record_failure();
                    warn!(route = %route.id, upstream = endpoint.address(), error = %err, "Upstream request failed");
                    break Err(ProxyError::Upstream);
                }
                Err(_) => {
                    drop(in_flight);
                    endpoint.record_failure();
                    break Err(ProxyError::UpstreamTimeout);
                }
            }
        };

        match outcome {
            Err(error) => {
                let mut response = error.response(&request_id);
                if let Some(decision) = &limit {
                    decision.write_headers(response.headers_mut());
                }
                self.finish(
                    &route,
                    entry,
                    &method,
                    &path_and_query,
                    &request_id,
                    None,
                    response.status(),
                    conn,
                    started,
                    Some(error),
                );
                Ok(response)
            }
            Ok((response, endpoint, in_flight)) => {
                let status = response.status();
                if status == StatusCode::SWITCHING_PROTOCOLS {
                    let (mut parts, body) = response.into_parts();
                    parts
                        .headers
                        .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
                    let (Some(client_upgrade), Some(upstream)) =
                        (client_upgrade, body.into_upgraded())
                    else {
                        // A switch the client did not ask for cannot be relayed.
                        endpoint.record_failure();
                        warn!(route = %route.id, upstream = endpoint.address(), "Upstream switched protocols unasked");
                        let error = ProxyError::Upstream;
                        self.finish(
                            &route,
                            entry,
                            &method,
                            &path_and_query,
                            &request_id,
                            Some(endpoint.address()),
                            error.outward().0,
                            conn,
                            started,
                            Some(error),
                        );
                        return Ok(error.response(&request_id));
                    };
                    splice(client_upgrade, upstream, in_flight);
                    self.finish(
                        &route,
                        entry,
                        &method,
                        &path_and_query,
                        &request_id,
                        Some(endpoint.address()),
                        status,
                        conn,
                        started,
                        None,
                    );
                    return Ok(Response::from_parts(parts, ResponseBody::empty()));
                }
                let (mut parts, body) = response.into_parts();
                parts.headers.insert(X_REQUEST_ID, request_id.clone());
                if let Some(decision) = &limit {
                    decision.write_headers(&mut parts.headers);
                }
                self.finish(
                    &route,
                    entry,
                    &method,
                    &path_and_query,
                    &request_id,
                    Some(endpoint.address()),
                    status,
                    conn,
                    started,
                    None,
                );
                Ok(Response::from_parts(
                    parts,
                    ResponseBody::Upstream {
                        inner: body,
                        counter: Tally {
                            metric: route.metrics.bytes_out.clone(),
                            usage: Arc::clone(&entry.usage.bytes_out),
                        },
                        in_flight: Some(in_flight),
                    },
                ))
            }
        }
    }

    #[cold]
    #[inline(never)]
    fn local(
        &self,
        error: ProxyError,
        request_id: &HeaderValue,
        entry: Option<&HostEntry>,
        req: &Request<ClientBody>,
        conn: ConnInfo,
        started: Instant,
    ) -> Response<ResponseBody> {
        let response = error.response(request_id);
        if self.access_log {
            let (status, code, _) = error.outward();
            info!(
                tenant_id = entry.map_or("", |e| &*e.tenant),
                route = "",
                request_id = request_id.to_str().unwrap_or(""),
                method = req.method().as_str(),
                path = req.uri().path(),
                client = %conn.client.ip(),
                upstream = "",
                status = status.as_u16(),
                error = code,
                fault = error.fault(),
                latency_ms = started.elapsed().as_secs_f64() * 1000.0,
                "Request"
            );
        }
        response
    }

    #[cold]
    #[inline(never)]
    #[allow(clippy::too_many_arguments)]
    fn finish_local(
        &self,
        error: ProxyError,
        request_id: &HeaderValue,
        entry: &HostEntry,
        route: &RouteRuntime,
        req: &Request<ClientBody>,
        conn: ConnInfo,
        started: Instant,
    ) -> Response<ResponseBody> {
        let response = error.response(request_id);
        let pq = req
            .uri()
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        self.finish(
            route,
            entry,
            req.method(),
            &pq,
            request_id,
            None,
            response.status(),
            conn,
            started,
            Some(error),
        );
        response
    }

    #[allow(clippy::too_many_arguments)]
    fn finish(
        &self,
        route: &RouteRuntime,
        entry: &HostEntry,
        method: &Method,
        path: &PathAndQuery,
        request_id: &HeaderValue,
        upstream: Option<&str>,
        status: StatusCode,
        conn: ConnInfo,
        started: Instant,
        error: Option<ProxyError>,
    ) {
        let elapsed = started.elapsed();
        entry.usage.requests.fetch_add(1, Ordering::Relaxed);
        route.metrics.count_status(status.as_u16());
        route.metrics.latency.observe(elapsed.as_secs_f64());
        if self.access_log {
            log_request(
                route, entry, method, path, request_id, upstream, status, conn, elapsed, error,
            );
        }
    }
}

/// One access log line. Kept out of line: the formatting is large, and the
/// request path stays compact in the instruction cache without it.
#[inline(never)]
#[allow(clippy::too_many_arguments)]
fn log_request(
    route: &RouteRuntime,
    entry: &HostEntry,
    method: &Method,
    path: &PathAndQuery,
    request_id: &HeaderValue,
    upstream: Option<&str>,
    status: StatusCode,
    conn: ConnInfo,
    elapsed: Duration,
    error: Option<ProxyError>,
) {
    info!(
        tenant_id = &*entry.tenant,
        route = &*route.id,
        request_id = request_id.to_str().unwrap_or(""),
        method = method.as_str(),
        path = path.path(),
        client = %conn.client.ip(),
        upstream = upstream.unwrap_or(""),
        status = status.as_u16(),
        error = error.map_or("", |e| e.outward().1),
        latency_ms = elapsed.as_secs_f64() * 1000.0,
        "Request"
    );
}

/// A message's `Content-Length`, when it is one number.
pub(crate) fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// No `Transfer-Encoding`, or exactly one `chunked` (RFC 9112 §6.1: a
/// server answers 501 to a coding it does not understand).
fn transfer_coding_supported(headers: &HeaderMap) -> bool {
    let mut codings = headers.get_all(header::TRANSFER_ENCODING).iter();
    match (codings.next(), codings.next()) {
        (None, _) => true,
        (Some(only), None) => only
            .as_bytes()
            .trim_ascii()
            .eq_ignore_ascii_case(b"chunked"),
        _ => false,
    }
}

fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && headers.get_all(header::CONNECTION).iter().any(|v| {
            crate::http1::wire::tokens(v.as_bytes()).any(|t| t.eq_ignore_ascii_case(b"upgrade"))
        })
}

/// Whether any error in `err`'s source chain satisfies `test`.
fn caused_by(
    err: &crate::upstream::UpstreamError,
    test: impl Fn(&(dyn std::error::Error + 'static)) -> bool,
) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(err);
    while let Some(e) = source {
        if test(e) {
            return true;
        }
        source = e.source();
    }
    false
}

fn is_body_too_large(err: &crate::upstream::UpstreamError) -> bool {
    caused_by(err, |e| e.is::<BodyTooLarge>())
}

/// Whether an upstream error was a timeout (a connect timeout is a gateway timeout: 504).
fn is_timeout(err: &crate::upstream::UpstreamError) -> bool {
    err.is_timeout()
        || caused_by(err, |e| {
            e.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
        })
}

fn raw_host_value(req: &Request<ClientBody>) -> HeaderValue {
    req.headers()
        .get(header::HOST)
        .cloned()
        .or_else(|| {
            req.uri()
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        })
        .unwrap_or_else(|| HeaderValue::from_static(""))
}

/// Relays bytes both ways between the client and the upstream once the
/// client's side of a protocol switch is ready, in a task of its own.
#[inline(never)]
fn splice(
    client_upgrade: hyper::upgrade::OnUpgrade,
    upstream: crate::upstream::Upgraded,
    in_flight: crate::backends::endpoint::InFlight,
) {
    tokio::spawn(async move {
        let _in_flight = in_flight;
        if let Ok(client) = client_upgrade.await {
            let mut client = TokioIo::new(client);
            let mut upstream_stream = upstream.stream;
            if tokio::io::AsyncWriteExt::write_all(&mut client, &upstream.read)
                .await
                .is_ok()
            {
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream_stream).await;
            }
        }
    });
}

#[cold]
#[inline(never)]
fn redirect_to_https(host: &str, uri: &Uri, request_id: &HeaderValue) -> Response<ResponseBody> {
    let pq = uri.path_and_query().map_or("/", PathAndQuery::as_str);
    let mut response = Response::new(ResponseBody::empty());
    *response.status_mut() = StatusCode::PERMANENT_REDIRECT;
    if let Ok(location) = HeaderValue::from_str(&format!("https://{host}{pq}")) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
        .headers_mut()
        .insert(X_REQUEST_ID, request_id.clone());
    response
}

/// The grace given to in-flight requests on shutdown, by default.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

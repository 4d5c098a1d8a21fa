//! The server side of HTTP/1.x as raw clients see it: pipelined requests,
//! the hand-off to hyper mid-connection (bodies, upgrades, broken heads),
//! keep-alive by version and by `Connection`, HEAD, `Date`, chunked and
//! large responses, and idle connections closed on shutdown.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const HOST: &str = "www.acme.test";

async fn proxy_for(tag: &str) -> (Folder, Backend, veloflux_proxy::app::Running) {
    let a = Backend::start("a").await;
    let (folder, proxy) =
        proxy_with_routes(tag, &route("web", HOST, &[&a], "roundRobin", "")).await;
    (folder, a, proxy)
}

/// A response as read off the wire: status line, lowercased headers, body.
#[derive(Debug)]
struct Wire {
    status_line: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Wire {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A raw client connection with its unread bytes.
struct Raw {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Raw {
    async fn connect(addr: SocketAddr) -> Self {
        Self {
            stream: TcpStream::connect(addr).await.unwrap(),
            buf: Vec::new(),
        }
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    async fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 64 * 1024];
        match tokio::time::timeout(Duration::from_secs(10), self.stream.read(&mut chunk))
            .await
            .expect("the proxy answers within 10 s")
        {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
        }
    }

    /// Reads one response to a request of `method`.
    async fn response(&mut self, method: &str) -> Wire {
        let end = loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i;
            }
            assert!(self.fill().await, "closed before a response head");
        };
        let head = String::from_utf8(self.buf.drain(..end + 4).collect()).unwrap();
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap().to_owned();
        let headers: Vec<(String, String)> = lines
            .filter(|l| !l.is_empty())
            .map(|l| {
                let (n, v) = l.split_once(':').unwrap();
                (n.to_ascii_lowercase(), v.trim().to_owned())
            })
            .collect();
        let mut wire = Wire {
            status_line,
            headers,
            body: Vec::new(),
        };
        let status: u16 = wire.status_line[9..12].parse().unwrap();
        if method == "HEAD" || status == 204 || status == 304 || status / 100 == 1 {
            return wire;
        }
        if let Some(len) = wire.header("content-length") {
            let len: usize = len.parse().unwrap();
            while self.buf.len() < len {
                assert!(self.fill().await, "closed inside a body");
            }
            wire.body = self.buf.drain(..len).collect();
        } else if wire.header("transfer-encoding") == Some("chunked") {
            loop {
                let line = loop {
                    if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                        break i;
                    }
                    assert!(self.fill().await, "closed inside a chunk size");
                };
                let size_text = String::from_utf8(self.buf.drain(..line).collect()).unwrap();
                self.buf.drain(..2);
                let size = usize::from_str_radix(size_text.split(';').next().unwrap(), 16).unwrap();
                if size == 0 {
                    // Trailers up to the empty line.
                    loop {
                        if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                            let field: Vec<u8> = self.buf.drain(..i + 2).collect();
                            if i == 0 {
                                return wire;
                            }
                            let field = String::from_utf8(field).unwrap();
                            let (n, v) = field.trim_end().split_once(':').unwrap();
                            wire.headers.push((
                                format!("trailer:{}", n.to_ascii_lowercase()),
                                v.trim().to_owned(),
                            ));
                        } else {
                            assert!(self.fill().await, "closed inside trailers");
                        }
                    }
                }
                while self.buf.len() < size + 2 {
                    assert!(self.fill().await, "closed inside a chunk");
                }
                wire.body.extend(self.buf.drain(..size));
                self.buf.drain(..2);
            }
        } else {
            while self.fill().await {}
            wire.body = std::mem::take(&mut self.buf);
        }
        wire
    }

    /// Whether the proxy closed the connection (nothing more arrives).
    async fn closed(&mut self) -> bool {
        !self.fill().await && self.buf.is_empty()
    }
}

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: {HOST}\r\n\r\n")
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order_on_one_connection() {
    let (_f, a, proxy) = proxy_for("h1-pipeline").await;
    let mut raw = Raw::connect(proxy.listen).await;
    let batch: String = (0..5).map(|i| get(&format!("/p{i}"))).collect();
    raw.send(batch.as_bytes()).await;
    for _ in 0..5 {
        let got = raw.response("GET").await;
        assert_eq!(got.status_line, "HTTP/1.1 200 OK");
        assert!(got.text().starts_with("a 0 "), "{}", got.text());
        assert!(got.header("date").is_some(), "{got:?}");
        assert!(got.header("x-request-id").is_some(), "{got:?}");
        assert_eq!(got.header("connection"), None, "keep-alive needs no header");
    }
    assert_eq!(a.hits(), 5);
    // Still open for more.
    raw.send(get("/more").as_bytes()).await;
    assert_eq!(raw.response("GET").await.status_line, "HTTP/1.1 200 OK");
    proxy.shutdown().await;
}

#[tokio::test]
async fn a_request_with_a_body_mid_connection_is_served_and_so_are_those_after_it() {
    let (_f, a, proxy) = proxy_for("h1-handoff").await;
    let mut raw = Raw::connect(proxy.listen).await;
    // A GET, a POST with a body, a chunked POST and a GET, all in one
    // write: the body-less ones on either side of the bodies are answered
    // too, in order.
    let batch = format!(
        "{}POST /up HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 5\r\n\r\nhello\
         POST /chunked HTTP/1.1\r\nHost: {HOST}\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n{}",
        get("/before"),
        get("/after")
    );
    raw.send(batch.as_bytes()).await;
    let bodies: Vec<String> = [
        raw.response("GET").await,
        raw.response("POST").await,
        raw.response("POST").await,
        raw.response("GET").await,
    ]
    .iter()
    .map(|w| {
        assert_eq!(w.status_line, "HTTP/1.1 200 OK", "{w:?}");
        w.text()
    })
    .collect();
    assert!(bodies[0].starts_with("a 0 "), "{bodies:?}");
    assert!(bodies[1].starts_with("a 5 "), "{bodies:?}");
    assert!(bodies[2].starts_with("a 3 "), "{bodies:?}");
    assert!(bodies[3].starts_with("a 0 "), "{bodies:?}");
    assert_eq!(a.hits(), 4);
    proxy.shutdown().await;
}

#[tokio::test]
async fn a_zero_length_body_stays_on_the_fast_path_and_a_broken_head_gets_400() {
    let (_f, _a, proxy) = proxy_for("h1-broken").await;
    let mut raw = Raw::connect(proxy.listen).await;
    raw.send(format!("DELETE /x HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 0\r\n\r\n").as_bytes())
        .await;
    assert_eq!(raw.response("DELETE").await.status_line, "HTTP/1.1 200 OK");
    // A space before the colon is not HTTP: hyper refuses it with 400 and
    // closes, whichever path saw it first.
    raw.send(format!("GET / HTTP/1.1\r\nHost : {HOST}\r\n\r\n").as_bytes())
        .await;
    let got = raw.response("GET").await;
    assert!(got.status_line.starts_with("HTTP/1.1 400"), "{got:?}");
    assert!(raw.closed().await);
    proxy.shutdown().await;
}

#[tokio::test]
async fn keep_alive_follows_the_version_and_the_connection_header() {
    let (_f, _a, proxy) = proxy_for("h1-keepalive").await;

    // HTTP/1.0 without keep-alive: answered in 1.0, then closed.
    let mut raw = Raw::connect(proxy.listen).await;
    raw.send(format!("GET / HTTP/1.0\r\nHost: {HOST}\r\n\r\n").as_bytes())
        .await;
    let got = raw.response("GET").await;
    assert_eq!(got.status_line, "HTTP/1.0 200 OK");
    assert_eq!(got.header("connection"), Some("close"));
    assert!(raw.closed().await);

    // HTTP/1.0 asking for keep-alive: told so, and kept.
    let mut raw = Raw::connect(proxy.listen).await;
    for _ in 0..2 {
        raw.send(
            format!("GET / HTTP/1.0\r\nHost: {HOST}\r\nConnection: keep-alive\r\n\r\n").as_bytes(),
        )
        .await;
        let got = raw.response("GET").await;
        assert_eq!(got.status_line, "HTTP/1.0 200 OK");
        assert_eq!(got.header("connection"), Some("keep-alive"));
    }

    // HTTP/1.1 with `Connection: close`: answered, told, closed.
    let mut raw = Raw::connect(proxy.listen).await;
    raw.send(format!("GET / HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n").as_bytes())
        .await;
    let got = raw.response("GET").await;
    assert_eq!(got.status_line, "HTTP/1.1 200 OK");
    assert_eq!(got.header("connection"), Some("close"));
    assert!(raw.closed().await);
    proxy.shutdown().await;
}

#[tokio::test]
async fn head_gets_the_length_without_a_body_and_local_answers_carry_their_length() {
    let (_f, _a, proxy) = proxy_for("h1-head").await;
    let mut raw = Raw::connect(proxy.listen).await;
    raw.send(format!("HEAD / HTTP/1.1\r\nHost: {HOST}\r\n\r\n").as_bytes())
        .await;
    let got = raw.response("HEAD").await;
    assert_eq!(got.status_line, "HTTP/1.1 200 OK");
    let length: usize = got.header("content-length").unwrap().parse().unwrap();
    assert!(length > 0);
    // The next response starts right after the head: nothing was sent for
    // the HEAD's body.
    raw.send(b"GET / HTTP/1.1\r\nHost: nobody.example\r\n\r\n")
        .await;
    let got = raw.response("GET").await;
    assert_eq!(got.status_line, "HTTP/1.1 404 Not Found");
    assert_eq!(
        got.header("content-length").unwrap(),
        got.body.len().to_string()
    );
    assert!(got.text().contains("no_route"), "{}", got.text());
    assert!(got.header("date").is_some());
    proxy.shutdown().await;
}

/// An upstream answering every request with `reply`, on keep-alive
/// connections.
async fn upstream_replying(reply: &'static [u8]) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    while let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        buf.drain(..i + 4);
                        if stream.write_all(reply).await.is_err() {
                            return;
                        }
                    }
                    match stream.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
            });
        }
    });
    addr
}

async fn proxy_to(addr: SocketAddr, tag: &str) -> (Folder, veloflux_proxy::app::Running) {
    let route_yaml = format!(
        "apiVersion: veloflux.io/v1alpha1\nkind: Route\nmetadata: {{name: web, namespace: acme}}\nspec:\n  tenantRef: acme\n  hosts: [{HOST}]\n  backends:\n    - {{name: u, address: \"{addr}\"}}\n"
    );
    proxy_with_routes(tag, &route_yaml).await
}

#[tokio::test]
async fn a_chunked_response_with_trailers_goes_out_chunked() {
    let upstream = upstream_replying(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\nx-checksum: 42\r\n\r\n",
    )
    .await;
    let (_f, proxy) = proxy_to(upstream, "h1-chunked").await;
    let mut raw = Raw::connect(proxy.listen).await;
    for _ in 0..2 {
        raw.send(format!("GET / HTTP/1.1\r\nHost: {HOST}\r\nTE: trailers\r\n\r\n").as_bytes())
            .await;
        let got = raw.response("GET").await;
        assert_eq!(got.header("transfer-encoding"), Some("chunked"), "{got:?}");
        assert_eq!(got.header("content-length"), None);
        assert_eq!(got.text(), "hello world");
        assert_eq!(got.header("trailer:x-checksum"), Some("42"), "{got:?}");
    }
    // A client that did not say it takes trailers gets none.
    raw.send(get("/").as_bytes()).await;
    let got = raw.response("GET").await;
    assert_eq!(got.text(), "hello world");
    assert_eq!(got.header("trailer:x-checksum"), None, "{got:?}");
    proxy.shutdown().await;
}

#[tokio::test]
async fn a_large_body_arrives_whole_and_an_http_1_0_client_gets_it_until_close() {
    static REPLY: std::sync::LazyLock<Vec<u8>> = std::sync::LazyLock::new(|| {
        let body: Vec<u8> = (0..200_000u32).map(|i| b'a' + (i % 26) as u8).collect();
        let mut reply =
            format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
        reply.extend_from_slice(&body);
        reply
    });
    let upstream = upstream_replying(&REPLY).await;
    let (_f, proxy) = proxy_to(upstream, "h1-large").await;
    let mut raw = Raw::connect(proxy.listen).await;
    for _ in 0..3 {
        raw.send(get("/").as_bytes()).await;
        let got = raw.response("GET").await;
        assert_eq!(got.body.len(), 200_000);
        assert!(
            got.body
                .iter()
                .enumerate()
                .all(|(i, b)| *b == b'a' + (i % 26) as u8)
        );
    }

    // A chunked upstream body to an HTTP/1.0 client is delimited by close.
    let chunked = upstream_replying(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nfour\r\n0\r\n\r\n",
    )
    .await;
    let (_g, proxy2) = proxy_to(chunked, "h1-until-close").await;
    let mut raw = Raw::connect(proxy2.listen).await;
    raw.send(
        format!("GET / HTTP/1.0\r\nHost: {HOST}\r\nConnection: keep-alive\r\n\r\n").as_bytes(),
    )
    .await;
    let got = raw.response("GET").await;
    assert_eq!(got.status_line, "HTTP/1.0 200 OK");
    assert_eq!(got.header("connection"), Some("close"));
    assert_eq!(got.header("transfer-encoding"), None);
    assert_eq!(got.text(), "four");
    proxy.shutdown().await;
    proxy2.shutdown().await;
}

#[tokio::test]
async fn idle_connections_close_on_shutdown_and_a_partial_head_is_not_served() {
    let (_f, a, proxy) = proxy_for("h1-shutdown").await;
    let mut idle = Raw::connect(proxy.listen).await;
    idle.send(get("/").as_bytes()).await;
    assert_eq!(idle.response("GET").await.status_line, "HTTP/1.1 200 OK");
    let mut partial = Raw::connect(proxy.listen).await;
    partial.send(b"GET / HTTP/1.1\r\nHost: www.acme").await;
    let stopping = tokio::spawn(proxy.shutdown());
    assert!(idle.closed().await, "an idle keep-alive connection closes");
    // The partial head never completes: the drain waits for it only until
    // its grace (5 s here) is over, and the backend never sees a request
    // from it.
    tokio::time::timeout(Duration::from_secs(60), stopping)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(a.hits(), 1);
}

#[tokio::test]
async fn bodiless_answers_say_no_length_they_do_not_have() {
    // HEAD answered chunked upstream: no `content-length: 0` made up.
    // 204 with a length upstream: the length is not passed on.
    let upstream =
        upstream_replying(b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\nX-Kind: empty\r\n\r\n")
            .await;
    let (_f, proxy) = proxy_to(upstream, "h1-204").await;
    let mut raw = Raw::connect(proxy.listen).await;
    raw.send(get("/").as_bytes()).await;
    let got = raw.response("GET").await;
    assert_eq!(got.status_line, "HTTP/1.1 204 No Content");
    assert_eq!(got.header("x-kind"), Some("empty"));
    assert_eq!(got.header("content-length"), None, "{got:?}");
    raw.send(get("/").as_bytes()).await;
    assert_eq!(
        raw.response("GET").await.status_line,
        "HTTP/1.1 204 No Content"
    );

    let chunked = upstream_replying(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n").await;
    let (_g, proxy2) = proxy_to(chunked, "h1-head-chunked").await;
    let mut raw = Raw::connect(proxy2.listen).await;
    raw.send(format!("HEAD / HTTP/1.1\r\nHost: {HOST}\r\n\r\n").as_bytes())
        .await;
    let got = raw.response("HEAD").await;
    assert_eq!(got.status_line, "HTTP/1.1 200 OK");
    assert_eq!(got.header("content-length"), None, "{got:?}");
    proxy.shutdown().await;
    proxy2.shutdown().await;
}

#[tokio::test]
async fn close_wins_over_keep_alive_and_a_preface_after_requests_is_not_http2() {
    let (_f, _a, proxy) = proxy_for("h1-close-wins").await;
    let mut raw = Raw::connect(proxy.listen).await;
    raw.send(
        format!("GET / HTTP/1.0\r\nHost: {HOST}\r\nConnection: close, keep-alive\r\n\r\n")
            .as_bytes(),
    )
    .await;
    let got = raw.response("GET").await;
    assert_eq!(got.header("connection"), Some("close"));
    assert!(raw.closed().await);

    let mut raw = Raw::connect(proxy.listen).await;
    raw.send(get("/").as_bytes()).await;
    assert_eq!(raw.response("GET").await.status_line, "HTTP/1.1 200 OK");
    // hyper's HTTP/1 server refuses it; an HTTP/2 one would have sent its
    // SETTINGS frame.
    raw.send(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await;
    let mut reply = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(2), raw.stream.read_to_end(&mut reply)).await;
    assert!(
        reply.is_empty() || reply.starts_with(b"HTTP/1.1 4") || reply.starts_with(b"HTTP/1.1 5"),
        "{:?}",
        String::from_utf8_lossy(&reply)
    );
    proxy.shutdown().await;
}

#[tokio::test]
async fn a_head_sent_byte_by_byte_is_served_once_whole() {
    let (_f, a, proxy) = proxy_for("h1-bytes").await;
    let mut raw = Raw::connect(proxy.listen).await;
    let request = format!(
        "GET /slow HTTP/1.1\r\nHost: {HOST}\r\nX-Long: {}\r\n\r\n",
        "v".repeat(300)
    );
    for byte in request.as_bytes() {
        raw.send(&[*byte]).await;
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
    let got = raw.response("GET").await;
    assert_eq!(got.status_line, "HTTP/1.1 200 OK");
    assert_eq!(a.hits(), 1);
    proxy.shutdown().await;
}

#[tokio::test]
async fn a_client_that_leaves_cancels_its_upstream_request() {
    // An upstream that never answers, and counts its open connections.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let open = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = std::sync::Arc::clone(&open);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let counter = std::sync::Arc::clone(&counter);
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::spawn(async move {
                let mut chunk = [0u8; 4096];
                while matches!(stream.read(&mut chunk).await, Ok(n) if n > 0) {}
                counter.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
            });
        }
    });
    let (_f, proxy) = proxy_to(addr, "h1-leave").await;
    let mut raw = Raw::connect(proxy.listen).await;
    raw.send(get("/hang").as_bytes()).await;
    for _ in 0..100 {
        if open.load(std::sync::atomic::Ordering::SeqCst) == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(open.load(std::sync::atomic::Ordering::SeqCst), 1);
    drop(raw);
    for _ in 0..150 {
        if open.load(std::sync::atomic::Ordering::SeqCst) == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        open.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "the upstream exchange was dropped with the client"
    );
    proxy.shutdown().await;
}

//! HTTP/1.1 framing on the upstream side, against real loopback upstreams
//! that speak scripted bytes: chunked and read-until-close bodies, bodiless
//! responses, informational responses, broken heads and bodies, request
//! bodies by length and chunked, early responses, and pooled connections
//! the upstream closed before answering.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]
#![allow(
    clippy::disallowed_types,
    reason = "the scripted upstream logs what it read behind a test-only lock"
)]

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What a scripted upstream does with the `n`th request (from 0) of a
/// connection.
enum Act {
    /// Writes these bytes and waits for the next request.
    Reply(Vec<u8>),
    /// Writes these bytes and closes.
    ReplyAndClose(Vec<u8>),
    /// Closes without a word.
    Close,
    /// Writes these bytes as soon as the head is read, without reading the
    /// body, then holds the connection open for a while.
    ReplyBeforeBody(Vec<u8>),
    /// Writes these bytes as soon as the head is read and closes, the body
    /// unread.
    RefuseAndClose(Vec<u8>),
    /// Writes these bytes (a response without a length) as soon as the
    /// head is read, then reads until the proxy closes its side, and closes.
    StreamUntilClose(Vec<u8>),
    /// Writes a response head with the request's length as soon as the
    /// request head is read, then echoes the body as it comes.
    EchoAsItComes,
}

/// A request as the upstream read it: head text and decoded body.
#[derive(Debug, Clone)]
struct Seen {
    head: String,
    body: Vec<u8>,
}

struct Scripted {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

async fn scripted(script: fn(usize, &Seen) -> Act) -> Scripted {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (count, log) = (Arc::clone(&accepted), Arc::clone(&seen));
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            let log = Arc::clone(&log);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                for n in 0.. {
                    let Some(head) = read_head(&mut stream, &mut buf).await else {
                        return;
                    };
                    let mut request = Seen {
                        head,
                        body: Vec::new(),
                    };
                    match script(n, &request) {
                        Act::ReplyBeforeBody(bytes) => {
                            let _ = stream.write_all(&bytes).await;
                            tokio::time::sleep(Duration::from_secs(2)).await;
                            return;
                        }
                        Act::RefuseAndClose(bytes) => {
                            log.lock().unwrap().push(request);
                            let _ = stream.write_all(&bytes).await;
                            return;
                        }
                        Act::StreamUntilClose(bytes) => {
                            log.lock().unwrap().push(request);
                            let _ = stream.write_all(&bytes).await;
                            while fill(&mut stream, &mut buf).await {}
                            return;
                        }
                        Act::EchoAsItComes => {
                            let len: usize = header(&request.head, "content-length")
                                .unwrap()
                                .parse()
                                .unwrap();
                            let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {len}\r\n\r\n");
                            stream.write_all(head.as_bytes()).await.unwrap();
                            let mut echoed = 0;
                            while echoed < len {
                                if buf.is_empty() && !fill(&mut stream, &mut buf).await {
                                    return;
                                }
                                let take = buf.len().min(len - echoed);
                                let piece: Vec<u8> = buf.drain(..take).collect();
                                stream.write_all(&piece).await.unwrap();
                                echoed += take;
                            }
                            log.lock().unwrap().push(request);
                            continue;
                        }
                        _ => {}
                    }
                    request.body = read_body(&mut stream, &mut buf, &request.head).await;
                    let act = script(n, &request);
                    log.lock().unwrap().push(request);
                    match act {
                        Act::Reply(bytes) => {
                            if stream.write_all(&bytes).await.is_err() {
                                return;
                            }
                        }
                        Act::ReplyAndClose(bytes) => {
                            let _ = stream.write_all(&bytes).await;
                            return;
                        }
                        Act::Close
                        | Act::ReplyBeforeBody(_)
                        | Act::RefuseAndClose(_)
                        | Act::StreamUntilClose(_)
                        | Act::EchoAsItComes => return,
                    }
                }
            });
        }
    });
    Scripted {
        addr,
        accepted,
        seen,
    }
}

async fn fill(stream: &mut TcpStream, buf: &mut Vec<u8>) -> bool {
    let mut chunk = [0u8; 16 * 1024];
    match stream.read(&mut chunk).await {
        Ok(0) | Err(_) => false,
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            true
        }
    }
}

async fn read_head(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<String> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end + 4]).into_owned();
            buf.drain(..end + 4);
            return Some(head);
        }
        if !fill(stream, buf).await {
            return None;
        }
    }
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

async fn read_body(stream: &mut TcpStream, buf: &mut Vec<u8>, head: &str) -> Vec<u8> {
    if let Some(len) = header(head, "content-length") {
        let len: usize = len.parse().unwrap();
        while buf.len() < len {
            if !fill(stream, buf).await {
                break;
            }
        }
        return buf.drain(..len.min(buf.len())).collect();
    }
    if header(head, "transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        let mut body = Vec::new();
        loop {
            let line_end = loop {
                if let Some(i) = buf.windows(2).position(|w| w == b"\r\n") {
                    break i;
                }
                if !fill(stream, buf).await {
                    return body;
                }
            };
            let size =
                usize::from_str_radix(std::str::from_utf8(&buf[..line_end]).unwrap(), 16).unwrap();
            buf.drain(..line_end + 2);
            while buf.len() < size + 2 {
                if !fill(stream, buf).await {
                    return body;
                }
            }
            body.extend(buf.drain(..size));
            buf.drain(..2);
            if size == 0 {
                return body;
            }
        }
    }
    Vec::new()
}

async fn proxy_to(upstream: &Scripted, tag: &str) -> (Folder, veloflux_proxy::app::Running) {
    proxy_to_with(upstream, tag, "").await
}

/// As [`proxy_to`], with `extra` spec lines on the route.
async fn proxy_to_with(
    upstream: &Scripted,
    tag: &str,
    extra: &str,
) -> (Folder, veloflux_proxy::app::Running) {
    let route_yaml = format!(
        "apiVersion: veloflux.io/v1alpha1\nkind: Route\nmetadata: {{name: wire, namespace: acme}}\nspec:\n  tenantRef: acme\n  hosts: [wire.acme.test]\n  backends:\n    - {{name: w, address: \"{}\"}}\n{extra}",
        upstream.addr
    );
    proxy_with_routes(tag, &route_yaml).await
}

const HOST: &str = "wire.acme.test";

#[tokio::test]
async fn chunked_bodies_pass_through_and_their_connection_is_reused() {
    let upstream = scripted(|_, _| {
        Act::Reply(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;x=y\r\n world\r\n0\r\n\r\n"
                .to_vec(),
        )
    })
    .await;
    let (_f, proxy) = proxy_to(&upstream, "wire-chunked").await;
    let c = client();
    for _ in 0..3 {
        let got = get(&c, proxy.listen, HOST, "/").await;
        assert_eq!(got.status, 200, "{got:?}");
        assert_eq!(got.body, "hello world");
    }
    assert_eq!(upstream.accepted.load(Ordering::SeqCst), 1);
    proxy.shutdown().await;
}

#[tokio::test]
async fn a_body_read_until_close_arrives_whole_and_its_connection_is_not_reused() {
    let upstream =
        scripted(|_, _| Act::ReplyAndClose(b"HTTP/1.1 200 OK\r\n\r\nuntil the end".to_vec())).await;
    let (_f, proxy) = proxy_to(&upstream, "wire-close").await;
    let c = client();
    for _ in 0..2 {
        let got = get(&c, proxy.listen, HOST, "/").await;
        assert_eq!(got.status, 200, "{got:?}");
        assert_eq!(got.body, "until the end");
    }
    assert_eq!(upstream.accepted.load(Ordering::SeqCst), 2);
    proxy.shutdown().await;
}

#[tokio::test]
async fn bodiless_and_informational_responses_keep_the_connection_in_step() {
    let upstream = scripted(|_, seen| {
        let reply: &[u8] = if seen.head.starts_with("HEAD") {
            b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n"
        } else if seen.head.contains("/empty") {
            b"HTTP/1.1 204 No Content\r\n\r\n"
        } else {
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
        };
        Act::Reply(reply.to_vec())
    })
    .await;
    let (_f, proxy) = proxy_to(&upstream, "wire-bodiless").await;
    let c = client();
    let got = send(&c, proxy.listen, HOST, "HEAD", "/", b"").await;
    assert_eq!(got.status, 200, "{got:?}");
    assert_eq!(got.headers["content-length"], "100");
    assert_eq!(got.body, "");
    let got = get(&c, proxy.listen, HOST, "/empty").await;
    assert_eq!(got.status, 204);
    let got = get(&c, proxy.listen, HOST, "/after").await;
    assert_eq!(got.status, 200);
    assert_eq!(got.body, "ok", "the 100 Continue was skipped");
    assert_eq!(upstream.accepted.load(Ordering::SeqCst), 1);
    proxy.shutdown().await;
}

#[tokio::test]
async fn a_malformed_or_oversized_response_head_is_a_502() {
    let upstream = scripted(|_, seen| {
        if seen.head.contains("/big") {
            let mut reply = b"HTTP/1.1 200 OK\r\n".to_vec();
            for i in 0..2000 {
                reply.extend_from_slice(format!("x-filler-{i}: {:040}\r\n", i).as_bytes());
            }
            reply.extend_from_slice(b"content-length: 0\r\n\r\n");
            Act::ReplyAndClose(reply)
        } else if seen.head.contains("/length") {
            Act::ReplyAndClose(
                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc".to_vec(),
            )
        } else {
            Act::ReplyAndClose(b"HTTP/1.1 two hundred\r\n\r\n".to_vec())
        }
    })
    .await;
    let (_f, proxy) = proxy_to(&upstream, "wire-broken").await;
    let c = client();
    for path in ["/garbage", "/big", "/length"] {
        let got = get(&c, proxy.listen, HOST, path).await;
        assert_eq!(got.status, 502, "{path}: {got:?}");
        assert!(
            got.body.contains("\"upstream_error\""),
            "{path}: {}",
            got.body
        );
    }
    proxy.shutdown().await;
}

#[tokio::test]
async fn a_body_cut_short_is_not_passed_off_as_complete() {
    let upstream = scripted(|_, _| {
        Act::ReplyAndClose(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc".to_vec())
    })
    .await;
    let (_f, proxy) = proxy_to(&upstream, "wire-cut").await;
    let mut client = TcpStream::connect(proxy.listen).await.unwrap();
    client
        .write_all(format!("GET / HTTP/1.1\r\nHost: {HOST}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), client.read_to_end(&mut got))
        .await
        .expect("the proxy closed the client connection")
        .ok();
    // The head and the first bytes may or may not have left before the
    // break was seen; either way the connection ends short of the length.
    let text = String::from_utf8_lossy(&got);
    if let Some((head, body)) = text.split_once("\r\n\r\n") {
        assert!(head.contains("content-length: 10"), "{head}");
        assert!(body.len() < 10, "{body}");
    }
    proxy.shutdown().await;
}

#[tokio::test]
async fn request_bodies_go_up_with_their_length_or_chunked() {
    let upstream = scripted(|_, _| {
        Act::Reply(b"HTTP/1.1 201 Created\r\nContent-Length: 4\r\n\r\ndone".to_vec())
    })
    .await;
    let (_f, proxy) = proxy_to(&upstream, "wire-upload").await;
    let c = client();
    let got = send(&c, proxy.listen, HOST, "POST", "/len", b"abc").await;
    assert_eq!(got.status, 201, "{got:?}");
    assert_eq!(got.body, "done");

    // A chunked upload from the client goes up chunked, trailers and all.
    let mut raw = TcpStream::connect(proxy.listen).await.unwrap();
    raw.write_all(
        format!(
            "POST /chunked HTTP/1.1\r\nHost: {HOST}\r\nTransfer-Encoding: chunked\r\n\r\n\
             4\r\nwiki\r\n5\r\npedia\r\n0\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut reply = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), raw.read(&mut reply))
        .await
        .unwrap()
        .unwrap();
    assert!(String::from_utf8_lossy(&reply[..n]).starts_with("HTTP/1.1 201"));

    let seen = upstream.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    assert!(
        seen[0].head.starts_with("POST /len HTTP/1.1\r\n"),
        "{}",
        seen[0].head
    );
    assert_eq!(header(&seen[0].head, "content-length"), Some("3"));
    assert_eq!(seen[0].body, b"abc");
    assert_eq!(header(&seen[1].head, "transfer-encoding"), Some("chunked"));
    assert_eq!(header(&seen[1].head, "content-length"), None);
    assert_eq!(seen[1].body, b"wikipedia");
    assert_eq!(upstream.accepted.load(Ordering::SeqCst), 1);
    proxy.shutdown().await;
}

#[tokio::test]
async fn an_early_response_is_relayed_and_its_connection_is_not_reused() {
    let upstream = scripted(|_, seen| {
        if seen.head.starts_with("POST") {
            Act::ReplyBeforeBody(
                b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 4\r\n\r\nbig!".to_vec(),
            )
        } else {
            Act::Reply(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec())
        }
    })
    .await;
    let (_f, proxy) = proxy_to(&upstream, "wire-early").await;
    let c = client();
    let body = vec![b'x'; 4 << 20];
    let got = tokio::time::timeout(
        Duration::from_secs(10),
        send(&c, proxy.listen, HOST, "POST", "/upload", &body),
    )
    .await
    .expect("the early response came back before the body was sent");
    assert_eq!(got.status, 413, "{got:?}");
    assert_eq!(got.body, "big!");
    let got = get(&c, proxy.listen, HOST, "/next").await;
    assert_eq!(got.status, 200);
    assert_eq!(
        upstream.accepted.load(Ordering::SeqCst),
        2,
        "the connection the body did not finish on was dropped"
    );
    proxy.shutdown().await;
}

#[tokio::test]
async fn a_pooled_connection_closed_unanswered_is_retried_only_when_that_is_safe() {
    // Each connection answers its first request and closes on its second,
    // as an upstream whose keep-alive timer fired just then; `/die` is
    // never answered.
    let upstream = scripted(|n, seen| {
        if n == 0 && !seen.head.starts_with("GET /die ") {
            Act::Reply(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec())
        } else {
            Act::Close
        }
    })
    .await;
    let (_f, proxy) = proxy_to(&upstream, "wire-stale").await;
    let c = client();
    let sent = |path: &str| {
        let prefix = format!("{path} ");
        upstream
            .seen
            .lock()
            .unwrap()
            .iter()
            .filter(|s| {
                s.head
                    .split_once(' ')
                    .is_some_and(|(_, rest)| rest.starts_with(&prefix))
            })
            .count()
    };
    // Fill the pool with a few connections.
    let mut burst = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let c = c.clone();
        let listen = proxy.listen;
        burst.spawn(async move { get(&c, listen, HOST, "/warm").await.status });
    }
    assert!(burst.join_all().await.iter().all(|s| *s == 200));

    let opened = upstream.accepted.load(Ordering::SeqCst);
    let got = get(&c, proxy.listen, HOST, "/two").await;
    assert_eq!(
        got.status, 200,
        "a GET goes again on a new connection: {got:?}"
    );
    assert_eq!(sent("/two"), 2);
    assert_eq!(upstream.accepted.load(Ordering::SeqCst), opened + 1);

    // Once, however many pooled connections there are.
    let got = get(&c, proxy.listen, HOST, "/die").await;
    assert_eq!(got.status, 502, "{got:?}");
    assert_eq!(sent("/die"), 2, "sent on one pooled and one new connection");

    // A POST whose body reached the upstream is not sent twice.
    let got = send(&c, proxy.listen, HOST, "POST", "/three", b"once").await;
    assert_eq!(got.status, 502, "{got:?}");
    assert_eq!(sent("/three"), 1);
    proxy.shutdown().await;
}

#[tokio::test]
async fn a_response_that_comes_before_the_body_gets_the_rest_of_it() {
    let upstream = scripted(|_, _| Act::EchoAsItComes).await;
    let (_f, proxy) = proxy_to(&upstream, "wire-duplex").await;
    let mut client = TcpStream::connect(proxy.listen).await.unwrap();
    client
        .write_all(
            format!("POST /echo HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 10\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
    // The response head comes back before any of the body is sent.
    let mut got = Vec::new();
    let mut chunk = [0u8; 1024];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(5), client.read(&mut chunk))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0);
        got.extend_from_slice(&chunk[..n]);
    }
    assert!(got.starts_with(b"HTTP/1.1 200"));
    client.write_all(b"0123456789").await.unwrap();
    while !got.ends_with(b"0123456789") {
        let n = tokio::time::timeout(Duration::from_secs(5), client.read(&mut chunk))
            .await
            .expect("the body went up and came back")
            .unwrap();
        assert!(n > 0, "{}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&chunk[..n]);
    }
    drop(client);
    assert_eq!(upstream.seen.lock().unwrap().len(), 1);
    proxy.shutdown().await;
}

#[tokio::test]
async fn a_refusal_sent_before_closing_reaches_the_client() {
    let upstream = scripted(|_, _| {
        Act::RefuseAndClose(
            b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 4\r\nConnection: close\r\n\r\nbig!"
                .to_vec(),
        )
    })
    .await;
    let (_f, proxy) = proxy_to(&upstream, "wire-refuse").await;
    let c = client();
    let body = vec![b'x'; 4 << 20];
    for _ in 0..5 {
        let got = send(&c, proxy.listen, HOST, "POST", "/upload", &body).await;
        assert_eq!(got.status, 413, "{got:?}");
        assert_eq!(got.body, "big!");
    }
    proxy.shutdown().await;
}

#[tokio::test]
async fn a_body_length_the_client_names_in_connection_still_frames_the_body() {
    let upstream =
        scripted(|_, _| Act::Reply(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec()))
            .await;
    let (_f, proxy) = proxy_to(&upstream, "wire-smuggle").await;
    let smuggled = "GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut raw = TcpStream::connect(proxy.listen).await.unwrap();
    raw.write_all(
        format!(
            "POST /front HTTP/1.1\r\nHost: {HOST}\r\nConnection: content-length\r\n\
             Content-Length: {}\r\n\r\n{smuggled}",
            smuggled.len()
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut reply = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), raw.read(&mut reply))
        .await
        .unwrap()
        .unwrap();
    assert!(String::from_utf8_lossy(&reply[..n]).starts_with("HTTP/1.1 200"));
    // One more request on the proxy's pooled connection, to be sure
    // nothing is left in the upstream's view of it.
    let got = get(&client(), proxy.listen, HOST, "/after").await;
    assert_eq!(got.status, 200);
    let seen = upstream.seen.lock().unwrap().clone();
    let targets: Vec<&str> = seen
        .iter()
        .map(|s| s.head.split(' ').nth(1).unwrap())
        .collect();
    assert_eq!(targets, ["/front", "/after"], "{seen:#?}");
    assert_eq!(seen[0].body, smuggled.as_bytes());
    proxy.shutdown().await;
}

#[tokio::test]
async fn a_response_read_until_close_is_not_complete_when_the_body_could_not_go_up() {
    let upstream =
        scripted(|_, _| Act::StreamUntilClose(b"HTTP/1.1 200 OK\r\n\r\npart1".to_vec())).await;
    let (_f, proxy) = proxy_to_with(&upstream, "wire-cutup", "  maxRequestBodyBytes: 10\n").await;
    let mut raw = TcpStream::connect(proxy.listen).await.unwrap();
    raw.write_all(
        format!(
            "POST /c HTTP/1.1\r\nHost: {HOST}\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut got = Vec::new();
    let mut chunk = [0u8; 1024];
    while !got.windows(5).any(|w| w == b"part1") {
        let n = tokio::time::timeout(Duration::from_secs(5), raw.read(&mut chunk))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0);
        got.extend_from_slice(&chunk[..n]);
    }
    // Past the route's limit: the rest cannot go up.
    raw.write_all(b"14\r\n01234567890123456789\r\n0\r\n\r\n")
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(5), raw.read_to_end(&mut got))
        .await
        .expect("the proxy ended the response")
        .ok();
    let text = String::from_utf8_lossy(&got);
    assert!(
        !text.ends_with("0\r\n\r\n"),
        "the client must not see a complete response: {text:?}"
    );
    proxy.shutdown().await;
}

#[tokio::test]
async fn a_request_in_another_transfer_coding_is_refused_with_501() {
    let upstream =
        scripted(|_, _| Act::Reply(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec()))
            .await;
    let (_f, proxy) = proxy_to(&upstream, "wire-coding").await;
    for coding in ["gzip, chunked", "gzip\r\nTransfer-Encoding: chunked"] {
        let mut raw = TcpStream::connect(proxy.listen).await.unwrap();
        raw.write_all(
            format!(
                "POST /z HTTP/1.1\r\nHost: {HOST}\r\nTransfer-Encoding: {coding}\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
        let mut reply = vec![0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(5), raw.read(&mut reply))
            .await
            .unwrap()
            .unwrap();
        let text = String::from_utf8_lossy(&reply[..n]);
        assert!(text.starts_with("HTTP/1.1 501"), "{coding}: {text}");
        assert!(text.contains("unsupported_transfer_coding"), "{text}");
    }
    assert!(upstream.seen.lock().unwrap().is_empty());
    proxy.shutdown().await;
}

#[tokio::test]
async fn a_body_on_a_get_does_not_leave_its_connection_pooled() {
    let upstream =
        scripted(|_, _| Act::Reply(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec()))
            .await;
    let (_f, proxy) = proxy_to(&upstream, "wire-getbody").await;
    let c = client();
    for _ in 0..2 {
        let got = send(
            &c,
            proxy.listen,
            HOST,
            "GET",
            "/g",
            b"GET /x HTTP/1.1\r\n\r\n",
        )
        .await;
        assert_eq!(got.status, 200, "{got:?}");
    }
    assert_eq!(
        upstream.accepted.load(Ordering::SeqCst),
        2,
        "an upstream that ignores GET bodies could read one as a request"
    );
    // Bodiless GETs share a connection as before.
    for _ in 0..3 {
        assert_eq!(get(&c, proxy.listen, HOST, "/plain").await.status, 200);
    }
    assert_eq!(upstream.accepted.load(Ordering::SeqCst), 3);
    proxy.shutdown().await;
}

//! TLS: the certificate is chosen by SNI from each tenant's Secrets, names
//! without one get the default certificate, ALPN offers h2, and requests
//! over TLS are routed with `X-Forwarded-Proto: https`.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod support;

use std::sync::Arc;

use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, ServerName};
use support::*;
use tokio::net::TcpStream;

struct Cert {
    pem: String,
    key: String,
    der: Vec<u8>,
}

fn cert(names: &[&str]) -> Cert {
    let c = rcgen::generate_simple_self_signed(
        names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>(),
    )
    .unwrap();
    Cert {
        pem: c.cert.pem(),
        key: c.signing_key.serialize_pem(),
        der: c.cert.der().to_vec(),
    }
}

fn secret(namespace: &str, name: &str, c: &Cert) -> String {
    let indent = |t: &str| t.lines().map(|l| format!("    {l}\n")).collect::<String>();
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}, namespace: {namespace}}}\ntype: kubernetes.io/tls\nstringData:\n  tls.crt: |\n{}  tls.key: |\n{}",
        indent(&c.pem),
        indent(&c.key)
    )
}

async fn handshake(
    addr: std::net::SocketAddr,
    sni: &str,
    roots: &[&Cert],
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let mut store = rustls::RootCertStore::empty();
    for c in roots {
        store.add(CertificateDer::from(c.der.clone())).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(store)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(addr).await.unwrap();
    connector
        .connect(ServerName::try_from(sni.to_owned()).unwrap(), tcp)
        .await
        .unwrap()
}

#[tokio::test]
async fn sni_picks_each_tenants_certificate_and_falls_back_to_the_default() {
    let backend = Backend::start("a").await;
    let acme = cert(&["secure.acme.test"]);
    let globex = cert(&["globex.test"]);
    let default = cert(&["default.invalid"]);
    let folder = Folder::new("tls");
    folder.write("00-tenants.yaml", &plan_and_tenant());
    folder.write(
        "secrets.yaml",
        &format!(
            "{}---\n{}",
            secret("acme", "acme-tls", &acme),
            secret("globex", "globex-tls", &globex)
        ),
    );
    let tls = "  tls: {secretRef: {name: acme-tls}}\n";
    let globex_route = format!(
        "apiVersion: veloflux.io/v1alpha1\nkind: Route\nmetadata: {{name: www, namespace: globex}}\nspec:\n  tenantRef: globex\n  hosts: [globex.test]\n  tls: {{secretRef: {{name: globex-tls}}}}\n  backends:\n    - {{name: a, address: \"{}\"}}\n",
        backend.addr
    );
    folder.write(
        "routes.yaml",
        &format!(
            "{}---\n{globex_route}",
            route("secure", "secure.acme.test", &[&backend], "roundRobin", tls)
        ),
    );
    std::fs::write(folder.path().join("default.crt"), &default.pem).unwrap();
    std::fs::write(folder.path().join("default.key"), &default.key).unwrap();
    let mut cfg = config(folder.path());
    cfg.tls_listen = Some("127.0.0.1:0".parse().unwrap());
    cfg.tls_cert = Some(folder.path().join("default.crt"));
    cfg.tls_key = Some(folder.path().join("default.key"));
    let proxy = veloflux_proxy::app::start(cfg).await.unwrap();
    let addr = proxy.tls.unwrap();

    for (sni, expected) in [
        ("secure.acme.test", &acme),
        ("globex.test", &globex),
        ("default.invalid", &default),
    ] {
        let stream = handshake(addr, sni, &[&acme, &globex, &default]).await;
        let (_, conn) = stream.get_ref();
        let presented = conn.peer_certificates().unwrap()[0].as_ref().to_vec();
        assert_eq!(presented, expected.der, "certificate presented for {sni}");
        assert_eq!(conn.alpn_protocol(), Some(&b"h2"[..]), "ALPN negotiates h2");
    }

    // The default certificate reloads when its files change.
    let renewed = cert(&["default.invalid"]);
    std::fs::write(folder.path().join("default.key"), &renewed.key).unwrap();
    std::fs::write(folder.path().join("default.crt"), &renewed.pem).unwrap();
    let mut reloaded = false;
    for _ in 0..100 {
        let stream = handshake(addr, "default.invalid", &[&default, &renewed]).await;
        if stream.get_ref().1.peer_certificates().unwrap()[0].as_ref() == renewed.der.as_slice() {
            reloaded = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(reloaded, "the renewed default certificate is not served");

    // A request over TLS (HTTP/2 via ALPN) reaches the backend as https.
    let stream = handshake(addr, "secure.acme.test", &[&acme]).await;
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let req = http::Request::builder()
        .uri("https://secure.acme.test/")
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let body = String::from_utf8_lossy(&body);
    assert!(body.contains("|https|"), "{body}");
    proxy.shutdown().await;
}

#[tokio::test]
async fn plain_http_is_redirected_when_the_route_asks_for_it() {
    let backend = Backend::start("a").await;
    let acme = cert(&["secure.acme.test"]);
    let folder = Folder::new("redirect");
    folder.write("00-tenants.yaml", &plan_and_tenant());
    folder.write("secrets.yaml", &secret("acme", "acme-tls", &acme));
    let tls = "  tls: {secretRef: {name: acme-tls}, httpsRedirect: true}\n";
    folder.write(
        "routes.yaml",
        &route("secure", "secure.acme.test", &[&backend], "roundRobin", tls),
    );
    let proxy = start_proxy(folder.path()).await;
    let got = get(&client(), proxy.listen, "secure.acme.test", "/a?b=c").await;
    assert_eq!(got.status, 308);
    assert_eq!(got.headers["location"], "https://secure.acme.test/a?b=c");
    assert_eq!(backend.hits(), 0);
    proxy.shutdown().await;
}

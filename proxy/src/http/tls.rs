//! TLS termination: rustls with the certificate chosen by SNI from the
//! current snapshot (each tenant's certificates, compiled with its routing,
//! so they reload with it), a default certificate for names without one,
//! TLS 1.2 and 1.3, and ALPN `h2` / `http/1.1`.

use std::sync::Arc;

use arc_swap::ArcSwapOption;
use rustls::ServerConfig;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::routing::snapshot::{Store, normalize_host};

/// The acceptor listeners use.
pub type TlsAcceptor = tokio_rustls::TlsAcceptor;

/// Why a certificate could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// The certificate PEM holds no certificate.
    #[error("no certificate in PEM")]
    NoCertificate,
    /// The PEM is malformed.
    #[error("invalid PEM: {0}")]
    Pem(String),
    /// The key is unusable.
    #[error("unsupported or invalid private key: {0}")]
    Key(String),
}

/// Parses a PEM chain and key into a signing-ready certificate.
pub fn certified_key(cert_pem: &str, key_pem: &str) -> Result<Arc<CertifiedKey>, CertError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| CertError::Pem(e.to_string()))?;
    if chain.is_empty() {
        return Err(CertError::NoCertificate);
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| CertError::Pem(e.to_string()))?;
    let signing = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|e| CertError::Key(e.to_string()))?;
    let key = CertifiedKey::new(chain, signing);
    // A key that does not belong to the certificate would fail every handshake.
    key.keys_match()
        .map_err(|e| CertError::Key(format!("key does not match the certificate: {e}")))?;
    Ok(Arc::new(key))
}

/// Picks a certificate by SNI: the host's tenant certificate, else the default.
#[derive(Debug)]
pub struct SniResolver {
    store: Arc<Store>,
    default: ArcSwapOption<CertifiedKey>,
}

impl SniResolver {
    /// A resolver over `store`, with an optional default certificate.
    pub fn new(store: Arc<Store>, default: Option<Arc<CertifiedKey>>) -> Self {
        Self {
            store,
            default: ArcSwapOption::new(default),
        }
    }

    /// Replaces the default certificate (hot reload).
    pub fn set_default(&self, default: Option<Arc<CertifiedKey>>) {
        self.default.store(default);
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        if let Some(name) = hello.server_name() {
            let mut buf = [0u8; 255];
            if let Some(host) = normalize_host(name, &mut buf)
                && let Some(cert) = self
                    .store
                    .load()
                    .host(host)
                    .and_then(|e| e.certificate.clone())
            {
                return Some(cert);
            }
        }
        self.default.load_full()
    }
}

/// The rustls server config: TLS 1.2 + 1.3 with ring, ALPN h2 then http/1.1.
pub fn server_config(resolver: Arc<SniResolver>) -> Result<Arc<ServerConfig>, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

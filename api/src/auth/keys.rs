//! Signing keys: a folder of Ed25519 PKCS#8 PEM files (`<kid>.pem`), which
//! is how a Kubernetes Secret mounted as a volume looks. The greatest key id
//! signs; every key in the folder verifies, so rotation is: add a key (it
//! signs from the next read), keep the old one until the last token it
//! signed has expired, then remove it. The folder is read again while the
//! API runs; a read that fails keeps the key set in use.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{DecodingKey, EncodingKey};
use ring::signature::{Ed25519KeyPair, KeyPair as _};
use rustls_pki_types::PrivatePkcs8KeyDer;
use rustls_pki_types::pem::PemObject as _;

/// Why a key folder cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The folder or a file in it cannot be read.
    #[error("{path}: {reason}")]
    Read {
        /// File or folder.
        path: PathBuf,
        /// The I/O error.
        reason: String,
    },
    /// A file is not an Ed25519 PKCS#8 private key.
    #[error("{path}: not an Ed25519 private key in PKCS#8 PEM ({reason})")]
    NotEd25519 {
        /// File.
        path: PathBuf,
        /// What the parser said.
        reason: String,
    },
    /// A key id (file name) has characters a JWT header should not carry.
    #[error("{path}: key ids (file names) may use only A-Z a-z 0-9 . _ -")]
    BadKeyId {
        /// File.
        path: PathBuf,
    },
    /// No key in the folder.
    #[error("{0}: no signing key (*.pem); create one with `veloflux-api generate-key`")]
    Empty(PathBuf),
}

/// One loaded key set: who signs, who verifies, and the JWKS document.
pub struct KeySet {
    generation: u64,
    signing_kid: String,
    signing: EncodingKey,
    verifying: BTreeMap<String, DecodingKey>,
    jwks: bytes::Bytes,
}

impl KeySet {
    /// Reads every `*.pem` in `dir`.
    pub fn load(dir: &Path) -> Result<Self, KeyError> {
        let read_error = |path: &Path, e: std::io::Error| KeyError::Read {
            path: path.to_owned(),
            reason: e.to_string(),
        };
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| read_error(dir, e))?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "pem") && p.is_file())
            .collect();
        files.sort();
        let mut keys = BTreeMap::new();
        for path in &files {
            let kid = path
                .file_stem()
                .and_then(|s| s.to_str())
                .filter(|s| {
                    !s.is_empty()
                        && s.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
                })
                .ok_or_else(|| KeyError::BadKeyId { path: path.clone() })?
                .to_owned();
            let pem = std::fs::read(path).map_err(|e| read_error(path, e))?;
            let der =
                PrivatePkcs8KeyDer::from_pem_slice(&pem).map_err(|e| KeyError::NotEd25519 {
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
            let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der.secret_pkcs8_der()).map_err(
                |e| KeyError::NotEd25519 {
                    path: path.clone(),
                    reason: e.to_string(),
                },
            )?;
            let public = pair.public_key().as_ref().to_vec();
            keys.insert(kid, (der.secret_pkcs8_der().to_vec(), public));
        }
        let Some((signing_kid, (signing_der, _))) = keys.iter().next_back() else {
            return Err(KeyError::Empty(dir.to_owned()));
        };
        let mut jwks = Vec::new();
        let mut verifying = BTreeMap::new();
        for (kid, (_, public)) in &keys {
            let x = URL_SAFE_NO_PAD.encode(public);
            let decoding =
                DecodingKey::from_ed_components(&x).map_err(|e| KeyError::NotEd25519 {
                    path: dir.join(format!("{kid}.pem")),
                    reason: e.to_string(),
                })?;
            verifying.insert(kid.clone(), decoding);
            jwks.push(serde_json::json!({
                "kty": "OKP", "crv": "Ed25519", "x": x, "kid": kid, "use": "sig", "alg": "EdDSA"
            }));
        }
        let jwks = serde_json::to_vec(&serde_json::json!({ "keys": jwks }))
            .unwrap_or_default()
            .into();
        Ok(Self {
            generation: 0,
            signing_kid: signing_kid.clone(),
            signing: EncodingKey::from_ed_der(signing_der),
            verifying,
            jwks,
        })
    }

    /// Counts changes of the key set: what a token was verified against.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The key id that signs.
    pub fn signing_kid(&self) -> &str {
        &self.signing_kid
    }

    /// The signing key.
    pub fn signing_key(&self) -> &EncodingKey {
        &self.signing
    }

    /// The verifying key of `kid`, if the folder has it.
    pub fn verifying_key(&self, kid: &str) -> Option<&DecodingKey> {
        self.verifying.get(kid)
    }

    /// `/.well-known/jwks.json`: every verifying key.
    pub fn jwks(&self) -> bytes::Bytes {
        self.jwks.clone()
    }

    /// Key ids, signing one last.
    pub fn kids(&self) -> Vec<String> {
        self.verifying.keys().cloned().collect()
    }
}

/// The key set in use, swapped whole when the folder changes.
pub struct SigningKeys {
    dir: PathBuf,
    current: ArcSwap<KeySet>,
}

impl SigningKeys {
    /// Loads `dir`; a folder without a usable key is refused.
    pub fn open(dir: &Path) -> Result<Arc<Self>, KeyError> {
        let set = KeySet::load(dir)?;
        Ok(Arc::new(Self {
            dir: dir.to_owned(),
            current: ArcSwap::from_pointee(set),
        }))
    }

    /// The key set now.
    pub fn current(&self) -> Arc<KeySet> {
        self.current.load_full()
    }

    /// Reads the folder again; on failure the key set in use stays.
    pub fn reload(&self) -> Result<bool, KeyError> {
        let mut set = KeySet::load(&self.dir)?;
        let current = self.current.load();
        let changed = set.kids() != current.kids();
        set.generation = current.generation + u64::from(changed);
        if changed {
            tracing::info!(signing = set.signing_kid(), keys = ?set.kids(), "Signing keys changed");
        }
        self.current.store(Arc::new(set));
        Ok(changed)
    }

    /// Reads the folder again every `interval`, until the process ends.
    pub fn watch(self: &Arc<Self>, interval: std::time::Duration) {
        let this = Arc::clone(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                let reader = Arc::clone(&this);
                match tokio::task::spawn_blocking(move || reader.reload()).await {
                    Ok(Err(error)) => {
                        tracing::warn!(%error, "Signing keys not reloaded; keeping the current set");
                    }
                    Err(error) => tracing::warn!(%error, "Signing key reload failed"),
                    Ok(Ok(_)) => {}
                }
            }
        });
    }
}

/// Writes a new Ed25519 key into `dir` as `<kid>.pem` (mode 0600) and
/// returns its path. The id is the current UTC time (`k20261204t200105`),
/// so the newest key sorts last and signs.
pub fn generate(dir: &Path) -> Result<PathBuf, KeyError> {
    let write_error = |path: &Path, e: std::io::Error| KeyError::Read {
        path: path.to_owned(),
        reason: e.to_string(),
    };
    std::fs::create_dir_all(dir).map_err(|e| write_error(dir, e))?;
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new()).map_err(|e| {
        KeyError::NotEd25519 {
            path: dir.to_owned(),
            reason: e.to_string(),
        }
    })?;
    let stamp = k8s_openapi::jiff::Timestamp::now()
        .strftime("%Y%m%dt%H%M%S")
        .to_string();
    let mut path = dir.join(format!("k{stamp}.pem"));
    let mut n = 1;
    while path.exists() {
        path = dir.join(format!("k{stamp}-{n}.pem"));
        n += 1;
    }
    let pem = pem_encode("PRIVATE KEY", pkcs8.as_ref());
    write_private(&path, pem.as_bytes()).map_err(|e| write_error(&path, e))?;
    Ok(path)
}

fn pem_encode(label: &str, der: &[u8]) -> String {
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let mut pem = format!("-----BEGIN {label}-----\n");
    for line in body.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str(&format!("-----END {label}-----\n"));
    pem
}

#[cfg(unix)]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(not(unix))]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "vf-keys-{name}-{}-{}",
            std::process::id(),
            crate::auth::random_id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn the_greatest_key_id_signs_and_every_key_is_published() {
        let dir = temp_dir("rotate");
        let first = generate(&dir).unwrap();
        let keys = SigningKeys::open(&dir).unwrap();
        let first_kid = first.file_stem().unwrap().to_str().unwrap().to_owned();
        assert_eq!(keys.current().signing_kid(), first_kid);
        std::fs::copy(&first, dir.join("zz-next.pem")).unwrap();
        assert!(keys.reload().unwrap());
        let set = keys.current();
        assert_eq!(set.signing_kid(), "zz-next");
        let jwks: serde_json::Value = serde_json::from_slice(&set.jwks()).unwrap();
        let kids: Vec<&str> = jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap())
            .collect();
        assert_eq!(kids, vec![first_kid.as_str(), "zz-next"]);
        assert_eq!(jwks["keys"][0]["kty"], "OKP");
        assert_eq!(jwks["keys"][0]["crv"], "Ed25519");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_folder_without_keys_or_with_a_broken_key_is_refused() {
        let dir = temp_dir("broken");
        assert!(matches!(KeySet::load(&dir), Err(KeyError::Empty(_))));
        std::fs::write(dir.join("bad.pem"), "not a key").unwrap();
        assert!(matches!(
            KeySet::load(&dir),
            Err(KeyError::NotEd25519 { .. })
        ));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_broken_reload_keeps_the_keys_in_use() {
        let dir = temp_dir("keep");
        generate(&dir).unwrap();
        let keys = SigningKeys::open(&dir).unwrap();
        let before = keys.current().signing_kid().to_owned();
        std::fs::write(dir.join("zzz.pem"), "garbage").unwrap();
        assert!(keys.reload().is_err());
        assert_eq!(keys.current().signing_kid(), before);
        std::fs::remove_dir_all(dir).unwrap();
    }
}

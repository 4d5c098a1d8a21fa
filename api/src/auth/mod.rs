//! Identity and access: password hashing, signing keys, access tokens,
//! roles and the one layer that checks them, and sign-in throttling.
//!
//! Secrets the API hands out (refresh, invitation and verification tokens)
//! are random, shown once, and stored only as their SHA-256 digest.

pub mod access;
pub mod keys;
pub mod password;
pub mod throttle;
pub mod tokens;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::{SecureRandom, SystemRandom};

/// `N` bytes from the system's secure random source.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    // The system source does not fail on any platform we run on; a zeroed
    // buffer would be caught by uniqueness constraints (NX writes) anyway.
    if SystemRandom::new().fill(&mut bytes).is_err() {
        tracing::error!("System random source failed");
    }
    bytes
}

/// A random, URL-safe secret of 32 bytes (43 characters).
pub fn random_secret() -> String {
    URL_SAFE_NO_PAD.encode(random_bytes::<32>())
}

/// A random id: 16 bytes as lowercase hex, valid inside a Redis hash tag
/// and as a Kubernetes-style name.
pub fn random_id() -> String {
    hex(&random_bytes::<16>())
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    out
}

/// Hex SHA-256 of `text`: how secrets and email addresses are stored.
pub fn digest(text: &str) -> String {
    hex(ring::digest::digest(&ring::digest::SHA256, text.as_bytes()).as_ref())
}

/// Compares two strings in time independent of where they differ.
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    veloflux_store::acks::now_ms()
}

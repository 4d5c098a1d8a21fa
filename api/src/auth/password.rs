//! Password hashing: argon2id with OWASP's parameters (19 MiB, 2 passes, 1
//! lane by default), on the blocking pool so sign-ins never stall the async
//! workers, with a bound on how many hash at once (each holds its memory).
//! A sign-in for an unknown email verifies against a dummy hash, so it costs
//! the same time as a wrong password.

use std::sync::Arc;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::Semaphore;

use crate::error::ApiError;

/// Shortest password accepted, in characters.
pub const MIN_LENGTH: usize = 12;
/// Longest password accepted, in bytes (bounds the hashing work).
pub const MAX_BYTES: usize = 256;

/// Hashes and verifies passwords.
#[derive(Clone)]
pub struct Passwords {
    params: Params,
    permits: Arc<Semaphore>,
    dummy: Arc<str>,
}

impl Passwords {
    /// argon2id with `memory_kib` and `iterations`, one lane.
    pub fn new(memory_kib: u32, iterations: u32) -> Result<Self, String> {
        let params = Params::new(memory_kib, iterations, 1, None).map_err(|e| e.to_string())?;
        let permits = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
        let mut passwords = Self {
            params,
            permits: Arc::new(Semaphore::new(permits)),
            dummy: Arc::from(""),
        };
        passwords.dummy = Arc::from(passwords.hash_now("veloflux-dummy-password")?);
        Ok(passwords)
    }

    fn hasher(&self) -> Argon2<'static> {
        Argon2::new(Algorithm::Argon2id, Version::V0x13, self.params.clone())
    }

    fn hash_now(&self, password: &str) -> Result<String, String> {
        let salt = SaltString::encode_b64(&crate::auth::random_bytes::<16>())
            .map_err(|e| e.to_string())?;
        self.hasher()
            .hash_password(password.as_bytes(), &salt)
            .map(|hash| hash.to_string())
            .map_err(|e| e.to_string())
    }

    /// The PHC string (`$argon2id$v=19$m=…`) of `password`.
    pub async fn hash(&self, password: String) -> Result<String, ApiError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.hash_now(&password))
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))?
            .map_err(ApiError::Internal)
    }

    /// Whether `password` matches `phc`. With no hash (unknown person, or
    /// one who signs in only through an identity provider) it still does the
    /// work of a verification and answers false.
    pub async fn verify(&self, password: String, phc: Option<String>) -> Result<bool, ApiError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            let known = phc.is_some();
            let phc = phc.unwrap_or_else(|| this.dummy.to_string());
            let Ok(parsed) = PasswordHash::new(&phc) else {
                return false;
            };
            // Verify with the parameters the hash was made with (they may
            // predate a change of flags).
            let matched = Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok();
            known && matched
        })
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))
    }
}

/// Problems with a new password, if any.
pub fn check_new(password: &str) -> Option<String> {
    if password.chars().count() < MIN_LENGTH {
        Some(format!("must be at least {MIN_LENGTH} characters"))
    } else if password.len() > MAX_BYTES {
        Some(format!("must be at most {MAX_BYTES} bytes"))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_hash_verifies_its_password_and_no_other() {
        let passwords = Passwords::new(8192, 1).unwrap();
        let phc = passwords
            .hash("correct horse battery".into())
            .await
            .unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=8192,t=1,p=1$"), "{phc}");
        assert!(
            passwords
                .verify("correct horse battery".into(), Some(phc.clone()))
                .await
                .unwrap()
        );
        assert!(
            !passwords
                .verify("wrong horse battery".into(), Some(phc))
                .await
                .unwrap()
        );
        assert!(
            !passwords
                .verify("veloflux-dummy-password".into(), None)
                .await
                .unwrap(),
            "without a hash nothing matches, not even the dummy's password"
        );
    }

    #[test]
    fn short_and_huge_passwords_are_refused() {
        assert!(check_new("short").is_some());
        assert!(check_new(&"x".repeat(300)).is_some());
        assert!(check_new("twelve chars").is_none());
    }
}

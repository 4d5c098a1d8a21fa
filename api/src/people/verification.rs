//! Email verification: a single-use token (`vfv_<secret>`) sent through the
//! notifier, stored as its digest with the token's lifetime. Confirming it
//! marks the person's address verified; until then they cannot create
//! routes.

use std::time::Duration;

use fred::prelude::{Client, Expiration, KeysInterface};
use veloflux_crds::keys;

use crate::error::ApiError;

/// Prefix of verification tokens.
pub const PREFIX: &str = "vfv_";

/// Creates a verification token for `user`, valid for `ttl`.
pub async fn issue(client: &Client, user: &str, ttl: Duration) -> Result<String, ApiError> {
    let secret = crate::auth::random_secret();
    let _: () = client
        .set(
            keys::email_verification(&crate::auth::digest(&secret)),
            user,
            Some(Expiration::PX(
                i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX),
            )),
            None,
            false,
        )
        .await?;
    Ok(format!("{PREFIX}{secret}"))
}

/// The user a token verifies, consuming it; `None` if unknown, used or expired.
pub async fn consume(client: &Client, token: &str) -> Result<Option<String>, ApiError> {
    let Some(secret) = token.strip_prefix(PREFIX).filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    let user: Option<String> = client
        .getdel(keys::email_verification(&crate::auth::digest(secret)))
        .await?;
    Ok(user)
}

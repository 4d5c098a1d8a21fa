//! Cost of the API's authentication steps, in process: verifying an access
//! token (what every authenticated request pays), issuing one, and argon2id
//! with the default (OWASP) parameters (what a sign-in pays).
//!
//! `cargo bench -p veloflux-api --bench auth`

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::{Duration, Instant};

use veloflux_api::auth::keys::{SigningKeys, generate};
use veloflux_api::auth::password::Passwords;
use veloflux_api::auth::tokens::{Subject, Tokens};
use veloflux_crds::tenant::TenantRole;

fn per_op(label: &str, n: u32, mut op: impl FnMut()) -> Duration {
    for _ in 0..n / 10 {
        op();
    }
    let started = Instant::now();
    for _ in 0..n {
        op();
    }
    let each = started.elapsed() / n;
    println!("{label:<42} {each:>12.2?} per operation ({n} runs)");
    each
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("benchmark skipped: run it with `cargo bench`");
        return;
    }
    let dir = std::env::temp_dir().join(format!("vf-bench-keys-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    generate(&dir).unwrap();
    let keys = SigningKeys::open(&dir).unwrap();
    let tokens = Tokens::new(
        keys,
        "https://veloflux.local",
        "veloflux-api",
        Duration::from_secs(600),
    );
    let subject = Subject {
        user: "0123456789abcdef0123456789abcdef",
        tenant: Some(("acme", TenantRole::Member)),
        platform_admin: false,
    };
    let token = tokens.issue(&subject).unwrap();
    // Distinct tokens, each verified once: the Ed25519 check every time.
    let fresh: Vec<String> = (0..22_000)
        .map(|_| tokens.issue(&subject).unwrap())
        .collect();
    let mut next = fresh.iter();
    per_op("access token: verify, first time (EdDSA)", 20_000, || {
        assert!(tokens.verify(next.next().unwrap()).is_some());
    });
    per_op("access token: verify, seen before", 200_000, || {
        assert!(tokens.verify(&token).is_some());
    });
    per_op("access token: issue", 20_000, || {
        tokens.issue(&subject).unwrap();
    });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let passwords = Passwords::new(19_456, 2).unwrap();
    let hash = runtime
        .block_on(passwords.hash("correct horse battery staple".into()))
        .unwrap();
    per_op("argon2id verify (m=19456 KiB, t=2, p=1)", 40, || {
        assert!(
            runtime
                .block_on(
                    passwords.verify("correct horse battery staple".into(), Some(hash.clone()))
                )
                .unwrap()
        );
    });
    let _ = std::fs::remove_dir_all(dir);
}

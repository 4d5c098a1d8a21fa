//! The operator under test: a fake Kubernetes API, a real `redis-server`,
//! and the real reconcile loops.

#![allow(dead_code, missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use veloflux_crds::TenantConfig;
pub use veloflux_kube_fake::FakeApi;
use veloflux_operator::metrics::Metrics;
use veloflux_operator::run::{Handle, Options, start};
use veloflux_store::RedisOptions;
use veloflux_store::reader::{Fetched, Reader};
use veloflux_store::testing::RedisServer;
#[allow(
    unused_imports,
    reason = "each test file compiles this module; not all of them poll"
)]
pub use veloflux_store::testing::eventually;

pub const PLANS: &str = "apis/veloflux.io/v1alpha1/plans";
pub const TENANTS: &str = "apis/veloflux.io/v1alpha1/tenants";
pub const ROUTES: &str = "apis/veloflux.io/v1alpha1/routes";
pub const EVENTS: &str = "apis/events.k8s.io/v1/events";

pub struct Harness {
    pub api: FakeApi,
    pub redis: RedisServer,
    pub operator: Handle,
}

pub fn options() -> Options {
    Options {
        election: None,
        debounce: Duration::from_millis(20),
        resync: Duration::from_secs(60),
        store_check: Duration::from_millis(500),
        identity: "test".into(),
        usage_check: Duration::ZERO,
    }
}

impl Harness {
    pub async fn start() -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let api = FakeApi::default();
        let redis = RedisServer::start().await.unwrap();
        let operator = start(
            api.client(),
            veloflux_store::testing::writer(&redis.url()).await.unwrap(),
            Arc::new(Metrics::new()),
            options(),
        )
        .await;
        Self {
            api,
            redis,
            operator,
        }
    }

    /// Runs passes until one changes nothing (bounded).
    pub async fn settle(&mut self) {
        for _ in 0..10 {
            let report = self.operator.pass().await;
            assert!(report.errors.is_empty(), "{:?}", report.errors);
            if report.configs_written
                + report.configs_deleted
                + report.statuses_written
                + report.finalizers
                == 0
            {
                return;
            }
        }
        panic!("the operator did not settle");
    }

    /// The tenant's config as the proxies would read it.
    pub async fn stored(&self, tenant: &str) -> Option<TenantConfig> {
        let options = RedisOptions::new(self.redis.url());
        let reader = Reader::new(&options, Duration::from_millis(10)).unwrap();
        reader
            .connect(&options, Duration::from_secs(5))
            .await
            .unwrap();
        let fetched = reader.fetch(&[tenant.to_owned()]).await.unwrap();
        reader.quit().await;
        match fetched.into_iter().next().map(|(_, f)| f) {
            Some(Fetched::Config(config)) => Some(*config),
            _ => None,
        }
    }

    /// A condition of an object: (status, reason, message).
    pub fn condition(
        &self,
        collection: &str,
        namespace: &str,
        name: &str,
        type_: &str,
    ) -> Option<(String, String, String)> {
        let object = self.api.get(collection, namespace, name)?;
        condition_of(&object, type_)
    }
}

pub fn condition_of(object: &Value, type_: &str) -> Option<(String, String, String)> {
    object["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
        .map(|c| {
            (
                c["status"].as_str().unwrap_or_default().to_owned(),
                c["reason"].as_str().unwrap_or_default().to_owned(),
                c["message"].as_str().unwrap_or_default().to_owned(),
            )
        })
}

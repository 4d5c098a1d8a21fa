//! The running operator: one watch per kind feeding reflector stores, a
//! leader-election loop, and the pass loop that reconciles the world when
//! anything changed (debounced), when proxies still have to catch up
//! (backing off), and at least every `resync`.

use std::fmt::Debug;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt as _, watcher};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tracing::{info, warn};
use veloflux_crds::{DedicatedInstance, Plan, ReferenceGrant, Route, Tenant};
use veloflux_store::writer::{EpochCheck, Writer};

use crate::admin::Health;
use crate::leader::{self, Election};
use crate::metrics::Metrics;
use crate::reconcile::{PassReport, Reconciler, Stores};

/// How the loops run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Leader election; `None` runs as the only replica.
    pub election: Option<Election>,
    /// Wait after a change for more before a pass.
    pub debounce: Duration,
    /// Pass at least this often.
    pub resync: Duration,
    /// How often the store's epoch marker and documents are checked.
    pub store_check: Duration,
    /// Reported in Events.
    pub identity: String,
    /// How long a tenant's monthly usage reading is reused for quotas.
    pub usage_check: Duration,
}

/// A running operator.
#[derive(Debug)]
pub struct Handle {
    trigger: Arc<Notify>,
    reports: watch::Receiver<(u64, PassReport)>,
    tasks: Vec<JoinHandle<()>>,
    /// What `/readyz` reports.
    pub health: Arc<Health>,
}

impl Handle {
    /// Asks for a pass and waits for the next one to finish.
    pub async fn pass(&mut self) -> PassReport {
        let seen = self.reports.borrow_and_update().0;
        self.trigger.notify_one();
        loop {
            if self.reports.changed().await.is_err() {
                return PassReport::default();
            }
            let (n, report) = self.reports.borrow_and_update().clone();
            if n > seen {
                return report;
            }
        }
    }

    /// The last pass's report and how many passes ran.
    pub fn last(&self) -> (u64, PassReport) {
        self.reports.borrow().clone()
    }

    /// Stops every loop.
    pub fn stop(self) {
        for task in self.tasks {
            task.abort();
        }
    }
}

fn watch_kind<K>(
    api: Api<K>,
    config: watcher::Config,
    trigger: Arc<Notify>,
    tasks: &mut Vec<JoinHandle<()>>,
) -> Store<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let (reader, writer) = reflector::store();
    let stream = reflector::reflector(writer, watcher(api, config).default_backoff());
    tasks.push(tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            match event {
                Ok(_) => trigger.notify_one(),
                Err(err) => warn!(kind = %K::kind(&()), error = %err, "Watch failed; retrying"),
            }
        }
    }));
    reader
}

/// Starts the watches, the election and the pass loop.
pub async fn start(
    client: Client,
    writer: Writer,
    metrics: Arc<Metrics>,
    options: Options,
) -> Handle {
    let trigger = Arc::new(Notify::new());
    let mut tasks = Vec::new();
    let stores = Stores {
        plans: watch_kind(
            Api::<Plan>::all(client.clone()),
            watcher::Config::default(),
            Arc::clone(&trigger),
            &mut tasks,
        ),
        tenants: watch_kind(
            Api::<Tenant>::all(client.clone()),
            watcher::Config::default(),
            Arc::clone(&trigger),
            &mut tasks,
        ),
        routes: watch_kind(
            Api::<Route>::all(client.clone()),
            watcher::Config::default(),
            Arc::clone(&trigger),
            &mut tasks,
        ),
        dedicated: watch_kind(
            Api::<DedicatedInstance>::all(client.clone()),
            watcher::Config::default(),
            Arc::clone(&trigger),
            &mut tasks,
        ),
        grants: watch_kind(
            Api::<ReferenceGrant>::all(client.clone()),
            watcher::Config::default(),
            Arc::clone(&trigger),
            &mut tasks,
        ),
        services: watch_kind(
            Api::<Service>::all(client.clone()),
            watcher::Config::default(),
            Arc::clone(&trigger),
            &mut tasks,
        ),
        slices: watch_kind(
            Api::<EndpointSlice>::all(client.clone()),
            watcher::Config::default(),
            Arc::clone(&trigger),
            &mut tasks,
        ),
        secrets: watch_kind(
            Api::<Secret>::all(client.clone()),
            watcher::Config::default().fields("type=kubernetes.io/tls"),
            Arc::clone(&trigger),
            &mut tasks,
        ),
    };
    let leader = Arc::new(AtomicBool::new(options.election.is_none()));
    let health = Arc::new(Health {
        leader: Arc::clone(&leader),
        ..Health::default()
    });
    if let Some(election) = options.election.clone() {
        tasks.push(tokio::spawn(leader::run(
            client.clone(),
            election,
            Arc::clone(&leader),
        )));
    }

    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "veloflux-operator".into(),
            instance: Some(options.identity.clone()),
        },
    );
    let (reports_tx, reports) = watch::channel((0, PassReport::default()));
    let mut reconciler = Reconciler::new(client, writer.clone(), recorder, Arc::clone(&metrics))
        .with_usage_every(options.usage_check);
    let loop_trigger = Arc::clone(&trigger);
    let loop_health = Arc::clone(&health);
    let loop_leader = Arc::clone(&leader);
    let loop_options = options.clone();
    tasks.push(tokio::spawn(async move {
        let ready = async {
            let _ = stores.plans.wait_until_ready().await;
            let _ = stores.tenants.wait_until_ready().await;
            let _ = stores.routes.wait_until_ready().await;
            let _ = stores.dedicated.wait_until_ready().await;
            let _ = stores.grants.wait_until_ready().await;
            let _ = stores.services.wait_until_ready().await;
            let _ = stores.slices.wait_until_ready().await;
            let _ = stores.secrets.wait_until_ready().await;
        };
        ready.await;
        loop_health.synced.store(true, Ordering::SeqCst);
        info!("Watches synced");
        let mut passes = 0u64;
        let mut next = Duration::ZERO;
        let mut backoff = Duration::from_millis(250);
        loop {
            tokio::select! {
                () = loop_trigger.notified() => {}
                () = tokio::time::sleep(next) => {}
            }
            tokio::time::sleep(loop_options.debounce).await;
            let leading = loop_leader.load(Ordering::SeqCst);
            metrics.leader.set(i64::from(leading));
            if !leading {
                next = loop_options.resync;
                continue;
            }
            let world = stores.snapshot();
            let report = reconciler.pass(&world).await;
            loop_health.store_ok.store(
                !report.errors.iter().any(|e| e.contains("redis")),
                Ordering::SeqCst,
            );
            next = if report.errors.is_empty() && !report.waiting_for_proxies {
                backoff = Duration::from_millis(250);
                loop_options.resync
            } else {
                let wait = backoff;
                backoff = (backoff * 2).min(Duration::from_secs(10));
                wait
            };
            passes += 1;
            let _ = reports_tx.send((passes, report));
        }
    }));

    // The store's epoch marker and documents, checked by the leader.
    let check_leader = Arc::clone(&leader);
    let every = options.store_check;
    tasks.push(tokio::spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            if !check_leader.load(Ordering::SeqCst) {
                continue;
            }
            match writer.ensure_epoch().await {
                Ok(EpochCheck::Present(_)) => match writer.repair().await {
                    Ok(0) => {}
                    Ok(repaired) => warn!(
                        repaired,
                        "Tenant configs missing from the store were written back"
                    ),
                    Err(err) => warn!(error = %err, "Could not check the store for lost documents"),
                },
                Ok(EpochCheck::Incomplete) => {}
                Ok(EpochCheck::Republished { epoch, tenants }) => {
                    info!(
                        epoch,
                        tenants, "Config store had lost its data; republished every tenant"
                    );
                }
                Err(err) => warn!(error = %err, "Could not check the config store's epoch marker"),
            }
        }
    }));

    Handle {
        trigger,
        reports,
        tasks,
        health,
    }
}

//! Leader election with a `coordination.k8s.io/v1` Lease, so two replicas
//! never write at once. The holder renews every `renew`; another replica
//! takes over once the lease has not been renewed for `duration`. Writes
//! use the Lease's `resourceVersion`, so two candidates cannot both win.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::PostParams;
use kube::{Api, Client};
use tracing::{info, warn};

/// How the election runs.
#[derive(Debug, Clone)]
pub struct Election {
    /// Namespace of the Lease.
    pub namespace: String,
    /// Name of the Lease.
    pub name: String,
    /// This replica's identity.
    pub identity: String,
    /// How long a lease lasts without renewal.
    pub duration: Duration,
    /// How often the holder renews (and others check).
    pub renew: Duration,
}

/// Runs the election forever, keeping `leader` true while this replica holds the lease.
pub async fn run(client: Client, election: Election, leader: Arc<AtomicBool>) {
    let api: Api<Lease> = Api::namespaced(client, &election.namespace);
    loop {
        let holding = match try_acquire(&api, &election).await {
            Ok(holding) => holding,
            Err(err) => {
                warn!(error = %err, "Leader lease not reachable");
                false
            }
        };
        let was = leader.swap(holding, Ordering::SeqCst);
        if holding != was {
            if holding {
                info!(identity = %election.identity, lease = %election.name, "Became leader");
            } else {
                warn!(identity = %election.identity, "Lost leadership");
            }
        }
        tokio::time::sleep(election.renew).await;
    }
}

/// One round: take or renew the lease if free, expired or ours.
async fn try_acquire(api: &Api<Lease>, election: &Election) -> Result<bool, kube::Error> {
    let now = Timestamp::now();
    let seconds = i32::try_from(election.duration.as_secs()).unwrap_or(i32::MAX);
    let Some(mut lease) = api.get_opt(&election.name).await? else {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(election.name.clone()),
                namespace: Some(election.namespace.clone()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(election.identity.clone()),
                lease_duration_seconds: Some(seconds),
                acquire_time: Some(MicroTime(now)),
                renew_time: Some(MicroTime(now)),
                lease_transitions: Some(0),
                ..LeaseSpec::default()
            }),
        };
        return match api.create(&PostParams::default(), &lease).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
            Err(err) => Err(err),
        };
    };
    let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
    let ours = spec.holder_identity.as_deref() == Some(election.identity.as_str());
    let expired = spec.renew_time.as_ref().is_none_or(|renewed| {
        let lasts = i64::from(spec.lease_duration_seconds.unwrap_or(seconds));
        now.as_second() - renewed.0.as_second() > lasts
    });
    if !ours && !expired {
        return Ok(false);
    }
    if !ours {
        spec.holder_identity = Some(election.identity.clone());
        spec.acquire_time = Some(MicroTime(now));
        spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
    }
    spec.renew_time = Some(MicroTime(now));
    spec.lease_duration_seconds = Some(seconds);
    match api
        .replace(&election.name, &PostParams::default(), &lease)
        .await
    {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
        Err(err) => Err(err),
    }
}

//! Monthly quotas: a plan's requests and bandwidth per month, measured by
//! the proxies' usage metering, and the plan's overage policy applied to
//! the tenant's compiled config and to its Routes' status.

use std::collections::{BTreeMap, HashSet};

use veloflux_crds::plan::OveragePolicy;
use veloflux_crds::resolve::{ConditionOutcome, ObjectKey, Outcome};
use veloflux_crds::{ConditionStatus, ConditionType, Reason, TenantConfig};
use veloflux_store::usage::Counts;

/// Why a tenant is over its monthly quota, or `None`.
pub fn overage(config: &TenantConfig, used: Counts) -> Option<String> {
    let plan = &config.plan;
    let mut over = Vec::new();
    if let Some(quota) = plan.requests_per_month
        && used[0] >= quota
    {
        over.push(format!("{} of {quota} requests", used[0]));
    }
    if let Some(quota) = plan.bandwidth_bytes_per_month
        && used[2] >= quota
    {
        over.push(format!("{} of {quota} response bytes", used[2]));
    }
    (!over.is_empty()).then(|| {
        format!(
            "monthly quota of plan {:?} used: {}",
            plan.name,
            over.join(", ")
        )
    })
}

/// What a policy did to a tenant over its quota.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// `log`: nothing but the log line and the metric.
    Logged,
    /// `throttle`: the tenant's rate is cut to a tenth.
    Throttled,
    /// `blockNewConfig`: these routes (not served before) are held back.
    Blocked(Vec<String>),
    /// `notify`: an event for the tenant's owners.
    Notify,
}

/// Applies the plan's overage policy to `config`. `served` are the route
/// ids the tenant is served with now (what the store holds); a blocked
/// route's outcome in `routes` says why.
pub fn apply(
    config: &mut TenantConfig,
    served: Option<&HashSet<String>>,
    routes: &mut BTreeMap<ObjectKey, Outcome>,
    why: &str,
) -> Effect {
    match config.plan.overage_policy {
        OveragePolicy::Log => Effect::Logged,
        OveragePolicy::Notify => Effect::Notify,
        OveragePolicy::Throttle => {
            config.plan.requests_per_minute = (config.plan.requests_per_minute / 10).max(1);
            config.plan.burst = (config.plan.burst / 10).max(1);
            for route in &mut config.routes {
                if let Some(limit) = &mut route.rate_limit {
                    limit.requests_per_minute = limit
                        .requests_per_minute
                        .min(config.plan.requests_per_minute);
                    limit.burst = limit.burst.min(config.plan.burst);
                }
            }
            Effect::Throttled
        }
        OveragePolicy::BlockNewConfig => {
            let empty = HashSet::new();
            let served = served.unwrap_or(&empty);
            let blocked: Vec<String> = config
                .routes
                .iter()
                .filter(|r| !served.contains(&r.id))
                .map(|r| r.id.clone())
                .collect();
            config.routes.retain(|r| served.contains(&r.id));
            for id in &blocked {
                let Some((namespace, name)) = id.split_once('/') else {
                    continue;
                };
                if let Some(outcome) = routes.get_mut(&ObjectKey::new(namespace, name)) {
                    let message = format!(
                        "{why}; new routes are not accepted until the quota resets or the plan is upgraded"
                    );
                    for condition in &mut outcome.conditions {
                        if matches!(
                            condition.type_,
                            ConditionType::Accepted | ConditionType::Ready
                        ) {
                            *condition = ConditionOutcome {
                                type_: condition.type_,
                                status: ConditionStatus::False,
                                reason: Reason::QuotaExceeded,
                                message: message.clone(),
                            };
                        }
                    }
                }
            }
            Effect::Blocked(blocked)
        }
    }
}

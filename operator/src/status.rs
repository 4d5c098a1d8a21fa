//! Status conditions as Kubernetes conventions want them: `lastTransitionTime`
//! moves only when a condition's status changes, `observedGeneration` names
//! the generation the status describes, and a condition set equal to the
//! current one means no write at all.

use k8s_openapi::jiff::{Timestamp, Unit};
use veloflux_crds::resolve::ConditionOutcome;
use veloflux_crds::{Condition, ConditionStatus};

/// Now, to the second, as Kubernetes writes times.
pub fn now() -> String {
    Timestamp::now()
        .round(Unit::Second)
        .unwrap_or_else(|_| Timestamp::now())
        .to_string()
}

/// The conditions to write for `outcomes`, keeping each current condition's
/// transition time when its status did not change.
pub fn conditions(
    outcomes: &[ConditionOutcome],
    generation: Option<i64>,
    current: &[Condition],
    now: &str,
) -> Vec<Condition> {
    outcomes
        .iter()
        .map(|o| {
            let type_ = o.type_.as_str();
            let previous = current.iter().find(|c| c.type_ == type_);
            let last_transition_time = match previous {
                Some(p) if p.status == o.status => p.last_transition_time.as_str(),
                _ => now,
            };
            o.to_condition(last_transition_time, generation)
        })
        .collect()
}

/// Conditions whose status changed from `current` to `next` (new ones
/// included): what deserves an Event.
pub fn transitions<'a>(current: &[Condition], next: &'a [Condition]) -> Vec<&'a Condition> {
    next.iter()
        .filter(|n| {
            current
                .iter()
                .find(|c| c.type_ == n.type_)
                .is_none_or(|c| c.status != n.status || c.reason != n.reason)
        })
        .collect()
}

/// Whether a condition is worth a Warning event.
pub fn is_warning(condition: &Condition) -> bool {
    condition.status == ConditionStatus::False && condition.reason != "Pending"
}

#[cfg(test)]
mod tests {
    use super::*;
    use veloflux_crds::{ConditionType, Reason};

    fn outcome(status: ConditionStatus, reason: Reason) -> ConditionOutcome {
        ConditionOutcome {
            type_: ConditionType::Ready,
            status,
            reason,
            message: String::new(),
        }
    }

    #[test]
    fn transition_time_moves_only_when_the_status_changes() {
        let first = conditions(
            &[outcome(ConditionStatus::True, Reason::Ready)],
            Some(1),
            &[],
            "2026-01-01T00:00:00Z",
        );
        assert_eq!(first[0].last_transition_time, "2026-01-01T00:00:00Z");
        assert_eq!(first[0].observed_generation, Some(1));
        // Same status, new generation: time kept, generation moves.
        let second = conditions(
            &[outcome(ConditionStatus::True, Reason::Ready)],
            Some(2),
            &first,
            "2026-01-02T00:00:00Z",
        );
        assert_eq!(second[0].last_transition_time, "2026-01-01T00:00:00Z");
        assert_eq!(second[0].observed_generation, Some(2));
        assert!(transitions(&first, &second).is_empty());
        // Status flips: time moves, and it is a transition worth an event.
        let third = conditions(
            &[outcome(ConditionStatus::False, Reason::QuotaExceeded)],
            Some(2),
            &second,
            "2026-01-03T00:00:00Z",
        );
        assert_eq!(third[0].last_transition_time, "2026-01-03T00:00:00Z");
        assert_eq!(transitions(&second, &third).len(), 1);
        assert!(is_warning(&third[0]));
        assert!(now().ends_with('Z') && !now().contains('.'));
    }
}

//! kstatus conditions: Ready, Reconciling and Stalled, kept as a list keyed by type.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::crd::Condition;
use crate::names::condition;

/// Status of the three conditions for one outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub ready: bool,
    pub reconciling: bool,
    pub stalled: bool,
    pub reason: &'static str,
    pub message: String,
}

/// One condition to set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConditionSpec {
    pub type_: &'static str,
    pub status: &'static str,
    pub reason: &'static str,
    pub message: String,
}

/// Builds the conditions for `verdict`, keeping each condition's `lastTransitionTime`
/// from `previous` while its status and reason stay the same.
///
/// All three carry the verdict's message: server-side apply on Kubernetes 1.20 turns an
/// empty string into `null`, which the schema rejects.
#[must_use]
pub fn build(
    previous: &[Condition],
    verdict: &Verdict,
    generation: Option<i64>,
    now: &Time,
) -> Vec<Condition> {
    [
        (condition::READY, verdict.ready),
        (condition::RECONCILING, verdict.reconciling),
        (condition::STALLED, verdict.stalled),
    ]
    .into_iter()
    .map(|(type_, status)| {
        let spec = ConditionSpec {
            type_,
            status: if status { "True" } else { "False" },
            reason: verdict.reason,
            message: verdict.message.clone(),
        };
        build_one(previous, &spec, generation, now)
    })
    .collect()
}

/// Builds one condition, keeping `lastTransitionTime` from `previous` while its status
/// and reason stay the same.
#[must_use]
pub fn build_one(
    previous: &[Condition],
    spec: &ConditionSpec,
    generation: Option<i64>,
    now: &Time,
) -> Condition {
    let last_transition_time = previous
        .iter()
        .find(|c| c.type_ == spec.type_ && c.status == spec.status && c.reason == spec.reason)
        .map_or_else(|| now.clone(), |c| c.last_transition_time.clone());
    Condition {
        type_: spec.type_.to_owned(),
        status: spec.status.to_owned(),
        reason: spec.reason.to_owned(),
        message: spec.message.clone(),
        last_transition_time,
        observed_generation: generation,
    }
}

/// The condition of a type, if present.
#[must_use]
pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn time(second: i64) -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(second).expect("valid"))
    }

    fn verdict(reason: &'static str, ready: bool) -> Verdict {
        Verdict {
            ready,
            reconciling: !ready,
            stalled: false,
            reason,
            message: "m".to_owned(),
        }
    }

    #[test]
    fn build_keeps_transition_time_when_unchanged() {
        let first = build(
            &[],
            &verdict("WaitingForRestore", false),
            Some(1),
            &time(100),
        );
        let second = build(
            &first,
            &verdict("WaitingForRestore", false),
            Some(2),
            &time(200),
        );
        for condition in &second {
            assert_eq!(
                condition.last_transition_time,
                time(100),
                "{}",
                condition.type_
            );
            assert_eq!(condition.observed_generation, Some(2));
        }
    }

    #[test]
    fn build_moves_transition_time_on_reason_change() {
        let first = build(
            &[],
            &verdict("WaitingForRestore", false),
            Some(1),
            &time(100),
        );
        let second = build(
            &first,
            &verdict("RestoreInProgress", false),
            Some(1),
            &time(200),
        );
        let ready = find(&second, "Ready").expect("ready");
        assert_eq!(ready.last_transition_time, time(200));
        assert_eq!(ready.status, "False");
    }

    #[test]
    fn build_writes_three_types() {
        let built = build(&[], &verdict("RestoreSucceeded", true), None, &time(1));
        let types: Vec<&str> = built.iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(types, ["Ready", "Reconciling", "Stalled"]);
        assert_eq!(find(&built, "Ready").expect("ready").status, "True");
        assert_eq!(
            find(&built, "Reconciling").expect("reconciling").status,
            "False"
        );
    }
}

//! Prometheus metrics. Labels are bounded: outcomes, error kinds and phases, never object
//! names, servers or messages.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::crd::{Phase, SklmRestore};
use crate::sklm::SklmError;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PollLabels {
    outcome: &'static str,
    error_kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabels {
    phase: &'static str,
}

/// The operator's metrics and their registry.
pub struct Metrics {
    registry: Registry,
    polls: Family<PollLabels, Counter>,
    poll_duration: Histogram,
    logins: Counter,
    status_writes: Family<OutcomeLabels, Counter>,
    reconciles: Family<OutcomeLabels, Counter>,
    objects: Family<PhaseLabels, Gauge>,
    leader: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("sklm");
        let polls = Family::<PollLabels, Counter>::default();
        registry.register(
            "polls",
            "Polls of key servers, by outcome and error kind",
            polls.clone(),
        );
        let poll_duration = Histogram::new([0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]);
        registry.register(
            "poll_duration_seconds",
            "Time one poll of a key server took, login included",
            poll_duration.clone(),
        );
        let logins = Counter::default();
        registry.register("logins", "Logins to key servers", logins.clone());
        let status_writes = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "status_writes",
            "Status writes to the API server, by outcome",
            status_writes.clone(),
        );
        let reconciles = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "reconciles",
            "Reconciles of SklmRestore objects, by outcome",
            reconciles.clone(),
        );
        let objects = Family::<PhaseLabels, Gauge>::default();
        registry.register("restores", "SklmRestore objects by phase", objects.clone());
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this replica runs the controller (holds the Lease)",
            leader.clone(),
        );
        Metrics {
            registry,
            polls,
            poll_duration,
            logins,
            status_writes,
            reconciles,
            objects,
            leader,
        }
    }
}

impl Metrics {
    pub fn record_poll(&self, duration: Duration, error: Option<&SklmError>) {
        let labels = match error {
            None => PollLabels {
                outcome: "success",
                error_kind: "",
            },
            Some(error) => PollLabels {
                outcome: "error",
                error_kind: error.kind(),
            },
        };
        self.polls.get_or_create(&labels).inc();
        self.poll_duration.observe(duration.as_secs_f64());
    }

    pub fn record_logins(&self, count: u64) {
        self.logins.inc_by(count);
    }

    pub fn record_status_write(&self, success: bool) {
        let outcome = if success { "success" } else { "error" };
        self.status_writes
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }

    pub fn record_reconcile(&self, success: bool) {
        let outcome = if success { "success" } else { "error" };
        self.reconciles
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }

    pub fn set_leader(&self, leader: bool) {
        self.leader.set(i64::from(leader));
    }

    /// Encodes all metrics in the Prometheus text format, counting objects by phase from
    /// `objects` first.
    #[must_use]
    pub fn encode(&self, objects: &[std::sync::Arc<SklmRestore>]) -> String {
        for phase in Phase::ALL {
            let count = objects
                .iter()
                .filter(|o| o.status.as_ref().and_then(|s| s.phase) == Some(phase))
                .count();
            self.objects
                .get_or_create(&PhaseLabels {
                    phase: phase.as_str(),
                })
                .set(i64::try_from(count).unwrap_or(i64::MAX));
        }
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String cannot fail");
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_lists_poll_outcomes() {
        let metrics = Metrics::default();
        metrics.record_poll(Duration::from_millis(20), None);
        let text = metrics.encode(&[]);
        assert!(
            text.contains(r#"sklm_polls_total{outcome="success",error_kind=""} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"sklm_restores{phase="Running"} 0"#),
            "{text}"
        );
        assert!(
            text.contains("sklm_poll_duration_seconds_count 1"),
            "{text}"
        );
    }
}

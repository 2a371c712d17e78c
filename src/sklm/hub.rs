//! Shared pollers: one session and one poll loop per (server, prefix, credentials, TLS
//! settings), whatever the number of `SklmRestore` objects that watch it.
//!
//! Objects subscribe from their reconcile with their poll interval. Each poller runs in
//! its own task, so a slow server never delays another; it polls at the shortest interval
//! among its subscribers, from a random start so pollers spread out, backs off while the server fails, and asks the
//! controller to reconcile its subscribers whenever the answer changes. A poller whose
//! subscribers are all gone (deleted, moved to another server, or finished) logs out and
//! stops.
//!
//! One hub serves every controller of the process, so objects in different namespaces
//! that poll the same server as the same user share one poller and one session. The hub
//! sends each trigger to the controller that watches the object's namespace.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::channel::mpsc::UnboundedSender;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::reflector::{ObjectRef, Store};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::{
    ClientSettings, Credentials, RestoreObservation, RestoreResult, Session, SklmClient, SklmError,
};
use crate::crd::SklmRestore;
use crate::metrics::Metrics;

/// Longest wait between polls of a failing server, unless the interval is longer.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// Wait after the server rejected the credentials: a server that locks accounts after
/// failed logins sees at most 12 an hour. A fixed Secret makes a new target and poller,
/// so it is used at once.
const LOGIN_REJECTED_RETRY: Duration = Duration::from_secs(300);

/// Everything that decides which session a poll uses.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PollTarget {
    pub settings: ClientSettings,
    pub credentials: Credentials,
}

/// One poll of a server.
#[derive(Clone, Debug)]
pub struct Snapshot {
    /// Counts polls of this poller, from 1.
    pub sequence: u64,
    pub polled_at: Timestamp,
    pub outcome: Result<RestoreObservation, Arc<SklmError>>,
    /// The result service's answer; `None` when no subscriber asked for it or the server
    /// reported a restore still running.
    pub result: Option<Result<RestoreResult, Arc<SklmError>>>,
    /// Start of the current run of failed polls.
    pub failing_since: Option<Timestamp>,
}

/// What one object asks of its poller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Subscription {
    pub interval: Duration,
    /// Ask the result service whenever the server reports no restore running.
    pub wants_result: bool,
}

type Key = ObjectRef<SklmRestore>;

#[derive(Default)]
struct PollerEntry {
    subscribers: HashMap<Key, Subscription>,
    latest: Option<Arc<Snapshot>>,
    wake: Arc<Notify>,
}

/// The object cache and trigger channel of one controller.
#[derive(Clone)]
pub struct Route {
    /// Objects the controller watches; a subscriber missing from it is gone.
    pub store: Store<SklmRestore>,
    /// Makes the controller reconcile an object.
    pub trigger: UnboundedSender<Key>,
}

/// The controllers a hub serves.
#[derive(Clone)]
pub enum Routes {
    /// One controller watches every namespace.
    AllNamespaces(Route),
    /// One controller per watched namespace, by namespace name.
    PerNamespace(HashMap<String, Route>),
}

impl Routes {
    /// Finds the route of the controller that watches `object`, or `None` when no
    /// controller watches its namespace.
    fn route(&self, object: &Key) -> Option<&Route> {
        match self {
            Routes::AllNamespaces(route) => Some(route),
            Routes::PerNamespace(routes) => {
                object.namespace.as_deref().and_then(|ns| routes.get(ns))
            }
        }
    }

    /// Reports whether the controller of `object` no longer has it in its cache.
    fn is_gone(&self, object: &Key) -> bool {
        self.route(object)
            .is_none_or(|route| route.store.get(object).is_none())
    }
}

#[derive(Default)]
struct HubState {
    pollers: HashMap<Arc<PollTarget>, PollerEntry>,
    sessions: HashMap<Arc<PollTarget>, Arc<Session>>,
    members: HashMap<Key, Arc<PollTarget>>,
}

/// The registry of pollers.
pub struct Hub {
    state: Mutex<HubState>,
    routes: Routes,
    metrics: Arc<Metrics>,
    stopped: CancellationToken,
}

impl Hub {
    #[must_use]
    pub fn new(routes: Routes, metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(Hub {
            state: Mutex::new(HubState::default()),
            routes,
            metrics,
            stopped: CancellationToken::new(),
        })
    }

    /// Subscribes an object to the poller of `target`, moving it off any other poller,
    /// and returns that poller's latest snapshot, if it has polled yet.
    pub fn subscribe(
        self: &Arc<Self>,
        object: Key,
        target: PollTarget,
        subscription: Subscription,
    ) -> Option<Arc<Snapshot>> {
        let mut state = self.lock();
        let target = Arc::new(target);
        if state
            .members
            .get(&object)
            .is_some_and(|current| *current != target)
        {
            remove_member(&mut state, &object);
        }
        if !state.pollers.contains_key(&target) {
            self.spawn_poller(Arc::clone(&target));
        }
        let entry = state.pollers.entry(Arc::clone(&target)).or_default();
        // Wake the poller only when its own needs change: a shorter shortest interval, or
        // the first subscriber that asks for the result. Another object joining with the
        // same needs waits for the next scheduled poll and gets the latest snapshot now.
        let shortest = entry.subscribers.values().map(|s| s.interval).min();
        let any_result = entry.subscribers.values().any(|s| s.wants_result);
        entry.subscribers.insert(object.clone(), subscription);
        let needs_earlier_poll = shortest.is_none_or(|old| subscription.interval < old)
            || (subscription.wants_result && !any_result);
        if needs_earlier_poll && entry.latest.is_some() {
            entry.wake.notify_one();
        }
        let latest = entry.latest.clone();
        state.members.insert(object, target);
        latest
    }

    /// Stops every poller (each logs out first); used when the controllers stop or this
    /// replica loses the leader lease.
    pub fn shutdown(&self) {
        self.stopped.cancel();
    }

    /// The shared session for `target`, created on first use. Polls and run-restore
    /// requests use it, so the operator holds one login per server and user.
    pub fn session(&self, target: &PollTarget) -> Result<Arc<Session>, Arc<SklmError>> {
        let mut state = self.lock();
        if let Some(session) = state.sessions.get(target) {
            return Ok(Arc::clone(session));
        }
        let client = SklmClient::new(target.settings.clone()).map_err(Arc::new)?;
        let session = Arc::new(Session::new(client, target.credentials.clone()));
        state
            .sessions
            .insert(Arc::new(target.clone()), Arc::clone(&session));
        Ok(session)
    }

    /// Removes an object from its poller, if it has one.
    pub fn unsubscribe(&self, object: &Key) {
        remove_member(&mut self.lock(), object);
    }

    fn lock(&self) -> MutexGuard<'_, HubState> {
        self.state
            .lock()
            .expect("hub state lock poisoned by a panic")
    }

    fn spawn_poller(self: &Arc<Self>, target: Arc<PollTarget>) {
        let hub = Arc::clone(self);
        tokio::spawn(async move { hub.run_poller(target).await });
    }

    async fn run_poller(self: Arc<Self>, target: Arc<PollTarget>) {
        let origin = target.settings.endpoint.origin.clone();
        tracing::debug!(%origin, user = %target.credentials.user, "poller started");
        let mut failures = 0u32;
        while !self.stopped.is_cancelled() {
            let Some((interval, wants_result, wake)) = self.prepare_poll(&target) else {
                break;
            };
            let previous = self
                .lock()
                .pollers
                .get(&target)
                .and_then(|e| e.latest.clone());
            let snapshot = self.poll(&target, wants_result, previous.as_deref()).await;
            failures = if snapshot.outcome.is_ok() {
                0
            } else {
                failures.saturating_add(1)
            };
            let login_rejected = matches!(
                snapshot.outcome.as_ref().map_err(|e| &**e),
                Err(SklmError::LoginRejected { .. })
            );
            let changed = previous
                .as_deref()
                .is_none_or(|p| !same_answer(p, &snapshot));
            // Subscribers are read after the poll: one that joined during it got no
            // snapshot from `subscribe` and waits for this trigger.
            let subscribers: Vec<Key> = match self.lock().pollers.get_mut(&target) {
                Some(entry) => {
                    entry.latest = Some(Arc::new(snapshot));
                    entry.subscribers.keys().cloned().collect()
                }
                None => Vec::new(),
            };
            if changed {
                for object in subscribers {
                    // Only the reconcile of a watching controller subscribes, so a
                    // subscriber without a route is not expected. A send fails only
                    // after that controller stopped, and then nobody needs the trigger.
                    if let Some(route) = self.routes.route(&object) {
                        let _ = route.trigger.unbounded_send(object);
                    }
                }
            }
            // The first period starts at a random point of the interval, so pollers that
            // start together do not poll together. Later periods are fixed, so a change on
            // the server shows within one interval.
            let mut delay = if previous.is_none() && failures == 0 {
                interval.mul_f64(rand::random_range(0.5..=1.0))
            } else {
                next_delay(interval, failures)
            };
            if login_rejected {
                // Fixed credentials arrive as a new target, with a poller of its own.
                delay = delay.max(LOGIN_REJECTED_RETRY);
            }
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = wake.notified() => {}
                () = self.stopped.cancelled() => break,
            }
        }
        let session = self.lock().sessions.remove(&target);
        if let Some(session) = session {
            session.logout().await;
        }
        tracing::debug!(%origin, "poller stopped");
    }

    /// Drops subscribers whose objects are gone, and returns what the next poll needs; `None`
    /// (after removing the poller) when no subscriber is left.
    fn prepare_poll(&self, target: &Arc<PollTarget>) -> Option<(Duration, bool, Arc<Notify>)> {
        let mut state = self.lock();
        let entry = state.pollers.get_mut(target)?;
        let gone: Vec<Key> = entry
            .subscribers
            .keys()
            .filter(|object| self.routes.is_gone(object))
            .cloned()
            .collect();
        for object in &gone {
            entry.subscribers.remove(object);
        }
        if entry.subscribers.is_empty() {
            state.pollers.remove(target);
            for object in gone {
                state.members.remove(&object);
            }
            return None;
        }
        let interval = entry.subscribers.values().map(|s| s.interval).min()?;
        let wants_result = entry.subscribers.values().any(|s| s.wants_result);
        let wake = Arc::clone(&entry.wake);
        for object in gone {
            state.members.remove(&object);
        }
        Some((interval, wants_result, wake))
    }

    async fn poll(
        &self,
        target: &PollTarget,
        wants_result: bool,
        previous: Option<&Snapshot>,
    ) -> Snapshot {
        let sequence = previous.map_or(1, |p| p.sequence + 1);
        let started = std::time::Instant::now();
        let session = self.session(target);
        let outcome = match &session {
            Ok(session) => {
                let logins_before = session.login_count();
                let outcome = session.is_running().await.map_err(Arc::new);
                self.metrics
                    .record_logins(session.login_count().saturating_sub(logins_before));
                outcome
            }
            Err(error) => Err(Arc::clone(error)),
        };
        self.metrics
            .record_poll(started.elapsed(), outcome.as_ref().err().map(|e| &**e));
        if let Err(error) = &outcome {
            tracing::debug!(origin = %target.settings.endpoint.origin, %error, "poll failed");
        }
        let ended = outcome.as_ref().is_ok_and(|o| {
            o.step == crate::crd::RestorePhase::Idle
                || o.step == crate::crd::RestorePhase::Completed
        });
        let result = match &session {
            Ok(session) if wants_result && ended => {
                Some(session.restore_result().await.map_err(Arc::new))
            }
            _ => None,
        };
        let now = Timestamp::now();
        Snapshot {
            sequence,
            polled_at: now,
            failing_since: if outcome.is_ok() {
                None
            } else {
                previous.and_then(|p| p.failing_since).or(Some(now))
            },
            outcome,
            result,
        }
    }
}

fn remove_member(state: &mut HubState, object: &Key) {
    if let Some(target) = state.members.remove(object)
        && let Some(entry) = state.pollers.get_mut(&target)
    {
        entry.subscribers.remove(object);
        if entry.subscribers.is_empty() {
            entry.wake.notify_one();
        }
    }
}

/// Whether two polls got the same answer, ignoring when they ran.
fn same_answer(a: &Snapshot, b: &Snapshot) -> bool {
    fn same_error(a: &SklmError, b: &SklmError) -> bool {
        a.reason() == b.reason() && a.to_string() == b.to_string()
    }
    let outcome = match (&a.outcome, &b.outcome) {
        (Ok(a), Ok(b)) => a == b,
        (Err(a), Err(b)) => same_error(a, b),
        _ => false,
    };
    let result = match (&a.result, &b.result) {
        (None, None) => true,
        (Some(Ok(a)), Some(Ok(b))) => a == b,
        (Some(Err(a)), Some(Err(b))) => same_error(a, b),
        _ => false,
    };
    outcome && result
}

/// The interval after a success; after failures, the interval doubled per consecutive
/// failure up to `max(interval, MAX_BACKOFF)`, with ±10 % jitter.
fn next_delay(interval: Duration, failures: u32) -> Duration {
    if failures == 0 {
        return interval;
    }
    let base = {
        let factor = 2u32.saturating_pow(failures - 1);
        interval
            .saturating_mul(factor)
            .min(interval.max(MAX_BACKOFF))
    };
    let jitter: f64 = rand::random_range(-0.1..=0.1);
    base.mul_f64(1.0 + jitter)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(namespace: &str, name: &str) -> Key {
        ObjectRef::new(name).within(namespace)
    }

    fn route() -> (Route, kube::runtime::reflector::store::Writer<SklmRestore>) {
        let (store, writer) = kube::runtime::reflector::store();
        let (trigger, _) = futures::channel::mpsc::unbounded();
        (Route { store, trigger }, writer)
    }

    fn restore(namespace: &str, name: &str) -> SklmRestore {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "sklm.dev/v1alpha1",
            "kind": "SklmRestore",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "server": {"url": "https://gklm.example:9443"},
                "credentialsSecretRef": {"name": "admin"},
            },
        }))
        .expect("valid SklmRestore")
    }

    #[test]
    fn routes_pick_the_namespace_controller() {
        let (keys, mut keys_writer) = route();
        let (payments, _payments_writer) = route();
        keys_writer
            .apply_watcher_event(&kube::runtime::watcher::Event::Apply(restore("keys", "dr")));
        let routes = Routes::PerNamespace(HashMap::from([
            ("keys".to_owned(), keys.clone()),
            ("payments".to_owned(), payments.clone()),
        ]));

        let found = routes.route(&object("keys", "dr")).expect("route of keys");
        assert!(found.trigger.same_receiver(&keys.trigger));
        let found = routes
            .route(&object("payments", "dr"))
            .expect("route of payments");
        assert!(found.trigger.same_receiver(&payments.trigger));
        assert!(routes.route(&object("other", "dr")).is_none());

        assert!(!routes.is_gone(&object("keys", "dr")));
        assert!(routes.is_gone(&object("payments", "dr")));
        assert!(routes.is_gone(&object("other", "dr")));
    }

    #[test]
    fn routes_all_namespaces_cover_any_namespace() {
        let (all, _writer) = route();
        let routes = Routes::AllNamespaces(all);
        assert!(routes.route(&object("anywhere", "dr")).is_some());
        assert!(routes.is_gone(&object("anywhere", "dr")));
    }

    #[test]
    fn delay_after_success_is_the_interval() {
        let interval = Duration::from_secs(10);
        for _ in 0..100 {
            assert_eq!(next_delay(interval, 0), interval);
        }
    }

    #[test]
    fn delay_backs_off_and_caps() {
        let interval = Duration::from_secs(10);
        let second = next_delay(interval, 2);
        assert!(
            second >= Duration::from_secs(18) && second <= Duration::from_secs(22),
            "{second:?}"
        );
        let capped = next_delay(interval, 30);
        assert!(capped <= Duration::from_secs(66), "{capped:?}");
        assert!(capped >= Duration::from_secs(54), "{capped:?}");
    }

    #[test]
    fn delay_cap_never_below_interval() {
        let interval = Duration::from_secs(300);
        let delay = next_delay(interval, 5);
        assert!(delay >= Duration::from_secs(270), "{delay:?}");
    }
}

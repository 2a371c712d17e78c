//! The SklmRestore controllers: each watches the objects and the Secrets they reference in
//! one namespace (or in all), and wires the reconcile to the shared pollers of
//! `sklm::hub`.

mod conditions;
pub mod decide;
mod reconcile;
pub mod secrets;
pub mod submission;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, predicates, utils::PredicateConfig, watcher};
use kube::{Client, ResourceExt};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::crd::{SklmRestore, Submission};
use crate::metrics::Metrics;
use crate::sklm::hub::{Hub, Route, Routes};

/// Shared state of all reconciles.
pub struct Context {
    pub client: Client,
    pub hub: Arc<Hub>,
    pub secrets: Store<Secret>,
    pub metrics: Arc<Metrics>,
    pub recorder: Recorder,
    /// Run-restore records this process wrote, by object uid: newer than a cached object
    /// that does not show them yet.
    pub submissions: std::sync::Mutex<std::collections::HashMap<String, Submission>>,
}

impl Context {
    /// Returns the newest run-restore record of `object`: the one this process wrote,
    /// unless the cached status already shows it (it is then forgotten), or else the
    /// cached status's.
    fn latest_record(&self, object: &SklmRestore) -> Option<Submission> {
        let uid = object.uid().unwrap_or_default();
        let cached = object.status.as_ref().and_then(|s| s.submission.as_ref());
        let mut submissions = self.submissions.lock().expect("submissions lock");
        match submissions.get(&uid) {
            Some(record) if cached == Some(record) => {
                submissions.remove(&uid);
            }
            Some(record) => return Some(record.clone()),
            None => {}
        }
        cached.cloned()
    }

    fn remember(&self, uid: &str, record: Submission) {
        let mut submissions = self.submissions.lock().expect("submissions lock");
        submissions.insert(uid.to_owned(), record);
    }
}

/// A reconcile that failed; the object is retried after a delay.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("object has no namespace")]
    NotNamespaced,
    #[error("failed to write status")]
    StatusWrite(#[source] kube::Error),
    #[error("failed to read status")]
    StatusRead(#[source] kube::Error),
}

/// Reconciles running at once, across all namespaces the process watches.
const RECONCILE_CONCURRENCY: u16 = 16;

/// Delay before retrying a reconcile that failed.
const ERROR_RETRY: Duration = Duration::from_secs(5);

/// Namespaces the controllers watch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    /// One controller watches every namespace; its ServiceAccount needs a ClusterRole.
    Cluster,
    /// One controller per namespace, each with its own watches, so Roles in those
    /// namespaces are enough. Never empty and without duplicates.
    Namespaces(Vec<String>),
}

impl Scope {
    /// Builds the scope from the `--namespace` list: all namespaces when the list is
    /// empty. Drops repeated names and keeps the order of first appearance.
    #[must_use]
    pub fn from_namespaces(namespaces: Vec<String>) -> Self {
        let mut unique: Vec<String> = Vec::with_capacity(namespaces.len());
        for namespace in namespaces {
            if !unique.contains(&namespace) {
                unique.push(namespace);
            }
        }
        if unique.is_empty() {
            Scope::Cluster
        } else {
            Scope::Namespaces(unique)
        }
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Scope::Cluster => f.write_str("*"),
            Scope::Namespaces(namespaces) => f.write_str(&namespaces.join(",")),
        }
    }
}

/// The SklmRestore caches of all controllers of one run, one per watched namespace or one
/// for the whole cluster. `/metrics` and `/readyz` read them.
#[derive(Clone)]
pub struct ObjectCaches(Vec<Store<SklmRestore>>);

impl ObjectCaches {
    /// Collects the cached objects of all caches.
    #[must_use]
    pub fn objects(&self) -> Vec<Arc<SklmRestore>> {
        self.0.iter().flat_map(Store::state).collect()
    }

    /// Waits until every cache has listed its objects once.
    pub async fn wait_until_ready(&self) -> Result<(), reflector::store::WriterDropped> {
        futures::future::try_join_all(self.0.iter().map(Store::wait_until_ready)).await?;
        Ok(())
    }
}

/// The watches of one controller: its namespace, or every namespace.
struct Watch {
    /// The watched namespace, `None` for all; only for logs.
    namespace: Option<String>,
    restores: Api<SklmRestore>,
    secrets: Api<Secret>,
    restore_reader: Store<SklmRestore>,
    restore_writer: reflector::store::Writer<SklmRestore>,
    trigger_rx: futures::channel::mpsc::UnboundedReceiver<ObjectRef<SklmRestore>>,
}

/// Runs the controllers of `scope` until `shutdown` is cancelled: one per watched
/// namespace, or one for all. They share one [`Hub`], so objects anywhere that poll the
/// same server as the same user share one poller and one login.
pub async fn run(
    client: Client,
    scope: Scope,
    metrics: Arc<Metrics>,
    caches_out: tokio::sync::watch::Sender<Option<ObjectCaches>>,
    shutdown: CancellationToken,
) {
    let mut watches = Vec::new();
    let routes = match &scope {
        Scope::Cluster => {
            let (watch, route) =
                new_watch(None, Api::all(client.clone()), Api::all(client.clone()));
            watches.push(watch);
            Routes::AllNamespaces(route)
        }
        Scope::Namespaces(namespaces) => {
            let mut routes = HashMap::new();
            for namespace in namespaces {
                let (watch, route) = new_watch(
                    Some(namespace.clone()),
                    Api::namespaced(client.clone(), namespace),
                    Api::namespaced(client.clone(), namespace),
                );
                watches.push(watch);
                routes.insert(namespace.clone(), route);
            }
            Routes::PerNamespace(routes)
        }
    };
    let hub = Hub::new(routes, Arc::clone(&metrics));
    let caches = ObjectCaches(watches.iter().map(|w| w.restore_reader.clone()).collect());
    let _ = caches_out.send(Some(caches));

    let reconcile_slots = Arc::new(Semaphore::new(usize::from(RECONCILE_CONCURRENCY)));
    let controllers = watches.into_iter().map(|watch| {
        run_controller(
            &client,
            watch,
            Arc::clone(&hub),
            Arc::clone(&metrics),
            Arc::clone(&reconcile_slots),
            shutdown.clone(),
        )
    });
    futures::future::join_all(controllers).await;
    hub.shutdown();
}

/// Creates the object cache and trigger channel of one controller, and the hub's route
/// to it.
fn new_watch(
    namespace: Option<String>,
    restores: Api<SklmRestore>,
    secrets: Api<Secret>,
) -> (Watch, Route) {
    let (restore_reader, restore_writer) = reflector::store();
    let (trigger, trigger_rx) = futures::channel::mpsc::unbounded();
    let route = Route {
        store: restore_reader.clone(),
        trigger,
    };
    let watch = Watch {
        namespace,
        restores,
        secrets,
        restore_reader,
        restore_writer,
        trigger_rx,
    };
    (watch, route)
}

/// Runs one controller on the watches of `watch` until `shutdown` is cancelled.
async fn run_controller(
    client: &Client,
    watch: Watch,
    hub: Arc<Hub>,
    metrics: Arc<Metrics>,
    reconcile_slots: Arc<Semaphore>,
    shutdown: CancellationToken,
) {
    // Status writes change the resourceVersion but not the generation; filtering on the
    // generation keeps the operator's own writes from triggering reconciles.
    let restore_stream = watcher(watch.restores, watcher::Config::default().any_semantic())
        .default_backoff()
        // Nothing reads managed fields; dropping them roughly halves the cache.
        .modify(|object| object.managed_fields_mut().clear())
        .reflect(watch.restore_writer)
        .applied_objects()
        .predicate_filter(predicates::generation, PredicateConfig::default());

    let (secret_reader, secret_writer) = reflector::store();
    let secret_config =
        watcher::Config::default().fields("type!=kubernetes.io/service-account-token");
    let secret_stream = watcher(watch.secrets, secret_config)
        .default_backoff()
        .modify(|secret| secret.managed_fields_mut().clear())
        .reflect(secret_writer)
        .touched_objects();

    let reporter = Reporter {
        controller: "sklm-restore-operator".to_owned(),
        instance: std::env::var("POD_NAME").ok(),
    };
    let ctx = Arc::new(Context {
        recorder: Recorder::new(client.clone(), reporter),
        client: client.clone(),
        hub,
        secrets: secret_reader,
        metrics,
        submissions: std::sync::Mutex::default(),
    });
    let mapper_store = watch.restore_reader.clone();
    let cache = watch.restore_reader.clone();
    let controller = Controller::for_stream(restore_stream, watch.restore_reader)
        .watches_stream(secret_stream, move |secret| {
            objects_using(&mapper_store, &secret)
        })
        .reconcile_on(watch.trigger_rx)
        .with_config(
            kube::runtime::controller::Config::default().concurrency(RECONCILE_CONCURRENCY),
        )
        .graceful_shutdown_on(shutdown.clone().cancelled_owned())
        .run(
            move |object, ctx| reconcile_limited(object, ctx, Arc::clone(&reconcile_slots)),
            error_policy,
            ctx,
        )
        .for_each(|_| std::future::ready(()));
    tokio::select! {
        () = controller => {}
        () = cancelled_before_cache_filled(shutdown, cache) => {
            tracing::warn!(
                namespace = watch.namespace.as_deref().unwrap_or("*"),
                "stopped a controller that never listed its objects; the watcher warnings before this give the reason, such as a missing Role"
            );
        }
    }
}

/// Resolves once `shutdown` is cancelled while `cache` is still unfilled, and never
/// otherwise. kube-runtime 5.0 starts no reconcile before the cache is filled, and its
/// graceful shutdown waits for that, so a namespace that cannot be listed (a missing Role)
/// would keep the controller and every poller of the hub running after a stop.
async fn cancelled_before_cache_filled(shutdown: CancellationToken, cache: Store<SklmRestore>) {
    shutdown.cancelled().await;
    if cache.wait_until_ready().now_or_never().is_none() {
        return;
    }
    std::future::pending::<()>().await;
}

/// Objects in the Secret's namespace that reference it for credentials, the CA or the
/// backup password.
fn objects_using(store: &Store<SklmRestore>, secret: &Secret) -> Vec<ObjectRef<SklmRestore>> {
    let (Some(namespace), name) = (secret.namespace(), secret.name_any()) else {
        return Vec::new();
    };
    store
        .state()
        .iter()
        .filter(|o| o.namespace().as_deref() == Some(namespace.as_str()))
        .filter(|o| {
            o.spec.credentials_secret_ref.name == name
                || o.spec
                    .server
                    .ca_secret_ref
                    .as_ref()
                    .is_some_and(|r| r.name == name)
                || o.spec
                    .restore
                    .as_ref()
                    .and_then(|r| r.password_secret_ref.as_ref())
                    .is_some_and(|r| r.name == name)
        })
        .map(|o| ObjectRef::from_obj(&**o))
        .collect()
}

/// Reconciles one object once a slot of `reconcile_slots` is free. Each concurrent
/// reconcile may hold its own connection to the API server, so a poller waking 100 objects
/// in several namespaces at once must not open 100 connections.
async fn reconcile_limited(
    object: Arc<SklmRestore>,
    ctx: Arc<Context>,
    reconcile_slots: Arc<Semaphore>,
) -> Result<Action, Error> {
    let _slot = reconcile_slots
        .acquire_owned()
        .await
        .expect("the reconcile semaphore is never closed");
    let result = reconcile::reconcile(Arc::clone(&object), Arc::clone(&ctx)).await;
    ctx.metrics.record_reconcile(result.is_ok());
    result
}

#[allow(clippy::needless_pass_by_value)] // The signature is fixed by `Controller::run`.
fn error_policy(object: Arc<SklmRestore>, error: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(object = %ObjectRef::from_obj(&*object), error = %error, source = ?std::error::Error::source(error).map(ToString::to_string), "reconcile failed");
    Action::requeue(ERROR_RETRY)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|&n| n.to_owned()).collect()
    }

    #[test]
    fn scope_of_no_namespaces_is_cluster() {
        assert_eq!(Scope::from_namespaces(Vec::new()), Scope::Cluster);
        assert_eq!(Scope::Cluster.to_string(), "*");
    }

    #[test]
    fn scope_drops_repeated_namespaces() {
        let scope = Scope::from_namespaces(names(&["b", "a", "b", "c", "a"]));
        assert_eq!(scope, Scope::Namespaces(names(&["b", "a", "c"])));
        assert_eq!(scope.to_string(), "b,a,c");
    }
}

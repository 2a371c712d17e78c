//! The SklmRestore controller: watches the objects and the Secrets they reference, and
//! wires the reconcile to the shared pollers of `sklm::hub`.

mod conditions;
pub mod decide;
mod reconcile;
pub mod secrets;
pub mod submission;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, predicates, utils::PredicateConfig, watcher};
use kube::{Client, ResourceExt};

use crate::crd::{SklmRestore, Submission};
use crate::metrics::Metrics;
use crate::sklm::hub::Hub;

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
    /// Returns this process's run-restore record for the object `uid`, unless `stored`
    /// already shows it. A record that the stored status shows is forgotten.
    fn remembered(&self, uid: &str, stored: Option<&Submission>) -> Option<Submission> {
        let mut submissions = self.submissions.lock().expect("submissions lock");
        let record = submissions.get(uid)?;
        if stored == Some(record) {
            submissions.remove(uid);
            return None;
        }
        Some(record.clone())
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

/// Reconciles running at once.
const RECONCILE_CONCURRENCY: u16 = 16;

/// Delay before retrying a reconcile that failed.
const ERROR_RETRY: Duration = Duration::from_secs(5);

/// Scope of the watches: all namespaces, or one.
#[derive(Clone, Debug)]
pub enum Scope {
    Cluster,
    Namespace(String),
}

/// Runs the controller for one scope until `shutdown` resolves.
pub async fn run(
    client: Client,
    scope: Scope,
    metrics: Arc<Metrics>,
    store_out: tokio::sync::watch::Sender<Option<Store<SklmRestore>>>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let (restores, secrets): (Api<SklmRestore>, Api<Secret>) = match &scope {
        Scope::Cluster => (Api::all(client.clone()), Api::all(client.clone())),
        Scope::Namespace(ns) => (
            Api::namespaced(client.clone(), ns),
            Api::namespaced(client.clone(), ns),
        ),
    };
    let (restore_reader, restore_writer) = reflector::store();
    // Status writes change the resourceVersion but not the generation; filtering on the
    // generation keeps the operator's own writes from triggering reconciles.
    let restore_stream = watcher(restores, watcher::Config::default().any_semantic())
        .default_backoff()
        // Nothing reads managed fields; dropping them roughly halves the cache.
        .modify(|object| object.managed_fields_mut().clear())
        .reflect(restore_writer)
        .applied_objects()
        .predicate_filter(predicates::generation, PredicateConfig::default());

    let (secret_reader, secret_writer) = reflector::store();
    let secret_config =
        watcher::Config::default().fields("type!=kubernetes.io/service-account-token");
    let secret_stream = watcher(secrets, secret_config)
        .default_backoff()
        .modify(|secret| secret.managed_fields_mut().clear())
        .reflect(secret_writer)
        .touched_objects();

    let (trigger_tx, trigger_rx) = futures::channel::mpsc::unbounded();
    let hub = Hub::new(restore_reader.clone(), trigger_tx, Arc::clone(&metrics));
    let _ = store_out.send(Some(restore_reader.clone()));
    let reporter = Reporter {
        controller: "sklm-restore-operator".to_owned(),
        instance: std::env::var("POD_NAME").ok(),
    };
    let ctx = Arc::new(Context {
        recorder: Recorder::new(client.clone(), reporter),
        client,
        hub: Arc::clone(&hub),
        secrets: secret_reader,
        metrics,
        submissions: std::sync::Mutex::default(),
    });
    let mapper_store = restore_reader.clone();
    Controller::for_stream(restore_stream, restore_reader)
        .watches_stream(secret_stream, move |secret| {
            objects_using(&mapper_store, &secret)
        })
        .reconcile_on(trigger_rx)
        // Each concurrent reconcile may hold its own connection to the API server; a
        // poller waking 100 objects at once must not open 100 connections.
        .with_config(
            kube::runtime::controller::Config::default().concurrency(RECONCILE_CONCURRENCY),
        )
        .graceful_shutdown_on(shutdown)
        .run(reconcile_logged, error_policy, ctx)
        .for_each(|_| std::future::ready(()))
        .await;
    hub.shutdown();
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

async fn reconcile_logged(object: Arc<SklmRestore>, ctx: Arc<Context>) -> Result<Action, Error> {
    let result = reconcile::reconcile(Arc::clone(&object), Arc::clone(&ctx)).await;
    ctx.metrics.record_reconcile(result.is_ok());
    result
}

#[allow(clippy::needless_pass_by_value)] // The signature is fixed by `Controller::run`.
fn error_policy(object: Arc<SklmRestore>, error: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(object = %ObjectRef::from_obj(&*object), error = %error, source = ?std::error::Error::source(error).map(ToString::to_string), "reconcile failed");
    Action::requeue(ERROR_RETRY)
}

//! Startup wiring of `run`: the HTTP endpoints, leader election, the controllers, and a
//! clean stop on SIGTERM.
//!
//! With leader election on, the controllers of all watched namespaces (and so every poll
//! and login) run only while this replica holds the Lease. Losing it stops them and their
//! pollers at once. SIGTERM releases the Lease, so another replica takes over without
//! waiting for it to expire.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use kube_lease_manager::{LeaseManager, LeaseManagerBuilder};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::controller::{self, ObjectCaches, Scope};
use crate::metrics::Metrics;

/// Seconds a Lease stays valid without renewal; a new leader waits at most this long
/// after a holder dies without releasing it.
const LEASE_DURATION_SECONDS: u64 = 15;
/// Seconds before expiry at which the holder renews.
const LEASE_GRACE_SECONDS: u64 = 5;
/// How often a standby reads the Lease again.
const STANDBY_RECHECK: std::time::Duration = std::time::Duration::from_secs(1);

/// What `run` needs from the command line.
#[derive(Clone, Debug)]
pub struct RunConfig {
    /// Namespaces to watch; empty means all namespaces.
    pub namespaces: Vec<String>,
    pub http_addr: SocketAddr,
    pub leader_election: Option<LeaderElection>,
}

/// Where the Lease lives and who this replica is.
#[derive(Clone, Debug)]
pub struct LeaderElection {
    pub lease_name: String,
    pub lease_namespace: String,
    pub identity: String,
}

/// Maximum length of a namespace name, a DNS-1123 label.
const MAX_NAMESPACE_LEN: usize = 63;

/// Checks one `--namespace` value: a namespace name is a DNS-1123 label. Returns the name,
/// or the reason it is invalid.
pub fn parse_namespace(value: &str) -> Result<String, String> {
    if value.is_empty() {
        return Err(
            "a namespace name must not be empty; to watch all namespaces, leave out \
             --namespace and unset SKLM_WATCH_NAMESPACE"
                .to_owned(),
        );
    }
    let valid_chars = value
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    let alphanumeric_ends = !value.starts_with('-') && !value.ends_with('-');
    if value.len() > MAX_NAMESPACE_LEN || !valid_chars || !alphanumeric_ends {
        return Err(format!(
            "not a valid namespace name: use at most {MAX_NAMESPACE_LEN} lowercase letters, \
             digits and '-', starting and ending with a letter or digit (a DNS-1123 label)"
        ));
    }
    Ok(value.to_owned())
}

/// Runs until SIGTERM or SIGINT.
pub async fn run(config: RunConfig) -> anyhow::Result<()> {
    let client = kube::Client::try_default()
        .await
        .context("failed to configure the Kubernetes client (in-cluster config or KUBECONFIG)")?;
    let metrics = Arc::new(Metrics::default());
    let listener = crate::http::bind(config.http_addr)
        .await
        .with_context(|| format!("failed to listen on {}", config.http_addr))?;
    let scope = Scope::from_namespaces(config.namespaces);
    tracing::info!(
        addr = %listener.local_addr()?,
        namespaces = %scope,
        leader_election = config.leader_election.is_some(),
        "starting"
    );
    let shutdown = CancellationToken::new();
    let (caches_tx, caches_rx) = watch::channel(None);
    let http = tokio::spawn(crate::http::serve(
        listener,
        Arc::clone(&metrics),
        caches_rx,
        shutdown.clone().cancelled_owned(),
    ));
    tokio::spawn(cancel_on_signal(shutdown.clone()));

    match config.leader_election {
        None => {
            metrics.set_leader(true);
            controller::run(client, scope, metrics, caches_tx, shutdown.clone()).await;
        }
        Some(election) => {
            run_elected(client, scope, metrics, caches_tx, election, &shutdown).await?;
        }
    }
    http.await
        .context("HTTP task panicked")?
        .context("HTTP server failed")?;
    tracing::info!("stopped");
    Ok(())
}

async fn run_elected(
    client: kube::Client,
    scope: Scope,
    metrics: Arc<Metrics>,
    caches_tx: watch::Sender<Option<ObjectCaches>>,
    election: LeaderElection,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let manager = build_lease_manager(&client, &election).await?;
    let (leading_tx, mut leading) = watch::channel(false);
    let lease_stop = CancellationToken::new();
    let lease_task = tokio::spawn(elect(
        client.clone(),
        election.clone(),
        manager,
        leading_tx,
        lease_stop.clone(),
    ));
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            changed = leading.wait_for(|is_leader| *is_leader) => {
                if changed.is_err() { break; }
            }
        }
        tracing::info!(identity = %election.identity, "became leader");
        metrics.set_leader(true);
        let stop = shutdown.child_token();
        let mut lost = leading.clone();
        let stop_on_loss = stop.clone();
        let watcher = tokio::spawn(async move {
            let _ = lost.wait_for(|is_leader| !*is_leader).await;
            stop_on_loss.cancel();
        });
        controller::run(
            client.clone(),
            scope.clone(),
            Arc::clone(&metrics),
            caches_tx.clone(),
            stop,
        )
        .await;
        watcher.abort();
        metrics.set_leader(false);
        let _ = caches_tx.send(None);
        if shutdown.is_cancelled() {
            break;
        }
        tracing::warn!(identity = %election.identity, "lost the leader lease; polling stopped");
    }
    lease_stop.cancel();
    if let Err(error) = lease_task.await {
        tracing::warn!(%error, "lease task panicked");
    }
    Ok(())
}

async fn build_lease_manager(
    client: &kube::Client,
    election: &LeaderElection,
) -> anyhow::Result<LeaseManager> {
    LeaseManagerBuilder::new(client.clone(), &election.lease_name)
        .with_namespace(&election.lease_namespace)
        .with_identity(&election.identity)
        .with_duration(LEASE_DURATION_SECONDS)
        .with_grace(LEASE_GRACE_SECONDS)
        .with_field_manager(crate::names::FIELD_MANAGER)
        .build()
        .await
        .with_context(|| {
            format!(
                "failed to set up Lease {}/{}",
                election.lease_namespace, election.lease_name
            )
        })
}

/// Keeps `leading` current and releases the Lease on `stop`.
///
/// A standby builds a fresh manager, which reads the Lease, every [`STANDBY_RECHECK`]:
/// a `LeaseManager` of kube-lease-manager 0.13 re-reads a Lease held by another replica
/// only when its last-read expiry has passed, so it would miss a release by a stopping
/// leader and take over up to `LEASE_DURATION_SECONDS` late.
async fn elect(
    client: kube::Client,
    election: LeaderElection,
    mut manager: LeaseManager,
    leading: watch::Sender<bool>,
    stop: CancellationToken,
) {
    loop {
        let is_leader = *leading.borrow();
        tokio::select! {
            () = stop.cancelled() => break,
            changed = manager.changed() => match changed {
                Ok(state) => {
                    let _ = leading.send(state);
                }
                Err(error) => {
                    tracing::warn!(%error, "failed to update the leader lease");
                    tokio::time::sleep(STANDBY_RECHECK).await;
                }
            },
            () = tokio::time::sleep(STANDBY_RECHECK), if !is_leader => {
                match build_lease_manager(&client, &election).await {
                    Ok(fresh) => manager = fresh,
                    Err(error) => tracing::warn!(error = format!("{error:#}"), "failed to read the leader lease"),
                }
            }
        }
    }
    match manager.release().await {
        Ok(()) => tracing::info!("released the leader lease"),
        Err(error) => tracing::warn!(%error, "failed to release the leader lease"),
    }
}

async fn cancel_on_signal(token: CancellationToken) {
    let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
    else {
        tracing::error!("failed to install a SIGTERM handler");
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    tracing::info!("shutting down");
    token.cancel();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespace_accepts_dns_labels() {
        for name in ["keys", "a", "team-1", "0ab", &"x".repeat(MAX_NAMESPACE_LEN)] {
            assert_eq!(parse_namespace(name).as_deref(), Ok(name), "{name}");
        }
    }

    #[test]
    fn namespace_rejects_invalid_names() {
        let too_long = "x".repeat(MAX_NAMESPACE_LEN + 1);
        for name in [
            "Keys", "-keys", "keys-", "my_ns", "a.b", "kéys", " keys", &too_long,
        ] {
            let error = parse_namespace(name).expect_err(name);
            assert!(error.contains("DNS-1123"), "{name}: {error}");
        }
    }

    #[test]
    fn namespace_rejects_empty_name() {
        let error = parse_namespace("").expect_err("empty");
        assert!(error.contains("must not be empty"), "{error}");
    }
}

//! Shared handle to one simulated server: the state behind a mutex, the clock since start,
//! and the channels that link the REST API, the control endpoint, restore runs and the
//! HTTPS listener.
//!
//! A restart is requested here and carried out by `listener`, which closes and later
//! reopens the HTTPS port and reports its status back through a watch channel.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};

use crate::control_types::{RunSettings, RunStatus, RunTrigger, StateView};
use crate::model::Endpoint;
use crate::run;
use crate::state::{RunRejection, SimConfig, SimState};

/// Maximum wait for the listener to close its port after a restart request.
const RESTART_ACK_TIMEOUT: Duration = Duration::from_secs(5);

/// Status of the HTTPS listener, published by `listener`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ListenerStatus {
    pub listening: bool,
    /// Restarts for which the port was closed.
    pub restarts_begun: u64,
    /// Restarts after which the port was opened again.
    pub restarts_completed: u64,
}

/// Failure to carry out a simulated restart.
#[derive(Debug, thiserror::Error)]
pub enum RestartError {
    #[error("HTTPS listener task is not running, so the port cannot be closed")]
    ListenerStopped,
    #[error("HTTPS listener did not close its port within {0:?} of the restart request")]
    NotAcknowledged(Duration),
}

/// Cloneable handle to one simulated server.
#[derive(Clone)]
pub struct Sim {
    inner: Arc<Inner>,
}

struct Inner {
    state: Mutex<SimState>,
    prefixes: Vec<String>,
    started: Instant,
    restart_requests: mpsc::UnboundedSender<Duration>,
    listener: watch::Sender<ListenerStatus>,
}

impl Sim {
    /// Creates the simulator and the receiver on which the HTTPS listener gets restart
    /// requests (each one the time its port stays closed).
    #[must_use]
    pub fn new(config: &SimConfig) -> (Sim, mpsc::UnboundedReceiver<Duration>) {
        let (restart_requests, restart_receiver) = mpsc::unbounded_channel();
        let (listener, _) = watch::channel(ListenerStatus::default());
        let inner = Inner {
            state: Mutex::new(SimState::new(config)),
            prefixes: config.prefixes.clone(),
            started: Instant::now(),
            restart_requests,
            listener,
        };
        let sim = Sim {
            inner: Arc::new(inner),
        };
        (sim, restart_receiver)
    }

    /// Locks the state. A panic while the lock was held leaves plain data behind, so a
    /// poisoned lock is used as it is.
    pub fn lock(&self) -> MutexGuard<'_, SimState> {
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Returns the milliseconds since the simulator was created.
    #[must_use]
    pub fn elapsed_ms(&self) -> u64 {
        u64::try_from(self.inner.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    #[must_use]
    pub fn prefixes(&self) -> &[String] {
        &self.inner.prefixes
    }

    /// Classifies a request path under any configured prefix.
    #[must_use]
    pub fn classify(&self, path: &str) -> Option<Endpoint> {
        self.inner
            .prefixes
            .iter()
            .filter_map(|prefix| path.strip_prefix(prefix.as_str()))
            .find_map(Endpoint::from_service_path)
    }

    #[must_use]
    pub fn view(&self) -> StateView {
        let listening = self.listener_status().listening;
        self.lock().view(Instant::now(), listening)
    }

    #[must_use]
    pub fn listener_status(&self) -> ListenerStatus {
        *self.inner.listener.borrow()
    }

    #[must_use]
    pub fn subscribe_listener(&self) -> watch::Receiver<ListenerStatus> {
        self.inner.listener.subscribe()
    }

    /// Updates the listener status; called by the listener only.
    pub fn report_listener(&self, change: impl FnOnce(&mut ListenerStatus)) {
        self.inner.listener.send_modify(change);
    }

    /// Simulates a server restart: ends every session, resets the phase and result when
    /// requested, and closes the HTTPS port for `down_for`. Returns once the port is closed.
    pub async fn restart(
        &self,
        down_for: Duration,
        reset_phase: bool,
        reset_result: bool,
    ) -> Result<(), RestartError> {
        let mut status = self.subscribe_listener();
        let begun_before = status.borrow().restarts_begun;
        self.lock().forget_for_restart(reset_phase, reset_result);
        tracing::info!(
            down_seconds = down_for.as_secs_f64(),
            reset_phase,
            reset_result,
            "simulated restart requested"
        );
        if self.inner.restart_requests.send(down_for).is_err() {
            return Err(RestartError::ListenerStopped);
        }
        let closed =
            status.wait_for(|status| status.restarts_begun > begun_before || !status.listening);
        match tokio::time::timeout(RESTART_ACK_TIMEOUT, closed).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Err(RestartError::ListenerStopped),
            Err(_) => Err(RestartError::NotAcknowledged(RESTART_ACK_TIMEOUT)),
        }
    }

    /// Starts a restore run in a new task, unless one is in progress.
    pub fn start_run(
        &self,
        trigger: RunTrigger,
        settings: RunSettings,
        backup_file_path: Option<String>,
    ) -> Result<RunStatus, RunRejection> {
        let elapsed_ms = self.elapsed_ms();
        let run = self
            .lock()
            .begin_run(trigger, settings, backup_file_path, elapsed_ms)?;
        tracing::info!(
            run_id = run.id,
            trigger = ?trigger,
            step_ms = settings.step_ms,
            outcome = ?settings.outcome,
            restart_seconds = settings.restart_seconds,
            "restore run started"
        );
        tokio::spawn(run::drive(self.clone(), run.id, settings));
        Ok(run)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_under_each_prefix() {
        let (sim, _restarts) = Sim::new(&SimConfig::default());
        assert_eq!(
            sim.classify("/SKLM/rest/v1/ckms/login"),
            Some(Endpoint::Login)
        );
        assert_eq!(
            sim.classify("/GKLM/rest/v1/ckms/restore/isrunning"),
            Some(Endpoint::IsRunning)
        );
        assert_eq!(sim.classify("/ckms/login"), None);
        assert_eq!(sim.classify("/SKLM/rest/v1/ckms/nothing"), None);
    }

    #[tokio::test]
    async fn restart_without_listener_fails() {
        let (sim, restarts) = Sim::new(&SimConfig::default());
        drop(restarts);
        let outcome = sim.restart(Duration::from_secs(1), true, true).await;
        assert!(
            matches!(outcome, Err(RestartError::ListenerStopped)),
            "{outcome:?}"
        );
        assert_eq!(sim.lock().restarts, 1);
    }
}

//! Task that plays one restore run: phases `INITIALIZE` to `COMPLETED`, one per step, the
//! result on `COMPLETED`, then the post-restore restart of the server.
//!
//! Timeline for step `s`: phase `n` (1 to 7) starts at `(n - 1) * s`, so `COMPLETED` and
//! the result appear at `6 * s`. When `restart_seconds` is not 0, the restart starts at
//! `7 * s`, so `COMPLETED` stays visible for one step. The restart resets the phase to
//! `IDLE`, and the result to `-1` unless the run keeps it.

use std::time::Duration;

use crate::control_types::RunSettings;
use crate::model::Phase;
use crate::sim::Sim;

/// Time allowed, on top of the restart length, for the listener to reopen its port.
const REOPEN_GRACE: Duration = Duration::from_secs(30);

/// Plays run `run_id` to its end; see the module header for the timeline.
pub async fn drive(sim: Sim, run_id: u64, settings: RunSettings) {
    let step = Duration::from_millis(settings.step_ms);
    for phase in Phase::ALL.into_iter().skip(1) {
        if !sim.lock().enter_run_phase(run_id, phase) {
            tracing::warn!(run_id, "restore run ended by another change; stopping it");
            return;
        }
        tracing::info!(run_id, phase = phase.name(), "restore phase entered");
        if phase != Phase::Completed {
            tokio::time::sleep(step).await;
        }
    }
    let result = sim.lock().result;
    tracing::info!(run_id, result = result.code(), "restore run completed");

    if settings.restart_seconds > 0 {
        tokio::time::sleep(step).await;
        restart_after_run(&sim, run_id, settings).await;
    }
    sim.lock().finish_run(run_id, sim.elapsed_ms());
    tracing::info!(run_id, "restore run finished");
}

async fn restart_after_run(sim: &Sim, run_id: u64, settings: RunSettings) {
    let down_for = Duration::from_secs(settings.restart_seconds);
    let mut status = sim.subscribe_listener();
    let completed_before = status.borrow().restarts_completed;

    sim.lock().mark_run_restarting(run_id);
    let reset_result = !settings.keep_result_after_restart;
    if let Err(error) = sim.restart(down_for, true, reset_result).await {
        tracing::warn!(run_id, %error, "post-restore restart failed; ending the run");
        return;
    }

    let reopened =
        status.wait_for(|status| status.listening && status.restarts_completed > completed_before);
    if tokio::time::timeout(down_for + REOPEN_GRACE, reopened)
        .await
        .is_err()
    {
        tracing::warn!(
            run_id,
            timeout_seconds = (down_for + REOPEN_GRACE).as_secs(),
            "HTTPS port not reopened after the post-restore restart; ending the run"
        );
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::control_types::{RunStage, RunTrigger};
    use crate::model::{Outcome, RestoreResult};
    use crate::state::SimConfig;

    /// Polls the state every 5 ms for at most 5 s, collecting each new phase, until the
    /// run has finished.
    async fn phases_until_finished(sim: &Sim) -> Vec<Phase> {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut seen: Vec<Phase> = Vec::new();
        while Instant::now() < deadline {
            let (phase, running) = {
                let state = sim.lock();
                (state.phase, state.run.is_some())
            };
            if seen.last() != Some(&phase) {
                seen.push(phase);
            }
            if !running {
                return seen;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("run did not finish within 5 s; phases seen: {seen:?}");
    }

    #[tokio::test]
    async fn run_walks_phases_in_order() {
        let (sim, _restarts) = Sim::new(&SimConfig::default());
        let settings = RunSettings {
            step_ms: 40,
            outcome: Outcome::Success,
            restart_seconds: 0,
            keep_result_after_restart: false,
        };
        let run = sim
            .start_run(RunTrigger::Control, settings, None)
            .expect("run starts");

        let seen = phases_until_finished(&sim).await;
        assert!(seen.windows(2).all(|pair| pair[0] < pair[1]), "{seen:?}");
        assert_eq!(seen.last(), Some(&Phase::Completed), "{seen:?}");
        assert!(seen.len() >= 4, "too few phases seen: {seen:?}");

        let state = sim.lock();
        assert_eq!(state.result, RestoreResult::Success);
        let last = state.last_run.as_ref().expect("last run recorded");
        assert_eq!(last.id, run.id);
        assert_eq!(last.stage, RunStage::Finished);
    }

    #[tokio::test]
    async fn failed_run_reports_failure() {
        let (sim, _restarts) = Sim::new(&SimConfig::default());
        let settings = RunSettings {
            step_ms: 1,
            outcome: Outcome::Failure,
            restart_seconds: 0,
            keep_result_after_restart: false,
        };
        sim.start_run(RunTrigger::Auto, settings, None)
            .expect("run starts");
        let second = sim.start_run(RunTrigger::Control, settings, None);
        assert!(
            second.is_err(),
            "second run must be rejected while one runs"
        );

        phases_until_finished(&sim).await;
        assert_eq!(sim.lock().result, RestoreResult::Failure);
    }

    #[tokio::test]
    async fn run_without_listener_still_finishes() {
        let (sim, restarts) = Sim::new(&SimConfig::default());
        drop(restarts);
        let settings = RunSettings {
            step_ms: 1,
            outcome: Outcome::Success,
            restart_seconds: 1,
            keep_result_after_restart: false,
        };
        sim.start_run(RunTrigger::Control, settings, None)
            .expect("run starts");

        phases_until_finished(&sim).await;
        let state = sim.lock();
        assert_eq!(state.phase, Phase::Idle);
        assert_eq!(state.result, RestoreResult::Unknown);
        assert_eq!(state.restarts, 1);
    }
}

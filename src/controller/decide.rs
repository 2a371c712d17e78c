//! The decision table: from the previous status and one poll, the next status.
//!
//! Pure: no client, no clock (the caller passes `now`). `docs/decision-table.md` lists the
//! rows; each has a test below named after it.
//!
//! The "is running" service answers the same before a restore, after a successful one and
//! after a failed one, so the end of a restore is told from transitions: a running step
//! seen, then COMPLETED or "not running" (often after the server's restart). Only then is
//! the result service asked, and a result it cannot give is stated as such.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use super::conditions::{self, Verdict};
use crate::crd::{LastError, Phase, RestorePhase, SklmRestoreStatus, SubmissionState};
use crate::names::{condition, reason};

/// How long after the server accepted a submitted restore a "not running" answer is
/// still taken as "not started yet" rather than as the end.
pub const START_GRACE: Duration = Duration::from_secs(120);

const KSTATUS_TYPES: [&str; 3] = [condition::READY, condition::RECONCILING, condition::STALLED];
use crate::sklm::hub::Snapshot;
use crate::sklm::{RestoreResult, SklmError};

/// What the reconcile learned for this object.
#[derive(Debug)]
pub enum Input<'a> {
    /// The object cannot be polled: bad spec or Secret.
    Problem {
        reason: &'static str,
        message: String,
    },
    /// The latest poll of the object's server.
    Poll(&'a Snapshot),
}

/// Spec values the table needs.
#[derive(Clone, Copy, Debug)]
pub struct Settings {
    pub restart_timeout: Duration,
    pub insecure_skip_tls_verify: bool,
}

/// The table's answer.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    pub status: SklmRestoreStatus,
    /// The next poll must also ask the result service.
    pub wants_result: bool,
    /// Decide again after this long even without a new poll (restart timeout running out).
    pub recheck_after: Option<Duration>,
}

/// Computes the next status. See the module header.
#[must_use]
pub fn decide(
    previous: &SklmRestoreStatus,
    input: &Input<'_>,
    settings: Settings,
    generation: Option<i64>,
    now: Timestamp,
) -> Decision {
    let now = whole_seconds(now);
    let phase = previous.phase.unwrap_or(Phase::Pending);
    let mut status = previous.clone();
    status.observed_generation = generation;
    status.phase = Some(phase);
    let mut decision = Decision {
        status,
        wants_result: phase == Phase::Running,
        recheck_after: None,
    };
    if phase.is_finished() {
        return keep_status(previous, generation);
    }
    let submission = previous.submission.as_ref().map(|s| s.state);
    if submission == Some(SubmissionState::Accepted) {
        // The server accepted the restore this object submitted: it has started.
        decision.status.phase = Some(Phase::Running);
        decision.wants_result = true;
    }
    // A restore seen running before the request was sent is the one the object watches,
    // so a rejection (the server is busy with it) does not end it.
    let watching_earlier_restore = previous.start_time.is_some();
    let verdict = match input {
        _ if submission == Some(SubmissionState::Rejected) && !watching_earlier_restore => {
            rejected(&mut decision, &now)
        }
        Input::Problem { reason, message } => {
            decision.status.last_error = Some(LastError {
                reason: (*reason).to_owned(),
                http_status: None,
                message_id: None,
                message: message.clone(),
            });
            stalled(reason, message.clone())
        }
        Input::Poll(snapshot) => match &snapshot.outcome {
            Ok(observation) => {
                decision.status.last_error = None;
                decision.status.restore_phase = Some(observation.step);
                decision.status.server_message = Some(observation.message.clone());
                on_answer(
                    &mut decision,
                    observation.step,
                    snapshot.result.as_ref(),
                    &now,
                )
            }
            Err(error) => on_error(&mut decision, error, snapshot, settings, &now),
        },
    };
    let mut verdict = verdict;
    if settings.insecure_skip_tls_verify {
        verdict
            .message
            .push_str(" (TLS verification is off: insecureSkipTlsVerify is set)");
    }
    decision.status.conditions =
        conditions::build(&previous.conditions, &verdict, generation, &now);
    // Keep conditions of other types, such as RestoreSubmitted, which the caller sets.
    decision.status.conditions.extend(
        previous
            .conditions
            .iter()
            .filter(|c| !KSTATUS_TYPES.contains(&c.type_.as_str()))
            .cloned(),
    );
    if decision.status.phase.is_some_and(Phase::is_finished) {
        decision.wants_result = false;
    }
    decision
}

/// A Kubernetes timestamp, which the API server stores in whole seconds; comparing a
/// written status with its stored copy needs the same precision.
#[must_use]
pub fn whole_seconds(now: Timestamp) -> Time {
    Time(Timestamp::from_second(now.as_second()).expect("current time is in range"))
}

/// The same status with only the observed generation moved: for a finished restore,
/// which never changes again, and for a status written before the first poll.
#[must_use]
pub fn keep_status(previous: &SklmRestoreStatus, generation: Option<i64>) -> Decision {
    let mut status = previous.clone();
    status.observed_generation = generation;
    for condition in &mut status.conditions {
        condition.observed_generation = generation;
    }
    Decision {
        status,
        wants_result: false,
        recheck_after: None,
    }
}

/// A successful answer of the "is running" service.
fn on_answer(
    decision: &mut Decision,
    step: RestorePhase,
    result: Option<&Result<RestoreResult, Arc<SklmError>>>,
    now: &Time,
) -> Verdict {
    let status = &mut decision.status;
    let was_running = status.phase == Some(Phase::Running);
    match step {
        RestorePhase::Unknown => {
            let text = status
                .server_message
                .as_ref()
                .map(|m| m.status.clone())
                .unwrap_or_default();
            if status.phase == Some(Phase::Pending) {
                status.phase = Some(Phase::Waiting);
            }
            progressing(
                reason::UNRECOGNIZED_ANSWER,
                format!("the server's answer names no known restore step: {text:?}"),
            )
        }
        step if step.is_running_step() => {
            status.phase = Some(Phase::Running);
            status.start_time.get_or_insert_with(|| now.clone());
            decision.wants_result = true;
            progressing(
                reason::RESTORE_IN_PROGRESS,
                format!("restore step {} is running", step.server_name()),
            )
        }
        RestorePhase::Completed => ended(decision, "the server reported COMPLETED", result, now),
        _ if was_running && submitted_restore_starting(status, now) => {
            // Repeated "not running" answers trigger no reconcile: decide again when
            // the grace ends.
            let since = grace_start(status).unwrap_or(now.0);
            let elapsed = now.0.duration_since(since).unsigned_abs();
            decision.recheck_after =
                Some(START_GRACE.saturating_sub(elapsed) + Duration::from_secs(1));
            progressing(
                reason::SUBMITTED_RESTORE_STARTING,
                "the server accepted the submitted restore but reports none running yet".to_owned(),
            )
        }
        _ if was_running => ended(
            decision,
            "the server reported no restore running after a running step",
            result,
            now,
        ),
        _ => {
            status.phase = Some(Phase::Waiting);
            progressing(
                reason::WAITING_FOR_RESTORE,
                "no restore is running; waiting for one to start".to_owned(),
            )
        }
    }
}

/// Whether a "not running" answer comes too early to mean the end of a submitted restore:
/// accepted less than [`START_GRACE`] ago (counted from [`grace_start`]), with no running step and no restart outage seen
/// since.
fn submitted_restore_starting(status: &SklmRestoreStatus, now: &Time) -> bool {
    let accepted = status
        .submission
        .as_ref()
        .is_some_and(|s| s.state == SubmissionState::Accepted);
    let restarting = conditions::find(&status.conditions, condition::READY)
        .is_some_and(|c| c.reason == reason::SERVER_RESTARTING);
    let recent =
        grace_start(status).is_some_and(|t| now.0.duration_since(t).unsigned_abs() < START_GRACE);
    accepted && status.start_time.is_none() && !restarting && recent
}

/// Returns when the start grace began: when the server's acceptance arrived, or, for a
/// record without that time, when the request was recorded.
fn grace_start(status: &SklmRestoreStatus) -> Option<Timestamp> {
    let finished = status
        .submission
        .as_ref()
        .and_then(|s| s.finished_time.as_ref());
    finished.or(status.submitted_time.as_ref()).map(|t| t.0)
}

/// A submitted restore the server rejected: it never ran.
fn rejected(decision: &mut Decision, now: &Time) -> Verdict {
    let status = &mut decision.status;
    status.phase = Some(Phase::Failed);
    status.completion_time = Some(now.clone());
    let detail = status
        .submission
        .as_ref()
        .map(|s| format!("{}: {}", s.backup_file_path, s.message))
        .unwrap_or_default();
    stalled(
        reason::RESTORE_REJECTED,
        format!("the server rejected the run-restore request for {detail}"),
    )
}

/// The server reported the end; the result service decides how it ended.
fn ended(
    decision: &mut Decision,
    how: &str,
    result: Option<&Result<RestoreResult, Arc<SklmError>>>,
    now: &Time,
) -> Verdict {
    let Some(result) = result else {
        // Ask the result service on the next poll before deciding.
        decision.wants_result = true;
        return progressing(
            reason::RESTORE_IN_PROGRESS,
            format!("{how}; reading the restore result"),
        );
    };
    let status = &mut decision.status;
    status.completion_time = Some(now.clone());
    match result {
        Ok(RestoreResult::Succeeded) => {
            status.phase = Some(Phase::Completed);
            Verdict {
                ready: true,
                reconciling: false,
                stalled: false,
                reason: reason::RESTORE_SUCCEEDED,
                message: format!("{how}, and the result service reported success"),
            }
        }
        Ok(RestoreResult::Failed) => {
            status.phase = Some(Phase::Failed);
            stalled(
                reason::RESTORE_FAILED,
                format!("{how}, and the result service reported failure"),
            )
        }
        Ok(RestoreResult::Unknown) => {
            status.phase = Some(Phase::Completed);
            ended_unconfirmed(&format!(
                "{how}; the result service has no result (-1), as after the server's post-restore restart"
            ))
        }
        Err(error) => {
            status.phase = Some(Phase::Completed);
            ended_unconfirmed(&format!("{how}; the result service failed: {error}"))
        }
    }
}

fn ended_unconfirmed(detail: &str) -> Verdict {
    Verdict {
        ready: true,
        reconciling: false,
        stalled: false,
        reason: reason::RESTORE_ENDED_RESULT_UNKNOWN,
        message: format!("the restore ended but its success is not confirmed: {detail}"),
    }
}

/// A failed poll. During a restore, an outage is the expected post-restore restart until
/// `restart_timeout` has passed.
fn on_error(
    decision: &mut Decision,
    error: &SklmError,
    snapshot: &Snapshot,
    settings: Settings,
    now: &Time,
) -> Verdict {
    decision.status.last_error = Some(LastError {
        reason: error.reason().to_owned(),
        http_status: error.http_status(),
        message_id: error.message_id().map(str::to_owned),
        message: error.to_string(),
    });
    if decision.status.phase == Some(Phase::Running)
        && error.is_outage()
        && !polled_before_submission(&decision.status, snapshot)
    {
        let since = snapshot.failing_since.unwrap_or(snapshot.polled_at);
        let elapsed = now.0.duration_since(since).unsigned_abs();
        if elapsed < settings.restart_timeout {
            decision.recheck_after =
                Some(settings.restart_timeout.saturating_sub(elapsed) + Duration::from_secs(1));
            return progressing(
                reason::SERVER_RESTARTING,
                format!(
                    "the server is unreachable after a running step, as during its post-restore restart ({}s of {}s allowed): {error}",
                    elapsed.as_secs(),
                    settings.restart_timeout.as_secs()
                ),
            );
        }
        return stalled(
            error.reason(),
            format!(
                "the server has been unreachable for {}s after a running step: {error}",
                elapsed.as_secs()
            ),
        );
    }
    if error.is_retryable() {
        progressing(error.reason(), error.to_string())
    } else {
        stalled(error.reason(), error.to_string())
    }
}

/// Returns whether the poll came at or before the submission, with no running step seen,
/// so an outage it saw cannot be the restart at the end of that restore.
fn polled_before_submission(status: &SklmRestoreStatus, snapshot: &Snapshot) -> bool {
    status.start_time.is_none()
        && status
            .submitted_time
            .as_ref()
            .is_some_and(|submitted| snapshot.polled_at <= submitted.0)
}

fn progressing(reason: &'static str, message: String) -> Verdict {
    Verdict {
        ready: false,
        reconciling: true,
        stalled: false,
        reason,
        message,
    }
}

fn stalled(reason: &'static str, message: String) -> Verdict {
    Verdict {
        ready: false,
        reconciling: false,
        stalled: true,
        reason,
        message,
    }
}

#[cfg(test)]
mod tests;

//! One test per row of `docs/decision-table.md`, named after the row.

use super::*;
use crate::crd::{ServerMessage, SubmissionState};
use crate::names::condition;
use crate::sklm::RestoreObservation;

const SETTINGS: Settings = Settings {
    restart_timeout: Duration::from_secs(600),
    insecure_skip_tls_verify: false,
};

fn at(second: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + second).expect("valid")
}

#[allow(clippy::unnecessary_wraps)] // Snapshots hold a `Result`; tests pass this one in.
fn answer(step: RestorePhase) -> Result<RestoreObservation, Arc<SklmError>> {
    Ok(RestoreObservation {
        step,
        message: ServerMessage {
            code: "0".to_owned(),
            status: step.server_name().to_owned(),
        },
    })
}

fn snapshot(
    outcome: Result<RestoreObservation, Arc<SklmError>>,
    result: Option<Result<RestoreResult, Arc<SklmError>>>,
    second: i64,
) -> Snapshot {
    Snapshot {
        sequence: 1,
        polled_at: at(second),
        failing_since: outcome.is_err().then(|| at(second)),
        outcome,
        result,
    }
}

fn unreachable() -> Arc<SklmError> {
    Arc::new(SklmError::Unreachable {
        origin: "https://127.0.0.1:9443".to_owned(),
        detail: "connection refused".to_owned(),
    })
}

fn step(previous: &SklmRestoreStatus, snap: &Snapshot, second: i64) -> Decision {
    decide(previous, &Input::Poll(snap), SETTINGS, Some(1), at(second))
}

fn ready(status: &SklmRestoreStatus) -> (&str, &str) {
    let ready = conditions::find(&status.conditions, condition::READY).expect("Ready condition");
    (ready.status.as_str(), ready.reason.as_str())
}

fn condition_status<'a>(status: &'a SklmRestoreStatus, type_: &str) -> &'a str {
    conditions::find(&status.conditions, type_).map_or("absent", |c| c.status.as_str())
}

/// Status after a running step was seen at second 10.
fn running_status() -> SklmRestoreStatus {
    let waiting = step(
        &SklmRestoreStatus::default(),
        &snapshot(answer(RestorePhase::Idle), None, 0),
        0,
    );
    step(
        &waiting.status,
        &snapshot(answer(RestorePhase::RestoreKeystores), None, 10),
        10,
    )
    .status
}

#[test]
fn row_not_running_before_any_step_is_waiting() {
    let decision = step(
        &SklmRestoreStatus::default(),
        &snapshot(answer(RestorePhase::Idle), None, 0),
        0,
    );
    assert_eq!(decision.status.phase, Some(Phase::Waiting));
    assert_eq!(decision.status.restore_phase, Some(RestorePhase::Idle));
    assert_eq!(
        ready(&decision.status),
        ("False", reason::WAITING_FOR_RESTORE)
    );
    assert_eq!(
        condition_status(&decision.status, condition::RECONCILING),
        "True"
    );
    assert_eq!(
        condition_status(&decision.status, condition::STALLED),
        "False"
    );
    assert_eq!(decision.status.observed_generation, Some(1));
    assert!(!decision.wants_result);
}

#[test]
fn row_running_step_is_running_with_start_time() {
    let status = running_status();
    assert_eq!(status.phase, Some(Phase::Running));
    assert_eq!(status.restore_phase, Some(RestorePhase::RestoreKeystores));
    assert_eq!(status.start_time, Some(Time(at(10))));
    assert_eq!(ready(&status), ("False", reason::RESTORE_IN_PROGRESS));
}

#[test]
fn row_later_running_step_keeps_start_time() {
    let decision = step(
        &running_status(),
        &snapshot(answer(RestorePhase::Cleanup), None, 30),
        30,
    );
    assert_eq!(decision.status.start_time, Some(Time(at(10))));
    assert_eq!(decision.status.restore_phase, Some(RestorePhase::Cleanup));
    assert!(decision.wants_result);
}

#[test]
fn row_not_running_after_step_without_result_asks_for_it() {
    let decision = step(
        &running_status(),
        &snapshot(answer(RestorePhase::Idle), None, 40),
        40,
    );
    assert_eq!(decision.status.phase, Some(Phase::Running));
    assert!(decision.wants_result);
    assert_eq!(decision.status.completion_time, None);
}

#[test]
fn row_not_running_after_step_result_success_is_completed() {
    let snap = snapshot(
        answer(RestorePhase::Idle),
        Some(Ok(RestoreResult::Succeeded)),
        40,
    );
    let decision = step(&running_status(), &snap, 40);
    assert_eq!(decision.status.phase, Some(Phase::Completed));
    assert_eq!(decision.status.completion_time, Some(Time(at(40))));
    assert_eq!(ready(&decision.status), ("True", reason::RESTORE_SUCCEEDED));
    assert_eq!(
        condition_status(&decision.status, condition::RECONCILING),
        "False"
    );
    assert!(!decision.wants_result);
}

#[test]
fn row_not_running_after_step_result_failure_is_failed() {
    let snap = snapshot(
        answer(RestorePhase::Idle),
        Some(Ok(RestoreResult::Failed)),
        40,
    );
    let decision = step(&running_status(), &snap, 40);
    assert_eq!(decision.status.phase, Some(Phase::Failed));
    assert_eq!(ready(&decision.status), ("False", reason::RESTORE_FAILED));
    assert_eq!(
        condition_status(&decision.status, condition::STALLED),
        "True"
    );
    assert_eq!(
        condition_status(&decision.status, condition::RECONCILING),
        "False"
    );
}

#[test]
fn row_not_running_after_step_result_unknown_is_unconfirmed() {
    let snap = snapshot(
        answer(RestorePhase::Idle),
        Some(Ok(RestoreResult::Unknown)),
        40,
    );
    let decision = step(&running_status(), &snap, 40);
    assert_eq!(decision.status.phase, Some(Phase::Completed));
    assert_eq!(
        ready(&decision.status),
        ("True", reason::RESTORE_ENDED_RESULT_UNKNOWN)
    );
    let message = &conditions::find(&decision.status.conditions, condition::READY)
        .expect("Ready")
        .message;
    assert!(message.contains("not confirmed"), "{message}");
}

#[test]
fn row_not_running_after_step_result_error_is_unconfirmed() {
    let snap = snapshot(answer(RestorePhase::Idle), Some(Err(unreachable())), 40);
    let decision = step(&running_status(), &snap, 40);
    assert_eq!(decision.status.phase, Some(Phase::Completed));
    assert_eq!(
        ready(&decision.status),
        ("True", reason::RESTORE_ENDED_RESULT_UNKNOWN)
    );
}

#[test]
fn row_completed_step_while_waiting_ends_restore() {
    let waiting = step(
        &SklmRestoreStatus::default(),
        &snapshot(answer(RestorePhase::Idle), None, 0),
        0,
    );
    let asked = step(
        &waiting.status,
        &snapshot(answer(RestorePhase::Completed), None, 5),
        5,
    );
    assert_eq!(asked.status.phase, Some(Phase::Waiting));
    assert!(asked.wants_result);
    let snap = snapshot(
        answer(RestorePhase::Completed),
        Some(Ok(RestoreResult::Succeeded)),
        10,
    );
    let done = step(&asked.status, &snap, 10);
    assert_eq!(done.status.phase, Some(Phase::Completed));
    assert_eq!(done.status.start_time, None);
    assert_eq!(done.status.restore_phase, Some(RestorePhase::Completed));
    assert_eq!(ready(&done.status), ("True", reason::RESTORE_SUCCEEDED));
}

#[test]
fn row_outage_after_step_within_timeout_is_restart() {
    let decision = step(
        &running_status(),
        &snapshot(Err(unreachable()), None, 50),
        110,
    );
    assert_eq!(decision.status.phase, Some(Phase::Running));
    assert_eq!(
        ready(&decision.status),
        ("False", reason::SERVER_RESTARTING)
    );
    assert_eq!(
        condition_status(&decision.status, condition::STALLED),
        "False"
    );
    assert_eq!(decision.recheck_after, Some(Duration::from_secs(541)));
    assert_eq!(
        decision.status.restore_phase,
        Some(RestorePhase::RestoreKeystores)
    );
    let last_error = decision.status.last_error.expect("lastError");
    assert_eq!(last_error.reason, reason::SERVER_UNREACHABLE);
}

#[test]
fn row_outage_after_step_beyond_timeout_is_stalled() {
    let decision = step(
        &running_status(),
        &snapshot(Err(unreachable()), None, 50),
        700,
    );
    assert_eq!(decision.status.phase, Some(Phase::Running));
    assert_eq!(
        ready(&decision.status),
        ("False", reason::SERVER_UNREACHABLE)
    );
    assert_eq!(
        condition_status(&decision.status, condition::STALLED),
        "True"
    );
}

#[test]
fn row_outage_while_waiting_is_unreachable() {
    let waiting = step(
        &SklmRestoreStatus::default(),
        &snapshot(answer(RestorePhase::Idle), None, 0),
        0,
    );
    let decision = step(&waiting.status, &snapshot(Err(unreachable()), None, 10), 10);
    assert_eq!(decision.status.phase, Some(Phase::Waiting));
    assert_eq!(
        ready(&decision.status),
        ("False", reason::SERVER_UNREACHABLE)
    );
    assert_eq!(
        condition_status(&decision.status, condition::RECONCILING),
        "True"
    );
    assert_eq!(
        condition_status(&decision.status, condition::STALLED),
        "False"
    );
}

#[test]
fn row_first_poll_unreachable_stays_pending() {
    let decision = step(
        &SklmRestoreStatus::default(),
        &snapshot(Err(unreachable()), None, 0),
        0,
    );
    assert_eq!(decision.status.phase, Some(Phase::Pending));
    assert_eq!(
        ready(&decision.status),
        ("False", reason::SERVER_UNREACHABLE)
    );
    assert_eq!(decision.status.restore_phase, None);
    assert_eq!(decision.status.start_time, None);
    let json = serde_json::to_string(&decision.status).expect("serializes");
    assert!(!json.contains("null"), "{json}");
}

#[test]
fn row_login_rejected_is_stalled() {
    let error = Arc::new(SklmError::LoginRejected {
        user: "admin".to_owned(),
        status: 401,
        message_id: Some("CTGKM6003E".to_owned()),
    });
    let decision = step(
        &SklmRestoreStatus::default(),
        &snapshot(Err(error), None, 0),
        0,
    );
    assert_eq!(
        ready(&decision.status),
        ("False", reason::AUTHENTICATION_FAILED)
    );
    assert_eq!(
        condition_status(&decision.status, condition::STALLED),
        "True"
    );
    let last_error = decision.status.last_error.expect("lastError");
    assert_eq!(last_error.http_status, Some(401));
    assert_eq!(last_error.message_id.as_deref(), Some("CTGKM6003E"));
}

#[test]
fn row_tls_error_is_stalled() {
    let error = Arc::new(SklmError::Tls {
        origin: "https://127.0.0.2:9443".to_owned(),
        detail: "certificate not valid for name \"127.0.0.2\"".to_owned(),
    });
    let decision = step(
        &SklmRestoreStatus::default(),
        &snapshot(Err(error), None, 0),
        0,
    );
    assert_eq!(ready(&decision.status), ("False", reason::TLS_ERROR));
    assert_eq!(
        condition_status(&decision.status, condition::STALLED),
        "True"
    );
}

#[test]
fn row_unrecognized_answer_is_unknown_step() {
    let unknown = Ok(RestoreObservation {
        step: RestorePhase::Unknown,
        message: ServerMessage {
            code: "0".to_owned(),
            status: "busy".to_owned(),
        },
    });
    let decision = step(
        &SklmRestoreStatus::default(),
        &snapshot(unknown, None, 0),
        0,
    );
    assert_eq!(decision.status.phase, Some(Phase::Waiting));
    assert_eq!(decision.status.restore_phase, Some(RestorePhase::Unknown));
    assert_eq!(
        ready(&decision.status),
        ("False", reason::UNRECOGNIZED_ANSWER)
    );
    assert_eq!(decision.status.server_message.expect("kept").status, "busy");
}

#[test]
fn row_finished_restore_never_moves_back() {
    let snap = snapshot(
        answer(RestorePhase::Idle),
        Some(Ok(RestoreResult::Succeeded)),
        40,
    );
    let completed = step(&running_status(), &snap, 40).status;
    let later = decide(
        &completed,
        &Input::Poll(&snapshot(answer(RestorePhase::Initialize), None, 90)),
        SETTINGS,
        Some(2),
        at(90),
    );
    assert_eq!(later.status.phase, Some(Phase::Completed));
    assert_eq!(later.status.restore_phase, completed.restore_phase);
    assert_eq!(later.status.completion_time, completed.completion_time);
    assert_eq!(later.status.observed_generation, Some(2));
    assert_eq!(ready(&later.status), ("True", reason::RESTORE_SUCCEEDED));
    assert!(!later.wants_result);
}

#[test]
fn row_problem_is_stalled_and_keeps_phase() {
    let input = Input::Problem {
        reason: reason::INVALID_SECRET,
        message: "Secret keys/gklm-admin has no key \"password\"".to_owned(),
    };
    let decision = decide(&running_status(), &input, SETTINGS, Some(1), at(20));
    assert_eq!(decision.status.phase, Some(Phase::Running));
    assert_eq!(ready(&decision.status), ("False", reason::INVALID_SECRET));
    assert_eq!(
        condition_status(&decision.status, condition::STALLED),
        "True"
    );
}

#[test]
fn row_same_answer_gives_same_status() {
    let first = step(
        &SklmRestoreStatus::default(),
        &snapshot(answer(RestorePhase::Idle), None, 0),
        0,
    );
    let second = step(
        &first.status,
        &snapshot(answer(RestorePhase::Idle), None, 60),
        60,
    );
    assert_eq!(first.status, second.status);
}

#[test]
fn row_insecure_tls_is_stated() {
    let settings = Settings {
        insecure_skip_tls_verify: true,
        ..SETTINGS
    };
    let snap = snapshot(answer(RestorePhase::Idle), None, 0);
    let decision = decide(
        &SklmRestoreStatus::default(),
        &Input::Poll(&snap),
        settings,
        Some(1),
        at(0),
    );
    let message = &conditions::find(&decision.status.conditions, condition::READY)
        .expect("Ready")
        .message;
    assert!(message.contains("insecureSkipTlsVerify"), "{message}");
}

fn submitted(state: SubmissionState, second: i64) -> SklmRestoreStatus {
    let waiting = step(
        &SklmRestoreStatus::default(),
        &snapshot(answer(RestorePhase::Idle), None, 0),
        0,
    );
    let mut status = waiting.status;
    status.submitted_time = Some(Time(at(second)));
    status.submission = Some(crate::crd::Submission {
        backup_file_path: "/opt/backups/b.jar".to_owned(),
        state,
        http_status: (state == SubmissionState::Rejected).then_some(400),
        message_id: (state == SubmissionState::Rejected).then(|| "CTGKM3294E".to_owned()),
        message: "answer".to_owned(),
        finished_time: None,
    });
    status
}

#[test]
fn row_submission_accepted_is_running() {
    let status = submitted(SubmissionState::Accepted, 5);
    let decision = step(
        &status,
        &snapshot(answer(RestorePhase::Initialize), None, 6),
        6,
    );
    assert_eq!(decision.status.phase, Some(Phase::Running));
    assert_eq!(
        ready(&decision.status),
        ("False", reason::RESTORE_IN_PROGRESS)
    );
    assert!(decision.wants_result);
}

#[test]
fn row_submission_accepted_not_started_yet_stays_running() {
    let status = submitted(SubmissionState::Accepted, 5);
    let snap = snapshot(
        answer(RestorePhase::Idle),
        Some(Ok(RestoreResult::Unknown)),
        10,
    );
    let decision = step(&status, &snap, 10);
    assert_eq!(decision.status.phase, Some(Phase::Running));
    assert_eq!(
        ready(&decision.status),
        ("False", reason::SUBMITTED_RESTORE_STARTING)
    );
    assert_eq!(decision.status.completion_time, None);
}

#[test]
fn row_submission_accepted_idle_after_grace_ends() {
    let status = submitted(SubmissionState::Accepted, 5);
    let snap = snapshot(
        answer(RestorePhase::Idle),
        Some(Ok(RestoreResult::Succeeded)),
        200,
    );
    let decision = step(&status, &snap, 200);
    assert_eq!(decision.status.phase, Some(Phase::Completed));
    assert_eq!(ready(&decision.status), ("True", reason::RESTORE_SUCCEEDED));
}

#[test]
fn row_submission_accepted_idle_after_restart_ends() {
    let status = submitted(SubmissionState::Accepted, 5);
    let restarting = step(&status, &snapshot(Err(unreachable()), None, 8), 8);
    assert_eq!(
        ready(&restarting.status),
        ("False", reason::SERVER_RESTARTING)
    );
    let snap = snapshot(
        answer(RestorePhase::Idle),
        Some(Ok(RestoreResult::Unknown)),
        20,
    );
    let decision = step(&restarting.status, &snap, 20);
    assert_eq!(decision.status.phase, Some(Phase::Completed));
    assert_eq!(
        ready(&decision.status),
        ("True", reason::RESTORE_ENDED_RESULT_UNKNOWN)
    );
}

#[test]
fn row_submission_rejected_is_failed() {
    let status = submitted(SubmissionState::Rejected, 5);
    let decision = step(&status, &snapshot(answer(RestorePhase::Idle), None, 6), 6);
    assert_eq!(decision.status.phase, Some(Phase::Failed));
    assert_eq!(ready(&decision.status), ("False", reason::RESTORE_REJECTED));
    assert_eq!(
        condition_status(&decision.status, condition::STALLED),
        "True"
    );
    let message = &conditions::find(&decision.status.conditions, condition::READY)
        .expect("Ready")
        .message;
    assert!(message.contains("/opt/backups/b.jar"), "{message}");
}

#[test]
fn row_submission_unknown_watches_as_usual() {
    let status = submitted(SubmissionState::Unknown, 5);
    let decision = step(&status, &snapshot(answer(RestorePhase::Idle), None, 6), 6);
    assert_eq!(decision.status.phase, Some(Phase::Waiting));
    let running = step(
        &decision.status,
        &snapshot(answer(RestorePhase::Cleanup), None, 7),
        7,
    );
    assert_eq!(running.status.phase, Some(Phase::Running));
}

#[test]
fn row_submission_accepted_outage_polled_before_is_not_restart() {
    let status = submitted(SubmissionState::Accepted, 5);
    // The poller's latest poll, at second 4, failed: it says nothing about the restore.
    let stale = snapshot(Err(unreachable()), None, 4);
    let decision = step(&status, &stale, 5);
    assert_eq!(decision.status.phase, Some(Phase::Running));
    assert_eq!(
        ready(&decision.status),
        ("False", reason::SERVER_UNREACHABLE)
    );
    let next = step(
        &decision.status,
        &snapshot(answer(RestorePhase::Idle), None, 7),
        7,
    );
    assert_eq!(
        ready(&next.status),
        ("False", reason::SUBMITTED_RESTORE_STARTING),
        "no outage was polled since the submission"
    );
}

#[test]
fn row_submission_accepted_grace_counts_from_answer() {
    let mut status = submitted(SubmissionState::Accepted, 5);
    // The server took 125 s to accept the request.
    if let Some(record) = status.submission.as_mut() {
        record.finished_time = Some(Time(at(130)));
    }
    let snap = snapshot(
        answer(RestorePhase::Idle),
        Some(Ok(RestoreResult::Unknown)),
        140,
    );
    let decision = step(&status, &snap, 140);
    assert_eq!(decision.status.phase, Some(Phase::Running));
    assert_eq!(
        ready(&decision.status),
        ("False", reason::SUBMITTED_RESTORE_STARTING)
    );
    assert_eq!(decision.recheck_after, Some(Duration::from_secs(111)));
}

#[test]
fn row_submission_rejected_while_watching_keeps_watching() {
    let mut status = running_status();
    status.submitted_time = Some(Time(at(20)));
    status.submission = submitted(SubmissionState::Rejected, 20).submission;
    let decision = step(
        &status,
        &snapshot(answer(RestorePhase::RestoreDatabases), None, 21),
        21,
    );
    assert_eq!(decision.status.phase, Some(Phase::Running));
    assert_eq!(
        ready(&decision.status),
        ("False", reason::RESTORE_IN_PROGRESS)
    );
    let snap = snapshot(
        answer(RestorePhase::Idle),
        Some(Ok(RestoreResult::Succeeded)),
        30,
    );
    let ended = step(&decision.status, &snap, 30);
    assert_eq!(ended.status.phase, Some(Phase::Completed));
    assert_eq!(ready(&ended.status), ("True", reason::RESTORE_SUCCEEDED));
}

#[test]
fn row_other_condition_types_are_kept() {
    let mut status = submitted(SubmissionState::Accepted, 5);
    let extra = crate::crd::Condition {
        type_: condition::RESTORE_SUBMITTED.to_owned(),
        status: "True".to_owned(),
        reason: reason::SUBMISSION_ACCEPTED.to_owned(),
        message: "m".to_owned(),
        last_transition_time: Time(at(5)),
        observed_generation: Some(1),
    };
    status.conditions.push(extra.clone());
    let decision = step(
        &status,
        &snapshot(answer(RestorePhase::Initialize), None, 6),
        6,
    );
    let kept = conditions::find(&decision.status.conditions, condition::RESTORE_SUBMITTED);
    assert_eq!(kept, Some(&extra));
}

#[test]
fn decision_table_rows_name_existing_tests() {
    let table = include_str!("../../../docs/decision-table.md");
    let tests = include_str!("tests.rs");
    let named: Vec<&str> = table
        .split('`')
        .filter(|word| word.starts_with("row_"))
        .collect();
    assert!(named.len() >= 29, "rows found: {}", named.len());
    for name in named {
        assert!(
            tests.contains(&format!("fn {name}()")),
            "docs/decision-table.md names {name}, which is not a test here"
        );
    }
}

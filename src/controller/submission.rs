//! Run-restore requests for `spec.restore`, sent at most once per object.
//!
//! The request is recorded in status (`submittedTime`, state `Sending`) by a write that
//! fails if the object changed since a fresh read, and only then sent. A later reconcile,
//! a restarted operator or another replica therefore finds the record and never sends
//! again. A `Sending` record still without a response after [`in_flight_left`] runs out
//! means the sender stopped in between, so the outcome is `Unknown` and nothing is
//! resent. Only failures that happen before the request leaves (login, TLS, connecting)
//! are `NotSent` and allow a later attempt.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use super::conditions::{self, ConditionSpec};
use crate::crd::{Condition, RestoreRequest, ServerMessage, Submission, SubmissionState};
use crate::names::{condition, reason};
use crate::sklm::SklmError;

/// The record written before the request is sent.
#[must_use]
pub fn sending(request: &RestoreRequest) -> Submission {
    Submission {
        backup_file_path: request.backup_file_path.clone(),
        state: SubmissionState::Sending,
        http_status: None,
        message_id: None,
        message: "recorded; sending the run-restore request".to_owned(),
        finished_time: None,
    }
}

/// Number of requests a `Sending` record may still be waiting for: the POST, then a login
/// and a second POST after a rejected session id. The login before recording is done.
const REQUESTS_AFTER_RECORDING: u32 = 3;

/// Margin for writing the response to the API server after the last request.
const ANSWER_WRITE_MARGIN: Duration = Duration::from_secs(5);

/// Returns how much longer a `Sending` record made at `submitted` may wait for the
/// server's response, with each request taking at most `timeout_seconds`. Zero means the
/// sender must have stopped.
#[must_use]
pub fn in_flight_left(submitted: &Timestamp, timeout_seconds: u32, now: Timestamp) -> Duration {
    let limit =
        Duration::from_secs(u64::from(timeout_seconds) * u64::from(REQUESTS_AFTER_RECORDING))
            + ANSWER_WRITE_MARGIN;
    let elapsed = now.duration_since(*submitted);
    if elapsed.is_negative() {
        return limit;
    }
    limit.saturating_sub(elapsed.unsigned_abs())
}

/// Builds the record for a request that `error` stopped before it left (a failed login,
/// a certificate, a refused connection) at `finished`, so it is sent again later.
#[must_use]
pub fn not_sent(backup_file_path: &str, error: &SklmError, finished: Time) -> Submission {
    Submission {
        backup_file_path: backup_file_path.to_owned(),
        state: SubmissionState::NotSent,
        http_status: error.http_status(),
        message_id: error.message_id().map(str::to_owned),
        message: format!("not sent: {error}"),
        finished_time: Some(finished),
    }
}

/// The record for a `Sending` entry found without an answer: the request may have left.
#[must_use]
pub fn interrupted(record: &Submission) -> Submission {
    Submission {
        state: SubmissionState::Unknown,
        message: "the operator stopped between recording and answering the run-restore request; \
                  it may have reached the server and is not sent again"
            .to_owned(),
        ..record.clone()
    }
}

/// Sorts the request's outcome, known at `finished`: sent and accepted, rejected by the
/// server, failed before it left, or unknown.
#[must_use]
pub fn classify(
    backup_file_path: &str,
    outcome: Result<&ServerMessage, &SklmError>,
    finished: Time,
) -> Submission {
    let (state, message) = match outcome {
        Ok(answer) => (
            SubmissionState::Accepted,
            format!("{} {}", answer.code, answer.status)
                .trim()
                .to_owned(),
        ),
        Err(error) => (state_of_error(error), error.to_string()),
    };
    let error = outcome.err();
    Submission {
        backup_file_path: backup_file_path.to_owned(),
        state,
        http_status: error.and_then(SklmError::http_status),
        message_id: error.and_then(|e| e.message_id().map(str::to_owned)),
        message,
        finished_time: Some(finished),
    }
}

fn state_of_error(error: &SklmError) -> SubmissionState {
    match error {
        SklmError::InvalidUrl { .. }
        | SklmError::InvalidCa { .. }
        | SklmError::ClientSetup(_)
        | SklmError::Unreachable { .. }
        | SklmError::Tls { .. }
        | SklmError::LoginRejected { .. }
        | SklmError::SessionRejected { .. }
        | SklmError::Redirect { .. }
        // Request Timeout and Too Many Requests: the server turned the request away
        // before acting on it.
        | SklmError::Http {
            status: 408 | 429, ..
        } => SubmissionState::NotSent,
        SklmError::Http { status, .. } if (400..500).contains(status) => SubmissionState::Rejected,
        SklmError::Http { .. }
        | SklmError::Timeout { .. }
        | SklmError::ConnectionLost { .. }
        | SklmError::BodyTooLarge { .. }
        | SklmError::InvalidResponse { .. } => SubmissionState::Unknown,
    }
}

/// Whether the request must (still) be sent.
#[must_use]
pub fn needs_sending(record: Option<&Submission>) -> bool {
    record.is_none_or(|r| r.state == SubmissionState::NotSent)
}

/// Sets the `RestoreSubmitted` condition from the record, noting a `spec.restore` that
/// changed after the request was sent.
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    request: &RestoreRequest,
    record: &Submission,
    generation: Option<i64>,
    now: &Time,
) {
    let (status, reason) = match record.state {
        SubmissionState::Accepted => ("True", reason::SUBMISSION_ACCEPTED),
        SubmissionState::Rejected => ("False", reason::RESTORE_REJECTED),
        SubmissionState::NotSent => ("False", reason::SUBMISSION_NOT_SENT),
        SubmissionState::Sending => ("Unknown", reason::SUBMISSION_SENDING),
        SubmissionState::Unknown => ("Unknown", reason::SUBMISSION_UNKNOWN),
    };
    let mut message = format!("{}: {}", record.backup_file_path, record.message);
    if record.state != SubmissionState::NotSent
        && request.backup_file_path != record.backup_file_path
    {
        message = format!(
            "{message}; spec.restore.backupFilePath changed to {} after the request was sent, \
             and the change is ignored",
            request.backup_file_path
        );
    }
    let spec = ConditionSpec {
        type_: condition::RESTORE_SUBMITTED,
        status,
        reason,
        message,
    };
    let built = conditions::build_one(conditions, &spec, generation, now);
    match conditions
        .iter_mut()
        .find(|c| c.type_ == condition::RESTORE_SUBMITTED)
    {
        Some(existing) => *existing = built,
        None => conditions.push(built),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(path: &str) -> RestoreRequest {
        RestoreRequest {
            backup_file_path: path.to_owned(),
            password_secret_ref: None,
        }
    }

    fn at() -> Time {
        Time(Timestamp::from_second(1_800_000_000).expect("valid"))
    }

    fn http(status: u16, id: &str) -> SklmError {
        SklmError::Http {
            status,
            path: "/SKLM/rest/v1/ckms/restore".to_owned(),
            message_id: Some(id.to_owned()),
            text: format!("{id} refused"),
        }
    }

    #[test]
    fn classify_accepted_keeps_answer() {
        let answer = ServerMessage {
            code: "0".to_owned(),
            status: "CTGKM3290I started".to_owned(),
        };
        let record = classify("/b.jar", Ok(&answer), at());
        assert_eq!(record.state, SubmissionState::Accepted);
        assert_eq!(record.message, "0 CTGKM3290I started");
    }

    #[test]
    fn classify_client_error_is_rejected_with_id() {
        let record = classify("/b.jar", Err(&http(400, "CTGKM3294E")), at());
        assert_eq!(record.state, SubmissionState::Rejected);
        assert_eq!(record.http_status, Some(400));
        assert_eq!(record.message_id.as_deref(), Some("CTGKM3294E"));
    }

    #[test]
    fn classify_failures_before_sending_are_not_sent() {
        let refused = SklmError::Unreachable {
            origin: "https://127.0.0.1:1".to_owned(),
            detail: "refused".to_owned(),
        };
        assert_eq!(
            classify("/b.jar", Err(&refused), at()).state,
            SubmissionState::NotSent
        );
        let login = SklmError::LoginRejected {
            user: "u".to_owned(),
            status: 401,
            message_id: None,
        };
        assert_eq!(
            classify("/b.jar", Err(&login), at()).state,
            SubmissionState::NotSent
        );
    }

    #[test]
    fn classify_busy_answers_are_not_sent() {
        for status in [408, 429] {
            let record = classify("/b.jar", Err(&http(status, "X")), at());
            assert_eq!(record.state, SubmissionState::NotSent, "{status}");
        }
    }

    #[test]
    fn classify_failures_after_sending_are_unknown() {
        let timeout = SklmError::Timeout {
            origin: "https://127.0.0.1:1".to_owned(),
            seconds: 10,
        };
        assert_eq!(
            classify("/b.jar", Err(&timeout), at()).state,
            SubmissionState::Unknown
        );
        assert_eq!(
            classify("/b.jar", Err(&http(503, "X")), at()).state,
            SubmissionState::Unknown
        );
        let lost = SklmError::ConnectionLost {
            origin: "https://127.0.0.1:1".to_owned(),
            detail: "reset".to_owned(),
        };
        assert_eq!(
            classify("/b.jar", Err(&lost), at()).state,
            SubmissionState::Unknown
        );
    }

    #[test]
    fn needs_sending_only_without_a_sent_record() {
        assert!(needs_sending(None));
        let mut record = sending(&request("/b.jar"));
        assert!(!needs_sending(Some(&record)));
        record.state = SubmissionState::NotSent;
        assert!(needs_sending(Some(&record)));
        record.state = SubmissionState::Unknown;
        assert!(!needs_sending(Some(&record)));
    }

    #[test]
    fn login_server_error_is_not_sent() {
        let record = not_sent("/b.jar", &http(503, "CTGKM0001E"), at());
        assert_eq!(record.state, SubmissionState::NotSent);
        assert_eq!(record.http_status, Some(503));
        assert!(needs_sending(Some(&record)));
    }

    #[test]
    fn in_flight_covers_three_requests_and_the_write() {
        let submitted = Timestamp::from_second(1_800_000_000).expect("valid");
        let at = |s: i64| Timestamp::from_second(1_800_000_000 + s).expect("valid");
        assert_eq!(
            in_flight_left(&submitted, 10, at(0)),
            Duration::from_secs(35)
        );
        assert_eq!(
            in_flight_left(&submitted, 10, at(30)),
            Duration::from_secs(5)
        );
        assert_eq!(in_flight_left(&submitted, 10, at(35)), Duration::ZERO);
        assert_eq!(in_flight_left(&submitted, 10, at(3600)), Duration::ZERO);
        // A clock behind the writer's: the whole limit is left.
        assert_eq!(
            in_flight_left(&submitted, 10, at(-5)),
            Duration::from_secs(35)
        );
    }

    #[test]
    fn interrupted_record_is_unknown() {
        let record = interrupted(&sending(&request("/b.jar")));
        assert_eq!(record.state, SubmissionState::Unknown);
        assert_eq!(record.backup_file_path, "/b.jar");
    }

    #[test]
    fn condition_notes_ignored_change() {
        let now = Time(k8s_openapi::jiff::Timestamp::from_second(1_800_000_000).expect("valid"));
        let mut record = sending(&request("/a.jar"));
        record.state = SubmissionState::Accepted;
        let mut conditions = Vec::new();
        set_condition(&mut conditions, &request("/b.jar"), &record, Some(2), &now);
        assert_eq!(conditions.len(), 1);
        assert_eq!(conditions[0].status, "True");
        assert!(
            conditions[0].message.contains("change is ignored"),
            "{}",
            conditions[0].message
        );
        set_condition(&mut conditions, &request("/a.jar"), &record, Some(2), &now);
        assert_eq!(conditions.len(), 1);
        assert!(!conditions[0].message.contains("ignored"));
    }
}

//! Response bodies of the simulated REST API, built from plain values: the restore status
//! bodies in every switchable shape, the `{"code", "message"}` error body, and the HTML
//! pages a Java servlet container sends when the application does not respond in JSON.
//!
//! The message ids come from IBM's "Error codes and messages in REST services" page and the
//! restore service pages of GKLM 4.2, except where a `NOTE:` marks a placeholder.

use serde_json::{Value, json};

use crate::model::{IsRunningShape, Phase, RestoreResult, ResultShape};

/// Authorization header missing or malformed (HTTP 400).
pub const INVALID_REQUEST: &str = "CTGKM6002E";
/// Wrong user id or password at login (HTTP 401).
pub const LOGIN_FAILED: &str = "CTGKM6003E";
/// User authentication id unknown, logged out or expired (HTTP 401).
pub const INVALID_AUTH_ID: &str = "CTGKM6004E";
/// Invalid parameter in a request body (HTTP 400).
pub const INVALID_PARAMETER: &str = "CTGKM0630E";
/// Status text of "is running" when no restore runs, copied from IBM's documented example.
pub const NOT_RUNNING_STATUS: &str = "CTGKM3293I Restore process is not running.";

// NOTE: IBM's public documentation shows only CTGKM3293I for the restore services. The ids
// below are placeholders invented for the simulator; clients must not depend on them.
/// Placeholder id of the "is running" message while a restore runs.
pub const RUNNING_ID: &str = "CTGKM3292I";
/// Placeholder id of the `POST /ckms/restore` success body.
pub const RESTORE_STARTED_ID: &str = "CTGKM3290I";
/// Placeholder id for a restore request made while another restore or backup runs.
pub const RESTORE_BUSY_ID: &str = "CTGKM3294E";
/// Placeholder id for a restore request naming a backup file the server does not have.
pub const BACKUP_NOT_FOUND_ID: &str = "CTGKM3295E";
/// Placeholder id for a restore request with a wrong backup password.
pub const BACKUP_PASSWORD_ID: &str = "CTGKM3296E";
/// Placeholder ids of the restore result in the `code_status` shape.
pub const RESULT_SUCCESS_ID: &str = "CTGKM3297I";
pub const RESULT_FAILURE_ID: &str = "CTGKM3298E";
pub const RESULT_UNKNOWN_ID: &str = "CTGKM3299I";
/// Placeholder id of the JSON body of an injected HTTP error fault.
pub const SIMULATED_ERROR_ID: &str = "CTGKM9999E";

/// Builds the error body `{"code": "<id>", "message": "<id> <text>"}`.
#[must_use]
pub fn error_body(id: &str, text: &str) -> Value {
    json!({ "code": id, "message": format!("{id} {text}") })
}

/// Builds the `GET /ckms/restore/isrunning` body for `phase` in `shape`.
#[must_use]
pub fn is_running_body(phase: Phase, shape: IsRunningShape, extra_keys: bool) -> Value {
    let number = phase.number();
    let body = match shape {
        IsRunningShape::Message if phase == Phase::Idle => {
            json!({ "code": "1", "status": NOT_RUNNING_STATUS })
        }
        IsRunningShape::Message => json!({
            "code": "0",
            "status": format!("{RUNNING_ID} Restore process is running. Phase: {phase}."),
        }),
        IsRunningShape::PhaseName => json!({ "code": number.to_string(), "status": phase.name() }),
        IsRunningShape::PhaseNumber => {
            json!({ "code": number.to_string(), "status": number.to_string() })
        }
        IsRunningShape::PhaseNumberJson => json!({ "code": number, "status": number }),
    };
    with_extra_keys(body, extra_keys)
}

/// Builds the `GET /ckms/restore/result` body for `result` in `shape`.
#[must_use]
pub fn result_body(result: RestoreResult, shape: ResultShape, extra_keys: bool) -> Value {
    let code = result.code();
    let body = match shape {
        ResultShape::CodeResult => json!({ "code": code.to_string(), "result": code.to_string() }),
        ResultShape::ResultNumber => json!({ "result": code }),
        ResultShape::CodeStatus => {
            let status = match result {
                RestoreResult::Unknown => {
                    format!("{RESULT_UNKNOWN_ID} No restore ran since the server started.")
                }
                RestoreResult::Success => {
                    format!("{RESULT_SUCCESS_ID} The restore completed successfully.")
                }
                RestoreResult::Failure => format!("{RESULT_FAILURE_ID} The restore failed."),
            };
            json!({ "code": code.to_string(), "status": status })
        }
    };
    with_extra_keys(body, extra_keys)
}

/// Builds the restore progress body `{"code": "<n>", "status": "<PHASE_NAME>"}`.
#[must_use]
pub fn progress_body(phase: Phase, extra_keys: bool) -> Value {
    let body = json!({ "code": phase.number().to_string(), "status": phase.name() });
    with_extra_keys(body, extra_keys)
}

/// Builds the `POST /ckms/restore` success body.
// NOTE: IBM's public documentation does not show this body; the id and text are placeholders.
#[must_use]
pub fn restore_started_body() -> Value {
    json!({ "code": "0", "status": format!("{RESTORE_STARTED_ID} Restore process started.") })
}

/// Builds a 200 body of exactly `bytes` bytes of valid JSON (or the smallest such body when
/// `bytes` is smaller), padding a `status` string.
#[must_use]
pub fn oversized_body(bytes: usize) -> String {
    let skeleton_len = r#"{"code":"0","status":""}"#.len();
    let padding = "x".repeat(bytes.saturating_sub(skeleton_len));
    format!(r#"{{"code":"0","status":"{padding}"}}"#)
}

/// Builds an HTML error page in the style of a Java servlet container.
#[must_use]
pub fn html_error_page(status: u16, reason: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html><head><title>Error {status}</title></head>\n\
         <body><h1>Error {status}: {reason}</h1>\n\
         <p>The web container could not complete the request.</p></body></html>\n"
    )
}

fn with_extra_keys(mut body: Value, extra_keys: bool) -> Value {
    if !extra_keys {
        return body;
    }
    if let Value::Object(map) = &mut body {
        map.insert("messageId".to_owned(), json!("CTGKM0000I"));
        map.insert("details".to_owned(), json!({ "node": "sim" }));
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_running_message_idle_matches_docs() {
        let body = is_running_body(Phase::Idle, IsRunningShape::Message, false);
        let expected = json!({"code": "1", "status": "CTGKM3293I Restore process is not running."});
        assert_eq!(body, expected);
    }

    #[test]
    fn is_running_message_names_phase() {
        let body = is_running_body(Phase::RestoreKeystores, IsRunningShape::Message, false);
        let expected = json!({
            "code": "0",
            "status": "CTGKM3292I Restore process is running. Phase: RESTORE_KEYSTORES."
        });
        assert_eq!(body, expected);
    }

    #[test]
    fn is_running_phase_shapes() {
        let phase = Phase::RestoreDatabases;
        let by_name = is_running_body(phase, IsRunningShape::PhaseName, false);
        assert_eq!(by_name, json!({"code": "5", "status": "RESTORE_DATABASES"}));

        let by_number = is_running_body(phase, IsRunningShape::PhaseNumber, false);
        assert_eq!(by_number, json!({"code": "5", "status": "5"}));

        let by_json_number = is_running_body(phase, IsRunningShape::PhaseNumberJson, false);
        assert_eq!(by_json_number, json!({"code": 5, "status": 5}));
    }

    #[test]
    fn extra_keys_added_to_every_shape() {
        let shapes = [
            IsRunningShape::Message,
            IsRunningShape::PhaseName,
            IsRunningShape::PhaseNumber,
            IsRunningShape::PhaseNumberJson,
        ];
        for shape in shapes {
            let body = is_running_body(Phase::Cleanup, shape, true);
            assert!(body.get("messageId").is_some(), "{shape:?} lacks messageId");
            assert_eq!(body["details"], json!({"node": "sim"}), "{shape:?}");
            assert!(body.get("status").is_some(), "{shape:?} lost status");
        }
    }

    #[test]
    fn result_shapes() {
        let default = result_body(RestoreResult::Unknown, ResultShape::CodeResult, false);
        assert_eq!(default, json!({"code": "-1", "result": "-1"}));

        let number = result_body(RestoreResult::Failure, ResultShape::ResultNumber, false);
        assert_eq!(number, json!({"result": 1}));

        let status = result_body(RestoreResult::Success, ResultShape::CodeStatus, false);
        assert_eq!(status["code"], json!("0"));
        let text = status["status"].as_str().expect("status is a string");
        assert!(text.starts_with("CTGKM3297I "), "{text}");
    }

    #[test]
    fn progress_uses_phase_name() {
        let body = progress_body(Phase::CreateTempDir, false);
        assert_eq!(body, json!({"code": "2", "status": "CREATE_TEMP_DIR"}));
    }

    #[test]
    fn error_body_repeats_id_in_message() {
        let body = error_body(INVALID_AUTH_ID, "Invalid user authentication ID.");
        assert_eq!(body["code"], json!("CTGKM6004E"));
        assert_eq!(
            body["message"],
            json!("CTGKM6004E Invalid user authentication ID.")
        );
    }

    #[test]
    fn oversized_body_has_exact_length() {
        for size in [1, 24, 25, 4096, 100_000] {
            let body = oversized_body(size);
            assert_eq!(body.len(), size.max(24), "size {size}");
            let parsed: Value = serde_json::from_str(&body).expect("valid JSON");
            assert_eq!(parsed["code"], json!("0"));
        }
    }
}

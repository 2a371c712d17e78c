//! Parsing of the key server's response bodies into typed values.
//!
//! Pure functions over bytes: no I/O. The "is running" service is documented with a phase
//! table but its documented example answers with a message id instead, so every shape the
//! server may send is read here: a `CTGKM....I` message, a phase name, or a phase number
//! as a string or a JSON number, with unknown extra keys ignored.

use serde_json::{Map, Value};

use crate::crd::{RestorePhase, ServerMessage};

/// Message id of "Restore process is not running." (the documented example).
pub const NOT_RUNNING_ID: &str = "CTGKM3293I";

/// Longest `status` text kept for people, in bytes.
pub const MAX_STATUS_TEXT: usize = 512;

/// Longest `code` text kept, in bytes.
pub const MAX_CODE_TEXT: usize = 64;

/// One answer of the "is running" service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestoreObservation {
    /// The step read from the answer; `Unknown` when the answer names none.
    pub step: RestorePhase,
    /// The raw `code` and `status`, cut to bounded length.
    pub message: ServerMessage,
}

/// The restore result service's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RestoreResult {
    /// `-1`: no restore ran since the server started (also right after the post-restore
    /// restart).
    Unknown,
    /// `0`.
    Succeeded,
    /// `1`.
    Failed,
}

/// Why a body could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("body is not a JSON object")]
    NotAnObject,
    #[error("no {0:?} field")]
    MissingField(&'static str),
    #[error("field {field:?} has an unexpected value {value:?}")]
    UnexpectedValue { field: &'static str, value: String },
}

/// Reads an "is running" body.
pub fn parse_is_running(body: &[u8]) -> Result<RestoreObservation, ParseError> {
    let object = parse_object(body)?;
    let code = field_text(&object, "code").unwrap_or_default();
    let status = field_text(&object, "status").unwrap_or_default();
    if code.is_empty() && status.is_empty() {
        return Err(ParseError::MissingField("status"));
    }
    Ok(RestoreObservation {
        step: read_step(&code, &status),
        message: ServerMessage {
            code: truncate(&code, MAX_CODE_TEXT),
            status: truncate(&status, MAX_STATUS_TEXT),
        },
    })
}

/// Decides the step from the message id and a phase name first, and from a bare number
/// only when the text carries neither. Text that matches nothing gives `Unknown`.
#[must_use]
pub fn read_step(code: &str, status: &str) -> RestorePhase {
    let status = status.trim();
    if let Some(id) = message_id(status) {
        if id == NOT_RUNNING_ID {
            return RestorePhase::Idle;
        }
        return phase_name_in_text(status).unwrap_or(RestorePhase::Unknown);
    }
    if let Some(phase) = phase_from_bare_value(status) {
        return phase;
    }
    if !status.is_empty() {
        return phase_name_in_text(status).unwrap_or(RestorePhase::Unknown);
    }
    phase_from_bare_value(code.trim()).unwrap_or(RestorePhase::Unknown)
}

/// Reads a restore result body: a `result` field, or else `code`, holding -1, 0 or 1 as a
/// number or a string.
pub fn parse_result(body: &[u8]) -> Result<RestoreResult, ParseError> {
    let object = parse_object(body)?;
    let (field, text) = match field_text(&object, "result") {
        Some(text) => ("result", text),
        None => (
            "code",
            field_text(&object, "code").ok_or(ParseError::MissingField("result"))?,
        ),
    };
    match text.trim() {
        "-1" => Ok(RestoreResult::Unknown),
        "0" => Ok(RestoreResult::Succeeded),
        "1" => Ok(RestoreResult::Failed),
        other => Err(ParseError::UnexpectedValue {
            field,
            value: truncate(other, MAX_CODE_TEXT),
        }),
    }
}

/// Reads the session id from a login body (`UserAuthId`, any letter case).
pub fn parse_login(body: &[u8]) -> Result<String, ParseError> {
    let object = parse_object(body)?;
    match get_ignore_case(&object, "userauthid") {
        Some(Value::String(id)) if !id.trim().is_empty() => Ok(id.trim().to_owned()),
        Some(_) => Err(ParseError::UnexpectedValue {
            field: "UserAuthId",
            value: "(not a non-empty string)".to_owned(),
        }),
        None => Err(ParseError::MissingField("UserAuthId")),
    }
}

/// The `code` and `status` (or `message`) of a body, when it is a JSON object; otherwise
/// the start of the body as text. For answers whose shape is not documented.
#[must_use]
pub fn parse_lenient_message(body: &[u8]) -> ServerMessage {
    let Ok(object) = parse_object(body) else {
        return ServerMessage {
            code: String::new(),
            status: truncate(String::from_utf8_lossy(body).trim(), MAX_STATUS_TEXT),
        };
    };
    let status = field_text(&object, "status")
        .or_else(|| field_text(&object, "message"))
        .unwrap_or_default();
    ServerMessage {
        code: truncate(
            &field_text(&object, "code").unwrap_or_default(),
            MAX_CODE_TEXT,
        ),
        status: truncate(&status, MAX_STATUS_TEXT),
    }
}

/// The message id and text of an error body `{"code": "<id>", "message": "<id> <text>"}`.
/// Bodies that are not JSON (servlet error pages) give neither.
#[must_use]
pub fn parse_error_body(body: &[u8]) -> (Option<String>, String) {
    let Ok(object) = parse_object(body) else {
        return (None, String::new());
    };
    let message = field_text(&object, "message").unwrap_or_default();
    let id = field_text(&object, "code")
        .filter(|code| is_message_id(code))
        .or_else(|| message_id(&message).map(str::to_owned));
    (id, truncate(message.trim(), MAX_STATUS_TEXT))
}

fn parse_object(body: &[u8]) -> Result<Map<String, Value>, ParseError> {
    match serde_json::from_slice(body) {
        Ok(Value::Object(object)) => Ok(object),
        _ => Err(ParseError::NotAnObject),
    }
}

fn get_ignore_case<'a>(object: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    object
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(key))
        .map(|(_, value)| value)
}

/// A field as text: strings as they are, numbers in decimal; absent, null and other
/// JSON types give `None`.
fn field_text(object: &Map<String, Value>, key: &str) -> Option<String> {
    match get_ignore_case(object, key)? {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        _ => None,
    }
}

/// The leading message id of a text, such as `CTGKM3293I`.
fn message_id(text: &str) -> Option<&str> {
    let first = text.split_whitespace().next()?;
    let first = first.trim_end_matches([':', '.', ',']);
    is_message_id(first).then_some(first)
}

fn is_message_id(token: &str) -> bool {
    let Some(rest) = token.strip_prefix("CTGKM") else {
        return false;
    };
    let Some((severity, digits)) = rest.as_bytes().split_last() else {
        return false;
    };
    matches!(severity, b'I' | b'W' | b'E')
        && (3..=5).contains(&digits.len())
        && digits.iter().all(u8::is_ascii_digit)
}

/// A phase name or number making up the whole value.
fn phase_from_bare_value(value: &str) -> Option<RestorePhase> {
    if value.is_empty() {
        return None;
    }
    if let Some(phase) = RestorePhase::from_server_name(value) {
        return Some(phase);
    }
    let number: i64 = value.parse().ok()?;
    Some(RestorePhase::from_number(number).unwrap_or(RestorePhase::Unknown))
}

/// The one phase name written in upper case inside a text; `None` when there is none or
/// when two different names appear.
fn phase_name_in_text(text: &str) -> Option<RestorePhase> {
    let mut found = None;
    for token in text.split(|c: char| !(c.is_ascii_uppercase() || c == '_')) {
        let Some(phase) = RestorePhase::TABLE
            .iter()
            .find(|(_, name)| *name == token)
            .map(|(phase, _)| *phase)
        else {
            continue;
        };
        if found.is_some_and(|seen| seen != phase) {
            return None;
        }
        found = Some(phase);
    }
    found
}

/// Cuts a text to at most `max` bytes on a character boundary.
#[must_use]
pub fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(body: &str) -> RestorePhase {
        parse_is_running(body.as_bytes()).expect("body parses").step
    }

    #[test]
    fn is_running_documented_example_reads_not_running() {
        let body = r#"{"code": "1", "status": "CTGKM3293I Restore process is not running."}"#;
        let observation = parse_is_running(body.as_bytes()).expect("parses");
        assert_eq!(observation.step, RestorePhase::Idle);
        assert_eq!(observation.message.code, "1");
        assert_eq!(
            observation.message.status,
            "CTGKM3293I Restore process is not running."
        );
    }

    #[test]
    fn is_running_message_naming_phase() {
        let body = r#"{"code":"0","status":"CTGKM3292I Restore process is running. Phase: RESTORE_KEYSTORES."}"#;
        assert_eq!(step(body), RestorePhase::RestoreKeystores);
    }

    #[test]
    fn is_running_message_with_unknown_id_and_no_phase() {
        let body = r#"{"code":"0","status":"CTGKM3299I Something else happened."}"#;
        assert_eq!(step(body), RestorePhase::Unknown);
    }

    #[test]
    fn is_running_message_id_wins_over_code_number() {
        // "code" 5 would be RESTORE_DATABASES, but the text says not running.
        let body = r#"{"code":"5","status":"CTGKM3293I Restore process is not running."}"#;
        assert_eq!(step(body), RestorePhase::Idle);
    }

    #[test]
    fn is_running_phase_names() {
        for (phase, name) in RestorePhase::TABLE {
            let body = format!(r#"{{"code":"x","status":"{name}"}}"#);
            assert_eq!(step(&body), phase, "{name}");
            let lower = format!(r#"{{"status":"{}"}}"#, name.to_lowercase());
            assert_eq!(step(&lower), phase, "lower-case {name}");
        }
    }

    #[test]
    fn is_running_phase_numbers_as_strings() {
        for (number, (phase, _)) in RestorePhase::TABLE.iter().enumerate() {
            let body = format!(r#"{{"code":"{number}","status":"{number}"}}"#);
            assert_eq!(step(&body), *phase, "{number}");
        }
    }

    #[test]
    fn is_running_phase_numbers_as_json_numbers() {
        for (number, (phase, _)) in RestorePhase::TABLE.iter().enumerate() {
            let body = format!(r#"{{"code":{number},"status":{number}}}"#);
            assert_eq!(step(&body), *phase, "{number}");
        }
    }

    #[test]
    fn is_running_number_only_in_code() {
        assert_eq!(step(r#"{"code":"4"}"#), RestorePhase::RestoreKeystores);
        assert_eq!(
            step(r#"{"code":4,"status":""}"#),
            RestorePhase::RestoreKeystores
        );
    }

    #[test]
    fn is_running_out_of_table_number_is_unknown() {
        assert_eq!(step(r#"{"code":"9","status":"9"}"#), RestorePhase::Unknown);
        assert_eq!(
            step(r#"{"code":"-1","status":"-1"}"#),
            RestorePhase::Unknown
        );
    }

    #[test]
    fn is_running_extra_keys_are_ignored() {
        let body = r#"{"code":"5","status":"RESTORE_DATABASES","messageId":"X","details":{"a":1}}"#;
        assert_eq!(step(body), RestorePhase::RestoreDatabases);
    }

    #[test]
    fn is_running_keys_in_any_case() {
        assert_eq!(
            step(r#"{"Code":"3","Status":"3"}"#),
            RestorePhase::RestoreConfigFiles
        );
    }

    #[test]
    fn is_running_free_text_matching_nothing_is_unknown() {
        assert_eq!(
            step(r#"{"code":"0","status":"busy"}"#),
            RestorePhase::Unknown
        );
        assert_eq!(
            step(r#"{"code":"0","status":"restore is running"}"#),
            RestorePhase::Unknown
        );
    }

    #[test]
    fn is_running_two_phase_names_is_unknown() {
        let body = r#"{"status":"CTGKM3292I moving from CLEANUP to COMPLETED"}"#;
        assert_eq!(step(body), RestorePhase::Unknown);
    }

    #[test]
    fn is_running_rejects_bodies_without_fields() {
        assert_eq!(
            parse_is_running(b"{}"),
            Err(ParseError::MissingField("status"))
        );
        assert_eq!(parse_is_running(b"<html>"), Err(ParseError::NotAnObject));
        assert_eq!(parse_is_running(b"[1]"), Err(ParseError::NotAnObject));
        assert_eq!(
            parse_is_running(br#"{"code":null,"status":null}"#),
            Err(ParseError::MissingField("status"))
        );
    }

    #[test]
    fn is_running_bounds_kept_text() {
        let long = "A".repeat(5000);
        let body = format!(r#"{{"code":"{long}","status":"{long}"}}"#);
        let observation = parse_is_running(body.as_bytes()).expect("parses");
        assert_eq!(observation.message.status.len(), MAX_STATUS_TEXT);
        assert_eq!(observation.message.code.len(), MAX_CODE_TEXT);
    }

    #[test]
    fn result_shapes() {
        assert_eq!(
            parse_result(br#"{"result": 0}"#),
            Ok(RestoreResult::Succeeded)
        );
        assert_eq!(
            parse_result(br#"{"code":"1","result":"1"}"#),
            Ok(RestoreResult::Failed)
        );
        assert_eq!(
            parse_result(br#"{"code":"-1","status":"x"}"#),
            Ok(RestoreResult::Unknown)
        );
        assert_eq!(
            parse_result(br#"{"Result":"-1"}"#),
            Ok(RestoreResult::Unknown)
        );
    }

    #[test]
    fn result_rejects_other_values() {
        assert!(matches!(
            parse_result(br#"{"result":"7"}"#),
            Err(ParseError::UnexpectedValue {
                field: "result",
                ..
            })
        ));
        assert_eq!(
            parse_result(br#"{"x":1}"#),
            Err(ParseError::MissingField("result"))
        );
    }

    #[test]
    fn login_accepts_both_spellings() {
        assert_eq!(
            parse_login(br#"{"UserAuthId":"abc"}"#),
            Ok("abc".to_owned())
        );
        assert_eq!(
            parse_login(br#"{"userAuthId":"def"}"#),
            Ok("def".to_owned())
        );
        assert_eq!(parse_login(br#"{"USERAUTHID":"g"}"#), Ok("g".to_owned()));
    }

    #[test]
    fn login_rejects_missing_or_empty_id() {
        assert_eq!(
            parse_login(br#"{"x":"abc"}"#),
            Err(ParseError::MissingField("UserAuthId"))
        );
        assert!(parse_login(br#"{"UserAuthId":""}"#).is_err());
        assert!(parse_login(br#"{"UserAuthId":5}"#).is_err());
    }

    #[test]
    fn error_body_message_id() {
        let body =
            br#"{"code":"CTGKM6004E","message":"CTGKM6004E Invalid user authentication ID."}"#;
        let (id, text) = parse_error_body(body);
        assert_eq!(id.as_deref(), Some("CTGKM6004E"));
        assert_eq!(text, "CTGKM6004E Invalid user authentication ID.");
        let (id, _) = parse_error_body(br#"{"message":"CTGKM6002E bad format"}"#);
        assert_eq!(id.as_deref(), Some("CTGKM6002E"));
        assert_eq!(
            parse_error_body(b"<html>Error 500</html>"),
            (None, String::new())
        );
    }

    #[test]
    fn lenient_message_reads_json_and_text() {
        let message = parse_lenient_message(br#"{"code":"0","status":"CTGKM3290I started"}"#);
        assert_eq!(message.code, "0");
        assert_eq!(message.status, "CTGKM3290I started");
        let message = parse_lenient_message(br#"{"message":"done"}"#);
        assert_eq!(message.status, "done");
        let message = parse_lenient_message(b" accepted ");
        assert_eq!(message.status, "accepted");
    }

    #[test]
    fn truncate_keeps_char_boundaries() {
        assert_eq!(truncate("ééé", 3), "é");
        assert_eq!(truncate("abc", 10), "abc");
    }
}

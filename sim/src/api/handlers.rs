//! Handlers of the simulated REST services (login, restore status, result, progress, run
//! restore, logout) and the `Authorized` extractor that checks the `SKLMAuth` header.

use std::time::Instant;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::error::{ApiError, html_response};
use crate::bodies::{self, BACKUP_NOT_FOUND_ID, BACKUP_PASSWORD_ID, LOGIN_FAILED, RESTORE_BUSY_ID};
use crate::control_types::RunTrigger;
use crate::request_log::RequestNotes;
use crate::sessions::{AuthFailure, SessionInfo, parse_authorization};
use crate::sim::Sim;
use crate::state::RunRejection;

/// A request whose `Authorization: SKLMAuth userAuthId=<id>` header names a valid session.
pub struct Authorized {
    pub session: SessionInfo,
    /// The id from the header. Kept in memory only: never logged or returned.
    pub auth_id: String,
}

impl FromRequestParts<Sim> for Authorized {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, sim: &Sim) -> Result<Self, Self::Rejection> {
        let auth_id = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(parse_authorization)
            .ok_or(ApiError::from_auth(AuthFailure::MissingOrMalformed))?;
        let session = sim
            .lock()
            .sessions
            .check_id(auth_id, Instant::now())
            .map_err(ApiError::from_auth)?;
        Ok(Authorized {
            session,
            auth_id: auth_id.to_owned(),
        })
    }
}

/// `POST /ckms/login`: checks `userid` and `password` and returns a new auth id.
pub async fn login(State(sim): State<Sim>, body: Bytes) -> Response {
    let fields = match parse_object(&body) {
        Ok(fields) => fields,
        Err(error) => return error.into_response(),
    };
    let userid = fields.get("userid").and_then(Value::as_str);
    let mut notes = RequestNotes {
        userid: userid.map(str::to_owned),
        ..RequestNotes::default()
    };
    // NOTE: IBM documents no response for a JSON body without `userid` or `password`, so
    // 400 CTGKM0630E (invalid parameter) is a guess.
    let (Some(userid), Some(password)) = (userid, fields.get("password").and_then(Value::as_str))
    else {
        return with_notes(ApiError::invalid_parameter("userid or password"), notes);
    };

    let mut state = sim.lock();
    let Some((auth_id, number)) = state.login(userid, password, Instant::now()) else {
        drop(state);
        tracing::info!(userid, "login rejected: wrong user id or password");
        let text = "Login failed: the user ID or password is not valid.";
        let error = ApiError::message(StatusCode::UNAUTHORIZED, LOGIN_FAILED, text);
        return with_notes(error, notes);
    };
    let key = state.login_key.clone();
    drop(state);

    tracing::info!(userid, session = number, "login accepted");
    notes.issued_session = Some(number);
    let mut body = Map::new();
    body.insert(key, Value::String(auth_id));
    with_notes(Json(Value::Object(body)), notes)
}

/// `GET /ckms/restore/isrunning`: the current phase in the configured body shape.
pub async fn is_running(State(sim): State<Sim>, _authorized: Authorized) -> Json<Value> {
    let state = sim.lock();
    Json(bodies::is_running_body(
        state.phase,
        state.is_running_shape,
        state.extra_keys,
    ))
}

/// `GET /ckms/restore/result`: the result of the last restore since the simulated start.
pub async fn result(State(sim): State<Sim>, _authorized: Authorized) -> Json<Value> {
    let state = sim.lock();
    Json(bodies::result_body(
        state.result,
        state.result_shape,
        state.extra_keys,
    ))
}

/// `GET /ckms/backupRestore/progress` and `GET /ckms/restore/progress`.
pub async fn progress(State(sim): State<Sim>, _authorized: Authorized) -> Json<Value> {
    let state = sim.lock();
    Json(bodies::progress_body(state.phase, state.extra_keys))
}

/// `POST /ckms/restore`: starts a restore run of a known backup file.
pub async fn run_restore(State(sim): State<Sim>, authorized: Authorized, body: Bytes) -> Response {
    let fields = match parse_object(&body) {
        Ok(fields) => fields,
        Err(error) => return error.into_response(),
    };
    let path = fields.get("backupFilePath").and_then(Value::as_str);
    let password = fields.get("password").and_then(Value::as_str);
    let notes = RequestNotes {
        backup_file_path: path.map(str::to_owned),
        backup_password_present: Some(fields.contains_key("password")),
        ..RequestNotes::default()
    };
    let Some(path) = path else {
        return with_notes(ApiError::invalid_parameter("backupFilePath"), notes);
    };

    let checked = sim.lock().check_backup(path, password);
    let started = checked.and_then(|outcome| {
        let mut settings = sim.lock().run_defaults;
        settings.outcome = outcome;
        sim.start_run(RunTrigger::Api, settings, Some(path.to_owned()))
    });
    match started {
        Ok(run) => {
            tracing::info!(
                run_id = run.id,
                session = authorized.session.number,
                backup_file_path = path,
                "restore requested through the REST API"
            );
            with_notes(Json(bodies::restore_started_body()), notes)
        }
        Err(rejection) => {
            tracing::info!(
                backup_file_path = path,
                ?rejection,
                "restore request rejected"
            );
            with_notes(restore_rejection_error(rejection, path), notes)
        }
    }
}

// NOTE: IBM documents neither the status codes nor the message ids of these rejections; the
// ids are placeholders (see `bodies`).
fn restore_rejection_error(rejection: RunRejection, path: &str) -> ApiError {
    match rejection {
        RunRejection::Busy => ApiError::message(
            StatusCode::BAD_REQUEST,
            RESTORE_BUSY_ID,
            "Another backup or restore task is running. Try again when it has ended.",
        ),
        RunRejection::BackupNotFound => ApiError::message(
            StatusCode::NOT_FOUND,
            BACKUP_NOT_FOUND_ID,
            &format!("The backup file {path} was not found."),
        ),
        RunRejection::WrongBackupPassword => ApiError::message(
            StatusCode::BAD_REQUEST,
            BACKUP_PASSWORD_ID,
            "The backup password is missing or not valid.",
        ),
    }
}

/// `DELETE /ckms/logout`: ends the session named by `userAuthId` in the body, or the one
/// in the header when the body is empty.
pub async fn logout(State(sim): State<Sim>, authorized: Authorized, body: Bytes) -> Response {
    let target = if body.iter().all(u8::is_ascii_whitespace) {
        authorized.auth_id
    } else {
        let fields = match parse_object(&body) {
            Ok(fields) => fields,
            Err(error) => return error.into_response(),
        };
        let id = fields
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case("userAuthId"))
            .and_then(|(_, value)| value.as_str());
        let Some(id) = id else {
            return ApiError::invalid_parameter("userAuthId").into_response();
        };
        id.to_owned()
    };

    let ended = sim.lock().sessions.logout(&target);
    let Some(session) = ended else {
        return ApiError::from_auth(AuthFailure::UnknownId).into_response();
    };
    tracing::info!(session = session.number, userid = session.userid, "logout");
    Json(json!({ "userId": session.userid, "logout": "true" })).into_response()
}

/// Fallback for paths the server does not serve: a 404 HTML page.
pub async fn not_found() -> Response {
    html_response(
        StatusCode::NOT_FOUND,
        "the requested resource was not found",
    )
}

/// Parses a request body that must be a JSON object.
fn parse_object(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(fields)) => Ok(fields),
        _ => Err(ApiError::unreadable_body()),
    }
}

fn with_notes(response: impl IntoResponse, notes: RequestNotes) -> Response {
    let mut response = response.into_response();
    response.extensions_mut().insert(notes);
    response
}

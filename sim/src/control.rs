//! Plain-HTTP control endpoint, JSON in and out: tests and the demo read the simulator's
//! state and request log, change phase, result, shapes, users, sessions and backups, start
//! restore runs, simulate restarts, and switch faults on and off.
//!
//! | route | body | response |
//! | --- | --- | --- |
//! | `GET /state` | | `StateView` |
//! | `PUT /phase` | `{"phase": 5}` or `{"phase": "RESTORE_DATABASES"}` | `StateView` |
//! | `PUT /result` | `{"result": -1 \| 0 \| 1}` | `StateView` |
//! | `PUT /shape` | `ShapeUpdate` (fields optional) | `StateView` |
//! | `PUT /login-key` | `{"key": "userAuthId"}` | `StateView` |
//! | `PUT /users/{name}`, `DELETE /users/{name}` | `{"password": "..."}` | `StateView` |
//! | `PUT /sessions` | `SessionSettingsUpdate` (fields optional) | `StateView` |
//! | `POST /sessions/revoke` | | `{"revoked": n}` |
//! | `POST /restart` | `RestartRequest` | `StateView`, once the port is closed |
//! | `POST /run` | `RunRequest` (fields optional, body optional) | 202 `RunStatus` |
//! | `PUT /run-defaults` | `RunRequest` (fields optional) | `StateView` |
//! | `GET`, `PUT`, `POST`, `DELETE /faults` | `PUT`: `[Fault]`, `POST`: `Fault` | `[Fault]` for `GET`, else `StateView` |
//! | `PUT /backups` | `[Backup]` | `StateView` |
//! | `GET /requests`, `DELETE /requests` | | `[RequestRecord]`, `{"cleared": n}` |
//!
//! Errors are `{"error": "<text>"}` with 400 for invalid input, 404 for an unknown user,
//! 409 when a run is already in progress, and 500 when a restart could not be carried out.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};

use crate::control_types::{
    Backup, ClearedResponse, ControlErrorBody, LoginKeyUpdate, PhaseUpdate, RestartRequest,
    ResultUpdate, RevokeResponse, RunRequest, RunStatus, RunTrigger, SessionSettingsUpdate,
    ShapeUpdate, StateView, UserUpdate,
};
use crate::faults::Fault;
use crate::request_log::RequestRecord;
use crate::sim::Sim;
use crate::state::RunRejection;

/// Builds the control router for `sim`.
pub fn router(sim: &Sim) -> Router {
    Router::new()
        .route("/state", get(state))
        .route("/phase", put(set_phase))
        .route("/result", put(set_result))
        .route("/shape", put(set_shape))
        .route("/login-key", put(set_login_key))
        .route("/users/{name}", put(set_user).delete(remove_user))
        .route("/sessions", put(set_sessions))
        .route("/sessions/revoke", post(revoke_sessions))
        .route("/restart", post(restart))
        .route("/run", post(run))
        .route("/run-defaults", put(set_run_defaults))
        .route(
            "/faults",
            get(faults)
                .put(replace_faults)
                .post(add_fault)
                .delete(clear_faults),
        )
        .route("/backups", put(set_backups))
        .route("/requests", get(requests).delete(clear_requests))
        .fallback(unknown_route)
        .with_state(sim.clone())
}

/// JSON body extractor whose rejection is a JSON error body.
#[derive(FromRequest)]
#[from_request(via(Json), rejection(ControlError))]
struct Body<T>(T);

/// Error response of the control endpoint.
struct ControlError {
    status: StatusCode,
    message: String,
}

impl ControlError {
    fn bad_request(message: impl Into<String>) -> ControlError {
        ControlError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }
}

impl From<JsonRejection> for ControlError {
    fn from(rejection: JsonRejection) -> Self {
        ControlError::bad_request(format!("invalid JSON body: {}", rejection.body_text()))
    }
}

impl IntoResponse for ControlError {
    fn into_response(self) -> Response {
        let body = ControlErrorBody {
            error: self.message,
        };
        (self.status, Json(body)).into_response()
    }
}

type Reply<T> = Result<Json<T>, ControlError>;

async fn state(State(sim): State<Sim>) -> Json<StateView> {
    Json(sim.view())
}

async fn set_phase(State(sim): State<Sim>, Body(update): Body<PhaseUpdate>) -> Reply<StateView> {
    let phase = update.phase.phase().map_err(ControlError::bad_request)?;
    sim.lock().phase = phase;
    tracing::info!(
        phase = phase.name(),
        "phase set through the control endpoint"
    );
    Ok(Json(sim.view()))
}

async fn set_result(State(sim): State<Sim>, Body(update): Body<ResultUpdate>) -> Json<StateView> {
    sim.lock().result = update.result;
    tracing::info!(
        result = update.result.code(),
        "result set through the control endpoint"
    );
    Json(sim.view())
}

async fn set_shape(State(sim): State<Sim>, Body(update): Body<ShapeUpdate>) -> Json<StateView> {
    {
        let mut state = sim.lock();
        if let Some(shape) = update.isrunning {
            state.is_running_shape = shape;
        }
        if let Some(shape) = update.result {
            state.result_shape = shape;
        }
        if let Some(extra_keys) = update.extra_keys {
            state.extra_keys = extra_keys;
        }
    }
    tracing::info!(?update, "body shapes changed through the control endpoint");
    Json(sim.view())
}

async fn set_login_key(
    State(sim): State<Sim>,
    Body(update): Body<LoginKeyUpdate>,
) -> Reply<StateView> {
    if update.key.is_empty() {
        return Err(ControlError::bad_request("login key must not be empty"));
    }
    tracing::info!(
        key = update.key,
        "login key changed through the control endpoint"
    );
    sim.lock().login_key = update.key;
    Ok(Json(sim.view()))
}

async fn set_user(
    State(sim): State<Sim>,
    Path(name): Path<String>,
    Body(update): Body<UserUpdate>,
) -> Json<StateView> {
    tracing::info!(
        user = name,
        "user password set through the control endpoint"
    );
    sim.lock().users.insert(name, update.password);
    Json(sim.view())
}

async fn remove_user(State(sim): State<Sim>, Path(name): Path<String>) -> Reply<StateView> {
    if sim.lock().users.remove(&name).is_none() {
        return Err(ControlError {
            status: StatusCode::NOT_FOUND,
            message: format!("user {name} not found"),
        });
    }
    tracing::info!(user = name, "user removed through the control endpoint");
    Ok(Json(sim.view()))
}

async fn set_sessions(
    State(sim): State<Sim>,
    Body(update): Body<SessionSettingsUpdate>,
) -> Json<StateView> {
    {
        let mut state = sim.lock();
        if let Some(seconds) = update.idle_seconds {
            state.sessions.idle_timeout = Duration::from_secs(seconds);
        }
        if let Some(revokes) = update.login_revokes_previous {
            state.sessions.login_revokes_previous = revokes;
        }
    }
    tracing::info!(
        ?update,
        "session settings changed through the control endpoint"
    );
    Json(sim.view())
}

async fn revoke_sessions(State(sim): State<Sim>) -> Json<RevokeResponse> {
    let revoked = sim.lock().sessions.revoke_all();
    tracing::info!(revoked, "sessions revoked through the control endpoint");
    Json(RevokeResponse { revoked })
}

async fn restart(State(sim): State<Sim>, Body(request): Body<RestartRequest>) -> Reply<StateView> {
    let down_for = Duration::from_secs(request.seconds);
    let restarted = sim
        .restart(down_for, request.reset_phase, request.reset_result)
        .await;
    if let Err(error) = restarted {
        tracing::error!(%error, "simulated restart failed");
        return Err(ControlError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: error.to_string(),
        });
    }
    Ok(Json(sim.view()))
}

/// Starts a run; an empty body takes every setting from the run defaults.
async fn run(
    State(sim): State<Sim>,
    body: Bytes,
) -> Result<(StatusCode, Json<RunStatus>), ControlError> {
    let request = if body.iter().all(u8::is_ascii_whitespace) {
        RunRequest::default()
    } else {
        serde_json::from_slice::<RunRequest>(&body)
            .map_err(|error| ControlError::bad_request(format!("invalid JSON body: {error}")))?
    };
    let settings = request.resolve(sim.lock().run_defaults);
    match sim.start_run(RunTrigger::Control, settings, None) {
        Ok(run) => Ok((StatusCode::ACCEPTED, Json(run))),
        Err(RunRejection::Busy) => Err(ControlError {
            status: StatusCode::CONFLICT,
            message: "a restore run is already in progress".to_owned(),
        }),
        Err(other) => Err(ControlError::bad_request(format!(
            "restore run rejected: {other:?}"
        ))),
    }
}

/// Changes the run defaults; absent fields stay as they are.
async fn set_run_defaults(
    State(sim): State<Sim>,
    Body(update): Body<RunRequest>,
) -> Json<StateView> {
    let settings = {
        let mut state = sim.lock();
        state.run_defaults = update.resolve(state.run_defaults);
        state.run_defaults
    };
    tracing::info!(
        ?settings,
        "run defaults changed through the control endpoint"
    );
    Json(sim.view())
}

async fn faults(State(sim): State<Sim>) -> Json<Vec<Fault>> {
    Json(sim.lock().faults.clone())
}

async fn replace_faults(
    State(sim): State<Sim>,
    Body(faults): Body<Vec<Fault>>,
) -> Reply<StateView> {
    for fault in &faults {
        fault.validate().map_err(ControlError::bad_request)?;
    }
    tracing::info!(?faults, "faults replaced through the control endpoint");
    sim.lock().faults = faults;
    Ok(Json(sim.view()))
}

async fn add_fault(State(sim): State<Sim>, Body(fault): Body<Fault>) -> Reply<StateView> {
    fault.validate().map_err(ControlError::bad_request)?;
    tracing::info!(?fault, "fault added through the control endpoint");
    sim.lock().faults.push(fault);
    Ok(Json(sim.view()))
}

async fn clear_faults(State(sim): State<Sim>) -> Json<StateView> {
    sim.lock().faults.clear();
    tracing::info!("faults cleared through the control endpoint");
    Json(sim.view())
}

async fn set_backups(State(sim): State<Sim>, Body(backups): Body<Vec<Backup>>) -> Json<StateView> {
    tracing::info!(
        ?backups,
        "backup files replaced through the control endpoint"
    );
    sim.lock().backups = backups;
    Json(sim.view())
}

async fn requests(State(sim): State<Sim>) -> Json<Vec<RequestRecord>> {
    Json(sim.lock().requests.records())
}

async fn clear_requests(State(sim): State<Sim>) -> Json<ClearedResponse> {
    let cleared = sim.lock().requests.clear();
    Json(ClearedResponse { cleared })
}

async fn unknown_route() -> ControlError {
    ControlError {
        status: StatusCode::NOT_FOUND,
        message: "unknown control route: expected /state, /phase, /result, /shape, \
                  /login-key, /users/{name}, /sessions, /sessions/revoke, /restart, /run, \
                  /run-defaults, /faults, /backups or /requests"
            .to_owned(),
    }
}

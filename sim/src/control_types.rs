//! Request and response bodies of the control endpoint, shared by the server side
//! (`control`) and the typed client (`client`).

use serde::{Deserialize, Serialize};

use crate::faults::Fault;
use crate::model::{IsRunningShape, Outcome, Phase, RestoreResult, ResultShape};

/// Snapshot of the simulator, returned by `GET /state` and by most changes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateView {
    pub phase: Phase,
    pub phase_number: u8,
    pub result: RestoreResult,
    pub is_running_shape: IsRunningShape,
    pub result_shape: ResultShape,
    pub extra_keys: bool,
    /// Key of the auth id in the login body, `UserAuthId` by default.
    pub login_key: String,
    /// User names, without passwords.
    pub users: Vec<String>,
    pub backups: Vec<BackupView>,
    pub faults: Vec<Fault>,
    /// Sessions that are valid now.
    pub sessions_active: usize,
    /// Ids issued since the process started.
    pub sessions_issued: u64,
    /// Successful logins since the process started.
    pub logins: u64,
    /// Rejected logins since the process started.
    pub login_failures: u64,
    pub session_idle_seconds: u64,
    pub login_revokes_previous: bool,
    /// The restore run in progress, if any.
    pub run: Option<RunStatus>,
    /// The last restore run that finished.
    pub last_run: Option<RunStatus>,
    pub runs_started: u64,
    /// Settings of runs started by `POST /ckms/restore` or `--auto-restore-after`.
    pub run_defaults: RunSettings,
    /// Whether the HTTPS port accepts connections (false during a simulated restart).
    pub api_listening: bool,
    /// Simulated restarts since the process started.
    pub restarts: u64,
    /// REST API requests since the process started, cleared ones included.
    pub requests_total: u64,
}

/// Backup file as `GET /state` shows it, without its password.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupView {
    pub path: String,
    pub password_required: bool,
    pub outcome: Option<Outcome>,
}

/// Backup file the simulated server can restore, as `PUT /backups` accepts it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backup {
    /// Full path that `backupFilePath` must name.
    pub path: String,
    /// Backup password; `None` accepts a request with any password or none, as for an
    /// HSM-encrypted backup.
    #[serde(default)]
    pub password: Option<String>,
    /// Outcome of a restore of this file. The run defaults decide when it is absent.
    #[serde(default)]
    pub outcome: Option<Outcome>,
}

impl std::fmt::Debug for Backup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backup")
            .field("path", &self.path)
            .field("password_required", &self.password.is_some())
            .field("outcome", &self.outcome)
            .finish()
    }
}

/// Settings of one simulated restore run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunSettings {
    /// Time each phase from `INITIALIZE` to `COMPLETED` lasts, in milliseconds.
    pub step_ms: u64,
    pub outcome: Outcome,
    /// Length of the post-restore restart in seconds; 0 skips the restart and leaves the
    /// phase at `COMPLETED`.
    pub restart_seconds: u64,
    /// Whether the result survives the restart (a real server reports `-1` afterwards).
    pub keep_result_after_restart: bool,
}

impl Default for RunSettings {
    fn default() -> Self {
        RunSettings {
            step_ms: 2000,
            outcome: Outcome::Success,
            restart_seconds: 5,
            keep_result_after_restart: false,
        }
    }
}

/// Body of `POST /run`; each absent field takes its value from the run defaults.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Outcome>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_seconds: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_result_after_restart: Option<bool>,
}

impl RunRequest {
    /// Fills the absent fields from `defaults`.
    #[must_use]
    pub fn resolve(&self, defaults: RunSettings) -> RunSettings {
        RunSettings {
            step_ms: self.step_ms.unwrap_or(defaults.step_ms),
            outcome: self.outcome.unwrap_or(defaults.outcome),
            restart_seconds: self.restart_seconds.unwrap_or(defaults.restart_seconds),
            keep_result_after_restart: self
                .keep_result_after_restart
                .unwrap_or(defaults.keep_result_after_restart),
        }
    }
}

/// Trigger of a restore run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunTrigger {
    /// `POST /ckms/restore` on the REST API.
    Api,
    /// `POST /run` on the control endpoint.
    Control,
    /// The `--auto-restore-after` timer.
    Auto,
}

/// Stage of a restore run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStage {
    /// Walking the phases `INITIALIZE` to `COMPLETED`.
    Running,
    /// The HTTPS port is closed for the post-restore restart.
    Restarting,
    Finished,
}

/// One restore run and its current stage.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunStatus {
    /// Run number, starting at 1.
    pub id: u64,
    pub trigger: RunTrigger,
    pub settings: RunSettings,
    pub stage: RunStage,
    /// Backup file named by `POST /ckms/restore`; `None` for other triggers.
    pub backup_file_path: Option<String>,
    /// Milliseconds between the simulator's start and the run's start.
    pub started_ms: u64,
    pub finished_ms: Option<u64>,
}

/// Body of `PUT /phase`: a phase number or name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhaseUpdate {
    pub phase: PhaseValue,
}

/// Phase given as its number (`5`) or its name (`"RESTORE_DATABASES"`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PhaseValue {
    Number(u8),
    Name(String),
}

impl PhaseValue {
    /// Resolves the value, returning a message naming it when it matches no phase.
    pub fn phase(&self) -> Result<Phase, String> {
        let phase = match self {
            PhaseValue::Number(number) => Phase::from_number(*number),
            PhaseValue::Name(name) => Phase::from_name(name),
        };
        phase.ok_or_else(|| format!("unknown phase {self:?}: expected 0 to 7 or a phase name"))
    }
}

impl From<Phase> for PhaseValue {
    fn from(phase: Phase) -> Self {
        PhaseValue::Name(phase.name().to_owned())
    }
}

/// Body of `PUT /result`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResultUpdate {
    pub result: RestoreResult,
}

/// Body of `PUT /shape`; absent fields stay as they are.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShapeUpdate {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub isrunning: Option<IsRunningShape>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<ResultShape>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra_keys: Option<bool>,
}

/// Body of `PUT /login-key`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginKeyUpdate {
    pub key: String,
}

/// Body of `PUT /users/{name}`, which creates the user or changes its password.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserUpdate {
    pub password: String,
}

impl std::fmt::Debug for UserUpdate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UserUpdate { password: <redacted> }")
    }
}

/// Body of `PUT /sessions`; absent fields stay as they are.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionSettingsUpdate {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_seconds: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub login_revokes_previous: Option<bool>,
}

/// Response of `POST /sessions/revoke`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevokeResponse {
    pub revoked: usize,
}

/// Body of `POST /restart`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestartRequest {
    /// Time the HTTPS port stays closed, in seconds.
    pub seconds: u64,
    /// Whether the phase goes back to `IDLE`.
    #[serde(default)]
    pub reset_phase: bool,
    /// Whether the result goes back to `-1`.
    #[serde(default)]
    pub reset_result: bool,
}

/// Response of `DELETE /requests`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClearedResponse {
    pub cleared: usize,
}

/// Error body of the control endpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlErrorBody {
    pub error: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn phase_value_accepts_number_and_name() {
        let by_number: PhaseUpdate = serde_json::from_value(json!({"phase": 5})).expect("parse");
        assert_eq!(by_number.phase.phase(), Ok(Phase::RestoreDatabases));

        let by_name: PhaseUpdate =
            serde_json::from_value(json!({"phase": "CLEANUP"})).expect("parse");
        assert_eq!(by_name.phase.phase(), Ok(Phase::Cleanup));

        assert!(PhaseValue::Number(9).phase().is_err());
        assert!(PhaseValue::Name("DONE".to_owned()).phase().is_err());
    }

    #[test]
    fn run_request_fills_defaults() {
        let request = RunRequest {
            step_ms: Some(10),
            outcome: Some(Outcome::Failure),
            ..RunRequest::default()
        };
        let settings = request.resolve(RunSettings::default());
        assert_eq!(settings.step_ms, 10);
        assert_eq!(settings.outcome, Outcome::Failure);
        assert_eq!(settings.restart_seconds, 5);
        assert!(!settings.keep_result_after_restart);
    }

    #[test]
    fn backup_debug_hides_password() {
        let backup = Backup {
            path: "/opt/backups/a.jar".to_owned(),
            password: Some("secret-value".to_owned()),
            outcome: None,
        };
        let text = format!("{backup:?}");
        assert!(!text.contains("secret-value"), "{text}");
    }
}

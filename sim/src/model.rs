//! Plain value types of the simulated key server: restore phases, restore results, the
//! body shapes a test can switch between, and the names of the REST endpoints.
//!
//! Both the server side and the control client use these types, so every one of them
//! serializes to the exact JSON the control endpoint sends and accepts.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Step of a restore as numbered in IBM's "Backup Get Restore Progress" documentation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Phase {
    Idle,
    Initialize,
    CreateTempDir,
    RestoreConfigFiles,
    RestoreKeystores,
    RestoreDatabases,
    Cleanup,
    Completed,
}

impl Phase {
    /// Every phase in server order, so `Phase::ALL[n]` has number `n`.
    pub const ALL: [Phase; 8] = [
        Phase::Idle,
        Phase::Initialize,
        Phase::CreateTempDir,
        Phase::RestoreConfigFiles,
        Phase::RestoreKeystores,
        Phase::RestoreDatabases,
        Phase::Cleanup,
        Phase::Completed,
    ];

    /// Returns the number the server uses for this phase (0 for `IDLE` to 7 for `COMPLETED`).
    #[must_use]
    pub fn number(self) -> u8 {
        match self {
            Phase::Idle => 0,
            Phase::Initialize => 1,
            Phase::CreateTempDir => 2,
            Phase::RestoreConfigFiles => 3,
            Phase::RestoreKeystores => 4,
            Phase::RestoreDatabases => 5,
            Phase::Cleanup => 6,
            Phase::Completed => 7,
        }
    }

    /// Returns the upper-case name the server uses for this phase, such as `RESTORE_KEYSTORES`.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Phase::Idle => "IDLE",
            Phase::Initialize => "INITIALIZE",
            Phase::CreateTempDir => "CREATE_TEMP_DIR",
            Phase::RestoreConfigFiles => "RESTORE_CONFIG_FILES",
            Phase::RestoreKeystores => "RESTORE_KEYSTORES",
            Phase::RestoreDatabases => "RESTORE_DATABASES",
            Phase::Cleanup => "CLEANUP",
            Phase::Completed => "COMPLETED",
        }
    }

    #[must_use]
    pub fn from_number(number: u8) -> Option<Phase> {
        Phase::ALL.get(usize::from(number)).copied()
    }

    /// Looks up a phase by its server name, ignoring ASCII case.
    #[must_use]
    pub fn from_name(name: &str) -> Option<Phase> {
        Phase::ALL
            .into_iter()
            .find(|phase| phase.name().eq_ignore_ascii_case(name))
    }

    /// Returns the phase after this one, or `None` after `COMPLETED`.
    #[must_use]
    pub fn next(self) -> Option<Phase> {
        Phase::from_number(self.number() + 1)
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Result of the last restore since the simulated server started, as the "Backup Get
/// Restore Result" service reports it: `-1`, `0` or `1` on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "i8", into = "i8")]
pub enum RestoreResult {
    /// No restore ended since the server started (`-1`).
    Unknown,
    /// The last restore succeeded (`0`).
    Success,
    /// The last restore failed (`1`).
    Failure,
}

impl RestoreResult {
    #[must_use]
    pub fn code(self) -> i8 {
        match self {
            RestoreResult::Unknown => -1,
            RestoreResult::Success => 0,
            RestoreResult::Failure => 1,
        }
    }
}

impl From<RestoreResult> for i8 {
    fn from(result: RestoreResult) -> i8 {
        result.code()
    }
}

impl TryFrom<i8> for RestoreResult {
    type Error = String;

    fn try_from(code: i8) -> Result<Self, Self::Error> {
        match code {
            -1 => Ok(RestoreResult::Unknown),
            0 => Ok(RestoreResult::Success),
            1 => Ok(RestoreResult::Failure),
            other => Err(format!(
                "invalid restore result {other}: expected -1, 0 or 1"
            )),
        }
    }
}

/// Outcome of a simulated restore run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    #[default]
    Success,
    Failure,
}

impl Outcome {
    #[must_use]
    pub fn result(self) -> RestoreResult {
        match self {
            Outcome::Success => RestoreResult::Success,
            Outcome::Failure => RestoreResult::Failure,
        }
    }
}

/// Body shape of `GET /ckms/restore/isrunning`. Real servers are known to differ here, so
/// a test picks the shape the client under test must read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IsRunningShape {
    /// `{"code": "1", "status": "CTGKM3293I Restore process is not running."}` when idle and
    /// a running message that names the phase otherwise.
    #[default]
    Message,
    /// `{"code": "5", "status": "RESTORE_DATABASES"}`.
    PhaseName,
    /// `{"code": "5", "status": "5"}`.
    PhaseNumber,
    /// `{"code": 5, "status": 5}` with JSON numbers.
    PhaseNumberJson,
}

/// Body shape of `GET /ckms/restore/result`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResultShape {
    /// `{"code": "0", "result": "0"}`.
    #[default]
    CodeResult,
    /// `{"result": 0}` with a JSON number.
    ResultNumber,
    /// `{"code": "0", "status": "CTGKM.... <text>"}`.
    CodeStatus,
}

/// REST service of the simulated server, used to scope faults and to label logged requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Endpoint {
    /// `POST /ckms/login`.
    Login,
    /// `GET /ckms/restore/isrunning`.
    #[serde(rename = "isrunning")]
    IsRunning,
    /// `GET /ckms/restore/result`.
    Result,
    /// `GET /ckms/backupRestore/progress` and `GET /ckms/restore/progress`.
    Progress,
    /// `POST /ckms/restore`.
    Restore,
    /// `DELETE /ckms/logout`.
    Logout,
}

impl Endpoint {
    /// Classifies a path that has already lost its product prefix (`/SKLM/rest/v1`).
    #[must_use]
    pub fn from_service_path(path: &str) -> Option<Endpoint> {
        match path {
            "/ckms/login" => Some(Endpoint::Login),
            "/ckms/restore/isrunning" => Some(Endpoint::IsRunning),
            "/ckms/restore/result" => Some(Endpoint::Result),
            "/ckms/backupRestore/progress" | "/ckms/restore/progress" => Some(Endpoint::Progress),
            "/ckms/restore" => Some(Endpoint::Restore),
            "/ckms/logout" => Some(Endpoint::Logout),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phase_numbers_match_table() {
        for (index, phase) in Phase::ALL.into_iter().enumerate() {
            assert_eq!(usize::from(phase.number()), index);
            assert_eq!(Phase::from_number(phase.number()), Some(phase));
            assert_eq!(Phase::from_name(phase.name()), Some(phase));
        }
        assert_eq!(Phase::from_number(8), None);
        assert_eq!(
            Phase::from_name("restore_databases"),
            Some(Phase::RestoreDatabases)
        );
        assert_eq!(Phase::Completed.next(), None);
    }

    #[test]
    fn phase_serializes_as_name() {
        let json = serde_json::to_string(&Phase::CreateTempDir).expect("serialize");
        assert_eq!(json, "\"CREATE_TEMP_DIR\"");
    }

    #[test]
    fn restore_result_wire_values() {
        assert_eq!(
            serde_json::to_string(&RestoreResult::Unknown).expect("ser"),
            "-1"
        );
        let parsed: RestoreResult = serde_json::from_str("1").expect("parse");
        assert_eq!(parsed, RestoreResult::Failure);
        assert!(serde_json::from_str::<RestoreResult>("2").is_err());
    }

    #[test]
    fn endpoint_classifies_service_paths() {
        assert_eq!(
            Endpoint::from_service_path("/ckms/login"),
            Some(Endpoint::Login)
        );
        assert_eq!(
            Endpoint::from_service_path("/ckms/restore/progress"),
            Some(Endpoint::Progress)
        );
        assert_eq!(Endpoint::from_service_path("/ckms/other"), None);
        let json = serde_json::to_string(&Endpoint::IsRunning).expect("serialize");
        assert_eq!(json, "\"isrunning\"");
    }
}

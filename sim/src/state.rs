//! Mutable state of the simulated key server and the rules that change it: users, backup
//! files, phase and result, body shapes, faults, sessions, and the restore run record.
//!
//! Everything here is synchronous and takes the current time as an argument, so the rules
//! are tested without a clock or a network. `sim::Sim` shares this state between tasks.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::control_types::{
    Backup, BackupView, RunSettings, RunStage, RunStatus, RunTrigger, StateView,
};
use crate::faults::Fault;
use crate::model::{IsRunningShape, Outcome, Phase, RestoreResult, ResultShape};
use crate::request_log::RequestLog;
use crate::sessions::SessionStore;

/// Start-up settings of the simulated server.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Product prefixes the REST API serves under, such as `/SKLM/rest/v1`.
    pub prefixes: Vec<String>,
    /// User names and passwords.
    pub users: Vec<(String, String)>,
    pub session_idle: Duration,
    /// Text put before the random part of every issued user authentication id.
    pub auth_id_prefix: String,
    pub run_defaults: RunSettings,
    pub backups: Vec<Backup>,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            prefixes: vec!["/SKLM/rest/v1".to_owned(), "/GKLM/rest/v1".to_owned()],
            users: vec![("admin".to_owned(), "passw0rd".to_owned())],
            session_idle: Duration::from_secs(900),
            auth_id_prefix: String::new(),
            run_defaults: RunSettings::default(),
            backups: vec![Backup {
                path: "/opt/backups/sklm_backup.jar".to_owned(),
                password: Some("backup-passw0rd".to_owned()),
                outcome: None,
            }],
        }
    }
}

/// Reason that `POST /ckms/restore` or `POST /run` did not start a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunRejection {
    /// Another restore run is in progress.
    Busy,
    /// The backup file is not in the list of known backups.
    BackupNotFound,
    /// The backup password is missing or wrong.
    WrongBackupPassword,
}

/// The whole mutable state; see the module header.
#[derive(Debug)]
pub struct SimState {
    pub phase: Phase,
    pub result: RestoreResult,
    pub is_running_shape: IsRunningShape,
    pub result_shape: ResultShape,
    pub extra_keys: bool,
    pub login_key: String,
    pub users: BTreeMap<String, String>,
    pub backups: Vec<Backup>,
    pub sessions: SessionStore,
    pub faults: Vec<Fault>,
    pub run_defaults: RunSettings,
    pub run: Option<RunStatus>,
    pub last_run: Option<RunStatus>,
    pub runs_started: u64,
    pub logins: u64,
    pub login_failures: u64,
    pub restarts: u64,
    pub requests: RequestLog,
}

impl SimState {
    #[must_use]
    pub fn new(config: &SimConfig) -> SimState {
        SimState {
            phase: Phase::Idle,
            result: RestoreResult::Unknown,
            is_running_shape: IsRunningShape::default(),
            result_shape: ResultShape::default(),
            extra_keys: false,
            login_key: "UserAuthId".to_owned(),
            users: config.users.iter().cloned().collect(),
            backups: config.backups.clone(),
            sessions: SessionStore::with_id_prefix(config.session_idle, &config.auth_id_prefix),
            faults: Vec::new(),
            run_defaults: config.run_defaults,
            run: None,
            last_run: None,
            runs_started: 0,
            logins: 0,
            login_failures: 0,
            restarts: 0,
            requests: RequestLog::default(),
        }
    }

    /// Checks a user's password and issues a new id with its session number on success.
    pub fn login(&mut self, userid: &str, password: &str, now: Instant) -> Option<(String, u64)> {
        if self.users.get(userid).map(String::as_str) != Some(password) {
            self.login_failures += 1;
            return None;
        }
        self.logins += 1;
        Some(self.sessions.issue(userid, now))
    }

    /// Checks a `POST /ckms/restore` request against the known backups and returns the
    /// outcome of a restore of that file.
    pub fn check_backup(
        &self,
        path: &str,
        password: Option<&str>,
    ) -> Result<Outcome, RunRejection> {
        if self.run.is_some() {
            return Err(RunRejection::Busy);
        }
        let backup = self
            .backups
            .iter()
            .find(|backup| backup.path == path)
            .ok_or(RunRejection::BackupNotFound)?;
        let password_matches = match &backup.password {
            Some(expected) => password == Some(expected.as_str()),
            None => true,
        };
        if !password_matches {
            return Err(RunRejection::WrongBackupPassword);
        }
        Ok(backup.outcome.unwrap_or(self.run_defaults.outcome))
    }

    /// Records the start of a run, unless one is in progress.
    pub fn begin_run(
        &mut self,
        trigger: RunTrigger,
        settings: RunSettings,
        backup_file_path: Option<String>,
        elapsed_ms: u64,
    ) -> Result<RunStatus, RunRejection> {
        if self.run.is_some() {
            return Err(RunRejection::Busy);
        }
        self.runs_started += 1;
        let run = RunStatus {
            id: self.runs_started,
            trigger,
            settings,
            stage: RunStage::Running,
            backup_file_path,
            started_ms: elapsed_ms,
            finished_ms: None,
        };
        self.run = Some(run.clone());
        Ok(run)
    }

    /// Moves run `run_id` to `phase`, storing its result on `COMPLETED`. Returns false when
    /// that run is no longer in progress.
    pub fn enter_run_phase(&mut self, run_id: u64, phase: Phase) -> bool {
        let Some(run) = self.run.as_ref().filter(|run| run.id == run_id) else {
            return false;
        };
        let outcome = run.settings.outcome;
        self.phase = phase;
        if phase == Phase::Completed {
            self.result = outcome.result();
        }
        true
    }

    /// Marks run `run_id` as waiting for its post-restore restart.
    pub fn mark_run_restarting(&mut self, run_id: u64) {
        if let Some(run) = self.run.as_mut().filter(|run| run.id == run_id) {
            run.stage = RunStage::Restarting;
        }
    }

    /// Ends run `run_id` and keeps it as the last run.
    pub fn finish_run(&mut self, run_id: u64, elapsed_ms: u64) {
        if self.run.as_ref().is_none_or(|run| run.id != run_id) {
            return;
        }
        if let Some(mut run) = self.run.take() {
            run.stage = RunStage::Finished;
            run.finished_ms = Some(elapsed_ms);
            self.last_run = Some(run);
        }
    }

    /// Applies what a server restart loses: every session, and on request the phase and
    /// the result (the result service only covers the time since the server started).
    pub fn forget_for_restart(&mut self, reset_phase: bool, reset_result: bool) {
        self.sessions.revoke_all();
        if reset_phase {
            self.phase = Phase::Idle;
        }
        if reset_result {
            self.result = RestoreResult::Unknown;
        }
        self.restarts += 1;
    }

    /// Builds the `GET /state` snapshot.
    #[must_use]
    pub fn view(&self, now: Instant, api_listening: bool) -> StateView {
        let backups = self
            .backups
            .iter()
            .map(|backup| BackupView {
                path: backup.path.clone(),
                password_required: backup.password.is_some(),
                outcome: backup.outcome,
            })
            .collect();
        StateView {
            phase: self.phase,
            phase_number: self.phase.number(),
            result: self.result,
            is_running_shape: self.is_running_shape,
            result_shape: self.result_shape,
            extra_keys: self.extra_keys,
            login_key: self.login_key.clone(),
            users: self.users.keys().cloned().collect(),
            backups,
            faults: self.faults.clone(),
            sessions_active: self.sessions.active_count(now),
            sessions_issued: self.sessions.issued_count(),
            logins: self.logins,
            login_failures: self.login_failures,
            session_idle_seconds: self.sessions.idle_timeout.as_secs(),
            login_revokes_previous: self.sessions.login_revokes_previous,
            run: self.run.clone(),
            last_run: self.last_run.clone(),
            runs_started: self.runs_started,
            run_defaults: self.run_defaults,
            api_listening,
            restarts: self.restarts,
            requests_total: self.requests.total(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> SimState {
        SimState::new(&SimConfig::default())
    }

    fn settings(outcome: Outcome) -> RunSettings {
        RunSettings {
            outcome,
            ..RunSettings::default()
        }
    }

    #[test]
    fn login_checks_password() {
        let mut state = state();
        let now = Instant::now();
        assert!(state.login("admin", "wrong", now).is_none());
        assert!(state.login("nobody", "passw0rd", now).is_none());
        let (_, number) = state.login("admin", "passw0rd", now).expect("valid login");
        assert_eq!(number, 1);
        assert_eq!(state.logins, 1);
        assert_eq!(state.login_failures, 2);
    }

    #[test]
    fn check_backup_cases() {
        let mut state = state();
        let path = "/opt/backups/sklm_backup.jar";
        assert_eq!(
            state.check_backup(path, Some("backup-passw0rd")),
            Ok(Outcome::Success)
        );
        assert_eq!(
            state.check_backup(path, Some("nope")),
            Err(RunRejection::WrongBackupPassword)
        );
        assert_eq!(
            state.check_backup(path, None),
            Err(RunRejection::WrongBackupPassword)
        );
        assert_eq!(
            state.check_backup("/tmp/x.jar", Some("backup-passw0rd")),
            Err(RunRejection::BackupNotFound)
        );

        state.backups.push(Backup {
            path: "/opt/backups/hsm.jar".to_owned(),
            password: None,
            outcome: Some(Outcome::Failure),
        });
        assert_eq!(
            state.check_backup("/opt/backups/hsm.jar", None),
            Ok(Outcome::Failure)
        );
    }

    #[test]
    fn second_run_is_busy() {
        let mut state = state();
        let run = state
            .begin_run(RunTrigger::Control, settings(Outcome::Success), None, 0)
            .expect("first run starts");
        assert_eq!(run.id, 1);
        let second = state.begin_run(RunTrigger::Api, settings(Outcome::Success), None, 1);
        assert_eq!(second, Err(RunRejection::Busy));
        assert_eq!(
            state.check_backup("/opt/backups/sklm_backup.jar", Some("backup-passw0rd")),
            Err(RunRejection::Busy)
        );
    }

    #[test]
    fn run_sets_result_on_completed() {
        let mut state = state();
        let run = state
            .begin_run(RunTrigger::Auto, settings(Outcome::Failure), None, 0)
            .expect("run starts");

        assert!(state.enter_run_phase(run.id, Phase::Cleanup));
        assert_eq!(state.result, RestoreResult::Unknown);

        assert!(state.enter_run_phase(run.id, Phase::Completed));
        assert_eq!(state.phase, Phase::Completed);
        assert_eq!(state.result, RestoreResult::Failure);

        state.mark_run_restarting(run.id);
        assert_eq!(
            state.run.as_ref().map(|run| run.stage),
            Some(RunStage::Restarting)
        );

        state.finish_run(run.id, 42);
        assert!(state.run.is_none());
        let last = state.last_run.as_ref().expect("last run kept");
        assert_eq!(last.stage, RunStage::Finished);
        assert_eq!(last.finished_ms, Some(42));
        assert!(!state.enter_run_phase(run.id, Phase::Idle));
    }

    #[test]
    fn restart_forgets_sessions_and_optionally_phase() {
        let mut state = state();
        let now = Instant::now();
        state.login("admin", "passw0rd", now).expect("login");
        state.phase = Phase::Completed;
        state.result = RestoreResult::Success;

        state.forget_for_restart(false, false);
        assert_eq!(state.sessions.active_count(now), 0);
        assert_eq!(state.phase, Phase::Completed);
        assert_eq!(state.result, RestoreResult::Success);

        state.forget_for_restart(true, true);
        assert_eq!(state.phase, Phase::Idle);
        assert_eq!(state.result, RestoreResult::Unknown);
        assert_eq!(state.restarts, 2);
    }

    #[test]
    fn view_hides_secrets() {
        let state = state();
        let view = state.view(Instant::now(), true);
        let json = serde_json::to_string(&view).expect("serialize");
        assert!(!json.contains("passw0rd"), "{json}");
        assert_eq!(view.users, vec!["admin".to_owned()]);
        assert!(view.backups[0].password_required);
    }
}

//! `spec.restore` under faults: slow, failing and missing key servers, unusable Secrets,
//! operator kills around the run-restore request, and two operators without leader
//! election. Other tests cover the chart's RBAC and a failed login after a rejected
//! session. They also cover a slow acceptance, `spec.restore` added while a restore runs,
//! odd 2xx bodies, path edits between `NotSent` retries or under a stale cache, and
//! secrets in trace logs. Each test checks that the request reaches the simulator at most
//! once per object and that `status.submission` reports what happened to it.

#![allow(clippy::too_many_lines)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Operator, OwnControlPlane, SimProcess, TestEnv, condition, ready};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use serde_json::json;
use sklm_restore_operator::controller::decide::{self, Input, Settings};
use sklm_restore_operator::crd::{
    Phase, RestorePhase, ServerMessage, SklmRestore, SklmRestoreStatus, Submission, SubmissionState,
};
use sklm_restore_operator::sklm::hub::Snapshot;
use sklm_restore_operator::sklm::{RestoreObservation, RestoreResult, SklmError};
use sklm_sim::{
    Backup, ControlClient, Endpoint, ErrorFormat, Fault, FaultAction, RunRequest, RunSettings,
};

const WAIT: Duration = Duration::from_secs(60);
const BACKUP: &str = "/opt/backups/sklm_backup.jar";
const OTHER_BACKUP: &str = "/opt/backups/other_backup.jar";
const BACKUP_PASSWORD: &str = "backup-passw0rd";
/// Seconds the operator waits before sending a `NotSent` request again, plus a margin.
const NOT_SENT_RETRY_AND_MARGIN: Duration = Duration::from_secs(40);

fn restore_spec() -> serde_json::Value {
    json!({"restore": {"backupFilePath": BACKUP, "passwordSecretRef": {"name": "backup"}}})
}

/// Creates a namespace and starts a simulator, then writes the default Secrets and the
/// backup password Secret.
async fn setup(name: &str) -> (TestEnv, SimProcess, ControlClient) {
    setup_in(TestEnv::new(name).await).await
}

/// Like [`setup`], in a namespace already created, such as one on another API server.
async fn setup_in(env: TestEnv) -> (TestEnv, SimProcess, ControlClient) {
    let sim = env.start_sim(&[]);
    let control = sim.control().expect("control client");
    env.put_default_secrets(&sim).await;
    env.put_secret("backup", &[("password", BACKUP_PASSWORD.as_bytes())])
        .await;
    (env, sim, control)
}

async fn set_run_defaults(control: &ControlClient, step_ms: u64, restart_seconds: u64) {
    let defaults = RunSettings {
        step_ms,
        restart_seconds,
        ..RunSettings::default()
    };
    control
        .set_run_defaults(&defaults)
        .await
        .expect("run defaults");
}

/// Makes [`BACKUP`] and [`OTHER_BACKUP`] the simulator's backups, both with
/// [`BACKUP_PASSWORD`], so that a path edit between them is a valid request.
async fn set_both_backups(control: &ControlClient) {
    let backups = [BACKUP, OTHER_BACKUP].map(|path| Backup {
        path: path.to_owned(),
        password: Some(BACKUP_PASSWORD.to_owned()),
        outcome: None,
    });
    control.set_backups(&backups).await.expect("backups");
}

/// Starts a run on the simulator, as another client would, with `step_ms` per step and
/// no restart after it.
async fn start_run(control: &ControlClient, step_ms: u64) {
    let run = RunRequest {
        step_ms: Some(step_ms),
        restart_seconds: Some(0),
        ..RunRequest::default()
    };
    control.run_restore(&run).await.expect("start a run");
}

/// Merges `spec` into the spec of object `name`.
async fn patch_spec(env: &TestEnv, name: &str, spec: serde_json::Value) {
    let patch = json!({"spec": spec});
    env.restores()
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("patch spec");
}

/// Returns a fault that responds to the POST with a redirect, which gives `NotSent` while
/// the polls keep working.
fn redirect_post() -> Fault {
    Fault::redirect("https://127.0.0.1:1/elsewhere").only(&[Endpoint::Restore])
}

/// Counts the run-restore requests that reached the simulator, whatever their response.
async fn posts(control: &ControlClient) -> usize {
    control.count("POST", "/ckms/restore").await.expect("count")
}

/// Returns the backup paths of the run-restore requests the server may have acted on:
/// not those rejected by the session check (401) or redirected by a fault (3xx).
async fn processed_paths(control: &ControlClient) -> Vec<String> {
    control
        .requests()
        .await
        .expect("request log")
        .iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/ckms/restore"))
        .filter(|r| {
            !r.status
                .is_some_and(|s| s == 401 || (300..400).contains(&s))
        })
        .map(|r| r.backup_file_path.clone().unwrap_or_default())
        .collect()
}

/// Counts the run-restore requests the server may have acted on (see [`processed_paths`]).
async fn processed_posts(control: &ControlClient) -> usize {
    processed_paths(control).await.len()
}

/// Waits until the simulator logged `count` processed run-restore requests.
async fn wait_for_processed(control: &ControlClient, count: usize, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let processed = processed_posts(control).await;
        if processed >= count {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{processed} of {count} processed run-restore requests within {timeout:?}; log: {:?}",
            control.requests().await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until the simulator logged `count` run-restore requests, and returns how long
/// that took.
async fn wait_for_posts(control: &ControlClient, count: usize, timeout: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let logged = posts(control).await;
        if logged >= count {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < timeout,
            "{logged} of {count} run-restore requests within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn state(status: &SklmRestoreStatus) -> Option<SubmissionState> {
    status.submission.as_ref().map(|s| s.state)
}

/// Returns whether the submission has a recorded outcome (any state but `Sending`).
fn has_outcome(status: &SklmRestoreStatus) -> bool {
    state(status).is_some_and(|s| s != SubmissionState::Sending)
}

fn has_state(status: &SklmRestoreStatus, expected: SubmissionState) -> bool {
    state(status) == Some(expected)
}

fn submitted_reason(status: &SklmRestoreStatus) -> Option<(&str, &str)> {
    condition(status, "RestoreSubmitted").map(|c| (c.status.as_str(), c.reason.as_str()))
}

fn pretty(status: &SklmRestoreStatus) -> String {
    serde_json::to_string_pretty(status).unwrap_or_default()
}

async fn current_status(env: &TestEnv, name: &str) -> SklmRestoreStatus {
    env.restores()
        .get(name)
        .await
        .expect("get")
        .status
        .unwrap_or_default()
}

/// Waits until the operator's log shows `count` run-restore attempts (sent or not).
async fn wait_for_attempts(operator: &Operator, count: usize, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let attempts = operator
            .log()
            .lines()
            .filter(|line| line.contains("run-restore request sent"))
            .count();
        if attempts >= count {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "operator made {attempts} of {count} run-restore attempts within {timeout:?}; log:\n{}",
            operator.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Records every submission state the object shows, read every 100 ms, until stopped.
struct StateRecorder {
    seen: Arc<Mutex<Vec<Option<SubmissionState>>>>,
    task: tokio::task::JoinHandle<()>,
}

impl StateRecorder {
    fn start(api: Api<SklmRestore>, name: &str) -> Self {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&seen);
        let name = name.to_owned();
        let task = tokio::spawn(async move {
            // Bounded: at most 10 minutes of samples.
            for _ in 0..6000 {
                if let Ok(object) = api.get(&name).await {
                    let current = object.status.as_ref().and_then(state);
                    let mut seen = sink.lock().expect("recorder lock");
                    if seen.last() != Some(&current) {
                        seen.push(current);
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        StateRecorder { seen, task }
    }

    fn stop(self) -> Vec<Option<SubmissionState>> {
        self.task.abort();
        self.seen.lock().expect("recorder lock").clone()
    }
}

/// The API server must reject a status apply that names an old resourceVersion, because
/// the `Sending` record relies on it to stop a second request from a stale cache.
#[tokio::test]
async fn claim_precondition_rejects_stale_version() {
    let (env, sim, _control) = setup("claimrv").await;
    let created = env.create_restore("dr", &sim, json!({})).await;
    let stale = created.metadata.resource_version.clone().expect("version");
    let params = PatchParams::apply("tests-claim").force();
    let patch = |version: &str, generation: i64| {
        json!({
            "apiVersion": "sklm.dev/v1alpha1",
            "kind": "SklmRestore",
            "metadata": {"resourceVersion": version},
            "status": {"observedGeneration": generation},
        })
    };

    let first = env
        .restores()
        .patch_status("dr", &params, &Patch::Apply(&patch(&stale, 1)))
        .await;
    assert!(first.is_ok(), "apply with the current version: {first:?}");

    let second = env
        .restores()
        .patch_status("dr", &params, &Patch::Apply(&patch(&stale, 2)))
        .await;
    match second {
        Err(kube::Error::Api(response)) => assert_eq!(response.code, 409, "{response:?}"),
        other => panic!("apply with a stale version must fail with 409, got {other:?}"),
    }
}

/// Clearing `lastError` after a successful poll is a status apply that omits the field.
/// The API server must accept it, or every later status write fails and the object never
/// leaves the state of its last error.
#[tokio::test]
async fn apply_dropping_last_error_succeeds() {
    let (env, sim, _control) = setup("droperror").await;
    env.create_restore("dr", &sim, json!({})).await;
    let params = PatchParams::apply("sklm-restore-operator").force();
    let with_error = json!({
        "apiVersion": "sklm.dev/v1alpha1",
        "kind": "SklmRestore",
        "status": {
            "phase": "Running",
            "lastError": {"reason": "ServerUnreachable", "message": "connection refused"},
            "serverMessage": {"code": "1", "status": "not running"},
        },
    });
    env.restores()
        .patch_status("dr", &params, &Patch::Apply(&with_error))
        .await
        .expect("apply with lastError");

    let cleared = json!({
        "apiVersion": "sklm.dev/v1alpha1",
        "kind": "SklmRestore",
        "status": {"phase": "Running", "serverMessage": {"code": "1", "status": "not running"}},
    });
    let written = env
        .restores()
        .patch_status("dr", &params, &Patch::Apply(&cleared))
        .await;
    let object = written.expect("apply that clears lastError");
    let status = object.status.expect("status");
    assert!(status.last_error.is_none(), "{}", pretty(&status));
}

/// A POST that times out (`timeoutSeconds`) may have started the restore, so the record
/// is `Unknown` and the request is never sent again.
#[tokio::test]
async fn slow_response_beyond_timeout_is_unknown() {
    let (env, sim, control) = setup("slowpost").await;
    control
        .set_fault(&Fault::slow(Duration::from_secs(8)).only(&[Endpoint::Restore]))
        .await
        .expect("fault");
    let operator = Operator::start(&env, &[]);
    env.create_restore("dr", &sim, restore_spec()).await;

    // The record can be written before the first poll, and the conditions with the next
    // reconcile, so wait for both.
    let object = env
        .wait_logged(&operator, "dr", WAIT, |s| {
            has_outcome(s) && condition(s, "RestoreSubmitted").is_some()
        })
        .await;
    let status = object.status.expect("status");
    let record = status.submission.clone().expect("submission");
    assert_eq!(
        record.state,
        SubmissionState::Unknown,
        "{}",
        pretty(&status)
    );
    assert_eq!(record.http_status, None, "{}", pretty(&status));
    assert!(status.submitted_time.is_some());
    assert_eq!(
        submitted_reason(&status),
        Some(("Unknown", "SubmissionOutcomeUnknown")),
        "{}",
        pretty(&status)
    );

    control.clear_faults().await.expect("clear faults");
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(
        posts(&control).await,
        1,
        "a timed-out request is not resent"
    );
    let status = env
        .restores()
        .get("dr")
        .await
        .expect("get")
        .status
        .expect("status");
    assert!(
        has_state(&status, SubmissionState::Unknown),
        "{}",
        pretty(&status)
    );
}

/// A 5xx response to the POST may come after the restore started, so the record is
/// `Unknown`. The request is never resent, and the object goes on watching.
#[tokio::test]
async fn server_error_response_is_unknown_not_resent() {
    let (env, sim, control) = setup("post503").await;
    control
        .set_fault(&Fault::http_error(503, ErrorFormat::Json).only(&[Endpoint::Restore]))
        .await
        .expect("fault");
    let operator = Operator::start(&env, &[]);
    env.create_restore("dr", &sim, restore_spec()).await;

    let object = env.wait_logged(&operator, "dr", WAIT, has_outcome).await;
    let status = object.status.expect("status");
    let record = status.submission.clone().expect("submission");
    assert_eq!(
        record.state,
        SubmissionState::Unknown,
        "{}",
        pretty(&status)
    );
    assert_eq!(record.http_status, Some(503));
    assert_eq!(record.message_id.as_deref(), Some("CTGKM9999E"));

    control.clear_faults().await.expect("clear faults");
    let object = env
        .wait_logged(&operator, "dr", WAIT, |s| s.phase == Some(Phase::Waiting))
        .await;
    let status = object.status.expect("status");
    assert_eq!(ready(&status), Some(("False", "WaitingForRestore")));
    tokio::time::sleep(NOT_SENT_RETRY_AND_MARGIN).await;
    assert_eq!(posts(&control).await, 1, "a 5xx response is not resent");
}

/// With the HTTPS port closed the request cannot leave, so the record is `NotSent` and
/// nothing is logged. The request is sent exactly once after the port opens again.
#[tokio::test]
async fn server_down_at_submission_sends_once_when_back() {
    let (env, sim, control) = setup("downsubmit").await;
    set_run_defaults(&control, 3000, 3).await;
    let operator = Operator::start(&env, &[]);
    control.restart(15).await.expect("close the port");
    env.create_restore("dr", &sim, restore_spec()).await;

    let object = env.wait_logged(&operator, "dr", WAIT, has_outcome).await;
    let status = object.status.expect("status");
    assert!(
        has_state(&status, SubmissionState::NotSent),
        "{}",
        pretty(&status)
    );
    assert_eq!(
        submitted_reason(&status),
        Some(("False", "NotSent")),
        "{}",
        pretty(&status)
    );
    assert_eq!(posts(&control).await, 0, "nothing reached the server");

    // The request count comes from the simulator's log, so it stays right even when a
    // status write fails.
    wait_for_posts(&control, 1, Duration::from_secs(90)).await;
    tokio::time::sleep(NOT_SENT_RETRY_AND_MARGIN).await;
    assert_eq!(posts(&control).await, 1, "sent exactly once");
    assert_eq!(processed_posts(&control).await, 1);

    let object = env
        .wait_logged(&operator, "dr", WAIT, |s| {
            has_state(s, SubmissionState::Accepted) && s.phase.is_some_and(Phase::is_finished)
        })
        .await;
    let status = object.status.expect("status");
    assert_eq!(status.phase, Some(Phase::Completed), "{}", pretty(&status));
}

/// Two `NotSent` attempts in one second have the same record, because `submittedTime`
/// has whole seconds. The first reconcile and the one that the first poll triggers give
/// such a pair. The second claim writes `Sending`, so its `NotSent` must be written too.
/// Otherwise another operator finds `Sending`, records `Unknown` and never sends.
#[tokio::test]
async fn not_sent_record_survives_restart() {
    let (env, sim, control) = setup("notsentkept").await;
    set_run_defaults(&control, 1000, 0).await;
    control.set_fault(&redirect_post()).await.expect("fault");
    let mut first = Operator::start(&env, &[]);
    env.create_restore("dr", &sim, restore_spec()).await;
    wait_for_attempts(&first, 2, WAIT).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let status = env
        .restores()
        .get("dr")
        .await
        .expect("get")
        .status
        .expect("status");
    let attempts: Vec<String> = first
        .log()
        .lines()
        .filter(|line| line.contains("run-restore request sent"))
        .map(|line| line.chars().take(60).collect())
        .collect();
    assert!(
        has_state(&status, SubmissionState::NotSent),
        "both attempts failed before the POST was processed; attempts: {attempts:?}; {}",
        pretty(&status)
    );

    first.kill();
    control.clear_faults().await.expect("clear faults");
    let second = Operator::start(&env, &[]);
    wait_for_posts(&control, 3, WAIT).await;
    env.wait_logged(&second, "dr", WAIT, |s| {
        has_state(s, SubmissionState::Accepted)
    })
    .await;
    assert_eq!(processed_posts(&control).await, 1);
}

/// Runs one login fault test. A login that fails by `fault` stops the POST before it
/// leaves, so the record must be `NotSent` and the request sent once later.
async fn login_fault_at_submission(name: &str, fault: Fault) {
    let (env, sim, control) = setup(name).await;
    control.set_fault(&fault).await.expect("fault");
    let operator = Operator::start(&env, &[]);
    env.create_restore("dr", &sim, restore_spec()).await;

    let object = env.wait_logged(&operator, "dr", WAIT, has_outcome).await;
    let status = object.status.expect("status");
    assert_eq!(
        posts(&control).await,
        0,
        "the login failed, so no POST left"
    );
    assert!(
        has_state(&status, SubmissionState::NotSent),
        "the POST never left, so the record must be NotSent and retried: {}",
        pretty(&status)
    );

    control.clear_faults().await.expect("clear faults");
    wait_for_posts(&control, 1, Duration::from_secs(90)).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(posts(&control).await, 1);
}

#[tokio::test]
async fn login_server_error_at_submission_is_not_sent() {
    let fault = Fault::http_error(503, ErrorFormat::Html).only(&[Endpoint::Login]);
    login_fault_at_submission("login503", fault).await;
}

#[tokio::test]
async fn login_timeout_at_submission_is_not_sent() {
    let fault = Fault {
        action: FaultAction::Silent { hold_seconds: 10 },
        endpoints: Some(vec![Endpoint::Login]),
    };
    login_fault_at_submission("loginsilent", fault).await;
}

/// The server rejects a wrong backup password, so the record is `Rejected` with its
/// message id, the phase is `Failed`, and the request is not sent again.
#[tokio::test]
async fn wrong_backup_password_is_rejected_once() {
    let (env, sim, control) = setup("badbackuppw").await;
    env.put_secret("backup", &[("password", b"not-the-backup-password")])
        .await;
    let operator = Operator::start(&env, &[]);
    env.create_restore("dr", &sim, restore_spec()).await;

    let object = env
        .wait_logged(&operator, "dr", WAIT, |s| s.phase == Some(Phase::Failed))
        .await;
    let status = object.status.expect("status");
    assert_eq!(ready(&status), Some(("False", "RestoreRejected")));
    let record = status.submission.clone().expect("submission");
    assert_eq!(record.state, SubmissionState::Rejected);
    assert_eq!(record.http_status, Some(400));
    assert_eq!(record.message_id.as_deref(), Some("CTGKM3296E"));
    assert!(
        !operator.log().contains("not-the-backup-password"),
        "backup password logged"
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(posts(&control).await, 1, "a refusal is not retried");
}

/// A `passwordSecretRef` naming a Secret that does not exist sends nothing, and Ready
/// reports why. Creating the Secret later sends the request once.
#[tokio::test]
async fn missing_password_secret_sends_nothing() {
    let env = TestEnv::new("nobackupsecret").await;
    let sim = env.start_sim(&[]);
    let control = sim.control().expect("control client");
    env.put_default_secrets(&sim).await;
    let operator = Operator::start(&env, &[]);
    env.create_restore("dr", &sim, restore_spec()).await;

    let object = env
        .wait_logged(&operator, "dr", WAIT, |s| {
            common::has_reason(s, "InvalidSecret")
        })
        .await;
    let status = object.status.expect("status");
    assert!(status.submission.is_none(), "{}", pretty(&status));
    assert!(status.submitted_time.is_none(), "{}", pretty(&status));
    assert!(
        common::ready_message(&status).contains("backup"),
        "the message names the Secret: {}",
        pretty(&status)
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(posts(&control).await, 0, "no request without the password");

    env.put_secret("backup", &[("password", BACKUP_PASSWORD.as_bytes())])
        .await;
    // Up to the 60 s retry of an unusable spec, with room for a slow machine.
    wait_for_posts(&control, 1, Duration::from_secs(120)).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(posts(&control).await, 1);
    assert_eq!(processed_posts(&control).await, 1);
}

/// A `passwordSecretRef.key` missing from the Secret sends nothing. Adding the key is a
/// Secret change, which should reconcile the object as a fixed credentials Secret does,
/// not only after the 60 s retry of an unusable spec.
#[tokio::test]
async fn password_key_fix_submits_promptly() {
    let (env, sim, control) = setup("backupkey").await;
    let operator = Operator::start(&env, &[]);
    let spec = json!({"restore": {
        "backupFilePath": BACKUP,
        "passwordSecretRef": {"name": "backup", "key": "passphrase"},
    }});
    env.create_restore("dr", &sim, spec).await;

    let object = env
        .wait_logged(&operator, "dr", WAIT, |s| {
            common::has_reason(s, "InvalidSecret")
        })
        .await;
    let status = object.status.expect("status");
    assert!(status.submission.is_none(), "{}", pretty(&status));
    assert!(
        common::ready_message(&status).contains("passphrase"),
        "the message names the key: {}",
        pretty(&status)
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(posts(&control).await, 0, "no request without the password");

    env.put_secret(
        "backup",
        &[
            ("password", b"unused"),
            ("passphrase", BACKUP_PASSWORD.as_bytes()),
        ],
    )
    .await;
    // A Secret change reaches the controller within a second or two, so 20 s is generous
    // and well below the 60 s retry.
    let elapsed = wait_for_posts(&control, 1, Duration::from_secs(20)).await;
    println!("run-restore request sent {elapsed:?} after the Secret was fixed");
    assert_eq!(posts(&control).await, 1);
}

/// Kills the operator (SIGKILL) at several points, from before the `Sending` record to
/// after the response. A second operator never sends again, and `Accepted` only appears
/// when the server got the request.
#[tokio::test]
async fn operator_killed_around_request_sends_at_most_once() {
    // Slow login and POST widen the windows between the record, the POST and the response.
    let delays_ms = [100_u64, 600, 1200, 1800, 2600];
    let mut outcomes = Vec::new();
    for (round, delay_ms) in delays_ms.into_iter().enumerate() {
        let (env, sim, control) = setup(&format!("kill{round}")).await;
        set_run_defaults(&control, 1000, 2).await;
        control
            .set_faults(&[
                Fault::slow(Duration::from_secs(1)).only(&[Endpoint::Login]),
                Fault::slow(Duration::from_secs(1)).only(&[Endpoint::Restore]),
            ])
            .await
            .expect("faults");
        let mut first = Operator::start(&env, &[]);
        env.create_restore("dr", &sim, restore_spec()).await;
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        first.kill();
        let at_kill = env.restores().get("dr").await.expect("get").status;
        let posts_at_kill = posts(&control).await;

        let second = Operator::start(&env, &[]);
        let object = env.wait_logged(&second, "dr", WAIT, has_outcome).await;
        let status = object.status.expect("status");
        tokio::time::sleep(Duration::from_secs(5)).await;
        let sent = posts(&control).await;
        let record = status.submission.clone().expect("submission");
        outcomes.push(format!(
            "delay {delay_ms} ms: state at kill {:?}, POSTs at kill {posts_at_kill}, final {:?}, POSTs {sent}",
            at_kill.as_ref().and_then(state),
            record.state
        ));

        assert!(sent <= 1, "round {round}: {sent} POSTs; {outcomes:?}");
        assert!(
            matches!(
                record.state,
                SubmissionState::Accepted | SubmissionState::Unknown
            ),
            "round {round}: {}",
            pretty(&status)
        );
        if record.state == SubmissionState::Accepted {
            assert_eq!(sent, 1, "round {round}: Accepted without a POST");
        }
        if posts_at_kill == 1 && at_kill.as_ref().and_then(state) == Some(SubmissionState::Sending)
        {
            assert_eq!(
                record.state,
                SubmissionState::Unknown,
                "round {round}: killed with the POST in flight"
            );
        }
    }
    println!("{}", outcomes.join("\n"));
}

/// Two operators without leader election send one request. The record never shows
/// `Unknown` for a request the server accepted with 2xx within the timeout.
#[tokio::test]
async fn two_operators_slow_response_send_once() {
    let (env, sim, control) = setup("twoslow").await;
    set_run_defaults(&control, 1500, 0).await;
    control
        .set_fault(&Fault::slow(Duration::from_secs(2)).only(&[Endpoint::Restore]))
        .await
        .expect("fault");
    let first = Operator::start(&env, &[]);
    let _second = Operator::start(&env, &[]);
    let recorder = StateRecorder::start(env.restores(), "dr");
    env.create_restore("dr", &sim, restore_spec()).await;

    env.wait_logged(&first, "dr", WAIT, |s| {
        s.phase.is_some_and(Phase::is_finished)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let seen = recorder.stop();
    assert_eq!(posts(&control).await, 1, "states seen: {seen:?}");
    let status = env
        .restores()
        .get("dr")
        .await
        .expect("get")
        .status
        .expect("status");
    assert!(
        has_state(&status, SubmissionState::Accepted),
        "{}",
        pretty(&status)
    );
    assert!(
        !seen.contains(&Some(SubmissionState::Unknown)),
        "the server responded 200 within the timeout, yet the record showed Unknown; \
         states seen: {seen:?}"
    );
}

/// Two operators without leader election both record `NotSent`. When the server accepts
/// requests again, exactly one of them sends. A redirect response to the POST gives
/// `NotSent` while the polls keep working.
#[tokio::test]
async fn two_operators_retry_not_sent_once() {
    let (env, sim, control) = setup("twonotsent").await;
    // A run longer than the 30 s retry, so a second request finds it still running.
    set_run_defaults(&control, 6000, 0).await;
    control.set_fault(&redirect_post()).await.expect("fault");
    let first = Operator::start(&env, &[]);
    env.create_restore("dr", &sim, restore_spec()).await;
    env.wait_logged(&first, "dr", WAIT, |s| {
        has_state(s, SubmissionState::NotSent)
    })
    .await;
    wait_for_attempts(&first, 1, WAIT).await;
    let second = Operator::start(&env, &[]);
    wait_for_attempts(&second, 1, WAIT).await;
    assert_eq!(
        processed_posts(&control).await,
        0,
        "every POST was redirected"
    );

    control.clear_faults().await.expect("clear faults");
    env.wait_logged(&first, "dr", Duration::from_secs(90), |s| {
        has_state(s, SubmissionState::Accepted) || has_state(s, SubmissionState::Rejected)
    })
    .await;
    tokio::time::sleep(NOT_SENT_RETRY_AND_MARGIN).await;
    let status = env
        .restores()
        .get("dr")
        .await
        .expect("get")
        .status
        .expect("status");
    assert_eq!(
        processed_posts(&control).await,
        1,
        "second run-restore request sent; status: {}\nfirst operator:\n{}\nsecond operator:\n{}",
        pretty(&status),
        first.log(),
        second.log()
    );
    assert!(
        has_state(&status, SubmissionState::Accepted),
        "{}",
        pretty(&status)
    );
    assert_ne!(status.phase, Some(Phase::Failed), "{}", pretty(&status));
}

/// An object deleted and created again under the same name has a new uid, so it sends
/// its own request. The old record is not carried over.
#[tokio::test]
async fn recreated_object_submits_again() {
    let (env, sim, control) = setup("recreate").await;
    // No post-restore restart: the restart is not what this test is about.
    set_run_defaults(&control, 500, 0).await;
    let operator = Operator::start(&env, &[]);
    let first = env.create_restore("dr", &sim, restore_spec()).await;
    env.wait_logged(&operator, "dr", WAIT, |s| {
        s.phase.is_some_and(Phase::is_finished)
    })
    .await;
    assert_eq!(posts(&control).await, 1);
    // What a real server shows after its restart: no restore running, no result.
    control
        .set_phase(sklm_sim::Phase::Idle)
        .await
        .expect("phase");
    control
        .set_result(sklm_sim::RestoreResult::Unknown)
        .await
        .expect("result");

    env.restores()
        .delete("dr", &DeleteParams::default())
        .await
        .expect("delete");
    let deadline = Instant::now() + WAIT;
    while env.restores().get_opt("dr").await.expect("get").is_some() {
        assert!(Instant::now() < deadline, "object not deleted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let second = env.create_restore("dr", &sim, restore_spec()).await;
    assert_ne!(first.metadata.uid, second.metadata.uid);

    let object = env
        .wait_logged(&operator, "dr", WAIT, |s| {
            s.phase.is_some_and(Phase::is_finished)
        })
        .await;
    let status = object.status.expect("status");
    assert_eq!(status.phase, Some(Phase::Completed), "{}", pretty(&status));
    assert!(
        has_state(&status, SubmissionState::Accepted),
        "{}",
        pretty(&status)
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(posts(&control).await, 2, "one request per object");
}

/// `spec.restore` is added to an object that already saw a restore end. The phase is
/// final, so nothing is sent.
#[tokio::test]
async fn restore_added_after_completion_sends_nothing() {
    let (env, sim, control) = setup("lateadd").await;
    let operator = Operator::start(&env, &[]);
    env.create_restore("dr", &sim, json!({})).await;
    env.wait_logged(&operator, "dr", WAIT, |s| s.phase == Some(Phase::Waiting))
        .await;
    start_run(&control, 1000).await;
    env.wait_logged(&operator, "dr", WAIT, |s| s.phase == Some(Phase::Completed))
        .await;

    patch_spec(&env, "dr", restore_spec()).await;
    let object = env
        .wait_logged(&operator, "dr", WAIT, |s| s.observed_generation == Some(2))
        .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let status = object.status.expect("status");
    assert_eq!(status.phase, Some(Phase::Completed));
    assert!(status.submission.is_none(), "{}", pretty(&status));
    assert_eq!(posts(&control).await, 0);
}

/// The server rejects the request because another restore is running, so the record is
/// `Rejected` with the server's message id.
#[tokio::test]
async fn busy_server_rejects_submission_once() {
    let (env, sim, control) = setup("busy").await;
    start_run(&control, 10_000).await;
    let operator = Operator::start(&env, &[]);
    env.create_restore("dr", &sim, restore_spec()).await;

    let object = env
        .wait_logged(&operator, "dr", WAIT, |s| s.phase == Some(Phase::Failed))
        .await;
    let status = object.status.expect("status");
    common::assert_conditions(&status, ("False", "RestoreRejected"), "False", "True");
    let record = status.submission.clone().expect("submission");
    assert_eq!(record.state, SubmissionState::Rejected);
    assert_eq!(record.http_status, Some(400));
    assert_eq!(record.message_id.as_deref(), Some("CTGKM3294E"));
    assert_eq!(
        submitted_reason(&status),
        Some(("False", "RestoreRejected"))
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(posts(&control).await, 1, "a refusal is not retried");
}

/// Returns a fault that responds to the POST with 200 and a success body without starting
/// a run, so the server never shows a step. It acts as a server that starts the restore
/// some time after accepting it.
fn accept_without_run() -> Fault {
    Fault {
        action: FaultAction::HttpError {
            status: 200,
            format: ErrorFormat::Json,
            code: Some("CTGKM3290I".to_owned()),
        },
        endpoints: Some(vec![Endpoint::Restore]),
    }
}

/// The server accepts the request but reports no restore running. Within the 120 s
/// grace, the object stays `Running` with reason `SubmittedRestoreStarting`.
#[tokio::test]
async fn accepted_without_run_waits_within_grace() {
    let (env, sim, control) = setup("gracein").await;
    control
        .set_fault(&accept_without_run())
        .await
        .expect("fault");
    let operator = Operator::start(&env, &[]);
    env.create_restore("dr", &sim, restore_spec()).await;

    env.wait_logged(&operator, "dr", WAIT, |s| {
        has_state(s, SubmissionState::Accepted)
    })
    .await;
    let object = env
        .wait_logged(&operator, "dr", WAIT, |s| {
            common::has_reason(s, "SubmittedRestoreStarting")
        })
        .await;
    let status = object.status.expect("status");
    assert_eq!(status.phase, Some(Phase::Running));
    common::assert_conditions(
        &status,
        ("False", "SubmittedRestoreStarting"),
        "True",
        "False",
    );
    assert!(status.start_time.is_none(), "{}", pretty(&status));

    tokio::time::sleep(Duration::from_secs(10)).await;
    let status = env
        .restores()
        .get("dr")
        .await
        .expect("get")
        .status
        .expect("status");
    assert_eq!(status.phase, Some(Phase::Running), "{}", pretty(&status));
    assert!(
        common::has_reason(&status, "SubmittedRestoreStarting"),
        "{}",
        pretty(&status)
    );
    assert_eq!(posts(&control).await, 1);
}

/// After the 120 s grace, a "not running" poll ends the submitted restore. The status
/// must move within a few polls of the grace's end, not at the next 300 s resync.
#[tokio::test]
async fn accepted_without_run_ends_after_grace() {
    let (env, sim, control) = setup("graceout").await;
    control
        .set_fault(&accept_without_run())
        .await
        .expect("fault");
    let operator = Operator::start(&env, &[]);
    env.create_restore("dr", &sim, restore_spec()).await;
    env.wait_logged(&operator, "dr", WAIT, |s| {
        has_state(s, SubmissionState::Accepted)
    })
    .await;
    let accepted = Instant::now();

    // The grace is 120 s, and 250 s leaves room for a slow machine.
    let object = env
        .wait_logged(&operator, "dr", Duration::from_secs(250), |s| {
            s.phase.is_some_and(Phase::is_finished)
        })
        .await;
    println!("finished {:?} after acceptance", accepted.elapsed());
    let status = object.status.expect("status");
    assert!(
        accepted.elapsed() >= Duration::from_secs(115),
        "ended inside the grace: {}",
        pretty(&status)
    );
    assert_eq!(status.phase, Some(Phase::Completed), "{}", pretty(&status));
    assert_eq!(ready(&status), Some(("True", "RestoreEndedResultUnknown")));
    assert_eq!(posts(&control).await, 1);
}

/// A revoked session makes the POST fail with 401 before the server acts on it. The
/// session logs in again, and the restore is requested exactly once.
#[tokio::test]
async fn revoked_session_before_post_processes_once() {
    let (env, sim, control) = setup("revoked").await;
    let operator = Operator::start(&env, &[]);
    env.create_restore("watch", &sim, json!({})).await;
    env.wait_logged(&operator, "watch", WAIT, |s| {
        s.phase == Some(Phase::Waiting)
    })
    .await;
    let revoked = control.revoke_sessions().await.expect("revoke");
    assert!(revoked >= 1, "the watch had a session");
    env.create_restore("dr", &sim, restore_spec()).await;

    let object = env
        .wait_logged(&operator, "dr", WAIT, |s| {
            has_state(s, SubmissionState::Accepted)
        })
        .await;
    assert!(has_outcome(&object.status.expect("status")));
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(processed_posts(&control).await, 1);
    assert!(posts(&control).await <= 2, "at most one retry after 401");
}

/// The backup password is only needed to send the request. Deleting its Secret after the
/// server accepted the request must not stop the watch before the restore ends.
#[tokio::test]
async fn password_secret_deleted_after_acceptance_keeps_watching() {
    let (env, sim, control) = setup("dropbackup").await;
    // No post-restore restart, so the watch ends on COMPLETED and the result.
    set_run_defaults(&control, 2000, 0).await;
    let operator = Operator::start(&env, &[]);
    env.create_restore("dr", &sim, restore_spec()).await;
    env.wait_logged(&operator, "dr", WAIT, |s| {
        has_state(s, SubmissionState::Accepted)
    })
    .await;
    env.secrets()
        .delete("backup", &DeleteParams::default())
        .await
        .expect("delete the backup Secret");

    let object = env
        .wait_logged(&operator, "dr", Duration::from_secs(90), |s| {
            s.phase.is_some_and(Phase::is_finished)
        })
        .await;
    let status = object.status.expect("status");
    assert_eq!(status.phase, Some(Phase::Completed), "{}", pretty(&status));
    assert_eq!(posts(&control).await, 1);
}

/// With rejected credentials, the poller logs in at most every 5 minutes, so a server
/// that locks accounts gets few failed logins. The `NotSent` retries of `spec.restore`
/// use the same login and must keep that rate.
#[tokio::test]
async fn rejected_credentials_submission_logs_in_rarely() {
    let env = TestEnv::new("badlogin").await;
    let sim = env.start_sim(&[]);
    let control = sim.control().expect("control client");
    env.put_default_secrets(&sim).await;
    env.put_secret(
        "admin",
        &[("userid", common::USER.as_bytes()), ("password", b"wrong")],
    )
    .await;
    env.put_secret("backup", &[("password", BACKUP_PASSWORD.as_bytes())])
        .await;
    let operator = Operator::start(&env, &[]);
    env.create_restore("dr", &sim, restore_spec()).await;

    let object = env.wait_logged(&operator, "dr", WAIT, has_outcome).await;
    let status = object.status.expect("status");
    assert!(
        has_state(&status, SubmissionState::NotSent),
        "{}",
        pretty(&status)
    );
    tokio::time::sleep(Duration::from_secs(75)).await;
    let logins = control.login_count().await.expect("login count");
    assert_eq!(posts(&control).await, 0);
    assert!(
        logins <= 3,
        "{logins} rejected logins in about 75 s; the poller alone waits 300 s between them"
    );
}

/// Status writes of a `spec.restore` object name the resourceVersion they were decided
/// from, so spec and metadata edits make them conflict. Edits during a submitted restore
/// must still let every polled step reach status, with no conflict surfacing.
#[tokio::test]
async fn edits_during_submitted_restore_keep_polled_phase() {
    let (env, sim, control) = setup("editsdr").await;
    set_run_defaults(&control, 1500, 2).await;
    let operator = Operator::start(&env, &[]);
    let recorder = StateRecorder::start(env.restores(), "dr");
    env.create_restore("dr", &sim, restore_spec()).await;
    env.wait_logged(&operator, "dr", WAIT, |s| {
        has_state(s, SubmissionState::Accepted)
    })
    .await;

    // Edit metadata every 100 ms and the spec every 500 ms while the restore runs.
    let editor = common::spawn_editor(
        env.restores(),
        "dr",
        |round| json!({"annotations": {"test/round": round.to_string()}}),
    );
    let object = env
        .wait_logged(&operator, "dr", Duration::from_secs(90), |s| {
            s.phase.is_some_and(Phase::is_finished)
        })
        .await;
    editor.await.expect("editor task");
    let seen = recorder.stop();
    let status = object.status.expect("status");
    assert_eq!(status.phase, Some(Phase::Completed), "{}", pretty(&status));
    assert!(
        has_state(&status, SubmissionState::Accepted),
        "{}",
        pretty(&status)
    );
    assert_eq!(posts(&control).await, 1);
    assert!(
        !seen.contains(&Some(SubmissionState::Unknown)),
        "states seen: {seen:?}"
    );
    let log = operator.log();
    assert!(!log.contains("409"), "a conflict surfaced:\n{log}");
    assert!(!log.contains("Conflict"), "a conflict surfaced:\n{log}");
    assert!(!log.contains("reconcile failed"), "{log}");
}

/// The Helm chart's own RBAC, in namespace scope, must let the operator send the
/// run-restore request. The chart grants only `patch` on the `status` subresource, so
/// the fresh read before the `Sending` record must be a GET of the object itself.
#[tokio::test]
async fn chart_rbac_allows_declarative_restore() {
    let (env, sim, control) = setup("rbacsubmit").await;
    common::apply_namespaced_chart(&env, &[&env.namespace], &["templates/rbac.yaml"]);
    let kubeconfig = common::operator_kubeconfig();
    let operator = Operator::start_with_kubeconfig(&env, &kubeconfig, &[]);
    env.create_restore("dr", &sim, restore_spec()).await;

    let object = env.wait_logged(&operator, "dr", WAIT, has_outcome).await;
    let status = object.status.expect("status");
    assert!(
        has_state(&status, SubmissionState::Accepted),
        "{}",
        pretty(&status)
    );
    assert_eq!(processed_paths(&control).await, vec![BACKUP.to_owned()]);
    assert!(
        !operator.log().contains("forbidden"),
        "operator log:\n{}",
        operator.log()
    );
}

/// A POST answered 401 was not acted on. When the login that follows fails with a 5xx,
/// the request never reached the server, so the record must be `NotSent` and the request
/// sent once the server recovers, as for any other failed login.
#[tokio::test]
async fn relogin_failure_after_post_401_is_not_sent() {
    let (env, sim, control) = setup("relogin503").await;
    let operator = Operator::start(&env, &[]);
    // A 60 s interval keeps the shared poller from polling, and so from logging in
    // again, between the revocation below and the run-restore request.
    env.create_restore("watch", &sim, json!({"pollIntervalSeconds": 60}))
        .await;
    env.wait_logged(&operator, "watch", WAIT, |s| {
        s.phase == Some(Phase::Waiting)
    })
    .await;
    let revoked = control.revoke_sessions().await.expect("revoke");
    assert!(revoked >= 1, "the watch has a session");
    control
        .set_fault(&Fault::http_error(503, ErrorFormat::Html).only(&[Endpoint::Login]))
        .await
        .expect("fault");
    let mut spec = restore_spec();
    common::merge(&mut spec, &json!({"pollIntervalSeconds": 60}));
    env.create_restore("dr", &sim, spec).await;

    let object = env.wait_logged(&operator, "dr", WAIT, has_outcome).await;
    let status = object.status.expect("status");
    assert_eq!(posts(&control).await, 1, "one POST, answered 401");
    assert!(
        processed_paths(&control).await.is_empty(),
        "the only POST was rejected by the session check"
    );
    assert!(
        has_state(&status, SubmissionState::NotSent),
        "the server never acted on the request: {}",
        pretty(&status)
    );

    control.clear_faults().await.expect("clear faults");
    wait_for_processed(&control, 1, Duration::from_secs(90)).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(processed_posts(&control).await, 1);
}

/// `timeoutSeconds` may be up to 300, so the server may accept the request more than
/// 120 s after `submittedTime`. A restore accepted a few seconds ago must still get the
/// start grace, not end at the first "not running" poll.
#[tokio::test]
async fn slow_acceptance_keeps_start_grace() {
    let (env, sim, control) = setup("slowaccept").await;
    control
        .set_faults(&[
            Fault::slow(Duration::from_secs(125)).only(&[Endpoint::Restore]),
            accept_without_run(),
        ])
        .await
        .expect("faults");
    let operator = Operator::start(&env, &[]);
    let mut spec = restore_spec();
    common::merge(&mut spec, &json!({"server": {"timeoutSeconds": 150}}));
    env.create_restore("dr", &sim, spec).await;

    env.wait_logged(&operator, "dr", Duration::from_secs(200), |s| {
        has_state(s, SubmissionState::Accepted)
    })
    .await;
    let accepted = Instant::now();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let status = current_status(&env, "dr").await;
    println!("status {:?} after acceptance", accepted.elapsed());
    assert_eq!(
        status.phase,
        Some(Phase::Running),
        "accepted about 10 s ago, so the restore has not ended: {}",
        pretty(&status)
    );
    assert!(
        common::has_reason(&status, "SubmittedRestoreStarting"),
        "{}",
        pretty(&status)
    );
    assert_eq!(posts(&control).await, 1);
}

/// `spec.restore` added to an object that watches a running restore. The server rejects
/// the request as busy, but the restore it runs succeeds, and the object must report
/// that outcome, not `Failed`.
#[tokio::test]
async fn restore_added_mid_restore_keeps_outcome() {
    let (env, sim, control) = setup("midadd").await;
    let operator = Operator::start(&env, &[]);
    env.create_restore("dr", &sim, json!({})).await;
    env.wait_logged(&operator, "dr", WAIT, |s| s.phase == Some(Phase::Waiting))
        .await;
    start_run(&control, 4000).await;
    env.wait_logged(&operator, "dr", WAIT, |s| s.phase == Some(Phase::Running))
        .await;

    patch_spec(&env, "dr", restore_spec()).await;
    let object = env
        .wait_logged(&operator, "dr", Duration::from_secs(90), |s| {
            s.phase.is_some_and(Phase::is_finished)
        })
        .await;
    let status = object.status.expect("status");
    let state = control.state().await.expect("simulator state");
    println!("simulator's last run: {:?}", state.last_run);
    assert!(
        state.runs_started == 1,
        "one run, started by the test: {state:?}"
    );
    assert_eq!(
        status.phase,
        Some(Phase::Completed),
        "the watched restore succeeded: {}",
        pretty(&status)
    );
}

/// A 2xx response is `Accepted`, whatever its body. A body over the client's 16 KiB
/// limit does not make the server's acceptance unknown.
#[tokio::test]
async fn oversized_accept_body_is_accepted() {
    let (env, sim, control) = setup("bigaccept").await;
    control
        .set_fault(&Fault::oversized(20 * 1024).only(&[Endpoint::Restore]))
        .await
        .expect("fault");
    let operator = Operator::start(&env, &[]);
    env.create_restore("dr", &sim, restore_spec()).await;

    let object = env.wait_logged(&operator, "dr", WAIT, has_outcome).await;
    let status = object.status.expect("status");
    let statuses: Vec<Option<u16>> = control
        .requests()
        .await
        .expect("request log")
        .iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/ckms/restore"))
        .map(|r| r.status)
        .collect();
    assert_eq!(statuses, vec![Some(200)], "the server answered 200 once");
    assert!(
        has_state(&status, SubmissionState::Accepted),
        "{}",
        pretty(&status)
    );
}

/// A 2xx response with a body that is not JSON is still `Accepted`, sent once, and its
/// text lands in the record cut to size.
#[tokio::test]
async fn garbage_accept_body_is_accepted_once() {
    let (env, sim, control) = setup("garbageaccept").await;
    control
        .set_fault(&Fault::garbage().only(&[Endpoint::Restore]))
        .await
        .expect("fault");
    let operator = Operator::start(&env, &[]);
    env.create_restore("dr", &sim, restore_spec()).await;

    let object = env.wait_logged(&operator, "dr", WAIT, has_outcome).await;
    let status = object.status.expect("status");
    let record = status.submission.clone().expect("submission");
    assert_eq!(
        record.state,
        SubmissionState::Accepted,
        "{}",
        pretty(&status)
    );
    assert!(record.message.contains("not JSON"), "{}", pretty(&status));
    assert_eq!(record.http_status, None);
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(posts(&control).await, 1);
}

/// `spec.restore.backupFilePath` changed while the request is `NotSent`: nothing was
/// sent yet, so the next attempt sends the new path, the record names it, and the
/// `RestoreSubmitted` condition does not call the change ignored.
#[tokio::test]
async fn not_sent_retry_sends_edited_path() {
    let (env, sim, control) = setup("pathedit").await;
    set_both_backups(&control).await;
    control.set_fault(&redirect_post()).await.expect("fault");
    let operator = Operator::start(&env, &[]);
    env.create_restore("dr", &sim, restore_spec()).await;
    let object = env
        .wait_logged(&operator, "dr", WAIT, |s| {
            has_state(s, SubmissionState::NotSent)
        })
        .await;
    let status = object.status.expect("status");
    assert_eq!(
        status
            .submission
            .as_ref()
            .map(|r| r.backup_file_path.as_str()),
        Some(BACKUP)
    );

    patch_spec(
        &env,
        "dr",
        json!({"restore": {"backupFilePath": OTHER_BACKUP}}),
    )
    .await;
    control.clear_faults().await.expect("clear faults");

    wait_for_processed(&control, 1, Duration::from_secs(90)).await;
    let object = env
        .wait_logged(&operator, "dr", WAIT, |s| {
            has_state(s, SubmissionState::Accepted)
                && condition(s, "RestoreSubmitted").is_some_and(|c| c.status == "True")
        })
        .await;
    let status = object.status.expect("status");
    assert_eq!(
        processed_paths(&control).await,
        vec![OTHER_BACKUP.to_owned()],
        "the edited path is the one sent"
    );
    let record = status.submission.clone().expect("submission");
    assert_eq!(record.backup_file_path, OTHER_BACKUP, "{}", pretty(&status));
    let message = condition(&status, "RestoreSubmitted")
        .map(|c| c.message.clone())
        .unwrap_or_default();
    assert!(!message.contains("ignored"), "{message}");
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(processed_posts(&control).await, 1);
}

/// With every crate logging at trace, neither the login password nor the backup
/// password appears in the operator's log, the Events, the status or the metrics, through
/// a failed login at submission, the retry and the end of the restore.
#[tokio::test]
async fn trace_logging_keeps_passwords_out() {
    let (env, sim, control) = setup("tracelog").await;
    control
        .set_fault(&Fault::http_error(503, ErrorFormat::Json).only(&[Endpoint::Login]))
        .await
        .expect("fault");
    let kubeconfig = std::env::var_os("KUBECONFIG").expect("KUBECONFIG");
    let operator = Operator::start_with_env(
        &env,
        std::path::Path::new(&kubeconfig),
        &[],
        &[("RUST_LOG", "trace")],
    );
    env.create_restore("dr", &sim, restore_spec()).await;
    env.wait_logged(&operator, "dr", WAIT, |s| {
        has_state(s, SubmissionState::NotSent)
    })
    .await;
    control.clear_faults().await.expect("clear faults");
    let object = env
        .wait_logged(&operator, "dr", Duration::from_secs(120), |s| {
            s.phase.is_some_and(Phase::is_finished)
        })
        .await;
    let status = object.status.expect("status");
    assert_eq!(status.phase, Some(Phase::Completed), "{}", pretty(&status));
    assert!(ready(&status).is_some());

    let log = operator.log();
    assert!(
        log.contains("run-restore request sent"),
        "the log covers the request"
    );
    let raw_status = env.raw_status("dr").await.to_string();
    let events = env.event_text().await;
    let metrics = operator.metrics().await;
    for (text, what) in [
        (&log, "the operator log"),
        (&raw_status, "the status"),
        (&events, "the Events"),
        (&metrics, "the metrics"),
    ] {
        common::assert_no_secret(text, what);
        assert!(
            !text.contains(BACKUP_PASSWORD),
            "the backup password appears in {what}"
        );
    }
    assert_eq!(processed_posts(&control).await, 1);
}

/// Builds a Role and RoleBinding for the operator's user in `namespace`. With `watch`,
/// the Role also allows list and watch on the objects.
fn operator_role(namespace: &str, watch: bool) -> String {
    let object_verbs = if watch {
        r#"["get", "list", "watch"]"#
    } else {
        r#"["get"]"#
    };
    format!(
        r#"apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {{name: operator, namespace: {namespace}}}
rules:
  - {{apiGroups: ["sklm.dev"], resources: ["sklmrestores"], verbs: {object_verbs}}}
  - {{apiGroups: ["sklm.dev"], resources: ["sklmrestores/status"], verbs: ["get", "patch"]}}
  - {{apiGroups: [""], resources: ["secrets"], verbs: ["list", "watch"]}}
  - {{apiGroups: ["events.k8s.io"], resources: ["events"], verbs: ["create", "patch"]}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: operator, namespace: {namespace}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: operator}}
subjects:
  - {{kind: ServiceAccount, name: sklm-restore-operator, namespace: sklm-system}}
"#
    )
}

/// The path edit lands while the operator's object cache is stale. The fresh read before
/// the `Sending` record shows a `spec.restore` other than the cached one, so the old path
/// must not be sent. The cache is held stale by restarting the API server after taking
/// away list and watch, so the watch cannot list again.
#[tokio::test]
async fn stale_cache_path_edit_never_sends_old_path() {
    let plane = OwnControlPlane::up();
    let env = TestEnv::new_with_kubeconfig("stalespec", &plane.kubeconfig()).await;
    plane.kubectl(
        &["apply", "-f", "-"],
        Some(&operator_role(&env.namespace, true)),
    );
    let (env, sim, control) = setup_in(env).await;
    set_both_backups(&control).await;
    control.set_fault(&redirect_post()).await.expect("fault");
    let operator = Operator::start_with_kubeconfig(&env, &plane.operator_kubeconfig(), &[]);
    env.create_restore("dr", &sim, restore_spec()).await;
    env.wait_logged(&operator, "dr", WAIT, |s| {
        has_state(s, SubmissionState::NotSent)
    })
    .await;

    plane.kubectl(
        &["apply", "-f", "-"],
        Some(&operator_role(&env.namespace, false)),
    );
    plane.restart_apiserver();
    let patch = json!({"spec": {"restore": {"backupFilePath": OTHER_BACKUP}}});
    let deadline = Instant::now() + WAIT;
    while let Err(error) = env
        .restores()
        .patch("dr", &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        assert!(Instant::now() < deadline, "patch spec: {error}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    control.clear_faults().await.expect("clear faults");

    // The `NotSent` retry comes within 30 s; 60 s leaves room for a slow machine.
    tokio::time::sleep(Duration::from_secs(60)).await;
    let paths = processed_paths(&control).await;
    let status = current_status(&env, "dr").await;
    assert!(
        !paths.iter().any(|p| p == BACKUP),
        "the replaced path was sent: {paths:?}; status: {}",
        pretty(&status)
    );
    assert!(paths.len() <= 1, "{paths:?}");
}

/// Submission time of the pure `decide` tests, in seconds since the Unix epoch.
const SUBMITTED_AT: i64 = 1_800_000_000;

fn at(second: i64) -> Timestamp {
    Timestamp::from_second(second).expect("valid timestamp")
}

fn decide_settings() -> Settings {
    Settings {
        restart_timeout: Duration::from_secs(600),
        insecure_skip_tls_verify: false,
    }
}

/// Builds a status whose run-restore request the server accepted at [`SUBMITTED_AT`].
fn accepted_status(phase: Phase) -> SklmRestoreStatus {
    SklmRestoreStatus {
        phase: Some(phase),
        submitted_time: Some(Time(at(SUBMITTED_AT))),
        submission: Some(Submission {
            backup_file_path: BACKUP.to_owned(),
            state: SubmissionState::Accepted,
            http_status: None,
            message_id: None,
            message: "0 CTGKM3290I Restore process started.".to_owned(),
            finished_time: Some(Time(at(SUBMITTED_AT))),
        }),
        ..SklmRestoreStatus::default()
    }
}

fn idle_poll(second: i64, result: Option<RestoreResult>) -> Snapshot {
    Snapshot {
        sequence: 2,
        polled_at: at(second),
        outcome: Ok(RestoreObservation {
            step: RestorePhase::Idle,
            message: ServerMessage {
                code: "1".to_owned(),
                status: "CTGKM3293I Restore process is not running.".to_owned(),
            },
        }),
        result: result.map(Ok),
        failing_since: None,
    }
}

fn ready_reason(status: &SklmRestoreStatus) -> &str {
    ready(status).map_or("", |(_, reason)| reason)
}

/// The poller's latest snapshot may be older than the request, because the operator
/// retries a `NotSent` request every 30 s while a poller in backoff polls up to 60 s
/// apart. An outage seen before the request was not seen since it, so the grace of a
/// submitted restore still applies to the next "not running" poll.
#[test]
fn decide_outage_before_acceptance_keeps_grace() {
    let settings = decide_settings();
    let stale_outage = Snapshot {
        sequence: 1,
        polled_at: at(SUBMITTED_AT - 20),
        outcome: Err(Arc::new(SklmError::Unreachable {
            origin: "https://127.0.0.1:9443".to_owned(),
            detail: "Connection refused".to_owned(),
        })),
        result: None,
        failing_since: Some(at(SUBMITTED_AT - 60)),
    };
    let base = accepted_status(Phase::Pending);
    let first = decide::decide(
        &base,
        &Input::Poll(&stale_outage),
        settings,
        Some(1),
        at(SUBMITTED_AT),
    );
    println!("after the stale outage: {}", ready_reason(&first.status));

    let second = decide::decide(
        &first.status,
        &Input::Poll(&idle_poll(SUBMITTED_AT + 2, None)),
        settings,
        Some(1),
        at(SUBMITTED_AT + 2),
    );
    assert_eq!(
        ready_reason(&second.status),
        "SubmittedRestoreStarting",
        "2 s after acceptance, with no outage polled since: {}",
        pretty(&second.status)
    );

    let third = decide::decide(
        &second.status,
        &Input::Poll(&idle_poll(SUBMITTED_AT + 3, Some(RestoreResult::Unknown))),
        settings,
        Some(1),
        at(SUBMITTED_AT + 3),
    );
    assert_eq!(
        third.status.phase,
        Some(Phase::Running),
        "a restore accepted 3 s ago is not over: {}",
        pretty(&third.status)
    );
}

/// Within the grace the "not running" polls repeat, so the poller triggers no
/// reconcile. The decision must request a recheck when the grace ends, or the object
/// waits for the 300 s resync.
#[test]
fn decide_grace_schedules_recheck_at_its_end() {
    let previous = accepted_status(Phase::Running);
    let decision = decide::decide(
        &previous,
        &Input::Poll(&idle_poll(SUBMITTED_AT + 10, Some(RestoreResult::Unknown))),
        decide_settings(),
        Some(1),
        at(SUBMITTED_AT + 10),
    );
    assert_eq!(
        ready_reason(&decision.status),
        "SubmittedRestoreStarting",
        "{}",
        pretty(&decision.status)
    );
    let recheck = decision.recheck_after;
    assert!(
        recheck.is_some_and(|after| after <= Duration::from_secs(112)),
        "the grace ends 110 s later, but the decision asks for a recheck after {recheck:?}"
    );
}

//! `spec.restore`: the operator starts the restore itself, at most once per object.

mod common;

use std::time::Duration;

use common::{Operator, TestEnv, condition, ready};
use serde_json::json;
use sklm_restore_operator::crd::{Phase, SubmissionState};
use sklm_sim::RunSettings;

const WAIT: Duration = Duration::from_secs(40);
const BACKUP: &str = "/opt/backups/sklm_backup.jar";
const BACKUP_PASSWORD: &str = "backup-passw0rd";

fn restore_spec(path: &str) -> serde_json::Value {
    json!({"restore": {"backupFilePath": path, "passwordSecretRef": {"name": "backup"}}})
}

async fn put_backup_secret(env: &TestEnv) {
    env.put_secret("backup", &[("password", BACKUP_PASSWORD.as_bytes())])
        .await;
}

async fn run_restore_posts(control: &sklm_sim::ControlClient) -> usize {
    control.count("POST", "/ckms/restore").await.expect("count")
}

#[tokio::test]
async fn submitted_restore_completes_through_restart() {
    let env = TestEnv::new("submit").await;
    let sim = env.start_sim(&[]);
    let control = sim.control().expect("control client");
    // A fast run with a 6 s restart: a 5 s poll misses the steps and sees the outage.
    let defaults = RunSettings {
        step_ms: 200,
        restart_seconds: 6,
        ..RunSettings::default()
    };
    control
        .set_run_defaults(&defaults)
        .await
        .expect("run defaults");
    env.put_default_secrets(&sim).await;
    put_backup_secret(&env).await;
    let operator = Operator::start(&env, &[]);
    let mut spec = restore_spec(BACKUP);
    common::merge(&mut spec, &json!({"pollIntervalSeconds": 5}));
    env.create_restore("dr", &sim, spec).await;

    let accepted = env
        .wait_logged(&operator, "dr", WAIT, |s| {
            s.submission
                .as_ref()
                .is_some_and(|r| r.state == SubmissionState::Accepted)
        })
        .await;
    let status = accepted.status.expect("status");
    assert!(status.submitted_time.is_some());
    assert_eq!(
        condition(&status, "RestoreSubmitted").map(|c| c.status.as_str()),
        Some("True")
    );

    let object = env
        .wait_logged(&operator, "dr", Duration::from_secs(60), |s| {
            s.phase == Some(Phase::Completed)
        })
        .await;
    let status = object.status.expect("status");
    assert_eq!(ready(&status), Some(("True", "RestoreEndedResultUnknown")));
    assert_eq!(run_restore_posts(&control).await, 1);
    let requests = control.requests().await.expect("requests");
    let post = requests
        .iter()
        .find(|r| r.method == "POST" && r.path.ends_with("/ckms/restore"))
        .expect("run-restore request");
    assert_eq!(post.backup_file_path.as_deref(), Some(BACKUP));
    assert_eq!(post.backup_password_present, Some(true));
    assert!(
        !operator.log().contains(BACKUP_PASSWORD),
        "backup password logged"
    );
}

#[tokio::test]
async fn submitted_restore_refusal_is_stalled() {
    let env = TestEnv::new("refuse").await;
    let sim = env.start_sim(&[]);
    let control = sim.control().expect("control client");
    env.put_default_secrets(&sim).await;
    put_backup_secret(&env).await;
    let operator = Operator::start(&env, &[]);
    env.create_restore("dr", &sim, restore_spec("/opt/backups/missing.jar"))
        .await;

    let object = env
        .wait_logged(&operator, "dr", WAIT, |s| s.phase == Some(Phase::Failed))
        .await;
    let status = object.status.expect("status");
    assert_eq!(ready(&status), Some(("False", "RestoreRejected")));
    assert_eq!(
        condition(&status, "Stalled").map(|c| c.status.as_str()),
        Some("True")
    );
    let record = status.submission.expect("submission");
    assert_eq!(record.state, SubmissionState::Rejected);
    assert_eq!(record.http_status, Some(404));
    assert!(
        record
            .message_id
            .as_deref()
            .is_some_and(|id| id.starts_with("CTGKM")),
        "{record:?}"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        run_restore_posts(&control).await,
        1,
        "a refusal is not retried"
    );
}

#[tokio::test]
async fn submitted_restore_not_resent_after_operator_kill() {
    let env = TestEnv::new("killsubmit").await;
    let sim = env.start_sim(&[]);
    let control = sim.control().expect("control client");
    let defaults = RunSettings {
        step_ms: 1500,
        restart_seconds: 3,
        ..RunSettings::default()
    };
    control
        .set_run_defaults(&defaults)
        .await
        .expect("run defaults");
    env.put_default_secrets(&sim).await;
    put_backup_secret(&env).await;
    let mut first = Operator::start(&env, &[]);
    env.create_restore("dr", &sim, restore_spec(BACKUP)).await;

    // Kill the operator as soon as the request reaches the server.
    let deadline = std::time::Instant::now() + WAIT;
    while run_restore_posts(&control).await == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "no run-restore request"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.kill();
    let second = Operator::start(&env, &[]);
    let object = env
        .wait_logged(&second, "dr", Duration::from_secs(60), |s| {
            s.phase.is_some_and(Phase::is_finished)
        })
        .await;
    let status = object.status.expect("status");
    assert_eq!(status.phase, Some(Phase::Completed));
    assert_eq!(run_restore_posts(&control).await, 1, "sent exactly once");
    let state = status.submission.expect("submission").state;
    assert!(
        matches!(state, SubmissionState::Accepted | SubmissionState::Unknown),
        "{state:?}"
    );
}

#[tokio::test]
async fn submitted_restore_spec_edit_sends_nothing() {
    let env = TestEnv::new("editsubmit").await;
    let sim = env.start_sim(&[]);
    let control = sim.control().expect("control client");
    let defaults = RunSettings {
        step_ms: 3000,
        ..RunSettings::default()
    };
    control
        .set_run_defaults(&defaults)
        .await
        .expect("run defaults");
    env.put_default_secrets(&sim).await;
    put_backup_secret(&env).await;
    let operator = Operator::start(&env, &[]);
    env.create_restore("dr", &sim, restore_spec(BACKUP)).await;
    env.wait_logged(&operator, "dr", WAIT, |s| s.phase == Some(Phase::Running))
        .await;

    let patch = json!({"spec": {"restore": {"backupFilePath": "/opt/backups/other.jar"}}});
    env.restores()
        .patch(
            "dr",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&patch),
        )
        .await
        .expect("patch spec");
    let object = env
        .wait_logged(&operator, "dr", WAIT, |s| {
            s.observed_generation == Some(2)
                && condition(s, "RestoreSubmitted")
                    .is_some_and(|c| c.message.contains("change is ignored"))
        })
        .await;
    let status = object.status.expect("status");
    assert_eq!(
        status.submission.expect("submission").backup_file_path,
        BACKUP
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(run_restore_posts(&control).await, 1, "no second request");
}

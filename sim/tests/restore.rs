//! Restore runs and simulated restarts of an in-process simulator: phases seen over HTTPS,
//! the closed port during the restart, forgotten sessions, and the result afterwards.

mod common;

use std::time::{Duration, Instant};

use common::{TestSim, api_client};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sklm_sim::server::ServerOptions;
use sklm_sim::{IsRunningShape, Outcome, Phase, RunRequest, RunSettings, RunStage};

const WAIT: Duration = Duration::from_secs(15);

async fn fast_sim(restart_seconds: u64) -> TestSim {
    let mut options = ServerOptions::default();
    options.sim.run_defaults = RunSettings {
        step_ms: 60,
        outcome: Outcome::Success,
        restart_seconds,
        keep_result_after_restart: false,
    };
    TestSim::start_with(options).await
}

async fn post_restore(sim: &TestSim, id: &str, body: &Value) -> (StatusCode, Value) {
    let response = sim
        .api
        .post(sim.url("/ckms/restore"))
        .header("Authorization", format!("SKLMAuth userAuthId={id}"))
        .json(body)
        .send()
        .await
        .expect("restore request sent");
    let status = response.status();
    (status, response.json().await.expect("JSON body"))
}

#[tokio::test]
async fn restore_request_checks_backup() {
    let sim = fast_sim(0).await;
    let id = sim.login().await;
    let path = "/opt/backups/sklm_backup.jar";

    let (status, body) = post_restore(&sim, &id, &json!({"backupFilePath": path})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    let wrong = json!({"backupFilePath": path, "password": "nope"});
    let (status, _) = post_restore(&sim, &id, &wrong).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let unknown = json!({"backupFilePath": "/tmp/other.jar", "password": "x"});
    let (status, _) = post_restore(&sim, &id, &unknown).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let (status, body) = post_restore(&sim, &id, &json!({"password": "x"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["code"], json!("CTGKM0630E"));

    let valid = json!({"backupFilePath": path, "password": "backup-passw0rd"});
    let (status, body) = post_restore(&sim, &id, &valid).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["code"], json!("0"));

    let (status, body) = post_restore(&sim, &id, &valid).await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "second run must be rejected: {body}"
    );

    let records = sim.control.requests().await.expect("requests");
    let restores: Vec<_> = records
        .iter()
        .filter(|record| record.path.ends_with("/ckms/restore"))
        .collect();
    assert_eq!(restores.len(), 6);
    assert_eq!(restores[0].backup_password_present, Some(false));
    assert_eq!(restores[1].backup_password_present, Some(true));
    assert_eq!(restores[4].backup_file_path.as_deref(), Some(path));
    let text = serde_json::to_string(&records).expect("serialize");
    assert!(!text.contains("backup-passw0rd"), "backup password leaked");
}

#[tokio::test]
async fn restore_run_ends_with_restart() {
    let sim = fast_sim(1).await;
    sim.control
        .set_shape(IsRunningShape::PhaseName)
        .await
        .expect("set shape");
    let id = sim.login().await;
    let request = json!({
        "backupFilePath": "/opt/backups/sklm_backup.jar",
        "password": "backup-passw0rd"
    });
    let (status, _) = post_restore(&sim, &id, &request).await;
    assert_eq!(status, StatusCode::OK);

    // Poll every 10 ms, for at most WAIT, until COMPLETED shows.
    let deadline = Instant::now() + WAIT;
    let mut seen: Vec<String> = Vec::new();
    while Instant::now() < deadline {
        let (_, body) = sim.get_json("/ckms/restore/isrunning", &id).await;
        let phase = body["status"].as_str().expect("status").to_owned();
        if seen.last() != Some(&phase) {
            seen.push(phase.clone());
        }
        if phase == "COMPLETED" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        seen.last().map(String::as_str),
        Some("COMPLETED"),
        "{seen:?}"
    );
    let (_, result) = sim.get_json("/ckms/restore/result", &id).await;
    assert_eq!(
        result["result"],
        json!("0"),
        "result visible before the restart"
    );

    let down = sim
        .control
        .wait_for_state(WAIT, |state| !state.api_listening)
        .await
        .expect("port closes for the restart");
    assert_eq!(down.phase, Phase::Idle);
    let fresh = api_client(sim.ca_pem(), Duration::from_secs(2));
    let rejected = fresh.get(sim.url("/ckms/restore/isrunning")).send().await;
    let error = rejected.expect_err("port must be closed during the restart");
    assert!(error.is_connect(), "{error:?}");

    let after = sim
        .control
        .wait_for_state(WAIT, |state| state.api_listening && state.run.is_none())
        .await
        .expect("restart ends");
    let last_run = after.last_run.expect("last run");
    assert_eq!(last_run.stage, RunStage::Finished);
    assert_eq!(
        last_run.backup_file_path.as_deref(),
        Some("/opt/backups/sklm_backup.jar")
    );

    let (status, body) = sim.get_json("/ckms/restore/isrunning", &id).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "old id must be forgotten");
    assert_eq!(body["code"], json!("CTGKM6004E"));

    let new_id = sim.login().await;
    let (_, result) = sim.get_json("/ckms/restore/result", &new_id).await;
    assert_eq!(result, json!({"code": "-1", "result": "-1"}));
    let (_, idle) = sim.get_json("/ckms/restore/isrunning", &new_id).await;
    assert_eq!(idle["status"], json!("IDLE"));
}

#[tokio::test]
async fn control_run_can_keep_result() {
    let sim = fast_sim(1).await;
    let request = RunRequest {
        step_ms: Some(10),
        outcome: Some(Outcome::Failure),
        keep_result_after_restart: Some(true),
        ..RunRequest::default()
    };
    let run = sim.control.run_restore(&request).await.expect("run starts");
    assert_eq!(run.settings.restart_seconds, 1);

    let busy = sim.control.run_restore(&RunRequest::default()).await;
    let error = busy.expect_err("second run must be rejected");
    assert!(error.to_string().contains("409"), "{error}");

    let state = sim
        .control
        .wait_for_state(WAIT, |state| {
            state
                .last_run
                .as_ref()
                .is_some_and(|last| last.id == run.id)
        })
        .await
        .expect("run finishes");
    assert!(state.api_listening);
    assert_eq!(state.phase, Phase::Idle);
    assert_eq!(state.result, sklm_sim::RestoreResult::Failure);
}

#[tokio::test]
async fn control_restart_closes_port() {
    let sim = fast_sim(0).await;
    sim.control
        .set_phase(Phase::Cleanup)
        .await
        .expect("set phase");
    let id = sim.login().await;

    let state = sim.control.restart(1).await.expect("restart");
    assert!(!state.api_listening);
    assert_eq!(state.sessions_active, 0);
    let fresh = api_client(sim.ca_pem(), Duration::from_secs(2));
    let rejected = fresh.get(sim.url("/ckms/restore/isrunning")).send().await;
    assert!(rejected.expect_err("port closed").is_connect());

    sim.control
        .wait_for_state(WAIT, |state| state.api_listening)
        .await
        .expect("port reopens");
    let (status, _) = sim.get_json("/ckms/restore/isrunning", &id).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let new_id = sim.login().await;
    let (_, body) = sim.get_json("/ckms/restore/isrunning", &new_id).await;
    assert!(
        body["status"]
            .as_str()
            .is_some_and(|text| text.contains("CLEANUP")),
        "phase kept across a plain restart: {body}"
    );
}

#[tokio::test]
async fn auto_restore_starts_by_itself() {
    let mut options = ServerOptions {
        auto_restore_after: Some(Duration::ZERO),
        ..ServerOptions::default()
    };
    options.sim.run_defaults = RunSettings {
        step_ms: 10,
        outcome: Outcome::Success,
        restart_seconds: 0,
        keep_result_after_restart: false,
    };
    let sim = TestSim::start_with(options).await;
    let state = sim
        .control
        .wait_for_state(WAIT, |state| state.last_run.is_some())
        .await
        .expect("automatic run finishes");
    assert_eq!(state.phase, Phase::Completed);
    assert_eq!(state.result, sklm_sim::RestoreResult::Success);
    let trigger = state.last_run.map(|run| run.trigger);
    assert_eq!(trigger, Some(sklm_sim::RunTrigger::Auto));
}

#[tokio::test]
async fn control_run_accepts_empty_body() {
    let sim = fast_sim(5).await;
    let http = common::plain_client();
    let base = sim.control.base_url().to_owned();

    let defaults = http
        .put(format!("{base}/run-defaults"))
        .json(&json!({"step_ms": 5, "restart_seconds": 0}))
        .send()
        .await
        .expect("sent");
    assert_eq!(defaults.status(), StatusCode::OK);
    let state: Value = defaults.json().await.expect("JSON state");
    assert_eq!(state["run_defaults"]["step_ms"], json!(5));
    assert_eq!(state["run_defaults"]["outcome"], json!("success"));

    let started = http.post(format!("{base}/run")).send().await.expect("sent");
    assert_eq!(started.status(), StatusCode::ACCEPTED);
    let run: Value = started.json().await.expect("JSON run");
    assert_eq!(run["settings"]["restart_seconds"], json!(0));

    let state = sim
        .control
        .wait_for_state(WAIT, |state| state.last_run.is_some())
        .await
        .expect("run finishes");
    assert_eq!(state.phase, Phase::Completed);
}

//! End to end on the real API server: the operator binary watching SklmRestore objects
//! against the SKLM simulator over HTTPS.

mod common;

use std::time::Duration;

use common::{Operator, TestEnv, assert_no_secret, condition, has_reason, ready};
use serde_json::json;
use sklm_restore_operator::crd::{Phase, RestorePhase};
use sklm_sim::{IsRunningShape, Phase as SimPhase, RestoreResult};

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test]
async fn restore_watched_step_by_step_to_completed() {
    let env = TestEnv::new("steps").await;
    let sim = env.start_sim(&[]);
    let control = sim.control().expect("control client");
    env.put_default_secrets(&sim).await;
    let operator = Operator::start(&env, &[]);
    env.create_restore("dr", &sim, json!({})).await;

    env.wait_status("dr", WAIT, |s| s.phase == Some(Phase::Waiting))
        .await;
    let steps = [
        (SimPhase::Initialize, RestorePhase::Initialize),
        (SimPhase::CreateTempDir, RestorePhase::CreateTempDir),
        (
            SimPhase::RestoreConfigFiles,
            RestorePhase::RestoreConfigFiles,
        ),
        (SimPhase::RestoreKeystores, RestorePhase::RestoreKeystores),
        (SimPhase::RestoreDatabases, RestorePhase::RestoreDatabases),
        (SimPhase::Cleanup, RestorePhase::Cleanup),
    ];
    let mut start_time = None;
    for (sim_phase, expected) in steps {
        control.set_phase(sim_phase).await.expect("set phase");
        let object = env
            .wait_status("dr", WAIT, |s| s.restore_phase == Some(expected))
            .await;
        let status = object.status.expect("status");
        assert_eq!(status.phase, Some(Phase::Running), "{expected:?}");
        assert_eq!(ready(&status), Some(("False", "RestoreInProgress")));
        assert!(status.start_time.is_some());
        start_time.get_or_insert(status.start_time.clone());
        assert_eq!(
            start_time.as_ref(),
            Some(&status.start_time),
            "startTime kept"
        );
    }
    control
        .set_result(RestoreResult::Success)
        .await
        .expect("set result");
    control.set_phase(SimPhase::Idle).await.expect("set phase");
    let object = env
        .wait_status("dr", WAIT, |s| s.phase == Some(Phase::Completed))
        .await;
    let status = object.status.expect("status");
    assert_eq!(ready(&status), Some(("True", "RestoreSucceeded")));
    assert_eq!(
        condition(&status, "Reconciling").map(|c| c.status.as_str()),
        Some("False")
    );
    assert_eq!(
        condition(&status, "Stalled").map(|c| c.status.as_str()),
        Some("False")
    );
    assert!(status.completion_time.is_some());
    assert_eq!(status.start_time, start_time.flatten());

    // A finished restore never moves back.
    control
        .set_phase(SimPhase::Initialize)
        .await
        .expect("set phase");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let again = env
        .restores()
        .get("dr")
        .await
        .expect("get")
        .status
        .expect("status");
    assert_eq!(again.phase, Some(Phase::Completed));
    assert_eq!(again.restore_phase, Some(RestorePhase::Idle));
    assert_no_secret(&operator.log(), "the operator log");
}

#[tokio::test]
async fn restore_run_seen_completed_is_succeeded() {
    let env = TestEnv::new("run").await;
    let sim = env.start_sim(&[]);
    let control = sim.control().expect("control client");
    env.put_default_secrets(&sim).await;
    let operator = Operator::start(&env, &[]);
    env.create_restore("dr", &sim, json!({})).await;
    env.wait_status("dr", WAIT, |s| s.phase == Some(Phase::Waiting))
        .await;

    // Each step lasts 1.5 s, so a 1 s poll sees COMPLETED before the restart.
    let run = sklm_sim::RunRequest {
        step_ms: Some(1500),
        restart_seconds: Some(4),
        ..Default::default()
    };
    control.run_restore(&run).await.expect("start run");
    env.wait_logged(&operator, "dr", WAIT, |s| s.phase == Some(Phase::Running))
        .await;
    let object = env
        .wait_logged(&operator, "dr", Duration::from_secs(60), |s| {
            s.phase == Some(Phase::Completed)
        })
        .await;
    let status = object.status.expect("status");
    assert_eq!(ready(&status), Some(("True", "RestoreSucceeded")));
    assert_eq!(status.restore_phase, Some(RestorePhase::Completed));
}

#[tokio::test]
async fn restore_end_told_through_server_restart() {
    let env = TestEnv::new("restart").await;
    let sim = env.start_sim(&[]);
    let control = sim.control().expect("control client");
    env.put_default_secrets(&sim).await;
    let operator = Operator::start(&env, &[]);
    env.create_restore("dr", &sim, json!({})).await;
    control
        .set_phase(SimPhase::RestoreDatabases)
        .await
        .expect("set phase");
    env.wait_logged(&operator, "dr", WAIT, |s| s.phase == Some(Phase::Running))
        .await;

    // The server goes away mid-step and comes back idle, its result reset to -1.
    let restart = sklm_sim::RestartRequest {
        seconds: 6,
        reset_phase: true,
        reset_result: true,
    };
    control.restart_with(&restart).await.expect("restart");
    let during = env
        .wait_logged(&operator, "dr", WAIT, |s| has_reason(s, "ServerRestarting"))
        .await;
    let during = during.status.expect("status");
    assert_eq!(during.phase, Some(Phase::Running));
    assert_eq!(
        condition(&during, "Stalled").map(|c| c.status.as_str()),
        Some("False")
    );

    let object = env
        .wait_logged(&operator, "dr", WAIT, |s| s.phase == Some(Phase::Completed))
        .await;
    let status = object.status.expect("status");
    // After the restart the result service reads -1: the end is known, success is not.
    assert_eq!(ready(&status), Some(("True", "RestoreEndedResultUnknown")));
    let message = &condition(&status, "Ready").expect("Ready").message;
    assert!(message.contains("not confirmed"), "{message}");
    assert_eq!(status.last_error, None);
    assert!(status.completion_time.is_some());
    assert!(!operator.log().contains("422"), "no rejected status write");
}

#[tokio::test]
async fn restore_each_body_shape_read() {
    let env = TestEnv::new("shapes").await;
    let sim = env.start_sim(&[]);
    let control = sim.control().expect("control client");
    env.put_default_secrets(&sim).await;
    let _operator = Operator::start(&env, &[]);
    env.create_restore("dr", &sim, json!({})).await;
    env.wait_status("dr", WAIT, |s| s.phase == Some(Phase::Waiting))
        .await;

    let cases = [
        (
            IsRunningShape::Message,
            SimPhase::Initialize,
            RestorePhase::Initialize,
        ),
        (
            IsRunningShape::PhaseName,
            SimPhase::CreateTempDir,
            RestorePhase::CreateTempDir,
        ),
        (
            IsRunningShape::PhaseNumber,
            SimPhase::RestoreKeystores,
            RestorePhase::RestoreKeystores,
        ),
        (
            IsRunningShape::PhaseNumberJson,
            SimPhase::RestoreDatabases,
            RestorePhase::RestoreDatabases,
        ),
    ];
    for (index, (shape, sim_phase, expected)) in cases.into_iter().enumerate() {
        control.set_shape(shape).await.expect("set shape");
        control
            .set_extra_keys(index % 2 == 1)
            .await
            .expect("set extra keys");
        control.set_phase(sim_phase).await.expect("set phase");
        let object = env
            .wait_status("dr", WAIT, |s| s.restore_phase == Some(expected))
            .await;
        let status = object.status.expect("status");
        assert_eq!(status.phase, Some(Phase::Running), "{shape:?}");
        let message = status.server_message.expect("serverMessage");
        assert!(!message.status.is_empty(), "{shape:?}");
    }
}

#[tokio::test]
async fn restore_documented_idle_message_is_waiting() {
    let env = TestEnv::new("idle").await;
    let sim = env.start_sim(&[]);
    env.put_default_secrets(&sim).await;
    let _operator = Operator::start(&env, &[]);
    env.create_restore("dr", &sim, json!({})).await;
    let object = env
        .wait_status("dr", WAIT, |s| s.phase == Some(Phase::Waiting))
        .await;
    let status = object.status.expect("status");
    assert_eq!(status.restore_phase, Some(RestorePhase::Idle));
    let message = status.server_message.clone().expect("serverMessage");
    assert_eq!(message.code, "1");
    assert_eq!(message.status, "CTGKM3293I Restore process is not running.");
    assert_eq!(ready(&status), Some(("False", "WaitingForRestore")));
    assert_eq!(status.observed_generation, Some(1));
}

#[tokio::test]
async fn wrong_password_is_authentication_failed() {
    let env = TestEnv::new("authfail").await;
    let sim = env.start_sim(&[]);
    env.put_default_secrets(&sim).await;
    env.put_secret(
        "wrong",
        &[
            ("userid", common::USER.as_bytes()),
            ("password", b"Wrong-0b5e1a77"),
        ],
    )
    .await;
    let operator = Operator::start(&env, &[]);
    env.create_restore(
        "dr",
        &sim,
        json!({"credentialsSecretRef": {"name": "wrong"}}),
    )
    .await;
    let object = env
        .wait_status("dr", WAIT, |s| has_reason(s, "AuthenticationFailed"))
        .await;
    let status = object.status.expect("status");
    assert_eq!(
        condition(&status, "Stalled").map(|c| c.status.as_str()),
        Some("True")
    );
    let last_error = status.last_error.clone().expect("lastError");
    assert_eq!(last_error.http_status, Some(401));
    assert_eq!(last_error.message_id.as_deref(), Some("CTGKM6003E"));

    tokio::time::sleep(Duration::from_secs(2)).await;
    let status_text = serde_json::to_string(&status).expect("json");
    let events = env.event_text().await;
    assert!(events.contains("AuthenticationFailed"), "{events}");
    for (text, what) in [
        (operator.log(), "the operator log"),
        (status_text, "the status"),
        (events, "the events"),
    ] {
        assert!(
            !text.contains("Wrong-0b5e1a77"),
            "the wrong password appears in {what}"
        );
        assert_no_secret(&text, what);
    }
}

#[tokio::test]
async fn password_fixed_in_secret_is_picked_up() {
    let env = TestEnv::new("rotate").await;
    let sim = env.start_sim(&[]);
    env.put_default_secrets(&sim).await;
    env.put_secret(
        "admin",
        &[
            ("userid", common::USER.as_bytes()),
            ("password", b"Wrong-0b5e1a77"),
        ],
    )
    .await;
    let _operator = Operator::start(&env, &[]);
    env.create_restore("dr", &sim, json!({})).await;
    env.wait_status("dr", WAIT, |s| has_reason(s, "AuthenticationFailed"))
        .await;
    // A Secret made with --from-file ends in a line break; one is stripped.
    let fixed = format!("{}\r\n", common::PASSWORD);
    env.put_secret(
        "admin",
        &[("userid", b"klmadmin\n"), ("password", fixed.as_bytes())],
    )
    .await;
    let object = env
        .wait_status("dr", Duration::from_secs(10), |s| {
            s.phase == Some(Phase::Waiting) && has_reason(s, "WaitingForRestore")
        })
        .await;
    assert_eq!(object.status.expect("status").last_error, None);
}

#[tokio::test]
async fn missing_secret_and_key_are_invalid_secret() {
    let env = TestEnv::new("nosecret").await;
    let sim = env.start_sim(&[]);
    env.put_default_secrets(&sim).await;
    env.put_secret(
        "nopass",
        &[("userid", common::USER.as_bytes()), ("passwd", b"x")],
    )
    .await;
    let _operator = Operator::start(&env, &[]);
    env.create_restore(
        "absent",
        &sim,
        json!({"credentialsSecretRef": {"name": "does-not-exist"}}),
    )
    .await;
    env.create_restore(
        "nokey",
        &sim,
        json!({"credentialsSecretRef": {"name": "nopass"}}),
    )
    .await;

    let absent = env
        .wait_status("absent", WAIT, |s| has_reason(s, "InvalidSecret"))
        .await;
    let absent = absent.status.expect("status");
    let message = &condition(&absent, "Ready").expect("Ready").message;
    assert_eq!(
        message,
        &format!("Secret {}/does-not-exist not found", env.namespace)
    );
    assert_eq!(absent.phase, Some(Phase::Pending));
    assert_eq!(
        condition(&absent, "Stalled").map(|c| c.status.as_str()),
        Some("True")
    );

    let nokey = env
        .wait_status("nokey", WAIT, |s| has_reason(s, "InvalidSecret"))
        .await;
    let nokey = nokey.status.expect("status");
    let message = &condition(&nokey, "Ready").expect("Ready").message;
    assert_eq!(
        message,
        &format!("Secret {}/nopass has no key \"password\"", env.namespace)
    );

    // Creating the Secret is noticed without waiting for a retry.
    env.put_secret(
        "does-not-exist",
        &[
            ("userid", common::USER.as_bytes()),
            ("password", common::PASSWORD.as_bytes()),
        ],
    )
    .await;
    env.wait_status("absent", Duration::from_secs(10), |s| {
        s.phase == Some(Phase::Waiting)
    })
    .await;
}

#[tokio::test]
async fn server_down_is_unreachable_then_recovers() {
    let env = TestEnv::new("down").await;
    let sim = env.start_sim(&[]);
    let control = sim.control().expect("control client");
    env.put_default_secrets(&sim).await;
    let _operator = Operator::start(&env, &[]);
    env.create_restore("dr", &sim, json!({})).await;
    env.wait_status("dr", WAIT, |s| s.phase == Some(Phase::Waiting))
        .await;

    control.restart(8).await.expect("restart");
    let object = env
        .wait_status("dr", WAIT, |s| has_reason(s, "ServerUnreachable"))
        .await;
    let status = object.status.expect("status");
    assert_eq!(status.phase, Some(Phase::Waiting));
    assert_eq!(
        condition(&status, "Reconciling").map(|c| c.status.as_str()),
        Some("True")
    );
    assert!(status.last_error.is_some());

    let object = env
        .wait_status("dr", WAIT, |s| has_reason(s, "WaitingForRestore"))
        .await;
    assert_eq!(object.status.expect("status").last_error, None);
}

#[tokio::test]
async fn revoked_session_relogs_once_silently() {
    let env = TestEnv::new("revoke").await;
    let sim = env.start_sim(&[]);
    let control = sim.control().expect("control client");
    env.put_default_secrets(&sim).await;
    let _operator = Operator::start(&env, &[]);
    env.create_restore("dr", &sim, json!({})).await;
    let before = env
        .wait_status("dr", WAIT, |s| s.phase == Some(Phase::Waiting))
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        control.login_count().await.expect("count"),
        1,
        "one login for many polls"
    );

    control.revoke_sessions().await.expect("revoke");
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        control.login_count().await.expect("count"),
        2,
        "exactly one re-login"
    );
    let after = env.restores().get("dr").await.expect("get");
    assert_eq!(
        after.status, before.status,
        "no error shown, no status change"
    );
}

#[tokio::test]
async fn two_objects_share_one_session_and_poll() {
    let env = TestEnv::new("shared").await;
    let sim = env.start_sim(&[]);
    let control = sim.control().expect("control client");
    env.put_default_secrets(&sim).await;
    let _operator = Operator::start(&env, &[]);
    env.create_restore("first", &sim, json!({"pollIntervalSeconds": 2}))
        .await;
    env.create_restore("second", &sim, json!({"pollIntervalSeconds": 2}))
        .await;
    env.wait_status("first", WAIT, |s| s.phase == Some(Phase::Waiting))
        .await;
    env.wait_status("second", WAIT, |s| s.phase == Some(Phase::Waiting))
        .await;

    control.clear_requests().await.expect("clear");
    tokio::time::sleep(Duration::from_secs(10)).await;
    let polls = control
        .count("GET", "/ckms/restore/isrunning")
        .await
        .expect("count");
    // One poller at 2 s (±10 % jitter) makes 4 to 6 polls in 10 s; two would make twice that.
    assert!((4..=6).contains(&polls), "{polls} polls in 10 s");
    assert_eq!(
        control.login_count().await.expect("count"),
        0,
        "no new login"
    );
}

#[tokio::test]
async fn spec_change_moves_observed_generation() {
    let env = TestEnv::new("generation").await;
    let sim = env.start_sim(&[]);
    env.put_default_secrets(&sim).await;
    let _operator = Operator::start(&env, &[]);
    env.create_restore("dr", &sim, json!({})).await;
    env.wait_status("dr", WAIT, |s| {
        s.observed_generation == Some(1) && s.phase.is_some()
    })
    .await;

    let patch = json!({"spec": {"pollIntervalSeconds": 2}});
    env.restores()
        .patch(
            "dr",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&patch),
        )
        .await
        .expect("patch spec");
    let object = env
        .wait_status("dr", WAIT, |s| s.observed_generation == Some(2))
        .await;
    let status = object.status.expect("status");
    for condition in &status.conditions {
        assert_eq!(
            condition.observed_generation,
            Some(2),
            "{}",
            condition.type_
        );
    }
}

#[tokio::test]
async fn idle_object_causes_no_status_writes() {
    let env = TestEnv::new("idlewrites").await;
    let sim = env.start_sim(&[]);
    let control = sim.control().expect("control client");
    env.put_default_secrets(&sim).await;
    let operator = Operator::start(&env, &[]);
    env.create_restore("dr", &sim, json!({})).await;
    let first = env
        .wait_status("dr", WAIT, |s| s.phase == Some(Phase::Waiting))
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let settled = env.restores().get("dr").await.expect("get");
    control.clear_requests().await.expect("clear");
    tokio::time::sleep(Duration::from_secs(6)).await;
    let later = env.restores().get("dr").await.expect("get");
    assert!(
        control
            .count("GET", "/ckms/restore/isrunning")
            .await
            .expect("count")
            >= 4,
        "polls continued"
    );
    assert_eq!(
        later.metadata.resource_version, settled.metadata.resource_version,
        "no write between polls"
    );
    assert_eq!(later.status, first.status);
    let metrics = operator.metrics().await;
    assert!(
        metrics.contains(r#"sklm_status_writes_total{outcome="success"} 1"#),
        "{metrics}"
    );
}

//! The operator and the Kubernetes API server: a restart of the API server under a
//! running operator (on a control plane of this test's own), the first status write with
//! every optional field empty, edits racing the polls, and namespace deletion.

// Tests keep their full size: each one is a scenario with its checks in order.
#![allow(clippy::too_many_lines)]

mod common;

use std::time::{Duration, Instant};

use common::{Operator, OwnControlPlane, TestEnv, assert_conditions, free_port, has_reason};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams};
use serde_json::json;
use sklm_restore_operator::crd::{Phase, RestorePhase};
use sklm_sim::Phase as SimPhase;

const WAIT: Duration = Duration::from_secs(30);

fn ready_of(
    object: &sklm_restore_operator::crd::SklmRestore,
) -> sklm_restore_operator::crd::Condition {
    let status = object.status.as_ref().expect("status");
    common::condition(status, "Ready")
        .cloned()
        .expect("Ready condition")
}

#[tokio::test]
async fn apiserver_restart_operator_carries_on() {
    let plane = OwnControlPlane::up();
    let env = TestEnv::new_with_kubeconfig("cprestart", &plane.kubeconfig()).await;
    let sim = env.start_sim(&[]);
    let control = sim.control().expect("control client");
    env.put_default_secrets(&sim).await;
    let mut operator = Operator::start_with_kubeconfig(&env, &plane.kubeconfig(), &[]);
    env.create_restore("done", &sim, json!({})).await;
    control
        .set_phase(SimPhase::Cleanup)
        .await
        .expect("set phase");
    env.wait_logged(&operator, "done", WAIT, |s| s.phase == Some(Phase::Running))
        .await;
    control
        .set_result(sklm_sim::RestoreResult::Success)
        .await
        .expect("set result");
    control.set_phase(SimPhase::Idle).await.expect("set phase");
    let done = env
        .wait_logged(&operator, "done", WAIT, |s| {
            s.phase == Some(Phase::Completed)
        })
        .await;
    let done_ready = ready_of(&done);
    assert_eq!(done_ready.status, "True");

    // A second server, for an object that still waits.
    let waiting_sim = env.start_sim(&[]);
    let waiting_control = waiting_sim.control().expect("control client");
    let waiting_ca = waiting_sim.ca_pem().expect("CA");
    env.put_secret("waiting-ca", &[("ca.crt", waiting_ca.as_bytes())])
        .await;
    env.create_restore(
        "waiting",
        &waiting_sim,
        json!({"server": {"caSecretRef": {"name": "waiting-ca"}}}),
    )
    .await;
    let waiting = env
        .wait_logged(&operator, "waiting", WAIT, |s| {
            s.phase == Some(Phase::Waiting)
        })
        .await;
    let waiting_ready = ready_of(&waiting);

    plane.stop_apiserver();
    for _ in 0..10 {
        assert!(operator.is_alive(), "operator exited:\n{}", operator.log());
        assert_eq!(
            operator.healthz().await,
            Some(200),
            "/healthz while the API server is down"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    plane.run("up");
    assert!(operator.is_alive(), "operator exited:\n{}", operator.log());

    // The watches resume: a step change and a new object both reach status.
    waiting_control
        .set_phase(SimPhase::Initialize)
        .await
        .expect("set phase");
    let running = env
        .wait_logged(&operator, "waiting", Duration::from_secs(90), |s| {
            s.phase == Some(Phase::Running)
        })
        .await;
    assert_ne!(ready_of(&running).reason, waiting_ready.reason);
    env.create_restore("late", &sim, json!({})).await;
    env.wait_logged(&operator, "late", Duration::from_secs(60), |s| {
        s.phase == Some(Phase::Waiting)
    })
    .await;

    let done_after = env.restores().get("done").await.expect("get");
    assert_eq!(ready_of(&done_after), done_ready, "no Ready flip");
    assert_eq!(done_after.status, done.status);
    assert!(operator.is_alive(), "operator exited:\n{}", operator.log());
    assert_eq!(operator.healthz().await, Some(200));
    let events = env.event_text().await;
    assert!(!events.contains("InvalidSecret"), "{events}");
    assert!(operator.terminate(), "stops on SIGTERM");
}

#[tokio::test]
async fn first_poll_unreachable_is_pending() {
    let env = TestEnv::new("unreach").await;
    let sim = env.start_sim(&[]);
    env.put_default_secrets(&sim).await;
    let operator = Operator::start(&env, &[]);
    let url = format!("https://127.0.0.1:{}", free_port());
    env.create_restore("dr", &sim, json!({"server": {"url": url}}))
        .await;
    let object = env
        .wait_logged(&operator, "dr", WAIT, |s| {
            has_reason(s, "ServerUnreachable")
        })
        .await;
    let status = object.status.expect("status");
    assert_eq!(status.phase, Some(Phase::Pending));
    assert_conditions(&status, ("False", "ServerUnreachable"), "True", "False");

    let raw = env.raw_status("dr").await;
    let mut keys: Vec<&str> = raw
        .as_object()
        .expect("status object")
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        ["conditions", "lastError", "observedGeneration", "phase"],
        "empty fields are omitted: {raw}"
    );
    let last_error = raw["lastError"].as_object().expect("lastError");
    let mut error_keys: Vec<&str> = last_error.keys().map(String::as_str).collect();
    error_keys.sort_unstable();
    assert_eq!(error_keys, ["message", "reason"], "{raw}");
    assert!(!raw.to_string().contains("null"), "{raw}");
    for condition in raw["conditions"].as_array().expect("conditions") {
        assert!(
            !condition["message"].as_str().unwrap_or_default().is_empty(),
            "{condition}"
        );
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let log = operator.log();
    assert!(!log.contains("422"), "a status write was rejected:\n{log}");
    assert!(!log.contains("failed to write status"), "{log}");
}

/// Without `--namespace` the operator watches every namespace. Objects in two namespaces
/// that poll the same server as the same user share one session, and a change on the
/// server reaches both.
#[tokio::test]
async fn all_namespaces_share_one_session() {
    let plane = OwnControlPlane::up();
    let first = TestEnv::new_with_kubeconfig("allns-a", &plane.kubeconfig()).await;
    let second = TestEnv::new_with_kubeconfig("allns-b", &plane.kubeconfig()).await;
    let sim = first.start_sim(&[]);
    let control = sim.control().expect("control client");
    first.put_default_secrets(&sim).await;
    second.put_default_secrets(&sim).await;
    let operator = Operator::start_all_namespaces(&first, &plane.kubeconfig());
    first.create_restore("dr", &sim, json!({})).await;
    second.create_restore("dr", &sim, json!({})).await;
    for env in [&first, &second] {
        env.wait_logged(&operator, "dr", WAIT, |s| s.phase == Some(Phase::Waiting))
            .await;
    }

    control
        .set_phase(SimPhase::Initialize)
        .await
        .expect("set phase");
    for env in [&first, &second] {
        env.wait_logged(&operator, "dr", WAIT, |s| {
            s.restore_phase == Some(RestorePhase::Initialize)
        })
        .await;
    }
    assert_eq!(control.login_count().await.expect("login count"), 1);
    let metrics = operator.metrics().await;
    assert!(
        metrics.contains(r#"sklm_restores{phase="Running"} 2"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn edits_during_polls_keep_polled_phase() {
    let env = TestEnv::new("edits").await;
    let sim = env.start_sim(&[]);
    let control = sim.control().expect("control client");
    env.put_default_secrets(&sim).await;
    let operator = Operator::start(&env, &[]);
    env.create_restore("dr", &sim, json!({})).await;
    env.wait_logged(&operator, "dr", WAIT, |s| s.phase == Some(Phase::Waiting))
        .await;

    // Edit metadata every 100 ms and the spec every 500 ms while the server walks its
    // steps, so edits and status writes interleave.
    let editor = common::spawn_editor(
        env.restores(),
        "dr",
        |round| json!({"annotations": {"test/round": round.to_string()}, "labels": {"round": round.to_string()}}),
    );
    let steps = [
        (SimPhase::Initialize, RestorePhase::Initialize),
        (
            SimPhase::RestoreConfigFiles,
            RestorePhase::RestoreConfigFiles,
        ),
        (SimPhase::RestoreDatabases, RestorePhase::RestoreDatabases),
        (SimPhase::Cleanup, RestorePhase::Cleanup),
    ];
    for (sim_phase, expected) in steps {
        control.set_phase(sim_phase).await.expect("set phase");
        env.wait_logged(&operator, "dr", WAIT, |s| s.restore_phase == Some(expected))
            .await;
    }
    editor.await.expect("editor task");

    let object = env.restores().get("dr").await.expect("get");
    let generation = object.metadata.generation;
    let object = env
        .wait_logged(&operator, "dr", WAIT, |s| {
            s.observed_generation == generation
        })
        .await;
    let status = object.status.expect("status");
    assert_eq!(status.phase, Some(Phase::Running));
    assert_eq!(status.restore_phase, Some(RestorePhase::Cleanup));
    assert_conditions(&status, ("False", "RestoreInProgress"), "True", "False");
    let log = operator.log();
    assert!(!log.contains("409"), "a conflict surfaced:\n{log}");
    assert!(!log.contains("Conflict"), "a conflict surfaced:\n{log}");
    assert!(!log.contains("reconcile failed"), "{log}");
}

/// Deletes the test's namespace and waits for it to be gone.
async fn delete_namespace_within(env: &TestEnv, timeout: Duration) -> Duration {
    let namespaces: Api<Namespace> = Api::all(env.client.clone());
    namespaces
        .delete(&env.namespace, &DeleteParams::default())
        .await
        .expect("delete namespace");
    let started = Instant::now();
    loop {
        if namespaces
            .get_opt(&env.namespace)
            .await
            .expect("get namespace")
            .is_none()
        {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < timeout,
            "namespace {} still present after {timeout:?}",
            env.namespace
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test]
async fn namespace_delete_with_operator_running() {
    let env = TestEnv::new("nsdelrun").await;
    let sim = env.start_sim(&[]);
    env.put_default_secrets(&sim).await;
    let mut operator = Operator::start(&env, &[]);
    let created = env.create_restore("dr", &sim, json!({})).await;
    let object = env
        .wait_logged(&operator, "dr", WAIT, |s| s.phase == Some(Phase::Waiting))
        .await;
    assert_eq!(created.metadata.finalizers, None);
    assert_eq!(object.metadata.finalizers, None, "no finalizer");

    delete_namespace_within(&env, Duration::from_secs(60)).await;
    assert!(operator.is_alive(), "operator exited:\n{}", operator.log());
}

#[tokio::test]
async fn namespace_delete_with_operator_stopped() {
    let env = TestEnv::new("nsdelstop").await;
    let sim = env.start_sim(&[]);
    env.put_default_secrets(&sim).await;
    let mut operator = Operator::start(&env, &[]);
    env.create_restore("dr", &sim, json!({})).await;
    let object = env
        .wait_logged(&operator, "dr", WAIT, |s| s.phase == Some(Phase::Waiting))
        .await;
    assert_eq!(object.metadata.finalizers, None, "no finalizer");
    assert!(operator.terminate(), "stops on SIGTERM");

    delete_namespace_within(&env, Duration::from_secs(60)).await;
}

//! How the operator is run and read: metrics, `kubectl wait`, and the chart's RBAC.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{Operator, TestEnv, apply_namespaced_chart, kubectl, operator_kubeconfig};
use serde_json::json;
use sklm_restore_operator::crd::Phase;
use sklm_sim::{Phase as SimPhase, RestoreResult};

const WAIT: Duration = Duration::from_secs(30);

/// The value of one series line, such as `sklm_logins_total 1`.
fn series(metrics: &str, prefix: &str) -> u64 {
    metrics
        .lines()
        .find(|line| line.starts_with(prefix))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("no series {prefix} in:\n{metrics}"))
}

#[tokio::test]
async fn metrics_series_move_with_polls() {
    let env = TestEnv::new("metrics").await;
    let sim = env.start_sim(&[]);
    env.put_default_secrets(&sim).await;
    let operator = Operator::start(&env, &[]);
    env.create_restore("dr", &sim, json!({})).await;
    env.wait_status("dr", WAIT, |s| s.phase == Some(Phase::Waiting))
        .await;

    let first = operator.metrics().await;
    let polls = r#"sklm_polls_total{outcome="success",error_kind=""}"#;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let second = operator.metrics().await;
    assert!(
        series(&second, polls) > series(&first, polls),
        "polls counter moved"
    );
    assert_eq!(series(&second, "sklm_logins_total"), 1);
    assert_eq!(series(&second, r#"sklm_restores{phase="Waiting"}"#), 1);
    assert_eq!(series(&second, "sklm_leader "), 1);
    assert!(series(&second, "sklm_poll_duration_seconds_count") >= 2);
    assert!(!second.contains("dr"), "no object names in labels");
    common::assert_no_secret(&second, "the metrics");

    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    for path in ["healthz", "readyz"] {
        let response = client
            .get(format!("http://{}/{path}", operator.metrics_addr))
            .send()
            .await
            .expect("GET");
        assert_eq!(response.status(), 200, "/{path}");
    }
}

#[tokio::test]
async fn kubectl_wait_both_forms_return() {
    let env = TestEnv::new("kwait").await;
    let sim = env.start_sim(&[]);
    let control = sim.control().expect("control client");
    env.put_default_secrets(&sim).await;
    let _operator = Operator::start(&env, &[]);
    env.create_restore("dr", &sim, json!({})).await;
    env.wait_status("dr", WAIT, |s| s.phase == Some(Phase::Waiting))
        .await;

    let namespace = env.namespace.clone();
    let ready = tokio::task::spawn_blocking(move || {
        kubectl(&[
            "wait",
            "-n",
            &namespace,
            "--for=condition=Ready",
            "sklmrestore/dr",
            "--timeout=60s",
        ])
    });
    control
        .set_phase(SimPhase::RestoreKeystores)
        .await
        .expect("set phase");
    env.wait_status("dr", WAIT, |s| s.phase == Some(Phase::Running))
        .await;
    control
        .set_result(RestoreResult::Success)
        .await
        .expect("set result");
    control.set_phase(SimPhase::Idle).await.expect("set phase");

    let output = ready.await.expect("join");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let done = kubectl(&[
        "wait",
        "-n",
        &env.namespace,
        "--for=condition=Reconciling=false",
        "sklmrestore/dr",
        "--timeout=30s",
    ]);
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    let columns = kubectl(&["get", "-n", &env.namespace, "sklmrestores"]);
    let table = String::from_utf8_lossy(&columns.stdout);
    assert!(table.starts_with("NAME"), "{table}");
    for column in ["PHASE", "STEP", "READY", "STARTED", "AGE"] {
        assert!(
            table.lines().next().is_some_and(|h| h.contains(column)),
            "{column} in {table}"
        );
    }
    assert!(table.contains("Completed"), "{table}");
}

/// The operator watches two namespaces with only the Roles the chart renders for them,
/// shares one poller between objects in both that poll the same server as the same user,
/// and cannot read Secrets anywhere else.
#[tokio::test]
async fn rbac_namespaced_chart_permissions_suffice() {
    let env = TestEnv::new("rbac").await;
    let second = TestEnv::new("rbac-second").await;
    let unwatched = TestEnv::new("rbac-unwatched").await;
    apply_namespaced_chart(
        &env,
        &[&env.namespace, &second.namespace],
        &["templates/rbac.yaml", "templates/serviceaccount.yaml"],
    );

    // Run as the chart's ServiceAccount, bound only by what the chart rendered. The
    // operator gets `--namespace` for `env` from the helper, and the second one here.
    let kubeconfig = operator_kubeconfig();
    let sim = env.start_sim(&[]);
    let control = sim.control().expect("control client");
    for watched in [&env, &second, &unwatched] {
        watched.put_default_secrets(&sim).await;
    }
    let operator =
        Operator::start_with_kubeconfig(&env, &kubeconfig, &["--namespace", &second.namespace]);
    let objects = [(&env, "dr"), (&second, "dr-second")];
    for (watched, name) in objects {
        watched.create_restore(name, &sim, json!({})).await;
    }
    for (watched, name) in objects {
        watched
            .wait_logged(&operator, name, WAIT, |s| s.phase == Some(Phase::Waiting))
            .await;
        let events = watched.event_text().await;
        assert!(
            events.contains("WaitingForRestore"),
            "events recorded in {}: {events}",
            watched.namespace
        );
    }
    assert!(!operator.log().contains("forbidden"), "{}", operator.log());

    // Same server, same user and same CA: one poller, so one session for both objects.
    assert_eq!(
        control.login_count().await.expect("count"),
        1,
        "logins at the simulator"
    );
    let metrics = operator.metrics().await;
    assert_eq!(series(&metrics, "sklm_logins_total"), 1);
    assert_eq!(
        series(&metrics, r#"sklm_restores{phase="Waiting"}"#),
        2,
        "objects of both namespaces in the phase gauge"
    );
    assert_eq!(operator.readyz().await, Some(200), "/readyz");

    let kubeconfig_path = kubeconfig.to_str().expect("UTF-8 path");
    let outside = kubectl(&[
        "--kubeconfig",
        kubeconfig_path,
        "get",
        "secrets",
        "-n",
        &unwatched.namespace,
    ]);
    assert!(
        !outside.status.success(),
        "reading Secrets outside the watched namespaces must fail"
    );
    assert!(String::from_utf8_lossy(&outside.stderr).contains("forbidden"));
    let all = kubectl(&[
        "--kubeconfig",
        kubeconfig_path,
        "get",
        "secrets",
        "--all-namespaces",
    ]);
    assert!(
        !all.status.success(),
        "listing Secrets cluster-wide must fail"
    );

    // A watched namespace without a Role: the other namespace still gets statuses,
    // /readyz reports the unfilled cache, and SIGTERM still stops the operator.
    drop(operator);
    let mut partial = Operator::start_with_kubeconfig(
        &second,
        &kubeconfig,
        &["--namespace", &unwatched.namespace],
    );
    second.create_restore("dr-later", &sim, json!({})).await;
    second
        .wait_logged(&partial, "dr-later", WAIT, |s| {
            s.phase == Some(Phase::Waiting)
        })
        .await;
    assert_eq!(partial.readyz().await, Some(503), "/readyz");
    assert!(partial.log().contains("forbidden"), "{}", partial.log());
    assert!(
        partial.terminate(),
        "the operator did not stop on SIGTERM; log:\n{}",
        partial.log()
    );
}

/// Writes an Argo CD health test case for the live object.
async fn capture_case(
    env: &TestEnv,
    name: &str,
    label: &str,
    expected: &str,
) -> std::path::PathBuf {
    let object = env.restores().get(name).await.expect("get");
    let case = json!({"object": object, "expected": {"status": expected}});
    let path = env.workdir.path().join(format!("{label}.json"));
    std::fs::write(&path, serde_json::to_vec_pretty(&case).expect("JSON")).expect("write case");
    path
}

#[tokio::test]
async fn argocd_health_on_live_statuses() {
    let env = TestEnv::new("argocd").await;
    let sim = env.start_sim(&[]);
    let control = sim.control().expect("control client");
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
    env.create_restore("waiting", &sim, json!({})).await;
    env.create_restore(
        "denied",
        &sim,
        json!({"credentialsSecretRef": {"name": "wrong"}}),
    )
    .await;
    env.wait_logged(&operator, "waiting", WAIT, |s| {
        s.phase == Some(Phase::Waiting)
    })
    .await;
    env.wait_logged(&operator, "denied", WAIT, |s| {
        common::has_reason(s, "AuthenticationFailed")
    })
    .await;
    let mut cases = vec![
        capture_case(&env, "waiting", "waiting", "Progressing").await,
        capture_case(&env, "denied", "denied", "Degraded").await,
    ];
    control
        .set_phase(SimPhase::Cleanup)
        .await
        .expect("set phase");
    env.wait_logged(&operator, "waiting", WAIT, |s| {
        s.phase == Some(Phase::Running)
    })
    .await;
    cases.push(capture_case(&env, "waiting", "running", "Progressing").await);
    control
        .set_result(RestoreResult::Success)
        .await
        .expect("set result");
    control.set_phase(SimPhase::Idle).await.expect("set phase");
    env.wait_logged(&operator, "waiting", WAIT, |s| {
        s.phase == Some(Phase::Completed)
    })
    .await;
    cases.push(capture_case(&env, "waiting", "completed", "Healthy").await);

    let root = env!("CARGO_MANIFEST_DIR");
    let lua = Command::new(format!("{root}/hack/tools.sh"))
        .arg("lua")
        .output()
        .expect("tools.sh lua");
    assert!(
        lua.status.success(),
        "{}",
        String::from_utf8_lossy(&lua.stderr)
    );
    let lua = String::from_utf8(lua.stdout)
        .expect("path")
        .trim()
        .to_owned();
    let output = Command::new(lua)
        .arg(format!("{root}/deploy/argocd/run_tests.lua"))
        .arg(format!("{root}/deploy/argocd/health.lua"))
        .args(&cases)
        .output()
        .expect("run lua");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("4 passed, 0 failed"), "{stdout}");
}

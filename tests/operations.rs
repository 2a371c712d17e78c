//! How the operator is run and read: metrics, `kubectl wait`, and the chart's RBAC.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{Operator, TestEnv};
use serde_json::json;
use sklm_restore_operator::crd::Phase;
use sklm_sim::{Phase as SimPhase, RestoreResult};

const WAIT: Duration = Duration::from_secs(30);

fn kubectl(args: &[&str]) -> std::process::Output {
    Command::new("kubectl")
        .args(args)
        .output()
        .expect("run kubectl")
}

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

/// The identity the test API server's token file gives `operator.kubeconfig`.
const OPERATOR_NAMESPACE: &str = "sklm-system";

#[tokio::test]
async fn rbac_namespaced_chart_permissions_suffice() {
    let env = TestEnv::new("rbac").await;
    let _ = kubectl(&["create", "namespace", OPERATOR_NAMESPACE]);
    let helm = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/hack/tools.sh"))
        .arg("helm")
        .output()
        .expect("hack/tools.sh helm");
    assert!(
        helm.status.success(),
        "{}",
        String::from_utf8_lossy(&helm.stderr)
    );
    let helm = String::from_utf8(helm.stdout)
        .expect("path")
        .trim()
        .to_owned();
    let watch = format!("watchNamespace={}", env.namespace);
    let rendered = Command::new(&helm)
        .args([
            "template",
            "sklm-restore-operator",
            concat!(env!("CARGO_MANIFEST_DIR"), "/charts/sklm-restore-operator"),
        ])
        .args([
            "--namespace",
            OPERATOR_NAMESPACE,
            "--set",
            "rbac.scope=namespace",
            "--set",
            &watch,
        ])
        .args([
            "--show-only",
            "templates/rbac.yaml",
            "--show-only",
            "templates/serviceaccount.yaml",
        ])
        .output()
        .expect("helm template");
    assert!(
        rendered.status.success(),
        "{}",
        String::from_utf8_lossy(&rendered.stderr)
    );
    let manifests = env.workdir.path().join("rbac.yaml");
    std::fs::write(&manifests, &rendered.stdout).expect("write manifests");
    let applied = kubectl(&["apply", "-f", manifests.to_str().expect("UTF-8 path")]);
    assert!(
        applied.status.success(),
        "{}",
        String::from_utf8_lossy(&applied.stderr)
    );

    // Run as the chart's ServiceAccount, bound only by what the chart rendered.
    let kubeconfig = std::path::Path::new(&std::env::var("KUBECONFIG").expect("KUBECONFIG"))
        .with_file_name("operator.kubeconfig");
    let sim = env.start_sim(&[]);
    env.put_default_secrets(&sim).await;
    let operator = Operator::start_with_kubeconfig(&env, &kubeconfig, &[]);
    env.create_restore("dr", &sim, json!({})).await;
    env.wait_logged(&operator, "dr", WAIT, |s| s.phase == Some(Phase::Waiting))
        .await;
    let events = env.event_text().await;
    assert!(
        events.contains("WaitingForRestore"),
        "events recorded: {events}"
    );
    assert!(!operator.log().contains("forbidden"), "{}", operator.log());

    let kubeconfig = kubeconfig.to_str().expect("UTF-8 path");
    let outside = kubectl(&[
        "--kubeconfig",
        kubeconfig,
        "get",
        "secrets",
        "-n",
        "default",
    ]);
    assert!(
        !outside.status.success(),
        "reading Secrets outside the watched namespace must fail"
    );
    assert!(String::from_utf8_lossy(&outside.stderr).contains("forbidden"));
    let all = kubectl(&[
        "--kubeconfig",
        kubeconfig,
        "get",
        "secrets",
        "--all-namespaces",
    ]);
    assert!(
        !all.status.success(),
        "listing Secrets cluster-wide must fail"
    );
}

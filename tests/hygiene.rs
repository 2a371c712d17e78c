//! Secret hygiene: a scenario that goes through a wrong password, a revoked session,
//! redirects, HTTP errors, garbage and a whole restore, with a recognisable password and
//! auth id. Neither may appear in the operator's log, Events, status or `/metrics`, nor
//! anywhere in the output of the test that runs the scenario.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{Operator, PASSWORD, TestEnv, USER, has_reason};
use serde_json::json;
use sklm_restore_operator::crd::Phase;
use sklm_sim::{ErrorFormat, Fault};

const WAIT: Duration = Duration::from_secs(30);
const BACKOFF_WAIT: Duration = Duration::from_secs(60);
/// Every session id the simulator issues in the scenario starts with this.
const AUTH_ID_PREFIX: &str = "AuthId-5e7b13d2-";
const WRONG_PASSWORD: &str = "Wrong-c41f96e0";
/// Printed at the end of the scenario, so the parent test can tell that it ran to the end.
const FINISHED: &str = "hygiene scenario finished";

/// Asserts that `text` contains neither the password, the wrong password nor an auth id.
fn assert_clean(text: &str, what: &str) {
    assert!(!text.contains(PASSWORD), "the password appears in {what}");
    assert!(
        !text.contains(WRONG_PASSWORD),
        "the wrong password appears in {what}"
    );
    assert!(
        !text.contains(AUTH_ID_PREFIX),
        "an auth id appears in {what}"
    );
}

/// Runs the scenario; `hygiene_secrets_absent_from_output` starts it as a child process.
#[tokio::test]
#[ignore = "run by hygiene_secrets_absent_from_output, which checks its output"]
async fn hygiene_scenario() {
    let env = TestEnv::new("hygiene").await;
    let sim = env.start_sim(&["--auth-id-prefix", AUTH_ID_PREFIX]);
    let control = sim.control().expect("control client");
    env.put_default_secrets(&sim).await;
    env.put_secret(
        "admin",
        &[
            ("userid", USER.as_bytes()),
            ("password", WRONG_PASSWORD.as_bytes()),
        ],
    )
    .await;
    let kubeconfig = std::env::var_os("KUBECONFIG").expect("KUBECONFIG");
    // Every crate logs at debug, the Kubernetes and HTTP clients included.
    let operator = Operator::start_with_env(
        &env,
        std::path::Path::new(&kubeconfig),
        &[],
        &[("RUST_LOG", "debug")],
    );
    env.create_restore("dr", &sim, json!({})).await;
    env.wait_logged(&operator, "dr", WAIT, |s| {
        has_reason(s, "AuthenticationFailed")
    })
    .await;

    env.put_secret(
        "admin",
        &[
            ("userid", USER.as_bytes()),
            ("password", format!("{PASSWORD}\n").as_bytes()),
        ],
    )
    .await;
    env.wait_logged(&operator, "dr", WAIT, |s| s.phase == Some(Phase::Waiting))
        .await;
    control.revoke_sessions().await.expect("revoke");
    tokio::time::sleep(Duration::from_secs(3)).await;

    let faults = [
        (
            Fault::redirect("https://127.0.0.2:1/SKLM/rest/v1/ckms/login"),
            "UnexpectedRedirect",
        ),
        (Fault::http_error(503, ErrorFormat::Json), "ServerError"),
        (Fault::garbage(), "InvalidResponse"),
    ];
    for (fault, reason) in faults {
        control.set_faults(&[fault]).await.expect("set faults");
        env.wait_logged(&operator, "dr", BACKOFF_WAIT, |s| has_reason(s, reason))
            .await;
    }
    control.clear_faults().await.expect("clear faults");
    env.wait_logged(&operator, "dr", BACKOFF_WAIT, |s| {
        has_reason(s, "WaitingForRestore")
    })
    .await;

    let run = sklm_sim::RunRequest {
        step_ms: Some(1500),
        restart_seconds: Some(3),
        ..Default::default()
    };
    control.run_restore(&run).await.expect("start run");
    env.wait_logged(&operator, "dr", Duration::from_secs(90), |s| {
        s.phase == Some(Phase::Completed)
    })
    .await;
    assert!(
        control.login_count().await.expect("count") >= 3,
        "the scenario logged in after the fix, the revocation and the restart"
    );

    tokio::time::sleep(Duration::from_secs(2)).await;
    let status = serde_json::to_string_pretty(&env.raw_status("dr").await).expect("json");
    let events = env.event_text().await;
    let metrics = operator.metrics().await;
    let log = operator.log();
    let requests = serde_json::to_string(&control.requests().await.expect("log")).expect("json");
    // Everything goes to the test's own output, which the parent test reads.
    for (text, what) in [
        (&status, "the status"),
        (&events, "the Events"),
        (&metrics, "the /metrics output"),
        (&log, "the operator log"),
        (&requests, "the simulator's request log"),
    ] {
        println!("===== {what} =====\n{text}");
    }
    for (text, what) in [
        (&status, "the status"),
        (&events, "the Events"),
        (&metrics, "the /metrics output"),
        (&log, "the operator log"),
        (&requests, "the simulator's request log"),
    ] {
        assert_clean(text, what);
    }
    assert!(log.contains("poller started"), "the log is at debug level");
    println!("{FINISHED}");
}

#[test]
fn hygiene_secrets_absent_from_output() {
    let output = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "hygiene_scenario",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .output()
        .expect("run the scenario");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_clean(&stdout, "the scenario's standard output");
    assert_clean(&stderr, "the scenario's standard error");
    assert!(
        output.status.success(),
        "the scenario failed:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains(FINISHED),
        "the scenario did not finish:\n{stdout}"
    );
    assert!(
        stdout.contains("===== the operator log ====="),
        "the scenario printed nothing to check"
    );
}

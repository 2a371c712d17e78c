//! The `probe` subcommand against the simulator: printed status and exit codes.

mod common;

use std::process::{Command, Output};

use common::{PASSWORD, USER};
use sklm_sim::{Phase as SimPhase, SimProcess};

fn start_sim() -> SimProcess {
    let user = format!("{USER}:{PASSWORD}");
    SimProcess::spawn(common::sim_binary(), ["--user", user.as_str()]).expect("start the simulator")
}

fn probe(sim: &SimProcess, password: &str, extra: &[&str]) -> Output {
    let ca = sim.dir().join("ca.pem");
    Command::new(env!("CARGO_BIN_EXE_sklm-restore-operator"))
        .args([
            "probe",
            "--url",
            &sim.api_url(),
            "--user",
            USER,
            "--timeout-seconds",
            "3",
        ])
        .arg("--ca-file")
        .arg(&ca)
        .args(extra)
        .env("SKLM_PASSWORD", password)
        .output()
        .expect("run probe")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test]
async fn probe_idle_server_exits_not_running() {
    let sim = start_sim();
    let output = probe(&sim, PASSWORD, &[]);
    let stdout = text(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(1),
        "{stdout}{}",
        text(&output.stderr)
    );
    assert!(stdout.contains("phase: Waiting"), "{stdout}");
    assert!(stdout.contains("CTGKM3293I"), "{stdout}");
    assert!(!stdout.contains(PASSWORD));
}

#[tokio::test]
async fn probe_running_step_exits_running() {
    let sim = start_sim();
    let control = sim.control().expect("control client");
    control
        .set_phase(SimPhase::RestoreDatabases)
        .await
        .expect("set phase");
    let output = probe(&sim, PASSWORD, &[]);
    let stdout = text(&output.stdout);
    assert_eq!(output.status.code(), Some(2), "{stdout}");
    assert!(
        stdout.contains("restorePhase: RestoreDatabases"),
        "{stdout}"
    );
}

#[tokio::test]
async fn probe_wrong_password_exits_authentication() {
    let sim = start_sim();
    let output = probe(&sim, "Wrong-0b5e1a77", &[]);
    let stdout = text(&output.stdout);
    assert_eq!(output.status.code(), Some(13), "{stdout}");
    assert!(stdout.contains("AuthenticationFailed"), "{stdout}");
    assert!(!stdout.contains("Wrong-0b5e1a77"));
    assert!(!text(&output.stderr).contains("Wrong-0b5e1a77"));
}

#[tokio::test]
async fn probe_untrusted_certificate_exits_tls() {
    let sim = start_sim();
    let output = Command::new(env!("CARGO_BIN_EXE_sklm-restore-operator"))
        .args(["probe", "--url", &sim.api_url(), "--user", USER])
        .env("SKLM_PASSWORD", PASSWORD)
        .output()
        .expect("run probe");
    assert_eq!(output.status.code(), Some(11), "{}", text(&output.stdout));
    assert!(text(&output.stdout).contains("TLSError"));
}

#[tokio::test]
async fn probe_http_url_exits_invalid_input() {
    let output = Command::new(env!("CARGO_BIN_EXE_sklm-restore-operator"))
        .args(["probe", "--url", "http://127.0.0.1:9", "--user", USER])
        .env("SKLM_PASSWORD", PASSWORD)
        .output()
        .expect("run probe");
    assert_eq!(output.status.code(), Some(17));
    assert!(
        text(&output.stderr).contains("the scheme must be https"),
        "{}",
        text(&output.stderr)
    );
}

#[tokio::test]
async fn probe_missing_password_exits_invalid_input() {
    let output = Command::new(env!("CARGO_BIN_EXE_sklm-restore-operator"))
        .args(["probe", "--url", "https://127.0.0.1:9", "--user", USER])
        .env_remove("SKLM_PASSWORD")
        .output()
        .expect("run probe");
    assert_eq!(output.status.code(), Some(17));
    assert!(text(&output.stderr).contains("SKLM_PASSWORD"));
}

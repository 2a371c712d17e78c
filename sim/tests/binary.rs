//! The real `sklm-sim` binary started through `SimProcess`, over real HTTPS, including
//! the certificate options that clients must accept or reject.

mod common;

use std::time::Duration;

use common::api_client;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sklm_sim::SimProcess;

const BINARY: &str = env!("CARGO_BIN_EXE_sklm-sim");

async fn login(client: &reqwest::Client, api_url: &str) -> reqwest::Result<reqwest::Response> {
    client
        .post(format!("{api_url}/SKLM/rest/v1/ckms/login"))
        .json(&json!({"userid": "admin", "password": "passw0rd"}))
        .send()
        .await
}

#[tokio::test]
async fn binary_login_poll_revoke() {
    let sim =
        SimProcess::spawn(BINARY, ["--session-idle-seconds", "60"]).expect("simulator starts");
    assert!(
        sim.api_url().starts_with("https://127.0.0.1:"),
        "{}",
        sim.api_url()
    );
    let ca_pem = sim.ca_pem().expect("generated CA");
    let client = api_client(ca_pem, Duration::from_secs(10));
    let control = sim.control().expect("control client");

    let response = login(&client, &sim.api_url()).await.expect("login sent");
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.expect("JSON");
    let id = body["UserAuthId"].as_str().expect("auth id").to_owned();

    let poll_url = format!("{}/SKLM/rest/v1/ckms/restore/isrunning", sim.api_url());
    let authorization = format!("SKLMAuth userAuthId={id}");
    let poll = client
        .get(&poll_url)
        .header("Authorization", &authorization)
        .send()
        .await
        .expect("poll sent");
    assert_eq!(poll.status(), StatusCode::OK);
    let body: Value = poll.json().await.expect("JSON");
    assert_eq!(
        body["status"],
        json!("CTGKM3293I Restore process is not running.")
    );

    assert_eq!(control.revoke_sessions().await.expect("revoke"), 1);
    let rejected = client
        .get(&poll_url)
        .header("Authorization", &authorization)
        .send()
        .await
        .expect("poll sent");
    assert_eq!(rejected.status(), StatusCode::UNAUTHORIZED);
    let body: Value = rejected.json().await.expect("JSON");
    assert_eq!(body["code"], json!("CTGKM6004E"));

    assert_eq!(control.login_count().await.expect("count"), 1);
    assert_eq!(
        control
            .count("GET", "/ckms/restore/isrunning")
            .await
            .expect("count"),
        2
    );
    let state = control.state().await.expect("state");
    assert_eq!(state.session_idle_seconds, 60);

    let log = std::fs::read_to_string(sim.log_path()).expect("simulator log");
    assert!(!log.contains(&id), "auth id leaked into the simulator log");
    assert!(
        !log.contains("passw0rd"),
        "password leaked into the simulator log"
    );
}

#[tokio::test]
async fn binary_no_san_rejected_for_ip_url() {
    let sim =
        SimProcess::spawn(BINARY, ["--no-san", "--cn", "127.0.0.1"]).expect("simulator starts");
    let client = api_client(sim.ca_pem().expect("generated CA"), Duration::from_secs(10));
    let outcome = login(&client, &sim.api_url()).await;
    let error = outcome.expect_err("a leaf without SAN must not be valid for an IP URL");
    assert!(error.is_connect(), "{error:?}");
}

#[tokio::test]
async fn binary_ip_san_accepted() {
    let sim = SimProcess::spawn(BINARY, ["--san", "127.0.0.1"]).expect("simulator starts");
    let client = api_client(sim.ca_pem().expect("generated CA"), Duration::from_secs(10));
    let response = login(&client, &sim.api_url()).await.expect("TLS accepted");
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn binary_untrusted_ca_rejected() {
    let sim = SimProcess::spawn(BINARY, std::iter::empty::<&str>()).expect("simulator starts");
    let other = SimProcess::spawn(BINARY, std::iter::empty::<&str>()).expect("second simulator");
    let client = api_client(
        other.ca_pem().expect("generated CA"),
        Duration::from_secs(10),
    );
    let outcome = login(&client, &sim.api_url()).await;
    assert!(outcome.expect_err("foreign CA").is_connect());
}

#[test]
fn binary_bad_option_reports_exit() {
    let outcome = SimProcess::spawn(BINARY, ["--listen", "not-an-address"]);
    let Err(error) = outcome else {
        panic!("an invalid --listen must stop the simulator");
    };
    let text = error.to_string();
    assert!(text.contains("exited"), "{text}");
    assert!(text.contains("--listen"), "{text}");
}

#[test]
fn locate_binary_finds_target_dir() {
    let found = SimProcess::locate_binary();
    // With SKLM_SIM_BIN set, the result is that value and there is nothing to check here.
    if std::env::var_os(sklm_sim::process::BINARY_ENV).is_none() {
        let path = found.expect("cargo builds the binary before integration tests");
        assert!(path.ends_with("sklm-sim"), "{}", path.display());
    }
}

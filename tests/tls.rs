//! TLS against the real API server, the operator binary and the simulator: IP-address
//! URLs with and without an IP SAN, a wrong or missing CA, an expired certificate, and
//! the explicit opt-out of verification.

mod common;

use std::time::Duration;

use common::{Operator, TestEnv, assert_conditions, has_reason, ready_message};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use serde_json::json;
use sklm_restore_operator::crd::{Phase, SklmRestoreStatus};

const WAIT: Duration = Duration::from_secs(30);

/// PEM files of a CA and of a leaf it signed for `127.0.0.1`, valid only in 2020.
struct ExpiredIdentity {
    ca_pem: String,
    cert_path: std::path::PathBuf,
    key_path: std::path::PathBuf,
}

fn expired_identity(dir: &std::path::Path) -> ExpiredIdentity {
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca_params = CertificateParams::default();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "expired-test CA");
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca_params.self_signed(&ca_key).expect("CA certificate");
    let issuer = Issuer::new(ca_params, ca_key);

    let leaf_key = KeyPair::generate().expect("leaf key");
    let mut leaf = CertificateParams::new(vec!["127.0.0.1".to_owned()]).expect("leaf params");
    leaf.distinguished_name
        .push(DnType::CommonName, "127.0.0.1");
    leaf.not_before = rcgen::date_time_ymd(2020, 1, 1);
    leaf.not_after = rcgen::date_time_ymd(2020, 12, 31);
    leaf.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let leaf_cert = leaf.signed_by(&leaf_key, &issuer).expect("leaf");

    let cert_path = dir.join("expired.crt");
    let key_path = dir.join("expired.key");
    std::fs::write(&cert_path, leaf_cert.pem()).expect("write certificate");
    std::fs::write(&key_path, leaf_key.serialize_pem()).expect("write key");
    ExpiredIdentity {
        ca_pem: ca_cert.pem(),
        cert_path,
        key_path,
    }
}

/// Checks a TLS failure: Stalled, the reason, a message naming the address, and no HTTP
/// request at the server (verification was not skipped).
async fn assert_tls_error(
    status: &SklmRestoreStatus,
    control: &sklm_sim::ControlClient,
    address: &str,
    detail: &str,
) {
    assert_eq!(status.phase, Some(Phase::Pending));
    assert_conditions(status, ("False", "TLSError"), "False", "True");
    let message = ready_message(status);
    assert!(message.contains(address), "names {address}: {message}");
    assert!(message.contains(detail), "says {detail}: {message}");
    let error = status.last_error.clone().expect("lastError");
    assert_eq!(error.reason, "TLSError");
    assert_eq!(error.http_status, None);
    assert!(
        control.requests().await.expect("request log").is_empty(),
        "an HTTP request reached the server"
    );
}

#[tokio::test]
async fn tls_ip_san_only_connects() {
    let env = TestEnv::new("ipsan").await;
    let sim = env.start_sim(&["--listen", "127.0.0.2:0", "--san", "127.0.0.2"]);
    env.put_default_secrets(&sim).await;
    let operator = Operator::start(&env, &[]);
    let url = sim.api_url();
    assert!(url.starts_with("https://127.0.0.2:"), "{url}");
    env.create_restore("dr", &sim, json!({})).await;
    let object = env
        .wait_logged(&operator, "dr", WAIT, |s| s.phase == Some(Phase::Waiting))
        .await;
    let status = object.status.expect("status");
    assert_conditions(&status, ("False", "WaitingForRestore"), "True", "False");
    assert_eq!(status.last_error, None);
}

#[tokio::test]
async fn tls_cn_only_is_tls_error() {
    let env = TestEnv::new("cnonly").await;
    let sim = env.start_sim(&["--listen", "127.0.0.2:0", "--no-san", "--cn", "127.0.0.2"]);
    let control = sim.control().expect("control client");
    env.put_default_secrets(&sim).await;
    let operator = Operator::start(&env, &[]);
    env.create_restore("dr", &sim, json!({})).await;
    let object = env
        .wait_logged(&operator, "dr", WAIT, |s| has_reason(s, "TLSError"))
        .await;
    let status = object.status.expect("status");
    let address = sim.api_url();
    assert_tls_error(&status, &control, &address, "not valid for name").await;

    // It stays so: no later poll skips verification.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let later = env.restores().get("dr").await.expect("get");
    let later = later.status.expect("status");
    assert_tls_error(&later, &control, &address, "not valid for name").await;
}

#[tokio::test]
async fn tls_wrong_ca_is_tls_error() {
    let env = TestEnv::new("wrongca").await;
    let sim = env.start_sim(&[]);
    let other = env.start_sim(&[]);
    let control = sim.control().expect("control client");
    env.put_default_secrets(&sim).await;
    let other_ca = other.ca_pem().expect("CA");
    env.put_secret("other-ca", &[("ca.crt", other_ca.as_bytes())])
        .await;
    let operator = Operator::start(&env, &[]);
    env.create_restore(
        "wrong",
        &sim,
        json!({"server": {"caSecretRef": {"name": "other-ca"}}}),
    )
    .await;
    env.create_restore("none", &sim, json!({"server": {"caSecretRef": null}}))
        .await;

    for name in ["wrong", "none"] {
        let object = env
            .wait_logged(&operator, name, WAIT, |s| has_reason(s, "TLSError"))
            .await;
        let status = object.status.expect("status");
        assert_tls_error(
            &status,
            &control,
            &sim.api_url(),
            "invalid peer certificate",
        )
        .await;
    }
}

#[tokio::test]
async fn tls_expired_certificate_is_tls_error() {
    let env = TestEnv::new("expired").await;
    let identity = expired_identity(env.workdir.path());
    let cert = identity.cert_path.to_string_lossy().into_owned();
    let key = identity.key_path.to_string_lossy().into_owned();
    let sim = env.start_sim(&["--tls-cert", &cert, "--tls-key", &key]);
    let control = sim.control().expect("control client");
    env.put_secret(
        "admin",
        &[
            ("userid", common::USER.as_bytes()),
            ("password", common::PASSWORD.as_bytes()),
        ],
    )
    .await;
    env.put_secret("sim-ca", &[("ca.crt", identity.ca_pem.as_bytes())])
        .await;
    let operator = Operator::start(&env, &[]);
    env.create_restore("dr", &sim, json!({})).await;
    let object = env
        .wait_logged(&operator, "dr", WAIT, |s| has_reason(s, "TLSError"))
        .await;
    let status = object.status.expect("status");
    assert_tls_error(&status, &control, &sim.api_url(), "certificate expired").await;
}

#[tokio::test]
async fn tls_ca_secret_not_pem_is_invalid_secret() {
    let env = TestEnv::new("badca").await;
    let sim = env.start_sim(&[]);
    let control = sim.control().expect("control client");
    env.put_default_secrets(&sim).await;
    env.put_secret("sim-ca", &[("ca.crt", b"not a certificate\n")])
        .await;
    let operator = Operator::start(&env, &[]);
    env.create_restore("dr", &sim, json!({})).await;
    let object = env
        .wait_logged(&operator, "dr", WAIT, |s| has_reason(s, "InvalidSecret"))
        .await;
    let status = object.status.expect("status");
    assert_conditions(&status, ("False", "InvalidSecret"), "False", "True");
    let message = ready_message(&status);
    assert!(
        message.starts_with(&format!(
            "Secret {}/sim-ca key \"ca.crt\" is not a usable CA certificate",
            env.namespace
        )),
        "{message}"
    );
    assert!(control.requests().await.expect("log").is_empty());
}

#[tokio::test]
async fn tls_insecure_skip_verify_is_stated() {
    let env = TestEnv::new("insecure").await;
    let sim = env.start_sim(&["--no-san", "--cn", "wrong.example"]);
    env.put_default_secrets(&sim).await;
    let operator = Operator::start(&env, &[]);
    env.create_restore(
        "dr",
        &sim,
        json!({"server": {"insecureSkipTlsVerify": true, "caSecretRef": null}}),
    )
    .await;
    let object = env
        .wait_logged(&operator, "dr", WAIT, |s| s.phase == Some(Phase::Waiting))
        .await;
    let status = object.status.expect("status");
    assert_conditions(&status, ("False", "WaitingForRestore"), "True", "False");
    let message = ready_message(&status);
    assert!(
        message.contains("TLS verification is off"),
        "the opt-out is stated: {message}"
    );
}

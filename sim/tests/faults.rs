//! Injected faults of an in-process simulator, seen by a real HTTPS client.

mod common;

use std::time::{Duration, Instant};

use common::{TestSim, api_client};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sklm_sim::{Endpoint, ErrorFormat, Fault};

#[tokio::test]
async fn redirect_fault_sends_location() {
    let sim = TestSim::start().await;
    let id = sim.login().await;
    let location = "https://127.0.0.1:9/elsewhere";
    sim.control
        .set_fault(&Fault::redirect(location))
        .await
        .expect("set fault");

    let response = sim.get("/ckms/restore/isrunning", &id).await;
    assert_eq!(response.status(), StatusCode::FOUND);
    let header = response.headers()["location"].to_str().expect("ascii");
    assert_eq!(header, location);
}

#[tokio::test]
async fn garbage_fault_sends_non_json() {
    let sim = TestSim::start().await;
    let id = sim.login().await;
    sim.control
        .set_fault(&Fault::garbage())
        .await
        .expect("set fault");

    let response = sim.get("/ckms/restore/isrunning", &id).await;
    assert_eq!(response.status(), StatusCode::OK);
    let text = response.text().await.expect("body");
    assert!(serde_json::from_str::<Value>(&text).is_err(), "{text}");
}

#[tokio::test]
async fn oversized_fault_sends_exact_size() {
    let sim = TestSim::start().await;
    let id = sim.login().await;
    sim.control
        .set_fault(&Fault::oversized(200_000))
        .await
        .expect("set fault");

    let response = sim.get("/ckms/restore/isrunning", &id).await;
    assert_eq!(response.status(), StatusCode::OK);
    let bytes = response.bytes().await.expect("body");
    assert_eq!(bytes.len(), 200_000);
    let body: Value = serde_json::from_slice(&bytes).expect("valid JSON");
    assert_eq!(body["code"], json!("0"));
}

#[tokio::test]
async fn http_error_fault_formats() {
    let sim = TestSim::start().await;
    let id = sim.login().await;

    sim.control
        .set_faults(&[Fault::http_error(503, ErrorFormat::Json)])
        .await
        .expect("set faults");
    let (status, body) = sim.get_json("/ckms/restore/isrunning", &id).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        body["code"]
            .as_str()
            .is_some_and(|code| code.starts_with("CTGKM")),
        "{body}"
    );

    sim.control
        .set_faults(&[Fault::http_error(502, ErrorFormat::Html)])
        .await
        .expect("set faults");
    let response = sim.get("/ckms/restore/isrunning", &id).await;
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    let content_type = response.headers()["content-type"].to_str().expect("ascii");
    assert!(content_type.starts_with("text/html"), "{content_type}");

    let state = sim.control.clear_faults().await.expect("clear");
    assert!(state.faults.is_empty());
    let (status, _) = sim.get_json("/ckms/restore/isrunning", &id).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn scoped_fault_spares_other_endpoints() {
    let sim = TestSim::start().await;
    let fault = Fault::http_error(500, ErrorFormat::Json).only(&[Endpoint::IsRunning]);
    sim.control.set_fault(&fault).await.expect("set fault");

    let id = sim.login().await;
    let (status, _) = sim.get_json("/ckms/restore/isrunning", &id).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    let (status, _) = sim.get_json("/ckms/restore/result", &id).await;
    assert_eq!(status, StatusCode::OK);

    let records = sim.control.requests().await.expect("requests");
    let faulted: Vec<_> = records
        .iter()
        .filter(|record| record.fault.is_some())
        .collect();
    assert_eq!(faulted.len(), 1);
    assert_eq!(faulted[0].endpoint, Some(Endpoint::IsRunning));
    assert_eq!(faulted[0].fault.as_deref(), Some("http_error"));
}

#[tokio::test]
async fn slow_fault_delays_response() {
    let sim = TestSim::start().await;
    let id = sim.login().await;
    sim.control
        .set_fault(&Fault::slow(Duration::from_millis(400)))
        .await
        .expect("set fault");

    let started = Instant::now();
    let (status, _) = sim.get_json("/ckms/restore/isrunning", &id).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn silent_fault_times_out_client() {
    let sim = TestSim::start().await;
    let id = sim.login().await;
    sim.control
        .set_fault(&Fault::silent())
        .await
        .expect("set fault");

    let impatient = api_client(sim.ca_pem(), Duration::from_millis(500));
    let started = Instant::now();
    let outcome = impatient
        .get(sim.url("/ckms/restore/isrunning"))
        .header("Authorization", format!("SKLMAuth userAuthId={id}"))
        .send()
        .await;
    let error = outcome.expect_err("silent server must time out the client");
    assert!(error.is_timeout(), "{error:?}");
    assert!(started.elapsed() < Duration::from_secs(5));

    let records = sim.control.requests().await.expect("requests");
    let silent = records.last().expect("request logged");
    assert_eq!(silent.fault.as_deref(), Some("silent"));
    assert_eq!(silent.status, None);
}

#[tokio::test]
async fn invalid_fault_rejected() {
    let sim = TestSim::start().await;
    let outcome = sim
        .control
        .set_fault(&Fault::http_error(700, ErrorFormat::Json))
        .await;
    let error = outcome.expect_err("status 700 is invalid");
    assert!(error.to_string().contains("700"), "{error}");
    assert!(sim.control.faults().await.expect("faults").is_empty());
}

//! REST API of an in-process simulator over real HTTPS: login, auth errors, body shapes,
//! routing errors, logout and the request log.

mod common;

use common::{PREFIX, TestSim};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sklm_sim::{IsRunningShape, Phase, RestoreResult, ResultShape};

#[tokio::test]
async fn login_returns_auth_id_and_language() {
    let sim = TestSim::start().await;
    let response = sim
        .api
        .post(sim.url("/ckms/login"))
        .header("Accept-Language", "de-DE,de;q=0.9")
        .json(&json!({"userid": "admin", "password": "passw0rd"}))
        .send()
        .await
        .expect("login sent");

    assert_eq!(response.status(), StatusCode::OK);
    let language = response.headers()["content-language"]
        .to_str()
        .expect("ascii");
    assert_eq!(language, "de-DE");
    let body: Value = response.json().await.expect("JSON body");
    let id = body["UserAuthId"].as_str().expect("UserAuthId string");
    assert!(id.len() >= 16, "short id {id}");
}

#[tokio::test]
async fn login_wrong_password_is_6003e() {
    let sim = TestSim::start().await;
    let response = sim.post_login("admin", "wrong").await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let body: Value = response.json().await.expect("JSON body");
    assert_eq!(body["code"], json!("CTGKM6003E"));
    let message = body["message"].as_str().expect("message string");
    assert!(message.starts_with("CTGKM6003E "), "{message}");
}

#[tokio::test]
async fn login_empty_body_is_html_500() {
    let sim = TestSim::start().await;
    for body in ["", "not json", "[1, 2]"] {
        let response = sim
            .api
            .post(sim.url("/ckms/login"))
            .header("Content-Type", "application/json")
            .body(body)
            .send()
            .await
            .expect("login sent");
        assert_eq!(
            response.status(),
            StatusCode::INTERNAL_SERVER_ERROR,
            "body {body:?}"
        );
        let content_type = response.headers()["content-type"].to_str().expect("ascii");
        assert!(content_type.starts_with("text/html"), "{content_type}");
        let text = response.text().await.expect("text body");
        assert!(serde_json::from_str::<Value>(&text).is_err(), "{text}");
    }
}

#[tokio::test]
async fn login_key_spelling_switches() {
    let sim = TestSim::start().await;
    sim.control
        .set_login_key("userAuthId")
        .await
        .expect("set key");
    let body: Value = sim
        .post_login("admin", "passw0rd")
        .await
        .json()
        .await
        .expect("JSON body");
    assert!(body.get("UserAuthId").is_none(), "{body}");
    assert!(body["userAuthId"].is_string(), "{body}");
}

#[tokio::test]
async fn missing_or_malformed_auth_is_6002e() {
    let sim = TestSim::start().await;
    let url = sim.url("/ckms/restore/isrunning");

    let missing = sim.api.get(&url).send().await.expect("sent");
    assert_eq!(missing.status(), StatusCode::BAD_REQUEST);
    let body: Value = missing.json().await.expect("JSON");
    assert_eq!(body["code"], json!("CTGKM6002E"));

    let malformed = sim
        .api
        .get(&url)
        .header("Authorization", "Bearer abc")
        .send()
        .await
        .expect("sent");
    assert_eq!(malformed.status(), StatusCode::BAD_REQUEST);
    let body: Value = malformed.json().await.expect("JSON");
    assert_eq!(body["code"], json!("CTGKM6002E"));
}

#[tokio::test]
async fn unknown_auth_id_is_6004e() {
    let sim = TestSim::start().await;
    let (status, body) = sim.get_json("/ckms/restore/isrunning", "neverissued").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["code"], json!("CTGKM6004E"));
}

#[tokio::test]
async fn is_running_follows_phase_and_shape() {
    let sim = TestSim::start().await;
    let id = sim.login().await;

    let (status, idle) = sim.get_json("/ckms/restore/isrunning", &id).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        idle,
        json!({"code": "1", "status": "CTGKM3293I Restore process is not running."})
    );

    sim.control
        .set_phase(Phase::RestoreKeystores)
        .await
        .expect("set phase");
    let (_, running) = sim.get_json("/ckms/restore/isrunning", &id).await;
    assert_eq!(running["code"], json!("0"));
    assert_eq!(
        running["status"],
        json!("CTGKM3292I Restore process is running. Phase: RESTORE_KEYSTORES.")
    );

    sim.control
        .set_shape(IsRunningShape::PhaseNumberJson)
        .await
        .expect("set shape");
    sim.control.set_extra_keys(true).await.expect("extra keys");
    let (_, numbers) = sim.get_json("/ckms/restore/isrunning", &id).await;
    assert_eq!(numbers["code"], json!(4));
    assert_eq!(numbers["status"], json!(4));
    assert_eq!(numbers["details"], json!({"node": "sim"}));

    let (_, progress) = sim.get_json("/ckms/backupRestore/progress", &id).await;
    assert_eq!(progress["status"], json!("RESTORE_KEYSTORES"));
    let (_, old_progress) = sim.get_json("/ckms/restore/progress", &id).await;
    assert_eq!(old_progress["code"], json!("4"));
}

#[tokio::test]
async fn result_shapes_switch() {
    let sim = TestSim::start().await;
    let id = sim.login().await;

    let (_, unknown) = sim.get_json("/ckms/restore/result", &id).await;
    assert_eq!(unknown, json!({"code": "-1", "result": "-1"}));

    sim.control
        .set_result(RestoreResult::Failure)
        .await
        .expect("set result");
    sim.control
        .set_result_shape(ResultShape::ResultNumber)
        .await
        .expect("set result shape");
    let (_, number) = sim.get_json("/ckms/restore/result", &id).await;
    assert_eq!(number, json!({"result": 1}));
}

#[tokio::test]
async fn wrong_method_is_empty_405() {
    let sim = TestSim::start().await;
    let response = sim
        .api
        .get(sim.url("/ckms/login"))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    let text = response.text().await.expect("body");
    assert!(text.is_empty(), "{text}");
}

#[tokio::test]
async fn unknown_path_is_html_404() {
    let sim = TestSim::start().await;
    let url = format!("https://{}/other/ckms/login", sim.server.api_addr);
    let response = sim.api.get(url).send().await.expect("sent");
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let content_type = response.headers()["content-type"].to_str().expect("ascii");
    assert!(content_type.starts_with("text/html"), "{content_type}");
}

#[tokio::test]
async fn gklm_prefix_serves_same_api() {
    let sim = TestSim::start().await;
    let url = format!("https://{}/GKLM/rest/v1/ckms/login", sim.server.api_addr);
    let response = sim
        .api
        .post(url)
        .json(&json!({"userid": "admin", "password": "passw0rd"}))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn logout_invalidates_id() {
    let sim = TestSim::start().await;
    let id = sim.login().await;
    let response = sim
        .api
        .delete(sim.url("/ckms/logout"))
        .header("Authorization", format!("SKLMAuth userAuthId={id}"))
        .json(&json!({"userAuthId": id}))
        .send()
        .await
        .expect("logout sent");
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(body, json!({"userId": "admin", "logout": "true"}));

    let (status, body) = sim.get_json("/ckms/restore/isrunning", &id).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["code"], json!("CTGKM6004E"));
}

#[tokio::test]
async fn changed_password_rejects_login() {
    let sim = TestSim::start().await;
    let id = sim.login().await;
    sim.control
        .set_password("admin", "rotated")
        .await
        .expect("set password");

    let old = sim.post_login("admin", "passw0rd").await;
    assert_eq!(old.status(), StatusCode::UNAUTHORIZED);
    let new = sim.post_login("admin", "rotated").await;
    assert_eq!(new.status(), StatusCode::OK);

    let (status, _) = sim.get_json("/ckms/restore/isrunning", &id).await;
    assert_eq!(status, StatusCode::OK, "existing session stays valid");
}

#[tokio::test]
async fn revoked_sessions_get_6004e() {
    let sim = TestSim::start().await;
    let id = sim.login().await;
    let revoked = sim.control.revoke_sessions().await.expect("revoke");
    assert_eq!(revoked, 1);
    let (status, body) = sim.get_json("/ckms/restore/isrunning", &id).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["code"], json!("CTGKM6004E"));
}

#[tokio::test]
async fn idle_session_expires() {
    let sim = TestSim::start().await;
    let update = sklm_sim::SessionSettingsUpdate {
        idle_seconds: Some(1),
        ..Default::default()
    };
    sim.control
        .update_sessions(&update)
        .await
        .expect("settings");
    let id = sim.login().await;
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let (status, body) = sim.get_json("/ckms/restore/isrunning", &id).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["code"], json!("CTGKM6004E"));
}

#[tokio::test]
async fn request_log_hides_secrets() {
    let sim = TestSim::start().await;
    let id = sim.login().await;
    sim.get("/ckms/restore/isrunning", &id).await;
    sim.get("/ckms/restore/isrunning", &id).await;
    sim.post_login("admin", "wrong").await;

    let records = sim.control.requests().await.expect("requests");
    assert_eq!(records.len(), 4);
    let login = &records[0];
    assert_eq!(login.path, format!("{PREFIX}/ckms/login"));
    assert_eq!(login.status, Some(200));
    assert_eq!(login.userid.as_deref(), Some("admin"));
    assert_eq!(login.issued_session, Some(1));
    assert!(!login.authorization_present);

    let poll = &records[1];
    assert_eq!(poll.session, Some(1));
    assert!(poll.authorization_present);
    assert_eq!(poll.accept_language.as_deref(), Some("en"));
    assert_eq!(records[3].status, Some(401));

    let text = serde_json::to_string(&records).expect("serialize");
    assert!(!text.contains(&id), "auth id leaked into the log");
    assert!(!text.contains("passw0rd"), "password leaked into the log");

    assert_eq!(sim.control.login_count().await.expect("count"), 2);
    let polls = sim
        .control
        .count("GET", "/ckms/restore/isrunning")
        .await
        .expect("count");
    assert_eq!(polls, 2);
    assert_eq!(sim.control.clear_requests().await.expect("clear"), 4);
    assert!(sim.control.requests().await.expect("requests").is_empty());
}

#[tokio::test]
async fn control_rejects_invalid_input() {
    let sim = TestSim::start().await;
    let http = common::plain_client();
    let base = sim.control.base_url().to_owned();

    let bad_phase = http
        .put(format!("{base}/phase"))
        .json(&json!({"phase": 12}))
        .send()
        .await
        .expect("sent");
    assert_eq!(bad_phase.status(), StatusCode::BAD_REQUEST);
    let body: Value = bad_phase.json().await.expect("JSON error");
    assert!(
        body["error"].as_str().expect("error text").contains("12"),
        "{body}"
    );

    let not_json = http
        .put(format!("{base}/result"))
        .header("Content-Type", "application/json")
        .body("{")
        .send()
        .await
        .expect("sent");
    assert_eq!(not_json.status(), StatusCode::BAD_REQUEST);

    let by_name = http
        .put(format!("{base}/phase"))
        .json(&json!({"phase": "cleanup"}))
        .send()
        .await
        .expect("sent");
    assert_eq!(by_name.status(), StatusCode::OK);
    let state = sim.control.state().await.expect("state");
    assert_eq!(state.phase, Phase::Cleanup);
    assert_eq!(state.phase_number, 6);
}

//! Fault matrix against the real API server, the operator binary and the simulator: slow,
//! silent, garbage and oversized responses, HTTP errors in JSON and HTML, redirects, a key
//! server restart in the middle of a restore, the operator killed mid-restore, and bad
//! Secrets and specs. Each test states the status it expects.

// Tests keep their full size: each one is a scenario with its checks in order.
#![allow(clippy::too_many_lines)]

mod common;

use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{
    Operator, PASSWORD, TestEnv, USER, assert_conditions, condition, has_reason, ready_message,
};
use serde_json::json;
use sklm_restore_operator::crd::{Phase, RestorePhase, SklmRestoreStatus};
use sklm_sim::{Endpoint, ErrorFormat, Fault, FaultAction, Phase as SimPhase, RestartRequest};

const WAIT: Duration = Duration::from_secs(30);
/// Long enough for a poller in backoff (1, 2, 4, 8, 16 s at a 1 s interval) to poll again.
const BACKOFF_WAIT: Duration = Duration::from_secs(60);

fn last_error(status: &SklmRestoreStatus) -> sklm_restore_operator::crd::LastError {
    status.last_error.clone().unwrap_or_else(|| {
        panic!(
            "no lastError in {}",
            serde_json::to_string_pretty(status).unwrap_or_default()
        )
    })
}

/// Order of phases: a restore never moves to a lower rank.
fn rank(phase: Option<Phase>) -> u8 {
    match phase {
        None => 0,
        Some(Phase::Pending) => 1,
        Some(Phase::Waiting) => 2,
        Some(Phase::Running) => 3,
        Some(Phase::Completed | Phase::Failed) => 4,
    }
}

/// Counts TCP connections to a listener that never responds, for up to `lifetime`.
struct Trap {
    port: u16,
    connections: Arc<AtomicUsize>,
}

impl Trap {
    fn bind(ip: &str, lifetime: Duration) -> Trap {
        let listener = TcpListener::bind((ip, 0)).expect("bind trap listener");
        listener.set_nonblocking(true).expect("non-blocking");
        let port = listener.local_addr().expect("address").port();
        let connections = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&connections);
        std::thread::spawn(move || {
            let deadline = Instant::now() + lifetime;
            while Instant::now() < deadline {
                match listener.accept() {
                    Ok(_) => {
                        counter.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        Trap { port, connections }
    }

    fn count(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

#[tokio::test]
async fn slow_answer_within_timeout_is_normal() {
    let env = TestEnv::new("slowok").await;
    let sim = env.start_sim(&[]);
    let control = sim.control().expect("control client");
    control
        .set_fault(&Fault::slow(Duration::from_millis(1500)))
        .await
        .expect("set fault");
    env.put_default_secrets(&sim).await;
    let operator = Operator::start(&env, &[]);
    env.create_restore("dr", &sim, json!({"server": {"timeoutSeconds": 5}}))
        .await;

    let object = env
        .wait_logged(&operator, "dr", WAIT, |s| s.phase == Some(Phase::Waiting))
        .await;
    let status = object.status.expect("status");
    assert_conditions(&status, ("False", "WaitingForRestore"), "True", "False");
    assert_eq!(status.last_error, None);
    assert_eq!(status.restore_phase, Some(RestorePhase::Idle));
}

#[tokio::test]
async fn slow_answer_beyond_timeout_is_timeout() {
    let env = TestEnv::new("slowbad").await;
    let sim = env.start_sim(&[]);
    let control = sim.control().expect("control client");
    control
        .set_fault(&Fault::slow(Duration::from_secs(6)))
        .await
        .expect("set fault");
    env.put_default_secrets(&sim).await;
    let operator = Operator::start(&env, &[]);
    env.create_restore("dr", &sim, json!({"server": {"timeoutSeconds": 2}}))
        .await;

    let object = env
        .wait_logged(&operator, "dr", WAIT, |s| has_reason(s, "Timeout"))
        .await;
    let status = object.status.expect("status");
    assert_eq!(status.phase, Some(Phase::Pending));
    assert_conditions(&status, ("False", "Timeout"), "True", "False");
    let error = last_error(&status);
    assert_eq!(error.reason, "Timeout");
    assert_eq!(error.http_status, None);
    assert!(
        error.message.contains("timed out after 2 s"),
        "{}",
        error.message
    );
    assert!(
        error.message.contains(&sim.api_url()),
        "names the server: {}",
        error.message
    );

    control.clear_faults().await.expect("clear faults");
    let object = env
        .wait_logged(&operator, "dr", BACKOFF_WAIT, |s| {
            s.phase == Some(Phase::Waiting)
        })
        .await;
    assert_eq!(object.status.expect("status").last_error, None);
}

#[tokio::test]
async fn silent_server_times_out_other_keeps_schedule() {
    let env = TestEnv::new("silent").await;
    let silent = env.start_sim(&[]);
    let healthy = env.start_sim(&[]);
    let silent_control = silent.control().expect("control client");
    let healthy_control = healthy.control().expect("control client");
    silent_control
        .set_fault(&Fault::silent())
        .await
        .expect("set fault");
    env.put_default_secrets(&silent).await;
    let healthy_ca = healthy.ca_pem().expect("CA");
    env.put_secret("healthy-ca", &[("ca.crt", healthy_ca.as_bytes())])
        .await;
    let operator = Operator::start(&env, &[]);
    let created = Instant::now();
    env.create_restore("silent", &silent, json!({"server": {"timeoutSeconds": 5}}))
        .await;
    env.create_restore(
        "healthy",
        &healthy,
        json!({"server": {"caSecretRef": {"name": "healthy-ca"}}}),
    )
    .await;

    let object = env
        .wait_logged(&operator, "silent", WAIT, |s| has_reason(s, "Timeout"))
        .await;
    assert!(
        created.elapsed() >= Duration::from_secs(5),
        "Timeout reported before timeoutSeconds passed"
    );
    let status = object.status.expect("status");
    assert_eq!(status.phase, Some(Phase::Pending));
    assert_conditions(&status, ("False", "Timeout"), "True", "False");
    let error = last_error(&status);
    assert!(
        error.message.contains("timed out after 5 s"),
        "{}",
        error.message
    );
    let silent_requests = silent_control.requests().await.expect("request log");
    assert!(
        silent_requests
            .iter()
            .all(|r| r.fault.as_deref() == Some("silent")),
        "every request to the silent server was held"
    );

    env.wait_logged(&operator, "healthy", WAIT, |s| {
        s.phase == Some(Phase::Waiting)
    })
    .await;
    healthy_control.clear_requests().await.expect("clear");
    tokio::time::sleep(Duration::from_secs(10)).await;
    let polls = healthy_control
        .count("GET", "/ckms/restore/isrunning")
        .await
        .expect("count");
    // A 1 s interval gives about 10 polls in 10 s. Polls held up behind the silent
    // server's 5 s timeouts would give at most 2 or 3.
    assert!(polls >= 6, "{polls} polls of the healthy server in 10 s");
    let status = env
        .restores()
        .get("silent")
        .await
        .expect("get")
        .status
        .expect("status");
    assert!(has_reason(&status, "Timeout"), "still Timeout");
}

#[tokio::test]
async fn garbage_answer_is_invalid_response() {
    let env = TestEnv::new("garbage").await;
    let sim = env.start_sim(&[]);
    let control = sim.control().expect("control client");
    control
        .set_fault(&Fault::garbage().only(&[Endpoint::IsRunning]))
        .await
        .expect("set fault");
    env.put_default_secrets(&sim).await;
    let operator = Operator::start(&env, &[]);
    env.create_restore("dr", &sim, json!({})).await;

    let object = env
        .wait_logged(&operator, "dr", WAIT, |s| has_reason(s, "InvalidResponse"))
        .await;
    let status = object.status.expect("status");
    assert_eq!(status.phase, Some(Phase::Pending));
    assert_conditions(&status, ("False", "InvalidResponse"), "True", "False");
    let error = last_error(&status);
    assert_eq!(error.http_status, None);
    assert!(
        error.message.contains("/ckms/restore/isrunning"),
        "{}",
        error.message
    );
    assert!(
        error.message.contains("not a JSON object"),
        "{}",
        error.message
    );

    // The same at login: the session is revoked, so the next poll logs in again.
    control
        .set_faults(&[Fault::garbage().only(&[Endpoint::Login])])
        .await
        .expect("set faults");
    control.revoke_sessions().await.expect("revoke");
    let object = env
        .wait_logged(&operator, "dr", BACKOFF_WAIT, |s| {
            s.last_error
                .as_ref()
                .is_some_and(|e| e.message.contains("/ckms/login"))
        })
        .await;
    let status = object.status.expect("status");
    assert_conditions(&status, ("False", "InvalidResponse"), "True", "False");
}

#[tokio::test]
async fn non_json_bodies_are_invalid_response() {
    let env = TestEnv::new("notjson").await;
    let sim = env.start_sim(&[]);
    let control = sim.control().expect("control client");
    env.put_default_secrets(&sim).await;
    let operator = Operator::start(&env, &[]);
    env.create_restore("dr", &sim, json!({})).await;
    env.wait_logged(&operator, "dr", WAIT, |s| s.phase == Some(Phase::Waiting))
        .await;

    // Consecutive cases give different messages, so each one shows in the status.
    let cases = [
        ("[1, 2]", "body is not a JSON object"),
        (r#"{"code": null, "status": null}"#, r#"no "status" field"#),
        (r#""CTGKM3293I""#, "body is not a JSON object"),
        (r#"{"Status": {"phase": 5}}"#, r#"no "status" field"#),
    ];
    for (body, expected) in cases {
        let fault = Fault {
            action: FaultAction::Garbage {
                body: body.to_owned(),
            },
            endpoints: Some(vec![Endpoint::IsRunning]),
        };
        control.set_faults(&[fault]).await.expect("set faults");
        let object = env
            .wait_logged(&operator, "dr", BACKOFF_WAIT, |s| {
                s.last_error
                    .as_ref()
                    .is_some_and(|e| e.message.ends_with(expected))
            })
            .await;
        let status = object.status.expect("status");
        assert_eq!(status.phase, Some(Phase::Waiting), "{body}");
        assert_conditions(&status, ("False", "InvalidResponse"), "True", "False");
        // The last good answer stays visible.
        assert_eq!(status.restore_phase, Some(RestorePhase::Idle), "{body}");
    }
}

#[tokio::test]
async fn oversized_answer_is_invalid_response() {
    let env = TestEnv::new("oversized").await;
    let sim = env.start_sim(&[]);
    let control = sim.control().expect("control client");
    control
        .set_fault(&Fault::oversized(1024 * 1024).only(&[Endpoint::IsRunning]))
        .await
        .expect("set fault");
    env.put_default_secrets(&sim).await;
    let operator = Operator::start(&env, &[]);
    env.create_restore("dr", &sim, json!({})).await;

    let object = env
        .wait_logged(&operator, "dr", WAIT, |s| has_reason(s, "InvalidResponse"))
        .await;
    let status = object.status.expect("status");
    assert_eq!(status.phase, Some(Phase::Pending));
    assert_conditions(&status, ("False", "InvalidResponse"), "True", "False");
    let error = last_error(&status);
    assert!(
        error.message.starts_with("response body exceeds"),
        "{}",
        error.message
    );
    assert_eq!(status.server_message, None, "nothing of the body is kept");
    let status_size = serde_json::to_string(&status).expect("json").len();
    assert!(status_size < 4096, "status is {status_size} bytes");
}

#[tokio::test]
async fn http_errors_outside_restore_are_server_error() {
    let env = TestEnv::new("httperr").await;
    let sim = env.start_sim(&[]);
    let control = sim.control().expect("control client");
    env.put_default_secrets(&sim).await;
    let operator = Operator::start(&env, &[]);
    env.create_restore("dr", &sim, json!({})).await;
    env.wait_logged(&operator, "dr", WAIT, |s| s.phase == Some(Phase::Waiting))
        .await;

    // (status, format, message id expected in lastError)
    let cases = [
        (503, ErrorFormat::Json, Some("CTGKM9999E")),
        (500, ErrorFormat::Html, None),
        (404, ErrorFormat::Json, Some("CTGKM9999E")),
        (404, ErrorFormat::Html, None),
    ];
    for (code, format, message_id) in cases {
        control
            .set_faults(&[Fault::http_error(code, format)])
            .await
            .expect("set faults");
        let object = env
            .wait_logged(&operator, "dr", BACKOFF_WAIT, |s| {
                s.last_error.as_ref().is_some_and(|e| {
                    e.http_status == Some(code) && e.message_id.as_deref() == message_id
                })
            })
            .await;
        let status = object.status.expect("status");
        let case = format!("HTTP {code} {format:?}");
        assert_eq!(status.phase, Some(Phase::Waiting), "{case}");
        assert_conditions(&status, ("False", "ServerError"), "True", "False");
        let error = last_error(&status);
        assert_eq!(error.reason, "ServerError", "{case}");
        assert!(
            error.message.contains(&format!("HTTP {code}")),
            "{case}: {}",
            error.message
        );
        assert!(
            !error.message.contains('<'),
            "{case}: no HTML in the message: {}",
            error.message
        );
        assert_eq!(ready_message(&status), error.message, "{case}");
    }

    control.clear_faults().await.expect("clear faults");
    let object = env
        .wait_logged(&operator, "dr", BACKOFF_WAIT, |s| {
            has_reason(s, "WaitingForRestore")
        })
        .await;
    assert_eq!(object.status.expect("status").last_error, None);
}

#[tokio::test]
async fn http_errors_during_restore_are_restarting() {
    let env = TestEnv::new("httprun").await;
    let sim = env.start_sim(&[]);
    let control = sim.control().expect("control client");
    env.put_default_secrets(&sim).await;
    let operator = Operator::start(&env, &[]);
    env.create_restore("dr", &sim, json!({})).await;
    control
        .set_phase(SimPhase::RestoreKeystores)
        .await
        .expect("set phase");
    let running = env
        .wait_logged(&operator, "dr", WAIT, |s| s.phase == Some(Phase::Running))
        .await;
    let start_time = running.status.expect("status").start_time;
    assert!(start_time.is_some());

    for (code, format) in [(503, ErrorFormat::Html), (404, ErrorFormat::Json)] {
        control
            .set_faults(&[Fault::http_error(code, format)])
            .await
            .expect("set faults");
        let object = env
            .wait_logged(&operator, "dr", BACKOFF_WAIT, |s| {
                s.last_error
                    .as_ref()
                    .is_some_and(|e| e.http_status == Some(code))
            })
            .await;
        let status = object.status.expect("status");
        assert_eq!(status.phase, Some(Phase::Running), "HTTP {code}");
        assert_conditions(&status, ("False", "ServerRestarting"), "True", "False");
        assert_eq!(status.start_time, start_time, "HTTP {code}");
    }

    control.clear_faults().await.expect("clear faults");
    let object = env
        .wait_logged(&operator, "dr", BACKOFF_WAIT, |s| {
            has_reason(s, "RestoreInProgress")
        })
        .await;
    let status = object.status.expect("status");
    assert_eq!(status.last_error, None);
    assert_eq!(status.start_time, start_time);
    assert_eq!(status.restore_phase, Some(RestorePhase::RestoreKeystores));
}

#[tokio::test]
async fn redirect_is_not_followed() {
    let env = TestEnv::new("redirect").await;
    let sim = env.start_sim(&[]);
    let control = sim.control().expect("control client");
    let lifetime = Duration::from_secs(180);
    let trap_local = Trap::bind("127.0.0.1", lifetime);
    let trap_other_host = Trap::bind("127.0.0.2", lifetime);
    control
        .set_fault(&Fault::redirect("https://127.0.0.1:1/unused"))
        .await
        .expect("set fault");
    env.put_default_secrets(&sim).await;
    let operator = Operator::start(&env, &[]);
    env.create_restore("dr", &sim, json!({})).await;

    // (Location, status, origin named in the message)
    let cases = [
        (
            format!(
                "http://127.0.0.1:{}/SKLM/rest/v1/ckms/login",
                trap_local.port
            ),
            302,
            format!("http://127.0.0.1:{}", trap_local.port),
        ),
        (
            format!(
                "https://127.0.0.2:{}/SKLM/rest/v1/ckms/login?userid=x",
                trap_other_host.port
            ),
            307,
            format!("https://127.0.0.2:{}", trap_other_host.port),
        ),
        (
            format!(
                "https://127.0.0.1:{}/SKLM/rest/v1/ckms/login",
                trap_local.port
            ),
            308,
            format!("https://127.0.0.1:{}", trap_local.port),
        ),
        (
            "/SKLM/rest/v1/ckms/trap".to_owned(),
            301,
            "a relative location".to_owned(),
        ),
    ];
    for (location, code, origin) in &cases {
        let fault = Fault {
            action: FaultAction::Redirect {
                location: location.clone(),
                status: *code,
            },
            endpoints: None,
        };
        control.set_faults(&[fault]).await.expect("set faults");
        let object = env
            .wait_logged(&operator, "dr", BACKOFF_WAIT, |s| {
                s.last_error
                    .as_ref()
                    .is_some_and(|e| e.http_status == Some(*code))
            })
            .await;
        let status = object.status.expect("status");
        assert_eq!(status.phase, Some(Phase::Pending), "{location}");
        assert_conditions(&status, ("False", "UnexpectedRedirect"), "False", "True");
        let message = ready_message(&status);
        assert!(
            message.contains(&format!("redirect to {origin}")),
            "{location}: {message}"
        );
        assert!(
            !message.contains("/ckms/"),
            "{location}: the message repeats no path: {message}"
        );
    }

    assert_eq!(
        trap_local.count(),
        0,
        "a redirect to 127.0.0.1 was followed"
    );
    assert_eq!(
        trap_other_host.count(),
        0,
        "a redirect to 127.0.0.2 was followed"
    );
    let requests = control.requests().await.expect("request log");
    assert!(
        requests.iter().all(|r| !r.path.ends_with("/ckms/trap")),
        "a relative redirect was followed"
    );
    assert!(
        requests
            .iter()
            .all(|r| r.fault.as_deref() == Some("redirect")),
        "every request was answered with the redirect: {requests:?}"
    );
    assert!(
        requests.iter().all(|r| r.path.ends_with("/ckms/login")),
        "nothing but login was tried without a session"
    );
}

#[tokio::test]
async fn key_server_restart_mid_restore_relogs() {
    let env = TestEnv::new("srvrestart").await;
    let sim = env.start_sim(&[]);
    let control = sim.control().expect("control client");
    env.put_default_secrets(&sim).await;
    let operator = Operator::start(&env, &[]);
    env.create_restore("dr", &sim, json!({})).await;
    control
        .set_phase(SimPhase::RestoreKeystores)
        .await
        .expect("set phase");
    let running = env
        .wait_logged(&operator, "dr", WAIT, |s| s.phase == Some(Phase::Running))
        .await;
    let start_time = running.status.expect("status").start_time;
    let logins_before = control.login_count().await.expect("count");
    assert_eq!(logins_before, 1);

    // An unplanned restart: sessions are lost, the restore goes on.
    let restart = RestartRequest {
        seconds: 5,
        reset_phase: false,
        reset_result: false,
    };
    control.restart_with(&restart).await.expect("restart");
    let during = env
        .wait_logged(&operator, "dr", WAIT, |s| has_reason(s, "ServerRestarting"))
        .await;
    let during = during.status.expect("status");
    assert_eq!(during.phase, Some(Phase::Running));
    assert_conditions(&during, ("False", "ServerRestarting"), "True", "False");
    assert_eq!(during.start_time, start_time);

    let after = env
        .wait_logged(&operator, "dr", BACKOFF_WAIT, |s| {
            has_reason(s, "RestoreInProgress")
        })
        .await;
    let after = after.status.expect("status");
    assert_eq!(after.phase, Some(Phase::Running));
    assert_eq!(after.last_error, None);
    assert_eq!(after.start_time, start_time);
    assert_eq!(after.restore_phase, Some(RestorePhase::RestoreKeystores));
    let requests = control.requests().await.expect("request log");
    let logins: Vec<_> = requests
        .iter()
        .filter(|r| r.path.ends_with("/ckms/login"))
        .collect();
    assert_eq!(logins.len(), 2, "exactly one login again: {logins:?}");
    assert_eq!(logins[1].status, Some(200));

    control
        .set_phase(SimPhase::RestoreDatabases)
        .await
        .expect("set phase");
    env.wait_logged(&operator, "dr", WAIT, |s| {
        s.restore_phase == Some(RestorePhase::RestoreDatabases)
    })
    .await;
}

/// Waits for `accept`, checking on every read that the phase never moved back.
async fn wait_monotonic(
    env: &TestEnv,
    operator: &Operator,
    floor: &mut u8,
    accept: impl Fn(&SklmRestoreStatus) -> bool,
) -> SklmRestoreStatus {
    let deadline = Instant::now() + WAIT;
    loop {
        let object = env.restores().get("dr").await.expect("get");
        if let Some(status) = object.status {
            let now = rank(status.phase);
            assert!(
                now >= *floor,
                "phase moved back to {:?}; operator log:\n{}",
                status.phase,
                operator.log()
            );
            *floor = now;
            if accept(&status) {
                return status;
            }
        }
        assert!(
            Instant::now() < deadline,
            "timed out; operator log:\n{}",
            operator.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn operator_killed_mid_restore_resumes() {
    let env = TestEnv::new("opkill").await;
    let sim = env.start_sim(&[]);
    let control = sim.control().expect("control client");
    env.put_default_secrets(&sim).await;
    let mut floor = 0;
    let mut operator = Operator::start(&env, &[]);
    env.create_restore("dr", &sim, json!({})).await;
    control
        .set_phase(SimPhase::RestoreKeystores)
        .await
        .expect("set phase");
    let running = wait_monotonic(&env, &operator, &mut floor, |s| {
        s.phase == Some(Phase::Running)
    })
    .await;
    let start_time = running.start_time.clone();
    assert!(start_time.is_some());

    // Killed while a step runs; the server moves on meanwhile.
    operator.kill();
    control
        .set_phase(SimPhase::RestoreDatabases)
        .await
        .expect("set phase");
    let mut operator = Operator::start(&env, &[]);
    let status = wait_monotonic(&env, &operator, &mut floor, |s| {
        s.restore_phase == Some(RestorePhase::RestoreDatabases)
    })
    .await;
    assert_eq!(status.phase, Some(Phase::Running));
    assert_eq!(status.start_time, start_time, "startTime kept");

    // Killed again; the restore ends and the server restarts while nobody watches.
    operator.kill();
    control
        .set_result(sklm_sim::RestoreResult::Success)
        .await
        .expect("set result");
    control.set_phase(SimPhase::Idle).await.expect("set phase");
    let mut operator = Operator::start(&env, &[]);
    let status = wait_monotonic(&env, &operator, &mut floor, |s| {
        s.phase.is_some_and(Phase::is_finished)
    })
    .await;
    assert_eq!(status.phase, Some(Phase::Completed));
    assert_conditions(&status, ("True", "RestoreSucceeded"), "False", "False");
    assert_eq!(status.start_time, start_time, "startTime kept");
    let completion_time = status.completion_time.clone();
    assert!(completion_time.is_some());

    // A completed restore is not forgotten, even when a new one starts while the
    // operator is down.
    operator.kill();
    control
        .set_phase(SimPhase::Initialize)
        .await
        .expect("set phase");
    let operator = Operator::start(&env, &[]);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let status = wait_monotonic(&env, &operator, &mut floor, |_| true).await;
    assert_eq!(status.phase, Some(Phase::Completed));
    assert_eq!(status.completion_time, completion_time);
    assert_eq!(status.start_time, start_time);
    assert_conditions(&status, ("True", "RestoreSucceeded"), "False", "False");
}

#[tokio::test]
async fn secret_deleted_then_recreated() {
    let env = TestEnv::new("secretdel").await;
    let sim = env.start_sim(&[]);
    env.put_default_secrets(&sim).await;
    let operator = Operator::start(&env, &[]);
    env.create_restore("dr", &sim, json!({})).await;
    env.wait_logged(&operator, "dr", WAIT, |s| s.phase == Some(Phase::Waiting))
        .await;

    env.secrets()
        .delete("admin", &kube::api::DeleteParams::default())
        .await
        .expect("delete secret");
    let object = env
        .wait_logged(&operator, "dr", WAIT, |s| has_reason(s, "InvalidSecret"))
        .await;
    let status = object.status.expect("status");
    assert_eq!(status.phase, Some(Phase::Waiting), "phase kept");
    assert_conditions(&status, ("False", "InvalidSecret"), "False", "True");
    assert_eq!(
        ready_message(&status),
        format!("Secret {}/admin not found", env.namespace)
    );
    assert_eq!(last_error(&status).reason, "InvalidSecret");

    env.put_secret(
        "admin",
        &[
            ("userid", USER.as_bytes()),
            ("password", PASSWORD.as_bytes()),
        ],
    )
    .await;
    let object = env
        .wait_logged(&operator, "dr", Duration::from_secs(20), |s| {
            has_reason(s, "WaitingForRestore")
        })
        .await;
    assert_eq!(object.status.expect("status").last_error, None);
}

#[tokio::test]
async fn secret_key_renamed_is_invalid_secret() {
    let env = TestEnv::new("secretkey").await;
    let sim = env.start_sim(&[]);
    env.put_default_secrets(&sim).await;
    let operator = Operator::start(&env, &[]);
    env.create_restore("dr", &sim, json!({})).await;
    env.wait_logged(&operator, "dr", WAIT, |s| s.phase == Some(Phase::Waiting))
        .await;

    env.put_secret(
        "admin",
        &[("userid", USER.as_bytes()), ("passwd", PASSWORD.as_bytes())],
    )
    .await;
    let object = env
        .wait_logged(&operator, "dr", WAIT, |s| has_reason(s, "InvalidSecret"))
        .await;
    let status = object.status.expect("status");
    assert_conditions(&status, ("False", "InvalidSecret"), "False", "True");
    assert_eq!(
        ready_message(&status),
        format!("Secret {}/admin has no key \"password\"", env.namespace)
    );

    env.put_secret(
        "admin",
        &[("user", USER.as_bytes()), ("password", PASSWORD.as_bytes())],
    )
    .await;
    let expected = format!(
        "Secret {}/admin has no key \"userid\" or \"username\"",
        env.namespace
    );
    let object = env
        .wait_logged(&operator, "dr", WAIT, |s| ready_message(s) == expected)
        .await;
    let status = object.status.expect("status");
    assert_conditions(&status, ("False", "InvalidSecret"), "False", "True");

    env.put_secret(
        "admin",
        &[
            ("userid", USER.as_bytes()),
            ("password", PASSWORD.as_bytes()),
        ],
    )
    .await;
    env.wait_logged(&operator, "dr", Duration::from_secs(20), |s| {
        has_reason(s, "WaitingForRestore")
    })
    .await;
}

#[tokio::test]
async fn basic_auth_secret_logs_in() {
    let env = TestEnv::new("basicauth").await;
    let sim = env.start_sim(&[]);
    let control = sim.control().expect("control client");
    env.put_default_secrets(&sim).await;
    env.put_typed_secret(
        "basic",
        "kubernetes.io/basic-auth",
        &[
            ("username", USER.as_bytes()),
            ("password", PASSWORD.as_bytes()),
        ],
    )
    .await;
    let operator = Operator::start(&env, &[]);
    env.create_restore(
        "dr",
        &sim,
        json!({"credentialsSecretRef": {"name": "basic"}}),
    )
    .await;
    let object = env
        .wait_logged(&operator, "dr", WAIT, |s| s.phase == Some(Phase::Waiting))
        .await;
    assert_conditions(
        &object.status.expect("status"),
        ("False", "WaitingForRestore"),
        "True",
        "False",
    );
    let requests = control.requests().await.expect("request log");
    let login = requests
        .iter()
        .find(|r| r.path.ends_with("/ckms/login"))
        .expect("a login");
    assert_eq!(login.userid.as_deref(), Some(USER));
    assert_eq!(login.status, Some(200));
}

#[tokio::test]
async fn secret_line_endings_stripped_once() {
    let env = TestEnv::new("lineends").await;
    let sim = env.start_sim(&[]);
    env.put_default_secrets(&sim).await;
    let lf = (format!("{USER}\n"), format!("{PASSWORD}\n"));
    let crlf = (format!("{USER}\r\n"), format!("{PASSWORD}\r\n"));
    let double = (USER.to_owned(), format!("{PASSWORD}\n\n"));
    for (name, (user, password)) in [("lf", &lf), ("crlf", &crlf), ("double", &double)] {
        env.put_secret(
            name,
            &[
                ("userid", user.as_bytes()),
                ("password", password.as_bytes()),
            ],
        )
        .await;
    }
    env.put_secret("nouser", &[("password", PASSWORD.as_bytes())])
        .await;
    let operator = Operator::start(&env, &[]);
    for name in ["lf", "crlf", "double", "nouser"] {
        env.create_restore(name, &sim, json!({"credentialsSecretRef": {"name": name}}))
            .await;
    }

    for name in ["lf", "crlf"] {
        let object = env
            .wait_logged(&operator, name, WAIT, |s| s.phase == Some(Phase::Waiting))
            .await;
        let status = object.status.expect("status");
        assert_conditions(&status, ("False", "WaitingForRestore"), "True", "False");
    }
    // Only one line ending is stripped: the second is part of the password.
    let object = env
        .wait_logged(&operator, "double", WAIT, |s| {
            has_reason(s, "AuthenticationFailed")
        })
        .await;
    let status = object.status.expect("status");
    assert_conditions(&status, ("False", "AuthenticationFailed"), "False", "True");
    assert_eq!(
        last_error(&status).message_id.as_deref(),
        Some("CTGKM6003E")
    );

    let object = env
        .wait_logged(&operator, "nouser", WAIT, |s| {
            has_reason(s, "InvalidSecret")
        })
        .await;
    let status = object.status.expect("status");
    assert_conditions(&status, ("False", "InvalidSecret"), "False", "True");
    assert_eq!(
        ready_message(&status),
        format!(
            "Secret {}/nouser has no key \"userid\" or \"username\"",
            env.namespace
        )
    );
}

#[tokio::test]
async fn password_rotated_on_both_sides_relogs() {
    let env = TestEnv::new("rotateboth").await;
    let sim = env.start_sim(&[]);
    let control = sim.control().expect("control client");
    env.put_default_secrets(&sim).await;
    let mut operator = Operator::start(&env, &[]);
    env.create_restore("dr", &sim, json!({})).await;
    env.wait_logged(&operator, "dr", WAIT, |s| s.phase == Some(Phase::Waiting))
        .await;

    // The server's password changes and its sessions end before the Secret follows.
    let rotated = "Pw-rotated-3f9a60d2";
    control
        .set_password(USER, rotated)
        .await
        .expect("set password");
    control.revoke_sessions().await.expect("revoke");
    let object = env
        .wait_logged(&operator, "dr", WAIT, |s| {
            has_reason(s, "AuthenticationFailed")
        })
        .await;
    let status = object.status.expect("status");
    assert_eq!(status.phase, Some(Phase::Waiting));
    assert_conditions(&status, ("False", "AuthenticationFailed"), "False", "True");

    env.put_secret(
        "admin",
        &[
            ("userid", USER.as_bytes()),
            ("password", rotated.as_bytes()),
        ],
    )
    .await;
    let fixed_at = Instant::now();
    let object = env
        .wait_logged(&operator, "dr", Duration::from_secs(20), |s| {
            has_reason(s, "WaitingForRestore")
        })
        .await;
    let picked_up = fixed_at.elapsed();
    assert_eq!(object.status.expect("status").last_error, None);
    assert!(
        picked_up < Duration::from_secs(10),
        "the new password was used after {picked_up:?}"
    );
    assert!(operator.is_alive(), "the operator did not restart");
    let requests = control.requests().await.expect("request log");
    let last_login = requests
        .iter()
        .rev()
        .find(|r| r.path.ends_with("/ckms/login"))
        .expect("a login");
    assert_eq!(last_login.status, Some(200));
    let log = operator.log();
    assert!(!log.contains(rotated), "the new password is in the log");
    assert!(!log.contains(PASSWORD), "the old password is in the log");
}

/// Creates an object from raw JSON without the harness's checks, returning the API
/// server's answer.
async fn try_create(env: &TestEnv, name: &str, spec: serde_json::Value) -> Result<(), kube::Error> {
    let object: sklm_restore_operator::crd::SklmRestore = serde_json::from_value(json!({
        "apiVersion": "sklm.dev/v1alpha1",
        "kind": "SklmRestore",
        "metadata": {"name": name},
        "spec": spec,
    }))
    .expect("valid object");
    env.restores()
        .create(&kube::api::PostParams::default(), &object)
        .await
        .map(|_| ())
}

#[tokio::test]
async fn spec_bad_url_rejected_at_create() {
    let env = TestEnv::new("badurl").await;
    let urls = [
        "http://127.0.0.1:9443",
        "https://127.0.0.1:9443/SKLM/rest/v1",
        "https://127.0.0.1:9443?x=1",
        "https://127.0.0.1:9443#top",
        "ftp://127.0.0.1:9443",
        "127.0.0.1:9443",
        "https://",
    ];
    for (index, url) in urls.iter().enumerate() {
        let spec = json!({
            "server": {"url": url},
            "credentialsSecretRef": {"name": "admin"},
        });
        let error = try_create(&env, &format!("url-{index}"), spec)
            .await
            .expect_err(url);
        let kube::Error::Api(status) = error else {
            panic!("{url}: expected an API error, got {error}");
        };
        assert_eq!(status.code, 422, "{url}: {status:?}");
        assert!(
            status.message.contains("spec.server.url"),
            "{url}: {status:?}"
        );
    }
    let prefixes = ["SKLM/rest/v1", "/SKLM/rest/v1/", "/SKLM rest", ""];
    for (index, prefix) in prefixes.iter().enumerate() {
        let spec = json!({
            "server": {"url": "https://127.0.0.1:9443", "apiPrefix": prefix},
            "credentialsSecretRef": {"name": "admin"},
        });
        let error = try_create(&env, &format!("prefix-{index}"), spec)
            .await
            .expect_err(prefix);
        let kube::Error::Api(status) = error else {
            panic!("{prefix:?}: expected an API error, got {error}");
        };
        assert_eq!(status.code, 422, "{prefix:?}: {status:?}");
        assert!(
            status.message.contains("spec.server.apiPrefix"),
            "{prefix:?}: {status:?}"
        );
    }
}

#[tokio::test]
async fn spec_prefix_with_dot_segment_is_invalid_spec() {
    let env = TestEnv::new("dotprefix").await;
    let sim = env.start_sim(&[]);
    let control = sim.control().expect("control client");
    env.put_default_secrets(&sim).await;
    let operator = Operator::start(&env, &[]);
    env.create_restore(
        "dr",
        &sim,
        json!({"server": {"apiPrefix": "/SKLM/../rest/v1"}}),
    )
    .await;
    let object = env
        .wait_logged(&operator, "dr", WAIT, |s| has_reason(s, "InvalidSpec"))
        .await;
    let status = object.status.expect("status");
    assert_eq!(status.phase, Some(Phase::Pending));
    assert_conditions(&status, ("False", "InvalidSpec"), "False", "True");
    assert!(
        ready_message(&status).contains("apiPrefix"),
        "{}",
        ready_message(&status)
    );
    assert_eq!(control.requests().await.expect("log").len(), 0);
}

#[tokio::test]
async fn spec_url_with_user_info_hides_password() {
    let env = TestEnv::new("userinfo").await;
    let sim = env.start_sim(&[]);
    let control = sim.control().expect("control client");
    env.put_default_secrets(&sim).await;
    let operator = Operator::start(&env, &[]);
    let url_password = "UrlPw-81c3e5a0";
    let url = format!("https://{USER}:{url_password}@{}", sim.api_addr());
    env.create_restore("dr", &sim, json!({"server": {"url": url}}))
        .await;
    let object = env
        .wait_logged(&operator, "dr", WAIT, |s| has_reason(s, "InvalidSpec"))
        .await;
    let status = object.status.expect("status");
    assert_conditions(&status, ("False", "InvalidSpec"), "False", "True");
    assert!(
        ready_message(&status).contains("user info"),
        "{}",
        ready_message(&status)
    );
    assert_eq!(control.requests().await.expect("log").len(), 0);

    tokio::time::sleep(Duration::from_secs(2)).await;
    let status_text = serde_json::to_string(&status).expect("json");
    let events = env.event_text().await;
    for (text, what) in [
        (status_text, "the status"),
        (events, "the events"),
        (operator.log(), "the operator log"),
    ] {
        assert!(
            !text.contains(url_password),
            "the URL's password appears in {what}"
        );
    }
}

#[tokio::test]
async fn spec_url_without_port_uses_443() {
    let env = TestEnv::new("noport").await;
    let sim = env.start_sim(&[]);
    env.put_default_secrets(&sim).await;
    let operator = Operator::start(&env, &[]);
    // Nothing listens on 127.0.0.1:443 here, so the connection is refused.
    env.create_restore("dr", &sim, json!({"server": {"url": "https://127.0.0.1"}}))
        .await;
    let object = env
        .wait_logged(&operator, "dr", WAIT, |s| {
            has_reason(s, "ServerUnreachable")
        })
        .await;
    let status = object.status.expect("status");
    assert_eq!(status.phase, Some(Phase::Pending));
    assert_conditions(&status, ("False", "ServerUnreachable"), "True", "False");
    let error = last_error(&status);
    assert!(
        error.message.contains("https://127.0.0.1:443"),
        "{}",
        error.message
    );
}

#[tokio::test]
async fn spec_unknown_prefix_names_path() {
    let env = TestEnv::new("noprefix").await;
    let sim = env.start_sim(&["--prefix", "/GKLM/rest/v1"]);
    let control = sim.control().expect("control client");
    env.put_default_secrets(&sim).await;
    let operator = Operator::start(&env, &[]);
    // The server serves only /GKLM/rest/v1; the spec keeps the default /SKLM/rest/v1.
    env.create_restore("dr", &sim, json!({})).await;
    let object = env
        .wait_logged(&operator, "dr", WAIT, |s| s.last_error.is_some())
        .await;
    let status = object.status.expect("status");
    assert_eq!(status.phase, Some(Phase::Pending));
    let error = last_error(&status);
    assert_eq!(error.http_status, Some(404));
    assert_eq!(
        condition(&status, "Ready").map(|c| c.status.as_str()),
        Some("False")
    );
    let message = ready_message(&status);
    assert!(
        message.contains("/SKLM/rest/v1"),
        "the message names the path that was not found: {message}"
    );
    let requests = control.requests().await.expect("request log");
    assert!(requests.iter().all(|r| r.status == Some(404)));
}

#[tokio::test]
async fn operator_restart_keeps_ready() {
    let env = TestEnv::new("oprestart").await;
    let sim = env.start_sim(&[]);
    env.put_default_secrets(&sim).await;
    // Many large Secrets make the Secret cache fill well after the object cache.
    let filler = vec![b'x'; 16 * 1024];
    for batch in 0..15 {
        let creates = (0..20).map(|index| {
            let name = format!("filler-{batch}-{index}");
            let env = &env;
            let filler = &filler;
            async move { env.put_secret(&name, &[("data", filler.as_slice())]).await }
        });
        futures::future::join_all(creates).await;
    }
    let mut operator = Operator::start(&env, &[]);
    env.create_restore("dr", &sim, json!({})).await;
    let object = env
        .wait_logged(&operator, "dr", WAIT, |s| s.phase == Some(Phase::Waiting))
        .await;
    let before = object.status.expect("status");

    assert!(operator.terminate(), "stops on SIGTERM");
    let operator = Operator::start(&env, &[]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let status = env
            .restores()
            .get("dr")
            .await
            .expect("get")
            .status
            .expect("status");
        assert_eq!(
            condition(&status, "Ready"),
            condition(&before, "Ready"),
            "Ready changed after the restart; operator log:\n{}",
            operator.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let events = env.event_text().await;
    assert!(
        !events.contains("InvalidSecret"),
        "a restart reported the Secret missing: {events}"
    );
}

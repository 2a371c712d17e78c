//! Leader election with two operator processes on one Lease: only the holder polls and
//! logs in, and the other takes over when the holder is killed or stopped, without the
//! Ready condition changing.

// Tests keep their full size: each one is a scenario with its checks in order.
#![allow(clippy::too_many_lines)]

mod common;

use std::time::{Duration, Instant};

use common::{Operator, TestEnv, assert_conditions};
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;
use serde_json::json;
use sklm_restore_operator::crd::{Condition, Phase, RestorePhase};
use sklm_sim::Phase as SimPhase;

const WAIT: Duration = Duration::from_secs(30);
const LEASE: &str = "sklm-test-leader";
/// The operator's Lease duration is 15 s. A takeover after a kill may need all of it, plus
/// the standby's sleep and a second of jitter.
const TAKEOVER_WAIT: Duration = Duration::from_secs(45);

fn start_replica(env: &TestEnv, identity: &str) -> Operator {
    Operator::start(
        env,
        &[
            "--leader-election",
            "--lease-namespace",
            &env.namespace,
            "--lease-name",
            LEASE,
            "--identity",
            identity,
        ],
    )
}

async fn lease(env: &TestEnv) -> Option<Lease> {
    let api: Api<Lease> = Api::namespaced(env.client.clone(), &env.namespace);
    api.get_opt(LEASE).await.expect("get Lease")
}

async fn holder(env: &TestEnv) -> Option<String> {
    lease(env)
        .await
        .and_then(|l| l.spec)
        .and_then(|s| s.holder_identity)
        .filter(|h| !h.is_empty())
}

/// Waits until `identity` holds the Lease, and returns how long that took.
async fn wait_for_holder(env: &TestEnv, identity: &str, timeout: Duration) -> Duration {
    let started = Instant::now();
    loop {
        if holder(env).await.as_deref() == Some(identity) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < timeout,
            "{identity} did not take the Lease within {timeout:?}; holder: {:?}",
            holder(env).await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn ready_condition(env_status: &sklm_restore_operator::crd::SklmRestoreStatus) -> Condition {
    common::condition(env_status, "Ready")
        .cloned()
        .expect("Ready condition")
}

fn leader_gauge(metrics: &str) -> Option<&str> {
    metrics
        .lines()
        .find(|line| line.starts_with("sklm_leader "))
        .and_then(|line| line.split_whitespace().nth(1))
}

#[tokio::test]
async fn leader_one_holder_polls_and_logs_in() {
    let env = TestEnv::new("leaderone").await;
    let sim = env.start_sim(&[]);
    let control = sim.control().expect("control client");
    env.put_default_secrets(&sim).await;
    let a = start_replica(&env, "a");
    wait_for_holder(&env, "a", WAIT).await;
    let b = start_replica(&env, "b");
    env.create_restore("dr", &sim, json!({})).await;
    env.wait_logged(&a, "dr", WAIT, |s| s.phase == Some(Phase::Waiting))
        .await;

    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(holder(&env).await.as_deref(), Some("a"));
    let requests = control.requests().await.expect("request log");
    let logins = requests
        .iter()
        .filter(|r| r.path.ends_with("/ckms/login"))
        .count();
    assert_eq!(logins, 1, "one login for both replicas");
    let sessions: std::collections::BTreeSet<_> =
        requests.iter().filter_map(|r| r.session).collect();
    assert_eq!(sessions.len(), 1, "one session: {sessions:?}");
    assert!(requests.len() >= 4, "the holder polls: {}", requests.len());

    assert_eq!(leader_gauge(&a.metrics().await), Some("1"));
    assert_eq!(leader_gauge(&b.metrics().await), Some("0"));
    assert!(
        !b.log().contains("poller started"),
        "the standby started a poller:\n{}",
        b.log()
    );
}

#[tokio::test]
async fn leader_killed_hands_over_without_flap() {
    let env = TestEnv::new("leaderkill").await;
    let sim = env.start_sim(&[]);
    let control = sim.control().expect("control client");
    env.put_default_secrets(&sim).await;
    let mut a = start_replica(&env, "a");
    wait_for_holder(&env, "a", WAIT).await;
    let b = start_replica(&env, "b");
    env.create_restore("dr", &sim, json!({})).await;
    control
        .set_phase(SimPhase::RestoreKeystores)
        .await
        .expect("set phase");
    let running = env
        .wait_logged(&a, "dr", WAIT, |s| s.phase == Some(Phase::Running))
        .await;
    let before = running.status.expect("status");
    let ready_before = ready_condition(&before);

    a.kill();
    let started = Instant::now();
    let mut seen = Vec::new();
    while holder(&env).await.as_deref() != Some("b") {
        let status = env
            .restores()
            .get("dr")
            .await
            .expect("get")
            .status
            .expect("status");
        seen.push(ready_condition(&status));
        assert!(
            started.elapsed() < TAKEOVER_WAIT,
            "b did not take over; log of b:\n{}",
            b.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for condition in &seen {
        assert_eq!(
            condition, &ready_before,
            "Ready changed during the handover"
        );
    }

    control
        .set_phase(SimPhase::RestoreDatabases)
        .await
        .expect("set phase");
    let object = env
        .wait_logged(&b, "dr", WAIT, |s| {
            s.restore_phase == Some(RestorePhase::RestoreDatabases)
        })
        .await;
    let after = object.status.expect("status");
    assert_conditions(&after, ("False", "RestoreInProgress"), "True", "False");
    assert_eq!(
        ready_condition(&after).last_transition_time,
        ready_before.last_transition_time,
        "Ready kept its transition time"
    );
    assert_eq!(after.start_time, before.start_time);
    assert_eq!(
        control.login_count().await.expect("count"),
        2,
        "the new leader logged in once"
    );
}

#[tokio::test]
async fn leader_sigterm_hands_over_quickly() {
    let env = TestEnv::new("leaderterm").await;
    let sim = env.start_sim(&[]);
    env.put_default_secrets(&sim).await;
    let mut a = start_replica(&env, "a");
    wait_for_holder(&env, "a", WAIT).await;
    let b = start_replica(&env, "b");
    env.create_restore("dr", &sim, json!({})).await;
    let before = env
        .wait_logged(&a, "dr", WAIT, |s| s.phase == Some(Phase::Waiting))
        .await;
    let ready_before = ready_condition(&before.status.expect("status"));

    // Stop the holder 6 s after one of its renewals, so its Lease still has about 9 s to
    // run: a takeover that only waits for expiry shows as a delay of that length.
    let renew_time = |l: Option<Lease>| l.and_then(|l| l.spec).and_then(|s| s.renew_time);
    let first = renew_time(lease(&env).await);
    let deadline = Instant::now() + WAIT;
    while renew_time(lease(&env).await) == first {
        assert!(Instant::now() < deadline, "the holder never renewed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let duration = lease(&env)
        .await
        .and_then(|l| l.spec)
        .and_then(|s| s.lease_duration_seconds)
        .expect("leaseDurationSeconds");
    assert_eq!(duration, 15);
    tokio::time::sleep(Duration::from_secs(6)).await;

    let stopped_at = Instant::now();
    assert!(a.terminate(), "a exited within 10 s of SIGTERM");
    let exited = stopped_at.elapsed();
    wait_for_holder(&env, "b", TAKEOVER_WAIT).await;
    let since_sigterm = stopped_at.elapsed();
    assert!(
        since_sigterm < Duration::from_secs(5),
        "b took the released Lease {since_sigterm:?} after SIGTERM (a exited after \
         {exited:?}); the old Lease had about 9 s left.\nlog of a:\n{}\nlog of b:\n{}",
        a.log(),
        b.log()
    );
    let after = env
        .wait_logged(&b, "dr", WAIT, |s| s.phase == Some(Phase::Waiting))
        .await;
    assert_eq!(
        ready_condition(&after.status.expect("status")),
        ready_before,
        "Ready unchanged"
    );
}

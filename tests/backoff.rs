//! Backoff of a failing server, read from the simulator's request log: the gaps between
//! polls grow and stop growing at the cap, go back to the poll interval once the server
//! responds again, and a second server keeps its own schedule all along.

// Tests keep their full size: each one is a scenario with its checks in order.
#![allow(clippy::too_many_lines)]

mod common;

use std::time::{Duration, Instant};

use common::{Operator, TestEnv, has_reason, request_times};
use serde_json::json;
use sklm_restore_operator::crd::Phase;
use sklm_sim::{ErrorFormat, Fault};

const WAIT: Duration = Duration::from_secs(30);
const POLL: &str = "/ckms/restore/isrunning";

fn gaps(times: &[u64]) -> Vec<u64> {
    times.windows(2).map(|pair| pair[1] - pair[0]).collect()
}

/// Waits until the simulator has logged `count` polls since its log was cleared.
async fn wait_for_polls(
    control: &sklm_sim::ControlClient,
    count: usize,
    timeout: Duration,
) -> Vec<u64> {
    let deadline = Instant::now() + timeout;
    loop {
        let times = request_times(control, "GET", POLL).await;
        if times.len() >= count {
            return times;
        }
        assert!(
            Instant::now() < deadline,
            "only {} polls within {timeout:?}: {times:?}",
            times.len()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Starts two servers with one object each, both polled every second, and returns once
/// both objects wait for a restore.
async fn two_servers(env: &TestEnv) -> (sklm_sim::SimProcess, sklm_sim::SimProcess, Operator) {
    let failing = env.start_sim(&[]);
    let healthy = env.start_sim(&[]);
    env.put_default_secrets(&failing).await;
    let healthy_ca = healthy.ca_pem().expect("CA");
    env.put_secret("healthy-ca", &[("ca.crt", healthy_ca.as_bytes())])
        .await;
    let operator = Operator::start(env, &[]);
    env.create_restore("failing", &failing, json!({})).await;
    env.create_restore(
        "healthy",
        &healthy,
        json!({"server": {"caSecretRef": {"name": "healthy-ca"}}}),
    )
    .await;
    for name in ["failing", "healthy"] {
        env.wait_logged(&operator, name, WAIT, |s| s.phase == Some(Phase::Waiting))
            .await;
    }
    (failing, healthy, operator)
}

#[tokio::test]
async fn backoff_gaps_grow_then_reset() {
    let env = TestEnv::new("backoff").await;
    let (failing, healthy, operator) = two_servers(&env).await;
    let failing_control = failing.control().expect("control client");
    let healthy_control = healthy.control().expect("control client");

    failing_control
        .set_fault(&Fault::http_error(503, ErrorFormat::Json))
        .await
        .expect("set fault");
    failing_control.clear_requests().await.expect("clear");
    healthy_control.clear_requests().await.expect("clear");
    // Failed polls 1 to 5 come 1, 2, 4 and 8 s apart (±10 % jitter).
    let times = wait_for_polls(&failing_control, 5, Duration::from_secs(60)).await;
    failing_control.clear_faults().await.expect("clear faults");
    let failing_gaps = gaps(&times[..5]);
    for pair in failing_gaps.windows(2) {
        assert!(
            pair[1] * 10 >= pair[0] * 15,
            "gaps do not grow: {failing_gaps:?} ms"
        );
    }
    assert!(failing_gaps[0] >= 800, "first gap {failing_gaps:?} ms");
    assert!(failing_gaps[3] >= 6_000, "fourth gap {failing_gaps:?} ms");
    let healthy_times = request_times(&healthy_control, "GET", POLL).await;
    let window_seconds = (times[4] - times[0]) / 1000;
    assert!(
        u64::try_from(healthy_times.len()).expect("small") * 10 >= window_seconds * 7,
        "the healthy server got {} polls in about {window_seconds} s",
        healthy_times.len()
    );

    // The next poll, after the 16 s gap, succeeds; from then on the interval is 1 s.
    env.wait_logged(&operator, "failing", Duration::from_secs(60), |s| {
        has_reason(s, "WaitingForRestore")
    })
    .await;
    failing_control.clear_requests().await.expect("clear");
    tokio::time::sleep(Duration::from_secs(8)).await;
    let recovered = request_times(&failing_control, "GET", POLL).await;
    assert!(
        recovered.len() >= 5,
        "only {} polls in 8 s after recovery: {recovered:?}",
        recovered.len()
    );
    for gap in gaps(&recovered) {
        assert!(gap < 2_500, "gap of {gap} ms after recovery: {recovered:?}");
    }
}

#[tokio::test]
async fn backoff_gap_capped_at_one_minute() {
    let env = TestEnv::new("backoffcap").await;
    let (failing, healthy, _operator) = two_servers(&env).await;
    let failing_control = failing.control().expect("control client");
    let healthy_control = healthy.control().expect("control client");

    failing_control
        .set_fault(&Fault::http_error(500, ErrorFormat::Html))
        .await
        .expect("set fault");
    failing_control.clear_requests().await.expect("clear");
    healthy_control.clear_requests().await.expect("clear");
    // Gaps 1, 2, 4, 8, 16, 32 s, then 60 s (the cap) instead of 64 s: about 123 s.
    let times = wait_for_polls(&failing_control, 8, Duration::from_secs(200)).await;
    let failing_gaps = gaps(&times[..8]);
    assert!(
        failing_gaps[5] >= 28_000,
        "sixth gap should be about 32 s: {failing_gaps:?} ms"
    );
    assert!(
        (50_000..=70_000).contains(&failing_gaps[6]),
        "seventh gap should be capped at about 60 s: {failing_gaps:?} ms"
    );
    let healthy_times = request_times(&healthy_control, "GET", POLL).await;
    let window_seconds = (times[7] - times[0]) / 1000;
    assert!(
        u64::try_from(healthy_times.len()).expect("small") * 10 >= window_seconds * 8,
        "the healthy server got {} polls in about {window_seconds} s",
        healthy_times.len()
    );
}

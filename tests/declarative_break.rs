//! `spec.restore` cases that the other declarative tests leave out. They cover the
//! chart's RBAC, a rejected session followed by a failed login, and a slow acceptance.
//! Others add `spec.restore` while a restore runs, send odd 2xx bodies, edit the path
//! between `NotSent` retries or under a stale cache, and look for secrets in trace logs.
//!
//! Tests marked `known failure` show a bug in the operator. Each test checks that the
//! simulator received at most one processed run-restore request per object.

#![allow(clippy::too_many_lines)]

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{Operator, SimProcess, TestEnv, condition, ready};
use kube::api::{Patch, PatchParams};
use serde_json::json;
use sklm_restore_operator::crd::{Phase, SklmRestoreStatus, SubmissionState};
use sklm_sim::{Backup, ControlClient, Endpoint, ErrorFormat, Fault, FaultAction, RunRequest};

const WAIT: Duration = Duration::from_secs(60);
const BACKUP: &str = "/opt/backups/sklm_backup.jar";
const OTHER_BACKUP: &str = "/opt/backups/other_backup.jar";
const BACKUP_PASSWORD: &str = "backup-passw0rd";

fn restore_spec(path: &str) -> serde_json::Value {
    json!({"restore": {"backupFilePath": path, "passwordSecretRef": {"name": "backup"}}})
}

/// Creates a namespace and starts a simulator, then writes the default Secrets and the
/// backup password Secret.
async fn setup(name: &str) -> (TestEnv, SimProcess, ControlClient) {
    let env = TestEnv::new(name).await;
    let sim = env.start_sim(&[]);
    let control = sim.control().expect("control client");
    env.put_default_secrets(&sim).await;
    env.put_secret("backup", &[("password", BACKUP_PASSWORD.as_bytes())])
        .await;
    (env, sim, control)
}

/// Counts the run-restore requests that reached the simulator, whatever their response.
async fn posts(control: &ControlClient) -> usize {
    control.count("POST", "/ckms/restore").await.expect("count")
}

/// Returns the backup paths of the run-restore requests the server may have acted on:
/// not those rejected by the session check (401) or redirected by a fault (3xx).
async fn processed_paths(control: &ControlClient) -> Vec<String> {
    control
        .requests()
        .await
        .expect("request log")
        .iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/ckms/restore"))
        .filter(|r| {
            !r.status
                .is_some_and(|s| s == 401 || (300..400).contains(&s))
        })
        .map(|r| r.backup_file_path.clone().unwrap_or_default())
        .collect()
}

/// Waits until the simulator logged `count` processed run-restore requests.
async fn wait_for_processed(control: &ControlClient, count: usize, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let processed = processed_paths(control).await.len();
        if processed >= count {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{processed} of {count} processed run-restore requests within {timeout:?}; log: {:?}",
            control.requests().await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn state(status: &SklmRestoreStatus) -> Option<SubmissionState> {
    status.submission.as_ref().map(|s| s.state)
}

/// Returns whether the submission has a recorded outcome (any state but `Sending`).
fn has_outcome(status: &SklmRestoreStatus) -> bool {
    state(status).is_some_and(|s| s != SubmissionState::Sending)
}

fn has_state(status: &SklmRestoreStatus, expected: SubmissionState) -> bool {
    state(status) == Some(expected)
}

fn pretty(status: &SklmRestoreStatus) -> String {
    serde_json::to_string_pretty(status).unwrap_or_default()
}

async fn current_status(env: &TestEnv, name: &str) -> SklmRestoreStatus {
    env.restores()
        .get(name)
        .await
        .expect("get")
        .status
        .unwrap_or_default()
}

/// Returns a fault that answers the POST with 200 and a success body without starting a
/// run, as a server that starts the restore some time after accepting it.
fn accept_without_run() -> Fault {
    Fault {
        action: FaultAction::HttpError {
            status: 200,
            format: ErrorFormat::Json,
            code: Some("CTGKM3290I".to_owned()),
        },
        endpoints: Some(vec![Endpoint::Restore]),
    }
}

fn kubectl(args: &[&str]) -> std::process::Output {
    Command::new("kubectl")
        .args(args)
        .output()
        .expect("run kubectl")
}

/// The Helm chart's own RBAC, in namespace scope, must let the operator send the
/// run-restore request. The fresh read before the `Sending` record is a GET on the
/// `status` subresource, and the chart grants only `patch` there.
#[tokio::test]
async fn chart_rbac_allows_declarative_restore() {
    let (env, sim, control) = setup("rbacsubmit").await;
    let _ = kubectl(&["create", "namespace", "sklm-system"]);
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
        .expect("UTF-8 path")
        .trim()
        .to_owned();
    let watch = format!("watchNamespaces={{{}}}", env.namespace);
    let rendered = Command::new(&helm)
        .args([
            "template",
            "sklm-restore-operator",
            concat!(env!("CARGO_MANIFEST_DIR"), "/charts/sklm-restore-operator"),
            "--namespace",
            "sklm-system",
            "--set",
            "rbac.scope=namespace",
            "--set",
            &watch,
            "--show-only",
            "templates/rbac.yaml",
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

    let kubeconfig = std::path::Path::new(&std::env::var("KUBECONFIG").expect("KUBECONFIG"))
        .with_file_name("operator.kubeconfig");
    let operator = Operator::start_with_kubeconfig(&env, &kubeconfig, &[]);
    env.create_restore("dr", &sim, restore_spec(BACKUP)).await;

    let object = env.wait_logged(&operator, "dr", WAIT, has_outcome).await;
    let status = object.status.expect("status");
    assert!(
        has_state(&status, SubmissionState::Accepted),
        "{}",
        pretty(&status)
    );
    assert_eq!(processed_paths(&control).await, vec![BACKUP.to_owned()]);
    assert!(
        !operator.log().contains("forbidden"),
        "operator log:\n{}",
        operator.log()
    );
}

/// A POST answered 401 was not acted on. When the login that follows fails with a 5xx,
/// the request never reached the server, so the record must be `NotSent` and the request
/// sent once the server recovers, as for any other failed login.
#[tokio::test]
async fn relogin_failure_after_post_401_is_not_sent() {
    let (env, sim, control) = setup("relogin503").await;
    let operator = Operator::start(&env, &[]);
    // A 60 s interval keeps the shared poller from polling, and so from logging in
    // again, between the revocation below and the run-restore request.
    env.create_restore("watch", &sim, json!({"pollIntervalSeconds": 60}))
        .await;
    env.wait_logged(&operator, "watch", WAIT, |s| {
        s.phase == Some(Phase::Waiting)
    })
    .await;
    let revoked = control.revoke_sessions().await.expect("revoke");
    assert!(revoked >= 1, "the watch has a session");
    control
        .set_fault(&Fault::http_error(503, ErrorFormat::Html).only(&[Endpoint::Login]))
        .await
        .expect("fault");
    let mut spec = restore_spec(BACKUP);
    common::merge(&mut spec, &json!({"pollIntervalSeconds": 60}));
    env.create_restore("dr", &sim, spec).await;

    let object = env.wait_logged(&operator, "dr", WAIT, has_outcome).await;
    let status = object.status.expect("status");
    assert_eq!(posts(&control).await, 1, "one POST, answered 401");
    assert!(
        processed_paths(&control).await.is_empty(),
        "the only POST was rejected by the session check"
    );
    assert!(
        has_state(&status, SubmissionState::NotSent),
        "the server never acted on the request: {}",
        pretty(&status)
    );

    control.clear_faults().await.expect("clear faults");
    wait_for_processed(&control, 1, Duration::from_secs(90)).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(processed_paths(&control).await.len(), 1);
}

/// `timeoutSeconds` may be up to 300, so the server may accept the request more than
/// 120 s after `submittedTime`. A restore accepted a few seconds ago must still get the
/// start grace, not end at the first "not running" poll.
#[tokio::test]
async fn slow_acceptance_keeps_start_grace() {
    let (env, sim, control) = setup("slowaccept").await;
    control
        .set_faults(&[
            Fault::slow(Duration::from_secs(125)).only(&[Endpoint::Restore]),
            accept_without_run(),
        ])
        .await
        .expect("faults");
    let operator = Operator::start(&env, &[]);
    let mut spec = restore_spec(BACKUP);
    common::merge(&mut spec, &json!({"server": {"timeoutSeconds": 150}}));
    env.create_restore("dr", &sim, spec).await;

    env.wait_logged(&operator, "dr", Duration::from_secs(200), |s| {
        has_state(s, SubmissionState::Accepted)
    })
    .await;
    let accepted = Instant::now();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let status = current_status(&env, "dr").await;
    println!("status {:?} after acceptance", accepted.elapsed());
    assert_eq!(
        status.phase,
        Some(Phase::Running),
        "accepted about 10 s ago, so the restore has not ended: {}",
        pretty(&status)
    );
    assert!(
        common::has_reason(&status, "SubmittedRestoreStarting"),
        "{}",
        pretty(&status)
    );
    assert_eq!(posts(&control).await, 1);
}

/// `spec.restore` added to an object that watches a running restore. The server rejects
/// the request as busy, but the restore it runs succeeds, and the object must report
/// that outcome, not `Failed`.
#[tokio::test]
async fn restore_added_mid_restore_keeps_outcome() {
    let (env, sim, control) = setup("midadd").await;
    let operator = Operator::start(&env, &[]);
    env.create_restore("dr", &sim, json!({})).await;
    env.wait_logged(&operator, "dr", WAIT, |s| s.phase == Some(Phase::Waiting))
        .await;
    let run = RunRequest {
        step_ms: Some(4000),
        restart_seconds: Some(0),
        ..RunRequest::default()
    };
    control.run_restore(&run).await.expect("start a run");
    env.wait_logged(&operator, "dr", WAIT, |s| s.phase == Some(Phase::Running))
        .await;

    let patch = json!({"spec": restore_spec(BACKUP)});
    env.restores()
        .patch("dr", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("patch spec");
    let object = env
        .wait_logged(&operator, "dr", Duration::from_secs(90), |s| {
            s.phase.is_some_and(Phase::is_finished)
        })
        .await;
    let status = object.status.expect("status");
    let state = control.state().await.expect("simulator state");
    println!("simulator's last run: {:?}", state.last_run);
    assert!(
        state.runs_started == 1,
        "one run, started by the test: {state:?}"
    );
    assert_eq!(
        status.phase,
        Some(Phase::Completed),
        "the watched restore succeeded: {}",
        pretty(&status)
    );
}

/// A 2xx response is `Accepted`, whatever its body. A body over the client's 16 KiB
/// limit does not make the server's acceptance unknown.
#[tokio::test]
async fn oversized_accept_body_is_accepted() {
    let (env, sim, control) = setup("bigaccept").await;
    control
        .set_fault(&Fault::oversized(20 * 1024).only(&[Endpoint::Restore]))
        .await
        .expect("fault");
    let operator = Operator::start(&env, &[]);
    env.create_restore("dr", &sim, restore_spec(BACKUP)).await;

    let object = env.wait_logged(&operator, "dr", WAIT, has_outcome).await;
    let status = object.status.expect("status");
    let statuses: Vec<Option<u16>> = control
        .requests()
        .await
        .expect("request log")
        .iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/ckms/restore"))
        .map(|r| r.status)
        .collect();
    assert_eq!(statuses, vec![Some(200)], "the server answered 200 once");
    assert!(
        has_state(&status, SubmissionState::Accepted),
        "{}",
        pretty(&status)
    );
}

/// A 2xx response with a body that is not JSON is still `Accepted`, sent once, and its
/// text lands in the record cut to size.
#[tokio::test]
async fn garbage_accept_body_is_accepted_once() {
    let (env, sim, control) = setup("garbageaccept").await;
    control
        .set_fault(&Fault::garbage().only(&[Endpoint::Restore]))
        .await
        .expect("fault");
    let operator = Operator::start(&env, &[]);
    env.create_restore("dr", &sim, restore_spec(BACKUP)).await;

    let object = env.wait_logged(&operator, "dr", WAIT, has_outcome).await;
    let status = object.status.expect("status");
    let record = status.submission.clone().expect("submission");
    assert_eq!(
        record.state,
        SubmissionState::Accepted,
        "{}",
        pretty(&status)
    );
    assert!(record.message.contains("not JSON"), "{}", pretty(&status));
    assert_eq!(record.http_status, None);
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(posts(&control).await, 1);
}

/// `spec.restore.backupFilePath` changed while the request is `NotSent`: nothing was
/// sent yet, so the next attempt sends the new path, the record names it, and the
/// `RestoreSubmitted` condition does not call the change ignored.
#[tokio::test]
async fn not_sent_retry_sends_edited_path() {
    let (env, sim, control) = setup("pathedit").await;
    let backups = [BACKUP, OTHER_BACKUP].map(|path| Backup {
        path: path.to_owned(),
        password: Some(BACKUP_PASSWORD.to_owned()),
        outcome: None,
    });
    control.set_backups(&backups).await.expect("backups");
    // A redirect response to the POST gives `NotSent` while the polls keep working.
    control
        .set_fault(&Fault::redirect("https://127.0.0.1:1/elsewhere").only(&[Endpoint::Restore]))
        .await
        .expect("fault");
    let operator = Operator::start(&env, &[]);
    env.create_restore("dr", &sim, restore_spec(BACKUP)).await;
    let object = env
        .wait_logged(&operator, "dr", WAIT, |s| {
            has_state(s, SubmissionState::NotSent)
        })
        .await;
    let status = object.status.expect("status");
    assert_eq!(
        status
            .submission
            .as_ref()
            .map(|r| r.backup_file_path.as_str()),
        Some(BACKUP)
    );

    let patch = json!({"spec": {"restore": {"backupFilePath": OTHER_BACKUP}}});
    env.restores()
        .patch("dr", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("patch spec");
    control.clear_faults().await.expect("clear faults");

    wait_for_processed(&control, 1, Duration::from_secs(90)).await;
    let object = env
        .wait_logged(&operator, "dr", WAIT, |s| {
            has_state(s, SubmissionState::Accepted)
                && condition(s, "RestoreSubmitted").is_some_and(|c| c.status == "True")
        })
        .await;
    let status = object.status.expect("status");
    assert_eq!(
        processed_paths(&control).await,
        vec![OTHER_BACKUP.to_owned()],
        "the edited path is the one sent"
    );
    let record = status.submission.clone().expect("submission");
    assert_eq!(record.backup_file_path, OTHER_BACKUP, "{}", pretty(&status));
    let message = condition(&status, "RestoreSubmitted")
        .map(|c| c.message.clone())
        .unwrap_or_default();
    assert!(!message.contains("ignored"), "{message}");
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(processed_paths(&control).await.len(), 1);
}

/// With every crate logging at trace, neither the login password nor the backup
/// password appears in the operator's log, the Events, the status or the metrics, through
/// a failed login at submission, the retry and the end of the restore.
#[tokio::test]
async fn trace_logging_keeps_passwords_out() {
    let (env, sim, control) = setup("tracelog").await;
    control
        .set_fault(&Fault::http_error(503, ErrorFormat::Json).only(&[Endpoint::Login]))
        .await
        .expect("fault");
    let kubeconfig = std::env::var_os("KUBECONFIG").expect("KUBECONFIG");
    let operator = Operator::start_with_env(
        &env,
        std::path::Path::new(&kubeconfig),
        &[],
        &[("RUST_LOG", "trace")],
    );
    env.create_restore("dr", &sim, restore_spec(BACKUP)).await;
    env.wait_logged(&operator, "dr", WAIT, |s| {
        has_state(s, SubmissionState::NotSent)
    })
    .await;
    control.clear_faults().await.expect("clear faults");
    let object = env
        .wait_logged(&operator, "dr", Duration::from_secs(120), |s| {
            s.phase.is_some_and(Phase::is_finished)
        })
        .await;
    let status = object.status.expect("status");
    assert_eq!(status.phase, Some(Phase::Completed), "{}", pretty(&status));
    assert!(ready(&status).is_some());

    let log = operator.log();
    assert!(
        log.contains("run-restore request sent"),
        "the log covers the request"
    );
    let raw_status = env.raw_status("dr").await.to_string();
    let events = env.event_text().await;
    let metrics = operator.metrics().await;
    for (text, what) in [
        (&log, "the operator log"),
        (&raw_status, "the status"),
        (&events, "the Events"),
        (&metrics, "the metrics"),
    ] {
        common::assert_no_secret(text, what);
        assert!(
            !text.contains(BACKUP_PASSWORD),
            "the backup password appears in {what}"
        );
    }
    assert_eq!(processed_paths(&control).await.len(), 1);
}

/// Control plane of one test: `hack/control-plane.sh` on free ports and a temporary
/// folder, so the test can restart its API server. `down` runs on drop.
struct OwnControlPlane {
    dir: tempfile::TempDir,
    etcd_port: u16,
    api_port: u16,
}

/// Returns a free port `p` from 28000 to 28899 whose `p + offset` is free too, away from
/// the default ports of `hack/control-plane.sh`.
fn free_port_pair(offset: u16) -> u16 {
    for _ in 0..200 {
        let port = 28_000 + u16::try_from(rand::random::<u32>() % 900).expect("small");
        let free = |p: u16| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok();
        if free(port) && free(port + offset) {
            return port;
        }
    }
    panic!("no free port pair with offset {offset} after 200 tries");
}

impl OwnControlPlane {
    fn up() -> OwnControlPlane {
        let dir = tempfile::Builder::new()
            .prefix("sklm-break-cp-")
            .tempdir()
            .expect("temp dir");
        let plane = OwnControlPlane {
            dir,
            etcd_port: free_port_pair(10),
            api_port: free_port_pair(1),
        };
        plane.run("up");
        let crds = concat!(env!("CARGO_MANIFEST_DIR"), "/crds");
        plane.kubectl(&["apply", "--server-side", "-f", crds], None);
        plane.kubectl(
            &[
                "wait",
                "--for=condition=Established",
                "crd/sklmrestores.sklm.dev",
                "--timeout=60s",
            ],
            None,
        );
        plane
    }

    fn kubeconfig(&self) -> std::path::PathBuf {
        self.dir.path().join("kubeconfig")
    }

    fn operator_kubeconfig(&self) -> std::path::PathBuf {
        self.dir.path().join("operator.kubeconfig")
    }

    fn run(&self, action: &str) {
        let output = Command::new("bash")
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/hack/control-plane.sh"
            ))
            .arg(action)
            .env("SKLM_CP_DIR", self.dir.path())
            .env("SKLM_ETCD_PORT", self.etcd_port.to_string())
            .env("SKLM_APISERVER_PORT", self.api_port.to_string())
            .output()
            .expect("run hack/control-plane.sh");
        assert!(
            output.status.success(),
            "control-plane.sh {action} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// Runs kubectl as the admin, with `stdin` as its input when given.
    fn kubectl(&self, args: &[&str], stdin: Option<&str>) {
        use std::io::Write;
        let mut child = Command::new("kubectl")
            .args(args)
            .env("KUBECONFIG", self.kubeconfig())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run kubectl");
        let mut input = child.stdin.take().expect("kubectl stdin");
        input
            .write_all(stdin.unwrap_or_default().as_bytes())
            .expect("write kubectl stdin");
        drop(input);
        let output = child.wait_with_output().expect("wait for kubectl");
        assert!(
            output.status.success(),
            "kubectl {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// Stops only this plane's kube-apiserver by its recorded process id, then starts it
    /// again with `up`, which leaves the running etcd and its data as they are.
    fn restart_apiserver(&self) {
        let pid_file = self.dir.path().join("kube-apiserver.pid");
        let pid = std::fs::read_to_string(&pid_file).expect("kube-apiserver.pid");
        let pid = pid.trim().to_owned();
        let status = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill");
        assert!(status.success(), "kill -TERM {pid}");
        let deadline = Instant::now() + Duration::from_secs(60);
        while !process_stopped(&pid) {
            assert!(
                Instant::now() < deadline,
                "kube-apiserver {pid} did not stop"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        std::fs::remove_file(&pid_file).expect("remove kube-apiserver.pid");
        self.run("up");
    }
}

/// Reports whether process `pid` has exited or is a zombie.
fn process_stopped(pid: &str) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return true;
    };
    let state = stat.rsplit(')').next().unwrap_or_default().trim_start();
    state.starts_with('Z')
}

impl Drop for OwnControlPlane {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/hack/control-plane.sh"
            ))
            .arg("down")
            .env("SKLM_CP_DIR", self.dir.path())
            .env("SKLM_ETCD_PORT", self.etcd_port.to_string())
            .env("SKLM_APISERVER_PORT", self.api_port.to_string())
            .output();
    }
}

/// Builds a Role and RoleBinding for the operator's user in `namespace`. With `watch`,
/// the Role also allows list and watch on the objects.
fn operator_role(namespace: &str, watch: bool) -> String {
    let object_verbs = if watch {
        r#"["get", "list", "watch"]"#
    } else {
        r#"["get"]"#
    };
    format!(
        r#"apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {{name: operator, namespace: {namespace}}}
rules:
  - {{apiGroups: ["sklm.dev"], resources: ["sklmrestores"], verbs: {object_verbs}}}
  - {{apiGroups: ["sklm.dev"], resources: ["sklmrestores/status"], verbs: ["get", "patch"]}}
  - {{apiGroups: [""], resources: ["secrets"], verbs: ["list", "watch"]}}
  - {{apiGroups: ["events.k8s.io"], resources: ["events"], verbs: ["create", "patch"]}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: operator, namespace: {namespace}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: operator}}
subjects:
  - {{kind: ServiceAccount, name: sklm-restore-operator, namespace: sklm-system}}
"#
    )
}

/// The path edit lands while the operator's object cache is stale. The fresh read before
/// the `Sending` record shows the new path, and the record is written against that read,
/// so the old path must not be sent. The cache is held stale by restarting the API
/// server after taking away list and watch, so the watch cannot list again.
#[tokio::test]
async fn stale_cache_path_edit_never_sends_old_path() {
    let plane = OwnControlPlane::up();
    let env = TestEnv::new_with_kubeconfig("stalespec", &plane.kubeconfig()).await;
    plane.kubectl(
        &["apply", "-f", "-"],
        Some(&operator_role(&env.namespace, true)),
    );
    let sim = env.start_sim(&[]);
    let control = sim.control().expect("control client");
    env.put_default_secrets(&sim).await;
    env.put_secret("backup", &[("password", BACKUP_PASSWORD.as_bytes())])
        .await;
    let backups = [BACKUP, OTHER_BACKUP].map(|path| Backup {
        path: path.to_owned(),
        password: Some(BACKUP_PASSWORD.to_owned()),
        outcome: None,
    });
    control.set_backups(&backups).await.expect("backups");
    control
        .set_fault(&Fault::redirect("https://127.0.0.1:1/elsewhere").only(&[Endpoint::Restore]))
        .await
        .expect("fault");
    let operator = Operator::start_with_kubeconfig(&env, &plane.operator_kubeconfig(), &[]);
    env.create_restore("dr", &sim, restore_spec(BACKUP)).await;
    env.wait_logged(&operator, "dr", WAIT, |s| {
        has_state(s, SubmissionState::NotSent)
    })
    .await;

    plane.kubectl(
        &["apply", "-f", "-"],
        Some(&operator_role(&env.namespace, false)),
    );
    plane.restart_apiserver();
    let patch = json!({"spec": {"restore": {"backupFilePath": OTHER_BACKUP}}});
    let deadline = Instant::now() + WAIT;
    while let Err(error) = env
        .restores()
        .patch("dr", &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        assert!(Instant::now() < deadline, "patch spec: {error}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    control.clear_faults().await.expect("clear faults");

    // The `NotSent` retry comes within 30 s; 60 s leaves room for a slow machine.
    tokio::time::sleep(Duration::from_secs(60)).await;
    let paths = processed_paths(&control).await;
    let status = current_status(&env, "dr").await;
    assert!(
        !paths.iter().any(|p| p == BACKUP),
        "the replaced path was sent: {paths:?}; status: {}",
        pretty(&status)
    );
    assert!(paths.len() <= 1, "{paths:?}");
}

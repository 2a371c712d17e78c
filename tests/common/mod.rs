//! Shared parts of the integration tests: a namespace per test on the real API server
//! named by KUBECONFIG (started by `hack/control-plane.sh up`), the operator binary as a
//! child process, and the SKLM simulator.

#![allow(dead_code)] // Each test binary uses a different subset of these helpers.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::Client;
use kube::api::{Api, ObjectMeta, PostParams};
use serde_json::json;
use sklm_restore_operator::crd::{SklmRestore, SklmRestoreStatus};

pub use sklm_sim::SimProcess;

/// Password used in every test Secret; the hygiene checks look for it in all output.
pub const PASSWORD: &str = "Pw-7d41c2e9-secret";
pub const USER: &str = "klmadmin";

/// A namespace of its own on the test API server.
pub struct TestEnv {
    pub client: Client,
    pub namespace: String,
    pub workdir: tempfile::TempDir,
}

impl TestEnv {
    pub async fn new(name: &str) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        assert!(
            std::env::var_os("KUBECONFIG").is_some(),
            "KUBECONFIG is not set: run hack/test.sh, or `eval $(hack/control-plane.sh up)` first"
        );
        let client = Client::try_default()
            .await
            .expect("Kubernetes client from KUBECONFIG");
        let namespace = format!("{name}-{:06x}", rand::random::<u32>() & 0xff_ffff);
        let ns = Namespace {
            metadata: ObjectMeta {
                name: Some(namespace.clone()),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .expect("create test namespace");
        TestEnv {
            client,
            namespace,
            workdir: tempfile::tempdir().expect("temp dir"),
        }
    }

    pub fn restores(&self) -> Api<SklmRestore> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    pub fn secrets(&self) -> Api<Secret> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// Creates or replaces an Opaque Secret with raw byte values.
    pub async fn put_secret(&self, name: &str, data: &[(&str, &[u8])]) {
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                ..ObjectMeta::default()
            },
            data: Some(
                data.iter()
                    .map(|(k, v)| ((*k).to_owned(), ByteString(v.to_vec())))
                    .collect(),
            ),
            ..Secret::default()
        };
        let params = kube::api::PatchParams::apply("tests").force();
        self.secrets()
            .patch(name, &params, &kube::api::Patch::Apply(&secret))
            .await
            .expect("apply secret");
    }

    /// The usual credentials Secret `admin` and the simulator's CA in Secret `sim-ca`.
    pub async fn put_default_secrets(&self, sim: &SimProcess) {
        self.put_secret(
            "admin",
            &[
                ("userid", USER.as_bytes()),
                ("password", PASSWORD.as_bytes()),
            ],
        )
        .await;
        let ca = sim.ca_pem().expect("the simulator wrote its CA");
        self.put_secret("sim-ca", &[("ca.crt", ca.as_bytes())])
            .await;
    }

    /// Creates an SklmRestore watching `sim` with the default Secrets; `extra` is merged
    /// into the spec.
    pub async fn create_restore(
        &self,
        name: &str,
        sim: &SimProcess,
        extra: serde_json::Value,
    ) -> SklmRestore {
        let mut spec = json!({
            "server": {"url": sim.api_url(), "caSecretRef": {"name": "sim-ca"}, "timeoutSeconds": 3},
            "credentialsSecretRef": {"name": "admin"},
            "pollIntervalSeconds": 1,
        });
        merge(&mut spec, &extra);
        self.create_raw(name, spec).await
    }

    pub async fn create_raw(&self, name: &str, spec: serde_json::Value) -> SklmRestore {
        let object: SklmRestore = serde_json::from_value(json!({
            "apiVersion": "sklm.dev/v1alpha1",
            "kind": "SklmRestore",
            "metadata": {"name": name},
            "spec": spec,
        }))
        .expect("valid SklmRestore");
        self.restores()
            .create(&PostParams::default(), &object)
            .await
            .expect("create SklmRestore")
    }

    /// Polls the object until `accept` returns true for its status, or panics after
    /// `timeout` with the last status seen.
    /// Like [`TestEnv::wait_status`], printing the operator's log when it times out.
    pub async fn wait_logged(
        &self,
        operator: &Operator,
        name: &str,
        timeout: Duration,
        accept: impl Fn(&SklmRestoreStatus) -> bool,
    ) -> SklmRestore {
        let deadline = Instant::now() + timeout;
        loop {
            let object = self.restores().get(name).await.expect("get SklmRestore");
            if object.status.as_ref().is_some_and(&accept) {
                return object;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {timeout:?} waiting for {name}; last status: {}\noperator log:\n{}",
                serde_json::to_string_pretty(&object.status).unwrap_or_default(),
                operator.log()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub async fn wait_status(
        &self,
        name: &str,
        timeout: Duration,
        accept: impl Fn(&SklmRestoreStatus) -> bool,
    ) -> SklmRestore {
        let deadline = Instant::now() + timeout;
        loop {
            let object = self.restores().get(name).await.expect("get SklmRestore");
            if object.status.as_ref().is_some_and(&accept) {
                return object;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {timeout:?} waiting for {name}; last status: {}",
                serde_json::to_string_pretty(&object.status).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Event notes and reasons recorded for objects in the namespace.
    pub async fn event_text(&self) -> String {
        let events: Api<k8s_openapi::api::events::v1::Event> =
            Api::namespaced(self.client.clone(), &self.namespace);
        let list = events
            .list(&kube::api::ListParams::default())
            .await
            .expect("list events");
        let mut text = String::new();
        for event in &list.items {
            let fields = [&event.type_, &event.reason, &event.note];
            for field in fields {
                text.push_str(field.as_deref().unwrap_or_default());
                text.push(' ');
            }
            text.push('\n');
        }
        text
    }

    /// Starts a simulator whose user is [`USER`] with [`PASSWORD`], plus `args`.
    #[allow(clippy::unused_self)] // A method, so tests read `env.start_sim(...)` like the rest.
    pub fn start_sim(&self, args: &[&str]) -> SimProcess {
        let user = format!("{USER}:{PASSWORD}");
        let mut all = vec!["--user", user.as_str()];
        all.extend_from_slice(args);
        SimProcess::spawn(sim_binary(), all).expect("start the simulator")
    }
}

/// Merges `extra` into `base`, object by object.
pub fn merge(base: &mut serde_json::Value, extra: &serde_json::Value) {
    match (base, extra) {
        (serde_json::Value::Object(base), serde_json::Value::Object(extra)) => {
            for (key, value) in extra {
                merge(
                    base.entry(key.clone()).or_insert(serde_json::Value::Null),
                    value,
                );
            }
        }
        (base, extra) => *base = extra.clone(),
    }
}

pub fn ready(status: &SklmRestoreStatus) -> Option<(&str, &str)> {
    condition(status, "Ready").map(|c| (c.status.as_str(), c.reason.as_str()))
}

pub fn condition<'a>(
    status: &'a SklmRestoreStatus,
    type_: &str,
) -> Option<&'a sklm_restore_operator::crd::Condition> {
    status.conditions.iter().find(|c| c.type_ == type_)
}

pub fn has_reason(status: &SklmRestoreStatus, reason: &str) -> bool {
    ready(status).is_some_and(|(_, r)| r == reason)
}

/// The simulator binary, built into the same target folder as the operator.
pub fn sim_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("SKLM_SIM_BIN") {
        return PathBuf::from(path);
    }
    let operator = Path::new(env!("CARGO_BIN_EXE_sklm-restore-operator"));
    let sim = operator.with_file_name("sklm-sim");
    assert!(
        sim.exists(),
        "{} not found: run `cargo build -p sklm-sim` first (hack/test.sh does)",
        sim.display()
    );
    sim
}

/// The operator binary running as a child process, logging JSON to a file.
pub struct Operator {
    child: Child,
    log_path: PathBuf,
    pub metrics_addr: String,
}

impl Operator {
    /// Starts the operator watching `namespace`, and waits for its HTTP address.
    pub fn start(env: &TestEnv, extra_args: &[&str]) -> Self {
        let kubeconfig = std::env::var_os("KUBECONFIG").expect("KUBECONFIG");
        Self::start_with_kubeconfig(env, Path::new(&kubeconfig), extra_args)
    }

    /// Like [`Operator::start`], as the user of another kubeconfig.
    pub fn start_with_kubeconfig(env: &TestEnv, kubeconfig: &Path, extra_args: &[&str]) -> Self {
        Self::start_with_env(env, kubeconfig, extra_args, &[])
    }

    /// Like [`Operator::start_with_kubeconfig`], with extra environment variables, which
    /// override the defaults (such as `RUST_LOG`).
    pub fn start_with_env(
        env: &TestEnv,
        kubeconfig: &Path,
        extra_args: &[&str],
        extra_env: &[(&str, &str)],
    ) -> Self {
        let mut args = vec!["--namespace", env.namespace.as_str()];
        args.extend_from_slice(extra_args);
        Self::spawn(env, kubeconfig, &args, extra_env)
    }

    /// Starts the operator watching every namespace, as the user of `kubeconfig`. Only
    /// for a control plane of the test's own, where no other test's objects live.
    pub fn start_all_namespaces(env: &TestEnv, kubeconfig: &Path) -> Self {
        Self::spawn(env, kubeconfig, &[], &[])
    }

    fn spawn(
        env: &TestEnv,
        kubeconfig: &Path,
        extra_args: &[&str],
        extra_env: &[(&str, &str)],
    ) -> Self {
        let log_path = env
            .workdir
            .path()
            .join(format!("operator-{:08x}.log", rand::random::<u32>()));
        let log = std::fs::File::create(&log_path).expect("operator log file");
        let child = Command::new(env!("CARGO_BIN_EXE_sklm-restore-operator"))
            .args(["run", "--http-addr", "127.0.0.1:0", "--log-format", "json"])
            .args(extra_args)
            .env("RUST_LOG", "info,sklm_restore_operator=debug")
            .env("KUBECONFIG", kubeconfig)
            .envs(extra_env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start the operator binary");
        let mut operator = Operator {
            child,
            log_path,
            metrics_addr: String::new(),
        };
        operator.metrics_addr = operator.wait_for_addr();
        operator
    }

    fn wait_for_addr(&mut self) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            for line in self.log().lines() {
                let Ok(value) = serde_json::from_str::<serde_json::Value>(line) else {
                    continue;
                };
                if value["message"] == "starting" {
                    return value["addr"].as_str().expect("addr field").to_owned();
                }
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("operator exited with {status}; log:\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "operator did not start; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    pub async fn metrics(&self) -> String {
        reqwest_get(&format!("http://{}/metrics", self.metrics_addr)).await
    }

    /// Sends SIGTERM and waits up to 10 s for the process to exit; returns whether it did.
    pub fn terminate(&mut self) -> bool {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn reqwest_get(url: &str) -> String {
    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("HTTP client");
    client
        .get(url)
        .send()
        .await
        .expect("GET")
        .text()
        .await
        .expect("body")
}

/// Asserts that no secret appears in `text`, naming where it came from.
pub fn assert_no_secret(text: &str, what: &str) {
    assert!(!text.contains(PASSWORD), "the password appears in {what}");
}

impl Operator {
    /// Process id of the operator.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Reports whether the process is still running.
    pub fn is_alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends SIGKILL and waits for the process to exit.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// HTTP status of `GET /healthz`, or `None` when the request failed.
    pub async fn healthz(&self) -> Option<u16> {
        self.http_status("/healthz").await
    }

    /// HTTP status of `GET /readyz`, or `None` when the request failed.
    pub async fn readyz(&self) -> Option<u16> {
        self.http_status("/readyz").await
    }

    /// HTTP status of a GET on `path` of the operator's HTTP address, or `None` when the
    /// request failed.
    async fn http_status(&self, path: &str) -> Option<u16> {
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(5))
            .build()
            .expect("HTTP client");
        let url = format!("http://{}{path}", self.metrics_addr);
        client
            .get(url)
            .send()
            .await
            .ok()
            .map(|response| response.status().as_u16())
    }
}

impl TestEnv {
    /// Like [`TestEnv::new`], on the API server of another kubeconfig file.
    pub async fn new_with_kubeconfig(name: &str, kubeconfig: &Path) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let config = kube::config::Kubeconfig::read_from(kubeconfig).expect("read kubeconfig");
        let options = kube::config::KubeConfigOptions::default();
        let config = kube::Config::from_custom_kubeconfig(config, &options)
            .await
            .expect("client config from kubeconfig");
        let client = Client::try_from(config).expect("Kubernetes client");
        let namespace = format!("{name}-{:06x}", rand::random::<u32>() & 0xff_ffff);
        let ns = Namespace {
            metadata: ObjectMeta {
                name: Some(namespace.clone()),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .expect("create test namespace");
        TestEnv {
            client,
            namespace,
            workdir: tempfile::tempdir().expect("temp dir"),
        }
    }

    /// Creates or replaces a Secret of `type_` (such as `kubernetes.io/basic-auth`).
    pub async fn put_typed_secret(&self, name: &str, type_: &str, data: &[(&str, &[u8])]) {
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                ..ObjectMeta::default()
            },
            type_: Some(type_.to_owned()),
            data: Some(
                data.iter()
                    .map(|(k, v)| ((*k).to_owned(), ByteString(v.to_vec())))
                    .collect(),
            ),
            ..Secret::default()
        };
        self.secrets()
            .create(&PostParams::default(), &secret)
            .await
            .expect("create typed secret");
    }

    /// Returns the object's status as JSON, exactly as the API server stores it.
    pub async fn raw_status(&self, name: &str) -> serde_json::Value {
        let api: Api<kube::api::DynamicObject> = Api::namespaced_with(
            self.client.clone(),
            &self.namespace,
            &kube::api::ApiResource::erase::<SklmRestore>(&()),
        );
        let object = api.get(name).await.expect("get SklmRestore");
        object.data["status"].clone()
    }
}

/// Asserts the three kstatus conditions: Ready's status and reason, and the status of
/// Reconciling and Stalled.
pub fn assert_conditions(
    status: &SklmRestoreStatus,
    ready: (&str, &str),
    reconciling: &str,
    stalled: &str,
) {
    let json = serde_json::to_string_pretty(status).unwrap_or_default();
    assert_eq!(self::ready(status), Some(ready), "Ready; status: {json}");
    assert_eq!(
        condition(status, "Reconciling").map(|c| c.status.as_str()),
        Some(reconciling),
        "Reconciling; status: {json}"
    );
    assert_eq!(
        condition(status, "Stalled").map(|c| c.status.as_str()),
        Some(stalled),
        "Stalled; status: {json}"
    );
}

/// Message of the Ready condition, or an empty string.
pub fn ready_message(status: &SklmRestoreStatus) -> String {
    condition(status, "Ready")
        .map(|c| c.message.clone())
        .unwrap_or_default()
}

/// Arrival times (milliseconds since the simulator started) of the logged requests with
/// `method` whose path ends with `path_suffix`.
pub async fn request_times(
    control: &sklm_sim::ControlClient,
    method: &str,
    path_suffix: &str,
) -> Vec<u64> {
    control
        .requests()
        .await
        .expect("request log")
        .iter()
        .filter(|r| r.method.eq_ignore_ascii_case(method) && r.path.ends_with(path_suffix))
        .map(|r| r.elapsed_ms)
        .collect()
}

/// Returns a free TCP port on 127.0.0.1. The port is bound and closed again, so a
/// connection to it is refused until someone else binds it.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local address").port()
}

/// Runs kubectl with `args` as the user of KUBECONFIG and returns its output.
pub fn kubectl(args: &[&str]) -> std::process::Output {
    Command::new("kubectl")
        .args(args)
        .output()
        .expect("run kubectl")
}

/// Namespace of the operator's ServiceAccount, the identity that the test API server's
/// token file gives `operator.kubeconfig`.
pub const OPERATOR_NAMESPACE: &str = "sklm-system";

/// Returns the path of `operator.kubeconfig`, which `hack/control-plane.sh` writes next to
/// the admin's KUBECONFIG.
pub fn operator_kubeconfig() -> PathBuf {
    Path::new(&std::env::var("KUBECONFIG").expect("KUBECONFIG"))
        .with_file_name("operator.kubeconfig")
}

/// Creates [`OPERATOR_NAMESPACE`] if it is missing, renders the chart's `templates` (such
/// as `templates/rbac.yaml`) in `namespace` RBAC scope for the `watched` namespaces, and
/// applies them as the admin.
pub fn apply_namespaced_chart(env: &TestEnv, watched: &[&str], templates: &[&str]) {
    let _ = kubectl(&["create", "namespace", OPERATOR_NAMESPACE]);
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

    let watch = format!("watchNamespaces={{{}}}", watched.join(","));
    let mut command = Command::new(&helm);
    command
        .args([
            "template",
            "sklm-restore-operator",
            concat!(env!("CARGO_MANIFEST_DIR"), "/charts/sklm-restore-operator"),
        ])
        .args([
            "--namespace",
            OPERATOR_NAMESPACE,
            "--set",
            "rbac.scope=namespace",
            "--set",
            &watch,
        ]);
    for template in templates {
        command.args(["--show-only", template]);
    }
    let rendered = command.output().expect("helm template");
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
}

/// Starts a task that edits object `name` 80 times, 100 ms apart: the spec's
/// `pollIntervalSeconds` every fifth round, and the metadata that `metadata(round)` returns
/// in the other rounds. Edits of both kinds race the operator's status writes.
pub fn spawn_editor(
    api: Api<SklmRestore>,
    name: &str,
    metadata: impl Fn(u32) -> serde_json::Value + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    let name = name.to_owned();
    tokio::spawn(async move {
        for round in 0u32..80 {
            let patch = if round % 5 == 0 {
                json!({"spec": {"pollIntervalSeconds": 1 + round % 2}})
            } else {
                json!({"metadata": metadata(round)})
            };
            api.patch(
                &name,
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(&patch),
            )
            .await
            .expect("edit object");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}

/// A control plane of one test: `hack/control-plane.sh` on free ports and a temporary
/// folder, so that the test can stop and restart its API server. `down` runs on drop.
pub struct OwnControlPlane {
    dir: tempfile::TempDir,
    etcd_port: u16,
    api_port: u16,
}

impl OwnControlPlane {
    /// Starts the control plane and installs the CRDs on it.
    pub fn up() -> OwnControlPlane {
        let dir = tempfile::Builder::new()
            .prefix("sklm-cp-")
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

    /// Returns the path of the admin's kubeconfig.
    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("kubeconfig")
    }

    /// Returns the path of the kubeconfig of the operator's ServiceAccount.
    pub fn operator_kubeconfig(&self) -> PathBuf {
        self.dir.path().join("operator.kubeconfig")
    }

    /// Runs `hack/control-plane.sh action` for this plane and asserts that it succeeded.
    pub fn run(&self, action: &str) {
        let output = self
            .script_command(action)
            .output()
            .expect("run hack/control-plane.sh");
        assert!(
            output.status.success(),
            "control-plane.sh {action} failed: {}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    fn script_command(&self, action: &str) -> Command {
        let mut command = Command::new("bash");
        command
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/hack/control-plane.sh"
            ))
            .arg(action)
            .env("SKLM_CP_DIR", self.dir.path())
            .env("SKLM_ETCD_PORT", self.etcd_port.to_string())
            .env("SKLM_APISERVER_PORT", self.api_port.to_string());
        command
    }

    /// Runs kubectl as the admin, with `stdin` as its input when given, and asserts that
    /// it succeeded.
    pub fn kubectl(&self, args: &[&str], stdin: Option<&str>) {
        use std::io::Write;
        let mut child = Command::new("kubectl")
            .args(args)
            .env("KUBECONFIG", self.kubeconfig())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
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

    /// Stops only this plane's kube-apiserver, by the process id its start recorded, and
    /// removes its pid file so that `run("up")` starts it again. SIGTERM first; a server
    /// still draining after 20 s (seen on a loaded machine) gets SIGKILL.
    pub fn stop_apiserver(&self) {
        let pid_file = self.dir.path().join("kube-apiserver.pid");
        let pid = std::fs::read_to_string(&pid_file).expect("kube-apiserver.pid");
        let pid = pid.trim().to_owned();
        for (signal, wait) in [("-TERM", 20), ("-KILL", 20)] {
            let status = Command::new("kill")
                .args([signal, &pid])
                .status()
                .expect("kill");
            assert!(
                status.success() || process_stopped(&pid),
                "kill {signal} {pid}"
            );
            let deadline = Instant::now() + Duration::from_secs(wait);
            while !process_stopped(&pid) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
            if process_stopped(&pid) {
                std::fs::remove_file(&pid_file).expect("remove kube-apiserver.pid");
                return;
            }
        }
        panic!("kube-apiserver {pid} did not stop, even on SIGKILL");
    }

    /// Stops this plane's kube-apiserver and starts it again with `up`, which leaves the
    /// running etcd and its data as they are.
    pub fn restart_apiserver(&self) {
        self.stop_apiserver();
        self.run("up");
    }
}

impl Drop for OwnControlPlane {
    fn drop(&mut self) {
        let _ = self.script_command("down").output();
    }
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

/// Reports whether process `pid` has exited. The script's background processes belong to
/// init, which may leave them as zombies (state `Z`), and a zombie has stopped too.
fn process_stopped(pid: &str) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return true;
    };
    let state = stat.rsplit(')').next().unwrap_or_default().trim_start();
    state.starts_with('Z')
}

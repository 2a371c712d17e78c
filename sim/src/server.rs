//! Start-up of a whole simulator: TLS material, the HTTPS REST API listener, the control
//! endpoint, the optional automatic restore run, and the ready file that gives a test the
//! bound ports.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use crate::control_types::RunTrigger;
use crate::listener::{ApiListener, bind_reusable};
use crate::sim::Sim;
use crate::state::SimConfig;
use crate::tls::{self, LeafSpec, TlsError};
use crate::{api, control};

/// Source of the HTTPS certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TlsSource {
    /// Generate a CA and a leaf certificate at start.
    Generate(LeafSpec),
    /// Serve a certificate chain and key from PEM files.
    Files { cert: PathBuf, key: PathBuf },
}

/// Everything `start` needs.
#[derive(Clone, Debug)]
pub struct ServerOptions {
    /// HTTPS REST API address; port 0 picks a free port.
    pub listen: SocketAddr,
    /// Plain-HTTP control endpoint address; port 0 picks a free port.
    pub control: SocketAddr,
    pub ready_file: Option<PathBuf>,
    pub tls: TlsSource,
    /// File that receives the generated CA certificate (PEM).
    pub ca_out: Option<PathBuf>,
    /// Delay after which a restore run starts by itself.
    pub auto_restore_after: Option<Duration>,
    pub sim: SimConfig,
}

impl Default for ServerOptions {
    fn default() -> Self {
        let loopback_any_port = SocketAddr::from(([127, 0, 0, 1], 0));
        ServerOptions {
            listen: loopback_any_port,
            control: loopback_any_port,
            ready_file: None,
            tls: TlsSource::Generate(LeafSpec::default()),
            ca_out: None,
            auto_restore_after: None,
            sim: SimConfig::default(),
        }
    }
}

/// Content of the ready file, written once both listeners are bound.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadyInfo {
    pub api: SocketAddr,
    pub control: SocketAddr,
    /// The `--ca-out` file, or `None` when no CA file was written.
    pub ca_file: Option<PathBuf>,
}

/// Failure to start the simulator.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("failed to bind the {listener} address {addr}")]
    Bind {
        listener: &'static str,
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("failed to write {path}")]
    WriteFile {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// A started simulator. Dropping it stops every task it runs.
pub struct RunningServer {
    pub api_addr: SocketAddr,
    pub control_addr: SocketAddr,
    /// PEM of the generated CA, or `None` for certificates loaded from files.
    pub ca_pem: Option<String>,
    pub sim: Sim,
    tasks: JoinSet<()>,
}

impl RunningServer {
    /// Waits until a task ends, which happens only when it fails.
    pub async fn wait(&mut self) {
        self.tasks.join_next().await;
    }
}

/// Binds both listeners, writes the CA and ready files, and starts serving.
pub async fn start(options: ServerOptions) -> Result<RunningServer, StartError> {
    let identity = match &options.tls {
        TlsSource::Generate(spec) => tls::generate_identity(spec)?,
        TlsSource::Files { cert, key } => tls::load_identity(cert, key)?,
    };
    let ca_pem = identity.ca_pem.clone();
    let ca_file = match (&options.ca_out, &ca_pem) {
        (Some(path), Some(pem)) => {
            write_atomically(path, pem.as_bytes())?;
            Some(path.clone())
        }
        _ => None,
    };
    let acceptor = TlsAcceptor::from(tls::server_config(identity)?);

    let bind_error = |listener, addr| {
        move |source| StartError::Bind {
            listener,
            addr,
            source,
        }
    };
    let api_listener = bind_reusable(options.listen).map_err(bind_error("API", options.listen))?;
    let control_listener = TcpListener::bind(options.control)
        .await
        .map_err(bind_error("control", options.control))?;
    let api_addr = api_listener
        .local_addr()
        .map_err(bind_error("API", options.listen))?;
    let control_addr = control_listener
        .local_addr()
        .map_err(bind_error("control", options.control))?;

    let (sim, restart_requests) = Sim::new(&options.sim);
    sim.report_listener(|status| status.listening = true);
    let mut tasks = JoinSet::new();
    let api = ApiListener {
        listener: api_listener,
        acceptor,
        router: api::router(&sim),
        sim: sim.clone(),
        restart_requests,
    };
    tasks.spawn(api.serve());
    tasks.spawn(serve_control(control_listener, control::router(&sim)));
    if let Some(delay) = options.auto_restore_after {
        tasks.spawn(auto_restore(sim.clone(), delay));
    }
    tracing::info!(%api_addr, %control_addr, ca_file = ?ca_file, "simulator started");

    if let Some(path) = &options.ready_file {
        let ready = ReadyInfo {
            api: api_addr,
            control: control_addr,
            ca_file,
        };
        let json = serde_json::to_vec_pretty(&ready).map_err(|error| StartError::WriteFile {
            path: path.clone(),
            source: io::Error::other(error),
        })?;
        write_atomically(path, &json)?;
    }
    Ok(RunningServer {
        api_addr,
        control_addr,
        ca_pem,
        sim,
        tasks,
    })
}

async fn serve_control(listener: TcpListener, router: axum::Router) {
    if let Err(error) = axum::serve(listener, router).await {
        tracing::error!(%error, "control endpoint stopped");
    }
}

/// Waits `delay`, then starts a restore run with the run defaults (the
/// `--auto-restore-after` option).
async fn auto_restore(sim: Sim, delay: Duration) {
    tokio::time::sleep(delay).await;
    // A finished task is not an error: `RunningServer::wait` must not return because of it.
    let settings = sim.lock().run_defaults;
    if let Err(rejection) = sim.start_run(RunTrigger::Auto, settings, None) {
        tracing::warn!(?rejection, "automatic restore run not started");
    }
    std::future::pending::<()>().await;
}

/// Writes `contents` to a temporary file beside `path` and renames it into place, so a
/// reader never sees a partial file.
fn write_atomically(path: &Path, contents: &[u8]) -> Result<(), StartError> {
    let mut temp_name = path.as_os_str().to_owned();
    temp_name.push(format!(".tmp-{}", std::process::id()));
    let temp_path = PathBuf::from(temp_name);
    let write_error = |source| StartError::WriteFile {
        path: path.to_path_buf(),
        source,
    };
    std::fs::write(&temp_path, contents).map_err(write_error)?;
    std::fs::rename(&temp_path, path).map_err(write_error)
}

//! `SimProcess`: runs the `sklm-sim` binary as a child process for integration tests,
//! waits for its ready file, and kills it when dropped.

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::client::{ControlClient, ControlClientError};
use crate::server::ReadyInfo;

/// How long `spawn` waits for the ready file by default.
pub const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(15);
/// Environment variable that overrides where `locate_binary` looks.
pub const BINARY_ENV: &str = "SKLM_SIM_BIN";
/// Pause between checks for the ready file.
const READY_POLL_INTERVAL: Duration = Duration::from_millis(20);
/// Bytes of the simulator's log quoted in a start-up error.
const LOG_TAIL_BYTES: usize = 4000;

/// Failure to start the simulator process.
#[derive(Debug, thiserror::Error)]
pub enum SimProcessError {
    #[error("failed to create a temporary directory for the simulator")]
    TempDir(#[source] io::Error),
    #[error("failed to start {binary}")]
    Spawn {
        binary: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("simulator exited with {status} before it was ready; log tail:\n{log}")]
    Exited {
        status: std::process::ExitStatus,
        log: String,
    },
    #[error("simulator wrote no ready file within {timeout:?}; log tail:\n{log}")]
    NotReady { timeout: Duration, log: String },
    #[error("failed to read the simulator's ready file {path}")]
    ReadyFile {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("failed to read the simulator's CA file {path}")]
    CaFile {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "sklm-sim binary not found at {0}; build it with `cargo build -p sklm-sim` or set \
         SKLM_SIM_BIN"
    )]
    BinaryNotFound(PathBuf),
}

/// A running `sklm-sim` child process with its own temporary directory.
pub struct SimProcess {
    child: Child,
    dir: TempDir,
    ready: ReadyInfo,
    ca_pem: Option<String>,
}

impl SimProcess {
    /// Starts `binary` with `args` and waits up to 15 s for it to be ready.
    ///
    /// Unless `args` contains `--tls-cert` or `--ca-out`, the generated CA is written to
    /// `ca.pem` in the temporary directory, so `ca_pem` returns it. Blocks the calling
    /// thread while waiting.
    pub fn spawn<I, S>(binary: impl AsRef<Path>, args: I) -> Result<SimProcess, SimProcessError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        SimProcess::spawn_with_timeout(binary, args, DEFAULT_READY_TIMEOUT)
    }

    /// Like `spawn`, with a custom wait for the ready file.
    pub fn spawn_with_timeout<I, S>(
        binary: impl AsRef<Path>,
        args: I,
        ready_timeout: Duration,
    ) -> Result<SimProcess, SimProcessError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let binary = binary.as_ref();
        let args: Vec<_> = args
            .into_iter()
            .map(|arg| arg.as_ref().to_owned())
            .collect();
        let dir = tempfile::Builder::new()
            .prefix("sklm-sim-")
            .tempdir()
            .map_err(SimProcessError::TempDir)?;
        let ready_path = dir.path().join("ready.json");
        let log_path = dir.path().join("sim.log");

        let mut command = Command::new(binary);
        command
            .args(&args)
            .arg("--ready-file")
            .arg(&ready_path)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        let has_arg = |name: &str| args.iter().any(|arg| arg == name);
        if !has_arg("--tls-cert") && !has_arg("--ca-out") {
            command.arg("--ca-out").arg(dir.path().join("ca.pem"));
        }
        let log = File::create(&log_path).map_err(SimProcessError::TempDir)?;
        command.stderr(log);

        let spawn_error = |source| SimProcessError::Spawn {
            binary: binary.to_path_buf(),
            source,
        };
        let child = command.spawn().map_err(spawn_error)?;
        // From here on, `Drop` kills the child if waiting fails.
        let mut process = SimProcess {
            child,
            dir,
            ready: ReadyInfo {
                api: SocketAddr::from(([127, 0, 0, 1], 0)),
                control: SocketAddr::from(([127, 0, 0, 1], 0)),
                ca_file: None,
            },
            ca_pem: None,
        };
        process.ready = process.wait_for_ready(&ready_path, ready_timeout)?;
        if let Some(ca_file) = &process.ready.ca_file {
            let pem =
                std::fs::read_to_string(ca_file).map_err(|source| SimProcessError::CaFile {
                    path: ca_file.clone(),
                    source,
                })?;
            process.ca_pem = Some(pem);
        }
        Ok(process)
    }

    fn wait_for_ready(
        &mut self,
        ready_path: &Path,
        timeout: Duration,
    ) -> Result<ReadyInfo, SimProcessError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().ok().flatten() {
                return Err(SimProcessError::Exited {
                    status,
                    log: self.log_tail(),
                });
            }
            match std::fs::read(ready_path) {
                Ok(bytes) => {
                    return serde_json::from_slice(&bytes).map_err(|error| {
                        SimProcessError::ReadyFile {
                            path: ready_path.to_path_buf(),
                            source: io::Error::new(io::ErrorKind::InvalidData, error),
                        }
                    });
                }
                Err(error) if error.kind() == io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(SimProcessError::ReadyFile {
                        path: ready_path.to_path_buf(),
                        source,
                    });
                }
            }
            if Instant::now() >= deadline {
                return Err(SimProcessError::NotReady {
                    timeout,
                    log: self.log_tail(),
                });
            }
            std::thread::sleep(READY_POLL_INTERVAL);
        }
    }

    /// Finds the `sklm-sim` binary: `$SKLM_SIM_BIN` when set, otherwise `sklm-sim` in the
    /// Cargo target directory of the running test executable (`target/<profile>/`), which
    /// `cargo build -p sklm-sim` fills.
    pub fn locate_binary() -> Result<PathBuf, SimProcessError> {
        if let Some(path) = std::env::var_os(BINARY_ENV) {
            return Ok(PathBuf::from(path));
        }
        let executable = std::env::current_exe().unwrap_or_default();
        // Test executables live in target/<profile>/deps/.
        let profile_dir = executable
            .parent()
            .filter(|dir| dir.ends_with("deps"))
            .and_then(Path::parent)
            .or_else(|| executable.parent())
            .unwrap_or_else(|| Path::new("."));
        let candidate = profile_dir.join(format!("sklm-sim{}", std::env::consts::EXE_SUFFIX));
        if candidate.is_file() {
            Ok(candidate)
        } else {
            Err(SimProcessError::BinaryNotFound(candidate))
        }
    }

    /// Base URL of the REST API, such as `https://127.0.0.1:40123` (without a prefix).
    #[must_use]
    pub fn api_url(&self) -> String {
        format!("https://{}", self.ready.api)
    }

    #[must_use]
    pub fn api_addr(&self) -> SocketAddr {
        self.ready.api
    }

    /// Base URL of the control endpoint, such as `http://127.0.0.1:40124`.
    #[must_use]
    pub fn control_url(&self) -> String {
        format!("http://{}", self.ready.control)
    }

    #[must_use]
    pub fn control_addr(&self) -> SocketAddr {
        self.ready.control
    }

    /// PEM of the generated CA that signs the API certificate; `None` when the simulator
    /// serves a certificate from `--tls-cert`.
    #[must_use]
    pub fn ca_pem(&self) -> Option<&str> {
        self.ca_pem.as_deref()
    }

    /// Creates a control client for this simulator.
    pub fn control(&self) -> Result<ControlClient, ControlClientError> {
        ControlClient::new(&self.control_url())
    }

    /// Temporary directory of this simulator (removed on drop).
    #[must_use]
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// File that receives the simulator's log (its stderr).
    #[must_use]
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("sim.log")
    }

    #[must_use]
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read(self.log_path()).unwrap_or_default();
        let start = log.len().saturating_sub(LOG_TAIL_BYTES);
        String::from_utf8_lossy(&log[start..]).into_owned()
    }
}

impl Drop for SimProcess {
    fn drop(&mut self) {
        // A destructor cannot report errors. Waiting reaps the child, so no zombie remains.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

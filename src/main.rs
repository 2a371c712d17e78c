//! Command line: `run` starts the controller, `crd` prints the CustomResourceDefinition.

use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use kube::CustomResourceExt;
use sklm_restore_operator::{crd, probe, runner, telemetry};

/// Kubernetes operator that reports the restore state of IBM SKLM / GKLM key servers on
/// `SklmRestore` objects.
#[derive(Parser, Debug)]
#[command(version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the controller. Uses the in-cluster config, or KUBECONFIG outside a cluster.
    Run(RunArgs),
    /// Print the SklmRestore CustomResourceDefinition as YAML.
    Crd,
    /// Poll a key server once and print the status the operator would write.
    Probe(probe::ProbeArgs),
}

#[derive(clap::Args, Debug)]
struct RunArgs {
    /// Watch only these namespaces (default: all namespaces). Repeat the option or give a
    /// comma-separated list; each namespace gets its own watches, so Roles in those
    /// namespaces are enough.
    #[arg(
        long = "namespace",
        env = "SKLM_WATCH_NAMESPACE",
        value_name = "NAMESPACE",
        value_delimiter = ',',
        value_parser = runner::parse_namespace
    )]
    namespaces: Vec<String>,

    /// Address of the /metrics, /healthz and /readyz endpoints.
    #[arg(long, env = "SKLM_HTTP_ADDR", default_value = "0.0.0.0:8080")]
    http_addr: SocketAddr,

    /// Log format; the level comes from RUST_LOG (default: info).
    #[arg(long, env = "SKLM_LOG_FORMAT", value_enum, default_value = "text")]
    log_format: telemetry::LogFormat,

    /// Elect a leader on a coordination.k8s.io Lease; only the leader polls and writes.
    /// Needed whenever more than one replica runs.
    #[arg(long, env = "SKLM_LEADER_ELECTION")]
    leader_election: bool,

    /// Name of the Lease used for leader election.
    #[arg(long, env = "SKLM_LEASE_NAME", default_value = "sklm-restore-operator")]
    lease_name: String,

    /// Namespace of the Lease; in a pod, its own namespace.
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    lease_namespace: String,

    /// This replica's identity in the Lease (default: host name and process id).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
}

fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    match cli.command {
        Command::Crd => {
            print!("{}", crd_yaml()?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Run(args) => {
            telemetry::init(args.log_format);
            let runtime = start_runtime()?;
            runtime.block_on(runner::run(run_config(args)))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Probe(args) => Ok(start_runtime()?.block_on(probe::run(args))),
    }
}

fn start_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    rustls::crypto::ring::default_provider()
        .install_default()
        .map_err(|_| anyhow::anyhow!("a TLS crypto provider was already installed"))?;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("failed to start the async runtime")
}

fn crd_yaml() -> anyhow::Result<String> {
    serde_yaml::to_string(&crd::SklmRestore::crd()).context("failed to render the CRD as YAML")
}

fn run_config(args: RunArgs) -> runner::RunConfig {
    let leader_election = args.leader_election.then(|| runner::LeaderElection {
        lease_name: args.lease_name,
        lease_namespace: args.lease_namespace,
        identity: args.identity.unwrap_or_else(default_identity),
    });
    runner::RunConfig {
        namespaces: args.namespaces,
        http_addr: args.http_addr,
        leader_election,
    }
}

/// Host name and process id: unique enough outside a pod, where POD_NAME is unset.
fn default_identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    format!("{}-{}", host.trim(), std::process::id())
}

//! Command line: `run` starts the controller, `crd` prints the CustomResourceDefinition.

mod controller;
mod crd;
mod http;
mod metrics;
mod names;
mod sklm;
mod telemetry;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use kube::CustomResourceExt;

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
}

#[derive(clap::Args, Debug)]
struct RunArgs {
    /// Watch only this namespace (default: all namespaces).
    #[arg(long, env = "SKLM_WATCH_NAMESPACE")]
    namespace: Option<String>,

    /// Address of the /metrics, /healthz and /readyz endpoints.
    #[arg(long, env = "SKLM_HTTP_ADDR", default_value = "0.0.0.0:8080")]
    http_addr: SocketAddr,

    /// Log format; the level comes from RUST_LOG (default: info).
    #[arg(long, env = "SKLM_LOG_FORMAT", value_enum, default_value = "text")]
    log_format: telemetry::LogFormat,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Crd => {
            print!("{}", crd_yaml()?);
            Ok(())
        }
        Command::Run(args) => {
            telemetry::init(args.log_format);
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("failed to start the async runtime")?;
            runtime.block_on(run(args))
        }
    }
}

fn crd_yaml() -> anyhow::Result<String> {
    serde_yaml::to_string(&crd::SklmRestore::crd()).context("failed to render the CRD as YAML")
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    rustls::crypto::ring::default_provider()
        .install_default()
        .map_err(|_| anyhow::anyhow!("a TLS crypto provider was already installed"))?;
    let client = kube::Client::try_default()
        .await
        .context("failed to configure the Kubernetes client (in-cluster config or KUBECONFIG)")?;
    let metrics = Arc::new(metrics::Metrics::default());
    let listener = http::bind(args.http_addr)
        .await
        .with_context(|| format!("failed to listen on {}", args.http_addr))?;
    tracing::info!(addr = %listener.local_addr()?, namespace = args.namespace.as_deref().unwrap_or("*"), "starting");

    let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
    let (store_tx, store_rx) = tokio::sync::watch::channel(None);
    let wait_shutdown = move |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let scope = match args.namespace {
        Some(ns) => controller::Scope::Namespace(ns),
        None => controller::Scope::Cluster,
    };
    let http_task = tokio::spawn(http::serve(listener, Arc::clone(&metrics), store_rx, wait_shutdown(shutdown_rx.clone())));
    let controller_task = tokio::spawn(controller::run(client, scope, metrics, store_tx, wait_shutdown(shutdown_rx)));

    shutdown_signal().await;
    tracing::info!("shutting down");
    let _ = shutdown_tx.send(true);
    controller_task.await.context("controller task failed")?;
    http_task.await.context("HTTP task failed")?.context("HTTP server failed")?;
    tracing::info!("stopped");
    Ok(())
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing a SIGTERM handler cannot fail on Unix");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

//! `sklm-sim` binary: parses the command line, sets up logging, starts the simulator and
//! runs it until SIGINT or SIGTERM.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use sklm_sim::cli::Cli;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    // Every rustls configuration in the crate names the ring provider. Installing it as the
    // process default as well keeps library code that uses the default on ring too. An
    // error only means that a default was already installed.
    let _ = rustls::crypto::ring::default_provider().install_default();

    let options = Cli::parse().into_options();
    let mut server = match sklm_sim::server::start(options).await {
        Ok(server) => server,
        Err(error) => {
            tracing::error!(error = %error_chain(&error), "simulator failed to start");
            return ExitCode::FAILURE;
        }
    };

    tokio::select! {
        () = shutdown_signal() => {
            tracing::info!("shutdown signal received; stopping");
            ExitCode::SUCCESS
        }
        () = server.wait() => {
            tracing::error!("a simulator task stopped unexpectedly");
            ExitCode::FAILURE
        }
    }
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let mut terminate = match tokio::signal::unix::signal(
        tokio::signal::unix::SignalKind::terminate(),
    ) {
        Ok(signal) => signal,
        Err(error) => {
            tracing::warn!(%error, "cannot listen for SIGTERM; only SIGINT stops the simulator");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

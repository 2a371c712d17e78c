//! The `probe` subcommand: one poll of a key server, printed as the status the operator
//! would write for a new object, with an exit code per outcome. For debugging
//! connectivity, TLS and credentials from a shell, outside the cluster.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use k8s_openapi::jiff::Timestamp;

use crate::controller::decide::{self, Input, Settings};
use crate::crd::{RestorePhase, SklmRestoreStatus};
use crate::sklm::hub::Snapshot;
use crate::sklm::tls::TlsSettings;
use crate::sklm::{
    ClientSettings, Credentials, Endpoint, RestoreResult, Session, SklmClient, SklmError,
};

/// Options of `probe`.
#[derive(clap::Args, Debug)]
#[command(after_help = EXIT_CODES)]
pub struct ProbeArgs {
    /// Server URL: https://host:port.
    #[arg(long)]
    url: String,

    /// REST API path prefix.
    #[arg(long, default_value = crate::crd::DEFAULT_API_PREFIX)]
    api_prefix: String,

    /// PEM file with a CA certificate to trust in addition to the system roots.
    #[arg(long)]
    ca_file: Option<PathBuf>,

    /// Skip verification of the server certificate.
    #[arg(long)]
    insecure_skip_tls_verify: bool,

    /// Seconds one request may take, connecting included.
    #[arg(long, default_value_t = 10)]
    timeout_seconds: u32,

    /// Locale sent as Accept-Language.
    #[arg(long, default_value = "en")]
    accept_language: String,

    /// REST user name.
    #[arg(long, env = "SKLM_USER")]
    user: String,

    /// File holding the password (one trailing line break is removed). Without it, the
    /// password is read from the SKLM_PASSWORD environment variable.
    #[arg(long)]
    password_file: Option<PathBuf>,
}

const EXIT_CODES: &str = "Exit codes:
  0   the server reports a finished restore (COMPLETED, or result 0)
  1   no restore is running
  2   a restore is running
  3   the last restore failed (result 1)
  4   the answer names no known restore step
  10  server unreachable      11  TLS error        12  timeout
  13  authentication failed   14  redirect         15  invalid response
  16  HTTP error from server  17  invalid options or CA file";

/// Exit code for invalid options, a missing password or an unreadable CA file.
const INVALID_INPUT: u8 = 17;

/// Runs one probe and prints the status as YAML on stdout.
pub async fn run(args: ProbeArgs) -> ExitCode {
    let password = match read_password(&args) {
        Ok(password) => password,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::from(INVALID_INPUT);
        }
    };
    match probe(&args, password).await {
        Ok((status, code)) => {
            match serde_yaml::to_string(&status) {
                Ok(yaml) => print!("{yaml}"),
                Err(error) => eprintln!("error: failed to print the status: {error}"),
            }
            ExitCode::from(code)
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::from(exit_code_for(&error))
        }
    }
}

async fn probe(args: &ProbeArgs, password: String) -> Result<(SklmRestoreStatus, u8), SklmError> {
    let settings = client_settings(args)?;
    let credentials = Credentials {
        user: args.user.clone(),
        password,
    };
    let session = Session::new(SklmClient::new(settings)?, credentials);
    let outcome = session.is_running().await;
    let result = match &outcome {
        Ok(observation) if !observation.step.is_running_step() => {
            Some(session.restore_result().await.map_err(Arc::new))
        }
        _ => None,
    };
    session.logout().await;
    let code = match &outcome {
        Ok(observation) => answer_code(observation.step, result.as_ref()),
        Err(error) => exit_code_for(error),
    };
    let now = Timestamp::now();
    let snapshot = Snapshot {
        sequence: 1,
        polled_at: now,
        failing_since: outcome.is_err().then_some(now),
        outcome: outcome.map_err(Arc::new),
        result,
    };
    let decide_settings = Settings {
        restart_timeout: std::time::Duration::from_secs(600),
        insecure_skip_tls_verify: args.insecure_skip_tls_verify,
    };
    let decision = decide::decide(
        &SklmRestoreStatus::default(),
        &Input::Poll(&snapshot),
        decide_settings,
        None,
        now,
    );
    Ok((decision.status, code))
}

fn client_settings(args: &ProbeArgs) -> Result<ClientSettings, SklmError> {
    let extra_ca_pem = match &args.ca_file {
        Some(path) => Some(
            std::fs::read_to_string(path).map_err(|e| SklmError::InvalidCa {
                detail: format!("failed to read {}: {e}", path.display()),
            })?,
        ),
        None => None,
    };
    Ok(ClientSettings {
        endpoint: Endpoint::parse(&args.url, &args.api_prefix)?,
        tls: TlsSettings {
            extra_ca_pem,
            insecure_skip_verify: args.insecure_skip_tls_verify,
        },
        timeout_seconds: args.timeout_seconds,
        accept_language: args.accept_language.clone(),
    })
}

fn read_password(args: &ProbeArgs) -> Result<String, String> {
    let raw = match &args.password_file {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| format!("failed to read the password file {}: {e}", path.display()))?,
        None => std::env::var("SKLM_PASSWORD")
            .map_err(|_| "no password: set --password-file or SKLM_PASSWORD".to_owned())?,
    };
    Ok(crate::controller::secrets::strip_line_ending(&raw).to_owned())
}

/// The exit code of a successful answer.
fn answer_code(step: RestorePhase, result: Option<&Result<RestoreResult, Arc<SklmError>>>) -> u8 {
    match (step, result) {
        (RestorePhase::Unknown, _) => 4,
        (step, _) if step.is_running_step() => 2,
        (_, Some(Ok(RestoreResult::Failed))) => 3,
        (RestorePhase::Completed, _) | (_, Some(Ok(RestoreResult::Succeeded))) => 0,
        _ => 1,
    }
}

fn exit_code_for(error: &SklmError) -> u8 {
    match error {
        SklmError::Unreachable { .. }
        | SklmError::ConnectionLost { .. }
        | SklmError::ClientSetup(_) => 10,
        SklmError::Tls { .. } => 11,
        SklmError::Timeout { .. } => 12,
        SklmError::LoginRejected { .. } | SklmError::SessionRejected { .. } => 13,
        SklmError::Redirect { .. } => 14,
        SklmError::BodyTooLarge { .. } | SklmError::InvalidResponse { .. } => 15,
        SklmError::Http { .. } => 16,
        SklmError::InvalidUrl { .. } | SklmError::InvalidCa { .. } => INVALID_INPUT,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answer_codes() {
        assert_eq!(answer_code(RestorePhase::Idle, None), 1);
        assert_eq!(
            answer_code(RestorePhase::Idle, Some(&Ok(RestoreResult::Unknown))),
            1
        );
        assert_eq!(
            answer_code(RestorePhase::Idle, Some(&Ok(RestoreResult::Succeeded))),
            0
        );
        assert_eq!(
            answer_code(RestorePhase::Idle, Some(&Ok(RestoreResult::Failed))),
            3
        );
        assert_eq!(answer_code(RestorePhase::Completed, None), 0);
        assert_eq!(answer_code(RestorePhase::RestoreKeystores, None), 2);
        assert_eq!(answer_code(RestorePhase::Unknown, None), 4);
    }
}

//! Command line of the `sklm-sim` binary and its translation into `ServerOptions`.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::control_types::{Backup, RunSettings};
use crate::model::Outcome;
use crate::server::{ServerOptions, TlsSource};
use crate::state::SimConfig;
use crate::tls::{DEFAULT_SANS, LeafSpec};

/// Simulator of the IBM SKLM/GKLM REST API for backup restores, for tests and demos.
///
/// Serves the REST API over HTTPS and a plain-HTTP JSON control endpoint that changes the
/// simulated state and injects faults. Logs go to stderr; set RUST_LOG (default: info)
/// to change the level.
// Doc comments here are the --help text, where Markdown backticks would show literally.
#[allow(clippy::doc_markdown)]
#[derive(Debug, Parser)]
#[command(name = "sklm-sim", version)]
pub struct Cli {
    /// Address of the HTTPS REST API, as IP:PORT. Port 0 picks a free port.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,

    /// Address of the plain-HTTP control endpoint, as IP:PORT. Port 0 picks a free port.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
    pub control: SocketAddr,

    /// File that receives {"api", "control", "ca_file"} as JSON once both listeners
    /// are bound. Written to a temporary file first and then renamed. Default: none.
    #[arg(long, value_name = "PATH")]
    pub ready_file: Option<PathBuf>,

    /// PEM certificate chain to serve instead of generating one. Requires --tls-key.
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key of --tls-cert.
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Subject alternative name (IP address or DNS name) of the generated leaf
    /// certificate. Repeatable. Default: 127.0.0.1, localhost and ::1.
    #[arg(long = "san", value_name = "NAME", conflicts_with_all = ["tls_cert", "no_san"])]
    pub sans: Vec<String>,

    /// Common name of the generated leaf certificate. Default: the first SAN, or
    /// localhost with --no-san.
    #[arg(long, value_name = "NAME", conflicts_with = "tls_cert")]
    pub cn: Option<String>,

    /// Issue the generated leaf without any subjectAltName extension (common name only).
    #[arg(long, conflicts_with = "tls_cert")]
    pub no_san: bool,

    /// File that receives the generated CA certificate (PEM), the one clients must trust.
    /// Default: not written.
    #[arg(long, value_name = "PATH", conflicts_with = "tls_cert")]
    pub ca_out: Option<PathBuf>,

    /// User and password accepted at login, as NAME:PASSWORD. Repeatable.
    /// Default: admin:passw0rd.
    #[arg(long = "user", value_name = "NAME:PASSWORD", value_parser = parse_user)]
    pub users: Vec<UserArg>,

    /// Product prefix the REST API serves under. Repeatable.
    /// Default: /SKLM/rest/v1 and /GKLM/rest/v1.
    #[arg(long = "prefix", value_name = "PATH", value_parser = parse_prefix)]
    pub prefixes: Vec<String>,

    /// Seconds a user authentication id may stay unused before it is rejected with
    /// CTGKM6004E.
    #[arg(long, value_name = "SECONDS", default_value_t = 900)]
    pub session_idle_seconds: u64,

    /// Text put before the random part of every issued user authentication id, so tests
    /// can search logs for leaked ids. Letters, digits, '-' and '_' only. Default: none.
    #[arg(long, value_name = "TEXT", default_value = "", value_parser = parse_auth_id_prefix)]
    pub auth_id_prefix: String,

    /// Backup file that POST /ckms/restore accepts, as PATH or PATH:PASSWORD (without a
    /// password, any or none is accepted). Repeatable.
    /// Default: /opt/backups/sklm_backup.jar:backup-passw0rd.
    #[arg(long = "backup", value_name = "PATH[:PASSWORD]", value_parser = parse_backup)]
    pub backups: Vec<BackupArg>,

    /// Start a restore run by itself this many seconds after start. Default: never.
    #[arg(long, value_name = "SECONDS")]
    pub auto_restore_after: Option<u64>,

    /// Milliseconds each restore phase lasts in runs started by POST /ckms/restore or
    /// --auto-restore-after.
    #[arg(long, value_name = "MS", default_value_t = 2000)]
    pub step_ms: u64,

    /// Seconds the HTTPS port stays closed in the restart that follows a restore run;
    /// 0 skips the restart.
    #[arg(long, value_name = "SECONDS", default_value_t = 5)]
    pub restart_seconds: u64,

    /// Outcome (success or failure) of restore runs started by POST /ckms/restore or
    /// --auto-restore-after; a backup set through the control endpoint may override it.
    #[arg(long, value_name = "OUTCOME", default_value = "success", value_parser = parse_outcome)]
    pub outcome: Outcome,

    /// Keep the restore result after the post-restore restart instead of reporting -1.
    #[arg(long)]
    pub keep_result_after_restart: bool,
}

/// `--user NAME:PASSWORD`; its `Debug` output hides the password.
#[derive(Clone)]
pub struct UserArg {
    pub name: String,
    pub password: String,
}

impl fmt::Debug for UserArg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "UserArg {{ name: {:?}, password: <redacted> }}",
            self.name
        )
    }
}

/// `--backup PATH[:PASSWORD]`; its `Debug` output hides the password.
#[derive(Clone)]
pub struct BackupArg(pub Backup);

impl fmt::Debug for BackupArg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

fn parse_user(value: &str) -> Result<UserArg, String> {
    match value.split_once(':') {
        Some((name, password)) if !name.is_empty() => Ok(UserArg {
            name: name.to_owned(),
            password: password.to_owned(),
        }),
        _ => Err("expected NAME:PASSWORD with a non-empty NAME".to_owned()),
    }
}

fn parse_prefix(value: &str) -> Result<String, String> {
    let trimmed = value.trim_end_matches('/');
    if !trimmed.starts_with('/') || trimmed.len() < 2 {
        return Err(format!(
            "invalid prefix {value:?}: expected a path such as /SKLM/rest/v1"
        ));
    }
    Ok(trimmed.to_owned())
}

fn parse_auth_id_prefix(value: &str) -> Result<String, String> {
    if value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        Ok(value.to_owned())
    } else {
        Err(format!(
            "invalid auth id prefix {value:?}: expected letters, digits, '-' or '_'"
        ))
    }
}

fn parse_backup(value: &str) -> Result<BackupArg, String> {
    let (path, password) = match value.split_once(':') {
        Some((path, password)) => (path, Some(password.to_owned())),
        None => (value, None),
    };
    if path.is_empty() {
        return Err("expected PATH or PATH:PASSWORD with a non-empty PATH".to_owned());
    }
    Ok(BackupArg(Backup {
        path: path.to_owned(),
        password,
        outcome: None,
    }))
}

fn parse_outcome(value: &str) -> Result<Outcome, String> {
    match value {
        "success" => Ok(Outcome::Success),
        "failure" => Ok(Outcome::Failure),
        other => Err(format!(
            "invalid outcome {other:?}: expected success or failure"
        )),
    }
}

impl Cli {
    /// Builds the server options, filling the documented defaults of repeatable options.
    #[must_use]
    pub fn into_options(self) -> ServerOptions {
        let defaults = SimConfig::default();
        let tls = if let (Some(cert), Some(key)) = (self.tls_cert, self.tls_key) {
            TlsSource::Files { cert, key }
        } else {
            let sans = if self.no_san {
                Vec::new()
            } else if self.sans.is_empty() {
                DEFAULT_SANS.iter().map(|name| (*name).to_owned()).collect()
            } else {
                self.sans
            };
            TlsSource::Generate(LeafSpec {
                sans,
                common_name: self.cn,
            })
        };
        let users = if self.users.is_empty() {
            defaults.users
        } else {
            self.users
                .into_iter()
                .map(|user| (user.name, user.password))
                .collect()
        };
        let prefixes = if self.prefixes.is_empty() {
            defaults.prefixes
        } else {
            self.prefixes
        };
        let backups = if self.backups.is_empty() {
            defaults.backups
        } else {
            self.backups.into_iter().map(|backup| backup.0).collect()
        };
        let sim = SimConfig {
            prefixes,
            users,
            session_idle: Duration::from_secs(self.session_idle_seconds),
            auth_id_prefix: self.auth_id_prefix,
            run_defaults: RunSettings {
                step_ms: self.step_ms,
                outcome: self.outcome,
                restart_seconds: self.restart_seconds,
                keep_result_after_restart: self.keep_result_after_restart,
            },
            backups,
        };
        ServerOptions {
            listen: self.listen,
            control: self.control,
            ready_file: self.ready_file,
            tls,
            ca_out: self.ca_out,
            auto_restore_after: self.auto_restore_after.map(Duration::from_secs),
            sim,
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("sklm-sim").chain(args.iter().copied()))
    }

    #[test]
    fn cli_definition_is_valid() {
        Cli::command().debug_assert();
    }

    #[test]
    fn defaults_use_loopback_and_docs_values() {
        let options = parse(&[]).expect("no arguments").into_options();
        assert_eq!(options.listen, SocketAddr::from(([127, 0, 0, 1], 0)));
        assert_eq!(options.control, SocketAddr::from(([127, 0, 0, 1], 0)));
        assert_eq!(options.sim.prefixes, vec!["/SKLM/rest/v1", "/GKLM/rest/v1"]);
        assert_eq!(
            options.sim.users,
            vec![("admin".to_owned(), "passw0rd".to_owned())]
        );
        assert_eq!(options.sim.session_idle, Duration::from_secs(900));
        assert_eq!(options.sim.run_defaults.step_ms, 2000);
        let TlsSource::Generate(spec) = options.tls else {
            panic!("default TLS must be generated");
        };
        assert_eq!(spec.sans, vec!["127.0.0.1", "localhost", "::1"]);
    }

    #[test]
    fn no_san_gives_empty_sans() {
        let options = parse(&["--no-san", "--cn", "127.0.0.2"])
            .expect("valid arguments")
            .into_options();
        let TlsSource::Generate(spec) = options.tls else {
            panic!("TLS must be generated");
        };
        assert!(spec.sans.is_empty());
        assert_eq!(spec.common_name.as_deref(), Some("127.0.0.2"));
    }

    #[test]
    fn conflicting_tls_options_rejected() {
        assert!(parse(&["--no-san", "--san", "localhost"]).is_err());
        assert!(parse(&["--tls-cert", "a.pem"]).is_err());
        assert!(parse(&["--tls-cert", "a.pem", "--tls-key", "k.pem", "--no-san"]).is_err());
    }

    #[test]
    fn repeatable_values_parse() {
        let options = parse(&[
            "--user",
            "ops:pa:ss",
            "--prefix",
            "/GKLM/rest/v1/",
            "--backup",
            "/b/hsm.jar",
            "--outcome",
            "failure",
        ])
        .expect("valid arguments")
        .into_options();
        assert_eq!(
            options.sim.users,
            vec![("ops".to_owned(), "pa:ss".to_owned())]
        );
        assert_eq!(options.sim.prefixes, vec!["/GKLM/rest/v1"]);
        assert_eq!(options.sim.backups[0].path, "/b/hsm.jar");
        assert_eq!(options.sim.backups[0].password, None);
        assert_eq!(options.sim.run_defaults.outcome, Outcome::Failure);

        assert!(parse(&["--user", "nopassword"]).is_err());
        assert!(parse(&["--prefix", "/"]).is_err());
        assert!(parse(&["--outcome", "maybe"]).is_err());
    }

    #[test]
    fn auth_id_prefix_checked() {
        let options = parse(&["--auth-id-prefix", "AuthId-x_1"])
            .expect("valid prefix")
            .into_options();
        assert_eq!(options.sim.auth_id_prefix, "AuthId-x_1");
        assert_eq!(
            parse(&[])
                .expect("no arguments")
                .into_options()
                .sim
                .auth_id_prefix,
            ""
        );
        assert!(parse(&["--auth-id-prefix", "a b"]).is_err());
        assert!(parse(&["--auth-id-prefix", "a=b"]).is_err());
    }

    #[test]
    fn user_debug_hides_password() {
        let user = parse_user("admin:secret-value").expect("valid");
        assert!(!format!("{user:?}").contains("secret-value"));
    }
}

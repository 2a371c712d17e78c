//! The `SklmRestore` custom resource: spec and status types.
//!
//! The CRD in `crds/` is generated from these types (`sklm-restore-operator crd`), so every
//! field's doc comment is what `kubectl explain` shows. Behaviour lives in `controller`; this
//! module only defines shapes, defaults and schema constraints.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Default API path prefix of SKLM 3.0 to GKLM 4.2.1.
pub const DEFAULT_API_PREFIX: &str = "/SKLM/rest/v1";

/// Watches a restore of an IBM SKLM / GKLM key server and reports its phase and result.
// Each printcolumn repeats the keys name and type_, which this lint takes for duplicates.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "sklm.dev",
    version = "v1alpha1",
    kind = "SklmRestore",
    plural = "sklmrestores",
    shortname = "sklmr",
    category = "sklm",
    namespaced,
    status = "SklmRestoreStatus",
    doc = "Watches, or starts and watches, a restore of an IBM SKLM / GKLM key server, and reports its phase and result.",
    derive = "PartialEq",
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Step", type_ = "string", json_path = ".status.restorePhase"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(name = "Started", type_ = "date", json_path = ".status.startTime"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    printcolumn(
        name = "Message",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].message",
        priority = "1"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct SklmRestoreSpec {
    /// The key server to watch.
    pub server: ServerSpec,

    /// Secret in the same namespace with the REST user: key `userid` (or `username`, as in
    /// `kubernetes.io/basic-auth` Secrets) and key `password`. One trailing line ending is
    /// stripped from each value.
    pub credentials_secret_ref: LocalSecretReference,

    /// Seconds between two polls of the server (default 10, 1 to 3600). Objects that watch
    /// the same server with the same user share one poll at the shortest interval among
    /// them.
    #[serde(default = "default_poll_interval")]
    #[schemars(range(min = 1, max = 3600))]
    pub poll_interval_seconds: u32,

    /// Locale sent as `Accept-Language` (default en); the server's messages come back in it.
    #[serde(default = "default_accept_language")]
    #[schemars(pattern(r"^[A-Za-z]{1,8}(-[A-Za-z0-9]{1,8})*$"))]
    pub accept_language: String,

    /// Seconds the server may stay unreachable after a running restore step was seen before
    /// the outage is reported as a failure (default 600, 10 to 86400). The server restarts
    /// itself when a restore ends.
    #[serde(default = "default_restart_timeout")]
    #[schemars(range(min = 10, max = 86400))]
    pub restart_timeout_seconds: u32,

    /// Starts a restore of this backup on the server, at most once for this object. The
    /// restore replaces the server's keys. Without it, the object only watches a restore
    /// started some other way. Changing it after the restore was submitted starts
    /// nothing; the `RestoreSubmitted` condition then says the change was ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "RestoreRequest")]
    pub restore: Option<RestoreRequest>,
}

/// A restore for the operator to start.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RestoreRequest {
    /// Full path of the backup file on the key server.
    #[schemars(length(min = 1, max = 4096))]
    pub backup_file_path: String,

    /// Secret in the same namespace with the backup's password. Not needed for backups
    /// encrypted by a hardware security module.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "PasswordSecretReference")]
    pub password_secret_ref: Option<PasswordSecretReference>,
}

/// Reference to the key of a Secret that holds a password.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub struct PasswordSecretReference {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,

    /// Key in the Secret's data (default password).
    #[serde(default = "default_password_key")]
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

/// Where and how to reach the key server's REST API.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServerSpec {
    /// Base URL: `https://`, a host name or IP address, and a port (443 when omitted). No
    /// path: the API prefix goes in `apiPrefix`.
    #[schemars(pattern(r"^https://[^/?#]+/?$"))]
    pub url: String,

    /// Path prefix of the REST API: `/SKLM/rest/v1` (the default) up to GKLM 4.2.1,
    /// `/GKLM/rest/v1` on GKLM 5.x.
    #[serde(default = "default_api_prefix")]
    #[schemars(pattern(r"^(/[A-Za-z0-9._-]+)+$"))]
    pub api_prefix: String,

    /// Secret in the same namespace with a PEM CA certificate to trust in addition to the
    /// system roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "SecretKeySelector")]
    pub ca_secret_ref: Option<SecretKeySelector>,

    /// Skips verification of the server's TLS certificate. Never the default; reported in
    /// the `Ready` condition message while set.
    #[serde(default)]
    pub insecure_skip_tls_verify: bool,

    /// Seconds one request may take, connecting included (default 10, 1 to 300).
    #[serde(default = "default_timeout")]
    #[schemars(range(min = 1, max = 300))]
    pub timeout_seconds: u32,
}

/// Reference to a Secret in the object's own namespace.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub struct LocalSecretReference {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// Reference to one key of a Secret in the object's own namespace.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub struct SecretKeySelector {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,

    /// Key in the Secret's data (default ca.crt).
    #[serde(default = "default_ca_key")]
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

/// Observed state, written by the operator only.
///
/// Optional object fields here stay `nullable` in the schema: server-side apply on
/// Kubernetes 1.20 stores a field that the operator stops applying as `null`, and the
/// schema must accept that. (Spec fields are not nullable, so that `kubectl explain` on
/// 1.20 shows their type and fields.)
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SklmRestoreStatus {
    /// Generation of the spec that this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Summary for people: Pending, Waiting, Running, Completed or Failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "phase_schema")]
    pub phase: Option<Phase>,

    /// The server's own restore step: Idle, Initialize, CreateTempDir, RestoreConfigFiles,
    /// RestoreKeystores, RestoreDatabases, Cleanup, Completed, or Unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "restore_phase_schema")]
    pub restore_phase: Option<RestorePhase>,

    /// Raw `code` and `status` text of the server's last restore answer, cut to 512 bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_message: Option<ServerMessage>,

    /// When a running restore step was first seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,

    /// When the restore was seen to end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,

    /// The last failure, cleared when a poll succeeds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<LastError>,

    /// When the operator decided to send the run-restore request for `spec.restore`;
    /// written before the request is sent, so the request is never sent twice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub submitted_time: Option<Time>,

    /// The run-restore request sent for `spec.restore`, and the server's answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub submission: Option<Submission>,

    /// Ready, Reconciling and Stalled, as kstatus reads them; RestoreSubmitted when
    /// `spec.restore` is set.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

/// Summary phase of a watched restore.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Pending,
    Waiting,
    Running,
    Completed,
    Failed,
}

/// The server's restore step, from its phase table.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RestorePhase {
    Idle,
    Initialize,
    CreateTempDir,
    RestoreConfigFiles,
    RestoreKeystores,
    RestoreDatabases,
    Cleanup,
    Completed,
    Unknown,
}

/// The server's answer as sent, kept for people to read.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct ServerMessage {
    /// The `code` field.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub code: String,

    /// The `status` field.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub status: String,
}

/// A failure seen while polling or preparing a poll.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LastError {
    /// CamelCase reason, the same as the Ready condition's.
    pub reason: String,

    /// HTTP status code of the failed response, if one was received.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_status: Option<u16>,

    /// Message id from the server's error body, such as `CTGKM6004E`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,

    /// What failed, for people.
    pub message: String,
}

/// The run-restore request the operator sent.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Submission {
    /// The backup file named in the request.
    pub backup_file_path: String,

    /// Sending (recorded, answer not yet recorded), Accepted, Rejected, NotSent (failed
    /// before the request left; it is sent later) or Unknown (the request may have
    /// reached the server; it is never sent again).
    #[schemars(schema_with = "submission_state_schema")]
    pub state: SubmissionState,

    /// HTTP status of the answer, if one arrived.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_status: Option<u16>,

    /// Message id of the answer, such as `CTGKM3294E`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,

    /// The answer or the failure, for people.
    pub message: String,

    /// When the request finished: the server's answer arrived, or the request failed.
    /// The start grace of an accepted restore counts from here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_time: Option<Time>,
}

/// Where a run-restore request stands.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SubmissionState {
    Sending,
    Accepted,
    Rejected,
    NotSent,
    Unknown,
}

impl SubmissionState {
    pub const ALL: [SubmissionState; 5] = [
        SubmissionState::Sending,
        SubmissionState::Accepted,
        SubmissionState::Rejected,
        SubmissionState::NotSent,
        SubmissionState::Unknown,
    ];

    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            SubmissionState::Sending => "Sending",
            SubmissionState::Accepted => "Accepted",
            SubmissionState::Rejected => "Rejected",
            SubmissionState::NotSent => "NotSent",
            SubmissionState::Unknown => "Unknown",
        }
    }
}

/// A kstatus condition.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// Ready, Reconciling or Stalled.
    #[serde(rename = "type")]
    pub type_: String,

    /// True, False or Unknown.
    pub status: String,

    /// CamelCase reason for the status.
    pub reason: String,

    /// Details for people.
    pub message: String,

    /// When `status` or `reason` last changed.
    pub last_transition_time: Time,

    /// Generation of the spec the condition was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

impl Phase {
    pub const ALL: [Phase; 5] = [
        Phase::Pending,
        Phase::Waiting,
        Phase::Running,
        Phase::Completed,
        Phase::Failed,
    ];

    /// Whether the restore has ended, so the phase can never change again.
    #[must_use]
    pub fn is_finished(self) -> bool {
        matches!(self, Phase::Completed | Phase::Failed)
    }

    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Pending => "Pending",
            Phase::Waiting => "Waiting",
            Phase::Running => "Running",
            Phase::Completed => "Completed",
            Phase::Failed => "Failed",
        }
    }
}

impl RestorePhase {
    /// The server's phase table, in order of its numbers 0 to 7.
    pub const TABLE: [(RestorePhase, &'static str); 8] = [
        (RestorePhase::Idle, "IDLE"),
        (RestorePhase::Initialize, "INITIALIZE"),
        (RestorePhase::CreateTempDir, "CREATE_TEMP_DIR"),
        (RestorePhase::RestoreConfigFiles, "RESTORE_CONFIG_FILES"),
        (RestorePhase::RestoreKeystores, "RESTORE_KEYSTORES"),
        (RestorePhase::RestoreDatabases, "RESTORE_DATABASES"),
        (RestorePhase::Cleanup, "CLEANUP"),
        (RestorePhase::Completed, "COMPLETED"),
    ];

    /// Maps the server's phase number (0 to 7) to a step.
    #[must_use]
    pub fn from_number(number: i64) -> Option<Self> {
        let index = usize::try_from(number).ok()?;
        Self::TABLE.get(index).map(|(phase, _)| *phase)
    }

    /// Maps the server's phase name, such as `RESTORE_DATABASES`, to a step.
    #[must_use]
    pub fn from_server_name(name: &str) -> Option<Self> {
        Self::TABLE
            .iter()
            .find(|(_, server_name)| server_name.eq_ignore_ascii_case(name))
            .map(|(phase, _)| *phase)
    }

    /// The server's name for this step; `UNKNOWN` for [`RestorePhase::Unknown`].
    #[must_use]
    pub fn server_name(self) -> &'static str {
        Self::TABLE
            .iter()
            .find(|(phase, _)| *phase == self)
            .map_or("UNKNOWN", |(_, name)| name)
    }

    /// Whether this is a step of a restore in progress (1 to 6 in the server's table).
    #[must_use]
    pub fn is_running_step(self) -> bool {
        !matches!(
            self,
            RestorePhase::Idle | RestorePhase::Completed | RestorePhase::Unknown
        )
    }
}

/// Plain string enums keep the schema structural: a Rust enum with a doc comment per
/// variant would become a `oneOf`, which the API server rejects.
fn string_enum_schema(values: &[&str]) -> schemars::Schema {
    schemars::json_schema!({ "type": "string", "enum": values })
}

fn phase_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    string_enum_schema(&Phase::ALL.map(Phase::as_str))
}

fn restore_phase_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    string_enum_schema(&[
        "Idle",
        "Initialize",
        "CreateTempDir",
        "RestoreConfigFiles",
        "RestoreKeystores",
        "RestoreDatabases",
        "Cleanup",
        "Completed",
        "Unknown",
    ])
}

fn submission_state_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    string_enum_schema(&SubmissionState::ALL.map(SubmissionState::as_str))
}

fn default_password_key() -> String {
    "password".to_owned()
}

fn default_poll_interval() -> u32 {
    10
}

fn default_accept_language() -> String {
    "en".to_owned()
}

fn default_restart_timeout() -> u32 {
    600
}

fn default_api_prefix() -> String {
    DEFAULT_API_PREFIX.to_owned()
}

fn default_timeout() -> u32 {
    10
}

fn default_ca_key() -> String {
    "ca.crt".to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_defaults_fill_optional_fields() {
        let spec: SklmRestoreSpec = serde_json::from_value(serde_json::json!({
            "server": {"url": "https://gklm.keys.svc:9443"},
            "credentialsSecretRef": {"name": "gklm-admin"}
        }))
        .expect("minimal spec parses");
        assert_eq!(spec.poll_interval_seconds, 10);
        assert_eq!(spec.accept_language, "en");
        assert_eq!(spec.server.api_prefix, "/SKLM/rest/v1");
        assert_eq!(spec.server.timeout_seconds, 10);
        assert!(!spec.server.insecure_skip_tls_verify);
        assert_eq!(spec.restart_timeout_seconds, 600);
    }

    #[test]
    fn empty_status_serializes_without_nulls() {
        let json = serde_json::to_string(&SklmRestoreStatus::default()).expect("serializes");
        assert_eq!(json, "{}");
    }

    #[test]
    fn restore_phase_numbers_and_names_round_trip() {
        for (number, (phase, name)) in RestorePhase::TABLE.iter().enumerate() {
            let number = i64::try_from(number).expect("small");
            assert_eq!(RestorePhase::from_number(number), Some(*phase));
            assert_eq!(RestorePhase::from_server_name(name), Some(*phase));
            assert_eq!(phase.server_name(), *name);
        }
        assert_eq!(RestorePhase::from_number(8), None);
        assert_eq!(RestorePhase::from_number(-1), None);
    }
}

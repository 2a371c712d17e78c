//! Names shared across modules: condition types and reasons, the field manager, labels.

/// Field manager of every status write (server-side apply).
pub const FIELD_MANAGER: &str = "sklm-restore-operator";

/// Condition types, as kstatus reads them.
pub mod condition {
    pub const READY: &str = "Ready";
    pub const RECONCILING: &str = "Reconciling";
    pub const STALLED: &str = "Stalled";
    pub const RESTORE_SUBMITTED: &str = "RestoreSubmitted";
}

/// Condition reasons, CamelCase.
pub mod reason {
    pub const RESTORE_SUCCEEDED: &str = "RestoreSucceeded";
    pub const RESTORE_ENDED_RESULT_UNKNOWN: &str = "RestoreEndedResultUnknown";
    pub const RESTORE_FAILED: &str = "RestoreFailed";
    pub const WAITING_FOR_RESTORE: &str = "WaitingForRestore";
    pub const RESTORE_IN_PROGRESS: &str = "RestoreInProgress";
    pub const SERVER_RESTARTING: &str = "ServerRestarting";
    pub const AUTHENTICATION_FAILED: &str = "AuthenticationFailed";
    pub const SERVER_UNREACHABLE: &str = "ServerUnreachable";
    pub const SERVER_ERROR: &str = "ServerError";
    pub const TLS_ERROR: &str = "TLSError";
    pub const TIMEOUT: &str = "Timeout";
    pub const INVALID_SECRET: &str = "InvalidSecret";
    pub const INVALID_SPEC: &str = "InvalidSpec";
    pub const UNEXPECTED_REDIRECT: &str = "UnexpectedRedirect";
    pub const INVALID_RESPONSE: &str = "InvalidResponse";
    pub const UNRECOGNIZED_ANSWER: &str = "UnrecognizedAnswer";
    pub const RESTORE_REJECTED: &str = "RestoreRejected";
    pub const SUBMISSION_UNKNOWN: &str = "SubmissionOutcomeUnknown";
    pub const SUBMISSION_SENDING: &str = "Sending";
    pub const SUBMISSION_ACCEPTED: &str = "Accepted";
    pub const SUBMISSION_NOT_SENT: &str = "NotSent";
    pub const SUBMITTED_RESTORE_STARTING: &str = "SubmittedRestoreStarting";
}

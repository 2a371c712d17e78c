//! Injected faults of the REST API: what each fault does, which endpoints it applies to,
//! and how the active faults combine into one plan for a request.
//!
//! Faults that change server state instead of responses (wrong password, revoked
//! sessions, restart) are control actions, not entries of this list.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::model::Endpoint;

/// Largest body an `oversized` fault may ask for, so a typo cannot exhaust memory.
pub const MAX_OVERSIZED_BYTES: usize = 64 * 1024 * 1024;

/// Default time a `silent` fault keeps a connection open before closing it without a response.
pub const DEFAULT_SILENT_HOLD_SECONDS: u64 = 300;

/// One injected fault, active until the faults are cleared.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fault {
    #[serde(flatten)]
    pub action: FaultAction,
    /// Endpoints the fault applies to. `None` means every request, including unknown paths.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoints: Option<Vec<Endpoint>>,
}

/// Effect of a fault on a request, tagged by `kind` on the wire.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FaultAction {
    /// Delays the response by `delay_ms` milliseconds, then responds normally.
    Slow { delay_ms: u64 },
    /// Completes the TLS handshake and reads the request, then sends nothing and closes
    /// the connection after `hold_seconds` (or when the client gives up first).
    Silent {
        #[serde(default = "default_silent_hold_seconds")]
        hold_seconds: u64,
    },
    /// Responds with a redirect status (default 302) and this `Location`.
    Redirect {
        location: String,
        #[serde(default = "default_redirect_status")]
        status: u16,
    },
    /// Responds 200 with a body that is not JSON.
    Garbage {
        #[serde(default = "default_garbage_body")]
        body: String,
    },
    /// Responds 200 with a valid JSON body of `bytes` bytes.
    Oversized { bytes: usize },
    /// Responds with `status` and a JSON CTGKM error body or an HTML page.
    HttpError {
        status: u16,
        #[serde(default)]
        format: ErrorFormat,
        /// Message id of the JSON body; a placeholder id when absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        code: Option<String>,
    },
}

/// Body format of an `http_error` fault.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorFormat {
    #[default]
    Json,
    Html,
}

fn default_silent_hold_seconds() -> u64 {
    DEFAULT_SILENT_HOLD_SECONDS
}

fn default_redirect_status() -> u16 {
    302
}

fn default_garbage_body() -> String {
    "<<not JSON>> {\"code\": \"0\", \"status\"".to_owned()
}

impl Fault {
    #[must_use]
    pub fn slow(delay: Duration) -> Fault {
        let delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        Fault::all(FaultAction::Slow { delay_ms })
    }

    #[must_use]
    pub fn silent() -> Fault {
        Fault::all(FaultAction::Silent {
            hold_seconds: DEFAULT_SILENT_HOLD_SECONDS,
        })
    }

    #[must_use]
    pub fn redirect(location: &str) -> Fault {
        Fault::all(FaultAction::Redirect {
            location: location.to_owned(),
            status: default_redirect_status(),
        })
    }

    #[must_use]
    pub fn garbage() -> Fault {
        Fault::all(FaultAction::Garbage {
            body: default_garbage_body(),
        })
    }

    #[must_use]
    pub fn oversized(bytes: usize) -> Fault {
        Fault::all(FaultAction::Oversized { bytes })
    }

    #[must_use]
    pub fn http_error(status: u16, format: ErrorFormat) -> Fault {
        Fault::all(FaultAction::HttpError {
            status,
            format,
            code: None,
        })
    }

    /// Restricts the fault to the given endpoints.
    #[must_use]
    pub fn only(mut self, endpoints: &[Endpoint]) -> Fault {
        self.endpoints = Some(endpoints.to_vec());
        self
    }

    fn all(action: FaultAction) -> Fault {
        Fault {
            action,
            endpoints: None,
        }
    }

    /// Checks the values a client sent, returning a message that names the invalid field.
    pub fn validate(&self) -> Result<(), String> {
        match &self.action {
            FaultAction::Redirect { status, .. } if !(300..400).contains(status) => Err(format!(
                "invalid redirect status {status}: expected 300 to 399"
            )),
            FaultAction::HttpError { status, .. } if !(100..=599).contains(status) => Err(format!(
                "invalid http_error status {status}: expected 100 to 599"
            )),
            FaultAction::Oversized { bytes } if *bytes > MAX_OVERSIZED_BYTES => Err(format!(
                "oversized bytes {bytes} exceeds the maximum {MAX_OVERSIZED_BYTES}"
            )),
            _ => Ok(()),
        }
    }

    /// Tells whether the fault applies to a request for `endpoint` (`None` for unknown paths).
    #[must_use]
    pub fn applies_to(&self, endpoint: Option<Endpoint>) -> bool {
        match (&self.endpoints, endpoint) {
            (None, _) => true,
            (Some(endpoints), Some(endpoint)) => endpoints.contains(&endpoint),
            (Some(_), None) => false,
        }
    }
}

impl FaultAction {
    /// Returns the `kind` tag, for the request log.
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            FaultAction::Slow { .. } => "slow",
            FaultAction::Silent { .. } => "silent",
            FaultAction::Redirect { .. } => "redirect",
            FaultAction::Garbage { .. } => "garbage",
            FaultAction::Oversized { .. } => "oversized",
            FaultAction::HttpError { .. } => "http_error",
        }
    }
}

/// Effect of the active faults on one request: a total delay, then at most one fault that
/// replaces the normal response.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FaultPlan {
    pub delay: Duration,
    /// The first matching non-`slow` fault in list order.
    pub response: Option<FaultAction>,
}

/// Combines the faults that apply to `endpoint`: `slow` delays add up, and the first other
/// fault in list order replaces the response.
#[must_use]
pub fn plan_for(faults: &[Fault], endpoint: Option<Endpoint>) -> FaultPlan {
    let mut plan = FaultPlan::default();
    for fault in faults.iter().filter(|fault| fault.applies_to(endpoint)) {
        match &fault.action {
            FaultAction::Slow { delay_ms } => {
                plan.delay = plan.delay.saturating_add(Duration::from_millis(*delay_ms));
            }
            other if plan.response.is_none() => plan.response = Some(other.clone()),
            _ => {}
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fault_wire_format() {
        let fault = Fault::slow(Duration::from_millis(250)).only(&[Endpoint::IsRunning]);
        let value = serde_json::to_value(&fault).expect("serialize");
        assert_eq!(
            value,
            json!({"kind": "slow", "delay_ms": 250, "endpoints": ["isrunning"]})
        );

        let parsed: Fault = serde_json::from_value(json!({"kind": "http_error", "status": 503}))
            .expect("parse http_error");
        assert_eq!(parsed, Fault::http_error(503, ErrorFormat::Json));

        let silent: Fault = serde_json::from_value(json!({"kind": "silent"})).expect("parse");
        assert_eq!(silent, Fault::silent());
    }

    #[test]
    fn validate_rejects_bad_status() {
        let redirect = Fault {
            action: FaultAction::Redirect {
                location: "https://127.0.0.1:1/".to_owned(),
                status: 200,
            },
            endpoints: None,
        };
        assert!(redirect.validate().is_err());
        assert!(
            Fault::http_error(600, ErrorFormat::Html)
                .validate()
                .is_err()
        );
        assert!(
            Fault::oversized(MAX_OVERSIZED_BYTES + 1)
                .validate()
                .is_err()
        );
        assert!(Fault::http_error(502, ErrorFormat::Html).validate().is_ok());
    }

    #[test]
    fn plan_adds_delays_and_takes_first_response() {
        let faults = vec![
            Fault::slow(Duration::from_millis(100)),
            Fault::garbage().only(&[Endpoint::Login]),
            Fault::http_error(503, ErrorFormat::Json),
            Fault::slow(Duration::from_millis(50)).only(&[Endpoint::IsRunning]),
            Fault::silent(),
        ];

        let poll = plan_for(&faults, Some(Endpoint::IsRunning));
        assert_eq!(poll.delay, Duration::from_millis(150));
        assert_eq!(
            poll.response.as_ref().map(FaultAction::kind),
            Some("http_error")
        );

        let login = plan_for(&faults, Some(Endpoint::Login));
        assert_eq!(login.delay, Duration::from_millis(100));
        assert_eq!(
            login.response.as_ref().map(FaultAction::kind),
            Some("garbage")
        );
    }

    #[test]
    fn scoped_fault_skips_unknown_paths() {
        let faults = vec![Fault::garbage().only(&[Endpoint::Result])];
        assert_eq!(plan_for(&faults, None), FaultPlan::default());
        assert_eq!(
            plan_for(&faults, Some(Endpoint::Login)),
            FaultPlan::default()
        );
    }
}

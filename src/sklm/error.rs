//! Errors of calls to the key server, typed by what failed and whether a retry can help.

use crate::names::reason;

/// A failed call to the key server. Messages name the server origin but never a
/// credential, a session id or the response body beyond a bounded message id and text.
#[derive(Debug, thiserror::Error)]
pub enum SklmError {
    /// The message shows the URL without its user info, which may hold a password.
    #[error("invalid server URL {:?}: {detail}", without_user_info(url))]
    InvalidUrl { url: String, detail: String },

    #[error("invalid CA certificate: {detail}")]
    InvalidCa { detail: String },

    #[error("failed to build the HTTPS client")]
    ClientSetup(#[source] reqwest::Error),

    #[error("connection to {origin} failed: {detail}")]
    Unreachable { origin: String, detail: String },

    #[error("connection to {origin} lost during the request: {detail}")]
    ConnectionLost { origin: String, detail: String },

    #[error("TLS handshake with {origin} failed: {detail}")]
    Tls { origin: String, detail: String },

    #[error("request to {origin} timed out after {seconds} s")]
    Timeout { origin: String, seconds: u32 },

    #[error("login as {user:?} rejected with HTTP {status}{}", fmt_id(message_id.as_deref()))]
    LoginRejected {
        user: String,
        status: u16,
        message_id: Option<String>,
    },

    #[error("session rejected with HTTP {status}{} right after a fresh login", fmt_id(message_id.as_deref()))]
    SessionRejected {
        status: u16,
        message_id: Option<String>,
    },

    #[error("server answered HTTP {status} with a redirect{}; redirects are not followed", fmt_location(location.as_deref()))]
    Redirect {
        status: u16,
        location: Option<String>,
    },

    #[error("server answered HTTP {status} to {path}{}{}", fmt_id(message_id.as_deref()), fmt_text(text))]
    Http {
        status: u16,
        /// Request path, API prefix included, so a wrong `apiPrefix` shows.
        path: String,
        message_id: Option<String>,
        text: String,
    },

    #[error("response body exceeds {limit} bytes")]
    BodyTooLarge { limit: usize },

    #[error("invalid response from {path}: {detail}")]
    InvalidResponse { path: &'static str, detail: String },
}

impl SklmError {
    /// Whether polling again later can succeed without a person changing something.
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        match self {
            SklmError::Unreachable { .. }
            | SklmError::ConnectionLost { .. }
            | SklmError::Timeout { .. }
            | SklmError::Http { .. }
            | SklmError::BodyTooLarge { .. }
            | SklmError::InvalidResponse { .. }
            | SklmError::ClientSetup(_) => true,
            SklmError::InvalidUrl { .. }
            | SklmError::InvalidCa { .. }
            | SklmError::Tls { .. }
            | SklmError::LoginRejected { .. }
            | SklmError::SessionRejected { .. }
            | SklmError::Redirect { .. } => false,
        }
    }

    /// Whether the server may be down or restarting (a refused connection, a timeout, a 5xx
    /// or 404 page), as it is for a few minutes after each restore.
    #[must_use]
    pub fn is_outage(&self) -> bool {
        match self {
            SklmError::Unreachable { .. }
            | SklmError::ConnectionLost { .. }
            | SklmError::Timeout { .. } => true,
            SklmError::Http { status, .. } => *status >= 500 || *status == 404,
            _ => false,
        }
    }

    /// The condition reason that reports this error.
    #[must_use]
    pub fn reason(&self) -> &'static str {
        match self {
            SklmError::InvalidUrl { .. } => reason::INVALID_SPEC,
            SklmError::InvalidCa { .. } => reason::INVALID_SECRET,
            SklmError::ClientSetup(_)
            | SklmError::Unreachable { .. }
            | SklmError::ConnectionLost { .. } => reason::SERVER_UNREACHABLE,
            SklmError::Tls { .. } => reason::TLS_ERROR,
            SklmError::Timeout { .. } => reason::TIMEOUT,
            SklmError::LoginRejected { .. } | SklmError::SessionRejected { .. } => {
                reason::AUTHENTICATION_FAILED
            }
            SklmError::Redirect { .. } => reason::UNEXPECTED_REDIRECT,
            SklmError::Http { .. } => reason::SERVER_ERROR,
            SklmError::BodyTooLarge { .. } | SklmError::InvalidResponse { .. } => {
                reason::INVALID_RESPONSE
            }
        }
    }

    /// Short label for metrics; one of a fixed set.
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            SklmError::InvalidUrl { .. } => "invalid_url",
            SklmError::InvalidCa { .. } => "invalid_ca",
            SklmError::ClientSetup(_) => "client_setup",
            SklmError::Unreachable { .. } => "unreachable",
            SklmError::ConnectionLost { .. } => "connection_lost",
            SklmError::Tls { .. } => "tls",
            SklmError::Timeout { .. } => "timeout",
            SklmError::LoginRejected { .. } => "login_rejected",
            SklmError::SessionRejected { .. } => "session_rejected",
            SklmError::Redirect { .. } => "redirect",
            SklmError::Http { .. } => "http_status",
            SklmError::BodyTooLarge { .. } => "body_too_large",
            SklmError::InvalidResponse { .. } => "invalid_response",
        }
    }

    /// HTTP status of the failed response, when one arrived.
    #[must_use]
    pub fn http_status(&self) -> Option<u16> {
        match self {
            SklmError::LoginRejected { status, .. }
            | SklmError::SessionRejected { status, .. }
            | SklmError::Redirect { status, .. }
            | SklmError::Http { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The server's message id, such as `CTGKM6004E`, when its error body had one.
    #[must_use]
    pub fn message_id(&self) -> Option<&str> {
        match self {
            SklmError::LoginRejected { message_id, .. }
            | SklmError::SessionRejected { message_id, .. }
            | SklmError::Http { message_id, .. } => message_id.as_deref(),
            _ => None,
        }
    }
}

/// Replaces the user info (`user:password@`) of a URL with `***@`, also when the URL does
/// not parse.
fn without_user_info(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (format!("{scheme}://"), rest),
        None => (String::new(), url),
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}***@{}", &rest[at + 1..]),
        None => url.to_owned(),
    }
}

fn fmt_id(message_id: Option<&str>) -> String {
    message_id.map(|id| format!(" ({id})")).unwrap_or_default()
}

fn fmt_text(text: &str) -> String {
    if text.is_empty() {
        String::new()
    } else {
        format!(": {text}")
    }
}

fn fmt_location(location: Option<&str>) -> String {
    location.map(|l| format!(" to {l}")).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_url_message_hides_user_info() {
        for url in [
            "https://admin:s3cret@gklm:9443",
            "https://admin:s3cret@gklm:9443/path@x",
            "admin:s3cret@gklm:9443",
            "https://a:b@c:s3cret@gklm",
        ] {
            let error = SklmError::InvalidUrl {
                url: url.to_owned(),
                detail: "user info is not allowed".to_owned(),
            };
            let message = error.to_string();
            assert!(!message.contains("s3cret"), "{message}");
            assert!(message.contains("***@gklm"), "{message}");
        }
    }

    #[test]
    fn invalid_url_message_keeps_url_without_user_info() {
        let error = SklmError::InvalidUrl {
            url: "http://gklm:9443/a@b".to_owned(),
            detail: "the scheme must be https".to_owned(),
        };
        assert_eq!(
            error.to_string(),
            "invalid server URL \"http://gklm:9443/a@b\": the scheme must be https"
        );
    }
}

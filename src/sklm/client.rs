//! HTTPS calls to the key server's REST API, and a session that logs in once and again
//! only when the server rejects its id.
//!
//! Redirects are never followed, proxies from the environment are ignored, every call has
//! a connect and a total timeout, and bodies are read up to [`MAX_BODY_BYTES`].

use std::fmt;
use std::time::Duration;

use reqwest::header::{ACCEPT, ACCEPT_LANGUAGE, AUTHORIZATION, CONTENT_TYPE, LOCATION};
use reqwest::{Method, StatusCode, Url};
use tokio::sync::Mutex;

use super::SklmError;
use super::response::{self, RestoreObservation, RestoreResult};
use super::tls::{self, TlsSettings};
use crate::crd::ServerMessage;

/// Largest response body read, in bytes. Real answers are well under 1 KiB.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// Message ids that mean the session id was not accepted.
const SESSION_REJECTED_IDS: [&str; 2] = ["CTGKM6004E", "CTGKM6002E"];

/// A validated server address: `https://host:port` plus the API prefix.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Endpoint {
    /// `https://host:port`, for messages.
    pub origin: String,
    /// Origin and API prefix, without a trailing slash.
    pub base: String,
}

impl Endpoint {
    /// Checks a spec URL and prefix: `https`, a host, no user info, path, query or fragment.
    pub fn parse(url: &str, api_prefix: &str) -> Result<Self, SklmError> {
        let invalid = |detail: &str| SklmError::InvalidUrl {
            url: url.to_owned(),
            detail: detail.to_owned(),
        };
        let parsed = Url::parse(url).map_err(|e| invalid(&e.to_string()))?;
        if parsed.scheme() != "https" {
            return Err(invalid("the scheme must be https"));
        }
        let host = parsed.host_str().ok_or_else(|| invalid("no host"))?;
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(invalid(
                "user info is not allowed; use credentialsSecretRef",
            ));
        }
        if !matches!(parsed.path(), "" | "/")
            || parsed.query().is_some()
            || parsed.fragment().is_some()
        {
            return Err(invalid(
                "no path, query or fragment allowed; put the path in apiPrefix (--api-prefix for probe)",
            ));
        }
        if !api_prefix.starts_with('/') || api_prefix.ends_with('/') || api_prefix.contains("..") {
            return Err(invalid("apiPrefix must start with / and not end with /"));
        }
        let port = parsed.port_or_known_default().unwrap_or(443);
        let origin = format!("https://{host}:{port}");
        Ok(Endpoint {
            base: format!("{origin}{api_prefix}"),
            origin,
        })
    }
}

/// Connection settings shared by all calls to one server.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ClientSettings {
    pub endpoint: Endpoint,
    pub tls: TlsSettings,
    pub timeout_seconds: u32,
    pub accept_language: String,
}

/// A user name and password. The password never appears in `Debug` output.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Credentials {
    pub user: String,
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// A session id from login; printed as `<redacted>`.
#[derive(Clone)]
struct AuthId(String);

impl fmt::Debug for AuthId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AuthId(<redacted>)")
    }
}

/// Stateless HTTPS client for one server.
#[derive(Clone, Debug)]
pub struct SklmClient {
    http: reqwest::Client,
    settings: ClientSettings,
}

/// A response body read up to the size limit, with its status.
struct Reply {
    status: StatusCode,
    /// Request path, API prefix included.
    path: String,
    body: Vec<u8>,
    /// The body of a 2xx response went past the limit and was cut there. Other
    /// responses that large are errors.
    truncated: bool,
}

impl Reply {
    /// Returns the body, or an error when it was cut at the size limit.
    fn whole_body(self) -> Result<Vec<u8>, SklmError> {
        if self.truncated {
            return Err(SklmError::BodyTooLarge {
                limit: MAX_BODY_BYTES,
            });
        }
        Ok(self.body)
    }
}

impl SklmClient {
    pub fn new(settings: ClientSettings) -> Result<Self, SklmError> {
        let tls = tls::client_config(&settings.tls)?;
        let timeout = Duration::from_secs(settings.timeout_seconds.into());
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .https_only(true)
            .connect_timeout(timeout)
            .timeout(timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(1)
            .user_agent(concat!("sklm-restore-operator/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(SklmError::ClientSetup)?;
        Ok(SklmClient { http, settings })
    }

    async fn login(&self, credentials: &Credentials) -> Result<AuthId, SklmError> {
        let body =
            serde_json::json!({"userid": credentials.user, "password": credentials.password});
        let reply = self
            .send(Method::POST, "/ckms/login", None, Some(body))
            .await?;
        if !reply.status.is_success() {
            let (message_id, _) = response::parse_error_body(&reply.body);
            if reply.status.is_client_error() && reply.status != StatusCode::NOT_FOUND {
                return Err(SklmError::LoginRejected {
                    user: credentials.user.clone(),
                    status: reply.status.as_u16(),
                    message_id,
                });
            }
            return Err(http_error(&reply));
        }
        response::parse_login(&reply.whole_body()?)
            .map(AuthId)
            .map_err(|e| invalid_response("/ckms/login", &e))
    }

    async fn logout(&self, auth: &AuthId) -> Result<(), SklmError> {
        let body = serde_json::json!({"userAuthId": auth.0});
        let reply = self
            .send(Method::DELETE, "/ckms/logout", Some(auth), Some(body))
            .await?;
        if reply.status.is_success() {
            Ok(())
        } else {
            Err(http_error(&reply))
        }
    }

    async fn call(
        &self,
        method: Method,
        path: &'static str,
        auth: &AuthId,
        body: Option<serde_json::Value>,
    ) -> Result<Reply, SklmError> {
        let reply = self.send(method, path, Some(auth), body).await?;
        if reply.status.is_success() {
            Ok(reply)
        } else {
            Err(http_error(&reply))
        }
    }

    async fn send(
        &self,
        method: Method,
        path: &'static str,
        auth: Option<&AuthId>,
        body: Option<serde_json::Value>,
    ) -> Result<Reply, SklmError> {
        let url = format!("{}{path}", self.settings.endpoint.base);
        let mut request = self
            .http
            .request(method, url)
            .header(ACCEPT, "application/json")
            .header(CONTENT_TYPE, "application/json")
            .header(ACCEPT_LANGUAGE, &self.settings.accept_language);
        if let Some(auth) = auth {
            request = request.header(AUTHORIZATION, format!("SKLMAuth userAuthId={}", auth.0));
        }
        if let Some(body) = body {
            request = request.body(body.to_string());
        }
        let mut response = request.send().await.map_err(|e| self.transport_error(&e))?;
        let status = response.status();
        if status.is_redirection() {
            return Err(SklmError::Redirect {
                status: status.as_u16(),
                location: response
                    .headers()
                    .get(LOCATION)
                    .and_then(|value| value.to_str().ok())
                    .map(redirect_origin),
            });
        }
        let mut body = Vec::new();
        let mut truncated = false;
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| self.transport_error(&e))?
        {
            let room = MAX_BODY_BYTES - body.len();
            if chunk.len() > room {
                if !status.is_success() {
                    return Err(SklmError::BodyTooLarge {
                        limit: MAX_BODY_BYTES,
                    });
                }
                // A 2xx status is the server's decision whatever the body holds, so the
                // caller gets it with the body cut at the limit.
                body.extend_from_slice(&chunk[..room]);
                truncated = true;
                break;
            }
            body.extend_from_slice(&chunk);
        }
        let path = url_path(&self.settings.endpoint, path);
        Ok(Reply {
            status,
            path,
            body,
            truncated,
        })
    }

    /// Sorts a transport failure into timeout, TLS or unreachable, by its source chain.
    fn transport_error(&self, error: &reqwest::Error) -> SklmError {
        let origin = self.settings.endpoint.origin.clone();
        if error.is_timeout() {
            return SklmError::Timeout {
                origin,
                seconds: self.settings.timeout_seconds,
            };
        }
        let connected = !error.is_connect();
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
        while let Some(current) = source {
            if let Some(tls_error) = as_tls_error(current) {
                return SklmError::Tls {
                    origin,
                    detail: tls_error.to_string(),
                };
            }
            source = current.source();
        }
        let detail = innermost_message(error);
        if connected {
            SklmError::ConnectionLost { origin, detail }
        } else {
            SklmError::Unreachable { origin, detail }
        }
    }
}

/// A failed call made with a [`Session`].
#[derive(Debug)]
pub struct SessionFailure {
    pub error: SklmError,
    /// The failure was in a login, so the call itself never reached the server, or the
    /// server rejected it for its session id without acting on it.
    pub in_login: bool,
}

impl SessionFailure {
    fn login(error: SklmError) -> Self {
        SessionFailure {
            error,
            in_login: true,
        }
    }

    fn call(error: SklmError) -> Self {
        SessionFailure {
            error,
            in_login: false,
        }
    }
}

/// A client with one shared login. Calls log in when there is no session, and on a
/// rejected session id (HTTP 401, CTGKM6004E or CTGKM6002E) log in again once and retry
/// the call once.
#[derive(Debug)]
pub struct Session {
    client: SklmClient,
    credentials: Credentials,
    auth: Mutex<Option<AuthId>>,
    logins: std::sync::atomic::AtomicU64,
}

impl Session {
    #[must_use]
    pub fn new(client: SklmClient, credentials: Credentials) -> Self {
        Session {
            client,
            credentials,
            auth: Mutex::new(None),
            logins: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// How many logins this session has made.
    #[must_use]
    pub fn login_count(&self) -> u64 {
        self.logins.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub async fn is_running(&self) -> Result<RestoreObservation, SklmError> {
        let path = "/ckms/restore/isrunning";
        let body = self
            .call_with_session(Method::GET, path, None)
            .await
            .map_err(|failure| failure.error)?
            .whole_body()?;
        response::parse_is_running(&body).map_err(|e| invalid_response(path, &e))
    }

    pub async fn restore_result(&self) -> Result<RestoreResult, SklmError> {
        let path = "/ckms/restore/result";
        let body = self
            .call_with_session(Method::GET, path, None)
            .await
            .map_err(|failure| failure.error)?
            .whole_body()?;
        response::parse_result(&body).map_err(|e| invalid_response(path, &e))
    }

    /// Sends the run-restore request. The success body is not documented, so any 2xx is
    /// success and its `code` and `status` (or `message`) are kept as they are, even
    /// from a body cut at the size limit.
    pub async fn run_restore(
        &self,
        backup_file_path: &str,
        password: Option<&str>,
    ) -> Result<ServerMessage, SessionFailure> {
        let mut body = serde_json::json!({"backupFilePath": backup_file_path});
        if let Some(password) = password {
            body["password"] = serde_json::Value::from(password);
        }
        let reply = self
            .call_with_session(Method::POST, "/ckms/restore", Some(body))
            .await?;
        Ok(response::parse_lenient_message(&reply.body))
    }

    /// Logs in unless the session has an id already. The run-restore request logs in
    /// first, so that a failed login is known not to have sent anything.
    pub async fn ensure_login(&self) -> Result<(), SklmError> {
        let mut auth = self.auth.lock().await;
        if auth.is_none() {
            self.login_into(&mut auth).await?;
        }
        Ok(())
    }

    /// Ends the session on the server, if there is one. Failures are only logged, since
    /// the server drops idle sessions by itself.
    pub async fn logout(&self) {
        let Some(auth) = self.auth.lock().await.take() else {
            return;
        };
        if let Err(error) = self.client.logout(&auth).await {
            tracing::debug!(origin = %self.client.settings.endpoint.origin, %error, "logout failed");
        }
    }

    /// Makes a call with the session id, logging in first when there is none, and once
    /// more after a rejected session id.
    async fn call_with_session(
        &self,
        method: Method,
        path: &'static str,
        body: Option<serde_json::Value>,
    ) -> Result<Reply, SessionFailure> {
        let mut auth = self.auth.lock().await;
        let fresh_login = auth.is_none();
        let id = match auth.as_ref() {
            Some(id) => id.clone(),
            None => self
                .login_into(&mut auth)
                .await
                .map_err(SessionFailure::login)?,
        };
        match self
            .client
            .call(method.clone(), path, &id, body.clone())
            .await
        {
            Err(error) if is_session_rejection(&error) => {
                *auth = None;
                if fresh_login {
                    return Err(SessionFailure::call(as_session_rejected(error)));
                }
                tracing::debug!(origin = %self.client.settings.endpoint.origin, "session id rejected, logging in again");
                let id = self
                    .login_into(&mut auth)
                    .await
                    .map_err(SessionFailure::login)?;
                self.client
                    .call(method, path, &id, body)
                    .await
                    .map_err(|error| {
                        SessionFailure::call(if is_session_rejection(&error) {
                            as_session_rejected(error)
                        } else {
                            error
                        })
                    })
            }
            other => other.map_err(SessionFailure::call),
        }
    }

    async fn login_into(&self, slot: &mut Option<AuthId>) -> Result<AuthId, SklmError> {
        self.logins
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let id = self.client.login(&self.credentials).await?;
        *slot = Some(id.clone());
        Ok(id)
    }
}

fn is_session_rejection(error: &SklmError) -> bool {
    match error {
        SklmError::Http {
            status, message_id, ..
        } => {
            *status == 401
                || message_id
                    .as_deref()
                    .is_some_and(|id| SESSION_REJECTED_IDS.contains(&id))
        }
        _ => false,
    }
}

fn as_session_rejected(error: SklmError) -> SklmError {
    match error {
        SklmError::Http {
            status, message_id, ..
        } => SklmError::SessionRejected { status, message_id },
        other => other,
    }
}

fn http_error(reply: &Reply) -> SklmError {
    let (message_id, text) = response::parse_error_body(&reply.body);
    SklmError::Http {
        status: reply.status.as_u16(),
        path: reply.path.clone(),
        message_id,
        text,
    }
}

fn invalid_response(path: &'static str, error: &response::ParseError) -> SklmError {
    SklmError::InvalidResponse {
        path,
        detail: error.to_string(),
    }
}

/// The path part of a request URL: the API prefix and the service path.
fn url_path(endpoint: &Endpoint, path: &str) -> String {
    let prefix = endpoint
        .base
        .strip_prefix(&endpoint.origin)
        .unwrap_or_default();
    format!("{prefix}{path}")
}

/// The scheme, host and port of a redirect target: enough to say where it pointed
/// without repeating a path or query that might carry data.
fn redirect_origin(location: &str) -> String {
    match Url::parse(location) {
        Ok(url) => format!(
            "{}://{}{}",
            url.scheme(),
            url.host_str().unwrap_or(""),
            url.port().map(|p| format!(":{p}")).unwrap_or_default()
        ),
        Err(_) => "a relative location".to_owned(),
    }
}

/// The rustls error in `error`, also inside (nested) `io::Error`s: `io::Error::source`
/// skips the wrapped error itself.
fn as_tls_error<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut current = error;
    for _ in 0..8 {
        if let Some(tls_error) = current.downcast_ref::<rustls::Error>() {
            return Some(tls_error);
        }
        let inner = current.downcast_ref::<std::io::Error>()?.get_ref()?;
        current = inner;
    }
    None
}

fn innermost_message(error: &(dyn std::error::Error + 'static)) -> String {
    let mut current = error;
    while let Some(source) = current.source() {
        current = source;
    }
    response::truncate(&current.to_string(), 200)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_accepts_host_and_port() {
        let endpoint =
            Endpoint::parse("https://gklm.keys.svc:9443", "/SKLM/rest/v1").expect("valid");
        assert_eq!(endpoint.origin, "https://gklm.keys.svc:9443");
        assert_eq!(endpoint.base, "https://gklm.keys.svc:9443/SKLM/rest/v1");
    }

    #[test]
    fn endpoint_defaults_port_443() {
        let endpoint = Endpoint::parse("https://10.0.0.1/", "/GKLM/rest/v1").expect("valid");
        assert_eq!(endpoint.origin, "https://10.0.0.1:443");
    }

    #[test]
    fn endpoint_keeps_ipv6_brackets() {
        let endpoint = Endpoint::parse("https://[::1]:9443", "/SKLM/rest/v1").expect("valid");
        assert_eq!(endpoint.origin, "https://[::1]:9443");
    }

    #[test]
    fn endpoint_rejects_bad_urls() {
        for url in [
            "http://gklm:9443",
            "https://gklm:9443/SKLM",
            "https://user:pw@gklm:9443",
            "https://gklm:9443?x=1",
            "gklm:9443",
            "https://:9443",
        ] {
            let error = Endpoint::parse(url, "/SKLM/rest/v1").expect_err(url);
            assert!(matches!(error, SklmError::InvalidUrl { .. }), "{url}");
        }
    }

    #[test]
    fn endpoint_rejects_bad_prefix() {
        for prefix in ["SKLM/rest/v1", "/SKLM/rest/v1/", "/a/../b"] {
            assert!(
                Endpoint::parse("https://gklm:9443", prefix).is_err(),
                "{prefix}"
            );
        }
    }

    #[test]
    fn credentials_debug_hides_password() {
        let credentials = Credentials {
            user: "admin".to_owned(),
            password: "s3cret".to_owned(),
        };
        let printed = format!("{credentials:?}");
        assert!(printed.contains("admin"));
        assert!(!printed.contains("s3cret"));
        assert!(!format!("{:?}", AuthId("id-123".to_owned())).contains("id-123"));
    }

    #[test]
    fn session_rejection_ids() {
        let rejected = |status, id: Option<&str>| SklmError::Http {
            status,
            path: "/SKLM/rest/v1/ckms/restore/isrunning".to_owned(),
            message_id: id.map(str::to_owned),
            text: String::new(),
        };
        assert!(is_session_rejection(&rejected(401, None)));
        assert!(is_session_rejection(&rejected(400, Some("CTGKM6002E"))));
        assert!(is_session_rejection(&rejected(500, Some("CTGKM6004E"))));
        assert!(!is_session_rejection(&rejected(400, Some("CTGKM0630E"))));
        assert!(!is_session_rejection(&rejected(503, None)));
    }

    #[test]
    fn redirect_origin_drops_path_and_query() {
        assert_eq!(
            redirect_origin("http://evil.test:8080/x?token=1"),
            "http://evil.test:8080"
        );
        assert_eq!(redirect_origin("/elsewhere"), "a relative location");
    }
}

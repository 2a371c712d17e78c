//! Typed async client of the control endpoint, for tests that drive a simulator.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::control_types::{
    Backup, ClearedResponse, ControlErrorBody, LoginKeyUpdate, PhaseUpdate, RestartRequest,
    ResultUpdate, RevokeResponse, RunRequest, RunSettings, RunStatus, SessionSettingsUpdate,
    ShapeUpdate, StateView, UserUpdate,
};
use crate::faults::Fault;
use crate::model::{IsRunningShape, Phase, RestoreResult, ResultShape};
use crate::request_log::RequestRecord;
use crate::tls::{self, TlsError};

/// Timeout of one control request. A restart request waits for the port to close, which
/// takes at most a few seconds.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// Pause between state polls in `wait_for_state`.
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// Failure of a control request.
#[derive(Debug, thiserror::Error)]
pub enum ControlClientError {
    #[error("failed to build the control HTTP client")]
    Build(#[source] reqwest::Error),
    #[error("failed to build the TLS configuration of the control HTTP client")]
    Tls(#[from] TlsError),
    #[error("control request {method} {url} failed")]
    Request {
        method: Method,
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("control request {method} {url} returned {status}: {message}")]
    Status {
        method: Method,
        url: String,
        status: StatusCode,
        message: String,
    },
    #[error("simulator state did not reach the expected condition within {0:?}")]
    WaitTimedOut(Duration),
}

/// Client of one simulator's control endpoint.
#[derive(Clone, Debug)]
pub struct ControlClient {
    base_url: String,
    http: reqwest::Client,
}

impl ControlClient {
    /// Creates a client for `base_url`, such as `http://127.0.0.1:40123`.
    pub fn new(base_url: &str) -> Result<ControlClient, ControlClientError> {
        // reqwest built with `rustls-no-provider` needs a ready rustls configuration; the
        // control endpoint is plain HTTP, so it trusts no CA.
        let tls_config = tls::client_config(None)?;
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls_config)
            .no_proxy()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(ControlClientError::Build)?;
        Ok(ControlClient {
            base_url: base_url.trim_end_matches('/').to_owned(),
            http,
        })
    }

    #[must_use]
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    pub async fn state(&self) -> Result<StateView, ControlClientError> {
        self.call(Method::GET, "/state", None::<&()>).await
    }

    pub async fn set_phase(&self, phase: Phase) -> Result<StateView, ControlClientError> {
        let body = PhaseUpdate {
            phase: phase.into(),
        };
        self.call(Method::PUT, "/phase", Some(&body)).await
    }

    pub async fn set_result(&self, result: RestoreResult) -> Result<StateView, ControlClientError> {
        self.call(Method::PUT, "/result", Some(&ResultUpdate { result }))
            .await
    }

    /// Sets the body shape of `GET /ckms/restore/isrunning`.
    pub async fn set_shape(&self, shape: IsRunningShape) -> Result<StateView, ControlClientError> {
        let update = ShapeUpdate {
            isrunning: Some(shape),
            ..ShapeUpdate::default()
        };
        self.update_shapes(&update).await
    }

    /// Sets the body shape of `GET /ckms/restore/result`.
    pub async fn set_result_shape(
        &self,
        shape: ResultShape,
    ) -> Result<StateView, ControlClientError> {
        let update = ShapeUpdate {
            result: Some(shape),
            ..ShapeUpdate::default()
        };
        self.update_shapes(&update).await
    }

    /// Adds or removes the unknown `messageId` and `details` keys in status bodies.
    pub async fn set_extra_keys(&self, extra_keys: bool) -> Result<StateView, ControlClientError> {
        let update = ShapeUpdate {
            extra_keys: Some(extra_keys),
            ..ShapeUpdate::default()
        };
        self.update_shapes(&update).await
    }

    pub async fn update_shapes(
        &self,
        update: &ShapeUpdate,
    ) -> Result<StateView, ControlClientError> {
        self.call(Method::PUT, "/shape", Some(update)).await
    }

    /// Sets the key of the auth id in the login body (`UserAuthId` by default).
    pub async fn set_login_key(&self, key: &str) -> Result<StateView, ControlClientError> {
        let body = LoginKeyUpdate {
            key: key.to_owned(),
        };
        self.call(Method::PUT, "/login-key", Some(&body)).await
    }

    /// Creates `user` or changes its password; sessions already issued stay valid.
    pub async fn set_password(
        &self,
        user: &str,
        password: &str,
    ) -> Result<StateView, ControlClientError> {
        let body = UserUpdate {
            password: password.to_owned(),
        };
        let path = user_path(user);
        self.call(Method::PUT, &path, Some(&body)).await
    }

    pub async fn remove_user(&self, user: &str) -> Result<StateView, ControlClientError> {
        let path = user_path(user);
        self.call(Method::DELETE, &path, None::<&()>).await
    }

    pub async fn update_sessions(
        &self,
        update: &SessionSettingsUpdate,
    ) -> Result<StateView, ControlClientError> {
        self.call(Method::PUT, "/sessions", Some(update)).await
    }

    /// Ends every session now and returns how many were active.
    pub async fn revoke_sessions(&self) -> Result<usize, ControlClientError> {
        let response: RevokeResponse = self
            .call(Method::POST, "/sessions/revoke", None::<&()>)
            .await?;
        Ok(response.revoked)
    }

    /// Closes the HTTPS port for `seconds` and ends every session, keeping phase and
    /// result. Returns once the port is closed.
    pub async fn restart(&self, seconds: u64) -> Result<StateView, ControlClientError> {
        let request = RestartRequest {
            seconds,
            ..RestartRequest::default()
        };
        self.restart_with(&request).await
    }

    pub async fn restart_with(
        &self,
        request: &RestartRequest,
    ) -> Result<StateView, ControlClientError> {
        self.call(Method::POST, "/restart", Some(request)).await
    }

    /// Starts a restore run; absent fields of `request` take the run defaults. Fails with
    /// status 409 while another run is in progress.
    pub async fn run_restore(&self, request: &RunRequest) -> Result<RunStatus, ControlClientError> {
        self.call(Method::POST, "/run", Some(request)).await
    }

    /// Sets the settings of runs started by `POST /ckms/restore` or the automatic timer.
    pub async fn set_run_defaults(
        &self,
        settings: &RunSettings,
    ) -> Result<StateView, ControlClientError> {
        self.call(Method::PUT, "/run-defaults", Some(settings))
            .await
    }

    /// Adds a fault to the active ones.
    pub async fn set_fault(&self, fault: &Fault) -> Result<StateView, ControlClientError> {
        self.call(Method::POST, "/faults", Some(fault)).await
    }

    /// Replaces every active fault.
    pub async fn set_faults(&self, faults: &[Fault]) -> Result<StateView, ControlClientError> {
        self.call(Method::PUT, "/faults", Some(&faults)).await
    }

    pub async fn faults(&self) -> Result<Vec<Fault>, ControlClientError> {
        self.call(Method::GET, "/faults", None::<&()>).await
    }

    pub async fn clear_faults(&self) -> Result<StateView, ControlClientError> {
        self.call(Method::DELETE, "/faults", None::<&()>).await
    }

    /// Replaces the backup files that `POST /ckms/restore` accepts.
    pub async fn set_backups(&self, backups: &[Backup]) -> Result<StateView, ControlClientError> {
        self.call(Method::PUT, "/backups", Some(&backups)).await
    }

    pub async fn requests(&self) -> Result<Vec<RequestRecord>, ControlClientError> {
        self.call(Method::GET, "/requests", None::<&()>).await
    }

    /// Empties the request log and returns how many records it had.
    pub async fn clear_requests(&self) -> Result<usize, ControlClientError> {
        let response: ClearedResponse = self.call(Method::DELETE, "/requests", None::<&()>).await?;
        Ok(response.cleared)
    }

    /// Counts logged login requests (`POST .../ckms/login`), accepted or not.
    pub async fn login_count(&self) -> Result<usize, ControlClientError> {
        self.count("POST", "/ckms/login").await
    }

    /// Counts logged requests with `method` whose path ends with `path_suffix`.
    pub async fn count(
        &self,
        method: &str,
        path_suffix: &str,
    ) -> Result<usize, ControlClientError> {
        let records = self.requests().await?;
        let matching = records
            .iter()
            .filter(|record| record.method.eq_ignore_ascii_case(method))
            .filter(|record| record.path.ends_with(path_suffix))
            .count();
        Ok(matching)
    }

    /// Polls the state every 20 ms until `condition` is true or `timeout` passes, and
    /// returns the first state that satisfied it.
    pub async fn wait_for_state(
        &self,
        timeout: Duration,
        condition: impl Fn(&StateView) -> bool,
    ) -> Result<StateView, ControlClientError> {
        let deadline = Instant::now() + timeout;
        loop {
            let state = self.state().await?;
            if condition(&state) {
                return Ok(state);
            }
            if Instant::now() >= deadline {
                return Err(ControlClientError::WaitTimedOut(timeout));
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    async fn call<B, T>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, ControlClientError>
    where
        B: Serialize + ?Sized,
        T: DeserializeOwned,
    {
        let url = format!("{}{path}", self.base_url);
        let request_error = |source| ControlClientError::Request {
            method: method.clone(),
            url: url.clone(),
            source,
        };
        let mut request = self.http.request(method.clone(), &url);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(request_error)?;
        let status = response.status();
        if !status.is_success() {
            let text = response.text().await.unwrap_or_default();
            let message =
                serde_json::from_str::<ControlErrorBody>(&text).map_or(text, |body| body.error);
            return Err(ControlClientError::Status {
                method,
                url,
                status,
                message,
            });
        }
        response.json::<T>().await.map_err(request_error)
    }
}

/// Builds `/users/<name>` with the name percent-encoded as one path segment.
fn user_path(user: &str) -> String {
    let mut path = String::from("/users/");
    for byte in user.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            path.push(char::from(byte));
        } else {
            // Writing to a String cannot fail.
            let _ = write!(path, "%{byte:02X}");
        }
    }
    path
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_path_encodes_name() {
        assert_eq!(user_path("admin"), "/users/admin");
        assert_eq!(user_path("ops team/1"), "/users/ops%20team%2F1");
    }
}

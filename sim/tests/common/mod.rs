//! Helpers shared by the simulator's integration tests: an in-process simulator, a
//! REST client that trusts its CA, and a login call.

#![allow(dead_code)]

use std::time::Duration;

use reqwest::{Client, Response, StatusCode};
use serde_json::{Value, json};
use sklm_sim::ControlClient;
use sklm_sim::server::{self, RunningServer, ServerOptions};
use sklm_sim::tls;

pub const PREFIX: &str = "/SKLM/rest/v1";

/// An in-process simulator with a REST client and a control client.
pub struct TestSim {
    pub server: RunningServer,
    pub api: Client,
    pub control: ControlClient,
}

impl TestSim {
    pub async fn start() -> TestSim {
        TestSim::start_with(ServerOptions::default()).await
    }

    pub async fn start_with(options: ServerOptions) -> TestSim {
        let server = server::start(options).await.expect("simulator starts");
        let ca_pem = server.ca_pem.clone().expect("generated CA");
        let api = api_client(&ca_pem, Duration::from_secs(10));
        let control =
            ControlClient::new(&format!("http://{}", server.control_addr)).expect("control client");
        TestSim {
            server,
            api,
            control,
        }
    }

    /// Returns the URL of `service` (such as `/ckms/login`) under the SKLM prefix.
    pub fn url(&self, service: &str) -> String {
        format!("https://{}{PREFIX}{service}", self.server.api_addr)
    }

    pub fn ca_pem(&self) -> &str {
        self.server.ca_pem.as_deref().expect("generated CA")
    }

    /// Logs in as `admin` and returns the auth id.
    pub async fn login(&self) -> String {
        let response = self.post_login("admin", "passw0rd").await;
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await.expect("JSON login body");
        body["UserAuthId"]
            .as_str()
            .expect("UserAuthId in login body")
            .to_owned()
    }

    pub async fn post_login(&self, userid: &str, password: &str) -> Response {
        self.api
            .post(self.url("/ckms/login"))
            .json(&json!({"userid": userid, "password": password}))
            .send()
            .await
            .expect("login request sent")
    }

    pub async fn get(&self, service: &str, auth_id: &str) -> Response {
        self.api
            .get(self.url(service))
            .header("Authorization", format!("SKLMAuth userAuthId={auth_id}"))
            .header("Accept-Language", "en")
            .send()
            .await
            .expect("request sent")
    }

    pub async fn get_json(&self, service: &str, auth_id: &str) -> (StatusCode, Value) {
        let response = self.get(service, auth_id).await;
        let status = response.status();
        let body = response.json().await.expect("JSON body");
        (status, body)
    }
}

/// Builds a REST client that trusts only `ca_pem`, follows no redirects, and gives up
/// after `timeout`.
pub fn api_client(ca_pem: &str, timeout: Duration) -> Client {
    let config = tls::client_config(Some(ca_pem)).expect("client TLS config");
    Client::builder()
        .tls_backend_preconfigured(config)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(timeout)
        .build()
        .expect("REST client")
}

/// Builds a plain-HTTP client for raw control requests.
pub fn plain_client() -> Client {
    let config = tls::client_config(None).expect("client TLS config");
    Client::builder()
        .tls_backend_preconfigured(config)
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("plain client")
}

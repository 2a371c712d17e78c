//! The operator's HTTP endpoints: `/metrics` (Prometheus text), `/healthz` and `/readyz`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use kube::runtime::reflector::Store;
use tokio::sync::watch;

use crate::crd::SklmRestore;
use crate::metrics::Metrics;

#[derive(Clone)]
struct AppState {
    metrics: Arc<Metrics>,
    store: watch::Receiver<Option<Store<SklmRestore>>>,
}

/// Serves the endpoints until `shutdown` resolves. `/readyz` answers 200 once the
/// controller has its object cache.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    store: watch::Receiver<Option<Store<SklmRestore>>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/metrics", get(metrics_text))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .with_state(AppState { metrics, store });
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

/// Binds the listener, so a taken port fails the start with a clear error.
pub async fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await
}

async fn metrics_text(State(state): State<AppState>) -> impl IntoResponse {
    let objects = state
        .store
        .borrow()
        .as_ref()
        .map(Store::state)
        .unwrap_or_default();
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(&objects),
    )
}

/// Ready once the controller's object cache is filled; a replica waiting for the leader
/// lease is ready too, so rolling updates can proceed.
async fn ready(State(state): State<AppState>) -> impl IntoResponse {
    let store = state.store.borrow().clone();
    let Some(store) = store else {
        return (StatusCode::OK, "standby");
    };
    let filled = tokio::time::timeout(Duration::from_secs(1), store.wait_until_ready()).await;
    match filled {
        Ok(Ok(())) => (StatusCode::OK, "ready"),
        _ => (
            StatusCode::SERVICE_UNAVAILABLE,
            "object cache not filled yet",
        ),
    }
}

//! The operator's HTTP endpoints: `/metrics` (Prometheus text), `/healthz` and `/readyz`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::sync::watch;

use crate::controller::ObjectCaches;
use crate::metrics::Metrics;

#[derive(Clone)]
struct AppState {
    metrics: Arc<Metrics>,
    caches: watch::Receiver<Option<ObjectCaches>>,
}

/// Serves the endpoints until `shutdown` resolves. `/readyz` answers 200 once the
/// controllers have filled their object caches.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    caches: watch::Receiver<Option<ObjectCaches>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/metrics", get(metrics_text))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .with_state(AppState { metrics, caches });
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
        .caches
        .borrow()
        .as_ref()
        .map(ObjectCaches::objects)
        .unwrap_or_default();
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(&objects),
    )
}

/// Ready once the object cache of every watched namespace is filled; a replica waiting for
/// the leader lease is ready too, so rolling updates can proceed.
async fn ready(State(state): State<AppState>) -> impl IntoResponse {
    let caches = state.caches.borrow().clone();
    let Some(caches) = caches else {
        return (StatusCode::OK, "standby");
    };
    let filled = tokio::time::timeout(Duration::from_secs(1), caches.wait_until_ready()).await;
    match filled {
        Ok(Ok(())) => (StatusCode::OK, "ready"),
        _ => (
            StatusCode::SERVICE_UNAVAILABLE,
            "object cache not filled yet",
        ),
    }
}

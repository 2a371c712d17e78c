//! Router of the simulated SKLM/GKLM REST API, served over HTTPS by `listener`.
//!
//! Every service is mounted under each configured product prefix; other paths get a 404
//! HTML page, and a known path with the wrong method gets 405 with an empty body.

mod error;
mod handlers;
mod middleware;

use axum::Router;
use axum::routing::{delete, get, post};

pub use middleware::AbortConnection;

use crate::sim::Sim;

/// Builds the REST API router for `sim`, with logging and faults on every request.
pub fn router(sim: &Sim) -> Router {
    let services = Router::new()
        .route("/ckms/login", post(handlers::login))
        .route("/ckms/restore/isrunning", get(handlers::is_running))
        .route("/ckms/restore/result", get(handlers::result))
        .route("/ckms/backupRestore/progress", get(handlers::progress))
        .route("/ckms/restore/progress", get(handlers::progress))
        .route("/ckms/restore", post(handlers::run_restore))
        .route("/ckms/logout", delete(handlers::logout));

    let mut router = Router::new();
    for prefix in sim.prefixes() {
        router = router.nest(prefix, services.clone());
    }
    router
        .fallback(handlers::not_found)
        .layer(axum::middleware::from_fn_with_state(
            sim.clone(),
            middleware::observe,
        ))
        .with_state(sim.clone())
}

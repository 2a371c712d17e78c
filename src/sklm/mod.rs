//! Client for the key server's REST API: HTTPS calls, response parsing, and the shared
//! per-server pollers that all `SklmRestore` objects read from.

mod client;
mod error;
pub mod hub;
pub mod response;
pub mod tls;

pub use client::{ClientSettings, Credentials, Endpoint, Session, SessionFailure, SklmClient};
pub use error::SklmError;
pub use response::{RestoreObservation, RestoreResult};

//! Simulator of the IBM SKLM/GKLM REST API for backup restores, used by the operator's
//! tests and demo in place of a real key server.
//!
//! The binary `sklm-sim` serves the REST API over HTTPS and a plain-HTTP control endpoint
//! (see `control` for the routes). Tests start it with [`SimProcess`] and drive it with
//! [`ControlClient`]; [`server::start`] runs the same server inside the test process.

pub mod api;
pub mod bodies;
pub mod cli;
pub mod client;
pub mod control;
pub mod control_types;
pub mod faults;
pub mod listener;
pub mod model;
pub mod process;
pub mod request_log;
pub mod run;
pub mod server;
pub mod sessions;
pub mod sim;
pub mod state;
pub mod tls;

pub use client::{ControlClient, ControlClientError};
pub use control_types::{
    Backup, RestartRequest, RunRequest, RunSettings, RunStage, RunStatus, RunTrigger,
    SessionSettingsUpdate, ShapeUpdate, StateView,
};
pub use faults::{ErrorFormat, Fault, FaultAction};
pub use model::{Endpoint, IsRunningShape, Outcome, Phase, RestoreResult, ResultShape};
pub use process::{SimProcess, SimProcessError};
pub use request_log::RequestRecord;

//! sklm-restore-operator: a Kubernetes operator that reports the restore state of IBM
//! SKLM / GKLM key servers on `SklmRestore` objects. The binary in `main.rs` wires these
//! modules; integration tests use the types directly.

pub mod controller;
pub mod crd;
pub mod http;
pub mod metrics;
pub mod names;
pub mod probe;
pub mod runner;
pub mod sklm;
pub mod telemetry;

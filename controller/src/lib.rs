//! katib-controller: the experiment core and the runtimes that carry out its decisions.
//!
//! - [`core`]: Katib's experiment and trial semantics as pure functions (no I/O).
//! - [`local`]: the local runtime: trials as processes on this machine, metrics through
//!   db-manager, assignments from a suggestion service, all over gRPC on loopback.

pub mod core;
pub mod local;

//! The local runtime: an Experiment run on this machine.
//!
//! Trials run as local process groups (the primary container's `command`/`args`/`env`;
//! the image is ignored), their output is captured per trial in the run directory and
//! parsed by the metrics collector, which streams observations to db-manager over gRPC.
//! Assignments come from a suggestion service over gRPC (built-in, or external by
//! address). What to do next is always decided by [`crate::core`].

pub mod collect;
pub mod process;
pub mod render;
pub mod runner;

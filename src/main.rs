//! `katib`: the katib-rs command line. Each subcommand's flags and logic live in its
//! crate (or in `run.rs` for the in-process composition); this file only dispatches.

mod cli;
mod launch;
mod progress;
mod record;
mod run;
mod ui;

// mimalloc rather than glibc's malloc: `katib run` moves many small, short-lived buffers
// between threads (gRPC frames, trial snapshots, rows), where it cut the run's CPU time
// by about 8% (benches/local_trials.rs).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    cli::main()
}

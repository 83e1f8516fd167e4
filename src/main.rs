//! `katib`: the katib-rs command line. Each subcommand's flags and logic live in its
//! crate (or in `run.rs` for the in-process composition); this file only dispatches.

// Output that never panics: `println!` and friends panic when the other end of a pipe is
// gone (`katib run ... | head`), which killed the run halfway or, from a task, left it
// waiting forever. A reader that went away gets no more output; the run goes on.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stdout().lock(), $($arg)*);
    }};
}
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}
macro_rules! err {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stderr().lock(), $($arg)*);
    }};
}
macro_rules! errln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr().lock(), $($arg)*);
    }};
}

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

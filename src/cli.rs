//! Argument parsing, logging set-up and dispatch.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Exit code for invalid input (bad file, bad flags, rejected settings).
pub const EXIT_INVALID: u8 = 2;

#[derive(Debug, Parser)]
#[command(
    name = "katib",
    version,
    about = "katib-rs: Katib-compatible hyperparameter tuning, on one machine or on Kubernetes",
    long_about = "katib-rs runs Kubeflow Katib v1beta1 Experiments. `katib run` runs one on this machine \
                  (trials as local processes, metrics in SQLite); the other subcommands run the services \
                  on their own, speaking Katib's gRPC API."
)]
pub struct Cli {
    /// Log filter (tracing EnvFilter syntax, e.g. `info`, `katib_controller=debug`).
    #[arg(long, global = true, env = "KATIB_LOG", default_value = "warn")]
    pub log_level: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run an Experiment on this machine: trials as local processes, metrics in SQLite.
    Run(crate::run::RunArgs),
    /// Serve the web UI (experiments, trials, plots; start experiments from YAML).
    Ui(crate::ui::UiArgs),
    /// Apply Katib's defaults and validation to Experiment files; print problems with file:line.
    Validate(ValidateArgs),
    /// Serve Katib's DBManager gRPC API over a database.
    DbManager(katib_db_manager::Args),
    /// Serve Katib's Suggestion gRPC API with every built-in algorithm.
    Suggestion(katib_suggestion::Args),
    /// Run the Kubernetes controller: Experiments, Trials and Suggestions in the cluster
    /// of the current kubeconfig (or the in-cluster service account).
    Controller(Box<katib_operator::Args>),
    /// Print the Experiment, Trial and Suggestion CRDs as YAML (`katib crds | kubectl apply -f -`).
    Crds,
}

#[derive(Debug, clap::Args)]
pub struct ValidateArgs {
    /// Experiment YAML files.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Print the defaulted Experiment as JSON when valid.
    #[arg(long)]
    pub json: bool,
}

fn init_logging(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    // Colours only for a terminal: in a file or a CI log the escape codes are noise.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        // Its default reports a failed write with `eprintln!`, which panics when stderr is
        // a closed pipe: in a task that killed the task (the store's worker among them).
        .log_internal_errors(false)
        .try_init();
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli.log_level);
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            errln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = rt.block_on(async move {
        match cli.command {
            // On a worker of the runtime, not this thread: the run's loop wakes for every
            // trial event, and a wake-up of the thread that blocks on the runtime is a
            // futex hand-off on every one of them.
            Command::Run(args) => match tokio::spawn(crate::run::run(args)).await {
                Ok(code) => code,
                Err(e) => std::panic::resume_unwind(e.into_panic()),
            },
            Command::Ui(args) => crate::ui::run(args).await,
            Command::Validate(args) => validate(args),
            Command::DbManager(args) => service_exit(katib_db_manager::run(args, shutdown_signal()).await),
            Command::Suggestion(args) => service_exit(katib_suggestion::run(args, shutdown_signal()).await),
            Command::Controller(args) => service_exit(katib_operator::run(*args, shutdown_signal()).await),
            Command::Crds => match katib_operator::crds::yaml() {
                Ok(y) => {
                    out!("{y}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    errln!("error: cannot render the CRDs: {e}");
                    ExitCode::FAILURE
                }
            },
        }
    });
    // Every command has finished its work (stores closed, files written, output flushed
    // line by line): what is still on the runtime is idle (servers' accept loops, health
    // watchers, parked workers). Waiting for each thread to wind down and hand its memory
    // back added milliseconds to every `katib run`; the process exit reclaims it all.
    rt.shutdown_background();
    code
}

fn service_exit<E: std::error::Error>(r: Result<(), E>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            errln!("error: {}", crate::run::chain(&e));
            ExitCode::FAILURE
        }
    }
}

fn validate(args: ValidateArgs) -> ExitCode {
    let mut ok = true;
    for file in &args.files {
        match katib_api::validate::load_and_validate(file) {
            Ok(exp) => {
                if args.json {
                    outln!("{}", serde_json::to_string_pretty(&exp).unwrap_or_default());
                } else {
                    outln!("{}: valid", file.display());
                }
            }
            Err(e) => {
                ok = false;
                errln!("{e}");
            }
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_INVALID)
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

//! `katib run`: one Experiment on this machine. db-manager and the suggestion service run
//! in-process on loopback ports and are reached over gRPC, exactly as on a cluster. The
//! EarlyStopping service runs next to Suggestion; its `SetTrialStatus` is wired to the local
//! runtime ([`LocalTrialStatus`]), which owns trial status here.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use katib_api::conditions::experiment as ec;
use katib_controller::local::runner::{EarlyStopMark, LocalConfig, MarkOutcome, RunError, run_experiment};
use katib_suggestion::EarlyStoppingService;
use katib_suggestion::earlystopping::{TrialStatusError, TrialStatusSink};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

use crate::cli::EXIT_INVALID;
use crate::progress::Progress;

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The Experiment YAML file (Katib v1beta1).
    pub file: PathBuf,
    /// Print the final Experiment (spec and status, Katib's shape) as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Directory for the embedded database and per-run trial logs.
    #[arg(long, env = "KATIB_STATE_DIR", default_value = ".katib")]
    pub state_dir: PathBuf,
    /// Database URL for the in-process db-manager [default: sqlite://<state-dir>/katib.db].
    #[arg(long, env = "KATIB_DB_URL")]
    pub db: Option<String>,
    /// Use an external db-manager (HOST:PORT) instead of the in-process one.
    #[arg(long, env = "KATIB_DB_MANAGER_ADDRESS")]
    pub db_manager: Option<String>,
    /// Use an external suggestion service for an algorithm (repeatable).
    #[arg(
        long = "suggestion-endpoint",
        value_name = "ALGORITHM=HOST:PORT",
        env = "KATIB_SUGGESTION_ENDPOINTS",
        value_delimiter = ','
    )]
    pub suggestion_endpoints: Vec<String>,
    /// Use an external EarlyStopping service (HOST:PORT) for spec.earlyStopping instead of
    /// the in-process one. Trials still enforce its rules locally and are marked here.
    #[arg(
        long = "early-stopping-endpoint",
        value_name = "HOST:PORT",
        env = "KATIB_EARLY_STOPPING_ENDPOINT"
    )]
    pub early_stopping_endpoint: Option<String>,
    /// Working directory of trial commands [default: the experiment file's directory].
    #[arg(long, env = "KATIB_WORK_DIR")]
    pub work_dir: Option<PathBuf>,
    /// Deadline in seconds for one GetSuggestions call (Katib hard-codes 60).
    #[arg(long, env = "KATIB_SUGGESTION_TIMEOUT", default_value_t = 60)]
    pub suggestion_timeout: u64,
    /// Seed for trial names (reproducible runs in tests).
    #[arg(long, env = "KATIB_SEED")]
    pub seed: Option<u64>,
    /// No progress output (errors and the final summary only).
    #[arg(long, short)]
    pub quiet: bool,
}

/// Formats an error with its source chain on one line.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}

fn invalid(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {msg}");
    ExitCode::from(EXIT_INVALID)
}

fn parse_endpoints(list: &[String]) -> Result<Vec<(String, String)>, String> {
    list.iter()
        .map(|e| {
            e.split_once('=')
                .filter(|(a, h)| !a.is_empty() && h.contains(':'))
                .map(|(a, h)| (a.trim().to_string(), h.trim().to_string()))
                .ok_or_else(|| {
                    format!("--suggestion-endpoint \"{e}\" must look like ALGORITHM=HOST:PORT, e.g. random=127.0.0.1:6790")
                })
        })
        .collect()
}

pub async fn run(args: RunArgs) -> ExitCode {
    let RunArgs {
        file,
        json,
        state_dir,
        db,
        db_manager,
        suggestion_endpoints,
        early_stopping_endpoint,
        work_dir,
        suggestion_timeout,
        seed,
        quiet,
    } = args;
    let started = Instant::now();
    let exp = match katib_api::validate::load_and_validate(&file) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(EXIT_INVALID);
        }
    };
    let endpoints = match parse_endpoints(&suggestion_endpoints) {
        Ok(e) => e,
        Err(m) => return invalid(m),
    };
    if let Some(e) = &early_stopping_endpoint
        && !e.contains(':')
    {
        return invalid(format!(
            "--early-stopping-endpoint \"{e}\" must look like HOST:PORT, e.g. 127.0.0.1:6788"
        ));
    }
    let exp_name = exp.metadata.name.clone().unwrap_or_default();
    let algorithm = exp
        .spec
        .algorithm
        .as_ref()
        .map(|a| a.algorithm_name.clone())
        .unwrap_or_default();

    if let Err(e) = std::fs::create_dir_all(&state_dir) {
        return invalid(format!(
            "cannot create the state directory {}: {e} (pass --state-dir <writable dir>)",
            state_dir.display()
        ));
    }
    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|v| *v).await;
    };

    // db-manager: external, or in-process over the embedded database.
    let db_addr = match db_manager {
        Some(addr) => addr,
        None => {
            let url = db.unwrap_or_else(|| format!("sqlite://{}", state_dir.join("katib.db").display()));
            let store = match katib_db_manager::open_store(&url).await {
                Ok(s) => s,
                Err(e) => return invalid(chain(&e)),
            };
            let listener = match TcpListener::bind("127.0.0.1:0").await {
                Ok(l) => l,
                Err(e) => {
                    return invalid(format!("cannot bind a loopback port for db-manager: {e}"));
                }
            };
            let addr = listener.local_addr().map(|a| a.to_string()).unwrap_or_default();
            let shutdown = stopped(stop_rx.clone());
            tokio::spawn(async move {
                if let Err(e) = katib_db_manager::serve(listener, store, shutdown).await {
                    tracing::error!(error = %chain(&e), "db-manager stopped");
                }
            });
            addr
        }
    };

    // Suggestion and EarlyStopping: external when given, else served in-process on one
    // loopback port (EarlyStopping wired to this runtime for SetTrialStatus).
    let external_suggestion = endpoints
        .iter()
        .find(|(a, _)| *a == algorithm)
        .map(|(_, addr)| addr.clone());
    let (mark_tx, mark_rx) = tokio::sync::mpsc::unbounded_channel();
    let in_process = if external_suggestion.is_none() || early_stopping_endpoint.is_none() {
        let listener = match TcpListener::bind("127.0.0.1:0").await {
            Ok(l) => l,
            Err(e) => {
                return invalid(format!(
                    "cannot bind a loopback port for the suggestion service: {e}"
                ));
            }
        };
        let addr = listener.local_addr().map(|a| a.to_string()).unwrap_or_default();
        let shutdown = stopped(stop_rx.clone());
        let early_stopping = EarlyStoppingService::with_trial_status(Arc::new(LocalTrialStatus(mark_tx)));
        tokio::spawn(async move {
            let suggestion = katib_suggestion::SuggestionService::default();
            if let Err(e) = katib_suggestion::serve_all(listener, suggestion, early_stopping, shutdown).await
            {
                tracing::error!(error = %chain(&e), "suggestion service stopped");
            }
        });
        Some(addr)
    } else {
        None
    };
    let suggestion_addr = external_suggestion
        .or_else(|| in_process.clone())
        .unwrap_or_default();
    let early_stopping_addr = early_stopping_endpoint.or(in_process);

    let stamp = jiff_stamp();
    let run_dir = state_dir.join("runs").join(format!("{exp_name}-{stamp}"));
    let work_dir = work_dir.unwrap_or_else(|| {
        file.parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("."))
    });
    let cfg = LocalConfig {
        run_dir: run_dir.clone(),
        work_dir,
        db_manager_addr: db_addr,
        suggestion_addr,
        early_stopping_addr,
        suggestion_timeout: Duration::from_secs(suggestion_timeout.max(1)),
        seed,
    };

    let (ev_tx, ev_rx) = mpsc::unbounded_channel();
    let progress = Progress::new(&exp, quiet);
    let display = tokio::spawn(progress.drive(ev_rx));
    let result = run_experiment(exp, cfg, ev_tx, Some(mark_rx), crate::cli::shutdown_signal()).await;
    let progress = display.await.ok();
    let _ = stop_tx.send(true);

    let out = match result {
        Ok(out) => out,
        Err(e @ RunError::InvalidSettings(_)) => {
            return invalid(format!(
                "{}\n  hint: check spec.algorithm.algorithmSettings, or pass --suggestion-endpoint {algorithm}=HOST:PORT \
                 for an algorithm served elsewhere",
                chain(&e)
            ));
        }
        Err(e @ RunError::InvalidEarlyStopping(_)) => {
            return invalid(format!(
                "{}\n  hint: check spec.earlyStopping.algorithmSettings (medianstop: min_trials_required, start_step, \
                 rule; asha: eta, min_resource, max_resource, resource_metric)",
                chain(&e)
            ));
        }
        Err(e) => {
            eprintln!("error: {}", chain(&e));
            return ExitCode::FAILURE;
        }
    };
    if let Some(p) = progress {
        p.summary(&out, started.elapsed(), &run_dir, json);
    }
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&out.experiment).unwrap_or_default()
        );
    }
    let conds = out
        .experiment
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    if out.interrupted {
        ExitCode::from(130)
    } else if katib_api::conditions::is_true(conds, ec::SUCCEEDED) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn jiff_stamp() -> String {
    // Compact UTC stamp for run directory names: 20261123T181502Z.
    let now = katib_api::time::now_rfc3339();
    now.replace(['-', ':'], "")
}

/// The local runtime as the EarlyStopping service's owner of trial status: a
/// `SetTrialStatus` becomes an [`EarlyStopMark`] for the runner, answered once applied.
struct LocalTrialStatus(tokio::sync::mpsc::UnboundedSender<EarlyStopMark>);

#[tonic::async_trait]
impl TrialStatusSink for LocalTrialStatus {
    async fn early_stopped(&self, trial: &str) -> Result<(), TrialStatusError> {
        let (done, outcome) = tokio::sync::oneshot::channel();
        let gone = || TrialStatusError::Unavailable("the local run has ended".into());
        self.0
            .send(EarlyStopMark {
                trial: trial.to_string(),
                done,
            })
            .map_err(|_| gone())?;
        match outcome.await.map_err(|_| gone())? {
            MarkOutcome::Marked | MarkOutcome::AlreadyCompleted => Ok(()),
            MarkOutcome::NotFound => Err(TrialStatusError::NotFound {
                trial: trial.to_string(),
            }),
        }
    }
}

//! `katib run`: one Experiment on this machine. db-manager and the suggestion service run
//! in-process on loopback ports and are reached over gRPC, exactly as on a cluster. The
//! EarlyStopping service runs next to Suggestion; its `SetTrialStatus` is wired to the local
//! runtime ([`LocalTrialStatus`]), which owns trial status here.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use katib_api::conditions::experiment as ec;
use katib_api::crd::Experiment;
use katib_controller::local::runner::{
    EarlyStopMark, Event, LocalConfig, MarkOutcome, RunError, RunOutcome, run_experiment,
};
use katib_db_manager::{ExperimentStore, ObservationStore};
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
    /// Serve the web UI while the experiment runs (and after, until Ctrl-C).
    #[arg(long, env = "KATIB_UI")]
    pub ui: bool,
    /// Address of the web UI with --ui.
    #[arg(long, env = "KATIB_UI_LISTEN", default_value = "127.0.0.1:8080")]
    pub ui_listen: std::net::SocketAddr,
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
    errln!("error: {msg}");
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

/// How one experiment is executed on this machine (shared by `katib run` and experiments
/// started from the web UI).
#[derive(Debug, Clone)]
pub struct ExecOpts {
    pub state_dir: PathBuf,
    /// External db-manager (HOST:PORT); None serves the given observation store in-process.
    pub db_manager: Option<String>,
    pub endpoints: Vec<(String, String)>,
    pub early_stopping_endpoint: Option<String>,
    pub work_dir: PathBuf,
    pub suggestion_timeout: u64,
    pub seed: Option<u64>,
}

/// Why [`execute`] failed: `Invalid` is the user's to fix (exit code 2).
#[derive(Debug)]
pub enum ExecError {
    Invalid(String),
    Failed(String),
}

impl std::fmt::Display for ExecError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExecError::Invalid(m) | ExecError::Failed(m) => f.write_str(m),
        }
    }
}

/// Where snapshots of a run go besides the progress display.
#[derive(Clone)]
pub struct Recording {
    pub store: Arc<dyn ExperimentStore>,
    pub hub: katib_ui::Hub,
    /// Notified once the run's last snapshot is written: the run writes nothing more to
    /// the database after that.
    pub written: Option<Arc<tokio::sync::Notify>>,
}

/// Runs one validated Experiment: serves db-manager (over `observations`) and the
/// suggestion/early-stopping services in-process on loopback unless external ones are
/// given, runs the local runtime, and tees its events to `progress` and to the store.
pub async fn execute(
    exp: Experiment,
    opts: &ExecOpts,
    observations: Option<Arc<dyn ObservationStore>>,
    recording: Option<Recording>,
    progress: Option<mpsc::UnboundedSender<Event>>,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(RunOutcome, PathBuf), ExecError> {
    let exp_name = exp.metadata.name.clone().unwrap_or_default();
    let algorithm = exp
        .spec
        .algorithm
        .as_ref()
        .map(|a| a.algorithm_name.clone())
        .unwrap_or_default();
    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|v| *v).await;
    };
    // Stops the in-process services however this function returns.
    struct StopOnDrop(watch::Sender<bool>);
    impl Drop for StopOnDrop {
        fn drop(&mut self) {
            let _ = self.0.send(true);
        }
    }
    let _stop = StopOnDrop(stop_tx);

    // db-manager: external, or in-process over the store (on a loopback port for trials
    // and services, and on a Unix socket for this process's own calls).
    let mut db_local = None;
    let db_addr = match (&opts.db_manager, observations) {
        (Some(addr), _) => addr.clone(),
        (None, None) => return Err(ExecError::Failed("no db-manager and no database to serve".into())),
        (None, Some(store)) => {
            let listener = TcpListener::bind("127.0.0.1:0").await.map_err(|e| {
                ExecError::Invalid(format!("cannot bind a loopback port for db-manager: {e}"))
            })?;
            let addr = listener.local_addr().map(|a| a.to_string()).unwrap_or_default();
            let shutdown = stopped(stop_rx.clone());
            db_local = serve_db_manager_locally(&store, stopped(stop_rx.clone()));
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
    let external_suggestion = opts
        .endpoints
        .iter()
        .find(|(a, _)| *a == algorithm)
        .map(|(_, addr)| addr.clone());
    let (mark_tx, mark_rx) = tokio::sync::mpsc::unbounded_channel();
    let in_process = if external_suggestion.is_none() || opts.early_stopping_endpoint.is_none() {
        let listener = TcpListener::bind("127.0.0.1:0").await.map_err(|e| {
            ExecError::Invalid(format!(
                "cannot bind a loopback port for the suggestion service: {e}"
            ))
        })?;
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
    let in_process_suggestion = external_suggestion.is_none();
    let suggestion_addr = external_suggestion
        .or_else(|| in_process.clone())
        .unwrap_or_default();
    let early_stopping_addr = opts.early_stopping_endpoint.clone().or(in_process);

    let stamp = jiff_stamp();
    let run_dir = opts.state_dir.join("runs").join(format!("{exp_name}-{stamp}"));
    let cfg = LocalConfig {
        run_dir: run_dir.clone(),
        work_dir: opts.work_dir.clone(),
        db_manager_addr: db_addr,
        db_manager_local: db_local,
        suggestion_addr,
        early_stopping_addr,
        suggestion_timeout: Duration::from_secs(opts.suggestion_timeout.max(1)),
        seed: opts.seed,
        // The built-in service only: what an external one does with the request is its own.
        suggestions_ahead: in_process_suggestion
            && katib_suggestion::random::assignments_ahead_allowed(&katib_api::convert::experiment_to_pb(
                &exp,
                &[],
            )),
    };

    let (ev_tx, ev_rx) = mpsc::unbounded_channel();
    let written = recording.as_ref().and_then(|r| r.written.clone());
    let recorder = recording.map(|r| {
        let dir = std::path::absolute(&run_dir).unwrap_or_else(|_| run_dir.clone());
        katib_ui::record::Recorder::new(r.store, r.hub, Some(dir.display().to_string()))
    });
    let snapshot = Arc::new(exp.clone());
    let tee = tokio::spawn(async move {
        crate::record::tee(ev_rx, progress, recorder, snapshot).await;
        if let Some(written) = written {
            written.notify_one();
        }
    });
    let result = run_experiment(exp, cfg, ev_tx, Some(mark_rx), shutdown).await;
    let _ = tee.await;

    match result {
        Ok(out) => Ok((out, run_dir)),
        Err(e @ RunError::InvalidSettings(_)) => Err(ExecError::Invalid(format!(
            "{}\n  hint: check spec.algorithm.algorithmSettings, or pass --suggestion-endpoint {algorithm}=HOST:PORT \
             for an algorithm served elsewhere",
            chain(&e)
        ))),
        Err(e @ RunError::InvalidEarlyStopping(_)) => Err(ExecError::Invalid(format!(
            "{}\n  hint: check spec.earlyStopping.algorithmSettings (medianstop: min_trials_required, start_step, \
             rule; asha: eta, min_resource, max_resource, resource_metric)",
            chain(&e)
        ))),
        Err(e) => Err(ExecError::Failed(chain(&e))),
    }
}

/// Serves the in-process db-manager also on an abstract Unix socket (Linux; no file to
/// create or clean up), for this process's own calls: measured on 500 one-line trials,
/// TCP's work on each report cost about 2% of the run. `None` (everything over TCP) where
/// there are no abstract sockets or the socket cannot be bound.
fn serve_db_manager_locally(
    store: &Arc<dyn ObservationStore>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Option<String> {
    #[cfg(target_os = "linux")]
    {
        use std::os::linux::net::SocketAddrExt as _;
        let name = format!(
            "katib-rs/{}/db-manager/{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default()
        );
        let bound = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
            .and_then(|addr| std::os::unix::net::UnixListener::bind_addr(&addr))
            .and_then(|l| {
                l.set_nonblocking(true)?;
                tokio::net::UnixListener::from_std(l)
            });
        let listener = match bound {
            Ok(l) => l,
            Err(e) => {
                tracing::debug!(error = %e, "no Unix socket for db-manager; its calls go over TCP");
                return None;
            }
        };
        let store = Arc::clone(store);
        tokio::spawn(async move {
            if let Err(e) = katib_db_manager::serve_unix(listener, store, shutdown).await {
                tracing::error!(error = %chain(&e), "db-manager (Unix socket) stopped");
            }
        });
        Some(name)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (store, shutdown);
        None
    }
}

/// Opens the database of `katib run`/`katib ui`: the observation store (unless an external
/// db-manager is used) and the experiment store.
pub async fn open_stores(
    db: Option<String>,
    state_dir: &std::path::Path,
    external_db_manager: bool,
) -> Result<Stores, String> {
    let default_url = format!("sqlite://{}", state_dir.join("katib.db").display());
    let url = db.unwrap_or_else(|| default_url.clone());
    if external_db_manager {
        // The in-process database only keeps the experiments then.
        let stores = katib_db_manager::experiments::open_experiment_store(&default_url)
            .await
            .map_err(|e| chain(&e))?;
        return Ok((None, Some(stores.0)));
    }
    let (exps, obs) = katib_db_manager::experiments::open_experiment_store(&url)
        .await
        .map_err(|e| chain(&e))?;
    Ok((Some(obs), Some(exps)))
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
        ui,
        ui_listen,
    } = args;
    let started = Instant::now();
    let exp = match katib_api::validate::load_and_validate(&file) {
        Ok(e) => e,
        Err(e) => {
            errln!("{e}");
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
    if let Err(e) = std::fs::create_dir_all(&state_dir) {
        return invalid(format!(
            "cannot create the state directory {}: {e} (pass --state-dir <writable dir>)",
            state_dir.display()
        ));
    }
    let (observations, experiments) = match open_stores(db, &state_dir, db_manager.is_some()).await {
        Ok(s) => s,
        Err(m) => return invalid(m),
    };
    let stores = (observations.clone(), experiments.clone());
    let work_dir = work_dir.unwrap_or_else(|| {
        file.parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("."))
    });
    let opts = ExecOpts {
        state_dir: state_dir.clone(),
        db_manager,
        endpoints,
        early_stopping_endpoint,
        work_dir,
        suggestion_timeout,
        seed: None,
    };
    let hub = katib_ui::Hub::default();
    // Without the web UI nothing uses the database once the run's last snapshot is
    // written, so it is closed then, while the runner writes experiment.json: closing folds
    // the log back into katib.db (fsyncs, deleting the log), milliseconds that overlap with
    // the file's instead of following them.
    let written = Arc::new(tokio::sync::Notify::new());
    let recording = experiments.clone().map(|store| Recording {
        store,
        hub: hub.clone(),
        written: (!ui).then(|| written.clone()),
    });
    let early_close = (!ui).then(|| {
        let (written, stores) = (written.clone(), stores.clone());
        tokio::spawn(async move {
            written.notified().await;
            close_stores(&stores).await;
        })
    });

    // The web UI, when asked for: same process, same stores, live events from this run.
    let (ui_stop_tx, ui_stop_rx) = watch::channel(false);
    let ui_task = if ui {
        let (Some(exps), Some(obs)) = (experiments.clone(), observations.clone()) else {
            return invalid(
                "--ui needs the embedded SQLite database (drop --db-manager, or use --db sqlite://...)",
            );
        };
        let listener = match katib_ui::bind(ui_listen).await {
            Ok(l) => l,
            Err(e) => return invalid(chain(&e)),
        };
        let addr = listener.local_addr().map(|a| a.to_string()).unwrap_or_default();
        errln!("web UI: http://{addr}/");
        let launcher =
            crate::launch::LocalLauncher::new(opts.clone(), obs.clone(), exps.clone(), hub.clone());
        let state = katib_ui::AppState {
            experiments: exps,
            observations: obs,
            hub: hub.clone(),
            launcher: Some(Arc::new(launcher)),
            work_dir: Some(opts.work_dir.clone()),
        };
        let mut rx = ui_stop_rx.clone();
        Some(tokio::spawn(async move {
            let shutdown = async move {
                let _ = rx.wait_for(|v| *v).await;
            };
            if let Err(e) = katib_ui::serve(listener, state, shutdown).await {
                tracing::error!(error = %chain(&e), "web UI stopped");
            }
        }))
    } else {
        None
    };

    let (ev_tx, ev_rx) = mpsc::unbounded_channel();
    let progress = Progress::new(&exp, quiet);
    let display = tokio::spawn(progress.drive(ev_rx));
    let opts = ExecOpts { seed, ..opts };
    let result = execute(
        exp,
        &opts,
        observations,
        recording,
        Some(ev_tx),
        crate::cli::shutdown_signal(),
    )
    .await;
    if let Some(closing) = early_close {
        // Also when the run ended before its recording started (an error): close now.
        written.notify_one();
        let _ = closing.await;
    }
    let progress = display.await.ok();

    let (out, run_dir) = match result {
        Ok(r) => r,
        Err(ExecError::Invalid(m)) => return invalid(m),
        Err(ExecError::Failed(m)) => {
            errln!("error: {m}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(p) = progress {
        p.summary(&out, started.elapsed(), &run_dir, json);
    }
    if json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&out.experiment).unwrap_or_default()
        );
    }
    if let Some(task) = ui_task {
        if !out.interrupted {
            errln!("the experiment has ended; the web UI keeps serving until Ctrl-C");
            crate::cli::shutdown_signal().await;
        }
        let _ = ui_stop_tx.send(true);
        let _ = task.await;
    }
    // Closed, not dropped with the runtime: a pool dropped on the way out closed its
    // connections on their own threads while the process exited, so SQLite's last
    // connection sometimes folded the WAL back into katib.db and sometimes was cut off,
    // leaving the last run only in katib.db-wal (safe, but not in the one file). Without
    // the UI they were closed when the recording ended (above).
    if ui {
        close_stores(&stores).await;
    }
    let conds = out
        .experiment
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    let code = if out.interrupted {
        ExitCode::from(130)
    } else if katib_api::conditions::is_true(conds, ec::SUCCEEDED) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    };
    // The process exits next: freeing every trial's values one by one (a millisecond or
    // more for a few hundred trials) would only delay that.
    std::mem::forget(out);
    code
}

/// The observation store (unless an external db-manager keeps the observations) and the
/// experiment store of a run.
pub type Stores = (
    Option<Arc<dyn ObservationStore>>,
    Option<Arc<dyn ExperimentStore>>,
);

/// Closes the observation and experiment stores (on SQLite, the last connection folds the
/// log back into the database file).
async fn close_stores(stores: &Stores) {
    if let Some(o) = &stores.0 {
        o.close().await;
    }
    if let Some(e) = &stores.1 {
        e.close().await;
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

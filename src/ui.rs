//! `katib ui`: the web UI over the embedded database, starting experiments in-process.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use crate::cli::EXIT_INVALID;
use crate::run::{ExecOpts, chain, open_stores};

#[derive(Debug, clap::Args)]
pub struct UiArgs {
    #[command(flatten)]
    pub ui: katib_ui::Args,
    /// Directory of the embedded database and per-run trial logs (as for `katib run`).
    #[arg(long, env = "KATIB_STATE_DIR", default_value = ".katib")]
    pub state_dir: PathBuf,
    /// Database URL [default: sqlite://<state-dir>/katib.db]; MySQL and PostgreSQL URLs work too.
    #[arg(long, env = "KATIB_DB_URL")]
    pub db: Option<String>,
    /// Working directory of trial commands of experiments started from the UI.
    #[arg(long, env = "KATIB_WORK_DIR", default_value = ".")]
    pub work_dir: PathBuf,
    /// Deadline in seconds for one GetSuggestions call.
    #[arg(long, env = "KATIB_SUGGESTION_TIMEOUT", default_value_t = 60)]
    pub suggestion_timeout: u64,
}

pub async fn run(args: UiArgs) -> ExitCode {
    let UiArgs {
        ui,
        state_dir,
        db,
        work_dir,
        suggestion_timeout,
    } = args;
    if let Err(e) = std::fs::create_dir_all(&state_dir) {
        errln!(
            "error: cannot create the state directory {}: {e} (pass --state-dir <writable dir>)",
            state_dir.display()
        );
        return ExitCode::from(EXIT_INVALID);
    }
    let (Some(observations), Some(experiments)) = (match open_stores(db, &state_dir, false).await {
        Ok(s) => s,
        Err(m) => {
            errln!("error: {m}");
            return ExitCode::from(EXIT_INVALID);
        }
    }) else {
        errln!("error: cannot open the database for katib ui");
        return ExitCode::from(EXIT_INVALID);
    };
    let listener = match katib_ui::bind(ui.listen).await {
        Ok(l) => l,
        Err(e) => {
            errln!("error: {}", chain(&e));
            return ExitCode::from(EXIT_INVALID);
        }
    };
    let addr = listener.local_addr().map(|a| a.to_string()).unwrap_or_default();
    errln!("web UI: http://{addr}/");
    let hub = katib_ui::Hub::default();
    let opts = ExecOpts {
        state_dir: state_dir.clone(),
        db_manager: None,
        endpoints: Vec::new(),
        early_stopping_endpoint: None,
        work_dir: work_dir.clone(),
        suggestion_timeout,
        seed: None,
    };
    let launcher =
        crate::launch::LocalLauncher::new(opts, observations.clone(), experiments.clone(), hub.clone());
    let state = katib_ui::AppState {
        experiments,
        observations,
        hub,
        launcher: Some(Arc::new(launcher)),
        work_dir: Some(work_dir),
    };
    match katib_ui::serve(listener, state, crate::cli::shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            errln!("error: {}", chain(&e));
            ExitCode::FAILURE
        }
    }
}

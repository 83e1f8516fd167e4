//! katib-rs's web UI: a JSON API over the experiment store (one query per page view),
//! server-sent events for live updates, and the web app (`ui/web`, built by Vite) embedded
//! in the binary. See `docs/ui.md`.
//!
//! The crate knows nothing about how experiments run: a [`Launcher`] supplied by the
//! binary starts them (the same code as `katib run`), and the binary's recorder writes
//! snapshots through [`record::Recorder`], which also publishes them on the [`Hub`].

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use katib_api::crd::Experiment;
use katib_db_manager::{ExperimentStore, ObservationStore};
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::broadcast;

pub mod analysis;
mod api;
mod assets;
pub mod record;

pub use api::{Problem, app, check_yaml};

/// `katib ui` flags (the binary adds the database and state-dir flags).
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Address the web UI listens on.
    #[arg(long = "listen", env = "KATIB_UI_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
}

/// A change pushed to browsers over server-sent events.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum Change {
    /// An experiment was written; `summary` is its list-view document.
    #[serde(rename_all = "camelCase")]
    Experiment {
        namespace: String,
        name: String,
        status: String,
        summary: serde_json::Value,
        created: String,
    },
    /// Trials of an experiment were written; `rows` are their table rows.
    #[serde(rename_all = "camelCase")]
    Trials {
        namespace: String,
        experiment: String,
        rows: Vec<serde_json::Value>,
    },
    /// An experiment was deleted.
    #[serde(rename_all = "camelCase")]
    Deleted { namespace: String, name: String },
    /// Something changed that this process did not write (another `katib run` on the same
    /// database): clients reload what they show of it.
    #[serde(rename_all = "camelCase")]
    Touched { namespace: String, name: String },
}

/// Fan-out of [`Change`]s to every open event stream.
#[derive(Debug, Clone)]
pub struct Hub {
    tx: broadcast::Sender<Change>,
    /// Experiments written by this process (their changes are published directly; the
    /// store poller skips them).
    local: Arc<std::sync::Mutex<HashSet<(String, String)>>>,
}

impl Default for Hub {
    fn default() -> Self {
        Self {
            // Changes come a few times a second per experiment (the recorder writes at
            // most every 250 ms), so 256 is a minute of backlog; a stream that falls
            // further behind gets `lagged` and its page reloads. (4096 slots were most of
            // a megabyte, allocated and touched by every `katib run` at start.)
            tx: broadcast::channel(256).0,
            local: Arc::default(),
        }
    }
}

impl Hub {
    /// Publishes a change (dropped when nobody listens).
    pub fn publish(&self, change: Change) {
        let _ = self.tx.send(change);
    }

    /// A new listener.
    pub fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.tx.subscribe()
    }

    /// Notes that this process writes `namespace/name` (and publishes its changes).
    pub fn mark_local(&self, namespace: &str, name: &str) {
        if let Ok(mut set) = self.local.lock() {
            set.insert((namespace.to_string(), name.to_string()));
        }
    }

    fn is_local(&self, namespace: &str, name: &str) -> bool {
        self.local
            .lock()
            .map(|set| set.contains(&(namespace.to_string(), name.to_string())))
            .unwrap_or(false)
    }
}

/// Why an experiment could not be started.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// An experiment with this name is running in this process.
    #[error(
        "experiment {namespace}/{name} is already running; delete it first or choose another metadata.name"
    )]
    AlreadyRunning { namespace: String, name: String },
    /// This server cannot start experiments.
    #[error("this server cannot start experiments: {0}")]
    Unavailable(String),
}

/// Starts and stops experiments in this process (implemented by the `katib` binary with
/// the code of `katib run`).
pub trait Launcher: Send + Sync {
    /// Starts `exp` (defaulted and validated) in the background.
    fn launch(&self, exp: Experiment) -> Result<(), LaunchError>;
    /// Stops a running experiment and waits (bounded) until its run has ended and written
    /// its last state; false when it is not running here.
    fn stop<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send + 'a>>;
}

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    pub experiments: Arc<dyn ExperimentStore>,
    pub observations: Arc<dyn ObservationStore>,
    pub hub: Hub,
    pub launcher: Option<Arc<dyn Launcher>>,
    /// Working directory of trial commands of experiments started from the UI (shown on
    /// the create page).
    pub work_dir: Option<PathBuf>,
}

/// Why the server stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(
        "cannot bind the web UI to {addr} (is another server on that port? pass another address: \
         katib ui --listen HOST:PORT, katib run --ui --ui-listen HOST:PORT)"
    )]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("the web UI server failed")]
    Serve(#[source] std::io::Error),
}

/// Binds `addr`.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, ServeError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { addr, source })
}

/// Serves the UI on `listener` until `shutdown`, and polls the store for changes written
/// by other processes.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let poller = tokio::spawn(poll_changes(state.experiments.clone(), state.hub.clone()));
    let result = axum::serve(listener, app(state))
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(ServeError::Serve);
    poller.abort();
    result
}

/// Every second, asks the store which experiments changed since the last look and
/// publishes [`Change::Touched`] for each (a cheap indexed query; in-process runs publish
/// their changes directly as well).
async fn poll_changes(store: Arc<dyn ExperimentStore>, hub: Hub) {
    let mut since = jiff::Timestamp::now().to_string();
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    loop {
        tick.tick().await;
        match store.changed_since(&since).await {
            Ok(rows) => {
                for (namespace, name, updated) in rows {
                    if updated > since {
                        since = updated;
                    }
                    if !hub.is_local(&namespace, &name) {
                        hub.publish(Change::Touched { namespace, name });
                    }
                }
            }
            Err(e) => tracing::debug!(error = %e, "change poll failed"),
        }
    }
}

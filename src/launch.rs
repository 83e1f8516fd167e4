//! Experiments started from the web UI: run in this process with the code of `katib run`
//! ([`crate::run::execute`]), recorded to the same store, stoppable by a DELETE.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use katib_api::crd::Experiment;
use katib_db_manager::{ExperimentStore, ObservationStore};
use katib_ui::record::namespace_of;
use katib_ui::{Hub, LaunchError, Launcher};
use tokio::sync::watch;

use crate::run::{ExecOpts, Recording, execute};

type Key = (String, String);
/// Per running experiment: the stop switch, and a flag set when its run has ended.
type Running = Arc<Mutex<HashMap<Key, (watch::Sender<bool>, watch::Receiver<bool>)>>>;

/// Runs experiments submitted to the UI.
pub struct LocalLauncher {
    opts: ExecOpts,
    observations: Arc<dyn ObservationStore>,
    experiments: Arc<dyn ExperimentStore>,
    hub: Hub,
    running: Running,
}

impl LocalLauncher {
    pub fn new(
        opts: ExecOpts,
        observations: Arc<dyn ObservationStore>,
        experiments: Arc<dyn ExperimentStore>,
        hub: Hub,
    ) -> Self {
        Self {
            opts,
            observations,
            experiments,
            hub,
            running: Arc::default(),
        }
    }
}

impl Launcher for LocalLauncher {
    fn launch(&self, exp: Experiment) -> Result<(), LaunchError> {
        let key = (
            namespace_of(&exp.metadata),
            exp.metadata.name.clone().unwrap_or_default(),
        );
        let (stop_tx, mut stop_rx) = watch::channel(false);
        let (done_tx, done_rx) = watch::channel(false);
        {
            let mut running = self
                .running
                .lock()
                .map_err(|_| LaunchError::Unavailable("the launcher's state is poisoned".into()))?;
            if running.contains_key(&key) {
                return Err(LaunchError::AlreadyRunning {
                    namespace: key.0,
                    name: key.1,
                });
            }
            running.insert(key.clone(), (stop_tx, done_rx));
        }
        let opts = self.opts.clone();
        let observations = self.observations.clone();
        let recording = Recording {
            store: self.experiments.clone(),
            hub: self.hub.clone(),
            written: None,
        };
        let running = self.running.clone();
        tokio::spawn(async move {
            let shutdown = async move {
                let _ = stop_rx.wait_for(|v| *v).await;
            };
            let result = execute(
                exp.clone(),
                &opts,
                Some(observations),
                Some(recording.clone()),
                None,
                shutdown,
            )
            .await;
            match result {
                Ok((out, dir)) => tracing::info!(
                    namespace = %key.0, name = %key.1, interrupted = out.interrupted,
                    run_dir = %dir.display(), "experiment from the UI ended"
                ),
                Err(e) => {
                    tracing::warn!(namespace = %key.0, name = %key.1, error = %e, "experiment from the UI failed");
                    // Show the failure on the experiment's page rather than nothing.
                    let mut failed = exp;
                    let now = katib_api::time::now_rfc3339();
                    let status = failed.status.get_or_insert_with(Default::default);
                    katib_api::conditions::set_terminal(
                        &mut status.conditions,
                        "Failed",
                        "LaunchFailed",
                        &e.to_string(),
                        &now,
                    );
                    let mut rec =
                        katib_ui::record::Recorder::new(recording.store, recording.hub, None).keep_existing();
                    let _ = rec.experiment(&failed).await;
                }
            }
            if let Ok(mut r) = running.lock() {
                r.remove(&key);
            }
            let _ = done_tx.send(true);
        });
        Ok(())
    }

    fn stop<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send + 'a>> {
        let key = (namespace.to_string(), name.to_string());
        let entry = self.running.lock().ok().and_then(|r| r.get(&key).cloned());
        Box::pin(async move {
            let Some((stop, mut done)) = entry else {
                return false;
            };
            let _ = stop.send(true);
            // Its trials are stopped and its last state written; bounded so a stuck trial
            // cannot hang the request.
            let _ = tokio::time::timeout(std::time::Duration::from_secs(20), done.wait_for(|v| *v)).await;
            true
        })
    }
}

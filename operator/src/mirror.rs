//! Mirroring into the experiment store (`--experiment-store`), so `katib ui` pointed at
//! the same database shows the cluster's Experiments and Trials.
//!
//! The Experiment reconciler is the one writer: it reads the Experiment and all its Trials
//! on every reconcile (a Trial's status write triggers one through the owner watch), and
//! upserts the experiment record and the records of Trials that changed since the last
//! write, with the conversion `katib run` uses ([`katib_ui::record`]). Trials are numbered
//! in creation order. Deleted Experiments lose their record through a watch on deletions
//! (best effort). Failures are logged and never fail a reconcile.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures::StreamExt as _;
use katib_api::crd::{Experiment, Trial};
use katib_db_manager::ExperimentStore;
use kube::api::{Api, DynamicObject};
use kube::runtime::{WatchStreamExt as _, watcher};
use tracing::{debug, warn};

/// What was last written for one experiment.
#[derive(Default)]
struct Written {
    /// The experiment record's status and summary.
    experiment: Option<(String, String)>,
    /// Per trial: its number and the resourceVersion last written.
    trials: HashMap<String, (i64, String)>,
}

/// Writes Experiments and Trials to the experiment store.
pub struct Mirror {
    store: Arc<dyn ExperimentStore>,
    written: Mutex<HashMap<(String, String), Written>>,
}

impl Mirror {
    pub fn new(store: Arc<dyn ExperimentStore>) -> Self {
        Mirror {
            store,
            written: Mutex::new(HashMap::new()),
        }
    }

    /// Upserts `exp` (with the status just written) and those of `trials` (oldest first,
    /// each with its resourceVersion) that changed since the last call. Best effort.
    pub async fn sync(&self, exp: &Experiment, trials: &[(Trial, String)]) {
        let namespace = katib_ui::record::namespace_of(&exp.metadata);
        let name = exp.metadata.name.clone().unwrap_or_default();
        let key = (namespace.clone(), name.clone());
        let now = jiff::Timestamp::now().to_string();
        let created = exp
            .metadata
            .creation_timestamp
            .clone()
            .or_else(|| exp.status.as_ref().and_then(|s| s.start_time.clone()))
            .unwrap_or_else(|| now.clone());
        let (record, _) = katib_ui::record::experiment_record(exp, &created, None, &now);
        let (changed_trials, exp_changed) = {
            let Ok(mut map) = self.written.lock() else { return };
            let w = map.entry(key.clone()).or_default();
            let mut out = Vec::new();
            for (t, rv) in trials {
                let tname = t.metadata.name.clone().unwrap_or_default();
                let next = w.trials.len() as i64;
                let (seq, last) = w.trials.entry(tname).or_insert((next, String::new()));
                if last != rv {
                    out.push((katib_ui::record::trial_record(t, *seq, &now).0, rv.clone()));
                }
            }
            let exp_changed = w.experiment.as_ref() != Some(&(record.status.clone(), record.summary.clone()));
            (out, exp_changed)
        };
        if changed_trials.is_empty() && !exp_changed {
            return;
        }
        // The experiment row first (its `updated` is what `katib ui` polls), then trials.
        if let Err(e) = self.store.put_experiment(&record).await {
            warn!(%namespace, experiment = %name, error = %e, "cannot mirror the experiment to the experiment store");
            return;
        }
        let records: Vec<_> = changed_trials.iter().map(|(r, _)| r.clone()).collect();
        if !records.is_empty()
            && let Err(e) = self.store.put_trials(&namespace, &name, &records).await
        {
            warn!(%namespace, experiment = %name, error = %e, "cannot mirror trials to the experiment store");
            return;
        }
        debug!(%namespace, experiment = %name, trials = records.len(), "mirrored to the experiment store");
        if let Ok(mut map) = self.written.lock() {
            let w = map.entry(key).or_default();
            w.experiment = Some((record.status, record.summary));
            for (r, rv) in changed_trials {
                if let Some(e) = w.trials.get_mut(&r.name) {
                    e.1 = rv;
                }
            }
        }
    }

    /// Deletes an experiment's record and its trials' (best effort).
    pub async fn delete(&self, namespace: &str, name: &str) {
        if let Ok(mut map) = self.written.lock() {
            map.remove(&(namespace.to_string(), name.to_string()));
        }
        match self.store.delete_experiment(namespace, name).await {
            Ok(Some(_)) => debug!(%namespace, experiment = %name, "deleted from the experiment store"),
            Ok(None) => {}
            Err(e) => {
                warn!(%namespace, experiment = %name, error = %e, "cannot delete the experiment from the experiment store")
            }
        }
    }

    /// Deletes the record of every Experiment deleted from the cluster while this runs
    /// (`api`: the Experiments the controller watches).
    pub async fn watch_deletions(self: Arc<Self>, api: Api<DynamicObject>) {
        let mut events = watcher::watcher(api, watcher::Config::default())
            .default_backoff()
            .boxed();
        while let Some(ev) = events.next().await {
            match ev {
                Ok(watcher::Event::Delete(obj)) => {
                    let namespace = obj.metadata.namespace.clone().unwrap_or_else(|| "default".into());
                    let name = obj.metadata.name.clone().unwrap_or_default();
                    self.delete(&namespace, &name).await;
                }
                Ok(_) => {}
                Err(e) => debug!(error = %e, "experiment deletion watch; retrying"),
            }
        }
    }
}

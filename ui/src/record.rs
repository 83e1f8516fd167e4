//! Snapshots of a local run written to the experiment store, and the small JSON documents
//! the list and experiment pages read (`summary`, trial `row`).

use std::collections::HashMap;
use std::sync::Arc;

use katib_api::crd::{Condition, Experiment, Trial, UNAVAILABLE};
use katib_db_manager::{ExperimentRecord, ExperimentStore, StoreError, TrialRecord};
use serde_json::{Value, json};

use crate::{Change, Hub};

/// The namespace of an object (`default` when unset, as kubectl does).
pub fn namespace_of(meta: &katib_api::crd::ObjectMeta) -> String {
    meta.namespace
        .clone()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "default".to_string())
}

/// Katib's status of an object: the type of the last condition that is True (else the last
/// condition's), `Created` when there is none.
pub fn status_of(conditions: &[Condition]) -> String {
    conditions
        .iter()
        .rev()
        .find(|c| c.status == "True")
        .or(conditions.last())
        .map(|c| c.type_.clone())
        .unwrap_or_else(|| "Created".to_string())
}

/// The trial's objective value (by the objective's metric strategy), when numeric.
pub fn objective_of(trial: &Trial) -> Option<f64> {
    let o = trial.spec.objective.as_ref()?;
    let m = trial
        .status
        .as_ref()?
        .observation
        .as_ref()?
        .metric(&o.objective_metric_name)?;
    let v = katib_api::convert::metric_value_by_strategy(m, o.strategy_for(&m.name));
    if v == UNAVAILABLE {
        return None;
    }
    v.trim().parse::<f64>().ok().filter(|v| v.is_finite())
}

/// The experiment page's row of a trial: name, status, parameters, metrics, objective, times.
pub fn trial_row(trial: &Trial, seq: i64) -> Value {
    let status = trial.status.clone().unwrap_or_default();
    let params: serde_json::Map<String, Value> = trial
        .spec
        .parameter_assignments
        .iter()
        .map(|a| (a.name.clone(), Value::String(a.value.clone())))
        .collect();
    let metrics: serde_json::Map<String, Value> = status
        .observation
        .as_ref()
        .map(|o| {
            o.metrics
                .iter()
                .map(|m| {
                    let strategy = trial
                        .spec
                        .objective
                        .as_ref()
                        .map(|o| o.strategy_for(&m.name).to_string())
                        .unwrap_or_else(|| "latest".into());
                    let v = katib_api::convert::metric_value_by_strategy(m, &strategy);
                    (m.name.clone(), Value::String(v))
                })
                .collect()
        })
        .unwrap_or_default();
    let message = status
        .conditions
        .iter()
        .rev()
        .find(|c| c.status == "True")
        .map(|c| c.message.clone())
        .unwrap_or_default();
    json!({
        "name": trial.metadata.name.clone().unwrap_or_default(),
        "seq": seq,
        "status": status_of(&status.conditions),
        "params": params,
        "metrics": metrics,
        "objective": objective_of(trial),
        "start": status.start_time,
        "end": status.completion_time,
        "message": message,
    })
}

/// The list page's summary of an experiment.
pub fn experiment_summary(exp: &Experiment) -> Value {
    let st = exp.status.clone().unwrap_or_default();
    let objective = exp.spec.objective.as_ref();
    let best = st
        .current_optimal_trial
        .as_ref()
        .filter(|b| !b.best_trial_name.is_empty());
    let best_value = match (best, objective) {
        (Some(b), Some(o)) => b
            .observation
            .metric(&o.objective_metric_name)
            .map(|m| katib_api::convert::metric_value_by_strategy(m, o.strategy_for(&m.name)))
            .and_then(|v| v.parse::<f64>().ok()),
        _ => None,
    };
    json!({
        "status": status_of(&st.conditions),
        "trials": st.trials,
        "succeeded": st.trials_succeeded,
        "running": st.trials_running,
        "pending": st.trials_pending,
        "failed": st.trials_failed,
        "killed": st.trials_killed,
        "earlyStopped": st.trials_early_stopped,
        "metricsUnavailable": st.trial_metrics_unavailable,
        "maxTrialCount": exp.spec.max_trial_count,
        "parallelTrialCount": exp.spec.parallel_trial_count,
        "algorithm": exp.spec.algorithm.as_ref().map(|a| a.algorithm_name.clone()),
        "objectiveMetric": objective.map(|o| o.objective_metric_name.clone()),
        "objectiveType": objective.map(|o| o.type_.clone()),
        "goal": objective.and_then(|o| o.goal),
        "bestTrial": best.map(|b| b.best_trial_name.clone()),
        "bestValue": best_value,
        "bestParams": best.map(|b| b.parameter_assignments.iter().map(|a| (a.name.clone(), Value::String(a.value.clone()))).collect::<serde_json::Map<_, _>>()),
        "startTime": st.start_time,
        "completionTime": st.completion_time,
    })
}

/// The Experiment as stored: Katib's JSON without the status's per-trial name lists
/// (`succeededTrialList`, ...), which the trial rows already hold and which would make
/// every status write grow with the number of trials.
pub fn stored_body(exp: &Experiment) -> String {
    let mut exp = exp.clone();
    if let Some(st) = exp.status.as_mut() {
        st.running_trial_list.clear();
        st.pending_trial_list.clear();
        st.failed_trial_list.clear();
        st.succeeded_trial_list.clear();
        st.killed_trial_list.clear();
        st.early_stopped_trial_list.clear();
        st.metrics_unavailable_trial_list.clear();
    }
    serde_json::to_string(&exp).unwrap_or_default()
}

/// The stored record of an experiment (with its list-view summary): the one conversion
/// shared by `katib run`'s recorder and the Kubernetes controller's mirror.
pub fn experiment_record(
    exp: &Experiment,
    created: &str,
    run_dir: Option<String>,
    now: &str,
) -> (ExperimentRecord, Value) {
    let summary = experiment_summary(exp);
    let status = status_of(
        exp.status
            .as_ref()
            .map(|s| s.conditions.as_slice())
            .unwrap_or_default(),
    );
    let record = ExperimentRecord {
        namespace: namespace_of(&exp.metadata),
        name: exp.metadata.name.clone().unwrap_or_default(),
        status,
        summary: summary.to_string(),
        body: stored_body(exp),
        run_dir,
        created: created.to_string(),
        updated: now.to_string(),
    };
    (record, summary)
}

/// The stored record of a trial numbered `seq` (with its table row).
pub fn trial_record(trial: &Trial, seq: i64, now: &str) -> (TrialRecord, Value) {
    let row = trial_row(trial, seq);
    let record = TrialRecord {
        name: trial.metadata.name.clone().unwrap_or_default(),
        seq,
        status: row["status"].as_str().unwrap_or_default().to_string(),
        objective: objective_of(trial),
        row: row.to_string(),
        body: serde_json::to_string(trial).unwrap_or_default(),
        updated: now.to_string(),
    };
    (record, row)
}

/// Writes a run's snapshots to the store and publishes them on the hub. One per experiment
/// run; it numbers trials in the order it first sees them.
pub struct Recorder {
    store: Arc<dyn ExperimentStore>,
    hub: Hub,
    run_dir: Option<String>,
    seq: HashMap<String, i64>,
    created: Option<String>,
    replace: bool,
}

impl Recorder {
    /// A recorder for one run whose files are in `run_dir`.
    pub fn new(store: Arc<dyn ExperimentStore>, hub: Hub, run_dir: Option<String>) -> Self {
        Self {
            store,
            hub,
            run_dir,
            seq: HashMap::new(),
            created: None,
            replace: true,
        }
    }

    /// Updates what is recorded instead of replacing an earlier record of the same name
    /// (for a final status written after the run's own recorder has finished).
    pub fn keep_existing(mut self) -> Self {
        self.replace = false;
        self
    }

    /// Writes the experiment's current state.
    pub async fn experiment(&mut self, exp: &Experiment) -> Result<(), StoreError> {
        let namespace = namespace_of(&exp.metadata);
        let name = exp.metadata.name.clone().unwrap_or_default();
        self.hub.mark_local(&namespace, &name);
        let now = jiff::Timestamp::now().to_string();
        if self.created.is_none() && self.replace {
            // A new run of an experiment replaces what an earlier run of the same name
            // recorded (its trials would otherwise mix with this run's).
            if let Some(old) = self.store.delete_experiment(&namespace, &name).await? {
                tracing::info!(%namespace, %name, trials = old.len(), "replacing the record of an earlier run");
            }
        }
        let created = self
            .created
            .get_or_insert_with(|| {
                exp.metadata
                    .creation_timestamp
                    .clone()
                    .or_else(|| exp.status.as_ref().and_then(|s| s.start_time.clone()))
                    .unwrap_or_else(|| now.clone())
            })
            .clone();
        let (record, summary) = experiment_record(exp, &created, self.run_dir.clone(), &now);
        let status = record.status.clone();
        self.store.put_experiment(&record).await?;
        self.hub.publish(Change::Experiment {
            namespace,
            name,
            status,
            summary,
            created,
        });
        Ok(())
    }

    /// Writes trials of `exp` (their latest snapshots) in one transaction.
    pub async fn trials(&mut self, exp: &Experiment, trials: &[Trial]) -> Result<(), StoreError> {
        if trials.is_empty() {
            return Ok(());
        }
        let namespace = namespace_of(&exp.metadata);
        let experiment = exp.metadata.name.clone().unwrap_or_default();
        let now = jiff::Timestamp::now().to_string();
        let mut records = Vec::with_capacity(trials.len());
        let mut rows = Vec::with_capacity(trials.len());
        for t in trials {
            let name = t.metadata.name.clone().unwrap_or_default();
            let next = self.seq.len() as i64;
            let seq = *self.seq.entry(name.clone()).or_insert(next);
            let (record, row) = trial_record(t, seq, &now);
            records.push(record);
            rows.push(row);
        }
        self.store.put_trials(&namespace, &experiment, &records).await?;
        self.hub.publish(Change::Trials {
            namespace,
            experiment,
            rows,
        });
        Ok(())
    }
}

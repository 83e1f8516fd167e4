//! Metrics collection for a local trial: Katib's StdOut, File and Push collector kinds.
//!
//! - StdOut: the trial's merged stdout/stderr lines go to the collector as they arrive.
//! - File: the metrics file is tailed while the trial runs. The path in the experiment is
//!   a path inside the trial's container (e.g. `/katib/metrics.log`); locally each trial
//!   gets its own copy under its run directory, and every occurrence of the path in the
//!   command and env is rewritten to it, so parallel trials never share a file.
//! - Push: the trainer reports through db-manager itself; output is only logged.

use std::path::{Path, PathBuf};

use katib_api::crd::Experiment;
use katib_metrics_collector::{Collector, CollectorConfig, DbManagerSink, ObjectiveType};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};
use tonic::transport::Channel;
use tracing::warn;

use super::process::{self, ProcessExit, ProcessSpec};
use super::render::LocalCommand;

#[derive(Clone, Debug, PartialEq, Eq)]
enum Kind {
    StdOut,
    File { path: String, json: bool },
    Push,
}

/// The collector settings of an experiment, checked for what the local runtime supports.
#[derive(Clone, Debug)]
pub struct CollectSpec {
    kind: Kind,
    /// Parsers are compiled once per experiment (regex compilation is the most expensive
    /// step of starting a trial) and cloned per trial with the trial's name.
    template: Option<CollectorConfig>,
}

impl CollectSpec {
    /// Reads `spec.metricsCollectorSpec` (defaulted); errors name what is unsupported locally.
    pub fn from_experiment(exp: &Experiment) -> Result<Self, String> {
        let objective = exp.spec.objective.clone().unwrap_or_default();
        let mc = exp.spec.metrics_collector_spec.clone().unwrap_or_default();
        let source = mc.source.clone().unwrap_or_default();
        let filters = source.filter.map(|f| f.metrics_format).unwrap_or_default();
        let kind = match mc.kind() {
            "StdOut" => Kind::StdOut,
            "File" => {
                let fsp = source.file_system_path.unwrap_or_default();
                Kind::File {
                    path: fsp.path,
                    json: fsp.format == "JSON",
                }
            }
            "Push" => Kind::Push,
            other => {
                return Err(format!(
                    "spec.metricsCollectorSpec.collector.kind {other} is not supported by the local runtime yet; \
                     use StdOut, File or Push (or run it on Kubernetes)"
                ));
            }
        };
        let names = objective.all_metric_names();
        let objective_type = ObjectiveType::from_katib(&objective.type_).unwrap_or(ObjectiveType::Minimize);
        let template = match &kind {
            Kind::Push => None,
            Kind::File { json: true, .. } => Some(CollectorConfig::json("", names, objective_type)),
            _ => Some(
                CollectorConfig::text("", names, objective_type, &filters)
                    .map_err(|e| format!("spec.metricsCollectorSpec.source.filter.metricsFormat: {e}"))?,
            ),
        };
        Ok(CollectSpec { kind, template })
    }

    /// Rewrites the container's metrics-file path to a per-trial local file.
    pub fn localize(&self, mut command: LocalCommand, trial_dir: &Path) -> (LocalCommand, Option<PathBuf>) {
        let Kind::File { path, .. } = &self.kind else {
            return (command, None);
        };
        let name = Path::new(path)
            .file_name()
            .map(|n| n.to_os_string())
            .unwrap_or_else(|| "metrics.log".into());
        let local = trial_dir.join("metrics").join(name);
        let local_s = local.display().to_string();
        for a in &mut command.argv {
            *a = a.replace(path.as_str(), &local_s);
        }
        for (_, v) in &mut command.env {
            *v = v.replace(path.as_str(), &local_s);
        }
        (command, Some(local))
    }

    fn collector(&self, trial: &str, channel: Channel) -> Result<Option<Collector>, String> {
        let Some(mut config) = self.template.clone() else {
            return Ok(None);
        };
        config.trial_name = trial.to_string();
        let sink = Arc::new(DbManagerSink::from_channel(channel, "db-manager"));
        Collector::new(config, sink).map(Some).map_err(|e| e.to_string())
    }
}

/// Runs the trial's process with its collector attached; returns how the process ended
/// once every collected metric has been reported.
pub async fn run_collected(
    spec: ProcessSpec,
    collect: CollectSpec,
    metrics_file: Option<PathBuf>,
    trial: &str,
    channel: Channel,
    stop: oneshot::Receiver<()>,
) -> ProcessExit {
    let collector = match collect.collector(trial, channel) {
        Ok(c) => c,
        Err(e) => {
            return ProcessExit::SpawnFailed {
                reason: "CollectorError".into(),
                message: e,
            };
        }
    };
    if let Some(dir) = metrics_file.as_ref().and_then(|f| f.parent())
        && let Err(e) = tokio::fs::create_dir_all(dir).await
    {
        return ProcessExit::SpawnFailed {
            reason: "CollectorError".into(),
            message: format!("cannot create {}: {e}", dir.display()),
        };
    }
    let (line_tx, mut line_rx) = mpsc::channel::<String>(1024);
    let proc = tokio::spawn(process::run(spec, line_tx, stop));
    let exit = match (collect.kind.clone(), collector) {
        (Kind::StdOut, Some(mut c)) => {
            while let Some(line) = line_rx.recv().await {
                c.push_line(&line);
            }
            let exit = proc.await;
            if let Err(e) = c.finish().await {
                warn!(error = %e, "metrics could not be reported");
            }
            exit
        }
        (Kind::File { .. }, Some(c)) => {
            let (done_tx, done_rx) = oneshot::channel::<()>();
            let path = metrics_file.clone().unwrap_or_default();
            let tail = tokio::spawn(katib_metrics_collector::tail_file(path, c, async move {
                let _ = done_rx.await;
            }));
            while line_rx.recv().await.is_some() {}
            let exit = proc.await;
            let _ = done_tx.send(());
            match tail.await {
                Ok(Err(e)) => warn!(error = %e, "metrics could not be reported"),
                Err(e) => warn!(error = %e, "metrics collector task failed"),
                Ok(Ok(_)) => {}
            }
            exit
        }
        _ => {
            while line_rx.recv().await.is_some() {}
            proc.await
        }
    };
    exit.unwrap_or_else(|e| ProcessExit::Failed {
        reason: "InternalError".into(),
        message: e.to_string(),
    })
}

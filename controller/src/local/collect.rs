//! Metrics collection for a local trial: Katib's StdOut, File and Push collector kinds.
//!
//! - StdOut: the trial's merged stdout/stderr lines go to the collector as they arrive.
//! - File: the metrics file is tailed while the trial runs. The path in the experiment is
//!   a path inside the trial's container (e.g. `/katib/metrics.log`); locally each trial
//!   gets its own copy under its run directory, and every occurrence of the path in the
//!   command and env is rewritten to it, so parallel trials never share a file.
//! - Push: the trainer reports through db-manager itself; output is only logged.
//!
//! Early stopping (when the experiment has `spec.earlyStopping`): after every line the
//! collector has parsed, the trial's rules are checked
//! ([`katib_metrics_collector::EarlyStopper`]). The rules are those attached to the trial
//! when it was created, refreshed from the EarlyStopping service when the trial reaches a
//! rule's `start_step` (a rung) and, while it has none, every few seconds. A trial that
//! breaks them has its whole process group stopped, its metrics so far reported, and the
//! service told (`SetTrialStatus`, as Katib's collector does); the driver then returns
//! [`ProcessExit::EarlyStopped`]. Output printed after the decision, while the process
//! shuts down, is logged but not collected. StdOut and File (TEXT or JSON) collectors enforce rules;
//! with Push the trainer reports by itself and nothing is enforced (as on Katib, where no
//! sidecar is injected for Push).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt as _;
use katib_api::crd::{EarlyStoppingRule, Experiment};
use katib_api::pb;
use katib_api::pb::early_stopping_client::EarlyStoppingClient;
use katib_metrics_collector::earlystop::parse_rules;
use katib_metrics_collector::{
    Collector, CollectorConfig, DbManagerSink, EarlyStopper, FileFollower, ObjectiveType, RuleSource,
    StopRule, StopRules,
};
use tokio::sync::{mpsc, oneshot, watch};
use tonic::transport::Channel;
use tracing::{info, warn};

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
    metric_names: Vec<String>,
    objective_type: ObjectiveType,
    /// The metric whose value is an early-stopping rule's step (`resource_metric` in
    /// `spec.earlyStopping.algorithmSettings`); `None`: the number of values reported.
    step_metric: Option<String>,
    /// Parsers compiled once per experiment (regex compilation was the most expensive
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
        // Katib validates filters in the webhook; compiling them here once also makes a
        // bad one fail the run up front rather than every trial.
        let objective_type = ObjectiveType::from_katib(&objective.type_).unwrap_or(ObjectiveType::Minimize);
        let template = match &kind {
            Kind::Push => None,
            Kind::File { json: true, .. } => Some(CollectorConfig::json(
                "",
                objective.all_metric_names(),
                objective_type,
            )),
            _ => Some(
                CollectorConfig::text("", objective.all_metric_names(), objective_type, &filters)
                    .map_err(|e| format!("spec.metricsCollectorSpec.source.filter.metricsFormat: {e}"))?,
            ),
        };
        let step_metric = exp
            .spec
            .early_stopping
            .as_ref()
            .and_then(|es| es.algorithm_settings.iter().find(|s| s.name == "resource_metric"))
            .map(|s| s.value.trim().to_string())
            .filter(|m| !m.is_empty());
        let metric_names = objective.all_metric_names();
        if let Some(m) = &step_metric
            && !metric_names.contains(m)
        {
            return Err(format!(
                "spec.earlyStopping.algorithmSettings resource_metric \"{m}\" is not collected; add it to \
                 spec.objective.additionalMetricNames so the collector reads it"
            ));
        }
        if exp.spec.early_stopping.is_some() && kind == Kind::Push {
            warn!(
                "early stopping is not enforced with the Push metrics collector (the trainer reports by itself); \
                 use StdOut or File"
            );
        }
        Ok(CollectSpec {
            kind,
            metric_names,
            objective_type,
            step_metric,
            template,
        })
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
        // The runner uses the collector's rows instead of reading the log back when
        // db-manager counts exactly those (see `Collected::stored_rows`).
        let sink = Arc::new(DbManagerSink::from_channel(channel, "db-manager").with_row_count());
        Collector::new(config, sink).map(Some).map_err(|e| e.to_string())
    }
}

/// Early stopping for one trial.
#[derive(Clone, Debug)]
pub struct EarlyStopping {
    /// The experiment's EarlyStopping service.
    pub client: EarlyStoppingClient<Channel>,
    /// The current `GetEarlyStoppingRules` request (experiment, trials, db-manager address),
    /// kept up to date by the runner; used to refresh the rules.
    pub request: watch::Receiver<pb::GetEarlyStoppingRulesRequest>,
    /// The rules attached to the trial when it was created.
    pub rules: Vec<EarlyStoppingRule>,
}

/// Deadline of one call to the EarlyStopping service from a trial's collector.
const RULES_TIMEOUT: Duration = Duration::from_secs(30);

/// Fresh rules from the EarlyStopping service.
struct ServiceRules {
    client: EarlyStoppingClient<Channel>,
    request: watch::Receiver<pb::GetEarlyStoppingRulesRequest>,
}

#[tonic::async_trait]
impl RuleSource for ServiceRules {
    async fn rules(&mut self) -> Result<Vec<pb::EarlyStoppingRule>, tonic::Status> {
        let mut request = tonic::Request::new(self.request.borrow().clone());
        request.set_timeout(RULES_TIMEOUT);
        Ok(self
            .client
            .get_early_stopping_rules(request)
            .await?
            .into_inner()
            .early_stopping_rules)
    }
}

/// The early-stopping side of a running trial.
struct Enforcer {
    stopper: EarlyStopper,
    client: EarlyStoppingClient<Channel>,
    /// Why the trial was stopped, once it was.
    stopped: Option<String>,
    kill: Option<oneshot::Sender<()>>,
}

impl Enforcer {
    fn new(early: EarlyStopping, collect: &CollectSpec, kill: oneshot::Sender<()>) -> Self {
        let rules = parse_rules(&early.rules, StopRule::from_crd);
        let objective = collect.metric_names.first().cloned().unwrap_or_default();
        let rules = StopRules::new(
            objective,
            collect.objective_type,
            collect.step_metric.clone(),
            rules,
        );
        let source = ServiceRules {
            client: early.client.clone(),
            request: early.request,
        };
        Enforcer {
            stopper: EarlyStopper::new(rules, Some(Box::new(source))),
            client: early.client,
            stopped: None,
            kill: Some(kill),
        }
    }

    /// True once the trial broke its rules. Lines printed after that (while the process
    /// shuts down) are not collected: the trial's observation is what the rules judged,
    /// and rung statistics never see steps a stopped trial was not meant to run.
    fn has_stopped(&self) -> bool {
        self.stopped.is_some()
    }

    /// Checks the rules after a line; stops the process the first time they are broken.
    async fn after_line(&mut self, collector: &mut Collector) {
        if self.stopped.is_some() {
            return;
        }
        if let Some(why) = self.stopper.check(collector).await {
            info!(%why, "stopping the trial early");
            if let Some(kill) = self.kill.take() {
                let _ = kill.send(());
            }
            self.stopped = Some(why);
        }
    }

    /// Tells the service the trial was early stopped (Katib's collector does, after
    /// reporting the metrics). The runtime marks the trial itself if this fails.
    async fn set_trial_status(&mut self, trial: &str) {
        let mut request = tonic::Request::new(pb::SetTrialStatusRequest {
            trial_name: trial.to_string(),
        });
        request.set_timeout(RULES_TIMEOUT);
        if let Err(s) = self.client.set_trial_status(request).await {
            warn!(code = ?s.code(), message = s.message(), "SetTrialStatus failed; the runtime marks the trial itself");
        }
    }
}

/// How a collected trial ended.
#[derive(Debug)]
pub struct Collected {
    /// How the process ended.
    pub exit: ProcessExit,
    /// The trial's whole observation log when db-manager vouched that it holds exactly the
    /// rows the collector reported ([`katib_metrics_collector::Summary::stored_rows`]);
    /// `None`: read it back.
    pub stored_rows: Option<Vec<pb::MetricLog>>,
}

/// Runs the trial's process with its collector attached; returns how the process ended
/// once every collected metric has been reported. With `early`, the trial's early-stopping
/// rules are enforced (see the module docs).
pub async fn run_collected(
    spec: ProcessSpec,
    collect: CollectSpec,
    metrics_file: Option<PathBuf>,
    trial: &str,
    channel: Channel,
    stop: oneshot::Receiver<()>,
    early: Option<EarlyStopping>,
) -> Collected {
    let failed = |message: String| Collected {
        exit: ProcessExit::SpawnFailed {
            reason: "CollectorError".into(),
            message,
        },
        stored_rows: None,
    };
    let collector = match collect.collector(trial, channel) {
        Ok(c) => c,
        Err(e) => return failed(e),
    };
    if let Some(f) = &metrics_file
        && let Some(dir) = f.parent()
        && let Err(e) = tokio::fs::create_dir_all(dir).await
    {
        return failed(format!("cannot create {}: {e}", dir.display()));
    }
    let (line_tx, mut line_rx) = mpsc::channel::<String>(1024);
    let (kill_tx, kill_rx) = oneshot::channel::<()>();
    let (exited_tx, exited_rx) = oneshot::channel::<()>();
    // The process stops when the runner asks (or drops its handle) or early stopping does.
    let stop_either = async move {
        tokio::select! {
            _ = stop => {}
            Ok(()) = kill_rx => {}
        }
    };
    // The process and its collector share this task (joined, not spawned): a task of its
    // own cost every trial a spawn and a hand-over between worker threads at its end. A
    // panic in it still ends the trial as Failed instead of leaving it running forever.
    let proc = async move {
        let exit = std::panic::AssertUnwindSafe(process::run(spec, line_tx, stop_either))
            .catch_unwind()
            .await
            .unwrap_or_else(|panic| ProcessExit::Failed {
                reason: "InternalError".into(),
                message: format!("the trial's process driver panicked: {}", panic_text(&*panic)),
            });
        let _ = exited_tx.send(());
        exit
    };
    let mut enforcer = match (&collector, early) {
        (Some(_), Some(early)) => Some(Enforcer::new(early, &collect, kill_tx)),
        _ => {
            // Keep the kill switch unused but alive until the process ends.
            drop(kill_tx);
            None
        }
    };
    let (exit, stored_rows) = match (collect.kind.clone(), collector) {
        (Kind::StdOut, Some(mut c)) => {
            let consume = async {
                while let Some(line) = line_rx.recv().await {
                    if enforcer.as_ref().is_some_and(Enforcer::has_stopped) {
                        continue;
                    }
                    c.push_line(&line);
                    if let Some(e) = enforcer.as_mut() {
                        e.after_line(&mut c).await;
                    }
                }
            };
            let (exit, ()) = tokio::join!(proc, consume);
            (exit, finish(c).await)
        }
        (Kind::File { .. }, Some(mut c)) => {
            let drain = async { while line_rx.recv().await.is_some() {} };
            let path = metrics_file.clone().unwrap_or_default();
            let follow = async {
                let mut follower = FileFollower::new(&path);
                let mut exited = std::pin::pin!(async move {
                    let _ = exited_rx.await;
                });
                loop {
                    match follower.next_line(exited.as_mut()).await {
                        Ok(Some(line)) => {
                            if enforcer.as_ref().is_some_and(Enforcer::has_stopped) {
                                continue;
                            }
                            c.push_line(&line);
                            if let Some(e) = enforcer.as_mut() {
                                e.after_line(&mut c).await;
                            }
                        }
                        Ok(None) => break,
                        Err(e) => {
                            warn!(path = %path.display(), error = %e, "cannot read the metrics file; metrics after this point are lost");
                            break;
                        }
                    }
                }
            };
            let (exit, (), ()) = tokio::join!(proc, drain, follow);
            (exit, finish(c).await)
        }
        _ => {
            let drain = async { while line_rx.recv().await.is_some() {} };
            let (exit, ()) = tokio::join!(proc, drain);
            (exit, None)
        }
    };
    match enforcer {
        // Only a process that was actually stopped counts: one that ended by itself just
        // as its rules were broken has spent its steps anyway.
        Some(mut e) if exit == ProcessExit::Stopped && e.stopped.is_some() => {
            e.set_trial_status(trial).await;
            Collected {
                exit: ProcessExit::EarlyStopped {
                    message: e.stopped.take().unwrap_or_default(),
                },
                stored_rows,
            }
        }
        _ => Collected { exit, stored_rows },
    }
}

/// The message of a caught panic, when it is a string.
fn panic_text(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("no message")
}

/// Reports what the collector still holds; the trial's stored rows if db-manager vouched
/// for them.
async fn finish(collector: Collector) -> Option<Vec<pb::MetricLog>> {
    match collector.finish().await {
        Ok(summary) => summary.stored_rows,
        Err(e) => {
            warn!(error = %e, "metrics could not be reported");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::panic_text;

    /// A trial whose driver panicked is failed with the panic's own words, whether the
    /// payload is a literal or a formatted message.
    #[test]
    fn a_caught_panic_is_described_by_its_message() {
        let literal = std::panic::catch_unwind(|| panic!("pipe vanished")).expect_err("panics");
        assert_eq!(panic_text(&*literal), "pipe vanished");
        let formatted = std::panic::catch_unwind(|| panic!("trial {} lost", 7)).expect_err("panics");
        assert_eq!(panic_text(&*formatted), "trial 7 lost");
        let other = std::panic::catch_unwind(|| std::panic::panic_any(42u8)).expect_err("panics");
        assert_eq!(panic_text(&*other), "no message");
    }
}

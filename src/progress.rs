//! Live progress and the final summary of `katib run`. Progress goes to stderr (a status
//! line redrawn in place on a terminal, plain lines otherwise); stdout is kept for the
//! summary or `--json`.

use std::io::{IsTerminal as _, Write as _};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use katib_api::crd::{Experiment, ExperimentStatus};
use katib_controller::core::TrialClass;
use katib_controller::local::runner::{Event, RunOutcome};
use tokio::sync::mpsc;

pub struct Progress {
    tty: bool,
    quiet: bool,
    objective: String,
    maximize: bool,
    max_trials: Option<i32>,
    /// The latest experiment the runner sent (shared with the recorder, not copied).
    latest: Option<Arc<Experiment>>,
    line_shown: bool,
}

impl Progress {
    pub fn new(exp: &Experiment, quiet: bool) -> Self {
        let objective = exp.spec.objective.clone().unwrap_or_default();
        Progress {
            tty: std::io::stderr().is_terminal(),
            quiet,
            objective: objective.objective_metric_name.clone(),
            maximize: objective.is_maximize(),
            max_trials: exp.spec.max_trial_count,
            latest: None,
            line_shown: false,
        }
    }

    fn status(&self) -> &ExperimentStatus {
        static EMPTY: std::sync::OnceLock<ExperimentStatus> = std::sync::OnceLock::new();
        self.latest
            .as_ref()
            .and_then(|e| e.status.as_ref())
            .unwrap_or_else(|| EMPTY.get_or_init(ExperimentStatus::default))
    }

    fn best(&self) -> String {
        self.status()
            .current_optimal_trial
            .as_ref()
            .and_then(|o| {
                let m = o.observation.metric(&self.objective)?;
                let v = if self.maximize { &m.max } else { &m.min };
                Some(format!("best {}={} ({})", self.objective, v, o.best_trial_name))
            })
            .unwrap_or_else(|| "no result yet".into())
    }

    fn status_line(&self) -> String {
        let s = self.status();
        let done = s.trials_succeeded
            + s.trials_failed
            + s.trials_killed
            + s.trials_early_stopped
            + s.trial_metrics_unavailable;
        let of = self.max_trials.map(|m| format!("/{m}")).unwrap_or_default();
        format!(
            "[{done}{of}] running {} · succeeded {} · failed {} · early stopped {} · metrics unavailable {} · {}",
            s.trials_running + s.trials_pending,
            s.trials_succeeded,
            s.trials_failed,
            s.trials_early_stopped,
            s.trial_metrics_unavailable,
            self.best()
        )
    }

    fn clear(&mut self, err: &mut impl std::io::Write) {
        if self.tty && self.line_shown {
            let _ = write!(err, "\r\x1b[2K");
            self.line_shown = false;
        }
    }

    fn say(&mut self, line: &str) {
        if self.quiet {
            return;
        }
        let mut err = std::io::stderr().lock();
        self.clear(&mut err);
        let _ = writeln!(err, "{line}");
        if self.tty {
            let _ = write!(err, "{}", self.status_line());
            self.line_shown = true;
        }
        let _ = err.flush();
    }

    /// Renders events until the run ends, then hands itself back for the summary.
    pub async fn drive(mut self, mut rx: mpsc::UnboundedReceiver<Event>) -> Self {
        while let Some(ev) = rx.recv().await {
            match ev {
                Event::Status { experiment } => {
                    let (old, new) = (self.status(), experiment.status.as_ref());
                    let changed = new.is_none_or(|new| {
                        new.trials != old.trials
                            || new.trials_running != old.trials_running
                            || new.current_optimal_trial != old.current_optimal_trial
                    });
                    self.latest = Some(experiment);
                    if self.tty && changed && !self.quiet {
                        let mut err = std::io::stderr().lock();
                        self.clear(&mut err);
                        let _ = write!(err, "{}", self.status_line());
                        let _ = err.flush();
                        self.line_shown = true;
                    }
                }
                Event::TrialStarted { name, assignments } => {
                    let params: Vec<String> = assignments
                        .iter()
                        .map(|a| format!("{}={}", a.name, a.value))
                        .collect();
                    self.say(&format!("started   {name}  {}", params.join(" ")));
                }
                Event::TrialFinished {
                    name,
                    class,
                    objective,
                    message,
                } => {
                    let what = match class {
                        TrialClass::Succeeded => "succeeded",
                        TrialClass::Failed => "FAILED",
                        TrialClass::Killed => "killed",
                        TrialClass::EarlyStopped => "early-stopped",
                        TrialClass::MetricsUnavailable => "NO METRICS",
                        TrialClass::Running | TrialClass::Pending => "ended",
                    };
                    let obj = objective
                        .map(|v| format!("  {}={v}", self.objective))
                        .unwrap_or_default();
                    let msg = if message.is_empty() || class == TrialClass::Succeeded {
                        String::new()
                    } else {
                        format!("  ({message})")
                    };
                    self.say(&format!("{what:<9} {name}{obj}{msg}"));
                }
                Event::Trial { .. } => {}
                Event::Exhausted { suggested } => {
                    self.say(&format!(
                        "search space exhausted after {suggested} trial(s); finishing running trials"
                    ));
                }
            }
        }
        if !self.quiet {
            let mut err = std::io::stderr().lock();
            self.clear(&mut err);
        }
        self
    }

    /// Prints the final summary (to stderr when stdout carries `--json`).
    pub fn summary(&self, out: &RunOutcome, elapsed: Duration, run_dir: &Path, json: bool) {
        let mut text = String::new();
        let exp = &out.experiment;
        let status = exp.status.clone().unwrap_or_default();
        let name = exp.metadata.name.clone().unwrap_or_default();
        let last = status.conditions.last();
        if out.interrupted {
            text.push_str(&format!(
                "Experiment {name} interrupted: running trials were stopped.\n"
            ));
        } else if let Some(c) = last {
            text.push_str(&format!(
                "Experiment {name} {} ({}): {}\n",
                c.type_, c.reason, c.message
            ));
        }
        text.push_str(&format!(
            "Trials: {} total, {} succeeded, {} failed, {} killed, {} early stopped, {} metrics unavailable in {:.1}s\n",
            status.trials,
            status.trials_succeeded,
            status.trials_failed,
            status.trials_killed,
            status.trials_early_stopped,
            status.trial_metrics_unavailable,
            elapsed.as_secs_f64()
        ));
        match &status.current_optimal_trial {
            Some(best) => {
                text.push_str(&format!("Best trial: {}\n", best.best_trial_name));
                let width = best
                    .parameter_assignments
                    .iter()
                    .map(|a| a.name.len())
                    .chain(best.observation.metrics.iter().map(|m| m.name.len()))
                    .max()
                    .unwrap_or(0);
                text.push_str(&format!(
                    "  {:<width$}  {:>12}  {:>12}  {:>12}\n",
                    "metric", "min", "max", "latest"
                ));
                for m in &best.observation.metrics {
                    text.push_str(&format!(
                        "  {:<width$}  {:>12}  {:>12}  {:>12}\n",
                        m.name, m.min, m.max, m.latest
                    ));
                }
                text.push_str(&format!("  {:<width$}  value\n", "parameter"));
                for a in &best.parameter_assignments {
                    text.push_str(&format!("  {:<width$}  {}\n", a.name, a.value));
                }
            }
            None => text.push_str("Best trial: none (no trial reported the objective metric)\n"),
        }
        text.push_str(&format!("Trial logs: {}\n", run_dir.display()));
        if json {
            err!("{text}");
        } else {
            out!("{text}");
        }
    }
}

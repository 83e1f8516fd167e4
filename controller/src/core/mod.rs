//! The experiment core: Katib's experiment and trial semantics as pure functions.
//!
//! Given the (defaulted) Experiment, its Trials and what the suggestion side reported,
//! [`decide`] computes the Experiment's new status and what to do next: how many new
//! assignments to request, which trials to stop. [`trial`] turns a job outcome and the
//! observation logs of a trial into its conditions and observation. No I/O happens here;
//! both runtimes (local processes, Kubernetes) carry out what this module decides.
//!
//! Where Katib's behaviour is a known bug, the contract is kept and the behaviour fixed:
//! - MetricsUnavailable trials count as completed when sizing new requests, so the
//!   number of trials never exceeds `maxTrialCount` (Katib can overshoot).
//! - A finite search space that is used up ends the experiment as Succeeded with reason
//!   `ExperimentSuggestionEndReached` (Katib defines the reason but errors forever).
//! - When the experiment completes, trials still running are stopped and marked Killed
//!   (Katib lets them run on).

pub mod trial;

use katib_api::conditions::{self, experiment as ec, trial as tc};
use katib_api::convert::metric_value_ref;
use katib_api::crd::{Experiment, ExperimentStatus, OptimalTrial, Trial, UNAVAILABLE};

/// What the suggestion side has told the runtime so far.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SuggestionState {
    /// The algorithm returned fewer assignments than requested: the search space is used up.
    pub exhausted: bool,
    /// The suggestion service rejected the experiment (e.g. invalid settings).
    pub failed: Option<String>,
}

/// What the runtime should do after a reconcile.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    /// The Experiment's new status.
    pub status: ExperimentStatus,
    /// How many new assignments to request from the suggestion service now.
    pub request: usize,
    /// Trials to stop (their process/job) because the experiment completed.
    pub kill: Vec<String>,
    /// True when the experiment is Succeeded or Failed.
    pub completed: bool,
}

/// The state class of a trial, in Katib's precedence order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrialClass {
    Killed,
    Failed,
    Succeeded,
    EarlyStopped,
    Running,
    MetricsUnavailable,
    Pending,
}

impl TrialClass {
    /// True for every state after which the trial does not run any more.
    pub fn is_completed(self) -> bool {
        !matches!(self, TrialClass::Running | TrialClass::Pending)
    }
}

/// Classifies a trial by its conditions (Killed > Failed > Succeeded > EarlyStopped >
/// Running > MetricsUnavailable > Pending), as Katib's status summary does.
pub fn classify(trial: &Trial) -> TrialClass {
    let c = trial
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    // One pass over the conditions (this runs for every trial on every reconcile): the true
    // ones, by rank, and the best rank wins.
    const ORDER: [(&str, TrialClass); 6] = [
        (tc::KILLED, TrialClass::Killed),
        (tc::FAILED, TrialClass::Failed),
        (tc::SUCCEEDED, TrialClass::Succeeded),
        (tc::EARLY_STOPPED, TrialClass::EarlyStopped),
        (tc::RUNNING, TrialClass::Running),
        (tc::METRICS_UNAVAILABLE, TrialClass::MetricsUnavailable),
    ];
    let mut best = ORDER.len();
    for cond in c.iter().filter(|c| c.status == "True") {
        if let Some(rank) = ORDER[..best].iter().position(|(t, _)| *t == cond.type_) {
            best = rank;
        }
    }
    ORDER.get(best).map_or(TrialClass::Pending, |(_, class)| *class)
}

/// The objective value of a trial by its metric strategy, if available.
pub fn objective_value(exp: &Experiment, trial: &Trial) -> Option<String> {
    objective_str(exp, trial).map(str::to_owned)
}

fn objective_str<'a>(exp: &Experiment, trial: &'a Trial) -> Option<&'a str> {
    let objective = exp.spec.objective.as_ref()?;
    objective_by(
        &objective.objective_metric_name,
        objective.strategy_for(&objective.objective_metric_name),
        trial,
    )
}

/// The trial's value of metric `name` by `strategy`, if available. Callers that walk every
/// trial resolve the strategy once (a lookup by name in the objective's strategies).
fn objective_by<'a>(name: &str, strategy: &str, trial: &'a Trial) -> Option<&'a str> {
    let obs = trial.status.as_ref()?.observation.as_ref()?;
    let v = metric_value_ref(obs.metric(name)?, strategy);
    (v != UNAVAILABLE && !v.is_empty()).then_some(v)
}

/// True when the trial carries a usable objective observation (Katib's
/// `IsObservationAvailable`).
pub fn has_observation(exp: &Experiment, trial: &Trial) -> bool {
    let Some(objective) = exp.spec.objective.as_ref() else {
        return false;
    };
    trial
        .status
        .as_ref()
        .and_then(|s| s.observation.as_ref())
        .and_then(|o| o.metric(&objective.objective_metric_name))
        .is_some_and(|m| m.latest != UNAVAILABLE && !m.latest.is_empty())
}

/// The best trial by Katib's rules: a non-numeric objective wins unconditionally (string
/// metrics such as DARTS genotypes), otherwise strictly better replaces the incumbent.
pub fn optimal_trial<'a>(exp: &Experiment, trials: &'a [Trial]) -> Option<(&'a Trial, Option<f64>)> {
    let (name, strategy) = objective_metric(exp)?;
    let values = trials
        .iter()
        .map(|t| objective_by(name, strategy, t).map(parse_objective));
    best_of(values, is_maximize(exp)).map(|(i, v)| (&trials[i], v))
}

/// The objective metric's name and strategy, resolved once for a walk over the trials.
fn objective_metric(exp: &Experiment) -> Option<(&str, &str)> {
    let objective = exp.spec.objective.as_ref()?;
    let name = objective.objective_metric_name.as_str();
    Some((name, objective.strategy_for(name)))
}

fn is_maximize(exp: &Experiment) -> bool {
    exp.spec.objective.as_ref().is_some_and(|o| o.is_maximize())
}

/// A trial's objective as the optimal-trial rule compares it: a number, or text (`None`).
fn parse_objective(v: &str) -> Option<f64> {
    v.trim().parse::<f64>().ok()
}

/// Katib's rule over the trials' objectives in creation order (`None` for a trial without
/// one, `Some(None)` for a non-numeric one): a non-numeric objective wins unconditionally,
/// otherwise strictly better replaces the incumbent. The index and value of the winner.
fn best_of(
    values: impl IntoIterator<Item = Option<Option<f64>>>,
    maximize: bool,
) -> Option<(usize, Option<f64>)> {
    let mut best: Option<(usize, Option<f64>)> = None;
    for (i, v) in values.into_iter().enumerate() {
        match v {
            None => {}
            Some(None) => best = Some((i, None)),
            Some(Some(x)) => {
                let better = match best {
                    None => true,
                    Some((_, None)) => false,
                    Some((_, Some(b))) => {
                        if maximize {
                            x > b
                        } else {
                            x < b
                        }
                    }
                };
                if better {
                    best = Some((i, Some(x)));
                }
            }
        }
    }
    best
}

/// What a decision needs of each trial (its class and objective), kept between decisions
/// by a runtime that decides after every few trials: [`decide_tallied`] reads a trial's
/// conditions and observation only when the caller says it changed, where
/// [`decide_with`] reads every trial's (string comparisons and number parsing) every
/// time, which made a run of `n` trials cost `n^2` of them.
#[derive(Clone, Debug, Default)]
pub struct Tally {
    seen: Vec<(TrialClass, Option<Option<f64>>)>,
}

impl Tally {
    /// Reads the trials at `changed` and any beyond the ones seen so far.
    fn update(&mut self, exp: &Experiment, trials: &[Trial], changed: &[usize]) {
        let metric = objective_metric(exp);
        let read = |t: &Trial| {
            let value =
                metric.and_then(|(name, strategy)| objective_by(name, strategy, t).map(parse_objective));
            (classify(t), value)
        };
        self.seen.truncate(trials.len());
        for &i in changed {
            if let (Some(seen), Some(t)) = (self.seen.get_mut(i), trials.get(i)) {
                *seen = read(t);
            }
        }
        let known = self.seen.len();
        self.seen.extend(trials[known..].iter().map(read));
    }

    /// Counters and optimal trial into `status` (lists left empty); the optimal trial's
    /// numeric value.
    fn summarize(&self, exp: &Experiment, trials: &[Trial], status: &mut ExperimentStatus) -> Option<f64> {
        for (class, _) in &self.seen {
            *class_fields(status, *class).1 += 1;
        }
        status.trials = trials.len() as i32;
        let optimal = best_of(self.seen.iter().map(|(_, v)| *v), is_maximize(exp));
        status.current_optimal_trial = optimal.map(|(i, _)| optimal_of(&trials[i]));
        optimal.and_then(|(_, v)| v)
    }
}

/// Whether a status carries the trial name lists (`succeededTrialList`, ...).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrialLists {
    /// Every list filled, as Katib's status has them.
    Filled,
    /// Lists left empty; counters, the optimal trial and conditions are complete. For a
    /// runtime that reconciles after every trial and shows the lists only now and then:
    /// building them is a copy of every trial's name, so a run of `n` trials made `n^2`
    /// of them. [`fill_trial_lists`] adds them when the status is shown.
    Omitted,
}

/// Recomputes counters, lists and the optimal trial (Katib's status summary).
pub fn summarize(exp: &Experiment, trials: &[Trial], status: &mut ExperimentStatus) {
    summarize_best(exp, trials, status, TrialLists::Filled);
}

/// Fills the trial name lists of a status made with [`TrialLists::Omitted`] (any lists it
/// has are replaced): afterwards it equals the status [`TrialLists::Filled`] gives.
pub fn fill_trial_lists(status: &mut ExperimentStatus, trials: &[Trial]) {
    for list in [
        &mut status.killed_trial_list,
        &mut status.failed_trial_list,
        &mut status.succeeded_trial_list,
        &mut status.early_stopped_trial_list,
        &mut status.running_trial_list,
        &mut status.metrics_unavailable_trial_list,
        &mut status.pending_trial_list,
    ] {
        list.clear();
    }
    for t in trials {
        class_fields(status, classify(t))
            .0
            .push(t.metadata.name.clone().unwrap_or_default());
    }
}

/// The name list and the counter of `status` for trials of `class`.
fn class_fields(status: &mut ExperimentStatus, class: TrialClass) -> (&mut Vec<String>, &mut i32) {
    match class {
        TrialClass::Killed => (&mut status.killed_trial_list, &mut status.trials_killed),
        TrialClass::Failed => (&mut status.failed_trial_list, &mut status.trials_failed),
        TrialClass::Succeeded => (&mut status.succeeded_trial_list, &mut status.trials_succeeded),
        TrialClass::EarlyStopped => (
            &mut status.early_stopped_trial_list,
            &mut status.trials_early_stopped,
        ),
        TrialClass::Running => (&mut status.running_trial_list, &mut status.trials_running),
        TrialClass::MetricsUnavailable => (
            &mut status.metrics_unavailable_trial_list,
            &mut status.trial_metrics_unavailable,
        ),
        TrialClass::Pending => (&mut status.pending_trial_list, &mut status.trials_pending),
    }
}

/// [`summarize`], returning the optimal trial's numeric objective value (`None` when there is
/// none, or it is not a number).
fn summarize_best(
    exp: &Experiment,
    trials: &[Trial],
    status: &mut ExperimentStatus,
    lists: TrialLists,
) -> Option<f64> {
    let mut s = ExperimentStatus {
        start_time: status.start_time.take(),
        completion_time: status.completion_time.take(),
        last_reconcile_time: status.last_reconcile_time.take(),
        conditions: std::mem::take(&mut status.conditions),
        ..Default::default()
    };
    for t in trials {
        let (list, count) = class_fields(&mut s, classify(t));
        *count += 1;
        if lists == TrialLists::Filled {
            list.push(t.metadata.name.clone().unwrap_or_default());
        }
    }
    s.trials = trials.len() as i32;
    let optimal = optimal_trial(exp, trials);
    let best = optimal.and_then(|(_, v)| v);
    s.current_optimal_trial = optimal.map(|(t, _)| optimal_of(t));
    *status = s;
    best
}

/// The status' record of `t` as the optimal trial.
fn optimal_of(t: &Trial) -> OptimalTrial {
    OptimalTrial {
        best_trial_name: t.metadata.name.clone().unwrap_or_default(),
        parameter_assignments: t.spec.parameter_assignments.clone(),
        observation: t
            .status
            .as_ref()
            .and_then(|s| s.observation.clone())
            .unwrap_or_default(),
    }
}

/// Adds trials that were just created to a status [`decide`] made before they existed: the
/// status `decide` would now make, short of `lastReconcileTime`, without walking every trial
/// again. New trials have no observation, so neither the optimal trial nor the conditions
/// change.
/// With [`TrialLists::Omitted`], only the counters (the status has no lists to add to).
pub fn add_new_trials(status: &mut ExperimentStatus, new: &[Trial], lists: TrialLists) {
    for t in new {
        let (list, count) = class_fields(status, classify(t));
        *count += 1;
        if lists == TrialLists::Filled {
            list.push(t.metadata.name.clone().unwrap_or_default());
        }
        status.trials += 1;
    }
}

fn goal_reached(exp: &Experiment, best: Option<f64>) -> bool {
    let Some(objective) = exp.spec.objective.as_ref() else {
        return false;
    };
    let (Some(goal), Some(best)) = (objective.goal, best) else {
        return false;
    };
    if objective.is_maximize() {
        best >= goal
    } else {
        best <= goal
    }
}

/// One reconcile of an Experiment: new status and next actions. `now` is RFC 3339.
pub fn decide(exp: &Experiment, trials: &[Trial], suggestion: &SuggestionState, now: &str) -> Decision {
    decide_with(exp, trials, suggestion, now, TrialLists::Filled)
}

/// [`decide`], with the status' trial name lists filled or not (see [`TrialLists`]);
/// everything else is the same either way.
pub fn decide_with(
    exp: &Experiment,
    trials: &[Trial],
    suggestion: &SuggestionState,
    now: &str,
    lists: TrialLists,
) -> Decision {
    let mut status = reconciled_status(exp, now);
    let best = summarize_best(exp, trials, &mut status, lists);
    conclude(exp, trials, status, best, suggestion, now)
}

/// [`decide_with`] with [`TrialLists::Omitted`], from a [`Tally`] brought up to date with
/// the trials at `changed` (and any added since its last update) instead of a walk over
/// every trial's conditions and observation: the same decision (test
/// `a_tally_decides_as_a_full_walk_does`).
pub fn decide_tallied(
    exp: &Experiment,
    trials: &[Trial],
    tally: &mut Tally,
    changed: &[usize],
    suggestion: &SuggestionState,
    now: &str,
) -> Decision {
    tally.update(exp, trials, changed);
    let mut status = reconciled_status(exp, now);
    let best = tally.summarize(exp, trials, &mut status);
    conclude(exp, trials, status, best, suggestion, now)
}

/// The status a reconcile starts from: times and conditions kept, `Created` set on the
/// first, `lastReconcileTime` now; counters, lists and the optimal trial still to fill.
fn reconciled_status(exp: &Experiment, now: &str) -> ExperimentStatus {
    // Only what the summary keeps is copied: the trial lists are rebuilt from `trials`.
    let mut status = exp
        .status
        .as_ref()
        .map(|s| ExperimentStatus {
            start_time: s.start_time.clone(),
            completion_time: s.completion_time.clone(),
            last_reconcile_time: None,
            conditions: s.conditions.clone(),
            ..Default::default()
        })
        .unwrap_or_default();
    if !conditions::is_true(&status.conditions, ec::CREATED) {
        status.start_time = Some(now.to_string());
        status.completion_time = None;
        conditions::set(
            &mut status.conditions,
            ec::CREATED,
            true,
            ec::REASON_CREATED,
            ec::MSG_CREATED,
            now,
        );
    }
    status.last_reconcile_time = Some(now.to_string());
    status
}

/// The rest of a reconcile once `status` has its counters and optimal trial (`best` its
/// numeric objective value): the conditions, and how many trials to request or which to stop.
fn conclude(
    exp: &Experiment,
    trials: &[Trial],
    mut status: ExperimentStatus,
    best: Option<f64>,
    suggestion: &SuggestionState,
    now: &str,
) -> Decision {
    let already_done = conditions::is_true(&status.conditions, ec::SUCCEEDED)
        || conditions::is_true(&status.conditions, ec::FAILED);
    let active = (status.trials_pending + status.trials_running) as usize;
    let completed = (status.trials_succeeded
        + status.trials_failed
        + status.trials_killed
        + status.trials_early_stopped
        + status.trial_metrics_unavailable) as usize;
    let spec = &exp.spec;

    if !already_done {
        let failed = (status.trials_failed + status.trial_metrics_unavailable) as usize;
        let terminal: Option<(&str, &str, String)> = if goal_reached(exp, best) {
            Some((
                ec::SUCCEEDED,
                ec::REASON_GOAL_REACHED,
                ec::MSG_GOAL_REACHED.into(),
            ))
        } else if spec
            .max_failed_trial_count
            .is_some_and(|max| failed != 0 && failed >= max.max(0) as usize)
        {
            Some((ec::FAILED, ec::REASON_FAILED, ec::MSG_MAX_FAILED_REACHED.into()))
        } else if let Some(msg) = &suggestion.failed {
            Some((
                ec::FAILED,
                ec::REASON_FAILED,
                format!("{}: {msg}", ec::MSG_SUGGESTION_FAILED),
            ))
        } else if spec
            .max_trial_count
            .is_some_and(|max| completed >= max.max(0) as usize)
        {
            Some((
                ec::SUCCEEDED,
                ec::REASON_MAX_TRIALS_REACHED,
                ec::MSG_MAX_TRIALS_REACHED.into(),
            ))
        } else if suggestion.exhausted && active == 0 {
            Some((
                ec::SUCCEEDED,
                ec::REASON_SUGGESTION_END_REACHED,
                format!(
                    "Experiment has succeeded because the search space is exhausted: every one of the {} \
                     possible assignments was tried",
                    trials.len()
                ),
            ))
        } else {
            None
        };
        match terminal {
            Some((type_, reason, message)) => {
                conditions::set_terminal(&mut status.conditions, type_, reason, &message, now);
                status.completion_time = Some(now.to_string());
            }
            None => conditions::set(
                &mut status.conditions,
                ec::RUNNING,
                true,
                ec::REASON_RUNNING,
                ec::MSG_RUNNING,
                now,
            ),
        }
    }

    let done = conditions::is_true(&status.conditions, ec::SUCCEEDED)
        || conditions::is_true(&status.conditions, ec::FAILED);
    if done {
        let kill = trials
            .iter()
            .filter(|t| !classify(t).is_completed())
            .filter_map(|t| t.metadata.name.clone())
            .collect();
        return Decision {
            status,
            request: 0,
            kill,
            completed: true,
        };
    }

    let parallel = spec.parallel_trial_count.unwrap_or(3).max(1) as usize;
    let required = match spec.max_trial_count {
        Some(max) => (max.max(0) as usize).saturating_sub(completed).min(parallel),
        None => parallel,
    };
    let request = if suggestion.exhausted {
        0
    } else {
        required.saturating_sub(active)
    };
    Decision {
        status,
        request,
        kill: Vec::new(),
        completed: false,
    }
}

/// Trials to send to the suggestion service: every trial except MetricsUnavailable ones
/// and early-stopped ones without an objective observation (Katib's filter).
pub fn trials_for_suggestion<'a>(exp: &Experiment, trials: &'a [Trial]) -> Vec<&'a Trial> {
    trials.iter().filter(|t| is_suggestion_input(exp, t)).collect()
}

/// Whether `trial` belongs in [`trials_for_suggestion`].
pub fn is_suggestion_input(exp: &Experiment, trial: &Trial) -> bool {
    match classify(trial) {
        TrialClass::MetricsUnavailable => false,
        TrialClass::EarlyStopped => has_observation(exp, trial),
        _ => true,
    }
}

#[cfg(test)]
mod tests;

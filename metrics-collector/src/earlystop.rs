//! Early-stopping rules, enforced while a trial's metrics stream in.
//!
//! An early-stopping service (Katib's `EarlyStopping` gRPC API) answers
//! `GetEarlyStoppingRules` with [`pb::EarlyStoppingRule`]s: `{name, value, comparison,
//! start_step}`. [`StopRules`] keeps a trial's rules and what it has reported so far, and
//! says after each line whether the trial must stop ([`StopRules::observe`]).
//! [`EarlyStopper`] wraps it for a live trial: it asks a [`RuleSource`] for fresh rules when
//! the trial reaches a checkpoint, and decides.
//!
//! # How a rule is evaluated
//!
//! - A rule compares one metric's value with `value` by `comparison` (`less`: value <
//!   rule, `greater`: value >, `equal`: ==). For the objective metric the value compared is
//!   the best so far (max for maximize, min for minimize), as in Katib; for any other metric
//!   it is the latest value.
//! - A rule's *step* is the number of values the trial has reported for the rule's metric
//!   (Katib's `start_step` unit), or, when a step metric is set (`resource_metric`, see
//!   below), the latest value of that metric. A rule is *armed* once the step reaches
//!   `start_step` (`start_step` 0: from the first value).
//! - Rules on the same metric with different `start_step`s are checkpoints: of the armed
//!   ones only those with the largest `start_step` count, so a later checkpoint replaces an
//!   earlier one and a checkpoint not reached yet does not hold the trial back. This is how
//!   successive halving's rungs are written as Katib rules (one per rung).
//! - The trial stops when, for every metric that has rules, an armed checkpoint exists and
//!   all its rules hold on the current value.
//!
//! # Differences from Katib's file metrics collector, on purpose
//!
//! - Katib evaluates a rule with `start_step` exactly once, at the `start_step`-th report
//!   (a countdown that is never reset), and a rule that held once stays "held" for good.
//!   Here armed rules are evaluated on every report with the values of that moment, so a
//!   trial that receives its rules late (they are refreshed, below) is still checked.
//! - Katib applies rules only as an AND of all of them, so several rungs on one metric
//!   cannot be expressed; checkpoints (above) make them work. For one rule, or rules on
//!   different metrics with one `start_step` each, the result is Katib's.
//! - Katib attaches rules once, when the trial is created. [`EarlyStopper`] also asks for
//!   fresh rules when the trial reaches a checkpoint (so successive-halving cutoffs reflect
//!   the trials that reached the rung meanwhile), and, while it has no rules at all, at
//!   most every [`EarlyStopper::IDLE_REFRESH`] (so a median rule that needed more finished
//!   trials reaches trials already running).
//! - Values that are not numbers are ignored (Katib's collector exits with an error).

use std::collections::HashMap;
use std::time::Duration;

use katib_api::pb;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::collector::{Collector, ObjectiveType};

/// How a rule compares the metric's value with its threshold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Comparison {
    /// Holds when value == threshold.
    Equal,
    /// Holds when value < threshold.
    Less,
    /// Holds when value > threshold.
    Greater,
}

impl Comparison {
    /// Reads the CRD spelling (`equal`, `less`, `greater`).
    pub fn from_katib(s: &str) -> Option<Self> {
        match s {
            "equal" => Some(Self::Equal),
            "less" => Some(Self::Less),
            "greater" => Some(Self::Greater),
            _ => None,
        }
    }

    /// Reads the proto enum (`EQUAL`, `LESS`, `GREATER`; `UNKNOWN_COMPARISON` is `None`).
    pub fn from_pb(value: i32) -> Option<Self> {
        match pb::ComparisonType::try_from(value).ok()? {
            pb::ComparisonType::Equal => Some(Self::Equal),
            pb::ComparisonType::Less => Some(Self::Less),
            pb::ComparisonType::Greater => Some(Self::Greater),
            pb::ComparisonType::UnknownComparison => None,
        }
    }

    /// The CRD spelling.
    pub fn as_katib(self) -> &'static str {
        match self {
            Self::Equal => "equal",
            Self::Less => "less",
            Self::Greater => "greater",
        }
    }

    /// The symbol, for messages.
    pub fn symbol(self) -> &'static str {
        match self {
            Self::Equal => "==",
            Self::Less => "<",
            Self::Greater => ">",
        }
    }

    /// True when `value <comparison> threshold`.
    pub fn holds(self, value: f64, threshold: f64) -> bool {
        match self {
            Self::Equal => value == threshold,
            Self::Less => value < threshold,
            Self::Greater => value > threshold,
        }
    }
}

/// One early-stopping rule, parsed.
#[derive(Clone, Debug, PartialEq)]
pub struct StopRule {
    /// The metric it looks at.
    pub metric: String,
    /// The threshold. `-inf`/`inf` make a rule that never holds (a checkpoint whose
    /// threshold is not known yet).
    pub value: f64,
    /// How the metric's value is compared with the threshold.
    pub comparison: Comparison,
    /// The step from which the rule applies (0: from the first value).
    pub start_step: u32,
}

/// A rule that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    /// The threshold is not a number.
    #[error("early-stopping rule on {metric:?}: value {value:?} is not a number")]
    Value {
        /// The rule's metric.
        metric: String,
        /// The value given.
        value: String,
    },
    /// The comparison is not equal, less or greater.
    #[error("early-stopping rule on {metric:?}: comparison {comparison:?} must be equal, less or greater")]
    Comparison {
        /// The rule's metric.
        metric: String,
        /// The comparison given.
        comparison: String,
    },
    /// The start step is negative.
    #[error("early-stopping rule on {metric:?}: start_step {start_step} must not be negative")]
    StartStep {
        /// The rule's metric.
        metric: String,
        /// The step given.
        start_step: i32,
    },
    /// The metric name is empty.
    #[error("early-stopping rule without a metric name")]
    NoMetric,
}

impl StopRule {
    fn new(
        metric: &str,
        value: &str,
        comparison: Result<Comparison, String>,
        start_step: i32,
    ) -> Result<Self, RuleError> {
        if metric.is_empty() {
            return Err(RuleError::NoMetric);
        }
        let comparison = comparison.map_err(|comparison| RuleError::Comparison {
            metric: metric.to_owned(),
            comparison,
        })?;
        let value = value
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|v| !v.is_nan())
            .ok_or_else(|| RuleError::Value {
                metric: metric.to_owned(),
                value: value.to_owned(),
            })?;
        let start_step = u32::try_from(start_step).map_err(|_| RuleError::StartStep {
            metric: metric.to_owned(),
            start_step,
        })?;
        Ok(Self {
            metric: metric.to_owned(),
            value,
            comparison,
            start_step,
        })
    }

    /// A rule from the gRPC message.
    pub fn from_pb(rule: &pb::EarlyStoppingRule) -> Result<Self, RuleError> {
        let comparison = Comparison::from_pb(rule.comparison).ok_or_else(|| {
            pb::ComparisonType::try_from(rule.comparison)
                .map(|c| c.as_str_name().to_owned())
                .unwrap_or_else(|_| rule.comparison.to_string())
        });
        Self::new(&rule.name, &rule.value, comparison, rule.start_step)
    }

    /// A rule from a Trial's `spec.earlyStoppingRules`.
    pub fn from_crd(rule: &katib_api::crd::EarlyStoppingRule) -> Result<Self, RuleError> {
        let comparison = Comparison::from_katib(&rule.comparison).ok_or_else(|| rule.comparison.clone());
        Self::new(&rule.name, &rule.value, comparison, rule.start_step)
    }
}

impl std::fmt::Display for StopRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} {} from step {}",
            self.metric,
            self.comparison.symbol(),
            self.value,
            self.start_step
        )
    }
}

/// Parses every rule, logging and skipping the ones that cannot be used.
pub fn parse_rules<'a, T: 'a>(
    rules: impl IntoIterator<Item = &'a T>,
    parse: impl Fn(&T) -> Result<StopRule, RuleError>,
) -> Vec<StopRule> {
    rules
        .into_iter()
        .filter_map(|r| match parse(r) {
            Ok(rule) => Some(rule),
            Err(e) => {
                warn!(error = %e, "ignoring an early-stopping rule");
                None
            }
        })
        .collect()
}

/// What [`StopRules::observe`] concluded from a line.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    /// Nothing to do.
    Continue,
    /// Ask for fresh rules, set them, then [`StopRules::evaluate`].
    Refresh(RefreshReason),
    /// The trial broke its rules; the text says how.
    Stop(String),
}

/// Why fresh rules are wanted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefreshReason {
    /// The trial reached a rule's `start_step`: the threshold of that checkpoint may have
    /// moved since the rules were fetched.
    Checkpoint,
    /// The trial has no rules and reported its objective (rate-limit these).
    NoRules,
}

#[derive(Clone, Debug, Default)]
struct MetricState {
    reports: u64,
    latest: Option<f64>,
    best: Option<f64>,
}

/// A trial's rules and what it has reported so far; pure, no I/O and no clock.
#[derive(Clone, Debug)]
pub struct StopRules {
    objective: String,
    objective_type: ObjectiveType,
    step_metric: Option<String>,
    rules: Vec<StopRule>,
    metrics: HashMap<String, MetricState>,
}

impl StopRules {
    /// Rules for a trial whose objective is `objective`. With `step_metric`, a rule's step
    /// is that metric's latest value instead of the number of values reported.
    pub fn new(
        objective: impl Into<String>,
        objective_type: ObjectiveType,
        step_metric: Option<String>,
        rules: Vec<StopRule>,
    ) -> Self {
        Self {
            objective: objective.into(),
            objective_type,
            step_metric: step_metric.filter(|m| !m.is_empty()),
            rules,
            metrics: HashMap::new(),
        }
    }

    /// The current rules.
    pub fn rules(&self) -> &[StopRule] {
        &self.rules
    }

    /// Replaces the rules (after a refresh); what was reported is kept.
    pub fn set_rules(&mut self, rules: Vec<StopRule>) {
        self.rules = rules;
    }

    /// The step of `metric` now.
    fn step(&self, metric: &str) -> f64 {
        match &self.step_metric {
            Some(m) => self.metrics.get(m).and_then(|s| s.latest).unwrap_or(0.0),
            None => self.metrics.get(metric).map_or(0.0, |s| s.reports as f64),
        }
    }

    /// Takes the `(name, value)` pairs of one line (in order) and says what to do.
    pub fn observe(&mut self, observed: &[(String, String)]) -> Verdict {
        let watched: Vec<bool> = observed
            .iter()
            .map(|(name, _)| {
                *name == self.objective
                    || self.step_metric.as_deref() == Some(name.as_str())
                    || self.rules.iter().any(|r| r.metric == *name)
            })
            .collect();
        if !watched.contains(&true) {
            return Verdict::Continue;
        }
        let before: Vec<f64> = self.rules.iter().map(|r| self.step(&r.metric)).collect();
        let objective_type = self.objective_type;
        let mut objective_reported = false;
        for ((name, value), watched) in observed.iter().zip(watched) {
            let Ok(v) = value.trim().parse::<f64>() else {
                continue;
            };
            if v.is_nan() || !watched {
                continue;
            }
            let is_objective = *name == self.objective;
            let state = self.metrics.entry(name.clone()).or_default();
            state.reports += 1;
            state.latest = Some(v);
            if is_objective {
                objective_reported = true;
                let better = match objective_type {
                    ObjectiveType::Maximize => state.best.is_none_or(|b| v > b),
                    ObjectiveType::Minimize => state.best.is_none_or(|b| v < b),
                };
                if better {
                    state.best = Some(v);
                }
            }
        }
        if self.rules.is_empty() {
            return if objective_reported {
                Verdict::Refresh(RefreshReason::NoRules)
            } else {
                Verdict::Continue
            };
        }
        let crossed = self.rules.iter().zip(&before).any(|(r, &b)| {
            let start = f64::from(r.start_step);
            r.start_step > 0 && b < start && self.step(&r.metric) >= start
        });
        if crossed {
            return Verdict::Refresh(RefreshReason::Checkpoint);
        }
        match self.evaluate() {
            Some(why) => Verdict::Stop(why),
            None => Verdict::Continue,
        }
    }

    /// `Some(why)` when the trial breaks its rules now (see the module docs).
    pub fn evaluate(&self) -> Option<String> {
        if self.rules.is_empty() {
            return None;
        }
        let mut metrics: Vec<&str> = self.rules.iter().map(|r| r.metric.as_str()).collect();
        metrics.sort_unstable();
        metrics.dedup();
        let mut why = Vec::with_capacity(metrics.len());
        for metric in metrics {
            let step = self.step(metric);
            let checkpoint = self
                .rules
                .iter()
                .filter(|r| r.metric == metric && f64::from(r.start_step) <= step)
                .map(|r| r.start_step)
                .max()?;
            let state = self.metrics.get(metric)?;
            let (value, what) = if metric == self.objective {
                (state.best?, "best so far")
            } else {
                (state.latest?, "latest")
            };
            for rule in self
                .rules
                .iter()
                .filter(|r| r.metric == metric && r.start_step == checkpoint)
            {
                if !rule.comparison.holds(value, rule.value) {
                    return None;
                }
                why.push(format!(
                    "{metric}={value} ({what}) {} {} at step {step}",
                    rule.comparison.symbol(),
                    rule.value
                ));
            }
        }
        Some(why.join(" and "))
    }
}

/// Where fresh rules come from (the trial's early-stopping service).
#[tonic::async_trait]
pub trait RuleSource: Send {
    /// The rules for this trial now.
    async fn rules(&mut self) -> Result<Vec<pb::EarlyStoppingRule>, tonic::Status>;
}

/// [`StopRules`] for a live trial: refreshes rules from a [`RuleSource`] at checkpoints
/// (and while there are none), and decides after each line.
pub struct EarlyStopper {
    rules: StopRules,
    source: Option<Box<dyn RuleSource>>,
    last_refresh: Option<Instant>,
}

impl std::fmt::Debug for EarlyStopper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EarlyStopper")
            .field("rules", &self.rules)
            .field("refreshes", &self.source.is_some())
            .finish()
    }
}

impl EarlyStopper {
    /// The shortest time between two refreshes while a trial has no rules.
    pub const IDLE_REFRESH: Duration = Duration::from_secs(2);

    /// Enforces `rules`, refreshing them from `source` when given.
    pub fn new(rules: StopRules, source: Option<Box<dyn RuleSource>>) -> Self {
        Self {
            rules,
            source,
            last_refresh: Some(Instant::now()),
        }
    }

    /// The rules now.
    pub fn rules(&self) -> &StopRules {
        &self.rules
    }

    /// Call after each [`Collector::push_line`]: `Some(why)` when the trial must stop.
    pub async fn check(&mut self, collector: &mut Collector) -> Option<String> {
        let verdict = self.rules.observe(collector.observed());
        let reason = match verdict {
            Verdict::Continue => return None,
            Verdict::Stop(why) => return Some(why),
            Verdict::Refresh(reason) => reason,
        };
        let Some(source) = self.source.as_mut() else {
            return self.rules.evaluate();
        };
        if reason == RefreshReason::NoRules
            && self
                .last_refresh
                .is_some_and(|t| t.elapsed() < Self::IDLE_REFRESH)
        {
            return None;
        }
        // The service reads this trial's values from db-manager: send them first.
        collector.flush().await;
        self.last_refresh = Some(Instant::now());
        match source.rules().await {
            Ok(rules) => {
                let rules = parse_rules(&rules, StopRule::from_pb);
                if rules != self.rules.rules() {
                    let shown: Vec<String> = rules.iter().map(ToString::to_string).collect();
                    debug!(?reason, rules = ?shown, "early-stopping rules refreshed");
                }
                self.rules.set_rules(rules);
            }
            Err(status) => {
                warn!(code = ?status.code(), message = status.message(), "cannot refresh early-stopping rules; keeping the current ones");
            }
        }
        let why = self.rules.evaluate();
        if let Some(why) = &why {
            info!(%why, "trial breaks its early-stopping rules");
        }
        why
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(metric: &str, value: f64, comparison: Comparison, start_step: u32) -> StopRule {
        StopRule {
            metric: metric.into(),
            value,
            comparison,
            start_step,
        }
    }

    fn line(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect()
    }

    /// Feeds one objective value per line; returns the verdict of each line, refreshing
    /// with the same rules when asked (as a service whose answer did not change would).
    fn feed(rules: &mut StopRules, metric: &str, values: &[f64]) -> Vec<Verdict> {
        values
            .iter()
            .map(|v| match rules.observe(&line(&[(metric, &v.to_string())])) {
                Verdict::Refresh(_) => rules.evaluate().map_or(Verdict::Continue, Verdict::Stop),
                other => other,
            })
            .collect()
    }

    fn stops_at(verdicts: &[Verdict]) -> Option<usize> {
        verdicts
            .iter()
            .position(|v| matches!(v, Verdict::Stop(_)))
            .map(|i| i + 1)
    }

    #[test]
    fn parses_pb_and_crd_rules_and_rejects_bad_ones() {
        let r = StopRule::from_pb(&pb::EarlyStoppingRule {
            name: "acc".into(),
            value: "0.5".into(),
            comparison: pb::ComparisonType::Less as i32,
            start_step: 4,
        })
        .unwrap();
        assert_eq!(r, rule("acc", 0.5, Comparison::Less, 4));
        let r = StopRule::from_crd(&katib_api::crd::EarlyStoppingRule {
            name: "loss".into(),
            value: "-inf".into(),
            comparison: "greater".into(),
            start_step: 0,
        })
        .unwrap();
        assert_eq!(r.value, f64::NEG_INFINITY);
        let bad = |name: &str, value: &str, comparison: i32, start_step| {
            StopRule::from_pb(&pb::EarlyStoppingRule {
                name: name.into(),
                value: value.into(),
                comparison,
                start_step,
            })
            .unwrap_err()
            .to_string()
        };
        assert_eq!(
            bad("acc", "x", 2, 1),
            "early-stopping rule on \"acc\": value \"x\" is not a number"
        );
        assert!(bad("acc", "1", 0, 1).contains("UNKNOWN_COMPARISON"));
        assert!(bad("acc", "1", 2, -1).contains("start_step -1"));
        assert_eq!(bad("", "1", 2, 1), "early-stopping rule without a metric name");
    }

    #[test]
    fn median_rule_maximize_stops_a_trial_below_the_threshold_at_start_step() {
        let mut rules = StopRules::new(
            "acc",
            ObjectiveType::Maximize,
            None,
            vec![rule("acc", 0.6, Comparison::Less, 3)],
        );
        let v = feed(&mut rules, "acc", &[0.2, 0.3, 0.4, 0.9]);
        assert_eq!(stops_at(&v), Some(3));
        assert_eq!(v[0], Verdict::Continue, "not armed before start_step");
        let Verdict::Stop(why) = &v[2] else { panic!() };
        assert_eq!(why, "acc=0.4 (best so far) < 0.6 at step 3");
    }

    #[test]
    fn best_so_far_is_compared_for_the_objective_in_both_directions() {
        // Maximize: an early peak above the threshold keeps the trial alive.
        let mut max = StopRules::new(
            "acc",
            ObjectiveType::Maximize,
            None,
            vec![rule("acc", 0.6, Comparison::Less, 2)],
        );
        assert_eq!(stops_at(&feed(&mut max, "acc", &[0.7, 0.1, 0.1, 0.1])), None);
        // Minimize: the best is the minimum; a loss that never gets below 0.5 is stopped.
        let mut min = StopRules::new(
            "loss",
            ObjectiveType::Minimize,
            None,
            vec![rule("loss", 0.5, Comparison::Greater, 2)],
        );
        assert_eq!(stops_at(&feed(&mut min, "loss", &[0.9, 0.8, 0.7])), Some(2));
        let mut min = StopRules::new(
            "loss",
            ObjectiveType::Minimize,
            None,
            vec![rule("loss", 0.5, Comparison::Greater, 2)],
        );
        assert_eq!(stops_at(&feed(&mut min, "loss", &[0.9, 0.4, 0.7])), None);
    }

    #[test]
    fn ties_do_not_stop_for_less_and_greater() {
        let mut rules = StopRules::new(
            "acc",
            ObjectiveType::Maximize,
            None,
            vec![rule("acc", 0.5, Comparison::Less, 1)],
        );
        assert_eq!(stops_at(&feed(&mut rules, "acc", &[0.5, 0.5])), None);
        let mut rules = StopRules::new(
            "acc",
            ObjectiveType::Maximize,
            None,
            vec![rule("acc", 0.5, Comparison::Equal, 1)],
        );
        assert_eq!(stops_at(&feed(&mut rules, "acc", &[0.5])), Some(1));
    }

    #[test]
    fn rules_arriving_late_still_apply_unlike_katib_once_only_countdown() {
        let mut rules = StopRules::new("acc", ObjectiveType::Maximize, None, vec![]);
        // No rules: the stopper is asked to refresh when the objective is reported.
        assert_eq!(
            rules.observe(&line(&[("acc", "0.1")])),
            Verdict::Refresh(RefreshReason::NoRules)
        );
        assert_eq!(rules.observe(&line(&[("other", "1")])), Verdict::Continue);
        for v in ["0.2", "0.3", "0.3", "0.3"] {
            rules.observe(&line(&[("acc", v)]));
        }
        // Step 5, past start_step 4: Katib's countdown would never fire again.
        rules.set_rules(vec![rule("acc", 0.6, Comparison::Less, 4)]);
        assert!(rules.evaluate().is_some());
        assert!(matches!(
            rules.observe(&line(&[("acc", "0.35")])),
            Verdict::Stop(_)
        ));
    }

    #[test]
    fn checkpoints_replace_earlier_ones_and_ask_for_a_refresh_when_reached() {
        // Successive-halving rungs at steps 1, 3 and 9; rung 9 has no cutoff yet.
        let rungs = vec![
            rule("acc", 0.5, Comparison::Less, 1),
            rule("acc", 0.7, Comparison::Less, 3),
            rule("acc", f64::NEG_INFINITY, Comparison::Less, 9),
        ];
        let mut rules = StopRules::new("acc", ObjectiveType::Maximize, None, rungs);
        assert_eq!(
            rules.observe(&line(&[("acc", "0.6")])),
            Verdict::Refresh(RefreshReason::Checkpoint)
        );
        assert_eq!(rules.evaluate(), None, "0.6 passes rung 1");
        assert_eq!(rules.observe(&line(&[("acc", "0.65")])), Verdict::Continue);
        assert_eq!(
            rules.observe(&line(&[("acc", "0.66")])),
            Verdict::Refresh(RefreshReason::Checkpoint)
        );
        assert_eq!(
            rules.evaluate().unwrap(),
            "acc=0.66 (best so far) < 0.7 at step 3"
        );
        // Another trial that passes rung 3 is never judged by rung 1 again, and the
        // rung without a cutoff cannot stop it.
        let mut rules = StopRules::new(
            "acc",
            ObjectiveType::Maximize,
            None,
            vec![
                rule("acc", 0.95, Comparison::Less, 1),
                rule("acc", 0.7, Comparison::Less, 3),
                rule("acc", f64::NEG_INFINITY, Comparison::Less, 9),
            ],
        );
        rules.metrics.insert(
            "acc".into(),
            MetricState {
                reports: 2,
                latest: Some(0.8),
                best: Some(0.8),
            },
        );
        assert_eq!(
            feed(&mut rules, "acc", &[0.8; 10])
                .iter()
                .filter(|v| matches!(v, Verdict::Stop(_)))
                .count(),
            0
        );
    }

    #[test]
    fn rules_on_different_metrics_must_all_hold() {
        // Katib's example: stop at epoch 9 if accuracy is still below 0.8.
        let mut rules = StopRules::new(
            "accuracy",
            ObjectiveType::Maximize,
            None,
            vec![
                rule("accuracy", 0.8, Comparison::Less, 0),
                rule("epoch", 9.0, Comparison::Equal, 0),
            ],
        );
        for e in 1..9 {
            let v = rules.observe(&line(&[("epoch", &e.to_string()), ("accuracy", "0.5")]));
            assert_eq!(v, Verdict::Continue, "epoch {e}");
        }
        let v = rules.observe(&line(&[("epoch", "9"), ("accuracy", "0.5")]));
        assert_eq!(
            v,
            Verdict::Stop(
                "accuracy=0.5 (best so far) < 0.8 at step 9 and epoch=9 (latest) == 9 at step 9".into()
            )
        );
    }

    #[test]
    fn a_step_metric_measures_steps_by_its_value() {
        // Resource = epoch; accuracy is printed twice per epoch.
        let mut rules = StopRules::new(
            "acc",
            ObjectiveType::Maximize,
            Some("epoch".into()),
            vec![rule("acc", 0.5, Comparison::Less, 2)],
        );
        assert_eq!(
            rules.observe(&line(&[("epoch", "1"), ("acc", "0.1")])),
            Verdict::Continue
        );
        assert_eq!(
            rules.observe(&line(&[("epoch", "1"), ("acc", "0.2")])),
            Verdict::Continue
        );
        assert_eq!(
            rules.observe(&line(&[("epoch", "2"), ("acc", "0.3")])),
            Verdict::Refresh(RefreshReason::Checkpoint)
        );
        assert!(rules.evaluate().is_some());
    }

    #[test]
    fn junk_values_and_unrelated_metrics_are_ignored() {
        let mut rules = StopRules::new(
            "acc",
            ObjectiveType::Maximize,
            None,
            vec![rule("acc", 0.5, Comparison::Less, 2)],
        );
        assert_eq!(rules.observe(&line(&[("acc", "nan")])), Verdict::Continue);
        assert_eq!(rules.observe(&line(&[("acc", "abc")])), Verdict::Continue);
        assert_eq!(rules.observe(&line(&[("loss", "9")])), Verdict::Continue);
        assert_eq!(rules.observe(&line(&[("acc", "0.1")])), Verdict::Continue);
        assert!(matches!(
            rules.observe(&line(&[("acc", "0.1")])),
            Verdict::Refresh(RefreshReason::Checkpoint)
        ));
    }
}

//! `asha`: asynchronous successive halving (Li et al., "A System for Massively Parallel
//! Hyperparameter Tuning", MLSys 2020), in its stopping form (as Ray Tune's
//! `AsyncHyperBandScheduler` and Optuna's `SuccessiveHalvingPruner`).
//!
//! Rungs sit at resources `min_resource * eta^k` below `max_resource` (with the defaults
//! and `max_resource: 27`: 1, 3, 9). When a trial reaches a rung, its objective there (the
//! best value so far) is compared with every value recorded at that rung, its own
//! included: it continues if it is among the best `ceil(n / eta)` of those `n` values and
//! is stopped otherwise. The first trial at a rung always continues; no trial is judged
//! again at a rung it has passed.
//!
//! # As Katib rules
//!
//! Each rung is one [`pb::EarlyStoppingRule`]: `{objective, cutoff, LESS (maximize) |
//! GREATER (minimize), start_step: rung}`, where the cutoff is the `ceil(n/eta)`-th best
//! value recorded at the rung. A rung nobody has reached yet is sent with a cutoff that
//! cannot stop anyone (`-inf` for LESS, `inf` for GREATER), so the collector still knows
//! where the rung is. katib-rs's collector treats rules on one metric as checkpoints
//! (the armed one with the largest `start_step` applies) and asks this service for fresh
//! rules when the trial reaches a rung, so cutoffs include every trial that got there
//! first; the trial flushes its values to db-manager before asking, so its own value is
//! among the `n`. Katib's own collector ANDs all rules and evaluates each once, so it can
//! only apply one rung; use katib-rs's collector for ASHA.
//!
//! # Settings
//!
//! - `eta` (default 3, integer >= 2): the reduction factor; the top `1/eta` continue.
//! - `min_resource` (default `max_resource / eta^2`, at least 1; integer >= 1): the first
//!   rung. Katib-era ASHA examples use 1; the bench shows a rung that early losing the best
//!   trial on noisy curves, so the default leaves three rungs.
//! - `max_resource` (required, integer > `min_resource`): the resource at which a trial is
//!   complete (its number of epochs, say); rungs stay below it.
//! - `resource_metric` (default: none): the resource is the number of objective values a
//!   trial has reported (Katib's `start_step` unit). Name a metric the trainer reports
//!   (e.g. `epoch`, listed in `additionalMetricNames`) to measure the resource by its value
//!   instead.

use katib_api::pb;

use super::{Objective, TrialCurve, rule, setting_problems};
use crate::algorithm::TrialCondition;
use crate::error::SettingsError;

/// The algorithm name.
pub const NAME: &str = "asha";

/// `asha` settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Reduction factor.
    pub eta: u32,
    /// First rung.
    pub min_resource: u32,
    /// Resource at which a trial is complete; rungs are below it.
    pub max_resource: u32,
    /// The metric whose value is the resource; `None`: the number of objective values.
    pub resource_metric: Option<String>,
}

impl Settings {
    /// Reads and validates the settings, reporting every problem.
    pub fn from_katib(settings: &[pb::EarlyStoppingSetting]) -> Result<Self, SettingsError> {
        let mut problems = Vec::new();
        let mut eta = 3_u32;
        let mut min_resource: Option<u32> = None;
        let mut max_resource: Option<u32> = None;
        let mut resource_metric = None;
        let int = |name: &str, value: &str, min: i64, what: &str, problems: &mut Vec<String>| match value
            .parse::<i64>()
        {
            Ok(n) if n >= min && n <= i64::from(i32::MAX) => Some(n as u32),
            _ => {
                problems.push(format!(
                    "asha: {name} {value:?} must be an integer >= {min}: {what}"
                ));
                None
            }
        };
        for s in settings {
            let value = s.value.trim();
            match s.name.as_str() {
                "eta" => {
                    if let Some(v) = int(
                        "eta",
                        value,
                        2,
                        "the reduction factor (only the top 1/eta of the trials at a rung continue), e.g. 3",
                        &mut problems,
                    ) {
                        eta = v;
                    }
                }
                "min_resource" => {
                    if let Some(v) = int(
                        "min_resource",
                        value,
                        1,
                        "the resource of the first rung, e.g. 1",
                        &mut problems,
                    ) {
                        min_resource = Some(v);
                    }
                }
                "max_resource" => {
                    max_resource = int(
                        "max_resource",
                        value,
                        2,
                        "the resource at which a trial is complete, e.g. its number of epochs",
                        &mut problems,
                    );
                    if max_resource.is_none() {
                        max_resource = Some(0); // reported; do not also report it missing
                    }
                }
                "resource_metric" => resource_metric = (!value.is_empty()).then(|| value.to_owned()),
                other => problems.push(setting_problems::unknown(
                    NAME,
                    other,
                    &["eta", "min_resource", "max_resource", "resource_metric"],
                )),
            }
        }
        // Default first rung: max_resource / eta^2 (at least 1), i.e. three rungs. A first
        // rung at 1 stops on the noisiest values; the bench shows it losing the best trial.
        let min_resource = min_resource.unwrap_or_else(|| {
            let max = max_resource.unwrap_or_default();
            (max / eta.saturating_mul(eta).max(1)).max(1)
        });
        match max_resource {
            None => problems.push(
                "asha: max_resource is required: the resource (number of reported values, or the value of \
                 resource_metric) at which a trial is complete, e.g. its number of epochs"
                    .to_owned(),
            ),
            Some(max) if max > 0 && max <= min_resource => problems.push(format!(
                "asha: max_resource {max} must be greater than min_resource {min_resource}, or there is no rung"
            )),
            _ => {}
        }
        SettingsError::check(problems)?;
        Ok(Settings {
            eta,
            min_resource,
            max_resource: max_resource.unwrap_or_default(),
            resource_metric,
        })
    }

    /// Every trial's values count, whatever its condition.
    pub fn wants(&self, _condition: TrialCondition) -> bool {
        true
    }

    /// The rungs: `min_resource * eta^k` below `max_resource`.
    pub fn rungs(&self) -> Vec<u32> {
        let mut rungs = Vec::new();
        let mut r = u64::from(self.min_resource);
        while r < u64::from(self.max_resource) {
            rungs.push(r as u32);
            r *= u64::from(self.eta);
        }
        rungs
    }

    /// The cutoff at `rung`: the `ceil(n/eta)`-th best of the `n` values recorded there,
    /// or `None` if no trial has reached it.
    pub fn cutoff(&self, objective: &Objective, curves: &[TrialCurve], rung: u32) -> Option<f64> {
        let mut values: Vec<f64> = curves
            .iter()
            .filter_map(|c| rung_value(objective, c, rung))
            .collect();
        if values.is_empty() {
            return None;
        }
        if objective.maximize {
            values.sort_by(|a, b| b.total_cmp(a));
        } else {
            values.sort_by(f64::total_cmp);
        }
        let keep = values.len().div_ceil(self.eta as usize);
        Some(values[keep - 1])
    }

    /// One rule per rung (see the module docs).
    pub fn rules(&self, objective: &Objective, curves: &[TrialCurve]) -> Vec<pb::EarlyStoppingRule> {
        let never = if objective.maximize {
            f64::NEG_INFINITY
        } else {
            f64::INFINITY
        };
        self.rungs()
            .into_iter()
            .map(|r| rule(objective, self.cutoff(objective, curves, r).unwrap_or(never), r))
            .collect()
    }
}

/// A trial's value at `rung`: its best objective value up to the first point whose
/// resource reaches the rung; `None` if it has not reached the rung.
pub fn rung_value(objective: &Objective, curve: &TrialCurve, rung: u32) -> Option<f64> {
    let reached = curve.points.iter().position(|p| p.resource >= f64::from(rung))?;
    curve.points[..=reached]
        .iter()
        .map(|p| p.value)
        .reduce(|a, b| if objective.better(b, a) { b } else { a })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::earlystopping::testing::*;

    fn settings(pairs: &[(&str, &str)]) -> Result<Settings, SettingsError> {
        Settings::from_katib(&es_settings(pairs))
    }

    fn cutoffs(rules: &[pb::EarlyStoppingRule]) -> Vec<(i32, f64)> {
        rules
            .iter()
            .map(|r| (r.start_step, r.value.parse().unwrap()))
            .collect()
    }

    #[test]
    fn settings_defaults_and_clear_errors() {
        let s = settings(&[("max_resource", "27")]).unwrap();
        assert_eq!(
            (
                s.eta,
                s.min_resource,
                s.max_resource,
                s.resource_metric.as_deref()
            ),
            (3, 3, 27, None)
        );
        assert_eq!(s.rungs(), [3, 9]);
        let s = settings(&[
            ("max_resource", "100"),
            ("eta", "2"),
            ("min_resource", "10"),
            ("resource_metric", "epoch"),
        ])
        .unwrap();
        assert_eq!(s.rungs(), [10, 20, 40, 80]);
        assert_eq!(s.resource_metric.as_deref(), Some("epoch"));

        let err = settings(&[]).unwrap_err();
        assert!(
            err.to_string().starts_with("asha: max_resource is required"),
            "{err}"
        );
        let err = settings(&[
            ("eta", "1"),
            ("min_resource", "0"),
            ("max_resource", "x"),
            ("rungs", "3"),
        ])
        .unwrap_err();
        let p = err.problems();
        assert_eq!(p.len(), 4, "{p:?}");
        assert!(
            p[0].starts_with("asha: eta \"1\" must be an integer >= 2: the reduction factor"),
            "{}",
            p[0]
        );
        assert!(
            p[1].starts_with("asha: min_resource \"0\" must be an integer >= 1"),
            "{}",
            p[1]
        );
        assert!(
            p[2].starts_with("asha: max_resource \"x\" must be an integer >= 2"),
            "{}",
            p[2]
        );
        assert_eq!(
            p[3],
            "unknown setting rungs for algorithm asha; known settings: eta, min_resource, max_resource, resource_metric"
        );
        let err = settings(&[("max_resource", "4"), ("min_resource", "4")]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "asha: max_resource 4 must be greater than min_resource 4, or there is no rung"
        );
    }

    #[test]
    fn nobody_at_a_rung_gives_a_rule_that_cannot_stop() {
        let s = settings(&[("max_resource", "9")]).unwrap();
        let rules = s.rules(&maximize("acc"), &[]);
        assert_eq!(cutoffs(&rules), [(1, f64::NEG_INFINITY), (3, f64::NEG_INFINITY)]);
        assert_eq!(rules[0].value, "-inf");
        assert_eq!(rules[0].comparison, pb::ComparisonType::Less as i32);
        let rules = s.rules(&minimize("loss"), &[]);
        assert_eq!(rules[0].value, "inf");
        assert_eq!(rules[0].comparison, pb::ComparisonType::Greater as i32);
    }

    #[test]
    fn top_ceil_n_over_eta_continue_maximize() {
        let s = settings(&[("max_resource", "9")]).unwrap();
        let o = maximize("acc");
        // Values at rung 1 (first point): 0.1, 0.5, 0.3, 0.9, 0.7 -> n = 5, keep 2, cutoff 0.7.
        let curves: Vec<TrialCurve> = [0.1, 0.5, 0.3, 0.9, 0.7]
            .iter()
            .enumerate()
            .map(|(i, &v)| curve(&format!("t{i}"), C::Running, &[v]))
            .collect();
        assert_eq!(cutoffs(&s.rules(&o, &curves)), [(1, 0.7), (3, f64::NEG_INFINITY)]);
        // One trial alone at a rung: its own value is the cutoff, so it continues (ties do).
        assert_eq!(s.cutoff(&o, &curves[..1], 1), Some(0.1));
        // Two: only the better one continues.
        assert_eq!(s.cutoff(&o, &curves[..2], 1), Some(0.5));
    }

    #[test]
    fn minimize_keeps_the_lowest_and_rung_values_are_best_so_far() {
        let s = settings(&[("max_resource", "9")]).unwrap();
        let o = minimize("loss");
        let curves = vec![
            curve("a", C::Succeeded, &[0.9, 0.2, 0.8, 0.7]), // best by step 3: 0.2
            curve("b", C::Earlystopped, &[0.5, 0.6, 0.4]),   // 0.4
            curve("c", C::Running, &[0.3, 0.3, 0.35]),       // 0.3
            curve("d", C::Failed, &[0.1]),                   // did not reach rung 3
        ];
        assert_eq!(rung_value(&o, &curves[0], 3), Some(0.2));
        assert_eq!(rung_value(&o, &curves[3], 3), None);
        // Rung 1: 0.9, 0.5, 0.3, 0.1 -> keep 2 -> cutoff 0.3. Rung 3: 0.2, 0.4, 0.3 -> keep 1 -> 0.2.
        assert_eq!(cutoffs(&s.rules(&o, &curves)), [(1, 0.3), (3, 0.2)]);
    }

    #[test]
    fn ties_at_the_cutoff_continue() {
        let s = settings(&[("max_resource", "3")]).unwrap();
        let o = maximize("acc");
        let curves: Vec<TrialCurve> = (0..4)
            .map(|i| curve(&format!("t{i}"), C::Running, &[0.5]))
            .collect();
        assert_eq!(s.cutoff(&o, &curves, 1), Some(0.5)); // a value of 0.5 is not < 0.5
    }

    #[test]
    fn resource_metric_points_use_their_resource() {
        let s = settings(&[
            ("max_resource", "10"),
            ("min_resource", "2"),
            ("eta", "2"),
            ("resource_metric", "epoch"),
        ])
        .unwrap();
        let o = maximize("acc");
        let mut c = curve("a", C::Running, &[0.1, 0.2, 0.3, 0.4]);
        for (p, r) in c.points.iter_mut().zip([0.5, 1.0, 2.0, 4.0]) {
            p.resource = r;
        }
        assert_eq!(rung_value(&o, &c, 2), Some(0.3));
        assert_eq!(rung_value(&o, &c, 4), Some(0.4));
        assert_eq!(rung_value(&o, &c, 8), None);
        assert_eq!(s.rungs(), [2, 4, 8]);
    }
}

//! `medianstop`: Katib's median stopping rule (Golovin et al., "Google Vizier", KDD 2017,
//! as implemented by Katib's `pkg/earlystopping/v1beta1/medianstop/service.py`).
//!
//! For every trial that has **succeeded**, take the average of its first `start_step`
//! objective values (in time order). Once at least `min_trials_required` trials have one,
//! the threshold is the aggregate of those averages, and the rule sent to collectors is
//! `{objective, threshold, LESS (maximize) | GREATER (minimize), start_step}`: a trial
//! whose best value so far is worse than the threshold once it has reported `start_step`
//! values is stopped.
//!
//! Settings (Katib's names and defaults): `min_trials_required` (3, integer > 0),
//! `start_step` (4, integer >= 1), and katib-rs's `rule`:
//! - `mean` (default): Katib's behaviour. Despite the name, Katib aggregates with the
//!   **arithmetic mean**; we keep it by default because the threshold is what a Katib
//!   collector receives, so an experiment gives the same rule here as on Katib.
//! - `median`: the median of the averages, as the rule's name and the Vizier paper say. It
//!   is not pulled down (for maximize) by a few very bad trials, so it stops more of the
//!   mediocre ones.
//!
//! Katib's quirks not kept: trials whose objective has no numeric value are skipped (Katib
//! divides by zero), and the settings are read on every call (Katib keeps the first
//! call's). The "evaluated exactly once" quirk is the collector's; see
//! `katib_metrics_collector::earlystop`.

use katib_api::pb;

use super::{Objective, TrialCurve, rule, setting_problems};
use crate::algorithm::TrialCondition;
use crate::error::SettingsError;

/// The algorithm name.
pub const NAME: &str = "medianstop";

/// How the per-trial averages are aggregated into the threshold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Aggregate {
    /// Arithmetic mean (Katib).
    Mean,
    /// Median (the average of the two middle values for an even count).
    Median,
}

/// `medianstop` settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Succeeded trials needed before any rule is given (Katib default 3).
    pub min_trials_required: usize,
    /// How many values are averaged per trial, and from which step the rule applies
    /// (Katib default 4).
    pub start_step: u32,
    /// How the averages are aggregated (default [`Aggregate::Mean`], Katib's).
    pub rule: Aggregate,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            min_trials_required: 3,
            start_step: 4,
            rule: Aggregate::Mean,
        }
    }
}

impl Settings {
    /// Reads and validates the settings, reporting every problem.
    pub fn from_katib(settings: &[pb::EarlyStoppingSetting]) -> Result<Self, SettingsError> {
        let mut out = Settings::default();
        let mut problems = Vec::new();
        for s in settings {
            let value = s.value.trim();
            match s.name.as_str() {
                "min_trials_required" => match value.parse::<i64>() {
                    Ok(n) if n > 0 => out.min_trials_required = n as usize,
                    _ => problems.push(format!(
                        "medianstop: min_trials_required {value:?}: min_trials_required must be greater than zero (>0); \
                         it is how many trials must have succeeded before others are stopped (default 3)"
                    )),
                },
                "start_step" => match value.parse::<i64>() {
                    Ok(n) if (1..=i64::from(i32::MAX)).contains(&n) => out.start_step = n as u32,
                    _ => problems.push(format!(
                        "medianstop: start_step {value:?}: start_step must be greater or equal than one (>=1); it is \
                         the number of reported values after which a trial is compared (default 4)"
                    )),
                },
                "rule" => match value {
                    "mean" => out.rule = Aggregate::Mean,
                    "median" => out.rule = Aggregate::Median,
                    _ => problems.push(format!(
                        "medianstop: rule {value:?} must be mean (Katib's threshold, the default) or median"
                    )),
                },
                other => problems.push(setting_problems::unknown(NAME, other, &["min_trials_required", "start_step", "rule"])),
            }
        }
        SettingsError::check(problems)?;
        Ok(out)
    }

    /// Only succeeded trials count, as in Katib.
    pub fn wants(&self, condition: TrialCondition) -> bool {
        condition == TrialCondition::Succeeded
    }

    /// The threshold, or `None` while fewer than `min_trials_required` succeeded trials
    /// have a value.
    pub fn threshold(&self, curves: &[TrialCurve]) -> Option<f64> {
        let mut averages: Vec<f64> = curves
            .iter()
            .filter(|c| self.wants(c.condition))
            .filter_map(|c| {
                let first: Vec<f64> = c
                    .points
                    .iter()
                    .take(self.start_step as usize)
                    .map(|p| p.value)
                    .collect();
                (!first.is_empty()).then(|| first.iter().sum::<f64>() / first.len() as f64)
            })
            .collect();
        if averages.len() < self.min_trials_required {
            return None;
        }
        match self.rule {
            Aggregate::Mean => Some(averages.iter().sum::<f64>() / averages.len() as f64),
            Aggregate::Median => {
                averages.sort_by(f64::total_cmp);
                let n = averages.len();
                Some(if n % 2 == 1 {
                    averages[n / 2]
                } else {
                    (averages[n / 2 - 1] + averages[n / 2]) / 2.0
                })
            }
        }
    }

    /// The rules: none yet, or the one threshold rule.
    pub fn rules(&self, objective: &Objective, curves: &[TrialCurve]) -> Vec<pb::EarlyStoppingRule> {
        self.threshold(curves)
            .map(|t| rule(objective, t, self.start_step))
            .into_iter()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::earlystopping::testing::*;

    fn settings(pairs: &[(&str, &str)]) -> Result<Settings, SettingsError> {
        Settings::from_katib(&es_settings(pairs))
    }

    #[test]
    fn katib_defaults_and_validation() {
        assert_eq!(settings(&[]).unwrap(), Settings::default());
        let s = settings(&[
            ("min_trials_required", "5"),
            ("start_step", "2"),
            ("rule", "median"),
        ])
        .unwrap();
        assert_eq!(
            (s.min_trials_required, s.start_step, s.rule),
            (5, 2, Aggregate::Median)
        );
        let err = settings(&[
            ("min_trials_required", "0"),
            ("start_step", "0"),
            ("rule", "max"),
            ("foo", "1"),
        ])
        .unwrap_err();
        let p = err.problems();
        assert_eq!(p.len(), 4, "{p:?}");
        assert!(
            p[0].contains("min_trials_required must be greater than zero (>0)"),
            "{}",
            p[0]
        );
        assert!(
            p[1].contains("start_step must be greater or equal than one (>=1)"),
            "{}",
            p[1]
        );
        assert!(p[2].contains("mean"), "{}", p[2]);
        assert_eq!(
            p[3],
            "unknown setting foo for algorithm medianstop; known settings: min_trials_required, start_step, rule"
        );
        assert!(settings(&[("start_step", "x")]).is_err());
    }

    #[test]
    fn mean_of_the_first_start_step_values_of_succeeded_trials() {
        let s = settings(&[("start_step", "2")]).unwrap();
        let curves = vec![
            curve("a", C::Succeeded, &[0.2, 0.4, 0.9]), // avg 0.3
            curve("b", C::Succeeded, &[0.5, 0.7]),      // avg 0.6
            curve("c", C::Succeeded, &[0.9]),           // only one value: 0.9
            curve("r", C::Running, &[0.0, 0.0]),        // ignored
            curve("e", C::Earlystopped, &[0.0, 0.0]),   // ignored (Katib)
            curve("n", C::Succeeded, &[]),              // no value: skipped
        ];
        let t = s.threshold(&curves).unwrap();
        assert!((t - 0.6).abs() < 1e-12, "{t}");
        let rules = s.rules(&maximize("acc"), &curves);
        assert_eq!(rules.len(), 1);
        assert_eq!(rules[0].name, "acc");
        assert_eq!(rules[0].comparison, pb::ComparisonType::Less as i32);
        assert_eq!(rules[0].start_step, 2);
        assert_eq!(rules[0].value.parse::<f64>().unwrap(), t);
        let rules = s.rules(&minimize("loss"), &curves);
        assert_eq!(rules[0].comparison, pb::ComparisonType::Greater as i32);
    }

    #[test]
    fn too_few_succeeded_trials_give_no_rule() {
        let s = Settings::default();
        let two = vec![
            curve("a", C::Succeeded, &[1.0; 5]),
            curve("b", C::Succeeded, &[1.0; 5]),
        ];
        assert_eq!(s.threshold(&two), None);
        assert!(s.rules(&maximize("acc"), &two).is_empty());
        assert!(s.rules(&maximize("acc"), &[]).is_empty());
    }

    #[test]
    fn median_resists_outliers_and_handles_ties_and_even_counts() {
        let mean = Settings::default();
        let median = settings(&[("rule", "median")]).unwrap();
        let curves = vec![
            curve("a", C::Succeeded, &[0.8; 4]),
            curve("b", C::Succeeded, &[0.8; 4]),
            curve("c", C::Succeeded, &[0.1; 4]),
        ];
        assert!((mean.threshold(&curves).unwrap() - 0.5666666666666667).abs() < 1e-12);
        assert_eq!(median.threshold(&curves), Some(0.8));
        let four = [curves.clone(), vec![curve("d", C::Succeeded, &[0.2; 4])]].concat();
        assert!((median.threshold(&four).unwrap() - 0.5).abs() < 1e-12);
    }
}

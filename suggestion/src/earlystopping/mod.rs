//! Early stopping: Katib's `api.v1.beta1.EarlyStopping` gRPC service and its rules.
//!
//! - [`medianstop`]: Katib's median stopping rule, with Katib's settings and defaults.
//! - [`asha`]: asynchronous successive halving, written as Katib rules (one per rung).
//! - [`service`]: [`EarlyStoppingService`] (`GetEarlyStoppingRules`, `SetTrialStatus`,
//!   `ValidateEarlyStoppingSettings`). It reads the trials' objective values from
//!   db-manager at the request's `db_manager_address`, as Katib's service does, and hands
//!   `SetTrialStatus` to whoever owns trial status ([`TrialStatusSink`]): the local runtime
//!   in `katib run`, the Kubernetes runtime later.
//!
//! The rules are pure functions of [`TrialCurve`]s (a trial's objective values with the
//! resource each was reported at), so the same code runs in the service, in tests and in
//! the `early_stopping` benchmark. How a collector applies the rules it gets is described
//! in `katib_metrics_collector::earlystop`.

pub mod asha;
pub mod medianstop;
pub mod service;

pub use service::{EarlyStoppingService, TrialStatusError, TrialStatusSink};

use katib_api::pb;

use crate::algorithm::TrialCondition;
use crate::error::SettingsError;

/// The early-stopping algorithms this crate serves, sorted.
pub const ALGORITHMS: &[&str] = &[asha::NAME, medianstop::NAME];

/// The experiment's objective, as the rules need it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Objective {
    /// `objective_metric_name`.
    pub metric: String,
    /// True for MAXIMIZE.
    pub maximize: bool,
}

impl Objective {
    /// Reads `experiment.spec.objective`.
    pub fn from_experiment(experiment: &pb::Experiment) -> Result<Self, EarlyStoppingError> {
        let objective = experiment
            .spec
            .as_ref()
            .and_then(|s| s.objective.as_ref())
            .ok_or_else(|| {
                EarlyStoppingError::InvalidRequest("experiment.spec.objective is missing".into())
            })?;
        if objective.objective_metric_name.is_empty() {
            return Err(EarlyStoppingError::InvalidRequest(
                "experiment.spec.objective.objective_metric_name is empty".into(),
            ));
        }
        let maximize = match pb::ObjectiveType::try_from(objective.r#type) {
            Ok(pb::ObjectiveType::Maximize) => true,
            Ok(pb::ObjectiveType::Minimize) => false,
            _ => {
                return Err(EarlyStoppingError::InvalidRequest(
                    "experiment.spec.objective.type must be MINIMIZE or MAXIMIZE".into(),
                ));
            }
        };
        Ok(Objective {
            metric: objective.objective_metric_name.clone(),
            maximize,
        })
    }

    /// True when `a` is better than `b`.
    pub fn better(&self, a: f64, b: f64) -> bool {
        if self.maximize { a > b } else { a < b }
    }

    /// The comparison under which a value is worse than a threshold.
    pub fn worse_than(&self) -> pb::ComparisonType {
        if self.maximize {
            pb::ComparisonType::Less
        } else {
            pb::ComparisonType::Greater
        }
    }
}

/// One objective value of a trial and the resource it was reported at.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CurvePoint {
    /// The step (1 for the first value, 2 for the second, ...) or the resource metric's
    /// value when the value was reported.
    pub resource: f64,
    /// The objective value.
    pub value: f64,
}

/// A trial's learning curve: its numeric objective values in time order.
#[derive(Clone, Debug, PartialEq)]
pub struct TrialCurve {
    /// The trial.
    pub name: String,
    /// Its condition in the request.
    pub condition: TrialCondition,
    /// Its values.
    pub points: Vec<CurvePoint>,
}

impl TrialCurve {
    /// A curve from observation logs (as db-manager returns them: ordered by time). Values
    /// that are not numbers ("unavailable") are left out. Without `resource_logs` a point's
    /// resource is its step; with them, the latest resource value logged at or before the
    /// point's time (0 before any).
    pub fn from_logs(
        name: &str,
        condition: TrialCondition,
        objective_logs: &[pb::MetricLog],
        resource_logs: Option<&[pb::MetricLog]>,
    ) -> Self {
        let numeric = |logs: &[pb::MetricLog]| -> Vec<(Option<jiff::Timestamp>, f64)> {
            logs.iter()
                .filter_map(|l| {
                    let v = l
                        .metric
                        .as_ref()?
                        .value
                        .trim()
                        .parse::<f64>()
                        .ok()
                        .filter(|v| !v.is_nan())?;
                    Some((l.time_stamp.parse::<jiff::Timestamp>().ok(), v))
                })
                .collect()
        };
        let values = numeric(objective_logs);
        let points = match resource_logs {
            None => values
                .iter()
                .enumerate()
                .map(|(i, &(_, value))| CurvePoint {
                    resource: (i + 1) as f64,
                    value,
                })
                .collect(),
            Some(resource_logs) => {
                let mut resources: Vec<(jiff::Timestamp, f64)> = numeric(resource_logs)
                    .into_iter()
                    .filter_map(|(t, v)| Some((t?, v)))
                    .collect();
                resources.sort_by_key(|(t, _)| *t);
                values
                    .iter()
                    .filter_map(|&(t, value)| {
                        let t = t?;
                        let seen = resources.partition_point(|(rt, _)| *rt <= t);
                        let resource = seen.checked_sub(1).map_or(0.0, |i| resources[i].1);
                        Some(CurvePoint { resource, value })
                    })
                    .collect()
            }
        };
        TrialCurve {
            name: name.to_owned(),
            condition,
            points,
        }
    }
}

/// The experiment's early-stopping algorithm and its validated settings.
#[derive(Clone, Debug, PartialEq)]
pub enum EarlyStoppingSettings {
    /// `medianstop`.
    MedianStop(medianstop::Settings),
    /// `asha`.
    Asha(asha::Settings),
}

impl EarlyStoppingSettings {
    /// Reads `spec.early_stopping`: the algorithm must be served and its settings valid.
    pub fn from_spec(spec: &pb::EarlyStoppingSpec) -> Result<Self, EarlyStoppingError> {
        match spec.algorithm_name.as_str() {
            medianstop::NAME => Ok(Self::MedianStop(medianstop::Settings::from_katib(
                &spec.algorithm_settings,
            )?)),
            asha::NAME => Ok(Self::Asha(asha::Settings::from_katib(&spec.algorithm_settings)?)),
            other => Err(EarlyStoppingError::UnknownAlgorithm {
                name: other.to_owned(),
            }),
        }
    }

    /// The algorithm's name.
    pub fn name(&self) -> &'static str {
        match self {
            Self::MedianStop(_) => medianstop::NAME,
            Self::Asha(_) => asha::NAME,
        }
    }

    /// Whether trials in `condition` are read to compute the rules.
    pub fn wants(&self, condition: TrialCondition) -> bool {
        match self {
            Self::MedianStop(s) => s.wants(condition),
            Self::Asha(s) => s.wants(condition),
        }
    }

    /// The metric measuring a trial's resource, if not its step.
    pub fn resource_metric(&self) -> Option<&str> {
        match self {
            Self::MedianStop(_) => None,
            Self::Asha(s) => s.resource_metric.as_deref(),
        }
    }

    /// The rules for the trials' curves now.
    pub fn rules(&self, objective: &Objective, curves: &[TrialCurve]) -> Vec<pb::EarlyStoppingRule> {
        match self {
            Self::MedianStop(s) => s.rules(objective, curves),
            Self::Asha(s) => s.rules(objective, curves),
        }
    }
}

/// A rule on the objective: stop when worse than `threshold` from `start_step` on.
fn rule(objective: &Objective, threshold: f64, start_step: u32) -> pb::EarlyStoppingRule {
    pb::EarlyStoppingRule {
        name: objective.metric.clone(),
        value: threshold.to_string(),
        comparison: objective.worse_than() as i32,
        start_step: i32::try_from(start_step).unwrap_or(i32::MAX),
    }
}

mod setting_problems {
    /// Katib's wording, plus the list of what is known.
    pub(super) fn unknown(algorithm: &str, name: &str, known: &[&str]) -> String {
        format!(
            "unknown setting {name} for algorithm {algorithm}; known settings: {}",
            known.join(", ")
        )
    }
}

/// Why an EarlyStopping call could not be answered.
#[derive(Debug, thiserror::Error)]
pub enum EarlyStoppingError {
    /// The algorithm's settings are invalid.
    #[error(transparent)]
    Settings(#[from] SettingsError),
    /// A required field is missing or malformed.
    #[error("{0}")]
    InvalidRequest(String),
    /// The experiment asks for an algorithm this service does not serve.
    #[error("unknown algorithm name {name:?}; this service serves: {}", ALGORITHMS.join(", "))]
    UnknownAlgorithm {
        /// The requested `algorithm_name`.
        name: String,
    },
    /// db-manager could not be read.
    #[error("cannot read the observation log of trial {trial} from db-manager at {address}: {}", .source.message())]
    ObservationLog {
        /// The trial.
        trial: String,
        /// db-manager's address.
        address: String,
        /// The gRPC failure.
        #[source]
        source: tonic::Status,
    },
    /// `SetTrialStatus` reached a service that no runtime is attached to.
    #[error(
        "this EarlyStopping service cannot change trial status: no runtime is attached to it (it runs standalone, e.g. \
         `katib suggestion`); in `katib run` the local runtime marks early-stopped trials itself"
    )]
    NoRuntime,
    /// The runtime could not mark the trial.
    #[error(transparent)]
    TrialStatus(#[from] TrialStatusError),
}

impl From<EarlyStoppingError> for tonic::Status {
    fn from(err: EarlyStoppingError) -> Self {
        match &err {
            EarlyStoppingError::Settings(_)
            | EarlyStoppingError::InvalidRequest(_)
            | EarlyStoppingError::UnknownAlgorithm { .. } => tonic::Status::invalid_argument(err.to_string()),
            EarlyStoppingError::ObservationLog { .. } => tonic::Status::unavailable(err.to_string()),
            EarlyStoppingError::NoRuntime => tonic::Status::failed_precondition(err.to_string()),
            EarlyStoppingError::TrialStatus(TrialStatusError::NotFound { .. }) => {
                tonic::Status::not_found(err.to_string())
            }
            EarlyStoppingError::TrialStatus(TrialStatusError::Unavailable(_)) => {
                tonic::Status::unavailable(err.to_string())
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod testing {
    pub use crate::algorithm::TrialCondition as C;
    use katib_api::pb;

    use super::{CurvePoint, Objective, TrialCurve};

    pub fn es_settings(pairs: &[(&str, &str)]) -> Vec<pb::EarlyStoppingSetting> {
        pairs
            .iter()
            .map(|(n, v)| pb::EarlyStoppingSetting {
                name: (*n).into(),
                value: (*v).into(),
            })
            .collect()
    }

    pub fn curve(name: &str, condition: C, values: &[f64]) -> TrialCurve {
        TrialCurve {
            name: name.into(),
            condition,
            points: values
                .iter()
                .enumerate()
                .map(|(i, &value)| CurvePoint {
                    resource: (i + 1) as f64,
                    value,
                })
                .collect(),
        }
    }

    pub fn maximize(metric: &str) -> Objective {
        Objective {
            metric: metric.into(),
            maximize: true,
        }
    }

    pub fn minimize(metric: &str) -> Objective {
        Objective {
            metric: metric.into(),
            maximize: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;

    fn log(t: &str, name: &str, v: &str) -> pb::MetricLog {
        pb::MetricLog {
            time_stamp: t.into(),
            metric: Some(pb::Metric {
                name: name.into(),
                value: v.into(),
            }),
        }
    }

    #[test]
    fn curves_from_logs_by_step_and_by_resource_metric() {
        let acc = [
            log("2026-01-01T00:00:01Z", "acc", "0.1"),
            log("2026-01-01T00:00:02Z", "acc", "unavailable"),
            log("2026-01-01T00:00:03.5Z", "acc", "0.3"),
            log("2026-01-01T00:00:05Z", "acc", "0.5"),
        ];
        let c = TrialCurve::from_logs("t", C::Running, &acc, None);
        let pts: Vec<(f64, f64)> = c.points.iter().map(|p| (p.resource, p.value)).collect();
        assert_eq!(pts, [(1.0, 0.1), (2.0, 0.3), (3.0, 0.5)]);
        let epoch = [
            log("2026-01-01T00:00:03.5Z", "epoch", "1"),
            log("2026-01-01T00:00:04Z", "epoch", "2"),
        ];
        let c = TrialCurve::from_logs("t", C::Running, &acc, Some(&epoch));
        let pts: Vec<(f64, f64)> = c.points.iter().map(|p| (p.resource, p.value)).collect();
        assert_eq!(pts, [(0.0, 0.1), (1.0, 0.3), (2.0, 0.5)]);
    }

    #[test]
    fn settings_dispatch_and_errors_map_to_invalid_argument() {
        let spec = |name: &str, pairs: &[(&str, &str)]| pb::EarlyStoppingSpec {
            algorithm_name: name.into(),
            algorithm_settings: es_settings(pairs),
        };
        assert_eq!(
            EarlyStoppingSettings::from_spec(&spec("medianstop", &[]))
                .unwrap()
                .name(),
            "medianstop"
        );
        let asha = EarlyStoppingSettings::from_spec(&spec(
            "asha",
            &[("max_resource", "9"), ("resource_metric", "epoch")],
        ))
        .unwrap();
        assert_eq!(asha.resource_metric(), Some("epoch"));
        let err = EarlyStoppingSettings::from_spec(&spec("hyperband", &[])).unwrap_err();
        let status = tonic::Status::from(err);
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert_eq!(
            status.message(),
            "unknown algorithm name \"hyperband\"; this service serves: asha, medianstop"
        );
        let status = tonic::Status::from(EarlyStoppingSettings::from_spec(&spec("asha", &[])).unwrap_err());
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
    }

    #[test]
    fn objective_direction_is_required() {
        let exp = |t: pb::ObjectiveType| pb::Experiment {
            name: "e".into(),
            spec: Some(pb::ExperimentSpec {
                objective: Some(pb::ObjectiveSpec {
                    r#type: t as i32,
                    objective_metric_name: "acc".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
        };
        assert!(
            Objective::from_experiment(&exp(pb::ObjectiveType::Maximize))
                .unwrap()
                .maximize
        );
        assert!(
            !Objective::from_experiment(&exp(pb::ObjectiveType::Minimize))
                .unwrap()
                .maximize
        );
        assert!(Objective::from_experiment(&exp(pb::ObjectiveType::Unknown)).is_err());
    }
}

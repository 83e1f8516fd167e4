//! Benchmark objectives shared by unit tests and the benches (`benches/quality.rs`), each with
//! its search space as Katib `pb::ParameterSpec`s and its known minimum.
//!
//! Every function is **minimized**; the simple regret of a run is `best value seen - optimum`.
//!
//! Classic continuous functions (formulas and optima as in Surjanovic & Bingham, *Virtual
//! Library of Simulation Experiments*, sfu.ca/~ssurjano):
//! - `branin` (2-D, `x1 in [-5, 10]`, `x2 in [0, 15]`, minimum 0.397887 at three points);
//! - `hartmann6` (6-D unit cube, minimum -3.32237);
//! - `rosenbrock4` (4-D, `[-5, 10]^4`, minimum 0 at `(1, 1, 1, 1)`);
//! - `ackley5` (5-D, `[-5, 10]^5` as in the BO literature (TuRBO), so the optimum at the origin
//!   is not the centre of the box; minimum 0);
//! - `levy4` (4-D, `[-10, 10]^4`, minimum 0 at `(1, 1, 1, 1)`);
//! - `styblinski_tang5` (5-D, `[-5, 5]^5`, minimum `-39.16616570377142 * 5` at
//!   `x_i = -2.903534027771178`).
//!
//! Two mixed spaces shaped like machine-learning tuning (synthetic, so the optimum is exact):
//! - `mixed_mlp`: `lr` (double, logUniform `[1e-5, 1e-1]`), `layers` (int `[1, 8]`), `dropout`
//!   (double `[0, 0.5]`), `optimizer` (categorical sgd/adam/rmsprop). The best `lr` depends on
//!   the optimizer and the best dropout on the depth; minimum 0.08 (adam, lr 1e-3, 4 layers,
//!   dropout 0.2).
//! - `mixed_gbm`: `eta` (double, logUniform `[1e-3, 1]`), `max_depth` (int `[1, 12]`),
//!   `n_estimators` (int `[50, 1000]` step 50), `subsample` (double `[0.5, 1]` step 0.05),
//!   `booster` (categorical gbtree/dart/gblinear). The best `eta` falls as the number of
//!   trees grows (`eta* = 5 / n_estimators`), trees cost a little; minimum 0.1905 (dart,
//!   eta 0.1, depth 6, 50 trees, subsample 0.8).
//!
//! `scripts/bench_peers.py` carries the same formulas for the Python peers; both sides check
//! the values at the fixed points of [`CHECK_POINTS`].

use std::f64::consts::{E, PI, TAU};

use katib_api::pb;

/// One benchmark objective with its search space.
#[derive(Debug, Clone)]
pub struct TestFunction {
    /// Short name (`branin`, `hartmann6`, ...), as the benches and `bench_peers.py` use it.
    pub name: &'static str,
    /// The parameters, in order; [`TestFunction::eval`] takes values in this order.
    pub parameters: Vec<pb::ParameterSpec>,
    /// The global minimum.
    pub optimum: f64,
    /// A point where the minimum is reached (assignment texts in parameter order).
    pub optimum_at: Vec<&'static str>,
    f: fn(&[f64]) -> f64,
}

/// The metric name the experiments of [`TestFunction::experiment`] minimize.
pub const METRIC: &str = "objective";

impl TestFunction {
    /// The objective at `x`: one value per parameter in order; a categorical parameter's value
    /// is its index in the list.
    pub fn eval(&self, x: &[f64]) -> f64 {
        (self.f)(x)
    }

    /// The objective at a trial's assignments (matched by name); an error names a missing or
    /// unparsable parameter.
    pub fn evaluate(&self, assignments: &[pb::ParameterAssignment]) -> Result<f64, String> {
        let mut x = Vec::with_capacity(self.parameters.len());
        for p in &self.parameters {
            let a = assignments
                .iter()
                .find(|a| a.name == p.name)
                .ok_or_else(|| format!("{}: no assignment for {}", self.name, p.name))?;
            x.push(self.value(p, &a.value)?);
        }
        Ok(self.eval(&x))
    }

    /// The objective at assignment texts given in parameter order.
    pub fn evaluate_texts(&self, texts: &[&str]) -> Result<f64, String> {
        if texts.len() != self.parameters.len() {
            return Err(format!(
                "{}: {} values for {} parameters",
                self.name,
                texts.len(),
                self.parameters.len()
            ));
        }
        let x = self
            .parameters
            .iter()
            .zip(texts)
            .map(|(p, t)| self.value(p, t))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(self.eval(&x))
    }

    fn value(&self, p: &pb::ParameterSpec, text: &str) -> Result<f64, String> {
        if p.parameter_type == pb::ParameterType::Categorical as i32 {
            let list = p.feasible_space.as_ref().map(|f| f.list.as_slice());
            return list
                .and_then(|l| l.iter().position(|v| v == text))
                .map(|i| i as f64)
                .ok_or_else(|| format!("{}: {} = {text:?} is not in the list", self.name, p.name));
        }
        text.trim()
            .parse::<f64>()
            .map_err(|_| format!("{}: {} = {text:?} is not a number", self.name, p.name))
    }

    /// An experiment over this function's space that minimizes [`METRIC`] with `algorithm`
    /// and `settings`.
    pub fn experiment(&self, algorithm: &str, settings: &[(&str, &str)], max_trials: i32) -> pb::Experiment {
        pb::Experiment {
            name: format!("bench-{}", self.name),
            spec: Some(pb::ExperimentSpec {
                parameter_specs: Some(pb::experiment_spec::ParameterSpecs {
                    parameters: self.parameters.clone(),
                }),
                objective: Some(pb::ObjectiveSpec {
                    r#type: pb::ObjectiveType::Minimize as i32,
                    goal: 0.0,
                    objective_metric_name: METRIC.into(),
                    additional_metric_names: vec![],
                }),
                algorithm: Some(pb::AlgorithmSpec {
                    algorithm_name: algorithm.into(),
                    algorithm_settings: settings
                        .iter()
                        .map(|(k, v)| pb::AlgorithmSetting {
                            name: (*k).into(),
                            value: (*v).into(),
                        })
                        .collect(),
                }),
                early_stopping: None,
                parallel_trial_count: 1,
                max_trial_count: max_trials,
                nas_config: None,
            }),
        }
    }
}

/// A succeeded trial with these assignments and objective value (for benches and tests).
pub fn completed_trial(name: &str, assignments: Vec<pb::ParameterAssignment>, value: f64) -> pb::Trial {
    trial_with(
        name,
        assignments,
        pb::trial_status::TrialConditionType::Succeeded,
        Some(value),
    )
}

/// A trial in any condition, with an objective value when given.
pub fn trial_with(
    name: &str,
    assignments: Vec<pb::ParameterAssignment>,
    condition: pb::trial_status::TrialConditionType,
    value: Option<f64>,
) -> pb::Trial {
    pb::Trial {
        name: name.into(),
        spec: Some(pb::TrialSpec {
            objective: None,
            parameter_assignments: Some(pb::trial_spec::ParameterAssignments { assignments }),
            labels: Default::default(),
        }),
        status: Some(pb::TrialStatus {
            start_time: String::new(),
            completion_time: String::new(),
            condition: condition as i32,
            observation: value.map(|v| pb::Observation {
                metrics: vec![pb::Metric {
                    name: METRIC.into(),
                    value: format!("{v}"),
                }],
            }),
        }),
    }
}

fn spec(
    name: &str,
    kind: pb::ParameterType,
    min: &str,
    max: &str,
    step: &str,
    list: &[&str],
    dist: pb::Distribution,
) -> pb::ParameterSpec {
    pb::ParameterSpec {
        name: name.into(),
        parameter_type: kind as i32,
        feasible_space: Some(pb::FeasibleSpace {
            min: min.into(),
            max: max.into(),
            step: step.into(),
            list: list.iter().map(|s| (*s).into()).collect(),
            distribution: dist as i32,
        }),
    }
}

fn double(name: &str, min: &str, max: &str) -> pb::ParameterSpec {
    let u = pb::Distribution::Uniform;
    spec(name, pb::ParameterType::Double, min, max, "", &[], u)
}

fn box_of(d: usize, min: &str, max: &str) -> Vec<pb::ParameterSpec> {
    (1..=d).map(|i| double(&format!("x{i}"), min, max)).collect()
}

/// Every benchmark function, in the benches' order.
pub fn all() -> Vec<TestFunction> {
    vec![
        branin(),
        hartmann6(),
        rosenbrock4(),
        ackley5(),
        levy4(),
        styblinski_tang5(),
        mixed_mlp(),
        mixed_gbm(),
    ]
}

/// The function called `name`.
pub fn by_name(name: &str) -> Option<TestFunction> {
    all().into_iter().find(|f| f.name == name)
}

/// Branin-Hoo on `[-5, 10] x [0, 15]`.
pub fn branin() -> TestFunction {
    TestFunction {
        name: "branin",
        parameters: vec![double("x1", "-5", "10"), double("x2", "0", "15")],
        optimum: 0.397_887_357_729_738_2,
        optimum_at: vec!["3.141592653589793", "2.275"],
        f: branin_f,
    }
}

fn branin_f(x: &[f64]) -> f64 {
    let (b, c, t) = (5.1 / (4.0 * PI * PI), 5.0 / PI, 1.0 / (8.0 * PI));
    (x[1] - b * x[0] * x[0] + c * x[0] - 6.0).powi(2) + 10.0 * (1.0 - t) * x[0].cos() + 10.0
}

/// Hartmann 6-D on the unit cube.
pub fn hartmann6() -> TestFunction {
    TestFunction {
        name: "hartmann6",
        parameters: box_of(6, "0", "1"),
        optimum: -3.322_368_011_415_515,
        optimum_at: vec![
            "0.20168952",
            "0.15001069",
            "0.47687398",
            "0.27533243",
            "0.31165162",
            "0.65730054",
        ],
        f: hartmann6_f,
    }
}

const HARTMANN_ALPHA: [f64; 4] = [1.0, 1.2, 3.0, 3.2];
const HARTMANN_A: [[f64; 6]; 4] = [
    [10.0, 3.0, 17.0, 3.5, 1.7, 8.0],
    [0.05, 10.0, 17.0, 0.1, 8.0, 14.0],
    [3.0, 3.5, 1.7, 10.0, 17.0, 8.0],
    [17.0, 8.0, 0.05, 10.0, 0.1, 14.0],
];
const HARTMANN_P: [[f64; 6]; 4] = [
    [0.1312, 0.1696, 0.5569, 0.0124, 0.8283, 0.5886],
    [0.2329, 0.4135, 0.8307, 0.3736, 0.1004, 0.9991],
    [0.2348, 0.1451, 0.3522, 0.2883, 0.3047, 0.6650],
    [0.4047, 0.8828, 0.8732, 0.5743, 0.1091, 0.0381],
];

fn hartmann6_f(x: &[f64]) -> f64 {
    -(0..4)
        .map(|i| {
            let s: f64 = (0..6)
                .map(|j| HARTMANN_A[i][j] * (x[j] - HARTMANN_P[i][j]).powi(2))
                .sum();
            HARTMANN_ALPHA[i] * (-s).exp()
        })
        .sum::<f64>()
}

/// Rosenbrock 4-D on `[-5, 10]^4`.
pub fn rosenbrock4() -> TestFunction {
    TestFunction {
        name: "rosenbrock4",
        parameters: box_of(4, "-5", "10"),
        optimum: 0.0,
        optimum_at: vec!["1"; 4],
        f: rosenbrock_f,
    }
}

fn rosenbrock_f(x: &[f64]) -> f64 {
    x.windows(2)
        .map(|w| 100.0 * (w[1] - w[0] * w[0]).powi(2) + (1.0 - w[0]).powi(2))
        .sum()
}

/// Ackley 5-D on `[-5, 10]^5`.
pub fn ackley5() -> TestFunction {
    TestFunction {
        name: "ackley5",
        parameters: box_of(5, "-5", "10"),
        optimum: 0.0,
        optimum_at: vec!["0"; 5],
        f: ackley_f,
    }
}

fn ackley_f(x: &[f64]) -> f64 {
    let d = x.len() as f64;
    let sq = x.iter().map(|v| v * v).sum::<f64>() / d;
    let cos = x.iter().map(|v| (TAU * v).cos()).sum::<f64>() / d;
    // Clamp the rounding residue at the optimum (20 + e - 20 - e) to the exact 0.
    (-20.0 * (-0.2 * sq.sqrt()).exp() - cos.exp() + 20.0 + E).max(0.0)
}

/// Levy 4-D on `[-10, 10]^4`.
pub fn levy4() -> TestFunction {
    TestFunction {
        name: "levy4",
        parameters: box_of(4, "-10", "10"),
        optimum: 0.0,
        optimum_at: vec!["1"; 4],
        f: levy_f,
    }
}

fn levy_f(x: &[f64]) -> f64 {
    let w: Vec<f64> = x.iter().map(|v| 1.0 + (v - 1.0) / 4.0).collect();
    let d = w.len();
    let head = (PI * w[0]).sin().powi(2);
    let mid: f64 = w[..d - 1]
        .iter()
        .map(|wi| (wi - 1.0).powi(2) * (1.0 + 10.0 * (PI * wi + 1.0).sin().powi(2)))
        .sum();
    let wd = w[d - 1];
    let tail = (wd - 1.0).powi(2) * (1.0 + (TAU * wd).sin().powi(2));
    head + mid + tail
}

/// Styblinski-Tang 5-D on `[-5, 5]^5`.
pub fn styblinski_tang5() -> TestFunction {
    TestFunction {
        name: "styblinski_tang5",
        parameters: box_of(5, "-5", "5"),
        optimum: -39.166_165_703_771_42 * 5.0,
        optimum_at: vec!["-2.903534027771178"; 5],
        f: styblinski_tang_f,
    }
}

fn styblinski_tang_f(x: &[f64]) -> f64 {
    0.5 * x.iter().map(|v| v.powi(4) - 16.0 * v * v + 5.0 * v).sum::<f64>()
}

/// A neural-network-like mixed space: log-scale learning rate, int depth, dropout, optimizer.
pub fn mixed_mlp() -> TestFunction {
    TestFunction {
        name: "mixed_mlp",
        parameters: vec![
            spec(
                "lr",
                pb::ParameterType::Double,
                "0.00001",
                "0.1",
                "",
                &[],
                pb::Distribution::LogUniform,
            ),
            spec(
                "layers",
                pb::ParameterType::Int,
                "1",
                "8",
                "",
                &[],
                pb::Distribution::Uniform,
            ),
            double("dropout", "0", "0.5"),
            spec(
                "optimizer",
                pb::ParameterType::Categorical,
                "",
                "",
                "",
                &["sgd", "adam", "rmsprop"],
                pb::Distribution::Unspecified,
            ),
        ],
        optimum: 0.08,
        optimum_at: vec!["0.001", "4", "0.2", "adam"],
        f: mixed_mlp_f,
    }
}

fn mixed_mlp_f(x: &[f64]) -> f64 {
    let (lr, layers, dropout, opt) = (x[0], x[1], x[2], x[3] as usize);
    // Per optimizer: best log10(lr), floor of the loss.
    let (u_best, floor) = [(-1.5, 0.10), (-3.0, 0.08), (-2.5, 0.12)][opt.min(2)];
    let du = (lr.log10() - u_best) / 0.8;
    let dl = (layers - 4.0) / 2.5;
    let dd = (dropout - 0.05 * layers) / 0.15;
    // Depth and learning rate interact: deeper nets want a smaller step.
    let q = du * du + dl * dl + dd * dd + 0.6 * du * dl;
    floor + 0.6 * (1.0 - (-0.5 * q).exp())
}

/// A gradient-boosting-like mixed space with a stepped double and a stepped int.
pub fn mixed_gbm() -> TestFunction {
    TestFunction {
        name: "mixed_gbm",
        parameters: vec![
            spec(
                "eta",
                pb::ParameterType::Double,
                "0.001",
                "1",
                "",
                &[],
                pb::Distribution::LogUniform,
            ),
            spec(
                "max_depth",
                pb::ParameterType::Int,
                "1",
                "12",
                "",
                &[],
                pb::Distribution::Uniform,
            ),
            spec(
                "n_estimators",
                pb::ParameterType::Int,
                "50",
                "1000",
                "50",
                &[],
                pb::Distribution::Uniform,
            ),
            spec(
                "subsample",
                pb::ParameterType::Double,
                "0.5",
                "1",
                "0.05",
                &[],
                pb::Distribution::Uniform,
            ),
            spec(
                "booster",
                pb::ParameterType::Categorical,
                "",
                "",
                "",
                &["gbtree", "dart", "gblinear"],
                pb::Distribution::Unspecified,
            ),
        ],
        optimum: 0.1905,
        optimum_at: vec!["0.1", "6", "50", "0.8", "dart"],
        f: mixed_gbm_f,
    }
}

fn mixed_gbm_f(x: &[f64]) -> f64 {
    let (eta, depth, trees, subsample, booster) = (x[0], x[1], x[2], x[3], x[4] as usize);
    // Per booster: floor, best depth, how much depth matters.
    let (floor, depth_best, depth_weight) =
        [(0.20, 5.0, 1.0), (0.19, 6.0, 1.0), (0.25, 1.0, 0.0)][booster.min(2)];
    let de = (eta.log10() - (5.0 / trees).log10()) / 0.5;
    let dd = depth_weight * (depth - depth_best) / 3.0;
    let ds = (subsample - 0.8) / 0.3;
    let q = de * de + dd * dd + ds * ds;
    floor + 0.4 * (1.0 - (-0.5 * q).exp()) + 0.01 * trees / 1000.0
}

/// Fixed points and the values every implementation of these functions must give there
/// (`scripts/bench_peers.py` checks the same table).
pub const CHECK_POINTS: &[(&str, &[&str], f64)] = &[
    ("branin", &["0", "0"], 55.602_112_642_270_264),
    ("hartmann6", &["0.5"; 6], -0.505_314_991_702_233_3),
    ("rosenbrock4", &["0", "0.5", "-1", "2"], 286.5),
    ("ackley5", &["1", "2", "3", "-1", "0.5"], 6.792_320_363_982_681),
    ("levy4", &["0", "2", "-3", "5"], 10.330_734_182_735_71),
    ("styblinski_tang5", &["0", "1", "-1", "2", "-3"], -73.0),
    ("mixed_mlp", &["0.01", "2", "0.3", "sgd"], 0.573_185_135_084_452_2),
    (
        "mixed_gbm",
        &["0.05", "3", "200", "0.6", "gbtree"],
        0.388_041_518_164_573_66,
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn optima_are_reached_where_stated() {
        for f in all() {
            let at = f.evaluate_texts(&f.optimum_at).unwrap();
            assert!(
                (at - f.optimum).abs() < 1e-5,
                "{}: {at} at the optimum, expected {}",
                f.name,
                f.optimum
            );
        }
    }

    #[test]
    fn values_at_the_check_points() {
        for (name, texts, expected) in CHECK_POINTS {
            let f = by_name(name).unwrap();
            let got = f.evaluate_texts(texts).unwrap();
            assert!(
                (got - expected).abs() < 1e-9 * expected.abs().max(1.0),
                "{name}: {got} != {expected}"
            );
        }
    }

    #[test]
    fn spaces_are_valid_and_the_optimum_is_in_them() {
        for f in all() {
            let exp = f.experiment("random", &[], 10);
            let space = crate::space::SearchSpace::from_experiment(&exp).unwrap();
            let assignments: Vec<pb::ParameterAssignment> = f
                .parameters
                .iter()
                .zip(&f.optimum_at)
                .map(|(p, v)| pb::ParameterAssignment {
                    name: p.name.clone(),
                    value: (*v).into(),
                })
                .collect();
            assert!(
                space.parse_assignments(&assignments).is_some(),
                "{}: optimum outside the space",
                f.name
            );
            assert!(f.evaluate(&assignments).is_ok());
        }
    }

    #[test]
    fn random_points_are_never_below_the_optimum() {
        use rand::SeedableRng as _;
        let mut rng = rand::rngs::Xoshiro256PlusPlus::seed_from_u64(7);
        for f in all() {
            let exp = f.experiment("random", &[], 10);
            let space = crate::space::SearchSpace::from_experiment(&exp).unwrap();
            for _ in 0..2000 {
                let p = crate::random::sample_point(&space, &mut rng);
                let a = space.render(&p).unwrap();
                let v = f.evaluate(&a).unwrap();
                assert!(v >= f.optimum - 1e-9, "{}: {v} < optimum at {a:?}", f.name);
            }
        }
    }
}

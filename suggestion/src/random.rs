//! `random`: random search, following Katib's hyperopt service (`rand.suggest`).
//!
//! Settings: `random_state` (integer >= 0) only, as in Katib. With it, a run is reproducible
//! (see [`SuggestRequest::rng`]); without it each call draws from OS entropy.
//!
//! Sampling per parameter (Katib's hyperopt mapping, section 7.1 of katib-compat.md):
//! - double, uniform: uniform on `[min, max]`; with `step`, uniform over the exact decimal grid
//!   `min + k*step <= max`;
//! - double/int, logUniform: uniform in `ln` space (`min > 0`); normal: `mu = (min+max)/2`,
//!   `sigma = (max-min)/6`; logNormal: the same on `ln min`, `ln max`. Draws outside
//!   `[min, max]` are rejected (then clipped after many tries), and stepped parameters snap
//!   to the nearest grid value;
//! - int, uniform: uniform over `min, min+step, ..., <= max`;
//! - discrete, categorical: uniform choice from the list.
//!
//! Unlike Katib (kubeflow/katib#842, #1566), when the space is finite (every parameter int,
//! discrete, categorical or a stepped double) no point already in the request's trials, or
//! earlier in the same batch, is suggested again. Once every point is taken the reply is short
//! and [`Suggested::exhausted`] is set.

use std::collections::HashSet;

use katib_api::pb;
use rand::{Rng, RngExt as _};

use crate::algorithm::{Algorithm, AlgorithmSettings, SuggestRequest, Suggested};
use crate::error::{SettingsError, SuggestError};
use crate::space::{Coord, Distribution, Domain, Parameter, SearchSpace};

/// Draws tried before a finite space is searched systematically for a free point.
const REJECTION_TRIES: usize = 64;

/// Finite spaces up to this many points are enumerated (exactly uniform among free points)
/// when rejection sampling keeps hitting taken points; larger ones are scanned from a random
/// start instead.
const ENUMERATION_LIMIT: u128 = 1 << 16;

/// Draws of a normal distribution tried before the value is clipped into `[min, max]`.
const NORMAL_TRIES: usize = 100;

/// The `random` algorithm.
#[derive(Debug, Clone, Copy, Default)]
pub struct Random;

/// The settings of `random`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RandomSettings {
    /// `random_state`: the seed (none: OS entropy).
    pub random_state: Option<u64>,
}

impl Random {
    /// Katib's name for this algorithm.
    pub const NAME: &'static str = "random";
    /// The setting names it accepts.
    pub const SETTINGS: &'static [&'static str] = &["random_state"];
}

impl RandomSettings {
    /// Parses and checks the settings, reporting every problem.
    pub fn from_settings(settings: &AlgorithmSettings) -> Result<Self, SettingsError> {
        let (_, random_state) =
            SettingsError::both(settings.check_known(Random::SETTINGS), settings.random_state())?;
        Ok(RandomSettings { random_state })
    }
}

impl Algorithm for Random {
    fn name(&self) -> &'static str {
        Random::NAME
    }

    fn validate(&self, experiment: &pb::Experiment) -> Result<(), SettingsError> {
        let settings = AlgorithmSettings::from_experiment(experiment);
        SettingsError::both(
            SearchSpace::from_experiment(experiment),
            RandomSettings::from_settings(&settings),
        )
        .map(|_| ())
    }

    fn suggest(&self, request: &SuggestRequest) -> Result<Suggested, SuggestError> {
        let settings = RandomSettings::from_settings(&request.settings)?;
        let mut rng = request.rng(settings.random_state);
        let space = &request.space;
        let points: Vec<Vec<Coord>> = if space.is_finite() {
            sample_distinct(space, request.n, request.taken(), &mut rng, ENUMERATION_LIMIT)
                .into_iter()
                .map(|p| p.into_iter().map(Coord::Index).collect())
                .collect()
        } else {
            (0..request.n).map(|_| sample_point(space, &mut rng)).collect()
        };
        let exhausted = points.len() < request.n;
        let assignments = points
            .iter()
            .map(|p| {
                space.render(p).ok_or_else(|| SuggestError::Internal {
                    algorithm: Random::NAME,
                    message: format!("sampled a point outside the space: {p:?}"),
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Suggested {
            assignments,
            exhausted,
            algorithm_settings: Vec::new(),
        })
    }
}

/// Whether this algorithm's next assignments for `experiment` can be asked for before the
/// trials now running end: true for `random` without `random_state` over an infinite space
/// (some parameter a double without `step`). Each draw then depends on nothing in the
/// request, neither the history (no point needs avoiding) nor the trial count (no seed):
/// asking early changes when a point is drawn, not what it may be. A finite space (its
/// draws avoid the trials so far) or a seeded run (its draws follow the trial count) answer
/// false, and so does any other algorithm.
pub fn assignments_ahead_allowed(experiment: &pb::Experiment) -> bool {
    let spec = experiment.spec.as_ref();
    let algorithm = spec.and_then(|s| s.algorithm.as_ref());
    if algorithm.is_none_or(|a| a.algorithm_name != Random::NAME) {
        return false;
    }
    let settings = AlgorithmSettings::from_experiment(experiment);
    let unseeded = matches!(settings.random_state(), Ok(None));
    unseeded && SearchSpace::from_experiment(experiment).is_ok_and(|space| !space.is_finite())
}

/// One random point of the space (each parameter drawn independently by its distribution).
pub fn sample_point<R: Rng + ?Sized>(space: &SearchSpace, rng: &mut R) -> Vec<Coord> {
    space.parameters().iter().map(|p| sample_coord(p, rng)).collect()
}

/// One random value of a parameter, as a coordinate.
pub fn sample_coord<R: Rng + ?Sized>(parameter: &Parameter, rng: &mut R) -> Coord {
    match &parameter.domain {
        Domain::Double(d) => match (&d.grid, d.distribution) {
            (None, dist) => Coord::Real(sample_real(d.min, d.max, dist, rng)),
            (Some(grid), Distribution::Uniform) => Coord::Index(rng.random_range(0..grid.count())),
            (Some(grid), dist) => Coord::Index(grid.snap(sample_real(d.min, d.max, dist, rng))),
        },
        Domain::Int(i) => match i.distribution {
            Distribution::Uniform => Coord::Index(rng.random_range(0..i.count())),
            dist => Coord::Index(i.snap(sample_real(i.min as f64, i.max as f64, dist, rng))),
        },
        Domain::Discrete(values) => Coord::Index(rng.random_range(0..values.len()) as u128),
        Domain::Categorical(values) => Coord::Index(rng.random_range(0..values.len()) as u128),
    }
}

/// A real in `[min, max]` drawn from `dist` (`min > 0` for the log distributions, which
/// validation guarantees).
pub fn sample_real<R: Rng + ?Sized>(min: f64, max: f64, dist: Distribution, rng: &mut R) -> f64 {
    let x = match dist {
        Distribution::Uniform => uniform(min, max, rng),
        Distribution::LogUniform => uniform(min.ln(), max.ln(), rng).exp(),
        Distribution::Normal => truncated_normal(min, max, rng),
        Distribution::LogNormal => truncated_normal(min.ln(), max.ln(), rng).exp(),
    };
    // exp(ln(x)) may land one ulp outside the bounds.
    x.clamp(min, max)
}

/// Uniform on `[lo, hi]`, without overflow for very wide ranges.
fn uniform<R: Rng + ?Sized>(lo: f64, hi: f64, rng: &mut R) -> f64 {
    let u: f64 = rng.random();
    ((1.0 - u) * lo + u * hi).clamp(lo, hi)
}

/// Normal with `mu = (lo+hi)/2`, `sigma = (hi-lo)/6`, redrawn while outside `[lo, hi]`.
fn truncated_normal<R: Rng + ?Sized>(lo: f64, hi: f64, rng: &mut R) -> f64 {
    let mu = lo / 2.0 + hi / 2.0;
    let sigma = hi / 6.0 - lo / 6.0;
    if sigma <= 0.0 {
        return mu;
    }
    for _ in 0..NORMAL_TRIES {
        let x = mu + sigma * standard_normal(rng);
        if (lo..=hi).contains(&x) {
            return x;
        }
    }
    mu
}

/// A standard normal draw (Box-Muller).
fn standard_normal<R: Rng + ?Sized>(rng: &mut R) -> f64 {
    let u1: f64 = 1.0 - rng.random::<f64>(); // (0, 1]
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// Up to `n` distinct points of a finite space that are not in `taken`, drawn by the
/// parameters' distributions. Returns fewer only when the space runs out.
fn sample_distinct<R: Rng + ?Sized>(
    space: &SearchSpace,
    n: usize,
    mut taken: HashSet<Vec<u128>>,
    rng: &mut R,
    enumeration_limit: u128,
) -> Vec<Vec<u128>> {
    let Some(size) = space.size() else {
        return Vec::new();
    };
    let mut out = Vec::with_capacity(n.min(1024));
    // Once the space is nearly full, the free points, drawn without replacement.
    let mut free: Option<Vec<Vec<u128>>> = None;
    while out.len() < n {
        if let Some(free) = &mut free {
            if free.is_empty() {
                break;
            }
            let point = free.swap_remove(rng.random_range(0..free.len()));
            out.push(point);
            continue;
        }
        if taken.len() as u128 >= size {
            break;
        }
        let drawn = (0..REJECTION_TRIES)
            .map(|_| SearchSpace::indices(&sample_point(space, rng)))
            .find_map(|p| p.filter(|p| !taken.contains(p)));
        let point = match drawn {
            Some(p) => p,
            None if size <= enumeration_limit => {
                free = Some(
                    (0..size)
                        .filter_map(|c| space.decode(c))
                        .filter(|p| !taken.contains(p))
                        .collect(),
                );
                continue;
            }
            None => {
                // At most `taken.len()` points are taken, so this ends within that many steps.
                let start = rng.random_range(0..size);
                let found = (0..size)
                    .map(|off| start.wrapping_add(off) % size)
                    .filter_map(|c| space.decode(c))
                    .find(|p| !taken.contains(p));
                match found {
                    Some(p) => p,
                    None => break,
                }
            }
        };
        taken.insert(point.clone());
        out.push(point);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::algorithm::seeded_rng;
    use crate::space::testing::*;
    use pb::trial_status::TrialConditionType as C;

    fn request(
        settings: &[(&str, &str)],
        params: Vec<pb::ParameterSpec>,
        trials: Vec<pb::Trial>,
        n: i32,
    ) -> SuggestRequest {
        request_for("random", settings, params, trials, n, n)
    }

    #[test]
    fn assignments_are_asked_ahead_only_when_no_draw_depends_on_the_request() {
        let continuous = || vec![double("lr", "0.01", "0.1", ""), int("layers", "1", "4", "")];
        assert!(assignments_ahead_allowed(&experiment(
            "random",
            &[],
            continuous()
        )));
        // Seeded: the draws follow the trial count.
        assert!(!assignments_ahead_allowed(&experiment(
            "random",
            &[("random_state", "3")],
            continuous()
        )));
        // Finite: the draws avoid the trials so far.
        let finite = vec![double("lr", "0.01", "0.1", "0.01"), int("layers", "1", "4", "")];
        assert!(!assignments_ahead_allowed(&experiment("random", &[], finite)));
        // Any other algorithm, or a space that does not parse.
        assert!(!assignments_ahead_allowed(&experiment("grid", &[], continuous())));
        assert!(!assignments_ahead_allowed(&experiment("tpe", &[], continuous())));
        assert!(!assignments_ahead_allowed(&experiment(
            "random",
            &[],
            vec![double("lr", "0.1", "0.01", "")]
        )));
    }

    #[test]
    fn validates_settings() {
        let params = || vec![double("lr", "0.01", "0.1", "")];
        assert!(Random.validate(&experiment("random", &[], params())).is_ok());
        assert!(
            Random
                .validate(&experiment("random", &[("random_state", "10")], params()))
                .is_ok()
        );
        let err = Random
            .validate(&experiment("random", &[("gamma", "0.3")], params()))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown setting gamma for algorithm random; allowed: random_state"
        );
        for bad in ["-1", "abc", "1.5", ""] {
            let err = Random
                .validate(&experiment("random", &[("random_state", bad)], params()))
                .unwrap_err();
            assert!(err.to_string().contains("random_state"), "{err}");
        }
        // Space and settings problems are reported together.
        let err = Random
            .validate(&experiment(
                "random",
                &[("foo", "1")],
                vec![double("lr", "x", "1", "")],
            ))
            .unwrap_err();
        assert_eq!(err.problems().len(), 2, "{err}");
    }

    #[test]
    fn every_parameter_type_stays_in_bounds_and_on_grid() {
        use pb::Distribution as D;
        let params = vec![
            double("u", "-1", "1", ""),
            double_dist("lu", "0.0001", "1", "", D::LogUniform),
            double_dist("n", "0", "10", "", D::Normal),
            double_dist("ln", "1", "100", "", D::LogNormal),
            double("su", "0.01", "0.05", "0.01"),
            double_dist("sn", "0", "1", "0.1", D::Normal),
            double_dist("slu", "0.001", "1", "0.001", D::LogUniform),
            int("i", "-5", "5", "2"),
            int_dist("il", "1", "1000", "", D::LogUniform),
            int_dist("in", "0", "20", "5", D::Normal),
            int_dist("iln", "1", "50", "", D::LogNormal),
            discrete("d", &["1", "2.5", "10"]),
            categorical("c", &["a", "b", "c"]),
            double("fixed", "3", "3", ""),
        ];
        let req = request(&[("random_state", "1")], params, vec![], 2000);
        let out = Random.suggest(&req).unwrap();
        assert_eq!(out.assignments.len(), 2000);
        assert!(!out.exhausted);
        let mut below_001 = 0;
        for a in &out.assignments {
            let point = req.space.parse_assignments(a).expect("every value in the space");
            for (p, c) in req.space.parameters().iter().zip(&point) {
                if let (Domain::Double(d), Coord::Real(x)) = (&p.domain, c) {
                    assert!((d.min..=d.max).contains(x), "{}={x}", p.name);
                }
            }
            let lu: f64 = a[1].value.parse().unwrap();
            if lu < 0.01 {
                below_001 += 1;
            }
            assert!(a[4].value.len() <= 4, "exact decimal: {}", a[4].value);
            assert_eq!(a[13].value, "3");
        }
        // Log-uniform on [1e-4, 1]: half the draws are below 0.01 (uniform would give 1%).
        assert!((800..1200).contains(&below_001), "{below_001}");
    }

    #[test]
    fn normal_is_centred() {
        let space = SearchSpace::from_experiment(&experiment(
            "random",
            &[],
            vec![double_dist("n", "0", "6", "", pb::Distribution::Normal)],
        ))
        .unwrap();
        let mut rng = seeded_rng(Some(5), 0);
        let xs: Vec<f64> = (0..4000)
            .map(|_| match sample_point(&space, &mut rng)[0] {
                Coord::Real(x) => x,
                Coord::Index(_) => unreachable!(),
            })
            .collect();
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        let within_one_sigma = xs.iter().filter(|x| (2.0..=4.0).contains(*x)).count();
        assert!((mean - 3.0).abs() < 0.1, "{mean}");
        assert!((2500..2950).contains(&within_one_sigma), "{within_one_sigma}");
    }

    #[test]
    fn random_state_makes_runs_reproducible() {
        let params = || vec![double("lr", "0", "1", ""), int("n", "0", "1000000", "")];
        let a = Random
            .suggest(&request(&[("random_state", "42")], params(), vec![], 5))
            .unwrap();
        let b = Random
            .suggest(&request(&[("random_state", "42")], params(), vec![], 5))
            .unwrap();
        assert_eq!(a, b);
        // The next call (one more trial in the request) continues differently.
        let t = trial("t0", &[("lr", "0.5"), ("n", "3")], C::Running, None);
        let c = Random
            .suggest(&request(&[("random_state", "42")], params(), vec![t], 5))
            .unwrap();
        assert_ne!(values(&a), values(&c));
        let d = Random
            .suggest(&request(&[("random_state", "43")], params(), vec![], 5))
            .unwrap();
        assert_ne!(values(&a), values(&d));
    }

    #[test]
    fn finite_spaces_never_repeat_and_report_exhaustion() {
        let params = || {
            vec![
                int("a", "1", "3", ""),
                categorical("b", &["x", "y"]),
                double("c", "0.1", "0.2", "0.1"),
            ]
        };
        // 12 points; 3 taken (one written differently), one outside the space.
        let trials = vec![
            trial(
                "t1",
                &[("a", "1"), ("b", "x"), ("c", "0.1")],
                C::Succeeded,
                Some("0.5"),
            ),
            trial("t2", &[("a", "2"), ("b", "y"), ("c", "0.20")], C::Running, None),
            trial("t3", &[("a", "3.0"), ("b", "x"), ("c", "0.2")], C::Failed, None),
            trial("t4", &[("a", "9"), ("b", "x"), ("c", "0.2")], C::Failed, None),
        ];
        let taken: HashSet<Vec<String>> = [["1", "x", "0.1"], ["2", "y", "0.2"], ["3", "x", "0.2"]]
            .iter()
            .map(|v| v.iter().map(|s| s.to_string()).collect())
            .collect();
        for seed in ["1", "2", "3"] {
            let out = Random
                .suggest(&request(&[("random_state", seed)], params(), trials.clone(), 5))
                .unwrap();
            assert_eq!(out.assignments.len(), 5);
            assert!(!out.exhausted);
            let got: HashSet<Vec<String>> = values(&out).into_iter().collect();
            assert_eq!(got.len(), 5, "no duplicates within the batch");
            assert!(got.is_disjoint(&taken), "no repeats of history");
        }
        let out = Random
            .suggest(&request(&[], params(), trials.clone(), 20))
            .unwrap();
        assert_eq!(out.assignments.len(), 9);
        assert!(out.exhausted);
        let got: HashSet<Vec<String>> = values(&out).into_iter().collect();
        assert_eq!(got.len(), 9);
        assert!(got.is_disjoint(&taken));
    }

    #[test]
    fn nearly_full_spaces_are_searched_without_bias_or_endless_loops() {
        let space = SearchSpace::from_experiment(&experiment(
            "random",
            &[],
            vec![int("a", "0", "9", ""), int("b", "0", "4", "")],
        ))
        .unwrap();
        let taken: HashSet<Vec<u128>> = (0..45).map(|c| space.decode(c).unwrap()).collect();
        for limit in [0, ENUMERATION_LIMIT] {
            let mut rng = seeded_rng(Some(9), 0);
            let got = sample_distinct(&space, 10, taken.clone(), &mut rng, limit);
            assert_eq!(got.len(), 5, "limit {limit}");
            let got: HashSet<_> = got.into_iter().collect();
            let expected: HashSet<_> = (45..50).map(|c| space.decode(c).unwrap()).collect();
            assert_eq!(got, expected);
        }
    }

    #[test]
    fn huge_finite_spaces_use_rejection_sampling() {
        let params = vec![
            int("a", "0", "1000000000", ""),
            int("b", "0", "1000000000", ""),
            double("c", "0", "1000", "0.001"),
        ];
        let out = Random
            .suggest(&request(&[("random_state", "3")], params, vec![], 1000))
            .unwrap();
        let got: HashSet<Vec<String>> = values(&out).into_iter().collect();
        assert_eq!(got.len(), 1000);
    }
}

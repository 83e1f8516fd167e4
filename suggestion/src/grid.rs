//! `grid`: every combination of the parameters' values, following Katib's optuna
//! `GridSampler` service with two deliberate differences.
//!
//! Values: int `min, min+step, ..., <= max` (step default 1); double needs `step` and takes
//! the exact decimal values `min + k*step <= max` (Katib's `numpy.arange` prints float noise
//! such as `0.019999999999999997`; here the values are `0.01, 0.02, ...`); discrete and
//! categorical take their lists. Distributions are ignored.
//!
//! Order: lexicographic in parameter order (the first parameter varies slowest). With the
//! `random_state` setting the order is a pseudo-random permutation of the combinations fixed
//! by the seed. Combinations are enumerated lazily through a mixed-radix index, so huge grids
//! are never materialised; each call skips the combinations already in the request's trials
//! (compared by value: `"0.10"` is `0.1`) and returns the first `n` left.
//!
//! Differences from Katib: `maxTrialCount` larger than the grid is not rejected (Katib fails
//! validation with "Max Trial Count: N > all possible search combinations: M"); instead, once
//! every combination is taken the reply is short and [`Suggested::exhausted`] is set, which
//! the katib-rs controller treats as the end of the search. Callers can compare
//! [`grid_size`] with `maxTrialCount` to warn early.

use katib_api::pb;

use crate::algorithm::{Algorithm, AlgorithmSettings, SuggestRequest, Suggested, mix64};
use crate::error::{SettingsError, SuggestError};
use crate::space::{Coord, Domain, SearchSpace};

/// The `grid` algorithm.
#[derive(Debug, Clone, Copy, Default)]
pub struct Grid;

/// The settings of `grid`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GridSettings {
    /// `random_state`: when set, the visiting order is shuffled by this seed.
    pub random_state: Option<u64>,
}

impl Grid {
    /// Katib's name for this algorithm.
    pub const NAME: &'static str = "grid";
    /// The setting names it accepts.
    pub const SETTINGS: &'static [&'static str] = &["random_state"];
}

impl GridSettings {
    /// Parses and checks the settings, reporting every problem.
    pub fn from_settings(settings: &AlgorithmSettings) -> Result<Self, SettingsError> {
        let (_, random_state) =
            SettingsError::both(settings.check_known(Grid::SETTINGS), settings.random_state())?;
        Ok(GridSettings { random_state })
    }
}

/// The number of combinations of a grid over `space` (saturating at `u128::MAX`). A space with
/// an unstepped double is unbounded (`u128::MAX`); grid validation rejects it.
pub fn grid_size(space: &SearchSpace) -> u128 {
    space.size().unwrap_or(u128::MAX)
}

/// Every double must have a step.
fn check_space(space: &SearchSpace) -> Result<(), SettingsError> {
    SettingsError::check(
        space
            .parameters()
            .iter()
            .filter(|p| matches!(&p.domain, Domain::Double(d) if d.grid.is_none()))
            .map(|p| {
                format!(
                    "grid: parameter \"{}\" (double) has no feasibleSpace.step; grid search needs a step for every double, e.g. step: \"0.01\"",
                    p.name
                )
            })
            .collect(),
    )
}

impl Algorithm for Grid {
    fn name(&self) -> &'static str {
        Grid::NAME
    }

    fn validate(&self, experiment: &pb::Experiment) -> Result<(), SettingsError> {
        let space = SearchSpace::from_experiment(experiment).and_then(|s| check_space(&s));
        let settings = GridSettings::from_settings(&AlgorithmSettings::from_experiment(experiment));
        SettingsError::both(space, settings).map(|_| ())
    }

    fn suggest(&self, request: &SuggestRequest) -> Result<Suggested, SuggestError> {
        let settings = GridSettings::from_settings(&request.settings)?;
        let space = &request.space;
        check_space(space)?;
        let size = grid_size(space);
        let order = VisitOrder::new(size, settings.random_state);
        let taken = request.taken();
        let mut assignments = Vec::with_capacity(request.n.min(1024));
        // Each step either finds a free combination or skips a taken one, so this loop runs
        // at most `taken.len() + n` times, however large the grid.
        let mut position = 0u128;
        while assignments.len() < request.n && position < size {
            let point = space
                .decode(order.at(position))
                .ok_or_else(|| internal("decode"))?;
            position += 1;
            if taken.contains(&point) {
                continue;
            }
            let coords: Vec<Coord> = point.into_iter().map(Coord::Index).collect();
            assignments.push(space.render(&coords).ok_or_else(|| internal("render"))?);
        }
        Ok(Suggested {
            exhausted: assignments.len() < request.n,
            assignments,
            algorithm_settings: Vec::new(),
        })
    }
}

fn internal(what: &str) -> SuggestError {
    SuggestError::Internal {
        algorithm: Grid::NAME,
        message: format!("could not {what} a grid combination"),
    }
}

/// Feistel rounds of the shuffled order.
const ROUNDS: usize = 6;

/// The order combinations are visited in: the identity, or a keyed pseudo-random permutation
/// of `[0, size)` computed on the fly (a balanced Feistel network over the next even power of
/// two, with cycle-walking back into range; expected fewer than 4 network passes per index).
#[derive(Debug, Clone)]
struct VisitOrder {
    size: u128,
    shuffle: Option<Feistel>,
}

#[derive(Debug, Clone)]
struct Feistel {
    half_bits: u32,
    mask: u128,
    keys: [u64; ROUNDS],
}

impl VisitOrder {
    fn new(size: u128, seed: Option<u64>) -> Self {
        let shuffle = seed.filter(|_| size > 1).map(|seed| {
            let bits = 128 - (size - 1).leading_zeros();
            let half_bits = bits.div_ceil(2);
            let mut keys = [0u64; ROUNDS];
            for (i, key) in keys.iter_mut().enumerate() {
                *key = mix64(seed ^ mix64(i as u64 + 1));
            }
            Feistel {
                half_bits,
                mask: (1u128 << half_bits) - 1,
                keys,
            }
        });
        VisitOrder { size, shuffle }
    }

    /// The combination visited at `position` (`position < size`).
    fn at(&self, position: u128) -> u128 {
        let Some(f) = &self.shuffle else {
            return position;
        };
        let mut x = f.encrypt(position);
        // Cycle-walking: the permutation of the power-of-two domain, restricted to
        // `[0, size)` by following each cycle until it comes back into range.
        while x >= self.size {
            x = f.encrypt(x);
        }
        x
    }
}

impl Feistel {
    fn encrypt(&self, x: u128) -> u128 {
        let (mut left, mut right) = (x >> self.half_bits, x & self.mask);
        for &key in &self.keys {
            // half_bits <= 64, so `right` fits in a u64.
            let f = u128::from(mix64(right as u64 ^ key)) & self.mask;
            (left, right) = (right, left ^ f);
        }
        (left << self.half_bits) | right
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::space::testing::*;
    use pb::trial_status::TrialConditionType as C;

    fn request(
        settings: &[(&str, &str)],
        params: Vec<pb::ParameterSpec>,
        trials: Vec<pb::Trial>,
        n: i32,
    ) -> SuggestRequest {
        request_for("grid", settings, params, trials, n, n)
    }

    #[test]
    fn validates_settings_and_steps() {
        let ok = experiment(
            "grid",
            &[("random_state", "3")],
            vec![double("lr", "0.01", "0.05", "0.01"), int("n", "1", "3", "")],
        );
        assert!(Grid.validate(&ok).is_ok());
        let err = Grid
            .validate(&experiment(
                "grid",
                &[("n_startup_trials", "5"), ("random_state", "x")],
                vec![double("lr", "0.01", "0.05", ""), categorical("c", &["a"])],
            ))
            .unwrap_err();
        assert_eq!(
            err.problems(),
            [
                "grid: parameter \"lr\" (double) has no feasibleSpace.step; grid search needs a step for every double, e.g. step: \"0.01\"",
                "unknown setting n_startup_trials for algorithm grid; allowed: random_state",
                "setting random_state of algorithm grid: \"x\" is not an integer >= 0",
            ]
        );
        // A maxTrialCount larger than the grid is fine (exhaustion ends the experiment).
        let mut big = ok.clone();
        big.spec.as_mut().unwrap().max_trial_count = 1000;
        assert!(Grid.validate(&big).is_ok());
    }

    #[test]
    fn exact_decimal_values_and_exhaustion() {
        let out = Grid
            .suggest(&request(
                &[],
                vec![double("lr", "0.01", "0.05", "0.01")],
                vec![],
                10,
            ))
            .unwrap();
        assert_eq!(values(&out), [["0.01"], ["0.02"], ["0.03"], ["0.04"], ["0.05"]]);
        assert!(out.exhausted);
        let out = Grid
            .suggest(&request(
                &[],
                vec![double("lr", "0.01", "0.05", "0.01")],
                vec![],
                5,
            ))
            .unwrap();
        assert_eq!(out.assignments.len(), 5);
        assert!(!out.exhausted);
    }

    #[test]
    fn lexicographic_order_skipping_history() {
        let params = || {
            vec![
                int("a", "1", "2", ""),
                discrete("b", &["0.5", "1"]),
                categorical("c", &["x", "y"]),
            ]
        };
        let out = Grid.suggest(&request(&[], params(), vec![], 3)).unwrap();
        assert_eq!(
            values(&out),
            [["1", "0.5", "x"], ["1", "0.5", "y"], ["1", "1", "x"]]
        );
        let trials = vec![
            trial(
                "t1",
                &[("a", "1"), ("b", "0.50"), ("c", "x")],
                C::Succeeded,
                Some("1"),
            ),
            trial("t2", &[("c", "x"), ("b", "1.0"), ("a", "1")], C::Running, None),
            trial("t3", &[("a", "2"), ("b", "7"), ("c", "x")], C::Running, None),
        ];
        let out = Grid.suggest(&request(&[], params(), trials.clone(), 3)).unwrap();
        assert_eq!(
            values(&out),
            [["1", "0.5", "y"], ["1", "1", "y"], ["2", "0.5", "x"]]
        );
        let out = Grid.suggest(&request(&[], params(), trials, 10)).unwrap();
        assert_eq!(out.assignments.len(), 6);
        assert!(out.exhausted);
    }

    #[test]
    fn shuffled_order_visits_every_combination_once() {
        let params = || {
            vec![
                int("a", "0", "6", ""),
                double("b", "0.1", "0.5", "0.1"),
                categorical("c", &["p", "q", "r"]),
            ]
        };
        let mut trials = Vec::new();
        let mut seen: Vec<Vec<String>> = Vec::new();
        loop {
            let out = Grid
                .suggest(&request(&[("random_state", "11")], params(), trials.clone(), 4))
                .unwrap();
            for a in &out.assignments {
                let pairs: Vec<(&str, &str)> =
                    a.iter().map(|x| (x.name.as_str(), x.value.as_str())).collect();
                trials.push(trial("t", &pairs, C::Running, None));
            }
            seen.extend(values(&out));
            if out.exhausted {
                break;
            }
        }
        assert_eq!(seen.len(), 7 * 5 * 3);
        let distinct: HashSet<_> = seen.iter().cloned().collect();
        assert_eq!(distinct.len(), seen.len());
        let lexicographic = values(&Grid.suggest(&request(&[], params(), vec![], 105)).unwrap());
        assert_ne!(seen, lexicographic);
        let again = values(
            &Grid
                .suggest(&request(&[("random_state", "11")], params(), vec![], 8))
                .unwrap(),
        );
        assert_eq!(again, seen[..8]);
    }

    #[test]
    fn shuffle_is_a_permutation_for_any_size() {
        for size in [1u128, 2, 3, 5, 16, 17, 100, 1000, 4097] {
            for seed in [0, 1, 99] {
                let order = VisitOrder::new(size, Some(seed));
                let all: HashSet<u128> = (0..size).map(|p| order.at(p)).collect();
                assert_eq!(all.len() as u128, size);
                assert!(all.iter().all(|&c| c < size));
            }
        }
        let order = VisitOrder::new(u128::MAX, Some(4));
        assert!(order.at(12345) < u128::MAX);
    }

    #[test]
    fn huge_grids_are_enumerated_lazily() {
        let params = vec![
            int("a", "0", "1000000000", ""),
            int("b", "0", "1000000000", ""),
            double("c", "0", "1000000", "0.000001"),
        ];
        let req = request(&[("random_state", "1")], params.clone(), vec![], 5);
        assert_eq!(
            grid_size(&req.space),
            1_000_000_001u128 * 1_000_000_001 * 1_000_000_000_001
        );
        assert_eq!(Grid.suggest(&req).unwrap().assignments.len(), 5);
        let out = Grid.suggest(&request(&[], params, vec![], 2)).unwrap();
        assert_eq!(values(&out), [["0", "0", "0"], ["0", "0", "0.000001"]]);
    }

    #[test]
    fn grid_size_of_spaces() {
        let space = |params| SearchSpace::from_experiment(&experiment("grid", &[], params)).unwrap();
        assert_eq!(
            grid_size(&space(vec![
                int("a", "1", "10", "3"),
                categorical("c", &["x", "y"])
            ])),
            8
        );
        assert_eq!(grid_size(&space(vec![double("lr", "0", "1", "")])), u128::MAX);
    }
}

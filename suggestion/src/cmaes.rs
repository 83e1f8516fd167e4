//! `cmaes`: the Covariance Matrix Adaptation Evolution Strategy.
//!
//! Hansen, *The CMA Evolution Strategy: A Tutorial*, arXiv:1604.00772 (2016): weighted
//! recombination with negative weights (active CMA), cumulative step-size adaptation and
//! rank-one plus rank-mu covariance updates, with the tutorial's default parameters. Restarts
//! as in Auger & Hansen, *A restart CMA evolution strategy with increasing population size*
//! (CEC 2005, IPOP) and Hansen, *Benchmarking a BI-population CMA-ES on the BBOB-2009
//! function testbed* (GECCO 2009, BIPOP).
//!
//! # Settings
//! | setting | default | meaning |
//! |---|---|---|
//! | `sigma` | 1/6 | initial step size, in units of each parameter's range (> 0) |
//! | `restart_strategy` | `none` | `none` (also `None`), `ipop` or `bipop`; population x2 per large restart |
//! | `random_state` | from the experiment's name | seed (integer >= 0) |
//!
//! At least two int or double parameters with more than one value are needed, as in Katib.
//!
//! # Search space
//! CMA-ES runs on the unit cube, one axis per int/double parameter: `[min, max]` linearly, or
//! `[ln min, ln max]` for `logUniform`/`logNormal`; ints and stepped doubles take the grid value
//! whose bin holds the point (rounding), while the update uses the unrounded point, so the
//! objective is seen as a step function. The `normal` distributions' shapes are not used (as
//! goptuna). A candidate outside the cube is redrawn (up to 100 times), then clipped. Discrete
//! and categorical parameters are drawn uniformly and independently for each candidate (as
//! Optuna's and goptuna's CMA-ES samplers do through their independent sampler).
//!
//! # No state between calls: replay
//! The service keeps nothing. Every candidate of every generation is drawn from a random
//! stream seeded by `(seed, restart, generation, candidate index)`, so each call replays the
//! run from the start: it draws generation 0's candidates, finds each one among the request's
//! trials by its assignments, updates the distribution once the generation's `lambda`
//! candidates are evaluated, and so on, until it reaches the generation still being
//! evaluated. There it suggests that generation's candidates that no trial holds yet, in
//! order; when all `lambda` are out (some still running) it draws more candidates of the same
//! generation, so parallel workers never wait (those extra points only count if a candidate
//! fails).
//!
//! A generation's update uses its first `lambda` candidates in index order that did not fail
//! (a failed or killed trial's candidate is replaced by the next one); it happens once all of
//! them have an objective value (succeeded, or early-stopped with a value). The outcome
//! therefore does not depend on which call saw which trial finish. A candidate whose point
//! some trial already holds (ints and steps make repeats likely) takes that trial's value
//! instead of being suggested again, so finite spaces never repeat points; a generation
//! whose candidates were all repeats counts as stagnated (a restart, or with `none`, random
//! free points once the search is stuck). Trials that match no candidate (another algorithm's,
//! or a changed space) are not used by the update.

use std::collections::HashMap;

use katib_api::pb;
use nalgebra::{DMatrix, DVector, SymmetricEigen};
use rand::{Rng, RngExt as _};

use crate::algorithm::{
    Algorithm, AlgorithmSettings, SuggestRequest, Suggested, TrialCondition, mix64, seeded_rng,
};
use crate::error::{SettingsError, SuggestError};
use crate::space::{Coord, Direction, SearchSpace};
use crate::tpe::numeric::{View, hash_str, point_key, random_fill, render_all, standard_normal};

/// Redraws of a candidate outside the unit cube before it is clipped.
const BOUND_TRIES: usize = 100;

/// Candidates drawn in the current generation per requested point before giving up on it.
const CANDIDATES_PER_POINT: usize = 200;

/// Generations replayed at most per trial in the request (plus a constant), a bound on the
/// work of a call in spaces where candidates keep landing on known points.
const GENERATIONS_PER_TRIAL: usize = 4;

/// Largest condition number of the covariance before a restart.
const MAX_CONDITION: f64 = 1e14;

/// The `cmaes` algorithm.
#[derive(Debug, Clone, Copy, Default)]
pub struct Cmaes;

/// Restart strategies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartStrategy {
    /// Run one CMA-ES to the end.
    None,
    /// Restart with a doubled population whenever a run converges.
    Ipop,
    /// Alternate between IPOP's growing populations and small ones with smaller steps.
    Bipop,
}

/// The settings of `cmaes`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CmaesSettings {
    /// Initial step size on the unit cube.
    pub sigma: f64,
    /// The restart strategy.
    pub restart_strategy: RestartStrategy,
    /// The seed.
    pub random_state: Option<u64>,
}

impl Cmaes {
    /// Katib's name for this algorithm.
    pub const NAME: &'static str = "cmaes";
    /// The setting names it accepts.
    pub const SETTINGS: &'static [&'static str] = &["sigma", "restart_strategy", "random_state"];
    /// The default initial step size (a sixth of each range, as Optuna and goptuna).
    pub const DEFAULT_SIGMA: f64 = 1.0 / 6.0;
}

impl CmaesSettings {
    /// Parses and checks the settings, reporting every problem.
    pub fn from_settings(settings: &AlgorithmSettings) -> Result<Self, SettingsError> {
        let mut problems: Vec<String> = Vec::new();
        let mut take = |e: SettingsError| problems.extend(e.problems().iter().cloned());
        if let Err(e) = settings.check_known(Cmaes::SETTINGS) {
            take(e);
        }
        let sigma = settings
            .parse::<f64>(
                "sigma",
                "a number > 0 (the initial step as a fraction of each parameter's range)",
                |&s| s > 0.0 && s.is_finite(),
            )
            .unwrap_or_else(|e| {
                take(e);
                None
            })
            .unwrap_or(Cmaes::DEFAULT_SIGMA);
        let restart_strategy = match settings.get("restart_strategy").map(str::trim) {
            None | Some("none" | "None" | "") => RestartStrategy::None,
            Some("ipop") => RestartStrategy::Ipop,
            Some("bipop") => RestartStrategy::Bipop,
            Some(other) => {
                problems.push(format!(
                    "setting restart_strategy of algorithm cmaes: \"{other}\" is not one of none, ipop, bipop"
                ));
                RestartStrategy::None
            }
        };
        let random_state = settings.random_state().unwrap_or_else(|e| {
            problems.extend(e.problems().iter().cloned());
            None
        });
        SettingsError::check(problems)?;
        Ok(CmaesSettings {
            sigma,
            restart_strategy,
            random_state,
        })
    }
}

/// The int/double axes of a space; an error unless there are at least two.
fn axes(space: &SearchSpace) -> Result<Vec<usize>, SettingsError> {
    let views = View::all(space);
    let axes: Vec<usize> = (0..views.len())
        .filter(|&d| matches!(views[d], View::Numeric(_)))
        .collect();
    if axes.len() < 2 {
        return Err(SettingsError::new(format!(
            "algorithm cmaes needs at least 2 int or double parameters with min < max; this experiment has {}. Use tpe, random or grid for such spaces",
            axes.len()
        )));
    }
    Ok(axes)
}

impl Algorithm for Cmaes {
    fn name(&self) -> &'static str {
        Cmaes::NAME
    }

    fn validate(&self, experiment: &pb::Experiment) -> Result<(), SettingsError> {
        let settings = AlgorithmSettings::from_experiment(experiment);
        let space = SearchSpace::from_experiment(experiment).and_then(|s| {
            s.require_objective(Cmaes::NAME)?;
            axes(&s)
        });
        SettingsError::both(space, CmaesSettings::from_settings(&settings)).map(|_| ())
    }

    fn suggest(&self, request: &SuggestRequest) -> Result<Suggested, SuggestError> {
        let settings = CmaesSettings::from_settings(&request.settings)?;
        let space = &request.space;
        let direction = space.require_objective(Cmaes::NAME)?.direction;
        let axes = axes(space)?;
        let seed = settings
            .random_state
            .unwrap_or_else(|| hash_str(&request.experiment_name));
        let mut run = Replay {
            views: View::all(space),
            axes,
            seed,
            settings,
            trials: Known::of(request, direction),
        };
        let points = run.suggest(request.n);
        let mut assignments = render_all(Cmaes::NAME, space, &points)?;
        let mut exhausted = false;
        if points.len() < request.n {
            let rest = random_fill(request, &points, request.n - points.len(), settings.random_state)?;
            exhausted = rest.exhausted;
            assignments.extend(rest.assignments);
        }
        Ok(Suggested {
            assignments,
            exhausted,
            algorithm_settings: Vec::new(),
        })
    }
}

/// What a trial tells about a point.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Status {
    /// Evaluated: the loss (objective, negated when maximizing).
    Value(f64),
    /// Failed or killed: the candidate is replaced.
    Dead,
    /// Running, pending, or suggested earlier in this call.
    Pending,
}

/// The request's trials by point.
struct Known {
    by_point: HashMap<Vec<u128>, Status>,
}

impl Known {
    fn of(request: &SuggestRequest, direction: Direction) -> Known {
        let sign = match direction {
            Direction::Minimize => 1.0,
            Direction::Maximize => -1.0,
        };
        let mut by_point: HashMap<Vec<u128>, Status> = HashMap::new();
        for t in &request.history {
            let Some(point) = t.point.as_deref() else {
                continue;
            };
            let status = match (t.condition, t.objective) {
                (TrialCondition::Succeeded | TrialCondition::Earlystopped, Some(v)) => {
                    Status::Value(sign * v)
                }
                (TrialCondition::Created | TrialCondition::Running, _) => Status::Pending,
                _ => Status::Dead,
            };
            // When one point was tried several times, a value beats pending beats failure.
            let entry = by_point.entry(point_key(point)).or_insert(status);
            let rank = |s: &Status| match s {
                Status::Value(_) => 2,
                Status::Pending => 1,
                Status::Dead => 0,
            };
            if rank(&status) > rank(entry) {
                *entry = status;
            }
        }
        Known { by_point }
    }
}

/// One candidate of a generation.
struct Candidate {
    /// The (clipped, unrounded) point on the unit cube.
    x: DVector<f64>,
    /// The point in the space.
    point: Vec<Coord>,
}

/// The replayed run.
struct Replay {
    views: Vec<View>,
    axes: Vec<usize>,
    seed: u64,
    settings: CmaesSettings,
    trials: Known,
}

impl Replay {
    /// Replays every finished generation, then returns up to `n` new points of the current
    /// one (fewer when the search is stuck on known points).
    fn suggest(&mut self, n: usize) -> Vec<Vec<Coord>> {
        let dim = self.axes.len();
        let mut restarts = Restarts::new(dim, self.settings);
        let mut es = Es::new(dim, restarts.lambda, self.settings.sigma, None);
        let max_generations = GENERATIONS_PER_TRIAL * self.trials.by_point.len() + 50;
        for _ in 0..max_generations {
            match self.generation(&es, restarts.restart) {
                Generation::Complete { ranked, stagnated } => {
                    let converged = es.update(&ranked) || stagnated;
                    restarts.used(es.lambda);
                    if converged {
                        match restarts.next(self.seed) {
                            Some((lambda, sigma, mean)) => {
                                es = Es::new(dim, lambda, sigma, Some(mean));
                            }
                            None if stagnated => return Vec::new(),
                            None => {}
                        }
                    }
                }
                Generation::Current => return self.issue(&es, restarts.restart, n),
            }
        }
        Vec::new()
    }

    /// Candidate `j` of generation `es.generation` of restart `restart`.
    fn candidate(&self, es: &Es, restart: usize, j: usize) -> Candidate {
        let salt = mix64(
            mix64(restart as u64 ^ 0xC3A5_C85C_97CB_3127)
                ^ mix64(es.generation as u64).rotate_left(17)
                ^ (j as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
        );
        let mut rng = seeded_rng(Some(self.seed), salt);
        let x = es.sample(&mut rng);
        let mut point = Vec::with_capacity(self.views.len());
        let mut axis = 0;
        for view in &self.views {
            point.push(match view {
                View::Fixed(c) => *c,
                View::Numeric(d) => {
                    let c = d.coord_at(d.at_unit(x[axis]));
                    axis += 1;
                    c
                }
                View::Choice(k) => Coord::Index(rng.random_range(0..*k) as u128),
            });
        }
        Candidate { x, point }
    }

    /// The state of the generation `es` is at.
    fn generation(&self, es: &Es, restart: usize) -> Generation {
        let mut ranked: Vec<(f64, DVector<f64>)> = Vec::with_capacity(es.lambda);
        let mut j = 0;
        // Dead candidates are replaced; a run where nearly every candidate fails ends up
        // bounded by the replay's generation limit through `Current`.
        while ranked.len() < es.lambda {
            if j >= es.lambda * 50 + 1000 {
                return Generation::Current;
            }
            let c = self.candidate(es, restart, j);
            j += 1;
            match self.trials.by_point.get(&point_key(&c.point)) {
                Some(Status::Value(v)) => ranked.push((*v, c.x)),
                Some(Status::Dead) => continue,
                Some(Status::Pending) | None => return Generation::Current,
            }
        }
        let stagnated = self.collapsed(es, restart);
        ranked.sort_by(|a, b| a.0.total_cmp(&b.0));
        Generation::Complete { ranked, stagnated }
    }

    /// True when the generation's first `lambda` candidates all land on one point: the
    /// distribution fits inside one grid cell of the ints and stepped doubles.
    fn collapsed(&self, es: &Es, restart: usize) -> bool {
        if es.generation == 0 {
            return false;
        }
        let keys: Vec<Vec<u128>> = (0..es.lambda)
            .map(|j| point_key(&self.candidate(es, restart, j).point))
            .collect();
        let first = &keys[0];
        keys.iter().all(|k| k == first)
    }

    /// Up to `n` points of the current generation that no trial holds yet.
    fn issue(&mut self, es: &Es, restart: usize, n: usize) -> Vec<Vec<Coord>> {
        let mut out = Vec::with_capacity(n.min(1024));
        let limit = es.lambda + CANDIDATES_PER_POINT * n;
        let mut j = 0;
        while out.len() < n && j < limit {
            let c = self.candidate(es, restart, j);
            j += 1;
            let key = point_key(&c.point);
            if self.trials.by_point.contains_key(&key) {
                continue;
            }
            self.trials.by_point.insert(key, Status::Pending);
            out.push(c.point);
        }
        out
    }
}

enum Generation {
    /// Every candidate the update needs has a value: (loss, x), best first.
    Complete {
        ranked: Vec<(f64, DVector<f64>)>,
        stagnated: bool,
    },
    /// The generation is still being evaluated.
    Current,
}

/// Which run comes next, and the evaluations spent per regime (BIPOP).
struct Restarts {
    strategy: RestartStrategy,
    dim: usize,
    sigma0: f64,
    default_lambda: usize,
    /// Population of the run in progress.
    lambda: usize,
    /// Index of the run in progress (0 for the first).
    restart: usize,
    large_runs: u32,
    budget_large: usize,
    budget_small: usize,
    in_small: bool,
}

impl Restarts {
    fn new(dim: usize, settings: CmaesSettings) -> Self {
        let default_lambda = 4 + (3.0 * (dim as f64).ln()).floor() as usize;
        Restarts {
            strategy: settings.restart_strategy,
            dim,
            sigma0: settings.sigma,
            default_lambda,
            lambda: default_lambda,
            restart: 0,
            large_runs: 0,
            budget_large: 0,
            budget_small: 0,
            in_small: false,
        }
    }

    /// Counts a generation's evaluations.
    fn used(&mut self, lambda: usize) {
        if self.in_small {
            self.budget_small += lambda;
        } else {
            self.budget_large += lambda;
        }
    }

    /// The next run's population, step size and mean, or `None` without restarts.
    fn next(&mut self, seed: u64) -> Option<(usize, f64, DVector<f64>)> {
        if self.strategy == RestartStrategy::None {
            return None;
        }
        self.restart += 1;
        let mut rng = seeded_rng(Some(seed), mix64(0xB1B0_0000 ^ self.restart as u64));
        let mean = DVector::from_fn(self.dim, |_, _| rng.random::<f64>());
        let small = self.strategy == RestartStrategy::Bipop
            && self.large_runs >= 1
            && self.budget_small < self.budget_large;
        self.in_small = small;
        let (lambda, sigma) = if small {
            let u: f64 = rng.random();
            let large = (self.default_lambda << self.large_runs) as f64;
            let ratio = 0.5 * large / self.default_lambda as f64;
            let lambda = (self.default_lambda as f64 * ratio.powf(u * u)).floor() as usize;
            let u2: f64 = rng.random();
            (
                lambda.max(self.default_lambda),
                self.sigma0 * 10f64.powf(-2.0 * u2),
            )
        } else {
            self.large_runs += 1;
            (self.default_lambda << self.large_runs.min(20), self.sigma0)
        };
        self.lambda = lambda;
        Some((lambda, sigma, mean))
    }
}

/// One CMA-ES run's state (Hansen 2016, table 1 defaults).
struct Es {
    dim: usize,
    lambda: usize,
    mu: usize,
    weights: Vec<f64>,
    mu_eff: f64,
    c_sigma: f64,
    d_sigma: f64,
    c_c: f64,
    c_1: f64,
    c_mu: f64,
    chi_n: f64,
    mean: DVector<f64>,
    sigma: f64,
    p_sigma: DVector<f64>,
    p_c: DVector<f64>,
    cov: DMatrix<f64>,
    /// `B D` (columns scaled eigenvectors) and `C^{-1/2}`.
    bd: DMatrix<f64>,
    inv_sqrt: DMatrix<f64>,
    generation: usize,
    /// Best loss of each of the recent generations (flat-fitness check).
    recent_best: Vec<f64>,
}

impl Es {
    fn new(dim: usize, lambda: usize, sigma: f64, mean: Option<DVector<f64>>) -> Self {
        let n = dim as f64;
        let mu = lambda / 2;
        let raw: Vec<f64> = (1..=lambda)
            .map(|i| ((lambda as f64 + 1.0) / 2.0).ln() - (i as f64).ln())
            .collect();
        let pos_sum: f64 = raw.iter().filter(|w| **w > 0.0).sum();
        let pos_sq: f64 = raw.iter().filter(|w| **w > 0.0).map(|w| w * w).sum();
        let mu_eff = pos_sum * pos_sum / pos_sq;
        let neg_sum: f64 = raw.iter().filter(|w| **w < 0.0).map(|w| -w).sum();
        let neg_sq: f64 = raw.iter().filter(|w| **w < 0.0).map(|w| w * w).sum();
        let mu_eff_neg = if neg_sq > 0.0 {
            neg_sum * neg_sum / neg_sq
        } else {
            0.0
        };
        let c_sigma = (mu_eff + 2.0) / (n + mu_eff + 5.0);
        let d_sigma = 1.0 + 2.0 * (((mu_eff - 1.0) / (n + 1.0)).sqrt() - 1.0).max(0.0) + c_sigma;
        let c_c = (4.0 + mu_eff / n) / (n + 4.0 + 2.0 * mu_eff / n);
        let c_1 = 2.0 / ((n + 1.3).powi(2) + mu_eff);
        let c_mu = (1.0 - c_1).min(2.0 * (mu_eff - 2.0 + 1.0 / mu_eff) / ((n + 2.0).powi(2) + mu_eff));
        let alpha_mu_neg = 1.0 + c_1 / c_mu;
        let alpha_mu_eff_neg = 1.0 + 2.0 * mu_eff_neg / (mu_eff + 2.0);
        let alpha_posdef_neg = (1.0 - c_1 - c_mu) / (n * c_mu);
        let neg_scale = alpha_mu_neg.min(alpha_mu_eff_neg).min(alpha_posdef_neg);
        let weights = raw
            .iter()
            .map(|&w| {
                if w >= 0.0 {
                    w / pos_sum
                } else if neg_sum > 0.0 {
                    neg_scale * w / neg_sum
                } else {
                    0.0
                }
            })
            .collect();
        let chi_n = n.sqrt() * (1.0 - 1.0 / (4.0 * n) + 1.0 / (21.0 * n * n));
        Es {
            dim,
            lambda,
            mu,
            weights,
            mu_eff,
            c_sigma,
            d_sigma,
            c_c,
            c_1,
            c_mu,
            chi_n,
            mean: mean.unwrap_or_else(|| DVector::from_element(dim, 0.5)),
            sigma,
            p_sigma: DVector::zeros(dim),
            p_c: DVector::zeros(dim),
            cov: DMatrix::identity(dim, dim),
            bd: DMatrix::identity(dim, dim),
            inv_sqrt: DMatrix::identity(dim, dim),
            generation: 0,
            recent_best: Vec::new(),
        }
    }

    /// A candidate: `m + sigma B D z`, redrawn while outside the unit cube, then clipped.
    fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> DVector<f64> {
        let mut x = self.mean.clone();
        for _ in 0..BOUND_TRIES {
            let z = DVector::from_fn(self.dim, |_, _| standard_normal(rng));
            x = &self.mean + (&self.bd * z) * self.sigma;
            if x.iter().all(|v| (0.0..=1.0).contains(v)) {
                return x;
            }
        }
        x.apply(|v| *v = v.clamp(0.0, 1.0));
        x
    }

    /// One generation's update from `ranked` (loss, x), best first. Returns true when the run
    /// has converged (step size or spread negligible, flat fitness, or an ill-conditioned
    /// covariance).
    fn update(&mut self, ranked: &[(f64, DVector<f64>)]) -> bool {
        let n = self.dim as f64;
        let ys: Vec<DVector<f64>> = ranked
            .iter()
            .map(|(_, x)| (x - &self.mean) / self.sigma)
            .collect();
        let mut y_w = DVector::zeros(self.dim);
        for (w, y) in self.weights.iter().zip(&ys).take(self.mu) {
            y_w += y * *w;
        }
        self.mean += &y_w * self.sigma;
        let c_y = &self.inv_sqrt * &y_w;
        self.p_sigma = &self.p_sigma * (1.0 - self.c_sigma)
            + c_y * (self.c_sigma * (2.0 - self.c_sigma) * self.mu_eff).sqrt();
        let norm_ps = self.p_sigma.norm();
        let g = (self.generation + 1) as f64;
        let h_sigma = norm_ps / (1.0 - (1.0 - self.c_sigma).powf(2.0 * g)).sqrt()
            < (1.4 + 2.0 / (n + 1.0)) * self.chi_n;
        let h = if h_sigma { 1.0 } else { 0.0 };
        self.p_c =
            &self.p_c * (1.0 - self.c_c) + &y_w * (h * (self.c_c * (2.0 - self.c_c) * self.mu_eff).sqrt());
        let delta_h = (1.0 - h) * self.c_c * (2.0 - self.c_c);
        let sum_w: f64 = self.weights.iter().sum();
        let mut rank_mu = DMatrix::zeros(self.dim, self.dim);
        for (w, y) in self.weights.iter().zip(&ys) {
            let w_adj = if *w >= 0.0 {
                *w
            } else {
                let s = (&self.inv_sqrt * y).norm_squared();
                if s > 0.0 { *w * n / s } else { 0.0 }
            };
            rank_mu += (y * y.transpose()) * w_adj;
        }
        self.cov = &self.cov * (1.0 + self.c_1 * delta_h - self.c_1 - self.c_mu * sum_w)
            + (&self.p_c * self.p_c.transpose()) * self.c_1
            + rank_mu * self.c_mu;
        self.sigma *= ((self.c_sigma / self.d_sigma) * (norm_ps / self.chi_n - 1.0))
            .min(1.0)
            .exp();
        self.generation += 1;
        self.recent_best.push(ranked[0].0);
        let keep = 10 + (30.0 * n / self.lambda as f64).ceil() as usize;
        if self.recent_best.len() > keep {
            self.recent_best.remove(0);
        }
        let ill = !self.decompose();
        let spread = self.sigma * self.cov.diagonal().iter().fold(0.0f64, |a, v| a.max(*v)).sqrt();
        let tiny = spread < 1e-12 || self.sigma < 1e-16;
        let values_flat = ranked.first().map(|f| f.0) == ranked.last().map(|l| l.0);
        let history_flat = self.recent_best.len() >= keep && {
            let (lo, hi) = self
                .recent_best
                .iter()
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
                    (a.min(*v), b.max(*v))
                });
            hi - lo < 1e-12
        };
        ill || tiny || (values_flat && history_flat)
    }

    /// Refreshes `B D` and `C^{-1/2}`; false if the covariance is no longer usable.
    fn decompose(&mut self) -> bool {
        // Keep it exactly symmetric.
        let sym = (&self.cov + self.cov.transpose()) * 0.5;
        self.cov = sym;
        let eig = SymmetricEigen::new(self.cov.clone());
        let min = eig.eigenvalues.iter().fold(f64::INFINITY, |a, v| a.min(*v));
        let max = eig.eigenvalues.iter().fold(0.0f64, |a, v| a.max(*v));
        if min.is_nan() || min <= 0.0 || !max.is_finite() || max / min > MAX_CONDITION {
            return false;
        }
        let d = eig.eigenvalues.map(f64::sqrt);
        let b = eig.eigenvectors;
        self.bd = &b * DMatrix::from_diagonal(&d);
        self.inv_sqrt = &b * DMatrix::from_diagonal(&d.map(|v| 1.0 / v)) * b.transpose();
        true
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
        request_for("cmaes", settings, params, trials, n, n)
    }

    /// Runs `cmaes` for `budget` trials, `batch` at a time, on `f` (maximized accuracy).
    fn drive(
        settings: &[(&str, &str)],
        params: fn() -> Vec<pb::ParameterSpec>,
        budget: usize,
        batch: usize,
        f: impl Fn(&[pb::ParameterAssignment]) -> Option<f64>,
    ) -> Vec<pb::Trial> {
        let mut trials: Vec<pb::Trial> = Vec::new();
        while trials.len() < budget {
            let out = Cmaes
                .suggest(&request(settings, params(), trials.clone(), batch as i32))
                .unwrap();
            assert_eq!(out.assignments.len(), batch);
            for a in out.assignments {
                let pairs: Vec<(String, String)> =
                    a.iter().map(|a| (a.name.clone(), a.value.clone())).collect();
                let refs: Vec<(&str, &str)> = pairs.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
                let name = format!("t{}", trials.len());
                trials.push(match f(&a) {
                    Some(v) => trial(&name, &refs, C::Succeeded, Some(&v.to_string())),
                    None => trial(&name, &refs, C::Failed, None),
                });
            }
        }
        trials
    }

    fn num(a: &[pb::ParameterAssignment], name: &str) -> f64 {
        a.iter().find(|a| a.name == name).unwrap().value.parse().unwrap()
    }

    #[test]
    fn validates_settings_and_space() {
        let params = || vec![double("a", "0", "1", ""), int("b", "1", "5", "")];
        assert!(Cmaes.validate(&experiment("cmaes", &[], params())).is_ok());
        for strategy in ["none", "None", "ipop", "bipop"] {
            let s = [
                ("restart_strategy", strategy),
                ("sigma", "0.3"),
                ("random_state", "1"),
            ];
            assert!(Cmaes.validate(&experiment("cmaes", &s, params())).is_ok());
        }
        let err = Cmaes
            .validate(&experiment(
                "cmaes",
                &[
                    ("sigma", "0"),
                    ("restart_strategy", "sometimes"),
                    ("popsize", "3"),
                ],
                params(),
            ))
            .unwrap_err();
        assert_eq!(
            err.problems(),
            [
                "unknown setting popsize for algorithm cmaes; allowed: sigma, restart_strategy, random_state",
                "setting sigma of algorithm cmaes: \"0\" is not a number > 0 (the initial step as a fraction of each parameter's range)",
                "setting restart_strategy of algorithm cmaes: \"sometimes\" is not one of none, ipop, bipop",
            ]
        );
        let err = Cmaes
            .validate(&experiment(
                "cmaes",
                &[],
                vec![
                    double("a", "0", "1", ""),
                    int("fixed", "2", "2", ""),
                    categorical("c", &["x", "y"]),
                ],
            ))
            .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("algorithm cmaes needs at least 2 int or double parameters"),
            "{err}"
        );
    }

    #[test]
    fn weights_follow_the_tutorial() {
        let es = Es::new(10, 10, 0.3, None);
        let pos: f64 = es.weights.iter().filter(|w| **w > 0.0).sum();
        assert!((pos - 1.0).abs() < 1e-12);
        assert_eq!(es.weights.iter().filter(|w| **w > 0.0).count(), 5);
        assert!(es.weights.windows(2).all(|w| w[0] >= w[1]));
        // Negative weights sum to -min(alpha_mu-, alpha_mu_eff-, alpha_posdef-).
        let neg: f64 = es.weights.iter().filter(|w| **w < 0.0).sum();
        assert!(neg < 0.0 && neg > -3.0, "{neg}");
        assert!((es.mu_eff - 3.1672).abs() < 1e-3, "{}", es.mu_eff);
    }

    #[test]
    fn converges_on_a_quadratic() {
        // Maximize -(a - 0.3)^2 - (b - 0.7)^2 - (c - 0.5)^2 over [0, 1]^3.
        let params = || {
            vec![
                double("a", "0", "1", ""),
                double("b", "0", "1", ""),
                double("c", "0", "1", ""),
            ]
        };
        let f = |a: &[pb::ParameterAssignment]| {
            Some(-(num(a, "a") - 0.3).powi(2) - (num(a, "b") - 0.7).powi(2) - (num(a, "c") - 0.5).powi(2))
        };
        let trials = drive(&[("random_state", "4")], params, 140, 3, f);
        let best = trials
            .iter()
            .filter_map(|t| {
                t.status.as_ref()?.observation.as_ref()?.metrics[0]
                    .value
                    .parse::<f64>()
                    .ok()
            })
            .fold(f64::NEG_INFINITY, f64::max);
        assert!(best > -1e-3, "best {best}");
    }

    #[test]
    fn replay_is_deterministic_and_batches_do_not_change_the_run() {
        let params = || vec![double("a", "-1", "1", ""), double("b", "-1", "1", "")];
        let f = |a: &[pb::ParameterAssignment]| Some(-(num(a, "a").powi(2) + num(a, "b").powi(2)));
        let one = drive(&[("random_state", "7")], params, 30, 1, f);
        let three = drive(&[("random_state", "7")], params, 30, 3, f);
        let pts = |ts: &[pb::Trial]| -> Vec<Vec<String>> { ts.iter().map(trial_values).collect() };
        // Sequential trials finish before the next ask; in batches of 3 a generation (lambda 5)
        // gets one extra point while its last candidates run. The candidates are the same.
        let one_set: HashSet<_> = pts(&one).into_iter().collect();
        let shared = pts(&three).iter().filter(|p| one_set.contains(*p)).count();
        assert!(shared >= 20, "{shared} of 30 shared");
        let again = drive(&[("random_state", "7")], params, 30, 1, f);
        assert_eq!(pts(&one), pts(&again));
        // Without random_state the experiment's name seeds the run: still reproducible.
        let a = drive(&[], params, 12, 2, f);
        let b = drive(&[], params, 12, 2, f);
        assert_eq!(pts(&a), pts(&b));
    }

    #[test]
    fn failures_are_replaced_and_every_type_fits() {
        use pb::Distribution as D;
        fn params() -> Vec<pb::ParameterSpec> {
            vec![
                double_dist("lr", "0.0001", "1", "", D::LogUniform),
                double("m", "0.01", "0.05", "0.01"),
                int("n", "-5", "5", "2"),
                int_dist("il", "1", "1000", "", D::LogUniform),
                double_dist("no", "0", "10", "", D::Normal),
                discrete("d", &["1", "2.5", "10"]),
                categorical("c", &["a", "b", "c"]),
                double("fixed", "3", "3", ""),
            ]
        }
        for strategy in ["none", "ipop", "bipop"] {
            let settings = [("random_state", "3"), ("restart_strategy", strategy)];
            let trials = drive(&settings, params, 120, 4, |a| {
                // Fail whenever lr > 0.5.
                let lr = num(a, "lr");
                (lr <= 0.5).then(|| -(lr.ln() + 4.0).abs() - num(a, "m"))
            });
            let space = SearchSpace::from_experiment(&experiment("cmaes", &[], params())).unwrap();
            for t in &trials {
                let a = &t
                    .spec
                    .as_ref()
                    .unwrap()
                    .parameter_assignments
                    .as_ref()
                    .unwrap()
                    .assignments;
                assert!(space.parse_assignments(a).is_some(), "{a:?}");
                assert_eq!(a[7].value, "3");
            }
            let distinct: HashSet<Vec<String>> = trials.iter().map(trial_values).collect();
            assert_eq!(distinct.len(), trials.len(), "{strategy}: repeated a point");
        }
    }

    #[test]
    fn small_finite_spaces_run_out_cleanly() {
        fn params() -> Vec<pb::ParameterSpec> {
            vec![int("a", "0", "3", ""), int("b", "0", "2", "")]
        }
        for strategy in ["none", "ipop"] {
            let settings = [("random_state", "1"), ("restart_strategy", strategy)];
            let trials = drive(&settings, params, 12, 2, |a| Some(num(a, "a") + num(a, "b")));
            let out = Cmaes
                .suggest(&request(&settings, params(), trials.clone(), 3))
                .unwrap();
            assert!(out.assignments.is_empty() && out.exhausted, "{strategy}");
            let distinct: HashSet<Vec<String>> = trials.iter().map(trial_values).collect();
            assert_eq!(distinct.len(), 12);
        }
    }

    #[test]
    fn minimize_is_supported() {
        let mut exp = experiment(
            "cmaes",
            &[("random_state", "2")],
            vec![double("a", "0", "1", ""), double("b", "0", "1", "")],
        );
        exp.spec.as_mut().unwrap().objective.as_mut().unwrap().r#type = pb::ObjectiveType::Minimize as i32;
        let req = SuggestRequest::from_pb(&pb::GetSuggestionsRequest {
            experiment: Some(exp),
            trials: vec![],
            current_request_number: 4,
            total_request_number: 4,
        })
        .unwrap();
        let out = Cmaes.suggest(&req).unwrap();
        assert_eq!(values(&out).len(), 4);
    }
}

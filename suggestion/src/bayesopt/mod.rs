//! `bayesianoptimization`: Gaussian-process Bayesian optimization, with Katib's settings
//! (its scikit-optimize service, katib-compat.md section 7.4) and a model of its own.
//!
//! # Settings
//! | name | default | values |
//! |---|---|---|
//! | `base_estimator` | `GP` | `GP` (case-insensitive). `RF`, `ET`, `GBRT` are rejected: only the Gaussian process is implemented. |
//! | `n_initial_points` | 10 | integer >= 0: points of the initial design before the model is used |
//! | `acq_func` | `gp_hedge` | `gp_hedge`, `EI`, `PI`, `LCB` (case-insensitive). `EIps`/`PIps` are rejected: Katib sends no trial durations. |
//! | `acq_optimizer` | `auto` | `auto`, `lbfgs`: pool + L-BFGS + discrete search; `sampling`: a larger pool + discrete search, no L-BFGS |
//! | `random_state` | none | integer >= 0: makes a run reproducible |
//!
//! Any other name is refused with `INVALID_ARGUMENT` naming it.
//!
//! # Model
//! - Inputs are mapped to the unit cube ([`encode`]): doubles on a log scale when their
//!   distribution is logUniform/logNormal (scikit-optimize, and so Katib, puts every double
//!   on a log scale whatever the experiment says; here the experiment decides), ints,
//!   stepped doubles and discrete lists as relaxed ordinals snapped to allowed values
//!   (stepped doubles to the exact decimal grid), categoricals one-hot.
//! - Outputs are standardized, then power-transformed (Yeo-Johnson, `lambda <= 1`) so that
//!   a few very bad values do not flatten the model where the good ones are; a maximized
//!   objective is negated first.
//! - The GP's constant prior mean is the worst (transformed) observation, not their average
//!   ([`gp::worst_as_prior_mean`]; De Ath, Fieldsend & Everson, *What do you Mean? The Role
//!   of the Mean Function in Bayesian Optimisation*, GECCO 2020, found it the best constant
//!   mean from 5 dimensions up). Once the search concentrates on a good region the average
//!   is optimistic, and with it the model expected average values in the unexplored faces
//!   and corners of the box, where the variance is largest: a quarter of the model's picks
//!   on Ackley 5D went there. With the pessimistic mean, the quality benchmark's median
//!   regret fell on Ackley from 2.90 to 1.63 (scikit-optimize's GP: 2.48) and on 5 of the 7
//!   other functions; it rose slightly on Styblinski-Tang (27.1 to 29.1) and `mixed_gbm`
//!   (0.0091 to 0.0093), still below scikit-optimize's.
//! - A Matérn-5/2 ARD Gaussian process ([`gp`]) with hyperparameters fitted by maximizing
//!   the marginal likelihood (with weak priors), analytic gradients, multi-start L-BFGS
//!   (argmin); Cholesky factorizations add jitter only when needed ([`linalg`]).
//! - Acquisition ([`acquisition`]): log EI, log PI or LCB, maximized over a pool of random
//!   and incumbent-near points, then multi-start L-BFGS on the continuous and relaxed
//!   ordinal features and a discrete neighbourhood search (ordinal neighbours, every
//!   categorical value). `gp_hedge` (Hoffman, Brochu & de Freitas 2011) lets each of the three
//!   propose a point and picks one with probability `softmax(gains)`; scikit-optimize
//!   accumulates the gains over a run in process memory, this service is stateless between
//!   calls, so the gains start at zero each call (scikit-optimize's first round) and the pick
//!   is uniform.
//! - Refinement: with `gp_hedge` (the default) and a `maxTrialCount`, the trials after
//!   [`REFINE_FROM`] of the budget are chosen by EI with no margin (`xi = 0`) alone, with
//!   the candidate pool's incumbent perturbations ten times finer: the last trials sharpen
//!   the best region instead of exploring (on the quality benchmark, before the pessimistic
//!   prior mean, this took the median regret below both scikit-optimize's and Optuna's GP on
//!   5 of 8 functions, from 3; with it, 7 of 8, all but `mixed_gbm`). An explicit
//!   `acq_func` is used to the end.
//! - Initial design: the first `n_initial_points` trials are a maximin Latin hypercube
//!   ([`design`]) seeded by `random_state` (or, without it, by the experiment's name, so
//!   successive calls continue one design).
//!
//! # History
//! - Succeeded and EarlyStopped trials with an objective value are observations (Katib does
//!   the same; an early-stopped trial's value is its last reported one).
//! - Running, Created and Unknown trials are pending; Failed, Killed and MetricsUnavailable
//!   trials (and succeeded ones without a value) are treated like pending ones: they enter
//!   the model as "kriging believer" fantasies (observed at the posterior mean), which does
//!   not move the mean but removes the uncertainty around them, so the search does not
//!   return to them, and a failing region is neither rewarded nor falsely penalized. A
//!   fantasy counts as observed for the incumbent too: where the mean promises an
//!   improvement, the incumbent value becomes that mean, else PI and EI would still rank the
//!   (now certain) improvement first and suggest the same point again.
//! - A batch (`current_request_number > 1`) is built one point at a time, each chosen point
//!   becoming a fantasy before the next, so a batch spreads out.
//! - In a finite space (every parameter int, discrete, categorical or a stepped double) no
//!   point of the history or of the batch is suggested again; when all are taken the reply is
//!   short and marked exhausted (see the crate's exhaustion contract).
//!
//! # Cost
//! Everything runs on the blocking pool (the service's `spawn_blocking`). Up to
//! [`FIT_CAP`] observations the hyperparameters are fitted on all of them (several starts);
//! above, on a seeded random subset of that size that always holds the best quarter of it,
//! from one start (an approximation: the fit's accuracy barely changes, its cost stops
//! growing). Up to [`POSTERIOR_CAP`] observations the posterior is exact; above, it
//! conditions on the best `POSTERIOR_CAP/2` observations and a seeded random sample of the
//! rest (an approximation in the regime where the model is already well determined). The
//! candidate pool and the number of L-BFGS starts shrink as the model grows. Factorizations
//! and many-right-hand-side solves are blocked so their bulk runs in `matrixmultiply`'s
//! `dgemm`. Measured (`cargo bench -p katib-suggestion --bench speed`, 6 parameters): p50
//! 11 ms at 200 observations and 37 ms at 1000 for one suggestion, under 20 MiB resident.

pub mod acquisition;
pub mod design;
pub mod encode;
pub mod gp;
pub mod linalg;
pub mod optimize;

use std::collections::HashSet;

use katib_api::pb;
use rand::{Rng, RngExt as _};

use crate::algorithm::{Algorithm, AlgorithmSettings, SuggestRequest, Suggested, TrialCondition, mix64};
use crate::error::{SettingsError, SuggestError};
use crate::space::{Coord, Direction, SearchSpace};

use acquisition::{Acq, AcqParams, Effort, Pool};
use encode::Encoder;
use gp::{Hyper, Posterior};

/// Observations the hyperparameters are fitted on, at most.
pub const FIT_CAP: usize = 64;
/// Observations the posterior conditions on, at most.
pub const POSTERIOR_CAP: usize = 512;
/// Observations needed before the model is used (fewer: design or random points).
const MIN_OBSERVATIONS: usize = 2;
/// scikit-optimize's defaults: EI/PI margin `xi` (here on the standardized scale) and LCB's
/// `kappa`.
const XI: f64 = 0.01;
const KAPPA: f64 = 1.96;
/// Share of `maxTrialCount` after which `gp_hedge` gives way to exploitation (see the module
/// docs). Chosen on the quality benchmark: 0.7 explored too little, 0.95 refined too late.
pub const REFINE_FROM: f64 = 0.85;

/// The `bayesianoptimization` algorithm.
#[derive(Debug, Clone, Copy, Default)]
pub struct BayesianOptimization;

impl BayesianOptimization {
    /// Katib's name for this algorithm.
    pub const NAME: &'static str = "bayesianoptimization";
    /// The setting names it accepts.
    pub const SETTINGS: &'static [&'static str] = &[
        "base_estimator",
        "n_initial_points",
        "acq_func",
        "acq_optimizer",
        "random_state",
    ];
}

/// `acq_func`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcqFunc {
    /// A portfolio of EI, PI and LCB.
    GpHedge,
    /// One acquisition function.
    Single(Acq),
}

/// `acq_optimizer`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcqOptimizer {
    /// Pool, L-BFGS and discrete search (`auto` and `lbfgs`).
    Lbfgs,
    /// A larger pool and discrete search only.
    Sampling,
}

/// The settings of `bayesianoptimization`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BoSettings {
    /// `n_initial_points` (default 10).
    pub n_initial_points: usize,
    /// `acq_func` (default `gp_hedge`).
    pub acq_func: AcqFunc,
    /// `acq_optimizer` (default `auto`, which is L-BFGS).
    pub acq_optimizer: AcqOptimizer,
    /// `random_state`.
    pub random_state: Option<u64>,
}

impl Default for BoSettings {
    fn default() -> Self {
        BoSettings {
            n_initial_points: 10,
            acq_func: AcqFunc::GpHedge,
            acq_optimizer: AcqOptimizer::Lbfgs,
            random_state: None,
        }
    }
}

impl BoSettings {
    /// Parses and checks the settings, reporting every problem.
    pub fn from_settings(settings: &AlgorithmSettings) -> Result<Self, SettingsError> {
        let mut out = BoSettings::default();
        let mut problems: Vec<String> = Vec::new();
        let name = BayesianOptimization::NAME;
        if let Err(e) = settings.check_known(BayesianOptimization::SETTINGS) {
            problems.extend(e.problems().iter().cloned());
        }
        if let Some(v) = settings.get("base_estimator") {
            match v.trim().to_ascii_uppercase().as_str() {
                "GP" => {}
                "RF" | "ET" | "GBRT" => problems.push(format!(
                    "setting base_estimator of algorithm {name}: \"{v}\" is not implemented by katib-rs; use GP (the default)"
                )),
                _ => problems.push(format!(
                    "setting base_estimator of algorithm {name}: \"{v}\" is not one of GP (RF, ET and GBRT are not implemented)"
                )),
            }
        }
        match settings.parse::<usize>("n_initial_points", "an integer >= 0", |_| true) {
            Ok(Some(n)) => out.n_initial_points = n,
            Ok(None) => {}
            Err(e) => problems.extend(e.problems().iter().cloned()),
        }
        if let Some(v) = settings.get("acq_func") {
            match v.trim().to_ascii_lowercase().as_str() {
                "gp_hedge" => out.acq_func = AcqFunc::GpHedge,
                "ei" => out.acq_func = AcqFunc::Single(Acq::Ei),
                "pi" => out.acq_func = AcqFunc::Single(Acq::Pi),
                "lcb" => out.acq_func = AcqFunc::Single(Acq::Lcb),
                "eips" | "pips" => problems.push(format!(
                    "setting acq_func of algorithm {name}: \"{v}\" needs each trial's running time, which Katib does not send; use gp_hedge, EI, PI or LCB"
                )),
                _ => problems.push(format!(
                    "setting acq_func of algorithm {name}: \"{v}\" is not one of gp_hedge, EI, PI, LCB"
                )),
            }
        }
        if let Some(v) = settings.get("acq_optimizer") {
            match v.trim().to_ascii_lowercase().as_str() {
                "auto" | "lbfgs" => out.acq_optimizer = AcqOptimizer::Lbfgs,
                "sampling" => out.acq_optimizer = AcqOptimizer::Sampling,
                _ => problems.push(format!(
                    "setting acq_optimizer of algorithm {name}: \"{v}\" is not one of auto, sampling, lbfgs"
                )),
            }
        }
        match settings.random_state() {
            Ok(r) => out.random_state = r,
            Err(e) => problems.extend(e.problems().iter().cloned()),
        }
        SettingsError::check(problems)?;
        Ok(out)
    }
}

impl Algorithm for BayesianOptimization {
    fn name(&self) -> &'static str {
        BayesianOptimization::NAME
    }

    fn validate(&self, experiment: &pb::Experiment) -> Result<(), SettingsError> {
        let settings = AlgorithmSettings::from_experiment(experiment);
        let space = SearchSpace::from_experiment(experiment).and_then(|s| {
            s.require_objective(BayesianOptimization::NAME)?;
            Ok(s)
        });
        SettingsError::both(space, BoSettings::from_settings(&settings)).map(|_| ())
    }

    fn suggest(&self, request: &SuggestRequest) -> Result<Suggested, SuggestError> {
        let settings = BoSettings::from_settings(&request.settings)?;
        let direction = request
            .space
            .require_objective(BayesianOptimization::NAME)?
            .direction;
        let points = suggest_points(request, &settings, direction);
        let exhausted = points.len() < request.n;
        let assignments = points
            .iter()
            .map(|p| {
                request.space.render(p).ok_or_else(|| SuggestError::Internal {
                    algorithm: BayesianOptimization::NAME,
                    message: format!("chose a point outside the space: {p:?}"),
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

/// The history as the model sees it.
struct Data {
    /// Observed features and values (to be minimized).
    x: Vec<Vec<f64>>,
    y: Vec<f64>,
    /// Pending (and failed) points' features.
    pending: Vec<Vec<f64>>,
}

fn read_history(request: &SuggestRequest, enc: &Encoder, direction: Direction) -> Data {
    let sign = match direction {
        Direction::Minimize => 1.0,
        Direction::Maximize => -1.0,
    };
    let mut data = Data {
        x: Vec::new(),
        y: Vec::new(),
        pending: Vec::new(),
    };
    for t in &request.history {
        let Some(point) = &t.point else { continue };
        let f = enc.encode(point);
        match (t.condition, t.objective) {
            (TrialCondition::Succeeded | TrialCondition::Earlystopped, Some(v)) => {
                data.x.push(f);
                data.y.push(sign * v);
            }
            _ => data.pending.push(f),
        }
    }
    data
}

/// The seed of the initial design: `random_state`, else the experiment's name.
fn design_seed(request: &SuggestRequest, random_state: Option<u64>) -> u64 {
    match random_state {
        Some(s) => mix64(s ^ 0xB0DE_5EED),
        None => {
            // FNV-1a of the name: stable across calls and processes.
            let mut h: u64 = 0xcbf2_9ce4_8422_2325;
            for b in request.experiment_name.bytes() {
                h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
            }
            mix64(h)
        }
    }
}

/// Points already used in a finite space, and the check for new ones.
struct Taken {
    finite: bool,
    size: u128,
    set: HashSet<Vec<u128>>,
}

impl Taken {
    fn is_free(&self, point: &[Coord]) -> bool {
        !self.finite || SearchSpace::indices(point).is_none_or(|i| !self.set.contains(&i))
    }

    fn insert(&mut self, point: &[Coord]) {
        if self.finite
            && let Some(i) = SearchSpace::indices(point)
        {
            self.set.insert(i);
        }
    }

    fn full(&self) -> bool {
        self.finite && self.set.len() as u128 >= self.size
    }
}

/// A point of a finite space not yet taken (random among the free ones), or any random point
/// of an infinite space. `None` when a finite space is used up.
fn free_point<R: Rng + ?Sized>(
    space: &SearchSpace,
    enc: &Encoder,
    taken: &Taken,
    rng: &mut R,
) -> Option<Vec<Coord>> {
    if !taken.finite {
        return Some(enc.decode(&enc.random(rng)));
    }
    if taken.full() {
        return None;
    }
    for _ in 0..256 {
        let p = enc.decode(&enc.random(rng));
        if taken.is_free(&p) {
            return Some(p);
        }
    }
    let size = taken.size;
    let to_point = |idx: Vec<u128>| idx.into_iter().map(Coord::Index).collect::<Vec<_>>();
    if size <= 1 << 16 {
        let free: Vec<Vec<u128>> = (0..size)
            .filter_map(|c| space.decode(c))
            .filter(|p| !taken.set.contains(p))
            .collect();
        if free.is_empty() {
            return None;
        }
        let i = rng.random_range(0..free.len());
        return Some(to_point(free[i].clone()));
    }
    let start = rng.random_range(0..size);
    (0..size)
        .map(|off| start.wrapping_add(off) % size)
        .filter_map(|c| space.decode(c))
        .find(|p| !taken.set.contains(p))
        .map(to_point)
}

fn suggest_points(request: &SuggestRequest, settings: &BoSettings, direction: Direction) -> Vec<Vec<Coord>> {
    let space = &request.space;
    let enc = Encoder::new(space);
    let mut rng = request.rng(settings.random_state);
    let mut taken = Taken {
        finite: space.is_finite(),
        size: space.size().unwrap_or(u128::MAX),
        set: if space.is_finite() {
            request.taken()
        } else {
            HashSet::new()
        },
    };
    let data = read_history(request, &enc, direction);
    let mut out: Vec<Vec<Coord>> = Vec::with_capacity(request.n.min(1024));
    let mut chosen: Vec<Vec<f64>> = Vec::new();

    // Initial design (and random points while there is too little data for a model).
    let started = request.history.len();
    let design = if started < settings.n_initial_points {
        design::latin_hypercube(
            settings.n_initial_points,
            enc.slots.len(),
            design_seed(request, settings.random_state),
        )
    } else {
        Vec::new()
    };
    while out.len() < request.n {
        let i = started + out.len();
        if i >= settings.n_initial_points && data.y.len() >= MIN_OBSERVATIONS {
            break;
        }
        let mut point = match design.get(i) {
            Some(u) => enc.decode(&enc.from_unit(u)),
            None => enc.decode(&enc.random(&mut rng)),
        };
        if !taken.is_free(&point) {
            match free_point(space, &enc, &taken, &mut rng) {
                Some(p) => point = p,
                None => return out,
            }
        }
        taken.insert(&point);
        chosen.push(enc.encode(&point));
        out.push(point);
    }
    let remaining = request.n - out.len();
    if remaining == 0 {
        return out;
    }
    let refine = refining(settings.acq_func, started, request.max_trial_count);
    match model_points(
        space, &enc, &data, &chosen, remaining, settings, refine, &mut taken, &mut rng,
    ) {
        Some(points) => out.extend(points),
        None => {
            // The model could not be built (degenerate data): random free points.
            while out.len() < request.n {
                match free_point(space, &enc, &taken, &mut rng) {
                    Some(p) => {
                        taken.insert(&p);
                        out.push(p);
                    }
                    None => break,
                }
            }
        }
    }
    out
}

/// True when the trial numbered `started` (0-based) falls in the refinement phase: default
/// `gp_hedge`, a known budget, and at least [`REFINE_FROM`] of it used.
fn refining(acq_func: AcqFunc, started: usize, max_trial_count: Option<u32>) -> bool {
    acq_func == AcqFunc::GpHedge
        && max_trial_count.is_some_and(|max| started as f64 >= REFINE_FROM * f64::from(max))
}

/// Indices of the observations kept when at most `cap` may be: the best `keep_best`, then a
/// seeded random sample of the rest. All of them when there are no more than `cap`.
fn subset<R: Rng + ?Sized>(y: &[f64], cap: usize, keep_best: usize, rng: &mut R) -> Vec<usize> {
    if y.len() <= cap {
        return (0..y.len()).collect();
    }
    let mut order: Vec<usize> = (0..y.len()).collect();
    order.sort_by(|&a, &b| y[a].total_cmp(&y[b]));
    let mut rest = order.split_off(keep_best.min(cap));
    for i in (1..rest.len()).rev() {
        rest.swap(i, rng.random_range(0..=i));
    }
    order.extend(rest.into_iter().take(cap - order.len()));
    order.sort_unstable();
    order
}

/// Candidate-pool size and search effort for a model of `n` points; `acquisitions` is how
/// many acquisition functions are optimized (3 for `gp_hedge`), which share the starts.
fn effort_for(n: usize, optimizer: AcqOptimizer, acquisitions: usize) -> (usize, Effort) {
    let n2 = (n.max(1) * n.max(1)) as f64;
    match optimizer {
        AcqOptimizer::Lbfgs => {
            let pool = (1.2e7 / n2).clamp(128.0, 2048.0) as usize;
            let (starts, max_iters) = match n {
                0..=100 => (6, 40),
                _ => (3, 25),
            };
            (
                pool,
                Effort {
                    lbfgs: true,
                    starts: (starts / acquisitions).max(1),
                    max_iters,
                },
            )
        }
        AcqOptimizer::Sampling => {
            let pool = (2.0e8 / n2).clamp(1000.0, 10_000.0) as usize;
            (
                pool,
                Effort {
                    lbfgs: false,
                    starts: (6 / acquisitions).max(1),
                    max_iters: 0,
                },
            )
        }
    }
}

/// Hyperparameter fit starts and iterations for `n` points.
fn fit_effort(n: usize) -> (usize, u64) {
    match n {
        0..=30 => (4, 100),
        31..=FIT_CAP => (3, 80),
        _ => (1, 25),
    }
}

#[allow(clippy::too_many_arguments)]
fn model_points<R: Rng + ?Sized>(
    space: &SearchSpace,
    enc: &Encoder,
    data: &Data,
    chosen: &[Vec<f64>],
    k: usize,
    settings: &BoSettings,
    refine: bool,
    taken: &mut Taken,
    rng: &mut R,
) -> Option<Vec<Vec<Coord>>> {
    if enc.dim == 0 {
        // A space of single-valued parameters has one point.
        let mut out = Vec::new();
        while out.len() < k {
            let p = free_point(space, enc, taken, rng)?;
            taken.insert(&p);
            out.push(p);
        }
        return Some(out);
    }
    let groups = enc.groups();
    let mut y = gp::standardize_and_warp(&data.y);
    // Prior mean at the worst observation (see the module docs).
    gp::worst_as_prior_mean(&mut y);

    // Hyperparameters, on a subset when there are many observations.
    let fit_idx = subset(&y, FIT_CAP, FIT_CAP / 4, rng);
    let fx: Vec<&[f64]> = fit_idx.iter().map(|&i| data.x[i].as_slice()).collect();
    let fy: Vec<f64> = fit_idx.iter().map(|&i| y[i]).collect();
    let (n_starts, iters) = fit_effort(y.len());
    let mut starts = vec![Hyper::prior_mode(groups.len())];
    let mut normal = || standard_normal(rng);
    while starts.len() < n_starts {
        starts.push(Hyper::from_prior(groups.len(), &mut normal));
    }
    let hyper = gp::fit(&fx, &fy, &groups, &starts, iters);

    // Posterior, with the pending points and this call's picks as fantasies.
    let post_idx = subset(&y, POSTERIOR_CAP, POSTERIOR_CAP / 2, rng);
    let px: Vec<&[f64]> = post_idx.iter().map(|&i| data.x[i].as_slice()).collect();
    let py: Vec<f64> = post_idx.iter().map(|&i| y[i]).collect();
    let extra = data.pending.len() + chosen.len() + k;
    let mut post = Posterior::new(&px, &py, &hyper, &groups, enc.dim, extra)?;
    let best_i = (0..py.len()).min_by(|&a, &b| py[a].total_cmp(&py[b]))?;
    let mut best = py[best_i];
    for f in data.pending.iter().chain(chosen) {
        // A fantasy counts as observed (at the mean), also as a possible incumbent.
        best = best.min(post.predict(f).0);
        post.add_fantasy(f);
    }
    let mut params = AcqParams {
        best,
        xi: if refine { 0.0 } else { XI },
        kappa: KAPPA,
    };
    let acq_func = if refine {
        AcqFunc::Single(Acq::Ei)
    } else {
        settings.acq_func
    };

    // Candidate pool: random allowed points and perturbations of the best observations.
    let acquisitions = match acq_func {
        AcqFunc::GpHedge => 3,
        AcqFunc::Single(_) => 1,
    };
    let (pool_size, effort) = effort_for(post.len(), settings.acq_optimizer, acquisitions);
    let mut cands: Vec<Vec<f64>> = (0..pool_size).map(|_| enc.random(rng)).collect();
    let mut best_order: Vec<usize> = (0..py.len()).collect();
    best_order.sort_by(|&a, &b| py[a].total_cmp(&py[b]));
    let local = pool_size / 4;
    let tops = best_order.len().min(5);
    for i in 0..local {
        let base = px[best_order[i % tops]];
        let scale = if refine {
            [0.001, 0.005, 0.02][i % 3]
        } else {
            [0.01, 0.05, 0.15][i % 3]
        };
        cands.push(perturb(enc, base, scale, rng));
    }
    let mut pool = Pool::new(&post, cands, k);

    let mut out = Vec::with_capacity(k);
    for b in 0..k {
        if taken.full() {
            break;
        }
        let pick = {
            let taken_ref = &*taken;
            let ok = |f: &[f64]| taken_ref.is_free(&enc.decode(f));
            match acq_func {
                AcqFunc::Single(acq) => acquisition::optimize(&post, enc, &pool, acq, &params, effort, &ok),
                AcqFunc::GpHedge => {
                    let nominees: Vec<(Vec<f64>, f64)> = [Acq::Ei, Acq::Pi, Acq::Lcb]
                        .into_iter()
                        .filter_map(|a| acquisition::optimize(&post, enc, &pool, a, &params, effort, &ok))
                        .collect();
                    hedge(nominees, rng)
                }
            }
        };
        let point = match pick {
            Some((x, _)) => enc.decode(&x),
            None => match free_point(space, enc, taken, rng) {
                Some(p) => p,
                None => break,
            },
        };
        taken.insert(&point);
        let x = enc.encode(&point);
        out.push(point);
        if b + 1 < k {
            // The believer takes the fantasy as observed: where the mean promises an
            // improvement, the fantasy becomes the incumbent, otherwise PI and EI would still
            // rank the now-certain improvement first and pick the same point again.
            params.best = params.best.min(post.predict(&x).0);
            if let Some((cross, diag)) = post.add_fantasy(&x) {
                pool.add_fantasy(&post, &x, &cross, diag);
            }
        }
    }
    Some(out)
}

/// scikit-optimize's `gp_hedge` choice (Hoffman, Brochu & de Freitas 2011) from this call's
/// gains: nominee `i` is chosen with probability `softmax(gains)_i`. The service keeps no
/// state between calls, so the gains start at zero each time (as in scikit-optimize's first
/// round) and the choice is uniform. (Weighting by the nominees' posterior means instead
/// was measured no better on the benchmark.)
fn hedge<R: Rng + ?Sized>(nominees: Vec<(Vec<f64>, f64)>, rng: &mut R) -> Option<(Vec<f64>, f64)> {
    if nominees.len() <= 1 {
        return nominees.into_iter().next();
    }
    let len = nominees.len();
    let i = ((rng.random::<f64>() * len as f64) as usize).min(len - 1);
    nominees.into_iter().nth(i)
}

/// A snapped random neighbour of `base`: Gaussian steps of `scale` on the ordered features,
/// and with probability `1/parameters` another value of each categorical.
fn perturb<R: Rng + ?Sized>(enc: &Encoder, base: &[f64], scale: f64, rng: &mut R) -> Vec<f64> {
    let mut x = base.to_vec();
    let p = 1.0 / enc.slots.len().max(1) as f64;
    for slot in enc.slots.iter().filter(|s| s.width > 0) {
        match slot.kind {
            encode::Kind::Categorical { .. } => {
                if rng.random::<f64>() < p {
                    let i = rng.random_range(0..slot.width);
                    x[slot.col..slot.col + slot.width].fill(0.0);
                    x[slot.col + i] = 1.0;
                }
            }
            _ => {
                x[slot.col] = (x[slot.col] + scale * standard_normal(rng)).clamp(0.0, 1.0);
            }
        }
    }
    enc.snap(&mut x);
    x
}

fn standard_normal<R: Rng + ?Sized>(rng: &mut R) -> f64 {
    let u1: f64 = 1.0 - rng.random::<f64>();
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

#[cfg(test)]
mod tests;

//! `tpe` and `multivariate-tpe`: the Tree-structured Parzen Estimator.
//!
//! Bergstra, Bardenet, Bengio, Kégl, *Algorithms for Hyper-Parameter Optimization*, NeurIPS
//! 2011, with the defaults of hyperopt and Optuna (the libraries behind Katib's `tpe` and
//! `multivariate-tpe`); the multivariate variant follows Falkner, Klein, Hutter, *BOHB: Robust
//! and Efficient Hyperparameter Optimization at Scale*, ICML 2018 (joint kernels).
//!
//! Each call splits the finished trials by objective into a good group (the best `gamma(n)`)
//! and the rest, fits a Parzen estimator `l` to the good group and `g` to the rest (see
//! [`parzen`]), draws `n_ei_candidates` candidates from `l` and suggests the one maximising
//! `l(x) / g(x)` (which maximises expected improvement). By default both names model the
//! parameters jointly: candidates are whole points drawn from `l`'s product kernels and
//! scored jointly, as Optuna 5's `TPESampler` does by default for one objective (hyperopt,
//! behind Katib's `tpe`, models each parameter on its own; the joint model found better
//! optima on every benchmark function, see `suggestion/benches/README.md`). The setting
//! `multivariate: "false"` (a katib-rs extension) selects the independent model.
//! Candidates pick their kernels by systematic sampling (one uniform
//! offset, evenly spaced in the cumulative weights), so every good observation is explored in
//! proportion to its weight rather than by chance.
//!
//! # Settings (both names)
//! | setting | default | meaning |
//! |---|---|---|
//! | `n_startup_trials` | 10 | random suggestions until this many trials finished (Optuna) |
//! | `n_ei_candidates` (or hyperopt's `n_EI_candidates`) | 24 | candidates drawn from `l` |
//! | `gamma` | Optuna's `min(ceil(0.1 n), 25)` | when set, in `(0, 1)`: hyperopt's split `min(ceil(gamma * sqrt(n)), 25)` |
//! | `prior_weight` | 1.0 | weight of the prior kernel (> 0) |
//! | `random_state` | none | seed (integer >= 0) |
//! | `multivariate` | `true` | `false`: model each parameter on its own (hyperopt's TPE) |
//!
//! Katib's hyperopt `tpe` accepts `gamma`, `prior_weight`, `n_EI_candidates` and
//! `random_state`; its optuna `tpe`/`multivariate-tpe` accept `n_startup_trials`,
//! `n_ei_candidates` and `random_state`. Both names here accept the union, so experiments
//! written for either service run unchanged.
//!
//! # Trials
//! - Succeeded trials with an objective value are the observations (loss = value, negated
//!   when maximizing); `n` counts them and the early-stopped ones.
//! - Early-stopped trials with a value are observations ranked after every succeeded one (as
//!   Optuna ranks pruned trials): they join the good group only when too few trials
//!   succeeded.
//! - Running and pending trials, and the suggestions made earlier in the same batch, join the
//!   bad group (Optuna's constant liar), so parallel workers and batches
//!   (`current_request_number > 1`) spread out instead of piling onto one point.
//! - Failed and killed trials are ignored by the model (as Optuna ignores failed trials);
//!   like every trial they are never suggested again in a finite space.
//!
//! # Parameters
//! Working space per parameter as in [`numeric`]: `logUniform`/`logNormal` are modelled on
//! `ln x`; ints and stepped doubles by the mass of each grid value's bin (quantized kernels);
//! `normal`/`logNormal` make the prior kernel that normal (hyperopt's `normal`/`lognormal`
//! priors) and draw startup points from it; discrete and categorical lists are categorical
//! choices. In a finite space (every parameter int, stepped, discrete or categorical) no
//! suggestion repeats a trial or an earlier suggestion of the batch: the best free candidate
//! is taken, and random free points fill in when every candidate is taken; once the space is
//! used up the reply is short ([`Suggested::exhausted`]).

pub(crate) mod numeric;
pub(crate) mod parzen;

use std::collections::HashSet;

use katib_api::pb;
use rand::{Rng, RngExt as _};

use crate::algorithm::{Algorithm, AlgorithmSettings, SuggestRequest, Suggested, TrialCondition};
use crate::error::{SettingsError, SuggestError};
use crate::space::{Coord, Direction, SearchSpace};
use numeric::{View, point_key, random_fill, render_all};
use parzen::Parzen;

/// Observations in the good group at most (hyperopt's and Optuna's cap).
const MAX_BELOW: usize = 25;

/// Rounds of fresh candidates tried before a finite space falls back to random free points.
const DEDUP_ROUNDS: usize = 4;

/// The TPE algorithms `tpe` and `multivariate-tpe` (the same model; two names for Katib).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tpe {
    multivariate: bool,
}

impl Tpe {
    /// Katib's name for the TPE (hyperopt's in Katib; joint here unless `multivariate: false`).
    pub const NAME: &'static str = "tpe";
    /// Katib's name for the multivariate TPE.
    pub const MULTIVARIATE_NAME: &'static str = "multivariate-tpe";
    /// The setting names both accept.
    pub const SETTINGS: &'static [&'static str] = &[
        "n_startup_trials",
        "n_ei_candidates",
        "n_EI_candidates",
        "gamma",
        "prior_weight",
        "random_state",
        "multivariate",
    ];

    /// `tpe`.
    pub const fn independent() -> Self {
        Tpe { multivariate: false }
    }

    /// `multivariate-tpe`.
    pub const fn multivariate() -> Self {
        Tpe { multivariate: true }
    }
}

/// The settings of `tpe` and `multivariate-tpe`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TpeSettings {
    /// Finished trials before TPE takes over from random sampling (default 10).
    pub n_startup_trials: usize,
    /// Candidates drawn from the good density per suggestion (default 24).
    pub n_ei_candidates: usize,
    /// hyperopt's `gamma`; `None` uses Optuna's default split.
    pub gamma: Option<f64>,
    /// Weight of the prior kernel (default 1.0).
    pub prior_weight: f64,
    /// The seed.
    pub random_state: Option<u64>,
    /// Joint kernels over all parameters (default) or one model per parameter.
    pub multivariate: bool,
}

impl Default for TpeSettings {
    fn default() -> Self {
        TpeSettings {
            n_startup_trials: 10,
            n_ei_candidates: 24,
            gamma: None,
            prior_weight: 1.0,
            random_state: None,
            multivariate: true,
        }
    }
}

impl TpeSettings {
    /// Parses and checks the settings, reporting every problem.
    pub fn from_settings(settings: &AlgorithmSettings) -> Result<Self, SettingsError> {
        let mut problems: Vec<String> = Vec::new();
        let mut take = |e: SettingsError| problems.extend(e.problems().iter().cloned());
        let defaults = TpeSettings::default();
        if let Err(e) = settings.check_known(Tpe::SETTINGS) {
            take(e);
        }
        let n_startup_trials = settings
            .parse::<usize>("n_startup_trials", "an integer >= 0", |_| true)
            .unwrap_or_else(|e| {
                take(e);
                None
            })
            .unwrap_or(defaults.n_startup_trials);
        let mut candidates = |name: &str| {
            settings
                .parse::<usize>(name, "an integer >= 1", |&v| v >= 1)
                .unwrap_or_else(|e| {
                    take(e);
                    None
                })
        };
        let lower = candidates("n_ei_candidates");
        let upper = candidates("n_EI_candidates");
        let n_ei_candidates = match (lower, upper) {
            (Some(a), Some(b)) if a != b => {
                problems.push(format!(
                    "settings n_ei_candidates ({a}) and n_EI_candidates ({b}) of algorithm {} disagree; give one of them",
                    settings.algorithm()
                ));
                a
            }
            (Some(a), _) | (None, Some(a)) => a,
            (None, None) => defaults.n_ei_candidates,
        };
        let mut take = |e: SettingsError| problems.extend(e.problems().iter().cloned());
        let gamma = settings
            .parse::<f64>("gamma", "a number in (0, 1)", |&g| g > 0.0 && g < 1.0)
            .unwrap_or_else(|e| {
                take(e);
                None
            });
        let prior_weight = settings
            .parse::<f64>("prior_weight", "a number > 0", |&w| w > 0.0 && w.is_finite())
            .unwrap_or_else(|e| {
                take(e);
                None
            })
            .unwrap_or(defaults.prior_weight);
        let random_state = settings.random_state().unwrap_or_else(|e| {
            take(e);
            None
        });
        let multivariate = settings
            .parse::<bool>("multivariate", "true or false", |_| true)
            .unwrap_or_else(|e| {
                take(e);
                None
            })
            .unwrap_or(defaults.multivariate);
        SettingsError::check(problems)?;
        Ok(TpeSettings {
            multivariate,
            n_startup_trials,
            n_ei_candidates,
            gamma,
            prior_weight,
            random_state,
        })
    }

    /// How many observations form the good group out of `n`.
    pub fn n_below(&self, n: usize) -> usize {
        let k = match self.gamma {
            None => (0.1 * n as f64).ceil(),
            Some(g) => (g * (n as f64).sqrt()).ceil(),
        };
        (k as usize).min(MAX_BELOW).min(n)
    }
}

impl Algorithm for Tpe {
    fn name(&self) -> &'static str {
        if self.multivariate {
            Tpe::MULTIVARIATE_NAME
        } else {
            Tpe::NAME
        }
    }

    fn validate(&self, experiment: &pb::Experiment) -> Result<(), SettingsError> {
        let settings = AlgorithmSettings::from_experiment(experiment);
        let space = SearchSpace::from_experiment(experiment).and_then(|s| {
            s.require_objective(self.name())?;
            Ok(s)
        });
        SettingsError::both(space, TpeSettings::from_settings(&settings)).map(|_| ())
    }

    fn suggest(&self, request: &SuggestRequest) -> Result<Suggested, SuggestError> {
        let settings = TpeSettings::from_settings(&request.settings)?;
        let direction = request.space.require_objective(self.name())?.direction;
        let split = Split::of(request, direction);
        if split.finished() < settings.n_startup_trials {
            return random_fill(request, &[], request.n, settings.random_state);
        }
        let mut rng = request.rng(settings.random_state);
        let space = &request.space;
        let views = View::all(space);
        let finite = space.is_finite();
        let mut taken: HashSet<Vec<u128>> = if finite {
            numeric::history_keys(request)
        } else {
            HashSet::new()
        };
        let n_below = settings.n_below(split.finished());
        let (below, above) = split.groups(request, n_below);
        let l = Parzen::fit(&views, &below, settings.prior_weight);
        let mut batch: Vec<Vec<Coord>> = Vec::with_capacity(request.n.min(1024));
        while batch.len() < request.n {
            let g = {
                let mut above_now = above.clone();
                above_now.extend(batch.iter().map(|p| p.as_slice()));
                Parzen::fit(&views, &above_now, settings.prior_weight)
            };
            let model = Model {
                views: &views,
                l: &l,
                g: &g,
                candidates: settings.n_ei_candidates,
            };
            let point = if settings.multivariate {
                model.best_joint(&taken, finite, &mut rng)
            } else {
                model.best_independent(&taken, finite, &mut rng)
            };
            let Some(point) = point else {
                break;
            };
            if finite {
                taken.insert(point_key(&point));
            }
            batch.push(point);
        }
        let mut assignments = render_all(self.name(), space, &batch)?;
        let mut exhausted = false;
        if batch.len() < request.n {
            // Every candidate was taken: fill in with random free points.
            let rest = random_fill(request, &batch, request.n - batch.len(), settings.random_state)?;
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

/// The request's trials sorted into what TPE uses.
struct Split {
    /// Succeeded trials: (history index, loss).
    complete: Vec<(usize, f64)>,
    /// Early-stopped trials with a value: (history index, loss).
    stopped: Vec<(usize, f64)>,
    /// Running and pending trials (history indices).
    running: Vec<usize>,
}

impl Split {
    fn of(request: &SuggestRequest, direction: Direction) -> Split {
        let sign = match direction {
            Direction::Minimize => 1.0,
            Direction::Maximize => -1.0,
        };
        let mut split = Split {
            complete: Vec::new(),
            stopped: Vec::new(),
            running: Vec::new(),
        };
        for (i, t) in request.history.iter().enumerate() {
            if t.point.is_none() {
                continue;
            }
            match (t.condition, t.objective) {
                (TrialCondition::Succeeded, Some(v)) => split.complete.push((i, sign * v)),
                (TrialCondition::Earlystopped, Some(v)) => split.stopped.push((i, sign * v)),
                (TrialCondition::Created | TrialCondition::Running, _) => split.running.push(i),
                _ => {}
            }
        }
        split
    }

    /// Trials that count as finished (`n` of the split and of `n_startup_trials`).
    fn finished(&self) -> usize {
        self.complete.len() + self.stopped.len()
    }

    /// The good and bad groups' points, each in chronological (request) order.
    fn groups<'a>(
        &self,
        request: &'a SuggestRequest,
        n_below: usize,
    ) -> (Vec<&'a [Coord]>, Vec<&'a [Coord]>) {
        let rank = |v: &[(usize, f64)]| {
            let mut v = v.to_vec();
            // Stable: ties keep chronological order.
            v.sort_by(|a, b| a.1.total_cmp(&b.1));
            v
        };
        let mut ranked = rank(&self.complete);
        ranked.extend(rank(&self.stopped));
        let mut below: Vec<usize> = ranked[..n_below].iter().map(|&(i, _)| i).collect();
        let mut above: Vec<usize> = ranked[n_below..].iter().map(|&(i, _)| i).collect();
        above.extend(&self.running);
        below.sort_unstable();
        above.sort_unstable();
        let point = |i: usize| request.history[i].point.as_deref().unwrap_or_default();
        (
            below.into_iter().map(point).collect(),
            above.into_iter().map(point).collect(),
        )
    }
}

/// The two densities and what is needed to draw and score candidates.
struct Model<'a> {
    views: &'a [View],
    l: &'a Parzen,
    g: &'a Parzen,
    candidates: usize,
}

impl Model<'_> {
    /// Multivariate: whole points drawn from `l`'s kernels, scored by `ln l - ln g`; the best
    /// one not taken.
    fn best_joint<R: Rng + ?Sized>(
        &self,
        taken: &HashSet<Vec<u128>>,
        finite: bool,
        rng: &mut R,
    ) -> Option<Vec<Coord>> {
        let mut scratch = Vec::new();
        for _ in 0..DEDUP_ROUNDS {
            let kernels = self.l.pick_kernels(self.candidates, rng);
            let points: Vec<Vec<Coord>> = kernels
                .into_iter()
                .map(|j| {
                    (0..self.views.len())
                        .map(|d| self.l.sample_dim(self.views, d, j, rng))
                        .collect()
                })
                .collect();
            let ll = self.l.ln_joint(&points, &mut scratch);
            let lg = self.g.ln_joint(&points, &mut scratch);
            let mut order: Vec<usize> = (0..points.len()).collect();
            order.sort_by(|&a, &b| (ll[b] - lg[b]).total_cmp(&(ll[a] - lg[a])));
            if let Some(&best) = order
                .iter()
                .find(|&&i| !finite || !taken.contains(&point_key(&points[i])))
            {
                return Some(points[best].clone());
            }
        }
        None
    }

    /// Independent: per parameter, candidates from `l`'s marginal scored by the marginals'
    /// ratio; the best per parameter, or (when that point is taken) nearby combinations of
    /// the next-best ones.
    fn best_independent<R: Rng + ?Sized>(
        &self,
        taken: &HashSet<Vec<u128>>,
        finite: bool,
        rng: &mut R,
    ) -> Option<Vec<Coord>> {
        let mut scratch = Vec::new();
        for _ in 0..DEDUP_ROUNDS {
            // Per parameter: candidates ordered best first.
            let ranked: Vec<Vec<Coord>> = (0..self.views.len())
                .map(|d| {
                    if let View::Fixed(c) = self.views[d] {
                        return vec![c];
                    }
                    let xs: Vec<Coord> = self
                        .l
                        .pick_kernels(self.candidates, rng)
                        .into_iter()
                        .map(|j| self.l.sample_dim(self.views, d, j, rng))
                        .collect();
                    let ll = self.l.ln_marginal(d, &xs, &mut scratch);
                    let lg = self.g.ln_marginal(d, &xs, &mut scratch);
                    let mut order: Vec<usize> = (0..xs.len()).collect();
                    order.sort_by(|&a, &b| (ll[b] - lg[b]).total_cmp(&(ll[a] - lg[a])));
                    let mut out: Vec<Coord> = Vec::with_capacity(xs.len());
                    for i in order {
                        if !out.contains(&xs[i]) {
                            out.push(xs[i]);
                        }
                    }
                    out
                })
                .collect();
            let mut rank = vec![0usize; ranked.len()];
            let point =
                |rank: &[usize]| -> Vec<Coord> { ranked.iter().zip(rank).map(|(c, &r)| c[r]).collect() };
            let first = point(&rank);
            if !finite || !taken.contains(&point_key(&first)) {
                return Some(first);
            }
            let movable: Vec<usize> = (0..ranked.len()).filter(|&d| ranked[d].len() > 1).collect();
            if movable.is_empty() {
                continue;
            }
            for _ in 0..8 * self.candidates {
                let d = movable[rng.random_range(0..movable.len())];
                rank[d] = (rank[d] + 1) % ranked[d].len();
                let p = point(&rank);
                if !taken.contains(&point_key(&p)) {
                    return Some(p);
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests;

//! Numeric views of a search space shared by `tpe`, `cmaes` and `sobol`, and the few pieces of
//! probability they all need (normal CDF and its inverse, truncated normal sampling).
//!
//! Each parameter is seen in a *working space* `t`:
//! - `double` and `int`: `t = x`, or `t = ln x` for `logUniform` / `logNormal`. A finite
//!   numeric parameter (int, stepped double) keeps its grid `min + k*step`; grid value `k` owns
//!   the bin `[v_k - step/2, v_k + step/2]` (mapped to `t`), so the working interval of a grid
//!   runs from the lower edge of its first bin to the upper edge of its last one, and every
//!   grid value gets the share of it that nearest-value rounding gives it.
//! - `discrete` and `categorical`: an index into the list (as Katib's hyperopt, optuna and
//!   goptuna services treat discrete values: as unordered choices).

use std::collections::HashSet;

use rand::{Rng, RngExt as _};

use crate::algorithm::{AlgorithmSettings, SuggestRequest, Suggested, TrialRecord};
use crate::error::SuggestError;
use crate::space::{Coord, Distribution, Domain, Parameter, SearchSpace};
use crate::{Algorithm as _, Random};

/// A grid `min + k*step`, `k < count`, in floating point.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Grid {
    pub min: f64,
    pub step: f64,
    pub count: u128,
}

impl Grid {
    /// The `k`-th value.
    pub fn value(&self, k: u128) -> f64 {
        self.min + k as f64 * self.step
    }

    /// The index of the value nearest to `x`.
    pub fn snap(&self, x: f64) -> u128 {
        let k = ((x - self.min) / self.step).round();
        if k.is_nan() || k <= 0.0 {
            0
        } else {
            // `as` saturates.
            (k as u128).min(self.count - 1)
        }
    }
}

/// A numeric parameter in its working space.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct NumericDim {
    /// `t = ln x` when true.
    pub log: bool,
    /// The parameter's distribution (its prior).
    pub distribution: Distribution,
    /// The grid of an int or stepped double.
    pub grid: Option<Grid>,
    /// Working-space bounds (bin edges for a grid).
    pub lo: f64,
    /// Upper working-space bound.
    pub hi: f64,
    /// Value bounds.
    pub min: f64,
    /// Upper value bound.
    pub max: f64,
}

/// How an algorithm sees one parameter.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum View {
    /// A single possible value: nothing to model.
    Fixed(Coord),
    /// An int or double with at least two values.
    Numeric(NumericDim),
    /// A discrete or categorical list of `count >= 2` choices, by index.
    Choice(usize),
}

impl View {
    /// The view of one parameter.
    pub fn of(parameter: &Parameter) -> View {
        let numeric = |min: f64, max: f64, distribution: Distribution, grid: Option<Grid>| {
            let log = distribution.is_log();
            let t = |x: f64| if log { x.ln() } else { x };
            let (lo, hi) = match grid {
                None => (t(min), t(max)),
                Some(g) => (lower_edge(g, log), t(g.value(g.count - 1) + g.step / 2.0)),
            };
            View::Numeric(NumericDim {
                log,
                distribution,
                grid,
                lo,
                hi,
                min,
                max,
            })
        };
        match &parameter.domain {
            Domain::Double(d) => match &d.grid {
                None if d.min < d.max => numeric(d.min, d.max, d.distribution, None),
                None => View::Fixed(Coord::Real(d.min)),
                Some(g) if g.count() >= 2 => {
                    let v = |k| g.value(k).map(|v| v.to_f64()).unwrap_or(f64::NAN);
                    let grid = Grid {
                        min: v(0),
                        step: v(1) - v(0),
                        count: g.count(),
                    };
                    numeric(grid.min, v(g.count() - 1), d.distribution, Some(grid))
                }
                Some(_) => View::Fixed(Coord::Index(0)),
            },
            Domain::Int(i) if i.count() >= 2 => {
                let grid = Grid {
                    min: i.min as f64,
                    step: i.step as f64,
                    count: i.count(),
                };
                numeric(
                    i.min as f64,
                    grid.value(i.count() - 1),
                    i.distribution,
                    Some(grid),
                )
            }
            Domain::Int(_) => View::Fixed(Coord::Index(0)),
            Domain::Discrete(v) if v.len() >= 2 => View::Choice(v.len()),
            Domain::Categorical(v) if v.len() >= 2 => View::Choice(v.len()),
            Domain::Discrete(_) | Domain::Categorical(_) => View::Fixed(Coord::Index(0)),
        }
    }

    /// The views of every parameter of a space, in order.
    pub fn all(space: &SearchSpace) -> Vec<View> {
        space.parameters().iter().map(View::of).collect()
    }
}

/// The lower working-space edge of a grid's first bin. In log space, when `v_0 - step/2` is not
/// positive, the bin mirrors the upper half of the first bin below `ln v_0`.
fn lower_edge(g: Grid, log: bool) -> f64 {
    let edge = g.min - g.step / 2.0;
    if !log {
        edge
    } else if edge > 0.0 {
        edge.ln()
    } else {
        2.0 * g.min.ln() - (g.min + g.step / 2.0).ln()
    }
}

impl NumericDim {
    /// Working-space position of a value.
    pub fn t(&self, x: f64) -> f64 {
        if self.log { x.ln() } else { x }
    }

    /// Value of a working-space position.
    pub fn x(&self, t: f64) -> f64 {
        if self.log { t.exp() } else { t }
    }

    /// Working-space position of a coordinate of this parameter.
    pub fn t_of(&self, coord: Coord) -> f64 {
        match (coord, self.grid) {
            (Coord::Real(x), _) => self.t(x),
            (Coord::Index(k), Some(g)) => self.t(g.value(k)),
            (Coord::Index(k), None) => self.t(k as f64),
        }
    }

    /// The coordinate nearest to a working-space position (clamped into the space).
    pub fn coord_at(&self, t: f64) -> Coord {
        let t = t.clamp(self.lo, self.hi);
        match self.grid {
            None => Coord::Real(self.x(t).clamp(self.min, self.max)),
            Some(g) => Coord::Index(g.snap(self.x(t))),
        }
    }

    /// The working-space bin of grid value `k` (`None` for a continuous parameter).
    pub fn bin(&self, k: u128) -> Option<(f64, f64)> {
        let g = self.grid?;
        let lo = if k == 0 {
            self.lo
        } else {
            self.t(g.value(k) - g.step / 2.0)
        };
        let hi = if k + 1 == g.count {
            self.hi
        } else {
            self.t(g.value(k) + g.step / 2.0)
        };
        Some((lo, hi))
    }

    /// Working-space mean and standard deviation of the parameter's prior: the middle of the
    /// interval and its width for the uniform distributions (Optuna's and hyperopt's prior
    /// kernel); Katib's `mu = (min+max)/2`, `sigma = (max-min)/6` for the normal ones.
    pub fn prior(&self) -> (f64, f64) {
        match self.distribution {
            Distribution::Uniform | Distribution::LogUniform => {
                (0.5 * (self.lo + self.hi), self.hi - self.lo)
            }
            Distribution::Normal | Distribution::LogNormal => {
                let (a, b) = (self.t(self.min), self.t(self.max));
                let sigma = (b - a) / 6.0;
                (0.5 * (a + b), sigma.max((self.hi - self.lo) * 1e-3))
            }
        }
    }

    /// The working-space position of a unit-interval position.
    pub fn at_unit(&self, u: f64) -> f64 {
        self.lo + u.clamp(0.0, 1.0) * (self.hi - self.lo)
    }
}

/// `1 / sqrt(2)`.
const FRAC_1_SQRT_2: f64 = std::f64::consts::FRAC_1_SQRT_2;

/// `ln(sqrt(2 pi))`.
pub(crate) const LN_SQRT_2PI: f64 = 0.918_938_533_204_672_8;

/// The standard normal CDF.
pub(crate) fn norm_cdf(z: f64) -> f64 {
    0.5 * statrs::function::erf::erfc(-z * FRAC_1_SQRT_2)
}

/// The standard normal quantile, `p` in `(0, 1)`.
pub(crate) fn norm_ppf(p: f64) -> f64 {
    -std::f64::consts::SQRT_2 * statrs::function::erf::erfc_inv(2.0 * p)
}

/// `ln(Phi(b) - Phi(a))` for `a < b`, accurate in both tails.
pub(crate) fn ln_normal_mass(a: f64, b: f64) -> f64 {
    // Both tails beyond 8.3 sigma hold less than 1e-16: the whole mass, to double precision.
    if a < -8.3 && b > 8.3 {
        return 0.0;
    }
    let mass = if a >= 0.0 {
        0.5 * (statrs::function::erf::erfc(a * FRAC_1_SQRT_2)
            - statrs::function::erf::erfc(b * FRAC_1_SQRT_2))
    } else if b <= 0.0 {
        0.5 * (statrs::function::erf::erfc(-b * FRAC_1_SQRT_2)
            - statrs::function::erf::erfc(-a * FRAC_1_SQRT_2))
    } else {
        1.0 - 0.5
            * (statrs::function::erf::erfc(-a * FRAC_1_SQRT_2)
                + statrs::function::erf::erfc(b * FRAC_1_SQRT_2))
    };
    if mass > 1e-300 {
        mass.ln()
    } else {
        // Both ends far in one tail: the density at the nearer end times the width, bounded.
        let near = if a >= 0.0 { a } else { -b };
        -0.5 * near * near - LN_SQRT_2PI + (b - a).min(1.0 / near.max(1e-300)).ln()
    }
}

/// A draw of `N(mu, sigma^2)` truncated to `[lo, hi]` (inverse CDF; `mu` may lie outside).
pub(crate) fn sample_truncnorm<R: Rng + ?Sized>(mu: f64, sigma: f64, lo: f64, hi: f64, rng: &mut R) -> f64 {
    if sigma <= 0.0 || lo >= hi {
        return mu.clamp(lo, hi);
    }
    let (a, b) = ((lo - mu) / sigma, (hi - mu) / sigma);
    let u: f64 = rng.random();
    let z = if a >= 0.0 {
        // Upper tail: work with survival probabilities.
        let (qa, qb) = (norm_cdf(-a), norm_cdf(-b));
        -norm_ppf_safe(qb + u * (qa - qb))
    } else {
        let (pa, pb) = (norm_cdf(a), norm_cdf(b));
        norm_ppf_safe(pa + u * (pb - pa))
    };
    let z = if z.is_finite() {
        z.clamp(a, b)
    } else {
        0.5 * (a + b)
    };
    (mu + sigma * z).clamp(lo, hi)
}

fn norm_ppf_safe(p: f64) -> f64 {
    norm_ppf(p.clamp(1e-300, 1.0 - 1e-16))
}

/// A standard normal draw (Box-Muller).
pub(crate) fn standard_normal<R: Rng + ?Sized>(rng: &mut R) -> f64 {
    let u1: f64 = 1.0 - rng.random::<f64>(); // (0, 1]
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// A key identifying a point exactly (grid indices and the bits of reals), for hashing.
pub(crate) fn point_key(point: &[Coord]) -> Vec<u128> {
    point
        .iter()
        .map(|c| match c {
            Coord::Index(k) => *k,
            // Reals are tagged above every index a space can have in practice; -0.0 is 0.0.
            Coord::Real(x) => (1u128 << 127) | u128::from((x + 0.0).to_bits()),
        })
        .collect()
}

/// The keys of every history point that fits the space.
pub(crate) fn history_keys(request: &SuggestRequest) -> HashSet<Vec<u128>> {
    request
        .history
        .iter()
        .filter_map(|t| t.point.as_deref().map(point_key))
        .collect()
}

/// Up to `n` random points (Katib's `random` with dedup for finite spaces), avoiding the
/// request's trials and `extra` points. Short, with `exhausted`, only when a finite space is
/// used up.
pub(crate) fn random_fill(
    request: &SuggestRequest,
    extra: &[Vec<Coord>],
    n: usize,
    random_state: Option<u64>,
) -> Result<Suggested, SuggestError> {
    let mut history = request.history.clone();
    history.extend(extra.iter().map(|p| {
        std::sync::Arc::new(TrialRecord {
            name: String::new(),
            assignments: Default::default(),
            point: Some(p.clone()),
            condition: crate::algorithm::TrialCondition::Running,
            objective: None,
        })
    }));
    let settings: Vec<katib_api::pb::AlgorithmSetting> = random_state
        .map(|s| katib_api::pb::AlgorithmSetting {
            name: "random_state".into(),
            value: s.to_string(),
        })
        .into_iter()
        .collect();
    let sub = SuggestRequest {
        experiment_name: request.experiment_name.clone(),
        space: request.space.clone(),
        settings: AlgorithmSettings::new(Random::NAME, &settings),
        history,
        n,
        total_request_number: request.total_request_number,
        parallel_trial_count: request.parallel_trial_count,
        max_trial_count: request.max_trial_count,
    };
    Random.suggest(&sub)
}

/// Renders points into assignments, or an internal error naming the algorithm.
pub(crate) fn render_all(
    algorithm: &'static str,
    space: &SearchSpace,
    points: &[Vec<Coord>],
) -> Result<Vec<Vec<katib_api::pb::ParameterAssignment>>, SuggestError> {
    points
        .iter()
        .map(|p| {
            space.render(p).ok_or_else(|| SuggestError::Internal {
                algorithm,
                message: format!("produced a point outside the space: {p:?}"),
            })
        })
        .collect()
}

/// A deterministic 64-bit hash of a string (FNV-1a), for seeds derived from names.
pub(crate) fn hash_str(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::algorithm::seeded_rng;

    #[test]
    fn normal_helpers_agree() {
        for z in [-5.0, -1.0, 0.0, 0.3, 2.0, 6.0] {
            assert!((norm_ppf(norm_cdf(z)) - z).abs() < 1e-8, "{z}");
        }
        let m = ln_normal_mass(-1.0, 1.0).exp();
        assert!((m - 0.682_689_492_137_086).abs() < 1e-9, "{m}");
        // Far tails stay finite and ordered.
        let far = ln_normal_mass(40.0, 41.0);
        let farther = ln_normal_mass(50.0, 51.0);
        assert!(far.is_finite() && farther < far, "{far} {farther}");
        assert!((ln_normal_mass(8.0, 9.0) - ln_normal_mass(-9.0, -8.0)).abs() < 1e-12);
    }

    #[test]
    fn truncated_normal_draws_stay_inside() {
        let mut rng = seeded_rng(Some(1), 0);
        for (mu, sigma, lo, hi) in [
            (0.0, 1.0, -0.5, 0.5),
            (10.0, 0.1, 0.0, 1.0),
            (-3.0, 0.01, 0.0, 1.0),
            (0.5, 100.0, 0.0, 1.0),
        ] {
            for _ in 0..1000 {
                let x = sample_truncnorm(mu, sigma, lo, hi, &mut rng);
                assert!((lo..=hi).contains(&x), "{x} outside [{lo}, {hi}]");
            }
        }
        // Centred and unit-wide: about 68% within one sigma.
        let inside = (0..4000)
            .filter(|_| sample_truncnorm(0.0, 1.0, -10.0, 10.0, &mut rng).abs() < 1.0)
            .count();
        assert!((2600..2850).contains(&inside), "{inside}");
    }

    #[test]
    fn grids_bin_and_snap() {
        let g = Grid {
            min: 1.0,
            step: 2.0,
            count: 5,
        };
        assert_eq!(g.snap(-3.0), 0);
        assert_eq!(g.snap(4.1), 2);
        assert_eq!(g.snap(100.0), 4);
        let d = NumericDim {
            log: true,
            distribution: Distribution::LogUniform,
            grid: Some(g),
            lo: lower_edge(g, true),
            hi: (10.0f64).ln(),
            min: 1.0,
            max: 9.0,
        };
        // v_0 - step/2 = 0: the first bin mirrors [ln 1, ln 2] below ln 1.
        assert!((d.lo - (-(2.0f64).ln())).abs() < 1e-12);
        assert_eq!(d.bin(1), Some((2.0f64.ln(), 4.0f64.ln())));
        assert_eq!(d.coord_at(3.5f64.ln()), Coord::Index(1));
        assert_eq!(d.coord_at(-5.0), Coord::Index(0));
    }
}

//! Acquisition functions and their optimization over the mixed space.
//!
//! The functions are computed in forms that stay finite and have useful gradients far from
//! the incumbent: expected improvement as `log EI` and probability of improvement as
//! `log PI` (Ament et al., *Unexpected Improvements to Expected Improvement for Bayesian
//! Optimization*, NeurIPS 2023), lower confidence bound as `kappa sigma - mu`. Larger is better;
//! the objective is minimized on the standardized scale.
//!
//! Optimization: a pool of random allowed points plus perturbations of the best
//! observations is scored in one batched posterior evaluation; the best few pool points
//! start L-BFGS over the continuous and the relaxed ordinal features (categoricals held),
//! the result is snapped to allowed values, then a discrete neighbourhood search tries the
//! adjacent values of every ordinal parameter and every value of every categorical one.

use nalgebra::DMatrix;

use super::encode::{Encoder, Kind};
use super::gp::Posterior;
use super::optimize::minimize;

const LN_SQRT_2PI: f64 = 0.918_938_533_204_672_8;
const SQRT_2: f64 = std::f64::consts::SQRT_2;

/// Which acquisition function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acq {
    /// Expected improvement (as `log EI`).
    Ei,
    /// Probability of improvement (as `log PI`).
    Pi,
    /// Lower confidence bound (`kappa sigma - mu`).
    Lcb,
}

/// The constants of the acquisition functions (scikit-optimize's defaults, on the
/// standardized scale).
#[derive(Debug, Clone, Copy)]
pub struct AcqParams {
    /// The best standardized observation.
    pub best: f64,
    /// EI and PI's improvement margin.
    pub xi: f64,
    /// LCB's exploration weight.
    pub kappa: f64,
}

/// `erfcx(x) = exp(x^2) erfc(x)` for `x >= 0`.
pub fn erfcx(x: f64) -> f64 {
    if x < 25.0 {
        (x * x).exp() * statrs::function::erf::erfc(x)
    } else {
        let r = 1.0 / (x * x);
        (1.0 - 0.5 * r + 0.75 * r * r - 1.875 * r * r * r) / (x * std::f64::consts::PI.sqrt())
    }
}

/// `ln phi(z)` of the standard normal density.
pub fn log_phi(z: f64) -> f64 {
    -0.5 * z * z - LN_SQRT_2PI
}

/// `ln Phi(z)` of the standard normal distribution function, accurate in both tails.
pub fn log_cdf(z: f64) -> f64 {
    if z > 5.0 {
        (-0.5 * statrs::function::erf::erfc(z / SQRT_2)).ln_1p()
    } else if z > -5.0 {
        (0.5 * statrs::function::erf::erfc(-z / SQRT_2)).ln()
    } else {
        (0.5 * erfcx(-z / SQRT_2)).ln() - 0.5 * z * z
    }
}

/// `ln(1 - exp(t))` for `t < 0`.
fn log1mexp(t: f64) -> f64 {
    if t > -std::f64::consts::LN_2 {
        (-t.exp_m1()).ln()
    } else {
        (-t.exp()).ln_1p()
    }
}

/// `ln h(z)`, `h(z) = phi(z) + z Phi(z)` (EI of a unit Gaussian), accurate for very negative z.
pub fn log_h(z: f64) -> f64 {
    if z > -1.0 {
        (log_phi(z).exp() + z * log_cdf(z).exp()).ln()
    } else if z > -1e3 {
        let t = (-z).ln() + 0.5 * (std::f64::consts::PI / 2.0).ln() + erfcx(-z / SQRT_2).ln();
        log_phi(z) + log1mexp(t.min(-1e-300))
    } else {
        log_phi(z) - 2.0 * (-z).ln()
    }
}

/// The acquisition value at a posterior `(mu, sigma)` and its derivatives in `mu` and `sigma`.
pub fn value(acq: Acq, mu: f64, sigma: f64, p: &AcqParams) -> (f64, f64, f64) {
    match acq {
        Acq::Ei => {
            let z = (p.best - p.xi - mu) / sigma;
            let lh = log_h(z);
            let v = lh + sigma.ln();
            let dmu = -(log_cdf(z) - lh).exp() / sigma;
            let dsigma = (log_phi(z) - lh).exp() / sigma;
            (v, dmu, dsigma)
        }
        Acq::Pi => {
            let z = (p.best - p.xi - mu) / sigma;
            let lc = log_cdf(z);
            let ratio = (log_phi(z) - lc).exp();
            (lc, -ratio / sigma, -z * ratio / sigma)
        }
        Acq::Lcb => (p.kappa * sigma - mu, -1.0, p.kappa),
    }
}

/// The value at features `x`.
pub fn at(post: &Posterior, acq: Acq, p: &AcqParams, x: &[f64]) -> f64 {
    let (mu, var) = post.predict(x);
    value(acq, mu, var.sqrt(), p).0
}

/// A candidate pool scored once and updated as fantasies are added.
#[derive(Debug, Clone)]
pub struct Pool {
    /// The candidates' features.
    pub x: Vec<Vec<f64>>,
    /// Posterior means.
    pub mu: Vec<f64>,
    /// Latent variances.
    pub var: Vec<f64>,
    v: DMatrix<f64>,
    rows: usize,
}

impl Pool {
    /// Scores `x` under `post`, with room for `extra` fantasies.
    pub fn new(post: &Posterior, x: Vec<Vec<f64>>, extra: usize) -> Pool {
        let (mu, v) = post.predict_many(&x, extra);
        let rows = post.len();
        let floor = post.sf2() * 1e-12;
        let vr = v.nrows();
        let var = (0..x.len())
            .map(|j| {
                let c = &v.as_slice()[j * vr..j * vr + rows];
                (post.sf2() - super::linalg::dot(c, c)).max(floor)
            })
            .collect();
        Pool { x, mu, var, v, rows }
    }

    /// Accounts for the fantasy just added to `post` at `at` (`cross`, `diag` as returned by
    /// [`Posterior::add_fantasy`]).
    pub fn add_fantasy(&mut self, post: &Posterior, at: &[f64], cross: &[f64], diag: f64) {
        if self.rows >= self.v.nrows() {
            return;
        }
        let n = self.rows;
        let floor = post.sf2() * 1e-12;
        let vr = self.v.nrows();
        for j in 0..self.x.len() {
            let dot = super::linalg::dot(&self.v.as_slice()[j * vr..j * vr + n], &cross[..n]);
            let vn = (post.kernel(at, &self.x[j]) - dot) / diag;
            self.v[(n, j)] = vn;
            self.var[j] = (self.var[j] - vn * vn).max(floor);
        }
        self.rows += 1;
    }
}

/// How hard to search.
#[derive(Debug, Clone, Copy)]
pub struct Effort {
    /// Use L-BFGS (else only the pool and the discrete search).
    pub lbfgs: bool,
    /// Pool points that start a local search.
    pub starts: usize,
    /// L-BFGS iterations per start.
    pub max_iters: u64,
}

/// The best allowed point found for `acq`, among those `ok` accepts, with its value.
pub fn optimize(
    post: &Posterior,
    enc: &Encoder,
    pool: &Pool,
    acq: Acq,
    p: &AcqParams,
    effort: Effort,
    ok: &dyn Fn(&[f64]) -> bool,
) -> Option<(Vec<f64>, f64)> {
    let scores: Vec<f64> = (0..pool.x.len())
        .map(|j| value(acq, pool.mu[j], pool.var[j].sqrt(), p).0)
        .collect();
    let mut order: Vec<usize> = (0..pool.x.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let mut best: Option<(Vec<f64>, f64)> = None;
    let mut started = 0;
    for &j in &order {
        if started >= effort.starts {
            break;
        }
        if !ok(&pool.x[j]) {
            continue;
        }
        started += 1;
        let (x, v) = local_search(post, enc, acq, p, effort, pool.x[j].clone(), scores[j], ok);
        if best.as_ref().is_none_or(|(_, b)| v > *b) {
            best = Some((x, v));
        }
    }
    best
}

/// Improves `x0` (an allowed point with value `v0`) by L-BFGS and discrete moves.
#[allow(clippy::too_many_arguments)]
fn local_search(
    post: &Posterior,
    enc: &Encoder,
    acq: Acq,
    p: &AcqParams,
    effort: Effort,
    x0: Vec<f64>,
    v0: f64,
    ok: &dyn Fn(&[f64]) -> bool,
) -> (Vec<f64>, f64) {
    let mut best = (x0, v0);
    if effort.lbfgs {
        let cols = enc.free_columns(true);
        if !cols.is_empty() {
            try_lbfgs(post, enc, acq, p, effort, &cols, &mut best, ok);
        }
    }
    let changed = discrete_search(post, enc, acq, p, &mut best, ok);
    if changed && effort.lbfgs {
        let cols = enc.free_columns(false);
        if !cols.is_empty() {
            try_lbfgs(post, enc, acq, p, effort, &cols, &mut best, ok);
        }
    }
    best
}

/// Penalty weight for leaving the unit box during L-BFGS.
const BOX_PENALTY: f64 = 1e4;

#[allow(clippy::too_many_arguments)]
fn try_lbfgs(
    post: &Posterior,
    enc: &Encoder,
    acq: Acq,
    p: &AcqParams,
    effort: Effort,
    cols: &[usize],
    best: &mut (Vec<f64>, f64),
    ok: &dyn Fn(&[f64]) -> bool,
) {
    let base = best.0.clone();
    let z0: Vec<f64> = cols.iter().map(|&c| base[c]).collect();
    let objective = |z: &[f64]| {
        let mut x = base.clone();
        let mut penalty = 0.0;
        let mut pgrad = vec![0.0; z.len()];
        for (i, &c) in cols.iter().enumerate() {
            let clamped = z[i].clamp(0.0, 1.0);
            let out = z[i] - clamped;
            penalty += BOX_PENALTY * out * out;
            pgrad[i] = 2.0 * BOX_PENALTY * out;
            x[c] = clamped;
        }
        let (mu, var, dmu, dvar) = post.predict_grad(&x);
        let sigma = var.sqrt();
        let (v, dv_dmu, dv_dsigma) = value(acq, mu, sigma, p);
        let grad: Vec<f64> = cols
            .iter()
            .enumerate()
            .map(|(i, &c)| -(dv_dmu * dmu[c] + dv_dsigma * dvar[c] / (2.0 * sigma)) + pgrad[i])
            .collect();
        (-v + penalty, grad)
    };
    let (z, _, _) = minimize(objective, z0, effort.max_iters, 0.05);
    let mut x = base;
    for (i, &c) in cols.iter().enumerate() {
        x[c] = z[i].clamp(0.0, 1.0);
    }
    enc.snap(&mut x);
    if !ok(&x) {
        return;
    }
    let v = at(post, acq, p, &x);
    if v > best.1 {
        *best = (x, v);
    }
}

/// Greedy moves to adjacent ordinal values and other categorical values; true if it moved.
fn discrete_search(
    post: &Posterior,
    enc: &Encoder,
    acq: Acq,
    p: &AcqParams,
    best: &mut (Vec<f64>, f64),
    ok: &dyn Fn(&[f64]) -> bool,
) -> bool {
    let mut moved = false;
    for _ in 0..3 {
        let mut improved = false;
        for slot in enc.slots.iter().filter(|s| Encoder::is_discrete(s)) {
            let mut tries: Vec<Vec<f64>> = Vec::new();
            match &slot.kind {
                Kind::Ordinal(o) => {
                    let k = o.snap(best.0[slot.col]);
                    let range: Vec<u128> = if o.count <= 8 {
                        (0..o.count).collect()
                    } else {
                        [k.saturating_sub(2), k.saturating_sub(1), k + 1, k + 2]
                            .into_iter()
                            .filter(|&c| c < o.count)
                            .collect()
                    };
                    for c in range.into_iter().filter(|&c| c != k) {
                        let mut x = best.0.clone();
                        x[slot.col] = o.feature(c);
                        tries.push(x);
                    }
                }
                Kind::Categorical { .. } => {
                    for i in 0..slot.width {
                        if best.0[slot.col + i] == 1.0 {
                            continue;
                        }
                        let mut x = best.0.clone();
                        x[slot.col..slot.col + slot.width].fill(0.0);
                        x[slot.col + i] = 1.0;
                        tries.push(x);
                    }
                }
                Kind::Continuous { .. } => {}
            }
            for x in tries {
                if !ok(&x) {
                    continue;
                }
                let v = at(post, acq, p, &x);
                if v > best.1 + 1e-12 {
                    *best = (x, v);
                    improved = true;
                    moved = true;
                }
            }
        }
        if !improved {
            break;
        }
    }
    moved
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ei_direct(mu: f64, sigma: f64, best: f64) -> f64 {
        let z = (best - mu) / sigma;
        let cdf = 0.5 * statrs::function::erf::erfc(-z / SQRT_2);
        let pdf = log_phi(z).exp();
        sigma * (z * cdf + pdf)
    }

    #[test]
    fn log_ei_matches_ei_and_stays_finite() {
        let p = AcqParams {
            best: 0.0,
            xi: 0.0,
            kappa: 1.96,
        };
        for (mu, sigma) in [(0.0, 1.0), (1.0, 0.5), (-2.0, 0.1), (3.0, 1.0), (6.0, 1.0)] {
            let (v, _, _) = value(Acq::Ei, mu, sigma, &p);
            let direct = ei_direct(mu, sigma, 0.0);
            assert!((v.exp() - direct).abs() < 1e-10 * direct.max(1e-300) + 1e-300);
        }
        // Far below any representable EI, log EI still orders points and has a gradient.
        let (a, da, _) = value(Acq::Ei, 60.0, 1.0, &p);
        let (b, _, _) = value(Acq::Ei, 50.0, 1.0, &p);
        assert!(a.is_finite() && b.is_finite() && b > a && da < 0.0);
        let (c, dc, ds) = value(Acq::Ei, 1e5, 1.0, &p);
        assert!(c.is_finite() && dc.is_finite() && ds.is_finite());
    }

    #[test]
    fn acquisition_derivatives_match_finite_differences() {
        let p = AcqParams {
            best: -0.3,
            xi: 0.01,
            kappa: 1.96,
        };
        for acq in [Acq::Ei, Acq::Pi, Acq::Lcb] {
            for (mu, sigma) in [(0.2, 0.7), (-1.0, 0.3), (4.0, 0.5), (12.0, 0.4)] {
                let (_, dmu, ds) = value(acq, mu, sigma, &p);
                let h = 1e-6;
                let fdmu = (value(acq, mu + h, sigma, &p).0 - value(acq, mu - h, sigma, &p).0) / (2.0 * h);
                let fds = (value(acq, mu, sigma + h, &p).0 - value(acq, mu, sigma - h, &p).0) / (2.0 * h);
                assert!(
                    (fdmu - dmu).abs() < 1e-4 * (1.0 + fdmu.abs()),
                    "{acq:?} {mu} {sigma}: dmu {dmu} vs {fdmu}"
                );
                assert!(
                    (fds - ds).abs() < 1e-4 * (1.0 + fds.abs()),
                    "{acq:?} {mu} {sigma}: dsigma {ds} vs {fds}"
                );
            }
        }
    }

    #[test]
    fn log_cdf_is_accurate_in_the_tails() {
        assert!((log_cdf(0.0) - 0.5f64.ln()).abs() < 1e-15);
        // ln Phi(-40) = -804.608442013754...
        assert!((log_cdf(-40.0) + 804.608_442_013_754).abs() < 1e-9);
        assert!(log_cdf(10.0) < 0.0 && log_cdf(10.0) > -1e-20);
    }
}

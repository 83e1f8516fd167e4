//! Smooth minimization with argmin's L-BFGS (More-Thuente line search) on `Vec<f64>`.
//!
//! The objective computes its value and gradient together; the last evaluation is cached so
//! argmin's separate `cost` and `gradient` calls at the same point cost one evaluation, and
//! the best point ever evaluated is kept, so a line search that gives up still returns the
//! progress made.

use std::cell::RefCell;

use argmin::core::{CostFunction, Error, Executor, Gradient, State as _};
use argmin::solver::linesearch::MoreThuenteLineSearch;
use argmin::solver::quasinewton::LBFGS;

/// Memory of the L-BFGS approximation.
const HISTORY: usize = 7;

/// The last evaluation: point, value and gradient.
type Evaluation = (Vec<f64>, f64, Vec<f64>);

struct Problem<F> {
    f: F,
    scale: f64,
    last: RefCell<Option<Evaluation>>,
    best: RefCell<(f64, Vec<f64>)>,
    evaluations: RefCell<usize>,
}

impl<F: Fn(&[f64]) -> (f64, Vec<f64>)> Problem<F> {
    fn eval(&self, x: &[f64]) -> (f64, Vec<f64>) {
        if let Some((px, v, g)) = &*self.last.borrow()
            && px.as_slice() == x
        {
            return (*v, g.clone());
        }
        *self.evaluations.borrow_mut() += 1;
        let (mut v, mut g) = (self.f)(x);
        v *= self.scale;
        g.iter_mut().for_each(|d| *d *= self.scale);
        if !v.is_finite() || g.iter().any(|d| !d.is_finite()) {
            // Keep the line search away without poisoning L-BFGS's history.
            v = f64::MAX / 4.0;
            g.iter_mut().for_each(|d| *d = 0.0);
        }
        {
            let mut best = self.best.borrow_mut();
            if v < best.0 {
                *best = (v, x.to_vec());
            }
        }
        *self.last.borrow_mut() = Some((x.to_vec(), v, g.clone()));
        (v, g)
    }
}

/// Minimizes `f` (value and gradient) from `x0` for at most `max_iters` L-BFGS iterations.
/// `first_step` is the length of the first step along the gradient (L-BFGS's first step is
/// the raw gradient, far too long when gradients are large; scaling the objective by
/// `first_step / |gradient at x0|` fixes that and changes nothing else, L-BFGS being scale
/// invariant afterwards). Returns the best point evaluated, its value and the number of
/// evaluations.
pub fn minimize<F: Fn(&[f64]) -> (f64, Vec<f64>)>(
    f: F,
    x0: Vec<f64>,
    max_iters: u64,
    first_step: f64,
) -> (Vec<f64>, f64, usize) {
    let (v0, g0) = f(&x0);
    let norm = g0.iter().map(|d| d * d).sum::<f64>().sqrt();
    let scale = if norm.is_finite() && norm > 0.0 {
        first_step / norm
    } else {
        1.0
    };
    let problem = Problem {
        f,
        scale,
        last: RefCell::new(None),
        best: RefCell::new((f64::INFINITY, x0.clone())),
        evaluations: RefCell::new(1),
    };
    // The start is the fallback whatever happens.
    if v0.is_finite() {
        *problem.best.borrow_mut() = (v0 * scale, x0.clone());
    }
    let run = || -> Result<(Vec<f64>, f64), Error> {
        let linesearch = MoreThuenteLineSearch::new();
        let solver = LBFGS::new(linesearch, HISTORY)
            .with_tolerance_grad(1e-7)?
            .with_tolerance_cost(1e-10)?;
        let result = Executor::new(&problem, solver)
            .configure(|state| state.param(x0.clone()).max_iters(max_iters))
            .timer(false)
            .run()?;
        let state = result.state();
        Ok((
            state.get_best_param().cloned().unwrap_or_default(),
            state.get_best_cost(),
        ))
    };
    // A failed line search (flat or non-descent direction) is not an error for us: the best
    // point seen is the answer.
    let _ = run();
    let (v, x) = problem.best.borrow().clone();
    let n = *problem.evaluations.borrow();
    // A broken objective (NaN everywhere) still yields a finite, worst-possible value.
    let v = if v.is_finite() && v < f64::MAX / 8.0 {
        v / scale
    } else if v0.is_finite() {
        v0
    } else {
        f64::MAX
    };
    (x, v, n)
}

// `Executor::new` takes the problem by value; a reference works through these impls.
impl<F: Fn(&[f64]) -> (f64, Vec<f64>)> CostFunction for &Problem<F> {
    type Param = Vec<f64>;
    type Output = f64;
    fn cost(&self, x: &Vec<f64>) -> Result<f64, Error> {
        Ok(self.eval(x).0)
    }
}

impl<F: Fn(&[f64]) -> (f64, Vec<f64>)> Gradient for &Problem<F> {
    type Param = Vec<f64>;
    type Gradient = Vec<f64>;
    fn gradient(&self, x: &Vec<f64>) -> Result<Vec<f64>, Error> {
        Ok(self.eval(x).1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimizes_a_quadratic_and_rosenbrock() {
        let (x, v, _) = minimize(
            |x| {
                let v = (x[0] - 3.0).powi(2) + 10.0 * (x[1] + 1.0).powi(2);
                (v, vec![2.0 * (x[0] - 3.0), 20.0 * (x[1] + 1.0)])
            },
            vec![0.0, 0.0],
            100,
            1.0,
        );
        assert!(v < 1e-10 && (x[0] - 3.0).abs() < 1e-5, "{x:?} {v}");
        let (x, _, _) = minimize(
            |x| {
                let (a, b) = (x[0], x[1]);
                let v = (1.0 - a).powi(2) + 100.0 * (b - a * a).powi(2);
                let g = vec![-2.0 * (1.0 - a) - 400.0 * a * (b - a * a), 200.0 * (b - a * a)];
                (v, g)
            },
            vec![-1.2, 1.0],
            500,
            0.1,
        );
        assert!((x[0] - 1.0).abs() < 1e-3 && (x[1] - 1.0).abs() < 1e-3, "{x:?}");
    }

    #[test]
    fn survives_flat_and_broken_objectives() {
        let (x, v, _) = minimize(|_| (1.0, vec![0.0, 0.0]), vec![0.5, 0.5], 10, 1.0);
        assert_eq!((x, v), (vec![0.5, 0.5], 1.0));
        let (_, v, _) = minimize(|_| (f64::NAN, vec![f64::NAN]), vec![0.0], 10, 1.0);
        assert!(v.is_finite());
    }
}

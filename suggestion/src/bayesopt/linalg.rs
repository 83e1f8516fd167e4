//! Dense Cholesky factorization and triangular solves on nalgebra matrices.
//!
//! The factorization and the many-right-hand-side solve are blocked so that nearly all the
//! work is matrix multiplication, which nalgebra hands to `matrixmultiply` (a cache-blocked,
//! SIMD `dgemm`): a 1000 x 1000 factorization takes a few tens of milliseconds instead of the
//! ~0.1 s of a plain loop. Matrices may be larger than the part in use (`n` leading rows and
//! columns), so a factor can grow by one row at a time without reallocating.

use nalgebra::DMatrix;

/// Block size of the blocked algorithms.
const BLOCK: usize = 64;

/// Factors the leading `n x n` block of `a` in place as `L L^T` (lower triangle; the strict
/// upper triangle of the block is zeroed). Only the lower triangle of `a` is read. Returns
/// false if the matrix is not (numerically) positive definite.
pub fn cholesky_in_place(a: &mut DMatrix<f64>, n: usize) -> bool {
    let rows = a.nrows();
    let mut k0 = 0;
    while k0 < n {
        let k1 = (k0 + BLOCK).min(n);
        // Columns k0..k1, rows j..n: left-looking inside the block (contiguous column axpys),
        // which factors the diagonal block and solves the panel below it at once.
        {
            let data = a.as_mut_slice();
            for j in k0..k1 {
                let (left, right) = data.split_at_mut(j * rows);
                let cj = &mut right[..n];
                for p in k0..j {
                    let cp = &left[p * rows..p * rows + n];
                    let ljp = cp[j];
                    if ljp != 0.0 {
                        for (x, l) in cj[j..].iter_mut().zip(&cp[j..]) {
                            *x -= ljp * l;
                        }
                    }
                }
                let d = cj[j];
                if d <= 0.0 || !d.is_finite() {
                    return false;
                }
                let ljj = d.sqrt();
                cj[j] = ljj;
                let inv = 1.0 / ljj;
                for x in &mut cj[j + 1..] {
                    *x *= inv;
                }
            }
        }
        if k1 < n {
            // Trailing update A22 -= P P^T, block column by block column, lower part only.
            let m = n - k1;
            let panel = a.view((k1, k0), (m, k1 - k0)).clone_owned();
            let pt = panel.transpose();
            let mut c0 = 0;
            while c0 < m {
                let c1 = (c0 + BLOCK).min(m);
                a.view_mut((k1 + c0, k1 + c0), (m - c0, c1 - c0)).gemm(
                    -1.0,
                    &panel.rows(c0, m - c0),
                    &pt.columns(c0, c1 - c0),
                    1.0,
                );
                c0 = c1;
            }
        }
        k0 = k1;
    }
    for j in 1..n {
        for i in 0..j {
            a[(i, j)] = 0.0;
        }
    }
    true
}

/// `a . b` with four partial sums, so the compiler can vectorize it (a plain `sum()` of
/// products is one long dependency chain).
#[inline]
pub fn dot(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0.0f64; 4];
    let chunks = n / 4;
    for k in 0..chunks {
        let i = 4 * k;
        acc[0] += a[i] * b[i];
        acc[1] += a[i + 1] * b[i + 1];
        acc[2] += a[i + 2] * b[i + 2];
        acc[3] += a[i + 3] * b[i + 3];
    }
    let mut s = (acc[0] + acc[1]) + (acc[2] + acc[3]);
    for i in 4 * chunks..n {
        s += a[i] * b[i];
    }
    s
}

/// Solves `L x = b` in place for the leading `n x n` lower-triangular block of `l`.
pub fn solve_lower(l: &DMatrix<f64>, n: usize, b: &mut [f64]) {
    let rows = l.nrows();
    let data = l.as_slice();
    for j in 0..n {
        let col = &data[j * rows..j * rows + n];
        let x = b[j] / col[j];
        b[j] = x;
        if x != 0.0 {
            for (bi, li) in b[j + 1..n].iter_mut().zip(&col[j + 1..n]) {
                *bi -= li * x;
            }
        }
    }
}

/// Solves `L^T x = b` in place for the leading `n x n` lower-triangular block of `l`.
pub fn solve_upper_t(l: &DMatrix<f64>, n: usize, b: &mut [f64]) {
    let rows = l.nrows();
    let data = l.as_slice();
    for i in (0..n).rev() {
        let col = &data[i * rows..i * rows + n];
        let s = dot(&col[i + 1..n], &b[i + 1..n]);
        b[i] = (b[i] - s) / col[i];
    }
}

/// Solves `L X = B` in place for the leading `n x n` block of `l` and the leading `n` rows of
/// `b` (all its columns), blocked so the bulk is one `gemm` per block row.
pub fn solve_lower_matrix(l: &DMatrix<f64>, n: usize, b: &mut DMatrix<f64>) {
    let cols = b.ncols();
    let mut k0 = 0;
    while k0 < n {
        let k1 = (k0 + BLOCK).min(n);
        if k0 > 0 {
            // B_k -= L[k, 0..k] X[0..k]
            let (done, mut rest) = b.rows_range_pair_mut(0..k0, k0..k1);
            rest.gemm(-1.0, &l.view((k0, 0), (k1 - k0, k0)), &done, 1.0);
        }
        let brows = b.nrows();
        let lrows = l.nrows();
        let ldata = l.as_slice();
        let bdata = b.as_mut_slice();
        for c in 0..cols {
            let bc = &mut bdata[c * brows..c * brows + k1];
            for j in k0..k1 {
                let lj = &ldata[j * lrows..j * lrows + k1];
                let x = bc[j] / lj[j];
                bc[j] = x;
                if x != 0.0 {
                    for (bi, li) in bc[j + 1..].iter_mut().zip(&lj[j + 1..]) {
                        *bi -= li * x;
                    }
                }
            }
        }
        k0 = k1;
    }
}

/// `L^-1` of the leading `n x n` lower-triangular block of `l`.
pub fn lower_inverse(l: &DMatrix<f64>, n: usize) -> DMatrix<f64> {
    let mut inv = DMatrix::zeros(n, n);
    let lrows = l.nrows();
    let ldata = l.as_slice();
    let idata = inv.as_mut_slice();
    for j in 0..n {
        let x = &mut idata[j * n..(j + 1) * n];
        x[j] = 1.0;
        for p in j..n {
            let lp = &ldata[p * lrows..p * lrows + n];
            let xp = x[p] / lp[p];
            x[p] = xp;
            if xp != 0.0 {
                for (xi, li) in x[p + 1..].iter_mut().zip(&lp[p + 1..]) {
                    *xi -= li * xp;
                }
            }
        }
    }
    inv
}

/// Factors the leading `n x n` block of `k` (lower triangle read) with the smallest jitter
/// from `0, 1e-10, 1e-9, ... 1e-2` (times the mean diagonal) that makes it positive
/// definite. `k` is overwritten with the factor. Returns the jitter added, or `None` if even
/// the largest failed.
pub fn cholesky_with_jitter(k: &mut DMatrix<f64>, n: usize) -> Option<f64> {
    let original = k.view((0, 0), (n, n)).clone_owned();
    let mean_diag = (0..n).map(|i| original[(i, i)]).sum::<f64>() / n.max(1) as f64;
    let scale = if mean_diag.is_finite() && mean_diag > 0.0 {
        mean_diag
    } else {
        1.0
    };
    let mut jitter = 0.0;
    for attempt in 0..10 {
        if attempt > 0 {
            k.view_mut((0, 0), (n, n)).copy_from(&original);
            jitter = scale * 10f64.powi(attempt - 11);
            for i in 0..n {
                k[(i, i)] += jitter;
            }
        }
        if cholesky_in_place(k, n) {
            return Some(jitter);
        }
    }
    None
}

/// Grows the factor of the leading `n x n` block by one row: `cross` is the new point's
/// covariance with the first `n` points (overwritten with `L^-1 cross`), `diag` its own
/// variance. Returns false if `n` already fills `l`.
pub fn append_row(l: &mut DMatrix<f64>, n: usize, cross: &mut [f64], diag: f64) -> bool {
    if n >= l.nrows() || n >= l.ncols() {
        return false;
    }
    solve_lower(l, n, cross);
    let rest = diag - cross[..n].iter().map(|v| v * v).sum::<f64>();
    let d = rest.max(diag.abs() * 1e-10).max(1e-300).sqrt();
    for (j, v) in cross[..n].iter().enumerate() {
        l[(n, j)] = *v;
    }
    l[(n, n)] = d;
    for j in 0..n {
        l[(j, n)] = 0.0;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{RngExt as _, SeedableRng as _};

    fn spd(n: usize, seed: u64) -> DMatrix<f64> {
        let mut rng = rand::rngs::Xoshiro256PlusPlus::seed_from_u64(seed);
        let a = DMatrix::from_fn(n, n, |_, _| rng.random::<f64>() - 0.5);
        &a * a.transpose() + DMatrix::identity(n, n) * (n as f64) * 0.01
    }

    #[test]
    fn blocked_cholesky_matches_the_matrix() {
        for n in [1, 5, 64, 65, 150] {
            let a = spd(n, n as u64);
            let mut l = DMatrix::zeros(n + 3, n + 3);
            l.view_mut((0, 0), (n, n)).copy_from(&a);
            assert!(cholesky_in_place(&mut l, n));
            let lv = l.view((0, 0), (n, n)).clone_owned();
            let back = &lv * lv.transpose();
            assert!((back - &a).abs().max() < 1e-9, "n = {n}");
            // Solves.
            let b: Vec<f64> = (0..n).map(|i| (i as f64).sin()).collect();
            let mut x = b.clone();
            solve_lower(&l, n, &mut x);
            solve_upper_t(&l, n, &mut x);
            let ax = &a * nalgebra::DVector::from_vec(x);
            for (u, v) in ax.iter().zip(&b) {
                assert!((u - v).abs() < 1e-8);
            }
            let inv = lower_inverse(&l, n);
            assert!((&lv * inv - DMatrix::<f64>::identity(n, n)).abs().max() < 1e-9);
            let mut bm = DMatrix::from_fn(n, 7, |i, j| ((i * 7 + j) as f64).cos());
            let orig = bm.clone();
            solve_lower_matrix(&l, n, &mut bm);
            assert!((&lv * bm - orig).abs().max() < 1e-9);
        }
    }

    #[test]
    fn appending_a_row_extends_the_factor() {
        let n = 70;
        let a = spd(n + 1, 3);
        let mut l = DMatrix::zeros(n + 1, n + 1);
        l.view_mut((0, 0), (n, n)).copy_from(&a.view((0, 0), (n, n)));
        assert!(cholesky_in_place(&mut l, n));
        let mut cross: Vec<f64> = (0..n).map(|i| a[(n, i)]).collect();
        assert!(append_row(&mut l, n, &mut cross, a[(n, n)]));
        assert!((&l * l.transpose() - &a).abs().max() < 1e-9);
    }

    #[test]
    fn jitter_rescues_a_singular_matrix() {
        let n = 30;
        let a = DMatrix::from_element(n, n, 1.0);
        let mut k = a.clone();
        let jitter = cholesky_with_jitter(&mut k, n).unwrap();
        assert!(jitter > 0.0 && jitter < 1e-2);
    }
}

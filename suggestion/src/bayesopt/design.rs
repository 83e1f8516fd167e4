//! The initial design: a maximin Latin hypercube (McKay, Beckman & Conover 1979; maximin
//! selection as in Morris & Mitchell 1995).
//!
//! Among [`CANDIDATES`] random Latin hypercubes of `n` points in `[0, 1]^d` (each coordinate
//! takes one point in each of the `n` equal strata) the one whose closest pair of points is
//! farthest apart is kept. The design depends only on its seed, so successive
//! `GetSuggestions` calls of one experiment take consecutive points of the same design.

use rand::{RngExt as _, SeedableRng as _};

use crate::algorithm::AlgorithmRng;

/// Random Latin hypercubes compared per design.
const CANDIDATES: usize = 64;

/// `n` points in `[0, 1]^d`.
pub fn latin_hypercube(n: usize, d: usize, seed: u64) -> Vec<Vec<f64>> {
    let mut rng = AlgorithmRng::seed_from_u64(seed);
    let mut best: Option<(f64, Vec<Vec<f64>>)> = None;
    for _ in 0..CANDIDATES {
        let mut points = vec![vec![0.0; d]; n];
        for j in 0..d {
            let mut strata: Vec<usize> = (0..n).collect();
            for i in (1..n).rev() {
                strata.swap(i, rng.random_range(0..=i));
            }
            for (p, s) in points.iter_mut().zip(&strata) {
                p[j] = (*s as f64 + rng.random::<f64>()) / n as f64;
            }
        }
        let mut closest = f64::INFINITY;
        for a in 0..n {
            for b in 0..a {
                let d2: f64 = points[a]
                    .iter()
                    .zip(&points[b])
                    .map(|(x, y)| (x - y) * (x - y))
                    .sum();
                closest = closest.min(d2);
            }
        }
        if best.as_ref().is_none_or(|(c, _)| closest > *c) {
            best = Some((closest, points));
        }
    }
    best.map(|(_, p)| p).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_stratum_is_hit_once_per_coordinate() {
        let n = 10;
        let pts = latin_hypercube(n, 4, 9);
        assert_eq!(pts.len(), n);
        for j in 0..4 {
            let mut strata: Vec<usize> = pts.iter().map(|p| (p[j] * n as f64) as usize).collect();
            strata.sort_unstable();
            assert_eq!(strata, (0..n).collect::<Vec<_>>());
        }
        assert_eq!(pts, latin_hypercube(n, 4, 9));
        assert_ne!(pts, latin_hypercube(n, 4, 10));
    }
}

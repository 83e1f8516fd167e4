//! Aggregations computed on the server for the experiment page's plots.
//!
//! Parameter importance is a first-order variance decomposition ("fANOVA-lite"): for each
//! parameter, the share of the objective's variance explained by the parameter alone,
//! estimated by grouping trials by the parameter's value (categorical/discrete values as
//! they are, numeric values in up to 10 equal-count bins by rank) and computing the
//! between-group sum of squares over the total sum of squares (the correlation ratio η²).
//! The shares are reported raw (each in 0..1) and normalised to sum to 1. It ignores
//! interactions (which full fANOVA would attribute separately) and is cheap: O(n log n)
//! per parameter, so 10,000 trials take milliseconds.

use std::collections::BTreeMap;

use serde::Serialize;

/// Running best objective after each trial in creation order (`None` until a trial has a
/// value).
pub fn best_so_far(values: &[Option<f64>], maximize: bool) -> Vec<Option<f64>> {
    let mut best: Option<f64> = None;
    values
        .iter()
        .map(|v| {
            if let Some(v) = v {
                best = Some(match best {
                    None => *v,
                    Some(b) if maximize => b.max(*v),
                    Some(b) => b.min(*v),
                });
            }
            best
        })
        .collect()
}

/// One parameter's importance.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Importance {
    pub name: String,
    /// Share of the objective's variance explained by this parameter alone (η², 0..1).
    pub eta2: f64,
    /// `eta2` normalised so that all parameters sum to 1.
    pub share: f64,
}

/// Importance of each parameter over trials with an objective. `params[i][j]` is trial
/// `j`'s value of parameter `i` (as text); `numeric[i]` tells whether to bin it.
pub fn importance(
    names: &[String],
    numeric: &[bool],
    params: &[Vec<Option<&str>>],
    y: &[f64],
) -> Vec<Importance> {
    let n = y.len();
    let mut out = Vec::with_capacity(names.len());
    if n < 2 {
        return names
            .iter()
            .map(|name| Importance {
                name: name.clone(),
                eta2: 0.0,
                share: 0.0,
            })
            .collect();
    }
    let mean = y.iter().sum::<f64>() / n as f64;
    let total: f64 = y.iter().map(|v| (v - mean).powi(2)).sum();
    for (i, name) in names.iter().enumerate() {
        let column = &params[i];
        let groups: Vec<usize> = if numeric[i] {
            let mut order: Vec<(f64, usize)> = column
                .iter()
                .enumerate()
                .map(|(j, v)| (v.and_then(|s| s.parse::<f64>().ok()).unwrap_or(f64::NAN), j))
                .collect();
            order.sort_by(|a, b| a.0.total_cmp(&b.0));
            let bins = 10.min(n);
            let mut g = vec![0; n];
            for (rank, (_, j)) in order.iter().enumerate() {
                g[*j] = rank * bins / n;
            }
            g
        } else {
            let mut ids: BTreeMap<&str, usize> = BTreeMap::new();
            column
                .iter()
                .map(|v| {
                    let k = v.unwrap_or("");
                    let next = ids.len();
                    *ids.entry(k).or_insert(next)
                })
                .collect()
        };
        let k = groups.iter().copied().max().unwrap_or(0) + 1;
        let mut sum = vec![0.0; k];
        let mut count = vec![0usize; k];
        for (j, g) in groups.iter().enumerate() {
            sum[*g] += y[j];
            count[*g] += 1;
        }
        let between: f64 = (0..k)
            .filter(|g| count[*g] > 0)
            .map(|g| count[g] as f64 * (sum[g] / count[g] as f64 - mean).powi(2))
            .sum();
        let eta2 = if total > 0.0 {
            (between / total).clamp(0.0, 1.0)
        } else {
            0.0
        };
        out.push(Importance {
            name: name.clone(),
            eta2,
            share: 0.0,
        });
    }
    let sum: f64 = out.iter().map(|i| i.eta2).sum();
    if sum > 0.0 {
        for i in &mut out {
            i.share = i.eta2 / sum;
        }
    }
    out
}

/// At most `max` points of a curve, evenly spaced, always keeping the first and last.
pub fn downsample<T: Clone>(points: &[T], max: usize) -> Vec<T> {
    if points.len() <= max || max < 2 {
        return points.to_vec();
    }
    let last = points.len() - 1;
    (0..max).map(|i| points[i * last / (max - 1)].clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn best_so_far_follows_direction() {
        let v = [None, Some(3.0), Some(1.0), None, Some(2.0)];
        assert_eq!(
            best_so_far(&v, false),
            [None, Some(3.0), Some(1.0), Some(1.0), Some(1.0)]
        );
        assert_eq!(
            best_so_far(&v, true),
            [None, Some(3.0), Some(3.0), Some(3.0), Some(3.0)]
        );
    }

    #[test]
    fn importance_finds_the_parameter_that_matters() {
        // y depends on x only; z is noise-free but irrelevant (alternating).
        let xs: Vec<String> = (0..100).map(|i| format!("{}", i as f64 / 100.0)).collect();
        let zs: Vec<&str> = (0..100).map(|i| if i % 2 == 0 { "a" } else { "b" }).collect();
        let y: Vec<f64> = (0..100).map(|i| (i as f64 / 100.0).powi(2)).collect();
        let params = vec![
            xs.iter().map(|s| Some(s.as_str())).collect(),
            zs.iter().map(|s| Some(*s)).collect(),
        ];
        let imp = importance(&["x".into(), "z".into()], &[true, false], &params, &y);
        assert!(imp[0].eta2 > 0.9, "{imp:?}");
        assert!(imp[1].eta2 < 0.05, "{imp:?}");
        assert!((imp[0].share + imp[1].share - 1.0).abs() < 1e-9);
    }

    #[test]
    fn downsample_keeps_ends() {
        let v: Vec<i32> = (0..1000).collect();
        let d = downsample(&v, 11);
        assert_eq!(d.len(), 11);
        assert_eq!(d[0], 0);
        assert_eq!(d[10], 999);
        assert_eq!(downsample(&v[..5], 11), v[..5].to_vec());
    }
}

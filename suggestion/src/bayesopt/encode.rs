//! The search space as the Gaussian process sees it: every parameter mapped onto `[0, 1]`.
//!
//! - unstepped double: one continuous feature, `(t(x) - t(min)) / (t(max) - t(min))` where
//!   `t` is `ln` for the logUniform and logNormal distributions and the identity otherwise
//!   (the experiment's distribution is honoured; normal shapes only the initial design's
//!   box, not the prior of the model);
//! - int, stepped double, discrete: one *ordinal* feature, the same scaling of the value; the
//!   model relaxes it to `[0, 1]` and the point is snapped to the nearest allowed value (for a
//!   stepped double, the exact decimal grid `min + k*step`);
//! - categorical: one-hot, one column per value, sharing one kernel lengthscale.
//!
//! A parameter with a single value has no feature.

use rand::{Rng, RngExt as _};

use crate::space::{Coord, Domain, Parameter, SearchSpace};

/// How one parameter is encoded.
#[derive(Debug, Clone)]
pub enum Kind {
    /// An unstepped double.
    Continuous {
        /// `t(min)`.
        lo: f64,
        /// `t(max) - t(min)`.
        span: f64,
        /// `t` is `ln`.
        log: bool,
        /// Bounds of the value.
        min: f64,
        /// Upper bound of the value.
        max: f64,
    },
    /// A finite ordered set of numbers (int, stepped double, discrete list).
    Ordinal(Ordinal),
    /// One-hot over `k` values.
    Categorical {
        /// Number of values.
        k: usize,
    },
}

/// The values of an ordinal parameter and their features.
#[derive(Debug, Clone)]
pub struct Ordinal {
    /// How many values.
    pub count: u128,
    lo: f64,
    span: f64,
    log: bool,
    values: OrdinalValues,
}

#[derive(Debug, Clone)]
enum OrdinalValues {
    /// `min + k*step`, snapped by the space's own rounding.
    Progression { min: f64, step: f64 },
    /// An explicit list (discrete parameters), with each value's feature.
    List(Vec<f64>),
}

impl Ordinal {
    /// The number value of index `k`.
    fn value(&self, k: u128) -> f64 {
        match &self.values {
            OrdinalValues::Progression { min, step } => min + *step * k as f64,
            OrdinalValues::List(v) => v[k as usize],
        }
    }

    /// The feature of index `k`.
    pub fn feature(&self, k: u128) -> f64 {
        self.to_unit(self.value(k))
    }

    fn to_unit(&self, x: f64) -> f64 {
        if self.span <= 0.0 {
            return 0.5;
        }
        let t = if self.log { x.ln() } else { x };
        ((t - self.lo) / self.span).clamp(0.0, 1.0)
    }

    /// The index whose feature is nearest to `u`.
    pub fn snap(&self, u: f64) -> u128 {
        let u = if u.is_finite() { u.clamp(0.0, 1.0) } else { 0.5 };
        match &self.values {
            OrdinalValues::Progression { min, step } => {
                if self.span <= 0.0 {
                    return 0;
                }
                let t = self.lo + u * self.span;
                let x = if self.log { t.exp() } else { t };
                // Nearest in value, then check the neighbour in feature space (log scales).
                let k = ((x - min) / step).round().clamp(0.0, (self.count - 1) as f64) as u128;
                let mut best = (k, (self.feature(k) - u).abs());
                for c in [k.saturating_sub(1), (k + 1).min(self.count - 1)] {
                    let d = (self.feature(c) - u).abs();
                    if d < best.1 {
                        best = (c, d);
                    }
                }
                best.0
            }
            OrdinalValues::List(v) => {
                let mut best = (0usize, f64::INFINITY);
                for (i, &x) in v.iter().enumerate() {
                    let d = (self.to_unit(x) - u).abs();
                    if d < best.1 {
                        best = (i, d);
                    }
                }
                best.0 as u128
            }
        }
    }
}

/// One parameter's place among the features.
#[derive(Debug, Clone)]
pub struct Slot {
    /// How the parameter is encoded.
    pub kind: Kind,
    /// First feature column.
    pub col: usize,
    /// Number of feature columns (0 for a single-valued parameter).
    pub width: usize,
}

/// The encoding of a whole search space.
#[derive(Debug, Clone)]
pub struct Encoder {
    /// One slot per parameter, in the space's order.
    pub slots: Vec<Slot>,
    /// Total number of feature columns.
    pub dim: usize,
}

impl Encoder {
    /// The encoding of `space`.
    pub fn new(space: &SearchSpace) -> Self {
        let mut slots = Vec::with_capacity(space.parameters().len());
        let mut col = 0;
        for p in space.parameters() {
            let kind = kind_of(p);
            let width = match &kind {
                Kind::Continuous { span, .. } => usize::from(*span > 0.0),
                Kind::Ordinal(o) => usize::from(o.count > 1),
                Kind::Categorical { k } => {
                    if *k > 1 {
                        *k
                    } else {
                        0
                    }
                }
            };
            slots.push(Slot { kind, col, width });
            col += width;
        }
        Encoder { slots, dim: col }
    }

    /// Kernel groups: the feature columns sharing one lengthscale (one group per parameter
    /// with features).
    pub fn groups(&self) -> Vec<std::ops::Range<usize>> {
        self.slots
            .iter()
            .filter(|s| s.width > 0)
            .map(|s| s.col..s.col + s.width)
            .collect()
    }

    /// The features of a point of the space.
    pub fn encode(&self, point: &[Coord]) -> Vec<f64> {
        let mut f = vec![0.0; self.dim];
        for (slot, c) in self.slots.iter().zip(point) {
            if slot.width == 0 {
                continue;
            }
            match (&slot.kind, *c) {
                (
                    Kind::Continuous {
                        lo,
                        span,
                        log,
                        min,
                        max,
                    },
                    Coord::Real(x),
                ) => {
                    let x = x.clamp(*min, *max);
                    let t = if *log { x.ln() } else { x };
                    f[slot.col] = ((t - lo) / span).clamp(0.0, 1.0);
                }
                (Kind::Ordinal(o), Coord::Index(k)) => f[slot.col] = o.feature(k),
                (Kind::Categorical { .. }, Coord::Index(k)) => f[slot.col + k as usize] = 1.0,
                // A coordinate of the wrong kind cannot come from the space's own parsing.
                _ => f[slot.col] = 0.5,
            }
        }
        f
    }

    /// The point nearest to some features: continuous values clamped, ordinals snapped,
    /// categoricals by their largest column.
    pub fn decode(&self, f: &[f64]) -> Vec<Coord> {
        self.slots
            .iter()
            .map(|slot| match &slot.kind {
                Kind::Continuous {
                    lo,
                    span,
                    log,
                    min,
                    max,
                } => {
                    if slot.width == 0 {
                        return Coord::Real(*min);
                    }
                    let u = f[slot.col].clamp(0.0, 1.0);
                    let t = lo + u * span;
                    let x = if *log { t.exp() } else { t };
                    Coord::Real(x.clamp(*min, *max))
                }
                Kind::Ordinal(o) => {
                    if slot.width == 0 {
                        return Coord::Index(0);
                    }
                    Coord::Index(o.snap(f[slot.col]))
                }
                Kind::Categorical { .. } => {
                    if slot.width == 0 {
                        return Coord::Index(0);
                    }
                    let cols = &f[slot.col..slot.col + slot.width];
                    let mut best = 0;
                    for (i, v) in cols.iter().enumerate() {
                        if *v > cols[best] {
                            best = i;
                        }
                    }
                    Coord::Index(best as u128)
                }
            })
            .collect()
    }

    /// The features of the allowed point nearest to `f`, written back into `f`.
    pub fn snap(&self, f: &mut [f64]) {
        let point = self.decode(f);
        f.copy_from_slice(&self.encode(&point));
    }

    /// Features from one unit coordinate per parameter (the initial design's space):
    /// continuous as is, ordinals snapped, categoricals by `floor(u * k)`.
    pub fn from_unit(&self, u: &[f64]) -> Vec<f64> {
        let mut f = vec![0.0; self.dim];
        for (slot, &u) in self.slots.iter().zip(u) {
            if slot.width == 0 {
                continue;
            }
            match &slot.kind {
                Kind::Continuous { .. } => f[slot.col] = u.clamp(0.0, 1.0),
                Kind::Ordinal(o) => {
                    // Stratify over the indices, so a small int range is covered evenly.
                    let k = ((u * o.count as f64).floor() as u128).min(o.count - 1);
                    let spread = if o.count <= 64 {
                        o.feature(k)
                    } else {
                        o.feature(o.snap(u))
                    };
                    f[slot.col] = spread;
                }
                Kind::Categorical { k } => {
                    let i = ((u * *k as f64).floor() as usize).min(k - 1);
                    f[slot.col + i] = 1.0;
                }
            }
        }
        f
    }

    /// A random allowed point's features (uniform on each feature's scale).
    pub fn random<R: Rng + ?Sized>(&self, rng: &mut R) -> Vec<f64> {
        let u: Vec<f64> = self.slots.iter().map(|_| rng.random::<f64>()).collect();
        self.from_unit(&u)
    }

    /// True if the parameter of `slot` takes finitely many values (and has features).
    pub fn is_discrete(slot: &Slot) -> bool {
        slot.width > 0 && !matches!(slot.kind, Kind::Continuous { .. })
    }

    /// The feature columns L-BFGS moves: continuous ones, and ordinals when `ordinals`.
    pub fn free_columns(&self, ordinals: bool) -> Vec<usize> {
        self.slots
            .iter()
            .filter(|s| s.width > 0)
            .filter(|s| match s.kind {
                Kind::Continuous { .. } => true,
                Kind::Ordinal(_) => ordinals,
                Kind::Categorical { .. } => false,
            })
            .map(|s| s.col)
            .collect()
    }
}

fn kind_of(p: &Parameter) -> Kind {
    let t = |x: f64, log: bool| if log { x.ln() } else { x };
    match &p.domain {
        Domain::Double(d) => {
            let log = d.distribution.is_log() && d.min > 0.0;
            match &d.grid {
                None => Kind::Continuous {
                    lo: t(d.min, log),
                    span: t(d.max, log) - t(d.min, log),
                    log,
                    min: d.min,
                    max: d.max,
                },
                Some(grid) => {
                    let count = grid.count();
                    let first = grid.value(0).map(|v| v.to_f64()).unwrap_or(d.min);
                    let last = grid.value(count - 1).map(|v| v.to_f64()).unwrap_or(d.max);
                    let step = if count > 1 {
                        (last - first) / (count - 1) as f64
                    } else {
                        1.0
                    };
                    Kind::Ordinal(Ordinal {
                        count,
                        lo: t(first, log),
                        span: t(last, log) - t(first, log),
                        log,
                        values: OrdinalValues::Progression { min: first, step },
                    })
                }
            }
        }
        Domain::Int(i) => {
            let count = i.count();
            let log = i.distribution.is_log() && i.min > 0;
            let first = i.min as f64;
            let last = i.value(count - 1).unwrap_or(i.max) as f64;
            Kind::Ordinal(Ordinal {
                count,
                lo: t(first, log),
                span: t(last, log) - t(first, log),
                log,
                values: OrdinalValues::Progression {
                    min: first,
                    step: i.step as f64,
                },
            })
        }
        Domain::Discrete(values) => {
            let v: Vec<f64> = values.iter().map(|x| x.as_f64()).collect();
            let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            Kind::Ordinal(Ordinal {
                count: v.len() as u128,
                lo,
                span: hi - lo,
                log: false,
                values: OrdinalValues::List(v),
            })
        }
        Domain::Categorical(values) => Kind::Categorical { k: values.len() },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::space::testing::*;
    use katib_api::pb;
    use rand::SeedableRng as _;

    fn space(params: Vec<pb::ParameterSpec>) -> SearchSpace {
        SearchSpace::from_experiment(&experiment("bayesianoptimization", &[], params)).unwrap()
    }

    #[test]
    fn round_trips_every_parameter_type() {
        let s = space(vec![
            double_dist("lr", "0.0001", "0.1", "", pb::Distribution::LogUniform),
            double("m", "0.01", "0.05", "0.01"),
            int("layers", "1", "9", "2"),
            discrete("bs", &["64", "16", "32"]),
            categorical("opt", &["sgd", "adam", "rmsprop"]),
            categorical("one", &["only"]),
            int_dist("units", "8", "512", "", pb::Distribution::LogUniform),
        ]);
        let enc = Encoder::new(&s);
        assert_eq!(enc.dim, 1 + 1 + 1 + 1 + 3 + 1);
        assert_eq!(enc.groups().len(), 6);
        let mut rng = rand::rngs::Xoshiro256PlusPlus::seed_from_u64(1);
        for _ in 0..500 {
            let f = enc.random(&mut rng);
            assert!(f.iter().all(|v| (0.0..=1.0).contains(v)));
            let p = enc.decode(&f);
            assert!(s.render(&p).is_some(), "{p:?}");
            let again = enc.encode(&p);
            for (a, b) in f.iter().zip(&again) {
                assert!((a - b).abs() < 1e-9, "{f:?} {again:?}");
            }
        }
        // Log scale: the geometric middle of [1e-4, 1e-1] is the middle feature.
        let p = enc.decode(&[0.5, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.5]);
        let a = s.render(&p).unwrap();
        let lr: f64 = a[0].value.parse().unwrap();
        assert!((lr - 10f64.powf(-2.5)).abs() < 1e-9, "{lr}");
        assert_eq!(a[1].value, "0.01");
        assert_eq!(a[3].value, "16");
        assert_eq!(a[4].value, "sgd");
        assert_eq!(a[5].value, "only");
        let units: i64 = a[6].value.parse().unwrap();
        assert!((60..=68).contains(&units), "{units}");
    }

    #[test]
    fn stepped_doubles_snap_to_exact_decimals() {
        let s = space(vec![double("x", "0", "1", "0.1")]);
        let enc = Encoder::new(&s);
        let a = s.render(&enc.decode(&[0.33])).unwrap();
        assert_eq!(a[0].value, "0.3");
        let a = s.render(&enc.decode(&[0.96])).unwrap();
        assert_eq!(a[0].value, "1");
    }
}

//! The search space as algorithms see it, built and validated from a `pb::Experiment`.
//!
//! Katib sends every number as a string. Here each parameter becomes a [`Domain`]:
//! - `double`: `[min, max]`, optionally stepped (`min + k*step <= max`, computed exactly on
//!   [`Decimal`]s), sampled by a [`Distribution`] (unspecified means uniform);
//! - `int`: `[min, max]` with `step` (default 1, as in Katib's Python services);
//! - `discrete`: a list of numbers; `categorical`: a list of strings.
//!
//! A point in the space is a list of [`Coord`]s, one per parameter in the experiment's
//! order: an index into the values of a finite parameter (int, stepped double, discrete,
//! categorical) or a real number for an unstepped double. [`SearchSpace::render`] turns a point
//! into assignments; [`SearchSpace::parse_assignments`] turns a trial's assignments back into a
//! point, comparing numbers by value (`"0.10"` is the grid value `0.1`, and Katib's
//! `0.019999999999999997` is the grid value `0.02`).

use std::collections::HashSet;

use katib_api::pb;

use crate::algorithm::Assignments;
use crate::decimal::{Decimal, DecimalError};
use crate::error::SettingsError;

/// How values of a numeric parameter are drawn (Katib's `feasibleSpace.distribution`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Distribution {
    /// Uniform on `[min, max]` (also what an unspecified distribution means).
    Uniform,
    /// Uniform in `ln` space; `min` must be > 0.
    LogUniform,
    /// Normal with `mu = (min+max)/2`, `sigma = (max-min)/6`, kept inside `[min, max]`.
    Normal,
    /// Normal in `ln` space (`mu`, `sigma` as for `Normal` on `ln min`, `ln max`); `min` > 0.
    LogNormal,
}

impl Distribution {
    /// The name used in Katib's Experiment YAML.
    pub fn katib_name(self) -> &'static str {
        match self {
            Distribution::Uniform => "uniform",
            Distribution::LogUniform => "logUniform",
            Distribution::Normal => "normal",
            Distribution::LogNormal => "logNormal",
        }
    }

    /// True for the distributions that sample `ln(value)`.
    pub fn is_log(self) -> bool {
        matches!(self, Distribution::LogUniform | Distribution::LogNormal)
    }
}

/// Whether the objective metric is minimized or maximized.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Smaller is better.
    Minimize,
    /// Larger is better.
    Maximize,
}

/// The experiment's objective, when it names a direction.
#[derive(Debug, Clone, PartialEq)]
pub struct Objective {
    /// Minimize or maximize.
    pub direction: Direction,
    /// The objective metric's name (`objectiveMetricName`).
    pub metric_name: String,
}

impl Objective {
    /// The objective metric's value in an observation, if present and numeric
    /// (`"unavailable"` and other non-numbers give `None`).
    pub fn value_in(&self, observation: &pb::Observation) -> Option<f64> {
        observation
            .metrics
            .iter()
            .rev()
            .find(|m| m.name == self.metric_name)
            .and_then(|m| Self::parse(&m.value))
    }

    /// A metric value as the objective reads it: a finite number, surrounding spaces allowed.
    pub fn parse(value: &str) -> Option<f64> {
        value.trim().parse::<f64>().ok().filter(|v| v.is_finite())
    }
}

/// A position in one parameter's domain.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Coord {
    /// Index into the values of a finite parameter (see [`Parameter::cardinality`]).
    Index(u128),
    /// A value of an unstepped double.
    Real(f64),
}

/// An exact arithmetic progression `min + k*step`, `k < count`, for a stepped double.
#[derive(Debug, Clone, PartialEq)]
pub struct DecimalGrid {
    min: i128,
    step: i128,
    scale: u32,
    count: u128,
}

impl DecimalGrid {
    fn new(min: Decimal, max: Decimal, step: Decimal) -> Option<Self> {
        let scale = min.scale().max(max.scale()).max(step.scale());
        let (min, max, step) = (
            min.mantissa_at(scale)?,
            max.mantissa_at(scale)?,
            step.mantissa_at(scale)?,
        );
        let span = max.checked_sub(min)?;
        let count = u128::try_from(span / step).ok()?.checked_add(1)?;
        Some(DecimalGrid {
            min,
            step,
            scale,
            count,
        })
    }

    /// How many values the grid has.
    pub fn count(&self) -> u128 {
        self.count
    }

    /// The `k`-th value, `None` if `k >= count`.
    pub fn value(&self, k: u128) -> Option<Decimal> {
        if k >= self.count {
            return None;
        }
        // k < count keeps min + k*step <= max, which fits.
        let m = self.min + i128::try_from(k).ok()? * self.step;
        Some(Decimal::new(m, self.scale))
    }

    fn min_f64(&self) -> f64 {
        Decimal::new(self.min, self.scale).to_f64()
    }

    fn step_f64(&self) -> f64 {
        Decimal::new(self.step, self.scale).to_f64()
    }

    /// The index of an exact grid value, or of a float within rounding noise of one.
    fn index_of(&self, text: &str) -> Option<u128> {
        if let Ok(d) = text.parse::<Decimal>()
            && let Some(m) = d.mantissa_at(self.scale)
            && let Some(diff) = m.checked_sub(self.min)
            && diff >= 0
            && diff % self.step == 0
        {
            let k = u128::try_from(diff / self.step).ok()?;
            return (k < self.count).then_some(k);
        }
        // Values written by binary floating point (Katib's numpy grid) are near a grid point.
        let x: f64 = text.trim().parse().ok().filter(|x: &f64| x.is_finite())?;
        let k = self.snap(x);
        let nearest = self.value(k)?.to_f64();
        ((x - nearest).abs() <= 1e-9 * self.step_f64()).then_some(k)
    }

    /// The index of the grid value nearest to `x`.
    pub fn snap(&self, x: f64) -> u128 {
        snap_index(x, self.min_f64(), self.step_f64(), self.count)
    }
}

/// Index of the progression value nearest to `x`, clamped to `[0, count)`.
fn snap_index(x: f64, min: f64, step: f64, count: u128) -> u128 {
    let k = ((x - min) / step).round();
    if k.is_nan() || k <= 0.0 {
        0
    } else {
        // `as` saturates; clamp to the last index.
        (k as u128).min(count - 1)
    }
}

/// A `double` parameter.
#[derive(Debug, Clone, PartialEq)]
pub struct DoubleSpace {
    /// Lower bound (inclusive).
    pub min: f64,
    /// Upper bound (inclusive).
    pub max: f64,
    /// How values are drawn.
    pub distribution: Distribution,
    /// The exact grid when `feasibleSpace.step` is set.
    pub grid: Option<DecimalGrid>,
}

/// An `int` parameter: `min + k*step <= max`.
#[derive(Debug, Clone, PartialEq)]
pub struct IntSpace {
    /// Lower bound (inclusive).
    pub min: i64,
    /// Upper bound (inclusive).
    pub max: i64,
    /// Step, >= 1 (default 1).
    pub step: i64,
    /// How values are drawn.
    pub distribution: Distribution,
}

impl IntSpace {
    /// How many values `min, min+step, ... <= max` there are.
    pub fn count(&self) -> u128 {
        let span = i128::from(self.max) - i128::from(self.min);
        (span / i128::from(self.step)) as u128 + 1
    }

    /// The `k`-th value.
    pub fn value(&self, k: u128) -> Option<i64> {
        if k >= self.count() {
            return None;
        }
        i64::try_from(i128::from(self.min) + k as i128 * i128::from(self.step)).ok()
    }

    fn index_of(&self, text: &str) -> Option<u128> {
        let v = text.parse::<Decimal>().ok()?.to_i64()?;
        let diff = i128::from(v) - i128::from(self.min);
        let step = i128::from(self.step);
        if diff < 0 || diff % step != 0 {
            return None;
        }
        let k = (diff / step) as u128;
        (k < self.count()).then_some(k)
    }

    /// The index of the value nearest to `x`.
    pub fn snap(&self, x: f64) -> u128 {
        snap_index(x, self.min as f64, self.step as f64, self.count())
    }
}

/// One value of a `discrete` parameter: the text as written and its numeric value.
#[derive(Debug, Clone, PartialEq)]
pub struct DiscreteValue {
    /// The list entry as the user wrote it (trimmed); this is what assignments carry.
    pub text: String,
    exact: Option<Decimal>,
    float: f64,
}

impl DiscreteValue {
    fn parse(text: &str) -> Result<Self, &'static str> {
        let text = text.trim();
        let exact = match text.parse::<Decimal>() {
            Ok(d) => Some(d),
            Err(DecimalError::Invalid) => return Err("is not a number"),
            Err(DecimalError::OutOfRange) => None,
        };
        let float = text
            .parse::<f64>()
            .ok()
            .filter(|f| f.is_finite())
            .ok_or("is not a finite number")?;
        Ok(DiscreteValue {
            text: text.to_owned(),
            exact,
            float,
        })
    }

    /// The value as a float.
    pub fn as_f64(&self) -> f64 {
        self.float
    }

    fn same_number(&self, other: &DiscreteValue) -> bool {
        match (self.exact, other.exact) {
            (Some(a), Some(b)) => a == b,
            _ => self.float == other.float,
        }
    }
}

/// What values a parameter takes.
#[derive(Debug, Clone, PartialEq)]
pub enum Domain {
    /// `parameterType: double`.
    Double(DoubleSpace),
    /// `parameterType: int`.
    Int(IntSpace),
    /// `parameterType: discrete` (numbers, duplicates by value removed).
    Discrete(Vec<DiscreteValue>),
    /// `parameterType: categorical` (strings, duplicates removed).
    Categorical(Vec<String>),
}

/// One named parameter.
#[derive(Debug, Clone, PartialEq)]
pub struct Parameter {
    /// The parameter's name, as assignments carry it.
    pub name: String,
    /// Its values.
    pub domain: Domain,
}

impl Parameter {
    /// How many values the parameter has; `None` for an unstepped double (continuous).
    pub fn cardinality(&self) -> Option<u128> {
        match &self.domain {
            Domain::Double(d) => d.grid.as_ref().map(DecimalGrid::count),
            Domain::Int(i) => Some(i.count()),
            Domain::Discrete(v) => Some(v.len() as u128),
            Domain::Categorical(v) => Some(v.len() as u128),
        }
    }

    /// The assignment text for a coordinate; `None` if the coordinate does not fit this
    /// parameter (an index out of range, or an index for a continuous double). A real for a
    /// finite numeric parameter is snapped to the nearest value.
    pub fn format(&self, coord: Coord) -> Option<String> {
        match (&self.domain, coord) {
            (Domain::Double(d), Coord::Real(x)) => match &d.grid {
                None => Some(format!("{}", x.clamp(d.min, d.max))),
                Some(grid) => grid.value(grid.snap(x)).map(|v| v.to_string()),
            },
            (Domain::Double(d), Coord::Index(k)) => d.grid.as_ref()?.value(k).map(|v| v.to_string()),
            (Domain::Int(i), Coord::Index(k)) => i.value(k).map(|v| v.to_string()),
            (Domain::Int(i), Coord::Real(x)) => i.value(i.snap(x)).map(|v| v.to_string()),
            (Domain::Discrete(values), Coord::Index(k)) => {
                values.get(usize::try_from(k).ok()?).map(|v| v.text.clone())
            }
            (Domain::Categorical(values), Coord::Index(k)) => values.get(usize::try_from(k).ok()?).cloned(),
            (Domain::Discrete(_) | Domain::Categorical(_), Coord::Real(_)) => None,
        }
    }

    /// The coordinate of an assignment value, comparing numbers by value; `None` if the value
    /// is not in this parameter's domain.
    pub fn parse_value(&self, text: &str) -> Option<Coord> {
        match &self.domain {
            Domain::Double(d) => match &d.grid {
                Some(grid) => grid.index_of(text).map(Coord::Index),
                None => {
                    let x: f64 = text.trim().parse().ok()?;
                    x.is_finite().then_some(Coord::Real(x))
                }
            },
            Domain::Int(i) => i.index_of(text).map(Coord::Index),
            Domain::Discrete(values) => {
                let v = DiscreteValue::parse(text).ok()?;
                values
                    .iter()
                    .position(|x| x.same_number(&v))
                    .map(|k| Coord::Index(k as u128))
            }
            Domain::Categorical(values) => values
                .iter()
                .position(|x| x == text)
                .map(|k| Coord::Index(k as u128)),
        }
    }
}

/// The validated search space of an experiment.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchSpace {
    parameters: Vec<Parameter>,
    objective: Option<Objective>,
}

impl SearchSpace {
    /// Builds the space from `experiment.spec`, reporting every problem found.
    pub fn from_experiment(experiment: &pb::Experiment) -> Result<SearchSpace, SettingsError> {
        let Some(spec) = &experiment.spec else {
            return Err(SettingsError::new("experiment has no spec"));
        };
        let specs = spec
            .parameter_specs
            .as_ref()
            .map(|p| p.parameters.as_slice())
            .unwrap_or_default();
        let mut problems = Vec::new();
        if specs.is_empty() {
            problems.push("experiment has no parameters; spec.parameters needs at least one".into());
        }
        let mut names = HashSet::new();
        let mut parameters = Vec::with_capacity(specs.len());
        for (i, spec) in specs.iter().enumerate() {
            if spec.name.is_empty() {
                problems.push(format!("parameters[{i}] has no name"));
                continue;
            }
            if !names.insert(spec.name.as_str()) {
                problems.push(format!(
                    "parameter \"{}\" is defined more than once; parameter names must be unique",
                    spec.name
                ));
                continue;
            }
            match parse_parameter(spec) {
                Ok(p) => parameters.push(p),
                Err(mut errs) => problems.append(&mut errs),
            }
        }
        SettingsError::check(problems)?;
        let objective = spec.objective.as_ref().and_then(|o| {
            let direction = match pb::ObjectiveType::try_from(o.r#type).ok()? {
                pb::ObjectiveType::Minimize => Direction::Minimize,
                pb::ObjectiveType::Maximize => Direction::Maximize,
                pb::ObjectiveType::Unknown => return None,
            };
            Some(Objective {
                direction,
                metric_name: o.objective_metric_name.clone(),
            })
        });
        Ok(SearchSpace {
            parameters,
            objective,
        })
    }

    /// A space from already-built parameters (tests and benchmarks).
    pub fn new(parameters: Vec<Parameter>, objective: Option<Objective>) -> Self {
        SearchSpace {
            parameters,
            objective,
        }
    }

    /// The parameters, in the experiment's order.
    pub fn parameters(&self) -> &[Parameter] {
        &self.parameters
    }

    /// The objective, if the experiment gave a direction.
    pub fn objective(&self) -> Option<&Objective> {
        self.objective.as_ref()
    }

    /// The objective, or an error naming the algorithm that needs it.
    pub fn require_objective(&self, algorithm: &str) -> Result<&Objective, SettingsError> {
        self.objective.as_ref().ok_or_else(|| {
            SettingsError::new(format!(
                "algorithm {algorithm} needs objective.type minimize or maximize"
            ))
        })
    }

    /// The number of distinct points when every parameter is finite (saturating at
    /// `u128::MAX`); `None` if some double has no step.
    pub fn size(&self) -> Option<u128> {
        self.parameters
            .iter()
            .try_fold(1u128, |acc, p| Some(acc.saturating_mul(p.cardinality()?)))
    }

    /// True if every parameter is int, discrete, categorical or a stepped double.
    pub fn is_finite(&self) -> bool {
        self.size().is_some()
    }

    /// Assignments for a point (one coordinate per parameter, in order); `None` if the point
    /// does not fit the space.
    pub fn render(&self, point: &[Coord]) -> Option<Vec<pb::ParameterAssignment>> {
        if point.len() != self.parameters.len() {
            return None;
        }
        self.parameters
            .iter()
            .zip(point)
            .map(|(p, &c)| {
                Some(pb::ParameterAssignment {
                    name: p.name.clone(),
                    value: p.format(c)?,
                })
            })
            .collect()
    }

    /// The point a trial's assignments describe; `None` if a parameter is missing or its value
    /// is not in the space (for instance after the experiment's space was edited). Extra
    /// assignments are ignored.
    pub fn parse_assignments(&self, assignments: &[pb::ParameterAssignment]) -> Option<Vec<Coord>> {
        self.point_from(|name| {
            assignments
                .iter()
                .find(|a| a.name == name)
                .map(|a| a.value.as_str())
        })
    }

    /// [`SearchSpace::parse_assignments`] of a history trial's [`Assignments`].
    pub fn parse_point(&self, assignments: &Assignments) -> Option<Vec<Coord>> {
        self.point_from(|name| assignments.get(name))
    }

    fn point_from<'a>(&self, value_of: impl Fn(&str) -> Option<&'a str>) -> Option<Vec<Coord>> {
        self.parameters
            .iter()
            .map(|p| p.parse_value(value_of(&p.name)?))
            .collect()
    }

    /// The index vector of a finite point; `None` if some coordinate is real.
    pub fn indices(point: &[Coord]) -> Option<Vec<u128>> {
        point
            .iter()
            .map(|c| match c {
                Coord::Index(k) => Some(*k),
                Coord::Real(_) => None,
            })
            .collect()
    }

    /// The `c`-th point of a finite space in lexicographic order (the first parameter varies
    /// slowest). Spaces larger than `u128::MAX` only reach their first `u128::MAX` points.
    pub fn decode(&self, mut c: u128) -> Option<Vec<u128>> {
        let mut digits = vec![0u128; self.parameters.len()];
        for (digit, p) in digits.iter_mut().zip(&self.parameters).rev() {
            let radix = p.cardinality()?;
            *digit = c % radix;
            c /= radix;
        }
        Some(digits)
    }
}

/// A number field of `feasibleSpace`, with the error text for it.
fn number(name: &str, field: &str, text: &str) -> Result<Decimal, String> {
    if text.trim().is_empty() {
        return Err(format!("parameter \"{name}\": feasibleSpace.{field} is missing"));
    }
    text.parse::<Decimal>()
        .map_err(|e| format!("parameter \"{name}\": feasibleSpace.{field} \"{text}\" {e}"))
}

fn float(name: &str, field: &str, text: &str) -> Result<f64, String> {
    if text.trim().is_empty() {
        return Err(format!("parameter \"{name}\": feasibleSpace.{field} is missing"));
    }
    match text.trim().parse::<f64>() {
        Ok(x) if x.is_finite() => Ok(x),
        Ok(_) => Err(format!(
            "parameter \"{name}\": feasibleSpace.{field} \"{text}\" is not a finite number"
        )),
        Err(_) => Err(format!(
            "parameter \"{name}\": feasibleSpace.{field} \"{text}\" is not a number"
        )),
    }
}

fn integer(name: &str, field: &str, text: &str) -> Result<i64, String> {
    let d = number(name, field, text)?;
    if !d.is_integer() {
        return Err(format!(
            "parameter \"{name}\": feasibleSpace.{field} \"{text}\" is not an integer"
        ));
    }
    d.to_i64().ok_or_else(|| {
        format!("parameter \"{name}\": feasibleSpace.{field} \"{text}\" is out of the 64-bit range")
    })
}

fn distribution(name: &str, raw: i32) -> Result<Distribution, String> {
    match pb::Distribution::try_from(raw) {
        Ok(pb::Distribution::Unspecified | pb::Distribution::Uniform) => Ok(Distribution::Uniform),
        Ok(pb::Distribution::LogUniform) => Ok(Distribution::LogUniform),
        Ok(pb::Distribution::Normal) => Ok(Distribution::Normal),
        Ok(pb::Distribution::LogNormal) => Ok(Distribution::LogNormal),
        Err(_) => Err(format!(
            "parameter \"{name}\": feasibleSpace.distribution {raw} is unknown; use uniform, logUniform, normal or logNormal"
        )),
    }
}

/// Collects the `Err`s of several field parses.
fn errors<const N: usize>(results: [&Result<impl Sized, String>; N]) -> Vec<String> {
    results
        .into_iter()
        .filter_map(|r| r.as_ref().err().cloned())
        .collect()
}

fn parse_parameter(spec: &pb::ParameterSpec) -> Result<Parameter, Vec<String>> {
    let name = spec.name.as_str();
    let fs = spec.feasible_space.clone().unwrap_or_default();
    let domain = match pb::ParameterType::try_from(spec.parameter_type) {
        Ok(pb::ParameterType::Double) => Domain::Double(parse_double(name, &fs)?),
        Ok(pb::ParameterType::Int) => Domain::Int(parse_int(name, &fs)?),
        Ok(pb::ParameterType::Discrete) => Domain::Discrete(parse_discrete(name, &fs)?),
        Ok(pb::ParameterType::Categorical) => Domain::Categorical(parse_categorical(name, &fs)?),
        Ok(pb::ParameterType::UnknownType) | Err(_) => {
            return Err(vec![format!(
                "parameter \"{name}\": parameterType is unknown; use double, int, discrete or categorical"
            )]);
        }
    };
    Ok(Parameter {
        name: name.to_owned(),
        domain,
    })
}

fn check_bounds<T: PartialOrd + std::fmt::Display>(
    name: &str,
    min: T,
    max: T,
    dist: Distribution,
    min_positive: bool,
) -> Vec<String> {
    let mut problems = Vec::new();
    if min > max {
        problems.push(format!(
            "parameter \"{name}\": feasibleSpace.min {min} is greater than feasibleSpace.max {max}"
        ));
    }
    if dist.is_log() && !min_positive {
        problems.push(format!(
            "parameter \"{name}\": feasibleSpace.min {min} must be > 0 for distribution {} (it samples ln(value))",
            dist.katib_name()
        ));
    }
    problems
}

fn parse_double(name: &str, fs: &pb::FeasibleSpace) -> Result<DoubleSpace, Vec<String>> {
    let min = float(name, "min", &fs.min);
    let max = float(name, "max", &fs.max);
    let dist = distribution(name, fs.distribution);
    let mut problems = errors([&min, &max]);
    problems.extend(errors([&dist]));
    let (Ok(min), Ok(max), Ok(dist)) = (min, max, dist) else {
        return Err(problems);
    };
    let problems = check_bounds(name, min, max, dist, min > 0.0);
    if !problems.is_empty() {
        return Err(problems);
    }
    let grid = if fs.step.trim().is_empty() {
        None
    } else {
        let step = number(name, "step", &fs.step).map_err(|e| vec![e])?;
        if !step.is_positive() {
            return Err(vec![format!(
                "parameter \"{name}\": feasibleSpace.step \"{}\" must be > 0",
                fs.step
            )]);
        }
        let exact_min = number(name, "min", &fs.min);
        let exact_max = number(name, "max", &fs.max);
        let problems = errors([&exact_min, &exact_max]);
        let (Ok(exact_min), Ok(exact_max)) = (exact_min, exact_max) else {
            return Err(problems);
        };
        Some(DecimalGrid::new(exact_min, exact_max, step).ok_or_else(|| {
            vec![format!(
                "parameter \"{name}\": feasibleSpace min {}, max {} and step {} need too many digits to be stepped exactly (at most 38 significant digits)",
                fs.min, fs.max, fs.step
            )]
        })?)
    };
    Ok(DoubleSpace {
        min,
        max,
        distribution: dist,
        grid,
    })
}

fn parse_int(name: &str, fs: &pb::FeasibleSpace) -> Result<IntSpace, Vec<String>> {
    let min = integer(name, "min", &fs.min);
    let max = integer(name, "max", &fs.max);
    let step = if fs.step.trim().is_empty() {
        Ok(1)
    } else {
        integer(name, "step", &fs.step).and_then(|s| {
            if s >= 1 {
                Ok(s)
            } else {
                Err(format!(
                    "parameter \"{name}\": feasibleSpace.step \"{}\" must be >= 1",
                    fs.step
                ))
            }
        })
    };
    let dist = distribution(name, fs.distribution);
    let mut problems = errors([&min, &max, &step]);
    problems.extend(errors([&dist]));
    let (Ok(min), Ok(max), Ok(step), Ok(dist)) = (min, max, step, dist) else {
        return Err(problems);
    };
    let problems = check_bounds(name, min, max, dist, min > 0);
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(IntSpace {
        min,
        max,
        step,
        distribution: dist,
    })
}

fn parse_discrete(name: &str, fs: &pb::FeasibleSpace) -> Result<Vec<DiscreteValue>, Vec<String>> {
    if fs.list.is_empty() {
        return Err(vec![format!(
            "parameter \"{name}\": feasibleSpace.list is empty; a discrete parameter needs a list of numbers"
        )]);
    }
    let mut problems = Vec::new();
    let mut values: Vec<DiscreteValue> = Vec::with_capacity(fs.list.len());
    for (i, text) in fs.list.iter().enumerate() {
        match DiscreteValue::parse(text) {
            Ok(v) => {
                if !values.iter().any(|x| x.same_number(&v)) {
                    values.push(v);
                }
            }
            Err(why) => problems.push(format!(
                "parameter \"{name}\": feasibleSpace.list[{i}] \"{text}\" {why}"
            )),
        }
    }
    if problems.is_empty() {
        Ok(values)
    } else {
        Err(problems)
    }
}

fn parse_categorical(name: &str, fs: &pb::FeasibleSpace) -> Result<Vec<String>, Vec<String>> {
    if fs.list.is_empty() {
        return Err(vec![format!(
            "parameter \"{name}\": feasibleSpace.list is empty; a categorical parameter needs a list of values"
        )]);
    }
    let mut values: Vec<String> = Vec::with_capacity(fs.list.len());
    for v in &fs.list {
        if !values.contains(v) {
            values.push(v.clone());
        }
    }
    Ok(values)
}

/// Builders for experiments in tests across the crate.
#[cfg(test)]
pub(crate) mod testing {
    use katib_api::pb;

    /// A `SuggestRequest` for `algorithm` with these settings, parameters and trials.
    pub fn request_for(
        algorithm: &str,
        settings: &[(&str, &str)],
        params: Vec<pb::ParameterSpec>,
        trials: Vec<pb::Trial>,
        n: i32,
        total: i32,
    ) -> crate::SuggestRequest {
        crate::SuggestRequest::from_pb(&pb::GetSuggestionsRequest {
            experiment: Some(experiment(algorithm, settings, params)),
            trials,
            current_request_number: n,
            total_request_number: total,
        })
        .unwrap()
    }

    /// The values of each suggested assignment, in parameter order.
    pub fn values(s: &crate::Suggested) -> Vec<Vec<String>> {
        s.assignments
            .iter()
            .map(|a| a.iter().map(|p| p.value.clone()).collect())
            .collect()
    }

    /// The assignment values of a request trial, in its order.
    pub fn trial_values(t: &pb::Trial) -> Vec<String> {
        t.spec
            .as_ref()
            .and_then(|s| s.parameter_assignments.as_ref())
            .map(|a| a.assignments.iter().map(|a| a.value.clone()).collect())
            .unwrap_or_default()
    }

    /// A parameter spec.
    pub fn param(
        name: &str,
        kind: pb::ParameterType,
        min: &str,
        max: &str,
        step: &str,
        list: &[&str],
        dist: pb::Distribution,
    ) -> pb::ParameterSpec {
        pb::ParameterSpec {
            name: name.into(),
            parameter_type: kind as i32,
            feasible_space: Some(pb::FeasibleSpace {
                min: min.into(),
                max: max.into(),
                step: step.into(),
                list: list.iter().map(|s| s.to_string()).collect(),
                distribution: dist as i32,
            }),
        }
    }

    pub fn double(name: &str, min: &str, max: &str, step: &str) -> pb::ParameterSpec {
        param(
            name,
            pb::ParameterType::Double,
            min,
            max,
            step,
            &[],
            pb::Distribution::Unspecified,
        )
    }

    pub fn double_dist(
        name: &str,
        min: &str,
        max: &str,
        step: &str,
        dist: pb::Distribution,
    ) -> pb::ParameterSpec {
        param(name, pb::ParameterType::Double, min, max, step, &[], dist)
    }

    pub fn int(name: &str, min: &str, max: &str, step: &str) -> pb::ParameterSpec {
        param(
            name,
            pb::ParameterType::Int,
            min,
            max,
            step,
            &[],
            pb::Distribution::Unspecified,
        )
    }

    pub fn int_dist(
        name: &str,
        min: &str,
        max: &str,
        step: &str,
        dist: pb::Distribution,
    ) -> pb::ParameterSpec {
        param(name, pb::ParameterType::Int, min, max, step, &[], dist)
    }

    pub fn discrete(name: &str, list: &[&str]) -> pb::ParameterSpec {
        param(
            name,
            pb::ParameterType::Discrete,
            "",
            "",
            "",
            list,
            pb::Distribution::Unspecified,
        )
    }

    pub fn categorical(name: &str, list: &[&str]) -> pb::ParameterSpec {
        param(
            name,
            pb::ParameterType::Categorical,
            "",
            "",
            "",
            list,
            pb::Distribution::Unspecified,
        )
    }

    /// An experiment with these parameters, objective `maximize accuracy`, and the algorithm.
    pub fn experiment(
        algorithm: &str,
        settings: &[(&str, &str)],
        params: Vec<pb::ParameterSpec>,
    ) -> pb::Experiment {
        pb::Experiment {
            name: "exp".into(),
            spec: Some(pb::ExperimentSpec {
                parameter_specs: Some(pb::experiment_spec::ParameterSpecs { parameters: params }),
                objective: Some(pb::ObjectiveSpec {
                    r#type: pb::ObjectiveType::Maximize as i32,
                    goal: 0.0,
                    objective_metric_name: "accuracy".into(),
                    additional_metric_names: vec![],
                }),
                algorithm: Some(pb::AlgorithmSpec {
                    algorithm_name: algorithm.into(),
                    algorithm_settings: settings
                        .iter()
                        .map(|(k, v)| pb::AlgorithmSetting {
                            name: k.to_string(),
                            value: v.to_string(),
                        })
                        .collect(),
                }),
                early_stopping: None,
                parallel_trial_count: 3,
                max_trial_count: 12,
                nas_config: None,
            }),
        }
    }

    /// A trial with these assignments, a condition and optionally an accuracy.
    pub fn trial(
        name: &str,
        assignments: &[(&str, &str)],
        condition: pb::trial_status::TrialConditionType,
        accuracy: Option<&str>,
    ) -> pb::Trial {
        pb::Trial {
            name: name.into(),
            spec: Some(pb::TrialSpec {
                objective: None,
                parameter_assignments: Some(pb::trial_spec::ParameterAssignments {
                    assignments: assignments
                        .iter()
                        .map(|(k, v)| pb::ParameterAssignment {
                            name: k.to_string(),
                            value: v.to_string(),
                        })
                        .collect(),
                }),
                labels: Default::default(),
            }),
            status: Some(pb::TrialStatus {
                start_time: String::new(),
                completion_time: String::new(),
                condition: condition as i32,
                observation: accuracy.map(|a| pb::Observation {
                    metrics: vec![pb::Metric {
                        name: "accuracy".into(),
                        value: a.into(),
                    }],
                }),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;

    fn space(params: Vec<pb::ParameterSpec>) -> Result<SearchSpace, SettingsError> {
        SearchSpace::from_experiment(&experiment("random", &[], params))
    }

    fn values(p: &Parameter) -> Vec<String> {
        (0..p.cardinality().unwrap())
            .map(|k| p.format(Coord::Index(k)).unwrap())
            .collect()
    }

    #[test]
    fn builds_every_parameter_type() {
        let s = space(vec![
            double("lr", "0.001", "0.1", ""),
            double("m", "0.01", "0.05", "0.01"),
            int("layers", "1", "9", "2"),
            discrete("bs", &["16", "32", "32.0", "64"]),
            categorical("opt", &["sgd", "adam", "sgd"]),
        ])
        .unwrap();
        let p = s.parameters();
        assert_eq!(p[0].cardinality(), None);
        assert_eq!(values(&p[1]), ["0.01", "0.02", "0.03", "0.04", "0.05"]);
        assert_eq!(values(&p[2]), ["1", "3", "5", "7", "9"]);
        assert_eq!(values(&p[3]), ["16", "32", "64"]);
        assert_eq!(values(&p[4]), ["sgd", "adam"]);
        assert_eq!(s.size(), None);
        assert_eq!(
            s.objective(),
            Some(&Objective {
                direction: Direction::Maximize,
                metric_name: "accuracy".into()
            })
        );
    }

    #[test]
    fn stepped_doubles_are_exact_decimals() {
        let s = space(vec![double("x", "0.1", "0.3", "0.1")]).unwrap();
        assert_eq!(values(&s.parameters()[0]), ["0.1", "0.2", "0.3"]);
        let s = space(vec![double("x", "-1", "1", "0.25")]).unwrap();
        assert_eq!(
            values(&s.parameters()[0]),
            ["-1", "-0.75", "-0.5", "-0.25", "0", "0.25", "0.5", "0.75", "1"]
        );
        // The last value stays <= max.
        let s = space(vec![double("x", "0", "1", "0.3")]).unwrap();
        assert_eq!(values(&s.parameters()[0]), ["0", "0.3", "0.6", "0.9"]);
        assert_eq!(s.size(), Some(4));
    }

    #[test]
    fn int_step_defaults_to_one() {
        let s = space(vec![int("n", "-2", "2", "")]).unwrap();
        assert_eq!(values(&s.parameters()[0]), ["-2", "-1", "0", "1", "2"]);
    }

    #[test]
    fn parses_history_values_canonically() {
        let s = space(vec![
            double("m", "0.01", "0.05", "0.01"),
            int("n", "0", "10", "5"),
            discrete("d", &["0.5", "1"]),
            categorical("c", &["a", "b"]),
            double("lr", "0", "1", ""),
        ])
        .unwrap();
        let p = s.parameters();
        assert_eq!(p[0].parse_value("0.020"), Some(Coord::Index(1)));
        assert_eq!(p[0].parse_value("0.019999999999999997"), Some(Coord::Index(1)));
        assert_eq!(p[0].parse_value("0.015"), None);
        assert_eq!(p[0].parse_value("0.06"), None);
        assert_eq!(p[1].parse_value("10"), Some(Coord::Index(2)));
        assert_eq!(p[1].parse_value("5.0"), Some(Coord::Index(1)));
        assert_eq!(p[1].parse_value("3"), None);
        assert_eq!(p[2].parse_value("0.50"), Some(Coord::Index(0)));
        assert_eq!(p[2].parse_value("1.0"), Some(Coord::Index(1)));
        assert_eq!(p[3].parse_value("b"), Some(Coord::Index(1)));
        assert_eq!(p[3].parse_value("B"), None);
        assert_eq!(p[4].parse_value("0.25"), Some(Coord::Real(0.25)));
        let a = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(n, v)| pb::ParameterAssignment {
                    name: n.to_string(),
                    value: v.to_string(),
                })
                .collect::<Vec<_>>()
        };
        let point = s
            .parse_assignments(&a(&[
                ("c", "a"),
                ("m", "0.03"),
                ("n", "5"),
                ("d", "1"),
                ("lr", "0.5"),
                ("extra", "x"),
            ]))
            .unwrap();
        assert_eq!(
            point,
            [
                Coord::Index(2),
                Coord::Index(1),
                Coord::Index(1),
                Coord::Index(0),
                Coord::Real(0.5)
            ]
        );
        assert!(s.parse_assignments(&a(&[("m", "0.03")])).is_none());
        let rendered = s.render(&point).unwrap();
        assert_eq!(
            rendered.iter().map(|a| a.value.as_str()).collect::<Vec<_>>(),
            ["0.03", "5", "1", "a", "0.5"]
        );
    }

    #[test]
    fn decodes_lexicographically() {
        let s = space(vec![int("a", "0", "1", ""), categorical("b", &["x", "y", "z"])]).unwrap();
        assert_eq!(s.size(), Some(6));
        let all: Vec<_> = (0..6).map(|c| s.decode(c).unwrap()).collect();
        assert_eq!(all, [[0, 0], [0, 1], [0, 2], [1, 0], [1, 1], [1, 2]]);
    }

    #[test]
    fn reports_every_problem_naming_parameter_and_field() {
        let err = space(vec![
            double("lr", "abc", "0.1", ""),
            int("n", "1.5", "10", "0"),
            double("w", "5", "1", ""),
            double_dist("l", "0", "1", "", pb::Distribution::LogUniform),
            int_dist("k", "-1", "1", "", pb::Distribution::LogNormal),
            discrete("d", &["1", "x"]),
            categorical("c", &[]),
            double("s", "0", "1", "-0.1"),
            double("big", "0", "1e999", ""),
            double("lr", "0", "1", ""),
            param(
                "u",
                pb::ParameterType::UnknownType,
                "",
                "",
                "",
                &[],
                pb::Distribution::Uniform,
            ),
            double("e", "", "1", ""),
        ])
        .unwrap_err();
        let expected = [
            "parameter \"lr\": feasibleSpace.min \"abc\" is not a number",
            "parameter \"n\": feasibleSpace.min \"1.5\" is not an integer",
            "parameter \"n\": feasibleSpace.step \"0\" must be >= 1",
            "parameter \"w\": feasibleSpace.min 5 is greater than feasibleSpace.max 1",
            "parameter \"l\": feasibleSpace.min 0 must be > 0 for distribution logUniform (it samples ln(value))",
            "parameter \"k\": feasibleSpace.min -1 must be > 0 for distribution logNormal (it samples ln(value))",
            "parameter \"d\": feasibleSpace.list[1] \"x\" is not a number",
            "parameter \"c\": feasibleSpace.list is empty; a categorical parameter needs a list of values",
            "parameter \"s\": feasibleSpace.step \"-0.1\" must be > 0",
            "parameter \"big\": feasibleSpace.max \"1e999\" is not a finite number",
            "parameter \"lr\" is defined more than once; parameter names must be unique",
            "parameter \"u\": parameterType is unknown; use double, int, discrete or categorical",
            "parameter \"e\": feasibleSpace.min is missing",
        ];
        assert_eq!(err.problems(), expected);
    }

    #[test]
    fn rejects_an_empty_space() {
        let err = space(vec![]).unwrap_err();
        assert!(err.to_string().contains("no parameters"), "{err}");
        let err = SearchSpace::from_experiment(&pb::Experiment::default()).unwrap_err();
        assert_eq!(err.to_string(), "experiment has no spec");
    }
}

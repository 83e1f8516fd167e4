//! `hyperband`: Hyperband (Li, Jamieson, DeSalvo, Rostamizadeh, Talwalkar, *Hyperband: A Novel
//! Bandit-Based Approach to Hyperparameter Optimization*, JMLR 18 (2018)) with Katib's
//! settings, bracket sizes and state keys.
//!
//! # Settings
//! | setting | default | meaning |
//! |---|---|---|
//! | `r_l` | required | the largest resource one trial gets (a number >= 1) |
//! | `resource_name` | required | the int or double parameter that carries the resource (epochs, ...) |
//! | `eta` | 3 | the halving rate: each rung keeps the best `1/eta`; as Katib, `int(eta)`, and `<= 0` means 3 |
//! | `random_state` | from the experiment's name | seed of the sampled configurations |
//!
//! Validation is Katib's: `r_l` and `resource_name` must be set, `resource_name` must name a
//! parameter, and `parallelTrialCount` must be at least `eta^s_max` (the first bracket's
//! size), `s_max = floor(log_eta(r_l))`.
//!
//! # Schedule (Katib's)
//! One Hyperband iteration runs the brackets `s = s_max, ..., 0`. Bracket `s` samples
//! `n = ceil((s_max+1) eta^s / (s+1))` random configurations (the other parameters drawn as
//! `random` does) at resource `r = r_l eta^-s`; rung `i + 1` re-runs the best
//! `ceil(ceil(n eta^-i) / eta)` configurations of rung `i` at resource `r eta^(i+1)`. An int
//! resource parameter gets `floor` of the resource (Katib's `int()`), a double the number
//! itself. Failed and killed trials are never promoted; early-stopped ones with a value
//! compete with their value.
//!
//! # Differences from Katib, and why
//! Katib runs one rung at a time and answers a request with the rung's size whatever was
//! asked, so its controller rejects the reply ("The response contains unexpected trials",
//! kubeflow/katib#1168) and the experiment stalls or ends after the first bracket
//! (kubeflow/katib#1366). Here every request gets exactly `current_request_number`
//! assignments, taken in schedule order from the work that can run now: the next rung of a
//! bracket whose previous rung has finished, the configurations of later brackets (brackets
//! are independent, so they may overlap), and, when the whole iteration is out and only its
//! last rungs are still running, the next Hyperband iteration (as hpbandster and BOHB repeat
//! iterations). So no worker idles and no reply is short; the experiment ends by
//! `maxTrialCount` or its goal, which Katib's hyperband experiments set anyway. One
//! iteration has [`iteration_trials`] trials (23 for `r_l = 9`, `eta = 3`); a
//! `maxTrialCount` that is a multiple of it runs whole iterations when trials run in order.
//!
//! # State
//! Like Katib, the reply carries the state in `algorithm` settings (`eta`, `s_max`, `r_l`,
//! `b_l`, `r`, `n`, `current_s`, `current_i`, `resource_name`, `evaluating_trials`,
//! describing the oldest rung still in progress), which the controller merges into the
//! settings of the next request. The schedule itself is rebuilt from the request's trials on
//! every call: a configuration is drawn from a random stream seeded by `(seed, iteration,
//! bracket, index)` and recognised in the trials by its assignments, so a restarted service
//! continues where it was, and the state keys it receives are only checked, not trusted.

use std::collections::{HashMap, HashSet};

use katib_api::pb;

use crate::algorithm::{
    Algorithm, AlgorithmSettings, SuggestRequest, Suggested, TrialCondition, mix64, seeded_rng,
};
use crate::error::{SettingsError, SuggestError};
use crate::random::sample_coord;
use crate::space::{Coord, Direction, Domain, SearchSpace};
use crate::tpe::numeric::{hash_str, point_key};

/// Draws tried per configuration before a bracket settles for fewer (tiny finite spaces).
const DRAWS_PER_CONFIG: usize = 64;

/// The `hyperband` algorithm.
#[derive(Debug, Clone, Copy, Default)]
pub struct Hyperband;

impl Hyperband {
    /// Katib's name for this algorithm.
    pub const NAME: &'static str = "hyperband";
    /// The settings users give.
    pub const SETTINGS: &'static [&'static str] = &["r_l", "resource_name", "eta", "random_state"];
    /// The state keys the algorithm writes back (Katib's), also accepted as settings.
    pub const STATE: &'static [&'static str] = &[
        "eta",
        "s_max",
        "r_l",
        "b_l",
        "r",
        "n",
        "current_s",
        "current_i",
        "resource_name",
        "evaluating_trials",
    ];
}

/// The settings of `hyperband`.
#[derive(Debug, Clone, PartialEq)]
pub struct HyperbandSettings {
    /// The largest resource per trial.
    pub r_l: f64,
    /// The parameter carrying the resource.
    pub resource_name: String,
    /// The halving rate (>= 2).
    pub eta: u32,
    /// The seed.
    pub random_state: Option<u64>,
}

impl HyperbandSettings {
    /// Parses and checks the settings, reporting every problem.
    pub fn from_settings(settings: &AlgorithmSettings) -> Result<Self, SettingsError> {
        let mut problems: Vec<String> = Vec::new();
        let allowed: Vec<&str> = Hyperband::SETTINGS
            .iter()
            .chain(Hyperband::STATE)
            .copied()
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let mut allowed = allowed;
        allowed.sort_unstable();
        if let Err(e) = settings.check_known(&allowed) {
            problems.extend(e.problems().iter().cloned());
        }
        let r_l = match settings.get("r_l") {
            None => {
                problems.push(
                    "algorithm hyperband needs setting r_l (the largest resource one trial gets, e.g. the most epochs)".into(),
                );
                None
            }
            Some(raw) => match raw.trim().parse::<f64>() {
                Ok(v) if v >= 1.0 && v.is_finite() => Some(v),
                _ => {
                    problems.push(format!(
                        "setting r_l of algorithm hyperband: \"{raw}\" is not a number >= 1"
                    ));
                    None
                }
            },
        };
        let resource_name = match settings.get("resource_name") {
            Some(name) if !name.trim().is_empty() => Some(name.trim().to_owned()),
            _ => {
                problems.push(
                    "algorithm hyperband needs setting resource_name (the parameter that carries the resource, e.g. epochs)".into(),
                );
                None
            }
        };
        let eta = match settings.get("eta") {
            None => 3,
            Some(raw) => match raw.trim().parse::<f64>() {
                // Katib: int(float(eta)), and eta <= 0 means 3.
                Ok(v) if v.is_finite() && v.trunc() <= 0.0 => 3,
                Ok(v) if v.is_finite() && v.trunc() >= 2.0 && v.trunc() <= 1e6 => v.trunc() as u32,
                _ => {
                    problems.push(format!(
                        "setting eta of algorithm hyperband: \"{raw}\" is not an integer >= 2 (each rung keeps the best 1/eta)"
                    ));
                    3
                }
            },
        };
        let random_state = settings.random_state().unwrap_or_else(|e| {
            problems.extend(e.problems().iter().cloned());
            None
        });
        SettingsError::check(problems)?;
        Ok(HyperbandSettings {
            r_l: r_l.unwrap_or(1.0),
            resource_name: resource_name.unwrap_or_default(),
            eta,
            random_state,
        })
    }

    /// `s_max`: the largest `s` with `eta^s <= r_l` (Katib's `int(log(r_l)/log(eta))`, without
    /// its rounding slips at exact powers).
    pub fn s_max(&self) -> u32 {
        let mut s = 0;
        let mut p = f64::from(self.eta);
        while p <= self.r_l * (1.0 + 1e-12) {
            s += 1;
            p *= f64::from(self.eta);
        }
        s
    }
}

/// The trials of one Hyperband iteration with these settings.
pub fn iteration_trials(settings: &HyperbandSettings) -> usize {
    brackets(settings)
        .iter()
        .map(|b| b.sizes.iter().sum::<usize>())
        .sum()
}

/// One bracket's shape.
#[derive(Debug, Clone, PartialEq)]
struct Bracket {
    s: u32,
    /// Configurations sampled.
    n: usize,
    /// Resource of rung 0.
    r: f64,
    /// Size of each rung.
    sizes: Vec<usize>,
}

/// The brackets of one iteration, in Katib's order (`s_max` first).
fn brackets(settings: &HyperbandSettings) -> Vec<Bracket> {
    let s_max = settings.s_max();
    let eta = f64::from(settings.eta);
    (0..=s_max)
        .rev()
        .map(|s| {
            let n = (f64::from(s_max + 1) * eta.powi(s as i32) / f64::from(s + 1)).ceil() as usize;
            let r = settings.r_l * eta.powi(-(s as i32));
            let mut sizes = vec![n];
            for i in 0..s {
                let n_i = (n as f64 * eta.powi(-(i as i32))).ceil();
                sizes.push((n_i / eta).ceil() as usize);
            }
            Bracket { s, n, r, sizes }
        })
        .collect()
}

/// Checks what needs the space: the resource parameter, the parallel trial count.
fn check_experiment(
    space: &SearchSpace,
    settings: &HyperbandSettings,
    parallel: Option<u32>,
) -> Result<usize, SettingsError> {
    let mut problems = Vec::new();
    let index = space
        .parameters()
        .iter()
        .position(|p| p.name == settings.resource_name);
    match index.map(|i| &space.parameters()[i].domain) {
        None => problems.push(format!(
            "value of resource_name setting must be in parameters: \"{}\" is not a parameter of the experiment",
            settings.resource_name
        )),
        Some(Domain::Int(_) | Domain::Double(_)) => {}
        Some(_) => problems.push(format!(
            "resource_name \"{}\" of algorithm hyperband must name an int or double parameter",
            settings.resource_name
        )),
    }
    let first = brackets(settings).first().map(|b| b.n).unwrap_or(1);
    let needed = u32::try_from(first).unwrap_or(u32::MAX);
    if parallel.unwrap_or(0) < needed {
        problems.push(format!(
            "parallelTrialCount must be not less than {needed} (eta^s_max, the size of hyperband's first bracket for r_l {} and eta {}); it is {}",
            settings.r_l,
            settings.eta,
            parallel.unwrap_or(0)
        ));
    }
    SettingsError::check(problems)?;
    Ok(index.unwrap_or(0))
}

impl Algorithm for Hyperband {
    fn name(&self) -> &'static str {
        Hyperband::NAME
    }

    fn validate(&self, experiment: &pb::Experiment) -> Result<(), SettingsError> {
        let settings = HyperbandSettings::from_settings(&AlgorithmSettings::from_experiment(experiment));
        let space = SearchSpace::from_experiment(experiment).and_then(|s| {
            s.require_objective(Hyperband::NAME)?;
            Ok(s)
        });
        let (space, settings) = SettingsError::both(space, settings)?;
        let parallel = experiment
            .spec
            .as_ref()
            .and_then(|s| u32::try_from(s.parallel_trial_count).ok());
        check_experiment(&space, &settings, parallel).map(|_| ())
    }

    fn suggest(&self, request: &SuggestRequest) -> Result<Suggested, SuggestError> {
        let settings = HyperbandSettings::from_settings(&request.settings)?;
        let space = &request.space;
        let direction = space.require_objective(Hyperband::NAME)?.direction;
        // The parallel check is validation's job (Katib's controller validates once).
        let resource = check_experiment(space, &settings, Some(u32::MAX))?;
        let plan = Plan {
            space,
            resource,
            settings: &settings,
            brackets: brackets(&settings),
            seed: settings
                .random_state
                .unwrap_or_else(|| hash_str(&request.experiment_name)),
            trials: Trials::of(request, resource, direction),
        };
        let (slots, state) = plan.next_slots(request.n);
        let assignments = slots
            .iter()
            .map(|slot| plan.render(slot))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Suggested {
            exhausted: assignments.len() < request.n,
            assignments,
            algorithm_settings: state.settings(&settings),
        })
    }
}

/// A trial to run: a configuration at a resource.
#[derive(Debug, Clone)]
struct Slot {
    config: Vec<Coord>,
    resource: f64,
}

/// What the request's trials say about (configuration, resource) pairs.
struct Trials {
    by_key: HashMap<(Vec<u128>, u64), Status>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Status {
    Value(f64),
    Dead,
    Pending,
}

/// The key of a configuration: its coordinates with the resource's set to index 0.
fn config_key(config: &[Coord], resource: usize) -> Vec<u128> {
    let mut key = point_key(config);
    key[resource] = 0;
    key
}

fn resource_bits(r: f64) -> u64 {
    (r + 0.0).to_bits()
}

impl Trials {
    fn of(request: &SuggestRequest, resource: usize, direction: Direction) -> Trials {
        let sign = match direction {
            Direction::Minimize => 1.0,
            Direction::Maximize => -1.0,
        };
        let space = &request.space;
        let mut by_key = HashMap::new();
        for t in &request.history {
            let mut coords = Vec::with_capacity(space.parameters().len());
            let mut r = None;
            for (d, p) in space.parameters().iter().enumerate() {
                let Some(value) = t.assignments.get(&p.name) else {
                    break;
                };
                if d == resource {
                    r = value.trim().parse::<f64>().ok();
                    coords.push(Coord::Index(0));
                } else if let Some(c) = p.parse_value(value) {
                    coords.push(c);
                } else {
                    break;
                }
            }
            let (Some(r), true) = (r, coords.len() == space.parameters().len()) else {
                continue;
            };
            let status = match (t.condition, t.objective) {
                (TrialCondition::Succeeded | TrialCondition::Earlystopped, Some(v)) => {
                    Status::Value(sign * v)
                }
                (TrialCondition::Created | TrialCondition::Running, _) => Status::Pending,
                _ => Status::Dead,
            };
            let key = config_key(&coords, resource);
            let rank = |s: &Status| match s {
                Status::Value(_) => 2,
                Status::Pending => 1,
                Status::Dead => 0,
            };
            let entry = by_key.entry((key, resource_bits(r))).or_insert(status);
            if rank(&status) > rank(entry) {
                *entry = status;
            }
        }
        Trials { by_key }
    }
}

/// Katib's state keys for the oldest rung in progress.
#[derive(Debug, Clone, Copy, Default)]
struct State {
    current_s: i64,
    current_i: i64,
    n: usize,
    r: f64,
    evaluating_trials: usize,
}

impl State {
    fn settings(&self, settings: &HyperbandSettings) -> Vec<pb::AlgorithmSetting> {
        let s_max = settings.s_max();
        let kv = |name: &str, value: String| pb::AlgorithmSetting {
            name: name.into(),
            value,
        };
        vec![
            kv("eta", settings.eta.to_string()),
            kv("s_max", s_max.to_string()),
            kv("r_l", format!("{}", settings.r_l)),
            kv("b_l", format!("{}", f64::from(s_max + 1) * settings.r_l)),
            kv("r", format!("{}", self.r)),
            kv("n", self.n.to_string()),
            kv("current_s", self.current_s.to_string()),
            kv("current_i", self.current_i.to_string()),
            kv("resource_name", settings.resource_name.clone()),
            kv("evaluating_trials", self.evaluating_trials.to_string()),
        ]
    }
}

/// The schedule rebuilt from the trials.
struct Plan<'a> {
    space: &'a SearchSpace,
    resource: usize,
    settings: &'a HyperbandSettings,
    brackets: Vec<Bracket>,
    seed: u64,
    trials: Trials,
}

impl Plan<'_> {
    /// The resource of rung `i` of a bracket, as the trial gets it.
    fn resource_at(&self, bracket: &Bracket, i: usize) -> f64 {
        let r = bracket.r * f64::from(self.settings.eta).powi(i as i32);
        match &self.space.parameters()[self.resource].domain {
            Domain::Int(_) => r.floor().max(1.0),
            _ => r,
        }
    }

    /// The configurations sampled for a bracket of an iteration, avoiding every configuration
    /// sampled earlier in the schedule (a trial outside the schedule that happens to hold a
    /// configuration at the same resource counts as its run).
    fn sample_configs(
        &self,
        iteration: u64,
        bracket: &Bracket,
        used: &mut HashSet<Vec<u128>>,
    ) -> Vec<Vec<Coord>> {
        let mut out = Vec::with_capacity(bracket.n);
        let mut rng = seeded_rng(
            Some(self.seed),
            mix64(iteration.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ u64::from(bracket.s)),
        );
        let mut draws = 0;
        while out.len() < bracket.n && draws < DRAWS_PER_CONFIG * bracket.n {
            draws += 1;
            let config: Vec<Coord> = self
                .space
                .parameters()
                .iter()
                .enumerate()
                .map(|(d, p)| {
                    if d == self.resource {
                        Coord::Index(0)
                    } else {
                        sample_coord(p, &mut rng)
                    }
                })
                .collect();
            let key = config_key(&config, self.resource);
            if used.insert(key) {
                out.push(config);
            }
        }
        out
    }

    /// Up to `n` slots to run now, and the state of the oldest rung in progress.
    fn next_slots(&self, n: usize) -> (Vec<Slot>, State) {
        let mut slots = Vec::new();
        let mut state: Option<State> = None;
        let mut used: HashSet<Vec<u128>> = HashSet::new();
        // Each iteration samples this many configurations; bound the walk by what was run and
        // what is asked.
        let sampled: usize = self.brackets.iter().map(|b| b.n).sum();
        let max_iterations = 2 + (self.trials.by_key.len() + n) / sampled.max(1);
        for iteration in 0..=max_iterations as u64 {
            for bracket in &self.brackets {
                let mut members = self.sample_configs(iteration, bracket, &mut used);
                for i in 0..bracket.sizes.len() {
                    let resource = self.resource_at(bracket, i);
                    let mut complete = true;
                    let mut ranked: Vec<(f64, usize)> = Vec::new();
                    for (m, config) in members.iter().enumerate() {
                        let key = (config_key(config, self.resource), resource_bits(resource));
                        match self.trials.by_key.get(&key) {
                            Some(Status::Value(v)) => ranked.push((*v, m)),
                            Some(Status::Dead) => {}
                            Some(Status::Pending) => complete = false,
                            None => {
                                complete = false;
                                if slots.len() < n {
                                    slots.push(Slot {
                                        config: config.clone(),
                                        resource,
                                    });
                                }
                            }
                        }
                    }
                    if !complete {
                        state.get_or_insert(State {
                            current_s: i64::from(bracket.s),
                            current_i: i as i64,
                            n: bracket.n,
                            r: bracket.r,
                            evaluating_trials: members.len(),
                        });
                        break;
                    }
                    let Some(&keep) = bracket.sizes.get(i + 1) else {
                        break;
                    };
                    ranked.sort_by(|a, b| a.0.total_cmp(&b.0));
                    let mut next: Vec<usize> = ranked.iter().take(keep).map(|&(_, m)| m).collect();
                    next.sort_unstable();
                    members = next.into_iter().map(|m| members[m].clone()).collect();
                }
                if slots.len() >= n && state.is_some() {
                    return (slots, state.unwrap_or_default());
                }
            }
        }
        let state = state.unwrap_or(State {
            current_s: -1,
            current_i: 0,
            ..State::default()
        });
        (slots, state)
    }

    /// A slot's assignments.
    fn render(&self, slot: &Slot) -> Result<Vec<pb::ParameterAssignment>, SuggestError> {
        self.space
            .parameters()
            .iter()
            .enumerate()
            .map(|(d, p)| {
                let value = if d == self.resource {
                    Some(format!("{}", slot.resource))
                } else {
                    p.format(slot.config[d])
                };
                value
                    .map(|value| pb::ParameterAssignment {
                        name: p.name.clone(),
                        value,
                    })
                    .ok_or_else(|| SuggestError::Internal {
                        algorithm: Hyperband::NAME,
                        message: format!("sampled a value outside parameter {}", p.name),
                    })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::space::testing::*;
    use pb::trial_status::TrialConditionType as C;

    fn params() -> Vec<pb::ParameterSpec> {
        vec![
            double_dist("lr", "0.001", "0.1", "", pb::Distribution::LogUniform),
            int("epochs", "1", "9", ""),
            categorical("opt", &["sgd", "adam"]),
            double("m", "0.5", "0.9", "0.1"),
        ]
    }

    fn settings(extra: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut s = vec![
            ("r_l".to_string(), "9".to_string()),
            ("resource_name".to_string(), "epochs".to_string()),
        ];
        s.extend(extra.iter().map(|(a, b)| (a.to_string(), b.to_string())));
        s
    }

    fn exp(settings: &[(String, String)], parallel: i32) -> pb::Experiment {
        let refs: Vec<(&str, &str)> = settings.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        let mut e = experiment("hyperband", &refs, params());
        e.spec.as_mut().unwrap().parallel_trial_count = parallel;
        e
    }

    fn request(settings: &[(String, String)], trials: Vec<pb::Trial>, n: i32) -> SuggestRequest {
        SuggestRequest::from_pb(&pb::GetSuggestionsRequest {
            experiment: Some(exp(settings, 9)),
            trials,
            current_request_number: n,
            total_request_number: n,
        })
        .unwrap()
    }

    fn get<'a>(a: &'a [pb::ParameterAssignment], name: &str) -> &'a str {
        &a.iter().find(|a| a.name == name).unwrap().value
    }

    /// Accuracy: higher lr is better, more epochs help.
    fn accuracy(a: &[pb::ParameterAssignment]) -> f64 {
        let lr: f64 = get(a, "lr").parse().unwrap();
        let epochs: f64 = get(a, "epochs").parse().unwrap();
        lr.ln() + 0.1 * epochs
    }

    fn as_trial(i: usize, a: &[pb::ParameterAssignment], cond: C) -> pb::Trial {
        let pairs: Vec<(&str, &str)> = a.iter().map(|a| (a.name.as_str(), a.value.as_str())).collect();
        let acc = (cond == C::Succeeded).then(|| accuracy(a).to_string());
        trial(&format!("t{i}"), &pairs, cond, acc.as_deref())
    }

    #[test]
    fn validates_like_katib() {
        assert!(Hyperband.validate(&exp(&settings(&[]), 9)).is_ok());
        assert!(
            Hyperband
                .validate(&exp(&settings(&[("eta", "3"), ("random_state", "1")]), 9))
                .is_ok()
        );
        let err = Hyperband.validate(&exp(&settings(&[]), 3)).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("parallelTrialCount must be not less than 9"),
            "{err}"
        );
        let err = Hyperband.validate(&exp(&[], 9)).unwrap_err();
        assert_eq!(err.problems().len(), 2, "{err}");
        assert!(err.problems()[0].contains("needs setting r_l"));
        assert!(err.problems()[1].contains("needs setting resource_name"));
        let err = Hyperband
            .validate(&exp(
                &[
                    ("r_l".into(), "x".into()),
                    ("resource_name".into(), "epochs".into()),
                    ("eta".into(), "1".into()),
                    ("gamma".into(), "1".into()),
                ],
                9,
            ))
            .unwrap_err();
        assert_eq!(err.problems().len(), 3, "{err}");
        let mut s = settings(&[]);
        s[1].1 = "batch".into();
        let err = Hyperband.validate(&exp(&s, 9)).unwrap_err();
        assert!(err.to_string().contains("must be in parameters"), "{err}");
        s[1].1 = "opt".into();
        let err = Hyperband.validate(&exp(&s, 9)).unwrap_err();
        assert!(err.to_string().contains("int or double"), "{err}");
        // eta <= 0 means 3, as in Katib; the state keys are accepted.
        let mut s = settings(&[("eta", "-1"), ("current_s", "2"), ("evaluating_trials", "0")]);
        assert!(Hyperband.validate(&exp(&s, 9)).is_ok());
        s.push(("eta".into(), "2".into()));
        // eta 2: s_max 3, first bracket 8.
        assert!(Hyperband.validate(&exp(&s, 8)).is_ok());
    }

    #[test]
    fn brackets_match_katib() {
        let s = HyperbandSettings {
            r_l: 9.0,
            resource_name: "epochs".into(),
            eta: 3,
            random_state: None,
        };
        assert_eq!(s.s_max(), 2);
        let b = brackets(&s);
        assert_eq!(
            b.iter().map(|b| (b.s, b.n)).collect::<Vec<_>>(),
            [(2, 9), (1, 5), (0, 3)]
        );
        assert_eq!(b[0].sizes, [9, 3, 1]);
        assert_eq!(b[1].sizes, [5, 2]);
        assert_eq!(b[2].sizes, [3]);
        assert_eq!(iteration_trials(&s), 23);
        // Exact powers do not slip: log(243)/log(3) is 4.999... in floating point.
        let s = HyperbandSettings { r_l: 243.0, ..s };
        assert_eq!(s.s_max(), 5);
    }

    #[test]
    fn runs_brackets_with_promotions_and_never_waits() {
        let s = settings(&[("random_state", "4")]);
        let mut trials: Vec<pb::Trial> = Vec::new();
        let mut assignments: Vec<Vec<pb::ParameterAssignment>> = Vec::new();
        // First call: the whole first rung (9 configurations at 1 epoch).
        let out = Hyperband.suggest(&request(&s, vec![], 9)).unwrap();
        assert_eq!(out.assignments.len(), 9);
        assert!(out.assignments.iter().all(|a| get(a, "epochs") == "1"));
        let state: HashMap<String, String> = out
            .algorithm_settings
            .iter()
            .map(|s| (s.name.clone(), s.value.clone()))
            .collect();
        assert_eq!(state["current_s"], "2");
        assert_eq!(state["current_i"], "0");
        assert_eq!(state["evaluating_trials"], "9");
        assert_eq!(state["n"], "9");
        assert_eq!(state["s_max"], "2");
        assert_eq!(state["b_l"], "27");
        for a in &out.assignments {
            trials.push(as_trial(trials.len(), a, C::Running));
            assignments.push(a.clone());
        }
        // While they run, a free slot goes to the next bracket (3 epochs).
        let out = Hyperband.suggest(&request(&s, trials.clone(), 1)).unwrap();
        assert_eq!(get(&out.assignments[0], "epochs"), "3");
        // Finish the first rung (one fails): its best 3 move to 3 epochs.
        for (i, t) in trials.iter_mut().enumerate() {
            *t = as_trial(i, &assignments[i], if i == 4 { C::Failed } else { C::Succeeded });
        }
        let out = Hyperband.suggest(&request(&s, trials.clone(), 3)).unwrap();
        let mut best: Vec<&Vec<pb::ParameterAssignment>> = assignments
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != 4)
            .map(|(_, a)| a)
            .collect();
        best.sort_by(|a, b| accuracy(b).total_cmp(&accuracy(a)));
        assert!(out.assignments.iter().all(|a| get(a, "epochs") == "3"));
        let mut want: Vec<&str> = best.iter().take(3).map(|a| get(a, "lr")).collect();
        let mut got: Vec<&str> = out.assignments.iter().map(|a| get(a, "lr")).collect();
        want.sort_unstable();
        got.sort_unstable();
        assert_eq!(got, want);
    }

    #[test]
    fn a_full_run_follows_the_schedule_and_continues_after_a_restart() {
        // Sequential-ish: 9 slots, every trial finishes before the next call.
        let s = settings(&[("random_state", "8")]);
        let mut trials: Vec<pb::Trial> = Vec::new();
        let mut epochs: Vec<String> = Vec::new();
        let mut state: Vec<(String, String)> = Vec::new();
        while trials.len() < 23 {
            // The controller merges the returned state into the settings it sends.
            let mut merged = s.clone();
            for (k, v) in &state {
                match merged.iter_mut().find(|(a, _)| a == k) {
                    Some(e) => e.1 = v.clone(),
                    None => merged.push((k.clone(), v.clone())),
                }
            }
            let want = (23 - trials.len()).min(9);
            let out = Hyperband
                .suggest(&request(&merged, trials.clone(), want as i32))
                .unwrap();
            assert_eq!(out.assignments.len(), want);
            state = out
                .algorithm_settings
                .iter()
                .map(|s| (s.name.clone(), s.value.clone()))
                .collect();
            for a in &out.assignments {
                epochs.push(get(a, "epochs").to_string());
                trials.push(as_trial(trials.len(), a, C::Succeeded));
            }
        }
        let count = |e: &str| epochs.iter().filter(|x| *x == e).count();
        // Bracket 2: 9@1, 3@3, 1@9; bracket 1: 5@3, 2@9; bracket 0: 3@9.
        assert_eq!((count("1"), count("3"), count("9")), (9, 8, 6));
        // After the whole iteration the next one starts (never a short reply).
        let out = Hyperband.suggest(&request(&s, trials.clone(), 2)).unwrap();
        assert_eq!(out.assignments.len(), 2);
        assert!(out.assignments.iter().all(|a| get(a, "epochs") == "1"));
        // No configuration at one resource is ever repeated.
        let keys: HashSet<Vec<String>> = trials.iter().map(trial_values).collect();
        assert_eq!(keys.len(), 23);
    }

    #[test]
    fn double_resources_and_minimize() {
        let params = vec![double("x", "0", "1", ""), double("budget", "1", "27", "")];
        let mut e = experiment(
            "hyperband",
            &[("r_l", "27"), ("resource_name", "budget"), ("random_state", "2")],
            params,
        );
        let spec = e.spec.as_mut().unwrap();
        spec.parallel_trial_count = 27;
        spec.objective.as_mut().unwrap().r#type = pb::ObjectiveType::Minimize as i32;
        assert!(Hyperband.validate(&e).is_ok());
        let req = SuggestRequest::from_pb(&pb::GetSuggestionsRequest {
            experiment: Some(e),
            trials: vec![],
            current_request_number: 30,
            total_request_number: 30,
        })
        .unwrap();
        let out = Hyperband.suggest(&req).unwrap();
        assert_eq!(out.assignments.len(), 30);
        // 27 at 1, then 3 of the next bracket at 3.
        assert_eq!(out.assignments[0][1].value, "1");
        assert_eq!(out.assignments[29][1].value, "3");
    }
}

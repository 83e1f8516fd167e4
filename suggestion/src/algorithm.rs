//! The one trait every suggestion algorithm implements, and what it is given.
//!
//! An algorithm is stateless between calls: everything it knows comes in a [`SuggestRequest`]
//! (the space, the settings, every trial so far with its condition and objective value), as
//! with Katib's `GetSuggestions`. State an algorithm must carry between calls (Hyperband's
//! bracket, for instance) goes out in [`Suggested::algorithm_settings`]; Katib's controller
//! merges it into the Suggestion's `status.algorithmSettings` and sends it back in the
//! experiment's settings on the next call.
//!
//! Randomness is always injected and seeded deterministically when the user gives
//! `random_state` ([`seeded_rng`]).

use std::collections::HashSet;
use std::str::FromStr;
use std::sync::Arc;

use bytes::Bytes;
use katib_api::pb;
use rand::SeedableRng as _;

use crate::error::{SettingsError, SuggestError};
use crate::space::{Coord, SearchSpace};

/// The random number generator handed to algorithms: xoshiro256++, a named algorithm whose
/// output for a seed does not change between `rand` releases (unlike `StdRng`).
pub type AlgorithmRng = rand::rngs::Xoshiro256PlusPlus;

/// Katib's condition of a trial (the type of its last condition).
pub type TrialCondition = pb::trial_status::TrialConditionType;

/// A suggestion algorithm, known to Katib by [`Algorithm::name`].
pub trait Algorithm: Send + Sync {
    /// The Katib `algorithmName` this implements (`random`, `grid`, ...).
    fn name(&self) -> &'static str;

    /// Checks the experiment's search space and algorithm settings, reporting every problem.
    fn validate(&self, experiment: &pb::Experiment) -> Result<(), SettingsError>;

    /// Up to `request.n` new assignments. Fewer only when a finite space is used up, with
    /// [`Suggested::exhausted`] set.
    fn suggest(&self, request: &SuggestRequest) -> Result<Suggested, SuggestError>;
}

/// What an algorithm answers.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Suggested {
    /// One list of assignments (one per parameter, in the experiment's order) per new trial.
    pub assignments: Vec<Vec<pb::ParameterAssignment>>,
    /// True when fewer than `n` were returned because every point of the space is taken.
    pub exhausted: bool,
    /// Settings to persist in the Suggestion's `status.algorithmSettings` (usually empty).
    pub algorithm_settings: Vec<pb::AlgorithmSetting>,
}

/// A trial of the request, as algorithms see it.
#[derive(Debug, Clone, PartialEq)]
pub struct TrialRecord {
    /// The trial's name.
    pub name: String,
    /// Its assignments, as sent.
    pub assignments: Assignments,
    /// The point those assignments describe in the current space, or `None` if they do not
    /// fit it (a parameter missing or out of the space).
    pub point: Option<Vec<Coord>>,
    /// Its condition; running and pending trials are included.
    pub condition: TrialCondition,
    /// The objective metric's value, if observed and numeric.
    pub objective: Option<f64>,
}

/// A trial's parameter assignments as sent: `(name, value)` text pairs in request order.
///
/// The pairs are spans of one shared buffer (the request's own bytes when it came off the
/// wire, see [`crate::wire`]), so a long history costs one allocation per trial instead of two
/// per assignment.
#[derive(Clone, Default)]
pub struct Assignments {
    buf: Bytes,
    /// `[name_start, name_end, value_start, value_end]` into `buf`, each range valid UTF-8.
    spans: Vec<[u32; 4]>,
}

impl Assignments {
    /// Pairs copied into a buffer of their own.
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let mut buf = Vec::new();
        let mut spans = Vec::new();
        let push = |buf: &mut Vec<u8>, s: &str| {
            let start = buf.len() as u32;
            buf.extend_from_slice(s.as_bytes());
            [start, buf.len() as u32]
        };
        for (name, value) in pairs {
            let [ns, ne] = push(&mut buf, name);
            let [vs, ve] = push(&mut buf, value);
            spans.push([ns, ne, vs, ve]);
        }
        Assignments {
            buf: Bytes::from(buf),
            spans,
        }
    }

    /// Spans of `buf` checked to be UTF-8 by the caller (the wire decoder).
    pub(crate) fn from_spans(buf: Bytes, spans: Vec<[u32; 4]>) -> Self {
        Assignments { buf, spans }
    }

    fn text(&self, start: u32, end: u32) -> &str {
        // Spans were checked when made; this re-check is a few bytes and keeps the type safe.
        std::str::from_utf8(&self.buf[start as usize..end as usize]).unwrap_or_default()
    }

    /// Every `(name, value)` pair, in request order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.spans
            .iter()
            .map(|&[ns, ne, vs, ve]| (self.text(ns, ne), self.text(vs, ve)))
    }

    /// The value of the first assignment named `name` (as Katib matches assignments).
    pub fn get(&self, name: &str) -> Option<&str> {
        // Names compare as bytes: only the one value returned is re-checked as UTF-8.
        self.spans
            .iter()
            .find(|&&[ns, ne, _, _]| &self.buf[ns as usize..ne as usize] == name.as_bytes())
            .map(|&[_, _, vs, ve]| self.text(vs, ve))
    }

    /// The number of pairs.
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }
}

impl From<&[pb::ParameterAssignment]> for Assignments {
    fn from(assignments: &[pb::ParameterAssignment]) -> Self {
        Assignments::from_pairs(assignments.iter().map(|a| (a.name.as_str(), a.value.as_str())))
    }
}

impl PartialEq for Assignments {
    fn eq(&self, other: &Self) -> bool {
        self.iter().eq(other.iter())
    }
}

impl std::fmt::Debug for Assignments {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

/// The algorithm settings of an experiment (`spec.algorithm.algorithmSettings`, which
/// Katib's controller has already merged with the Suggestion's `status.algorithmSettings`).
///
/// A name given twice keeps its last value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AlgorithmSettings {
    algorithm: String,
    entries: Vec<(String, String)>,
}

impl AlgorithmSettings {
    /// The settings of `algorithm`.
    pub fn new(algorithm: &str, settings: &[pb::AlgorithmSetting]) -> Self {
        let mut entries: Vec<(String, String)> = Vec::with_capacity(settings.len());
        for s in settings {
            match entries.iter_mut().find(|(n, _)| *n == s.name) {
                Some(entry) => entry.1 = s.value.clone(),
                None => entries.push((s.name.clone(), s.value.clone())),
            }
        }
        AlgorithmSettings {
            algorithm: algorithm.to_owned(),
            entries,
        }
    }

    /// The settings in `experiment.spec.algorithm`.
    pub fn from_experiment(experiment: &pb::Experiment) -> Self {
        match experiment.spec.as_ref().and_then(|s| s.algorithm.as_ref()) {
            Some(a) => AlgorithmSettings::new(&a.algorithm_name, &a.algorithm_settings),
            None => AlgorithmSettings::default(),
        }
    }

    /// The algorithm's name.
    pub fn algorithm(&self) -> &str {
        &self.algorithm
    }

    /// The value of a setting.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every `(name, value)`, in first-seen order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// An error for every setting whose name is not in `allowed`.
    pub fn check_known(&self, allowed: &[&str]) -> Result<(), SettingsError> {
        let allowed_list = if allowed.is_empty() {
            "none".to_owned()
        } else {
            allowed.join(", ")
        };
        SettingsError::check(
            self.entries
                .iter()
                .filter(|(n, _)| !allowed.contains(&n.as_str()))
                .map(|(n, _)| {
                    format!(
                        "unknown setting {n} for algorithm {}; allowed: {allowed_list}",
                        self.algorithm
                    )
                })
                .collect(),
        )
    }

    /// A setting parsed as `T` and accepted by `valid`; `expected` describes valid values for
    /// the error ("an integer >= 0"). `Ok(None)` when the setting is absent.
    pub fn parse<T: FromStr>(
        &self,
        name: &str,
        expected: &str,
        valid: impl Fn(&T) -> bool,
    ) -> Result<Option<T>, SettingsError> {
        let Some(raw) = self.get(name) else {
            return Ok(None);
        };
        match raw.trim().parse::<T>() {
            Ok(v) if valid(&v) => Ok(Some(v)),
            _ => Err(SettingsError::new(format!(
                "setting {name} of algorithm {}: \"{raw}\" is not {expected}",
                self.algorithm
            ))),
        }
    }

    /// `random_state`: an integer >= 0, as in Katib.
    pub fn random_state(&self) -> Result<Option<u64>, SettingsError> {
        self.parse::<u64>("random_state", "an integer >= 0", |_| true)
    }
}

/// Everything an algorithm gets for one `GetSuggestions` call.
#[derive(Debug, Clone, PartialEq)]
pub struct SuggestRequest {
    /// The experiment's name.
    pub experiment_name: String,
    /// The validated search space.
    pub space: SearchSpace,
    /// The algorithm settings (not yet checked against the algorithm).
    pub settings: AlgorithmSettings,
    /// Every trial in the request, running ones included, in request order (shared, so the
    /// service can keep them between calls without copying).
    pub history: Vec<Arc<TrialRecord>>,
    /// `current_request_number`: how many new assignments are wanted now.
    pub n: usize,
    /// `total_request_number`: how many have been requested over the experiment so far.
    pub total_request_number: usize,
    /// `parallelTrialCount`, if set.
    pub parallel_trial_count: Option<u32>,
    /// `maxTrialCount`, if set.
    pub max_trial_count: Option<u32>,
}

/// The largest `current_request_number` served; a larger one is refused rather than letting
/// a single request allocate without bound.
pub const MAX_REQUEST_NUMBER: usize = 100_000;

impl SuggestRequest {
    /// Converts and validates a `GetSuggestionsRequest` (space, counts, history).
    pub fn from_pb(request: &pb::GetSuggestionsRequest) -> Result<Self, SuggestError> {
        Self::from_owned(request.clone())
    }

    /// [`SuggestRequest::from_pb`] that takes the request, so each trial's assignments and
    /// name move into the history instead of being copied (the history is most of a large
    /// request).
    pub fn from_owned(mut request: pb::GetSuggestionsRequest) -> Result<Self, SuggestError> {
        let experiment = request.experiment.take().ok_or_else(|| {
            SuggestError::InvalidRequest("GetSuggestionsRequest.experiment is missing".into())
        })?;
        let trials = std::mem::take(&mut request.trials);
        Self::build(
            experiment,
            request.current_request_number,
            request.total_request_number,
            |space| {
                Ok(trials
                    .into_iter()
                    .map(|t| Arc::new(TrialRecord::from_owned(t, space)))
                    .collect())
            },
        )
    }

    /// Checks the counts and the experiment, builds the space, then the history with
    /// `history` (shared by [`SuggestRequest::from_owned`] and the wire decoder).
    pub(crate) fn build(
        experiment: pb::Experiment,
        current_request_number: i32,
        total_request_number: i32,
        history: impl FnOnce(&SearchSpace) -> Result<Vec<Arc<TrialRecord>>, SuggestError>,
    ) -> Result<Self, SuggestError> {
        let spec = experiment.spec.as_ref().ok_or_else(|| {
            SuggestError::InvalidRequest("GetSuggestionsRequest.experiment.spec is missing".into())
        })?;
        let n = usize::try_from(current_request_number).map_err(|_| {
            SuggestError::InvalidRequest(format!(
                "current_request_number must be >= 0, got {current_request_number}"
            ))
        })?;
        if n > MAX_REQUEST_NUMBER {
            return Err(SuggestError::InvalidRequest(format!(
                "current_request_number {n} is larger than the {MAX_REQUEST_NUMBER} this service answers in one call"
            )));
        }
        let total_request_number = usize::try_from(total_request_number).map_err(|_| {
            SuggestError::InvalidRequest(format!(
                "total_request_number must be >= 0, got {total_request_number}"
            ))
        })?;
        let space = SearchSpace::from_experiment(&experiment)?;
        let history = history(&space)?;
        let positive = |v: i32| u32::try_from(v).ok().filter(|&v| v > 0);
        Ok(SuggestRequest {
            settings: AlgorithmSettings::from_experiment(&experiment),
            parallel_trial_count: positive(spec.parallel_trial_count),
            max_trial_count: positive(spec.max_trial_count),
            experiment_name: experiment.name,
            space,
            history,
            n,
            total_request_number,
        })
    }

    /// The index vectors of every history point in a finite space (trials whose assignments do
    /// not fit the space are left out).
    pub fn taken(&self) -> HashSet<Vec<u128>> {
        self.history
            .iter()
            .filter_map(|t| SearchSpace::indices(t.point.as_deref()?))
            .collect()
    }

    /// The RNG for this call: with `random_state`, seeded from it and the number of trials in
    /// the request, so a run is reproducible while successive calls differ; without it, from
    /// OS entropy.
    pub fn rng(&self, random_state: Option<u64>) -> AlgorithmRng {
        seeded_rng(random_state, self.history.len() as u64)
    }
}

impl TrialRecord {
    /// A request trial, with its point in `space` and its objective value.
    pub fn from_pb(trial: &pb::Trial, space: &SearchSpace) -> Self {
        Self::from_owned(trial.clone(), space)
    }

    /// [`TrialRecord::from_pb`] taking the trial.
    pub fn from_owned(trial: pb::Trial, space: &SearchSpace) -> Self {
        let assignments = trial
            .spec
            .as_ref()
            .and_then(|s| s.parameter_assignments.as_ref())
            .map(|a| Assignments::from(a.assignments.as_slice()))
            .unwrap_or_default();
        let status = trial.status.as_ref();
        let condition = status
            .and_then(|s| TrialCondition::try_from(s.condition).ok())
            .unwrap_or(TrialCondition::Unknown);
        let objective = match (space.objective(), status.and_then(|s| s.observation.as_ref())) {
            (Some(o), Some(obs)) => o.value_in(obs),
            _ => None,
        };
        TrialRecord {
            name: trial.name,
            point: space.parse_point(&assignments),
            assignments,
            condition,
            objective,
        }
    }
}

/// SplitMix64's output function: a bijective 64-bit mixer.
pub(crate) fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// `seed_from_u64(mix(random_state ^ mix(salt)))` when `random_state` is given, else an RNG
/// seeded from OS entropy.
pub fn seeded_rng(random_state: Option<u64>, salt: u64) -> AlgorithmRng {
    match random_state {
        Some(state) => AlgorithmRng::seed_from_u64(mix64(state ^ mix64(salt))),
        None => rand::make_rng(),
    }
}

/// The space and settings of an experiment, with every problem of either reported.
pub fn space_and_settings(
    experiment: &pb::Experiment,
) -> Result<(SearchSpace, AlgorithmSettings), SettingsError> {
    let space = SearchSpace::from_experiment(experiment);
    SettingsError::both(space, Ok(AlgorithmSettings::from_experiment(experiment)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::space::testing::*;
    use rand::RngExt as _;

    #[test]
    fn settings_keep_the_last_value_and_name_unknown_keys() {
        let s = AlgorithmSettings::new(
            "random",
            &[
                pb::AlgorithmSetting {
                    name: "random_state".into(),
                    value: "1".into(),
                },
                pb::AlgorithmSetting {
                    name: "gamma".into(),
                    value: "0.5".into(),
                },
                pb::AlgorithmSetting {
                    name: "random_state".into(),
                    value: "7".into(),
                },
            ],
        );
        assert_eq!(s.random_state().unwrap(), Some(7));
        assert_eq!(
            s.check_known(&["random_state"]).unwrap_err().to_string(),
            "unknown setting gamma for algorithm random; allowed: random_state"
        );
        let bad = AlgorithmSettings::new(
            "grid",
            &[pb::AlgorithmSetting {
                name: "random_state".into(),
                value: "-3".into(),
            }],
        );
        assert_eq!(
            bad.random_state().unwrap_err().to_string(),
            "setting random_state of algorithm grid: \"-3\" is not an integer >= 0"
        );
    }

    #[test]
    fn request_conversion_checks_counts_and_reads_history() {
        use pb::trial_status::TrialConditionType as C;
        let exp = experiment("random", &[], vec![int("n", "1", "3", "")]);
        let mut req = pb::GetSuggestionsRequest {
            experiment: Some(exp),
            trials: vec![
                trial("t1", &[("n", "2")], C::Succeeded, Some("0.9")),
                trial("t2", &[("n", "7")], C::Running, None),
                trial("t3", &[("n", "1")], C::Succeeded, Some("unavailable")),
            ],
            current_request_number: 2,
            total_request_number: 5,
        };
        let r = SuggestRequest::from_pb(&req).unwrap();
        assert_eq!((r.n, r.total_request_number), (2, 5));
        assert_eq!(r.max_trial_count, Some(12));
        assert_eq!(r.history[0].objective, Some(0.9));
        assert_eq!(r.history[0].point, Some(vec![Coord::Index(1)]));
        assert_eq!(r.history[1].point, None);
        assert_eq!(r.history[1].condition, C::Running);
        assert_eq!(r.history[2].objective, None);
        assert_eq!(r.taken(), HashSet::from([vec![1], vec![0]]));

        req.current_request_number = -1;
        let err = SuggestRequest::from_pb(&req).unwrap_err();
        assert_eq!(err.to_string(), "current_request_number must be >= 0, got -1");
        req.current_request_number = 1;
        req.experiment.as_mut().unwrap().spec = None;
        assert!(matches!(
            SuggestRequest::from_pb(&req),
            Err(SuggestError::InvalidRequest(_))
        ));
        req.experiment = None;
        assert!(matches!(
            SuggestRequest::from_pb(&req),
            Err(SuggestError::InvalidRequest(_))
        ));
    }

    #[test]
    fn seeding_is_deterministic_and_salted() {
        let draw = |state, salt| seeded_rng(Some(state), salt).random::<u64>();
        assert_eq!(draw(42, 3), draw(42, 3));
        assert_ne!(draw(42, 3), draw(42, 4));
        assert_ne!(draw(42, 3), draw(43, 3));
    }
}

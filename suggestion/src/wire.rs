//! `GetSuggestionsRequest` decoded in one pass from its wire bytes into a [`SuggestRequest`].
//!
//! A request carries the whole trial history, so at 1,000 trials it is ~300 KB and most of a
//! call's cost was prost building ~20 heap objects per trial that the conversion then read
//! once and dropped. Here only the small `experiment` goes through prost. Each trial is walked
//! in place: its assignments stay spans of the request buffer ([`Assignments`]), values are
//! parsed straight into the trial's point, and only the objective metric's value is read.
//! Fields no algorithm uses (start and completion times, labels, the trial's objective spec)
//! are skipped unread, so, unlike prost, invalid UTF-8 inside them is not an error.
//!
//! Otherwise the result equals prost's decode followed by [`SuggestRequest::from_owned`]
//! (tested against it below): the last occurrence of a scalar wins, repeated fields and
//! repeated occurrences of a message field merge in order, unknown fields are skipped.
//! Malformed bytes give `INVALID_ARGUMENT` naming the byte offset.

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use katib_api::pb;
use prost::Message as _;

use crate::algorithm::{Assignments, SuggestRequest, TrialCondition, TrialRecord};
use crate::error::SuggestError;
use crate::space::{Objective, SearchSpace};

/// Decodes a serialized `GetSuggestionsRequest`. With a `cache`, trials whose bytes equal
/// those of the same experiment's previous request are taken from it instead of decoded.
pub fn decode_request(buf: Bytes, cache: Option<&HistoryCache>) -> Result<SuggestRequest, SuggestError> {
    let mut experiment: Option<pb::Experiment> = None;
    let mut trials: Vec<Range<usize>> = Vec::new();
    let (mut current, mut total) = (0i32, 0i32);
    let mut r = Reader::new(&buf, 0..buf.len());
    while let Some((field, wire)) = r.key()? {
        match (field, wire) {
            (1, LEN) => {
                let range = r.len_delimited()?;
                experiment
                    .get_or_insert_with(Default::default)
                    .merge(&buf[range.clone()])
                    .map_err(|e| malformed(range.start, &format!("experiment: {e}")))?;
            }
            (2, LEN) => trials.push(r.len_delimited()?),
            // int32 on the wire is a sign-extended varint; truncation is protobuf's rule.
            (4, VARINT) => current = r.varint()? as i32,
            (5, VARINT) => total = r.varint()? as i32,
            (1 | 2 | 4 | 5, _) => return Err(r.wrong_type(field, wire).into()),
            _ => r.skip(field, wire)?,
        }
    }
    let experiment = experiment
        .ok_or_else(|| SuggestError::InvalidRequest("GetSuggestionsRequest.experiment is missing".into()))?;
    let name = experiment.name.clone();
    SuggestRequest::build(experiment, current, total, |space| {
        let previous = cache.and_then(|c| c.take(&name)).filter(|p| p.space == *space);
        let decoded = decode_trials(&buf, &trials, space, previous.as_ref())?;
        let history = decoded.iter().map(|(_, t)| Arc::clone(t)).collect();
        if let Some(cache) = cache {
            cache.put(
                name,
                Cached {
                    space: space.clone(),
                    trials: decoded,
                },
            );
        }
        Ok(history)
    })
}

/// The decoded history of the last request of a few experiments, so the next request (the
/// same history plus a few new or changed trials, in Katib's controller and ours) decodes only
/// what changed. Entries are matched by position and exact bytes, and only while the search
/// space is the same; the least recently used are dropped past
/// [`HistoryCache::MAX_EXPERIMENTS`] experiments or [`HistoryCache::MAX_TRIALS`] trials.
#[derive(Debug, Default)]
pub struct HistoryCache {
    entries: std::sync::Mutex<std::collections::VecDeque<(String, Cached)>>,
}

/// A trial's own wire bytes and its record.
type Kept = (Bytes, Arc<TrialRecord>);

#[derive(Debug)]
struct Cached {
    space: SearchSpace,
    /// Each trial's own wire bytes and its record.
    trials: Vec<Kept>,
}

impl HistoryCache {
    /// Experiments kept.
    pub const MAX_EXPERIMENTS: usize = 8;
    /// Trials kept over all experiments (~1 KB each).
    pub const MAX_TRIALS: usize = 50_000;

    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// Removes and returns an experiment's entry: a concurrent request for the same
    /// experiment decodes everything rather than waiting.
    fn take(&self, experiment: &str) -> Option<Cached> {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let at = entries.iter().position(|(name, _)| name == experiment)?;
        entries.remove(at).map(|(_, cached)| cached)
    }

    fn put(&self, experiment: String, cached: Cached) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.retain(|(name, _)| *name != experiment);
        entries.push_front((experiment, cached));
        entries.truncate(Self::MAX_EXPERIMENTS);
        while entries.len() > 1
            && entries.iter().map(|(_, c)| c.trials.len()).sum::<usize>() > Self::MAX_TRIALS
        {
            entries.pop_back();
        }
        if entries
            .front()
            .is_some_and(|(_, c)| c.trials.len() > Self::MAX_TRIALS)
        {
            entries.clear();
        }
    }
}

/// Histories with at least this many trials to decode are decoded on several threads.
const PARALLEL_FROM: usize = 256;

/// The history, in order, each trial with its own copy of its bytes (so a kept record does not
/// pin the whole request buffer). Trials equal to `previous`'s at the same position are
/// reused. Many left to decode are split into contiguous chunks on scoped threads (up to the
/// cores available, at most 4): trials are independent, and while a caller waits for its
/// reply the other cores of a small machine are usually idle.
fn decode_trials(
    buf: &Bytes,
    trials: &[Range<usize>],
    space: &SearchSpace,
    previous: Option<&Cached>,
) -> Result<Vec<Kept>, Fault> {
    let mut out: Vec<Option<Kept>> = Vec::with_capacity(trials.len());
    let mut misses: Vec<usize> = Vec::new();
    for (i, range) in trials.iter().enumerate() {
        match previous.and_then(|p| p.trials.get(i)) {
            Some((bytes, record)) if bytes[..] == buf[range.clone()] => {
                out.push(Some((bytes.clone(), Arc::clone(record))));
            }
            _ => {
                out.push(None);
                misses.push(i);
            }
        }
    }
    let decode = |indices: &[usize]| {
        let mut first = Vec::new();
        indices
            .iter()
            .map(|&i| {
                let range = trials[i].clone();
                let own = Bytes::copy_from_slice(&buf[range.clone()]);
                decode_trial(&own, space, &mut first)
                    .map(|record| (own, Arc::new(record)))
                    // Offsets in faults are the request's, not the trial's.
                    .map_err(|f| Fault {
                        at: f.at + range.start,
                        kind: f.kind,
                    })
            })
            .collect::<Result<Vec<_>, Fault>>()
    };
    // Asked once: `available_parallelism` reads the cgroup files on every call (three opens).
    static THREADS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    let threads =
        || *THREADS.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get().min(4)));
    let decoded: Vec<Result<Vec<Kept>, Fault>> = if misses.len() < PARALLEL_FROM || threads() < 2 {
        vec![decode(&misses)]
    } else {
        let size = misses.len().div_ceil(threads());
        std::thread::scope(|scope| {
            let mut pieces = misses.chunks(size);
            let mine = pieces.next().unwrap_or_default();
            let others: Vec<_> = pieces.map(|part| scope.spawn(move || decode(part))).collect();
            let mut parts = vec![decode(mine)];
            // A panic in a decoding thread is re-raised here, as it would be without threads.
            parts.extend(
                others
                    .into_iter()
                    .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))),
            );
            parts
        })
    };
    let mut slots = misses.into_iter();
    for part in decoded {
        // The first fault in request order wins, as in a sequential decode.
        for trial in part? {
            if let Some(i) = slots.next() {
                out[i] = Some(trial);
            }
        }
    }
    Ok(out.into_iter().flatten().collect())
}

const VARINT: u8 = 0;
const I64: u8 = 1;
const LEN: u8 = 2;
const I32: u8 = 5;

fn malformed(at: usize, what: &str) -> SuggestError {
    SuggestError::InvalidRequest(format!(
        "GetSuggestionsRequest is not valid protobuf at byte {at}: {what}"
    ))
}

/// What is wrong with the bytes, and where. Small and `Copy` so the hot path's `Result`s
/// stay in registers; it becomes a [`SuggestError`] once, at the end.
#[derive(Debug, Clone, Copy)]
struct Fault {
    at: usize,
    kind: FaultKind,
}

#[derive(Debug, Clone, Copy)]
enum FaultKind {
    TruncatedVarint,
    LongVarint,
    FieldNumber,
    Length,
    TruncatedFixed,
    WireType { field: u32, wire: u8 },
    NotUtf8,
}

impl From<Fault> for SuggestError {
    fn from(fault: Fault) -> Self {
        let what = match fault.kind {
            FaultKind::TruncatedVarint => "truncated varint".to_owned(),
            FaultKind::LongVarint => "varint longer than 10 bytes".to_owned(),
            FaultKind::FieldNumber => "field number 0 or too large".to_owned(),
            FaultKind::Length => "length runs past the end of the message".to_owned(),
            FaultKind::TruncatedFixed => "truncated fixed-width field".to_owned(),
            FaultKind::WireType { field, wire } => format!("field {field} has wire type {wire}"),
            FaultKind::NotUtf8 => "string field is not UTF-8".to_owned(),
        };
        malformed(fault.at, &what)
    }
}

/// A cursor over one message's bytes, `buf[pos..end]`; positions are absolute in `buf`.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    end: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8], range: Range<usize>) -> Self {
        Reader {
            buf,
            pos: range.start,
            end: range.end.min(buf.len()),
        }
    }

    fn fault(&self, kind: FaultKind) -> Fault {
        Fault { at: self.pos, kind }
    }

    #[inline]
    fn byte(&mut self) -> Option<u8> {
        if self.pos < self.end {
            let b = self.buf[self.pos];
            self.pos += 1;
            Some(b)
        } else {
            None
        }
    }

    #[inline]
    fn varint(&mut self) -> Result<u64, Fault> {
        let start = self.pos;
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let Some(byte) = self.byte() else {
                return Err(Fault {
                    at: start,
                    kind: FaultKind::TruncatedVarint,
                });
            };
            value |= u64::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                return Ok(value);
            }
        }
        Err(Fault {
            at: start,
            kind: FaultKind::LongVarint,
        })
    }

    /// The next field's number and wire type, or `None` at the end of the message.
    #[inline]
    fn key(&mut self) -> Result<Option<(u32, u8)>, Fault> {
        if self.pos >= self.end {
            return Ok(None);
        }
        let at = self.pos;
        let key = self.varint()?;
        match u32::try_from(key >> 3) {
            Ok(field) if field > 0 => Ok(Some((field, (key & 7) as u8))),
            _ => Err(Fault {
                at,
                kind: FaultKind::FieldNumber,
            }),
        }
    }

    #[inline]
    fn len_delimited(&mut self) -> Result<Range<usize>, Fault> {
        let at = self.pos;
        let len = self.varint()?;
        let start = self.pos;
        match usize::try_from(len).ok().and_then(|len| start.checked_add(len)) {
            Some(end) if end <= self.end => {
                self.pos = end;
                Ok(start..end)
            }
            _ => Err(Fault {
                at,
                kind: FaultKind::Length,
            }),
        }
    }

    fn advance(&mut self, n: usize) -> Result<(), Fault> {
        if self.end - self.pos < n {
            return Err(self.fault(FaultKind::TruncatedFixed));
        }
        self.pos += n;
        Ok(())
    }

    fn skip(&mut self, field: u32, wire: u8) -> Result<(), Fault> {
        match wire {
            VARINT => self.varint().map(drop),
            I64 => self.advance(8),
            LEN => self.len_delimited().map(drop),
            I32 => self.advance(4),
            _ => Err(self.wrong_type(field, wire)),
        }
    }

    fn wrong_type(&self, field: u32, wire: u8) -> Fault {
        self.fault(FaultKind::WireType { field, wire })
    }
}

/// A (sub-)message's fields, each handed to `f` with a reader positioned after its key.
#[inline]
fn walk<'a>(
    buf: &'a [u8],
    range: Range<usize>,
    mut f: impl FnMut(&mut Reader<'a>, u32, u8) -> Result<(), Fault>,
) -> Result<(), Fault> {
    let mut r = Reader::new(buf, range);
    while let Some((field, wire)) = r.key()? {
        f(&mut r, field, wire)?;
    }
    Ok(())
}

/// Reads a length-delimited field (a string or a sub-message): its range, or an error for
/// the wrong wire type.
#[inline]
fn bytes(r: &mut Reader<'_>, field: u32, wire: u8) -> Result<Range<usize>, Fault> {
    if wire != LEN {
        return Err(r.wrong_type(field, wire));
    }
    r.len_delimited()
}

use bytes as sub;

fn span(range: &Range<usize>) -> [u32; 2] {
    // Requests are capped at i32::MAX bytes by the server, so offsets fit.
    [range.start as u32, range.end as u32]
}

/// One `Trial` (name = 1, spec = 2, status = 3) from its own bytes. `first` is scratch space
/// reused across trials.
fn decode_trial(
    buf: &Bytes,
    space: &SearchSpace,
    first: &mut Vec<Option<Range<usize>>>,
) -> Result<TrialRecord, Fault> {
    let objective = space.objective();
    let parameters = space.parameters();
    // The value range of the first assignment of each parameter (Katib matches the first).
    first.clear();
    first.resize(parameters.len(), None);
    let mut name = 0..0;
    let mut spans: Vec<[u32; 4]> = Vec::with_capacity(parameters.len());
    // `None` until a status is seen: a trial without one is Unknown, as in `from_owned`.
    let mut condition: Option<i32> = None;
    let mut objective_value: Option<Range<usize>> = None;
    walk(buf, 0..buf.len(), |r, field, wire| match field {
        1 => {
            name = bytes(r, field, wire)?;
            match std::str::from_utf8(&buf[name.clone()]) {
                Ok(_) => Ok(()),
                Err(_) => Err(Fault {
                    at: name.start,
                    kind: FaultKind::NotUtf8,
                }),
            }
        }
        2 => walk(buf, sub(r, field, wire)?, |r, field, wire| match field {
            // TrialSpec.parameter_assignments
            3 => walk(buf, sub(r, field, wire)?, |r, field, wire| match field {
                1 => {
                    let (n, v) = pair(buf, sub(r, field, wire)?)?;
                    let name = &buf[n.clone()];
                    // Assignments usually come in the parameters' order: try that one first.
                    let k = match parameters.get(spans.len()) {
                        Some(p) if p.name.as_bytes() == name => Some(spans.len()),
                        _ => parameters.iter().position(|p| p.name.as_bytes() == name),
                    };
                    if let Some(k) = k {
                        first[k].get_or_insert_with(|| v.clone());
                    }
                    let ([ns, ne], [vs, ve]) = (span(&n), span(&v));
                    spans.push([ns, ne, vs, ve]);
                    Ok(())
                }
                _ => r.skip(field, wire),
            }),
            _ => r.skip(field, wire),
        }),
        3 => {
            condition.get_or_insert(0);
            walk(buf, sub(r, field, wire)?, |r, field, wire| match field {
                3 if wire == VARINT => r.varint().map(|c| condition = Some(c as i32)),
                3 => Err(r.wrong_type(field, wire)),
                // TrialStatus.observation: the last metric with the objective's name counts.
                4 => walk(buf, sub(r, field, wire)?, |r, field, wire| match field {
                    1 => {
                        let (n, v) = pair(buf, sub(r, field, wire)?)?;
                        if objective.is_some_and(|o| buf[n] == *o.metric_name.as_bytes()) {
                            objective_value = Some(v);
                        }
                        Ok(())
                    }
                    _ => r.skip(field, wire),
                }),
                _ => r.skip(field, wire),
            })
        }
        _ => r.skip(field, wire),
    })?;
    let text = |range: &Range<usize>| std::str::from_utf8(&buf[range.clone()]).ok();
    let mut point = Vec::with_capacity(parameters.len());
    for (p, v) in parameters.iter().zip(first.iter()) {
        match v.as_ref().and_then(text).and_then(|v| p.parse_value(v)) {
            Some(c) => point.push(c),
            None => break,
        }
    }
    let point = (point.len() == parameters.len()).then_some(point);
    Ok(TrialRecord {
        name: text(&name).unwrap_or_default().to_owned(),
        point,
        assignments: Assignments::from_spans(buf.clone(), spans),
        condition: condition.map_or(TrialCondition::Unknown, |c| {
            TrialCondition::try_from(c).unwrap_or(TrialCondition::Unknown)
        }),
        objective: objective_value.and_then(|v| Objective::parse(text(&v)?)),
    })
}

/// A `ParameterAssignment` or `Metric` (name = 1, value = 2, both strings): their byte
/// ranges, the last occurrence of each winning. Not checked as UTF-8 here: names are compared
/// as bytes with names known to be UTF-8, and a value is checked when it is parsed.
#[inline]
fn pair(buf: &[u8], range: Range<usize>) -> Result<(Range<usize>, Range<usize>), Fault> {
    let (mut name, mut value) = (0..0, 0..0);
    walk(buf, range, |r, field, wire| match field {
        1 => bytes(r, field, wire).map(|range| name = range),
        2 => bytes(r, field, wire).map(|range| value = range),
        _ => r.skip(field, wire),
    })?;
    Ok((name, value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::space::testing::*;
    use pb::trial_status::TrialConditionType as C;
    use rand::{RngExt as _, SeedableRng as _};

    fn both(request: &pb::GetSuggestionsRequest) -> (SuggestRequest, SuggestRequest) {
        let wire = decode_request(Bytes::from(request.encode_to_vec()), None).expect("wire decode");
        let reference = SuggestRequest::from_pb(request).expect("prost decode");
        (wire, reference)
    }

    fn assert_same(wire: &SuggestRequest, reference: &SuggestRequest) {
        assert_eq!(wire.history, reference.history);
        assert_eq!(wire.experiment_name, reference.experiment_name);
        assert_eq!(wire.space, reference.space);
        assert_eq!(
            wire.settings.iter().collect::<Vec<_>>(),
            reference.settings.iter().collect::<Vec<_>>()
        );
        assert_eq!(
            (
                wire.n,
                wire.total_request_number,
                wire.parallel_trial_count,
                wire.max_trial_count
            ),
            (
                reference.n,
                reference.total_request_number,
                reference.parallel_trial_count,
                reference.max_trial_count
            )
        );
    }

    fn space_params() -> Vec<pb::ParameterSpec> {
        vec![
            double("lr", "0.001", "0.1", ""),
            double("m", "0.1", "0.9", "0.1"),
            int("layers", "1", "5", ""),
            categorical("opt", &["sgd", "adam"]),
        ]
    }

    #[test]
    fn equals_prost_then_from_owned_on_random_histories() {
        let conditions = [
            C::Created,
            C::Running,
            C::Succeeded,
            C::Failed,
            C::Earlystopped,
            C::Killed,
        ];
        let mut rng = rand::rngs::Xoshiro256PlusPlus::seed_from_u64(7);
        for case in 0..200 {
            let mut trials = Vec::new();
            for i in 0..rng.random_range(0..20) {
                let mut pairs = vec![
                    ("lr", format!("{}", rng.random_range(0.0..0.2))),
                    ("m", format!("{:.1}", rng.random_range(0.0..1.0))),
                    ("layers", format!("{}", rng.random_range(0..7))),
                    (
                        "opt",
                        ["sgd", "adam", "rmsprop"][rng.random_range(0..3)].to_string(),
                    ),
                ];
                if rng.random_bool(0.1) {
                    pairs.remove(rng.random_range(0..pairs.len()));
                }
                if rng.random_bool(0.1) {
                    pairs.push(("lr", "0.05".into()));
                }
                let pairs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
                let value = match rng.random_range(0..5) {
                    0 => None,
                    1 => Some("unavailable".to_string()),
                    2 => Some(" 1e-3 ".to_string()),
                    _ => Some(format!("{}", rng.random::<f64>())),
                };
                let condition = conditions[rng.random_range(0..conditions.len())];
                let mut t = trial(&format!("t{case}-{i}"), &pairs, condition, value.as_deref());
                match rng.random_range(0..6) {
                    0 => t.status = None,
                    1 => t.spec = None,
                    2 => {
                        // Other metrics around the objective: the last objective row counts.
                        let obs = t
                            .status
                            .as_mut()
                            .unwrap()
                            .observation
                            .get_or_insert_with(Default::default);
                        obs.metrics.insert(
                            0,
                            pb::Metric {
                                name: "loss".into(),
                                value: "0.3".into(),
                            },
                        );
                        obs.metrics.push(pb::Metric {
                            name: "accuracy".into(),
                            value: "0.5".into(),
                        });
                    }
                    3 => {
                        let s = t.status.as_mut().unwrap();
                        s.start_time = "2026-11-23T00:00:00Z".into();
                        s.condition = 42;
                        t.spec.as_mut().unwrap().labels.insert("k".into(), "v".into());
                    }
                    _ => {}
                }
                trials.push(t);
            }
            let request = pb::GetSuggestionsRequest {
                experiment: Some(experiment("tpe", &[("random_state", "3")], space_params())),
                trials,
                current_request_number: rng.random_range(0..4),
                total_request_number: rng.random_range(0..30),
            };
            let (wire, reference) = both(&request);
            assert_same(&wire, &reference);
        }
    }

    #[test]
    fn repeated_messages_merge_and_unknown_fields_are_skipped() {
        let exp = experiment("random", &[], vec![int("n", "1", "3", "")]);
        let request = pb::GetSuggestionsRequest {
            experiment: Some(exp),
            trials: vec![trial("a", &[("n", "2")], C::Succeeded, Some("0.9"))],
            current_request_number: 1,
            total_request_number: 1,
        };
        let mut bytes = request.encode_to_vec();
        // Unknown fields 9 (varint) and 10 (fixed64) at top level.
        bytes.extend_from_slice(&[9 << 3, 0x96, 0x01, (10 << 3) | 1, 0, 0, 0, 0, 0, 0, 0, 0]);
        let reference = pb::GetSuggestionsRequest::decode(bytes.as_slice()).unwrap();
        let wire = decode_request(Bytes::from(bytes), None).unwrap();
        assert_same(&wire, &SuggestRequest::from_owned(reference).unwrap());

        // Two occurrences of one Trial message merge: later name and condition win, metrics
        // append.
        let first = trial("a", &[("n", "2")], C::Running, Some("0.1"));
        let second = pb::Trial {
            name: "a2".into(),
            spec: Some(pb::TrialSpec {
                parameter_assignments: Some(pb::trial_spec::ParameterAssignments {
                    assignments: vec![pb::ParameterAssignment {
                        name: "n".into(),
                        value: "3".into(),
                    }],
                }),
                ..Default::default()
            }),
            status: Some(pb::TrialStatus {
                condition: C::Succeeded as i32,
                ..Default::default()
            }),
        };
        let mut trial_bytes = first.encode_to_vec();
        trial_bytes.extend(second.encode_to_vec());
        let bytes = with_raw_trial(&request.experiment, trial_bytes);
        let reference =
            SuggestRequest::from_owned(pb::GetSuggestionsRequest::decode(bytes.as_slice()).unwrap()).unwrap();
        let wire = decode_request(Bytes::from(bytes), None).unwrap();
        assert_same(&wire, &reference);
        assert_eq!(wire.history[0].name, "a2");
        assert_eq!(wire.history[0].condition, C::Succeeded);
        assert_eq!(wire.history[0].objective, Some(0.1));
        assert_eq!(wire.history[0].assignments.get("n"), Some("2"));
        assert_eq!(wire.history[0].assignments.len(), 2);
    }

    /// A request of `experiment` and one trial field holding exactly `trial` (bytes a
    /// well-formed message would not contain).
    fn with_raw_trial(experiment: &Option<pb::Experiment>, trial: Vec<u8>) -> Vec<u8> {
        let mut bytes = pb::GetSuggestionsRequest {
            experiment: experiment.clone(),
            ..Default::default()
        }
        .encode_to_vec();
        bytes.push(2 << 3 | 2);
        prost::encoding::encode_varint(trial.len() as u64, &mut bytes);
        bytes.extend(trial);
        bytes
    }

    #[test]
    fn malformed_bytes_give_invalid_argument_with_the_offset() {
        let request = pb::GetSuggestionsRequest {
            experiment: Some(experiment("random", &[], vec![int("n", "1", "3", "")])),
            trials: vec![trial("a", &[("n", "2")], C::Succeeded, Some("0.9"))],
            current_request_number: 1,
            total_request_number: 1,
        };
        let bytes = request.encode_to_vec();
        for cut in 1..bytes.len() {
            // Every truncation is either still a valid message (a cut between fields) or an
            // error; never a panic.
            let _ = decode_request(Bytes::copy_from_slice(&bytes[..cut]), None);
        }
        let err = decode_request(Bytes::copy_from_slice(&bytes[..bytes.len() - 1]), None).unwrap_err();
        assert!(matches!(err, SuggestError::InvalidRequest(_)), "{err:?}");
        assert!(err.to_string().contains("not valid protobuf at byte"), "{err}");

        // Wrong wire type for the trials field; a name that is not UTF-8.
        let mut bad = bytes.clone();
        bad.extend_from_slice(&[2 << 3, 1]);
        let err = decode_request(Bytes::from(bad), None).unwrap_err();
        assert!(err.to_string().contains("field 2 has wire type 0"), "{err}");
        let t = trial("\u{e9}", &[("n", "2")], C::Succeeded, None).encode_to_vec();
        let at = t.windows(2).position(|w| w == [0xc3, 0xa9]).unwrap();
        let mut t = t;
        t[at] = 0xff;
        let bad = with_raw_trial(&request.experiment, t);
        let err = decode_request(Bytes::from(bad), None).unwrap_err();
        assert!(err.to_string().contains("not UTF-8"), "{err}");

        let missing = pb::GetSuggestionsRequest::default().encode_to_vec();
        let err = decode_request(Bytes::from(missing), None).unwrap_err();
        assert_eq!(err.to_string(), "GetSuggestionsRequest.experiment is missing");
    }

    fn long_request(n: usize, seed: u64, params: Vec<pb::ParameterSpec>) -> pb::GetSuggestionsRequest {
        let mut rng = rand::rngs::Xoshiro256PlusPlus::seed_from_u64(seed);
        let trials = (0..n)
            .map(|i| {
                let lr = format!("{}", rng.random_range(0.001..0.1));
                let layers = format!("{}", rng.random_range(1..6));
                let value = format!("{}", rng.random::<f64>());
                let condition = if i % 7 == 0 { C::Running } else { C::Succeeded };
                trial(
                    &format!("t{i}"),
                    &[("lr", &lr), ("m", "0.3"), ("layers", &layers), ("opt", "adam")],
                    condition,
                    (condition == C::Succeeded).then_some(value.as_str()),
                )
            })
            .collect();
        pb::GetSuggestionsRequest {
            experiment: Some(experiment("tpe", &[], params)),
            trials,
            current_request_number: 1,
            total_request_number: n as i32 + 1,
        }
    }

    #[test]
    fn long_histories_decode_in_parallel_in_order() {
        let request = long_request(1000, 1, space_params());
        let (wire, reference) = both(&request);
        assert_same(&wire, &reference);
        assert_eq!(wire.history[999].name, "t999");
    }

    #[test]
    fn the_cache_reuses_unchanged_trials_and_sees_every_change() {
        let cache = HistoryCache::new();
        let mut request = long_request(600, 2, space_params());
        let decode = |r: &pb::GetSuggestionsRequest| {
            decode_request(Bytes::from(r.encode_to_vec()), Some(&cache)).expect("decode")
        };
        assert_same(&decode(&request), &SuggestRequest::from_pb(&request).unwrap());
        // The controller's next call: a running trial finished, a new one started, and one
        // trial's metric changed in place (same length, different bytes).
        let finished = &mut request.trials[7];
        finished.status.as_mut().unwrap().condition = C::Succeeded as i32;
        finished.status.as_mut().unwrap().observation = Some(pb::Observation {
            metrics: vec![pb::Metric {
                name: "accuracy".into(),
                value: "0.75".into(),
            }],
        });
        let v = &mut request.trials[3]
            .status
            .as_mut()
            .unwrap()
            .observation
            .as_mut()
            .unwrap()
            .metrics[0]
            .value;
        *v = v.replace(|c: char| c.is_ascii_digit() && c != '0', "0");
        request
            .trials
            .push(trial("new", &[("lr", "0.01")], C::Running, None));
        let warm = decode(&request);
        assert_same(&warm, &SuggestRequest::from_pb(&request).unwrap());
        assert_eq!(warm.history[7].objective, Some(0.75));
        assert_eq!(cache.entries.lock().unwrap().len(), 1);

        // A different search space (here a narrower lr range) must not reuse points.
        let mut narrower = space_params();
        narrower[0] = double("lr", "0.001", "0.01", "");
        request
            .experiment
            .as_mut()
            .unwrap()
            .spec
            .as_mut()
            .unwrap()
            .parameter_specs = Some(pb::experiment_spec::ParameterSpecs { parameters: narrower });
        assert_same(&decode(&request), &SuggestRequest::from_pb(&request).unwrap());

        // Trials dropped from the front shift every position: still right.
        request.trials.drain(..5);
        assert_same(&decode(&request), &SuggestRequest::from_pb(&request).unwrap());
    }

    #[test]
    fn the_cache_stays_bounded() {
        let cache = HistoryCache::new();
        for e in 0..HistoryCache::MAX_EXPERIMENTS + 3 {
            let mut request = long_request(10, e as u64, space_params());
            request.experiment.as_mut().unwrap().name = format!("e{e}");
            decode_request(Bytes::from(request.encode_to_vec()), Some(&cache)).unwrap();
        }
        let entries = cache.entries.lock().unwrap();
        assert_eq!(entries.len(), HistoryCache::MAX_EXPERIMENTS);
        assert_eq!(entries[0].0, format!("e{}", HistoryCache::MAX_EXPERIMENTS + 2));
    }
}

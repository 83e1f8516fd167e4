//! The local experiment loop: ask the core what to do, carry it out, wait for a trial to
//! end, repeat.
//!
//! Early stopping (Katib's flow, run locally): the experiment's early-stopping settings are
//! validated once by the EarlyStopping service; before each batch of trials the runner asks
//! it for rules (`GetEarlyStoppingRules` with the experiment, its trials and db-manager's
//! address) and attaches them to every new trial (`spec.earlyStoppingRules`); each trial's
//! collector enforces and refreshes them ([`super::collect`]). When a collector stops a
//! trial it calls the service's `SetTrialStatus`, which the in-process service hands back
//! here ([`EarlyStopMark`]); the trial becomes EarlyStopped (reason `TrialEarlyStopped`) and
//! keeps its observation. With an external service the collector's result alone marks it.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use katib_api::codec::{BytesSendCodec, GET_SUGGESTIONS_PATH};
use katib_api::convert::{experiment_to_pb, merge_settings, trial_to_pb};
use katib_api::crd::{
    AlgorithmSetting, EarlyStoppingRule, Experiment, ParameterAssignment, Trial, UNAVAILABLE,
};
use katib_api::pb;
use katib_api::pb::db_manager_client::DbManagerClient;
use katib_api::pb::early_stopping_client::EarlyStoppingClient;
use katib_api::pb::suggestion_client::SuggestionClient;
use katib_api::time::now_rfc3339;
use rand::SeedableRng as _;
use tokio::sync::{mpsc, oneshot, watch};
use tonic::transport::Channel;
use tracing::{Instrument as _, debug, info, info_span, warn};

use super::collect::{self, CollectSpec, EarlyStopping};
use super::process::{ProcessExit, ProcessSpec};
use super::render;
use crate::core::trial::{
    JobOutcome, apply_outcome, mark_created, mark_early_stopped, new_trial, observation_from_logs,
    random_trial_name, rules_from_pb,
};
use crate::core::{self, SuggestionState, TrialClass, TrialLists};

/// Where the local runtime finds its services and puts its files.
#[derive(Clone, Debug)]
pub struct LocalConfig {
    /// Directory for this run's files: `<trial>/stdout.log`, `experiment.json`.
    pub run_dir: PathBuf,
    /// Working directory of trial commands (the experiment file's directory by default).
    pub work_dir: PathBuf,
    /// db-manager address (host:port), given to the controller and to trials.
    pub db_manager_addr: String,
    /// The abstract Unix socket (Linux) of an in-process db-manager, beside its TCP port:
    /// the runner and its collectors call db-manager there, one report per trial and
    /// without TCP's work on each message. Trials and services keep `db_manager_addr`.
    pub db_manager_local: Option<String>,
    /// Suggestion service address (host:port) for this experiment's algorithm.
    pub suggestion_addr: String,
    /// EarlyStopping service address (host:port), used when the experiment has
    /// `spec.earlyStopping`.
    pub early_stopping_addr: Option<String>,
    /// Deadline for one GetSuggestions call.
    pub suggestion_timeout: Duration,
    /// Seed for trial names (tests); random when None.
    pub seed: Option<u64>,
    /// Ask the suggestion service for up to `parallelTrialCount` assignments more than the
    /// free slots need, and start trials from those as slots free up. Only for an algorithm
    /// whose draws depend on nothing in the request (see
    /// `katib_suggestion::random::assignments_ahead_allowed`); otherwise every call asks for
    /// exactly the free slots, as Katib does.
    pub suggestions_ahead: bool,
}

/// Progress events, for the CLI's display.
#[derive(Clone, Debug)]
pub enum Event {
    TrialStarted {
        name: String,
        assignments: Vec<ParameterAssignment>,
    },
    TrialFinished {
        name: String,
        class: TrialClass,
        objective: Option<String>,
        message: String,
    },
    Status {
        experiment: Arc<Experiment>,
    },
    Exhausted {
        suggested: usize,
    },
    /// A snapshot of a trial that was created or changed (started, finished, early
    /// stopped), for observers that persist or display whole objects (the web UI).
    Trial {
        trial: Box<Trial>,
    },
}

/// How often at most the runner sends [`Event::Status`] while the run goes on.
const STATUS_EVERY: Duration = Duration::from_millis(50);

/// The result of a local run.
#[derive(Clone, Debug)]
pub struct RunOutcome {
    pub experiment: Experiment,
    pub trials: Vec<Trial>,
    /// The run was interrupted (Ctrl-C) before the experiment completed.
    pub interrupted: bool,
}

/// A `SetTrialStatus` from the in-process EarlyStopping service: mark `trial` EarlyStopped.
#[derive(Debug)]
pub struct EarlyStopMark {
    /// The trial.
    pub trial: String,
    /// Answered once the runner has applied it.
    pub done: oneshot::Sender<MarkOutcome>,
}

/// What became of an [`EarlyStopMark`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MarkOutcome {
    /// The trial is EarlyStopped now (or already was).
    Marked,
    /// The trial had already completed otherwise; nothing changed.
    AlreadyCompleted,
    /// No trial of this run has that name.
    NotFound,
}

/// Errors that stop a local run before or outside the experiment's own semantics.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot connect to the suggestion service at {addr}: {source}")]
    ConnectSuggestion {
        addr: String,
        source: tonic::transport::Error,
    },
    #[error("cannot connect to db-manager at {addr}: {source}")]
    ConnectDbManager {
        addr: String,
        source: tonic::transport::Error,
    },
    #[error("the suggestion service rejected the experiment's algorithm settings: {0}")]
    InvalidSettings(String),
    #[error("the early-stopping service rejected spec.earlyStopping: {0}")]
    InvalidEarlyStopping(String),
    #[error("cannot use the early-stopping service at {addr}: {message}")]
    EarlyStoppingUnavailable { addr: String, message: String },
    #[error("the suggestion service at {addr} is unavailable: {message}")]
    SuggestionUnavailable { addr: String, message: String },
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("the experiment cannot run locally: {0}")]
    Unsupported(String),
}

async fn connect(addr: &str) -> Result<Channel, tonic::transport::Error> {
    let ep = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
        .connect_timeout(Duration::from_secs(10));
    ep.connect().await
}

/// A channel to a server on the abstract Unix socket `name` (see
/// [`LocalConfig::db_manager_local`]).
#[cfg(target_os = "linux")]
async fn connect_local(name: &str) -> Result<Channel, tonic::transport::Error> {
    use std::os::linux::net::SocketAddrExt as _;
    let name = name.to_owned();
    // The URI only names the HTTP/2 authority; the connector decides where it goes.
    tonic::transport::Endpoint::from_static("http://localhost")
        .connect_timeout(Duration::from_secs(10))
        .connect_with_connector(tower::service_fn(move |_: tonic::transport::Uri| {
            let name = name.clone();
            async move {
                let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
                // A connect to a listening Unix socket completes at once (or fails).
                let stream = std::os::unix::net::UnixStream::connect_addr(&addr)?;
                stream.set_nonblocking(true)?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tokio::net::UnixStream::from_std(
                    stream,
                )?))
            }
        }))
        .await
}

#[cfg(not(target_os = "linux"))]
async fn connect_local(_name: &str) -> Result<Channel, tonic::transport::Error> {
    unreachable!("db_manager_local is only set on Linux")
}

struct Running {
    stop: Option<oneshot::Sender<()>>,
}

struct Finished {
    name: String,
    exit: ProcessExit,
    /// The trial's observation logs, read by its own task so completions are read in
    /// parallel rather than one at a time in the experiment loop.
    logs: Vec<pb::MetricLog>,
}

/// Runs `exp` (already defaulted and validated) to completion or until `shutdown` fires.
/// `marks` carries `SetTrialStatus` calls from an in-process EarlyStopping service.
pub async fn run_experiment(
    mut exp: Experiment,
    cfg: LocalConfig,
    events: mpsc::UnboundedSender<Event>,
    mut marks: Option<mpsc::UnboundedReceiver<EarlyStopMark>>,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<RunOutcome, RunError> {
    let exp_name = exp.metadata.name.clone().unwrap_or_default();
    let span = info_span!("experiment", experiment = %exp_name);
    async move {
        let collect_spec = CollectSpec::from_experiment(&exp).map_err(RunError::Unsupported)?;
        let sugg_channel = connect(&cfg.suggestion_addr)
            .await
            .map_err(|source| RunError::ConnectSuggestion { addr: cfg.suggestion_addr.clone(), source })?;
        let mut suggestions = SuggestionClient::new(sugg_channel.clone())
            .max_decoding_message_size(i32::MAX as usize)
            .max_encoding_message_size(i32::MAX as usize);
        let mut encoded_suggestions = tonic::client::Grpc::new(sugg_channel)
            .max_decoding_message_size(i32::MAX as usize)
            .max_encoding_message_size(i32::MAX as usize);
        let db_channel = match &cfg.db_manager_local {
            Some(name) => connect_local(name).await,
            None => connect(&cfg.db_manager_addr).await,
        };
        let db_channel = db_channel
            .map_err(|source| RunError::ConnectDbManager { addr: cfg.db_manager_addr.clone(), source })?;
        let mut db = DbManagerClient::new(db_channel.clone()).max_decoding_message_size(i32::MAX as usize);

        validate_settings(&mut suggestions, &exp, &cfg).await?;
        let mut early_stopping = match &exp.spec.early_stopping {
            Some(_) => Some(connect_early_stopping(&exp, &cfg).await?),
            None => None,
        };
        let (rules_request, rules_request_rx) = watch::channel(pb::GetEarlyStoppingRulesRequest::default());
        tokio::fs::create_dir_all(&cfg.run_dir)
            .await
            .map_err(|source| RunError::Write { path: cfg.run_dir.clone(), source })?;

        let mut rng = match cfg.seed {
            Some(s) => rand::rngs::StdRng::seed_from_u64(s),
            None => rand::rngs::StdRng::from_rng(&mut rand::rng()),
        };
        // Room for every trial up front (up to a few thousand): a Trial is about a
        // kilobyte, and each doubling of a growing Vec copied them all into fresh pages.
        let mut trials: Vec<Trial> =
            Vec::with_capacity(exp.spec.max_trial_count.map_or(0, |max| max.clamp(0, 4096) as usize));
        let mut pb_cache = PbCache::default();
        let mut index: HashMap<String, usize> = HashMap::new();
        let mut running: HashMap<String, Running> = HashMap::new();
        let mut state = SuggestionState::default();
        let mut overrides: Vec<AlgorithmSetting> = Vec::new();
        let mut total_requested: i32 = 0;
        // Assignments received ahead of need (only with `cfg.suggestions_ahead`), oldest first.
        let mut ahead: std::collections::VecDeque<pb::get_suggestions_reply::ParameterAssignments> =
            std::collections::VecDeque::new();
        // GetSuggestions calls made, and trials started from an assignment received earlier.
        let (mut calls, mut taken_ahead) = (0usize, 0usize);
        let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Finished>();
        let mut interrupted = false;
        let mut last_status: Option<tokio::time::Instant> = None;
        // Each trial's class and objective between decisions, and the trials changed since
        // the last one (new trials it finds by itself).
        let mut tally = core::Tally::default();
        let mut changed: Vec<usize> = Vec::new();
        tokio::pin!(shutdown);

        loop {
            let now = now_rfc3339();
            // Without the trial name lists: they are filled once, when the run ends (the
            // status events in between are read for their counters).
            let decision = core::decide_tallied(&exp, &trials, &mut tally, &changed, &state, &now);
            changed.clear();
            exp.status = Some(decision.status);
            if early_stopping.is_some() {
                rules_request.send_replace(pb::GetEarlyStoppingRulesRequest {
                    experiment: Some(experiment_to_pb(&exp, &overrides)),
                    trials: pb_cache.request_trials(&exp, &trials),
                    db_manager_address: cfg.db_manager_addr.clone(),
                });
            }
            for name in &decision.kill {
                if let Some(r) = running.get_mut(name)
                    && let Some(stop) = r.stop.take()
                {
                    info!(trial = %name, "stopping trial: the experiment has completed");
                    let _ = stop.send(());
                }
            }
            if (decision.completed || interrupted) && running.is_empty() {
                if let Some(status) = exp.status.as_mut() {
                    core::fill_trial_lists(status, &trials);
                }
                let _ = events.send(Event::Status { experiment: Arc::new(exp.clone()) });
                break;
            }
            if decision.request > 0 && !interrupted {
                let want = decision.request as i32;
                // Served from the assignments in hand when they are enough (`asked` 0),
                // else from a call for what the free slots need beyond them, and with
                // `suggestions_ahead` up to parallelTrialCount more, never past maxTrialCount.
                let (answer, asked) = if ahead.len() >= want as usize {
                    taken_ahead += want as usize;
                    let reply = pb::GetSuggestionsReply {
                        parameter_assignments: ahead.drain(..want as usize).collect(),
                        ..Default::default()
                    };
                    (Ok(reply), 0)
                } else {
                    let need = want - ahead.len() as i32;
                    let ask = if cfg.suggestions_ahead {
                        let parallel = exp.spec.parallel_trial_count.unwrap_or(3).max(1);
                        let left = exp
                            .spec
                            .max_trial_count
                            .map_or(i32::MAX, |max| max - trials.len() as i32 - ahead.len() as i32);
                        (need + parallel).min(left).max(need)
                    } else {
                        need
                    };
                    total_requested += ask;
                    calls += 1;
                    taken_ahead += ahead.len();
                    if ask > need {
                        debug!(need, ask, "asking for assignments ahead of need");
                    }
                    let req = pb_cache.encoded_request(
                        &experiment_to_pb(&exp, &overrides),
                        &exp,
                        &trials,
                        ask,
                        total_requested,
                    );
                    let answer = get_suggestions(&mut encoded_suggestions, req, &cfg).await.map(|mut reply| {
                        let returned = reply.parameter_assignments.len() as i32;
                        // A short reply: the space is used up; count only what came.
                        total_requested -= (ask - returned).max(0);
                        let mut all: Vec<_> = ahead.drain(..).collect();
                        all.append(&mut reply.parameter_assignments);
                        if all.len() > want as usize {
                            ahead.extend(all.drain(want as usize..));
                        }
                        reply.parameter_assignments = all;
                        reply
                    });
                    (answer, ask)
                };
                match answer {
                    Ok(reply) => {
                        if let Some(alg) = &reply.algorithm {
                            let returned: Vec<AlgorithmSetting> = alg
                                .algorithm_settings
                                .iter()
                                .map(|s| AlgorithmSetting { name: s.name.clone(), value: s.value.clone() })
                                .collect();
                            overrides = merge_settings(&overrides, &returned);
                        }
                        let got = reply.parameter_assignments.len();
                        let first_new = trials.len();
                        if got < want as usize {
                            info!(requested = want, returned = got, "the search space is exhausted");
                            state.exhausted = true;
                            let _ = events.send(Event::Exhausted { suggested: trials.len() + got });
                        }
                        // Katib attaches the rules of this moment to every new assignment.
                        let rules = match early_stopping.as_mut() {
                            Some(client) if got > 0 => {
                                let request = rules_request.borrow().clone();
                                get_rules(client, request).await
                            }
                            _ => Vec::new(),
                        };
                        for pa in reply.parameter_assignments.into_iter().take(want as usize) {
                            let name = if pa.trial_name.is_empty() {
                                random_trial_name(&exp_name, &mut rng)
                            } else {
                                pa.trial_name.clone()
                            };
                            let assignments: Vec<ParameterAssignment> = pa
                                .assignments
                                .iter()
                                .map(|a| ParameterAssignment { name: a.name.clone(), value: a.value.clone() })
                                .collect();
                            let labels = pa.labels.into_iter().collect();
                            let early = early_stopping.as_ref().map(|client| EarlyStopping {
                                client: client.clone(),
                                request: rules_request_rx.clone(),
                                rules: rules.clone(),
                            });
                            let (trial, handle) = start_trial(
                                &exp,
                                name,
                                assignments,
                                labels,
                                &cfg,
                                &collect_spec,
                                &db_channel,
                                early,
                                done_tx.clone(),
                            );
                            let name = trial.metadata.name.clone().unwrap_or_default();
                            let _ = events.send(Event::TrialStarted {
                                name: name.clone(),
                                assignments: trial.spec.parameter_assignments.clone(),
                            });
                            let _ = events.send(Event::Trial { trial: Box::new(trial.clone()) });
                            index.insert(name.clone(), trials.len());
                            trials.push(trial);
                            // No handle: it failed to render and is already Failed.
                            if let Some(stop) = handle {
                                running.insert(name, Running { stop: Some(stop) });
                            }
                        }
                        // A full reply changes nothing a new decision would act on (the
                        // new trials only fill the free slots), so the status is brought up
                        // to date without one: a decision walks every trial. Anything else
                        // (a short reply, early-stopping rules to refresh) decides again.
                        if got < want as usize || early_stopping.is_some() {
                            continue;
                        }
                        if let Some(status) = exp.status.as_mut() {
                            core::add_new_trials(status, &trials[first_new..], TrialLists::Omitted);
                        }
                    }
                    Err(SuggestError::Invalid(msg)) => {
                        state.failed = Some(msg);
                        continue;
                    }
                    Err(SuggestError::Unavailable(message)) => {
                        if running.is_empty() {
                            return Err(RunError::SuggestionUnavailable {
                                addr: cfg.suggestion_addr.clone(),
                                message,
                            });
                        }
                        warn!(%message, "GetSuggestions failed; retrying after the next trial completes");
                        total_requested -= asked;
                    }
                }
            }

            // The status goes out at most every STATUS_EVERY (and when the run ends): every
            // copy carries the trial name lists, O(trials), and nobody looks faster.
            let mut unsent = true;
            loop {
                if unsent && last_status.is_none_or(|at| at.elapsed() >= STATUS_EVERY) {
                    let _ = events.send(Event::Status { experiment: Arc::new(exp.clone()) });
                    last_status = Some(tokio::time::Instant::now());
                    unsent = false;
                }
                let status_due = last_status.map_or_else(tokio::time::Instant::now, |at| at + STATUS_EVERY);
                tokio::select! {
                    // Marks first: a collector sends its mark before its trial's exit.
                    biased;
                    () = tokio::time::sleep_until(status_due), if unsent => {
                        let _ = events.send(Event::Status { experiment: Arc::new(exp.clone()) });
                        last_status = Some(tokio::time::Instant::now());
                        unsent = false;
                        // Only the status went out: keep waiting, no new decision.
                        continue;
                    }
                    Some(mark) = next_mark(&mut marks) => {
                        let outcome = match index.get(&mark.trial) {
                            None => MarkOutcome::NotFound,
                            Some(&i) => {
                                pb_cache.invalidate(i);
                                changed.push(i);
                                if mark_early_stopped(&mut trials[i], &now_rfc3339()) {
                                    info!(trial = %mark.trial, "trial early stopped");
                                    // Its collector reported before asking: read the
                                    // observation now, so the trial is an input to the next
                                    // GetSuggestions (Katib leaves early-stopped trials
                                    // without one out).
                                    let logs = read_logs(&mark.trial, &mut db).await;
                                    if let Some(obs) = observation_from_logs(&trials[i], &logs) {
                                        trials[i].status.get_or_insert_with(Default::default).observation = Some(obs);
                                    }
                                    let _ = events.send(Event::Trial { trial: Box::new(trials[i].clone()) });
                                    MarkOutcome::Marked
                                } else {
                                    MarkOutcome::AlreadyCompleted
                                }
                            }
                        };
                        let _ = mark.done.send(outcome);
                    }
                    Some(fin) = done_rx.recv() => {
                        // Take every completion that is ready, so one decision (and one
                        // GetSuggestions call) covers all of them.
                        let mut batch = vec![fin];
                        while let Ok(more) = done_rx.try_recv() {
                            batch.push(more);
                        }
                        for fin in batch {
                            running.remove(&fin.name);
                            if let Some(&i) = index.get(&fin.name) {
                                pb_cache.invalidate(i);
                                changed.push(i);
                                finish_trial(&mut trials[i], fin.exit, fin.logs, &mut db, &events).await;
                                let _ = events.send(Event::Trial { trial: Box::new(trials[i].clone()) });
                            }
                        }
                    }
                    _ = &mut shutdown, if !interrupted => {
                        warn!("interrupted: stopping {} running trial(s)", running.len());
                        interrupted = true;
                        for r in running.values_mut() {
                            if let Some(stop) = r.stop.take() { let _ = stop.send(()); }
                        }
                    }
                }
                break;
            }
        }

        info!(calls, taken_ahead, "GetSuggestions calls made, and trials started from assignments asked ahead");
        // Every event is out: observers (the web UI's last write) finish while the state is
        // written, instead of after it.
        drop(events);
        let out = RunOutcome { experiment: exp, trials, interrupted };
        write_state(&cfg, out).await
    }
    .instrument(span)
    .await
}

/// Each trial's `pb::Trial` and its serialized form, made once and again only after the trial
/// changes: every GetSuggestions (and GetEarlyStoppingRules) request carries the whole
/// history, so converting, copying and encoding it afresh made a run quadratic in that work.
#[derive(Default)]
struct PbCache {
    converted: Vec<Option<pb::Trial>>,
    encoded: Vec<Option<Vec<u8>>>,
}

impl PbCache {
    /// Forgets trial `i`'s conversion (call before changing the trial).
    fn invalidate(&mut self, i: usize) {
        if let Some(slot) = self.converted.get_mut(i) {
            *slot = None;
        }
        if let Some(slot) = self.encoded.get_mut(i) {
            *slot = None;
        }
    }

    /// The request's `trials`: [`core::trials_for_suggestion`] in Katib's wire form.
    fn request_trials(&mut self, exp: &Experiment, trials: &[Trial]) -> Vec<pb::Trial> {
        self.converted.resize(trials.len(), None);
        trials
            .iter()
            .zip(self.converted.iter_mut())
            .filter(|(t, _)| core::is_suggestion_input(exp, t))
            .map(|(t, slot)| slot.get_or_insert_with(|| trial_to_pb(t)).clone())
            .collect()
    }

    /// A serialized `GetSuggestionsRequest`, the same bytes prost would write for it, built
    /// from each trial's cached encoding rather than from copies of the trials.
    fn encoded_request(
        &mut self,
        experiment: &pb::Experiment,
        exp: &Experiment,
        trials: &[Trial],
        current_request_number: i32,
        total_request_number: i32,
    ) -> Bytes {
        use prost::Message as _;
        self.encoded.resize(trials.len(), None);
        let mut buf = Vec::new();
        prost::encoding::message::encode(1, experiment, &mut buf);
        for (t, slot) in trials.iter().zip(self.encoded.iter_mut()) {
            if !core::is_suggestion_input(exp, t) {
                continue;
            }
            let bytes = slot.get_or_insert_with(|| trial_to_pb(t).encode_to_vec());
            prost::encoding::encode_key(2, prost::encoding::WireType::LengthDelimited, &mut buf);
            prost::encoding::encode_varint(bytes.len() as u64, &mut buf);
            buf.extend_from_slice(bytes);
        }
        if current_request_number != 0 {
            prost::encoding::int32::encode(4, &current_request_number, &mut buf);
        }
        if total_request_number != 0 {
            prost::encoding::int32::encode(5, &total_request_number, &mut buf);
        }
        Bytes::from(buf)
    }
}

async fn next_mark(marks: &mut Option<mpsc::UnboundedReceiver<EarlyStopMark>>) -> Option<EarlyStopMark> {
    match marks {
        Some(rx) => {
            let mark = rx.recv().await;
            if mark.is_none() {
                *marks = None;
            }
            mark
        }
        None => std::future::pending().await,
    }
}

/// Connects to the EarlyStopping service and validates `spec.earlyStopping` with it.
async fn connect_early_stopping(
    exp: &Experiment,
    cfg: &LocalConfig,
) -> Result<EarlyStoppingClient<Channel>, RunError> {
    let addr = cfg.early_stopping_addr.clone().ok_or_else(|| {
        RunError::Unsupported(
            "spec.earlyStopping is set but no early-stopping service address was given".into(),
        )
    })?;
    let unavailable = |message: String| RunError::EarlyStoppingUnavailable {
        addr: addr.clone(),
        message,
    };
    let channel = connect(&addr).await.map_err(|e| unavailable(e.to_string()))?;
    let mut client = EarlyStoppingClient::new(channel)
        .max_decoding_message_size(i32::MAX as usize)
        .max_encoding_message_size(i32::MAX as usize);
    let spec = experiment_to_pb(exp, &[]).spec.and_then(|s| s.early_stopping);
    let mut req = tonic::Request::new(pb::ValidateEarlyStoppingSettingsRequest { early_stopping: spec });
    req.set_timeout(cfg.suggestion_timeout);
    match client.validate_early_stopping_settings(req).await {
        Ok(_) => Ok(client),
        Err(s) if s.code() == tonic::Code::InvalidArgument || s.code() == tonic::Code::Unknown => {
            Err(RunError::InvalidEarlyStopping(s.message().to_string()))
        }
        // Katib treats UNIMPLEMENTED as "nothing to validate".
        Err(s) if s.code() == tonic::Code::Unimplemented => Ok(client),
        Err(s) => Err(unavailable(format!("{}: {}", s.code(), s.message()))),
    }
}

/// The rules for new trials now; none (with a warning) if the service cannot answer, in
/// which case the trials' collectors ask again later.
async fn get_rules(
    client: &mut EarlyStoppingClient<Channel>,
    request: pb::GetEarlyStoppingRulesRequest,
) -> Vec<EarlyStoppingRule> {
    let mut req = tonic::Request::new(request);
    req.set_timeout(Duration::from_secs(60));
    match client.get_early_stopping_rules(req).await {
        Ok(reply) => rules_from_pb(&reply.into_inner().early_stopping_rules),
        Err(s) => {
            warn!(code = ?s.code(), message = s.message(), "GetEarlyStoppingRules failed; new trials start without rules");
            Vec::new()
        }
    }
}

async fn validate_settings(
    client: &mut SuggestionClient<Channel>,
    exp: &Experiment,
    cfg: &LocalConfig,
) -> Result<(), RunError> {
    let req = pb::ValidateAlgorithmSettingsRequest {
        experiment: Some(experiment_to_pb(exp, &[])),
    };
    match client.validate_algorithm_settings(req).await {
        Ok(_) => Ok(()),
        Err(s) if s.code() == tonic::Code::InvalidArgument || s.code() == tonic::Code::Unknown => {
            Err(RunError::InvalidSettings(s.message().to_string()))
        }
        // Katib treats UNIMPLEMENTED as "nothing to validate".
        Err(s) if s.code() == tonic::Code::Unimplemented => Ok(()),
        Err(s) => Err(RunError::SuggestionUnavailable {
            addr: cfg.suggestion_addr.clone(),
            message: format!("{}: {}", s.code(), s.message()),
        }),
    }
}

enum SuggestError {
    Invalid(String),
    Unavailable(String),
}

async fn get_suggestions(
    client: &mut tonic::client::Grpc<Channel>,
    req: Bytes,
    cfg: &LocalConfig,
) -> Result<pb::GetSuggestionsReply, SuggestError> {
    let mut delay = Duration::from_millis(100);
    let deadline = tokio::time::Instant::now() + cfg.suggestion_timeout;
    loop {
        let mut r = tonic::Request::new(req.clone());
        r.set_timeout(cfg.suggestion_timeout);
        let result = match client.ready().await {
            Ok(()) => {
                let path = tonic::codegen::http::uri::PathAndQuery::from_static(GET_SUGGESTIONS_PATH);
                client
                    .unary(r, path, BytesSendCodec::<pb::GetSuggestionsReply>::new())
                    .await
            }
            Err(e) => Err(tonic::Status::unavailable(format!(
                "the suggestion service is not ready: {e}"
            ))),
        };
        match result {
            Ok(reply) => return Ok(reply.into_inner()),
            Err(s)
                if s.code() == tonic::Code::InvalidArgument
                    || s.code() == tonic::Code::FailedPrecondition =>
            {
                return Err(SuggestError::Invalid(s.message().to_string()));
            }
            Err(s) => {
                if tokio::time::Instant::now() + delay > deadline {
                    return Err(SuggestError::Unavailable(format!(
                        "{}: {}",
                        s.code(),
                        s.message()
                    )));
                }
                debug!(code = ?s.code(), "GetSuggestions failed, retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// Creates the Trial and starts its process; returns the stop handle, or None when the
/// trial could not be started (it is then already marked Failed).
#[allow(clippy::too_many_arguments)]
fn start_trial(
    exp: &Experiment,
    name: String,
    assignments: Vec<ParameterAssignment>,
    labels: std::collections::BTreeMap<String, String>,
    cfg: &LocalConfig,
    collect_spec: &CollectSpec,
    db_channel: &Channel,
    early: Option<EarlyStopping>,
    done: mpsc::UnboundedSender<Finished>,
) -> (Trial, Option<oneshot::Sender<()>>) {
    let now = now_rfc3339();
    let rendered = render::render_run_spec(exp, &name, &assignments);
    let mut trial = new_trial(
        exp,
        name.clone(),
        assignments,
        labels,
        rendered.as_ref().ok().cloned(),
    );
    if let Some(early) = &early {
        trial.spec.early_stopping_rules = early.rules.clone();
    }
    mark_created(&mut trial, &now);
    let primary = trial.spec.primary_container_name.clone();
    let command = rendered.and_then(|job| render::local_command(&job, &primary));
    let command = match command {
        Ok(c) => c,
        Err(e) => {
            warn!(trial = %name, error = %e, "cannot start trial");
            let outcome = JobOutcome::Failed {
                reason: "InvalidTemplate".into(),
                message: e.to_string(),
            };
            apply_outcome(&mut trial, &outcome, None, &now);
            let _ = done.send(Finished {
                name,
                exit: ProcessExit::SpawnFailed {
                    reason: "InvalidTemplate".into(),
                    message: e.to_string(),
                },
                logs: Vec::new(),
            });
            return (trial, None);
        }
    };
    if !command.skipped_env.is_empty() {
        warn!(trial = %name, vars = ?command.skipped_env, "env entries with valueFrom are not set locally");
    }
    apply_outcome(&mut trial, &JobOutcome::Running, None, &now);
    let trial_dir = cfg.run_dir.join(&name);
    let (command, metrics_file) = collect_spec.localize(command, &trial_dir);
    let spec = ProcessSpec {
        command,
        work_dir: cfg.work_dir.clone(),
        log_path: trial_dir.join("stdout.log"),
        extra_env: vec![
            ("KATIB_TRIAL_NAME".into(), name.clone()),
            ("KATIB_DB_MANAGER_ADDRESS".into(), cfg.db_manager_addr.clone()),
            ("PYTHONUNBUFFERED".into(), "1".into()),
        ],
    };
    let (stop_tx, stop_rx) = oneshot::channel();
    let collector = collect_spec.clone();
    let channel = db_channel.clone();
    let span = info_span!("trial", trial = %name);
    tokio::spawn(
        async move {
            let collected = collect::run_collected(
                spec,
                collector,
                metrics_file,
                &name,
                channel.clone(),
                stop_rx,
                early,
            )
            .await;
            // Katib reads the trial's log back from db-manager; when db-manager vouched that
            // it holds exactly what the collector reported, those rows are that log.
            let logs = match collected.stored_rows.and_then(as_read_back) {
                Some(logs) => logs,
                None => {
                    let mut db = DbManagerClient::new(channel).max_decoding_message_size(i32::MAX as usize);
                    read_logs(&name, &mut db).await
                }
            };
            let _ = done.send(Finished {
                name,
                exit: collected.exit,
                logs,
            });
        }
        .instrument(span),
    );
    (trial, Some(stop_tx))
}

async fn finish_trial(
    trial: &mut Trial,
    exit: ProcessExit,
    logs: Vec<pb::MetricLog>,
    db: &mut DbManagerClient<Channel>,
    events: &mpsc::UnboundedSender<Event>,
) {
    let now = now_rfc3339();
    // Already Failed before it started (e.g. an invalid template).
    if trial.status.as_ref().is_some_and(|s| s.completion_time.is_some()) {
        emit_finished(trial, events, message_of(&exit));
        return;
    }
    let outcome = match &exit {
        ProcessExit::Success => JobOutcome::Succeeded,
        ProcessExit::Failed { reason, message } | ProcessExit::SpawnFailed { reason, message } => {
            JobOutcome::Failed {
                reason: reason.clone(),
                message: message.clone(),
            }
        }
        ProcessExit::Stopped => JobOutcome::Killed {
            message: "Trial was stopped by katib: the experiment completed or the run was interrupted".into(),
        },
        ProcessExit::EarlyStopped { message } => JobOutcome::EarlyStopped {
            message: message.clone(),
        },
    };
    let mut observation = observation_from_logs(trial, &logs);
    // No log at all for the objective (a Push trainer that never reported); a collector
    // that saw nothing has already recorded "unavailable" itself.
    let objective_name = trial
        .spec
        .objective
        .as_ref()
        .map(|o| o.objective_metric_name.clone());
    let objective_missing = !logs.iter().any(|l| {
        l.metric
            .as_ref()
            .map(|m| Some(&m.name) == objective_name.as_ref())
            .unwrap_or(false)
    });
    if outcome == JobOutcome::Succeeded && objective_missing {
        // Katib records the missing objective for trials whose collector did not (Push).
        if let Some(log) = report_unavailable(trial, db).await {
            let mut all = logs.clone();
            all.push(log);
            observation = observation_from_logs(trial, &all);
        }
    }
    apply_outcome(trial, &outcome, observation, &now);
    emit_finished(trial, events, message_of(&exit));
}

/// `rows` (as a collector reported them) the way `GetObservationLog` would return them:
/// times kept to the microsecond, in time order, ties in the order reported. `None` if a
/// time does not parse (the caller then reads the log back).
fn as_read_back(rows: Vec<pb::MetricLog>) -> Option<Vec<pb::MetricLog>> {
    let mut timed = rows
        .into_iter()
        .map(|mut row| {
            let t: jiff::Timestamp = row.time_stamp.parse().ok()?;
            let micros = i64::try_from(t.as_nanosecond().div_euclid(1_000)).ok()?;
            let t = jiff::Timestamp::from_microsecond(micros).ok()?;
            row.time_stamp = t.to_string();
            Some((t, row))
        })
        .collect::<Option<Vec<_>>>()?;
    // Stable: equal times keep the order reported, as the database's insertion order does.
    timed.sort_by_key(|(t, _)| *t);
    Some(timed.into_iter().map(|(_, row)| row).collect())
}

/// Every observation log of the trial in db-manager (none if unreadable).
async fn read_logs(name: &str, db: &mut DbManagerClient<Channel>) -> Vec<pb::MetricLog> {
    match db
        .get_observation_log(pb::GetObservationLogRequest {
            trial_name: name.to_string(),
            ..Default::default()
        })
        .await
    {
        Ok(r) => r
            .into_inner()
            .observation_log
            .map(|o| o.metric_logs)
            .unwrap_or_default(),
        Err(s) => {
            warn!(trial = %name, code = ?s.code(), message = s.message(), "cannot read observation logs");
            Vec::new()
        }
    }
}

fn message_of(exit: &ProcessExit) -> String {
    match exit {
        ProcessExit::Success => String::new(),
        ProcessExit::Failed { message, .. } | ProcessExit::SpawnFailed { message, .. } => message.clone(),
        ProcessExit::Stopped => "stopped".into(),
        ProcessExit::EarlyStopped { message } => message.clone(),
    }
}

fn emit_finished(trial: &Trial, events: &mpsc::UnboundedSender<Event>, message: String) {
    let class = core::classify(trial);
    let objective = trial.spec.objective.as_ref().and_then(|o| {
        let m = trial
            .status
            .as_ref()?
            .observation
            .as_ref()?
            .metric(&o.objective_metric_name)?;
        let v = katib_api::convert::metric_value_by_strategy(m, o.strategy_for(&m.name));
        (v != UNAVAILABLE).then_some(v)
    });
    let message = if class == TrialClass::MetricsUnavailable {
        trial
            .status
            .as_ref()
            .and_then(|s| s.conditions.last())
            .map(|c| c.message.clone())
            .unwrap_or(message)
    } else {
        message
    };
    info!(
        trial = trial.metadata.name.as_deref().unwrap_or_default(),
        ?class,
        ?objective,
        "trial finished"
    );
    let _ = events.send(Event::TrialFinished {
        name: trial.metadata.name.clone().unwrap_or_default(),
        class,
        objective,
        message,
    });
}

/// Records the missing objective as Katib does; returns the log written.
async fn report_unavailable(trial: &Trial, db: &mut DbManagerClient<Channel>) -> Option<pb::MetricLog> {
    let objective = trial.spec.objective.as_ref()?;
    let log = pb::MetricLog {
        time_stamp: "0001-01-01T00:00:00Z".into(),
        metric: Some(pb::Metric {
            name: objective.objective_metric_name.clone(),
            value: UNAVAILABLE.into(),
        }),
    };
    let req = pb::ReportObservationLogRequest {
        trial_name: trial.metadata.name.clone().unwrap_or_default(),
        observation_log: Some(pb::ObservationLog {
            metric_logs: vec![log.clone()],
        }),
    };
    match db.report_observation_log(req).await {
        Ok(_) => Some(log),
        Err(s) => {
            warn!(code = ?s.code(), message = s.message(), "cannot record the unavailable objective");
            None
        }
    }
}

/// Writes `experiment.json` and hands `out` back.
async fn write_state(cfg: &LocalConfig, out: RunOutcome) -> Result<RunOutcome, RunError> {
    /// Serialized straight from the run's values: building a `serde_json::Value` of every
    /// trial first cost more than the write, at the end of every run.
    #[derive(serde::Serialize)]
    struct State<'a> {
        experiment: &'a Experiment,
        trials: &'a [Trial],
    }
    let path = cfg.run_dir.join("experiment.json");
    // Off the runtime's workers: for a few hundred trials this is milliseconds of CPU that
    // the other tasks finishing the run can use meanwhile. Streamed to the file through a
    // buffer: a whole-file `Vec` of a megabyte or more was mostly page faults as it grew.
    let target = path.clone();
    let written = tokio::task::spawn_blocking(move || {
        let write = || -> std::io::Result<()> {
            let file = std::fs::File::create(&target)?;
            let mut w = std::io::BufWriter::with_capacity(1 << 16, file);
            serde_json::to_writer_pretty(
                &mut w,
                &State {
                    experiment: &out.experiment,
                    trials: &out.trials,
                },
            )?;
            std::io::Write::flush(&mut w)
        };
        (write(), out)
    })
    .await;
    let (result, out) = written.map_err(|e| RunError::Write {
        path: path.clone(),
        source: std::io::Error::other(e),
    })?;
    result.map_err(|source| RunError::Write { path, source })?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use katib_api::crd::{Metric, Observation};
    use prost::Message as _;

    #[test]
    fn reported_rows_read_as_the_database_would_return_them() {
        let log = |t: &str, name: &str, value: &str| pb::MetricLog {
            time_stamp: t.into(),
            metric: Some(pb::Metric {
                name: name.into(),
                value: value.into(),
            }),
        };
        // Out of time order, nanoseconds, an offset, equal times, Katib's zero time.
        let rows = vec![
            log("2024-05-01T10:00:02.000000900Z", "loss", "0.5"),
            log("2024-05-01T12:00:01+02:00", "loss", "0.7"),
            log("2024-05-01T10:00:02.000000100Z", "loss", "0.50"),
            log("0001-01-01T00:00:00Z", "accuracy", "unavailable"),
        ];
        let got = as_read_back(rows).expect("all times parse");
        let shown: Vec<(&str, &str)> = got
            .iter()
            .map(|l| (l.time_stamp.as_str(), l.metric.as_ref().unwrap().value.as_str()))
            .collect();
        assert_eq!(
            shown,
            [
                ("0001-01-01T00:00:00Z", "unavailable"),
                ("2024-05-01T10:00:01Z", "0.7"),
                // Equal once kept to the microsecond: the order reported decides.
                ("2024-05-01T10:00:02Z", "0.5"),
                ("2024-05-01T10:00:02Z", "0.50"),
            ]
        );
        assert_eq!(as_read_back(vec![log("yesterday", "loss", "1")]), None);
    }

    #[test]
    fn encoded_requests_are_prost_s_bytes_and_follow_trial_changes() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/random.yaml");
        let mut exp = katib_api::yaml::load_experiment(std::path::Path::new(path))
            .expect("the example loads")
            .experiment;
        katib_api::defaults::set_defaults(&mut exp);
        let now = "2026-11-24T00:00:00Z";
        let mut trials: Vec<Trial> = (0..4)
            .map(|i| {
                let assignments = vec![ParameterAssignment {
                    name: "lr".into(),
                    value: format!("0.0{i}"),
                }];
                let mut t = new_trial(&exp, format!("t{i}"), assignments, Default::default(), None);
                mark_created(&mut t, now);
                t
            })
            .collect();
        let finish = |t: &mut Trial, value: &str| {
            let observation = Observation {
                metrics: vec![Metric {
                    name: "accuracy".into(),
                    min: value.into(),
                    max: value.into(),
                    latest: value.into(),
                }],
            };
            apply_outcome(t, &JobOutcome::Succeeded, Some(observation), now);
        };
        finish(&mut trials[0], "0.5");
        finish(&mut trials[2], "0.7");
        let experiment = experiment_to_pb(&exp, &[]);
        let mut cache = PbCache::default();
        let check = |cache: &mut PbCache, trials: &[Trial], n: i32, total: i32| {
            let expected = pb::GetSuggestionsRequest {
                experiment: Some(experiment.clone()),
                trials: cache.request_trials(&exp, trials),
                current_request_number: n,
                total_request_number: total,
            }
            .encode_to_vec();
            assert_eq!(
                cache
                    .encoded_request(&experiment, &exp, trials, n, total)
                    .to_vec(),
                expected
            );
        };
        check(&mut cache, &trials, 2, 6);
        // A trial changes: once invalidated, both forms follow it.
        cache.invalidate(1);
        finish(&mut trials[1], "0.9");
        check(&mut cache, &trials, 1, 7);
        // Zero counts are left out, as prost leaves out default values.
        check(&mut cache, &trials, 0, 0);
    }
}

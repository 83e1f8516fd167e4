//! The Experiment reconciler.
//!
//! Each reconcile reads the Experiment and its Trials from the API server, applies Katib's
//! defaults and validation in memory, and lets the shared core ([`core::decide`]) compute
//! the status and how many assignments to request. This module only carries that out:
//! status write, Killed marks, a GetSuggestions call, Trial creation.
//!
//! Restart safety: Trials are listed with a consistent (quorum) read on every reconcile,
//! not from a watch cache, and kube-rs never runs two reconciles of one object at once; so
//! a Trial created by an earlier reconcile (or an earlier process) is always counted and
//! never created twice. Assignments fetched but not yet turned into Trials when the
//! process dies are simply requested again.
//!
//! The Suggestion object (named as the Experiment, owned by it) is kept for Katib's
//! clients, but bounded: `spec.requests`, `status.suggestionCount`, the algorithm settings
//! the service asked to persist, and conditions. The assignments themselves live in the
//! Trials (and metrics in db-manager); Katib's `status.suggestions` list, which grows
//! until etcd rejects the object, is never written.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use katib_api::conditions::{self};
use katib_api::convert::{experiment_to_pb, merge_settings, trial_to_pb};
use katib_api::crd::{
    AlgorithmSetting, Condition, EXPERIMENT_LABEL, Experiment, ExperimentStatus, ParameterAssignment,
    Suggestion, SuggestionStatus, Trial,
};
use katib_api::defaults::set_defaults;
use katib_api::pb;
use katib_api::pb::early_stopping_client::EarlyStoppingClient;
use katib_api::pb::suggestion_client::SuggestionClient;
use katib_api::time::now_rfc3339;
use katib_api::validate::{BUILTIN_ALGORITHMS, BUILTIN_EARLY_STOPPING, Known, validate_with};
use katib_controller::core::trial::{JobOutcome, apply_outcome, new_trial, random_trial_name, rules_from_pb};
use katib_controller::core::{self, SuggestionState};
use katib_controller::local::render::render_run_spec;
use kube::ResourceExt as _;
use kube::api::{Api, DynamicObject, ListParams, Patch, PostParams};
use kube::runtime::controller::Action;
use rand::SeedableRng as _;
use serde_json::{Value, json};
use tracing::{Instrument as _, debug, info, info_span, warn};

use crate::crds::{EXPERIMENT, SUGGESTION, TRIAL};
use crate::error::Error;
use crate::util::{owned_by, owner_ref, params, patch_status, typed};
use crate::{Context, trial as trial_ctl};

/// Suggestion condition types and reasons (Katib's, plus `Exhausted`).
mod sc {
    pub const CREATED: &str = "Created";
    pub const RUNNING: &str = "Running";
    pub const SUCCEEDED: &str = "Succeeded";
    pub const FAILED: &str = "Failed";
    /// katib-rs: the algorithm returned fewer assignments than requested; nothing more
    /// will come (Katib has no such signal and errors forever, issue #1213).
    pub const EXHAUSTED: &str = "Exhausted";
}

/// How often a running Experiment is reconciled even without events (a safety net; Trial
/// changes trigger reconciles through the owner watch).
const RESYNC: Duration = Duration::from_secs(60);

/// kube-rs entry point.
pub async fn reconcile(obj: Arc<DynamicObject>, ctx: Arc<Context>) -> Result<Action, Error> {
    let span = info_span!(
        "reconcile_experiment",
        namespace = obj.namespace().unwrap_or_default(),
        experiment = obj.name_any()
    );
    let result = reconcile_inner(&obj, &ctx).instrument(span).await;
    let label = match &result {
        Ok(_) => "controller=\"experiment\",result=\"ok\"".to_string(),
        Err(e) => format!("controller=\"experiment\",result=\"{}\"", e.category()),
    };
    ctx.metrics.inc("katib_reconcile_total", label, 1.0);
    result
}

/// Requeue with backoff on errors (conflicts at once: the next read is fresh).
pub fn error_policy(obj: Arc<DynamicObject>, err: &Error, _ctx: Arc<Context>) -> Action {
    if err.is_conflict() {
        debug!(experiment = obj.name_any(), "conflict; requeue");
        return Action::requeue(Duration::from_millis(200));
    }
    warn!(experiment = obj.name_any(), error = %err, "experiment reconcile failed; retrying");
    Action::requeue(backoff_for(err))
}

fn backoff_for(err: &Error) -> Duration {
    match err {
        Error::Unavailable { .. } => Duration::from_secs(5),
        Error::Decode { .. } => Duration::from_secs(300),
        _ => Duration::from_secs(2),
    }
}

/// Algorithm names validation accepts: the built-in ones and every per-algorithm override.
pub fn known_algorithms(args: &crate::Args) -> (Vec<String>, Vec<String>) {
    let mut algs: Vec<String> = BUILTIN_ALGORITHMS.iter().map(|s| s.to_string()).collect();
    algs.extend(args.suggestion_overrides.iter().map(|(n, _)| n.clone()));
    (
        algs,
        BUILTIN_EARLY_STOPPING.iter().map(|s| s.to_string()).collect(),
    )
}

async fn reconcile_inner(cached: &DynamicObject, ctx: &Context) -> Result<Action, Error> {
    let name = cached.name_any();
    let namespace = cached.namespace().unwrap_or_else(|| "default".into());
    let api = ctx.katib_api(&EXPERIMENT, &namespace);
    // A fresh read: the watch cache may not have our last status write yet, and a merge
    // patch computed against a stale status could leave stale keys behind.
    let Some(fresh) = api.get_opt(&name).await.map_err(|source| Error::Kube {
        action: "get experiment",
        name: name.clone(),
        source,
    })?
    else {
        return Ok(Action::await_change());
    };
    let obj = &fresh;
    if obj.metadata.deletion_timestamp.is_some() {
        // Trials, Suggestion and jobs go with it through owner references.
        return Ok(Action::await_change());
    }
    let old_status = obj.data.get("status").cloned();

    let mut exp: Experiment = match typed(obj) {
        Ok(e) => e,
        Err(e) => {
            // Bad input must not crash or hot-loop: report it on the object and wait for an edit.
            fail_invalid(&api, &name, old_status.as_ref(), &e.to_string()).await?;
            return Ok(Action::await_change());
        }
    };
    if exp.metadata.namespace.is_none() {
        exp.metadata.namespace = Some(namespace.clone());
    }
    let first_time = exp.status.as_ref().is_none_or(|s| s.conditions.is_empty());
    set_defaults(&mut exp);
    let (algs, early) = known_algorithms(&ctx.args);
    let algs: Vec<&str> = algs.iter().map(String::as_str).collect();
    let early: Vec<&str> = early.iter().map(String::as_str).collect();
    let errors = validate_with(
        &exp,
        &Known {
            algorithms: &algs,
            early_stopping: &early,
        },
    );
    if !errors.is_empty() {
        let msg = errors
            .iter()
            .map(|e| format!("{}: {}", e.path, e.problem))
            .collect::<Vec<_>>()
            .join("; ");
        fail_invalid(
            &api,
            &name,
            old_status.as_ref(),
            &format!("invalid Experiment: {msg}"),
        )
        .await?;
        return Ok(Action::await_change());
    }
    if first_time {
        ctx.metrics.ns("katib_experiment_created_total", &namespace);
    }
    let uid = obj.metadata.uid.clone().unwrap_or_default();

    let trial_objs = list_trials(ctx, &namespace, &name, &uid).await?;
    let trials: Vec<Trial> = trial_objs.iter().filter_map(|t| typed(t).ok()).collect();

    let sugg_api = ctx.katib_api(&SUGGESTION, &namespace);
    let sugg_obj = get_or_create_suggestion(&sugg_api, obj, &exp).await?;
    let sugg: Suggestion = typed(&sugg_obj)?;
    let sstatus = sugg.status.clone().unwrap_or_default();
    let state = SuggestionState {
        exhausted: conditions::is_true(&sstatus.conditions, sc::EXHAUSTED),
        failed: conditions::get(&sstatus.conditions, sc::FAILED)
            .filter(|c| c.status == "True")
            .map(|c| c.message.clone()),
    };

    let now = now_rfc3339();
    let decision = core::decide(&exp, &trials, &state, &now);

    // Trials still running when the experiment completed are stopped (core decision).
    for trial_name in &decision.kill {
        if let Some(t) = trial_objs.iter().find(|t| t.name_any() == *trial_name) {
            kill_trial(ctx, t, &now).await?;
        }
    }

    let was_done = exp.status.as_ref().is_some_and(|s| is_done(&s.conditions));
    write_status(
        &api,
        &name,
        exp.status.as_ref(),
        old_status.as_ref(),
        decision.status.clone(),
    )
    .await?;
    if let Some(m) = &ctx.mirror {
        // What `katib ui` shows: the status just written and every Trial as read above.
        let mut shown = exp.clone();
        shown.status = Some(decision.status.clone());
        let with_versions: Vec<(Trial, String)> = trial_objs
            .iter()
            .filter_map(|o| {
                let t = typed::<Trial>(o).ok()?;
                Some((t, o.metadata.resource_version.clone().unwrap_or_default()))
            })
            .collect();
        m.sync(&shown, &with_versions).await;
    }
    if decision.completed {
        if !was_done {
            let succeeded =
                conditions::is_true(&decision.status.conditions, conditions::experiment::SUCCEEDED);
            ctx.metrics.ns(
                if succeeded {
                    "katib_experiment_succeeded_total"
                } else {
                    "katib_experiment_failed_total"
                },
                &namespace,
            );
            info!(succeeded, trials = decision.status.trials, "experiment completed");
        }
        complete_suggestion(&sugg_api, &sugg_obj, &sstatus, &now).await?;
        return Ok(Action::await_change());
    }
    exp.status = Some(decision.status);

    if decision.request > 0 && state.failed.is_none() && !state.exhausted {
        let again = request_trials(ctx, obj, &exp, &trials, &sugg_obj, &sugg, decision.request).await?;
        if again {
            // The Suggestion failed or ran out: let the core see it now.
            return Ok(Action::requeue(Duration::from_millis(100)));
        }
    }
    Ok(Action::requeue(RESYNC))
}

fn is_done(c: &[Condition]) -> bool {
    conditions::is_true(c, conditions::experiment::SUCCEEDED)
        || conditions::is_true(c, conditions::experiment::FAILED)
}

/// Names kept in each completed-trial list of the stored status. Katib lists every trial's
/// name, so an Experiment grows by ~25 bytes per trial and passes 100 KiB at a few thousand
/// trials; the counts (`trialsSucceeded`, ...) stay exact and the newest names are kept.
/// Running and pending lists are bounded by `parallelTrialCount` already.
pub const STATUS_LIST_CAP: usize = 100;

/// Drops all but the newest [`STATUS_LIST_CAP`] names of each completed-trial list.
pub fn bound_trial_lists(s: &mut ExperimentStatus) {
    for list in [
        &mut s.succeeded_trial_list,
        &mut s.failed_trial_list,
        &mut s.killed_trial_list,
        &mut s.early_stopped_trial_list,
        &mut s.metrics_unavailable_trial_list,
    ] {
        if list.len() > STATUS_LIST_CAP {
            list.drain(..list.len() - STATUS_LIST_CAP);
        }
    }
}

/// Writes the status when anything but `lastReconcileTime` changed (writing on every
/// reconcile would trigger the next one through the watch, forever).
async fn write_status(
    api: &Api<DynamicObject>,
    name: &str,
    old: Option<&ExperimentStatus>,
    old_raw: Option<&Value>,
    mut new: ExperimentStatus,
) -> Result<(), Error> {
    // Bounded before the comparison, so a stored (bounded) status compares equal.
    bound_trial_lists(&mut new);
    let strip = |s: &ExperimentStatus| ExperimentStatus {
        last_reconcile_time: None,
        ..s.clone()
    };
    if old.is_some_and(|o| strip(o) == strip(&new)) {
        return Ok(());
    }
    if new.last_reconcile_time.is_none() {
        new.last_reconcile_time = Some(now_rfc3339());
    }
    let value = serde_json::to_value(&new).unwrap_or_default();
    patch_status(api, name, old_raw, &value).await
}

/// Marks an Experiment that cannot be read or is invalid as Failed, once.
async fn fail_invalid(
    api: &Api<DynamicObject>,
    name: &str,
    old: Option<&Value>,
    message: &str,
) -> Result<(), Error> {
    let mut status: ExperimentStatus = old
        .and_then(|v| serde_json::from_value(v.clone()).ok())
        .unwrap_or_default();
    let now = now_rfc3339();
    if conditions::get(&status.conditions, conditions::experiment::FAILED)
        .is_some_and(|c| c.message == message)
    {
        return Ok(());
    }
    warn!(%message, "experiment cannot run");
    conditions::set_terminal(
        &mut status.conditions,
        conditions::experiment::FAILED,
        conditions::experiment::REASON_FAILED,
        message,
        &now,
    );
    status.completion_time = Some(now.clone());
    status.last_reconcile_time = Some(now);
    let value = serde_json::to_value(&status).unwrap_or_default();
    patch_status(api, name, old, &value).await
}

/// The Experiment's Trials: a consistent read (not the watch cache, which may lag behind
/// our own creates), filtered to those it owns (a deleted Experiment of the same name may
/// still have Trials waiting for the garbage collector), oldest first.
async fn list_trials(
    ctx: &Context,
    namespace: &str,
    name: &str,
    uid: &str,
) -> Result<Vec<DynamicObject>, Error> {
    let api = ctx.katib_api(&TRIAL, namespace);
    let lp = ListParams::default().labels(&format!("{EXPERIMENT_LABEL}={name}"));
    let list = api.list(&lp).await.map_err(|source| Error::Kube {
        action: "list trials of",
        name: name.to_string(),
        source,
    })?;
    let mut items: Vec<DynamicObject> = list.items.into_iter().filter(|t| owned_by(t, uid)).collect();
    items.sort_by(|a, b| {
        let ka = (a.metadata.creation_timestamp.as_ref().map(|t| t.0), a.name_any());
        let kb = (b.metadata.creation_timestamp.as_ref().map(|t| t.0), b.name_any());
        ka.cmp(&kb)
    });
    Ok(items)
}

async fn get_or_create_suggestion(
    api: &Api<DynamicObject>,
    exp_obj: &DynamicObject,
    exp: &Experiment,
) -> Result<DynamicObject, Error> {
    let name = exp_obj.name_any();
    let kerr = |action, source| Error::Kube {
        action,
        name: name.clone(),
        source,
    };
    if let Some(s) = api.get_opt(&name).await.map_err(|e| kerr("get suggestion", e))? {
        // A Suggestion left by a deleted Experiment of the same name: wait for the GC.
        if owned_by(&s, exp_obj.metadata.uid.as_deref().unwrap_or_default()) {
            return Ok(s);
        }
        return Err(Error::Trial {
            trial: name.clone(),
            message: "a Suggestion of that name belongs to another Experiment (being deleted?)".into(),
        });
    }
    let mut body = json!({
        "apiVersion": katib_api::crd::API_VERSION,
        "kind": "Suggestion",
        "metadata": {
            "name": name,
            "labels": exp.metadata.labels,
            "annotations": exp.metadata.annotations,
            "ownerReferences": [owner_ref(exp_obj, katib_api::crd::API_VERSION, "Experiment")],
        },
        "spec": {
            "algorithm": exp.spec.algorithm,
            "requests": 0,
        },
    });
    if let Some(es) = &exp.spec.early_stopping {
        body["spec"]["earlyStopping"] = json!(es);
    }
    if let Some(rp) = &exp.spec.resume_policy {
        body["spec"]["resumePolicy"] = json!(rp);
    }
    let obj: DynamicObject = serde_json::from_value(body).map_err(|e| Error::Decode {
        name: name.clone(),
        message: e.to_string(),
    })?;
    let created = match api.create(&PostParams::default(), &obj).await {
        Ok(o) => o,
        Err(kube::Error::Api(s)) if s.code == 409 => {
            api.get(&name).await.map_err(|e| kerr("get suggestion", e))?
        }
        Err(e) => return Err(kerr("create suggestion", e)),
    };
    let now = now_rfc3339();
    let mut st = SuggestionStatus {
        start_time: Some(now.clone()),
        ..Default::default()
    };
    conditions::set(
        &mut st.conditions,
        sc::CREATED,
        true,
        "SuggestionCreated",
        "Suggestion is created",
        &now,
    );
    let value = serde_json::to_value(&st).unwrap_or_default();
    patch_status(api, &name, None, &value).await?;
    let mut out = created;
    out.data["status"] = value;
    Ok(out)
}

async fn write_suggestion_status(
    api: &Api<DynamicObject>,
    obj: &DynamicObject,
    new: &SuggestionStatus,
) -> Result<(), Error> {
    let value = serde_json::to_value(new).unwrap_or_default();
    patch_status(api, &obj.name_any(), obj.data.get("status"), &value).await
}

/// Katib marks the Suggestion Succeeded when the Experiment completes.
async fn complete_suggestion(
    api: &Api<DynamicObject>,
    obj: &DynamicObject,
    status: &SuggestionStatus,
    now: &str,
) -> Result<(), Error> {
    if conditions::is_true(&status.conditions, sc::SUCCEEDED)
        || conditions::is_true(&status.conditions, sc::FAILED)
    {
        return Ok(());
    }
    let mut st = status.clone();
    conditions::set_terminal(
        &mut st.conditions,
        sc::SUCCEEDED,
        "Experiment is succeeded",
        "Suggestion is succeeded, can't be restarted",
        now,
    );
    st.completion_time = Some(now.to_string());
    write_suggestion_status(api, obj, &st).await
}

/// Marks a running Trial Killed (the core decided the experiment completed); the Trial
/// reconciler then deletes its job unless `retainRun`.
async fn kill_trial(ctx: &Context, obj: &DynamicObject, now: &str) -> Result<(), Error> {
    let Ok(mut t) = typed::<Trial>(obj) else {
        return Ok(());
    };
    let before = t.status.clone();
    apply_outcome(
        &mut t,
        &JobOutcome::Killed {
            message: "Trial was stopped by katib: the experiment completed".into(),
        },
        None,
        now,
    );
    if t.status != before {
        info!(trial = obj.name_any(), "killing trial: the experiment completed");
        trial_ctl::replace_trial_status(ctx, obj, &t).await?;
    }
    Ok(())
}

/// Asks the Suggestion service for `want` assignments and creates a Trial for each.
/// Returns true when the Suggestion failed or is exhausted (reconcile again at once).
async fn request_trials(
    ctx: &Context,
    exp_obj: &DynamicObject,
    exp: &Experiment,
    trials: &[Trial],
    sugg_obj: &DynamicObject,
    sugg: &Suggestion,
    want: usize,
) -> Result<bool, Error> {
    let namespace = exp.metadata.namespace.clone().unwrap_or_default();
    let exp_name = exp.metadata.name.clone().unwrap_or_default();
    let sugg_api = ctx.katib_api(&SUGGESTION, &namespace);
    let mut sstatus = sugg.status.clone().unwrap_or_default();
    let overrides: Vec<AlgorithmSetting> = sstatus.algorithm_settings.clone();
    let algorithm = exp
        .spec
        .algorithm
        .as_ref()
        .map(|a| a.algorithm_name.clone())
        .unwrap_or_default();
    let addr = ctx.suggestion_addr(&algorithm);
    let channel = ctx.channel("suggestion", &addr)?;
    let mut client = SuggestionClient::new(channel)
        .max_decoding_message_size(i32::MAX as usize)
        .max_encoding_message_size(i32::MAX as usize);
    let now = now_rfc3339();
    let unavailable = |s: tonic::Status| Error::Unavailable {
        service: "suggestion",
        addr: addr.clone(),
        message: format!("{}: {}", s.code(), s.message()),
    };

    // Validate the settings once, before the first request (Katib: Suggestion not Running).
    if !conditions::is_true(&sstatus.conditions, sc::RUNNING) {
        let req = pb::ValidateAlgorithmSettingsRequest {
            experiment: Some(experiment_to_pb(exp, &overrides)),
        };
        let mut r = tonic::Request::new(req);
        r.set_timeout(Duration::from_secs(ctx.args.suggestion_timeout_seconds));
        match client.validate_algorithm_settings(r).await {
            Ok(_) => {}
            Err(s) if matches!(s.code(), tonic::Code::InvalidArgument | tonic::Code::Unknown) => {
                let msg = format!("Validation failed: {}", s.message());
                fail_suggestion(&sugg_api, sugg_obj, &mut sstatus, &msg, &now).await?;
                return Ok(true);
            }
            // Katib treats UNIMPLEMENTED (and, by accident, other codes) as valid; we only
            // accept UNIMPLEMENTED and retry the rest.
            Err(s) if s.code() == tonic::Code::Unimplemented => {}
            Err(s) => return Err(unavailable(s)),
        }
        conditions::set(
            &mut sstatus.conditions,
            sc::RUNNING,
            true,
            "SuggestionRunning",
            "Suggestion is running",
            &now,
        );
        write_suggestion_status(&sugg_api, sugg_obj, &sstatus).await?;
    }

    let for_algorithm: Vec<pb::Trial> = core::trials_for_suggestion(exp, trials)
        .into_iter()
        .map(trial_to_pb)
        .collect();
    let total_before = sugg.spec.requests.max(trials.len() as i32);
    let req = pb::GetSuggestionsRequest {
        experiment: Some(experiment_to_pb(exp, &overrides)),
        trials: for_algorithm.clone(),
        current_request_number: want as i32,
        total_request_number: total_before + want as i32,
    };
    let mut r = tonic::Request::new(req);
    r.set_timeout(Duration::from_secs(ctx.args.suggestion_timeout_seconds));
    let reply = match client.get_suggestions(r).await {
        Ok(r) => r.into_inner(),
        Err(s)
            if matches!(
                s.code(),
                tonic::Code::InvalidArgument | tonic::Code::FailedPrecondition
            ) =>
        {
            fail_suggestion(&sugg_api, sugg_obj, &mut sstatus, s.message(), &now).await?;
            return Ok(true);
        }
        Err(s) => return Err(unavailable(s)),
    };
    if let Some(alg) = &reply.algorithm {
        let returned: Vec<AlgorithmSetting> = alg
            .algorithm_settings
            .iter()
            .map(|s| AlgorithmSetting {
                name: s.name.clone(),
                value: s.value.clone(),
            })
            .collect();
        sstatus.algorithm_settings = merge_settings(&sstatus.algorithm_settings, &returned);
    }
    let got = reply.parameter_assignments.len().min(want);
    if got < want {
        info!(requested = want, returned = got, "the search space is exhausted");
        conditions::set(
            &mut sstatus.conditions,
            sc::EXHAUSTED,
            true,
            "SuggestionEndReached",
            &format!(
                "the algorithm returned {got} of {want} requested assignments: the search space is used up"
            ),
            &now,
        );
    }

    // Early-stopping rules of this moment go on every new Trial (Katib's behaviour).
    let rules = if exp.spec.early_stopping.is_some() && got > 0 {
        let es_addr = ctx.early_stopping_addr();
        let mut es = EarlyStoppingClient::new(ctx.channel("early-stopping", &es_addr)?);
        let mut r = tonic::Request::new(pb::GetEarlyStoppingRulesRequest {
            experiment: Some(experiment_to_pb(exp, &overrides)),
            trials: for_algorithm,
            db_manager_address: ctx.args.db_manager_address.clone(),
        });
        r.set_timeout(Duration::from_secs(60));
        match es.get_early_stopping_rules(r).await {
            Ok(r) => rules_from_pb(&r.into_inner().early_stopping_rules),
            Err(s) => {
                warn!(code = ?s.code(), message = s.message(), "GetEarlyStoppingRules failed; new trials start without rules");
                Vec::new()
            }
        }
    } else {
        Vec::new()
    };

    let trial_api = ctx.katib_api(&TRIAL, &namespace);
    // StdRng, not ThreadRng: the future must stay Send across the awaits below.
    let mut rng = rand::rngs::StdRng::from_rng(&mut rand::rng());
    let mut created = 0;
    for pa in reply.parameter_assignments.into_iter().take(want) {
        let assignments: Vec<ParameterAssignment> = pa
            .assignments
            .iter()
            .map(|a| ParameterAssignment {
                name: a.name.clone(),
                value: a.value.clone(),
            })
            .collect();
        let labels: BTreeMap<String, String> = pa.labels.into_iter().collect();
        // Up to a few names: a random name may collide with an existing Trial.
        for attempt in 0..5 {
            let name = if pa.trial_name.is_empty() {
                random_trial_name(&exp_name, &mut rng)
            } else {
                pa.trial_name.clone()
            };
            let run_spec = render_run_spec(exp, &name, &assignments);
            let mut trial = new_trial(
                exp,
                name.clone(),
                assignments.clone(),
                labels.clone(),
                run_spec.as_ref().ok().cloned(),
            );
            trial.spec.early_stopping_rules = rules.clone();
            if let Err(e) = &run_spec {
                // The Trial reconciler marks a Trial without runSpec Failed with this message.
                trial
                    .metadata
                    .annotations
                    .insert(trial_ctl::RENDER_ERROR_ANNOTATION.into(), e.to_string());
            }
            // The finalizer goes on at creation: one write less per trial.
            trial.metadata.finalizers = vec![trial_ctl::FINALIZER.to_string()];
            let mut value = serde_json::to_value(&trial).unwrap_or_default();
            value["metadata"]["ownerReferences"] =
                json!([owner_ref(exp_obj, katib_api::crd::API_VERSION, "Experiment")]);
            let obj: DynamicObject = serde_json::from_value(value).map_err(|e| Error::Decode {
                name: name.clone(),
                message: e.to_string(),
            })?;
            match trial_api.create(&PostParams::default(), &obj).await {
                Ok(_) => {
                    ctx.metrics.ns("katib_trial_created_total", &namespace);
                    info!(trial = %name, "trial created");
                    created += 1;
                    break;
                }
                Err(kube::Error::Api(s)) if s.code == 409 && pa.trial_name.is_empty() && attempt < 4 => {
                    continue;
                }
                Err(kube::Error::Api(s)) if s.code == 409 => {
                    // The algorithm named it and it exists: created by an earlier attempt.
                    break;
                }
                Err(source) => {
                    return Err(Error::Kube {
                        action: "create trial",
                        name,
                        source,
                    });
                }
            }
        }
    }
    debug!(created, "trials created");
    let requests = total_before + got as i32;
    if requests != sugg.spec.requests {
        sugg_api
            .patch(
                &sugg_obj.name_any(),
                &params(),
                &Patch::Merge(json!({"spec": {"requests": requests}})),
            )
            .await
            .map_err(|source| Error::Kube {
                action: "update suggestion",
                name: sugg_obj.name_any(),
                source,
            })?;
    }
    sstatus.suggestion_count = requests;
    write_suggestion_status(&sugg_api, sugg_obj, &sstatus).await?;
    Ok(got < want)
}

async fn fail_suggestion(
    api: &Api<DynamicObject>,
    obj: &DynamicObject,
    st: &mut SuggestionStatus,
    message: &str,
    now: &str,
) -> Result<(), Error> {
    warn!(%message, "the suggestion service rejected the experiment");
    conditions::set_terminal(&mut st.conditions, sc::FAILED, "SuggestionFailed", message, now);
    // The next reconcile hands `failed` to the core, which fails the Experiment.
    write_suggestion_status(api, obj, st).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completed_trial_lists_keep_the_newest_names_and_exact_counts() {
        let names = |n: usize| (0..n).map(|i| format!("t{i}")).collect::<Vec<_>>();
        let mut s = ExperimentStatus {
            trials: 5_000,
            trials_succeeded: 4_000,
            succeeded_trial_list: names(4_000),
            failed_trial_list: names(3),
            running_trial_list: names(150),
            ..Default::default()
        };
        bound_trial_lists(&mut s);
        assert_eq!(s.succeeded_trial_list.len(), STATUS_LIST_CAP);
        assert_eq!(s.succeeded_trial_list.first().map(String::as_str), Some("t3900"));
        assert_eq!(s.succeeded_trial_list.last().map(String::as_str), Some("t3999"));
        assert_eq!(s.failed_trial_list, names(3));
        // Running trials are all listed: the controller and users need every one.
        assert_eq!(s.running_trial_list.len(), 150);
        assert_eq!((s.trials, s.trials_succeeded), (5_000, 4_000));
        let bytes = serde_json::to_vec(&s).unwrap().len();
        assert!(bytes < 10 * 1024, "status of {bytes} bytes");
    }
}

//! The Trial reconciler.
//!
//! A Trial carries its rendered job (`spec.runSpec`). The reconciler creates the job (any
//! kind: batch Job, TFJob, PyTorchJob, ... through the dynamic API, with a controller owner
//! reference to the Trial), judges it with the Trial's `successCondition` /
//! `failureCondition` ([`crate::gjson`]), reads the observation from db-manager once the
//! job succeeded, and sets the Trial's conditions through the shared trial semantics
//! ([`katib_controller::core::trial`]). A completed Trial's job is deleted unless
//! `retainRun`. The finalizer `clean-metrics-in-db` deletes the Trial's observation logs
//! when it is deleted.
//!
//! Status is written with a PUT carrying the resourceVersion we read: the Experiment
//! reconciler also writes Trial status (Killed), and a lost update would undo it.

use std::sync::Arc;
use std::time::Duration;

use katib_api::crd::{Trial, UNAVAILABLE};
use katib_api::pb;
use katib_api::pb::db_manager_client::DbManagerClient;
use katib_api::time::now_rfc3339;
use katib_controller::core::trial::{JobOutcome, apply_outcome, mark_created, observation_from_logs};
use katib_controller::core::{self, TrialClass};
use kube::ResourceExt as _;
use kube::api::{Api, DeleteParams, DynamicObject, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{Event, finalizer};
use serde_json::{Value, json};
use tracing::{Instrument as _, debug, info, info_span, warn};

use crate::crds::TRIAL;
use crate::error::Error;
use crate::gjson::Path;
use crate::util::{owner_ref, typed};
use crate::{Context, metrics};

/// Katib's Trial finalizer.
pub const FINALIZER: &str = "clean-metrics-in-db";
/// Set on a Trial whose job could not be rendered; the reconciler fails it with this text.
pub const RENDER_ERROR_ANNOTATION: &str = "katib.kubeflow.org/render-error";

/// kube-rs entry point.
pub async fn reconcile(obj: Arc<DynamicObject>, ctx: Arc<Context>) -> Result<Action, Error> {
    let namespace = obj.namespace().unwrap_or_else(|| "default".into());
    let span = info_span!("reconcile_trial", namespace = %namespace, trial = obj.name_any());
    let api = ctx.katib_api(&TRIAL, &namespace);
    let result = finalizer(&api, FINALIZER, obj, |event| async {
        match event {
            Event::Apply(o) => apply(&o, &ctx).await,
            Event::Cleanup(o) => cleanup(&o, &ctx).await,
        }
    })
    .instrument(span)
    .await
    .map_err(|e| match e {
        kube::runtime::finalizer::Error::ApplyFailed(e)
        | kube::runtime::finalizer::Error::CleanupFailed(e) => e,
        other => Error::Finalizer(Box::new(other)),
    });
    let label = match &result {
        Ok(_) => "controller=\"trial\",result=\"ok\"".to_string(),
        Err(e) => format!("controller=\"trial\",result=\"{}\"", e.category()),
    };
    ctx.metrics.inc("katib_reconcile_total", label, 1.0);
    result
}

/// Requeue with backoff on errors (conflicts at once).
pub fn error_policy(obj: Arc<DynamicObject>, err: &Error, _ctx: Arc<Context>) -> Action {
    if err.is_conflict() {
        return Action::requeue(Duration::from_millis(200));
    }
    warn!(trial = obj.name_any(), error = %err, "trial reconcile failed; retrying");
    Action::requeue(match err {
        Error::Decode { .. } => Duration::from_secs(300),
        Error::Unavailable { .. } => Duration::from_secs(5),
        _ => Duration::from_secs(2),
    })
}

/// Writes the Trial's status with optimistic concurrency (409 => requeue and re-read).
pub async fn replace_trial_status(ctx: &Context, obj: &DynamicObject, trial: &Trial) -> Result<(), Error> {
    let namespace = obj.namespace().unwrap_or_default();
    let api = ctx.katib_api(&TRIAL, &namespace);
    let mut body = obj.clone();
    body.data["status"] = serde_json::to_value(&trial.status).unwrap_or(Value::Null);
    api.replace_status(&obj.name_any(), &PostParams::default(), &body)
        .await
        .map_err(|source| Error::Kube {
            action: "update status of",
            name: obj.name_any(),
            source,
        })?;
    Ok(())
}

fn is_deleting(o: &DynamicObject) -> bool {
    o.metadata.deletion_timestamp.is_some()
}

async fn apply(obj: &DynamicObject, ctx: &Context) -> Result<Action, Error> {
    let name = obj.name_any();
    let namespace = obj.namespace().unwrap_or_else(|| "default".into());
    let mut trial: Trial = typed(obj)?;
    let before = trial.status.clone();
    let now = now_rfc3339();
    let class = core::classify(&trial);

    let Some(run_spec) = trial.spec.run_spec.clone() else {
        if !class.is_completed() {
            let message = obj
                .annotations()
                .get(RENDER_ERROR_ANNOTATION)
                .cloned()
                .unwrap_or_else(|| "the Trial has no spec.runSpec".into());
            fail(ctx, obj, &mut trial, "InvalidTemplate", &message, &now).await?;
        }
        return Ok(Action::await_change());
    };
    let api_version = run_spec
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let kind = run_spec
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let ar = match ctx.resource(&api_version, &kind).await {
        Ok(ar) => ar,
        Err(e) if !class.is_completed() => {
            // Not served by this API server: nothing will change that for this Trial.
            fail(ctx, obj, &mut trial, "UnknownJobKind", &e.to_string(), &now).await?;
            return Ok(Action::await_change());
        }
        Err(_) => return Ok(Action::await_change()),
    };
    let jobs: Api<DynamicObject> = Api::namespaced_with(ctx.client.clone(), &namespace, &ar);
    let job = jobs.get_opt(&name).await.map_err(|source| Error::Kube {
        action: "get job",
        name: name.clone(),
        source,
    })?;

    if class.is_completed() {
        // EarlyStopped trials keep collecting their observation until the job ends.
        if class == TrialClass::EarlyStopped
            && trial
                .status
                .as_ref()
                .and_then(|s| s.observation.as_ref())
                .is_none()
            && let Some(j) = &job
            && matches!(judge(&trial, j), Ok(JobOutcome::Succeeded))
        {
            let logs = read_logs(ctx, &name).await?;
            let obs = observation_from_logs(&trial, &logs);
            apply_outcome(&mut trial, &JobOutcome::Succeeded, obs, &now);
            if trial.status != before {
                replace_trial_status(ctx, obj, &trial).await?;
                return Ok(Action::await_change());
            }
        }
        if let Some(j) = &job
            && !trial.spec.retain_run
            && !is_deleting(j)
        {
            delete_job(&jobs, &name).await?;
        }
        return Ok(Action::await_change());
    }

    let mut requeue: Option<Duration> = None;
    let outcome = match &job {
        None => {
            // The watch cache may lag behind our own status write: a Trial that completed
            // (and whose job was deleted) must not get its job back. Re-read before creating.
            let api = ctx.katib_api(&TRIAL, &namespace);
            let fresh = api.get_opt(&name).await.map_err(|source| Error::Kube {
                action: "get trial",
                name: name.clone(),
                source,
            })?;
            match fresh {
                None => return Ok(Action::await_change()),
                Some(f) if f.metadata.resource_version != obj.metadata.resource_version => {
                    // Newer than what we hold: reconcile that version instead.
                    return Ok(Action::requeue(Duration::from_millis(50)));
                }
                Some(_) => {}
            }
            create_job(&jobs, obj, run_spec).await?;
            info!(%kind, "job created");
            JobOutcome::Running
        }
        Some(j) => match judge(&trial, j) {
            Ok(o) => o,
            Err(message) => {
                fail(ctx, obj, &mut trial, "InvalidCondition", &message, &now).await?;
                return Ok(Action::await_change());
            }
        },
    };
    mark_created(&mut trial, &now);
    match &outcome {
        JobOutcome::Succeeded => {
            let logs = read_logs(ctx, &name).await?;
            let objective = trial
                .spec
                .objective
                .as_ref()
                .map(|o| o.objective_metric_name.clone())
                .unwrap_or_default();
            let has_objective = logs
                .iter()
                .any(|l| l.metric.as_ref().is_some_and(|m| m.name == objective));
            let push = trial
                .spec
                .metrics_collector
                .as_ref()
                .is_some_and(|m| m.kind() == "Push");
            let grace_over = job.as_ref().and_then(finished_at).is_none_or(|t| {
                jiff::Timestamp::now().duration_since(t).as_secs() >= ctx.args.metrics_grace_seconds as i64
            });
            if has_objective {
                let obs = observation_from_logs(&trial, &logs);
                apply_outcome(&mut trial, &outcome, obs, &now);
            } else if push || grace_over {
                // Katib records the missing objective so every reader agrees it is unavailable.
                let mut all = logs.clone();
                all.push(report_unavailable(ctx, &name, &objective).await?);
                let obs = observation_from_logs(&trial, &all);
                apply_outcome(&mut trial, &outcome, obs, &now);
            } else {
                // The collector may still be reporting: show Running, look again shortly.
                apply_outcome(&mut trial, &JobOutcome::Running, None, &now);
                requeue = Some(Duration::from_secs(2));
            }
        }
        other => apply_outcome(&mut trial, other, None, &now),
    }

    if trial.status != before {
        replace_trial_status(ctx, obj, &trial).await?;
        count_transition(&ctx.metrics, &namespace, &trial);
    }
    let done = core::classify(&trial).is_completed();
    if done
        && !trial.spec.retain_run
        && let Some(j) = &job
        && !is_deleting(j)
    {
        delete_job(&jobs, &name).await?;
    }
    Ok(match requeue {
        Some(d) => Action::requeue(d),
        None if done => Action::await_change(),
        // A safety net for job kinds installed after start-up (not watched).
        None => Action::requeue(Duration::from_secs(30)),
    })
}

fn count_transition(m: &metrics::Metrics, ns: &str, trial: &Trial) {
    match core::classify(trial) {
        TrialClass::Succeeded => m.ns("katib_trial_succeeded_total", ns),
        TrialClass::Failed => m.ns("katib_trial_failed_total", ns),
        TrialClass::MetricsUnavailable => m.ns("katib_trial_metrics_unavailable_total", ns),
        _ => {}
    }
}

/// Marks the Trial Failed (bad template, unknown kind, bad condition path).
async fn fail(
    ctx: &Context,
    obj: &DynamicObject,
    trial: &mut Trial,
    reason: &str,
    message: &str,
    now: &str,
) -> Result<(), Error> {
    warn!(trial = obj.name_any(), %reason, %message, "trial cannot run");
    mark_created(trial, now);
    apply_outcome(
        trial,
        &JobOutcome::Failed {
            reason: reason.into(),
            message: message.into(),
        },
        None,
        now,
    );
    replace_trial_status(ctx, obj, trial).await?;
    ctx.metrics
        .ns("katib_trial_failed_total", &obj.namespace().unwrap_or_default());
    Ok(())
}

/// The job's outcome by the Trial's conditions: failure first, then success (Katib's
/// order), else running. Err with a message when a condition path is not supported.
pub fn judge(trial: &Trial, job: &DynamicObject) -> Result<JobOutcome, String> {
    let success =
        Path::parse(&trial.spec.success_condition).map_err(|e| format!("spec.successCondition: {e}"))?;
    let failure =
        Path::parse(&trial.spec.failure_condition).map_err(|e| format!("spec.failureCondition: {e}"))?;
    let doc = serde_json::to_value(job).unwrap_or_default();
    let text = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
    if let Some(hit) = failure.matches(&doc) {
        return Ok(JobOutcome::Failed {
            reason: text(&hit, "reason"),
            message: text(&hit, "message"),
        });
    }
    if success.matches(&doc).is_some() {
        return Ok(JobOutcome::Succeeded);
    }
    Ok(JobOutcome::Running)
}

/// When the job finished: the last transition of a true terminal condition, or
/// `status.completionTime`.
fn finished_at(job: &DynamicObject) -> Option<jiff::Timestamp> {
    let status = job.data.get("status")?;
    let from_conditions = status
        .get("conditions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|c| c.get("status").and_then(Value::as_str) == Some("True"))
        .filter_map(|c| c.get("lastTransitionTime").and_then(Value::as_str))
        .filter_map(|t| t.parse::<jiff::Timestamp>().ok())
        .max();
    from_conditions.or_else(|| {
        status
            .get("completionTime")
            .and_then(Value::as_str)
            .and_then(|t| t.parse().ok())
    })
}

async fn create_job(
    jobs: &Api<DynamicObject>,
    trial: &DynamicObject,
    mut run_spec: Value,
) -> Result<(), Error> {
    let name = trial.name_any();
    // The job is named as the Trial (the pod webhook and the SDK rely on it).
    run_spec["metadata"]["name"] = json!(name);
    run_spec["metadata"]["namespace"] = json!(trial.namespace());
    run_spec["metadata"]["ownerReferences"] = json!([owner_ref(trial, katib_api::crd::API_VERSION, "Trial")]);
    let obj: DynamicObject = serde_json::from_value(run_spec).map_err(|e| Error::Trial {
        trial: name.clone(),
        message: format!("spec.runSpec is not a Kubernetes object: {e}"),
    })?;
    match jobs.create(&PostParams::default(), &obj).await {
        Ok(_) => Ok(()),
        // Created by an earlier reconcile whose status write did not land.
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(source) => Err(Error::Kube {
            action: "create job for",
            name,
            source,
        }),
    }
}

async fn delete_job(jobs: &Api<DynamicObject>, name: &str) -> Result<(), Error> {
    match jobs.delete(name, &DeleteParams::background()).await {
        Ok(_) => {
            debug!(job = %name, "job deleted (retain is false)");
            Ok(())
        }
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(source) => Err(Error::Kube {
            action: "delete job",
            name: name.to_string(),
            source,
        }),
    }
}

fn db_client(ctx: &Context) -> Result<DbManagerClient<tonic::transport::Channel>, Error> {
    Ok(
        DbManagerClient::new(ctx.channel("db-manager", &ctx.args.db_manager_address)?)
            .max_decoding_message_size(i32::MAX as usize),
    )
}

fn db_unavailable(ctx: &Context, s: tonic::Status) -> Error {
    Error::Unavailable {
        service: "db-manager",
        addr: ctx.args.db_manager_address.clone(),
        message: format!("{}: {}", s.code(), s.message()),
    }
}

async fn read_logs(ctx: &Context, trial: &str) -> Result<Vec<pb::MetricLog>, Error> {
    let mut db = db_client(ctx)?;
    let reply = db
        .get_observation_log(pb::GetObservationLogRequest {
            trial_name: trial.to_string(),
            ..Default::default()
        })
        .await
        .map_err(|s| db_unavailable(ctx, s))?;
    Ok(reply
        .into_inner()
        .observation_log
        .map(|o| o.metric_logs)
        .unwrap_or_default())
}

async fn report_unavailable(ctx: &Context, trial: &str, objective: &str) -> Result<pb::MetricLog, Error> {
    let log = pb::MetricLog {
        time_stamp: "0001-01-01T00:00:00Z".into(),
        metric: Some(pb::Metric {
            name: objective.to_string(),
            value: UNAVAILABLE.into(),
        }),
    };
    let mut db = db_client(ctx)?;
    db.report_observation_log(pb::ReportObservationLogRequest {
        trial_name: trial.to_string(),
        observation_log: Some(pb::ObservationLog {
            metric_logs: vec![log.clone()],
        }),
    })
    .await
    .map_err(|s| db_unavailable(ctx, s))?;
    Ok(log)
}

/// The finalizer: the Trial's observation logs go with it (Katib's `clean-metrics-in-db`).
async fn cleanup(obj: &DynamicObject, ctx: &Context) -> Result<Action, Error> {
    let name = obj.name_any();
    let mut db = db_client(ctx)?;
    db.delete_observation_log(pb::DeleteObservationLogRequest {
        trial_name: name.clone(),
    })
    .await
    .map_err(|s| db_unavailable(ctx, s))?;
    ctx.metrics
        .ns("katib_trial_deleted_total", &obj.namespace().unwrap_or_default());
    info!(trial = %name, "observation logs deleted");
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use super::*;
    use katib_api::crd::TrialSpec;

    fn trial(success: &str, failure: &str) -> Trial {
        Trial {
            api_version: String::new(),
            kind: String::new(),
            metadata: Default::default(),
            spec: TrialSpec {
                success_condition: success.into(),
                failure_condition: failure.into(),
                ..Default::default()
            },
            status: None,
        }
    }

    fn job(conditions: Value) -> DynamicObject {
        serde_json::from_value(json!({
            "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "t"},
            "status": {"conditions": conditions}
        }))
        .unwrap()
    }

    #[test]
    fn judge_uses_katibs_default_conditions() {
        let t = trial(
            r#"status.conditions.#(type=="Complete")#|#(status=="True")#"#,
            r#"status.conditions.#(type=="Failed")#|#(status=="True")#"#,
        );
        assert_eq!(judge(&t, &job(json!([]))), Ok(JobOutcome::Running));
        assert_eq!(
            judge(&t, &job(json!([{"type": "Complete", "status": "True"}]))),
            Ok(JobOutcome::Succeeded)
        );
        assert_eq!(
            judge(
                &t,
                &job(
                    json!([{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": "x"}])
                )
            ),
            Ok(JobOutcome::Failed {
                reason: "BackoffLimitExceeded".into(),
                message: "x".into()
            })
        );
        let bad = trial("status.*", "status.x");
        assert!(
            judge(&bad, &job(json!([])))
                .unwrap_err()
                .contains("spec.successCondition")
        );
    }

    #[test]
    fn finished_at_reads_the_true_condition() {
        let j = job(
            json!([{"type": "Complete", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}]),
        );
        assert_eq!(finished_at(&j), Some("2026-01-01T00:00:00Z".parse().unwrap()));
    }
}

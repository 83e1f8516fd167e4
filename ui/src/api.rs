//! The JSON API (`/api/...`), the event stream and the web app's files.
//!
//! | route | what |
//! |---|---|
//! | `GET /api/experiments?namespace=` | list: status, counts, best value (one query) |
//! | `POST /api/experiments` `{yaml}` | validate and start; 422 with problems (line, field) |
//! | `POST /api/validate` `{yaml}` | validate only |
//! | `GET /api/experiments/{ns}/{name}` | experiment, trial rows, best-so-far, importance |
//! | `DELETE /api/experiments/{ns}/{name}` | stop if running here, delete with observations |
//! | `GET /api/experiments/{ns}/{name}/intermediate` | objective curves of the latest trials |
//! | `GET /api/experiments/{ns}/{name}/trials/{trial}` | the Trial and its metric logs |
//! | `GET /api/experiments/{ns}/{name}/trials/{trial}/log` | the trial's stdout (tail) |
//! | `GET /api/events` | server-sent events ([`crate::Change`]) |

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use katib_api::crd::Experiment;
use katib_api::validate::{Known, default_and_validate};
use katib_api::yaml::{LoadError, parse_experiment};
use katib_db_manager::{LogQuery, StoreError, TrialSet};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;
use tracing::{info, warn};

use crate::analysis::{best_so_far, downsample, importance};
use crate::record::namespace_of;
use crate::{AppState, Change, LaunchError};

/// Most intermediate-value curves returned (the latest trials), and points per curve.
const MAX_CURVES: usize = 1000;
const MAX_POINTS: usize = 200;
/// Most bytes of a trial log returned (its tail).
const MAX_LOG: u64 = 512 * 1024;

/// The router: API, events, and the web app (any other path serves `index.html`).
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/api/experiments", get(list_experiments).post(create_experiment))
        .route("/api/validate", post(validate_experiment))
        .route(
            "/api/experiments/{ns}/{name}",
            get(experiment_detail).delete(delete_experiment),
        )
        .route("/api/experiments/{ns}/{name}/intermediate", get(intermediate))
        .route("/api/experiments/{ns}/{name}/trials/{trial}", get(trial_detail))
        .route("/api/experiments/{ns}/{name}/trials/{trial}/log", get(trial_log))
        .route("/api/events", get(events))
        .route("/api/info", get(info))
        .route("/api/{*rest}", get(api_not_found))
        .fallback(crate::assets::serve)
        .with_state(state)
}

/// An API error: status and a message a user can act on (JSON `{error, problems?}`).
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Conflict(String),
    #[error("the experiment YAML is invalid")]
    Invalid(Vec<Problem>),
    #[error("database error: {0}")]
    Store(String),
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        let mut msg = e.to_string();
        let mut cur = std::error::Error::source(&e);
        while let Some(c) = cur {
            msg.push_str(": ");
            msg.push_str(&c.to_string());
            cur = c.source();
        }
        warn!(error = %msg, "store error");
        ApiError::Store(msg)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self {
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let body = match &self {
            ApiError::Invalid(problems) => json!({ "error": self.to_string(), "problems": problems }),
            _ => json!({ "error": self.to_string() }),
        };
        (status, Json(body)).into_response()
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// What the create page shows: whether this server runs experiments, and where.
async fn info(State(s): State<AppState>) -> Json<Value> {
    let work_dir = s.work_dir.as_ref().map(|d| {
        std::path::absolute(d)
            .unwrap_or_else(|_| d.clone())
            .display()
            .to_string()
    });
    Json(json!({ "canLaunch": s.launcher.is_some(), "workDir": work_dir }))
}

async fn api_not_found(Path(rest): Path<String>) -> ApiError {
    ApiError::NotFound(format!("no API route /api/{rest}; see docs/ui.md for the routes"))
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    namespace: Option<String>,
}

async fn list_experiments(State(s): State<AppState>, Query(q): Query<ListQuery>) -> ApiResult<Json<Value>> {
    let ns = q.namespace.filter(|n| !n.is_empty());
    let rows = s.experiments.list_experiments(ns.as_deref()).await?;
    let items: Vec<Value> = rows
        .into_iter()
        .map(|r| {
            json!({
                "namespace": r.namespace,
                "name": r.name,
                "status": r.status,
                "created": r.created,
                "updated": r.updated,
                "summary": serde_json::from_str::<Value>(&r.summary).unwrap_or(Value::Null),
            })
        })
        .collect();
    Ok(Json(json!({ "experiments": items })))
}

/// One problem in a submitted YAML, for inline display.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Problem {
    /// 1-based line, when known.
    pub line: Option<u32>,
    /// 1-based column, when known.
    pub column: Option<u32>,
    /// Field path (`spec.parameters[0].feasibleSpace.min`), when known.
    pub field: Option<String>,
    /// What is wrong and how to fix it.
    pub message: String,
}

#[derive(Debug, Deserialize)]
struct YamlBody {
    yaml: String,
}

/// Parses, defaults and validates an Experiment YAML.
pub fn check_yaml(text: &str) -> Result<Experiment, Vec<Problem>> {
    const FILE: &str = "experiment.yaml";
    let loaded = parse_experiment(text, FILE).map_err(|e| {
        let (line, column, field) = match &e {
            LoadError::Parse {
                line, column, path, ..
            } => (Some(*line), Some(*column), path.clone()),
            LoadError::NotAnObject { line, .. }
            | LoadError::WrongKind { line, .. }
            | LoadError::WrongApiVersion { line, .. } => (Some(*line), None, None),
            _ => (None, None, None),
        };
        let message = e.to_string();
        let message = message
            .strip_prefix(&format!("{FILE}:"))
            .unwrap_or(&message)
            .to_string();
        vec![Problem {
            line,
            column,
            field,
            message: strip_position(&message),
        }]
    })?;
    default_and_validate(loaded, FILE, &Known::BUILTIN).map_err(|v| {
        let mut out: Vec<Problem> = v
            .errors
            .iter()
            .map(|e| Problem {
                line: v.line_of(e),
                column: None,
                field: Some(e.path.clone()),
                message: e.to_string(),
            })
            .collect();
        out.sort_by_key(|p| p.line.unwrap_or(u32::MAX));
        out
    })
}

/// `12:3: text` -> `text` (the position is reported in its own fields).
fn strip_position(msg: &str) -> String {
    let mut rest = msg;
    for _ in 0..2 {
        if let Some((head, tail)) = rest.split_once(':')
            && !head.is_empty()
            && head.chars().all(|c| c.is_ascii_digit())
        {
            rest = tail;
        }
    }
    rest.trim_start().to_string()
}

async fn validate_experiment(Json(body): Json<YamlBody>) -> ApiResult<Json<Value>> {
    let exp = check_yaml(&body.yaml).map_err(ApiError::Invalid)?;
    Ok(Json(json!({
        "valid": true,
        "namespace": namespace_of(&exp.metadata),
        "name": exp.metadata.name,
    })))
}

async fn create_experiment(State(s): State<AppState>, Json(body): Json<YamlBody>) -> ApiResult<Response> {
    let exp = check_yaml(&body.yaml).map_err(ApiError::Invalid)?;
    let namespace = namespace_of(&exp.metadata);
    let name = exp.metadata.name.clone().unwrap_or_default();
    let Some(launcher) = &s.launcher else {
        return Err(ApiError::BadRequest(
            "this server cannot start experiments (it was started without a runtime)".into(),
        ));
    };
    if s.experiments.get_experiment(&namespace, &name).await?.is_some() {
        return Err(ApiError::Conflict(format!(
            "experiment {namespace}/{name} already exists; delete it first or change metadata.name"
        )));
    }
    launcher.launch(exp).map_err(|e| match e {
        LaunchError::AlreadyRunning { .. } => ApiError::Conflict(e.to_string()),
        LaunchError::Unavailable(_) => ApiError::BadRequest(e.to_string()),
    })?;
    info!(%namespace, %name, "experiment started from the UI");
    Ok((
        StatusCode::CREATED,
        Json(json!({ "namespace": namespace, "name": name })),
    )
        .into_response())
}

async fn delete_experiment(
    State(s): State<AppState>,
    Path((ns, name)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let stopped = match &s.launcher {
        Some(l) => l.stop(&ns, &name).await,
        None => false,
    };
    let Some(trials) = s.experiments.delete_experiment(&ns, &name).await? else {
        return Err(ApiError::NotFound(format!("no experiment {ns}/{name}")));
    };
    for t in &trials {
        s.observations.delete(t).await?;
    }
    info!(namespace = %ns, %name, trials = trials.len(), stopped, "experiment deleted");
    s.hub.publish(Change::Deleted { namespace: ns, name });
    Ok(StatusCode::NO_CONTENT)
}

/// The experiment page: the Experiment (status trial-name lists left out), its trial
/// rows in creation order, the running best objective, and parameter importance.
async fn experiment_detail(
    State(s): State<AppState>,
    Path((ns, name)): Path<(String, String)>,
) -> ApiResult<Response> {
    let started = std::time::Instant::now();
    let (record, rows) = tokio::try_join!(
        s.experiments.get_experiment(&ns, &name),
        s.experiments.trial_rows(&ns, &name)
    )?;
    let Some(record) = record else {
        return Err(ApiError::NotFound(format!("no experiment {ns}/{name}")));
    };
    let read = started.elapsed();
    let trials = rows.len();
    let body = tokio::task::spawn_blocking(move || detail_body(record, rows))
        .await
        .map_err(|e| ApiError::Store(format!("aggregation failed: {e}")))?;
    tracing::debug!(trials, ?read, total = ?started.elapsed(), bytes = body.len(), "experiment detail");
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// The fields of a stored trial row the aggregates need (the row itself is passed
/// through as stored, never re-serialised).
#[derive(Deserialize)]
struct RowLite<'a> {
    #[serde(borrow)]
    status: std::borrow::Cow<'a, str>,
    objective: Option<f64>,
    #[serde(borrow, default)]
    params: BTreeMap<std::borrow::Cow<'a, str>, std::borrow::Cow<'a, str>>,
}

fn detail_body(record: katib_db_manager::ExperimentRecord, rows: Vec<(String, String)>) -> String {
    let typed: Option<Experiment> = serde_json::from_str(&record.body).ok();
    let mut exp: Value = typed
        .as_ref()
        .and_then(|e| serde_json::to_value(e).ok())
        .unwrap_or(Value::Null);
    if let Some(st) = exp.get_mut("status").and_then(Value::as_object_mut) {
        st.retain(|k, _| !k.ends_with("TrialList"));
    }
    let maximize = typed
        .as_ref()
        .and_then(|e| e.spec.objective.as_ref())
        .is_some_and(|o| o.is_maximize());
    let params: Vec<(String, bool)> = typed
        .as_ref()
        .map(|e| {
            e.spec
                .parameters
                .iter()
                .map(|p| {
                    (
                        p.name.clone(),
                        matches!(p.parameter_type.as_str(), "int" | "double"),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let lite: Vec<Option<RowLite<'_>>> = rows
        .iter()
        .map(|(_, row)| serde_json::from_str(row).ok())
        .collect();
    let objective: Vec<Option<f64>> = lite
        .iter()
        .map(|r| r.as_ref().and_then(|r| r.objective))
        .collect();
    let best = best_so_far(&objective, maximize);
    let done: Vec<&RowLite<'_>> = lite
        .iter()
        .flatten()
        .filter(|r| r.objective.is_some() && r.status != "Running")
        .collect();
    let names: Vec<String> = params.iter().map(|p| p.0.clone()).collect();
    let numeric: Vec<bool> = params.iter().map(|p| p.1).collect();
    let columns: Vec<Vec<Option<&str>>> = names
        .iter()
        .map(|n| {
            done.iter()
                .map(|r| r.params.get(n.as_str()).map(|v| v.as_ref()))
                .collect()
        })
        .collect();
    let y: Vec<f64> = done.iter().filter_map(|r| r.objective).collect();
    let imp = importance(&names, &numeric, &columns, &y);
    let head = json!({
        "experiment": exp,
        "status": record.status,
        "created": record.created,
        "updated": record.updated,
        "summary": serde_json::from_str::<Value>(&record.summary).unwrap_or(Value::Null),
        "bestSoFar": best,
        "importance": imp,
    })
    .to_string();
    // `{...head fields..., "trials": [stored rows]}` without re-serialising the rows.
    let mut out = String::with_capacity(head.len() + rows.iter().map(|r| r.1.len() + 1).sum::<usize>() + 16);
    out.push_str(&head[..head.len() - 1]);
    out.push_str(",\"trials\":[");
    let mut first = true;
    for ((_, row), parsed) in rows.iter().zip(&lite) {
        if parsed.is_none() {
            continue;
        }
        if !first {
            out.push(',');
        }
        first = false;
        out.push_str(row);
    }
    out.push_str("]}");
    out
}

/// Objective curves (value by report order) of the latest [`MAX_CURVES`] trials, at most
/// [`MAX_POINTS`] points each, with each trial's status (early-stopped ones are marked).
async fn intermediate(
    State(s): State<AppState>,
    Path((ns, name)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let Some(record) = s.experiments.get_experiment(&ns, &name).await? else {
        return Err(ApiError::NotFound(format!("no experiment {ns}/{name}")));
    };
    let exp: Experiment = serde_json::from_str(&record.body)
        .map_err(|e| ApiError::Store(format!("stored experiment is not readable: {e}")))?;
    let metric = exp
        .spec
        .objective
        .as_ref()
        .map(|o| o.objective_metric_name.clone())
        .unwrap_or_default();
    let recent = s
        .experiments
        .recent_trials(&ns, &name, MAX_CURVES as i64 + 1)
        .await?;
    let truncated = recent.len() > MAX_CURVES;
    let recent = &recent[recent.len().saturating_sub(MAX_CURVES)..];
    let status: BTreeMap<&str, &str> = recent.iter().map(|(n, st)| (n.as_str(), st.as_str())).collect();
    let names: Vec<String> = recent.iter().map(|r| r.0.clone()).collect();
    let logs = s
        .observations
        .get_trials(&TrialSet::Names(names.clone()), Some(&metric))
        .await?;
    let curves: Vec<Value> = names
        .iter()
        .filter_map(|n| {
            let points: Vec<f64> = logs
                .get(n)?
                .iter()
                .filter_map(|r| r.value.trim().parse::<f64>().ok())
                .filter(|v| v.is_finite())
                .collect();
            if points.is_empty() {
                return None;
            }
            let steps: Vec<(usize, f64)> = points.into_iter().enumerate().map(|(i, v)| (i + 1, v)).collect();
            Some(json!({
                "trial": n,
                "status": status.get(n.as_str()),
                "points": downsample(&steps, MAX_POINTS),
            }))
        })
        .collect();
    Ok(Json(
        json!({ "metric": metric, "curves": curves, "truncated": truncated }),
    ))
}

async fn trial_detail(
    State(s): State<AppState>,
    Path((ns, name, trial)): Path<(String, String, String)>,
) -> ApiResult<Json<Value>> {
    let Some(body) = s.experiments.get_trial(&ns, &name, &trial).await? else {
        return Err(ApiError::NotFound(format!(
            "no trial {trial} in experiment {ns}/{name}"
        )));
    };
    let rows = s.observations.get(&LogQuery::trial(&trial)).await?;
    let mut metrics: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for r in rows {
        metrics
            .entry(r.metric_name)
            .or_default()
            .push(json!({ "time": r.time.to_string(), "value": r.value }));
    }
    Ok(Json(json!({
        "trial": serde_json::from_str::<Value>(&body).unwrap_or(Value::Null),
        "metrics": metrics,
    })))
}

async fn trial_log(
    State(s): State<AppState>,
    Path((ns, name, trial)): Path<(String, String, String)>,
) -> ApiResult<Response> {
    let Some(record) = s.experiments.get_experiment(&ns, &name).await? else {
        return Err(ApiError::NotFound(format!("no experiment {ns}/{name}")));
    };
    if s.experiments.get_trial(&ns, &name, &trial).await?.is_none()
        || trial.contains(['/', '\\'])
        || trial.starts_with('.')
    {
        return Err(ApiError::NotFound(format!(
            "no trial {trial} in experiment {ns}/{name}"
        )));
    }
    let Some(run_dir) = record.run_dir else {
        return Err(ApiError::NotFound(format!(
            "experiment {ns}/{name} has no local run directory"
        )));
    };
    let path = std::path::Path::new(&run_dir).join(&trial).join("stdout.log");
    // The local runtime creates a trial's log with its first line: no file in a run
    // directory that is still there means the trial has printed nothing (yet).
    let missing = |e: &std::io::Error| e.kind() == std::io::ErrorKind::NotFound;
    let text = match read_tail(&path).await {
        Err(e) if missing(&e) && tokio::fs::metadata(&run_dir).await.is_ok_and(|m| m.is_dir()) => {
            Ok(String::new())
        }
        other => other,
    };
    let text = text.map_err(|e| {
        ApiError::NotFound(format!(
            "cannot read the log {}: {e} (the run directory may have been removed)",
            path.display()
        ))
    })?;
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response())
}

async fn read_tail(path: &std::path::Path) -> std::io::Result<String> {
    use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _};
    let mut f = tokio::fs::File::open(path).await?;
    let len = f.metadata().await?.len();
    if len > MAX_LOG {
        f.seek(std::io::SeekFrom::Start(len - MAX_LOG)).await?;
    }
    let mut buf = Vec::new();
    f.read_to_end(&mut buf).await?;
    let mut text = String::from_utf8_lossy(&buf).into_owned();
    if len > MAX_LOG {
        text.insert_str(
            0,
            &format!("[... {} earlier bytes not shown ...]\n", len - MAX_LOG),
        );
    }
    Ok(text)
}

/// Server-sent events: every [`Change`] as a JSON `data:` line; a `lagged` event tells a
/// slow client to reload.
async fn events(State(s): State<AppState>) -> Sse<impl futures::Stream<Item = Result<Event, Infallible>>> {
    let rx = s.hub.subscribe();
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        let event = match rx.recv().await {
            Ok(change) => Event::default().data(serde_json::to_string(&change).unwrap_or_default()),
            Err(RecvError::Lagged(n)) => {
                Event::default().data(json!({ "type": "lagged", "missed": n }).to_string())
            }
            Err(RecvError::Closed) => return None,
        };
        Some((Ok(event), rx))
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::sync::{Arc, Mutex};

    use axum::body::Body;
    use axum::http::{Method, Request};
    use http_body_util::BodyExt as _;
    use katib_api::crd::{Condition, Metric, Observation, OptimalTrial, Trial, TrialStatus};
    use katib_db_manager::{ExperimentStore, MetricRow, ObservationStore, SqliteStore};
    use tower::ServiceExt as _;

    use super::*;
    use crate::record::Recorder;
    use crate::{Hub, Launcher};

    const EXAMPLE: &str = include_str!("../../examples/random.yaml");

    #[derive(Default)]
    struct FakeLauncher(Mutex<Vec<String>>);

    impl Launcher for FakeLauncher {
        fn launch(&self, exp: Experiment) -> Result<(), LaunchError> {
            self.0.lock().unwrap().push(exp.metadata.name.unwrap_or_default());
            Ok(())
        }
        fn stop<'a>(
            &'a self,
            _: &'a str,
            _: &'a str,
        ) -> std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send + 'a>> {
            Box::pin(async { false })
        }
    }

    async fn state(launcher: Option<Arc<dyn Launcher>>) -> (AppState, Arc<SqliteStore>) {
        let store = Arc::new(SqliteStore::open("sqlite::memory:").await.unwrap());
        let state = AppState {
            experiments: store.clone(),
            observations: store.clone(),
            hub: Hub::default(),
            launcher,
            work_dir: Some(PathBuf::from(".")),
        };
        (state, store)
    }

    fn cond(t: &str) -> Condition {
        Condition {
            type_: t.into(),
            status: "True".into(),
            ..Default::default()
        }
    }

    fn trial(exp: &Experiment, name: &str, lr: &str, opt: &str, acc: Option<&str>) -> Trial {
        let mut spec = katib_api::crd::TrialSpec {
            objective: exp.spec.objective.clone(),
            ..Default::default()
        };
        spec.parameter_assignments = vec![
            katib_api::crd::NameValue {
                name: "lr".into(),
                value: lr.into(),
            },
            katib_api::crd::NameValue {
                name: "momentum".into(),
                value: "0.9".into(),
            },
            katib_api::crd::NameValue {
                name: "optimizer".into(),
                value: opt.into(),
            },
        ];
        Trial {
            api_version: "kubeflow.org/v1beta1".into(),
            kind: "Trial".into(),
            metadata: katib_api::crd::ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            spec,
            status: Some(TrialStatus {
                conditions: vec![
                    cond("Created"),
                    cond(if acc.is_some() { "Succeeded" } else { "Running" }),
                ],
                observation: acc.map(|a| Observation {
                    metrics: vec![Metric {
                        name: "accuracy".into(),
                        min: a.into(),
                        max: a.into(),
                        latest: a.into(),
                    }],
                }),
                ..Default::default()
            }),
        }
    }

    /// Records the example with three trials (two done) through the recorder, as a run does.
    async fn seed(state: &AppState, store: &SqliteStore, run_dir: Option<String>) -> Experiment {
        let mut exp = check_yaml(EXAMPLE).unwrap();
        exp.status = Some(katib_api::crd::ExperimentStatus {
            conditions: vec![cond("Created"), cond("Running")],
            trials: 3,
            trials_succeeded: 2,
            trials_running: 1,
            current_optimal_trial: Some(OptimalTrial {
                best_trial_name: "t-b".into(),
                parameter_assignments: vec![],
                observation: Observation {
                    metrics: vec![Metric {
                        name: "accuracy".into(),
                        min: "0.9".into(),
                        max: "0.9".into(),
                        latest: "0.9".into(),
                    }],
                },
            }),
            ..Default::default()
        });
        let mut rec = Recorder::new(state.experiments.clone(), state.hub.clone(), run_dir);
        rec.experiment(&exp).await.unwrap();
        let trials = [
            trial(&exp, "t-a", "0.01", "sgd", Some("0.5")),
            trial(&exp, "t-b", "0.1", "adam", Some("0.9")),
            trial(&exp, "t-c", "0.2", "adam", None),
        ];
        rec.trials(&exp, &trials).await.unwrap();
        let t0 = jiff::Timestamp::from_second(1_700_000_000).unwrap();
        for (i, v) in ["0.3", "0.6", "0.9"].iter().enumerate() {
            let t = t0 + jiff::SignedDuration::from_secs(i as i64);
            store
                .report("t-b", &[MetricRow::new(t, "accuracy", *v)])
                .await
                .unwrap();
        }
        exp
    }

    async fn get(app: &Router, uri: &str) -> (StatusCode, Value, String) {
        send(app, Method::GET, uri, None).await
    }

    async fn send(
        app: &Router,
        method: Method,
        uri: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value, String) {
        let mut req = Request::builder().method(method).uri(uri);
        let body = match body {
            Some(b) => {
                req = req.header("content-type", "application/json");
                Body::from(b.to_string())
            }
            None => Body::empty(),
        };
        let res = app.clone().oneshot(req.body(body).unwrap()).await.unwrap();
        let status = res.status();
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null), text)
    }

    #[tokio::test]
    async fn list_detail_trial_and_intermediate() {
        let (state, store) = state(None).await;
        let app = app(state.clone());
        let (code, body, _) = get(&app, "/api/experiments").await;
        assert_eq!(code, StatusCode::OK);
        assert_eq!(body["experiments"], json!([]));

        seed(&state, &store, None).await;
        let (_, body, _) = get(&app, "/api/experiments?namespace=kubeflow").await;
        let e = &body["experiments"][0];
        assert_eq!(e["name"], "random-example");
        assert_eq!(e["status"], "Running");
        assert_eq!(e["summary"]["bestValue"], 0.9);
        assert_eq!(e["summary"]["succeeded"], 2);
        let (_, body, _) = get(&app, "/api/experiments?namespace=other").await;
        assert_eq!(body["experiments"], json!([]));

        let (code, d, _) = get(&app, "/api/experiments/kubeflow/random-example").await;
        assert_eq!(code, StatusCode::OK);
        let names: Vec<&str> = d["trials"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["t-a", "t-b", "t-c"]);
        assert_eq!(d["trials"][1]["objective"], 0.9);
        assert_eq!(d["trials"][1]["params"]["optimizer"], "adam");
        assert_eq!(d["trials"][2]["status"], "Running");
        assert_eq!(d["bestSoFar"], json!([0.5, 0.9, 0.9]));
        assert_eq!(d["importance"].as_array().unwrap().len(), 3);
        assert_eq!(
            d["experiment"]["spec"]["objective"]["objectiveMetricName"],
            "accuracy"
        );

        let (code, t, _) = get(&app, "/api/experiments/kubeflow/random-example/trials/t-b").await;
        assert_eq!(code, StatusCode::OK);
        assert_eq!(t["trial"]["metadata"]["name"], "t-b");
        assert_eq!(t["metrics"]["accuracy"].as_array().unwrap().len(), 3);

        let (_, i, _) = get(&app, "/api/experiments/kubeflow/random-example/intermediate").await;
        assert_eq!(i["metric"], "accuracy");
        assert_eq!(i["curves"][0]["trial"], "t-b");
        assert_eq!(i["curves"][0]["points"], json!([[1, 0.3], [2, 0.6], [3, 0.9]]));

        let (code, body, _) = get(&app, "/api/experiments/kubeflow/nope").await;
        assert_eq!(code, StatusCode::NOT_FOUND);
        assert!(body["error"].as_str().unwrap().contains("kubeflow/nope"));
        let (code, _, _) = get(&app, "/api/experiments/kubeflow/random-example/trials/zzz").await;
        assert_eq!(code, StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn trial_log_is_read_from_the_run_dir_only() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("t-b")).unwrap();
        std::fs::write(dir.path().join("t-b/stdout.log"), "epoch 1: accuracy=0.3\n").unwrap();
        let (state, store) = state(None).await;
        seed(&state, &store, Some(dir.path().display().to_string())).await;
        let app = app(state);
        let (code, _, text) = get(&app, "/api/experiments/kubeflow/random-example/trials/t-b/log").await;
        assert_eq!(code, StatusCode::OK);
        assert!(text.contains("accuracy=0.3"));
        // A trial that has printed nothing has no log file yet: an empty log.
        let (code, _, text) = get(&app, "/api/experiments/kubeflow/random-example/trials/t-a/log").await;
        assert_eq!((code, text.as_str()), (StatusCode::OK, ""));
        // A name that is not a trial.
        let (code, _, _) = get(
            &app,
            "/api/experiments/kubeflow/random-example/trials/..%2F..%2Fetc/log",
        )
        .await;
        assert_eq!(code, StatusCode::NOT_FOUND);
        // The run directory removed: the log is gone, and the error says why.
        drop(dir);
        let (code, body, _) = get(&app, "/api/experiments/kubeflow/random-example/trials/t-a/log").await;
        assert_eq!(code, StatusCode::NOT_FOUND);
        assert!(
            body["error"].as_str().unwrap().contains("may have been removed"),
            "{body}"
        );
    }

    #[tokio::test]
    async fn validate_and_create() {
        let launcher = Arc::new(FakeLauncher::default());
        let (state, store) = state(Some(launcher.clone())).await;
        let app = app(state.clone());
        let bad = EXAMPLE.replace("maxTrialCount: 12", "maxTrialCount: -1");
        let (code, body, _) = send(&app, Method::POST, "/api/validate", Some(json!({ "yaml": bad }))).await;
        assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY);
        let problems = body["problems"].as_array().unwrap();
        let line = EXAMPLE.lines().position(|l| l.contains("maxTrialCount")).unwrap() as u64 + 1;
        assert!(
            problems
                .iter()
                .any(|p| p["field"] == "spec.maxTrialCount" && p["line"] == line),
            "{problems:?}"
        );
        let (code, body, _) = send(
            &app,
            Method::POST,
            "/api/validate",
            Some(json!({ "yaml": "kind: [" })),
        )
        .await;
        assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(body["problems"][0]["line"].is_number());
        let (code, body, _) = send(
            &app,
            Method::POST,
            "/api/validate",
            Some(json!({ "yaml": EXAMPLE })),
        )
        .await;
        assert_eq!(code, StatusCode::OK);
        assert_eq!(body["name"], "random-example");
        // A body that is not the expected JSON is a 4xx, not a panic.
        let (code, _, _) = send(&app, Method::POST, "/api/validate", Some(json!({ "nope": 1 }))).await;
        assert!(code.is_client_error());

        let (code, body, _) = send(
            &app,
            Method::POST,
            "/api/experiments",
            Some(json!({ "yaml": EXAMPLE })),
        )
        .await;
        assert_eq!(code, StatusCode::CREATED, "{body}");
        assert_eq!(body, json!({ "namespace": "kubeflow", "name": "random-example" }));
        assert_eq!(*launcher.0.lock().unwrap(), ["random-example"]);
        // Once recorded, the same name is a conflict.
        seed(&state, &store, None).await;
        let (code, body, _) = send(
            &app,
            Method::POST,
            "/api/experiments",
            Some(json!({ "yaml": EXAMPLE })),
        )
        .await;
        assert_eq!(code, StatusCode::CONFLICT);
        assert!(body["error"].as_str().unwrap().contains("already exists"));
        let (code, _, _) = send(
            &app,
            Method::POST,
            "/api/experiments",
            Some(json!({ "yaml": bad })),
        )
        .await;
        assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY);
    }

    #[tokio::test]
    async fn create_without_a_runtime_is_refused() {
        let (state, _) = state(None).await;
        let (code, body, _) = send(
            &app(state),
            Method::POST,
            "/api/experiments",
            Some(json!({ "yaml": EXAMPLE })),
        )
        .await;
        assert_eq!(code, StatusCode::BAD_REQUEST);
        assert!(body["error"].as_str().unwrap().contains("cannot start"));
    }

    #[tokio::test]
    async fn delete_removes_experiment_trials_and_observations() {
        let (state, store) = state(None).await;
        seed(&state, &store, None).await;
        let mut events = state.hub.subscribe();
        let app = app(state);
        let (code, _, _) = send(
            &app,
            Method::DELETE,
            "/api/experiments/kubeflow/random-example",
            None,
        )
        .await;
        assert_eq!(code, StatusCode::NO_CONTENT);
        assert!(matches!(events.recv().await.unwrap(), Change::Deleted { .. }));
        assert!(store.get(&LogQuery::trial("t-b")).await.unwrap().is_empty());
        assert!(
            store
                .trial_rows("kubeflow", "random-example")
                .await
                .unwrap()
                .is_empty()
        );
        let (code, _, _) = send(
            &app,
            Method::DELETE,
            "/api/experiments/kubeflow/random-example",
            None,
        )
        .await;
        assert_eq!(code, StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn events_stream_changes() {
        let (state, store) = state(None).await;
        let app = app(state.clone());
        let res = app
            .oneshot(Request::builder().uri("/api/events").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(res.headers()["content-type"], "text/event-stream");
        seed(&state, &store, None).await;
        let mut body = res.into_body();
        let frame = body.frame().await.unwrap().unwrap();
        let text = String::from_utf8_lossy(frame.data_ref().unwrap()).into_owned();
        assert!(text.starts_with("data: {\"type\":\"experiment\""), "{text}");
    }

    #[tokio::test]
    async fn static_files_and_unknown_routes() {
        let (state, _) = state(None).await;
        let app = app(state);
        let (code, _, text) = get(&app, "/e/some/page").await;
        assert_eq!(code, StatusCode::OK);
        assert!(text.contains("<html") || text.contains("<!doctype"), "{text}");
        let (code, body, _) = get(&app, "/api/info").await;
        assert_eq!(code, StatusCode::OK);
        assert_eq!(body["canLaunch"], false);
        assert!(body["workDir"].as_str().unwrap().starts_with('/'));
        let (code, body, _) = get(&app, "/api/nothing/here").await;
        assert_eq!(code, StatusCode::NOT_FOUND);
        assert!(body["error"].as_str().unwrap().contains("/api/nothing/here"));
        let (code, _, _) = get(&app, "/assets/missing.js").await;
        assert_eq!(code, StatusCode::NOT_FOUND);
    }

    #[test]
    fn yaml_problems_have_lines_and_fields() {
        let bad = "apiVersion: kubeflow.org/v1beta1\nkind: Experiment\nmetadata:\n  name: x\nspec:\n  maxTrialCount: -3\n";
        let problems = check_yaml(bad).unwrap_err();
        assert!(!problems.is_empty());
        assert!(
            problems.iter().any(|p| p.field.is_some() && p.line.is_some()),
            "{problems:?}"
        );
        let syntax = check_yaml("apiVersion: [\n").unwrap_err();
        assert_eq!(syntax.len(), 1);
        assert!(syntax[0].line.is_some(), "{syntax:?}");
    }

    #[test]
    fn strips_positions() {
        assert_eq!(strip_position("12:3: bad"), "bad");
        assert_eq!(strip_position("12: bad"), "bad");
        assert_eq!(strip_position("spec.x: bad"), "spec.x: bad");
    }
}

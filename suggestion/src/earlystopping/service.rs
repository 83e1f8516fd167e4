//! The `api.v1.beta1.EarlyStopping` gRPC service.
//!
//! - `GetEarlyStoppingRules(experiment, trials, db_manager_address)`: reads the objective
//!   values of the trials the algorithm uses from db-manager (`GetObservationLog`, one call
//!   per trial and metric; finished trials are read once and remembered), and answers the
//!   algorithm's rules. Stateless otherwise: settings are read from every request (Katib's
//!   service keeps the first request's).
//! - `SetTrialStatus(trial_name)`: hands the trial to the [`TrialStatusSink`] of the runtime
//!   that owns trial status (the local runtime marks it EarlyStopped, reason
//!   `TrialEarlyStopped`; Katib's service patches the Trial's status on Kubernetes). A
//!   service started without one answers `FAILED_PRECONDITION`.
//! - `ValidateEarlyStoppingSettings(early_stopping)`: the algorithm must be served and its
//!   settings valid; otherwise `INVALID_ARGUMENT` listing every problem.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use katib_api::pb;
use katib_api::pb::db_manager_client::DbManagerClient;
use katib_api::pb::early_stopping_server::EarlyStopping;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};
use tracing::{Instrument as _, debug, info, info_span, warn};

use super::{EarlyStoppingError, EarlyStoppingSettings, Objective, TrialCurve};
use crate::algorithm::TrialCondition;

/// Deadline of one `GetObservationLog` call (Katib: 120 s).
const DB_TIMEOUT: Duration = Duration::from_secs(60);

/// Whoever owns trial status: told when a trial was early stopped.
#[tonic::async_trait]
pub trait TrialStatusSink: Send + Sync {
    /// Marks `trial` EarlyStopped (reason `TrialEarlyStopped`).
    async fn early_stopped(&self, trial: &str) -> Result<(), TrialStatusError>;
}

/// Why a trial could not be marked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrialStatusError {
    /// No such trial in the runtime.
    #[error("trial {trial:?} is not a trial of a running experiment")]
    NotFound {
        /// The trial asked for.
        trial: String,
    },
    /// The runtime is gone or cannot answer.
    #[error("cannot update the trial's status: {0}")]
    Unavailable(String),
}

/// The EarlyStopping service (`medianstop`, `asha`).
#[derive(Clone, Default)]
pub struct EarlyStoppingService {
    trial_status: Option<Arc<dyn TrialStatusSink>>,
    db: Arc<Mutex<HashMap<String, DbManagerClient<Channel>>>>,
    finished: Arc<Mutex<HashMap<(String, String), Logs>>>,
}

/// One trial's observation logs of one metric.
type Logs = Arc<Vec<pb::MetricLog>>;

impl std::fmt::Debug for EarlyStoppingService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EarlyStoppingService")
            .field("trial_status", &self.trial_status.is_some())
            .finish()
    }
}

/// Trials whose logs no longer change.
fn is_finished(condition: TrialCondition) -> bool {
    matches!(
        condition,
        TrialCondition::Succeeded
            | TrialCondition::Failed
            | TrialCondition::Killed
            | TrialCondition::Earlystopped
    )
}

impl EarlyStoppingService {
    /// A standalone service: `SetTrialStatus` answers `FAILED_PRECONDITION`.
    pub fn new() -> Self {
        Self::default()
    }

    /// A service whose `SetTrialStatus` is carried out by `sink`.
    pub fn with_trial_status(sink: Arc<dyn TrialStatusSink>) -> Self {
        Self {
            trial_status: Some(sink),
            ..Self::default()
        }
    }

    /// `ValidateEarlyStoppingSettings` without tonic.
    pub fn validate(
        &self,
        request: &pb::ValidateEarlyStoppingSettingsRequest,
    ) -> Result<(), EarlyStoppingError> {
        let spec = request.early_stopping.as_ref().ok_or_else(|| {
            EarlyStoppingError::InvalidRequest(
                "ValidateEarlyStoppingSettingsRequest.early_stopping is missing".into(),
            )
        })?;
        EarlyStoppingSettings::from_spec(spec).map(|_| ())
    }

    /// `GetEarlyStoppingRules` without tonic.
    pub async fn rules(
        &self,
        request: pb::GetEarlyStoppingRulesRequest,
    ) -> Result<pb::GetEarlyStoppingRulesReply, EarlyStoppingError> {
        let experiment = request.experiment.as_ref().ok_or_else(|| {
            EarlyStoppingError::InvalidRequest("GetEarlyStoppingRulesRequest.experiment is missing".into())
        })?;
        let spec = experiment
            .spec
            .as_ref()
            .and_then(|s| s.early_stopping.as_ref())
            .ok_or_else(|| {
                EarlyStoppingError::InvalidRequest("experiment.spec.early_stopping is missing".into())
            })?;
        let settings = EarlyStoppingSettings::from_spec(spec)?;
        let objective = Objective::from_experiment(experiment)?;
        let wanted: Vec<(&str, TrialCondition)> = request
            .trials
            .iter()
            .filter_map(|t| {
                let condition = t
                    .status
                    .as_ref()
                    .and_then(|s| TrialCondition::try_from(s.condition).ok())
                    .unwrap_or(TrialCondition::Unknown);
                (settings.wants(condition) && !t.name.is_empty()).then_some((t.name.as_str(), condition))
            })
            .collect();
        let mut curves = Vec::with_capacity(wanted.len());
        if !wanted.is_empty() {
            let address = request.db_manager_address.as_str();
            let mut db = self.db_client(address)?;
            for (trial, condition) in wanted {
                let logs = self
                    .logs(&mut db, address, trial, &objective.metric, condition)
                    .await?;
                let resource = match settings.resource_metric() {
                    Some(metric) => Some(self.logs(&mut db, address, trial, metric, condition).await?),
                    None => None,
                };
                curves.push(TrialCurve::from_logs(
                    trial,
                    condition,
                    &logs,
                    resource.as_ref().map(|r| r.as_slice()),
                ));
            }
        }
        let rules = settings.rules(&objective, &curves);
        let shown: Vec<String> = rules
            .iter()
            .map(|r| format!("{}:{}@{}", r.name, r.value, r.start_step))
            .collect();
        debug!(trials = curves.len(), rules = ?shown, "early-stopping rules");
        Ok(pb::GetEarlyStoppingRulesReply {
            early_stopping_rules: rules,
        })
    }

    /// `SetTrialStatus` without tonic.
    pub async fn set_trial_status(
        &self,
        request: &pb::SetTrialStatusRequest,
    ) -> Result<(), EarlyStoppingError> {
        if request.trial_name.is_empty() {
            return Err(EarlyStoppingError::InvalidRequest(
                "SetTrialStatusRequest.trial_name is empty".into(),
            ));
        }
        let sink = self.trial_status.as_ref().ok_or(EarlyStoppingError::NoRuntime)?;
        sink.early_stopped(&request.trial_name).await?;
        info!(trial = %request.trial_name, "trial marked early stopped");
        Ok(())
    }

    fn db_client(&self, address: &str) -> Result<DbManagerClient<Channel>, EarlyStoppingError> {
        let bad = || {
            EarlyStoppingError::InvalidRequest(format!(
                "db_manager_address {address:?} must be HOST:PORT, e.g. katib-db-manager.kubeflow:6789"
            ))
        };
        match address.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {}
            _ => return Err(bad()),
        }
        let mut clients = self.db.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = clients.get(address) {
            return Ok(c.clone());
        }
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{address}"))
            .map_err(|_| bad())?
            .connect_timeout(Duration::from_secs(10))
            .connect_lazy();
        let client = DbManagerClient::new(channel).max_decoding_message_size(i32::MAX as usize);
        clients.insert(address.to_owned(), client.clone());
        Ok(client)
    }

    async fn logs(
        &self,
        db: &mut DbManagerClient<Channel>,
        address: &str,
        trial: &str,
        metric: &str,
        condition: TrialCondition,
    ) -> Result<Logs, EarlyStoppingError> {
        let key = (trial.to_owned(), metric.to_owned());
        if let Some(logs) = self.finished.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
            return Ok(logs.clone());
        }
        let mut request = Request::new(pb::GetObservationLogRequest {
            trial_name: trial.to_owned(),
            metric_name: metric.to_owned(),
            ..Default::default()
        });
        request.set_timeout(DB_TIMEOUT);
        let reply =
            db.get_observation_log(request)
                .await
                .map_err(|source| EarlyStoppingError::ObservationLog {
                    trial: trial.to_owned(),
                    address: address.to_owned(),
                    source,
                })?;
        let logs = Arc::new(
            reply
                .into_inner()
                .observation_log
                .map(|l| l.metric_logs)
                .unwrap_or_default(),
        );
        if is_finished(condition) {
            self.finished
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(key, logs.clone());
        }
        Ok(logs)
    }
}

fn span(rpc: &'static str, algorithm: &str, experiment: &str) -> tracing::Span {
    info_span!("early_stopping", rpc, algorithm, experiment)
}

#[tonic::async_trait]
impl EarlyStopping for EarlyStoppingService {
    async fn get_early_stopping_rules(
        &self,
        request: Request<pb::GetEarlyStoppingRulesRequest>,
    ) -> Result<Response<pb::GetEarlyStoppingRulesReply>, Status> {
        let request = request.into_inner();
        let experiment = request.experiment.as_ref();
        let algorithm = experiment
            .and_then(|e| e.spec.as_ref())
            .and_then(|s| s.early_stopping.as_ref())
            .map(|e| e.algorithm_name.clone())
            .unwrap_or_default();
        let name = experiment.map(|e| e.name.clone()).unwrap_or_default();
        async move {
            let result = self.rules(request).await;
            if let Err(err) = &result {
                warn!(error = %err, "GetEarlyStoppingRules failed");
            }
            Ok(Response::new(result?))
        }
        .instrument(span("GetEarlyStoppingRules", &algorithm, &name))
        .await
    }

    async fn set_trial_status(
        &self,
        request: Request<pb::SetTrialStatusRequest>,
    ) -> Result<Response<pb::SetTrialStatusReply>, Status> {
        let request = request.into_inner();
        async move {
            let result = self.set_trial_status(&request).await;
            if let Err(err) = &result {
                warn!(trial = %request.trial_name, error = %err, "SetTrialStatus failed");
            }
            result?;
            Ok(Response::new(pb::SetTrialStatusReply {}))
        }
        .instrument(span("SetTrialStatus", "", ""))
        .await
    }

    async fn validate_early_stopping_settings(
        &self,
        request: Request<pb::ValidateEarlyStoppingSettingsRequest>,
    ) -> Result<Response<pb::ValidateEarlyStoppingSettingsReply>, Status> {
        let request = request.into_inner();
        let algorithm = request
            .early_stopping
            .as_ref()
            .map(|e| e.algorithm_name.clone())
            .unwrap_or_default();
        span("ValidateEarlyStoppingSettings", &algorithm, "").in_scope(|| {
            let result = self.validate(&request);
            if let Err(err) = &result {
                info!(error = %err, "early-stopping settings rejected");
            }
            result?;
            Ok(Response::new(pb::ValidateEarlyStoppingSettingsReply {}))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::earlystopping::testing::es_settings;
    use katib_api::pb::early_stopping_client::EarlyStoppingClient;
    use pb::trial_status::TrialConditionType as C;

    /// A db-manager that serves fixed logs per (trial, metric) and counts calls.
    #[derive(Default, Clone)]
    struct FakeDb {
        logs: Arc<HashMap<(String, String), Vec<pb::MetricLog>>>,
        calls: Arc<Mutex<Vec<String>>>,
    }

    #[tonic::async_trait]
    impl pb::db_manager_server::DbManager for FakeDb {
        async fn report_observation_log(
            &self,
            _: Request<pb::ReportObservationLogRequest>,
        ) -> Result<Response<pb::ReportObservationLogReply>, Status> {
            Err(Status::unimplemented("fake"))
        }
        async fn get_observation_log(
            &self,
            r: Request<pb::GetObservationLogRequest>,
        ) -> Result<Response<pb::GetObservationLogReply>, Status> {
            let r = r.into_inner();
            self.calls.lock().unwrap().push(r.trial_name.clone());
            let logs = self
                .logs
                .get(&(r.trial_name, r.metric_name))
                .cloned()
                .unwrap_or_default();
            Ok(Response::new(pb::GetObservationLogReply {
                observation_log: Some(pb::ObservationLog { metric_logs: logs }),
            }))
        }
        async fn delete_observation_log(
            &self,
            _: Request<pb::DeleteObservationLogRequest>,
        ) -> Result<Response<pb::DeleteObservationLogReply>, Status> {
            Err(Status::unimplemented("fake"))
        }
    }

    async fn start_db(db: FakeDb) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(pb::db_manager_server::DbManagerServer::new(db))
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        addr
    }

    fn curve_logs(trial: &str, values: &[f64]) -> Vec<((String, String), Vec<pb::MetricLog>)> {
        let logs = values
            .iter()
            .enumerate()
            .map(|(i, v)| pb::MetricLog {
                time_stamp: format!("2026-01-01T00:00:{i:02}Z"),
                metric: Some(pb::Metric {
                    name: "acc".into(),
                    value: v.to_string(),
                }),
            })
            .collect();
        vec![((trial.to_owned(), "acc".to_owned()), logs)]
    }

    fn experiment(algorithm: &str, settings: &[(&str, &str)]) -> pb::Experiment {
        pb::Experiment {
            name: "exp".into(),
            spec: Some(pb::ExperimentSpec {
                objective: Some(pb::ObjectiveSpec {
                    r#type: pb::ObjectiveType::Maximize as i32,
                    objective_metric_name: "acc".into(),
                    ..Default::default()
                }),
                early_stopping: Some(pb::EarlyStoppingSpec {
                    algorithm_name: algorithm.into(),
                    algorithm_settings: es_settings(settings),
                }),
                ..Default::default()
            }),
        }
    }

    fn trial(name: &str, condition: C) -> pb::Trial {
        pb::Trial {
            name: name.into(),
            spec: None,
            status: Some(pb::TrialStatus {
                condition: condition as i32,
                ..Default::default()
            }),
        }
    }

    fn values(reply: &pb::GetEarlyStoppingRulesReply) -> Vec<(String, i32)> {
        reply
            .early_stopping_rules
            .iter()
            .map(|r| (r.value.clone(), r.start_step))
            .collect()
    }

    #[tokio::test]
    async fn medianstop_reads_succeeded_trials_once_from_db_manager() {
        let db = FakeDb {
            logs: Arc::new(
                [
                    curve_logs("a", &[0.2, 0.4, 0.9, 0.9, 1.0]), // first 4: avg 0.6
                    curve_logs("b", &[0.4, 0.4, 0.4, 0.4]),      // 0.4
                    curve_logs("c", &[0.8, 0.8, 0.8, 0.8]),      // 0.8
                    curve_logs("r", &[0.0]),
                ]
                .into_iter()
                .flatten()
                .collect(),
            ),
            ..Default::default()
        };
        let address = start_db(db.clone()).await;
        let service = EarlyStoppingService::new();
        let request = |trials: Vec<pb::Trial>| pb::GetEarlyStoppingRulesRequest {
            experiment: Some(experiment("medianstop", &[])),
            trials,
            db_manager_address: address.clone(),
        };
        // Two succeeded: not enough for min_trials_required 3.
        let reply = service
            .rules(request(vec![
                trial("a", C::Succeeded),
                trial("b", C::Succeeded),
                trial("r", C::Running),
            ]))
            .await
            .unwrap();
        assert!(reply.early_stopping_rules.is_empty());
        let reply = service
            .rules(request(vec![
                trial("a", C::Succeeded),
                trial("b", C::Succeeded),
                trial("c", C::Succeeded),
                trial("r", C::Running),
            ]))
            .await
            .unwrap();
        assert_eq!(values(&reply), [(0.6.to_string(), 4)]);
        let r = &reply.early_stopping_rules[0];
        assert_eq!(
            (r.name.as_str(), r.comparison),
            ("acc", pb::ComparisonType::Less as i32)
        );
        // Finished trials were read once; the running one never (medianstop ignores it).
        let mut calls = db.calls.lock().unwrap().clone();
        calls.sort();
        assert_eq!(calls, ["a", "b", "c"]);
    }

    #[tokio::test]
    async fn asha_reads_running_trials_every_time() {
        let db = FakeDb {
            logs: Arc::new(
                [
                    curve_logs("a", &[0.9, 0.9, 0.9]),
                    curve_logs("b", &[0.5]),
                    curve_logs("c", &[0.7]),
                ]
                .into_iter()
                .flatten()
                .collect(),
            ),
            ..Default::default()
        };
        let address = start_db(db.clone()).await;
        let service = EarlyStoppingService::new();
        let request = pb::GetEarlyStoppingRulesRequest {
            experiment: Some(experiment("asha", &[("max_resource", "9")])),
            trials: vec![
                trial("a", C::Succeeded),
                trial("b", C::Running),
                trial("c", C::Running),
            ],
            db_manager_address: address.clone(),
        };
        let reply = service.rules(request.clone()).await.unwrap();
        // Rung 1: 0.9, 0.5, 0.7 -> keep 1 -> 0.9. Rung 3: only a -> 0.9.
        assert_eq!(values(&reply), [("0.9".into(), 1), ("0.9".into(), 3)]);
        service.rules(request).await.unwrap();
        let calls = db.calls.lock().unwrap().clone();
        assert_eq!(calls.iter().filter(|t| *t == "a").count(), 1);
        assert_eq!(calls.iter().filter(|t| *t == "b").count(), 2);
    }

    #[tokio::test]
    async fn bad_requests_are_invalid_argument_and_db_failures_unavailable() {
        let service = EarlyStoppingService::new();
        let code =
            |r: Result<pb::GetEarlyStoppingRulesReply, EarlyStoppingError>| Status::from(r.unwrap_err());
        let s = code(service.rules(pb::GetEarlyStoppingRulesRequest::default()).await);
        assert_eq!(s.code(), tonic::Code::InvalidArgument);
        let mut request = pb::GetEarlyStoppingRulesRequest {
            experiment: Some(experiment("medianstop", &[])),
            trials: vec![trial("a", C::Succeeded)],
            db_manager_address: "nonsense".into(),
        };
        let s = code(service.rules(request.clone()).await);
        assert_eq!(s.code(), tonic::Code::InvalidArgument);
        assert!(s.message().contains("must be HOST:PORT"), "{}", s.message());
        // Nothing listens on port 1.
        request.db_manager_address = "127.0.0.1:1".into();
        let s = code(service.rules(request.clone()).await);
        assert_eq!(s.code(), tonic::Code::Unavailable);
        assert!(
            s.message().contains("trial a") && s.message().contains("127.0.0.1:1"),
            "{}",
            s.message()
        );
        // No trial to read: no address needed.
        request.trials.clear();
        request.db_manager_address.clear();
        assert!(
            service
                .rules(request)
                .await
                .unwrap()
                .early_stopping_rules
                .is_empty()
        );
    }

    struct Recorder(Mutex<Vec<String>>);

    #[tonic::async_trait]
    impl TrialStatusSink for Recorder {
        async fn early_stopped(&self, trial: &str) -> Result<(), TrialStatusError> {
            if trial == "ghost" {
                return Err(TrialStatusError::NotFound { trial: trial.into() });
            }
            self.0.lock().unwrap().push(trial.into());
            Ok(())
        }
    }

    #[tokio::test]
    async fn grpc_round_trip_with_a_runtime_attached() {
        let recorder = Arc::new(Recorder(Mutex::new(Vec::new())));
        let service = EarlyStoppingService::with_trial_status(recorder.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(pb::early_stopping_server::EarlyStoppingServer::new(service))
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{address}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut client = EarlyStoppingClient::new(channel);
        client
            .set_trial_status(pb::SetTrialStatusRequest {
                trial_name: "t1".into(),
            })
            .await
            .unwrap();
        assert_eq!(*recorder.0.lock().unwrap(), ["t1"]);
        let err = client
            .set_trial_status(pb::SetTrialStatusRequest {
                trial_name: "ghost".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::NotFound);
        let err = client
            .validate_early_stopping_settings(pb::ValidateEarlyStoppingSettingsRequest {
                early_stopping: Some(pb::EarlyStoppingSpec {
                    algorithm_name: "asha".into(),
                    algorithm_settings: es_settings(&[("eta", "1")]),
                }),
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert!(
            err.message().contains("eta") && err.message().contains("max_resource is required"),
            "{}",
            err.message()
        );
        client
            .validate_early_stopping_settings(pb::ValidateEarlyStoppingSettingsRequest {
                early_stopping: Some(pb::EarlyStoppingSpec {
                    algorithm_name: "medianstop".into(),
                    algorithm_settings: es_settings(&[("min_trials_required", "2")]),
                }),
            })
            .await
            .unwrap();

        let standalone = EarlyStoppingService::new();
        let err = standalone
            .set_trial_status(&pb::SetTrialStatusRequest {
                trial_name: "t1".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(Status::from(err).code(), tonic::Code::FailedPrecondition);
    }
}

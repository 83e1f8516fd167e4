//! Where collected metrics go: the [`Sink`] trait and [`DbManagerSink`], the gRPC client
//! of db-manager's `ReportObservationLog`.

use std::future::Future;
use std::time::Duration;

use katib_api::pb;
use katib_api::pb::db_manager_client::DbManagerClient;
use tokio::time::Instant;
use tonic::transport::{Channel, Endpoint};
use tracing::{debug, warn};

/// Receives batches of observation logs for a trial.
///
/// Object safe (`Arc<dyn Sink>`); implementations are called from one task at a time per
/// collector, but may be shared between collectors.
#[tonic::async_trait]
pub trait Sink: Send + Sync {
    /// Stores `logs` (never empty) as observations of `trial`.
    async fn report(&self, trial: &str, logs: Vec<pb::MetricLog>) -> Result<(), SinkError>;

    /// [`report`](Self::report), then how many observation rows the trial has once `logs`
    /// are stored, when the sink can tell (`None` when it cannot, the default).
    async fn report_and_count(
        &self,
        trial: &str,
        logs: Vec<pb::MetricLog>,
    ) -> Result<Option<u64>, SinkError> {
        self.report(trial, logs).await.map(|()| None)
    }
}

/// Why a batch could not be stored.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// db-manager could not be reached, or kept answering UNAVAILABLE, until the deadline.
    /// Sending the same batch again later may succeed.
    #[error(
        "db-manager at {endpoint} was still unavailable after {attempts} attempt(s) over {elapsed:.1?}; \
         check that db-manager is running and that the address is right"
    )]
    Unavailable {
        /// The db-manager address.
        endpoint: String,
        /// How many calls were made.
        attempts: u32,
        /// Time spent trying.
        elapsed: Duration,
        /// The last failure.
        #[source]
        source: tonic::Status,
    },
    /// db-manager refused the batch (INVALID_ARGUMENT or any other non-transient code);
    /// sending it again would fail the same way.
    #[error("db-manager at {endpoint} refused the observation log ({code:?}): {message}")]
    Rejected {
        /// The db-manager address.
        endpoint: String,
        /// The gRPC status code.
        code: tonic::Code,
        /// The status message from db-manager.
        message: String,
    },
    /// The db-manager address is not a valid URI.
    #[error(
        "invalid db-manager address {address:?}; use host:port (e.g. katib-db-manager.kubeflow:6789) or http://host:port"
    )]
    Address {
        /// The address as given.
        address: String,
        /// What was wrong with it.
        #[source]
        source: tonic::transport::Error,
    },
}

impl SinkError {
    /// True if the batch may be sent again later (db-manager was unreachable).
    pub fn is_transient(&self) -> bool {
        matches!(self, SinkError::Unavailable { .. })
    }
}

/// How [`DbManagerSink`] retries transient failures: capped exponential backoff until
/// `deadline` has passed since the first attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Give up after this long (default 60 s, Katib's gRPC timeout for reports).
    pub deadline: Duration,
    /// Wait before the second attempt (default 100 ms); doubles after each failure.
    pub initial_backoff: Duration,
    /// Longest wait between attempts (default 5 s).
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            deadline: Duration::from_secs(60),
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
        }
    }
}

/// Reports to db-manager's `ReportObservationLog` over a lazily connected tonic
/// [`Channel`]. UNAVAILABLE and transport errors are retried per [`RetryPolicy`]; any
/// other status (INVALID_ARGUMENT, ...) is returned at once as [`SinkError::Rejected`].
#[derive(Clone, Debug)]
pub struct DbManagerSink {
    client: DbManagerClient<Channel>,
    endpoint: String,
    retry: RetryPolicy,
    /// Whether `report_and_count` asks db-manager for the trial's row count.
    count_rows: bool,
}

impl DbManagerSink {
    /// A sink for db-manager at `address`: `host:port` as Katib passes it
    /// (`katib-db-manager.kubeflow:6789`) or a full `http://host:port` URI.
    ///
    /// Nothing is dialled until the first report. Must be called inside a Tokio runtime.
    pub fn connect_lazy(address: &str) -> Result<Self, SinkError> {
        let uri = if address.contains("://") {
            address.to_owned()
        } else {
            format!("http://{address}")
        };
        let endpoint = Endpoint::from_shared(uri)
            .map_err(|source| SinkError::Address {
                address: address.to_owned(),
                source,
            })?
            .connect_timeout(Duration::from_secs(5));
        Ok(Self::from_channel(endpoint.connect_lazy(), address))
    }

    /// A sink over an existing channel; `endpoint` only names it in errors and logs.
    pub fn from_channel(channel: Channel, endpoint: impl Into<String>) -> Self {
        Self {
            client: DbManagerClient::new(channel),
            endpoint: endpoint.into(),
            retry: RetryPolicy::default(),
            count_rows: false,
        }
    }

    /// Makes [`Sink::report_and_count`] ask db-manager for the trial's row count
    /// ([`katib_api::ext::COUNT_ROWS`]; katib-rs's db-manager answers, Katib's ignores it).
    /// Off by default: only a caller that uses [`crate::Summary::stored_rows`] (the local
    /// runtime) should make db-manager count.
    pub fn with_row_count(mut self) -> Self {
        self.count_rows = true;
        self
    }

    /// Replaces the retry policy.
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }
}

impl DbManagerSink {
    /// One `ReportObservationLog` (retried per the policy); with `count`, asks for the
    /// trial's row count ([`katib_api::ext`]) and returns it if the server answered one.
    async fn send(
        &self,
        trial: &str,
        logs: Vec<pb::MetricLog>,
        count: bool,
    ) -> Result<Option<u64>, SinkError> {
        if logs.is_empty() {
            // Katib's db-manager builds invalid SQL for an empty report.
            return Ok(None);
        }
        let rows = logs.len();
        let request = pb::ReportObservationLogRequest {
            trial_name: trial.to_owned(),
            observation_log: Some(pb::ObservationLog { metric_logs: logs }),
        };
        let stored = with_retry(&self.retry, &self.endpoint, || {
            let mut client = self.client.clone();
            let mut request = tonic::Request::new(request.clone());
            if count {
                request.metadata_mut().insert(
                    katib_api::ext::COUNT_ROWS,
                    tonic::metadata::MetadataValue::from_static("1"),
                );
            }
            async move {
                let reply = client.report_observation_log(request).await?;
                Ok(reply
                    .metadata()
                    .get(katib_api::ext::STORED_ROWS)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok()))
            }
        })
        .await?;
        debug!(rows, endpoint = %self.endpoint, ?stored, "reported observation log");
        Ok(stored)
    }
}

#[tonic::async_trait]
impl Sink for DbManagerSink {
    async fn report(&self, trial: &str, logs: Vec<pb::MetricLog>) -> Result<(), SinkError> {
        self.send(trial, logs, false).await.map(drop)
    }

    async fn report_and_count(
        &self,
        trial: &str,
        logs: Vec<pb::MetricLog>,
    ) -> Result<Option<u64>, SinkError> {
        self.send(trial, logs, self.count_rows).await
    }
}

/// Whether a failed call may succeed if made again: UNAVAILABLE (which tonic also uses
/// for connection failures) or a local transport error (UNKNOWN carrying a source error,
/// which a status decoded from a server reply never has).
fn is_transient(status: &tonic::Status) -> bool {
    match status.code() {
        tonic::Code::Unavailable => true,
        tonic::Code::Unknown => std::error::Error::source(status).is_some(),
        _ => false,
    }
}

/// Calls `attempt` until it succeeds, fails with a non-transient status, or the policy's
/// deadline passes. Each attempt is bounded by the time left.
pub(crate) async fn with_retry<F, Fut, T>(
    policy: &RetryPolicy,
    endpoint: &str,
    mut attempt: F,
) -> Result<T, SinkError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, tonic::Status>>,
{
    let start = Instant::now();
    let deadline = start + policy.deadline;
    let mut backoff = policy.initial_backoff;
    let mut attempts = 0_u32;
    loop {
        attempts += 1;
        let left = deadline.saturating_duration_since(Instant::now());
        let status = match tokio::time::timeout(left, attempt()).await {
            Ok(Ok(answer)) => return Ok(answer),
            Ok(Err(status)) if is_transient(&status) => status,
            Ok(Err(status)) => {
                return Err(SinkError::Rejected {
                    endpoint: endpoint.to_owned(),
                    code: status.code(),
                    message: status.message().to_owned(),
                });
            }
            Err(_) => tonic::Status::deadline_exceeded("no answer before the report deadline"),
        };
        let now = Instant::now();
        if now + backoff > deadline {
            return Err(SinkError::Unavailable {
                endpoint: endpoint.to_owned(),
                attempts,
                elapsed: now - start,
                source: status,
            });
        }
        warn!(
            endpoint,
            attempt = attempts,
            code = ?status.code(),
            error = status.message(),
            retry_in = ?backoff,
            "db-manager unavailable; retrying"
        );
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(policy.max_backoff);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use katib_api::pb::db_manager_server::{DbManager, DbManagerServer};
    use tokio_stream::wrappers::TcpListenerStream;
    use tonic::{Request, Response, Status};

    use super::*;

    fn log(name: &str, value: &str) -> pb::MetricLog {
        pb::MetricLog {
            time_stamp: "2024-05-01T10:00:00Z".into(),
            metric: Some(pb::Metric {
                name: name.into(),
                value: value.into(),
            }),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn retry_fails_twice_with_unavailable_then_succeeds() {
        let calls = AtomicUsize::new(0);
        let started = Instant::now();
        let result = with_retry(&RetryPolicy::default(), "fake", || {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            async move {
                if n < 2 {
                    Err(Status::unavailable("db down"))
                } else {
                    Ok(())
                }
            }
        })
        .await;
        result.unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        // 100 ms, then 200 ms of backoff (paused clock: no real waiting).
        assert_eq!(started.elapsed(), Duration::from_millis(300));
    }

    #[tokio::test(start_paused = true)]
    async fn retry_gives_up_at_the_deadline() {
        let calls = AtomicUsize::new(0);
        let policy = RetryPolicy {
            deadline: Duration::from_secs(10),
            ..RetryPolicy::default()
        };
        let err = with_retry(&policy, "db:6789", || {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Err::<(), _>(Status::unavailable("db down")) }
        })
        .await
        .unwrap_err();
        let SinkError::Unavailable {
            attempts, elapsed, ..
        } = &err
        else {
            panic!("{err:?}")
        };
        assert!(err.is_transient());
        assert_eq!(*attempts as usize, calls.load(Ordering::SeqCst));
        assert!(*elapsed <= Duration::from_secs(10), "{elapsed:?}");
        // 0.1 + 0.2 + 0.4 + 0.8 + 1.6 + 3.2 = 6.3 s, the next 5 s wait would pass 10 s.
        assert_eq!(*attempts, 7);
        assert!(
            err.to_string()
                .starts_with("db-manager at db:6789 was still unavailable after 7 attempt(s)")
        );
    }

    #[tokio::test(start_paused = true)]
    async fn retry_does_not_retry_invalid_argument() {
        let calls = AtomicUsize::new(0);
        let err = with_retry(&RetryPolicy::default(), "db:6789", || {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Err::<(), _>(Status::invalid_argument("bad time stamp")) }
        })
        .await
        .unwrap_err();
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert!(!err.is_transient());
        assert_eq!(
            err.to_string(),
            "db-manager at db:6789 refused the observation log (InvalidArgument): bad time stamp"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn retry_bounds_a_hanging_attempt() {
        let policy = RetryPolicy {
            deadline: Duration::from_secs(2),
            ..RetryPolicy::default()
        };
        let err = with_retry(&policy, "db:6789", std::future::pending::<Result<(), Status>>)
            .await
            .unwrap_err();
        let SinkError::Unavailable { source, attempts, .. } = err else {
            panic!("{err:?}")
        };
        assert_eq!(attempts, 1);
        assert_eq!(source.code(), tonic::Code::DeadlineExceeded);
    }

    /// A DBManager that records reports and answers UNAVAILABLE to the first `fail_first`.
    #[derive(Default)]
    /// Answers the row count (its rows so far) when a report asks for it.
    struct Recorder {
        reports: Mutex<Vec<pb::ReportObservationLogRequest>>,
        calls: AtomicUsize,
        fail_first: usize,
        asked_for_counts: AtomicUsize,
    }

    #[tonic::async_trait]
    impl DbManager for Recorder {
        async fn report_observation_log(
            &self,
            request: Request<pb::ReportObservationLogRequest>,
        ) -> Result<Response<pb::ReportObservationLogReply>, Status> {
            let count = request.metadata().contains_key(katib_api::ext::COUNT_ROWS);
            let request = request.into_inner();
            if self.calls.fetch_add(1, Ordering::SeqCst) < self.fail_first {
                return Err(Status::unavailable("starting up"));
            }
            if request.trial_name.is_empty() {
                return Err(Status::invalid_argument("trial_name is empty"));
            }
            let mut reports = self.reports.lock().unwrap();
            reports.push(request);
            let mut reply = Response::new(pb::ReportObservationLogReply {});
            if count {
                self.asked_for_counts.fetch_add(1, Ordering::SeqCst);
                let rows: usize = reports
                    .iter()
                    .map(|r| r.observation_log.as_ref().map_or(0, |l| l.metric_logs.len()))
                    .sum();
                reply
                    .metadata_mut()
                    .insert(katib_api::ext::STORED_ROWS, (rows as u64).into());
            }
            Ok(reply)
        }

        async fn get_observation_log(
            &self,
            _: Request<pb::GetObservationLogRequest>,
        ) -> Result<Response<pb::GetObservationLogReply>, Status> {
            Err(Status::unimplemented("not in this test"))
        }

        async fn delete_observation_log(
            &self,
            _: Request<pb::DeleteObservationLogRequest>,
        ) -> Result<Response<pb::DeleteObservationLogReply>, Status> {
            Err(Status::unimplemented("not in this test"))
        }
    }

    async fn serve(recorder: Arc<Recorder>) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(DbManagerServer::from_arc(recorder))
                .serve_with_incoming(TcpListenerStream::new(listener)),
        );
        addr.to_string()
    }

    fn quick_retry() -> RetryPolicy {
        RetryPolicy {
            deadline: Duration::from_secs(10),
            initial_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(1),
        }
    }

    #[tokio::test]
    async fn db_manager_sink_asks_for_the_row_count_only_when_set_to() {
        let recorder = Arc::new(Recorder::default());
        let addr = serve(recorder.clone()).await;
        let plain = DbManagerSink::connect_lazy(&addr).unwrap();
        assert_eq!(
            plain
                .report_and_count("trial-1", vec![log("loss", "0.5")])
                .await
                .unwrap(),
            None
        );
        assert_eq!(
            recorder.asked_for_counts.load(Ordering::SeqCst),
            0,
            "not asked by default"
        );
        let counting = DbManagerSink::connect_lazy(&addr).unwrap().with_row_count();
        // A plain report never asks.
        counting
            .report("trial-1", vec![log("loss", "0.4")])
            .await
            .unwrap();
        assert_eq!(recorder.asked_for_counts.load(Ordering::SeqCst), 0);
        assert_eq!(
            counting
                .report_and_count("trial-1", vec![log("loss", "0.3"), log("accuracy", "0.9")])
                .await
                .unwrap(),
            Some(4)
        );
        assert_eq!(recorder.asked_for_counts.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn db_manager_sink_reports_to_a_real_server_after_two_unavailable() {
        let recorder = Arc::new(Recorder {
            fail_first: 2,
            ..Recorder::default()
        });
        let addr = serve(recorder.clone()).await;
        let sink = DbManagerSink::connect_lazy(&addr)
            .unwrap()
            .with_retry(quick_retry());

        sink.report("trial-1", vec![log("loss", "0.5"), log("accuracy", "0.9")])
            .await
            .unwrap();
        // Empty batches are never sent (Katib's db-manager would fail on them).
        sink.report("trial-1", Vec::new()).await.unwrap();

        assert_eq!(recorder.calls.load(Ordering::SeqCst), 3);
        let reports = recorder.reports.lock().unwrap();
        assert_eq!(reports.len(), 1);
        assert_eq!(reports[0].trial_name, "trial-1");
        assert_eq!(
            reports[0].observation_log.as_ref().unwrap().metric_logs,
            [log("loss", "0.5"), log("accuracy", "0.9")]
        );
    }

    #[tokio::test]
    async fn db_manager_sink_returns_invalid_argument_without_retrying() {
        let recorder = Arc::new(Recorder::default());
        let addr = serve(recorder.clone()).await;
        let sink = DbManagerSink::connect_lazy(&format!("http://{addr}"))
            .unwrap()
            .with_retry(quick_retry());
        let err = sink.report("", vec![log("loss", "1")]).await.unwrap_err();
        assert!(matches!(
            err,
            SinkError::Rejected {
                code: tonic::Code::InvalidArgument,
                ..
            }
        ));
        assert_eq!(recorder.calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn db_manager_sink_retries_connection_refused_until_the_deadline() {
        // Bind and drop to get a port nobody listens on.
        let addr = {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            listener.local_addr().unwrap()
        };
        let sink = DbManagerSink::connect_lazy(&addr.to_string())
            .unwrap()
            .with_retry(RetryPolicy {
                deadline: Duration::from_millis(50),
                initial_backoff: Duration::from_millis(5),
                max_backoff: Duration::from_millis(5),
            });
        let err = sink.report("t", vec![log("loss", "1")]).await.unwrap_err();
        let SinkError::Unavailable { attempts, .. } = &err else {
            panic!("{err:?}")
        };
        assert!(*attempts > 1, "{err}");
    }

    #[test]
    fn bad_address_is_named() {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let _guard = rt.enter();
        let err = DbManagerSink::connect_lazy("bad host:1").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("invalid db-manager address \"bad host:1\""),
            "{err}"
        );
    }
}

//! The `api.v1.beta1.DBManager` gRPC service over an [`ObservationStore`].
//!
//! Each handler converts and validates the request, calls the store and converts the
//! answer back. Where Katib misbehaves we deliberately differ (documented per handler):
//!
//! - An empty `metric_logs` list is an OK no-op (Katib builds malformed SQL and fails).
//! - A log with an empty `time_stamp` is stored at the server's receive time (Katib drops
//!   it silently, losing the value). All such logs of one request share that time and keep
//!   their request order.
//! - Bad input is `INVALID_ARGUMENT` listing every problem (Katib answers `UNKNOWN` with
//!   the first parse error); an unavailable database is `UNAVAILABLE` with a generic
//!   message, the detail going to the log, so clients retry.
//! - Reports are idempotent: a report identical to one already stored for the trial (same
//!   logs, same order, same time stamp texts; see [`ReportKey`]) is answered OK and
//!   written once, so a client that retries after a lost answer never duplicates rows.

use std::sync::Arc;

use jiff::Timestamp;
use katib_api::pb;
use katib_api::pb::db_manager_server::{DbManager, DbManagerServer};
use tonic::{Request, Response, Status};
use tracing::{Instrument as _, field};

use crate::store::{Appended, LogQuery, MetricRow, ObservationStore, ReportKey, StoreError};
use crate::time::{format_rfc3339_nano, parse_rfc3339};

/// Katib's db-manager raises gRPC message limits to 2^31-1 bytes so long trial histories
/// fit in one `GetObservationLog` reply; we do the same.
pub const MAX_MESSAGE_SIZE: usize = 2_147_483_647;

/// Longest trial or metric name Katib's `VARCHAR(255)` columns hold.
const MAX_NAME_CHARS: usize = 255;

/// Longest value Katib's MySQL `value TEXT` column holds (bytes of UTF-8); enforced on
/// every backend so a report is valid or not whatever the database.
const MAX_VALUE_BYTES: usize = 65_535;

/// At most this many problems are spelled out in one error message.
const MAX_PROBLEMS_SHOWN: usize = 10;

/// The DBManager service. Cheap to clone.
#[derive(Clone)]
pub struct DbManagerService {
    store: Arc<dyn ObservationStore>,
}

impl std::fmt::Debug for DbManagerService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DbManagerService")
            .field("backend", &self.store.backend())
            .finish()
    }
}

impl DbManagerService {
    /// A service over `store`.
    pub fn new(store: Arc<dyn ObservationStore>) -> Self {
        Self { store }
    }

    /// The tonic server for this service, with Katib's message size limits.
    pub fn into_server(self) -> DbManagerServer<Self> {
        DbManagerServer::new(self)
            .max_decoding_message_size(MAX_MESSAGE_SIZE)
            .max_encoding_message_size(MAX_MESSAGE_SIZE)
    }
}

#[tonic::async_trait]
impl DbManager for DbManagerService {
    async fn report_observation_log(
        &self,
        request: Request<pb::ReportObservationLogRequest>,
    ) -> Result<Response<pb::ReportObservationLogReply>, Status> {
        let received = Timestamp::now();
        let count_rows = request.metadata().contains_key(katib_api::ext::COUNT_ROWS);
        let request = request.into_inner();
        let span = tracing::info_span!(
            "ReportObservationLog",
            trial = %request.trial_name,
            rows = field::Empty,
        );
        async move {
            let key = report_key(&request);
            let (trial, rows) = report_rows(request, received)?;
            tracing::Span::current().record("rows", rows.len());
            // The count is only an aid to the caller (it reads the log back without one): a
            // failed count leaves the answer out rather than failing a stored report.
            let (appended, stored_rows) = if count_rows {
                self.store.append_and_count(&trial, &rows, Some(&key)).await?
            } else {
                (self.store.append(&trial, &rows, Some(&key)).await?, None)
            };
            match appended {
                Appended::Stored => tracing::debug!("observations stored"),
                Appended::Duplicate => {
                    tracing::info!(?key, "report already stored (a retry); nothing written");
                }
            }
            let mut response = Response::new(pb::ReportObservationLogReply {});
            if let Some(n) = stored_rows {
                response
                    .metadata_mut()
                    .insert(katib_api::ext::STORED_ROWS, n.into());
            }
            Ok(response)
        }
        .instrument(span)
        .await
    }

    async fn get_observation_log(
        &self,
        request: Request<pb::GetObservationLogRequest>,
    ) -> Result<Response<pb::GetObservationLogReply>, Status> {
        let request = request.into_inner();
        let span = tracing::info_span!(
            "GetObservationLog",
            trial = %request.trial_name,
            rows = field::Empty,
        );
        async move {
            let query = log_query(request)?;
            let rows = self.store.get(&query).await?;
            tracing::Span::current().record("rows", rows.len());
            Ok(Response::new(get_reply(rows)))
        }
        .instrument(span)
        .await
    }

    async fn delete_observation_log(
        &self,
        request: Request<pb::DeleteObservationLogRequest>,
    ) -> Result<Response<pb::DeleteObservationLogReply>, Status> {
        let request = request.into_inner();
        let span = tracing::info_span!(
            "DeleteObservationLog",
            trial = %request.trial_name,
            rows = field::Empty,
        );
        async move {
            let mut problems = Problems::new("DeleteObservationLog");
            check_name(&mut problems, "trial_name", &request.trial_name);
            problems.into_result()?;
            let deleted = self.store.delete(&request.trial_name).await?;
            tracing::Span::current().record("rows", deleted);
            Ok(Response::new(pb::DeleteObservationLogReply {}))
        }
        .instrument(span)
        .await
    }
}

/// A request that cannot be served as sent: every problem found, each naming its field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{rpc}: {}", render(.problems))]
pub struct InvalidRequest {
    /// The RPC, e.g. `ReportObservationLog`.
    pub rpc: &'static str,
    /// One line per problem: `field: what is wrong; how to fix it`.
    pub problems: Vec<String>,
}

fn render(problems: &[String]) -> String {
    let shown = problems
        .iter()
        .take(MAX_PROBLEMS_SHOWN)
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join("; ");
    match problems.len().saturating_sub(MAX_PROBLEMS_SHOWN) {
        0 => shown,
        more => format!("{shown}; and {more} more problem(s)"),
    }
}

impl From<InvalidRequest> for Status {
    fn from(err: InvalidRequest) -> Self {
        Status::invalid_argument(err.to_string())
    }
}

/// The one place store errors become gRPC statuses. A time no backend can store is the
/// caller's fault (`INVALID_ARGUMENT`); everything else means the database is not
/// usable right now (`UNAVAILABLE`, retryable). The detail is logged in the RPC's span,
/// never sent to the client.
impl From<StoreError> for Status {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::TimeOutOfRange { .. } | StoreError::Refused { .. } => {
                Status::invalid_argument(err.to_string())
            }
            err @ StoreError::NotConnected { .. } => {
                tracing::warn!(error = %err, "request before the database is open");
                Status::unavailable(
                    "the observation database is not connected yet; retry (see the db-manager log)",
                )
            }
            err => {
                tracing::error!(error = %crate::error_chain(&err), "observation store failed");
                Status::unavailable("the observation database is unavailable; see the db-manager log")
            }
        }
    }
}

struct Problems {
    rpc: &'static str,
    list: Vec<String>,
}

impl Problems {
    fn new(rpc: &'static str) -> Self {
        Self {
            rpc,
            list: Vec::new(),
        }
    }

    fn push(&mut self, problem: String) {
        self.list.push(problem);
    }

    fn into_result(self) -> Result<(), InvalidRequest> {
        if self.list.is_empty() {
            Ok(())
        } else {
            Err(InvalidRequest {
                rpc: self.rpc,
                problems: self.list,
            })
        }
    }
}

/// Names must be non-empty, fit Katib's `VARCHAR(255)` and hold no NUL (PostgreSQL
/// cannot store one).
fn check_name(problems: &mut Problems, field: &str, name: &str) {
    if name.is_empty() {
        problems.push(format!("{field} is empty; set it"));
        return;
    }
    let chars = name.chars().count();
    if chars > MAX_NAME_CHARS {
        problems.push(format!(
            "{field} is {chars} characters long; the database holds at most {MAX_NAME_CHARS}"
        ));
    }
    check_no_nul(problems, field, name);
}

fn check_no_nul(problems: &mut Problems, field: &str, text: &str) {
    if text.contains('\0') {
        problems.push(format!(
            "{field} contains a NUL character, which the database cannot store; remove it"
        ));
    }
}

/// The idempotency key of a report, over the request exactly as sent (before empty time
/// stamps are filled in), so a retry of the same request has the same key.
pub fn report_key(request: &pb::ReportObservationLogRequest) -> ReportKey {
    let logs = request
        .observation_log
        .iter()
        .flat_map(|log| &log.metric_logs)
        .map(|log| {
            let (name, value) = log
                .metric
                .as_ref()
                .map_or(("", ""), |m| (m.name.as_str(), m.value.as_str()));
            (log.time_stamp.as_str(), name, value)
        });
    ReportKey::of(&request.trial_name, logs)
}

/// Validates a report and turns it into store rows. `received` stands in for empty
/// `time_stamp`s.
pub fn report_rows(
    request: pb::ReportObservationLogRequest,
    received: Timestamp,
) -> Result<(String, Vec<MetricRow>), InvalidRequest> {
    let mut problems = Problems::new("ReportObservationLog");
    check_name(&mut problems, "trial_name", &request.trial_name);
    let logs = request
        .observation_log
        .map(|log| log.metric_logs)
        .unwrap_or_default();
    let received = crate::time::floor_micros(received);
    let mut rows = Vec::with_capacity(logs.len());
    for (i, log) in logs.into_iter().enumerate() {
        let time = if log.time_stamp.is_empty() {
            Some(received)
        } else {
            match parse_rfc3339(&log.time_stamp) {
                Ok(time) => Some(time),
                Err(err) => {
                    problems.push(format!("metric_logs[{i}].time_stamp: {err}"));
                    None
                }
            }
        };
        let Some(metric) = log.metric else {
            problems.push(format!(
                "metric_logs[{i}].metric is missing; set metric {{ name, value }}"
            ));
            continue;
        };
        check_name(
            &mut problems,
            &format!("metric_logs[{i}].metric.name"),
            &metric.name,
        );
        check_no_nul(
            &mut problems,
            &format!("metric_logs[{i}].metric.value"),
            &metric.value,
        );
        if metric.value.len() > MAX_VALUE_BYTES {
            problems.push(format!(
                "metric_logs[{i}].metric.value is {} bytes long; the database holds at most \
                 {MAX_VALUE_BYTES}",
                metric.value.len()
            ));
        }
        if let Some(time) = time {
            rows.push(MetricRow {
                time,
                metric_name: metric.name,
                value: metric.value,
            });
        }
    }
    problems.into_result()?;
    Ok((request.trial_name, rows))
}

/// Validates a read: filters apply only when their field is non-empty; the time range is
/// inclusive.
pub fn log_query(request: pb::GetObservationLogRequest) -> Result<LogQuery, InvalidRequest> {
    let mut problems = Problems::new("GetObservationLog");
    check_name(&mut problems, "trial_name", &request.trial_name);
    if !request.metric_name.is_empty() {
        check_name(&mut problems, "metric_name", &request.metric_name);
    }
    let mut time = |field: &str, text: &str| {
        if text.is_empty() {
            return None;
        }
        parse_rfc3339(text)
            .map_err(|err| problems.push(format!("{field}: {err}")))
            .ok()
    };
    let start = time("start_time", &request.start_time);
    let end = time("end_time", &request.end_time);
    problems.into_result()?;
    Ok(LogQuery {
        trial: request.trial_name,
        metric: Some(request.metric_name).filter(|name| !name.is_empty()),
        start,
        end,
    })
}

/// Rows as Katib answers them: times in UTC, Go's RFC3339Nano style.
pub fn get_reply(rows: Vec<MetricRow>) -> pb::GetObservationLogReply {
    let metric_logs = rows
        .into_iter()
        .map(|row| pb::MetricLog {
            time_stamp: format_rfc3339_nano(row.time),
            metric: Some(pb::Metric {
                name: row.metric_name,
                value: row.value,
            }),
        })
        .collect();
    pb::GetObservationLogReply {
        observation_log: Some(pb::ObservationLog { metric_logs }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(text: &str) -> Timestamp {
        text.parse().expect("test timestamp")
    }

    fn log(time_stamp: &str, name: &str, value: &str) -> pb::MetricLog {
        pb::MetricLog {
            time_stamp: time_stamp.to_owned(),
            metric: Some(pb::Metric {
                name: name.to_owned(),
                value: value.to_owned(),
            }),
        }
    }

    fn report(trial: &str, logs: Vec<pb::MetricLog>) -> pb::ReportObservationLogRequest {
        pb::ReportObservationLogRequest {
            trial_name: trial.to_owned(),
            observation_log: Some(pb::ObservationLog { metric_logs: logs }),
        }
    }

    #[test]
    fn report_converts_times_to_utc_micros() {
        let received = ts("2030-01-01T00:00:00Z");
        let (trial, rows) = report_rows(
            report(
                "t1",
                vec![
                    log("2024-05-01T12:00:00.1234567+02:00", "accuracy", "0.9"),
                    log("0001-01-01T00:00:00Z", "loss", "unavailable"),
                ],
            ),
            received,
        )
        .expect("valid");
        assert_eq!(trial, "t1");
        assert_eq!(
            rows,
            [
                MetricRow::new(ts("2024-05-01T10:00:00.123456Z"), "accuracy", "0.9"),
                MetricRow::new(ts("0001-01-01T00:00:00Z"), "loss", "unavailable"),
            ]
        );
    }

    #[test]
    fn empty_time_stamp_means_receive_time() {
        let received = ts("2030-01-01T00:00:00.1234569Z");
        let (_, rows) =
            report_rows(report("t1", vec![log("", "a", "1"), log("", "a", "2")]), received).expect("valid");
        assert_eq!(rows.len(), 2);
        assert!(
            rows.iter()
                .all(|row| row.time == ts("2030-01-01T00:00:00.123456Z"))
        );
    }

    /// The row count comes back in the reply's metadata only when asked, and counts every
    /// row of the trial (a retried report once), so a collector can tell whether someone
    /// else wrote to its trial.
    #[tokio::test]
    async fn report_answers_the_trial_row_count_when_asked() {
        let store = crate::SqliteStore::open("sqlite::memory:").await.expect("store");
        let service = DbManagerService::new(Arc::new(store));
        let counted = |trial: &str, logs: Vec<pb::MetricLog>| {
            let mut request = Request::new(report(trial, logs));
            request.metadata_mut().insert(
                katib_api::ext::COUNT_ROWS,
                tonic::metadata::MetadataValue::from_static("1"),
            );
            request
        };
        let stored = |reply: &Response<pb::ReportObservationLogReply>| {
            reply
                .metadata()
                .get(katib_api::ext::STORED_ROWS)
                .map(|v| v.to_str().expect("ascii").to_owned())
        };

        let plain = service
            .report_observation_log(Request::new(report(
                "t1",
                vec![log("2024-05-01T10:00:00Z", "loss", "1")],
            )))
            .await
            .expect("plain report");
        assert_eq!(stored(&plain), None, "not asked, not answered");

        let second = vec![
            log("2024-05-01T10:00:01Z", "loss", "0.5"),
            log("2024-05-01T10:00:01Z", "acc", "0.7"),
        ];
        let reply = service
            .report_observation_log(counted("t1", second.clone()))
            .await
            .expect("counted report");
        assert_eq!(stored(&reply).as_deref(), Some("3"));
        // The same report again is a duplicate: nothing is added, the count says so.
        let again = service
            .report_observation_log(counted("t1", second))
            .await
            .expect("repeated report");
        assert_eq!(stored(&again).as_deref(), Some("3"));
        // Another trial's rows do not count.
        let other = service
            .report_observation_log(counted("t2", vec![log("2024-05-01T10:00:00Z", "loss", "9")]))
            .await
            .expect("other trial");
        assert_eq!(stored(&other).as_deref(), Some("1"));
    }

    #[test]
    fn empty_or_missing_logs_are_fine() {
        let now = ts("2030-01-01T00:00:00Z");
        assert_eq!(report_rows(report("t1", vec![]), now), Ok(("t1".into(), vec![])));
        let missing = pb::ReportObservationLogRequest {
            trial_name: "t1".into(),
            observation_log: None,
        };
        assert_eq!(report_rows(missing, now), Ok(("t1".into(), vec![])));
    }

    #[test]
    fn report_lists_every_problem() {
        let now = ts("2030-01-01T00:00:00Z");
        let mut no_metric = log("2024-05-01T10:00:00Z", "", "");
        no_metric.metric = None;
        let err = report_rows(
            report(
                "",
                vec![
                    log("2024-05-01T10:00:00Z", "ok", "1"),
                    log("yesterday", "a", "1"),
                    no_metric,
                    log("2024-05-01T10:00:00Z", "", "1"),
                    log("2024-05-01T10:00:00Z", "a", "nul\0byte"),
                ],
            ),
            now,
        )
        .expect_err("invalid");
        assert_eq!(err.problems.len(), 5, "{err}");
        let message = err.to_string();
        for needle in [
            "ReportObservationLog: ",
            "trial_name is empty",
            "metric_logs[1].time_stamp: \"yesterday\" is not an RFC 3339 timestamp",
            "metric_logs[2].metric is missing",
            "metric_logs[3].metric.name is empty",
            "metric_logs[4].metric.value contains a NUL",
        ] {
            assert!(message.contains(needle), "{needle:?} not in {message}");
        }
        assert_eq!(Status::from(err).code(), tonic::Code::InvalidArgument);
    }

    #[test]
    fn long_names_are_refused() {
        let now = ts("2030-01-01T00:00:00Z");
        let long = "x".repeat(256);
        let err = report_rows(report(&long, vec![]), now).expect_err("too long");
        assert!(err.to_string().contains("256 characters"), "{err}");
        let fits = "ü".repeat(255);
        assert!(report_rows(report(&fits, vec![]), now).is_ok());
    }

    #[test]
    fn huge_values_are_refused_and_sql_is_data() {
        let now = ts("2030-01-01T00:00:00Z");
        let huge = "9".repeat(MAX_VALUE_BYTES + 1);
        let err = report_rows(report("t", vec![log("2024-05-01T10:00:00Z", "m", &huge)]), now)
            .expect_err("too long");
        assert!(err.to_string().contains("65536 bytes long"), "{err}");
        let fits = "9".repeat(MAX_VALUE_BYTES);
        assert!(report_rows(report("t", vec![log("2024-05-01T10:00:00Z", "m", &fits)]), now).is_ok());
        let sql = "'); DROP TABLE observation_logs; --";
        let (trial, rows) = report_rows(report(sql, vec![log("2024-05-01T10:00:00Z", sql, sql)]), now)
            .expect("SQL-looking text is just text");
        assert_eq!(trial, sql);
        assert_eq!((rows[0].metric_name.as_str(), rows[0].value.as_str()), (sql, sql));
    }

    #[test]
    fn report_keys_follow_the_request_as_sent() {
        let a = report(
            "t",
            vec![log("2024-05-01T10:00:00Z", "m", "1"), log("", "m", "2")],
        );
        assert_eq!(report_key(&a), report_key(&a.clone()));
        let reordered = report(
            "t",
            vec![log("", "m", "2"), log("2024-05-01T10:00:00Z", "m", "1")],
        );
        assert_ne!(report_key(&a), report_key(&reordered));
        let other_trial = report(
            "u",
            vec![log("2024-05-01T10:00:00Z", "m", "1"), log("", "m", "2")],
        );
        assert_ne!(report_key(&a), report_key(&other_trial));
        // Same instant written differently: a different request.
        let offset = report(
            "t",
            vec![log("2024-05-01T12:00:00+02:00", "m", "1"), log("", "m", "2")],
        );
        assert_ne!(report_key(&a), report_key(&offset));
        // Field boundaries are unambiguous.
        let ab = report("t", vec![log("x", "ab", "c")]);
        let bc = report("t", vec![log("x", "a", "bc")]);
        assert_ne!(report_key(&ab), report_key(&bc));
        assert_eq!(report_key(&a).hex().len(), 64);
    }

    #[test]
    fn many_problems_are_capped() {
        let now = ts("2030-01-01T00:00:00Z");
        let logs = (0..25).map(|_| log("bad", "a", "1")).collect();
        let err = report_rows(report("t", logs), now).expect_err("invalid");
        assert_eq!(err.problems.len(), 25);
        assert!(err.to_string().ends_with("; and 15 more problem(s)"), "{err}");
    }

    #[test]
    fn get_filters_only_when_set() {
        let query = log_query(pb::GetObservationLogRequest {
            trial_name: "t".into(),
            ..Default::default()
        })
        .expect("valid");
        assert_eq!(query, LogQuery::trial("t"));

        let query = log_query(pb::GetObservationLogRequest {
            trial_name: "t".into(),
            metric_name: "accuracy".into(),
            start_time: "2024-05-01T12:00:00+02:00".into(),
            end_time: "2024-05-01T11:00:00Z".into(),
        })
        .expect("valid");
        assert_eq!(
            query,
            LogQuery::trial("t")
                .metric("accuracy")
                .between(Some(ts("2024-05-01T10:00:00Z")), Some(ts("2024-05-01T11:00:00Z")))
        );

        let err = log_query(pb::GetObservationLogRequest {
            trial_name: "t".into(),
            start_time: "soon".into(),
            ..Default::default()
        })
        .expect_err("bad start");
        assert!(err.to_string().contains("start_time: \"soon\""), "{err}");
    }

    #[test]
    fn reply_times_are_go_rfc3339_nano() {
        let reply = get_reply(vec![
            MetricRow::new(ts("2024-05-01T10:00:00Z"), "a", "1"),
            MetricRow::new(ts("2024-05-01T10:00:00.5Z"), "a", "2"),
            MetricRow::new(ts("2024-05-01T10:00:00.000250Z"), "a", "3"),
        ]);
        let stamps: Vec<String> = reply
            .observation_log
            .expect("log")
            .metric_logs
            .into_iter()
            .map(|log| log.time_stamp)
            .collect();
        assert_eq!(
            stamps,
            [
                "2024-05-01T10:00:00Z",
                "2024-05-01T10:00:00.5Z",
                "2024-05-01T10:00:00.00025Z"
            ]
        );
    }

    #[test]
    fn store_failures_are_unavailable_and_generic() {
        let status = Status::from(StoreError::Query {
            backend: "SQLite",
            operation: "select from observation_logs",
            source: sqlx::Error::PoolClosed,
        });
        assert_eq!(status.code(), tonic::Code::Unavailable);
        assert!(!status.message().contains("select"), "{}", status.message());
        let status = Status::from(StoreError::NotConnected {
            backend: "MySQL",
            target: "mysql://root:***@db:3306/katib".into(),
        });
        assert_eq!(status.code(), tonic::Code::Unavailable);
        let status = Status::from(StoreError::Refused {
            backend: "MySQL",
            operation: "insert into observation_logs",
            message: "Incorrect string value".into(),
        });
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert!(
            status.message().contains("Incorrect string value"),
            "{}",
            status.message()
        );
    }
}

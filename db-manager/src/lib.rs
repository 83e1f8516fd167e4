//! katib-db-manager: Katib's `api.v1.beta1.DBManager` gRPC service and the observation
//! store behind it.
//!
//! - [`store`]: the [`ObservationStore`] trait over Katib's `observation_logs` table, with
//!   sqlx backends for SQLite (the embedded default; `sqlite://katib.db`), MySQL/MariaDB
//!   and PostgreSQL, and embedded migrations (`migrations/{sqlite,mysql,postgres}`) that
//!   adopt a database Katib already created. [`open_store`] picks the backend by URL.
//! - [`service`]: [`DbManagerService`], the gRPC handlers (validate, call the store,
//!   convert back), wire-compatible with Katib's db-manager and the kubeflow-katib SDK.
//! - [`serve`] runs the service plus `grpc.health.v1` on a listener you bind; [`run`] is
//!   the whole `katib db-manager` command ([`Args`]): open, migrate, bind, serve.
//!
//! ```text
//! katib db-manager --listen 0.0.0.0:6789 --db mysql://root:test@katib-mysql:3306/katib
//! ```

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;
use tracing::Instrument as _;

pub mod service;
pub mod store;
#[cfg(any(test, feature = "test-support"))]
pub mod testsuite;
pub mod time;

pub use service::DbManagerService;
pub use store::{
    Init, LogQuery, MetricRow, MySqlStore, ObservationStore, PgStore, SqliteStore, StoreError, open_store,
    open_store_with,
};

/// The health names that report the database's state: the whole server (`""`, what
/// Kubernetes' gRPC probe asks), our service, and `grpc.health.v1.Health`, which Katib's
/// own health server answers for.
pub const HEALTH_SERVICES: [&str; 3] = ["", "api.v1.beta1.DBManager", "grpc.health.v1.Health"];

/// How often the health task pings the database.
const PING_EVERY: Duration = Duration::from_secs(5);

/// Flags of `katib db-manager`; each has an environment variable twin.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Address to serve gRPC (DBManager and grpc.health.v1) on.
    #[arg(long, env = "KATIB_DB_MANAGER_LISTEN", default_value = "127.0.0.1:6789")]
    pub listen: SocketAddr,

    /// Database URL: sqlite://<path> (created if missing; sqlite::memory: for a throwaway),
    /// mysql://<user>:<password>@<host>:<port>/<database>, or
    /// postgres://<user>:<password>@<host>:<port>/<database>.
    #[arg(
        long,
        env = "KATIB_DB_URL",
        default_value = "sqlite://katib.db",
        hide_env_values = true
    )]
    pub db: String,
}

/// Why the db-manager stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Opening or migrating the database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The listen address is taken or not ours.
    #[error("cannot listen on {addr} (is another db-manager running? pass --listen <host:port>)")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The socket error.
        #[source]
        source: std::io::Error,
    },
    /// The gRPC server failed while serving.
    #[error("the DBManager gRPC server failed")]
    Serve(#[source] tonic::transport::Error),
}

/// Serves DBManager and `grpc.health.v1` on `listener` until `shutdown` completes.
///
/// Health answers SERVING for [`HEALTH_SERVICES`] while the database answers a ping
/// (checked once before serving, then every few seconds) and NOT_SERVING otherwise.
/// Message size limits are raised to 2^31-1 bytes as in Katib.
pub async fn serve(
    listener: TcpListener,
    store: Arc<dyn ObservationStore>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let (reporter, health) = tonic_health::server::health_reporter();
    let status = probe(&*store).await;
    set_health(&reporter, status).await;
    let watcher = tokio::spawn(
        watch_health(Arc::clone(&store), reporter, status)
            .instrument(tracing::info_span!("db_health", backend = store.backend())),
    );
    let served = tonic::transport::Server::builder()
        .add_service(health)
        .add_service(DbManagerService::new(store).into_server())
        // TCP_NODELAY: small gRPC replies must not wait for a delayed ACK (40 ms).
        .serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
            shutdown,
        )
        .await;
    watcher.abort();
    served.map_err(Error::Serve)
}

/// `katib db-manager`: opens the store (migrating it), binds `--listen`, logs the address
/// and serves until `shutdown` completes, then closes the store.
pub async fn run(args: Args, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<(), Error> {
    let store = open_store(&args.db).await?;
    tracing::info!(db = %store::redact(&args.db), backend = store.backend(), "observation store ready");
    let listener = TcpListener::bind(args.listen)
        .await
        .map_err(|source| Error::Bind {
            addr: args.listen,
            source,
        })?;
    let address = listener.local_addr().unwrap_or(args.listen);
    tracing::info!(%address, "DBManager listening");
    let served = serve(listener, Arc::clone(&store), shutdown).await;
    store.close().await;
    tracing::info!("DBManager stopped");
    served
}

async fn probe(store: &dyn ObservationStore) -> ServingStatus {
    match tokio::time::timeout(PING_EVERY, store.ping()).await {
        Ok(Ok(())) => ServingStatus::Serving,
        Ok(Err(err)) => {
            tracing::warn!(error = %error_chain(&err), "database ping failed");
            ServingStatus::NotServing
        }
        Err(_) => {
            tracing::warn!(timeout = ?PING_EVERY, "database ping timed out");
            ServingStatus::NotServing
        }
    }
}

async fn set_health(reporter: &HealthReporter, status: ServingStatus) {
    for name in HEALTH_SERVICES {
        reporter.set_service_status(name, status).await;
    }
}

async fn watch_health(store: Arc<dyn ObservationStore>, reporter: HealthReporter, mut last: ServingStatus) {
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + PING_EVERY, PING_EVERY);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let status = probe(&*store).await;
        if status != last {
            match status {
                ServingStatus::Serving => tracing::info!("database reachable again; SERVING"),
                _ => tracing::warn!("database unreachable; NOT_SERVING"),
            }
            set_health(&reporter, status).await;
            last = status;
        }
    }
}

/// `err` and its sources, joined with `: ` (for logs; messages never repeat their source).
pub(crate) fn error_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use katib_api::pb;
    use katib_api::pb::db_manager_client::DbManagerClient;
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_check_response::ServingStatus as WireStatus;
    use tonic_health::pb::health_client::HealthClient;

    fn log(time_stamp: &str, name: &str, value: &str) -> pb::MetricLog {
        pb::MetricLog {
            time_stamp: time_stamp.to_owned(),
            metric: Some(pb::Metric {
                name: name.to_owned(),
                value: value.to_owned(),
            }),
        }
    }

    #[tokio::test]
    async fn grpc_report_get_delete_and_health() {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("katib.db").display());
        let store = open_store(&url).await.expect("open store");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, store, async {
            let _ = stopped.await;
        }));

        let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
            .expect("endpoint")
            .connect()
            .await
            .expect("connect");
        let mut client = DbManagerClient::new(channel.clone());
        client
            .report_observation_log(pb::ReportObservationLogRequest {
                trial_name: "trial-a".into(),
                observation_log: Some(pb::ObservationLog {
                    metric_logs: vec![
                        log("2024-05-01T12:00:00.500+02:00", "accuracy", "0.93"),
                        log("2024-05-01T10:00:00Z", "accuracy", "unavailable"),
                        log("2024-05-01T10:00:01Z", "loss", "0.2"),
                    ],
                }),
            })
            .await
            .expect("report");

        let reply = client
            .get_observation_log(pb::GetObservationLogRequest {
                trial_name: "trial-a".into(),
                metric_name: "accuracy".into(),
                ..Default::default()
            })
            .await
            .expect("get")
            .into_inner();
        let got: Vec<(String, String)> = reply
            .observation_log
            .expect("observation_log set")
            .metric_logs
            .into_iter()
            .map(|log| (log.time_stamp, log.metric.expect("metric").value))
            .collect();
        assert_eq!(
            got,
            [
                ("2024-05-01T10:00:00Z".to_owned(), "unavailable".to_owned()),
                ("2024-05-01T10:00:00.5Z".to_owned(), "0.93".to_owned()),
            ]
        );

        let status = client
            .report_observation_log(pb::ReportObservationLogRequest {
                trial_name: "trial-a".into(),
                observation_log: Some(pb::ObservationLog {
                    metric_logs: vec![
                        log("2024-05-01T10:00:02Z", "loss", "0.1"),
                        log("2024-05-01 10:00", "loss", "0.1"),
                    ],
                }),
            })
            .await
            .expect_err("bad time stamp");
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        for needle in ["metric_logs[1]", "\"2024-05-01 10:00\"", "RFC 3339"] {
            assert!(
                status.message().contains(needle),
                "{needle:?} not in {}",
                status.message()
            );
        }

        // Empty list: OK, nothing written (Katib fails here).
        client
            .report_observation_log(pb::ReportObservationLogRequest {
                trial_name: "trial-a".into(),
                observation_log: Some(pb::ObservationLog::default()),
            })
            .await
            .expect("empty report");

        client
            .delete_observation_log(pb::DeleteObservationLogRequest {
                trial_name: "trial-a".into(),
            })
            .await
            .expect("delete");
        let after = client
            .get_observation_log(pb::GetObservationLogRequest {
                trial_name: "trial-a".into(),
                ..Default::default()
            })
            .await
            .expect("get after delete")
            .into_inner();
        assert_eq!(after.observation_log.expect("set").metric_logs, vec![]);

        let mut health = HealthClient::new(channel);
        for service in HEALTH_SERVICES {
            let reply = health
                .check(HealthCheckRequest {
                    service: service.to_owned(),
                })
                .await
                .expect("health check")
                .into_inner();
            assert_eq!(reply.status, WireStatus::Serving as i32, "{service:?}");
        }

        stop.send(()).expect("server still running");
        server.await.expect("server task").expect("server result");
    }

    #[tokio::test]
    async fn run_opens_migrates_and_stops() {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = format!("sqlite://{}", dir.path().join("run.db").display());
        let args = Args {
            listen: "127.0.0.1:0".parse().expect("addr"),
            db: db.clone(),
        };
        run(args, async {}).await.expect("run until shutdown");
        let store = open_store(&db).await.expect("reopen");
        store.ping().await.expect("migrated database");
    }

    #[tokio::test]
    async fn run_reports_an_unopenable_database() {
        let args = Args {
            listen: "127.0.0.1:0".parse().expect("addr"),
            db: "sqlite:///nope/katib.db".into(),
        };
        let err = run(args, async {}).await.expect_err("no directory");
        assert_eq!(
            err.to_string(),
            "cannot open SQLite database /nope/katib.db: directory /nope does not exist \
             (create it or pass --db sqlite://<writable path>)"
        );
    }

    #[test]
    fn args_defaults() {
        use clap::Parser as _;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            args: Args,
        }
        let cli = Cli::try_parse_from(["db-manager"]).expect("defaults");
        assert_eq!(cli.args.listen, "127.0.0.1:6789".parse().expect("addr"));
        assert_eq!(cli.args.db, "sqlite://katib.db");
    }
}

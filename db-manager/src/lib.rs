//! katib-db-manager: Katib's `api.v1.beta1.DBManager` gRPC service and the observation
//! store behind it.
//!
//! - [`store`]: the [`ObservationStore`] trait over Katib's `observation_logs` table, with
//!   sqlx backends for SQLite (the embedded default; `sqlite://katib.db`), MySQL/MariaDB
//!   and PostgreSQL, and embedded migrations (`migrations/{sqlite,mysql,postgres}`) that
//!   adopt a database Katib already created. [`open_store`] picks the backend by URL.
//! - [`service`]: [`DbManagerService`], the gRPC handlers (validate, call the store,
//!   convert back), wire-compatible with Katib's db-manager and the kubeflow-katib SDK.
//! - [`config`]: which database to open: `--db`, Katib's environment variables
//!   (`DB_NAME`, `DB_USER`, `KATIB_MYSQL_DB_HOST`, ...), or the SQLite default.
//! - [`serve`] runs the service plus `grpc.health.v1` on a listener you bind; [`run`] is
//!   the whole `katib db-manager` command ([`Args`]): bind, serve, and open the database
//!   in the background ([`LazyStore`]), answering NOT_SERVING until it is reachable.
//!
//! ```text
//! katib db-manager --listen 0.0.0.0:6789 --db mysql://root:test@katib-mysql:3306/katib
//! DB_NAME=mysql DB_PASSWORD=test katib db-manager      # Katib's manifests' variables
//! ```
//!
//! Not here: experiment logic (the controller reads observations through this service or
//! through [`ObservationStore`] directly). See `docs/db-manager.md`.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;
use tracing::Instrument as _;

pub mod config;
pub mod experiments;
pub mod service;
pub mod store;
#[cfg(any(test, feature = "test-support"))]
pub mod testsuite;
pub mod time;

pub use experiments::{ExperimentListing, ExperimentRecord, ExperimentStore, TrialRecord};
pub use service::DbManagerService;
pub use store::{
    Appended, Backend, BestValue, Goal, Init, LazyStore, LogQuery, MetricGoal, MetricRow, MySqlStore,
    ObservationStore, PgStore, ReportKey, SqliteStore, StoreError, StoreOptions, TrialSet, open_store,
    open_store_opts, open_store_with,
};

/// The health names that report the database's state: the whole server (`""`, what
/// Kubernetes' gRPC probe asks), our service, and `grpc.health.v1.Health`, which Katib's
/// own health server answers for.
pub const HEALTH_SERVICES: [&str; 3] = ["", "api.v1.beta1.DBManager", "grpc.health.v1.Health"];

/// Where `katib db-manager` listens by default: loopback, for one machine.
pub const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 6789);

/// Where it listens when configured by Katib's variables: Katib's `0.0.0.0:6789`.
pub const KATIB_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 6789);

/// How often the health task pings a database that answered last time.
const PING_EVERY: Duration = Duration::from_secs(5);

/// How often it pings one that did not (so SERVING comes back quickly).
const PING_DOWN_EVERY: Duration = Duration::from_secs(1);

/// Flags of `katib db-manager`; each has an environment variable twin. Katib's own
/// variables (`DB_NAME`, `DB_USER`, `DB_PASSWORD`, `KATIB_MYSQL_DB_*`,
/// `KATIB_POSTGRESQL_DB_*`, `SKIP_DB_INITIALIZATION`) are read too; see [`config`].
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Address to serve gRPC (DBManager and grpc.health.v1) on. Default 127.0.0.1:6789,
    /// or Katib's 0.0.0.0:6789 when the database comes from Katib's DB_NAME variables
    /// (as in Katib's manifests).
    #[arg(long, visible_alias = "listen-address", env = "KATIB_DB_MANAGER_LISTEN")]
    pub listen: Option<SocketAddr>,

    /// Database URL: sqlite://<path> (created if missing; sqlite::memory: for a throwaway),
    /// mysql://<user>:<password>@<host>:<port>/<database>, or
    /// postgres://<user>:<password>@<host>:<port>/<database>. Wins over Katib's DB_NAME
    /// variables; without either, sqlite://katib.db.
    #[arg(long, env = "KATIB_DB_URL", hide_env_values = true)]
    pub db: Option<String>,

    /// Most database connections in the pool.
    #[arg(
        long,
        env = "KATIB_DB_MAX_CONNECTIONS",
        default_value_t = store::DEFAULT_MAX_CONNECTIONS,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub max_connections: u32,

    /// As Katib's flag: how long the database may stay unreachable at start-up before that
    /// is logged as an error (e.g. 60s, 1m30s). Unlike Katib we never exit: we keep
    /// retrying in the background and answer health NOT_SERVING meanwhile.
    #[arg(
        long,
        env = "KATIB_DB_CONNECT_TIMEOUT",
        default_value = "60s",
        value_parser = config::parse_duration
    )]
    pub connect_timeout: Duration,
}

impl Args {
    /// The flags' defaults, with `db` as given.
    pub fn with_db(db: impl Into<String>) -> Self {
        Self {
            listen: None,
            db: Some(db.into()),
            max_connections: store::DEFAULT_MAX_CONNECTIONS,
            connect_timeout: Duration::from_secs(60),
        }
    }
}

/// Why the db-manager stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The database configuration cannot work.
    #[error(transparent)]
    Config(#[from] config::ConfigError),
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
    // TCP_NODELAY: without it, small HTTP/2 frames of a reply wait for the client's
    // delayed ACK (40 ms on Linux), which dominated GetObservationLog latency.
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    serve_incoming(incoming, store, shutdown).await
}

/// [`serve`] on a Unix socket: for clients in the same process or on the same machine,
/// which skip TCP's work on every message (`katib run`'s own collectors use one).
#[cfg(unix)]
pub async fn serve_unix(
    listener: tokio::net::UnixListener,
    store: Arc<dyn ObservationStore>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let incoming = futures::stream::unfold(listener, |listener| async move {
        let accepted = listener.accept().await.map(|(stream, _)| stream);
        Some((accepted, listener))
    });
    serve_incoming(incoming, store, shutdown).await
}

async fn serve_incoming<I, IO, IE>(
    incoming: I,
    store: Arc<dyn ObservationStore>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error>
where
    I: futures::Stream<Item = Result<IO, IE>>,
    IO: tokio::io::AsyncRead
        + tokio::io::AsyncWrite
        + tonic::transport::server::Connected
        + Unpin
        + Send
        + 'static,
    IO::ConnectInfo: Clone + Send + Sync + 'static,
    IE: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (reporter, health) = tonic_health::server::health_reporter();
    let status = probe(&*store, false).await;
    set_health(&reporter, status).await;
    let watcher = tokio::spawn(
        watch_health(Arc::clone(&store), reporter, status)
            .instrument(tracing::info_span!("db_health", backend = store.backend())),
    );
    let served = tonic::transport::Server::builder()
        .add_service(health)
        .add_service(DbManagerService::new(store).into_server())
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await;
    watcher.abort();
    served.map_err(Error::Serve)
}

/// `katib db-manager`: resolves the database ([`config::resolve`]), binds `--listen` and
/// serves until `shutdown` completes, then closes the store.
///
/// A SQLite database is opened before serving (any error is final). A MySQL or
/// PostgreSQL database is opened in the background ([`LazyStore`]): the server answers at
/// once, health NOT_SERVING and RPCs UNAVAILABLE until the database is reachable and
/// migrated, retrying with backoff for as long as it takes. Only a malformed URL or
/// configuration fails the start.
pub async fn run(args: Args, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<(), Error> {
    let target = config::resolve(args.db.as_deref(), |name| std::env::var(name).ok())?;
    let options = StoreOptions {
        init: target.init,
        max_connections: args.max_connections,
        ..StoreOptions::default()
    };
    tracing::info!(
        db = %store::redact(&target.url),
        from = ?target.origin,
        init = ?target.init,
        max_connections = options.max_connections,
        "database"
    );
    let store: Arc<dyn ObservationStore> = match Backend::of_url(&target.url)? {
        Backend::Sqlite => {
            let store = open_store_opts(&target.url, &options).await?;
            tracing::info!(backend = store.backend(), "observation store ready");
            Arc::new(LazyStore::ready(store))
        }
        Backend::MySql | Backend::Postgres => {
            Arc::new(LazyStore::connect(&target.url, options, args.connect_timeout)?)
        }
    };
    let listen = args.listen.unwrap_or(match target.origin {
        config::Origin::KatibEnv => KATIB_LISTEN,
        config::Origin::Flag | config::Origin::Default => DEFAULT_LISTEN,
    });
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|source| Error::Bind { addr: listen, source })?;
    let address = listener.local_addr().unwrap_or(listen);
    tracing::info!(%address, "DBManager listening");
    let served = serve(listener, Arc::clone(&store), shutdown).await;
    store.close().await;
    tracing::info!("DBManager stopped");
    served
}

async fn probe(store: &dyn ObservationStore, was_serving: bool) -> ServingStatus {
    match tokio::time::timeout(PING_EVERY, store.ping()).await {
        Ok(Ok(())) => ServingStatus::Serving,
        Ok(Err(err)) => {
            if was_serving {
                tracing::warn!(error = %error_chain(&err), "database ping failed");
            } else {
                tracing::debug!(error = %error_chain(&err), "database ping failed");
            }
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
    loop {
        let serving = last == ServingStatus::Serving;
        tokio::time::sleep(if serving { PING_EVERY } else { PING_DOWN_EVERY }).await;
        let status = probe(&*store, serving).await;
        if status != last {
            match status {
                ServingStatus::Serving => tracing::info!("database reachable; SERVING"),
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

    /// `katib run`'s collectors report over a Unix socket: the same service, whole.
    #[cfg(unix)]
    #[tokio::test]
    async fn serves_reports_and_reads_on_a_unix_socket() {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("katib.db").display());
        let store = open_store(&url).await.expect("open store");
        let path = dir.path().join("db-manager.sock");
        let listener = tokio::net::UnixListener::bind(&path).expect("bind");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve_unix(listener, store, async {
            let _ = stopped.await;
        }));
        let channel = tonic::transport::Endpoint::from_static("http://localhost")
            .connect_with_connector(tower::service_fn(move |_: tonic::transport::Uri| {
                let path = path.clone();
                async move {
                    let stream = tokio::net::UnixStream::connect(path).await?;
                    Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
                }
            }))
            .await
            .expect("connect");
        let mut client = DbManagerClient::new(channel);
        client
            .report_observation_log(pb::ReportObservationLogRequest {
                trial_name: "trial-u".into(),
                observation_log: Some(pb::ObservationLog {
                    metric_logs: vec![
                        log("2024-05-01T10:00:00Z", "loss", "0.5"),
                        log("2024-05-01T10:00:01Z", "loss", "0.25"),
                    ],
                }),
            })
            .await
            .expect("report");
        let got = client
            .get_observation_log(pb::GetObservationLogRequest {
                trial_name: "trial-u".into(),
                ..Default::default()
            })
            .await
            .expect("get")
            .into_inner();
        let values: Vec<String> = got
            .observation_log
            .expect("a log")
            .metric_logs
            .into_iter()
            .map(|l| l.metric.expect("metric").value)
            .collect();
        assert_eq!(values, ["0.5", "0.25"]);
        stop.send(()).expect("server running");
        server.await.expect("join").expect("served until stopped");
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
    async fn unreachable_database_serves_not_serving_and_unavailable() {
        // A port nobody listens on: the store keeps connecting in the background.
        let closed = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = closed.local_addr().expect("addr").port();
        drop(closed);
        let url = format!("mysql://katib:secret@127.0.0.1:{port}/katib");
        let store = Arc::new(
            LazyStore::connect(&url, StoreOptions::default(), Duration::from_secs(1))
                .expect("a well-formed URL starts"),
        );
        assert!(!store.is_connected());
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
        let reply = HealthClient::new(channel.clone())
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .expect("health answers while the database is down")
            .into_inner();
        assert_eq!(reply.status, WireStatus::NotServing as i32);
        let status = DbManagerClient::new(channel)
            .report_observation_log(pb::ReportObservationLogRequest {
                trial_name: "t".into(),
                observation_log: Some(pb::ObservationLog {
                    metric_logs: vec![log("2024-05-01T10:00:00Z", "loss", "1")],
                }),
            })
            .await
            .expect_err("no database");
        assert_eq!(status.code(), tonic::Code::Unavailable);
        assert!(!status.message().contains("secret"), "{}", status.message());
        stop.send(()).expect("server still running");
        server.await.expect("server task").expect("server result");

        let err = LazyStore::connect("mysql://h:notaport/db", StoreOptions::default(), Duration::ZERO)
            .expect_err("malformed URL fails at once");
        assert!(matches!(err, StoreError::InvalidUrl { .. }), "{err}");
    }

    #[tokio::test]
    async fn run_opens_migrates_and_stops() {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = format!("sqlite://{}", dir.path().join("run.db").display());
        let args = Args {
            listen: Some("127.0.0.1:0".parse().expect("addr")),
            ..Args::with_db(db.clone())
        };
        run(args, async {}).await.expect("run until shutdown");
        let store = open_store(&db).await.expect("reopen");
        store.ping().await.expect("migrated database");
    }

    #[tokio::test]
    async fn run_reports_an_unopenable_database() {
        let args = Args {
            listen: Some("127.0.0.1:0".parse().expect("addr")),
            ..Args::with_db("sqlite:///nope/katib.db")
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
        assert_eq!(cli.args.listen, None);
        assert_eq!(cli.args.db, None);
        assert_eq!(cli.args.max_connections, 10);
        assert_eq!(cli.args.connect_timeout, Duration::from_secs(60));
        let cli = Cli::try_parse_from([
            "db-manager",
            "--listen-address",
            "0.0.0.0:6789",
            "--connect-timeout",
            "1m30s",
            "--max-connections",
            "32",
        ])
        .expect("katib-style flags");
        assert_eq!(cli.args.connect_timeout, Duration::from_secs(90));
        assert_eq!(cli.args.max_connections, 32);
        assert!(Cli::try_parse_from(["db-manager", "--max-connections", "0"]).is_err());
    }
}

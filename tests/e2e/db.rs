//! db-manager on real databases: the store conformance suite on SQLite, MariaDB and
//! PostgreSQL; kubeflow-katib's `report_metrics` and `KatibClient.get_trial_metrics`
//! against `katib db-manager` on MariaDB; and a collector that keeps reporting while
//! MariaDB is killed and restarted, with every row stored exactly once.
//!
//! The servers come from `scripts/databases.sh` (`.ci/run` starts them and exports
//! `KATIB_TEST_MYSQL_URL` / `KATIB_TEST_POSTGRES_URL`). Under `CI=true` a missing server
//! fails the test; elsewhere the test prints `SKIP <test>: <why>` and passes.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use katib_api::pb;
use katib_api::pb::db_manager_client::DbManagerClient;
use katib_db_manager::testsuite;
use katib_metrics_collector::collector::{BatchPolicy, Collector, CollectorConfig, ObjectiveType};
use katib_metrics_collector::sink::{DbManagerSink, RetryPolicy};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::harness::*;

fn in_ci() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}

/// The server URL in `var`, or `None` after a SKIP line (a panic under CI=true).
fn server_url(test: &str, var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(
                !in_ci(),
                "{test}: {var} is not set; CI must start the databases \
                 (eval \"$(scripts/databases.sh start <dir>)\")"
            );
            eprintln!("SKIP {test}: set {var} (eval \"$(scripts/databases.sh start /tmp/katib-dbs)\")");
            None
        }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn store_suite_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("suite.db").display());
    runtime().block_on(async {
        let store = katib_db_manager::open_store(&url).await.unwrap();
        testsuite::run_all(&*store).await;
        store.close().await;
        testsuite::reopen_keeps_data(&url).await;
    });
}

#[test]
fn store_suite_on_mariadb() {
    let Some(url) = server_url("store_suite_on_mariadb", "KATIB_TEST_MYSQL_URL") else {
        return;
    };
    runtime().block_on(testsuite::on_server(&url));
}

#[test]
fn store_suite_on_postgres() {
    let Some(url) = server_url("store_suite_on_postgres", "KATIB_TEST_POSTGRES_URL") else {
        return;
    };
    runtime().block_on(testsuite::on_server(&url));
}

async fn channel(addr: &str) -> tonic::transport::Channel {
    tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_lazy()
}

async fn health(channel: &tonic::transport::Channel) -> Option<i32> {
    let mut client = HealthClient::new(channel.clone());
    let request = HealthCheckRequest {
        service: String::new(),
    };
    match tokio::time::timeout(Duration::from_secs(5), client.check(request)).await {
        Ok(Ok(reply)) => Some(reply.into_inner().status),
        _ => None,
    }
}

/// Polls grpc.health.v1 until it answers `want`.
async fn wait_health(channel: &tonic::transport::Channel, want: ServingStatus, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let got = health(channel).await;
        if got == Some(want as i32) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "health still {got:?}, want {want:?} after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

const SDK_SCRIPT: &str = r#"
import os, sys, time, grpc, kubernetes
from kubeflow.katib import KatibClient, report_metrics
from kubeflow.katib import katib_api_pb2 as pb, katib_api_pb2_grpc as rpc
addr, trial = sys.argv[1], sys.argv[2]
os.environ["KATIB_TRIAL_NAME"] = trial
# The SDK's own code path: report_metrics sends one ReportObservationLog per call with a
# second-precision UTC time stamp and str(value) for each metric.
for epoch in range(3):
    report_metrics({"accuracy": 0.5 + epoch / 10, "loss": 1.0 / (epoch + 1)}, db_manager_address=addr, timeout=30)
    time.sleep(1.05)
try:
    report_metrics({"accuracy": "not a number"}, db_manager_address=addr)
    raise SystemExit("a non-numeric value was accepted")
except ValueError as e:
    print("client-side validation:", e)
# KatibClient with a dummy Kubernetes configuration: no cluster is contacted;
# get_trial_metrics only calls DBManager.GetObservationLog.
client = KatibClient(client_configuration=kubernetes.client.Configuration(), namespace="default")
logs = client.get_trial_metrics(trial, db_manager_address=addr, timeout=30)
got = [(l.metric.name, l.metric.value) for l in logs]
want = [("accuracy", "0.5"), ("loss", "1.0"), ("accuracy", "0.6"), ("loss", "0.5"),
        ("accuracy", "0.7"), ("loss", "0.3333333333333333")]
assert got == want, got
assert all(l.time_stamp.endswith("Z") and "T" in l.time_stamp for l in logs), logs
assert logs[0].time_stamp < logs[2].time_stamp < logs[4].time_stamp, logs
try:
    KatibClient(client_configuration=kubernetes.client.Configuration()).get_trial_metrics(
        "", db_manager_address=addr, timeout=10)
    raise SystemExit("an empty trial name was accepted")
except RuntimeError as e:
    assert "INVALID_ARGUMENT" in str(e), e
print("OK", len(logs))
"#;

#[test]
fn kubeflow_katib_sdk_report_and_get_trial_metrics_on_mariadb() {
    let test = "kubeflow_katib_sdk_report_and_get_trial_metrics_on_mariadb";
    let Some(admin) = server_url(test, "KATIB_TEST_MYSQL_URL") else {
        return;
    };
    if !python_katib_available(test) {
        return;
    }
    let rt = runtime();
    let scratch_db = rt.block_on(testsuite::ScratchDb::create(&admin));
    let s = Scratch::new();
    let svc = start_service(&s, &["db-manager", "--db", &scratch_db.url]);
    rt.block_on(async {
        let ch = channel(&svc.addr).await;
        wait_health(&ch, ServingStatus::Serving, Duration::from_secs(60)).await;
    });
    let shim = report_metrics_shim(s.path());
    let mut child = Command::new("python3");
    child
        .arg("-c")
        .arg(SDK_SCRIPT)
        .args([svc.addr.as_str(), "sdk-trial-1"])
        .env("PYTHONPATH", &shim);
    let out = run_with_deadline(child, Duration::from_secs(120));
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        out.status.success() && stdout.contains("OK 6"),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    drop(svc);
    rt.block_on(scratch_db.drop_database());
}

fn databases_sh() -> PathBuf {
    repo().join("scripts/databases.sh")
}

/// `scripts/databases.sh mariadb <action> <dir> [port]`.
fn mariadb(action: &str, dir: &std::path::Path, port: Option<u16>) {
    let mut cmd = Command::new("bash");
    cmd.arg(databases_sh()).args(["mariadb", action]).arg(dir);
    if let Some(port) = port {
        cmd.arg(port.to_string());
    }
    let out = run_with_deadline(cmd, Duration::from_secs(120));
    assert!(
        out.status.success(),
        "databases.sh mariadb {action} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn mariadb_installed(test: &str) -> bool {
    let ok = Command::new("bash")
        .args([
            "-c",
            "command -v mariadb-install-db && test -x /usr/sbin/mariadbd",
        ])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        assert!(
            !in_ci(),
            "{test}: MariaDB is required in CI (scripts/databases.sh install)"
        );
        eprintln!("SKIP {test}: MariaDB is not installed (scripts/databases.sh install)");
    }
    ok
}

/// A private MariaDB, stopped on drop.
struct PrivateMariaDb {
    dir: tempfile::TempDir,
    port: u16,
}

impl Drop for PrivateMariaDb {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(databases_sh())
            .args(["mariadb", "kill"])
            .arg(self.dir.path())
            .output();
    }
}

/// db-manager starts before its database exists (NOT_SERVING, writes UNAVAILABLE), comes
/// up when it does; a collector then streams rows while MariaDB is killed (SIGKILL, a
/// crash) and restarted; every row lands exactly once, and a report sent twice is stored
/// once.
#[test]
fn collector_survives_a_database_crash_and_rows_land_exactly_once() {
    let test = "collector_survives_a_database_crash_and_rows_land_exactly_once";
    if !mariadb_installed(test) {
        return;
    }
    let db = PrivateMariaDb {
        dir: tempfile::tempdir().unwrap(),
        port: free_port(),
    };
    let url = format!("mysql://katib:katib@127.0.0.1:{}/katib", db.port);
    let s = Scratch::new();
    // db-manager first, while nothing listens on the database port.
    let svc = start_service(&s, &["db-manager", "--db", &url, "--connect-timeout", "5s"]);
    let rt = runtime();
    let ch = rt.block_on(channel(&svc.addr));
    rt.block_on(async {
        wait_health(&ch, ServingStatus::NotServing, Duration::from_secs(10)).await;
        let err = DbManagerClient::new(ch.clone())
            .report_observation_log(report("early", &[("2024-05-01T10:00:00Z", "loss", "1")]))
            .await
            .expect_err("no database yet");
        assert_eq!(err.code(), tonic::Code::Unavailable, "{err:?}");
    });
    mariadb("start", db.dir.path(), Some(db.port));
    rt.block_on(wait_health(&ch, ServingStatus::Serving, Duration::from_secs(60)));

    // The same report twice (a retry after a lost answer): stored once.
    rt.block_on(async {
        let mut client = DbManagerClient::new(ch.clone());
        let twice = report(
            "retried",
            &[
                ("2024-05-01T10:00:00Z", "loss", "0.5"),
                ("2024-05-01T10:00:01Z", "loss", "0.4"),
            ],
        );
        client.report_observation_log(twice.clone()).await.unwrap();
        client.report_observation_log(twice).await.unwrap();
        assert_eq!(get(&ch, "retried").await.len(), 2);
    });

    // A collector streams 2 metrics per line while MariaDB is killed and restarted.
    const LINES: usize = 1500;
    let trial = "crash-trial";
    let chaos = {
        let dir = db.dir.path().to_owned();
        let port = db.port;
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(2));
            mariadb("kill", &dir, None);
            std::thread::sleep(Duration::from_secs(3));
            mariadb("start", &dir, Some(port));
        })
    };
    let summary = rt.block_on(async {
        let sink = DbManagerSink::connect_lazy(&svc.addr)
            .unwrap()
            .with_retry(RetryPolicy {
                deadline: Duration::from_secs(120),
                initial_backoff: Duration::from_millis(50),
                max_backoff: Duration::from_millis(500),
            });
        let mut config = CollectorConfig::text(
            trial,
            vec!["loss".into(), "step".into()],
            ObjectiveType::Minimize,
            &[],
        )
        .unwrap();
        config.batch = BatchPolicy {
            max_rows: 20,
            max_delay: Duration::from_millis(20),
        };
        let mut collector = Collector::new(config, Arc::new(sink)).unwrap();
        for step in 0..LINES {
            collector.push_line(&format!("step={step} loss={}", 1.0 / (step as f64 + 1.0)));
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        collector.finish().await.unwrap()
    });
    chaos.join().unwrap();
    assert_eq!(summary.reported, 2 * LINES as u64, "{summary:?}");
    rt.block_on(async {
        wait_health(&ch, ServingStatus::Serving, Duration::from_secs(60)).await;
        let rows = get(&ch, trial).await;
        let mut steps: Vec<usize> = rows
            .iter()
            .filter(|(name, _)| name == "step")
            .map(|(_, value)| value.parse().unwrap())
            .collect();
        assert_eq!(rows.len(), 2 * LINES, "every row exactly once");
        steps.sort_unstable();
        assert_eq!(
            steps,
            (0..LINES).collect::<Vec<_>>(),
            "each step once, none missing"
        );
    });
    drop(svc);
    drop(db);
}

fn report(trial: &str, logs: &[(&str, &str, &str)]) -> pb::ReportObservationLogRequest {
    pb::ReportObservationLogRequest {
        trial_name: trial.into(),
        observation_log: Some(pb::ObservationLog {
            metric_logs: logs
                .iter()
                .map(|(time, name, value)| pb::MetricLog {
                    time_stamp: (*time).into(),
                    metric: Some(pb::Metric {
                        name: (*name).into(),
                        value: (*value).into(),
                    }),
                })
                .collect(),
        }),
    }
}

async fn get(ch: &tonic::transport::Channel, trial: &str) -> Vec<(String, String)> {
    DbManagerClient::new(ch.clone())
        .get_observation_log(pb::GetObservationLogRequest {
            trial_name: trial.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .observation_log
        .unwrap_or_default()
        .metric_logs
        .into_iter()
        .map(|log| {
            let metric = log.metric.unwrap_or_default();
            (metric.name, metric.value)
        })
        .collect()
}

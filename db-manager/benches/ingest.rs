//! db-manager on MariaDB/MySQL: ingest and read, beside the raw-database floor measured
//! in the same run.
//!
//! ```text
//! eval "$(scripts/databases.sh start /tmp/katib-dbs)"
//! cargo bench -p katib-db-manager --bench ingest            # KATIB_TEST_MYSQL_URL
//! ```
//!
//! - Ingest: rows/s of `ReportObservationLog` over gRPC (in-process server, real MariaDB)
//!   with 1, 10 and 100 metric logs per request and 1 or 16 concurrent clients; the floor
//!   is the same rows sent as plain multi-row `INSERT`s through sqlx by as many clients.
//!   Median of `KATIB_BENCH_REPEATS` (default 3) runs of `KATIB_BENCH_SECONDS` (default
//!   3) seconds each.
//! - Read: with 1,000 trials x 1,000 rows in the table (after InnoDB has purged the ingest
//!   half's deleted rows and flushed the seeded pages), `GetObservationLog` of one trial
//!   over gRPC (p50/p95 of 300 calls; floor: the same `SELECT` through sqlx), and the
//!   bulk best-value read of the 1,000-trial experiment (p50/p95 of 30 calls; floor: one
//!   `GROUP BY` over the observation rows, what a store without summaries must do).
//!
//! The server is an admin URL whose user may create databases (`KATIB_BENCH_MYSQL_URL`,
//! else `KATIB_TEST_MYSQL_URL`); the bench works in its own `katib_bench_<pid>` database
//! and drops it at the end. `KATIB_BENCH_ONLY=read` runs only the read half.

use std::sync::Arc;
use std::time::{Duration, Instant};

use katib_api::pb;
use katib_api::pb::db_manager_client::DbManagerClient;
use katib_db_manager::{Goal, Init, MetricGoal, MySqlStore, ObservationStore, StoreOptions, TrialSet};
use sqlx::mysql::{MySqlPool, MySqlPoolOptions};
use sqlx::{MySql, QueryBuilder};

const TRIALS: usize = 1000;
const ROWS_PER_TRIAL: usize = 1000;

type BenchResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() -> BenchResult<()> {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing we use.
    let admin = match std::env::var("KATIB_BENCH_MYSQL_URL")
        .or_else(|_| std::env::var("KATIB_TEST_MYSQL_URL"))
    {
        Ok(url) => url,
        Err(_) => {
            eprintln!(
                "SKIP ingest bench: set KATIB_TEST_MYSQL_URL (eval \"$(scripts/databases.sh start /tmp/katib-dbs)\")"
            );
            return Ok(());
        }
    };
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(bench(&admin))
}

async fn bench(admin: &str) -> BenchResult<()> {
    let seconds = Duration::from_secs(env_or("KATIB_BENCH_SECONDS", 3));
    let repeats = env_or("KATIB_BENCH_REPEATS", 3).max(1) as usize;
    let name = format!("katib_bench_{}", std::process::id());
    let admin_pool = MySqlPoolOptions::new().max_connections(1).connect(admin).await?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name}")))
        .execute(&admin_pool)
        .await?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&admin_pool)
        .await?;
    let url = with_database(admin, &name);
    let version: String = sqlx::query_scalar("SELECT VERSION()")
        .fetch_one(&admin_pool)
        .await?;

    // The same pool size for the store and the floor: what `--max-connections 20` gives.
    let options = StoreOptions {
        max_connections: 20,
        ..StoreOptions::default()
    };
    let store = Arc::new(MySqlStore::connect_with(&url, &options).await?);
    store.init(Init::Migrate).await?;
    let raw = MySqlPoolOptions::new().max_connections(20).connect(&url).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served: Arc<dyn ObservationStore> = Arc::clone(&store) as Arc<dyn ObservationStore>;
    let server = tokio::spawn(katib_db_manager::serve(listener, served, async {
        let _ = stopped.await;
    }));

    println!("# db-manager ingest/read bench on {version}, {} cores", cores());
    println!(
        "command: cargo bench -p katib-db-manager --bench ingest  \
         (KATIB_BENCH_SECONDS={}, KATIB_BENCH_REPEATS={repeats})\n",
        seconds.as_secs()
    );
    println!(
        "## Ingest (rows/s, median of {repeats} x {}s)\n",
        seconds.as_secs()
    );
    println!(
        "| logs/request | clients | ReportObservationLog (gRPC) | raw multi-row INSERT (floor) | ratio |"
    );
    println!("|---:|---:|---:|---:|---:|");
    let mut run = 0_usize;
    // KATIB_BENCH_ONLY=read skips the ingest half (to iterate on reads).
    let ingest = std::env::var("KATIB_BENCH_ONLY").map_or(true, |only| only != "read");
    for per_request in [1_usize, 10, 100].into_iter().filter(|_| ingest) {
        for clients in [1_usize, 16] {
            let mut ours = Vec::new();
            let mut floor = Vec::new();
            for _ in 0..repeats {
                run += 1;
                ours.push(ingest_grpc(addr, per_request, clients, seconds, run).await?);
                floor.push(ingest_raw(&raw, per_request, clients, seconds, run).await?);
            }
            let (ours, floor) = (median(&mut ours), median(&mut floor));
            println!(
                "| {per_request} | {clients} | {ours:.0} | {floor:.0} | {:.0}% |",
                100.0 * ours / floor
            );
        }
    }

    // Reads over a table of TRIALS x ROWS_PER_TRIAL rows (plus the ingest rows).
    sqlx::query("DELETE FROM observation_logs").execute(&raw).await?;
    let seed_started = Instant::now();
    seed(&store).await?;
    let total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM observation_logs")
        .fetch_one(&raw)
        .await?;
    sqlx::query("ANALYZE TABLE observation_logs, metric_summaries")
        .execute(&raw)
        .await?;
    let settled = settle(&raw).await?;
    println!(
        "\n## Read ({total} rows: {TRIALS} trials x {ROWS_PER_TRIAL}, seeded through the store in {:.1}s; \
         InnoDB settled {settled:.1}s before reading)\n",
        seed_started.elapsed().as_secs_f64()
    );
    println!("| read | p50 | p95 | floor p50 | floor p95 |");
    println!("|---|---:|---:|---:|---:|");

    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))?
        .connect()
        .await?;
    let mut client =
        DbManagerClient::new(channel).max_decoding_message_size(katib_db_manager::service::MAX_MESSAGE_SIZE);
    let mut rng = 0x2545_f491_4f6c_dd1d_u64;
    let mut next_trial = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        format!("bench-read-{:04}", rng % TRIALS as u64)
    };
    let mut ours = Vec::new();
    let mut floor = Vec::new();
    let mut direct = Vec::new();
    for _ in 0..300 {
        let trial = next_trial();
        let started = Instant::now();
        let reply = client
            .get_observation_log(pb::GetObservationLogRequest {
                trial_name: trial.clone(),
                ..Default::default()
            })
            .await?
            .into_inner();
        ours.push(started.elapsed());
        let rows = reply.observation_log.map_or(0, |log| log.metric_logs.len());
        assert_eq!(rows, ROWS_PER_TRIAL, "{trial}");
        let started = Instant::now();
        let raw_rows: Vec<(String, String, String)> = sqlx::query_as(
            "SELECT DATE_FORMAT(time, '%Y-%m-%d %H:%i:%s.%f'), metric_name, value \
             FROM observation_logs WHERE trial_name = ? ORDER BY time, id",
        )
        .bind(&trial)
        .fetch_all(&raw)
        .await?;
        floor.push(started.elapsed());
        assert_eq!(raw_rows.len(), ROWS_PER_TRIAL);
        let started = Instant::now();
        let rows = store
            .get(&katib_db_manager::LogQuery::trial(trial.clone()))
            .await?;
        direct.push(started.elapsed());
        assert_eq!(rows.len(), ROWS_PER_TRIAL);
    }
    print_latency(
        "GetObservationLog, one trial (1,000 rows), gRPC",
        &mut ours,
        &mut floor,
    );
    print_latency(
        "the same read through the store, no gRPC",
        &mut direct,
        &mut floor,
    );

    let goals = [
        MetricGoal::new("accuracy", Goal::Max),
        MetricGoal::new("loss", Goal::Min),
    ];
    let names: Vec<String> = (0..TRIALS).map(|i| format!("bench-read-{i:04}")).collect();
    let mut by_prefix = Vec::new();
    let mut by_names = Vec::new();
    let mut floor = Vec::new();
    for _ in 0..30 {
        let started = Instant::now();
        let best = store
            .best_values(&TrialSet::Prefix("bench-read-".into()), &goals)
            .await?;
        by_prefix.push(started.elapsed());
        assert_eq!(best.len(), 2 * TRIALS);
        let started = Instant::now();
        let best = store.best_values(&TrialSet::Names(names.clone()), &goals).await?;
        by_names.push(started.elapsed());
        assert_eq!(best.len(), 2 * TRIALS);
        let started = Instant::now();
        let grouped: Vec<(String, String, Option<f64>, Option<f64>)> = sqlx::query_as(
            "SELECT trial_name, metric_name, MIN(value + 0E0), MAX(value + 0E0) \
             FROM observation_logs WHERE trial_name LIKE 'bench-read-%' \
             AND metric_name IN ('accuracy', 'loss') GROUP BY trial_name, metric_name",
        )
        .fetch_all(&raw)
        .await?;
        floor.push(started.elapsed());
        assert_eq!(grouped.len(), 2 * TRIALS);
    }
    let mut floor2 = floor.clone();
    print_latency(
        "best values of 1,000 trials by prefix (store)",
        &mut by_prefix,
        &mut floor,
    );
    print_latency(
        "best values of 1,000 trials by name list (store)",
        &mut by_names,
        &mut floor2,
    );
    println!("\nfloor for best values: one GROUP BY over the observation rows (no summaries).");

    let _ = stop.send(());
    server.await??;
    store.close().await;
    raw.close().await;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name}")))
        .execute(&admin_pool)
        .await?;
    Ok(())
}

/// Waits (at most a minute) until InnoDB has purged the ingest half's deleted rows and flushed
/// most of the seeded pages, so the reads measure a table of 1M rows rather than the server's
/// background work on a 2-core machine. Returns the seconds waited.
async fn settle(pool: &MySqlPool) -> BenchResult<f64> {
    let started = Instant::now();
    let status = |name: &'static str| async move {
        let row: Option<(String, String)> =
            sqlx::query_as(sqlx::AssertSqlSafe(format!("SHOW GLOBAL STATUS LIKE '{name}'")))
                .fetch_optional(pool)
                .await?;
        Ok::<u64, sqlx::Error>(row.and_then(|(_, v)| v.parse().ok()).unwrap_or(0))
    };
    while started.elapsed() < Duration::from_secs(60) {
        let history = status("Innodb_history_list_length").await?;
        let dirty = status("Innodb_buffer_pool_pages_dirty").await?;
        if history < 100 && dirty < 1000 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Ok(started.elapsed().as_secs_f64())
}

/// Rows/s of `clients` gRPC clients each sending reports of `per_request` logs for
/// `duration`.
async fn ingest_grpc(
    addr: std::net::SocketAddr,
    per_request: usize,
    clients: usize,
    duration: Duration,
    run: usize,
) -> BenchResult<f64> {
    let mut tasks = Vec::new();
    let started = Instant::now();
    for client_no in 0..clients {
        let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))?
            .connect()
            .await?;
        tasks.push(tokio::spawn(async move {
            let mut client = DbManagerClient::new(channel);
            let trial = format!("bench-ingest-{run}-{client_no}");
            let mut rows = 0_usize;
            let mut seq = 0_u64;
            while started.elapsed() < duration {
                let metric_logs = (0..per_request)
                    .map(|i| {
                        seq += 1;
                        pb::MetricLog {
                            time_stamp: stamp(seq),
                            metric: Some(pb::Metric {
                                name: if i % 2 == 0 { "loss" } else { "accuracy" }.into(),
                                value: format!("0.{seq}"),
                            }),
                        }
                    })
                    .collect();
                client
                    .report_observation_log(pb::ReportObservationLogRequest {
                        trial_name: trial.clone(),
                        observation_log: Some(pb::ObservationLog { metric_logs }),
                    })
                    .await?;
                rows += per_request;
            }
            Ok::<usize, tonic::Status>(rows)
        }));
    }
    let mut rows = 0;
    for task in tasks {
        rows += task.await??;
    }
    Ok(rows as f64 / started.elapsed().as_secs_f64())
}

/// The floor: the same rows as plain multi-row INSERTs through sqlx (autocommit).
async fn ingest_raw(
    pool: &MySqlPool,
    per_request: usize,
    clients: usize,
    duration: Duration,
    run: usize,
) -> BenchResult<f64> {
    let mut tasks = Vec::new();
    let started = Instant::now();
    for client_no in 0..clients {
        let pool = pool.clone();
        tasks.push(tokio::spawn(async move {
            let trial = format!("bench-raw-{run}-{client_no}");
            let mut rows = 0_usize;
            let mut seq = 0_u64;
            while started.elapsed() < duration {
                let batch: Vec<(String, &str, String)> = (0..per_request)
                    .map(|i| {
                        seq += 1;
                        (
                            sql_time(seq),
                            if i % 2 == 0 { "loss" } else { "accuracy" },
                            format!("0.{seq}"),
                        )
                    })
                    .collect();
                let mut insert = QueryBuilder::<MySql>::new(
                    "INSERT INTO observation_logs (trial_name, time, metric_name, value) ",
                );
                insert.push_values(&batch, |mut values, (time, name, value)| {
                    values
                        .push_bind(trial.as_str())
                        .push_bind(time.as_str())
                        .push_bind(*name)
                        .push_bind(value.as_str());
                });
                insert.build().execute(&pool).await?;
                rows += per_request;
            }
            Ok::<usize, sqlx::Error>(rows)
        }));
    }
    let mut rows = 0;
    for task in tasks {
        rows += task.await??;
    }
    Ok(rows as f64 / started.elapsed().as_secs_f64())
}

/// TRIALS trials of ROWS_PER_TRIAL rows (accuracy and loss alternating), through the
/// store (so summaries are maintained), 4 trials at a time.
async fn seed(store: &Arc<MySqlStore>) -> BenchResult<()> {
    let mut next = 0_usize;
    while next < TRIALS {
        let mut tasks = Vec::new();
        for trial_no in next..(next + 4).min(TRIALS) {
            let store = Arc::clone(store);
            tasks.push(tokio::spawn(async move {
                let rows: Vec<katib_db_manager::MetricRow> = (0..ROWS_PER_TRIAL)
                    .map(|i| {
                        let time = jiff::Timestamp::from_second(1_714_557_600 + i as i64)
                            .unwrap_or(jiff::Timestamp::UNIX_EPOCH);
                        let (name, value) = if i % 2 == 0 {
                            ("loss", format!("{}", 1.0 / (i as f64 + 1.0)))
                        } else {
                            ("accuracy", format!("0.{}{i}", trial_no % 10))
                        };
                        katib_db_manager::MetricRow::new(time, name, value)
                    })
                    .collect();
                store.report(&format!("bench-read-{trial_no:04}"), &rows).await
            }));
        }
        for task in tasks {
            task.await??;
        }
        next += 4;
    }
    Ok(())
}

fn stamp(seq: u64) -> String {
    let micros = 1_714_557_600_000_000_i64 + seq as i64;
    jiff::Timestamp::from_microsecond(micros)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

fn sql_time(seq: u64) -> String {
    let micros = 1_714_557_600_000_000_i64 + seq as i64;
    jiff::Timestamp::from_microsecond(micros)
        .map(|t| t.strftime("%Y-%m-%d %H:%M:%S.%6f").to_string())
        .unwrap_or_default()
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn percentile(values: &mut [Duration], p: f64) -> Duration {
    values.sort();
    let index = ((values.len() as f64 - 1.0) * p).round() as usize;
    values[index.min(values.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn print_latency(what: &str, ours: &mut [Duration], floor: &mut [Duration]) {
    println!(
        "| {what} | {} | {} | {} | {} |",
        ms(percentile(ours, 0.5)),
        ms(percentile(ours, 0.95)),
        ms(percentile(floor, 0.5)),
        ms(percentile(floor, 0.95)),
    );
}

fn with_database(url: &str, database: &str) -> String {
    let (base, query) = url.split_once('?').map_or((url, None), |(b, q)| (b, Some(q)));
    let authority = base.find("://").map_or(0, |i| i + 3);
    let path = base[authority..].find('/').map_or(base.len(), |i| authority + i);
    let mut out = format!("{}/{database}", &base[..path]);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

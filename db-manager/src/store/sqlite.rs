//! SQLite backend: the embedded default (`katib run`, one machine).
//!
//! Times are UTC text `YYYY-MM-DD HH:MM:SS.ffffff`, so text comparison is time comparison.
//! The pool runs in WAL mode with a busy timeout, so readers never block the writer and
//! concurrent writers wait instead of failing.

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteQueryResult,
    SqliteSynchronous,
};
use sqlx::{QueryBuilder, Sqlite};

use super::sql::{Checkpoints, Dialect, SqlStore};
use super::{StoreError, StoreOptions, redact};

static MIGRATOR: Migrator = sqlx::migrate!("migrations/sqlite");

const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// How long writes gather after a write turn before the background checkpoint (see
/// [`Checkpoints`]) folds them into the database file. Measured on 500 one-line trials
/// (`katib run`): 25 ms was about 3% slower than 10 ms, 5 ms no faster.
const CHECKPOINT_PAUSE: Duration = Duration::from_millis(10);

/// SQLite's own checkpoint threshold (pages in the log) when checkpoints also run in the
/// background: half its default. The log only starts over when a write begins with every
/// frame already copied, which the background task alone rarely leaves while writes keep
/// coming: with a threshold of 4,000 the log of 500 one-line trials grew to 9 MB, and
/// deleting it when the store closed took 10 ms after the last trial. At 500 the writer's
/// own checkpoint finds most frames copied already, the log stays near 2 MB, and the time
/// from the last trial to exit went from 25 to 14 ms.
const WRITER_CHECKPOINT_PAGES: &str = "500";

/// Katib's `observation_logs` in a SQLite file (or in memory).
///
/// Accepts `sqlite://<path>` (`sqlite:///abs/path` for an absolute path),
/// `sqlite:<path>` and `sqlite::memory:`; connecting creates the file if missing.
pub type SqliteStore = SqlStore<SqliteDialect>;

/// SQLite's SQL.
#[derive(Debug, Clone, Copy)]
pub struct SqliteDialect;

impl SqliteDialect {
    fn parse(url: &str) -> Result<(SqliteConnectOptions, bool, String), StoreError> {
        let invalid = |source| StoreError::InvalidUrl {
            backend: Self::BACKEND,
            url: redact(url),
            example: "sqlite:///var/lib/katib/katib.db",
            source,
        };
        let memory = is_memory(url);
        let options = SqliteConnectOptions::from_str(url).map_err(invalid)?;
        let path = options.get_filename().to_path_buf();
        if !memory && path.as_os_str().is_empty() {
            return Err(invalid(sqlx::Error::Configuration(
                "the URL names no database file".into(),
            )));
        }
        let target = if memory {
            ":memory:".to_owned()
        } else {
            path.display().to_string()
        };
        Ok((options, memory, target))
    }
}

impl Dialect for SqliteDialect {
    type Db = Sqlite;

    const BACKEND: &'static str = "SQLite";
    const NAME: &'static str = "sqlite";
    const TYPE_NAME: &'static str = "SqliteStore";
    const MIGRATOR: &'static Migrator = &MIGRATOR;
    const INSERT_KEY: &'static str = "INSERT INTO report_keys (trial_name, request_hash) VALUES (?1, ?2) \
         ON CONFLICT DO NOTHING";
    const UPSERT_SUMMARY: &'static str = "INSERT INTO metric_summaries";
    const ON_SUMMARY_CONFLICT: &'static str = " ON CONFLICT (trial_name, metric_name) DO UPDATE SET \
         min_text = CASE WHEN excluded.min_value IS NOT NULL \
             AND (min_value IS NULL OR excluded.min_value < min_value) \
             THEN excluded.min_text ELSE min_text END, \
         min_value = CASE WHEN excluded.min_value IS NOT NULL \
             AND (min_value IS NULL OR excluded.min_value < min_value) \
             THEN excluded.min_value ELSE min_value END, \
         max_text = CASE WHEN excluded.max_value IS NOT NULL \
             AND (max_value IS NULL OR excluded.max_value > max_value) \
             THEN excluded.max_text ELSE max_text END, \
         max_value = CASE WHEN excluded.max_value IS NOT NULL \
             AND (max_value IS NULL OR excluded.max_value > max_value) \
             THEN excluded.max_value ELSE max_value END, \
         latest_text = CASE WHEN latest_time IS NULL OR excluded.latest_time >= latest_time \
             THEN excluded.latest_text ELSE latest_text END, \
         latest_time = CASE WHEN latest_time IS NULL OR excluded.latest_time >= latest_time \
             THEN excluded.latest_time ELSE latest_time END";
    // Times are stored as text `YYYY-MM-DD HH:MM:SS.ffffff`.
    const TIME_CAST: &'static str = "";
    const TIME_TEXT: &'static str = "CAST(time AS TEXT)";
    const SUMMARY_NAMES: &'static str = "trial_name, metric_name";

    fn check_url(url: &str) -> Result<(), StoreError> {
        Self::parse(url).map(drop)
    }

    async fn connect(url: &str, settings: &StoreOptions) -> Result<(SqlitePool, String), StoreError> {
        let (options, memory, target) = Self::parse(url)?;
        if !memory {
            check_parent_dir(options.get_filename(), &target).await?;
        }

        let options = options
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(BUSY_TIMEOUT)
            // Statement journals and sorts in memory: a multi-row upsert (the web UI's trial
            // snapshots) otherwise created, wrote and deleted a temporary file in /var/tmp.
            .pragma("temp_store", "memory");
        let options = if upkeep_runs(memory, settings.max_connections) {
            options.pragma("wal_autocheckpoint", WRITER_CHECKPOINT_PAGES)
        } else {
            options
        };
        // An in-memory database lives as long as one connection to it, and a shared cache
        // between connections brings table locks that the busy timeout does not cover:
        // keep exactly one connection, forever.
        let pool_options = if memory {
            SqlitePoolOptions::new()
                .min_connections(1)
                .max_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
        } else {
            SqlitePoolOptions::new().max_connections(settings.max_connections.max(1))
        };
        // No ping before handing out a connection: to a file in this process there is
        // nothing to lose on the way, and the ping was one more trip to the connection's
        // thread per report group.
        let pool = pool_options
            .test_before_acquire(false)
            .acquire_timeout(settings.acquire_timeout.max(BUSY_TIMEOUT))
            .connect_with(options)
            .await
            .map_err(|source| StoreError::Open {
                backend: Self::BACKEND,
                target: target.clone(),
                hint: "check that the path is a writable file, or pass --db sqlite://<writable path>",
                source,
            })?;
        Ok((pool, target))
    }

    /// `GLOB`: case-sensitive, unlike SQLite's `LIKE`, and able to use the index.
    fn push_prefix(query: &mut QueryBuilder<Sqlite>, prefix: &str) {
        query.push("trial_name GLOB ");
        query.push_bind(glob_prefix(prefix));
    }

    fn rows_affected(result: &SqliteQueryResult) -> u64 {
        result.rows_affected()
    }

    fn start_upkeep(pool: &SqlitePool) -> Option<Arc<Checkpoints>> {
        if !upkeep_runs(false, pool.options().get_max_connections()) {
            return None;
        }
        let checkpoints = Arc::new(Checkpoints::default());
        let (pool, due) = (pool.clone(), Arc::clone(&checkpoints));
        tokio::spawn(async move {
            while due.due(CHECKPOINT_PAUSE).await {
                // A closed pool (the store closing) ends the task.
                let Ok(mut conn) = pool.acquire().await else { break };
                // PASSIVE: copies what no reader still needs and never waits for anyone;
                // what is left goes with the next one.
                if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
                    .execute(&mut *conn)
                    .await
                {
                    tracing::debug!(error = %e, "background checkpoint failed; the next write retries it");
                }
            }
        });
        Some(checkpoints)
    }

    const SERIALIZE_WRITES: bool = true;
}

/// Whether checkpoints run in the background: for a file, when the pool has a connection
/// to spare for them (an in-memory database has no log, and keeps one connection).
fn upkeep_runs(memory: bool, max_connections: u32) -> bool {
    !memory && max_connections > 1
}

/// A `GLOB` pattern matching every text that starts with `prefix`.
fn glob_prefix(prefix: &str) -> String {
    let mut pattern = String::with_capacity(prefix.len() + 1);
    for c in prefix.chars() {
        match c {
            '*' => pattern.push_str("[*]"),
            '?' => pattern.push_str("[?]"),
            '[' => pattern.push_str("[[]"),
            c => pattern.push(c),
        }
    }
    pattern.push('*');
    pattern
}

/// `sqlite::memory:`, `sqlite://:memory:` or `...?mode=memory`.
fn is_memory(url: &str) -> bool {
    let rest = url.trim_start_matches("sqlite://").trim_start_matches("sqlite:");
    let (database, params) = rest.split_once('?').unwrap_or((rest, ""));
    database == ":memory:" || params.split('&').any(|param| param == "mode=memory")
}

/// SQLite creates a missing file but not a missing directory, and its own error for that
/// ("unable to open database file") does not say which; say it ourselves.
async fn check_parent_dir(path: &Path, target: &str) -> Result<(), StoreError> {
    let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) else {
        return Ok(());
    };
    match tokio::fs::try_exists(dir).await {
        Ok(false) => Err(StoreError::SqliteDirMissing {
            path: target.to_owned(),
            dir: dir.display().to_string(),
        }),
        // Exists, or cannot tell (permissions): let SQLite report what it finds.
        Ok(true) | Err(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Appended, Init, LogQuery, MetricGoal, MetricRow, ObservationStore, TrialSet};
    use crate::testsuite;
    use sqlx::Connection as _;

    fn temp_db() -> (tempfile::TempDir, String) {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("katib.db").display());
        (dir, url)
    }

    async fn temp_store() -> (tempfile::TempDir, SqliteStore) {
        let (dir, url) = temp_db();
        let store = SqliteStore::open(&url).await.expect("open temp SQLite");
        (dir, store)
    }

    #[tokio::test]
    async fn round_trip() {
        let (_dir, store) = temp_store().await;
        testsuite::round_trip(&store).await;
    }

    #[tokio::test]
    async fn time_order_ties_by_insertion() {
        let (_dir, store) = temp_store().await;
        testsuite::time_order_ties_by_insertion(&store).await;
    }

    #[tokio::test]
    async fn metric_and_time_filters() {
        let (_dir, store) = temp_store().await;
        testsuite::metric_and_time_filters(&store).await;
    }

    #[tokio::test]
    async fn microsecond_precision() {
        let (_dir, store) = temp_store().await;
        testsuite::microsecond_precision(&store).await;
    }

    #[tokio::test]
    async fn values_kept_verbatim() {
        let (_dir, store) = temp_store().await;
        testsuite::values_kept_verbatim(&store).await;
    }

    #[tokio::test]
    async fn delete_only_that_trial() {
        let (_dir, store) = temp_store().await;
        testsuite::delete_only_that_trial(&store).await;
    }

    #[tokio::test]
    async fn reports_written_together_as_if_one_by_one() {
        let (_dir, store) = temp_store().await;
        testsuite::reports_written_together_as_if_one_by_one(&store).await;
        testsuite::concurrent_reports_keep_their_own_outcome(&store).await;
    }

    /// A group whose query meets a stored key (here a retry, alone in its group) stops
    /// there and is rolled back: the retry answers Duplicate, and what is written after it
    /// is committed and seen from another connection.
    #[tokio::test]
    async fn a_group_that_meets_a_stored_key_is_rolled_back_and_later_writes_commit() {
        let (_dir, store) = temp_store().await;
        let row = |t: &str, v: &str| MetricRow {
            time: crate::time::parse_rfc3339(t).expect("time"),
            metric_name: "loss".into(),
            value: v.into(),
        };
        let key = |v: &str| crate::store::ReportKey::of("t-roll", [("t", "loss", v)]);
        let (k1, k2) = (key("1"), key("2"));
        let first = [row("2024-07-01T00:00:00Z", "1")];
        let second = [row("2024-07-01T00:00:01Z", "2")];
        assert_eq!(
            store.append("t-roll", &first, Some(&k1)).await.expect("first"),
            Appended::Stored
        );
        let retry = store.append("t-roll", &first, Some(&k1)).await.expect("retry");
        assert_eq!(retry, Appended::Duplicate);
        let new = store.append("t-roll", &second, Some(&k2)).await.expect("new");
        assert_eq!(new, Appended::Stored);
        let third = [row("2024-07-01T00:00:02Z", "3")];
        assert_eq!(
            store.append("t-roll", &third, None).await.expect("third"),
            Appended::Stored
        );
        // Read on a connection other than the writer's: only committed rows are there.
        let mut other = store.pool().acquire().await.expect("a second connection");
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM observation_logs WHERE trial_name = 't-roll'")
            .fetch_one(&mut *other)
            .await
            .expect("count");
        assert_eq!(n, 3);
    }

    /// Rows in the database file itself, read as SQLite would after a crash that lost the
    /// log: `immutable` makes the connection ignore `katib.db-wal`. None while the table
    /// itself is only in the log.
    async fn rows_in_the_file(dir: &Path) -> Option<i64> {
        let options = SqliteConnectOptions::new()
            .filename(dir.join("katib.db"))
            .read_only(true)
            .immutable(true);
        let mut conn = sqlx::SqliteConnection::connect_with(&options)
            .await
            .expect("open the file alone");
        let n = sqlx::query_scalar("SELECT COUNT(*) FROM observation_logs")
            .fetch_one(&mut conn)
            .await
            .ok();
        conn.close().await.expect("close");
        n
    }

    /// Waits (for a loaded machine, up to many times the pause) until the database file
    /// itself holds `n` rows; what it last saw.
    async fn rows_reach_the_file(dir: &Path, n: i64) -> Option<i64> {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let seen = rows_in_the_file(dir).await;
            if seen == Some(n) || std::time::Instant::now() > deadline {
                return seen;
            }
            tokio::time::sleep(CHECKPOINT_PAUSE).await;
        }
    }

    async fn append_one(store: &SqliteStore, trial: &str) {
        let row = MetricRow {
            time: crate::time::parse_rfc3339("2024-07-01T00:00:00Z").expect("time"),
            metric_name: "loss".into(),
            value: "0.5".into(),
        };
        assert_eq!(
            store.append(trial, &[row], None).await.expect("append"),
            Appended::Stored
        );
    }

    /// A report is folded into the database file by the background checkpoint, while the
    /// store stays open and with nothing else written: SQLite's own checkpoint would wait
    /// for thousands of pages in the log.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn writes_reach_the_database_file_in_the_background() {
        let (dir, store) = temp_store().await;
        // The migrations wrote the schema, but nothing since has called for a checkpoint.
        assert_eq!(rows_in_the_file(dir.path()).await, None);
        append_one(&store, "t-bg").await;
        assert_eq!(
            rows_reach_the_file(dir.path(), 1).await,
            Some(1),
            "the report never reached katib.db while the store was open"
        );
        store.close().await;
        assert_eq!(rows_in_the_file(dir.path()).await, Some(1));
    }

    /// The checkpoint task lives as long as some clone of the store, and a store dropped
    /// without being closed ends it (the task holds a clone of the pool).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_checkpoint_task_ends_with_the_last_clone_of_the_store() {
        let (dir, store) = temp_store().await;
        let task = store
            .upkeep()
            .expect("a file store checkpoints in the background");
        let copy = store.clone();
        drop(store);
        append_one(&copy, "t-clone").await;
        assert_eq!(
            rows_reach_the_file(dir.path(), 1).await,
            Some(1),
            "checkpoints stopped when one clone went"
        );
        drop(copy);
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while task.upgrade().is_some() && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(
            task.upgrade().is_none(),
            "the checkpoint task outlived every store"
        );
    }

    #[test]
    fn checkpoints_run_in_the_background_only_for_a_file_with_a_spare_connection() {
        assert!(upkeep_runs(false, 10));
        assert!(upkeep_runs(false, 2));
        assert!(
            !upkeep_runs(false, 1),
            "the one connection is the writer's and readers'"
        );
        assert!(!upkeep_runs(true, 10), "an in-memory database has no log");
    }

    /// An in-memory store (one connection) starts no checkpoint task and still closes.
    #[tokio::test]
    async fn an_in_memory_store_has_no_background_checkpoints() {
        let store = SqliteStore::open("sqlite::memory:").await.expect("open");
        assert!(SqliteDialect::start_upkeep(store.pool()).is_none());
        store.close().await;
    }

    #[tokio::test]
    async fn empty_report_is_a_no_op() {
        let (_dir, store) = temp_store().await;
        testsuite::empty_report_is_a_no_op(&store).await;
    }

    #[tokio::test]
    async fn large_report_spans_several_inserts() {
        let (_dir, store) = temp_store().await;
        testsuite::large_report(&store).await;
    }

    #[tokio::test]
    async fn out_of_range_time_is_refused_whole() {
        let (_dir, store) = temp_store().await;
        testsuite::out_of_range_time_is_refused_whole(&store).await;
    }

    #[tokio::test]
    async fn keyed_report_is_stored_once() {
        let (_dir, store) = temp_store().await;
        testsuite::keyed_report_is_stored_once(&store).await;
    }

    #[tokio::test]
    async fn bulk_read_by_names_and_prefix() {
        let (_dir, store) = temp_store().await;
        testsuite::bulk_read_by_names_and_prefix(&store).await;
    }

    #[tokio::test]
    async fn best_values_follow_goals() {
        let (_dir, store) = temp_store().await;
        testsuite::best_values_follow_goals(&store).await;
    }

    #[tokio::test]
    async fn best_values_across_reports_and_delete() {
        let (_dir, store) = temp_store().await;
        testsuite::best_values_across_reports_and_delete(&store).await;
    }

    #[test]
    fn glob_prefixes_are_literal() {
        assert_eq!(glob_prefix("exp-[1]*?"), "exp-[[]1][*][?]*");
        assert_eq!(glob_prefix(""), "*");
    }

    #[tokio::test]
    async fn the_whole_suite_on_one_database() {
        let (_dir, store) = temp_store().await;
        testsuite::run_all(&store).await;
    }

    #[tokio::test]
    async fn report_is_atomic() {
        let (_dir, url) = temp_db();
        let store = SqliteStore::open(&url).await.expect("open");
        // A trigger that rejects one value makes the last statement of a multi-statement
        // report fail; nothing of that report may remain.
        let mut raw = sqlx::SqliteConnection::connect(&url).await.expect("raw");
        sqlx::query(
            "CREATE TRIGGER poison BEFORE INSERT ON observation_logs \
             WHEN NEW.value = 'poison' BEGIN SELECT RAISE(ABORT, 'poisoned row'); END",
        )
        .execute(&mut raw)
        .await
        .expect("create trigger");
        raw.close().await.expect("close raw");
        testsuite::report_is_atomic(&store, "poison").await;
        testsuite::concurrent_reports_fail_alone(&store, "poison").await;
    }

    #[tokio::test]
    async fn reopen_keeps_data_and_migrations_are_idempotent() {
        let (_dir, url) = temp_db();
        testsuite::reopen_keeps_data(&url).await;
        // Once more with the store type directly, and check the migration table.
        let store = SqliteStore::open(&url).await.expect("third open");
        let applied: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations")
            .fetch_one(store.pool())
            .await
            .expect("migration table");
        assert_eq!(applied, 6);
    }

    /// A database written by a katib-rs from before 0006 (rows in all three report
    /// tables) keeps every row, id, key and summary through the rebuild, and goes on
    /// numbering and deduplicating as before.
    #[tokio::test]
    async fn compacting_migration_keeps_what_an_older_database_holds() {
        let (_dir, url) = temp_db();
        let older = SqliteStore::connect(&url).await.expect("connect");
        MIGRATOR.run_to(5, older.pool()).await.expect("migrations 1-5");
        let at = |s: &str| s.parse::<jiff::Timestamp>().expect("ts");
        let loss = |time: &str, value: &str| [MetricRow::new(at(time), "loss", value)];
        async fn ids(store: &SqliteStore) -> Vec<i64> {
            sqlx::query_scalar("SELECT id FROM observation_logs ORDER BY id")
                .fetch_all(store.pool())
                .await
                .expect("ids")
        }
        let first = [
            MetricRow::new(at("2024-05-01T10:00:00Z"), "loss", "0.5"),
            MetricRow::new(at("2024-05-01T10:00:01Z"), "loss", "0.25"),
        ];
        let key = crate::store::ReportKey::of("t1", [("a", "loss", "0.5")]);
        assert_eq!(
            older
                .append("t1", &first, Some(&key))
                .await
                .expect("older report"),
            Appended::Stored
        );
        older
            .append("t2", &loss("2024-05-01T10:00:02Z", "0.75"), None)
            .await
            .expect("second trial");
        let ids_before = ids(&older).await;
        older.close().await;

        let store = SqliteStore::open(&url).await.expect("migrate to 6");
        let ids_after = ids(&store).await;
        assert_eq!(ids_after, ids_before);
        assert_eq!(store.get(&LogQuery::trial("t1")).await.expect("get"), first);
        // The stored key still turns a retry away, and the summary still holds t1's best.
        assert_eq!(
            store.append("t1", &first, Some(&key)).await.expect("retry"),
            Appended::Duplicate
        );
        let best = store
            .best_values(
                &TrialSet::Names(vec!["t1".into()]),
                &[MetricGoal::new("loss", crate::store::Goal::Min)],
            )
            .await
            .expect("summary");
        assert_eq!(
            best.iter().map(|b| b.value.as_str()).collect::<Vec<_>>(),
            ["0.25"]
        );
        // New rows number on from the largest id.
        store
            .append("t3", &loss("2024-05-01T10:00:03Z", "1"), None)
            .await
            .expect("new report");
        let newest: i64 = sqlx::query_scalar("SELECT MAX(id) FROM observation_logs")
            .fetch_one(store.pool())
            .await
            .expect("max id");
        assert!(
            newest > *ids_before.last().expect("ids"),
            "{newest} after {ids_before:?}"
        );
        // One B-tree per key table now.
        let without_rowid: Vec<String> = sqlx::query_scalar(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND sql LIKE '%WITHOUT ROWID' ORDER BY name",
        )
        .fetch_all(store.pool())
        .await
        .expect("tables");
        assert_eq!(without_rowid, ["metric_summaries", "report_keys"]);
        testsuite::round_trip(&store).await;
    }

    #[tokio::test]
    async fn adopts_a_database_created_by_katibs_ddl() {
        let (_dir, url) = temp_db();
        // Katib's table (its init.go shape) with no index and no sqlx migration table.
        let mut raw = sqlx::SqliteConnection::connect_with(
            &SqliteConnectOptions::from_str(&url)
                .expect("url")
                .create_if_missing(true),
        )
        .await
        .expect("raw create");
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS observation_logs (trial_name VARCHAR(255) NOT NULL, \
             id INTEGER PRIMARY KEY AUTOINCREMENT, time TEXT, \
             metric_name VARCHAR(255) NOT NULL, value TEXT NOT NULL)",
        )
        .execute(&mut raw)
        .await
        .expect("katib ddl");
        sqlx::query(
            "INSERT INTO observation_logs (trial_name, time, metric_name, value) VALUES \
             ('katib-trial', '2024-05-01 10:00:00.250000', 'accuracy', '0.5'), \
             ('katib-trial', '2024-05-01 10:00:01.000000', 'accuracy', '0.75'), \
             ('katib-trial', NULL, 'accuracy', 'no time')",
        )
        .execute(&mut raw)
        .await
        .expect("katib rows");
        raw.close().await.expect("close raw");

        let store = SqliteStore::open(&url).await.expect("adopt");
        let rows = store.get(&LogQuery::trial("katib-trial")).await.expect("get");
        assert_eq!(
            rows,
            vec![
                MetricRow::new("2024-05-01T10:00:00.25Z".parse().expect("ts"), "accuracy", "0.5"),
                MetricRow::new("2024-05-01T10:00:01Z".parse().expect("ts"), "accuracy", "0.75"),
            ]
        );
        let best = store
            .best_values(
                &TrialSet::Names(vec!["katib-trial".into()]),
                &[
                    MetricGoal::new("accuracy", crate::store::Goal::Min),
                    MetricGoal::new("accuracy", crate::store::Goal::Latest),
                ],
            )
            .await
            .expect("backfilled");
        let values: Vec<&str> = best.iter().map(|b| b.value.as_str()).collect();
        assert_eq!(values, ["0.5", "0.75"]);
        let indexes: Vec<String> = sqlx::query_scalar(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'observation_logs'",
        )
        .fetch_all(store.pool())
        .await
        .expect("indexes");
        assert!(
            indexes
                .iter()
                .any(|name| name == "observation_logs_trial_name_time"),
            "{indexes:?}"
        );
        testsuite::round_trip(&store).await;
    }

    #[tokio::test]
    async fn missing_directory_is_a_clear_error() {
        let err = SqliteStore::open("sqlite:///nope/katib.db")
            .await
            .expect_err("no such directory");
        assert_eq!(
            err.to_string(),
            "cannot open SQLite database /nope/katib.db: directory /nope does not exist \
             (create it or pass --db sqlite://<writable path>)"
        );
    }

    #[tokio::test]
    async fn url_forms() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("plain.db");
        let store = SqliteStore::open(&format!("sqlite:{}", path.display()))
            .await
            .expect("sqlite:<path>");
        testsuite::round_trip(&store).await;
        store.close().await;
        assert!(tokio::fs::try_exists(&path).await.expect("stat"));

        let memory = SqliteStore::open("sqlite::memory:").await.expect("memory");
        testsuite::round_trip(&memory).await;

        let err = SqliteStore::open("sqlite://").await.expect_err("no path");
        assert!(matches!(err, StoreError::InvalidUrl { .. }), "{err}");
    }

    #[tokio::test]
    async fn check_only_needs_the_table() {
        let (_dir, url) = temp_db();
        let store = SqliteStore::connect(&url).await.expect("connect");
        let err = store.init(Init::CheckOnly).await.expect_err("no table yet");
        assert!(matches!(err, StoreError::MissingSchema { .. }), "{err}");
        store.init(Init::Migrate).await.expect("migrate");
        store.init(Init::CheckOnly).await.expect("table present");
    }

    #[test]
    fn memory_urls() {
        assert!(is_memory("sqlite::memory:"));
        assert!(is_memory("sqlite://:memory:"));
        assert!(is_memory("sqlite://x?mode=memory"));
        assert!(!is_memory("sqlite://katib.db"));
        assert!(!is_memory("sqlite:katib.db"));
    }
}

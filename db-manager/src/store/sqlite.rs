//! SQLite backend: the embedded default (`katib run`, one machine).
//!
//! Times are UTC text `YYYY-MM-DD HH:MM:SS.ffffff`, so text comparison is time comparison.
//! The pool runs in WAL mode with a busy timeout, so readers never block the writer and
//! concurrent writers wait instead of failing.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{QueryBuilder, Sqlite};

use super::{
    Init, LogQuery, MetricRow, ObservationStore, ROWS_PER_INSERT, SqlRow, StoreError, check_times,
    into_metric_rows, redact,
};
use crate::time::to_sql_text;

static MIGRATOR: Migrator = sqlx::migrate!("migrations/sqlite");

const BACKEND: &str = "SQLite";
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_CONNECTIONS: u32 = 4;

const INSERT: &str = "INSERT INTO observation_logs (trial_name, time, metric_name, value) ";
const SELECT: &str = "SELECT CAST(time AS TEXT) AS time_text, metric_name, value \
     FROM observation_logs \
     WHERE trial_name = ?1 \
       AND (?2 IS NULL OR metric_name = ?2) \
       AND (?3 IS NULL OR time >= ?3) \
       AND (?4 IS NULL OR time <= ?4) \
     ORDER BY time, id";
const DELETE: &str = "DELETE FROM observation_logs WHERE trial_name = ?1";
const CHECK: &str = "SELECT trial_name, id, time, metric_name, value FROM observation_logs LIMIT 1";

/// Katib's `observation_logs` in a SQLite file (or in memory).
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    target: String,
}

impl SqliteStore {
    /// Connects (creating the file if missing) and applies the embedded migrations.
    ///
    /// Accepts `sqlite://<path>` (`sqlite:///abs/path` for an absolute path),
    /// `sqlite:<path>` and `sqlite::memory:`.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let store = Self::connect(url).await?;
        store.init(Init::Migrate).await?;
        Ok(store)
    }

    /// Connects without touching the schema.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let invalid = |source| StoreError::InvalidUrl {
            backend: BACKEND,
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
        if !memory {
            check_parent_dir(&path, &target).await?;
        }

        let options = options
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(BUSY_TIMEOUT);
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
            SqlitePoolOptions::new().max_connections(MAX_CONNECTIONS)
        };
        let pool = pool_options
            .connect_with(options)
            .await
            .map_err(|source| StoreError::Open {
                backend: BACKEND,
                target: target.clone(),
                hint: "check that the path is a writable file, or pass --db sqlite://<writable path>",
                source,
            })?;
        Ok(Self { pool, target })
    }

    /// Applies the migrations, or only checks the table (see [`Init`]).
    pub async fn init(&self, init: Init) -> Result<(), StoreError> {
        match init {
            Init::Migrate => MIGRATOR
                .run(&self.pool)
                .await
                .map_err(|source| StoreError::Migrate {
                    backend: BACKEND,
                    target: self.target.clone(),
                    source,
                }),
            Init::CheckOnly => sqlx::query(CHECK)
                .fetch_optional(&self.pool)
                .await
                .map(drop)
                .map_err(|source| StoreError::MissingSchema {
                    backend: BACKEND,
                    target: self.target.clone(),
                    source,
                }),
        }
    }

    /// The underlying pool (for tests and tools that need raw SQL).
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

#[tonic::async_trait]
impl ObservationStore for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn report(&self, trial: &str, logs: &[MetricRow]) -> Result<(), StoreError> {
        if logs.is_empty() {
            return Ok(());
        }
        check_times(logs)?;
        let mut tx = self.pool.begin().await.map_err(query("begin transaction"))?;
        for chunk in logs.chunks(ROWS_PER_INSERT) {
            let mut insert = QueryBuilder::<Sqlite>::new(INSERT);
            insert.push_values(chunk, |mut values, row| {
                values
                    .push_bind(trial)
                    .push_bind(to_sql_text(row.time))
                    .push_bind(row.metric_name.as_str())
                    .push_bind(row.value.as_str());
            });
            insert
                .build()
                .execute(&mut *tx)
                .await
                .map_err(query("insert into observation_logs"))?;
        }
        tx.commit().await.map_err(query("commit"))
    }

    async fn get(&self, q: &LogQuery) -> Result<Vec<MetricRow>, StoreError> {
        let rows: Vec<SqlRow> = sqlx::query_as(SELECT)
            .bind(q.trial.as_str())
            .bind(q.metric.as_deref())
            .bind(q.start.map(to_sql_text))
            .bind(q.end.map(to_sql_text))
            .fetch_all(&self.pool)
            .await
            .map_err(query("select from observation_logs"))?;
        Ok(into_metric_rows(BACKEND, rows))
    }

    async fn delete(&self, trial: &str) -> Result<u64, StoreError> {
        let done = sqlx::query(DELETE)
            .bind(trial)
            .execute(&self.pool)
            .await
            .map_err(query("delete from observation_logs"))?;
        Ok(done.rows_affected())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map(drop)
            .map_err(query("ping"))
    }

    async fn close(&self) {
        self.pool.close().await;
    }
}

fn query(operation: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |source| StoreError::Query {
        backend: BACKEND,
        operation,
        source,
    }
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
        assert_eq!(applied, 2);
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
            vec![MetricRow::new(
                "2024-05-01T10:00:00.25Z".parse().expect("ts"),
                "accuracy",
                "0.5"
            )]
        );
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

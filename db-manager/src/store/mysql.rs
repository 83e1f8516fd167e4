//! MySQL / MariaDB backend: Katib's production default on Kubernetes.
//!
//! The table is Katib's own (`time DATETIME(6)`). Times are bound as UTC text
//! `YYYY-MM-DD HH:MM:SS.ffffff`, which MySQL converts exactly, and read back through
//! `DATE_FORMAT`, so no sqlx time feature is needed. Tested against a real server in the
//! cross-process suite (`testsuite::run_all`), not here.

use std::str::FromStr;
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::mysql::{MySqlConnectOptions, MySqlPool, MySqlPoolOptions};
use sqlx::{MySql, QueryBuilder};

use super::{
    Init, LogQuery, MetricRow, ObservationStore, ROWS_PER_INSERT, SqlRow, StoreError, check_times,
    into_metric_rows, redact,
};
use crate::time::to_sql_text;

static MIGRATOR: Migrator = sqlx::migrate!("migrations/mysql");

const BACKEND: &str = "MySQL";
const MAX_CONNECTIONS: u32 = 8;
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

const INSERT: &str = "INSERT INTO observation_logs (trial_name, time, metric_name, value) ";
const SELECT: &str = "SELECT DATE_FORMAT(time, '%Y-%m-%d %H:%i:%s.%f') AS time_text, \
            metric_name, value \
     FROM observation_logs \
     WHERE trial_name = ? \
       AND (? IS NULL OR metric_name = ?) \
       AND (? IS NULL OR time >= ?) \
       AND (? IS NULL OR time <= ?) \
     ORDER BY time, id";
const DELETE: &str = "DELETE FROM observation_logs WHERE trial_name = ?";
const CHECK: &str = "SELECT trial_name, id, time, metric_name, value FROM observation_logs LIMIT 1";

/// Katib's `observation_logs` on MySQL or MariaDB.
#[derive(Debug, Clone)]
pub struct MySqlStore {
    pool: MySqlPool,
    target: String,
}

impl MySqlStore {
    /// Connects and applies the embedded migrations.
    /// URL: `mysql://<user>:<password>@<host>:<port>/<database>` (or `mariadb://...`).
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let store = Self::connect(url).await?;
        store.init(Init::Migrate).await?;
        Ok(store)
    }

    /// Connects without touching the schema.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let target = redact(url);
        let normalized = match url.get(..10) {
            Some(scheme) if scheme.eq_ignore_ascii_case("mariadb://") => {
                format!("mysql://{}", &url[10..])
            }
            _ => url.to_owned(),
        };
        let options =
            MySqlConnectOptions::from_str(&normalized).map_err(|source| StoreError::InvalidUrl {
                backend: BACKEND,
                url: target.clone(),
                example: "mysql://root:password@katib-mysql:3306/katib",
                source,
            })?;
        let pool = MySqlPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await
            .map_err(|source| StoreError::Open {
                backend: BACKEND,
                target: target.clone(),
                hint: "check that the server is reachable and the user, password and database exist",
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
    pub fn pool(&self) -> &MySqlPool {
        &self.pool
    }
}

#[tonic::async_trait]
impl ObservationStore for MySqlStore {
    fn backend(&self) -> &'static str {
        "mysql"
    }

    async fn report(&self, trial: &str, logs: &[MetricRow]) -> Result<(), StoreError> {
        if logs.is_empty() {
            return Ok(());
        }
        check_times(logs)?;
        let mut tx = self.pool.begin().await.map_err(query("begin transaction"))?;
        for chunk in logs.chunks(ROWS_PER_INSERT) {
            let mut insert = QueryBuilder::<MySql>::new(INSERT);
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
        let start = q.start.map(to_sql_text);
        let end = q.end.map(to_sql_text);
        let rows: Vec<SqlRow> = sqlx::query_as(SELECT)
            .bind(q.trial.as_str())
            .bind(q.metric.as_deref())
            .bind(q.metric.as_deref())
            .bind(start.as_deref())
            .bind(start.as_deref())
            .bind(end.as_deref())
            .bind(end.as_deref())
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

/// The conformance suite on a real server. Opt-in: point `KATIB_TEST_MYSQL_URL` at a
/// scratch database (its `observation_logs` table gets created and written) and run
/// `cargo test -p katib-db-manager -- --ignored`.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::testsuite;

    #[tokio::test]
    #[ignore = "needs KATIB_TEST_MYSQL_URL pointing at a scratch MySQL/MariaDB database"]
    async fn conformance_on_a_real_server() {
        let Ok(url) = std::env::var("KATIB_TEST_MYSQL_URL") else {
            panic!("set KATIB_TEST_MYSQL_URL=mysql://user:password@host:port/database");
        };
        // Katib's DDL first, as a Katib-initialised database would have it.
        let katib = MySqlStore::connect(&url).await.expect("connect");
        for reset in [
            "DROP TRIGGER IF EXISTS katib_test_poison",
            "DROP TABLE IF EXISTS observation_logs, _sqlx_migrations",
            "CREATE TABLE IF NOT EXISTS observation_logs (trial_name VARCHAR(255) NOT NULL, \
             id INT AUTO_INCREMENT PRIMARY KEY, time DATETIME(6), \
             metric_name VARCHAR(255) NOT NULL, value TEXT NOT NULL)",
            "INSERT INTO observation_logs (trial_name, time, metric_name, value) VALUES \
             ('katib-trial', '2024-05-01 10:00:00.25', 'accuracy', '0.5')",
        ] {
            sqlx::query(reset)
                .execute(katib.pool())
                .await
                .expect("katib setup");
        }
        katib.close().await;

        let store = MySqlStore::open(&url).await.expect("adopt");
        let rows = store.get(&LogQuery::trial("katib-trial")).await.expect("get");
        assert_eq!(
            rows,
            [MetricRow::new(
                "2024-05-01T10:00:00.25Z".parse().expect("ts"),
                "accuracy",
                "0.5"
            )]
        );
        testsuite::run_all(&store).await;

        sqlx::query(
            "CREATE TRIGGER katib_test_poison BEFORE INSERT ON observation_logs \
             FOR EACH ROW BEGIN IF NEW.value = 'poison' THEN \
             SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'poisoned row'; END IF; END",
        )
        .execute(store.pool())
        .await
        .expect("trigger");
        testsuite::report_is_atomic(&store, "poison").await;
        sqlx::query("DROP TRIGGER katib_test_poison")
            .execute(store.pool())
            .await
            .expect("drop trigger");
        store.close().await;

        testsuite::reopen_keeps_data(&url).await;
    }
}

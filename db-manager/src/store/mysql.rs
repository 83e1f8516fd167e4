//! MySQL / MariaDB backend: Katib's production default on Kubernetes.
//!
//! The table is Katib's own (`time DATETIME(6)`). Times are bound as UTC text
//! `YYYY-MM-DD HH:MM:SS.ffffff`, which MySQL converts exactly, and read back through
//! `DATE_FORMAT`, so no sqlx time feature is needed. Our own tables (`report_keys`,
//! `metric_summaries`) keep names as `VARBINARY`, compared byte for byte, and are read
//! back through `CAST(... AS CHAR CHARACTER SET utf8mb4)`. Tested against a real server
//! by the e2e suite (`tests/e2e/db.rs`).

use std::collections::BTreeMap;
use std::str::FromStr;

use sqlx::migrate::Migrator;
use sqlx::mysql::{MySqlConnectOptions, MySqlPool, MySqlPoolOptions};
use sqlx::{MySql, QueryBuilder};

use super::{
    Appended, BestValue, Init, LogQuery, MetricGoal, MetricRow, ObservationStore, ROWS_PER_INSERT, ReportKey,
    SqlRow, StoreError, StoreOptions, SummaryRow, TrialSet, TrialSqlRow, check_times, goal_metrics,
    group_rows, into_metric_rows, like_prefix, name_chunks, pick_best, query_error, redact, summarize,
};
use crate::time::to_sql_text;

static MIGRATOR: Migrator = sqlx::migrate!("migrations/mysql");

const BACKEND: &str = "MySQL";
const EXAMPLE: &str = "mysql://root:password@katib-mysql:3306/katib";

const INSERT: &str = "INSERT INTO observation_logs (trial_name, time, metric_name, value) ";
// Not ON DUPLICATE KEY UPDATE: sqlx sets CLIENT_FOUND_ROWS, under which a no-op update
// also counts one affected row. IGNORE only concerns the values we bind (a 64-digit hex
// key and a validated trial name).
const INSERT_KEY: &str = "INSERT IGNORE INTO report_keys (trial_name, request_hash) VALUES (?, ?)";
const UPSERT_SUMMARY: &str = "INSERT INTO metric_summaries \
     (trial_name, metric_name, min_value, min_text, max_value, max_text, latest_time, latest_text) ";
// MySQL evaluates the assignments left to right and later ones see earlier results:
// each text column is assigned before the number or time it is compared by.
const ON_SUMMARY_CONFLICT: &str = " ON DUPLICATE KEY UPDATE \
     min_text = IF(VALUES(min_value) IS NOT NULL \
         AND (min_value IS NULL OR VALUES(min_value) < min_value), VALUES(min_text), min_text), \
     min_value = IF(VALUES(min_value) IS NOT NULL \
         AND (min_value IS NULL OR VALUES(min_value) < min_value), VALUES(min_value), min_value), \
     max_text = IF(VALUES(max_value) IS NOT NULL \
         AND (max_value IS NULL OR VALUES(max_value) > max_value), VALUES(max_text), max_text), \
     max_value = IF(VALUES(max_value) IS NOT NULL \
         AND (max_value IS NULL OR VALUES(max_value) > max_value), VALUES(max_value), max_value), \
     latest_text = IF(latest_time IS NULL OR VALUES(latest_time) >= latest_time, \
         VALUES(latest_text), latest_text), \
     latest_time = IF(latest_time IS NULL OR VALUES(latest_time) >= latest_time, \
         VALUES(latest_time), latest_time)";
// Only the filters a query sets are added (each value bound): an `(? IS NULL OR ...)`
// form would let one prepared statement serve all cases, but keeps the planner from
// using the (trial_name, time) index for ranges and order (10x slower on MariaDB).
const SELECT: &str = "SELECT DATE_FORMAT(time, '%Y-%m-%d %H:%i:%s.%f') AS time_text, metric_name, value \
     FROM observation_logs WHERE trial_name = ";
const SELECT_TRIALS: &str = "SELECT trial_name, \
            DATE_FORMAT(time, '%Y-%m-%d %H:%i:%s.%f') AS time_text, metric_name, value \
     FROM observation_logs WHERE ";
const SELECT_SUMMARIES: &str = "SELECT \
            CAST(trial_name AS CHAR CHARACTER SET utf8mb4) AS trial_name, \
            CAST(metric_name AS CHAR CHARACTER SET utf8mb4) AS metric_name, \
            min_text, max_text, latest_text \
     FROM metric_summaries WHERE ";
const DELETE: [&str; 3] = [
    "DELETE FROM observation_logs WHERE trial_name = ?",
    "DELETE FROM report_keys WHERE trial_name = ?",
    "DELETE FROM metric_summaries WHERE trial_name = ?",
];
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
        Self::connect_with(url, &StoreOptions::default()).await
    }

    /// Checks the URL without connecting.
    pub fn check_url(url: &str) -> Result<(), StoreError> {
        Self::parse(url).map(drop)
    }

    fn parse(url: &str) -> Result<MySqlConnectOptions, StoreError> {
        let normalized = match url.get(..10) {
            Some(scheme) if scheme.eq_ignore_ascii_case("mariadb://") => {
                format!("mysql://{}", &url[10..])
            }
            _ => url.to_owned(),
        };
        MySqlConnectOptions::from_str(&normalized).map_err(|source| StoreError::InvalidUrl {
            backend: BACKEND,
            url: redact(url),
            example: EXAMPLE,
            source,
        })
    }

    /// Connects with the pool settings of `options`, without touching the schema.
    pub async fn connect_with(url: &str, settings: &StoreOptions) -> Result<Self, StoreError> {
        let target = redact(url);
        let options = Self::parse(url)?;
        let pool = MySqlPoolOptions::new()
            .max_connections(settings.max_connections.max(1))
            .acquire_timeout(settings.acquire_timeout)
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

/// Appends `trials`' condition to a bulk read: `trial_name IN (...)` or a `LIKE` prefix.
fn push_trials(query: &mut QueryBuilder<MySql>, names: Option<&[&str]>, prefix: &str) {
    match names {
        Some(names) => {
            query.push("trial_name IN (");
            let mut list = query.separated(", ");
            for name in names {
                list.push_bind(*name);
            }
            query.push(")");
        }
        None => {
            query.push("trial_name LIKE ");
            query.push_bind(like_prefix(prefix));
            query.push(" ESCAPE '!'");
        }
    }
}

fn trial_chunks(trials: &TrialSet) -> Vec<(Option<Vec<&str>>, &str)> {
    match trials {
        TrialSet::Names(names) => name_chunks(names)
            .into_iter()
            .map(|chunk| (Some(chunk), ""))
            .collect(),
        TrialSet::Prefix(prefix) => vec![(None, prefix.as_str())],
    }
}

#[tonic::async_trait]
impl ObservationStore for MySqlStore {
    fn backend(&self) -> &'static str {
        "mysql"
    }

    async fn append(
        &self,
        trial: &str,
        logs: &[MetricRow],
        key: Option<&ReportKey>,
    ) -> Result<Appended, StoreError> {
        if logs.is_empty() {
            return Ok(Appended::Stored);
        }
        check_times(logs)?;
        let mut tx = self.pool.begin().await.map_err(query("begin transaction"))?;
        if let Some(key) = key {
            let inserted = sqlx::query(INSERT_KEY)
                .bind(trial)
                .bind(key.hex())
                .execute(&mut *tx)
                .await
                .map_err(query("insert into report_keys"))?;
            if inserted.rows_affected() == 0 {
                return Ok(Appended::Duplicate);
            }
        }
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
        let deltas = summarize(logs);
        for chunk in deltas.chunks(ROWS_PER_INSERT) {
            let mut upsert = QueryBuilder::<MySql>::new(UPSERT_SUMMARY);
            upsert.push_values(chunk, |mut values, delta| {
                values
                    .push_bind(trial)
                    .push_bind(delta.metric)
                    .push_bind(delta.min.map(|(n, _)| n))
                    .push_bind(delta.min.map(|(_, text)| text))
                    .push_bind(delta.max.map(|(n, _)| n))
                    .push_bind(delta.max.map(|(_, text)| text))
                    .push_bind(to_sql_text(delta.latest.0))
                    .push_bind(delta.latest.1);
            });
            upsert.push(ON_SUMMARY_CONFLICT);
            upsert
                .build()
                .execute(&mut *tx)
                .await
                .map_err(query("upsert into metric_summaries"))?;
        }
        tx.commit().await.map_err(query("commit"))?;
        Ok(Appended::Stored)
    }

    async fn get(&self, q: &LogQuery) -> Result<Vec<MetricRow>, StoreError> {
        let mut select = QueryBuilder::<MySql>::new(SELECT);
        select.push_bind(q.trial.as_str());
        if let Some(metric) = &q.metric {
            select.push(" AND metric_name = ").push_bind(metric.as_str());
        }
        if let Some(start) = q.start {
            select.push(" AND time >= ").push_bind(to_sql_text(start));
        }
        if let Some(end) = q.end {
            select.push(" AND time <= ").push_bind(to_sql_text(end));
        }
        select.push(" ORDER BY time, id");
        let rows: Vec<SqlRow> = select
            .build_query_as()
            .fetch_all(&self.pool)
            .await
            .map_err(query("select from observation_logs"))?;
        Ok(into_metric_rows(BACKEND, rows))
    }

    async fn get_trials(
        &self,
        trials: &TrialSet,
        metric: Option<&str>,
    ) -> Result<BTreeMap<String, Vec<MetricRow>>, StoreError> {
        let mut rows = Vec::new();
        for (names, prefix) in trial_chunks(trials) {
            let mut select = QueryBuilder::<MySql>::new(SELECT_TRIALS);
            push_trials(&mut select, names.as_deref(), prefix);
            if let Some(metric) = metric {
                select.push(" AND metric_name = ").push_bind(metric);
            }
            select.push(" ORDER BY trial_name, time, id");
            let chunk: Vec<TrialSqlRow> = select
                .build_query_as()
                .fetch_all(&self.pool)
                .await
                .map_err(query("select trials from observation_logs"))?;
            rows.extend(chunk);
        }
        Ok(group_rows(BACKEND, rows))
    }

    async fn best_values(
        &self,
        trials: &TrialSet,
        goals: &[MetricGoal],
    ) -> Result<Vec<BestValue>, StoreError> {
        let metrics = goal_metrics(goals);
        if metrics.is_empty() {
            return Ok(Vec::new());
        }
        let mut rows = Vec::new();
        for (names, prefix) in trial_chunks(trials) {
            let mut select = QueryBuilder::<MySql>::new(SELECT_SUMMARIES);
            push_trials(&mut select, names.as_deref(), prefix);
            select.push(" AND metric_name IN (");
            let mut list = select.separated(", ");
            for metric in &metrics {
                list.push_bind(*metric);
            }
            select.push(")");
            let chunk: Vec<SummaryRow> = select
                .build_query_as()
                .fetch_all(&self.pool)
                .await
                .map_err(query("select from metric_summaries"))?;
            rows.extend(chunk);
        }
        Ok(pick_best(rows, goals))
    }

    async fn delete(&self, trial: &str) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await.map_err(query("begin transaction"))?;
        let mut deleted = 0;
        for (i, statement) in DELETE.into_iter().enumerate() {
            let done = sqlx::query(statement)
                .bind(trial)
                .execute(&mut *tx)
                .await
                .map_err(query("delete a trial's observations"))?;
            if i == 0 {
                deleted = done.rows_affected();
            }
        }
        tx.commit().await.map_err(query("commit"))?;
        Ok(deleted)
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
    move |source| query_error(BACKEND, operation, source)
}

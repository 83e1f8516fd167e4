//! PostgreSQL backend.
//!
//! The table is Katib's own (`time TIMESTAMP(6)`). Times are bound as UTC text cast with
//! `::timestamp` and read back through `to_char`, so no sqlx time feature is needed.
//! Tested against a real server by the e2e suite (`tests/e2e/db.rs`).

use std::collections::BTreeMap;
use std::str::FromStr;

use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{Postgres, QueryBuilder};

use super::{
    Appended, BestValue, Init, LogQuery, MetricGoal, MetricRow, ObservationStore, ROWS_PER_INSERT, ReportKey,
    SqlRow, StoreError, StoreOptions, SummaryRow, TrialSet, TrialSqlRow, check_times, goal_metrics,
    group_rows, into_metric_rows, like_prefix, name_chunks, pick_best, query_error, redact, summarize,
};
use crate::time::to_sql_text;

static MIGRATOR: Migrator = sqlx::migrate!("migrations/postgres");

const BACKEND: &str = "PostgreSQL";
const EXAMPLE: &str = "postgres://katib:katib@katib-postgres:5432/katib";

const INSERT: &str = "INSERT INTO observation_logs (trial_name, time, metric_name, value) ";
const INSERT_KEY: &str = "INSERT INTO report_keys (trial_name, request_hash) VALUES ($1, $2) \
     ON CONFLICT DO NOTHING";
const UPSERT_SUMMARY: &str = "INSERT INTO metric_summaries AS s \
     (trial_name, metric_name, min_value, min_text, max_value, max_text, latest_time, latest_text) ";
const ON_SUMMARY_CONFLICT: &str = " ON CONFLICT (trial_name, metric_name) DO UPDATE SET \
     min_text = CASE WHEN EXCLUDED.min_value IS NOT NULL \
         AND (s.min_value IS NULL OR EXCLUDED.min_value < s.min_value) \
         THEN EXCLUDED.min_text ELSE s.min_text END, \
     min_value = CASE WHEN EXCLUDED.min_value IS NOT NULL \
         AND (s.min_value IS NULL OR EXCLUDED.min_value < s.min_value) \
         THEN EXCLUDED.min_value ELSE s.min_value END, \
     max_text = CASE WHEN EXCLUDED.max_value IS NOT NULL \
         AND (s.max_value IS NULL OR EXCLUDED.max_value > s.max_value) \
         THEN EXCLUDED.max_text ELSE s.max_text END, \
     max_value = CASE WHEN EXCLUDED.max_value IS NOT NULL \
         AND (s.max_value IS NULL OR EXCLUDED.max_value > s.max_value) \
         THEN EXCLUDED.max_value ELSE s.max_value END, \
     latest_text = CASE WHEN s.latest_time IS NULL OR EXCLUDED.latest_time >= s.latest_time \
         THEN EXCLUDED.latest_text ELSE s.latest_text END, \
     latest_time = CASE WHEN s.latest_time IS NULL OR EXCLUDED.latest_time >= s.latest_time \
         THEN EXCLUDED.latest_time ELSE s.latest_time END";
// Only the filters a query sets are added (each value bound): an `(? IS NULL OR ...)`
// form would let one prepared statement serve all cases, but keeps the planner from
// using the (trial_name, time) index for ranges and order (10x slower on MariaDB).
const SELECT: &str = "SELECT to_char(time, 'YYYY-MM-DD HH24:MI:SS.US') AS time_text, metric_name, value \
     FROM observation_logs WHERE trial_name = ";
const SELECT_TRIALS: &str = "SELECT trial_name, \
            to_char(time, 'YYYY-MM-DD HH24:MI:SS.US') AS time_text, metric_name, value \
     FROM observation_logs WHERE ";
const SELECT_SUMMARIES: &str = "SELECT trial_name, metric_name, min_text, max_text, latest_text \
     FROM metric_summaries WHERE ";
const DELETE: [&str; 3] = [
    "DELETE FROM observation_logs WHERE trial_name = $1",
    "DELETE FROM report_keys WHERE trial_name = $1",
    "DELETE FROM metric_summaries WHERE trial_name = $1",
];
const CHECK: &str = "SELECT trial_name, id, time, metric_name, value FROM observation_logs LIMIT 1";

/// Katib's `observation_logs` on PostgreSQL.
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
    target: String,
}

impl PgStore {
    /// Connects and applies the embedded migrations.
    /// URL: `postgres://<user>:<password>@<host>:<port>/<database>` (or `postgresql://...`).
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

    fn parse(url: &str) -> Result<PgConnectOptions, StoreError> {
        PgConnectOptions::from_str(url).map_err(|source| StoreError::InvalidUrl {
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
        let pool = PgPoolOptions::new()
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
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

/// Appends `trials`' condition to a bulk read: `trial_name IN (...)` or a `LIKE` prefix.
fn push_trials(query: &mut QueryBuilder<Postgres>, names: Option<&[&str]>, prefix: &str) {
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
impl ObservationStore for PgStore {
    fn backend(&self) -> &'static str {
        "postgres"
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
            let mut insert = QueryBuilder::<Postgres>::new(INSERT);
            insert.push_values(chunk, |mut values, row| {
                values
                    .push_bind(trial)
                    .push_bind(to_sql_text(row.time))
                    .push_unseparated("::timestamp")
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
            let mut upsert = QueryBuilder::<Postgres>::new(UPSERT_SUMMARY);
            upsert.push_values(chunk, |mut values, delta| {
                values
                    .push_bind(trial)
                    .push_bind(delta.metric)
                    .push_bind(delta.min.map(|(n, _)| n))
                    .push_bind(delta.min.map(|(_, text)| text))
                    .push_bind(delta.max.map(|(n, _)| n))
                    .push_bind(delta.max.map(|(_, text)| text))
                    .push_bind(to_sql_text(delta.latest.0))
                    .push_unseparated("::timestamp")
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
        let mut select = QueryBuilder::<Postgres>::new(SELECT);
        select.push_bind(q.trial.as_str());
        if let Some(metric) = &q.metric {
            select.push(" AND metric_name = ").push_bind(metric.as_str());
        }
        if let Some(start) = q.start {
            select.push(" AND time >= ").push_bind(to_sql_text(start));
            select.push("::timestamp");
        }
        if let Some(end) = q.end {
            select.push(" AND time <= ").push_bind(to_sql_text(end));
            select.push("::timestamp");
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
            let mut select = QueryBuilder::<Postgres>::new(SELECT_TRIALS);
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
            let mut select = QueryBuilder::<Postgres>::new(SELECT_SUMMARIES);
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

//! PostgreSQL backend.
//!
//! The table is Katib's own (`time TIMESTAMP(6)`). Times are bound as UTC text cast with
//! `::timestamp` and read back through `to_char`, so no sqlx time feature is needed.
//! Tested against a real server by the e2e suite (`tests/e2e/db.rs`).

use std::str::FromStr;

use sqlx::Postgres;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPool, PgQueryResult};

use super::sql::{Dialect, SqlStore, connect_server};
use super::{StoreError, StoreOptions, redact};

static MIGRATOR: Migrator = sqlx::migrate!("migrations/postgres");

const EXAMPLE: &str = "postgres://katib:katib@katib-postgres:5432/katib";

/// Katib's `observation_logs` on PostgreSQL.
/// URL: `postgres://<user>:<password>@<host>:<port>/<database>` (or `postgresql://...`).
pub type PgStore = SqlStore<PgDialect>;

/// PostgreSQL's SQL.
#[derive(Debug, Clone, Copy)]
pub struct PgDialect;

impl PgDialect {
    fn parse(url: &str) -> Result<PgConnectOptions, StoreError> {
        PgConnectOptions::from_str(url).map_err(|source| StoreError::InvalidUrl {
            backend: Self::BACKEND,
            url: redact(url),
            example: EXAMPLE,
            source,
        })
    }
}

impl Dialect for PgDialect {
    type Db = Postgres;

    const BACKEND: &'static str = "PostgreSQL";
    const NAME: &'static str = "postgres";
    const TYPE_NAME: &'static str = "PgStore";
    const MIGRATOR: &'static Migrator = &MIGRATOR;
    const INSERT_KEY: &'static str = "INSERT INTO report_keys (trial_name, request_hash) VALUES ($1, $2) \
         ON CONFLICT DO NOTHING";
    const UPSERT_SUMMARY: &'static str = "INSERT INTO metric_summaries AS s";
    const ON_SUMMARY_CONFLICT: &'static str = " ON CONFLICT (trial_name, metric_name) DO UPDATE SET \
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
    const TIME_CAST: &'static str = "::timestamp";
    const TIME_TEXT: &'static str = "to_char(time, 'YYYY-MM-DD HH24:MI:SS.US')";
    const SUMMARY_NAMES: &'static str = "trial_name, metric_name";

    fn check_url(url: &str) -> Result<(), StoreError> {
        Self::parse(url).map(drop)
    }

    async fn connect(url: &str, settings: &StoreOptions) -> Result<(PgPool, String), StoreError> {
        connect_server(Self::BACKEND, url, Self::parse(url)?, settings).await
    }

    fn rows_affected(result: &PgQueryResult) -> u64 {
        result.rows_affected()
    }
}

//! MySQL / MariaDB backend: Katib's production default on Kubernetes.
//!
//! The table is Katib's own (`time DATETIME(6)`). Times are bound as UTC text
//! `YYYY-MM-DD HH:MM:SS.ffffff`, which MySQL converts exactly, and read back through
//! `DATE_FORMAT`, so no sqlx time feature is needed. Our own tables (`report_keys`,
//! `metric_summaries`) keep names as `VARBINARY`, compared byte for byte, and are read
//! back through `CAST(... AS CHAR CHARACTER SET utf8mb4)`. Tested against a real server
//! by the e2e suite (`tests/e2e/db.rs`).

use std::str::FromStr;

use sqlx::MySql;
use sqlx::migrate::Migrator;
use sqlx::mysql::{MySqlConnectOptions, MySqlPool, MySqlQueryResult};

use super::sql::{Dialect, SqlStore, connect_server};
use super::{StoreError, StoreOptions, redact};

static MIGRATOR: Migrator = sqlx::migrate!("migrations/mysql");

const EXAMPLE: &str = "mysql://root:password@katib-mysql:3306/katib";

/// Katib's `observation_logs` on MySQL or MariaDB.
/// URL: `mysql://<user>:<password>@<host>:<port>/<database>` (or `mariadb://...`).
pub type MySqlStore = SqlStore<MySqlDialect>;

/// MySQL's and MariaDB's SQL.
#[derive(Debug, Clone, Copy)]
pub struct MySqlDialect;

impl MySqlDialect {
    fn parse(url: &str) -> Result<MySqlConnectOptions, StoreError> {
        let normalized = match url.get(..10) {
            Some(scheme) if scheme.eq_ignore_ascii_case("mariadb://") => {
                format!("mysql://{}", &url[10..])
            }
            _ => url.to_owned(),
        };
        MySqlConnectOptions::from_str(&normalized).map_err(|source| StoreError::InvalidUrl {
            backend: Self::BACKEND,
            url: redact(url),
            example: EXAMPLE,
            source,
        })
    }
}

impl Dialect for MySqlDialect {
    type Db = MySql;

    const BACKEND: &'static str = "MySQL";
    const NAME: &'static str = "mysql";
    const TYPE_NAME: &'static str = "MySqlStore";
    const MIGRATOR: &'static Migrator = &MIGRATOR;
    // Not ON DUPLICATE KEY UPDATE: sqlx sets CLIENT_FOUND_ROWS, under which a no-op update
    // also counts one affected row. IGNORE only concerns the values we bind (a 64-digit hex
    // key and a validated trial name).
    const INSERT_KEY: &'static str =
        "INSERT IGNORE INTO report_keys (trial_name, request_hash) VALUES (?, ?)";
    const UPSERT_SUMMARY: &'static str = "INSERT INTO metric_summaries";
    // MySQL evaluates the assignments left to right and later ones see earlier results:
    // each text column is assigned before the number or time it is compared by.
    const ON_SUMMARY_CONFLICT: &'static str = " ON DUPLICATE KEY UPDATE \
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
    const TIME_CAST: &'static str = "";
    const TIME_TEXT: &'static str = "DATE_FORMAT(time, '%Y-%m-%d %H:%i:%s.%f')";
    const SUMMARY_NAMES: &'static str = "CAST(trial_name AS CHAR CHARACTER SET utf8mb4) AS trial_name, \
         CAST(metric_name AS CHAR CHARACTER SET utf8mb4) AS metric_name";

    fn check_url(url: &str) -> Result<(), StoreError> {
        Self::parse(url).map(drop)
    }

    async fn connect(url: &str, settings: &StoreOptions) -> Result<(MySqlPool, String), StoreError> {
        connect_server(Self::BACKEND, url, Self::parse(url)?, settings).await
    }

    fn rows_affected(result: &MySqlQueryResult) -> u64 {
        result.rows_affected()
    }
}

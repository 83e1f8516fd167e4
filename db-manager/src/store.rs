//! The observation store: Katib's `observation_logs` table behind one async trait, with
//! sqlx backends for SQLite (embedded default), MySQL/MariaDB and PostgreSQL.

use std::sync::Arc;

use jiff::Timestamp;

mod mysql;
mod postgres;
mod sqlite;

pub use mysql::MySqlStore;
pub use postgres::PgStore;
pub use sqlite::SqliteStore;

/// Rows per `INSERT` statement. A report larger than this becomes several multi-row
/// `INSERT`s inside the same transaction, which keeps every backend under its bind
/// parameter limit (SQLite 32766, MySQL and PostgreSQL 65535) and its packet size.
pub(crate) const ROWS_PER_INSERT: usize = 500;

/// One observation: a metric value a trial reported at a time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricRow {
    /// When the value was observed (UTC; stored with microsecond precision, floored).
    pub time: Timestamp,
    /// The metric's name, e.g. `accuracy`.
    pub metric_name: String,
    /// The value exactly as reported (`"0.93"`, `"unavailable"`, anything).
    pub value: String,
}

impl MetricRow {
    /// A row from its three parts.
    pub fn new(time: Timestamp, metric_name: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            time,
            metric_name: metric_name.into(),
            value: value.into(),
        }
    }
}

/// Which rows [`ObservationStore::get`] returns: one trial's, optionally one metric's,
/// optionally within an inclusive time range.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogQuery {
    /// The trial whose observations to read.
    pub trial: String,
    /// Only this metric, when set.
    pub metric: Option<String>,
    /// Only rows at or after this time, when set.
    pub start: Option<Timestamp>,
    /// Only rows at or before this time, when set.
    pub end: Option<Timestamp>,
}

impl LogQuery {
    /// All rows of one trial.
    pub fn trial(trial: impl Into<String>) -> Self {
        Self {
            trial: trial.into(),
            ..Self::default()
        }
    }

    /// Narrows the query to one metric.
    pub fn metric(mut self, metric: impl Into<String>) -> Self {
        self.metric = Some(metric.into());
        self
    }

    /// Narrows the query to `start..=end` (either bound optional).
    pub fn between(mut self, start: Option<Timestamp>, end: Option<Timestamp>) -> Self {
        self.start = start;
        self.end = end;
        self
    }
}

/// Katib's observation log storage.
///
/// Implementations keep Katib's `observation_logs` table (trial_name, id, time,
/// metric_name, value) so a database written by Katib can be read and vice versa.
#[tonic::async_trait]
pub trait ObservationStore: Send + Sync {
    /// Short backend name for logs: `sqlite`, `mysql` or `postgres`.
    fn backend(&self) -> &'static str;

    /// Appends `logs` to `trial`'s observations in one transaction: all rows land or none.
    /// An empty slice is a no-op.
    async fn report(&self, trial: &str, logs: &[MetricRow]) -> Result<(), StoreError>;

    /// The rows matching `query`, in time order (ties in insertion order).
    async fn get(&self, query: &LogQuery) -> Result<Vec<MetricRow>, StoreError>;

    /// Deletes every row of `trial`; returns how many rows were removed.
    async fn delete(&self, trial: &str) -> Result<u64, StoreError>;

    /// Checks that the database answers (`SELECT 1`).
    async fn ping(&self) -> Result<(), StoreError>;

    /// Closes the connection pool, waiting for in-flight queries. Later calls fail.
    async fn close(&self) {}
}

/// Everything that can go wrong opening or using a store.
///
/// Messages name the database (passwords redacted) and say how to fix what a user can fix;
/// the underlying sqlx error is the `source`, not repeated in the message.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The URL's scheme names no backend we have.
    #[error(
        "unsupported database URL {url:?}: use sqlite://<path> (or sqlite::memory:), \
         mysql://<user>:<password>@<host>:<port>/<database>, or \
         postgres://<user>:<password>@<host>:<port>/<database>"
    )]
    UnsupportedUrl {
        /// The URL given (password redacted).
        url: String,
    },
    /// The scheme is known but the rest of the URL does not parse.
    #[error("invalid {backend} database URL {url:?}; expected e.g. {example}")]
    InvalidUrl {
        /// `SQLite`, `MySQL` or `PostgreSQL`.
        backend: &'static str,
        /// The URL given (password redacted).
        url: String,
        /// A URL of the right shape.
        example: &'static str,
        /// What sqlx objected to.
        #[source]
        source: sqlx::Error,
    },
    /// The SQLite file's directory does not exist (SQLite creates files, not directories).
    #[error(
        "cannot open SQLite database {path}: directory {dir} does not exist \
         (create it or pass --db sqlite://<writable path>)"
    )]
    SqliteDirMissing {
        /// The database file.
        path: String,
        /// Its missing parent directory.
        dir: String,
    },
    /// Connecting failed.
    #[error("cannot open {backend} database {target} ({hint})")]
    Open {
        /// `SQLite`, `MySQL` or `PostgreSQL`.
        backend: &'static str,
        /// File path, or URL with the password redacted.
        target: String,
        /// What to check.
        hint: &'static str,
        /// The connection error.
        #[source]
        source: sqlx::Error,
    },
    /// Applying the embedded migrations failed.
    #[error("cannot apply the {backend} migrations to {target}")]
    Migrate {
        /// `SQLite`, `MySQL` or `PostgreSQL`.
        backend: &'static str,
        /// File path, or URL with the password redacted.
        target: String,
        /// The migration error.
        #[source]
        source: sqlx::migrate::MigrateError,
    },
    /// The `observation_logs` table is missing or has the wrong columns (checked instead
    /// of migrating when initialisation is skipped).
    #[error(
        "{backend} database {target} has no usable observation_logs table \
         (run without skipping database initialisation to create it)"
    )]
    MissingSchema {
        /// `SQLite`, `MySQL` or `PostgreSQL`.
        backend: &'static str,
        /// File path, or URL with the password redacted.
        target: String,
        /// The query error.
        #[source]
        source: sqlx::Error,
    },
    /// A query failed at run time (database down, disk full, constraint, ...).
    #[error("{backend} {operation} failed")]
    Query {
        /// `SQLite`, `MySQL` or `PostgreSQL`.
        backend: &'static str,
        /// What we were doing, e.g. `insert into observation_logs`.
        operation: &'static str,
        /// The query error.
        #[source]
        source: sqlx::Error,
    },
    /// A row's time cannot be stored so that it sorts correctly on every backend.
    #[error(
        "time {time} of metric {metric:?} is outside the storable range \
         0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999999Z"
    )]
    TimeOutOfRange {
        /// The offending time.
        time: Timestamp,
        /// Its metric name.
        metric: String,
    },
}

/// Opens the store named by `url`, creating the database file (SQLite) and applying the
/// embedded migrations. Schemes: `sqlite://<path>`, `sqlite:<path>`, `sqlite::memory:`,
/// `mysql://...` (also `mariadb://...`), `postgres://...` (also `postgresql://...`).
pub async fn open_store(url: &str) -> Result<Arc<dyn ObservationStore>, StoreError> {
    open_store_with(url, Init::Migrate).await
}

/// What [`open_store_with`] does to the schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Init {
    /// Apply the embedded migrations (idempotent; adopts a database Katib created).
    #[default]
    Migrate,
    /// Only check that `observation_logs` is readable, as Katib does with
    /// `SKIP_DB_INITIALIZATION=true` (for users who manage the schema themselves).
    CheckOnly,
}

/// [`open_store`] with a choice of schema initialisation.
pub async fn open_store_with(url: &str, init: Init) -> Result<Arc<dyn ObservationStore>, StoreError> {
    let scheme = url.split_once(':').map(|(scheme, _)| scheme.to_ascii_lowercase());
    match scheme.as_deref() {
        Some("sqlite") => {
            let store = SqliteStore::connect(url).await?;
            store.init(init).await?;
            Ok(Arc::new(store))
        }
        Some("mysql" | "mariadb") => {
            let store = MySqlStore::connect(url).await?;
            store.init(init).await?;
            Ok(Arc::new(store))
        }
        Some("postgres" | "postgresql") => {
            let store = PgStore::connect(url).await?;
            store.init(init).await?;
            Ok(Arc::new(store))
        }
        _ => Err(StoreError::UnsupportedUrl { url: redact(url) }),
    }
}

/// `url` with the password (if any) replaced by `***`, for messages and logs.
pub fn redact(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return url.to_owned();
    };
    let Some((user, _password)) = rest[..at].split_once(':') else {
        return url.to_owned();
    };
    format!("{}://{user}:***@{}", &url[..scheme_end], &rest[at + 1..])
}

/// A selected row before its time text is parsed. `time` may be NULL in a table Katib
/// wrote (the column is nullable there).
#[derive(sqlx::FromRow)]
pub(crate) struct SqlRow {
    pub(crate) time_text: Option<String>,
    pub(crate) metric_name: String,
    pub(crate) value: String,
}

/// Turns selected rows into [`MetricRow`]s, skipping rows whose time is NULL or unreadable
/// (Katib skips them too) with a warning.
pub(crate) fn into_metric_rows(backend: &'static str, rows: Vec<SqlRow>) -> Vec<MetricRow> {
    let mut out = Vec::with_capacity(rows.len());
    let mut skipped = 0_usize;
    for row in rows {
        match row.time_text.as_deref().and_then(crate::time::from_sql_text) {
            Some(time) => out.push(MetricRow {
                time,
                metric_name: row.metric_name,
                value: row.value,
            }),
            None => skipped += 1,
        }
    }
    if skipped > 0 {
        tracing::warn!(
            backend,
            skipped,
            "skipped observation rows with a NULL or unreadable time"
        );
    }
    out
}

/// Checks every row's time before anything is written, so a report fails whole.
pub(crate) fn check_times(logs: &[MetricRow]) -> Result<(), StoreError> {
    match logs.iter().find(|row| !crate::time::in_range(row.time)) {
        Some(row) => Err(StoreError::TimeOutOfRange {
            time: row.time,
            metric: row.metric_name.clone(),
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords_only() {
        assert_eq!(
            redact("mysql://root:secret@katib-mysql:3306/katib"),
            "mysql://root:***@katib-mysql:3306/katib"
        );
        assert_eq!(redact("postgres://katib@db/katib"), "postgres://katib@db/katib");
        assert_eq!(redact("sqlite:///tmp/katib.db"), "sqlite:///tmp/katib.db");
        assert_eq!(redact("sqlite::memory:"), "sqlite::memory:");
        assert_eq!(
            redact("postgres://u:p@ss@host/db?x=@"),
            "postgres://u:***@host/db?x=@"
        );
    }

    #[tokio::test]
    async fn unknown_scheme_lists_the_supported_ones() {
        let err = open_store("redis://localhost")
            .await
            .err()
            .expect("redis is not a store");
        let message = err.to_string();
        for scheme in ["sqlite://", "mysql://", "postgres://"] {
            assert!(message.contains(scheme), "{message}");
        }
        let err = open_store("katib.db").await.err().expect("no scheme");
        assert!(matches!(err, StoreError::UnsupportedUrl { .. }), "{err}");
    }
}

//! The observation store: Katib's `observation_logs` table behind one async trait, with
//! sqlx backends for SQLite (embedded default), MySQL/MariaDB and PostgreSQL.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;

mod lazy;
mod mysql;
mod postgres;
mod sql;
mod sqlite;

pub use lazy::LazyStore;
pub use mysql::MySqlStore;
pub use postgres::PgStore;
pub use sqlite::SqliteStore;

/// Rows per `INSERT` statement. A report larger than this becomes several multi-row
/// `INSERT`s inside the same transaction, which keeps every backend under its bind
/// parameter limit (SQLite 32766, MySQL and PostgreSQL 65535) and its packet size.
pub(crate) const ROWS_PER_INSERT: usize = 500;

/// Trial names per bulk-read statement (`trial_name IN (...)`); a longer
/// [`TrialSet::Names`] list is read in several statements.
pub const NAMES_PER_QUERY: usize = 1000;

/// How a store connects: pool size and waits, and what it does to the schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreOptions {
    /// What to do to the schema when opening.
    pub init: Init,
    /// Most connections in the pool (MySQL, PostgreSQL and SQLite files; an in-memory
    /// SQLite database always has exactly one).
    pub max_connections: u32,
    /// How long a query waits for a pooled connection (or for a new connection to be
    /// established) before it fails; a request then gets UNAVAILABLE.
    pub acquire_timeout: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            init: Init::Migrate,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            acquire_timeout: DEFAULT_ACQUIRE_TIMEOUT,
        }
    }
}

/// Default pool size (`--max-connections`).
pub const DEFAULT_MAX_CONNECTIONS: u32 = 10;

/// Default wait for a pooled connection.
pub const DEFAULT_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

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

/// Which trials a bulk read covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrialSet {
    /// Exactly these trials (an experiment's trial list, as the controller and the UI
    /// know it). Duplicates are ignored; an empty list selects nothing.
    Names(Vec<String>),
    /// Every trial whose name starts with this text (Katib names trials
    /// `<experiment>-<random>`, so `"<experiment>-"` selects an experiment's trials; note
    /// that it also selects those of an experiment named `<experiment>-<more>`).
    /// An empty prefix selects every trial.
    Prefix(String),
}

/// How a trial's value of one metric is chosen from its rows: Katib's metric strategies
/// (`min`, `max`, `latest`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Goal {
    /// The smallest numeric value (first reported on ties).
    Min,
    /// The largest numeric value (first reported on ties).
    Max,
    /// The value of the row with the latest time (last reported on ties), numeric or not.
    Latest,
}

/// A metric and how to pick its value ([`ObservationStore::best_values`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricGoal {
    /// The metric's name.
    pub metric: String,
    /// Which of its values to pick.
    pub goal: Goal,
}

impl MetricGoal {
    /// `metric` picked by `goal`.
    pub fn new(metric: impl Into<String>, goal: Goal) -> Self {
        Self {
            metric: metric.into(),
            goal,
        }
    }
}

/// One trial's chosen value of one metric.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BestValue {
    /// The trial.
    pub trial: String,
    /// The metric.
    pub metric: String,
    /// How the value was chosen.
    pub goal: Goal,
    /// The value exactly as reported (`"0.930"` stays `"0.930"`).
    pub value: String,
}

/// The idempotency key of one report: SHA-256 over the request as the client sent it
/// (trial name, then each log's time stamp text, metric name and value, in order, each
/// length-prefixed). Two reports with the same key are the same report sent twice.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ReportKey([u8; 32]);

impl ReportKey {
    /// The key of a report of `logs` (time stamp text as sent, name, value) for `trial`.
    pub fn of<'a>(trial: &str, logs: impl IntoIterator<Item = (&'a str, &'a str, &'a str)>) -> Self {
        use sha2::Digest as _;
        let mut hash = sha2::Sha256::new();
        let mut field = |text: &str| {
            hash.update((text.len() as u64).to_le_bytes());
            hash.update(text.as_bytes());
        };
        field(trial);
        for (time_stamp, name, value) in logs {
            field(time_stamp);
            field(name);
            field(value);
        }
        Self(hash.finalize().into())
    }

    /// The key as 64 lowercase hex digits (how it is stored).
    pub fn hex(&self) -> String {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut out = String::with_capacity(64);
        for byte in self.0 {
            out.push(char::from(DIGITS[usize::from(byte >> 4)]));
            out.push(char::from(DIGITS[usize::from(byte & 0xf)]));
        }
        out
    }
}

impl std::fmt::Debug for ReportKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ReportKey({})", self.hex())
    }
}

/// What [`ObservationStore::append`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    /// The rows were written.
    Stored,
    /// A report with the same key was already stored; nothing was written.
    Duplicate,
}

/// Katib's observation log storage.
///
/// Implementations keep Katib's `observation_logs` table (trial_name, id, time,
/// metric_name, value) so a database written by Katib can be read and vice versa, plus
/// two tables of their own, written in the same transaction as the rows:
/// `report_keys` (idempotency keys of stored reports) and `metric_summaries` (per trial
/// and metric: the min, max and latest value, for [`best_values`](Self::best_values)).
#[tonic::async_trait]
pub trait ObservationStore: Send + Sync {
    /// Short backend name for logs: `sqlite`, `mysql` or `postgres`.
    fn backend(&self) -> &'static str;

    /// Appends `logs` to `trial`'s observations in one transaction: all rows land or none.
    /// With a `key`, a report whose key is already stored for `trial` writes nothing and
    /// returns [`Appended::Duplicate`] (so a client may retry a report whose answer it
    /// lost). An empty slice is a no-op (and records no key).
    async fn append(
        &self,
        trial: &str,
        logs: &[MetricRow],
        key: Option<&ReportKey>,
    ) -> Result<Appended, StoreError>;

    /// [`append`](Self::append), then the trial's [`count`](Self::count) once the rows are
    /// stored: in the report's own transaction where the store can. A failed count is
    /// `None`; on PostgreSQL a failed statement also aborts its transaction, so the report
    /// then fails with it (and its key makes sending it again safe).
    async fn append_and_count(
        &self,
        trial: &str,
        logs: &[MetricRow],
        key: Option<&ReportKey>,
    ) -> Result<(Appended, Option<u64>), StoreError> {
        let appended = self.append(trial, logs, key).await?;
        Ok((appended, self.count(trial).await.ok()))
    }

    /// [`append`](Self::append) without an idempotency key.
    async fn report(&self, trial: &str, logs: &[MetricRow]) -> Result<(), StoreError> {
        self.append(trial, logs, None).await.map(drop)
    }

    /// The rows matching `query`, in time order (ties in insertion order).
    async fn get(&self, query: &LogQuery) -> Result<Vec<MetricRow>, StoreError>;

    /// How many observation rows of `trial` [`get`](Self::get) could return (rows with a
    /// time). Never fewer than `get` returns for the trial.
    async fn count(&self, trial: &str) -> Result<u64, StoreError>;

    /// Every row of every trial in `trials` (only `metric`'s, when given), one query per
    /// up to [`NAMES_PER_QUERY`] names: trial name to its rows in time order (ties in
    /// insertion order). Trials without rows are absent.
    async fn get_trials(
        &self,
        trials: &TrialSet,
        metric: Option<&str>,
    ) -> Result<BTreeMap<String, Vec<MetricRow>>, StoreError>;

    /// For every trial in `trials` and every metric in `goals`, the value the goal picks,
    /// read from the per-metric summaries (one small row per trial and metric, not the
    /// observation rows). Numeric means what [`numeric`] accepts (finite decimal numbers);
    /// a trial with no numeric value of a `Min`/`Max` metric has no entry for it. Sorted
    /// by trial name, then in `goals` order.
    async fn best_values(
        &self,
        trials: &TrialSet,
        goals: &[MetricGoal],
    ) -> Result<Vec<BestValue>, StoreError>;

    /// Deletes every row of `trial` (with its report keys and metric summaries); returns
    /// how many observation rows were removed.
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
    /// The database refused a value (e.g. characters its character set cannot hold).
    /// Sending the same data again fails the same way.
    #[error("{backend} refused the data ({operation}): {message}")]
    Refused {
        /// `SQLite`, `MySQL` or `PostgreSQL`.
        backend: &'static str,
        /// What we were doing.
        operation: &'static str,
        /// The database's own message.
        message: String,
    },
    /// The store is still connecting to its database (in the background, with backoff).
    #[error("the {backend} database {target} is not connected yet (db-manager keeps retrying; see its log)")]
    NotConnected {
        /// `MySQL` or `PostgreSQL`.
        backend: &'static str,
        /// URL with the password redacted.
        target: String,
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
    open_store_opts(url, &StoreOptions::default()).await
}

/// What [`open_store_with`] does to the schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Init {
    /// Apply the embedded migrations (idempotent; adopts a database Katib created).
    #[default]
    Migrate,
    /// Only check that `observation_logs` is readable, as Katib does with
    /// `SKIP_DB_INITIALIZATION=true` (for users who manage the schema themselves; they
    /// must also have applied our migrations' `report_keys` and `metric_summaries`).
    CheckOnly,
}

/// [`open_store`] with a choice of schema initialisation.
pub async fn open_store_with(url: &str, init: Init) -> Result<Arc<dyn ObservationStore>, StoreError> {
    open_store_opts(
        url,
        &StoreOptions {
            init,
            ..StoreOptions::default()
        },
    )
    .await
}

/// The backends, by URL scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// `sqlite:`
    Sqlite,
    /// `mysql://`, `mariadb://`
    MySql,
    /// `postgres://`, `postgresql://`
    Postgres,
}

impl Backend {
    /// The backend a URL names.
    pub fn of_url(url: &str) -> Result<Self, StoreError> {
        let scheme = url.split_once(':').map(|(scheme, _)| scheme.to_ascii_lowercase());
        match scheme.as_deref() {
            Some("sqlite") => Ok(Self::Sqlite),
            Some("mysql" | "mariadb") => Ok(Self::MySql),
            Some("postgres" | "postgresql") => Ok(Self::Postgres),
            _ => Err(StoreError::UnsupportedUrl { url: redact(url) }),
        }
    }

    /// `sqlite`, `mysql` or `postgres` (as [`ObservationStore::backend`]).
    pub fn name(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::MySql => "mysql",
            Self::Postgres => "postgres",
        }
    }

    /// Checks the URL's syntax without connecting (errors that retrying cannot fix).
    pub fn check_url(self, url: &str) -> Result<(), StoreError> {
        match self {
            Self::Sqlite => SqliteStore::check_url(url),
            Self::MySql => MySqlStore::check_url(url),
            Self::Postgres => PgStore::check_url(url),
        }
    }
}

/// [`open_store`] with every option.
pub async fn open_store_opts(
    url: &str,
    options: &StoreOptions,
) -> Result<Arc<dyn ObservationStore>, StoreError> {
    match Backend::of_url(url)? {
        Backend::Sqlite => {
            let store = SqliteStore::connect_with(url, options).await?;
            store.init(options.init).await?;
            Ok(Arc::new(store))
        }
        Backend::MySql => {
            let store = MySqlStore::connect_with(url, options).await?;
            store.init(options.init).await?;
            Ok(Arc::new(store))
        }
        Backend::Postgres => {
            let store = PgStore::connect_with(url, options).await?;
            store.init(options.init).await?;
            Ok(Arc::new(store))
        }
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

/// A `COUNT(*) AS n` result row. Public only because the SQL stores' generic methods
/// name it in their bounds.
#[derive(sqlx::FromRow)]
pub struct CountRow {
    /// The count.
    pub n: i64,
}

/// A trial's `COUNT(*) AS n` from a grouped count. Public only because the SQL stores'
/// generic methods name it in their bounds.
#[derive(sqlx::FromRow)]
pub struct TrialCountRow {
    /// The trial.
    pub trial_name: String,
    /// The count.
    pub n: i64,
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

/// The number a value stands for, if it is a finite decimal number:
/// `[+-]digits[.digits][(e|E)[+-]digits]` or `[+-].digits[...]`, as Katib's reporters
/// print them. `"unavailable"`, `"inf"`, `"NaN"`, `" 1"` and overflowing values are not
/// numbers. This decides what `Min`/`Max` [`Goal`]s consider.
pub fn numeric(value: &str) -> Option<f64> {
    let bytes = value.as_bytes();
    let mut i = usize::from(matches!(bytes.first(), Some(b'+' | b'-')));
    let digits = |i: &mut usize| {
        let start = *i;
        while bytes.get(*i).is_some_and(u8::is_ascii_digit) {
            *i += 1;
        }
        *i - start
    };
    let mut mantissa = digits(&mut i);
    if bytes.get(i) == Some(&b'.') {
        i += 1;
        mantissa += digits(&mut i);
    }
    if mantissa == 0 {
        return None;
    }
    if matches!(bytes.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(bytes.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return None;
        }
    }
    if i != bytes.len() {
        return None;
    }
    value.parse::<f64>().ok().filter(|number| number.is_finite())
}

/// One report's contribution to one metric's summary row.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SummaryDelta<'a> {
    pub(crate) metric: &'a str,
    /// Smallest numeric value and its text (first on ties).
    pub(crate) min: Option<(f64, &'a str)>,
    /// Largest numeric value and its text (first on ties).
    pub(crate) max: Option<(f64, &'a str)>,
    /// The latest row's time and value (last on ties).
    pub(crate) latest: (Timestamp, &'a str),
}

/// Folds a report's rows into one [`SummaryDelta`] per metric, sorted by metric name
/// (so concurrent reports lock summary rows in the same order).
pub(crate) fn summarize<'a>(logs: impl IntoIterator<Item = &'a MetricRow>) -> Vec<SummaryDelta<'a>> {
    let mut by_metric: BTreeMap<&str, SummaryDelta<'_>> = BTreeMap::new();
    for row in logs {
        let number = numeric(&row.value).map(|n| (n, row.value.as_str()));
        let delta = by_metric
            .entry(row.metric_name.as_str())
            .or_insert_with(|| SummaryDelta {
                metric: row.metric_name.as_str(),
                min: None,
                max: None,
                latest: (row.time, row.value.as_str()),
            });
        if let Some((n, _)) = number {
            if delta.min.is_none_or(|(min, _)| n < min) {
                delta.min = number;
            }
            if delta.max.is_none_or(|(max, _)| n > max) {
                delta.max = number;
            }
        }
        if row.time >= delta.latest.0 {
            delta.latest = (row.time, row.value.as_str());
        }
    }
    by_metric.into_values().collect()
}

/// A failed query as a [`StoreError`]: [`StoreError::Refused`] when the database refused
/// the data itself (SQLSTATE class 22 "data exception", or MySQL's 1366 "incorrect string
/// value"), which no retry fixes; [`StoreError::Query`] otherwise.
pub(crate) fn query_error(backend: &'static str, operation: &'static str, source: sqlx::Error) -> StoreError {
    if let sqlx::Error::Database(db) = &source {
        let class_22 = db.code().is_some_and(|code| code.starts_with("22"));
        let mysql_1366 = db
            .try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>()
            .is_some_and(|e| e.number() == 1366);
        if class_22 || mysql_1366 {
            return StoreError::Refused {
                backend,
                operation,
                message: db.message().to_owned(),
            };
        }
    }
    StoreError::Query {
        backend,
        operation,
        source,
    }
}

/// A `metric_summaries` row as read back.
#[derive(sqlx::FromRow)]
pub(crate) struct SummaryRow {
    pub(crate) trial_name: String,
    pub(crate) metric_name: String,
    pub(crate) min_text: Option<String>,
    pub(crate) max_text: Option<String>,
    pub(crate) latest_text: Option<String>,
}

/// Picks each goal's value from the summary rows; sorted by trial, then goal order.
pub(crate) fn pick_best(rows: Vec<SummaryRow>, goals: &[MetricGoal]) -> Vec<BestValue> {
    let mut by_trial: BTreeMap<String, Vec<SummaryRow>> = BTreeMap::new();
    for row in rows {
        by_trial.entry(row.trial_name.clone()).or_default().push(row);
    }
    let mut out = Vec::new();
    for (trial, rows) in by_trial {
        for goal in goals {
            let Some(row) = rows.iter().find(|row| row.metric_name == goal.metric) else {
                continue;
            };
            let value = match goal.goal {
                Goal::Min => &row.min_text,
                Goal::Max => &row.max_text,
                Goal::Latest => &row.latest_text,
            };
            if let Some(value) = value {
                out.push(BestValue {
                    trial: trial.clone(),
                    metric: goal.metric.clone(),
                    goal: goal.goal,
                    value: value.clone(),
                });
            }
        }
    }
    out
}

/// The distinct metric names of `goals`.
pub(crate) fn goal_metrics(goals: &[MetricGoal]) -> Vec<&str> {
    let mut names: Vec<&str> = goals.iter().map(|goal| goal.metric.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    names
}

/// The trial names of a [`TrialSet::Names`], deduplicated, in chunks of
/// [`NAMES_PER_QUERY`].
pub(crate) fn name_chunks(names: &[String]) -> Vec<Vec<&str>> {
    let mut sorted: Vec<&str> = names.iter().map(String::as_str).collect();
    sorted.sort_unstable();
    sorted.dedup();
    sorted.chunks(NAMES_PER_QUERY).map(<[&str]>::to_vec).collect()
}

/// A `LIKE` pattern (with `ESCAPE '!'`) matching every text that starts with `prefix`.
pub(crate) fn like_prefix(prefix: &str) -> String {
    let mut pattern = String::with_capacity(prefix.len() + 1);
    for c in prefix.chars() {
        if matches!(c, '!' | '%' | '_') {
            pattern.push('!');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

/// Groups `(trial, row)` pairs, already in (trial, time, id) order, by trial.
pub(crate) fn group_rows(backend: &'static str, rows: Vec<TrialSqlRow>) -> BTreeMap<String, Vec<MetricRow>> {
    let mut out: BTreeMap<String, Vec<SqlRow>> = BTreeMap::new();
    for row in rows {
        out.entry(row.trial_name).or_default().push(SqlRow {
            time_text: row.time_text,
            metric_name: row.metric_name,
            value: row.value,
        });
    }
    out.into_iter()
        .map(|(trial, rows)| (trial, into_metric_rows(backend, rows)))
        .filter(|(_, rows)| !rows.is_empty())
        .collect()
}

/// A selected row of a bulk read, before its time text is parsed.
#[derive(sqlx::FromRow)]
pub(crate) struct TrialSqlRow {
    pub(crate) trial_name: String,
    pub(crate) time_text: Option<String>,
    pub(crate) metric_name: String,
    pub(crate) value: String,
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

    #[test]
    fn numeric_is_a_finite_decimal() {
        for (text, number) in [
            ("0.93", 0.93),
            ("-7.53e-05", -7.53e-05),
            ("+3", 3.0),
            ("5.", 5.0),
            (".5", 0.5),
            ("1E3", 1000.0),
            ("1e+3", 1000.0),
        ] {
            assert_eq!(numeric(text), Some(number), "{text:?}");
        }
        for text in [
            "",
            "unavailable",
            "inf",
            "-Infinity",
            "NaN",
            " 1",
            "1 ",
            ".",
            "e5",
            "1e",
            "1e+",
            "0x10",
            "1_000",
            "1,5",
            "1e999",
            "--1",
        ] {
            assert_eq!(numeric(text), None, "{text:?}");
        }
    }

    #[test]
    fn summarize_folds_per_metric() {
        let t = |s: &str| s.parse::<Timestamp>().expect("ts");
        let rows = [
            MetricRow::new(t("2024-05-01T10:00:02Z"), "loss", "0.5"),
            MetricRow::new(t("2024-05-01T10:00:01Z"), "acc", "x"),
            MetricRow::new(t("2024-05-01T10:00:01Z"), "loss", "0.50"),
            MetricRow::new(t("2024-05-01T10:00:02Z"), "loss", "0.1"),
            MetricRow::new(t("2024-05-01T10:00:00Z"), "loss", "0.9"),
        ];
        let deltas = summarize(&rows);
        assert_eq!(
            deltas,
            [
                SummaryDelta {
                    metric: "acc",
                    min: None,
                    max: None,
                    latest: (t("2024-05-01T10:00:01Z"), "x"),
                },
                SummaryDelta {
                    metric: "loss",
                    min: Some((0.1, "0.1")),
                    max: Some((0.9, "0.9")),
                    latest: (t("2024-05-01T10:00:02Z"), "0.1"),
                },
            ]
        );
    }

    #[test]
    fn like_prefix_escapes_wildcards() {
        assert_eq!(like_prefix("exp_1%!"), "exp!_1!%!!%");
        assert_eq!(like_prefix(""), "%");
    }

    #[test]
    fn report_key_hex() {
        let key = ReportKey::of("t", []);
        let hex = key.hex();
        assert_eq!(hex.len(), 64);
        assert!(
            hex.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        assert_eq!(format!("{key:?}"), format!("ReportKey({hex})"));
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

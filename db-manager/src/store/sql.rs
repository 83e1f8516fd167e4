//! [`SqlStore`]: the one [`ObservationStore`] implementation over sqlx, generic in a
//! [`Dialect`] that supplies what differs between SQLite, MySQL/MariaDB and PostgreSQL
//! (connecting, migrations, the time column as text, the key insert and summary upsert
//! statements, the prefix match). Everything else, the transaction of a report, the
//! multi-row inserts, the filters of a read, the bulk reads and the error mapping, is
//! written once here.
//!
//! Every statement is static SQL text from this file or a dialect; every value a caller
//! supplies is bound (`push_bind`/`bind`), never spliced into the text.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use sqlx::migrate::{Migrate, Migrator};
use sqlx::pool::PoolOptions;
use sqlx::{Connection, Database, Encode, Executor, FromRow, IntoArguments, Pool, QueryBuilder, Type};

use super::{
    Appended, BestValue, CountRow, Init, LogQuery, MetricGoal, MetricRow, ObservationStore, ROWS_PER_INSERT,
    ReportKey, SqlRow, StoreError, StoreOptions, SummaryDelta, SummaryRow, TrialCountRow, TrialSet,
    TrialSqlRow, check_times, goal_metrics, group_rows, into_metric_rows, like_prefix, name_chunks,
    pick_best, query_error, redact, summarize,
};
use crate::time::to_sql_text;

const INSERT: &str = "INSERT INTO observation_logs (trial_name, time, metric_name, value) ";
/// A group's keys (see [`SqlStore::write_together`]), followed by `VALUES`: a key already
/// stored fails the statement.
const KEYS: &str = "INSERT INTO report_keys (trial_name, request_hash) ";
const SUMMARY_COLUMNS: &str =
    " (trial_name, metric_name, min_value, min_text, max_value, max_text, latest_time, latest_text) ";
const CHECK: &str = "SELECT trial_name, id, time, metric_name, value FROM observation_logs LIMIT 1";
/// The tables [`ObservationStore::delete`] clears, `observation_logs` first (its count is
/// the answer).
const TRIAL_TABLES: [&str; 3] = ["observation_logs", "report_keys", "metric_summaries"];

/// What one backend's SQL and connection handling look like. Implemented by the three
/// backends only (the trait is not nameable outside this crate).
pub trait Dialect: Send + Sync + 'static {
    /// The sqlx driver.
    type Db: Database;

    /// The backend's name in messages: `SQLite`, `MySQL` or `PostgreSQL`.
    const BACKEND: &'static str;
    /// The short name [`ObservationStore::backend`] answers: `sqlite`, `mysql` or `postgres`.
    const NAME: &'static str;
    /// The store type's name, for `Debug`.
    const TYPE_NAME: &'static str;
    /// The embedded migrations.
    const MIGRATOR: &'static Migrator;
    /// Inserts `(trial_name, request_hash)` (bound in that order) into `report_keys`,
    /// affecting no row when the key is already there.
    const INSERT_KEY: &'static str;
    /// `INSERT INTO metric_summaries` and an optional table alias the conflict clause uses.
    const UPSERT_SUMMARY: &'static str;
    /// The clause after the summary rows' `VALUES` that merges each into the stored row:
    /// keep the smaller min, the larger max, and the later latest (the new one on ties).
    const ON_SUMMARY_CONFLICT: &'static str;
    /// What follows a bound time text so the database takes it as a time (`::timestamp`
    /// on PostgreSQL, nothing elsewhere).
    const TIME_CAST: &'static str;
    /// `observation_logs.time` as UTC text `YYYY-MM-DD HH:MM:SS.ffffff`.
    const TIME_TEXT: &'static str;
    /// `metric_summaries`' `trial_name, metric_name` as text columns of those names.
    const SUMMARY_NAMES: &'static str;

    /// Checks the URL's syntax without connecting.
    fn check_url(url: &str) -> Result<(), StoreError>;

    /// Connects with the pool settings of `settings`: the pool, and the target (file path,
    /// or URL with the password redacted) for messages.
    fn connect(
        url: &str,
        settings: &StoreOptions,
    ) -> impl Future<Output = Result<(Pool<Self::Db>, String), StoreError>> + Send;

    /// Appends the condition "`trial_name` starts with `prefix`" (case-sensitive, able to
    /// use the trial name index) to a bulk read, binding the pattern: by default a `LIKE`.
    fn push_prefix(query: &mut QueryBuilder<Self::Db>, prefix: &str)
    where
        String: for<'a> Encode<'a, Self::Db> + Type<Self::Db>,
    {
        query.push("trial_name LIKE ");
        query.push_bind(like_prefix(prefix));
        query.push(" ESCAPE '!'");
    }

    /// Starts the backend's upkeep that runs beside the writes, if it has any (SQLite's
    /// checkpoints, see [`Checkpoints`]).
    fn start_upkeep(_pool: &Pool<Self::Db>) -> Option<Arc<Checkpoints>> {
        None
    }

    /// How many rows a statement changed.
    fn rows_affected(result: &<Self::Db as Database>::QueryResult) -> u64;

    /// Whether this process lets one write transaction at a time reach the database. SQLite
    /// has one writer: concurrent writers from the pool met `SQLITE_BUSY`, and its busy
    /// handler sleeps 1, 2, 5, 10 ms and more between tries, so reports stalled for
    /// milliseconds while the database sat idle. Waiting in line here costs nothing.
    const SERIALIZE_WRITES: bool = false;
}

/// Katib's `observation_logs` (plus `report_keys` and `metric_summaries`) in a database
/// of dialect `D`, behind a connection pool.
pub struct SqlStore<D: Dialect> {
    pool: Pool<D::Db>,
    target: String,
    /// Held for the whole of a write transaction when [`Dialect::SERIALIZE_WRITES`]; it
    /// keeps the connection report groups are written on (see [`WriterConnection`]).
    writes: Arc<tokio::sync::Mutex<WriterConnection<D>>>,
    /// Reports waiting for the next group transaction (only when serializing writes).
    queued: Arc<std::sync::Mutex<Vec<QueuedReport>>>,
    /// Told of every write turn (SQLite with a pool of several connections).
    checkpoints: Option<Arc<Upkeep>>,
}

/// The stores' hold on the upkeep task: when the last clone of a store goes (closed or
/// not), the task ends and lets go of its pool.
#[derive(Debug)]
struct Upkeep(Arc<Checkpoints>);

impl Drop for Upkeep {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// A SQLite write-ahead log folded back into the database file beside the writes, not in
/// them. SQLite's own automatic checkpoint runs inside the commit that crosses its
/// threshold: that commit copied a thousand pages and waited for two fsyncs while every
/// report behind it waited too (with `katib run` that stalled all trials finishing then).
/// A task of the dialect's ([`Dialect::start_upkeep`]) waits for [`Checkpoints::wrote`],
/// lets writes gather for a moment, and runs a passive checkpoint on a connection of its
/// own, which writers do not wait for.
#[derive(Debug, Default)]
pub struct Checkpoints {
    wake: tokio::sync::Notify,
    closed: std::sync::atomic::AtomicBool,
}

impl Checkpoints {
    /// A write turn was taken: a checkpoint is due soon.
    fn wrote(&self) {
        self.wake.notify_one();
    }

    /// No more checkpoints: the task ends at its next wake-up.
    fn close(&self) {
        self.closed.store(true, std::sync::atomic::Ordering::Release);
        self.wake.notify_one();
    }

    /// Waits until a checkpoint is due (a write turn, then `pause`); false once closed.
    pub(super) async fn due(&self, pause: std::time::Duration) -> bool {
        self.wake.notified().await;
        if !self.is_closed() {
            tokio::time::sleep(pause).await;
        }
        !self.is_closed()
    }

    fn is_closed(&self) -> bool {
        self.closed.load(std::sync::atomic::Ordering::Acquire)
    }
}

/// The connection every report group is written on, kept between groups. SQLite's page
/// cache belongs to a connection, and a write through another connection makes it stale:
/// the pool hands out its idle connections in turn, so each group met a cache the previous
/// group had invalidated and read its pages again. `None` until the first group, after a
/// group failed (a fresh one is taken), and for a pool of one connection, which readers
/// need too.
type WriterConnection<D> = Option<sqlx::pool::PoolConnection<<D as Dialect>::Db>>;

impl<D: Dialect> Clone for SqlStore<D> {
    fn clone(&self) -> Self {
        Self {
            pool: self.pool.clone(),
            target: self.target.clone(),
            writes: self.writes.clone(),
            queued: self.queued.clone(),
            checkpoints: self.checkpoints.clone(),
        }
    }
}

impl<D: Dialect> SqlStore<D> {
    /// Waits for this store's turn to write (see [`Dialect::SERIALIZE_WRITES`]); hold the
    /// guard until the write is committed.
    pub async fn write_turn(&self) -> Option<tokio::sync::MutexGuard<'_, WriterConnection<D>>> {
        if D::SERIALIZE_WRITES {
            let turn = self.writes.lock().await;
            self.wrote();
            Some(turn)
        } else {
            None
        }
    }

    fn wrote(&self) {
        if let Some(upkeep) = &self.checkpoints {
            upkeep.0.wrote();
        }
    }

    /// The upkeep task's state, to watch it end.
    #[cfg(test)]
    pub(super) fn upkeep(&self) -> Option<std::sync::Weak<Checkpoints>> {
        self.checkpoints.as_ref().map(|u| Arc::downgrade(&u.0))
    }
}

impl<D: Dialect> std::fmt::Debug for SqlStore<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct(D::TYPE_NAME)
            .field("pool", &self.pool)
            .field("target", &self.target)
            .finish()
    }
}

impl<D: Dialect> SqlStore<D>
where
    for<'c> &'c mut <D::Db as Database>::Connection: Executor<'c, Database = D::Db>,
    <D::Db as Database>::Arguments: IntoArguments<D::Db>,
    <D::Db as Database>::Connection: Migrate,
{
    /// Connects (creating a SQLite file if missing) and applies the embedded migrations.
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
        D::check_url(url)
    }

    /// Connects with the pool settings of `settings`, without touching the schema.
    pub async fn connect_with(url: &str, settings: &StoreOptions) -> Result<Self, StoreError> {
        let (pool, target) = D::connect(url, settings).await?;
        let checkpoints = D::start_upkeep(&pool).map(|c| Arc::new(Upkeep(c)));
        Ok(Self {
            pool,
            target,
            writes: Arc::default(),
            queued: Arc::default(),
            checkpoints,
        })
    }

    /// Applies the migrations, or only checks the table (see [`Init`]).
    pub async fn init(&self, init: Init) -> Result<(), StoreError> {
        match init {
            Init::Migrate => D::MIGRATOR
                .run(&self.pool)
                .await
                .map_err(|source| StoreError::Migrate {
                    backend: D::BACKEND,
                    target: self.target.clone(),
                    source,
                }),
            Init::CheckOnly => sqlx::query(CHECK)
                .fetch_optional(&self.pool)
                .await
                .map(drop)
                .map_err(|source| StoreError::MissingSchema {
                    backend: D::BACKEND,
                    target: self.target.clone(),
                    source,
                }),
        }
    }

    /// The underlying pool (for tests and tools that need raw SQL).
    pub fn pool(&self) -> &Pool<D::Db> {
        &self.pool
    }
}

/// A pool on a database server (MySQL, PostgreSQL) with the settings of `settings`, and
/// the URL with its password redacted.
pub(super) async fn connect_server<DB: Database>(
    backend: &'static str,
    url: &str,
    options: <DB::Connection as Connection>::Options,
    settings: &StoreOptions,
) -> Result<(Pool<DB>, String), StoreError> {
    let target = redact(url);
    let pool = PoolOptions::<DB>::new()
        .max_connections(settings.max_connections.max(1))
        .acquire_timeout(settings.acquire_timeout)
        .connect_with(options)
        .await
        .map_err(|source| StoreError::Open {
            backend,
            target: target.clone(),
            hint: "check that the server is reachable and the user, password and database exist",
            source,
        })?;
    Ok((pool, target))
}

/// The statements of one bulk read: one per chunk of names, or one for a prefix.
fn trial_chunks(trials: &TrialSet) -> Vec<(Option<Vec<&str>>, &str)> {
    match trials {
        TrialSet::Names(names) => name_chunks(names)
            .into_iter()
            .map(|chunk| (Some(chunk), ""))
            .collect(),
        TrialSet::Prefix(prefix) => vec![(None, prefix.as_str())],
    }
}

/// Appends a bulk read's trial condition: `trial_name IN (...)` or the dialect's prefix match.
fn push_trials<D: Dialect>(query: &mut QueryBuilder<D::Db>, names: Option<&[&str]>, prefix: &str)
where
    for<'a> &'a str: Encode<'a, D::Db> + Type<D::Db>,
    for<'a> String: Encode<'a, D::Db> + Type<D::Db>,
{
    match names {
        Some(names) => {
            query.push("trial_name IN (");
            let mut list = query.separated(", ");
            for name in names {
                list.push_bind(*name);
            }
            query.push(")");
        }
        None => D::push_prefix(query, prefix),
    }
}

/// Appends the multi-row insert of `rows` into `observation_logs` to `query`.
fn push_rows<D: Dialect>(query: &mut QueryBuilder<D::Db>, rows: &[(&str, &MetricRow)])
where
    for<'a> &'a str: Encode<'a, D::Db> + Type<D::Db>,
    for<'a> String: Encode<'a, D::Db> + Type<D::Db>,
{
    query.push(INSERT);
    query.push_values(rows, |mut values, (trial, row)| {
        values
            .push_bind(*trial)
            .push_bind(to_sql_text(row.time))
            .push_unseparated(D::TIME_CAST)
            .push_bind(row.metric_name.as_str())
            .push_bind(row.value.as_str());
    });
}

/// Appends the multi-row upsert of `(trial, delta)` pairs into `metric_summaries` to
/// `query`.
fn push_summaries<D: Dialect>(query: &mut QueryBuilder<D::Db>, deltas: &[(&str, SummaryDelta<'_>)])
where
    for<'a> &'a str: Encode<'a, D::Db> + Type<D::Db>,
    for<'a> String: Encode<'a, D::Db> + Type<D::Db>,
    for<'a> Option<f64>: Encode<'a, D::Db> + Type<D::Db>,
    for<'a> Option<&'a str>: Encode<'a, D::Db> + Type<D::Db>,
{
    query.push(D::UPSERT_SUMMARY);
    query.push(SUMMARY_COLUMNS);
    query.push_values(deltas, |mut values, (trial, delta)| {
        values
            .push_bind(*trial)
            .push_bind(delta.metric)
            .push_bind(delta.min.map(|(n, _)| n))
            .push_bind(delta.min.map(|(_, text)| text))
            .push_bind(delta.max.map(|(n, _)| n))
            .push_bind(delta.max.map(|(_, text)| text))
            .push_bind(to_sql_text(delta.latest.0))
            .push_unseparated(D::TIME_CAST)
            .push_bind(delta.latest.1);
    });
    query.push(D::ON_SUMMARY_CONFLICT);
}

/// Maps a failed `operation` to a [`StoreError`] naming the backend.
fn query<D: Dialect>(operation: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |source| query_error(D::BACKEND, operation, source)
}

/// `SELECT COUNT(*) AS n` of the trial's rows that `get` can return: rows without a time
/// never are (Katib skips them too).
fn count_query<D: Dialect>(trial: &str) -> QueryBuilder<D::Db>
where
    for<'a> &'a str: Encode<'a, D::Db> + Type<D::Db>,
{
    let mut select =
        QueryBuilder::<D::Db>::new("SELECT COUNT(*) AS n FROM observation_logs WHERE trial_name = ");
    select.push_bind(trial);
    select.push(" AND time IS NOT NULL");
    select
}

/// How many times a report yields to the runtime before taking the write turn, so that
/// reports arriving together share a group (see `append_counting`).
const GATHER_TURNS: usize = 4;

/// A report waiting for its group's transaction (see [`Dialect::SERIALIZE_WRITES`]).
struct QueuedReport {
    trial: String,
    logs: Vec<MetricRow>,
    key: Option<ReportKey>,
    /// Whether the caller wants the trial's row count.
    count: bool,
    done: tokio::sync::oneshot::Sender<Result<Counted, StoreError>>,
}

/// What a write answers: how the report went, and the trial's row count if asked for
/// (`None` also when counting failed).
type Counted = (Appended, Option<u64>);

impl<D: Dialect> SqlStore<D>
where
    for<'c> &'c mut <D::Db as Database>::Connection: Executor<'c, Database = D::Db>,
    <D::Db as Database>::Arguments: IntoArguments<D::Db>,
    for<'a> &'a str: Encode<'a, D::Db> + Type<D::Db>,
    for<'a> String: Encode<'a, D::Db> + Type<D::Db>,
    for<'a> Option<f64>: Encode<'a, D::Db> + Type<D::Db>,
    for<'a> Option<&'a str>: Encode<'a, D::Db> + Type<D::Db>,
    for<'r> CountRow: FromRow<'r, <D::Db as Database>::Row>,
    for<'r> TrialCountRow: FromRow<'r, <D::Db as Database>::Row>,
{
    /// One report in a transaction of its own.
    async fn append_alone(
        &self,
        trial: &str,
        logs: &[MetricRow],
        key: Option<&ReportKey>,
        count: bool,
    ) -> Result<Counted, StoreError> {
        let _turn = self.write_turn().await;
        self.write_alone(trial, logs, key, count).await
    }

    /// [`Self::append_alone`] for a caller that already holds the write turn.
    async fn write_alone(
        &self,
        trial: &str,
        logs: &[MetricRow],
        key: Option<&ReportKey>,
        count: bool,
    ) -> Result<Counted, StoreError> {
        let mut tx = self.pool.begin().await.map_err(query::<D>("begin transaction"))?;
        let written = Self::write_report(&mut tx, trial, logs, key).await?;
        let rows = if count {
            Self::count_in(&mut tx, trial).await
        } else {
            None
        };
        if written == Appended::Stored {
            tx.commit().await.map_err(query::<D>("commit"))?;
        }
        Ok((written, rows))
    }

    /// [`ObservationStore::count`].
    async fn count_rows(&self, trial: &str) -> Result<u64, StoreError> {
        let row: CountRow = count_query::<D>(trial)
            .build_query_as()
            .fetch_one(&self.pool)
            .await
            .map_err(query::<D>("count observation_logs"))?;
        Ok(u64::try_from(row.n).unwrap_or(0))
    }

    /// The trial's rows as `count` would answer, inside `tx` (its own writes included),
    /// before the commit: one statement on the transaction's connection instead of a
    /// query of its own after it. `None` (logged) if the statement fails.
    async fn count_in(tx: &mut sqlx::Transaction<'_, D::Db>, trial: &str) -> Option<u64> {
        let counted: Result<CountRow, _> = count_query::<D>(trial)
            .build_query_as()
            .fetch_one(&mut **tx)
            .await;
        match counted {
            Ok(row) => Some(u64::try_from(row.n).unwrap_or(0)),
            Err(e) => {
                tracing::debug!(error = %e, "cannot count the trial's rows; answering without");
                None
            }
        }
    }

    /// [`ObservationStore::append`], and with `count` the trial's row count taken in the
    /// same transaction.
    async fn append_counting(
        &self,
        trial: &str,
        logs: &[MetricRow],
        key: Option<&ReportKey>,
        count: bool,
    ) -> Result<Counted, StoreError> {
        if logs.is_empty() {
            let rows = if count {
                self.count_rows(trial).await.ok()
            } else {
                None
            };
            return Ok((Appended::Stored, rows));
        }
        check_times(logs)?;
        if !D::SERIALIZE_WRITES {
            return self.append_alone(trial, logs, key, count).await;
        }
        // Group commit: the report joins the queue, and whoever gets the write turn first
        // writes everything queued in one transaction. SQLite commits one transaction at a
        // time, and every statement is a trip to the connection's thread: reports that
        // arrived together waited in line for each other's trips. A group costs the same
        // few statements whatever its size (`write_together`).
        let (done, mut result) = tokio::sync::oneshot::channel();
        self.queued
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(QueuedReport {
                trial: trial.to_owned(),
                logs: logs.to_vec(),
                key: key.copied(),
                count,
                done,
            });
        // A few turns of the runtime before taking the write turn: reports that arrive a
        // moment apart (parallel trials ending together, their RPCs still being decoded)
        // join this group instead of each waiting for the previous group's commit. Every
        // commit writes its changed pages to the log whatever the group's size, so fewer,
        // larger groups cost less; on 500 one-line trials this took 4-5% off the run.
        // (A timer, even of 200 µs, waits a whole millisecond tick and was slower.)
        for _ in 0..GATHER_TURNS {
            tokio::task::yield_now().await;
        }
        let turn = self.writes.clone().lock_owned().await;
        if let Ok(written) = result.try_recv() {
            return written;
        }
        self.wrote();
        let group = std::mem::take(&mut *self.queued.lock().unwrap_or_else(|e| e.into_inner()));
        let store = self.clone();
        // On its own task: a caller that goes away (a cancelled RPC) must not cut a group
        // that carries other callers' reports.
        let _ = tokio::spawn(async move {
            let mut turn = turn;
            store.write_group(group, &mut turn).await;
        })
        .await;
        // Only if that task panicked; the caller may send the report again (its key makes
        // a second copy harmless).
        result.await.unwrap_or_else(|_| {
            Err(StoreError::Query {
                backend: D::NAME,
                operation: "write a group of reports",
                source: sqlx::Error::WorkerCrashed,
            })
        })
    }

    /// Writes `group` in one transaction and answers each report. If that transaction
    /// fails, each report is written again alone, so one bad report fails only itself.
    /// The caller holds the write turn, and with it `writer`.
    async fn write_group(&self, group: Vec<QueuedReport>, writer: &mut WriterConnection<D>) {
        let together = async {
            let conn = match writer {
                Some(conn) => conn,
                None => writer.insert(
                    self.pool
                        .acquire()
                        .await
                        .map_err(query::<D>("acquire a connection"))?,
                ),
            };
            if let Some(written) = Self::write_together(conn, &group).await? {
                return Ok(written);
            }
            // A key was already stored: some report is a retry. Report by report, each
            // finds out for itself whether it is the one.
            let mut tx = conn.begin().await.map_err(query::<D>("begin transaction"))?;
            let written = Self::write_one_by_one(&mut tx, &group).await?;
            tx.commit().await.map_err(query::<D>("commit"))?;
            Ok::<_, StoreError>(written)
        };
        let result = together.await;
        if result.is_err() || self.pool.options().get_max_connections() <= 1 {
            *writer = None;
        }
        match result {
            Ok(written) => {
                for (r, w) in group.into_iter().zip(written) {
                    let _ = r.done.send(Ok(w));
                }
            }
            Err(e) => {
                if group.len() > 1 {
                    tracing::debug!(reports = group.len(), error = %e, "a group of reports failed; writing each alone");
                }
                for r in group {
                    let alone = self.write_alone(&r.trial, &r.logs, r.key.as_ref(), r.count).await;
                    let _ = r.done.send(alone);
                }
            }
        }
    }

    /// `group` in a transaction of its own on `conn`, as one query: one trip to SQLite's
    /// connection thread for `BEGIN IMMEDIATE`, every key, then every row, then every
    /// summary (each in multi-row statements), one count of the trials that asked, and
    /// `COMMIT`. Report by report it took four statements each, and every statement is a
    /// trip to that thread while the next group waits; with sqlx's `begin` and `commit`
    /// around the query a group was still three trips.
    ///
    /// Several statements with bound values in one query is what SQLite's driver runs
    /// (each statement takes its own values, in order); only SQLite writes groups
    /// ([`Dialect::SERIALIZE_WRITES`]). `None` when a key was already stored (a retry in the
    /// group): the query stops there and is rolled back; use [`Self::write_one_by_one`].
    /// On any failure the transaction is rolled back before returning, and if even that
    /// fails the connection is closed instead of going back to the pool mid-transaction.
    async fn write_together(
        conn: &mut sqlx::pool::PoolConnection<D::Db>,
        group: &[QueuedReport],
    ) -> Result<Option<Vec<Counted>>, StoreError> {
        debug_assert!(D::SERIALIZE_WRITES, "only SQLite writes report groups");
        let keys: Vec<(&str, String)> = group
            .iter()
            .filter_map(|r| Some((r.trial.as_str(), r.key?.hex())))
            .collect();
        let rows: Vec<(&str, &MetricRow)> = group
            .iter()
            .flat_map(|r| r.logs.iter().map(move |row| (r.trial.as_str(), row)))
            .collect();
        // One delta per trial and metric over the group's rows in the order reported: the
        // same summary as the reports' deltas merged one after another.
        let mut by_trial: BTreeMap<&str, Vec<&MetricRow>> = BTreeMap::new();
        for (trial, row) in &rows {
            by_trial.entry(trial).or_default().push(row);
        }
        let deltas: Vec<_> = by_trial
            .into_iter()
            .flat_map(|(trial, rows)| summarize(rows).into_iter().map(move |delta| (trial, delta)))
            .collect();
        // Counted after every report of the group is written, so each count includes the
        // rows of its trial's other reports in the group too.
        let counted: std::collections::BTreeSet<&str> = group
            .iter()
            .filter(|r| r.count)
            .map(|r| r.trial.as_str())
            .collect();
        let counted: Vec<&str> = counted.into_iter().collect();

        // IMMEDIATE: the write lock is taken (or waited for, by the busy timeout) at the
        // start, never half-way through.
        let mut query = QueryBuilder::<D::Db>::new("BEGIN IMMEDIATE");
        // Without `ON CONFLICT`: a key already stored fails the query before any row.
        for chunk in keys.chunks(ROWS_PER_INSERT) {
            query.push("; ");
            query.push(KEYS);
            query.push_values(chunk, |mut values, (trial, hash)| {
                values.push_bind(*trial).push_bind(hash.as_str());
            });
        }
        for chunk in rows.chunks(ROWS_PER_INSERT) {
            query.push("; ");
            push_rows::<D>(&mut query, chunk);
        }
        for chunk in deltas.chunks(ROWS_PER_INSERT) {
            query.push("; ");
            push_summaries::<D>(&mut query, chunk);
        }
        for chunk in counted.chunks(ROWS_PER_INSERT) {
            query.push("; ");
            query.push("SELECT trial_name, COUNT(*) AS n FROM observation_logs WHERE ");
            push_trials::<D>(&mut query, Some(chunk), "");
            query.push(" AND time IS NOT NULL GROUP BY trial_name");
        }
        query.push("; COMMIT");
        let found = match query
            .build_query_as::<TrialCountRow>()
            .fetch_all(&mut **conn)
            .await
        {
            Ok(found) => found,
            Err(e) => {
                let duplicate = matches!(&e, sqlx::Error::Database(db) if db.is_unique_violation());
                // Nothing to undo when BEGIN itself failed: "no transaction is active"
                // is the answer then, and harmless.
                if let Err(rollback) = sqlx::query("ROLLBACK").execute(&mut **conn).await
                    && !rollback.to_string().contains("no transaction is active")
                {
                    tracing::warn!(error = %rollback, "cannot roll back a failed group; closing its connection");
                    conn.close_on_drop();
                    return Err(query_error(D::BACKEND, "roll back a group of reports", rollback));
                }
                if duplicate {
                    return Ok(None);
                }
                return Err(query_error(D::BACKEND, "write a group of reports", e));
            }
        };
        let counts: BTreeMap<String, u64> = found
            .into_iter()
            .map(|c| (c.trial_name, u64::try_from(c.n).unwrap_or(0)))
            .collect();
        Ok(Some(
            group
                .iter()
                .map(|r| {
                    let n = r.count.then(|| counts.get(&r.trial).copied().unwrap_or(0));
                    (Appended::Stored, n)
                })
                .collect(),
        ))
    }

    /// `group` in `tx`, report after report (see [`Self::write_together`]).
    async fn write_one_by_one(
        tx: &mut sqlx::Transaction<'_, D::Db>,
        group: &[QueuedReport],
    ) -> Result<Vec<Counted>, StoreError> {
        let mut written = Vec::with_capacity(group.len());
        for r in group {
            written.push(Self::write_report(tx, &r.trial, &r.logs, r.key.as_ref()).await?);
        }
        // Counted after every report of the group is written, so each count includes
        // the rows of its trial's other reports in the group too.
        let mut answers = Vec::with_capacity(group.len());
        for (r, w) in group.iter().zip(written) {
            let rows = if r.count {
                Self::count_in(tx, &r.trial).await
            } else {
                None
            };
            answers.push((w, rows));
        }
        Ok(answers)
    }

    /// One multi-row `INSERT` of `(trial, row)` pairs into `observation_logs`.
    async fn insert_rows(
        tx: &mut sqlx::Transaction<'_, D::Db>,
        rows: &[(&str, &MetricRow)],
    ) -> Result<(), StoreError> {
        let mut insert = QueryBuilder::<D::Db>::new("");
        push_rows::<D>(&mut insert, rows);
        Self::execute(tx, insert, "insert into observation_logs").await
    }

    /// One multi-row upsert of `(trial, delta)` pairs into `metric_summaries` (at most one
    /// per trial and metric: PostgreSQL refuses a statement that updates a row twice).
    async fn upsert_summaries(
        tx: &mut sqlx::Transaction<'_, D::Db>,
        deltas: &[(&str, SummaryDelta<'_>)],
    ) -> Result<(), StoreError> {
        let mut upsert = QueryBuilder::<D::Db>::new("");
        push_summaries::<D>(&mut upsert, deltas);
        Self::execute(tx, upsert, "upsert into metric_summaries").await
    }

    /// Runs `statement` inside `tx`; a failure names `operation`.
    async fn execute(
        tx: &mut sqlx::Transaction<'_, D::Db>,
        mut statement: QueryBuilder<D::Db>,
        operation: &'static str,
    ) -> Result<(), StoreError> {
        statement
            .build()
            .execute(&mut **tx)
            .await
            .map(drop)
            .map_err(query::<D>(operation))
    }

    /// The statements of one report inside `tx`: its key (nothing else is written when the
    /// key is already there), its rows and its summary updates.
    async fn write_report(
        tx: &mut sqlx::Transaction<'_, D::Db>,
        trial: &str,
        logs: &[MetricRow],
        key: Option<&ReportKey>,
    ) -> Result<Appended, StoreError> {
        if let Some(key) = key {
            let inserted = sqlx::query(D::INSERT_KEY)
                .bind(trial)
                .bind(key.hex())
                .execute(&mut **tx)
                .await
                .map_err(query::<D>("insert into report_keys"))?;
            if D::rows_affected(&inserted) == 0 {
                return Ok(Appended::Duplicate);
            }
        }
        let rows: Vec<(&str, &MetricRow)> = logs.iter().map(|row| (trial, row)).collect();
        for chunk in rows.chunks(ROWS_PER_INSERT) {
            Self::insert_rows(tx, chunk).await?;
        }
        let deltas: Vec<_> = summarize(logs).into_iter().map(|delta| (trial, delta)).collect();
        for chunk in deltas.chunks(ROWS_PER_INSERT) {
            Self::upsert_summaries(tx, chunk).await?;
        }
        Ok(Appended::Stored)
    }
}

#[tonic::async_trait]
impl<D: Dialect> ObservationStore for SqlStore<D>
where
    for<'c> &'c mut <D::Db as Database>::Connection: Executor<'c, Database = D::Db>,
    <D::Db as Database>::Arguments: IntoArguments<D::Db>,
    for<'a> &'a str: Encode<'a, D::Db> + Type<D::Db>,
    for<'a> String: Encode<'a, D::Db> + Type<D::Db>,
    for<'a> Option<f64>: Encode<'a, D::Db> + Type<D::Db>,
    for<'a> Option<&'a str>: Encode<'a, D::Db> + Type<D::Db>,
    for<'r> SqlRow: FromRow<'r, <D::Db as Database>::Row>,
    for<'r> CountRow: FromRow<'r, <D::Db as Database>::Row>,
    for<'r> TrialCountRow: FromRow<'r, <D::Db as Database>::Row>,
    for<'r> TrialSqlRow: FromRow<'r, <D::Db as Database>::Row>,
    for<'r> SummaryRow: FromRow<'r, <D::Db as Database>::Row>,
{
    fn backend(&self) -> &'static str {
        D::NAME
    }

    async fn append(
        &self,
        trial: &str,
        logs: &[MetricRow],
        key: Option<&ReportKey>,
    ) -> Result<Appended, StoreError> {
        self.append_counting(trial, logs, key, false)
            .await
            .map(|(appended, _)| appended)
    }

    async fn append_and_count(
        &self,
        trial: &str,
        logs: &[MetricRow],
        key: Option<&ReportKey>,
    ) -> Result<(Appended, Option<u64>), StoreError> {
        self.append_counting(trial, logs, key, true).await
    }

    async fn get(&self, q: &LogQuery) -> Result<Vec<MetricRow>, StoreError> {
        // Only the filters a query sets are added (each value bound): an `(? IS NULL OR ...)`
        // form would let one prepared statement serve all cases, but keeps the planner from
        // using the (trial_name, time) index for ranges and order (10x slower on MariaDB).
        let mut select = QueryBuilder::<D::Db>::new("SELECT ");
        select.push(D::TIME_TEXT);
        select.push(" AS time_text, metric_name, value FROM observation_logs WHERE trial_name = ");
        select.push_bind(q.trial.as_str());
        if let Some(metric) = &q.metric {
            select.push(" AND metric_name = ").push_bind(metric.as_str());
        }
        if let Some(start) = q.start {
            select.push(" AND time >= ").push_bind(to_sql_text(start));
            select.push(D::TIME_CAST);
        }
        if let Some(end) = q.end {
            select.push(" AND time <= ").push_bind(to_sql_text(end));
            select.push(D::TIME_CAST);
        }
        select.push(" ORDER BY time, id");
        let rows: Vec<SqlRow> = select
            .build_query_as()
            .fetch_all(&self.pool)
            .await
            .map_err(query::<D>("select from observation_logs"))?;
        Ok(into_metric_rows(D::BACKEND, rows))
    }

    async fn count(&self, trial: &str) -> Result<u64, StoreError> {
        self.count_rows(trial).await
    }

    async fn get_trials(
        &self,
        trials: &TrialSet,
        metric: Option<&str>,
    ) -> Result<BTreeMap<String, Vec<MetricRow>>, StoreError> {
        let mut rows = Vec::new();
        for (names, prefix) in trial_chunks(trials) {
            let mut select = QueryBuilder::<D::Db>::new("SELECT trial_name, ");
            select.push(D::TIME_TEXT);
            select.push(" AS time_text, metric_name, value FROM observation_logs WHERE ");
            push_trials::<D>(&mut select, names.as_deref(), prefix);
            if let Some(metric) = metric {
                select.push(" AND metric_name = ").push_bind(metric);
            }
            select.push(" ORDER BY trial_name, time, id");
            let chunk: Vec<TrialSqlRow> = select
                .build_query_as()
                .fetch_all(&self.pool)
                .await
                .map_err(query::<D>("select trials from observation_logs"))?;
            rows.extend(chunk);
        }
        Ok(group_rows(D::BACKEND, rows))
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
            let mut select = QueryBuilder::<D::Db>::new("SELECT ");
            select.push(D::SUMMARY_NAMES);
            select.push(", min_text, max_text, latest_text FROM metric_summaries WHERE ");
            push_trials::<D>(&mut select, names.as_deref(), prefix);
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
                .map_err(query::<D>("select from metric_summaries"))?;
            rows.extend(chunk);
        }
        Ok(pick_best(rows, goals))
    }

    async fn delete(&self, trial: &str) -> Result<u64, StoreError> {
        let _turn = self.write_turn().await;
        let mut tx = self.pool.begin().await.map_err(query::<D>("begin transaction"))?;
        let mut deleted = 0;
        for (i, table) in TRIAL_TABLES.into_iter().enumerate() {
            let mut statement = QueryBuilder::<D::Db>::new("DELETE FROM ");
            statement
                .push(table)
                .push(" WHERE trial_name = ")
                .push_bind(trial);
            let done = statement
                .build()
                .execute(&mut *tx)
                .await
                .map_err(query::<D>("delete a trial's observations"))?;
            if i == 0 {
                deleted = D::rows_affected(&done);
            }
        }
        tx.commit().await.map_err(query::<D>("commit"))?;
        Ok(deleted)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map(drop)
            .map_err(query::<D>("ping"))
    }

    async fn close(&self) {
        // The pool's close waits for every connection to come back, the writer's too.
        if let Some(upkeep) = &self.checkpoints {
            upkeep.0.close();
        }
        self.writes.lock().await.take();
        self.pool.close().await;
    }
}

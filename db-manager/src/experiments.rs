//! katib-rs's experiment store: the local runtime's Experiments and Trials, kept next to
//! Katib's `observation_logs` so the web UI reads a whole page in one query.
//!
//! On Kubernetes these objects live in etcd as custom resources; locally there is no API
//! server, so the runner's snapshots are written here (`katib_experiments`,
//! `katib_trials`, migration `0005`). The store is agnostic about the JSON it keeps: the
//! writer (the UI crate's recorder) decides what goes into `summary` (the small document
//! the experiment list reads) and `row` (the small per-trial document the experiment page
//! reads); `body` is the whole object in Katib's JSON shape, read one at a time.
//!
//! Implemented for SQLite (the embedded default), MySQL/MariaDB and PostgreSQL with the
//! same code (one set of statements per backend); the conformance checks are
//! [`crate::testsuite::experiment_store`] (run on all three).

use sqlx::Row as _;

use crate::store::{MySqlStore, PgStore, SqliteStore, StoreError, query_error};

/// One experiment as written by the recorder.
#[derive(Debug, Clone, PartialEq)]
pub struct ExperimentRecord {
    pub namespace: String,
    pub name: String,
    /// The last condition type (`Created`, `Running`, `Succeeded`, ...).
    pub status: String,
    /// Small JSON document for the list view (counts, best value, ...).
    pub summary: String,
    /// The whole Experiment as JSON (Katib's shape).
    pub body: String,
    /// Directory of the local run (trial logs), when known.
    pub run_dir: Option<String>,
    /// RFC 3339 creation time.
    pub created: String,
    /// RFC 3339 time of the last write.
    pub updated: String,
}

/// One experiment in the list view (no body).
#[derive(Debug, Clone, PartialEq)]
pub struct ExperimentListing {
    pub namespace: String,
    pub name: String,
    pub status: String,
    pub summary: String,
    pub created: String,
    pub updated: String,
}

/// One trial as written by the recorder.
#[derive(Debug, Clone, PartialEq)]
pub struct TrialRecord {
    pub name: String,
    /// Creation order within the experiment (0, 1, 2, ...).
    pub seq: i64,
    /// The last condition type.
    pub status: String,
    /// The objective value, when the trial has a numeric one.
    pub objective: Option<f64>,
    /// Small JSON document for the experiment page (assignments, metrics, times).
    pub row: String,
    /// The whole Trial as JSON (Katib's shape).
    pub body: String,
    /// RFC 3339 time of the last write.
    pub updated: String,
}

/// Reads and writes the local runtime's experiments and trials.
#[tonic::async_trait]
pub trait ExperimentStore: Send + Sync {
    /// Inserts or replaces an experiment (its `created` is kept from the first write).
    async fn put_experiment(&self, record: &ExperimentRecord) -> Result<(), StoreError>;

    /// Inserts or replaces trials of one experiment, in one transaction.
    async fn put_trials(
        &self,
        namespace: &str,
        experiment: &str,
        trials: &[TrialRecord],
    ) -> Result<(), StoreError>;

    /// Every experiment (of `namespace` when given), newest first.
    async fn list_experiments(&self, namespace: Option<&str>) -> Result<Vec<ExperimentListing>, StoreError>;

    /// One experiment with its body.
    async fn get_experiment(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<ExperimentRecord>, StoreError>;

    /// The `(name, row)` documents of an experiment's trials in creation order: one query.
    async fn trial_rows(
        &self,
        namespace: &str,
        experiment: &str,
    ) -> Result<Vec<(String, String)>, StoreError>;

    /// `(name, status)` of an experiment's latest `limit` trials, oldest first (no row
    /// documents read).
    async fn recent_trials(
        &self,
        namespace: &str,
        experiment: &str,
        limit: i64,
    ) -> Result<Vec<(String, String)>, StoreError>;

    /// One trial's body.
    async fn get_trial(
        &self,
        namespace: &str,
        experiment: &str,
        name: &str,
    ) -> Result<Option<String>, StoreError>;

    /// Deletes an experiment and its trials; returns the deleted trials' names (so the
    /// caller can delete their observation logs), or None when there was no experiment.
    async fn delete_experiment(&self, namespace: &str, name: &str)
    -> Result<Option<Vec<String>>, StoreError>;

    /// `(namespace, name, updated)` of experiments written after `since` (RFC 3339 text
    /// comparison), for change polling across processes.
    async fn changed_since(&self, since: &str) -> Result<Vec<(String, String, String)>, StoreError>;

    /// Closes the connection pool (the observation store's too, when they share it),
    /// waiting for in-flight queries; on SQLite the last connection folds the WAL back
    /// into the database file. Later calls fail.
    async fn close(&self);
}

/// Opens the experiment store named by `url` (applying the migrations) and returns it with
/// the observation store over the same pool.
pub async fn open_experiment_store(
    url: &str,
) -> Result<
    (
        std::sync::Arc<dyn ExperimentStore>,
        std::sync::Arc<dyn crate::ObservationStore>,
    ),
    StoreError,
> {
    match crate::Backend::of_url(url)? {
        crate::Backend::Sqlite => {
            let store = std::sync::Arc::new(SqliteStore::open(url).await?);
            Ok((store.clone(), store))
        }
        crate::Backend::MySql => {
            let store = std::sync::Arc::new(MySqlStore::open(url).await?);
            Ok((store.clone(), store))
        }
        crate::Backend::Postgres => {
            let store = std::sync::Arc::new(PgStore::open(url).await?);
            Ok((store.clone(), store))
        }
    }
}

/// The statements of one backend. Placeholders are bound in the order they appear.
struct Sql {
    backend: &'static str,
    put_experiment: &'static str,
    /// What follows the rows of the multi-row trial upsert ([`PUT_TRIALS`]).
    put_trials_conflict: &'static str,
    list_all: &'static str,
    list_namespace: &'static str,
    get_experiment: &'static str,
    trial_rows: &'static str,
    recent_trials: &'static str,
    get_trial: &'static str,
    trial_names: &'static str,
    delete_trials: &'static str,
    delete_experiment: &'static str,
    changed_since: &'static str,
}

/// The head of the trial upsert; the rows (`VALUES (...), (...)`) and the backend's
/// conflict clause follow.
const PUT_TRIALS: &str = "INSERT INTO katib_trials (namespace, experiment, name, seq, status, objective, row_json, body, updated) ";

/// Trials per upsert statement and transaction (see `put_trials`): 9 parameters each
/// stays far below every backend's limit (SQLite 32,766; MySQL and PostgreSQL 65,535), and
/// a chunk of snapshots (about 3 KB each) holds SQLite's write turn for about a millisecond.
const TRIALS_PER_STATEMENT: usize = 25;

const SQLITE: Sql = Sql {
    backend: "SQLite",
    put_experiment: "INSERT INTO katib_experiments (namespace, name, status, summary, body, run_dir, created, updated) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?) \
         ON CONFLICT (namespace, name) DO UPDATE SET status = excluded.status, \
         summary = excluded.summary, body = excluded.body, \
         run_dir = COALESCE(excluded.run_dir, katib_experiments.run_dir), updated = excluded.updated",
    put_trials_conflict: " ON CONFLICT (namespace, experiment, name) DO UPDATE SET status = excluded.status, \
         objective = excluded.objective, row_json = excluded.row_json, body = excluded.body, \
         updated = excluded.updated",
    list_all: "SELECT namespace, name, status, summary, created, updated FROM katib_experiments \
         ORDER BY created DESC, namespace, name",
    list_namespace: "SELECT namespace, name, status, summary, created, updated FROM katib_experiments \
         WHERE namespace = ? ORDER BY created DESC, namespace, name",
    get_experiment: "SELECT namespace, name, status, summary, body, run_dir, created, updated \
         FROM katib_experiments WHERE namespace = ? AND name = ?",
    trial_rows: "SELECT name, row_json FROM katib_trials WHERE namespace = ? AND experiment = ? ORDER BY seq",
    recent_trials: "SELECT name, status FROM katib_trials WHERE namespace = ? AND experiment = ? \
         ORDER BY seq DESC LIMIT ?",
    get_trial: "SELECT body FROM katib_trials WHERE namespace = ? AND experiment = ? AND name = ?",
    trial_names: "SELECT name FROM katib_trials WHERE namespace = ? AND experiment = ?",
    delete_trials: "DELETE FROM katib_trials WHERE namespace = ? AND experiment = ?",
    delete_experiment: "DELETE FROM katib_experiments WHERE namespace = ? AND name = ?",
    changed_since: "SELECT namespace, name, updated FROM katib_experiments WHERE updated > ? ORDER BY updated",
};

// MySQL keeps names as VARBINARY (exact bytes, like observation_logs); they are read
// back as utf8mb4 text.
const MYSQL: Sql = Sql {
    backend: "MySQL",
    put_experiment: "INSERT INTO katib_experiments (namespace, name, status, summary, body, run_dir, created, updated) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?) \
         ON DUPLICATE KEY UPDATE status = VALUES(status), summary = VALUES(summary), body = VALUES(body), \
         run_dir = COALESCE(VALUES(run_dir), run_dir), updated = VALUES(updated)",
    put_trials_conflict: " ON DUPLICATE KEY UPDATE status = VALUES(status), objective = VALUES(objective), \
         row_json = VALUES(row_json), body = VALUES(body), updated = VALUES(updated)",
    list_all: "SELECT CAST(namespace AS CHAR CHARACTER SET utf8mb4), CAST(name AS CHAR CHARACTER SET utf8mb4), \
         status, summary, created, updated FROM katib_experiments ORDER BY created DESC, namespace, name",
    list_namespace: "SELECT CAST(namespace AS CHAR CHARACTER SET utf8mb4), CAST(name AS CHAR CHARACTER SET utf8mb4), \
         status, summary, created, updated FROM katib_experiments WHERE namespace = ? \
         ORDER BY created DESC, namespace, name",
    get_experiment: "SELECT CAST(namespace AS CHAR CHARACTER SET utf8mb4), CAST(name AS CHAR CHARACTER SET utf8mb4), \
         status, summary, body, run_dir, created, updated FROM katib_experiments WHERE namespace = ? AND name = ?",
    trial_rows: "SELECT CAST(name AS CHAR CHARACTER SET utf8mb4), row_json FROM katib_trials \
         WHERE namespace = ? AND experiment = ? ORDER BY seq",
    recent_trials: "SELECT CAST(name AS CHAR CHARACTER SET utf8mb4), status FROM katib_trials \
         WHERE namespace = ? AND experiment = ? ORDER BY seq DESC LIMIT ?",
    get_trial: "SELECT body FROM katib_trials WHERE namespace = ? AND experiment = ? AND name = ?",
    trial_names: "SELECT CAST(name AS CHAR CHARACTER SET utf8mb4) FROM katib_trials WHERE namespace = ? AND experiment = ?",
    delete_trials: "DELETE FROM katib_trials WHERE namespace = ? AND experiment = ?",
    delete_experiment: "DELETE FROM katib_experiments WHERE namespace = ? AND name = ?",
    changed_since: "SELECT CAST(namespace AS CHAR CHARACTER SET utf8mb4), CAST(name AS CHAR CHARACTER SET utf8mb4), \
         updated FROM katib_experiments WHERE updated > ? ORDER BY updated",
};

const POSTGRES: Sql = Sql {
    backend: "PostgreSQL",
    put_experiment: "INSERT INTO katib_experiments (namespace, name, status, summary, body, run_dir, created, updated) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
         ON CONFLICT (namespace, name) DO UPDATE SET status = excluded.status, \
         summary = excluded.summary, body = excluded.body, \
         run_dir = COALESCE(excluded.run_dir, katib_experiments.run_dir), updated = excluded.updated",
    put_trials_conflict: " ON CONFLICT (namespace, experiment, name) DO UPDATE SET status = excluded.status, \
         objective = excluded.objective, row_json = excluded.row_json, body = excluded.body, \
         updated = excluded.updated",
    list_all: "SELECT namespace, name, status, summary, created, updated FROM katib_experiments \
         ORDER BY created DESC, namespace, name",
    list_namespace: "SELECT namespace, name, status, summary, created, updated FROM katib_experiments \
         WHERE namespace = $1 ORDER BY created DESC, namespace, name",
    get_experiment: "SELECT namespace, name, status, summary, body, run_dir, created, updated \
         FROM katib_experiments WHERE namespace = $1 AND name = $2",
    trial_rows: "SELECT name, row_json FROM katib_trials WHERE namespace = $1 AND experiment = $2 ORDER BY seq",
    recent_trials: "SELECT name, status FROM katib_trials WHERE namespace = $1 AND experiment = $2 \
         ORDER BY seq DESC LIMIT $3",
    get_trial: "SELECT body FROM katib_trials WHERE namespace = $1 AND experiment = $2 AND name = $3",
    trial_names: "SELECT name FROM katib_trials WHERE namespace = $1 AND experiment = $2",
    delete_trials: "DELETE FROM katib_trials WHERE namespace = $1 AND experiment = $2",
    delete_experiment: "DELETE FROM katib_experiments WHERE namespace = $1 AND name = $2",
    changed_since: "SELECT namespace, name, updated FROM katib_experiments WHERE updated > $1 ORDER BY updated",
};

/// One implementation for the three backends (the pools' types differ, the code does not).
macro_rules! experiment_store {
    ($store:ty, $sql:expr) => {
        #[tonic::async_trait]
        impl ExperimentStore for $store {
            async fn put_experiment(&self, r: &ExperimentRecord) -> Result<(), StoreError> {
                const SQL: Sql = $sql;
                let _turn = self.write_turn().await;
                sqlx::query(SQL.put_experiment)
                    .bind(&r.namespace)
                    .bind(&r.name)
                    .bind(&r.status)
                    .bind(&r.summary)
                    .bind(&r.body)
                    .bind(&r.run_dir)
                    .bind(&r.created)
                    .bind(&r.updated)
                    .execute(self.pool())
                    .await
                    .map_err(|e| query_error(SQL.backend, "upsert into katib_experiments", e))?;
                Ok(())
            }

            async fn put_trials(
                &self,
                namespace: &str,
                experiment: &str,
                trials: &[TrialRecord],
            ) -> Result<(), StoreError> {
                const SQL: Sql = $sql;
                if trials.is_empty() {
                    return Ok(());
                }
                let err = |e| query_error(SQL.backend, "upsert into katib_trials", e);
                // Many rows per statement (one statement per trial was a round trip to the
                // driver each), and a transaction and write turn per chunk: a flush of a
                // few hundred snapshots is a megabyte of JSON, and written in one turn it
                // held every trial's metrics report behind it for 15-30 ms. Each row is a
                // whole snapshot, so a flush seen half done shows some trials a little
                // older, never a broken one.
                for chunk in trials.chunks(TRIALS_PER_STATEMENT) {
                    let _turn = self.write_turn().await;
                    let mut tx = self.pool().begin().await.map_err(err)?;
                    let mut query = sqlx::QueryBuilder::new(PUT_TRIALS);
                    query.push_values(chunk, |mut row, t| {
                        row.push_bind(namespace)
                            .push_bind(experiment)
                            .push_bind(&t.name)
                            .push_bind(t.seq)
                            .push_bind(&t.status)
                            .push_bind(t.objective.filter(|v| v.is_finite()))
                            .push_bind(&t.row)
                            .push_bind(&t.body)
                            .push_bind(&t.updated);
                    });
                    query.push(SQL.put_trials_conflict);
                    query.build().execute(&mut *tx).await.map_err(err)?;
                    tx.commit().await.map_err(err)?;
                }
                Ok(())
            }

            async fn list_experiments(
                &self,
                namespace: Option<&str>,
            ) -> Result<Vec<ExperimentListing>, StoreError> {
                const SQL: Sql = $sql;
                let query = match namespace {
                    Some(ns) => sqlx::query(SQL.list_namespace).bind(ns.to_string()),
                    None => sqlx::query(SQL.list_all),
                };
                let rows = query
                    .fetch_all(self.pool())
                    .await
                    .map_err(|e| query_error(SQL.backend, "select from katib_experiments", e))?;
                rows.iter()
                    .map(|r| {
                        Ok(ExperimentListing {
                            namespace: r.try_get(0)?,
                            name: r.try_get(1)?,
                            status: r.try_get(2)?,
                            summary: r.try_get(3)?,
                            created: r.try_get(4)?,
                            updated: r.try_get(5)?,
                        })
                    })
                    .collect::<Result<_, sqlx::Error>>()
                    .map_err(|e| query_error(SQL.backend, "read katib_experiments", e))
            }

            async fn get_experiment(
                &self,
                namespace: &str,
                name: &str,
            ) -> Result<Option<ExperimentRecord>, StoreError> {
                const SQL: Sql = $sql;
                let row = sqlx::query(SQL.get_experiment)
                    .bind(namespace)
                    .bind(name)
                    .fetch_optional(self.pool())
                    .await
                    .map_err(|e| query_error(SQL.backend, "select from katib_experiments", e))?;
                row.map(|r| {
                    Ok(ExperimentRecord {
                        namespace: r.try_get(0)?,
                        name: r.try_get(1)?,
                        status: r.try_get(2)?,
                        summary: r.try_get(3)?,
                        body: r.try_get(4)?,
                        run_dir: r.try_get(5)?,
                        created: r.try_get(6)?,
                        updated: r.try_get(7)?,
                    })
                })
                .transpose()
                .map_err(|e: sqlx::Error| query_error(SQL.backend, "read katib_experiments", e))
            }

            async fn trial_rows(
                &self,
                namespace: &str,
                experiment: &str,
            ) -> Result<Vec<(String, String)>, StoreError> {
                const SQL: Sql = $sql;
                sqlx::query_as::<_, (String, String)>(SQL.trial_rows)
                    .bind(namespace)
                    .bind(experiment)
                    .fetch_all(self.pool())
                    .await
                    .map_err(|e| query_error(SQL.backend, "select from katib_trials", e))
            }

            async fn recent_trials(
                &self,
                namespace: &str,
                experiment: &str,
                limit: i64,
            ) -> Result<Vec<(String, String)>, StoreError> {
                const SQL: Sql = $sql;
                let mut rows = sqlx::query_as::<_, (String, String)>(SQL.recent_trials)
                    .bind(namespace)
                    .bind(experiment)
                    .bind(limit)
                    .fetch_all(self.pool())
                    .await
                    .map_err(|e| query_error(SQL.backend, "select from katib_trials", e))?;
                rows.reverse();
                Ok(rows)
            }

            async fn get_trial(
                &self,
                namespace: &str,
                experiment: &str,
                name: &str,
            ) -> Result<Option<String>, StoreError> {
                const SQL: Sql = $sql;
                sqlx::query_scalar::<_, String>(SQL.get_trial)
                    .bind(namespace)
                    .bind(experiment)
                    .bind(name)
                    .fetch_optional(self.pool())
                    .await
                    .map_err(|e| query_error(SQL.backend, "select from katib_trials", e))
            }

            async fn delete_experiment(
                &self,
                namespace: &str,
                name: &str,
            ) -> Result<Option<Vec<String>>, StoreError> {
                const SQL: Sql = $sql;
                let err = |e| query_error(SQL.backend, "delete from katib_experiments", e);
                let _turn = self.write_turn().await;
                let mut tx = self.pool().begin().await.map_err(err)?;
                let names: Vec<String> = sqlx::query_scalar(SQL.trial_names)
                    .bind(namespace)
                    .bind(name)
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(err)?;
                sqlx::query(SQL.delete_trials)
                    .bind(namespace)
                    .bind(name)
                    .execute(&mut *tx)
                    .await
                    .map_err(err)?;
                let gone = sqlx::query(SQL.delete_experiment)
                    .bind(namespace)
                    .bind(name)
                    .execute(&mut *tx)
                    .await
                    .map_err(err)?
                    .rows_affected();
                tx.commit().await.map_err(err)?;
                Ok((gone > 0).then_some(names))
            }

            async fn close(&self) {
                crate::ObservationStore::close(self).await
            }

            async fn changed_since(&self, since: &str) -> Result<Vec<(String, String, String)>, StoreError> {
                const SQL: Sql = $sql;
                sqlx::query_as::<_, (String, String, String)>(SQL.changed_since)
                    .bind(since)
                    .fetch_all(self.pool())
                    .await
                    .map_err(|e| query_error(SQL.backend, "select from katib_experiments", e))
            }
        }
    };
}

experiment_store!(SqliteStore, SQLITE);
experiment_store!(MySqlStore, MYSQL);
experiment_store!(PgStore, POSTGRES);

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn conformance_on_sqlite() {
        let store = SqliteStore::open("sqlite::memory:").await.unwrap();
        crate::testsuite::experiment_store(&store).await;
    }
}

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
//! Implemented for SQLite (the embedded default). The tables are created on MySQL and
//! PostgreSQL too, so a later implementation needs no new migration.

use sqlx::Row as _;

use crate::store::{SqliteStore, StoreError, query_error};

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
}

const BACKEND: &str = "SQLite";

/// Why [`open_experiment_store`] failed.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// Opening the database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The backend has the tables but no implementation yet.
    #[error(
        "the experiment store (katib run's experiments and trials, read by katib ui) is implemented \
         for SQLite only; pass --db sqlite://<path>"
    )]
    Unsupported,
}

/// Opens the experiment store named by `url` (applying the migrations) and returns it with
/// the observation store over the same pool. SQLite only, for now.
pub async fn open_experiment_store(
    url: &str,
) -> Result<
    (
        std::sync::Arc<dyn ExperimentStore>,
        std::sync::Arc<dyn crate::ObservationStore>,
    ),
    OpenError,
> {
    match crate::Backend::of_url(url)? {
        crate::Backend::Sqlite => {
            let store = std::sync::Arc::new(SqliteStore::open(url).await?);
            Ok((store.clone(), store))
        }
        _ => Err(OpenError::Unsupported),
    }
}

#[tonic::async_trait]
impl ExperimentStore for SqliteStore {
    async fn put_experiment(&self, r: &ExperimentRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO katib_experiments (namespace, name, status, summary, body, run_dir, created, updated) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) \
             ON CONFLICT (namespace, name) DO UPDATE SET status = excluded.status, \
             summary = excluded.summary, body = excluded.body, \
             run_dir = COALESCE(excluded.run_dir, run_dir), updated = excluded.updated",
        )
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
        .map_err(|e| query_error(BACKEND, "upsert into katib_experiments", e))?;
        Ok(())
    }

    async fn put_trials(
        &self,
        namespace: &str,
        experiment: &str,
        trials: &[TrialRecord],
    ) -> Result<(), StoreError> {
        if trials.is_empty() {
            return Ok(());
        }
        let err = |e| query_error(BACKEND, "upsert into katib_trials", e);
        let mut tx = self.pool().begin().await.map_err(err)?;
        for t in trials {
            sqlx::query(
                "INSERT INTO katib_trials (namespace, experiment, name, seq, status, objective, row_json, body, updated) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) \
                 ON CONFLICT (namespace, experiment, name) DO UPDATE SET status = excluded.status, \
                 objective = excluded.objective, row_json = excluded.row_json, body = excluded.body, \
                 updated = excluded.updated",
            )
            .bind(namespace)
            .bind(experiment)
            .bind(&t.name)
            .bind(t.seq)
            .bind(&t.status)
            .bind(t.objective.filter(|v| v.is_finite()))
            .bind(&t.row)
            .bind(&t.body)
            .bind(&t.updated)
            .execute(&mut *tx)
            .await
            .map_err(err)?;
        }
        tx.commit().await.map_err(err)
    }

    async fn list_experiments(&self, namespace: Option<&str>) -> Result<Vec<ExperimentListing>, StoreError> {
        let rows = sqlx::query(
            "SELECT namespace, name, status, summary, created, updated FROM katib_experiments \
             WHERE ?1 IS NULL OR namespace = ?1 ORDER BY created DESC, namespace, name",
        )
        .bind(namespace)
        .fetch_all(self.pool())
        .await
        .map_err(|e| query_error(BACKEND, "select from katib_experiments", e))?;
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
            .map_err(|e| query_error(BACKEND, "read katib_experiments", e))
    }

    async fn get_experiment(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<ExperimentRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT namespace, name, status, summary, body, run_dir, created, updated \
             FROM katib_experiments WHERE namespace = ?1 AND name = ?2",
        )
        .bind(namespace)
        .bind(name)
        .fetch_optional(self.pool())
        .await
        .map_err(|e| query_error(BACKEND, "select from katib_experiments", e))?;
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
        .map_err(|e: sqlx::Error| query_error(BACKEND, "read katib_experiments", e))
    }

    async fn trial_rows(
        &self,
        namespace: &str,
        experiment: &str,
    ) -> Result<Vec<(String, String)>, StoreError> {
        sqlx::query_as::<_, (String, String)>(
            "SELECT name, row_json FROM katib_trials WHERE namespace = ?1 AND experiment = ?2 ORDER BY seq",
        )
        .bind(namespace)
        .bind(experiment)
        .fetch_all(self.pool())
        .await
        .map_err(|e| query_error(BACKEND, "select from katib_trials", e))
    }

    async fn get_trial(
        &self,
        namespace: &str,
        experiment: &str,
        name: &str,
    ) -> Result<Option<String>, StoreError> {
        sqlx::query_scalar::<_, String>(
            "SELECT body FROM katib_trials WHERE namespace = ?1 AND experiment = ?2 AND name = ?3",
        )
        .bind(namespace)
        .bind(experiment)
        .bind(name)
        .fetch_optional(self.pool())
        .await
        .map_err(|e| query_error(BACKEND, "select from katib_trials", e))
    }

    async fn delete_experiment(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<Vec<String>>, StoreError> {
        let err = |e| query_error(BACKEND, "delete from katib_experiments", e);
        let mut tx = self.pool().begin().await.map_err(err)?;
        let names: Vec<String> =
            sqlx::query_scalar("SELECT name FROM katib_trials WHERE namespace = ?1 AND experiment = ?2")
                .bind(namespace)
                .bind(name)
                .fetch_all(&mut *tx)
                .await
                .map_err(err)?;
        sqlx::query("DELETE FROM katib_trials WHERE namespace = ?1 AND experiment = ?2")
            .bind(namespace)
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(err)?;
        let gone = sqlx::query("DELETE FROM katib_experiments WHERE namespace = ?1 AND name = ?2")
            .bind(namespace)
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(err)?
            .rows_affected();
        tx.commit().await.map_err(err)?;
        Ok((gone > 0).then_some(names))
    }

    async fn changed_since(&self, since: &str) -> Result<Vec<(String, String, String)>, StoreError> {
        sqlx::query_as::<_, (String, String, String)>(
            "SELECT namespace, name, updated FROM katib_experiments WHERE updated > ?1 ORDER BY updated",
        )
        .bind(since)
        .fetch_all(self.pool())
        .await
        .map_err(|e| query_error(BACKEND, "select from katib_experiments", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exp(ns: &str, name: &str, created: &str) -> ExperimentRecord {
        ExperimentRecord {
            namespace: ns.into(),
            name: name.into(),
            status: "Running".into(),
            summary: "{}".into(),
            body: format!("{{\"metadata\":{{\"name\":\"{name}\"}}}}"),
            run_dir: Some("/tmp/run".into()),
            created: created.into(),
            updated: created.into(),
        }
    }

    fn trial(name: &str, seq: i64, objective: Option<f64>) -> TrialRecord {
        TrialRecord {
            name: name.into(),
            seq,
            status: "Succeeded".into(),
            objective,
            row: format!("{{\"n\":\"{name}\"}}"),
            body: "{}".into(),
            updated: "2026-01-01T00:00:00Z".into(),
        }
    }

    #[tokio::test]
    async fn round_trip_list_detail_delete() {
        let store = SqliteStore::open("sqlite::memory:").await.unwrap();
        store
            .put_experiment(&exp("default", "a", "2026-01-01T00:00:00Z"))
            .await
            .unwrap();
        store
            .put_experiment(&exp("other", "b", "2026-01-02T00:00:00Z"))
            .await
            .unwrap();
        // An update keeps `created` and a known run_dir.
        let mut again = exp("default", "a", "2026-03-01T00:00:00Z");
        again.status = "Succeeded".into();
        again.run_dir = None;
        store.put_experiment(&again).await.unwrap();
        let all = store.list_experiments(None).await.unwrap();
        assert_eq!(
            all.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(),
            ["b", "a"]
        );
        let a = store.get_experiment("default", "a").await.unwrap().unwrap();
        assert_eq!(a.created, "2026-01-01T00:00:00Z");
        assert_eq!(a.status, "Succeeded");
        assert_eq!(a.run_dir.as_deref(), Some("/tmp/run"));
        assert_eq!(store.list_experiments(Some("other")).await.unwrap().len(), 1);

        store
            .put_trials(
                "default",
                "a",
                &[trial("a-2", 1, Some(0.5)), trial("a-1", 0, Some(f64::NAN))],
            )
            .await
            .unwrap();
        store
            .put_trials("default", "a", &[trial("a-2", 1, Some(0.7))])
            .await
            .unwrap();
        let rows = store.trial_rows("default", "a").await.unwrap();
        assert_eq!(
            rows.iter().map(|r| r.0.as_str()).collect::<Vec<_>>(),
            ["a-1", "a-2"]
        );
        assert!(store.get_trial("default", "a", "a-1").await.unwrap().is_some());
        assert!(store.get_trial("default", "b", "a-1").await.unwrap().is_none());
        assert_eq!(
            store.changed_since("2026-01-01T12:00:00Z").await.unwrap().len(),
            2
        );

        let mut gone = store.delete_experiment("default", "a").await.unwrap().unwrap();
        gone.sort();
        assert_eq!(gone, ["a-1", "a-2"]);
        assert!(store.delete_experiment("default", "a").await.unwrap().is_none());
        assert!(store.trial_rows("default", "a").await.unwrap().is_empty());
    }
}

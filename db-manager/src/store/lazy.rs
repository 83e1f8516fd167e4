//! [`LazyStore`]: a store that connects in the background, so db-manager can serve (and
//! answer health `NOT_SERVING`) while its database is still unreachable.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::OnceCell;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::{
    Appended, Backend, BestValue, LogQuery, MetricGoal, MetricRow, ObservationStore, ReportKey, StoreError,
    StoreOptions, TrialSet, open_store_opts, redact,
};

/// First wait between connection attempts; doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(250);

/// Longest wait between connection attempts (Katib retries every 5 s).
pub const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// A store whose database is opened (connected and migrated) by a background task that
/// retries with capped exponential backoff until it succeeds. Until then every call
/// fails with [`StoreError::NotConnected`] (UNAVAILABLE on the wire) and `ping` fails, so
/// health says NOT_SERVING. Once open, calls go straight to the inner store, whose pool
/// reconnects by itself when the database restarts.
pub struct LazyStore {
    backend: Backend,
    target: String,
    inner: Arc<OnceCell<Arc<dyn ObservationStore>>>,
    connector: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for LazyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LazyStore")
            .field("backend", &self.backend)
            .field("target", &self.target)
            .field("connected", &self.inner.initialized())
            .finish()
    }
}

impl LazyStore {
    /// Starts opening `url` in the background. Fails at once only for what retrying
    /// cannot fix (an unsupported or malformed URL). After `patience` without success
    /// each further failure is logged as an error instead of a warning (Katib exits at
    /// that point; we keep trying). Must be called inside a Tokio runtime.
    pub fn connect(url: &str, options: StoreOptions, patience: Duration) -> Result<Self, StoreError> {
        let backend = Backend::of_url(url)?;
        backend.check_url(url)?;
        let target = redact(url);
        let inner = Arc::new(OnceCell::new());
        let task = connect_until_open(
            url.to_owned(),
            options,
            patience,
            target.clone(),
            Arc::clone(&inner),
        );
        Ok(Self {
            backend,
            target,
            inner,
            connector: Some(tokio::spawn(task)),
        })
    }

    /// A store that is already open.
    pub fn ready(store: Arc<dyn ObservationStore>) -> Self {
        let backend = match store.backend() {
            "mysql" => Backend::MySql,
            "postgres" => Backend::Postgres,
            _ => Backend::Sqlite,
        };
        Self {
            backend,
            target: String::new(),
            inner: Arc::new(OnceCell::new_with(Some(store))),
            connector: None,
        }
    }

    /// True once the database has been opened.
    pub fn is_connected(&self) -> bool {
        self.inner.initialized()
    }

    /// Waits until the database has been opened.
    pub async fn connected(&self) -> Arc<dyn ObservationStore> {
        loop {
            if let Some(store) = self.inner.get() {
                return Arc::clone(store);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn store(&self) -> Result<&Arc<dyn ObservationStore>, StoreError> {
        self.inner.get().ok_or_else(|| StoreError::NotConnected {
            backend: match self.backend {
                Backend::Sqlite => "SQLite",
                Backend::MySql => "MySQL",
                Backend::Postgres => "PostgreSQL",
            },
            target: self.target.clone(),
        })
    }
}

impl Drop for LazyStore {
    fn drop(&mut self) {
        if let Some(task) = &self.connector {
            task.abort();
        }
    }
}

async fn connect_until_open(
    url: String,
    options: StoreOptions,
    patience: Duration,
    target: String,
    cell: Arc<OnceCell<Arc<dyn ObservationStore>>>,
) {
    let started = Instant::now();
    let mut backoff = FIRST_BACKOFF;
    let mut attempt = 0_u32;
    loop {
        attempt += 1;
        match open_store_opts(&url, &options).await {
            Ok(store) => {
                tracing::info!(db = %target, attempt, "database open; SERVING");
                // Only this task sets the cell.
                let _ = cell.set(store);
                return;
            }
            Err(err) => {
                let error = crate::error_chain(&err);
                if started.elapsed() < patience {
                    tracing::warn!(db = %target, attempt, %error, retry_in = ?backoff,
                        "cannot open the database yet; retrying (health NOT_SERVING)");
                } else {
                    tracing::error!(db = %target, attempt, %error, retry_in = ?backoff,
                        waited = ?started.elapsed(),
                        "database still unreachable after --connect-timeout; still retrying");
                }
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

#[tonic::async_trait]
impl ObservationStore for LazyStore {
    fn backend(&self) -> &'static str {
        self.backend.name()
    }

    async fn append(
        &self,
        trial: &str,
        logs: &[MetricRow],
        key: Option<&ReportKey>,
    ) -> Result<Appended, StoreError> {
        self.store()?.append(trial, logs, key).await
    }

    async fn get(&self, query: &LogQuery) -> Result<Vec<MetricRow>, StoreError> {
        self.store()?.get(query).await
    }

    async fn count(&self, trial: &str) -> Result<u64, StoreError> {
        self.store()?.count(trial).await
    }

    async fn append_and_count(
        &self,
        trial: &str,
        logs: &[MetricRow],
        key: Option<&ReportKey>,
    ) -> Result<(Appended, Option<u64>), StoreError> {
        self.store()?.append_and_count(trial, logs, key).await
    }

    async fn get_trials(
        &self,
        trials: &TrialSet,
        metric: Option<&str>,
    ) -> Result<BTreeMap<String, Vec<MetricRow>>, StoreError> {
        self.store()?.get_trials(trials, metric).await
    }

    async fn best_values(
        &self,
        trials: &TrialSet,
        goals: &[MetricGoal],
    ) -> Result<Vec<BestValue>, StoreError> {
        self.store()?.best_values(trials, goals).await
    }

    async fn delete(&self, trial: &str) -> Result<u64, StoreError> {
        self.store()?.delete(trial).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.store()?.ping().await
    }

    async fn close(&self) {
        if let Some(task) = &self.connector {
            task.abort();
        }
        if let Some(store) = self.inner.get() {
            store.close().await;
        }
    }
}

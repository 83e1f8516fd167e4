//! katib-operator: the Kubernetes runtime of katib-rs.
//!
//! - [`crds`]: the Experiment, Trial and Suggestion CRDs (`katib crds`).
//! - [`experiment`]: the Experiment reconciler. It drives the shared experiment core
//!   ([`katib_controller::core::decide`]) with the Experiment and its Trials as read from
//!   the API server, asks the long-lived Suggestion service for assignments, creates
//!   Trials, and keeps the Suggestion object's counts (never its history).
//! - [`trial`]: the Trial reconciler: renders and creates the job, judges it with the
//!   template's success/failure condition ([`gjson`]), reads observations from db-manager,
//!   deletes observation logs in a finalizer.
//! - [`leader`]: leader election on a `coordination.k8s.io` Lease.
//! - [`metrics`]: Prometheus metrics and health probes.
//! - [`mirror`]: Experiments and Trials written to the experiment store `katib ui` reads
//!   (`--experiment-store`).
//!
//! Like every katib-rs service, the entry point is [`run`] with clap [`Args`].

pub mod crds;
pub mod error;
pub mod experiment;
pub mod gjson;
pub mod inject;
pub mod leader;
pub mod metrics;
pub mod mirror;
pub mod trial;
pub mod util;
pub mod webhook;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt as _;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind};
use kube::runtime::controller::{Config as ControllerConfig, Controller};
use kube::runtime::watcher;
use tonic::transport::{Channel, Endpoint};
use tracing::{info, warn};

pub use error::Error;

/// Flags of `katib controller`; each has an environment variable twin.
#[derive(Clone, Debug, clap::Args)]
pub struct Args {
    /// The Suggestion gRPC service (host:port) serving every algorithm: one long-lived
    /// Deployment, not one per Experiment.
    #[arg(
        long,
        env = "KATIB_SUGGESTION_ENDPOINT",
        default_value = "katib-suggestion.kubeflow:6789"
    )]
    pub suggestion_endpoint: String,
    /// Per-algorithm endpoint `NAME=HOST:PORT` (repeatable; comma-separated in the env var),
    /// e.g. an external service for an algorithm katib-rs does not ship.
    #[arg(long = "suggestion-endpoint-override", env = "KATIB_SUGGESTION_ENDPOINT_OVERRIDES", value_delimiter = ',', value_parser = parse_override)]
    pub suggestion_overrides: Vec<(String, String)>,
    /// The EarlyStopping gRPC service (host:port); the Suggestion endpoint when unset
    /// (`katib suggestion` serves both).
    #[arg(long, env = "KATIB_EARLY_STOPPING_ENDPOINT")]
    pub early_stopping_endpoint: Option<String>,
    /// db-manager (host:port), for observations and for cleaning a deleted Trial's logs.
    #[arg(
        long,
        env = "KATIB_DB_MANAGER_ADDRESS",
        default_value = "katib-db-manager.kubeflow:6789"
    )]
    pub db_manager_address: String,
    /// Job kinds trials may use, as Katib's `trialResources` (`Kind.version.group`,
    /// `Job.v1.batch`). The controller watches those that are installed.
    #[arg(
        long,
        env = "KATIB_TRIAL_RESOURCES",
        value_delimiter = ',',
        default_value = "Job.v1.batch,TFJob.v1.kubeflow.org,PyTorchJob.v1.kubeflow.org,MPIJob.v1.kubeflow.org,XGBoostJob.v1.kubeflow.org"
    )]
    pub trial_resources: Vec<String>,
    /// Only reconcile objects in this namespace (all namespaces when unset).
    #[arg(long, env = "KATIB_WATCH_NAMESPACE")]
    pub namespace: Option<String>,
    /// Prometheus metrics address.
    #[arg(long, env = "KATIB_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    pub metrics_addr: SocketAddr,
    /// Health probe address (`/healthz`, `/readyz`).
    #[arg(long, env = "KATIB_HEALTHZ_ADDR", default_value = "0.0.0.0:18080")]
    pub healthz_addr: SocketAddr,
    /// Run only while holding the leader Lease (for more than one replica).
    #[arg(long, env = "KATIB_LEADER_ELECT")]
    pub leader_elect: bool,
    /// Name of the leader Lease (Katib's leader election id).
    #[arg(
        long,
        env = "KATIB_LEADER_ELECTION_ID",
        default_value = "3fbc96e9.katib.kubeflow.org"
    )]
    pub leader_election_id: String,
    /// Namespace of the leader Lease.
    #[arg(long, env = "KATIB_CORE_NAMESPACE", default_value = "kubeflow")]
    pub leader_election_namespace: String,
    /// How long a Lease holder that stops renewing keeps it (seconds).
    #[arg(long, env = "KATIB_LEASE_DURATION_SECONDS", default_value_t = 15)]
    pub lease_duration_seconds: u32,
    /// Deadline of one GetSuggestions call (seconds; Katib hard-codes 60, issue #1058).
    #[arg(long, env = "KATIB_SUGGESTION_TIMEOUT_SECONDS", default_value_t = 60)]
    pub suggestion_timeout_seconds: u64,
    /// How long to wait for a succeeded job's metrics before marking the Trial
    /// MetricsUnavailable (seconds; Katib waits forever, issue #1795).
    #[arg(long, env = "KATIB_METRICS_GRACE_SECONDS", default_value_t = 120)]
    pub metrics_grace_seconds: u64,
    /// Reconciles run at once per controller.
    #[arg(long, env = "KATIB_CONCURRENCY", default_value_t = 8)]
    pub concurrency: u16,
    /// Mirror Experiments and Trials into this experiment store (a database URL:
    /// `mysql://...`, `postgres://...`, `sqlite://...`) so `katib ui --db URL` shows them.
    /// No mirroring when unset.
    #[arg(long, env = "KATIB_EXPERIMENT_STORE")]
    pub experiment_store: Option<String>,
    #[command(flatten)]
    pub webhook: webhook::WebhookArgs,
}

fn parse_override(s: &str) -> Result<(String, String), String> {
    let (name, addr) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?} is not NAME=HOST:PORT (e.g. pbt=my-pbt.kubeflow:6789)"))?;
    if name.is_empty() || addr.is_empty() {
        return Err(format!("{s:?} is not NAME=HOST:PORT"));
    }
    Ok((name.to_string(), addr.to_string()))
}

/// Everything a reconcile needs, shared by all of them.
pub struct Context {
    pub client: kube::Client,
    pub args: Args,
    pub metrics: Arc<metrics::Metrics>,
    /// Set with `--experiment-store`.
    pub mirror: Option<Arc<mirror::Mirror>>,
    channels: Mutex<HashMap<String, Channel>>,
    resources: Mutex<HashMap<String, ApiResource>>,
}

impl Context {
    pub fn new(client: kube::Client, args: Args, metrics: Arc<metrics::Metrics>) -> Self {
        Context {
            client,
            args,
            metrics,
            mirror: None,
            channels: Mutex::new(HashMap::new()),
            resources: Mutex::new(HashMap::new()),
        }
    }

    /// A lazily connected gRPC channel to `addr` (one per address, reused).
    pub fn channel(&self, service: &'static str, addr: &str) -> Result<Channel, Error> {
        let mut map = self.channels.lock().map_err(|_| Error::Endpoint {
            service,
            addr: addr.into(),
            message: "channel cache poisoned".into(),
        })?;
        if let Some(c) = map.get(addr) {
            return Ok(c.clone());
        }
        let ep = Endpoint::from_shared(format!("http://{addr}")).map_err(|e| Error::Endpoint {
            service,
            addr: addr.into(),
            message: e.to_string(),
        })?;
        let ch = ep.connect_timeout(Duration::from_secs(5)).connect_lazy();
        map.insert(addr.to_string(), ch.clone());
        Ok(ch)
    }

    /// The Suggestion endpoint for `algorithm`.
    pub fn suggestion_addr(&self, algorithm: &str) -> String {
        self.args
            .suggestion_overrides
            .iter()
            .find(|(n, _)| n == algorithm)
            .map(|(_, a)| a.clone())
            .unwrap_or_else(|| self.args.suggestion_endpoint.clone())
    }

    /// The EarlyStopping endpoint.
    pub fn early_stopping_addr(&self) -> String {
        self.args
            .early_stopping_endpoint
            .clone()
            .unwrap_or_else(|| self.args.suggestion_endpoint.clone())
    }

    /// The API resource of a job kind, found by discovery once and cached.
    pub async fn resource(&self, api_version: &str, kind: &str) -> Result<ApiResource, Error> {
        let key = format!("{kind}.{api_version}");
        if let Some(r) = self.resources.lock().ok().and_then(|m| m.get(&key).cloned()) {
            return Ok(r);
        }
        let (group, version) = match api_version.split_once('/') {
            Some((g, v)) => (g, v),
            None => ("", api_version),
        };
        let gvk = GroupVersionKind::gvk(group, version, kind);
        let (ar, _caps) = kube::discovery::pinned_kind(&self.client, &gvk)
            .await
            .map_err(|e| Error::Discovery {
                gvk: key.clone(),
                message: e.to_string(),
            })?;
        if let Ok(mut m) = self.resources.lock() {
            m.insert(key, ar.clone());
        }
        Ok(ar)
    }

    /// A namespaced API for a Katib kind.
    pub fn katib_api(&self, kind: &crds::KindInfo, namespace: &str) -> Api<DynamicObject> {
        Api::namespaced_with(self.client.clone(), namespace, &kind.api_resource())
    }
}

/// Parses `Kind.version.group` (Katib's trialResources format; `Job.v1.batch`).
pub fn parse_trial_resource(s: &str) -> Option<(String, String)> {
    let mut parts = s.splitn(3, '.');
    let kind = parts.next()?.to_string();
    let version = parts.next()?.to_string();
    let api_version = match parts.next() {
        Some(g) if !g.is_empty() => format!("{g}/{version}"),
        _ => version,
    };
    (!kind.is_empty()).then_some((api_version, kind))
}

/// Runs the controllers until `shutdown` resolves (or leadership is lost).
pub async fn run(
    args: Args,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let client = kube::Client::try_default()
        .await
        .map_err(|e| Error::Config(e.to_string()))?;
    let metrics = Arc::new(metrics::Metrics::default());
    let health = metrics::serve("health probes", args.healthz_addr, metrics.clone()).await?;
    let prom = metrics::serve("metrics", args.metrics_addr, metrics.clone()).await?;
    info!(%health, metrics = %prom, "katib-controller serving probes and metrics");

    // Fail early, with an install hint, when the CRDs are missing.
    let exp_api: Api<DynamicObject> = Api::all_with(client.clone(), &crds::EXPERIMENT.api_resource());
    exp_api
        .list_metadata(&kube::api::ListParams::default().limit(1))
        .await
        .map_err(|e| Error::CrdsMissing(e.to_string()))?;

    // The experiment store (`--experiment-store`) is opened before anything else runs, so
    // a bad URL stops the controller at once.
    let store = match &args.experiment_store {
        Some(url) => Some(
            katib_db_manager::experiments::open_experiment_store(url)
                .await
                .map_err(|e| Error::ExperimentStore {
                    url: url.clone(),
                    message: e.to_string(),
                })?
                .0,
        ),
        None => None,
    };

    // Every replica serves the webhooks (the API server may call any of them).
    let (algorithms, early_stopping) = experiment::known_algorithms(&args);
    webhook::start(
        client.clone(),
        &args.webhook,
        &args.leader_election_namespace,
        &args.db_manager_address,
        algorithms,
        early_stopping,
    )
    .await?;

    let (lost_tx, lost_rx) = tokio::sync::oneshot::channel::<()>();
    if args.leader_elect {
        let lease = leader::Lease::new(
            client.clone(),
            &args.leader_election_namespace,
            &args.leader_election_id,
            Duration::from_secs(args.lease_duration_seconds.max(2) as u64),
        );
        metrics.ready.store(true, std::sync::atomic::Ordering::Relaxed);
        lease.acquire(&metrics).await?;
        tokio::spawn(lease.keep(metrics.clone(), lost_tx));
    } else {
        drop(lost_tx);
    }
    let lost = async move {
        // With leader election off the sender is dropped at once: never resolve.
        if lost_rx.await.is_ok() {
            warn!("lost the leader lease; stopping");
        } else {
            std::future::pending::<()>().await;
        }
    };

    let mut ctx = Context::new(client.clone(), args.clone(), metrics.clone());
    if let Some(store) = store {
        let m = Arc::new(mirror::Mirror::new(store));
        let api: Api<DynamicObject> = match &args.namespace {
            Some(ns) => Api::namespaced_with(client.clone(), ns, &crds::EXPERIMENT.api_resource()),
            None => Api::all_with(client.clone(), &crds::EXPERIMENT.api_resource()),
        };
        tokio::spawn(m.clone().watch_deletions(api));
        info!("mirroring experiments to the experiment store");
        ctx.mirror = Some(m);
    }
    let ctx = Arc::new(ctx);
    let stop = futures::future::select(Box::pin(shutdown), Box::pin(lost));
    let stop = futures::FutureExt::shared(futures::FutureExt::map(stop, |_| ()));

    let wc = watcher::Config::default();
    let api_for = |kind: &crds::KindInfo| -> Api<DynamicObject> {
        match &args.namespace {
            Some(ns) => Api::namespaced_with(client.clone(), ns, &kind.api_resource()),
            None => Api::all_with(client.clone(), &kind.api_resource()),
        }
    };
    let cfg = ControllerConfig::default().concurrency(args.concurrency);

    let experiments = Controller::new_with(
        api_for(&crds::EXPERIMENT),
        wc.clone(),
        crds::EXPERIMENT.api_resource(),
    )
    .owns_with(api_for(&crds::TRIAL), crds::TRIAL.api_resource(), wc.clone())
    .with_config(cfg.clone())
    .graceful_shutdown_on(stop.clone())
    .run(experiment::reconcile, experiment::error_policy, ctx.clone())
    .for_each(|_| async {});

    let mut trials = Controller::new_with(api_for(&crds::TRIAL), wc.clone(), crds::TRIAL.api_resource())
        .with_config(cfg)
        .graceful_shutdown_on(stop.clone());
    for spec in &args.trial_resources {
        let Some((api_version, kind)) = parse_trial_resource(spec) else {
            warn!(resource = %spec, "ignoring a trial resource that is not Kind.version.group");
            continue;
        };
        match ctx.resource(&api_version, &kind).await {
            Ok(ar) => {
                let api: Api<DynamicObject> = match &args.namespace {
                    Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
                    None => Api::all_with(client.clone(), &ar),
                };
                info!(%kind, %api_version, "watching trial jobs");
                trials = trials.owns_with(api, ar, wc.clone());
            }
            // Katib skips kinds whose CRD is not installed; so do we.
            Err(e) => warn!(resource = %spec, error = %e, "trial resource not installed; not watching it"),
        }
    }
    let trials = trials
        .run(trial::reconcile, trial::error_policy, ctx.clone())
        .for_each(|_| async {});

    metrics.ready.store(true, std::sync::atomic::Ordering::Relaxed);
    info!("katib-controller running");
    futures::future::join(experiments, trials).await;
    info!("katib-controller stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trial_resources_parse_like_katib() {
        assert_eq!(
            parse_trial_resource("Job.v1.batch"),
            Some(("batch/v1".into(), "Job".into()))
        );
        assert_eq!(
            parse_trial_resource("TFJob.v1.kubeflow.org"),
            Some(("kubeflow.org/v1".into(), "TFJob".into()))
        );
        assert_eq!(parse_trial_resource("Pod.v1"), Some(("v1".into(), "Pod".into())));
        assert_eq!(parse_trial_resource("Job"), None);
        assert!(parse_override("random=1.2.3.4:6789").is_ok());
        assert!(parse_override("random").is_err());
    }
}

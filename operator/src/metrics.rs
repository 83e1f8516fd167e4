//! Prometheus metrics (Katib's names, labelled by namespace) and the health/metrics HTTP
//! endpoints.
//!
//! Counters are kept in a small map rendered as Prometheus' text format by hand: a dozen
//! counters do not justify another metrics crate in the build.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;

use crate::error::Error;

/// Counters and gauges, keyed by (metric name, label string).
#[derive(Default)]
pub struct Metrics {
    values: Mutex<BTreeMap<(&'static str, String), f64>>,
    /// Set once the controllers run (and, with leader election, once this replica leads or
    /// stands by).
    pub ready: AtomicBool,
}

/// Help text of every metric we export (anything else is not rendered).
const HELP: &[(&str, &str, &str)] = &[
    (
        "katib_experiment_created_total",
        "counter",
        "Experiments seen for the first time",
    ),
    (
        "katib_experiment_succeeded_total",
        "counter",
        "Experiments that succeeded",
    ),
    (
        "katib_experiment_failed_total",
        "counter",
        "Experiments that failed",
    ),
    ("katib_trial_created_total", "counter", "Trials created"),
    ("katib_trial_succeeded_total", "counter", "Trials that succeeded"),
    ("katib_trial_failed_total", "counter", "Trials that failed"),
    (
        "katib_trial_metrics_unavailable_total",
        "counter",
        "Trials without their objective metric",
    ),
    (
        "katib_trial_deleted_total",
        "counter",
        "Trials deleted (observation logs cleaned)",
    ),
    (
        "katib_reconcile_total",
        "counter",
        "Reconciles by controller and result",
    ),
    (
        "katib_leader",
        "gauge",
        "1 while this replica holds the leader lease",
    ),
];

impl Metrics {
    /// Adds `by` to a counter with `labels` (`key="value",...`).
    pub fn inc(&self, name: &'static str, labels: String, by: f64) {
        if let Ok(mut m) = self.values.lock() {
            *m.entry((name, labels)).or_insert(0.0) += by;
        }
    }

    /// Sets a gauge.
    pub fn set(&self, name: &'static str, labels: String, value: f64) {
        if let Ok(mut m) = self.values.lock() {
            m.insert((name, labels), value);
        }
    }

    /// A counter labelled by namespace.
    pub fn ns(&self, name: &'static str, namespace: &str) {
        self.inc(name, format!("namespace=\"{}\"", escape(namespace)), 1.0);
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let values = self.values.lock().map(|m| m.clone()).unwrap_or_default();
        let mut out = String::new();
        for (name, kind, help) in HELP {
            out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
            for ((n, labels), v) in &values {
                if n == name {
                    if labels.is_empty() {
                        out.push_str(&format!("{name} {v}\n"));
                    } else {
                        out.push_str(&format!("{name}{{{labels}}} {v}\n"));
                    }
                }
            }
        }
        out
    }
}

/// Escapes a label value.
pub fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// `/metrics`, `/healthz` and `/readyz`.
pub fn router(metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(|State(m): State<Arc<Metrics>>| async move { m.render() }),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(|State(m): State<Arc<Metrics>>| async move {
                if m.ready.load(Ordering::Relaxed) {
                    (StatusCode::OK, "ok")
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, "starting")
                }
            }),
        )
        .with_state(metrics)
}

/// Binds `addr` and serves the router there until the process ends.
pub async fn serve(what: &'static str, addr: SocketAddr, metrics: Arc<Metrics>) -> Result<SocketAddr, Error> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| Error::Bind { what, addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| Error::Bind { what, addr, source })?;
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router(metrics)).await {
            tracing::error!(error = %e, "{what} server stopped");
        }
    });
    Ok(bound)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_katib_names_with_namespace_labels() {
        let m = Metrics::default();
        m.ns("katib_trial_created_total", "team-a");
        m.ns("katib_trial_created_total", "team-a");
        let text = m.render();
        assert!(
            text.contains("katib_trial_created_total{namespace=\"team-a\"} 2\n"),
            "{text}"
        );
        assert!(text.contains("# TYPE katib_experiment_created_total counter"));
    }
}

//! Leader election on a `coordination.k8s.io/v1` Lease.
//!
//! Simple and conservative: a replica acquires the Lease when nobody holds it or the
//! holder has not renewed it within `leaseDurationSeconds`; it renews every third of the
//! duration; if a renewal fails for longer than the duration (or someone else took the
//! Lease), it stops reconciling (the process exits and Kubernetes restarts it as a standby).
//! Every write carries the Lease's resourceVersion, so two replicas never both win.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease as KLease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use tracing::{debug, info, warn};

use crate::error::Error;
use crate::metrics::Metrics;

/// One replica's view of the leader Lease.
pub struct Lease {
    api: Api<KLease>,
    name: String,
    identity: String,
    duration: Duration,
}

impl Lease {
    pub fn new(client: kube::Client, namespace: &str, name: &str, duration: Duration) -> Self {
        let host = std::env::var("POD_NAME")
            .or_else(|_| std::env::var("HOSTNAME"))
            .unwrap_or_else(|_| "katib-controller".into());
        let identity = format!("{host}_{}", std::process::id());
        Lease {
            api: Api::namespaced(client, namespace),
            name: name.to_string(),
            identity,
            duration,
        }
    }

    /// Waits until this replica holds the Lease.
    pub async fn acquire(&self, metrics: &Metrics) -> Result<(), Error> {
        let mut logged = false;
        loop {
            match self.try_take().await {
                Ok(true) => {
                    info!(lease = %self.name, identity = %self.identity, "acquired the leader lease");
                    metrics.set("katib_leader", String::new(), 1.0);
                    return Ok(());
                }
                Ok(false) => {
                    if !logged {
                        info!(lease = %self.name, "another replica leads; standing by");
                        logged = true;
                    }
                }
                Err(e) => warn!(error = %e, "leader election attempt failed"),
            }
            tokio::time::sleep(self.duration / 3).await;
        }
    }

    /// Renews the Lease until it is lost; then signals `lost`.
    pub async fn keep(self, metrics: Arc<Metrics>, lost: tokio::sync::oneshot::Sender<()>) {
        let mut last_ok = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(self.duration / 3).await;
            match self.try_take().await {
                Ok(true) => last_ok = tokio::time::Instant::now(),
                Ok(false) => {
                    warn!(lease = %self.name, "another replica took the leader lease");
                    break;
                }
                Err(e) => {
                    debug!(error = %e, "lease renewal failed");
                    if last_ok.elapsed() > self.duration {
                        warn!(error = %e, "could not renew the leader lease in time");
                        break;
                    }
                }
            }
        }
        metrics.set("katib_leader", String::new(), 0.0);
        let _ = lost.send(());
    }

    /// Takes or renews the Lease if allowed; Ok(false) when another live holder has it.
    async fn try_take(&self) -> Result<bool, Error> {
        let now = MicroTime(Timestamp::now());
        let kerr = |source| Error::Kube {
            action: "update lease",
            name: self.name.clone(),
            source,
        };
        let secs = self.duration.as_secs().max(1) as i32;
        match self.api.get_opt(&self.name).await.map_err(kerr)? {
            None => {
                let lease = KLease {
                    metadata: ObjectMeta {
                        name: Some(self.name.clone()),
                        ..Default::default()
                    },
                    spec: Some(LeaseSpec {
                        holder_identity: Some(self.identity.clone()),
                        lease_duration_seconds: Some(secs),
                        acquire_time: Some(now.clone()),
                        renew_time: Some(now),
                        lease_transitions: Some(0),
                        ..Default::default()
                    }),
                };
                match self.api.create(&PostParams::default(), &lease).await {
                    Ok(_) => Ok(true),
                    Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                    Err(e) => Err(kerr(e)),
                }
            }
            Some(mut lease) => {
                let spec = lease.spec.get_or_insert_with(Default::default);
                let mine = spec.holder_identity.as_deref() == Some(self.identity.as_str());
                let expired = match (&spec.renew_time, spec.lease_duration_seconds) {
                    (Some(MicroTime(t)), Some(d)) => {
                        Timestamp::now().as_millisecond() - t.as_millisecond() > d as i64 * 1000
                    }
                    _ => true,
                };
                let free = spec.holder_identity.as_deref().unwrap_or_default().is_empty();
                if !mine && !expired && !free {
                    return Ok(false);
                }
                if !mine {
                    spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
                    spec.acquire_time = Some(now.clone());
                    spec.holder_identity = Some(self.identity.clone());
                }
                spec.lease_duration_seconds = Some(secs);
                spec.renew_time = Some(now);
                // replace() sends the resourceVersion we read: a concurrent taker gets 409.
                match self.api.replace(&self.name, &PostParams::default(), &lease).await {
                    Ok(_) => Ok(true),
                    Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                    Err(e) => Err(kerr(e)),
                }
            }
        }
    }
}

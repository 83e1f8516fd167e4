//! The operator's error type. Every variant names what failed and on which object; the
//! reconcilers' error policies turn them into a requeue with backoff, never a crash.

/// What went wrong in a reconcile or at start-up.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot {action} {name}: {source}")]
    Kube {
        action: &'static str,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("{name}: the object does not match Katib's v1beta1 schema: {message}")]
    Decode { name: String, message: String },
    #[error("the {service} service at {addr} is unavailable: {message}")]
    Unavailable {
        service: &'static str,
        addr: String,
        message: String,
    },
    #[error("invalid endpoint {addr:?} for the {service} service: {message}")]
    Endpoint {
        service: &'static str,
        addr: String,
        message: String,
    },
    #[error("trial {trial}: {message}")]
    Trial { trial: String, message: String },
    #[error("cannot discover the API resource for {gvk}: {message}")]
    Discovery { gvk: String, message: String },
    #[error("cannot load the Kubernetes client configuration: {0}")]
    Config(String),
    #[error("the Katib CRDs are not installed ({0}); install them with `katib crds | kubectl apply -f -`")]
    CrdsMissing(String),
    #[error("cannot serve {what} on {addr}: {source}")]
    Bind {
        what: &'static str,
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("leader election: {0}")]
    Leader(String),
    #[error("admission webhooks: {0}")]
    Webhook(String),
    #[error("--experiment-store {url}: cannot open the experiment store: {message}")]
    ExperimentStore { url: String, message: String },
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
}

impl Error {
    /// A short, bounded label for metrics.
    pub fn category(&self) -> &'static str {
        match self {
            Error::Kube { .. } => "kube",
            Error::Decode { .. } => "decode",
            Error::Unavailable { .. } => "unavailable",
            Error::Endpoint { .. } => "endpoint",
            Error::Trial { .. } => "trial",
            Error::Discovery { .. } => "discovery",
            Error::Config(_) => "config",
            Error::CrdsMissing(_) => "crds",
            Error::Bind { .. } => "bind",
            Error::Leader(_) => "leader",
            Error::Webhook(_) => "webhook",
            Error::ExperimentStore { .. } => "experiment_store",
            Error::Finalizer(_) => "finalizer",
        }
    }

    /// True for an optimistic-concurrency conflict (409): requeue at once, no backoff.
    pub fn is_conflict(&self) -> bool {
        matches!(self, Error::Kube { source: kube::Error::Api(s), .. } if s.code == 409)
    }
}

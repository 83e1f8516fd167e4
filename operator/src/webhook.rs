//! Admission webhooks: Experiment defaulting (`/mutate-experiment`) and validation
//! (`/validate-experiment`), trial-pod injection (`/mutate-pod`), served over TLS with a
//! certificate the controller generates at start-up (as Katib's cert generator does), and
//! registered by the controller in a Mutating- and ValidatingWebhookConfiguration carrying
//! that CA.
//!
//! Rules are katib-api's ([`katib_api::defaults`], [`katib_api::validate`]); on UPDATE only
//! the budget fields may change (Katib). The pod-mutating webhook (`/mutate-pod`) that
//! injects the metrics-collector sidecar is in [`crate::inject`] and served here too.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhook, MutatingWebhookConfiguration, RuleWithOperations, ServiceReference, ValidatingWebhook,
    ValidatingWebhookConfiguration, WebhookClientConfig,
};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use katib_api::crd::Experiment;
use katib_api::defaults::set_defaults;
use katib_api::validate::{Known, validate_with};
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation};
use serde_json::{Value, json};
use tracing::{info, warn};

use crate::error::Error;

/// Label a namespace needs before Experiments may be created in it (Katib).
pub const INJECTION_LABEL: &str = "katib.kubeflow.org/metrics-collector-injection";

/// Webhook flags (part of [`crate::Args`]).
#[derive(Clone, Debug, clap::Args)]
pub struct WebhookArgs {
    /// Serve the admission webhooks (Experiment defaulting and validation, trial-pod
    /// sidecar injection) over TLS on this address, e.g. 0.0.0.0:8443 (Katib's port). Off
    /// when unset.
    #[arg(long, env = "KATIB_WEBHOOK_ADDR")]
    pub webhook_addr: Option<SocketAddr>,
    /// Base URL the API server calls (`url:` client config), e.g. https://127.0.0.1:8443;
    /// when unset, the Service `--webhook-service-name` in the controller's namespace.
    #[arg(long, env = "KATIB_WEBHOOK_URL")]
    pub webhook_url: Option<String>,
    /// Service in front of the webhook server (Katib's `katib-controller`).
    #[arg(long, env = "KATIB_WEBHOOK_SERVICE_NAME", default_value = "katib-controller")]
    pub webhook_service_name: String,
    /// Name of the webhook configurations the controller writes.
    #[arg(long, env = "KATIB_WEBHOOK_CONFIG_NAME", default_value = "katib.kubeflow.org")]
    pub webhook_config_name: String,
    /// Only call the webhooks for namespaces with this label (`KEY=VALUE`).
    #[arg(long, env = "KATIB_WEBHOOK_NAMESPACE_SELECTOR")]
    pub webhook_namespace_selector: Option<String>,
    /// Image of the metrics-collector sidecar injected into trial pods (StdOut, File): any
    /// image with Katib's file-metrics-collector flags (`-t -m -o-type -s-db -path ...`).
    #[arg(
        long,
        env = "KATIB_METRICS_COLLECTOR_IMAGE",
        default_value = "ghcr.io/kubeflow/katib/file-metrics-collector:v0.19.0"
    )]
    pub metrics_collector_image: String,
    /// Image of the TensorFlowEvent collector sidecar.
    #[arg(
        long,
        env = "KATIB_TFEVENT_COLLECTOR_IMAGE",
        default_value = "ghcr.io/kubeflow/katib/tfevent-metrics-collector:v0.19.0"
    )]
    pub tfevent_collector_image: String,
}

/// State of the webhook handlers.
pub struct Hooks {
    pub(crate) client: kube::Client,
    algorithms: Vec<String>,
    early_stopping: Vec<String>,
    pub(crate) args: WebhookArgs,
    pub(crate) db_manager: String,
}

/// Generates the certificate, starts the TLS server and registers the configurations.
/// Returns the bound address.
pub async fn start(
    client: kube::Client,
    args: &WebhookArgs,
    namespace: &str,
    db_manager: &str,
    algorithms: Vec<String>,
    early_stopping: Vec<String>,
) -> Result<Option<SocketAddr>, Error> {
    let Some(addr) = args.webhook_addr else {
        return Ok(None);
    };
    let service_host = format!("{}.{namespace}.svc", args.webhook_service_name);
    let mut names = vec![
        args.webhook_service_name.clone(),
        format!("{}.{namespace}", args.webhook_service_name),
        service_host.clone(),
        format!("{service_host}.cluster.local"),
        "localhost".into(),
        "127.0.0.1".into(),
    ];
    if let Some(host) = args
        .webhook_url
        .as_deref()
        .and_then(|u| u.split("://").nth(1))
        .and_then(|rest| rest.split(['/', ':']).next())
        .filter(|h| !h.is_empty())
    {
        names.push(host.to_string());
    }
    let (ca_pem, cert_der, key_der) =
        certificates(names).map_err(|e| Error::Webhook(format!("certificate: {e}")))?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| Error::Bind {
            what: "webhooks",
            addr,
            source,
        })?;
    let bound = listener.local_addr().map_err(|source| Error::Bind {
        what: "webhooks",
        addr,
        source,
    })?;
    let tls = tls_config(cert_der, key_der).map_err(|e| Error::Webhook(format!("TLS: {e}")))?;
    let hooks = Arc::new(Hooks {
        client: client.clone(),
        algorithms,
        early_stopping,
        args: args.clone(),
        db_manager: db_manager.to_string(),
    });
    tokio::spawn(serve(listener, tls, router(hooks)));
    register(&client, args, namespace, ca_pem.as_bytes()).await?;
    info!(%bound, "experiment admission webhooks serving");
    Ok(Some(bound))
}

/// A CA and a serving certificate for `names` (DNS names or IPs); returns the CA's PEM
/// (the webhooks' caBundle) and the serving certificate chain and key as DER.
fn certificates(names: Vec<String>) -> Result<(String, Vec<u8>, Vec<u8>), rcgen::Error> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "katib-controller-ca");
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
    let ca_key = KeyPair::generate()?;
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, ca_key);
    let mut leaf = CertificateParams::new(names)?;
    leaf.distinguished_name
        .push(DnType::CommonName, "katib-controller");
    leaf.use_authority_key_identifier_extension = true;
    leaf.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    leaf.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let leaf_key = KeyPair::generate()?;
    let leaf_cert = leaf.signed_by(&leaf_key, &issuer)?;
    Ok((ca_cert.pem(), leaf_cert.der().to_vec(), leaf_key.serialize_der()))
}

fn tls_config(cert: Vec<u8>, key: Vec<u8>) -> Result<tokio_rustls::TlsAcceptor, rustls::Error> {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(cert)],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key)),
        )?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

async fn serve(listener: tokio::net::TcpListener, tls: tokio_rustls::TlsAcceptor, app: Router) {
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                warn!(error = %e, "webhook accept failed");
                continue;
            }
        };
        let tls = tls.clone();
        let app = app.clone();
        tokio::spawn(async move {
            let stream = match tls.accept(tcp).await {
                Ok(s) => s,
                Err(e) => {
                    warn!(%peer, error = %e, "webhook TLS handshake failed");
                    return;
                }
            };
            let service = TowerToHyperService::new(app);
            if let Err(e) = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                warn!(%peer, error = %e, "webhook connection failed");
            }
        });
    }
}

fn router(hooks: Arc<Hooks>) -> Router {
    Router::new()
        .route("/validate-experiment", post(validate))
        .route("/mutate-experiment", post(mutate))
        .route("/mutate-pod", post(crate::inject::mutate_pod))
        .with_state(hooks)
}

/// Writes (server-side apply) both webhook configurations with our CA.
async fn register(
    client: &kube::Client,
    args: &WebhookArgs,
    namespace: &str,
    ca: &[u8],
) -> Result<(), Error> {
    let client_config = |path: &str| WebhookClientConfig {
        ca_bundle: Some(ByteString(ca.to_vec())),
        url: args
            .webhook_url
            .as_ref()
            .map(|u| format!("{}{path}", u.trim_end_matches('/'))),
        service: args.webhook_url.is_none().then(|| ServiceReference {
            name: args.webhook_service_name.clone(),
            namespace: namespace.to_string(),
            path: Some(path.to_string()),
            port: Some(443),
        }),
    };
    let rules = Some(vec![RuleWithOperations {
        api_groups: Some(vec!["kubeflow.org".into()]),
        api_versions: Some(vec!["v1beta1".into()]),
        operations: Some(vec!["CREATE".into(), "UPDATE".into()]),
        resources: Some(vec!["experiments".into()]),
        scope: Some("Namespaced".into()),
    }]);
    let selector = args.webhook_namespace_selector.as_ref().and_then(|s| {
        let (k, v) = s.split_once('=')?;
        Some(LabelSelector {
            match_labels: Some([(k.to_string(), v.to_string())].into()),
            ..Default::default()
        })
    });
    let meta = ObjectMeta {
        name: Some(args.webhook_config_name.clone()),
        ..Default::default()
    };
    // Trial pods: only in namespaces with Katib's injection label (and the test selector).
    let mut pod_labels: std::collections::BTreeMap<String, String> =
        [(INJECTION_LABEL.to_string(), "enabled".to_string())].into();
    if let Some(sel) = &selector {
        pod_labels.extend(sel.match_labels.clone().unwrap_or_default());
    }
    let mutating = MutatingWebhookConfiguration {
        metadata: meta.clone(),
        webhooks: Some(vec![
            MutatingWebhook {
                name: "defaulter.experiment.katib.kubeflow.org".into(),
                admission_review_versions: vec!["v1".into()],
                client_config: client_config("/mutate-experiment"),
                failure_policy: Some("Fail".into()),
                side_effects: "None".into(),
                rules: rules.clone(),
                namespace_selector: selector.clone(),
                ..Default::default()
            },
            MutatingWebhook {
                name: "mutator.pod.katib.kubeflow.org".into(),
                admission_review_versions: vec!["v1".into()],
                client_config: client_config("/mutate-pod"),
                // A controller outage must not block every pod of a labelled namespace.
                failure_policy: Some("Ignore".into()),
                side_effects: "None".into(),
                rules: Some(vec![RuleWithOperations {
                    api_groups: Some(vec!["".into()]),
                    api_versions: Some(vec!["v1".into()]),
                    operations: Some(vec!["CREATE".into()]),
                    resources: Some(vec!["pods".into()]),
                    scope: Some("Namespaced".into()),
                }]),
                namespace_selector: Some(LabelSelector {
                    match_labels: Some(pod_labels),
                    ..Default::default()
                }),
                ..Default::default()
            },
        ]),
    };
    let validating = ValidatingWebhookConfiguration {
        metadata: meta,
        webhooks: Some(vec![ValidatingWebhook {
            name: "validator.experiment.katib.kubeflow.org".into(),
            admission_review_versions: vec!["v1".into()],
            client_config: client_config("/validate-experiment"),
            failure_policy: Some("Fail".into()),
            side_effects: "None".into(),
            rules,
            namespace_selector: selector,
            ..Default::default()
        }]),
    };
    let pp = PatchParams::apply(crate::util::MANAGER).force();
    let name = args.webhook_config_name.clone();
    let kerr = |source| Error::Kube {
        action: "register webhook",
        name: name.clone(),
        source,
    };
    let mapi: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    let mut m = serde_json::to_value(&mutating).unwrap_or_default();
    m["apiVersion"] = json!("admissionregistration.k8s.io/v1");
    m["kind"] = json!("MutatingWebhookConfiguration");
    mapi.patch(&name, &pp, &Patch::Apply(&m)).await.map_err(kerr)?;
    let vapi: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
    let mut v = serde_json::to_value(&validating).unwrap_or_default();
    v["apiVersion"] = json!("admissionregistration.k8s.io/v1");
    v["kind"] = json!("ValidatingWebhookConfiguration");
    vapi.patch(&name, &pp, &Patch::Apply(&v)).await.map_err(kerr)?;
    Ok(())
}

/// A JSON response (axum's `Json` needs a feature that would rebuild tonic's axum).
pub(crate) struct Json(pub(crate) Value);

impl IntoResponse for Json {
    fn into_response(self) -> Response {
        ([(CONTENT_TYPE, "application/json")], self.0.to_string()).into_response()
    }
}

pub(crate) fn review_request(body: &Bytes) -> Result<AdmissionRequest<DynamicObject>, Json> {
    let invalid = |e: String| {
        warn!(error = %e, "malformed AdmissionReview");
        Json(json!(AdmissionResponse::invalid(e).into_review()))
    };
    let review: AdmissionReview<DynamicObject> =
        serde_json::from_slice(body).map_err(|e| invalid(e.to_string()))?;
    review
        .try_into()
        .map_err(|e: kube::core::admission::ConvertAdmissionReviewError| invalid(e.to_string()))
}

fn experiment_of(obj: &DynamicObject) -> Result<Experiment, String> {
    let v = serde_json::to_value(obj).map_err(|e| e.to_string())?;
    serde_json::from_value(v)
        .map_err(|e| format!("the Experiment does not match Katib's v1beta1 schema: {e}"))
}

async fn mutate(State(_hooks): State<Arc<Hooks>>, body: Bytes) -> Json {
    let req = match review_request(&body) {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    let resp = AdmissionResponse::from(&req);
    let Some(obj) = req.object.as_ref() else {
        return Json(json!(resp.into_review()));
    };
    let resp = match experiment_of(obj) {
        // Leave undecodable objects to the validator, which explains the problem.
        Err(_) => resp,
        Ok(mut exp) => {
            set_defaults(&mut exp);
            let spec = serde_json::to_value(&exp.spec).unwrap_or_default();
            if obj.data.get("spec") == Some(&spec) {
                resp
            } else {
                // One replace of the whole spec: the same object Katib's diff produces.
                let patch: json_patch::Patch =
                    match serde_json::from_value(json!([{"op": "add", "path": "/spec", "value": spec}])) {
                        Ok(p) => p,
                        Err(e) => return Json(json!(AdmissionResponse::from(&req).deny(e).into_review())),
                    };
                match resp.with_patch(patch) {
                    Ok(r) => r,
                    Err(e) => AdmissionResponse::from(&req).deny(e),
                }
            }
        }
    };
    Json(json!(resp.into_review()))
}

async fn validate(State(hooks): State<Arc<Hooks>>, body: Bytes) -> Json {
    let req = match review_request(&body) {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    let resp = AdmissionResponse::from(&req);
    let Some(obj) = req.object.as_ref() else {
        return Json(json!(resp.into_review()));
    };
    let problems = problems(&hooks, &req, obj).await;
    let resp = if problems.is_empty() {
        resp
    } else {
        resp.deny(problems.join("; "))
    };
    Json(json!(resp.into_review()))
}

/// Katib's admission rules; empty when the Experiment is admitted.
async fn problems(hooks: &Hooks, req: &AdmissionRequest<DynamicObject>, obj: &DynamicObject) -> Vec<String> {
    let mut exp = match experiment_of(obj) {
        Ok(e) => e,
        Err(e) => return vec![e],
    };
    let name = exp.metadata.name.clone().unwrap_or_default();
    let namespace = req.namespace.clone().unwrap_or_default();
    if req.operation == Operation::Create {
        let ns: Api<Namespace> = Api::all(hooks.client.clone());
        let labelled = match ns.get_opt(&namespace).await {
            Ok(Some(n)) => n
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(INJECTION_LABEL))
                .is_some_and(|v| v == "enabled"),
            Ok(None) => false,
            Err(e) => return vec![format!("cannot read namespace {namespace:?}: {e}")],
        };
        if !labelled {
            return vec![format!(
                "Cannot create the Experiment {name:?} in namespace {namespace:?}: the namespace lacks label \
                 \"{INJECTION_LABEL}: enabled\""
            )];
        }
    }
    set_defaults(&mut exp);
    let algs: Vec<&str> = hooks.algorithms.iter().map(String::as_str).collect();
    let es: Vec<&str> = hooks.early_stopping.iter().map(String::as_str).collect();
    let mut out: Vec<String> = validate_with(
        &exp,
        &Known {
            algorithms: &algs,
            early_stopping: &es,
        },
    )
    .into_iter()
    .map(|e| format!("{}: {}", e.path, e.problem))
    .collect();
    if req.operation == Operation::Update
        && let Some(old) = req.old_object.as_ref().and_then(|o| experiment_of(o).ok())
    {
        out.extend(update_problems(&old, &exp));
    }
    out
}

/// On UPDATE only the budget may change, and maxTrialCount must exceed the trials so far.
fn update_problems(old: &Experiment, new: &Experiment) -> Vec<String> {
    let mut old_spec = old.spec.clone();
    let mut new_spec = new.spec.clone();
    set_defaults_spec(&mut old_spec);
    set_defaults_spec(&mut new_spec);
    if old_spec == new_spec {
        return Vec::new();
    }
    let mut out = Vec::new();
    let done = old.status.as_ref().is_some_and(|s| {
        katib_api::conditions::is_true(&s.conditions, katib_api::conditions::experiment::SUCCEEDED)
            || katib_api::conditions::is_true(&s.conditions, katib_api::conditions::experiment::FAILED)
    });
    if done {
        // Katib restarts a MaxTrialsReached Experiment with resumePolicy LongRunning or
        // FromVolume; katib-rs's Kubernetes runtime does not restart Experiments yet, so an
        // edit would be silently ignored: refuse it instead.
        return vec![
            "spec.resumePolicy: the Experiment has completed; katib-rs does not restart completed \
             Experiments on Kubernetes yet (Katib allows it for LongRunning/FromVolume after \
             ExperimentMaxTrialsReached): create a new Experiment"
                .into(),
        ];
    }
    let trials = old.status.as_ref().map(|s| s.trials).unwrap_or(0);
    if let Some(max) = new.spec.max_trial_count
        && max <= trials
        && trials > 0
    {
        out.push(format!(
            "spec.maxTrialCount: must be greater than status.trials count ({trials})"
        ));
    }
    for s in [&mut old_spec, &mut new_spec] {
        s.max_trial_count = None;
        s.parallel_trial_count = None;
        s.max_failed_trial_count = None;
    }
    if old_spec != new_spec {
        out.push(
            "spec: Forbidden: only spec.parallelTrialCount, spec.maxTrialCount and spec.maxFailedTrialCount are editable"
                .into(),
        );
    }
    out
}

fn set_defaults_spec(spec: &mut katib_api::crd::ExperimentSpec) {
    let mut e = Experiment {
        api_version: String::new(),
        kind: String::new(),
        metadata: Default::default(),
        spec: std::mem::take(spec),
        status: None,
    };
    set_defaults(&mut e);
    *spec = e.spec;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificates_chain_to_the_ca() {
        let (ca, cert, key) =
            certificates(vec!["katib-controller.kubeflow.svc".into(), "127.0.0.1".into()]).unwrap();
        assert!(ca.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(!cert.is_empty() && !key.is_empty());
        tls_config(cert, key).unwrap();
    }

    #[test]
    fn only_the_budget_is_editable() {
        let mut old = Experiment {
            api_version: String::new(),
            kind: String::new(),
            metadata: Default::default(),
            spec: Default::default(),
            status: Some(katib_api::crd::ExperimentStatus {
                trials: 3,
                ..Default::default()
            }),
        };
        old.spec.max_trial_count = Some(5);
        let mut new = old.clone();
        new.spec.max_trial_count = Some(8);
        assert!(update_problems(&old, &new).is_empty());
        new.spec.max_trial_count = Some(2);
        assert!(update_problems(&old, &new)[0].contains("greater than status.trials"));
        new.spec.max_trial_count = Some(8);
        new.spec.resume_policy = Some("LongRunning".into());
        assert!(update_problems(&old, &new)[0].contains("only spec.parallelTrialCount"));
        new.spec.resume_policy = None;
        old.status
            .as_mut()
            .unwrap()
            .conditions
            .push(katib_api::crd::Condition {
                type_: "Succeeded".into(),
                status: "True".into(),
                ..Default::default()
            });
        assert!(update_problems(&old, &new)[0].contains("has completed"));
    }
}

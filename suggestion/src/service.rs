//! The `api.v1.beta1.Suggestion` gRPC service over a [`Registry`] of algorithms, and the
//! server that hosts it next to `grpc.health.v1`.
//!
//! # Exhaustion contract
//!
//! `GetSuggestions` answers exactly `current_request_number` assignments whenever it can.
//! When the algorithm's finite search space is used up it answers with the `k` assignments it
//! still has, `0 <= k < current_request_number`. The katib-rs controller treats such a short
//! reply as "search space exhausted" and ends the experiment cleanly. (Katib's own controller
//! instead reports "The response contains unexpected trials" and retries; Katib avoids the
//! case only for grid, by refusing `maxTrialCount` above the grid size.) An algorithm that
//! returns fewer without reporting exhaustion is a bug and yields `INTERNAL`.
//!
//! # Errors
//!
//! Invalid experiments, settings or requests give `INVALID_ARGUMENT` with a message naming
//! the parameter or setting; failures of the algorithm itself give `INTERNAL`. The mapping is
//! `impl From<SuggestError> for tonic::Status`. Nothing in a request makes the service panic.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use katib_api::codec::BytesRequestCodec;
use katib_api::pb;
use katib_api::pb::early_stopping_server::EarlyStoppingServer;
use katib_api::pb::suggestion_server::{Suggestion, SuggestionServer};
use tonic::codegen::http;
use tonic::{Request, Response, Status};
use tracing::{Instrument as _, info_span};

use crate::algorithm::{Algorithm, SuggestRequest};
use crate::cmaes::Cmaes;
use crate::earlystopping::EarlyStoppingService;
use crate::error::SuggestError;
use crate::grid::Grid;
use crate::hyperband::Hyperband;
use crate::random::Random;
use crate::sobol::Sobol;
use crate::tpe::Tpe;

/// The health-check service name Katib's suggestion Deployment probes.
pub const KATIB_PROBE_SERVICE: &str = "manager.v1beta1.Suggestion";

/// Default listen address of `katib suggestion` (Katib's suggestion pods use port 6789; 6790
/// keeps it apart from the db-manager's 6789 when everything runs on one machine).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:6790";

/// Algorithms by Katib name.
#[derive(Clone, Default)]
pub struct Registry {
    algorithms: BTreeMap<&'static str, Arc<dyn Algorithm>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("algorithms", &self.names())
            .finish()
    }
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Registry::default()
    }

    /// Every algorithm this crate implements: `random`, `grid`, `bayesianoptimization`, `tpe`,
    /// `multivariate-tpe`, `sobol`, `cmaes`, `hyperband`.
    pub fn builtin() -> Self {
        let mut registry = Registry::new();
        registry.register(Arc::new(Random));
        registry.register(Arc::new(Grid));
        registry.register(Arc::new(crate::bayesopt::BayesianOptimization));
        registry.register(Arc::new(Tpe::independent()));
        registry.register(Arc::new(Tpe::multivariate()));
        registry.register(Arc::new(Sobol));
        registry.register(Arc::new(Cmaes));
        registry.register(Arc::new(Hyperband));
        registry
    }

    /// Adds (or replaces) an algorithm under its [`Algorithm::name`].
    pub fn register(&mut self, algorithm: Arc<dyn Algorithm>) -> &mut Self {
        self.algorithms.insert(algorithm.name(), algorithm);
        self
    }

    /// The algorithm named `name`.
    pub fn get(&self, name: &str) -> Result<Arc<dyn Algorithm>, SuggestError> {
        self.algorithms
            .get(name)
            .cloned()
            .ok_or_else(|| SuggestError::UnknownAlgorithm {
                name: name.to_owned(),
                served: self.names(),
            })
    }

    /// The names served, sorted.
    pub fn names(&self) -> Vec<&'static str> {
        self.algorithms.keys().copied().collect()
    }
}

/// The Suggestion service: dispatches each call to the experiment's algorithm.
#[derive(Debug, Clone)]
pub struct SuggestionService {
    registry: Arc<Registry>,
    history: Arc<crate::wire::HistoryCache>,
}

impl Default for SuggestionService {
    fn default() -> Self {
        SuggestionService::new(Registry::builtin())
    }
}

impl SuggestionService {
    /// A service over these algorithms.
    pub fn new(registry: Registry) -> Self {
        SuggestionService {
            registry: Arc::new(registry),
            history: Arc::new(crate::wire::HistoryCache::new()),
        }
    }

    /// `GetSuggestions` without tonic: converts, runs the algorithm on the blocking pool,
    /// converts back.
    pub async fn suggest(
        &self,
        request: pb::GetSuggestionsRequest,
    ) -> Result<pb::GetSuggestionsReply, SuggestError> {
        self.run(move || SuggestRequest::from_owned(request)).await
    }

    /// [`SuggestionService::suggest`] of a serialized `GetSuggestionsRequest`, decoded by
    /// [`crate::wire`] with this service's [`crate::wire::HistoryCache`] (what the gRPC server
    /// does).
    pub async fn suggest_encoded(&self, request: Bytes) -> Result<pb::GetSuggestionsReply, SuggestError> {
        let cache = Arc::clone(&self.history);
        self.run(move || crate::wire::decode_request(request, Some(&cache)))
            .await
    }

    /// Decodes, looks the algorithm up and runs it, all on the blocking pool (a long history
    /// takes a millisecond or more to decode), then checks the count and builds the reply.
    async fn run(
        &self,
        decode: impl FnOnce() -> Result<SuggestRequest, SuggestError> + Send + 'static,
    ) -> Result<pb::GetSuggestionsReply, SuggestError> {
        let registry = Arc::clone(&self.registry);
        let span = tracing::Span::current();
        let (name, n, suggested) = tokio::task::spawn_blocking(move || {
            span.in_scope(|| {
                let request = decode()?;
                let span = tracing::Span::current();
                span.record("algorithm", request.settings.algorithm());
                span.record("experiment", request.experiment_name.as_str());
                span.record("n", request.n);
                let algorithm = registry.get(request.settings.algorithm())?;
                let suggested = algorithm.suggest(&request)?;
                Ok::<_, SuggestError>((algorithm.name(), request.n, suggested))
            })
        })
        .await
        .map_err(|source| SuggestError::Task { source })??;
        let k = suggested.assignments.len();
        if k > n || (k < n && !suggested.exhausted) {
            return Err(SuggestError::Internal {
                algorithm: name,
                message: format!(
                    "returned {k} assignments for {n} requested{}",
                    if k < n {
                        " without reporting exhaustion"
                    } else {
                        ""
                    }
                ),
            });
        }
        tracing::Span::current().record("returned", k);
        if k < n {
            tracing::info!(
                requested = n,
                returned = k,
                "search space exhausted; answering with fewer assignments"
            );
        }
        Ok(pb::GetSuggestionsReply {
            parameter_assignments: suggested
                .assignments
                .into_iter()
                .map(|assignments| pb::get_suggestions_reply::ParameterAssignments {
                    assignments,
                    trial_name: String::new(),
                    labels: Default::default(),
                })
                .collect(),
            algorithm: (!suggested.algorithm_settings.is_empty()).then(|| pb::AlgorithmSpec {
                algorithm_name: name.to_owned(),
                algorithm_settings: suggested.algorithm_settings,
            }),
            early_stopping_rules: Vec::new(),
        })
    }

    /// `ValidateAlgorithmSettings` without tonic: the search space and the settings.
    pub fn validate(&self, request: &pb::ValidateAlgorithmSettingsRequest) -> Result<(), SuggestError> {
        let experiment = request.experiment.as_ref().ok_or_else(|| {
            SuggestError::InvalidRequest("ValidateAlgorithmSettingsRequest.experiment is missing".into())
        })?;
        if experiment.spec.is_none() {
            return Err(SuggestError::InvalidRequest(
                "ValidateAlgorithmSettingsRequest.experiment.spec is missing".into(),
            ));
        }
        let algorithm = self.registry.get(algorithm_name(Some(experiment)))?;
        algorithm.validate(experiment)?;
        Ok(())
    }
}

fn algorithm_name(experiment: Option<&pb::Experiment>) -> &str {
    experiment
        .and_then(|e| e.spec.as_ref())
        .and_then(|s| s.algorithm.as_ref())
        .map(|a| a.algorithm_name.as_str())
        .unwrap_or_default()
}

/// The span of one call; `algorithm` and `experiment` are filled in once the request is
/// decoded.
fn rpc_span(method: &'static str) -> tracing::Span {
    info_span!(
        "suggestion",
        rpc = method,
        algorithm = tracing::field::Empty,
        experiment = tracing::field::Empty,
        n = tracing::field::Empty,
        returned = tracing::field::Empty,
    )
}

#[tonic::async_trait]
impl Suggestion for SuggestionService {
    /// Reached only through a plain `SuggestionServer`; [`SuggestionGrpc`] (what [`serve`]
    /// hosts) answers `GetSuggestions` from the request's bytes instead.
    async fn get_suggestions(
        &self,
        request: Request<pb::GetSuggestionsRequest>,
    ) -> Result<Response<pb::GetSuggestionsReply>, Status> {
        let request = request.into_inner();
        respond(self.suggest(request))
            .instrument(rpc_span("GetSuggestions"))
            .await
    }

    async fn validate_algorithm_settings(
        &self,
        request: Request<pb::ValidateAlgorithmSettingsRequest>,
    ) -> Result<Response<pb::ValidateAlgorithmSettingsReply>, Status> {
        let request = request.into_inner();
        let span = rpc_span("ValidateAlgorithmSettings");
        if let Some(e) = &request.experiment {
            span.record("algorithm", algorithm_name(Some(e)));
            span.record("experiment", e.name.as_str());
        }
        span.in_scope(|| {
            let result = self.validate(&request);
            if let Err(err) = &result {
                tracing::info!(error = %err, "algorithm settings rejected");
            }
            result?;
            Ok(Response::new(pb::ValidateAlgorithmSettingsReply {}))
        })
    }
}

async fn respond(
    reply: impl Future<Output = Result<pb::GetSuggestionsReply, SuggestError>>,
) -> Result<Response<pb::GetSuggestionsReply>, Status> {
    let result = reply.await;
    if let Err(err) = &result {
        tracing::warn!(error = %err, "GetSuggestions failed");
    }
    Ok(Response::new(result?))
}

/// The Suggestion gRPC server [`serve`] hosts: the generated `SuggestionServer`, except that
/// `GetSuggestions` hands the request's bytes to [`crate::wire`] rather than to prost, which
/// would build ~20 heap objects per history trial only for them to be converted and dropped.
#[derive(Clone)]
pub struct SuggestionGrpc {
    service: SuggestionService,
    generated: SuggestionServer<SuggestionService>,
}

impl SuggestionGrpc {
    /// The server over `service`, accepting messages up to Katib's 2^31-1 bytes.
    pub fn new(service: SuggestionService) -> Self {
        let generated = SuggestionServer::new(service.clone())
            .max_decoding_message_size(MAX_MESSAGE_SIZE)
            .max_encoding_message_size(MAX_MESSAGE_SIZE);
        SuggestionGrpc { service, generated }
    }
}

impl tonic::server::NamedService for SuggestionGrpc {
    const NAME: &'static str = katib_api::pb::suggestion_server::SERVICE_NAME;
}

impl<B> tonic::codegen::Service<http::Request<B>> for SuggestionGrpc
where
    B: tonic::codegen::Body + Send + 'static,
    B::Error: Into<tonic::codegen::StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = tonic::codegen::BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if request.uri().path() != katib_api::codec::GET_SUGGESTIONS_PATH {
            return self.generated.call(request);
        }
        let method = EncodedGetSuggestions(self.service.clone());
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(BytesRequestCodec::<pb::GetSuggestionsReply>::new())
                .apply_max_message_size_config(Some(MAX_MESSAGE_SIZE), Some(MAX_MESSAGE_SIZE));
            Ok(grpc.unary(method, request).await)
        })
    }
}

struct EncodedGetSuggestions(SuggestionService);

impl tonic::server::UnaryService<Bytes> for EncodedGetSuggestions {
    type Response = pb::GetSuggestionsReply;
    type Future = tonic::codegen::BoxFuture<Response<Self::Response>, Status>;

    fn call(&mut self, request: Request<Bytes>) -> Self::Future {
        let service = self.0.clone();
        let span = rpc_span("GetSuggestions");
        Box::pin(respond(async move { service.suggest_encoded(request.into_inner()).await }).instrument(span))
    }
}

/// Why the suggestion server could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The listen address could not be bound.
    #[error(
        "cannot listen on {address} for the suggestion service; is another process using the port? (set --listen / KATIB_SUGGESTION_LISTEN)"
    )]
    Bind {
        /// The address asked for.
        address: SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The bound socket's address could not be read.
    #[error("cannot read the suggestion service's bound address")]
    LocalAddr(#[source] std::io::Error),
    /// The gRPC server failed while serving.
    #[error("the suggestion gRPC server failed")]
    Serve(#[source] tonic::transport::Error),
}

/// HTTP/2 flow-control window of the servers, per stream and per connection.
pub const H2_WINDOW: u32 = 8 << 20;

/// Largest gRPC message accepted or sent (as Katib's services: 2^31-1), so a long trial history
/// never hits tonic's 4 MiB default.
const MAX_MESSAGE_SIZE: usize = i32::MAX as usize;

/// Serves Suggestion (built-in algorithms), EarlyStopping (standalone: no runtime to mark
/// trials) and `grpc.health.v1` on `listener` until `shutdown` completes.
///
/// Health reports SERVING for `""`, `api.v1.beta1.Suggestion` and Katib's probe name
/// `manager.v1beta1.Suggestion`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    serve_with(listener, SuggestionService::default(), shutdown).await
}

/// [`serve`] with a given service (for instance over a custom [`Registry`]).
pub async fn serve_with(
    listener: tokio::net::TcpListener,
    service: SuggestionService,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    serve_all(listener, service, EarlyStoppingService::new(), shutdown).await
}

/// Serves Suggestion, EarlyStopping and `grpc.health.v1` on `listener` until `shutdown`
/// completes. (Katib runs early stopping on its own port, 6788, in the suggestion pod;
/// here both share one port. `katib run` passes an EarlyStopping service wired to its
/// runtime so `SetTrialStatus` marks local trials.)
pub async fn serve_all(
    listener: tokio::net::TcpListener,
    service: SuggestionService,
    early_stopping: EarlyStoppingService,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_serving::<SuggestionServer<SuggestionService>>()
        .await;
    reporter
        .set_serving::<EarlyStoppingServer<EarlyStoppingService>>()
        .await;
    reporter
        .set_service_status(KATIB_PROBE_SERVICE, tonic_health::ServingStatus::Serving)
        .await;
    let suggestion = SuggestionGrpc::new(service);
    let early_stopping = EarlyStoppingServer::new(early_stopping)
        .max_decoding_message_size(MAX_MESSAGE_SIZE)
        .max_encoding_message_size(MAX_MESSAGE_SIZE);
    tonic::transport::Server::builder()
        // A GetSuggestions request carries the whole trial history (~300 KB at 1,000
        // trials): with HTTP/2's default 64 KiB window the client stalls for a
        // WINDOW_UPDATE round trip every 64 KiB.
        .initial_stream_window_size(Some(H2_WINDOW))
        .initial_connection_window_size(Some(H2_WINDOW))
        // Lets a client send the history in 1 MiB frames rather than 16 KiB ones.
        .max_frame_size(Some(1 << 20))
        .add_service(health)
        .add_service(suggestion)
        .add_service(early_stopping)
        // TCP_NODELAY: small gRPC replies must not wait for a delayed ACK (40 ms).
        .serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
            shutdown,
        )
        .await
        .map_err(Error::Serve)
}

/// Flags of the suggestion service (`katib suggestion`).
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Address to serve the Suggestion gRPC API on.
    #[arg(long, env = "KATIB_SUGGESTION_LISTEN", default_value = DEFAULT_LISTEN)]
    pub listen: SocketAddr,
}

/// Binds `args.listen`, logs the bound address and serves until `shutdown` completes.
pub async fn run(args: Args, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<(), Error> {
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|source| Error::Bind {
            address: args.listen,
            source,
        })?;
    let address = listener.local_addr().map_err(Error::LocalAddr)?;
    tracing::info!(%address, algorithms = ?Registry::builtin().names(), early_stopping = ?crate::earlystopping::ALGORITHMS, "suggestion service listening");
    serve(listener, shutdown).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::space::testing::*;
    use katib_api::pb::suggestion_client::SuggestionClient;
    use pb::trial_status::TrialConditionType as C;

    fn get_request(
        algorithm: &str,
        settings: &[(&str, &str)],
        params: Vec<pb::ParameterSpec>,
        trials: Vec<pb::Trial>,
        n: i32,
    ) -> pb::GetSuggestionsRequest {
        pb::GetSuggestionsRequest {
            experiment: Some(experiment(algorithm, settings, params)),
            trials,
            current_request_number: n,
            total_request_number: n,
        }
    }

    #[tokio::test]
    async fn rejects_bad_requests_with_invalid_argument() {
        let service = SuggestionService::default();
        let status = |r| async { Status::from(service.suggest(r).await.unwrap_err()) };
        let s = status(get_request("foo", &[], vec![int("n", "1", "2", "")], vec![], 1)).await;
        assert_eq!(s.code(), tonic::Code::InvalidArgument);
        assert_eq!(
            s.message(),
            "unknown algorithm \"foo\"; this service serves: bayesianoptimization, cmaes, grid, hyperband, multivariate-tpe, random, sobol, tpe"
        );
        let s = status(get_request(
            "random",
            &[],
            vec![int("n", "1", "2", "")],
            vec![],
            -2,
        ))
        .await;
        assert_eq!(s.code(), tonic::Code::InvalidArgument);
        assert!(s.message().contains("current_request_number"), "{}", s.message());
        let mut no_spec = get_request("random", &[], vec![], vec![], 1);
        no_spec.experiment.as_mut().unwrap().spec = None;
        let s = status(no_spec).await;
        assert_eq!(s.code(), tonic::Code::InvalidArgument);
        let s = status(pb::GetSuggestionsRequest::default()).await;
        assert_eq!(s.code(), tonic::Code::InvalidArgument);
        let s = status(get_request(
            "grid",
            &[],
            vec![double("lr", "0", "1", "")],
            vec![],
            1,
        ))
        .await;
        assert_eq!(s.code(), tonic::Code::InvalidArgument);
        assert!(s.message().contains("no feasibleSpace.step"), "{}", s.message());
    }

    #[tokio::test]
    async fn answers_short_only_on_exhaustion() {
        let service = SuggestionService::default();
        let trials = vec![trial("t1", &[("n", "1")], C::Succeeded, Some("0.1"))];
        for algorithm in ["random", "grid"] {
            let reply = service
                .suggest(get_request(
                    algorithm,
                    &[],
                    vec![int("n", "1", "3", "")],
                    trials.clone(),
                    5,
                ))
                .await
                .unwrap();
            let mut got: Vec<&str> = reply
                .parameter_assignments
                .iter()
                .map(|a| a.assignments[0].value.as_str())
                .collect();
            got.sort();
            assert_eq!(got, ["2", "3"], "{algorithm}");
            assert!(reply.algorithm.is_none());
        }
        let reply = service
            .suggest(get_request("grid", &[], vec![int("n", "1", "1", "")], trials, 0))
            .await
            .unwrap();
        assert!(reply.parameter_assignments.is_empty());
    }

    /// An algorithm that breaks the contract.
    struct Liar;
    impl Algorithm for Liar {
        fn name(&self) -> &'static str {
            "liar"
        }
        fn validate(&self, _: &pb::Experiment) -> Result<(), crate::SettingsError> {
            Ok(())
        }
        fn suggest(&self, _: &SuggestRequest) -> Result<crate::Suggested, SuggestError> {
            Ok(crate::Suggested::default())
        }
    }

    #[tokio::test]
    async fn short_replies_without_exhaustion_are_internal_errors() {
        let mut registry = Registry::builtin();
        registry.register(Arc::new(Liar));
        let service = SuggestionService::new(registry);
        let err = service
            .suggest(get_request("liar", &[], vec![int("n", "1", "3", "")], vec![], 2))
            .await
            .unwrap_err();
        assert_eq!(Status::from(err).code(), tonic::Code::Internal);
    }

    #[tokio::test]
    async fn grpc_round_trip() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, async {
            let _ = stopped.await;
        }));
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{address}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut client = SuggestionClient::new(channel.clone());

        let reply = client
            .get_suggestions(get_request(
                "random",
                &[("random_state", "7")],
                vec![
                    double("lr", "0.001", "0.1", ""),
                    categorical("opt", &["sgd", "adam"]),
                ],
                vec![],
                3,
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(reply.parameter_assignments.len(), 3);
        for a in &reply.parameter_assignments {
            assert_eq!(a.assignments.len(), 2);
            assert_eq!(a.assignments[0].name, "lr");
            let lr: f64 = a.assignments[0].value.parse().unwrap();
            assert!((0.001..=0.1).contains(&lr));
        }

        let reply = client
            .get_suggestions(get_request(
                "grid",
                &[],
                vec![double("lr", "0.01", "0.05", "0.01")],
                vec![trial("t1", &[("lr", "0.01")], C::Succeeded, Some("0.5"))],
                2,
            ))
            .await
            .unwrap()
            .into_inner();
        let got: Vec<&str> = reply
            .parameter_assignments
            .iter()
            .map(|a| a.assignments[0].value.as_str())
            .collect();
        assert_eq!(got, ["0.02", "0.03"]);

        let err = client
            .validate_algorithm_settings(pb::ValidateAlgorithmSettingsRequest {
                experiment: Some(experiment(
                    "random",
                    &[("not_a_setting", "1")],
                    vec![int("n", "1", "3", "")],
                )),
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert!(err.message().contains("not_a_setting"), "{}", err.message());
        client
            .validate_algorithm_settings(pb::ValidateAlgorithmSettingsRequest {
                experiment: Some(experiment("grid", &[], vec![int("n", "1", "3", "")])),
            })
            .await
            .unwrap();

        let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
        for service in ["", "api.v1.beta1.Suggestion", KATIB_PROBE_SERVICE] {
            let status = health
                .check(tonic_health::pb::HealthCheckRequest {
                    service: service.into(),
                })
                .await
                .unwrap()
                .into_inner()
                .status;
            assert_eq!(
                status,
                tonic_health::pb::health_check_response::ServingStatus::Serving as i32,
                "{service:?}"
            );
        }

        drop((client, health));
        stop.send(()).unwrap();
        server.await.unwrap().unwrap();
    }

    #[test]
    fn args_default_and_env_name() {
        use clap::Parser as _;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            args: Args,
        }
        let cli = Cli::try_parse_from(["x"]).unwrap();
        assert_eq!(cli.args.listen, DEFAULT_LISTEN.parse().unwrap());
        let cli = Cli::try_parse_from(["x", "--listen", "0.0.0.0:6789"]).unwrap();
        assert_eq!(cli.args.listen.port(), 6789);
    }
}

//! katib-suggestion: Katib's suggestion algorithms behind one trait, served over Katib's
//! `api.v1.beta1.Suggestion` gRPC API.
//!
//! - [`space`]: the search space built and validated from a `pb::Experiment` (double, int,
//!   discrete, categorical; distributions; exact [`decimal`] steps so stepped values print as
//!   `0.01, 0.02, ...`).
//! - [`algorithm`]: the [`Algorithm`] trait, what it is given ([`SuggestRequest`]: space,
//!   settings, every trial so far, `n`) and what it answers ([`Suggested`]).
//! - [`random`], [`grid`]: Katib's `random` and `grid` with Katib's settings (`random_state`).
//! - [`tpe`] (`tpe`, `multivariate-tpe`), [`cmaes`], [`sobol`], [`hyperband`]: the model-based,
//!   quasi-random and multi-fidelity algorithms with Katib's names, settings and defaults.
//! - [`service`]: [`SuggestionService`] (the tonic `Suggestion` service over a [`Registry`]),
//!   [`serve`] (Suggestion + `grpc.health.v1` on a listener) and [`run`] with its clap
//!   [`Args`].
//! - [`earlystopping`]: the `api.v1.beta1.EarlyStopping` service (`medianstop`, `asha`),
//!   served next to Suggestion by [`serve`].
//!
//! # Exhaustion contract
//!
//! `GetSuggestions` answers exactly `current_request_number` assignments whenever it can. When
//! a finite search space (every parameter int, discrete, categorical or a stepped double) is
//! used up, it answers with the `k < current_request_number` assignments that are left (`k` may
//! be 0) instead of repeating points. The katib-rs controller treats a short reply as "search
//! space exhausted" and ends the experiment cleanly; Katib's controller would report
//! "The response contains unexpected trials". Neither `random` nor `grid` ever suggests a
//! point of a finite space that is already among the request's trials.

pub mod algorithm;
pub mod bayesopt;
pub mod cmaes;
pub mod decimal;
pub mod earlystopping;
pub mod error;
pub mod grid;
pub mod hyperband;
pub mod random;
pub mod service;
pub mod sobol;
pub mod space;
pub mod testfunctions;
pub mod tpe;
pub mod wire;

pub use algorithm::{Algorithm, AlgorithmSettings, SuggestRequest, Suggested, TrialRecord};
pub use bayesopt::BayesianOptimization;
pub use cmaes::Cmaes;
pub use earlystopping::EarlyStoppingService;
pub use error::{SettingsError, SuggestError};
pub use grid::{Grid, grid_size};
pub use hyperband::Hyperband;
pub use random::Random;
pub use service::{Args, Error, Registry, SuggestionService, run, serve, serve_all, serve_with};
pub use sobol::Sobol;
pub use space::SearchSpace;
pub use tpe::Tpe;

//! katib-suggestion: Katib's suggestion algorithms behind one trait, served over Katib's
//! `api.v1.beta1.Suggestion` gRPC API.
//!
//! - [`space`]: the search space built and validated from a `pb::Experiment` (double, int,
//!   discrete, categorical; distributions; exact [`decimal`] steps so stepped values print as
//!   `0.01, 0.02, ...`).
//! - [`algorithm`]: the [`Algorithm`] trait, what it is given ([`SuggestRequest`]: space,
//!   settings, every trial so far, `n`) and what it answers ([`Suggested`]).
//! - [`random`], [`grid`]: Katib's `random` and `grid` with Katib's settings (`random_state`).
//! - [`service`]: [`SuggestionService`] (the tonic `Suggestion` service over a [`Registry`]),
//!   [`serve`] (Suggestion + `grpc.health.v1` on a listener) and [`run`] with its clap
//!   [`Args`].
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
pub mod decimal;
pub mod error;
pub mod grid;
pub mod random;
pub mod service;
pub mod space;

pub use algorithm::{Algorithm, AlgorithmSettings, SuggestRequest, Suggested, TrialRecord};
pub use error::{SettingsError, SuggestError};
pub use grid::{Grid, grid_size};
pub use random::Random;
pub use service::{Args, Error, Registry, SuggestionService, run, serve, serve_with};
pub use space::SearchSpace;

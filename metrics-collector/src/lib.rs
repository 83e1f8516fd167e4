//! katib-metrics-collector: turns what a trial prints into Katib observation logs.
//!
//! The pieces, from pure to I/O:
//! - [`parse`]: Katib's TEXT format (regex filters, default
//!   `([\w|-]+)\s*=\s*([+-]?\d*(\.\d+)?([Ee][+-]?\d+)?)`) and JSON-lines format, one line
//!   at a time, no I/O.
//! - [`sink`]: where rows go. [`Sink`] is the trait; [`DbManagerSink`] calls db-manager's
//!   `ReportObservationLog` (gRPC, `api.v1.beta1`) with retries.
//! - [`collector`]: [`Collector`] parses lines, stamps them, and streams batches to a sink
//!   while the trial runs; [`collect_reader`] and [`tail_file`] drive it from a reader or
//!   a growing file (Katib's StdOut/File collectors).
//! - [`earlystop`]: early-stopping rules checked as metrics stream in ([`StopRules`], pure)
//!   and [`EarlyStopper`], which refreshes them from the early-stopping service.
//!
//! A local runtime does, per trial:
//! ```ignore
//! let sink = Arc::new(DbManagerSink::connect_lazy("127.0.0.1:6789")?);
//! let config = CollectorConfig::text(trial, metric_names, ObjectiveType::Minimize, &filters)?;
//! let summary = tail_file(log_path, Collector::new(config, sink)?, trainer_exited).await?;
//! ```
//!
//! Where this deliberately differs from Katib's collector is listed in each module's docs.

pub mod collector;
pub mod earlystop;
pub mod parse;
pub mod sink;

pub use collector::{
    BatchPolicy, Collector, CollectorConfig, Error, FileFollower, Format, ObjectiveType, Progress, Summary,
    UNAVAILABLE_TIME, UNAVAILABLE_VALUE, collect_reader, tail_file,
};
pub use earlystop::{
    Comparison, EarlyStopper, RefreshReason, RuleError, RuleSource, StopRule, StopRules, Verdict,
};
pub use parse::{JsonLine, JsonParser, ParseError, ParsedMetric, Skipped, TextParser};
pub use sink::{DbManagerSink, RetryPolicy, Sink, SinkError};

/// Formats an error with its `source()` chain, `outer: inner: root`, for log fields.
pub(crate) struct DisplayChain<'a>(pub(crate) &'a dyn std::error::Error);

impl std::fmt::Display for DisplayChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(e) = source {
            write!(f, ": {e}")?;
            source = e.source();
        }
        Ok(())
    }
}

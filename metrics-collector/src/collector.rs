//! The runtime piece: lines in, batches of observation logs out to a [`Sink`].
//!
//! A [`Collector`] parses each line it is given, stamps metrics that carry no timestamp
//! with the time the line was read, and hands the rows to a background task that sends
//! them to the sink in batches while the trial runs: when [`BatchPolicy::max_rows`] rows
//! are buffered, or [`BatchPolicy::max_delay`] after the first buffered row.
//! [`Collector::finish`] sends the rest and applies Katib's "metrics unavailable" rule.
//!
//! Drivers: [`collect_reader`] (a pipe or any async reader, to EOF) and [`tail_file`]
//! (Katib's File/StdOut collector for a local process: follow a file until told the
//! trainer has exited).
//!
//! Differences from Katib's file metrics collector, on purpose:
//! - rows are streamed during the trial, not sent in one call at the end;
//! - a metric without a timestamp gets the time its line was read, strictly increasing
//!   per collector (Katib uses `0001-01-01T00:00:00Z` for all of them, so every row ties
//!   on time and the `latest` metric strategy picks an arbitrary one);
//! - when the objective never appeared, the "unavailable" row is added to what was
//!   already reported instead of replacing it (other metrics stay visible).

use std::io;
use std::path::Path;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use katib_api::pb;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncSeekExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{Instrument, debug, error, info, info_span, trace, warn};

use crate::DisplayChain;
use crate::parse::{JsonLine, JsonParser, ParseError, ParsedMetric, TextParser};
use crate::sink::{Sink, SinkError};

/// The value Katib stores when the objective metric was never reported
/// (`consts.UnavailableMetricValue`); it makes the trial MetricsUnavailable.
pub const UNAVAILABLE_VALUE: &str = "unavailable";

/// The timestamp Katib gives the "unavailable" row.
pub const UNAVAILABLE_TIME: &str = "0001-01-01T00:00:00Z";

/// How often [`tail_file`] looks for the file and for new data.
pub const TAIL_POLL: Duration = Duration::from_millis(100);

/// The output format of a trial (`metricsCollectorSpec.source.fileSystemPath.format`).
#[derive(Clone, Debug)]
pub enum Format {
    /// `TEXT` (also the StdOut collector): `name=value` pairs matched by filters.
    Text(TextParser),
    /// `JSON`: one JSON object per line.
    Json(JsonParser),
}

/// Whether the objective is minimised or maximised (`objective.type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ObjectiveType {
    /// `minimize`: lower is better.
    Minimize,
    /// `maximize`: higher is better.
    Maximize,
}

impl ObjectiveType {
    /// Reads Katib's `minimize` / `maximize`.
    pub fn from_katib(s: &str) -> Option<Self> {
        match s {
            "minimize" => Some(Self::Minimize),
            "maximize" => Some(Self::Maximize),
            _ => None,
        }
    }

    fn better(self, candidate: f64, best: f64) -> bool {
        match self {
            Self::Minimize => candidate < best,
            Self::Maximize => candidate > best,
        }
    }
}

/// When buffered rows are sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchPolicy {
    /// Send as soon as this many rows are buffered; also the largest batch (default 500).
    pub max_rows: usize,
    /// Send this long after the first row was buffered (default 250 ms).
    pub max_delay: Duration,
}

impl Default for BatchPolicy {
    fn default() -> Self {
        Self {
            max_rows: 500,
            max_delay: Duration::from_millis(250),
        }
    }
}

/// What to collect for which trial.
#[derive(Clone, Debug)]
pub struct CollectorConfig {
    /// The trial the observations belong to.
    pub trial_name: String,
    /// The objective metric first, then the additional metrics. The parser in `format`
    /// should look for the same names (the constructors below make sure of it).
    pub metric_names: Vec<String>,
    /// Direction of the objective, for [`Progress::best_objective`].
    pub objective_type: ObjectiveType,
    /// How lines are parsed.
    pub format: Format,
    /// When rows are sent.
    pub batch: BatchPolicy,
}

impl CollectorConfig {
    /// TEXT format with Katib's `metricsFormat` filters (empty: the default filter).
    pub fn text(
        trial_name: impl Into<String>,
        metric_names: Vec<String>,
        objective_type: ObjectiveType,
        filters: &[String],
    ) -> Result<Self, ParseError> {
        let parser = TextParser::new(metric_names.clone(), filters)?;
        Ok(Self {
            trial_name: trial_name.into(),
            metric_names,
            objective_type,
            format: Format::Text(parser),
            batch: BatchPolicy::default(),
        })
    }

    /// JSON-lines format.
    pub fn json(
        trial_name: impl Into<String>,
        metric_names: Vec<String>,
        objective_type: ObjectiveType,
    ) -> Self {
        Self {
            trial_name: trial_name.into(),
            format: Format::Json(JsonParser::new(metric_names.clone())),
            metric_names,
            objective_type,
            batch: BatchPolicy::default(),
        }
    }
}

/// Counts and objective values so far.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Progress {
    /// Lines pushed.
    pub lines: u64,
    /// Lines skipped as unparsable (JSON format only).
    pub skipped_lines: u64,
    /// Metric rows parsed (all metrics).
    pub metrics: u64,
    /// Rows of the objective metric.
    pub objective_metrics: u64,
    /// Best numeric objective value so far (min or max per the objective type).
    pub best_objective: Option<f64>,
    /// Last objective value, as printed.
    pub latest_objective: Option<String>,
}

/// What a finished collection did.
#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    /// The trial.
    pub trial_name: String,
    /// Counts and objective values.
    pub progress: Progress,
    /// Rows the sink accepted, the "unavailable" row included.
    pub reported: u64,
    /// Successful sink calls.
    pub batches: u64,
    /// True if the objective never appeared and the "unavailable" row was reported.
    pub objective_unavailable: bool,
    /// The trial's whole observation log as the sink holds it, in the order reported,
    /// when the sink vouched for it: after the last report it counted exactly the rows
    /// this collector reported (see [`Sink::report_and_count`]), so nobody else wrote to
    /// the trial. `None` when it could not tell, something was lost, or the trial
    /// reported more than [`KEEP_ROWS`] rows. A caller that needs the log uses this
    /// instead of reading it back.
    pub stored_rows: Option<Vec<pb::MetricLog>>,
}

/// Most rows a collector keeps copies of for [`Summary::stored_rows`].
pub const KEEP_ROWS: usize = 10_000;

/// Why collecting a trial's metrics failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration has no usable metric names.
    #[error(
        "trial {trial}: no metric names to collect; give the objective metric name first, then any additional metric names"
    )]
    NoMetrics {
        /// The trial.
        trial: String,
    },
    /// Some rows could not be stored; the source is the first failure.
    #[error("trial {trial}: {lost} metric row(s) could not be reported to the sink")]
    Report {
        /// The trial.
        trial: String,
        /// Rows lost.
        lost: u64,
        /// The first failure.
        #[source]
        source: SinkError,
    },
    /// Reading the trial's output failed.
    #[error("trial {trial}: could not read metrics from {from}")]
    Read {
        /// The trial.
        trial: String,
        /// The file, or `trial output` for a reader.
        from: String,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The background task sending batches stopped (it panicked).
    #[error("trial {trial}: the task reporting metrics stopped unexpectedly")]
    Flusher {
        /// The trial.
        trial: String,
        /// How it stopped.
        #[source]
        source: tokio::task::JoinError,
    },
}

/// Parses a trial's output line by line and streams the metrics to a [`Sink`].
///
/// Create it inside a Tokio runtime (it spawns the task that sends batches). Call
/// [`finish`](Self::finish) at the end; a collector dropped without it still sends
/// what it buffered, in the background, but skips the "unavailable" rule.
#[derive(Debug)]
pub struct Collector {
    trial_name: String,
    objective: String,
    objective_type: ObjectiveType,
    format: Format,
    span: tracing::Span,
    rows: mpsc::UnboundedSender<ToFlusher>,
    flusher: JoinHandle<Flushed>,
    last_stamp: Option<jiff::Timestamp>,
    observed: Vec<(String, String)>,
    progress: Progress,
}

impl Collector {
    /// A collector for `config` that reports to `sink`.
    pub fn new(config: CollectorConfig, sink: Arc<dyn Sink>) -> Result<Self, Error> {
        let CollectorConfig {
            trial_name,
            metric_names,
            objective_type,
            format,
            batch,
        } = config;
        let Some(objective) = metric_names.first().filter(|n| !n.is_empty()).cloned() else {
            return Err(Error::NoMetrics { trial: trial_name });
        };
        let span = info_span!("collect_metrics", trial = %trial_name);
        let (tx, rx) = mpsc::unbounded_channel();
        let flusher = Flusher {
            trial: trial_name.clone(),
            sink,
            policy: BatchPolicy {
                max_rows: batch.max_rows.max(1),
                ..batch
            },
            buf: Vec::new(),
            out: Flushed::default(),
        };
        let flusher = tokio::spawn(flusher.run(rx).instrument(span.clone()));
        span.in_scope(|| debug!(metrics = ?metric_names, %objective, "collecting metrics"));
        Ok(Self {
            trial_name,
            objective,
            objective_type,
            format,
            span,
            rows: tx,
            flusher,
            last_stamp: None,
            observed: Vec::new(),
            progress: Progress::default(),
        })
    }

    /// The trial being collected.
    pub fn trial_name(&self) -> &str {
        &self.trial_name
    }

    /// The objective metric name (the first metric name).
    pub fn objective(&self) -> &str {
        &self.objective
    }

    /// Counts and objective values so far.
    pub fn progress(&self) -> &Progress {
        &self.progress
    }

    /// The `(name, value)` pairs parsed from the last line pushed, in order; empty if it
    /// had none. This is the hook for early-stopping rules, checked after each line.
    pub fn observed(&self) -> &[(String, String)] {
        &self.observed
    }

    /// The span the collector logs in (`collect_metrics`, field `trial`).
    pub fn span(&self) -> &tracing::Span {
        &self.span
    }

    /// Parses one line (a trailing `\n` or `\r\n` is ignored) and queues its metrics.
    pub fn push_line(&mut self, line: &str) {
        let span = self.span.clone();
        span.in_scope(|| self.parse_and_queue(line));
    }

    fn parse_and_queue(&mut self, line: &str) {
        let line = line.strip_suffix('\n').unwrap_or(line);
        let line = line.strip_suffix('\r').unwrap_or(line);
        self.progress.lines += 1;
        self.observed.clear();
        trace!(line, "read");
        let parsed = match &self.format {
            Format::Text(parser) => parser.parse_line(line),
            Format::Json(parser) => match parser.parse_line(line) {
                JsonLine::Parsed(metrics) => metrics,
                JsonLine::Skipped(why) => {
                    self.progress.skipped_lines += 1;
                    debug!(line_number = self.progress.lines, reason = %DisplayChain(&why), "skipped line");
                    return;
                }
            },
        };
        if parsed.is_empty() {
            return;
        }
        let read_at = parsed.iter().any(|m| m.time.is_none()).then(|| self.stamp());
        let mut rows = Vec::with_capacity(parsed.len());
        for ParsedMetric { time, name, value } in parsed {
            let Some(time) = time.or(read_at) else {
                continue;
            };
            self.note(&name, &value);
            rows.push(pb::MetricLog {
                time_stamp: time.to_string(),
                metric: Some(pb::Metric { name, value }),
            });
        }
        self.progress.metrics += rows.len() as u64;
        if self.rows.send(ToFlusher::Rows(rows)).is_err() {
            error!("the task reporting metrics has stopped; metrics are being lost");
        }
    }

    /// Sends every row queued so far to the sink now and waits until it is done (or has
    /// failed: rows that could not be sent stay queued for the next try, as with the
    /// timed sends). Early stopping calls this before asking for fresh rules, so the
    /// rule service sees this trial's latest values.
    pub async fn flush(&mut self) {
        let (done, flushed) = tokio::sync::oneshot::channel();
        if self.rows.send(ToFlusher::Flush(done)).is_ok() {
            let _ = flushed.await;
        }
    }

    /// Sends what is left, then, if the objective metric was never seen, reports the
    /// single row `{objective, "unavailable", "0001-01-01T00:00:00Z"}` so the trial
    /// becomes MetricsUnavailable (Katib's rule).
    pub async fn finish(self) -> Result<Summary, Error> {
        let Self {
            trial_name,
            objective,
            span,
            rows,
            flusher,
            progress,
            ..
        } = self;
        let objective_unavailable = progress.objective_metrics == 0;
        if objective_unavailable {
            span.in_scope(|| {
                info!(
                    %objective,
                    lines = progress.lines,
                    "objective metric never reported; reporting it as unavailable"
                )
            });
            let row = pb::MetricLog {
                time_stamp: UNAVAILABLE_TIME.to_owned(),
                metric: Some(pb::Metric {
                    name: objective,
                    value: UNAVAILABLE_VALUE.to_owned(),
                }),
            };
            // Fails only if the task died, which awaiting it reports below.
            let _ = rows.send(ToFlusher::Rows(vec![row]));
        }
        drop(rows);
        let flushed = flusher.await.map_err(|source| Error::Flusher {
            trial: trial_name.clone(),
            source,
        })?;
        if let Some(source) = flushed.error {
            return Err(Error::Report {
                trial: trial_name,
                lost: flushed.lost,
                source,
            });
        }
        span.in_scope(|| {
            info!(
                lines = progress.lines,
                reported = flushed.reported,
                best_objective = ?progress.best_objective,
                "metrics collected"
            )
        });
        let stored_rows = flushed.kept.filter(|kept| {
            flushed.stored == Some(kept.len() as u64) && flushed.reported == kept.len() as u64
        });
        Ok(Summary {
            trial_name,
            progress,
            reported: flushed.reported,
            batches: flushed.batches,
            objective_unavailable,
            stored_rows,
        })
    }

    /// The time a line without a timestamp was read: now at microsecond precision
    /// (what the database keeps), and always after the previous stamp so the order of
    /// lines survives an `ORDER BY time`.
    fn stamp(&mut self) -> jiff::Timestamp {
        let now = jiff::Timestamp::now();
        let micros = jiff::Timestamp::from_microsecond(now.as_microsecond()).unwrap_or(now);
        let stamp = match self.last_stamp {
            Some(last) if micros <= last => last
                .checked_add(jiff::SignedDuration::from_micros(1))
                .unwrap_or(last),
            _ => micros,
        };
        self.last_stamp = Some(stamp);
        stamp
    }

    fn note(&mut self, name: &str, value: &str) {
        self.observed.push((name.to_owned(), value.to_owned()));
        if name != self.objective {
            return;
        }
        self.progress.objective_metrics += 1;
        self.progress.latest_objective = Some(value.to_owned());
        if let Ok(v) = value.parse::<f64>()
            && !v.is_nan()
        {
            let best = &mut self.progress.best_objective;
            if best.is_none_or(|b| self.objective_type.better(v, b)) {
                *best = Some(v);
            }
        }
    }
}

/// What the collector hands its background task.
#[derive(Debug)]
enum ToFlusher {
    /// Rows to buffer and send.
    Rows(Vec<pb::MetricLog>),
    /// Send everything buffered now, then answer.
    Flush(tokio::sync::oneshot::Sender<()>),
}

/// What the background task did.
#[derive(Debug)]
struct Flushed {
    reported: u64,
    batches: u64,
    lost: u64,
    error: Option<SinkError>,
    /// Copies of the rows reported, in order, until there are more than [`KEEP_ROWS`].
    kept: Option<Vec<pb::MetricLog>>,
    /// The sink's row count for the trial after the last report, if it gave one.
    stored: Option<u64>,
}

impl Default for Flushed {
    fn default() -> Self {
        Self {
            reported: 0,
            batches: 0,
            lost: 0,
            error: None,
            kept: Some(Vec::new()),
            stored: None,
        }
    }
}

/// The background task: buffers rows and sends batches.
struct Flusher {
    trial: String,
    sink: Arc<dyn Sink>,
    policy: BatchPolicy,
    buf: Vec<pb::MetricLog>,
    out: Flushed,
}

impl Flusher {
    async fn run(mut self, mut rows: mpsc::UnboundedReceiver<ToFlusher>) -> Flushed {
        let mut due: Option<Instant> = None;
        loop {
            let timer = async {
                match due {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                received = rows.recv() => {
                    let received = match received {
                        None => break,
                        Some(ToFlusher::Rows(received)) => received,
                        Some(ToFlusher::Flush(done)) => {
                            let _ = self.flush(1, false).await;
                            due = self.next_due();
                            let _ = done.send(());
                            continue;
                        }
                    };
                    if self.buf.is_empty() {
                        due = Some(Instant::now() + self.policy.max_delay);
                    }
                    self.buf.extend(received);
                    if self.buf.len() >= self.policy.max_rows {
                        // On failure the rows stay buffered and the timer tries again.
                        let _ = self.flush(self.policy.max_rows, false).await;
                        due = self.next_due();
                    }
                }
                () = timer => {
                    let _ = self.flush(1, false).await;
                    due = self.next_due();
                }
            }
        }
        // The last report asks for the trial's row count (see `Summary::stored_rows`).
        if let Err(source) = self.flush(1, true).await {
            let lost = self.buf.len() as u64;
            error!(rows = lost, error = %DisplayChain(&source), "could not report metrics; giving up");
            self.out.lost += lost;
            self.out.error.get_or_insert(source);
        }
        self.out
    }

    fn next_due(&self) -> Option<Instant> {
        (!self.buf.is_empty()).then(|| Instant::now() + self.policy.max_delay)
    }

    /// Sends batches of at most `max_rows` while at least `min_rows` are buffered; with
    /// `count_last`, the batch that empties the buffer asks for the trial's row count.
    /// On a transient failure the rows stay buffered (first) and the error is returned.
    async fn flush(&mut self, min_rows: usize, count_last: bool) -> Result<(), SinkError> {
        while !self.buf.is_empty() && self.buf.len() >= min_rows {
            let n = self.buf.len().min(self.policy.max_rows);
            let batch: Vec<_> = self.buf.drain(..n).collect();
            let sent = if count_last && self.buf.is_empty() {
                self.sink.report_and_count(&self.trial, batch.clone()).await
            } else {
                self.sink.report(&self.trial, batch.clone()).await.map(|()| None)
            };
            match sent {
                Ok(stored) => {
                    self.out.reported += n as u64;
                    self.out.batches += 1;
                    self.out.stored = stored;
                    self.out.kept = self
                        .out
                        .kept
                        .take()
                        .filter(|kept| kept.len() + n <= KEEP_ROWS)
                        .map(|mut kept| {
                            kept.extend(batch);
                            kept
                        });
                    debug!(rows = n, "reported metrics");
                }
                Err(e) if e.is_transient() => {
                    warn!(rows = n, error = %DisplayChain(&e), "could not report metrics; will try again");
                    self.buf.splice(0..0, batch);
                    return Err(e);
                }
                Err(e) => {
                    error!(rows = n, error = %DisplayChain(&e), "metrics refused; dropping them");
                    self.out.lost += n as u64;
                    self.out.error.get_or_insert(e);
                }
            }
        }
        Ok(())
    }
}

/// Reads `reader` line by line to EOF, then [`finish`](Collector::finish)es.
///
/// Invalid UTF-8 is replaced, not fatal. On a read error the collector still finishes
/// (what was read is reported) and the read error is returned.
pub async fn collect_reader<R>(mut reader: R, mut collector: Collector) -> Result<Summary, Error>
where
    R: AsyncBufRead + Unpin,
{
    let span = collector.span.clone();
    async move {
        let mut line = Vec::new();
        let read = loop {
            line.clear();
            match reader.read_until(b'\n', &mut line).await {
                Ok(0) => break Ok(()),
                Ok(_) => collector.push_line(&String::from_utf8_lossy(&line)),
                Err(e) => break Err(e),
            }
        };
        finish_after(read, "trial output".to_owned(), collector).await
    }
    .instrument(span)
    .await
}

/// Katib's File collector for a local process: waits for `path` to appear, follows it as
/// it grows (polling every [`TAIL_POLL`]; a last line without `\n` waits for the rest),
/// and once `done` resolves (the runtime resolves it when the trainer has exited) reads
/// what is left, the unterminated last line included, and finishes.
///
/// If the file never appears, the trial's objective is reported unavailable. If the file
/// shrinks (truncated and rewritten), it is read again from the start.
pub async fn tail_file(
    path: impl AsRef<Path>,
    mut collector: Collector,
    done: impl Future<Output = ()>,
) -> Result<Summary, Error> {
    let path = path.as_ref().to_path_buf();
    let span = collector.span.clone();
    async move {
        let read = follow(&path, &mut collector, done).await;
        finish_after(read, path.display().to_string(), collector).await
    }
    .instrument(span)
    .await
}

async fn finish_after(read: io::Result<()>, from: String, collector: Collector) -> Result<Summary, Error> {
    let trial = collector.trial_name.clone();
    let finished = collector.finish().await;
    match read {
        Ok(()) => finished,
        Err(source) => {
            if let Err(e) = finished {
                error!(error = %DisplayChain(&e), "could not finish after a read error");
            }
            Err(Error::Read { trial, from, source })
        }
    }
}

async fn follow(path: &Path, collector: &mut Collector, done: impl Future<Output = ()>) -> io::Result<()> {
    let mut done = pin!(done);
    let mut lines = FileFollower::new(path);
    while let Some(line) = lines.next_line(done.as_mut()).await? {
        collector.push_line(&line);
    }
    Ok(())
}

/// Follows a growing file line by line: the reading half of [`tail_file`], for drivers
/// that act between lines (early stopping checks the rules after each one).
///
/// The file may appear late; it is polled every [`TAIL_POLL`]. A last line without `\n`
/// waits for the rest until the trainer has exited. If the file shrinks (truncated and
/// rewritten), it is read again from the start. Invalid UTF-8 is replaced.
#[derive(Debug)]
pub struct FileFollower {
    path: std::path::PathBuf,
    file: Option<tokio::fs::File>,
    pos: u64,
    pending: Vec<u8>,
    ready: std::collections::VecDeque<String>,
    chunk: Vec<u8>,
    exited: bool,
    finished: bool,
}

impl FileFollower {
    /// A follower of `path` (which need not exist yet).
    pub fn new(path: impl AsRef<Path>) -> Self {
        Self {
            path: path.as_ref().to_path_buf(),
            file: None,
            pos: 0,
            pending: Vec::new(),
            ready: std::collections::VecDeque::new(),
            chunk: vec![0_u8; 64 * 1024],
            exited: false,
            finished: false,
        }
    }

    /// The next complete line (without its `\n`), waiting for it as long as the trainer
    /// runs. `done` resolves when the trainer has exited; pass the same future on every
    /// call (it is not polled again once it has resolved). After `done`, what is left is
    /// returned, the unterminated last line included, then `None`.
    pub async fn next_line<F: Future<Output = ()>>(
        &mut self,
        mut done: std::pin::Pin<&mut F>,
    ) -> io::Result<Option<String>> {
        loop {
            if let Some(line) = self.ready.pop_front() {
                return Ok(Some(line));
            }
            if self.finished {
                return Ok(None);
            }
            let Some(file) = self.file.as_mut() else {
                match tokio::fs::File::open(&self.path).await {
                    Ok(file) => {
                        debug!(path = %self.path.display(), "following metrics file");
                        self.file = Some(file);
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {
                        if self.exited {
                            warn!(path = %self.path.display(), "the trainer exited without creating the metrics file");
                            self.finished = true;
                        } else {
                            tokio::select! {
                                () = &mut done => self.exited = true,
                                () = tokio::time::sleep(TAIL_POLL) => {}
                            }
                        }
                    }
                    Err(e) => return Err(e),
                }
                continue;
            };
            let n = file.read(&mut self.chunk).await?;
            if n > 0 {
                self.pos += n as u64;
                self.pending.extend_from_slice(&self.chunk[..n]);
                self.split_lines();
                continue;
            }
            if self.exited {
                if !self.pending.is_empty() {
                    let rest = std::mem::take(&mut self.pending);
                    self.ready.push_back(String::from_utf8_lossy(&rest).into_owned());
                }
                self.finished = true;
                continue;
            }
            if file.metadata().await?.len() < self.pos {
                warn!(path = %self.path.display(), "metrics file shrank; reading it again from the start");
                file.seek(io::SeekFrom::Start(0)).await?;
                self.pos = 0;
                self.pending.clear();
                continue;
            }
            tokio::select! {
                () = &mut done => self.exited = true,
                () = tokio::time::sleep(TAIL_POLL) => {}
            }
        }
    }

    /// Moves every `\n`-terminated line of `pending` to `ready`, keeping the rest.
    fn split_lines(&mut self) {
        let mut start = 0;
        while let Some(end) = self.pending[start..].iter().position(|&b| b == b'\n') {
            let line = String::from_utf8_lossy(&self.pending[start..start + end]).into_owned();
            self.ready.push_back(line);
            start += end + 1;
        }
        self.pending.drain(..start);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::Mutex;

    use super::*;

    /// Records batches; answers with queued errors first. With `counts`, answers
    /// `report_and_count` with its row total plus `foreign` rows someone else wrote.
    #[derive(Default)]
    struct FakeSink {
        batches: Mutex<Vec<Vec<pb::MetricLog>>>,
        calls: Mutex<u32>,
        errors: Mutex<VecDeque<SinkError>>,
        counts: bool,
        foreign: u64,
        counted_calls: Mutex<u32>,
    }

    #[tonic::async_trait]
    impl Sink for FakeSink {
        async fn report(&self, trial: &str, logs: Vec<pb::MetricLog>) -> Result<(), SinkError> {
            assert_eq!(trial, "trial-1");
            assert!(!logs.is_empty());
            *self.calls.lock().unwrap() += 1;
            if let Some(e) = self.errors.lock().unwrap().pop_front() {
                return Err(e);
            }
            self.batches.lock().unwrap().push(logs);
            Ok(())
        }

        async fn report_and_count(
            &self,
            trial: &str,
            logs: Vec<pb::MetricLog>,
        ) -> Result<Option<u64>, SinkError> {
            self.report(trial, logs).await?;
            *self.counted_calls.lock().unwrap() += 1;
            Ok(self.counts.then(|| self.rows().len() as u64 + self.foreign))
        }
    }

    impl FakeSink {
        fn sizes(&self) -> Vec<usize> {
            self.batches.lock().unwrap().iter().map(Vec::len).collect()
        }

        fn rows(&self) -> Vec<(String, String, String)> {
            self.batches
                .lock()
                .unwrap()
                .iter()
                .flatten()
                .map(|l| {
                    let m = l.metric.clone().unwrap();
                    (m.name, m.value, l.time_stamp.clone())
                })
                .collect()
        }

        fn values(&self) -> Vec<(String, String)> {
            self.rows().into_iter().map(|(n, v, _)| (n, v)).collect()
        }
    }

    fn unavailable(n: u32) -> SinkError {
        SinkError::Unavailable {
            endpoint: "fake".into(),
            attempts: n,
            elapsed: Duration::from_secs(60),
            source: tonic::Status::unavailable("down"),
        }
    }

    fn collector(sink: &Arc<FakeSink>) -> Collector {
        let config = CollectorConfig::text(
            "trial-1",
            vec!["loss".into(), "accuracy".into()],
            ObjectiveType::Minimize,
            &[],
        )
        .unwrap();
        Collector::new(config, sink.clone()).unwrap()
    }

    fn p(name: &str, value: &str) -> (String, String) {
        (name.to_owned(), value.to_owned())
    }

    async fn settle() {
        // Paused clock: lets the flusher run without moving time much.
        tokio::time::sleep(Duration::from_millis(1)).await;
    }

    #[tokio::test(start_paused = true)]
    async fn flushes_by_size() {
        let sink = Arc::new(FakeSink::default());
        let mut c = collector(&sink);
        for i in 0..1100 {
            c.push_line(&format!("step {i}: loss={i}\n"));
        }
        settle().await;
        assert_eq!(sink.sizes(), [500, 500]);
        let summary = c.finish().await.unwrap();
        assert_eq!(sink.sizes(), [500, 500, 100]);
        assert_eq!(summary.reported, 1100);
        assert_eq!(summary.batches, 3);
        assert_eq!(summary.progress.best_objective, Some(0.0));
        assert_eq!(summary.progress.latest_objective.as_deref(), Some("1099"));
        assert!(!summary.objective_unavailable);

        // Stamps keep the order of lines even when read in the same microsecond.
        let stamps: Vec<jiff::Timestamp> = sink.rows().iter().map(|(_, _, t)| t.parse().unwrap()).collect();
        assert!(stamps.windows(2).all(|w| w[0] < w[1]));
    }

    #[tokio::test(start_paused = true)]
    async fn flushes_by_time_after_the_first_buffered_row() {
        let sink = Arc::new(FakeSink::default());
        let mut c = collector(&sink);
        c.push_line("loss=0.9");
        tokio::time::sleep(Duration::from_millis(200)).await;
        c.push_line("loss=0.8 accuracy=0.5");
        tokio::time::sleep(Duration::from_millis(40)).await;
        assert!(sink.sizes().is_empty(), "sent before 250 ms");
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(sink.sizes(), [3]);

        // A quiet trainer: nothing is sent until a row arrives, then 250 ms later.
        tokio::time::sleep(Duration::from_secs(10)).await;
        c.push_line("loss=0.7");
        tokio::time::sleep(Duration::from_millis(249)).await;
        assert_eq!(sink.sizes(), [3]);
        tokio::time::sleep(Duration::from_millis(2)).await;
        assert_eq!(sink.sizes(), [3, 1]);

        let summary = c.finish().await.unwrap();
        assert_eq!(sink.sizes(), [3, 1]);
        assert_eq!(summary.progress.best_objective, Some(0.7));
        assert_eq!(
            sink.values(),
            [
                p("loss", "0.9"),
                p("loss", "0.8"),
                p("accuracy", "0.5"),
                p("loss", "0.7")
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn stored_rows_only_when_the_sink_counts_exactly_what_was_reported() {
        let lines = ["loss=0.9", "loss=0.8 accuracy=0.5", "loss=0.7"];
        let run = |sink: Arc<FakeSink>| async move {
            let mut c = collector(&sink);
            c.push_line(lines[0]);
            // An earlier batch goes out without a count; only the last one asks.
            c.flush().await;
            c.push_line(lines[1]);
            c.push_line(lines[2]);
            let summary = c.finish().await.unwrap();
            assert_eq!(
                *sink.counted_calls.lock().unwrap(),
                1,
                "only the last report asks"
            );
            (sink, summary)
        };

        let (sink, summary) = run(Arc::new(FakeSink {
            counts: true,
            ..Default::default()
        }))
        .await;
        let stored = summary.stored_rows.expect("the sink vouched for every row");
        assert_eq!(
            stored
                .iter()
                .map(|l| {
                    let m = l.metric.clone().unwrap();
                    (m.name, m.value, l.time_stamp.clone())
                })
                .collect::<Vec<_>>(),
            sink.rows(),
            "the rows reported, in order"
        );
        assert_eq!(stored.len(), 4);

        // Someone else wrote to the trial: the log must be read back.
        let (_, summary) = run(Arc::new(FakeSink {
            counts: true,
            foreign: 1,
            ..Default::default()
        }))
        .await;
        assert_eq!(summary.stored_rows, None);
        // A sink that cannot count (Katib's db-manager) vouches for nothing.
        let (_, summary) = run(Arc::new(FakeSink::default())).await;
        assert_eq!(summary.stored_rows, None);
    }

    #[tokio::test(start_paused = true)]
    async fn stored_rows_give_up_past_the_keep_limit_or_after_a_loss() {
        let sink = Arc::new(FakeSink {
            counts: true,
            ..Default::default()
        });
        let mut c = collector(&sink);
        for i in 0..=KEEP_ROWS {
            c.push_line(&format!("loss={i}"));
        }
        let summary = c.finish().await.unwrap();
        assert_eq!(summary.reported, KEEP_ROWS as u64 + 1);
        assert_eq!(summary.stored_rows, None, "too many rows to keep copies of");

        // A refused batch loses rows: finish reports the loss, and nothing is vouched for.
        let refused = SinkError::Rejected {
            endpoint: "fake".into(),
            code: tonic::Code::InvalidArgument,
            message: "bad row".into(),
        };
        let sink = Arc::new(FakeSink {
            counts: true,
            errors: Mutex::new(VecDeque::from([refused])),
            ..Default::default()
        });
        let mut c = collector(&sink);
        c.push_line("loss=1");
        c.flush().await;
        c.push_line("loss=2");
        assert!(c.finish().await.is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn flush_sends_what_is_queued_at_once() {
        let sink = Arc::new(FakeSink::default());
        let mut c = collector(&sink);
        c.push_line("loss=0.9");
        c.push_line("loss=0.8");
        c.flush().await;
        // Sent without waiting for the 250 ms batching delay.
        assert_eq!(sink.sizes(), [2]);
        c.flush().await;
        assert_eq!(sink.sizes(), [2], "nothing new to send");
        c.push_line("loss=0.7");
        let summary = c.finish().await.unwrap();
        assert_eq!(sink.sizes(), [2, 1]);
        assert_eq!(summary.reported, 3);
    }

    #[tokio::test(start_paused = true)]
    async fn finish_reports_unavailable_when_the_objective_never_appeared() {
        let sink = Arc::new(FakeSink::default());
        let mut c = collector(&sink);
        c.push_line("starting");
        c.push_line("accuracy=0.75");
        assert_eq!(c.observed(), [p("accuracy", "0.75")]);
        let summary = c.finish().await.unwrap();
        assert!(summary.objective_unavailable);
        assert_eq!(summary.progress.best_objective, None);
        assert_eq!(summary.reported, 2);
        let rows = sink.rows();
        assert_eq!(rows.len(), 2);
        assert_eq!((rows[0].0.as_str(), rows[0].1.as_str()), ("accuracy", "0.75"));
        assert_eq!(
            rows[1],
            (
                "loss".to_owned(),
                "unavailable".to_owned(),
                "0001-01-01T00:00:00Z".to_owned()
            )
        );
    }

    #[tokio::test(start_paused = true)]
    async fn observed_and_progress_track_each_line() {
        let sink = Arc::new(FakeSink::default());
        let mut c = collector(&sink);
        c.push_line("2024-05-01T10:00:00Z loss=0.5 accuracy=0.8\r\n");
        assert_eq!(c.observed(), [p("loss", "0.5"), p("accuracy", "0.8")]);
        c.push_line("loss=0.7");
        c.push_line("nothing here");
        assert!(c.observed().is_empty());
        let progress = c.progress().clone();
        assert_eq!(progress.lines, 3);
        assert_eq!(progress.metrics, 3);
        assert_eq!(progress.objective_metrics, 2);
        assert_eq!(progress.best_objective, Some(0.5));
        assert_eq!(progress.latest_objective.as_deref(), Some("0.7"));
        c.finish().await.unwrap();
        let rows = sink.rows();
        assert_eq!(rows[0].2, "2024-05-01T10:00:00Z");
        assert_eq!(rows[1].2, "2024-05-01T10:00:00Z");
        // Stamped with the read time, not Katib's 0001-01-01.
        assert!(rows[2].2.parse::<jiff::Timestamp>().unwrap().as_second() > 1_700_000_000);
    }

    #[tokio::test(start_paused = true)]
    async fn json_lines_are_collected_and_junk_counted() {
        let sink = Arc::new(FakeSink::default());
        let config = CollectorConfig::json("trial-1", vec!["accuracy".into()], ObjectiveType::Maximize);
        let mut c = Collector::new(config, sink.clone()).unwrap();
        c.push_line(r#"{"accuracy": 0.5, "timestamp": 1714557600.5}"#);
        c.push_line("Epoch 2/10");
        c.push_line(r#"{"accuracy": "0.75"}"#);
        c.push_line(r#"{"accuracy": 0.6}"#);
        let summary = c.finish().await.unwrap();
        assert_eq!(summary.progress.skipped_lines, 1);
        assert_eq!(summary.progress.best_objective, Some(0.75));
        let rows = sink.rows();
        assert_eq!(rows[0].2, "2024-05-01T10:00:00.5Z");
        assert_eq!(
            sink.values(),
            [p("accuracy", "0.5"), p("accuracy", "0.75"), p("accuracy", "0.6")]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn transient_failures_keep_rows_and_retry() {
        let sink = Arc::new(FakeSink::default());
        sink.errors
            .lock()
            .unwrap()
            .extend([unavailable(3), unavailable(3)]);
        let mut c = collector(&sink);
        c.push_line("loss=0.5");
        c.push_line("loss=0.4");
        tokio::time::sleep(Duration::from_millis(260)).await;
        assert_eq!(*sink.calls.lock().unwrap(), 1);
        assert!(sink.sizes().is_empty());
        c.push_line("loss=0.3");
        // Second try at 500 ms fails too, the third at 750 ms succeeds.
        tokio::time::sleep(Duration::from_millis(260)).await;
        assert_eq!(*sink.calls.lock().unwrap(), 2);
        assert!(sink.sizes().is_empty());
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert_eq!(sink.sizes(), [3]);
        assert_eq!(*sink.calls.lock().unwrap(), 3);
        let summary = c.finish().await.unwrap();
        assert_eq!(summary.reported, 3);
        assert_eq!(
            sink.values(),
            [p("loss", "0.5"), p("loss", "0.4"), p("loss", "0.3")]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn rejected_batches_are_dropped_and_reported_by_finish() {
        let sink = Arc::new(FakeSink::default());
        sink.errors.lock().unwrap().push_back(SinkError::Rejected {
            endpoint: "fake".into(),
            code: tonic::Code::InvalidArgument,
            message: "bad".into(),
        });
        let mut c = collector(&sink);
        c.push_line("loss=0.5");
        tokio::time::sleep(Duration::from_millis(300)).await;
        c.push_line("loss=0.4");
        let err = c.finish().await.unwrap_err();
        assert_eq!(sink.values(), [p("loss", "0.4")]);
        let Error::Report { lost, source, .. } = &err else {
            panic!("{err:?}")
        };
        assert_eq!(*lost, 1);
        assert!(!source.is_transient());
        assert_eq!(
            err.to_string(),
            "trial trial-1: 1 metric row(s) could not be reported to the sink"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn finish_gives_up_when_the_sink_stays_down() {
        let sink = Arc::new(FakeSink::default());
        sink.errors.lock().unwrap().push_back(unavailable(5));
        let mut c = collector(&sink);
        c.push_line("loss=0.5 accuracy=0.1");
        let err = c.finish().await.unwrap_err();
        assert!(matches!(err, Error::Report { lost: 2, .. }), "{err:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn no_metric_names_is_an_error() {
        let sink: Arc<dyn Sink> = Arc::new(FakeSink::default());
        let config = CollectorConfig::json("trial-1", Vec::new(), ObjectiveType::Minimize);
        let err = Collector::new(config, sink).unwrap_err();
        assert!(err.to_string().starts_with("trial trial-1: no metric names"));
    }

    #[tokio::test(start_paused = true)]
    async fn collect_reader_reads_to_eof() {
        let sink = Arc::new(FakeSink::default());
        let input: &[u8] = b"epoch 1: loss=0.5\nnot utf8 \xff loss=0.25\r\nloss=0.125";
        let summary = collect_reader(input, collector(&sink)).await.unwrap();
        assert_eq!(summary.progress.lines, 3);
        assert_eq!(summary.reported, 3);
        assert_eq!(
            sink.values(),
            [p("loss", "0.5"), p("loss", "0.25"), p("loss", "0.125")]
        );
    }

    /// Real files and real time (the tailer polls the file system).
    #[tokio::test]
    async fn tail_file_follows_a_file_written_in_pieces() {
        use tokio::io::AsyncWriteExt;

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.log");
        let sink = Arc::new(FakeSink::default());
        let (exited, done) = tokio::sync::oneshot::channel::<()>();
        let tail = tokio::spawn(tail_file(path.clone(), collector(&sink), async {
            let _ = done.await;
        }));

        // The file appears late, and lines arrive split across writes.
        tokio::time::sleep(TAIL_POLL * 2).await;
        let mut file = tokio::fs::File::create(&path).await.unwrap();
        for piece in ["epoch 1: loss=0.", "5\nepoch 1: accu", "racy=0.9\n", "loss=0.4"] {
            file.write_all(piece.as_bytes()).await.unwrap();
            file.flush().await.unwrap();
            tokio::time::sleep(TAIL_POLL * 2).await;
        }
        // The unterminated last line is taken once the trainer has exited.
        exited.send(()).unwrap();

        let summary = tail.await.unwrap().unwrap();
        assert_eq!(summary.progress.lines, 3);
        assert_eq!(
            sink.values(),
            [p("loss", "0.5"), p("accuracy", "0.9"), p("loss", "0.4")]
        );
    }

    #[tokio::test]
    async fn tail_file_without_a_file_reports_unavailable() {
        let dir = tempfile::tempdir().unwrap();
        let sink = Arc::new(FakeSink::default());
        let summary = tail_file(
            dir.path().join("never.log"),
            collector(&sink),
            tokio::time::sleep(TAIL_POLL),
        )
        .await
        .unwrap();
        assert!(summary.objective_unavailable);
        assert_eq!(sink.values(), [p("loss", "unavailable")]);
    }
}

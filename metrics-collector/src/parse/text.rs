//! Katib's TEXT metrics format: `name=value` pairs in free-form output lines.
//!
//! Semantics follow Katib's file metrics collector
//! (`pkg/metricscollector/v1beta1/file-metricscollector`):
//! - a line is looked at only if it contains one of the requested metric names;
//! - every match of every filter whose trimmed group 1 equals a requested name gives a
//!   metric whose value is the trimmed group 2, kept as printed;
//! - a leading RFC 3339 timestamp (the first whitespace-separated token) is the line's time.
//!
//! Filters are written in Go's RE2 syntax, as in Katib. Where Rust's `regex` reads the
//! same text differently, the filter is rewritten before compiling: outside a class a `{`
//! or `}` that is not part of a repetition `{n,m}` is a literal (Katib's own example
//! filter starts with `{metricName: ...`), and inside a class `[` is a literal.
//!
//! Differences from Katib, on purpose: matches with an empty value (`loss=`) are dropped
//! (Katib would store an empty string), and with the default filter a value must be a
//! number (`loss=e5` or `loss=-` are dropped), so the database only gets numbers from it.

use std::sync::LazyLock;

use regex::Regex;

use super::{ParsedMetric, parse_rfc3339};

/// Katib's default TEXT filter: group 1 is the name, group 2 the value
/// (`loss=0.3`, `accuracy=.98`, `Score=-7.53e-05`, `loss = 1.5e+2`).
pub const DEFAULT_FILTER: &str = r"([\w|-]+)\s*=\s*([+-]?\d*(\.\d+)?([Ee][+-]?\d+)?)";

/// [`DEFAULT_FILTER`], compiled once per process and only when a line first asks for it:
/// its Unicode `\w` makes compiling it cost milliseconds of CPU, which every `katib run`
/// used to spend before its first trial, even when no trial ever printed a metric.
static DEFAULT_REGEX: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(DEFAULT_FILTER).expect("the default filter is a valid regex"));

/// A `metricsFormat` filter that cannot be used.
///
/// `index` is 0-based (the position in `metricsCollectorSpec.source.filter.metricsFormat`);
/// messages count from 1, as a person reading the list would.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    /// The filter is not a valid regular expression.
    #[error(
        "filter {} {filter:?} is not a valid regular expression; fix the pattern (RE2 syntax, as in Katib)",
        .index + 1
    )]
    InvalidFilter {
        /// 0-based position of the filter.
        index: usize,
        /// The filter as given.
        filter: String,
        /// Why the regex engine refused it.
        #[source]
        source: regex::Error,
    },
    /// The filter compiles but has fewer than two capture groups.
    #[error(
        "filter {} {filter:?} has {groups} capture group{}; a filter needs two: (name) and (value)",
        .index + 1,
        if *.groups == 1 { "" } else { "s" }
    )]
    TooFewGroups {
        /// 0-based position of the filter.
        index: usize,
        /// The filter as given.
        filter: String,
        /// How many capture groups it has.
        groups: usize,
    },
}

/// Parses TEXT output lines with Katib's filters.
#[derive(Clone, Debug)]
pub struct TextParser {
    metric_names: Vec<String>,
    /// The user's filters; empty means [`DEFAULT_REGEX`].
    filters: Vec<Regex>,
    /// True when the default filter is in use: its values must then be numbers.
    numeric_only: bool,
}

impl TextParser {
    /// A parser for `metric_names` (empty names are ignored) using `filters`, or Katib's
    /// [`DEFAULT_FILTER`] when `filters` is empty. User filters replace the default one.
    pub fn new(metric_names: Vec<String>, filters: &[String]) -> Result<Self, ParseError> {
        let metric_names = metric_names.into_iter().filter(|n| !n.is_empty()).collect();
        let numeric_only = filters.is_empty();
        let compiled = filters
            .iter()
            .enumerate()
            .map(|(index, filter)| compile(index, filter))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            metric_names,
            filters: compiled,
            numeric_only,
        })
    }

    /// The metric names this parser looks for.
    pub fn metric_names(&self) -> &[String] {
        &self.metric_names
    }

    /// The metrics found in one line (without its line terminator), in the order of the
    /// filters and, per filter, of the matches.
    pub fn parse_line(&self, line: &str) -> Vec<ParsedMetric> {
        if !self.metric_names.iter().any(|m| line.contains(m.as_str())) {
            return Vec::new();
        }
        let time = line.split_whitespace().next().and_then(parse_rfc3339);
        let mut out = Vec::new();
        let filters = if self.numeric_only {
            std::slice::from_ref(&*DEFAULT_REGEX)
        } else {
            self.filters.as_slice()
        };
        for filter in filters {
            for caps in filter.captures_iter(line) {
                let (Some(name), Some(value)) = (caps.get(1), caps.get(2)) else {
                    continue;
                };
                let name = name.as_str().trim();
                let value = value.as_str().trim();
                if value.is_empty() || !self.metric_names.iter().any(|m| m == name) {
                    continue;
                }
                if self.numeric_only && value.parse::<f64>().is_err() {
                    continue;
                }
                out.push(ParsedMetric {
                    time,
                    name: name.to_owned(),
                    value: value.to_owned(),
                });
            }
        }
        out
    }
}

fn compile(index: usize, filter: &str) -> Result<Regex, ParseError> {
    let regex =
        Regex::new(&katib_api::goregex::translate(filter)).map_err(|source| ParseError::InvalidFilter {
            index,
            filter: filter.to_owned(),
            source,
        })?;
    // captures_len counts the implicit group 0 (the whole match).
    let groups = regex.captures_len() - 1;
    if groups < 2 {
        return Err(ParseError::TooFewGroups {
            index,
            filter: filter.to_owned(),
            groups,
        });
    }
    Ok(regex)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(ns: &[&str]) -> Vec<String> {
        ns.iter().map(|s| s.to_string()).collect()
    }

    fn pairs(parser: &TextParser, line: &str) -> Vec<(String, String)> {
        parser
            .parse_line(line)
            .into_iter()
            .map(|m| (m.name, m.value))
            .collect()
    }

    fn p(name: &str, value: &str) -> (String, String) {
        (name.to_owned(), value.to_owned())
    }

    #[test]
    fn default_filter_reads_katib_examples() {
        let parser = TextParser::new(names(&["loss", "accuracy", "Score", "acc"]), &[]).unwrap();
        assert_eq!(pairs(&parser, "loss=0.3"), [p("loss", "0.3")]);
        assert_eq!(pairs(&parser, "accuracy=.98"), [p("accuracy", ".98")]);
        assert_eq!(pairs(&parser, "Score=-7.53e-05"), [p("Score", "-7.53e-05")]);
        assert_eq!(
            pairs(&parser, "epoch 3: loss = 1.5e+2 acc=0.9"),
            [p("loss", "1.5e+2"), p("acc", "0.9")]
        );
        assert!(parser.parse_line("loss=0.3").iter().all(|m| m.time.is_none()));
    }

    #[test]
    fn default_filter_skips_other_names_and_empty_values() {
        let parser = TextParser::new(names(&["loss"]), &[]).unwrap();
        // The line contains "loss" but only as part of other names.
        assert!(pairs(&parser, "val_loss=0.1 lossy=3").is_empty());
        assert!(pairs(&parser, "loss=").is_empty());
        assert!(pairs(&parser, "loss=abc").is_empty());
        assert!(pairs(&parser, "loss=- loss=e5").is_empty());
        assert!(pairs(&parser, "accuracy=0.9").is_empty());
        assert_eq!(
            pairs(&parser, "loss=1 loss=+2"),
            [p("loss", "1"), p("loss", "+2")]
        );
    }

    #[test]
    fn leading_timestamp_is_the_line_time() {
        let parser = TextParser::new(names(&["loss"]), &[]).unwrap();
        let got = parser.parse_line("2024-05-01T10:00:00Z loss=0.5");
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].value, "0.5");
        assert_eq!(got[0].time.unwrap().to_string(), "2024-05-01T10:00:00Z");

        let got = parser.parse_line("2024-05-01T12:00:00.123456789+02:00 loss=0.25");
        assert_eq!(got[0].time.unwrap().to_string(), "2024-05-01T10:00:00.123456789Z");

        // Not first, or not a timestamp: no time.
        let got = parser.parse_line("step 2024-05-01T10:00:00Z loss=0.5");
        assert_eq!(got[0].time, None);
    }

    #[test]
    fn user_filters_replace_the_default() {
        let filter = r"{metricName: ([\w|-]+), metricValue: ((-?\d+)(\.\d+)?)}".to_owned();
        let parser = TextParser::new(names(&["accuracy", "loss"]), &[filter]).unwrap();
        assert_eq!(
            pairs(
                &parser,
                "{metricName: accuracy, metricValue: 0.8123};{metricName: loss, metricValue: 0.4567}"
            ),
            [p("accuracy", "0.8123"), p("loss", "0.4567")]
        );
        // The default filter is no longer used.
        assert!(pairs(&parser, "accuracy=0.5").is_empty());
    }

    #[test]
    fn several_user_filters_all_apply() {
        let filters = names(&[r"(\w+):\s*(\S+)", r"(\w+)=(\d+)"]);
        let parser = TextParser::new(names(&["loss", "step"]), &filters).unwrap();
        assert_eq!(
            pairs(&parser, "loss: 0.5 step=7"),
            [p("loss", "0.5"), p("step", "7")]
        );
    }

    #[test]
    fn bad_filters_are_rejected_with_a_reason() {
        let err = TextParser::new(names(&["loss"]), &names(&[r"(\w+)=(\d+)", r"(\w+)="])).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"filter 2 "(\\w+)=" has 1 capture group; a filter needs two: (name) and (value)"#
        );
        assert!(matches!(
            err,
            ParseError::TooFewGroups {
                index: 1,
                groups: 1,
                ..
            }
        ));

        let err = TextParser::new(names(&["loss"]), &names(&["loss"])).unwrap_err();
        assert!(err.to_string().contains("has 0 capture groups"), "{err}");

        let err = TextParser::new(names(&["loss"]), &names(&[r"(\w+=(\d+)"])).unwrap_err();
        assert!(matches!(err, ParseError::InvalidFilter { index: 0, .. }));
        assert!(
            err.to_string()
                .starts_with(r#"filter 1 "(\\w+=(\\d+)" is not a valid regular expression"#)
        );
        let source = std::error::Error::source(&err).unwrap().to_string();
        assert!(source.contains("unclosed group"), "{source}");
    }

    #[test]
    fn go_style_literal_braces_in_user_filters() {
        let parser = TextParser::new(names(&["loss"]), &names(&[r"{(\w+)}\s*(\d{2})"])).unwrap();
        assert_eq!(pairs(&parser, "{loss} 123"), [p("loss", "12")]);
    }
}

//! Katib's JSON metrics format: one JSON object per line, e.g.
//! `{"timestamp": 1714557600.25, "loss": "0.31", "accuracy": 0.9}`.
//!
//! Differences from Katib's file metrics collector, on purpose:
//! - values may be JSON numbers as well as strings (Katib ignores numbers, which only fits
//!   cloudml-hypertune's output); numbers are written in their shortest round-trip form;
//! - a numeric `timestamp` is Unix seconds with a real fractional part (Katib reads the
//!   fraction digits as a nanosecond count, so `.5` became 5 ns);
//! - a line that is not a JSON object is skipped ([`JsonLine::Skipped`]) instead of
//!   aborting the whole report.

use serde_json::{Map, Number, Value};

use super::{ParsedMetric, parse_rfc3339};

/// What one line gave.
#[derive(Debug)]
pub enum JsonLine {
    /// The line was a JSON object (or blank); these are its requested metrics, possibly none.
    Parsed(Vec<ParsedMetric>),
    /// The line was not a JSON object; the caller logs it (at debug) and goes on.
    Skipped(Skipped),
}

/// Why a line was skipped.
#[derive(Debug, thiserror::Error)]
pub enum Skipped {
    /// The line is not valid JSON.
    #[error("line is not JSON")]
    NotJson(#[source] serde_json::Error),
    /// The line is valid JSON but not an object.
    #[error("line is a JSON {0}, not an object")]
    NotObject(&'static str),
}

/// Parses JSON-lines output.
#[derive(Clone, Debug)]
pub struct JsonParser {
    metric_names: Vec<String>,
}

impl JsonParser {
    /// A parser for `metric_names` (empty names are ignored).
    pub fn new(metric_names: Vec<String>) -> Self {
        let metric_names = metric_names.into_iter().filter(|n| !n.is_empty()).collect();
        Self { metric_names }
    }

    /// The metric names this parser looks for.
    pub fn metric_names(&self) -> &[String] {
        &self.metric_names
    }

    /// The requested metrics in one line, in the order of the metric names.
    pub fn parse_line(&self, line: &str) -> JsonLine {
        let line = line.trim();
        if line.is_empty() {
            return JsonLine::Parsed(Vec::new());
        }
        let object: Map<String, Value> = match serde_json::from_str::<Value>(line) {
            Ok(Value::Object(object)) => object,
            Ok(other) => return JsonLine::Skipped(Skipped::NotObject(kind(&other))),
            Err(e) => return JsonLine::Skipped(Skipped::NotJson(e)),
        };
        let time = match object.get("timestamp") {
            Some(Value::String(s)) => parse_rfc3339(s),
            Some(Value::Number(n)) => unix_seconds(n),
            _ => None,
        };
        let metrics = self
            .metric_names
            .iter()
            .filter_map(|name| {
                let value = match object.get(name)? {
                    Value::String(s) if !s.trim().is_empty() => s.clone(),
                    Value::Number(n) => n.to_string(),
                    _ => return None,
                };
                Some(ParsedMetric {
                    time,
                    name: name.clone(),
                    value,
                })
            })
            .collect();
        JsonLine::Parsed(metrics)
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Unix seconds, fraction included, as a timestamp.
///
/// The fraction is read from the number's decimal text, not from the `f64`, so `.25`
/// gives exactly 250 ms and nanosecond digits survive as far as the `f64` kept them.
fn unix_seconds(n: &Number) -> Option<jiff::Timestamp> {
    if let Some(seconds) = n.as_i64() {
        return jiff::Timestamp::from_second(seconds).ok();
    }
    let text = n.to_string();
    if let Some((int, frac)) = text.split_once('.')
        && !frac.contains(['e', 'E'])
        && frac.bytes().all(|b| b.is_ascii_digit())
    {
        let seconds: i64 = int.parse().ok()?;
        let digits = &frac[..frac.len().min(9)];
        let scale = 10_i32.pow(9 - digits.len() as u32);
        let mut nanos = digits.parse::<i32>().ok()? * scale;
        if int.starts_with('-') {
            nanos = -nanos;
        }
        return jiff::Timestamp::new(seconds, nanos).ok();
    }
    // Exponent notation or out of i64 range: go through the float.
    let f = n.as_f64()?;
    if !f.is_finite() || f.abs() > 1e15 {
        return None;
    }
    let seconds = f.trunc();
    let nanos = ((f - seconds) * 1e9).round() as i32;
    jiff::Timestamp::new(seconds as i64, nanos.clamp(-999_999_999, 999_999_999)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parser() -> JsonParser {
        JsonParser::new(vec!["loss".into(), "accuracy".into()])
    }

    fn parsed(line: &str) -> Vec<ParsedMetric> {
        match parser().parse_line(line) {
            JsonLine::Parsed(m) => m,
            JsonLine::Skipped(why) => panic!("{line:?} skipped: {why}"),
        }
    }

    fn pairs(line: &str) -> Vec<(String, String)> {
        parsed(line).into_iter().map(|m| (m.name, m.value)).collect()
    }

    fn p(name: &str, value: &str) -> (String, String) {
        (name.to_owned(), value.to_owned())
    }

    #[test]
    fn string_and_number_values() {
        assert_eq!(
            pairs(r#"{"loss": "0.31", "accuracy": 0.9, "epoch": 3}"#),
            [p("loss", "0.31"), p("accuracy", "0.9")]
        );
        assert_eq!(
            pairs(r#"{"loss": 2, "accuracy": -7.53e-05}"#),
            [p("loss", "2"), p("accuracy", "-0.0000753")]
        );
        assert_eq!(pairs(r#"{"loss": 0.1}"#), [p("loss", "0.1")]);
        // null, booleans, objects and blank strings are not values.
        assert!(pairs(r#"{"loss": null, "accuracy": true}"#).is_empty());
        assert!(pairs(r#"{"loss": "  ", "accuracy": {"v": 1}}"#).is_empty());
        assert!(pairs("   ").is_empty());
    }

    #[test]
    fn timestamps() {
        let t = |line: &str| parsed(line)[0].time.map(|t| t.to_string());
        assert_eq!(t(r#"{"loss": "1"}"#), None);
        assert_eq!(
            t(r#"{"timestamp": "2024-05-01T12:00:00.5+02:00", "loss": "1"}"#).as_deref(),
            Some("2024-05-01T10:00:00.5Z")
        );
        assert_eq!(
            t(r#"{"timestamp": 1714557600, "loss": "1"}"#).as_deref(),
            Some("2024-05-01T10:00:00Z")
        );
        // Katib read ".25" as 25 ns; it is a quarter second.
        assert_eq!(
            t(r#"{"timestamp": 1714557600.25, "loss": "1"}"#).as_deref(),
            Some("2024-05-01T10:00:00.25Z")
        );
        assert_eq!(
            t(r#"{"timestamp": 1714557600.123456, "loss": "1"}"#).as_deref(),
            Some("2024-05-01T10:00:00.123456Z")
        );
        assert_eq!(
            t(r#"{"timestamp": -1.5, "loss": "1"}"#).as_deref(),
            Some("1969-12-31T23:59:58.5Z")
        );
        assert_eq!(
            t(r#"{"timestamp": 1.7145576e9, "loss": "1"}"#).as_deref(),
            Some("2024-05-01T10:00:00Z")
        );
        assert_eq!(t(r#"{"timestamp": "yesterday", "loss": "1"}"#), None);
        assert_eq!(t(r#"{"timestamp": 1e300, "loss": "1"}"#), None);
    }

    #[test]
    fn junk_lines_are_skipped_not_fatal() {
        let p = parser();
        assert!(matches!(
            p.parse_line("Epoch 1/10 ..."),
            JsonLine::Skipped(Skipped::NotJson(_))
        ));
        assert!(matches!(
            p.parse_line(r#"{"loss": "0.3""#),
            JsonLine::Skipped(Skipped::NotJson(_))
        ));
        let JsonLine::Skipped(why) = p.parse_line("[1, 2]") else {
            panic!("array not skipped")
        };
        assert_eq!(why.to_string(), "line is a JSON array, not an object");
        assert!(matches!(
            p.parse_line("42"),
            JsonLine::Skipped(Skipped::NotObject("number"))
        ));
    }
}

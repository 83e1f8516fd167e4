//! Pure parsers: one line of trial output in, metrics out. No I/O, no clocks.
//!
//! - [`text`]: Katib's TEXT format, `name=value` pairs found with regex filters.
//! - [`json`]: Katib's JSON format, one JSON object per line.
//!
//! Both return [`ParsedMetric`]s whose `time` is the timestamp the line carried, if any;
//! stamping the others is the [`Collector`](crate::Collector)'s job.

pub mod json;
pub mod text;

pub use json::{JsonLine, JsonParser, Skipped};
pub use text::{DEFAULT_FILTER, ParseError, TextParser};

/// One metric value found in a line of output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParsedMetric {
    /// The timestamp the line carried, or `None` when it had none.
    pub time: Option<jiff::Timestamp>,
    /// The metric name, one of the names the parser was asked for.
    pub name: String,
    /// The value exactly as printed (Katib stores values as strings), e.g. `-7.53e-05`.
    pub value: String,
}

/// Parses an RFC 3339 timestamp such as `2024-05-01T10:00:00Z` or
/// `2024-05-01T12:00:00.123456+02:00`.
///
/// jiff's parser also takes other ISO 8601 shapes (basic format, no seconds); the shape
/// check here keeps to what Go's `time.RFC3339Nano` accepts, as Katib does.
pub(crate) fn parse_rfc3339(s: &str) -> Option<jiff::Timestamp> {
    let b = s.as_bytes();
    let shape_ok = b.len() >= 20
        && b[4] == b'-'
        && b[7] == b'-'
        && matches!(b[10], b'T' | b't')
        && b[13] == b':'
        && b[16] == b':'
        && matches!(b[b.len() - 1], b'Z' | b'z' | b'0'..=b'9');
    if !shape_ok {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::parse_rfc3339;

    #[test]
    fn rfc3339_shapes() {
        let ts = |s: &str| parse_rfc3339(s).map(|t| t.to_string());
        assert_eq!(
            ts("2024-05-01T10:00:00Z").as_deref(),
            Some("2024-05-01T10:00:00Z")
        );
        assert_eq!(
            ts("2024-05-01T12:00:00.25+02:00").as_deref(),
            Some("2024-05-01T10:00:00.25Z")
        );
        assert_eq!(
            ts("2024-05-01t10:00:00z").as_deref(),
            Some("2024-05-01T10:00:00Z")
        );
        for bad in [
            "2024-05-01",
            "2024-05-01T10:00Z",
            "20240501T100000Z",
            "epoch",
            "2024-05-01T10:00:00",
        ] {
            assert_eq!(ts(bad), None, "{bad}");
        }
    }
}

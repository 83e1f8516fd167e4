//! katib-rs additions to Katib's gRPC protocol. They travel in gRPC metadata, which
//! Katib's own clients and servers ignore, so the wire contract stays Katib's.

/// Request metadata on `ReportObservationLog` (any value): asks db-manager to answer, in
/// the response metadata [`STORED_ROWS`], how many observation rows the trial has once
/// this report is stored. A collector that knows every row it sent compares the two: when
/// they match, the trial's observation log is exactly those rows and need not be read back.
pub const COUNT_ROWS: &str = "katib-rs-count-rows";

/// Response metadata on `ReportObservationLog`: the trial's observation rows, counted just
/// after the report was stored (decimal). Absent when not asked, or when counting failed.
pub const STORED_ROWS: &str = "katib-rs-stored-rows";

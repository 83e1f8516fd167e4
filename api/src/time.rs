//! Timestamps as Katib writes them in status fields (`metav1.Time`: RFC 3339, seconds).

/// Formats a timestamp the way Kubernetes serialises `metav1.Time` (`2006-01-02T15:04:05Z`).
pub fn rfc3339(ts: jiff::Timestamp) -> String {
    ts.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// The current time in `metav1.Time` form.
pub fn now_rfc3339() -> String {
    rfc3339(jiff::Timestamp::now())
}

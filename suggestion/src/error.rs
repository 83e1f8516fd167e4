//! The crate's error types and their single mapping to gRPC status codes.

use std::fmt;

/// Problems with what the user wrote: the search space or the algorithm settings.
///
/// Validation collects *every* problem it finds, so a user fixes them all in one go. Each
/// problem names the parameter or setting and the field, and where it helps, how to fix it:
/// `parameter "lr": feasibleSpace.min "abc" is not a number`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct SettingsError {
    problems: Vec<String>,
}

impl SettingsError {
    /// One problem.
    pub fn new(problem: impl Into<String>) -> Self {
        SettingsError {
            problems: vec![problem.into()],
        }
    }

    /// Every problem found, in the order found.
    pub fn problems(&self) -> &[String] {
        &self.problems
    }

    /// `Ok(())` if `problems` is empty, else the error holding them all.
    pub fn check(problems: Vec<String>) -> Result<(), SettingsError> {
        if problems.is_empty() {
            Ok(())
        } else {
            Err(SettingsError { problems })
        }
    }

    /// Both results if both are fine, else every problem of either.
    pub fn both<A, B>(
        a: Result<A, SettingsError>,
        b: Result<B, SettingsError>,
    ) -> Result<(A, B), SettingsError> {
        match (a, b) {
            (Ok(a), Ok(b)) => Ok((a, b)),
            (Err(e), Ok(_)) | (Ok(_), Err(e)) => Err(e),
            (Err(mut e), Err(f)) => {
                e.problems.extend(f.problems);
                Err(e)
            }
        }
    }
}

impl fmt::Display for SettingsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.problems.join("; "))
    }
}

/// Why `GetSuggestions` / `ValidateAlgorithmSettings` could not answer.
#[derive(Debug, thiserror::Error)]
pub enum SuggestError {
    /// The experiment's search space or algorithm settings are invalid.
    #[error(transparent)]
    Settings(#[from] SettingsError),
    /// The request itself is malformed (a required field is missing, a count is negative).
    #[error("{0}")]
    InvalidRequest(String),
    /// The experiment asks for an algorithm this service does not serve.
    #[error("unknown algorithm \"{name}\"; this service serves: {}", .served.join(", "))]
    UnknownAlgorithm {
        /// The requested `algorithmName`.
        name: String,
        /// The names this service serves, sorted.
        served: Vec<&'static str>,
    },
    /// An algorithm broke its own contract or its computation failed. A bug, not the user's
    /// doing.
    #[error("algorithm {algorithm} failed: {message}")]
    Internal {
        /// The algorithm's Katib name.
        algorithm: &'static str,
        /// What went wrong.
        message: String,
    },
    /// The blocking task running the algorithm panicked or was cancelled.
    #[error("the suggestion task did not finish (it panicked or was cancelled)")]
    Task {
        /// The join failure.
        #[source]
        source: tokio::task::JoinError,
    },
}

impl From<SuggestError> for tonic::Status {
    fn from(err: SuggestError) -> Self {
        match &err {
            SuggestError::Settings(_)
            | SuggestError::InvalidRequest(_)
            | SuggestError::UnknownAlgorithm { .. } => tonic::Status::invalid_argument(err.to_string()),
            SuggestError::Internal { .. } | SuggestError::Task { .. } => {
                tracing::error!(error = %err, source = ?std::error::Error::source(&err), "suggestion failed");
                tonic::Status::internal(err.to_string())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collects_problems_from_both_sides() {
        let a: Result<(), _> = Err(SettingsError::new("first"));
        let b: Result<(), _> = Err(SettingsError::new("second"));
        let err = SettingsError::both(a, b).unwrap_err();
        assert_eq!(err.problems(), ["first", "second"]);
        assert_eq!(err.to_string(), "first; second");
        assert!(SettingsError::check(vec![]).is_ok());
    }

    #[test]
    fn maps_to_status_codes() {
        let status = tonic::Status::from(SuggestError::UnknownAlgorithm {
            name: "foo".into(),
            served: vec!["grid", "random"],
        });
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert_eq!(
            status.message(),
            "unknown algorithm \"foo\"; this service serves: grid, random"
        );
        let status = tonic::Status::from(SuggestError::Internal {
            algorithm: "random",
            message: "boom".into(),
        });
        assert_eq!(status.code(), tonic::Code::Internal);
    }
}

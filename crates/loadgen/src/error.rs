//! The two kinds of failure: a setup error stops the run ([`LoadgenError`]);
//! a request that fails is data, recorded with its [`ErrorKind`].

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Errors that stop the generator (bad flags, unreadable files, no server).
#[derive(Debug, thiserror::Error)]
pub enum LoadgenError {
    #[error("invalid {what}: {why}")]
    Config { what: &'static str, why: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} line {line}: {why}")]
    Dataset {
        path: PathBuf,
        line: usize,
        why: String,
    },
    #[error("building the HTTP client: {0}")]
    Http(#[from] reqwest::Error),
    #[error("{route}: {why}")]
    Server { route: String, why: String },
}

impl LoadgenError {
    pub(crate) fn config(what: &'static str, why: impl Into<String>) -> Self {
        Self::Config {
            what,
            why: why.into(),
        }
    }
}

/// Result with [`LoadgenError`].
pub type Result<T, E = LoadgenError> = std::result::Result<T, E>;

/// Why a request failed (`METRICS.md`: "ended with an error status, a broken
/// stream or a timeout"). Serialized in snake case in `requests.jsonl` and in
/// the per-level `errors` counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// HTTP 429: the server shed load.
    #[serde(rename = "http_429")]
    Http429,
    /// Any other 4xx status.
    #[serde(rename = "http_4xx")]
    Http4xx,
    /// A 5xx status.
    #[serde(rename = "http_5xx")]
    Http5xx,
    /// Any other non-2xx status (1xx/3xx reaching us is a protocol surprise).
    HttpOther,
    /// The connection could not be opened or broke before a response head.
    Connect,
    /// `--timeout` passed before the response ended.
    Timeout,
    /// The body ended (or broke) before the API's final event.
    BrokenStream,
    /// The server sent an error event inside a 200 stream.
    StreamError,
    /// The body (or an event) was not the API's JSON.
    InvalidBody,
}

impl ErrorKind {
    /// The kind for a non-success HTTP status.
    pub fn from_status(status: u16) -> Self {
        match status {
            429 => Self::Http429,
            400..=499 => Self::Http4xx,
            500..=599 => Self::Http5xx,
            _ => Self::HttpOther,
        }
    }

    /// The snake-case name used in files.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http429 => "http_429",
            Self::Http4xx => "http_4xx",
            Self::Http5xx => "http_5xx",
            Self::HttpOther => "http_other",
            Self::Connect => "connect",
            Self::Timeout => "timeout",
            Self::BrokenStream => "broken_stream",
            Self::StreamError => "stream_error",
            Self::InvalidBody => "invalid_body",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_kinds() {
        assert_eq!(ErrorKind::from_status(429), ErrorKind::Http429);
        assert_eq!(ErrorKind::from_status(404), ErrorKind::Http4xx);
        assert_eq!(ErrorKind::from_status(503), ErrorKind::Http5xx);
        assert_eq!(ErrorKind::from_status(302), ErrorKind::HttpOther);
        // Files and the serde name agree.
        let json = serde_json::to_string(&ErrorKind::Http5xx).unwrap();
        assert_eq!(json, format!("\"{}\"", ErrorKind::Http5xx.as_str()));
    }
}

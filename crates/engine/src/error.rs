//! The engine's one error type: every failure names what it was about
//! (a metadata key, a tensor, a token) so a user can fix the file or the call.

use std::path::PathBuf;

/// Everything the engine can fail with.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a readable GGUF file: {reason}")]
    NotGguf { path: PathBuf, reason: String },
    #[error("GGUF metadata key `{key}`: {reason}")]
    Metadata { key: String, reason: String },
    #[error("GGUF tensor `{name}`: {reason}")]
    Tensor { name: String, reason: String },
    #[error("unsupported model: {0}")]
    Unsupported(String),
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error("chat template: {0}")]
    ChatTemplate(String),
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    #[error("context full: sequence would reach {needed} tokens, the model's context is {limit}")]
    ContextFull { needed: usize, limit: usize },
    #[error("KV cache: sequence would reach {needed} positions, it reserved {reserved}")]
    KvReservation { needed: usize, reserved: usize },
    #[error("model fetch: {0}")]
    Fetch(String),
    #[error("compute: {0}")]
    Compute(String),
}

impl EngineError {
    pub(crate) fn metadata(key: &str, reason: impl Into<String>) -> Self {
        Self::Metadata {
            key: key.to_string(),
            reason: reason.into(),
        }
    }

    pub(crate) fn tensor(name: &str, reason: impl Into<String>) -> Self {
        Self::Tensor {
            name: name.to_string(),
            reason: reason.into(),
        }
    }
}

/// Result with [`EngineError`].
pub type Result<T, E = EngineError> = std::result::Result<T, E>;

//! Everything that can go wrong while predicting, one variant per cause.

use std::path::PathBuf;

/// A prediction error; each message says what to fix.
#[derive(Debug, thiserror::Error)]
pub enum PredictError {
    /// The hardware catalog is not valid TOML or misses a field.
    #[error("{file}: {reason}")]
    Catalog { file: String, reason: String },
    /// An instance the catalog does not know.
    #[error("unknown instance `{0}`: hardware.toml knows {1}")]
    UnknownInstance(String, String),
    /// A model name that is neither a preset, a GGUF file nor a config.json.
    #[error("model `{0}`: {1}")]
    Model(String, String),
    /// A quantization the predictor has no bytes-per-weight figure for.
    #[error("unknown quantization `{0}`; known: {1}")]
    UnknownQuantization(String, String),
    /// A tensor-parallel degree the instance cannot give.
    #[error("tensor-parallel degree {tp} on {instance}: it has {devices} accelerator(s); choose 1..={devices}")]
    Tp {
        instance: String,
        tp: u32,
        devices: u32,
    },
    /// Fewer measured runs than the fit needs.
    #[error("calibration needs at least {need} measured runs, got {got}")]
    TooFewRuns { need: usize, got: usize },
    /// A file could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

pub type Result<T> = std::result::Result<T, PredictError>;

//! Every way a study can fail before or around its measurements. Faults of a
//! single deployment are not here: they are recorded in its rows and the
//! study goes on.

use std::path::PathBuf;

/// A study-level error.
#[derive(Debug, thiserror::Error)]
pub enum StudyError {
    /// A config or price file that cannot be used, with where and why.
    #[error("{file}:{line}: {reason}")]
    Config {
        file: String,
        line: usize,
        reason: String,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A saved file (runs.jsonl, the 2023 CSV) that does not parse.
    #[error("{path}:{line}: {reason}")]
    Data {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    #[error(transparent)]
    Loadgen(#[from] servebench_loadgen::LoadgenError),
    #[error(transparent)]
    Predict(#[from] servebench_predict::PredictError),
}

impl StudyError {
    /// An I/O error's mapper for `path`.
    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io { path, source }
    }
}

pub type Result<T> = std::result::Result<T, StudyError>;

/// The 1-based line of byte `offset` in `text`.
pub fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// A `toml` error as [`StudyError::Config`], with the line its span starts on.
pub fn toml_error(file: &str, text: &str, e: &toml::de::Error) -> StudyError {
    StudyError::Config {
        file: file.to_string(),
        line: e.span().map_or(1, |s| line_of(text, s.start)),
        reason: e.message().trim().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_count_from_one() {
        assert_eq!(line_of("a\nb\nc", 0), 1);
        assert_eq!(line_of("a\nb\nc", 2), 2);
        assert_eq!(line_of("a\nb\nc", 4), 3);
        assert_eq!(line_of("a", 99), 1);
    }
}

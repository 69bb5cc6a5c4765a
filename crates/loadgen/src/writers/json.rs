//! `summary.json`: `{"schema", "interrupted", "levels": [RunSummary...]}`.

use serde::{Deserialize, Serialize};

use crate::summary::RunSummary;

/// Names the layout of `summary.json`; bumped when a field changes meaning.
pub const SCHEMA: &str = "servebench.bench/1";

/// The whole file (readable back by the study crate).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SummaryFile {
    pub schema: String,
    /// Ctrl-C cut the run short.
    pub interrupted: bool,
    /// One entry per level, in the order run.
    pub levels: Vec<RunSummary>,
}

/// The file's text.
pub fn summary_json(levels: &[RunSummary], interrupted: bool) -> String {
    let file = SummaryFile {
        schema: SCHEMA.to_string(),
        interrupted,
        levels: levels.to_vec(),
    };
    // Plain data of our own types; serializing cannot fail.
    let mut s = serde_json::to_string_pretty(&file).unwrap_or_default();
    s.push('\n');
    s
}

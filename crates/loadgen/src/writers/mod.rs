//! Output files of `--out DIR` and the final table, one file per format.

mod csv;
mod json;
mod jsonl;
mod table;

pub use self::csv::{cell as csv_cell, summary_cells, summary_columns, summary_csv};
pub use self::json::{summary_json, SummaryFile, SCHEMA};
pub use self::jsonl::requests_jsonl;
pub use self::table::table;

use std::path::Path;

use crate::error::{LoadgenError, Result};
use crate::run::LevelResult;

/// Writes `summary.json`, `summary.csv` and `requests.jsonl` into `dir`
/// (created if missing).
pub fn write_all(dir: &Path, results: &[LevelResult], interrupted: bool) -> Result<()> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| LoadgenError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let summaries: Vec<_> = results.iter().map(|r| r.summary.clone()).collect();
    let files = [
        ("summary.json", summary_json(&summaries, interrupted)),
        ("summary.csv", summary_csv(&summaries)),
        ("requests.jsonl", requests_jsonl(results)),
    ];
    for (name, text) in files {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(io(&path))?;
    }
    Ok(())
}

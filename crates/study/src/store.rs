//! `runs.jsonl`: one [`RunRow`] per line, appended as each run ends, so an
//! interrupted study keeps what it measured and `--resume` and
//! `servebench report --from` read it back.

use std::io::Write;
use std::path::Path;

use crate::error::{Result, StudyError};
use crate::row::RunRow;

pub const RUNS_JSONL: &str = "runs.jsonl";

/// Appends one row (the file is created if missing).
pub fn append(dir: &Path, row: &RunRow) -> Result<()> {
    let path = dir.join(RUNS_JSONL);
    let mut line = serde_json::to_string(row).map_err(|e| StudyError::Data {
        path: path.clone(),
        line: 0,
        reason: e.to_string(),
    })?;
    line.push('\n');
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut f| f.write_all(line.as_bytes()))
        .map_err(StudyError::io(&path))
}

/// Rewrites the file with exactly `rows`.
pub fn write(dir: &Path, rows: &[RunRow]) -> Result<()> {
    let path = dir.join(RUNS_JSONL);
    let mut text = String::new();
    for r in rows {
        text.push_str(&serde_json::to_string(r).map_err(|e| StudyError::Data {
            path: path.clone(),
            line: 0,
            reason: e.to_string(),
        })?);
        text.push('\n');
    }
    std::fs::write(&path, text).map_err(StudyError::io(&path))
}

/// Every saved row; an absent file is no rows. A later row for the same
/// deployment and level replaces an earlier one (a resumed run).
pub fn read(dir: &Path) -> Result<Vec<RunRow>> {
    read_file(&dir.join(RUNS_JSONL))
}

/// [`read`] of a `runs.jsonl` given by its own path.
pub fn read_file(path: &Path) -> Result<Vec<RunRow>> {
    let path = path.to_path_buf();
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(StudyError::io(&path)(e)),
    };
    let mut rows: Vec<RunRow> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let row: RunRow = serde_json::from_str(line).map_err(|e| StudyError::Data {
            path: path.clone(),
            line: n + 1,
            reason: e.to_string(),
        })?;
        match rows.iter_mut().find(|r| r.key() == row.key()) {
            Some(old) => *old = row,
            None => rows.push(row),
        }
    }
    Ok(rows)
}

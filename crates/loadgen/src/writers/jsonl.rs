//! `requests.jsonl`: one line per request (failed and dropped included),
//! each a [`RequestRecord`] with the level's label in `level`.

use serde::Serialize;

use crate::record::RequestRecord;
use crate::run::LevelResult;

#[derive(Serialize)]
struct Line<'a> {
    level: &'a str,
    #[serde(flatten)]
    record: &'a RequestRecord,
}

/// The file's text.
pub fn requests_jsonl(results: &[LevelResult]) -> String {
    let mut out = String::new();
    for r in results {
        for record in &r.records {
            let line = Line {
                level: &r.summary.info.level,
                record,
            };
            out.push_str(&serde_json::to_string(&line).unwrap_or_default());
            out.push('\n');
        }
    }
    out
}

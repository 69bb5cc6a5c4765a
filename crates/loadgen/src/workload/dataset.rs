//! `--dataset FILE.jsonl`: one JSON object a line, `{"prompt": TEXT}` (or
//! `"inputs"`, TGI's name) with an optional `"max_tokens"` (or
//! `"max_new_tokens"`) overriding `--max-new-tokens`.

use std::path::Path;

use serde::Deserialize;

use super::Prompt;
use crate::error::{LoadgenError, Result};

#[derive(Deserialize)]
struct Line {
    #[serde(alias = "inputs")]
    prompt: String,
    #[serde(default, alias = "max_new_tokens")]
    max_tokens: Option<u32>,
}

/// Reads a dataset; blank lines are skipped, anything else must parse.
pub fn load_dataset(path: &Path, default_max_new_tokens: u32) -> Result<Vec<Prompt>> {
    let text = std::fs::read_to_string(path).map_err(|source| LoadgenError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        if raw.trim().is_empty() {
            continue;
        }
        let line: Line = serde_json::from_str(raw).map_err(|e| LoadgenError::Dataset {
            path: path.to_path_buf(),
            line: i + 1,
            why: e.to_string(),
        })?;
        out.push(Prompt::new(
            line.prompt,
            line.max_tokens.unwrap_or(default_max_new_tokens),
        ));
    }
    if out.is_empty() {
        return Err(LoadgenError::Dataset {
            path: path.to_path_buf(),
            line: 0,
            why: "no prompts".into(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_with_and_without_limits() {
        let dir = std::env::temp_dir().join(format!("sb-dataset-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("d.jsonl");
        std::fs::write(
            &f,
            "{\"prompt\":\"a\"}\n\n{\"inputs\":\"b\",\"max_new_tokens\":7}\n",
        )
        .unwrap();
        let got = load_dataset(&f, 50).unwrap();
        assert_eq!(got, [Prompt::new("a", 50), Prompt::new("b", 7)]);
        std::fs::write(&f, "{\"prompt\":\"a\"}\n{\"max_tokens\":3}\n").unwrap();
        let err = load_dataset(&f, 50).unwrap_err().to_string();
        assert!(err.contains("line 2"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

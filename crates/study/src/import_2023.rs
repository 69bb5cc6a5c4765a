//! Reads the 2023 study's raw CSV (`results/sagemaker.csv` of
//! philschmid/text-generation-inference-tests, in `shared/data/`) into priced
//! rows, so that `servebench report --import-2023` writes the same report
//! from the study's own numbers.

use std::path::Path;

use crate::cost::TokensPerSecond;
use crate::error::{Result, StudyError};
use crate::prices::Catalog;
use crate::row::{Identity, RunRow};

/// What the latency column means for imported rows.
pub const LATENCY_METRIC: &str =
    "server-side ms/token (the 2023 CSV's Latency (ms/token) med, TGI time_per_token)";

/// The CSV's columns this import reads (the study's spelling, typo included).
const MODEL: &str = "Model Id";
const INSTANCE: &str = "Instance";
const QUANTIZATION: &str = "quantization";
const USERS: &str = "Virtual Users";
const THROUGHPUT: &str = "Thorughput (tokens/second)";
const LATENCY_MED: &str = "Latency (ms/token) med";

/// "meta-llama/Llama-2-7b-hf" -> "Llama 2 7B"; "TheBloke/Llama-2-70B-GPTQ" -> "Llama 2 70B".
pub fn model_label(model_id: &str) -> String {
    let name = model_id.rsplit('/').next().unwrap_or(model_id);
    match name.split_once("Llama-2-") {
        Some((_, rest)) => {
            let size = rest.split('-').next().unwrap_or(rest);
            format!("Llama 2 {}", size.to_uppercase())
        }
        None => name.to_string(),
    }
}

/// Parses the CSV text (no quoted fields in this file; a quote is rejected
/// rather than misread).
pub fn parse(path: &Path, text: &str, prices: &Catalog) -> Result<Vec<RunRow>> {
    let err = |line: usize, reason: String| StudyError::Data {
        path: path.to_path_buf(),
        line,
        reason,
    };
    let mut lines = text.lines().enumerate();
    let header: Vec<&str> = match lines.next() {
        Some((_, h)) => h.split(',').map(str::trim).collect(),
        None => return Err(err(1, "empty file".into())),
    };
    let col = |name: &str| {
        header
            .iter()
            .position(|h| *h == name)
            .ok_or_else(|| err(1, format!("no column `{name}`")))
    };
    let (m, i, q, u, t, l) = (
        col(MODEL)?,
        col(INSTANCE)?,
        col(QUANTIZATION)?,
        col(USERS)?,
        col(THROUGHPUT)?,
        col(LATENCY_MED)?,
    );
    let mut rows = Vec::new();
    for (n, line) in lines {
        let n = n + 1;
        if line.trim().is_empty() {
            continue;
        }
        if line.contains('"') {
            return Err(err(n, "quoted fields are not expected in this file".into()));
        }
        let f: Vec<&str> = line.split(',').map(str::trim).collect();
        if f.len() != header.len() {
            return Err(err(
                n,
                format!("{} fields, the header has {}", f.len(), header.len()),
            ));
        }
        let number = |k: usize| -> Result<f64> {
            f[k].parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .ok_or_else(|| {
                    err(
                        n,
                        format!("`{}` is not a number in column `{}`", f[k], header[k]),
                    )
                })
        };
        let users = f[u]
            .parse::<u32>()
            .map_err(|_| err(n, format!("`{}` is not a user count", f[u])))?;
        let model = model_label(f[m]);
        let id = Identity {
            deployment: format!("{model} {} {}", f[q], f[i]),
            model,
            quantization: f[q].to_string(),
            instance: f[i].to_string(),
            concurrency: users,
        };
        rows.push(RunRow::measured(
            id,
            Some((number(l)?, LATENCY_METRIC)),
            TokensPerSecond(number(t)?),
            prices.price(f[i]),
        ));
    }
    Ok(rows)
}

/// Reads and parses the file.
pub fn load(path: &Path, prices: &Catalog) -> Result<Vec<RunRow>> {
    let text = std::fs::read_to_string(path).map_err(StudyError::io(path))?;
    parse(path, &text, prices)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels() {
        assert_eq!(model_label("meta-llama/Llama-2-7b-hf"), "Llama 2 7B");
        assert_eq!(model_label("TheBloke/Llama-2-70B-GPTQ"), "Llama 2 70B");
        assert_eq!(model_label("other"), "other");
    }

    #[test]
    fn rejects_bad_numbers_with_their_line() {
        let text = format!("{MODEL},{INSTANCE},{QUANTIZATION},{USERS},{THROUGHPUT},{LATENCY_MED}\nm,i,none,1,10,2\nm,i,none,x,1,1\n");
        let e = parse(Path::new("s.csv"), &text, &Catalog::default())
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("s.csv:3: "), "{e}");
    }
}

//! Tokenizer parity on llama.cpp's own vocabulary test data: every
//! `models/ggml-vocab-*.gguf` of the llama.cpp source tree that the peers
//! script unpacks, with its `.inp` inputs and the ids llama.cpp gives each
//! (`.out`, tokenized without BOS/EOS and without parsing special tokens, as
//! llama.cpp's `test-tokenizer-0` does). A vocabulary of the `llama`
//! architecture must match on every input; another family's must either
//! match or be refused at load with a message naming what is unsupported.
//! Every vocabulary the engine accepts also tokenizes a corpus of its own
//! as llama.cpp does (plain and with special tokens parsed) and ends
//! generation on the same ids.

mod support;

use std::path::{Path, PathBuf};

use serde_json::json;
use servebench_engine::{gguf::GgufFile, tokenizer::Tokenizer};
use support::texts::corpus;

/// The inputs and expected ids, split as `test-tokenizer-0` splits them.
fn cases(gguf: &Path) -> Vec<(String, Vec<u32>)> {
    let inp = std::fs::read_to_string(format!("{}.inp", gguf.display())).unwrap();
    let out = std::fs::read_to_string(format!("{}.out", gguf.display())).unwrap();
    let sep = "\n__ggml_vocab_test__\n";
    let mut inputs = Vec::new();
    let mut pos = 0;
    while pos < inp.len() {
        match inp[pos..].find(sep) {
            Some(n) => {
                inputs.push(inp[pos..pos + n].to_string());
                pos += n + sep.len();
            }
            None => {
                inputs.push(inp[pos..].to_string());
                break;
            }
        }
    }
    let outputs: Vec<Vec<u32>> = out
        .lines()
        .map(|l| l.split_whitespace().map(|t| t.parse().unwrap()).collect())
        .collect();
    assert_eq!(inputs.len(), outputs.len(), "{}", gguf.display());
    inputs.into_iter().zip(outputs).collect()
}

/// llama.cpp's test vocabularies, sorted; with `expected`, only those
/// with expected ids.
fn vocab_files(expected: bool) -> Option<Vec<PathBuf>> {
    let dir = support::llamacpp_tree("models")?;
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "gguf"))
        .filter(|p| !expected || Path::new(&format!("{}.out", p.display())).exists())
        .collect();
    files.sort();
    assert!(files.len() >= 10, "{files:?}");
    Some(files)
}

#[test]
fn llama_family_vocabularies_give_llamacpp_ids() {
    let Some(files) = vocab_files(true) else {
        return;
    };
    let mut failures = Vec::new();
    let mut llama_checked = 0;
    for f in &files {
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        let gguf = GgufFile::open(f).unwrap();
        let arch = gguf
            .opt_str("general.architecture")
            .unwrap()
            .unwrap_or("?")
            .to_string();
        let tok = match Tokenizer::from_gguf(&gguf) {
            Ok(t) => t,
            Err(e) => {
                let msg = e.to_string();
                eprintln!("{name} ({arch}): refused: {msg}");
                if arch == "llama" {
                    failures.push(format!("{name}: a llama vocabulary is refused: {msg}"));
                } else {
                    assert!(
                        msg.contains("not supported"),
                        "{name}: unclear refusal: {msg}"
                    );
                }
                continue;
            }
        };
        let cases = cases(f);
        let wrong: Vec<_> = cases
            .iter()
            .filter(|(text, ids)| tok.encode(text, false, false) != *ids)
            .collect();
        eprintln!(
            "{name} ({arch}): {} of {} inputs equal",
            cases.len() - wrong.len(),
            cases.len()
        );
        for (text, ids) in wrong.iter().take(3) {
            let ours = tok.encode(text, false, false);
            failures.push(format!(
                "{name}: {text:?}: llama.cpp {ids:?}, ours {ours:?}"
            ));
        }
        if arch == "llama" {
            llama_checked += 1;
        }
    }
    assert!(llama_checked >= 2, "no llama vocabulary was checked");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn accepted_vocabularies_tokenize_and_stop_as_llamacpp_does() {
    let Some(files) = vocab_files(false) else {
        return;
    };
    let texts = corpus();
    let mut failures = Vec::new();
    let mut checked = 0;
    for f in &files {
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        let Ok(tok) = Tokenizer::from_gguf(&GgufFile::open(f).unwrap()) else {
            continue; // refusals are the test above's
        };
        let request = json!({
            "model": f, "vocab_only": true, "eog_ids": true,
            "tokenize": texts, "tokenize_plain": texts,
        });
        let Some(reference) = support::llamacpp(&request) else {
            return;
        };
        let ids = |key: &str, i: usize| -> Vec<u32> {
            serde_json::from_value(reference[key][i].clone()).unwrap()
        };
        for (i, text) in texts.iter().enumerate() {
            for (key, parse_special) in [("tokenize", true), ("tokenize_plain", false)] {
                let (want, got) = (ids(key, i), tok.encode(text, false, parse_special));
                if got != want {
                    failures.push(format!(
                        "{name} (special {parse_special}): {text:?}\n  ours      {got:?}\n  llama.cpp {want:?}"
                    ));
                }
            }
        }
        let mut eog: Vec<u32> = tok.eog_ids().to_vec();
        eog.sort();
        let want: Vec<u32> = serde_json::from_value(reference["eog_ids"].clone()).unwrap();
        if eog != want {
            failures.push(format!(
                "{name}: end-of-generation ids: ours {eog:?}, llama.cpp {want:?}"
            ));
        }
        checked += 1;
    }
    assert!(checked >= 10, "only {checked} vocabularies were accepted");
    assert!(
        failures.is_empty(),
        "{} differences:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

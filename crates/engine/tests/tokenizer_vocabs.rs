//! Tokenizer parity on llama.cpp's own vocabulary test data: every
//! `models/ggml-vocab-*.gguf` of the llama.cpp source tree that the peers
//! script unpacks, with its `.inp` inputs and the ids llama.cpp gives each
//! (`.out`, tokenized without BOS/EOS and without parsing special tokens, as
//! llama.cpp's `test-tokenizer-0` does). A vocabulary of the `llama`
//! architecture must match on every input; another family's must either
//! match or be refused at load with a message naming what is unsupported.

mod support;

use std::path::{Path, PathBuf};

use servebench_engine::{gguf::GgufFile, tokenizer::Tokenizer};

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

#[test]
fn llama_family_vocabularies_give_llamacpp_ids() {
    let Some(dir) = support::llamacpp_tree("models") else {
        return;
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "gguf"))
        .filter(|p| Path::new(&format!("{}.out", p.display())).exists())
        .collect();
    files.sort();
    assert!(files.len() >= 10, "{files:?}");
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

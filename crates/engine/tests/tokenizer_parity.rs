//! Tokenizer parity with llama.cpp on the real model's vocabulary: several
//! hundred strings covering digits, whitespace runs, code, punctuation,
//! accents, CJK, emoji and chat special tokens.

mod support;

use serde_json::json;
use servebench_engine::{gguf::GgufFile, tokenizer::Tokenizer};
use support::texts::corpus;

#[test]
fn token_ids_match_llamacpp_on_hundreds_of_strings() {
    let Some(path) = support::real_model() else {
        return;
    };
    let texts = corpus();
    assert!(texts.len() >= 300, "only {} strings", texts.len());
    let Some(reference) = support::llamacpp(&json!({ "model": path, "tokenize": texts })) else {
        return;
    };
    let tok = Tokenizer::from_gguf(&GgufFile::open(&path).unwrap()).unwrap();
    let mut failures = Vec::new();
    for (i, text) in texts.iter().enumerate() {
        let want: Vec<u32> = serde_json::from_value(reference["tokenize"][i].clone()).unwrap();
        let got = tok.encode(text, true, true);
        if got != want {
            failures.push(format!(
                "{text:?}\n  ours      {got:?}\n  llama.cpp {want:?}"
            ));
        }
        // Normal text round-trips through decode.
        if !text.contains("<|") && !text.contains("<repo_name>") {
            assert_eq!(&tok.decode(&got, false), text, "decode(encode(x)) != x");
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} differ:\n{}",
        failures.len(),
        texts.len(),
        failures.join("\n")
    );
}

//! Llama-family variants as llama.cpp's `llama` architecture runs them, on a
//! synthetic model written by `make-model --arch-preset llama-3-mini`: head
//! dimension 128, four query heads per KV head, an untied output matrix,
//! Llama 3.1's rope scaling as a `rope_freqs` tensor with rope base 500000,
//! and a 128,256-token vocabulary. Logits and greedy tokens must equal
//! llama.cpp's, on short prompts and past the positions where the scaled
//! frequencies differ.

mod support;

use servebench_engine::synthetic::{parse_quant, preset, write_model, VocabKind};
use servebench_engine::Engine;
use support::greedy;
use support::prompts::{essay, PLAIN};

#[test]
fn llama3_variants_match_llamacpp() {
    let dir = std::env::temp_dir().join(format!("servebench-variants-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("llama-3-mini.q8_0.gguf");
    let shape = preset("llama-3-mini").unwrap();
    write_model(
        shape,
        parse_quant("q8_0").unwrap(),
        VocabKind::Bpe,
        3,
        &path,
    )
    .unwrap();
    let engine = Engine::load(&path).unwrap();
    let c = engine.model.config();
    assert_eq!(
        (c.head_dim, c.n_head / c.n_kv_head, c.vocab_size),
        (128, 4, 128_256)
    );
    let prompts: Vec<Vec<u32>> = PLAIN
        .iter()
        .take(4)
        .map(|p| engine.encode_prompt(p, false).unwrap())
        .chain(std::iter::once(
            engine.encode_prompt(&essay(200), false).unwrap(),
        ))
        .collect();
    let results = greedy::against_llamacpp(&engine, &path, &prompts, 2048);
    std::fs::remove_dir_all(&dir).unwrap();
    let Some(results) = results else {
        return;
    };
    let failures: Vec<String> = results
        .iter()
        .enumerate()
        .filter(|(_, r)| !r.all_equal() || r.cosine < 0.9999)
        .map(|(i, r)| r.describe(i))
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

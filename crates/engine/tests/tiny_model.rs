//! Whole-engine behaviour on synthetic models written by `make-model`:
//! loading every tensor type, batch invariance, seeds, stop rules, and
//! clear errors for broken files.

mod support;

use std::path::{Path, PathBuf};

use servebench_engine::synthetic::{parse_quant, preset, write_model, VocabKind};
use servebench_engine::{
    generate, generate_batch, Engine, FinishReason, GenerateParams, LoadOptions, SamplingParams,
    SeqStep, Sequence,
};

fn tiny(dir: &Path, quant: &str, vocab: VocabKind) -> PathBuf {
    let path = dir.join(format!("tiny-{quant}-{vocab:?}.gguf"));
    write_model(
        preset("tiny").unwrap(),
        parse_quant(quant).unwrap(),
        vocab,
        7,
        &path,
    )
    .unwrap();
    path
}

fn tempdir() -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "servebench-test-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn last_logits(engine: &Engine, ids: &[u32]) -> Vec<f32> {
    let mut cache = engine.model.new_cache();
    engine
        .model
        .forward(&mut [SeqStep::new(ids, &mut cache)])
        .unwrap()
}

#[test]
fn every_weight_type_loads_and_agrees_with_f32() {
    let dir = tempdir();
    let reference = Engine::load(&tiny(&dir, "f32", VocabKind::Bpe)).unwrap();
    let ids = reference
        .encode_prompt("Once upon a time, a llama", false)
        .unwrap();
    let want = last_logits(&reference, &ids);
    // 4-bit types keep ~0.96 of uniform random weights; a wrong kernel gives ~0.
    for (quant, min_cos) in [
        ("f16", 0.9999),
        ("bf16", 0.999),
        ("q8_0", 0.999),
        ("q6_k", 0.995),
        ("q4_k", 0.94),
        ("q4_1", 0.94),
        ("q4_0", 0.94),
    ] {
        let e = Engine::load(&tiny(&dir, quant, VocabKind::Bpe)).unwrap();
        let cos = support::cosine(&last_logits(&e, &ids), &want);
        eprintln!("{quant}: cosine {cos}");
        assert!(cos >= min_cos, "{quant}: cosine {cos} with f32 < {min_cos}");
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn requantizing_at_load_changes_the_layers_and_keeps_the_model() {
    let dir = tempdir();
    let path = tiny(&dir, "f32", VocabKind::Bpe);
    let reference = Engine::load(&path).unwrap();
    let ids = reference
        .encode_prompt("A llama eats grass", false)
        .unwrap();
    let want = last_logits(&reference, &ids);
    for (quant, min_cos) in [("f16", 0.9999), ("q8_0", 0.999), ("q4_1", 0.94)] {
        let options = LoadOptions {
            quantize: Some(parse_quant(quant).unwrap()),
        };
        let e = Engine::load_with(&path, &options).unwrap();
        let cos = support::cosine(&last_logits(&e, &ids), &want);
        assert!(
            cos >= min_cos,
            "--quantize {quant}: cosine {cos} < {min_cos}"
        );
        assert!(
            cos < 1.0 || quant == "f16",
            "--quantize {quant} changed nothing"
        );
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn min_new_tokens_holds_back_the_end_of_generation() {
    let dir = tempdir();
    let e = Engine::load(&tiny(&dir, "q8_0", VocabKind::Bpe)).unwrap();
    let eos = e.tokenizer.eos().unwrap();
    let params = GenerateParams {
        max_new_tokens: 5,
        min_new_tokens: 2,
        ..Default::default()
    };
    let mut seq = Sequence::new(&e.model, vec![1, 2, 3], params).unwrap();
    let eos_first = || {
        let mut l = vec![0f32; e.model.config().vocab_size];
        l[eos as usize] = 10.0;
        l
    };
    for _ in 0..2 {
        let (id, _) = seq.accept(&e.tokenizer, &mut eos_first());
        assert_ne!(id, eos);
        assert!(seq.finish.is_none());
    }
    let (id, _) = seq.accept(&e.tokenizer, &mut eos_first());
    assert_eq!((id, seq.finish), (eos, Some(FinishReason::EosToken)));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn batched_decoding_equals_one_at_a_time() {
    let dir = tempdir();
    let e = Engine::load(&tiny(&dir, "q4_1", VocabKind::Bpe)).unwrap();
    let prompts: Vec<Vec<u32>> = [
        "a",
        "the llama",
        "Write a 500 word long story about llamas",
        "1 2 3",
        "fn main() {}",
        "x",
        "Once upon a time, in the high mountains",
        "?",
    ]
    .iter()
    .map(|p| e.encode_prompt(p, false).unwrap())
    .collect();
    let params = GenerateParams {
        max_new_tokens: 12,
        ignore_eos: true,
        ..Default::default()
    };
    let together = generate_batch(&e.model, &e.tokenizer, prompts.clone(), &params).unwrap();
    for (p, t) in prompts.into_iter().zip(together) {
        let alone = generate(&e.model, &e.tokenizer, p, params.clone(), |_, _| {}).unwrap();
        assert_eq!(alone.generated_ids, t.generated_ids);
        assert_eq!(t.generated_ids.len(), 12);
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn same_seed_same_sample_and_stop_sequences_end_generation() {
    let dir = tempdir();
    let e = Engine::load(&tiny(&dir, "q8_0", VocabKind::Bpe)).unwrap();
    let ids = e.encode_prompt("the llama", true).unwrap();
    let sampled = |seed| {
        let p = GenerateParams {
            max_new_tokens: 16,
            ignore_eos: true,
            sampling: SamplingParams {
                do_sample: true,
                temperature: Some(1.2),
                top_p: Some(0.95),
                seed: Some(seed),
                ..Default::default()
            },
            ..Default::default()
        };
        generate(&e.model, &e.tokenizer, ids.clone(), p, |_, _| {}).unwrap()
    };
    assert_eq!(sampled(5).generated_ids, sampled(5).generated_ids);
    assert_ne!(sampled(5).generated_ids, sampled(6).generated_ids);
    // Stop on text the unconstrained run produces.
    let free = sampled(5);
    let stop: String = free.text.chars().skip(2).take(3).collect();
    assert!(!stop.is_empty());
    let mut p = GenerateParams {
        max_new_tokens: 16,
        min_new_tokens: 0,
        ignore_eos: true,
        stop: vec![stop.clone()],
        sampling: SamplingParams {
            do_sample: true,
            temperature: Some(1.2),
            top_p: Some(0.95),
            seed: Some(5),
            ..Default::default()
        },
        ..Default::default()
    };
    let stopped = generate(&e.model, &e.tokenizer, ids.clone(), p.clone(), |_, _| {}).unwrap();
    assert_eq!(stopped.finish_reason, FinishReason::StopSequence);
    assert!(stopped.text.contains(&stop) && stopped.generated_ids.len() < 16);
    p.min_new_tokens = 16;
    let held = generate(&e.model, &e.tokenizer, ids.clone(), p, |_, _| {}).unwrap();
    assert_eq!(held.generated_ids.len(), 16);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn sentencepiece_vocabulary_loads_and_round_trips() {
    let dir = tempdir();
    let e = Engine::load(&tiny(&dir, "q8_0", VocabKind::Spm)).unwrap();
    let tok = &e.tokenizer;
    for text in [
        "Hello world",
        "the llama walks",
        "naïve 日本 🦙",
        "  two  spaces",
        "x",
    ] {
        let ids = tok.encode(text, true, true);
        assert_eq!(
            ids.first().copied(),
            tok.bos(),
            "llama vocabularies add BOS"
        );
        assert_eq!(tok.decode(&ids, false), text);
    }
    // Merged pieces are used where they exist.
    assert!(tok.encode("the llamas", false, false).len() < "the llamas".len());
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn broken_files_give_errors_naming_the_problem() {
    let dir = tempdir();
    let path = tiny(&dir, "q4_1", VocabKind::Bpe);
    let bytes = std::fs::read(&path).unwrap();
    let cut = dir.join("truncated.gguf");
    std::fs::write(&cut, &bytes[..bytes.len() - 1000]).unwrap();
    let err = Engine::load(&cut)
        .err()
        .expect("truncated file must fail")
        .to_string();
    assert!(err.contains("tensor") && err.contains("truncated"), "{err}");
    let junk = dir.join("junk.gguf");
    std::fs::write(&junk, b"not a model at all").unwrap();
    let err = Engine::load(&junk)
        .err()
        .expect("junk must fail")
        .to_string();
    assert!(err.contains("junk.gguf"), "{err}");
    let header = dir.join("header.gguf");
    std::fs::write(&header, &bytes[..200]).unwrap();
    assert!(Engine::load(&header).is_err());
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn out_of_range_tokens_and_full_context_are_errors_not_panics() {
    let dir = tempdir();
    let e = Engine::load(&tiny(&dir, "q4_0", VocabKind::Bpe)).unwrap();
    let mut cache = e.model.new_cache();
    let err = e
        .model
        .forward(&mut [SeqStep::new(&[100_000], &mut cache)])
        .unwrap_err();
    assert!(err.to_string().contains("100000"), "{err}");
    assert!(cache.is_empty(), "a failed step leaves the cache untouched");
    let long = vec![5u32; e.model.config().context_length + 1];
    assert!(e
        .model
        .forward(&mut [SeqStep::new(&long, &mut cache)])
        .is_err());
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_prompt_resumed_from_a_cached_prefix_gets_the_full_prefills_logits() {
    let dir = tempdir();
    let e = Engine::load(&tiny(&dir, "q4_1", VocabKind::Bpe)).unwrap();
    let vocab = e.model.config().vocab_size;
    let first_logits = |seq: &mut Sequence| {
        let mut logits = e.model.forward(&mut [seq.next_step()]).unwrap();
        let bits: Vec<u32> = logits.iter().map(|v| v.to_bits()).collect();
        seq.accept(&e.tokenizer, &mut logits[..vocab]);
        bits
    };
    let earlier = e
        .encode_prompt("Write a 500 word long story about llamas", false)
        .unwrap();
    let params = GenerateParams {
        max_new_tokens: 6,
        ignore_eos: true,
        ..Default::default()
    };
    let mut done = Sequence::new(&e.model, earlier.clone(), params.clone()).unwrap();
    while done.finish.is_none() {
        first_logits(&mut done);
    }
    // The same prompt (all but its last token reused), a longer one and a
    // diverging one: each must equal a fresh sequence bit for bit.
    let mut longer = earlier.clone();
    longer.extend(e.encode_prompt(" in the Andes", false).unwrap());
    let mut diverging = earlier[..3].to_vec();
    diverging.extend(e.encode_prompt(" cats", false).unwrap());
    for (prompt, at_least, at_most) in [
        (earlier.clone(), earlier.len() - 1, earlier.len() - 1),
        (longer.clone(), earlier.len(), longer.len() - 1),
        (diverging, 3, 3),
    ] {
        let mut fresh = Sequence::new(&e.model, prompt.clone(), params.clone()).unwrap();
        let mut resumed = Sequence::new(&e.model, prompt.clone(), params.clone()).unwrap();
        let got = resumed
            .reuse_prefix(done.cached_tokens(), done.cache.clone())
            .unwrap();
        assert!(
            (at_least..=at_most).contains(&got),
            "reused {got} positions"
        );
        assert_eq!(resumed.next_input(), &prompt[got..]);
        assert_eq!(first_logits(&mut fresh), first_logits(&mut resumed));
        while fresh.finish.is_none() {
            first_logits(&mut fresh);
            first_logits(&mut resumed);
        }
        assert_eq!(fresh.generated_ids, resumed.generated_ids);
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_file_loads_the_same_model_again_after_its_pages_were_released() {
    use servebench_engine::gguf::GgufFile;
    use servebench_engine::model::Llama;
    let dir = tempdir();
    let file = GgufFile::open(&tiny(&dir, "q8_0", VocabKind::Bpe)).unwrap();
    let bytes = |f: &GgufFile| f.tensor("token_embd.weight").unwrap().bytes.to_vec();
    let before = bytes(&file);
    let logits = |m: &Llama| {
        let mut cache = m.new_cache();
        m.forward(&mut [SeqStep::new(&[1, 5, 9, 3], &mut cache)])
            .unwrap()
    };
    let first = logits(&Llama::load(&file).unwrap());
    assert_eq!(bytes(&file), before, "bytes read back after their release");
    assert_eq!(logits(&Llama::load(&file).unwrap()), first);
    std::fs::remove_dir_all(dir).unwrap();
}

//! `servebench make-model`: synthetic GGUF models for tests and GPU-sized runs.

use std::path::PathBuf;

use anyhow::Context;
use servebench_engine::synthetic::{parse_quant, preset, write_model, VocabKind};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// tiny, smollm2-135m, llama-2-7b, llama-2-13b, llama-2-70b or llama-3-mini
    /// (two layers with Llama 3.x's variants: head dimension 128, 4:1 GQA,
    /// untied output, rope_freqs, a 128k vocabulary).
    #[arg(long)]
    arch_preset: String,
    /// Weight type: f32, f16, bf16, q4_0, q4_1, q8_0, q4_k, q6_k, ...
    #[arg(long, default_value = "q4_1")]
    quant: String,
    /// Seed of the random weights.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Tokenizer style: bpe (GPT-2 byte-level) or spm (SentencePiece-style).
    #[arg(long, default_value = "bpe")]
    vocab: String,
    /// Output file.
    #[arg(long)]
    out: PathBuf,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let p = preset(&a.arch_preset)?;
    let vocab = match a.vocab.as_str() {
        "bpe" => VocabKind::Bpe,
        "spm" => VocabKind::Spm,
        other => anyhow::bail!("--vocab must be bpe or spm, not `{other}`"),
    };
    // As the study and bench do with --out: the folder is made when missing.
    if let Some(dir) = a.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    write_model(p, parse_quant(&a.quant)?, vocab, a.seed, &a.out)?;
    println!("{}", a.out.display());
    Ok(())
}

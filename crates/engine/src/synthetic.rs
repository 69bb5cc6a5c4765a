//! Synthetic test models: a valid GGUF with random weights, the shape of a
//! named preset, and a small tokenizer trained on a built-in text. Written
//! tensor by tensor in row chunks, so even 70B shapes stream to disk.

use std::collections::HashMap;
use std::io::{BufWriter, Write};
use std::path::Path;

use candle_core::quantized::GgmlDType;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::error::{EngineError, Result};
use crate::gguf::{GgufWriter, TensorSpec, Value};
use crate::tokenizer::{ByteMap, TokenType};

/// A model shape.
#[derive(Debug, Clone, PartialEq)]
pub struct Preset {
    pub name: &'static str,
    pub n_layer: usize,
    pub hidden: usize,
    pub ffn: usize,
    pub n_head: usize,
    pub n_kv_head: usize,
    pub vocab: usize,
    pub context: usize,
    pub rope_base: f32,
    pub rms_eps: f32,
    pub tied_output: bool,
    /// Llama 3.1's rope scaling, written as a `rope_freqs` tensor of
    /// per-dimension frequency divisors (as llama.cpp's converter does).
    pub llama3_rope: bool,
}

/// Every preset `make-model` knows.
pub const PRESETS: &[Preset] = &[
    Preset {
        name: "tiny",
        n_layer: 2,
        hidden: 256,
        ffn: 512,
        n_head: 4,
        n_kv_head: 2,
        vocab: 384,
        context: 512,
        rope_base: 10_000.0,
        rms_eps: 1e-5,
        tied_output: true,
        llama3_rope: false,
    },
    Preset {
        name: "smollm2-135m",
        n_layer: 30,
        hidden: 576,
        ffn: 1536,
        n_head: 9,
        n_kv_head: 3,
        vocab: 49_152,
        context: 8192,
        rope_base: 100_000.0,
        rms_eps: 1e-5,
        tied_output: true,
        llama3_rope: false,
    },
    Preset {
        name: "llama-2-7b",
        n_layer: 32,
        hidden: 4096,
        ffn: 11_008,
        n_head: 32,
        n_kv_head: 32,
        vocab: 32_000,
        context: 4096,
        rope_base: 10_000.0,
        rms_eps: 1e-5,
        tied_output: false,
        llama3_rope: false,
    },
    Preset {
        name: "llama-2-13b",
        n_layer: 40,
        hidden: 5120,
        ffn: 13_824,
        n_head: 40,
        n_kv_head: 40,
        vocab: 32_000,
        context: 4096,
        rope_base: 10_000.0,
        rms_eps: 1e-5,
        tied_output: false,
        llama3_rope: false,
    },
    Preset {
        name: "llama-2-70b",
        n_layer: 80,
        hidden: 8192,
        ffn: 28_672,
        n_head: 64,
        n_kv_head: 8,
        vocab: 32_000,
        context: 4096,
        rope_base: 10_000.0,
        rms_eps: 1e-5,
        tied_output: false,
        llama3_rope: false,
    },
    // Llama 3.x's variants at test size: head dimension 128, four query
    // heads per KV head, untied output, rope_freqs, a 128k vocabulary.
    Preset {
        name: "llama-3-mini",
        n_layer: 2,
        hidden: 512,
        ffn: 1024,
        n_head: 4,
        n_kv_head: 1,
        vocab: 128_256,
        context: 8192,
        rope_base: 500_000.0,
        rms_eps: 1e-5,
        tied_output: false,
        llama3_rope: true,
    },
];

/// Llama 3.1's rope frequency divisors for `dim` rotary dimensions
/// (`rope_scaling` of its config: factor 8, low/high frequency factors 1
/// and 4, original context 8192): long wavelengths are stretched by the
/// factor, short ones kept, the band between blended.
fn llama3_rope_factors(dim: usize, base: f32) -> Vec<f32> {
    const FACTOR: f32 = 8.0;
    const LOW_FREQ_FACTOR: f32 = 1.0;
    const HIGH_FREQ_FACTOR: f32 = 4.0;
    const ORIGINAL_CONTEXT: f32 = 8192.0;
    let low_freq_wavelen = ORIGINAL_CONTEXT / LOW_FREQ_FACTOR;
    let high_freq_wavelen = ORIGINAL_CONTEXT / HIGH_FREQ_FACTOR;
    (0..dim / 2)
        .map(|i| {
            let freq = base.powf(-((2 * i) as f32) / dim as f32);
            let wavelen = 2.0 * std::f32::consts::PI / freq;
            if wavelen < high_freq_wavelen {
                1.0
            } else if wavelen > low_freq_wavelen {
                FACTOR
            } else {
                let smooth = (ORIGINAL_CONTEXT / wavelen - LOW_FREQ_FACTOR)
                    / (HIGH_FREQ_FACTOR - LOW_FREQ_FACTOR);
                1.0 / ((1.0 - smooth) / FACTOR + smooth)
            }
        })
        .collect()
}

/// Looks a preset up by name.
pub fn preset(name: &str) -> Result<&'static Preset> {
    PRESETS.iter().find(|p| p.name == name).ok_or_else(|| {
        let names: Vec<&str> = PRESETS.iter().map(|p| p.name).collect();
        EngineError::InvalidRequest(format!(
            "unknown preset `{name}`; known: {}",
            names.join(", ")
        ))
    })
}

/// Tokenizer style of a synthetic model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VocabKind {
    /// GPT-2 byte-level BPE with the `smollm` pre-tokenizer and ChatML.
    Bpe,
    /// SentencePiece-style (`llama`) with byte fallback.
    Spm,
}

/// The `--quant` names and their types.
pub fn parse_quant(name: &str) -> Result<GgmlDType> {
    Ok(match name.to_ascii_lowercase().as_str() {
        "f32" => GgmlDType::F32,
        "f16" => GgmlDType::F16,
        "bf16" => GgmlDType::BF16,
        "q4_0" => GgmlDType::Q4_0,
        "q4_1" => GgmlDType::Q4_1,
        "q5_0" => GgmlDType::Q5_0,
        "q5_1" => GgmlDType::Q5_1,
        "q8_0" => GgmlDType::Q8_0,
        "q2_k" => GgmlDType::Q2K,
        "q3_k" => GgmlDType::Q3K,
        "q4_k" => GgmlDType::Q4K,
        "q5_k" => GgmlDType::Q5K,
        "q6_k" => GgmlDType::Q6K,
        other => {
            return Err(EngineError::InvalidRequest(format!(
                "unknown quantization `{other}`; use f32, f16, bf16, q4_0, q4_1, q5_0, q5_1, q8_0, q2_k .. q6_k"
            )))
        }
    })
}

const CHATML: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant.<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

/// The text the synthetic tokenizers learn their merges from.
const CORPUS: &str = "Write a 500 word long story about llamas. Once upon a time, in the high mountains of the Andes, there lived a llama named Lola. \
She loved to walk along the narrow paths, and the other llamas followed her everywhere. The morning sun rose over the valley, \
and the farmers called their animals home for the evening. What is the capital of France? The capital of France is Paris. \
fn main() { println!(\"hello, world\"); } def add(a, b): return a + b. The quick brown fox jumps over the lazy dog. \
There are many things that people do not know about llamas: they are social, they hum, and they can carry heavy loads for long distances.";

/// Most frequent adjacent pairs, merged greedily over `words` (each a list
/// of symbols): a minimal BPE trainer.
fn train_merges(mut words: Vec<Vec<String>>, count: usize) -> Vec<(String, String)> {
    let mut merges = Vec::new();
    while merges.len() < count {
        let mut freq: HashMap<(String, String), usize> = HashMap::new();
        for w in &words {
            for p in w.windows(2) {
                *freq.entry((p[0].clone(), p[1].clone())).or_default() += 1;
            }
        }
        // Deterministic: highest count, then lexicographic.
        let Some((pair, _)) = freq
            .into_iter()
            .max_by(|a, b| a.1.cmp(&b.1).then_with(|| b.0.cmp(&a.0)))
        else {
            break;
        };
        for w in &mut words {
            let mut i = 0;
            while i + 1 < w.len() {
                if w[i] == pair.0 && w[i + 1] == pair.1 {
                    w[i] = format!("{}{}", pair.0, pair.1);
                    w.remove(i + 1);
                }
                i += 1;
            }
        }
        merges.push(pair);
    }
    merges
}

struct VocabData {
    tokens: Vec<String>,
    types: Vec<i32>,
    scores: Vec<f32>,
    merges: Vec<String>,
}

fn bpe_vocab(size: usize) -> VocabData {
    let bytes = ByteMap::new();
    let mut tokens: Vec<String> = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
        .map(String::from)
        .to_vec();
    let mut types = vec![TokenType::Control.id(); 3];
    tokens.extend((0..=255u8).map(|b| bytes.char(b).to_string()));
    types.extend(std::iter::repeat_n(TokenType::Normal.id(), 256));
    let words: Vec<Vec<String>> = CORPUS
        .split_inclusive(' ')
        .map(|w| {
            // Spaces lead words, as GPT-2's split puts them.
            let w = format!(" {}", w.trim_end());
            w.bytes().map(|b| bytes.char(b).to_string()).collect()
        })
        .collect();
    let room = size.saturating_sub(tokens.len());
    let merges = train_merges(words, room.min(400));
    for (a, b) in &merges {
        tokens.push(format!("{a}{b}"));
        types.push(TokenType::Normal.id());
    }
    pad_unused(&mut tokens, &mut types, size);
    let n = tokens.len();
    VocabData {
        tokens,
        types,
        scores: vec![0.0; n],
        merges: merges
            .into_iter()
            .map(|(a, b)| format!("{a} {b}"))
            .collect(),
    }
}

fn spm_vocab(size: usize) -> VocabData {
    let mut tokens: Vec<String> = ["<unk>", "<s>", "</s>"].map(String::from).to_vec();
    let mut types = vec![
        TokenType::Unknown.id(),
        TokenType::Control.id(),
        TokenType::Control.id(),
    ];
    let mut scores = vec![0.0f32; 3];
    for b in 0..=255u8 {
        tokens.push(format!("<0x{b:02X}>"));
        types.push(TokenType::Byte.id());
        scores.push(0.0);
    }
    let text = CORPUS.replace(' ', "\u{2581}");
    let mut chars: Vec<String> = text.chars().map(String::from).collect();
    chars.sort();
    chars.dedup();
    for c in chars {
        tokens.push(c);
        types.push(TokenType::Normal.id());
        scores.push(-1000.0);
    }
    let words: Vec<Vec<String>> = text
        .split_inclusive('\u{2581}')
        .map(|w| w.chars().map(String::from).collect())
        .collect();
    let room = size.saturating_sub(tokens.len());
    for (rank, (a, b)) in train_merges(words, room.min(400)).into_iter().enumerate() {
        let t = format!("{a}{b}");
        if !tokens.contains(&t) {
            tokens.push(t);
            types.push(TokenType::Normal.id());
            scores.push(-(rank as f32));
        }
    }
    pad_unused(&mut tokens, &mut types, size);
    scores.resize(tokens.len(), -10_000.0);
    VocabData {
        tokens,
        types,
        scores,
        merges: Vec::new(),
    }
}

fn pad_unused(tokens: &mut Vec<String>, types: &mut Vec<i32>, size: usize) {
    let mut i = 0;
    while tokens.len() < size {
        tokens.push(format!("<|unused_{i}|>"));
        types.push(TokenType::Unused.id());
        i += 1;
    }
}

fn strings(v: Vec<String>) -> Value {
    Value::Array(v.into_iter().map(Value::String).collect())
}

/// The type a matrix with rows of `cols` is stored in: k-quants need rows
/// that are whole 256-blocks; like llama.cpp's quantizer we fall back to
/// Q8_0 where they are not.
fn storage_type(want: GgmlDType, cols: usize) -> GgmlDType {
    if cols.is_multiple_of(want.block_size()) {
        want
    } else {
        GgmlDType::Q8_0
    }
}

/// Writes a synthetic model to `out`.
pub fn write_model(
    preset: &Preset,
    quant: GgmlDType,
    vocab_kind: VocabKind,
    seed: u64,
    out: &Path,
) -> Result<()> {
    let p = preset;
    let head_dim = p.hidden / p.n_head;
    let vocab = match vocab_kind {
        VocabKind::Bpe => bpe_vocab(p.vocab),
        VocabKind::Spm => spm_vocab(p.vocab),
    };
    if vocab.tokens.len() != p.vocab {
        return Err(EngineError::InvalidRequest(format!(
            "preset {} wants {} tokens but the tokenizer has {}",
            p.name,
            p.vocab,
            vocab.tokens.len()
        )));
    }
    let mut meta: Vec<(String, Value)> = vec![
        ("general.architecture".into(), Value::String("llama".into())),
        (
            "general.name".into(),
            Value::String(format!("servebench synthetic {} (seed {seed})", p.name)),
        ),
        ("general.alignment".into(), Value::U32(32)),
        ("llama.context_length".into(), Value::U32(p.context as u32)),
        ("llama.embedding_length".into(), Value::U32(p.hidden as u32)),
        ("llama.block_count".into(), Value::U32(p.n_layer as u32)),
        ("llama.feed_forward_length".into(), Value::U32(p.ffn as u32)),
        (
            "llama.attention.head_count".into(),
            Value::U32(p.n_head as u32),
        ),
        (
            "llama.attention.head_count_kv".into(),
            Value::U32(p.n_kv_head as u32),
        ),
        ("llama.rope.freq_base".into(), Value::F32(p.rope_base)),
        (
            "llama.rope.dimension_count".into(),
            Value::U32(head_dim as u32),
        ),
        (
            "llama.attention.layer_norm_rms_epsilon".into(),
            Value::F32(p.rms_eps),
        ),
        ("llama.vocab_size".into(), Value::U32(p.vocab as u32)),
        ("tokenizer.ggml.tokens".into(), strings(vocab.tokens)),
        (
            "tokenizer.ggml.token_type".into(),
            Value::Array(vocab.types.into_iter().map(Value::I32).collect()),
        ),
    ];
    match vocab_kind {
        VocabKind::Bpe => meta.extend([
            ("tokenizer.ggml.model".into(), Value::String("gpt2".into())),
            ("tokenizer.ggml.pre".into(), Value::String("smollm".into())),
            ("tokenizer.ggml.merges".into(), strings(vocab.merges)),
            ("tokenizer.ggml.bos_token_id".into(), Value::U32(1)),
            ("tokenizer.ggml.eos_token_id".into(), Value::U32(2)),
            ("tokenizer.ggml.add_bos_token".into(), Value::Bool(false)),
            (
                "tokenizer.chat_template".into(),
                Value::String(CHATML.into()),
            ),
        ]),
        VocabKind::Spm => meta.extend([
            ("tokenizer.ggml.model".into(), Value::String("llama".into())),
            (
                "tokenizer.ggml.scores".into(),
                Value::Array(vocab.scores.into_iter().map(Value::F32).collect()),
            ),
            ("tokenizer.ggml.unknown_token_id".into(), Value::U32(0)),
            ("tokenizer.ggml.bos_token_id".into(), Value::U32(1)),
            ("tokenizer.ggml.eos_token_id".into(), Value::U32(2)),
            ("tokenizer.ggml.add_bos_token".into(), Value::Bool(true)),
        ]),
    }

    let (h, q, kv, f) = (p.hidden, p.n_head * head_dim, p.n_kv_head * head_dim, p.ffn);
    let mut specs = Vec::new();
    let mut add = |name: String, rows: usize, cols: usize, dtype: GgmlDType| {
        let shape = if rows == 1 {
            vec![cols]
        } else {
            vec![rows, cols]
        };
        specs.push(TensorSpec { name, dtype, shape });
    };
    add(
        "token_embd.weight".into(),
        p.vocab,
        h,
        storage_type(quant, h),
    );
    for i in 0..p.n_layer {
        let n = |t: &str| format!("blk.{i}.{t}.weight");
        add(n("attn_norm"), 1, h, GgmlDType::F32);
        add(n("attn_q"), q, h, storage_type(quant, h));
        add(n("attn_k"), kv, h, storage_type(quant, h));
        add(n("attn_v"), kv, h, storage_type(quant, h));
        add(n("attn_output"), h, q, storage_type(quant, q));
        add(n("ffn_norm"), 1, h, GgmlDType::F32);
        add(n("ffn_gate"), f, h, storage_type(quant, h));
        add(n("ffn_up"), f, h, storage_type(quant, h));
        add(n("ffn_down"), h, f, storage_type(quant, f));
    }
    add("output_norm.weight".into(), 1, h, GgmlDType::F32);
    if p.llama3_rope {
        add("rope_freqs.weight".into(), 1, head_dim / 2, GgmlDType::F32);
    }
    if !p.tied_output {
        add("output.weight".into(), p.vocab, h, storage_type(quant, h));
    }

    let io = |e: std::io::Error| EngineError::Io {
        path: out.to_path_buf(),
        source: e,
    };
    let file = std::fs::File::create(out).map_err(io)?;
    let mut w = GgufWriter::new(BufWriter::new(file), &meta, specs.clone()).map_err(io)?;
    let mut rng = StdRng::seed_from_u64(seed);
    // About 4M values per chunk keeps memory flat whatever the shape.
    const CHUNK_VALUES: usize = 1 << 22;
    for spec in &specs {
        let (rows, cols) = match spec.shape.as_slice() {
            [c] => (1, *c),
            [r, c] => (*r, *c),
            _ => unreachable!("specs are 1-D or 2-D"),
        };
        let is_norm = rows == 1;
        // Weights of std ~ 1/sqrt(fan_in) keep activations in a sane range.
        let bound = (3.0 / cols as f32).sqrt();
        let rows_per_chunk = (CHUNK_VALUES / cols).max(1);
        let mut row = 0;
        while row < rows {
            let n = rows_per_chunk.min(rows - row);
            let values: Vec<f32> = if spec.name == "rope_freqs.weight" {
                llama3_rope_factors(head_dim, p.rope_base)
            } else {
                (0..n * cols)
                    .map(|_| {
                        if is_norm {
                            1.0 + rng.random_range(-0.1..0.1)
                        } else {
                            rng.random_range(-bound..bound)
                        }
                    })
                    .collect()
            };
            let mut q = spec.dtype.cpu_zeros(values.len());
            q.from_float(&values);
            // SAFETY: candle's storage is a Vec of plain blocks; its pointer
            // and byte size describe exactly that allocation (candle's own
            // GGUF writer reads it the same way).
            let bytes =
                unsafe { std::slice::from_raw_parts(q.as_ptr(), q.storage_size_in_bytes()) };
            w.write_data(bytes).map_err(io)?;
            row += n;
        }
    }
    w.finish().map_err(io)?.flush().map_err(io)?;
    Ok(())
}

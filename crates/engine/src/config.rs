//! Hyper-parameters of a Llama-architecture model, read from GGUF metadata
//! (keys as llama.cpp's converter writes them, prefixed by the architecture).

use crate::error::{EngineError, Result};
use crate::gguf::GgufFile;

/// How rotary position frequencies are scaled beyond the trained context.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RopeScaling {
    None,
    /// Positions divided by `factor` (llama.cpp's `linear`).
    Linear {
        factor: f32,
    },
}

/// Shape and numerics of a Llama model.
#[derive(Debug, Clone, PartialEq)]
pub struct LlamaConfig {
    pub architecture: String,
    pub n_layer: usize,
    pub hidden: usize,
    pub ffn: usize,
    pub n_head: usize,
    pub n_kv_head: usize,
    pub head_dim: usize,
    /// Leading dimensions of each head that rotary embeddings touch.
    pub rope_dim: usize,
    pub rope_base: f32,
    pub rope_scaling: RopeScaling,
    pub rms_eps: f32,
    pub context_length: usize,
    pub vocab_size: usize,
}

/// Architectures whose tensors and forward pass are Llama's.
const LLAMA_LIKE: &[&str] = &["llama"];

impl LlamaConfig {
    /// Reads the configuration; `vocab_size` comes from the embedding tensor
    /// since the metadata key is optional.
    pub fn from_gguf(file: &GgufFile) -> Result<Self> {
        let arch = file.str("general.architecture")?.to_string();
        if !LLAMA_LIKE.contains(&arch.as_str()) {
            return Err(EngineError::Unsupported(format!(
                "general.architecture is `{arch}`; supported: {}",
                LLAMA_LIKE.join(", ")
            )));
        }
        let key = |k: &str| format!("{arch}.{k}");
        let hidden = file.usize(&key("embedding_length"))?;
        let n_head = file.usize(&key("attention.head_count"))?;
        let n_kv_head = file
            .opt_usize(&key("attention.head_count_kv"))?
            .unwrap_or(n_head);
        if n_head == 0 || n_kv_head == 0 || n_head % n_kv_head != 0 {
            return Err(EngineError::metadata(
                &key("attention.head_count_kv"),
                format!("{n_kv_head} KV heads cannot serve {n_head} query heads"),
            ));
        }
        let head_dim = file
            .opt_usize(&key("attention.key_length"))?
            .unwrap_or(hidden / n_head);
        if head_dim == 0 || head_dim % 2 != 0 {
            return Err(EngineError::metadata(
                &key("attention.key_length"),
                format!("head dimension {head_dim} must be even and non-zero"),
            ));
        }
        let rope_dim = file
            .opt_usize(&key("rope.dimension_count"))?
            .unwrap_or(head_dim);
        let scaling_type = file.opt_str(&key("rope.scaling.type"))?.unwrap_or("none");
        let rope_scaling = match scaling_type {
            "none" => RopeScaling::None,
            "linear" => {
                let factor = file.opt_f32(&key("rope.scaling.factor"))?.unwrap_or(1.0);
                if factor <= 0.0 {
                    return Err(EngineError::metadata(
                        &key("rope.scaling.factor"),
                        "must be positive",
                    ));
                }
                RopeScaling::Linear { factor }
            }
            other => {
                return Err(EngineError::metadata(
                    &key("rope.scaling.type"),
                    format!("`{other}` is not supported (none, linear)"),
                ))
            }
        };
        let embd = file.tensor("token_embd.weight")?;
        let vocab_size = embd.shape.first().copied().unwrap_or(0);
        Ok(Self {
            n_layer: file.usize(&key("block_count"))?,
            hidden,
            ffn: file.usize(&key("feed_forward_length"))?,
            n_head,
            n_kv_head,
            head_dim,
            rope_dim,
            rope_base: file.opt_f32(&key("rope.freq_base"))?.unwrap_or(10_000.0),
            rope_scaling,
            rms_eps: file
                .opt_f32(&key("attention.layer_norm_rms_epsilon"))?
                .unwrap_or(1e-5),
            context_length: file.opt_usize(&key("context_length"))?.unwrap_or(2048),
            vocab_size,
            architecture: arch,
        })
    }

    /// Width of the concatenated query heads.
    pub fn q_dim(&self) -> usize {
        self.n_head * self.head_dim
    }

    /// Width of the concatenated key (or value) heads.
    pub fn kv_dim(&self) -> usize {
        self.n_kv_head * self.head_dim
    }
}

//! Model shapes: what the performance model needs to know of a model
//! (parameters, bytes per weight under a quantization, KV-cache bytes per
//! token), from a `make-model` preset, a GGUF file or an HF `config.json`.

use std::path::Path;

use serde::Deserialize;
use servebench_engine::config::LlamaConfig;
use servebench_engine::gguf::GgufFile;
use servebench_engine::synthetic;

use crate::error::{PredictError, Result};
use crate::quant::Quant;

/// A decoder-only transformer's dimensions.
#[derive(Debug, Clone, PartialEq)]
pub struct Shape {
    pub name: String,
    pub n_layer: usize,
    pub hidden: usize,
    pub ffn: usize,
    pub n_head: usize,
    pub n_kv_head: usize,
    pub head_dim: usize,
    pub vocab: usize,
    /// The output projection is the embedding table.
    pub tied_output: bool,
}

/// HF `config.json`, the Llama-family fields.
#[derive(Deserialize)]
struct HfConfig {
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    num_key_value_heads: Option<usize>,
    head_dim: Option<usize>,
    vocab_size: usize,
    #[serde(default)]
    tie_word_embeddings: bool,
}

/// `Llama 2 13B` (a report's label) -> `llama-2-13b` (the preset's name).
fn preset_key(name: &str) -> String {
    let key = name.trim().to_ascii_lowercase().replace([' ', '_'], "-");
    match key.as_str() {
        "smollm2" => "smollm2-135m".into(),
        _ => key,
    }
}

impl Shape {
    /// A preset name (or a report label of one), a `.gguf` file, or an HF
    /// `config.json`.
    pub fn resolve(model: &str) -> Result<Self> {
        let err = |reason: String| PredictError::Model(model.to_string(), reason);
        let path = Path::new(model);
        if model.ends_with(".gguf") {
            let file = GgufFile::open(path).map_err(|e| err(e.to_string()))?;
            let c = LlamaConfig::from_gguf(&file).map_err(|e| err(e.to_string()))?;
            return Ok(Self {
                name: path
                    .file_stem()
                    .map_or(model.into(), |s| s.to_string_lossy().into()),
                n_layer: c.n_layer,
                hidden: c.hidden,
                ffn: c.ffn,
                n_head: c.n_head,
                n_kv_head: c.n_kv_head,
                head_dim: c.head_dim,
                vocab: c.vocab_size,
                tied_output: !file.has_tensor("output.weight"),
            });
        }
        if model.ends_with(".json") {
            let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
            let c: HfConfig = serde_json::from_str(&text)
                .map_err(|e| err(format!("not a Llama-family config.json: {e}")))?;
            if c.num_attention_heads == 0 || !c.hidden_size.is_multiple_of(c.num_attention_heads) {
                return Err(err("num_attention_heads must divide hidden_size".into()));
            }
            let name = path.parent().and_then(|p| p.file_name()).map_or_else(
                || "config.json".into(),
                |n| n.to_string_lossy().into_owned(),
            );
            return Ok(Self {
                name,
                n_layer: c.num_hidden_layers,
                hidden: c.hidden_size,
                ffn: c.intermediate_size,
                n_head: c.num_attention_heads,
                n_kv_head: c.num_key_value_heads.unwrap_or(c.num_attention_heads),
                head_dim: c.head_dim.unwrap_or(c.hidden_size / c.num_attention_heads),
                vocab: c.vocab_size,
                tied_output: c.tie_word_embeddings,
            });
        }
        let p = synthetic::preset(&preset_key(model))
            .map_err(|e| err(format!("{e}; or give a .gguf file or an HF config.json")))?;
        Ok(Self {
            name: p.name.to_string(),
            n_layer: p.n_layer,
            hidden: p.hidden,
            ffn: p.ffn,
            n_head: p.n_head,
            n_kv_head: p.n_kv_head,
            head_dim: p.hidden / p.n_head,
            vocab: p.vocab,
            tied_output: p.tied_output,
        })
    }

    fn kv_dim(&self) -> f64 {
        (self.n_kv_head * self.head_dim) as f64
    }

    /// Weights of the transformer blocks (attention and MLP; norms are noise).
    pub fn block_params(&self) -> f64 {
        let (h, f) = (self.hidden as f64, self.ffn as f64);
        let q = (self.n_head * self.head_dim) as f64;
        self.n_layer as f64 * (2.0 * h * q + 2.0 * h * self.kv_dim() + 3.0 * h * f)
    }

    /// Weights of the output projection (read every step, tied or not).
    pub fn head_params(&self) -> f64 {
        (self.vocab * self.hidden) as f64
    }

    /// Every parameter, the embedding table counted once more when untied.
    pub fn params(&self) -> f64 {
        let embedding = if self.tied_output {
            0.0
        } else {
            self.head_params()
        };
        self.block_params() + self.head_params() + embedding
    }

    /// FLOPs of one token's forward pass through the weights (2 per weight).
    pub fn flops_per_token(&self) -> f64 {
        2.0 * (self.block_params() + self.head_params())
    }

    /// Bytes read from memory per forward pass: every block weight and the
    /// output projection (the embedding is a gather of a few rows).
    pub fn streamed_bytes(&self, q: &Quant) -> f64 {
        self.block_params() * q.bytes_per_weight + self.head_params() * q.head_bytes_per_weight
    }

    /// Bytes the weights occupy (the untied embedding table included).
    pub fn resident_bytes(&self, q: &Quant) -> f64 {
        let embedding = if self.tied_output {
            0.0
        } else {
            self.head_params() * q.head_bytes_per_weight
        };
        self.streamed_bytes(q) + embedding
    }

    /// KV-cache bytes per token: keys and values of every layer in FP16
    /// (TGI's and servebench's cache type).
    pub fn kv_bytes_per_token(&self) -> f64 {
        2.0 * self.n_layer as f64 * self.kv_dim() * 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn llama_2_sizes_match_their_names() {
        let p = |n: &str| Shape::resolve(n).unwrap().params() / 1e9;
        assert!((p("llama-2-7b") - 6.74).abs() < 0.05, "{}", p("llama-2-7b"));
        assert!(
            (p("llama-2-13b") - 13.0).abs() < 0.1,
            "{}",
            p("llama-2-13b")
        );
        assert!(
            (p("Llama 2 70B") - 69.0).abs() < 0.3,
            "{}",
            p("Llama 2 70B")
        );
        // 70B has 8 KV heads (grouped-query attention): 320 KiB per token.
        let kv = Shape::resolve("llama-2-70b").unwrap().kv_bytes_per_token();
        assert_eq!(kv, 2.0 * 80.0 * 1024.0 * 2.0);
        assert!(Shape::resolve("smollm2").is_ok());
        assert!(Shape::resolve("gpt-5").is_err());
    }

    #[test]
    fn hf_config_json() {
        let dir = std::env::temp_dir().join(format!("sb-predict-shape-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("config.json");
        std::fs::write(&path, r#"{"hidden_size":4096,"intermediate_size":11008,"num_hidden_layers":32,"num_attention_heads":32,"num_key_value_heads":32,"vocab_size":32000}"#).unwrap();
        let s = Shape::resolve(path.to_str().unwrap()).unwrap();
        assert_eq!(s.params(), Shape::resolve("llama-2-7b").unwrap().params());
        std::fs::write(&path, "{}").unwrap();
        assert!(Shape::resolve(path.to_str().unwrap()).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

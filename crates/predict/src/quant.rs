//! Quantizations: how many bytes a weight takes and which compute units
//! multiply it.

use crate::error::{PredictError, Result};

/// A weight format.
#[derive(Debug, Clone, PartialEq)]
pub struct Quant {
    /// As written: `none`, `gptq`, `f16`, `q4_1`, ...
    pub name: String,
    /// Storage of one weight of the transformer blocks, scales included.
    pub bytes_per_weight: f64,
    /// Storage of one weight of the output projection (GPTQ keeps it in FP16).
    pub head_bytes_per_weight: f64,
    /// Integer dot products (GGUF block formats) rather than FP16 math.
    pub int8_math: bool,
}

/// `(name, bytes per weight, head bytes per weight, int8 math)`. GGUF block
/// sizes from ggml's `ggml-common.h` (e.g. `block_q4_1`: 32 weights in 20
/// bytes); GPTQ: 4-bit weights with an FP16 scale and a 4-bit zero per group
/// of 128 (AutoGPTQ's default, TheBloke's Llama 2 GPTQ models).
const TABLE: &[(&str, f64, f64, bool)] = &[
    ("none", 2.0, 2.0, false),
    ("f16", 2.0, 2.0, false),
    ("bf16", 2.0, 2.0, false),
    ("f32", 4.0, 4.0, false),
    ("gptq", (4.0 + 16.0 / 128.0 + 4.0 / 128.0) / 8.0, 2.0, false),
    ("q4_0", 18.0 / 32.0, 18.0 / 32.0, true),
    ("q4_1", 20.0 / 32.0, 20.0 / 32.0, true),
    ("q5_0", 22.0 / 32.0, 22.0 / 32.0, true),
    ("q5_1", 24.0 / 32.0, 24.0 / 32.0, true),
    ("q8_0", 34.0 / 32.0, 34.0 / 32.0, true),
    ("q2_k", 84.0 / 256.0, 84.0 / 256.0, true),
    ("q3_k", 110.0 / 256.0, 110.0 / 256.0, true),
    ("q4_k", 144.0 / 256.0, 144.0 / 256.0, true),
    ("q5_k", 176.0 / 256.0, 176.0 / 256.0, true),
    ("q6_k", 210.0 / 256.0, 210.0 / 256.0, true),
];

impl Quant {
    /// Looks a quantization up by name (case-insensitive; `fp16` = `none`).
    pub fn parse(name: &str) -> Result<Self> {
        let lower = name.trim().to_ascii_lowercase();
        let key = match lower.as_str() {
            "fp16" | "" => "none",
            other => other,
        };
        let (_, bytes, head, int8) = TABLE.iter().find(|t| t.0 == key).ok_or_else(|| {
            let names: Vec<&str> = TABLE.iter().map(|t| t.0).collect();
            PredictError::UnknownQuantization(name.to_string(), names.join(", "))
        })?;
        Ok(Self {
            name: key.to_string(),
            bytes_per_weight: *bytes,
            head_bytes_per_weight: *head,
            int8_math: *int8,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_per_weight() {
        assert_eq!(Quant::parse("none").unwrap().bytes_per_weight, 2.0);
        assert_eq!(Quant::parse("FP16").unwrap().name, "none");
        assert_eq!(Quant::parse("q4_1").unwrap().bytes_per_weight, 0.625);
        let g = Quant::parse("gptq").unwrap();
        assert!(g.bytes_per_weight > 0.5 && g.bytes_per_weight < 0.55);
        let e = Quant::parse("awq").unwrap_err().to_string();
        assert!(e.contains("gptq"), "{e}");
    }
}

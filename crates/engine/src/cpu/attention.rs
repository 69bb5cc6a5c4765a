//! Causal multi-head attention with grouped KV heads over a sequence's
//! cache: one query row attends to cached positions `0..=pos`.

use half::f16;
use half::slice::HalfFloatSliceExt;

use super::ops::softmax;

/// Shapes of one attention call.
#[derive(Debug, Clone, Copy)]
pub struct AttentionShape {
    pub n_head: usize,
    pub n_kv_head: usize,
    pub head_dim: usize,
}

/// `out` (one head's `head_dim` values) = softmax(q·Kᵀ/√d) · V over the
/// first `n_pos` cached positions of KV head `kv_head`.
#[allow(clippy::too_many_arguments)]
pub fn attend_head(
    shape: AttentionShape,
    q: &[f32],
    keys: &[f16],
    values: &[f16],
    kv_head: usize,
    n_pos: usize,
    scores: &mut Vec<f32>,
    row: &mut Vec<f32>,
    out: &mut [f32],
) {
    let d = shape.head_dim;
    let kv_dim = shape.n_kv_head * d;
    let scale = 1.0 / (d as f32).sqrt();
    scores.clear();
    row.resize(2 * d, 0.0);
    let (row, q16) = row.split_at_mut(d);
    // ggml multiplies an f16 cache by activations converted to f16, for
    // Q·K and for softmax·V alike; rounding the same way keeps our logits
    // within llama.cpp's own f16-vs-f32 cache spread.
    for (r, v) in q16.iter_mut().zip(q) {
        *r = f16::from_f32(*v).to_f32();
    }
    for p in 0..n_pos {
        let at = p * kv_dim + kv_head * d;
        keys[at..at + d].convert_to_f32_slice(row);
        let dot: f32 = q16.iter().zip(row.iter()).map(|(a, b)| a * b).sum();
        scores.push(dot * scale);
    }
    softmax(scores);
    for w in scores.iter_mut() {
        *w = f16::from_f32(*w).to_f32();
    }
    out.fill(0.0);
    for (p, w) in scores.iter().enumerate() {
        let at = p * kv_dim + kv_head * d;
        values[at..at + d].convert_to_f32_slice(row);
        for (o, v) in out.iter_mut().zip(row.iter()) {
            *o += w * v;
        }
    }
}

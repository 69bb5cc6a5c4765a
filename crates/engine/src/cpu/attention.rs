//! Causal multi-head attention with grouped KV heads over a sequence's
//! cache: one query row attends to cached positions `0..pos`. The rounding
//! follows llama.cpp's default (non-flash) CPU path: f16 cache, query and
//! softmax weights rounded to f16, ggml's dot-product order and `expf`.

use half::f16;
use half::slice::HalfFloatSliceExt;

use super::ggml_numerics::{self as g, LANES, STEP};

/// Shapes of one attention call.
#[derive(Debug, Clone, Copy)]
pub struct AttentionShape {
    pub n_head: usize,
    pub n_kv_head: usize,
    pub head_dim: usize,
}

/// Which of llama.cpp's two f16 product routines a row's attention mirrors:
/// tinyBLAS when its sequence brings two or more tokens to the step
/// (prefill), `ggml_vec_dot_f16` for a single token (decode). Chosen per
/// sequence so that batching never changes a sequence's numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    Prefill,
    Decode,
}

/// Reusable buffers of one worker.
#[derive(Default)]
pub struct Scratch {
    scores: Vec<f32>,
    q16: Vec<f32>,
    row: Vec<f32>,
    acc: Vec<f32>,
}

/// What one head of one query row attends to.
pub struct HeadInput<'a> {
    pub q: &'a [f32],
    pub keys: &'a [f16],
    pub values: &'a [f16],
    pub kv_head: usize,
    /// Cached positions visible to this row (`0..n_pos`).
    pub n_pos: usize,
    pub order: Order,
}

/// `out` (one head's `head_dim` values) = softmax(q·Kᵀ/√d) · V over the
/// first `n_pos` cached positions of KV head `kv_head`.
pub fn attend_head(
    shape: AttentionShape,
    input: &HeadInput<'_>,
    scratch: &mut Scratch,
    out: &mut [f32],
) {
    #[cfg(target_arch = "x86_64")]
    if super::dot::best().fma {
        // SAFETY: the avx2 kernels are only chosen on CPUs with AVX2+FMA+F16C.
        unsafe { attend_fma(shape, input, scratch, out) };
        return;
    }
    attend(shape, input, scratch, out);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn attend_fma(
    shape: AttentionShape,
    input: &HeadInput<'_>,
    scratch: &mut Scratch,
    out: &mut [f32],
) {
    attend(shape, input, scratch, out);
}

#[inline(always)]
fn attend(shape: AttentionShape, input: &HeadInput<'_>, s: &mut Scratch, out: &mut [f32]) {
    let HeadInput {
        q,
        keys,
        values,
        kv_head,
        n_pos,
        order,
    } = *input;
    let d = shape.head_dim;
    let gemm = order == Order::Prefill && d.is_multiple_of(LANES);
    let kv_dim = shape.n_kv_head * d;
    let scale = 1.0 / (d as f32).sqrt();
    // ggml converts the query to the cache's type before Q·K.
    s.q16.clear();
    s.q16.extend(q.iter().map(|v| f16::from_f32(*v).to_f32()));
    s.row.resize(d, 0.0);
    s.scores.clear();
    for p in 0..n_pos {
        let at = p * kv_dim + kv_head * d;
        keys[at..at + d].convert_to_f32_slice(&mut s.row);
        let dot = if gemm {
            g::dot_gemm(&s.row, &s.q16)
        } else {
            g::dot(&s.row, &s.q16)
        };
        s.scores.push(dot * scale);
    }
    softmax_f16(&mut s.scores);
    // softmax · V over the transposed V rows: position p lands in lane
    // p % 64 (vec_dot's 4x16 accumulators) or p % 16 (tinyBLAS's one
    // accumulator); each lane holds a whole head row.
    let slots = if gemm { LANES } else { STEP };
    s.acc.clear();
    s.acc.resize(slots * d, 0.0);
    for (p, w) in s.scores.iter().enumerate() {
        let at = p * kv_dim + kv_head * d;
        values[at..at + d].convert_to_f32_slice(&mut s.row);
        let lane = &mut s.acc[(p % slots) * d..(p % slots + 1) * d];
        for (a, v) in lane.iter_mut().zip(&s.row) {
            *a = w.mul_add(*v, *a);
        }
    }
    for (i, o) in out.iter_mut().enumerate() {
        *o = if gemm {
            let mut lanes = [0f32; LANES];
            for (l, x) in lanes.iter_mut().enumerate() {
                *x = s.acc[l * d + i];
            }
            g::reduce16(&lanes)
        } else {
            let mut lanes = [[0f32; LANES]; 4];
            for (j, vec) in lanes.iter_mut().enumerate() {
                for (l, x) in vec.iter_mut().enumerate() {
                    *x = s.acc[(j * LANES + l) * d + i];
                }
            }
            g::reduce_step(&lanes)
        };
    }
}

/// ggml's `soft_max`, then each weight rounded to f16 as the following
/// f16 matmul does.
#[inline(always)]
fn softmax_f16(x: &mut [f32]) {
    g::softmax(x);
    for w in x.iter_mut() {
        *w = f16::from_f32(*w).to_f32();
    }
}

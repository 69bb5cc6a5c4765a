//! Causal multi-head attention with grouped KV heads over a sequence's
//! cache: one query row attends to cached positions `0..pos`. The rounding
//! follows llama.cpp's default (non-flash) CPU path: f16 cache, query and
//! softmax weights rounded to f16, ggml's dot-product order and `expf`.
//! With AVX-512, `avx512` computes the same bits straight from the f16
//! cache; the kernels here are the reference and the fallback.

use half::f16;
use half::slice::HalfFloatSliceExt;

#[cfg(target_arch = "x86_64")]
mod avx2_rows;
#[cfg(target_arch = "x86_64")]
mod avx512;
#[cfg(target_arch = "x86_64")]
mod avx512_rows;
#[cfg(target_arch = "x86_64")]
mod tiled_rows;

use super::ggml_numerics::{self as g, LANES};
use crate::kv_cache::KvRows;

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
    keys: Vec<f32>,
    values: Vec<f32>,
    acc: Vec<f32>,
    tree: Vec<f32>,
}

/// What the query heads sharing one KV head attend to, for one query row.
pub struct GroupInput<'a> {
    /// The group's query heads, one after another (`head_dim` each).
    pub q: &'a [f32],
    pub keys: KvRows<'a>,
    pub values: KvRows<'a>,
    pub kv_head: usize,
    /// Cached positions visible to this row (`0..n_pos`).
    pub n_pos: usize,
    pub order: Order,
}

/// For each query head in `input.q`: its `head_dim` values in `out` =
/// softmax(q·Kᵀ/√d) · V over the first `n_pos` cached positions of KV head
/// `kv_head`. The group's keys and values are widened to f32 once (exact)
/// and shared by its query heads.
pub fn attend_group(
    shape: AttentionShape,
    input: &GroupInput<'_>,
    scratch: &mut Scratch,
    out: &mut [f32],
) {
    #[cfg(target_arch = "x86_64")]
    if avx512::available(shape.head_dim) {
        // SAFETY: `available` checked the CPU and the head size.
        unsafe { avx512::attend(shape, input, &mut scratch.scores, out) };
        return;
    }
    let wide = g::lanes_here() == LANES;
    #[cfg(target_arch = "x86_64")]
    if super::dot::best().fma {
        // SAFETY: the avx2 kernels are only chosen on CPUs with AVX2+FMA+F16C.
        unsafe { attend_fma(shape, input, scratch, out, wide) };
        return;
    }
    if wide {
        attend::<false, LANES>(shape, input, scratch, out);
    } else {
        attend::<false, 8>(shape, input, scratch, out);
    }
}

/// Consecutive query rows of one sequence that attend in the prefill
/// order: row `i` sees cached positions `0..first_n_pos + i`.
pub struct RowsInput<'a> {
    /// The rows' query heads, `n_head * head_dim` values per row.
    pub q: &'a [f32],
    pub keys: KvRows<'a>,
    pub values: KvRows<'a>,
    /// Cached positions visible to the first row.
    pub first_n_pos: usize,
}

/// Reusable buffers of [`attend_rows`].
#[derive(Default)]
pub struct RowsScratch {
    q16: Vec<f32>,
    scores: Vec<f32>,
    tile: Vec<f32>,
    rows: Scratch,
}

/// Every query head of every row in `input` (all KV heads), as
/// [`attend_group`] with [`Order::Prefill`] gives each row and group
/// alone, bit for bit; `out` has the rows' `n_head * head_dim` values.
/// With AVX-512, or AVX2 where ggml's vectors have 8 lanes, the rows
/// share the f16 cache's conversions.
pub fn attend_rows(
    shape: AttentionShape,
    input: &RowsInput<'_>,
    scratch: &mut RowsScratch,
    out: &mut [f32],
) {
    #[cfg(target_arch = "x86_64")]
    if avx512::available(shape.head_dim) {
        // SAFETY: `available` checked the CPU and the head size.
        unsafe { avx512_rows::attend_rows(shape, input, scratch, out) };
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if avx2_rows::available(shape.head_dim) {
        // SAFETY: `available` checked the CPU and the head size.
        unsafe { avx2_rows::attend_rows(shape, input, scratch, out) };
        return;
    }
    let group_len = shape.n_head / shape.n_kv_head * shape.head_dim;
    let heads = input
        .q
        .chunks_exact(group_len)
        .zip(out.chunks_exact_mut(group_len));
    for (i, (q, out)) in heads.enumerate() {
        let (row, kv_head) = (i / shape.n_kv_head, i % shape.n_kv_head);
        let group_input = GroupInput {
            q,
            keys: input.keys,
            values: input.values,
            kv_head,
            n_pos: input.first_n_pos + row,
            order: Order::Prefill,
        };
        attend_group(shape, &group_input, &mut scratch.rows, out);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn attend_fma(
    shape: AttentionShape,
    input: &GroupInput<'_>,
    scratch: &mut Scratch,
    out: &mut [f32],
    wide: bool,
) {
    if wide {
        attend::<true, LANES>(shape, input, scratch, out);
    } else {
        attend::<true, 8>(shape, input, scratch, out);
    }
}

/// Widens KV head `kv_head`'s rows of the first `n_pos` positions of a
/// cache layer into `out` (`n_pos x d`). With `F16C`, inline conversions:
/// `half`'s slice routine is an out-of-line call per 64-value row.
#[inline(always)]
fn widen_head<const F16C: bool>(
    cache: KvRows<'_>,
    kv_head: usize,
    d: usize,
    n_pos: usize,
    out: &mut Vec<f32>,
) {
    out.clear();
    #[cfg(target_arch = "x86_64")]
    if F16C && d.is_multiple_of(8) {
        use std::arch::x86_64::*;
        // Written once, straight from the conversions: zero-filling the
        // buffer first was a second pass over it (memset) every call.
        out.reserve(n_pos * d);
        let dst = out.spare_capacity_mut().as_mut_ptr() as *mut f32;
        for p in 0..n_pos {
            let src = &cache.row(p)[kv_head * d..(kv_head + 1) * d];
            for (i, h) in src.chunks_exact(8).enumerate() {
                // SAFETY: F16C is set only from `attend_fma` (the CPU has
                // F16C); `h` holds 8 values; `dst` has room for n_pos * d
                // values (reserved above) and p * d + 8 * i + 8 <= n_pos * d.
                unsafe {
                    let v = _mm256_cvtph_ps(_mm_loadu_si128(h.as_ptr() as *const __m128i));
                    _mm256_storeu_ps(dst.add(p * d + 8 * i), v);
                }
            }
        }
        // SAFETY: the loop above initialized all n_pos * d values.
        unsafe { out.set_len(n_pos * d) };
        return;
    }
    out.resize(n_pos * d, 0.0);
    for (p, row) in out.chunks_exact_mut(d).enumerate() {
        cache.row(p)[kv_head * d..(kv_head + 1) * d].convert_to_f32_slice(row);
    }
}

/// [`attend_group`] in the order of ggml's W-lane vectors (16: AVX-512,
/// 8: AVX2).
#[inline(always)]
fn attend<const F16C: bool, const W: usize>(
    shape: AttentionShape,
    input: &GroupInput<'_>,
    s: &mut Scratch,
    out: &mut [f32],
) {
    let GroupInput {
        q,
        keys,
        values,
        kv_head,
        n_pos,
        order,
    } = *input;
    let d = shape.head_dim;
    let gemm = order == Order::Prefill && d.is_multiple_of(W);
    let scale = 1.0 / (d as f32).sqrt();
    widen_head::<F16C>(keys, kv_head, d, n_pos, &mut s.keys);
    widen_head::<F16C>(values, kv_head, d, n_pos, &mut s.values);
    for (qh, oh) in q.chunks_exact(d).zip(out.chunks_exact_mut(d)) {
        // ggml converts the query to the cache's type before Q·K.
        s.q16.clear();
        s.q16.extend(qh.iter().map(|v| f16::from_f32(*v).to_f32()));
        s.scores.clear();
        for key in s.keys.chunks_exact(d) {
            let dot = if gemm {
                g::dot_gemm::<W>(key, &s.q16)
            } else {
                g::dot::<W>(key, &s.q16)
            };
            s.scores.push(dot * scale);
        }
        softmax_f16::<W>(&mut s.scores);
        // softmax · V over the transposed V rows: position p lands in lane
        // p % 4W (vec_dot's 4xW accumulators) or p % W (tinyBLAS's one
        // accumulator); each lane holds a whole head row.
        let slots = if gemm { W } else { 4 * W };
        // Lanes no position reaches stay +0.0; `reduce_lanes` leaves them out.
        let used = n_pos.min(slots);
        s.acc.clear();
        s.acc.resize(used * d, 0.0);
        for (p, (w, value)) in s.scores.iter().zip(s.values.chunks_exact(d)).enumerate() {
            let lane = &mut s.acc[(p % slots) * d..(p % slots + 1) * d];
            for (a, v) in lane.iter_mut().zip(value) {
                *a = w.mul_add(*v, *a);
            }
        }
        reduce_lanes::<W>(&s.acc, d, slots, &mut s.tree, oh);
    }
}

/// `out[i]` = the reduction of lane values `acc[l * d + i]` over the
/// `slots` lanes, in exactly the order of [`g::reduce_step`] (4W lanes) or
/// [`g::reduce`] (W lanes). The tree is the same for every `i`, so it
/// runs on whole rows and vectorizes, instead of gathering each `i`'s
/// lanes with a stride of `d`. Lanes past `acc`'s end are +0.0 and are
/// skipped: no lane or partial sum here can be -0.0 (each starts at +0.0
/// and round-to-nearest never turns a sum into -0.0 unless both terms
/// are), so adding +0.0 would change nothing.
#[inline(always)]
fn reduce_lanes<const W: usize>(
    acc: &[f32],
    d: usize,
    slots: usize,
    tree: &mut Vec<f32>,
    out: &mut [f32],
) {
    let used = acc.len() / d;
    let row = |l: usize| (l < used).then(|| &acc[l * d..(l + 1) * d]);
    let step = slots == 4 * W;
    tree.clear();
    tree.resize(W * d, 0.0);
    // x0[lane] = (acc[0] + acc[2]) + (acc[1] + acc[3]) for the 4xW layout;
    // the lanes themselves for the W-lane one.
    for lane in 0..W.min(used) {
        let x0 = &mut tree[lane * d..(lane + 1) * d];
        let Some(a0) = row(lane) else { continue };
        x0.copy_from_slice(a0);
        if !step {
            continue;
        }
        if let Some(a2) = row(2 * W + lane) {
            for i in 0..d {
                x0[i] += a2[i];
            }
        }
        match (row(W + lane), row(3 * W + lane)) {
            (Some(a1), Some(a3)) => {
                for i in 0..d {
                    x0[i] += a1[i] + a3[i];
                }
            }
            (Some(a1), None) => {
                for i in 0..d {
                    x0[i] += a1[i];
                }
            }
            _ => {}
        }
    }
    // Halves down to 4 rows: t[k] = x0[k + width] + x0[k].
    let mut width = W;
    while width > 4 {
        width /= 2;
        for k in 0..width {
            let (low, high) = tree.split_at_mut((k + width) * d);
            let (dst, src) = (&mut low[k * d..(k + 1) * d], &high[..d]);
            for i in 0..d {
                dst[i] += src[i];
            }
        }
    }
    let t = |k: usize, i: usize| tree[k * d + i];
    for (i, o) in out.iter_mut().enumerate() {
        *o = if step && W != LANES {
            // `GGML_F32x8_REDUCE`'s two `hadd`s.
            (t(0, i) + t(1, i)) + (t(2, i) + t(3, i))
        } else {
            (t(0, i) + t(2, i)) + (t(1, i) + t(3, i))
        };
    }
}

/// ggml's `soft_max`, then each weight rounded to f16 as the following
/// f16 matmul does.
#[inline(always)]
fn softmax_f16<const W: usize>(x: &mut [f32]) {
    g::softmax::<W>(x);
    for w in x.iter_mut() {
        *w = f16::from_f32(*w).to_f32();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_reduction_equals_ggmls_per_value_reduction_bit_for_bit() {
        check::<LANES>();
        check::<8>();
        fn check<const W: usize>() {
            let d = 64;
            for (slots, used) in [
                (W, W),
                (W, 5),
                (4 * W, 4 * W),
                (4 * W, 1),
                (4 * W, 23),
                (4 * W, 2 * W + 8),
            ] {
                let mut acc: Vec<f32> = (0..slots * d)
                    .map(|i| ((i * 7919 % 1013) as f32 - 506.0) * 1.37e-3)
                    .collect();
                acc[used * d..].fill(0.0);
                let mut out = vec![0f32; d];
                reduce_lanes::<W>(&acc[..used * d], d, slots, &mut Vec::new(), &mut out);
                for (i, got) in out.iter().enumerate() {
                    let want = if slots == W {
                        g::reduce::<W>(&std::array::from_fn(|l| acc[l * d + i]))
                    } else {
                        g::reduce_step::<W>(&std::array::from_fn(|j| {
                            std::array::from_fn(|l| acc[(j * W + l) * d + i])
                        }))
                    };
                    assert_eq!(got.to_bits(), want.to_bits(), "W {W} slots {slots}, i {i}");
                }
            }
        }
    }
}

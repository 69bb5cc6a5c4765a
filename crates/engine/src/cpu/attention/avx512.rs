//! [`super::attend_group`] with AVX-512, bit for bit the same numbers:
//! the f16 cache is read in place (no widened copy), 16 positions' scores
//! are reduced together (the lanes of each position's vector summed in
//! `reduce16`'s tree by transposing shuffles), and the softmax-weighted
//! sum of values runs over whole 64-value slices of a head row, lane
//! chains and tree as in [`super::reduce_lanes`], in registers.
//!
//! Measured (`engine-bench -b 8 -p 16 -n 64`, 2 threads, contexts 17..80):
//! attention 3.1 -> 1.1 ms per decode step of 8 sequences, 0.48 -> 0.31 ms
//! at batch 1.

use std::arch::x86_64::*;
use std::sync::OnceLock;

use super::super::dot;
use super::super::ggml_numerics as g;
use super::{AttentionShape, GroupInput, Order};
use crate::kv_cache::KvRows;

/// Head rows up to this many values (16 vectors of the query in registers).
const MAX_HEAD_DIM: usize = 256;

/// Whether this kernel runs here for heads of `head_dim` values: AVX-512F
/// on top of the AVX2/FMA/F16C kernels `dot::best` chose (so
/// `SERVEBENCH_KERNELS=portable` turns this off too), heads a whole number
/// of ggml's 64-value steps.
pub(super) fn available(head_dim: usize) -> bool {
    static CPU: OnceLock<bool> = OnceLock::new();
    let cpu = *CPU.get_or_init(|| dot::best().fma && is_x86_feature_detected!("avx512f"));
    cpu && head_dim.is_multiple_of(g::STEP) && head_dim <= MAX_HEAD_DIM
}

/// 16 f16 at `p` as 16 f32.
#[inline]
#[target_feature(enable = "avx512f,avx2,fma,f16c")]
pub(super) unsafe fn load16(p: *const half::f16) -> __m512 {
    _mm512_cvtph_ps(_mm256_loadu_si256(p as *const __m256i))
}

/// Each f32 lane rounded to f16 and back (round to nearest even, as
/// `half`'s conversion).
#[inline]
#[target_feature(enable = "avx512f,avx2,fma,f16c")]
pub(super) unsafe fn round_f16(v: __m512) -> __m512 {
    _mm512_cvtph_ps(_mm512_cvtps_ph::<
        { _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC },
    >(v))
}

/// `reduce16` of each of 16 vectors, lane i of the result from `v[i]`:
/// the same pairs added in the same tree (halves, quarters, then pairs),
/// two vectors per shuffle.
#[inline]
#[target_feature(enable = "avx512f,avx2,fma,f16c")]
pub(super) unsafe fn reduce16_x16(v: &[__m512; 16]) -> __m512 {
    // Halves: w[k] = [t3 of v[2k] | t3 of v[2k + 1]].
    let w: [__m512; 8] = std::array::from_fn(|k| {
        let (a, b) = (v[2 * k], v[2 * k + 1]);
        _mm512_add_ps(
            _mm512_shuffle_f32x4::<0x44>(a, b),
            _mm512_shuffle_f32x4::<0xEE>(a, b),
        )
    });
    // Quarters: z[k] holds t6 of positions 4k..4k + 4, one per 128 bits.
    let z: [__m512; 4] = std::array::from_fn(|k| {
        let (a, b) = (w[2 * k], w[2 * k + 1]);
        _mm512_add_ps(
            _mm512_shuffle_f32x4::<0x88>(a, b),
            _mm512_shuffle_f32x4::<0xDD>(a, b),
        )
    });
    // (t6[0] + t6[2], t6[1] + t6[3]): y[k], 128-bit part q, holds those
    // of positions q + 8k (lanes 0, 1) and q + 8k + 4 (lanes 2, 3).
    let y: [__m512; 2] = std::array::from_fn(|k| {
        let (a, b) = (z[2 * k], z[2 * k + 1]);
        _mm512_add_ps(
            _mm512_shuffle_ps::<0x44>(a, b),
            _mm512_shuffle_ps::<0xEE>(a, b),
        )
    });
    // The final pair: lane 4q + i is position q + 4i.
    let r = _mm512_add_ps(
        _mm512_shuffle_ps::<0x88>(y[0], y[1]),
        _mm512_shuffle_ps::<0xDD>(y[0], y[1]),
    );
    let back = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    _mm512_permutexvar_ps(back, r)
}

/// One position's 16 lanes before `reduce16`: ggml's `ggml_vec_dot_f16`
/// (4x16 accumulators chained over 64-value steps, combined as
/// `GGML_F32x16_REDUCE` does before its last sum) or tinyBLAS's one
/// 16-lane accumulator. The head size is a constant so that the query
/// stays in registers.
#[inline]
#[target_feature(enable = "avx512f,avx2,fma,f16c")]
unsafe fn score_lanes<const D16: usize>(
    q: &[__m512; D16],
    k: *const half::f16,
    order: Order,
) -> __m512 {
    match order {
        Order::Decode => {
            let mut acc = [_mm512_setzero_ps(); 4];
            for s in (0..D16).step_by(4) {
                for (j, a) in acc.iter_mut().enumerate() {
                    *a = _mm512_fmadd_ps(load16(k.add(16 * (s + j))), q[s + j], *a);
                }
            }
            _mm512_add_ps(_mm512_add_ps(acc[0], acc[2]), _mm512_add_ps(acc[1], acc[3]))
        }
        Order::Prefill => {
            let mut acc = _mm512_setzero_ps();
            for (c, qc) in q.iter().enumerate() {
                acc = _mm512_fmadd_ps(load16(k.add(16 * c)), *qc, acc);
            }
            acc
        }
    }
}

/// One query head's scaled scores over positions `0..n_pos` (`key(p)`:
/// its head row) into `dst`, 16 positions reduced together.
#[inline]
#[target_feature(enable = "avx512f,avx2,fma,f16c")]
unsafe fn scores<const D16: usize>(
    qh: *const f32,
    key: impl Fn(usize) -> *const half::f16,
    n_pos: usize,
    order: Order,
    dst: *mut f32,
) {
    let scale = _mm512_set1_ps(1.0 / ((16 * D16) as f32).sqrt());
    // ggml converts the query to the cache's type before Q·K.
    let q16: [__m512; D16] = std::array::from_fn(|c| round_f16(_mm512_loadu_ps(qh.add(16 * c))));
    for first in (0..n_pos).step_by(16) {
        let mut lanes = [_mm512_setzero_ps(); 16];
        for (i, l) in lanes.iter_mut().enumerate().take(n_pos - first) {
            *l = score_lanes(&q16, key(first + i), order);
        }
        let s = _mm512_mul_ps(reduce16_x16(&lanes), scale);
        _mm512_storeu_ps(dst.add(first), s);
    }
}

/// See [`super::attend_group`]; `scores` is scratch.
///
/// # Safety
/// [`available`] said yes for `shape.head_dim`.
#[target_feature(enable = "avx512f,avx2,fma,f16c")]
pub(super) unsafe fn attend(
    shape: AttentionShape,
    input: &GroupInput<'_>,
    scores: &mut Vec<f32>,
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
    assert!(keys.capacity() >= n_pos && values.capacity() >= n_pos);
    assert!(keys.row(0).len() >= (kv_head + 1) * d && values.row(0).len() >= (kv_head + 1) * d);
    // Positions below n_pos only (checked above), `d` values from
    // `kv_head * d` on, within each row (checked above).
    let row = |cache: &KvRows<'_>, p: usize| cache.row_ptr(p).add(kv_head * d);
    for (qh, oh) in q.chunks_exact(d).zip(out.chunks_exact_mut(d)) {
        scores.clear();
        scores.reserve(n_pos.next_multiple_of(16));
        let (qh, key, dst) = (qh.as_ptr(), |p| row(&keys, p), scores.as_mut_ptr());
        match d / 16 {
            4 => self::scores::<4>(qh, key, n_pos, order, dst),
            8 => self::scores::<8>(qh, key, n_pos, order, dst),
            12 => self::scores::<12>(qh, key, n_pos, order, dst),
            _ => self::scores::<16>(qh, key, n_pos, order, dst),
        }
        scores.set_len(n_pos);
        softmax_f16(scores);
        weighted_values(scores, |p| row(&values, p), d, order, oh);
    }
}

/// `out` = Σ_p w[p] · V[p] in llama.cpp's order: position p's products
/// go to lane p % 64 (`ggml_vec_dot_f16`'s 4x16 accumulators) or p % 16
/// (tinyBLAS), chained in position order, then reduced as
/// [`super::reduce_lanes`] does; 64 values of the row at a time.
#[inline]
#[target_feature(enable = "avx512f,avx2,fma,f16c")]
unsafe fn weighted_values(
    w: &[f32],
    value: impl Fn(usize) -> *const half::f16,
    d: usize,
    order: Order,
    out: &mut [f32],
) {
    let n_pos = w.len();
    for c in (0..d).step_by(64) {
        let dst = out.as_mut_ptr().add(c);
        if order == Order::Prefill {
            // A block of prefill rows' routine, for one head.
            let head = |_| (w.as_ptr(), n_pos);
            super::avx512_rows::weighted_values::<1>(head, |p| value(p).add(c), |_| dst);
            continue;
        }
        // x0 of reduce_lanes: one row (4 vectors) per lane 0..16; lanes
        // l, 16 + l, 32 + l, 48 + l, then (a0 + a2) + (a1 + a3).
        let mut x0 = [[_mm512_setzero_ps(); 4]; 16];
        for (l, x) in x0.iter_mut().enumerate().take(n_pos) {
            let mut a = [[_mm512_setzero_ps(); 4]; 4];
            for (m, p) in (l..n_pos).step_by(16).enumerate() {
                add_weighted(&mut a[m % 4], w[p], value(p).add(c));
            }
            *x = std::array::from_fn(|j| {
                _mm512_add_ps(
                    _mm512_add_ps(a[0][j], a[2][j]),
                    _mm512_add_ps(a[1][j], a[3][j]),
                )
            });
        }
        store_reduced(&mut x0, dst);
    }
}

/// ggml's `soft_max` over one row of scores (as [`g::softmax`]: 16-lane
/// chunks of `expf`, each chunk's `reduce16` summed in f64, scaled by the
/// f32 inverse), then each weight rounded to f16, as the following f16
/// matmul does; in registers, without the portable routine's copies.
#[inline]
#[target_feature(enable = "avx512f,avx2,fma,f16c")]
pub(super) unsafe fn softmax_f16(scores: &mut [f32]) {
    let n_pos = scores.len();
    let w = scores.as_mut_ptr();
    let mask = |first: usize| -> __mmask16 {
        if n_pos - first >= 16 {
            0xffff
        } else {
            (1 << (n_pos - first)) - 1
        }
    };
    let minus_inf = _mm512_set1_ps(f32::NEG_INFINITY);
    let mut m = minus_inf;
    for first in (0..n_pos).step_by(16) {
        m = _mm512_max_ps(
            m,
            _mm512_mask_loadu_ps(minus_inf, mask(first), w.add(first)),
        );
    }
    let max = _mm512_set1_ps(_mm512_reduce_max_ps(m));
    let mut sum = 0f64;
    for first in (0..n_pos).step_by(16) {
        // Lanes past the row hold -inf, whose `expf` is +0.0.
        let v = _mm512_sub_ps(
            _mm512_mask_loadu_ps(minus_inf, mask(first), w.add(first)),
            max,
        );
        let e = g::avx512::expf16(v);
        _mm512_mask_storeu_ps(w.add(first), mask(first), e);
        // reduce16: halves, quarters, then (t6[0] + t6[2]) + (t6[1] + t6[3]).
        let t3 = _mm256_add_ps(upper_half(e), _mm512_castps512_ps256(e));
        let t6 = _mm_add_ps(_mm256_extractf128_ps::<1>(t3), _mm256_castps256_ps128(t3));
        let t = _mm_add_ps(t6, _mm_movehl_ps(t6, t6));
        sum += _mm_cvtss_f32(_mm_add_ss(t, _mm_movehdup_ps(t))) as f64;
    }
    let inv = _mm512_set1_ps((1.0 / sum) as f32);
    for first in (0..n_pos).step_by(16) {
        let v = _mm512_maskz_loadu_ps(mask(first), w.add(first));
        _mm512_mask_storeu_ps(w.add(first), mask(first), round_f16(_mm512_mul_ps(v, inv)));
    }
}

/// Lanes 8..16 (AVX-512F's form of `_mm512_extractf32x8_ps`).
#[inline]
#[target_feature(enable = "avx512f,avx2,fma,f16c")]
unsafe fn upper_half(v: __m512) -> __m256 {
    _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(v)))
}

/// `reduce16` over the 16 lane rows of 64 values (halves, quarters, then
/// pairs), written to `out[0..64]`; `x0` is scratch afterwards.
#[inline]
#[target_feature(enable = "avx512f,avx2,fma,f16c")]
pub(super) unsafe fn store_reduced(x0: &mut [[__m512; 4]; 16], out: *mut f32) {
    for (width, shift) in [(8, 8), (4, 4)] {
        for k in 0..width {
            let high = x0[k + shift];
            for (a, b) in x0[k].iter_mut().zip(high) {
                *a = _mm512_add_ps(*a, b);
            }
        }
    }
    let [a0, a1, a2, a3, ..] = *x0;
    for (j, (((v0, v1), v2), v3)) in a0.into_iter().zip(a1).zip(a2).zip(a3).enumerate() {
        let sum = _mm512_add_ps(_mm512_add_ps(v0, v2), _mm512_add_ps(v1, v3));
        _mm512_storeu_ps(out.add(16 * j), sum);
    }
}

/// `acc += w · v[0..64]` (`v`: 64 f16 of a value row), one fused
/// multiply-add per value.
#[inline]
#[target_feature(enable = "avx512f,avx2,fma,f16c")]
unsafe fn add_weighted(acc: &mut [__m512; 4], w: f32, v: *const half::f16) {
    let w = _mm512_set1_ps(w);
    for (j, a) in acc.iter_mut().enumerate() {
        *a = _mm512_fmadd_ps(w, load16(v.add(16 * j)), *a);
    }
}

#[cfg(test)]
mod tests {
    use super::super::{attend, Scratch};
    use super::*;
    use crate::kv_cache::paged;
    use half::f16;

    /// Every output value equals the portable kernel's, bit for bit, for
    /// both orders, partial and whole blocks of positions, one and two
    /// 64-value steps per head.
    #[test]
    fn matches_the_portable_kernel_bit_for_bit() {
        if !available(64) {
            eprintln!("skipped: no AVX-512F here, or SERVEBENCH_KERNELS=portable");
            return;
        }
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
        };
        for d in [64, 128] {
            let shape = AttentionShape {
                n_head: 6,
                n_kv_head: 2,
                head_dim: d,
            };
            let kv_dim = shape.n_kv_head * d;
            for n_pos in [1, 5, 16, 17, 40, 63, 64, 65, 130, 200] {
                let keys: Vec<f16> = (0..n_pos * kv_dim)
                    .map(|_| f16::from_f32(next() * 3.0))
                    .collect();
                let values: Vec<f16> = (0..n_pos * kv_dim).map(|_| f16::from_f32(next())).collect();
                let (keys, values) = (paged(&keys, kv_dim), paged(&values, kv_dim));
                let q: Vec<f32> = (0..3 * d).map(|_| next() * 2.0).collect();
                for order in [Order::Decode, Order::Prefill] {
                    for kv_head in 0..2 {
                        let input = GroupInput {
                            q: &q,
                            keys: KvRows::new(&keys, 0, kv_dim),
                            values: KvRows::new(&values, 0, kv_dim),
                            kv_head,
                            n_pos,
                            order,
                        };
                        let mut want = vec![0f32; 3 * d];
                        attend::<false, { g::LANES }>(
                            shape,
                            &input,
                            &mut Scratch::default(),
                            &mut want,
                        );
                        let mut got = vec![0f32; 3 * d];
                        // SAFETY: `available` said yes above.
                        unsafe { super::attend(shape, &input, &mut Vec::new(), &mut got) };
                        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                            assert_eq!(
                                g.to_bits(),
                                w.to_bits(),
                                "d {d} n_pos {n_pos} {order:?} head {kv_head} value {i}: {g} vs {w}"
                            );
                        }
                    }
                }
            }
        }
    }
}

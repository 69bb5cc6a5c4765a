//! [`super::attend_rows`] with AVX2 on CPUs without AVX-512, where ggml's
//! vectors have 8 lanes: consecutive query rows of one sequence in the
//! prefill (tinyBLAS) order, bit for bit what the portable kernel gives
//! each row alone. The portable kernel, row by row, widens every key and
//! value of the KV head again for each row (a 3,000-token prompt converts
//! each position about 3,000 times); here a block of rows widens each 8 keys
//! once for all its query heads and each value slice once per
//! 2 query heads. The order is [`super::tiled_rows`]'s.

use std::arch::x86_64::*;

use half::f16;

use super::super::ggml_numerics as g;
use super::tiled_rows::{self, TileKernels};
use super::{AttentionShape, RowsInput, RowsScratch};

/// Head values one weighted-sum pass covers (4 vectors).
const SLICE: usize = 32;

/// Whether this kernel runs for heads of `head_dim` values: the CPU has the
/// AVX2/FMA/F16C kernels `dot::best` chose, ggml's vectors have 8 lanes
/// here (no AVX-512F), and a head is whole slices.
pub(super) fn available(head_dim: usize) -> bool {
    super::super::dot::best().fma
        && g::lanes_here() == 8
        && head_dim.is_multiple_of(SLICE)
        && head_dim <= 128
}

/// 8 f16 at `p` as 8 f32.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn load8(p: *const f16) -> __m256 {
    _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i))
}

/// `g::reduce::<8>` of each of 8 vectors, lane i of the result from
/// `v[i]`: halves added (t[k] = v[k] + v[k + 4]), then (t0 + t2) +
/// (t1 + t3), two and four vectors per shuffle.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn reduce8_x8(v: &[__m256; 8]) -> __m256 {
    // u[k] = [t of v[k] | t of v[k + 4]].
    let u: [__m256; 4] = std::array::from_fn(|k| {
        let (a, b) = (v[k], v[k + 4]);
        _mm256_add_ps(
            _mm256_permute2f128_ps::<0x20>(a, b),
            _mm256_permute2f128_ps::<0x31>(a, b),
        )
    });
    // s = [t0 + t2, t1 + t3] of two vectors, per 128-bit half.
    let pair = |a: __m256, b: __m256| {
        _mm256_add_ps(
            _mm256_shuffle_ps::<0b0100_0100>(a, b),
            _mm256_shuffle_ps::<0b1110_1110>(a, b),
        )
    };
    let (s01, s23) = (pair(u[0], u[1]), pair(u[2], u[3]));
    _mm256_add_ps(
        _mm256_shuffle_ps::<0b1000_1000>(s01, s23),
        _mm256_shuffle_ps::<0b1101_1101>(s01, s23),
    )
}

/// See [`super::attend_rows`].
///
/// # Safety
/// [`available`] said yes for `shape.head_dim`.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn attend_rows(
    shape: AttentionShape,
    input: &RowsInput<'_>,
    s: &mut RowsScratch,
    out: &mut [f32],
) {
    tiled_rows::attend_rows::<Avx2>(shape, input, s, out)
}

/// This file's kernels in [`tiled_rows`]'s order.
struct Avx2;

impl TileKernels for Avx2 {
    const LANES: usize = 8;
    /// 2 x 4 accumulators, a value slice of 4 vectors and a weight take 13
    /// of the 16 vector registers.
    const QUERIES: usize = 2;
    const SLICE: usize = SLICE;

    #[inline(always)]
    unsafe fn round_f16(src: *const f32, dst: *mut f32, d: usize) {
        for c in (0..d).step_by(8) {
            _mm256_storeu_ps(dst.add(c), round_f16(_mm256_loadu_ps(src.add(c))));
        }
    }

    #[inline(always)]
    unsafe fn widen(src: *const f16, dst: *mut f32, d: usize) {
        for c in (0..d).step_by(8) {
            _mm256_storeu_ps(dst.add(c), load8(src.add(c)));
        }
    }

    #[inline(always)]
    unsafe fn scores(
        d: usize,
        q16: *const f32,
        tile: *const f32,
        seen: usize,
        scale: f32,
        dst: *mut f32,
    ) {
        let scale = _mm256_set1_ps(scale);
        match d / 8 {
            4 => scores8::<4>(q16, tile, seen, scale, dst),
            8 => scores8::<8>(q16, tile, seen, scale, dst),
            12 => scores8::<12>(q16, tile, seen, scale, dst),
            _ => scores8::<16>(q16, tile, seen, scale, dst),
        }
    }

    #[inline(always)]
    unsafe fn softmax_f16(scores: &mut [f32]) {
        softmax_f16(scores)
    }

    #[inline(always)]
    unsafe fn weighted_values(
        heads: usize,
        head: impl Fn(usize) -> (*const f32, usize),
        value: impl Fn(usize) -> *const f16,
        dst: impl Fn(usize) -> *mut f32,
    ) {
        match heads {
            2 => weighted_values::<2>(head, value, dst),
            _ => weighted_values::<1>(head, value, dst),
        }
    }
}

/// Each f32 lane rounded to f16 and back (round to nearest even, as
/// `half`'s conversion).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn round_f16(v: __m256) -> __m256 {
    _mm256_cvtph_ps(_mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(v))
}

/// ggml's 8-lane `soft_max` ([`g::softmax`]), then each weight rounded to
/// f16 as the following f16 matmul does.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn softmax_f16(scores: &mut [f32]) {
    g::softmax::<8>(scores);
    let mut chunks = scores.chunks_exact_mut(8);
    for c in &mut chunks {
        _mm256_storeu_ps(c.as_mut_ptr(), round_f16(_mm256_loadu_ps(c.as_ptr())));
    }
    for w in chunks.into_remainder() {
        *w = f16::from_f32(*w).to_f32();
    }
}

/// One query head's scaled scores for the first `seen` (<= 8) of 8
/// positions whose keys (`D8` vectors each) are widened in `tile`, into
/// `dst[0..8]`: each position's 8 lanes chained over the head row as
/// tinyBLAS does, reduced by `reduce::<8>`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn scores8<const D8: usize>(
    q16: *const f32,
    tile: *const f32,
    seen: usize,
    scale: __m256,
    dst: *mut f32,
) {
    let q: [__m256; D8] = std::array::from_fn(|c| _mm256_loadu_ps(q16.add(8 * c)));
    let mut lanes = [_mm256_setzero_ps(); 8];
    let lane = |t: usize| {
        let key = tile.add(t * 8 * D8);
        let mut acc = _mm256_setzero_ps();
        for (c, qc) in q.iter().enumerate() {
            acc = _mm256_fmadd_ps(_mm256_loadu_ps(key.add(8 * c)), *qc, acc);
        }
        acc
    };
    if seen == 8 {
        lanes = std::array::from_fn(lane);
    } else {
        for (t, l) in lanes.iter_mut().enumerate().take(seen) {
            *l = lane(t);
        }
    }
    _mm256_storeu_ps(dst, _mm256_mul_ps(reduce8_x8(&lanes), scale));
}

/// For `Q` query heads (`head(k)`: its softmax weights and how many
/// positions it sees), [`SLICE`] values of Σ_p w[p] · V[p] into `dst(k)`
/// in tinyBLAS's order: position p's product goes to lane p % 8, chained
/// in position order, lanes reduced as `reduce::<8>`. Each value slice is
/// widened once for all `Q` heads; a head stops at its own last position,
/// so its chains are exactly the ones it had alone.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn weighted_values<const Q: usize>(
    head: impl Fn(usize) -> (*const f32, usize),
    value: impl Fn(usize) -> *const f16,
    dst: impl Fn(usize) -> *mut f32,
) {
    let heads: [(*const f32, usize); Q] = std::array::from_fn(&head);
    let seen_by_all = heads.iter().map(|h| h.1).min().unwrap_or(0);
    let seen_by_any = heads.iter().map(|h| h.1).max().unwrap_or(0);
    let mut x0 = [[[_mm256_setzero_ps(); 4]; 8]; Q];
    for l in 0..8.min(seen_by_any) {
        let mut acc = [[_mm256_setzero_ps(); 4]; Q];
        let mut p = l;
        // Positions every head sees first, without a check per head.
        while p < seen_by_all {
            let v: [__m256; 4] = std::array::from_fn(|j| load8(value(p).add(8 * j)));
            for (a, (w, _)) in acc.iter_mut().zip(&heads) {
                let w = _mm256_broadcast_ss(&*w.add(p));
                for (aj, vj) in a.iter_mut().zip(v) {
                    *aj = _mm256_fmadd_ps(w, vj, *aj);
                }
            }
            p += 8;
        }
        while p < seen_by_any {
            let v: [__m256; 4] = std::array::from_fn(|j| load8(value(p).add(8 * j)));
            for (a, (w, seen)) in acc.iter_mut().zip(&heads) {
                if p < *seen {
                    let w = _mm256_broadcast_ss(&*w.add(p));
                    for (aj, vj) in a.iter_mut().zip(v) {
                        *aj = _mm256_fmadd_ps(w, vj, *aj);
                    }
                }
            }
            p += 8;
        }
        for (x, a) in x0.iter_mut().zip(acc) {
            x[l] = a;
        }
    }
    for (k, x) in x0.iter_mut().enumerate() {
        // Halves (t[k] = x[k] + x[k + 4]), then (t0 + t2) + (t1 + t3);
        // lanes no position reached are +0.0 and change nothing.
        for k in 0..4 {
            let high = x[k + 4];
            for (a, b) in x[k].iter_mut().zip(high) {
                *a = _mm256_add_ps(*a, b);
            }
        }
        let out = dst(k);
        let [a0, a1, a2, a3, ..] = *x;
        for (j, (((v0, v1), v2), v3)) in a0.into_iter().zip(a1).zip(a2).zip(a3).enumerate() {
            let sum = _mm256_add_ps(_mm256_add_ps(v0, v2), _mm256_add_ps(v1, v3));
            _mm256_storeu_ps(out.add(8 * j), sum);
        }
    }
}

#[cfg(test)]
mod tests {
    /// Bit for bit the portable 8-lane kernel's numbers, on any CPU with
    /// AVX2, FMA and F16C (AVX-512 ones too: the kernel is called directly).
    #[test]
    fn matches_the_portable_kernel_row_by_row_bit_for_bit() {
        if !super::super::super::dot::best().fma {
            eprintln!("skipped: no AVX2/FMA/F16C here, or SERVEBENCH_KERNELS=portable");
            return;
        }
        super::super::tiled_rows::tests::matches_the_portable_kernel::<8>(super::attend_rows);
    }
}

//! [`super::attend_rows`] with AVX-512: consecutive query rows of one
//! sequence in the prefill (tinyBLAS) order, bit for bit what
//! [`super::avx512::attend`] gives each row alone, with the f16 cache's
//! conversions shared. Row by row, every query head converted every key
//! and value it read; a block of rows converts each 16 keys once into an
//! f32 tile for all its query heads, and each value row once per
//! 6 query heads. The order is [`super::tiled_rows`]'s.

use std::arch::x86_64::*;

use half::f16;

use super::avx512::{load16, reduce16_x16, round_f16, softmax_f16, store_reduced};
use super::tiled_rows::{self, TileKernels};
use super::{AttentionShape, RowsInput, RowsScratch};

/// See [`super::attend_rows`].
///
/// # Safety
/// [`super::avx512::available`] said yes for `shape.head_dim`.
#[target_feature(enable = "avx512f,avx2,fma,f16c")]
pub(super) unsafe fn attend_rows(
    shape: AttentionShape,
    input: &RowsInput<'_>,
    s: &mut RowsScratch,
    out: &mut [f32],
) {
    tiled_rows::attend_rows::<Avx512>(shape, input, s, out)
}

/// This file's kernels in [`tiled_rows`]'s order.
struct Avx512;

impl TileKernels for Avx512 {
    const LANES: usize = 16;
    /// 6 x 4 accumulators, a value slice of 4 vectors and a weight take 29
    /// of the 32 vector registers.
    const QUERIES: usize = 6;
    const SLICE: usize = 64;

    #[inline(always)]
    unsafe fn round_f16(src: *const f32, dst: *mut f32, d: usize) {
        for c in (0..d).step_by(16) {
            _mm512_storeu_ps(dst.add(c), round_f16(_mm512_loadu_ps(src.add(c))));
        }
    }

    #[inline(always)]
    unsafe fn widen(src: *const f16, dst: *mut f32, d: usize) {
        for c in (0..d).step_by(16) {
            _mm512_storeu_ps(dst.add(c), load16(src.add(c)));
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
        let scale = _mm512_set1_ps(scale);
        match d / 16 {
            4 => scores16::<4>(q16, tile, seen, scale, dst),
            8 => scores16::<8>(q16, tile, seen, scale, dst),
            12 => scores16::<12>(q16, tile, seen, scale, dst),
            _ => scores16::<16>(q16, tile, seen, scale, dst),
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
            6 => weighted_values::<6>(head, value, dst),
            5 => weighted_values::<5>(head, value, dst),
            4 => weighted_values::<4>(head, value, dst),
            3 => weighted_values::<3>(head, value, dst),
            2 => weighted_values::<2>(head, value, dst),
            _ => weighted_values::<1>(head, value, dst),
        }
    }
}

/// One query head's scaled scores for the first `seen` (<= 16) of 16
/// positions whose keys (`D16` vectors each) are widened in `tile`, into
/// `dst[0..16]`: each position's 16 lanes chained over the head row as
/// tinyBLAS does, reduced by `reduce16`. The head size is a constant so
/// that the query stays in registers.
#[inline]
#[target_feature(enable = "avx512f,avx2,fma,f16c")]
unsafe fn scores16<const D16: usize>(
    q16: *const f32,
    tile: *const f32,
    seen: usize,
    scale: __m512,
    dst: *mut f32,
) {
    let q: [__m512; D16] = std::array::from_fn(|c| _mm512_loadu_ps(q16.add(16 * c)));
    let mut lanes = [_mm512_setzero_ps(); 16];
    let lane = |t: usize| {
        let key = tile.add(t * 16 * D16);
        let mut acc = _mm512_setzero_ps();
        for (c, qc) in q.iter().enumerate() {
            acc = _mm512_fmadd_ps(_mm512_loadu_ps(key.add(16 * c)), *qc, acc);
        }
        acc
    };
    if seen == 16 {
        lanes = std::array::from_fn(lane);
    } else {
        for (t, l) in lanes.iter_mut().enumerate().take(seen) {
            *l = lane(t);
        }
    }
    _mm512_storeu_ps(dst, _mm512_mul_ps(reduce16_x16(&lanes), scale));
}

/// For `Q` query heads (`head(k)`: its softmax weights and how many
/// positions it sees), 64 values of Σ_p w[p] · V[p] into `dst(k)` in
/// tinyBLAS's order: position p's product goes to lane p % 16, chained in
/// position order, lanes reduced by `reduce16`. Each value slice is
/// converted once for all `Q` heads; a head stops at its own last
/// position, so its chains are exactly the ones it had alone.
#[inline]
#[target_feature(enable = "avx512f,avx2,fma,f16c")]
pub(super) unsafe fn weighted_values<const Q: usize>(
    head: impl Fn(usize) -> (*const f32, usize),
    value: impl Fn(usize) -> *const f16,
    dst: impl Fn(usize) -> *mut f32,
) {
    let heads: [(*const f32, usize); Q] = std::array::from_fn(&head);
    let seen_by_all = heads.iter().map(|h| h.1).min().unwrap_or(0);
    let seen_by_any = heads.iter().map(|h| h.1).max().unwrap_or(0);
    let mut x0 = [[[_mm512_setzero_ps(); 4]; 16]; Q];
    for l in 0..16.min(seen_by_any) {
        let mut acc = [[_mm512_setzero_ps(); 4]; Q];
        let mut p = l;
        // Positions every head sees first, without a check per head.
        while p < seen_by_all {
            let v: [__m512; 4] = std::array::from_fn(|j| load16(value(p).add(16 * j)));
            for (a, (w, _)) in acc.iter_mut().zip(&heads) {
                let w = _mm512_set1_ps(*w.add(p));
                for (aj, vj) in a.iter_mut().zip(v) {
                    *aj = _mm512_fmadd_ps(w, vj, *aj);
                }
            }
            p += 16;
        }
        while p < seen_by_any {
            let v: [__m512; 4] = std::array::from_fn(|j| load16(value(p).add(16 * j)));
            for (a, (w, seen)) in acc.iter_mut().zip(&heads) {
                if p < *seen {
                    let w = _mm512_set1_ps(*w.add(p));
                    for (aj, vj) in a.iter_mut().zip(v) {
                        *aj = _mm512_fmadd_ps(w, vj, *aj);
                    }
                }
            }
            p += 16;
        }
        for (x, a) in x0.iter_mut().zip(acc) {
            x[l] = a;
        }
    }
    for (k, x) in x0.iter_mut().enumerate() {
        store_reduced(x, dst(k));
    }
}

#[cfg(test)]
mod tests {
    use super::super::avx512::available;

    /// Bit for bit the portable 16-lane kernel's numbers.
    #[test]
    fn matches_the_portable_kernel_row_by_row_bit_for_bit() {
        if !available(64) {
            eprintln!("skipped: no AVX-512F here, or SERVEBENCH_KERNELS=portable");
            return;
        }
        super::super::tiled_rows::tests::matches_the_portable_kernel::<16>(super::attend_rows);
    }
}

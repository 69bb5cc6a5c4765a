//! K-quant prefill sixteen weight rows per 512-bit vector, for CPUs with
//! AVX512 (F, BW, VNNI): Q4_K in the float order of llama.cpp's repacked
//! `gemm`, Q6_K in its tiled matmul's. Both orders let only exact integer
//! totals reach the floats (per pair of sub-blocks, per block), so the
//! integer lanes are free.
//!
//! Here lane r of every vector is weight row r: one `vpdpbusd` multiplies
//! 4 values of a sub-block of 16 rows by 4 activation bytes broadcast from
//! memory, and a sub-block's instructions leave each row's sum in its
//! lane, where one more instruction applies the row's scale. Against the
//! 256-bit tiles (`x86.rs`) that saves their per-row scale multiplies and
//! cross-lane sums.
//!
//! Each block of a group of 16 rows is transposed (gathers, and the scales
//! unpacked 16 rows per instruction) into an L1 buffer once per matmul, and
//! every strip of activation rows reads it there, so the path pays only
//! from [`Rows16::MIN_BATCH`] activation rows on.
// Accumulators are indexed by activation row; the const-bounded loops
// unroll completely.
#![allow(clippy::needless_range_loop)]

use std::arch::x86_64::*;

use super::blocks::{BlockQ4K, BlockQ6K};
use super::quantize::BlockQ8K;
use crate::cpu::dot_rows::OutRows;
use crate::cpu::interleaved::simd::prefetch_block;

/// Weight rows per group: one per 32-bit lane of a 512-bit vector.
pub const ROWS: usize = 16;

/// Activation rows per strip: 2 x 4 sub-block chains keep `vpdpbusd`'s
/// latency covered; 6 rows (12 chains) ran slower (`matmul_bench`).
const STRIP: usize = 4;
const _: () = assert!(STRIP == 4, "`gemm` has a case for each shorter strip");

/// The 64 vectors of a block's values come first in its buffer entry
/// (vector `4 * s + g` for Q6_K's sub-block s, `8 * s + g` for Q4_K's:
/// values `4g..4g + 4`), then what the type needs besides.
pub(super) const VALUES: usize = 64;

/// One weight type's transposition and per-block arithmetic.
///
/// # Safety (of each method)
/// The CPU has the features [`gemm`] names; `to` and `u` hold
/// [`Self::PER_BLOCK`] vectors; `wg` holds 16 rows of `nb` blocks and `x`
/// N rows of `nb` blocks from the one passed, with `acc` N entries.
pub trait Rows16 {
    type W;
    /// Vectors per block in the buffer.
    const PER_BLOCK: usize;
    /// Activation rows from which transposing a group pays for itself
    /// against the 256-bit tiles (`matmul_bench`, one thread, the 7B's
    /// shapes: below it the tiles were as fast or faster in one shape).
    const MIN_BATCH: usize;
    /// Block `b` of the 16 rows of `wg` (each `nb` blocks) into the buffer
    /// entry at `to`.
    unsafe fn transpose(wg: &[Self::W], nb: usize, b: usize, to: *mut __m512i);
    /// One block of a group (`u`, transposed) times N activation blocks
    /// (`x[t * nb]`), into each activation row's accumulators.
    unsafe fn strip<const N: usize>(
        u: *const __m512i,
        x: &[BlockQ8K],
        nb: usize,
        acc: &mut [[__m512; 2]],
    );
    /// A row's result from its accumulators.
    unsafe fn result(acc: [__m512; 2]) -> __m512;
}

/// `x` (n rows of `nb` blocks) times the `w.len() / nb` rows of `w`, a
/// multiple of [`ROWS`], into `out` at (t, r).
///
/// # Safety
/// The CPU has AVX512 F, BW, VL and VNNI; `out` as the K-quant `Kernel`'s
/// contract.
#[inline(always)]
pub unsafe fn gemm<T: Rows16>(w: &[T::W], x: &[BlockQ8K], nb: usize, out: OutRows) {
    let n = x.len() / nb;
    // Block by block, so one block of the group (5-6 KiB transposed) stays
    // in L1 while every activation row passes; the accumulators wait in
    // memory between blocks.
    let mut u = vec![_mm512_setzero_si512(); T::PER_BLOCK];
    let mut acc = vec![[_mm512_setzero_ps(); 2]; n];
    for g in 0..w.len() / nb / ROWS {
        let wg = &w[g * ROWS * nb..(g + 1) * ROWS * nb];
        acc.fill([_mm512_setzero_ps(); 2]);
        for b in 0..nb {
            T::transpose(wg, nb, b, u.as_mut_ptr());
            // The next block's rows arrive while this one computes (a
            // prefetch past the end never faults).
            for r in 0..ROWS {
                prefetch_block(wg.as_ptr().wrapping_add(r * nb + b + 1));
            }
            let mut t = 0;
            while t < n {
                let (x, acc) = (&x[t * nb + b..], &mut acc[t..]);
                let rows = STRIP.min(n - t);
                match rows {
                    1 => T::strip::<1>(u.as_ptr(), x, nb, acc),
                    2 => T::strip::<2>(u.as_ptr(), x, nb, acc),
                    3 => T::strip::<3>(u.as_ptr(), x, nb, acc),
                    _ => T::strip::<STRIP>(u.as_ptr(), x, nb, acc),
                }
                t += rows;
            }
        }
        for (t, a) in acc.iter().enumerate() {
            _mm512_storeu_ps(out.at(t, g * ROWS).ptr, T::result(*a));
        }
    }
}

/// Offsets of row r's block in a group, in bytes from row 0's.
#[inline(always)]
unsafe fn row_offsets<W>(nb: usize) -> __m512i {
    _mm512_mullo_epi32(
        _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
        _mm512_set1_epi32((nb * std::mem::size_of::<W>()) as i32),
    )
}

/// The 32-bit word at byte `at` of each of the 16 rows' blocks.
#[inline(always)]
unsafe fn gather<W>(rows: __m512i, first: &W, at: usize) -> __m512i {
    let p = (first as *const W as *const u8).add(at);
    _mm512_i32gather_epi32::<1>(rows, p as *const i32)
}

/// Bits `shift..` of each 32-bit lane, masked.
#[inline(always)]
unsafe fn bits(q: __m512i, shift: u32, mask: i32) -> __m512i {
    _mm512_and_si512(
        _mm512_srlv_epi32(q, _mm512_set1_epi32(shift as i32)),
        _mm512_set1_epi32(mask),
    )
}

/// Each lane's low 16 bits as an f16, widened.
#[inline(always)]
unsafe fn halves(v: __m512i) -> __m512 {
    _mm512_cvtph_ps(_mm512_cvtepi32_epi16(v))
}

/// Activation values `at..at + 4` of a block, broadcast.
#[inline(always)]
unsafe fn four(x: &BlockQ8K, at: usize) -> __m512i {
    _mm512_set1_epi32((x.qs.as_ptr().add(at) as *const i32).read_unaligned())
}

/// Two adjacent i16 of an activation block's sums, broadcast as a pair.
#[inline(always)]
unsafe fn pair(sums: &[i16], at: usize) -> __m512i {
    _mm512_set1_epi32((sums.as_ptr().add(at) as *const i32).read_unaligned())
}

/// Q4_K in `gemm`'s order: per block and pair of sub-blocks, the exact
/// total and mins total, then two FMA chains and their difference. The
/// values are taken as `q - 8` (each sub-block's sum starts at `-8 · Σ x`),
/// so a sub-block's sum fits an i16 (at most 32 x 8 x 127) and one
/// `vpdpwssd` against the rows' scales (each an i32 lane: the scale, then
/// 0) adds it to the pair's total; one more adds back `8 · scale · Σ x`
/// for both sub-blocks: 16 `vpdpbusd` and 3 `vpdpwssd` per 64 values.
pub struct Q4K16;

impl Q4K16 {
    pub(super) const SCALES: usize = VALUES; // [j]: each row's scale of sub-block j
    const SCALES8: usize = Self::SCALES + 8; // [k]: `8 · scale` of sub-blocks 2k, 2k + 1
    const MINS: usize = Self::SCALES8 + 4; // [k]: the mins of sub-blocks 2k, 2k + 1
    pub(super) const D: usize = Self::MINS + 4;
    const DMIN: usize = Self::D + 1;

    /// One activation block's mins chain (`acc`'s second accumulator):
    /// per pair of sub-blocks, the mins total times `dmin · d_x`.
    ///
    /// # Safety
    /// As [`Rows16`]'s methods.
    #[inline(always)]
    pub(super) unsafe fn mins(u: *const __m512i, x: &BlockQ8K, acc: &mut __m512) {
        let dmin = _mm512_load_ps(u.add(Self::DMIN) as *const f32);
        let dm = _mm512_mul_ps(dmin, _mm512_set1_ps(x.d));
        for k in 0..4 {
            let m = _mm512_load_si512(u.add(Self::MINS + k));
            let mins = _mm512_madd_epi16(m, pair(&x.sums32, 2 * k));
            *acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(mins), dm, *acc);
        }
    }
}

impl Rows16 for Q4K16 {
    type W = BlockQ4K;
    const PER_BLOCK: usize = Self::DMIN + 1;
    const MIN_BATCH: usize = 96;

    #[inline(always)]
    unsafe fn transpose(wg: &[BlockQ4K], nb: usize, b: usize, to: *mut __m512i) {
        let rows = row_offsets::<BlockQ4K>(nb);
        let first = wg.get_unchecked(b);
        let low = _mm512_set1_epi8(0x0f);
        // 32-bit word 8h + j of `qs` (byte 16 + 32h + 4j of the block)
        // holds values 4g..4g + 4 of sub-block j for g = 2h (low nibbles)
        // and 2h + 1 (high).
        for h in 0..4 {
            for j in 0..8 {
                let words = gather(rows, first, 16 + 32 * h + 4 * j);
                _mm512_store_si512(to.add(8 * j + 2 * h), _mm512_and_si512(words, low));
                let high = _mm512_and_si512(_mm512_srli_epi32::<4>(words), low);
                _mm512_store_si512(to.add(8 * j + 2 * h + 1), high);
            }
        }
        // Word 0 is `d`, `dmin`; words 1..4 the packed scales (ggml's
        // `get_scale_min_k4`: sub-blocks 0..4 in the low 6 bits of bytes j
        // and j + 4, 4..8 in the nibbles of bytes j + 4 and the top 2 bits
        // of bytes j - 4 and j).
        let (head, q0, q1, q2) = (
            gather(rows, first, 0),
            gather(rows, first, 4),
            gather(rows, first, 8),
            gather(rows, first, 12),
        );
        let mut sc = [_mm512_setzero_si512(); 8];
        let mut m = [_mm512_setzero_si512(); 8];
        for j in 0..4 {
            let s = 8 * j as u32;
            sc[j] = bits(q0, s, 63);
            m[j] = bits(q1, s, 63);
            let top = |q| _mm512_slli_epi32::<4>(bits(q, s + 6, 3));
            sc[j + 4] = _mm512_or_si512(bits(q2, s, 0x0f), top(q0));
            m[j + 4] = _mm512_or_si512(bits(q2, s + 4, 0x0f), top(q1));
        }
        for j in 0..8 {
            _mm512_store_si512(to.add(Self::SCALES + j), sc[j]);
        }
        let pack = |a: __m512i, b: __m512i| _mm512_or_si512(a, _mm512_slli_epi32::<16>(b));
        for k in 0..4 {
            let (s0, s1) = (sc[2 * k], sc[2 * k + 1]);
            let sc8 = pack(_mm512_slli_epi32::<3>(s0), _mm512_slli_epi32::<3>(s1));
            _mm512_store_si512(to.add(Self::SCALES8 + k), sc8);
            _mm512_store_si512(to.add(Self::MINS + k), pack(m[2 * k], m[2 * k + 1]));
        }
        _mm512_store_ps(to.add(Self::D) as *mut f32, halves(head));
        let dmin = halves(_mm512_srli_epi32::<16>(head));
        _mm512_store_ps(to.add(Self::DMIN) as *mut f32, dmin);
    }

    #[inline(always)]
    unsafe fn strip<const N: usize>(
        u: *const __m512i,
        x: &[BlockQ8K],
        nb: usize,
        acc: &mut [[__m512; 2]],
    ) {
        let xb: [&BlockQ8K; N] = std::array::from_fn(|t| x.get_unchecked(t * nb));
        let mut sums: [__m512; N] = std::array::from_fn(|t| acc.get_unchecked(t)[0]);
        let dw = _mm512_load_ps(u.add(Self::D) as *const f32);
        let start = |x: &BlockQ8K, j: usize| _mm512_set1_epi32(-8 * x.sums32[j] as i32);
        for k in 0..4 {
            // Both sub-blocks of the pair at once: 2N independent chains.
            let (j0, j1) = (2 * k, 2 * k + 1);
            let mut s0: [__m512i; N] = std::array::from_fn(|t| start(xb[t], j0));
            let mut s1: [__m512i; N] = std::array::from_fn(|t| start(xb[t], j1));
            for g in 0..8 {
                let v0 = _mm512_load_si512(u.add(8 * j0 + g));
                let v1 = _mm512_load_si512(u.add(8 * j1 + g));
                for t in 0..N {
                    s0[t] = _mm512_dpbusd_epi32(s0[t], v0, four(xb[t], 32 * j0 + 4 * g));
                    s1[t] = _mm512_dpbusd_epi32(s1[t], v1, four(xb[t], 32 * j1 + 4 * g));
                }
            }
            let sc8 = _mm512_load_si512(u.add(Self::SCALES8 + k));
            let sc0 = _mm512_load_si512(u.add(Self::SCALES + j0));
            let sc1 = _mm512_load_si512(u.add(Self::SCALES + j1));
            for t in 0..N {
                let tot = _mm512_madd_epi16(sc8, pair(&xb[t].sums32, 2 * k));
                let tot = _mm512_dpwssd_epi32(tot, s0[t], sc0);
                let tot = _mm512_dpwssd_epi32(tot, s1[t], sc1);
                let d = _mm512_mul_ps(dw, _mm512_set1_ps(xb[t].d));
                sums[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(tot), d, sums[t]);
            }
        }
        // The mins' chain: a short pass that needs none of the above.
        for t in 0..N {
            let a = acc.get_unchecked_mut(t);
            a[0] = sums[t];
            Self::mins(u, xb[t], &mut a[1]);
        }
    }

    #[inline(always)]
    unsafe fn result([sums, mins]: [__m512; 2]) -> __m512 {
        _mm512_sub_ps(sums, mins)
    }
}

/// Q6_K in the tiled matmul's order: per block the exact total of
/// `scale · (q - 32) · x`, times `d_w`, then an FMA with `d_x`. A 16-value
/// sub-block's `Σ q·x` (at most 16 x 63 x 127) needs an i32, so its scale
/// applies by `vpmulld`; the `- 32` comes off once per block, as
/// `32 · Σ scale · Σ x` over pairs of sub-blocks by `vpdpwssd`: 64
/// `vpdpbusd`, 16 multiplies and 8 `vpdpwssd` per block.
pub struct Q6K16;

impl Q6K16 {
    pub(super) const SCALES: usize = VALUES; // [s]: each row's scale of sub-block s, an i32
    const PAIRS: usize = Self::SCALES + 16; // [k]: scales of sub-blocks 2k, 2k + 1 as i16
    pub(super) const D: usize = Self::PAIRS + 8;
}

impl Rows16 for Q6K16 {
    type W = BlockQ6K;
    const PER_BLOCK: usize = Self::D + 1;
    const MIN_BATCH: usize = 32;

    #[inline(always)]
    unsafe fn transpose(wg: &[BlockQ6K], nb: usize, b: usize, to: *mut __m512i) {
        let rows = row_offsets::<BlockQ6K>(nb);
        let first = wg.get_unchecked(b);
        let (low, two) = (_mm512_set1_epi8(0x0f), _mm512_set1_epi8(3));
        // Half h, run r, values 4a..4a + 4 (value 128h + 32r + 4a, in
        // sub-block 8h + 2r + a / 4): low 4 bits in `ql` byte 64h + 32(r %
        // 2) + 4a.. (low nibble for r < 2, high for r >= 2), top 2 bits at
        // 2r in `qh` byte 32h + 4a.. (`ql` is at 0, `qh` at 128).
        for h in 0..2 {
            for a in 0..8 {
                let high = gather(rows, first, 128 + 32 * h + 4 * a);
                for p in 0..2 {
                    let ql = gather(rows, first, 64 * h + 32 * p + 4 * a);
                    for (r, nibble) in [
                        (p, _mm512_and_si512(ql, low)),
                        (p + 2, _mm512_and_si512(_mm512_srli_epi32::<4>(ql), low)),
                    ] {
                        let top = _mm512_and_si512(
                            _mm512_srlv_epi32(high, _mm512_set1_epi32(2 * r as i32)),
                            two,
                        );
                        let q = _mm512_or_si512(nibble, _mm512_slli_epi32::<4>(top));
                        let s = 8 * h + 2 * r + a / 4;
                        _mm512_store_si512(to.add(4 * s + a % 4), q);
                    }
                }
            }
        }
        // Words 48..52 are the 16 scales (i8, byte 192..), `d` the high
        // half of word 206.. (the last word inside the block).
        let mut sc = [_mm512_setzero_si512(); 16];
        for w in 0..4 {
            let word = gather(rows, first, 192 + 4 * w);
            for i in 0..4 {
                // Byte i, sign-extended.
                let shifted = _mm512_sllv_epi32(word, _mm512_set1_epi32(24 - 8 * i as i32));
                sc[4 * w + i] = _mm512_srai_epi32::<24>(shifted);
            }
        }
        for s in 0..16 {
            _mm512_store_si512(to.add(Self::SCALES + s), sc[s]);
        }
        let lo16 = _mm512_set1_epi32(0xffff);
        for k in 0..8 {
            let (s0, s1) = (_mm512_and_si512(sc[2 * k], lo16), sc[2 * k + 1]);
            let pair = _mm512_or_si512(s0, _mm512_slli_epi32::<16>(s1));
            _mm512_store_si512(to.add(Self::PAIRS + k), pair);
        }
        let d = halves(_mm512_srli_epi32::<16>(gather(rows, first, 206)));
        _mm512_store_ps(to.add(Self::D) as *mut f32, d);
    }

    #[inline(always)]
    unsafe fn strip<const N: usize>(
        u: *const __m512i,
        x: &[BlockQ8K],
        nb: usize,
        acc: &mut [[__m512; 2]],
    ) {
        let xb: [&BlockQ8K; N] = std::array::from_fn(|t| x.get_unchecked(t * nb));
        // `Σ scale · Σ x` first: the totals start at `-32` times it.
        let mut tot: [__m512i; N] = [_mm512_setzero_si512(); N];
        for k in 0..8 {
            let sc = _mm512_load_si512(u.add(Self::PAIRS + k));
            for t in 0..N {
                tot[t] = _mm512_dpwssd_epi32(tot[t], sc, pair(&xb[t].bsums, 2 * k));
            }
        }
        for t in 0..N {
            tot[t] = _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_slli_epi32::<5>(tot[t]));
        }
        for k in 0..8 {
            // Two sub-blocks at once: 2N independent chains.
            let (s0, s1) = (2 * k, 2 * k + 1);
            let mut a0 = [_mm512_setzero_si512(); N];
            let mut a1 = [_mm512_setzero_si512(); N];
            for g in 0..4 {
                let v0 = _mm512_load_si512(u.add(4 * s0 + g));
                let v1 = _mm512_load_si512(u.add(4 * s1 + g));
                for t in 0..N {
                    a0[t] = _mm512_dpbusd_epi32(a0[t], v0, four(xb[t], 16 * s0 + 4 * g));
                    a1[t] = _mm512_dpbusd_epi32(a1[t], v1, four(xb[t], 16 * s1 + 4 * g));
                }
            }
            let sc0 = _mm512_load_si512(u.add(Self::SCALES + s0));
            let sc1 = _mm512_load_si512(u.add(Self::SCALES + s1));
            for t in 0..N {
                let both = _mm512_add_epi32(
                    _mm512_mullo_epi32(a0[t], sc0),
                    _mm512_mullo_epi32(a1[t], sc1),
                );
                tot[t] = _mm512_add_epi32(tot[t], both);
            }
        }
        let dw = _mm512_load_ps(u.add(Self::D) as *const f32);
        for t in 0..N {
            let a = acc.get_unchecked_mut(t);
            let scaled = _mm512_mul_ps(_mm512_cvtepi32_ps(tot[t]), dw);
            a[0] = _mm512_fmadd_ps(scaled, _mm512_set1_ps(xb[t].d), a[0]);
        }
    }

    #[inline(always)]
    unsafe fn result([sums, _]: [__m512; 2]) -> __m512 {
        sums
    }
}

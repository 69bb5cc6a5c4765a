//! Q4_K prefill in the float order of llama.cpp's repacked `gemm`, sixteen
//! weight rows per 512-bit vector, for CPUs with AVX512 (F, BW, VNNI).
//!
//! That order lets only exact integer totals of each pair of sub-blocks
//! reach the floats, so the integer lanes are free. Here lane r of every
//! vector is weight row r: one `vpdpbusd` multiplies 4 values of a
//! sub-block of 16 rows by 4 activation bytes broadcast from memory, and
//! 8 of them leave each row's sub-block sum in its lane. The values are
//! taken as `q - 8` (the sum starts at `-8 · Σ x`), so a sub-block's sum
//! fits an i16 (at most 32 x 8 x 127) and one `vpdpwssd` against the
//! rows' scales (each an i32 lane: the scale, then 0) adds it to the pair's
//! total; one more adds back `8 · scale · Σ x` for both sub-blocks of the
//! pair. That is 16 `vpdpbusd` and 3 `vpdpwssd` per 64 values of 16 rows
//! and one activation row, against the 256-bit tile's per-row scale
//! multiply and cross-lane sums (`x86.rs`).
//!
//! Each block of a group of 16 rows is transposed (gathers, and the
//! scales unpacked 16 rows per instruction) into an L1 buffer once per
//! matmul, and every strip of activation rows reads it there, so the path
//! pays only from [`MIN_BATCH`] activation rows on.
// Accumulators are indexed by activation row; the const-bounded loops
// unroll completely.
#![allow(clippy::needless_range_loop)]

use std::arch::x86_64::*;

use super::blocks::BlockQ4K;
use super::quantize::BlockQ8K;
use crate::cpu::dot_rows::OutRows;

/// Weight rows per group: one per 32-bit lane of a 512-bit vector.
pub const ROWS: usize = 16;

/// Activation rows from which transposing a group pays for itself (below,
/// the 256-bit tile is as fast).
pub const MIN_BATCH: usize = 16;

/// Activation rows per strip: 2 x 4 sub-block chains keep `vpdpbusd`'s
/// latency covered; 6 rows (12 chains) ran slower (`matmul_bench`).
const STRIP: usize = 4;

/// A block of 16 rows in the buffer, in vectors.
const VALUES: usize = 64; // [8 * j + g]: sub-block j, values 4g..4g + 4
const SCALES: usize = VALUES; // [j]: each row's scale of sub-block j
const SCALES8: usize = SCALES + 8; // [k]: `8 · scale` of sub-blocks 2k, 2k + 1
const MINS: usize = SCALES8 + 4; // [k]: the mins of sub-blocks 2k, 2k + 1
const D: usize = MINS + 4;
const DMIN: usize = D + 1;
const PER_BLOCK: usize = DMIN + 1;

/// `x` (n rows of `nb` blocks) times the `w.len() / nb` rows of `w`, a
/// multiple of [`ROWS`], into `out` at (t, r).
///
/// # Safety
/// The CPU has AVX512 F, BW, VL and VNNI; `out` as the K-quant `Kernel`'s
/// contract.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vnni,avx512vl")]
pub unsafe fn gemm(w: &[BlockQ4K], x: &[BlockQ8K], nb: usize, out: OutRows) {
    let n = x.len() / nb;
    // Block by block, so one block of the group (5 KiB transposed) stays
    // in L1 while every activation row passes; the accumulators wait in
    // memory between blocks.
    let mut u = vec![_mm512_setzero_si512(); PER_BLOCK];
    let mut acc = vec![[_mm512_setzero_ps(); 2]; n];
    for g in 0..w.len() / nb / ROWS {
        let wg = &w[g * ROWS * nb..(g + 1) * ROWS * nb];
        acc.fill([_mm512_setzero_ps(); 2]);
        for b in 0..nb {
            transpose(wg, nb, b, u.as_mut_ptr());
            // The next block's rows arrive while this one computes (a
            // prefetch past the end never faults).
            for r in 0..ROWS {
                prefetch_next(wg.as_ptr().wrapping_add(r * nb + b + 1));
            }
            let mut t = 0;
            while t < n {
                let (x, acc) = (&x[t * nb + b..], &mut acc[t..]);
                match n - t {
                    1 => strip::<1>(&u, x, nb, acc),
                    2 => strip::<2>(&u, x, nb, acc),
                    3 => strip::<3>(&u, x, nb, acc),
                    4 => strip::<4>(&u, x, nb, acc),
                    5 => strip::<5>(&u, x, nb, acc),
                    _ => strip::<STRIP>(&u, x, nb, acc),
                }
                t += STRIP.min(n - t);
            }
        }
        for (t, [sums, mins]) in acc.iter().enumerate() {
            _mm512_storeu_ps(out.at(t, g * ROWS).ptr, _mm512_sub_ps(*sums, *mins));
        }
    }
}

/// Asks for the 3 cache lines of a block.
#[inline(always)]
unsafe fn prefetch_next(block: *const BlockQ4K) {
    let at = block as *const i8;
    for line in 0..3 {
        _mm_prefetch::<_MM_HINT_T0>(at.wrapping_add(64 * line));
    }
}

/// Block `b` of the 16 rows of `wg` (each `nb` blocks) into the buffer
/// entry at `to`: values as unsigned bytes with lane r row r's, scales and
/// mins as the instructions above take them, `d` and `dmin` as f32.
#[inline(always)]
unsafe fn transpose(wg: &[BlockQ4K], nb: usize, b: usize, to: *mut __m512i) {
    let stride = (nb * std::mem::size_of::<BlockQ4K>()) as i32;
    let rows = _mm512_mullo_epi32(
        _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
        _mm512_set1_epi32(stride),
    );
    let first = wg.get_unchecked(b);
    let low = _mm512_set1_epi8(0x0f);
    // 32-bit word 8h + j of a block's `qs` holds values 4g..4g + 4 of
    // sub-block j for g = 2h (low nibbles) and 2h + 1 (high).
    for h in 0..4 {
        for j in 0..8 {
            let at = first.qs.as_ptr().add(32 * h + 4 * j);
            let words = _mm512_i32gather_epi32::<1>(rows, at as *const i32);
            _mm512_store_si512(to.add(8 * j + 2 * h), _mm512_and_si512(words, low));
            let high = _mm512_and_si512(_mm512_srli_epi32(words, 4), low);
            _mm512_store_si512(to.add(8 * j + 2 * h + 1), high);
        }
    }
    // The rest, 16 rows per instruction: 32-bit word i of the block is
    // `d`, `dmin` (i = 0) and the packed scales' bytes 4i - 4.. (ggml's
    // `get_scale_min_k4`: sub-blocks 0..4 in the low 6 bits of bytes j and
    // j + 4, 4..8 in the nibbles of bytes j + 4 and the top 2 bits of
    // bytes j - 4 and j).
    let word = |i: usize| {
        let at = (first as *const BlockQ4K as *const i32).add(i);
        _mm512_i32gather_epi32::<1>(rows, at)
    };
    let (head, q0, q1, q2) = (word(0), word(1), word(2), word(3));
    let byte = |q: __m512i, shift: u32, mask: i32| {
        _mm512_and_si512(
            _mm512_srlv_epi32(q, _mm512_set1_epi32(shift as i32)),
            _mm512_set1_epi32(mask),
        )
    };
    let mut sc = [_mm512_setzero_si512(); 8];
    let mut m = [_mm512_setzero_si512(); 8];
    for j in 0..4 {
        let s = 8 * j as u32;
        sc[j] = byte(q0, s, 63);
        m[j] = byte(q1, s, 63);
        let top = |q| _mm512_slli_epi32::<4>(byte(q, s + 6, 3));
        sc[j + 4] = _mm512_or_si512(byte(q2, s, 0x0f), top(q0));
        m[j + 4] = _mm512_or_si512(byte(q2, s + 4, 0x0f), top(q1));
    }
    for j in 0..8 {
        _mm512_store_si512(to.add(SCALES + j), sc[j]);
    }
    for k in 0..4 {
        let pair = |a: __m512i, b: __m512i| _mm512_or_si512(a, _mm512_slli_epi32::<16>(b));
        let sc8 = pair(
            _mm512_slli_epi32::<3>(sc[2 * k]),
            _mm512_slli_epi32::<3>(sc[2 * k + 1]),
        );
        _mm512_store_si512(to.add(SCALES8 + k), sc8);
        _mm512_store_si512(to.add(MINS + k), pair(m[2 * k], m[2 * k + 1]));
    }
    let halves = |v: __m512i| _mm512_cvtph_ps(_mm512_cvtepi32_epi16(v));
    _mm512_store_ps(to.add(D) as *mut f32, halves(head));
    _mm512_store_ps(
        to.add(DMIN) as *mut f32,
        halves(_mm512_srli_epi32::<16>(head)),
    );
}

/// The i16 pair `sums32[2k], sums32[2k + 1]` of an activation block,
/// broadcast.
#[inline(always)]
unsafe fn sums_pair(x: &BlockQ8K, k: usize) -> __m512i {
    _mm512_set1_epi32((x.sums32.as_ptr().add(2 * k) as *const i32).read_unaligned())
}

/// Where sub-block `j`'s sum starts: `-8 · Σ x` (the values are `q - 8`).
#[inline(always)]
unsafe fn start(x: &BlockQ8K, j: usize) -> __m512i {
    _mm512_set1_epi32(-8 * x.sums32[j] as i32)
}

/// Values `4g..4g + 4` of sub-block `j` of an activation block, broadcast.
#[inline(always)]
unsafe fn four(x: &BlockQ8K, j: usize, g: usize) -> __m512i {
    _mm512_set1_epi32((x.qs.as_ptr().add(32 * j + 4 * g) as *const i32).read_unaligned())
}

/// One block of a group (`u`, transposed) times N activation blocks
/// (`x[t * nb]`), into each row's two accumulators (sums, mins): per pair
/// of sub-blocks the exact totals, then ggml's two FMA chains.
#[inline(always)]
unsafe fn strip<const N: usize>(u: &[__m512i], x: &[BlockQ8K], nb: usize, acc: &mut [[__m512; 2]]) {
    let u = u.as_ptr();
    let xb: [&BlockQ8K; N] = std::array::from_fn(|t| x.get_unchecked(t * nb));
    let mut sums: [__m512; N] = std::array::from_fn(|t| acc.get_unchecked(t)[0]);
    let dw = _mm512_load_ps(u.add(D) as *const f32);
    for k in 0..4 {
        // Both sub-blocks of the pair at once: 2N independent chains.
        let (j0, j1) = (2 * k, 2 * k + 1);
        let mut s0: [__m512i; N] = std::array::from_fn(|t| start(xb[t], j0));
        let mut s1: [__m512i; N] = std::array::from_fn(|t| start(xb[t], j1));
        for g in 0..8 {
            let v0 = _mm512_load_si512(u.add(8 * j0 + g));
            let v1 = _mm512_load_si512(u.add(8 * j1 + g));
            for t in 0..N {
                s0[t] = _mm512_dpbusd_epi32(s0[t], v0, four(xb[t], j0, g));
                s1[t] = _mm512_dpbusd_epi32(s1[t], v1, four(xb[t], j1, g));
            }
        }
        let sc8 = _mm512_load_si512(u.add(SCALES8 + k));
        let (sc0, sc1) = (
            _mm512_load_si512(u.add(SCALES + j0)),
            _mm512_load_si512(u.add(SCALES + j1)),
        );
        for t in 0..N {
            let tot = _mm512_madd_epi16(sc8, sums_pair(xb[t], k));
            let tot = _mm512_dpwssd_epi32(tot, s0[t], sc0);
            let tot = _mm512_dpwssd_epi32(tot, s1[t], sc1);
            let d = _mm512_mul_ps(dw, _mm512_set1_ps(xb[t].d));
            sums[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(tot), d, sums[t]);
        }
    }
    let dmin = _mm512_load_ps(u.add(DMIN) as *const f32);
    for t in 0..N {
        let a = acc.get_unchecked_mut(t);
        a[0] = sums[t];
        let dm = _mm512_mul_ps(dmin, _mm512_set1_ps(xb[t].d));
        for k in 0..4 {
            let m = _mm512_load_si512(u.add(MINS + k));
            let mins = _mm512_dpwssd_epi32(_mm512_setzero_si512(), m, sums_pair(xb[t], k));
            a[1] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(mins), dm, a[1]);
        }
    }
}

//! K-quant prefill on AMX int8 tiles: Q4_K in the float order of
//! llama.cpp's repacked `gemm` ([`Q4K16`]'s), Q6_K in its tiled matmul's
//! ([`Q6K16`]'s). Only exact integer totals reach the floats, so the tiles
//! may form them.
//!
//! One tile multiply takes 16 activation rows by 64 values (packed from the
//! Q8_K blocks) times 16 weight rows by the same 64 values in the
//! transposed order of [`Rows16`] (4 values of each row in its 32-bit
//! lane), which is AMX's layout for the second operand. The scales must be
//! in the weights' bytes before the multiply, as 64 values span several
//! sub-blocks, and a scaled value does not fit a byte: each type splits
//! the scaled values into two planes, so a total is two tile multiplies,
//! each exact in i32, then a shift and an add.
// Accumulators are indexed by activation row; the const-bounded loops
// unroll completely.
#![allow(clippy::needless_range_loop)]

use std::arch::x86_64::*;

use super::blocks::QK_K;
use super::quantize::BlockQ8K;
use super::rows16::{Rows16, Q4K16, Q6K16, ROWS, VALUES};
use crate::cpu::amx::{self, tile_dot, tile_load, tile_store, tile_zero, TileConfig};
use crate::cpu::dot_rows::OutRows;
use crate::cpu::interleaved::simd::prefetch_block;

/// Activation rows per tile.
const STRIP: usize = 16;

/// Bytes of packed activations a chunk of strips may take (a Sapphire
/// Rapids core's L2 is 2 MiB).
const L2_ACTIVATIONS: usize = 1 << 20;

/// Tiles 0 and 1: two strips of activations (16 rows x 64 bytes); 2 and 3:
/// the low and high planes of 64 values (16 rows of 4 values x 16 weight
/// rows); 4..8: the totals (16 activation rows x 16 weight rows, i32), low
/// and high for each strip.
static CONFIG: TileConfig = TileConfig::new([(16, 64); 8]);

/// Totals as stored from the tiles: [64 values][strip][low, high]
/// [activation row].
#[repr(C, align(64))]
pub struct Totals([[[[__m512i; STRIP]; 2]; 2]; 4]);

/// One weight type's planes and per-block arithmetic on the tiles.
///
/// # Safety (of each method)
/// As [`Rows16`]'s, with the tiles configured by [`CONFIG`].
pub trait Tiles: Rows16 {
    /// Activation rows from which the tiles run (below, the AVX-512 path;
    /// `matmul_bench`, one thread, the 7B's shapes).
    const MIN_BATCH: usize;
    /// The block's transposed values (from [`Rows16::transpose`]) as the
    /// low plane, in place, and the high plane at [`Rows16::PER_BLOCK`].
    unsafe fn planes(u: *mut __m512i);
    /// Block `b` of the group in `u` times `S` strips of activations (each
    /// from its first row, with the count of real rows; their block `b` as
    /// [`pack`]ed tiles), into `acc` (16 entries per strip).
    unsafe fn unit<const S: usize>(
        u: *const __m512i,
        strips: [(&[BlockQ8K], usize); S],
        tiles: [*const __m512i; S],
        nb: usize,
        b: usize,
        acc: &mut [[__m512; 2]],
        totals: &mut Totals,
    );
}

/// `x` (n rows of `nb` blocks) times the `w.len() / nb` rows of `w`, a
/// multiple of [`ROWS`], into `out` at (t, r).
///
/// # Safety
/// The CPU has AVX512 F, BW, VL and VNNI, and [`amx::available`] answered
/// yes; `out` as the K-quant `Kernel`'s contract.
#[inline(always)]
pub unsafe fn gemm<T: Tiles>(w: &[T::W], x: &[BlockQ8K], nb: usize, out: OutRows) {
    let n = x.len() / nb;
    let strips: Vec<(&[BlockQ8K], usize)> = (0..n)
        .step_by(STRIP)
        .map(|t| (&x[t * nb..], STRIP.min(n - t)))
        .collect();
    // Activation strips in chunks that stay in L2 while every group passes
    // (past it, each group would read them again from L3): a chunk's
    // weights are transposed again for the next, which costs less. Per row
    // and block: 256 packed values, and the line of `d` and the sums.
    let per_strip = STRIP * nb * (QK_K + 64);
    let chunk = (L2_ACTIVATIONS / per_strip).max(2).min(strips.len());

    CONFIG.load();
    let mut u = vec![_mm512_setzero_si512(); T::PER_BLOCK + VALUES];
    let mut acc = vec![[_mm512_setzero_ps(); 2]; chunk * STRIP];
    let mut tiles = vec![_mm512_setzero_si512(); chunk * nb * 4 * STRIP];
    let mut totals = Totals([[[[_mm512_setzero_si512(); STRIP]; 2]; 2]; 4]);
    for (c, strips) in strips.chunks(chunk).enumerate() {
        pack(strips, nb, &mut tiles);
        for g in 0..w.len() / nb / ROWS {
            let wg = &w[g * ROWS * nb..(g + 1) * ROWS * nb];
            acc.fill([_mm512_setzero_ps(); 2]);
            for b in 0..nb {
                T::transpose(wg, nb, b, u.as_mut_ptr());
                T::planes(u.as_mut_ptr());
                for r in 0..ROWS {
                    prefetch_block(wg.as_ptr().wrapping_add(r * nb + b + 1));
                }
                let at = |s: usize| tiles.as_ptr().add((s * nb + b) * 4 * STRIP);
                let mut s = 0;
                while s < strips.len() {
                    let (u, acc) = (u.as_ptr(), &mut acc[s * STRIP..]);
                    if s + 1 < strips.len() {
                        let two = [strips[s], strips[s + 1]];
                        T::unit::<2>(u, two, [at(s), at(s + 1)], nb, b, acc, &mut totals);
                        s += 2;
                    } else {
                        T::unit::<1>(u, [strips[s]], [at(s)], nb, b, acc, &mut totals);
                        s += 1;
                    }
                }
            }
            for (s, &(_, rows)) in strips.iter().enumerate() {
                for t in 0..rows {
                    let row = (c * chunk + s) * STRIP + t;
                    let result = T::result(acc[s * STRIP + t]);
                    _mm512_storeu_ps(out.at(row, g * ROWS).ptr, result);
                }
            }
        }
    }
    amx::release();
}

/// The activation values of `strips` as tiles, one after another per
/// (strip, block, 64 values): 16 rows of 64 bytes, zeros past a strip's
/// rows. Contiguous tiles load faster than 16 rows a row's size apart.
#[inline(always)]
unsafe fn pack(strips: &[(&[BlockQ8K], usize)], nb: usize, tiles: &mut [__m512i]) {
    let mut to = tiles.as_mut_ptr();
    for &(xs, rows) in strips {
        for b in 0..nb {
            for k in 0..4 {
                for t in 0..STRIP {
                    let v = if t < rows {
                        _mm512_loadu_si512(xs[t * nb + b].qs.as_ptr().add(64 * k) as *const _)
                    } else {
                        _mm512_setzero_si512()
                    };
                    _mm512_store_si512(to, v);
                    to = to.add(1);
                }
            }
        }
    }
}

/// The totals' tiles of `S` strips (4 and 5, then 6 and 7) to `c`, as
/// [`Totals`] holds one group of 64 values.
#[inline(always)]
unsafe fn store_totals<const S: usize>(c: *mut __m512i) {
    tile_store!(4, c);
    tile_store!(5, c.add(STRIP));
    if S == 2 {
        tile_store!(6, c.add(2 * STRIP));
        tile_store!(7, c.add(3 * STRIP));
    }
}

/// Q4_K: each scale (6 bits; up to 15 x 63 with a value) splits into
/// `8 · high + low` (both 0..7), so a pair of sub-blocks' total is
/// `low · x + 8 · (high · x)`. Each pair's total reaches the floats alone,
/// so the tiles are stored per pair.
impl Tiles for Q4K16 {
    const MIN_BATCH: usize = 12;

    /// A 16-bit multiply scales both bytes of each half of a lane: each
    /// product fits its byte (at most 15 x 7).
    #[inline(always)]
    unsafe fn planes(u: *mut __m512i) {
        let words = |v: __m512i| _mm512_or_si512(v, _mm512_slli_epi32::<16>(v));
        for j in 0..8 {
            let sc = _mm512_load_si512(u.add(Self::SCALES + j));
            let low = words(_mm512_and_si512(sc, _mm512_set1_epi32(7)));
            let high = words(_mm512_srli_epi32::<3>(sc));
            for g in 0..8 {
                let q = _mm512_load_si512(u.add(8 * j + g));
                let to = u.add(Self::PER_BLOCK + 8 * j + g);
                _mm512_store_si512(to, _mm512_mullo_epi16(q, high));
                _mm512_store_si512(u.add(8 * j + g), _mm512_mullo_epi16(q, low));
            }
        }
    }

    /// The four pairs' totals first, then one pass per activation row that
    /// folds them in pair order.
    #[inline(always)]
    unsafe fn unit<const S: usize>(
        u: *const __m512i,
        strips: [(&[BlockQ8K], usize); S],
        tiles: [*const __m512i; S],
        nb: usize,
        b: usize,
        acc: &mut [[__m512; 2]],
        totals: &mut Totals,
    ) {
        for k in 0..4 {
            let c = totals.0[k].as_mut_ptr() as *mut __m512i;
            tile_load!(2, u.add(16 * k));
            tile_load!(3, u.add(Self::PER_BLOCK + 16 * k));
            tile_load!(0, tiles[0].add(STRIP * k));
            tile_zero!(4);
            tile_zero!(5);
            tile_dot!("tdpbssd", 4, 0, 2);
            tile_dot!("tdpbssd", 5, 0, 3);
            if S == 2 {
                tile_load!(1, tiles[S - 1].add(STRIP * k));
                tile_zero!(6);
                tile_zero!(7);
                tile_dot!("tdpbssd", 6, 1, 2);
                tile_dot!("tdpbssd", 7, 1, 3);
            }
            store_totals::<S>(c);
        }
        let dw = _mm512_load_ps(u.add(Self::D) as *const f32);
        for s in 0..S {
            let (xs, rows) = strips[s];
            for t in 0..rows {
                let x = xs.get_unchecked(t * nb + b);
                let a = acc.get_unchecked_mut(s * STRIP + t);
                let d = _mm512_mul_ps(dw, _mm512_set1_ps(x.d));
                for k in 0..4 {
                    let [lows, highs] = &totals.0[k][s];
                    let tot = _mm512_add_epi32(lows[t], _mm512_slli_epi32::<3>(highs[t]));
                    a[0] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(tot), d, a[0]);
                }
                Q4K16::mins(u, x, &mut a[1]);
            }
        }
    }
}

/// Q6_K: each value's `scale · (q - 32)` (at most 128 x 32 in size, an
/// i16) splits into its low byte (unsigned) and high byte (signed), so the
/// block's total is `low · x + 256 · (high · x)`, the `- 32` included. Only
/// the block's total reaches the floats, so the tiles accumulate the whole
/// block before one store.
impl Tiles for Q6K16 {
    const MIN_BATCH: usize = 12;

    #[inline(always)]
    unsafe fn planes(u: *mut __m512i) {
        let (bytes, offset) = (_mm512_set1_epi16(0xff), _mm512_set1_epi16(32));
        for s in 0..16 {
            let sc = _mm512_load_si512(u.add(Self::SCALES + s));
            let sc = _mm512_or_si512(
                _mm512_and_si512(sc, _mm512_set1_epi32(0xffff)),
                _mm512_slli_epi32::<16>(sc),
            );
            for g in 0..4 {
                let q = _mm512_load_si512(u.add(4 * s + g));
                // The even and odd bytes as words, times the scale.
                let even = _mm512_sub_epi16(_mm512_and_si512(q, bytes), offset);
                let odd = _mm512_sub_epi16(_mm512_srli_epi16::<8>(q), offset);
                let (even, odd) = (_mm512_mullo_epi16(even, sc), _mm512_mullo_epi16(odd, sc));
                let low =
                    _mm512_or_si512(_mm512_and_si512(even, bytes), _mm512_slli_epi16::<8>(odd));
                let high = _mm512_or_si512(
                    _mm512_srli_epi16::<8>(even),
                    _mm512_andnot_si512(bytes, odd),
                );
                _mm512_store_si512(u.add(4 * s + g), low);
                _mm512_store_si512(u.add(Self::PER_BLOCK + 4 * s + g), high);
            }
        }
    }

    #[inline(always)]
    unsafe fn unit<const S: usize>(
        u: *const __m512i,
        strips: [(&[BlockQ8K], usize); S],
        tiles: [*const __m512i; S],
        nb: usize,
        b: usize,
        acc: &mut [[__m512; 2]],
        totals: &mut Totals,
    ) {
        tile_zero!(4);
        tile_zero!(5);
        tile_zero!(6);
        tile_zero!(7);
        for k in 0..4 {
            tile_load!(2, u.add(16 * k));
            tile_load!(3, u.add(Self::PER_BLOCK + 16 * k));
            tile_load!(0, tiles[0].add(STRIP * k));
            tile_dot!("tdpbsud", 4, 0, 2);
            tile_dot!("tdpbssd", 5, 0, 3);
            if S == 2 {
                tile_load!(1, tiles[S - 1].add(STRIP * k));
                tile_dot!("tdpbsud", 6, 1, 2);
                tile_dot!("tdpbssd", 7, 1, 3);
            }
        }
        store_totals::<S>(totals.0[0].as_mut_ptr() as *mut __m512i);
        let dw = _mm512_load_ps(u.add(Self::D) as *const f32);
        for s in 0..S {
            let (xs, rows) = strips[s];
            let [lows, highs] = &totals.0[0][s];
            for t in 0..rows {
                let tot = _mm512_add_epi32(lows[t], _mm512_slli_epi32::<8>(highs[t]));
                let scaled = _mm512_mul_ps(_mm512_cvtepi32_ps(tot), dw);
                let dx = _mm512_set1_ps(xs.get_unchecked(t * nb + b).d);
                let a = &mut acc.get_unchecked_mut(s * STRIP + t)[0];
                *a = _mm512_fmadd_ps(scaled, dx, *a);
            }
        }
    }
}

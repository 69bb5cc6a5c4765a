//! F16 and BF16 weights against ONE activation row, as llama.cpp computes
//! it: its tinyBLAS path ([`super::half_rows`]) starts at 2 activation rows
//! ("only enable sgemm for prompt processing"), so a decode step and the
//! logits of a prompt's last position go through `ggml_vec_dot_f16` /
//! `ggml_vec_dot_bf16` (ggml-cpu/vec.cpp), one weight row at a time. On
//! AVX512 without AVX512-FP16 those sum:
//! - F16: 4 accumulators of 16 lanes, steps of 64 columns (accumulator j,
//!   lane l: columns `64i + 16j + l`, one FMA each), reduced as
//!   `(a0 + a2) + (a1 + a3)` then `_mm512_reduce_add_ps`;
//! - BF16 with AVX512-BF16: 2 accumulators, steps of 64 columns, each a
//!   `vdpbf16ps` of 32 (the first of columns `64i..64i+32`, the second of
//!   the rest); without it steps of 32 columns, 16 each, a rounded multiply
//!   then a rounded add;
//!
//! then the reduced accumulators and every leftover column's f32 product
//! (past the last whole step) summed in f64, rounded to f32 at the end.
//! On AVX2 without AVX512 the same with 8 lanes ([`dot_f16_avx2`],
//! [`dot_bf16_avx2`]): 4 accumulators, steps of 32 columns, folded as
//! `(a0 + a2) + (a1 + a3)`; F16 then sums the halves and `hadd`s twice,
//! BF16 as tinyBLAS's `hsum` ([`half_rows::reduce8`]).
//!
//! Reading one row from start to end is also what the memory system
//! streams fastest: tiles over several rows at once (4 weight rows by 1
//! activation row) measured ~8 GB/s on one Zen 4 core against ~20 GB/s
//! row by row, and batch-1 decode of F16 is bound by that bandwidth.

use half::{bf16, f16};

use super::dot_rows::OutRows;
use super::half_rows::{self, reduce16, Half, Kernels, LANES};

/// `ggml_vec_dot_f16` on AVX512 as scalar code: the reference of the
/// kernel and the kernel on CPUs without AVX512. `x` is already rounded.
pub fn dot_f16(w: &[f16], x: &[f32]) -> f32 {
    const STEP: usize = 4 * LANES;
    let whole = w.len() - w.len() % STEP;
    let mut acc = [[0f32; LANES]; 4];
    for c in (0..whole).step_by(STEP) {
        for (j, acc) in acc.iter_mut().enumerate() {
            for (l, a) in acc.iter_mut().enumerate() {
                let i = c + j * LANES + l;
                *a = w[i].to_f32().mul_add(x[i], *a);
            }
        }
    }
    let folded = std::array::from_fn(|l| (acc[0][l] + acc[2][l]) + (acc[1][l] + acc[3][l]));
    with_leftovers(reduce16(folded) as f64, &w[whole..], &x[whole..])
}

/// `ggml_vec_dot_bf16` on AVX512-BF16 as scalar code (`vdpbf16ps` as
/// [`half_rows::dot_ggml_dpbf16`] models it).
pub fn dot_bf16_pairs(w: &[bf16], x: &[f32]) -> f32 {
    const STEP: usize = 4 * LANES;
    let whole = w.len() - w.len() % STEP;
    let mut acc = [[0f32; LANES]; 2];
    for c in (0..whole).step_by(STEP) {
        for (j, acc) in acc.iter_mut().enumerate() {
            for (l, a) in acc.iter_mut().enumerate() {
                let i = c + j * 2 * LANES + 2 * l;
                *a = half_rows::dpbf16_pair(*a, &w[i..i + 2], &x[i..i + 2]);
            }
        }
    }
    let sum = reduce16(acc[0]) as f64 + reduce16(acc[1]) as f64;
    with_leftovers(sum, &w[whole..], &x[whole..])
}

/// `ggml_vec_dot_bf16` on AVX512 without AVX512-BF16 as scalar code: the
/// kernel for BF16 wherever `vdpbf16ps` is missing.
pub fn dot_bf16(w: &[bf16], x: &[f32]) -> f32 {
    const STEP: usize = 2 * LANES;
    let whole = w.len() - w.len() % STEP;
    let mut acc = [[0f32; LANES]; 2];
    for c in (0..whole).step_by(STEP) {
        for (j, acc) in acc.iter_mut().enumerate() {
            for (l, a) in acc.iter_mut().enumerate() {
                let i = c + j * LANES + l;
                *a += w[i].to_f32() * x[i];
            }
        }
    }
    let sum = reduce16(acc[0]) as f64 + reduce16(acc[1]) as f64;
    with_leftovers(sum, &w[whole..], &x[whole..])
}

/// `ggml_vec_dot_f16` on AVX2 as scalar code: the reference of its
/// kernel. `x` is already rounded.
pub fn dot_f16_avx2(w: &[f16], x: &[f32]) -> f32 {
    let folded = avx2_steps(w, x, |w, x, a| w.mul_add(x, a));
    // `_mm_hadd_ps` twice on the halves' sum.
    let h: [f32; 4] = std::array::from_fn(|l| folded[l] + folded[l + 4]);
    let sum = (h[0] + h[1]) + (h[2] + h[3]);
    with_leftovers(
        sum as f64,
        &w[avx2_whole(w.len())..],
        &x[avx2_whole(w.len())..],
    )
}

/// `ggml_vec_dot_bf16` on AVX2 as scalar code (a rounded multiply, then a
/// rounded add): the reference of its kernel.
pub fn dot_bf16_avx2(w: &[bf16], x: &[f32]) -> f32 {
    let folded = avx2_steps(w, x, |w, x, a| w * x + a);
    let sum = half_rows::reduce8(folded);
    with_leftovers(
        sum as f64,
        &w[avx2_whole(w.len())..],
        &x[avx2_whole(w.len())..],
    )
}

/// Columns per step of the AVX2 forms: 4 accumulators of 8 lanes.
const AVX2_STEP: usize = 32;

fn avx2_whole(cols: usize) -> usize {
    cols - cols % AVX2_STEP
}

/// The AVX2 forms' accumulators (j, lane l: columns `32i + 8j + l`, each
/// product added by `madd(w, x, acc)`) over the whole steps, folded as
/// `(a0 + a2) + (a1 + a3)`.
fn avx2_steps<H: Half>(w: &[H], x: &[f32], madd: impl Fn(f32, f32, f32) -> f32) -> [f32; 8] {
    let mut acc = [[0f32; 8]; 4];
    for c in (0..avx2_whole(w.len())).step_by(AVX2_STEP) {
        for (j, acc) in acc.iter_mut().enumerate() {
            for (l, a) in acc.iter_mut().enumerate() {
                let i = c + 8 * j + l;
                *a = madd(w[i].to_f32(), x[i], *a);
            }
        }
    }
    std::array::from_fn(|l| (acc[0][l] + acc[2][l]) + (acc[1][l] + acc[3][l]))
}

/// The formula llama.cpp, built for this CPU, uses for one activation
/// row, and which [`row`] computes here.
pub fn dot_here<H: Half>() -> fn(&[H], &[f32]) -> f32 {
    // SAFETY (the casts): `H` is `bf16` or `f16`, as `H::BF16` says; each
    // shares its layout with `H`.
    unsafe fn cast<H, T>(w: &[H]) -> &[T] {
        std::slice::from_raw_parts(w.as_ptr().cast(), w.len())
    }
    if half_rows::kernels() == Kernels::Avx2 {
        return if H::BF16 {
            |w, x| dot_bf16_avx2(unsafe { cast(w) }, x)
        } else {
            |w, x| dot_f16_avx2(unsafe { cast(w) }, x)
        };
    }
    if !H::BF16 {
        |w, x| dot_f16(unsafe { cast(w) }, x)
    } else if half_rows::bf16_dot_pairs() {
        |w, x| dot_bf16_pairs(unsafe { cast(w) }, x)
    } else {
        |w, x| dot_bf16(unsafe { cast(w) }, x)
    }
}

/// ggml's tail: each leftover column's f32 product added in f64, the
/// total rounded to f32.
fn with_leftovers<H: Half>(mut sum: f64, w: &[H], x: &[f32]) -> f32 {
    for (w, x) in w.iter().zip(x) {
        sum += (w.to_f32() * x) as f64;
    }
    sum as f32
}

/// `dot(w[r], x)` into `out` at (0, r) for every weight row in `w` (`cols`
/// each) and the one activation row `x` (rounded by
/// [`half_rows::round_rows`]).
///
/// # Safety
/// As `dot_rows::RowsKernel`: `out` is valid for writes at every (0, r)
/// and nobody else touches those places meanwhile.
pub unsafe fn row<H: Half>(w: &[H], x: &[f32], out: OutRows) {
    let cols = x.len();
    // Both types are 16-bit floats (`half`'s are `repr(transparent)` over
    // `u16`).
    #[cfg(target_arch = "x86_64")]
    let bits = std::slice::from_raw_parts(w.as_ptr() as *const u16, w.len());
    match half_rows::kernels() {
        #[cfg(target_arch = "x86_64")]
        Kernels::Avx512 if !H::BF16 => return avx512::f16_row(bits, x, out),
        #[cfg(target_arch = "x86_64")]
        Kernels::Avx512 if half_rows::bf16_dot_pairs() => {
            return avx512::bf16_pairs_row(bits, x, out)
        }
        #[cfg(target_arch = "x86_64")]
        Kernels::Avx512 => return avx512::bf16_row(bits, x, out),
        #[cfg(target_arch = "x86_64")]
        Kernels::Avx2 if H::BF16 => return avx2::bf16_row(bits, x, out),
        #[cfg(target_arch = "x86_64")]
        Kernels::Avx2 => return avx2::f16_row(bits, x, out),
        _ => {}
    }
    let dot = dot_here::<H>();
    for (r, wr) in w.chunks_exact(cols).enumerate() {
        out.write(0, r, dot(wr, x));
    }
}

/// `out[r]` = `sum(row r)` (the whole steps' part, as f64) plus row
/// r's leftover columns past `whole`, for each row of `w`.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn each_row<H: Half>(
    w: &[u16],
    x: &[f32],
    whole: usize,
    out: OutRows,
    mut sum: impl FnMut(&[u16]) -> f64,
) {
    let cols = x.len();
    for (r, wr) in w.chunks_exact(cols).enumerate() {
        // `H` is `f16` or `bf16`, both 16 bits like the `u16` storage.
        let tail: &[H] = std::slice::from_raw_parts(wr.as_ptr().add(whole).cast(), cols - whole);
        out.write(0, r, with_leftovers(sum(wr), tail, &x[whole..]));
    }
}

/// Bytes ahead of the current step that the weight stream is asked
/// into L2: the hardware prefetchers alone leave the stream short.
/// `matmul_bench` (`SHAPE=4096x4096 COPIES=12`, 2 threads, batch 1,
/// 2026-12-03, Intel Xeon Sapphire Rapids) GMAC/s without / with: F16
/// 12.3-12.9 / 14.4-14.6, BF16 14.0-14.2 / 15.5-15.6; 2 and 8 KiB
/// within noise of 4.
#[cfg(target_arch = "x86_64")]
const AHEAD: usize = 4096;

/// Asks for the two cache lines (one 64-column step of 16-bit
/// weights) `AHEAD` bytes past `at` into L2 (a hint: the address need
/// not be valid).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn prefetch_ahead(at: *const u16) {
    let ahead = (at as *const i8).wrapping_add(AHEAD);
    std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T1 }>(ahead);
    std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T1 }>(ahead.wrapping_add(64));
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{each_row, half_rows, prefetch_ahead, OutRows, AVX2_STEP};
    use half::{bf16, f16};
    use std::arch::x86_64::*;

    /// A row's whole steps (4 accumulators of 8 lanes, folded as
    /// `(a0 + a2) + (a1 + a3)`), each product added as ggml adds it: one
    /// FMA for F16, a rounded multiply then a rounded add for BF16.
    #[inline(always)]
    unsafe fn steps<const BF16: bool>(wr: &[u16], x: &[f32], whole: usize) -> __m256 {
        let mut acc = [_mm256_setzero_ps(); 4];
        for c in (0..whole).step_by(AVX2_STEP) {
            if c % (2 * AVX2_STEP) == 0 {
                prefetch_ahead(wr.as_ptr().add(c));
            }
            for (j, a) in acc.iter_mut().enumerate() {
                let at = c + 8 * j;
                let v = _mm_loadu_si128(wr.as_ptr().add(at).cast());
                let xv = _mm256_loadu_ps(x.as_ptr().add(at));
                *a = if BF16 {
                    let wide = _mm256_cvtepu16_epi32(v);
                    let wv = _mm256_castsi256_ps(_mm256_slli_epi32::<16>(wide));
                    _mm256_add_ps(_mm256_mul_ps(wv, xv), *a)
                } else {
                    _mm256_fmadd_ps(_mm256_cvtph_ps(v), xv, *a)
                };
            }
        }
        _mm256_add_ps(_mm256_add_ps(acc[0], acc[2]), _mm256_add_ps(acc[1], acc[3]))
    }

    /// [`super::dot_f16_avx2`] for each row.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn f16_row(w: &[u16], x: &[f32], out: OutRows) {
        let cols = x.len();
        let whole = cols - cols % AVX2_STEP;
        each_row::<f16>(w, x, whole, out, |wr| {
            let f = steps::<false>(wr, x, whole);
            let h = _mm_add_ps(_mm256_castps256_ps128(f), _mm256_extractf128_ps::<1>(f));
            let t = _mm_hadd_ps(h, h);
            _mm_cvtss_f32(_mm_hadd_ps(t, t)) as f64
        });
    }

    /// [`super::dot_bf16_avx2`] for each row.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn bf16_row(w: &[u16], x: &[f32], out: OutRows) {
        let cols = x.len();
        let whole = cols - cols % AVX2_STEP;
        each_row::<bf16>(w, x, whole, out, |wr| {
            half_rows::reduce8_vector(steps::<true>(wr, x, whole)) as f64
        });
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::{each_row, half_rows, prefetch_ahead, OutRows, LANES};
    use half::{bf16, f16};
    use std::arch::x86_64::*;

    /// [`super::dot_f16`] for each row.
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
    pub unsafe fn f16_row(w: &[u16], x: &[f32], out: OutRows) {
        let cols = x.len();
        let whole = cols - cols % (4 * LANES);
        each_row::<f16>(w, x, whole, out, |wr| {
            let mut acc = [_mm512_setzero_ps(); 4];
            for c in (0..whole).step_by(4 * LANES) {
                prefetch_ahead(wr.as_ptr().add(c));
                for (j, a) in acc.iter_mut().enumerate() {
                    let at = c + j * LANES;
                    let wv = _mm512_cvtph_ps(_mm256_loadu_si256(wr.as_ptr().add(at).cast()));
                    *a = _mm512_fmadd_ps(wv, _mm512_loadu_ps(x.as_ptr().add(at)), *a);
                }
            }
            let folded =
                _mm512_add_ps(_mm512_add_ps(acc[0], acc[2]), _mm512_add_ps(acc[1], acc[3]));
            half_rows::reduce_vector(folded) as f64
        });
    }

    /// [`super::dot_bf16_pairs`] for each row.
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512bf16")]
    pub unsafe fn bf16_pairs_row(w: &[u16], x: &[f32], out: OutRows) {
        let cols = x.len();
        let whole = cols - cols % (4 * LANES);
        // The activations as bf16 pairs once (they are bf16 values
        // already: packing is exact).
        // (A plain loop: a closure passed to `collect` would be compiled
        // without this function's target features.)
        let mut xb: Vec<__m512bh> = Vec::with_capacity(whole / (2 * LANES));
        for c in (0..whole).step_by(2 * LANES) {
            xb.push(_mm512_cvtne2ps_pbh(
                _mm512_loadu_ps(x.as_ptr().add(c + LANES)),
                _mm512_loadu_ps(x.as_ptr().add(c)),
            ));
        }
        each_row::<bf16>(w, x, whole, out, |wr| {
            let mut acc = [_mm512_setzero_ps(); 2];
            for (k, xv) in xb.iter().enumerate() {
                if k % 2 == 0 {
                    prefetch_ahead(wr.as_ptr().add(k * 2 * LANES));
                }
                let wv: __m512bh =
                    std::mem::transmute(_mm512_loadu_si512(wr.as_ptr().add(k * 2 * LANES).cast()));
                acc[k % 2] = _mm512_dpbf16_ps(acc[k % 2], wv, *xv);
            }
            half_rows::reduce_vector(acc[0]) as f64 + half_rows::reduce_vector(acc[1]) as f64
        });
    }

    /// [`super::dot_bf16`] for each row.
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
    pub unsafe fn bf16_row(w: &[u16], x: &[f32], out: OutRows) {
        let cols = x.len();
        let whole = cols - cols % (2 * LANES);
        each_row::<bf16>(w, x, whole, out, |wr| {
            let mut acc = [_mm512_setzero_ps(); 2];
            for c in (0..whole).step_by(2 * LANES) {
                if c % (4 * LANES) == 0 {
                    prefetch_ahead(wr.as_ptr().add(c));
                }
                for (j, a) in acc.iter_mut().enumerate() {
                    let at = c + j * LANES;
                    let wide =
                        _mm512_cvtepu16_epi32(_mm256_loadu_si256(wr.as_ptr().add(at).cast()));
                    let wv = _mm512_castsi512_ps(_mm512_slli_epi32::<16>(wide));
                    let p = _mm512_mul_ps(wv, _mm512_loadu_ps(x.as_ptr().add(at)));
                    *a = _mm512_add_ps(p, *a);
                }
            }
            half_rows::reduce_vector(acc[0]) as f64 + half_rows::reduce_vector(acc[1]) as f64
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::half_rows::tests::random_matrix;
    use candle_core::quantized::GgmlDType;
    use rand::{Rng, SeedableRng};

    /// `Matrix::matmul` of one activation row for F16 and BF16 against the
    /// scalar formulas bit for bit (row lengths with and without leftover
    /// columns past the last whole step), and the formulas against the
    /// exact (f64) dot product.
    #[test]
    fn one_row_equals_ggml_vec_dot() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(9);
        for dtype in [GgmlDType::F16, GgmlDType::BF16] {
            for (rows, cols) in [(16, 64), (13, 576), (7, 1536), (5, 40), (6, 50), (3, 130)] {
                let (_, m, values) = random_matrix(&mut rng, dtype, rows, cols);
                let x: Vec<f32> = (0..cols).map(|_| rng.random_range(-4.0..4.0)).collect();
                let (xr, want): (Vec<f32>, Vec<f32>) = match dtype {
                    GgmlDType::F16 => {
                        let w: Vec<f16> = values.iter().map(|&v| f16::from_f32(v)).collect();
                        let xr = half_rows::round_rows::<f16>(&x);
                        let dot = dot_here::<f16>();
                        let want = w.chunks_exact(cols).map(|w| dot(w, &xr)).collect();
                        (xr, want)
                    }
                    _ => {
                        let w: Vec<bf16> = values.iter().map(|&v| bf16::from_f32(v)).collect();
                        let xr = half_rows::round_rows::<bf16>(&x);
                        let dot = dot_here::<bf16>();
                        let want = w.chunks_exact(cols).map(|w| dot(w, &xr)).collect();
                        (xr, want)
                    }
                };
                let mut out = vec![0f32; rows];
                m.matmul(&x, 1, &mut out).unwrap();
                for (r, (got, want)) in out.iter().zip(&want).enumerate() {
                    assert_eq!(
                        got.to_bits(),
                        want.to_bits(),
                        "{dtype:?} {rows}x{cols} row {r}: {got} vs {want}"
                    );
                    let wr = &values[r * cols..(r + 1) * cols];
                    let exact: f64 = wr.iter().zip(&xr).map(|(&a, &b)| a as f64 * b as f64).sum();
                    let scale: f64 = wr
                        .iter()
                        .zip(&xr)
                        .map(|(&a, &b)| (a * b).abs() as f64)
                        .sum();
                    assert!(
                        (*want as f64 - exact).abs() <= 1e-5 * scale + 1e-6,
                        "{dtype:?} row {r}: {want} vs exact {exact}"
                    );
                }
            }
        }
    }

    /// Each vector kernel this CPU can run (AVX512's, AVX2's) against its
    /// formula, BF16's both AVX512 forms whatever the CPU picks for
    /// `Matrix::matmul`.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn kernels_equal_their_formulas() {
        type Kernel = unsafe fn(&[u16], &[f32], OutRows);
        type Formula = fn(&[u16], &[f32]) -> f32;
        fn f16s(b: &[u16]) -> Vec<f16> {
            b.iter().map(|&b| f16::from_bits(b)).collect()
        }
        fn bf16s(b: &[u16]) -> Vec<bf16> {
            b.iter().map(|&b| bf16::from_bits(b)).collect()
        }
        // (name, kernel, its formula, whether it takes BF16)
        let mut cases: Vec<(&str, Kernel, Formula, bool)> = Vec::new();
        if half_rows::avx512_available() {
            cases.push((
                "AVX512 F16",
                avx512::f16_row,
                |b, x| dot_f16(&f16s(b), x),
                false,
            ));
            cases.push((
                "AVX512 BF16",
                avx512::bf16_row,
                |b, x| dot_bf16(&bf16s(b), x),
                true,
            ));
            if half_rows::bf16_dot_pairs() {
                let pairs: Formula = |b, x| dot_bf16_pairs(&bf16s(b), x);
                cases.push(("AVX512 BF16 pairs", avx512::bf16_pairs_row, pairs, true));
            }
        }
        if half_rows::avx2_available() {
            cases.push((
                "AVX2 F16",
                avx2::f16_row,
                |b, x| dot_f16_avx2(&f16s(b), x),
                false,
            ));
            cases.push((
                "AVX2 BF16",
                avx2::bf16_row,
                |b, x| dot_bf16_avx2(&bf16s(b), x),
                true,
            ));
        }
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        for cols in [32, 64, 576, 40, 130, 13] {
            let rows = 5;
            let bits: Vec<u16> = (0..rows * cols)
                .map(|_| rng.random_range(0x3000..0x3c00))
                .collect();
            let x: Vec<f32> = (0..cols).map(|_| rng.random_range(-4.0..4.0)).collect();
            let (xh, xb) = (
                half_rows::round_rows::<f16>(&x),
                half_rows::round_rows::<bf16>(&x),
            );
            for (name, kernel, formula, takes_bf16) in &cases {
                let x = if *takes_bf16 { &xb } else { &xh };
                let want: Vec<f32> = bits.chunks_exact(cols).map(|b| formula(b, x)).collect();
                let mut out = vec![0f32; rows];
                let at = OutRows {
                    ptr: out.as_mut_ptr(),
                    stride: rows,
                };
                // SAFETY: the CPU has the kernel's features (checked
                // above); `out` holds `rows` values.
                unsafe { kernel(&bits, x, at) };
                assert_eq!(out, want, "{name} {cols}");
            }
        }
    }

    /// The forms differ from tinyBLAS's in the last bits, so a row really
    /// takes this one: on 576 columns some rows of a random matrix must
    /// come out differently from `half_rows::dot_ggml`.
    #[test]
    fn one_row_is_not_tinyblas_order() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(10);
        let (rows, cols) = (64, 576);
        let w: Vec<f16> = (0..rows * cols)
            .map(|_| f16::from_f32(rng.random_range(-0.5..0.5)))
            .collect();
        let x = half_rows::round_rows::<f16>(
            &(0..cols)
                .map(|_| rng.random_range(-4.0..4.0))
                .collect::<Vec<f32>>(),
        );
        let differ = w
            .chunks_exact(cols)
            .filter(|w| dot_f16(w, &x).to_bits() != half_rows::dot_ggml(w, &x).to_bits())
            .count();
        assert!(differ > 0, "all {rows} rows equal tinyBLAS's order");
    }
}

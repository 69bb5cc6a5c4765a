//! Activations as Q8_K, the partner type of every K-quant dot product,
//! with ggml's `quantize_row_q8_K` rounding so sums equal llama.cpp's.

use rayon::prelude::*;

use super::blocks::QK_K;
use crate::cpu::dot_rows::STRIP;
use crate::cpu::ggml_numerics::nearest_int;

/// 256 activations as `d * q`, q in -127..=127, with the sums the K-quant
/// kernels fold their offsets with.
#[derive(Debug, Clone, Copy)]
#[repr(C, align(32))]
pub struct BlockQ8K {
    pub qs: [i8; QK_K],
    /// `qs` in transposed Q4_K order (see `BlockQ4K`): 32 bytes k hold
    /// values 4k..4k+4 of each run of 32, run j in 32-bit lane j.
    pub qt: [i8; QK_K],
    /// Sum of each run of 16 `qs`.
    pub bsums: [i16; 16],
    /// Sum of each run of 32 `qs` (pairs of `bsums`, as ggml's kernels
    /// form them with `hadd`): what Q4_K/Q5_K mins multiply.
    pub sums32: [i16; 8],
    pub d: f32,
}

impl Default for BlockQ8K {
    fn default() -> Self {
        Self {
            qs: [0; QK_K],
            qt: [0; QK_K],
            bsums: [0; 16],
            sums32: [0; 8],
            d: 0.0,
        }
    }
}

/// Quantizes 256 values. ggml scales by `-127 / max`, where `max` is the
/// first value of largest magnitude with its sign, so `q` has the opposite
/// sign of `x` and `d` is negative; rounding is to nearest, ties to even
/// (its `nearest_int` adds 1.5 * 2^23).
pub fn quantize_block(x: &[f32]) -> BlockQ8K {
    let mut out = BlockQ8K::default();
    let (mut max, mut amax) = (0f32, 0f32);
    for &v in &x[..QK_K] {
        if v.abs() > amax {
            amax = v.abs();
            max = v;
        }
    }
    if amax == 0.0 {
        return out;
    }
    let iscale = -127.0 / max;
    for (q, &v) in out.qs.iter_mut().zip(x) {
        *q = nearest_int(iscale * v).min(127) as i8;
    }
    for (s, run) in out.bsums.iter_mut().zip(out.qs.chunks_exact(16)) {
        *s = run.iter().map(|&q| q as i16).sum();
    }
    for (s, pair) in out.sums32.iter_mut().zip(out.bsums.chunks_exact(2)) {
        *s = pair[0] + pair[1];
    }
    transpose_runs(&out.qs, &mut out.qt);
    out.d = 1.0 / iscale;
    out
}

/// One block column of a strip of up to [`STRIP`] activation rows, laid
/// out so a kernel handles the whole strip per vector instruction: each
/// row's `d` in its own lane, and each row's `sums32` pair k as one i32
/// lane of `pairs[k]` (what `vpmaddwd` multiplies with a pair of mins).
#[derive(Clone, Copy, Default)]
#[repr(C, align(32))]
pub struct StripSums {
    pub d: [f32; STRIP],
    pub pairs: [[[i16; 2]; STRIP]; 4],
}

/// The [`StripSums`] of `x` (`n` rows of `nb` blocks): entry
/// `strip * nb + b` holds block `b` of rows `strip * STRIP ..`.
pub fn strip_sums(x: &[BlockQ8K], nb: usize) -> Vec<StripSums> {
    let n = x.len() / nb;
    let mut out = vec![StripSums::default(); n.div_ceil(STRIP) * nb];
    for (t, row) in x.chunks_exact(nb).enumerate() {
        for (b, block) in row.iter().enumerate() {
            let e = &mut out[(t / STRIP) * nb + b];
            e.d[t % STRIP] = block.d;
            for (k, pair) in block.sums32.chunks_exact(2).enumerate() {
                e.pairs[k][t % STRIP] = [pair[0], pair[1]];
            }
        }
    }
    out
}

/// Quantizes `x` (`rows` rows, length a multiple of 256) row by row, the
/// rows spread over the pool.
pub fn quantize_rows(x: &[f32], cols: usize) -> Vec<BlockQ8K> {
    let bpr = cols / QK_K;
    let mut out = vec![BlockQ8K::default(); x.len() / QK_K];
    #[cfg(target_arch = "x86_64")]
    let simd = crate::cpu::dot::best().fma;
    out.par_chunks_exact_mut(bpr)
        .zip(x.par_chunks_exact(cols))
        .for_each(|(q, row)| {
            #[cfg(target_arch = "x86_64")]
            if simd {
                // SAFETY: the CPU has AVX2 and FMA (`dot::best`).
                return unsafe { quantize_row_avx2(row, q) };
            }
            for (b, chunk) in q.iter_mut().zip(row.chunks_exact(QK_K)) {
                *b = quantize_block(chunk);
            }
        });
    out
}

/// [`quantize_block`] over a row, 8 values per instruction: every step is
/// the scalar one lane by lane (the first value of largest magnitude, the
/// same products, rounded half to even), so the blocks are identical
/// (tested); it was ~3.5% of a Q6_K file's prefill as scalar code.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn quantize_row_avx2(row: &[f32], out: &mut [BlockQ8K]) {
    use std::arch::x86_64::*;
    for (b, x) in out.iter_mut().zip(row.chunks_exact(QK_K)) {
        let p = x.as_ptr();
        let sign = _mm256_set1_ps(-0.0);
        let abs = |i: usize| _mm256_andnot_ps(sign, _mm256_loadu_ps(p.add(8 * i)));
        // `max_ps` returns its second operand when either is NaN: NaNs
        // are passed over, as the scalar comparison passes them.
        let mut m = _mm256_setzero_ps();
        for i in 0..QK_K / 8 {
            m = _mm256_max_ps(abs(i), m);
        }
        let m4 = _mm_max_ps(_mm256_extractf128_ps(m, 1), _mm256_castps256_ps128(m));
        let m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        let amax = _mm_cvtss_f32(_mm_max_ss(m4, _mm_movehdup_ps(m4)));
        if amax == 0.0 {
            *b = BlockQ8K::default();
            continue;
        }
        let first = (0..QK_K / 8)
            .find_map(|i| {
                let eq = _mm256_cmp_ps::<_CMP_EQ_OQ>(abs(i), _mm256_set1_ps(amax));
                let mask = _mm256_movemask_ps(eq);
                (mask != 0).then(|| 8 * i + mask.trailing_zeros() as usize)
            })
            .expect("the largest magnitude is one of the values");
        let iscale = -127.0 / x[first];
        let scale = _mm256_set1_ps(iscale);
        let ones = _mm256_set1_epi8(1);
        for run in 0..QK_K / 32 {
            let q: [__m256i; 4] = std::array::from_fn(|k| {
                let v = _mm256_mul_ps(scale, _mm256_loadu_ps(p.add(32 * run + 8 * k)));
                let r = _mm256_round_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
                _mm256_min_epi32(_mm256_cvtps_epi32(r), _mm256_set1_epi32(127))
            });
            // i32 -> i16 -> i8 packs interleave the 128-bit halves; the
            // permute puts the values back in order.
            let packed = _mm256_packs_epi16(
                _mm256_packs_epi32(q[0], q[1]),
                _mm256_packs_epi32(q[2], q[3]),
            );
            let bytes =
                _mm256_permutevar8x32_epi32(packed, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
            _mm256_storeu_si256(b.qs.as_mut_ptr().add(32 * run) as *mut __m256i, bytes);
            // Sums of 4 values per i32 lane: lanes 0-3 the first 16.
            let fours = _mm256_madd_epi16(_mm256_maddubs_epi16(ones, bytes), _mm256_set1_epi16(1));
            let mut lanes = [0i32; 8];
            _mm256_storeu_si256(lanes.as_mut_ptr() as *mut __m256i, fours);
            let low = (lanes[0] + lanes[1] + lanes[2] + lanes[3]) as i16;
            let high = (lanes[4] + lanes[5] + lanes[6] + lanes[7]) as i16;
            b.bsums[2 * run] = low;
            b.bsums[2 * run + 1] = high;
            b.sums32[run] = low + high;
        }
        transpose_runs(&b.qs, &mut b.qt);
        b.d = 1.0 / iscale;
    }
}

/// `qt` from `qs` (see [`BlockQ8K::qt`]): 4-byte group k of run j goes to
/// lane j of vector k.
fn transpose_runs(qs: &[i8; QK_K], qt: &mut [i8; QK_K]) {
    for j in 0..8 {
        for k in 0..8 {
            let at = 32 * j + 4 * k;
            qt[32 * k + 4 * j..32 * k + 4 * j + 4].copy_from_slice(&qs[at..at + 4]);
        }
    }
}

/// A batch's activations as Q8_K with everything the kernels read: the
/// strip sums of all rows, and of the rows from each place where the
/// float order changes (those rows start strips of their own): after the
/// Q4_K `gemm` rows and after the Q5_K/Q6_K tiled rows (see
/// [`super::portable::q4k_gemm_rows`] and [`super::portable::tiled_rows`]).
pub struct Activations {
    pub q: Vec<BlockQ8K>,
    /// Blocks per row.
    pub nb: usize,
    pub sums: Vec<StripSums>,
    pub gemm_rows: usize,
    pub tiled_rows: usize,
    gemm_tail: Vec<StripSums>,
    tiled_tail: Vec<StripSums>,
}

impl Activations {
    /// `x` (rows of `cols` values, a multiple of 256) quantized.
    pub fn new(x: &[f32], cols: usize) -> Self {
        let q = quantize_rows(x, cols);
        let nb = cols / QK_K;
        let n = q.len() / nb;
        let (gemm_rows, tiled_rows) = (
            super::portable::q4k_gemm_rows(n),
            super::portable::tiled_rows(n),
        );
        Self {
            sums: strip_sums(&q, nb),
            gemm_tail: strip_sums(&q[gemm_rows * nb..], nb),
            tiled_tail: strip_sums(&q[tiled_rows * nb..], nb),
            q,
            nb,
            gemm_rows,
            tiled_rows,
        }
    }

    /// Activation rows.
    pub fn rows(&self) -> usize {
        self.q.len() / self.nb
    }

    /// Rows `from..` and their strip sums; `from` is 0, `gemm_rows` or
    /// `tiled_rows`.
    pub fn rows_from(&self, from: usize) -> (&[BlockQ8K], &[StripSums]) {
        let sums = match from {
            0 => &self.sums,
            f if f == self.gemm_rows => &self.gemm_tail,
            f if f == self.tiled_rows => &self.tiled_tail,
            _ => unreachable!("rows from {from}: not a place where the order changes"),
        };
        (&self.q[from * self.nb..], sums)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ties round to even, the sign follows the first largest value, a
    /// zero block stays zero, and the sums add up.
    #[test]
    fn quantizes_like_ggml() {
        let mut x = vec![0f32; QK_K];
        // max = -127 (the first of the two largest) makes iscale exactly
        // 1: every k + 0.5 is a tie.
        x[0] = -127.0;
        x[1] = 2.5;
        x[2] = -3.5;
        x[3] = 127.0;
        x[4] = 0.5;
        let b = quantize_block(&x);
        assert_eq!(b.d, 1.0);
        assert_eq!(&b.qs[..5], &[-127, 2, -4, 127, 0]);
        let first16: i16 = b.qs[..16].iter().map(|&q| q as i16).sum();
        assert_eq!(b.bsums[0], first16);
        assert_eq!(b.sums32[0], b.bsums[0] + b.bsums[1]);
        let zero = quantize_block(&[0f32; QK_K]);
        assert_eq!((zero.d, zero.qs), (0.0, [0; QK_K]));
        // The value that sets the scale maps to -127 whatever its sign.
        let mut y = vec![0.25f32; QK_K];
        y[7] = 3.0;
        let b = quantize_block(&y);
        assert_eq!(b.qs[7], -127);
        assert!(b.d < 0.0);
    }

    /// The rows the pool quantizes (with SIMD where the CPU has it) are
    /// [`quantize_block`]'s bit for bit: random values, ties, a largest
    /// magnitude that appears with both signs, zero blocks.
    #[test]
    fn rows_equal_the_scalar_blocks() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        let blocks = 24;
        let mut x: Vec<f32> = (0..blocks * QK_K)
            .map(|_| rng.random_range(-4.0f32..4.0))
            .collect();
        // Block 1: exact halves, the largest (127) first negative then
        // positive; block 2: zeros; block 3: the largest at the end.
        for (i, v) in x[QK_K..2 * QK_K].iter_mut().enumerate() {
            *v = (i as f32 - 128.0) / 2.0;
        }
        x[QK_K + 9] = -127.0;
        x[QK_K + 200] = 127.0;
        x[2 * QK_K..3 * QK_K].fill(0.0);
        x[4 * QK_K - 1] = 100.0;
        let rows = quantize_rows(&x, 4 * QK_K);
        for (i, (got, chunk)) in rows.iter().zip(x.chunks_exact(QK_K)).enumerate() {
            let want = quantize_block(chunk);
            assert_eq!(got.d.to_bits(), want.d.to_bits(), "block {i}");
            assert_eq!(got.qs, want.qs, "block {i}");
            assert_eq!(got.qt, want.qt, "block {i}");
            assert_eq!(got.bsums, want.bsums, "block {i}");
            assert_eq!(got.sums32, want.sums32, "block {i}");
        }
        // Block 1's scale came from its first largest value, -127.
        assert_eq!(rows[1].d, 1.0);
    }
}

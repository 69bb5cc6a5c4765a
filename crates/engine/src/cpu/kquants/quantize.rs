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
    for (i, &q) in out.qs.iter().enumerate() {
        let (j, e) = (i / 32, i % 32);
        out.qt[32 * (e / 4) + 4 * j + e % 4] = q;
    }
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
    out.par_chunks_exact_mut(bpr)
        .zip(x.par_chunks_exact(cols))
        .for_each(|(q, row)| {
            for (b, chunk) in q.iter_mut().zip(row.chunks_exact(QK_K)) {
                *b = quantize_block(chunk);
            }
        });
    out
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
}

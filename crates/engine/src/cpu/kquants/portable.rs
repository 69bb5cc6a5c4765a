//! The K-quant dot products in plain Rust, written as llama.cpp computes
//! them on AVX2 machines: Q5_K and Q6_K as `ggml_vec_dot_q{5,6}_K_q8_K`
//! (per block, eight i32 lanes, lane k summing bytes 4k..4k+4 of every
//! 32-byte run times their scale, one f32 FMA per lane and block, then
//! ggml's horizontal-sum order), Q4_K as its repacked `gemv` and `gemm`
//! (which differ: see [`q4k_q8k_gemm`]); and
//! Q5_K and Q6_K as llama.cpp's tiled K-quant matmul (`ggml-cpu/tiled`),
//! which it takes instead of `vec_dot` once a matmul has at least
//! [`TILED_MIN_ROWS`] activation rows (a prompt of 8 tokens or more, see
//! [`tiled_rows`]). The
//! SIMD kernels must equal these bit for bit; integer sums are exact, so
//! only the float steps need ggml's order.

use super::blocks::{scales_and_mins, BlockQ2K, BlockQ3K, BlockQ4K, BlockQ5K, BlockQ6K, QK_K};
use super::quantize::BlockQ8K;

/// Activation rows from which llama.cpp multiplies Q5_K and Q6_K weights
/// with its tiled matmul instead of `vec_dot` (`ggml_tiled_min_batch`).
pub const TILED_MIN_ROWS: usize = 8;

/// llama.cpp's default physical batch (`n_ubatch`): a longer prompt runs
/// as matmuls of this many rows and one of the rest.
pub const UBATCH: usize = 512;

/// The first of a batch's `n` rows that take `vec_dot`'s order rather than
/// the tiled matmul's, as llama.cpp orders a prompt of `n` tokens: `n`
/// when every ubatch has at least [`TILED_MIN_ROWS`] rows, else the start
/// of the short one (the whole batch when `n` itself is short).
pub fn tiled_rows(n: usize) -> usize {
    let last = n.saturating_sub(1) / UBATCH * UBATCH;
    if n - last >= TILED_MIN_ROWS {
        n
    } else {
        last
    }
}

/// Lane of value `i` of a block in ggml's 8 x i32 layout.
#[inline(always)]
fn lane(i: usize) -> usize {
    (i % 32) / 4
}

/// `hsum_float_8`: halves, then pairs, then the last two.
pub fn hsum8(v: &[f32; 8]) -> f32 {
    let h: [f32; 4] = std::array::from_fn(|i| v[i + 4] + v[i]);
    (h[0] + h[2]) + (h[1] + h[3])
}

/// The integer lanes of a Q4_K/Q5_K block (`q(i)` its weights, `sc` its
/// sub-block scales) against `x`.
#[inline(always)]
fn lanes_k4(q: impl Fn(usize) -> u8, sc: &[u8; 8], x: &BlockQ8K) -> [i32; 8] {
    let mut lanes = [0i32; 8];
    for i in 0..QK_K {
        lanes[lane(i)] += sc[i / 32] as i32 * q(i) as i32 * x.qs[i] as i32;
    }
    lanes
}

/// `_mm_madd_epi16(mins, sums32)`: lane k = m[2k]·s[2k] + m[2k+1]·s[2k+1].
#[inline(always)]
fn mins_lanes(m: &[u8; 8], x: &BlockQ8K) -> [i32; 4] {
    std::array::from_fn(|k| {
        m[2 * k] as i32 * x.sums32[2 * k] as i32 + m[2 * k + 1] as i32 * x.sums32[2 * k + 1] as i32
    })
}

/// One Q4_K row times one Q8_K row, in the float order of ggml's
/// repacked Q4_K path (`block_q4_Kx8`, which llama.cpp takes for Q4_K on
/// every AVX2 machine when rows come in eights, as in every real model):
/// each block's integer total and its mins total, one FMA chain for each,
/// subtracted at the end.
pub fn q4k_q8k(w: &[BlockQ4K], x: &[BlockQ8K]) -> f32 {
    let (mut acc, mut acc_m) = (0f32, 0f32);
    for (w, x) in w.iter().zip(x) {
        let (sc, m) = scales_and_mins(&w.scales);
        let total: i32 = lanes_k4(|i| w.q(i), &sc, x).iter().sum();
        let mins: i32 = mins_lanes(&m, x).iter().sum();
        acc = (total as f32).mul_add(w.d.to_f32() * x.d, acc);
        acc_m = (mins as f32).mul_add(w.dmin.to_f32() * x.d, acc_m);
    }
    acc - acc_m
}

/// Activation rows of a batch that llama.cpp's repacked Q4_K path takes
/// through its `gemm` (whole fours from the first row on); the rest go
/// through its `gemv`.
pub fn q4k_gemm_rows(n: usize) -> usize {
    n - n % 4
}

/// One Q4_K row times one Q8_K row in the order of the repacked path's
/// `gemm` (`ggml_gemm_q4_K_8x8_q8_K`, for the rows [`q4k_gemm_rows`]
/// counts): one FMA per pair of sub-blocks (64 values) instead of one per
/// block, for the sums and for the mins.
pub fn q4k_q8k_gemm(w: &[BlockQ4K], x: &[BlockQ8K]) -> f32 {
    let (mut acc, mut acc_m) = (0f32, 0f32);
    for (w, x) in w.iter().zip(x) {
        let (sc, m) = scales_and_mins(&w.scales);
        let (dw, dmin) = (w.d.to_f32() * x.d, w.dmin.to_f32() * x.d);
        for (pair, mins) in mins_lanes(&m, x).into_iter().enumerate() {
            let sum: i32 = (64 * pair..64 * pair + 64)
                .map(|i| sc[i / 32] as i32 * w.q(i) as i32 * x.qs[i] as i32)
                .sum();
            acc = (sum as f32).mul_add(dw, acc);
            acc_m = (mins as f32).mul_add(dmin, acc_m);
        }
    }
    acc - acc_m
}

/// One Q5_K row times one Q8_K row.
pub fn q5k_q8k(w: &[BlockQ5K], x: &[BlockQ8K]) -> f32 {
    let mut acc = [0f32; 8];
    let mut summs = 0f32;
    for (w, x) in w.iter().zip(x) {
        let d = x.d * w.d.to_f32();
        let dmin = -x.d * w.dmin.to_f32();
        let (sc, m) = scales_and_mins(&w.scales);
        // GCC contracts ggml's `summs += dmin * sum` into an FMA.
        let mins: i32 = mins_lanes(&m, x).iter().sum();
        summs = dmin.mul_add(mins as f32, summs);
        for (a, s) in acc.iter_mut().zip(lanes_k4(|i| w.q(i), &sc, x)) {
            *a = d.mul_add(s as f32, *a);
        }
    }
    hsum8(&acc) + summs
}

/// One Q6_K row times one Q8_K row: unsigned q times x, then the
/// `32 * scale * bsum` offset per lane.
pub fn q6k_q8k(w: &[BlockQ6K], x: &[BlockQ8K]) -> f32 {
    let mut acc = [0f32; 8];
    for (w, x) in w.iter().zip(x) {
        let d = x.d * w.d.to_f32();
        let mut lanes = [0i32; 8];
        for i in 0..QK_K {
            lanes[lane(i)] += w.scales[i / 16] as i32 * w.q(i) as i32 * x.qs[i] as i32;
        }
        for (k, l) in lanes.iter_mut().enumerate() {
            let sub = x.bsums[2 * k] as i32 * w.scales[2 * k] as i32
                + x.bsums[2 * k + 1] as i32 * w.scales[2 * k + 1] as i32;
            *l -= sub << 5;
        }
        for (a, s) in acc.iter_mut().zip(lanes) {
            *a = d.mul_add(s as f32, *a);
        }
    }
    hsum8(&acc)
}

/// One Q5_K row times one Q8_K row in the tiled matmul's float order: per
/// block the exact scale and mins totals, `f32(s) · d_w` less `dmin ·
/// f32(m)` in one fused step, then one FMA with the activation's `d` into
/// the row's sum (GCC contracts the kernel's multiply and add).
pub fn q5k_q8k_tiled(w: &[BlockQ5K], x: &[BlockQ8K]) -> f32 {
    let mut acc = 0f32;
    for (w, x) in w.iter().zip(x) {
        let (sc, m) = scales_and_mins(&w.scales);
        let total: i32 = lanes_k4(|i| w.q(i), &sc, x).iter().sum();
        let mins: i32 = mins_lanes(&m, x).iter().sum();
        let block = (-w.dmin.to_f32()).mul_add(mins as f32, total as f32 * w.d.to_f32());
        acc = block.mul_add(x.d, acc);
    }
    acc
}

/// One Q6_K row times one Q8_K row in the tiled matmul's float order: per
/// block the exact total of scale x (q - 32) x x, times `d_w`, then one FMA
/// with the activation's `d` into the row's sum.
pub fn q6k_q8k_tiled(w: &[BlockQ6K], x: &[BlockQ8K]) -> f32 {
    let mut acc = 0f32;
    for (w, x) in w.iter().zip(x) {
        let total: i32 = (0..QK_K)
            .map(|i| w.scales[i / 16] as i32 * (w.q(i) as i32 - 32) * x.qs[i] as i32)
            .sum();
        acc = (total as f32 * w.d.to_f32()).mul_add(x.d, acc);
    }
    acc
}

/// One Q2_K row times one Q8_K row, in the tiled matmul's order at every
/// batch size (llama.cpp's `vec_dot` and repacked orders are not kept for
/// Q2_K and Q3_K: their results agree to rounding, not bit for bit): per
/// block the exact scale and mins totals, `f32(s) · d` less `dmin ·
/// f32(m)` fused, then one FMA with the activation's `d`.
pub fn q2k_q8k(w: &[BlockQ2K], x: &[BlockQ8K]) -> f32 {
    let mut acc = 0f32;
    for (w, x) in w.iter().zip(x) {
        let total: i32 = (0..QK_K)
            .map(|i| (w.scales[i / 16] & 0x0f) as i32 * w.q(i) as i32 * x.qs[i] as i32)
            .sum();
        let mins: i32 = (0..16)
            .map(|j| (w.scales[j] >> 4) as i32 * x.bsums[j] as i32)
            .sum();
        let block = (-w.dmin.to_f32()).mul_add(mins as f32, total as f32 * w.d.to_f32());
        acc = block.mul_add(x.d, acc);
    }
    acc
}

/// One Q3_K row times one Q8_K row, in the tiled matmul's order (see
/// [`q2k_q8k`]): per block the exact total of scale x (q - 4) x x, times
/// `d`, then one FMA with the activation's `d`.
pub fn q3k_q8k(w: &[BlockQ3K], x: &[BlockQ8K]) -> f32 {
    let mut acc = 0f32;
    for (w, x) in w.iter().zip(x) {
        let scales = w.scales();
        let total: i32 = (0..QK_K)
            .map(|i| scales[i / 16] as i32 * (w.q(i) as i32 - 4) * x.qs[i] as i32)
            .sum();
        acc = (total as f32 * w.d.to_f32()).mul_add(x.d, acc);
    }
    acc
}

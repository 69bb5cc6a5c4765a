//! ggml's CPU arithmetic, reproduced to the bit where it matters: its
//! vectorised `expf`, and the lane layout and reduction order of its
//! 16-wide f32 sums. This model's quantized activations amplify last-bit
//! differences (llama.cpp itself changes its greedy output when only its KV
//! cache type changes), so parity needs ggml's exact rounding, not just
//! "the same maths".

/// Lanes per vector and vectors per step in ggml's 512-bit f16/f32 loops.
pub const LANES: usize = 16;
pub const STEP: usize = 64;

/// One lane of ggml's `ggml_v_expf` (AVX-512 version). Needs hardware FMA
/// to be fast; `mul_add` keeps the fused rounding either way.
#[inline(always)]
pub fn expf(x: f32) -> f32 {
    let c = f32::from_bits;
    let r = c(0x4b40_0000);
    let z = x.mul_add(c(0x3fb8_aa3b), r);
    let n = z - r;
    let b = (-n).mul_add(c(0x35bf_be8e), (-n).mul_add(c(0x3f31_7200), x));
    let u = b * b;
    let j = c(0x3c07_2010)
        .mul_add(b, c(0x3d2b_9f17))
        .mul_add(u, c(0x3e2a_af33).mul_add(b, c(0x3eff_fedb)))
        .mul_add(u, c(0x3f7f_fff6).mul_add(b, 1.0));
    if n.abs() > 192.0 {
        return if n <= 0.0 { 0.0 } else { f32::INFINITY };
    }
    // `scalef`: j * 2^n with a single rounding. |n| <= 192 here, so 2^n is
    // a normal f64 built from its exponent bits (what `powi` returns, minus
    // the call).
    let two_n = f64::from_bits(((n as i64 + 1023) as u64) << 52);
    ((j as f64) * two_n) as f32
}

/// `_mm512_reduce_add_ps` as GCC expands it: halves, quarters, then pairs.
#[inline(always)]
pub fn reduce16(v: &[f32; LANES]) -> f32 {
    let mut t3 = [0f32; 8];
    for i in 0..8 {
        t3[i] = v[i + 8] + v[i];
    }
    let mut t6 = [0f32; 4];
    for i in 0..4 {
        t6[i] = t3[i + 4] + t3[i];
    }
    (t6[0] + t6[2]) + (t6[1] + t6[3])
}

/// ggml's `GGML_F32x16_REDUCE` over four accumulators.
#[inline(always)]
pub fn reduce_step(acc: &[[f32; LANES]; 4]) -> f32 {
    let mut x0 = [0f32; LANES];
    for l in 0..LANES {
        let a = acc[0][l] + acc[2][l];
        let b = acc[1][l] + acc[3][l];
        x0[l] = a + b;
    }
    reduce16(&x0)
}

/// `ggml_vec_dot_f16`: values already widened to f32 (exact), products
/// fused into 4x16 accumulators by position, leftovers added in f64.
#[inline(always)]
pub fn dot(x: &[f32], y: &[f32]) -> f32 {
    let n = x.len();
    let np = n & !(STEP - 1);
    let mut acc = [[0f32; LANES]; 4];
    for i in (0..np).step_by(STEP) {
        for (j, a) in acc.iter_mut().enumerate() {
            for (l, s) in a.iter_mut().enumerate() {
                let k = i + j * LANES + l;
                *s = x[k].mul_add(y[k], *s);
            }
        }
    }
    let mut sum = reduce_step(&acc) as f64;
    for k in np..n {
        sum += (x[k] * y[k]) as f64;
    }
    sum as f32
}

/// tinyBLAS's dot (llama.cpp's `llamafile_sgemm`, used for f16 products
/// when a step has two or more query rows): one 16-lane accumulator chained
/// over the whole length, then one reduction. tinyBLAS declines lengths that
/// are not a multiple of 16; callers then use [`dot`].
#[inline(always)]
pub fn dot_gemm(x: &[f32], y: &[f32]) -> f32 {
    debug_assert!(x.len().is_multiple_of(LANES));
    let mut acc = [0f32; LANES];
    for (xc, yc) in x.chunks_exact(LANES).zip(y.chunks_exact(LANES)) {
        for l in 0..LANES {
            acc[l] = xc[l].mul_add(yc[l], acc[l]);
        }
    }
    reduce16(&acc)
}

/// ggml's `soft_max` in place: 16-lane chunks of `expf`, each chunk's
/// reduction summed in f64, then scaled by the f32 inverse.
#[inline(always)]
pub fn softmax(x: &mut [f32]) {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0f64;
    for chunk in x.chunks_mut(LANES) {
        let mut v = [0f32; LANES];
        for (a, b) in v.iter_mut().zip(chunk.iter()) {
            *a = expf(b - max);
        }
        chunk.copy_from_slice(&v[..chunk.len()]);
        sum += reduce16(&v) as f64;
    }
    let inv = (1.0 / sum) as f32;
    for w in x.iter_mut() {
        *w *= inv;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_sums_to_one() {
        let mut x = [1.0, 2.0, 3.0, -1000.0];
        softmax(&mut x);
        assert!((x.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(x[2] > x[1] && x[1] > x[0] && x[3] == 0.0);
    }

    #[test]
    fn expf_is_within_two_ulp_of_libm_and_handles_extremes() {
        for i in -2000..2000 {
            let x = i as f32 * 0.043;
            let (a, b) = (expf(x), x.exp());
            let ulp = (a.to_bits() as i64 - b.to_bits() as i64).abs();
            assert!(ulp <= 2, "expf({x}) = {a}, libm {b}");
        }
        assert_eq!(expf(f32::NEG_INFINITY), 0.0);
        assert_eq!(expf(-1000.0), 0.0);
        assert_eq!(expf(1000.0), f32::INFINITY);
    }

    #[test]
    fn dot_matches_plain_sum_closely() {
        let x: Vec<f32> = (0..200).map(|i| (i as f32 * 0.37).sin()).collect();
        let y: Vec<f32> = (0..200).map(|i| (i as f32 * 0.11).cos()).collect();
        let plain: f64 = x.iter().zip(&y).map(|(a, b)| *a as f64 * *b as f64).sum();
        assert!((dot(&x, &y) as f64 - plain).abs() < 1e-4);
    }
}

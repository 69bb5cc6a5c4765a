//! ggml's CPU arithmetic, reproduced to the bit where it matters: its
//! vectorised `expf`, and the lane layout and reduction order of its
//! 16-wide f32 sums. This model's quantized activations amplify last-bit
//! differences (llama.cpp itself changes its greedy output when only its KV
//! cache type changes), so parity needs ggml's exact rounding, not just
//! "the same maths".

/// Lanes per vector and vectors per step in ggml's 512-bit f16/f32 loops.
pub const LANES: usize = 16;
pub const STEP: usize = 64;

/// ggml's `nearest_int`: `x` rounded to nearest, ties to even, for |x| <
/// 2^22. Adding 1.5 * 2^23 leaves the integer in the mantissa, so this is
/// `x.round_ties_even() as i32` in float adds and bit operations the
/// compiler vectorizes (without SSE4.1's `roundps` a `round_ties_even`
/// is a call to libm's `rintf` per value).
#[inline(always)]
pub fn nearest_int(x: f32) -> i32 {
    let v = x + 12_582_912.0;
    (v.to_bits() & 0x007f_ffff) as i32 - 0x0040_0000
}

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
    let mut acc = [[0f32; LANES]; 4];
    let (mut xs, mut ys) = (x.chunks_exact(STEP), y.chunks_exact(STEP));
    for (xc, yc) in (&mut xs).zip(&mut ys) {
        // Fixed-size steps: no bounds checks, so the FMAs vectorize.
        let (xc, yc): (&[f32; STEP], &[f32; STEP]) =
            (xc.try_into().expect("STEP"), yc.try_into().expect("STEP"));
        for (j, a) in acc.iter_mut().enumerate() {
            for (l, s) in a.iter_mut().enumerate() {
                let k = j * LANES + l;
                *s = xc[k].mul_add(yc[k], *s);
            }
        }
    }
    let mut sum = reduce_step(&acc) as f64;
    for (a, b) in xs.remainder().iter().zip(ys.remainder()) {
        sum += (a * b) as f64;
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
    #[cfg(target_arch = "x86_64")]
    if super::dot::best().fma {
        // SAFETY: `fma` is set only on CPUs with AVX2 and FMA.
        unsafe { fma::softmax(x) };
        return;
    }
    softmax_with(x, |v| v.map(expf));
}

/// `ln Σ exp(x)`, the normalizer of log-probabilities, with `expf` 8 lanes
/// at a time (a vocabulary-long row per sampled token for TGI's and
/// OpenAI's `logprob`s; the scalar loop was ~0.2 ms per row here).
pub fn log_sum_exp(x: &[f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; 8];
    let mut chunks = x.chunks_exact(8);
    for c in &mut chunks {
        for (m, v) in lanes.iter_mut().zip(c) {
            *m = m.max(*v);
        }
    }
    let max = chunks
        .remainder()
        .iter()
        .chain(&lanes)
        .copied()
        .fold(f32::NEG_INFINITY, f32::max);
    if max == f32::NEG_INFINITY {
        return max;
    }
    #[cfg(target_arch = "x86_64")]
    if super::dot::best().fma {
        // SAFETY: `fma` is set only on CPUs with AVX2 and FMA.
        return max + unsafe { fma::sum_exp(x, max) }.ln() as f32;
    }
    let sum: f64 = x.iter().map(|v| expf(v - max) as f64).sum();
    max + sum.ln() as f32
}

/// [`softmax`] with the 16 `expf`s of a chunk computed by `exp16`
/// (padding lanes hold -inf, whose `expf` is +0.0).
#[inline(always)]
fn softmax_with(x: &mut [f32], exp16: impl Fn([f32; LANES]) -> [f32; LANES]) {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0f64;
    for chunk in x.chunks_mut(LANES) {
        let mut v = [f32::NEG_INFINITY; LANES];
        for (a, b) in v.iter_mut().zip(chunk.iter()) {
            *a = b - max;
        }
        let v = exp16(v);
        chunk.copy_from_slice(&v[..chunk.len()]);
        sum += reduce16(&v) as f64;
    }
    let inv = (1.0 / sum) as f32;
    for w in x.iter_mut() {
        *w *= inv;
    }
}

#[cfg(target_arch = "x86_64")]
pub(crate) mod fma {
    //! [`expf`](super::expf) 8 lanes at a time, bit for bit: the same
    //! operations in the same order, the final scaling by 2^n in f64 too.
    use super::*;
    use std::arch::x86_64::*;

    #[target_feature(enable = "avx2,fma")]
    pub(crate) unsafe fn softmax(x: &mut [f32]) {
        softmax_with(x, |v| {
            let mut out = [0f32; LANES];
            for (o, i) in out.chunks_exact_mut(8).zip(v.chunks_exact(8)) {
                _mm256_storeu_ps(o.as_mut_ptr(), expf8(_mm256_loadu_ps(i.as_ptr())));
            }
            out
        });
    }

    /// `Σ expf(x - max)` in f64.
    #[target_feature(enable = "avx2,fma")]
    pub(crate) unsafe fn sum_exp(x: &[f32], max: f32) -> f64 {
        let m = _mm256_set1_ps(max);
        let mut acc = _mm256_setzero_pd();
        let mut chunks = x.chunks_exact(8);
        for c in &mut chunks {
            let e = expf8(_mm256_sub_ps(_mm256_loadu_ps(c.as_ptr()), m));
            acc = _mm256_add_pd(acc, _mm256_cvtps_pd(_mm256_castps256_ps128(e)));
            acc = _mm256_add_pd(acc, _mm256_cvtps_pd(_mm256_extractf128_ps::<1>(e)));
        }
        let mut lanes = [0f64; 4];
        _mm256_storeu_pd(lanes.as_mut_ptr(), acc);
        let tail: f64 = chunks
            .remainder()
            .iter()
            .map(|v| expf(v - max) as f64)
            .sum();
        lanes.iter().sum::<f64>() + tail
    }

    #[inline(always)]
    pub(crate) unsafe fn expf8(x: __m256) -> __m256 {
        let c = |bits: u32| _mm256_set1_ps(f32::from_bits(bits));
        let sign = _mm256_set1_ps(-0.0);
        let r = c(0x4b40_0000);
        let z = _mm256_fmadd_ps(x, c(0x3fb8_aa3b), r);
        let n = _mm256_sub_ps(z, r);
        let neg_n = _mm256_xor_ps(n, sign);
        let b = _mm256_fmadd_ps(
            neg_n,
            c(0x35bf_be8e),
            _mm256_fmadd_ps(neg_n, c(0x3f31_7200), x),
        );
        let u = _mm256_mul_ps(b, b);
        let j = _mm256_fmadd_ps(
            _mm256_fmadd_ps(
                _mm256_fmadd_ps(c(0x3c07_2010), b, c(0x3d2b_9f17)),
                u,
                _mm256_fmadd_ps(c(0x3e2a_af33), b, c(0x3eff_fedb)),
            ),
            u,
            _mm256_fmadd_ps(c(0x3f7f_fff6), b, _mm256_set1_ps(1.0)),
        );
        // (j as f64) * 2^n, rounded back to f32, four lanes at a time.
        let ni = _mm256_cvttps_epi32(n);
        let half = |j: __m128, n: __m128i| {
            let e = _mm256_slli_epi64::<52>(_mm256_add_epi64(
                _mm256_cvtepi32_epi64(n),
                _mm256_set1_epi64x(1023),
            ));
            _mm256_cvtpd_ps(_mm256_mul_pd(_mm256_cvtps_pd(j), _mm256_castsi256_pd(e)))
        };
        let scaled = _mm256_set_m128(
            half(
                _mm256_extractf128_ps::<1>(j),
                _mm256_extracti128_si256::<1>(ni),
            ),
            half(_mm256_castps256_ps128(j), _mm256_castsi256_si128(ni)),
        );
        // |n| > 192: 0 for n <= 0, +inf otherwise.
        let out_of_range = _mm256_cmp_ps::<_CMP_GT_OQ>(_mm256_andnot_ps(sign, n), c(0x4340_0000));
        let extreme = _mm256_blendv_ps(
            _mm256_set1_ps(f32::INFINITY),
            _mm256_setzero_ps(),
            _mm256_cmp_ps::<_CMP_LE_OQ>(n, _mm256_setzero_ps()),
        );
        _mm256_blendv_ps(scaled, extreme, out_of_range)
    }
}

/// [`expf`](super::expf) 16 lanes at a time with AVX-512F, bit for bit
/// [`fma::expf8`] on each half: the same operations, the scaling by 2^n
/// in f64 eight lanes at a time instead of four.
#[cfg(target_arch = "x86_64")]
pub(crate) mod avx512 {
    use std::arch::x86_64::*;

    #[inline]
    #[target_feature(enable = "avx512f")]
    pub(crate) unsafe fn expf16(x: __m512) -> __m512 {
        let c = |bits: u32| _mm512_set1_ps(f32::from_bits(bits));
        let r = c(0x4b40_0000);
        let z = _mm512_fmadd_ps(x, c(0x3fb8_aa3b), r);
        let n = _mm512_sub_ps(z, r);
        let neg_n = _mm512_castsi512_ps(_mm512_xor_si512(
            _mm512_castps_si512(n),
            _mm512_set1_epi32(i32::MIN),
        ));
        let b = _mm512_fmadd_ps(
            neg_n,
            c(0x35bf_be8e),
            _mm512_fmadd_ps(neg_n, c(0x3f31_7200), x),
        );
        let u = _mm512_mul_ps(b, b);
        let j = _mm512_fmadd_ps(
            _mm512_fmadd_ps(
                _mm512_fmadd_ps(c(0x3c07_2010), b, c(0x3d2b_9f17)),
                u,
                _mm512_fmadd_ps(c(0x3e2a_af33), b, c(0x3eff_fedb)),
            ),
            u,
            _mm512_fmadd_ps(c(0x3f7f_fff6), b, _mm512_set1_ps(1.0)),
        );
        // (j as f64) * 2^n, rounded back to f32, eight lanes at a time.
        let ni = _mm512_cvttps_epi32(n);
        let half = |j: __m256, n: __m256i| {
            let e = _mm512_slli_epi64::<52>(_mm512_add_epi64(
                _mm512_cvtepi32_epi64(n),
                _mm512_set1_epi64(1023),
            ));
            _mm512_cvtpd_ps(_mm512_mul_pd(_mm512_cvtps_pd(j), _mm512_castsi512_pd(e)))
        };
        let high = |v: __m512| {
            _mm512_castpd_ps(_mm512_castpd256_pd512(_mm512_extractf64x4_pd::<1>(
                _mm512_castps_pd(v),
            )))
        };
        let low_j = half(_mm512_castps512_ps256(j), _mm512_castsi512_si256(ni));
        let high_j = half(
            _mm512_castps512_ps256(high(j)),
            _mm512_extracti64x4_epi64::<1>(ni),
        );
        let scaled = _mm512_castpd_ps(_mm512_insertf64x4::<1>(
            _mm512_castps_pd(_mm512_castps256_ps512(low_j)),
            _mm256_castps_pd(high_j),
        ));
        // |n| > 192: 0 for n <= 0, +inf otherwise.
        let abs_n = _mm512_castsi512_ps(_mm512_and_si512(
            _mm512_castps_si512(n),
            _mm512_set1_epi32(i32::MAX),
        ));
        let out_of_range = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(abs_n, c(0x4340_0000));
        let not_positive = _mm512_cmp_ps_mask::<_CMP_LE_OQ>(n, _mm512_setzero_ps());
        let extreme = _mm512_mask_blend_ps(
            not_positive,
            _mm512_set1_ps(f32::INFINITY),
            _mm512_setzero_ps(),
        );
        _mm512_mask_blend_ps(out_of_range, scaled, extreme)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_int_rounds_ties_to_even() {
        for i in -2000..=2000 {
            for x in [i as f32 * 0.25, i as f32 * 0.1, i as f32 * 0.0625 + 1e-3] {
                assert_eq!(nearest_int(x), x.round_ties_even() as i32, "{x}");
            }
        }
        assert_eq!((nearest_int(2.5), nearest_int(-3.5)), (2, -4));
    }

    #[test]
    fn log_sum_exp_matches_the_f64_definition() {
        for n in [1usize, 7, 8, 13, 49152] {
            let x: Vec<f32> = (0..n)
                .map(|i| ((i * 7919 % 1013) as f32 - 500.0) * 0.037)
                .collect();
            let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
            let want = max + x.iter().map(|v| (*v as f64 - max).exp()).sum::<f64>().ln();
            let got = log_sum_exp(&x) as f64;
            assert!(
                (got - want).abs() < 1e-5 * want.abs().max(1.0),
                "n {n}: {got} vs {want}"
            );
        }
        assert_eq!(log_sum_exp(&[f32::NEG_INFINITY; 3]), f32::NEG_INFINITY);
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn eight_lane_expf_equals_the_scalar_one_bit_for_bit() {
        if !crate::cpu::dot::best().fma {
            return;
        }
        let mut xs: Vec<f32> = (-40000..40000).map(|i| i as f32 * 0.0037).collect();
        xs.extend([
            0.0,
            -0.0,
            f32::NEG_INFINITY,
            f32::INFINITY,
            -1000.0,
            1000.0,
            -133.0,
            -88.7,
            88.7,
            f32::MIN_POSITIVE,
            -f32::MIN_POSITIVE,
        ]);
        while !xs.len().is_multiple_of(8) {
            xs.push(-1.0);
        }
        for chunk in xs.chunks_exact(8) {
            let mut got = [0f32; 8];
            // SAFETY: the CPU has AVX2 and FMA (`fma` above).
            unsafe {
                use std::arch::x86_64::*;
                let v = fma::expf8(_mm256_loadu_ps(chunk.as_ptr()));
                _mm256_storeu_ps(got.as_mut_ptr(), v);
            }
            for (x, g) in chunk.iter().zip(got) {
                assert_eq!(g.to_bits(), expf(*x).to_bits(), "expf({x})");
            }
        }
        let nan = unsafe {
            use std::arch::x86_64::*;
            let mut out = [0f32; 8];
            _mm256_storeu_ps(out.as_mut_ptr(), fma::expf8(_mm256_set1_ps(f32::NAN)));
            out[0]
        };
        assert!(nan.is_nan());
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn expf16_equals_expf8_on_each_half_bit_for_bit() {
        use std::arch::x86_64::*;
        if !(is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("fma")) {
            eprintln!("skipped: no AVX-512F here");
            return;
        }
        let mut inputs: Vec<f32> = (-40000..40000).map(|i| i as f32 * 0.0031).collect();
        inputs.extend([
            f32::NEG_INFINITY,
            f32::INFINITY,
            -1000.0,
            1000.0,
            -87.5,
            88.7,
            -103.9,
            0.0,
            -0.0,
            f32::MIN_POSITIVE,
        ]);
        inputs.resize(inputs.len().next_multiple_of(16), 0.5);
        for chunk in inputs.chunks_exact(16) {
            let (mut got, mut want) = ([0f32; 16], [0f32; 16]);
            // SAFETY: the features were checked above.
            unsafe {
                _mm512_storeu_ps(
                    got.as_mut_ptr(),
                    avx512::expf16(_mm512_loadu_ps(chunk.as_ptr())),
                );
                for h in 0..2 {
                    let v = fma::expf8(_mm256_loadu_ps(chunk[8 * h..].as_ptr()));
                    _mm256_storeu_ps(want[8 * h..].as_mut_ptr(), v);
                }
            }
            for ((g, w), x) in got.iter().zip(&want).zip(chunk) {
                assert_eq!(g.to_bits(), w.to_bits(), "expf({x}): {g} vs {w}");
            }
        }
    }

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

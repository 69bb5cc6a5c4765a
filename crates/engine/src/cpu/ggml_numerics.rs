//! ggml's CPU arithmetic, reproduced to the bit where it matters: its
//! vectorised `expf`, and the lane layout and reduction order of its f32
//! sums, which depend on the vector width llama.cpp was built for: 16
//! lanes on CPUs with AVX-512, 8 on AVX2 ones ([`lanes_here`]). This
//! model's quantized activations amplify last-bit differences (llama.cpp
//! itself changes its greedy output when only its KV cache type changes),
//! so parity needs ggml's exact rounding, not just "the same maths".

/// Lanes per vector and vectors per step in ggml's 512-bit f16/f32 loops.
pub const LANES: usize = 16;
pub const STEP: usize = 64;

/// The lanes of ggml's f32 vectors on this CPU: 16 with AVX-512F (and the
/// AVX2/FMA kernels), 8 otherwise (ggml's AVX2 build; CPUs without AVX2
/// take the same order in scalar code).
pub fn lanes_here() -> usize {
    #[cfg(target_arch = "x86_64")]
    {
        static WIDE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        if *WIDE.get_or_init(|| super::dot::best().fma && is_x86_feature_detected!("avx512f")) {
            return LANES;
        }
    }
    8
}

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

/// One lane of ggml's `ggml_v_expf` as built for AVX2 without AVX-512:
/// the same reduction and polynomial as [`expf`] less its constant 1,
/// then `k·j + k` (k = 2^n from the exponent bits) with one rounding
/// where [`expf`] rounds `1 + j` first; |n| > 126 scales in two steps.
/// The two differ in the last bit for many inputs.
#[inline(always)]
pub fn expf_avx2(x: f32) -> f32 {
    let c = f32::from_bits;
    let r = c(0x4b40_0000);
    let z = x.mul_add(c(0x3fb8_aa3b), r);
    let n = z - r;
    let b = (-n).mul_add(c(0x35bf_be8e), (-n).mul_add(c(0x3f31_7200), x));
    let e = z.to_bits() << 23;
    let k = c(e.wrapping_add(0x3f80_0000));
    let u = b * b;
    let j = c(0x3c07_2010)
        .mul_add(b, c(0x3d2b_9f17))
        .mul_add(u, c(0x3e2a_af33).mul_add(b, c(0x3eff_fedb)))
        .mul_add(u, c(0x3f7f_fff6) * b);
    // NaN takes this branch too, as in ggml's vector compare.
    if n.is_nan() || n.abs() <= 126.0 {
        return j.mul_add(k, k);
    }
    let g: u32 = if n <= 0.0 { 0x8200_0000 } else { 0 };
    let s1 = c(g.wrapping_add(0x7f00_0000));
    if n.abs() > 192.0 {
        return s1 * s1;
    }
    let s2 = c(e.wrapping_sub(g));
    s2.mul_add(j, s2) * s1
}

/// ggml's `expf` for W-lane vectors, one lane: [`expf`] (16, AVX-512) or
/// [`expf_avx2`] (8).
#[inline(always)]
pub fn expf_of<const W: usize>(x: f32) -> f32 {
    if W == LANES {
        expf(x)
    } else {
        expf_avx2(x)
    }
}

/// `_mm512_reduce_add_ps` as GCC expands it: halves, quarters, then pairs.
#[inline(always)]
pub fn reduce16(v: &[f32; LANES]) -> f32 {
    reduce(v)
}

/// A vector's lanes summed as ggml's 16-lane `_mm512_reduce_add_ps` and
/// its 8-lane `hsum`s (`movehl`, `movehdup`) do: halves added down to 4
/// lanes, then `(t0 + t2) + (t1 + t3)`.
#[inline(always)]
pub fn reduce<const W: usize>(v: &[f32; W]) -> f32 {
    let mut t = *v;
    let mut width = W;
    while width > 4 {
        width /= 2;
        for i in 0..width {
            t[i] += t[i + width];
        }
    }
    (t[0] + t[2]) + (t[1] + t[3])
}

/// ggml's `GGML_F32x16_REDUCE` (16 lanes) or `GGML_F32x8_REDUCE` (8:
/// halves, then two `hadd`s) over four accumulators.
#[inline(always)]
pub fn reduce_step<const W: usize>(acc: &[[f32; W]; 4]) -> f32 {
    let x0: [f32; W] = std::array::from_fn(|l| (acc[0][l] + acc[2][l]) + (acc[1][l] + acc[3][l]));
    if W == LANES {
        return reduce(&x0);
    }
    let t: [f32; 4] = std::array::from_fn(|i| x0[i] + x0[i + 4]);
    (t[0] + t[1]) + (t[2] + t[3])
}

/// `ggml_vec_dot_f16` with W-lane vectors: values already widened to f32
/// (exact), products fused into 4xW accumulators by position (steps of
/// 4W), leftovers added in f64.
#[inline(always)]
pub fn dot<const W: usize>(x: &[f32], y: &[f32]) -> f32 {
    let mut acc = [[0f32; W]; 4];
    let (mut xs, mut ys) = (x.chunks_exact(4 * W), y.chunks_exact(4 * W));
    for (xc, yc) in (&mut xs).zip(&mut ys) {
        for (j, a) in acc.iter_mut().enumerate() {
            // Fixed-size pieces: no bounds checks, so the FMAs vectorize.
            let xv: &[f32; W] = xc[j * W..(j + 1) * W].try_into().expect("W");
            let yv: &[f32; W] = yc[j * W..(j + 1) * W].try_into().expect("W");
            for l in 0..W {
                a[l] = xv[l].mul_add(yv[l], a[l]);
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
/// when a step has two or more query rows): one W-lane accumulator chained
/// over the whole length, then one reduction. tinyBLAS declines lengths that
/// are not a multiple of W; callers then use [`dot`].
#[inline(always)]
pub fn dot_gemm<const W: usize>(x: &[f32], y: &[f32]) -> f32 {
    debug_assert!(x.len().is_multiple_of(W));
    let mut acc = [0f32; W];
    for (xc, yc) in x.chunks_exact(W).zip(y.chunks_exact(W)) {
        for l in 0..W {
            acc[l] = xc[l].mul_add(yc[l], acc[l]);
        }
    }
    reduce(&acc)
}

/// ggml's `soft_max` in place: W-lane chunks of `expf`, each chunk's
/// reduction summed in f64, then scaled by the f32 inverse.
#[inline(always)]
pub fn softmax<const W: usize>(x: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if super::dot::best().fma {
        // SAFETY: `fma` is set only on CPUs with AVX2 and FMA.
        unsafe { fma::softmax::<W>(x) };
        return;
    }
    softmax_with::<W>(x, |v| v.map(expf_of::<W>));
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

/// [`softmax`] with the W `expf`s of a chunk computed by `exp`
/// (padding lanes hold -inf, whose `expf` is +0.0).
#[inline(always)]
fn softmax_with<const W: usize>(x: &mut [f32], exp: impl Fn([f32; W]) -> [f32; W]) {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0f64;
    for chunk in x.chunks_mut(W) {
        let mut v = [f32::NEG_INFINITY; W];
        for (a, b) in v.iter_mut().zip(chunk.iter()) {
            *a = b - max;
        }
        let v = exp(v);
        chunk.copy_from_slice(&v[..chunk.len()]);
        sum += reduce(&v) as f64;
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
    pub(crate) unsafe fn softmax<const W: usize>(x: &mut [f32]) {
        softmax_with::<W>(x, |v| {
            let mut out = [0f32; W];
            for (o, i) in out.chunks_exact_mut(8).zip(v.chunks_exact(8)) {
                _mm256_storeu_ps(o.as_mut_ptr(), expf8_of::<W>(_mm256_loadu_ps(i.as_ptr())));
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

    /// [`expf_of`] 8 lanes at a time.
    #[inline(always)]
    pub(crate) unsafe fn expf8_of<const W: usize>(x: __m256) -> __m256 {
        if W == LANES {
            expf8(x)
        } else {
            expf8_avx2(x)
        }
    }

    /// [`expf_avx2`](super::expf_avx2) 8 lanes at a time: ggml's AVX2
    /// `ggml_v_expf` operation for operation.
    #[inline(always)]
    pub(crate) unsafe fn expf8_avx2(x: __m256) -> __m256 {
        let c = |bits: u32| _mm256_set1_ps(f32::from_bits(bits));
        let r = c(0x4b40_0000);
        let z = _mm256_fmadd_ps(x, c(0x3fb8_aa3b), r);
        let n = _mm256_sub_ps(z, r);
        let b = _mm256_fnmadd_ps(n, c(0x35bf_be8e), _mm256_fnmadd_ps(n, c(0x3f31_7200), x));
        let e = _mm256_slli_epi32::<23>(_mm256_castps_si256(z));
        let k = _mm256_castsi256_ps(_mm256_add_epi32(e, _mm256_set1_epi32(0x3f80_0000)));
        let abs_n = _mm256_andnot_ps(_mm256_set1_ps(-0.0), n);
        let big = _mm256_cmp_ps::<_CMP_GT_OQ>(abs_n, _mm256_set1_ps(126.0));
        let u = _mm256_mul_ps(b, b);
        let j = _mm256_fmadd_ps(
            _mm256_fmadd_ps(
                _mm256_fmadd_ps(c(0x3c07_2010), b, c(0x3d2b_9f17)),
                u,
                _mm256_fmadd_ps(c(0x3e2a_af33), b, c(0x3eff_fedb)),
            ),
            u,
            _mm256_mul_ps(c(0x3f7f_fff6), b),
        );
        if _mm256_movemask_ps(big) == 0 {
            return _mm256_fmadd_ps(j, k, k);
        }
        let not_positive = _mm256_cmp_ps::<_CMP_LE_OQ>(n, _mm256_setzero_ps());
        let g = _mm256_and_si256(
            _mm256_castps_si256(not_positive),
            _mm256_set1_epi32(0x8200_0000u32 as i32),
        );
        let s1 = _mm256_castsi256_ps(_mm256_add_epi32(g, _mm256_set1_epi32(0x7f00_0000)));
        let s2 = _mm256_castsi256_ps(_mm256_sub_epi32(e, g));
        let huge = _mm256_cmp_ps::<_CMP_GT_OQ>(abs_n, _mm256_set1_ps(192.0));
        let two_step = _mm256_mul_ps(_mm256_fmadd_ps(s2, j, s2), s1);
        let one_step = _mm256_fmadd_ps(k, j, k);
        _mm256_or_ps(
            _mm256_and_ps(huge, _mm256_mul_ps(s1, s1)),
            _mm256_andnot_ps(huge, _mm256_blendv_ps(one_step, two_step, big)),
        )
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

    /// ggml's AVX2 `expf`: the vector form equals the scalar model bit for
    /// bit, both stay within 2 ulp of libm, and the extremes land where
    /// libm's do.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn avx2_expf_vector_equals_its_scalar_model() {
        use std::arch::x86_64::*;
        if !super::super::dot::best().fma {
            return;
        }
        let mut xs: Vec<f32> = (-40000..40000).map(|i| i as f32 * 0.0037).collect();
        xs.extend([0.0, -0.0, f32::NEG_INFINITY, f32::INFINITY, -1000.0, 1000.0]);
        xs.extend([
            -133.0,
            -100.0,
            -88.7,
            88.7,
            100.0,
            f32::MIN_POSITIVE,
            -f32::MIN_POSITIVE,
        ]);
        xs.resize(xs.len().next_multiple_of(8), -1.0);
        for chunk in xs.chunks_exact(8) {
            let mut got = [0f32; 8];
            // SAFETY: the CPU has AVX2 and FMA (`fma` above).
            unsafe {
                let v = fma::expf8_avx2(_mm256_loadu_ps(chunk.as_ptr()));
                _mm256_storeu_ps(got.as_mut_ptr(), v);
            }
            for (x, g) in chunk.iter().zip(got) {
                assert_eq!(g.to_bits(), expf_avx2(*x).to_bits(), "expf({x})");
                let want = x.exp();
                if want.is_finite() && want > 1e-30 {
                    let ulps = (g.to_bits() as i64 - want.to_bits() as i64).abs();
                    assert!(ulps <= 2, "expf({x}) = {g}, libm {want}");
                } else if want == 0.0 || want.is_infinite() {
                    assert_eq!(g, want, "expf({x})");
                }
            }
        }
        // The two forms differ somewhere (else one of them is not ggml's).
        assert!(xs
            .iter()
            .any(|&x| expf(x).to_bits() != expf_avx2(x).to_bits()));
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
        softmax::<16>(&mut x);
        let mut y = vec![1.0f32, 2.0, 3.0, -1.0, 0.5];
        softmax::<8>(&mut y);
        assert!((y.iter().sum::<f32>() - 1.0).abs() < 1e-6);
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
        assert!((dot::<16>(&x, &y) as f64 - plain).abs() < 1e-4);
        assert!((dot::<8>(&x, &y) as f64 - plain).abs() < 1e-4);
    }
}

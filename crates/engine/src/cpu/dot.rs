//! Dot products between a quantized weight row and a quantized activation
//! row: a portable version and an AVX2 one chosen at run time. candle ships
//! these for Q4_0 and Q8_0 but not Q4_1 (scalar only), the type of the
//! model we serve, so the three hot types live here together.

use std::sync::OnceLock;

use super::blocks::{BlockQ4_0, BlockQ4_1, BlockQ8_0, BlockQ8_1};

/// One set of dot-product kernels.
#[derive(Clone, Copy)]
pub struct Kernels {
    pub name: &'static str,
    /// The CPU has FMA (and AVX2, F16C): other ggml-exact code may use
    /// `target_feature` paths.
    pub fma: bool,
    pub q4_0_q8_0: fn(&[BlockQ4_0], &[BlockQ8_0]) -> f32,
    pub q4_1_q8_1: fn(&[BlockQ4_1], &[BlockQ8_1]) -> f32,
    pub q8_0_q8_0: fn(&[BlockQ8_0], &[BlockQ8_0]) -> f32,
}

/// Portable kernels, the reference the SIMD ones are tested against.
pub const PORTABLE: Kernels = Kernels {
    name: "portable",
    fma: false,
    q4_0_q8_0: portable::q4_0_q8_0,
    q4_1_q8_1: portable::q4_1_q8_1,
    q8_0_q8_0: portable::q8_0_q8_0,
};

/// The fastest kernels this CPU runs; `SERVEBENCH_KERNELS=portable` forces
/// the portable ones.
pub fn best() -> &'static Kernels {
    static BEST: OnceLock<Kernels> = OnceLock::new();
    BEST.get_or_init(|| {
        if std::env::var("SERVEBENCH_KERNELS").as_deref() == Ok("portable") {
            return PORTABLE;
        }
        #[cfg(target_arch = "x86_64")]
        if let Some(k) = avx2::detect() {
            return k;
        }
        PORTABLE
    })
}

mod portable {
    use super::*;

    pub fn q4_0_q8_0(w: &[BlockQ4_0], x: &[BlockQ8_0]) -> f32 {
        w.iter()
            .zip(x)
            .map(|(w, x)| {
                let mut sum = 0i32;
                for j in 0..16 {
                    sum += ((w.qs[j] & 0x0f) as i32 - 8) * x.qs[j] as i32;
                    sum += ((w.qs[j] >> 4) as i32 - 8) * x.qs[j + 16] as i32;
                }
                sum as f32 * w.d.to_f32() * x.d.to_f32()
            })
            .sum()
    }

    pub fn q4_1_q8_1(w: &[BlockQ4_1], x: &[BlockQ8_1]) -> f32 {
        w.iter()
            .zip(x)
            .map(|(w, x)| {
                let mut sum = 0i32;
                for j in 0..16 {
                    sum += (w.qs[j] & 0x0f) as i32 * x.qs[j] as i32;
                    sum += (w.qs[j] >> 4) as i32 * x.qs[j + 16] as i32;
                }
                sum as f32 * w.d.to_f32() * x.d.to_f32() + w.m.to_f32() * x.s.to_f32()
            })
            .sum()
    }

    pub fn q8_0_q8_0(w: &[BlockQ8_0], x: &[BlockQ8_0]) -> f32 {
        w.iter()
            .zip(x)
            .map(|(w, x)| {
                let sum: i32 =
                    w.qs.iter()
                        .zip(&x.qs)
                        .map(|(a, b)| *a as i32 * *b as i32)
                        .sum();
                sum as f32 * w.d.to_f32() * x.d.to_f32()
            })
            .sum()
    }
}

#[cfg(target_arch = "x86_64")]
pub(super) mod avx2 {
    //! The same arithmetic as ggml's AVX2 paths (`ggml_vec_dot_q4_1_q8_1`
    //! and friends): unpack nibbles, multiply-add bytes into i16 pairs, then
    //! into i32, scale in f32.
    use super::*;
    use std::arch::x86_64::*;

    /// AVX2, FMA and F16C: what every AVX2 kernel here, in `dot_rows` and
    /// in `kquants` enables.
    pub fn has_avx2_fma_f16c() -> bool {
        is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
            && is_x86_feature_detected!("f16c")
    }

    /// AVX512-VNNI with AVX512-VL: what the 256-bit VNNI kernels add.
    pub fn has_vnni_vl() -> bool {
        is_x86_feature_detected!("avx512vnni") && is_x86_feature_detected!("avx512vl")
    }

    pub fn detect() -> Option<Kernels> {
        has_avx2_fma_f16c().then_some(Kernels {
            name: "avx2",
            fma: true,
            q4_0_q8_0,
            q4_1_q8_1,
            q8_0_q8_0,
        })
    }

    // SAFETY (all three wrappers): `detect` only hands these out after
    // checking the CPU has AVX2, FMA and F16C.
    fn q4_0_q8_0(w: &[BlockQ4_0], x: &[BlockQ8_0]) -> f32 {
        unsafe { q4_0_q8_0_impl(w, x) }
    }
    fn q4_1_q8_1(w: &[BlockQ4_1], x: &[BlockQ8_1]) -> f32 {
        unsafe { q4_1_q8_1_impl(w, x) }
    }
    fn q8_0_q8_0(w: &[BlockQ8_0], x: &[BlockQ8_0]) -> f32 {
        unsafe { q8_0_q8_0_impl(w, x) }
    }

    #[inline(always)]
    pub(in crate::cpu) unsafe fn f16_to_f32(h: half::f16) -> f32 {
        _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(h.to_bits() as i32)))
    }

    /// `h` in all 8 lanes. Loaded with a broadcast: a 16-bit scalar load
    /// becomes `vpinsrw` into whatever register LLVM picks, a false
    /// dependency that chained each block to the previous one.
    #[inline(always)]
    pub(in crate::cpu) unsafe fn f16_splat(h: &half::f16) -> __m256 {
        _mm256_cvtph_ps(_mm_set1_epi16(h.to_bits() as i16))
    }

    /// The two f16 scales a `#[repr(C)]` block starts with (Q4_1's `d`, `m`;
    /// Q8_1's `d`, `s`) as f32, loaded as one 32-bit word (`vmovd`
    /// zero-extends: no false dependency).
    #[inline(always)]
    pub(in crate::cpu) unsafe fn f16_pair<B>(block: &B) -> (f32, f32) {
        let word = std::ptr::read_unaligned(block as *const B as *const i32);
        let both = _mm_cvtph_ps(_mm_cvtsi32_si128(word));
        (_mm_cvtss_f32(both), _mm_cvtss_f32(_mm_movehdup_ps(both)))
    }

    #[inline(always)]
    pub(in crate::cpu) unsafe fn hsum(x: __m256) -> f32 {
        let hi = _mm256_extractf128_ps(x, 1);
        let s = _mm_add_ps(hi, _mm256_castps256_ps128(x));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_movehdup_ps(s));
        _mm_cvtss_f32(s)
    }

    /// 16 bytes of nibbles -> 32 bytes: low nibbles then high nibbles.
    #[inline(always)]
    pub(in crate::cpu) unsafe fn nibbles(qs: &[u8; 16]) -> __m256i {
        let tmp = _mm_loadu_si128(qs.as_ptr() as *const __m128i);
        let both = _mm256_insertf128_si256(_mm256_castsi128_si256(tmp), _mm_srli_epi16(tmp, 4), 1);
        _mm256_and_si256(_mm256_set1_epi8(0x0f), both)
    }

    /// Unsigned bytes times signed bytes, summed to 8 f32 lanes.
    #[inline(always)]
    unsafe fn mul_sum_us8(ax: __m256i, sy: __m256i) -> __m256 {
        let dot = _mm256_maddubs_epi16(ax, sy);
        _mm256_cvtepi32_ps(_mm256_madd_epi16(_mm256_set1_epi16(1), dot))
    }

    /// Signed bytes times signed bytes, summed to 8 f32 lanes.
    #[inline(always)]
    unsafe fn mul_sum_i8(x: __m256i, y: __m256i) -> __m256 {
        let ax = _mm256_sign_epi8(x, x);
        let sy = _mm256_sign_epi8(y, x);
        mul_sum_us8(ax, sy)
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn q4_1_q8_1_impl(w: &[BlockQ4_1], x: &[BlockQ8_1]) -> f32 {
        let mut acc = _mm256_setzero_ps();
        let mut offsets = 0f32;
        for (w, x) in w.iter().zip(x) {
            let dw = f16_to_f32(w.d);
            let dx = f16_to_f32(x.d);
            // GCC contracts ggml's `summs += m * s` into an FMA.
            offsets = f16_to_f32(w.m).mul_add(f16_to_f32(x.s), offsets);
            let qw = nibbles(&w.qs);
            let qx = _mm256_loadu_si256(x.qs.as_ptr() as *const __m256i);
            acc = _mm256_fmadd_ps(_mm256_set1_ps(dw * dx), mul_sum_us8(qw, qx), acc);
        }
        hsum(acc) + offsets
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn q4_0_q8_0_impl(w: &[BlockQ4_0], x: &[BlockQ8_0]) -> f32 {
        let mut acc = _mm256_setzero_ps();
        for (w, x) in w.iter().zip(x) {
            let d = f16_to_f32(w.d) * f16_to_f32(x.d);
            let qw = _mm256_sub_epi8(nibbles(&w.qs), _mm256_set1_epi8(8));
            let qx = _mm256_loadu_si256(x.qs.as_ptr() as *const __m256i);
            acc = _mm256_fmadd_ps(_mm256_set1_ps(d), mul_sum_i8(qw, qx), acc);
        }
        hsum(acc)
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn q8_0_q8_0_impl(w: &[BlockQ8_0], x: &[BlockQ8_0]) -> f32 {
        let mut acc = _mm256_setzero_ps();
        for (w, x) in w.iter().zip(x) {
            let d = f16_to_f32(w.d) * f16_to_f32(x.d);
            let qw = _mm256_loadu_si256(w.qs.as_ptr() as *const __m256i);
            let qx = _mm256_loadu_si256(x.qs.as_ptr() as *const __m256i);
            acc = _mm256_fmadd_ps(_mm256_set1_ps(d), mul_sum_i8(qw, qx), acc);
        }
        hsum(acc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::blocks::{quantize_q8_0, quantize_q8_1};
    use half::f16;
    use rand::{Rng, SeedableRng};

    fn random_blocks(seed: u64, n: usize) -> (Vec<BlockQ4_0>, Vec<BlockQ4_1>, Vec<BlockQ8_0>) {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut qs = || {
            let mut q = [0u8; 16];
            rng.fill(&mut q[..]);
            q
        };
        let q40 = (0..n)
            .map(|i| BlockQ4_0 {
                d: f16::from_f32(0.01 * (i + 1) as f32),
                qs: qs(),
            })
            .collect();
        let q41 = (0..n)
            .map(|i| BlockQ4_1 {
                d: f16::from_f32(0.02 * (i + 1) as f32),
                m: f16::from_f32(-0.1 * i as f32),
                qs: qs(),
            })
            .collect();
        let x: Vec<f32> = {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed + 1);
            (0..n * 32).map(|_| rng.random_range(-3.0..3.0)).collect()
        };
        let mut q80 = vec![BlockQ8_0::default(); n];
        quantize_q8_0(&x, &mut q80);
        (q40, q41, q80)
    }

    #[test]
    fn best_kernels_agree_with_portable() {
        let best = best();
        for seed in 0..20 {
            let n = 1 + seed as usize * 3;
            let (q40, q41, q80) = random_blocks(seed, n);
            let x: Vec<f32> = q80
                .iter()
                .flat_map(|b| b.qs.map(|q| q as f32 * 0.05))
                .collect();
            let mut q81 = vec![BlockQ8_1::default(); n];
            quantize_q8_1(&x, &mut q81);
            let close = |a: f32, b: f32| (a - b).abs() <= 1e-3 * (1.0 + a.abs().max(b.abs()));
            let (a, b) = (
                (best.q4_0_q8_0)(&q40, &q80),
                (PORTABLE.q4_0_q8_0)(&q40, &q80),
            );
            assert!(close(a, b), "q4_0 {} vs portable: {a} != {b}", best.name);
            let (a, b) = (
                (best.q4_1_q8_1)(&q41, &q81),
                (PORTABLE.q4_1_q8_1)(&q41, &q81),
            );
            assert!(close(a, b), "q4_1 {} vs portable: {a} != {b}", best.name);
            let (a, b) = (
                (best.q8_0_q8_0)(&q80, &q80),
                (PORTABLE.q8_0_q8_0)(&q80, &q80),
            );
            assert!(close(a, b), "q8_0 {} vs portable: {a} != {b}", best.name);
        }
    }

    #[test]
    fn q4_1_dot_matches_dequantized_dot() {
        let (_, q41, _) = random_blocks(7, 4);
        let x: Vec<f32> = (0..128)
            .map(|i| ((i * 37 % 17) as f32 - 8.0) * 0.25)
            .collect();
        let mut q81 = vec![BlockQ8_1::default(); 4];
        quantize_q8_1(&x, &mut q81);
        let mut w = vec![0f32; 128];
        for (b, out) in q41.iter().zip(w.chunks_mut(32)) {
            crate::cpu::blocks::FromBytes::dequantize(b, out);
        }
        let exact: f32 = w.iter().zip(&x).map(|(a, b)| a * b).sum();
        let got = (PORTABLE.q4_1_q8_1)(&q41, &q81);
        assert!(
            (exact - got).abs() < 0.02 * (1.0 + exact.abs()),
            "{exact} vs {got}"
        );
    }
}

//! One weight row against several activation rows at once: the kernel of
//! batched decode. Each weight block is unpacked and its scales converted
//! once, then used for up to four activation rows held in registers, so a
//! batch of sequences costs far less than that many single dots.
//!
//! Every row's arithmetic is exactly that of the single-row kernels in
//! `dot` (same operations, same order), so a sequence's logits do not
//! depend on what else is in the batch.

use std::sync::OnceLock;

use super::blocks::{BlockQ4_0, BlockQ4_1, BlockQ8_0, BlockQ8_1};
use super::dot;

/// `out[t] = dot(w, x[t])` for the `out.len()` activation rows stored one
/// after another in `x` (each `w.len()` blocks long); `scales[i]` holds
/// block `x[i]`'s `d` and (Q8_1) `s` as f32, converted once per matmul
/// rather than once per weight row.
pub type RowsKernel<W, X> = fn(w: &[W], x: &[X], scales: &[[f32; 2]], out: &mut [f32]);

/// An activation block's scales as f32: `[d, s]` (`s` = 0 for Q8_0).
pub trait ActScales {
    fn scales(&self) -> [f32; 2];
}

impl ActScales for BlockQ8_0 {
    fn scales(&self) -> [f32; 2] {
        [self.d.to_f32(), 0.0]
    }
}

impl ActScales for BlockQ8_1 {
    fn scales(&self) -> [f32; 2] {
        [self.d.to_f32(), self.s.to_f32()]
    }
}

/// The multi-row kernels of one instruction set.
#[derive(Clone, Copy)]
pub struct RowKernels {
    pub name: &'static str,
    pub q4_0_q8_0: RowsKernel<BlockQ4_0, BlockQ8_0>,
    pub q4_1_q8_1: RowsKernel<BlockQ4_1, BlockQ8_1>,
    pub q8_0_q8_0: RowsKernel<BlockQ8_0, BlockQ8_0>,
}

/// One single-row dot per activation row (the reference).
pub const PORTABLE: RowKernels = RowKernels {
    name: "portable",
    q4_0_q8_0: |w, x, _, out| each_row(w, x, out, dot::best().q4_0_q8_0),
    q4_1_q8_1: |w, x, _, out| each_row(w, x, out, dot::best().q4_1_q8_1),
    q8_0_q8_0: |w, x, _, out| each_row(w, x, out, dot::best().q8_0_q8_0),
};

fn each_row<W, X>(w: &[W], x: &[X], out: &mut [f32], dot: fn(&[W], &[X]) -> f32) {
    for (o, xr) in out.iter_mut().zip(x.chunks_exact(w.len())) {
        *o = dot(w, xr);
    }
}

/// The fastest multi-row kernels that match [`dot::best`] bit for bit.
pub fn best() -> &'static RowKernels {
    static BEST: OnceLock<RowKernels> = OnceLock::new();
    BEST.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        if dot::best().name == "avx2" {
            if let Some(k) = avx2::detect() {
                return k;
            }
        }
        PORTABLE
    })
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    //! The operations of `dot::avx2`, four activation rows per weight block.
    use super::*;
    use crate::cpu::dot::avx2::{f16_to_f32, hsum, nibbles};
    use std::arch::x86_64::*;

    pub fn detect() -> Option<RowKernels> {
        let ok = is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
            && is_x86_feature_detected!("f16c");
        let vnni = is_x86_feature_detected!("avx512vnni") && is_x86_feature_detected!("avx512vl");
        match (ok, vnni) {
            (false, _) => None,
            (true, false) => Some(RowKernels {
                name: "avx2",
                q4_0_q8_0: PORTABLE.q4_0_q8_0,
                q4_1_q8_1,
                q8_0_q8_0,
            }),
            (true, true) => Some(RowKernels {
                name: "avx2+vnni",
                q4_0_q8_0: PORTABLE.q4_0_q8_0,
                q4_1_q8_1: q4_1_q8_1_vnni,
                q8_0_q8_0: q8_0_q8_0_vnni,
            }),
        }
    }

    // SAFETY: `detect` hands these out only on CPUs that also have
    // AVX512-VNNI and AVX512-VL.
    fn q4_1_q8_1_vnni(w: &[BlockQ4_1], x: &[BlockQ8_1], sc: &[[f32; 2]], out: &mut [f32]) {
        unsafe { q4_1_q8_1_vnni_impl(w, x, sc, out) }
    }
    fn q8_0_q8_0_vnni(w: &[BlockQ8_0], x: &[BlockQ8_0], sc: &[[f32; 2]], out: &mut [f32]) {
        unsafe { q8_0_q8_0_vnni_impl(w, x, sc, out) }
    }

    // SAFETY: `detect` hands these out only on CPUs with AVX2, FMA, F16C.
    fn q4_1_q8_1(w: &[BlockQ4_1], x: &[BlockQ8_1], sc: &[[f32; 2]], out: &mut [f32]) {
        unsafe { q4_1_q8_1_impl(w, x, sc, out) }
    }
    fn q8_0_q8_0(w: &[BlockQ8_0], x: &[BlockQ8_0], sc: &[[f32; 2]], out: &mut [f32]) {
        unsafe { q8_0_q8_0_impl(w, x, sc, out) }
    }

    /// Unsigned bytes times signed bytes, summed by fours into 8 f32
    /// lanes. VNNI's `vpdpbusd` gives exactly the integers of AVX2's
    /// `maddubs` + `madd` pair, in one instruction: the pair's 16-bit
    /// intermediate cannot saturate here (at most 15 x 127 x 2 for 4-bit
    /// weights, 128 x 127 x 2 for sign-folded Q8_0).
    #[inline(always)]
    unsafe fn mul_sum_us8<const VNNI: bool>(ax: __m256i, sy: __m256i) -> __m256 {
        if VNNI {
            _mm256_cvtepi32_ps(_mm256_dpbusd_epi32(_mm256_setzero_si256(), ax, sy))
        } else {
            let dot = _mm256_maddubs_epi16(ax, sy);
            _mm256_cvtepi32_ps(_mm256_madd_epi16(_mm256_set1_epi16(1), dot))
        }
    }

    /// Rows per group: 8 accumulators plus the weight block fit the 16
    /// AVX2 registers.
    const R: usize = 8;

    /// Splits `out` into groups of `R` rows (and a remainder).
    macro_rules! by_groups {
        ($group:ident, $vnni:expr, $w:expr, $x:expr, $sc:expr, $out:expr) => {{
            let (w, x, sc, out) = ($w, $x, $sc, $out);
            let nb = w.len();
            let mut t = 0;
            while out.len() - t >= R {
                let (x, sc) = (&x[t * nb..(t + R) * nb], &sc[t * nb..(t + R) * nb]);
                $group::<R, $vnni>(w, x, sc, &mut out[t..t + R]);
                t += R;
            }
            let (x, sc, out) = (&x[t * nb..], &sc[t * nb..], &mut out[t..]);
            match out.len() {
                1 => $group::<1, $vnni>(w, x, sc, out),
                2 => $group::<2, $vnni>(w, x, sc, out),
                3 => $group::<3, $vnni>(w, x, sc, out),
                4 => $group::<4, $vnni>(w, x, sc, out),
                5 => $group::<5, $vnni>(w, x, sc, out),
                6 => $group::<6, $vnni>(w, x, sc, out),
                7 => $group::<7, $vnni>(w, x, sc, out),
                _ => {}
            }
        }};
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn q4_1_q8_1_impl(w: &[BlockQ4_1], x: &[BlockQ8_1], sc: &[[f32; 2]], out: &mut [f32]) {
        by_groups!(q4_1_group, false, w, x, sc, out)
    }

    #[inline(always)]
    unsafe fn q4_1_group<const N: usize, const VNNI: bool>(
        w: &[BlockQ4_1],
        x: &[BlockQ8_1],
        sc: &[[f32; 2]],
        out: &mut [f32],
    ) {
        let nb = w.len();
        let mut acc = [_mm256_setzero_ps(); N];
        let mut offsets = [0f32; N];
        for (b, wb) in w.iter().enumerate() {
            let dw = f16_to_f32(wb.d);
            let mw = f16_to_f32(wb.m);
            let qw = nibbles(&wb.qs);
            for i in 0..N {
                let xb = x.get_unchecked(i * nb + b);
                let [dx, sx] = *sc.get_unchecked(i * nb + b);
                offsets[i] = mw.mul_add(sx, offsets[i]);
                let qx = _mm256_loadu_si256(xb.qs.as_ptr() as *const __m256i);
                acc[i] =
                    _mm256_fmadd_ps(_mm256_set1_ps(dw * dx), mul_sum_us8::<VNNI>(qw, qx), acc[i]);
            }
        }
        for i in 0..N {
            out[i] = hsum(acc[i]) + offsets[i];
        }
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn q8_0_q8_0_impl(w: &[BlockQ8_0], x: &[BlockQ8_0], sc: &[[f32; 2]], out: &mut [f32]) {
        by_groups!(q8_0_group, false, w, x, sc, out)
    }

    #[inline(always)]
    unsafe fn q8_0_group<const N: usize, const VNNI: bool>(
        w: &[BlockQ8_0],
        x: &[BlockQ8_0],
        sc: &[[f32; 2]],
        out: &mut [f32],
    ) {
        let nb = w.len();
        let mut acc = [_mm256_setzero_ps(); N];
        for (b, wb) in w.iter().enumerate() {
            let dw = f16_to_f32(wb.d);
            let qw = _mm256_loadu_si256(wb.qs.as_ptr() as *const __m256i);
            // The sign trick of `mul_sum_i8`: |w| once, w's signs on each x.
            let aw = _mm256_sign_epi8(qw, qw);
            for (i, acc) in acc.iter_mut().enumerate() {
                let xb = x.get_unchecked(i * nb + b);
                let d = dw * sc.get_unchecked(i * nb + b)[0];
                let qx = _mm256_loadu_si256(xb.qs.as_ptr() as *const __m256i);
                let sx = _mm256_sign_epi8(qx, qw);
                *acc = _mm256_fmadd_ps(_mm256_set1_ps(d), mul_sum_us8::<VNNI>(aw, sx), *acc);
            }
        }
        for i in 0..N {
            out[i] = hsum(acc[i]);
        }
    }

    #[target_feature(enable = "avx2,fma,f16c,avx512vnni,avx512vl")]
    unsafe fn q4_1_q8_1_vnni_impl(
        w: &[BlockQ4_1],
        x: &[BlockQ8_1],
        sc: &[[f32; 2]],
        out: &mut [f32],
    ) {
        by_groups!(q4_1_group, true, w, x, sc, out)
    }

    #[target_feature(enable = "avx2,fma,f16c,avx512vnni,avx512vl")]
    unsafe fn q8_0_q8_0_vnni_impl(
        w: &[BlockQ8_0],
        x: &[BlockQ8_0],
        sc: &[[f32; 2]],
        out: &mut [f32],
    ) {
        by_groups!(q8_0_group, true, w, x, sc, out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::blocks::{quantize_q8_0, quantize_q8_1};
    use half::f16;
    use rand::{Rng, SeedableRng};

    #[test]
    fn every_row_equals_the_single_row_kernel_bit_for_bit() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        for (nb, rows) in [(1, 1), (18, 3), (18, 8), (48, 7), (5, 19), (3, 16)] {
            let w41: Vec<BlockQ4_1> = (0..nb)
                .map(|i| {
                    let mut qs = [0u8; 16];
                    rng.fill(&mut qs[..]);
                    BlockQ4_1 {
                        d: f16::from_f32(0.01 + 0.003 * i as f32),
                        m: f16::from_f32(-0.05 * i as f32),
                        qs,
                    }
                })
                .collect();
            let xf: Vec<f32> = (0..rows * nb * 32)
                .map(|_| rng.random_range(-4.0..4.0))
                .collect();
            let wf: Vec<f32> = (0..nb * 32).map(|_| rng.random_range(-1.0..1.0)).collect();
            let mut x81 = vec![BlockQ8_1::default(); rows * nb];
            let mut x80 = vec![BlockQ8_0::default(); rows * nb];
            let mut w80 = vec![BlockQ8_0::default(); nb];
            for r in 0..rows {
                let xr = &xf[r * nb * 32..(r + 1) * nb * 32];
                quantize_q8_1(xr, &mut x81[r * nb..(r + 1) * nb]);
                quantize_q8_0(xr, &mut x80[r * nb..(r + 1) * nb]);
            }
            quantize_q8_0(&wf, &mut w80);
            let single = dot::best();
            let mut out = vec![0f32; rows];
            let sc81: Vec<[f32; 2]> = x81.iter().map(ActScales::scales).collect();
            let sc80: Vec<[f32; 2]> = x80.iter().map(ActScales::scales).collect();
            (best().q4_1_q8_1)(&w41, &x81, &sc81, &mut out);
            for r in 0..rows {
                let want = (single.q4_1_q8_1)(&w41, &x81[r * nb..(r + 1) * nb]);
                assert_eq!(out[r].to_bits(), want.to_bits(), "q4_1 nb {nb} row {r}");
            }
            (best().q8_0_q8_0)(&w80, &x80, &sc80, &mut out);
            for r in 0..rows {
                let want = (single.q8_0_q8_0)(&w80, &x80[r * nb..(r + 1) * nb]);
                assert_eq!(out[r].to_bits(), want.to_bits(), "q8_0 nb {nb} row {r}");
            }
        }
    }
}

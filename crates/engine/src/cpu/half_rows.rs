//! F16 and BF16 weights against a batch of activation rows, as llama.cpp's
//! CPU backend computes them on AVX512 (llamafile's `tinyBLAS`): the
//! activations rounded once to the weights' type (ggml's `vec_dot_type`),
//! then per (weight row, activation row) 16 f32 lanes, lane l summing the
//! products of columns `16i + l` with one FMA each, reduced as
//! `_mm512_reduce_add_ps` (halves added, then quarters, eighths, the last
//! two lanes). On CPUs with AVX512-BF16, ggml multiplies BF16 with
//! `vdpbf16ps` instead, 32 columns a step (lane l: columns `32i + 2l` and
//! `32i + 2l + 1`, each product added with its own rounding, the odd one
//! first), and so does this module there.
//!
//! On CPUs with AVX2 but not AVX512, ggml's tinyBLAS runs 8 lanes (lane l
//! summing columns `8i + l`, FMAs for F16 and BF16 alike) reduced as its
//! `hsum(__m256)` ([`reduce8`]), and so does this module there.
//!
//! Tiles of 4 weight rows by up to 6 activation rows (24 accumulators;
//! with AVX2's 16 registers, 2 by 6 or 3 by 4) convert each weight vector
//! once per tile and load each activation vector once per tile's rows. On
//! AVX512 blocks of activation rows stay in L2 while a chunk of weight rows
//! passes over them; on AVX2 blocks of weight rows stay in L2 while each
//! tile's activation rows, held in L1, pass over them.

use half::{bf16, f16};

use super::dot_rows::OutRows;
use super::with_const;

/// A 16-bit float weight type.
pub trait Half: Copy + Send + Sync + 'static {
    /// BF16 (widened by a shift) rather than F16 (`vcvtph2ps`).
    const BF16: bool;
    fn to_f32(self) -> f32;
    /// `v` rounded to this type (ggml's `GGML_FP32_TO_FP16` / `_BF16`:
    /// to nearest, ties to even).
    fn round(v: f32) -> f32;
}

impl Half for f16 {
    const BF16: bool = false;
    fn to_f32(self) -> f32 {
        f16::to_f32(self)
    }
    fn round(v: f32) -> f32 {
        f16::from_f32(v).to_f32()
    }
}

impl Half for bf16 {
    const BF16: bool = true;
    fn to_f32(self) -> f32 {
        bf16::to_f32(self)
    }
    fn round(v: f32) -> f32 {
        bf16::from_f32(v).to_f32()
    }
}

/// Columns per accumulator step (lanes).
pub(super) const LANES: usize = 16;

/// ggml's per-pair formula as scalar code: the reference of the kernels
/// and the kernel on CPUs without AVX512. `x` is already rounded.
pub fn dot_ggml<H: Half>(w: &[H], x: &[f32]) -> f32 {
    let mut lanes = [0f32; LANES];
    for (i, (w, x)) in w.iter().zip(x).enumerate() {
        lanes[i % LANES] = w.to_f32().mul_add(*x, lanes[i % LANES]);
    }
    reduce16(lanes)
}

/// tinyBLAS's per-pair formula on AVX2 (8 lanes) as scalar code: the
/// reference of the AVX2 kernels. `x` is already rounded.
pub fn dot_ggml8<H: Half>(w: &[H], x: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    for (i, (w, x)) in w.iter().zip(x).enumerate() {
        lanes[i % 8] = w.to_f32().mul_add(*x, lanes[i % 8]);
    }
    reduce8(lanes)
}

/// tinyBLAS's `hsum(__m256)`: halves added, then `movehl` (lanes 0+2 and
/// 1+3), then the last two.
pub(super) fn reduce8(a: [f32; 8]) -> f32 {
    let h: [f32; 4] = std::array::from_fn(|i| a[i + 4] + a[i]);
    (h[0] + h[2]) + (h[1] + h[3])
}

/// The per-pair formula llama.cpp, built for this CPU, uses from 2
/// activation rows on, and which [`rows`] computes here.
pub fn dot_here<H: Half>() -> fn(&[H], &[f32]) -> f32 {
    if kernels() == Kernels::Avx2 {
        return dot_ggml8::<H>;
    }
    if H::BF16 && bf16_dot_pairs() {
        // SAFETY: `H` is `bf16` (`H::BF16`); the two share their layout.
        return |w, x| {
            dot_ggml_dpbf16(
                unsafe { std::slice::from_raw_parts(w.as_ptr().cast(), w.len()) },
                x,
            )
        };
    }
    dot_ggml::<H>
}

/// [`dot_ggml`] for BF16 on CPUs with AVX512-BF16: `vdpbf16ps` as scalar
/// code (bf16 products are exact in f32; then two rounded additions).
pub fn dot_ggml_dpbf16(w: &[bf16], x: &[f32]) -> f32 {
    let mut lanes = [0f32; LANES];
    for (i, (w, x)) in w.chunks(2).zip(x.chunks(2)).enumerate() {
        lanes[i % LANES] = dpbf16_pair(lanes[i % LANES], w, x);
    }
    reduce16(lanes)
}

/// One lane of `vdpbf16ps`: `acc` plus the products of a pair of columns
/// (or the one column left at a row's end), the odd one added first.
pub(super) fn dpbf16_pair(mut acc: f32, w: &[bf16], x: &[f32]) -> f32 {
    if w.len() == 2 {
        acc += w[1].to_f32() * x[1];
    }
    acc + w[0].to_f32() * x[0]
}

/// `_mm512_reduce_add_ps`'s order on 16 lanes.
pub(super) fn reduce16(a: [f32; LANES]) -> f32 {
    let h: [f32; 8] = std::array::from_fn(|i| a[i + 8] + a[i]);
    let q: [f32; 4] = std::array::from_fn(|i| h[i + 4] + h[i]);
    (q[0] + q[2]) + (q[1] + q[3])
}

/// `x` (rows of `cols` values) rounded to `H`, as f32.
pub fn round_rows<H: Half>(x: &[f32]) -> Vec<f32> {
    let mut out = Vec::with_capacity(x.len());
    match kernels() {
        // SAFETY: `kernels` checked the CPU.
        #[cfg(target_arch = "x86_64")]
        Kernels::Avx512 => unsafe { avx512::round_into(x, &mut out, H::BF16) },
        #[cfg(target_arch = "x86_64")]
        Kernels::Avx2 => unsafe { avx2::round_into(x, &mut out, H::BF16) },
        _ => {}
    }
    out.extend(x[out.len()..].iter().map(|&v| H::round(v)));
    out
}

/// `dot(w[r], x[t])` into `out` at (t, r) for the weight rows in `w` and
/// the activation rows in `x` (rounded by [`round_rows`]), `cols` each.
///
/// # Safety
/// As `dot_rows::RowsKernel`: `out` is valid for writes at every (t, r)
/// and nobody else touches those places meanwhile.
pub unsafe fn rows<H: Half>(w: &[H], x: &[f32], cols: usize, out: OutRows) {
    // llama.cpp takes this path from 2 activation rows on.
    if x.len() == cols {
        return super::half_vec::row(w, x, out);
    }
    match kernels() {
        #[cfg(target_arch = "x86_64")]
        Kernels::Avx512 => avx512::rows(w, x, cols, out),
        #[cfg(target_arch = "x86_64")]
        Kernels::Avx2 => avx2::rows(w, x, cols, out),
        _ => {
            for (r, wr) in w.chunks_exact(cols).enumerate() {
                for (t, xr) in x.chunks_exact(cols).enumerate() {
                    out.write(t, r, dot_ggml(wr, xr));
                }
            }
        }
    }
}

/// The kernels that run here, for this module and `half_vec`: the
/// formulas, the rounding and the dispatch all follow this one choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kernels {
    /// AVX512 (F, BW, VL) with FMA and F16C: ggml's 16-lane order.
    Avx512,
    /// AVX2 with FMA and F16C, no AVX512: ggml's 8-lane order.
    Avx2,
    /// Scalar code in ggml's 16-lane order.
    Portable,
}

/// See [`Kernels`].
pub(super) fn kernels() -> Kernels {
    #[cfg(target_arch = "x86_64")]
    if avx512::available() {
        return Kernels::Avx512;
    } else if avx2::available() {
        return Kernels::Avx2;
    }
    Kernels::Portable
}

/// Whether this CPU can run the AVX512 kernels (of this module and
/// `half_vec`): the tests call them directly.
#[cfg(all(test, target_arch = "x86_64"))]
pub(super) fn avx512_available() -> bool {
    avx512::available()
}

/// Whether this CPU can run the AVX2 kernels, also where the AVX512 ones
/// run instead: the tests call them directly.
#[cfg(all(test, target_arch = "x86_64"))]
pub(super) fn avx2_available() -> bool {
    avx2::available()
}

/// [`reduce16`] on a vector.
///
/// # Safety
/// On a CPU with AVX512 (F, BW, VL), FMA and F16C.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(super) unsafe fn reduce_vector(a: std::arch::x86_64::__m512) -> f32 {
    avx512::reduce(a)
}

/// [`reduce8`] on a vector.
///
/// # Safety
/// On a CPU with AVX2, FMA and F16C.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(super) unsafe fn reduce8_vector(a: std::arch::x86_64::__m256) -> f32 {
    avx2::reduce(a)
}

/// Whether BF16 takes the `vdpbf16ps` form ([`dot_ggml_dpbf16`]) here.
pub fn bf16_dot_pairs() -> bool {
    #[cfg(target_arch = "x86_64")]
    return avx512::available() && avx512::dpbf16();
    #[allow(unreachable_code)]
    false
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    // Tiles index their accumulators by (weight row, activation row); the
    // const-bounded loops unroll completely.
    #![allow(clippy::needless_range_loop)]
    use super::*;
    use std::arch::x86_64::*;
    use std::sync::OnceLock;

    /// Handing out `rows` only where this holds is what makes calling its
    /// `target_feature` body sound.
    pub fn available() -> bool {
        static OK: OnceLock<bool> = OnceLock::new();
        *OK.get_or_init(|| {
            std::env::var("SERVEBENCH_KERNELS").as_deref() != Ok("portable")
                && is_x86_feature_detected!("avx512f")
                && is_x86_feature_detected!("avx512bw")
                && is_x86_feature_detected!("avx512vl")
                && is_x86_feature_detected!("f16c")
                && is_x86_feature_detected!("fma")
        })
    }

    /// AVX512-BF16 as well (`vdpbf16ps`).
    pub fn dpbf16() -> bool {
        static OK: OnceLock<bool> = OnceLock::new();
        *OK.get_or_init(|| is_x86_feature_detected!("avx512bf16"))
    }

    /// Appends `x` rounded to F16 or BF16 to the empty `out` (with room
    /// for `x`), 16 at a time as far as whole vectors go. F16: `vcvtps2ph` to nearest
    /// (ggml's `ggml_cpu_fp32_to_fp16`). BF16: ggml's integer formula (to
    /// nearest, ties to even; NaN kept quiet), which `vcvtneps2bf16` is not
    /// (it flushes subnormals).
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
    pub unsafe fn round_into(x: &[f32], out: &mut Vec<f32>, bf16: bool) {
        let whole = x.len() - x.len() % LANES;
        assert!(out.is_empty() && out.capacity() >= whole);
        let dst = out.as_mut_ptr();
        for (i, v) in x[..whole].chunks_exact(LANES).enumerate() {
            let p = v.as_ptr();
            let r = if bf16 {
                let u = _mm512_castps_si512(_mm512_loadu_ps(p));
                let odd = _mm512_and_si512(_mm512_srli_epi32::<16>(u), _mm512_set1_epi32(1));
                let up = _mm512_add_epi32(u, _mm512_add_epi32(odd, _mm512_set1_epi32(0x7fff)));
                let magnitude = _mm512_and_si512(u, _mm512_set1_epi32(0x7fff_ffff));
                let nan = _mm512_cmpgt_epu32_mask(magnitude, _mm512_set1_epi32(0x7f80_0000));
                let quiet = _mm512_or_si512(u, _mm512_set1_epi32(0x0040_0000));
                let bits = _mm512_mask_blend_epi32(nan, up, quiet);
                let top = _mm512_and_si512(bits, _mm512_set1_epi32(0xffff_0000u32 as i32));
                _mm512_castsi512_ps(top)
            } else {
                let h = _mm512_cvtps_ph::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
                    _mm512_loadu_ps(p),
                );
                _mm512_cvtph_ps(h)
            };
            _mm512_storeu_ps(dst.add(i * LANES), r);
        }
        out.set_len(whole);
    }

    /// Activation rows per block: 48 rows of 576 f32 (~110 KB) stay in L2
    /// while a chunk's weight rows pass over them.
    const X_BLOCK: usize = 48;

    /// # Safety
    /// As [`super::rows`], on a CPU where [`available`] holds.
    pub unsafe fn rows<H: Half>(w: &[H], x: &[f32], cols: usize, out: OutRows) {
        // Both types are 16-bit floats (`half`'s are `repr(transparent)`
        // over `u16`).
        let bits = std::slice::from_raw_parts(w.as_ptr() as *const u16, w.len());
        if H::BF16 && dpbf16() {
            rows_dpbf16(bits, x, cols, out)
        } else if H::BF16 {
            rows_impl::<Bf16>(bits, x, cols, out)
        } else {
            rows_impl::<F16>(bits, x, cols, out)
        }
    }

    /// How 16 stored values become 16 f32.
    trait Widen {
        unsafe fn widen(v: __m256i) -> __m512;
    }
    struct F16;
    struct Bf16;
    impl Widen for F16 {
        #[inline(always)]
        unsafe fn widen(v: __m256i) -> __m512 {
            _mm512_cvtph_ps(v)
        }
    }
    impl Widen for Bf16 {
        #[inline(always)]
        unsafe fn widen(v: __m256i) -> __m512 {
            _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(v)))
        }
    }

    /// One way of multiplying: `STEP` columns of a weight row and of an
    /// activation row loaded (the last, partial step masked: zeros add
    /// nothing) and multiplied into 16 lanes.
    trait Form {
        const STEP: usize;
        type W: Copy;
        type X: Copy;
        /// How the activations are stored for this form.
        type Stored: Copy;
        /// `mask`: which of the `STEP` columns exist.
        unsafe fn weights(p: *const u16, mask: u32) -> Self::W;
        unsafe fn acts(p: *const Self::Stored, mask: u32) -> Self::X;
        unsafe fn madd(acc: __m512, w: Self::W, x: Self::X) -> __m512;
    }

    /// 16 columns widened to f32, one FMA each.
    struct Fma<T>(std::marker::PhantomData<T>);
    /// 32 columns as bf16 pairs, `vdpbf16ps`.
    struct DotPairs;

    impl<T: Widen> Form for Fma<T> {
        const STEP: usize = LANES;
        type W = __m512;
        type X = __m512;
        type Stored = f32;
        #[inline(always)]
        unsafe fn weights(p: *const u16, mask: u32) -> __m512 {
            T::widen(_mm256_maskz_loadu_epi16(mask as u16, p as *const i16))
        }
        #[inline(always)]
        unsafe fn acts(p: *const f32, mask: u32) -> __m512 {
            _mm512_maskz_loadu_ps(mask as u16, p)
        }
        #[inline(always)]
        unsafe fn madd(acc: __m512, w: __m512, x: __m512) -> __m512 {
            _mm512_fmadd_ps(w, x, acc)
        }
    }

    impl Form for DotPairs {
        const STEP: usize = 2 * LANES;
        type W = __m512bh;
        type X = __m512bh;
        /// bf16 bits, packed once per call ([`bf16_bits`]).
        type Stored = u16;
        #[inline(always)]
        unsafe fn weights(p: *const u16, mask: u32) -> __m512bh {
            std::mem::transmute::<__m512i, __m512bh>(_mm512_maskz_loadu_epi16(
                mask,
                p as *const i16,
            ))
        }
        #[inline(always)]
        unsafe fn acts(p: *const u16, mask: u32) -> __m512bh {
            Self::weights(p, mask)
        }
        #[inline(always)]
        unsafe fn madd(acc: __m512, w: __m512bh, x: __m512bh) -> __m512 {
            _mm512_dpbf16_ps(acc, w, x)
        }
    }

    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
    unsafe fn rows_impl<T: Widen>(w: &[u16], x: &[f32], cols: usize, out: OutRows) {
        blocks::<Fma<T>>(w, x, cols, out)
    }

    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512bf16")]
    unsafe fn rows_dpbf16(w: &[u16], x: &[f32], cols: usize, out: OutRows) {
        blocks::<DotPairs>(w, &bf16_bits(x), cols, out)
    }

    /// The activations (bf16 values already) as bf16 bits, exactly: each
    /// converted once per call rather than once per tile of 4 weight rows
    /// (measured, `matmul_bench` one thread, BF16 1536x576 at batch 512:
    /// ~60 -> ~84 GMAC/s).
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
    unsafe fn bf16_bits(x: &[f32]) -> Vec<u16> {
        let mut out: Vec<u16> = Vec::with_capacity(x.len());
        let whole = x.len() - x.len() % LANES;
        for (i, v) in x[..whole].chunks_exact(LANES).enumerate() {
            let bits = _mm512_srli_epi32::<16>(_mm512_castps_si512(_mm512_loadu_ps(v.as_ptr())));
            _mm256_storeu_si256(
                out.as_mut_ptr().add(i * LANES).cast(),
                _mm512_cvtepi32_epi16(bits),
            );
        }
        out.set_len(whole);
        out.extend(x[whole..].iter().map(|v| (v.to_bits() >> 16) as u16));
        out
    }

    /// Covers (weight rows) x (activation rows) with tiles of up to 4 by 6,
    /// activation rows in blocks of [`X_BLOCK`].
    #[inline(always)]
    unsafe fn blocks<F: Form>(w: &[u16], x: &[F::Stored], cols: usize, out: OutRows) {
        let (rows, n) = (w.len() / cols, x.len() / cols);
        let mut t0 = 0;
        while t0 < n {
            let tn = (n - t0).min(X_BLOCK);
            let mut r = 0;
            while r < rows {
                let rm = (rows - r).min(4);
                let mut t = t0;
                while t < t0 + tn {
                    let rn = (t0 + tn - t).min(6);
                    let (wt, xt, o) = (&w[r * cols..], &x[t * cols..], out.at(t, r));
                    with_const!(rm, M in [4, 3, 2, 1] => {
                        with_const!(rn, N in [6, 5, 4, 3, 2, 1] => {
                            tile::<F, M, N>(wt, xt, cols, o)
                        })
                    });
                    t += rn;
                }
                r += rm;
            }
            t0 += tn;
        }
    }

    /// RM weight rows by RN activation rows, the products as `F` forms
    /// them.
    #[inline(always)]
    unsafe fn tile<F: Form, const RM: usize, const RN: usize>(
        w: &[u16],
        x: &[F::Stored],
        cols: usize,
        out: OutRows,
    ) {
        let mut acc = [[_mm512_setzero_ps(); RN]; RM];
        // A macro, not a closure: a closure does not inherit the caller's
        // target features, and where the compiler keeps it out of line
        // every intrinsic in it becomes a call (10x slower).
        macro_rules! step {
            ($c:expr, $mask:expr) => {
                let (c, mask): (usize, u32) = ($c, $mask);
                let mut wv = [F::weights(w.as_ptr().add(c), mask); RM];
                for i in 1..RM {
                    wv[i] = F::weights(w.as_ptr().add(i * cols + c), mask);
                }
                for j in 0..RN {
                    let xv = F::acts(x.as_ptr().add(j * cols + c), mask);
                    for i in 0..RM {
                        acc[i][j] = F::madd(acc[i][j], wv[i], xv);
                    }
                }
            };
        }
        // Whole steps with constant masks (the loads then need none), the
        // partial one after them.
        let whole = cols - cols % F::STEP;
        for c in (0..whole).step_by(F::STEP) {
            step!(c, !0);
        }
        if whole < cols {
            step!(whole, (1u32 << (cols - whole)) - 1);
        }
        for i in 0..RM {
            for j in 0..RN {
                out.write(j, i, reduce(acc[i][j]));
            }
        }
    }

    /// [`reduce16`] on a vector.
    #[inline(always)]
    pub(super) unsafe fn reduce(a: __m512) -> f32 {
        let high = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(a)));
        let h = _mm256_add_ps(high, _mm512_castps512_ps256(a));
        let q = _mm_add_ps(_mm256_extractf128_ps::<1>(h), _mm256_castps256_ps128(h));
        let p = _mm_add_ps(q, _mm_movehl_ps(q, q));
        _mm_cvtss_f32(_mm_add_ss(p, _mm_movehdup_ps(p)))
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    // Tiles index their accumulators by (weight row, activation row); the
    // const-bounded loops unroll completely.
    #![allow(clippy::needless_range_loop)]
    use super::*;
    use crate::cpu::L2_WEIGHT_BLOCK;
    use std::arch::x86_64::*;
    use std::sync::OnceLock;

    /// Columns per step (f32 lanes of a 256-bit vector).
    const W: usize = 8;

    /// Handing out `rows` only where this holds is what makes calling its
    /// `target_feature` body sound.
    pub fn available() -> bool {
        static OK: OnceLock<bool> = OnceLock::new();
        *OK.get_or_init(|| {
            std::env::var("SERVEBENCH_KERNELS").as_deref() != Ok("portable")
                && crate::cpu::dot::avx2::has_avx2_fma_f16c()
        })
    }

    /// As `avx512::round_into`, 8 at a time.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn round_into(x: &[f32], out: &mut Vec<f32>, bf16: bool) {
        let whole = x.len() - x.len() % W;
        assert!(out.is_empty() && out.capacity() >= whole);
        let dst = out.as_mut_ptr();
        for (i, v) in x[..whole].chunks_exact(W).enumerate() {
            let p = v.as_ptr();
            let r = if bf16 {
                let u = _mm256_castps_si256(_mm256_loadu_ps(p));
                let odd = _mm256_and_si256(_mm256_srli_epi32::<16>(u), _mm256_set1_epi32(1));
                let up = _mm256_add_epi32(u, _mm256_add_epi32(odd, _mm256_set1_epi32(0x7fff)));
                // Without the sign the magnitudes compare right as signed.
                let magnitude = _mm256_and_si256(u, _mm256_set1_epi32(0x7fff_ffff));
                let nan = _mm256_cmpgt_epi32(magnitude, _mm256_set1_epi32(0x7f80_0000));
                let quiet = _mm256_or_si256(u, _mm256_set1_epi32(0x0040_0000));
                let bits = _mm256_blendv_epi8(up, quiet, nan);
                let top = _mm256_and_si256(bits, _mm256_set1_epi32(0xffff_0000u32 as i32));
                _mm256_castsi256_ps(top)
            } else {
                let h = _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(_mm256_loadu_ps(p));
                _mm256_cvtph_ps(h)
            };
            _mm256_storeu_ps(dst.add(i * W), r);
        }
        out.set_len(whole);
    }

    /// # Safety
    /// As [`super::rows`], on a CPU where [`available`] holds.
    pub unsafe fn rows<H: Half>(w: &[H], x: &[f32], cols: usize, out: OutRows) {
        // Both types are 16-bit floats (`half`'s are `repr(transparent)`
        // over `u16`).
        let bits = std::slice::from_raw_parts(w.as_ptr() as *const u16, w.len());
        if H::BF16 {
            blocks::<true>(bits, x, cols, out)
        } else {
            blocks::<false>(bits, x, cols, out)
        }
    }

    /// 8 stored values at `p` as 8 f32 (exact for both types).
    #[inline(always)]
    unsafe fn widen<const BF16: bool>(p: *const u16) -> __m256 {
        let v = _mm_loadu_si128(p.cast());
        if BF16 {
            _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(v)))
        } else {
            _mm256_cvtph_ps(v)
        }
    }

    /// The most bytes a tile's activation rows may take: half an L1, so
    /// they stay there while the block's weight rows stream past.
    const X_TILE_BYTES: usize = 16 << 10;

    /// Covers (weight rows) x (activation rows) with tiles: weight rows in
    /// blocks of [`L2_WEIGHT_BLOCK`] bytes, each tile of activation rows held in
    /// L1 while it meets every row of a block. Activation rows stream from
    /// L1 and weights from L2 (4 bytes a step where the transposed order,
    /// weights in L1, read 192 from L2: measured `matmul_bench`, one
    /// thread, batch 512, AMD Zen 3, F16 1536x576 ~31 -> ~38 GMAC/s,
    /// 576x1536 ~30 -> ~36). 2 x 6 tiles (12 accumulators, 2 weight vectors
    /// and 1 activation vector of AVX2's 16 registers) where 6 activation
    /// rows fit in [`X_TILE_BYTES`], 3 x 4 where they do not.
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn blocks<const BF16: bool>(w: &[u16], x: &[f32], cols: usize, out: OutRows) {
        if 6 * cols * size_of::<f32>() <= X_TILE_BYTES {
            blocks_by::<BF16, 2, 6>(w, x, cols, out)
        } else {
            blocks_by::<BF16, 3, 4>(w, x, cols, out)
        }
    }

    /// [`blocks`] with tiles of up to RM by RN.
    #[inline(always)]
    unsafe fn blocks_by<const BF16: bool, const RM: usize, const RN: usize>(
        w: &[u16],
        x: &[f32],
        cols: usize,
        out: OutRows,
    ) {
        let (rows, n) = (w.len() / cols, x.len() / cols);
        let block = (L2_WEIGHT_BLOCK / (2 * cols)).max(1).next_multiple_of(RM);
        for r0 in (0..rows).step_by(block) {
            let r_end = rows.min(r0 + block);
            let mut t = 0;
            while t < n {
                let rn = (n - t).min(RN);
                let mut r = r0;
                while r < r_end {
                    let rm = (r_end - r).min(RM);
                    let (wt, xt, o) = (&w[r * cols..], &x[t * cols..], out.at(t, r));
                    with_const!(rm, M in [3, 2, 1] => {
                        with_const!(rn, N in [6, 5, 4, 3, 2, 1] => {
                            tile::<BF16, M, N>(wt, xt, cols, o)
                        })
                    });
                    r += rm;
                }
                t += rn;
            }
        }
    }

    /// RM weight rows by RN activation rows, one FMA per column and pair;
    /// the columns past the last whole step as one more step padded with
    /// zeros (their products add nothing).
    #[inline(always)]
    unsafe fn tile<const BF16: bool, const RM: usize, const RN: usize>(
        w: &[u16],
        x: &[f32],
        cols: usize,
        out: OutRows,
    ) {
        let mut acc = [[_mm256_setzero_ps(); RN]; RM];
        // A macro, not a closure: see `avx512::tile`.
        macro_rules! step {
            ($w:expr, $w_stride:expr, $x:expr, $x_stride:expr) => {
                let (wp, xp): (*const u16, *const f32) = ($w, $x);
                let mut wv = [widen::<BF16>(wp); RM];
                for i in 1..RM {
                    wv[i] = widen::<BF16>(wp.add(i * $w_stride));
                }
                for j in 0..RN {
                    let xv = _mm256_loadu_ps(xp.add(j * $x_stride));
                    for i in 0..RM {
                        acc[i][j] = _mm256_fmadd_ps(wv[i], xv, acc[i][j]);
                    }
                }
            };
        }
        let whole = cols - cols % W;
        for c in (0..whole).step_by(W) {
            step!(w.as_ptr().add(c), cols, x.as_ptr().add(c), cols);
        }
        if whole < cols {
            let left = cols - whole;
            let mut wt = [[0u16; W]; RM];
            let mut xt = [[0f32; W]; RN];
            for i in 0..RM {
                wt[i][..left].copy_from_slice(&w[i * cols + whole..(i + 1) * cols]);
            }
            for j in 0..RN {
                xt[j][..left].copy_from_slice(&x[j * cols + whole..(j + 1) * cols]);
            }
            step!(wt.as_ptr().cast(), W, xt.as_ptr().cast(), W);
        }
        for i in 0..RM {
            for j in 0..RN {
                out.write(j, i, reduce(acc[i][j]));
            }
        }
    }

    /// [`reduce8`] on a vector (tinyBLAS's `hsum(__m256)`).
    #[inline(always)]
    pub(super) unsafe fn reduce(a: __m256) -> f32 {
        let h = _mm_add_ps(_mm256_extractf128_ps::<1>(a), _mm256_castps256_ps128(a));
        let p = _mm_add_ps(h, _mm_movehl_ps(h, h));
        _mm_cvtss_f32(_mm_add_ss(p, _mm_movehdup_ps(p)))
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::cpu::{Matrix, Role};
    use candle_core::quantized::GgmlDType;
    use rand::{Rng, SeedableRng};

    /// A random F16 or BF16 `[rows, cols]` matrix: its file bytes, the
    /// loaded matrix and its values.
    pub(in crate::cpu) fn random_matrix(
        rng: &mut impl Rng,
        dtype: GgmlDType,
        rows: usize,
        cols: usize,
    ) -> (Vec<u8>, Matrix, Vec<f32>) {
        let bytes: Vec<u8> = (0..rows * cols)
            .flat_map(|_| {
                let v: f32 = rng.random_range(-0.5..0.5);
                match dtype {
                    GgmlDType::F16 => f16::from_f32(v).to_le_bytes(),
                    _ => bf16::from_f32(v).to_le_bytes(),
                }
            })
            .collect();
        let m = Matrix::from_bytes("w", dtype, rows, cols, &bytes, Role::Layer).unwrap();
        let mut values = vec![0f32; rows * cols];
        for (r, out) in values.chunks_exact_mut(cols).enumerate() {
            m.row(r, out).unwrap();
        }
        (bytes, m, values)
    }

    /// The vector rounding equals ggml's scalar one (`Half::round`) bit for
    /// bit: random bit patterns (NaNs, infinities, subnormals, values that
    /// overflow F16 included) and ties.
    #[test]
    fn round_rows_equals_scalar_rounding() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(12);
        let mut x: Vec<f32> = (0..4099).map(|_| f32::from_bits(rng.random())).collect();
        x.extend((0..1000).map(|_| rng.random_range(-70000.0f32..70000.0)));
        x.extend((0..1000).map(|_| rng.random_range(-1e-6f32..1e-6)));
        // Exactly between two F16 (1 + 2^-11) and two BF16 (1 + 2^-8)
        // values, and their neighbours.
        for base in [
            1.0 + 1.0 / 2048.0,
            1.0 + 3.0 / 2048.0,
            1.0 + 1.0 / 256.0,
            1.0 + 3.0 / 256.0,
        ] {
            let b = f32::to_bits(base);
            x.extend([b - 1, b, b + 1].map(f32::from_bits));
        }
        fn check<H: Half>(x: &[f32]) {
            for (i, (got, v)) in round_rows::<H>(x).iter().zip(x).enumerate() {
                let want = H::round(*v);
                assert!(
                    got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()),
                    "BF16 {} at {i}: {v:e} ({:#x}) -> {got:e} vs {want:e}",
                    H::BF16,
                    v.to_bits()
                );
            }
        }
        check::<f16>(&x);
        check::<bf16>(&x);
        #[cfg(target_arch = "x86_64")]
        if avx2::available() {
            for bf16 in [false, true] {
                let mut got = Vec::with_capacity(x.len());
                // SAFETY: AVX2, FMA and F16C are available.
                unsafe { avx2::round_into(&x, &mut got, bf16) };
                let want = if bf16 {
                    round_rows::<half::bf16>(&x)
                } else {
                    round_rows::<f16>(&x)
                };
                for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                    assert!(
                        g.to_bits() == w.to_bits() || (g.is_nan() && w.is_nan()),
                        "AVX2 BF16 {bf16} at {i}: {:e} -> {g:e} vs {w:e}",
                        x[i]
                    );
                }
            }
        }
    }

    /// The AVX2 kernels (which the CPUs without AVX512 run) against
    /// tinyBLAS's 8-lane formula bit for bit, on any CPU with AVX2: tile
    /// edges, columns past the last whole step, batches of 2..=13, both
    /// tile shapes, more rows than a block of weights holds.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn avx2_kernels_equal_the_8_lane_formula() {
        if !avx2::available() {
            return;
        }
        let mut rng = rand::rngs::StdRng::seed_from_u64(13);
        for dtype in [GgmlDType::F16, GgmlDType::BF16] {
            for (rows, cols) in [(5, 64), (3, 576), (4, 44), (1, 13), (230, 576), (50, 1540)] {
                let (_, _, values) = random_matrix(&mut rng, dtype, rows, cols);
                let x: Vec<f32> = (0..13 * cols)
                    .map(|_| rng.random_range(-4.0..4.0))
                    .collect();
                let (bits, want): (Vec<u16>, Vec<f32>) = if dtype == GgmlDType::F16 {
                    let w: Vec<f16> = values.iter().map(|&v| f16::from_f32(v)).collect();
                    let xr = round_rows::<f16>(&x);
                    let want = xr
                        .chunks_exact(cols)
                        .flat_map(|xt| w.chunks_exact(cols).map(|wr| dot_ggml8(wr, xt)))
                        .collect();
                    (w.iter().map(|v| v.to_bits()).collect(), want)
                } else {
                    let w: Vec<bf16> = values.iter().map(|&v| bf16::from_f32(v)).collect();
                    let xr = round_rows::<bf16>(&x);
                    let want = xr
                        .chunks_exact(cols)
                        .flat_map(|xt| w.chunks_exact(cols).map(|wr| dot_ggml8(wr, xt)))
                        .collect();
                    (w.iter().map(|v| v.to_bits()).collect(), want)
                };
                for n in 2..=13 {
                    let mut out = vec![0f32; n * rows];
                    let at = OutRows {
                        ptr: out.as_mut_ptr(),
                        stride: rows,
                    };
                    let xr = if dtype == GgmlDType::F16 {
                        round_rows::<f16>(&x[..n * cols])
                    } else {
                        round_rows::<bf16>(&x[..n * cols])
                    };
                    // SAFETY: AVX2 is available; `out` holds n x rows values.
                    unsafe {
                        if dtype == GgmlDType::F16 {
                            let w: Vec<f16> = bits.iter().map(|&b| f16::from_bits(b)).collect();
                            avx2::rows(&w, &xr, cols, at)
                        } else {
                            let w: Vec<bf16> = bits.iter().map(|&b| bf16::from_bits(b)).collect();
                            avx2::rows(&w, &xr, cols, at)
                        }
                    };
                    for (i, (got, want)) in out.iter().zip(&want).enumerate() {
                        assert_eq!(
                            got.to_bits(),
                            want.to_bits(),
                            "{dtype:?} {rows}x{cols} batch {n} token {} row {}: {got} vs {want}",
                            i / rows,
                            i % rows
                        );
                    }
                }
            }
        }
    }

    /// Σ |w_c · x_c|: the size f32 rounding of a dot product scales with.
    fn products(w: &[f32], x: &[f32]) -> f32 {
        w.iter().zip(x).map(|(a, b)| (a * b).abs()).sum()
    }

    /// `Matrix::matmul` for F16 and BF16 against the scalar formula bit for
    /// bit (batches 2..=20, row counts that do not fill tiles, a column
    /// count that does not fill vectors; F16 batches on AMX tiles within
    /// f32 rounding), the formula against candle's f32 matmul of the same
    /// rounded values, and embedding rows.
    #[test]
    fn half_matmuls_equal_the_formula_and_candle() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(8);
        for dtype in [GgmlDType::F16, GgmlDType::BF16] {
            for (rows, cols) in [(16, 64), (13, 576), (5, 40), (6, 50)] {
                let (bytes, m, values) = random_matrix(&mut rng, dtype, rows, cols);
                let x: Vec<f32> = (0..20 * cols)
                    .map(|_| rng.random_range(-4.0..4.0))
                    .collect();
                let (xr, want): (Vec<f32>, Vec<f32>) = match dtype {
                    GgmlDType::F16 => {
                        let w: Vec<f16> = values.iter().map(|&v| f16::from_f32(v)).collect();
                        let xr = round_rows::<f16>(&x);
                        let dot = dot_here::<f16>();
                        let want = xr
                            .chunks_exact(cols)
                            .flat_map(|xt| w.chunks_exact(cols).map(|wr| dot(wr, xt)))
                            .collect();
                        (xr, want)
                    }
                    _ => {
                        let w: Vec<bf16> = values.iter().map(|&v| bf16::from_f32(v)).collect();
                        let xr = round_rows::<bf16>(&x);
                        let dot = dot_here::<bf16>();
                        let want = xr
                            .chunks_exact(cols)
                            .flat_map(|xt| w.chunks_exact(cols).map(|wr| dot(wr, xt)))
                            .collect();
                        (xr, want)
                    }
                };
                // One row takes `half_vec`'s form (tested there); F16
                // batches that go to AMX tiles sum in another order
                // (`half_amx`, tested there): f32-close.
                for n in 2..=20 {
                    let mut out = vec![0f32; n * rows];
                    m.matmul(&x[..n * cols], n, &mut out).unwrap();
                    #[cfg(target_arch = "x86_64")]
                    let tiles = dtype == GgmlDType::F16 && crate::cpu::half_amx::takes(n, cols);
                    #[cfg(not(target_arch = "x86_64"))]
                    let tiles = false;
                    for (i, (got, want)) in out.iter().zip(&want).enumerate() {
                        let (t, r) = (i / rows, i % rows);
                        let at = format!("{dtype:?} {rows}x{cols} batch {n} token {t} row {r}");
                        if tiles {
                            let scale =
                                products(&values[r * cols..(r + 1) * cols], &xr[t * cols..]);
                            assert!((got - want).abs() <= 1e-5 * scale, "{at}: {got} vs {want}");
                        } else {
                            assert_eq!(got.to_bits(), want.to_bits(), "{at}: {got} vs {want}");
                        }
                    }
                }
                // candle: the same (rounded) values as f32, its own order.
                let q = GgmlDType::F32.from_data(std::borrow::Cow::Owned(
                    values.iter().flat_map(|v| v.to_le_bytes()).collect(),
                ));
                let mut theirs = vec![0f32; 20 * rows];
                q.matmul_t((20, cols, rows), &xr, &mut theirs).unwrap();
                for (i, (a, b)) in want.iter().zip(&theirs).enumerate() {
                    let (t, r) = (i / rows, i % rows);
                    let scale = products(&values[r * cols..(r + 1) * cols], &xr[t * cols..]);
                    assert!(
                        (a - b).abs() <= 1e-5 * scale + 1e-6,
                        "{dtype:?} row {r} token {t}: {a} vs candle {b}"
                    );
                }
                // Embedding rows are the file's values.
                for (v, b) in values.iter().zip(bytes.chunks_exact(2)) {
                    let stored = match dtype {
                        GgmlDType::F16 => f16::from_le_bytes([b[0], b[1]]).to_f32(),
                        _ => bf16::from_le_bytes([b[0], b[1]]).to_f32(),
                    };
                    assert_eq!(v.to_bits(), stored.to_bits());
                }
            }
        }
    }
}

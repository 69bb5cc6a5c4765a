//! The K-quant kernels on AVX2, and with AVX512-VNNI's `vpdpwssd` folding
//! the scale multiply and the add into one instruction. A tile takes R
//! weight rows by N activation rows: each weight block's 32-byte runs and
//! their scales are unpacked once per tile and used for all N rows, so a
//! batch costs little more than one row while the weights stream from
//! memory.
//!
//! Per block and (weight, activation) pair the integer lanes are exactly
//! ggml's AVX2 ones (`maddubs` pairs cannot saturate: at most 63 x 127 x 2),
//! and the float steps are its steps, so results equal
//! [`super::portable`] bit for bit (tested).
// Tiles index their accumulators by (weight row, activation row); the
// const-bounded loops unroll completely.
#![allow(clippy::needless_range_loop)]

use std::arch::x86_64::*;

use super::amx::{self, Tiles};
use super::blocks::{BlockQ2K, BlockQ3K, BlockQ4K, BlockQ5K, BlockQ6K, KBlock};
use super::decode512;
use super::quantize::{BlockQ8K, StripSums};
use super::rows16::{self, Rows16, Q4K16, Q6K16};
use super::Kernels;
use crate::cpu::dot::avx2::hsum;
use crate::cpu::dot_rows::{OutRows, STRIP};

/// The kernels this CPU runs. They are `#[target_feature]` functions:
/// handing out the AVX2 ones only on CPUs with AVX2, FMA and F16C, and the
/// VNNI ones only with AVX512-VNNI and AVX512-VL too, is what makes calling
/// them sound (with [`super::Kernel`]'s contract for `out`).
pub fn detect() -> Option<Kernels> {
    use crate::cpu::dot::avx2::{has_avx2_fma_f16c, has_vnni_vl};
    if crate::cpu::interleaved::vnni::features() {
        return Some(if crate::cpu::amx::available() {
            AMX
        } else {
            AVX512
        });
    }
    match (has_avx2_fma_f16c(), has_vnni_vl()) {
        (false, _) => None,
        (true, false) => Some(Kernels {
            name: "avx2",
            q4k: q4k_avx2,
            q4k_gemm: q4k_gemm_avx2,
            q5k: q5k_avx2,
            q6k: q6k_avx2,
            q5k_tiled: q5k_tiled_avx2,
            q6k_tiled: q6k_tiled_avx2,
            q2k: q2k_avx2,
            q3k: q3k_avx2,
        }),
        (true, true) => Some(VNNI),
    }
}

/// The 256-bit VNNI kernels.
const VNNI: Kernels = Kernels {
    name: "avx2+vnni",
    q4k: q4k_vnni,
    q4k_gemm: q4k_gemm_vnni,
    q5k: q5k_vnni,
    q6k: q6k_vnni,
    q5k_tiled: q5k_tiled_vnni,
    q6k_tiled: q6k_tiled_vnni,
    q2k: q2k_vnni,
    q3k: q3k_vnni,
};

/// The VNNI kernels with Q4_K and Q6_K prefill sixteen rows per 512-bit
/// vector, and their decode (batch 1) by `decode512`.
const AVX512: Kernels = Kernels {
    name: "avx512+vnni",
    q4k: q4k_avx512,
    q6k: q6k_avx512,
    q4k_gemm: q4k_gemm_avx512,
    q6k_tiled: q6k_tiled_avx512,
    ..VNNI
};

/// The AVX-512 kernels with Q4_K and Q6_K prefill on AMX int8 tiles.
const AMX: Kernels = Kernels {
    name: "amx+avx512",
    q4k_gemm: q4k_gemm_amx,
    q6k_tiled: q6k_tiled_amx,
    ..AVX512
};

/// Every kernel set this CPU runs (the AVX2 and VNNI ones as well as the
/// AVX-512 one), so tests cover each.
#[cfg(test)]
pub fn all() -> Vec<Kernels> {
    let mut all: Vec<Kernels> = detect().into_iter().collect();
    if all.first().is_some_and(|k| k.name == "amx+avx512") {
        all.push(AVX512);
    }
    if all.iter().any(|k| k.name == "avx512+vnni") {
        all.push(VNNI);
    }
    if all.iter().any(|k| k.name == "avx2+vnni") {
        all.push(Kernels {
            name: "avx2",
            q4k: q4k_avx2,
            q4k_gemm: q4k_gemm_avx2,
            q5k: q5k_avx2,
            q6k: q6k_avx2,
            q5k_tiled: q5k_tiled_avx2,
            q6k_tiled: q6k_tiled_avx2,
            q2k: q2k_avx2,
            q3k: q3k_avx2,
        });
    }
    all
}

/// One weight type's unpacking and per-block float steps.
trait KType {
    type W: KBlock;
    /// What a block needs besides its runs (decoded scales, ...).
    type Prep: Copy;
    /// Float state per (weight row, activation row) besides `acc`.
    type Extra: Copy;
    fn zero() -> Self::Extra;
    unsafe fn prepare(w: &Self::W) -> Self::Prep;
    /// The block's 32-byte run `c` (values 32c..32c + 32) as unsigned
    /// bytes, and each i16 pair's scale.
    unsafe fn run(w: &Self::W, p: &Self::Prep, c: usize) -> (__m256i, __m256i);
    /// One weight block against the strip's N activation blocks (`x[t *
    /// nb]`): the integer lanes `finish` takes. By default ggml's
    /// `vec_dot` lanes, run by run.
    #[inline(always)]
    unsafe fn block_sums<const VNNI: bool, const N: usize>(
        w: &Self::W,
        p: &Self::Prep,
        x: &[BlockQ8K],
        nb: usize,
    ) -> [__m256i; N] {
        let mut sumi = [_mm256_setzero_si256(); N];
        for c in 0..8 {
            let (q, scale) = Self::run(w, p, c);
            for t in 0..N {
                let qs = x.get_unchecked(t * nb).qs.as_ptr().add(32 * c);
                let qx = _mm256_load_si256(qs as *const __m256i);
                sumi[t] = mul_add_scaled::<VNNI>(sumi[t], q, qx, scale);
            }
        }
        sumi
    }
    /// Folds one block's integer lanes `sumi[t]` against the strip's
    /// activation blocks (`x[t * nb]`, their scales in `sums`).
    unsafe fn finish<const N: usize>(
        p: &Self::Prep,
        x: &[BlockQ8K],
        nb: usize,
        sums: &StripSums,
        sumi: &[__m256i; N],
        acc: &mut [__m256; N],
        extra: &mut [Self::Extra; N],
    );
    /// The strip's N dot products.
    unsafe fn results<const N: usize>(acc: &[__m256; N], extra: &[Self::Extra; N]) -> [f32; N];
}

/// `finish` and `results` for the types that keep ggml's `vec_dot` lanes:
/// each activation row's block folded by `$fold`, each result `$result`.
macro_rules! per_row {
    ($fold:expr, $result:expr) => {
        #[inline(always)]
        unsafe fn finish<const N: usize>(
            p: &Self::Prep,
            x: &[BlockQ8K],
            nb: usize,
            _: &StripSums,
            sumi: &[__m256i; N],
            acc: &mut [__m256; N],
            extra: &mut [Self::Extra; N],
        ) {
            for t in 0..N {
                $fold(
                    p,
                    x.get_unchecked(t * nb),
                    sumi[t],
                    &mut acc[t],
                    &mut extra[t],
                );
            }
        }
        #[inline(always)]
        unsafe fn results<const N: usize>(acc: &[__m256; N], extra: &[Self::Extra; N]) -> [f32; N] {
            let mut out = [0f32; N];
            for t in 0..N {
                out[t] = $result(acc[t], extra[t]);
            }
            out
        }
    };
}

/// `scales` of a Q4_K/Q5_K block unpacked with ggml's masks: 8 scales then
/// 8 mins as i16.
#[inline(always)]
unsafe fn scales_mins_k4(packed: &[u8; 12]) -> __m256i {
    const KMASK1: u32 = 0x3f3f_3f3f;
    const KMASK2: u32 = 0x0f0f_0f0f;
    const KMASK3: u32 = 0x0303_0303;
    let word = |i: usize| {
        u32::from_le_bytes([
            packed[4 * i],
            packed[4 * i + 1],
            packed[4 * i + 2],
            packed[4 * i + 3],
        ])
    };
    let (u0, u1, u2) = (word(0), word(1), word(2));
    let u3 = ((u2 >> 4) & KMASK2) | (((u1 >> 6) & KMASK3) << 4);
    let u1n = (u2 & KMASK2) | (((u0 >> 6) & KMASK3) << 4);
    let u2n = u1 & KMASK1;
    let u0n = u0 & KMASK1;
    _mm256_cvtepu8_epi16(_mm_set_epi32(u3 as i32, u2n as i32, u1n as i32, u0n as i32))
}

/// Decoded Q4_K/Q5_K block scales: the 8 scales in both 128-bit halves,
/// the 8 mins, and the block's f32 scales.
#[derive(Clone, Copy)]
struct PrepK4 {
    scales: __m256i,
    mins: __m128i,
    d: __m256,
    dmin: __m256,
}

#[inline(always)]
unsafe fn prep_k4(packed: &[u8; 12], d: half::f16, dmin: half::f16) -> PrepK4 {
    let both = scales_mins_k4(packed);
    let sc = _mm256_castsi256_si128(both);
    PrepK4 {
        scales: _mm256_inserti128_si256(_mm256_castsi128_si256(sc), sc, 1),
        mins: _mm256_extracti128_si256(both, 1),
        d: _mm256_cvtph_ps(_mm_set1_epi16(d.to_bits() as i16)),
        dmin: _mm256_cvtph_ps(_mm_set1_epi16(dmin.to_bits() as i16)),
    }
}

/// Sub-block `c`'s scale in every i16 lane.
#[inline(always)]
unsafe fn scale_k4(p: &PrepK4, c: usize) -> __m256i {
    let pick = (2 * c) as i16 | (((2 * c + 1) as i16) << 8);
    _mm256_shuffle_epi8(p.scales, _mm256_set1_epi16(pick))
}

/// The 4-bit part of run `c` of a Q4_K/Q5_K block.
#[inline(always)]
unsafe fn nibbles_k4(qs: &[u8; 128], c: usize) -> __m256i {
    let bits = _mm256_loadu_si256(qs.as_ptr().add(32 * (c / 2)) as *const __m256i);
    let bits = if c.is_multiple_of(2) {
        bits
    } else {
        _mm256_srli_epi16(bits, 4)
    };
    _mm256_and_si256(bits, _mm256_set1_epi8(0x0f))
}

/// `sumi` times `d`, added to `acc` (ggml's per-block FMA).
#[inline(always)]
unsafe fn fold(d: __m256, x: &BlockQ8K, sumi: __m256i, acc: &mut __m256) {
    let d = _mm256_mul_ps(d, _mm256_broadcast_ss(&x.d));
    *acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(sumi), *acc);
}

/// Lane t = the sum of `s[t]`'s eight lanes (a transposing reduction: a
/// handful of instructions for the whole strip instead of one horizontal
/// sum per row).
#[inline(always)]
unsafe fn totals<const N: usize>(s: &[__m256i; N]) -> __m256i {
    let mut p = [_mm256_setzero_si256(); 8];
    p[..N].copy_from_slice(s);
    if N == 1 {
        let h = _mm_add_epi32(
            _mm256_castsi256_si128(s[0]),
            _mm256_extracti128_si256(s[0], 1),
        );
        let h = _mm_hadd_epi32(h, h);
        return _mm256_castsi128_si256(_mm_hadd_epi32(h, h));
    }
    let a = _mm256_hadd_epi32(_mm256_hadd_epi32(p[0], p[1]), _mm256_hadd_epi32(p[2], p[3]));
    if N <= 4 {
        let h = _mm_add_epi32(_mm256_castsi256_si128(a), _mm256_extracti128_si256(a, 1));
        return _mm256_castsi128_si256(h);
    }
    let b = _mm256_hadd_epi32(_mm256_hadd_epi32(p[4], p[5]), _mm256_hadd_epi32(p[6], p[7]));
    _mm256_add_epi32(
        _mm256_permute2x128_si256(a, b, 0x20),
        _mm256_permute2x128_si256(a, b, 0x31),
    )
}

/// `Σ_k pairs[k] · (m[2k], m[2k+1])` per lane: every strip row's mins
/// total.
#[inline(always)]
unsafe fn mins_totals<const VNNI: bool>(mins: __m128i, sums: &StripSums) -> __m256i {
    let m = _mm256_broadcastsi128_si256(mins);
    let p = &sums.pairs;
    let acc = pairs_dot::<VNNI>(_mm256_setzero_si256(), _mm256_shuffle_epi32(m, 0x00), &p[0]);
    let acc = pairs_dot::<VNNI>(acc, _mm256_shuffle_epi32(m, 0x55), &p[1]);
    let acc = pairs_dot::<VNNI>(acc, _mm256_shuffle_epi32(m, 0xaa), &p[2]);
    pairs_dot::<VNNI>(acc, _mm256_shuffle_epi32(m, 0xff), &p[3])
}

/// `acc` plus, per i32 lane, the dot product of the i16 pairs of `m` and
/// `pairs`.
#[inline(always)]
unsafe fn pairs_dot<const VNNI: bool>(acc: __m256i, m: __m256i, pairs: &[[i16; 2]; 8]) -> __m256i {
    let p = _mm256_load_si256(pairs.as_ptr() as *const __m256i);
    if VNNI {
        _mm256_dpwssd_epi32(acc, m, p)
    } else {
        _mm256_add_epi32(acc, _mm256_madd_epi16(m, p))
    }
}

/// Lanes 2k and 2k + 1 of every `s[t]` added: element k of the result
/// has lane t = that pair's sum for row t (rows past N count zero).
#[inline(always)]
unsafe fn pair_totals<const N: usize>(s: &[__m256i; N]) -> [__m256i; 4] {
    let mut p = [_mm256_setzero_si256(); 8];
    p[..N].copy_from_slice(s);
    // Per 128-bit half: pairs (0, 1) of two rows, then (2, 3); the float
    // shuffles only move bits.
    let h = |a: __m256i, b: __m256i| _mm256_castsi256_ps(_mm256_hadd_epi32(a, b));
    let (h01, h23, h45, h67) = (h(p[0], p[1]), h(p[2], p[3]), h(p[4], p[5]), h(p[6], p[7]));
    let even_lo = _mm256_castps_si256(_mm256_shuffle_ps(h01, h23, 0b10_00_10_00));
    let odd_lo = _mm256_castps_si256(_mm256_shuffle_ps(h01, h23, 0b11_01_11_01));
    let even_hi = _mm256_castps_si256(_mm256_shuffle_ps(h45, h67, 0b10_00_10_00));
    let odd_hi = _mm256_castps_si256(_mm256_shuffle_ps(h45, h67, 0b11_01_11_01));
    [
        _mm256_permute2x128_si256(even_lo, even_hi, 0x20),
        _mm256_permute2x128_si256(odd_lo, odd_hi, 0x20),
        _mm256_permute2x128_si256(even_lo, even_hi, 0x31),
        _mm256_permute2x128_si256(odd_lo, odd_hi, 0x31),
    ]
}

/// Q4_K in the order of ggml's repacked path, its `gemv` (see
/// `portable::q4k_q8k`) or with `GEMM` its `gemm` (`q4k_q8k_gemm`): lane t
/// of `acc[0]` and `extra[0]` holds activation row t's sum and mins sum.
struct Q4K<const VNNI: bool, const GEMM: bool>;

impl<const VNNI: bool, const GEMM: bool> KType for Q4K<VNNI, GEMM> {
    type W = BlockQ4K;
    type Prep = PrepK4;
    type Extra = __m256;
    #[inline(always)]
    fn zero() -> __m256 {
        // SAFETY: the kernels run with AVX on (`detect`).
        unsafe { _mm256_setzero_ps() }
    }
    #[inline(always)]
    unsafe fn prepare(w: &BlockQ4K) -> PrepK4 {
        prep_k4(&w.scales, w.d, w.dmin)
    }
    /// Unused: `block_sums` works on whole blocks.
    #[inline(always)]
    unsafe fn run(_: &BlockQ4K, _: &PrepK4, _: usize) -> (__m256i, __m256i) {
        unreachable!("Q4_K blocks are summed whole")
    }
    /// The block's values come transposed (see `BlockQ4K`): vector k holds
    /// values 4k..4k+4 of every sub-block, lane j sub-block j, and `qt`
    /// holds the activations in the same order. Plain byte dot products
    /// (one `vpdpbusd` per 32 values) leave sub-block j's sum in lane j,
    /// then one multiply applies the 8 scales. Only block totals matter
    /// in this path's float order, so the lanes may differ from ggml's.
    #[inline(always)]
    unsafe fn block_sums<const V: bool, const N: usize>(
        w: &BlockQ4K,
        p: &PrepK4,
        x: &[BlockQ8K],
        nb: usize,
    ) -> [__m256i; N] {
        // Plain loops here and below, not `array::from_fn` or closures:
        // those are separate functions without the kernel's target
        // features and were not inlined (measured 0.3 GMAC/s).
        let low = _mm256_set1_epi8(0x0f);
        let mut q = [low; 8];
        for k in 0..8 {
            let bits = _mm256_loadu_si256(w.qs.as_ptr().add(32 * (k / 2)) as *const __m256i);
            let bits = if k % 2 == 0 {
                bits
            } else {
                _mm256_srli_epi16(bits, 4)
            };
            q[k] = _mm256_and_si256(bits, low);
        }
        let scales = _mm256_cvtepu16_epi32(_mm256_castsi256_si128(p.scales));
        if !V {
            // Without VNNI the pair sums stay in i16 across the 8 vectors
            // (each pair is at most 2 x 15 x 128, eight of them 30720 <
            // 32767), then one `madd` by the scales (in both i16 halves of
            // each lane) widens and scales them: 8 `maddubs`, 7 adds and
            // one `madd` per block and row instead of 8 x (`maddubs`,
            // `madd`, add) and a `mullo`. The integers are the same.
            let scales = _mm256_or_si256(scales, _mm256_slli_epi32(scales, 16));
            let mut sum16 = [_mm256_setzero_si256(); N];
            for t in 0..N {
                let qt = x.get_unchecked(t * nb).qt.as_ptr();
                let mut p = [_mm256_setzero_si256(); 8];
                for k in 0..8 {
                    let xk = _mm256_load_si256(qt.add(32 * k) as *const __m256i);
                    p[k] = _mm256_maddubs_epi16(q[k], xk);
                }
                // A tree of adds: three deep instead of a chain of seven.
                for k in 0..4 {
                    p[k] = _mm256_add_epi16(p[2 * k], p[2 * k + 1]);
                }
                let all =
                    _mm256_add_epi16(_mm256_add_epi16(p[0], p[1]), _mm256_add_epi16(p[2], p[3]));
                sum16[t] = _mm256_madd_epi16(all, scales);
            }
            return sum16;
        }
        // k outside, rows inside: consecutive dot products belong to
        // independent chains, so the scheduler is not filled with
        // instructions waiting on the one before.
        let mut sumi = [_mm256_setzero_si256(); N];
        for k in 0..8 {
            for t in 0..N {
                let qt = x.get_unchecked(t * nb).qt.as_ptr();
                let xk = _mm256_load_si256(qt.add(32 * k) as *const __m256i);
                sumi[t] = dot_u8_i8::<V>(sumi[t], q[k], xk);
            }
        }
        for t in 0..N {
            sumi[t] = _mm256_mullo_epi32(sumi[t], scales);
        }
        sumi
    }
    #[inline(always)]
    unsafe fn finish<const N: usize>(
        p: &PrepK4,
        _: &[BlockQ8K],
        _: usize,
        sums: &StripSums,
        sumi: &[__m256i; N],
        acc: &mut [__m256; N],
        acc_m: &mut [__m256; N],
    ) {
        let dx = _mm256_load_ps(sums.d.as_ptr());
        let (d, dmin) = (_mm256_mul_ps(p.d, dx), _mm256_mul_ps(p.dmin, dx));
        if GEMM {
            let m = _mm256_broadcastsi128_si256(p.mins);
            let pairs = pair_totals(sumi);
            for (k, pair) in pairs.iter().enumerate() {
                let mk = match k {
                    0 => _mm256_shuffle_epi32(m, 0x00),
                    1 => _mm256_shuffle_epi32(m, 0x55),
                    2 => _mm256_shuffle_epi32(m, 0xaa),
                    _ => _mm256_shuffle_epi32(m, 0xff),
                };
                let mins = pairs_dot::<VNNI>(_mm256_setzero_si256(), mk, &sums.pairs[k]);
                acc[0] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(*pair), d, acc[0]);
                acc_m[0] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(mins), dmin, acc_m[0]);
            }
        } else {
            let total = _mm256_cvtepi32_ps(totals(sumi));
            acc[0] = _mm256_fmadd_ps(total, d, acc[0]);
            let mins = _mm256_cvtepi32_ps(mins_totals::<VNNI>(p.mins, sums));
            acc_m[0] = _mm256_fmadd_ps(mins, dmin, acc_m[0]);
        }
    }
    #[inline(always)]
    unsafe fn results<const N: usize>(acc: &[__m256; N], acc_m: &[__m256; N]) -> [f32; N] {
        let mut lanes = [0f32; 8];
        _mm256_storeu_ps(lanes.as_mut_ptr(), _mm256_sub_ps(acc[0], acc_m[0]));
        let mut out = [0f32; N];
        out.copy_from_slice(&lanes[..N]);
        out
    }
}

struct Q5K;

impl KType for Q5K {
    type W = BlockQ5K;
    type Prep = (PrepK4, __m256i);
    /// ggml's scalar `summs`.
    type Extra = f32;
    #[inline(always)]
    fn zero() -> f32 {
        0.0
    }
    #[inline(always)]
    unsafe fn prepare(w: &BlockQ5K) -> (PrepK4, __m256i) {
        let qh = _mm256_loadu_si256(w.qh.as_ptr() as *const __m256i);
        (prep_k4(&w.scales, w.d, w.dmin), qh)
    }
    #[inline(always)]
    unsafe fn run(w: &BlockQ5K, p: &(PrepK4, __m256i), c: usize) -> (__m256i, __m256i) {
        // Bit c of each `qh` byte to bit 4 (16-bit shifts: the bits that
        // cross bytes are masked off).
        let h = if c <= 4 {
            _mm256_sll_epi16(p.1, _mm_cvtsi32_si128(4 - c as i32))
        } else {
            _mm256_srl_epi16(p.1, _mm_cvtsi32_si128(c as i32 - 4))
        };
        let h = _mm256_and_si256(h, _mm256_set1_epi8(0x10));
        (_mm256_or_si256(nibbles_k4(&w.qs, c), h), scale_k4(&p.0, c))
    }
    per_row!(
        |p: &(PrepK4, __m256i), x: &BlockQ8K, sumi, acc: &mut __m256, summs: &mut f32| {
            let sums = _mm_load_si128(x.sums32.as_ptr() as *const __m128i);
            let prod = _mm_madd_epi16(p.0.mins, sums);
            let prod = _mm_hadd_epi32(prod, prod);
            let prod = _mm_hadd_epi32(prod, prod);
            let dmin = -x.d * _mm256_cvtss_f32(p.0.dmin);
            // GCC contracts ggml's `summs += dmin * sum` into an FMA.
            *summs = dmin.mul_add(_mm_cvtsi128_si32(prod) as f32, *summs);
            fold(p.0.d, x, sumi, acc);
        },
        |acc, summs| hsum(acc) + summs
    );
}

struct Q6K;

/// Decoded Q6_K block: its 16 scales as bytes and as i16, and `d`.
#[derive(Clone, Copy)]
pub(super) struct PrepQ6K {
    scales: __m128i,
    pub(super) scales16: __m256i,
    d: __m256,
}

impl PrepQ6K {
    #[inline(always)]
    pub(super) unsafe fn of(w: &BlockQ6K) -> Self {
        let scales = _mm_loadu_si128(w.scales.as_ptr() as *const __m128i);
        Self {
            scales,
            scales16: _mm256_cvtepi8_epi16(scales),
            d: _mm256_cvtph_ps(_mm_set1_epi16(w.d.to_bits() as i16)),
        }
    }

    /// The scales of half `half`'s four runs, as [`run_scales`] gives
    /// them: from the widened scales, one `vpermq` a half and one
    /// `vpshufb` a run, where `run_scales` takes a byte shuffle, a
    /// sign extension and (as the compiler lowers its constant) two more
    /// shuffles per run. Measured (`matmul_bench`, Q6_K 2048x4096, one
    /// thread, AMD Zen 3, 3 alternating rounds): batch 1 21.0-21.7 ->
    /// 22.9-26.7 GMAC/s, batch 8 37.4-46.3 -> 45.8-49.7.
    #[inline(always)]
    unsafe fn half_scales(&self, half: usize) -> [__m256i; 4] {
        // Both 128-bit halves: scales 8·half .. 8·half + 8 as i16.
        let eight = if half == 0 {
            _mm256_permute4x64_epi64::<0b0100_0100>(self.scales16)
        } else {
            _mm256_permute4x64_epi64::<0b1110_1110>(self.scales16)
        };
        // Run k: i16 element 2k in every lane of the low half, 2k + 1 in
        // the high half.
        std::array::from_fn(|k| {
            let (lo, hi) = (0x0100 + 0x0404 * k as i16, 0x0302 + 0x0404 * k as i16);
            let pick = _mm256_setr_epi16(
                lo, lo, lo, lo, lo, lo, lo, lo, hi, hi, hi, hi, hi, hi, hi, hi,
            );
            _mm256_shuffle_epi8(eight, pick)
        })
    }

    /// One block of a row times activation block `x`, from `sumi`, its
    /// lanes before the q - 32 offset: ggml's `vec_dot` step into `acc`.
    #[inline(always)]
    pub(super) unsafe fn fold(&self, x: &BlockQ8K, sumi: __m256i, acc: &mut __m256) {
        let bsums = _mm256_load_si256(x.bsums.as_ptr() as *const __m256i);
        let offset = _mm256_slli_epi32(_mm256_madd_epi16(bsums, self.scales16), 5);
        fold(self.d, x, _mm256_sub_epi32(sumi, offset), acc);
    }
}

/// The four 32-value runs of a Q6_K block's half (128 values) as unsigned
/// 6-bit bytes.
#[inline(always)]
unsafe fn q6k_half_runs(w: &BlockQ6K, half: usize) -> [__m256i; 4] {
    let (m4, m30) = (_mm256_set1_epi8(0x0f), _mm256_set1_epi8(0x30));
    let ql0 = _mm256_loadu_si256(w.ql.as_ptr().add(64 * half) as *const __m256i);
    let ql1 = _mm256_loadu_si256(w.ql.as_ptr().add(64 * half + 32) as *const __m256i);
    let qh = _mm256_loadu_si256(w.qh.as_ptr().add(32 * half) as *const __m256i);
    let high = |h: __m256i| _mm256_and_si256(h, m30);
    [
        _mm256_or_si256(_mm256_and_si256(ql0, m4), high(_mm256_slli_epi16(qh, 4))),
        _mm256_or_si256(_mm256_and_si256(ql1, m4), high(_mm256_slli_epi16(qh, 2))),
        _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), m4), high(qh)),
        _mm256_or_si256(
            _mm256_and_si256(_mm256_srli_epi16(ql1, 4), m4),
            high(_mm256_srli_epi16(qh, 2)),
        ),
    ]
}

impl KType for Q6K {
    type W = BlockQ6K;
    type Prep = PrepQ6K;
    type Extra = ();
    #[inline(always)]
    fn zero() {}
    #[inline(always)]
    unsafe fn prepare(w: &BlockQ6K) -> PrepQ6K {
        PrepQ6K::of(w)
    }
    /// `run` for each half's four runs at once, without its per-run
    /// branches (for large N the compiler keeps the run loop rolled and
    /// took them at run time, half the kernel's time at batch 8): the
    /// same vectors, the same lanes.
    #[inline(always)]
    unsafe fn block_sums<const V: bool, const N: usize>(
        w: &BlockQ6K,
        p: &PrepQ6K,
        x: &[BlockQ8K],
        nb: usize,
    ) -> [__m256i; N] {
        let mut sumi = [_mm256_setzero_si256(); N];
        for half in 0..2 {
            let q = q6k_half_runs(w, half);
            let sc = p.half_scales(half);
            let step = |sumi: __m256i, t: usize, run: usize| {
                let qs = x.get_unchecked(t * nb).qs.as_ptr().add(128 * half);
                let qx = _mm256_load_si256(qs.add(32 * run) as *const __m256i);
                mul_add_scaled::<V>(sumi, q[run], qx, sc[run])
            };
            if V {
                // Runs outside, rows inside, as in `Q4K::block_sums`.
                for run in 0..4 {
                    for t in 0..N {
                        sumi[t] = step(sumi[t], t, run);
                    }
                }
            } else {
                // Rows outside: the half's runs and scales stay in
                // registers, where 16 rows' sums did not (~10% faster at
                // batch 32, `matmul_bench` on Zen 3).
                for t in 0..N {
                    for run in 0..4 {
                        sumi[t] = step(sumi[t], t, run);
                    }
                }
            }
        }
        sumi
    }
    #[inline(always)]
    unsafe fn run(w: &BlockQ6K, p: &PrepQ6K, c: usize) -> (__m256i, __m256i) {
        let (half, run) = (c / 4, c % 4);
        let ql =
            _mm256_loadu_si256(w.ql.as_ptr().add(64 * half + 32 * (run % 2)) as *const __m256i);
        let ql = if run < 2 {
            ql
        } else {
            _mm256_srli_epi16(ql, 4)
        };
        let low = _mm256_and_si256(ql, _mm256_set1_epi8(0x0f));
        let qh = _mm256_loadu_si256(w.qh.as_ptr().add(32 * half) as *const __m256i);
        let high = match run {
            0 => _mm256_slli_epi16(qh, 4),
            1 => _mm256_slli_epi16(qh, 2),
            2 => qh,
            _ => _mm256_srli_epi16(qh, 2),
        };
        let high = _mm256_and_si256(high, _mm256_set1_epi8(0x30));
        (_mm256_or_si256(low, high), run_scales(p.scales, c))
    }
    per_row!(
        |p: &PrepQ6K, x: &BlockQ8K, sumi, acc: &mut __m256, _: &mut ()| p.fold(x, sumi, acc),
        |acc, _| hsum(acc)
    );
}

/// A type whose blocks llama.cpp's tiled matmul also takes (see
/// `portable::q5k_q8k_tiled`).
trait TiledType: KType {
    /// Integer lanes whose totals are the block's exact sums (only totals
    /// reach this order's floats, so the lanes may differ from `vec_dot`'s).
    #[inline(always)]
    unsafe fn tiled_block_sums<const VNNI: bool, const N: usize>(
        w: &Self::W,
        p: &Self::Prep,
        x: &[BlockQ8K],
        nb: usize,
    ) -> [__m256i; N] {
        Self::block_sums::<VNNI, N>(w, p, x, nb)
    }
    /// Lane t: the block's value for activation row t (`x[t * nb]`) before
    /// the activation's scale, from the exact integer totals of `sumi`.
    unsafe fn block_values<const N: usize>(
        p: &Self::Prep,
        x: &[BlockQ8K],
        nb: usize,
        sums: &StripSums,
        sumi: &[__m256i; N],
    ) -> __m256;
}

impl TiledType for Q5K {
    #[inline(always)]
    unsafe fn block_values<const N: usize>(
        p: &(PrepK4, __m256i),
        _: &[BlockQ8K],
        _: usize,
        sums: &StripSums,
        sumi: &[__m256i; N],
    ) -> __m256 {
        let total = _mm256_cvtepi32_ps(totals(sumi));
        // Exact integers either way: the `madd` form serves both sets.
        let mins = _mm256_cvtepi32_ps(mins_totals::<false>(p.0.mins, sums));
        _mm256_fnmadd_ps(p.0.dmin, mins, _mm256_mul_ps(total, p.0.d))
    }
}

impl TiledType for Q6K {
    /// With VNNI, one `vpdpbusd` per run leaves each 4 values' sum in a
    /// lane (at most 4 x 63 x 127, an i16), lanes 0-3 in the run's first
    /// sub-block and 4-7 in its second; two runs' lanes packed to i16
    /// meet their scales in one `vpdpwssd`: 12 multiplies a block and row
    /// instead of `vec_dot`'s 16 (`maddubs`, then `vpdpwssd` per run).
    #[inline(always)]
    unsafe fn tiled_block_sums<const VNNI: bool, const N: usize>(
        w: &BlockQ6K,
        p: &PrepQ6K,
        x: &[BlockQ8K],
        nb: usize,
    ) -> [__m256i; N] {
        if !VNNI {
            return Self::block_sums::<VNNI, N>(w, p, x, nb);
        }
        let mut sumi = [_mm256_setzero_si256(); N];
        for half in 0..2 {
            let q = q6k_half_runs(w, half);
            // Runs 2k and 2k + 1 packed: i16 lanes 0-3 run 2k's first
            // sub-block, 4-7 run 2k + 1's first, 8-11 and 12-15 their
            // second ones: 32-bit lanes 2, 3, 6 and 7 from run 2k + 1's
            // scales, the rest from run 2k's.
            let mut sc = [_mm256_setzero_si256(); 2];
            for (k, sc) in sc.iter_mut().enumerate() {
                let run = 4 * half + 2 * k;
                let (even, odd) = (run_scales(p.scales, run), run_scales(p.scales, run + 1));
                *sc = _mm256_blend_epi32::<0b1100_1100>(even, odd);
            }
            for t in 0..N {
                let qs = x.get_unchecked(t * nb).qs.as_ptr().add(128 * half);
                let fours = |run: usize| {
                    let qx = _mm256_load_si256(qs.add(32 * run) as *const __m256i);
                    _mm256_dpbusd_epi32(_mm256_setzero_si256(), q[run], qx)
                };
                let p01 = _mm256_packs_epi32(fours(0), fours(1));
                let p23 = _mm256_packs_epi32(fours(2), fours(3));
                sumi[t] = _mm256_dpwssd_epi32(sumi[t], p01, sc[0]);
                sumi[t] = _mm256_dpwssd_epi32(sumi[t], p23, sc[1]);
            }
        }
        sumi
    }
    #[inline(always)]
    unsafe fn block_values<const N: usize>(
        p: &PrepQ6K,
        x: &[BlockQ8K],
        nb: usize,
        _: &StripSums,
        sumi: &[__m256i; N],
    ) -> __m256 {
        // The unsigned q's excess 32 · Σ scale · x, taken back per row
        // (exact integers, so per total rather than per lane as `vec_dot`).
        let offsets = _mm256_slli_epi32(offset_totals::<N>(p.scales16, x, nb), 5);
        let total = _mm256_sub_epi32(totals(sumi), offsets);
        _mm256_mul_ps(_mm256_cvtepi32_ps(total), p.d)
    }
}

/// `T` in the tiled matmul's float order: lane t of `acc[0]` is activation
/// row t's sum, one FMA per block.
struct Tiled<T>(std::marker::PhantomData<T>);

impl<T: TiledType> KType for Tiled<T> {
    type W = T::W;
    type Prep = T::Prep;
    type Extra = ();
    #[inline(always)]
    fn zero() {}
    #[inline(always)]
    unsafe fn prepare(w: &T::W) -> T::Prep {
        T::prepare(w)
    }
    #[inline(always)]
    unsafe fn run(w: &T::W, p: &T::Prep, c: usize) -> (__m256i, __m256i) {
        T::run(w, p, c)
    }
    #[inline(always)]
    unsafe fn block_sums<const VNNI: bool, const N: usize>(
        w: &T::W,
        p: &T::Prep,
        x: &[BlockQ8K],
        nb: usize,
    ) -> [__m256i; N] {
        T::tiled_block_sums::<VNNI, N>(w, p, x, nb)
    }
    tiled_fold!(T);
}

/// `finish` and `results` in the tiled matmul's order for a
/// [`TiledType`] `$t`: one FMA per block with the activations' scales,
/// lane t of `acc[0]` row t's sum.
macro_rules! tiled_fold {
    ($t:ty) => {
        #[inline(always)]
        unsafe fn finish<const N: usize>(
            p: &Self::Prep,
            x: &[BlockQ8K],
            nb: usize,
            sums: &StripSums,
            sumi: &[__m256i; N],
            acc: &mut [__m256; N],
            _: &mut [(); N],
        ) {
            let dx = _mm256_load_ps(sums.d.as_ptr());
            let values = <$t as TiledType>::block_values(p, x, nb, sums, sumi);
            acc[0] = _mm256_fmadd_ps(values, dx, acc[0]);
        }
        #[inline(always)]
        unsafe fn results<const N: usize>(acc: &[__m256; N], _: &[(); N]) -> [f32; N] {
            let mut lanes = [0f32; 8];
            _mm256_storeu_ps(lanes.as_mut_ptr(), acc[0]);
            let mut out = [0f32; N];
            out.copy_from_slice(&lanes[..N]);
            out
        }
    };
}
use tiled_fold;

/// A decoded Q2_K/Q3_K block: its 16 sub-block scales as bytes (for
/// picking a run's two) and as i16, what the offsets multiply (Q2_K's
/// mins, Q3_K's scales), and its f32 scales.
#[derive(Clone, Copy)]
struct PrepSmall {
    scales: __m128i,
    offsets16: __m256i,
    d: __m256,
    dmin: __m256,
}

/// The 2-bit fields of run `c` (values 32c..32c + 32) of a Q2_K/Q3_K `qs`.
#[inline(always)]
unsafe fn two_bits_run(qs: &[u8; 64], c: usize) -> __m256i {
    let bits = _mm256_loadu_si256(qs.as_ptr().add(32 * (c / 4)) as *const __m256i);
    let bits = _mm256_srl_epi16(bits, _mm_cvtsi32_si128(2 * (c % 4) as i32));
    _mm256_and_si256(bits, _mm256_set1_epi8(3))
}

/// Run `c`'s two sub-block scales (2c, 2c + 1) as i16, one per 128-bit
/// half, from 16 scale bytes.
#[inline(always)]
unsafe fn run_scales(scales: __m128i, c: usize) -> __m256i {
    let pick = _mm_set_epi64x(
        0x0101_0101_0101_0101 * (2 * c as i64 + 1),
        0x0101_0101_0101_0101 * (2 * c as i64),
    );
    _mm256_cvtepi8_epi16(_mm_shuffle_epi8(scales, pick))
}

/// Per strip row t: the dot of `x[t * nb]`'s 16 sub-block sums with
/// `offsets16`, exact, in lane t.
#[inline(always)]
unsafe fn offset_totals<const N: usize>(offsets16: __m256i, x: &[BlockQ8K], nb: usize) -> __m256i {
    let mut per_row = [_mm256_setzero_si256(); N];
    for t in 0..N {
        let bsums = _mm256_load_si256(x.get_unchecked(t * nb).bsums.as_ptr() as *const __m256i);
        per_row[t] = _mm256_madd_epi16(bsums, offsets16);
    }
    totals(&per_row)
}

struct Q2K;

impl KType for Q2K {
    type W = BlockQ2K;
    type Prep = PrepSmall;
    type Extra = ();
    #[inline(always)]
    fn zero() {}
    #[inline(always)]
    unsafe fn prepare(w: &BlockQ2K) -> PrepSmall {
        let packed = _mm_loadu_si128(w.scales.as_ptr() as *const __m128i);
        let low = _mm_set1_epi8(0x0f);
        let f = |h: half::f16| _mm256_cvtph_ps(_mm_set1_epi16(h.to_bits() as i16));
        PrepSmall {
            scales: _mm_and_si128(packed, low),
            offsets16: _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(packed, 4), low)),
            d: f(w.d),
            dmin: f(w.dmin),
        }
    }
    #[inline(always)]
    unsafe fn run(w: &BlockQ2K, p: &PrepSmall, c: usize) -> (__m256i, __m256i) {
        (two_bits_run(&w.qs, c), run_scales(p.scales, c))
    }
    tiled_fold!(Q2K);
}

impl TiledType for Q2K {
    #[inline(always)]
    unsafe fn block_values<const N: usize>(
        p: &PrepSmall,
        x: &[BlockQ8K],
        nb: usize,
        _: &StripSums,
        sumi: &[__m256i; N],
    ) -> __m256 {
        let total = _mm256_cvtepi32_ps(totals(sumi));
        let mins = _mm256_cvtepi32_ps(offset_totals::<N>(p.offsets16, x, nb));
        _mm256_fnmadd_ps(p.dmin, mins, _mm256_mul_ps(total, p.d))
    }
}

struct Q3K;

impl KType for Q3K {
    type W = BlockQ3K;
    type Prep = PrepSmall;
    type Extra = ();
    #[inline(always)]
    fn zero() {}
    #[inline(always)]
    unsafe fn prepare(w: &BlockQ3K) -> PrepSmall {
        let scales = _mm_loadu_si128(w.scales().as_ptr() as *const __m128i);
        let d = _mm256_cvtph_ps(_mm_set1_epi16(w.d.to_bits() as i16));
        PrepSmall {
            scales,
            offsets16: _mm256_cvtepi8_epi16(scales),
            d,
            dmin: d,
        }
    }
    /// Unsigned q = value + 4: the 2-bit field and `hmask`'s bit c above.
    #[inline(always)]
    unsafe fn run(w: &BlockQ3K, p: &PrepSmall, c: usize) -> (__m256i, __m256i) {
        let hm = _mm256_loadu_si256(w.hmask.as_ptr() as *const __m256i);
        let high = _mm256_and_si256(
            _mm256_srl_epi16(hm, _mm_cvtsi32_si128(c as i32)),
            _mm256_set1_epi8(1),
        );
        let q = _mm256_or_si256(two_bits_run(&w.qs, c), _mm256_slli_epi16(high, 2));
        (q, run_scales(p.scales, c))
    }
    tiled_fold!(Q3K);
}

impl TiledType for Q3K {
    /// The unsigned q's excess 4 · Σ scale · x, taken back per row.
    #[inline(always)]
    unsafe fn block_values<const N: usize>(
        p: &PrepSmall,
        x: &[BlockQ8K],
        nb: usize,
        _: &StripSums,
        sumi: &[__m256i; N],
    ) -> __m256 {
        let offsets = _mm256_slli_epi32(offset_totals::<N>(p.offsets16, x, nb), 2);
        let total = _mm256_sub_epi32(totals(sumi), offsets);
        _mm256_mul_ps(_mm256_cvtepi32_ps(total), p.d)
    }
}

/// Unsigned weight bytes `q` times signed activation bytes `x`, each i16
/// pair times `scale`, added to `sumi`: ggml's `maddubs` then `madd`, or
/// VNNI's `vpdpwssd` doing the `madd` and the add at once (same integers).
#[inline(always)]
unsafe fn mul_add_scaled<const VNNI: bool>(
    sumi: __m256i,
    q: __m256i,
    x: __m256i,
    scale: __m256i,
) -> __m256i {
    let p16 = _mm256_maddubs_epi16(q, x);
    if VNNI {
        _mm256_dpwssd_epi32(sumi, p16, scale)
    } else {
        _mm256_add_epi32(sumi, _mm256_madd_epi16(scale, p16))
    }
}

/// `acc` plus, per i32 lane, the four products of unsigned bytes `q` and
/// signed bytes `x`: VNNI's `vpdpbusd`, or `maddubs` (pairs cannot
/// saturate: 15 x 127 x 2) then `madd` by ones.
#[inline(always)]
unsafe fn dot_u8_i8<const VNNI: bool>(acc: __m256i, q: __m256i, x: __m256i) -> __m256i {
    if VNNI {
        _mm256_dpbusd_epi32(acc, q, x)
    } else {
        let pairs = _mm256_maddubs_epi16(q, x);
        _mm256_add_epi32(acc, _mm256_madd_epi16(pairs, _mm256_set1_epi16(1)))
    }
}

/// Asks for a weight block 8 KiB ahead, every cache line of it, into L2:
/// with few activation rows the weights stream from memory (see
/// `dot_rows`). Measured (`matmul_bench`, one thread, batch 1, CPU time
/// on a loaded EPYC Zen 4) Q4_K 4096x11008: ~1.5 s with no prefetch, ~1.2
/// s 2 KiB ahead into L1, ~0.7 s 8 KiB ahead into L2; Q6_K 2.3, 1.7 and
/// 1.2 s; the 11008x4096 shapes within noise of each other.
#[inline(always)]
unsafe fn prefetch_ahead<B: KBlock>(block: &B) {
    prefetch_l2::<B, 8192>(block)
}

/// Asks for every cache line of the block `AHEAD` bytes past `block` into
/// L2 (a hint: the address need not be valid).
#[inline(always)]
pub(super) unsafe fn prefetch_l2<B: KBlock, const AHEAD: usize>(block: &B) {
    let ahead = (block as *const B as *const u8).wrapping_add(AHEAD);
    for line in (0..B::SIZE).step_by(64) {
        _mm_prefetch::<_MM_HINT_T1>(ahead.wrapping_add(line) as *const i8);
    }
}

/// Asks for every cache line of the block at `block` into L1 (a hint:
/// the address need not be valid).
#[inline(always)]
unsafe fn prefetch_next<B: KBlock>(block: *const B) {
    let at = block as *const u8;
    for line in (0..B::SIZE).step_by(64) {
        _mm_prefetch::<_MM_HINT_T0>(at.wrapping_add(line) as *const i8);
    }
}

/// `dot(w[r], x[t])` into `out` at (t, r) for `r < R`, `t < N`.
#[inline(always)]
unsafe fn tile<T: KType, const VNNI: bool, const R: usize, const N: usize>(
    w: &[T::W],
    x: &[BlockQ8K],
    sums: &[StripSums],
    nb: usize,
    out: OutRows,
) {
    columns::<T, VNNI, R, N>(w, x, sums, nb, R, out)
}

/// `rows` (at most CAP) weight rows against N activation rows, block
/// column by block column: each block of the N rows (N x 576 bytes) stays
/// in L1 while every weight row uses it, and each (weight row, activation
/// row) folds its blocks in order.
#[inline(always)]
unsafe fn columns<T: KType, const VNNI: bool, const CAP: usize, const N: usize>(
    w: &[T::W],
    x: &[BlockQ8K],
    sums: &[StripSums],
    nb: usize,
    rows: usize,
    out: OutRows,
) {
    debug_assert!(rows <= CAP);
    let mut acc = [[_mm256_setzero_ps(); N]; CAP];
    let mut extra = [[T::zero(); N]; CAP];
    for b in 0..nb {
        let xb = x.get_unchecked(b..);
        let sb = sums.get_unchecked(b);
        for r in 0..rows {
            let wb = w.get_unchecked(r * nb + b);
            if CAP == PANEL {
                // The panel is read again for every strip: its next block
                // column, from L2 into L1, a whole panel pass ahead.
                prefetch_next(w.as_ptr().wrapping_add(r * nb + b + 1));
            } else {
                prefetch_ahead(wb);
            }
            let prep = T::prepare(wb);
            let sumi = T::block_sums::<VNNI, N>(wb, &prep, xb, nb);
            let (acc, extra) = (acc.get_unchecked_mut(r), extra.get_unchecked_mut(r));
            T::finish(&prep, xb, nb, sb, &sumi, acc, extra);
        }
    }
    for r in 0..rows {
        for (t, v) in T::results(&acc[r], &extra[r]).into_iter().enumerate() {
            out.write(t, r, v);
        }
    }
}

/// [`columns`] for two whole strips at once (16 activation rows, `x` and
/// each strip's sums): each weight block is unpacked, and its scales
/// decoded, once for both, and each strip folds its half of the lanes as
/// `columns` does.
#[inline(always)]
unsafe fn columns2<T: KType, const VNNI: bool>(
    w: &[T::W],
    x: &[BlockQ8K],
    sums: [&[StripSums]; 2],
    nb: usize,
    rows: usize,
    out: OutRows,
) {
    debug_assert!(rows <= PANEL);
    let mut acc = [[[_mm256_setzero_ps(); STRIP]; 2]; PANEL];
    let mut extra = [[[T::zero(); STRIP]; 2]; PANEL];
    for b in 0..nb {
        let xb = [x.get_unchecked(b..), x.get_unchecked(STRIP * nb + b..)];
        let sb = [sums[0].get_unchecked(b), sums[1].get_unchecked(b)];
        for r in 0..rows {
            let wb = w.get_unchecked(r * nb + b);
            prefetch_next(w.as_ptr().wrapping_add(r * nb + b + 1));
            let prep = T::prepare(wb);
            let sumi = T::block_sums::<VNNI, { 2 * STRIP }>(wb, &prep, xb[0], nb);
            let (acc, extra) = (acc.get_unchecked_mut(r), extra.get_unchecked_mut(r));
            for h in 0..2 {
                let mut half = [_mm256_setzero_si256(); STRIP];
                half.copy_from_slice(&sumi[STRIP * h..STRIP * (h + 1)]);
                T::finish(&prep, xb[h], nb, sb[h], &half, &mut acc[h], &mut extra[h]);
            }
        }
    }
    for r in 0..rows {
        for h in 0..2 {
            for (t, v) in T::results(&acc[r][h], &extra[r][h]).into_iter().enumerate() {
                out.write(STRIP * h + t, r, v);
            }
        }
    }
}

/// Weight rows per panel: `tiled` takes them against every strip in turn
/// (they stay in L2 meanwhile).
const PANEL: usize = 16;

/// Covers `w` (rows x nb) times `x` (n x nb): panels of [`PANEL`] weight
/// rows against every strip of up to 8 activation rows; strips of 5 or
/// more by [`columns`] over the whole panel (where row-by-row tiles would
/// read the strip, up to 200 KB for 11008-wide rows, from L2 once per
/// weight row), smaller ones (whose weights stream from memory, row after
/// row) with as many weight rows per tile as the registers hold.
#[inline(always)]
unsafe fn tiled<T: KType, const VNNI: bool>(
    w: &[T::W],
    x: &[BlockQ8K],
    sums: &[StripSums],
    nb: usize,
    out: OutRows,
) {
    let n = x.len() / nb;
    for (p, w) in w.chunks(PANEL * nb).enumerate() {
        let mut t = 0;
        while t < n {
            let out = out.at(t, p * PANEL);
            if n - t >= 2 * STRIP {
                let x = &x[t * nb..(t + 2 * STRIP) * nb];
                let s = |i: usize| &sums[(t / STRIP + i) * nb..(t / STRIP + i + 1) * nb];
                columns2::<T, VNNI>(w, x, [s(0), s(1)], nb, w.len() / nb, out);
                t += 2 * STRIP;
                continue;
            }
            let strip = (n - t).min(STRIP);
            let x = &x[t * nb..(t + strip) * nb];
            let sums = &sums[(t / STRIP) * nb..(t / STRIP + 1) * nb];
            match strip {
                8 => columns::<T, VNNI, PANEL, 8>(w, x, sums, nb, w.len() / nb, out),
                7 => columns::<T, VNNI, PANEL, 7>(w, x, sums, nb, w.len() / nb, out),
                6 => columns::<T, VNNI, PANEL, 6>(w, x, sums, nb, w.len() / nb, out),
                5 => columns::<T, VNNI, PANEL, 5>(w, x, sums, nb, w.len() / nb, out),
                // Strips too wide for L1 (rows of 11008 values) by panel
                // too: row-by-row tiles would read them from L2 again for
                // every pair of weight rows.
                4 if !fits_l1(4, nb) => {
                    columns::<T, VNNI, PANEL, 4>(w, x, sums, nb, w.len() / nb, out)
                }
                3 if !fits_l1(3, nb) => {
                    columns::<T, VNNI, PANEL, 3>(w, x, sums, nb, w.len() / nb, out)
                }
                2 if !fits_l1(2, nb) => {
                    columns::<T, VNNI, PANEL, 2>(w, x, sums, nb, w.len() / nb, out)
                }
                4 => rows_by::<T, VNNI, 2, 4>(w, x, sums, nb, out),
                3 => rows_by::<T, VNNI, 2, 3>(w, x, sums, nb, out),
                2 => rows_by::<T, VNNI, 4, 2>(w, x, sums, nb, out),
                _ => rows_by::<T, VNNI, 1, 1>(w, x, sums, nb, out),
            }
            t += strip;
        }
    }
}

/// Whether a strip of `n` activation rows `nb` blocks long stays in a
/// 32 KiB L1 beside the weights streaming past: the kernels read ~300
/// bytes of each `BlockQ8K` (`qt`, the sums and `d`), and ~24 KiB of
/// strip leaves room for the rest.
fn fits_l1(n: usize, nb: usize) -> bool {
    n * nb * 300 <= 24 * 1024
}

/// All weight rows against one strip of N activation rows, R at a time.
#[inline(always)]
unsafe fn rows_by<T: KType, const VNNI: bool, const R: usize, const N: usize>(
    w: &[T::W],
    x: &[BlockQ8K],
    sums: &[StripSums],
    nb: usize,
    out: OutRows,
) {
    let rows = w.len() / nb;
    let mut r = 0;
    while rows - r >= R {
        tile::<T, VNNI, R, N>(&w[r * nb..(r + R) * nb], x, sums, nb, out.at(0, r));
        r += R;
    }
    while r < rows {
        tile::<T, VNNI, 1, N>(&w[r * nb..(r + 1) * nb], x, sums, nb, out.at(0, r));
        r += 1;
    }
}

/// A Q4_K block's 8 scales (bytes 0..8) and 8 mins (bytes 8..16) from
/// its first 16 bytes (`d`, `dmin`, `scales`), unpacked as
/// [`scales_mins_k4`] does but in vector registers: byte shuffles pick
/// each value's low and high bits, masks and shifts place them.
#[inline(always)]
unsafe fn scales_mins_k4_simd(head: __m128i) -> __m128i {
    // `scales` byte i is `head` byte i + 4. Scale j < 4: s[j] & 63;
    // j >= 4: s[j + 4] & 15 | (s[j - 4] >> 6) << 4. Min j < 4: s[j + 4]
    // & 63; j >= 4: s[j + 4] >> 4 | (s[j] >> 6) << 4.
    let low_at = _mm_setr_epi8(4, 5, 6, 7, 12, 13, 14, 15, 8, 9, 10, 11, 12, 13, 14, 15);
    let low_mask = _mm_setr_epi8(63, 63, 63, 63, 15, 15, 15, 15, 63, 63, 63, 63, 0, 0, 0, 0);
    let high_mask = _mm_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 15, 15, 15, 15);
    let top_at = _mm_setr_epi8(-1, -1, -1, -1, 4, 5, 6, 7, -1, -1, -1, -1, 8, 9, 10, 11);
    let p = _mm_shuffle_epi8(head, low_at);
    let top = _mm_shuffle_epi8(head, top_at);
    let low = _mm_and_si128(p, low_mask);
    // 16-bit shifts: the bits that cross bytes are masked off.
    let high = _mm_and_si128(_mm_srli_epi16(p, 4), high_mask);
    let top = _mm_and_si128(_mm_srli_epi16(top, 2), _mm_set1_epi8(0x30));
    _mm_or_si128(_mm_or_si128(low, high), top)
}

/// Q4_K rows times one activation row (decode), row after row so the
/// weights stream in order. Per block, the integer total and the mins
/// total meet in lanes 0 and 1 of one vector and `d` and `dmin` (the
/// block's first 4 bytes) in the same lanes of another, so one FMA does
/// `Q4K`'s two (`acc` and `acc_m`: the same FMAs in the same order).
#[inline(always)]
unsafe fn q4k_one_row<const VNNI: bool>(w: &[BlockQ4K], x: &[BlockQ8K], nb: usize, out: OutRows) {
    for (r, row) in w.chunks_exact(nb).enumerate() {
        let mut acc = _mm_setzero_ps();
        for (wb, xb) in row.iter().zip(x) {
            prefetch_ahead(wb);
            acc = if VNNI {
                q4k_block_vnni(wb, xb, acc)
            } else {
                q4k_block_avx2(wb, xb, acc)
            };
        }
        out.write(0, r, q4k_row_result(acc));
    }
}

/// Quarter `k` (64 values) of a Q4_K block beside its activations: the
/// low nibbles of its 32 bytes with their activation bytes, then the high
/// nibbles with theirs.
#[inline(always)]
unsafe fn q4k_quarter(wb: &BlockQ4K, xb: &BlockQ8K, k: usize) -> [(__m256i, __m256i); 2] {
    let low = _mm256_set1_epi8(0x0f);
    let bits = _mm256_loadu_si256(wb.qs.as_ptr().add(32 * k) as *const __m256i);
    let qt = xb.qt.as_ptr().add(64 * k);
    let x0 = _mm256_load_si256(qt as *const __m256i);
    let x1 = _mm256_load_si256(qt.add(32) as *const __m256i);
    let high = _mm256_and_si256(_mm256_srli_epi16(bits, 4), low);
    [(_mm256_and_si256(bits, low), x0), (high, x1)]
}

/// One block of a Q4_K row times one activation row with VNNI: two chains
/// of byte dot products (integer sums are exact in any order) into
/// [`q4k_fold_block`].
#[inline(always)]
unsafe fn q4k_block_vnni(wb: &BlockQ4K, xb: &BlockQ8K, acc: __m128) -> __m128 {
    let (mut even, mut odd) = (_mm256_setzero_si256(), _mm256_setzero_si256());
    for k in 0..4 {
        let [(q0, x0), (q1, x1)] = q4k_quarter(wb, xb, k);
        even = dot_u8_i8::<true>(even, q0, x0);
        odd = dot_u8_i8::<true>(odd, q1, x1);
    }
    q4k_fold_block(wb, xb, _mm256_add_epi32(even, odd), acc)
}

/// One block of a Q4_K row times one activation row without VNNI: the
/// pair sums stay in i16 over the whole block (as in `Q4K::block_sums`),
/// then one `madd` by the scales gives [`q4k_fold_scaled`] its lanes.
#[inline(always)]
unsafe fn q4k_block_avx2(wb: &BlockQ4K, xb: &BlockQ8K, acc: __m128) -> __m128 {
    let (mut even, mut odd) = (_mm256_setzero_si256(), _mm256_setzero_si256());
    for k in 0..4 {
        let [(q0, x0), (q1, x1)] = q4k_quarter(wb, xb, k);
        even = _mm256_add_epi16(even, _mm256_maddubs_epi16(q0, x0));
        odd = _mm256_add_epi16(odd, _mm256_maddubs_epi16(q1, x1));
    }
    let head = _mm_loadu_si128(wb as *const BlockQ4K as *const __m128i);
    let sm = scales_mins_k4_simd(head);
    // Scale j in both i16 halves of lane j.
    let scales = _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(sm, sm));
    let sumi = _mm256_madd_epi16(_mm256_add_epi16(even, odd), scales);
    q4k_fold_scaled(head, sm, xb, sumi, acc)
}

/// One block of a Q4_K row times one activation row, from `s`, its eight
/// sub-block sums (lane j sub-block j): the scales and the mins applied in
/// integers, then the block's one FMA into `acc` (lane 0 the total, lane 1
/// the mins total).
#[inline(always)]
pub(super) unsafe fn q4k_fold_block(
    wb: &BlockQ4K,
    xb: &BlockQ8K,
    s: __m256i,
    acc: __m128,
) -> __m128 {
    // `d`, `dmin` and the packed scales: the block's first 16 bytes.
    let head = _mm_loadu_si128(wb as *const BlockQ4K as *const __m128i);
    let sm = scales_mins_k4_simd(head);
    let sumi = _mm256_mullo_epi32(s, _mm256_cvtepu8_epi32(sm));
    q4k_fold_scaled(head, sm, xb, sumi, acc)
}

/// [`q4k_fold_block`] from the scaled sub-block sums `sumi`, the block's
/// first 16 bytes `head` and their unpacked scales and mins `sm`.
#[inline(always)]
unsafe fn q4k_fold_scaled(
    head: __m128i,
    sm: __m128i,
    xb: &BlockQ8K,
    sumi: __m256i,
    acc: __m128,
) -> __m128 {
    let sums32 = _mm_load_si128(xb.sums32.as_ptr() as *const __m128i);
    let mins = _mm_madd_epi16(_mm_cvtepu8_epi16(_mm_srli_si128(sm, 8)), sums32);
    let half = _mm_add_epi32(
        _mm256_castsi256_si128(sumi),
        _mm256_extracti128_si256(sumi, 1),
    );
    let pair = _mm_hadd_epi32(half, mins);
    let ints = _mm_hadd_epi32(pair, pair);
    let dm = _mm_mul_ps(_mm_cvtph_ps(head), _mm_broadcast_ss(&xb.d));
    _mm_fmadd_ps(_mm_cvtepi32_ps(ints), dm, acc)
}

/// A row's result from [`q4k_fold_block`]'s accumulator.
#[inline(always)]
pub(super) unsafe fn q4k_row_result(acc: __m128) -> f32 {
    let mut lanes = [0f32; 4];
    _mm_storeu_ps(lanes.as_mut_ptr(), acc);
    lanes[0] - lanes[1]
}

/// A kernel entry point: `tiled` over `$ty` with `$features` on.
macro_rules! kernel {
    ($name:ident, $features:literal, $ty:ty, $vnni:literal) => {
        #[target_feature(enable = $features)]
        unsafe fn $name(
            w: &[<$ty as KType>::W],
            x: &[BlockQ8K],
            sums: &[StripSums],
            nb: usize,
            out: OutRows,
        ) {
            tiled::<$ty, $vnni>(w, x, sums, nb, out)
        }
    };
}
kernel!(q4k_tiled_avx2, "avx2,fma,f16c", Q4K<false, false>, false);
kernel!(q4k_gemm_avx2, "avx2,fma,f16c", Q4K<false, true>, false);
kernel!(q5k_avx2, "avx2,fma,f16c", Q5K, false);
kernel!(q6k_avx2, "avx2,fma,f16c", Q6K, false);
kernel!(q5k_tiled_avx2, "avx2,fma,f16c", Tiled<Q5K>, false);
kernel!(q6k_tiled_avx2, "avx2,fma,f16c", Tiled<Q6K>, false);
kernel!(q2k_avx2, "avx2,fma,f16c", Q2K, false);
kernel!(q3k_avx2, "avx2,fma,f16c", Q3K, false);
kernel!(
    q4k_tiled_vnni,
    "avx2,fma,f16c,avx512vnni,avx512vl",
    Q4K<true, false>,
    true
);
kernel!(
    q4k_gemm_vnni,
    "avx2,fma,f16c,avx512vnni,avx512vl",
    Q4K<true, true>,
    true
);
kernel!(q5k_vnni, "avx2,fma,f16c,avx512vnni,avx512vl", Q5K, true);
kernel!(q6k_vnni, "avx2,fma,f16c,avx512vnni,avx512vl", Q6K, true);
kernel!(
    q5k_tiled_vnni,
    "avx2,fma,f16c,avx512vnni,avx512vl",
    Tiled<Q5K>,
    true
);
kernel!(
    q6k_tiled_vnni,
    "avx2,fma,f16c,avx512vnni,avx512vl",
    Tiled<Q6K>,
    true
);
kernel!(q2k_vnni, "avx2,fma,f16c,avx512vnni,avx512vl", Q2K, true);
kernel!(q3k_vnni, "avx2,fma,f16c,avx512vnni,avx512vl", Q3K, true);

/// An entry point that takes one activation row (decode) by `$one_row`
/// and batches by `$rest`.
macro_rules! one_row_kernel {
    ($name:ident, $features:literal, $ty:ty, $one_row:expr, $rest:ident) => {
        #[target_feature(enable = $features)]
        unsafe fn $name(w: &[$ty], x: &[BlockQ8K], sums: &[StripSums], nb: usize, out: OutRows) {
            if x.len() == nb {
                $one_row(w, x, nb, out)
            } else {
                $rest(w, x, sums, nb, out)
            }
        }
    };
}
one_row_kernel!(
    q4k_avx2,
    "avx2,fma,f16c",
    BlockQ4K,
    q4k_one_row::<false>,
    q4k_tiled_avx2
);
one_row_kernel!(
    q4k_vnni,
    "avx2,fma,f16c,avx512vnni,avx512vl",
    BlockQ4K,
    q4k_one_row::<true>,
    q4k_tiled_vnni
);
// The AVX-512 set's decode in the same orders, by `decode512`.
one_row_kernel!(
    q4k_avx512,
    "avx2,fma,f16c,avx512f,avx512bw,avx512vnni,avx512vl",
    BlockQ4K,
    decode512::q4k_one_row,
    q4k_tiled_vnni
);
one_row_kernel!(
    q6k_avx512,
    "avx2,fma,f16c,avx512f,avx512bw,avx512vnni,avx512vl",
    BlockQ6K,
    decode512::q6k_one_row,
    q6k_vnni
);

/// An entry point for 16-row groups: whole groups by `$gemm` once the
/// batch pays for their transposition (`$min_batch` activation rows), the
/// rest by `$rest`.
macro_rules! rows16_kernel {
    ($name:ident, $w:ty, $gemm:path, $min_batch:expr, $rest:ident) => {
        #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vnni,avx512vl")]
        unsafe fn $name(w: &[$w], x: &[BlockQ8K], sums: &[StripSums], nb: usize, out: OutRows) {
            let rows = w.len() / nb;
            let grouped = if x.len() / nb >= $min_batch {
                rows - rows % rows16::ROWS
            } else {
                0
            };
            if grouped > 0 {
                $gemm(&w[..grouped * nb], x, nb, out);
            }
            if grouped < rows {
                $rest(&w[grouped * nb..], x, sums, nb, out.at(0, grouped));
            }
        }
    };
}
rows16_kernel!(
    q4k_gemm_avx512,
    BlockQ4K,
    rows16::gemm::<Q4K16>,
    <Q4K16 as Rows16>::MIN_BATCH,
    q4k_gemm_vnni
);
rows16_kernel!(
    q6k_tiled_avx512,
    BlockQ6K,
    rows16::gemm::<Q6K16>,
    <Q6K16 as Rows16>::MIN_BATCH,
    q6k_tiled_vnni
);
rows16_kernel!(
    q4k_gemm_amx,
    BlockQ4K,
    amx::gemm::<Q4K16>,
    <Q4K16 as Tiles>::MIN_BATCH,
    q4k_gemm_avx512
);
rows16_kernel!(
    q6k_tiled_amx,
    BlockQ6K,
    amx::gemm::<Q6K16>,
    <Q6K16 as Tiles>::MIN_BATCH,
    q6k_tiled_avx512
);

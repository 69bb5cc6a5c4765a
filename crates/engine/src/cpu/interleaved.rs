//! The output projection's Q8_0 rows interleaved by eights, for CPUs with
//! AVX512 (F, BW, VL, VNNI): one `vpdpbusd` advances 8 rows at once (lane
//! j holds 4 bytes of row j) against 4 bytes of one activation row
//! broadcast from memory. It sums whole blocks in integers and scales once
//! per block: ~2x faster than ggml's float order (`legacy16`, the layers'
//! kernels), last-bit rounding differences in the logits, which nothing
//! quantizes again (tested against the single-row kernel to 1e-5
//! relative).
//!
//! A (weight row, activation row) pair's arithmetic does not depend on the
//! other rows of the batch, so a sequence's logits are the same alone or
//! batched.
//!
//! Q4_0 matrices of a multiple of 8 rows that `legacy16` does not take
//! are interleaved by eights as well ([`Q4_0x8`]), as llama.cpp repacks
//! them on AVX2 CPUs (`block_q4_0x8`), and sum by whole blocks in its float
//! order ([`q4_0_kernel`]).

use std::sync::OnceLock;

use half::f16;

use super::blocks::{BlockQ4_0, BlockQ8_0, QK};
use super::dot_rows::OutRows;
use super::with_const;

/// Weight rows per group.
pub const GROUP: usize = 8;

/// Block column `b` of 8 Q8_0 rows, values stored as `q + 128` (unsigned,
/// as `vpdpbusd` multiplies), the `128 * sum(x)` it adds taken off per
/// activation block; byte `32s + 4j + i` holds value `4s + i` of row j.
#[derive(Clone, Copy)]
#[repr(C)]
pub struct Q8_0x8 {
    pub d: [f16; GROUP],
    pub qs: [u8; 8 * 32],
}

/// A weight type with an interleaved layout.
pub trait Interleave: Sized + Send + Sync {
    type Row;
    /// The same block column of 8 consecutive rows.
    fn pack(rows: [&Self::Row; GROUP]) -> Self;
    /// Row `j`'s block back.
    fn unpack(&self, j: usize) -> Self::Row;
}

impl Interleave for Q8_0x8 {
    type Row = BlockQ8_0;
    fn pack(rows: [&BlockQ8_0; GROUP]) -> Self {
        let mut qs = [0u8; 256];
        for (j, w) in rows.iter().enumerate() {
            for (v, q) in w.qs.iter().enumerate() {
                qs[32 * (v / 4) + 4 * j + v % 4] = (*q as i16 + 128) as u8;
            }
        }
        Self {
            d: rows.map(|w| w.d),
            qs,
        }
    }
    fn unpack(&self, j: usize) -> BlockQ8_0 {
        let mut qs = [0i8; 32];
        for (v, q) in qs.iter_mut().enumerate() {
            *q = (self.qs[32 * (v / 4) + 4 * j + v % 4] as i16 - 128) as i8;
        }
        BlockQ8_0 { d: self.d[j], qs }
    }
}

/// Block column `b` of 8 Q4_0 rows: byte `32s + 4j + i` is byte `4s + i`
/// of row j's block, whose low nibble is value `4s + i` and high nibble
/// value `16 + 4s + i` (stored `q + 8`, unsigned). One 32-byte load holds
/// 4 values of each of the 8 rows in each nibble, so a `maddubs` against 4
/// activation bytes in every lane sums each row in its own lane.
#[derive(Clone, Copy)]
#[repr(C)]
pub struct Q4_0x8 {
    pub d: [f16; GROUP],
    pub qs: [u8; 8 * 16],
}

impl Interleave for Q4_0x8 {
    type Row = BlockQ4_0;
    fn pack(rows: [&BlockQ4_0; GROUP]) -> Self {
        let mut qs = [0u8; 128];
        for (j, w) in rows.iter().enumerate() {
            for (k, q) in w.qs.iter().enumerate() {
                qs[32 * (k / 4) + 4 * j + k % 4] = *q;
            }
        }
        Self {
            d: rows.map(|w| w.d),
            qs,
        }
    }
    fn unpack(&self, j: usize) -> BlockQ4_0 {
        BlockQ4_0 {
            d: self.d[j],
            qs: std::array::from_fn(|k| self.qs[32 * (k / 4) + 4 * j + k % 4]),
        }
    }
}

/// `rows` rows of `nb` blocks (`rows` a multiple of 8) as groups of 8 rows,
/// each group's block columns consecutive; `block(i)` is block `i` in
/// row-major order (parsed as it is needed, so a matrix packed from its
/// file bytes never exists twice in memory).
pub fn pack_rows<I: Interleave>(rows: usize, nb: usize, block: impl Fn(usize) -> I::Row) -> Vec<I> {
    debug_assert!(rows.is_multiple_of(GROUP));
    let block = &block;
    let packed = (0..rows / GROUP).flat_map(|g| {
        (0..nb).map(move |b| {
            let column: [I::Row; GROUP] = std::array::from_fn(|j| block((g * GROUP + j) * nb + b));
            I::pack(column.each_ref())
        })
    });
    super::huge_pages::collect(rows / GROUP * nb, packed)
}

/// Row `r`'s blocks out of [`pack_rows`]'s layout.
pub fn unpack_row<I: Interleave>(
    packed: &[I],
    nb: usize,
    r: usize,
) -> impl Iterator<Item = I::Row> + '_ {
    let group = &packed[(r / GROUP) * nb..(r / GROUP + 1) * nb];
    group.iter().map(move |b| b.unpack(r % GROUP))
}

/// One activation block's scales as the kernels read them (broadcast
/// from memory): `d` and, per weight layout, the integer that cancels
/// the offset its values are stored with.
#[derive(Clone, Copy, Default)]
#[repr(C)]
pub struct XScales {
    pub d: f32,
    /// `-128 * sum(q)`: [`Q8_0x8`]'s `+ 128`.
    pub bias128: i32,
    /// `-8 * sum(q)`: [`Q4_0x8`]'s `+ 8`.
    pub bias8: i32,
}

/// Activation block types the interleaved kernels take.
pub trait GroupAct {
    fn group_scales(&self) -> XScales;
}

impl GroupAct for BlockQ8_0 {
    fn group_scales(&self) -> XScales {
        let sum: i32 = self.qs.iter().map(|&q| q as i32).sum();
        XScales {
            d: self.d.to_f32(),
            bias128: -128 * sum,
            bias8: -8 * sum,
        }
    }
}

/// `dot(w[r], x[t])` into `out` at (t, r) for the groups of 8 weight rows
/// in `w` (each `nb` blocks) and the `n` activation rows in `x`, with
/// `xs[t * nb + b]` the scales of `x[t * nb + b]`.
///
/// # Safety
/// As `dot_rows::RowsKernel`: `out` is valid for writes at every (t, r)
/// and nobody else touches those places meanwhile.
pub type GroupKernel<W, X> = unsafe fn(w: &[W], x: &[X], xs: &[XScales], nb: usize, out: OutRows);

/// The interleaved kernels.
#[derive(Clone, Copy)]
pub struct GroupKernels {
    pub q8_0_q8_0: GroupKernel<Q8_0x8, BlockQ8_0>,
}

/// The interleaved kernels when this CPU runs them (AVX2, FMA, F16C,
/// AVX512 F, BW, VL and VNNI) and `SERVEBENCH_KERNELS` does not ask for
/// `rows` (the row-at-a-time tiles, for comparisons) or `portable`.
pub fn kernels() -> Option<&'static GroupKernels> {
    static K: OnceLock<Option<GroupKernels>> = OnceLock::new();
    #[cfg(target_arch = "x86_64")]
    return repacking(&K, vnni::detect);
    #[allow(unreachable_code)]
    None
}

/// `detect`'s kernels for repacked weights, asked once, unless
/// `SERVEBENCH_KERNELS` is `rows` (the weights stay as in the file, for
/// comparisons) or `portable`.
pub(crate) fn repacking<K>(
    cell: &'static OnceLock<Option<K>>,
    detect: fn() -> Option<K>,
) -> Option<&'static K> {
    cell.get_or_init(|| {
        let off = matches!(
            std::env::var("SERVEBENCH_KERNELS").as_deref(),
            Ok("rows" | "portable")
        );
        if off {
            None
        } else {
            detect()
        }
    })
    .as_ref()
}

/// The Q4_0 group kernel on CPUs with AVX2, where llama.cpp repacks Q4_0,
/// unless `SERVEBENCH_KERNELS` asks for `rows` or `portable`. Its float
/// order is `q4_0_whole`'s (and `legacy16`'s for Q4_0, which takes whole
/// groups of 16 rows first where it runs).
pub fn q4_0_kernel() -> Option<GroupKernel<Q4_0x8, BlockQ8_0>> {
    static K: OnceLock<Option<GroupKernel<Q4_0x8, BlockQ8_0>>> = OnceLock::new();
    #[cfg(target_arch = "x86_64")]
    return repacking(&K, avx2::detect).copied();
    #[allow(unreachable_code)]
    None
}

/// Padding-free: the layouts are the kernels' contract with `pack`.
const _: () = assert!(std::mem::size_of::<Q8_0x8>() == 16 + 256);
const _: () = assert!(std::mem::size_of::<Q4_0x8>() == 16 + 128);
const _: () = assert!(QK == 32);

/// Plain AVX2 helpers of both group kernels (and of other kernels'
/// prefetches); inlined into their callers' target features.
#[cfg(target_arch = "x86_64")]
pub(crate) mod simd {
    use half::f16;
    use std::arch::x86_64::*;

    /// Asks for every cache line of the block 4 KiB ahead: with few
    /// activation rows the weights stream from memory, and this VM's
    /// hardware prefetch alone leaves one thread far below its bandwidth.
    #[inline(always)]
    pub(super) unsafe fn prefetch_ahead<B>(block: &B) {
        const AHEAD: usize = 4096;
        prefetch_block((block as *const B).wrapping_byte_add(AHEAD));
    }

    /// Asks for every cache line of `block`.
    #[inline(always)]
    pub(crate) unsafe fn prefetch_block<B>(block: *const B) {
        let at = block as *const i8;
        let mut line = 0;
        while line < std::mem::size_of::<B>() {
            _mm_prefetch::<_MM_HINT_T0>(at.wrapping_add(line));
            line += 64;
        }
    }

    /// 8 f16 as 8 f32.
    #[inline(always)]
    pub(super) unsafe fn widen(h: &[f16; 8]) -> __m256 {
        _mm256_cvtph_ps(_mm_loadu_si128(h.as_ptr() as *const __m128i))
    }

    /// 4 activation bytes `4s..4s + 4` of a block in every lane.
    #[inline(always)]
    pub(super) unsafe fn x4(qs: &[i8; 32], s: usize) -> __m256i {
        _mm256_set1_epi32((qs.as_ptr() as *const i32).add(s).read_unaligned())
    }
}

#[cfg(target_arch = "x86_64")]
pub(crate) mod vnni {
    // Accumulators are indexed by activation row; the const-bounded loops
    // unroll completely.
    #![allow(clippy::needless_range_loop)]
    use super::simd::{prefetch_ahead, widen, x4};
    use super::*;
    use std::arch::x86_64::*;

    /// Handing these out only on CPUs with every feature they enable is what
    /// makes calling them sound (with `GroupKernel`'s contract for `out`).
    pub fn detect() -> Option<GroupKernels> {
        features().then_some(GroupKernels { q8_0_q8_0 })
    }

    /// AVX2, FMA, F16C and AVX512 F, BW, VL and VNNI: what the repacked
    /// kernels (here and in `legacy16`) enable.
    pub(crate) fn features() -> bool {
        is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
            && is_x86_feature_detected!("f16c")
            && is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512bw")
            && is_x86_feature_detected!("avx512vnni")
            && is_x86_feature_detected!("avx512vl")
    }

    #[target_feature(enable = "avx2,fma,f16c,avx512vnni,avx512vl")]
    unsafe fn q8_0_q8_0(w: &[Q8_0x8], x: &[BlockQ8_0], xs: &[XScales], nb: usize, out: OutRows) {
        let n = x.len() / nb;
        for (g, w) in w.chunks_exact(nb).enumerate() {
            let mut t = 0;
            while t < n {
                let strip = (n - t).min(8);
                let (x, xs, out) = (&x[t * nb..], &xs[t * nb..], out.at(t, g * GROUP));
                with_const!(strip, N in [8, 7, 6, 5, 4, 3, 2, 1] => {
                    q8_0_tile::<N>(w, x, xs, nb, out)
                });
                t += strip;
            }
        }
    }

    /// One group of 8 Q8_0 rows against N activation rows: whole block
    /// sums (two `vpdpbusd` chains from the `+ 128` correction), one scale
    /// multiply-add per block for 8 rows. Not ggml's float order.
    #[inline(always)]
    unsafe fn q8_0_tile<const N: usize>(
        w: &[Q8_0x8],
        x: &[BlockQ8_0],
        xs: &[XScales],
        nb: usize,
        out: OutRows,
    ) {
        let mut acc = [_mm256_setzero_ps(); N];
        for b in 0..nb {
            let wb = w.get_unchecked(b);
            prefetch_ahead(wb);
            let p = wb.qs.as_ptr() as *const __m256i;
            let u: [__m256i; 8] = std::array::from_fn(|s| _mm256_loadu_si256(p.add(s)));
            let dw = widen(&wb.d);
            for t in 0..N {
                let sc = xs.get_unchecked(t * nb + b);
                let qs = &x.get_unchecked(t * nb + b).qs;
                let mut s0 = _mm256_set1_epi32(sc.bias128);
                let mut s1 = _mm256_setzero_si256();
                for s in (0..8).step_by(2) {
                    s0 = _mm256_dpbusd_epi32(s0, u[s], x4(qs, s));
                    s1 = _mm256_dpbusd_epi32(s1, u[s + 1], x4(qs, s + 1));
                }
                let sum = _mm256_cvtepi32_ps(_mm256_add_epi32(s0, s1));
                let d = _mm256_mul_ps(dw, _mm256_set1_ps(sc.d));
                acc[t] = _mm256_fmadd_ps(sum, d, acc[t]);
            }
        }
        for t in 0..N {
            _mm256_storeu_ps(out.at(t, 0).ptr, acc[t]);
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    // Accumulators are indexed by activation row; the const-bounded loops
    // unroll completely.
    #![allow(clippy::needless_range_loop)]
    use super::simd::{prefetch_ahead, widen, x4};
    use super::*;
    use std::arch::x86_64::*;

    /// Handed out only on CPUs with AVX2, FMA and F16C (as `dot::best`
    /// found them), which is what makes calling it sound.
    pub fn detect() -> Option<GroupKernel<Q4_0x8, BlockQ8_0>> {
        let here = crate::cpu::dot::best().fma;
        here.then_some(q4_0_q8_0 as GroupKernel<Q4_0x8, BlockQ8_0>)
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn q4_0_q8_0(
        w: &[Q4_0x8],
        x: &[BlockQ8_0],
        xs: &[XScales],
        nb: usize,
        out: OutRows,
    ) {
        let n = x.len() / nb;
        for (g, w) in w.chunks_exact(nb).enumerate() {
            let mut t = 0;
            while t < n {
                let strip = (n - t).min(4);
                let (x, xs, out) = (&x[t * nb..], &xs[t * nb..], out.at(t, g * GROUP));
                with_const!(strip, N in [4, 3, 2, 1] => q4_0_tile::<N>(w, x, xs, nb, out));
                t += strip;
            }
        }
    }

    /// One group of 8 Q4_0 rows against N activation rows, as llama.cpp's
    /// repacked Q4_0 sums them: each block's Σ (q - 8)·x exactly in
    /// integers (16-bit partial sums: 8 `maddubs` of at most 2·15·128 in
    /// magnitude stay within i16), then one multiply-add by d_w·d_x per
    /// block, blocks in order.
    #[inline(always)]
    unsafe fn q4_0_tile<const N: usize>(
        w: &[Q4_0x8],
        x: &[BlockQ8_0],
        xs: &[XScales],
        nb: usize,
        out: OutRows,
    ) {
        let (low, ones) = (_mm256_set1_epi8(0x0f), _mm256_set1_epi16(1));
        let mut acc = [_mm256_setzero_ps(); N];
        for b in 0..nb {
            let wb = w.get_unchecked(b);
            prefetch_ahead(wb);
            let p = wb.qs.as_ptr() as *const __m256i;
            let u: [__m256i; 4] = std::array::from_fn(|s| _mm256_loadu_si256(p.add(s)));
            let lo: [__m256i; 4] = std::array::from_fn(|s| _mm256_and_si256(u[s], low));
            let hi: [__m256i; 4] =
                std::array::from_fn(|s| _mm256_and_si256(_mm256_srli_epi16::<4>(u[s]), low));
            let dw = widen(&wb.d);
            for t in 0..N {
                let sc = xs.get_unchecked(t * nb + b);
                let qs = &x.get_unchecked(t * nb + b).qs;
                let mut s16 = _mm256_setzero_si256();
                for s in 0..4 {
                    s16 = _mm256_add_epi16(s16, _mm256_maddubs_epi16(lo[s], x4(qs, s)));
                    s16 = _mm256_add_epi16(s16, _mm256_maddubs_epi16(hi[s], x4(qs, s + 4)));
                }
                let sum =
                    _mm256_add_epi32(_mm256_madd_epi16(s16, ones), _mm256_set1_epi32(sc.bias8));
                let d = _mm256_mul_ps(dw, _mm256_set1_ps(sc.d));
                acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum), d, acc[t]);
            }
        }
        for t in 0..N {
            _mm256_storeu_ps(out.at(t, 0).ptr, acc[t]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::blocks::quantize_q8_0;
    use crate::cpu::dot;
    use rand::{Rng, SeedableRng};

    fn random_q8_0(rng: &mut impl Rng, n: usize) -> Vec<BlockQ8_0> {
        let wf: Vec<f32> = (0..n * QK).map(|_| rng.random_range(-1.0..1.0)).collect();
        let mut w = vec![BlockQ8_0::default(); n];
        quantize_q8_0(&wf, &mut w);
        w
    }

    #[test]
    fn pack_then_unpack_gives_the_rows_back() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let (rows, nb) = (16, 3);
        let mut w80 = random_q8_0(&mut rng, rows * nb);
        w80[5].qs[7] = -128; // the file format allows it; +128 must not wrap
        let p80 = pack_rows::<Q8_0x8>(rows, nb, |i| w80[i]);
        for r in 0..rows {
            for (b, got) in unpack_row(&p80, nb, r).enumerate() {
                let want = &w80[r * nb + b];
                assert_eq!((got.d, got.qs), (want.d, want.qs));
            }
        }
    }

    /// Q4_0 groups: pack and unpack round-trip, and every (row, token) is
    /// llama.cpp's repacked sum (`dot_whole_blocks`) bit for bit, alone or
    /// in a batch. Runs on any CPU with AVX2, FMA and F16C (the kernel is
    /// called directly).
    #[test]
    #[cfg(target_arch = "x86_64")]
    fn q4_0_groups_sum_whole_blocks_bit_for_bit() {
        use crate::cpu::blocks::{parse_blocks, BlockQ4_0};
        use crate::cpu::legacy16::dot_whole_blocks;
        if !dot::best().fma {
            eprintln!("skipped: no AVX2/FMA/F16C here, or SERVEBENCH_KERNELS=portable");
            return;
        }
        let mut rng = rand::rngs::StdRng::seed_from_u64(4);
        for (nb, rows, n) in [(1, 8, 1), (18, 16, 1), (48, 24, 3), (18, 8, 4), (5, 40, 9)] {
            let x80 = random_q8_0(&mut rng, n * nb);
            let mut bytes: Vec<u8> = (0..rows * nb * 18).map(|_| rng.random::<u8>()).collect();
            for block in bytes.chunks_exact_mut(18) {
                // d: a small positive f16, so sums stay finite.
                block[..2]
                    .copy_from_slice(&f16::from_f32(rng.random_range(1e-3..1e-2)).to_le_bytes());
            }
            let w40: Vec<BlockQ4_0> = parse_blocks(&bytes);
            let p40 = pack_rows::<Q4_0x8>(rows, nb, |i| w40[i]);
            for r in 0..rows {
                for (b, got) in unpack_row(&p40, nb, r).enumerate() {
                    let want = &w40[r * nb + b];
                    assert_eq!((got.d, got.qs), (want.d, want.qs));
                }
            }
            let s80: Vec<XScales> = x80.iter().map(GroupAct::group_scales).collect();
            let run = |x: &[BlockQ8_0], s: &[XScales]| {
                let mut out = vec![f32::NAN; x.len() / nb * rows];
                let into = OutRows {
                    ptr: out.as_mut_ptr(),
                    stride: rows,
                };
                // SAFETY: the CPU has AVX2, FMA and F16C (checked above);
                // `out` holds every (t, r), all this thread's.
                unsafe { avx2::q4_0_q8_0(&p40, x, s, nb, into) };
                out
            };
            let all = run(&x80, &s80);
            for t in 0..n {
                let xt = t * nb..(t + 1) * nb;
                let one = run(&x80[xt.clone()], &s80[xt.clone()]);
                for r in 0..rows {
                    let want = dot_whole_blocks(&w40[r * nb..(r + 1) * nb], &x80[xt.clone()]);
                    let got = all[t * rows + r];
                    assert_eq!(
                        got.to_bits(),
                        want.to_bits(),
                        "q4_0 nb {nb} r {r} t {t}: {got} vs {want}"
                    );
                    assert_eq!(got.to_bits(), one[r].to_bits(), "q4_0 batch-dependent");
                }
            }
        }
    }

    /// Every (row, token) against the single-row kernel to rounding, and
    /// each token's result the same bits whatever else is in the batch.
    #[test]
    fn kernel_matches_the_single_row_kernel_and_does_not_depend_on_the_batch() {
        let Some(k) = kernels() else {
            eprintln!("skipped: this CPU has no AVX512-VNNI");
            return;
        };
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        for (nb, rows, n) in [
            (1, 16, 1),
            (18, 16, 1),
            (48, 32, 2),
            (18, 16, 3),
            (48, 16, 8),
            (5, 48, 19),
            (18, 64, 4),
            (7, 96, 5),
        ] {
            let x80 = random_q8_0(&mut rng, n * nb);
            let w80 = random_q8_0(&mut rng, rows * nb);
            let p80 = pack_rows::<Q8_0x8>(rows, nb, |i| w80[i]);
            let s80: Vec<XScales> = x80.iter().map(GroupAct::group_scales).collect();
            let run80 = |x: &[BlockQ8_0], s: &[XScales]| {
                let mut out = vec![0f32; x.len() / nb * rows];
                let into = OutRows {
                    ptr: out.as_mut_ptr(),
                    stride: rows,
                };
                // SAFETY: `out` holds every (t, r), all this thread's.
                unsafe { (k.q8_0_q8_0)(&p80, x, s, nb, into) };
                out
            };
            let all80 = run80(&x80, &s80);
            let single = dot::best();
            let close = |got: f32, want: f32| (got - want).abs() <= 1e-5 * (1.0 + want.abs());
            for t in 0..n {
                let xt = t * nb..(t + 1) * nb;
                let one80 = run80(&x80[xt.clone()], &s80[xt.clone()]);
                for r in 0..rows {
                    let want = (single.q8_0_q8_0)(&w80[r * nb..(r + 1) * nb], &x80[xt.clone()]);
                    let got = all80[t * rows + r];
                    assert!(
                        close(got, want),
                        "q8_0 nb {nb} r {r} t {t}: {got} vs {want}"
                    );
                    assert_eq!(got.to_bits(), one80[r].to_bits(), "q8_0 batch-dependent");
                }
            }
        }
    }
}

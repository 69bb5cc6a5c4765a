//! Several weight rows against several activation rows at once: the
//! kernel of every matmul. Each weight block is unpacked and its scales
//! converted once per tile of activation rows held in registers, so a
//! batch of sequences costs far less than that many single dots.
//!
//! Every row's arithmetic is exactly that of the single-row kernels in
//! `dot` (Q5_0, Q5_1: of `legacy16::dot_ggml`; same operations, same
//! order), so a sequence's logits do not depend on what else is in the
//! batch. On AVX512-VNNI CPUs the layers take `legacy16`'s interleaved
//! kernels instead; these serve AVX2 CPUs and row counts that do not fill
//! groups of 16.

use std::sync::OnceLock;

use super::blocks::{BlockQ4_0, BlockQ4_1, BlockQ5_0, BlockQ5_1, BlockQ8_0, BlockQ8_1};
use super::dot;
use super::legacy16::{dot_ggml, dot_whole_blocks};

/// `dot(w[r], x[t])` into `out` at (t, r) for the weight rows stored one
/// after another in `w` and the `n` activation rows in `x`, each `nb` blocks
/// long; `scales` are `x`'s from [`strip_scales`].
///
/// # Safety
/// `out` must be valid for writes at every (t, r) with `t < n` and `r` below
/// `w`'s row count, and nothing else may access those places meanwhile.
pub type RowsKernel<W, X> =
    unsafe fn(w: &[W], x: &[X], scales: &[StripScales], nb: usize, out: OutRows);

/// Where a kernel writes: `dot(w[r], x[t])` goes to `ptr[t * stride + r]`,
/// straight into a `[tokens, rows]` output that several threads fill in
/// disjoint row ranges.
#[derive(Clone, Copy)]
pub struct OutRows {
    pub ptr: *mut f32,
    pub stride: usize,
}

// SAFETY: a plain address; the writers' disjointness is the contract of
// `RowsKernel`.
unsafe impl Send for OutRows {}
unsafe impl Sync for OutRows {}

impl OutRows {
    /// The same output seen from activation row `t`, weight row `r`.
    #[inline(always)]
    pub fn at(self, t: usize, r: usize) -> Self {
        Self {
            ptr: self.ptr.wrapping_add(t * self.stride + r),
            stride: self.stride,
        }
    }

    /// # Safety
    /// As [`RowsKernel`]: (t, r) is a place this writer owns.
    #[inline(always)]
    pub unsafe fn write(self, t: usize, r: usize, v: f32) {
        *self.ptr.add(t * self.stride + r) = v;
    }
}

/// Activation rows are taken in strips of this many.
pub const STRIP: usize = 8;

/// One block column of a strip of activation rows: each row's `s` (Q8_1)
/// side by side, so a kernel applies one weight block's offset to the whole
/// strip in one vector operation, and each row's `d` in `quads`, four rows
/// a vector with the four repeated in both 128-bit halves, so that one
/// multiply by a weight block's `d` gives four rows' `dw * dx` and an
/// in-lane shuffle broadcasts each (`avx2::product`). A multiply per row
/// (`d` stored broadcast to 8 lanes) took a multiplier pipe, which AMD Zen
/// 3 shares between FMAs, `vpmaddwd` and `vpmaddubsw`, from the integer
/// products. `matmul_bench`, one thread, AMD Zen 3, 5 alternating rounds,
/// medians in GMAC/s: 16-bit panels at batch 512, 1536x576 Q8_0 37.3 ->
/// 40.7, Q5_0 37.6 -> 41.1, 576x1536 Q8_0 33.5 -> 35.7, Q5_0 36.2 -> 38.5;
/// Q8_0's sign step at batch 64 level (34.1 -> 33.7).
#[derive(Clone, Copy, Default)]
#[repr(C, align(32))]
pub struct StripScales {
    pub quads: [[f32; 8]; STRIP / 4],
    pub s: [f32; STRIP],
}

/// The scales of `x` (`n` rows of `nb` blocks), converted once per matmul
/// rather than once per weight row: entry `strip * nb + b` holds block `b`
/// of rows `strip * STRIP ..`.
pub fn strip_scales<X: ActScales>(x: &[X], nb: usize) -> Vec<StripScales> {
    let n = x.len() / nb;
    let mut out = vec![StripScales::default(); n.div_ceil(STRIP) * nb];
    for (t, row) in x.chunks_exact(nb).enumerate() {
        for (b, block) in row.iter().enumerate() {
            let [d, s] = block.scales();
            let e = &mut out[(t / STRIP) * nb + b];
            let (q, j) = (t % STRIP / 4, t % 4);
            e.quads[q][j] = d;
            e.quads[q][j + 4] = d;
            e.s[t % STRIP] = s;
        }
    }
    out
}

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
    /// Q4_0 by whole blocks ([`dot_whole_blocks`]): llama.cpp's order for
    /// the matrices it repacks on AVX2 CPUs ([`q4_0_repacked`]).
    pub q4_0_whole: RowsKernel<BlockQ4_0, BlockQ8_0>,
    pub q4_1_q8_1: RowsKernel<BlockQ4_1, BlockQ8_1>,
    pub q8_0_q8_0: RowsKernel<BlockQ8_0, BlockQ8_0>,
    pub q5_0_q8_0: RowsKernel<BlockQ5_0, BlockQ8_0>,
    pub q5_1_q8_1: RowsKernel<BlockQ5_1, BlockQ8_1>,
}

/// One single-row dot per activation row (the reference). SAFETY (the
/// `unsafe` blocks below): the caller keeps [`RowsKernel`]'s contract.
pub const PORTABLE: RowKernels = RowKernels {
    name: "portable",
    q4_0_q8_0: |w, x, _, nb, out| unsafe { each_pair(w, x, nb, out, dot::best().q4_0_q8_0) },
    q4_0_whole: |w, x, _, nb, out| unsafe { each_pair(w, x, nb, out, dot_whole_blocks) },
    q4_1_q8_1: |w, x, _, nb, out| unsafe { each_pair(w, x, nb, out, dot::best().q4_1_q8_1) },
    q8_0_q8_0: |w, x, _, nb, out| unsafe { each_pair(w, x, nb, out, dot::best().q8_0_q8_0) },
    q5_0_q8_0: |w, x, _, nb, out| unsafe { each_pair(w, x, nb, out, dot_ggml) },
    q5_1_q8_1: |w, x, _, nb, out| unsafe { each_pair(w, x, nb, out, dot_ggml) },
};

/// Whether llama.cpp repacks a Q4_0 matrix of `rows` rows here (into
/// `block_q4_0x8`, on CPUs with AVX2, for a multiple of 8 rows) and so
/// sums it by whole blocks ([`RowKernels::q4_0_whole`]).
pub fn q4_0_repacked(rows: usize) -> bool {
    best().name != "portable" && rows.is_multiple_of(8)
}

/// # Safety
/// As [`RowsKernel`].
unsafe fn each_pair<W, X>(w: &[W], x: &[X], nb: usize, out: OutRows, dot: fn(&[W], &[X]) -> f32) {
    for (r, wr) in w.chunks_exact(nb).enumerate() {
        for (t, xr) in x.chunks_exact(nb).enumerate() {
            out.write(t, r, dot(wr, xr));
        }
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
    //! The operations of `dot::avx2` on tiles of R weight rows by N
    //! activation rows: each weight block is unpacked once per tile and each
    //! activation block loaded once per R rows. Strips of 2-4 activation
    //! rows take 2-4 weight rows per tile so the FMA pipes have independent
    //! chains; a single activation row takes weight rows one at a time in
    //! memory order, which measured fastest while the weights stream from
    //! memory (batch-1 decode).
    // Tiles index their accumulators by (weight row, activation row); the
    // const-bounded loops unroll completely.
    #![allow(clippy::needless_range_loop)]
    use super::*;
    use crate::cpu::dot::avx2::{f16_pair, f16_splat, hsum, nibbles};
    use crate::cpu::{with_const, L2_WEIGHT_BLOCK};
    use std::arch::x86_64::*;

    /// The kernels this CPU runs. They are `#[target_feature]` functions:
    /// handing out the AVX2 ones only on CPUs with AVX2, FMA and F16C, and
    /// the VNNI ones only with AVX512-VNNI and AVX512-VL too, is what makes
    /// calling them sound (with `RowsKernel`'s contract for `out`).
    pub fn detect() -> Option<RowKernels> {
        match (
            crate::cpu::dot::avx2::has_avx2_fma_f16c(),
            crate::cpu::dot::avx2::has_vnni_vl(),
        ) {
            (false, _) => None,
            (true, false) => Some(AVX2),
            (true, true) => Some(RowKernels {
                name: "avx2+vnni",
                q4_0_q8_0: q4_0_q8_0_vnni,
                q4_0_whole,
                q4_1_q8_1: q4_1_q8_1_vnni,
                q8_0_q8_0: q8_0_q8_0_vnni,
                q5_0_q8_0: q5_0_q8_0_vnni,
                q5_1_q8_1: q5_1_q8_1_vnni,
            }),
        }
    }

    /// The AVX2 kernels without VNNI (also tested on VNNI CPUs).
    pub const AVX2: RowKernels = RowKernels {
        name: "avx2",
        q4_0_q8_0,
        q4_0_whole,
        q4_1_q8_1,
        q8_0_q8_0,
        q5_0_q8_0,
        q5_1_q8_1,
    };

    /// ggml's `bytes_from_bits_32`: byte v is 0xff where bit v of `qh` is set.
    #[inline(always)]
    unsafe fn bytes_from_bits(qh: [u8; 4]) -> __m256i {
        let spread = _mm256_shuffle_epi8(
            _mm256_set1_epi32(i32::from_le_bytes(qh)),
            _mm256_set_epi64x(
                0x0303030303030303,
                0x0202020202020202,
                0x0101010101010101,
                0,
            ),
        );
        let bits = _mm256_or_si256(spread, _mm256_set1_epi64x(0x7fbfdfeff7fbfdfe));
        _mm256_cmpeq_epi8(bits, _mm256_set1_epi64x(-1))
    }

    /// A weight block whose values ggml multiplies as signed bytes
    /// (`mul_sum_i8_pairs_float`): Q4_0 (`q - 8`), Q5_0 (`q - 16`), Q8_0.
    trait SignedBlock {
        unsafe fn signed(&self) -> __m256i;
        /// From this many activation rows on, [`widened`] prepares each
        /// panel of these blocks once instead of once per strip of 8 rows.
        const WIDEN_FROM_ROWS: usize = usize::MAX;
        /// `d` in every lane.
        unsafe fn splat_scale(&self) -> __m256;
        /// |q| of [`Self::signed`]'s `q`.
        #[inline(always)]
        unsafe fn magnitudes(&self, q: __m256i) -> __m256i {
            _mm256_sign_epi8(q, q)
        }
        /// The block as the tile multiplies it: the same signed bytes,
        /// their magnitudes and the same `d`, so `Signed<Wide>` gives this
        /// block's results bit for bit.
        #[inline(always)]
        unsafe fn widen(&self) -> Wide {
            let mut out = Wide {
                q: [0; 32],
                abs: [0; 32],
                d: _mm256_cvtss_f32(self.splat_scale()),
            };
            let q = self.signed();
            _mm256_storeu_si256(out.q.as_mut_ptr() as *mut __m256i, q);
            _mm256_storeu_si256(out.abs.as_mut_ptr() as *mut __m256i, _mm256_sign_epi8(q, q));
            out
        }
    }

    impl SignedBlock for BlockQ4_0 {
        #[inline(always)]
        unsafe fn signed(&self) -> __m256i {
            _mm256_sub_epi8(nibbles(&self.qs), _mm256_set1_epi8(8))
        }
        #[inline(always)]
        unsafe fn splat_scale(&self) -> __m256 {
            f16_splat(&self.d)
        }
    }

    impl SignedBlock for BlockQ5_0 {
        /// Ahead from 32 rows ([`widened`]'s figures).
        const WIDEN_FROM_ROWS: usize = 32;
        #[inline(always)]
        unsafe fn signed(&self) -> __m256i {
            let high = _mm256_andnot_si256(bytes_from_bits(self.qh), _mm256_set1_epi8(-16));
            _mm256_or_si256(nibbles(&self.qs), high)
        }
        #[inline(always)]
        unsafe fn splat_scale(&self) -> __m256 {
            f16_splat(&self.d)
        }
    }

    impl SignedBlock for BlockQ8_0 {
        /// Its bytes need no unpacking, so only the magnitudes and the
        /// f32 scale are saved: level at 64 rows, ahead from 128.
        const WIDEN_FROM_ROWS: usize = 128;
        #[inline(always)]
        unsafe fn signed(&self) -> __m256i {
            _mm256_loadu_si256(self.qs.as_ptr() as *const __m256i)
        }
        #[inline(always)]
        unsafe fn splat_scale(&self) -> __m256 {
            f16_splat(&self.d)
        }
    }

    /// A weight block as [`widened`] keeps it on CPUs with VNNI: the signed
    /// bytes, their magnitudes and `d` as f32, so a strip's pass over it
    /// only loads.
    #[derive(Clone, Copy)]
    #[repr(C, align(4))]
    struct Wide {
        q: [i8; 32],
        abs: [u8; 32],
        d: f32,
    }

    impl SignedBlock for Wide {
        #[inline(always)]
        unsafe fn signed(&self) -> __m256i {
            _mm256_loadu_si256(self.q.as_ptr() as *const __m256i)
        }
        #[inline(always)]
        unsafe fn splat_scale(&self) -> __m256 {
            _mm256_broadcast_ss(&self.d)
        }
        #[inline(always)]
        unsafe fn magnitudes(&self, _: __m256i) -> __m256i {
            _mm256_loadu_si256(self.abs.as_ptr() as *const __m256i)
        }
    }

    /// A weight block as [`widened`] keeps it on AVX2 CPUs without VNNI:
    /// the signed values as 16-bit integers in [`spread16`]'s order and `d`
    /// as f32. Against activations spread the same way ([`Act16`]), two
    /// `vpmaddwd`s and an add give each lane the same four products'
    /// integer sum that `vpsignb`, `vpmaddubsw` and `vpmaddwd` give (its
    /// 16-bit sums cannot saturate here, see [`mul_sum_us8`]), one vector
    /// operation fewer a pair. The step alone (`pair_bound`, AMD Zen 3):
    /// 2.40-2.41 -> 1.99-2.06 cycles a pair. `matmul_bench`, one thread,
    /// batch 512, AMD Zen 3, 3 alternating rounds, GMAC/s against `Wide`
    /// panels: 1536x576 Q8_0 37.0-38.3 -> 41.1-42.3, Q5_0 36.9-38.7 ->
    /// 39.7-42.3; 576x1536 Q8_0 36.1-37.6 -> 36.2-37.5, Q5_0 34.7-36.7 ->
    /// 35.6-38.6.
    #[derive(Clone, Copy)]
    #[repr(C, align(4))]
    struct Wide16 {
        q: [i16; 32],
        d: f32,
    }

    /// An activation block's values in [`spread16`]'s order.
    #[derive(Clone, Copy)]
    #[repr(C, align(32))]
    struct Act16([i16; 32]);

    /// 32 signed bytes into `out` as two vectors of 16-bit values: lanes
    /// 2j and 2j+1 of the first hold bytes 4j and 4j+1, of the second bytes
    /// 4j+2 and 4j+3, so `vpmaddwd` of each against another block's spread
    /// and the sum of the two put bytes 4j..4j+3's products in 32-bit lane
    /// j, where `maddubs` + `madd` put them.
    #[inline(always)]
    unsafe fn spread16(q: __m256i, out: &mut [i16; 32]) {
        let order = _mm256_setr_epi8(
            0, 1, 4, 5, 8, 9, 12, 13, 2, 3, 6, 7, 10, 11, 14, 15, //
            0, 1, 4, 5, 8, 9, 12, 13, 2, 3, 6, 7, 10, 11, 14, 15,
        );
        // Each half is [its first pairs | its second pairs]; gather the
        // first pairs of both halves into the low half.
        let s = _mm256_permute4x64_epi64::<0b11_01_10_00>(_mm256_shuffle_epi8(q, order));
        let out = out.as_mut_ptr() as *mut __m256i;
        _mm256_storeu_si256(out, _mm256_cvtepi8_epi16(_mm256_castsi256_si128(s)));
        _mm256_storeu_si256(
            out.add(1),
            _mm256_cvtepi8_epi16(_mm256_extracti128_si256::<1>(s)),
        );
    }

    impl Wide16 {
        #[inline(always)]
        unsafe fn from<B: SignedBlock>(b: &B) -> Self {
            let mut out = Self {
                q: [0; 32],
                d: _mm256_cvtss_f32(b.splat_scale()),
            };
            spread16(b.signed(), &mut out.q);
            out
        }
    }

    impl Act16 {
        #[inline(always)]
        unsafe fn from(b: &BlockQ8_0) -> Self {
            let mut out = Self([0; 32]);
            spread16(
                _mm256_loadu_si256(b.qs.as_ptr() as *const __m256i),
                &mut out.0,
            );
            out
        }
    }

    /// `dw · d_x` for each row of a strip, four rows a vector in both
    /// halves ([`StripScales::quads`]): two multiplies per block for the
    /// whole strip instead of one per row, each of which took a slot of the
    /// multiplier pipes that `vpmaddwd`, `vpmaddubsw` and FMAs share on AMD
    /// Zen 3.
    #[inline(always)]
    unsafe fn strip_products(dw: __m256, scb: &StripScales) -> [__m256; STRIP / 4] {
        std::array::from_fn(|q| _mm256_mul_ps(dw, _mm256_load_ps(scb.quads[q].as_ptr())))
    }

    /// Row `t`'s `dw · d_x` from [`strip_products`] in all 8 lanes: the
    /// same float the multiply per row gave, by an in-lane shuffle.
    #[inline(always)]
    unsafe fn product(quads: &[__m256; STRIP / 4], t: usize) -> __m256 {
        let quad = quads[t / 4];
        match t % 4 {
            0 => _mm256_permute_ps::<0x00>(quad),
            1 => _mm256_permute_ps::<0x55>(quad),
            2 => _mm256_permute_ps::<0xAA>(quad),
            _ => _mm256_permute_ps::<0xFF>(quad),
        }
    }

    /// [`Signed`]'s step on [`Wide16`] and [`Act16`] blocks for one
    /// weight row `w` against a strip of N activation rows `x` (`stride`
    /// blocks apart) over blocks `first..first + w.len()`, adding to `from`
    /// (the sums of the blocks before `first`, or none): the same integers
    /// in the same lanes, so the same results bit for bit.
    #[inline(always)]
    unsafe fn madd16<const N: usize>(
        w: &[Wide16],
        x: &[Act16],
        sc: &[StripScales],
        first: usize,
        stride: usize,
        from: Option<&[__m256]>,
    ) -> [__m256; N] {
        let mut acc: [__m256; N] = match from {
            Some(sums) => std::array::from_fn(|t| sums[t]),
            None => [_mm256_setzero_ps(); N],
        };
        for (k, wb) in w.iter().enumerate() {
            let b = first + k;
            let q = wb.q.as_ptr() as *const __m256i;
            let (w0, w1) = (_mm256_loadu_si256(q), _mm256_loadu_si256(q.add(1)));
            let dw = _mm256_broadcast_ss(&wb.d);
            let scb = sc.get_unchecked(b);
            let quads = strip_products(dw, scb);
            for t in 0..N {
                let xq = x.get_unchecked(t * stride + b).0.as_ptr() as *const __m256i;
                let sums = _mm256_add_epi32(
                    _mm256_madd_epi16(w0, _mm256_load_si256(xq)),
                    _mm256_madd_epi16(w1, _mm256_load_si256(xq.add(1))),
                );
                let d = product(&quads, t);
                acc[t] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(sums), acc[t]);
            }
        }
        acc
    }

    /// A `d * q + m` weight block (starting with `d`, `m`, as `f16_pair`
    /// reads them) whose values ggml multiplies as unsigned bytes: Q4_1,
    /// Q5_1.
    trait OffsetBlock {
        unsafe fn unsigned(&self) -> __m256i;
    }

    impl OffsetBlock for BlockQ4_1 {
        #[inline(always)]
        unsafe fn unsigned(&self) -> __m256i {
            nibbles(&self.qs)
        }
    }

    impl OffsetBlock for BlockQ5_1 {
        #[inline(always)]
        unsafe fn unsigned(&self) -> __m256i {
            let high = _mm256_and_si256(bytes_from_bits(self.qh), _mm256_set1_epi8(0x10));
            _mm256_or_si256(nibbles(&self.qs), high)
        }
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

    /// One weight type's tile: `dot(w[r], x[t])` into `out` at (t, r) for
    /// `r < R`, `t < N`, where `w` holds R rows and `x` N rows of `nb`
    /// blocks each.
    trait Tile {
        type W;
        type X;
        unsafe fn tile<const R: usize, const N: usize>(
            w: &[Self::W],
            x: &[Self::X],
            sc: &[StripScales],
            nb: usize,
            out: OutRows,
        );
    }

    /// Covers `w` (rows x nb) times `x` (n x nb) with tiles: panels of
    /// [`L2_WEIGHT_BLOCK`] bytes of weight rows, each strip of up to 8
    /// activation rows (in L1) meeting every row of a panel (in L2) in
    /// turn, with as many weight rows per tile as the registers hold.
    /// Panels of 16 rows would stream every activation row's blocks and
    /// scales from L3 once per panel (Q8_0: 643 KB for 512 rows of 576
    /// columns); measured `matmul_bench`, 2 threads, batch 512, AMD Zen 3,
    /// Q8_0 1536x576 and 576x1536: ~5% more GMAC/s with the larger panels.
    #[inline(always)]
    unsafe fn tiled<T: Tile>(w: &[T::W], x: &[T::X], sc: &[StripScales], nb: usize, out: OutRows) {
        let panel = panel_rows::<T::W>(nb);
        let n = x.len() / nb;
        for (p, w) in w.chunks(panel * nb).enumerate() {
            let mut t = 0;
            while t < n {
                let strip = (n - t).min(STRIP);
                let x = &x[t * nb..(t + strip) * nb];
                let sc = &sc[(t / STRIP) * nb..(t / STRIP + 1) * nb];
                let out = out.at(t, p * panel);
                with_const!(strip, N in [8, 7, 6, 5, 4, 3, 2, 1] => {
                    // Narrower strips take more weight rows at a time.
                    const R: usize = match N {
                        2 => 4,
                        3 | 4 => 2,
                        _ => 1,
                    };
                    rows_by::<T, R, N>(w, x, sc, nb, out)
                });
                t += strip;
            }
        }
    }

    /// Weight rows of `nb` blocks of `W` in one panel: [`L2_WEIGHT_BLOCK`]
    /// bytes, at least one row.
    #[inline(always)]
    fn panel_rows<W>(nb: usize) -> usize {
        (L2_WEIGHT_BLOCK / (nb * size_of::<W>())).max(1)
    }

    /// All weight rows against one strip of N activation rows, R at a time.
    #[inline(always)]
    unsafe fn rows_by<T: Tile, const R: usize, const N: usize>(
        w: &[T::W],
        x: &[T::X],
        sc: &[StripScales],
        nb: usize,
        out: OutRows,
    ) {
        let rows = w.len() / nb;
        let mut r = 0;
        while rows - r >= R {
            T::tile::<R, N>(&w[r * nb..(r + R) * nb], x, sc, nb, out.at(0, r));
            r += R;
        }
        while r < rows {
            T::tile::<1, N>(&w[r * nb..(r + 1) * nb], x, sc, nb, out.at(0, r));
            r += 1;
        }
    }

    /// Asks for the weights 2 KiB past this block while it is worked on:
    /// with few activation rows the weights stream from memory, and this
    /// VM's hardware prefetch alone leaves a single thread at ~8 GB/s.
    /// Measured (`matmul_bench`, COPIES=40, one thread): batch-1 Q4_1
    /// 1536x576 ~10 -> ~14 GMAC/s against prefetching the next row.
    #[inline(always)]
    unsafe fn prefetch_ahead<B>(block: &B) {
        const AHEAD: usize = 2048;
        let ahead = (block as *const B as *const u8).wrapping_add(AHEAD);
        _mm_prefetch::<_MM_HINT_T0>(ahead as *const i8);
    }

    struct Offset<B, const VNNI: bool>(std::marker::PhantomData<B>);

    impl<B: OffsetBlock, const VNNI: bool> Tile for Offset<B, VNNI> {
        type W = B;
        type X = BlockQ8_1;

        #[inline(always)]
        unsafe fn tile<const R: usize, const N: usize>(
            w: &[B],
            x: &[BlockQ8_1],
            sc: &[StripScales],
            nb: usize,
            out: OutRows,
        ) {
            let mut acc = [[_mm256_setzero_ps(); N]; R];
            // Row r's offsets for the strip's rows, one per lane: the same
            // `m * s` FMAs as the single-row kernel, 8 at a time.
            let mut offsets = [_mm256_setzero_ps(); R];
            for b in 0..nb {
                let scb = sc.get_unchecked(b);
                let sx = _mm256_load_ps(scb.s.as_ptr());
                for r in 0..R {
                    let wb = w.get_unchecked(r * nb + b);
                    prefetch_ahead(wb);
                    let (dw, mw) = f16_pair(wb);
                    let quads = strip_products(_mm256_set1_ps(dw), scb);
                    offsets[r] = _mm256_fmadd_ps(_mm256_set1_ps(mw), sx, offsets[r]);
                    let qw = wb.unsigned();
                    for t in 0..N {
                        let xb = x.get_unchecked(t * nb + b);
                        let qx = _mm256_loadu_si256(xb.qs.as_ptr() as *const __m256i);
                        let d = product(&quads, t);
                        acc[r][t] = _mm256_fmadd_ps(d, mul_sum_us8::<VNNI>(qw, qx), acc[r][t]);
                    }
                }
            }
            for r in 0..R {
                let mut offs = [0f32; STRIP];
                _mm256_storeu_ps(offs.as_mut_ptr(), offsets[r]);
                for t in 0..N {
                    out.write(t, r, hsum(acc[r][t]) + offs[t]);
                }
            }
        }
    }

    struct Signed<B, const VNNI: bool>(std::marker::PhantomData<B>);

    impl<B: SignedBlock, const VNNI: bool> Tile for Signed<B, VNNI> {
        type W = B;
        type X = BlockQ8_0;

        #[inline(always)]
        unsafe fn tile<const R: usize, const N: usize>(
            w: &[B],
            x: &[BlockQ8_0],
            sc: &[StripScales],
            nb: usize,
            out: OutRows,
        ) {
            let mut acc = [[_mm256_setzero_ps(); N]; R];
            for b in 0..nb {
                for r in 0..R {
                    let wb = w.get_unchecked(r * nb + b);
                    prefetch_ahead(wb);
                    let quads = strip_products(wb.splat_scale(), sc.get_unchecked(b));
                    let qw = wb.signed();
                    // The sign trick of `mul_sum_i8`: |w| once, w's signs on each x.
                    let aw = wb.magnitudes(qw);
                    for t in 0..N {
                        let xb = x.get_unchecked(t * nb + b);
                        let d = product(&quads, t);
                        let qx = _mm256_loadu_si256(xb.qs.as_ptr() as *const __m256i);
                        let sx = _mm256_sign_epi8(qx, qw);
                        acc[r][t] = _mm256_fmadd_ps(d, mul_sum_us8::<VNNI>(aw, sx), acc[r][t]);
                    }
                }
            }
            for r in 0..R {
                for t in 0..N {
                    out.write(t, r, hsum(acc[r][t]));
                }
            }
        }
    }

    /// [`RowKernels::q4_0_whole`]: 8 weight rows at a time, each block's
    /// 32-product integer sums of the 8 rows gathered into one vector
    /// (`hadd`s), converted and added with one FMA times `d_w · d_x`, as
    /// ggml's `gemv_q4_b32_8x8_q8_0_lut_avx` does; rows past the last 8 by
    /// the scalar formula, which gives the same numbers.
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn q4_0_whole(
        w: &[BlockQ4_0],
        x: &[BlockQ8_0],
        _: &[StripScales],
        nb: usize,
        out: OutRows,
    ) {
        let (rows, n) = (w.len() / nb, x.len() / nb);
        // Σ q·x with the stored nibbles q (0..15, `maddubs`' unsigned
        // side) minus 8·Σ x gives Σ (q - 8)·x exactly.
        let ones = _mm256_set1_epi16(1);
        let x8: Vec<i32> = x
            .iter()
            .map(|b| 8 * b.qs.iter().map(|&v| v as i32).sum::<i32>())
            .collect();
        // Activation rows per pass over a group's blocks.
        const T: usize = 4;
        let whole = rows - rows % 8;
        for r in (0..whole).step_by(8) {
            let mut t0 = 0;
            while t0 < n {
                let tn = (n - t0).min(T);
                let mut acc = [_mm256_setzero_ps(); T];
                for b in 0..nb {
                    let wb: [&BlockQ4_0; 8] =
                        std::array::from_fn(|i| w.get_unchecked((r + i) * nb + b));
                    let q: [__m256i; 8] = std::array::from_fn(|i| nibbles(&wb[i].qs));
                    let bits: [i16; 8] = std::array::from_fn(|i| wb[i].d.to_bits() as i16);
                    let dw = _mm256_cvtph_ps(_mm_loadu_si128(bits.as_ptr() as *const __m128i));
                    for (t, acc) in acc.iter_mut().enumerate().take(tn) {
                        let xb = x.get_unchecked((t0 + t) * nb + b);
                        let y = _mm256_loadu_si256(xb.qs.as_ptr() as *const __m256i);
                        let s: [__m256i; 8] = std::array::from_fn(|i| {
                            _mm256_madd_epi16(ones, _mm256_maddubs_epi16(q[i], y))
                        });
                        // Lane i of `total`: the 8 lanes of s[i] summed.
                        let h0 = _mm256_hadd_epi32(s[0], s[1]);
                        let h1 = _mm256_hadd_epi32(s[2], s[3]);
                        let h2 = _mm256_hadd_epi32(s[4], s[5]);
                        let h3 = _mm256_hadd_epi32(s[6], s[7]);
                        let g0 = _mm256_hadd_epi32(h0, h1);
                        let g1 = _mm256_hadd_epi32(h2, h3);
                        let total = _mm256_add_epi32(
                            _mm256_permute2x128_si256::<0x20>(g0, g1),
                            _mm256_permute2x128_si256::<0x31>(g0, g1),
                        );
                        let bias = _mm256_set1_epi32(*x8.get_unchecked((t0 + t) * nb + b));
                        let sums = _mm256_cvtepi32_ps(_mm256_sub_epi32(total, bias));
                        let dx = _mm256_set1_ps(xb.d.to_f32());
                        *acc = _mm256_fmadd_ps(sums, _mm256_mul_ps(dw, dx), *acc);
                    }
                }
                for (t, acc) in acc.iter().enumerate().take(tn) {
                    _mm256_storeu_ps(out.at(t0 + t, r).ptr, *acc);
                }
                t0 += tn;
            }
        }
        for r in whole..rows {
            for t in 0..n {
                let v = dot_whole_blocks(&w[r * nb..(r + 1) * nb], &x[t * nb..(t + 1) * nb]);
                out.write(t, r, v);
            }
        }
    }

    thread_local! {
        /// [`widened`]'s panel, kept between calls.
        static WIDE: std::cell::Cell<Vec<Wide>> = const { std::cell::Cell::new(Vec::new()) };
    }

    /// `tiled` over `w`, or from [`SignedBlock::WIDEN_FROM_ROWS`]
    /// activation rows on over panels of `w` prepared once each: as
    /// [`Wide16`] blocks ([`widened16`]) on CPUs without VNNI, else as
    /// [`Wide`] blocks ([`SignedBlock::widen`]) that `tiled` multiplies with
    /// the same products and the same float steps. Either way the unpacking
    /// (Q5_0's 5 bits, ~9 instructions a block; the f16 scale of any type)
    /// runs once per panel instead of once per strip of 8 rows. Q5_0 had
    /// cost `matmul_bench` ~20% against Q8_0. Measured with `Wide` panels
    /// on AVX2 (1536x576, one thread, AMD Zen 3, 3 alternating rounds,
    /// GMAC/s): Q5_0 batch 512 32.3-32.5 -> 38.6-39.1, batch 64 31.1-31.3
    /// -> 33.7-35.2, batch 32 30.3-31.6 -> 30.3-33.4; Q8_0 batch 512
    /// 37.4-37.6 -> 38.6-38.9, batch 128 35.9-36.7 -> 35.8-37.2, batch 64
    /// level.
    #[inline(always)]
    unsafe fn widened<B: SignedBlock, const VNNI: bool>(
        w: &[B],
        x: &[BlockQ8_0],
        sc: &[StripScales],
        nb: usize,
        out: OutRows,
    ) {
        if x.len() / nb < B::WIDEN_FROM_ROWS {
            return tiled::<Signed<B, VNNI>>(w, x, sc, nb, out);
        }
        if !VNNI {
            return widened16(w, x, sc, nb, out);
        }
        // Panels sized as `tiled` sizes Wide's, so each is one of its panels.
        let panel = panel_rows::<Wide>(nb);
        // Out of the cell rather than borrowed in a closure, so the loops
        // stay in this function and keep its target features.
        let mut wide = WIDE.take();
        for (p, w) in w.chunks(panel * nb).enumerate() {
            wide.clear();
            wide.reserve(w.len());
            for b in w {
                wide.push(b.widen());
            }
            tiled::<Signed<Wide, VNNI>>(&wide, x, sc, nb, out.at(0, p * panel));
        }
        WIDE.set(wide);
    }

    /// [`widened16`]'s panel, strip and sums, kept between calls.
    type Buffers16 = (Vec<Wide16>, Vec<Act16>, Vec<[__m256; STRIP]>);

    thread_local! {
        static WIDE16: std::cell::Cell<Buffers16> =
            const { std::cell::Cell::new((Vec::new(), Vec::new(), Vec::new())) };
    }

    /// [`widened`] without VNNI: each panel of weights widened to
    /// [`Wide16`] once, each strip of activation rows spread to [`Act16`]
    /// once per panel, then every row of the panel against the strip by
    /// [`madd16`], in passes over at most 24 blocks so that the strip's part
    /// stays in L1 (8 rows of 48 16-bit blocks, 24 KiB, had left
    /// `matmul_bench` 576x1536 at 28.6 GMAC/s against 37.4 before; a row's
    /// sums wait in memory between passes, in the same lanes and order).
    #[inline(always)]
    unsafe fn widened16<B: SignedBlock>(
        w: &[B],
        x: &[BlockQ8_0],
        sc: &[StripScales],
        nb: usize,
        out: OutRows,
    ) {
        let panel = panel_rows::<Wide16>(nb);
        let n = x.len() / nb;
        let chunk = nb.div_ceil(nb.div_ceil(24));
        let (mut wide, mut act, mut sums) = WIDE16.take();
        // Loops, not closures, so the spreading keeps this function's
        // target features.
        for (p, w) in w.chunks(panel * nb).enumerate() {
            wide.clear();
            wide.reserve(w.len());
            for b in w {
                wide.push(Wide16::from(b));
            }
            let rows = w.len() / nb;
            sums.resize(rows, [_mm256_setzero_ps(); STRIP]);
            let mut t = 0;
            while t < n {
                let strip = (n - t).min(STRIP);
                act.clear();
                act.reserve(strip * nb);
                for b in &x[t * nb..(t + strip) * nb] {
                    act.push(Act16::from(b));
                }
                let sc = &sc[(t / STRIP) * nb..(t / STRIP + 1) * nb];
                let out = out.at(t, p * panel);
                with_const!(strip, N in [8, 7, 6, 5, 4, 3, 2, 1] => {
                    for first in (0..nb).step_by(chunk) {
                        let end = (first + chunk).min(nb);
                        for (r, kept) in sums.iter_mut().enumerate().take(rows) {
                            let from = (first > 0).then_some(&kept[..]);
                            let wr = &wide[r * nb + first..r * nb + end];
                            let acc = madd16::<N>(wr, &act, sc, first, nb, from);
                            if end < nb {
                                kept[..N].copy_from_slice(&acc);
                            } else {
                                for (t, acc) in acc.iter().enumerate() {
                                    out.write(t, r, hsum(*acc));
                                }
                            }
                        }
                    }
                });
                t += strip;
            }
        }
        WIDE16.set((wide, act, sums));
    }

    /// A kernel entry point with `$features` on: `widened` over blocks `$b`
    /// against Q8_0 activations, or `tiled` over `$tile`.
    macro_rules! kernel {
        ($name:ident, $features:literal, widened $b:ty, $vnni:literal) => {
            #[target_feature(enable = $features)]
            unsafe fn $name(
                w: &[$b],
                x: &[BlockQ8_0],
                sc: &[StripScales],
                nb: usize,
                out: OutRows,
            ) {
                widened::<$b, $vnni>(w, x, sc, nb, out)
            }
        };
        ($name:ident, $features:literal, $tile:ty, $w:ty, $x:ty) => {
            #[target_feature(enable = $features)]
            unsafe fn $name(w: &[$w], x: &[$x], sc: &[StripScales], nb: usize, out: OutRows) {
                tiled::<$tile>(w, x, sc, nb, out)
            }
        };
    }
    kernel!(q4_0_q8_0, "avx2,fma,f16c", Signed<BlockQ4_0, false>, BlockQ4_0, BlockQ8_0);
    kernel!(q4_1_q8_1, "avx2,fma,f16c", Offset<BlockQ4_1, false>, BlockQ4_1, BlockQ8_1);
    kernel!(q8_0_q8_0, "avx2,fma,f16c", widened BlockQ8_0, false);
    kernel!(q5_0_q8_0, "avx2,fma,f16c", widened BlockQ5_0, false);
    kernel!(q5_1_q8_1, "avx2,fma,f16c", Offset<BlockQ5_1, false>, BlockQ5_1, BlockQ8_1);
    kernel!(q4_0_q8_0_vnni, "avx2,fma,f16c,avx512vnni,avx512vl", Signed<BlockQ4_0, true>, BlockQ4_0, BlockQ8_0);
    kernel!(q4_1_q8_1_vnni, "avx2,fma,f16c,avx512vnni,avx512vl", Offset<BlockQ4_1, true>, BlockQ4_1, BlockQ8_1);
    kernel!(q8_0_q8_0_vnni, "avx2,fma,f16c,avx512vnni,avx512vl", widened BlockQ8_0, true);
    kernel!(q5_0_q8_0_vnni, "avx2,fma,f16c,avx512vnni,avx512vl", widened BlockQ5_0, true);
    kernel!(q5_1_q8_1_vnni, "avx2,fma,f16c,avx512vnni,avx512vl", Offset<BlockQ5_1, true>, BlockQ5_1, BlockQ8_1);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::blocks::{parse_blocks, quantize_q8_0, quantize_q8_1, random_q4_1, FromBytes};
    use rand::{Rng, SeedableRng};

    #[test]
    fn every_pair_equals_the_single_row_kernel_bit_for_bit() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        // (blocks per row, weight rows, activation rows): every strip width
        // and both full and partial row tiles.
        for (nb, wrows, rows) in [
            (1, 1, 1),
            (18, 5, 1),
            (18, 9, 2),
            (18, 3, 3),
            (48, 6, 4),
            (5, 5, 5),
            (3, 3, 6),
            (48, 4, 7),
            (18, 9, 8),
            (5, 3, 19),
            (3, 7, 16),
            // More weight rows than a panel holds, for every type.
            (1, 8000, 9),
            // Widened Q5_0 panels but not Q8_0's; without VNNI two passes
            // over each strip's blocks.
            (48, 90, 40),
            // Enough activation rows for widened Q5_0 and Q8_0 panels,
            // and more weight rows than one of them holds.
            (18, 300, 130),
        ] {
            let w41 = random_q4_1(&mut rng, wrows * nb);
            let xf: Vec<f32> = (0..rows * nb * 32)
                .map(|_| rng.random_range(-4.0..4.0))
                .collect();
            let wf: Vec<f32> = (0..wrows * nb * 32)
                .map(|_| rng.random_range(-1.0..1.0))
                .collect();
            let mut x81 = vec![BlockQ8_1::default(); rows * nb];
            let mut x80 = vec![BlockQ8_0::default(); rows * nb];
            let mut w80 = vec![BlockQ8_0::default(); wrows * nb];
            for r in 0..rows {
                let xr = &xf[r * nb * 32..(r + 1) * nb * 32];
                quantize_q8_1(xr, &mut x81[r * nb..(r + 1) * nb]);
                quantize_q8_0(xr, &mut x80[r * nb..(r + 1) * nb]);
            }
            quantize_q8_0(&wf, &mut w80);
            let single = dot::best();
            let mut out = vec![0f32; wrows * rows];
            let sc81 = strip_scales(&x81, nb);
            let sc80 = strip_scales(&x80, nb);
            let random = |rng: &mut rand::rngs::StdRng, size: usize| -> Vec<u8> {
                (0..wrows * nb * size).map(|_| rng.random::<u8>()).collect()
            };
            let w40: Vec<BlockQ4_0> = with_scales(random(&mut rng, 18), 1);
            let w50: Vec<BlockQ5_0> = with_scales(random(&mut rng, 22), 1);
            let w51: Vec<BlockQ5_1> = with_scales(random(&mut rng, 24), 2);
            for k in [best(), &avx2_kernels()] {
                let mut run =
                    |name: &str, f: &dyn Fn(OutRows), want: &dyn Fn(usize, usize) -> f32| {
                        out.fill(f32::NAN);
                        f(OutRows {
                            ptr: out.as_mut_ptr(),
                            stride: wrows,
                        });
                        for (w, t) in (0..wrows).flat_map(|w| (0..rows).map(move |t| (w, t))) {
                            let (got, want) = (out[t * wrows + w], want(w, t));
                            assert_eq!(
                                got.to_bits(),
                                want.to_bits(),
                                "{} {name} nb {nb} w {w} t {t}",
                                k.name
                            );
                        }
                    };
                let (wr, xr) = (
                    |w: usize| w * nb..(w + 1) * nb,
                    |t: usize| t * nb..(t + 1) * nb,
                );
                // SAFETY (each call): `out` holds rows x wrows places, all this thread's.
                run(
                    "q4_1",
                    &|o| unsafe { (k.q4_1_q8_1)(&w41, &x81, &sc81, nb, o) },
                    &|w, t| (single.q4_1_q8_1)(&w41[wr(w)], &x81[xr(t)]),
                );
                run(
                    "q8_0",
                    &|o| unsafe { (k.q8_0_q8_0)(&w80, &x80, &sc80, nb, o) },
                    &|w, t| (single.q8_0_q8_0)(&w80[wr(w)], &x80[xr(t)]),
                );
                run(
                    "q4_0",
                    &|o| unsafe { (k.q4_0_q8_0)(&w40, &x80, &sc80, nb, o) },
                    &|w, t| (single.q4_0_q8_0)(&w40[wr(w)], &x80[xr(t)]),
                );
                run(
                    "q4_0 whole blocks",
                    &|o| unsafe { (k.q4_0_whole)(&w40, &x80, &sc80, nb, o) },
                    &|w, t| dot_whole_blocks(&w40[wr(w)], &x80[xr(t)]),
                );
                run(
                    "q5_0",
                    &|o| unsafe { (k.q5_0_q8_0)(&w50, &x80, &sc80, nb, o) },
                    &|w, t| dot_ggml(&w50[wr(w)], &x80[xr(t)]),
                );
                run(
                    "q5_1",
                    &|o| unsafe { (k.q5_1_q8_1)(&w51, &x81, &sc81, nb, o) },
                    &|w, t| dot_ggml(&w51[wr(w)], &x81[xr(t)]),
                );
            }
        }
    }

    /// `bytes` as blocks of `B` with valid scales: a small d (and m) in
    /// every block.
    fn with_scales<B: FromBytes>(mut bytes: Vec<u8>, scales: usize) -> Vec<B> {
        for block in bytes.chunks_exact_mut(B::SIZE) {
            for s in 0..scales {
                let v = half::f16::from_f32(0.01 - 0.02 * s as f32).to_le_bytes();
                block[2 * s..2 * s + 2].copy_from_slice(&v);
            }
        }
        parse_blocks(&bytes)
    }

    /// The AVX2 kernels without VNNI where the CPU runs them, else the
    /// portable ones.
    fn avx2_kernels() -> RowKernels {
        #[cfg(target_arch = "x86_64")]
        if dot::best().fma {
            return avx2::AVX2;
        }
        PORTABLE
    }
}

//! Weight rows interleaved by eights, for CPUs with AVX512 (F, BW, VL,
//! VNNI): one `vpdpbusd` advances 8 rows at once (lane j holds 4 bytes of
//! row j) against 4 bytes of one activation row broadcast from memory, so
//! nothing is summed across lanes per row and the per-block scales are
//! applied to 8 (or, two groups at a time, 16) rows per instruction.
//!
//! Q4_1 (the layers' weights) keeps ggml's float arithmetic exactly: each
//! row's 8 accumulator lanes become 8 vectors (lane = row), reduced at the
//! end in the order of ggml's `hsum_float_8`, so a row's result is the
//! single-row kernel's, bit for bit, and the model's logits stay equal to
//! llama.cpp's (`parity_llamacpp`). That costs a convert and an FMA per 4
//! products; measured (`matmul_bench`, one thread, Q4_1 1536x576) against
//! the row-at-a-time tiles of `dot_rows`: batch 20 ~42 -> ~52 GMAC/s,
//! batch 8 ~34 -> ~37, batch 1 unchanged (weights stream from memory).
//! Batches of 3 or more unpack a pair of groups once into an L1 buffer and
//! run strips of 3 activation rows over it, asking for the weights two
//! pairs ahead meanwhile: batch 8, weights streaming (COPIES=40),
//! 1536x576 ~46 -> ~54 GMAC/s, 576x1536 ~34 -> ~44.
//!
//! Q8_0 is only interleaved for the output projection
//! (`Role::OutputProjection`), where it sums whole blocks in
//! integers and scales once per block: ~2x faster, last-bit rounding
//! differences in the logits, which nothing quantizes again (tested
//! against the single-row kernel to 1e-5 relative).
//!
//! Either way a (weight row, activation row) pair's arithmetic does not
//! depend on the other rows of the batch, so a sequence's logits are the
//! same alone or batched.

use std::sync::OnceLock;

use half::f16;

use super::blocks::{BlockQ4_1, BlockQ8_0, BlockQ8_1, QK};
use super::dot_rows::OutRows;

/// Weight rows per group.
pub const GROUP: usize = 8;

/// Block column `b` of 8 Q4_1 rows. Byte `4j + i` of the 32-byte lane
/// group `k` holds value `4k + i` of row j in its low nibble and value
/// `4k + 16 + i` in its high nibble (k < 4), so two masks give the 8
/// vectors `vpdpbusd` takes.
#[derive(Clone, Copy)]
#[repr(C)]
pub struct Q4_1x8 {
    pub d: [f16; GROUP],
    pub m: [f16; GROUP],
    pub qs: [u8; 4 * 32],
}

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

impl Interleave for Q4_1x8 {
    type Row = BlockQ4_1;
    fn pack(rows: [&BlockQ4_1; GROUP]) -> Self {
        let mut qs = [0u8; 128];
        for (j, w) in rows.iter().enumerate() {
            for i in 0..16 {
                let (k, at) = (i / 4, i % 4);
                qs[32 * k + 4 * j + at] = w.qs[i];
            }
        }
        Self {
            d: rows.map(|w| w.d),
            m: rows.map(|w| w.m),
            qs,
        }
    }
    fn unpack(&self, j: usize) -> BlockQ4_1 {
        let mut qs = [0u8; 16];
        for (i, q) in qs.iter_mut().enumerate() {
            *q = self.qs[32 * (i / 4) + 4 * j + i % 4];
        }
        BlockQ4_1 {
            d: self.d[j],
            m: self.m[j],
            qs,
        }
    }
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

/// `rows` rows of `nb` blocks (`rows` a multiple of 8) as groups of 8 rows,
/// each group's block columns consecutive; `block(i)` is block `i` in
/// row-major order (parsed as it is needed, so a matrix packed from its
/// file bytes never exists twice in memory).
pub fn pack_rows<I: Interleave>(rows: usize, nb: usize, block: impl Fn(usize) -> I::Row) -> Vec<I> {
    debug_assert!(rows.is_multiple_of(GROUP));
    let block = &block;
    (0..rows / GROUP)
        .flat_map(|g| {
            (0..nb).map(move |b| {
                let column: [I::Row; GROUP] =
                    std::array::from_fn(|j| block((g * GROUP + j) * nb + b));
                I::pack(column.each_ref())
            })
        })
        .collect()
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
/// from memory): `d`; Q8_1's `s`; for Q8_0 weights, `-128 * sum(q)`, the
/// start of the integer sum that cancels the weights' `+ 128`.
#[derive(Clone, Copy, Default)]
#[repr(C)]
pub struct XScales {
    pub d: f32,
    pub s: f32,
    pub bias: i32,
}

/// Activation block types the interleaved kernels take.
pub trait GroupAct {
    fn group_scales(&self) -> XScales;
}

impl GroupAct for BlockQ8_1 {
    fn group_scales(&self) -> XScales {
        XScales {
            d: self.d.to_f32(),
            s: self.s.to_f32(),
            bias: 0,
        }
    }
}

impl GroupAct for BlockQ8_0 {
    fn group_scales(&self) -> XScales {
        XScales {
            d: self.d.to_f32(),
            s: 0.0,
            bias: -128 * self.qs.iter().map(|&q| q as i32).sum::<i32>(),
        }
    }
}

/// `dot(w[r], x[t])` into `out` at (t, r) for the groups of 8 weight rows
/// in `w` (each `nb` blocks) and the `n` activation rows in `x`, with
/// `xs[t * nb + b]` the scales of `x[t * nb + b]`. The Q4_1 kernel takes
/// the groups in pairs (16 rows per 512-bit vector): its `w` holds an even
/// number of groups.
///
/// # Safety
/// As `dot_rows::RowsKernel`: `out` is valid for writes at every (t, r)
/// and nobody else touches those places meanwhile.
pub type GroupKernel<W, X> = unsafe fn(w: &[W], x: &[X], xs: &[XScales], nb: usize, out: OutRows);

/// The interleaved kernels.
#[derive(Clone, Copy)]
pub struct GroupKernels {
    pub q4_1_q8_1: GroupKernel<Q4_1x8, BlockQ8_1>,
    pub q8_0_q8_0: GroupKernel<Q8_0x8, BlockQ8_0>,
}

/// The interleaved kernels when this CPU runs them (AVX2, FMA, F16C,
/// AVX512 F, BW, VL and VNNI) and `SERVEBENCH_KERNELS` does not ask for
/// `rows` (the row-at-a-time tiles, for comparisons) or `portable`.
pub fn kernels() -> Option<&'static GroupKernels> {
    static K: OnceLock<Option<GroupKernels>> = OnceLock::new();
    K.get_or_init(|| {
        if matches!(
            std::env::var("SERVEBENCH_KERNELS").as_deref(),
            Ok("rows" | "portable")
        ) {
            return None;
        }
        #[cfg(target_arch = "x86_64")]
        return vnni::detect();
        #[allow(unreachable_code)]
        None
    })
    .as_ref()
}

/// Padding-free: the layouts are the kernels' contract with `pack`.
const _: () = assert!(std::mem::size_of::<Q4_1x8>() == 16 + 16 + 128);
const _: () = assert!(std::mem::size_of::<Q8_0x8>() == 16 + 256);
const _: () = assert!(QK == 32);

#[cfg(target_arch = "x86_64")]
mod vnni {
    // Accumulators are indexed by activation row; the const-bounded loops
    // unroll completely.
    #![allow(clippy::needless_range_loop)]
    use super::*;
    use std::arch::x86_64::*;

    /// Handing these out only on CPUs with every feature they enable is what
    /// makes calling them sound (with `GroupKernel`'s contract for `out`).
    pub fn detect() -> Option<GroupKernels> {
        let ok = is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
            && is_x86_feature_detected!("f16c")
            && is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512bw")
            && is_x86_feature_detected!("avx512vnni")
            && is_x86_feature_detected!("avx512vl");
        ok.then_some(GroupKernels {
            q4_1_q8_1,
            q8_0_q8_0,
        })
    }

    /// Asks for every cache line of the block 4 KiB ahead: with few
    /// activation rows the weights stream from memory, and this VM's
    /// hardware prefetch alone leaves one thread far below its bandwidth.
    #[inline(always)]
    unsafe fn prefetch_ahead<B>(block: &B) {
        const AHEAD: usize = 4096;
        prefetch_block((block as *const B).wrapping_byte_add(AHEAD));
    }

    /// Asks for every cache line of `block`.
    #[inline(always)]
    unsafe fn prefetch_block<B>(block: *const B) {
        let at = block as *const i8;
        let mut line = 0;
        while line < std::mem::size_of::<B>() {
            _mm_prefetch::<_MM_HINT_T0>(at.wrapping_add(line));
            line += 64;
        }
    }

    /// 8 f16 as 8 f32.
    #[inline(always)]
    unsafe fn widen(h: &[f16; 8]) -> __m256 {
        _mm256_cvtph_ps(_mm_loadu_si128(h.as_ptr() as *const __m128i))
    }

    /// 4 activation bytes `4s..4s + 4` of a block in every lane.
    #[inline(always)]
    unsafe fn x4(qs: &[i8; 32], s: usize) -> __m256i {
        _mm256_set1_epi32((qs.as_ptr() as *const i32).add(s).read_unaligned())
    }

    /// Activation rows per Q4_1 tile when the weights stream in (batch
    /// <= 2): 8 accumulators each, plus the 8 weight vectors and the rows'
    /// scales, in AVX-512's 32 registers (measured: 2 beats 3 and 4, which
    /// spill).
    const Q4_1_STRIP: usize = 2;

    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vnni,avx512vl")]
    unsafe fn q4_1_q8_1(w: &[Q4_1x8], x: &[BlockQ8_1], xs: &[XScales], nb: usize, out: OutRows) {
        let n = x.len() / nb;
        let groups = w.len() / nb;
        assert!(groups.is_multiple_of(2), "Q4_1 groups come in pairs");
        // With several strips, a pair's values are unpacked once into this
        // buffer (block b: 8 vectors of bytes, then `d` and `m` of the 16
        // rows) and every strip reads them from L1.
        let mut buf: Vec<__m512i> = Vec::new();
        if n > Q4_1_STRIP {
            buf.reserve_exact(nb * BUF_PER_BLOCK);
        }
        let mut g = 0;
        while g + 2 <= groups {
            let pair = (&w[g * nb..(g + 1) * nb], &w[(g + 1) * nb..(g + 2) * nb]);
            let out = out.at(0, g * GROUP);
            if n <= Q4_1_STRIP {
                // One pass: unpack as the weights stream in (a buffer
                // would stall batch-1 decode on memory, then on compute).
                let mut t = 0;
                while t < n {
                    let strip = (n - t).min(Q4_1_STRIP);
                    let (x, xs, out) = (&x[t * nb..], &xs[t * nb..], out.at(t, 0));
                    let block = |b| unpack_pair(pair, b);
                    match strip {
                        2 => q4_1_tile16::<2>(block, x, xs, nb, out),
                        _ => q4_1_tile16::<1>(block, x, xs, nb, out),
                    }
                    t += strip;
                }
            } else {
                // Written and read through the pointer, within the
                // reserved capacity (64-byte aligned, as `__m512i` is).
                let u = buf.as_mut_ptr();
                for b in 0..nb {
                    let (ub, dw, mw) = unpack_block_pair(pair, b);
                    let at = u.add(b * BUF_PER_BLOCK);
                    for (s, v) in ub.iter().enumerate() {
                        _mm512_store_si512(at.add(s), *v);
                    }
                    _mm512_store_ps(at.add(8) as *mut f32, dw);
                    _mm512_store_ps(at.add(9) as *mut f32, mw);
                }
                // The strips ask for a later pair's weights between them
                // (strip i: blocks b with b % strips == i), so they arrive
                // from memory while this pair computes. Past this task's
                // last pair that is the next task's first, which this
                // thread mostly runs next (rayon hands out neighbouring
                // chunks), or nothing: a prefetch never faults.
                let later = w.as_ptr().wrapping_add((g + 2 * PREFETCH_PAIRS_AHEAD) * nb);
                let strips = buffered_strips(n).count();
                for (i, (t, strip)) in buffered_strips(n).enumerate() {
                    let (x, xs, out) = (&x[t * nb..], &xs[t * nb..], out.at(t, 0));
                    let pf = (later, i, strips);
                    match strip {
                        3 => q4_1_tile_buffered::<3>(u, pf, x, xs, nb, out),
                        2 => q4_1_tile_buffered::<2>(u, pf, x, xs, nb, out),
                        _ => q4_1_tile_buffered::<1>(u, pf, x, xs, nb, out),
                    }
                }
            }
            g += 2;
        }
    }

    /// (first row, rows) of each strip of a buffered pass over `n`
    /// activation rows: 3 at a time (24 accumulators), but 4 rows go as
    /// 2 + 2 rather than 3 + 1.
    fn buffered_strips(n: usize) -> impl Iterator<Item = (usize, usize)> {
        let mut t = 0;
        std::iter::from_fn(move || {
            let strip = if n - t == 4 { 2 } else { (n - t).min(3) };
            (strip > 0).then(|| {
                t += strip;
                (t - strip, strip)
            })
        })
    }

    /// How many pairs ahead the buffered path asks for weights (measured,
    /// `matmul_bench` COPIES=40 batch 8: 2 beats 1 and 4).
    const PREFETCH_PAIRS_AHEAD: usize = 2;

    /// Vectors per block in the Q4_1 unpack buffer: 8 of bytes, `d`, `m`.
    const BUF_PER_BLOCK: usize = 10;

    /// [`q4_1_tile16`] over a pair unpacked into a buffer: one weight
    /// vector live at a time (the activation bytes come as broadcast memory
    /// operands), so 3 activation rows' 24 accumulators fit in registers,
    /// and the `m`·`s` sums run in a second, short pass.
    #[inline(always)]
    unsafe fn q4_1_tile_buffered<const N: usize>(
        u: *const __m512i,
        (later, i, strips): (*const Q4_1x8, usize, usize),
        x: &[BlockQ8_1],
        xs: &[XScales],
        nb: usize,
        out: OutRows,
    ) {
        let mut acc = [[_mm512_setzero_ps(); 8]; N];
        for b in 0..nb {
            if b % strips == i {
                prefetch_block(later.wrapping_add(b));
                prefetch_block(later.wrapping_add(nb + b));
            }
            let at = u.add(b * BUF_PER_BLOCK);
            let dw = _mm512_load_ps(at.add(8) as *const f32);
            q4_1_block(&mut acc, |s| _mm512_load_si512(at.add(s)), dw, x, xs, nb, b);
        }
        let mut offsets = [_mm512_setzero_ps(); N];
        for b in 0..nb {
            let mw = _mm512_load_ps(u.add(b * BUF_PER_BLOCK + 9) as *const f32);
            for t in 0..N {
                let sc = xs.get_unchecked(t * nb + b);
                offsets[t] = _mm512_fmadd_ps(mw, _mm512_set1_ps(sc.s), offsets[t]);
            }
        }
        for t in 0..N {
            store_sum16(&acc[t], offsets[t], out.at(t, 0));
        }
    }

    /// Block `b` of 16 weight rows (vector `u(s)`: values `4s..4s + 4` of
    /// each row as bytes; `dw`: the rows' scales) into the accumulators of
    /// N activation rows, as ggml's Q4_1 dot does per block: each lane's
    /// 4-product integer sum converted, times `d_w · d_x`, added with one
    /// rounding.
    #[inline(always)]
    unsafe fn q4_1_block<const N: usize>(
        acc: &mut [[__m512; 8]; N],
        u: impl Fn(usize) -> __m512i,
        dw: __m512,
        x: &[BlockQ8_1],
        xs: &[XScales],
        nb: usize,
        b: usize,
    ) {
        let d: [__m512; N] = std::array::from_fn(|t| {
            _mm512_mul_ps(dw, _mm512_set1_ps(xs.get_unchecked(t * nb + b).d))
        });
        for s in 0..8 {
            let us = u(s);
            for t in 0..N {
                let qs = &x.get_unchecked(t * nb + b).qs;
                let q = _mm512_set1_epi32((qs.as_ptr() as *const i32).add(s).read_unaligned());
                let p = _mm512_dpbusd_epi32(_mm512_setzero_si512(), us, q);
                acc[t][s] = _mm512_fmadd_ps(d[t], _mm512_cvtepi32_ps(p), acc[t][s]);
            }
        }
    }

    /// Row j's result from its 8 accumulator lanes (lane j of `a[s]`): ggml's
    /// `hsum_float_8` order, then `+ Σ m·s` as its scalar `summs`.
    #[inline(always)]
    unsafe fn store_sum16(a: &[__m512; 8], offsets: __m512, out: OutRows) {
        let sum = _mm512_add_ps(
            _mm512_add_ps(_mm512_add_ps(a[0], a[4]), _mm512_add_ps(a[2], a[6])),
            _mm512_add_ps(_mm512_add_ps(a[1], a[5]), _mm512_add_ps(a[3], a[7])),
        );
        _mm512_storeu_ps(out.ptr, _mm512_add_ps(sum, offsets));
    }

    /// Block `b` of two groups as 16 rows: the values as bytes (vector s
    /// holds values `4s..4s + 4` of every row) and the rows' `d` and `m`.
    #[inline(always)]
    unsafe fn unpack_pair(
        pair: (&[Q4_1x8], &[Q4_1x8]),
        b: usize,
    ) -> ([__m512i; 8], __m512, __m512) {
        prefetch_ahead(pair.0.get_unchecked(b));
        prefetch_ahead(pair.1.get_unchecked(b));
        unpack_block_pair(pair, b)
    }

    /// [`unpack_pair`] without asking for later weights.
    #[inline(always)]
    unsafe fn unpack_block_pair(
        (w0, w1): (&[Q4_1x8], &[Q4_1x8]),
        b: usize,
    ) -> ([__m512i; 8], __m512, __m512) {
        let (b0, b1) = (w0.get_unchecked(b), w1.get_unchecked(b));
        let low = _mm512_set1_epi8(0x0f);
        let (p0, p1) = (
            b0.qs.as_ptr() as *const __m256i,
            b1.qs.as_ptr() as *const __m256i,
        );
        let mut u = [_mm512_setzero_si512(); 8];
        for k in 0..4 {
            let v = _mm512_inserti64x4::<1>(
                _mm512_castsi256_si512(_mm256_loadu_si256(p0.add(k))),
                _mm256_loadu_si256(p1.add(k)),
            );
            u[k] = _mm512_and_si512(v, low);
            u[k + 4] = _mm512_and_si512(_mm512_srli_epi16::<4>(v), low);
        }
        (u, widen16(&b0.d, &b1.d), widen16(&b0.m, &b1.m))
    }

    /// 2 x 8 f16 as 16 f32.
    #[inline(always)]
    unsafe fn widen16(h0: &[f16; 8], h1: &[f16; 8]) -> __m512 {
        let lo = _mm_loadu_si128(h0.as_ptr() as *const __m128i);
        let hi = _mm_loadu_si128(h1.as_ptr() as *const __m128i);
        _mm512_cvtph_ps(_mm256_inserti128_si256::<1>(_mm256_castsi128_si256(lo), hi))
    }

    /// Two groups of 8 Q4_1 rows (16 rows, one per lane of a 512-bit
    /// vector) against N activation rows, in ggml's float order:
    /// `acc[t][s]` lane j is ggml's accumulator lane s of row j (products
    /// `4s..4s + 4` of each block, scaled and summed block by block), reduced
    /// at the end in the order of ggml's `hsum_float_8`, then `+ Σ m·s` as
    /// its scalar `summs`. `block(b)` gives block b's values as bytes and
    /// the rows' `d` and `m`.
    #[inline(always)]
    unsafe fn q4_1_tile16<const N: usize>(
        block: impl Fn(usize) -> ([__m512i; 8], __m512, __m512),
        x: &[BlockQ8_1],
        xs: &[XScales],
        nb: usize,
        out: OutRows,
    ) {
        let mut acc = [[_mm512_setzero_ps(); 8]; N];
        let mut offsets = [_mm512_setzero_ps(); N];
        for b in 0..nb {
            let (u, dw, mw) = block(b);
            for t in 0..N {
                let sc = xs.get_unchecked(t * nb + b);
                offsets[t] = _mm512_fmadd_ps(mw, _mm512_set1_ps(sc.s), offsets[t]);
            }
            q4_1_block(&mut acc, |s| u[s], dw, x, xs, nb, b);
        }
        for t in 0..N {
            store_sum16(&acc[t], offsets[t], out.at(t, 0));
        }
    }

    #[target_feature(enable = "avx2,fma,f16c,avx512vnni,avx512vl")]
    unsafe fn q8_0_q8_0(w: &[Q8_0x8], x: &[BlockQ8_0], xs: &[XScales], nb: usize, out: OutRows) {
        let n = x.len() / nb;
        for (g, w) in w.chunks_exact(nb).enumerate() {
            let mut t = 0;
            while t < n {
                let strip = (n - t).min(8);
                let (x, xs, out) = (&x[t * nb..], &xs[t * nb..], out.at(t, g * GROUP));
                match strip {
                    8 => q8_0_tile::<8>(w, x, xs, nb, out),
                    7 => q8_0_tile::<7>(w, x, xs, nb, out),
                    6 => q8_0_tile::<6>(w, x, xs, nb, out),
                    5 => q8_0_tile::<5>(w, x, xs, nb, out),
                    4 => q8_0_tile::<4>(w, x, xs, nb, out),
                    3 => q8_0_tile::<3>(w, x, xs, nb, out),
                    2 => q8_0_tile::<2>(w, x, xs, nb, out),
                    _ => q8_0_tile::<1>(w, x, xs, nb, out),
                }
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
                let mut s0 = _mm256_set1_epi32(sc.bias);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::blocks::{quantize_q8_0, quantize_q8_1, random_q4_1};
    use crate::cpu::dot;
    use rand::{Rng, SeedableRng};

    #[test]
    fn pack_then_unpack_gives_the_rows_back() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let (rows, nb) = (16, 3);
        let w41 = random_q4_1(&mut rng, rows * nb);
        let wf: Vec<f32> = (0..rows * nb * QK)
            .map(|_| rng.random_range(-1.0..1.0))
            .collect();
        let mut w80 = vec![BlockQ8_0::default(); rows * nb];
        quantize_q8_0(&wf, &mut w80);
        w80[5].qs[7] = -128; // the file format allows it; +128 must not wrap
        let p41 = pack_rows::<Q4_1x8>(rows, nb, |i| w41[i]);
        let p80 = pack_rows::<Q8_0x8>(rows, nb, |i| w80[i]);
        for r in 0..rows {
            for (b, got) in unpack_row(&p41, nb, r).enumerate() {
                let want = &w41[r * nb + b];
                assert_eq!((got.d, got.m, got.qs), (want.d, want.m, want.qs));
            }
            for (b, got) in unpack_row(&p80, nb, r).enumerate() {
                let want = &w80[r * nb + b];
                assert_eq!((got.d, got.qs), (want.d, want.qs));
            }
        }
    }

    /// Every (row, token) against the single-row kernel (Q4_1: bit for bit;
    /// Q8_0: to rounding), and each token's result the same bits whatever
    /// else is in the batch.
    #[test]
    fn kernels_match_the_single_row_kernel_and_do_not_depend_on_the_batch() {
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
            (18, 16, 12),
            (18, 64, 4),
            (7, 96, 5),
        ] {
            let w41 = random_q4_1(&mut rng, rows * nb);
            let xf: Vec<f32> = (0..n * nb * QK)
                .map(|_| rng.random_range(-4.0..4.0))
                .collect();
            let wf: Vec<f32> = (0..rows * nb * QK)
                .map(|_| rng.random_range(-1.0..1.0))
                .collect();
            let (mut x81, mut x80) = (
                vec![BlockQ8_1::default(); n * nb],
                vec![BlockQ8_0::default(); n * nb],
            );
            for t in 0..n {
                quantize_q8_1(
                    &xf[t * nb * QK..(t + 1) * nb * QK],
                    &mut x81[t * nb..(t + 1) * nb],
                );
                quantize_q8_0(
                    &xf[t * nb * QK..(t + 1) * nb * QK],
                    &mut x80[t * nb..(t + 1) * nb],
                );
            }
            let mut w80 = vec![BlockQ8_0::default(); rows * nb];
            quantize_q8_0(&wf, &mut w80);
            let (p41, p80) = (
                pack_rows::<Q4_1x8>(rows, nb, |i| w41[i]),
                pack_rows::<Q8_0x8>(rows, nb, |i| w80[i]),
            );
            let s81: Vec<XScales> = x81.iter().map(GroupAct::group_scales).collect();
            let s80: Vec<XScales> = x80.iter().map(GroupAct::group_scales).collect();
            let run41 = |x: &[BlockQ8_1], s: &[XScales]| {
                let mut out = vec![0f32; x.len() / nb * rows];
                let into = OutRows {
                    ptr: out.as_mut_ptr(),
                    stride: rows,
                };
                // SAFETY: `out` holds every (t, r), all this thread's.
                unsafe { (k.q4_1_q8_1)(&p41, x, s, nb, into) };
                out
            };
            let run80 = |x: &[BlockQ8_0], s: &[XScales]| {
                let mut out = vec![0f32; x.len() / nb * rows];
                let into = OutRows {
                    ptr: out.as_mut_ptr(),
                    stride: rows,
                };
                // SAFETY: as above.
                unsafe { (k.q8_0_q8_0)(&p80, x, s, nb, into) };
                out
            };
            let (all41, all80) = (run41(&x81, &s81), run80(&x80, &s80));
            let single = dot::best();
            let close = |got: f32, want: f32| (got - want).abs() <= 1e-5 * (1.0 + want.abs());
            for t in 0..n {
                let xt = t * nb..(t + 1) * nb;
                let (one41, one80) = (
                    run41(&x81[xt.clone()], &s81[xt.clone()]),
                    run80(&x80[xt.clone()], &s80[xt.clone()]),
                );
                for r in 0..rows {
                    let wr = r * nb..(r + 1) * nb;
                    let want = (single.q4_1_q8_1)(&w41[wr.clone()], &x81[xt.clone()]);
                    let got = all41[t * rows + r];
                    assert_eq!(got.to_bits(), want.to_bits(), "q4_1 nb {nb} r {r} t {t}");
                    assert_eq!(got.to_bits(), one41[r].to_bits(), "q4_1 batch-dependent");
                    let want = (single.q8_0_q8_0)(&w80[wr], &x80[xt.clone()]);
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

//! Q4_0, Q4_1, Q5_0, Q5_1 and Q8_0 weight rows interleaved by sixteens,
//! for CPUs with AVX512 (F, BW, VL, VNNI), in ggml's float order.
//!
//! Vector `s` of a block column holds values `4s..4s + 4` of each of the 16
//! rows (4 bytes per 32-bit lane), one `vpdpbusd` against 4 activation
//! bytes broadcast from memory advances all 16 rows, and each row's 8
//! accumulator lanes become 8 vectors (lane = row), reduced at the end in
//! the order of ggml's `hsum_float_8`: nothing is summed across lanes per
//! row, and the per-block scales apply to 16 rows per instruction. That
//! costs a convert and an FMA per 4 products, the price of ggml's order.
//! Batch 1 and 2 unpack each block as the weights stream in; larger batches
//! unpack a group once into an L1 buffer and run strips of 3 activation
//! rows over it, asking for the weights two groups ahead meanwhile. So a row's result is, bit for bit,
//! ggml's `ggml_vec_dot_*` (AVX2/VNNI build) on that row: per block and per
//! group of 4 values an exact integer sum, converted, times `d_w · d_x`,
//! added with one rounding; for Q4_1 and Q5_1 plus `Σ m·s` in block order
//! (tested against a scalar model of that formula, `dot_ggml`).
//!
//! `vpdpbusd` multiplies unsigned bytes by signed ones, so the weights are
//! stored unsigned (Q4_0's `q`, Q5_0's `q`, Q8_0's `q + 128`; Q4_1 and
//! Q5_1 are unsigned already) and each
//! integer sum starts at `-BIAS · Σ x` over its 4 activation bytes (ggml's
//! signed `q - 8`, `q - 16` and `q` give the same integers: products and
//! sums of 4 stay far inside i32).
//!
//! Q5's fifth bits are stored as one 64-bit mask per vector (bit `4j + i`:
//! row j, value `4s + i`) that adds 16 to the masked bytes in one
//! instruction. Measured figures are in docs/performance.md.

use std::sync::OnceLock;

use rayon::prelude::*;

use half::f16;

use super::blocks::{
    five_bits, BlockQ4_0, BlockQ4_1, BlockQ5_0, BlockQ5_1, BlockQ8_0, BlockQ8_1, FromBytes, QK,
};
use super::dot_rows::OutRows;
use super::with_const;

/// Weight rows per interleaved group.
pub const ROWS: usize = 16;

/// A weight block of one of ggml's "legacy" types as ggml's dot sees it.
pub trait LegacyBlock: Copy + Send + Sync + FromBytes {
    /// Value `v` (0..32) as ggml's integer (`q - 8`, `q - 16`, `q`, `q`).
    fn value(&self, v: usize) -> i32;
    fn d(&self) -> f16;
    /// The offset `m` of the `d * q + m` types.
    fn m(&self) -> Option<f16>;
}

impl LegacyBlock for BlockQ4_0 {
    fn value(&self, v: usize) -> i32 {
        let q = if v < 16 {
            self.qs[v] & 0x0f
        } else {
            self.qs[v - 16] >> 4
        };
        q as i32 - 8
    }
    fn d(&self) -> f16 {
        self.d
    }
    fn m(&self) -> Option<f16> {
        None
    }
}

impl LegacyBlock for BlockQ4_1 {
    fn value(&self, v: usize) -> i32 {
        let q = if v < 16 {
            self.qs[v] & 0x0f
        } else {
            self.qs[v - 16] >> 4
        };
        q as i32
    }
    fn d(&self) -> f16 {
        self.d
    }
    fn m(&self) -> Option<f16> {
        Some(self.m)
    }
}

impl LegacyBlock for BlockQ5_0 {
    fn value(&self, v: usize) -> i32 {
        five_bits(self.qh, &self.qs, v) as i32 - 16
    }
    fn d(&self) -> f16 {
        self.d
    }
    fn m(&self) -> Option<f16> {
        None
    }
}

impl LegacyBlock for BlockQ5_1 {
    fn value(&self, v: usize) -> i32 {
        five_bits(self.qh, &self.qs, v) as i32
    }
    fn d(&self) -> f16 {
        self.d
    }
    fn m(&self) -> Option<f16> {
        Some(self.m)
    }
}

impl LegacyBlock for BlockQ8_0 {
    fn value(&self, v: usize) -> i32 {
        self.qs[v] as i32
    }
    fn d(&self) -> f16 {
        self.d
    }
    fn m(&self) -> Option<f16> {
        None
    }
}

/// A quantized activation block (Q8_0, or Q8_1 with its `s = d · Σ q`).
pub trait ActBlock: Copy + Send + Sync + Default {
    fn d(&self) -> f16;
    fn s(&self) -> f16;
    fn qs(&self) -> &[i8; 32];
}

impl ActBlock for BlockQ8_0 {
    fn d(&self) -> f16 {
        self.d
    }
    fn s(&self) -> f16 {
        f16::ZERO
    }
    fn qs(&self) -> &[i8; 32] {
        &self.qs
    }
}

impl ActBlock for BlockQ8_1 {
    fn d(&self) -> f16 {
        self.d
    }
    fn s(&self) -> f16 {
        self.s
    }
    fn qs(&self) -> &[i8; 32] {
        &self.qs
    }
}

/// ggml's AVX2 `ggml_vec_dot_{q4_0,q5_0,q8_0}_q8_0` / `q5_1_q8_1` as
/// scalar code: 8 lanes, lane l summing values `4l..4l + 4` of each block
/// in integers, converted and added with one FMA times `d_w · d_x`; the
/// lanes reduced as `hsum_float_8`; `+ Σ m·s` (an FMA chain, as GCC
/// contracts ggml's `summs += m * s`). The reference of the kernels, and
/// the kernel where they do not run.
pub fn dot_ggml<W: LegacyBlock, A: ActBlock>(w: &[W], x: &[A]) -> f32 {
    let mut lanes = [0f32; 8];
    let mut offsets = 0f32;
    for (w, x) in w.iter().zip(x) {
        let d = w.d().to_f32() * x.d().to_f32();
        for (l, lane) in lanes.iter_mut().enumerate() {
            let sum: i32 = (4 * l..4 * l + 4)
                .map(|v| w.value(v) * x.qs()[v] as i32)
                .sum();
            *lane = d.mul_add(sum as f32, *lane);
        }
        if let Some(m) = w.m() {
            offsets = m.to_f32().mul_add(x.s().to_f32(), offsets);
        }
    }
    let a = lanes;
    let sum = ((a[0] + a[4]) + (a[2] + a[6])) + ((a[1] + a[5]) + (a[3] + a[7]));
    match w.first().and_then(|w| w.m()) {
        Some(_) => sum + offsets,
        None => sum,
    }
}

/// ggml's repacked Q4_0 (`ggml_gemv_q4_0_8x8_q8_0` and its gemm, which
/// llama.cpp uses on AVX2 CPUs for matrices of a multiple of 8 rows): per
/// block the whole 32-product integer sum, converted, one FMA with
/// `d_w · d_x` into a single accumulator.
pub fn dot_whole_blocks<W: LegacyBlock, A: ActBlock>(w: &[W], x: &[A]) -> f32 {
    w.iter().zip(x).fold(0f32, |acc, (w, x)| {
        let sum: i32 = (0..QK).map(|v| w.value(v) * x.qs()[v] as i32).sum();
        (sum as f32).mul_add(w.d().to_f32() * x.d().to_f32(), acc)
    })
}

/// Block column `b` of 16 rows of a legacy type, interleaved.
pub trait Pack16: Sized + Send + Sync {
    type Row: LegacyBlock;
    type Act: ActBlock;
    /// Stored values are ggml's plus this.
    const BIAS: i32;
    /// The kernel sums whole blocks ([`dot_whole_blocks`], Q4_0) rather
    /// than ggml's 8 lanes ([`dot_ggml`]).
    const WHOLE_BLOCKS: bool = false;
    /// The same block column of 16 consecutive rows.
    fn pack(rows: [&Self::Row; ROWS]) -> Self;
    /// Row `j`'s block back.
    fn unpack(&self, j: usize) -> Self::Row;
}

/// Q4_0: byte `4j + i` of 64-byte vector `k` holds value `4k + i` of row
/// j in its low nibble and `4k + 16 + i` in its high nibble (k < 4).
#[derive(Clone, Copy)]
#[repr(C)]
pub struct Q4_0x16 {
    pub d: [f16; ROWS],
    pub qs: [u8; 4 * 64],
}

/// Q4_1: Q4_0's nibbles plus the rows' offsets.
#[derive(Clone, Copy)]
#[repr(C)]
pub struct Q4_1x16 {
    pub d: [f16; ROWS],
    pub m: [f16; ROWS],
    pub qs: [u8; 4 * 64],
}

/// Q5_0: Q4_0's nibbles plus the fifth bits, `qh[s]` bit `4j + i` for
/// value `4s + i` of row j.
#[derive(Clone, Copy)]
#[repr(C)]
pub struct Q5_0x16 {
    pub d: [f16; ROWS],
    pub qh: [u64; 8],
    pub qs: [u8; 4 * 64],
}

/// Q5_1: as Q5_0 plus the rows' offsets.
#[derive(Clone, Copy)]
#[repr(C)]
pub struct Q5_1x16 {
    pub d: [f16; ROWS],
    pub m: [f16; ROWS],
    pub qh: [u64; 8],
    pub qs: [u8; 4 * 64],
}

/// Q8_0: byte `64s + 4j + i` holds value `4s + i` of row j, plus 128.
#[derive(Clone, Copy)]
#[repr(C)]
pub struct Q8_0x16 {
    pub d: [f16; ROWS],
    pub qs: [u8; 8 * 64],
}

/// The nibble bytes of 16 rows' `qs` in the x16 layout.
fn pack_nibbles(qs: [&[u8; 16]; ROWS]) -> [u8; 256] {
    let mut out = [0u8; 256];
    for (j, q) in qs.iter().enumerate() {
        for (i, byte) in q.iter().enumerate() {
            out[64 * (i / 4) + 4 * j + i % 4] = *byte;
        }
    }
    out
}

fn unpack_nibbles(packed: &[u8; 256], j: usize) -> [u8; 16] {
    std::array::from_fn(|i| packed[64 * (i / 4) + 4 * j + i % 4])
}

/// The fifth bits of 16 rows as the 8 masks.
fn pack_high(qh: [[u8; 4]; ROWS]) -> [u64; 8] {
    let mut out = [0u64; 8];
    for (j, h) in qh.iter().enumerate() {
        let h = u32::from_le_bytes(*h);
        for v in 0..32 {
            out[v / 4] |= (((h >> v) & 1) as u64) << (4 * j + v % 4);
        }
    }
    out
}

fn unpack_high(packed: &[u64; 8], j: usize) -> [u8; 4] {
    let mut h = 0u32;
    for v in 0..32 {
        h |= (((packed[v / 4] >> (4 * j + v % 4)) & 1) as u32) << v;
    }
    h.to_le_bytes()
}

impl Pack16 for Q4_0x16 {
    type Row = BlockQ4_0;
    type Act = BlockQ8_0;
    const BIAS: i32 = 8;
    const WHOLE_BLOCKS: bool = true;
    fn pack(rows: [&BlockQ4_0; ROWS]) -> Self {
        Self {
            d: rows.map(|w| w.d),
            qs: pack_nibbles(rows.map(|w| &w.qs)),
        }
    }
    fn unpack(&self, j: usize) -> BlockQ4_0 {
        BlockQ4_0 {
            d: self.d[j],
            qs: unpack_nibbles(&self.qs, j),
        }
    }
}

impl Pack16 for Q4_1x16 {
    type Row = BlockQ4_1;
    type Act = BlockQ8_1;
    const BIAS: i32 = 0;
    fn pack(rows: [&BlockQ4_1; ROWS]) -> Self {
        Self {
            d: rows.map(|w| w.d),
            m: rows.map(|w| w.m),
            qs: pack_nibbles(rows.map(|w| &w.qs)),
        }
    }
    fn unpack(&self, j: usize) -> BlockQ4_1 {
        BlockQ4_1 {
            d: self.d[j],
            m: self.m[j],
            qs: unpack_nibbles(&self.qs, j),
        }
    }
}

impl Pack16 for Q5_0x16 {
    type Row = BlockQ5_0;
    type Act = BlockQ8_0;
    const BIAS: i32 = 16;
    fn pack(rows: [&BlockQ5_0; ROWS]) -> Self {
        Self {
            d: rows.map(|w| w.d),
            qh: pack_high(rows.map(|w| w.qh)),
            qs: pack_nibbles(rows.map(|w| &w.qs)),
        }
    }
    fn unpack(&self, j: usize) -> BlockQ5_0 {
        BlockQ5_0 {
            d: self.d[j],
            qh: unpack_high(&self.qh, j),
            qs: unpack_nibbles(&self.qs, j),
        }
    }
}

impl Pack16 for Q5_1x16 {
    type Row = BlockQ5_1;
    type Act = BlockQ8_1;
    const BIAS: i32 = 0;
    fn pack(rows: [&BlockQ5_1; ROWS]) -> Self {
        Self {
            d: rows.map(|w| w.d),
            m: rows.map(|w| w.m),
            qh: pack_high(rows.map(|w| w.qh)),
            qs: pack_nibbles(rows.map(|w| &w.qs)),
        }
    }
    fn unpack(&self, j: usize) -> BlockQ5_1 {
        BlockQ5_1 {
            d: self.d[j],
            m: self.m[j],
            qh: unpack_high(&self.qh, j),
            qs: unpack_nibbles(&self.qs, j),
        }
    }
}

impl Pack16 for Q8_0x16 {
    type Row = BlockQ8_0;
    type Act = BlockQ8_0;
    const BIAS: i32 = 128;
    fn pack(rows: [&BlockQ8_0; ROWS]) -> Self {
        let mut qs = [0u8; 512];
        for (j, w) in rows.iter().enumerate() {
            for (v, q) in w.qs.iter().enumerate() {
                qs[64 * (v / 4) + 4 * j + v % 4] = (*q as i16 + 128) as u8;
            }
        }
        Self {
            d: rows.map(|w| w.d),
            qs,
        }
    }
    fn unpack(&self, j: usize) -> BlockQ8_0 {
        BlockQ8_0 {
            d: self.d[j],
            qs: std::array::from_fn(|v| (self.qs[64 * (v / 4) + 4 * j + v % 4] as i16 - 128) as i8),
        }
    }
}

/// `rows` rows (a multiple of 16) of `nb` blocks as groups of 16, each
/// group's block columns consecutive; `block(i)` is block `i` in row-major
/// order.
pub fn pack_rows<P: Pack16>(rows: usize, nb: usize, block: impl Fn(usize) -> P::Row) -> Vec<P> {
    debug_assert!(rows.is_multiple_of(ROWS));
    let block = &block;
    let packed = (0..rows / ROWS).flat_map(|g| {
        (0..nb).map(move |b| {
            let column: [P::Row; ROWS] = std::array::from_fn(|j| block((g * ROWS + j) * nb + b));
            P::pack(column.each_ref())
        })
    });
    super::huge_pages::collect(rows / ROWS * nb, packed)
}

/// Row `r`'s blocks out of [`pack_rows`]'s layout.
pub fn unpack_row<P: Pack16>(
    packed: &[P],
    nb: usize,
    r: usize,
) -> impl Iterator<Item = P::Row> + '_ {
    packed[(r / ROWS) * nb..(r / ROWS + 1) * nb]
        .iter()
        .map(move |b| b.unpack(r % ROWS))
}

/// One activation block's scales as the kernels read them: `d`, `s`, and
/// each 4-byte group's `-BIAS · Σ q`, where each integer sum starts.
#[derive(Clone, Copy, Default)]
#[repr(C)]
pub struct XScales16 {
    pub d: f32,
    pub s: f32,
    pub bias: [i32; 8],
    /// The sum of `bias`: where a whole block's sum starts.
    pub block_bias: i32,
}

/// The scales of every block of `x` for weights of type `P`, blocks spread
/// over the pool (a prefill's activations are thousands of blocks, and
/// every matmul of the batch waits for them).
pub fn x_scales<P: Pack16>(x: &[P::Act]) -> Vec<XScales16> {
    // A decode step's few blocks cost less than handing them to the pool.
    const PARALLEL_FROM_BLOCKS: usize = 1024;
    let mut one: fn(&P::Act) -> XScales16 = block_scales::<P>;
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx512vnni") && is_x86_feature_detected!("avx512vl") {
        // SAFETY: the CPU has the features `block_scales` enables.
        one = |b| unsafe { vnni::block_scales::<P>(b) };
    }
    if x.len() < PARALLEL_FROM_BLOCKS {
        x.iter().map(one).collect()
    } else {
        x.par_iter().map(one).collect()
    }
}

/// [`XScales16`] of one activation block.
fn block_scales<P: Pack16>(b: &P::Act) -> XScales16 {
    let bias: [i32; 8] = std::array::from_fn(|g| {
        -P::BIAS
            * b.qs()[4 * g..4 * g + 4]
                .iter()
                .map(|&q| q as i32)
                .sum::<i32>()
    });
    XScales16 {
        d: b.d().to_f32(),
        s: b.s().to_f32(),
        bias,
        block_bias: bias.iter().sum(),
    }
}

/// `dot(w[r], x[t])` into `out` at (t, r) for the groups of 16 weight rows
/// in `w` (each `nb` blocks) and the `n` activation rows in `x`, with
/// `xs` from [`x_scales`].
///
/// # Safety
/// As `dot_rows::RowsKernel`: `out` is valid for writes at every (t, r)
/// and nobody else touches those places meanwhile.
pub type Kernel16<P, A> = unsafe fn(w: &[P], x: &[A], xs: &[XScales16], nb: usize, out: OutRows);

/// The x16 kernels.
#[derive(Clone, Copy)]
pub struct Kernels16 {
    pub q4_0: Kernel16<Q4_0x16, BlockQ8_0>,
    pub q4_1: Kernel16<Q4_1x16, BlockQ8_1>,
    pub q5_0: Kernel16<Q5_0x16, BlockQ8_0>,
    pub q5_1: Kernel16<Q5_1x16, BlockQ8_1>,
    pub q8_0: Kernel16<Q8_0x16, BlockQ8_0>,
}

/// The kernels when this CPU runs them and `SERVEBENCH_KERNELS` does not
/// ask for `rows` or `portable` (then the rows stay as in the file).
pub fn kernels() -> Option<&'static Kernels16> {
    static K: OnceLock<Option<Kernels16>> = OnceLock::new();
    #[cfg(target_arch = "x86_64")]
    return super::interleaved::repacking(&K, vnni::detect);
    #[allow(unreachable_code)]
    None
}

/// Padding-free: the layouts are the kernels' contract with `pack`.
const _: () = assert!(std::mem::size_of::<Q4_0x16>() == 32 + 256);
const _: () = assert!(std::mem::size_of::<Q4_1x16>() == 64 + 256);
const _: () = assert!(std::mem::size_of::<Q5_0x16>() == 32 + 64 + 256);
const _: () = assert!(std::mem::size_of::<Q5_1x16>() == 64 + 64 + 256);
const _: () = assert!(std::mem::size_of::<Q8_0x16>() == 32 + 512);
const _: () = assert!(QK == 32);

#[cfg(target_arch = "x86_64")]
mod vnni {
    // Accumulators are indexed by activation row; the const-bounded loops
    // unroll completely.
    #![allow(clippy::needless_range_loop)]
    use super::*;
    use crate::cpu::interleaved::{simd::prefetch_block, vnni::features};
    use std::arch::x86_64::*;

    /// [`super::block_scales`]: the 8 four-byte sums in one `vpdpbusd`
    /// against ones.
    #[target_feature(enable = "avx2,avx512vnni,avx512vl,f16c")]
    pub(super) unsafe fn block_scales<P: Pack16>(b: &P::Act) -> XScales16 {
        let q = _mm256_loadu_si256(b.qs().as_ptr() as *const __m256i);
        let sums = _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_set1_epi8(1), q);
        let bias = _mm256_mullo_epi32(sums, _mm256_set1_epi32(-P::BIAS));
        let mut out = XScales16 {
            d: b.d().to_f32(),
            s: b.s().to_f32(),
            ..Default::default()
        };
        _mm256_storeu_si256(out.bias.as_mut_ptr() as *mut __m256i, bias);
        out.block_bias = out.bias.iter().sum();
        out
    }

    /// Handing these out only on CPUs with every feature they enable is what
    /// makes calling them sound (with `Kernel16`'s contract for `out`).
    pub fn detect() -> Option<Kernels16> {
        features().then_some(Kernels16 {
            q4_0: q4_0_kernel,
            q4_1: q4_1_kernel,
            q5_0: q5_0_kernel,
            q5_1: q5_1_kernel,
            q8_0: q8_0_kernel,
        })
    }

    /// A block column's values as 8 vectors of bytes (vector s: values
    /// `4s..4s + 4` of each row, plus `BIAS`), the rows' `d` and `m`.
    pub trait Unpack: Pack16 {
        /// Has `m` (Q5_1).
        const OFFSET: bool;
        unsafe fn values(&self) -> ([__m512i; 8], __m512, __m512);
    }

    /// 16 f16 as 16 f32.
    #[inline(always)]
    unsafe fn widen(h: &[f16; ROWS]) -> __m512 {
        _mm512_cvtph_ps(_mm256_loadu_si256(h.as_ptr() as *const __m256i))
    }

    #[inline(always)]
    unsafe fn nibbles(qs: &[u8; 256]) -> [__m512i; 8] {
        let low = _mm512_set1_epi8(0x0f);
        let mut u = [_mm512_setzero_si512(); 8];
        for k in 0..4 {
            let v = _mm512_loadu_si512(qs.as_ptr().add(64 * k) as *const _);
            u[k] = _mm512_and_si512(v, low);
            u[k + 4] = _mm512_and_si512(_mm512_srli_epi16::<4>(v), low);
        }
        u
    }

    #[inline(always)]
    unsafe fn add_high(u: &mut [__m512i; 8], qh: &[u64; 8]) {
        let sixteen = _mm512_set1_epi8(16);
        for s in 0..8 {
            u[s] = _mm512_mask_add_epi8(u[s], qh[s], u[s], sixteen);
        }
    }

    impl Unpack for Q4_0x16 {
        const OFFSET: bool = false;
        #[inline(always)]
        unsafe fn values(&self) -> ([__m512i; 8], __m512, __m512) {
            (nibbles(&self.qs), widen(&self.d), _mm512_setzero_ps())
        }
    }

    impl Unpack for Q4_1x16 {
        const OFFSET: bool = true;
        #[inline(always)]
        unsafe fn values(&self) -> ([__m512i; 8], __m512, __m512) {
            (nibbles(&self.qs), widen(&self.d), widen(&self.m))
        }
    }

    impl Unpack for Q5_0x16 {
        const OFFSET: bool = false;
        #[inline(always)]
        unsafe fn values(&self) -> ([__m512i; 8], __m512, __m512) {
            let mut u = nibbles(&self.qs);
            add_high(&mut u, &self.qh);
            (u, widen(&self.d), _mm512_setzero_ps())
        }
    }

    impl Unpack for Q5_1x16 {
        const OFFSET: bool = true;
        #[inline(always)]
        unsafe fn values(&self) -> ([__m512i; 8], __m512, __m512) {
            let mut u = nibbles(&self.qs);
            add_high(&mut u, &self.qh);
            (u, widen(&self.d), widen(&self.m))
        }
    }

    impl Unpack for Q8_0x16 {
        const OFFSET: bool = false;
        #[inline(always)]
        unsafe fn values(&self) -> ([__m512i; 8], __m512, __m512) {
            let p = self.qs.as_ptr();
            let u = std::array::from_fn(|s| _mm512_loadu_si512(p.add(64 * s) as *const _));
            (u, widen(&self.d), _mm512_setzero_ps())
        }
    }

    /// Activation rows per tile when the weights stream in (batch <= 2).
    const STREAM_STRIP: usize = 2;

    /// How many groups ahead the buffered path asks for weights.
    const PREFETCH_GROUPS_AHEAD: usize = 2;

    /// Vectors per block in the unpack buffer: 8 of bytes, `d`, `m`.
    const BUF_PER_BLOCK: usize = 10;

    macro_rules! entry {
        ($name:ident, $p:ty, $a:ty) => {
            #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vnni,avx512vl")]
            unsafe fn $name(w: &[$p], x: &[$a], xs: &[XScales16], nb: usize, out: OutRows) {
                groups::<$p>(w, x, xs, nb, out)
            }
        };
    }
    entry!(q4_0_kernel, Q4_0x16, BlockQ8_0);
    entry!(q4_1_kernel, Q4_1x16, BlockQ8_1);
    entry!(q5_0_kernel, Q5_0x16, BlockQ8_0);
    entry!(q5_1_kernel, Q5_1x16, BlockQ8_1);
    entry!(q8_0_kernel, Q8_0x16, BlockQ8_0);

    #[inline(always)]
    unsafe fn groups<P: Unpack>(w: &[P], x: &[P::Act], xs: &[XScales16], nb: usize, out: OutRows) {
        let n = x.len() / nb;
        let groups = w.len() / nb;
        // With several strips, a group's values are unpacked once into this
        // buffer and every strip reads them from L1.
        let mut buf: Vec<__m512i> = Vec::new();
        if n > STREAM_STRIP {
            buf.reserve_exact(nb * BUF_PER_BLOCK);
        }
        for g in 0..groups {
            let wg = &w[g * nb..(g + 1) * nb];
            let out = out.at(0, g * ROWS);
            if n <= STREAM_STRIP {
                // One pass: unpack as the weights stream in.
                match n {
                    2 => tile_streamed::<P, 2>(wg, x, xs, nb, out),
                    _ => tile_streamed::<P, 1>(wg, x, xs, nb, out),
                }
            } else {
                // Written and read through the pointer, within the
                // reserved capacity (64-byte aligned, as `__m512i` is).
                let u = buf.as_mut_ptr();
                for b in 0..nb {
                    let (ub, dw, mw) = wg.get_unchecked(b).values();
                    let at = u.add(b * BUF_PER_BLOCK);
                    for (s, v) in ub.iter().enumerate() {
                        _mm512_store_si512(at.add(s), *v);
                    }
                    _mm512_store_ps(at.add(8) as *mut f32, dw);
                    _mm512_store_ps(at.add(9) as *mut f32, mw);
                }
                // The strips ask for a later group's weights between them,
                // so they arrive while this group computes (a prefetch past
                // the end never faults).
                let later = w.as_ptr().wrapping_add((g + PREFETCH_GROUPS_AHEAD) * nb);
                let strips = strips_of(n).count();
                for (i, (t, strip)) in strips_of(n).enumerate() {
                    let (x, xs, out) = (&x[t * nb..], &xs[t * nb..], out.at(t, 0));
                    let pf = (later, i, strips);
                    with_const!(strip, N in [3, 2, 1] => {
                        tile_buffered::<P, N>(u, pf, x, xs, nb, out)
                    });
                }
            }
        }
    }

    /// (first row, rows) of each strip of a buffered pass over `n`
    /// activation rows: 3 at a time (24 accumulators), but 4 rows go as
    /// 2 + 2 rather than 3 + 1.
    fn strips_of(n: usize) -> impl Iterator<Item = (usize, usize)> {
        let mut t = 0;
        std::iter::from_fn(move || {
            let strip = if n - t == 4 { 2 } else { (n - t).min(3) };
            (strip > 0).then(|| {
                t += strip;
                (t - strip, strip)
            })
        })
    }

    /// Block `b` of 16 weight rows (vector `u(s)`; `dw`: the rows' scales)
    /// into the accumulators of N activation rows, as ggml's dot does per
    /// block: each lane's 4-product integer sum (started at the
    /// activation's `-BIAS · Σ x`), converted, times `d_w · d_x`, added
    /// with one rounding.
    #[inline(always)]
    unsafe fn block16<P: Unpack, const N: usize>(
        acc: &mut [[__m512; 8]; N],
        u: impl Fn(usize) -> __m512i,
        dw: __m512,
        x: &[P::Act],
        xs: &[XScales16],
        nb: usize,
        b: usize,
    ) {
        let d: [__m512; N] = std::array::from_fn(|t| {
            _mm512_mul_ps(dw, _mm512_set1_ps(xs.get_unchecked(t * nb + b).d))
        });
        if P::WHOLE_BLOCKS {
            // Two integer chains per row (latency), one FMA per block.
            for t in 0..N {
                let qs = x.get_unchecked(t * nb + b).qs().as_ptr() as *const i32;
                let x4 = |s: usize| _mm512_set1_epi32(qs.add(s).read_unaligned());
                let mut s0 = _mm512_set1_epi32(xs.get_unchecked(t * nb + b).block_bias);
                let mut s1 = _mm512_setzero_si512();
                for s in (0..8).step_by(2) {
                    s0 = _mm512_dpbusd_epi32(s0, u(s), x4(s));
                    s1 = _mm512_dpbusd_epi32(s1, u(s + 1), x4(s + 1));
                }
                let sum = _mm512_cvtepi32_ps(_mm512_add_epi32(s0, s1));
                acc[t][0] = _mm512_fmadd_ps(sum, d[t], acc[t][0]);
            }
            return;
        }
        for s in 0..8 {
            let us = u(s);
            for t in 0..N {
                let qs = x.get_unchecked(t * nb + b).qs();
                let q = _mm512_set1_epi32((qs.as_ptr() as *const i32).add(s).read_unaligned());
                let start = if P::BIAS != 0 {
                    _mm512_set1_epi32(xs.get_unchecked(t * nb + b).bias[s])
                } else {
                    _mm512_setzero_si512()
                };
                let p = _mm512_dpbusd_epi32(start, us, q);
                acc[t][s] = _mm512_fmadd_ps(d[t], _mm512_cvtepi32_ps(p), acc[t][s]);
            }
        }
    }

    /// Row j's result from its 8 accumulator lanes (lane j of `a[s]`):
    /// ggml's `hsum_float_8` order, then `+ Σ m·s` for the offset types.
    #[inline(always)]
    unsafe fn store<P: Unpack>(a: &[__m512; 8], offsets: __m512, out: OutRows) {
        if P::WHOLE_BLOCKS {
            _mm512_storeu_ps(out.ptr, a[0]);
            return;
        }
        let sum = _mm512_add_ps(
            _mm512_add_ps(_mm512_add_ps(a[0], a[4]), _mm512_add_ps(a[2], a[6])),
            _mm512_add_ps(_mm512_add_ps(a[1], a[5]), _mm512_add_ps(a[3], a[7])),
        );
        let sum = if P::OFFSET {
            _mm512_add_ps(sum, offsets)
        } else {
            sum
        };
        _mm512_storeu_ps(out.ptr, sum);
    }

    /// 16 weight rows (`w`, one group) against N activation rows,
    /// unpacking each block as it streams in and asking for the weights
    /// 4 KiB ahead (this VM's hardware prefetch alone leaves one thread far
    /// below its bandwidth).
    #[inline(always)]
    unsafe fn tile_streamed<P: Unpack, const N: usize>(
        w: &[P],
        x: &[P::Act],
        xs: &[XScales16],
        nb: usize,
        out: OutRows,
    ) {
        let mut acc = [[_mm512_setzero_ps(); 8]; N];
        let mut offsets = [_mm512_setzero_ps(); N];
        for b in 0..nb {
            let wb = w.get_unchecked(b);
            prefetch_block((wb as *const P).wrapping_byte_add(4096));
            let (u, dw, mw) = wb.values();
            if P::OFFSET {
                for t in 0..N {
                    let s = _mm512_set1_ps(xs.get_unchecked(t * nb + b).s);
                    offsets[t] = _mm512_fmadd_ps(mw, s, offsets[t]);
                }
            }
            block16::<P, N>(&mut acc, |s| u[s], dw, x, xs, nb, b);
        }
        for t in 0..N {
            store::<P>(&acc[t], offsets[t], out.at(t, 0));
        }
    }

    /// [`tile_streamed`] over a group unpacked into a buffer: one weight
    /// vector live at a time, so 3 activation rows' 24 accumulators fit in
    /// registers; the `m`·`s` sums run in a second, short pass.
    #[inline(always)]
    unsafe fn tile_buffered<P: Unpack, const N: usize>(
        u: *const __m512i,
        (later, i, strips): (*const P, usize, usize),
        x: &[P::Act],
        xs: &[XScales16],
        nb: usize,
        out: OutRows,
    ) {
        let mut acc = [[_mm512_setzero_ps(); 8]; N];
        for b in 0..nb {
            if b % strips == i {
                prefetch_block(later.wrapping_add(b));
            }
            let at = u.add(b * BUF_PER_BLOCK);
            let dw = _mm512_load_ps(at.add(8) as *const f32);
            block16::<P, N>(&mut acc, |s| _mm512_load_si512(at.add(s)), dw, x, xs, nb, b);
        }
        let mut offsets = [_mm512_setzero_ps(); N];
        if P::OFFSET {
            for b in 0..nb {
                let mw = _mm512_load_ps(u.add(b * BUF_PER_BLOCK + 9) as *const f32);
                for t in 0..N {
                    let s = _mm512_set1_ps(xs.get_unchecked(t * nb + b).s);
                    offsets[t] = _mm512_fmadd_ps(mw, s, offsets[t]);
                }
            }
        }
        for t in 0..N {
            store::<P>(&acc[t], offsets[t], out.at(t, 0));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::blocks::{parse_blocks, quantize_q8_0, quantize_q8_1};
    use crate::cpu::{Matrix, Role};
    use candle_core::quantized::GgmlDType;
    use rand::{Rng, SeedableRng};

    /// GGUF bytes of `n` random blocks of `dtype`, with varied scales (and
    /// offsets) and every bit pattern of the values possible.
    fn random_bytes(rng: &mut impl Rng, dtype: GgmlDType, n: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for i in 0..n {
            let d = half::f16::from_f32(0.004 + 0.002 * (i % 7) as f32);
            out.extend_from_slice(&d.to_le_bytes());
            let rest = match dtype {
                GgmlDType::Q4_0 => 16,
                GgmlDType::Q4_1 => {
                    let m = half::f16::from_f32(-0.03 * (i % 5) as f32);
                    out.extend_from_slice(&m.to_le_bytes());
                    16
                }
                GgmlDType::Q5_0 => 20,
                GgmlDType::Q5_1 => {
                    let m = half::f16::from_f32(-0.03 * (i % 5) as f32);
                    out.extend_from_slice(&m.to_le_bytes());
                    20
                }
                GgmlDType::Q8_0 => 32,
                _ => unreachable!(),
            };
            out.extend((0..rest).map(|_| rng.random::<u8>()));
        }
        out
    }

    const TYPES: [GgmlDType; 5] = [
        GgmlDType::Q4_0,
        GgmlDType::Q4_1,
        GgmlDType::Q5_0,
        GgmlDType::Q5_1,
        GgmlDType::Q8_0,
    ];

    /// `dot_ggml` of every (row, token) pair of a matrix stored as `bytes`.
    /// The formula llama.cpp uses for a matrix of `dtype`: Q4_0 in groups
    /// of 16 rows, or of 8 on AVX2 CPUs, sums whole blocks (its repacked
    /// form), everything else takes `ggml_vec_dot`'s lanes.
    fn reference(dtype: GgmlDType, bytes: &[u8], x: &[f32], nb: usize) -> Vec<Vec<f32>> {
        fn each<W: LegacyBlock, A: ActBlock>(
            bytes: &[u8],
            x: &[f32],
            nb: usize,
            quantize: fn(&[f32], &mut [A]),
        ) -> Vec<Vec<f32>> {
            let w: Vec<W> = parse_blocks(bytes);
            let mut xq = vec![A::default(); x.len() / QK];
            quantize(x, &mut xq);
            xq.chunks_exact(nb)
                .map(|xt| w.chunks_exact(nb).map(|wr| dot_ggml(wr, xt)).collect())
                .collect()
        }
        let rows = bytes.len() / nb / BlockQ4_0::SIZE;
        match dtype {
            GgmlDType::Q4_0
                if rows.is_multiple_of(ROWS) || crate::cpu::dot_rows::q4_0_repacked(rows) =>
            {
                let w: Vec<BlockQ4_0> = parse_blocks(bytes);
                let mut xq = vec![BlockQ8_0::default(); x.len() / QK];
                quantize_q8_0(x, &mut xq);
                xq.chunks_exact(nb)
                    .map(|xt| {
                        w.chunks_exact(nb)
                            .map(|wr| dot_whole_blocks(wr, xt))
                            .collect()
                    })
                    .collect()
            }
            GgmlDType::Q4_0 => each::<BlockQ4_0, BlockQ8_0>(bytes, x, nb, quantize_q8_0),
            GgmlDType::Q4_1 => each::<BlockQ4_1, BlockQ8_1>(bytes, x, nb, quantize_q8_1),
            GgmlDType::Q5_0 => each::<BlockQ5_0, BlockQ8_0>(bytes, x, nb, quantize_q8_0),
            GgmlDType::Q5_1 => each::<BlockQ5_1, BlockQ8_1>(bytes, x, nb, quantize_q8_1),
            GgmlDType::Q8_0 => each::<BlockQ8_0, BlockQ8_0>(bytes, x, nb, quantize_q8_0),
            _ => unreachable!(),
        }
    }

    /// Every (row, token) of `Matrix::matmul` for layers, bit for bit
    /// ggml's formula, for batches of 1..=20 and row counts that fill
    /// groups of 16 (the x16 kernels) and that do not (the row kernels).
    #[test]
    fn layer_matmuls_equal_ggmls_formula_bit_for_bit() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        for dtype in TYPES {
            for (rows, nb) in [(16, 1), (48, 18), (32, 5), (21, 3), (7, 18), (24, 3)] {
                let cols = nb * QK;
                let bytes = random_bytes(&mut rng, dtype, rows * nb);
                let m = Matrix::from_bytes("w", dtype, rows, cols, &bytes, Role::Layer).unwrap();
                let x: Vec<f32> = (0..20 * cols)
                    .map(|_| rng.random_range(-4.0..4.0))
                    .collect();
                let want = reference(dtype, &bytes, &x, nb);
                for n in 1..=20 {
                    let mut out = vec![0f32; n * rows];
                    m.matmul(&x[..n * cols], n, &mut out).unwrap();
                    for t in 0..n {
                        for r in 0..rows {
                            let (got, want) = (out[t * rows + r], want[t][r]);
                            assert_eq!(
                                got.to_bits(),
                                want.to_bits(),
                                "{dtype:?} {rows}x{cols} batch {n} row {r} token {t}: {got} vs {want}"
                            );
                        }
                    }
                }
            }
        }
    }

    /// The scalar model of ggml's formula against the AVX2 single-row
    /// kernels that replicate ggml's code (Q4_0, Q4_1, Q8_0), bit for bit.
    #[test]
    fn formula_equals_the_avx2_single_row_kernels() {
        let k = crate::cpu::dot::best();
        if !k.fma {
            eprintln!("skipped: no AVX2");
            return;
        }
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for nb in [1, 5, 18, 48] {
            let x: Vec<f32> = (0..nb * QK).map(|_| rng.random_range(-4.0..4.0)).collect();
            let mut xq = vec![BlockQ8_0::default(); nb];
            quantize_q8_0(&x, &mut xq);
            let mut xq1 = vec![BlockQ8_1::default(); nb];
            quantize_q8_1(&x, &mut xq1);
            let w41: Vec<BlockQ4_1> = parse_blocks(&random_bytes(&mut rng, GgmlDType::Q4_1, nb));
            let (a, b) = (dot_ggml(&w41, &xq1), (k.q4_1_q8_1)(&w41, &xq1));
            assert_eq!(a.to_bits(), b.to_bits(), "q4_1 nb {nb}: {a} vs {b}");
            let w40: Vec<BlockQ4_0> = parse_blocks(&random_bytes(&mut rng, GgmlDType::Q4_0, nb));
            let w80: Vec<BlockQ8_0> = parse_blocks(&random_bytes(&mut rng, GgmlDType::Q8_0, nb));
            let (a, b) = (dot_ggml(&w40, &xq), (k.q4_0_q8_0)(&w40, &xq));
            assert_eq!(a.to_bits(), b.to_bits(), "q4_0 nb {nb}: {a} vs {b}");
            let (a, b) = (dot_ggml(&w80, &xq), (k.q8_0_q8_0)(&w80, &xq));
            assert_eq!(a.to_bits(), b.to_bits(), "q8_0 nb {nb}: {a} vs {b}");
        }
    }

    /// Our formula against candle's independent `matmul_t` (its own
    /// activation quantizer rounds ties away from zero, so to a tolerance),
    /// and embedding rows against candle's dequantization.
    #[test]
    fn formula_and_rows_agree_with_candle() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(6);
        for dtype in TYPES {
            for (rows, nb) in [(32, 18), (21, 3)] {
                let (cols, n) = (nb * QK, 5);
                let bytes = random_bytes(&mut rng, dtype, rows * nb);
                let x: Vec<f32> = (0..n * cols).map(|_| rng.random_range(-4.0..4.0)).collect();
                let ours = reference(dtype, &bytes, &x, nb);
                let q = dtype.from_data(std::borrow::Cow::Borrowed(&bytes));
                let mut theirs = vec![0f32; n * rows];
                q.matmul_t((n, cols, rows), &x, &mut theirs).unwrap();
                let values = q.dequantize(rows * cols).unwrap();
                let candle_core::CpuStorage::F32(values) = values else {
                    panic!("f32 expected")
                };
                for t in 0..n {
                    for r in 0..rows {
                        let w = &values[r * cols..(r + 1) * cols];
                        let scale: f32 = w
                            .iter()
                            .zip(&x[t * cols..])
                            .map(|(a, b)| (a * b).abs())
                            .sum();
                        let (a, b) = (ours[t][r], theirs[t * rows + r]);
                        assert!(
                            (a - b).abs() <= 2e-3 * scale + 1e-4,
                            "{dtype:?} row {r} token {t}: {a} vs candle {b}"
                        );
                    }
                }
                let m = Matrix::from_bytes("w", dtype, rows, cols, &bytes, Role::Layer).unwrap();
                let mut row = vec![0f32; cols];
                for r in 0..rows {
                    m.row(r, &mut row).unwrap();
                    assert_eq!(row, values[r * cols..(r + 1) * cols], "{dtype:?} row {r}");
                }
            }
        }
    }
}

//! ggml's block layouts for the types with our own kernels, parsed from
//! little-endian bytes, and the quantizers for activations (Q8_0, Q8_1)
//! that match ggml's rounding so logits agree with llama.cpp.

use half::f16;

/// Elements per block for every type here.
pub const QK: usize = 32;

/// 32 weights as `d * (q - 8)`, q in 0..16 (low nibbles first half).
#[derive(Debug, Clone, Copy)]
#[repr(C)]
pub struct BlockQ4_0 {
    pub d: f16,
    pub qs: [u8; 16],
}

/// 32 weights as `d * q + m`, q in 0..16.
#[derive(Debug, Clone, Copy)]
#[repr(C)]
pub struct BlockQ4_1 {
    pub d: f16,
    pub m: f16,
    pub qs: [u8; 16],
}

/// 32 weights as `d * (q - 16)`, q in 0..32: four low bits in `qs` (as
/// Q4_0), the fifth of value j in bit j of the little-endian `qh`.
#[derive(Debug, Clone, Copy)]
#[repr(C)]
pub struct BlockQ5_0 {
    pub d: f16,
    pub qh: [u8; 4],
    pub qs: [u8; 16],
}

/// 32 weights as `d * q + m`, q in 0..32 (bits as in Q5_0).
#[derive(Debug, Clone, Copy)]
#[repr(C)]
pub struct BlockQ5_1 {
    pub d: f16,
    pub m: f16,
    pub qh: [u8; 4],
    pub qs: [u8; 16],
}

/// Value `v` (0..32) of a 5-bit block: its nibble and its fifth bit.
#[inline(always)]
pub fn five_bits(qh: [u8; 4], qs: &[u8; 16], v: usize) -> u8 {
    let nibble = if v < 16 {
        qs[v] & 0x0f
    } else {
        qs[v - 16] >> 4
    };
    let high = (u32::from_le_bytes(qh) >> v) & 1;
    nibble | (high as u8) << 4
}

/// 32 values as `d * q`, q in -127..=127.
#[derive(Debug, Clone, Copy)]
#[repr(C)]
pub struct BlockQ8_0 {
    pub d: f16,
    pub qs: [i8; 32],
}

/// Q8_0 plus `s = d * sum(q)`, which folds Q4_1's offset into one product.
#[derive(Debug, Clone, Copy)]
#[repr(C)]
pub struct BlockQ8_1 {
    pub d: f16,
    pub s: f16,
    pub qs: [i8; 32],
}

fn f16_at(b: &[u8], at: usize) -> f16 {
    f16::from_le_bytes([b[at], b[at + 1]])
}

/// Block types that can be read from GGUF bytes.
pub trait FromBytes: Sized {
    /// Bytes per block in the file.
    const SIZE: usize;
    /// Parses one block; `b` has exactly `SIZE` bytes.
    fn parse(b: &[u8]) -> Self;
    /// Dequantizes into 32 floats.
    fn dequantize(&self, out: &mut [f32]);
}

impl FromBytes for BlockQ4_0 {
    const SIZE: usize = 18;
    fn parse(b: &[u8]) -> Self {
        let mut qs = [0u8; 16];
        qs.copy_from_slice(&b[2..18]);
        Self {
            d: f16_at(b, 0),
            qs,
        }
    }
    fn dequantize(&self, out: &mut [f32]) {
        let d = self.d.to_f32();
        for (j, q) in self.qs.iter().enumerate() {
            out[j] = d * ((q & 0x0f) as f32 - 8.0);
            out[j + 16] = d * ((q >> 4) as f32 - 8.0);
        }
    }
}

impl FromBytes for BlockQ4_1 {
    const SIZE: usize = 20;
    fn parse(b: &[u8]) -> Self {
        let mut qs = [0u8; 16];
        qs.copy_from_slice(&b[4..20]);
        Self {
            d: f16_at(b, 0),
            m: f16_at(b, 2),
            qs,
        }
    }
    fn dequantize(&self, out: &mut [f32]) {
        let (d, m) = (self.d.to_f32(), self.m.to_f32());
        for (j, q) in self.qs.iter().enumerate() {
            out[j] = d * (q & 0x0f) as f32 + m;
            out[j + 16] = d * (q >> 4) as f32 + m;
        }
    }
}

impl FromBytes for BlockQ5_0 {
    const SIZE: usize = 22;
    fn parse(b: &[u8]) -> Self {
        let mut qs = [0u8; 16];
        qs.copy_from_slice(&b[6..22]);
        Self {
            d: f16_at(b, 0),
            qh: [b[2], b[3], b[4], b[5]],
            qs,
        }
    }
    fn dequantize(&self, out: &mut [f32]) {
        let d = self.d.to_f32();
        for (v, o) in out.iter_mut().enumerate().take(QK) {
            *o = d * (five_bits(self.qh, &self.qs, v) as f32 - 16.0);
        }
    }
}

impl FromBytes for BlockQ5_1 {
    const SIZE: usize = 24;
    fn parse(b: &[u8]) -> Self {
        let mut qs = [0u8; 16];
        qs.copy_from_slice(&b[8..24]);
        Self {
            d: f16_at(b, 0),
            m: f16_at(b, 2),
            qh: [b[4], b[5], b[6], b[7]],
            qs,
        }
    }
    fn dequantize(&self, out: &mut [f32]) {
        let (d, m) = (self.d.to_f32(), self.m.to_f32());
        for (v, o) in out.iter_mut().enumerate().take(QK) {
            *o = d * five_bits(self.qh, &self.qs, v) as f32 + m;
        }
    }
}

impl FromBytes for BlockQ8_0 {
    const SIZE: usize = 34;
    fn parse(b: &[u8]) -> Self {
        let mut qs = [0i8; 32];
        for (q, byte) in qs.iter_mut().zip(&b[2..34]) {
            *q = *byte as i8;
        }
        Self {
            d: f16_at(b, 0),
            qs,
        }
    }
    fn dequantize(&self, out: &mut [f32]) {
        let d = self.d.to_f32();
        for (o, q) in out.iter_mut().zip(self.qs) {
            *o = d * q as f32;
        }
    }
}

/// Parses a whole tensor's bytes into blocks.
pub fn parse_blocks<B: FromBytes>(bytes: &[u8]) -> Vec<B> {
    let n = bytes.len() / B::SIZE;
    super::huge_pages::collect(n, bytes.chunks_exact(B::SIZE).map(B::parse))
}

/// Block `i` of `bytes`.
pub fn parse_block<B: FromBytes>(bytes: &[u8], i: usize) -> B {
    B::parse(&bytes[i * B::SIZE..(i + 1) * B::SIZE])
}

/// Scale and quantized values of one block of 32 activations, as ggml's
/// AVX2 `quantize_row_q8_*` computes them (round half to even).
#[inline(always)]
fn quantize_block(x: &[f32]) -> (f32, [i8; 32]) {
    let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
    let d = amax / 127.0;
    let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
    let mut qs = [0i8; 32];
    for (q, v) in qs.iter_mut().zip(x) {
        *q = (v * id).round_ties_even() as i8;
    }
    (d, qs)
}

/// Quantizes a row (length a multiple of 32) to Q8_0.
pub fn quantize_q8_0(x: &[f32], out: &mut [BlockQ8_0]) {
    #[cfg(target_arch = "x86_64")]
    if super::dot::best().fma {
        // SAFETY: `fma` is set only on CPUs with AVX2 (so SSE4.1) and FMA.
        return unsafe { quantize_q8_0_simd(x, out) };
    }
    quantize_q8_0_body(x, out);
}

/// Quantizes a row (length a multiple of 32) to Q8_1.
pub fn quantize_q8_1(x: &[f32], out: &mut [BlockQ8_1]) {
    #[cfg(target_arch = "x86_64")]
    if super::dot::best().fma {
        // SAFETY: as in `quantize_q8_0`.
        return unsafe { quantize_q8_1_simd(x, out) };
    }
    quantize_q8_1_body(x, out);
}

// ggml's own AVX2 quantizer, 8 values per instruction: every step is the
// scalar one lane by lane (exact max, the same multiply, round half to
// even), so the results are identical (tested).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn quantize_q8_0_simd(x: &[f32], out: &mut [BlockQ8_0]) {
    for (block, chunk) in out.iter_mut().zip(x.chunks_exact(QK)) {
        let (d, qs, _) = quantize_block_avx2(chunk);
        *block = BlockQ8_0 {
            d: f16::from_f32(d),
            qs,
        };
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn quantize_q8_1_simd(x: &[f32], out: &mut [BlockQ8_1]) {
    for (block, chunk) in out.iter_mut().zip(x.chunks_exact(QK)) {
        let (d, qs, sum) = quantize_block_avx2(chunk);
        *block = BlockQ8_1 {
            d: f16::from_f32(d),
            s: f16::from_f32(d * sum as f32),
            qs,
        };
    }
}

/// [`quantize_block`] on AVX2, plus the sum of the quantized values.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn quantize_block_avx2(x: &[f32]) -> (f32, [i8; 32], i32) {
    use std::arch::x86_64::*;
    debug_assert_eq!(x.len(), QK);
    let v: [__m256; 4] = std::array::from_fn(|k| _mm256_loadu_ps(x.as_ptr().add(8 * k)));
    let sign = _mm256_set1_ps(-0.0);
    let mut max = _mm256_andnot_ps(sign, v[0]);
    for vk in &v[1..] {
        max = _mm256_max_ps(max, _mm256_andnot_ps(sign, *vk));
    }
    let m4 = _mm_max_ps(_mm256_extractf128_ps(max, 1), _mm256_castps256_ps128(max));
    let m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    let m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
    let amax = _mm_cvtss_f32(m4);
    let d = amax / 127.0;
    let id = _mm256_set1_ps(if amax != 0.0 { 127.0 / amax } else { 0.0 });
    let q: [__m256i; 4] = std::array::from_fn(|k| {
        let r = _mm256_round_ps(
            _mm256_mul_ps(v[k], id),
            _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC,
        );
        _mm256_cvtps_epi32(r)
    });
    let sums = _mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3]));
    let mut lanes = [0i32; 8];
    _mm256_storeu_si256(lanes.as_mut_ptr() as *mut __m256i, sums);
    // i32 -> i16 -> i8 packs interleave the 128-bit halves; the permute
    // puts the values back in order.
    let packed = _mm256_packs_epi16(
        _mm256_packs_epi32(q[0], q[1]),
        _mm256_packs_epi32(q[2], q[3]),
    );
    let ordered = _mm256_permutevar8x32_epi32(packed, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    let mut qs = [0i8; 32];
    _mm256_storeu_si256(qs.as_mut_ptr() as *mut __m256i, ordered);
    (d, qs, lanes.iter().sum())
}

#[inline(always)]
fn quantize_q8_0_body(x: &[f32], out: &mut [BlockQ8_0]) {
    for (block, chunk) in out.iter_mut().zip(x.chunks_exact(QK)) {
        let (d, qs) = quantize_block(chunk);
        *block = BlockQ8_0 {
            d: f16::from_f32(d),
            qs,
        };
    }
}

#[inline(always)]
fn quantize_q8_1_body(x: &[f32], out: &mut [BlockQ8_1]) {
    for (block, chunk) in out.iter_mut().zip(x.chunks_exact(QK)) {
        let (d, qs) = quantize_block(chunk);
        let sum: i32 = qs.iter().map(|&q| q as i32).sum();
        *block = BlockQ8_1 {
            d: f16::from_f32(d),
            s: f16::from_f32(d * sum as f32),
            qs,
        };
    }
}

impl Default for BlockQ8_0 {
    fn default() -> Self {
        Self {
            d: f16::ZERO,
            qs: [0; 32],
        }
    }
}

impl Default for BlockQ8_1 {
    fn default() -> Self {
        Self {
            d: f16::ZERO,
            s: f16::ZERO,
            qs: [0; 32],
        }
    }
}

/// `n` Q4_1 blocks with random values and varied scales and offsets, for
/// kernel tests.
#[cfg(test)]
pub(crate) fn random_q4_1(rng: &mut impl rand::Rng, n: usize) -> Vec<BlockQ4_1> {
    (0..n)
        .map(|i| {
            let mut qs = [0u8; 16];
            rng.fill(&mut qs[..]);
            BlockQ4_1 {
                d: f16::from_f32(0.01 + 0.003 * (i % 7) as f32),
                m: f16::from_f32(-0.05 * (i % 5) as f32),
                qs,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// The AVX2 quantizers against the scalar bodies, bit for bit, on
    /// random rows, a zero block, ties (x * 127 / amax = k + 0.5) and
    /// extremes.
    #[test]
    fn simd_quantizers_equal_the_scalar_ones() {
        if !crate::cpu::dot::best().fma {
            eprintln!("skipped: no AVX2/FMA");
            return;
        }
        let mut rng = rand::rngs::StdRng::seed_from_u64(9);
        let mut x: Vec<f32> = (0..64 * QK).map(|_| rng.random_range(-3.0..3.0)).collect();
        x[..QK].fill(0.0);
        // amax 127 makes the scale exactly 1: every k + 0.5 is a tie.
        for (i, v) in x[QK..2 * QK].iter_mut().enumerate() {
            *v = (i as f32 - 16.0) + 0.5;
        }
        x[QK] = 127.0;
        x[2 * QK] = 1e30;
        x[3 * QK + 5] = -1e-30;
        let n = x.len() / QK;
        let (mut a0, mut b0) = (vec![BlockQ8_0::default(); n], vec![BlockQ8_0::default(); n]);
        let (mut a1, mut b1) = (vec![BlockQ8_1::default(); n], vec![BlockQ8_1::default(); n]);
        quantize_q8_0(&x, &mut a0);
        quantize_q8_0_body(&x, &mut b0);
        quantize_q8_1(&x, &mut a1);
        quantize_q8_1_body(&x, &mut b1);
        for i in 0..n {
            assert_eq!((a0[i].d, a0[i].qs), (b0[i].d, b0[i].qs), "q8_0 block {i}");
            assert_eq!(
                (a1[i].d, a1[i].s, a1[i].qs),
                (b1[i].d, b1[i].s, b1[i].qs),
                "q8_1 block {i}"
            );
        }
    }
}

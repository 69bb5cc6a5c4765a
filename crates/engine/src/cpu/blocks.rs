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
    bytes.chunks_exact(B::SIZE).map(B::parse).collect()
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

// With SSE4.1 enabled, `round_ties_even` is one `roundss` instead of a call
// to libm's `rintf` per value (same results).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn quantize_q8_0_simd(x: &[f32], out: &mut [BlockQ8_0]) {
    quantize_q8_0_body(x, out);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn quantize_q8_1_simd(x: &[f32], out: &mut [BlockQ8_1]) {
    quantize_q8_1_body(x, out);
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

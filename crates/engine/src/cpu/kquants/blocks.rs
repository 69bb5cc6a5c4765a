//! ggml's K-quant block layouts (256 values per block, sub-blocks with
//! their own scales), parsed from GGUF bytes, and their dequantization for
//! embedding lookups.

use half::f16;

/// Values per K-quant block.
pub const QK_K: usize = 256;

/// 256 weights in 8 sub-blocks of 32: `d * sc[j] * q - dmin * m[j]`,
/// q in 0..16, 6-bit `sc`/`m` packed in `scales`. In the file, `qs` byte
/// i of 32-byte group g holds value i of sub-block 2g (low nibble) and of
/// 2g + 1 (high nibble); [`KBlock::parse`] transposes them for the
/// kernels: value e of sub-block j sits at byte `32 * (k / 2) + 4 * j + e %
/// 4`, nibble `k % 2`, where k = e / 4, so 32 bytes of nibbles hold
/// values 4k..4k+4 of every sub-block, sub-block j in 32-bit lane j.
#[derive(Debug, Clone, Copy)]
#[repr(C)]
pub struct BlockQ4K {
    pub d: f16,
    pub dmin: f16,
    pub scales: [u8; 12],
    pub qs: [u8; 128],
}

/// Q4_K plus a fifth bit per weight: bit j of `qh[i]` belongs to element
/// i of sub-block j; q in 0..32.
#[derive(Debug, Clone, Copy)]
#[repr(C)]
pub struct BlockQ5K {
    pub d: f16,
    pub dmin: f16,
    pub scales: [u8; 12],
    pub qh: [u8; 32],
    pub qs: [u8; 128],
}

/// 256 weights in 16 sub-blocks of 16: `d * scales[j] * (q - 32)`, q in
/// 0..64 split as 4 low bits in `ql` and 2 high bits in `qh`.
#[derive(Debug, Clone, Copy)]
#[repr(C)]
pub struct BlockQ6K {
    pub ql: [u8; 128],
    pub qh: [u8; 64],
    pub scales: [i8; 16],
    pub d: f16,
}

/// 256 weights in 16 sub-blocks of 16: `d * (scales[j] & 15) * q - dmin *
/// (scales[j] >> 4)`, q in 0..4 as 2-bit fields of `qs`.
#[derive(Debug, Clone, Copy)]
#[repr(C)]
pub struct BlockQ2K {
    pub scales: [u8; 16],
    pub qs: [u8; 64],
    pub d: f16,
    pub dmin: f16,
}

/// 256 weights in 16 sub-blocks of 16: `d * (s[j] - 32) * (q - 4)`, q in
/// 0..8 as 2 bits in `qs` and a third in `hmask`, 6-bit `s` packed in
/// `scales`.
#[derive(Debug, Clone, Copy)]
#[repr(C)]
pub struct BlockQ3K {
    pub hmask: [u8; 32],
    pub qs: [u8; 64],
    pub scales: [u8; 12],
    pub d: f16,
}

/// A K-quant weight block: its GGUF size, parser and dequantizer.
pub trait KBlock: Copy + Send + Sync {
    /// Bytes per block in the file.
    const SIZE: usize;
    /// Parses one block; `b` has exactly `SIZE` bytes.
    fn parse(b: &[u8]) -> Self;
    /// The 256 weights as floats (ggml's `dequantize_row_*`).
    fn dequantize(&self, out: &mut [f32]);
}

fn f16_at(b: &[u8], at: usize) -> f16 {
    f16::from_le_bytes([b[at], b[at + 1]])
}

fn array<const N: usize>(b: &[u8]) -> [u8; N] {
    let mut a = [0u8; N];
    a.copy_from_slice(&b[..N]);
    a
}

/// The 8 six-bit scales and 8 six-bit mins of a Q4_K/Q5_K block, as
/// ggml's `get_scale_min_k4` unpacks them.
pub fn scales_and_mins(packed: &[u8; 12]) -> ([u8; 8], [u8; 8]) {
    let (mut sc, mut m) = ([0u8; 8], [0u8; 8]);
    for j in 0..8 {
        if j < 4 {
            sc[j] = packed[j] & 63;
            m[j] = packed[j + 4] & 63;
        } else {
            sc[j] = (packed[j + 4] & 0x0f) | ((packed[j - 4] >> 6) << 4);
            m[j] = (packed[j + 4] >> 4) | ((packed[j] >> 6) << 4);
        }
    }
    (sc, m)
}

/// Byte and shift of value `e` of sub-block `j` in a transposed Q4_K
/// block.
#[inline(always)]
fn q4k_at(j: usize, e: usize) -> (usize, u32) {
    let k = e / 4;
    (32 * (k / 2) + 4 * j + e % 4, 4 * (k % 2) as u32)
}

impl BlockQ4K {
    /// Weight `i` (0..256) as its 4-bit integer.
    #[inline(always)]
    pub fn q(&self, i: usize) -> u8 {
        let (byte, shift) = q4k_at(i / 32, i % 32);
        (self.qs[byte] >> shift) & 0x0f
    }
}

impl BlockQ5K {
    /// Weight `i` (0..256) as its 5-bit integer.
    #[inline(always)]
    pub fn q(&self, i: usize) -> u8 {
        let (sub, at) = (i / 32, i % 32);
        let low = (self.qs[(sub / 2) * 32 + at] >> (4 * (sub % 2))) & 0x0f;
        low | (((self.qh[at] >> sub) & 1) << 4)
    }
}

impl BlockQ6K {
    /// Weight `i` (0..256) as its 6-bit unsigned integer (value + 32).
    #[inline(always)]
    pub fn q(&self, i: usize) -> u8 {
        // Each half of 128 values: four runs of 32 sharing `qh[0..32]`.
        let (half, run, at) = (i / 128, (i % 128) / 32, i % 32);
        let ql = self.ql[half * 64 + (run % 2) * 32 + at];
        let low = if run < 2 { ql & 0x0f } else { ql >> 4 };
        let high = (self.qh[half * 32 + at] >> (2 * run)) & 3;
        low | (high << 4)
    }
}

/// The 2-bit field of weight `i` in a Q2_K/Q3_K `qs`: each half of 128
/// values is four runs of 32 sharing 32 bytes, run j at bits 2j.
#[inline(always)]
fn two_bits(qs: &[u8; 64], i: usize) -> u8 {
    let (half, run, at) = (i / 128, (i % 128) / 32, i % 32);
    (qs[half * 32 + at] >> (2 * run)) & 3
}

impl BlockQ2K {
    /// Weight `i` (0..256) as its 2-bit integer.
    #[inline(always)]
    pub fn q(&self, i: usize) -> u8 {
        two_bits(&self.qs, i)
    }
}

impl BlockQ3K {
    /// Weight `i` (0..256) as its 3-bit unsigned integer (value + 4): bit
    /// `i / 32` of `hmask[i % 32]` is the high bit.
    #[inline(always)]
    pub fn q(&self, i: usize) -> u8 {
        two_bits(&self.qs, i) | (((self.hmask[i % 32] >> (i / 32)) & 1) << 2)
    }

    /// The 16 sub-block scales, 6 bits each less 32, as ggml unpacks them
    /// (low 4 bits from bytes 0..8, high 2 bits from bytes 8..12).
    pub fn scales(&self) -> [i8; 16] {
        let mut out = [0i8; 16];
        for (j, o) in out.iter_mut().enumerate() {
            let low = (self.scales[j % 8] >> (4 * (j / 8))) & 0x0f;
            let high = (self.scales[8 + j % 4] >> (2 * (j / 4))) & 3;
            *o = (low | (high << 4)) as i8 - 32;
        }
        out
    }
}

/// A Q4_K/Q5_K block (`q(i)` its weights) as ggml's `dequantize_row_q4_K`
/// computes it.
fn dequantize_k4(d: f16, dmin: f16, packed: &[u8; 12], q: impl Fn(usize) -> u8, out: &mut [f32]) {
    let (d, dmin) = (d.to_f32(), dmin.to_f32());
    let (sc, m) = scales_and_mins(packed);
    for (i, o) in out[..QK_K].iter_mut().enumerate() {
        let j = i / 32;
        *o = d * sc[j] as f32 * q(i) as f32 - dmin * m[j] as f32;
    }
}

impl KBlock for BlockQ4K {
    const SIZE: usize = 144;
    fn parse(b: &[u8]) -> Self {
        let mut qs = [0u8; 128];
        for (at, byte) in b[16..144].iter().enumerate() {
            let (group, i) = (at / 32, at % 32);
            for (half, v) in [byte & 0x0f, byte >> 4].into_iter().enumerate() {
                let (to, shift) = q4k_at(2 * group + half, i);
                qs[to] |= v << shift;
            }
        }
        Self {
            d: f16_at(b, 0),
            dmin: f16_at(b, 2),
            scales: array(&b[4..]),
            qs,
        }
    }
    fn dequantize(&self, out: &mut [f32]) {
        dequantize_k4(self.d, self.dmin, &self.scales, |i| self.q(i), out);
    }
}

impl KBlock for BlockQ5K {
    const SIZE: usize = 176;
    fn parse(b: &[u8]) -> Self {
        Self {
            d: f16_at(b, 0),
            dmin: f16_at(b, 2),
            scales: array(&b[4..]),
            qh: array(&b[16..]),
            qs: array(&b[48..]),
        }
    }
    fn dequantize(&self, out: &mut [f32]) {
        dequantize_k4(self.d, self.dmin, &self.scales, |i| self.q(i), out);
    }
}

impl KBlock for BlockQ6K {
    const SIZE: usize = 210;
    fn parse(b: &[u8]) -> Self {
        let mut scales = [0i8; 16];
        for (s, byte) in scales.iter_mut().zip(&b[192..208]) {
            *s = *byte as i8;
        }
        Self {
            ql: array(b),
            qh: array(&b[128..]),
            scales,
            d: f16_at(b, 208),
        }
    }
    fn dequantize(&self, out: &mut [f32]) {
        let d = self.d.to_f32();
        for (i, o) in out[..QK_K].iter_mut().enumerate() {
            *o = d * self.scales[i / 16] as f32 * (self.q(i) as i32 - 32) as f32;
        }
    }
}

impl KBlock for BlockQ2K {
    const SIZE: usize = 84;
    fn parse(b: &[u8]) -> Self {
        Self {
            scales: array(b),
            qs: array(&b[16..]),
            d: f16_at(b, 80),
            dmin: f16_at(b, 82),
        }
    }
    fn dequantize(&self, out: &mut [f32]) {
        let (d, dmin) = (self.d.to_f32(), self.dmin.to_f32());
        for (i, o) in out[..QK_K].iter_mut().enumerate() {
            let sc = self.scales[i / 16];
            let (dl, ml) = (d * (sc & 0x0f) as f32, dmin * (sc >> 4) as f32);
            *o = dl * self.q(i) as f32 - ml;
        }
    }
}

impl KBlock for BlockQ3K {
    const SIZE: usize = 110;
    fn parse(b: &[u8]) -> Self {
        Self {
            hmask: array(b),
            qs: array(&b[32..]),
            scales: array(&b[96..]),
            d: f16_at(b, 108),
        }
    }
    fn dequantize(&self, out: &mut [f32]) {
        let (d, scales) = (self.d.to_f32(), self.scales());
        for (i, o) in out[..QK_K].iter_mut().enumerate() {
            *o = d * scales[i / 16] as f32 * (self.q(i) as i32 - 4) as f32;
        }
    }
}

/// Parses a whole tensor's bytes into blocks.
pub fn parse_blocks<B: KBlock>(bytes: &[u8]) -> Vec<B> {
    let n = bytes.len() / B::SIZE;
    crate::cpu::huge_pages::collect(n, bytes.chunks_exact(B::SIZE).map(B::parse))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::quantized::{GgmlDType, QTensor};
    use candle_core::{Device, Tensor};
    use rand::{Rng, SeedableRng};

    /// Our parsers and dequantizers against candle's on blocks candle
    /// quantized: the same floats, bit for bit.
    #[test]
    fn dequantization_equals_candles() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        let values: Vec<f32> = (0..4 * QK_K).map(|_| rng.random_range(-2.0..2.0)).collect();
        let t = Tensor::from_vec(values, (4, QK_K), &Device::Cpu).unwrap();
        fn check<B: KBlock>(t: &Tensor, dtype: GgmlDType) {
            let q = QTensor::quantize(t, dtype).unwrap();
            let want = crate::cpu::kquants::tests::dequantized(&q);
            let blocks: Vec<B> = parse_blocks(&q.data().unwrap());
            let mut got = vec![0f32; want.len()];
            for (b, out) in blocks.iter().zip(got.chunks_exact_mut(QK_K)) {
                b.dequantize(out);
            }
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                assert_eq!(g.to_bits(), w.to_bits(), "{dtype:?} value {i}: {g} vs {w}");
            }
        }
        check::<BlockQ4K>(&t, GgmlDType::Q4K);
        check::<BlockQ5K>(&t, GgmlDType::Q5K);
        check::<BlockQ6K>(&t, GgmlDType::Q6K);
        check::<BlockQ2K>(&t, GgmlDType::Q2K);
        check::<BlockQ3K>(&t, GgmlDType::Q3K);
    }
}

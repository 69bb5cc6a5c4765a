//! The K-quant kernels against ggml's formula written out (the portable
//! kernels), against candle's own dot products, and through `Matrix`
//! against dequantized weights.

use candle_core::quantized::k_quants::{self as ck, GgmlType};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use rand::{Rng, SeedableRng};

use super::blocks::{
    scales_and_mins, BlockQ2K, BlockQ3K, BlockQ4K, BlockQ5K, BlockQ6K, KBlock, QK_K,
};
use super::quantize::{quantize_rows, BlockQ8K};
use super::*;
use crate::cpu::{Matrix, Role};

/// Blocks of `dtype` two ways: candle's quantizer on random values (real
/// scale patterns), then random bytes with small scales (every bit
/// pattern of the packed fields).
fn weight_bytes(rng: &mut impl Rng, dtype: GgmlDType, blocks: usize) -> Vec<u8> {
    let quantized = blocks.div_ceil(2);
    let values: Vec<f32> = (0..quantized * QK_K)
        .map(|_| rng.random_range(-1.0..1.0))
        .collect();
    let t = Tensor::from_vec(values, quantized * QK_K, &Device::Cpu).unwrap();
    let mut bytes = QTensor::quantize(&t, dtype)
        .unwrap()
        .data()
        .unwrap()
        .to_vec();
    let size = dtype.type_size();
    for _ in quantized..blocks {
        let mut b = vec![0u8; size];
        rng.fill(&mut b[..]);
        // d (and dmin) as small normal f16s, whatever the layout.
        let d_at = match dtype {
            GgmlDType::Q6K => vec![208],
            GgmlDType::Q3K => vec![108],
            GgmlDType::Q2K => vec![80, 82],
            _ => vec![0, 2],
        };
        for at in d_at {
            let d = half::f16::from_f32(rng.random_range(0.001..0.05));
            b[at..at + 2].copy_from_slice(&d.to_le_bytes());
        }
        bytes.extend(b);
    }
    bytes
}

fn activations(rng: &mut impl Rng, rows: usize, cols: usize) -> Vec<f32> {
    (0..rows * cols)
        .map(|_| rng.random_range(-4.0..4.0))
        .collect()
}

/// ggml's formula term by term in f64, and the sum of the terms' sizes
/// (what the rounding of ggml's partial sums is relative to).
fn reference(w: &[impl Exact], x: &[BlockQ8K]) -> (f64, f64) {
    let (mut sum, mut size) = (0f64, 0f64);
    for (w, x) in w.iter().zip(x) {
        let ([dot, offset], [dot_size, offset_size]) = w.integer_parts(x);
        let (d, dmin) = w.scales();
        let dx = x.d as f64;
        sum += d * dx * dot as f64 - dmin * dx * offset as f64;
        size += (d * dx * dot_size as f64).abs() + (dmin * dx * offset_size as f64).abs();
    }
    (sum, size)
}

/// The integer sums of one block pair, straight from the definitions:
/// Σ scale·q·x and the offset sum (Σ m·x for Q4_K/Q5_K; Q6_K folds its
/// -32 into the first), then bounds on ggml's partial sums of each (sums
/// of absolute terms; Q6_K's partial sums use unsigned q).
trait Exact {
    fn integer_parts(&self, x: &BlockQ8K) -> ([i64; 2], [i64; 2]);
    fn scales(&self) -> (f64, f64);
}

impl Exact for BlockQ4K {
    fn integer_parts(&self, x: &BlockQ8K) -> ([i64; 2], [i64; 2]) {
        k4_parts(|i| self.q(i), &self.scales, x)
    }
    fn scales(&self) -> (f64, f64) {
        (self.d.to_f64(), self.dmin.to_f64())
    }
}

impl Exact for BlockQ5K {
    fn integer_parts(&self, x: &BlockQ8K) -> ([i64; 2], [i64; 2]) {
        k4_parts(|i| self.q(i), &self.scales, x)
    }
    fn scales(&self) -> (f64, f64) {
        (self.d.to_f64(), self.dmin.to_f64())
    }
}

impl Exact for BlockQ6K {
    fn integer_parts(&self, x: &BlockQ8K) -> ([i64; 2], [i64; 2]) {
        let sx = |i: usize| self.scales[i / 16] as i64 * x.qs[i] as i64;
        let dot = (0..QK_K).map(|i| sx(i) * (self.q(i) as i64 - 32)).sum();
        let size = (0..QK_K)
            .map(|i| (sx(i) * self.q(i) as i64).abs() + (32 * sx(i)).abs())
            .sum();
        ([dot, 0], [size, 0])
    }
    fn scales(&self) -> (f64, f64) {
        (self.d.to_f64(), 0.0)
    }
}

impl Exact for BlockQ2K {
    fn integer_parts(&self, x: &BlockQ8K) -> ([i64; 2], [i64; 2]) {
        let dot =
            |i: usize| (self.scales[i / 16] & 0x0f) as i64 * self.q(i) as i64 * x.qs[i] as i64;
        let offset = |i: usize| (self.scales[i / 16] >> 4) as i64 * x.qs[i] as i64;
        let sum = |f: &dyn Fn(usize) -> i64| (0..QK_K).map(f).sum::<i64>();
        (
            [sum(&dot), sum(&offset)],
            [sum(&|i| dot(i).abs()), sum(&|i| offset(i).abs())],
        )
    }
    fn scales(&self) -> (f64, f64) {
        (self.d.to_f64(), self.dmin.to_f64())
    }
}

impl Exact for BlockQ3K {
    fn integer_parts(&self, x: &BlockQ8K) -> ([i64; 2], [i64; 2]) {
        let scales = self.scales();
        let sx = |i: usize| scales[i / 16] as i64 * x.qs[i] as i64;
        let dot = (0..QK_K).map(|i| sx(i) * (self.q(i) as i64 - 4)).sum();
        let size = (0..QK_K)
            .map(|i| (sx(i) * self.q(i) as i64).abs() + (4 * sx(i)).abs())
            .sum();
        ([dot, 0], [size, 0])
    }
    fn scales(&self) -> (f64, f64) {
        (self.d.to_f64(), 0.0)
    }
}

fn k4_parts(q: impl Fn(usize) -> u8, packed: &[u8; 12], x: &BlockQ8K) -> ([i64; 2], [i64; 2]) {
    let (sc, m) = scales_and_mins(packed);
    let dot = |i: usize| sc[i / 32] as i64 * q(i) as i64 * x.qs[i] as i64;
    let offset = |i: usize| m[i / 32] as i64 * x.qs[i] as i64;
    let sum = |f: &dyn Fn(usize) -> i64| (0..QK_K).map(f).sum::<i64>();
    (
        [sum(&dot), sum(&offset)],
        [sum(&|i| dot(i).abs()), sum(&|i| offset(i).abs())],
    )
}

/// candle's dequantization of `q`, flattened.
pub(super) fn dequantized(q: &QTensor) -> Vec<f32> {
    let t = q.dequantize(&Device::Cpu).unwrap();
    t.flatten_all().unwrap().to_vec1().unwrap()
}

/// Runs `kernel` over all of `w` and `x` into a `[n, rows]` output.
fn run<W>(kernel: Kernel<W>, w: &[W], x: &[BlockQ8K], nb: usize) -> Vec<f32> {
    let (rows, n) = (w.len() / nb, x.len() / nb);
    let mut out = vec![f32::NAN; rows * n];
    let into = OutRows {
        ptr: out.as_mut_ptr(),
        stride: rows,
    };
    let sums = super::quantize::strip_sums(x, nb);
    // SAFETY: `out` holds n x rows places, all this thread's.
    unsafe { kernel(w, x, &sums, nb, into) };
    out
}

/// For one weight type: every SIMD kernel set equals the portable one bit
/// for bit at every batch size 1..=20 (and some from 32 and 96 on) and row
/// counts that leave partial tiles, and the portable ones equal ggml's
/// formula in exact arithmetic within f32 rounding.
fn check_type<B: KBlock + Exact>(
    dtype: GgmlDType,
    pick: fn(&Kernels) -> Kernel<B>,
    single: fn(&[B], &[BlockQ8K]) -> f32,
) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(dtype as u64);
    // 44 blocks: strips of 2 rows and more too wide for L1 (`fits_l1`);
    // 40 rows: two groups of 16 and a rest, with batches from 32 and 96 on
    // and every strip remainder (`rows16`).
    for (nb, rows) in [(1, 1), (2, 7), (3, 19), (1, 17), (4, 5), (44, 3), (2, 40)] {
        let w: Vec<B> = blocks::parse_blocks(&weight_bytes(&mut rng, dtype, rows * nb));
        let wide = if rows == 40 {
            &[32, 33, 34, 35, 96, 97, 98, 99][..]
        } else {
            &[]
        };
        for n in (1..=20).chain(wide.iter().copied()) {
            let x = quantize_rows(&activations(&mut rng, n, nb * QK_K), nb * QK_K);
            let want = run(pick(&PORTABLE), &w, &x, nb);
            for k in all() {
                let got = run(pick(&k), &w, &x, nb);
                for (i, (g, p)) in got.iter().zip(&want).enumerate() {
                    assert_eq!(
                        g.to_bits(),
                        p.to_bits(),
                        "{dtype:?} {} nb {nb} rows {rows} batch {n} at {i}: {g} vs {p}",
                        k.name
                    );
                }
            }
            for (r, wr) in w.chunks_exact(nb).enumerate() {
                for (t, xr) in x.chunks_exact(nb).enumerate() {
                    let (exact, size) = reference(wr, xr);
                    let got = want[t * rows + r] as f64;
                    assert!(
                        (got - exact).abs() <= 1e-6 * size + 1e-9,
                        "{dtype:?} row {r} token {t} batch {n}: {got} vs exact {exact} (size {size})"
                    );
                    assert_eq!(single(wr, xr).to_bits(), want[t * rows + r].to_bits());
                }
            }
        }
    }
}

#[test]
fn q4_k_kernels_equal_ggmls_formula() {
    check_type::<BlockQ4K>(GgmlDType::Q4K, |k| k.q4k, portable::q4k_q8k);
}

#[test]
fn q5_k_kernels_equal_ggmls_formula() {
    check_type::<BlockQ5K>(GgmlDType::Q5K, |k| k.q5k, portable::q5k_q8k);
}

#[test]
fn q6_k_kernels_equal_ggmls_formula() {
    check_type::<BlockQ6K>(GgmlDType::Q6K, |k| k.q6k, portable::q6k_q8k);
}

#[test]
fn q2_k_kernels_equal_the_formula() {
    check_type::<BlockQ2K>(GgmlDType::Q2K, |k| k.q2k, portable::q2k_q8k);
}

#[test]
fn q3_k_kernels_equal_the_formula() {
    check_type::<BlockQ3K>(GgmlDType::Q3K, |k| k.q3k, portable::q3k_q8k);
}

#[test]
fn tiled_rows_follow_llamacpps_ubatches() {
    use portable::tiled_rows;
    assert_eq!(
        [0, 1, 7, 8, 512, 513, 519, 520, 1031, 1032].map(tiled_rows),
        [0, 0, 0, 8, 512, 512, 512, 520, 1024, 1032]
    );
}

#[test]
fn q4_k_gemm_kernels_equal_ggmls_formula() {
    check_type::<BlockQ4K>(GgmlDType::Q4K, |k| k.q4k_gemm, portable::q4k_q8k_gemm);
}

#[test]
fn q5_k_tiled_kernels_equal_ggmls_formula() {
    check_type::<BlockQ5K>(GgmlDType::Q5K, |k| k.q5k_tiled, portable::q5k_q8k_tiled);
}

#[test]
fn q6_k_tiled_kernels_equal_ggmls_formula() {
    check_type::<BlockQ6K>(GgmlDType::Q6K, |k| k.q6k_tiled, portable::q6k_q8k_tiled);
}

/// A matmul takes `vec_dot`'s order below 8 activation rows and the tiled
/// matmul's from 8 on, as llama.cpp does; the two orders do differ.
/// Q4_K takes `gemm`'s order for whole fours of rows and `gemv`'s for the
/// rest (the two in turn on panels of rows: one thread's 34 rows here
/// span two). A batch longer than llama.cpp's ubatch whose last ubatch is
/// short (515 rows: 512 + 3) takes `vec_dot`'s order for that one.
#[test]
fn matmul_takes_llamacpps_order_for_its_batch_size() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(8);
    let (rows, nb) = (136, 6);
    let cols = nb * QK_K;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    for dtype in [GgmlDType::Q4K, GgmlDType::Q5K, GgmlDType::Q6K] {
        let bytes = weight_bytes(&mut rng, dtype, rows * nb);
        let m = Matrix::from_bytes("w", dtype, rows, cols, &bytes, Role::Layer).unwrap();
        let (q4k, q5k, q6k): (Vec<BlockQ4K>, Vec<BlockQ5K>, Vec<BlockQ6K>) = match dtype {
            GgmlDType::Q4K => (blocks::parse_blocks(&bytes), vec![], vec![]),
            GgmlDType::Q5K => (vec![], blocks::parse_blocks(&bytes), vec![]),
            _ => (vec![], vec![], blocks::parse_blocks(&bytes)),
        };
        let mut orders_differ = false;
        for n in [5, 7, 8, 13, 515, 520] {
            let x = activations(&mut rng, n, cols);
            let mut out = vec![0f32; n * rows];
            pool.install(|| m.matmul(&x, n, &mut out)).unwrap();
            let xq = quantize_rows(&x, cols);
            for r in 0..rows {
                let own = r * nb..(r + 1) * nb;
                for t in 0..n {
                    let xr = &xq[t * nb..(t + 1) * nb];
                    let (plain, tiled) = match dtype {
                        GgmlDType::Q4K => {
                            let wr = &q4k[own.clone()];
                            (portable::q4k_q8k(wr, xr), portable::q4k_q8k_gemm(wr, xr))
                        }
                        GgmlDType::Q5K => {
                            let wr = &q5k[own.clone()];
                            (portable::q5k_q8k(wr, xr), portable::q5k_q8k_tiled(wr, xr))
                        }
                        _ => {
                            let wr = &q6k[own.clone()];
                            (portable::q6k_q8k(wr, xr), portable::q6k_q8k_tiled(wr, xr))
                        }
                    };
                    let other = match dtype {
                        GgmlDType::Q4K => t < portable::q4k_gemm_rows(n),
                        _ => t < portable::tiled_rows(n),
                    };
                    let want = if other { tiled } else { plain };
                    orders_differ |= plain.to_bits() != tiled.to_bits();
                    assert_eq!(
                        out[t * rows + r].to_bits(),
                        want.to_bits(),
                        "{dtype:?} batch {n} row {r} token {t}"
                    );
                }
            }
        }
        assert!(orders_differ, "{dtype:?}: the two orders gave equal sums");
    }
}

/// candle's blocks from GGUF bytes (`#[repr(C)]` in ggml's layout).
fn candle_blocks<T>(bytes: &[u8]) -> Vec<T> {
    bytes
        .chunks_exact(std::mem::size_of::<T>())
        .map(|b| {
            // SAFETY: `b` is one block of `T`'s plain `#[repr(C)]` layout.
            unsafe { std::ptr::read_unaligned(b.as_ptr() as *const T) }
        })
        .collect()
}

/// Our Q8_K in candle's layout (`d`, `qs`, `bsums`).
fn q8k_for_candle(x: &[BlockQ8K]) -> Vec<ck::BlockQ8K> {
    x.iter()
        .map(|b| {
            let mut bytes = Vec::with_capacity(292);
            bytes.extend(b.d.to_le_bytes());
            bytes.extend(b.qs.iter().map(|&q| q as u8));
            bytes.extend(b.bsums.iter().flat_map(|s| s.to_le_bytes()));
            assert_eq!(bytes.len(), std::mem::size_of::<ck::BlockQ8K>());
            // SAFETY: `bytes` is one block in candle's `#[repr(C)]` layout.
            unsafe { std::ptr::read_unaligned(bytes.as_ptr() as *const ck::BlockQ8K) }
        })
        .collect()
}

/// candle's `vec_dot` (its own implementation of ggml's formula) on the
/// same blocks agrees with ours within f32 rounding.
#[test]
fn kernels_agree_with_candles_vec_dot() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(77);
    let nb = 6;
    let n = nb * QK_K;
    let x = quantize_rows(&activations(&mut rng, 1, n), n);
    let cx = q8k_for_candle(&x);
    let close = |ours: f32, theirs: f32, what: &str| {
        assert!(
            (ours - theirs).abs() <= 1e-4 * (1.0 + theirs.abs()),
            "{what}: ours {ours} vs candle {theirs}"
        );
    };
    let bytes = weight_bytes(&mut rng, GgmlDType::Q4K, nb);
    let w: Vec<BlockQ4K> = blocks::parse_blocks(&bytes);
    let theirs = ck::BlockQ4K::vec_dot(n, &candle_blocks::<ck::BlockQ4K>(&bytes), &cx);
    close(portable::q4k_q8k(&w, &x), theirs, "q4_k");
    let bytes = weight_bytes(&mut rng, GgmlDType::Q5K, nb);
    let w: Vec<BlockQ5K> = blocks::parse_blocks(&bytes);
    let theirs = ck::BlockQ5K::vec_dot(n, &candle_blocks::<ck::BlockQ5K>(&bytes), &cx);
    close(portable::q5k_q8k(&w, &x), theirs, "q5_k");
    let bytes = weight_bytes(&mut rng, GgmlDType::Q6K, nb);
    let w: Vec<BlockQ6K> = blocks::parse_blocks(&bytes);
    let theirs = ck::BlockQ6K::vec_dot(n, &candle_blocks::<ck::BlockQ6K>(&bytes), &cx);
    close(portable::q6k_q8k(&w, &x), theirs, "q6_k");
    let bytes = weight_bytes(&mut rng, GgmlDType::Q2K, nb);
    let w: Vec<BlockQ2K> = blocks::parse_blocks(&bytes);
    let theirs = ck::BlockQ2K::vec_dot(n, &candle_blocks::<ck::BlockQ2K>(&bytes), &cx);
    close(portable::q2k_q8k(&w, &x), theirs, "q2_k");
    let bytes = weight_bytes(&mut rng, GgmlDType::Q3K, nb);
    let w: Vec<BlockQ3K> = blocks::parse_blocks(&bytes);
    let theirs = ck::BlockQ3K::vec_dot(n, &candle_blocks::<ck::BlockQ3K>(&bytes), &cx);
    close(portable::q3k_q8k(&w, &x), theirs, "q3_k");
}

/// Every K-quant through `Matrix` (ours for Q4_K-Q6_K, candle's for Q2_K
/// and Q3_K): matmul of a batch against the dequantized rows times the
/// f32 input, and embedding rows equal to candle's dequantization.
#[test]
fn matrix_matmul_matches_dequantized_weights() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let (rows, cols, n) = (13, 3 * QK_K, 5);
    let x = activations(&mut rng, n, cols);
    for dtype in [
        GgmlDType::Q2K,
        GgmlDType::Q3K,
        GgmlDType::Q4K,
        GgmlDType::Q5K,
        GgmlDType::Q6K,
    ] {
        let values: Vec<f32> = (0..rows * cols)
            .map(|_| rng.random_range(-1.0..1.0))
            .collect();
        let t = Tensor::from_vec(values, (rows, cols), &Device::Cpu).unwrap();
        let q = QTensor::quantize(&t, dtype).unwrap();
        let deq = dequantized(&q);
        let m =
            Matrix::from_bytes("w", dtype, rows, cols, &q.data().unwrap(), Role::Layer).unwrap();
        let mut row = vec![0f32; cols];
        for r in 0..rows {
            m.row(r, &mut row).unwrap();
            assert_eq!(row, deq[r * cols..(r + 1) * cols], "{dtype:?} row {r}");
        }
        let mut out = vec![0f32; n * rows];
        m.matmul(&x, n, &mut out).unwrap();
        for t in 0..n {
            for r in 0..rows {
                let (w, xt) = (&deq[r * cols..(r + 1) * cols], &x[t * cols..(t + 1) * cols]);
                let want: f64 = w.iter().zip(xt).map(|(a, b)| *a as f64 * *b as f64).sum();
                let size: f64 = w
                    .iter()
                    .zip(xt)
                    .map(|(a, b)| (*a as f64 * *b as f64).abs())
                    .sum();
                // Q8_K activations carry ~1/254 relative error per value.
                let got = out[t * rows + r] as f64;
                assert!(
                    (got - want).abs() <= 0.01 * size,
                    "{dtype:?} token {t} row {r}: {got} vs {want} (size {size})"
                );
            }
        }
    }
}

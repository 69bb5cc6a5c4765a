//! Throughput of `Matrix::matmul` alone (no model, no threads but rayon's):
//! a random `[rows, cols]` weight matrix of each kernel type against
//! batches of 1..=20 activation rows; prints the fastest of 30 runs in
//! GMAC/s per batch size.
//!   RAYON_NUM_THREADS=1 [BATCHES=1,8] [COPIES=40] cargo run --release -p servebench-engine --example matmul_bench
use std::time::Instant;

use candle_core::quantized::GgmlDType;
use servebench_engine::cpu::{Matrix, Role};

fn random_matrix(dtype: GgmlDType, rows: usize, cols: usize) -> Matrix {
    let (block_bytes, scales) = match dtype {
        GgmlDType::Q4_1 => (20, 2),
        GgmlDType::Q8_0 => (34, 1),
        _ => unreachable!(),
    };
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let blocks = rows * cols / 32;
    let mut bytes = Vec::with_capacity(blocks * block_bytes);
    for _ in 0..blocks {
        for s in 0..scales {
            let v = if s == 0 { 0.01 } else { -0.05 };
            bytes.extend_from_slice(&half::f16::from_f32(v).to_le_bytes());
        }
        for _ in 0..block_bytes - 2 * scales {
            bytes.push(next() as u8 & 0x7f);
        }
    }
    // Q8_0 stands for the output projection here, stored as the model does.
    let role = match dtype {
        GgmlDType::Q8_0 => Role::OutputProjection,
        _ => Role::Layer,
    };
    Matrix::from_bytes("bench", dtype, rows, cols, &bytes, role).expect("valid matrix")
}

fn main() {
    let batches: Vec<usize> = std::env::var("BATCHES")
        .unwrap_or_else(|_| "1,4,8,16,20".into())
        .split(',')
        .map(|b| b.parse().expect("BATCHES: comma-separated sizes"))
        .collect();
    for (dtype, rows, cols) in [
        (GgmlDType::Q4_1, 1536, 576),
        (GgmlDType::Q4_1, 576, 1536),
        (GgmlDType::Q8_0, 8192, 576),
    ] {
        // COPIES > 1 cycles through that many copies (e.g. 40: ~22 MB of
        // Q4_1) so the weights stream from memory as in a model's forward.
        let copies: usize = std::env::var("COPIES").map_or(1, |c| c.parse().expect("COPIES"));
        let ms: Vec<Matrix> = (0..copies)
            .map(|_| random_matrix(dtype, rows, cols))
            .collect();
        for &batch in &batches {
            let x: Vec<f32> = (0..batch * cols)
                .map(|i| ((i * 37) % 17) as f32 - 8.0)
                .collect();
            let mut out = vec![0f32; batch * rows];
            let mut times = Vec::new();
            for _ in 0..30 {
                let reps = 20 * copies;
                let start = Instant::now();
                for i in 0..reps {
                    ms[i % copies].matmul(&x, batch, &mut out).expect("matmul");
                }
                times.push(start.elapsed().as_secs_f64() / reps as f64);
            }
            // The fastest of the runs: on a shared VM the slower ones measure
            // the neighbours, and the minimum is what compares two kernels.
            let t = times.iter().copied().fold(f64::INFINITY, f64::min);
            let gmacs = (rows * cols * batch) as f64 / t / 1e9;
            println!(
                "{dtype:?} {rows}x{cols} batch {batch:>2}: {:>8.1} us  {gmacs:>6.1} GMAC/s",
                t * 1e6
            );
        }
    }
}

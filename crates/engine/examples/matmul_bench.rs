//! Throughput of `Matrix::matmul` alone (no model, no threads but rayon's):
//! a random `[rows, cols]` weight matrix of each kernel type against
//! batches of 1..=20 activation rows; prints the fastest of RUNS (30) runs in
//! GMAC/s per batch size. `TYPES=q5_0,f16` picks the weight types (default
//! q4_1 and the Q8_0 output projection; also q4_0, q5_0, q5_1, q8_0 (a
//! layer), f16, bf16; q4_k, q5_k, q6_k in a Llama-2-7B's 11008x4096 and
//! 4096x11008 shapes; SHAPE=512x4096 for another).
//!   RAYON_NUM_THREADS=1 [CPU_TIME=1] [BATCHES=1,8] [COPIES=40] [TYPES=q5_0] cargo run --release -p servebench-engine --example matmul_bench
use std::time::Instant;

use candle_core::quantized::GgmlDType;
use servebench_engine::cpu::{Matrix, Role};

fn random_matrix(dtype: GgmlDType, rows: usize, cols: usize, role: Role) -> Matrix {
    let (block_bytes, scales) = match dtype {
        GgmlDType::Q4_0 => (18, 1),
        GgmlDType::Q4_1 => (20, 2),
        GgmlDType::Q5_0 => (22, 1),
        GgmlDType::Q5_1 => (24, 2),
        GgmlDType::Q8_0 => (34, 1),
        // One "block" of 32 values, every one a small scale-like number.
        GgmlDType::F16 | GgmlDType::BF16 => (64, 32),
        // K-quants: 256 values per block; Q6_K's scale is its last field.
        GgmlDType::Q4K => (144, 2),
        GgmlDType::Q5K => (176, 2),
        GgmlDType::Q6K => (210, 0),
        _ => unreachable!(),
    };
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let blocks = rows * cols / dtype.block_size();
    let mut bytes = Vec::with_capacity(blocks * block_bytes);
    for _ in 0..blocks {
        if dtype == GgmlDType::Q6K {
            bytes.extend((0..block_bytes - 2).map(|_| next() as u8));
            bytes.extend_from_slice(&half::f16::from_f32(0.001).to_le_bytes());
            continue;
        }
        for s in 0..scales {
            let v = if s == 0 { 0.01 } else { -0.05 };
            match dtype {
                GgmlDType::BF16 => bytes.extend_from_slice(&half::bf16::from_f32(v).to_le_bytes()),
                _ => bytes.extend_from_slice(&half::f16::from_f32(v).to_le_bytes()),
            }
        }
        for _ in 0..block_bytes - 2 * scales {
            bytes.push(next() as u8 & 0x7f);
        }
    }
    Matrix::from_bytes("bench", dtype, rows, cols, &bytes, role).expect("valid matrix")
}

fn main() {
    let batches: Vec<usize> = std::env::var("BATCHES")
        .unwrap_or_else(|_| "1,4,8,16,20".into())
        .split(',')
        .map(|b| b.parse().expect("BATCHES: comma-separated sizes"))
        .collect();
    let types = std::env::var("TYPES").unwrap_or_else(|_| "q4_1,output".into());
    let mut shapes = Vec::new();
    for name in types.split(',') {
        let (dtype, role) = match name {
            "q4_0" => (GgmlDType::Q4_0, Role::Layer),
            "q4_1" => (GgmlDType::Q4_1, Role::Layer),
            "q5_0" => (GgmlDType::Q5_0, Role::Layer),
            "q5_1" => (GgmlDType::Q5_1, Role::Layer),
            "q8_0" => (GgmlDType::Q8_0, Role::Layer),
            "f16" => (GgmlDType::F16, Role::Layer),
            "bf16" => (GgmlDType::BF16, Role::Layer),
            // Q8_0 stored as the model stores its output projection.
            "output" => (GgmlDType::Q8_0, Role::OutputProjection),
            // The K-quants in a Llama-2-7B's shapes (see below).
            "q4_k" => (GgmlDType::Q4K, Role::Layer),
            "q5_k" => (GgmlDType::Q5K, Role::Layer),
            "q6_k" => (GgmlDType::Q6K, Role::Layer),
            other => panic!("TYPES: unknown type {other}"),
        };
        if role == Role::OutputProjection {
            shapes.push((dtype, role, 8192, 576));
        } else if let Ok(shape) = std::env::var("SHAPE") {
            // SHAPE=ROWSxCOLS instead of the type's usual shapes.
            let (rows, cols) = shape.split_once('x').expect("SHAPE: ROWSxCOLS");
            let dim = |d: &str| d.parse::<usize>().expect("SHAPE: ROWSxCOLS");
            shapes.push((dtype, role, dim(rows), dim(cols)));
        } else if dtype.block_size() == 256 {
            shapes.push((dtype, role, 11008, 4096));
            shapes.push((dtype, role, 4096, 11008));
        } else {
            shapes.push((dtype, role, 1536, 576));
            shapes.push((dtype, role, 576, 1536));
        }
    }
    // CPU_TIME=1: time by the process's CPU time instead of the wall
    // clock (with RAYON_NUM_THREADS=1, the figure a busy machine's
    // neighbours disturb least).
    let cpu_time = std::env::var_os("CPU_TIME").is_some_and(|v| v == "1");
    // RUNS: how many timed runs to take the fastest of.
    let runs: usize = std::env::var("RUNS").map_or(30, |c| c.parse().expect("RUNS"));
    for (dtype, role, rows, cols) in shapes {
        // COPIES > 1 cycles through that many copies (e.g. 40: ~22 MB of
        // Q4_1) so the weights stream from memory as in a model's forward.
        let copies: usize = std::env::var("COPIES").map_or(1, |c| c.parse().expect("COPIES"));
        let ms: Vec<Matrix> = (0..copies)
            .map(|_| random_matrix(dtype, rows, cols, role))
            .collect();
        for &batch in &batches {
            let x: Vec<f32> = (0..batch * cols)
                .map(|i| ((i * 37) % 17) as f32 - 8.0)
                .collect();
            let mut out = vec![0f32; batch * rows];
            let mut times = Vec::new();
            for _ in 0..runs {
                let reps = 20 * copies;
                let (start, cpu) = (Instant::now(), cpu_seconds());
                for i in 0..reps {
                    ms[i % copies].matmul(&x, batch, &mut out).expect("matmul");
                }
                let spent = if cpu_time {
                    cpu_seconds() - cpu
                } else {
                    start.elapsed().as_secs_f64()
                };
                times.push(spent / reps as f64);
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

/// The process's CPU time so far, in seconds.
fn cpu_seconds() -> f64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `t` is a valid timespec for the call to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut t) };
    t.tv_sec as f64 + t.tv_nsec as f64 * 1e-9
}

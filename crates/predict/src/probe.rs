//! `servebench probe`: measures this machine's memory bandwidth (one core
//! and all cores) and matmul throughput per core, the figures the hardware
//! catalog's `[cpu]` entry needs to predict local `cpu-N` deployments.
//! Timings take the best of a few repetitions (other work on the machine
//! only ever slows a run down).

use std::hint::black_box;
use std::time::Instant;

/// What was measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Probe {
    pub cores: usize,
    pub memory_bandwidth_gb_s_per_core: f64,
    /// Readers behind `memory_bandwidth_gb_s` (every core unless asked).
    pub bandwidth_threads: usize,
    pub memory_bandwidth_gb_s: f64,
    pub matmul_gflops_per_core: f64,
}

/// Bytes each reader streams: far beyond any cache.
const BUFFER_BYTES: usize = 256 << 20;

/// Sums `data` with independent accumulators so the loads, not the adds,
/// set the pace.
fn stream(data: &[u64]) -> u64 {
    let mut acc = [0u64; 8];
    for chunk in data.chunks_exact(8) {
        for (a, v) in acc.iter_mut().zip(chunk) {
            *a = a.wrapping_add(*v);
        }
    }
    acc.iter().fold(0, |a, b| a.wrapping_add(*b))
}

/// GB/s of `threads` readers, each over its own buffer.
fn bandwidth(threads: usize, reps: usize) -> f64 {
    let per = BUFFER_BYTES / 8 / threads.max(1);
    let buffers: Vec<Vec<u64>> = (0..threads).map(|t| vec![t as u64 + 1; per]).collect();
    let mut best = f64::INFINITY;
    for _ in 0..reps {
        let t0 = Instant::now();
        std::thread::scope(|s| {
            for b in &buffers {
                s.spawn(|| black_box(stream(black_box(b))));
            }
        });
        best = best.min(t0.elapsed().as_secs_f64());
    }
    (per * threads * 8) as f64 / best / 1e9
}

/// GFLOP/s of one core on an f32 matrix product (n x n times n x n, the
/// inner loop over contiguous rows so the compiler vectorizes it).
fn matmul_gflops(n: usize, reps: usize) -> f64 {
    let a: Vec<f32> = (0..n * n).map(|i| (i % 7) as f32 * 0.1).collect();
    let b: Vec<f32> = (0..n * n).map(|i| (i % 5) as f32 * 0.1).collect();
    let mut c = vec![0f32; n * n];
    let mut best = f64::INFINITY;
    for _ in 0..reps {
        c.iter_mut().for_each(|x| *x = 0.0);
        let t0 = Instant::now();
        for i in 0..n {
            let row = &mut c[i * n..(i + 1) * n];
            for k in 0..n {
                let aik = a[i * n + k];
                for (x, y) in row.iter_mut().zip(&b[k * n..(k + 1) * n]) {
                    *x += aik * y;
                }
            }
        }
        black_box(&c);
        best = best.min(t0.elapsed().as_secs_f64());
    }
    2.0 * (n * n * n) as f64 / best / 1e9
}

/// Runs every measurement (a few seconds); the many-reader bandwidth with
/// `threads` readers, every core when `None`.
pub fn run(threads: Option<usize>) -> Probe {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let bandwidth_threads = threads.unwrap_or(cores).max(1);
    Probe {
        cores,
        memory_bandwidth_gb_s_per_core: bandwidth(1, 5),
        bandwidth_threads,
        memory_bandwidth_gb_s: bandwidth(bandwidth_threads, 5),
        matmul_gflops_per_core: matmul_gflops(384, 5),
    }
}

/// The CPU's model name (`/proc/cpuinfo`), or `unknown CPU`.
pub fn cpu_name() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

/// Total memory in GiB (`/proc/meminfo`), or 0 when unknown.
pub fn memory_gib() -> f64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0 / 1024.0)
}

impl Probe {
    /// The `[cpu]` table of hardware.toml, each figure's source saying
    /// how and when it was measured.
    pub fn to_toml(&self, name: &str, memory_gib: f64, date: &str) -> String {
        let src = format!("servebench probe, {date}");
        format!(
            "[cpu]\nname = \"{name}\"\n\
             memory_gib = {{ value = {memory_gib:.1}, source = \"/proc/meminfo MemTotal, {date}\" }}\n\
             cores = {{ value = {}, source = \"available_parallelism, {date}\" }}\n\
             memory_bandwidth_gb_s_per_core = {{ value = {:.2}, source = \"{src}: one thread summing 256 MiB\" }}\n\
             memory_bandwidth_gb_s = {{ value = {:.2}, source = \"{src}: {} threads summing 256 MiB\" }}\n\
             matmul_gflops_per_core = {{ value = {:.2}, source = \"{src}: f32 384x384 matrix product, one thread\" }}\n",
            self.cores,
            self.memory_bandwidth_gb_s_per_core,
            self.memory_bandwidth_gb_s,
            self.bandwidth_threads,
            self.matmul_gflops_per_core,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_probe_table_parses_as_a_catalog() {
        let p = Probe {
            cores: 2,
            memory_bandwidth_gb_s_per_core: 10.0,
            bandwidth_threads: 2,
            memory_bandwidth_gb_s: 15.0,
            matmul_gflops_per_core: 20.0,
        };
        let c = crate::hardware::Catalog::parse("p", &p.to_toml("x", 8.0, "d")).unwrap();
        let h = c.hardware("cpu-2").unwrap();
        assert_eq!(h.bandwidth_bytes_s, 15e9);
        assert_eq!(h.fp16_flops, 40e9);
        assert!(stream(&[1; 16]) == 16 && matmul_gflops(16, 1) > 0.0);
    }
}

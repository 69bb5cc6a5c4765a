//! `servebench probe`: measures this machine's memory bandwidth (one core
//! and all cores) and matmul throughput per core, the figures the hardware
//! catalog's `[cpu]` entry needs to predict local `cpu-N` deployments.
//! Timings take the best of a few repetitions (other work on the machine
//! only ever slows a run down).

use std::hint::black_box;
use std::sync::Barrier;
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

/// Bytes the readers stream together: 16 times a 32 MiB last-level cache.
const BUFFER_BYTES: usize = 512 << 20;

/// Passes over the buffer; the fastest counts.
const PASSES: usize = 10;

/// Sums `data` the way a decode reads its weights: wide loads in order,
/// several independent accumulators so the loads, not the adds, set the
/// pace.
fn stream(data: &[u64]) -> u64 {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: AVX2 is present (checked just above).
        return unsafe { stream_avx2(data) };
    }
    let mut acc = [0u64; 8];
    for chunk in data.chunks_exact(8) {
        for (a, v) in acc.iter_mut().zip(chunk) {
            *a = a.wrapping_add(*v);
        }
    }
    acc.iter().fold(0, |a, b| a.wrapping_add(*b))
}

/// [`stream`] with 32-byte loads, four cache lines per step into eight
/// accumulators (the scalar loop measured ~25% less on an EPYC Zen 4).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn stream_avx2(data: &[u64]) -> u64 {
    use std::arch::x86_64::*;
    let mut acc = [_mm256_setzero_si256(); 8];
    let steps = data.chunks_exact(32);
    let rest = steps.remainder();
    for step in steps {
        for (k, a) in acc.iter_mut().enumerate() {
            let v = _mm256_loadu_si256(step.as_ptr().add(4 * k) as *const __m256i);
            *a = _mm256_add_epi64(*a, v);
        }
    }
    let (mut total, mut lanes) = (0u64, [0u64; 4]);
    for a in acc {
        _mm256_storeu_si256(lanes.as_mut_ptr() as *mut __m256i, a);
        total = lanes.iter().fold(total, |s, v| s.wrapping_add(*v));
    }
    rest.iter().fold(total, |s, v| s.wrapping_add(*v))
}

/// GB/s of `threads` readers over disjoint parts of one buffer (backed by
/// huge pages, as the engine's weights are): each pass starts them
/// together and lasts from the first start to the last finish; the
/// fastest of [`PASSES`] counts (other work only ever slows a pass).
fn bandwidth(threads: usize) -> f64 {
    let threads = threads.max(1);
    let words = BUFFER_BYTES / 8;
    let mut data = servebench_engine::cpu::huge_pages::vec_with_capacity(words);
    data.extend((0..words as u64).map(|i| i.wrapping_mul(0x9e37_79b9)));
    // Parts of whole 4 KiB pages.
    let per = words.div_ceil(threads).next_multiple_of(512);
    let mut best = f64::INFINITY;
    for _ in 0..PASSES {
        let barrier = Barrier::new(threads);
        let spans: Vec<(Instant, Instant)> = std::thread::scope(|s| {
            let readers: Vec<_> = data
                .chunks(per)
                .map(|part| {
                    let barrier = &barrier;
                    s.spawn(move || {
                        barrier.wait();
                        let t0 = Instant::now();
                        black_box(stream(black_box(part)));
                        (t0, Instant::now())
                    })
                })
                .collect();
            readers
                .into_iter()
                .map(|r| r.join().expect("reader"))
                .collect()
        });
        let first = spans.iter().map(|s| s.0).min().expect("a reader");
        let last = spans.iter().map(|s| s.1).max().expect("a reader");
        best = best.min((last - first).as_secs_f64());
    }
    (words * 8) as f64 / best / 1e9
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
        memory_bandwidth_gb_s_per_core: bandwidth(1),
        bandwidth_threads,
        memory_bandwidth_gb_s: bandwidth(bandwidth_threads),
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
             memory_bandwidth_gb_s_per_core = {{ value = {:.2}, source = \"{src}: one thread streaming 512 MiB, best of 10\" }}\n\
             memory_bandwidth_gb_s = {{ value = {:.2}, source = \"{src}: {} threads streaming 512 MiB, best of 10\" }}\n\
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
        assert!(stream(&[1; 16]) == 16 && stream(&[2; 67]) == 134 && matmul_gflops(16, 1) > 0.0);
    }
}

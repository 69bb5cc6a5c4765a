//! Q4_K, Q5_K and Q6_K weights (the bulk of Q4_K_M, Q5_K_M and Q6_K
//! files) times activations quantized to Q8_K, with ggml's integer
//! arithmetic and the float order llama.cpp uses on AVX2 machines, so
//! logits agree with llama.cpp. As for the
//! 32-value types (`dot_rows`), activations are quantized once per matmul
//! and each weight row is read once for every activation row of the batch.

#[cfg(target_arch = "x86_64")]
mod amx;
pub mod blocks;
#[cfg(target_arch = "x86_64")]
mod decode512;
pub mod portable;
pub mod quantize;
#[cfg(target_arch = "x86_64")]
mod rows16;
#[cfg(target_arch = "x86_64")]
mod x86;

use std::sync::OnceLock;

use candle_core::quantized::GgmlDType;

use self::blocks::{parse_blocks, BlockQ2K, BlockQ3K, BlockQ4K, BlockQ5K, BlockQ6K, KBlock, QK_K};
use self::quantize::{Activations, BlockQ8K, StripSums};
use super::dot_rows::OutRows;

/// `dot(w[r], x[t])` into `out` at (t, r) for the weight rows stored one
/// after another in `w` and the activation rows in `x`, each `nb` blocks
/// long; `sums` are `x`'s from [`quantize::strip_sums`].
///
/// # Safety
/// `out` must be valid for writes at every (t, r) with `t` below `x`'s and
/// `r` below `w`'s row count, and nothing else may access those places
/// meanwhile.
pub type Kernel<W> =
    unsafe fn(w: &[W], x: &[BlockQ8K], sums: &[StripSums], nb: usize, out: OutRows);

/// The K-quant kernels of one instruction set.
#[derive(Clone, Copy)]
pub struct Kernels {
    pub name: &'static str,
    pub q4k: Kernel<BlockQ4K>,
    /// Q4_K in the order of llama.cpp's repacked `gemm`, for the rows
    /// [`portable::q4k_gemm_rows`] counts.
    pub q4k_gemm: Kernel<BlockQ4K>,
    pub q5k: Kernel<BlockQ5K>,
    pub q6k: Kernel<BlockQ6K>,
    /// Q5_K and Q6_K in the float order of llama.cpp's tiled matmul, for
    /// batches of [`portable::TILED_MIN_ROWS`] rows and more.
    pub q5k_tiled: Kernel<BlockQ5K>,
    pub q6k_tiled: Kernel<BlockQ6K>,
    /// Q2_K and Q3_K, in the tiled matmul's order at every batch size.
    pub q2k: Kernel<BlockQ2K>,
    pub q3k: Kernel<BlockQ3K>,
}

/// One [`portable`] dot per (weight, activation) pair. SAFETY (the
/// `unsafe` blocks below): the caller keeps [`Kernel`]'s contract.
pub const PORTABLE: Kernels = Kernels {
    name: "portable",
    q4k: |w, x, _, nb, out| unsafe { each_pair(w, x, nb, out, portable::q4k_q8k) },
    q4k_gemm: |w, x, _, nb, out| unsafe { each_pair(w, x, nb, out, portable::q4k_q8k_gemm) },
    q5k: |w, x, _, nb, out| unsafe { each_pair(w, x, nb, out, portable::q5k_q8k) },
    q6k: |w, x, _, nb, out| unsafe { each_pair(w, x, nb, out, portable::q6k_q8k) },
    q5k_tiled: |w, x, _, nb, out| unsafe { each_pair(w, x, nb, out, portable::q5k_q8k_tiled) },
    q6k_tiled: |w, x, _, nb, out| unsafe { each_pair(w, x, nb, out, portable::q6k_q8k_tiled) },
    q2k: |w, x, _, nb, out| unsafe { each_pair(w, x, nb, out, portable::q2k_q8k) },
    q3k: |w, x, _, nb, out| unsafe { each_pair(w, x, nb, out, portable::q3k_q8k) },
};

/// # Safety
/// As [`Kernel`].
unsafe fn each_pair<W>(
    w: &[W],
    x: &[BlockQ8K],
    nb: usize,
    out: OutRows,
    dot: fn(&[W], &[BlockQ8K]) -> f32,
) {
    for (r, wr) in w.chunks_exact(nb).enumerate() {
        for (t, xr) in x.chunks_exact(nb).enumerate() {
            out.write(t, r, dot(wr, xr));
        }
    }
}

/// The fastest kernels this CPU runs; the portable ones when
/// `SERVEBENCH_KERNELS=portable` (see `dot::best`).
pub fn best() -> &'static Kernels {
    static BEST: OnceLock<Kernels> = OnceLock::new();
    BEST.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        if super::dot::best().name != "portable" {
            if let Some(k) = x86::detect() {
                return k;
            }
        }
        PORTABLE
    })
}

/// Weight rows the two parts of a Q4_K batch (see [`Weights::rows_times`])
/// take in turn: 32 rows of a Llama-2-7B's widest matrix (43 blocks of
/// 144 bytes a row) are ~200 KB, well inside a core's L2.
const Q4K_PANEL_ROWS: usize = 32;

/// A K-quant weight matrix's blocks, row after row.
pub enum Weights {
    Q2K(Vec<BlockQ2K>),
    Q3K(Vec<BlockQ3K>),
    Q4K(Vec<BlockQ4K>),
    Q5K(Vec<BlockQ5K>),
    Q6K(Vec<BlockQ6K>),
}

impl Weights {
    /// The blocks of a `dtype` tensor, or `None` for types not here.
    pub fn parse(dtype: GgmlDType, bytes: &[u8]) -> Option<Self> {
        Some(match dtype {
            GgmlDType::Q2K => Self::Q2K(parse_blocks(bytes)),
            GgmlDType::Q3K => Self::Q3K(parse_blocks(bytes)),
            GgmlDType::Q4K => Self::Q4K(parse_blocks(bytes)),
            GgmlDType::Q5K => Self::Q5K(parse_blocks(bytes)),
            GgmlDType::Q6K => Self::Q6K(parse_blocks(bytes)),
            _ => return None,
        })
    }

    /// Dequantizes row `r` of a matrix with `cols` columns into `out`.
    pub fn row(&self, r: usize, cols: usize, out: &mut [f32]) {
        fn deq<B: KBlock>(blocks: &[B], out: &mut [f32]) {
            for (b, o) in blocks.iter().zip(out.chunks_exact_mut(QK_K)) {
                b.dequantize(o);
            }
        }
        let own = r * cols / QK_K..(r + 1) * cols / QK_K;
        match self {
            Self::Q2K(b) => deq(&b[own], out),
            Self::Q3K(b) => deq(&b[own], out),
            Self::Q4K(b) => deq(&b[own], out),
            Self::Q5K(b) => deq(&b[own], out),
            Self::Q6K(b) => deq(&b[own], out),
        }
    }

    /// Rows `first..first + n_rows` times every row of `x`, written to
    /// `out` at (t, r - first), in the float order llama.cpp uses for a
    /// matmul of that many rows.
    ///
    /// # Safety
    /// As [`Kernel`] for `out` and those rows.
    pub unsafe fn rows_times(&self, first: usize, n_rows: usize, x: &Activations, out: OutRows) {
        let k = best();
        // Runs `$kernel` for weight rows `first + r..first + r + rows` over
        // activation rows `from..to`.
        macro_rules! part {
            ($w:expr, $kernel:expr, $from:expr, $to:expr) => {
                part!($w, $kernel, $from, $to, 0, n_rows)
            };
            ($w:expr, $kernel:expr, $from:expr, $to:expr, $r:expr, $rows:expr) => {
                if $from < $to {
                    let (xq, sums) = x.rows_from($from);
                    let own = (first + $r) * x.nb..(first + $r + $rows) * x.nb;
                    let xq = &xq[..($to - $from) * x.nb];
                    $kernel(&$w[own], xq, sums, x.nb, out.at($from, $r))
                }
            };
        }
        let (n, gemm, tiled) = (x.rows(), x.gemm_rows, x.tiled_rows);
        match self {
            Self::Q2K(w) => part!(w, k.q2k, 0, n),
            Self::Q3K(w) => part!(w, k.q3k, 0, n),
            // llama.cpp repacks Q4_K whose rows come in eights (every real
            // model's), and those skip the tiled matmul: `gemm` for whole
            // fours of activation rows, `gemv` for the rest. Where a batch
            // has both (a decode step of 5, 6, 7, 9 ... sequences), both
            // run on one panel of weight rows before the next, so the
            // second reads the panel from L2 rather than from memory.
            Self::Q4K(w) => {
                let step = if 0 < gemm && gemm < n {
                    Q4K_PANEL_ROWS
                } else {
                    n_rows.max(1)
                };
                for r in (0..n_rows).step_by(step) {
                    let rows = step.min(n_rows - r);
                    part!(w, k.q4k_gemm, 0, gemm, r, rows);
                    part!(w, k.q4k, gemm, n, r, rows);
                }
            }
            Self::Q5K(w) => {
                part!(w, k.q5k_tiled, 0, tiled);
                part!(w, k.q5k, tiled, n);
            }
            Self::Q6K(w) => {
                part!(w, k.q6k_tiled, 0, tiled);
                part!(w, k.q6k, tiled, n);
            }
        }
    }
}

/// Every kernel set this CPU runs, for tests.
#[cfg(test)]
pub(crate) fn all() -> Vec<Kernels> {
    #[cfg(target_arch = "x86_64")]
    return x86::all();
    #[allow(unreachable_code)]
    Vec::new()
}

#[cfg(test)]
mod tests;

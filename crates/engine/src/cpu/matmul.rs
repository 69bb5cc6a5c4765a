//! Weight matrices and `out = x · Wᵀ` for a batch of activation rows.
//! Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, F16, BF16 and the K-quants Q2_K to Q6_K
//! use our kernels (activations quantized or rounded once per call, each
//! weight row read once for all rows of the batch); F32 goes through
//! candle's matmul.

use candle_core::quantized::{GgmlDType, QuantizedType};
use candle_core::CpuStorage;
use rayon::prelude::*;

use super::blocks::{
    parse_block, parse_blocks, quantize_q8_0, quantize_q8_1, BlockQ4_0, BlockQ4_1, BlockQ5_0,
    BlockQ5_1, BlockQ8_0, FromBytes, QK,
};
use super::dot_rows::{self, ActScales, OutRows, RowsKernel};
use super::half_rows::{self, Half};
use super::huge_pages;
use super::interleaved::{
    self, pack_rows, unpack_row, GroupAct, GroupKernel, Q4_0x8, Q8_0x8, GROUP,
};
use super::kquants;
use super::legacy16::{self, Kernel16, Pack16, Q4_0x16, Q4_1x16, Q5_0x16, Q5_1x16, Q8_0x16};
use crate::error::{EngineError, Result};
use crate::gguf::TensorView;

enum Storage {
    Q4_0(Vec<BlockQ4_0>),
    Q4_1(Vec<BlockQ4_1>),
    Q8_0(Vec<BlockQ8_0>),
    Q5_0(Vec<BlockQ5_0>),
    Q5_1(Vec<BlockQ5_1>),
    /// Rows interleaved by sixteens, ggml's float order (see `legacy16`).
    Q4_0x16(Vec<Q4_0x16>),
    Q4_1x16(Vec<Q4_1x16>),
    Q5_0x16(Vec<Q5_0x16>),
    Q5_1x16(Vec<Q5_1x16>),
    Q8_0x16(Vec<Q8_0x16>),
    /// The output projection's rows interleaved by eights (`interleaved`).
    Q8_0x8(Vec<Q8_0x8>),
    /// Q4_0 rows by eights where llama.cpp repacks them (`interleaved`).
    Q4_0x8(Vec<Q4_0x8>),
    /// candle's F16 matmul is scalar (~0.9 s per token for a 135M model on
    /// one thread): ours are in `half_rows`.
    F16(Vec<half::f16>),
    BF16(Vec<half::bf16>),
    /// Q2_K to Q6_K (see `kquants`).
    KQuant(kquants::Weights),
    Candle(Box<dyn QuantizedType>),
}

/// What a matrix is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Kernels keep ggml's float order exactly: the results are quantized
    /// again by the next layer, which amplifies last-bit differences.
    Layer,
    /// The logits are the last operation and nothing quantizes them again,
    /// so Q8_0 may take the faster interleaved kernel whose rounding differs
    /// from ggml's in the last bits (greedy tokens still equal llama.cpp's
    /// in the parity test). Measured (`matmul_bench`, one thread) Q8_0
    /// 8192x576: batch 8 ~40 -> ~85 GMAC/s, batch 1 ~12 -> ~15.
    OutputProjection,
}

/// A `[rows, cols]` weight matrix (rows = output features).
pub struct Matrix {
    rows: usize,
    cols: usize,
    dtype: GgmlDType,
    storage: Storage,
}

impl std::fmt::Debug for Matrix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Matrix({:?}, {}x{})", self.dtype, self.rows, self.cols)
    }
}

impl Matrix {
    /// Loads a 2-D tensor (1-D tensors load as one row) for `role`.
    pub fn from_view(view: &TensorView<'_>, role: Role) -> Result<Self> {
        let (rows, cols) = match view.shape.as_slice() {
            [cols] => (1, *cols),
            [rows, cols] => (*rows, *cols),
            other => {
                return Err(EngineError::tensor(
                    view.name,
                    format!("expected a matrix, found shape {other:?}"),
                ))
            }
        };
        Self::from_bytes(view.name, view.dtype, rows, cols, view.bytes, role)
    }

    /// A `[rows, cols]` matrix of `dtype` from its GGUF bytes, for `role`
    /// (`name` is for errors).
    pub fn from_bytes(
        name: &str,
        dtype: GgmlDType,
        rows: usize,
        cols: usize,
        bytes: &[u8],
        role: Role,
    ) -> Result<Self> {
        if !cols.is_multiple_of(dtype.block_size()) {
            return Err(EngineError::tensor(
                name,
                format!(
                    "row length {cols} is not a multiple of the {dtype:?} block size {}",
                    dtype.block_size()
                ),
            ));
        }
        let nb = cols / QK;
        let storage = match dtype {
            GgmlDType::Q4_0 if interleaves16(rows) => Storage::Q4_0x16(pack16(rows, nb, bytes)),
            GgmlDType::Q4_0 if q4_0_groups(rows) => {
                Storage::Q4_0x8(pack_rows(rows, nb, |i| parse_block(bytes, i)))
            }
            GgmlDType::Q4_0 => Storage::Q4_0(parse_blocks(bytes)),
            GgmlDType::Q5_0 if interleaves16(rows) => Storage::Q5_0x16(pack16(rows, nb, bytes)),
            GgmlDType::Q5_0 => Storage::Q5_0(parse_blocks(bytes)),
            GgmlDType::Q5_1 if interleaves16(rows) => Storage::Q5_1x16(pack16(rows, nb, bytes)),
            GgmlDType::Q5_1 => Storage::Q5_1(parse_blocks(bytes)),
            GgmlDType::Q4_1 if interleaves16(rows) => Storage::Q4_1x16(pack16(rows, nb, bytes)),
            GgmlDType::Q4_1 => Storage::Q4_1(parse_blocks(bytes)),
            GgmlDType::Q8_0 if role == Role::OutputProjection && interleaves(rows) => {
                Storage::Q8_0x8(pack_rows(rows, nb, |i| parse_block(bytes, i)))
            }
            GgmlDType::Q8_0 if interleaves16(rows) => Storage::Q8_0x16(pack16(rows, nb, bytes)),
            GgmlDType::Q8_0 => Storage::Q8_0(parse_blocks(bytes)),
            GgmlDType::F16 => Storage::F16(huge_pages::collect(
                bytes.len() / 2,
                bytes
                    .chunks_exact(2)
                    .map(|b| half::f16::from_le_bytes([b[0], b[1]])),
            )),
            GgmlDType::BF16 => Storage::BF16(huge_pages::collect(
                bytes.len() / 2,
                bytes
                    .chunks_exact(2)
                    .map(|b| half::bf16::from_le_bytes([b[0], b[1]])),
            )),
            GgmlDType::Q2K | GgmlDType::Q3K | GgmlDType::Q4K | GgmlDType::Q5K | GgmlDType::Q6K => {
                Storage::KQuant(kquants::Weights::parse(dtype, bytes).expect("a K-quant type"))
            }
            GgmlDType::F32 | GgmlDType::Q8K => {
                Storage::Candle(dtype.from_data(std::borrow::Cow::Borrowed(bytes)))
            }
            GgmlDType::Q8_1 => return Err(EngineError::tensor(name, "Q8_1 is not a weight type")),
        };
        Ok(Self {
            rows,
            cols,
            dtype,
            storage,
        })
    }

    /// Output features.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Input features.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Storage type.
    pub fn dtype(&self) -> GgmlDType {
        self.dtype
    }

    /// Dequantizes row `r` into `out` (`cols` floats): embedding lookup.
    pub fn row(&self, r: usize, out: &mut [f32]) -> Result<()> {
        if r >= self.rows {
            return Err(EngineError::InvalidRequest(format!(
                "token id {r} is outside the vocabulary of {} tokens",
                self.rows
            )));
        }
        let bpr = self.cols / QK;
        fn deq<B: FromBytes>(blocks: impl Iterator<Item = B>, out: &mut [f32]) {
            for (b, o) in blocks.zip(out.chunks_exact_mut(QK)) {
                b.dequantize(o);
            }
        }
        let own = r * bpr..(r + 1) * bpr;
        match &self.storage {
            Storage::Q4_0(b) => deq(b[own].iter().copied(), out),
            Storage::Q4_1(b) => deq(b[own].iter().copied(), out),
            Storage::Q8_0(b) => deq(b[own].iter().copied(), out),
            Storage::Q5_0(b) => deq(b[own].iter().copied(), out),
            Storage::Q5_1(b) => deq(b[own].iter().copied(), out),
            Storage::Q4_0x16(p) => deq(legacy16::unpack_row(p, bpr, r), out),
            Storage::Q4_1x16(p) => deq(legacy16::unpack_row(p, bpr, r), out),
            Storage::Q5_0x16(p) => deq(legacy16::unpack_row(p, bpr, r), out),
            Storage::Q5_1x16(p) => deq(legacy16::unpack_row(p, bpr, r), out),
            Storage::Q8_0x16(p) => deq(legacy16::unpack_row(p, bpr, r), out),
            Storage::Q8_0x8(p) => deq(unpack_row(p, bpr, r), out),
            Storage::Q4_0x8(p) => deq(unpack_row(p, bpr, r), out),
            Storage::F16(w) => {
                for (o, v) in out.iter_mut().zip(&w[r * self.cols..(r + 1) * self.cols]) {
                    *o = v.to_f32();
                }
            }
            Storage::BF16(w) => {
                for (o, v) in out.iter_mut().zip(&w[r * self.cols..(r + 1) * self.cols]) {
                    *o = v.to_f32();
                }
            }
            Storage::KQuant(w) => w.row(r, self.cols, out),
            Storage::Candle(q) => match q
                .embedding(&[r as u32], self.rows, self.cols)
                .map_err(|e| EngineError::Compute(e.to_string()))?
            {
                CpuStorage::F32(v) => out.copy_from_slice(&v),
                _ => return Err(EngineError::Compute("embedding did not give f32".into())),
            },
        }
        Ok(())
    }

    /// `out[t, r] = Σ_c x[t, c] · W[r, c]` for `t` in `0..n_tokens`.
    /// `x` is `[n_tokens, cols]`, `out` is `[n_tokens, rows]`.
    pub fn matmul(&self, x: &[f32], n_tokens: usize, out: &mut [f32]) -> Result<()> {
        Self::matmul_each(&mut [(self, out)], x, n_tokens)
    }

    /// [`Matrix::matmul`] of several matrices with the same input (Q, K and
    /// V; gate and up): when they share a weight type with our kernels, the
    /// input is quantized once and one parallel loop covers all their rows.
    pub fn matmul_each(
        parts: &mut [(&Matrix, &mut [f32])],
        x: &[f32],
        n_tokens: usize,
    ) -> Result<()> {
        let Some(cols) = parts.first().map(|(m, _)| m.cols) else {
            return Ok(());
        };
        debug_assert_eq!(x.len(), n_tokens * cols);
        debug_assert!(parts
            .iter()
            .all(|(m, out)| m.cols == cols && out.len() == n_tokens * m.rows));
        let k = dot_rows::best();
        // Every part stored as `$variant`: quantize the input once, then
        // `$times` (by rows or by interleaved groups) with `$kernel`; or
        // run `$run` on the parts as (weights, output) pairs.
        macro_rules! shared {
            ($variant:ident, $quantize:expr, $times:ident, $kernel:expr) => {
                shared!($variant, |ws| {
                    let xq = quantize_rows(x, cols, $quantize);
                    $times(&ws, &xq, n_tokens, $kernel)
                })
            };
            ($variant:ident, |$ws:ident| $run:expr) => {
                if let Some(ws) = parts
                    .iter()
                    .map(|(m, _)| match &m.storage {
                        Storage::$variant(w) => Some(&w[..]),
                        _ => None,
                    })
                    .collect::<Option<Vec<_>>>()
                {
                    let outs = parts.iter_mut().map(|(m, out)| OutRows {
                        ptr: out.as_mut_ptr(),
                        stride: m.rows,
                    });
                    let $ws = ws.into_iter().zip(outs).collect::<Vec<_>>();
                    $run;
                    return Ok(());
                }
            };
        }
        if let Some(ws) = parts
            .iter()
            .map(|(m, _)| match &m.storage {
                Storage::KQuant(w) => Some(w),
                _ => None,
            })
            .collect::<Option<Vec<_>>>()
        {
            kquants_times(&ws, parts, x, cols);
            return Ok(());
        }
        let grouped = || interleaved::kernels().expect("interleaved storage implies its kernels");
        shared!(Q8_0x8, quantize_q8_0, groups_times, grouped().q8_0_q8_0);
        let q4_0x8 = || interleaved::q4_0_kernel().expect("Q4_0x8 storage implies its kernel");
        shared!(Q4_0x8, quantize_q8_0, groups_times, q4_0x8());
        let k16 = || legacy16::kernels().expect("x16 storage implies its kernels");
        shared!(Q5_0x16, quantize_q8_0, times16, k16().q5_0);
        shared!(Q5_1x16, quantize_q8_1, times16, k16().q5_1);
        shared!(Q4_0x16, quantize_q8_0, times16, k16().q4_0);
        shared!(Q4_1x16, quantize_q8_1, times16, k16().q4_1);
        shared!(Q8_0x16, quantize_q8_0, times16, k16().q8_0);
        shared!(Q5_0, quantize_q8_0, rows_times, k.q5_0_q8_0);
        shared!(Q5_1, quantize_q8_1, rows_times, k.q5_1_q8_1);
        // llama.cpp decides per matrix whether it repacks Q4_0 (and sums it
        // by whole blocks): parts that differ go one at a time.
        let repacked = |(m, _): &(&Matrix, &mut [f32])| dot_rows::q4_0_repacked(m.rows);
        let q4_0 = if parts.iter().all(repacked) {
            k.q4_0_whole
        } else if parts.iter().any(repacked) && matches!(parts[0].0.storage, Storage::Q4_0(_)) {
            for (m, out) in parts.iter_mut() {
                Self::matmul_each(&mut [(*m, &mut **out)], x, n_tokens)?;
            }
            return Ok(());
        } else {
            k.q4_0_q8_0
        };
        shared!(Q4_0, quantize_q8_0, rows_times, q4_0);
        shared!(Q4_1, quantize_q8_1, rows_times, k.q4_1_q8_1);
        shared!(Q8_0, quantize_q8_0, rows_times, k.q8_0_q8_0);
        // 16-bit float weights: the input rounded once to their type.
        shared!(F16, |ws| {
            half_times(&ws, &half_rows::round_rows::<half::f16>(x), cols)
        });
        shared!(BF16, |ws| {
            half_times(&ws, &half_rows::round_rows::<half::bf16>(x), cols)
        });
        for (m, out) in parts.iter_mut() {
            match &m.storage {
                Storage::Candle(q) => q
                    .matmul_t((n_tokens, m.cols, m.rows), x, out)
                    .map_err(|e| EngineError::Compute(e.to_string()))?,
                // Mixed kernel types: one at a time.
                _ => Self::matmul_each(&mut [(*m, &mut **out)], x, n_tokens)?,
            }
        }
        Ok(())
    }
}

/// The output projection's rows go in groups of 8 (`interleaved`) where
/// the CPU has those kernels and the rows fill whole groups.
fn interleaves(rows: usize) -> bool {
    interleaved::kernels().is_some() && rows.is_multiple_of(GROUP)
}

/// Q4_0 rows go in groups of 8 where llama.cpp repacks them and the CPU
/// has the kernel (`legacy16` takes them first where it runs).
fn q4_0_groups(rows: usize) -> bool {
    interleaved::q4_0_kernel().is_some() && dot_rows::q4_0_repacked(rows)
}

/// Rows go in groups of 16 (`legacy16`) where the CPU has those kernels
/// and the rows fill whole groups.
fn interleaves16(rows: usize) -> bool {
    legacy16::kernels().is_some() && rows.is_multiple_of(legacy16::ROWS)
}

fn pack16<P: Pack16>(rows: usize, nb: usize, bytes: &[u8]) -> Vec<P> {
    legacy16::pack_rows(rows, nb, |i| parse_block(bytes, i))
}

fn quantize_rows<B: Default + Clone + Send>(
    x: &[f32],
    cols: usize,
    quantize: fn(&[f32], &mut [B]),
) -> Vec<B> {
    let bpr = cols / QK;
    let mut out = vec![B::default(); x.len() / QK];
    // Rows of a batch are independent: spread them over the pool.
    out.par_chunks_exact_mut(bpr)
        .zip(x.par_chunks_exact(cols))
        .for_each(|(q, row)| quantize(row, q));
    out
}

/// [`Matrix::matmul_each`] for K-quant `ws` (those of `parts`): the input
/// quantized to Q8_K once, all parts' rows in one parallel loop.
fn kquants_times(
    ws: &[&kquants::Weights],
    parts: &mut [(&Matrix, &mut [f32])],
    x: &[f32],
    cols: usize,
) {
    let act = kquants::quantize::Activations::new(x, cols);
    let outs: Vec<(&[()], OutRows)> = parts
        .iter_mut()
        .map(|(m, out)| {
            let out = OutRows {
                ptr: out.as_mut_ptr(),
                stride: m.rows,
            };
            (&[][..], out)
        })
        .collect();
    split_rows(&outs, 1, |p, first, n_rows| {
        // SAFETY: as in `rows_times`: this task alone writes its rows.
        unsafe { ws[p].rows_times(first, n_rows, &act, outs[p].1.at(0, first)) };
    });
}

/// Splits the rows of all `parts` (`[n_tokens, rows]` outputs, stride =
/// rows) among the pool's threads in chunks of a multiple of `unit` rows
/// and calls `task(part, first_row, n_rows)` for each, in parallel. Several
/// chunks per thread balance uneven cores without much overhead; each
/// chunk's weights are multiplied with every activation row while hot.
fn split_rows(
    parts: &[(&[impl Sync], OutRows)],
    unit: usize,
    task: impl Fn(usize, usize, usize) + Sync,
) {
    let threads = rayon::current_num_threads().max(1);
    let total: usize = parts.iter().map(|(_, out)| out.stride).sum();
    let chunk = total.div_ceil(threads * 4).max(16).next_multiple_of(unit);
    let work: Vec<(usize, usize)> = parts
        .iter()
        .enumerate()
        .flat_map(|(p, (_, out))| (0..out.stride).step_by(chunk).map(move |first| (p, first)))
        .collect();
    super::team::for_each_task(work.len(), |i| {
        let (p, first) = work[i];
        task(p, first, chunk.min(parts[p].1.stride - first))
    });
}

/// `parts[i]`: a weight matrix's blocks (row after row) and its output.
fn rows_times<W: Sync, A: Sync + ActScales>(
    parts: &[(&[W], OutRows)],
    xq: &[A],
    n_tokens: usize,
    dot_rows: RowsKernel<W, A>,
) {
    let bpr = xq.len() / n_tokens;
    let scales = dot_rows::strip_scales(xq, bpr);
    split_rows(parts, 1, |p, first, n_rows| {
        let (w, out) = parts[p];
        // SAFETY: `out` is `[n_tokens, rows]`; this task alone writes its
        // rows first..first + n_rows, for every token.
        unsafe {
            dot_rows(
                &w[first * bpr..(first + n_rows) * bpr],
                xq,
                &scales,
                bpr,
                out.at(0, first),
            )
        };
    });
}

/// [`rows_times`] for the output projection's groups of 8 rows.
fn groups_times<W: Sync, A: Sync + GroupAct>(
    parts: &[(&[W], OutRows)],
    xq: &[A],
    n_tokens: usize,
    kernel: GroupKernel<W, A>,
) {
    let scales: Vec<_> = xq.iter().map(GroupAct::group_scales).collect();
    grouped_times(parts, xq, n_tokens, GROUP, &scales, kernel);
}

/// [`rows_times`] for rows interleaved by sixteens (`legacy16`).
fn times16<P: Pack16>(
    parts: &[(&[P], OutRows)],
    xq: &[P::Act],
    n_tokens: usize,
    kernel: Kernel16<P, P::Act>,
) {
    let scales = legacy16::x_scales::<P>(xq);
    grouped_times(parts, xq, n_tokens, legacy16::ROWS, &scales, kernel);
}

/// [`rows_times`] for weights interleaved in groups of `group` rows (each
/// group's block columns consecutive) with the activations' `scales`;
/// chunks are whole groups.
fn grouped_times<W: Sync, A: Sync, S: Sync>(
    parts: &[(&[W], OutRows)],
    xq: &[A],
    n_tokens: usize,
    group: usize,
    scales: &[S],
    kernel: unsafe fn(&[W], &[A], &[S], usize, OutRows),
) {
    let nb = xq.len() / n_tokens;
    split_rows(parts, group, |p, first, n_rows| {
        let (w, out) = parts[p];
        let groups = first / group..(first + n_rows) / group;
        // SAFETY: as in `rows_times`: this task alone writes its rows.
        unsafe {
            kernel(
                &w[groups.start * nb..groups.end * nb],
                xq,
                scales,
                nb,
                out.at(0, first),
            )
        };
    });
}

/// [`rows_times`] for 16-bit float weights; `x` rounded by
/// `half_rows::round_rows`, `cols` per row.
fn half_times<H: Half>(parts: &[(&[H], OutRows)], x: &[f32], cols: usize) {
    #[cfg(target_arch = "x86_64")]
    if !H::BF16 {
        if let Some(packed) = super::half_amx::pack(x, cols) {
            return half_amx_times(parts, x, &packed, cols);
        }
    }
    split_rows(parts, 4, |p, first, n_rows| {
        let (w, out) = parts[p];
        // SAFETY: as in `rows_times`: this task alone writes its rows.
        unsafe {
            half_rows::rows(
                &w[first * cols..(first + n_rows) * cols],
                x,
                cols,
                out.at(0, first),
            )
        };
    });
}

/// [`half_times`] on AMX-BF16 tiles, the activations packed once for every
/// part; rows past the last whole tile go to `half_rows`.
#[cfg(target_arch = "x86_64")]
fn half_amx_times<H: Half>(
    parts: &[(&[H], OutRows)],
    x: &[f32],
    packed: &super::half_amx::Packed,
    cols: usize,
) {
    use super::half_amx::{self, ROWS};
    split_rows(parts, ROWS, |p, first, n_rows| {
        let (w, out) = parts[p];
        let whole = n_rows - n_rows % ROWS;
        let w = &w[first * cols..(first + n_rows) * cols];
        // F16 values are `repr(transparent)` over their bits.
        let bits = unsafe { std::slice::from_raw_parts(w.as_ptr() as *const u16, whole * cols) };
        // SAFETY: as in `rows_times`: this task alone writes its rows;
        // `packed` came from `half_amx::pack`.
        unsafe {
            half_amx::rows(bits, packed, out.at(0, first));
            if whole < n_rows {
                half_rows::rows(&w[whole * cols..], x, cols, out.at(0, first + whole));
            }
        }
    });
}

//! F16 weights against a batch of activation rows on AMX-BF16 tiles
//! (`tdpbf16ps`). An F16 value's 11 significant bits are the sum of two
//! BF16 values (its first 8 bits, then the rest), both exact; so are the
//! activations, rounded to F16 first as ggml rounds them (`vec_dot_type`).
//! Four tile products (high·high, high·low, low·high, low·low) then give
//! every product of a weight and an activation exactly, and only the f32
//! sums run in the tiles' order instead of tinyBLAS's 16 lanes: results
//! differ from llama.cpp's by f32 rounding, not by precision.
//!
//! The weights are the tiles' first operand (16 weight rows of 32 values,
//! split as they are read, per chunk of activations), the activations the
//! second, packed once per call in AMX's pair layout (tile row r: values
//! 2r and 2r+1 of 16 activation rows). A tile of sums is 16 weight rows by
//! 16 activation rows, transposed on its way out.
// Tiles and lanes are indexed by row; the const-bounded loops unroll.
#![allow(clippy::needless_range_loop)]

use std::arch::x86_64::*;

use rayon::prelude::*;

use super::amx::{self, tile_dot, tile_load, tile_store, tile_zero, TileConfig};
use super::dot_rows::OutRows;

/// Weight rows per tile of the first operand.
pub const ROWS: usize = 16;
/// Activation rows per tile of the second operand.
const STRIP: usize = 16;
/// Values per tile row (32 BF16).
const STEP: usize = 32;

/// Activation rows from which the tiles run: below, the AVX-512 tiles of
/// `half_rows` (SmolLM2 F16's prefill at 2 threads: even at 12 rows, 8%
/// faster at 16, 30% at 32).
const MIN_BATCH: usize = 16;

/// Values per slice of a row: a pair of weight groups' split values for a
/// slice (32 rows x 2 x 2 bytes a value) stay in L2 beside the activations.
const SLICE: usize = 2048;

/// Bytes of packed activations a chunk of strips may take (a Sapphire
/// Rapids core's L2 is 2 MiB).
const L2_ACTIVATIONS: usize = 1 << 20;

/// Every tile 16 rows of 64 bytes. Tiles 0 and 1: two groups of weight
/// rows (high or low halves); 2 and 3: two strips of activations (high or
/// low); 4..8: the sums, weight group g and strip s in tile 4 + 2g + s.
static CONFIG: TileConfig = TileConfig::new([(16, 64); 8]);

/// One tile row: 32 BF16 values, or 16 pairs, or 16 f32 sums.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
pub struct Line([u16; 32]);

const ZERO_LINE: Line = Line([0; 32]);

/// A tile: 16 lines, contiguous.
const TILE: usize = 16;

/// Activation rows split and packed as second operands:
/// [strip][step][high, low][16 lines], zeros past the last row.
pub struct Packed {
    lines: Vec<Line>,
    rows: usize,
    steps: usize,
}

impl Packed {
    fn strips(&self) -> usize {
        self.rows.div_ceil(STRIP)
    }

    /// The high tile of `strip` at `step`; its low tile follows.
    fn tile(&self, strip: usize, step: usize) -> *const Line {
        self.lines[(strip * self.steps + step) * 2 * TILE..].as_ptr()
    }
}

/// Whether `n` activation rows of `cols` values go to the tiles.
pub fn takes(n: usize, cols: usize) -> bool {
    amx::bf16_available() && n >= MIN_BATCH && cols.is_multiple_of(STEP)
}

/// `x` (rows of `cols` values, already rounded to F16) packed for
/// [`rows`], or `None` where the tiles do not run: no AMX-BF16, fewer than
/// [`MIN_BATCH`] rows, or rows that are not whole tile rows.
pub fn pack(x: &[f32], cols: usize) -> Option<Packed> {
    let n = x.len() / cols;
    if !takes(n, cols) {
        return None;
    }
    let steps = cols / STEP;
    let mut lines = vec![ZERO_LINE; n.div_ceil(STRIP) * steps * 2 * TILE];
    lines
        .par_chunks_mut(steps * 2 * TILE)
        .enumerate()
        .for_each(|(s, dst)| {
            let first = s * STRIP;
            let strip = &x[first * cols..(first + STRIP).min(n) * cols];
            // SAFETY: AMX-BF16 implies AVX512 F and BW.
            unsafe { x86::pack_strip(strip, cols, dst) }
        });
    Some(Packed {
        lines,
        rows: n,
        steps,
    })
}

/// `dot(w[r], x[t])` into `out` at (t, r) for the weight rows of `w` (F16
/// bits, a multiple of [`ROWS`] rows of the packed rows' length) and the
/// rows packed in `x`.
///
/// # Safety
/// `x` came from [`pack`]; `out` as `dot_rows::RowsKernel`'s contract.
pub unsafe fn rows(w: &[u16], x: &Packed, out: OutRows) {
    x86::rows(w, x, out)
}

mod x86 {
    use super::*;

    /// The high BF16 halves of 32 f32 (the low 16 bits of each are zero)
    /// as 32 BF16, in order.
    #[inline(always)]
    unsafe fn pack_high(a: __m512, b: __m512) -> __m512i {
        let odd = _mm512_set_epi16(
            63, 61, 59, 57, 55, 53, 51, 49, 47, 45, 43, 41, 39, 37, 35, 33, 31, 29, 27, 25, 23, 21,
            19, 17, 15, 13, 11, 9, 7, 5, 3, 1,
        );
        _mm512_permutex2var_epi16(_mm512_castps_si512(a), odd, _mm512_castps_si512(b))
    }

    /// 16 f32 that are F16 values as their BF16 high part (the first 8
    /// significant bits, by truncation) and the rest, both exact in f32.
    #[inline(always)]
    unsafe fn split(v: __m512) -> (__m512, __m512) {
        let mask = _mm512_set1_epi32(0xffff_0000u32 as i32);
        let high = _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(v), mask));
        (high, _mm512_sub_ps(v, high))
    }

    /// 32 values from `a` (16) and `b` (16) as their high and low BF16
    /// lines.
    #[inline(always)]
    unsafe fn split_line(a: __m512, b: __m512) -> (__m512i, __m512i) {
        let ((ah, al), (bh, bl)) = (split(a), split(b));
        (pack_high(ah, bh), pack_high(al, bl))
    }

    /// The 16x16 matrix of 32-bit lanes in `r` transposed in place.
    #[inline(always)]
    pub(super) unsafe fn transpose(r: &mut [__m512i; 16]) {
        let mut t = [_mm512_setzero_si512(); 16];
        for i in 0..8 {
            t[2 * i] = _mm512_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
            t[2 * i + 1] = _mm512_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
        }
        // u[4q + i]: rows 4q..4q+4 of column i of each 128-bit lane.
        let mut u = [_mm512_setzero_si512(); 16];
        for q in 0..4 {
            let b = 4 * q;
            u[b] = _mm512_unpacklo_epi64(t[b], t[b + 2]);
            u[b + 1] = _mm512_unpackhi_epi64(t[b], t[b + 2]);
            u[b + 2] = _mm512_unpacklo_epi64(t[b + 1], t[b + 3]);
            u[b + 3] = _mm512_unpackhi_epi64(t[b + 1], t[b + 3]);
        }
        for i in 0..4 {
            let v = _mm512_shuffle_i32x4::<0x88>(u[i], u[4 + i]);
            let w = _mm512_shuffle_i32x4::<0xdd>(u[i], u[4 + i]);
            let v2 = _mm512_shuffle_i32x4::<0x88>(u[8 + i], u[12 + i]);
            let w2 = _mm512_shuffle_i32x4::<0xdd>(u[8 + i], u[12 + i]);
            r[i] = _mm512_shuffle_i32x4::<0x88>(v, v2);
            r[8 + i] = _mm512_shuffle_i32x4::<0xdd>(v, v2);
            r[4 + i] = _mm512_shuffle_i32x4::<0x88>(w, w2);
            r[12 + i] = _mm512_shuffle_i32x4::<0xdd>(w, w2);
        }
    }

    /// Up to 16 activation rows (`x`, `cols` each) into `dst`: per step,
    /// the high tile then the low one, row r of a tile holding values
    /// 2r and 2r + 1 of each activation row.
    #[target_feature(enable = "avx512f,avx512bw")]
    pub(super) unsafe fn pack_strip(x: &[f32], cols: usize, dst: &mut [Line]) {
        let n = x.len() / cols;
        for step in 0..cols / STEP {
            let mut high = [_mm512_setzero_si512(); 16];
            let mut low = [_mm512_setzero_si512(); 16];
            for t in 0..n {
                let p = x.as_ptr().add(t * cols + step * STEP);
                (high[t], low[t]) = split_line(_mm512_loadu_ps(p), _mm512_loadu_ps(p.add(16)));
            }
            transpose(&mut high);
            transpose(&mut low);
            let to = dst[step * 2 * TILE..].as_mut_ptr() as *mut __m512i;
            for r in 0..16 {
                _mm512_store_si512(to.add(r), high[r]);
                _mm512_store_si512(to.add(TILE + r), low[r]);
            }
        }
    }

    /// `g` groups of weight rows (F16 bits from `w`, `cols` a row), values
    /// `steps` x 32 from `first`, into `dst` as [step][group][high, low]
    /// [16 lines].
    #[target_feature(enable = "avx512f,avx512bw")]
    unsafe fn split_weights(
        w: *const u16,
        cols: usize,
        g: usize,
        first: usize,
        steps: usize,
        dst: *mut Line,
    ) {
        for step in 0..steps {
            for group in 0..g {
                let to = dst.add((step * g + group) * 2 * TILE) as *mut __m512i;
                for r in 0..ROWS {
                    let p = w.add((group * ROWS + r) * cols + first + step * STEP);
                    let h = _mm512_loadu_si512(p as *const _);
                    let a = _mm512_cvtph_ps(_mm512_castsi512_si256(h));
                    let b = _mm512_cvtph_ps(_mm512_extracti64x4_epi64::<1>(h));
                    let (high, low) = split_line(a, b);
                    _mm512_store_si512(to.add(r), high);
                    _mm512_store_si512(to.add(TILE + r), low);
                }
            }
        }
    }

    /// The sum tiles of `G` weight groups by `S` strips over `steps` steps:
    /// weights from `w` (as [`split_weights`] lays out `G` groups),
    /// activations from each strip's tile at the slice's first step, the
    /// sums started from `acc` (or zero) and stored back to it.
    #[inline(always)]
    unsafe fn block<const G: usize, const S: usize>(
        w: *const Line,
        x: [*const Line; 2],
        steps: usize,
        acc: [*mut Line; 4],
        resume: bool,
    ) {
        macro_rules! each_sum {
            ($body:ident) => {
                $body!(4, 0, 2, 0);
                if S == 2 {
                    $body!(5, 0, 3, 1);
                }
                if G == 2 {
                    $body!(6, 1, 2, 2);
                    if S == 2 {
                        $body!(7, 1, 3, 3);
                    }
                }
            };
        }
        macro_rules! start {
            ($c:literal, $a:literal, $b:literal, $i:literal) => {
                if resume {
                    tile_load!($c, acc[$i]);
                } else {
                    tile_zero!($c);
                }
            };
        }
        macro_rules! dot {
            ($c:literal, $a:literal, $b:literal, $i:literal) => {
                tile_dot!("tdpbf16ps", $c, $a, $b)
            };
        }
        macro_rules! finish {
            ($c:literal, $a:literal, $b:literal, $i:literal) => {
                tile_store!($c, acc[$i])
            };
        }
        // `part` 0: high halves; TILE further: low ones.
        macro_rules! weights {
            ($wj:expr, $part:expr) => {
                tile_load!(0, $wj.add($part));
                if G == 2 {
                    tile_load!(1, $wj.add(2 * TILE + $part));
                }
            };
        }
        macro_rules! acts {
            ($j:expr, $part:expr) => {
                tile_load!(2, x[0].add($j * 2 * TILE + $part));
                if S == 2 {
                    tile_load!(3, x[1].add($j * 2 * TILE + $part));
                }
            };
        }
        each_sum!(start);
        for j in 0..steps {
            let wj = w.add(j * G * 2 * TILE);
            weights!(wj, 0);
            acts!(j, 0);
            each_sum!(dot);
            acts!(j, TILE);
            each_sum!(dot);
            weights!(wj, TILE);
            each_sum!(dot);
            acts!(j, 0);
            each_sum!(dot);
        }
        each_sum!(finish);
    }

    #[target_feature(enable = "avx512f,avx512bw")]
    pub(super) unsafe fn rows(w: &[u16], x: &Packed, out: OutRows) {
        let cols = x.steps * STEP;
        let groups = w.len() / cols / ROWS;
        let strips = x.strips();
        let slice_steps = (SLICE / STEP).min(x.steps);
        let slices = x.steps.div_ceil(slice_steps);
        let chunk = (L2_ACTIVATIONS / (slice_steps * 2 * TILE * 64)).max(2);

        CONFIG.load();
        let mut split = vec![ZERO_LINE; slice_steps * 2 * 2 * TILE];
        // Sums between slices (one tile per group and strip of a chunk),
        // and the last slice's before they are transposed out.
        let per_group = chunk.min(strips);
        let mut sums = vec![ZERO_LINE; groups * per_group * TILE];
        let base = sums.as_mut_ptr();
        let at = |g: usize, s: usize| base.add((g * per_group + s) * TILE);
        for c0 in (0..strips).step_by(chunk) {
            let cn = chunk.min(strips - c0);
            for slice in 0..slices {
                let first = slice * slice_steps;
                let steps = slice_steps.min(x.steps - first);
                for g in (0..groups).step_by(2) {
                    let gn = 2.min(groups - g);
                    split_weights(
                        w.as_ptr().add(g * ROWS * cols),
                        cols,
                        gn,
                        first * STEP,
                        steps,
                        split.as_mut_ptr(),
                    );
                    for s in (c0..c0 + cn).step_by(2) {
                        let sn = 2.min(c0 + cn - s);
                        let xs = [x.tile(s, first), x.tile(s + sn - 1, first)];
                        let (s0, s1) = (s - c0, s - c0 + sn - 1);
                        let acc = [at(g, s0), at(g, s1), at(g + gn - 1, s0), at(g + gn - 1, s1)];
                        let wp = split.as_ptr();
                        match (gn, sn) {
                            (2, 2) => block::<2, 2>(wp, xs, steps, acc, slice > 0),
                            (2, _) => block::<2, 1>(wp, xs, steps, acc, slice > 0),
                            (_, 2) => block::<1, 2>(wp, xs, steps, acc, slice > 0),
                            _ => block::<1, 1>(wp, xs, steps, acc, slice > 0),
                        }
                    }
                }
            }
            // Tile (g, s) row i, lane t: weight row 16g + i, activation row
            // 16s + t.
            for g in 0..groups {
                for s in 0..cn {
                    let tile = &*(at(g, s) as *const [[f32; 16]; 16]);
                    let t0 = (c0 + s) * STRIP;
                    for t in 0..STRIP.min(x.rows - t0) {
                        for i in 0..ROWS {
                            out.write(t0 + t, g * ROWS + i, tile[i][t]);
                        }
                    }
                }
            }
        }
        amx::release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use half::f16;
    use rand::{Rng, SeedableRng};

    /// Whether this CPU lacks AMX-BF16 (the test then skips, saying so).
    fn no_tiles() -> bool {
        let none = !amx::bf16_available();
        if none {
            eprintln!("skipped: no AMX-BF16 here");
        }
        none
    }

    #[test]
    fn transpose_moves_lane_c_of_row_r_to_lane_r_of_row_c() {
        if no_tiles() {
            return;
        }
        let m: Vec<[u32; 16]> = (0..16u32)
            .map(|r| std::array::from_fn(|c| r * 100 + c as u32))
            .collect();
        // SAFETY: AMX-BF16 implies AVX512F.
        let t: Vec<[u32; 16]> = unsafe {
            let mut v: [__m512i; 16] =
                std::array::from_fn(|r| _mm512_loadu_si512(m[r].as_ptr() as *const _));
            x86::transpose(&mut v);
            v.iter()
                .map(|v| std::mem::transmute::<__m512i, [u32; 16]>(*v))
                .collect()
        };
        for r in 0..16 {
            for c in 0..16 {
                assert_eq!(t[c][r], m[r][c], "row {r} lane {c}");
            }
        }
    }

    /// `w` (rows x cols F16) times `x` (n x cols, F16 values) on the
    /// tiles, against the exact sums in f64.
    fn check(w: &[f16], x: &[f32], rows: usize, cols: usize, exact: bool) {
        let n = x.len() / cols;
        let packed = pack(x, cols).expect("the tiles run");
        let mut out = vec![f32::NAN; n * rows];
        let bits: Vec<u16> = w.iter().map(|v| v.to_bits()).collect();
        let o = OutRows {
            ptr: out.as_mut_ptr(),
            stride: rows,
        };
        // SAFETY: one writer; `packed` from `pack`.
        unsafe { super::rows(&bits, &packed, o) };
        for t in 0..n {
            for r in 0..rows {
                let (wr, xr) = (&w[r * cols..(r + 1) * cols], &x[t * cols..(t + 1) * cols]);
                let sum: f64 = wr.iter().zip(xr).map(|(w, x)| w.to_f64() * *x as f64).sum();
                let size: f64 = wr
                    .iter()
                    .zip(xr)
                    .map(|(w, x)| (w.to_f64() * *x as f64).abs())
                    .sum();
                let got = out[t * rows + r] as f64;
                if exact {
                    assert_eq!(got, sum, "row {t}, weight row {r}");
                } else {
                    // f32 sums: well within 2^-16 of the products' sizes.
                    assert!(
                        (got - sum).abs() <= size * 1.5e-5,
                        "row {t}, weight row {r}: {got} vs {sum}"
                    );
                }
            }
        }
    }

    /// F16 values `m · 2^-shift` with all 11 significant bits of `m` in
    /// use.
    fn full_f16(rng: &mut impl Rng, shift: i32) -> f16 {
        let m: i32 = rng.random_range(1024..2048) * if rng.random() { 1 } else { -1 };
        f16::from_f32(m as f32 * 2f32.powi(-shift))
    }

    /// Sparse rows (two products each, on one scale: weights m · 2^-14,
    /// activations m · 2^-10, so sums under 2^23 · 2^-24) make every f32
    /// sum exact, so any product lost or misplaced (a half, a pair, a row,
    /// a slice, a chunk) shows.
    #[test]
    fn sparse_sums_are_exact() {
        if no_tiles() {
            return;
        }
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        // (16, 4096, 144): two chunks of strips (8, then 1).
        let shapes = [
            (16, 32, 32),
            (48, 96, 33),
            (32, 4160, 47),
            (80, 576, 70),
            (16, 4096, 144),
        ];
        for (rows, cols, n) in shapes {
            let mut w = vec![f16::ZERO; rows * cols];
            let mut x = vec![0f32; n * cols];
            // Weights and activations at the same columns, two per row.
            let shared: Vec<usize> = (0..2).map(|_| rng.random_range(0..cols)).collect();
            for r in 0..rows {
                for &c in &shared {
                    w[r * cols + c] = full_f16(&mut rng, 14);
                }
                w[r * cols + rng.random_range(0..cols)] = full_f16(&mut rng, 14);
            }
            for t in 0..n {
                for &c in &shared {
                    x[t * cols + c] = full_f16(&mut rng, 10).to_f32();
                }
            }
            check(&w, &x, rows, cols, true);
        }
    }

    #[test]
    fn dense_sums_are_f32_close() {
        if no_tiles() {
            return;
        }
        let mut rng = rand::rngs::StdRng::seed_from_u64(6);
        for (rows, cols, n) in [(32, 576, 64), (16, 1536, 40), (48, 2080, 35)] {
            let w: Vec<f16> = (0..rows * cols)
                .map(|_| f16::from_f32(rng.random_range(-0.5..0.5)))
                .collect();
            let x: Vec<f32> = (0..n * cols)
                .map(|_| f16::from_f32(rng.random_range(-2.0..2.0)).to_f32())
                .collect();
            check(&w, &x, rows, cols, false);
        }
    }
}

//! The order of [`super::attend_rows`]'s vector kernels, shared by the
//! AVX-512 (16 lanes) and AVX2 (8 lanes) forms: per KV head, the block's
//! query heads rounded to f16, then `LANES` keys at a time widened once
//! into an f32 tile and scored against every query head that sees them,
//! each head's softmax, then the weighted sums of values, `QUERIES` heads
//! and `SLICE` head values per pass. Each form supplies its kernels
//! ([`TileKernels`]) and calls [`attend_rows`] from a function compiled
//! for its instructions, into which all of this inlines.

use half::f16;

use super::{AttentionShape, RowsInput, RowsScratch};

/// One instruction set's pieces of [`attend_rows`]. Each is `unsafe`: it
/// runs only where that set's CPU features are (the caller checked).
pub(super) trait TileKernels {
    /// Keys per score tile: ggml's f32 lanes on this CPU.
    const LANES: usize;
    /// Query heads whose weighted sums of values run together.
    const QUERIES: usize;
    /// Head values one weighted-sum pass covers.
    const SLICE: usize;

    /// `dst[0..d]` = `src[0..d]` rounded to f16 (as ggml converts the
    /// query to the cache's type before Q·K).
    unsafe fn round_f16(src: *const f32, dst: *mut f32, d: usize);

    /// `dst[0..d]` = the f16 values `src[0..d]` as f32.
    unsafe fn widen(src: *const f16, dst: *mut f32, d: usize);

    /// One query head's scores times `scale` for the first `seen` (<=
    /// LANES) keys widened in `tile` (`d` values each), into
    /// `dst[0..LANES]` (lanes past `seen` are not read later).
    unsafe fn scores(
        d: usize,
        q16: *const f32,
        tile: *const f32,
        seen: usize,
        scale: f32,
        dst: *mut f32,
    );

    /// ggml's softmax of one head's scores, each weight rounded to f16.
    unsafe fn softmax_f16(scores: &mut [f32]);

    /// For `heads` (<= QUERIES) query heads (`head(k)`: its weights and
    /// how many positions it sees), SLICE values of Σ_p w[p] · V[p] into
    /// `dst(k)`, `value(p)` pointing at position p's slice.
    unsafe fn weighted_values(
        heads: usize,
        head: impl Fn(usize) -> (*const f32, usize),
        value: impl Fn(usize) -> *const f16,
        dst: impl Fn(usize) -> *mut f32,
    );
}

/// See [`super::attend_rows`]; inlined into each form's entry point.
///
/// # Safety
/// The CPU has `K`'s features; `shape.head_dim` is a multiple of
/// `K::SLICE` and of `K::LANES`.
#[inline(always)]
pub(super) unsafe fn attend_rows<K: TileKernels>(
    shape: AttentionShape,
    input: &RowsInput<'_>,
    s: &mut RowsScratch,
    out: &mut [f32],
) {
    let d = shape.head_dim;
    let group = shape.n_head / shape.n_kv_head;
    let qd = shape.n_head * d;
    let rows = input.q.len() / qd;
    assert!(rows >= 1 && input.first_n_pos >= 1 && out.len() == rows * qd);
    assert!(d.is_multiple_of(K::SLICE) && d.is_multiple_of(K::LANES));
    // The last row sees the most positions; query head j (row j / group)
    // sees `first_n_pos + j / group`.
    let n_last = input.first_n_pos + rows - 1;
    let (keys, values) = (&input.keys, &input.values);
    assert!(keys.capacity() >= n_last && values.capacity() >= n_last);
    assert!(keys.row(0).len() >= shape.n_kv_head * d && values.row(0).len() >= shape.n_kv_head * d);
    let n_queries = rows * group;
    let n_pos = |j: usize| input.first_n_pos + j / group;
    let stride = n_last.next_multiple_of(K::LANES);
    let scale = 1.0 / (d as f32).sqrt();

    for kv_head in 0..shape.n_kv_head {
        // Positions below n_last only (checked above), `d` values from
        // `kv_head * d` on, within each row (checked above).
        let key = |p: usize| keys.row_ptr(p).add(kv_head * d);
        let value = |p: usize| values.row_ptr(p).add(kv_head * d);
        let query = |j: usize| (j / group) * qd + (kv_head * group + j % group) * d;

        s.q16.clear();
        s.q16.reserve(n_queries * d);
        for j in 0..n_queries {
            K::round_f16(
                input.q.as_ptr().add(query(j)),
                s.q16.as_mut_ptr().add(j * d),
                d,
            );
        }
        s.q16.set_len(n_queries * d);

        // Only grown (zeroing a block's scores was a pass over them per KV
        // head); every score read below was written first.
        if s.scores.len() < n_queries * stride {
            s.scores.resize(n_queries * stride, 0.0);
        }
        if s.tile.len() < K::LANES * d {
            s.tile.resize(K::LANES * d, 0.0);
        }
        let tile = s.tile.as_mut_ptr();
        for first in (0..n_last).step_by(K::LANES) {
            let in_tile = (n_last - first).min(K::LANES);
            for t in 0..in_tile {
                K::widen(key(first + t), tile.add(t * d), d);
            }
            for j in 0..n_queries {
                let Some(seen) = n_pos(j).checked_sub(first).filter(|n| *n > 0) else {
                    continue;
                };
                let q16 = s.q16.as_ptr().add(j * d);
                let dst = s.scores.as_mut_ptr().add(j * stride + first);
                K::scores(d, q16, tile, seen.min(K::LANES), scale, dst);
            }
        }
        for j in 0..n_queries {
            K::softmax_f16(&mut s.scores[j * stride..j * stride + n_pos(j)]);
        }

        let w = s.scores.as_ptr();
        let o = out.as_mut_ptr();
        for first in (0..n_queries).step_by(K::QUERIES) {
            let heads = (n_queries - first).min(K::QUERIES);
            for c in (0..d).step_by(K::SLICE) {
                let at = |k: usize| (w.add((first + k) * stride), n_pos(first + k));
                let dst = |k: usize| o.add(query(first + k) + c);
                K::weighted_values(heads, at, |p| value(p).add(c), dst);
            }
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::super::{attend, GroupInput, Order, Scratch};
    use super::*;
    use crate::kv_cache::{paged, KvRows};

    /// `kernel` (a form's entry point) gives every output value the
    /// portable `W`-lane kernel gives, row by row and group by group alone,
    /// bit for bit: groups of 1, 3, 4 and 8 query heads (whole and partial
    /// runs of heads; 4 of 128 values is Llama 3's shape), one and two value
    /// slices per head, blocks starting inside and at the edge of a tile,
    /// and prompts of 40 and 200 rows.
    pub(in super::super) fn matches_the_portable_kernel<const W: usize>(
        kernel: unsafe fn(AttentionShape, &RowsInput<'_>, &mut RowsScratch, &mut [f32]),
    ) {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
        };
        for (d, n_head, n_kv_head) in [
            (64, 6, 2),
            (128, 4, 4),
            (64, 8, 1),
            (128, 4, 1),
            (128, 8, 2),
        ] {
            let shape = AttentionShape {
                n_head,
                n_kv_head,
                head_dim: d,
            };
            let (qd, kv_dim) = (n_head * d, n_kv_head * d);
            for (first_n_pos, rows) in [
                (1, 1),
                (1, 16),
                (5, 7),
                (8, 2),
                (16, 2),
                (17, 23),
                (40, 9),
                (97, 32),
                (1, 40),
                (1, 200),
            ] {
                let n = first_n_pos + rows - 1;
                let keys: Vec<f16> = (0..n * kv_dim)
                    .map(|_| f16::from_f32(next() * 3.0))
                    .collect();
                let values: Vec<f16> = (0..n * kv_dim).map(|_| f16::from_f32(next())).collect();
                let (keys, values) = (paged(&keys, kv_dim), paged(&values, kv_dim));
                let q: Vec<f32> = (0..rows * qd).map(|_| next() * 2.0).collect();
                let input = RowsInput {
                    q: &q,
                    keys: KvRows::new(&keys, 0, kv_dim),
                    values: KvRows::new(&values, 0, kv_dim),
                    first_n_pos,
                };
                let mut got = vec![0f32; rows * qd];
                // SAFETY: the caller checked the CPU.
                unsafe { kernel(shape, &input, &mut RowsScratch::default(), &mut got) };
                let group_len = qd / n_kv_head;
                for (i, (q, got)) in q
                    .chunks_exact(group_len)
                    .zip(got.chunks_exact(group_len))
                    .enumerate()
                {
                    let (row, kv_head) = (i / n_kv_head, i % n_kv_head);
                    let alone = GroupInput {
                        q,
                        keys: input.keys,
                        values: input.values,
                        kv_head,
                        n_pos: first_n_pos + row,
                        order: Order::Prefill,
                    };
                    let mut want = vec![0f32; group_len];
                    attend::<false, W>(shape, &alone, &mut Scratch::default(), &mut want);
                    for (k, (g, w)) in got.iter().zip(&want).enumerate() {
                        assert_eq!(
                            g.to_bits(),
                            w.to_bits(),
                            "{W} lanes: d {d} heads {n_head}/{n_kv_head} first_n_pos {first_n_pos} \
                             row {row} kv head {kv_head} value {k}: {g} vs {w}"
                        );
                    }
                }
            }
        }
    }
}

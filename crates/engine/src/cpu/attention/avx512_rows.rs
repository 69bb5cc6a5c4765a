//! [`super::attend_rows`] with AVX-512: consecutive query rows of one
//! sequence in the prefill (tinyBLAS) order, bit for bit what
//! [`super::avx512::attend`] gives each row alone, with the f16 cache's
//! conversions shared. Row by row, every query head converted every key
//! and value it read; a block of rows converts each 16 keys once into an
//! f32 tile for all its query heads, and each value row once per
//! [`QUERIES`] query heads.

use std::arch::x86_64::*;

use super::avx512::{load16, reduce16_x16, round_f16, softmax_f16, store_reduced};
use super::{AttentionShape, RowsInput, RowsScratch};

/// Query heads whose weighted sums of values run together: 6 x 4
/// accumulators, a value slice of 4 vectors and a weight take 29 of the
/// 32 vector registers.
const QUERIES: usize = 6;

/// See [`super::attend_rows`].
///
/// # Safety
/// [`super::avx512::available`] said yes for `shape.head_dim`.
#[target_feature(enable = "avx512f,avx2,fma,f16c")]
pub(super) unsafe fn attend_rows(
    shape: AttentionShape,
    input: &RowsInput<'_>,
    s: &mut RowsScratch,
    out: &mut [f32],
) {
    let d = shape.head_dim;
    let d16 = d / 16;
    let group = shape.n_head / shape.n_kv_head;
    let qd = shape.n_head * d;
    let rows = input.q.len() / qd;
    assert!(rows >= 1 && input.first_n_pos >= 1 && out.len() == rows * qd);
    // The last row sees the most positions; query head j (row j / group)
    // sees `first_n_pos + j / group`.
    let n_last = input.first_n_pos + rows - 1;
    let (keys, values) = (&input.keys, &input.values);
    assert!(keys.capacity() >= n_last && values.capacity() >= n_last);
    assert!(keys.row(0).len() >= shape.n_kv_head * d && values.row(0).len() >= shape.n_kv_head * d);
    let n_queries = rows * group;
    let n_pos = |j: usize| input.first_n_pos + j / group;
    let stride = n_last.next_multiple_of(16);
    let scale = _mm512_set1_ps(1.0 / (d as f32).sqrt());

    for kv_head in 0..shape.n_kv_head {
        // Positions below n_last only (checked above), `d` values from
        // `kv_head * d` on, within each row (checked above).
        let key = |p: usize| keys.row_ptr(p).add(kv_head * d);
        let value = |p: usize| values.row_ptr(p).add(kv_head * d);
        let query = |j: usize| (j / group) * qd + (kv_head * group + j % group) * d;

        // ggml converts the query to the cache's type before Q·K.
        s.q16.clear();
        s.q16.reserve(n_queries * d);
        for j in 0..n_queries {
            let q = input.q.as_ptr().add(query(j));
            let dst = s.q16.as_mut_ptr().add(j * d);
            for c in 0..d16 {
                _mm512_storeu_ps(dst.add(16 * c), round_f16(_mm512_loadu_ps(q.add(16 * c))));
            }
        }
        s.q16.set_len(n_queries * d);

        // Only grown (zeroing a block's scores was a pass over them per KV
        // head); every score read below was written first.
        if s.scores.len() < n_queries * stride {
            s.scores.resize(n_queries * stride, 0.0);
        }
        if s.tile.len() < 16 * d {
            s.tile.resize(16 * d, 0.0);
        }
        let tile = s.tile.as_mut_ptr();
        for first in (0..n_last).step_by(16) {
            let in_tile = (n_last - first).min(16);
            for t in 0..in_tile {
                for c in 0..d16 {
                    _mm512_storeu_ps(tile.add(t * d + 16 * c), load16(key(first + t).add(16 * c)));
                }
            }
            for j in 0..n_queries {
                let Some(seen) = n_pos(j).checked_sub(first).filter(|n| *n > 0) else {
                    continue;
                };
                let q16 = s.q16.as_ptr().add(j * d);
                let dst = s.scores.as_mut_ptr().add(j * stride + first);
                let seen = seen.min(16);
                match d16 {
                    4 => scores16::<4>(q16, tile, seen, scale, dst),
                    8 => scores16::<8>(q16, tile, seen, scale, dst),
                    12 => scores16::<12>(q16, tile, seen, scale, dst),
                    _ => scores16::<16>(q16, tile, seen, scale, dst),
                }
            }
        }
        for j in 0..n_queries {
            softmax_f16(&mut s.scores[j * stride..j * stride + n_pos(j)]);
        }

        let w = s.scores.as_ptr();
        let o = out.as_mut_ptr();
        for first in (0..n_queries).step_by(QUERIES) {
            let heads = (n_queries - first).min(QUERIES);
            for c in (0..d).step_by(64) {
                let at = |k: usize| (w.add((first + k) * stride), n_pos(first + k));
                let dst = |k: usize| o.add(query(first + k) + c);
                let value_at = |p: usize| value(p).add(c);
                match heads {
                    6 => weighted_values::<6>(at, value_at, dst),
                    5 => weighted_values::<5>(at, value_at, dst),
                    4 => weighted_values::<4>(at, value_at, dst),
                    3 => weighted_values::<3>(at, value_at, dst),
                    2 => weighted_values::<2>(at, value_at, dst),
                    _ => weighted_values::<1>(at, value_at, dst),
                }
            }
        }
    }
}

/// One query head's scaled scores for the first `seen` (<= 16) of 16
/// positions whose keys (`D16` vectors each) are widened in `tile`, into
/// `dst[0..16]`: each position's 16 lanes chained over the head row as
/// tinyBLAS does, reduced by `reduce16`. The head size is a constant so
/// that the query stays in registers.
#[inline]
#[target_feature(enable = "avx512f,avx2,fma,f16c")]
unsafe fn scores16<const D16: usize>(
    q16: *const f32,
    tile: *const f32,
    seen: usize,
    scale: __m512,
    dst: *mut f32,
) {
    let q: [__m512; D16] = std::array::from_fn(|c| _mm512_loadu_ps(q16.add(16 * c)));
    let mut lanes = [_mm512_setzero_ps(); 16];
    let lane = |t: usize| {
        let key = tile.add(t * 16 * D16);
        let mut acc = _mm512_setzero_ps();
        for (c, qc) in q.iter().enumerate() {
            acc = _mm512_fmadd_ps(_mm512_loadu_ps(key.add(16 * c)), *qc, acc);
        }
        acc
    };
    if seen == 16 {
        lanes = std::array::from_fn(lane);
    } else {
        for (t, l) in lanes.iter_mut().enumerate().take(seen) {
            *l = lane(t);
        }
    }
    _mm512_storeu_ps(dst, _mm512_mul_ps(reduce16_x16(&lanes), scale));
}

/// For `Q` query heads (`head(k)`: its softmax weights and how many
/// positions it sees), 64 values of Σ_p w[p] · V[p] into `dst(k)` in
/// tinyBLAS's order: position p's product goes to lane p % 16, chained in
/// position order, lanes reduced by `reduce16`. Each value slice is
/// converted once for all `Q` heads; a head stops at its own last
/// position, so its chains are exactly the ones it had alone.
#[inline]
#[target_feature(enable = "avx512f,avx2,fma,f16c")]
pub(super) unsafe fn weighted_values<const Q: usize>(
    head: impl Fn(usize) -> (*const f32, usize),
    value: impl Fn(usize) -> *const half::f16,
    dst: impl Fn(usize) -> *mut f32,
) {
    let heads: [(*const f32, usize); Q] = std::array::from_fn(&head);
    let seen_by_all = heads.iter().map(|h| h.1).min().unwrap_or(0);
    let seen_by_any = heads.iter().map(|h| h.1).max().unwrap_or(0);
    let mut x0 = [[[_mm512_setzero_ps(); 4]; 16]; Q];
    for l in 0..16.min(seen_by_any) {
        let mut acc = [[_mm512_setzero_ps(); 4]; Q];
        let mut p = l;
        // Positions every head sees first, without a check per head.
        while p < seen_by_all {
            let v: [__m512; 4] = std::array::from_fn(|j| load16(value(p).add(16 * j)));
            for (a, (w, _)) in acc.iter_mut().zip(&heads) {
                let w = _mm512_set1_ps(*w.add(p));
                for (aj, vj) in a.iter_mut().zip(v) {
                    *aj = _mm512_fmadd_ps(w, vj, *aj);
                }
            }
            p += 16;
        }
        while p < seen_by_any {
            let v: [__m512; 4] = std::array::from_fn(|j| load16(value(p).add(16 * j)));
            for (a, (w, seen)) in acc.iter_mut().zip(&heads) {
                if p < *seen {
                    let w = _mm512_set1_ps(*w.add(p));
                    for (aj, vj) in a.iter_mut().zip(v) {
                        *aj = _mm512_fmadd_ps(w, vj, *aj);
                    }
                }
            }
            p += 16;
        }
        for (x, a) in x0.iter_mut().zip(acc) {
            x[l] = a;
        }
    }
    for (k, x) in x0.iter_mut().enumerate() {
        store_reduced(x, dst(k));
    }
}

#[cfg(test)]
mod tests {
    use super::super::avx512::available;
    use super::super::{attend, GroupInput, Order, Scratch};
    use super::*;
    use crate::kv_cache::{paged, KvRows};
    use half::f16;

    /// Every output value equals the portable kernel's, row by row and
    /// group by group alone, bit for bit: groups of 1, 3 and 8 query heads
    /// (whole and partial runs of [`QUERIES`]), one and two 64-value steps
    /// per head, blocks starting inside and at the edge of 16 positions.
    #[test]
    fn matches_the_portable_kernel_row_by_row_bit_for_bit() {
        if !available(64) {
            eprintln!("skipped: no AVX-512F here, or SERVEBENCH_KERNELS=portable");
            return;
        }
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
        };
        for (d, n_head, n_kv_head) in [(64, 6, 2), (128, 4, 4), (64, 8, 1)] {
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
                (16, 2),
                (17, 23),
                (40, 9),
                (97, 32),
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
                // SAFETY: `available` said yes above.
                unsafe { attend_rows(shape, &input, &mut RowsScratch::default(), &mut got) };
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
                    attend::<false, { crate::cpu::ggml_numerics::LANES }>(
                        shape,
                        &alone,
                        &mut Scratch::default(),
                        &mut want,
                    );
                    for (k, (g, w)) in got.iter().zip(&want).enumerate() {
                        assert_eq!(
                            g.to_bits(),
                            w.to_bits(),
                            "d {d} heads {n_head}/{n_kv_head} first_n_pos {first_n_pos} row {row} \
                             kv head {kv_head} value {k}: {g} vs {w}"
                        );
                    }
                }
            }
        }
    }
}

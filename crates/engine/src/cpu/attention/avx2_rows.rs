//! [`super::attend_rows`] with AVX2 on CPUs without AVX-512, where ggml's
//! vectors have 8 lanes: consecutive query rows of one sequence in the
//! prefill (tinyBLAS) order, bit for bit what the portable kernel gives
//! each row alone. Row by row, every query head widened every key and
//! value of its KV head again (a 3,000-token prompt converted each
//! position about 3,000 times); here a block of rows widens each 8 keys
//! once for all its query heads and each value slice once per
//! [`QUERIES`] query heads.

use std::arch::x86_64::*;

use super::super::ggml_numerics as g;
use super::{AttentionShape, RowsInput, RowsScratch};

/// Query heads whose weighted sums of values run together: 2 x 4
/// accumulators, a value slice of 4 vectors and a weight take 13 of the
/// 16 vector registers.
const QUERIES: usize = 2;

/// Head values one weighted-sum pass covers (4 vectors).
const SLICE: usize = 32;

/// Whether this kernel runs for heads of `head_dim` values: the CPU has the
/// AVX2/FMA/F16C kernels `dot::best` chose, ggml's vectors have 8 lanes
/// here (no AVX-512F), and a head is whole slices.
pub(super) fn available(head_dim: usize) -> bool {
    super::super::dot::best().fma
        && g::lanes_here() == 8
        && head_dim.is_multiple_of(SLICE)
        && head_dim <= 128
}

/// 8 f16 at `p` as 8 f32.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn load8(p: *const half::f16) -> __m256 {
    _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i))
}

/// `g::reduce::<8>` of each of 8 vectors, lane i of the result from
/// `v[i]`: halves added (t[k] = v[k] + v[k + 4]), then (t0 + t2) +
/// (t1 + t3), two and four vectors per shuffle.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn reduce8_x8(v: &[__m256; 8]) -> __m256 {
    // u[k] = [t of v[k] | t of v[k + 4]].
    let u: [__m256; 4] = std::array::from_fn(|k| {
        let (a, b) = (v[k], v[k + 4]);
        _mm256_add_ps(
            _mm256_permute2f128_ps::<0x20>(a, b),
            _mm256_permute2f128_ps::<0x31>(a, b),
        )
    });
    // s = [t0 + t2, t1 + t3] of two vectors, per 128-bit half.
    let pair = |a: __m256, b: __m256| {
        _mm256_add_ps(
            _mm256_shuffle_ps::<0b0100_0100>(a, b),
            _mm256_shuffle_ps::<0b1110_1110>(a, b),
        )
    };
    let (s01, s23) = (pair(u[0], u[1]), pair(u[2], u[3]));
    _mm256_add_ps(
        _mm256_shuffle_ps::<0b1000_1000>(s01, s23),
        _mm256_shuffle_ps::<0b1101_1101>(s01, s23),
    )
}

/// See [`super::attend_rows`].
///
/// # Safety
/// [`available`] said yes for `shape.head_dim`.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn attend_rows(
    shape: AttentionShape,
    input: &RowsInput<'_>,
    s: &mut RowsScratch,
    out: &mut [f32],
) {
    let d = shape.head_dim;
    let d8 = d / 8;
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
    let stride = n_last.next_multiple_of(8);
    let scale = _mm256_set1_ps(1.0 / (d as f32).sqrt());

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
            for c in 0..d8 {
                _mm256_storeu_ps(dst.add(8 * c), round_f16(_mm256_loadu_ps(q.add(8 * c))));
            }
        }
        s.q16.set_len(n_queries * d);

        // Only grown; every score read below was written first.
        if s.scores.len() < n_queries * stride {
            s.scores.resize(n_queries * stride, 0.0);
        }
        if s.tile.len() < 8 * d {
            s.tile.resize(8 * d, 0.0);
        }
        let tile = s.tile.as_mut_ptr();
        for first in (0..n_last).step_by(8) {
            let in_tile = (n_last - first).min(8);
            for t in 0..in_tile {
                for c in 0..d8 {
                    _mm256_storeu_ps(tile.add(t * d + 8 * c), load8(key(first + t).add(8 * c)));
                }
            }
            for j in 0..n_queries {
                let Some(seen) = n_pos(j).checked_sub(first).filter(|n| *n > 0) else {
                    continue;
                };
                let q16 = s.q16.as_ptr().add(j * d);
                let dst = s.scores.as_mut_ptr().add(j * stride + first);
                let seen = seen.min(8);
                match d8 {
                    4 => scores8::<4>(q16, tile, seen, scale, dst),
                    8 => scores8::<8>(q16, tile, seen, scale, dst),
                    12 => scores8::<12>(q16, tile, seen, scale, dst),
                    _ => scores8::<16>(q16, tile, seen, scale, dst),
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
            for c in (0..d).step_by(SLICE) {
                let at = |k: usize| (w.add((first + k) * stride), n_pos(first + k));
                let dst = |k: usize| o.add(query(first + k) + c);
                let value_at = |p: usize| value(p).add(c);
                match heads {
                    2 => weighted_values::<2>(at, value_at, dst),
                    _ => weighted_values::<1>(at, value_at, dst),
                }
            }
        }
    }
}

/// Each f32 lane rounded to f16 and back (round to nearest even, as
/// `half`'s conversion).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn round_f16(v: __m256) -> __m256 {
    _mm256_cvtph_ps(_mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(v))
}

/// ggml's 8-lane `soft_max` ([`g::softmax`]), then each weight rounded to
/// f16 as the following f16 matmul does.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn softmax_f16(scores: &mut [f32]) {
    g::softmax::<8>(scores);
    let mut chunks = scores.chunks_exact_mut(8);
    for c in &mut chunks {
        _mm256_storeu_ps(c.as_mut_ptr(), round_f16(_mm256_loadu_ps(c.as_ptr())));
    }
    for w in chunks.into_remainder() {
        *w = half::f16::from_f32(*w).to_f32();
    }
}

/// One query head's scaled scores for the first `seen` (<= 8) of 8
/// positions whose keys (`D8` vectors each) are widened in `tile`, into
/// `dst[0..8]`: each position's 8 lanes chained over the head row as
/// tinyBLAS does, reduced by `reduce::<8>`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn scores8<const D8: usize>(
    q16: *const f32,
    tile: *const f32,
    seen: usize,
    scale: __m256,
    dst: *mut f32,
) {
    let q: [__m256; D8] = std::array::from_fn(|c| _mm256_loadu_ps(q16.add(8 * c)));
    let mut lanes = [_mm256_setzero_ps(); 8];
    let lane = |t: usize| {
        let key = tile.add(t * 8 * D8);
        let mut acc = _mm256_setzero_ps();
        for (c, qc) in q.iter().enumerate() {
            acc = _mm256_fmadd_ps(_mm256_loadu_ps(key.add(8 * c)), *qc, acc);
        }
        acc
    };
    if seen == 8 {
        lanes = std::array::from_fn(lane);
    } else {
        for (t, l) in lanes.iter_mut().enumerate().take(seen) {
            *l = lane(t);
        }
    }
    _mm256_storeu_ps(dst, _mm256_mul_ps(reduce8_x8(&lanes), scale));
}

/// For `Q` query heads (`head(k)`: its softmax weights and how many
/// positions it sees), [`SLICE`] values of Σ_p w[p] · V[p] into `dst(k)`
/// in tinyBLAS's order: position p's product goes to lane p % 8, chained
/// in position order, lanes reduced as `reduce::<8>`. Each value slice is
/// widened once for all `Q` heads; a head stops at its own last position,
/// so its chains are exactly the ones it had alone.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn weighted_values<const Q: usize>(
    head: impl Fn(usize) -> (*const f32, usize),
    value: impl Fn(usize) -> *const half::f16,
    dst: impl Fn(usize) -> *mut f32,
) {
    let heads: [(*const f32, usize); Q] = std::array::from_fn(&head);
    let seen_by_all = heads.iter().map(|h| h.1).min().unwrap_or(0);
    let seen_by_any = heads.iter().map(|h| h.1).max().unwrap_or(0);
    let mut x0 = [[[_mm256_setzero_ps(); 4]; 8]; Q];
    for l in 0..8.min(seen_by_any) {
        let mut acc = [[_mm256_setzero_ps(); 4]; Q];
        let mut p = l;
        // Positions every head sees first, without a check per head.
        while p < seen_by_all {
            let v: [__m256; 4] = std::array::from_fn(|j| load8(value(p).add(8 * j)));
            for (a, (w, _)) in acc.iter_mut().zip(&heads) {
                let w = _mm256_broadcast_ss(&*w.add(p));
                for (aj, vj) in a.iter_mut().zip(v) {
                    *aj = _mm256_fmadd_ps(w, vj, *aj);
                }
            }
            p += 8;
        }
        while p < seen_by_any {
            let v: [__m256; 4] = std::array::from_fn(|j| load8(value(p).add(8 * j)));
            for (a, (w, seen)) in acc.iter_mut().zip(&heads) {
                if p < *seen {
                    let w = _mm256_broadcast_ss(&*w.add(p));
                    for (aj, vj) in a.iter_mut().zip(v) {
                        *aj = _mm256_fmadd_ps(w, vj, *aj);
                    }
                }
            }
            p += 8;
        }
        for (x, a) in x0.iter_mut().zip(acc) {
            x[l] = a;
        }
    }
    for (k, x) in x0.iter_mut().enumerate() {
        // Halves (t[k] = x[k] + x[k + 4]), then (t0 + t2) + (t1 + t3);
        // lanes no position reached are +0.0 and change nothing.
        for k in 0..4 {
            let high = x[k + 4];
            for (a, b) in x[k].iter_mut().zip(high) {
                *a = _mm256_add_ps(*a, b);
            }
        }
        let out = dst(k);
        let [a0, a1, a2, a3, ..] = *x;
        for (j, (((v0, v1), v2), v3)) in a0.into_iter().zip(a1).zip(a2).zip(a3).enumerate() {
            let sum = _mm256_add_ps(_mm256_add_ps(v0, v2), _mm256_add_ps(v1, v3));
            _mm256_storeu_ps(out.add(8 * j), sum);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{attend, GroupInput, Order, Scratch};
    use super::*;
    use crate::kv_cache::{paged, KvRows};
    use half::f16;

    /// Every output value equals the portable 8-lane kernel's, row by row
    /// and group by group alone, bit for bit: groups of 1, 3 and 8 query
    /// heads (whole and partial pairs), heads of 64 and 128 values, blocks
    /// starting inside and at the edge of 8 positions. Runs on any CPU
    /// with AVX2, FMA and F16C (AVX-512 ones too: the kernel is called
    /// directly).
    #[test]
    fn matches_the_portable_kernel_row_by_row_bit_for_bit() {
        if !super::super::super::dot::best().fma {
            eprintln!("skipped: no AVX2/FMA/F16C here, or SERVEBENCH_KERNELS=portable");
            return;
        }
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
        };
        for (d, n_head, n_kv_head) in [(64, 6, 2), (128, 4, 4), (64, 8, 1), (32, 3, 3)] {
            let shape = AttentionShape {
                n_head,
                n_kv_head,
                head_dim: d,
            };
            let (qd, kv_dim) = (n_head * d, n_kv_head * d);
            for (first_n_pos, rows) in [(1, 1), (1, 16), (5, 7), (8, 2), (9, 23), (40, 9), (97, 32)]
            {
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
                // SAFETY: the CPU has AVX2, FMA and F16C (checked above).
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
                    attend::<false, 8>(shape, &alone, &mut Scratch::default(), &mut want);
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

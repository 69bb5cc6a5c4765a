//! Q4_K and Q6_K weight rows times one activation row (a decode step) with
//! 512-bit vectors. At batch 1 the weights stream from memory and the
//! kernels wait on it; fewer instructions per block let the out-of-order
//! window reach further ahead, so more of the stream is in flight (with the
//! matrix in L2 this kernel is no faster than the 256-bit one). Measured
//! with `matmul_bench` (`COPIES=40`, 2 threads, 2026-12-02, Intel Xeon
//! Sapphire Rapids), GMAC/s 256-bit / 512-bit: Q4_K 11008x4096 45-46 /
//! 49-51, 4096x11008 43-44 / 47-48; Q6_K 29 / 32, 27-28 / 31. The integer
//! lanes and the float steps are the 256-bit kernels' (so ggml's), and the
//! results equal them bit for bit (tested).

use std::arch::x86_64::*;

use super::blocks::{BlockQ4K, BlockQ6K, QK_K};
use super::quantize::BlockQ8K;
use super::x86::{prefetch_l2, q4k_fold_block, q4k_row_result, PrepQ6K};
use crate::cpu::dot::avx2::hsum;
use crate::cpu::dot_rows::OutRows;

/// How far ahead each weight block is asked into L2: 2, 3, 4, 6 and 8 KiB
/// measured within noise of each other (as above). Into L1 (`T0`) the
/// 256-bit kernel gained at 4096 columns and lost at 11008, whose
/// activations then leave L1.
const AHEAD: usize = 4096;

/// A Q8_K block's `qt` with its 32-byte groups reordered 0, 2, 1, 3, 4, 6,
/// 5, 7: a Q4_K block's 64 bytes k (its 32-byte groups 2k and 2k + 1) hold
/// in their low nibbles the values that meet groups 4k and 4k + 2, in
/// their high nibbles those of 4k + 1 and 4k + 3, so each nibble plane
/// meets one contiguous 64 bytes.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Paired([i8; QK_K]);

fn paired(x: &[BlockQ8K]) -> Vec<Paired> {
    const ORDER: [usize; 8] = [0, 2, 1, 3, 4, 6, 5, 7];
    x.iter()
        .map(|b| {
            let mut p = Paired([0; QK_K]);
            for (to, from) in ORDER.iter().enumerate() {
                p.0[32 * to..32 * to + 32].copy_from_slice(&b.qt[32 * from..32 * from + 32]);
            }
            p
        })
        .collect()
}

/// `x86`'s `q4k_one_row` with each 128 bytes of nibbles in two vectors
/// instead of four: lanes 0-7 and 8-15 both hold sub-blocks 0-7 (each sum
/// exact in any order), folded into one 256-bit vector before the scales.
///
/// # Safety
/// AVX-512 F, BW, VL and VNNI, AVX2, FMA and F16C present; [`super::Kernel`]'s
/// contract for `out`.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) unsafe fn q4k_one_row(w: &[BlockQ4K], x: &[BlockQ8K], nb: usize, out: OutRows) {
    let x = &x[..nb];
    let xp = paired(x);
    let low = _mm512_set1_epi8(0x0f);
    for (r, row) in w.chunks_exact(nb).enumerate() {
        let mut acc = _mm_setzero_ps();
        for ((wb, xb), xp) in row.iter().zip(x).zip(&xp) {
            prefetch_l2::<_, AHEAD>(wb);
            let xv = |m: usize| _mm512_load_si512(xp.0.as_ptr().add(64 * m) as *const _);
            let (mut even, mut odd) = (_mm512_setzero_si512(), _mm512_setzero_si512());
            for k in 0..2 {
                let bits = _mm512_loadu_si512(wb.qs.as_ptr().add(64 * k) as *const _);
                even = _mm512_dpbusd_epi32(even, _mm512_and_si512(bits, low), xv(2 * k));
                let high = _mm512_and_si512(_mm512_srli_epi16(bits, 4), low);
                odd = _mm512_dpbusd_epi32(odd, high, xv(2 * k + 1));
            }
            let s = _mm512_add_epi32(even, odd);
            let s = _mm256_add_epi32(_mm512_castsi512_si256(s), _mm512_extracti64x4_epi64(s, 1));
            acc = q4k_fold_block(wb, xb, s, acc);
        }
        out.write(0, r, q4k_row_result(acc));
    }
}

/// One half (128 values) of a Q6_K block as two vectors of unsigned 6-bit
/// bytes: runs 0 and 1 (values 0..64), runs 2 and 3 (64..128). `qh`'s 32
/// bytes go to both 256-bit halves, and per-half shifts bring each run's
/// two bits to bits 4-5.
#[inline(always)]
unsafe fn q6k_half(w: &BlockQ6K, half: usize) -> [__m512i; 2] {
    let ql = _mm512_loadu_si512(w.ql.as_ptr().add(64 * half) as *const _);
    let qh = _mm512_broadcast_i64x4(_mm256_loadu_si256(
        w.qh.as_ptr().add(32 * half) as *const __m256i
    ));
    let (m4, m30) = (_mm512_set1_epi8(0x0f), _mm512_set1_epi8(0x30));
    let by = |lower: i16, upper: i16| {
        _mm512_inserti64x4::<1>(
            _mm512_castsi256_si512(_mm256_set1_epi16(lower)),
            _mm256_set1_epi16(upper),
        )
    };
    let high01 = _mm512_and_si512(_mm512_sllv_epi16(qh, by(4, 2)), m30);
    let high23 = _mm512_and_si512(_mm512_srlv_epi16(qh, by(0, 2)), m30);
    // (a & 0x0f) | b, with b already masked to bits 4-5.
    const LOW_OR: i32 = 0xec;
    [
        _mm512_ternarylogic_epi32::<LOW_OR>(ql, high01, m4),
        _mm512_ternarylogic_epi32::<LOW_OR>(_mm512_srli_epi16(ql, 4), high23, m4),
    ]
}

/// `x86`'s Q6_K kernel (ggml's `vec_dot` lanes and float steps) at batch 1.
/// Lane l of a run's `vpdpbusd` is the sum of its bytes 4l..4l + 4 (at most
/// 4 x 63 x 127 in magnitude, so its low i16 is the sum), which `vpdpwssd`
/// then multiplies by the lane's sub-block scale; lanes 0-7 and 8-15 (two
/// runs) fold into ggml's eight.
///
/// # Safety
/// As [`q4k_one_row`].
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) unsafe fn q6k_one_row(w: &[BlockQ6K], x: &[BlockQ8K], nb: usize, out: OutRows) {
    // Vector (half h, pair p) lane L takes scale 8h + 4p + L / 4.
    let quarter = _mm512_srli_epi32::<2>(_mm512_setr_epi32(
        0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15,
    ));
    let picks = [0, 4, 8, 12].map(|first| _mm512_add_epi32(quarter, _mm512_set1_epi32(first)));
    for (r, row) in w.chunks_exact(nb).enumerate() {
        let mut acc = _mm256_setzero_ps();
        for (wb, xb) in row.iter().zip(x) {
            prefetch_l2::<_, AHEAD>(wb);
            let prep = PrepQ6K::of(wb);
            // Zero high halves: a negative lane of `fours` has all ones
            // there, which must meet zero.
            let scales32 = _mm512_cvtepu16_epi32(prep.scales16);
            let mut sumi = _mm512_setzero_si512();
            for half in 0..2 {
                let q = q6k_half(wb, half);
                for (p, q) in q.into_iter().enumerate() {
                    let xv = _mm512_load_si512(xb.qs.as_ptr().add(128 * half + 64 * p) as *const _);
                    let fours = _mm512_dpbusd_epi32(_mm512_setzero_si512(), q, xv);
                    let sc = _mm512_permutexvar_epi32(picks[2 * half + p], scales32);
                    sumi = _mm512_dpwssd_epi32(sumi, fours, sc);
                }
            }
            let sumi = _mm256_add_epi32(
                _mm512_castsi512_si256(sumi),
                _mm512_extracti64x4_epi64(sumi, 1),
            );
            prep.fold(xb, sumi, &mut acc);
        }
        out.write(0, r, hsum(acc));
    }
}

//! Element-wise and row-wise operations of the Llama block: RMSNorm, rotary
//! embeddings, SwiGLU. Numerics follow ggml's CPU code.

/// `out = x / rms(x) * weight`, row by row (rows of `weight.len()`).
pub fn rms_norm(x: &[f32], weight: &[f32], eps: f32, out: &mut [f32]) {
    let n = weight.len();
    // Eight rows' sums at a time: each is a chain of dependent f64 adds,
    // so interleaving rows is what keeps the adder busy.
    let mut eights = x.chunks_exact(8 * n);
    let mut outs = out.chunks_exact_mut(8 * n);
    for (rows, o) in (&mut eights).zip(&mut outs) {
        scale_rows(rows, &square_sums::<8>(rows, n), weight, eps, o);
    }
    let rest = eights.remainder().chunks_exact(n);
    for (row, o) in rest.zip(outs.into_remainder().chunks_exact_mut(n)) {
        scale_rows(row, &square_sums::<1>(row, n), weight, eps, o);
    }
}

/// `out = x / rms(x) * weight` for rows whose `Σ v²` are `sums`.
#[inline(always)]
fn scale_rows(x: &[f32], sums: &[f64], weight: &[f32], eps: f32, out: &mut [f32]) {
    let n = weight.len();
    for ((row, o), sum) in x.chunks_exact(n).zip(out.chunks_exact_mut(n)).zip(sums) {
        let scale = 1.0 / ((sum / n as f64) as f32 + eps).sqrt();
        for ((o, v), w) in o.iter_mut().zip(row).zip(weight) {
            *o = v * scale * w;
        }
    }
}

/// Σ v² of each of the `R` rows (`n` values each) in `x`, as ggml sums
/// them: squares in f32, added in order in f64. The normed values are
/// quantized next, so even last-bit differences flip roundings.
#[inline(always)]
fn square_sums<const R: usize>(x: &[f32], n: usize) -> [f64; R] {
    let rows: [&[f32]; R] = std::array::from_fn(|k| &x[k * n..(k + 1) * n]);
    let mut sums = [0f64; R];
    for i in 0..n {
        for (s, row) in sums.iter_mut().zip(&rows) {
            let v = row[i];
            *s += (v * v) as f64;
        }
    }
    sums
}

/// Rotary embedding angles for one model: `theta_i = pos * scale * base^(-2i/d) / factor_i`.
#[derive(Debug, Clone)]
pub struct Rope {
    rope_dim: usize,
    theta_scale: f32,
    position_scale: f32,
    freq_factors: Option<Vec<f32>>,
}

impl Rope {
    /// `rope_dim` leading dimensions of each head rotate; `position_scale`
    /// is 1/factor under linear scaling; `freq_factors` is the optional
    /// `rope_freqs.weight` tensor (one divisor per pair).
    pub fn new(
        rope_dim: usize,
        base: f32,
        position_scale: f32,
        freq_factors: Option<Vec<f32>>,
    ) -> Self {
        Self {
            rope_dim,
            theta_scale: base.powf(-2.0 / rope_dim as f32),
            position_scale,
            freq_factors,
        }
    }

    /// Fills `cos`/`sin` (`rope_dim / 2` each) for position `pos`.
    pub fn angles(&self, pos: usize, cos: &mut [f32], sin: &mut [f32]) {
        // Repeated multiplication, as ggml's rope cache does, keeps our angles
        // bit-close to llama.cpp's.
        let mut theta = pos as f32;
        for i in 0..self.rope_dim / 2 {
            let ff = self.freq_factors.as_ref().map_or(1.0, |f| f[i]);
            let t = self.position_scale * (theta / ff);
            cos[i] = t.cos();
            sin[i] = t.sin();
            theta *= self.theta_scale;
        }
    }

    /// Rotates adjacent pairs `(x[2i], x[2i+1])` of every head in `row`
    /// (llama.cpp's "normal" rope mode, used by the `llama` architecture).
    pub fn apply(&self, row: &mut [f32], head_dim: usize, cos: &[f32], sin: &[f32]) {
        #[cfg(target_arch = "x86_64")]
        if super::dot::best().fma {
            // SAFETY: the avx2 kernels are only chosen on CPUs with FMA.
            unsafe { rotate_fma(row, head_dim, self.rope_dim, cos, sin) };
            return;
        }
        rotate(row, head_dim, self.rope_dim, cos, sin);
    }

    /// Number of rotated dimensions per head.
    pub fn dim(&self) -> usize {
        self.rope_dim
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "fma")]
unsafe fn rotate_fma(row: &mut [f32], head_dim: usize, rope_dim: usize, cos: &[f32], sin: &[f32]) {
    rotate(row, head_dim, rope_dim, cos, sin);
}

#[inline(always)]
fn rotate(row: &mut [f32], head_dim: usize, rope_dim: usize, cos: &[f32], sin: &[f32]) {
    for head in row.chunks_exact_mut(head_dim) {
        for i in 0..rope_dim / 2 {
            let (x0, x1) = (head[2 * i], head[2 * i + 1]);
            // GCC contracts ggml's `x0*cos - x1*sin` and `x0*sin + x1*cos`
            // into one FMA each, with the second product rounded first;
            // checked bit for bit against llama.cpp's rope output.
            head[2 * i] = x0.mul_add(cos[i], -(x1 * sin[i]));
            head[2 * i + 1] = x0.mul_add(sin[i], x1 * cos[i]);
        }
    }
}

/// `gate = silu(gate) * up`, the SwiGLU of Llama's feed-forward block,
/// with ggml's vectorised `expf` on whole W-lane chunks and libm's on the
/// tail, as `ggml_vec_swiglu_f32` does (W and the `expf` as llama.cpp is
/// built for this CPU: `ggml_numerics::lanes_here`).
pub fn swiglu(gate: &mut [f32], up: &[f32]) {
    use super::ggml_numerics::{lanes_here, LANES};
    let wide = lanes_here() == LANES;
    #[cfg(target_arch = "x86_64")]
    if super::dot::best().fma {
        // SAFETY: the avx2 kernels are only chosen on CPUs with FMA.
        unsafe {
            if wide {
                swiglu_fma::<LANES>(gate, up)
            } else {
                swiglu_fma::<8>(gate, up)
            }
        };
        return;
    }
    if wide {
        swiglu_body::<LANES>(gate, up)
    } else {
        swiglu_body::<8>(gate, up)
    }
}

/// [`swiglu_body`] with `expf` 8 lanes at a time (the same bits).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn swiglu_fma<const W: usize>(gate: &mut [f32], up: &[f32]) {
    use super::ggml_numerics::fma::expf8_of;
    use std::arch::x86_64::*;
    let whole = gate.len() - gate.len() % W;
    let (g8, u8) = (gate.as_mut_ptr(), up.as_ptr());
    for i in (0..whole).step_by(8) {
        let g = _mm256_loadu_ps(g8.add(i));
        let e = expf8_of::<W>(_mm256_sub_ps(_mm256_setzero_ps(), g));
        let s = _mm256_div_ps(g, _mm256_add_ps(_mm256_set1_ps(1.0), e));
        _mm256_storeu_ps(g8.add(i), _mm256_mul_ps(s, _mm256_loadu_ps(u8.add(i))));
    }
    swiglu_tail(&mut gate[whole..], &up[whole..]);
}

#[inline(always)]
fn swiglu_body<const W: usize>(gate: &mut [f32], up: &[f32]) {
    use super::ggml_numerics::expf_of;
    // Rows are `ffn` wide; ggml's vector loop runs per row.
    let whole = gate.len() - gate.len() % W;
    for (g, u) in gate[..whole].iter_mut().zip(up) {
        *g = *g / (1.0 + expf_of::<W>(0.0 - *g)) * u;
    }
    swiglu_tail(&mut gate[whole..], &up[whole..]);
}

/// The tail after ggml's W-lane chunks, with libm's `exp`.
#[inline(always)]
fn swiglu_tail(gate: &mut [f32], up: &[f32]) {
    for (g, u) in gate.iter_mut().zip(up) {
        *g = *g / (1.0 + (-*g).exp()) * u;
    }
}

/// `x += y`.
pub fn add_assign(x: &mut [f32], y: &[f32]) {
    for (a, b) in x.iter_mut().zip(y) {
        *a += b;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rms_norm_gives_unit_rms() {
        let x = [3.0, -4.0, 0.0, 5.0];
        let mut out = [0.0; 4];
        rms_norm(&x, &[1.0; 4], 0.0, &mut out);
        let rms = (out.iter().map(|v| v * v).sum::<f32>() / 4.0).sqrt();
        assert!((rms - 1.0).abs() < 1e-5, "rms {rms}");
    }

    #[test]
    fn rms_norm_of_a_batch_equals_each_row_alone() {
        let n = 40;
        let weight: Vec<f32> = (0..n).map(|i| 0.5 + i as f32 * 0.01).collect();
        for rows in [1, 7, 8, 9, 19] {
            let x: Vec<f32> = (0..rows * n)
                .map(|i| ((i * 7919 % 1013) as f32 - 506.0) * 1.37e-2)
                .collect();
            let mut batch = vec![0.0; rows * n];
            rms_norm(&x, &weight, 1e-5, &mut batch);
            for r in 0..rows {
                let row = &x[r * n..(r + 1) * n];
                let sum: f64 = row.iter().map(|v| (v * v) as f64).sum();
                let scale = 1.0 / ((sum / n as f64) as f32 + 1e-5).sqrt();
                for (i, (got, v)) in batch[r * n..(r + 1) * n].iter().zip(row).enumerate() {
                    assert_eq!(
                        got.to_bits(),
                        (v * scale * weight[i]).to_bits(),
                        "row {r} value {i}"
                    );
                }
            }
        }
    }

    #[test]
    fn vector_swiglu_equals_the_scalar_one_bit_for_bit() {
        let gate: Vec<f32> = (0..1000)
            .map(|i| match i % 5 {
                0 => (i as f32 - 500.0) * 0.2,
                1 => 0.0,
                2 => -1e-30 * i as f32,
                3 => (i as f32) * 1e3,
                _ => -(i as f32) * 0.7,
            })
            .collect();
        let up: Vec<f32> = (0..1000).map(|i| 1.0 - i as f32 * 0.003).collect();
        let mut want = gate.clone();
        if crate::cpu::ggml_numerics::lanes_here() == 8 {
            swiglu_body::<8>(&mut want, &up);
        } else {
            swiglu_body::<16>(&mut want, &up);
        }
        let mut got = gate.clone();
        swiglu(&mut got, &up);
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert_eq!(g.to_bits(), w.to_bits(), "value {i}: {} of {}", g, gate[i]);
        }
        // Both widths' vector forms against their scalar models.
        #[cfg(target_arch = "x86_64")]
        if crate::cpu::dot::best().fma {
            for wide in [false, true] {
                let (mut a, mut b) = (gate.clone(), gate.clone());
                // SAFETY: the CPU has AVX2 and FMA.
                unsafe {
                    if wide {
                        swiglu_fma::<16>(&mut a, &up);
                        swiglu_body::<16>(&mut b, &up);
                    } else {
                        swiglu_fma::<8>(&mut a, &up);
                        swiglu_body::<8>(&mut b, &up);
                    }
                }
                for (i, (g, w)) in a.iter().zip(&b).enumerate() {
                    assert_eq!(g.to_bits(), w.to_bits(), "wide {wide} value {i}");
                }
            }
        }
    }

    #[test]
    fn rope_at_zero_is_identity_and_preserves_norm() {
        let rope = Rope::new(8, 10000.0, 1.0, None);
        let (mut c, mut s) = ([0.0; 4], [0.0; 4]);
        let orig: Vec<f32> = (0..16).map(|i| i as f32 * 0.3 - 2.0).collect();
        let mut x = orig.clone();
        rope.angles(0, &mut c, &mut s);
        rope.apply(&mut x, 8, &c, &s);
        assert_eq!(x, orig);
        rope.angles(17, &mut c, &mut s);
        rope.apply(&mut x, 8, &c, &s);
        let n = |v: &[f32]| v.iter().map(|a| a * a).sum::<f32>();
        assert!((n(&x) - n(&orig)).abs() < 1e-3);
        assert_ne!(x, orig);
    }
}

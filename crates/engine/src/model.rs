//! The Llama forward pass over a packed batch: several sequences, each with
//! its own new tokens (a long prefill or a single decode token) and its own
//! KV cache, go through every layer together so each weight is read once
//! per step for the whole batch.

use std::sync::Mutex;

use candle_core::quantized::GgmlDType;
use rayon::prelude::*;

use crate::config::{LlamaConfig, RopeScaling};
use crate::cpu::attention::{
    attend_group, attend_rows, AttentionShape, GroupInput, Order, RowsInput, RowsScratch, Scratch,
};
use crate::cpu::ops::{add_assign, rms_norm, swiglu, Rope};
use crate::cpu::{team, Matrix, Role};
use crate::error::{EngineError, Result};
use crate::gguf::GgufFile;
use crate::kv_cache::{KvCache, KvShape};

/// One transformer block's weights.
#[derive(Debug)]
struct Layer {
    attn_norm: Vec<f32>,
    wq: Matrix,
    wk: Matrix,
    wv: Matrix,
    wo: Matrix,
    ffn_norm: Vec<f32>,
    w_gate: Matrix,
    w_up: Matrix,
    w_down: Matrix,
}

/// A loaded Llama model.
#[derive(Debug)]
pub struct Llama {
    config: LlamaConfig,
    embed: Matrix,
    layers: Vec<Layer>,
    output_norm: Vec<f32>,
    /// `None` when the output projection is tied to the embeddings.
    output: Option<Matrix>,
    rope: Rope,
}

/// One sequence's part of a batch: the tokens to append and its cache.
pub struct SeqStep<'a> {
    pub tokens: &'a [u32],
    pub cache: &'a mut KvCache,
    /// Attend in llama.cpp's prefill order even when `tokens` is a single
    /// token: set when these tokens end a prompt of two or more tokens whose
    /// start came from a cached prefix, so the logits are exactly those of
    /// a full prefill. Steps of two or more tokens use prefill order anyway.
    pub prefill_order: bool,
    /// Return logits after every token of this step, not only the last
    /// (the prompt's log-probabilities: TGI's `decoder_input_details`,
    /// OpenAI's `echo` with `logprobs`).
    pub all_logits: bool,
}

impl<'a> SeqStep<'a> {
    /// A step whose attention order follows from its own length.
    pub fn new(tokens: &'a [u32], cache: &'a mut KvCache) -> Self {
        Self {
            tokens,
            cache,
            prefill_order: false,
            all_logits: false,
        }
    }
}

/// How many logits rows [`Llama::forward`] returns for each step.
pub fn logit_rows<'s>(steps: &'s [SeqStep<'_>]) -> impl Iterator<Item = usize> + 's {
    steps
        .iter()
        .map(|s| if s.all_logits { s.tokens.len() } else { 1 })
}

/// Tensor `name` as a `[rows, cols]` matrix for `role` (an error naming
/// the tensor when its shape differs).
fn matrix(file: &GgufFile, name: &str, rows: usize, cols: usize, role: Role) -> Result<Matrix> {
    let m = file.load_tensor(name, |v| Matrix::from_view(&v, role))?;
    if (m.rows(), m.cols()) != (rows, cols) {
        return Err(EngineError::tensor(
            name,
            format!(
                "shape is [{}, {}], the metadata implies [{rows}, {cols}]",
                m.rows(),
                m.cols()
            ),
        ));
    }
    Ok(m)
}

fn vector(file: &GgufFile, name: &str, len: usize) -> Result<Vec<f32>> {
    let m = matrix(file, name, 1, len, Role::Layer)?;
    let mut v = vec![0f32; len];
    m.row(0, &mut v)?;
    Ok(v)
}

/// How to load a model.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LoadOptions {
    /// Store the layers' weight matrices as this type instead of the file's.
    /// The token embedding and output projection change only when the
    /// target is F16 or F32: like llama.cpp's quantizer we never make them
    /// coarser, since they dominate the output quality of small models.
    pub quantize: Option<GgmlDType>,
}

impl Llama {
    /// Loads weights and configuration from a GGUF file as stored.
    pub fn load(file: &GgufFile) -> Result<Self> {
        Self::load_with(file, &LoadOptions::default())
    }

    /// Loads a GGUF file, converting weights as `options` say.
    pub fn load_with(file: &GgufFile, options: &LoadOptions) -> Result<Self> {
        let c = LlamaConfig::from_gguf(file)?;
        let (h, q, kv, f) = (c.hidden, c.q_dim(), c.kv_dim(), c.ffn);
        let linear = |name: &str, rows, cols| {
            let m = matrix(file, name, rows, cols, Role::Layer)?;
            match options.quantize {
                Some(t) => m.requantize(name, t),
                None => Ok(m),
            }
        };
        let widen = |name: &str, rows, cols| {
            let m = matrix(file, name, rows, cols, Role::Layer)?;
            match options.quantize {
                Some(t @ (GgmlDType::F16 | GgmlDType::F32)) => m.requantize(name, t),
                _ => Ok(m),
            }
        };
        let output_projection = |name: &str| match options.quantize {
            Some(GgmlDType::F16 | GgmlDType::F32) => widen(name, c.vocab_size, h),
            _ => matrix(file, name, c.vocab_size, h, Role::OutputProjection),
        };
        let layers = (0..c.n_layer)
            .map(|i| {
                let n = |t: &str| format!("blk.{i}.{t}.weight");
                Ok(Layer {
                    attn_norm: vector(file, &n("attn_norm"), h)?,
                    wq: linear(&n("attn_q"), q, h)?,
                    wk: linear(&n("attn_k"), kv, h)?,
                    wv: linear(&n("attn_v"), kv, h)?,
                    wo: linear(&n("attn_output"), h, q)?,
                    ffn_norm: vector(file, &n("ffn_norm"), h)?,
                    w_gate: linear(&n("ffn_gate"), f, h)?,
                    w_up: linear(&n("ffn_up"), f, h)?,
                    w_down: linear(&n("ffn_down"), h, f)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let output = if file.has_tensor("output.weight") {
            Some(output_projection("output.weight")?)
        } else {
            None
        };
        let freq_factors = if file.has_tensor("rope_freqs.weight") {
            Some(vector(file, "rope_freqs.weight", c.rope_dim / 2)?)
        } else {
            None
        };
        let position_scale = match c.rope_scaling {
            RopeScaling::None => 1.0,
            RopeScaling::Linear { factor } => 1.0 / factor,
        };
        Ok(Self {
            // Tied: the embeddings are the output projection too.
            embed: match output {
                Some(_) => widen("token_embd.weight", c.vocab_size, h)?,
                None => output_projection("token_embd.weight")?,
            },
            output_norm: vector(file, "output_norm.weight", h)?,
            rope: Rope::new(c.rope_dim, c.rope_base, position_scale, freq_factors),
            layers,
            output,
            config: c,
        })
    }

    /// The model's hyper-parameters.
    pub fn config(&self) -> &LlamaConfig {
        &self.config
    }

    /// The storage type of the layers' weights (e.g. `Q4_1`).
    pub fn weight_type(&self) -> GgmlDType {
        self.layers
            .first()
            .map_or(self.embed.dtype(), |l| l.wq.dtype())
    }

    /// An empty KV cache for one sequence, its pages from the heap.
    pub fn new_cache(&self) -> KvCache {
        KvCache::new(self.config.n_layer, self.config.kv_dim())
    }

    /// What the KV cache holds per position (for sizing a [`KvPool`]).
    ///
    /// [`KvPool`]: crate::kv_cache::KvPool
    pub fn kv_shape(&self) -> KvShape {
        KvShape {
            n_layer: self.config.n_layer,
            kv_dim: self.config.kv_dim(),
        }
    }

    /// Runs one step for a batch of sequences; appends their tokens to their
    /// caches and returns the logits after each sequence's last new token,
    /// `[steps.len(), vocab]`, or after each of its tokens for a step with
    /// `all_logits` (that step's rows in token order, in place of its one
    /// row; see [`logit_rows`]). On error no cache changes.
    pub fn forward(&self, steps: &mut [SeqStep<'_>]) -> Result<Vec<f32>> {
        team::step(|| self.forward_on_team(steps))
    }

    /// [`Self::forward`] with the pool's threads held for it.
    fn forward_on_team(&self, steps: &mut [SeqStep<'_>]) -> Result<Vec<f32>> {
        let c = &self.config;
        for s in steps.iter() {
            if s.tokens.is_empty() {
                return Err(EngineError::InvalidRequest(
                    "a sequence in the batch has no tokens".into(),
                ));
            }
            if let Some(bad) = s.tokens.iter().find(|&&t| t as usize >= c.vocab_size) {
                return Err(EngineError::InvalidRequest(format!(
                    "token id {bad} is outside the vocabulary of {} tokens",
                    c.vocab_size
                )));
            }
            let needed = s.cache.len() + s.tokens.len();
            if needed > c.context_length {
                return Err(EngineError::ContextFull {
                    needed,
                    limit: c.context_length,
                });
            }
        }
        // Pages first, so that a cache out of reserved room fails the step
        // before any sequence's cache changes.
        for s in steps.iter_mut() {
            s.cache.make_room(s.cache.len() + s.tokens.len())?;
        }
        let (h, qd, kvd, hd) = (c.hidden, c.q_dim(), c.kv_dim(), c.head_dim);
        // Which sequence and absolute position each packed row belongs to.
        let mut row_seq = Vec::new();
        let mut row_pos = Vec::new();
        for (i, s) in steps.iter().enumerate() {
            let start = s.cache.len();
            row_seq.extend(std::iter::repeat_n(i, s.tokens.len()));
            row_pos.extend(start..start + s.tokens.len());
        }
        let t = row_seq.len();

        let mut x = vec![0f32; t * h];
        for (row, tok) in x
            .chunks_exact_mut(h)
            .zip(steps.iter().flat_map(|s| s.tokens))
        {
            self.embed.row(*tok as usize, row)?;
        }
        let half = self.rope.dim() / 2;
        let mut cos = vec![0f32; t * half];
        let mut sin = vec![0f32; t * half];
        for (r, &p) in row_pos.iter().enumerate() {
            self.rope.angles(
                p,
                &mut cos[r * half..(r + 1) * half],
                &mut sin[r * half..(r + 1) * half],
            );
        }

        let mut xn = vec![0f32; t * h];
        let mut q = vec![0f32; t * qd];
        let mut k = vec![0f32; t * kvd];
        let mut v = vec![0f32; t * kvd];
        let mut attn = vec![0f32; t * qd];
        let mut o = vec![0f32; t * h];
        let mut gate = vec![0f32; t * c.ffn];
        let mut up = vec![0f32; t * c.ffn];
        let shape = AttentionShape {
            n_head: c.n_head,
            n_kv_head: c.n_kv_head,
            head_dim: hd,
        };
        let group = c.n_head / c.n_kv_head;
        let pieces = attention_pieces(steps, c.n_kv_head);

        let angles: Vec<(&[f32], &[f32])> =
            cos.chunks_exact(half).zip(sin.chunks_exact(half)).collect();
        let result = (|| -> Result<()> {
            for (li, layer) in self.layers.iter().enumerate() {
                rows_apart(&mut xn, h, &x, h, |o, x| {
                    rms_norm(x, &layer.attn_norm, c.rms_eps, o)
                });
                Matrix::matmul_each(
                    &mut [
                        (&layer.wq, &mut q),
                        (&layer.wk, &mut k),
                        (&layer.wv, &mut v),
                    ],
                    &xn,
                    t,
                )?;
                rows_apart(&mut q, qd, &angles, 1, |q, a| {
                    for (q, (cs, sn)) in q.chunks_exact_mut(qd).zip(a) {
                        self.rope.apply(q, hd, cs, sn);
                    }
                });
                rows_apart(&mut k, kvd, &angles, 1, |k, a| {
                    for (k, (cs, sn)) in k.chunks_exact_mut(kvd).zip(a) {
                        self.rope.apply(k, hd, cs, sn);
                    }
                });
                let mut first = 0;
                for s in steps.iter_mut() {
                    let n = s.tokens.len();
                    s.cache.append(
                        li,
                        &k[first * kvd..(first + n) * kvd],
                        &v[first * kvd..(first + n) * kvd],
                    );
                    first += n;
                }
                let caches: Vec<&KvCache> = steps.iter().map(|s| &*s.cache).collect();
                let mut outs = Vec::with_capacity(pieces.len());
                let mut rest = &mut attn[..];
                for piece in &pieces {
                    let (out, tail) = rest.split_at_mut(piece.len(qd, group * hd));
                    // A lock per piece (each taken once, uncontended) so that
                    // tasks can reach their piece by index.
                    outs.push(Mutex::new(out));
                    rest = tail;
                }
                team::for_each_task(pieces.len(), |i| {
                    let (piece, out) = (
                        &pieces[i],
                        &mut *outs[i].lock().unwrap_or_else(|e| e.into_inner()),
                    );
                    ATTENTION_SCRATCH.with_borrow_mut(|(scratch, rows_scratch)| match *piece {
                        AttentionPiece::Rows { first, n } => {
                            let (keys, values) = caches[row_seq[first]].layer(li);
                            let input = RowsInput {
                                q: &q[first * qd..(first + n) * qd],
                                keys,
                                values,
                                first_n_pos: row_pos[first] + 1,
                            };
                            attend_rows(shape, &input, rows_scratch, out);
                        }
                        AttentionPiece::Group { row, kv_head } => {
                            let (keys, values) = caches[row_seq[row]].layer(li);
                            let heads = row * qd + kv_head * group * hd;
                            let input = GroupInput {
                                q: &q[heads..heads + group * hd],
                                keys,
                                values,
                                kv_head,
                                n_pos: row_pos[row] + 1,
                                order: Order::Decode,
                            };
                            attend_group(shape, &input, scratch, out);
                        }
                    })
                });
                layer.wo.matmul(&attn, t, &mut o)?;
                rows_apart(&mut x, h, &o, h, add_assign);

                rows_apart(&mut xn, h, &x, h, |o, x| {
                    rms_norm(x, &layer.ffn_norm, c.rms_eps, o)
                });
                Matrix::matmul_each(
                    &mut [(&layer.w_gate, &mut gate), (&layer.w_up, &mut up)],
                    &xn,
                    t,
                )?;
                gate.par_chunks_mut(c.ffn)
                    .zip(up.par_chunks(c.ffn))
                    .for_each(|(g, u)| swiglu(g, u));
                layer.w_down.matmul(&gate, t, &mut o)?;
                rows_apart(&mut x, h, &o, h, add_assign);
            }
            Ok(())
        })();
        // Positions written past a cache's length are not part of it until
        // committed: a failed step leaves every cache as it was.
        result?;
        for s in steps.iter_mut() {
            s.cache.commit(s.tokens.len());
        }

        // Only each sequence's last row needs logits, unless it asked for all.
        let n: usize = logit_rows(steps).sum();
        let mut last = Vec::with_capacity(n * h);
        let mut end = 0;
        for s in steps.iter() {
            let start = end;
            end += s.tokens.len();
            let from = if s.all_logits { start } else { end - 1 };
            last.extend_from_slice(&x[from * h..end * h]);
        }
        let mut normed = vec![0f32; n * h];
        rms_norm(&last, &self.output_norm, c.rms_eps, &mut normed);
        let mut logits = vec![0f32; n * c.vocab_size];
        self.output
            .as_ref()
            .unwrap_or(&self.embed)
            .matmul(&normed, n, &mut logits)?;
        Ok(logits)
    }
}

thread_local! {
    /// Each worker's attention buffers, kept across layers and steps
    /// (they only grow; a fresh set per parallel split zeroed its scores
    /// again).
    static ATTENTION_SCRATCH: std::cell::RefCell<(Scratch, RowsScratch)> =
        std::cell::RefCell::new((Scratch::default(), RowsScratch::default()));
}

/// Work of one step's attention that runs in parallel with the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AttentionPiece {
    /// `n` consecutive rows of one sequence in the prefill order, every KV
    /// head: the rows share the cache's f16 conversions.
    Rows { first: usize, n: usize },
    /// One decode-order row's query heads of one KV head.
    Group { row: usize, kv_head: usize },
}

impl AttentionPiece {
    /// Its output values: `q_dim` per row, `group_dim` per KV head's group.
    fn len(&self, q_dim: usize, group_dim: usize) -> usize {
        match self {
            Self::Rows { n, .. } => n * q_dim,
            Self::Group { .. } => group_dim,
        }
    }
}

/// The step's attention pieces in row order (their outputs tile the
/// packed rows' output in that order). A prefill-order sequence's rows go
/// in blocks of up to 16, small enough that every worker gets several
/// (the last rows of a causal prefill see the most positions); a
/// decode-order row splits by KV head, so that even one sequence's decode
/// step uses every worker.
fn attention_pieces(steps: &[SeqStep<'_>], n_kv_head: usize) -> Vec<AttentionPiece> {
    let workers = rayon::current_num_threads();
    let mut pieces = Vec::new();
    let mut first = 0;
    for s in steps {
        let n = s.tokens.len();
        if s.prefill_order || n > 1 {
            let block = (n / (4 * workers)).clamp(1, 16);
            for start in (first..first + n).step_by(block) {
                let rows = block.min(first + n - start);
                pieces.push(AttentionPiece::Rows {
                    first: start,
                    n: rows,
                });
            }
        } else {
            pieces.extend((0..n_kv_head).map(|kv_head| AttentionPiece::Group {
                row: first,
                kv_head,
            }));
        }
        first += n;
    }
    pieces
}

/// `f(rows of out, the same rows of x)` over a batch's rows (`out_row` and
/// `x_row` values per row), in parallel blocks of rows once the batch is
/// a prefill's size: row by row these passes were serial steps between
/// the parallel matmuls.
fn rows_apart<A: Sync, B: Send>(
    out: &mut [B],
    out_row: usize,
    x: &[A],
    x_row: usize,
    f: impl Fn(&mut [B], &[A]) + Sync,
) {
    const BLOCK: usize = 16;
    let rows = out.len() / out_row;
    if rows < 2 * BLOCK {
        f(out, x);
        return;
    }
    out.par_chunks_mut(BLOCK * out_row)
        .zip(x.par_chunks(BLOCK * x_row))
        .for_each(|(o, x)| f(o, x));
}

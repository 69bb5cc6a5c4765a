//! The model thread: continuous batching. Between two forward passes it
//! drops sequences whose client left, lets waiting requests join (their
//! prefill runs in the same pass as the others' decode), then runs one
//! packed forward pass and streams each sequence's new token.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use rayon::prelude::*;
use servebench_engine::cpu::ggml_numerics::log_sum_exp;
use servebench_engine::kv_cache::{KvCache, KvPool};
use servebench_engine::model::logit_rows;
use servebench_engine::sampling::top_logprobs;
use servebench_engine::{Engine, EngineError, FinishReason, SeqStep, Sequence};
use tokio::sync::mpsc;

use super::prefix_cache::PrefixCache;
use super::queue::{BatchLimits, Budgeted, Queue};
use super::{Ended, Entry, GeneratedToken, StreamEvent};
use crate::metrics;

impl Budgeted for Entry {
    fn prompt_tokens(&self) -> usize {
        self.request.prompt_ids.len()
    }
    fn total_tokens(&self) -> usize {
        self.request.token_budget()
    }
}

/// A sequence in the running batch.
struct Running {
    seq: Sequence,
    entry: Entry,
    joined_at: Instant,
    generated: usize,
}

/// Marks the server unhealthy when the thread ends, even by a panic.
struct AliveGuard<'a>(&'a AtomicBool);

impl Drop for AliveGuard<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Relaxed);
    }
}

/// Runs until the channel closes and no work is left.
pub(super) fn run(
    engine: &Engine,
    limits: BatchLimits,
    pool: &Arc<KvPool>,
    mut prefixes: PrefixCache,
    mut rx: mpsc::UnboundedReceiver<Entry>,
    alive: &AtomicBool,
) {
    let _guard = AliveGuard(alive);
    let mut queue: Queue<Entry> = Queue::new(limits);
    let mut running: Vec<Running> = Vec::new();
    let mut open = true;
    loop {
        if running.is_empty() && queue.is_empty() {
            if !open {
                return;
            }
            match rx.blocking_recv() {
                Some(e) => queue.push(e),
                None => open = false,
            }
        }
        while open {
            match rx.try_recv() {
                Ok(e) => queue.push(e),
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => open = false,
            }
        }
        let left = queue.remove_where(|e| e.events.is_closed());
        let before = running.len();
        running.retain(|r| !r.entry.events.is_closed());
        if left + before - running.len() > 0 {
            metrics::dropped(left + before - running.len());
            metrics::batch_state(queue.len(), running.len());
        }

        let joining = queue.next_batch(running.len(), |e| {
            reserve(pool, &mut prefixes, e.total_tokens())
        });
        if joining.is_empty() && running.is_empty() {
            // Nothing runs, nothing is kept, and the head of the line still
            // does not fit: it never will (validation keeps requests within
            // the budget, so this is a guard against spinning, not a path).
            if let Some(entry) = queue.pop_front() {
                fail(
                    &entry,
                    &EngineError::KvReservation {
                        needed: entry.total_tokens(),
                        reserved: pool.usage().capacity_tokens,
                    },
                );
                continue;
            }
        }
        let prefill = !joining.is_empty();
        let now = Instant::now();
        for (entry, cache) in joining {
            let req = &entry.request;
            let prompt = req.prompt_ids.clone();
            match Sequence::with_cache(&engine.model, prompt, req.params.clone(), cache) {
                Ok(mut seq) => {
                    // The prompt's log-probabilities need the whole prompt run.
                    let reuse = !seq.wants_prompt_logprobs();
                    if let Some((tokens, cache)) = prefixes.take(&req.prompt_ids).filter(|_| reuse)
                    {
                        // Within the reservation by construction (the shared
                        // part is shorter than the prompt); on an error the
                        // sequence simply prefills its whole prompt.
                        let _ = seq.reuse_prefix(&tokens, cache);
                    }
                    running.push(Running {
                        seq,
                        entry,
                        joined_at: now,
                        generated: 0,
                    })
                }
                Err(e) => fail(&entry, &e),
            }
        }
        metrics::batch_state(queue.len(), running.len());
        metrics::kv_cache(&pool.usage(), batch_tokens(&running));
        if running.is_empty() {
            continue;
        }
        // The step runs on a compute-pool thread, so its serial parts and
        // its parallel loops share threads instead of handing off to and
        // from this one at every layer.
        if let Err(e) = rayon::scope(|_| step(engine, &mut running, &mut prefixes)) {
            for r in running.drain(..) {
                fail(&r.entry, &e);
            }
        }
        metrics::forward(prefill, now.elapsed());
        metrics::batch_state(queue.len(), running.len());
        metrics::kv_cache(&pool.usage(), batch_tokens(&running));
    }
}

/// Room in the pool for `tokens` positions. Kept prefixes give their pages
/// back, oldest first, while they are what stands in the way: a new
/// request comes before a cache that may never be asked for again.
fn reserve(pool: &Arc<KvPool>, prefixes: &mut PrefixCache, tokens: usize) -> Option<KvCache> {
    loop {
        if let Some(cache) = pool.reserve(tokens) {
            return Some(cache);
        }
        if !prefixes.evict_oldest() {
            return None;
        }
    }
}

/// Tokens the running batch may grow to (TGI's `batch_current_max_tokens`).
fn batch_tokens(running: &[Running]) -> usize {
    running.iter().map(|r| r.seq.cache.reserved_tokens()).sum()
}

fn fail(entry: &Entry, e: &EngineError) {
    metrics::failure("generation");
    let _ = entry.events.send(StreamEvent::Error(e.to_string()));
}

/// One forward pass over the whole batch, then one token per sequence.
fn step(
    engine: &Engine,
    running: &mut Vec<Running>,
    prefixes: &mut PrefixCache,
) -> Result<(), EngineError> {
    let mut steps: Vec<SeqStep<'_>> = running.iter_mut().map(|r| r.seq.next_step()).collect();
    let mut logits = engine.model.forward(&mut steps)?;
    let vocab = engine.model.config().vocab_size;
    let mut rows: Vec<&mut [f32]> = Vec::with_capacity(steps.len());
    let mut rest = logits.as_mut_slice();
    for n in logit_rows(&steps) {
        let (mine, tail) = rest.split_at_mut(n * vocab);
        rows.push(mine);
        rest = tail;
    }
    drop(steps);
    let tok = &engine.tokenizer;
    // Each sequence picks its token (and, when it asked for logprobs, takes
    // the log-sum-exp of its vocabulary-long row: every TGI stream does) in
    // parallel; the events then go out in order.
    let tokens: Vec<GeneratedToken> = running
        .par_iter_mut()
        .zip(rows)
        .map(|(r, rows)| pick(tok, r, rows, vocab))
        .collect();
    let mut finished = Vec::new();
    for (i, (r, token)) in running.iter_mut().zip(tokens).enumerate() {
        r.generated += 1;
        let event = match r.seq.finish {
            Some(reason) => {
                let end = ended(r, reason);
                metrics::success(&r.entry.request, &end);
                finished.push(i);
                StreamEvent::Last(token, end)
            }
            None => StreamEvent::Token(token),
        };
        let last = matches!(event, StreamEvent::Last(..));
        if r.entry.events.send(event).is_err() && !last {
            metrics::dropped(1);
            finished.push(i);
        }
    }
    for i in finished.into_iter().rev() {
        let seq = running.swap_remove(i).seq;
        prefixes.put(seq.cached_tokens().to_vec(), seq.cache);
    }
    Ok(())
}

/// One sequence's token from its logits rows (one row, or one per prompt
/// token when it asked for the prompt's log-probabilities), with the
/// log-probabilities it asked for, taken before any penalty or bias as
/// TGI's and vLLM's are.
fn pick(
    tok: &servebench_engine::tokenizer::Tokenizer,
    r: &mut Running,
    rows: &mut [f32],
    vocab: usize,
) -> GeneratedToken {
    let req = &r.entry.request;
    let (prompt_rows, row) = rows.split_at_mut(rows.len() - vocab);
    // Row i predicts prompt token i + 1.
    let prompt_logprobs = prompt_rows
        .chunks(vocab)
        .zip(&req.prompt_ids[1..])
        .map(|(row, &next)| row[next as usize] - log_sum_exp(row))
        .collect();
    let lse = req.want_logprobs.then(|| log_sum_exp(row));
    let top = match lse {
        Some(lse) if req.top_logprobs > 0 => top_logprobs(row, lse, req.top_logprobs),
        _ => Vec::new(),
    };
    // Picking may change the row (penalties, bias, a grammar's mask): keep
    // the model's values when they are asked for and may change.
    let changes = req.constraint.is_some()
        || req.params.min_new_tokens > 0
        || req.params.sampling.adjusts_logits();
    let raw = lse.map(|lse| (changes.then(|| row.to_vec()), lse));
    if let Some(c) = r.entry.request.constraint.as_mut() {
        c.mask(row);
    }
    let (id, text) = r.seq.accept(tok, row);
    if let Some(c) = r.entry.request.constraint.as_mut() {
        c.commit(id);
    }
    GeneratedToken {
        id,
        text,
        logprob: raw.map(|(kept, lse)| kept.as_deref().unwrap_or(row)[id as usize] - lse),
        top,
        prompt_logprobs,
        special: tok.is_eog(id),
    }
}

fn ended(r: &Running, finish_reason: FinishReason) -> Ended {
    let sampling = r.entry.request.params.sampling.is_sampling();
    Ended {
        finish_reason,
        generated_tokens: r.generated,
        prompt_tokens: r.seq.prompt_ids.len(),
        seed: sampling.then(|| r.seq.seed()),
        queue: r.joined_at.saturating_duration_since(r.entry.queued_at),
        inference: r.joined_at.elapsed(),
    }
}

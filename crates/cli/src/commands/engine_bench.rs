//! `servebench engine-bench`: prefill and decode speed of the engine alone,
//! measured the way llama.cpp's `llama-bench` does (pp: one forward pass
//! over N prompt tokens; tg: N single-token steps; both from an empty
//! context, or from one of `--depth` tokens already cached, as
//! `llama-bench -d`).

use std::time::Instant;

use servebench_engine::{Llama, SeqStep};

use super::ModelArgs;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// Prompt tokens for the prefill test (pp).
    #[arg(short = 'p', long, default_value_t = 128)]
    prompt_tokens: usize,
    /// Generated tokens for the decode test (tg).
    #[arg(short = 'n', long, default_value_t = 128)]
    gen_tokens: usize,
    /// Sequences decoding together in the decode test; tokens/s counts
    /// all of them (like llama-batched-bench).
    #[arg(short = 'b', long, default_value_t = 1)]
    batch: usize,
    /// Tokens already in each sequence's cache before either test starts
    /// (untimed), as `llama-bench -d`: attention then reads that many
    /// more positions per step.
    #[arg(short = 'd', long, default_value_t = 0)]
    depth: usize,
    /// Repetitions; the median is reported.
    #[arg(short = 'r', long, default_value_t = 5)]
    repetitions: usize,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

pub fn run(a: Args) -> anyhow::Result<()> {
    anyhow::ensure!(a.repetitions > 0, "--repetitions must be at least 1");
    anyhow::ensure!(a.batch > 0, "--batch must be at least 1");
    let (path, engine) = a.model.load()?;
    let model = &engine.model;
    let vocab = model.config().vocab_size as u32;
    // Any valid ids do: speed does not depend on which tokens they are.
    let tokens: Vec<u32> = (0..(a.depth + a.prompt_tokens.max(a.gen_tokens)) as u32)
        .map(|i| (i * 7919 + 13) % vocab)
        .collect();
    // On a compute-pool thread, as the server's batcher runs its steps:
    // from outside the pool every parallel loop would hand off to the pool
    // and back.
    let (pp, tg) = rayon::scope(|_| measure(&a, model, &tokens))?;
    let threads = rayon::current_num_threads();
    let (pp_med, tg_med) = (median(pp), median(tg));
    if a.json {
        println!(
            "{}",
            serde_json::json!({
                "model": path.display().to_string(),
                "threads": threads,
                "kernels": servebench_engine::cpu::dot::best().name,
                "kquant_kernels": servebench_engine::cpu::kquants::best().name,
                "pp_tokens": a.prompt_tokens, "pp_tok_s": pp_med,
                "tg_tokens": a.gen_tokens, "tg_tok_s": tg_med, "tg_batch": a.batch,
                "depth": a.depth,
                "repetitions": a.repetitions,
            })
        );
    } else {
        println!(
            "model {} threads {threads} kernels {} (K-quants {})",
            path.display(),
            servebench_engine::cpu::dot::best().name,
            servebench_engine::cpu::kquants::best().name
        );
        let at = if a.depth > 0 {
            format!(" @ d{}", a.depth)
        } else {
            String::new()
        };
        println!("pp{:<5} {pp_med:>9.1} tokens/s{at}", a.prompt_tokens);
        println!(
            "tg{:<5} {tg_med:>9.1} tokens/s{at} (batch {})",
            a.gen_tokens, a.batch
        );
    }
    Ok(())
}

/// Prefill and decode rates (tokens/s) of each timed repetition.
fn measure(a: &Args, model: &Llama, tokens: &[u32]) -> anyhow::Result<(Vec<f64>, Vec<f64>)> {
    let mut pp = Vec::new();
    let mut tg = Vec::new();
    let (context, rest) = tokens.split_at(a.depth);
    // The `--depth` context, prefilled once (untimed); every test starts
    // from a copy of it.
    let mut filled = model.new_cache();
    if !context.is_empty() {
        model.forward(&mut [SeqStep::new(context, &mut filled)])?;
    }
    // One untimed round warms caches and pages in the weights.
    for rep in 0..=a.repetitions {
        let mut cache = filled.clone();
        let start = Instant::now();
        model.forward(&mut [SeqStep::new(&rest[..a.prompt_tokens], &mut cache)])?;
        let pp_rate = a.prompt_tokens as f64 / start.elapsed().as_secs_f64();
        let mut caches = vec![filled.clone(); a.batch];
        let start = Instant::now();
        for t in &rest[..a.gen_tokens] {
            let mut steps: Vec<SeqStep<'_>> = caches
                .iter_mut()
                .map(|cache| SeqStep::new(std::slice::from_ref(t), cache))
                .collect();
            model.forward(&mut steps)?;
        }
        let tg_rate = (a.gen_tokens * a.batch) as f64 / start.elapsed().as_secs_f64();
        if rep > 0 {
            pp.push(pp_rate);
            tg.push(tg_rate);
        }
    }
    Ok((pp, tg))
}

//! `servebench generate`: one prompt, printed as it is generated or as JSON.

use std::io::Write;

use servebench_engine::{generate, GenerateParams, SamplingParams};

use super::ModelArgs;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// The prompt text.
    #[arg(long)]
    prompt: String,
    /// Wrap the prompt as one user message with the model's chat template.
    #[arg(long)]
    chat: bool,
    /// Maximum new tokens.
    #[arg(short = 'n', long = "max-new-tokens", default_value_t = 32)]
    max_new_tokens: usize,
    /// Sampling temperature; absent or 0 means greedy.
    #[arg(long)]
    temperature: Option<f32>,
    /// Sample from the K most likely tokens only.
    #[arg(long)]
    top_k: Option<usize>,
    /// Nucleus sampling: the smallest set of tokens with this much probability.
    #[arg(long)]
    top_p: Option<f32>,
    /// Typical sampling mass.
    #[arg(long)]
    typical_p: Option<f32>,
    /// Penalty on tokens already in the prompt or output (1 = none).
    #[arg(long)]
    repetition_penalty: Option<f32>,
    /// Seed for sampling (same seed, same output).
    #[arg(long)]
    seed: Option<u64>,
    /// Stop when the text contains this (repeatable).
    #[arg(long)]
    stop: Vec<String>,
    /// Keep going past end-of-generation tokens.
    #[arg(long)]
    ignore_eos: bool,
    /// Print one JSON object instead of streaming text.
    #[arg(long)]
    json: bool,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let (_, engine) = a.model.load()?;
    let prompt_ids = engine.encode_prompt(&a.prompt, a.chat)?;
    let params = GenerateParams {
        max_new_tokens: a.max_new_tokens,
        min_new_tokens: 0,
        stop: a.stop,
        ignore_eos: a.ignore_eos,
        sampling: SamplingParams {
            do_sample: a.temperature.is_some_and(|t| t > 0.0),
            temperature: a.temperature,
            top_k: a.top_k,
            top_p: a.top_p,
            typical_p: a.typical_p,
            repetition_penalty: a.repetition_penalty,
            seed: a.seed,
            ..Default::default()
        },
        ..Default::default()
    };
    let json = a.json;
    let mut stdout = std::io::stdout();
    let g = generate(
        &engine.model,
        &engine.tokenizer,
        prompt_ids,
        params,
        |_, text| {
            if !json {
                let _ = write!(stdout, "{text}");
                let _ = stdout.flush();
            }
        },
    )?;
    let prefill_ms = g.prefill.as_secs_f64() * 1e3;
    let decode_ms_per_token = g.decode_per_token().as_secs_f64() * 1e3;
    if json {
        let out = serde_json::json!({
            "prompt_ids": g.prompt_ids,
            "generated_ids": g.generated_ids,
            "text": g.text,
            "finish_reason": g.finish_reason.as_str(),
            "seed": g.seed,
            "prefill_ms": prefill_ms,
            "decode_ms_per_token": decode_ms_per_token,
        });
        println!("{out}");
    } else {
        println!();
        eprintln!(
            "[{} prompt tokens, prefill {prefill_ms:.1} ms; {} new tokens, {decode_ms_per_token:.2} ms/token; finish: {}]",
            g.prompt_ids.len(),
            g.generated_ids.len(),
            g.finish_reason.as_str()
        );
    }
    Ok(())
}

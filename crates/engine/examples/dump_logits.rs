//! Prints the last-position logits of a prompt as JSON, for comparing the
//! engine's numerics with another implementation by hand:
//! `cargo run --release --example dump_logits -- MODEL.gguf "prompt"`, or
//! with token ids instead of a prompt: `... -- MODEL.gguf --ids 1,2,3`.

use servebench_engine::{Engine, SeqStep};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(model), Some(prompt)) = (args.get(1), args.get(2)) else {
        return Err("usage: dump_logits MODEL.gguf PROMPT".into());
    };
    let engine = Engine::load(std::path::Path::new(model))?;
    let ids = match (prompt.as_str(), args.get(3)) {
        ("--ids", Some(list)) => list
            .split(',')
            .map(|t| t.trim().parse::<u32>())
            .collect::<Result<Vec<_>, _>>()?,
        _ => engine.encode_prompt(prompt, false)?,
    };
    let mut cache = engine.model.new_cache();
    let logits = engine
        .model
        .forward(&mut [SeqStep::new(&ids, &mut cache)])?;
    println!("{}", serde_json::json!({ "ids": ids, "logits": logits }));
    Ok(())
}

//! `servebench tokenize`: token ids of a text, as llama.cpp would give them.

use servebench_engine::{fetch, gguf::GgufFile, tokenizer::Tokenizer};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// A GGUF file, or `smollm2` for the default model.
    #[arg(long, default_value = fetch::DEFAULT_MODEL)]
    model: String,
    /// The text to tokenize.
    #[arg(long)]
    text: String,
    /// Print `{"ids": [...]}`.
    #[arg(long)]
    json: bool,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    // Only the tokenizer is needed: no weights are loaded.
    let file = GgufFile::open(&fetch::resolve_model(&a.model)?)?;
    let tok = Tokenizer::from_gguf(&file)?;
    let ids = tok.encode(&a.text, true, true);
    if a.json {
        println!("{}", serde_json::json!({ "ids": ids }));
    } else {
        for id in ids {
            println!("{id:>7} {:?}", tok.decode(&[id], true));
        }
    }
    Ok(())
}

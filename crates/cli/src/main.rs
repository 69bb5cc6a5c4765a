//! The `servebench` binary: parses flags and hands each subcommand to the
//! library that does the work.

mod commands;

use clap::{Parser, Subcommand};

/// Serve LLMs, benchmark endpoints, and tell which deployment to buy.
#[derive(Parser)]
#[command(name = "servebench", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate text from a prompt with a local model.
    Generate(commands::generate::Args),
    /// Print the token ids of a text.
    Tokenize(commands::tokenize::Args),
    /// Download the default model (SmolLM2-135M-Instruct Q4_1) and print its path.
    FetchModel,
    /// Serve a model over TGI's and OpenAI's HTTP APIs.
    Serve(commands::serve::Args),
    /// Write a GGUF model with random weights in a preset's shape.
    MakeModel(commands::make_model::Args),
    /// Measure prefill and decode tokens/s of the engine (like llama-bench).
    EngineBench(commands::engine_bench::Args),
    /// Load-test a TGI- or OpenAI-compatible endpoint (METRICS.md definitions).
    Bench(Box<commands::bench::Args>),
    /// Run the study: deployments x load levels, priced, the three picks, the report.
    Study(commands::study::Args),
    /// Re-render a study's report, or write it from the 2023 study's CSV.
    Report(commands::report::Args),
    /// Predict latency, throughput and cost of deployments nobody has run.
    Predict(Box<commands::predict::Args>),
    /// Measure this machine's memory bandwidth and matmul throughput (for cpu-N predictions).
    Probe(commands::probe::Args),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Generate(a) => commands::generate::run(a),
        Command::Tokenize(a) => commands::tokenize::run(a),
        Command::FetchModel => {
            println!("{}", servebench_engine::fetch::fetch_default()?.display());
            Ok(())
        }
        Command::Serve(a) => commands::serve::run(a),
        Command::MakeModel(a) => commands::make_model::run(a),
        Command::EngineBench(a) => commands::engine_bench::run(a),
        Command::Bench(a) => commands::bench::run(*a),
        Command::Study(a) => commands::study::run(a),
        Command::Report(a) => commands::report::run(a),
        Command::Predict(a) => commands::predict::run(*a),
        Command::Probe(a) => commands::probe::run(a),
    }
}

//! One module per subcommand; shared flag groups live here.

pub mod bench;
pub mod engine_bench;
pub mod generate;
pub mod make_model;
pub mod predict;
pub mod probe;
pub mod report;
pub mod serve;
pub mod study;
pub mod tokenize;

use std::path::PathBuf;

use anyhow::Context;
use servebench_engine::{fetch, Engine, LoadOptions};

/// `--model` and `--threads`, shared by commands that run a model.
#[derive(clap::Args, Debug)]
pub struct ModelArgs {
    /// A GGUF file, a folder holding one, or `smollm2` for the default
    /// model (fetched if missing); default `smollm2`.
    #[arg(long)]
    pub model: Option<String>,
    /// Compute threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
}

impl ModelArgs {
    /// Sets up the thread pool, then resolves and loads the model.
    pub fn load(&self) -> anyhow::Result<(PathBuf, Engine)> {
        self.load_with(&LoadOptions::default())
    }

    /// [`Self::load`], converting weights as `options` say.
    pub fn load_with(&self, options: &LoadOptions) -> anyhow::Result<(PathBuf, Engine)> {
        self.init_threads()?;
        let spec = self.model.as_deref().unwrap_or(fetch::DEFAULT_MODEL);
        let path = fetch::resolve_model(spec)?;
        let engine = Engine::load_with(&path, options)
            .with_context(|| format!("loading {}", path.display()))?;
        Ok((path, engine))
    }

    fn init_threads(&self) -> anyhow::Result<()> {
        let n = match self.threads {
            Some(0) => anyhow::bail!("--threads must be at least 1"),
            Some(n) => n,
            None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        };
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global()
            .context("setting up the compute thread pool")
    }
}

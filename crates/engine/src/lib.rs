//! servebench's model runtime: GGUF loading, tokenizer and chat template,
//! the Llama forward pass over packed batches with per-sequence KV caches,
//! sampling and generation. No HTTP, no async.

pub mod chat_template;
pub mod config;
pub mod cpu;
mod engine;
pub mod error;
pub mod fetch;
pub mod generate;
pub mod gguf;
pub mod kv_cache;
pub mod model;
pub mod sampling;
pub mod synthetic;
pub mod tokenizer;

pub use engine::Engine;
pub use error::{EngineError, Result};
pub use generate::{
    generate, generate_batch, generate_observed, FinishReason, GenerateParams, Generation, Sequence,
};
pub use model::{Llama, LoadOptions, SeqStep};
pub use sampling::SamplingParams;

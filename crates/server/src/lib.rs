//! servebench's inference server: TGI's and OpenAI's HTTP APIs over the
//! engine, with continuous batching on a dedicated model thread.
//!
//! The request path reads top-down: `api` (routes, JSON) -> `validation`
//! -> `infer` (queue, batcher) -> stream events back through `api`.

pub mod api;
pub mod config;
pub mod error;
pub mod infer;
pub mod kv_budget;
pub mod metrics;
mod server;
pub mod validation;

pub use config::ServerConfig;
pub use server::{serve, Server};

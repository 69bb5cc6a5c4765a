//! Shared helpers of the loadgen integration tests. Skipping follows the
//! engine tests' convention, from the engine's own helper file (one copy).

#![allow(dead_code)]

pub mod scripted_server;

#[path = "../../../engine/tests/support/mod.rs"]
mod engine;

#[allow(unused_imports)] // each test binary uses its own subset
pub use engine::{real_model, skip};

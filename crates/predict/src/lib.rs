//! servebench's predictor: latency, throughput and memory fit of LLM
//! deployments nobody has run, calibrated on runs somebody did.
//!
//! The data path: a [`hardware::Catalog`] entry and a [`shape::Shape`] with
//! a [`quant::Quant`] make a [`perf::Candidate`]; [`perf::predict`] turns it
//! into ms/token and throughput with [`perf::Factors`], which [`fit::fit`]
//! fits to measured [`fit::Observation`]s and [`validate::validate`]
//! checks on held-out runs. [`probe`] measures this machine for `cpu-N`.

pub mod error;
pub mod fit;
pub mod hardware;
pub mod perf;
pub mod probe;
pub mod quant;
pub mod shape;
pub mod validate;

pub use error::{PredictError, Result};

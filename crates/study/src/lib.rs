//! servebench's study: deployments (model x quantization x instance x server
//! settings) measured at load levels with `servebench-loadgen`, priced from
//! a catalog, and condensed into the 2023 study's three picks.
//!
//! The data path, one type per step: [`config::StudyConfig`] (study.toml)
//! -> [`runner`] (a [`deployment`] started, or a [`sagemaker`] endpoint
//! created, each level run) -> a bench
//! `RunSummary` -> [`row::RunRow`] priced by [`prices`] and [`cost`] ->
//! [`picks`] and [`pareto`] -> [`report`] (Markdown, HTML, CSV).
//! [`import_2023`] turns the 2023 study's CSV into the same rows;
//! [`predicted`] turns rows into the predictor's calibration and its
//! predictions into rows.

pub mod config;
pub mod cost;
pub mod deployment;
pub mod error;
pub mod import_2023;
pub mod pareto;
pub mod picks;
pub mod predicted;
pub mod prices;
pub mod report;
pub mod row;
pub mod runner;
pub mod sagemaker;
pub mod store;

pub use error::{Result, StudyError};

//! Shared helpers of the loadgen integration tests.

#![allow(dead_code)]

pub mod scripted_server;

/// Whether missing peers must fail the run instead of skipping (`.ci/run` sets it).
pub fn peers_required() -> bool {
    std::env::var("SERVEBENCH_REQUIRE_PEERS").is_ok_and(|v| v == "1")
}

/// Skips (or, in CI, fails) a test whose prerequisite is missing.
pub fn skip(why: &str) {
    if peers_required() {
        panic!("SERVEBENCH_REQUIRE_PEERS=1 but {why}");
    }
    eprintln!("SKIPPED: {why}");
}

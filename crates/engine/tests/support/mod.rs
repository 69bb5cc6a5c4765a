//! Shared helpers of the engine's integration tests: finding the real model
//! and asking llama.cpp (through llama-cpp-python) for reference outputs.

#![allow(dead_code)]

pub mod greedy;
pub mod prompts;
pub mod texts;

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

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

/// The real SmolLM2 GGUF: `$SERVEBENCH_MODEL`, else the fetched cache copy.
pub fn real_model() -> Option<PathBuf> {
    let path = std::env::var_os("SERVEBENCH_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(servebench_engine::fetch::default_model_path);
    if path.is_file() {
        Some(path)
    } else {
        skip(&format!(
            "the real model is not at {} (run `servebench fetch-model`)",
            path.display()
        ));
        None
    }
}

/// A folder of the llama.cpp source tree that the peers script unpacks into
/// `$SERVEBENCH_PEERS` (default `~/.cache/servebench-peers`), e.g. `models`;
/// `None` (skipped, or failed in CI) when it is not there.
pub fn llamacpp_tree(sub: &str) -> Option<PathBuf> {
    let cache = std::env::var_os("SERVEBENCH_PEERS")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/servebench-peers"))
        })?;
    let dir = cache
        .join("llama_cpp_python-0.3.36/vendor/llama.cpp")
        .join(sub);
    if dir.is_dir() {
        Some(dir)
    } else {
        skip(&format!(
            "{} is missing (bash ../shared/peers/llama-server.sh --build-only unpacks it)",
            dir.display()
        ));
        None
    }
}

/// Runs the llama.cpp reference script on `request`; `None` when
/// llama-cpp-python is not installed.
pub fn llamacpp(request: &serde_json::Value) -> Option<serde_json::Value> {
    reference("llamacpp_ref.py", request)
}

/// Runs `tests/support/SCRIPT` (a llama-cpp-python reference) on `request`
/// as JSON on stdin; `None` when llama-cpp-python is not installed (the
/// script exits 3).
pub fn reference(script: &str, request: &serde_json::Value) -> Option<serde_json::Value> {
    let script = format!("{}/tests/support/{script}", env!("CARGO_MANIFEST_DIR"));
    let mut child = match Command::new("python3")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            skip(&format!("python3 cannot run: {e}"));
            return None;
        }
    };
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(request.to_string().as_bytes())
        .expect("writing to the reference script");
    let out = child.wait_with_output().expect("reference script ran");
    if out.status.code() == Some(3) {
        skip("llama-cpp-python is not installed (pip install llama-cpp-python==0.3.36)");
        return None;
    }
    assert!(
        out.status.success(),
        "reference script failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(serde_json::from_slice(&out.stdout).expect("reference script printed JSON"))
}

/// Cosine similarity of two vectors.
pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb)
}

/// The real model requantized by llama.cpp's own `llama-quantize` into
/// `kind` (its names: `Q4_K_M`, `Q6_K`, `F16`, ...), so the type mixture is
/// exactly what llama.cpp writes. Made once next to the real model (in
/// `types/`) and reused; `None` (skipped, or failed in CI) when the model or
/// the tool is missing.
pub fn quantized_model(kind: &str) -> Option<PathBuf> {
    let source = real_model()?;
    let dir = source.parent()?.join("types");
    let stem = source.file_stem()?.to_str()?;
    let base = stem.rsplit_once('.').map_or(stem, |(base, _)| base);
    let target = dir.join(format!("{base}.{kind}.gguf"));
    if target.is_file() {
        return Some(target);
    }
    let tool = llamacpp_tree("build/bin")?.join("llama-quantize");
    if !tool.is_file() {
        skip(&format!(
            "{} is missing (bash ../shared/peers/llama-server.sh --build-only builds it)",
            tool.display()
        ));
        return None;
    }
    std::fs::create_dir_all(&dir).expect("creating the quantized models' folder");
    // Tests run in parallel: write aside, then rename into place.
    let partial = dir.join(format!(
        "{base}.{kind}.{}-{:?}.partial",
        std::process::id(),
        std::thread::current().id()
    ));
    let out = Command::new(&tool)
        .arg("--allow-requantize")
        .args([&source, &partial])
        .arg(kind)
        .output()
        .expect("running llama-quantize");
    assert!(
        out.status.success(),
        "llama-quantize {kind} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::rename(&partial, &target).expect("moving the quantized model into place");
    Some(target)
}

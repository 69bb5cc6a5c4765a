//! The README's examples run as written: the `sh` block under "## Examples"
//! is executed by bash from the repository root with the freshly built
//! `servebench` first on `PATH`, and every subcommand has a line in it.
//! `servebench fetch-model` needs the real model (or PyPI): without it that
//! line is skipped, and without `../shared/data` the test, unless
//! SERVEBENCH_REQUIRE_PEERS=1.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The first ```sh block after `## Examples`.
fn examples() -> String {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let section = &readme[readme.find("\n## Examples").expect("## Examples")..];
    let block = &section[section.find("```sh\n").expect("an sh block") + 6..];
    block[..block.find("```").unwrap()].to_string()
}

fn require_peers() -> bool {
    std::env::var("SERVEBENCH_REQUIRE_PEERS").as_deref() == Ok("1")
}

#[test]
fn every_subcommand_has_an_example() {
    let block = examples();
    for c in support::subcommands() {
        let prefix = format!("servebench {c}");
        assert!(
            block
                .lines()
                .any(|l| l.trim_start() == prefix
                    || l.trim_start().starts_with(&format!("{prefix} "))),
            "no README example runs `{prefix}`"
        );
    }
}

#[test]
fn readme_examples_run_as_written() {
    let mut block = examples();
    let model_there = servebench_default_model().exists();
    if !model_there && !require_peers() {
        eprintln!("skipping the fetch-model line: the real model is not cached");
        block = block.replace("servebench fetch-model\n", "");
    }
    // The 2023 study's CSV (../shared/data) is read by two examples.
    if support::csv_2023().is_none() {
        return;
    }
    let results = root().join("results");
    for d in ["tiny.gguf", "bench", "tiny-study", "2023", "predict"] {
        let p = results.join(d);
        let _ = std::fs::remove_dir_all(&p);
        let _ = std::fs::remove_file(&p);
    }
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_servebench"));
    let path = format!(
        "{}:{}",
        bin.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    // A server left behind by a failing line is stopped on the way out.
    let script =
        format!("set -euo pipefail\ntrap 'kill $(jobs -p) 2>/dev/null || true' EXIT\n{block}\n");
    let out = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(root())
        .env("PATH", path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "README examples failed\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("\"generated_text\""), "{stdout}");
    for f in [
        "bench/summary.json",
        "tiny-study/report.html",
        "tiny-study/runs.csv",
    ] {
        assert!(results.join(f).exists(), "{f} was not written");
    }
    let report = std::fs::read_to_string(results.join("tiny-study/report.md")).unwrap();
    assert!(report.contains("For the lowest cost"), "{report}");
    assert!(results.join("2023/report.html").exists());
    assert!(results.join("predict/report.md").exists());
}

/// Where `servebench fetch-model` keeps the default model.
fn servebench_default_model() -> PathBuf {
    servebench_engine::fetch::default_model_path()
}

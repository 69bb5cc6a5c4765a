//! What the binary's tests share: the 2023 CSV, a report made from it, the
//! list of subcommands. Each test uses some of it.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// `shared/data/llama2-sagemaker-2023.csv` beside the repository.
pub fn csv_2023() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data/llama2-sagemaker-2023.csv");
    if p.exists() {
        Some(p)
    } else if std::env::var("SERVEBENCH_REQUIRE_PEERS").as_deref() == Ok("1") {
        panic!("{} is missing", p.display());
    } else {
        eprintln!("skipping: {} is missing", p.display());
        None
    }
}

/// Runs `servebench report --import-2023 CSV --out <fresh temp dir named tag>`
/// and returns the folder.
pub fn import_2023(csv: &Path, tag: &str) -> PathBuf {
    let out = std::env::temp_dir().join(format!("servebench-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let status = Command::new(env!("CARGO_BIN_EXE_servebench"))
        .args(["report", "--import-2023"])
        .arg(csv)
        .arg("--out")
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success());
    out
}

/// Subcommands as `servebench --help` lists them.
pub fn subcommands() -> Vec<String> {
    let out = Command::new(env!("CARGO_BIN_EXE_servebench"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    let list = &help[help.find("Commands:").unwrap()..];
    list.lines()
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(str::to_string)
        .collect()
}

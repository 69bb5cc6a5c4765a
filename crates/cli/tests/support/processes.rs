//! `servebench` processes the binary's tests start: a tiny model written by
//! `make-model`, and `servebench serve` on the port it prints, stopped when
//! the test ends.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

pub const BIN: &str = env!("CARGO_BIN_EXE_servebench");

/// A child process killed (by its own id) when the test ends.
pub struct Running(pub Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn tiny_model(dir: &Path) -> PathBuf {
    let path = dir.join("tiny.gguf");
    let status = Command::new(BIN)
        .args(["make-model", "--arch-preset", "tiny", "--quant", "q8_0"])
        .args(["--seed", "1", "--out"])
        .arg(&path)
        .status()
        .unwrap();
    assert!(status.success());
    path
}

/// Starts `servebench serve ARGS` with `envs`; returns it and its address.
pub fn serve(args: &[&str], envs: &[(&str, &str)]) -> (Running, String) {
    let mut child = Command::new(BIN)
        .arg("serve")
        .args(args)
        .envs(envs.iter().copied())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = loop {
        let line = lines
            .next()
            .expect("server exited before listening")
            .unwrap();
        if let Some(a) = line.split("http://").nth(1) {
            break a.trim().to_string();
        }
    };
    std::thread::spawn(move || lines.for_each(drop));
    (Running(child), addr)
}

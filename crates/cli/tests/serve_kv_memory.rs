//! `servebench serve` on the real model under an overload (Poisson arrivals
//! from `servebench bench`, 64 in flight, prompts of 300 +- 200 tokens)
//! against a KV budget the load overfills: once the KV pool has allocated
//! its whole budget, the server's peak resident memory is within
//! 1.1 x (weights + budget). "Weights" is everything that does not depend
//! on the budget: the server's peak RSS serving one request of the longest
//! prompt alone (the weights as loaded, the runtime, one prefill chunk's
//! activations). An RSS bound, not a timing: the speed of the machine only
//! changes how long the pool takes to fill.

#![cfg(target_os = "linux")]

#[path = "support/processes.rs"]
mod processes;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use processes::{serve, Running, BIN};

const BUDGET_TOKENS: usize = 6144;
/// SmolLM2-135M: 30 layers x 192 key values x 2 (keys, values) x 2 bytes.
const BYTES_PER_TOKEN: usize = 23040;

fn real_model() -> Option<std::path::PathBuf> {
    let path = std::env::var_os("SERVEBENCH_MODEL")
        .map(Into::into)
        .unwrap_or_else(servebench_engine::fetch::default_model_path);
    if path.is_file() {
        return Some(path);
    }
    let why = format!("the real model is not at {}", path.display());
    if std::env::var("SERVEBENCH_REQUIRE_PEERS").as_deref() == Ok("1") {
        panic!("SERVEBENCH_REQUIRE_PEERS=1 but {why}");
    }
    eprintln!("SKIPPED: {why}");
    None
}

/// One HTTP/1.1 exchange; the response's body.
fn http(addr: &str, method: &str, path: &str, body: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out.split_once("\r\n\r\n")
        .map_or(out.clone(), |(_, b)| b.to_string())
}

/// `VmHWM` (peak) or `VmRSS` of `pid`, in bytes.
fn rss(pid: u32, key: &str) -> usize {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with(key)).unwrap();
    let kib: usize = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

fn gauge(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

#[test]
fn peak_rss_under_overload_stays_within_weights_plus_kv_budget() {
    let Some(model) = real_model() else { return };
    let model = model.to_str().unwrap();
    let budget = BUDGET_TOKENS.to_string();
    let args = [
        "--model",
        model,
        "--threads",
        "2",
        "--port",
        "0",
        "--max-total-tokens",
        "1024",
        "--max-input-tokens",
        "1000",
        "--max-batch-total-tokens",
        &budget,
    ];
    let (server, addr) = serve(&args, &[]);
    let pid = server.0.id();
    // Loading the file has its own spike; the peak is measured from here on.
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").unwrap();
    let longest = format!(
        r#"{{"inputs":"{}","parameters":{{"max_new_tokens":4}}}}"#,
        "Llamas live in the Andes. ".repeat(124)
    );
    let reply = http(&addr, "POST", "/generate", &longest);
    assert!(reply.contains("generated_text"), "{reply}");
    let weights = rss(pid, "VmHWM");

    let bench = Running(
        Command::new(BIN)
            .args(["bench", "--url", &format!("http://{addr}"), "--api", "tgi"])
            .args([
                "--rate",
                "50",
                "--max-in-flight",
                "64",
                "--duration",
                "300s",
            ])
            .args(["--input-tokens", "300,200", "--tokenizer", model])
            .args([
                "--max-new-tokens",
                "16",
                "--ignore-eos",
                "--timeout",
                "600s",
            ])
            .args(["--warmup", "0", "--pause", "0s"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let budget_bytes = BUDGET_TOKENS * BYTES_PER_TOKEN;
    let started = Instant::now();
    let metrics = loop {
        let m = http(&addr, "GET", "/metrics", "");
        // The pool has allocated (nearly) all its pages: the KV is full.
        if gauge(&m, "servebench_kv_allocated_bytes") >= 0.95 * budget_bytes as f64 {
            break m;
        }
        assert!(
            started.elapsed() < Duration::from_secs(240),
            "the overload did not fill the KV budget in 240 s: {m}"
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    let peak = rss(pid, "VmHWM");
    drop(bench);
    drop(server);
    assert_eq!(
        gauge(&metrics, "servebench_kv_budget_tokens"),
        BUDGET_TOKENS as f64
    );
    assert!(gauge(&metrics, "servebench_kv_reserved_tokens_peak") <= BUDGET_TOKENS as f64);
    assert!(gauge(&metrics, "servebench_kv_allocated_bytes") <= budget_bytes as f64);
    let mib = |b: usize| b as f64 / (1 << 20) as f64;
    let bound = (1.1 * (weights + budget_bytes) as f64) as usize;
    eprintln!(
        "peak RSS {:.0} MiB; weights {:.0} MiB + KV budget {:.0} MiB, x 1.1 = {:.0} MiB",
        mib(peak),
        mib(weights),
        mib(budget_bytes),
        mib(bound)
    );
    assert!(
        peak <= bound,
        "peak RSS {:.0} MiB over 1.1 x (weights {:.0} MiB + KV budget {:.0} MiB)",
        mib(peak),
        mib(weights),
        mib(budget_bytes)
    );
}

//! Agreement with an independent client against llama.cpp's llama-server
//! (issue 4's acceptance): at concurrency 1 and 20, `output_throughput_tok_s`,
//! `ttft_ms` p50 and `tpot_ms` p50 within 5% of `support/ref_client.py`
//! (Python standard library only) driving the same load, and output token
//! counts exact. Skips when llama-server or the model is missing, unless
//! SERVEBENCH_REQUIRE_PEERS=1.

mod support;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use servebench_loadgen::api::RequestParams;
use servebench_loadgen::progress::NoProgress;
use servebench_loadgen::{
    run_level, Api, Cancel, Client, ClientConfig, LevelConfig, LoadModel, Outcome, Prompt, Prompts,
    StopCondition, TokenCountSource,
};
use support::{real_model, skip};

/// About 60 tokens after a unique head (see [`prompts`]).
const PROMPT: &str = "Write a 500 word long story about llamas. The herd lives in a high \
valley; the herder counts them every morning, once by name and once by the colour of their \
wool, and tells the children about the grey one that carried salt for three winters.";
const MAX_TOKENS: u32 = 32;
const TOLERANCE: f64 = 0.05;
/// The machine's two cores are shared (builds, other tests), and one pair of
/// runs can meet a burst of other work: up to this many rounds, compared by
/// their medians.
const ROUNDS: usize = 5;

/// Where `../shared/peers/llama-server.sh` caches its build (same logic).
fn llama_server_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("SERVEBENCH_LLAMA_SERVER") {
        return PathBuf::from(p);
    }
    let cache = std::env::var_os("SERVEBENCH_PEERS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
                .unwrap_or_else(std::env::temp_dir)
                .join("servebench-peers")
        });
    cache.join("llama_cpp_python-0.3.36/vendor/llama.cpp/build/bin/llama-server")
}

struct LlamaServer {
    child: Child,
    url: String,
}

impl Drop for LlamaServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_llama_server() -> Option<LlamaServer> {
    let bin = llama_server_bin();
    if !bin.is_file() {
        skip(&format!(
            "llama-server is not built at {} (run ../shared/peers/llama-server.sh --build-only)",
            bin.display()
        ));
        return None;
    }
    let model = real_model()?;
    let port = TcpListener::bind("127.0.0.1:0")
        .ok()?
        .local_addr()
        .ok()?
        .port();
    let child = Command::new(&bin)
        .args(["-m"])
        .arg(&model)
        .args([
            "-t",
            "2",
            "--host",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "-np",
            "20",
            "-c",
            "40960",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("llama-server starts");
    let server = LlamaServer {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let ok = Command::new("python3")
            .args([
                "-c",
                &format!(
                    "import urllib.request as u; u.urlopen('{}/health', timeout=2)",
                    server.url
                ),
            ])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return Some(server);
        }
        assert!(
            Instant::now() < deadline,
            "llama-server did not become healthy in 120 s"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

struct Measured {
    throughput: f64,
    ttft_p50: f64,
    tpot_p50: f64,
    tokens: Vec<u32>,
}

/// A fresh prompt for every request of every run, identical for both clients:
/// llama-server keeps each slot's prompt in its KV cache, so a repeated
/// prompt would cost one token of prefill instead of ~60 and TTFT would be a
/// few milliseconds, where fixed client costs (Python's interpreter, a new
/// connection) are no longer small next to 5%. Fixed-width numbers keep the
/// token count the same for every prompt.
fn prompts(run: usize, n: u64) -> Vec<String> {
    (0..n)
        .map(|i| format!("Run {run:03} request {i:04}. {PROMPT}"))
        .collect()
}

async fn ours(url: &str, concurrency: u32, prompts: &[String]) -> Measured {
    let requests = prompts.len() as u64;
    let client = Client::new(ClientConfig {
        base_url: url.into(),
        api: Api::OpenaiCompletions,
        params: RequestParams {
            stream: true,
            model_name: None,
            ignore_eos: true,
            temperature: Some(0.0),
        },
        api_key: None,
        timeout: Duration::from_secs(120),
    })
    .unwrap();
    let prompts = Prompts::new(
        prompts
            .iter()
            .map(|p| Prompt::new(p.as_str(), MAX_TOKENS))
            .collect(),
    )
    .unwrap();
    let cfg = LevelConfig {
        load: LoadModel::Closed { concurrency },
        stop: StopCondition {
            duration: None,
            requests: Some(requests),
        },
        warmup: 1,
        pause: Duration::ZERO,
        slo: Vec::new(),
        seed: 0,
    };
    let (_h, cancel) = Cancel::new();
    let res = run_level(&client, &prompts, &cfg, Arc::new(NoProgress), &cancel)
        .await
        .unwrap();
    let s = &res.summary;
    assert_eq!(
        (s.success, s.failed),
        (requests, 0),
        "{:?}",
        res.records.iter().find(|r| r.outcome != Outcome::Success)
    );
    assert_eq!(s.output_tokens_source, Some(TokenCountSource::Server));
    // Every token event was one token: the stream and usage agree.
    for r in &res.records {
        assert_eq!(
            Some(r.token_events),
            r.output_tokens,
            "token events vs usage"
        );
    }
    Measured {
        throughput: s.output_throughput_tok_s,
        ttft_p50: s.ttft_ms.unwrap().p50,
        tpot_p50: s.tpot_ms.unwrap().p50,
        tokens: res
            .records
            .iter()
            .map(|r| r.output_tokens.unwrap())
            .collect(),
    }
}

fn reference(url: &str, concurrency: u32, prompts: &[String]) -> Measured {
    let requests = prompts.len() as u64;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/ref_client.py");
    let cfg = serde_json::json!({
        "url": url, "prompts": prompts, "max_tokens": MAX_TOKENS,
        "concurrency": concurrency, "requests": requests, "warmup": 1,
    });
    let out = Command::new("python3")
        .arg(script)
        .arg(cfg.to_string())
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "ref client: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("ref client prints JSON");
    assert_eq!(v["failed"], 0, "{v}");
    Measured {
        throughput: v["output_throughput_tok_s"].as_f64().unwrap(),
        ttft_p50: v["ttft_ms_p50"].as_f64().unwrap(),
        tpot_p50: v["tpot_ms_p50"].as_f64().unwrap(),
        tokens: serde_json::from_value(v["output_tokens"].clone()).unwrap(),
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Runs the two clients in turns (alternating which goes first, so drift
/// in the server's speed favours neither) and compares the medians over the
/// rounds so far; done as soon as all three metrics agree within 5%.
async fn agree(url: &str, concurrency: u32, requests: u64) {
    let (mut a, mut b): (Vec<Measured>, Vec<Measured>) = (Vec::new(), Vec::new());
    let mut last = String::new();
    for round in 1..=ROUNDS {
        let run = 100 * concurrency as usize + 2 * round;
        let (p, q) = (prompts(run, requests), prompts(run + 1, requests));
        let (x, y) = if round % 2 == 1 {
            let x = ours(url, concurrency, &p).await;
            (x, reference(url, concurrency, &q))
        } else {
            let y = reference(url, concurrency, &q);
            (ours(url, concurrency, &p).await, y)
        };
        // Token counts are exact, whatever the timing noise.
        assert_eq!(x.tokens, vec![MAX_TOKENS; requests as usize]);
        assert_eq!(y.tokens, vec![MAX_TOKENS; requests as usize]);
        a.push(x);
        b.push(y);
        let metric = |v: &[Measured], f: fn(&Measured) -> f64| median(v.iter().map(f).collect());
        let d = [
            (
                "output_throughput_tok_s",
                metric(&a, |m| m.throughput),
                metric(&b, |m| m.throughput),
            ),
            (
                "ttft_ms p50",
                metric(&a, |m| m.ttft_p50),
                metric(&b, |m| m.ttft_p50),
            ),
            (
                "tpot_ms p50",
                metric(&a, |m| m.tpot_p50),
                metric(&b, |m| m.tpot_p50),
            ),
        ];
        last = d
            .iter()
            .map(|(n, x, y)| format!("{n} {x:.2} vs {y:.2} ({:+.1}%)", 100.0 * (x - y) / y))
            .collect::<Vec<_>>()
            .join(", ");
        eprintln!(
            "c={concurrency}, median of {round} round(s), servebench vs ref_client.py: {last}"
        );
        if d.iter().all(|(_, x, y)| (x - y).abs() / y <= TOLERANCE) {
            return;
        }
    }
    panic!("c={concurrency}: not within 5% after {ROUNDS} rounds: {last}");
}

#[tokio::test]
async fn agrees_with_an_independent_client_at_c1_and_c20() {
    let Some(server) = start_llama_server() else {
        return;
    };
    agree(&server.url, 1, 8).await;
    agree(&server.url, 20, 40).await;
}

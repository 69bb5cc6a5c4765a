//! `servebench bench` end to end: the real binary against a scripted local
//! server; files written, exit codes, Ctrl-C.

#[path = "../../engine/tests/support/mod.rs"]
mod engine_support;
#[path = "../../loadgen/tests/support/scripted_server.rs"]
mod scripted_server;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use scripted_server::{tgi_token, Reply, ScriptedServer};

fn out_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("sb-bench-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// Runs `servebench bench` with `extra` flags (split on white space).
fn bench(url: &str, out: &Path, extra: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_servebench"))
        .args([
            "bench", "--url", url, "--warmup", "0", "--pause", "0s", "--out",
        ])
        .arg(out)
        .args(extra.split_whitespace())
        .output()
        .expect("servebench runs")
}

fn read_summary(out: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(out.join("summary.json")).expect("summary.json written");
    serde_json::from_str(&text).expect("summary.json is JSON")
}

#[track_caller]
fn assert_ok(o: &Output) {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

fn stream_server() -> ScriptedServer {
    ScriptedServer::start(|_| {
        Reply::sse()
            .wait(Duration::from_millis(5))
            .event(&tgi_token(1, 2, "a"))
            .wait(Duration::from_millis(5))
            .event(&tgi_token(2, 2, "b"))
    })
}

#[test]
fn writes_summary_csv_and_requests() {
    let server = stream_server();
    let out = out_dir("ok");
    let o = bench(
        &server.url(),
        &out,
        "--concurrency 1,2 --requests 4 --slo ttft_ms<=1000",
    );
    assert_ok(&o);
    let table = String::from_utf8_lossy(&o.stdout);
    assert!(
        table.contains("output_throughput_tok_s") && table.contains("c=2"),
        "{table}"
    );

    let summary = read_summary(&out);
    assert_eq!(summary["schema"], "servebench.bench/1");
    let levels = summary["levels"].as_array().unwrap();
    assert_eq!(levels.len(), 2);
    assert_eq!(
        levels[1]["load"],
        serde_json::json!({"kind": "closed", "concurrency": 2})
    );
    assert_eq!(levels[0]["success"], 4);
    assert_eq!(levels[0]["output_tokens_total"], 8);
    assert!(levels[0]["ttft_ms"]["p50"].as_f64().unwrap() >= 5.0);
    assert_eq!(levels[0]["goodput_s"], levels[0]["request_rate_s"]);

    let csv = std::fs::read_to_string(out.join("summary.csv")).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 3);
    let header: Vec<&str> = lines[0].split(',').collect();
    let col = header.iter().position(|h| *h == "tpot_ms_p50").unwrap();
    let tpot: f64 = lines[1].split(',').nth(col).unwrap().parse().unwrap();
    assert!((tpot - 5.0).abs() < 3.0, "tpot_ms_p50 {tpot}");

    let jsonl = std::fs::read_to_string(out.join("requests.jsonl")).unwrap();
    let recs: Vec<serde_json::Value> = jsonl
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(recs.len(), 8);
    assert_eq!(recs[7]["level"], "c=2");
    assert_eq!(recs[0]["output_tokens"], 2);
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn errors_make_a_non_zero_exit_and_are_recorded() {
    let server = ScriptedServer::start(|req| {
        if req.number % 2 == 0 {
            Reply::json(503, &serde_json::json!({"error": "overloaded"}))
        } else {
            Reply::json(
                200,
                &serde_json::json!({"generated_text": "x", "details": {"generated_tokens": 50}}),
            )
        }
    });
    let out = out_dir("err");
    let o = bench(
        &server.url(),
        &out,
        "--concurrency 1 --requests 4 --no-stream",
    );
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let jsonl = std::fs::read_to_string(out.join("requests.jsonl")).unwrap();
    let failed: Vec<serde_json::Value> = jsonl
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|r| r["outcome"] == "failed")
        .collect();
    assert_eq!(failed.len(), 2);
    assert_eq!(failed[0]["error_kind"], "http_5xx");
    assert!(failed[0]["error"].as_str().unwrap().contains("overloaded"));
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn ctrl_c_writes_what_was_measured() {
    let server = stream_server();
    let out = out_dir("int");
    let child = Command::new(env!("CARGO_BIN_EXE_servebench"))
        .args([
            "bench",
            "--url",
            &server.url(),
            "--warmup",
            "0",
            "--pause",
            "0s",
            "--concurrency",
            "2",
            "--duration",
            "60s",
            "--out",
        ])
        .arg(&out)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(800));
    let t0 = Instant::now();
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap()
        .success());
    let o = child.wait_with_output().unwrap();
    assert!(t0.elapsed() < Duration::from_secs(5), "stopped promptly");
    assert_eq!(o.status.code(), Some(130));
    let summary = read_summary(&out);
    assert_eq!(summary["interrupted"], true);
    assert!(summary["levels"][0]["success"].as_u64().unwrap() > 10);
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn sweep_runs_saturation_then_rates_below_it() {
    let server = stream_server();
    let out = out_dir("sweep");
    let o = bench(
        &server.url(),
        &out,
        "--sweep --sweep-concurrency 4 --sweep-steps 2 --duration 1s --arrival constant",
    );
    assert_ok(&o);
    let summary = read_summary(&out);
    let levels = summary["levels"].as_array().unwrap();
    assert_eq!(levels.len(), 3);
    let saturation = levels[0]["request_rate_s"].as_f64().unwrap();
    let r1 = levels[1]["load"]["rate_s"].as_f64().unwrap();
    let r2 = levels[2]["load"]["rate_s"].as_f64().unwrap();
    assert!(
        (r1 - saturation / 3.0).abs() / r1 < 0.01
            && (r2 - 2.0 * saturation / 3.0).abs() / r2 < 0.01
    );
    // Open loop under saturation: the measured rate is the asked one.
    let got = levels[1]["request_rate_s"].as_f64().unwrap();
    assert!((got - r1).abs() / r1 < 0.1, "asked {r1}/s, got {got}/s");
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn synthetic_prompts_from_the_servers_tokenize() {
    // A whitespace tokenizer behind TGI's /tokenize: each word is a token.
    let server = ScriptedServer::start(|req| {
        if req.path == "/tokenize" {
            let text = req.json()["inputs"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let mut spans = Vec::new();
            let mut start = 0;
            for (i, _) in text.match_indices(' ').chain([(text.len(), "")]) {
                if i > start {
                    spans.push(serde_json::json!({"id": 1, "text": &text[start..i], "start": start, "stop": i}));
                }
                start = i;
            }
            return Reply::json(200, &serde_json::Value::Array(spans));
        }
        let words = req.json()["inputs"]
            .as_str()
            .unwrap_or_default()
            .split_whitespace()
            .count();
        Reply::sse().event(&tgi_token(1, 1, &words.to_string()))
    });
    let out = out_dir("synth");
    let o = bench(
        &server.url(),
        &out,
        "--concurrency 2 --requests 40 --input-tokens 30,5",
    );
    assert_ok(&o);
    let summary = read_summary(&out);
    let mean = summary["levels"][0]["input_tokens"]["mean"]
        .as_f64()
        .unwrap();
    assert!((mean - 30.0).abs() < 3.0, "input_tokens mean {mean}");
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn synthetic_prompts_cut_by_a_gguf_tokenizer() {
    let Some(model) = engine_support::real_model() else {
        return;
    };
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let log = seen.clone();
    let server = ScriptedServer::start(move |req| {
        let prompt = req.json()["inputs"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        log.lock().unwrap().push(prompt);
        Reply::sse().event(&tgi_token(1, 1, "a"))
    });
    let out = out_dir("gguf");
    let model = model.to_string_lossy().to_string();
    let o = bench(
        &server.url(),
        &out,
        &format!(
            "--concurrency 2 --requests 30 --input-tokens 40,8 --tokenizer {}",
            model
        ),
    );
    assert_ok(&o);
    let summary = read_summary(&out);
    let reported = summary["levels"][0]["input_tokens"]["mean"]
        .as_f64()
        .unwrap();
    assert!(
        (reported - 40.0).abs() < 4.0,
        "input_tokens mean {reported}"
    );
    // Tokenized again by the model, the prompts really are that long (a
    // window's edges may merge differently: within a token or two).
    let file = servebench_engine::gguf::GgufFile::open(std::path::Path::new(&model)).unwrap();
    let tok = servebench_engine::tokenizer::Tokenizer::from_gguf(&file).unwrap();
    let seen = seen.lock().unwrap();
    let actual: Vec<f64> = seen
        .iter()
        .map(|p| tok.encode(p, false, false).len() as f64)
        .collect();
    let mean = actual.iter().sum::<f64>() / actual.len() as f64;
    assert!(
        (mean - reported).abs() < 2.0,
        "sent {mean} tokens on average, reported {reported}"
    );
    std::fs::remove_dir_all(&out).unwrap();
}

//! servebench as the SageMaker container and as a SageMaker client, end to
//! end with the real binary: `serve` configured the way SageMaker configures
//! the Hugging Face LLM container (environment variables, `/ping`), and
//! `bench --api sagemaker` through a loopback stand-in of the SageMaker
//! runtime that checks every signature with botocore and wraps the
//! container's stream in event-stream frames.

#![cfg(unix)]

#[path = "support/aws_stand_ins.rs"]
mod aws_stand_ins;

use std::path::Path;
use std::process::{Command, Output};

use aws_stand_ins::{aws_env, get, runtime, serve, tiny_model, tmp, BIN, REGION, SECRET};

#[test]
fn serve_takes_tgis_launcher_environment_and_answers_ping() {
    let dir = tmp("env");
    let model_dir = dir.join("opt-ml-model");
    std::fs::create_dir_all(&model_dir).unwrap();
    std::fs::rename(tiny_model(&dir), model_dir.join("tiny.gguf")).unwrap();
    let (_server, addr) = serve(
        &["--threads", "1", "--model", model_dir.to_str().unwrap()],
        &[
            ("PORT", "0"),
            ("MAX_INPUT_LENGTH", "100"),
            ("MAX_TOTAL_TOKENS", "200"),
            ("MAX_BATCH_PREFILL_TOKENS", "300"),
            ("MAX_CONCURRENT_REQUESTS", "7"),
            ("MAX_STOP_SEQUENCES", "2"),
            ("QUANTIZE", "f16"),
        ],
    );
    assert_eq!(get(&addr, "/ping").0, 200);
    let (status, info) = get(&addr, "/info");
    assert_eq!(status, 200);
    let info: serde_json::Value = serde_json::from_str(info.trim()).unwrap();
    assert_eq!(info["max_input_tokens"], 100, "{info}");
    assert_eq!(info["max_total_tokens"], 200);
    assert_eq!(info["max_concurrent_requests"], 7);
    assert_eq!(info["max_stop_sequences"], 2);
    assert_eq!(info["model_id"], "tiny");
    assert_eq!(info["model_dtype"], "F16", "QUANTIZE converted the weights");
    // A flag wins over the environment, as with TGI's launcher.
    let over = Command::new(BIN)
        .args(["serve", "--max-concurrent-requests", "0", "--model"])
        .arg(&model_dir)
        .env("MAX_CONCURRENT_REQUESTS", "7")
        .env("PORT", "0")
        .output()
        .unwrap();
    assert!(!over.status.success());
    assert!(
        String::from_utf8_lossy(&over.stderr).contains("--max-concurrent-requests"),
        "{}",
        String::from_utf8_lossy(&over.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `servebench bench` with AWS settings from the environment only.
fn bench(args: &[&str], out: &Path, secret: &str) -> Output {
    let mut c = Command::new(BIN);
    c.arg("bench")
        .args(args)
        .args(["--warmup", "0", "--pause", "0s", "--max-new-tokens", "24"])
        .args(["--concurrency", "2", "--requests", "6", "--out"])
        .arg(out);
    aws_env(&mut c, out, secret);
    c.env("AWS_SESSION_TOKEN", "a-session-token")
        .output()
        .unwrap()
}

fn level(out: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(out.join("summary.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["levels"][0].clone()
}

#[test]
fn bench_through_the_sagemaker_runtime_agrees_with_tgi_straight() {
    let dir = tmp("bench");
    let model = tiny_model(&dir);
    let (_server, addr) = serve(
        &[
            "--threads",
            "1",
            "--port",
            "0",
            "--model",
            model.to_str().unwrap(),
        ],
        &[],
    );
    let Some((_rt, runtime_url)) = runtime(&format!("http://{addr}")) else {
        return;
    };
    let url = format!("sagemaker://tiny-endpoint?region={REGION}");
    for stream in [true, false] {
        let mode: &[&str] = if stream { &[] } else { &["--no-stream"] };
        let via_out = dir.join(format!("via-{stream}"));
        let mut args = vec!["--api", "sagemaker", "--url", &url];
        args.extend(["--aws-endpoint-url", &runtime_url]);
        args.extend(mode);
        let via = bench(&args, &via_out, SECRET);
        assert!(
            via.status.success(),
            "{}",
            String::from_utf8_lossy(&via.stderr)
        );
        let direct_out = dir.join(format!("direct-{stream}"));
        let direct_url = format!("http://{addr}");
        let mut args = vec!["--api", "tgi", "--url", &direct_url];
        args.extend(mode);
        let direct = bench(&args, &direct_out, SECRET);
        assert!(
            direct.status.success(),
            "{}",
            String::from_utf8_lossy(&direct.stderr)
        );
        let (v, d) = (level(&via_out), level(&direct_out));
        assert_eq!(v["success"], 6, "{v}");
        assert_eq!(v["api"], "sagemaker");
        assert_eq!(
            v["output_tokens_total"], d["output_tokens_total"],
            "stream {stream}"
        );
        assert!(v["output_tokens_total"].as_u64().unwrap() > 6);
        if stream {
            assert!(v["ttft_ms"]["p50"].as_f64().unwrap() > 0.0, "{v}");
        }
    }
    let (status, stats) = get(runtime_url.trim_start_matches("http://"), "/stats");
    assert_eq!(status, 200);
    let stats: serde_json::Value = serde_json::from_str(stats.trim()).unwrap();
    assert_eq!(stats["signed_ok"], 12, "{stats}");
    assert_eq!(stats["rejected"], 0);

    // A wrong secret: every request gets SageMaker's 403 and the run says so.
    let bad_out = dir.join("bad");
    let bad = bench(
        &[
            "--api",
            "sagemaker",
            "--url",
            &url,
            "--aws-endpoint-url",
            &runtime_url,
        ],
        &bad_out,
        "not-the-secret",
    );
    assert_eq!(bad.status.code(), Some(1));
    let l = level(&bad_out);
    assert_eq!(l["success"], 0);
    assert_eq!(l["errors"]["http_4xx"], 6, "{l}");
    let records = std::fs::read_to_string(bad_out.join("requests.jsonl")).unwrap();
    assert!(
        records.contains("403") && records.contains("signature we calculated does not match"),
        "{records}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sagemaker_urls_and_regions_are_checked_before_any_request() {
    let out = tmp("urls");
    for (url, why) in [
        ("http://x", "sagemaker://"),
        ("sagemaker://e?zone=1", "unknown query"),
    ] {
        let o = bench(&["--api", "sagemaker", "--url", url], &out, SECRET);
        assert!(!o.status.success());
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(why), "{url}: {err}");
    }
    let o = bench(
        &["--api", "sagemaker", "--url", "sagemaker://e"],
        &out,
        SECRET,
    );
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("region"), "{err}");
    let _ = std::fs::remove_dir_all(&out);
}

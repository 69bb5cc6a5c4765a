//! `servebench predict` end to end on the 2023 study's real CSV: validation
//! meets its targets, predictions come out as JSON and as the study's
//! report, a candidate that does not fit says so with its numbers, and
//! `report --predict` puts the model beside every measured run.

mod support;

use std::process::{Command, Output};

use support::{csv_2023, import_2023};

fn servebench(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_servebench"))
        .args(args)
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn temp(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("servebench-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

#[test]
fn leave_one_model_out_is_within_25_percent() {
    let Some(csv) = csv_2023() else { return };
    let out = stdout(&servebench(&[
        "predict",
        "--validate",
        csv.to_str().unwrap(),
        "--holdout",
        "model",
    ]));
    let all = out
        .lines()
        .find(|l| l.starts_with("all held-out runs"))
        .unwrap_or_else(|| panic!("{out}"));
    let v: Vec<f64> = all
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    // runs, ms/token median, p90, throughput median, p90
    assert_eq!(v[0], 60.0, "{all}");
    assert!(v[1] <= 25.0 && v[3] <= 25.0, "{all}");
    assert!(out.contains("llama-2-70b"), "{out}");
}

#[test]
fn json_per_candidate_and_a_candidate_that_does_not_fit() {
    let Some(csv) = csv_2023() else { return };
    let out = stdout(&servebench(&[
        "predict",
        "--model",
        "llama-2-70b",
        "--instance",
        "ml.g5.2xlarge,ml.p4d.24xlarge",
        "--concurrency",
        "1,20",
        "--calibrate",
        csv.to_str().unwrap(),
        "--json",
    ]));
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 4, "{out}");
    for j in &lines {
        for k in [
            "model",
            "quantize",
            "instance",
            "tp",
            "concurrency",
            "fits",
            "ms_per_token",
            "output_throughput_tok_s",
            "minutes_per_1m_tokens",
            "cost_per_1m_tokens_usd",
        ] {
            assert!(j.get(k).is_some(), "{k} missing in {j}");
        }
        if j["instance"] == "ml.g5.2xlarge" {
            assert_eq!(j["fits"], false);
            assert!(j["ms_per_token"].is_null() && j["cost_per_1m_tokens_usd"].is_null());
            assert!(j["error"].as_str().unwrap().contains("does not fit"), "{j}");
            assert!(j["memory_gib_per_device"]["weights"].as_f64().unwrap() > 24.0);
        } else {
            assert_eq!(j["fits"], true);
            assert_eq!(j["tp"], 8);
            let tok_s = j["output_throughput_tok_s"].as_f64().unwrap();
            let minutes = j["minutes_per_1m_tokens"].as_f64().unwrap();
            assert!((minutes - 1e6 / tok_s / 60.0).abs() < 1e-9);
            let usd = j["cost_per_1m_tokens_usd"].as_f64().unwrap();
            assert!((usd - minutes / 60.0 * 37.69).abs() < 1e-9);
        }
    }
    // More users, more throughput (p4d at 1 and 20).
    let tput = |c: u64| {
        lines
            .iter()
            .find(|j| j["instance"] == "ml.p4d.24xlarge" && j["concurrency"] == c)
            .unwrap()["output_throughput_tok_s"]
            .as_f64()
            .unwrap()
    };
    assert!(tput(20) > tput(1));
}

#[test]
fn the_report_mixes_predicted_and_measured_rows() {
    let Some(csv) = csv_2023() else { return };
    let out = temp("predict-report");
    let o = servebench(&[
        "predict",
        "--model",
        "llama-2-13b",
        "--quantize",
        "none,gptq",
        "--instance",
        "ml.g5.12xlarge",
        "--tp",
        "1,2,4,8",
        "--calibrate",
        csv.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--with-measured",
    ]);
    stdout(&o);
    let runs = std::fs::read_to_string(out.join("runs.csv")).unwrap();
    let header: Vec<&str> = runs.lines().next().unwrap().split(',').collect();
    let col = header.iter().position(|h| *h == "predicted").unwrap();
    let flags: Vec<&str> = runs
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(col).unwrap())
        .collect();
    // 2 quantizations x tp 1, 2, 4 (8 is skipped: 4 GPUs) x 4 levels, then the 60 measured.
    assert_eq!(flags.iter().filter(|f| **f == "true").count(), 24);
    assert_eq!(flags.iter().filter(|f| **f == "false").count(), 60);
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(
        md.contains("Llama 2 13B (predicted)") && md.contains("does not fit"),
        "{md}"
    );
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn report_predict_shows_every_measured_run_with_its_error() {
    let Some(csv) = csv_2023() else { return };
    let out = import_2023(&csv, "report-predict");
    let o = servebench(&["report", "--from", out.to_str().unwrap(), "--predict"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    let section = md
        .split("## Predicted vs measured")
        .nth(1)
        .unwrap()
        .split("## All runs")
        .next()
        .unwrap();
    let rows: Vec<&str> = section
        .lines()
        .filter(|l| l.starts_with("| Llama 2"))
        .collect();
    assert_eq!(rows.len(), 60, "{section}");
    assert!(rows.iter().all(|r| r.contains('%')), "{section}");
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn bad_input_is_refused_with_a_reason() {
    let o = servebench(&["predict", "--model", "gpt-5", "--instance", "ml.g5.2xlarge"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("gpt-5"));
    let o = servebench(&["predict", "--model", "llama-2-7b", "--instance", "ml.nope"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("ml.g5.12xlarge"));
    let o = servebench(&["predict", "--validate", "x.csv", "--holdout", "colour"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("row, instance, model or level"));
}

//! `servebench study` end to end through the binary, on the tiny synthetic
//! model (`preset:tiny`): files, tables and plots; a deployment that cannot
//! start and a server killed mid-study are recorded as failed while the
//! others complete; `--resume` re-runs only what is missing.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("servebench-study-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn deployment(name: &str, model: &str, quantize: &str, threads: u32) -> String {
    format!("\n[[deployment]]\nname = \"{name}\"\nkind = \"local\"\nmodel = \"{model}\"\nlabel = \"tiny\"\nquantize = \"{quantize}\"\nthreads = {threads}\n")
}

const LOAD: &str = "name = \"tiny study\"\n[load]\nlevels = [1, 5]\nduration = \"1s\"\nwarmup = 1\npause = \"0s\"\nmax_new_tokens = 8\nignore_eos = true\n";

fn study(config: &Path, out: &Path, extra: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_servebench"));
    c.arg("study")
        .arg("--config")
        .arg(config)
        .arg("--out")
        .arg(out)
        .args(extra);
    c
}

/// runs.csv's `deployment,concurrency,status` per row.
fn runs(out: &Path) -> Vec<(String, String, String)> {
    let text = std::fs::read_to_string(out.join("runs.csv")).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = |n: &str| header.iter().position(|h| *h == n).unwrap();
    let (d, c, s) = (col("deployment"), col("concurrency"), col("status"));
    lines
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[d].to_string(), f[c].to_string(), f[s].to_string())
        })
        .collect()
}

#[test]
fn quick_study_writes_tables_plots_and_records_a_failed_start() {
    let dir = tmp("quick");
    let config = dir.join("study.toml");
    let text = format!(
        "{LOAD}{}{}{}",
        deployment("tiny-q8_0-cpu-1", "preset:tiny", "q8_0", 1),
        deployment("broken", "/nonexistent/model.gguf", "q4_1", 1),
        deployment("tiny-q4_1-cpu-2", "preset:tiny", "q4_1", 2),
    );
    std::fs::write(&config, text).unwrap();
    let out = dir.join("out");
    let o = study(&config, &out, &["--predict"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");

    let rows = runs(&out);
    let expect = |d: &str, c: &str, s: &str| (d.to_string(), c.to_string(), s.to_string());
    assert_eq!(
        rows,
        [
            expect("tiny-q8_0-cpu-1", "1", "ok"),
            expect("tiny-q8_0-cpu-1", "5", "ok"),
            expect("broken", "1", "failed"),
            expect("broken", "5", "failed"),
            expect("tiny-q4_1-cpu-2", "1", "ok"),
            expect("tiny-q4_1-cpu-2", "5", "ok"),
        ]
    );
    assert_eq!(
        std::fs::read_to_string(out.join("runs.jsonl"))
            .unwrap()
            .lines()
            .count(),
        6
    );
    for f in [
        "study.toml",
        "runs/tiny-q8_0-cpu-1/c5/summary.json",
        "runs/tiny-q8_0-cpu-1/c5/requests.jsonl",
    ] {
        assert!(out.join(f).exists(), "{f}");
    }

    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    for title in [
        "## Most cost-effective",
        "## Lowest latency",
        "## Highest throughput",
        "## Pareto front",
        "## All runs",
    ] {
        assert!(md.contains(title), "{title}\n{md}");
    }
    // Each pick table has a filled overall row: a row whose instance is
    // cpu-1 or cpu-2 and whose cost is a number. The study has one model, so
    // its own rows would repeat the overall ones and are left out.
    let picks = &md[..md.find("## Pareto front").unwrap()];
    let filled = picks
        .lines()
        .filter(|l| {
            (l.starts_with("| tiny |") || l.starts_with("| **overall** |")) && l.contains("| cpu-")
        })
        .filter(|l| {
            l.rsplit(" | ")
                .next()
                .is_some_and(|c| c.trim_end_matches(" |").parse::<f64>().is_ok())
        })
        .count();
    assert_eq!(filled, 3, "{md}");
    assert!(!picks.contains("\n| tiny |"), "{md}");
    assert!(md.contains("For the lowest cost, buy tiny"), "{md}");
    assert!(md.contains("failed: deployment failed to start"), "{md}");
    // --predict: the model's figure and its error beside every measured run.
    let compared = md
        .split("## Predicted vs measured")
        .nth(1)
        .and_then(|s| s.split("## All runs").next())
        .unwrap_or_else(|| panic!("{md}"));
    let lines: Vec<&str> = compared
        .lines()
        .filter(|l| l.starts_with("| tiny-"))
        .collect();
    assert_eq!(lines.len(), 4, "{compared}");
    assert!(
        lines.iter().all(|l| l.matches('%').count() == 2),
        "{compared}"
    );

    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    let paths = html.matches("<path class=\"series\" d=\"M").count();
    assert_eq!(paths, 6, "2 deployments x 3 line plots");
    assert!(html.contains("<path class=\"pareto\" d=\"M"));
    // Self-contained: nothing is fetched at view time.
    assert!(!html.contains("<script") && !html.contains("src=") && !html.contains("<link"));

    // The report re-renders from the saved runs alone.
    let again = dir.join("again");
    let s = Command::new(env!("CARGO_BIN_EXE_servebench"))
        .args(["report", "--from"])
        .arg(&out)
        .arg("--out")
        .arg(&again)
        .status()
        .unwrap();
    assert!(s.success());
    assert_eq!(runs(&again), rows);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_killed_server_fails_its_runs_and_resume_reruns_only_those() {
    let dir = tmp("kill");
    let config = dir.join("study.toml");
    let text = format!(
        "{LOAD}{}{}",
        deployment("first", "preset:tiny", "q8_0", 1),
        // Longer windows, so the kill lands inside the first level.
        deployment("victim", "preset:tiny", "q8_0", 1) + "[deployment.load]\nduration = \"4s\"\n",
    );
    std::fs::write(&config, text).unwrap();
    let out = dir.join("out");
    let mut child = study(&config, &out, &[])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut log = String::new();
    let mut killed = false;
    for line in BufReader::new(stderr).lines() {
        let line = line.unwrap();
        if let Some(rest) = line.strip_prefix("study: victim: server pid ") {
            let pid: i32 = rest.split_whitespace().next().unwrap().parse().unwrap();
            std::thread::sleep(Duration::from_millis(1500));
            // SAFETY: kill(2) on the pid the study printed for its own child.
            assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
            killed = true;
        }
        log.push_str(&line);
        log.push('\n');
    }
    assert!(child.wait().unwrap().success(), "{log}");
    assert!(killed, "{log}");
    let rows = runs(&out);
    let status: Vec<&str> = rows.iter().map(|r| r.2.as_str()).collect();
    assert_eq!(status, ["ok", "ok", "failed", "failed"], "{log}");
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(
        md.contains("server exited during the run") || md.contains("no request succeeded"),
        "{md}"
    );
    let before = std::fs::read_to_string(out.join("runs.jsonl")).unwrap();
    // When each saved run ended: a re-run would change it.
    let ended = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|l| l.contains("\"deployment\":\"first\""))
            .map(|l| {
                l.split("\"finished_at_unix_ms\":")
                    .nth(1)
                    .unwrap()
                    .split(',')
                    .next()
                    .unwrap()
                    .to_string()
            })
            .collect()
    };
    let first_ended = ended(&before);
    assert_eq!(first_ended.len(), 2);

    let o = study(&config, &out, &["--resume"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    assert!(
        stderr.contains("resuming: 2 of 4 runs already measured"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("first: starting"),
        "only the victim's runs are re-run:\n{stderr}"
    );
    assert_eq!(
        runs(&out).iter().map(|r| r.2.as_str()).collect::<Vec<_>>(),
        ["ok"; 4]
    );
    let after = std::fs::read_to_string(out.join("runs.jsonl")).unwrap();
    assert_eq!(
        ended(&after),
        first_ended,
        "the saved runs are kept as they were"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn invalid_configs_are_rejected_before_anything_runs() {
    let dir = tmp("invalid");
    let config = dir.join("study.toml");
    std::fs::write(
        &config,
        format!(
            "{LOAD}{}threds = 2\n",
            deployment("a", "preset:tiny", "q8_0", 1)
        ),
    )
    .unwrap();
    let out = dir.join("out");
    let o = study(&config, &out, &[]).output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    let line = LOAD.lines().count() + 8 + 1;
    assert!(
        stderr.contains(&format!("{}:{line}: ", config.display())) && stderr.contains("threds"),
        "{stderr}"
    );
    assert!(!out.exists(), "nothing ran");
    let _ = std::fs::remove_dir_all(&dir);
}

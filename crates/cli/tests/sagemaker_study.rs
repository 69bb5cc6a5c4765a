//! Studies with `kind = "sagemaker"` deployments against moto's server (the
//! control plane, a real HTTP service on loopback) and the runtime stand-in
//! in front of `servebench serve`: every endpoint is created, awaited,
//! measured and deleted, also when a creation fails half-way and when the
//! study is interrupted; no model, endpoint config or endpoint is left.

#![cfg(unix)]

#[path = "support/aws_stand_ins.rs"]
mod aws_stand_ins;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use aws_stand_ins::{
    aws_env, moto, moto_resources, runtime, serve, tiny_model, tmp, Running, BIN, REGION, SECRET,
};

/// A sagemaker deployment on an instance type moto accepts (or not).
fn deployment(name: &str, instance: &str) -> String {
    format!(
        "[[deployment]]\nname = \"{name}\"\nkind = \"sagemaker\"\nmodel = \"HuggingFaceTB/SmolLM2-135M-Instruct\"\n\
         label = \"tiny\"\ninstance = \"{instance}\"\nrole_arn = \"arn:aws:iam::123456789012:role/sagemaker\"\n\
         [deployment.env]\nMAX_TOTAL_TOKENS = \"512\"\n\n"
    )
}

const PRICES: &str =
    "[instances.\"ml.g4dn.xlarge\"]\nusd_per_hour = 0.7364\nregion = \"us-west-2\"\n\
    source = \"test catalog\"\ndate = \"2025-06\"\n";

/// `servebench study` against moto (control plane) and the stand-in (runtime).
fn study(dir: &Path, deployments: &str, load: &str, moto_url: &str, runtime_url: &str) -> Command {
    std::fs::write(
        dir.join("study.toml"),
        format!("name = \"sm\"\n{load}\n{deployments}"),
    )
    .unwrap();
    std::fs::write(dir.join("prices.toml"), PRICES).unwrap();
    let mut c = Command::new(BIN);
    c.arg("study")
        .arg("--config")
        .arg(dir.join("study.toml"))
        .arg("--prices")
        .arg(dir.join("prices.toml"))
        .arg("--out")
        .arg(dir.join("out"))
        .args(["--endpoint-poll", "100ms"]);
    aws_env(&mut c, dir, SECRET);
    c.env("AWS_REGION", REGION)
        .env("AWS_ENDPOINT_URL_SAGEMAKER", moto_url)
        .env("AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME", runtime_url);
    c
}

fn rows(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("out/runs.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[track_caller]
fn assert_nothing_left(moto_url: &str) {
    let left = moto_resources(moto_url);
    for kind in ["models", "endpoint_configs", "endpoints"] {
        assert_eq!(left[kind], serde_json::json!([]), "{kind} left: {left}");
    }
}

struct World {
    moto: String,
    runtime: String,
    _processes: Vec<Running>,
}

fn world(dir: &Path) -> Option<World> {
    let model = tiny_model(dir);
    let (server, addr) = serve(
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
    let (rt, runtime_url) = runtime(&format!("http://{addr}"))?;
    let (m, moto_url) = moto()?;
    Some(World {
        moto: moto_url,
        runtime: runtime_url,
        _processes: vec![server, rt, m],
    })
}

const LOAD: &str = "[load]\nlevels = [1, 2]\nrequests = 3\nwarmup = 0\npause = \"0s\"\nmax_new_tokens = 8\nstream = true\n";

#[test]
fn two_endpoints_are_created_measured_priced_and_deleted() {
    let dir = tmp("study-ok");
    let Some(w) = world(&dir) else { return };
    let deployments =
        deployment("first", "ml.g4dn.xlarge") + &deployment("second", "ml.g4dn.xlarge");
    let out = study(&dir, &deployments, LOAD, &w.moto, &w.runtime)
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(
        log.contains("InService") && log.contains("deleted"),
        "{log}"
    );
    let rows = rows(&dir);
    assert_eq!(rows.len(), 4);
    for r in &rows {
        assert_eq!(r["status"], "ok", "{r}");
        assert!(r["cost_per_1m_tokens_usd"].as_f64().unwrap() > 0.0, "{r}");
        let e = &r["endpoint"];
        assert!(
            e["endpoint_name"].as_str().unwrap().starts_with("sb-"),
            "{r}"
        );
        assert!(e["image"]
            .as_str()
            .unwrap()
            .contains("huggingface-pytorch-tgi-inference"));
        let (created, deleted) = (
            e["created_at_unix_ms"].as_u64().unwrap(),
            e["deleted_at_unix_ms"].as_u64().unwrap(),
        );
        assert!(created > 0 && deleted >= created, "{e}");
        assert!(e["billed_instance_hours"].as_f64().unwrap() > 0.0);
    }
    let report = std::fs::read_to_string(dir.join("out/report.md")).unwrap();
    assert!(
        report.contains("SageMaker spend: 2 endpoint(s)"),
        "{report}"
    );
    assert_nothing_left(&w.moto);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_creation_failing_half_way_deletes_what_it_made() {
    let dir = tmp("study-half");
    let Some(w) = world(&dir) else { return };
    // moto rejects ml.g5.2xlarge in CreateEndpointConfig, after CreateModel.
    let deployments = deployment("good", "ml.g4dn.xlarge") + &deployment("bad", "ml.g5.2xlarge");
    let out = study(&dir, &deployments, LOAD, &w.moto, &w.runtime)
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "a failed deployment is a failed row: {log}"
    );
    let rows = rows(&dir);
    let bad: Vec<_> = rows.iter().filter(|r| r["deployment"] == "bad").collect();
    assert_eq!(bad.len(), 2);
    for r in bad {
        let e = r["error"].as_str().unwrap();
        assert!(
            e.contains("CreateEndpointConfig: ValidationException") && !e.contains('\n'),
            "{e}"
        );
    }
    assert!(rows
        .iter()
        .filter(|r| r["deployment"] == "good")
        .all(|r| r["status"] == "ok"));
    assert_nothing_left(&w.moto);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_interrupted_study_deletes_its_endpoint() {
    let dir = tmp("study-int");
    let Some(w) = world(&dir) else { return };
    let load = "[load]\nlevels = [1]\nduration = \"60s\"\nwarmup = 0\npause = \"0s\"\nmax_new_tokens = 8\n";
    let mut child = study(
        &dir,
        &deployment("long", "ml.g4dn.xlarge"),
        load,
        &w.moto,
        &w.runtime,
    )
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let start = Instant::now();
    let mut seen = String::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        seen.push_str(&line);
        seen.push('\n');
        if line.contains("[1/1]") {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "{seen}");
    }
    let live = moto_resources(&w.moto);
    assert_eq!(live["endpoints"].as_array().unwrap().len(), 1, "{live}");
    std::thread::sleep(Duration::from_millis(500));
    // SAFETY: kill(2) on our own child, not yet reaped.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGINT);
    }
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    child.wait().unwrap();
    let log = seen + &rest.join("\n");
    assert!(log.contains("FAILED: interrupted"), "{log}");
    assert!(log.contains("deleted"), "{log}");
    assert!(
        start.elapsed() < Duration::from_secs(50),
        "stopped early: {log}"
    );
    assert_nothing_left(&w.moto);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn parallel_endpoints_live_side_by_side() {
    let dir = tmp("study-par");
    let Some(w) = world(&dir) else { return };
    let load = "[load]\nlevels = [1, 2]\nduration = \"2s\"\nwarmup = 0\npause = \"0s\"\nmax_new_tokens = 8\n";
    let timed = |sub: &str, deployments: &str, parallel: &str| {
        let d = dir.join(sub);
        std::fs::create_dir_all(&d).unwrap();
        let t = Instant::now();
        let out = study(&d, deployments, load, &w.moto, &w.runtime)
            .args(["--parallel", parallel])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        (t.elapsed(), rows(&d))
    };
    let (one, _) = timed("one", &deployment("solo", "ml.g4dn.xlarge"), "2");
    let two = deployment("left", "ml.g4dn.xlarge") + &deployment("right", "ml.g4dn.xlarge");
    let (both, rows) = timed("two", &two, "2");
    assert_eq!(rows.len(), 4);
    let life = |name: &str| {
        let e = &rows.iter().find(|r| r["deployment"] == name).unwrap()["endpoint"];
        (
            e["created_at_unix_ms"].as_u64().unwrap(),
            e["deleted_at_unix_ms"].as_u64().unwrap(),
        )
    };
    let (l, r) = (life("left"), life("right"));
    assert!(l.0 < r.1 && r.0 < l.1, "lifetimes overlap: {l:?} {r:?}");
    assert!(
        both.as_secs_f64() < 1.5 * one.as_secs_f64(),
        "two side by side took {both:?}, one alone {one:?}"
    );
    assert_nothing_left(&w.moto);
    let _ = std::fs::remove_dir_all(&dir);
}

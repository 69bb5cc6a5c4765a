//! Overhead benchmark of the generator (issue 4: at least 2,000 requests/s
//! and 100,000 token events/s on no more than one core). Not a timed test:
//!
//!   cargo run --release -p servebench-loadgen --example overhead -- [SECONDS] [CONCURRENCY] [RATE]
//!
//! Without RATE: closed loop at CONCURRENCY (the generator's ceiling). With
//! RATE: open loop at RATE requests/s (constant arrivals, at most CONCURRENCY
//! in flight), to see what a given load costs.
//! A trivial TGI-style SSE server (the tests' scripted server) runs in a child
//! process, answering every request at once with 50 token events in 5
//! writes. The generator runs in this process on one thread, closed loop,
//! and the CPU time of this process alone (getrusage) is reported.

#[path = "../tests/support/scripted_server.rs"]
mod scripted_server;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use scripted_server::{tgi_token, Reply, ScriptedServer};
use servebench_loadgen::api::RequestParams;
use servebench_loadgen::progress::NoProgress;
use servebench_loadgen::{
    run_level, Api, Cancel, Client, ClientConfig, LevelConfig, LoadModel, Prompt, Prompts,
    StopCondition,
};

const TOKENS: u32 = 50;
const WRITES: u32 = 5;

fn serve() {
    // The whole body is built once: the server must be cheaper than the client.
    let mut reply = Reply::sse();
    let per_write = TOKENS / WRITES;
    for w in 0..WRITES {
        let mut chunk = String::new();
        for i in 1..=per_write {
            let n = w * per_write + i;
            chunk.push_str(&format!("data: {}\n\n", tgi_token(n, TOKENS, "x")));
        }
        reply = reply.raw(chunk.as_bytes());
    }
    let server = ScriptedServer::start(move |_| reply.clone());
    println!("{}", server.addr.port());
    std::thread::sleep(Duration::from_secs(3600));
}

fn cpu_time() -> Duration {
    // SAFETY: getrusage only writes the struct we hand it.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--serve") {
        return serve();
    }
    let seconds: u64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(10);
    let concurrency: u32 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(32);
    let rate: Option<f64> = args.get(3).and_then(|s| s.parse().ok());
    let mut child = Command::new(std::env::current_exe().expect("own path"))
        .arg("--serve")
        .stdout(Stdio::piped())
        .spawn()
        .expect("server child starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("piped"))
        .read_line(&mut line)
        .expect("server prints its port");
    let url = format!("http://127.0.0.1:{}", line.trim());

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let client = Client::new(ClientConfig {
        base_url: url,
        api: Api::Tgi,
        params: RequestParams {
            stream: true,
            model_name: None,
            ignore_eos: false,
            temperature: None,
            extra_body: None,
        },
        api_key: None,
        timeout: Duration::from_secs(10),
    })
    .expect("client");
    let prompts = Prompts::new(vec![Prompt::new(
        "Write a 500 word long story about llamas",
        TOKENS,
    )])
    .expect("prompts");
    let cfg = LevelConfig {
        load: match rate {
            Some(rate_s) => LoadModel::Open {
                rate_s,
                arrival: servebench_loadgen::Arrival::Constant,
                max_in_flight: concurrency,
            },
            None => LoadModel::Closed { concurrency },
        },
        stop: StopCondition {
            duration: Some(Duration::from_secs(seconds)),
            requests: None,
        },
        warmup: 0,
        pause: Duration::ZERO,
        slo: Vec::new(),
        seed: 0,
    };
    let (_h, cancel) = Cancel::new();
    let (cpu0, t0) = (cpu_time(), Instant::now());
    let res = rt
        .block_on(run_level(
            &client,
            &prompts,
            &cfg,
            Arc::new(NoProgress),
            &cancel,
        ))
        .expect("level runs");
    let (cpu, wall) = (cpu_time() - cpu0, t0.elapsed());
    let _ = child.kill();
    let _ = child.wait();

    let s = &res.summary;
    let events: u64 = res.records.iter().map(|r| u64::from(r.token_events)).sum();
    let secs = s.duration_s.as_secs_f64();
    println!(
        "{}, {} requests ({} failed, {} dropped) in {secs:.2}s",
        s.info.level, s.success, s.failed, s.dropped
    );
    println!("requests/s            {:.0}", s.request_rate_s);
    println!("token events/s        {:.0}", events as f64 / secs);
    println!(
        "generator CPU         {:.2} s over {:.2} s wall = {:.2} cores",
        cpu.as_secs_f64(),
        wall.as_secs_f64(),
        cpu.as_secs_f64() / wall.as_secs_f64()
    );
    if let (Some(ttft), Some(e2e)) = (s.ttft_ms, s.e2e_ms) {
        println!(
            "ttft_ms p50 {:.3}, e2e_ms p50 {:.3}, p99 {:.3}",
            ttft.p50, e2e.p50, e2e.p99
        );
    }
}

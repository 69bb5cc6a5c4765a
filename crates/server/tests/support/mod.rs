//! Shared helpers of the server's integration tests: a real server on a
//! loopback port (in this process, on its own runtime), the tiny synthetic
//! model, and the real model when present.

#![allow(dead_code)]

use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;

use servebench_engine::synthetic::{parse_quant, preset, write_model, VocabKind};
use servebench_engine::Engine;
use servebench_server::{Server, ServerConfig};

// Skipping rules (and the real model's path) are the engine tests' own.
#[path = "../../../engine/tests/support/mod.rs"]
mod engine_support;
#[allow(unused_imports)] // each test binary uses its own subset
pub use engine_support::skip;

/// The tiny random model (written once per test binary).
pub fn tiny_engine() -> Arc<Engine> {
    static ENGINE: OnceLock<Arc<Engine>> = OnceLock::new();
    ENGINE
        .get_or_init(|| {
            let dir =
                std::env::temp_dir().join(format!("servebench-server-test-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let path = dir.join("tiny.gguf");
            write_model(
                preset("tiny").unwrap(),
                parse_quant("q8_0").unwrap(),
                VocabKind::Bpe,
                3,
                &path,
            )
            .unwrap();
            let engine = Engine::load(&path).unwrap();
            let _ = std::fs::remove_dir_all(&dir);
            Arc::new(engine)
        })
        .clone()
}

/// The real SmolLM2 model, or `None` (skipped) when it is not fetched.
pub fn real_engine() -> Option<Arc<Engine>> {
    let path = engine_support::real_model()?;
    Some(Arc::new(Engine::load(&path).unwrap()))
}

/// Default limits for `engine`.
pub fn config_for(engine: &Engine) -> ServerConfig {
    ServerConfig::for_model("test-model", engine.model.config().context_length)
}

/// A server on 127.0.0.1 with a free port; stopped (gracefully) on drop.
pub struct TestServer {
    pub url: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl TestServer {
    pub fn start(engine: Arc<Engine>, config: ServerConfig) -> Self {
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let server = Server::bind(engine, config, "127.0.0.1:0".parse().unwrap())
                    .await
                    .unwrap();
                addr_tx.send(server.local_addr()).unwrap();
                server
                    .run_until(async {
                        let _ = stopped.await;
                    })
                    .await
                    .unwrap();
            });
        });
        let addr = addr_rx.recv().expect("server started");
        Self {
            url: format!("http://{addr}"),
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    pub fn at(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            if !std::thread::panicking() {
                t.join().expect("server thread");
            }
        }
    }
}

/// The value of a Prometheus sample line `name{labels} value` (0 if absent).
pub fn metric(text: &str, name_and_labels: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            let (key, value) = l.rsplit_once(' ')?;
            (key == name_and_labels).then(|| value.parse().ok())?
        })
        .unwrap_or(0.0)
}

/// POSTs `body` as JSON to `url`.
pub async fn post_json(
    client: &reqwest::Client,
    url: &str,
    body: &serde_json::Value,
) -> reqwest::Response {
    client.post(url).json(body).send().await.unwrap()
}

/// The body of GET `url`.
pub async fn get_text(client: &reqwest::Client, url: &str) -> String {
    client.get(url).send().await.unwrap().text().await.unwrap()
}

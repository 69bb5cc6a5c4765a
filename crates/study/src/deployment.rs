//! A deployment's lifecycle. Local: `servebench serve` started on a free
//! loopback port (port 0; the address is read from its log), ready once
//! `/health` answers 200, stopped with SIGTERM (then SIGKILL) afterwards.
//! Remote: only a URL and a key (SageMaker endpoints: AWS settings and
//! credentials, resolved once when the deployment starts).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Why a deployment could not be used.
#[derive(Debug, thiserror::Error)]
pub enum DeploymentError {
    #[error("could not start `{bin}`: {source}")]
    Spawn {
        bin: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the server exited ({status}) before it was ready: {log_tail}")]
    Exited { status: String, log_tail: String },
    #[error("the server was not healthy within {0:?}")]
    NotReady(Duration),
    #[error("environment variable `{0}` (api_key_env) is not set")]
    MissingKey(String),
    /// AWS settings or credentials of a SageMaker endpoint.
    #[error("{0}")]
    Aws(servebench_loadgen::LoadgenError),
    /// Creating or waiting for a SageMaker endpoint (one line: call, AWS code, advice).
    #[error("{0}")]
    Sagemaker(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// A `servebench serve` child process.
pub struct LocalServer {
    child: Arc<Mutex<Child>>,
    pid: u32,
    pub url: String,
    log: PathBuf,
}

/// The server's own error line if it printed one (a backtrace may follow
/// it), else the last lines of its log.
pub fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    if let Some(e) = text.lines().find(|l| l.starts_with("Error")) {
        return e.to_string();
    }
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(3)..].join(" / ")
}

impl LocalServer {
    /// Starts the server with `args` (model, quantize, threads, ...) plus
    /// `--host 127.0.0.1 --port 0`, logging to `log`, and waits until it is
    /// healthy or `ready_timeout` passes.
    pub async fn start(
        bin: &Path,
        args: &[String],
        log: &Path,
        ready_timeout: Duration,
    ) -> Result<Self, DeploymentError> {
        let out = File::create(log)?;
        let child = Command::new(bin)
            .arg("serve")
            .args(args)
            .args(["--host", "127.0.0.1", "--port", "0"])
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .map_err(|source| DeploymentError::Spawn {
                bin: bin.to_path_buf(),
                source,
            })?;
        let pid = child.id();
        let mut server = Self {
            child: Arc::new(Mutex::new(child)),
            pid,
            url: String::new(),
            log: log.to_path_buf(),
        };
        let deadline = Instant::now() + ready_timeout;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .map_err(|e| DeploymentError::Io(std::io::Error::other(e)))?;
        loop {
            if let Some(status) = server.exit_status() {
                return Err(DeploymentError::Exited {
                    status,
                    log_tail: log_tail(log),
                });
            }
            if server.url.is_empty() {
                // The server prints `listening on http://ADDR` once bound.
                let text = std::fs::read_to_string(log).unwrap_or_default();
                if let Some(rest) = text.split("listening on ").nth(1) {
                    server.url = rest.split_whitespace().next().unwrap_or("").to_string();
                }
            }
            if !server.url.is_empty() {
                let health = http.get(format!("{}/health", server.url)).send().await;
                if health.is_ok_and(|r| r.status().is_success()) {
                    return Ok(server);
                }
            }
            if Instant::now() >= deadline {
                return Err(DeploymentError::NotReady(ready_timeout));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    pub fn log(&self) -> &Path {
        &self.log
    }

    /// `Some(how it ended)` once the process has exited.
    pub fn exit_status(&self) -> Option<String> {
        let mut child = self.child.lock().unwrap_or_else(|e| e.into_inner());
        match child.try_wait() {
            Ok(Some(s)) => Some(s.to_string()),
            Ok(None) => None,
            Err(e) => Some(e.to_string()),
        }
    }

    /// A cheap handle that can tell, from another task, whether the process has exited.
    pub fn watcher(&self) -> impl Fn() -> Option<String> + Send + 'static {
        let child = self.child.clone();
        move || {
            let mut c = child.lock().unwrap_or_else(|e| e.into_inner());
            match c.try_wait() {
                Ok(Some(s)) => Some(s.to_string()),
                Ok(None) => None,
                Err(e) => Some(e.to_string()),
            }
        }
    }

    /// SIGTERM (the server finishes in-flight requests), SIGKILL after `grace`.
    pub async fn stop(self, grace: Duration) {
        if self.exit_status().is_some() {
            return;
        }
        // SAFETY: kill(2) on our own child's pid, which is not yet reaped.
        unsafe {
            libc::kill(self.pid as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + grace;
        while self.exit_status().is_none() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Drop kills whatever is left.
    }
}

impl Drop for LocalServer {
    /// Never leave a server running behind an early return or a panic.
    fn drop(&mut self) {
        let mut child = self.child.lock().unwrap_or_else(|e| e.into_inner());
        if matches!(child.try_wait(), Ok(None)) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

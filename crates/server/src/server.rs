//! Binding, serving, and shutting down: on SIGTERM/SIGINT the server stops
//! accepting, lets in-flight requests finish (bounded by
//! `shutdown_timeout`), then the model thread drains and exits.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use servebench_engine::Engine;
use tokio::net::TcpListener;

use crate::api::{router, AppState};
use crate::config::ServerConfig;
use crate::infer::Infer;
use crate::validation::Validator;

/// A bound server, not yet serving.
pub struct Server {
    listener: TcpListener,
    app: Router,
    batcher: JoinHandle<()>,
    config: Arc<ServerConfig>,
}

impl Server {
    /// Checks the limits against the model, starts the model thread and
    /// binds `addr` (port 0 picks a free port).
    pub async fn bind(
        engine: Arc<Engine>,
        config: ServerConfig,
        addr: SocketAddr,
    ) -> anyhow::Result<Self> {
        config
            .check(engine.model.config().context_length)
            .map_err(anyhow::Error::msg)?;
        crate::metrics::install();
        let config = Arc::new(config);
        let (infer, batcher) = Infer::start(engine.clone(), &config);
        let state = AppState {
            infer,
            validator: Validator::new(engine, config.clone()),
            started_unix: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        };
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
        Ok(Self {
            listener,
            app: router(state),
            batcher,
            config,
        })
    }

    /// The address clients connect to.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Serves until `shutdown` completes, then finishes in-flight requests
    /// (at most `shutdown_timeout`) and stops the model thread.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let (stopping_tx, stopping) = tokio::sync::oneshot::channel::<()>();
        let signal = async move {
            shutdown.await;
            let _ = stopping_tx.send(());
        };
        let serving = axum::serve(self.listener, self.app).with_graceful_shutdown(signal);
        let timeout = self.config.shutdown_timeout;
        let deadline = async move {
            if stopping.await.is_ok() {
                tokio::time::sleep(timeout).await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            served = serving => served?,
            () = deadline => {
                eprintln!("servebench: in-flight requests did not finish within {timeout:?}; exiting");
                return Ok(());
            }
        }
        // Every handle to the batcher is gone with the router: it drains.
        let batcher = self.batcher;
        tokio::task::spawn_blocking(move || batcher.join())
            .await?
            .map_err(|_| anyhow::anyhow!("the model thread panicked"))?;
        Ok(())
    }
}

/// Serves on `addr` until SIGTERM or SIGINT.
pub async fn serve(
    engine: Arc<Engine>,
    config: ServerConfig,
    addr: SocketAddr,
) -> anyhow::Result<()> {
    let server = Server::bind(engine, config, addr).await?;
    eprintln!("servebench: listening on http://{}", server.local_addr());
    server.run_until(termination()).await?;
    eprintln!("servebench: stopped");
    Ok(())
}

/// Completes on SIGTERM or Ctrl-C.
async fn termination() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    () = ctrl_c => {}
                }
            }
            Err(_) => ctrl_c.await,
        }
    }
    #[cfg(not(unix))]
    ctrl_c.await;
}

//! The dev server's HTTP/1 front door: hyper with a header-read timeout and a connection
//! limit (the Lambda front door has its own limits).
//!
//! Invariants: a connection that has not sent a complete request head within
//! [`ServerLimits::header_read_timeout`] — a new connection, or a keep-alive one between
//! requests — is closed, so half-open connections (slowloris) cannot pile up; at most
//! [`ServerLimits::max_connections`] connections are served at once, and one past the limit is
//! closed at once. Once stopped, no connection is accepted and those open get
//! [`DRAIN_TIMEOUT`] to finish.

use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

/// How long open connections may go on after the server is stopped.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy)]
pub struct ServerLimits {
    /// How long a request head (every header) may take to arrive, idle keep-alive time
    /// included.
    pub header_read_timeout: Duration,
    pub max_connections: usize,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits { header_read_timeout: Duration::from_secs(10), max_connections: 1024 }
    }
}

/// Serves `app` on `listener` until `stopped` turns true.
pub async fn serve(listener: TcpListener, app: axum::Router, mut stopped: watch::Receiver<bool>, limits: ServerLimits) {
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let mut connections = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stopped.wait_for(|stop| *stop) => break,
        };
        while connections.try_join_next().is_some() {}
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(error) => {
                // Out of file descriptors and the like: let it pass rather than spin.
                tracing::warn!(%error, "accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tracing::warn!(limit = limits.max_connections, "connection limit reached; a new connection was closed");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(app.clone());
        connections.spawn(async move {
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_read_timeout)
                .serve_connection(TokioIo::new(stream), service);
            if let Err(error) = connection.await {
                tracing::debug!(%error, "connection ended with an error");
            }
            drop(permit);
        });
    }
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, async { while connections.join_next().await.is_some() {} });
    if drained.await.is_err() {
        tracing::debug!("connections still open after the drain timeout were closed");
    }
}

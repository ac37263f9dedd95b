//! `amber serve`: an HTTP and WebSocket host for runtime objects, on tokio
//! and axum.
//!
//! Routes: `/{class}/{name}` and `/{class}/{name}/{*rest}` go to the
//! object `name` of `class` as a `Request` whose path is `/{rest}`;
//! `/metrics` is Prometheus' text format; `/` lists the classes.
//! Replies leave only once their turn's writes are durable (the runtime's
//! output gate), so a 200 means the write survives a crash.

pub mod classes;
mod forward;
mod http;
mod ws;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::error::{Error, ErrorKind, Result};
use crate::runtime::{Runtime, RuntimeBuilder};

pub use http::router;

/// Registers the built-in example classes: `counter`, `chat` and `kv`.
pub fn with_builtin_classes(b: RuntimeBuilder) -> RuntimeBuilder {
    b.class("counter", classes::counter::Counter::default)
        .class("chat", classes::chat::Chat::default)
        .class("kv", classes::kv::KvFace::default)
}

/// Serves `rt` on `listener` until `shutdown` resolves, then shuts down
/// gracefully: stops accepting connections, lets requests in flight finish
/// (their turns commit and become durable), closes every WebSocket with
/// 1001, and closes every object, waiting until its writes are durable.
pub async fn serve(
    rt: Runtime,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let addr = listener
        .local_addr()
        .map_err(|e| Error::io("listener address", e))?;
    tracing::info!(%addr, classes = ?rt.classes(), "amber serving");
    let app = router(rt.clone());
    let server = axum::serve(listener, app).with_graceful_shutdown(shutdown);
    let res = server.await;
    tracing::info!("no longer accepting connections; closing sockets and objects");
    ws::close_all(&rt).await;
    let rt2 = rt.clone();
    tokio::task::spawn_blocking(move || {
        rt2.shutdown();
        // Every object is closed and its writes are in the bucket: give
        // up the lease so other hosts take the objects at once.
        if let Some(c) = rt2.store().cluster() {
            if let Err(e) = c.leave() {
                tracing::warn!(error = %e, "could not delete this host's lease");
            }
        }
    })
    .await
    .map_err(|e| Error::new(ErrorKind::Io, format!("shutdown task failed: {e}")))?;
    res.map_err(|e| Error::io("serve", e))
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown signal received");
}

/// How long graceful shutdown waits for sockets to say goodbye.
pub(crate) const SOCKET_CLOSE_GRACE: Duration = Duration::from_millis(500);

pub(crate) type Shared = Arc<Runtime>;

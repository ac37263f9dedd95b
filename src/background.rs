//! The store's async runtime: a small tokio runtime on which uploads,
//! lease renewals and bucket reads run. The store owns it; shipping and
//! cluster mode get a [`Spawner`], a handle that cannot keep the runtime
//! alive, so the runtime is only ever dropped by the store, outside itself
//! (tokio panics when a runtime is dropped from one of its own tasks).

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::runtime::{Handle, Runtime};

use crate::error::{Error, Result};

/// Worker threads: uploads are I/O bound, and the machine's cores belong
/// to the objects' turns.
const WORKER_THREADS: usize = 2;
/// How long dropping the runtime waits for tracked tasks (uploads) to land.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// How long tokio gets to stop the remaining tasks after that.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);

/// Owns the runtime. Dropping it lets tracked tasks finish (bounded), so a
/// process that exits right after its last commit still ships it.
pub(crate) struct Background {
    rt: Option<Runtime>,
    spawner: Spawner,
}

/// Runs futures on the store's runtime. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Spawner {
    handle: Handle,
    /// Tracked tasks still running; `Background::drop` waits for them.
    active: Arc<AtomicUsize>,
}

impl Background {
    pub(crate) fn start() -> Result<Background> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(WORKER_THREADS)
            .thread_name("amber-io")
            .enable_all()
            .build()
            .map_err(|e| Error::io("starting the store's async runtime", e))?;
        let spawner = Spawner {
            handle: rt.handle().clone(),
            active: Arc::new(AtomicUsize::new(0)),
        };
        Ok(Background {
            rt: Some(rt),
            spawner,
        })
    }

    pub(crate) fn spawner(&self) -> Spawner {
        self.spawner.clone()
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let Some(rt) = self.rt.take() else { return };
        if Handle::try_current().is_ok() {
            // Inside another runtime a blocking wait could deadlock it.
            // Abandoned uploads are safe: their commits stay in the local
            // WAL, which is not checkpointed until shipped.
            rt.shutdown_background();
            return;
        }
        let deadline = Instant::now() + DRAIN_TIMEOUT;
        while self.spawner.active.load(Ordering::Acquire) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
        rt.shutdown_timeout(SHUTDOWN_TIMEOUT);
    }
}

impl Spawner {
    /// Runs `fut` on the runtime and waits for it. Safe to call from any
    /// thread, including a thread of another tokio runtime.
    pub(crate) fn block_on<F>(&self, fut: F) -> F::Output
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let (tx, rx) = std::sync::mpsc::channel();
        self.handle.spawn(async move {
            let _ = tx.send(fut.await);
        });
        rx.recv().expect("the store's runtime dropped a task")
    }

    /// Runs `fut` in the background; nothing waits for it at shutdown.
    pub(crate) fn spawn<F>(&self, fut: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.handle.spawn(fut);
    }

    /// Runs `fut` in the background; dropping the runtime waits for it.
    pub(crate) fn spawn_tracked<F>(&self, fut: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let guard = Tracked::new(self.active.clone());
        self.handle.spawn(async move {
            let _guard = guard;
            fut.await;
        });
    }
}

/// Counts a tracked task for as long as it lives.
struct Tracked(Arc<AtomicUsize>);

impl Tracked {
    fn new(n: Arc<AtomicUsize>) -> Self {
        n.fetch_add(1, Ordering::AcqRel);
        Tracked(n)
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

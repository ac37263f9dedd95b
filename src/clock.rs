//! Time as a dependency, so tests can drive commit times, alarms, retries
//! and timeouts.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::Notify;

/// A boxed sleep, so `Clock` stays object-safe.
pub type Sleep = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// A source of wall-clock time in milliseconds since the Unix epoch, and
/// of the sleeps that retries and timeouts wait on.
pub trait Clock: Send + Sync + 'static {
    fn now_ms(&self) -> u64;

    /// A future that completes once `d` has passed on this clock. Runs on
    /// the store's tokio runtime.
    fn sleep(&self, d: Duration) -> Sleep {
        Box::pin(tokio::time::sleep(d))
    }
}

/// The system's wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    }
}

/// How a [`ManualClock`]'s sleeps pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SleepMode {
    /// In real time, without moving the clock (the default). Tests that
    /// step the clock from the same thread that waits for a commit need
    /// this: a retry under them must not wait for a step that cannot come.
    Real,
    /// Until `set` or `advance` moves the clock to the sleep's deadline.
    Wait,
    /// At once, moving the clock to the deadline if it is behind: a retry
    /// costs virtual time and no real time.
    Advance,
}

/// A clock that only moves when told to. For deterministic tests.
#[derive(Debug)]
pub struct ManualClock {
    // Shared with `Wait` sleeps, which outlive the borrow they start from.
    inner: Arc<Manual>,
}

#[derive(Debug)]
struct Manual {
    now: AtomicU64,
    mode: AtomicU8,
    moved: Notify,
}

impl Default for ManualClock {
    fn default() -> Self {
        ManualClock::new(0)
    }
}

impl ManualClock {
    pub fn new(start_ms: u64) -> Self {
        ManualClock {
            inner: Arc::new(Manual {
                now: AtomicU64::new(start_ms),
                mode: AtomicU8::new(SleepMode::Real as u8),
                moved: Notify::new(),
            }),
        }
    }

    /// The same clock, with its sleeps passing as `mode` says.
    pub fn with_sleep_mode(self, mode: SleepMode) -> Self {
        self.set_sleep_mode(mode);
        self
    }

    /// Changes how sleeps pass; sleeps already waiting re-check at once.
    pub fn set_sleep_mode(&self, mode: SleepMode) {
        self.inner.mode.store(mode as u8, Ordering::SeqCst);
        self.inner.moved.notify_waiters();
    }

    pub fn sleep_mode(&self) -> SleepMode {
        self.inner.mode()
    }

    pub fn set(&self, ms: u64) {
        self.inner.now.store(ms, Ordering::SeqCst);
        self.inner.moved.notify_waiters();
    }

    pub fn now(&self) -> u64 {
        self.inner.now()
    }

    pub fn advance(&self, ms: u64) {
        self.inner.now.fetch_add(ms, Ordering::SeqCst);
        self.inner.moved.notify_waiters();
    }
}

impl Manual {
    fn now(&self) -> u64 {
        self.now.load(Ordering::SeqCst)
    }

    fn mode(&self) -> SleepMode {
        match self.mode.load(Ordering::SeqCst) {
            x if x == SleepMode::Wait as u8 => SleepMode::Wait,
            x if x == SleepMode::Advance as u8 => SleepMode::Advance,
            _ => SleepMode::Real,
        }
    }

    /// Waits until the clock reads at least `deadline`, or the mode stops
    /// being `Wait`. Registers for the wake-up before each check, so a move
    /// between the check and the wait is not missed.
    async fn until(self: Arc<Self>, deadline: u64) {
        loop {
            let moved = self.moved.notified();
            tokio::pin!(moved);
            moved.as_mut().enable();
            if self.now() >= deadline || self.mode() != SleepMode::Wait {
                return;
            }
            moved.await;
        }
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.inner.now()
    }

    fn sleep(&self, d: Duration) -> Sleep {
        let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let deadline = self.inner.now().saturating_add(ms);
        match self.inner.mode() {
            SleepMode::Real => Box::pin(tokio::time::sleep(d)),
            SleepMode::Advance => {
                self.inner.now.fetch_max(deadline, Ordering::SeqCst);
                self.inner.moved.notify_waiters();
                Box::pin(std::future::ready(()))
            }
            SleepMode::Wait => Box::pin(self.inner.clone().until(deadline)),
        }
    }
}

impl<C: Clock> Clock for Arc<C> {
    fn now_ms(&self) -> u64 {
        (**self).now_ms()
    }

    fn sleep(&self, d: Duration) -> Sleep {
        (**self).sleep(d)
    }
}

/// Awaits `fut` for at most `d` on `clock`: `None` if the time ran out.
pub(crate) async fn timeout<F: Future>(
    clock: &dyn Clock,
    d: Duration,
    fut: F,
) -> Option<F::Output> {
    tokio::select! {
        out = fut => Some(out),
        () = clock.sleep(d) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
    }

    #[test]
    fn wait_sleeps_end_when_the_clock_reaches_their_deadline() {
        let clock = Arc::new(ManualClock::new(1_000).with_sleep_mode(SleepMode::Wait));
        rt().block_on(async {
            let sleep = tokio::spawn(clock.sleep(Duration::from_millis(500)));
            tokio::task::yield_now().await;
            clock.advance(499);
            tokio::time::sleep(Duration::from_millis(20)).await;
            assert!(!sleep.is_finished(), "woke 1 ms early");
            clock.advance(1);
            sleep.await.unwrap();
        });
    }

    #[test]
    fn advance_sleeps_move_the_clock_and_return_at_once() {
        let clock = ManualClock::new(1_000).with_sleep_mode(SleepMode::Advance);
        rt().block_on(clock.sleep(Duration::from_secs(3_600)));
        assert_eq!(clock.now(), 1_000 + 3_600_000);
    }

    #[test]
    fn a_timeout_on_a_manual_clock_fires_only_when_time_moves() {
        let clock = Arc::new(ManualClock::new(0).with_sleep_mode(SleepMode::Wait));
        rt().block_on(async {
            let c = clock.clone();
            let t = tokio::spawn(async move {
                timeout(&*c, Duration::from_secs(1), std::future::pending::<()>()).await
            });
            tokio::time::sleep(Duration::from_millis(20)).await;
            assert!(!t.is_finished());
            clock.advance(1_000);
            assert_eq!(t.await.unwrap(), None);
        });
    }
}

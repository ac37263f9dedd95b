//! The one retry policy: exponential backoff, sleeping on the store's
//! clock, so that a `ManualClock` drives retries in tests.

use std::future::Future;
use std::time::Duration;

use crate::clock::Clock;
use crate::error::Result;

/// Tries up to `attempts` times, sleeping `base`, then twice as long each
/// time up to `max`, between tries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Backoff {
    pub base: Duration,
    pub max: Duration,
    pub attempts: u32,
}

/// What one try came to, when it did not fail for good (an `Err` from the
/// try ends the retries at once).
pub(crate) enum Step<T, E> {
    Done(T),
    /// The outcome is unknown or the fault may pass: try again.
    Retry(E),
}

impl Backoff {
    /// For the small bucket writes that decide ownership and epochs:
    /// claims, manifests, ownership checks.
    pub(crate) const BUCKET: Backoff = Backoff {
        base: Duration::from_millis(50),
        max: Duration::from_secs(5),
        attempts: 4,
    };

    /// Uploads: `attempts` tries from `base`, capped like `BUCKET`.
    pub(crate) fn uploads(base: Duration, attempts: u32) -> Backoff {
        Backoff {
            base,
            attempts,
            ..Backoff::BUCKET
        }
    }

    /// Runs `op` (given the attempt number, from 0) until it is done,
    /// fails for good (the outer `Err`), or has been tried `attempts`
    /// times (the inner `Err`: the last try's error).
    pub(crate) async fn run<T, E, F, Fut>(
        &self,
        clock: &dyn Clock,
        mut op: F,
    ) -> Result<Result<T, E>>
    where
        F: FnMut(u32) -> Fut,
        Fut: Future<Output = Result<Step<T, E>>>,
    {
        let mut delay = self.base;
        let mut attempt = 0;
        loop {
            match op(attempt).await? {
                Step::Done(t) => return Ok(Ok(t)),
                Step::Retry(e) if attempt + 1 >= self.attempts.max(1) => return Ok(Err(e)),
                Step::Retry(_) => {}
            }
            clock.sleep(delay).await;
            delay = (delay * 2).min(self.max);
            attempt += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{ManualClock, SleepMode};
    use crate::error::{Error, ErrorKind};

    fn block_on<F: Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn backs_off_on_the_clock_doubling_up_to_the_cap() {
        let clock = ManualClock::new(0).with_sleep_mode(SleepMode::Advance);
        let policy = Backoff {
            base: Duration::from_secs(1),
            max: Duration::from_secs(3),
            attempts: 4,
        };
        let mut seen = Vec::new();
        let out: Result<Result<(), u32>> = block_on(policy.run(&clock, |n| {
            seen.push((n, clock.now()));
            async move { Ok(Step::Retry(n)) }
        }));
        // Sleeps of 1, 2 and 3 s (capped), none after the last try.
        assert_eq!(seen, [(0, 0), (1, 1_000), (2, 3_000), (3, 6_000)]);
        assert_eq!(out.unwrap(), Err(3));
        assert_eq!(clock.now(), 6_000);
    }

    #[test]
    fn stops_at_the_first_success_or_a_final_error() {
        let clock = ManualClock::new(0).with_sleep_mode(SleepMode::Advance);
        let ok: Result<Result<u32, ()>> = block_on(Backoff::BUCKET.run(&clock, |n| async move {
            Ok(if n == 1 {
                Step::Done(7)
            } else {
                Step::Retry(())
            })
        }));
        assert_eq!(ok.unwrap(), Ok(7));
        let mut tries = 0;
        let fatal: Result<Result<(), ()>> = block_on(Backoff::BUCKET.run(&clock, |_| {
            tries += 1;
            async { Err(Error::new(ErrorKind::Corruption, "no")) }
        }));
        assert_eq!(fatal.unwrap_err().kind(), ErrorKind::Corruption);
        assert_eq!(tries, 1);
    }
}

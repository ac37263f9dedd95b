#![allow(dead_code)]
//! Helpers for the runtime and server tests.

use std::sync::Arc;
use std::time::{Duration, Instant};

use amber::runtime::{Runtime, RuntimeBuilder, RuntimeConfig};
use amber::{Config, ManualClock, Store};

/// A store in a fresh directory, on a manual clock.
pub fn store_at(dir: &std::path::Path, clock: Arc<ManualClock>) -> Store {
    Store::open(Config::new(dir).with_clock(clock)).unwrap()
}

/// Fast housekeeping and alarm polling, seeded jitter.
pub fn fast_config() -> RuntimeConfig {
    RuntimeConfig {
        workers: 2,
        housekeeping_interval: Duration::from_millis(10),
        alarm_poll_interval: Duration::from_millis(5),
        rng_seed: Some(7),
        ..RuntimeConfig::default()
    }
}

pub fn start(b: RuntimeBuilder, cfg: RuntimeConfig) -> Runtime {
    b.config(cfg).start().unwrap()
}

/// Polls `f` until it returns true, for at most `secs` seconds.
pub fn eventually(secs: u64, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    f()
}
pub mod child;
pub mod cluster;
pub mod server;

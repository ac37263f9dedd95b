//! One host's way to the bucket: a `FaultyStore` (seeded faults, outages)
//! whose hook is a `Gate` that can hold or refuse one kind of request.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use amber::testing::{Faults, FaultyStore, Hook, Op, Request};
use async_trait::async_trait;
use object_store::ObjectStore;

/// A hook that, while armed, holds every request of one kind (`Op::Put`
/// or `Op::Get`) whose key contains a pattern until released (or 5 s
/// pass), and counts what it holds. The test arms it, waits until a
/// request is parked, acts, then releases. It can also refuse such
/// requests outright (`refuse`).
#[derive(Default)]
pub struct Gate {
    rule: Mutex<Option<(Op, &'static str)>>,
    refuse: Mutex<Option<(Op, &'static str)>>,
    parked: AtomicU64,
}

impl Gate {
    pub fn arm(&self, op: Op, pattern: &'static str) {
        self.parked.store(0, Ordering::SeqCst);
        *self.rule.lock().unwrap() = Some((op, pattern));
    }

    pub fn refuse(&self, op: Op, pattern: &'static str) {
        *self.refuse.lock().unwrap() = Some((op, pattern));
    }

    pub fn release(&self) {
        *self.rule.lock().unwrap() = None;
        *self.refuse.lock().unwrap() = None;
    }

    pub fn parked(&self) -> u64 {
        self.parked.load(Ordering::SeqCst)
    }

    fn holds(&self, req: &Request<'_>) -> bool {
        self.rule
            .lock()
            .unwrap()
            .is_some_and(|(o, p)| o == req.op && req.key.contains(p))
    }
}

#[async_trait]
impl Hook for Gate {
    async fn before(&self, req: Request<'_>) -> object_store::Result<()> {
        let refused = self
            .refuse
            .lock()
            .unwrap()
            .is_some_and(|(o, p)| o == req.op && req.key.contains(p));
        if refused {
            return Err(object_store::Error::Generic {
                store: "Gate",
                source: "refused by the test (503)".into(),
            });
        }
        if !self.holds(&req) {
            return Ok(());
        }
        self.parked.fetch_add(1, Ordering::SeqCst);
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.holds(&req) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        Ok(())
    }
}

/// One host's way to the bucket.
pub struct Link {
    pub faulty: Arc<FaultyStore>,
    pub gate: Arc<Gate>,
    /// Steps left before the fault profile is switched off (0: none).
    pub fault_steps: u32,
    /// Steps left before the outage ends (0: none).
    pub outage_steps: u32,
}

impl Link {
    pub fn new(inner: &Arc<dyn ObjectStore>, seed: u64) -> Link {
        let gate = Arc::new(Gate::default());
        let faulty =
            Arc::new(FaultyStore::new(inner.clone(), seed, Faults::none()).with_hook(gate.clone()));
        Link {
            faulty,
            gate,
            fault_steps: 0,
            outage_steps: 0,
        }
    }

    /// The store the host's bucket talks to.
    pub fn store(&self) -> Arc<dyn ObjectStore> {
        self.faulty.clone()
    }

    pub fn heal(&mut self) {
        self.faulty.set_faults(Faults::none());
        self.faulty.set_outage(false);
        self.gate.release();
        self.fault_steps = 0;
        self.outage_steps = 0;
    }
}

//! The simulation's state (`Sim`) and its basic moves: time and leases,
//! turns and their tickets, opening and dropping the object, and the
//! links' fault profiles.

use std::sync::Arc;
use std::time::{Duration, Instant};

use amber::pitr::{Bucket, KeyLayout};
use amber::testing::{Faults, SplitMix};
use amber::{ErrorKind, Object, PitrConfig};
use object_store::memory::InMemory;
use object_store::{ObjectStore, ObjectStoreExt};

use crate::host::{open_host_layout, Handle, Host};
use crate::links::Link;
use crate::model::{
    env_u64, known_misclassified, strict, turn_on, typed, Outcome, Stats, Turn, TurnResult, OBJ,
    TTL_MS, WAIT,
};

pub struct Sim {
    pub seed: u64,
    pub rng: SplitMix,
    pub hosts: Vec<Host>,
    pub inner: Arc<dyn ObjectStore>,
    pub links: Vec<Link>,
    pub layout: KeyLayout,
    pub rt: tokio::runtime::Runtime,
    /// Bumped by every successful open.
    pub era: u64,
    /// Host of the last successful open.
    pub owner: Option<usize>,
    pub next_key: u64,
    pub turns: Vec<Turn>,
    pub log: Vec<String>,
    pub trace: bool,
    pub step: usize,
    /// `check_bucket` every this many steps and at every open (0: never).
    pub verify_every: usize,
    pub stats: Stats,
    pub started: Instant,
}

impl Sim {
    pub fn new(seed: u64) -> Sim {
        let inner: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let layout = KeyLayout::new("sim").unwrap();
        let links = vec![Link::new(&inner, seed), Link::new(&inner, !seed)];
        // One seed in four ships per object (round 1's layout), the rest
        // through the shared log; both hosts alike.
        let shared_log = !seed.is_multiple_of(4);
        let hosts: Vec<Host> = ["a", "b"]
            .into_iter()
            .zip(&links)
            .map(|(name, l)| {
                let link = l.store();
                let bucket = Bucket::from_store(link, layout.clone());
                open_host_layout(name, &bucket, PitrConfig::default().retention, shared_log)
            })
            .collect();
        Sim {
            seed,
            // Mixed, so that nearby seeds do not share a stream.
            rng: SplitMix::new(SplitMix::new(seed ^ 0x5EED_C1A5_7E25_0001).next_u64()),
            hosts,
            inner,
            links,
            layout,
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
                .unwrap(),
            era: 0,
            owner: None,
            next_key: 0,
            turns: Vec::new(),
            log: Vec::new(),
            trace: std::env::var("AMBER_SIM_TRACE").is_ok_and(|v| v == "1"),
            step: 0,
            verify_every: env_u64("AMBER_SIM_VERIFY_EVERY", 25) as usize,
            stats: Stats::default(),
            started: Instant::now(),
        }
    }

    pub fn note(&mut self, s: String) {
        let line = format!(
            "[{} +{}ms] {s}",
            self.step,
            self.started.elapsed().as_millis()
        );
        if self.trace {
            eprintln!("seed {} {line}", self.seed);
        }
        self.log.push(line);
    }

    #[track_caller]
    pub fn fail(&self, what: String) -> ! {
        let tail = self.log.len().saturating_sub(60);
        let path = std::env::temp_dir().join(format!("amber-cluster-sim-seed-{}.log", self.seed));
        let mut full = self.log.join("\n");
        if let Some(st) = self.hosts.iter().find_map(|h| h.store.as_ref()) {
            if let Ok(h) = st.history(OBJ) {
                for e in &h.epochs {
                    full.push_str(&format!(
                        "\nbucket: epoch {}: manifest {:?}, snapshots {:?}, segments {:?}",
                        e.epoch,
                        e.manifest,
                        e.snapshots.iter().map(|s| s.seq).collect::<Vec<_>>(),
                        e.segments
                            .iter()
                            .map(|s| (s.first, s.last))
                            .collect::<Vec<_>>()
                    ));
                }
            }
        }
        let saved = std::fs::write(&path, format!("{what}\n{full}\n")).is_ok();
        panic!(
            "seed {}: {what}\n--- last steps ---\n{}\n--- {}replay: AMBER_SIM_SEEDS=1 AMBER_SIM_SEED={} ---",
            self.seed,
            self.log[tail..].join("\n"),
            if saved { format!("full log in {}; ", path.display()) } else { String::new() },
            self.seed
        );
    }

    pub fn check_typed(&mut self, what: &str, e: &amber::Error) {
        if known_misclassified(e) {
            self.stats.misclassified += 1;
            if !strict() {
                return;
            }
        }
        if !typed(e.kind()) {
            self.fail(format!(
                "{what}: untyped or unexpected error {:?}: {e}",
                e.kind()
            ));
        }
    }

    pub fn other(h: usize) -> usize {
        1 - h
    }

    // ---- time and leases ------------------------------------------------

    /// The `renewed_ms` of `host`'s current lease, read from the bucket
    /// itself (no faults).
    pub fn stored_lease(&self, h: usize) -> Option<u64> {
        let inc = self.hosts[h].cluster().incarnation();
        let path = self.layout.host(&inc);
        let inner = self.inner.clone();
        let bytes = self.rt.block_on(async move {
            match inner.get(&path).await {
                Ok(r) => r.bytes().await.ok(),
                Err(_) => None,
            }
        })?;
        let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
        v.get("renewed_ms")?.as_u64()
    }

    /// Waits (real time, bounded) until `h` has renewed at or after its
    /// clock's current time. False if it did not (faults, or paused).
    pub fn wait_renewed(&self, h: usize, limit: Duration) -> bool {
        let now = self.hosts[h].clock.now();
        let deadline = Instant::now() + limit;
        loop {
            if self.hosts[h].cluster().lease_valid()
                && self.stored_lease(h).is_some_and(|t| t >= now)
            {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Moves the clocks of `which` hosts on by `ms`, in steps under half a
    /// TTL; after each, a host that renews and whose stored lease is half a
    /// TTL old is given the time (bounded) to renew.
    pub fn advance(&mut self, which: &[usize], ms: u64) {
        let mut left = ms;
        while left > 0 {
            let d = left.min(TTL_MS / 2 - 1);
            left -= d;
            for &h in which {
                self.hosts[h].clock.advance(d);
            }
            for &h in which {
                let now = self.hosts[h].clock.now();
                let due = self.stored_lease(h).is_none_or(|t| now >= t + TTL_MS / 2);
                if self.can_renew(h) && due {
                    self.wait_renewed(h, Duration::from_millis(200));
                }
            }
        }
    }

    // ---- turns ----------------------------------------------------------

    /// Keys for a new turn of 1 to 3 writes.
    pub fn next_keys(&mut self) -> Vec<u64> {
        let n = 1 + self.rng.below(3);
        let keys: Vec<u64> = (0..n).map(|i| self.next_key + i).collect();
        self.next_key += n;
        keys
    }

    /// A turn by `h` through its handle; waits for the ticket if `wait`.
    pub fn write(&mut self, h: usize, wait: bool) {
        if self.hosts[h].handle.is_none() {
            return;
        }
        let keys = self.next_keys();
        let hd = self.hosts[h].handle.as_mut().unwrap();
        let (era, epoch, usable) = (hd.era, hd.epoch, !hd.obj.is_broken());
        let stale = era != self.era;
        let r = turn_on(&mut hd.obj, &keys);
        self.book(h, keys, (era, epoch), stale, usable, wait, r);
    }

    /// Records a turn's outcome (and waits for its ticket if `wait`).
    #[allow(clippy::too_many_arguments)]
    pub fn book(
        &mut self,
        h: usize,
        keys: Vec<u64>,
        (era, epoch): (u64, u64),
        stale: bool,
        usable: bool,
        wait: bool,
        r: TurnResult,
    ) {
        self.stats.turns += 1;
        let outcome = match r {
            Ok(t) => Outcome::Pending(t),
            Err((refused, e)) => {
                self.check_typed(if refused { "put" } else { "end_turn" }, &e);
                if refused {
                    Outcome::Refused(e.kind())
                } else {
                    Outcome::Unknown(e.kind())
                }
            }
        };
        if matches!(
            outcome,
            Outcome::Refused(ErrorKind::Fenced) | Outcome::Unknown(ErrorKind::Fenced)
        ) {
            self.stats.fenced += 1;
        }
        let committed = matches!(outcome, Outcome::Pending(_));
        if stale && committed {
            self.stats.stale_commits += usable as u64;
        }
        let desc = format!(
            "{} writes {:?} (epoch {epoch}, era {era}/{}{}{}): {}",
            self.hosts[h].name,
            keys,
            self.era,
            if stale { ", STALE" } else { "" },
            if wait { "" } else { ", in flight" },
            match &outcome {
                Outcome::Pending(t) => format!("committed as {}", t.seq()),
                o => format!("{o:?}"),
            }
        );
        self.note(desc);
        self.turns.push(Turn {
            keys,
            host: h,
            epoch,
            era,
            stale,
            usable,
            step: self.step,
            outcome,
        });
        if wait && committed {
            let i = self.turns.len() - 1;
            self.settle(i, WAIT);
        }
    }

    /// Looks at turn `i`'s ticket, waiting at most `wait`.
    pub fn settle(&mut self, i: usize, wait: Duration) {
        let Outcome::Pending(t) = &self.turns[i].outcome else {
            return;
        };
        let t = t.clone();
        let r = if wait.is_zero() {
            match t.poll_done() {
                Some(r) => r,
                None => return,
            }
        } else {
            match t.wait_timeout(wait) {
                Err(_) if !t.is_done() => return,
                r => r,
            }
        };
        let turn = &self.turns[i];
        let (host, stale, keys, step) = (turn.host, turn.stale, turn.keys.clone(), turn.step);
        match r {
            Ok(_) => {
                if stale {
                    self.fail(format!(
                        "invariant 2: turn {keys:?} was committed by {} at step {step} after the \
                         other host had opened the object, and it was acknowledged",
                        self.hosts[host].name
                    ));
                }
                self.turns[i].outcome = Outcome::Acked;
                self.stats.acked += 1;
                self.note(format!(
                    "{} turn {keys:?} acknowledged",
                    self.hosts[host].name
                ));
                self.check_owner_sees(&[i], "late acknowledgement");
            }
            Err(e) => {
                self.check_typed("ticket", &e);
                if e.kind() == ErrorKind::Fenced {
                    self.stats.fenced += 1;
                    // The fence check (not the lease) refused it.
                    if e.message().contains("has a fence record") {
                        self.stats.record_fenced += 1;
                    }
                    if stale && self.turns[i].usable {
                        self.stats.stale_fenced_by_record += 1;
                    }
                }
                self.note(format!(
                    "{} turn {keys:?} failed: {:?}: {e}",
                    self.hosts[host].name,
                    e.kind()
                ));
                self.turns[i].outcome = Outcome::Failed(e.kind());
            }
        }
    }

    pub fn settle_all(&mut self, wait: Duration) {
        for i in 0..self.turns.len() {
            self.settle(i, wait);
        }
    }

    // ---- ownership ------------------------------------------------------

    pub fn open(&mut self, h: usize) -> bool {
        if self.hosts[h].handle.is_some() {
            return false;
        }
        let r = self.hosts[h].store().open_object(OBJ);
        self.opened(h, r)
    }

    /// Books the outcome of an open by `h`, and checks invariant 1 on it.
    pub fn opened(&mut self, h: usize, r: amber::Result<Object>) -> bool {
        match r {
            Ok(obj) => {
                self.era += 1;
                self.stats.opens += 1;
                let takeover = self.owner.is_some_and(|o| o != h);
                if takeover {
                    self.stats.takeovers += 1;
                }
                let epoch = obj.epoch();
                self.note(format!(
                    "{} opens: epoch {epoch}, seq {}, era {}{}",
                    self.hosts[h].name,
                    obj.seq(),
                    self.era,
                    if takeover { ", TAKEOVER" } else { "" }
                ));
                self.owner = Some(h);
                self.hosts[h].handle = Some(Handle {
                    obj,
                    era: self.era,
                    epoch,
                });
                let acked: Vec<usize> = (0..self.turns.len())
                    .filter(|&i| matches!(self.turns[i].outcome, Outcome::Acked))
                    .collect();
                self.check_owner_sees(&acked, "at open");
                if self.verify_every > 0 {
                    self.check_bucket();
                }
                true
            }
            Err(e) => {
                self.check_typed("open_object", &e);
                if e.kind() == ErrorKind::NotOwner {
                    self.stats.not_owner += 1;
                    // The record names an older incarnation of this very
                    // host whose lease still runs (after a restart).
                    if e.owner() == Some(self.hosts[h].cluster().advertise()) {
                        self.stats.not_owner_self += 1;
                    }
                }
                self.note(format!(
                    "{} open refused: {:?}: {e}",
                    self.hosts[h].name,
                    e.kind()
                ));
                false
            }
        }
    }

    pub fn drop_handle(&mut self, h: usize, why: &str) {
        if let Some(hd) = self.hosts[h].handle.take() {
            self.note(format!(
                "{} drops its handle (epoch {}, era {}): {why}",
                self.hosts[h].name, hd.epoch, hd.era
            ));
        }
    }

    // ---- the bucket -----------------------------------------------------

    pub fn random_faults(&mut self) -> Faults {
        let r = &mut self.rng;
        Faults {
            error: r.below(200) as u32,
            delay: r.below(400) as u32,
            max_delay: Duration::from_millis(1 + r.below(15)),
            lost_response: r.below(200) as u32,
            conflict: r.below(60) as u32,
            duplicate: r.below(80) as u32,
            reorder: r.below(100) as u32,
        }
    }

    pub fn heal_links(&mut self) {
        for l in &mut self.links {
            l.heal();
        }
    }

    /// Whether `h` can renew its lease now (as far as the test knows).
    pub fn can_renew(&self, h: usize) -> bool {
        !self.hosts[h].paused && self.links[h].outage_steps == 0
    }

    /// One step of the countdowns of fault profiles and outages.
    pub fn tick_links(&mut self) {
        for h in 0..2 {
            let name = self.hosts[h].name;
            let l = &mut self.links[h];
            if l.fault_steps > 0 {
                l.fault_steps -= 1;
                if l.fault_steps == 0 {
                    l.faulty.set_faults(Faults::none());
                    self.note(format!("{name}'s link: faults off"));
                }
            }
            let l = &mut self.links[h];
            if l.outage_steps > 0 {
                l.outage_steps -= 1;
                if l.outage_steps == 0 {
                    l.faulty.set_outage(false);
                    self.note(format!("{name}'s link is back"));
                }
            }
        }
    }

    /// The hosts a fault step hits: one link, or both.
    pub fn some_links(&mut self, h: usize) -> Vec<usize> {
        if self.rng.chance(400) {
            vec![0, 1]
        } else {
            vec![h]
        }
    }
}

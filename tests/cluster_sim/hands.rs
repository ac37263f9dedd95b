//! The ways the object changes hands: cut, pause, skew, the two races,
//! stampede and restart, and healing the hosts afterwards.

use std::sync::Arc;
use std::time::{Duration, Instant};

use amber::testing::{Faults, Op};
use amber::Object;

use crate::host::start_store;
use crate::model::{turn_on, Outcome, OBJ, TTL_MS};
use crate::world::Sim;

impl Sim {
    /// The holder's link goes down; time moves a TTL on while the other
    /// host renews, so the holder's lease lapses; the other takes over.
    pub fn cut(&mut self, holder: usize) {
        let taker = Self::other(holder);
        self.stats.cuts += 1;
        let steps = 3 + self.rng.below(15) as u32;
        self.note(format!(
            "cut: {}'s link is down for {steps} steps; time moves on a TTL",
            self.hosts[holder].name
        ));
        self.links[holder].faulty.set_outage(true);
        self.links[holder].outage_steps = steps;
        if self.rng.chance(500) {
            self.write(holder, false);
        }
        let ms = TTL_MS + 1 + self.rng.below(TTL_MS / 2);
        self.advance(&[0, 1], ms);
        if self.rng.chance(700) {
            let wait = self.rng.chance(500);
            self.write(holder, wait);
        }
        self.open(taker);
    }

    /// The holder stops renewing; both clocks move past its TTL (the other
    /// host renewing along), so the holder fences itself; the other then
    /// tries to take the object.
    pub fn pause(&mut self, holder: usize) {
        let taker = Self::other(holder);
        self.stats.pauses += 1;
        self.note(format!(
            "pause: {} stops renewing; time moves on a TTL",
            self.hosts[holder].name
        ));
        self.hosts[holder].cluster().set_renewals_paused(true);
        self.hosts[holder].paused = true;
        if self.rng.chance(500) {
            self.write(holder, false);
        }
        let ms = TTL_MS + 1 + self.rng.below(TTL_MS / 2);
        self.advance(&[0, 1], ms);
        if self.rng.chance(700) {
            let wait = self.rng.chance(500);
            self.write(holder, wait);
        }
        self.open(taker);
    }

    /// Only the taker's clock jumps past the TTL: the holder still believes
    /// in its lease and keeps its handle usable; the taker (whose own lease
    /// lapsed with the jump) rejoins under a new incarnation.
    pub fn jump_taker_clock(&mut self, holder: usize) {
        let taker = Self::other(holder);
        let jump = TTL_MS + 1 + self.rng.below(TTL_MS);
        let base = self.hosts[holder]
            .clock
            .now()
            .max(self.hosts[taker].clock.now());
        self.note(format!(
            "skew: {}'s clock jumps to {jump} ms past {}'s, which keeps renewing on its own",
            self.hosts[taker].name, self.hosts[holder].name
        ));
        self.hosts[taker].clock.set(base + jump);
        if self.can_renew(taker) {
            self.wait_renewed(taker, Duration::from_millis(500));
        }
    }

    /// A skewed takeover with turns of the old owner in flight across it
    /// and after it, often on a slow link.
    pub fn skew(&mut self, holder: usize) {
        let taker = Self::other(holder);
        self.stats.skews += 1;
        self.jump_taker_clock(holder);
        let l = &self.links[holder];
        let slow = l.fault_steps == 0 && l.outage_steps == 0 && self.rng.chance(600);
        if slow {
            let f = Faults {
                delay: 1000,
                max_delay: Duration::from_millis(2 + self.rng.below(20)),
                ..Faults::none()
            };
            self.note(format!("{}'s link is slow: {f:?}", self.hosts[holder].name));
            self.links[holder].faulty.set_faults(f);
        }
        for _ in 0..self.rng.below(3) {
            self.write(holder, false);
        }
        self.open(taker);
        for _ in 0..self.rng.below(3) {
            let wait = self.rng.chance(300);
            self.write(holder, wait);
        }
        if slow {
            self.settle_all(Duration::from_millis(300));
            self.links[holder].faulty.set_faults(Faults::none());
        }
    }

    /// A skewed takeover that lands inside the old owner's acknowledgement
    /// path: its segment PUT, or its read of the record after the PUT, is
    /// held until the other host has taken the object.
    pub fn race(&mut self, holder: usize) {
        let taker = Self::other(holder);
        let usable = self.hosts[holder]
            .handle
            .as_ref()
            .is_some_and(|hd| !hd.obj.is_broken() && hd.era == self.era);
        if !usable {
            return self.skew(holder);
        }
        self.stats.races += 1;
        self.jump_taker_clock(holder);
        let (op, pattern) = match (self.rng.chance(500), self.hosts[holder].shared_log) {
            (true, true) => (Op::Put, "/log/"),
            (true, false) => (Op::Put, "/segments/"),
            (false, _) => (Op::Get, "/fences/"),
        };
        self.note(format!(
            "race: {}'s link holds {op:?}s of {pattern} across the takeover",
            self.hosts[holder].name
        ));
        self.links[holder].gate.arm(op, pattern);
        // The old owner's turn runs on a thread: `end_turn` may wait for the
        // held request (a snapshot falls due after the commit).
        let keys = self.next_keys();
        let mut hd = self.hosts[holder].handle.take().unwrap();
        let (era, epoch, usable) = (hd.era, hd.epoch, !hd.obj.is_broken());
        let turn = std::thread::spawn(move || {
            let r = turn_on(&mut hd.obj, &keys);
            (hd, keys, r)
        });
        // (`end_turn` usually returns before the upload reaches the gate.)
        let deadline = Instant::now() + Duration::from_millis(500);
        while self.links[holder].gate.parked() == 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        let held = self.links[holder].gate.parked() > 0;
        self.stats.races_held += held as u64;
        self.note(format!(
            "race: {} request(s) held",
            self.links[holder].gate.parked()
        ));
        self.open(taker);
        self.links[holder].gate.release();
        let (hd, keys, r) = turn.join().expect("the turn panicked");
        self.hosts[holder].handle = Some(hd);
        // Committed before the takeover (or about then): not counted stale;
        // its acknowledgement is allowed only if the new owner has it.
        self.book(holder, keys, (era, epoch), false, usable, false, r);
        if self.rng.chance(500) {
            self.write(holder, false);
        }
        self.settle_all(Duration::from_millis(1500));
    }

    /// A skewed takeover whose claim (the conditional PUT of the record) is
    /// held while the old owner commits and is acknowledged: what the old
    /// owner acknowledged before the record changed must be in what the
    /// new owner rebuilds from.
    pub fn race_claim(&mut self, holder: usize) {
        let taker = Self::other(holder);
        let usable = self.hosts[holder]
            .handle
            .as_ref()
            .is_some_and(|hd| !hd.obj.is_broken() && hd.era == self.era);
        if !usable || self.hosts[taker].handle.is_some() {
            return self.skew(holder);
        }
        self.stats.races += 1;
        self.jump_taker_clock(holder);
        self.note(format!(
            "race: {}'s claim is held while {} commits",
            self.hosts[taker].name, self.hosts[holder].name
        ));
        let gate = self.links[taker].gate.clone();
        gate.arm(Op::Put, "/owners/");
        let store = self.hosts[taker].store().clone();
        let opening = std::thread::spawn(move || store.open_object(OBJ));
        let deadline = Instant::now() + Duration::from_secs(1);
        while gate.parked() == 0 && !opening.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        let held = gate.parked() > 0;
        self.stats.races_held += held as u64;
        self.note(format!("race: claim held: {held}"));
        for _ in 0..1 + self.rng.below(2) {
            self.write(holder, true);
        }
        gate.release();
        let r = opening.join().expect("the open panicked");
        self.opened(taker, r);
        if self.rng.chance(500) {
            self.write(holder, false);
        }
        self.settle_all(Duration::from_millis(500));
    }

    /// Both hosts drop their handles and open the object at once: at most
    /// one claim of a given epoch may win.
    pub fn stampede(&mut self) {
        self.stats.stampedes += 1;
        for h in 0..2 {
            self.drop_handle(h, "stampede");
        }
        if self.rng.chance(500) {
            // Nobody's lease looks live to anybody.
            let ms = TTL_MS + 1;
            self.note("stampede: both clocks jump a TTL".into());
            for h in &self.hosts {
                h.clock.advance(ms);
            }
            for h in 0..2 {
                if self.can_renew(h) {
                    self.wait_renewed(h, Duration::from_millis(500));
                }
            }
        }
        self.note("stampede: both hosts open at once".into());
        let start = Arc::new(std::sync::Barrier::new(2));
        let opening: Vec<_> = (0..2)
            .map(|h| {
                let store = self.hosts[h].store().clone();
                let start = start.clone();
                std::thread::spawn(move || {
                    start.wait();
                    store.open_object(OBJ)
                })
            })
            .collect();
        let mut results: Vec<(usize, amber::Result<Object>)> = opening
            .into_iter()
            .enumerate()
            .map(|(h, j)| (h, j.join().expect("the open panicked")))
            .collect();
        if let [(_, Ok(x)), (_, Ok(y))] = &results[..] {
            if x.epoch() == y.epoch() {
                self.fail(format!(
                    "both hosts opened the object in epoch {}",
                    x.epoch()
                ));
            }
        }
        // Book the earlier claim (the lower epoch) first.
        results.sort_by_key(|(_, r)| r.as_ref().map_or(u64::MAX, |o| o.epoch()));
        for (h, r) in results {
            self.opened(h, r);
        }
    }

    /// The host restarts: its handle goes, its store is dropped, and a new
    /// store opens on the same data directory under a new incarnation.
    /// Gracefully, uploads in flight drain and the host leaves (deletes
    /// its lease); like a crash, in-flight work is abandoned and the lease
    /// is left to run out.
    pub fn restart(&mut self, h: usize) {
        let crash = self.rng.chance(500);
        self.stats.restarts += 1;
        self.note(format!(
            "{} restarts{}",
            self.hosts[h].name,
            if crash {
                " (crash: in-flight work abandoned, no leave)"
            } else {
                ""
            }
        ));
        self.drop_handle(h, "restart");
        let old = self.hosts[h].store.take().expect("the host is up");
        if crash {
            // Inside a runtime, the cluster does not leave and the shipper
            // does not wait for its uploads.
            let _in_runtime = self.rt.enter();
            drop(old);
        } else {
            drop(old);
        }
        for i in 0..self.turns.len() {
            if self.turns[i].host == h {
                self.settle(i, Duration::ZERO);
                if matches!(self.turns[i].outcome, Outcome::Pending(_)) {
                    self.turns[i].outcome = Outcome::Abandoned;
                }
            }
        }
        self.links[h].heal();
        self.hosts[h].paused = false;
        let host = &self.hosts[h];
        let mut last = None;
        for _ in 0..5 {
            match start_store(
                host.name,
                &host.bucket,
                host.dir.path(),
                &host.clock,
                host.retention,
                host.shared_log,
            ) {
                Ok(st) => {
                    self.hosts[h].store = Some(st);
                    let inc = self.hosts[h].cluster().incarnation();
                    self.note(format!("{} is back as {inc}", self.hosts[h].name));
                    return;
                }
                Err(e) => last = Some(e),
            }
        }
        self.fail(format!(
            "restarting {} failed 5 times on a healed link: {last:?}",
            self.hosts[h].name
        ));
    }

    /// Renewals resume and the clocks agree again (the slow one jumps
    /// forward, which may lapse its lease).
    pub fn heal_hosts(&mut self) {
        let now = self.hosts.iter().map(|h| h.clock.now()).max().unwrap();
        for h in 0..2 {
            let host = &mut self.hosts[h];
            host.clock.set(now.max(host.clock.now()));
            if host.paused {
                host.cluster().set_renewals_paused(false);
                host.paused = false;
            }
        }
        self.note("heal: renewals resume, clocks agree".into());
        for h in 0..2 {
            if self.can_renew(h) {
                self.wait_renewed(h, Duration::from_millis(300));
            }
        }
    }
}

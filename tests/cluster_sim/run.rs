//! One seeded run: its steps, and the run from start to final checks.

use std::time::{Duration, Instant};

use crate::model::{Stats, TTL_MS};
use crate::world::Sim;

impl Sim {
    pub fn step(&mut self) {
        self.tick_links();
        let h = self.rng.below(2) as usize;
        let roll = self.rng.below(100);
        // Most turns go to the host that opened the object last.
        let writer = |sim: &mut Sim, bias: u32| match sim.owner {
            Some(o) if sim.hosts[o].handle.is_some() && sim.rng.chance(bias) => o,
            _ => h,
        };
        let holder = self.owner.unwrap_or(h);
        match roll {
            0..=31 => {
                let w = writer(self, 850);
                // A broken handle is usually reopened first.
                if self.hosts[w]
                    .handle
                    .as_ref()
                    .is_some_and(|hd| hd.obj.is_broken())
                    && self.rng.chance(500)
                {
                    self.drop_handle(w, "broken");
                    self.open(w);
                }
                self.write(w, true);
            }
            32..=41 => {
                let w = writer(self, 700);
                self.write(w, false);
            }
            42..=46 => {
                // A burst of turns in flight (one PUT may carry several).
                let w = writer(self, 900);
                for _ in 0..2 + self.rng.below(4) {
                    self.write(w, false);
                }
                self.settle_all(Duration::from_millis(100));
            }
            47..=48 => self.settle_all(Duration::from_millis(200)),
            49..=57 => {
                if self.hosts[h]
                    .handle
                    .as_ref()
                    .is_some_and(|hd| hd.obj.is_broken())
                {
                    self.drop_handle(h, "broken");
                }
                self.open(h);
            }
            58..=60 => self.drop_handle(h, "hibernates"),
            61..=66 => {
                let f = self.random_faults();
                let n = 5 + self.rng.below(25) as u32;
                for l in self.some_links(h) {
                    self.note(format!(
                        "{}'s link: faults for {n} steps: {f:?}",
                        self.hosts[l].name
                    ));
                    self.links[l].faulty.set_faults(f.clone());
                    self.links[l].fault_steps = n;
                }
            }
            67..=68 => {
                let n = 1 + self.rng.below(5) as u32;
                for l in self.some_links(h) {
                    self.note(format!(
                        "{}'s link is down for {n} steps",
                        self.hosts[l].name
                    ));
                    self.links[l].faulty.set_outage(true);
                    self.links[l].outage_steps = n;
                }
            }
            69..=71 => self.cut(holder),
            72..=74 => self.pause(holder),
            75..=77 => self.skew(holder),
            78..=79 => self.race(holder),
            80..=81 => self.race_claim(holder),
            82..=83 => self.stampede(),
            84..=85 => self.restart(h),
            86..=89 => {
                self.heal_links();
                self.heal_hosts();
            }
            _ => {
                let ms = 1 + self.rng.below(TTL_MS / 4);
                self.note(format!("time moves on {ms} ms"));
                self.advance(&[0, 1], ms);
            }
        }
        // Acknowledgements that arrived meanwhile.
        self.settle_all(Duration::ZERO);
        if self.verify_every > 0 && self.step.is_multiple_of(self.verify_every) {
            self.check_bucket();
        }
    }
}

pub fn run_seed(seed: u64, steps: usize) -> Stats {
    let mut sim = Sim::new(seed);
    sim.note(format!(
        "start: a = {}, b = {}",
        sim.hosts[0].cluster().incarnation(),
        sim.hosts[1].cluster().incarnation()
    ));
    while sim.step < steps {
        sim.step += 1;
        let t = Instant::now();
        let before = sim.log.len();
        sim.step();
        if t.elapsed() > Duration::from_secs(2) {
            eprintln!(
                "seed {seed}: step {} took {:.1?}:\n  {}",
                sim.step,
                t.elapsed(),
                sim.log[before.saturating_sub(1)..].join("\n  ")
            );
        }
    }
    let t = Instant::now();
    let o = sim.finish();
    sim.final_checks(o);
    if t.elapsed() > Duration::from_secs(2) {
        eprintln!("seed {seed}: the end took {:.1?}", t.elapsed());
    }
    sim.stats.faults = sim.links.iter().map(|l| l.faulty.injected().total()).sum();
    let s = sim.stats;
    // Each handle and store drops here, inside the seed: shipping loops of
    // broken handles end, and each host leaves the cluster.
    for h in 0..2 {
        sim.hosts[h].handle = None;
    }
    let t = Instant::now();
    drop(sim);
    if t.elapsed() > Duration::from_secs(2) {
        eprintln!("seed {seed}: dropping the stores took {:.1?}", t.elapsed());
    }
    s
}

//! The invariants: what the owner must see, the bucket's log, and the
//! final state after healing.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use amber::pitr::Bucket;
use amber::{ErrorKind, ListOptions};
use object_store::ObjectStoreExt;

use crate::model::{hot_val, key, val, Outcome, HOT, OBJ, TTL_MS};
use crate::world::Sim;

impl Sim {
    /// Invariant 1 for turns `idx`, on the current owner's handle (the one
    /// opened last), if it is still there and usable.
    pub fn check_owner_sees(&mut self, idx: &[usize], why: &str) {
        let Some(o) = self.owner else { return };
        let era = self.era;
        let mut missing = Vec::new();
        {
            let Some(hd) = self.hosts[o].handle.as_mut() else {
                return;
            };
            if hd.era != era {
                return;
            }
            for &i in idx {
                for &k in &self.turns[i].keys {
                    match hd.obj.get(&key(k)) {
                        Ok(Some(v)) if v == val(k) => {}
                        Ok(got) => missing.push((i, k, got)),
                        Err(_) => return, // the handle broke meanwhile
                    }
                }
            }
        }
        if let Some((i, k, got)) = missing.first() {
            let t = &self.turns[*i];
            self.fail(format!(
                "invariant 1 ({why}): turn {:?} by {} (epoch {}, era {}, step {}) was \
                 acknowledged, but the owner {} (era {era}) reads key {} as {:?}",
                t.keys,
                self.hosts[t.host].name,
                t.epoch,
                t.era,
                t.step,
                self.hosts[o].name,
                key(*k),
                got.as_ref()
                    .map(|v| String::from_utf8_lossy(v).into_owned())
            ));
        }
    }

    /// Invariant 5 as the run goes: every epoch's log in the bucket (read
    /// without faults) is whole from its first snapshot on. An epoch with
    /// no snapshot yet (its base in flight, or its owner broke first) is
    /// allowed.
    pub fn check_bucket(&mut self) {
        let Some(st) = self.hosts.iter().find_map(|h| h.store.as_ref()) else {
            return;
        };
        let id = st.id_from_name(OBJ).unwrap();
        let clean = Bucket::from_store(self.inner.clone(), self.layout.clone());
        let rep = self
            .rt
            .block_on(async move { amber::pitr::verify_object(&clean, &id).await });
        let rep = match rep {
            Ok(r) => r,
            // Only the object's first step may find nothing at all.
            Err(_) => return,
        };
        let bad: Vec<String> = rep
            .epochs
            .iter()
            .flat_map(|e| {
                e.problems
                    .iter()
                    .filter(|p| !(e.snapshots == 0 && p.starts_with("no snapshot")))
                    .map(move |p| format!("epoch {}: {p}", e.epoch))
            })
            .collect();
        if !bad.is_empty() {
            self.fail(format!("invariant 5: the bucket's log has a hole: {bad:?}"));
        }
    }

    /// Heals everything, lets tickets settle, and opens the object on
    /// whichever host can take it. Returns that host.
    pub fn finish(&mut self) -> usize {
        self.step += 1;
        self.heal_links();
        self.heal_hosts();
        self.settle_all(Duration::from_secs(5));
        let stuck: Vec<_> = self
            .turns
            .iter()
            .filter(|t| matches!(t.outcome, Outcome::Pending(_)))
            .map(|t| t.keys.clone())
            .collect();
        if !stuck.is_empty() {
            self.fail(format!("tickets never settled after healing: {stuck:?}"));
        }
        for h in 0..2 {
            self.drop_handle(h, "end of run");
        }
        let first = self.rng.below(2) as usize;
        for attempt in 0..40 {
            for h in [first, Self::other(first)] {
                if self.open(h) {
                    return h;
                }
            }
            // The record may name an incarnation whose lease still runs.
            self.note(format!("final open, attempt {attempt}: time moves on"));
            self.advance(&[0, 1], TTL_MS / 4);
        }
        self.fail("no host could open the object after healing".into())
    }

    pub fn final_checks(&mut self, o: usize) {
        let hd = self.hosts[o].handle.as_mut().unwrap();
        let final_epoch = hd.epoch;
        let present: BTreeMap<String, Vec<u8>> = hd
            .obj
            .list(&ListOptions::prefix("k"))
            .unwrap_or_else(|e| panic!("seed {}: final list: {e}", self.seed))
            .into_iter()
            .collect();
        let hot = hd
            .obj
            .get(HOT)
            .unwrap_or_else(|e| panic!("seed {}: final get: {e}", self.seed));
        let mut expected = BTreeSet::new();
        for (i, t) in self.turns.iter().enumerate() {
            let there: Vec<bool> = t
                .keys
                .iter()
                .map(|&k| present.contains_key(&key(k)))
                .collect();
            for &k in &t.keys {
                expected.insert(key(k));
                if let Some(v) = present.get(&key(k)) {
                    if *v != val(k) {
                        self.fail(format!(
                            "key {} holds {:?}",
                            key(k),
                            String::from_utf8_lossy(v)
                        ));
                    }
                }
            }
            let all = there.iter().all(|&b| b);
            let none = there.iter().all(|&b| !b);
            if !all && !none {
                self.fail(format!(
                    "invariant 3: turn {:?} (#{i}) is only partly there: {there:?}",
                    t.keys
                ));
            }
            match &t.outcome {
                Outcome::Acked if !all => self.fail(format!(
                    "invariant 1 (final): acknowledged turn {:?} by {} (epoch {}, era {}, step {}) \
                     is missing from the final state (owner {}, epoch {final_epoch})",
                    t.keys,
                    self.hosts[t.host].name,
                    t.epoch,
                    t.era,
                    t.step,
                    self.hosts[o].name
                )),
                Outcome::Refused(k) if all => self.fail(format!(
                    "invariant 3: turn {:?} was refused before its commit ({k:?}) yet is there",
                    t.keys
                )),
                Outcome::Failed(k) | Outcome::Unknown(k) if all => {
                    // Landed before the next owner listed the bucket, but
                    // its acknowledgement was refused (or lost): allowed.
                    self.stats.survived_unacked += 1;
                    self.stats.survived_fenced += (*k == ErrorKind::Fenced) as u64;
                }
                _ => {}
            }
        }
        if let Some(k) = present.keys().find(|k| !expected.contains(*k)) {
            self.fail(format!("invariant 3: key {k} was never written"));
        }
        // The state is one history: the hot key holds the newest turn
        // present (turns along the history the final owner inherited were
        // made in key order).
        let newest = self
            .turns
            .iter()
            .filter(|t| present.contains_key(&key(t.keys[0])))
            .map(|t| t.keys[0])
            .max();
        if hot != newest.map(hot_val) {
            let got = hot
                .as_ref()
                .map(|v| String::from_utf8_lossy(&v[..v.len().min(12)]).into_owned());
            self.fail(format!(
                "invariant 3: the hot key holds {got:?}, but the newest turn present is {newest:?}"
            ));
        }
        // A last turn, so the final epoch has its base snapshot and a log.
        self.write(o, true);
        if !matches!(self.turns.last().unwrap().outcome, Outcome::Acked) {
            self.fail("the final owner's turn was not acknowledged on a healed bucket".into());
        }
        let final_seq = self.hosts[o].handle.as_ref().unwrap().obj.seq();
        // The same through a restore of the newest commit (what the next
        // owner would get) is covered by `verify` below: each epoch's log
        // must be whole, and the final one restorable up to the end.
        let rep = self.hosts[o]
            .store()
            .verify(OBJ)
            .unwrap_or_else(|e| panic!("seed {}: verify: {e}", self.seed));
        let mut bad = Vec::new();
        for ep in &rep.epochs {
            for p in &ep.problems {
                // An owner that broke before its base snapshot landed left
                // an epoch with nothing restorable: nothing in it was ever
                // acknowledged (acknowledgements wait for that snapshot).
                let empty = ep.snapshots == 0 && p.starts_with("no snapshot");
                if !empty || ep.epoch == final_epoch {
                    bad.push(format!("epoch {}: {p}", ep.epoch));
                }
            }
        }
        let fin = rep.epochs.iter().find(|e| e.epoch == final_epoch);
        match fin.and_then(|e| e.restorable) {
            Some((_, last)) if last == amber::pitr::Bookmark::new(final_epoch, final_seq) => {}
            r => bad.push(format!(
                "final epoch {final_epoch} restorable {r:?}, expected up to seq {final_seq}"
            )),
        }
        if !bad.is_empty() {
            self.fail(format!("invariant 5: verify: {bad:?}\n{rep:#?}"));
        }
        // The record, read from the bucket itself, names the final owner.
        let id = self.hosts[o].store().id_from_name(OBJ).unwrap();
        let path = self.layout.owner(&id);
        let inner = self.inner.clone();
        let rec = self
            .rt
            .block_on(async move { inner.get(&path).await.unwrap().bytes().await.unwrap() });
        let rec: serde_json::Value = serde_json::from_slice(&rec).unwrap();
        let inc = self.hosts[o].cluster().incarnation();
        if rec["host"].as_str() != Some(inc.as_str()) || rec["epoch"].as_u64() != Some(final_epoch)
        {
            self.fail(format!(
                "invariant 5: the ownership record {rec} does not name the final owner {inc} \
                 in epoch {final_epoch}"
            ));
        }
        let empty_epochs = rep.epochs.iter().filter(|e| e.snapshots == 0).count();
        self.stats.epochs += rep.epochs.len() as u64;
        self.stats.empty_epochs += empty_epochs as u64;
        self.stats.snapshots += rep.epochs.iter().map(|e| e.snapshots as u64).sum::<u64>();
        self.note(format!(
            "final: owner {}, epoch {final_epoch}, seq {final_seq}, {} keys, {} epochs ({} without \
             a snapshot)",
            self.hosts[o].name,
            present.len(),
            rep.epochs.len(),
            empty_epochs
        ));
    }
}

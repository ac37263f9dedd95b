//! This host's lease: written at start, rewritten every quarter TTL.
//!
//! The host holds its lease until `sent + ttl`, where `sent` is when the
//! last successful renewal was *sent* (so a slow response never extends
//! it). Past that, the host fences itself: it takes a new incarnation and
//! generation, forgets what it owned, and every object opened under the
//! old generation stops acknowledging. Other hosts presume it dead once
//! `renewed_ms + ttl` has passed on their clock, which is no earlier.

use std::sync::{Arc, Weak};
use std::time::Duration;

use object_store::{ObjectStoreExt, PutPayload};

use super::record::LeaseRecord;
use super::{new_incarnation, Cluster};
use crate::error::{Error, ErrorKind, Result};
use crate::pitr::bucket::store_error;

impl Cluster {
    /// Writes this incarnation's lease record; on success the lease is
    /// held for a TTL from when the write was sent.
    pub(crate) async fn renew(&self) -> Result<()> {
        let (inc, gen) = {
            let st = self.lock();
            if st.stopped || st.renewals_paused {
                return Ok(());
            }
            (st.incarnation.clone(), st.generation)
        };
        let sent = self.clock.now_ms();
        let rec = LeaseRecord {
            host: inc.clone(),
            addr: self.cfg.advertise.clone(),
            renewed_ms: sent,
            ttl_ms: self.cfg.lease_ttl.as_millis() as u64,
        };
        let key = self.bucket.layout().host(&inc);
        let put = self
            .bucket
            .store()
            .put(&key, PutPayload::from(rec.to_json()));
        // A renewal that takes a quarter TTL is as good as failed; the
        // next one is already due.
        match crate::clock::timeout(&*self.clock, self.cfg.lease_ttl / 4, put).await {
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(store_error("renewing this host's lease", e)),
            None => {
                return Err(Error::new(
                    ErrorKind::Timeout,
                    "renewing this host's lease timed out",
                ))
            }
        }
        let answered = self.clock.now_ms();
        let ttl = self.cfg.lease_ttl.as_millis() as u64;
        let stopped = self.lock().stopped;
        if stopped {
            // `leave` ran while this PUT was in flight: delete again, or
            // the record would make others wait out a TTL.
            let _ = self.bucket.store().delete(&key).await;
            return Ok(());
        }
        let mut st = self.lock();
        // Never revive a lease that ran out before this answer came: in
        // between, another host may have presumed us dead and taken
        // objects. The renewer fences on its next tick instead.
        let lapsed = st
            .last_ok_ms
            .is_some_and(|t| answered >= t.saturating_add(ttl));
        if st.generation == gen && !lapsed {
            st.last_ok_ms = Some(st.last_ok_ms.map_or(sent, |t| t.max(sent)));
            self.publish(&st);
        }
        Ok(())
    }

    /// Ends the current incarnation: a new id and generation, nothing
    /// owned. Objects opened under the old generation stop acknowledging;
    /// the renewer registers the new incarnation on its next tick.
    fn fence_self(&self, st: &mut super::HostState, why: &str) {
        let old = std::mem::take(&mut st.incarnation);
        match new_incarnation(&self.cfg.host) {
            Ok(inc) => st.incarnation = inc,
            Err(_) => st.incarnation = format!("{old}x"),
        }
        st.generation += 1;
        st.last_ok_ms = None;
        st.owned.clear();
        st.routes.clear();
        self.publish(st);
        tracing::warn!(
            old = %old,
            new = %st.incarnation,
            "{why}: this host fenced itself and rejoins under a new incarnation"
        );
    }

    /// Another host marked incarnation `inc` fenced (it took one of its
    /// objects): if that is still this host's incarnation, end it, so that
    /// none of its objects acknowledges again.
    pub(crate) fn fenced_by_peer(&self, inc: &str) {
        let mut st = self.lock();
        if st.incarnation == inc && !st.stopped {
            self.fence_self(&mut st, "another host took an object of this incarnation");
        }
    }

    /// One renewer step: fence if the lease ran out, then renew.
    async fn tick(&self) {
        let lapsed = {
            let mut st = self.lock();
            if st.stopped {
                return;
            }
            let lapsed = st.last_ok_ms.is_some() && !self.valid(&st);
            if lapsed {
                self.fence_self(&mut st, "lease lapsed");
            }
            lapsed
        };
        if let Err(e) = self.renew().await {
            tracing::warn!(error = %e, rejoining = lapsed, "lease renewal failed");
        }
    }
}

/// Renews every quarter TTL for as long as the cluster lives.
pub(super) fn spawn_renewer(c: &Arc<Cluster>) {
    let weak: Weak<Cluster> = Arc::downgrade(c);
    let every = (c.cfg.lease_ttl / 4).max(Duration::from_millis(20));
    c.spawner.spawn(async move {
        // Ticks at a fixed rate from the start, so one slow renewal does
        // not push the next one back.
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await;
        loop {
            ticks.tick().await;
            let Some(c) = weak.upgrade() else { return };
            if c.lock().stopped {
                return;
            }
            c.tick().await;
        }
    });
}

/// How long past its end a lease record stays before a joining host
/// deletes it (only `/cluster` listings ever read old ones).
const STALE_LEASE_MS: u64 = 3_600_000;

/// At join, once: deletes lease records of incarnations that ended long
/// ago (killed hosts never delete their own), and of earlier incarnations
/// at this host's own address (a restart). Safe: a lease record has one
/// writer, its incarnation, and an incarnation whose lease lapsed never
/// writes it again (it rejoins under a new id); at worst a deleted lease
/// lets its objects be taken over early, which the acknowledgement rule
/// makes harmless. Idle hosts make no LISTs.
pub(super) fn spawn_sweep(c: &Arc<Cluster>) {
    let weak: Weak<Cluster> = Arc::downgrade(c);
    c.spawner.spawn(async move {
        let Some(c) = weak.upgrade() else { return };
        let bucket = c.bucket.clone();
        let now = c.clock.now_ms();
        let Ok(list) = bucket.list_dir(&bucket.layout().hosts()).await else {
            return;
        };
        for m in list.objects {
            if let Ok(Some(l)) = super::read_lease_at(&bucket, &m.location).await {
                let end = l.renewed_ms.saturating_add(l.ttl_ms);
                // An earlier incarnation at our own address is gone (we
                // bound the address): its objects need not wait out its TTL.
                let mine = l.addr == c.cfg.advertise
                    && l.host != c.incarnation()
                    && same_host_name(&l.host, &c.cfg.host);
                if mine || now > end.saturating_add(STALE_LEASE_MS) {
                    let _ = bucket.store().delete(&m.location).await;
                    tracing::debug!(host = %l.host, "deleted a long-expired lease");
                }
            }
        }
    });
}

/// Whether incarnation id `inc` (`<host>-<8 hex>`) belongs to host `host`.
pub(super) fn same_host_name(inc: &str, host: &str) -> bool {
    inc.rsplit_once('-').is_some_and(|(h, _)| h == host)
}
